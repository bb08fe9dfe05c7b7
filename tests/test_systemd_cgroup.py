"""The systemd cgroup driver (``--systemd-cgroup``) against a real systemd: PID 1 of the
qemu lane's systemd guests (tests/vm), with its D-Bus, on cgroup v2 and on cgroup v1
(systemd's legacy hierarchies); conftest deselects these on a host without one. What is
checked is what systemd and cgroupfs say: the scope in ``systemctl``, its limits read
back from its cgroup files (v1's where the host is v1), the container's cgroup in every
hierarchy (/proc/<pid>/cgroup), nothing left after delete in any of them."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import cgroup_mounts, pure_cgroup_v2, wait_status
from test_shim import engine  # noqa: F401  (the fixture)

from ociruntime.resources import cpu_shares_to_weight

pytestmark = [pytest.mark.root, pytest.mark.systemd]

V1 = not pure_cgroup_v2()  # the controllers are v1 hierarchies: the limits are v1 files and properties
# The v1 controllers systemd manages: a unit's cgroup in their hierarchies (and in its own,
# name=systemd) is systemd's; the runtime makes the container's in the others (cpuset,
# freezer, net_cls,net_prio, perf_event, hugetlb, ...), as runc does.
SYSTEMD_V1 = {"cpu", "cpuacct", "blkio", "memory", "devices", "pids"}


def systemctl(*args):
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=30)


def show(unit, *props):
    """{property: value} of a unit, as systemctl show prints them (a property it lists
    on several lines, as DeviceAllow, has them joined by newlines)."""
    out = systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
    found = {}
    for line in out.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            found[key] = f"{found[key]}\n{value}" if key in found else value
    return found


def unit_exists(unit):
    """Whether systemd knows the unit at all (loaded, active or failed)."""
    return show(unit, "LoadState")["LoadState"] not in ("not-found", "")


@pytest.fixture
def sd(runtime):
    """The runtime with --systemd-cgroup; afterwards, no unit and no cgroup named after any
    of its containers may be left."""
    def call(*args, **kw):
        return runtime("--systemd-cgroup", *args, **kw)

    call.runtime = runtime
    call.new_id = runtime.new_id
    yield call
    left = []
    units = systemctl("list-units", "--all", "--plain", "--no-legend").stdout
    for cid in runtime.ids:
        left += [f"unit {line.split()[0]}" for line in units.splitlines() if cid in line]
        left += [f"cgroup {base}/{d}" for mount in cgroup_mounts().values() for base, dirs, _ in os.walk(mount)
                 for d in dirs if cid in d]
    for cid in runtime.ids:
        runtime("delete", "--force", cid, check=False)
    assert not left, f"left behind: {left}"


def created(sd, bundle, cgroups_path=None):
    """A created container's (id, init pid); @ID@ in ``cgroups_path`` is its id."""
    cid = sd.new_id()
    if cgroups_path is not None:
        bundle.config["linux"]["cgroupsPath"] = cgroups_path.replace("@ID@", cid)
    bundle.write()
    sd("create", "--bundle", bundle.path, cid)
    return cid, sd.runtime.state(cid)["pid"]


