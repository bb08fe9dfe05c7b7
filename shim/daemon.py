"""The long-lived shim: one loop serving containerd's Task service on the socket
``start`` made, reaping its children, and publishing events, until its last task is gone."""

import _signal
import posix

from ociruntime import native

from . import rendezvous
from .events import Publisher
from .loop import Loop
from .service import TaskService
from .ttrpc import Server

IDLE_RETRY_SECONDS = 1.0


def serve(listener, address, opts):
    """Serve until the shim may leave (shim/rendezvous.py); the exit code."""
    import socket

    listener = socket.socket(fileno=listener.detach())  # the server accepts on it
    native.set_child_subreaper()
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    loop = Loop()
    publisher = Publisher(posix.environ.get(b"TTRPC_ADDRESS", b"").decode(), opts["namespace"])
    server = Server(loop)

    def leave():
        """No task left: go, unless a task is on its way here (then look again later)."""
        if service.has_tasks():
            return
        if rendezvous.try_leave(address, service.has_tasks):
            server.close()
            loop.stop()
        else:
            loop.call_later(IDLE_RETRY_SECONDS, leave)

    service = TaskService(loop, publisher, opts["namespace"], address, on_idle=leave)
    service.register(server)
    loop.add_signal_handler(_signal.SIGCHLD, service.reap)
    for signum in (_signal.SIGTERM, _signal.SIGINT):
        loop.add_signal_handler(signum, leave)
    server.serve(listener)
    # A shim whose first task never comes (containerd failed before Create) doesn't stay.
    loop.call_later(rendezvous.RESERVATION_SECONDS, leave)
    loop.run()
    publisher.close()
    return 0
