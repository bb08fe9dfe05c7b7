"""The shim's messages (shim/proto, loaded by ociruntime_shim.protocol) are containerd 1.6's:
names, field numbers and wire bytes as Go's code writes them; Any packed as containerd's
typeurl packs it; the well-known types are protobuf's own classes."""

import datetime
import os
import subprocess
import sys

import pytest
from google.protobuf import any_pb2, empty_pb2, timestamp_pb2
from ociruntime_shim import protocol

from ociruntime import protowire

TASK_METHODS = {  # runtime/v2/task/shim.proto's service Task
    "State": ("StateRequest", "StateResponse"),
    "Create": ("CreateTaskRequest", "CreateTaskResponse"),
    "Start": ("StartRequest", "StartResponse"),
    "Delete": ("DeleteRequest", "DeleteResponse"),
    "Pids": ("PidsRequest", "PidsResponse"),
    "Pause": ("PauseRequest", "google.protobuf.Empty"),
    "Resume": ("ResumeRequest", "google.protobuf.Empty"),
    "Checkpoint": ("CheckpointTaskRequest", "google.protobuf.Empty"),
    "Kill": ("KillRequest", "google.protobuf.Empty"),
    "Exec": ("ExecProcessRequest", "google.protobuf.Empty"),
    "ResizePty": ("ResizePtyRequest", "google.protobuf.Empty"),
    "CloseIO": ("CloseIORequest", "google.protobuf.Empty"),
    "Update": ("UpdateTaskRequest", "google.protobuf.Empty"),
    "Wait": ("WaitRequest", "WaitResponse"),
    "Stats": ("StatsRequest", "StatsResponse"),
    "Connect": ("ConnectRequest", "ConnectResponse"),
    "Shutdown": ("ShutdownRequest", "google.protobuf.Empty"),
}


def test_task_service_has_every_method_with_its_messages():
    service = protocol.message("containerd.task.v2.StateRequest").DESCRIPTOR.file.services_by_name["Task"]
    assert service.full_name == "containerd.task.v2.Task"
    found = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in service.methods}
    assert found == {name: tuple(t if "." in t else f"containerd.task.v2.{t}" for t in types)
                     for name, types in TASK_METHODS.items()}


@pytest.mark.parametrize("name, fields", [
    ("ttrpc.Request", {"service": 1, "method": 2, "payload": 3, "timeout_nano": 4, "metadata": 5}),
    ("ttrpc.Response", {"status": 1, "payload": 2}),
    ("google.rpc.Status", {"code": 1, "message": 2, "details": 3}),
    ("containerd.types.Mount", {"type": 1, "source": 2, "target": 3, "options": 4}),
    ("containerd.v1.types.ProcessInfo", {"pid": 1, "info": 2}),
    ("containerd.task.v2.CreateTaskRequest", {"id": 1, "bundle": 2, "rootfs": 3, "terminal": 4, "stdin": 5,
                                              "stdout": 6, "stderr": 7, "checkpoint": 8, "parent_checkpoint": 9,
                                              "options": 10}),
    ("containerd.task.v2.StateResponse", {"id": 1, "bundle": 2, "pid": 3, "status": 4, "stdin": 5, "stdout": 6,
                                          "stderr": 7, "terminal": 8, "exit_status": 9, "exited_at": 10,
                                          "exec_id": 11}),
    ("containerd.task.v2.UpdateTaskRequest", {"id": 1, "resources": 2, "annotations": 3}),
    ("containerd.events.TaskExit", {"container_id": 1, "id": 2, "pid": 3, "exit_status": 4, "exited_at": 5}),
    ("containerd.events.TaskCreate", {"container_id": 1, "bundle": 2, "rootfs": 3, "io": 4, "checkpoint": 5,
                                      "pid": 6}),
    ("containerd.services.events.ttrpc.v1.Envelope", {"timestamp": 1, "namespace": 2, "topic": 3, "event": 4}),
    ("containerd.runc.v1.Options", {"no_pivot_root": 1, "no_new_keyring": 2, "shim_cgroup": 3, "io_uid": 4,
                                    "io_gid": 5, "binary_name": 6, "root": 7, "criu_path": 8, "systemd_cgroup": 9,
                                    "criu_image_path": 10, "criu_work_path": 11}),
    ("io.containerd.cgroups.v1.Metrics", {"hugetlb": 1, "pids": 2, "cpu": 3, "memory": 4, "blkio": 5, "rdma": 6,
                                          "network": 7, "cgroup_stats": 8, "memory_oom_control": 9}),
    ("io.containerd.cgroups.v2.Metrics", {"pids": 1, "cpu": 2, "memory": 4, "rdma": 5, "io": 6, "hugetlb": 7,
                                          "memory_events": 8}),
])
def test_field_numbers_are_containerds(name, fields):
    descriptor = protocol.message(name).DESCRIPTOR
    assert {f.name: f.number for f in descriptor.fields} == fields


