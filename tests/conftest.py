"""Shared fixtures: a busybox rootfs built once per session, bundles made from it,
and a runtime driver that runs the real ``ociruntime`` binary with its own --root.

The binary is this checkout's own (tests/devbuild.py, refreshed as the session starts when
native/ changed), running this checkout's Python; $OCIRUNTIME names another, e.g. the
installed one.

Every test that creates containers is checked afterwards for leftovers: state
directories, mounts of its bundles, cgroups named after its containers, processes.
"""

import copy
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import devbuild  # first: it puts this checkout first on sys.path
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import busybox_bundle  # noqa: E402
from containerd import Containerd  # noqa: E402

import ociruntime  # noqa: E402
from ociruntime.linux.lsm import apparmor_enabled  # noqa: E402
from ociruntime.spec import default_config  # noqa: E402

if not ociruntime.__file__.startswith(devbuild.PROJECT + os.sep):
    raise ImportError(f"the tests import {ociruntime.__file__}, not this checkout's ({devbuild.PROJECT})")
try:
    BUILD = devbuild.under_test()
except Exception as e:  # a compile error: no test may run something stale
    raise pytest.UsageError(f"cannot build this checkout's ociruntime for the tests: {e}") from e

import ociruntime_shim  # noqa: E402  (after the build: it links build/dev/py/ociruntime_shim to shim/)

if os.path.realpath(os.path.dirname(ociruntime_shim.__file__)) != os.path.realpath(f"{devbuild.PROJECT}/shim"):
    raise ImportError(f"the tests import {ociruntime_shim.__file__}, not this checkout's shim/")
RUNTIME = BUILD.runtime
# Our containerd shim, containerd-shim-ociruntime-v2, is built (build/dev) or installed beside the command.
SHIM_DIR = os.path.dirname(RUNTIME)
# The Python script RUNTIME (native/launcher.c) runs: its shebang holds the interpreter
# and flags, its sys.path line where the package is.
LAUNCHER_SCRIPT = BUILD.script


def pytest_report_header(config):
    built = "up to date" if BUILD.seconds is None else f"rebuilt in {BUILD.seconds:.2f}s"
    return f"ociruntime under test: {RUNTIME} ({'$OCIRUNTIME' if os.environ.get('OCIRUNTIME') else built})"


def launcher_command(code, *args):
    """The command line running ``code`` (``args`` in sys.argv[1:]) with the launcher
    script's interpreter, flags and sys.path: the package RUNTIME runs, with its compiled
    C helper (from the interpreter's own file: not sealed, native/exeseal.c)."""
    with open(LAUNCHER_SCRIPT) as f:
        lines = f.read().splitlines()
    interpreter = lines[0][2:].split()
    path_setup = next(line for line in lines if line.startswith("sys.path"))
    return [*interpreter, "-c", f"import sys\n{path_setup}\n{code}", *args]


def launcher_python(code, *args):
    """Run ``launcher_command(code, *args)``, its output captured."""
    return subprocess.run(launcher_command(code, *args), capture_output=True, text=True, timeout=60)


def pure_cgroup_v2():
    """Whether /sys/fs/cgroup is itself a cgroup2 mount (no v1 hierarchies there)."""
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/sys/fs/cgroup":
                fstype = fields[fields.index("-") + 1]  # the last one mounted there is the one seen
    return fstype == "cgroup2"


def legacy_cgroup_v1():
    """Whether this host has cgroup v1 hierarchies and no cgroup2 mount at all (systemd's
    legacy layout, as the lane's v1 systemd guest has it)."""
    with open("/proc/self/mountinfo") as f:
        fstypes = {line.split(" - ", 1)[1].split()[0] for line in f}
    return "cgroup" in fstypes and "cgroup2" not in fstypes


def cgroup_mounts():
    """{hierarchy: mountpoint} of this host's cgroup mounts (the first of each), the
    hierarchy named as /proc/<pid>/cgroup names it: "" for cgroup2, a v1 one by its
    controllers and name ("cpu,cpuacct", "name=systemd")."""
    with open("/proc/cgroups") as f:
        controllers = {line.split()[0] for line in f if not line.startswith("#")}
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mount, rest = line.split(" - ", 1)
            fstype, _, options = rest.split()
            if fstype in ("cgroup", "cgroup2"):
                key = ",".join(o for o in options.split(",") if o in controllers or o.startswith("name="))
                found.setdefault("" if fstype == "cgroup2" else key, mount.split()[4])
    return found


def systemd_host():
    """Whether systemd runs this host (pid 1, /run/systemd/system, as sd_booted(3) checks)
    and its system bus is up (/run/dbus/system_bus_socket), on cgroup v2 or v1."""
    return os.path.isdir("/run/systemd/system") and os.path.exists("/run/dbus/system_bus_socket")


