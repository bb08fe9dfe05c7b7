"""A process's stdio as containerd hands it over: FIFO paths (or ``file://`` log paths)
for stdin, stdout and stderr, or a pty.

The container never gets containerd's FIFOs themselves: it gets pipes (or its pty), and
the shim's loop copies between those and the FIFOs, as containerd-shim-runc-v2 does. A
client that goes away (``ctr`` killed, an attach closed) then never hands the container
an EPIPE or a blocked write, and the output goes on to whoever opens the FIFO next.
The shim opens an output FIFO read-write: that open never waits for a reader, and the
FIFO stays usable while no reader is there.
"""

import errno
import posix
import stat

from ociruntime.errors import OCIError

CHUNK = 65536
HIGH_WATER = 1 << 20  # bytes held for a slow reader before the source is left unread


class Pump:
    """Copy ``src`` to ``dst`` on the loop (both non-blocking), ``dst`` closed at ``src``'s
    EOF once everything is written. A full ``dst`` stops the reading (back-pressure)."""

    def __init__(self, loop, src, dst, on_done=None, close_src=True):
        self.loop, self.src, self.dst = loop, src, dst
        self.on_done, self.close_src = on_done, close_src
        self.buffer = bytearray()
        self.reading = self.writing = False
        self.eof = self.done = False
        for fd in (src, dst):
            posix.set_blocking(fd, False)
        self._read_more()

    def _read_more(self):
        if not self.eof and not self.reading and len(self.buffer) < HIGH_WATER:
            self.loop.add_reader(self.src, self._on_readable)
            self.reading = True

    def _on_readable(self):
        try:
            data = posix.read(self.src, CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # a pty whose other side is gone: its EOF
                raise
            data = b""
        if not data:
            self.eof = True
        self.buffer += data
        if self.eof or len(self.buffer) >= HIGH_WATER:
            self.loop.remove_reader(self.src)
            self.reading = False
        self._flush()

    def _flush(self):
        while self.buffer:
            try:
                n = posix.write(self.dst, self.buffer)
            except BlockingIOError:
                break
            except (BrokenPipeError, OSError) as e:
                if isinstance(e, BrokenPipeError) or e.errno in (errno.EPIPE, errno.EIO):
                    self.buffer.clear()  # nobody will ever read it (a container that closed its stdin)
                    self.eof = True
                    break
                raise
            del self.buffer[:n]
        if self.buffer and not self.writing:
            self.loop.add_writer(self.dst, self._flush)
            self.writing = True
        elif not self.buffer and self.writing:
            self.loop.remove_writer(self.dst)
            self.writing = False
        if self.eof and not self.buffer:
            self.close()
        else:
            self._read_more()

    def finish(self):
        """Stop reading; close ``dst`` once what was written to ``src`` so far is copied
        (CloseIO of stdin: the client wrote, then closed, and the loop may not have read yet)."""
        while not self.eof:
            try:
                data = posix.read(self.src, CHUNK)
            except BlockingIOError:
                break
            self.buffer += data
            self.eof = not data
        if self.reading:
            self.loop.remove_reader(self.src)
            self.reading = False
        self.eof = True
        self._flush()

    def close(self):
        """Stop now, whatever is unwritten."""
        if self.done:
            return
        self.done = True
        if self.reading:
            self.loop.remove_reader(self.src)
        if self.writing:
            self.loop.remove_writer(self.dst)
        self.reading = self.writing = False
        posix.close(self.dst)
        if self.close_src:
            posix.close(self.src)
        if self.on_done:
            self.on_done(self)


def _open_output(uri):
    """stdout/stderr's destination: a FIFO (opened read-write: see above), a regular file
    or ``file://`` (appended to), as containerd-shim-runc-v2 takes them."""
    if uri.startswith("binary://"):
        raise OCIError(f"stdio {uri}: binary:// log drivers are not supported by this shim")
    path = uri.removeprefix("fifo://").removeprefix("file://")
    try:
        if uri.startswith("file://"):
            dirname = path.rsplit("/", 1)[0]
            if dirname:
                _makedirs(dirname)
            return posix.open(path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o644)
        if stat.S_ISFIFO(posix.stat(path).st_mode):
            return posix.open(path, posix.O_RDWR | posix.O_NONBLOCK | posix.O_CLOEXEC)
        return posix.open(path, posix.O_WRONLY | posix.O_APPEND | posix.O_CLOEXEC)
    except OSError as e:
        raise OCIError(f"stdio {uri}: {e.strerror}") from None


def _makedirs(path):
    try:
        posix.mkdir(path, 0o755)
    except FileExistsError:
        return
    except FileNotFoundError:
        _makedirs(path.rsplit("/", 1)[0])
        posix.mkdir(path, 0o755)


def _open_input(uri):
    try:
        return posix.open(uri.removeprefix("fifo://"), posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except OSError as e:
        raise OCIError(f"stdio {uri}: {e.strerror}") from None


class ProcessIO:
    """One process's stdio: what to hand the runtime (``stdio`` fds or a ``console``
    socket) before it starts the process, and the pumps that run afterwards."""

    def __init__(self, loop, stdin, stdout, stderr, terminal, owner=None):
        """``owner``: (uid, gid) the process's ends of its pipes are given (containerd's
        io_uid/io_gid, for a user namespace's process to reopen them through /proc/self/fd)."""
        self.loop = loop
        self.owner = owner if owner and any(owner) else None
        self.paths = (stdin, stdout, stderr)
        self.terminal = terminal
        self.pumps = []
        self.master = None
        self._child_ends = []
        self._pending = []  # (our fd, FIFO fd, direction) waiting for the process to exist
        self._drained = []
        self.stdin_pump = None
        self.console = self._console_peer = None
        try:
            if terminal:
                import _socket

                self.console, self._console_peer = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            else:
                self.stdio = tuple(self._pipe(i, path) for i, path in enumerate(self.paths))
        except BaseException:
            self.close()
            raise

    def _pipe(self, index, path):
        """The fd the process gets as ``index``: /dev/null where containerd gave no path."""
        if not path:
            fd = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
            self._child_ends.append(fd)
            return fd
        external = _open_input(path) if index == 0 else _open_output(path)
        r, w = posix.pipe2(posix.O_CLOEXEC)
        ours, theirs = (w, r) if index == 0 else (r, w)
        self._child_ends.append(theirs)
        if self.owner:
            posix.fchown(theirs, *self.owner)
        self._pending.append((index, ours, external))
        return theirs

    def started(self):
        """The process exists and holds its ends: close ours of them and start copying."""
        for fd in self._child_ends:
            posix.close(fd)
        self._child_ends = []
        if self.terminal:
            self._console_peer.close()
            self._console_peer = None
            from ociruntime import api

            self.master, _ = api.receive_pty_master(self.console)
            self.console.close()
            self.console = None
            stdin, stdout, _ = self.paths  # a pty has one output: stderr is in it
            if stdout:
                self._start(self.master, _open_output(stdout), close_src=False)
            if stdin:
                self.stdin_pump = self._start(_open_input(stdin), posix.dup(self.master))
        else:
            for index, ours, external in self._pending:
                pump = self._start(external, ours) if index == 0 else self._start(ours, external)
                if index == 0:
                    self.stdin_pump = pump
        self._pending = []

    def _start(self, src, dst, close_src=True):
        pump = Pump(self.loop, src, dst, on_done=self._drained.append, close_src=close_src)
        self.pumps.append(pump)
        return pump

    def console_peer(self):
        return self._console_peer

    def drained(self):
        """Every output was copied to its end (or there is none)."""
        return all(p.done for p in self.pumps if p is not self.stdin_pump)

    def close_stdin(self):
        if self.stdin_pump is not None:
            self.stdin_pump.finish()

    def resize(self, width, height):
        if self.master is None:
            raise OCIError("the process has no terminal to resize")
        import fcntl
        import struct
        import termios

        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close(self):
        """Everything, now: the process is gone or never started."""
        for pump in self.pumps:
            pump.close()
        for fd in self._child_ends + [fd for _, ours, external in self._pending for fd in (ours, external)]:
            posix.close(fd)
        self._child_ends, self._pending = [], []
        for sock in (self.console, self._console_peer):
            if sock is not None:
                sock.close()
        self.console = self._console_peer = None
        if self.master is not None:
            posix.close(self.master)
            self.master = None
