"""Docker drives ociruntime: a private dockerd (Debian's docker.io, which scripts/setup.sh
installs) with ``ociruntime`` as a runtime, a busybox image imported from the test rootfs,
and containers run through containerd-shim-runc-v2 → our binary.

What it shows: Docker's default seccomp profile, as Docker writes it into config.json,
loads in our runtime — `unshare -U true` fails with EPERM there while ordinary programs
run — and with ``seccomp=unconfined`` the same command succeeds, so the profile is what
stops it.
"""

import glob
import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest
from conftest import RUNTIME, stop_daemon

pytestmark = pytest.mark.root

DOCKER = "/usr/bin/docker"  # Debian's CLI (another docker may come first on PATH)
DOCKERD = "/usr/sbin/dockerd"
PROBE = "grep Seccomp: /proc/self/status; unshare -U true; echo unshare=$?; ls /bin/busybox"


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


class Docker:
    def __init__(self, base):
        self.base = base
        self.sock = f"unix://{base}/docker.sock"
        self.exec_root = os.path.join(base, "exec")

    def __call__(self, *args, check=True, timeout=60):
        proc = subprocess.run([DOCKER, "-H", self.sock, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def docker(tmp_path_factory, rootfs_template):
    assert os.access(DOCKERD, os.X_OK), "docker.io is not installed: run scripts/setup.sh"
    base = str(tmp_path_factory.mktemp("docker"))
    cgroups_before = set(glob.glob("/sys/fs/cgroup/*/docker"))
    with open(os.path.join(base, "daemon.json"), "w") as f:
        json.dump({"runtimes": {"ociruntime": {"path": RUNTIME}}, "bridge": "none", "iptables": False,
                   "ip-forward": False, "ip-masq": False, "storage-driver": "vfs",
                   "exec-opts": ["native.cgroupdriver=cgroupfs"]}, f)
    log = open(os.path.join(base, "dockerd.log"), "w")
    daemon = subprocess.Popen([DOCKERD, "--config-file", os.path.join(base, "daemon.json"),
                               "--data-root", os.path.join(base, "data"), "--exec-root", os.path.join(base, "exec"),
                               "-H", f"unix://{base}/docker.sock", "--pidfile", os.path.join(base, "docker.pid")],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    d = Docker(base)
    try:
        deadline = time.monotonic() + 60
        while d("version", check=False).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, open(log.name).read()[-3000:]
            time.sleep(0.2)
        image = os.path.join(base, "busybox.tar")
        with tarfile.open(image, "w") as tar:
            tar.add(str(rootfs_template), arcname=".")
        d("import", image, "busybox:ociruntime-test")
        yield d
    finally:
        for cid in d("ps", "-aq", check=False).stdout.split():
            d("rm", "-f", cid, check=False)
        stop_daemon(daemon, 60)
        log.close()
        for path in set(glob.glob("/sys/fs/cgroup/*/docker")) - cgroups_before:
            os.rmdir(path)  # dockerd's own parent cgroup; fails (and says so) if a container's is left
        leftover = _mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)
        assert not leftover, leftover


def _run(docker, *options):
    return docker("run", "--rm", "--runtime", "ociruntime", "--network", "none", *options,
                  "busybox:ociruntime-test", "sh", "-c", PROBE, check=False)


def test_dockers_default_profile_blocks_unshare(docker):
    proc = _run(docker)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Seccomp:\t2" in out, out
    assert "unshare: unshare(0x10000000): Operation not permitted" in out and "unshare=1" in out, out
    assert "/bin/busybox" in out, out  # ordinary programs run


def test_unconfined_lets_unshare_through(docker):
    """The negative control: without the profile the same command succeeds."""
    proc = _run(docker, "--security-opt", "seccomp=unconfined")
    assert proc.returncode == 0, proc.stderr
    assert "Seccomp:\t0" in proc.stdout and "unshare=0" in proc.stdout, proc.stdout + proc.stderr


def test_the_container_is_ours_and_its_config_has_dockers_profile(docker):
    cid = docker("run", "-d", "--runtime", "ociruntime", "--network", "none", "busybox:ociruntime-test",
                 "sleep", "60").stdout.strip()
    try:
        # containerd-shim-runc-v2 runs our binary with --root <exec-root>/runtime-<runtime>/moby
        ours = subprocess.run([RUNTIME, "--root", os.path.join(docker.exec_root, "runtime-runc", "moby"), "state",
                               cid], capture_output=True, text=True, timeout=30)
        assert ours.returncode == 0 and json.loads(ours.stdout)["status"] == "running", ours.stderr
        bundle = json.loads(ours.stdout)["bundle"]
        with open(os.path.join(bundle, "config.json")) as f:
            profile = json.load(f)["linux"]["seccomp"]
        assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
        assert "SCMP_ARCH_X86_64" in profile["architectures"]
        allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
        assert "read" in allowed and "unshare" not in allowed
    finally:
        docker("rm", "-f", cid, check=False)


def test_docker_exec_runs_through_our_exec(docker):
    """`docker exec` makes containerd's shim call `ociruntime exec --process … --detach
    --pid-file …`: the new process shares the container's pid namespace and exit codes
    come back, with and without a tty."""
    cid = docker("run", "-d", "--runtime", "ociruntime", "--network", "none", "busybox:ociruntime-test",
                 "sleep", "60").stdout.strip()
    try:
        proc = docker("exec", "-e", "FROM_EXEC=1", cid, "sh", "-c", "echo $FROM_EXEC; ps -o pid,comm; exit 3",
                      check=False)
        assert proc.returncode == 3, proc.stderr
        lines = proc.stdout.split("\n")
        assert lines[0] == "1" and lines[2].split() == ["1", "sleep"], proc.stdout
        tty = docker("exec", "-t", cid, "tty", check=False)
        assert tty.returncode == 0 and tty.stdout.strip().startswith("/dev/pts/"), tty.stdout + tty.stderr
    finally:
        docker("rm", "-f", cid, check=False)
