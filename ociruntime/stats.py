"""A container's resource usage, read from its cgroups (v1, v2 or a mix of both) into
the shape of runc's ``events`` data (runc's types/events.go): cpu, cpuset, memory,
pids, blkio, hugetlb. A controller the container has no cgroup for is left out."""

import posix

from .cgroups import UNIFIED, controller_path, pure_v2
from .pathnames import read_text

_MAX = 2**64 - 1  # what runc reports for "max" (no limit) on cgroup v2
_CLK_TCK = posix.sysconf("SC_CLK_TCK")


def _int(path, default=0):
    text = read_text(path)
    if text is None:
        return default
    return _MAX if text == "max" else int(text)


def _pairs(path):
    """A flat-keyed file ("key value" lines: cpu.stat, memory.stat...) as a dict."""
    out = {}
    for line in (read_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _nonzero(d):
    """runc's omitempty: zero and empty fields are left out of the JSON."""
    return {k: v for k, v in d.items() if v not in (0, None, [], {}, "")}


def _cpu_list(text):
    """"0-2,4" → [0, 1, 2, 4] (runc's cpuset stats)."""
    out = []
    for part in (text or "").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def hugepage_sizes():
    """The host's huge page sizes in cgroup file names: "2MB", "1GB"."""
    sizes = []
    try:
        names = posix.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return sizes
    for name in sorted(names):
        kb = int(name.removeprefix("hugepages-").removesuffix("kB"))
        for unit, size in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % size == 0:
                sizes.append(f"{kb // size}{unit}")
                break
    return sizes


def collect(paths):
    """runc's types.Stats for the container whose cgroups are ``paths``."""
    unified = paths.get(UNIFIED)
    only_v2 = pure_v2(paths)
    hugetlb_v1 = controller_path(paths, "hugetlb")  # else on cgroup2, also on a hybrid host

    def where(v1_name):
        """(directory, is_v2) holding a controller's files, or (None, False)."""
        found = controller_path(paths, v1_name)
        if found:
            return found, False
        return (unified, True) if only_v2 else (None, False)

    return {
        "cpu": _cpu(*where("cpuacct"), where("cpu")[0]),
        "cpuset": _cpuset(where("cpuset")[0]),
        "memory": _memory(*where("memory")),
        "pids": _pids(where("pids")[0]),
        "blkio": _blkio(*where("blkio")),
        "hugetlb": _hugetlb(hugetlb_v1 or unified, not hugetlb_v1),
        "intel_rdt": {},
        "network_interfaces": None,
    }


def _cpu(acct, v2, cpu):
    if acct is None:
        return {}
    if v2:
        st = _pairs(f"{acct}/cpu.stat")
        usage = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
                 "user": st.get("user_usec", 0) * 1000}
        throttling = {"periods": st.get("nr_periods", 0), "throttledPeriods": st.get("nr_throttled", 0),
                      "throttledTime": st.get("throttled_usec", 0) * 1000}
    else:
        ticks = _pairs(f"{acct}/cpuacct.stat")
        usage = {
            "total": _int(f"{acct}/cpuacct.usage"),
            "percpu": [int(n) for n in (read_text(f"{acct}/cpuacct.usage_percpu") or "").split()],
            "percpu_kernel": [int(n) for n in (read_text(f"{acct}/cpuacct.usage_percpu_sys") or "").split()],
            "percpu_user": [int(n) for n in (read_text(f"{acct}/cpuacct.usage_percpu_user") or "").split()],
            "kernel": ticks.get("system", 0) * 1_000_000_000 // _CLK_TCK,
            "user": ticks.get("user", 0) * 1_000_000_000 // _CLK_TCK,
        }
        st = _pairs(f"{cpu}/cpu.stat") if cpu else {}
        throttling = {"periods": st.get("nr_periods", 0), "throttledPeriods": st.get("nr_throttled", 0),
                      "throttledTime": st.get("throttled_time", 0)}
    out = {}
    usage = {k: v for k, v in usage.items() if k in ("kernel", "user") or v}  # kernel, user: no omitempty
    if any(usage.values()):
        out["usage"] = usage
    if any(throttling.values()):
        out["throttling"] = _nonzero(throttling)
    return out


_CPUSET_FLAGS = ("cpu_exclusive", "mem_hardwall", "mem_exclusive", "memory_migrate", "memory_spread_page",
                 "memory_spread_slab", "memory_pressure", "sched_load_balance", "sched_relax_domain_level")


