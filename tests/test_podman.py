"""podman drives ociruntime, as root: ``podman --runtime <this checkout's command>``, with
conmon between podman and the runtime, every scenario run with runc 1.1.5 too (the
reference: what podman expects of a runtime on this machine).

One private podman for the module (``PodmanSetup``): its own --root, --runroot and --tmpdir
under a temporary directory, its own containers.conf, storage.conf and registries.conf
(CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF: nothing of the host's
configuration counts), the cgroupfs manager (no systemd here), the file events backend (no
journald), file locks under its tmpdir (not the machine's /dev/shm/libpod_lock), no network
backend in use (``--network none`` by default, ``host`` where asked), and
``default_ulimits`` of 1024: podman's defaults exceed this machine's hard limits, and runc
fails the same way without them. The busybox image is the tests' rootfs, ``podman import``ed
once. Each container is put under a cgroup parent of the module's own (``--cgroup-parent``),
so that its cgroups, and conmon's (``<parent>/conmon``), are found and removed with it.

The runtime's own state stays in its default --root (/run/runc, /run/ociruntime): podman's
``--runtime-flag root=DIR`` would reach create and start, but not the ``delete --force``
that podman's cleanup process (conmon's exit command) runs, which drops --runtime-flag — the
state of every ``--rm`` container would stay in DIR. The leak check finds this module's
containers there by their bundle, which is under the private --root.

The ``podman`` fixture checks after every scenario that nothing of it is left: container
record, conmon or podman cleanup process, container process, mount under the private root
(overlay layers, the shm tmpfs), container cgroup, runtime state. The module's teardown checks
the machine once more and removes the cgroup parent (and conmon's cgroup in it).

What podman 4.3.1 / conmon 2.1.6 run (captured with a wrapper script; ID is podman's
64-hex container id, U = <runroot>/overlay-containers/ID/userdata, B = the same under
--root, E = B/<exec id>):
- create: ``--log-format=json --log U/oci-log create --bundle B --pid-file U/pidfile
  [--console-socket /tmp/conmon-term.XXXXXX] ID`` (conmon runs it; --log-format=json because
  the private containers.conf lists ``ociruntime`` in runtime_supports_json, as it lists runc)
- ``start ID``, ``kill ID 15`` / ``kill ID 9`` (numbers), ``pause ID``, ``resume ID``,
  ``delete --force ID`` (podman, or its cleanup process)
- exec: ``--log-format=json --log E/oci-log exec --pid-file E/exec_pid --process
  E/exec-process-N --detach [--tty --console-socket /tmp/conmon-term.XXXXXX] ID`` (conmon)
- ``update --resources=/var/tmp/podmanNNN ID`` (podman update: a file, not stdin)
- ``--version`` (podman info), ``checkpoint --help`` (podman probing for checkpoint support)
No --root, no --systemd-cgroup (cgroupfs manager), no --rootless as root. conmon runs create
with a pipe of its own as fd 3 (its sync pipe; _OCI_SYNCPIPE=3 _OCI_STARTPIPE=4 stay in the
environment) and no --preserve-fds: the container must not get it (test_detached_and_logs).
"""

import glob
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time

import pytest
from conftest import RUNTIME
from ptys import Terminal

from ociruntime.api import DEFAULT_ROOT

pytestmark = pytest.mark.root

PODMAN = "/usr/bin/podman"
CONMON = "/usr/bin/conmon"
RUNC = "/usr/sbin/runc"
IMAGE = "localhost/busybox:ociruntime-test"
CGROUP_ROOT = "/sys/fs/cgroup"
# runtime name -> (the command podman is given, its default --root, where podman leaves the state)
RUNTIMES = {"runc": (RUNC, "/run/runc"), "ociruntime": (RUNTIME, DEFAULT_ROOT)}
# containers/image writes its blob-info cache for root to this directory whatever --root says
# (podman 4.3): the import runs in a mount namespace of its own with a tmpfs over /var/lib.
BLOB_INFO_CACHE = "/var/lib/containers/cache"
NOT_FOUND = "OCI runtime attempted to invoke a command that was not found"

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
log_driver = "k8s-file"

