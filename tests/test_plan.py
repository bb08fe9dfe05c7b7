"""Unit tests of ociruntime.plan.build(): config.json -> the ordered steps the init runs.
Pure: no root, no containers (an empty rootfs directory is enough)."""

import copy
import os

import pytest

from ociruntime import plan
from ociruntime.errors import ConfigError
from ociruntime.linux import mountopts as mo
from ociruntime.linux import namespaces as ns
from ociruntime.spec import default_config


@pytest.fixture(autouse=True)
def all_caps_available(monkeypatch):
    """build() checks the configured capabilities against the runtime's own; pretend it
    holds them all so these tests don't depend on who runs them."""
    from ociruntime.linux import capabilities

    if hasattr(capabilities, "own_permitted"):
        monkeypatch.setattr(capabilities, "own_permitted", lambda: (1 << 64) - 1)


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def config(**top):
    c = copy.deepcopy(default_config())
    c["process"]["terminal"] = False
    c["process"]["args"] = ["true"]
    c.update(top)
    return c


def build(cfg, bundle, cgroup_paths=None, **kw):
    return plan.build(cfg, str(bundle), "cid", cgroup_paths=cgroup_paths if cgroup_paths is not None else {}, **kw)


def ops(p):
    """The step ops with consecutive repeats collapsed."""
    out = []
    for s in p["steps"]:
        if not out or out[-1] != s["op"]:
            out.append(s["op"])
    return out


def steps(p, op, label=None):
    return [s for s in p["steps"] if s["op"] == op and (label is None or s["label"] == label)]


def refused(cfg, bundle, path, *words, **kw):
    with pytest.raises(ConfigError) as e:
        build(cfg, bundle, **kw)
    assert e.value.path == path, str(e.value)
    for w in words:
        assert w in str(e.value)
    assert str(e.value).startswith(path + ": ")
    return e.value


# --- order ----------------------------------------------------------------------------------

HOOK = [{"path": "/bin/true"}]


def test_default_config_step_order(bundle):
    """No hooks, no cgroup mount: the init never stops for the parent before 'R'."""
    p = build(config(), bundle)
    assert ops(p) == ["propagation", "bind_rootfs", "mount", "mknod", "symlink", "mkdir",
                      "pivot", "remount_root", "readonly", "mask", "hostname"]
    assert not p["waits_for_parent"] and not p["stops_at_hooks"]


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_a_hook_before_pivot_makes_the_init_stop_for_it(bundle, kind):
    p = build(config(hooks={kind: HOOK}), bundle)
    order = ops(p)
    assert order[order.index("mkdir"):order.index("pivot")] == ["mkdir", "wait_parent", "hooks"]
    assert p["waits_for_parent"] and p["stops_at_hooks"]


@pytest.mark.parametrize("kind", ["startContainer", "poststart", "poststop"])
def test_later_hooks_need_no_stop_before_pivot(bundle, kind):
    p = build(config(hooks={kind: HOOK}), bundle)
    assert "hooks" not in ops(p) and not p["stops_at_hooks"]


def test_full_step_order(bundle):
    cfg = config(domainname="example.test", hooks={"prestart": HOOK})
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}
    cfg["linux"]["devices"] = [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]
    p = build(cfg, bundle)
    order = ops(p)
    assert order[:order.index("pivot") + 1] == ["propagation", "bind_rootfs", "mount", "mknod", "symlink", "mkdir",
                                                "wait_parent", "hooks", "pivot"]
    after = [o for o in order[order.index("pivot") + 1:] if o != "propagation"]
    assert after == ["sysctl", "remount_root", "readonly", "mask", "hostname", "domainname"]


def test_wait_parent_before_the_first_step_reading_a_cgroup_dir(bundle):
    """The init builds mounts while the parent makes the cgroups; it must wait before the
    cgroup mount binds the container's cgroup directories."""
    paths = {"memory": "/sys/fs/cgroup/memory/c1", "pids": "/sys/fs/cgroup/pids/c1"}
    p = build(config(), bundle, cgroup_paths=paths)
    order = [s["op"] for s in p["steps"]]
    first_cgroup_read = next(i for i, s in enumerate(p["steps"]) if (s["src"] or "").startswith(tuple(paths.values())))
    assert order.count("wait_parent") == 1 and order.index("wait_parent") == first_cgroup_read - 1
    assert not p["early_sync"]


def test_user_namespace_syncs_first_thing(bundle):
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    p = build(cfg, bundle)
    assert p["early_sync"] and "wait_parent" not in ops(p)


def test_one_pivot_one_hooks_point_one_bind_rootfs(bundle):
    p = build(config(hooks={"createRuntime": HOOK}), bundle)
    assert [len(steps(p, op)) for op in ("pivot", "hooks", "bind_rootfs", "mkdir")] == [1, 1, 1, 1]
    assert steps(p, "pivot")[0]["flags"] == 0
    assert steps(p, "mkdir")[0]["dst"] == "/"


def test_mounts_in_config_order_with_labels(bundle):
    cfg = config()
    p = build(cfg, bundle)
    labels = []
    for s in steps(p, "mount"):
        if not labels or labels[-1] != s["label"]:
            labels.append(s["label"])
    assert labels == [f"mounts[{i}]" for i in range(len(cfg["mounts"]))]


def test_mounts_before_devices_before_cwd(bundle):
    """Devices go into the /dev tmpfs, so after the mounts; the cwd after both (it may be in a mount)."""
    cfg = config()
    cfg["process"]["cwd"] = "/work"
    p = build(cfg, bundle)
    kinds = [s["op"] for s in p["steps"]]
    last_mount = max(i for i, k in enumerate(kinds) if k == "mount")
    assert last_mount < kinds.index("mknod") < kinds.index("mkdir") < kinds.index("pivot")
    assert steps(p, "mkdir")[0]["dst"] == "/work" and p["process"]["cwd"] == "/work"


def test_sysctl_steps(bundle):
    cfg = config()
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "8192"}
    p = build(cfg, bundle)
    got = {s["label"]: (s["dst"], s["src"]) for s in steps(p, "sysctl")}
    assert got == {"linux.sysctl.net.ipv4.ip_forward": ("/proc/sys/net/ipv4/ip_forward", "1"),
                   "linux.sysctl.kernel.msgmax": ("/proc/sys/kernel/msgmax", "8192")}


def test_readonly_and_masked_paths_labels(bundle):
    cfg = config()
    p = build(cfg, bundle)
    ro = steps(p, "readonly")
    masks = steps(p, "mask")
    assert [s["dst"] for s in ro] == cfg["linux"]["readonlyPaths"]
    assert [s["label"] for s in ro] == [f"linux.readonlyPaths[{i}]" for i in range(len(ro))]
    assert [s["dst"] for s in masks] == cfg["linux"]["maskedPaths"]
    assert [s["label"] for s in masks] == [f"linux.maskedPaths[{i}]" for i in range(len(masks))]


