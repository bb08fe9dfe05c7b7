"""Namespace types of the config → CLONE_NEW* flags and /proc/<pid>/ns names."""

CLONE_NEWTIME = 0x80
CLONE_NEWNS = 0x20000
CLONE_NEWCGROUP = 0x2000000
CLONE_NEWUTS = 0x4000000
CLONE_NEWIPC = 0x8000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

FLAGS = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}
PROC_NAMES = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc",
    "uts": "uts", "user": "user", "cgroup": "cgroup", "time": "time",
}
# setns order: the user namespace first, so the others are joined with its privileges;
# mount last (runc's order), so paths of the others still resolve on the host.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")
