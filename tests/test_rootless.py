"""Rootless (ociruntime/rootless.py): containers created by an ordinary user — one this
module makes (useradd, with /etc/subuid and /etc/subgid ranges, an XDG_RUNTIME_DIR it
owns, bundles it owns) and removes with all it made. Every verb is run as that user and
checked from inside, or refused with one line naming the field and nothing left behind.

Each scenario runs with runc as the same user too: the reference column of the table
test_zz_table prints (``pytest -s``). runc's outcome is recorded, never required.

The unit tests at the end need no user: the decisions rootless.py makes, on fakes.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest
from conftest import RUNTIME
from containerd import _command  # a process's command line, for the leftover report
from users import User, ordinary_user, unmount_below

from ociruntime import plan as plan_mod
from ociruntime import rootless
from ociruntime.errors import ConfigError, OCIError

RUNC = shutil.which("runc") or "/usr/sbin/runc"
RUNTIMES = {"ociruntime": RUNTIME, "runc": RUNC}
TABLE = {}  # scenario -> {runtime: outcome}, for test_zz_table


# --- the user, its bundles, and running as it ------------------------------------------------

@pytest.fixture(scope="module")
def user():
    """An ordinary user of this module's (tests/users.py: removed with all it made, a
    leftover failing the teardown); the containers the scenarios made deleted first."""
    if not shutil.which("useradd") or not shutil.which("newuidmap"):
        pytest.skip("needs useradd and newuidmap (Debian's passwd and uidmap)")
    with ordinary_user("ocirl") as u:
        try:
            yield u
        finally:
            for which, ids in u.ids.items():
                for cid in ids:
                    u.run(RUNTIMES[which], "delete", "--force", cid)


@pytest.fixture(scope="module")
def rootless_config(user):
    """What `ociruntime spec --rootless` writes as the user (test_spec_rootless_is_runcs
    checks it against runc's), without a terminal."""
    out = os.path.join(user.work, "spec")
    os.mkdir(out)
    os.chown(out, user.uid, user.gid)
    proc = user.run(RUNTIME, "spec", "--rootless", "--bundle", out)
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    return config


@pytest.fixture
def bundle(user, rootless_config, rootfs_template):
    """bundle(*args, change=None) -> a directory the user owns: the rootless config running
    ``args``, after ``change(config)``."""
    made = []

    def make(*args, change=None):
        path = tempfile.mkdtemp(prefix="bundle-", dir=user.work)
        shutil.copytree(rootfs_template, f"{path}/rootfs", symlinks=True)
        config = json.loads(json.dumps(rootless_config))
        config["process"]["args"] = list(args) or ["true"]
        if change:
            change(config)
        with open(f"{path}/config.json", "w") as f:
            json.dump(config, f)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", path], check=True)
        made.append(path)
        return path

    yield make
    for path in made:
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


class As:
    """One runtime run as the user, with its default --root ($XDG_RUNTIME_DIR/<name>)."""

    def __init__(self, which, user):
        self.which, self.user, self.binary = which, user, RUNTIMES[which]

    def __call__(self, *args, env=None, binary=True):
        return self.user.run(*[self.binary] * binary, *args, env=env)

    def new_id(self):
        cid = f"rl-{uuid.uuid4().hex[:8]}"
        self.user.ids[self.which].add(cid)
        return cid

    def state(self, cid):
        proc = self("state", cid)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def wait(self, cid, status, timeout=5):
        deadline = time.monotonic() + timeout
        while (self.state(cid) or {}).get("status") != status:
            assert time.monotonic() < deadline, f"{cid} never became {status}: {self.state(cid)}"
            time.sleep(0.02)


def refused(proc):
    """The one line a refused command leaves (runc's logrus lines: their msg)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "level=error" in line or "level=fatal" in line] or lines
    line = errors[-1] if errors else f"exit {proc.returncode}, nothing said"
    return line.split('msg="', 1)[1].rstrip('"') if 'msg="' in line else line


def record(scenario, which, outcome):
    TABLE.setdefault(scenario, {})[which] = outcome
    return outcome


def leftovers(user, before=()):
    """What the user has on the machine beyond its idle state: state directories under
    ociruntime's default root, processes (but ``before``), mounts of its work tree."""
    found = []
    root = f"{user.xdg}/ociruntime"
    if os.path.isdir(root):
        found += [f"state {n}" for n in os.listdir(root)]
    found += [f"process {pid} {_command(pid)}" for pid in user.processes() if pid not in before]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if line.split()[4].startswith(user.work + "/")]
    return found