def test_readonly_root(bundle):
    cfg = config()
    (rr,) = steps(build(cfg, bundle), "remount_root")
    assert rr["flags"] & mo.MS_RDONLY and rr["dst"] == "/"
    cfg["root"]["readonly"] = False
    assert steps(build(cfg, bundle), "remount_root") == []


def test_hostname_and_domainname_steps(bundle):
    p = build(config(hostname="h1", domainname="d1"), bundle)
    assert [(s["op"], s["src"]) for s in p["steps"][-2:]] == [("hostname", "h1"), ("domainname", "d1")]
    cfg = config()
    del cfg["hostname"]
    assert steps(build(cfg, bundle), "hostname") == []


def test_default_propagation_is_rslave(bundle):
    p = build(config(), bundle)
    first = p["steps"][0]
    assert first["op"] == "propagation" and first["dst"] == "/"
    assert first["propagation"] == mo.MS_SLAVE | mo.MS_REC


@pytest.mark.parametrize("name", ["rprivate", "private", "rslave", "slave", "rshared", "shared"])
def test_rootfs_propagation_is_applied(bundle, name):
    cfg = config()
    cfg["linux"]["rootfsPropagation"] = name
    props = [s["propagation"] for s in steps(build(cfg, bundle), "propagation")]
    assert mo.PROPAGATION[name] in props or (props and props[-1] & ~mo.MS_REC == mo.PROPAGATION[name] & ~mo.MS_REC)


def test_no_pivot_flag(bundle):
    assert steps(build(config(), bundle, no_pivot=True), "pivot")[0]["flags"] != 0


def test_rootfs_is_resolved_absolute(bundle):
    os.symlink("rootfs", bundle / "link")
    cfg = config()
    cfg["root"]["path"] = "link"
    assert build(cfg, bundle)["rootfs"] == str((bundle / "rootfs").resolve())


# --- mounts and their flags -----------------------------------------------------------------

def test_default_mount_flags(bundle):
    p = build(config(), bundle)
    by_dst = {}
    for s in steps(p, "mount"):
        by_dst.setdefault(s["dst"].lstrip("/"), s)
    assert by_dst["proc"]["fstype"] == "proc" and by_dst["proc"]["flags"] == 0
    dev = by_dst["dev"]
    assert (dev["fstype"], dev["flags"], dev["data"]) == ("tmpfs", mo.MS_NOSUID | mo.MS_STRICTATIME,
                                                          "mode=755,size=65536k")
    pts = by_dst["dev/pts"]
    assert pts["flags"] == mo.MS_NOSUID | mo.MS_NOEXEC
    assert pts["data"] == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert by_dst["dev/shm"]["flags"] == mo.MS_NOSUID | mo.MS_NOEXEC | mo.MS_NODEV
    assert by_dst["sys"]["flags"] == mo.MS_NOSUID | mo.MS_NOEXEC | mo.MS_NODEV | mo.MS_RDONLY


@pytest.mark.parametrize("options, flags, propagation, data", [
    ([], 0, 0, ""),
    (["ro"], mo.MS_RDONLY, 0, ""),
    (["ro", "rw"], 0, 0, ""),
    (["nosuid", "suid"], 0, 0, ""),
    (["noexec", "nodev", "nosuid"], mo.MS_NOEXEC | mo.MS_NODEV | mo.MS_NOSUID, 0, ""),
    (["noatime", "nodiratime"], mo.MS_NOATIME | mo.MS_NODIRATIME, 0, ""),
    (["relatime"], mo.MS_RELATIME, 0, ""),
    (["strictatime"], mo.MS_STRICTATIME, 0, ""),
    (["noatime", "atime"], 0, 0, ""),
    (["bind"], mo.MS_BIND, 0, ""),
    (["rbind"], mo.MS_BIND | mo.MS_REC, 0, ""),
    (["rslave"], 0, mo.MS_SLAVE | mo.MS_REC, ""),
    (["shared", "private"], 0, mo.MS_PRIVATE, ""),
    (["runbindable"], 0, mo.MS_UNBINDABLE | mo.MS_REC, ""),
    (["defaults", "sync", "dirsync"], mo.MS_SYNCHRONOUS | mo.MS_DIRSYNC, 0, ""),
    (["size=1m", "ro", "mode=700", "uid=5"], mo.MS_RDONLY, 0, "size=1m,mode=700,uid=5"),
    (["nosymfollow", "lazytime"], mo.MS_NOSYMFOLLOW | mo.MS_LAZYTIME, 0, ""),
    (["tmpcopyup", "size=1m"], 0, 0, "size=1m"),
])
def test_mountopts_parse(options, flags, propagation, data):
    assert mo.parse(options, "mounts[0].options") == (flags, propagation, data)


@pytest.mark.parametrize("option", sorted(mo.UNSUPPORTED))
def test_mountopts_unsupported_raise_naming_label(option):
    with pytest.raises(ValueError) as e:
        mo.parse(["ro", option], "mounts[3].options")
    assert str(e.value).startswith("mounts[3].options: ") and repr(option) in str(e.value)


def test_tmpfs_mount_step(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "size=1m", "rshared", "mode=1777"]})
    (s,) = steps(build(cfg, bundle), "mount", f"mounts[{len(cfg['mounts']) - 1}]")
    assert (s["fstype"], s["src"], s["flags"], s["data"], s["propagation"]) == \
        ("tmpfs", "tmpfs", mo.MS_NOSUID, "size=1m,mode=1777", mo.MS_SHARED | mo.MS_REC)
    assert s["dst"].endswith("/t") and os.path.normpath(s["dst"]) in ("/t", "//t")


