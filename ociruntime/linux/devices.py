"""Device nodes every container gets, and the device cgroup rules runc always allows."""

# (path, type, major, minor): runc's default devices, created unless /dev is bound from the host.
DEFAULT_NODES = [
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/random", "c", 1, 8),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/tty", "c", 5, 0),
]

DEFAULT_LINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
]

# Appended after the config's own rules, as runc does (devices.allow lines).
DEFAULT_ALLOW = [
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
    "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
]

S_IFCHR = 0o020000
S_IFBLK = 0o060000
S_IFIFO = 0o010000
S_IFREG = 0o100000  # the file a node is bound on
TYPES = {"c": S_IFCHR, "u": S_IFCHR, "b": S_IFBLK, "p": S_IFIFO}


def makedev(major, minor):
    """glibc's makedev() encoding."""
    return ((major & 0xFFFFF000) << 32) | ((major & 0xFFF) << 8) | ((minor & 0xFFFFFF00) << 12) | (minor & 0xFF)


def cgroup_rules(rules):
    """Config ``linux.resources.devices`` → [("allow"|"deny", "c 1:3 rwm")] plus runc's defaults."""
    out = []
    for r in rules:
        kind = "allow" if r.get("allow") else "deny"
        typ = r.get("type", "a")
        major = r.get("major", -1)
        minor = r.get("minor", -1)
        access = r.get("access", "rwm")
        if typ == "a":
            out.append((kind, "a"))
            continue
        major = "*" if major is None or major < 0 else str(major)
        minor = "*" if minor is None or minor < 0 else str(minor)
        out.append((kind, f"{typ} {major}:{minor} {access}"))
    return out + [("allow", rule) for rule in DEFAULT_ALLOW]
