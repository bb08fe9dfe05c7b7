"""pause and resume with real containers: a paused container's processes really stop
(a counter it writes stands still), `state` says paused, resume lets them go on, and
a paused container can still be killed and deleted with nothing left behind."""

import time

import pytest
from conftest import create_and_start, wait_status

pytestmark = pytest.mark.root

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.01; done"


def _count(bundle):
    text = (bundle.rootfs / "count").read_text().strip()
    return int(text) if text else 0


def _running_counter(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", COUNTER, root={"path": "rootfs", "readonly": False})
    cid = create_and_start(runtime, bundle)
    deadline = time.monotonic() + 5
    while not (bundle.rootfs / "count").exists() or _count(bundle) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return bundle, cid


def test_pause_freezes_and_resume_thaws(runtime, make_bundle):
    bundle, cid = _running_counter(runtime, make_bundle)
    runtime("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    assert f"{cid}" in runtime("list").stdout and "paused" in runtime("list").stdout
    frozen_at = _count(bundle)
    time.sleep(0.3)
    assert _count(bundle) == frozen_at  # nothing ran meanwhile
    runtime("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    deadline = time.monotonic() + 5
    while _count(bundle) <= frozen_at:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    runtime("delete", "--force", cid)


def test_pause_and_resume_need_the_right_status(runtime, make_bundle):
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    proc = runtime("pause", cid, check=False)
    assert proc.returncode != 0 and "is created, not running" in proc.stderr
    runtime("start", cid)
    proc = runtime("resume", cid, check=False)
    assert proc.returncode != 0 and "is running, not paused" in proc.stderr
    runtime("pause", cid)
    proc = runtime("pause", cid, check=False)
    assert proc.returncode != 0 and "is paused, not running" in proc.stderr
    proc = runtime("delete", cid, check=False)
    assert proc.returncode != 0 and "not stopped: paused" in proc.stderr
    proc = runtime("pause", "no-such-container", check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    runtime("delete", "--force", cid)


def test_a_paused_container_is_deleted_with_force(runtime, make_bundle):
    _, cid = _running_counter(runtime, make_bundle)
    runtime("pause", cid)
    runtime("delete", "--force", cid)  # the leak check then finds no process, cgroup or state
    assert runtime("state", cid, check=False).returncode != 0


def test_a_signal_to_a_paused_container_lands_on_resume(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "trap 'exit 7' TERM; " + COUNTER, root={"path": "rootfs", "readonly": False})
    cid = create_and_start(runtime, bundle)
    wait_status(runtime, cid, "running")
    time.sleep(0.1)  # let the shell install its trap
    runtime("pause", cid)
    runtime("kill", cid, "TERM")
    time.sleep(0.1)
    assert runtime.state(cid)["status"] == "paused"  # frozen: the signal waits
    runtime("resume", cid)
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)


def test_sigkill_thaws_a_paused_container_as_runc_does(runtime, make_bundle):
    """A frozen process would not act on SIGKILL until thawed: runc thaws for it."""
    _, cid = _running_counter(runtime, make_bundle)
    runtime("pause", cid)
    runtime("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)
