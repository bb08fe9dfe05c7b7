"""HOME for a process whose env has none, as runc sets it: the home directory of the
first entry for the process's uid in the container's /etc/passwd, "/" when there is
no such entry (or no such file).

runc reads the file from inside the container. Here the plan reads it from the host,
resolved inside the container's root as the kernel's openat2(RESOLVE_IN_ROOT) would:
one component at a time, never following a symlink in the kernel, ".." stopping at the
root, so a symlink in the rootfs can't lead to the host's own files. Only when HOME is
missing or empty: engines that set it cost nothing.
"""

_LIMIT = 16 << 20  # bytes read at most: the file is the container's, its size too
_S_IFMT, _S_IFLNK, _S_IFREG = 0o170000, 0o120000, 0o100000


def with_home(env, uid, where):
    """``env`` with HOME added when it lacks one (an empty HOME counts as none and is
    dropped, as runc does); ``where()`` -> (root directory, path inside it) of the
    passwd file or None when there is none, called only then."""
    if any(e.startswith("HOME=") and e != "HOME=" for e in env):
        return env
    found = where()
    return [e for e in env if e != "HOME="] + [f"HOME={home(read(*found) if found else None, uid)}"]


def home(text, uid):
    """The home field of the first passwd line whose uid field is ``uid``, else "/"."""
    for line in (text or "").split("\n"):
        fields = line.strip().split(":")
        if len(fields) > 2 and fields[2].isascii() and fields[2].isdigit() and int(fields[2]) == uid:
            return fields[5] if len(fields) > 5 else ""
    return "/"


def read(root, path):
    """The text of ``path`` resolved inside ``root``; None when it isn't a readable
    regular file there."""
    import posix

    try:
        fd = _open_in_root(root, path)
    except OSError:
        return None
    chunks, size = [], 0
    try:
        while size < _LIMIT:
            chunk = posix.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        posix.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _open_in_root(root, path):
    """An O_RDONLY fd on the regular file ``path`` inside ``root``, walked one component
    at a time from O_PATH directory fds: a symlink is read and its target walked the
    same way (an absolute one from ``root``), ".." pops back to the directory before."""
    import posix

    flags = posix.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC
    fds = [posix.open(root, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)]  # /proc/<pid>/root is a link
    todo = [p for p in reversed(path.split("/")) if p not in ("", ".")]
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(fds) > 1:
                    posix.close(fds.pop())
                continue
            fd = posix.open(name, flags, dir_fd=fds[-1])
            if posix.fstat(fd).st_mode & _S_IFMT != _S_IFLNK:
                fds.append(fd)
                continue
            posix.close(fd)
            links += 1
            if links > 40:
                raise OSError(40, "too many levels of symbolic links")  # ELOOP
            target = posix.readlink(name, dir_fd=fds[-1])
            if target.startswith("/"):
                while len(fds) > 1:
                    posix.close(fds.pop())
            todo.extend(p for p in reversed(target.split("/")) if p not in ("", "."))
        if len(fds) == 1 or posix.fstat(fds[-1]).st_mode & _S_IFMT != _S_IFREG:
            raise OSError(22, "not a regular file")  # a fifo would block the reader
        return posix.open(f"/proc/self/fd/{fds[-1]}", posix.O_RDONLY | posix.O_CLOEXEC)
    finally:
        for fd in fds:
            posix.close(fd)