def test_every_task_event_and_the_status_enum():
    for event in ("TaskCreate", "TaskStart", "TaskDelete", "TaskIO", "TaskExit", "TaskOOM", "TaskExecAdded",
                  "TaskExecStarted", "TaskPaused", "TaskResumed", "TaskCheckpointed"):
        assert protocol.message(f"containerd.events.{event}").DESCRIPTOR.full_name == f"containerd.events.{event}"
    status = protocol.message("containerd.task.v2.StateResponse").DESCRIPTOR.fields_by_name["status"].enum_type
    assert status.full_name == "containerd.v1.types.Status"
    assert [(v.name, v.number) for v in status.values] == [
        ("UNKNOWN", 0), ("CREATED", 1), ("RUNNING", 2), ("STOPPED", 3), ("PAUSED", 4), ("PAUSING", 5)]
    # the cgroup metrics' sub-messages, to the last field of the deepest
    v1 = protocol.message("io.containerd.cgroups.v1.Metrics")()
    v1.memory.kernel_tcp.failcnt = 1
    v1.blkio.sectors_recursive.add(op="Read", value=2)
    v1.cpu.usage.per_cpu.extend([3, 4])
    v2 = protocol.message("io.containerd.cgroups.v2.Metrics")()
    v2.memory.swap_limit = 5
    v2.io.usage.add(major=8, rbytes=6)
    v2.memory_events.oom_kill = 7
    assert protocol.unpack_any(protocol.pack_any(v1)) == v1
    assert protocol.unpack_any(protocol.pack_any(v2)) == v2


def test_wire_bytes_are_gos():
    """Bytes as gogoproto writes them: ctr's runc options, a Delete request."""
    options = protocol.message("containerd.runc.v1.Options")(binary_name="/usr/bin/ociruntime", root="/r")
    assert options.SerializeToString() == b"\x32\x13/usr/bin/ociruntime\x3a\x02/r"
    delete = protocol.message("containerd.task.v2.DeleteRequest").FromString(b"\x0a\x02c1\x12\x02e1")
    assert (delete.id, delete.exec_id) == ("c1", "e1")


def test_any_type_urls_are_containerds():
    """typeurl v1.0.2: a message's bare full name, read back as it stands."""
    exit_event = protocol.message("containerd.events.TaskExit")(container_id="c1", pid=42, exit_status=3)
    packed = protocol.pack_any(exit_event)
    assert isinstance(packed, any_pb2.Any)
    assert packed.type_url == "containerd.events.TaskExit"
    assert protocol.unpack_any(packed) == exit_event
    metrics = protocol.message("io.containerd.cgroups.v1.Metrics")()
    metrics.pids.current = 2
    assert protocol.pack_any(metrics).type_url == "io.containerd.cgroups.v1.Metrics"
    options = protocol.message("containerd.runc.v1.Options")(binary_name="/bin/x")
    assert protocol.pack_any(options).type_url == "containerd.runc.v1.Options"
    # what Any.Pack writes, with its prefix, is read too
    prefixed = any_pb2.Any()
    prefixed.Pack(options)
    assert prefixed.type_url == "type.googleapis.com/containerd.runc.v1.Options"
    assert protocol.unpack_any(prefixed) == options


