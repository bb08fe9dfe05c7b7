"""The systemd cgroup driver's decisions, without a systemd: linux.cgroupsPath → unit
(runc's rules), where its cgroup is, and linux.resources → unit properties. The driver
against a real systemd: tests/test_systemd_cgroup.py (in the qemu lane's systemd guest)."""

import shutil
from pathlib import Path

import pytest

from ociruntime import resources, systemd
from ociruntime.errors import ConfigError
from ociruntime.linux import devices

HOSTS = Path(__file__).parent / "fixtures" / "hosts"


@pytest.mark.parametrize("path, name, slice_name, cgroup", [
    (None, "ociruntime-c1.scope", "system.slice", "/system.slice/ociruntime-c1.scope"),
    ("", "ociruntime-c1.scope", "system.slice", "/system.slice/ociruntime-c1.scope"),
    ("system.slice:docker:abc", "docker-abc.scope", "system.slice", "/system.slice/docker-abc.scope"),
    ("machine.slice:libpod:f00", "libpod-f00.scope", "machine.slice", "/machine.slice/libpod-f00.scope"),
    ("kubepods-besteffort-pod1.slice:cri-containerd:x", "cri-containerd-x.scope", "kubepods-besteffort-pod1.slice",
     "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-x.scope"),
    (":p:n", "p-n.scope", "system.slice", "/system.slice/p-n.scope"),  # an empty slice: the default
    ("-.slice::n", "n.scope", "-.slice", "/n.scope"),  # the root slice, no prefix
])
def test_cgroups_path_to_unit(path, name, slice_name, cgroup):
    unit = systemd.unit_for(path, "c1")
    assert (unit.name, unit.slice, unit.cgroup) == (name, slice_name, cgroup)


@pytest.mark.parametrize("path, says", [
    ("/plain/path", 'expected "slice:prefix:name"'),  # runc refuses the cgroupfs form too
    ("a:b", 'expected "slice:prefix:name"'),
    ("a.slice:b:c:d", 'expected "slice:prefix:name"'),
    ("system.slice:p:", "the name (after the last ':') is empty"),
    ("system.slice:p:pod.slice", "a slice can't hold the container's processes"),
    ("system:p:n", "invalid slice name 'system'"),
    ("a--b.slice:p:n", "invalid slice name"),
    ("-a.slice:p:n", "invalid slice name"),
    ("system.slice:p:n/../../x", "is not a valid systemd unit name"),
    ("system.slice:p:n m", "is not a valid systemd unit name"),
])
def test_bad_cgroups_paths_are_refused_by_field(path, says):
    with pytest.raises(ConfigError) as e:
        systemd.unit_for(path, "c1")
    assert e.value.path == "linux.cgroupsPath" and says in e.value.message, e.value


def _proc_with_init(tmp_path, host, init_cgroup):
    """A fixture host's /proc with a /proc/1/cgroup: where systemd (PID 1) is."""
    proc = tmp_path / "proc"
    shutil.copytree(HOSTS / host, proc)
    (proc / "1").mkdir()
    (proc / "1" / "cgroup").write_text(init_cgroup)
    return str(proc)


def test_paths_on_pure_v2_are_below_the_root():
    unit = systemd.unit_for("machine.slice:libpod:f00", "c1")
    assert systemd.container_paths(unit, str(HOSTS / "pure-v2")) == {
        "": "/sys/fs/cgroup/machine.slice/libpod-f00.scope"}


def test_paths_on_v1_are_below_systemds_own_cgroup_less_init_scope(tmp_path):
    """runc's getSubsystemPath: in a container, systemd's root is where its init.scope is."""
    init = "".join(f"{n}:{key}:/ctr/init.scope\n" for n, key in enumerate(
        ["name=systemd", "net_prio,net_cls", "cpuacct,cpu", "memory", "pids", "blkio", "perf_event", "freezer",
         "cpuset", "hugetlb", "devices"]))
    paths = systemd.container_paths(systemd.unit_for("", "c1"), _proc_with_init(tmp_path, "systemd-v1", init))
    assert paths["memory"] == "/sys/fs/cgroup/memory/ctr/system.slice/ociruntime-c1.scope"
    assert paths["name=systemd"] == "/sys/fs/cgroup/systemd/ctr/system.slice/ociruntime-c1.scope"
    assert len(paths) == 11


