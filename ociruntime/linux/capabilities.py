"""Capability names → bit numbers (linux/capability.h)."""

NAMES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]
BITS = {name: bit for bit, name in enumerate(NAMES)}
SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")


def mask(names, label):
    """Bit mask of capability names; an unknown name is an error naming it (runc refuses too)."""
    m = 0
    for i, name in enumerate(names):
        bit = BITS.get(name)
        if bit is None:
            raise ValueError(f"{label}[{i}]: unknown capability {name!r}")
        m |= 1 << bit
    return m


def own_permitted():
    """The runtime's own permitted set: a container can't be given more."""
    return _own("CapPrm:")


def own_bounding():
    """The runtime's bounding set: what a process in a user namespace of its own (which
    starts with every capability there) can keep across its exec."""
    return _own("CapBnd:")


def _own(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1], 16)
    return 0


def names(mask):
    return [name for bit, name in enumerate(NAMES) if mask >> bit & 1] or [f"0x{mask:x}"]
