"""ttrpc as containerd 1.6 speaks it (github.com/containerd/ttrpc v1.1.1): the server the shim
serves its Task service with, and the client it publishes events with (and tests call a shim
with).

The wire: frames of a 10-byte header — payload length (uint32, big-endian), stream id
(uint32), type (1 request, 2 response), flags (unused) — and a payload of at most 4 MiB, a
``ttrpc.Request`` or ``ttrpc.Response`` message. The client opens one stream per call, odd
ids from 1 up by 2; any number may be outstanding at once, answered in any order.

Over the limit: ttrpc reads a frame's header, discards its payload and answers on its stream
with RESOURCE_EXHAUSTED; both sides here do the same. Neither side here ever sends one: the
client refuses, and the server sends that error instead, because ttrpc v1.1.1's client —
containerd's end of the connection to a shim — would not survive it (client.go slices the
payload it discarded, ``p[:mh.Length]`` of nil: a Go panic, containerd gone).
"""

import enum
import os
import socket
import struct
import threading
import time

from google.protobuf.message import DecodeError, Message

from . import protocol
from .loop import log, log_exception

HEADER = struct.Struct(">IIBB")
MESSAGE_LENGTH_MAX = 4 << 20
REQUEST, RESPONSE = 1, 2
NAMESPACE_KEY = "containerd-namespace-ttrpc"  # the metadata key of containerd's namespace



class Code(enum.IntEnum):
    """gRPC's status codes, which ttrpc's responses carry."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# The codes containerd's errdefs.FromGRPC turns back into its error classes, and those
# classes' text: containerd's own shim ends a message with it ("process does not exist x:
# not found", errdefs.ToGRPC of a wrapped class), and FromGRPC keeps such a message as it is.
ERRDEFS_TEXT = {
    Code.INVALID_ARGUMENT: "invalid argument",
    Code.NOT_FOUND: "not found",
    Code.ALREADY_EXISTS: "already exists",
    Code.FAILED_PRECONDITION: "failed precondition",
    Code.UNAVAILABLE: "unavailable",
    Code.UNIMPLEMENTED: "not implemented",
    Code.CANCELLED: "context canceled",
    Code.DEADLINE_EXCEEDED: "context deadline exceeded",
}

_Request = protocol.message("ttrpc.Request")
_Response = protocol.message("ttrpc.Response")


class Error(Exception):
    """A call's failure as a gRPC status: ``code`` (a Code, or the number of one it doesn't
    know) and ``message``.

    containerd maps NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, UNIMPLEMENTED,
    INVALID_ARGUMENT, UNAVAILABLE, CANCELLED and DEADLINE_EXCEEDED to its errdefs classes (what
    it acts on, e.g. a Delete of a task that is not found); any other code is "unknown" to it.
    ``Error.of`` writes a message the way containerd-shim-runc-v2's read."""

    def __init__(self, code, message):
        super().__init__(code, message)
        try:
            code = Code(code)
        except ValueError:
            pass  # a code gRPC may add one day: kept as the number
        self.code, self.message = code, message

    @classmethod
    def of(cls, code, what):
        """The error of containerd's class for ``code``: ``Error.of(Code.NOT_FOUND, "process does
        not exist x")`` says "process does not exist x: not found", as runc's shim would."""
        return cls(code, f"{what}: {ERRDEFS_TEXT[code]}")

    def __str__(self):
        return self.message

    def __repr__(self):
        return f"Error({getattr(self.code, 'name', self.code)}, {self.message!r})"


class ConnectionClosed(Error):
    """No connection: it could not be made, or it went (or was closed) before the call's
    response came. A publisher reconnects on it, as containerd's does on ttrpc.ErrClosed."""

    def __init__(self, message):
        super().__init__(Code.UNAVAILABLE, message)


class FrameReader:
    """Frames out of a byte stream as they complete. ``feed(data)`` returns a list of
    (stream id, type, length, payload), payload None for a frame over MESSAGE_LENGTH_MAX:
    never buffered, its bytes are skipped as they come."""

    def __init__(self):
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized payload still to drop
        self._skipped = None  # its (stream id, type, length)

    def feed(self, data):
        buffer = self._buffer
        buffer += data
        frames, pos = [], 0
        while True:
            if self._skip:
                dropped = min(self._skip, len(buffer) - pos)
                self._skip -= dropped
                pos += dropped
                if self._skip:
                    break
                frames.append((*self._skipped, None))
            if len(buffer) - pos < HEADER.size:
                break
            length, stream_id, kind, _flags = HEADER.unpack_from(buffer, pos)
            if length > MESSAGE_LENGTH_MAX:
                pos += HEADER.size
                self._skip, self._skipped = length, (stream_id, kind, length)
                continue
            end = pos + HEADER.size + length
            if end > len(buffer):
                break
            frames.append((stream_id, kind, length, bytes(buffer[pos + HEADER.size:end])))
            pos = end
        del buffer[:pos]
        return frames