@functools.cache
def criu_works():
    """Whether ``criu check`` passes here (criu installed, root, a kernel it can work
    with): run once per session, when a test marked criu is collected."""
    try:
        proc = subprocess.run(["criu", "check"], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root: real containers")
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)
    # cgroup_v2 tests run in the qemu guest of tests/vm (tests/test_v2_lane.py boots it)
    # when this host is not pure cgroup v2: deselected here, not skipped.
    # apparmor tests, likewise, where this host has no AppArmor (the guest's kernel has it);
    # systemd tests where systemd with its bus doesn't run this host (the lane's systemd
    # guests do, on v2 and on v1: tests/test_v2_lane.py boots them too);
    # criu tests where `criu check` fails (the lane's plain guest passes it);
    # cgroup_v1_hybrid tests where this host's cgroups aren't laid out as this machine's.
    # V2LANE_COLLECT: the lane collects here what a guest must run and pass.
    # Each check runs only when a test has its marker (criu's costs a process).
    from cgroup_layout import hybrid_v1_layout

    lane = bool(os.environ.get("V2LANE_COLLECT"))
    for marker, here in (("cgroup_v2", lambda: pure_cgroup_v2() or lane),
                         ("apparmor", lambda: apparmor_enabled() or lane),
                         ("systemd", lambda: systemd_host() or lane), ("criu", lambda: lane or criu_works()),
                         ("cgroup_v1_hybrid", hybrid_v1_layout)):
        elsewhere = [item for item in items if item.get_closest_marker(marker)]
        if elsewhere and not here():
            config.hook.pytest_deselected(items=elsewhere)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "rootfs"
    busybox_bundle.make_rootfs(str(path))
    return path


@pytest.fixture(scope="session")
def containerd(tmp_path_factory, rootfs_template):
    """One private containerd for the session (tests/containerd.py), the busybox image imported,
    SHIM_DIR first on its PATH. Its teardown fails on anything left on the machine."""
    daemon = Containerd(tmp_path_factory.mktemp("containerd"), shim_dir=SHIM_DIR)
    try:
        daemon.start()
        daemon.import_image(rootfs_template)
        yield daemon
    finally:
        daemon.close()


class Bundle:
    """A bundle directory with a config dict that is written on ``write()``."""

    def __init__(self, path, config):
        self.path = path
        self.config = config

    @property
    def rootfs(self):
        return self.path / "rootfs"

    def write(self):
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))
        return self


@pytest.fixture
def make_bundle(tmp_path, rootfs_template):
    """make_bundle(*args) -> Bundle running ``args`` with runc's default spec, no terminal."""
    counter = [0]

    def make(*args, **top):
        counter[0] += 1
        path = tmp_path / f"bundle{counter[0]}"
        path.mkdir()
        shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
        config = copy.deepcopy(default_config())
        config["process"]["terminal"] = False
        config["process"]["args"] = list(args) or ["true"]
        config.update(top)
        return Bundle(path, config).write()

    return make


class Runtime:
    """Runs the real binary with a private --root; remembers ids for the leak check."""

    binary = RUNTIME

    def __init__(self, root):
        self.root = str(root)
        self.ids = set()

    def __call__(self, *args, check=True, input=None, timeout=60, env=None):
        """Run one command. Output goes through files, not pipes: a created container
        inherits the runtime's stdio and would hold a pipe open until it exits."""
        cmd = [self.binary, "--root", self.root, *[str(a) for a in args]]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run(cmd, stdout=out, stderr=err, text=True, input=input, timeout=timeout,
                                  env=env, stdin=None if input is not None else subprocess.DEVNULL).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def new_id(self, prefix="t"):
        cid = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.ids.add(cid)
        return cid

    def state(self, cid):
        return json.loads(self("state", cid).stdout)

    def run_output(self, bundle, cid=None):
        """`run` the bundle; return (exit code, stdout, stderr)."""
        cid = cid or self.new_id()
        proc = self("run", "--bundle", bundle.path, cid, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def wait_status(runtime, cid, status, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runtime.state(cid)["status"] == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {status}: {runtime.state(cid)}")


def create_and_start(runtime, bundle):
    """create then start the bundle as a new container; its id."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    runtime("start", cid)
    return cid


def run_ok(runtime, bundle):
    """Run the bundle; return its stdout, failing with its stderr when it exits non-zero."""
    code, out, err = runtime.run_output(bundle)
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err, err
    return out


def leftovers(runtime, tmp_path):
    """What a finished test left behind: the empty list when nothing."""
    found = []
    if os.path.isdir(runtime.root):
        found += [f"state dir {n}" for n in os.listdir(runtime.root)]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if str(tmp_path) in line.split()[4]]
    for cid in runtime.ids:
        for base, dirs, _ in os.walk("/sys/fs/cgroup"):
            found += [f"cgroup {os.path.join(base, d)}" for d in dirs if d == cid]
    found += [f"process {pid} in a rootfs of this test" for pid in processes_rooted_at(*tmp_path.glob("*/rootfs"))]
    return found


def processes_rooted_at(*rootfs):
    """Pids whose root directory is one of ``rootfs``. A container's process has pivoted:
    /proc/<pid>/root reads "/", but it is the bundle's rootfs directory all the same
    (same device and inode)."""
    roots = {(st.st_dev, st.st_ino) for st in map(os.stat, rootfs)}
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}/root")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in roots:
                found.append(int(pid))
    return found


def stop_daemon(daemon, timeout):
    """End a daemon the tests started (in its own process group): SIGTERM, then SIGKILL
    to the group if it hasn't gone after ``timeout`` seconds."""
    daemon.terminate()
    try:
        daemon.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


@pytest.fixture
def runtime(tmp_path):
    rt = Runtime(tmp_path / "state")
    yield rt
    left = leftovers(rt, tmp_path)
    # Clean up so one failure doesn't cascade, then fail on what was found.
    for cid in rt.ids:
        rt("delete", "--force", cid, check=False)
    assert not left, f"left behind: {left}"
