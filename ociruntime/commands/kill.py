"""kill: send a signal to the container's init (or, with --all, every process in it)."""

import _signal
import posix

from .. import cgroups, state
from ..errors import OCIError


def parse_signal(value):
    """A number, or a name with or without SIG ("TERM", "SIGKILL", "rtmin+1")."""
    if value.isdigit():
        if int(value) >= _signal.NSIG:
            raise OCIError(f"invalid signal {value!r}: signals are 0 to {_signal.NSIG - 1}")
        return int(value)
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(_signal, name, None) if name.isidentifier() and not name.startswith("SIG_") else None
    if isinstance(sig, int):
        return sig
    if name.startswith("SIGRTMIN+") and name[9:].isdigit():
        return _signal.SIGRTMIN + int(name[9:])
    if name.startswith("SIGRTMAX-") and name[9:].isdigit():
        return _signal.SIGRTMAX - int(name[9:])
    raise OCIError(f"invalid signal {value!r}")


def send_signal(container, sig, all_processes=False):
    data = container.data
    paths = container.cgroup_paths
    if all_processes:
        for pid in cgroups.pids(paths):
            try:
                posix.kill(pid, sig)
            except ProcessLookupError:
                pass
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
        _signal.pidfd_send_signal(pidfd, sig)
    finally:
        posix.close(pidfd)


def main(root, container_id, sig="TERM", all_processes=False):
    sig = parse_signal(sig)
    with state.Container.load(root, container_id) as container:
        send_signal(container, sig, all_processes)