def test_mount_source_defaults_to_type(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/q", "type": "mqueue"})
    (s,) = steps(build(cfg, bundle), "mount", f"mounts[{len(cfg['mounts']) - 1}]")
    assert s["src"] == "mqueue"


def test_bind_mount_steps(bundle):
    (bundle / "dir").mkdir()
    (bundle / "file").write_text("")
    cfg = config()
    n = len(cfg["mounts"])
    cfg["mounts"] += [
        {"destination": "/d", "type": "bind", "source": "dir", "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/f", "source": str(bundle / "file"), "options": ["bind"]},
        {"destination": "/n", "type": "none", "source": "dir", "options": ["rbind", "rprivate"]},
    ]
    p = build(cfg, bundle)
    (d,) = steps(p, "mount", f"mounts[{n}]")
    (f,) = steps(p, "mount", f"mounts[{n + 1}]")
    (nn,) = steps(p, "mount", f"mounts[{n + 2}]")
    assert d["src"] == str(bundle / "dir"), "a relative source is taken from the bundle"
    assert d["flags"] == mo.MS_BIND | mo.MS_REC | mo.MS_RDONLY | mo.MS_NOSUID and d["fstype"] is None
    assert d["mode"] == 0, "directory mount point"
    assert f["src"] == str(bundle / "file") and f["flags"] == mo.MS_BIND
    assert f["mode"] == 0o100000, "a file source makes a file mount point"
    assert nn["propagation"] == mo.MS_PRIVATE | mo.MS_REC and nn["fstype"] is None


def test_cgroup_mount_v1_without_cgroupns(bundle):
    paths = {"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/cid", "memory": "/sys/fs/cgroup/memory/cid",
             "name=systemd": "/sys/fs/cgroup/systemd/cid", "": "/sys/fs/cgroup/unified/cid"}
    cfg = config()
    i = [m["destination"] for m in cfg["mounts"]].index("/sys/fs/cgroup")
    got = steps(build(cfg, bundle, cgroup_paths=paths), "mount", f"mounts[{i}]")
    assert got[0]["fstype"] == "tmpfs" and not got[0]["flags"] & mo.MS_RDONLY
    binds = {os.path.basename(s["dst"]): s["src"] for s in got[1:] if s["flags"] & mo.MS_BIND}
    assert binds == {"cpu,cpuacct": paths["cpu,cpuacct"], "memory": paths["memory"],
                     "systemd": paths["name=systemd"], "unified": paths[""]}
    assert all(s["flags"] & mo.MS_RDONLY for s in got[1:])
    assert got[-1]["flags"] & mo.MS_REMOUNT and got[-1]["flags"] & mo.MS_RDONLY, "the tmpfs is made ro last"


def test_cgroup_mount_v1_with_cgroupns_mounts_hierarchies(bundle):
    paths = {"pids": "/sys/fs/cgroup/pids/cid", "": "/sys/fs/cgroup/unified/cid"}
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    i = [m["destination"] for m in cfg["mounts"]].index("/sys/fs/cgroup")
    got = steps(build(cfg, bundle, cgroup_paths=paths), "mount", f"mounts[{i}]")
    sub = {os.path.basename(s["dst"]): (s["fstype"], s["data"]) for s in got[1:] if not s["flags"] & mo.MS_REMOUNT}
    assert sub == {"pids": ("cgroup", "pids"), "unified": ("cgroup2", None)}


def test_cgroup_mount_v2(bundle):
    cfg = config()
    i = [m["destination"] for m in cfg["mounts"]].index("/sys/fs/cgroup")
    (s,) = steps(build(cfg, bundle, cgroup_paths={"": "/sys/fs/cgroup/cid"}), "mount", f"mounts[{i}]")
    assert s["src"] == "/sys/fs/cgroup/cid" and s["flags"] & mo.MS_BIND and s["flags"] & mo.MS_RDONLY
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    (s,) = steps(build(cfg, bundle, cgroup_paths={"": "/sys/fs/cgroup/cid"}), "mount", f"mounts[{i}]")
    assert s["fstype"] == "cgroup2" and not s["flags"] & mo.MS_BIND


def test_destinations_are_clean(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/data/../data2/", "type": "tmpfs"})
    cfg["linux"]["devices"] = [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]
    p = build(cfg, bundle)
    assert steps(p, "mount")[-1]["dst"] == "/data2"
    assert steps(p, "mknod", "linux.devices[0]")[0]["dst"] == "/dev/x"
    assert all(not s["dst"].startswith("//") for s in p["steps"] if s["dst"])


def test_relative_destination_is_made_absolute(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "rel/dir", "type": "tmpfs"})
    dst = steps(build(cfg, bundle), "mount")[-1]["dst"]
    assert dst.startswith("/") and dst.lstrip("/") == "rel/dir"


def test_dotdot_destination_cannot_climb(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/../../etc/x", "type": "tmpfs"})
    dst = steps(build(cfg, bundle), "mount")[-1]["dst"]
    assert ".." not in dst and dst.lstrip("/") == "etc/x"


# --- devices --------------------------------------------------------------------------------

def test_default_devices_and_links(bundle):
    p = build(config(), bundle)
    nodes = {s["dst"].lstrip("/"): s for s in steps(p, "mknod")}
    want = {"dev/null": (1, 3), "dev/zero": (1, 5), "dev/full": (1, 7), "dev/random": (1, 8),
            "dev/urandom": (1, 9), "dev/tty": (5, 0)}
    assert set(nodes) == set(want)
    for path, (major, minor) in want.items():
        assert nodes[path]["mode"] == 0o020666 and nodes[path]["dev"] == os.makedev(major, minor), path
        assert (nodes[path]["uid"], nodes[path]["gid"]) == (0, 0)
    links = {s["dst"]: s["src"] for s in steps(p, "symlink")}
    assert links == {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
                     "/dev/stderr": "/proc/self/fd/2", "/dev/ptmx": "pts/ptmx"}


def test_config_devices(bundle):
    cfg = config()
    cfg["linux"]["devices"] = [
        {"path": "/dev/b", "type": "b", "major": 8, "minor": 300, "fileMode": 0o640, "uid": 3, "gid": 4},
        {"path": "/dev/p", "type": "p", "fileMode": 0o600},
        {"path": "/dev/u", "type": "u", "major": 1, "minor": 9},
    ]
    p = build(cfg, bundle)
    b, pp, u = (steps(p, "mknod", f"linux.devices[{i}]")[0] for i in range(3))
    assert (b["mode"], b["dev"], b["uid"], b["gid"]) == (0o060640, os.makedev(8, 300), 3, 4)
    assert (pp["mode"], pp["dev"]) == (0o010600, 0)
    assert (u["mode"], u["dev"]) == (0o020666, os.makedev(1, 9))


@pytest.mark.parametrize("major, minor", [(1, 3), (259, 70000), (4095, 0xFFFFF), (0, 0)])
def test_makedev_matches_glibc(major, minor):
    from ociruntime.linux.devices import makedev

    assert makedev(major, minor) == os.makedev(major, minor)


def test_config_device_replaces_default(bundle):
    cfg = config()
    cfg["linux"]["devices"] = [{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o600}]
    zeros = [s for s in steps(build(cfg, bundle), "mknod") if s["dst"].endswith("/dev/zero")]
    assert len(zeros) == 1 and zeros[0]["mode"] == 0o020600


def test_bind_mounted_dev_gets_no_device_steps(bundle):
    (bundle / "hostdev").mkdir()
    cfg = config()
    cfg["mounts"] = [m for m in cfg["mounts"] if not m["destination"].startswith("/dev")]
    cfg["mounts"].append({"destination": "/dev", "type": "bind", "source": "hostdev", "options": ["rbind"]})
    p = build(cfg, bundle)
    assert steps(p, "mknod") == [] and steps(p, "symlink") == []


def test_user_namespace_device_steps_bind_from_host(bundle):
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 10}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 2000, "size": 10}]
    p = build(cfg, bundle)
    assert p["userns"] and p["uid_map"] == "0 1000 10\n" and p["gid_map"] == "0 2000 10\n"
    for s in steps(p, "mknod"):
        assert os.path.normpath(s["src"]).lstrip("/") == os.path.normpath(s["dst"]).lstrip("/")
    assert p["clone_flags"] & ns.CLONE_NEWUSER


