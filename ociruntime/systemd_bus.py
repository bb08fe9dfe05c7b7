"""Talking to systemd over the system D-Bus: start a transient unit and wait for its job,
set a unit's properties, stop it. The C helper does it with libsystemd's sd-bus
(native/sdbus.c, the contract in native/oci_native.h), loaded only when a command uses
the systemd cgroup driver: this module imports nothing but the helper.

Properties are ``systemd``'s plain [(name, signature, value)] lists.
"""

from ._native import ffi, lib
from .errors import OCIError
from .log import warn

LIBRARY = "libsystemd.so.0"
JOB_TIMEOUT = 30  # seconds, as runc waits for a unit's job (and for each call)
NO_SUCH_UNIT = ("org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.LoadFailed")


def stop_unit(name):
    """Stop a container's unit (delete, a failed create); one gone already is fine."""
    with Bus() as bus:
        if not bus.stop_unit(name, f"systemd unit {name}"):
            warn(f"stopping the systemd unit {name} did not finish cleanly")


def load(library=LIBRARY):
    """libsystemd, into the helper (once per process); a host without it gets one line."""
    reply = ffi.new("struct oci_sd_reply *")
    status = lib.oci_sd_load(library.encode(), reply)
    if status == -1:
        raise OCIError(f"--systemd-cgroup: {library} is missing: {_text(reply.message)} "
                       "(install libsystemd0, or use the cgroupfs driver: no --systemd-cgroup)")
    if status < 0:
        raise OCIError(f"--systemd-cgroup: {_text(reply.message)}")


class Bus:
    """One connection to the system bus."""

    def __init__(self, timeout=JOB_TIMEOUT):
        load()
        self.reply = ffi.new("struct oci_sd_reply *")
        bus = lib.oci_sd_open(timeout, self.reply)
        if bus == ffi.NULL:
            raise OCIError(f"--systemd-cgroup: can't connect to systemd over the system D-Bus: "
                           f"{_text(self.reply.message)}")
        self.bus = bus
        self._version = None

    def close(self):
        if self.bus is not None:
            lib.oci_sd_close(self.bus)
            self.bus = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, status, what):
        """A failed call as a BusError (systemd's error reply) or an OCIError naming ``what``."""
        if status < 0:
            error, message = _text(self.reply.error), _text(self.reply.message)
            if error:
                raise BusError(error, message, what)
            raise OCIError(f"{what}: {message}")
        return _text(self.reply.result)

    def version(self):
        """systemd's version number (its Version property: "252.39-1~deb12u2" → 252); 0 when
        it can't be read."""
        if self._version is None:
            text = _text(self.reply.result) if lib.oci_sd_version(self.bus, self.reply) == 0 else ""
            digits = text.lstrip("v").split(".")[0].split("-")[0]
            self._version = int(digits) if digits.isdigit() else 0
        return self._version

    def start_unit(self, name, properties, what):
        """StartTransientUnit: the unit is up, its processes in its cgroup, when this returns."""
        props, _keep = _properties(properties, what)
        try:
            result = self._check(lib.oci_sd_start_unit(self.bus, name.encode(), props, len(properties), self.reply),
                                 what)
        except BusError as e:
            if e.name == "org.freedesktop.systemd1.UnitExists":
                raise OCIError(f"{what}: systemd unit {name} already exists (another container's?)") from None
            raise
        if result != "done":
            self.reset_failed(name)
            raise OCIError(f"{what}: systemd could not start {name}: its job ended {result!r}")

    def set_properties(self, name, properties, what):
        """SetUnitProperties, at run time only (not written to /etc), as runc does."""
        props, _keep = _properties(properties, what)
        self._check(lib.oci_sd_set_properties(self.bus, name.encode(), 1, props, len(properties), self.reply), what)

    def stop_unit(self, name, what):
        """StopUnit and wait for it; a unit that is gone already (a scope whose processes all
        exited is collected by systemd) is fine. False when the stop job did not end "done"."""
        try:
            result = self._check(lib.oci_sd_stop_unit(self.bus, name.encode(), self.reply), what)
        except BusError as e:
            if e.name in NO_SUCH_UNIT:
                return True
            raise
        if result != "done":
            self.reset_failed(name)
        return result == "done"

    def reset_failed(self, name):
        lib.oci_sd_reset_failed(self.bus, name.encode(), self.reply)  # best effort: its error is no news


class BusError(OCIError):
    """An error reply from systemd: ``name`` is the D-Bus error's name."""

    def __init__(self, name, message, what):
        self.name = name
        super().__init__(f"{what}: systemd: {message or name}")


def _text(chars):
    return ffi.string(chars).decode(errors="replace")


_UNSIGNED = frozenset("byqut")
_SIGNED = frozenset("nix")


def _properties(properties, what):
    """[(name, signature, value)] → (a ``struct oci_sd_property[]``, what keeps its strings
    and arrays alive: the caller holds it until C has read them)."""
    arr = ffi.new("struct oci_sd_property[]", max(len(properties), 1))
    keep = [arr]

    def cstr(text):
        obj = ffi.new("char[]", text.encode())
        keep.append(obj)
        return obj

    for i, (name, signature, value) in enumerate(properties):
        p = arr[i]
        p.name, p.signature = cstr(name), cstr(signature)
        if signature == "s":
            p.s = cstr(value)
        elif signature in _UNSIGNED:
            p.u = int(value)
        elif signature in _SIGNED:
            p.i = int(value)
        elif signature == "d":
            p.d = float(value)
        elif signature == "ay":
            data = ffi.new("unsigned char[]", bytes(value) or b"\0")
            keep.append(data)
            p.bytes, p.n = data, len(value)
        elif signature == "au":
            data = ffi.new("unsigned int[]", list(value) or [0])
            keep.append(data)
            p.u32, p.n = data, len(value)
        elif signature == "a(ss)":
            strings = ffi.new("const char *[]", [cstr(s) for pair in value for s in pair] or [ffi.NULL])
            keep.append(strings)
            p.pairs, p.n = strings, len(value)
        else:
            raise OCIError(f"{what}: the unit property {name}: D-Bus type {signature!r} is not supported here")
    return arr, keep