@pytest.fixture(params=["ociruntime", "runc"])
def rt(request, user):
    """Each scenario with ociruntime (checked) and runc (recorded). Ours must leave nothing."""
    runtime = As(request.param, user)
    if request.param == "runc" and not os.path.exists(RUNC):
        pytest.skip("no runc: the reference column stays empty")
    before = set(user.processes())
    yield runtime
    if request.param == "ociruntime":
        left = leftovers(user, before)
        for cid in user.ids["ociruntime"]:
            runtime("delete", "--force", cid)
        assert not left, f"left behind: {left}"


def outcome(rt, scenario, ok, detail, expected):
    """Record the outcome; ours must be ``expected`` ("works", or "refused: <words in the line>")."""
    said = record(scenario, rt.which, "works" if ok else f"refused: {detail}")
    if rt.which == "ociruntime":
        if expected == "works":
            assert ok, detail
        else:
            assert not ok and expected.removeprefix("refused: ") in detail, detail
    return said


# --- the verbs ----------------------------------------------------------------------------------

def test_spec_rootless_is_runcs(user, rootless_config):
    """runc spec --rootless as the same user: the same config, but for hostname and ociVersion."""
    if not os.path.exists(RUNC):
        pytest.skip("no runc")
    out = tempfile.mkdtemp(dir=user.work)
    os.chown(out, user.uid, user.gid)
    assert user.run(RUNC, "spec", "--rootless", "--bundle", out).returncode == 0
    with open(f"{out}/config.json") as f:
        theirs = json.load(f)
    ours = dict(rootless_config, process=dict(rootless_config["process"], terminal=True))
    for config in (ours, theirs):
        del config["hostname"], config["ociVersion"]
    assert ours == theirs
    assert ours["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    record("spec --rootless", "ociruntime", "works")
    record("spec --rootless", "runc", "works")


def test_run_maps_the_callers_ids(rt, user, bundle):
    """run: root inside is the user outside; setgroups is denied (the runtime wrote the maps)."""
    path = bundle("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u; id -g; "
                              "hostname; grep CapEff /proc/self/status")
    proc = rt("run", "--bundle", path, rt.new_id())
    outcome(rt, "run (ids mapped by the runtime)", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        lines = [line.split() for line in proc.stdout.splitlines()]
        assert lines[:3] == [["0", str(user.uid), "1"], ["0", str(user.gid), "1"], ["deny"]], proc.stdout
        assert lines[3:6] == [["0"], ["0"], ["ociruntime"]], proc.stdout
        assert lines[6] == ["CapEff:", "0000000020000420"], proc.stdout  # AUDIT_WRITE, KILL, NET_BIND_SERVICE


def test_lifecycle_under_xdg_runtime_dir(rt, user, bundle):
    """create (pid file), state, start, list, state, kill, delete; the state under
    $XDG_RUNTIME_DIR/<runtime>, a directory only the user reads (0700 and sticky, as runc's)."""
    path = bundle("sleep", "1000")
    cid = rt.new_id()
    pid_file = f"{path}/pid"
    steps = []
    proc = rt("create", "--bundle", path, "--pid-file", pid_file, cid)
    steps.append(("create", proc))
    if proc.returncode == 0:
        created = rt.state(cid)
        steps.append(("start", rt("start", cid)))
        listed = rt("list", "--format", "json")
        steps.append(("list", listed))
        running = rt.state(cid)
        steps.append(("kill", rt("kill", cid, "KILL")))
        rt.wait(cid, "stopped")
        steps.append(("delete", rt("delete", cid)))
        gone = rt("state", cid)
    failed = next(((verb, p) for verb, p in steps if p.returncode != 0), None)
    for verb in ("create", "state", "start", "list", "kill", "delete"):
        outcome(rt, verb, failed is None, failed and f"{failed[0]}: {refused(failed[1])}", "works")
    if rt.which == "ociruntime":
        with open(pid_file) as f:
            assert int(f.read()) == created["pid"]
        assert (created["status"], running["status"]) == ("created", "running")
        assert [c["id"] for c in json.loads(listed.stdout)] == [cid]
        assert gone.returncode != 0 and "does not exist" in gone.stderr
        st = os.stat(f"{user.xdg}/ociruntime")
        assert (st.st_uid, oct(st.st_mode & 0o7777)) == (user.uid, oct(0o1700))


@pytest.fixture
def running(rt, bundle):
    """A running container of ``sleep 1000``; its id."""
    cid = rt.new_id()
    proc = rt("run", "--detach", "--bundle", bundle("sleep", "1000"), cid)
    assert proc.returncode == 0, proc.stderr
    yield cid
    rt("delete", "--force", cid)


def test_exec(rt, running):
    proc = rt("exec", running, "sh", "-c", "id -u; cat /proc/self/setgroups")
    outcome(rt, "exec", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        assert proc.stdout.split() == ["0", "deny"]


def test_ps(rt, running):
    """Without cgroups, ours lists the init's pid namespace; runc's ps needs the cgroups."""
    rt("exec", "--detach", running, "sleep", "999")
    proc = rt("ps", "--format", "json", running)
    outcome(rt, "ps", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        pids = json.loads(proc.stdout)
        with open(f"/proc/{pids[0]}/cmdline") as f:
            assert len(pids) == 2 and f.read().startswith("sleep"), pids


def test_kill_all(rt, running):
    rt("exec", "--detach", running, "sleep", "999")
    proc = rt("kill", "--all", running, "KILL")
    ok = proc.returncode == 0
    if ok:
        rt.wait(running, "stopped")
    outcome(rt, "kill --all", ok, refused(proc), "works")


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_pause_and_resume_need_a_freezer(rt, running, verb):
    """No cgroup of its own: nothing to freeze (runc: cgroups not configured)."""
    proc = rt(verb, running)
    expected = "refused: no freezer" if verb == "pause" else "refused: not paused"
    outcome(rt, verb, proc.returncode == 0, refused(proc), expected)
    if rt.which == "ociruntime":
        assert rt.state(running)["status"] == "running"


def test_update_needs_a_cgroup(rt, running):
    proc = rt("update", "--memory", "100m", running)
    outcome(rt, "update", proc.returncode == 0, refused(proc), "refused: linux.resources.memory.limit")


def test_events_stats(rt, running):
    proc = rt("events", "--stats", running)
    ok = proc.returncode == 0 and json.loads(proc.stdout)["type"] == "stats"
    outcome(rt, "events --stats", ok, refused(proc), "works")


# --- id maps ----------------------------------------------------------------------------------------

def _sub_ids(user, uid_first=None):
    """Root is the user, 1..65536 its sub-ids (or a range from ``uid_first`` on)."""
    def change(config):
        for field, (first, _) in (("uidMappings", user.subuid), ("gidMappings", user.subgid)):
            config["linux"][field] = [{"containerID": 0, "hostID": user.uid if field[0] == "u" else user.gid,
                                       "size": 1},
                                      {"containerID": 1, "hostID": uid_first or first, "size": 65536}]
        config["process"]["user"] = {"uid": 1000, "gid": 1000}
    return change


def test_sub_ids_through_newuidmap(rt, user, bundle):
    path = bundle("sh", "-c", "cat /proc/self/uid_map /proc/self/setgroups; id -u", change=_sub_ids(user))
    proc = rt("run", "--bundle", path, rt.new_id())
    outcome(rt, "run, sub-ids (newuidmap/newgidmap)", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        first, count = user.subuid
        assert [line.split() for line in proc.stdout.splitlines()] == [
            ["0", str(user.uid), "1"], ["1", str(first), "65536"], ["allow"], ["1000"]], proc.stdout


def test_ids_not_delegated(rt, user, bundle):
    """Host ids outside the user's /etc/subuid range: newuidmap says no; nothing is left."""
    taken = user.subuid[0] + user.subuid[1]
    proc = rt("run", "--bundle", bundle("true", change=_sub_ids(user, taken + 1000000)), rt.new_id())
    outcome(rt, "run, ids not delegated", proc.returncode == 0, refused(proc),
            "refused: linux.uidMappings: /usr/bin/newuidmap")


def test_additional_gids_with_sub_gids(rt, user, bundle):
    """Mapped by newgidmap, setgroups is allowed: the groups are set (runc refuses any)."""
    def change(config):
        _sub_ids(user)(config)
        config["process"]["user"]["additionalGids"] = [5, 20]

    proc = rt("run", "--bundle", bundle("id", "-G", change=change), rt.new_id())
    outcome(rt, "additionalGids, sub-gids mapped", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        assert proc.stdout.split() == ["1000", "5", "20"]


# --- refused up front: one line naming the field, nothing left --------------------------------------

def _without_userns(config):
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
    del linux["uidMappings"], linux["gidMappings"]


REFUSALS = {
    "no user namespace": (_without_userns, "linux.namespaces: rootless"),
    "resource limits": (lambda c: c["linux"].update(resources={"memory": {"limit": 100 << 20}}),
                        "linux.resources: rootless"),
    "cgroupsPath": (lambda c: c["linux"].update(cgroupsPath="/rootless-test"), "linux.cgroupsPath: rootless"),
    "additionalGids, own gid only": (lambda c: c["process"]["user"].update(additionalGids=[0]),
                                     "process.user.additionalGids: rootless"),
    "uid= mount option unmapped": (lambda c: c["mounts"][2]["options"].append("uid=5"),
                                   "mounts[2].options: uid=5: not mapped"),
    "process.user.uid unmapped": (lambda c: c["process"]["user"].update(uid=1000),
                                  "process.user.uid: 1000 is not mapped"),
    "oomScoreAdj below the caller's": (lambda c: c["process"].update(oomScoreAdj=-500),
                                       "process.oomScoreAdj: write -500: Permission denied"),
    "time namespace": (lambda c: c["linux"]["namespaces"].append({"type": "time"}), "linux.namespaces: rootless"),
    "netDevices": (lambda c: c["linux"].update(netDevices={"lo": {}}), "linux.netDevices: rootless"),
}


@pytest.mark.parametrize("scenario", REFUSALS)
def test_refused(rt, bundle, scenario):
    change, says = REFUSALS[scenario]
    proc = rt("run", "--bundle", bundle("true", change=change), rt.new_id())
    outcome(rt, scenario, proc.returncode == 0, refused(proc), f"refused: {says}")
    if rt.which == "ociruntime":
        assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_rootless_false_keeps_cgroups_required(rt, bundle):
    """--rootless false: cgroup permission errors are errors (as runc's)."""
    proc = rt("--rootless", "false", "run", "--bundle", bundle("true"), rt.new_id())
    outcome(rt, "--rootless false", proc.returncode == 0, refused(proc), "refused: Permission denied")


def test_no_state_root_without_xdg_runtime_dir(rt, user, bundle):
    """No XDG_RUNTIME_DIR, no --root: the default under /run is root's."""
    proc = rt("run", "--bundle", bundle("true"), rt.new_id(), env=user.env(XDG_RUNTIME_DIR=None))
    outcome(rt, "no XDG_RUNTIME_DIR, no --root", proc.returncode == 0, refused(proc),
            "refused: --root: the default /run/ociruntime is not writable")


# --- made to work as runc makes it ----------------------------------------------------------------

def test_devices_are_bound_from_the_host(rt, bundle):
    def change(config):
        config["linux"]["devices"] = [{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5}]

    proc = rt("run", "--bundle", bundle("sh", "-c", "stat -c %t,%T /dev/zero; head -c 3 /dev/zero | od -An -tx1",
                                        change=change), rt.new_id())
    outcome(rt, "linux.devices (bound from the host)", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        assert proc.stdout.split() == ["1,5", "00", "00", "00"]


def test_terminal(rt, bundle):
    """process.terminal: the pty is made in the container's devpts (script(1) gives run a tty)."""
    if not shutil.which("script"):
        pytest.skip("no script (util-linux)")
    path = bundle("sh", "-c", "tty; id -u", change=lambda c: c["process"].update(terminal=True))
    proc = rt("script", "-qec", f"{rt.binary} run --bundle {path} {rt.new_id()}", "/dev/null", binary=False)
    outcome(rt, "run, process.terminal", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        assert proc.stdout.split() == ["/dev/pts/0", "0"], proc.stdout


def test_network_namespace_and_sysfs(rt, bundle):
    """A network namespace of the container's own: sysfs can be mounted (the user
    namespace owns it), and only the loopback is there."""
    def change(config):
        config["linux"]["namespaces"].append({"type": "network"})
        sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
        sys_mount.update(type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])

    proc = rt("run", "--bundle", bundle("ls", "/sys/class/net", change=change), rt.new_id())
    outcome(rt, "network namespace, sysfs", proc.returncode == 0, refused(proc), "works")
    if rt.which == "ociruntime":
        assert proc.stdout.split() == ["lo"]


# --- a delegated cgroup v2 subtree (pure cgroup v2: the qemu lane's guest) -------------------------

@pytest.fixture
def nobody():
    """nobody (the guest has no useradd), with an XDG_RUNTIME_DIR and a work directory."""
    u = User("nobody")
    os.makedirs(u.xdg, 0o700, exist_ok=True)
    for path in (u.xdg, u.work):
        os.chown(path, u.uid, u.gid)
    yield u
    for path in (u.work, u.xdg):
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def delegated(nobody):
    """A subtree delegated to ``nobody`` as systemd delegates user@UID.service: its directory,
    cgroup.procs, cgroup.subtree_control and cgroup.threads are the user's, memory and pids
    enabled in it; the user's processes start in its leaf "runner". Yields its path."""
    top = f"/sys/fs/cgroup/rl-{uuid.uuid4().hex[:8]}"
    os.mkdir(top)
    try:
        for directory in ("/sys/fs/cgroup", top):
            for controller in ("memory", "pids"):
                with open(f"{directory}/cgroup.subtree_control", "w") as f:
                    f.write(f"+{controller}")
        os.mkdir(f"{top}/runner")
        for path in (top, f"{top}/runner"):
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(f"{path}/{name}".rstrip("/"), nobody.uid, nobody.gid)
        yield top
    finally:
        for d in sorted((d for d, _, _ in os.walk(top)), key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass


@pytest.mark.cgroup_v2
def test_a_delegated_cgroup_v2_subtree(nobody, delegated, rootfs_template):
    """Rootless with a cgroup the user may make: the container's cgroup is made in the
    delegated subtree, with its limits; pause, resume, update, ps and events work there;
    delete removes it. Controllers the delegator didn't enable are left alone."""
    path = os.path.join(nobody.work, "bundle")
    shutil.copytree(rootfs_template, f"{path}/rootfs", symlinks=True)
    subprocess.run(["chown", "-R", f"{nobody.uid}:{nobody.gid}", path], check=True)
    assert nobody.run(RUNTIME, "spec", "--rootless", "--bundle", path).returncode == 0
    with open(f"{path}/config.json") as f:
        config = json.load(f)
    config["process"].update(terminal=False, args=["sleep", "1000"])
    config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}
    with open(f"{path}/config.json", "w") as f:
        json.dump(config, f)
    cid = f"rl-{uuid.uuid4().hex[:8]}"

    def run(*args):
        proc = nobody.run(RUNTIME, *args, cgroup=f"{delegated}/runner")
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc.stdout

    mine = f"{delegated}/{cid}"
    try:
        run("create", "--bundle", path, cid)
        pid = json.loads(run("state", cid))["pid"]
        run("start", cid)
        with open(f"/proc/{pid}/cgroup") as f:
            assert f.read() == f"0::{mine.removeprefix('/sys/fs/cgroup')}\n"
        with open(f"{mine}/memory.max") as f, open(f"{mine}/pids.max") as g:
            assert (f.read(), g.read()) == (f"{64 << 20}\n", "50\n")
        run("pause", cid)
        assert json.loads(run("state", cid))["status"] == "paused"
        run("resume", cid)
        run("update", "--memory", "32m", cid)
        with open(f"{mine}/memory.max") as f:
            assert f.read() == f"{32 << 20}\n"
        assert json.loads(run("ps", "--format", "json", cid)) == [pid]
        assert json.loads(run("events", "--stats", cid))["data"]["pids"]["current"] == 1
        run("kill", cid, "KILL")
        run("delete", "--force", cid)
        assert not os.path.exists(mine)
    finally:
        nobody.run(RUNTIME, "delete", "--force", cid)


def test_zz_table(capsys):
    """The verb table, ociruntime next to runc as the same user (``pytest -s`` shows it)."""
    if not TABLE:
        pytest.skip("no scenario ran")
    width = max(map(len, TABLE))
    lines = [f"| {'verb / scenario'.ljust(width)} | ociruntime | runc |", f"|{'-' * (width + 2)}|---|---|"]
    lines += [f"| {name.ljust(width)} | {o.get('ociruntime', '-')} | {o.get('runc', '-')} |"
              for name, o in TABLE.items()]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# --- the decisions, without a user -----------------------------------------------------------------

def test_cgroups_rootless_follows_runcs_rule(monkeypatch):
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: False)
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 0)
    assert (rootless.cgroups_rootless(True), rootless.cgroups_rootless(False), rootless.cgroups_rootless(None)) \
        == (True, False, False)
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: True)
    assert rootless.cgroups_rootless(None) is True  # root in a user namespace
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: False)
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 1000)
    assert rootless.cgroups_rootless(None) is True


def test_default_root(monkeypatch, tmp_path):
    env = {b"XDG_RUNTIME_DIR": str(tmp_path).encode()}
    monkeypatch.setattr(rootless.posix, "environ", env)
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: False)
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 0)
    assert rootless.default_root() == "/run/ociruntime"  # root keeps /run, $XDG_RUNTIME_DIR or not
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 1000)
    assert rootless.default_root() == f"{tmp_path}/ociruntime"
    assert oct(os.stat(f"{tmp_path}/ociruntime").st_mode & 0o7777) == oct(0o1700)
    env.clear()
    monkeypatch.setattr(rootless, "_writable", lambda path: False)
    with pytest.raises(OCIError, match="XDG_RUNTIME_DIR is not set"):
        rootless.default_root()


def _config(**linux):
    return {"process": {"user": {"uid": 0, "gid": 0}, "args": ["true"]}, "mounts": [],
            "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}],
                      "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                      "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}], **linux}}


@pytest.mark.parametrize("change, field", [
    (lambda c: c["linux"].update(namespaces=[{"type": "mount"}]), "linux.namespaces"),
    (lambda c: c["linux"].update(uidMappings=[]), "linux.uidMappings"),
    (lambda c: c["linux"].update(gidMappings=[]), "linux.gidMappings"),
    (lambda c: c["process"]["user"].update(gid=7), "process.user.gid"),
    (lambda c: c["process"]["user"].update(additionalGids=[0, 9]), "process.user.additionalGids[1]"),
    (lambda c: c.update(mounts=[{"destination": "/d", "type": "tmpfs", "options": ["gid=3"]}]), "mounts[0].options"),
])
def test_check_names_the_field(change, field):
    config = _config()
    change(config)
    with pytest.raises(ConfigError) as e:
        rootless.check(config)
    assert e.value.path == field
    rootless.check(_config())  # the unchanged one passes


def _plan(groups=()):
    return {"uid_map": "0 1000 1\n", "gid_map": "0 1000 1\n", "process": {"groups": list(groups)}}


def test_id_map_plan(monkeypatch):
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 1000)
    monkeypatch.setattr(rootless.posix, "getegid", lambda: 1000)
    monkeypatch.setattr(rootless, "_which", lambda name: f"/usr/bin/{name}")
    own = _plan()
    rootless.id_map_plan(own, _config()["linux"])
    assert (own.get("uid_map_tool"), own.get("gid_map_tool"), own["setgroups"], own["process"]["groups"]) == \
        (None, None, "deny", None)
    linux = _config()["linux"]
    linux["gidMappings"] = linux["gidMappings"] + [{"containerID": 1, "hostID": 100000, "size": 10}]
    sub = _plan(groups=[5])
    rootless.id_map_plan(sub, linux)
    assert (sub.get("uid_map_tool"), sub["gid_map_tool"], sub.get("setgroups"), sub["process"]["groups"]) == \
        (None, "/usr/bin/newgidmap", None, [5])
    with pytest.raises(ConfigError, match="process.user.additionalGids"):
        rootless.id_map_plan(_plan(groups=[5]), _config()["linux"])
    monkeypatch.setattr(rootless, "_which", lambda name: None)
    with pytest.raises(ConfigError, match="linux.gidMappings: .*newgidmap"):
        rootless.id_map_plan(_plan(), linux)


