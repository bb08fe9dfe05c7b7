"""pause and resume: freeze every process of a running container (the v1 freezer
cgroup, or cgroup v2's cgroup.freeze) and thaw it again; `state` then says "paused"
(state.status_of)."""

import time

from .. import cgroups, state
from ..errors import OCIError

_SETTLE = 5.0  # seconds a freeze may take before it is an error (tasks in D state hold it up)


def set_paused(root, container_id, freeze):
    """Pause (``freeze``) a running container, or resume a paused one."""
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if freeze and status != "running":
            raise OCIError(f"container {container_id!r} is {status}, not running")
        if not freeze and status != "paused":
            raise OCIError(f"container {container_id!r} is {status}, not paused")
        path = cgroups.freezer_file(container.cgroup_paths)
        if not path:
            verb = "pause" if freeze else "resume"
            raise OCIError(f"{verb}: the container has no freezer (no v1 freezer cgroup, no cgroup v2 directory)")
        set_frozen(path, freeze)


def set_frozen(path, freeze):
    """Freeze or thaw, and wait until the kernel got there: v1 ``freezer.state`` reads
    FREEZING until every task stopped; v2's ``cgroup.events`` says "frozen 1" then."""
    v2 = path.endswith("/cgroup.freeze")
    want = ("1" if freeze else "0") if v2 else ("FROZEN" if freeze else "THAWED")
    done = f"frozen {want}" if v2 else want
    check = path.rpartition("/")[0] + "/cgroup.events" if v2 else path
    deadline = time.monotonic() + _SETTLE
    while True:
        with open(path, "w") as f:
            f.write(want)
        with open(check) as f:
            if done in f.read().splitlines():
                return
        if time.monotonic() > deadline:
            raise OCIError(f"{path}: still not {want} after {_SETTLE:.0f} s")
        time.sleep(0.001)
