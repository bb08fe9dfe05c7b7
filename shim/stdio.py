"""A process's stdio as containerd hands it over: FIFO paths (or ``file://`` log paths)
for stdin, stdout and stderr, or a pty.

The container never gets containerd's FIFOs themselves: it gets pipes (or its pty), and
the shim's loop copies between those and the FIFOs, as containerd-shim-runc-v2 does. A
client that goes away (``ctr`` killed, an attach closed) then never hands the container
an EPIPE or a blocked write, and the output goes on to whoever opens the FIFO next.
The shim opens an output FIFO read-write: that open never waits for a reader, and the
FIFO stays usable while no reader is there. It does so only once a reader has opened it,
though, and copies nothing before: what is put in a FIFO nobody has opened for reading is
dropped when its last writer closes it (the whole output of a quick process, when a
client opens its reader late, as ctr's goroutine may under load).
"""

import errno
import posix
import stat

from ociruntime.errors import OCIError

CHUNK = 65536
HIGH_WATER = 1 << 20  # bytes held for a slow reader before the source is left unread
READER_POLL_SECONDS = 0.005  # the first wait for an output FIFO's reader; doubled up to 1 s


class Pump:
    """Copy ``src`` to ``dst`` on the loop (both non-blocking), ``dst`` closed at ``src``'s
    EOF once everything is written. A full ``dst`` stops the reading (back-pressure).
    ``dst`` is an fd, or a FIFO's path (``FifoPath``): opened, and copied to, once a reader
    has it open."""

    def __init__(self, loop, src, dst, on_done=None, close_src=True):
        self.loop, self.src, self.dst = loop, src, None
        self.on_done, self.close_src = on_done, close_src
        self.buffer = bytearray()
        self.reading = self.writing = False
        self.eof = self.done = False
        self._timer = None
        posix.set_blocking(src, False)
        if isinstance(dst, FifoPath):
            self._await_reader(dst, READER_POLL_SECONDS)
        else:
            self._set_dst(dst)

    def _set_dst(self, fd):
        posix.set_blocking(fd, False)
        self.dst = fd
        self._read_more()

    def _await_reader(self, path, delay):
        """Open the FIFO once a reader has (a write-only open that doesn't wait succeeds only
        then); until it does, look again with a growing delay, leaving ``src`` unread."""
        self._timer = None
        try:
            probe = posix.open(path, posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        except OSError as e:
            if e.errno != errno.ENXIO:  # the client removed its FIFO: nobody can read this output
                self.close()
                return
            self._timer = self.loop.call_later(delay, lambda: self._await_reader(path, min(delay * 2, 1.0)))
            return
        try:
            fd = posix.open(path, posix.O_RDWR | posix.O_NONBLOCK | posix.O_CLOEXEC)
        finally:
            posix.close(probe)
        self._set_dst(fd)

    def _read_more(self):
        if not self.eof and not self.reading and len(self.buffer) < HIGH_WATER:
            self.loop.add_reader(self.src, self._on_readable)
            self.reading = True

    def _read_chunk(self):
        """One read of ``src`` into the buffer: False if it had nothing now, or at its end."""
        try:
            data = posix.read(self.src, CHUNK)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno != errno.EIO:  # a pty whose other side is gone: its EOF
                raise
            data = b""
        if not data:
            self.eof = True
        self.buffer += data
        if self.reading and (self.eof or len(self.buffer) >= HIGH_WATER):
            self.loop.remove_reader(self.src)
            self.reading = False
        return not self.eof

    def _on_readable(self):
        self._read_chunk()
        self._flush()

    def copy_available(self):
        """Copy now all that ``src`` holds, as far as ``dst`` takes it: a process that exited
        has written all it will, and its output must be in the FIFO before its exit is
        reported (ctr 1.6 closes its readers as soon as it sees the task stopped)."""
        if self.dst is None or self.done:
            return
        while not self.eof and len(self.buffer) < HIGH_WATER and self._read_chunk():
            pass
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
        while not self.eof and self._read_chunk():
            pass
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
        if self._timer is not None:
            self._timer.cancel()
        if self.reading:
            self.loop.remove_reader(self.src)
        if self.writing:
            self.loop.remove_writer(self.dst)
        self.reading = self.writing = False
        if self.dst is not None:
            posix.close(self.dst)
        if self.close_src:
            posix.close(self.src)
        if self.on_done:
            self.on_done(self)


class FifoPath(str):
    """An output FIFO's path, for a Pump to open once a reader has (see above)."""


def _open_output(uri):
    """stdout/stderr's destination: a FIFO (``FifoPath``: opened by its pump), a regular
    file or ``file://`` (appended to), as containerd-shim-runc-v2 takes them."""
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
            return FifoPath(path)
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

    def _output_pumps(self):
        return [p for p in self.pumps if p is not self.stdin_pump]

    def drained(self):
        """Every output was copied to its end (or there is none)."""
        return all(p.done for p in self._output_pumps())

    def copy_available(self):
        """The outputs' pumps copy what the process left in its pipes (see Pump.copy_available)."""
        for pump in self._output_pumps():
            pump.copy_available()

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
            if not isinstance(fd, FifoPath):
                posix.close(fd)
        self._child_ends, self._pending = [], []
        for sock in (self.console, self._console_peer):
            if sock is not None:
                sock.close()
        self.console = self._console_peer = None
        if self.master is not None:
            posix.close(self.master)
            self.master = None
