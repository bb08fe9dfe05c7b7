"""CRIU, driven as runc drives it: ``criu swrk``, one RPC session over a socketpair.

Why RPC and not criu's command line: the session tells us, while it runs, what only it
knows — the restored init's pid before it runs ("setup-namespaces", where the
createRuntime hooks go), the end of the restore ("post-restore"), and the master of a
container's pty, which criu restores orphaned and hands over with SCM_RIGHTS
("orphan-pts-master"; the command line has no way to return it). Its answers carry
criu's errno and, since 3.16, its own error message. The messages are criu's rpc.proto
(criu_req, criu_opts, criu_resp), written and read with protowire: what is sent is a
dozen fields, so neither protobuf's runtime nor a compiled rpc.proto is imported.

Nothing here decides what to checkpoint: commands/checkpoint.py and commands/restore.py
build the options (``dump_options``, ``restore_options`` below are their pure half).
"""

import _socket
import posix

from . import protowire
from .errors import OCIError

# criu_req_type
DUMP, RESTORE, PRE_DUMP, NOTIFY, VERSION = 1, 2, 4, 6, 10
TYPE_NAMES = {DUMP: "dump", RESTORE: "restore", PRE_DUMP: "pre-dump", NOTIFY: "notify", VERSION: "version"}
# criu_cg_mode, as --manage-cgroups-mode names them
CGROUP_MODES = {"soft": 3, "full": 4, "strict": 5}
CLONE_NEWNET = 0x40000000
# --empty-ns: the namespaces criu may leave empty (runc's list: only the network; runc
# never manages network devices, so the network namespace is always empty).
EMPTY_NS = {"network": CLONE_NEWNET}
LOG_LEVEL = 4  # runc's: everything, so a failure's log says why

# criu_opts: name -> field number. Values are ints, bools, strings, or lists of those
# (repeated); the repeated messages are lists of (key, value) tuples.
_OPTS = {
    "images_dir_fd": 1, "pid": 2, "leave_running": 3, "ext_unix_sk": 4, "tcp_established": 5,
    "evasive_devices": 6, "shell_job": 7, "file_locks": 8, "log_level": 9, "log_file": 10,
    "notify_scripts": 12, "root": 13, "parent_img": 14, "track_mem": 15, "auto_dedup": 16,
    "work_dir_fd": 17, "ext_mnt": 23, "manage_cgroups": 24, "cg_root": 25, "rst_sibling": 26,
    "inherit_fd": 27, "manage_cgroups_mode": 34, "external": 37, "empty_ns": 38, "join_ns": 39,
    "freeze_cgroup": 44, "orphan_pts_master": 50, "config_file": 51, "lsm_profile": 53,
    "lsm_mount_context": 63,
}
# The repeated messages: each item a tuple of its fields in order (ext_mount_map: key,
# val; inherit_fd: key, fd; cgroup_root: ctrl, path; join_namespace: ns, ns_file).
_PAIRS = {"ext_mnt", "inherit_fd", "cg_root", "join_ns"}


# CRIU's configuration file for containers, unless the annotation names another (or, empty,
# none): runc's, so a host set up for runc's checkpoints is set up for ours.
CONFIG_ANNOTATION, DEFAULT_CONFIG = "org.criu.config", "/etc/criu/runc.conf"
# The namespaces CRIU takes from outside ("external") when the container joined them by
# path, under runc's keys; the others it joins by path on restore (join_ns).
EXTERNAL_NS = {"network": ("net", "extRootNetNS"), "pid": ("pid", "extRootPidNS")}


def dump_options(pid, rootfs, images_fd, facts, masked_files=(), work_fd=None, freezer=None, annotations=None,
                 leave_running=False, tcp_established=False, ext_unix_sk=False, shell_job=False, file_locks=False,
                 empty_ns=CLONE_NEWNET, auto_dedup=False, cgroups_mode=None, parent=None, pre_dump=False,
                 ns_inode=None):
    """criu_opts of a dump (or pre-dump) of the container whose init is ``pid``, as runc
    sends them. ``facts``: plan.checkpoint_facts, from the state record. ``masked_files``:
    the masked paths that are files (binds of /dev/null). ``ns_inode(path)``: the inode
    of a namespace file (for the external ones; os.stat's by default)."""
    opts = {
        "images_dir_fd": images_fd, "log_level": LOG_LEVEL, "log_file": "dump.log", "root": rootfs,
        "manage_cgroups": True, "notify_scripts": True, "pid": pid, "shell_job": shell_job,
        "leave_running": leave_running, "tcp_established": tcp_established, "ext_unix_sk": ext_unix_sk,
        "file_locks": file_locks, "empty_ns": empty_ns, "orphan_pts_master": True, "auto_dedup": auto_dedup,
    }
    if work_fd is not None:
        opts["work_dir_fd"] = work_fd
    _config_file(opts, annotations)
    externals = []
    for ns_type, path in sorted(facts["joined"].items()):
        if ns_type in EXTERNAL_NS:
            name, key = EXTERNAL_NS[ns_type]
            externals.append(f"{name}[{(ns_inode or _inode)(path)}]:{key}")
    if externals:
        opts["external"] = externals
    if freezer:  # the cgroup's freezer: criu freezes the tree with it rather than with ptrace
        opts["freeze_cgroup"] = freezer.rsplit("/", 1)[0]
    if parent:
        opts["parent_img"] = parent
        opts["track_mem"] = True
    if cgroups_mode is not None:
        opts["manage_cgroups_mode"] = cgroups_mode
    if not pre_dump:
        # key = value = the mount point: the image then names it, and restore maps it to its source
        opts["ext_mnt"] = [(path, path) for path in facts["externals"]] + [(path, "/dev/null") for path in masked_files]
    return opts