def test_paths_on_a_hybrid_host_include_the_unified_one(tmp_path):
    init = "".join(f"{n}:{key}:/init.scope\n" for n, key in enumerate(["", "name=systemd", "memory"]))
    paths = systemd.container_paths(systemd.unit_for("", "c1"), _proc_with_init(tmp_path, "hybrid", init))
    assert paths[""] == "/sys/fs/cgroup/unified/system.slice/ociruntime-c1.scope"
    assert paths["memory"] == "/sys/fs/cgroup/memory/system.slice/ociruntime-c1.scope"
    assert paths["cpuset"] == "/sys/fs/cgroup/cpuset/system.slice/ociruntime-c1.scope"  # not in /proc/1: the root


def test_start_properties_are_runcs():
    unit = systemd.unit_for("machine.slice:p:n", "c1")
    props = systemd.start_properties(unit, 1234, {"org.systemd.property.CollectMode": "'inactive-or-failed'",
                                                  "other": "x"})
    assert ("Slice", "s", "machine.slice") in props
    assert ("Delegate", "b", True) in props and ("DefaultDependencies", "b", False) in props
    assert ("PIDs", "au", [1234]) in props
    assert {n for n, _, _ in props} >= {"MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting"}
    assert ("CollectMode", "s", "inactive-or-failed") in props


def test_a_legacy_host_accounts_block_io_by_its_v1_name():
    """runc's legacy manager: BlockIOAccounting (systemd translates IOAccounting on v1, and says so)."""
    names = {n for n, _, _ in systemd.start_properties(systemd.unit_for("", "c1"), 1, {}, legacy=True)}
    assert "BlockIOAccounting" in names and "IOAccounting" not in names
    assert {"MemoryAccounting", "CPUAccounting", "TasksAccounting"} <= names


V2 = resources.Host({c: "v2" for c in ("cpu", "cpuset", "memory", "pids", "io", "hugetlb")}, pure_v2=True)
V1 = resources.Host({c: "v1" for c in ("cpu", "cpuset", "memory", "pids", "blkio", "hugetlb")})


def _props(res, host, version=252):
    return dict((n, (s, v)) for n, s, v in systemd.resource_properties(resources.writes(res, host), [],
                                                                        lambda: version))


def test_v2_resources_become_runcs_properties():
    props = _props({"memory": {"limit": 1 << 30, "reservation": 1 << 20, "swap": (1 << 30) + 4096},
                    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1,3", "mems": "0"},
                    "pids": {"limit": 100}}, V2)
    assert props == {
        "MemoryMax": ("t", 1 << 30), "MemoryLow": ("t", 1 << 20), "MemorySwapMax": ("t", 4096),
        "CPUWeight": ("t", 100), "CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000),
        "AllowedCPUs": ("ay", bytes([0b1011])), "AllowedMemoryNodes": ("ay", bytes([1])),
        "TasksMax": ("t", 100)}


def test_unlimited_is_systemds_infinity_and_quota_rounds_up_to_whole_percents():
    props = _props({"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": 12345, "period": 100000}}, V2)
    assert props["MemoryMax"] == props["TasksMax"] == props["MemorySwapMax"] == ("t", systemd.INFINITY)
    assert props["CPUQuotaPerSecUSec"] == ("t", 130000)  # 12.345% → 13%, as runc rounds
    assert _props({"cpu": {"period": 50000}}, V2)["CPUQuotaPerSecUSec"] == ("t", systemd.INFINITY)


def test_old_systemds_get_no_property_they_dont_know():
    props = _props({"cpu": {"quota": 50000, "period": 100000, "cpus": "0"}}, V2, version=241)
    assert "CPUQuotaPeriodUSec" not in props and "AllowedCPUs" not in props
    assert props["CPUQuotaPerSecUSec"] == ("t", 500000)


def test_version_is_asked_only_when_a_property_needs_it():
    def never():
        raise AssertionError("asked for systemd's version")

    assert systemd.resource_properties(resources.writes({"memory": {"limit": 4096}}, V2), [], never) == [
        ("MemoryMax", "t", 4096)]


def test_v1_resources_become_runcs_v1_properties():
    props = _props({"memory": {"limit": 1 << 30}, "cpu": {"shares": 512, "quota": 20000, "period": 100000},
                    "blockIO": {"weight": 500}, "pids": {"limit": 7}}, V1)
    assert props == {"MemoryLimit": ("t", 1 << 30), "CPUShares": ("t", 512), "CPUQuotaPeriodUSec": ("t", 100000),
                     "CPUQuotaPerSecUSec": ("t", 200000), "BlockIOWeight": ("t", 500), "TasksMax": ("t", 7)}


