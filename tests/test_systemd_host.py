"""What the tests marked ``systemd`` may count on: systemd as pid 1 on cgroup v2 or v1, its
system bus answering (busctl, and the systemd cgroup driver's D-Bus client, libsystemd's
sd-bus through the C helper, at its default address), and transient scopes that
systemd-run makes in a cgroup of their own and takes away when their process ends.

Where systemd doesn't run the host, conftest deselects these; tests/test_v2_lane.py then
boots the qemu lane's systemd guests (tests/vm/lane.py --systemd, on pure cgroup v2, and
--systemd --cgroup-v1, on systemd's legacy v1 hierarchies), and they run in both.
"""

import os
import re
import subprocess
import time
import uuid

import pytest
from conftest import cgroup_mounts, legacy_cgroup_v1, pure_cgroup_v2

pytestmark = [pytest.mark.root, pytest.mark.systemd]

TIMEOUT = 60  # seconds for a step under the lane's software emulation, where a command takes a second or more
MANAGER = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")


def systemctl(*args):
    return subprocess.run(["systemctl", "--no-pager", *args], capture_output=True, text=True, timeout=TIMEOUT)


def systemd_version():
    """systemd's version as systemctl says it, e.g. "252.39-1~deb12u2" (from "systemd 252 (252.39-1~deb12u2)")."""
    first = systemctl("--version").stdout.splitlines()[0]
    return re.fullmatch(r"systemd (\d+) \((.*)\)", first).group(2)


def test_systemd_is_pid_1_on_the_cgroup_layout_its_command_line_asks_for():
    """The layout systemd was asked for: pure cgroup v2 in the systemd guest; the legacy
    hierarchies in the v1 guest (systemd.unified_cgroup_hierarchy=0
    systemd.legacy_systemd_cgroup_controller=1): a v1 one for each controller and its own,
    name=systemd, with no cgroup2 at all."""
    with open("/proc/1/comm") as f:
        assert f.read().strip() == "systemd"
    assert os.path.isdir("/run/systemd/system")
    with open("/proc/cmdline") as f:
        args = f.read().split()
    mounts = cgroup_mounts()
    layout = asked_layout(args, systemctl("--version").stdout.split())
    if layout == "unified":
        assert pure_cgroup_v2(), mounts
    else:
        assert mounts["name=systemd"] == "/sys/fs/cgroup/systemd", mounts
        assert {"cpu,cpuacct", "memory", "pids", "blkio", "devices", "cpuset", "freezer"} <= set(mounts), mounts
        if layout == "legacy":
            assert legacy_cgroup_v1(), mounts
        else:
            assert mounts[""] == "/sys/fs/cgroup/unified", mounts
    assert systemctl("is-system-running").stdout.strip() in ("running", "degraded", "starting")


def asked_layout(args, features):
    """The cgroup layout systemd mounts ("unified", "hybrid", "legacy") for the kernel's
    command line ``args``, its build's default (``features``: systemctl --version's words,
    "default-hierarchy=unified" among them) where they say nothing: systemd's rules."""
    values = {arg.partition("=")[0]: arg.partition("=")[2] for arg in args}
    default = next(w.split("=", 1)[1] for w in features if w.startswith("default-hierarchy="))

    def true(name):
        return values.get(name) not in (None, "0", "no", "false", "off")  # a bare name is true

    if "systemd.unified_cgroup_hierarchy" not in values:
        return default
    if true("systemd.unified_cgroup_hierarchy"):
        return "unified"
    if "systemd.legacy_systemd_cgroup_controller" in values:
        return "legacy" if true("systemd.legacy_systemd_cgroup_controller") else "hybrid"
    return "legacy" if default == "legacy" else "hybrid"


def test_the_layout_asked_for_is_systemds_reading_of_the_command_line():
    unified = ["systemd", "252", "default-hierarchy=unified"]
    assert asked_layout(["quiet"], unified) == "unified"
    assert asked_layout(["systemd.unified_cgroup_hierarchy=0"], unified) == "hybrid"  # seen in the lane
    assert asked_layout(["systemd.unified_cgroup_hierarchy=0", "systemd.legacy_systemd_cgroup_controller=1"],
                        unified) == "legacy"
    assert asked_layout(["systemd.unified_cgroup_hierarchy"], ["default-hierarchy=legacy"]) == "unified"
    assert asked_layout(["systemd.unified_cgroup_hierarchy=no"], ["default-hierarchy=legacy"]) == "legacy"


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
        directory = _systemds_hierarchy()[1] + cgroup
        with open(f"{directory}/cgroup.procs") as f:
            assert f.read().split() == [str(sleep.pid)]
        status = systemctl("status", "--lines=0", unit)
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"Active: active \(running\)", status.stdout), status.stdout
        assert re.search(rf"CGroup: {re.escape(cgroup)}\n\s+└─{sleep.pid} \S*sleep 600\n", status.stdout), status.stdout
    finally:
        sleep.kill()
        sleep.wait()
    wait_for(f"{unit}'s cgroup gone", lambda: not os.path.exists(directory))
    wait_for(f"{unit} gone", lambda: systemctl("show", "--value", "--property=ActiveState", unit).stdout.strip()
             == "inactive")
    assert systemctl("status", "--lines=0", unit).returncode != 0


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _systemds_hierarchy():
    """(key, mountpoint) of the hierarchy systemd keeps its units in: cgroup2 on a pure v2
    host, else its own v1 one, name=systemd."""
    return ("", "/sys/fs/cgroup") if pure_cgroup_v2() else ("name=systemd", cgroup_mounts()["name=systemd"])


def _cgroup(pid):
    """The cgroup of ``pid`` in systemd's hierarchy, e.g. /system.slice/x.scope ("" once it is gone)."""
    prefix = f":{_systemds_hierarchy()[0]}:"
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return next((line.split(":", 2)[2].strip() for line in f if prefix in line), "")
    except FileNotFoundError:
        return ""