def restore_options(root, images_fd, binds, devices, masked, work_fd=None, annotations=None, joined=None,
                    tcp_established=False, ext_unix_sk=False, shell_job=False, file_locks=False,
                    empty_ns=CLONE_NEWNET, auto_dedup=False, cgroups_mode=None, lsm_profile=None,
                    lsm_mount_context=None):
    """criu_opts of a restore under ``root`` (the rootfs bound where CRIU wants it), as
    runc sends them: ``binds`` [(mount point, source)] of the new container's plan, its
    ``devices`` (mount points), whether it has ``masked`` paths, the namespaces it
    ``joined`` by path ({type: path}: the external ones come in as inherit_fd, added by
    the caller, the others by join_ns)."""
    opts = {
        "images_dir_fd": images_fd, "evasive_devices": True, "log_level": LOG_LEVEL, "log_file": "restore.log",
        "rst_sibling": True, "root": root, "manage_cgroups": True, "notify_scripts": True,
        "shell_job": shell_job, "ext_unix_sk": ext_unix_sk, "tcp_established": tcp_established,
        "file_locks": file_locks, "empty_ns": empty_ns, "orphan_pts_master": True, "auto_dedup": auto_dedup,
    }
    if lsm_profile:
        opts["lsm_profile"] = lsm_profile
    if lsm_mount_context:
        opts["lsm_mount_context"] = lsm_mount_context
    if work_fd is not None:
        opts["work_dir_fd"] = work_fd
    _config_file(opts, annotations)
    join = [(ns_type, path) for ns_type, path in sorted((joined or {}).items()) if ns_type not in EXTERNAL_NS]
    for ns_type, _ in join:
        if ns_type == "cgroup":
            raise OCIError("restore: joining a cgroup namespace by path (linux.namespaces) is something CRIU "
                           "can't do")
    if join:
        from .linux.namespaces import PROC_NAMES

        opts["join_ns"] = [(PROC_NAMES[ns_type], path) for ns_type, path in join]
    opts["ext_mnt"] = list(binds) + [(path, path) for path in devices] + ([("/dev/null", "/dev/null")] if masked
                                                                           else [])
    if cgroups_mode is not None:
        opts["manage_cgroups_mode"] = cgroups_mode
    return opts


def _config_file(opts, annotations):
    config = (annotations or {}).get(CONFIG_ANNOTATION, DEFAULT_CONFIG)
    if config:
        opts["config_file"] = config


def _inode(path):
    try:
        return posix.stat(path).st_ino
    except OSError as e:
        raise OCIError(f"linux.namespaces: {path}: {e.strerror}") from None


def request(type_, opts=None, notify_success=None):
    """A serialized criu_req."""
    return protowire.message([(1, type_), (2, _opts(opts) if opts is not None else None), (3, notify_success)])


def _opts(opts):
    pairs = []
    for name, value in opts.items():
        number = _OPTS[name]
        if name in _PAIRS:
            pairs += [(number, [(i + 1, v) for i, v in enumerate(item)]) for item in value]
        elif isinstance(value, list):
            pairs += [(number, v) for v in value]
        else:
            pairs.append((number, value))
    return pairs


def response(data):
    """A criu_resp as a dict: type, success, and what came with it (cr_errno, cr_errmsg,
    notify: (script, pid), restore_pid, version: (major, minor, sublevel))."""
    out = {"success": False}
    for number, value in protowire.fields(data):
        if number == 1:
            out["type"] = value
        elif number == 2:
            out["success"] = bool(value)
        elif number == 4:
            out["restore_pid"] = dict(protowire.fields(value)).get(1)
        elif number == 5:
            notify = dict(protowire.fields(value))
            out["notify"] = (notify.get(1, b"").decode(), _int32(notify.get(2, 0)))
        elif number == 7:
            out["cr_errno"] = _int32(value)
        elif number == 9:
            out["cr_errmsg"] = value.decode(errors="replace")
        elif number == 10:
            version = dict(protowire.fields(value))
            out["version"] = (version.get(1, 0), version.get(2, 0), version.get(4, 0))
    return out