def test_runtime_in_a_user_namespace_binds_the_devices(bundle):
    """The runtime as root in a user namespace (rootless podman's), the config asking none:
    the nodes can't be made there, so the plan binds the host's (as runc does), as a file
    each; the links stay. With a user namespace of the container's own, the init binds them."""
    cfg = config()
    cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    p = build(cfg, bundle, in_userns=True)
    assert not p["userns"] and steps(p, "mknod") == []
    binds = {os.path.basename(s["dst"]): s for s in p["steps"] if s["label"] in ("default device", "linux.devices[0]")}
    assert set(binds) == {"null", "zero", "full", "random", "urandom", "tty", "fuse"}
    for s in binds.values():
        assert (s["op"], s["src"], s["flags"], s["mode"]) == ("mount", s["dst"], mo.MS_BIND, 0o100000), s
    assert len(steps(p, "symlink")) == len(steps(build(cfg, bundle), "symlink")) > 0
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 10}]
    assert len(steps(build(cfg, bundle, in_userns=True), "mknod")) == 7


# --- namespaces -----------------------------------------------------------------------------

def test_default_clone_flags(bundle):
    p = build(config(), bundle)
    assert p["clone_flags"] == ns.CLONE_NEWPID | ns.CLONE_NEWNET | ns.CLONE_NEWIPC | ns.CLONE_NEWUTS | ns.CLONE_NEWNS
    assert not p["unshare_cgroupns"] and not p["unshare_timens"] and p["joins"] == []
    assert p["uid_map"] is None and not p["userns"]


def test_cgroup_and_time_namespaces_are_unshared_not_cloned(bundle):
    cfg = config()
    cfg["linux"]["namespaces"] += [{"type": "cgroup"}, {"type": "time"}]
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 10}, "monotonic": {"secs": 2, "nanosecs": 3}}
    p = build(cfg, bundle)
    assert not p["clone_flags"] & (ns.CLONE_NEWCGROUP | ns.CLONE_NEWTIME)
    assert p["unshare_cgroupns"] and p["unshare_timens"]
    assert p["timens_offsets"] == "monotonic 2 3\nboottime 10 0\n"


def test_cgroup_namespace_is_unshared_as_late_as_it_can(bundle):
    """After the mounts that don't show it, once the parent joined ('C'), before the first
    cgroup mount and before the hooks; with neither, last."""
    paths = {"pids": "/sys/fs/cgroup/pids/cid", "": "/sys/fs/cgroup/unified/cid"}
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    p = build(cfg, bundle, cgroup_paths=paths)
    cgroup_mounts = [i for i, s in enumerate(p["steps"]) if s["fstype"] in ("cgroup", "cgroup2")]
    assert cgroup_mounts and [s["op"] for s in p["steps"]].index("unshare_cgroupns") == cgroup_mounts[0] - 1
    assert not p["early_sync"] and "wait_parent" not in ops(p)
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
    assert ops(build(cfg, bundle, cgroup_paths=paths))[-1] == "unshare_cgroupns"
    cfg["hooks"] = {"createContainer": HOOK}
    order = ops(build(cfg, bundle, cgroup_paths=paths))
    assert order[order.index("pivot") - 3:order.index("pivot")] == ["wait_parent", "unshare_cgroupns", "hooks"]


@pytest.mark.parametrize("namespaces, non_dumpable", [
    ([{"type": "network", "path": "NS"}], True),
    ([{"type": "network"}], False),  # nothing joined: nobody to hide from
    ([{"type": "network", "path": "NS"}, {"type": "user"}], False),  # /proc/self would be out of reach
    ([{"type": "user", "path": "NS"}], False),
])
def test_an_init_joining_namespaces_is_non_dumpable(bundle, tmp_path, namespaces, non_dumpable):
    (tmp_path / "ns").write_text("")
    cfg = config()
    cfg["linux"]["namespaces"] = [{"type": "uts"}] + [dict(n, path=str(tmp_path / "ns")) if "path" in n else n
                                                     for n in namespaces]
    if any(n["type"] == "user" and "path" not in n for n in namespaces):
        cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert build(cfg, bundle)["non_dumpable"] is non_dumpable


def test_joins_are_ordered_user_first_mount_last(bundle, tmp_path):
    files = {}
    for t in ("mount", "network", "user", "ipc"):
        files[t] = tmp_path / f"ns-{t}"
        files[t].write_text("")
    cfg = config()
    cfg["linux"]["namespaces"] = [{"type": "mount", "path": str(files["mount"])},
                                  {"type": "network", "path": str(files["network"])},
                                  {"type": "pid"},
                                  {"type": "user", "path": str(files["user"])},
                                  {"type": "ipc", "path": str(files["ipc"])},
                                  {"type": "uts"}]
    p = build(cfg, bundle)
    assert p["joins"] == [(str(files["user"]), ns.CLONE_NEWUSER), (str(files["ipc"]), ns.CLONE_NEWIPC),
                          (str(files["network"]), ns.CLONE_NEWNET), (str(files["mount"]), ns.CLONE_NEWNS)]
    assert p["clone_flags"] == ns.CLONE_NEWPID | ns.CLONE_NEWUTS
    assert p["uid_map"] is None, "a joined user namespace has its maps already"
    assert steps(p, "propagation") == [], "a joined mount namespace is left as it is"


# --- process --------------------------------------------------------------------------------

def test_default_process(bundle):
    proc = build(config(), bundle)["process"]
    default = (1 << 29) | (1 << 5) | (1 << 10)  # AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert proc["caps"] == {"bounding": default, "effective": default, "permitted": default,
                            "inheritable": 0, "ambient": 0}
    assert proc["rlimits"] == [(7, 1024, 1024)]
    assert proc["no_new_privs"] is True
    assert (proc["uid"], proc["gid"], proc["groups"], proc["umask"]) == (0, 0, [], -1)
    assert proc["oom_score_adj"] is None and proc["cwd"] == "/"
    assert proc["args"] == ["true"] and proc["env"][0].startswith("PATH=")


