"""The runtime's stats (``api.stats``: runc's ``events --stats`` data) as the metrics
containerd decodes from a shim's Stats: ``io.containerd.cgroups.v1.Metrics`` on a host with
cgroup v1 controllers (hybrid included), ``io.containerd.cgroups.v2.Metrics`` on a pure
cgroup v2 host, as containerd-shim-runc-v2 chooses (cgroups.Mode() == Unified); and the
OOM-kill counter the shim watches for TaskOOM."""

import posix

from .protocol import message

_V1_MEMORY_KEYS = {"pgpgin": "pg_pg_in", "pgpgout": "pg_pg_out", "pgfault": "pg_fault", "pgmajfault": "pg_maj_fault",
                   "hierarchical_memsw_limit": "hierarchical_swap_limit"}


def unified_host():
    try:
        posix.stat("/sys/fs/cgroup/cgroup.controllers")
        return True
    except OSError:
        return False


def convert(stats, unified=None):
    """A Metrics message from api.stats' dict."""
    if unified_host() if unified is None else unified:
        return _v2(stats)
    return _v1(stats)


def _v1(stats):
    m = message("io.containerd.cgroups.v1.Metrics")()
    cpu, memory, pids = stats.get("cpu") or {}, stats.get("memory") or {}, stats.get("pids") or {}
    usage = cpu.get("usage") or {}
    m.cpu.usage.total = usage.get("total", 0)
    m.cpu.usage.kernel = usage.get("kernel", 0)
    m.cpu.usage.user = usage.get("user", 0)
    m.cpu.usage.per_cpu.extend(usage.get("percpu") or [])
    throttling = cpu.get("throttling") or {}
    m.cpu.throttling.periods = throttling.get("periods", 0)
    m.cpu.throttling.throttled_periods = throttling.get("throttledPeriods", 0)
    m.cpu.throttling.throttled_time = throttling.get("throttledTime", 0)
    m.pids.current = pids.get("current", 0)
    m.pids.limit = pids.get("limit", 0)
    fields = m.memory.DESCRIPTOR.fields_by_name
    for key, value in (memory.get("raw") or {}).items():
        name = _V1_MEMORY_KEYS.get(key) or _V1_MEMORY_KEYS.get(key.removeprefix("total_"), key.removeprefix("total_"))
        name = f"total_{name}" if key.startswith("total_") else name
        if name in fields and not fields[name].message_type:
            setattr(m.memory, name, value)
    for ours, theirs in (("usage", "usage"), ("swap", "swap"), ("kernel", "kernel"), ("kernelTCP", "kernel_tcp")):
        entry = memory.get(ours) or {}
        target = getattr(m.memory, theirs)
        for field in ("limit", "usage", "max", "failcnt"):
            setattr(target, field, entry.get(field, 0))
    blkio = stats.get("blkio") or {}
    for ours, theirs in (("ioServiceBytesRecursive", "io_service_bytes_recursive"),
                         ("ioServicedRecursive", "io_serviced_recursive")):
        for e in blkio.get(ours) or []:
            getattr(m.blkio, theirs).add(op=e.get("op", ""), major=e.get("major", 0), minor=e.get("minor", 0),
                                         value=e.get("value", 0))
    for size, h in sorted((stats.get("hugetlb") or {}).items()):
        m.hugetlb.add(pagesize=size, usage=h.get("usage", 0), max=h.get("max", 0), failcnt=h.get("failcnt", 0))
    return m


def _v2(stats):
    m = message("io.containerd.cgroups.v2.Metrics")()
    cpu, memory, pids = stats.get("cpu") or {}, stats.get("memory") or {}, stats.get("pids") or {}
    usage, throttling = cpu.get("usage") or {}, cpu.get("throttling") or {}
    m.cpu.usage_usec = usage.get("total", 0) // 1000
    m.cpu.user_usec = usage.get("user", 0) // 1000
    m.cpu.system_usec = usage.get("kernel", 0) // 1000
    m.cpu.nr_periods = throttling.get("periods", 0)
    m.cpu.nr_throttled = throttling.get("throttledPeriods", 0)
    m.cpu.throttled_usec = throttling.get("throttledTime", 0) // 1000
    m.pids.current = pids.get("current", 0)
    m.pids.limit = pids.get("limit", 0)
    fields = m.memory.DESCRIPTOR.fields_by_name
    for key, value in (memory.get("raw") or {}).items():
        if key in fields:
            setattr(m.memory, key, value)
    mem_usage, swap = memory.get("usage") or {}, memory.get("swap") or {}
    m.memory.usage = mem_usage.get("usage", 0)
    m.memory.usage_limit = mem_usage.get("limit", 0)
    m.memory.swap_usage = max(swap.get("usage", 0) - mem_usage.get("usage", 0), 0)  # runc adds memory to swap
    devices = {}  # (major, minor) → IOEntry's fields: runc's v2 stats come as v1-style entries
    blkio = stats.get("blkio") or {}
    for ours, read, write in (("ioServiceBytesRecursive", "rbytes", "wbytes"),
                              ("ioServicedRecursive", "rios", "wios")):
        for e in blkio.get(ours) or []:
            fields = devices.setdefault((e.get("major", 0), e.get("minor", 0)), {})
            if e.get("op") in ("Read", "Write"):
                fields[read if e["op"] == "Read" else write] = e.get("value", 0)
    for (major, minor), fields in sorted(devices.items()):
        m.io.usage.add(major=major, minor=minor, **fields)
    for size, h in sorted((stats.get("hugetlb") or {}).items()):
        m.hugetlb.add(pagesize=size, current=h.get("usage", 0), max=h.get("max", 0))
    return m


def oom_counter_file(pid):
    """The file whose ``oom_kill`` line counts the OOM kills in ``pid``'s memory cgroup."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}/memory.oom_control"
    for line in lines:
        if line.startswith("0::") and unified_host():
            return f"/sys/fs/cgroup{line[3:]}/memory.events"
    return None


def oom_kills(path):
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0