def _int32(value):
    return value - (1 << 64) if value >= 1 << 63 else value


class Session:
    """One ``criu swrk`` process and its socket. ``stdio``: what criu has as 0, 1, 2 (None,
    or -1 for one: ours); ``extra``: what it has from 4 on (fds the options name by
    criu's numbers, inherit_fd's)."""

    def __init__(self, criu="criu", what="checkpoint", stdio=None, extra=()):
        self.what = what
        import shutil

        binary = shutil.which(criu)
        if binary is None:
            raise OCIError(f"{what}: --criu {criu}: no such executable" if "/" in criu else
                           f"{what}: criu is not installed (no {criu!r} on PATH): install CRIU, or name it with --criu")
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        self.sock = ours
        # fd 3 is criu's end of the socket; extra fds follow it from 4 on (runc's layout).
        fds = [own if fd == -1 else fd for own, fd in zip((0, 1, 2), stdio or (-1, -1, -1), strict=True)]
        fds += [theirs.fileno(), *extra]
        try:
            self.pid = _spawn(binary, ["criu", "swrk", "3"], fds)
        except OSError as e:
            ours.close()
            raise OCIError(f"{what}: {binary}: {e.strerror}") from None
        finally:
            theirs.close()
        self.status = None

    def call(self, req, on_notify=None, log=None):
        """Send ``req`` (bytes); answer each notification with ``on_notify(script, pid, fds)``
        (fds: those that came with it) until criu's final answer, which is returned. A
        failure is an OCIError with criu's own words (``log``: the log file they come from)."""
        self.sock.send(req)
        while True:
            data, fds = self._receive()
            if not data:
                self.wait()
                raise OCIError(f"{self.what}: criu ended without an answer ({_exit_text(self.status)})"
                               + _log_hint(log))
            resp = response(data)
            if not resp["success"]:
                raise OCIError(f"{self.what}: {error_text(resp, log)}")
            if resp.get("type") != NOTIFY:
                return resp
            script, pid = resp.get("notify", ("", 0))
            try:
                if on_notify is not None:
                    on_notify(script, pid, fds)
            finally:
                for fd in fds:
                    posix.close(fd)
            self.sock.send(request(NOTIFY, notify_success=True))

    def _receive(self):
        import array

        fds = array.array("i")
        data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 20, _socket.CMSG_SPACE(16 * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        return data, list(fds)

    def wait(self, kill=False):
        """End the session and return criu's wait status. Closing the socket ends a criu
        waiting for a request (after a pre-dump it waits for the next one); ``kill``: one
        still working is killed (a failure of ours midway)."""
        if self.status is None:
            self.sock.close()
            if kill:
                try:
                    posix.kill(self.pid, 9)
                except ProcessLookupError:
                    pass
            while True:
                try:
                    self.status = posix.waitpid(self.pid, 0)[1]
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:  # reaped by someone else's reaper (a shim's)
                    self.status = 0
                    break
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.wait(kill=exc_type is not None)


def _spawn(binary, argv, fds):
    """Start ``binary`` with ``fds`` as its 0, 1, 2, 3, ... and nothing else of ours: each
    is first copied above the highest (close-on-exec), so no dup2 of one overwrites
    another before it is copied."""
    high = [_dup_above(fd, 100 + len(fds)) for fd in fds]
    try:
        actions = [(posix.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(high)]
        return posix.posix_spawn(binary, argv, posix.environ, file_actions=actions)
    finally:
        for fd in high:
            posix.close(fd)


def _dup_above(fd, low):
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)


def error_text(resp, log=None):
    """criu's failure in one line: the message it answered with (criu ≥ 3.16 sends the
    error it kept as the cause), else the last error its log names, else its errno; and
    where the log is."""
    message = _strip_prefix((resp.get("cr_errmsg") or "").strip()) or last_error(log)
    if not message:
        errno = resp.get("cr_errno") or 0
        message = f"criu failed: {posix.strerror(errno)}" if errno else "criu failed"
    what = TYPE_NAMES.get(resp.get("type"), "request")
    return f"criu {what}: {message}" + _log_hint(log)


def last_error(log):
    """The last "Error (file:line): ..." line of criu's log that says more than that the
    dump or restore FAILED, without its prefix; "" if none."""
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()
    except (OSError, TypeError):
        return ""
    for line in reversed(lines):
        if "Error (" in line and not line.endswith("FAILED."):
            return _strip_prefix(line[line.index("Error ("):])
    return ""


def _strip_prefix(message):
    """"Error (criu/x.c:12): what" -> "what"."""
    if message.startswith("Error (") and "): " in message:
        return message.split("): ", 1)[1].strip()
    return message


def _log_hint(log):
    return f" (log: {log})" if log else ""


def _exit_text(status):
    if status is None:
        return "still running"
    if posix.WIFSIGNALED(status):
        return f"killed by signal {posix.WTERMSIG(status)}"
    return f"exit status {posix.WEXITSTATUS(status)}"