def cgroups_of(pid):
    """{hierarchy: cgroup} of ``pid`` in each hierarchy this host mounts (/proc/<pid>/cgroup)."""
    mounts = cgroup_mounts()
    lines = (line.split(":", 2) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    return {key: path for _, key, path in lines if key in mounts}


def everywhere(cgroup):
    """{hierarchy: cgroup} with ``cgroup`` in every hierarchy of this host: a container's
    place (on v2 the one hierarchy; on v1 systemd's and those the runtime joins it to)."""
    return dict.fromkeys(cgroup_mounts(), cgroup)


def directories(pid):
    """{hierarchy: directory} of ``pid``'s cgroups, from /proc/<pid>/cgroup."""
    mounts = cgroup_mounts()
    return {key: mounts[key] + path.rstrip("/") for key, path in cgroups_of(pid).items()}


def systemds(key):
    """Whether systemd manages the hierarchy ``key`` (its unit's cgroup there is systemd's)."""
    return key in ("", "name=systemd") or bool(SYSTEMD_V1 & set(key.split(",")))


def directory(dirs, controller):
    """The container's directory holding ``controller``'s files: cgroup v2's one on v2."""
    return Path(dirs[""] if not V1 else next(d for key, d in dirs.items() if controller in key.split(",")))


def read(dirs, *names):
    """{file name: its content, stripped} of the container's cgroup files, each from its
    controller's directory ("memory.max" from memory's)."""
    return {name: (directory(dirs, name.split(".")[0]) / name).read_text().strip() for name in names}


def assert_seen_inside(text, unit):
    """``text``, /proc/self/cgroup as the container's process read it, names the scope in
    system.slice ("/" with a cgroup namespace): on v1 every hierarchy's line, the same way."""
    if V1:
        lines = (line.split(":", 2) for line in text.splitlines())
        seen = {key: path for _, key, path in lines if key in cgroup_mounts()}
        assert seen in (everywhere(f"/system.slice/{unit}"), everywhere("/")), text
    else:
        assert text.strip() in (f"0::/system.slice/{unit}", "0::/"), text  # cgroupns: "/"


def record(sd, cid):
    """The runtime's state record of ``cid`` (state.json: JSON, signed in a last field)."""
    return json.loads((Path(sd.runtime.root) / cid / "state.json").read_text())


def test_the_default_unit_is_a_scope_in_system_slice_that_delete_stops(sd, make_bundle):
    cid, pid = created(sd, make_bundle("sleep", "30"))
    unit = f"ociruntime-{cid}.scope"
    assert cgroups_of(pid) == everywhere(f"/system.slice/{unit}")
    dirs = directories(pid)
    props = show(unit, "ActiveState", "Slice", "Delegate", "ControlGroup", "MemoryAccounting", "TasksAccounting")
    assert props == {"ActiveState": "active", "Slice": "system.slice", "Delegate": "yes",
                     "ControlGroup": f"/system.slice/{unit}", "MemoryAccounting": "yes", "TasksAccounting": "yes"}
    if V1:  # runc's legacy accounting property; IOAccounting would have systemd translate it to blkio
        assert show(unit, "BlockIOAccounting", "IOAccounting") == {"BlockIOAccounting": "yes", "IOAccounting": "no"}
    status = systemctl("status", unit).stdout
    assert f"{unit} - ociruntime container {unit}" in status and str(pid) in status, status
    assert Path(f"/run/systemd/transient/{unit}").exists()  # delete looks there (systemd.may_be_loaded)
    sd("start", cid)
    assert sd.runtime.state(cid)["status"] == "running"
    sd("kill", cid, "KILL")
    wait_status(sd.runtime, cid, "stopped")
    sd("delete", cid)
    assert not unit_exists(unit), show(unit, "LoadState", "ActiveState")
    assert [d for d in dirs.values() if os.path.exists(d)] == []


def test_cgroups_path_slice_prefix_name(sd, make_bundle):
    cid, pid = created(sd, make_bundle("sleep", "30"), "machine.slice:octest:@ID@")
    unit = f"octest-{cid}.scope"
    assert show(unit, "Slice", "ActiveState") == {"Slice": "machine.slice", "ActiveState": "active"}
    assert cgroups_of(pid) == everywhere(f"/machine.slice/{unit}")
    sd("delete", "--force", cid)
    assert not unit_exists(unit)


def test_limits_are_unit_properties_and_cgroup_files(sd, make_bundle):
    bundle = make_bundle("sleep", "30")
    bundle.config["linux"]["resources"] = {
        "memory": {"limit": 64 << 20, "reservation": 16 << 20},
        "cpu": {"quota": 20000, "period": 100000, "shares": 2048, "cpus": "1"},
        "pids": {"limit": 50}}
    cid, pid = created(sd, bundle)
    unit = f"ociruntime-{cid}.scope"
    dirs = directories(pid)
    if V1:
        # runc's v1 properties. systemd has no memory reservation on v1 (that is the runtime's
        # cgroupfs write alone), nor a cpuset: it keeps and shows AllowedCPUs, which runc sends
        # on v1 too, and applies nothing; cpuset.cpus is the runtime's write.
        props = show(unit, "MemoryLimit", "MemoryMax", "MemoryLow", "CPUShares", "CPUWeight", "CPUQuotaPerSecUSec",
                     "CPUQuotaPeriodUSec", "TasksMax", "AllowedCPUs")
        assert props == {"MemoryLimit": str(64 << 20), "MemoryMax": "infinity", "MemoryLow": "0",
                         "CPUShares": "2048", "CPUWeight": "[not set]", "CPUQuotaPerSecUSec": "200ms",
                         "CPUQuotaPeriodUSec": "100ms", "TasksMax": "50", "AllowedCPUs": "1"}
        files = read(dirs, "memory.limit_in_bytes", "memory.soft_limit_in_bytes", "cpu.cfs_quota_us",
                     "cpu.cfs_period_us", "cpu.shares", "pids.max", "cpuset.cpus")
        assert files == {"memory.limit_in_bytes": str(64 << 20), "memory.soft_limit_in_bytes": str(16 << 20),
                         "cpu.cfs_quota_us": "20000", "cpu.cfs_period_us": "100000", "cpu.shares": "2048",
                         "pids.max": "50", "cpuset.cpus": "1"}
    else:
        props = show(unit, "MemoryMax", "MemoryLow", "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "TasksMax",
                     "AllowedCPUs", "CPUWeight")
        assert props == {"MemoryMax": str(64 << 20), "MemoryLow": str(16 << 20), "CPUQuotaPerSecUSec": "200ms",
                         "CPUQuotaPeriodUSec": "100ms", "TasksMax": "50", "AllowedCPUs": "1",
                         "CPUWeight": str(cpu_shares_to_weight(2048))}
        files = read(dirs, "memory.max", "memory.low", "cpu.max", "pids.max", "cpuset.cpus", "cpu.weight")
        assert files == {"memory.max": str(64 << 20), "memory.low": str(16 << 20), "cpu.max": "20000 100000",
                         "pids.max": "50", "cpuset.cpus": "1", "cpu.weight": str(cpu_shares_to_weight(2048))}
    for d in dirs.values():
        assert str(pid) in (Path(d) / "cgroup.procs").read_text().split(), d
    sd("delete", "--force", cid)


def test_the_runtime_makes_the_cgroups_systemd_does_not_and_delete_removes_them(sd, make_bundle):
    """On v1 systemd makes the scope's cgroup in its own hierarchy (name=systemd) and its
    controllers'; the runtime makes the container's in every other hierarchy (runc's
    joinCgroups), names them in its record, joins the init there and removes them on
    delete. On v2 systemd makes the one cgroup there is and the runtime none."""
    cid, pid = created(sd, make_bundle("sleep", "30"))
    unit = f"ociruntime-{cid}.scope"
    mounts = cgroup_mounts()
    dirs = directories(pid)
    assert dirs == {key: f"{mount}/system.slice/{unit}" for key, mount in mounts.items()}
    others = {key for key in mounts if not systemds(key)}
    if V1:
        assert {"cpuset", "freezer", "net_cls,net_prio", "perf_event"} <= others, mounts
        assert cgroups_of(pid)["name=systemd"] == f"/system.slice/{unit}"  # systemd's own hierarchy: the scope
        status = systemctl("status", unit).stdout
        assert f"CGroup: /system.slice/{unit}" in status, status
    else:
        assert others == set(), mounts
    made = record(sd, cid)["cgroups_created"]
    assert {d for d in made if d.endswith(f"/{unit}")} == {dirs[key] for key in others}, made
    # ...and what else it made is on the way there (a slice's directory the hierarchy lacked)
    assert all(any(dirs[key].startswith(f"{d}/") for key in others) for d in made if not d.endswith(f"/{unit}")), made
    for key in others:
        assert str(pid) in (Path(dirs[key]) / "cgroup.procs").read_text().split(), key
    sd("delete", "--force", cid)
    assert [d for d in [*dirs.values(), *made] if os.path.exists(d)] == []


def test_update_sets_the_unit_and_the_files(sd, make_bundle):
    bundle = make_bundle("sleep", "30")
    bundle.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}
    cid, pid = created(sd, bundle)
    unit = f"ociruntime-{cid}.scope"
    sd.runtime("update", "--memory", str(128 << 20), "--pids-limit", "20", cid)  # no flag needed: the state knows
    memory = "memory.limit_in_bytes" if V1 else "memory.max"
    assert show(unit, "MemoryLimit" if V1 else "MemoryMax", "TasksMax") == {
        "MemoryLimit" if V1 else "MemoryMax": str(128 << 20), "TasksMax": "20"}
    assert read(directories(pid), memory, "pids.max") == {memory: str(128 << 20), "pids.max": "20"}
    sd("delete", "--force", cid)


