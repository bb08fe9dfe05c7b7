"""The attributes the init sets on itself before exec — linux.personality,
process.ioPriority, process.scheduler, linux.memoryPolicy — checked from inside real
busybox containers (/proc/self/personality, uname, ionice, /proc/self/stat, numa_maps),
and the ways each one fails: one line naming the field."""

import ctypes
import os
import struct
import subprocess
import tempfile

import pytest
from conftest import RUNTIME, run_ok
from test_linux import traversable  # noqa: F401  (a fixture)

pytestmark = pytest.mark.root


def bundle_with(make_bundle, args, process=None, linux=None):
    bundle = make_bundle(*args)
    bundle.config["process"].update(process or {})
    bundle.config["linux"].update(linux or {})
    return bundle.write()


def fails(runtime, bundle, *needles):
    """create fails with one stderr line holding every needle; returns that line."""
    proc = runtime("create", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def stat_fields(line):
    """/proc/<pid>/stat → {name: int} for the scheduling fields (proc(5), 1-based numbers)."""
    after = line.rsplit(")", 1)[1].split()  # field 3 on; comm may hold spaces
    field = {n: int(after[n - 3]) for n in (18, 19, 40, 41)}
    return {"priority": field[18], "nice": field[19], "rt_priority": field[40], "policy": field[41]}


# --- linux.personality ----------------------------------------------------------------------

def test_no_personality_is_the_hosts(runtime, make_bundle):
    out = run_ok(runtime, make_bundle("sh", "-c", "cat /proc/self/personality; uname -m"))
    assert out.split() == ["00000000", os.uname().machine]


def test_personality_linux32(runtime, make_bundle):
    """uname shows a 32-bit machine, as setarch linux32 would (the spec's example: i686)."""
    bundle = bundle_with(make_bundle, ["sh", "-c", "cat /proc/self/personality; uname -m"],
                         linux={"personality": {"domain": "LINUX32"}})
    assert run_ok(runtime, bundle).split() == ["00000008", "i686"]


def test_personality_flags_are_the_kernels(runtime, make_bundle):
    bundle = bundle_with(make_bundle, ["cat", "/proc/self/personality"],
                         linux={"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE", "UNAME26"]}})
    assert run_ok(runtime, bundle).strip() == f"{0x0040000 | 0x0020000:08x}"


def test_personality_unknown_flag(runtime, make_bundle):
    bundle = bundle_with(make_bundle, ["true"], linux={"personality": {"domain": "LINUX", "flags": ["NO_SUCH"]}})
    fails(runtime, bundle, "linux.personality.flags[0]", "NO_SUCH")


# --- process.ioPriority ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, level, shown", [("IOPRIO_CLASS_RT", 0, "realtime: prio 0"),
                                                ("IOPRIO_CLASS_BE", 6, "best-effort: prio 6"),
                                                ("IOPRIO_CLASS_IDLE", 7, "idle")])
def test_io_priority(runtime, make_bundle, cls, level, shown):
    """$$ is the init (sh); busybox's ionice asks the kernel (ioprio_get) for it."""
    bundle = bundle_with(make_bundle, ["sh", "-c", "ionice -p $$"],
                         process={"ioPriority": {"class": cls, "priority": level}})
    assert run_ok(runtime, bundle).strip() == shown


def test_no_io_priority_is_left_alone(runtime, make_bundle):
    ours = subprocess.run(["busybox", "ionice", "-p", str(os.getpid())], capture_output=True, text=True,
                          check=True).stdout
    assert run_ok(runtime, make_bundle("sh", "-c", "ionice -p $$")) == ours


# --- process.scheduler ----------------------------------------------------------------------

def test_no_scheduler_is_the_hosts(runtime, make_bundle):
    f = stat_fields(run_ok(runtime, make_bundle("cat", "/proc/self/stat")))
    assert (f["policy"], f["nice"], f["rt_priority"]) == (os.sched_getscheduler(0), os.nice(0), 0)


