"""The task's root filesystem as containerd describes it (CreateTaskRequest.rootfs: the
snapshot's overlay or bind mount), mounted at <bundle>/rootfs before create and
unmounted at delete; and the small record the ``delete`` action reads after a shim died."""

import posix

from ociruntime import fastjson
from ociruntime.errors import OCIError

RECORD = "ociruntime-shim.json"


def mount_rootfs(bundle, rootfs):
    """Mount each of containerd's mounts on <bundle>/rootfs, in order; the targets mounted."""
    if not rootfs:
        return []
    from ociruntime import native
    from ociruntime.linux import mountopts

    target = f"{bundle}/rootfs"
    try:
        posix.mkdir(target, 0o711)
    except FileExistsError:
        pass
    done = []
    try:
        for i, m in enumerate(rootfs):
            try:
                flags, propagation, data = mountopts.parse(list(m.options), f"rootfs[{i}]")
            except ValueError as e:
                raise OCIError(str(e)) from None
            native.mount(m.source, target, m.type, flags, data)
            done.append(target)
            if propagation:
                native.mount("", target, "", propagation, "")
    except BaseException:
        _unmount(done)
        raise
    return done


def unmount_rootfs(bundle, mounted):
    _unmount(mounted)


def _unmount(targets):
    from ociruntime import native

    for target in reversed(targets):
        native.detach_mount(target)


def unmount_all(target):
    """Every mount on or under ``target`` (the delete action's: it doesn't know which)."""
    from ociruntime import mountinfo

    points = [m.point for m in mountinfo.mounts() if m.point == target or m.point.startswith(target + "/")]
    _unmount(points)


def write_cleanup_record(bundle, root, mounted):
    with open(f"{bundle}/{RECORD}", "w") as f:
        f.write(fastjson.dumps({"root": root, "rootfs_mounted": mounted}))


def has_cleanup_record(bundle):
    try:
        posix.stat(f"{bundle}/{RECORD}")
        return True
    except FileNotFoundError:
        return False


def read_cleanup_record(bundle):
    try:
        with open(f"{bundle}/{RECORD}", "rb") as f:
            return fastjson.loads(f.read())
    except (OSError, ValueError):
        return {}


def remove_cleanup_record(bundle):
    try:
        posix.unlink(f"{bundle}/{RECORD}")
    except FileNotFoundError:
        pass
