"""start: run the user's program in a created container (lifecycle steps 6-9)."""

import _signal
import posix

from .. import hooks, state
from ..errors import OCIError


def read_exec_error(fd):
    """Read the init's exec-error pipe to EOF: "" once the program was exec'd, else why not."""
    chunks = []
    while chunk := posix.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def start(data):
    """Write the start byte through /proc and wait for the exec; returns its error or ""."""
    proc = f"/proc/{data['pid']}/fd/"
    err_fd = posix.open(proc + str(data["err_fd"]), posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        fd = posix.open(proc + str(data["start_fd"]), posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, b"\0")
        finally:
            posix.close(fd)
        return read_exec_error(err_fd)
    finally:
        posix.close(err_fd)


def after_start(data, exec_error):
    """startContainer and exec failures, then poststart: the spec makes each an error
    that stops the container (delete then destroys it and runs poststop)."""
    if exec_error:
        raise OCIError(exec_error)
    try:
        # The program was started: the hooks see "running" even if it already exited.
        hooks.run(data["hooks"]["poststart"], state.spec_state(data, "running"), fatal=True)
    except OCIError:
        try:
            posix.kill(data["pid"], _signal.SIGKILL)
        except ProcessLookupError:
            pass
        raise


def start_container(root, container_id):
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if status != "created":
            raise OCIError(f"cannot start container {container_id!r}: it is {status}, not created")
        after_start(container.data, start(container.data))