def test_capability_masks(bundle):
    cfg = config()
    cfg["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_NET_RAW"],
        "inheritable": ["CAP_NET_RAW", "CAP_SETUID"],
        "ambient": ["CAP_NET_RAW", "CAP_SETUID", "CAP_CHOWN"],
    }
    caps = build(cfg, bundle)["process"]["caps"]
    assert caps["bounding"] == (1 << 0) | (1 << 21) | (1 << 40)
    assert caps["effective"] == 1 << 0
    assert caps["permitted"] == (1 << 0) | (1 << 13)
    assert caps["inheritable"] == (1 << 13) | (1 << 7)
    assert caps["ambient"] == 1 << 13, "only what is both permitted and inheritable"


def test_no_capabilities_key_leaves_caps_alone(bundle):
    cfg = config()
    del cfg["process"]["capabilities"]
    assert build(cfg, bundle)["process"]["caps"] is None


def test_missing_capability_sets_are_empty(bundle):
    cfg = config()
    cfg["process"]["capabilities"] = {"bounding": ["CAP_KILL"]}
    caps = build(cfg, bundle)["process"]["caps"]
    assert caps == {"bounding": 1 << 5, "effective": 0, "permitted": 0, "inheritable": 0, "ambient": 0}


def test_user_rlimits_oom_nnp(bundle):
    cfg = config()
    cfg["process"]["user"] = {"uid": 10, "gid": 20, "additionalGids": [30, 40], "umask": 0o027}
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NPROC", "soft": 5, "hard": 6},
                                 {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    cfg["process"]["oomScoreAdj"] = 300
    cfg["process"]["noNewPrivileges"] = False
    cfg["process"]["env"] = ["A=1"]
    proc = build(cfg, bundle)["process"]
    assert (proc["uid"], proc["gid"], proc["groups"], proc["umask"]) == (10, 20, [30, 40], 0o027)
    assert proc["rlimits"] == [(6, 5, 6), (4, 0, 0)]
    assert proc["oom_score_adj"] == 300 and proc["no_new_privs"] is False
    assert proc["env"] == ["A=1", "HOME=/"], "an explicit env is used as is (no PATH added; HOME as runc: " \
        "uid 10 has no passwd entry)"


def test_env_missing_gets_default_path(bundle):
    cfg = config()
    del cfg["process"]["env"]
    assert build(cfg, bundle)["process"]["env"] == [plan.DEFAULT_PATH, "HOME=/"]


def test_hooks_in_plan(bundle):
    cfg = config()
    cfg["hooks"] = {"createContainer": [{"path": "/a", "args": ["a", "x"], "env": ["E=1"], "timeout": 3}],
                    "startContainer": [{"path": "/b"}, {"path": "/c"}]}
    p = build(cfg, bundle)
    assert p["create_hooks"] == [{"path": "/a", "args": ["a", "x"], "env": ["E=1"], "timeout": 3,
                                  "label": "hooks.createContainer[0]"}]
    assert [h["label"] for h in p["process"]["start_hooks"]] == ["hooks.startContainer[0]",
                                                                 "hooks.startContainer[1]"]
    assert p["process"]["start_hooks"][0]["args"] == ["/b"], "args default to [path]"


def test_preserve_fds_and_keyring_pass_through(bundle):
    p = build(config(), bundle, preserve_fds=3, no_new_keyring=True)
    assert p["preserve_fds"] == 3 and p["no_new_keyring"] is True


def test_device_cgroup_rules(bundle):
    cfg = config()
    cfg["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 10, "minor": 229,
                                                 "access": "rw"})
    rules = build(cfg, bundle)["device_rules"]
    assert rules[0] == ("deny", "a") and rules[1] == ("allow", "c 10:229 rw")
    assert ("allow", "c 1:3 rwm") in rules and ("allow", "c 136:* rwm") in rules


# --- refused configs ------------------------------------------------------------------------

def test_refused_process_missing(bundle):
    cfg = config()
    del cfg["process"]
    refused(cfg, bundle, "process")


@pytest.mark.parametrize("resctrl, words", [(False, "this host has no resctrl filesystem (Intel RDT): no "),
                                            (True, "Intel RDT (resctrl) is not implemented by this runtime")])
def test_refused_intel_rdt_says_why(bundle, tmp_path, monkeypatch, resctrl, words):
    fake = tmp_path / "resctrl"
    if resctrl:
        fake.mkdir()
    monkeypatch.setattr(plan, "RESCTRL", str(fake))
    cfg = config()
    cfg["linux"]["intelRdt"] = {"closID": "x"}
    refused(cfg, bundle, "linux.intelRdt", words)


def test_net_devices(bundle):
    cfg = config()
    cfg["linux"]["netDevices"] = {"eth1": {"name": "eth0"}, "veth7": {}, "ens3": {"name": "net%d"}}
    assert build(cfg, bundle)["net_devices"] == [("eth1", "eth0"), ("veth7", None), ("ens3", "net%d")]
    assert build(config(), bundle)["net_devices"] == []


@pytest.mark.parametrize("devices, path, words", [
    ({"eth/1": {}}, "linux.netDevices.eth/1", ["not a network device name"]),
    ({"a" * 16: {}}, f"linux.netDevices.{'a' * 16}", ["not a network device name"]),
    ({"eth1": {"name": "in side"}}, "linux.netDevices.eth1.name", ["'in side'", "whitespace"]),
    ({"eth1": {"name": "a:b"}}, "linux.netDevices.eth1.name", ["'a:b'"]),
    ({"eth1": {"name": ".."}}, "linux.netDevices.eth1.name", ["'..'"]),
    ({"eth1": {"name": ""}}, "linux.netDevices.eth1.name", ["''"]),
])
def test_net_devices_refused(bundle, devices, path, words):
    cfg = config()
    cfg["linux"]["netDevices"] = devices
    refused(cfg, bundle, path, *words)


def test_net_devices_need_a_network_namespace(bundle):
    cfg = config()
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["linux"]["netDevices"] = {"eth1": {}}
    refused(cfg, bundle, "linux.netDevices", "needs a network namespace")


def test_empty_resources_are_fine(bundle):
    cfg = config()
    cfg["linux"]["resources"].update(memory={}, cpu=None, pids={})
    assert build(cfg, bundle)["cgroup_writes"] == []


def test_refused_mount_option(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "tmpfs", "options": ["nosuid", "rnoexec"]})
    refused(cfg, bundle, f"mounts[{len(cfg['mounts']) - 1}].options", "rnoexec")


