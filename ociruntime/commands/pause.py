"""pause and resume: freeze every process of a running container (the v1 freezer
cgroup) and thaw it again; `state` then says "paused" (state.status_of)."""

import time

from .. import state
from ..errors import OCIError

_SETTLE = 5.0  # seconds a freeze may take before it is an error (tasks in D state hold it up)


def main(root, container_id, freeze=True):
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if freeze and status != "running":
            raise OCIError(f"container {container_id!r} is {status}, not running")
        if not freeze and status != "paused":
            raise OCIError(f"container {container_id!r} is {status}, not paused")
        path = container.data.get("freezer")
        if not path:
            raise OCIError("pause: this host has no v1 freezer cgroup (cgroup v2 freezing is not supported yet)")
        set_frozen(path, freeze)


def set_frozen(path, freeze):
    """Write FROZEN or THAWED to ``freezer.state`` and wait until the kernel got there."""
    want = "FROZEN" if freeze else "THAWED"
    deadline = time.monotonic() + _SETTLE
    while True:
        with open(path, "w") as f:
            f.write(want)
        with open(path) as f:
            if f.read().strip() == want:
                return
        if time.monotonic() > deadline:
            raise OCIError(f"{path}: still not {want} after {_SETTLE:.0f} s")
        time.sleep(0.001)


def resume_main(root, container_id):
    main(root, container_id, freeze=False)
