"""What the tests marked ``systemd`` may count on: systemd as pid 1 on pure cgroup v2, its
system bus answering (busctl, and the systemd cgroup driver's D-Bus client, libsystemd's
sd-bus through the C helper, at its default address), and transient scopes that
systemd-run makes in a cgroup of their own and takes away when their process ends.

Where systemd doesn't run the host, conftest deselects these; tests/test_v2_lane.py then
boots the qemu lane's systemd guest (tests/vm/lane.py --systemd), and they run there.
"""

import os
import re
import subprocess
import time
import uuid

import pytest
from conftest import pure_cgroup_v2

pytestmark = [pytest.mark.root, pytest.mark.systemd]

TIMEOUT = 60  # seconds for a step under the lane's software emulation, where a command takes a second or more
MANAGER = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")


def systemctl(*args):
    return subprocess.run(["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=TIMEOUT)


def systemd_version():
    """systemd's version as systemctl says it, e.g. "252.39-1~deb12u2" (from "systemd 252 (252.39-1~deb12u2)")."""
    first = systemctl("--version").stdout.splitlines()[0]
    return re.fullmatch(r"systemd (\d+) \((.*)\)", first).group(2)


def test_systemd_is_pid_1_on_pure_cgroup_v2():
    with open("/proc/1/comm") as f:
        assert f.read().strip() == "systemd"
    assert os.path.isdir("/run/systemd/system")
    assert pure_cgroup_v2()
    assert systemctl("is-system-running").stdout.strip() in ("running", "degraded", "starting")


def test_busctl_gets_systemds_version_on_the_system_bus():
    proc = subprocess.run(["busctl", "--system", "call", *MANAGER[:2], "org.freedesktop.DBus.Properties", "Get",
                           "ss", MANAGER[2], "Version"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f'v s "{systemd_version()}"\n'


def test_the_drivers_sd_bus_client_gets_systemds_version_on_the_system_bus():
    from ociruntime._native import ffi, lib

    from ociruntime.systemd_bus import Bus

    assert "DBUS_SYSTEM_BUS_ADDRESS" not in os.environ  # its default address, /run/dbus/system_bus_socket
    with Bus(timeout=TIMEOUT) as bus:
        assert lib.oci_sd_version(bus.bus, bus.reply) == 0, ffi.string(bus.reply.message)
        assert ffi.string(bus.reply.result).decode() == systemd_version()
        assert bus.version() == int(systemd_version().split(".")[0])


def wait_for(what, predicate):
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not after {TIMEOUT}s"
        time.sleep(0.1)


def test_systemd_run_scope_has_its_own_cgroup_and_goes_when_its_process_ends():
    unit = f"v2lane-selftest-{uuid.uuid4().hex[:8]}.scope"
    # systemd-run asks systemd for the scope (StartTransientUnit), which moves it into the
    # scope's cgroup; it then execs sleep: the pid is the scope's process.
    sleep = subprocess.Popen(["systemd-run", "--scope", "--quiet", f"--unit={unit}", "sleep", "600"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(f"pid {sleep.pid} running sleep in {unit}",
                 lambda: sleep.poll() is not None or _comm(sleep.pid) == "sleep" and _cgroup(sleep.pid).endswith(unit))
        assert sleep.poll() is None, f"systemd-run exited {sleep.returncode}: {sleep.stderr.read()}"
        cgroup = _cgroup(sleep.pid)
        assert cgroup == f"/system.slice/{unit}"
        assert systemctl("show", "--value", "--property=ControlGroup", unit).stdout.strip() == cgroup
        with open(f"/sys/fs/cgroup{cgroup}/cgroup.procs") as f:
            assert f.read().split() == [str(sleep.pid)]
        status = systemctl("status", "--lines=0", unit)
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"Active: active \(running\)", status.stdout), status.stdout
        assert re.search(rf"CGroup: {re.escape(cgroup)}\n\s+└─{sleep.pid} \S*sleep 600\n", status.stdout), status.stdout
    finally:
        sleep.kill()
        sleep.wait()
    wait_for(f"{unit}'s cgroup gone", lambda: not os.path.exists(f"/sys/fs/cgroup{cgroup}"))
    wait_for(f"{unit} gone", lambda: systemctl("show", "--value", "--property=ActiveState", unit).stdout.strip()
             == "inactive")
    assert systemctl("status", "--lines=0", unit).returncode != 0


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _cgroup(pid):
    """The cgroup v2 path of ``pid``, e.g. /system.slice/x.scope ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return next((line[3:].strip() for line in f if line.startswith("0::")), "")
    except FileNotFoundError:
        return ""