def test_runtime_spec_types_are_json():
    """ctr exec sends the process as JSON under containerd's own URL for it."""
    process = {"args": ["sh", "-c", "true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "terminal": False}
    packed = protocol.pack_json(protocol.PROCESS, process)
    assert packed.type_url == "types.containerd.io/opencontainers/runtime-spec/1/Process"
    assert protocol.unpack_any(packed) == process
    go_written = any_pb2.Any(type_url=protocol.LINUX_RESOURCES, value=b'{"pids":{"limit":10}}')
    assert protocol.unpack_any(go_written) == {"pids": {"limit": 10}}
    request = protocol.message("containerd.task.v2.ExecProcessRequest")(id="c", exec_id="e", spec=packed)
    request = type(request).FromString(request.SerializeToString())
    assert protocol.unpack_any(request.spec) == process


def test_unknown_any_type_is_refused_by_name():
    with pytest.raises(ValueError, match="'example.com/Nope'"):
        protocol.unpack_any(any_pb2.Any(type_url="example.com/Nope", value=b""))


def test_well_known_types_are_protobufs_own():
    wait = protocol.message("containerd.task.v2.WaitResponse")
    assert protocol.message("google.protobuf.Empty") is empty_pb2.Empty
    assert protocol.message("google.protobuf.Any") is any_pb2.Any
    when = timestamp_pb2.Timestamp(seconds=981173106, nanos=789)
    response = wait(exit_status=1, exited_at=when)  # protobuf's Timestamp is ours
    assert isinstance(response.exited_at, timestamp_pb2.Timestamp)
    assert response.exited_at.ToDatetime(datetime.UTC) == datetime.datetime(2001, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    response.exited_at.FromNanoseconds(5)
    assert wait.FromString(response.SerializeToString()).exited_at.ToNanoseconds() == 5


def test_unknown_message_is_a_key_error():
    with pytest.raises(KeyError):
        protocol.message("containerd.task.v2.Nope")


def test_a_missing_descriptor_set_is_named(tmp_path):
    """An install without the compiled set fails its import with the file's name and the cure."""
    (tmp_path / "ociruntime_shim" / "proto").mkdir(parents=True)
    shim = protocol.__file__.rsplit("/", 1)[0]
    for name in ("__init__.py", "protocol.py"):
        (tmp_path / "ociruntime_shim" / name).write_text(open(f"{shim}/{name}").read())
    checkout = os.path.dirname(os.path.dirname(protowire.__file__))  # the ociruntime it imports: this one
    code = f"import sys\nsys.path[:0] = [{str(tmp_path)!r}, {checkout!r}]\nimport ociruntime_shim.protocol"
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{tmp_path}/ociruntime_shim/proto/descriptors.binpb is missing" in proc.stderr.splitlines()[-1]


def test_the_hand_reader_reads_what_protobuf_writes():
    """ociruntime/protowire.py, for start's options without protobuf: protobuf's own bytes are its oracle."""
    wire = protowire

    opts = protocol.message("containerd.runc.v1.Options")(
        no_pivot_root=True, shim_cgroup="/shims/é", io_uid=2**32 - 1, io_gid=1000, root="/run/x", systemd_cgroup=True)
    assert list(wire.fields(opts.SerializeToString())) == [
        (1, 1), (3, "/shims/é".encode()), (4, 2**32 - 1), (5, 1000), (7, b"/run/x"), (9, 1)]
    metrics = protocol.message("io.containerd.cgroups.v1.Metrics")(hugetlb=[{"max": 1, "pagesize": "2M"}])
    stamp = protocol.Timestamp(seconds=-1, nanos=5)  # a negative varint takes ten bytes
    assert list(wire.fields(stamp.SerializeToString())) == [(1, 2**64 - 1), (2, 5)]
    (number, hugetlb), = wire.fields(metrics.SerializeToString())
    assert number == 1 and dict(wire.fields(hugetlb)) == {2: 1, 4: b"2M"}
    for broken in (b"\x0a\x05abc", b"\x08\x80", b"\x0b"):  # past the end, an unended varint, a group
        with pytest.raises(ValueError):
            list(wire.fields(broken))