def frame(stream_id, kind, payload):
    """One frame's bytes."""
    return HEADER.pack(len(payload), stream_id, kind, 0) + payload


def oversized(length):
    """What ttrpc answers a frame over the limit with (its text)."""
    return Error(Code.RESOURCE_EXHAUSTED,
                 f"message length {length} exceed maximum message size of {MESSAGE_LENGTH_MAX}")


def response_frame(stream_id, payload=b"", error=None):
    """A Response frame: ``payload`` with an OK status (ttrpc sends that status, not none),
    or ``error``'s status and no payload; RESOURCE_EXHAUSTED instead of one over the limit."""
    response = _Response(payload=payload) if error is None else _Response()
    response.status.SetInParent()
    if error is not None:
        response.status.code, response.status.message = error.code, error.message
    data = response.SerializeToString()
    if len(data) > MESSAGE_LENGTH_MAX:
        log(f"ttrpc: the response on stream {stream_id} has {len(data)} bytes, over ttrpc's limit")
        return response_frame(stream_id, error=oversized(len(data)))
    return frame(stream_id, RESPONSE, data)


class Context:
    """What a handler knows of its call besides the request: the caller's ``metadata``
    (key -> list of values), the ``stream_id``, and the caller's ``deadline`` on
    time.monotonic's clock (None: it set none; ttrpc does not cut a handler short, the
    caller just stops waiting)."""

    __slots__ = ("metadata", "stream_id", "deadline")

    def __init__(self, metadata, stream_id, deadline):
        self.metadata, self.stream_id, self.deadline = metadata, stream_id, deadline

    @property
    def namespace(self):
        """containerd's namespace of the call ("" if it sent none)."""
        return self.metadata.get(NAMESPACE_KEY, [""])[0]


class Pending:
    """A response to come, what a handler returns when it can't answer yet (the shim's Wait,
    until the process exits): the server sends it when the loop calls ``resolve(message)`` or
    ``fail(error)`` (an Error's status; UNKNOWN and its text for another exception). From
    the loop's thread: another thread hands it over with ``loop.call_soon``. A connection
    that closed meanwhile takes nothing."""

    __slots__ = ("_send", "_frame_of", "done")

    def __init__(self):
        self._send = None  # the connection's, once the handler returned this
        self._frame_of = None  # stream id -> the response frame, once resolved
        self.done = False

    def resolve(self, message):
        payload = message.SerializeToString()
        self._finish(lambda stream_id: response_frame(stream_id, payload))

    def fail(self, error):
        error = error if isinstance(error, Error) else Error(Code.UNKNOWN, str(error))
        self._finish(lambda stream_id: response_frame(stream_id, error=error))

    def _finish(self, frame_of):
        if self.done:
            raise RuntimeError("ttrpc: a Pending response was given twice")
        self.done, self._frame_of = True, frame_of
        if self._send:
            self._send(frame_of)

    def _attach(self, send):
        self._send = send
        if self.done:
            send(self._frame_of)