def _cpuset(path):
    """The CPUs and memory nodes in effect, and the v1 flags (0 where there are none)."""
    out = {}
    if path:
        for kind in ("cpus", "mems"):  # v1's effective_*, v2's *.effective, else the setting
            names = (f"cpuset.effective_{kind}", f"cpuset.{kind}.effective", f"cpuset.{kind}")
            out[kind] = _cpu_list(next((t for t in (read_text(f"{path}/{n}") for n in names) if t), ""))
        out = _nonzero(out)
    return out | {name: _int(f"{path}/cpuset.{name}") if path else 0 for name in _CPUSET_FLAGS}


def _entry(usage, limit, peak, failcnt):
    """runc's MemoryEntry: limit and failcnt always there, usage and max only when set."""
    return {"limit": limit, **_nonzero({"usage": usage, "max": peak}), "failcnt": failcnt}


def _memory(path, v2):
    if path is None:
        return {}
    raw = _pairs(f"{path}/memory.stat")
    if v2:
        usage = _int(f"{path}/memory.current")
        limit = _int(f"{path}/memory.max", _MAX)
        swap = _int(f"{path}/memory.swap.current")
        swap_limit = _int(f"{path}/memory.swap.max", _MAX)
        failcnt = _pairs(f"{path}/memory.events").get("max", 0)
        out = {"cache": raw.get("file", 0),
               "usage": _entry(usage, limit, _int(f"{path}/memory.peak"), failcnt),
               "swap": _entry(swap + usage, _MAX if _MAX in (limit, swap_limit) else limit + swap_limit,
                              _int(f"{path}/memory.swap.peak"), 0)}
    else:
        def entry(prefix):
            return _entry(_int(f"{path}/{prefix}usage_in_bytes"), _int(f"{path}/{prefix}limit_in_bytes"),
                          _int(f"{path}/{prefix}max_usage_in_bytes"), _int(f"{path}/{prefix}failcnt"))

        out = {"cache": raw.get("cache", 0), "usage": entry("memory."), "swap": entry("memory.memsw."),
               "kernel": entry("memory.kmem."), "kernelTCP": entry("memory.kmem.tcp.")}
    out["raw"] = raw
    return _nonzero(out)


def _pids(path):
    if path is None:
        return {}
    limit = _int(f"{path}/pids.max")
    return _nonzero({"current": _int(f"{path}/pids.current"), "limit": 0 if limit == _MAX else limit})


def _blkio(path, v2):
    if path is None:
        return {}
    if v2:
        served, bytes_ = [], []
        for line in (read_text(f"{path}/io.stat") or "").splitlines():
            device, *fields = line.split()
            major, minor = (int(n) for n in device.split(":"))
            values = dict(f.split("=") for f in fields)
            for key, op, out in (("rbytes", "Read", bytes_), ("wbytes", "Write", bytes_),
                                 ("rios", "Read", served), ("wios", "Write", served)):
                if key in values:
                    out.append(_nonzero({"major": major, "minor": minor, "op": op, "value": int(values[key])}))
        return _nonzero({"ioServiceBytesRecursive": bytes_, "ioServicedRecursive": served})

    def entries(name):
        out = []
        for line in (read_text(f"{path}/blkio.{name}") or "").splitlines():
            fields = line.split()
            if len(fields) == 3:
                major, minor = (int(n) for n in fields[0].split(":"))
                out.append(_nonzero({"major": major, "minor": minor, "op": fields[1], "value": int(fields[2])}))
        return out

    return _nonzero({"ioServiceBytesRecursive": entries("throttle.io_service_bytes_recursive"),
                     "ioServicedRecursive": entries("throttle.io_serviced_recursive")})


def _hugetlb(path, v2):
    out = {}
    if path is None:
        return out
    for size in hugepage_sizes():
        prefix = f"{path}/hugetlb.{size}"
        if v2:
            if read_text(f"{prefix}.current") is None:
                continue
            out[size] = {**_nonzero({"usage": _int(f"{prefix}.current")}),
                         "failcnt": _pairs(f"{prefix}.events").get("max", 0)}
        elif read_text(f"{prefix}.usage_in_bytes") is not None:
            out[size] = {**_nonzero({"usage": _int(f"{prefix}.usage_in_bytes"),
                                     "max": _int(f"{prefix}.max_usage_in_bytes")}),
                         "failcnt": _int(f"{prefix}.failcnt")}
    return out


def oom_kills(paths):
    """How many processes the kernel's OOM killer took from the container so far."""
    memory = controller_path(paths, "memory")
    if memory:
        return _pairs(f"{memory}/memory.oom_control").get("oom_kill", 0)
    if UNIFIED in paths:
        return _pairs(f"{paths[UNIFIED]}/memory.events").get("oom_kill", 0)
    return 0
