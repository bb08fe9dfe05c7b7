"""The systemd driver's D-Bus client without systemd (no root, no bus): the property
lists ociruntime/systemd.py computes go through native/sdbus.c's marshalling into a real
sd-bus message, read back here; and the failures a host without the bus or without
libsystemd gets. tests/test_systemd_cgroup.py drives it against systemd (the qemu lane's
systemd guest)."""

import ast
import os
import subprocess
import sys

import pytest
from ociruntime._native import ffi, lib

from ociruntime import systemd, systemd_bus
from ociruntime.errors import OCIError

INFINITY = (1 << 64) - 1


def marshal(properties, unit="x.scope"):
    """StartTransientUnit's arguments as sd-bus reads them back from the sealed message."""
    systemd_bus.load()
    reply = ffi.new("struct oci_sd_reply *")
    props, _keep = systemd_bus._properties(properties, "test")
    out = ffi.new("char[]", 1 << 20)
    status = lib.oci_sd_test_marshal(unit.encode(), props, len(properties), out, 1 << 20, reply)
    assert status == 0, ffi.string(reply.message)
    return ast.literal_eval(ffi.string(out).decode())


def as_read(properties):
    """What reading the message back gives for a [(name, signature, value)] list."""
    def value(signature, v):
        if signature == "ay":
            return list(v)
        if signature == "a(ss)":
            return [tuple(pair) for pair in v]
        if signature == "au":
            return list(v)
        return v

    return [(name, (signature, value(signature, v))) for name, signature, v in properties]


def test_start_unit_message_carries_every_property_as_systemd_computes_them():
    unit = systemd.unit_for("machine.slice:octest:abc", "abc")
    writes = [{"file": "memory.max", "value": str(64 << 20), "version": "v2", "label": "m"},
              {"file": "memory.low", "value": "max", "version": "v2", "label": "m"},
              {"file": "cpu.max", "value": "20000 100000", "version": "v2", "label": "c"},
              {"file": "cpu.weight", "value": "79", "version": "v2", "label": "c"},
              {"file": "cpuset.cpus", "value": "0-2,9", "version": "v2", "label": "c"},
              {"file": "pids.max", "value": "50", "version": "v2", "label": "p"}]
    annotations = {"org.systemd.property.TimeoutStopSec": "uint64 5", "org.systemd.property.CollectMode":
                   "'inactive-or-failed'", "org.systemd.property.CPUQuotaPerSecUSec": "@t 1000"}
    properties = systemd.start_properties(unit, 4242, annotations)
    properties += systemd.resource_properties(writes, [("allow", "c 1:3 rwm"), ("allow", "c 136:* rw")],
                                              lambda: 252)
    signatures = {sig for _, sig, _ in properties}
    assert {"s", "b", "au", "t", "ay", "a(ss)"} <= signatures
    assert marshal(properties, unit.name) == (unit.name, "replace", as_read(properties), [])


@pytest.mark.parametrize("signature, value", [
    ("s", ""), ("s", "it's a \\ \"quote\"\n\ttab, é ✓"),
    ("b", True), ("b", False),
    ("y", 0), ("y", 255), ("n", -32768), ("n", 32767), ("q", 65535),
    ("i", -(1 << 31)), ("i", (1 << 31) - 1), ("u", (1 << 32) - 1),
    ("x", -(1 << 63)), ("x", (1 << 63) - 1), ("t", 0), ("t", INFINITY),
    ("d", 1.5), ("d", -0.000125),
    ("au", []), ("au", [1, (1 << 32) - 1]),
    ("ay", b""), ("ay", b"\x00\xff\x07"),
    ("a(ss)", []), ("a(ss)", [("/dev/null", "rwm"), ("char-pts", "rw")]),
])
def test_each_signature_systemd_uses_survives_the_round_trip(signature, value):
    properties = [("Prop", signature, value)]
    assert marshal(properties) == ("x.scope", "replace", as_read(properties), [])


def test_gvariant_annotations_of_every_type_survive_the_round_trip():
    annotations = {f"org.systemd.property.{name}": text for name, text in (
        ("Aaa", "'x'"), ("Bbb", "true"), ("Ccc", "uint64 5"), ("Ddd", "uint32 5"), ("Eee", "int64 -1"),
        ("Fff", "int32 -5"), ("Ggg", "uint16 7"), ("Hhh", "int16 -7"), ("Iii", "byte 200"), ("Jjj", "double 1.5"),
        ("Kkk", "12"), ("Lll", "0.25"))}
    properties = systemd.annotation_properties(annotations)
    assert {sig for _, sig, _ in properties} == set("sbtuxiqnyd")
    assert marshal(properties) == ("x.scope", "replace", as_read(properties), [])


def test_an_empty_property_list_is_an_empty_array():
    assert marshal([]) == ("x.scope", "replace", [], [])


def test_a_signature_the_client_does_not_marshal_is_refused_by_name():
    with pytest.raises(OCIError, match=r"^update: the unit property Env: D-Bus type 'as' is not supported here$"):
        systemd_bus._properties([("Env", "as", ["A=1"])], "update")
    # C refuses it too, should Python let one through.
    systemd_bus.load()
    props = ffi.new("struct oci_sd_property[]", 1)
    name, signature = ffi.new("char[]", b"Odd"), ffi.new("char[]", b"h")
    props[0].name, props[0].signature = name, signature
    reply = ffi.new("struct oci_sd_reply *")
    out = ffi.new("char[]", 4096)
    assert lib.oci_sd_test_marshal(b"x.scope", props, 1, out, 4096, reply) == -1
    assert ffi.string(reply.message) == b"the unit property Odd (D-Bus type h): Invalid argument"
    assert ffi.string(reply.error) == b""


def test_no_system_bus_is_one_line(monkeypatch):
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system_bus_socket")
    with pytest.raises(OCIError) as e:
        systemd_bus.Bus()
    assert str(e.value) == ("--systemd-cgroup: can't connect to systemd over the system D-Bus: "
                            "No such file or directory")


def _fresh_python(code):
    """``code`` in a new interpreter (the helper loads libsystemd once per process)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_no_libsystemd_is_one_line():
    proc = _fresh_python("from ociruntime import systemd_bus\n"
                         "try:\n    systemd_bus.load('libsystemd-absent.so.0')\n"
                         "except Exception as e:\n    print(e)\n")
    assert proc.stdout == ("--systemd-cgroup: libsystemd-absent.so.0 is missing: libsystemd-absent.so.0: cannot open "
                           "shared object file: No such file or directory (install libsystemd0, or use the "
                           "cgroupfs driver: no --systemd-cgroup)\n"), proc.stderr


def test_a_library_without_sd_bus_is_named():
    proc = _fresh_python("from ociruntime import systemd_bus\n"
                         "try:\n    systemd_bus.load('libc.so.6')\n"
                         "except Exception as e:\n    print(e)\n")
    assert proc.stdout == "--systemd-cgroup: libc.so.6 has no sd_bus_open_system (a libsystemd older than 237?)\n", \
        proc.stderr


def test_the_module_imports_nothing_heavy():
    proc = _fresh_python("import sys\nbefore = set(sys.modules)\nimport ociruntime.systemd_bus\n"
                         "print(sorted(set(sys.modules) - before))")
    loaded = ast.literal_eval(proc.stdout)
    assert not [m for m in loaded if not m.startswith("ociruntime") and m not in ("_cffi_backend",)], loaded
