"""containerd's messages as protobuf classes, and its way of packing them into Any.

The classes come from ``proto/descriptors.binpb`` (compiled by ``proto/build.py``), loaded
once, as this module is imported, into protobuf's default descriptor pool: the one the
runtime's own well-known types live in, so a Timestamp or Any of ours is the class
``timestamp_pb2.Timestamp`` or ``any_pb2.Any`` is, with their helpers (``GetCurrentTime``,
``FromDatetime``) and assignable from them.

containerd 1.6 (its typeurl package, v1.0.2) writes an Any's type_url as the message's full
name alone — "containerd.events.TaskExit", "containerd.runc.v1.Options",
"io.containerd.cgroups.v1.Metrics" — and looks the name up as it stands: the
"type.googleapis.com/" prefix that ``Any.Pack`` writes would not be found there. Types
that aren't protobuf messages (runtime-spec structs) it registers under a URL of its own
and sends as JSON: see ``JSON_TYPES``.
"""

import os

from google.protobuf import any_pb2, descriptor_pool, empty_pb2, message_factory, timestamp_pb2

from ociruntime import protowire as wire

DESCRIPTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proto", "descriptors.binpb")

# The runtime-spec types containerd registers for Any as JSON (runtime/typeurl.go): an exec's
# process (ExecProcessRequest.spec) and an update's resources (UpdateTaskRequest.resources).
_SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/"
PROCESS = _SPEC_URL + "Process"
LINUX_RESOURCES = _SPEC_URL + "LinuxResources"
JSON_TYPES = frozenset({_SPEC_URL + "Spec", PROCESS, LINUX_RESOURCES, _SPEC_URL + "WindowsResources"})

# Imported so that the default pool holds the well-known files our set depends on before it
# is added: ours (from whichever protoc built the set) are then skipped, not added twice.
Any, Empty, Timestamp = any_pb2.Any, empty_pb2.Empty, timestamp_pb2.Timestamp

_pool = descriptor_pool.Default()
_classes = {}


def message(name):
    """The class of the message whose full name is ``name``, e.g.
    ``message("containerd.task.v2.CreateTaskRequest")``; KeyError if there is none."""
    cls = _classes.get(name)
    if cls is None:
        cls = _classes[name] = message_factory.GetMessageClass(_pool.FindMessageTypeByName(name))
    return cls


def pack_any(msg):
    """``msg`` in an Any, as containerd packs it: type_url the bare full name."""
    return Any(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def pack_json(type_url, value):
    """``value`` (a dict or list) in an Any as JSON, for a type of ``JSON_TYPES``: what ctr
    sends as an exec's process spec."""
    import json

    return Any(type_url=type_url, value=json.dumps(value, separators=(",", ":")).encode())


def unpack_any(any_msg):
    """The value in an Any: a message, or for a type of ``JSON_TYPES`` the decoded JSON.
    A "type.googleapis.com/"-style prefix is accepted too (``Any.Pack`` writes one).
    ValueError names a type_url that is neither."""
    url = any_msg.type_url
    if url in JSON_TYPES:
        import json

        return json.loads(any_msg.value)
    name = url.rpartition("/")[2]
    try:
        cls = message(name)
    except KeyError:
        raise ValueError(f"Any of unknown type {url!r}") from None
    return cls.FromString(any_msg.value)


def _load(path):
    """Add the set's files to the pool, but for those it holds already (the well-known types)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImportError(f"{path} is missing: shim/proto/build.py compiles it (setup.py and tests/devbuild.py "
                          "run it)") from None
    for number, serialized in wire.fields(data):  # a FileDescriptorSet holds its files as field 1
        if number != 1:
            raise ValueError(f"{path}: not a FileDescriptorSet (field {number})")
        name = next(v for n, v in wire.fields(serialized) if n == 1).decode()  # FileDescriptorProto.name
        try:
            _pool.FindFileByName(name)
        except KeyError:
            _pool.AddSerializedFile(serialized)


_load(DESCRIPTORS)
