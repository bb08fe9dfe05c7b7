"""Talking to systemd over the system D-Bus (jeepney, pure Python, ~18 ms to import:
imported only by a command that uses the systemd cgroup driver): start a transient
unit and wait for its job, set a unit's properties, stop it.

Properties are ``systemd``'s plain [(name, signature, value)] lists.
"""

from jeepney import DBusAddress, HeaderFields, MatchRule, MessageType, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import Proxy, open_dbus_connection

from .errors import OCIError
from .log import warn

MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                      interface="org.freedesktop.systemd1.Manager")
JOB_TIMEOUT = 30.0  # seconds, as runc waits for a unit's job
NO_SUCH_UNIT = ("org.freedesktop.systemd1.NoSuchUnit", "org.freedesktop.systemd1.LoadFailed")


def stop_unit(name):
    """Stop a container's unit (delete, a failed create); one gone already is fine."""
    with Bus() as bus:
        if not bus.stop_unit(name, f"systemd unit {name}"):
            warn(f"stopping the systemd unit {name} did not finish cleanly")


class Bus:
    """One connection to the system bus, with the JobRemoved signals it asks for."""

    def __init__(self):
        try:
            self.conn = open_dbus_connection(bus="SYSTEM")
        except (OSError, ValueError) as e:
            raise OCIError(f"--systemd-cgroup: can't connect to systemd over the system D-Bus: {e}") from None
        self._version = None
        # No sender: signals carry systemd's unique name (":1.0"), which jeepney's own
        # matching would compare "org.freedesktop.systemd1" with; only systemd sends these.
        self.jobs = MatchRule(type="signal", path=MANAGER.object_path, interface=MANAGER.interface,
                              member="JobRemoved")

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, signature=None, body=(), what=None):
        """The body of systemd's reply; its error as an OCIError naming ``what``."""
        reply = self.conn.send_and_get_reply(new_method_call(MANAGER, method, signature, body), timeout=JOB_TIMEOUT)
        if reply.header.message_type == MessageType.error:
            error = reply.header.fields.get(HeaderFields.error_name, "")
            raise BusError(error, reply.body[0] if reply.body else "", what or method)
        return reply.body

    def version(self):
        """systemd's version number (its Version property: "252.39-1~deb12u2" → 252)."""
        if self._version is None:
            props = DBusAddress(MANAGER.object_path, bus_name=MANAGER.bus_name,
                                interface="org.freedesktop.DBus.Properties")
            reply = self.conn.send_and_get_reply(new_method_call(props, "Get", "ss", (MANAGER.interface, "Version")))
            text = reply.body[0][1] if reply.header.message_type != MessageType.error else ""
            digits = text.lstrip("v").split(".")[0].split("-")[0]
            self._version = int(digits) if digits.isdigit() else 0
        return self._version

    def run_job(self, method, signature, body, unit, what):
        """Call a method that queues a job on ``unit`` and wait for that job to end; its
        result ("done", "failed", "canceled", "timeout"...)."""
        Proxy(message_bus, self.conn).AddMatch(self.jobs)
        with self.conn.filter(self.jobs) as queue:
            job = self.call(method, signature, body, what)[0]
            while True:
                try:
                    signal = self.conn.recv_until_filtered(queue, timeout=JOB_TIMEOUT)
                except TimeoutError:
                    raise OCIError(f"{what}: systemd did not finish the job for {unit} in {JOB_TIMEOUT:.0f}s") from None
                if signal.body[1] == job:
                    return signal.body[3]

    def start_unit(self, name, properties, what):
        """StartTransientUnit: the unit is up, its processes in its cgroup, when this returns."""
        props = [(key, (signature, value)) for key, signature, value in properties]
        try:
            result = self.run_job("StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "replace", props, []), name, what)
        except BusError as e:
            if e.name == "org.freedesktop.systemd1.UnitExists":
                raise OCIError(f"{what}: systemd unit {name} already exists (another container's?)") from None
            raise
        if result != "done":
            self.reset_failed(name)
            raise OCIError(f"{what}: systemd could not start {name}: its job ended {result!r}")

    def set_properties(self, name, properties, what):
        """SetUnitProperties, at run time only (not written to /etc), as runc does."""
        props = [(key, (signature, value)) for key, signature, value in properties]
        self.call("SetUnitProperties", "sba(sv)", (name, True, props), what)

    def stop_unit(self, name, what):
        """StopUnit and wait for it; a unit that is gone already (a scope whose processes all
        exited is collected by systemd) is fine. False when the stop job did not end "done"."""
        try:
            result = self.run_job("StopUnit", "ss", (name, "replace"), name, what)
        except BusError as e:
            if e.name in NO_SUCH_UNIT:
                return True
            raise
        if result != "done":
            self.reset_failed(name)
        return result == "done"

    def reset_failed(self, name):
        try:
            self.call("ResetFailedUnit", "s", (name,))
        except BusError:
            pass


class BusError(OCIError):
    """An error reply from systemd: ``name`` is the D-Bus error's name."""

    def __init__(self, name, message, what):
        self.name = name
        super().__init__(f"{what}: systemd: {message or name}")
