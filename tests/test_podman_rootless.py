"""Rootless podman drives ociruntime: an ordinary user of the module's own (tests/users.py:
useradd, its /etc/subuid and /etc/subgid ranges, an XDG_RUNTIME_DIR and a HOME it owns)
runs ``podman --runtime <this checkout's command>``, runc 1.1.5 beside it as the reference,
with the private podman of tests/test_podman.py — its configuration, storage (--root,
--runroot, --tmpdir) and image all under the user's HOME, made by the user.

Rootless podman keeps a pause process (``$tmpdir/pause.pid``) holding its user namespace
(root there is the user, 1..65536 its sub-ids) and a mount namespace, where the containers'
overlay and shm mounts are: the leak check reads that namespace's mountinfo too, and
takes any process of the user's (its uid, or in a user namespace it made) but the pause
process for a leftover. The module's teardown ends the pause process; tests/users.py then
removes the user and fails on anything of it still on the machine (processes, mounts,
files of its uid in /tmp, /var/tmp, /run or /dev/shm, its passwd, group and sub-id lines).

What podman 4.3.1 / conmon 2.1.6 run rootless (captured with a wrapper script): the
runtime as uid 0 in podman's user namespace (``uid_map`` ``0 UID 1`` and ``1 SUBUID
65536``), the same command lines as root's (tests/test_podman.py: create with
--log-format=json --log, start, kill ID 15 / 9, exec --detach --process, update
--resources=FILE, delete --force) — no --root, no --rootless, no --systemd-cgroup —
with XDG_RUNTIME_DIR, _CONTAINERS_USERNS_CONFIGURED=init and _CONTAINERS_ROOTLESS_UID in
the environment but not USER. Both runtimes then keep their state in
``$XDG_RUNTIME_DIR/<name>`` (runc: euid 0 in a user namespace, $USER not root), and do
without cgroups: the config has no cgroupsPath and an empty ``linux.resources``; the
container stays in its caller's cgroups. Its devices are bound from the host (mknod is
refused in a user namespace).

What rootless podman can't do on this cgroup v1 host, with either runtime (checked, not
skipped): --memory and --pids-limit are dropped by podman with a warning ("Resource limits
are not supported and ignored on cgroups V1 rootless systems"): the runtime gets no
limits; pause and unpause are refused by podman itself; ``podman update`` reaches the
runtime, which refuses it (no cgroup to write). --uidmap with ids outside podman's
namespace and --cgroup-parent are not run here.
"""

import json
import os
import shutil
import signal
import time

import pytest
from containerd import _command
from test_podman import (  # noqa: F401  (the scenarios run here too, with this module's podman)
    IMAGE,
    RUNTIMES,
    PodmanSetup,
    _cmdline,
    each_runtime,
    module_leftovers,
    test_detached_and_logs,
    test_exec,
    test_exec_tty,
    test_kill,
    test_missing_command,
    test_network_host,
    test_network_none,
    test_read_only,
    test_read_only_root,
    test_run_interactive_stdin,
    test_run_output_and_exit_code,
    test_run_tty,
    test_stop,
    test_tmpfs_starts_with_the_image_directory,
    test_user_and_capabilities,
    test_volumes,
)
from users import ordinary_user

pytestmark = pytest.mark.root

IGNORED = "Resource limits are not supported and ignored on cgroups V1 rootless systems"


class RootlessSetup(PodmanSetup):
    """tests/test_podman.py's private podman, run by ``user`` (setpriv), its base the
    user's HOME; no cgroup parent (rootless podman makes no cgroups on cgroup v1)."""

    def __init__(self, user):
        self.user = user
        self.uid, self.gid = user.uid, user.gid
        self.prefix = tuple(user.setpriv())
        super().__init__(user.work, env=user.env())
        self.cgroup_parent = None

    def state_root(self, name):
        return f"{self.user.xdg}/{name}"

    def importing(self, argv):
        return argv  # the blob-info cache is the user's: $HOME/.local/share/containers/cache

    def pause_pid(self):
        """podman's pause process, or None (not started yet, or gone)."""
        try:
            with open(os.path.join(self.tmpdir, "pause.pid")) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return None
        return pid if pid in self.user.processes() else None

    def mounts(self):
        """Ours under the base: the host's, and those in the pause process's namespace."""
        found = super().mounts()
        pid = self.pause_pid()
        if pid:
            try:
                with open(f"/proc/{pid}/mountinfo") as f:
                    points = [line.split()[4] for line in f]
            except OSError:
                points = []
            found += [f"{p} (podman's mount namespace)" for p in points
                      if p == self.base or p.startswith(self.base + "/")]
        return found

    def processes(self):
        found = super().processes()
        known = {pid for pid, _ in found} | {self.pause_pid()}
        return found + [(pid, _command(pid)) for pid in self.user.processes() if pid not in known]

    def cgroups(self):
        return []  # none made (test_no_cgroups_and_the_state_in_xdg_runtime_dir)

    def end_pause_process(self):
        """Kill the pause process (its namespaces go with it); what is left: []."""
        pid = self.pause_pid()
        if pid is None:
            return []
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.pause_pid() and time.monotonic() < deadline:
            time.sleep(0.05)
        return [f"pause process {pid}"] if self.pause_pid() else []


