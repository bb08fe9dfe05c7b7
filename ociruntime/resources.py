"""linux.resources → the cgroup file writes that apply it: one resource model, two
backends (v1 files, v2 files), picked per controller from where the host has it — on a
hybrid host some controllers are v1 and others (here: hugetlb) live on cgroup2.

Pure: ``writes`` takes the host's controller layout as data, so it is unit-tested
without root; ``cgroups.apply`` carries the writes out. A setting this host can't
apply is an error naming the field; only the kernel-memory limits, which kernels
dropped, are accepted with a warning, as runc does.
"""

import math

from .errors import ConfigError
from .log import warn

V1, V2 = "v1", "v2"

# How a failed write is handled by cgroups.apply (the write's "on_error"):
RETRY = "retry"  # EINVAL: retry once after the controller's other writes (inter-dependent pairs)
OPTIONAL = "optional"  # the file missing is fine (e.g. hugetlb.*.rsvd on older kernels)
DROPPED = "dropped"  # missing or refused: the kernel dropped this knob; warn, go on

DEFAULT_CFS_PERIOD = 100000  # µs, the kernel's default, used when only a quota is given


def write(at, file, value, label, on_error=None, alt=None):
    """One write into the hierarchy ``at`` = (version, controller). ``alt`` (file, value)
    is used instead when ``file`` doesn't exist (blkio.weight or the BFQ scheduler's
    blkio.bfq.weight, whichever the kernel has)."""
    return {"version": at[0], "controller": at[1], "file": file, "value": str(value), "label": label,
            "on_error": on_error, "alt": (alt[0], str(alt[1])) if alt else None}


def cpu_shares_to_weight(shares):
    """runc's cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000]: a quadratic in
    log2 that maps the minimum, the default (1024 → 100) and the maximum onto each other."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    lg = math.log2(shares)
    return math.ceil(10 ** ((lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0))


def blkio_weight_to_io_weight(weight):
    """runc's linear map of blkio weight [10, 1000] onto io.weight [1, 10000]."""
    return 1 + (weight - 10) * 9999 // 990


def swap_to_v2(swap, memory):
    """OCI's swap is memory+swap; cgroup v2's memory.swap.max is swap alone (runc's rules).
    Returns the value to write, or None for "leave it"."""
    if memory == -1 and swap is None:
        return "max"  # unlimited memory with swap unset: unlimited swap, as on v1
    if swap is None or swap == 0:
        return None
    if swap == -1 or memory == -1:
        return "max" if swap == -1 else swap
    if memory is None or memory == 0:
        raise ConfigError("linux.resources.memory.swap", "needs memory.limit: cgroup v2 limits swap apart from memory")
    if swap < memory:
        raise ConfigError("linux.resources.memory.swap", f"{swap} is below memory.limit {memory} (swap counts both)")
    return swap - memory


def _v2_max(value):
    return "max" if value == -1 else value


class Host:
    """Where each controller lives: ``versions`` maps a controller name (v1's "blkio",
    v2's "io") to V1 or V2; ``pure_v2`` is a host with only the unified hierarchy."""

    def __init__(self, versions, pure_v2=False):
        self.versions = versions
        self.pure_v2 = pure_v2

    def where(self, label, v1_name, v2_name=None):
        """(version, controller) for a resource group, or an error naming it. ``v2_name``
        defaults to ``v1_name``; "" for a controller cgroup v2 doesn't have."""
        v2_name = v1_name if v2_name is None else v2_name
        if self.versions.get(v1_name) == V1:
            return V1, v1_name
        if v2_name and self.versions.get(v2_name) == V2:
            return V2, v2_name
        names = v1_name if v2_name in ("", v1_name) else f"{v1_name} (v1) or {v2_name} (v2)"
        raise ConfigError(label, f"this host has no {names} cgroup controller")


def writes(resources, host):
    """The writes for ``resources`` (a LinuxResources object; devices excepted, see
    linux/devices and linux/devicefilter), in the order they must happen."""
    out = []
    r = resources or {}
    for key, fn in (("pids", _pids), ("memory", _memory), ("blockIO", _block_io), ("cpu", _cpu),
                    ("hugepageLimits", _hugepages), ("network", _network), ("rdma", _rdma),
                    ("unified", _unified)):
        if r.get(key) not in (None, {}, []):
            out.extend(fn(r[key], host, f"linux.resources.{key}"))
    return out


def _pids(pids, host, label):
    at = host.where(label, "pids")
    limit = pids.get("limit")
    if limit is None:
        return []
    value = limit if limit > 0 else ("1" if limit == 0 else "max")  # runc: 0 → 1, as systemd does
    return [write(at, "pids.max", value, f"{label}.limit")]


