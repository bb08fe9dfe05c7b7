"""Mount options → MS_* flags, propagation and filesystem data, as runc parses them."""

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# option: (clear?, flag). "clear" options undo a flag set earlier (runc's semantics).
FLAGS = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "lazytime": (False, MS_LAZYTIME),
    "nolazytime": (True, MS_LAZYTIME),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "loud": (True, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# runc's extension: no mount flag but something the runtime does besides mounting. tmpcopyup:
# a tmpfs starts with a copy of what the directory it covers holds (on any other mount runc
# ignores it). parse() leaves it out of the data; a mount step's "copyup" carries it as
# these bits (OCI_COPYUP_* of native/oci_native.h).
EXTENSIONS = {"tmpcopyup"}
COPYUP, COPYUP_MODE, COPYUP_UID, COPYUP_GID = 1, 2, 4, 8

# Options runc knows that this runtime does not implement yet: refused, never dropped.
UNSUPPORTED = {
    "idmap", "ridmap",
    "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rsync", "rasync",
    "rnoatime", "ratime", "rnodiratime", "rdiratime", "rrelatime", "rnorelatime",
    "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow",
}


def parse(options, label):
    """Return (flags, propagation, data) for a mount's options; raise ValueError naming a bad one."""
    flags = 0
    propagation = 0
    data = []
    for opt in options:
        known = FLAGS.get(opt)
        if known is not None:
            clear, flag = known
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            propagation = PROPAGATION[opt]
        elif opt in EXTENSIONS:
            pass
        elif opt in UNSUPPORTED:
            raise ValueError(f"{label}: mount option {opt!r} is not supported by this runtime")
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def copyup(data):
    """A tmpcopyup tmpfs's "copyup" bits: its root takes the mode, owner and group of the
    directory it covers, but for those its data sets (mode=, uid=, gid=: as runc 1.2 lets
    mode= win; runc 1.1 chmods over it)."""
    keys = {opt.split("=", 1)[0] for opt in data.split(",")} if data else set()
    return COPYUP | sum(bit for key, bit in (("mode", COPYUP_MODE), ("uid", COPYUP_UID), ("gid", COPYUP_GID))
                        if key not in keys)