@pytest.fixture(scope="module")
def podman_user():
    for program in ("useradd", "newuidmap", "newgidmap", "setpriv"):
        assert shutil.which(program), f"{program} is missing: run scripts/setup.sh"
    with ordinary_user("ocipr") as u:
        for runtime, _ in RUNTIMES.values():
            proc = u.run(runtime, "--version")
            assert proc.returncode == 0, f"{u.name} can't run {runtime} (every directory above it must be " \
                                         f"searchable, its files readable by others): {proc.stderr}"
        yield u


@pytest.fixture(scope="module")
def podman_setup(podman_user, rootfs_template):
    setup = RootlessSetup(podman_user)
    try:
        setup.import_image(rootfs_template)
        yield setup
    finally:
        found = module_leftovers(setup)
        found += setup.end_pause_process()
        assert not found, f"rootless podman left behind: {found}"


@pytest.fixture(params=sorted(RUNTIMES))
def podman(request, podman_setup):
    yield from each_runtime(podman_setup, request.param)


# --- rootless only


def _status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def test_no_cgroups_and_the_state_in_xdg_runtime_dir(podman):
    """podman info says rootless and names the command; the container's state is in
    ``$XDG_RUNTIME_DIR/<runtime>`` (not root's /run/<runtime>), running, its bundle
    podman's; its init runs as the user on the host, in podman's user namespace (the pause
    process's, made by the user), in the cgroups of the test that ran podman."""
    setup, user = podman.setup, podman.setup.user
    info = json.loads(podman("info", "--format", "{{json .Host}}").stdout)
    assert info["security"]["rootless"] and info["ociRuntime"]["path"] == podman.runtime, info
    cid = podman.start(IMAGE, "sleep", "300")
    try:
        pid = podman.pid(cid)
        state = setup.user.run(podman.runtime, "--root", podman.state_root, "state", cid)
        assert state.returncode == 0, state.stderr
        state = json.loads(state.stdout)
        assert state["status"] == "running" and state["pid"] == pid, state
        assert state["bundle"] == os.path.join(setup.root, "overlay-containers", cid, "userdata"), state
        assert not os.path.exists(os.path.join(RUNTIMES[podman.name][1], cid))
        assert _status(pid)["Uid"].split() == [str(user.uid)] * 4, _status(pid)
        with open(f"/proc/{pid}/uid_map") as f:
            assert [line.split() for line in f] == [["0", str(user.uid), "1"],
                                                    ["1", str(user.subuid[0]), str(user.subuid[1])]]
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink(f"/proc/{setup.pause_pid()}/ns/user")
        with open(f"/proc/{pid}/cgroup") as f, open("/proc/self/cgroup") as g:
            assert f.read() == g.read()
        # The leak check sees it while it runs: its state, its conmon, its mounts (podman's namespace).
        assert setup.runtime_state(podman.runtime, podman.state_root) == [cid]
        assert any(argv.startswith("/usr/bin/conmon") and cid in argv for _, argv in setup.processes())
        assert any(m.startswith(os.path.join(setup.root, "overlay")) for m in setup.mounts()), setup.mounts()
    finally:
        podman.remove(cid)


