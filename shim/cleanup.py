"""``containerd-shim-ociruntime-v2 delete``: containerd's cleanup after a shim that died
(killed, or gone before containerd could reach it). The container is force-deleted, the
rootfs unmounted, and a DeleteResponse written to stdout for containerd: the init's pid and
128+SIGKILL, as containerd-shim-runc-v2 reports it (runtime/v2/runc/manager: Stop).
Unlike that shim, the dead shim's socket file goes too (if nothing listens there now)."""

import posix
import time

from ociruntime.errors import OCIError
from ociruntime.log import warn

from . import mounts, rendezvous


def after_dead_shim(opts):
    """The DeleteResponse's bytes.

    containerd runs this after every task's connection closed, also when the shim deleted
    the task itself and is well (runtime/v2/manager.go: its onClose), and waits for it: on
    every container's delete path. Then the bundle holds no cleanup record, nothing is to
    be done, and the answer is the empty message (all fields zero) — nothing imported, no
    protobuf, no runtime. (The shim's C launcher gives that answer before Python starts,
    unless a dead shim's socket is to be removed; this covers a pip console script.)"""
    bundle = opts.get("bundle") or posix.getcwd()
    _remove_dead_shim(bundle)
    if not mounts.has_cleanup_record(bundle):
        return b""
    return _cleanup(opts, bundle)


def _remove_dead_shim(bundle):
    try:
        with open(f"{bundle}/address") as f:
            rendezvous.remove_dead(f.read().strip())
    except OSError:
        pass


def _cleanup(opts, bundle):
    from ociruntime import api

    record = mounts.read_cleanup_record(bundle)
    root = record.get("root") or f"/run/containerd/ociruntime/{opts['namespace']}"
    try:
        api.delete(opts["id"], force=True, root=root)
    except OCIError as e:
        warn(f"deleting container {opts['id']}: {e}")
    mounts.unmount_all(f"{bundle}/rootfs")
    mounts.remove_cleanup_record(bundle)
    try:
        with open(f"{bundle}/init.pid") as f:
            pid = int(f.read() or 0)
    except (OSError, ValueError):
        pid = 0
    from .protocol import message
    from .service import timestamp

    return message("containerd.task.v2.DeleteResponse")(pid=pid, exit_status=128 + 9,
                                                        exited_at=timestamp(time.time())).SerializeToString()
