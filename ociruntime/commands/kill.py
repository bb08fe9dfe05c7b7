"""kill: send a signal to the container's init (or, with --all, every process in it)."""

import _signal
import posix

from .. import cgroups, state
from ..errors import OCIError


def parse_signal(value):
    """A number 0 to SIGRTMAX, or a name with or without SIG ("TERM", "SIGKILL", "rtmin+1",
    "RTMAX-2"); anything else, an offset past the real-time range included, is refused."""
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
    data = container.data
    if all_processes:
        for pid in cgroups.pids(data["cgroup_paths"]):
            try:
                posix.kill(pid, sig)
            except ProcessLookupError:
                pass
        return
    # A pidfd pins the process: once its start time matches, the signal can't hit a reused pid.
    try:
        pidfd = posix.pidfd_open(data["pid"])
    except ProcessLookupError:
        raise OCIError("container not running") from None
    try:
        if container.status() == "stopped":
            raise OCIError("container not running")
        _signal.pidfd_send_signal(pidfd, sig)
    finally:
        posix.close(pidfd)


def main(root, container_id, sig="TERM", all_processes=False):
    sig = parse_signal(sig)
    with state.Container.load(root, container_id) as container:
        send_signal(container, sig, all_processes)