@pytest.mark.parametrize("policy, number, nice", [("SCHED_BATCH", 3, 7), ("SCHED_OTHER", 0, 5),
                                                  ("SCHED_IDLE", 5, 0)])
def test_scheduler_fair_policies(runtime, make_bundle, policy, number, nice):
    bundle = bundle_with(make_bundle, ["cat", "/proc/self/stat"],
                         process={"scheduler": {"policy": policy, "nice": nice}})
    f = stat_fields(run_ok(runtime, bundle))
    assert (f["policy"], f["nice"]) == (number, nice)


def test_scheduler_negative_nice_is_set_before_the_caps_go(runtime, make_bundle):
    """Lowering nice needs CAP_SYS_NICE, which runc's default config drops: the init sets
    it while it still has all its capabilities."""
    bundle = bundle_with(make_bundle, ["sh", "-c", "cat /proc/self/stat; grep CapEff /proc/self/status"],
                         process={"scheduler": {"policy": "SCHED_OTHER", "nice": -5}})
    out = run_ok(runtime, bundle).splitlines()
    assert stat_fields(out[0])["nice"] == -5
    cap_sys_nice = 1 << 23
    assert not int(out[1].split()[1], 16) & cap_sys_nice


REALTIME_BUDGET = {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}}


def rt_group_sched():
    """Whether realtime tasks need runtime in their cpu cgroup (cgroup v1, RT_GROUP_SCHED)."""
    return os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us")


def realtime_resources(bundle):
    if rt_group_sched():
        bundle.config["linux"]["resources"].update(REALTIME_BUDGET)
    return bundle.write()


@pytest.mark.parametrize("policy, number", [("SCHED_FIFO", 1), ("SCHED_RR", 2)])
def test_scheduler_realtime(runtime, make_bundle, policy, number):
    bundle = bundle_with(make_bundle, ["cat", "/proc/self/stat"],
                         process={"scheduler": {"policy": policy, "priority": 10}})
    f = stat_fields(run_ok(runtime, realtime_resources(bundle)))
    assert (f["policy"], f["rt_priority"], f["priority"]) == (number, 10, -11)


def test_scheduler_reset_on_fork(runtime, make_bundle):
    """The init (sh) runs SCHED_FIFO; a child it forks starts over as SCHED_OTHER. (The first
    cat is a child; sh execs the last command itself.)"""
    bundle = bundle_with(make_bundle, ["sh", "-c", "cat /proc/self/stat; cat /proc/$$/stat"],
                         process={"scheduler": {"policy": "SCHED_FIFO", "priority": 5,
                                                "flags": ["SCHED_FLAG_RESET_ON_FORK"]}})
    child, init = (stat_fields(line) for line in run_ok(runtime, realtime_resources(bundle)).splitlines())
    assert (init["policy"], init["rt_priority"]) == (1, 5)
    assert (child["policy"], child["rt_priority"]) == (0, 0)


@pytest.mark.cgroup_v1_hybrid
def test_scheduler_realtime_without_cgroup_runtime(runtime, make_bundle):
    """The init sets its policy once it is in its cgroups (runc's order): in a cpu cgroup
    without realtime runtime, the kernel refuses, and the error says what to set. Set
    before the parent joined the init to its cgroups, the policy would be taken (the
    runtime's cgroup has runtime) and the join refused instead. Without mounts the init
    gets there first more often than not: five tries."""
    bundle = bundle_with(make_bundle, ["true"], process={"scheduler": {"policy": "SCHED_FIFO", "priority": 10}},
                         linux={"maskedPaths": [], "readonlyPaths": []})
    bundle.config["mounts"] = []
    bundle.write()
    for _ in range(5):
        fails(runtime, bundle, "process.scheduler: sched_setattr(SCHED_FIFO, priority 10): Operation not permitted",
              "linux.resources.cpu.realtimeRuntime")


