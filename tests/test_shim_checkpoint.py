"""The shim's Checkpoint, and Create from a checkpoint (restored at Start), driven through
its ttrpc API as tests/test_shim.py drives it: real containers, real CRIU. Marked ``criu``:
they run in the qemu lane's plain guest (tests/vm/README.md), where CRIU works.

A container CRIU is to save must have pipes as its stdio (or a pty), not the host's
/dev/null: so every task here has a stdin FIFO (``stdin=True``) and a log for its output,
which the shim hands the container as pipes."""

import glob
import os
import signal
import time

import pytest
import test_shim
from conftest import leftovers
from test_checkpoint import COUNTER
from test_shim import gone, shim_pid

pytestmark = pytest.mark.root
engine = test_shim.engine  # the fixture: shims launched for bundles, all gone after the test


def counted(log, at_least=0, timeout=30):
    """The numbers the counter wrote to ``log``, once there are ``at_least``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(log) as f:
                numbers = [int(n) for n in f.read().split()]
        except FileNotFoundError:
            numbers = []
        if len(numbers) >= at_least:
            return numbers
        if time.monotonic() > deadline:
            raise AssertionError(f"{log}: {len(numbers)} numbers after {timeout}s, not {at_least}: {numbers}")
        time.sleep(0.05)


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.criu
def test_checkpoint_with_exit_then_a_task_restored_from_it_counts_on(engine, make_bundle, runtime, tmp_path):
    log = tmp_path / "out.log"
    first = engine(make_bundle("sh", "-c", COUNTER), "ck-first")
    first.create(log=str(log), stdin=True, root=engine.root)
    first.start()
    assert counted(log, 5)[:5] == [1, 2, 3, 4, 5]
    images = tmp_path / "images"
    first.checkpoint(str(images), exit=True)
    # CRIU killed its processes: the init's exit is reaped and reported, as runc's shim does,
    # after all it wrote before the dump reached the log
    assert first.wait(timeout=30)[0] == 128 + signal.SIGKILL
    assert first.state().status == 3  # STOPPED
    before = counted(log)
    last = before[-1]
    assert before == list(range(1, last + 1))
    assert (images / "descriptors.json").exists()
    assert not os.path.exists(os.path.join(engine.root, "ck-first"))  # the container went with it
    assert not os.path.exists(first.bundle + "/criu-work")  # the shim's own work directory, removed
    assert first.delete() == 128 + signal.SIGKILL

    # another task, another bundle, the same images: created now, restored at Start
    second = engine(make_bundle("sh", "-c", COUNTER), "ck-second")
    assert second.create(log=str(log), stdin=True, root=engine.root, checkpoint=str(images)) == 0
    state = second.state()
    assert state.status == 1 and state.pid == 0  # CREATED: nothing runs before Start
    assert not os.path.exists(os.path.join(engine.root, "ck-second"))
    pid = second.start()
    assert pid > 0
    state = second.state()
    assert state.status == 2 and state.pid == pid  # RUNNING
    assert parent_of(pid) == shim_pid(second)  # the restored init is the shim's child, reaped by it
    after = counted(log, len(before) + 5)[len(before):]
    assert after[:5] == list(range(last + 1, last + 6)), (last, after)  # from its count, to the task's log
    assert second.pids() and pid in second.pids()
    owner = shim_pid(second)
    second.kill(signal.SIGKILL)
    assert second.wait(timeout=30)[0] == 128 + signal.SIGKILL
    assert second.delete() == 128 + signal.SIGKILL
    assert gone(owner), "the shim stayed after its last container was deleted"
    assert not leftovers(runtime, tmp_path)


@pytest.mark.criu
def test_checkpoint_without_exit_leaves_it_running(engine, make_bundle, tmp_path):
    log = tmp_path / "out.log"
    shim = engine(make_bundle("sh", "-c", COUNTER), "ck-stay")
    shim.create(log=str(log), stdin=True, root=engine.root)
    with pytest.raises(Exception) as refused:  # a created container: nothing to save yet
        shim.checkpoint(str(tmp_path / "early"))
    assert "cannot be checkpointed in created state" in str(refused.value), refused.value
    pid = shim.start()
    counted(log, 3)
    work = tmp_path / "work"
    shim.checkpoint(str(tmp_path / "images"), work_path=str(work))
    assert (work / "dump.log").exists()  # a work directory asked for is kept
    state = shim.state()
    assert state.status == 2 and state.pid == pid
    now = len(counted(log))
    assert counted(log, now + 3)[now:now + 3]  # it counts on
    shim.kill(signal.SIGKILL)
    assert shim.wait(timeout=30)[0] == 128 + signal.SIGKILL
    shim.delete()


@pytest.mark.criu
def test_a_checkpoint_criu_refuses_keeps_its_log_beside_the_bundle(engine, make_bundle, tmp_path):
    """An established TCP connection, without open_tcp (runc's --tcp-established): CRIU
    refuses it. The error is CRIU's line, its log is kept as <bundle>/criu-dump.log (runc's
    shim's name), and the task runs on."""
    log = tmp_path / "out.log"
    connected = ("ip link set lo up; sleep 600 | nc -l -p 5000 & sleep 0.5; sleep 600 | nc 127.0.0.1 5000 & "
                 + COUNTER)
    bundle = make_bundle("sh", "-c", connected)
    for caps in bundle.config["process"]["capabilities"].values():
        caps.append("CAP_NET_ADMIN")  # to bring lo up
    shim = engine(bundle.write(), "ck-refused")
    shim.create(log=str(log), root=engine.root)
    pid = shim.start()
    counted(log, 2)
    with pytest.raises(Exception) as refused:
        shim.checkpoint(str(tmp_path / "images"), exit=True)
    kept = f"{shim.bundle}/criu-dump.log"
    assert "checkpoint: criu dump: " in str(refused.value) and f"(log: {kept})" in str(refused.value), refused.value
    with open(kept) as f:
        assert "tcp-established" in f.read()  # CRIU's own reason
    assert os.path.exists(kept) and not os.path.exists(f"{shim.bundle}/criu-work")
    state = shim.state()
    assert state.status == 2 and state.pid == pid
    shim.kill(signal.SIGKILL)
    assert shim.wait(timeout=30)[0] == 128 + signal.SIGKILL
    shim.delete()


def test_a_failed_restore_leaves_the_task_created_to_delete(engine, make_bundle, runtime, tmp_path):
    """Images that aren't a checkpoint: Start fails with the runtime's line, the task stays
    created (containerd-shim-runc-v2's createdCheckpoint), Delete removes it. (No CRIU
    needed: the runtime refuses before it runs CRIU.)"""
    (tmp_path / "empty").mkdir()
    shim = engine(make_bundle("sh", "-c", COUNTER), "ck-bad")
    shim.create(log=str(tmp_path / "out.log"), stdin=True, root=engine.root, checkpoint=str(tmp_path / "empty"))
    with pytest.raises(Exception) as refused:
        shim.start()
    assert "no descriptors.json" in str(refused.value), refused.value
    assert shim.state().status == 1
    shim.delete()
    assert not leftovers(runtime, tmp_path)


# --- through containerd: ctr's checkpoint and restore, with our shim ----------------------


@pytest.fixture
def native_containerd(request, monkeypatch):
    """The session's containerd (conftest), its image unpacked for the native snapshotter
    where the kernel has no overlay file system (the lane's guest loads no overlay module)."""
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read().split():
            monkeypatch.setenv("CONTAINERD_SNAPSHOTTER", "native")
    return request.getfixturevalue("containerd")


@pytest.mark.criu
def test_ctr_checkpoint_then_restore_live(native_containerd):
    """`ctr containers checkpoint --task --rw` (ctr pauses the task, our shim's Checkpoint
    saves it and leaves it running, ctr resumes it), the task and container removed, then
    `ctr containers restore --live --rw`: containerd's Create with the checkpoint, our
    shim's restore at Start, and the counter counts on from where it was, with the random
    tag it drew when it started (a new start would draw another)."""
    from containerd import IMAGE

    ctrd = native_containerd
    cid = ctrd.new_id("ck")
    ref = f"localhost/checkpoint/{cid}:1"
    count = ["task", "exec", "--fifo-dir", ctrd.fifo_dir, "--exec-id"]

    def value(n):
        """(tag, count); ("", 0) before the first write, or caught between truncation and write."""
        words = ctrd.ctr(*count, f"cat{n}", cid, "cat", "/count", check=False).stdout.split()
        return (words[0], int(words[1])) if len(words) == 2 else ("", 0)

    def wait_for(predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while not (got := predicate()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return got

    ctrd.ctr("run", "--runtime", "io.containerd.ociruntime.v2", "--fifo-dir", ctrd.fifo_dir, "--detach", IMAGE, cid,
             "sh", "-c", "t=$RANDOM$RANDOM; i=0; while :; do i=$((i+1)); echo $t $i >/count; sleep 0.1; done")
    try:
        assert wait_for(lambda: value(1)[1] >= 10)
        tag, dumped = value(2)
        ctrd.ctr("containers", "checkpoint", "--task", "--rw", cid, ref, timeout=300)
        assert ctrd.tasks()[cid][1] == "RUNNING"  # saved, left running, resumed
        ctrd.ctr("task", "kill", "--signal", "KILL", cid)
        assert wait_for(lambda: ctrd.tasks()[cid][1] == "STOPPED")
        ctrd.ctr("task", "delete", cid)
        ctrd.ctr("containers", "delete", cid)
        ctrd.ctr("containers", "restore", "--live", "--rw", cid, ref, timeout=300)
        pid, status = ctrd.tasks()[cid]
        assert status == "RUNNING" and pid > 0
        again, first = value(3)
        assert again == tag and first >= dumped, (tag, dumped, again, first)  # from the count at the dump
        later = wait_for(lambda: (v := value(4))[1] > first and v)  # and on
        assert later and later[0] == tag, (tag, first, later)
        ctrd.ctr("task", "kill", "--signal", "KILL", cid)
        assert wait_for(lambda: ctrd.tasks()[cid][1] == "STOPPED")
        ctrd.ctr("task", "delete", cid)
        ctrd.ctr("containers", "delete", cid)
    finally:
        ctrd.ctr("images", "remove", ref, check=False)
        for fifo in glob.glob(f"/run/containerd/fifo/*/{cid}-*"):  # ctr restore's own, ctr's default dir
            os.unlink(fifo)
    assert not ctrd.leftovers(cid)
