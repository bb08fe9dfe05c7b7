"""The binding to the C helper: the plan (plain data) → ``struct oci_plan`` → oci_spawn(),
and the parent's half of the sync protocol described in native/oci_native.h."""

import _signal
import _socket
import posix

from ._native import ffi, lib
from .errors import HookError, OCIError

_OPS = {
    "mount": lib.OCI_STEP_MOUNT, "mknod": lib.OCI_STEP_MKNOD, "symlink": lib.OCI_STEP_SYMLINK,
    "hooks": lib.OCI_STEP_HOOKS, "pivot": lib.OCI_STEP_PIVOT, "sysctl": lib.OCI_STEP_SYSCTL,
    "readonly": lib.OCI_STEP_READONLY, "mask": lib.OCI_STEP_MASK, "remount_root": lib.OCI_STEP_REMOUNT_ROOT,
    "hostname": lib.OCI_STEP_HOSTNAME, "domainname": lib.OCI_STEP_DOMAINNAME,
    "propagation": lib.OCI_STEP_PROPAGATION, "bind_rootfs": lib.OCI_STEP_BIND_ROOTFS,
    "mkdir": lib.OCI_STEP_MKDIR, "wait_parent": lib.OCI_STEP_WAIT_PARENT,
    "unshare_cgroupns": lib.OCI_STEP_UNSHARE_CGROUPNS, "file_label": lib.OCI_STEP_FILE_LABEL,
    "wait_joined": lib.OCI_STEP_WAIT_JOINED, "console": lib.OCI_STEP_CONSOLE,
}


class _Keeper:
    """Owns every cffi allocation of one plan so nothing is freed before the clone."""

    def __init__(self):
        self.objs = []

    def str(self, s):
        if s is None:
            return ffi.NULL
        obj = ffi.new("char[]", s.encode() if isinstance(s, str) else s)
        self.objs.append(obj)
        return obj

    def strv(self, items):
        ptrs = [self.str(i) for i in items] + [ffi.NULL]
        arr = ffi.new("const char *[]", ptrs)
        self.objs.append(arr)
        return arr

    def array(self, ctype, n):
        arr = ffi.new(f"{ctype}[]", max(n, 1))
        self.objs.append(arr)
        return arr

    def hooks(self, hooks):
        arr = self.array("struct oci_hook", len(hooks))
        for i, h in enumerate(hooks):
            arr[i].path = self.str(h["path"])
            arr[i].argv = self.strv(h["args"])
            arr[i].envp = self.strv(h["env"])
            arr[i].timeout = h["timeout"]
        return arr


def _fill_process(k, c, p):
    c.argv = k.strv(p["args"])
    c.envp = k.strv(p["env"])
    c.cwd = k.str(p["cwd"])
    c.uid, c.gid = p["uid"], p["gid"]
    groups = p["groups"] or []  # None: leave them (setgroups denied: rootless.py)
    c.ngroups = -1 if p["groups"] is None else len(groups)
    c.groups = k.array("unsigned int", len(groups))
    for i, g in enumerate(groups):
        c.groups[i] = g
    c.umask = p["umask"]
    if p["caps"] is not None:
        c.set_caps = 1
        for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            setattr(c, "cap_" + name, p["caps"][name])
    c.nrlimits = len(p["rlimits"])
    rl = k.array("struct oci_rlimit", len(p["rlimits"]))
    for i, (res, soft, hard) in enumerate(p["rlimits"]):
        rl[i].resource, rl[i].soft, rl[i].hard = res, soft, hard
    c.rlimits = rl
    c.no_new_privs = int(p["no_new_privs"])
    if p["oom_score_adj"] is not None:
        c.set_oom_score_adj = 1
        c.oom_score_adj = p["oom_score_adj"]
    if p["seccomp"] is not None:
        _fill_seccomp(k, c.seccomp, p["seccomp"])
    c.nhooks = len(p["start_hooks"])
    c.hooks = k.hooks(p["start_hooks"])
    c.apparmor_exec, c.selinux_exec = k.str(p["apparmor_exec"]), k.str(p["selinux_exec"])
    _fill_attrs(k, c, p)


def _fill_attrs(k, c, p):
    """Scheduler, I/O priority, personality, memory policy (linux/procattrs.py's numbers)."""
    s = p["scheduler"]
    if s is not None:
        c.sched.enabled = 1
        for key in ("policy", "flags", "nice", "priority", "runtime", "deadline", "period"):
            setattr(c.sched, key, s[key])
        c.sched.label = k.str(s["label"])
    if p["io_priority"] is not None:
        c.ioprio = p["io_priority"]
    if p["personality"] is not None:
        c.set_personality, c.persona = 1, p["personality"]
    m = p["memory_policy"]
    if m is not None:
        c.mempolicy.enabled, c.mempolicy.mode = 1, m["mode"]
        c.mempolicy.nwords = len(m["nodes"])
        words = k.array("unsigned long long", len(m["nodes"]))
        for i, w in enumerate(m["nodes"]):
            words[i] = w
        c.mempolicy.nodes = words
        c.mempolicy.label = k.str(m["label"])