SCHED_DEADLINE = {"policy": "SCHED_DEADLINE", "runtime": 1000000, "deadline": 8000000, "period": 10000000}


def sched_getattr(pid):
    """(policy, runtime, deadline, period) of another process, by sched_getattr(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(56)
    if libc.syscall(315, pid, buf, 56, 0) < 0:  # SYS_sched_getattr on x86_64
        raise OSError(ctypes.get_errno(), "sched_getattr")
    _size, policy, _flags, _nice, _prio, runtime, deadline, period = struct.unpack_from("IIQiIQQQ", buf.raw)
    return policy, runtime, deadline, period


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the syscall number is x86_64's")
def test_scheduler_deadline(runtime, make_bundle):
    """From the host, the created init's parameters; from inside, the policy after exec."""
    bundle = bundle_with(make_bundle, ["cat", "/proc/self/stat"], process={"scheduler": SCHED_DEADLINE})
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        assert sched_getattr(runtime.state(cid)["pid"]) == (6, 1000000, 8000000, 10000000)
    finally:
        runtime("delete", "--force", cid)
    assert stat_fields(run_ok(runtime, bundle))["policy"] == 6


# --- linux.memoryPolicy ---------------------------------------------------------------------

def first_numa_map(runtime, make_bundle, policy):
    """The policy column of the init's first mapping (proc(5) numa_maps)."""
    bundle = bundle_with(make_bundle, ["head", "-1", "/proc/self/numa_maps"], linux={"memoryPolicy": policy})
    return run_ok(runtime, bundle).split()[1]


@pytest.mark.parametrize("policy, shown", [
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}, "prefer"),  # "prefer (many)=...": split at the space
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0-1", "flags": ["MPOL_F_RELATIVE_NODES"]}, "interleave=relative:0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_DEFAULT"}, "default"),
])
def test_memory_policy(runtime, make_bundle, policy, shown):
    assert first_numa_map(runtime, make_bundle, policy) == shown


def test_no_memory_policy_is_default(runtime, make_bundle):
    assert run_ok(runtime, make_bundle("head", "-1", "/proc/self/numa_maps")).split()[1] == "default"


def test_memory_policy_on_a_node_the_host_lacks(runtime, make_bundle):
    with open("/sys/devices/system/node/online") as f:
        online = f.read().strip()
    absent = 63  # beyond this test host's nodes
    assert str(absent) not in online.replace("-", ",").split(",")
    bundle = bundle_with(make_bundle, ["true"], linux={"memoryPolicy": {"mode": "MPOL_BIND", "nodes": str(absent)}})
    fails(runtime, bundle, f"linux.memoryPolicy: set_mempolicy(MPOL_BIND, nodes {absent}; this host's nodes: {online})",
          "Invalid argument")


def _enosys_for_set_mempolicy():
    """preexec_fn: make set_mempolicy(2) fail with ENOSYS for this process and all it
    starts (a seccomp filter of our own), as on a kernel without CONFIG_NUMA."""
    libc = ctypes.CDLL(None, use_errno=True)
    # BPF: x86_64 and nr == 238 (set_mempolicy) → ERRNO(ENOSYS), else ALLOW
    insns = [(0x20, 0, 0, 4), (0x15, 0, 3, 0xC000003E), (0x20, 0, 0, 0), (0x15, 0, 1, 238),
             (0x06, 0, 0, 0x00050000 | 38), (0x06, 0, 0, 0x7FFF0000)]
    prog = b"".join(struct.pack("HBBI", *i) for i in insns)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(insns), ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) < 0 or libc.syscall(317, 1, 0, ctypes.c_char_p(fprog)) < 0:
        os._exit(99)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter is x86_64's")
