"""The state directory: one directory per container under --root, holding state.json,
locked with flock so commands on one container run one at a time.

state.json is the write-ahead record of everything create makes. It is written
atomically (a new file renamed over the old) before each thing it names exists: the
first record, with the cgroups and host mounts create may make, lands before anything
is made; the init's pid as soon as it is known; the complete record last, before the
init is told to go on ('K', native/oci_native.h) — an init that never hears it exits by
itself. So at every instant what exists on the machine is named by a record that
`delete --force` reads, and a directory without state.json holds nothing else.

The record is data from a directory others may write, so nothing is done on its word
alone. It is signed: HMAC-SHA256 with a key of 32 random bytes kept beside --root, not
in it (``<root>.key``, mode 0600: a state directory handed to a container or an engine
doesn't hold it); a record whose signature doesn't hold is damaged. Every field is
checked for its type when read (a damaged record is an error naming the container and
the file), and what it names is checked against the kernel before anything is removed,
frozen or signalled through it (``cgroups.sort_owned``, ``init_pid``).

A container's status is never stored: it is derived from the live init process (its
start time guards against pid reuse) each time it is asked for.
"""

import fcntl
import posix  # not os: importing os costs ~1.5 ms, and state/start/kill/delete need none of it

from . import fastjson, pathnames
from .errors import OCIError

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
_STATE, _TMP = "state.json", "state.json.tmp"
_MAC = b',"mac":"'  # the signature ends the record: {...,"mac":"<64 hex digits>"}
_keys = {}


