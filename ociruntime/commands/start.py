"""start: run the user's program in a created container, then the poststart hooks."""

import os

from .. import hooks, state
from ..errors import OCIError


def signal_start(data):
    """Write the start byte into the init's start pipe, reached through /proc."""
    fd = os.open(f"/proc/{data['pid']}/fd/{data['start_fd']}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"\0")
    finally:
        os.close(fd)


def poststart(container):
    # The program was started: the hooks see "running" even if it already exited.
    hooks.run(container.data["hooks"]["poststart"], state.spec_state(container.data, "running"), fatal=False)


def main(root, container_id):
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if status != "created":
            raise OCIError(f"cannot start container {container_id!r}: it is {status}, not created")
        signal_start(container.data)
        poststart(container)