def test_finish_as_root_in_a_user_namespace(monkeypatch):
    """rootless podman's runtime (root in the user's namespace): no device rules (no
    CAP_SYS_ADMIN or CAP_BPF on the host: the cgroup files or a device program would be
    refused), and no newuidmap — root there writes any map of its namespace's ids."""
    monkeypatch.setattr(rootless.posix, "geteuid", lambda: 0)
    monkeypatch.setattr(rootless, "_which", lambda name: f"/usr/bin/{name}")
    linux = _config()["linux"]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 1, "size": 1000},  # keep-id's, for uid 1000
                            {"containerID": 1000, "hostID": 0, "size": 1}]
    plan = dict(_plan(groups=[5]), device_rules=[("allow", "c 1:3 rwm")])
    rootless.finish(plan, linux)
    assert (plan["device_rules"], plan.get("uid_map_tool"), plan.get("setgroups"), plan["process"]["groups"]) == \
        ([], None, None, [5])


def test_cgroups_without_a_delegated_one(monkeypatch):
    """Rootless: every hierarchy writable, or none used; limits and a cgroupsPath refused then."""
    paths = {"": "/sys/fs/cgroup/x", "memory": "/sys/fs/cgroup/memory/x"}
    monkeypatch.setattr(rootless, "own_cgroup_dirs", lambda: {"memory": "/sys/fs/cgroup/memory/mine"})
    monkeypatch.setattr(rootless, "_not_delegated", lambda path: None)
    assert rootless.cgroup_paths({}, paths, True) == (paths, paths)
    monkeypatch.setattr(rootless, "_not_delegated", lambda path: "no" if "memory" in path else None)
    assert rootless.cgroup_paths({}, paths, False) == (paths, paths)
    assert rootless.cgroup_paths({"resources": {"devices": []}}, paths, True) == \
        ({}, {"memory": "/sys/fs/cgroup/memory/mine"})
    with pytest.raises(ConfigError, match="linux.resources"):
        rootless.cgroup_paths({"resources": {"pids": {"limit": 5}}}, paths, True)
    with pytest.raises(ConfigError, match="linux.cgroupsPath"):
        rootless.cgroup_paths({"cgroupsPath": "/x"}, paths, True)
    assert plan_mod.has_limits({"pids": {"limit": 5}})