@pytest.mark.parametrize("options, copyup", [
    (["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"], mo.COPYUP | mo.COPYUP_MODE | mo.COPYUP_UID | mo.COPYUP_GID),
    (["tmpcopyup", "mode=700", "size=1m"], mo.COPYUP | mo.COPYUP_UID | mo.COPYUP_GID),
    (["tmpcopyup", "uid=5", "gid=6", "mode=1777"], mo.COPYUP),
    (["nosuid"], 0),
])
def test_tmpcopyup_marks_a_tmpfs_step(bundle, options, copyup):
    """runc's tmpcopyup: no mount data, a mark on the step; the tmpfs's root keeps the mode,
    owner and group of the directory it covers but for those the options set."""
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": options})
    (s,) = steps(build(cfg, bundle), "mount", f"mounts[{len(cfg['mounts']) - 1}]")
    assert s["copyup"] == copyup
    assert "tmpcopyup" not in (s["data"] or "")
    assert s["flags"] & mo.MS_NOSUID == (mo.MS_NOSUID if "nosuid" in options else 0)
    assert all(t["copyup"] == 0 for t in build(config(), bundle)["steps"])


def test_tmpcopyup_elsewhere_has_no_effect(bundle, capsys):
    """On a mount that is not a tmpfs runc ignores tmpcopyup: so does this runtime, with a warning."""
    (bundle / "d").mkdir()
    cfg = config()
    cfg["mounts"] += [{"destination": "/b", "type": "bind", "source": "d", "options": ["rbind", "tmpcopyup"]},
                      {"destination": "/q", "type": "mqueue", "options": ["tmpcopyup"]}]
    p = build(cfg, bundle)
    n = len(cfg["mounts"])
    for i in (n - 2, n - 1):
        (s,) = steps(p, "mount", f"mounts[{i}]")
        assert s["copyup"] == 0 and not s["data"]
    err = capsys.readouterr().err
    assert f"mounts[{n - 2}].options: 'tmpcopyup' has no effect" in err and f"mounts[{n - 1}].options" in err


def test_refused_idmapped_mount(bundle):
    (bundle / "d").mkdir()
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "bind", "source": "d", "options": ["bind"],
                          "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]})
    refused(cfg, bundle, f"mounts[{len(cfg['mounts']) - 1}]")


def test_refused_bind_without_source(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "bind", "options": ["bind"]})
    refused(cfg, bundle, f"mounts[{len(cfg['mounts']) - 1}].source")


def test_refused_bind_missing_source(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "type": "bind", "source": "nope"})
    refused(cfg, bundle, f"mounts[{len(cfg['mounts']) - 1}].source", str(bundle / "nope"))


def test_refused_mount_without_type(bundle):
    cfg = config()
    cfg["mounts"].append({"destination": "/t", "source": "tmpfs", "options": ["nosuid"]})
    refused(cfg, bundle, f"mounts[{len(cfg['mounts']) - 1}].type")


def test_refused_missing_rootfs(bundle):
    cfg = config()
    cfg["root"]["path"] = "nope"
    refused(cfg, bundle, "root.path", "nope")


@pytest.mark.parametrize("field", ["hostname", "domainname"])
def test_refused_hostname_without_uts(bundle, field):
    cfg = config(**{field: "x"})
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "uts"]
    if field == "domainname":
        del cfg["hostname"]
    refused(cfg, bundle, field)


def test_refused_duplicate_namespace(bundle):
    cfg = config()
    cfg["linux"]["namespaces"].insert(2, {"type": "network"})
    refused(cfg, bundle, "linux.namespaces[2].type", "network")


def test_refused_namespace_path_missing(bundle):
    cfg = config()
    cfg["linux"]["namespaces"][1]["path"] = str(bundle / "nope")
    refused(cfg, bundle, "linux.namespaces[1].path")


@pytest.mark.parametrize("which", ["linux.uidMappings", "linux.gidMappings"])
def test_refused_user_namespace_without_maps(bundle, which):
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "user"})
    other = "linux.gidMappings" if which == "linux.uidMappings" else "linux.uidMappings"
    cfg["linux"][other.split(".")[1]] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    refused(cfg, bundle, which)


def test_refused_unknown_capability(bundle):
    cfg = config()
    cfg["process"]["capabilities"]["permitted"] = ["CAP_KILL", "CAP_BOGUS"]
    refused(cfg, bundle, "process.capabilities.permitted[1]", "CAP_BOGUS")


def test_refused_capability_the_runtime_lacks(bundle, monkeypatch):
    from ociruntime.linux import capabilities

    if not hasattr(capabilities, "own_permitted"):
        pytest.skip("this runtime doesn't check its own capabilities")
    monkeypatch.setattr(capabilities, "own_permitted", lambda: (1 << 5) | (1 << 10) | (1 << 29))
    cfg = config()
    build(cfg, bundle)  # the default set is within
    cfg["process"]["capabilities"]["permitted"].append("CAP_SYS_RESOURCE")
    refused(cfg, bundle, "process.capabilities.permitted", "CAP_SYS_RESOURCE")
    cfg = config()
    cfg["process"]["capabilities"]["bounding"].append("CAP_SYS_RESOURCE")
    build(cfg, bundle)  # keeping a cap in the bounding set needs nothing


def test_refused_rlimits(bundle):
    cfg = config()
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]
    refused(cfg, bundle, "process.rlimits[0]", "soft")
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                 {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}]
    refused(cfg, bundle, "process.rlimits[1].type", "duplicate")
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_WHAT", "soft": 0, "hard": 0}]
    refused(cfg, bundle, "process.rlimits[0].type", "RLIMIT_WHAT")


def test_refused_empty_args(bundle):
    cfg = config()
    cfg["process"]["args"] = []
    refused(cfg, bundle, "process.args")


def test_device_without_numbers_is_0_0_as_runc_makes_it(bundle):
    """config-linux.md requires major and minor for c, b, u; the official schema doesn't and
    runc reads an absent one as 0."""
    cfg = config()
    cfg["linux"]["devices"] = [{"path": "/dev/ok", "type": "p"}, {"path": "/dev/x", "type": "b", "major": 1}]
    nodes = {s["dst"]: s["dev"] for s in build(cfg, bundle)["steps"] if s["op"] == "mknod"}
    assert (nodes["/dev/ok"], nodes["/dev/x"]) == (0, os.makedev(1, 0))


def test_config_error_str_for_whole_document():
    assert str(ConfigError("", "bad")) == "config.json: bad"
    e = ConfigError("a.b[1]", "msg")
    assert (e.path, e.message, str(e)) == ("a.b[1]", "msg", "a.b[1]: msg")


# --- the init's own attributes (linux/procattrs.py) -----------------------------------------

