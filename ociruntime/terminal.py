"""The foreground terminal of ``run``: the container's pty master on one side, this
process's stdin/stdout on the other, until the container exits (what runc does)."""

import os


def copy_size(master):
    """Give the pty the size of our own terminal (at start and on SIGWINCH)."""
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master, pid):
    """Copy stdin → pty and pty → stdout until ``pid`` exits; returns its wait status."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        copy_size(master)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (master, 0, pidfd):
        poller.register(fd, select.POLLIN)
    try:
        running = True
        while running:
            for fd, _ in poller.poll():
                if fd == pidfd:
                    running = False
                elif fd == master:
                    if not _pump(master, 1):
                        poller.unregister(master)
                elif not _pump(0, master):
                    poller.unregister(0)
        os.set_blocking(master, False)
        while _pump(master, 1):  # what the program wrote just before it exited
            pass
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def _pump(src, dst):
    """Move one chunk; False at EOF (a pty master reads EIO once the slave is gone)."""
    try:
        data = os.read(src, 65536)
    except (BlockingIOError, OSError):
        return False
    while data:
        data = data[os.write(dst, data):]
    return True