def test_memory_policy_without_numa_in_the_kernel(runtime, make_bundle):
    bundle = bundle_with(make_bundle, ["true"], linux={"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}})
    cid = runtime.new_id()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run([RUNTIME, "--root", runtime.root, "create", "--bundle", bundle.path, cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                              preexec_fn=_enosys_for_set_mempolicy, timeout=60)
        err.seek(0)
        lines = err.read().splitlines()
    assert proc.returncode not in (0, 99)
    assert lines == ["ociruntime: linux.memoryPolicy: this kernel has no NUMA memory policies "
                     "(set_mempolicy: Function not implemented)"]


# --- process.execCPUAffinity ----------------------------------------------------------------

def test_exec_cpu_affinity_is_not_the_inits(runtime, make_bundle):
    """The spec applies it to `exec`'d processes only: the init keeps the runtime's CPUs."""
    bundle = bundle_with(make_bundle, ["grep", "Cpus_allowed_list", "/proc/self/status"],
                         process={"execCPUAffinity": {"initial": "0", "final": "0"}})
    with open("/proc/self/status") as f:
        ours = next(line for line in f if line.startswith("Cpus_allowed_list")).split()[1]
    assert run_ok(runtime, bundle).split()[1] == ours


@pytest.mark.parametrize("field, value", [("initial", "3-1"), ("final", "0,1 2")])
def test_exec_cpu_affinity_bad_list(runtime, make_bundle, field, value):
    bundle = bundle_with(make_bundle, ["true"], process={"execCPUAffinity": {field: value}})
    fails(runtime, bundle, f"process.execCPUAffinity.{field}", repr(value))


# --- all four at once, in order -------------------------------------------------------------

@pytest.mark.parametrize("userns, prio, nice, mode, shown", [
    (False, 2, 3, "MPOL_INTERLEAVE", "interleave:0"),
    (True, 5, 4, "MPOL_BIND", "bind:0"),  # none needs the host's privileges at these values
], ids=["host", "user-namespace"])
def test_all_attributes_together(runtime, make_bundle, request, userns, prio, nice, mode, shown):
    bundle = bundle_with(make_bundle, ["sh", "-c", "uname -m; ionice -p $$; cat /proc/$$/stat; "
                                                   "head -1 /proc/$$/numa_maps"],
                         process={"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": prio},
                                  "scheduler": {"policy": "SCHED_BATCH", "nice": nice}},
                         linux={"personality": {"domain": "LINUX32"},
                                "memoryPolicy": {"mode": mode, "nodes": "0"}})
    if userns:
        request.getfixturevalue("traversable")
        in_user_namespace(bundle)
    machine, ionice, stat, numa = run_ok(runtime, bundle).splitlines()
    assert (machine, ionice, numa.split()[1]) == ("i686", f"best-effort: prio {prio}", shown)
    assert (stat_fields(stat)["policy"], stat_fields(stat)["nice"]) == (3, nice)


# --- in a user namespace --------------------------------------------------------------------

def in_user_namespace(bundle):
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        bundle.config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return bundle.write()


@pytest.mark.usefixtures("traversable")
def test_realtime_in_a_user_namespace_is_refused(runtime, make_bundle):
    """CAP_SYS_NICE inside a user namespace doesn't count: the kernel wants the host's, or
    an RLIMIT_RTPRIO that allows the priority. The error says so."""
    sched = {"scheduler": {"policy": "SCHED_FIFO", "priority": 5}}
    bundle = in_user_namespace(realtime_resources(bundle_with(make_bundle, ["true"], sched)))
    fails(runtime, bundle, "process.scheduler: sched_setattr(SCHED_FIFO, priority 5): Operation not permitted",
          "CAP_SYS_NICE in the host's user namespace or an RLIMIT_RTPRIO")


# --- refused --------------------------------------------------------------------------------

def test_intel_rdt_refused_with_the_reason(runtime, make_bundle):
    bundle = bundle_with(make_bundle, ["true"], linux={"intelRdt": {"closID": "x"}})
    reason = ("this host has no resctrl filesystem" if not os.path.exists("/sys/fs/resctrl")
              else "not implemented by this runtime")
    fails(runtime, bundle, "linux.intelRdt: ", reason)