def test_default_user_namespace(podman):
    """Without --userns the container shares podman's user namespace: its root is the
    user on the host, 1..65536 the user's sub-ids — a file its root writes to a volume is
    the user's, one given to uid 1 is the first sub-uid's, and a process of --user 1000 is
    the sub-uid 999 above the first on the host."""
    user = podman.setup.user
    data = podman.setup.new_dir()
    proc = podman.run("-v", f"{data}:/data", IMAGE, "sh", "-c",
                      "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                      "touch /data/root /data/one && chown 1:1 /data/one && stat -c %u:%g /data/root /data/one")
    assert proc.returncode == 0, proc
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines == [["0", str(user.uid), "1"], ["1", str(user.subuid[0]), str(user.subuid[1])],
                     ["0", str(user.gid), "1"], ["1", str(user.subgid[0]), str(user.subgid[1])],
                     ["0"], ["0"], ["0:0"], ["1:1"]], proc
    owners = [(st.st_uid, st.st_gid) for st in (os.stat(f"{data}/root"), os.stat(f"{data}/one"))]
    assert owners == [(user.uid, user.gid), (user.subuid[0], user.subgid[0])]
    cid = podman.start("--user", "1000:1000", IMAGE, "sleep", "300")
    try:
        status = _status(podman.pid(cid))
        assert status["Uid"].split()[0] == str(user.subuid[0] + 999), status
        assert status["Gid"].split()[0] == str(user.subgid[0] + 999), status
    finally:
        podman.remove(cid)


def test_userns_keep_id(podman):
    """--userns keep-id: a user namespace of the container's own (the runtime writes its
    maps, as root in podman's) where the user's uid and gid are themselves — id says so,
    with the user's name podman adds to /etc/passwd — and a file written to a volume is
    the user's on the host."""
    user = podman.setup.user
    data = podman.setup.new_dir()
    proc = podman.run("--userns", "keep-id", "-v", f"{data}:/data", IMAGE, "sh", "-c",
                      "id -u; id -g; id -un; cat /proc/self/uid_map; touch /data/f; stat -c %u:%g /data/f; "
                      "readlink /proc/self/ns/user")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[:3] == [str(user.uid), str(user.gid), user.name], proc
    # podman's namespace holds 0..N (N sub-uids): the user's uid is 0 there, 0..uid-1 are 1..uid
    assert [line.split() for line in lines[3:6]] == [["0", "1", str(user.uid)], [str(user.uid), "0", "1"],
                                                     [str(user.uid + 1)] * 2 + [str(user.subuid[1] - user.uid)]], proc
    assert lines[6] == f"{user.uid}:{user.gid}", proc
    assert (os.stat(f"{data}/f").st_uid, os.stat(f"{data}/f").st_gid) == (user.uid, user.gid)
    assert lines[7] != os.readlink(f"/proc/{podman.setup.pause_pid()}/ns/user"), proc


def test_rm_force_running(podman):
    """podman rm -f of a running container: its process and record go at once."""
    cid = podman.start(IMAGE, "sleep", "300")
    pid = podman.pid(cid)
    podman("rm", "--force", "--time", "0", cid)
    assert cid not in podman.containers()
    assert not os.path.exists(f"/proc/{pid}/cmdline") or _cmdline(pid) != ["sleep", "300"]


def test_cgroup_limits_are_dropped(podman):
    """--memory and --pids-limit, rootless on cgroup v1: podman warns that it ignores them
    and runs the container without (for runc as for ociruntime): the config it gives the
    runtime has no limits, the memory cgroup seen inside has no 64 MiB limit, and 45
    processes fork where --pids-limit 42 would stop them."""
    cid = podman.start("--memory", "64m", "--pids-limit", "42", IMAGE, "sleep", "300")
    try:
        with open(os.path.join(podman.setup.root, "overlay-containers", cid, "userdata", "config.json")) as f:
            resources = json.load(f)["linux"].get("resources") or {}
        assert not resources.get("memory") and not resources.get("pids"), resources
        proc = podman("exec", cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; i=0; "
                                               "while [ $i -lt 45 ]; do sleep 1 & i=$((i+1)); done; wait; echo forked")
        limit, forked = proc.stdout.split()
        assert int(limit) != 64 << 20 and forked == "forked", proc
    finally:
        podman.remove(cid)
    proc = podman.run("--memory", "64m", "--pids-limit", "42", IMAGE, "true")
    assert proc.returncode == 0 and IGNORED in proc.stderr, proc


def test_pause_and_update_are_refused(podman):
    """pause and unpause: podman refuses them rootless on cgroup v1, before any runtime;
    update reaches the runtime (``update --resources=FILE ID``), which refuses it: runc
    can't join or create a cgroup, ours names the memory limit the container has no
    cgroup for. The container runs on, untouched."""
    cid = podman.start(IMAGE, "sleep", "300")
    try:
        for verb, says in (("pause", "can not pause containers on rootless containers with cgroup V1"),
                           ("unpause", "unpause is not supported for cgroupv1 rootless containers")):
            proc = podman(verb, cid, check=False)
            assert proc.returncode == 125 and says in proc.stderr, proc
        proc = podman("update", "--memory", "32m", cid, check=False)
        why = {"runc": "container could not join or create cgroup",
               "ociruntime": "linux.resources.memory.limit: the container has no memory cgroup"}[podman.name]
        assert proc.returncode == 125 and f"{podman.runtime} update --resources=" in proc.stderr, proc
        assert why in proc.stderr, proc
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
    finally:
        podman.remove(cid)

