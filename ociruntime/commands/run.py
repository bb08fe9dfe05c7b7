"""run: create, start, wait for the container to exit, delete; exit with its status
(128 + signal when it was killed), forwarding signals to it meanwhile."""

import _signal as signal
import os

from .. import state
from . import create as create_cmd
from . import delete as delete_cmd
from . import start as start_cmd

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)


def resolve_id(container_id, bundle):
    """`run bundle/`: an argument that looks like a bundle is one, and the id is made up."""
    if container_id and ("/" in container_id or os.path.isfile(os.path.join(container_id, "config.json"))):
        return f"{os.path.basename(os.path.normpath(container_id))}-{os.urandom(6).hex()}", container_id
    return container_id, bundle


def main(root, container_id, bundle=".", detach=False, **options):
    container_id, bundle = resolve_id(container_id, bundle)
    container, init = create_cmd.create(root, container_id, bundle, **options)
    pid = init.pid
    try:
        for sig in _FORWARDED:
            signal.signal(sig, lambda signum, _frame: _forward(pid, signum))
        init.start_byte()
        init.detach()
        container.close()
        with state.Container.load(root, container_id, lock=False) as c:
            start_cmd.poststart(c)
        if detach:
            return 0
        status = _wait(pid)
    finally:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
    try:
        with state.Container.load(root, container_id) as c:
            delete_cmd.destroy(c)
    except Exception:
        pass  # deleted by someone else meanwhile
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _forward(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait(pid):
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue
