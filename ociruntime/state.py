"""The state directory: one directory per container under --root, holding
state.json, locked with flock so commands on one container run one at a time.

A container's status is never stored: it is derived from the live init process
(its start time guards against pid reuse) each time it is asked for.
"""

import fcntl
import posix  # not os: importing os costs ~1.5 ms, and state/start/kill/delete need none of it

from . import fastjson, pathnames
from .errors import OCIError

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id):
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise OCIError(f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'")


class Container:
    """A locked state directory. Use as a context manager; the lock ends with it."""

    def __init__(self, root, container_id, fd, data):
        self.root = root
        self.id = container_id
        self.dir = f"{root}/{container_id}"
        self._fd = fd
        self.data = data

    @classmethod
    def new(cls, root, container_id):
        """Claim the id: the directory is made atomically, so a duplicate fails here."""
        check_id(container_id)
        path = f"{root}/{container_id}"
        try:
            pathnames.makedirs(root, 0o711)
            posix.mkdir(path, 0o711)
        except FileExistsError:
            raise OCIError(f"container with id {container_id!r} already exists") from None
        except OSError as e:
            raise OCIError(f"--root {root}: {e.strerror}") from None
        fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(root, container_id, fd, {})

    @classmethod
    def load(cls, root, container_id, lock=True):
        check_id(container_id)
        path = f"{root}/{container_id}"
        try:
            fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except FileNotFoundError:
            raise OCIError(f"container {container_id!r} does not exist") from None
        if lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(f"{path}/state.json", "rb") as f:
                data = fastjson.loads(f.read())
        except (FileNotFoundError, ValueError):
            posix.close(fd)
            # Removed while we waited for the lock, or a create that never finished.
            raise OCIError(f"container {container_id!r} does not exist") from None
        return cls(root, container_id, fd, data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._fd is not None:
            posix.close(self._fd)
            self._fd = None

    def save(self):
        tmp = f"{self.dir}/state.json.tmp"
        with open(tmp, "w") as f:
            f.write(fastjson.dumps(self.data))
        posix.rename(tmp, f"{self.dir}/state.json")

    def remove(self):
        """Delete the state directory (the lock goes with it)."""
        for name in posix.listdir(self.dir):
            posix.unlink(f"{self.dir}/{name}")
        posix.rmdir(self.dir)
        self.close()

    def status(self):
        return status_of(self.data)

    def spec_state(self):
        """The state as runtime.md defines it (what ``state`` prints and hooks read)."""
        return spec_state(self.data, self.status())


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat and the process state letter, or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None, None
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0].decode()


def status_of(data):
    pid = data.get("pid")
    if not pid:
        return "stopped"
    start, letter = proc_start_time(pid)
    if start is None or start != data.get("init_start_time") or letter in ("Z", "X"):
        return "stopped"
    try:
        if posix.readlink(f"/proc/{pid}/fd/{data['start_fd']}") == data["start_pipe"]:
            return "created"
    except OSError:
        pass
    if data.get("freezer") and _frozen(data["freezer"]):
        return "paused"
    return "running"


def _frozen(path):
    try:
        with open(path) as f:
            return f.read().strip() in ("FROZEN", "1")
    except OSError:
        return False


def spec_state(data, status):
    state = {
        "ociVersion": data["ociVersion"],
        "id": data["id"],
        "status": status,
        "bundle": data["bundle"],
    }
    if status != "stopped":
        state["pid"] = data["pid"]
    if data.get("annotations"):
        state["annotations"] = data["annotations"]
    return state


def list_ids(root):
    try:
        return sorted(n for n in posix.listdir(root) if pathnames.exists(f"{root}/{n}/state.json"))
    except FileNotFoundError:
        return []

