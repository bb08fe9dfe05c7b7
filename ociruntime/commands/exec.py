"""exec: run a new process inside a running container, as runc exec does — in all of
its namespaces and cgroups, with the container's seccomp filter — and, unless
--detach, wait for it and exit with its status, forwarding signals meanwhile.

The process is --process FILE (a runtime-spec process object), else the container's
config.json process with the command line's args and overrides (runc's getProcess).
"""

from .. import cgroups, fastjson, state
from .. import config as config_mod
from .. import plan as plan_mod
from ..errors import OCIError
from ..native import Init
from . import run as run_cmd
from . import start as start_cmd


def process_of(config, process_file=None, args=(), cwd=None, env=(), tty=False, user=None,
               additional_gids=(), caps=(), no_new_privs=False, apparmor=None, process_label=None):
    """The process object to run: --process FILE, else config.json's with the overrides.
    Validated with the config's schema, so errors name process.<field>."""
    if process_file:
        process = config_mod.read_json(process_file, "exec: --process")
    else:
        if not args:
            raise OCIError("exec: no command given (and no --process)")
        process = fastjson.loads(fastjson.dumps(config.get("process") or {}))  # a deep copy
        process["args"] = list(args)
        process["terminal"] = tty
        if cwd:
            process["cwd"] = cwd
        if apparmor:
            process["apparmorProfile"] = apparmor
        if process_label:
            process["selinuxLabel"] = process_label
        if caps:
            sets = process.setdefault("capabilities", {})
            for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
                sets[name] = list(sets.get(name) or []) + list(caps)
        process["env"] = list(process.get("env") or []) + list(env)
        if no_new_privs:
            process["noNewPrivileges"] = True
        if user:
            process["user"] = dict(process.get("user") or {}, **_user(user))
        if additional_gids:
            ids = process.setdefault("user", {}).get("additionalGids") or []
            process["user"]["additionalGids"] = ids + [_number(g, "--additional-gids") for g in additional_gids]
    from ..validate import validate_config

    validate_config({**config, "process": process})
    return process


def _user(spec):
    """--user uid[:gid] (numbers only, as runc takes them)."""
    uid, _, gid = spec.partition(":")
    user = {"uid": _number(uid, "--user")}
    if gid:
        user["gid"] = _number(gid, "--user")
    return user


def _number(text, flag):
    if not text.isdigit():
        raise OCIError(f"{flag}: {text!r} is not a number")
    return int(text)


class Target:
    """The running container a process is exec'd into: its record, status, checked
    cgroup paths and config."""

    def __init__(self, root, container_id, ignore_paused=False):
        with state.Container.load(root, container_id) as container:
            self.data = container.data
            self.status = container.status()
            self.cgroup_paths = container.cgroup_paths
        if self.status == "stopped":
            raise OCIError(f"cannot exec in a stopped container {container_id!r}")
        if self.status == "paused" and not ignore_paused:
            raise OCIError(f"cannot exec in a paused container {container_id!r} (use --ignore-paused to override)")
        self.config = config_mod.load(self.data["bundle"])


def checked_process(config, process):
    """An API caller's process object, checked as ``exec --process FILE`` checks a file's."""
    if type(process) is not dict:
        raise OCIError(f"exec: the process must be a runtime-spec process object, not {type(process).__name__}")
    where = config_mod.nul_byte(process)
    if where:
        raise OCIError(f"exec: process.{where[0]}: {where[1]}" if where[0] else f"exec: process: {where[1]}")
    from ..validate import validate_config

    validate_config({**config, "process": process})
    return process


def spawn(target, process, stdio=None, console=None, console_socket=None, preserve_fds=0):
    """Clone ``process`` into the container, join its cgroups, and return the Init once
    the process waits for its start byte. With a terminal its pty master goes to
    ``console`` (a connected socket) or the unix socket at ``console_socket``."""
    terminal = bool(process.get("terminal"))
    if console_socket and not terminal:
        raise OCIError("--console-socket is only used with a terminal (--tty or process.terminal)")
    connected = None
    if not terminal:
        console = None
    elif console is None:
        if not console_socket:
            raise OCIError("process.terminal is true: a console socket is needed to hand the terminal over")
        from .create import connect_console

        console = connected = connect_console(console_socket)
    plan = plan_mod.build_exec(target.config, process, target.data["pid"], preserve_fds=preserve_fds)
    init = None
    try:
        try:
            init = Init(plan, console.fileno() if console is not None else -1, stdio)
        finally:
            if connected is not None:
                connected.close()  # the process holds its own copy
        pid = init.wait_pid()
        initial, final = plan["exec_cpu_affinity"]
        if initial:
            _set_affinity(pid, initial, "initial")
        cgroups.join(target.cgroup_paths, pid)  # which widens the affinity to the cpuset
        if final:
            _set_affinity(pid, final, "final")
        if plan["waits_for_join"]:
            init.send(b"C")
        listener = (plan["process"]["seccomp"] or {}).get("listener")
        if listener:
            from .create import hand_over_listener

            hand_over_listener(listener, init.expect_fd(b"N"), state.spec_state(target.data, target.status))
        init.expect(b"R")
        init.commit()
    except BaseException:
        if init is not None:
            init.kill()
            init.detach()
        raise
    return init


def start(init, pid_file=None):
    """Let the process exec; its pid once it runs. A failed exec is raised, the process
    (exited 127) left for the caller to reap."""
    init.start()
    exec_error = start_cmd.read_exec_error(init.err_r)
    init.detach()
    if exec_error:
        raise OCIError(exec_error)
    if pid_file:
        from .create import write_pid_file

        write_pid_file(pid_file, init.pid)
    return init.pid


def main(root, container_id, command=(), process=None, detach=False, pid_file=None, console_socket=None,
         tty=False, preserve_fds=0, ignore_paused=False, cgroup=(), **overrides):
    if cgroup:
        raise OCIError("exec --cgroup: running the process in another cgroup is not supported by this runtime yet")
    target = Target(root, container_id, ignore_paused)
    spec = process_of(target.config, process, command, tty=tty, **overrides)
    terminal = bool(spec.get("terminal"))
    if detach and terminal and not console_socket:
        raise OCIError("exec --detach with a terminal needs --console-socket to hand the terminal over")
    ours = theirs = None
    if terminal and not console_socket:  # we proxy the pty
        import _socket

        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        init = spawn(target, spec, console=theirs, console_socket=console_socket, preserve_fds=preserve_fds)
    finally:
        if theirs is not None:
            theirs.close()
    master = None
    if ours is not None:
        from ..native import receive_pty_master

        master, _ = receive_pty_master(ours)
        ours.close()
    if detach:
        start(init, pid_file)
        return 0
    try:
        run_cmd.forward_signals(init.pid, master)
        start(init, pid_file)
        return run_cmd.exit_code(run_cmd.wait_for(init.pid, master))
    finally:
        run_cmd.restore_signals()


def _set_affinity(pid, cpus, which):
    """process.execCPUAffinity: ``initial`` holds while the process is set up, ``final``
    once it is in the container's cgroups (runtime-spec config.md)."""
    import posix

    try:
        posix.sched_setaffinity(pid, cpus)
    except OSError as e:
        raise OCIError(f"process.execCPUAffinity.{which}: {cpus}: {e.strerror}") from None
