"""One mountinfo parser (ociruntime/mountinfo.py) and what reads through it — the cgroup
hierarchies, this process's cgroups, a container's cgroup paths, the host mounts under a
rootfs — on /proc copies of several hosts' layouts (tests/fixtures/hosts/<host>/: the
files self/mountinfo, self/cgroup and cgroups, as under /proc):

- systemd-v1: every controller on v1, name=systemd with xattr and a release agent, and a
  3.10 kernel's controller order (cpuacct,cpu; net_prio,net_cls), as CentOS 7 mounts them;
- hybrid: v1 plus cgroup2 at /sys/fs/cgroup/unified with nsdelegate, as systemd's hybrid
  mode (Ubuntu 20.04) mounts it, cpuset with clone_children;
- pure-v2: cgroup2 alone at /sys/fs/cgroup with nsdelegate,memory_recursiveprot (Debian
  12), and a containerd rootfs;
- this-machine: this development machine's own (a line of the sandbox dropped, the memory
  cgroup's path renamed);
- edge-cases: escaped spaces, tabs, newlines and backslashes, optional fields, every
  non-controller v1 option, a hierarchy mounted twice, a path that looks like a separator,
  non-UTF-8 bytes, malformed lines.

native/launcher.c reads the cgroup mounts itself before Python starts; a harness built
from launcher.c's own functions reads the same fixtures and must agree.
"""

import os
import subprocess
from pathlib import Path

import pytest

from ociruntime import cgroups, hostmounts, mountinfo

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
NATIVE = Path(__file__).parent.parent / "native"


def proc(host):
    return str(HOSTS / host)


# --- the parser ----------------------------------------------------------------------------

def test_fields_optional_fields_and_super_options():
    (m,) = mountinfo.parse("33 31 0:33 /sub\\040dir /cg/cpu\\011set rw,relatime shared:6 master:2 propagate_from:1"
                           " - cgroup my\\040src rw,cpuset,release_agent=/bin/a\\054b\\040c,clone_children\n")
    assert (m.id, m.parent, m.root, m.point) == (33, 31, "/sub dir", "/cg/cpu\tset")
    assert m.options == ["rw", "relatime"] and m.optional == ["shared:6", "master:2", "propagate_from:1"]
    assert (m.fstype, m.source) == ("cgroup", "my src")
    assert m.super_options == ["rw", "cpuset", "release_agent=/bin/a,b c", "clone_children"]


@pytest.mark.parametrize("field, value", [
    ("a\\040b\\011c\\012d\\134e", "a b\tc\nd\\e"), ("plain", "plain"), ("\\134040", "\\040"),
    ("x\\4000", "x\\4000"), ("x\\000", "x\\000"), ("x\\08", "x\\08"), ("end\\04", "end\\04"), ("\\\\040", "\\ ")])
def test_unescape(field, value):
    assert mountinfo.unescape(field) == value


def test_edge_cases_fixture():
    mounts = mountinfo.mounts(proc("edge-cases"))
    by_id = {m.id: m for m in mounts}
    assert by_id[30].point == "/tmp/x - cgroup cgroup rw,memory" and by_id[30].fstype == "tmpfs"
    assert by_id[38].point == "/mnt/dätä\udcff\\x 0\\4000"  # undecodable bytes round-trip
    assert os.fsencode(by_id[38].point) == b"/mnt/d\xc3\xa4t\xc3\xa4\xff\\x 0\\4000"
    assert 43 not in by_id and len(mounts) == 15  # the two malformed lines are skipped
    assert [m.id for m in mountinfo.mounts(proc("edge-cases"), ("cgroup2",))] == [35]


# --- cgroup hierarchies, own cgroups, container paths ---------------------------------------

V1_PATHS = ["blkio", "cpu,cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "net_cls,net_prio",
            "perf_event", "pids"]

