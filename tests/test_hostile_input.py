"""Hostile configs and arguments: a NUL byte in any string or key, JSON nested without
end, numbers past any range, wrong types, signals out of range, and an exception nobody
foresaw. Each is one error line naming the field (or the value), a non-zero exit, no
traceback, and nothing left behind (the runtime fixture's leak check)."""

import json

import pytest
from conftest import launcher_python
from test_errors import create, one_error

pytestmark = pytest.mark.root

HOOK = {"path": "/bin/true", "args": ["true"], "env": ["A=1"]}


def _bundle_with(make_bundle, change):
    bundle = make_bundle("sleep", "10")
    change(bundle.config)
    bundle.write()
    return bundle


def _set(path, value):
    """A change that puts ``value`` at ``path`` (keys and indexes), making what is missing."""
    def change(config):
        node = config
        for key, nxt in zip(path, path[1:], strict=False):
            if isinstance(node, list):
                while len(node) <= key:
                    node.append({} if isinstance(nxt, str) else [])
                node = node[key]
            else:
                node = node.setdefault(key, {} if isinstance(nxt, str) else [])
        if isinstance(node, list):
            node[path[-1]:path[-1] + 1] = [value]
        else:
            node[path[-1]] = value
    return change


# (the field as the error names it, the change to a runnable config)
NUL_FIELDS = [
    ("process.args[0]", _set(["process", "args", 0], "sl\0eep")),
    ("process.args[1]", _set(["process", "args", 1], "10\0junk")),
    ("process.env[0]", _set(["process", "env", 0], "PATH=/bin\0:/evil")),
    ("process.cwd", _set(["process", "cwd"], "/\0tmp")),
    ("process.apparmorProfile", _set(["process", "apparmorProfile"], "x\0")),
    ("root.path", _set(["root", "path"], "rootfs\0/../x")),
    ("hostname", _set(["hostname"], "host\0name")),
    ("linux.maskedPaths[0]", _set(["linux", "maskedPaths", 0], "/proc/\0kcore")),
    ("linux.readonlyPaths[0]", _set(["linux", "readonlyPaths", 0], "/proc/\0sys")),
    ("mounts[0].destination", _set(["mounts", 0, "destination"], "/proc\0/x")),
    ("mounts[1].source", _set(["mounts", 1, "source"], "tmp\0fs")),
    ("mounts[2].options[0]", _set(["mounts", 2, "options", 0], "nosuid\0")),
    ("hooks.prestart[0].path", _set(["hooks", "prestart"], [dict(HOOK, path="/bin/\0true")])),
    ("hooks.poststart[0].args[0]", _set(["hooks", "poststart"], [dict(HOOK, args=["tr\0ue"])])),
    ("hooks.poststop[0].env[0]", _set(["hooks", "poststop"], [dict(HOOK, env=["A=\0"])])),
    ('linux.sysctl["kernel.msgmax"]', _set(["linux", "sysctl"], {"kernel.msgmax": "8192\0"})),
    ("linux.cgroupsPath", _set(["linux", "cgroupsPath"], "/a\0/b")),
    ("annotations.key", _set(["annotations"], {"key": "va\0lue"})),
    ("linux.seccomp.syscalls[0].names[0]", _set(["linux", "seccomp"], {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir\0"], "action": "SCMP_ACT_ERRNO"}]})),
    ("linux.namespaces[0].path", _set(["linux", "namespaces", 0, "path"], "/proc/1/ns/\0pid")),
]
NUL_KEYS = [
    ('linux.sysctl["kernel.\\u0000msgmax"]', _set(["linux", "sysctl"], {"kernel.\0msgmax": "8192"})),
    ('annotations["a\\u0000b"]', _set(["annotations"], {"a\0b": "x"})),
    ('["x\\u0000"]', lambda config: config.update({"x\0": 1})),
]


@pytest.mark.parametrize("field, change", NUL_FIELDS, ids=[f for f, _ in NUL_FIELDS])
def test_nul_byte_in_a_string_is_refused(runtime, make_bundle, field, change):
    """cffi passes a str to C cut at its first NUL: "/proc/\\0kcore" would mask all of /proc."""
    one_error(create(runtime, _bundle_with(make_bundle, change)), f"ociruntime: {field}: contains a NUL byte")


@pytest.mark.parametrize("field, change", NUL_KEYS, ids=[f for f, _ in NUL_KEYS])
def test_nul_byte_in_a_key_is_refused(runtime, make_bundle, field, change):
    one_error(create(runtime, _bundle_with(make_bundle, change)), field, "key contains a NUL byte")


def test_nul_escape_without_a_nul_is_fine(runtime, make_bundle):
    """The text \\u0000 in a string (an escaped backslash before it) is no NUL."""
    bundle = _bundle_with(make_bundle, _set(["annotations"], {"note": "\\u0000"}))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    runtime("delete", "--force", cid)


def test_nul_error_goes_to_the_json_log(runtime, make_bundle, tmp_path):
    """containerd reads the error back from --log as JSON lines with level, msg and time."""
    bundle = _bundle_with(make_bundle, _set(["linux", "maskedPaths", 0], "/proc/\0kcore"))
    log = tmp_path / "log.json"
    proc = runtime("--log", log, "--log-format", "json", "create", "--bundle", bundle.path, runtime.new_id(),
                   check=False)
    one_error(proc, "linux.maskedPaths[0]: contains a NUL byte")
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["level"] == "error" and entry["msg"] == "linux.maskedPaths[0]: contains a NUL byte"
    assert entry["time"]


@pytest.fixture
def created(runtime, make_bundle):
    """A created container (sleep 10); deleted afterwards."""
    bundle = make_bundle("sleep", "10")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    yield cid
    runtime("delete", "--force", cid)


def test_nul_byte_in_exec_process_file(runtime, created, tmp_path):
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "cwd": "/", "env": ["A=\0"]}))
    one_error(runtime("exec", "--process", process, created, check=False),
              f"--process {process}: env[0]: contains a NUL byte")


