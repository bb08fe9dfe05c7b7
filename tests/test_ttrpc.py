"""ttrpc (ociruntime_shim.ttrpc) on real unix sockets: frames, stream ids, statuses both
ways, many calls outstanding over one client, oversized messages, dropped connections —
and against a real containerd 1.6: an event published through its ttrpc Events service as a
shim publishes one, seen by `ctr events`; its ttrpc server's answers, which ours imitates."""

import datetime
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest
from conftest import launcher_python, stop_daemon
from ociruntime_shim import protocol
from ociruntime_shim.loop import Loop
from ociruntime_shim.ttrpc import (
    MESSAGE_LENGTH_MAX,
    NAMESPACE_KEY,
    REQUEST,
    RESPONSE,
    Client,
    Code,
    ConnectionClosed,
    Error,
    FrameReader,
    Pending,
    Server,
    frame,
    oversized,
)

TASK = "containerd.task.v2.Task"
Request = protocol.message("ttrpc.Request")
Response = protocol.message("ttrpc.Response")
StateRequest = protocol.message("containerd.task.v2.StateRequest")
StateResponse = protocol.message("containerd.task.v2.StateResponse")
WaitRequest = protocol.message("containerd.task.v2.WaitRequest")
WaitResponse = protocol.message("containerd.task.v2.WaitResponse")
ConnectRequest = protocol.message("containerd.task.v2.ConnectRequest")
ConnectResponse = protocol.message("containerd.task.v2.ConnectResponse")
KillRequest = protocol.message("containerd.task.v2.KillRequest")
Empty = protocol.Empty


class Served:
    """A Server with a few Task methods, its loop running in a thread.

    State answers at once (stdout of the size asked in ``id``); Connect tells what the
    handler saw of its call; Kill raises ``Error.of``; Pids raises a plain exception; Wait
    returns a Pending, kept in ``pending`` by exec id."""

    def __init__(self, where):
        """``where``: a path, or "@name" for an abstract socket."""
        self.address = where if where.startswith("@") else f"unix://{where}"
        self.loop = Loop()
        self.server = Server(self.loop)
        self.pending = {}
        self.arrived = threading.Condition()
        self.closed_connections = 0
        self.server.on_connection_closed = self._closed
        self.server.register(TASK, "State", StateRequest, lambda req, ctx: StateResponse(
            id=req.id, stdout="x" * int(req.exec_id or 0)))
        self.server.register(TASK, "Connect", ConnectRequest, lambda req, ctx: ConnectResponse(
            shim_pid=ctx.stream_id, version=json.dumps([ctx.namespace, ctx.metadata, ctx.deadline is not None])))
        self.server.register(TASK, "Kill", KillRequest, self._kill)
        self.server.register(TASK, "Pids", protocol.message("containerd.task.v2.PidsRequest"), self._pids)
        self.server.register(TASK, "Wait", WaitRequest, self._wait)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind("\0" + where[1:] if where.startswith("@") else where)
        listener.listen(64)
        self.server.serve(listener)
        self.thread = threading.Thread(target=self.loop.run)
        self.thread.start()

    def in_loop(self, fn):
        """Run ``fn`` in the loop's thread; its result, or its exception raised here."""
        done, result = threading.Event(), {}

        def run():
            try:
                result["value"] = fn()
            except Exception as e:
                result["error"] = e
            finally:
                done.set()

        self.loop.call_soon(run)
        assert done.wait(10)
        if "error" in result:
            raise result["error"]
        return result["value"]

    def wait_for_pending(self, count):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.pending) >= count, 10), self.pending

    def stop(self):
        self.loop.call_soon(self.server.close)
        self.loop.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()

    def _closed(self):
        self.closed_connections += 1

    def _kill(self, request, ctx):
        raise Error.of(Code.NOT_FOUND, f"process does not exist {request.id}")

    def _pids(self, request, ctx):
        raise RuntimeError(f"pids of {request.id} broke")

    def _wait(self, request, ctx):
        pending = Pending()
        with self.arrived:
            self.pending[request.exec_id] = pending
            self.arrived.notify_all()
        return pending


@pytest.fixture
def served(tmp_path):
    served = Served(str(tmp_path / "shim.sock"))
    yield served
    served.stop()