EXPECTED = {
    "systemd-v1": {
        "hierarchies": {"name=systemd": "systemd", "net_prio,net_cls": "net_cls,net_prio", "cpuacct,cpu": "cpu,cpuacct",
                        **{c: c for c in ["memory", "pids", "blkio", "perf_event", "freezer", "cpuset", "hugetlb",
                                          "devices"]}},
        "paths": {"name=systemd": "systemd/user.slice/user-0.slice/session-1.scope/c1",
                  "cpuacct,cpu": "cpu,cpuacct/user.slice/c1", "net_prio,net_cls": "net_cls,net_prio/c1",
                  "memory": "memory/user.slice/c1", "cpuset": "cpuset/c1"},
        "procs": "/sys/fs/cgroup/devices/user.slice/cgroup.procs",
    },
    "hybrid": {
        "hierarchies": {"": "unified", "name=systemd": "systemd", **{c: c for c in V1_PATHS + ["rdma"]}},
        "paths": {"": "unified/user.slice/user-1000.slice/c1",
                  "name=systemd": "systemd/user.slice/user-1000.slice/session-3.scope/c1",
                  "cpu,cpuacct": "cpu,cpuacct/user.slice/c1", "cpuset": "cpuset/c1",
                  "memory": "memory/user.slice/user-1000.slice/session-3.scope/c1"},
        "procs": "/sys/fs/cgroup/cpuset/cgroup.procs",
    },
    "pure-v2": {
        "hierarchies": {"": ""},
        "paths": {"": "user.slice/user-0.slice/c1"},
        "procs": "/sys/fs/cgroup/user.slice/user-0.slice/session-1.scope/cgroup.procs",
    },
    "this-machine": {
        "hierarchies": {"": "unified", "name=systemd": "systemd", **{c: c for c in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]}},
        "paths": {"": "unified/c1", "memory": "memory/machine/session/c1", "cpu": "cpu/c1"},
        "procs": "/sys/fs/cgroup/systemd/cgroup.procs",
    },
}


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_hierarchies_own_cgroups_and_container_paths(host):
    expected = EXPECTED[host]
    found = cgroups.hierarchies(proc(host))
    assert found == {k: f"/sys/fs/cgroup/{v}".rstrip("/") for k, v in expected["hierarchies"].items()}
    own = cgroups.own_cgroups(proc(host))
    assert set(own) == set(found), "every hierarchy /proc/self/cgroup names is found, under that name"
    paths = cgroups.container_paths(None, "c1", proc(host))
    assert set(paths) == set(found)
    for key, rel in expected["paths"].items():
        assert paths[key] == f"/sys/fs/cgroup/{rel}", key
    assert cgroups.container_paths("/abs/c1", "ignored", proc(host)) == {k: f"{v}/abs/c1" for k, v in found.items()}
    assert cgroups.own_procs(proc(host)) == expected["procs"]
    assert cgroups.pure_v2(found) == (host == "pure-v2")


def test_edge_case_hierarchies():
    assert cgroups.hierarchies(proc("edge-cases")) == {
        "name=my.tree": "/cg/named tree", "cpuset": "/cg/cpu\tset",
        "memory": "/cg/back\\slash",  # its first mount, not /mnt/memory again
        "": "/cg/unified v2", "cpu,cpuacct": "/mnt/cpu\nacct"}
    assert cgroups.own_procs(proc("edge-cases")) == "/cg/named tree/a b/cgroup.procs"


@pytest.mark.parametrize("options, key", [
    (["rw", "xattr", "name=systemd"], "name=systemd"),
    (["rw", "xattr", "release_agent=/usr/lib/systemd/systemd-cgroups-agent", "name=systemd"], "name=systemd"),
    (["ro", "cpuacct", "cpu"], "cpuacct,cpu"),
    (["rw", "cpuset", "noprefix", "cpuset_v2_mode", "favordynmods", "clone_children"], "cpuset"),
    (["rw", "nsdelegate", "memory_recursiveprot", "memory"], "memory"),
    (["rw", "xattr"], ""),
])
def test_a_v1_key_is_its_controllers_and_name(options, key):
    assert cgroups.hierarchy_key(options, {"cpu", "cpuacct", "cpuset", "memory"}) == key


