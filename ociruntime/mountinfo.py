"""/proc/<pid>/mountinfo, read one way (proc(5)) for every caller: cgroups (where the
hierarchies are), hostmounts (what a container added under its rootfs), linux/lsm (a
selinuxfs mount).

A line is ``id parent major:minor root point options [optional...] - fstype source
super-options``. The kernel writes a space, tab, newline and backslash in a path (and a
comma or ``=`` in an option's value) as ``\\ooo`` octal; lines are split on "\\n" only
(str.splitlines would also split at \\x1c..\\x1e, which a path may hold unescaped).

native/launcher.c reads the cgroup mounts itself, before Python starts; the same
fixtures hold the two equal (tests/test_mountinfo.py).
"""

import posix


class Mount:
    """One line. ``options`` are the per-mount options, ``optional`` the tagged fields
    (shared:N, master:N...), ``super_options`` the filesystem's own, each unescaped."""

    __slots__ = ("id", "parent", "root", "point", "options", "optional", "fstype", "source", "super_options")

    def __repr__(self):
        return f"Mount({self.id}, {self.point!r}, {self.fstype!r}, {self.super_options!r})"


def unescape(field):
    """``\\ooo`` (three octal digits, an ASCII character) undone; any other backslash
    is kept as it is, as the kernel never writes one unescaped."""
    if "\\" not in field:
        return field
    parts = field.split("\\")
    out = [parts[0]]
    for i in range(1, len(parts)):
        part = parts[i]
        code = part[:3]
        if len(code) == 3 and code[0] in "01" and code[1] in "01234567" and code[2] in "01234567" and code != "000":
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def parse(text, fstypes=None):
    """The mounts of a mountinfo text in its order (later mounts last); only those of
    ``fstypes`` when given (cheaper: the others are not unescaped). Malformed lines
    are skipped."""
    found = []
    for line in text.split("\n"):
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            fstype = unescape(fields[sep + 1])
            if fstypes is not None and fstype not in fstypes:
                continue
            m = Mount()
            m.id, m.parent, m.source = int(fields[0]), int(fields[1]), unescape(fields[sep + 2])
        except (ValueError, IndexError):
            continue
        m.root, m.point = unescape(fields[3]), unescape(fields[4])
        m.options = fields[5].split(",")
        m.optional = fields[6:sep]
        m.fstype = fstype
        m.super_options = [unescape(o) for o in fields[sep + 3].split(",")] if len(fields) > sep + 3 else []
        found.append(m)
    return found


def mounts(proc="/proc", fstypes=None):
    """parse() of this process's mountinfo, under ``proc`` (a fixture's copy in tests).
    Paths are not necessarily UTF-8: undecodable bytes round-trip (surrogateescape).
    Read with posix.read in large chunks: a third quicker than a text-mode open()."""
    fd = posix.open(f"{proc}/self/mountinfo", posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks = []
        while chunk := posix.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        posix.close(fd)
    return parse(b"".join(chunks).decode("utf-8", "surrogateescape"), fstypes)