@pytest.mark.parametrize("text, needle", [
    ('{"cpu": {"cpus": "0\\u00001"}}', "cpu.cpus: contains a NUL byte"),
    ('{"unified": {"pids.max\\u0000": "5"}}', 'unified["pids.max\\u0000"]: its key contains a NUL byte'),
    ("[" * 100000, "nested too deeply"),
    ('{"memory": ' + "[" * 900 + "]" * 900 + "}", "memory: must be an object"),
    ('{"memory": 5}', "memory: must be an object"),
    ('{"memory": {"limit": "1g"}}', "memory.limit: must be an integer"),
    ('{"memory": {"limit": 1e999}}', "memory.limit: must be an integer"),
    ('{"pids": {"limit": 99999999999999999999999}}', "pids.limit: must be <="),
    ('{"pids": {"limit": ' + "9" * 5000 + "}}", "longer than 4300 digits"),
    ('{"devices": [{"allow": "yes"}]}', "devices[0].allow: must be a boolean"),
    ('{"blockIO": {"weight": 70000}}', "blockIO.weight: must be <= 65535"),
])
def test_hostile_update_resources(runtime, created, text, needle):
    """update --resources is LinuxResources, checked as config.json's are."""
    one_error(runtime("update", "-r", "-", created, input=text, check=False), "update: ", needle)
    assert runtime.state(created)["status"] == "created"


@pytest.mark.parametrize("flag, value, needle", [
    ("--memory", "1e400", "--memory"),
    ("--cpu-share", "99999999999999999999999", "cpu.shares: must be <="),
])
def test_hostile_update_flags(runtime, created, flag, value, needle):
    one_error(runtime("update", f"{flag}={value}", created, check=False), needle)


# --- nesting, numbers and types in config.json -----------------------------------------------

@pytest.mark.parametrize("text, needle", [
    ("[" * 100000, "nested too deeply"),
    ('{"a":' * 100000, "nested too deeply"),
    ('{"ociVersion": ' + "9" * 5000 + "}", "longer than 4300 digits"),
])
def test_hostile_json_document(runtime, make_bundle, text, needle):
    bundle = make_bundle("true")
    (bundle.path / "config.json").write_text(text)
    one_error(create(runtime, bundle), "config.json", needle)