def test_pause_resume_ps_events_kill_on_a_scope(sd, make_bundle):
    cid, pid = created(sd, make_bundle("sh", "-c", "sleep 30 & sleep 30; wait"))
    sd("start", cid)
    dirs = directories(pid)
    procs = directory(dirs, "pids") / "cgroup.procs"
    deadline = time.monotonic() + 10
    while len(procs.read_text().split()) < 3:
        assert time.monotonic() < deadline, procs.read_text()
        time.sleep(0.05)
    sd("pause", cid)
    assert sd.runtime.state(cid)["status"] == "paused"
    if V1:
        assert read(dirs, "freezer.state") == {"freezer.state": "FROZEN"}
    else:
        assert "frozen 1" in (directory(dirs, "cgroup") / "cgroup.events").read_text()
    sd("resume", cid)
    assert sd.runtime.state(cid)["status"] == "running"
    if V1:
        assert read(dirs, "freezer.state") == {"freezer.state": "THAWED"}
    pids = json.loads(sd("ps", "--format", "json", cid).stdout)
    assert pid in pids and len(pids) == 3
    stats = json.loads(sd("events", "--stats", cid).stdout.splitlines()[0])
    assert stats["data"]["pids"]["current"] == 3 and stats["data"]["memory"]["usage"]["usage"] > 0
    sd("kill", "--all", cid, "KILL")
    wait_status(sd.runtime, cid, "stopped")
    sd("delete", cid)