def _fill_seccomp(k, c, s):
    c.enabled = 1
    c.default_action = s["default_action"]
    c.narchs = len(s["archs"])
    c.archs = k.strv(s["archs"])
    c.flags = s["flags"]
    c.notify = int(s["listener"] is not None)
    rules = k.array("struct oci_seccomp_rule", len(s["rules"]))
    for i, r in enumerate(s["rules"]):
        rules[i].name = k.str(r["name"])
        rules[i].action = r["action"]
        rules[i].nargs = len(r["args"])
        args = k.array("struct oci_seccomp_arg", len(r["args"]))
        for j, (index, op, value, value_two) in enumerate(r["args"]):
            args[j].index, args[j].op, args[j].value, args[j].value_two = index, op, value, value_two
        rules[i].args = args
    c.nrules = len(s["rules"])
    c.rules = rules


def _c_plan(plan, sync_fd, start_fds):
    k = _Keeper()
    c = ffi.new("struct oci_plan *")
    k.objs.append(c)
    c.clone_flags = plan["clone_flags"]
    c.unshare_timens = int(plan["unshare_timens"])
    c.timens_offsets = k.str(plan["timens_offsets"])
    c.njoins = len(plan["joins"])
    joins = k.array("struct oci_join", len(plan["joins"]))
    for i, (path, nstype) in enumerate(plan["joins"]):
        joins[i].path = k.str(path)
        joins[i].nstype = nstype
    c.joins = joins
    c.userns = int(plan["userns"])
    c.non_dumpable = int(plan["non_dumpable"])
    c.early_sync = int(plan["early_sync"])
    c.rootfs = k.str(plan["rootfs"])
    steps = plan["steps"]
    arr = k.array("struct oci_step", len(steps))
    for i, s in enumerate(steps):
        a = arr[i]
        a.op = _OPS[s["op"]]
        a.label = k.str(s["label"])
        a.src, a.dst, a.fstype, a.data = k.str(s["src"]), k.str(s["dst"]), k.str(s["fstype"]), k.str(s["data"])
        a.flags, a.propagation, a.mode, a.dev = s["flags"], s["propagation"], s["mode"], s["dev"]
        a.uid, a.gid = s["uid"], s["gid"]
        a.copyup = s["copyup"]
    c.nsteps = len(steps)
    c.steps = arr
    c.ncreate_hooks = len(plan["create_hooks"])
    c.create_hooks = k.hooks(plan["create_hooks"])
    _fill_process(k, c.process, plan["process"])
    c.preserve_fds = plan["preserve_fds"]
    c.no_new_keyring = int(plan["no_new_keyring"])
    c.sync_fd = sync_fd
    c.start_fd, c.start_wfd, c.err_rfd, c.err_wfd = start_fds
    return c, k


def _above(fd, low):
    """``fd`` moved to the lowest free number >= low (close-on-exec)."""
    if fd >= low:
        return fd
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    posix.close(fd)
    return moved


def _stdio_copies(stdio, low):
    """Copies (close-on-exec, at ``low`` or above) of the three fds the process gets as
    0, 1, 2; -1 where it keeps the one it inherits from us."""
    if stdio is None:
        return [-1, -1, -1]
    if type(stdio) not in (tuple, list) or len(stdio) != 3 or any(type(fd) is not int or fd < -1 for fd in stdio):
        raise OCIError(f"stdio: {stdio!r}: three file descriptors (-1: the one inherited) are needed")
    copies = []
    try:
        for fd in stdio:
            copies.append(_above(posix.dup(fd), low) if fd >= 0 else -1)
    except OSError as e:
        for fd in copies:
            if fd >= 0:
                posix.close(fd)
        raise OCIError(f"stdio[{len(copies)}]: fd {stdio[len(copies)]}: {e.strerror}") from None
    return copies