def raw_connection(served):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(served.address.removeprefix("unix://"))
    sock.settimeout(10)
    return sock


def read_frame(sock, reader):
    """The next frame on ``sock``, whole."""
    while True:
        data = sock.recv(65536)
        assert data, "connection closed"
        frames = reader.feed(data)
        if frames:
            assert len(frames) == 1, frames
            return frames[0]


# --- frames ------------------------------------------------------------------------------------

def test_frame_header_layout():
    assert frame(3, REQUEST, b"abc") == b"\x00\x00\x00\x03\x00\x00\x00\x03\x01\x00abc"
    assert frame(0x01020304, RESPONSE, b"") == b"\x00\x00\x00\x00\x01\x02\x03\x04\x02\x00"


def test_frame_reader_takes_any_split():
    """Frames come out whole however the stream is cut, an oversized one as its header only
    (its payload skipped as it streams by), and what follows it intact."""
    payloads = [b"", b"a", b"x" * 70000, bytes(range(256))]
    stream = b"".join(frame(2 * i + 1, REQUEST, p) for i, p in enumerate(payloads))
    small = len(stream)
    big = MESSAGE_LENGTH_MAX + 1
    stream += big.to_bytes(4, "big") + (99).to_bytes(4, "big") + b"\x01\x00" + b"z" * big
    stream += frame(101, RESPONSE, b"after")
    expected = [(2 * i + 1, REQUEST, len(p), p) for i, p in enumerate(payloads)]
    expected += [(99, REQUEST, big, None), (101, RESPONSE, 5, b"after")]
    rng = random.Random(7)
    for sizes in ([1] * (small + 30),  # byte by byte into the oversized frame's payload
                  [rng.randrange(1, 9) for _ in range(small // 4)],
                  [rng.randrange(1, 300000) for _ in range(50)]):
        reader, got, pos = FrameReader(), [], 0
        for size in sizes + [65536] * (len(stream) // 65536 + 1):  # the rest in big reads
            got += reader.feed(stream[pos:pos + size])
            pos += size
        assert got == expected
        assert len(reader._buffer) == 0


# --- calls -------------------------------------------------------------------------------------

def test_call_and_stream_ids(served):
    """Stream ids: odd, from 1, up by 2 per call (the server's ctx sees them)."""
    with Client(served.address) as client:
        ids = [client.call(TASK, "Connect", ConnectRequest(id="c"), ConnectResponse).shim_pid for _ in range(4)]
        assert ids == [1, 3, 5, 7]
        assert client.call(TASK, "State", StateRequest(id="c1"), StateResponse).id == "c1"
    with Client(served.address.removeprefix("unix://")) as client:  # a plain path: a new connection starts at 1
        assert client.call(TASK, "Connect", ConnectRequest(id="c"), ConnectResponse).shim_pid == 1


def test_metadata_namespace_and_deadline(served):
    with Client(served.address) as client:
        reply = client.call(TASK, "Connect", ConnectRequest(id="c"), ConnectResponse, timeout=30,
                            metadata={NAMESPACE_KEY: "ns1", "other": ["a", "b"]})
        namespace, metadata, has_deadline = json.loads(reply.version)
        assert (namespace, has_deadline) == ("ns1", True)
        assert metadata == {NAMESPACE_KEY: ["ns1"], "other": ["a", "b"]}
        reply = client.call(TASK, "Connect", ConnectRequest(id="c"), ConnectResponse)
        assert json.loads(reply.version) == ["", {}, False]


def test_status_errors_reach_the_caller(served, capfd):
    with Client(served.address) as client:
        with pytest.raises(Error) as raised:
            client.call(TASK, "Kill", KillRequest(id="c9"), Empty)
        assert (raised.value.code, str(raised.value)) == (Code.NOT_FOUND, "process does not exist c9: not found")
        with pytest.raises(Error) as raised:
            client.call(TASK, "Pids", protocol.message("containerd.task.v2.PidsRequest")(id="c9"), Empty)
        assert (raised.value.code, raised.value.message) == (Code.UNKNOWN, "pids of c9 broke")
        err = capfd.readouterr().err
        assert f"ttrpc: {TASK}/Pids failed:\nTraceback" in err and "RuntimeError: pids of c9 broke" in err
        # the connection serves on after errors
        assert client.call(TASK, "State", StateRequest(id="c1"), StateResponse).id == "c1"


def test_unknown_service_or_method_is_unimplemented(served):
    """ttrpc's words: "service X", "method Y" (test_containerds_ttrpc_server checks them)."""
    with Client(served.address) as client:
        with pytest.raises(Error) as raised:
            client.call("containerd.task.v3.Task", "State", StateRequest(), StateResponse)
        assert (raised.value.code, raised.value.message) == (Code.UNIMPLEMENTED, "service containerd.task.v3.Task")
        with pytest.raises(Error) as raised:
            client.call(TASK, "Stats", StateRequest(), StateResponse)
        assert (raised.value.code, raised.value.message) == (Code.UNIMPLEMENTED, "method Stats")


def test_many_threads_pending_answered_out_of_order(served):
    """50 threads call Wait at once over one client; the server holds every call (Pending) and
    answers them in a shuffled order; each caller gets its own answer."""
    count = 50
    results = {}
    with Client(served.address) as client:
        def wait(i):
            results[i] = client.call(TASK, "Wait", WaitRequest(id="c", exec_id=str(i)), WaitResponse).exit_status

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        served.wait_for_pending(count)
        order = list(range(count))
        random.Random(3).shuffle(order)
        for i in order:
            served.loop.call_soon(lambda i=i: served.pending[str(i)].resolve(WaitResponse(exit_status=i + 100)))
        for thread in threads:
            thread.join(10)
        assert results == {i: i + 100 for i in range(count)}


def test_pending_fail_and_resolve_before_attach(served):
    """A Pending failed with an Error or another exception; one resolved by its own handler
    before it returned is sent all the same."""
    served.in_loop(lambda: served.server.register(
        TASK, "Start", protocol.message("containerd.task.v2.StartRequest"),
        lambda req, ctx: _resolved(protocol.message("containerd.task.v2.StartResponse")(pid=7))))
    with Client(served.address) as client:
        results = {}

        def wait(name):
            try:
                client.call(TASK, "Wait", WaitRequest(id="c", exec_id=name), WaitResponse)
            except Error as e:
                results[name] = (e.code, e.message)

        threads = [threading.Thread(target=wait, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        served.wait_for_pending(2)
        served.loop.call_soon(lambda: served.pending["a"].fail(Error.of(Code.FAILED_PRECONDITION, "not started")))
        served.loop.call_soon(lambda: served.pending["b"].fail(OSError("disk gone")))
        for thread in threads:
            thread.join(10)
        assert results == {"a": (Code.FAILED_PRECONDITION, "not started: failed precondition"),
                           "b": (Code.UNKNOWN, "disk gone")}
        start = client.call(TASK, "Start", protocol.message("containerd.task.v2.StartRequest")(id="c"),
                            protocol.message("containerd.task.v2.StartResponse"))
        assert start.pid == 7
        with pytest.raises(RuntimeError, match="given twice"):
            served.in_loop(lambda: served.pending["a"].resolve(WaitResponse()))


def _resolved(message):
    pending = Pending()
    pending.resolve(message)
    return pending


def test_client_timeout(served):
    """The caller stops waiting at its timeout (the server saw the deadline); the late
    response is dropped and the client goes on."""
    with Client(served.address) as client:
        start = time.monotonic()
        with pytest.raises(Error) as raised:
            client.call(TASK, "Wait", WaitRequest(id="c", exec_id="late"), WaitResponse, timeout=0.2)
        assert raised.value.code == Code.DEADLINE_EXCEEDED
        assert 0.19 <= time.monotonic() - start < 5
        served.wait_for_pending(1)
        served.in_loop(lambda: served.pending["late"].resolve(WaitResponse(exit_status=1)))
        assert client.call(TASK, "State", StateRequest(id="next"), StateResponse).id == "next"


# --- what ttrpc refuses ------------------------------------------------------------------------

def test_oversized_messages(served):
    """Over 4 MiB: the client refuses to send one; the server answers one it receives with
    RESOURCE_EXHAUSTED on its stream (and reads on), and sends RESOURCE_EXHAUSTED instead of
    a response over the limit."""
    with Client(served.address) as client:
        with pytest.raises(Error) as raised:
            client.call(TASK, "State", StateRequest(id="x" * MESSAGE_LENGTH_MAX), StateResponse)
        assert raised.value.code == Code.RESOURCE_EXHAUSTED
        assert client.call(TASK, "State", StateRequest(id="fits", exec_id=str(MESSAGE_LENGTH_MAX - 100)),
                           StateResponse).id == "fits"
        with pytest.raises(Error) as raised:
            client.call(TASK, "State", StateRequest(id="c", exec_id=str(MESSAGE_LENGTH_MAX)), StateResponse)
        assert raised.value.code == Code.RESOURCE_EXHAUSTED
        assert "exceed maximum message size of 4194304" in raised.value.message
    with raw_connection(served) as sock:
        reader = FrameReader()
        big = MESSAGE_LENGTH_MAX + 10
        sock.sendall(big.to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x00" + b"\0" * big)
        stream_id, kind, _, payload = read_frame(sock, reader)
        status = Response.FromString(payload).status
        assert (stream_id, kind, status.code, status.message) == (5, RESPONSE, Code.RESOURCE_EXHAUSTED,
                                                                  oversized(big).message)
        sock.sendall(frame(7, REQUEST, Request(service=TASK, method="State",
                                               payload=StateRequest(id="after").SerializeToString()).SerializeToString()))
        stream_id, _, _, payload = read_frame(sock, reader)
        assert (stream_id, StateResponse.FromString(Response.FromString(payload).payload).id) == (7, "after")


def test_bad_requests(served):
    """An even stream id, a request that doesn't parse, a payload that doesn't: each answered
    with ttrpc's status on its stream; a frame of another type is ignored."""
    with raw_connection(served) as sock:
        reader = FrameReader()
        state = Request(service=TASK, method="State", payload=StateRequest(id="a").SerializeToString())
        sock.sendall(frame(2, REQUEST, state.SerializeToString()))
        stream_id, _, _, payload = read_frame(sock, reader)
        status = Response.FromString(payload).status
        assert (stream_id, status.code, status.message) == (
            2, Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams")
        sock.sendall(frame(3, REQUEST, b"\xff\xff\xff"))
        stream_id, _, _, payload = read_frame(sock, reader)
        status = Response.FromString(payload).status
        assert (stream_id, status.code) == (3, Code.INVALID_ARGUMENT)
        assert status.message.startswith("unmarshal request error: ")
        bad_payload = Request(service=TASK, method="State", payload=b"\xff\xff\xff")
        sock.sendall(frame(9, RESPONSE, b"ignored") + frame(5, REQUEST, bad_payload.SerializeToString()))
        stream_id, _, _, payload = read_frame(sock, reader)
        status = Response.FromString(payload).status
        assert (stream_id, status.code) == (5, Code.INTERNAL)
        assert status.message.startswith("ttrpc: error unmarshalling payload: ")


def test_another_user_is_refused(capfd):
    """As containerd's shims: a peer of another uid/gid is disconnected unanswered. (An
    abstract socket: no file permissions in the way of the other user.)"""
    served = Served(f"@ociruntime-ttrpc-test-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        code = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0' + sys.argv[1][1:])\n"
                "try:\n    s.sendall(bytes.fromhex(sys.argv[2]))\n    print(repr(s.recv(100)))\n"
                "except OSError as e:\n    print(type(e).__name__)\n")
        request = Request(service=TASK, method="State", payload=StateRequest(id="a").SerializeToString())
        proc = subprocess.run(["/usr/bin/python3", "-I", "-c", code, served.address,
                               frame(1, REQUEST, request.SerializeToString()).hex()],
                              user=65534, group=65534, capture_output=True, text=True, timeout=30)
        assert proc.stdout.strip() in ("b''", "BrokenPipeError", "ConnectionResetError"), proc
        assert "refused a connection from pid" in capfd.readouterr().err
        with Client(served.address) as client:  # this user is served
            assert client.call(TASK, "State", StateRequest(id="me"), StateResponse).id == "me"
    finally:
        served.stop()


# --- dropped connections -----------------------------------------------------------------------

def test_a_dropped_connection_fails_every_pending_call(served):
    results = []
    client = Client(served.address)

    def wait(i):
        try:
            client.call(TASK, "Wait", WaitRequest(id="c", exec_id=str(i)), WaitResponse)
        except Exception as e:
            results.append(e)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    served.wait_for_pending(10)
    served.in_loop(served.server.close)  # the shim going away
    for thread in threads:
        thread.join(10)
    assert len(results) == 10
    for e in results:
        assert isinstance(e, ConnectionClosed) and e.code == Code.UNAVAILABLE
        assert str(e) == f"ttrpc: connection to {served.address} closed by the server"
    with pytest.raises(ConnectionClosed):
        client.call(TASK, "State", StateRequest(id="c"), StateResponse)
    client.close()
    # the Pendings resolved now go nowhere, harmlessly
    served.in_loop(lambda: [p.resolve(WaitResponse()) for p in served.pending.values()])


def test_closing_the_client_fails_its_calls_and_the_server_sees_it_go(served):
    client = Client(served.address)
    failed = []
    thread = threading.Thread(target=lambda: failed.append(_raises(
        lambda: client.call(TASK, "Wait", WaitRequest(id="c", exec_id="w"), WaitResponse))))
    thread.start()
    served.wait_for_pending(1)
    client.close()
    thread.join(10)
    assert isinstance(failed[0], ConnectionClosed)
    assert str(failed[0]) == f"ttrpc: connection to {served.address} closed by this client"
    deadline = time.monotonic() + 10
    while served.in_loop(lambda: len(served.server.connections)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.in_loop(lambda: (len(served.server.connections), served.closed_connections)) == (0, 1)


def _raises(fn):
    try:
        fn()
    except Exception as e:
        return e
    raise AssertionError(f"{fn} raised nothing")


def test_abstract_socket_address():
    served = Served(f"@ociruntime-ttrpc-test-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with Client(served.address) as client:
            assert client.call(TASK, "State", StateRequest(id="abstract"), StateResponse).id == "abstract"
    finally:
        served.stop()
    with pytest.raises(ValueError, match="unix sockets only"):
        Client("vsock://3:1024")


def test_nobody_listening(tmp_path):
    with pytest.raises(ConnectionClosed) as raised:
        Client(f"unix://{tmp_path}/none.sock")
    assert str(raised.value) == f"ttrpc: cannot connect to unix://{tmp_path}/none.sock: No such file or directory"


def test_import_is_lean():
    """protocol and ttrpc import protobuf and the stdlib's small modules only: no asyncio,
    json, logging, descriptor_pb2 (protocol splits the descriptor set itself)."""
    code = ("import sys\nimport ociruntime_shim.ttrpc, ociruntime_shim.loop\n"
            "print(' '.join(sorted(sys.modules)))")
    proc = launcher_python(code)
    assert proc.returncode == 0, proc.stderr
    modules = set(proc.stdout.split())
    assert "ociruntime_shim.protocol" in modules
    heavy = {"asyncio", "json", "logging", "google.protobuf.descriptor_pb2", "grpc", "subprocess"}
    assert modules & heavy == set()


# --- a real containerd -------------------------------------------------------------------------

CONTAINERD = "/usr/bin/containerd"
Envelope = protocol.message("containerd.services.events.ttrpc.v1.Envelope")
ForwardRequest = protocol.message("containerd.services.events.ttrpc.v1.ForwardRequest")
EVENTS = "containerd.services.events.ttrpc.v1.Events"


@pytest.fixture
def containerd(tmp_path):
    """A private containerd: its own root, state, gRPC and ttrpc sockets; no CRI, no snapshotters
    this machine lacks. Yields (ttrpc address, ctr argv prefix, unique namespace)."""
    if not (os.path.exists(CONTAINERD) and shutil.which("ctr")):
        pytest.fail("containerd and ctr are needed (Debian's containerd, which docker.io brings)")
    base = tmp_path / "containerd"
    base.mkdir()
    (base / "config.toml").write_text(
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", '
        '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", '
        '"io.containerd.snapshotter.v1.aufs"]\n'
        f'[grpc]\n  address = "{base}/containerd.sock"\n[ttrpc]\n  address = "{base}/containerd.sock.ttrpc"\n')
    namespace = f"ocirt-ttrpc-{os.urandom(4).hex()}"
    ctr = ["ctr", "--address", f"{base}/containerd.sock", "-n", namespace]
    with open(base / "containerd.log", "w") as log:
        daemon = subprocess.Popen([CONTAINERD, "--config", base / "config.toml"], stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (base / "containerd.log").read_text()
            time.sleep(0.1)
        yield f"{base}/containerd.sock.ttrpc", ctr, namespace
    finally:
        stop_daemon(daemon, 30)


@pytest.mark.root
def test_an_event_forwarded_as_a_shim_does_reaches_ctr_events(containerd, tmp_path):
    """A TaskOOM in an envelope (namespace, topic, our timestamp, Any with containerd's
    type_url) through Events/Forward on containerd's ttrpc socket: `ctr events` prints it
    with that timestamp and the event decoded (containerd found the type by its URL)."""
    address, ctr, namespace = containerd
    container_id = f"oom-{os.urandom(4).hex()}"
    when = datetime.datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=datetime.UTC)
    envelope = Envelope(namespace=namespace, topic="/tasks/oom",
                        event=protocol.pack_any(protocol.message("containerd.events.TaskOOM")(
                            container_id=container_id)))
    envelope.timestamp.FromDatetime(when)
    with open(tmp_path / "events.out", "w+") as out:
        events = subprocess.Popen([*ctr, "events"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            with Client(f"unix://{address}") as client:
                # ctr events tells nobody when it has subscribed: publish until it shows one
                deadline, seen = time.monotonic() + 20, []
                while not seen and time.monotonic() < deadline:
                    reply = client.call(EVENTS, "Forward", ForwardRequest(envelope=envelope), Empty, timeout=10,
                                        metadata={NAMESPACE_KEY: namespace})
                    assert reply == Empty()
                    time.sleep(0.2)
                    out.seek(0)
                    seen = [line for line in out.read().splitlines() if container_id in line]
        finally:
            events.terminate()
            events.wait(10)
    assert seen, (tmp_path / "events.out").read_text()
    assert seen[0] == (f"2001-02-03 04:05:06.789 +0000 UTC {namespace} /tasks/oom "
                       f'{{"container_id":"{container_id}"}}')


@pytest.mark.root
def test_containerds_ttrpc_server(containerd):
    """containerd's own ttrpc server (v1.1.1) answers as ours does: a refused envelope with
    its errdefs text, UNIMPLEMENTED's words, an oversized frame's RESOURCE_EXHAUSTED."""
    address, _, namespace = containerd
    with Client(address) as client:
        envelope = Envelope(namespace=namespace, topic="no-slash", event=protocol.pack_any(
            protocol.message("containerd.events.TaskOOM")(container_id="x")))
        envelope.timestamp.GetCurrentTime()
        with pytest.raises(Error) as raised:
            client.call(EVENTS, "Forward", ForwardRequest(envelope=envelope), Empty)
        assert (raised.value.code, raised.value.message) == (
            Code.INVALID_ARGUMENT, "envelope topic \"no-slash\": must start with '/': invalid argument")
        envelope.topic = "/tasks/oom"
        envelope.ClearField("timestamp")  # (one of 0 s would be 1970 to Go, not "unset")
        with pytest.raises(Error) as raised:
            client.call(EVENTS, "Forward", ForwardRequest(envelope=envelope), Empty)
        assert raised.value.code == Code.INVALID_ARGUMENT and "timestamp must be set" in raised.value.message
        with pytest.raises(Error) as raised:
            client.call(EVENTS, "Nope", ForwardRequest(), Empty)
        assert (raised.value.code, raised.value.message) == (Code.UNIMPLEMENTED, "method Nope")
        with pytest.raises(Error) as raised:
            client.call("containerd.nope.v1.Nope", "Forward", ForwardRequest(), Empty)
        assert (raised.value.code, raised.value.message) == (Code.UNIMPLEMENTED, "service containerd.nope.v1.Nope")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.connect(address)
        sock.settimeout(10)
        big = MESSAGE_LENGTH_MAX + 10
        sock.sendall(big.to_bytes(4, "big") + (5).to_bytes(4, "big") + b"\x01\x00" + b"\0" * big)
        reader, frames = FrameReader(), []
        while not frames:
            data = sock.recv(65536)
            assert data, "containerd closed the connection"
            frames = reader.feed(data)
        stream_id, kind, _, payload = frames[0]
        status = Response.FromString(payload).status
        assert (stream_id, kind, status.code, status.message) == (5, RESPONSE, Code.RESOURCE_EXHAUSTED,
                                                                  oversized(big).message)