def _memory(mem, host, label):
    at = host.where(label, "memory")
    version = at[0]
    out = []
    for field in ("kernel", "kernelTCP"):
        if mem.get(field) is not None and version == V2:
            warn(f"{label}.{field}: cgroup v2 has no kernel memory limit; ignored")
    limit, swap = mem.get("limit"), mem.get("swap")
    if version == V1:
        if limit:
            out.append(write(at, "memory.limit_in_bytes", limit, f"{label}.limit", RETRY))
        if swap:
            out.append(write(at, "memory.memsw.limit_in_bytes", swap, f"{label}.swap", RETRY))
        elif limit == -1:
            out.append(write(at, "memory.memsw.limit_in_bytes", -1, f"{label}.swap", OPTIONAL))
        if mem.get("reservation"):
            out.append(write(at, "memory.soft_limit_in_bytes", mem["reservation"], f"{label}.reservation"))
        if mem.get("kernel") is not None:
            out.append(write(at, "memory.kmem.limit_in_bytes", mem["kernel"], f"{label}.kernel", DROPPED))
        if mem.get("kernelTCP") is not None:
            out.append(write(at, "memory.kmem.tcp.limit_in_bytes", mem["kernelTCP"], f"{label}.kernelTCP", DROPPED))
        if mem.get("disableOOMKiller"):
            out.append(write(at, "memory.oom_control", 1, f"{label}.disableOOMKiller"))
        swappiness = mem.get("swappiness")
        if swappiness is not None and swappiness != -1:  # runc: -1 (as uint64) means "unset"
            if swappiness > 100:
                raise ConfigError(f"{label}.swappiness", f"{swappiness} is out of range (0-100)")
            out.append(write(at, "memory.swappiness", swappiness, f"{label}.swappiness"))
        if mem.get("useHierarchy") is not None:
            out.append(write(at, "memory.use_hierarchy", int(mem["useHierarchy"]), f"{label}.useHierarchy"))
        return out
    for field, ok in (("swappiness", None), ("disableOOMKiller", False), ("useHierarchy", True)):
        if mem.get(field) not in (None, ok):
            raise ConfigError(f"{label}.{field}", "cgroup v2 has no such setting")
    swap_value = swap_to_v2(swap, limit)
    if swap_value is not None:
        on_error = OPTIONAL if swap_value in ("max", 0) else None  # no swap: nothing to limit
        out.append(write(at, "memory.swap.max", swap_value, f"{label}.swap", on_error))
    if limit:
        out.append(write(at, "memory.max", _v2_max(limit), f"{label}.limit"))
    if mem.get("reservation"):
        out.append(write(at, "memory.low", _v2_max(mem["reservation"]), f"{label}.reservation"))
    return out


def _cpu(cpu, host, label):
    out = []
    if cpu.get("cpus") or cpu.get("mems"):
        cpuset = host.where(label, "cpuset")
        for field in ("cpus", "mems"):
            if cpu.get(field):
                out.append(write(cpuset, f"cpuset.{field}", cpu[field], f"{label}.{field}"))
    knobs = ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")
    if all(cpu.get(k) is None for k in knobs):
        return out
    at = host.where(label, "cpu")
    version = at[0]
    shares, quota, period, burst = cpu.get("shares"), cpu.get("quota"), cpu.get("period"), cpu.get("burst")
    if version == V1:
        if shares:
            out.append(write(at, "cpu.shares", shares, f"{label}.shares"))
        if period:
            out.append(write(at, "cpu.cfs_period_us", period, f"{label}.period", RETRY))
        if burst is not None:
            out.append(write(at, "cpu.cfs_burst_us", burst, f"{label}.burst", RETRY))
        if quota:
            out.append(write(at, "cpu.cfs_quota_us", quota, f"{label}.quota"))
        if cpu.get("realtimePeriod"):
            out.append(write(at, "cpu.rt_period_us", cpu["realtimePeriod"], f"{label}.realtimePeriod", RETRY))
        if cpu.get("realtimeRuntime"):
            out.append(write(at, "cpu.rt_runtime_us", cpu["realtimeRuntime"], f"{label}.realtimeRuntime"))
        if cpu.get("idle") is not None:
            out.append(write(at, "cpu.idle", cpu["idle"], f"{label}.idle"))
        return out
    for field in ("realtimeRuntime", "realtimePeriod"):
        if cpu.get(field):
            raise ConfigError(f"{label}.{field}", "cgroup v2 has no realtime CPU budget")
    if cpu.get("idle") is not None:
        out.append(write(at, "cpu.idle", cpu["idle"], f"{label}.idle"))
    if shares:
        out.append(write(at, "cpu.weight", cpu_shares_to_weight(shares), f"{label}.shares"))
    if burst is not None:
        out.append(write(at, "cpu.max.burst", burst, f"{label}.burst", RETRY))
    if quota or period:
        value = f"{quota if quota and quota > 0 else 'max'} {period or DEFAULT_CFS_PERIOD}"
        out.append(write(at, "cpu.max", value, f"{label}.quota"))
    return out


