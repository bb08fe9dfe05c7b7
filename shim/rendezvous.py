"""How a task finds its shim, and how a shim knows it may exit, without a race.

Several containers share one shim (shim/main.py), so ``start`` may hand a task to a
shim that is about to exit because its last task was just deleted. Both sides therefore
decide under one lock, ``<socket>.lock``:

- ``start`` takes it, and either binds the socket (no shim: it starts one) or, finding
  a live shim there, leaves a reservation ``<socket>.tasks/<id>`` for it;
- a shim takes it before it exits, and stays if a task or a fresh reservation appeared.
  Create consumes the task's reservation; one older than RESERVATION_SECONDS is stale
  (containerd gave up on that task between ``start`` and Create).
"""

import _socket
import posix
import time

from ociruntime.errors import OCIError

RESERVATION_SECONDS = 30.0


def _path(address):
    return address.removeprefix("unix://")


def _locked(path, blocking=True):
    """An fd holding the flock on ``path``.lock, or None if not blocking and it is taken.
    The shim that exits removes the lock file under the lock: a waiter that then gets the
    lock on the removed file tries again on the path's new one."""
    import fcntl

    while True:
        fd = posix.open(path + ".lock", posix.O_RDWR | posix.O_CREAT | posix.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            if posix.fstat(fd).st_ino == posix.stat(path + ".lock").st_ino:
                return fd
        except BlockingIOError:
            posix.close(fd)
            return None
        except FileNotFoundError:
            pass
        posix.close(fd)


def join_or_listen(address, task_id):
    """A listening socket when a new shim must be started, None when one serves ``address``
    and has ``task_id`` reserved."""
    path = _path(address)
    _makedirs(path.rsplit("/", 1)[0])
    lock = _locked(path)
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError as e:
            if e.errno != 98:  # EADDRINUSE
                sock.close()
                raise OCIError(f"shim socket {path}: {e.strerror}") from None
            if _alive(path):
                sock.close()
                reserve(path, task_id)
                return None
            posix.unlink(path)  # a dead shim's
            sock.bind(path)
        posix.chmod(path, 0o600)
        sock.listen(128)
        return sock
    finally:
        posix.close(lock)


def _makedirs(directory):
    parent = directory.rsplit("/", 1)[0]
    if parent and not _exists(parent):
        _makedirs(parent)
    try:
        posix.mkdir(directory, 0o711)
    except FileExistsError:
        pass


def _exists(path):
    try:
        posix.stat(path)
        return True
    except OSError:
        return False


# A ttrpc request (shim/ttrpc.py's frame: length, stream 1, REQUEST, no flags) for a service
# no shim has: a live shim answers it (UNIMPLEMENTED) without logging, and nothing imports
# protobuf for it. Written out because ``start`` doesn't load ttrpc.py.
_PING_REQUEST = b"\x0a\x0fociruntime.ping\x12\x05Alive"  # Request{service, method}
_PING = len(_PING_REQUEST).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x01\x00" + _PING_REQUEST
ALIVE_SECONDS = 5.0


def _alive(path):
    """Whether a shim serves ``path``: one answers there. A socket that accepts a connection
    and never answers is a shim being killed (containerd may see its connection close a
    moment before its listener goes) or a child it forked that has not exec'd yet: ask again
    until the connection is refused or answered; one that keeps accepting without an
    answer for ALIVE_SECONDS is taken for a live, busy shim (its socket must not go)."""
    deadline = time.monotonic() + ALIVE_SECONDS
    while True:
        probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(path)
        except OSError:
            return False
        try:
            probe.sendall(_PING)
            if probe.recv(1):
                return True
        except OSError:  # no answer in time, or the peer went
            pass
        finally:
            probe.close()
        if time.monotonic() >= deadline:
            return True


def reserve(path, task_id):
    _makedirs(path + ".tasks")
    with open(f"{path}.tasks/{task_id}", "w"):
        pass


def consume(address, task_id):
    """Create arrived: the reservation has done its job."""
    try:
        posix.unlink(f"{_path(address)}.tasks/{task_id}")
    except OSError:
        pass


def _fresh_reservations(path):
    try:
        names = posix.listdir(path + ".tasks")
    except FileNotFoundError:
        return []
    fresh = []
    now = time.time()
    for name in names:
        try:
            if now - posix.stat(f"{path}.tasks/{name}").st_mtime < RESERVATION_SECONDS:
                fresh.append(name)
                continue
            posix.unlink(f"{path}.tasks/{name}")
        except OSError:
            pass
    return fresh


def try_leave(address, has_tasks):
    """Remove the socket if no task is here or on its way: True if the shim may close its
    listener and exit now, False to stay (or to try again: a ``start`` holds the lock). A
    ``start`` connects and reserves under the lock, so once the path is gone no task can
    arrive."""
    path = _path(address)
    lock = _locked(path, blocking=False)
    if lock is None:
        return False
    try:
        if has_tasks() or _fresh_reservations(path):
            return False
        for leftover in (path, path + ".tasks"):
            _remove_tree(leftover)
        posix.unlink(path + ".lock")  # under the lock: a start waiting on it will find no socket and bind anew
        return True
    finally:
        posix.close(lock)


def remove_dead(address):
    """A shim that died (SIGKILL) left its socket, lock and reservations: remove them, under
    the lock, unless a live shim listens there by now. The socket may be gone already (an
    engine removed it) while the rest is still there."""
    path = _path(address)
    if not any(_exists(leftover) for leftover in (path, path + ".lock", path + ".tasks")):
        return
    lock = _locked(path)
    try:
        if _alive(path):
            return
        for leftover in (path, path + ".tasks"):
            _remove_tree(leftover)
        posix.unlink(path + ".lock")
    finally:
        posix.close(lock)


def _remove_tree(path):
    try:
        for name in posix.listdir(path):
            posix.unlink(f"{path}/{name}")
        posix.rmdir(path)
    except NotADirectoryError:
        posix.unlink(path)
    except FileNotFoundError:
        pass
