"""run: create, start, wait for the container to exit, delete (unless --keep); exit with
its status (128 + signal when it was killed), forwarding signals to it meanwhile. In the
foreground it is a child subreaper, as runc's run is (unless --no-subreaper): what the
container's processes orphan (without a pid namespace of its own) is reparented here
and reaped, not to the host's init."""

import _signal as signal
import posix

from .. import pathnames, state
from ..errors import OCIError
from . import create as create_cmd
from . import delete as delete_cmd
from . import start as start_cmd

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)


def resolve_id(container_id, bundle):
    """`run bundle/`: an argument that looks like a bundle is one, and the id is made up."""
    if container_id and ("/" in container_id or pathnames.isfile(f"{container_id}/config.json")):
        return f"{pathnames.basename(pathnames.normpath(container_id))}-{posix.urandom(6).hex()}", container_id
    return container_id, bundle


def foreground(detach, no_subreaper, console_socket):
    """What a command that waits for its container (run's, restore's without --detach)
    sets up first: it becomes a child subreaper (unless --no-subreaper), and without
    --console-socket it makes the socket pair a pty master comes over, which it then
    proxies. Returns (our end, the container's end), or (None, None)."""
    if detach:
        return None, None
    if not no_subreaper:
        from ..native import set_child_subreaper

        set_child_subreaper()
    if console_socket:
        return None, None
    import _socket

    return _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)


def main(root, container_id, bundle=".", detach=False, keep=False, no_subreaper=False, **options):
    container_id, bundle = resolve_id(container_id, bundle)
    ours, theirs = foreground(detach, no_subreaper, options.get("console_socket"))
    try:
        container, init = create_cmd.create(root, container_id, bundle, console=theirs, **options)
    finally:
        if theirs is not None:
            theirs.close()
    pid = init.pid
    master = None
    if init.plan["terminal"] and ours is not None:
        from ..native import receive_pty_master

        master, _ = receive_pty_master(ours)
    if ours is not None:
        ours.close()
    try:
        forward_signals(pid, master)
        init.start()
        exec_error = start_cmd.read_exec_error(init.err_r)
        init.detach()
        container.close()
        try:
            start_cmd.after_start(container.data, exec_error)
        except OCIError:
            wait(pid)
            if not keep:
                _destroy(root, container_id)
            raise
        if detach:
            return 0
        status = wait_for(pid, master)
    finally:
        restore_signals()
    if not keep:
        _destroy(root, container_id)
    return exit_code(status)


def forward_signals(pid, master=None):
    """Pass the signals a foreground runtime gets on to ``pid``; with a pty, copy our
    window size to it on SIGWINCH instead."""
    for sig in _FORWARDED:
        signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
    if master is not None:
        from ..terminal import copy_size

        signal.signal(signal.SIGWINCH, lambda _signum, _frame: copy_size(master))


def restore_signals():
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)


def wait_for(pid, master=None):
    """Wait for our child ``pid``, proxying its pty when there is one; its wait status."""
    if master is None:
        return wait(pid)
    from ..terminal import proxy

    return proxy(master, pid)


def exit_code(status):
    """A wait status as a shell reports it: the exit code, or 128 + the signal."""
    if posix.WIFSIGNALED(status):
        return 128 + posix.WTERMSIG(status)
    return posix.WEXITSTATUS(status)


def _destroy(root, container_id):
    try:
        container = state.Container.load(root, container_id)
    except OCIError:
        return  # someone else deleted it meanwhile
    with container:
        delete_cmd.destroy(container)


def _forward(pid, signum):
    try:
        posix.kill(pid, signum)
    except ProcessLookupError:
        pass


def wait(pid):
    """``pid``'s wait status; the other children reaped meanwhile (a subreaper's orphans)."""
    while True:
        try:
            got, status = posix.waitpid(-1, 0)
        except InterruptedError:
            continue
        if got == pid:
            return status