class Init:
    """The parent's handle on a container init (or an exec'd process) being created."""

    def __init__(self, plan, console_fd=-1, stdio=None):
        """Clone it. ``console_fd``: a connected unix socket for the pty master (-1: none);
        ``stdio``: three fds to become its 0, 1, 2 (None: ours, inherited)."""
        if not lib.oci_exe_sealed():
            # The init would show the host's interpreter at /proc/<pid>/exe, writable
            # from the container once nothing runs it (CVE-2019-5736).
            raise OCIError("this Python runs from a writable file (/proc/self/exe): containers are created only "
                           "from a read-only handle on it: the ociruntime launcher (scripts/setup.sh), or "
                           "ociruntime.api.ensure_sealed() first thing in the program")
        self.plan = plan
        self.pid = None
        self._stage1 = None
        # Every fd the init keeps must sit above the caller's preserved fds 3..3+N-1:
        # one landing in a gap there would cross the exec into the container.
        low = 3 + plan["preserve_fds"]
        stdio = _stdio_copies(stdio, low)
        self._sock, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        child_fd = _above(child.detach(), low)
        # The init blocks reading start_r while created; it holds start_w itself, so the
        # read can't see EOF before someone writes the start byte through /proc.
        self.start_r, self.start_w, self.err_r, self.err_w = (_above(fd, low) for fd in (*posix.pipe(), *posix.pipe()))
        console_fd = _above(posix.dup(console_fd), low) if console_fd >= 0 else -1
        c, keep = _c_plan(plan, child_fd, (self.start_r, self.start_w, self.err_r, self.err_w))
        c.console_fd = console_fd
        c.console_rows, c.console_cols = plan["console_size"]
        c.stdio = stdio
        stage1 = lib.oci_spawn(c)
        del keep
        for fd in (child_fd, console_fd, *stdio):  # the init holds its own
            if fd >= 0:
                posix.close(fd)
        if stage1 < 0:
            self._close()
            raise OCIError(f"clone: {posix.strerror(-stage1)}")
        self._stage1 = stage1

    def wait_pid(self):
        """Wait until the init exists and learn its pid.

        Cloning into new namespaces takes the kernel a millisecond or two (a network
        namespace most of it): the caller does its own work first and asks for the pid
        when it needs it.
        """
        if self._stage1 is None:
            return self.pid
        try:
            posix.waitpid(self._stage1, 0)
        except ChildProcessError:
            pass  # reaped by the caller's own reaper (a shim's, waiting for any child): 'P' is sent all the same
        self._stage1 = None
        msg = self._recv()
        if msg[:1] != b"P":
            self._close()
            raise OCIError(self._error(msg))
        self.pid = int(msg[1:])
        return self.pid

    def kill(self):
        """SIGKILL the init, if it came to exist, and wait until it is dead (its cgroups can
        be removed then). It is the caller's child (CLONE_PARENT), left for the caller to
        reap (WNOWAIT): a runtime exits right after, a shim's reaper waits for every child."""
        try:
            if self.wait_pid():
                posix.kill(self.pid, _signal.SIGKILL)
                posix.waitid(posix.P_PID, self.pid, posix.WEXITED | posix.WNOWAIT)
        except (OCIError, ProcessLookupError, ChildProcessError):
            pass

    def _recv(self):
        """The init's next message; b"" once its end is gone. An init that died with our
        message unread makes the kernel report ECONNRESET once, ahead of what it had
        sent (its 'E'): then read on."""
        for _ in range(2):
            try:
                return self._sock.recv(65536)
            except ConnectionResetError:
                continue
            except OSError:
                break
        return b""

    def _error(self, msg):
        if msg[:1] == b"E":
            return msg[1:].decode(errors="replace")
        return "the container's init exited during setup"

    def send(self, type_, payload=b""):
        try:
            self._sock.send(type_ + payload)
        except OSError:
            # The init failed meanwhile: its error is waiting on the socket.
            raise OCIError(self._error(self._recv())) from None

    def expect(self, type_):
        msg = self._recv()
        if msg[:1] != type_:
            error = self._error(msg)
            raise (HookError if error.startswith("hooks.") else OCIError)(error)
        return msg[1:]

    def expect_fd(self, type_):
        """The next message, which must be ``type_`` with one fd attached: returns the fd."""
        try:
            msg, fd = _recv_with_fd(self._sock)
        except OSError:
            msg, fd = b"", None
        if msg[:1] != type_ or fd is None:
            raise OCIError(self._error(msg))
        return fd

    def commit(self):
        """Tell the init that the state record names it: it waits for start from now on.
        Until then it exits as soon as our end of the socket closes (a runtime killed
        half-way), so no init is left waiting for a start nobody can give."""
        self.send(b"K")

    def write_id_maps(self):
        """The init's uid_map and gid_map, written here or, where the plan names one (an
        ordinary user mapping more than its own id: rootless.py), by newuidmap/newgidmap;
        "deny" goes to setgroups first where the plan says so."""
        if self.plan.get("setgroups"):
            _write_proc(f"/proc/{self.pid}/setgroups", self.plan["setgroups"], "linux.gidMappings")
        for kind, field in (("uid", "linux.uidMappings"), ("gid", "linux.gidMappings")):
            tool = self.plan.get(f"{kind}_map_tool")
            if tool:
                _run_map_tool(tool, self.pid, self.plan[f"{kind}_map"], field)
            else:
                _write_proc(f"/proc/{self.pid}/{kind}_map", self.plan[f"{kind}_map"], field)

    def start(self):
        """Start the init from this process (``run``); then read ``err_r`` to EOF."""
        posix.close(self.err_w)
        self.err_w = None
        posix.write(self.start_w, b"\0")

    def detach(self):
        """Close the parent's ends: from now on only /proc/<pid>/fd reaches the init."""
        self._close()

    def _close(self):
        self._sock.close()
        for fd in (self.start_r, self.start_w, self.err_r, self.err_w):
            if fd is not None:
                try:
                    posix.close(fd)
                except OSError:
                    pass
        self.start_r = self.start_w = self.err_r = self.err_w = None