def test_unified_entries_map_where_runc_maps_them_and_the_rest_stay_files():
    props = _props({"unified": {"memory.high": "max", "memory.min": "4096", "pids.max": "9",
                                "io.weight": "default 100"}}, V2)
    assert props == {"MemoryHigh": ("t", systemd.INFINITY), "MemoryMin": ("t", 4096), "TasksMax": ("t", 9)}


def test_a_unit_may_be_loaded_while_a_cgroup_of_systemds_or_its_transient_file_is_there(tmp_path, monkeypatch):
    """delete asks systemd to stop the unit only then. On v1 the cgroups the runtime made
    (hierarchies systemd doesn't manage) outlive the unit systemd collected: they don't count."""
    monkeypatch.setattr(systemd, "TRANSIENT", str(tmp_path / "transient"))
    (tmp_path / "transient").mkdir()
    (tmp_path / "freezer" / "u.scope").mkdir(parents=True)
    paths = {"name=systemd": str(tmp_path / "systemd" / "u.scope"), "freezer": str(tmp_path / "freezer" / "u.scope")}
    made = [str(tmp_path / "freezer"), paths["freezer"]]
    assert systemd.may_be_loaded("u.scope", paths, made) is False  # collected: delete takes no bus
    assert systemd.may_be_loaded("u.scope", paths) is True  # the freezer's, were it systemd's
    (tmp_path / "transient" / "u.scope").write_text("")
    assert systemd.may_be_loaded("u.scope", paths, made) is True
    (tmp_path / "transient" / "u.scope").unlink()
    (tmp_path / "systemd" / "u.scope").mkdir(parents=True)
    assert systemd.may_be_loaded("u.scope", paths, made) is True


def test_device_allow_list_from_runcs_default_rules():
    rules = devices.cgroup_rules([{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 10,
                                                                        "minor": 229, "access": "rw"}])
    props = dict((n, v) for n, _, v in systemd.device_properties(rules))
    assert props["DevicePolicy"] == "strict"
    allow = dict(props["DeviceAllow"])
    assert allow["char-*"] == "m" and allow["block-*"] == "m"
    assert allow["/dev/char/1:3"] == "rwm" and allow["/dev/char/10:229"] == "rw"
    assert allow["char-pts"] == "rwm"  # 136:* by its driver's name in /proc/devices


def test_allow_all_devices_is_policy_auto():
    rules = devices.cgroup_rules([{"allow": True, "access": "rwm"}])
    assert systemd.device_properties(rules) == [("DevicePolicy", "s", "auto"), ("DeviceAllow", "a(ss)", [])]


@pytest.mark.parametrize("text, expected", [
    ("'x y'", ("s", "x y")), ('"z"', ("s", "z")), ("true", ("b", True)), ("false", ("b", False)),
    ("uint64 5", ("t", 5)), ("uint32 5", ("u", 5)), ("int64 -1", ("x", -1)), ("@t 7", ("t", 7)), ("42", ("i", 42)),
    ("1.5", ("d", 1.5)),
])
def test_annotation_values_in_gvariant_text(text, expected):
    assert systemd.annotation_properties({"org.systemd.property.SomeThing": text}) == [("SomeThing", *expected)]


def test_sec_properties_become_usec_as_runc_makes_them():
    assert systemd.annotation_properties({"org.systemd.property.TimeoutStopSec": "uint64 3"}) == [
        ("TimeoutStopUSec", "t", 3000000)]


@pytest.mark.parametrize("name, value, says", [
    ("Ab", "1", "is not a systemd property name"),
    ("Mem0ry", "1", "is not a systemd property name"),
    ("CPUWeight", "[1, 2]", "this runtime takes a quoted string"),
    ("CPUWeight", "uint32 -1", "is out of range"),
    ("TimeoutStopSec", "'soon'", "takes a number of seconds"),
])
def test_bad_annotations_are_refused_by_name(name, value, says):
    with pytest.raises(ConfigError) as e:
        systemd.annotation_properties({f"org.systemd.property.{name}": value})
    assert e.value.path == f"annotations.org.systemd.property.{name}" and says in e.value.message, e.value