class Server:
    """Serves registered methods on listening unix sockets, in the loop: any number of
    connections, each with any number of calls outstanding.

    ``require_same_user``: refuse a peer of another uid or gid than this process's effective
    ones, as containerd's shims do (ttrpc.UnixSocketRequireSameUser). ``on_connection_closed``,
    if set, is called after a connection closed."""

    def __init__(self, loop, require_same_user=True):
        self.loop = loop
        self.connections = set()
        self.on_connection_closed = None
        self._require_same_user = require_same_user
        self._methods = {}  # (service, method) -> (request class, handler)
        self._services = set()
        self._listeners = []

    def register(self, service, method, request_cls, handler):
        """``handler(request, ctx)`` answers ``service``/``method``: it returns the response
        message, or a Pending; it raises Error for a status, anything else for UNKNOWN with
        its text (and its traceback logged)."""
        self._methods[service, method] = (request_cls, handler)
        self._services.add(service)

    def serve(self, listener):
        """Accept connections on ``listener`` (a bound, listening unix socket) in the loop."""
        listener.setblocking(False)
        self._listeners.append(listener)
        self.loop.add_reader(listener.fileno(), lambda: self._accept(listener))

    def close(self):
        """Stop accepting, close the listeners and every connection (calls outstanding get
        no response)."""
        for listener in self._listeners:
            self.loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners.clear()
        for connection in list(self.connections):
            connection.close()

    def _accept(self, listener):
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        if self._require_same_user:
            pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
            if (uid, gid) != (os.geteuid(), os.getegid()):
                log(f"ttrpc: refused a connection from pid {pid} (uid {uid}, gid {gid}): not this shim's user")
                sock.close()
                return
        sock.setblocking(False)
        self.connections.add(_Connection(self, sock))

    def _dispatch(self, connection, stream_id, request):
        """Run the request's handler; its response is sent now or, for a Pending, later."""
        send = connection.send
        found = self._methods.get((request.service, request.method))
        if found is None:  # ttrpc's words
            missing = f"method {request.method}" if request.service in self._services else f"service {request.service}"
            send(response_frame(stream_id, error=Error(Code.UNIMPLEMENTED, missing)))
            return
        request_cls, handler = found
        try:
            message = request_cls.FromString(request.payload)
        except DecodeError as e:
            error = Error(Code.INTERNAL, f"ttrpc: error unmarshalling payload: {e}")
            send(response_frame(stream_id, error=error))
            return
        metadata = {}
        for pair in request.metadata:
            metadata.setdefault(pair.key, []).append(pair.value)
        deadline = time.monotonic() + request.timeout_nano / 1e9 if request.timeout_nano else None
        try:
            result = handler(message, Context(metadata, stream_id, deadline))
            if isinstance(result, Pending):
                result._attach(lambda frame_of: send(frame_of(stream_id)))
                return
            if not isinstance(result, Message):
                raise TypeError(f"ttrpc: the handler of {request.service}/{request.method} returned {result!r}")
            data = response_frame(stream_id, result.SerializeToString())
        except Error as e:
            data = response_frame(stream_id, error=e)
        except Exception as e:
            log_exception(f"ttrpc: {request.service}/{request.method}")
            data = response_frame(stream_id, error=Error(Code.UNKNOWN, str(e)))
        send(data)