def _write_proc(path, text, field):
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise OCIError(f"{field}: write {path}: {e.strerror}") from None


def _run_map_tool(tool, pid, mappings, field):
    """newuidmap/newgidmap PID ID HOSTID COUNT...: its error output is the error."""
    out_r, out_w = posix.pipe()
    try:
        child = posix.posix_spawn(tool, [tool, str(pid), *mappings.split()], posix.environ,
                                  file_actions=[(posix.POSIX_SPAWN_DUP2, out_w, 1), (posix.POSIX_SPAWN_DUP2, out_w, 2)])
    except OSError as e:
        posix.close(out_r)
        raise OCIError(f"{field}: {tool}: {e.strerror}") from None
    finally:
        posix.close(out_w)
    output = b""
    while chunk := posix.read(out_r, 4096):
        output += chunk
    posix.close(out_r)
    status = posix.waitpid(child, 0)[1]
    if status:
        said = output.decode(errors="replace").strip().replace("\n", "; ") or f"wait status {status}"
        raise OCIError(f"{field}: {tool} {pid}: {said}")


def _recv_with_fd(sock):
    """One message and the fd sent with it (SCM_RIGHTS), or None."""
    msg, ancdata, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return msg, int.from_bytes(data[:4], "little")
    return msg, None


def receive_pty_master(sock):
    """The pty master the init sent over a console socket (SCM_RIGHTS), and its slave's name."""
    msg, fd = _recv_with_fd(sock)
    if fd is None:
        raise OCIError("console socket: no pty master received")
    return fd, msg.decode()


def run_hook(hook, state_json):
    """Run one runtime-namespace hook with the state on stdin. Returns None or an error text."""
    k = _Keeper()
    c = k.hooks([hook])
    err = ffi.new("char[]", 512)
    rc = lib.oci_run_hook(c, state_json.encode(), err, 512)
    return None if rc == 0 else ffi.string(err).decode(errors="replace")


def detach_mount(path):
    """umount2(path, MNT_DETACH); a mount already gone is not an error."""
    rc = lib.oci_detach_mount(path.encode())
    if rc < 0 and -rc not in (2, 22):  # ENOENT, EINVAL: not (any longer) a mount point
        raise OCIError(f"unmount {path}: {posix.strerror(-rc)}")


def make_mountpoint(root, path, file=False):
    """The mount point ``path`` inside the directory ``root``, made where missing (never
    through a link out of it): directories, the last one an empty file with ``file``."""
    rc = lib.oci_make_mountpoint(root.encode(), path.encode(), 1 if file else 0)
    if rc < 0:
        raise OCIError(f"{path}: making the mount point in {root}: {posix.strerror(-rc)}")


def set_child_subreaper():
    """PR_SET_CHILD_SUBREAPER: what the container's processes orphan comes to us to reap."""
    err = lib.oci_set_child_subreaper()
    if err:
        raise OCIError(f"PR_SET_CHILD_SUBREAPER: {posix.strerror(-err)}")


def mount(source, target, fstype, flags, data):
    """mount(2); an error names the target."""
    rc = lib.oci_mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode())
    if rc < 0:
        raise OCIError(f"mount {fstype} {source} on {target}: {posix.strerror(-rc)}")


def attach_device_filter(cgroup_dir, program_bytes):
    """Make ``program_bytes`` (devicefilter.program()) the device filter of a cgroup v2
    directory, replacing the ones attached before (``update``)."""
    err = ffi.new("char[]", 1024)
    if lib.oci_attach_device_filter(cgroup_dir.encode(), program_bytes, len(program_bytes), err, 1024) < 0:
        raise OCIError(f"linux.resources.devices: {ffi.string(err).decode(errors='replace')}")
