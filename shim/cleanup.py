"""``containerd-shim-ociruntime-v2 delete``: containerd's cleanup after a shim that died
(killed, or gone before containerd could reach it). The container is force-deleted, the
rootfs unmounted, and a DeleteResponse written to stdout for containerd: the init's pid and
128+SIGKILL, as containerd-shim-runc-v2 reports it (runtime/v2/runc/manager: Stop).
Unlike that shim, the dead shim's socket file goes too (if nothing listens there now)."""

import posix
import time

from ociruntime import api
from ociruntime.errors import OCIError
from ociruntime.log import warn

from . import mounts, rendezvous


def after_dead_shim(opts):
    """The DeleteResponse's bytes."""
    bundle = opts.get("bundle") or posix.getcwd()
    record = mounts.read_cleanup_record(bundle)
    root = record.get("root") or f"/run/containerd/ociruntime/{opts['namespace']}"
    try:
        api.delete(opts["id"], force=True, root=root)
    except OCIError as e:
        warn(f"deleting container {opts['id']}: {e}")
    mounts.unmount_all(f"{bundle}/rootfs")
    mounts.remove_cleanup_record(bundle)
    try:
        with open(f"{bundle}/address") as f:
            rendezvous.remove_dead(f.read().strip())
    except OSError:
        pass
    try:
        with open(f"{bundle}/init.pid") as f:
            pid = int(f.read() or 0)
    except (OSError, ValueError):
        pid = 0
    from .protocol import message
    from .service import timestamp

    return message("containerd.task.v2.DeleteResponse")(pid=pid, exit_status=128 + 9,
                                                        exited_at=timestamp(time.time())).SerializeToString()
