"""Configs from hypothesis, valid and broken, through `create`, `kill` and `delete --force`.

Whatever the config, the runtime must answer with a container or with one clear error:
no Python traceback, no hang (each command has a timeout), and nothing left behind —
no state directory, no mount under the bundle, no process in its rootfs, no cgroup.
Hostile configs are drawn too: a NUL inside a string or a key (which must be refused for
it), nesting deeper than the parser goes, numbers past every range. Each created
container is sent a drawn signal, in range or not, before it is deleted; and the run
must have created some containers and refused some configs, or it tested little.

The number of configs is OCIRUNTIME_FUZZ_EXAMPLES (default 200, what CI runs; about
10 s here). CI draws the same configs every run (hypothesis' derandomize), so a red CI
names a change, not a lucky draw; OCIRUNTIME_FUZZ_RANDOM=1 explores fresh ones:
``OCIRUNTIME_FUZZ_RANDOM=1 OCIRUNTIME_FUZZ_EXAMPLES=3000 pytest tests/test_fuzz.py``.
Failing configs are reported together, each with what went wrong.
"""

import copy
import json
import os
import subprocess
from types import SimpleNamespace

import pytest
from conftest import leftovers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ociruntime.linux import capabilities, mountopts, seccomp
from ociruntime.spec import default_config

pytestmark = pytest.mark.root

EXAMPLES = int(os.environ.get("OCIRUNTIME_FUZZ_EXAMPLES", "200"))
RANDOM = os.environ.get("OCIRUNTIME_FUZZ_RANDOM") == "1"
TIMEOUT = 30

# Values a config might hold: mostly plausible, sometimes wrong in type or range.
paths = st.one_of(st.sampled_from(["/", "/tmp", "/proc", "/proc/sys", "/dev", "/dev/null", "/sys", "/etc/passwd",
                                   "relative", "../../..", "/../../etc", "/proc/self/fd/3", "/dev/shm/x", "", "//x"]),
                  st.text(alphabet="/.abc-_", max_size=20))
junk = st.recursive(st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.text(max_size=8),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children,
                                                                                     max_size=3), max_leaves=6)
ints = st.one_of(st.integers(-1, 70000), st.sampled_from([2**31, 2**32, 2**63, -2**63]))
# Numbers past every range: huge, negative, not integers at all (json.dumps writes Infinity, NaN).
numbers = st.one_of(ints, st.integers(-2**80, 2**80), st.sampled_from([2**64, -2**63 - 1, 10**30, -1, -2**31]),
                    st.floats())
DEEP = "__deep__"  # replaced in the JSON text by nesting json.dumps could not write

mount = st.fixed_dictionaries({
    "destination": paths,
    "type": st.sampled_from(["bind", "tmpfs", "proc", "sysfs", "mqueue", "devpts", "nosuchfs", ""]),
    "source": paths,
}, optional={"options": st.lists(st.sampled_from(sorted(mountopts.FLAGS) + sorted(mountopts.PROPAGATION)
                                                 + sorted(mountopts.EXTENSIONS)
                                                 + ["rbind", "bind", "mode=755", "size=1k", "bogus"]), max_size=4)})
syscall_rule = st.fixed_dictionaries({
    "names": st.lists(st.sampled_from(["mkdir", "getpid", "kill", "no_such_call", "write", "execve", "sendmsg"]),
                      min_size=1, max_size=3),
    "action": st.sampled_from(sorted(seccomp.ACTIONS) + ["SCMP_ACT_BOGUS"]),
}, optional={"errnoRet": ints, "args": st.lists(st.fixed_dictionaries({
    "index": st.integers(0, 7), "value": ints, "op": st.sampled_from(sorted(seccomp.OPERATORS) + ["SCMP_CMP_X"])},
    optional={"valueTwo": ints}), max_size=3)})
namespace = st.fixed_dictionaries({"type": st.sampled_from(["pid", "network", "mount", "ipc", "uts", "user",
                                                             "cgroup", "time", "bogus"])},
                                  optional={"path": st.sampled_from(["/nonexistent/ns", "/proc/self/fd/9", ""])})
caps = st.lists(st.sampled_from(capabilities.NAMES[:12] + ["CAP_BOGUS", "cap_chown"]), max_size=4)

