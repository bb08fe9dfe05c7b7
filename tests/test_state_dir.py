"""A hostile or damaged state directory: every command answers with one line naming the
container and the file; delete --force removes only what it can prove is the
container's, and nothing on the word of the state record alone."""

import hashlib
import hmac
import json
import os
import subprocess

import pytest
from conftest import create_and_start

pytestmark = pytest.mark.root

_MAC = b',"mac":"'


def _files(runtime, cid):
    return os.path.join(runtime.root, cid, "state.json"), runtime.root.rstrip("/") + ".key"


def read_record(runtime, cid):
    path, _ = _files(runtime, cid)
    with open(path, "rb") as f:
        raw = f.read()
    return json.loads(raw[:raw.rfind(_MAC)] + b"}")


def write_record(runtime, cid, data, sign=True):
    """Write ``data`` as the record, signed with the root's key (as the runtime would) or not."""
    path, key_path = _files(runtime, cid)
    body = json.dumps(data, separators=(",", ":")).encode() if not isinstance(data, bytes) else data
    if sign:
        with open(key_path, "rb") as f:
            mac = hmac.new(f.read(), body, hashlib.sha256).hexdigest().encode()
        body = body[:-1] + _MAC + mac + b'"}'
    with open(path, "wb") as f:
        f.write(body)


def _one_error_line(proc, *names):
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("ociruntime:")]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


DAMAGE = {
    "truncated": lambda raw: (raw[: len(raw) // 2], False),
    "empty": lambda raw: (b"", False),
    "garbage": lambda raw: (os.urandom(200), False),
    "edited without the key": lambda raw: (_edit(raw, owner="x")[:-1] + raw[raw.rfind(_MAC):], False),
    # Signed with the key: what the runtime itself might have written, were it wrong.
    "a list": lambda raw: (b"[1,2,3]", True),
    "deeply nested": lambda raw: (b'{"a":' * 100000 + b"1" + b"}" * 100000, True),
    "pid a string": lambda raw: (_edit(raw, pid="1"), True),
    "cgroup_paths a list": lambda raw: (_edit(raw, cgroup_paths=["/sys/fs/cgroup"]), True),
    "hooks wrong": lambda raw: (_edit(raw, hooks={"poststop": "rm -rf /"}), True),
    "no pid": lambda raw: (_edit(raw, pid=None), True),
    "a NUL in the bundle": lambda raw: (_edit(raw, bundle="/tmp/\0x"), True),
}


def _edit(raw, **changes):
    data = json.loads(raw[:raw.rfind(_MAC)] + b"}")
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data, separators=(",", ":")).encode()


COMMANDS = [("state",), ("start",), ("kill", "KILL"), ("pause",), ("resume",), ("update", "--pids-limit", "10"),
            ("events", "--stats"), ("ps",), ("exec", "true"), ("delete",)]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_command_names_the_damaged_record(runtime, make_bundle, damage):
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    path, _ = _files(runtime, cid)
    with open(path, "rb") as f:
        good = f.read()
    bad, sign = DAMAGE[damage](good)
    write_record(runtime, cid, bad, sign=sign)
    for cmd in COMMANDS:
        verb, *rest = cmd
        _one_error_line(runtime(verb, cid, *rest, check=False), cid, path)
    listing = runtime("list", check=False)
    assert listing.returncode == 0 and cid not in listing.stdout and path in listing.stderr, listing
    with open(path, "wb") as f:
        f.write(good)
    runtime("delete", "--force", cid)


def test_delete_force_of_a_damaged_record_removes_only_the_directory(runtime, make_bundle):
    """Nothing in a record that can't be verified is trusted: the init and the cgroups
    stay (leaked, but never someone else's), the state directory goes."""
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    path, _ = _files(runtime, cid)
    with open(path, "rb") as f:
        good = f.read()
    pid = read_record(runtime, cid)["pid"]
    write_record(runtime, cid, b"{not json", sign=False)
    proc = runtime("delete", "--force", cid)
    assert path in proc.stderr and "damaged" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.dirname(path))
    assert os.path.exists(f"/proc/{pid}"), "the unverified record's pid was killed"
    os.mkdir(os.path.dirname(path), 0o711)  # the good record back, for the cleanup
    with open(path, "wb") as f:
        f.write(good)
    runtime("delete", "--force", cid)
    assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"


def test_a_path_added_to_the_created_cgroups_is_not_removed(runtime, make_bundle, tmp_path):
    """The issue's case: an empty directory named in cgroups_created was rmdir'd wherever
    it pointed. Not with the record edited (its signature fails), nor signed with the
    key (it is no cgroup of the container)."""
    bundle = make_bundle("sleep", "100")
    for sign in (False, True):
        cid = create_and_start(runtime, bundle)
        victim = tmp_path / f"victim-{sign}"
        victim.mkdir()
        path, _ = _files(runtime, cid)
        with open(path, "rb") as f:
            good = f.read()
        data = read_record(runtime, cid)
        leaf = next(iter(data["cgroup_paths"].values()))
        outside = f"{os.path.dirname(leaf)}/victim-{cid}"  # a cgroup, but not the container's
        os.mkdir(outside)
        try:
            write_record(runtime, cid, _edit(good, cgroups_created=data["cgroups_created"] + [str(victim), outside]),
                         sign=sign)
            runtime("delete", "--force", cid)
            assert victim.is_dir() and os.path.isdir(outside)
        finally:
            os.rmdir(outside)
        if not sign:  # the unverified record left the container: put it back and delete it
            os.mkdir(os.path.dirname(path), 0o711)
            with open(path, "wb") as f:
                f.write(good)
            runtime("delete", "--force", cid)


