"""Path helpers for the hot commands, on ``posix`` alone.

``os`` (with ``os.path``) costs about 2 ms to import here, more than any other
module a command loads; create and run need only these few functions of it.
Each behaves as its ``posixpath`` namesake (tests/test_pathnames.py checks that).
"""

import posix

_S_IFMT, _S_IFDIR, _S_IFREG = 0o170000, 0o040000, 0o100000


def join(path, *parts):
    for part in parts:
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def normpath(path):
    """Collapse ``.``, ``..`` and repeated slashes without touching the filesystem."""
    if not path:
        return "."
    # POSIX leaves exactly two leading slashes implementation-defined: keep them, as posixpath does.
    initial = 0
    if path.startswith("/"):
        initial = 2 if path.startswith("//") and not path.startswith("///") else 1
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * initial + "/".join(parts) or "."


def abspath(path):
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)


def basename(path):
    return path.rpartition("/")[2]


def dirname(path):
    head = path[:path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def mode(path):
    """The file type bits of ``path`` (following symlinks), or None if it can't be stat'ed."""
    try:
        return posix.stat(path).st_mode & _S_IFMT
    except (OSError, ValueError):
        return None


def exists(path):
    return mode(path) is not None


def isdir(path):
    return mode(path) == _S_IFDIR


def isfile(path):
    return mode(path) == _S_IFREG


def read_text(path):
    """A small file's text (a sysfs or cgroup value), stripped; None if it can't be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def realpath(path):
    """The canonical path of an existing ``path``, as the kernel resolves it."""
    fd = posix.open(path, posix.O_PATH | posix.O_CLOEXEC)
    try:
        return posix.readlink(f"/proc/self/fd/{fd}")
    finally:
        posix.close(fd)


def makedirs(path, mode=0o777):
    """mkdir -p: make ``path`` and its missing parents; an existing directory is fine."""
    if path and not exists(path):
        makedirs(dirname(path), mode)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            pass
