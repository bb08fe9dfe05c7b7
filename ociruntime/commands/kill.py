"""kill: send a signal to the container's init (or, with --all, every process in it)."""

import _signal
import posix

from .. import cgroups, log, state
from ..errors import OCIError


def parse_signal(value):
    """A number 0 to SIGRTMAX (an int, or its digits), or a name with or without SIG ("TERM",
    "SIGKILL", "rtmin+1", "RTMAX-2"); anything else, an offset past the real-time range
    included, is refused."""
    if type(value) is int:
        value = str(value)  # one range check for both; a negative number is refused below as "-5" is
    elif type(value) is not str:
        raise OCIError(f"invalid signal {value!r}: not a signal number or name")
    name = value.upper().removeprefix("SIG")
    if value.isascii() and value.isdigit():
        if len(value) > 3 or int(value) > _signal.SIGRTMAX:
            raise OCIError(f"invalid signal {value!r}: signals are 0 to {_signal.SIGRTMAX}")
        return int(value)
    base, sign, offset = name[:5], name[5:6], name[6:]
    if base in ("RTMIN", "RTMAX") and sign == "+-"[base == "RTMAX"] and offset.isascii() and offset.isdigit():
        span = _signal.SIGRTMAX - _signal.SIGRTMIN
        if len(offset) > 3 or int(offset) > span:
            raise OCIError(f"invalid signal {value!r}: SIG{base}{sign}n takes n from 0 to {span}")
        return _signal.SIGRTMIN + int(offset) if sign == "+" else _signal.SIGRTMAX - int(offset)
    sig = getattr(_signal, "SIG" + name, None) if name.isascii() and name.isalnum() else None
    if type(sig) is not int:
        raise OCIError(f"invalid signal {value!r}: not a signal number or name")
    return sig


def send_signal(container, sig, all_processes=False):
    """runc's rules: the init of a created, running or paused container (a paused one is
    thawed for SIGKILL, which a frozen process would not act on); never the pid of a
    stopped one, which may be someone else's by now. --all signals whatever is in the
    cgroups, in any state."""
    data = container.data
    paths = container.cgroup_paths
    if all_processes and not paths:  # created rootless, without cgroups: its pid namespace
        from ..rootless import namespace_pids

        _send(namespace_pids(data), sig)
        return
    if all_processes:
        _signal_all(paths, sig, container.status() == "paused")
        return
    # A pidfd pins the process: once its start time matches, the signal can't hit a reused pid.
    pid = state.init_pid(data, paths)
    if pid is None:
        raise OCIError("container not running")
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        raise OCIError("container not running") from None
    try:
        if state.init_pid(data, paths) != pid:  # it was, but another process has its pid now
            raise OCIError("container not running")
        status = container.status()
        _signal.pidfd_send_signal(pidfd, sig)
    finally:
        posix.close(pidfd)
    if status == "paused" and sig == _signal.SIGKILL:
        from .pause import set_frozen

        set_frozen(cgroups.freezer_file(paths), False)


def _signal_all(paths, sig, paused):
    """Freeze the cgroup, signal every process in it, thaw (runc's order): a process that
    forks meanwhile can't put a child out of reach. A paused container stays paused,
    unless the signal is SIGKILL."""
    freezer = cgroups.freezer_file(paths)
    if freezer and not paused:
        _set_frozen(freezer, True)
    try:
        _send(cgroups.pids(paths), sig)
    finally:
        if freezer and (not paused or sig == _signal.SIGKILL):
            _set_frozen(freezer, False)


def _send(pids, sig):
    for pid in pids:
        try:
            posix.kill(pid, sig)
        except ProcessLookupError:
            pass


def _set_frozen(freezer, frozen):
    from .pause import set_frozen

    try:
        set_frozen(freezer, frozen)
    except (OCIError, OSError) as e:
        log.warn(f"kill --all: {e}")  # runc too signals what it finds, frozen or not


def kill(root, container_id, signal="TERM", all=False):
    sig = parse_signal(signal)
    with state.Container.load(root, container_id) as container:
        send_signal(container, sig, all)
