"""linux.resources: the config → cgroup-writes model (pure, for v1, v2 and hybrid
layouts), then real containers on this host whose limits are read back from cgroupfs,
outside (the host's view of the container's cgroup) and inside (its own mount)."""

import os

import pytest

from ociruntime import resources
from ociruntime.errors import ConfigError
from ociruntime.resources import V1, V2, Host

V1_HOST = Host(dict.fromkeys(["memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer",
                              "net_cls", "net_prio", "rdma"], V1) | {"hugetlb": V2})
V2_HOST = Host(dict.fromkeys(["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"], V2), pure_v2=True)


def files(res, host):
    return [(w["version"], w["controller"], w["file"], w["value"]) for w in resources.writes(res, host)]


def error(res, host):
    with pytest.raises(ConfigError) as e:
        resources.writes(res, host)
    return str(e.value)


# --- the conversions runc uses ---

@pytest.mark.parametrize("shares, weight", [(2, 1), (1, 1), (1024, 100), (262144, 10000), (300000, 10000),
                                            (512, 59), (2048, 174)])
def test_cpu_shares_to_weight(shares, weight):
    assert resources.cpu_shares_to_weight(shares) == weight


def test_cpu_weight_is_monotonic():
    weights = [resources.cpu_shares_to_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights) and weights[0] == 1 and weights[-1] <= 10000


@pytest.mark.parametrize("weight, io", [(10, 1), (1000, 10000), (500, 4950)])
def test_blkio_weight_to_io_weight(weight, io):
    assert resources.blkio_weight_to_io_weight(weight) == io


@pytest.mark.parametrize("swap, memory, v2", [
    (None, -1, "max"), (None, 100, None), (0, 100, None), (-1, 100, "max"), (300, 100, 200), (100, 100, 0),
    (500, -1, 500)])
def test_swap_to_v2(swap, memory, v2):
    assert resources.swap_to_v2(swap, memory) == v2


def test_swap_needs_a_memory_limit_on_v2():
    assert "needs memory.limit" in error({"memory": {"swap": 300}}, V2_HOST)
    assert "below memory.limit" in error({"memory": {"swap": 100, "limit": 200}}, V2_HOST)


# --- one model, two backends ---

def test_memory_v1_and_v2():
    mem = {"memory": {"limit": 200, "swap": 300, "reservation": 100}}
    assert files(mem, V1_HOST) == [
        (V1, "memory", "memory.limit_in_bytes", "200"), (V1, "memory", "memory.memsw.limit_in_bytes", "300"),
        (V1, "memory", "memory.soft_limit_in_bytes", "100")]
    assert files(mem, V2_HOST) == [
        (V2, "memory", "memory.swap.max", "100"), (V2, "memory", "memory.max", "200"),
        (V2, "memory", "memory.low", "100")]
    assert files({"memory": {"limit": -1}}, V2_HOST) == [
        (V2, "memory", "memory.swap.max", "max"), (V2, "memory", "memory.max", "max")]


def test_memory_v1_only_settings():
    mem = {"memory": {"swappiness": 10, "disableOOMKiller": True, "useHierarchy": True}}
    assert files(mem, V1_HOST) == [(V1, "memory", "memory.oom_control", "1"),
                                   (V1, "memory", "memory.swappiness", "10"),
                                   (V1, "memory", "memory.use_hierarchy", "1")]
    assert "swappiness: 101 is out of range" in error({"memory": {"swappiness": 101}}, V1_HOST)
    for field, value in (("swappiness", 10), ("disableOOMKiller", True), ("useHierarchy", False)):
        assert error({"memory": {field: value}}, V2_HOST) == \
            f"linux.resources.memory.{field}: cgroup v2 has no such setting"
    assert files({"memory": {"disableOOMKiller": False, "useHierarchy": True}}, V2_HOST) == []


def test_kernel_memory_is_accepted_with_a_warning_on_v2(capsys):
    assert files({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20}}, V2_HOST) == []
    assert "kernel memory" in capsys.readouterr().err
    # on v1 it is tried, and a kernel that dropped it only earns a warning
    assert [w["on_error"] for w in resources.writes({"memory": {"kernel": 1 << 20}}, V1_HOST)] == [
        resources.DROPPED]


