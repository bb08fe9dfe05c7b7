"""This development machine's cgroup layout, which the tests marked ``cgroup_v1_hybrid``
assume (their paths, the controllers they find or miss, the realtime budget they need):
conftest.py deselects them on a host without it, as it deselects ``cgroup_v2`` tests on
a host that isn't pure v2."""

import os

V1 = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")


def hybrid_v1_layout():
    """v1 controllers each at /sys/fs/cgroup/<controller>, no net_cls hierarchy, RT group
    scheduling in the cpu hierarchy, and cgroup2 at /sys/fs/cgroup/unified carrying only
    hugetlb."""
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            unified = f.read().split()
    except OSError:
        return False
    return (unified == ["hugetlb"] and all(os.path.isfile(f"/sys/fs/cgroup/{c}/cgroup.procs") for c in V1)
            and not os.path.exists("/sys/fs/cgroup/net_cls")
            and os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"))
