"""The host criu runs on (the qemu lane's plain guest, where conftest finds `criu check`
passing; tests/vm/README.md): `criu check` says so, the kernel modules the lane loads for it
are loaded, the features checkpoint/restore relies on are there, and a process in a network
namespace of its own (lo only, as a container's) dumps and restores."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "vm"))
import lane  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.criu]


def criu(*args, timeout=120):
    return subprocess.run(["criu", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def test_criu_check_looks_good(capsys):
    version = criu("--version")
    with capsys.disabled():  # which criu the checkpoint tests ran with, in the lane's output
        print(f"\ncriu: {' '.join(version.stdout.split())}")
    assert version.returncode == 0 and re.search(r"Version: \d+\.\d+", version.stdout), version
    proc = criu("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Looks good." in proc.stdout + proc.stderr


def test_the_modules_criu_needs_are_loaded():
    """The lane's guest loads them at boot (nothing there would on demand)."""
    if not os.path.isdir("/v2lane/bin"):  # made by its init
        pytest.skip("not the qemu lane's guest: a kernel here loads what criu asks for on demand")
    with open("/proc/modules") as f:
        loaded = {line.split()[0] for line in f}
    builtin = {name for name in lane.CRIU_MODULES if os.path.isdir(f"/sys/module/{name}")} - loaded
    assert set(lane.CRIU_MODULES) - loaded - builtin == set()


@pytest.mark.parametrize("feature", ["mem_dirty_track", "timens"])
def test_criu_feature(feature):
    """Soft-dirty memory tracking (pre-dump, --track-mem) and time namespaces."""
    proc = criu("check", "--feature", feature)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dump_and_restore_a_process_in_its_own_network_namespace(tmp_path):
    """What a container with a network namespace of its own (lo only) needs: criu saves and
    restores the namespace (iproute2's ip, nftables), and the process goes on counting."""
    counter, images = tmp_path / "count", tmp_path / "images"
    images.mkdir()
    script = f"i=0; while :; do i=$((i+1)); echo $i > {counter}; sleep 0.2; done"
    # A session of its own and no terminal: nothing that criu would need told is external.
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    restored = False
    try:
        wait_for(lambda: counter.read_text().strip())
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        dump = criu("dump", "-t", str(proc.pid), "-D", str(images), "-o", "dump.log", "-v4")
        assert dump.returncode == 0, (images / "dump.log").read_text()[-4000:]
        assert proc.wait(timeout=10) == -signal.SIGKILL  # criu kills what it dumped
        before = int(counter.read_text())
        restore = criu("restore", "-D", str(images), "-o", "restore.log", "-v4", "-d")
        assert restore.returncode == 0, (images / "restore.log").read_text()[-4000:]
        restored = True
        wait_for(lambda: int(counter.read_text() or 0) > before)
        # the same pid (now init's child), in a network namespace of its own again
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        elif restored:
            os.kill(proc.pid, signal.SIGKILL)


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s")