def attrs(bundle, process=None, linux=None):
    cfg = config()
    cfg["process"].update(process or {})
    cfg["linux"].update(linux or {})
    return build(cfg, bundle)


def refused_attr(bundle, path, *words, process=None, linux=None):
    cfg = config()
    cfg["process"].update(process or {})
    cfg["linux"].update(linux or {})
    return refused(cfg, bundle, path, *words)


DL = {"policy": "SCHED_DEADLINE", "runtime": 2000, "deadline": 5000, "period": 10000}


@pytest.mark.parametrize("sched, path, words", [
    ({}, "process.scheduler.policy", ["is required"]),
    ({"policy": "SCHED_NOPE"}, "process.scheduler.policy", ["unknown policy 'SCHED_NOPE'"]),
    ({"policy": "SCHED_ISO"}, "process.scheduler.policy", ["not implemented by Linux"]),
    ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_RECLAIM", "SCHED_FLAG_X"]}, "process.scheduler.flags[1]",
     ["SCHED_FLAG_X"]),
    # runc's rules
    ({"policy": "SCHED_OTHER", "nice": 20}, "process.scheduler.nice", ["-20 to 19"]),
    ({"policy": "SCHED_BATCH", "nice": -21}, "process.scheduler.nice", ["-20 to 19"]),
    ({"policy": "SCHED_OTHER", "priority": 5}, "process.scheduler.priority", ["only SCHED_FIFO and SCHED_RR"]),
    ({"policy": "SCHED_IDLE", "priority": 1}, "process.scheduler.priority", ["not SCHED_IDLE"]),
    ({"policy": "SCHED_OTHER", "runtime": 1}, "process.scheduler", ["SCHED_DEADLINE only"]),
    ({"policy": "SCHED_FIFO", "priority": 1, "period": 5}, "process.scheduler", ["SCHED_DEADLINE only"]),
    # the kernel's
    ({"policy": "SCHED_FIFO"}, "process.scheduler.priority", ["1 to 99, not 0"]),
    ({"policy": "SCHED_RR", "priority": 100}, "process.scheduler.priority", ["1 to 99, not 100"]),
    ({**DL, "runtime": 1023}, "process.scheduler.runtime", ["at least 1024"]),
    ({**DL, "deadline": 0}, "process.scheduler.deadline", ["needs a deadline"]),
    ({**DL, "runtime": 6000}, "process.scheduler.runtime", ["more than the deadline"]),
    ({**DL, "period": 4000}, "process.scheduler.deadline", ["more than the period"]),
    ({"policy": "SCHED_OTHER", "nice": "5"}, "process.scheduler.nice", ["integer"]),
])
def test_scheduler_refused(bundle, sched, path, words):
    refused_attr(bundle, path, *words, process={"scheduler": sched})


def test_scheduler_numbers(bundle):
    p = attrs(bundle, process={"scheduler": {"policy": "SCHED_RR", "priority": 42, "flags": [
        "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_KEEP_PARAMS"]}})
    s = p["process"]["scheduler"]
    assert (s["policy"], s["flags"], s["priority"], s["nice"]) == (2, 0x11, 42, 0)
    assert s["label"] == "SCHED_RR, SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_KEEP_PARAMS, priority 42"
    s = attrs(bundle, process={"scheduler": DL})["process"]["scheduler"]
    assert (s["policy"], s["runtime"], s["deadline"], s["period"]) == (6, 2000, 5000, 10000)
    # a deadline without a period: the kernel takes the deadline as the period
    assert attrs(bundle, process={"scheduler": {**DL, "period": 0}})["process"]["scheduler"]["period"] == 0


def test_scheduler_nice_under_realtime_is_warned(bundle, capsys):
    """runc passes it on silently; the kernel ignores nice for realtime and deadline tasks."""
    attrs(bundle, process={"scheduler": {"policy": "SCHED_FIFO", "priority": 1, "nice": 3}})
    assert "process.scheduler.nice: has no effect under SCHED_FIFO" in capsys.readouterr().err
    attrs(bundle, process={"scheduler": {"policy": "SCHED_OTHER", "nice": 3}})
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("io, path", [({"class": "IOPRIO_CLASS_NONE", "priority": 0}, "process.ioPriority.class"),
                                      ({"priority": 0}, "process.ioPriority.class"),
                                      ({"class": "IOPRIO_CLASS_BE", "priority": 8}, "process.ioPriority.priority"),
                                      ({"class": "IOPRIO_CLASS_RT", "priority": -1}, "process.ioPriority.priority")])
def test_io_priority_refused(bundle, io, path):
    refused_attr(bundle, path, process={"ioPriority": io})


@pytest.mark.parametrize("cls, level, value", [("IOPRIO_CLASS_RT", 0, 1 << 13), ("IOPRIO_CLASS_BE", 4, 2 << 13 | 4),
                                                ("IOPRIO_CLASS_IDLE", 7, 3 << 13 | 7)])
def test_io_priority_value(bundle, cls, level, value):
    assert attrs(bundle, process={"ioPriority": {"class": cls, "priority": level}})["process"]["io_priority"] == value


def test_io_priority_without_priority_is_0():
    """config.md calls priority REQUIRED; the official schema doesn't, and runc reads it as 0."""
    from ociruntime.linux import procattrs

    assert procattrs.io_priority({"class": "IOPRIO_CLASS_BE"}) == 2 << 13


@pytest.mark.parametrize("persona, value", [({"domain": "LINUX"}, 0), ({"domain": "LINUX32"}, 8),
                                            ({"domain": "LINUX32", "flags": ["ADDR_NO_RANDOMIZE", "UNAME26"]},
                                             0x8 | 0x40000 | 0x20000)])
def test_personality_value(bundle, persona, value):
    assert attrs(bundle, linux={"personality": persona})["process"]["personality"] == value


@pytest.mark.parametrize("persona, path, words", [({"domain": "LINUX64"}, "linux.personality.domain", ["LINUX64"]),
                                                  ({"flags": []}, "linux.personality.domain", ["required"]),
                                                  ({"domain": "LINUX", "flags": ["UNAME26", "PER_BSD"]},
                                                   "linux.personality.flags[1]", ["PER_BSD"])])
def test_personality_refused(bundle, persona, path, words):
    refused_attr(bundle, path, *words, linux={"personality": persona})


def test_memory_policy_value(bundle):
    m = attrs(bundle, linux={"memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": " 0-1, 65,,",
                                              "flags": ["MPOL_F_STATIC_NODES"]}})["process"]["memory_policy"]
    assert m["mode"] == 3 | 1 << 15 and m["nodes"] == [0b11, 0b10]
    assert m["label"].startswith("MPOL_INTERLEAVE|MPOL_F_STATIC_NODES, nodes  0-1, 65,,; this host's nodes: ")
    m = attrs(bundle, linux={"memoryPolicy": {"mode": "MPOL_LOCAL"}})["process"]["memory_policy"]
    assert (m["mode"], m["nodes"]) == (4, [])