def check_id(container_id):
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise OCIError(f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'")


class StateError(OCIError):
    """A state record that can't be trusted: unreadable, or a field of the wrong kind."""


def _text(v):
    return type(v) is str and "\0" not in v


def _path(v):
    return _text(v) and v.startswith("/")


def _count(v):
    return type(v) is int and 0 <= v < 1 << 31


def _hooks(v):
    return type(v) is list and all(
        type(h) is dict and _path(h.get("path")) and _texts(h.get("args")) and _texts(h.get("env"))
        and _count(h.get("timeout")) and _text(h.get("label")) for h in v)


def _texts(v):
    return type(v) is list and all(_text(s) for s in v)


# field -> check; the first group is in every record, from the first one create writes.
_FIELDS = {
    "id": _text, "ociVersion": _text, "bundle": _path, "rootfs": _path, "created": _text, "owner": _text,
    "annotations": lambda v: type(v) is dict and all(_text(k) and _text(s) for k, s in v.items()),
    "cgroup_paths": lambda v: type(v) is dict and all(type(k) is str and _path(p) for k, p in v.items()),
    "cgroups_created": lambda v: type(v) is list and all(_path(p) for p in v),
    # the systemd driver's transient scope, stopped on delete (systemd.unit_for names it)
    "systemd_unit": lambda v: v is None or (_text(v) and v.endswith(".scope") and "/" not in v),
    "host_mounts": lambda v: v is None or (type(v) is list and all(_count(i) for i in v)),
    "resources": lambda v: type(v) is dict,
    "freezer": lambda v: v is None or _path(v),  # cgroups.freezer_file, kept: `state` needs no cgroups module
    "hooks": lambda v: type(v) is dict and set(v) == {"poststart", "poststop"} and all(map(_hooks, v.values())),
    "creating": lambda v: v is True,
    # plan.checkpoint_facts: what `checkpoint` tells CRIU (absent in records of older versions)
    "checkpoint": lambda v: type(v) is dict and set(v) == {"externals", "masked", "joined"}
    and all(type(v[k]) is list and all(map(_path, v[k])) for k in ("externals", "masked"))
    and type(v["joined"]) is dict
    and all(_text(k) and _path(p) for k, p in v["joined"].items()),
    # known once the init exists
    "pid": lambda v: _count(v) and v > 1, "init_start_time": _count,
    # known once it is created
    "start_fd": _count, "start_pipe": _text, "err_fd": _count,
}
_FIRST = ("id", "ociVersion", "bundle", "rootfs", "created", "owner", "annotations", "cgroup_paths",
          "cgroups_created", "host_mounts", "resources", "hooks", "freezer")
_CREATED = ("pid", "init_start_time", "start_fd", "start_pipe", "err_fd")


def problems(data, container_id):
    """What is wrong with a record read for ``container_id``: a list of field names."""
    if type(data) is not dict:
        return ["(the record is not a JSON object)"]
    bad = [f for f, ok in _FIELDS.items() if f in data and not ok(data[f])]
    if data.get("id") != container_id and "id" not in bad:
        bad.append("id")
    needed = _FIRST if data.get("creating") else _FIRST + _CREATED
    if data.get("creating") and "pid" in data:
        needed += ("init_start_time",)
    bad += [f"{f} (missing)" for f in needed if f not in data]
    return bad


class Container:
    """A locked state directory. Use as a context manager; the lock ends with it."""

    def __init__(self, root, container_id, fd, data, locked=True):
        self.root = root
        self.id = container_id
        self.dir = f"{root}/{container_id}"
        self._fd = fd
        self._locked = locked
        self.data = data

    @classmethod
    def new(cls, root, container_id, data):
        """Claim the id: the directory is made atomically, so a duplicate fails here; the
        first record (``data``, which names all create may make) is in it before we return."""
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
        _key(root, make=True)
        container = cls(root, container_id, fd, dict(data, creating=True))
        try:
            container.save()
        except BaseException:
            container.remove()
            raise
        return container

    @classmethod
    def load(cls, root, container_id, lock=True):
        """The container's state, locked unless ``lock`` is false; a record that is missing
        (deleted meanwhile, or a create that died before writing one) is "does not exist",
        a damaged one a StateError naming the file."""
        container = cls._open(root, container_id, lock)
        try:
            data = container._read()
            if data is None:
                raise OCIError(f"container {container_id!r} does not exist")
            bad = problems(data, container_id)
            if bad:
                raise StateError(f"{container._damaged(bad)} (delete --force removes what can be proven to be "
                                 "the container's)")
        except BaseException:
            container.close()
            raise
        container.data = data
        return container

    @classmethod
    def salvage(cls, root, container_id):
        """For ``delete --force``: (the locked directory with whatever fields of its record
        are sound, damaged ones dropped; what was wrong, one line, or None). (None, None)
        when there is no such directory at all."""
        try:
            container = cls._open(root, container_id, True)
        except StateError:
            raise
        except OCIError:
            return None, None
        try:
            data = container._read()
        except StateError as e:
            container.data = {}
            return container, str(e)
        bad = problems(data, container_id) if data is not None else []
        container.data = {k: v for k, v in data.items() if k not in bad and k in _FIELDS} \
            if type(data) is dict else {}
        return container, container._damaged(bad) if bad else None

    def _damaged(self, bad):
        return f"container {self.id!r}: {self.dir}/{_STATE} is damaged: {', '.join(bad)}"

    @classmethod
    def _open(cls, root, container_id, lock):
        check_id(container_id)
        path = f"{root}/{container_id}"
        try:
            fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC | posix.O_NOFOLLOW)
        except FileNotFoundError:
            raise OCIError(f"container {container_id!r} does not exist") from None
        except OSError as e:
            raise StateError(f"container {container_id!r}: {path}: {e.strerror}") from None
        if lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if posix.fstat(fd).st_nlink == 0:  # deleted while we waited for the lock
                posix.close(fd)
                raise OCIError(f"container {container_id!r} does not exist")
        return cls(root, container_id, fd, None, lock)

    def _read(self):
        """The parsed record, or None where there is none."""
        where = f"container {self.id!r}: {self.dir}/{_STATE}"
        try:
            fd = posix.open(_STATE, posix.O_RDONLY | posix.O_CLOEXEC | posix.O_NOFOLLOW, dir_fd=self._fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StateError(f"{where}: {e.strerror}") from None
        try:
            if posix.fstat(fd).st_size > 1 << 20:
                raise StateError(f"{where}: larger than a state record can be")
            with open(fd, "rb", closefd=False) as f:
                raw = f.read()
            cut = raw.rfind(_MAC)
            body = raw[:cut] + b"}"
            if cut < 0 or not raw.endswith(b'"}') or not _same(raw[cut + len(_MAC):-2], _mac(_key(self.root), body)):
                raise StateError(f"{where} is damaged: its signature doesn't hold (written by something other than "
                                 f"this runtime with the key {_key_path(self.root)})")
            return fastjson.loads(body)
        except (ValueError, RecursionError, UnicodeDecodeError) as e:
            raise StateError(f"{where} is damaged: not a JSON record "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        finally:
            posix.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._fd is not None:
            posix.close(self._fd)
            self._fd = None

    def save(self):
        """Replace the record atomically: a reader (or a crash) sees the old one or the new one."""
        fd = posix.open(_TMP, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC | posix.O_CLOEXEC | posix.O_NOFOLLOW,
                        0o600, dir_fd=self._fd)
        body = fastjson.dumps(self.data).encode()
        try:
            posix.write(fd, body[:-1] + _MAC + _mac(_key(self.root), body) + b'"}')
        finally:
            posix.close(fd)
        posix.rename(_TMP, _STATE, src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def remove(self):
        """Delete the state directory (the lock goes with it): the record last, so a crash
        here leaves a record that names what is left, or an empty directory. A directory
        inside is not ours to remove: an error names it."""
        names = posix.listdir(self._fd)
        for name in sorted(names, key=lambda n: n == _STATE):
            try:
                posix.unlink(name, dir_fd=self._fd)
            except IsADirectoryError:
                raise OCIError(f"state directory {self.dir} holds a directory {name!r} that isn't the runtime's: "
                               "left in place") from None
            except FileNotFoundError:
                pass
        posix.rmdir(self.dir)
        self.close()

    def status(self):
        if self.data.get("creating"):
            return "stopped" if self._locked else creating_status(self.dir)
        return status_of(self.data)

    def spec_state(self):
        """The state as runtime.md defines it (what ``state`` prints and hooks read)."""
        return spec_state(self.data, self.status())

    @property
    def cgroup_paths(self):
        """The container's cgroup directories, each checked to be a cgroup (cgroups.owned)."""
        from . import cgroups

        return cgroups.owned(self.data.get("cgroup_paths") or {}, f"{self.dir}/{_STATE}")


def _key_path(root):
    return f"{root.rstrip('/')}.key"


def _key(root, make=False):
    """The signing key of --root ``root``: 32 bytes in a file of ours that no one else may
    read; with ``make``, created on first use (linked into place whole, so a racing
    create reads all of it or makes its own)."""
    if root in _keys:
        return _keys[root]
    path = _key_path(root)
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    except FileNotFoundError:
        if not make:
            raise StateError(f"{path}: no key: state records under {root} can't be verified") from None
        return _make_key(root, path)
    except OSError as e:
        raise StateError(f"{path}: {e.strerror}") from None
    try:
        st = posix.fstat(fd)
        key = posix.read(fd, 33)
    finally:
        posix.close(fd)
    if st.st_uid != posix.geteuid() or st.st_mode & 0o077 or st.st_mode & 0o170000 != 0o100000 or len(key) != 32:
        raise StateError(f"{path}: not this runtime's key (a regular file of 32 bytes, ours, mode 0600)")
    _keys[root] = key
    return key


def _make_key(root, path):
    tmp = f"{path}.{posix.getpid()}"
    fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o600)
    try:
        posix.write(fd, posix.urandom(32))
    finally:
        posix.close(fd)
    try:
        posix.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        posix.unlink(tmp)
    return _key(root)


def _mac(key, body):
    """HMAC-SHA256 (RFC 2104) of ``body`` as hex bytes: the hmac module would import
    OpenSSL's hashlib (milliseconds); _sha256 is built into the interpreter."""
    from _sha256 import sha256

    block = key.ljust(64, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in block) + body).digest()
    return sha256(bytes(b ^ 0x5C for b in block) + inner).hexdigest().encode()


def _same(a, b):
    from _operator import _compare_digest

    return _compare_digest(a, b)


def creating_status(path):
    """A record still being written: "creating" while a command holds the directory's lock
    (its create, or a delete under way), else that create died: "stopped" (its init, told
    nothing, exits by itself)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "creating"
    finally:
        posix.close(fd)
    return "stopped"


_PF_EXITING = 0x4  # include/linux/sched.h: the task is in do_exit()


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (the start time) and whether the process is exiting or
    gone (a zombie, or in do_exit), or (None, None)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None, None
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19]), fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


def _init_alive(data):
    """The recorded init, alive: its start time matches, and it is neither a zombie its
    parent (the caller, CLONE_PARENT) hasn't reaped nor exiting. A pid namespace's init
    stays in do_exit until every process of the namespace is reaped, an exec'd one whose
    parent is the caller too: it will never run again."""
    pid = data.get("pid")
    if not pid:
        return False
    start, exiting = proc_start_time(pid)
    return start is not None and start == data.get("init_start_time") and not exiting


def status_of(data):
    if not _init_alive(data):
        return "stopped"
    try:
        if posix.readlink(f"/proc/{data['pid']}/fd/{data.get('start_fd')}") == data.get("start_pipe"):
            return "created"
    except OSError:
        pass
    # Only read here; what freezes (pause, kill --all, delete) derives it from checked paths.
    freezer = data.get("freezer")
    if freezer and frozen(freezer):
        return "paused"
    return "running"


def init_pid(data, paths):
    """The recorded init's pid when the kernel agrees it is this container's: alive with
    the recorded start time, and in the container's cgroups (``paths``, already checked)
    or, before it joined them, still the runtime's init ("ociruntime:init"). Else None.
    A container without cgroups (rootless.py) has the start time alone to tell."""
    if not _init_alive(data):
        return None
    pid = data["pid"]
    if not data.get("cgroup_paths"):
        return pid
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            if f.read() == b"ociruntime:init\n":
                return pid
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    from .cgroups import hierarchies

    mounts = hierarchies()
    for line in lines:
        _, key, path = line.split(":", 2)
        if key in paths and key in mounts and pathnames.join(mounts[key], path.lstrip("/")) == paths[key]:
            return pid
    return None


def frozen(path):
    try:
        with open(path) as f:
            return f.read().strip() in ("FROZEN", "1")
    except OSError:
        return False


def has_spec_state(data):
    """Whether a (salvaged) record holds what runtime.md's state needs."""
    return all(key in data for key in ("ociVersion", "id", "bundle"))


def spec_state(data, status):
    state = {
        "ociVersion": data["ociVersion"],
        "id": data["id"],
        "status": status,
        "bundle": data["bundle"],
    }
    if status != "stopped" and "pid" in data:
        state["pid"] = data["pid"]
    if data.get("annotations"):
        state["annotations"] = data["annotations"]
    return state


def list_ids(root):
    try:
        return sorted(n for n in posix.listdir(root) if pathnames.exists(f"{root}/{n}/{_STATE}"))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise OCIError(f"--root {root}: {e.strerror}") from None