class _Connection:
    """One client's connection to the Server: frames in as the loop finds them readable,
    responses out through a buffer (never blocking the loop)."""

    def __init__(self, server, sock):
        self.server, self.sock, self.fd = server, sock, sock.fileno()
        self.closed = False
        self._frames = FrameReader()
        self._out = bytearray()
        server.loop.add_reader(self.fd, self._on_readable)

    def send(self, data):
        if self.closed:
            return
        idle = not self._out
        self._out += data
        if idle:
            self._flush()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.server.loop.remove_reader(self.fd)
        self.server.loop.remove_writer(self.fd)
        self.sock.close()
        self.server.connections.discard(self)
        if self.server.on_connection_closed:
            self.server.on_connection_closed()

    def _on_readable(self):
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:  # ECONNRESET and the like: gone, as at EOF
            data = b""
        if not data:
            self.close()
            return
        for stream_id, kind, length, payload in self._frames.feed(data):
            if self.closed:
                return
            self._on_frame(stream_id, kind, length, payload)

    def _on_frame(self, stream_id, kind, length, payload):
        """ttrpc's checks, in its order: size, type, request, stream id."""
        if payload is None:
            self.send(response_frame(stream_id, error=oversized(length)))
            return
        if kind != REQUEST:
            return  # ttrpc ignores other types "for future compat"
        try:
            request = _Request.FromString(payload)
        except DecodeError as e:
            error = Error(Code.INVALID_ARGUMENT, f"unmarshal request error: {e}")
            self.send(response_frame(stream_id, error=error))
            return
        if stream_id % 2 != 1:
            error = Error(Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams")
            self.send(response_frame(stream_id, error=error))
            return
        self.server._dispatch(self, stream_id, request)

    def _flush(self):
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:  # EPIPE, ECONNRESET: the client went
            self.close()
            return
        del self._out[:sent]
        if self._out:
            self.server.loop.add_writer(self.fd, self._flush)
        else:
            self.server.loop.remove_writer(self.fd)


class Client:
    """A blocking ttrpc client, safe for many threads at once: each ``call`` sends its request
    and waits; one reader thread hands each response to its caller.

    ``address``: a unix socket's path, with or without "unix://"; "@name" for an abstract one."""

    def __init__(self, address):
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.connect(_sockaddr(address))
        except OSError as e:
            self._sock.close()
            raise ConnectionClosed(f"ttrpc: cannot connect to {address}: {e.strerror or e}") from e
        self._send_lock = threading.Lock()  # one frame at a time on the socket; ids in order
        self._calls_lock = threading.Lock()  # the calls; never held while sending (see _register)
        self._next_id = 1
        self._calls = {}  # stream id -> _Call
        self._closed = None  # the ConnectionClosed of every later call, once the connection went
        self._closing = False
        self._reader = threading.Thread(target=self._read, name=f"ttrpc client {address}", daemon=True)
        self._reader.start()

    def call(self, service, method, request, response_cls, timeout=None, metadata=None):
        """``service``/``method``'s response to ``request``, an instance of ``response_cls``.

        ``timeout`` (seconds) goes to the server as the call's deadline, and the wait for the
        response ends then with DEADLINE_EXCEEDED (a late response is dropped). ``metadata``:
        key -> value or list of values (containerd's namespace: NAMESPACE_KEY). Raises Error
        with the response's status, ConnectionClosed if the connection goes first."""
        envelope = _Request(service=service, method=method, payload=request.SerializeToString(),
                            timeout_nano=int(timeout * 1e9) if timeout else 0)
        for key, values in (metadata or {}).items():
            for value in [values] if isinstance(values, str) else values:
                envelope.metadata.add(key=key, value=value)
        data = envelope.SerializeToString()
        if len(data) > MESSAGE_LENGTH_MAX:
            raise Error(Code.RESOURCE_EXHAUSTED, f"ttrpc: a {service}/{method} request of {len(data)} bytes is over "
                                                 f"the maximum message size of {MESSAGE_LENGTH_MAX}")
        call = _Call()
        stream_id = self._send(data, call)
        if not call.event.wait(timeout):
            with self._calls_lock:
                gone = self._calls.pop(stream_id, None)
            if gone is not None:
                raise Error(Code.DEADLINE_EXCEEDED,
                            f"context deadline exceeded: {service}/{method} had no response within {timeout} s")
            call.event.wait()  # the response came in the meantime: the reader is handing it over
        if call.error is not None:
            raise call.error
        response = _Response.FromString(call.payload)
        if response.status.code != Code.OK:
            raise Error(response.status.code, response.status.message)
        return response_cls.FromString(response.payload)

    def close(self):
        """Close the connection: outstanding and later calls raise ConnectionClosed."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # the reader sees its end
        except OSError:
            pass  # not connected any more
        if threading.current_thread() is not self._reader:
            self._reader.join()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, data, call):
        """Register ``call`` under the next stream id and send its frame; the id.

        Two locks, so that the reader never waits on a sender: a server that stops reading
        until its responses are read (ttrpc's Go server does) would otherwise hold a sender
        in sendall and the reader behind it."""
        with self._send_lock:
            stream_id = self._next_id
            self._next_id += 2
            with self._calls_lock:
                if self._closed is not None:
                    raise self._closed
                self._calls[stream_id] = call
            try:
                self._sock.sendall(frame(stream_id, REQUEST, data))
            except OSError as e:
                with self._calls_lock:
                    self._calls.pop(stream_id, None)
                raise ConnectionClosed(f"ttrpc: connection to {self.address} lost: {e}") from e
        return stream_id

    def _read(self):
        frames = FrameReader()
        how = "closed by the server"
        try:
            while True:
                data = self._sock.recv(1 << 18)
                if not data:
                    break
                for stream_id, kind, length, payload in frames.feed(data):
                    if kind != RESPONSE:
                        continue
                    with self._calls_lock:
                        call = self._calls.pop(stream_id, None)
                    if call is not None:  # else one whose caller stopped waiting
                        call.finish(payload, None if payload is not None else oversized(length))
        except OSError as e:
            how = f"lost: {e}"
        if self._closing:
            how = "closed by this client"
        closed = ConnectionClosed(f"ttrpc: connection to {self.address} {how}")
        with self._calls_lock:
            self._closed = closed
            calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            call.finish(None, closed)


class _Call:
    __slots__ = ("event", "payload", "error")

    def __init__(self):
        self.event = threading.Event()
        self.payload = self.error = None

    def finish(self, payload, error):
        self.payload, self.error = payload, error
        self.event.set()


def _sockaddr(address):
    """The socket address of a ttrpc address: containerd writes "unix:///path" for a shim,
    a plain path for its own ttrpc socket; Go's net reads "@name" as an abstract socket."""
    path = address.removeprefix("unix://")
    if "://" in path:
        raise ValueError(f"ttrpc: unsupported address {address!r}: unix sockets only")
    return "\0" + path[1:] if path.startswith("@") else path