def test_cpu_v1_and_v2():
    cpu = {"cpu": {"shares": 512, "quota": 50000, "period": 200000, "burst": 1000, "idle": 0,
                   "cpus": "0", "mems": "0"}}
    assert files(cpu, V1_HOST) == [
        (V1, "cpuset", "cpuset.cpus", "0"), (V1, "cpuset", "cpuset.mems", "0"),
        (V1, "cpu", "cpu.shares", "512"), (V1, "cpu", "cpu.cfs_period_us", "200000"),
        (V1, "cpu", "cpu.cfs_burst_us", "1000"), (V1, "cpu", "cpu.cfs_quota_us", "50000"),
        (V1, "cpu", "cpu.idle", "0")]
    assert files(cpu, V2_HOST) == [
        (V2, "cpuset", "cpuset.cpus", "0"), (V2, "cpuset", "cpuset.mems", "0"),
        (V2, "cpu", "cpu.idle", "0"), (V2, "cpu", "cpu.weight", "59"), (V2, "cpu", "cpu.max.burst", "1000"),
        (V2, "cpu", "cpu.max", "50000 200000")]
    assert files({"cpu": {"quota": -1}}, V2_HOST) == [(V2, "cpu", "cpu.max", "max 100000")]
    assert files({"cpu": {"period": 50000}}, V2_HOST) == [(V2, "cpu", "cpu.max", "max 50000")]
    assert "no realtime" in error({"cpu": {"realtimeRuntime": 1000}}, V2_HOST)
    assert files({"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 1000}}, V1_HOST) == [
        (V1, "cpu", "cpu.rt_period_us", "1000000"), (V1, "cpu", "cpu.rt_runtime_us", "1000")]


def test_pids():
    assert files({"pids": {"limit": 10}}, V1_HOST) == [(V1, "pids", "pids.max", "10")]
    assert files({"pids": {"limit": -1}}, V2_HOST) == [(V2, "pids", "pids.max", "max")]
    assert files({"pids": {"limit": 0}}, V2_HOST) == [(V2, "pids", "pids.max", "1")]


def test_block_io_v1_and_v2():
    bio = {"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]}}
    assert files(bio, V1_HOST) == [
        (V1, "blkio", "blkio.weight", "500"), (V1, "blkio", "blkio.weight_device", "8:0 300"),
        (V1, "blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
        (V1, "blkio", "blkio.throttle.write_iops_device", "8:0 100")]
    writes = resources.writes(bio, V2_HOST)
    assert [(w["file"], w["value"], w["alt"]) for w in writes] == [
        ("io.bfq.weight", "500", ("io.weight", "4950")), ("io.bfq.weight", "8:0 300", ("io.weight", "8:0 2930")),
        ("io.max", "8:0 rbps=1048576", None), ("io.max", "8:0 wiops=100", None)]
    assert "no leaf weight" in error({"blockIO": {"leafWeight": 10}}, V2_HOST)


def test_hugepages_v1_and_v2():
    huge = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}
    assert files(huge, Host({"hugetlb": V1})) == [
        (V1, "hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
        (V1, "hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes", "4194304")]
    assert files(huge, V1_HOST) == [  # this machine: hugetlb only on its cgroup2 mount
        (V2, "hugetlb", "hugetlb.2MB.max", "4194304"), (V2, "hugetlb", "hugetlb.2MB.rsvd.max", "4194304")]


def test_network_and_rdma():
    net = {"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}}
    assert files(net, V1_HOST) == [(V1, "net_cls", "net_cls.classid", "1048577"),
                                   (V1, "net_prio", "net_prio.ifpriomap", "eth0 5")]
    assert error(net, V2_HOST) == "linux.resources.network.classID: this host has no net_cls cgroup controller"
    rdma = {"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}}
    assert files(rdma, V2_HOST) == [(V2, "rdma", "rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")]


def test_unified_only_on_a_pure_v2_host():
    assert files({"unified": {"memory.high": "1000000", "cgroup.max.depth": "4"}}, V2_HOST) == [
        (V2, "memory", "memory.high", "1000000"), (V2, "cgroup", "cgroup.max.depth", "4")]
    assert "needs a cgroup v2 host" in error({"unified": {"memory.high": "1"}}, V1_HOST)
    assert "controller.parameter" in error({"unified": {"../memory.high": "1"}}, V2_HOST)
    assert "controller.parameter" in error({"unified": {"memoryhigh": "1"}}, V2_HOST)
    assert "no foo cgroup v2 controller" in error({"unified": {"foo.max": "1"}}, V2_HOST)


def test_a_missing_controller_is_named():
    assert error({"pids": {"limit": 5}}, Host({})) == "linux.resources.pids: this host has no pids cgroup controller"
    assert "blkio (v1) or io (v2)" in error({"blockIO": {"weight": 100}}, Host({}))


# --- real containers on this host ---

def _host_cgroup(pid, controller):
    """The host path of ``pid``'s cgroup in the hierarchy with ``controller`` ("" = cgroup2)."""
    with open("/proc/self/mountinfo") as f:
        mounts = {}
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                mounts[""] = fields[4]
            elif fields[sep + 1] == "cgroup":
                for c in fields[sep + 3].split(","):
                    mounts[c] = fields[4]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (controller == "" and controllers == ""):
                return mounts[controller] + path
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _read(path):
    with open(path) as f:
        return f.read().strip()


LIMITS = {
    "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "swappiness": 20},
    "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 42},
}

# (controller, file, expected) read back on this v1 host
V1_FILES = [
    ("memory", "memory.limit_in_bytes", str(64 << 20)), ("memory", "memory.memsw.limit_in_bytes", str(96 << 20)),
    ("memory", "memory.soft_limit_in_bytes", str(32 << 20)), ("memory", "memory.swappiness", "20"),
    ("cpu", "cpu.shares", "512"), ("cpu", "cpu.cfs_quota_us", "20000"), ("cpu", "cpu.cfs_period_us", "100000"),
    ("cpuset", "cpuset.cpus", "0"), ("pids", "pids.max", "42"),
]

@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_limits_read_back_outside_and_inside(runtime, make_bundle):
    script = "; ".join(f"echo {c}/{f}=$(cat /sys/fs/cgroup/{c}/{f})" for c, f, _ in V1_FILES)
    bundle = make_bundle("sh", "-c", script)
    bundle.config["linux"]["resources"].update(LIMITS)
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    pid = runtime.state(cid)["pid"]
    outside = {(c, f): _read(f"{_host_cgroup(pid, c)}/{f}") for c, f, _ in V1_FILES}
    assert all(_host_cgroup(pid, c).endswith("/" + cid) for c, _, _ in V1_FILES)
    runtime("delete", "--force", cid)
    assert outside == {(c, f): v for c, f, v in V1_FILES}
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    assert dict(line.split("=", 1) for line in out.splitlines()) == {f"{c}/{f}": v for c, f, v in V1_FILES}


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_hugetlb_on_the_hybrid_cgroup2_mount(runtime, make_bundle):
    """This machine has hugetlb only on its cgroup2 mount: crun refuses the layout, we use it."""
    huge = [{"pageSize": "2MB", "limit": 8 << 20}]
    bundle = make_bundle("sh", "-c", "cat /sys/fs/cgroup/unified/hugetlb.2MB.max 2>/dev/null "
                                     "|| cat /sys/fs/cgroup/hugetlb.2MB.max")
    bundle.config["linux"]["resources"]["hugepageLimits"] = huge
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    assert out.strip() == str(8 << 20)


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
@pytest.mark.parametrize("group, value, words", [
    # this host has no net_cls controller
    ("network", {"classID": 1048577}, ["linux.resources.network.classID: this host has no net_cls cgroup controller"]),
    # CFQ's blkio.leaf_weight went with CFQ (Linux 5.0): named, not cgroupfs's EPERM
    ("blockIO", {"leafWeight": 300}, ["linux.resources.blockIO.leafWeight: write '300' to ",
                                      "blkio.leaf_weight: this kernel has no such file there"]),
])
def test_what_the_host_cannot_apply_is_one_clear_error(runtime, make_bundle, group, value, words):
    bundle = make_bundle("true")
    bundle.config["linux"]["resources"][group] = value
    bundle.write()
    proc = runtime("run", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ociruntime: ") and all(w in last for w in words), proc.stderr


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_a_value_the_kernel_refuses_names_the_field_and_leaves_nothing(runtime, make_bundle):
    bundle = make_bundle("true")
    bundle.config["linux"]["resources"]["cpu"] = {"cpus": "4096"}  # no such CPU
    bundle.write()
    proc = runtime("run", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0
    assert "linux.resources.cpu.cpus: write '4096' to " in proc.stderr
    assert "Traceback" not in proc.stderr  # the runtime fixture checks nothing was left


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_oom_kill_exits_137(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo started; exec dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived")
    bundle.config["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code == 137, (code, out, err)
    assert "started" in out and "survived" not in out


def _cgroup_dirs(name):
    return sorted(os.path.join(base, d) for base, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs if d == name)


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
@pytest.mark.parametrize("kind", ["absolute", "relative", "default"])
def test_cgroups_path_and_nothing_left_after_delete(runtime, make_bundle, kind):
    cid = runtime.new_id()
    inner = {"absolute": f"/{cid}/inner", "relative": f"{cid}/inner", "default": None}[kind]
    bundle = make_bundle("sleep", "60")
    if inner:
        bundle.config["linux"]["cgroupsPath"] = inner
    bundle.config["linux"]["resources"]["pids"] = {"limit": 9}
    bundle.write()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    pid = runtime.state(cid)["pid"]
    pids_dir = _host_cgroup(pid, "pids")
    with open("/proc/self/cgroup") as f:
        own = next(line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "pids")
    expected = {"absolute": f"/sys/fs/cgroup/pids/{cid}/inner",
                "relative": f"/sys/fs/cgroup/pids{own.rstrip('/')}/{cid}/inner",
                "default": f"/sys/fs/cgroup/pids{own.rstrip('/')}/{cid}"}[kind]
    assert pids_dir == expected
    assert _read(f"{pids_dir}/pids.max") == "9"
    assert _cgroup_dirs(cid)  # in every hierarchy
    runtime("delete", "--force", cid)  # of a running container
    assert _cgroup_dirs(cid) == []


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_joining_an_existing_cgroup_leaves_it_in_place(runtime, make_bundle):
    cid = runtime.new_id()
    existing = f"/sys/fs/cgroup/pids/{cid}"
    os.mkdir(existing)
    try:
        bundle = make_bundle("sleep", "60")
        bundle.config["linux"]["cgroupsPath"] = f"/{cid}"
        bundle.write()
        runtime("run", "--detach", "--bundle", bundle.path, cid)
        assert _host_cgroup(runtime.state(cid)["pid"], "pids") == existing
        runtime("delete", "--force", cid)
        assert os.path.isdir(existing)  # not ours to remove
        assert _cgroup_dirs(cid) == [existing]  # the ones the runtime made are gone
    finally:
        os.rmdir(existing)


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_a_failed_join_names_the_cgroup_file(runtime, make_bundle):
    """A cpuset cgroup with no cpus takes no process (ENOSPC): the error names the file
    (it used to say "linux.cgroupsPath: None")."""
    cid = runtime.new_id()
    existing = f"/sys/fs/cgroup/cpuset/{cid}"
    os.mkdir(existing)  # cpuset.cpus starts empty
    try:
        bundle = make_bundle("true")
        bundle.config["linux"]["cgroupsPath"] = f"/{cid}"
        bundle.write()
        proc = runtime("create", "--bundle", bundle.path, cid, check=False)
        assert proc.returncode != 0
        assert proc.stderr.strip() == (f"ociruntime: linux.cgroupsPath: {existing}/cgroup.procs: "
                                       "No space left on device"), proc.stderr
    finally:
        os.rmdir(existing)


@pytest.mark.root
@pytest.mark.cgroup_v1_hybrid
def test_kernel_memory_is_accepted_and_a_dropped_knob_warned(runtime, make_bundle):
    """Kernels since 5.16 take memory.kmem.limit_in_bytes and keep "max": then a warning,
    never a silent success; memory.kmem.tcp.limit_in_bytes still holds on v1."""
    bundle = make_bundle("cat", "/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes",
                         "/sys/fs/cgroup/memory/memory.kmem.limit_in_bytes")
    bundle.config["linux"]["resources"]["memory"] = {"kernel": 50 << 20, "kernelTCP": 50 << 20}
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    tcp, kmem = out.split()
    assert tcp == str(50 << 20)
    warned = "linux.resources.memory.kernel: this kernel ignores memory.kmem.limit_in_bytes" in err
    assert warned == (kmem != str(50 << 20)), (kmem, err)


@pytest.mark.root
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin the runtime to one")
@pytest.mark.parametrize("cpus", [None, "1"])
def test_a_pinned_runtime_does_not_pin_the_container(runtime, make_bundle, cpus):
    """An engine pinned to one CPU starts a container: the container may use every CPU
    of its cpuset (all of them without linux.resources.cpu.cpus), as with runc."""
    bundle = make_bundle("grep", "Cpus_allowed_list", "/proc/self/status")
    if cpus is not None:
        bundle.config["linux"]["resources"]["cpu"] = {"cpus": cpus}
    bundle.write()
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        code, out, err = runtime.run_output(bundle)
    finally:
        os.sched_setaffinity(0, own)
    assert code == 0, err
    expected = cpus or _read("/sys/fs/cgroup/cpuset/cpuset.effective_cpus"
                             if os.path.isdir("/sys/fs/cgroup/cpuset") else "/sys/devices/system/cpu/online")
    assert out.split() == ["Cpus_allowed_list:", expected]