def test_this_hosts_live_layout_is_read_the_same_way():
    found = cgroups.hierarchies()
    assert set(cgroups.own_cgroups()) >= set(found)
    assert all(k == cgroups.UNIFIED or k in cgroups.own_cgroups() for k in found)


# --- the host mounts under a rootfs ---------------------------------------------------------

@pytest.mark.parametrize("host, rootfs, ids", [
    ("edge-cases", "/run/bundle one/rootfs", [39, 40, 42]),  # not the sibling rootfs2
    ("edge-cases", "/run/bundle one/rootfs/data\ttab", [40, 42]),
    ("pure-v2", "/var/lib/containerd/io.containerd.runtime.v2.task/default/web/rootfs", [612]),
    ("hybrid", "/nowhere", []),
])
def test_host_mounts_under_a_rootfs(host, rootfs, ids):
    assert hostmounts.present(rootfs, proc(host)) == ids


# --- native/launcher.c reads the same -------------------------------------------------------

HARNESS = r"""
#define main launcher_main
#include "launcher.c"
#undef main

/* argv[1]: a /proc (or a copy). Writes "<key>\0<mount point>\0" for the first mount of
 * each hierarchy, as cgroups.hierarchies lists them, then "procs\0<own_procs or empty>\0". */
int main(int argc, char **argv)
{
    char controllers[4096], path[4096], key[256], seen[64][256], procs[4096], *point, *line = NULL;
    size_t size = 0;
    int nseen = 0;
    FILE *f;

    if (argc != 2)
        return 2;
    read_controllers(argv[1], controllers, sizeof(controllers));
    snprintf(path, sizeof(path), "%s/self/mountinfo", argv[1]);
    if (!(f = fopen(path, "r")))
        return 2;
    while (getline(&line, &size, f) > 0) {
        int i = 0;

        if (!cgroup_mount(line, controllers, key, sizeof(key), &point))
            continue;
        while (i < nseen && strcmp(seen[i], key) != 0)
            i++;
        if (i < nseen || nseen == 64)
            continue;
        snprintf(seen[nseen++], sizeof(seen[0]), "%s", key);
        printf("%s%c%s%c", key, 0, point, 0);
    }
    printf("procs%c%s%c", 0, own_procs(argv[1], procs, sizeof(procs)) ? procs : "", 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def launcher_harness(tmp_path_factory):
    """launcher.c's own functions, compiled with a main that prints what they find."""
    tmp = tmp_path_factory.mktemp("harness")
    (tmp / "harness.c").write_text(HARNESS)
    binary = tmp / "harness"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(NATIVE), "-o", str(binary),
                    str(tmp / "harness.c"), str(NATIVE / "exeseal.c"), '-DOCI_PYTHON="/nonexistent"',
                    '-DOCI_SCRIPT="/nonexistent"', '-DOCI_VALUE_OPTIONS="--root"',
                    '-DOCI_EXESEAL_EMPTY_DIR="/nonexistent"'], check=True)

    def run(proc_dir):
        out = subprocess.run([str(binary), proc_dir], capture_output=True, check=True).stdout
        words = os.fsdecode(out).split("\0")[:-1]
        pairs = list(zip(words[::2], words[1::2], strict=True))
        assert pairs[-1][0] == "procs"
        return dict(pairs[:-1]), pairs[-1][1] or None
    return run


@pytest.mark.parametrize("host", sorted(p.name for p in HOSTS.iterdir()) + ["/proc"])
def test_the_launcher_reads_cgroup_mounts_as_python_does(launcher_harness, host):
    proc_dir = host if host.startswith("/") else proc(host)
    found, procs = launcher_harness(proc_dir)
    assert list(found.items()) == list(cgroups.hierarchies(proc_dir).items())
    assert procs == cgroups.own_procs(proc_dir)
    assert found, "each fixture mounts some hierarchy"