# (path in the config, strategy): one change each; a config gets several.
CHANGES = [
    (("hostname",), st.one_of(st.text(max_size=70), junk)),
    (("process", "cwd"), paths),
    (("process", "args"), st.one_of(st.lists(st.sampled_from(["true", "/bin/true", "nosuch", "/proc/self/exe",
                                                              "sh", ""]), max_size=3), junk)),
    (("process", "env"), st.lists(st.text(max_size=12), max_size=3)),
    (("process", "user"), st.fixed_dictionaries({"uid": numbers, "gid": ints},
                                                optional={"additionalGids": st.lists(ints, max_size=3),
                                                          "umask": ints})),
    (("process", "noNewPrivileges"), st.one_of(st.booleans(), junk)),
    (("process", "rlimits"), st.lists(st.fixed_dictionaries({
        "type": st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_BOGUS"]),
        "soft": ints, "hard": ints}), max_size=3)),
    (("process", "capabilities"), st.fixed_dictionaries({}, optional={
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps})),
    (("process", "oomScoreAdj"), numbers),
    (("process", "scheduler"), st.fixed_dictionaries({"policy": st.sampled_from(
        ["SCHED_OTHER", "SCHED_BATCH", "SCHED_IDLE", "SCHED_FIFO", "SCHED_BOGUS"])}, optional={"nice": ints})),
    (("process", "ioPriority"), st.fixed_dictionaries({"class": st.sampled_from(
        ["IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE", "IOPRIO_CLASS_X"]), "priority": ints})),
    (("process", "apparmorProfile"), st.text(max_size=8)),
    (("mounts",), st.lists(mount, max_size=3)),
    (("root", "path"), st.sampled_from(["rootfs", "missing", "/", "rootfs/../rootfs", ""])),
    (("root", "readonly"), st.one_of(st.booleans(), junk)),
    (("linux", "namespaces"), st.lists(namespace, max_size=5)),
    (("linux", "maskedPaths"), st.lists(paths, max_size=3)),
    (("linux", "readonlyPaths"), st.lists(paths, max_size=3)),
    (("linux", "sysctl"), st.dictionaries(st.sampled_from(["kernel.hostname", "net.ipv4.ip_forward", "kernel.msgmax",
                                                           "kernel.core_pattern", "vm.swappiness", "bogus"]),
                                          st.sampled_from(["1", "0", "x", ""]), max_size=2)),
    (("linux", "resources"), st.fixed_dictionaries({}, optional={
        "memory": st.fixed_dictionaries({}, optional={"limit": numbers, "swap": ints}),
        "pids": st.fixed_dictionaries({"limit": numbers}),
        "cpu": st.fixed_dictionaries({}, optional={"shares": ints, "quota": ints, "period": ints, "cpus": paths}),
        "devices": st.lists(st.fixed_dictionaries({"allow": st.booleans()}, optional={
            "type": st.sampled_from(["a", "b", "c", "x"]), "major": ints, "access": st.text("rwmx", max_size=3)}),
            max_size=2)})),
    (("linux", "seccomp"), st.fixed_dictionaries({"defaultAction": st.sampled_from(sorted(seccomp.ACTIONS))},
                                                 optional={"syscalls": st.lists(syscall_rule, max_size=3),
                                                           "flags": st.lists(st.sampled_from(sorted(seccomp.FLAGS)
                                                                                             + ["X"]), max_size=2),
                                                           "architectures": st.lists(st.sampled_from(
                                                               ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_PPC",
                                                                "SCMP_ARCH_NOPE"]), max_size=2)})),
    (("linux", "personality"), st.fixed_dictionaries({"domain": st.sampled_from(["LINUX", "LINUX32", "X"])})),
    (("annotations",), st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), junk)),
    (("ociVersion",), st.one_of(st.sampled_from(["1.0.0", "1.3.0", "0.9", "2.0.0", "x"]), junk)),
]


def _set(config, path, value):
    node = config
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _delete(config, path):
    node = config
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _with_nul(draw, config):
    """Put a NUL somewhere inside one of ``config``'s strings or keys; the path it is at."""
    spots = []  # (container, key or index, whether the key itself is the string)

    def walk(node):
        members = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        for key, value in members:
            if isinstance(node, dict):
                spots.append((node, key, True))
            if isinstance(value, str):
                spots.append((node, key, False))
            walk(value)

    walk(config)
    node, key, is_key = draw(st.sampled_from(spots))
    text = key if is_key else node[key]
    at = draw(st.integers(0, len(text)))
    hostile = text[:at] + "\0" + text[at:]
    if is_key:
        node[hostile] = node.pop(key)
    else:
        node[key] = hostile


@st.composite
def config_files(draw):
    """``(bytes of a config.json, what it must give)``: a default config with changes, keys
    removed, subtrees replaced by junk, a NUL in one string or key, a subtree nested
    deeper than the parser goes; now and then not even JSON. A config with a NUL must be
    refused for it ("NUL"); anything else may be created or refused (None)."""
    kind = draw(st.sampled_from(["changed", "changed", "changed", "removed", "junk", "nul", "deep", "bytes"]))
    if kind == "bytes":
        return draw(st.one_of(st.binary(max_size=40), st.just(b""), st.just(b"[]"), st.just(b'{"ociVersion": "1.0.0"'),
                              st.just(b"null"))), None
    config = copy.deepcopy(default_config())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["true"]
    for n, index in enumerate(draw(st.lists(st.integers(0, len(CHANGES) - 1), min_size=1, max_size=4, unique=True))):
        path, strategy = CHANGES[index]
        if kind == "removed":
            _delete(config, path)
        elif kind == "junk":
            _set(config, path, draw(junk))
        elif kind == "deep" and n == 0:
            _set(config, path, DEEP)
        else:
            _set(config, path, draw(strategy))
    if kind == "nul":
        _with_nul(draw, config)
    text = json.dumps(config)
    if kind == "deep":
        depth = draw(st.sampled_from([50, 500, 950, 990, 1000, 5000, 100000]))
        opening, closing = draw(st.sampled_from([("[", "]"), ('{"a": ', "}"), ('[{"a": ', "}]")]))
        text = text.replace(f'"{DEEP}"', opening * depth + "1" + closing * depth)
    return text.encode(), "NUL" if kind == "nul" else None


