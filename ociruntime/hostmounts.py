"""A container without a mount namespace mounts onto the host, under its rootfs (runc
leaves those mounts behind). `create` notes which mounts were there before; a failed
create and `delete` detach the ones added since, and only those: an engine's own
rootfs mount (containerd's overlay at bundle/rootfs) stays."""

from . import mountinfo, pathnames
from .errors import OCIError


def _under(rootfs, proc="/proc"):
    """(mount id, mount point) of the mounts at or under rootfs, in mountinfo's order."""
    prefix = rootfs.rstrip("/") + "/"
    return [(m.id, m.point) for m in mountinfo.mounts(proc) if m.point == rootfs or m.point.startswith(prefix)]


def present(rootfs, proc="/proc"):
    """The ids of the mounts already at or under rootfs."""
    return [mount_id for mount_id, _ in _under(rootfs, proc)]


def detach_added(data):
    """For a container in state ``data`` without a mount namespace (its "host_mounts" are
    the ids present() found), detach the mounts under its rootfs added since, deepest and
    newest first, so each umount takes the mount on top of its point, which is ours."""
    rootfs = data.get("rootfs")
    if data.get("host_mounts") is None or rootfs is None:
        return
    if rootfs == "/" or pathnames.normpath(rootfs) != rootfs:
        raise OCIError(f"container {data.get('id')!r}: rootfs {rootfs!r}: not a container's root: "
                       "its mounts are left alone")
    from .native import detach_mount

    before = set(data["host_mounts"])
    added = [(point, mount_id) for mount_id, point in _under(rootfs) if mount_id not in before]
    for point, _ in sorted(added, key=lambda a: (len(a[0]), a[1]), reverse=True):
        detach_mount(point)