def _device(d):
    return f"{d['major']}:{d['minor']}"


# (OCI field, v1 blkio.throttle.* file, v2 io.max key)
_THROTTLES = (("throttleReadBpsDevice", "read_bps_device", "rbps"),
              ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
              ("throttleReadIOPSDevice", "read_iops_device", "riops"),
              ("throttleWriteIOPSDevice", "write_iops_device", "wiops"))


def _block_io(bio, host, label):
    at = host.where(label, "blkio", "io")
    version = at[0]
    out = []
    weight = bio.get("weight")
    if version == V1:
        if weight:
            out.append(write(at, "blkio.weight", weight, f"{label}.weight", alt=("blkio.bfq.weight", weight)))
        if bio.get("leafWeight"):
            out.append(write(at, "blkio.leaf_weight", bio["leafWeight"], f"{label}.leafWeight"))
        for i, d in enumerate(bio.get("weightDevice") or []):
            if d.get("weight"):
                line = f"{_device(d)} {d['weight']}"
                out.append(write(at, "blkio.weight_device", line, f"{label}.weightDevice[{i}].weight",
                                 alt=("blkio.bfq.weight_device", line)))
            if d.get("leafWeight"):
                out.append(write(at, "blkio.leaf_weight_device", f"{_device(d)} {d['leafWeight']}",
                                 f"{label}.weightDevice[{i}].leafWeight"))
        for field, v1_file, _ in _THROTTLES:
            for i, d in enumerate(bio.get(field) or []):
                out.append(write(at, f"blkio.throttle.{v1_file}", f"{_device(d)} {d.get('rate', 0)}",
                                 f"{label}.{field}[{i}]"))
        return out
    if bio.get("leafWeight"):
        raise ConfigError(f"{label}.leafWeight", "cgroup v2 has no leaf weight")
    if weight:
        out.append(write(at, "io.bfq.weight", weight, f"{label}.weight",
                         alt=("io.weight", blkio_weight_to_io_weight(weight))))
    for i, d in enumerate(bio.get("weightDevice") or []):
        if d.get("leafWeight"):
            raise ConfigError(f"{label}.weightDevice[{i}].leafWeight", "cgroup v2 has no leaf weight")
        if d.get("weight"):
            out.append(write(at, "io.bfq.weight", f"{_device(d)} {d['weight']}", f"{label}.weightDevice[{i}].weight",
                             alt=("io.weight", f"{_device(d)} {blkio_weight_to_io_weight(d['weight'])}")))
    for field, _, key in _THROTTLES:
        for i, d in enumerate(bio.get(field) or []):
            out.append(write(at, "io.max", f"{_device(d)} {key}={d.get('rate', 0)}", f"{label}.{field}[{i}]"))
    return out


def _hugepages(limits, host, label):
    at = host.where(label, "hugetlb")
    version = at[0]
    suffix = ".limit_in_bytes" if version == V1 else ".max"
    out = []
    for i, h in enumerate(limits):
        prefix = f"hugetlb.{h['pageSize']}"
        out.append(write(at, prefix + suffix, h["limit"], f"{label}[{i}]"))
        out.append(write(at, prefix + ".rsvd" + suffix, h["limit"], f"{label}[{i}]", OPTIONAL))
    return out


def _network(net, host, label):
    out = []
    if net.get("classID") is not None:
        at = host.where(f"{label}.classID", "net_cls", "")
        out.append(write(at, "net_cls.classid", net["classID"], f"{label}.classID"))
    for i, p in enumerate(net.get("priorities") or []):
        at = host.where(f"{label}.priorities", "net_prio", "")
        out.append(write(at, "net_prio.ifpriomap", f"{p['name']} {p['priority']}", f"{label}.priorities[{i}]"))
    return out


def _rdma(rdma, host, label):
    at = host.where(label, "rdma")
    out = []
    for device, limit in rdma.items():
        parts = [f"{name}={limit[key]}" for key, name in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object"))
                 if limit.get(key) is not None]
        if parts:
            out.append(write(at, "rdma.max", f"{device} {' '.join(parts)}", f"{label}.{device}"))
    return out


def _unified(unified, host, label):
    if not host.pure_v2:
        raise ConfigError(label, "needs a cgroup v2 host (this one has cgroup v1 controllers)")
    out = []
    for key, value in unified.items():
        controller, dot, param = key.partition(".")
        if "/" in key or not dot or not param or key.startswith("."):
            raise ConfigError(f"{label}.{key}", "must be a cgroup file name of the form controller.parameter")
        if controller != "cgroup" and host.versions.get(controller) != V2:
            raise ConfigError(f"{label}.{key}", f"this host has no {controller} cgroup v2 controller")
        out.append(write((V2, controller), key, value, f"{label}.{key}"))
    return out