# kill's argument: names and numbers in range, past it, and whatever text (argv has no NUL).
signals = st.one_of(
    st.sampled_from(["KILL", "TERM", "0", "CONT", "STOP", "sigusr1", "SIGRTMIN+3", "rtmax-1", "64", "65",
                     "SIGRTMIN+100", "RTMAX-99", "-5", "99999999999999999999", "0x9", "", "SIG_IGN", "SIGBOGUS"]),
    st.integers(-100, 100).map(str),
    st.text(max_size=12).filter(lambda t: "\0" not in t))


def _unmount_under(path):
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(path)]
    for target in reversed(targets):
        subprocess.run(["umount", "-l", target], check=False)


def _one_error_line(proc, verb):
    """What is wrong with ``proc``'s refusal, if anything: one line, ociruntime's, no traceback."""
    if "Traceback" in proc.stderr:
        return f"{verb}: traceback: {proc.stderr[-800:]}"
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("ociruntime: warning:")]
    if len(errors) != 1 or not errors[0].startswith("ociruntime: "):
        return f"{verb}: not one clear error line: {proc.stderr[-600:]!r}"
    return None


def test_fuzzed_configs_create_and_delete_cleanly(runtime, make_bundle, tmp_path):
    bundle = make_bundle("true")
    problems = []
    outcomes = {"created": 0, "refused": 0, "refused for a NUL": 0, "signalled": 0, "signal refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(config_files(), signals)
    def one(config, sig):
        config_bytes, expected = config
        (bundle.path / "config.json").write_bytes(config_bytes)
        cid = runtime.new_id("fz")
        found = []
        try:
            proc = runtime("create", "--bundle", bundle.path, cid, check=False, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            found.append(f"create hung (> {TIMEOUT} s)")
            proc = None
        if proc is not None and proc.returncode == 0:
            outcomes["created"] += 1
            if expected == "NUL":
                found.append("created although a string holds a NUL")
            killed = runtime("kill", "--", cid, sig, check=False, timeout=TIMEOUT)
            if killed.returncode == 0:
                outcomes["signalled"] += 1
            else:
                outcomes["signal refused"] += 1
                found.append(_one_error_line(killed, f"kill {sig!r}"))
            gone = runtime("delete", "--force", cid, check=False, timeout=TIMEOUT)
            if gone.returncode != 0 or "Traceback" in gone.stderr:
                found.append(f"delete --force exited {gone.returncode}: {gone.stderr[-400:]}")
        elif proc is not None:
            outcomes["refused"] += 1
            found.append(_one_error_line(proc, "create"))
            if expected == "NUL" and "contains a NUL byte" in proc.stderr:
                outcomes["refused for a NUL"] += 1
            elif expected == "NUL":
                found.append(f"not refused for its NUL: {proc.stderr[-300:]!r}")
        left = leftovers(SimpleNamespace(root=runtime.root, ids={cid}), tmp_path)  # this container's only
        if left:
            said = f"create exited {proc.returncode}: {proc.stderr[-300:]!r}" if proc is not None else "create hung"
            found.append(f"left behind: {left} ({said})")
            runtime("delete", "--force", cid, check=False)
            _unmount_under(str(bundle.path))
            for item in left:  # so that one leak is not reported again by every later config
                if item.startswith("process "):
                    subprocess.run(["kill", "-9", item.split()[1]], check=False)
        found = [f for f in found if f]
        if found:
            problems.append({"config": config_bytes[:2000].decode(errors="replace"), "problems": found})

    one()
    print(f"\nfuzz: {EXAMPLES} configs asked for; " + ", ".join(f"{n} {what}" for what, n in outcomes.items())
          + f"; {len(problems)} with problems")
    assert not problems, json.dumps(problems[:5], indent=1)
    if EXAMPLES >= 100:  # a fuzzer that only ever draws refusals (or only successes) tests little
        assert outcomes["created"] >= EXAMPLES // 20, outcomes
        assert outcomes["refused"] >= EXAMPLES // 20 and outcomes["refused for a NUL"], outcomes
        assert outcomes["signalled"] and outcomes["signal refused"], outcomes
