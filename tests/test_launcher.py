"""The installed command (native/launcher.c): it starts the cgroup-migration primer for
create and run only, Python adopts it and reaps it, and a primer named by anyone else
is never taken for ours."""

import os
import re
import subprocess
import time

import pytest
from conftest import LAUNCHER_SCRIPT, RUNTIME

from ociruntime import cgroups

PRIMER_LINE = re.compile(r"cgroup migration primer: the launcher's, pid (\d+)")


def _debug_run(runtime, *args):
    proc = runtime("--debug", *args)
    return proc, PRIMER_LINE.search(proc.stderr)


def _gone(pid, timeout=2.0):
    """True once ``pid`` no longer exists at all (not even as a zombie)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.root
def test_create_and_run_adopt_and_reap_the_launchers_primer(runtime, make_bundle):
    cid = runtime.new_id()
    proc, found = _debug_run(runtime, "create", "--bundle", make_bundle("sleep", "30").path, cid)
    assert found, proc.stderr
    assert _gone(int(found.group(1)))
    proc, found = _debug_run(runtime, "run", "--bundle", make_bundle("true").path, runtime.new_id())
    assert found, proc.stderr
    assert _gone(int(found.group(1)))
    runtime("delete", "--force", cid)


@pytest.mark.root
def test_run_leaves_no_zombie_while_the_container_runs(runtime, make_bundle):
    """The primer is reaped once the container joined, not when `run` ends."""
    bundle = make_bundle("sleep", "5")
    cid = runtime.new_id()
    with open(os.devnull, "w") as devnull:
        run = subprocess.Popen([RUNTIME, "--root", runtime.root, "run", "--bundle", bundle.path, cid],
                               stdin=subprocess.DEVNULL, stdout=devnull, stderr=devnull)
    try:
        deadline = time.monotonic() + 10
        while runtime("state", cid, check=False).returncode != 0 or runtime.state(cid)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with open(f"/proc/{run.pid}/task/{run.pid}/children") as f:
            children = f.read().split()
        states = []
        for child in children:
            with open(f"/proc/{child}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        assert states == ["S"], states  # the container's init only, alive
    finally:
        runtime("kill", cid, "KILL", check=False)
        run.wait(timeout=10)


@pytest.mark.root
def test_other_commands_start_no_primer(runtime, make_bundle):
    proc, found = _debug_run(runtime, "list")
    assert not found and "primer" not in proc.stderr
    # A container id that is also a command word is not the command.
    proc = runtime("--debug", "state", "run", check=False)
    assert "primer" not in proc.stderr and "does not exist" in proc.stderr


def test_the_launcher_script_alone_primes_on_a_thread(tmp_path):
    """Without the C launcher (another entry point) Python primes by itself."""
    with open(LAUNCHER_SCRIPT) as f:
        interpreter = f.readline()[2:].split()
    proc = subprocess.run([*interpreter, LAUNCHER_SCRIPT, "--debug", "--root", str(tmp_path), "create",
                           "--bundle", str(tmp_path / "missing"), "x"], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "cgroup migration primer: a thread" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", [b"garbage", b"1:1", b"1:0", b"-1:-1"])
def test_a_primer_named_by_someone_else_is_refused(monkeypatch, value):
    """OCIRUNTIME_PRIMER from the environment is ours only if it names a child of this
    process and a pipe: nothing else gets closed or waited for."""
    monkeypatch.setitem(os.environ, "OCIRUNTIME_PRIMER", value.decode())
    assert cgroups._adopt_launcher_primer() is None


def test_a_real_child_and_pipe_are_adopted(monkeypatch):
    read, write = os.pipe2(0)
    pid = os.fork()
    if pid == 0:
        os.close(write)
        os.read(read, 1)  # until the pipe hangs up, like the primer
        os._exit(0)
    os.close(read)
    monkeypatch.setitem(os.environ, "OCIRUNTIME_PRIMER", f"{pid}:{write}")
    assert cgroups._adopt_launcher_primer() == (pid, write)
    assert not os.get_inheritable(write)
    cgroups.prime_migration()  # adopts it (no thread started)
    cgroups.end_priming()  # closes the pipe and reaps the child
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