def test_cgroups_that_hold_the_runtime_or_a_hierarchy_root_are_left_alone(runtime, make_bundle):
    """A record (even signed) naming the hierarchy's root or the caller's own cgroup:
    delete --force neither signals what is in them nor removes them."""
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    data = read_record(runtime, cid)
    with open("/proc/self/cgroup") as f:
        own = {line.split(":")[1]: line.rstrip("\n").split(":", 2)[2] for line in f}
    forged = dict(data["cgroup_paths"])
    key = next(k for k in forged if k and k in own and own[k] != "/")
    mount = forged[key][: forged[key].rindex(data["cgroup_paths"][key].rsplit("/", 1)[1]) - 1]
    mount = mount[: len(mount) - len(own[key].rstrip("/"))] if mount.endswith(own[key].rstrip("/")) else mount
    forged[key] = mount.rstrip("/") + own[key]  # this test's own cgroup: delete --force runs in it too
    other = next(k for k in forged if k != key)
    forged[other] = forged[other][: forged[other].index("/", len("/sys/fs/cgroup/"))]  # a hierarchy root
    write_record(runtime, cid, dict(data, cgroup_paths=forged))
    proc = runtime("delete", "--force", cid, check=False)
    assert "holds the runtime's own cgroup" in proc.stderr, proc.stderr
    assert os.getpid()  # still here: nothing in our own cgroup was killed
    # The container's real cgroups were not named: clean up through the true record.
    os.mkdir(os.path.join(runtime.root, cid), 0o711)
    write_record(runtime, cid, data)
    runtime("delete", "--force", cid)


def test_a_forged_pid_is_not_signalled(runtime, make_bundle):
    """A signed record naming another process (its real start time too): neither kill
    nor delete --force signals it, for it is not in the container's cgroups."""
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    data = read_record(runtime, cid)
    victim = subprocess.Popen(["sleep", "100"])
    try:
        with open(f"/proc/{victim.pid}/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19])
        write_record(runtime, cid, dict(data, pid=victim.pid, init_start_time=start))
        assert runtime.state(cid)["status"] != "stopped"  # state may say so: it only reads
        _one_error_line(runtime("kill", cid, "KILL", check=False), "not running")
        runtime("delete", "--force", cid)
        assert victim.poll() is None, "the forged pid was killed"
    finally:
        victim.kill()
        victim.wait()


def test_state_is_safe_against_pid_reuse(runtime, make_bundle):
    """A stale pid that now belongs to another process must not look alive."""
    bundle = make_bundle("true")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    data = read_record(runtime, cid)
    write_record(runtime, cid, dict(data, pid=os.getpid()))  # alive, but not the init we started
    assert runtime.state(cid)["status"] == "stopped"
    write_record(runtime, cid, data)
    runtime("delete", "--force", cid)


def test_a_directory_without_a_record(runtime):
    """What a create killed before its first record leaves: delete --force removes it."""
    cid = runtime.new_id()
    os.makedirs(os.path.join(runtime.root, cid))
    _one_error_line(runtime("state", cid, check=False), cid, "does not exist")
    runtime("delete", "--force", cid)
    assert not os.path.exists(os.path.join(runtime.root, cid))


def test_what_is_not_a_state_directory_is_left(runtime, make_bundle):
    cid = runtime.new_id()
    os.makedirs(runtime.root, exist_ok=True)
    stray = os.path.join(runtime.root, cid)
    with open(stray, "w") as f:
        f.write("not a directory")
    _one_error_line(runtime("delete", "--force", cid, check=False), cid)
    assert os.path.isfile(stray)
    os.unlink(stray)
    cid = create_and_start(runtime, make_bundle("sleep", "100"))
    inner = os.path.join(runtime.root, cid, "somebody's")
    os.mkdir(inner)
    _one_error_line(runtime("delete", "--force", cid, check=False), "somebody's")
    assert os.path.isdir(inner) and os.path.exists(os.path.join(runtime.root, cid, "state.json"))
    os.rmdir(inner)
    runtime("delete", "--force", cid)


def test_the_key(runtime, make_bundle):
    """Records are verified with <root>.key: gone or not the runtime's, nothing is trusted."""
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    path, key_path = _files(runtime, cid)
    assert os.stat(key_path).st_mode & 0o777 == 0o600
    os.chmod(key_path, 0o644)
    _one_error_line(runtime("state", cid, check=False), key_path)
    os.chmod(key_path, 0o600)
    os.rename(key_path, key_path + ".away")
    _one_error_line(runtime("kill", cid, "KILL", check=False), key_path)
    os.rename(key_path + ".away", key_path)
    runtime("delete", "--force", cid)


def test_a_root_that_is_not_a_directory(tmp_path):
    """--root naming a file: one line for list and state, as runc's."""
    from conftest import Runtime

    stray = tmp_path / "file"
    stray.write_text("")
    rt = Runtime(stray)
    _one_error_line(rt("list", check=False), str(stray), "Not a directory")
    _one_error_line(rt("state", "x", check=False), str(stray))


def test_list_format_is_checked(runtime):
    _one_error_line(runtime("list", "--format", "bogus", check=False), "invalid format option")