[network]
network_backend = "cni"
network_config_dir = "{base}/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
lock_type = "file"
tmp_dir = "{base}/tmp"
volume_path = "{base}/volumes"
conmon_path = ["{conmon}"]
runtime_supports_json = ["runc", "ociruntime"]
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{base}/root"
runroot = "{base}/runroot"
"""


class PodmanSetup:
    """The module's private podman: configuration, storage and a cgroup parent of its own.
    Run as root; tests/test_podman_rootless.py's RootlessSetup runs it as an ordinary user."""

    prefix = ()  # the start of every command line (rootless: setpriv to the user)
    uid = gid = 0  # podman's user: on the host, the owner of what its containers' root writes

    def __init__(self, base, env=None):
        self.base = str(base)
        self.root = os.path.join(self.base, "root")
        self.runroot = os.path.join(self.base, "runroot")
        self.tmpdir = os.path.join(self.base, "tmp")
        self.cgroup_parent = f"/ocirt-podman-{os.urandom(4).hex()}"
        confs = {"containers.conf": CONTAINERS_CONF, "storage.conf": STORAGE_CONF,
                 "registries.conf": "unqualified-search-registries = []\n"}
        for name, text in confs.items():
            with open(os.path.join(self.base, name), "w") as f:
                f.write(text.format(base=self.base, conmon=CONMON))
            os.chown(os.path.join(self.base, name), self.uid, self.gid)
        if env is None:
            env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
        self.env = dict(env, CONTAINERS_CONF=os.path.join(self.base, "containers.conf"),
                        CONTAINERS_STORAGE_CONF=os.path.join(self.base, "storage.conf"),
                        CONTAINERS_REGISTRIES_CONF=os.path.join(self.base, "registries.conf"))

    def argv(self, runtime, *args):
        return [*self.prefix, PODMAN, "--root", self.root, "--runroot", self.runroot, "--tmpdir", self.tmpdir,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", runtime, *map(str, args)]

    def state_root(self, name):
        """Where the runtime ``name`` keeps its state when podman runs it (no --root)."""
        return RUNTIMES[name][1]

    def import_image(self, rootfs):
        archive = os.path.join(self.base, "busybox.tar")
        with tarfile.open(archive, "w") as tar:
            tar.add(str(rootfs), arcname=".")
        argv = self.argv(RUNC, "import", "--change", 'CMD ["sh"]', archive, IMAGE)
        proc = subprocess.run(self.importing(argv), capture_output=True, text=True, env=self.env, timeout=120)
        assert proc.returncode == 0, f"podman import: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        os.unlink(archive)

    def importing(self, argv):
        """``podman import``'s command line: in a mount namespace with a tmpfs on /var/lib
        (see BLOB_INFO_CACHE)."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount -t tmpfs tmpfs /var/lib && exec "$@"', "sh", *argv]

    def new_dir(self):
        """A new directory podman's user owns (for volumes), removed with the rest."""
        path = tempfile.mkdtemp(prefix="dir-", dir=self.base)
        os.chown(path, self.uid, self.gid)
        return path

    # --- what is on the machine

    def mounts(self):
        with open("/proc/self/mountinfo") as f:
            points = [_unescape(line.split()[4]) for line in f]
        return [p for p in points if p == self.base or p.startswith(self.base + "/")]

    def processes(self):
        """conmon and podman processes of this podman (its --root or --tmpdir on their command
        line: conmon's bundle and exit dir, a cleanup process's own flags), and any process in
        a cgroup under our parent but conmon's."""
        found = []
        for pid in _pids():
            if pid == os.getpid():
                continue
            argv = _cmdline(pid)
            if any(a.startswith(self.base + "/") or a == self.base for a in argv):
                found.append((pid, " ".join(argv)))
                continue
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    paths = [line.rstrip("\n").split(":", 2)[2] for line in f]
            except OSError:
                continue
            if self.cgroup_parent and any(p.startswith(self.cgroup_parent + "/libpod-") for p in paths):
                found.append((pid, " ".join(argv)))
        return found

    def cgroups(self):
        """The container cgroups under our parent, any hierarchy (conmon's own is podman's)."""
        return sorted(d for top in self.parent_cgroups() for d in glob.glob(os.path.join(top, "libpod-*")))

    def parent_cgroups(self):
        """Our cgroup parent in every v1 hierarchy, or in cgroup2 at /sys/fs/cgroup itself on
        a pure v2 host (the qemu lane's plain guest: tests/test_podman_checkpoint.py)."""
        parent = self.cgroup_parent.lstrip("/")
        return sorted(glob.glob(os.path.join(CGROUP_ROOT, "*", parent)) + glob.glob(os.path.join(CGROUP_ROOT, parent)))

    def runtime_state(self, command, root):
        """The containers ``command`` keeps in ``root`` whose bundle is under our --root."""
        if not os.path.isdir(root):
            return []
        proc = subprocess.run([*self.prefix, command, "--root", root, "list", "--format", "json"],
                              capture_output=True, text=True, env=self.env, timeout=60)
        assert proc.returncode == 0, f"{command} list: {proc.stderr}"
        return [c["id"] for c in json.loads(proc.stdout) or [] if c.get("bundle", "").startswith(self.root + "/")]


class Podman:
    """The module's podman with one runtime (``--runtime``); ``run`` and ``create`` put the
    container under the module's cgroup parent."""

    def __init__(self, setup, name):
        self.setup = setup
        self.name = name
        self.runtime = RUNTIMES[name][0]
        self.state_root = setup.state_root(name)

    def argv(self, *args):
        if args and args[0] in ("run", "create") and self.setup.cgroup_parent:
            args = (args[0], "--cgroup-parent", self.setup.cgroup_parent, *args[1:])
        return self.setup.argv(self.runtime, *args)

    def __call__(self, *args, check=True, input=None, timeout=60):
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.setup.env, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(map(str, args))}: exit {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run(self, *args, check=False, **kw):
        """``podman run --rm`` of ``args`` (options, then the command after IMAGE)."""
        return self("run", "--rm", *args, check=check, **kw)

    def start(self, *args):
        """``podman run -d`` of ``args`` (options, IMAGE, command); the container id."""
        return self("run", "-d", *args).stdout.strip()

    def inspect(self, cid, template):
        return self("inspect", "--format", template, cid).stdout.strip()

    def pid(self, cid):
        return int(self.inspect(cid, "{{.State.Pid}}"))

    def cgroup(self, controller, cid):
        return os.path.join(CGROUP_ROOT, controller, self.setup.cgroup_parent.lstrip("/"), f"libpod-{cid}")

    def remove(self, cid):
        self("rm", "--force", "--time", "0", cid)

    def containers(self):
        return self("ps", "-a", "--no-trunc", "--format", "{{.ID}}").stdout.split()

    def leftovers(self, settle=10):
        """What the scenario left: []. Asked again for up to ``settle`` seconds: conmon's exit
        command (podman container cleanup) runs a moment after podman has answered."""
        deadline = time.monotonic() + settle
        while (found := self._left()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def _left(self):
        s = self.setup
        found = [f"container {cid}" for cid in self.containers()]
        found += [f"process {pid}: {argv}" for pid, argv in s.processes()]
        found += [f"mount {m}" for m in s.mounts()]
        found += [f"cgroup {d}" for d in s.cgroups()]
        state = s.runtime_state(self.runtime, self.state_root)
        found += [f"{self.name} state {self.state_root}/{cid}" for cid in state]
        return found

    def force_clean(self):
        """So that one scenario's leak doesn't fail the next ones."""
        for cid in self.containers():
            self("rm", "--force", "--time", "0", cid, check=False)
        for d in self.setup.cgroups():
            state = os.path.join(d, "freezer.state")
            if os.path.exists(state):
                with open(state, "w") as f:
                    f.write("THAWED")
        for pid, _ in self.setup.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for cid in self.setup.runtime_state(self.runtime, self.state_root):
            subprocess.run([*self.setup.prefix, self.runtime, "--root", self.state_root, "delete", "--force", cid],
                           capture_output=True, env=self.setup.env, timeout=60)
        for point in sorted(self.setup.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30)
        for d in sorted(self.setup.cgroups(), key=lambda p: -p.count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass


@pytest.fixture(scope="module")
def podman_setup(tmp_path_factory, rootfs_template):
    """The module's podman with the image imported; its teardown fails on whatever of it is
    left on the machine (after removing it)."""
    for program in (PODMAN, CONMON, RUNC):
        assert os.access(program, os.X_OK), f"{program} is missing: run scripts/setup.sh"
    cache_before = os.path.exists(BLOB_INFO_CACHE)
    setup = PodmanSetup(tmp_path_factory.mktemp("podman"))
    try:
        setup.import_image(rootfs_template)
        yield setup
    finally:
        found = module_leftovers(setup)
        # The cgroup parent podman made (in every hierarchy, with conmon's cgroup in it): ours to remove.
        for top in setup.parent_cgroups():
            for d in sorted((os.path.join(b, n) for b, dirs, _ in os.walk(top) for n in dirs),
                            key=lambda p: -p.count("/")):
                if os.path.basename(d) != "conmon":
                    found.append(f"cgroup {d}")
                try:
                    os.rmdir(d)
                except OSError as e:
                    found.append(f"cgroup {d}: {e.strerror}")
            try:
                os.rmdir(top)
            except OSError as e:
                found.append(f"cgroup {top}: {e.strerror}")
        if not cache_before and os.path.exists(BLOB_INFO_CACHE):
            found.append(f"{BLOB_INFO_CACHE} made on the machine")
        if not found:
            shutil.rmtree(setup.base)
        assert not found, f"podman left behind: {found} (kept {setup.base})"


def module_leftovers(setup):
    """What of the module's podman is left once its scenarios ran, removed (a scenario's
    own leftovers were reported and removed by then): []."""
    found = []
    for name in sorted(RUNTIMES):
        clean = Podman(setup, name)
        found += [f"container {cid}" for cid in clean.containers()]
        found += [f"{name} state {cid}" for cid in setup.runtime_state(clean.runtime, clean.state_root)]
        clean.force_clean()
    found += [f"process {pid}: {argv}" for pid, argv in setup.processes()]
    found += [f"mount {m}" for m in setup.mounts()]
    for point in sorted(setup.mounts(), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30)
    return found


def each_runtime(setup, name):
    """The ``podman`` fixture's body: the module's podman with the runtime ``name``; after
    the scenario, a failure naming whatever of it is left (removed)."""
    p = Podman(setup, name)
    yield p
    left = p.leftovers()
    if left:
        p.force_clean()
    assert not left, f"left behind: {left}"


@pytest.fixture(params=sorted(RUNTIMES))
def podman(request, podman_setup):
    yield from each_runtime(podman_setup, request.param)


# --- the scenarios


def test_the_runtime_is_the_one_asked_for(podman):
    """podman info names the command and its version; a running container's record names
    it, and the container is in that runtime's state root, running, its bundle podman's."""
    info = json.loads(podman("info", "--format", "{{json .Host.OCIRuntime}}").stdout)
    version = subprocess.run([podman.runtime, "--version"], capture_output=True, text=True, timeout=30).stdout
    assert info["path"] == podman.runtime and info["version"] == version.strip(), info
    cid = podman.start(IMAGE, "sleep", "300")
    try:
        assert podman.inspect(cid, "{{.OCIRuntime}}") == podman.runtime
        state = subprocess.run([podman.runtime, "--root", podman.state_root, "state", cid], capture_output=True,
                               text=True, timeout=30)
        assert state.returncode == 0, state.stderr
        state = json.loads(state.stdout)
        assert state["status"] == "running" and state["pid"] == podman.pid(cid), state
        assert state["bundle"] == os.path.join(podman.setup.root, "overlay-containers", cid, "userdata"), state
        # What the leak check looks for is seen while the container runs: its state, its
        # conmon, its cgroups, its overlay rootfs and shm mounts.
        setup = podman.setup
        assert setup.runtime_state(podman.runtime, podman.state_root) == [cid]
        assert any(argv.startswith(CONMON) and cid in argv for _, argv in setup.processes())
        assert podman.cgroup("memory", cid) in setup.cgroups()
        assert {os.path.basename(m) for m in setup.mounts()} >= {"merged", "shm"}, setup.mounts()
    finally:
        podman.remove(cid)


def test_run_output_and_exit_code(podman):
    proc = podman.run(IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout) == (3, "out\n"), proc
    assert "err" in proc.stderr, proc.stderr


def test_run_interactive_stdin(podman):
    proc = podman.run("-i", IMAGE, "sh", "-c", "read line; echo got:$line; cat", input="hello\nmore\n")
    assert (proc.returncode, proc.stdout) == (0, "got:hello\nmore\n"), proc


def test_detached_and_logs(podman):
    cid = podman.start(IMAGE, "sh", "-c", "echo one; echo two >&2; exec sleep 300")
    try:
        _wait_for(lambda: "two" in podman("logs", cid).stderr, "the output in podman logs")
        logs = podman("logs", cid)
        assert (logs.stdout, logs.stderr) == ("one\n", "two\n"), logs
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
        # pid 1 is the init, whose cmdline ps on the host sees as ours
        assert _cmdline(podman.pid(cid)) == ["sleep", "300"]
        # stdio only: not the pipe conmon leaves open as fd 3 when it runs create
        assert sorted(os.listdir(f"/proc/{podman.pid(cid)}/fd")) == ["0", "1", "2"]
    finally:
        podman.remove(cid)


def test_exec(podman):
    """podman exec → conmon → ``runtime exec --process … --detach --pid-file``: the process
    is in the container's pid namespace and cgroups, with the init's capabilities, seccomp
    and no_new_privs; env, workdir and exit status come through."""
    cid = podman.start(IMAGE, "sleep", "300")
    try:
        proc = podman("exec", "-e", "FROM_EXEC=1", "-w", "/tmp", cid, "sh", "-c",
                      "echo $FROM_EXEC; pwd; cat /proc/1/cmdline | tr '\\0' ' '; echo; exit 4", check=False)
        assert (proc.returncode, proc.stdout) == (4, "1\n/tmp\nsleep 300 \n"), proc
        probe = "grep -E '^(Cap|Seccomp|NoNewPrivs)' /proc/{}/status; cat /proc/{}/cgroup"
        init = podman("exec", cid, "sh", "-c", probe.format(1, 1)).stdout
        own = podman("exec", cid, "sh", "-c", probe.format("self", "self")).stdout
        assert init == own and "Seccomp:\t2" in own, (init, own)
        missing = podman("exec", cid, "nosuchcmd", check=False)
        assert missing.returncode == 127 and NOT_FOUND in missing.stderr, missing
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
    finally:
        podman.remove(cid)


# podman sizes the container's terminal through conmon once the process runs: until then
# it may be 0x0 (10 s at most).
WAIT_FOR_SIZE = 'i=0; while [ "$(stty size)" = "0 0" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done'


def test_exec_tty(podman):
    """podman exec -it on a real pty: the process has a pts of its own, sized as podman's
    terminal is, and reads what is typed there."""
    cid = podman.start(IMAGE, "sleep", "300")
    try:
        term = Terminal(podman.argv("exec", "-it", cid, "sh", "-c",
                                    f"{WAIT_FOR_SIZE}; tty; echo size $(stty size); read line; echo got:$line; exit 6"),
                        env=podman.setup.env, rows=33, cols=101)
        try:
            m = term.read_until(r"(/dev/pts/\d+)\r\nsize (\d+ \d+)\r\n")
            assert m.group(2) == "33 101", term.output
            term.write(b"hello\r")
            term.read_until(r"got:hello\r\n", after=m.end())
            assert term.wait() == 6, term.output
        finally:
            term.close()
    finally:
        podman.remove(cid)


def test_run_tty(podman):
    term = Terminal(podman.argv("run", "--rm", "-it", IMAGE, "sh", "-c",
                                f"{WAIT_FOR_SIZE}; tty; echo size $(stty size); exit 2"),
                    env=podman.setup.env, rows=40, cols=90)
    try:
        term.read_until(r"/dev/pts/\d+\r\nsize 40 90\r\n")
        assert term.wait() == 2, term.output
    finally:
        term.close()


# An init that answers SIGTERM with exit 5 and SIGUSR1 with a line of output.
TRAPPING = 'trap "echo got TERM; exit 5" TERM; trap "echo got USR1" USR1; echo ready; while :; do sleep 0.1; done'


def test_stop(podman):
    """podman stop sends SIGTERM (runtime kill ID 15): the init's trap runs, its exit status
    is the container's, and stop returns when it has exited, not at the timeout."""
    cid = podman.start(IMAGE, "sh", "-c", TRAPPING)
    _wait_for(lambda: "ready" in podman("logs", cid).stdout, "the init's traps set")
    t0 = time.monotonic()
    podman("stop", "--time", "20", cid)
    assert time.monotonic() - t0 < 10
    assert podman.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 5"
    assert podman("logs", cid).stdout == "ready\ngot TERM\n"
    podman("rm", cid)


def test_kill(podman):
    """podman kill -s USR1 reaches the init (its trap prints); podman kill (SIGKILL) ends it: 137."""
    cid = podman.start(IMAGE, "sh", "-c", TRAPPING)
    _wait_for(lambda: "ready" in podman("logs", cid).stdout, "the init's traps set")
    podman("kill", "--signal", "USR1", cid)
    _wait_for(lambda: "got USR1" in podman("logs", cid).stdout, "the init's USR1 trap")
    assert podman.inspect(cid, "{{.State.Status}}") == "running"
    podman("kill", cid)
    assert podman("wait", cid).stdout.strip() == "137"
    assert podman.inspect(cid, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    podman("rm", cid)


def test_pause_unpause(podman, tmp_path):
    """A paused container is frozen (its freezer cgroup FROZEN, its counter standing still)
    and runs on after unpause. The counter forks two processes a round, every 0.1 s: runc
    1.1.5's v1 freeze gives up ("unable to freeze") on a cgroup forking faster under load
    (seen once in four runs at every 0.02 s)."""
    count_file = tmp_path / "count"
    cid = podman.start("-v", f"{tmp_path}:/data", IMAGE, "sh", "-c",
                       "i=0; while :; do i=$((i+1)); echo $i > /data/count.new; mv /data/count.new /data/count; "
                       "sleep 0.1; done")

    def count():
        try:
            return int(count_file.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    freezer = os.path.join(podman.cgroup("freezer", cid), "freezer.state")
    try:
        _wait_for(lambda: count() > 3, "the counter running")
        podman("pause", cid)
        assert podman.inspect(cid, "{{.State.Status}}") == "paused"
        with open(freezer) as f:
            assert f.read().strip() == "FROZEN"
        paused = count()
        time.sleep(0.5)
        assert count() == paused
        podman("unpause", cid)
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
        with open(freezer) as f:
            assert f.read().strip() == "THAWED"
        _wait_for(lambda: count() > paused + 3, "the counter running again")
    finally:
        podman.remove(cid)


def test_rm_force_running(podman):
    """podman rm -f of a running container: its process, record and cgroups go at once."""
    cid = podman.start(IMAGE, "sleep", "300")
    pid = podman.pid(cid)
    assert os.path.isdir(podman.cgroup("memory", cid))
    podman("rm", "--force", "--time", "0", cid)
    assert cid not in podman.containers()
    assert not os.path.exists(f"/proc/{pid}/cmdline") or _cmdline(pid) != ["sleep", "300"]
    assert not os.path.exists(podman.cgroup("memory", cid))


def test_memory_limit(podman):
    """--memory: the container's memory cgroup has the limit, as read inside it and on the host;
    podman update changes it."""
    cid = podman.start("--memory", "64m", IMAGE, "sleep", "300")
    try:
        inside = podman("exec", cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
                                                 "grep :memory: /proc/self/cgroup").stdout.split()
        assert inside[0] == str(64 << 20), inside
        assert inside[1].endswith(f":memory:{podman.setup.cgroup_parent}/libpod-{cid}"), inside
        with open(os.path.join(podman.cgroup("memory", cid), "memory.limit_in_bytes")) as f:
            assert int(f.read()) == 64 << 20
        # podman update → runtime update --resources=FILE
        podman("update", "--memory", "32m", cid)
        inside = podman("exec", cid, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
        assert inside == f"{32 << 20}\n", inside
    finally:
        podman.remove(cid)


def test_pids_limit(podman):
    """--pids-limit: pids.max of the container's cgroup, inside and on the host; a fork past
    it fails. (Not 5: runc's exec counts its Go threads there, and fails under 5.)"""
    cid = podman.start("--pids-limit", "42", IMAGE, "sleep", "300")
    try:
        assert podman("exec", cid, "cat", "/sys/fs/cgroup/pids/pids.max").stdout == "42\n"
        with open(os.path.join(podman.cgroup("pids", cid), "pids.max")) as f:
            assert f.read() == "42\n"
        forks = podman("exec", cid, "sh", "-c", "i=0; while [ $i -lt 45 ]; do sleep 1 & i=$((i+1)); done; wait",
                       check=False)
        assert "can't fork" in forks.stderr or "Resource temporarily unavailable" in forks.stderr, forks
    finally:
        podman.remove(cid)


def test_volumes(podman):
    """-v host:/data is read and written through; -v host:/ro:ro is read-only. The
    directories are podman's user's: inside, their files are root's, and what the
    container's root writes is podman's user's on the host."""
    setup = podman.setup
    rw, ro = pathlib.Path(setup.new_dir()), pathlib.Path(setup.new_dir())
    for path, text in ((rw / "in", "from the host\n"), (ro / "in", "read only\n")):
        path.write_text(text)
        os.chown(path, setup.uid, setup.gid)
    proc = podman.run("-v", f"{rw}:/data", "-v", f"{ro}:/ro:ro", IMAGE, "sh", "-c",
                      "cat /data/in /ro/in; echo from the container > /data/out; "
                      "echo no > /ro/out; echo ro=$?; stat -c %u:%g /data/in /data/out; "
                      "grep -E ' /(data|ro) ' /proc/self/mountinfo")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[:5] == ["from the host", "read only", "ro=1", "0:0", "0:0"], proc
    assert "Read-only file system" in proc.stderr, proc.stderr
    mounts = {line.split()[4]: line.split()[5] for line in lines[5:]}
    assert mounts["/data"].startswith("rw") and mounts["/ro"].startswith("ro"), lines
    assert (rw / "out").read_text() == "from the container\n"
    assert ((rw / "out").stat().st_uid, (rw / "out").stat().st_gid) == (setup.uid, setup.gid)
    assert not (ro / "out").exists()


def test_read_only_root(podman):
    """--read-only without podman's tmpfs mounts: / is mounted read-only, a write there fails."""
    proc = podman.run("--read-only", "--read-only-tmpfs=false", IMAGE, "sh", "-c",
                      "touch /x; echo rc=$?; grep ' / / ' /proc/self/mountinfo")
    assert proc.returncode == 0, proc
    rc, root = proc.stdout.splitlines()
    assert rc == "rc=1" and "Read-only file system" in proc.stderr, proc
    assert root.split()[5].split(",")[0] == "ro", root


def test_read_only(podman):
    """--read-only as podman does it by default: / read-only, with read-write tmpfs on /tmp,
    /var/tmp and /run that podman asks with the option ``tmpcopyup`` (runc's extension: the
    tmpfs starts with the contents of the directory it covers; tests/test_mounts.py checks the
    copy). podman's --tmpfs asks for it too."""
    proc = podman.run("--read-only", IMAGE, "sh", "-c",
                      "touch /x; echo rc=$?; touch /tmp/y /run/y /var/tmp/y && echo tmpfs ok; "
                      "grep -E ' / / | /tmp ' /proc/self/mountinfo")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["rc=1", "tmpfs ok"] and "Read-only file system" in proc.stderr, proc
    mounts = {line.split()[4]: line for line in lines[2:]}
    assert mounts["/"].split()[5].split(",")[0] == "ro" and " - tmpfs " in mounts["/tmp"], lines


def test_tmpfs_starts_with_the_image_directory(podman):
    """--tmpfs DIR (podman asks tmpcopyup): the tmpfs starts with what the image holds there,
    and its root keeps the image directory's mode."""
    proc = podman.run("--tmpfs", "/etc", "--tmpfs", "/run", IMAGE, "sh", "-c",
                      "grep ^root: /etc/passwd; stat -c %a /run; grep -E ' /(etc|run) ' /proc/self/mountinfo")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("root:x:0:0:") and lines[1] == "755", proc
    assert [line.split(" - ")[1].split()[0] for line in lines[2:]] == ["tmpfs", "tmpfs"], proc


def test_user_and_capabilities(podman):
    """--user with --cap-drop all --cap-add NET_ADMIN: the process's ids, and NET_ADMIN alone
    in every capability set (podman asks it ambient, so a non-root user has it effective),
    from /proc/self/status; podman's seccomp filter is on."""
    proc = podman.run("--user", "1000:1000", "--cap-drop", "all", "--cap-add", "NET_ADMIN", IMAGE, "sh", "-c",
                      "id -u; id -g; grep -E '^(Cap...|NoNewPrivs|Seccomp):' /proc/self/status")
    assert proc.returncode == 0, proc
    lines = proc.stdout.splitlines()
    status = dict(line.split(":\t") for line in lines[2:])
    net_admin = f"{1 << 12:016x}"
    assert lines[:2] == ["1000", "1000"], proc
    assert {status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {net_admin}, proc
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("0", "2"), proc


def test_user_namespace(podman, tmp_path):
    """--uidmap/--gidmap: the container runs in a user namespace with podman's mappings;
    its root writes a volume's file as the mapped host uid."""
    os.chown(tmp_path, 100000, 100000)
    proc = podman.run("--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", "-v", f"{tmp_path}:/data",
                      IMAGE, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /data/f")
    assert proc.returncode == 0, proc
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert lines == [["0", "100000", "65536"], ["0", "100000", "65536"], ["0"]], proc
    assert os.stat(tmp_path / "f").st_uid == 100000


def test_network_none(podman):
    """--network none: a network namespace of its own with only lo, and the hostname asked for."""
    proc = podman.run("--network", "none", "--hostname", "probe-host", IMAGE, "sh", "-c",
                      "hostname; ls /sys/class/net; readlink /proc/self/ns/net")
    assert proc.returncode == 0, proc
    lines = proc.stdout.split()
    assert lines[:2] == ["probe-host", "lo"] and lines[2] != os.readlink("/proc/self/ns/net"), proc


def test_network_host(podman):
    """--network host: the host's network namespace and interfaces."""
    proc = podman.run("--network", "host", IMAGE, "sh", "-c", "ls /sys/class/net; readlink /proc/self/ns/net")
    assert proc.returncode == 0, proc
    *interfaces, netns = proc.stdout.split()
    assert netns == os.readlink("/proc/self/ns/net"), proc
    # (other tests may add and remove host interfaces meanwhile: the usual ones only)
    assert {"lo", "eth0"} & set(os.listdir("/sys/class/net")) <= set(interfaces), proc


@pytest.mark.parametrize("command", ["/nonexistent", "nosuchcmd"])
def test_missing_command(podman, command):
    """A command the image lacks: podman's "not found" error and exit status 127 (podman
    matches runc's words: "no such file or directory", "executable file not found in"), and,
    with --rm, nothing left (the fixture checks: record, cgroups, mounts, runtime state)."""
    proc = podman.run(IMAGE, command)
    assert proc.returncode == 127 and NOT_FOUND in proc.stderr, proc
    assert podman.containers() == []


# --- helpers


def _wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _unescape(path):
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)
