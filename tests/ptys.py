"""A terminal for tests: a pty whose slave is a command's stdin, stdout, stderr and
controlling terminal, as in an interactive shell; the test holds the master, as a terminal
emulator does (tests/test_containerd.py's and tests/test_podman.py's -it scenarios)."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time


class Terminal:
    def __init__(self, argv, rows, cols, env=None):
        self.master, slave = pty.openpty()
        self.resize(rows, cols)
        self.output = ""
        try:
            self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                         start_new_session=True,
                                         preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        finally:
            os.close(slave)

    def resize(self, rows, cols):
        """As a terminal emulator does: the size on the pty, SIGWINCH to its foreground."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data):
        os.write(self.master, data)

    def read_until(self, pattern, after=0, timeout=30):
        deadline = time.monotonic() + timeout
        while not (m := re.compile(pattern).search(self.output, after)):
            left = deadline - time.monotonic()
            assert left > 0 and self._read(left), f"no {pattern!r} in {self.output!r}"
        return m

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            pass
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def _read(self, timeout):
        """Append what the pty says within ``timeout``; False at its end (EIO: no slave open)."""
        if not select.select([self.master], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