def test_a_scope_whose_processes_exited_is_gone_and_delete_still_works(sd, make_bundle):
    """systemd collects a scope once it is empty; delete then has no unit to stop."""
    cid, _ = created(sd, make_bundle("true"))
    unit = f"ociruntime-{cid}.scope"
    sd("start", cid)
    wait_status(sd.runtime, cid, "stopped")
    deadline = time.monotonic() + 10
    while unit_exists(unit):
        assert time.monotonic() < deadline, show(unit, "ActiveState", "SubState")
        time.sleep(0.1)
    assert not Path(f"/run/systemd/transient/{unit}").exists()  # so delete needs no bus
    # ...nor takes one: a bus at this address can't be reached (sd-bus reads it).
    no_bus = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    proc = sd("delete", cid, check=False, env=no_bus)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stdout


def test_run_in_the_foreground(sd, make_bundle):
    bundle = make_bundle("sh", "-c", "cat /proc/self/cgroup; exit 3")
    cid = sd.new_id()
    proc = sd("run", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 3, proc.stderr
    assert_seen_inside(proc.stdout, f"ociruntime-{cid}.scope")


def test_devices_the_config_allows_work_and_the_unit_is_strict(sd, make_bundle):
    """systemd's own device program (DevicePolicy=strict) and ours both allow runc's
    default devices, and neither lets the container open one the config doesn't allow."""
    bundle = make_bundle("sh", "-c", "{ echo x > /dev/null && head -c 3 /dev/zero | wc -c && "
                                     "head -c 1 /dev/kmsg; } > /out 2>&1; touch /done",
                         root={"path": "rootfs", "readonly": False})
    bundle.config["linux"]["devices"] = [{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]
    cid, _ = created(sd, bundle)
    unit = f"ociruntime-{cid}.scope"
    props = show(unit, "DevicePolicy", "DeviceAllow")
    assert props["DevicePolicy"] == "strict" and "/dev/char/1:3 rwm" in props["DeviceAllow"], props
    assert "char-pts rwm" in props["DeviceAllow"] and "1:11" not in props["DeviceAllow"], props
    sd("start", cid)
    wait_status(sd.runtime, cid, "stopped")
    assert (bundle.rootfs / "done").exists()
    lines = (bundle.rootfs / "out").read_text().splitlines()
    assert lines[0] == "3" and "Operation not permitted" in lines[1], lines
    sd("delete", cid)


def test_the_same_unit_twice_is_refused_and_leaves_nothing(sd, make_bundle):
    first, _ = created(sd, make_bundle("sleep", "30"), "system.slice:octest:same-@ID@")
    bundle = make_bundle("sleep", "30")
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:octest:same-{first}"
    bundle.write()
    second = sd.new_id()
    proc = sd("create", "--bundle", bundle.path, second, check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "linux.cgroupsPath" in proc.stderr and "already exists" in proc.stderr, proc.stderr
    assert not (Path(sd.runtime.root) / second).exists()
    assert show(f"octest-same-{first}.scope", "ActiveState")["ActiveState"] == "active"  # the first's, untouched
    sd("delete", "--force", first)


def test_a_create_failing_after_the_unit_started_stops_it(sd, make_bundle):
    bundle = make_bundle("true")
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    cid = sd.new_id()
    bundle.write()
    proc = sd("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1 and "createRuntime" in proc.stderr, proc.stderr
    assert not unit_exists(f"ociruntime-{cid}.scope")
    assert not (Path(sd.runtime.root) / cid).exists()


def test_a_bad_cgroups_path_is_one_line_before_anything_exists(sd, make_bundle):
    bundle = make_bundle("true")
    bundle.config["linux"]["cgroupsPath"] = "/not/the/systemd/form"
    bundle.write()
    cid = sd.new_id()
    proc = sd("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ['ociruntime: linux.cgroupsPath: expected "slice:prefix:name" for systemd '
                                        "cgroups, got '/not/the/systemd/form'"]
    assert not (Path(sd.runtime.root) / cid).exists()


def test_our_shim_with_containerds_systemd_cgroup_option(sd, engine, make_bundle, tmp_path):  # noqa: F811
    """containerd's runc options SystemdCgroup = true reach our shim as
    Options.systemd_cgroup: the task's cgroup is a scope, gone after Delete."""
    bundle = make_bundle("sh", "-c", "cat /proc/self/cgroup; exit 7")
    cid = sd.new_id()
    shim = engine(bundle, cid)
    log = tmp_path / "shim.log"
    pid = shim.create(log=str(log), root=engine.root, systemd_cgroup=True)
    unit = f"ociruntime-{cid}.scope"
    assert show(unit, "ActiveState")["ActiveState"] == "active"
    assert cgroups_of(pid) == everywhere(f"/system.slice/{unit}")
    shim.start()
    assert shim.wait(timeout=30)[0] == 7
    shim.delete()
    assert_seen_inside(log.read_text(), unit)
    assert not unit_exists(unit)


def test_the_bus_client_passes_systemds_errors_on_by_name():
    """native/sdbus.c against systemd itself: an error reply comes through with its D-Bus
    name (the driver decides on some) and systemd's message; a property systemd refuses
    starts nothing."""
    from ociruntime.systemd_bus import Bus, BusError

    unit = f"octest-bus-{uuid.uuid4().hex[:8]}.scope"
    with Bus() as bus:
        assert bus.stop_unit(unit, "delete") is True  # no such unit: gone already, which is fine
        with pytest.raises(BusError) as e:
            bus.set_properties(unit, [("MemoryMax", "t", 1 << 30)], "update")
        assert e.value.name == "org.freedesktop.systemd1.NoSuchUnit", e.value
        assert str(e.value).startswith("update: systemd: ") and unit in str(e.value), e.value
        with pytest.raises(BusError) as e:
            bus.start_unit(unit, [("Description", "s", "x"), ("NoSuchProperty", "t", 1)], "create")
        assert e.value.name.startswith("org.freedesktop.DBus.Error."), (e.value.name, e.value)
        assert str(e.value).startswith("create: systemd: ") and "NoSuchProperty" in str(e.value), e.value
        assert bus.version() >= 252
    assert not unit_exists(unit)
