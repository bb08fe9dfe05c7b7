"""Containers on a pure cgroup v2 host. These run in the qemu guest of tests/vm (booted
by tests/test_v2_lane.py); conftest deselects them on a host that is not pure v2."""

import time
from pathlib import Path

import pytest
from conftest import create_and_start, wait_status

pytestmark = [pytest.mark.root, pytest.mark.cgroup_v2]

REPORT = ("cat /proc/self/cgroup > /cgroup.txt; grep ' /sys/fs/cgroup ' /proc/self/mountinfo > /mounts.txt; "
          "touch /done; sleep 30")


def _own_cgroup():
    """This process's cgroup2 path, from its one "0::<path>" line."""
    return Path("/proc/self/cgroup").read_text().strip().removeprefix("0::")


def test_container_runs_in_its_own_cgroup_which_delete_removes(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", REPORT, root={"path": "rootfs", "readonly": False})
    cid = create_and_start(runtime, bundle)
    deadline = time.monotonic() + 20
    while not (bundle.rootfs / "done").exists():
        assert time.monotonic() < deadline, "the container never wrote its report"
        time.sleep(0.05)
    lines = (bundle.rootfs / "cgroup.txt").read_text().splitlines()
    # The default cgroupsPath is the container id, below the runtime's own cgroup.
    expected = f"{_own_cgroup().rstrip('/')}/{cid}"
    assert lines == [f"0::{expected}"], lines
    mounts = (bundle.rootfs / "mounts.txt").read_text().splitlines()
    assert [line.split(" - ")[1].split()[0] for line in mounts] == ["cgroup2"], mounts
    directory = Path("/sys/fs/cgroup" + expected)
    assert directory.is_dir()
    assert str(runtime.state(cid)["pid"]) in (directory / "cgroup.procs").read_text().split()
    runtime("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)
    assert not directory.exists(), f"{directory} outlived the container"
