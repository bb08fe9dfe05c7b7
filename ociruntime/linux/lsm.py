"""AppArmor and SELinux: whether this host has them (checked as runc and go-selinux
check), and the plain data the init applies — the values it writes to its own
/proc/self/attr files (native/lsm.c), and the SELinux mount label in mounts' data.

Read only when config.json sets process.apparmorProfile, process.selinuxLabel or
linux.mountLabel (an empty string is unset), and by ``features``.

A setting for an LSM this host doesn't have is an error naming the field. runc refuses
process.selinuxLabel the same way, but not the others: an AppArmor profile fails there
only when the init writes it (EINVAL), and a mount label either makes the mount fail
(the kernel rejects ``context=``) or, on mqueue, is silently skipped. We refuse all
three up front, before anything is created: a label that is set is never dropped.
"""

import posix

from .. import mountinfo

SELINUXFS = "/sys/fs/selinux"

# Filesystems whose mount takes no context= (runc's rules, rootfs_linux.go): proc and
# sysfs are mounted unlabelled, cgroup hierarchies too; mqueue refuses the option, so
# its mount point gets the label as an xattr instead (the "file_label" step). Bind
# mounts are not listed: the kernel ignores a bind mount's data, plan.py skips them.
NO_CONTEXT = frozenset(("proc", "sysfs", "cgroup", "cgroup2", "mqueue"))


def _read(path, size=4096):
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        return posix.read(fd, size)
    except OSError:
        return None
    finally:
        posix.close(fd)


def _exists(path):
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def apparmor_enabled():
    """runc's apparmor.IsEnabled: securityfs has /sys/kernel/security/apparmor and the
    module's ``enabled`` parameter is Y."""
    if not _exists("/sys/kernel/security/apparmor"):
        return False
    value = _read("/sys/module/apparmor/parameters/enabled")
    return bool(value) and value[:1] == b"Y"


def selinuxfs_mounts(text):
    """The read-write selinuxfs mount points in a /proc/self/mountinfo text."""
    return [m.point for m in mountinfo.parse(text, ("selinuxfs",)) if "rw" in m.options]


def selinux_enabled():
    """go-selinux's GetEnabled: a read-write selinuxfs is mounted (the kernel knows the
    filesystem; /sys/fs/selinux first, else from mountinfo) and the process's label isn't
    "kernel" (no policy loaded); and its ``enforce`` file (go-selinux's EnforceMode)
    can be read."""
    filesystems = _read("/proc/filesystems", 1 << 16) or b""
    if b"\tselinuxfs\n" not in filesystems:
        return False
    mounts = selinuxfs_mounts((_read("/proc/self/mountinfo", 1 << 20) or b"").decode(errors="surrogateescape"))
    mount = SELINUXFS if SELINUXFS in mounts else mounts[0] if mounts else None
    if mount is None or _read(mount + "/enforce") is None:
        return False
    current = _read("/proc/self/attr/current")
    return current is not None and current.rstrip(b"\0\n") != b"kernel"


def settings(process, linux):
    """values(process, linux), or ValueError("<field>: <why>") when one is set for an
    LSM this host doesn't have."""
    if process.get("apparmorProfile") and not apparmor_enabled():
        raise ValueError("process.apparmorProfile: AppArmor is not enabled on this host")
    for field, value in (("process.selinuxLabel", process.get("selinuxLabel")),
                         ("linux.mountLabel", linux.get("mountLabel"))):
        if value and not selinux_enabled():
            raise ValueError(f"{field}: SELinux is not enabled on this host")
    return values(process, linux)


def values(process, linux):
    """(apparmor_exec, selinux_exec, mount_label), each None when unset (an empty string
    is unset): apparmor_exec is what the init writes to /proc/self/attr/apparmor/exec
    (aa_change_onexec's command), selinux_exec what it writes to /proc/self/attr/exec
    (go-selinux's SetExecLabel)."""
    profile = process.get("apparmorProfile") or None
    label = process.get("selinuxLabel") or None
    mount_label = linux.get("mountLabel") or None
    if profile and "\0" in profile:
        raise ValueError("process.apparmorProfile: a profile name can't hold a NUL")
    for field, value in (("process.selinuxLabel", label), ("linux.mountLabel", mount_label)):
        if value and ('"' in value or "\n" in value or "\0" in value):
            raise ValueError(f"{field}: an SELinux label can't hold a double quote, newline or NUL")
    return (f"exec {profile}" if profile else None), label, mount_label


def mount_data(data, mount_label):
    """go-selinux's FormatMountLabel: the mount's data with context="<label>" added (the
    quotes keep the label's MCS commas out of the option list)."""
    if not mount_label:
        return data
    context = f'context="{mount_label}"'
    return f"{data},{context}" if data else context