@pytest.mark.parametrize("field, change, needle", [
    ("process.user.uid", _set(["process", "user", "uid"], 10 ** 30), "must be <="),
    ("process.user.gid", _set(["process", "user", "gid"], -2 ** 70), "must be >="),
    ("process.oomScoreAdj", _set(["process", "oomScoreAdj"], float("inf")), "must be an integer"),
    ("process.rlimits[0].hard", _set(["process", "rlimits", 0], {"type": "RLIMIT_NOFILE", "soft": 1,
                                                                 "hard": 2 ** 64}), "must be <="),
    ("linux.resources.memory.limit", _set(["linux", "resources", "memory", "limit"], 2 ** 63), "must be <="),
    ("linux.resources.cpu.shares", _set(["linux", "resources", "cpu", "shares"], -1), "must be >="),
    ("linux.seccomp.syscalls[0].args[0].value", _set(["linux", "seccomp"], {
        "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
            "names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 2 ** 64, "op": "SCMP_CMP_EQ"}]}]}), "must be <="),
    ("linux.uidMappings", _set(["linux", "uidMappings"], {"containerID": 0}), "must be an array"),
    ("mounts[0].options", _set(["mounts", 0, "options"], {"ro": True}), "must be an array"),
    ("hooks.prestart[0].timeout", _set(["hooks", "prestart"], [dict(HOOK, timeout=2 ** 63)]), "must be <="),
])
def test_hostile_values_in_config(runtime, make_bundle, field, change, needle):
    bundle = _bundle_with(make_bundle, change)
    one_error(create(runtime, bundle), f"ociruntime: {field}: ", needle)


@pytest.mark.parametrize("field", ["hostname", "process.args[0]", "annotations.x", "x-vendor-extension"])
def test_deeply_nested_value_in_a_field(runtime, make_bundle, field):
    """Around the nesting where the parser stops (Python's recursion limit), the value is
    either refused naming its field or the document is "nested too deeply"; an unknown
    top-level key is the spec's extension point: nothing reads it, so that config runs."""
    bundle = make_bundle("true")
    for depth in range(960, 1000, 5):
        text = json.dumps(bundle.config)
        deep = "[" * depth + "]" * depth
        if field == "hostname":
            text = text.replace('"hostname": "ociruntime"', '"hostname": ' + deep)
        elif field == "process.args[0]":
            text = text.replace('"args": ["true"]', '"args": [' + deep + "]")
        elif field == "annotations.x":
            text = text[:-1] + ', "annotations": {"x": ' + deep + "}}"
        else:
            text = text[:-1] + f', "{field}": {deep}}}'
        (bundle.path / "config.json").write_text(text)
        proc = create(runtime, bundle)
        if proc.returncode == 0 and field == "x-vendor-extension":
            runtime("delete", "--force", proc.args[-1])
            continue
        line = one_error(proc)
        assert "invalid JSON: nested too deeply" in line or f"ociruntime: {field}: must be a string (got " in line, line


def test_line_break_in_a_value_stays_one_line(runtime, make_bundle):
    """An error quoting a value the user gave is still one line."""
    bundle = _bundle_with(make_bundle, _set(["root", "path"], "no\nsuch\r\nrootfs"))
    one_error(create(runtime, bundle), "root.path", "no\\nsuch\\r\\nrootfs")


# --- kill ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", ["SIGRTMIN+100", "RTMAX-99", "rtmin+31", "-5", "65", "99999999999999999999", "0x9",
                                 "", "SIG", "SIG_IGN", "NSIG", "KILL9", "\u0669", "9" * 5000])
def test_kill_refuses_a_signal_out_of_range(runtime, created, sig):
    line = one_error(runtime("kill", created, sig, check=False), "invalid signal")
    assert repr(sig)[:40] in line
    assert runtime.state(created)["status"] == "created", "no signal was sent"


@pytest.mark.parametrize("sig", ["0", "CONT", "sigcont", "28", "SIGWINCH", "rtmin+0", "RTMAX-0", "SIGRTMIN+30", "64"])
def test_kill_takes_signals_in_range(runtime, created, sig):
    proc = runtime("kill", created, sig)
    assert proc.stderr == ""


# --- the last line of defence ----------------------------------------------------------------

def test_an_unforeseen_exception_is_one_line_and_one_json_log_line(tmp_path):
    """A bug (here, a ValueError planted in dispatch) is still one line on stderr, exit 1,
    and one JSON line in the log; with --debug the traceback goes to the log only."""
    log = tmp_path / "log.json"
    for debug in ([], ["--debug"]):
        log.unlink(missing_ok=True)
        code = (
            "from ociruntime import main\n"
            "def broken(*args):\n"
            "    raise ValueError('planted bug')\n"
            "main.dispatch = broken\n"
            f"sys.argv = ['ociruntime', '--log', {str(log)!r}, '--log-format', 'json', *{debug!r}, 'state', 'x']\n"
            "main.entry()\n")
        proc = launcher_python(code)
        assert proc.returncode == 1, proc
        assert proc.stderr == "ociruntime: internal error: ValueError: planted bug\n"
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert entries[0]["level"] == "error" and entries[0]["msg"] == "internal error: ValueError: planted bug"
        assert entries[0]["time"]
        if debug:
            assert len(entries) == 2 and entries[1]["level"] == "debug"
            assert "Traceback" in entries[1]["msg"] and "planted bug" in entries[1]["msg"]
        else:
            assert len(entries) == 1


@pytest.mark.parametrize("args", [["create", "--preserve-fds=--5", "x"], ["update", "--pids-limit", "\u0665", "x"]])
def test_a_number_flag_takes_only_a_number(runtime, args):
    """"--5" and "٥" (an Arabic-Indic five: str.isdigit, but not int()'s) are usage errors."""
    proc = runtime(*args, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert args[1].partition("=")[0] in proc.stderr and "is not a number" in proc.stderr, proc.stderr


@pytest.mark.parametrize("count", ["-1", "99999999999"])
def test_preserve_fds_out_of_range(runtime, make_bundle, created, count):
    """-1 made create hang (the init's fds moved to 2 and up); a huge count was an OSError."""
    bundle = make_bundle("true")
    proc = runtime("create", "--bundle", bundle.path, f"--preserve-fds={count}", runtime.new_id(), check=False,
                   timeout=20)
    one_error(proc, f"--preserve-fds {count}: must be 0 to ")
    one_error(runtime("exec", f"--preserve-fds={count}", created, "true", check=False, timeout=20),
              f"--preserve-fds {count}: must be 0 to ")
