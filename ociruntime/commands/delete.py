"""delete: remove a stopped container (with --force, stop it first):
its processes, cgroups and state directory; then run the poststop hooks.

A container that was created but never started is deleted without --force too, its
waiting init killed, as runc does: runtime.md calls deleting a container that is not
stopped an error (runtime-tools' delete test checks it, and runc fails that check too),
but engines are written against runc: containerd-shim-runc-v2's Delete of a task in its
created state runs a plain `delete` and fails when it fails, leaving the init blocked on
its start pipe with the container's namespaces, cgroups and mounts
(tests/test_runc_contract.py drives that shim). A running or paused container still
needs --force. `delete --force` of an id that doesn't exist succeeds, as runc's does.
"""

import _signal
import posix
import time

from .. import cgroups, hooks, hostmounts, pathnames, state
from ..errors import OCIError


def _kill_all(container):
    """SIGKILL the init and everything in the cgroups; False when there was nothing to kill."""
    data = container.data
    pids = cgroups.pids(data["cgroup_paths"])
    status = container.status()
    if status != "stopped":
        pids.add(data["pid"])
    for pid in pids:
        try:
            posix.kill(pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
    if status == "paused":
        from .pause import set_frozen

        set_frozen(data["freezer"], False)  # a frozen process can't die
    return bool(pids)


def _wait_stopped(container, timeout=10.0):
    data = container.data
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Our own child when deleting from `run`: reap it.
            posix.waitpid(data["pid"], posix.WNOHANG)
        except ChildProcessError:
            pass
        if container.status() == "stopped" and not cgroups.pids(data["cgroup_paths"]):
            return
        if time.monotonic() > deadline:
            raise OCIError(f"container {container.id!r}: processes still running after SIGKILL")
        time.sleep(0.002)


def destroy(container):
    """Kill what is left, remove the cgroups, mounts and state, then run poststop."""
    if _kill_all(container):
        _wait_stopped(container)
    cgroups.remove(container.data.get("cgroups_created") or [])
    hostmounts.detach_added(container.data)
    final_state = container.spec_state()
    container.remove()
    hooks.run(container.data["hooks"]["poststop"], final_state, fatal=False)


def main(root, container_id, force=False):
    state.check_id(container_id)
    try:
        container = state.Container.load(root, container_id)
    except OCIError:
        if force and not pathnames.exists(f"{root}/{container_id}"):
            return
        raise
    with container:
        status = container.status()
        if status not in ("stopped", "created") and not force:
            raise OCIError(f"cannot delete container {container_id!r} that is not stopped: {status}")
        destroy(container)