@pytest.mark.parametrize("mpol, path, words", [
    ({"mode": "MPOL_NOPE"}, "linux.memoryPolicy.mode", ["MPOL_NOPE"]),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NOPE"]}, "linux.memoryPolicy.flags[0]", ["MPOL_F_NOPE"]),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "linux.memoryPolicy.flags", ["exclude each other"]),
    ({"mode": "MPOL_DEFAULT", "nodes": "0"}, "linux.memoryPolicy.nodes", ["takes no nodes"]),
    ({"mode": "MPOL_LOCAL", "nodes": "1"}, "linux.memoryPolicy.nodes", ["takes no nodes"]),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes", ["at least one node"]),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": ","}, "linux.memoryPolicy.nodes", ["no CPU or node"]),
    ({"mode": "MPOL_BIND", "nodes": "3-1"}, "linux.memoryPolicy.nodes", ["invalid range '3-1'"]),
    ({"mode": "MPOL_BIND", "nodes": "1-"}, "linux.memoryPolicy.nodes", ["'1-' is not a number"]),
    ({"mode": "MPOL_BIND", "nodes": "0x1"}, "linux.memoryPolicy.nodes", ["not a number"]),
    ({"mode": "MPOL_BIND", "nodes": "65537"}, "linux.memoryPolicy.nodes", ["0 to 65536"]),
])
def test_memory_policy_refused(bundle, mpol, path, words):
    refused_attr(bundle, path, *words, linux={"memoryPolicy": mpol})


def test_memory_policy_preferred_takes_zero_nodes_or_more(bundle):
    for nodes in (None, "0", "0-1"):
        mpol = {"mode": "MPOL_PREFERRED", **({"nodes": nodes} if nodes else {})}
        assert attrs(bundle, linux={"memoryPolicy": mpol})["process"]["memory_policy"]["mode"] == 1


def test_exec_cpu_affinity_checked_not_applied(bundle):
    p = attrs(bundle, process={"execCPUAffinity": {"initial": "0-3,7", "final": "1"}})
    assert p == attrs(bundle)  # nothing for the init to do
    refused_attr(bundle, "process.execCPUAffinity.final", "'1--2'",
                 process={"execCPUAffinity": {"initial": "0", "final": "1--2"}})


def test_wait_joined_before_scheduler_or_memory_policy(bundle):
    """The init takes 'C' (in its cgroups) before setting them: last, or before the hooks."""
    for process, linux in (({"scheduler": {"policy": "SCHED_BATCH"}}, {}),
                           ({}, {"memoryPolicy": {"mode": "MPOL_LOCAL"}})):
        p = attrs(bundle, process, linux)
        assert ops(p)[-1] == "wait_joined" and p["waits_for_join"]
    cfg = config(hooks={"createRuntime": HOOK})
    cfg["process"]["scheduler"] = {"policy": "SCHED_BATCH"}
    order = ops(build(cfg, bundle))
    assert order[order.index("hooks") - 2:order.index("hooks") + 1] == ["wait_parent", "wait_joined", "hooks"]


def test_no_wait_joined_for_the_rest(bundle):
    p = attrs(bundle, {"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 1}},
              {"personality": {"domain": "LINUX32"}})
    assert "wait_joined" not in ops(p) and not p["waits_for_join"]
    assert not attrs(bundle)["waits_for_join"]


def test_cgroup_namespace_step_is_the_wait(bundle):
    """unshare_cgroupns already waits for 'C': no second wait for the same message."""
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    cfg["process"]["scheduler"] = {"policy": "SCHED_BATCH"}
    p = build(cfg, bundle)
    assert ops(p).count("unshare_cgroupns") == 1 and "wait_joined" not in ops(p) and p["waits_for_join"]


@pytest.mark.parametrize("value", [-1001, 1001, 2**31, -2**63])
def test_oom_score_adj_out_of_the_kernels_range(bundle, value):
    cfg = config()
    cfg["process"]["oomScoreAdj"] = value
    refused(cfg, bundle, "process.oomScoreAdj", "outside the kernel's range -1000..1000")


def test_umask_keeps_the_permission_bits_as_the_kernel_does(bundle):
    """umask(2) stores mask & 0777; a uint32 past int's range must not reach the C side."""
    cfg = config()
    cfg["process"]["user"] = {"uid": 0, "gid": 0, "umask": 2**31 | 0o7027}
    assert build(cfg, bundle)["process"]["umask"] == 0o027


@pytest.mark.parametrize("user, field", [
    ({"uid": 2**32 - 1, "gid": 0}, "process.user.uid"),
    ({"uid": 0, "gid": 2**32 - 1}, "process.user.gid"),
    ({"uid": 0, "gid": 0, "additionalGids": [5, 2**32 - 1]}, "process.user.additionalGids[1]"),
])
def test_the_unchanged_id_is_refused(bundle, user, field):
    """setresuid(-1) leaves the id alone: a config asking for it would keep the runtime's root."""
    cfg = config()
    cfg["process"]["user"] = user
    refused(cfg, bundle, field, "(uid_t)-1")


def test_console_step_binds_dev_console_before_the_root_goes_read_only(bundle):
    """process.terminal: the pty is made and bound on /dev/console after pivot_root (the
    container's devpts) and before the read-only root, read-only paths and masks, which
    could otherwise cover or refuse it (runc's place); without a terminal, no step."""
    assert "console" not in ops(build(config(), bundle))
    cfg = config()
    cfg["process"]["terminal"] = True
    order = ops(build(cfg, bundle))
    assert order.index("pivot") < order.index("console") < order.index("remount_root")
    assert order.index("console") < min(order.index("readonly"), order.index("mask"))
    assert [(s["label"], s["dst"]) for s in steps(build(cfg, bundle), "console")] == [
        ("process.terminal", "/dev/console")]


def test_exec_console_step_mounts_nothing(bundle):
    """exec -t: a pty for the new process, nothing bound (the container has its console)."""
    process = {"args": ["sh"], "cwd": "/", "terminal": True, "scheduler": {"policy": "SCHED_BATCH"}}
    p = plan.build_exec(config(), process, 1)
    assert [(s["op"], s["dst"]) for s in p["steps"]] == [("wait_joined", None), ("console", None)]
    assert p["waits_for_join"]
    without_scheduler = {k: v for k, v in process.items() if k != "scheduler"}
    assert not plan.build_exec(config(), without_scheduler, 1)["waits_for_join"]
