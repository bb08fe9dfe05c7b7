"""The ``linux`` section of config.json, checked from inside real busybox containers:
namespaces, sysctl, masked and read-only paths, the root's flags, devices."""

import os
import shutil
import subprocess
import time

import pytest
from conftest import run_ok

pytestmark = pytest.mark.root



def ns_inode(kind, pid="self"):
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def namespaces_without(bundle, kind):
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != kind]


def add_namespace(bundle, kind, **extra):
    bundle.config["linux"]["namespaces"].append(dict(type=kind, **extra))


def ns_of(out, kind):
    """The inode in the output of `stat -L -c '%n %i' /proc/self/ns/<kind>` lines."""
    for line in out.splitlines():
        name, _, ino = line.partition(" ")
        if name == f"/proc/self/ns/{kind}":
            return int(ino)
    raise AssertionError(f"no {kind} namespace line in {out!r}")


STAT_NS = "stat -L -c '%n %i' /proc/self/ns/{}"


# --- namespaces -----------------------------------------------------------------------------

def test_pid_namespace_makes_the_program_pid_1(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo $$; " + STAT_NS.format("pid") + "; ps -o pid | tail -n +2 | wc -l")
    out = run_ok(runtime, bundle).split("\n")
    assert out[0] == "1"
    assert ns_of(out[1], "pid") != ns_inode("pid")
    # ps sees only the container's processes: sh, ps and its pipeline (tail, wc) at most.
    assert int(out[2]) <= 4, out


def test_without_pid_namespace_the_host_pids_show(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo $$; " + STAT_NS.format("pid"))
    namespaces_without(bundle, "pid")
    bundle.write()
    pid, line = run_ok(runtime, bundle).splitlines()
    assert int(pid) > 1
    assert ns_of(line, "pid") == ns_inode("pid")


def test_network_namespace_has_only_lo(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1; " + STAT_NS.format("net"))
    lines = run_ok(runtime, bundle).splitlines()
    assert [x.strip() for x in lines[:-1]] == ["lo"]
    assert ns_of(lines[-1], "net") != ns_inode("net")


def test_ipc_namespace_is_new_and_private(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", STAT_NS.format("ipc") + "; cat /proc/sysvipc/shm | tail -n +2 | wc -l")
    # A segment on the host must not be visible inside.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(0, 4096, 0o1600)  # IPC_PRIVATE, IPC_CREAT|0600
    assert shmid >= 0
    try:
        line, count = run_ok(runtime, bundle).splitlines()
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID
    assert ns_of(line, "ipc") != ns_inode("ipc")
    assert count == "0"


def test_uts_namespace_hostname_and_domainname(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "hostname; cat /proc/sys/kernel/domainname; " + STAT_NS.format("uts"))
    bundle.config["hostname"] = "box-17"
    bundle.config["domainname"] = "example.test"
    bundle.write()
    host_name = open("/proc/sys/kernel/hostname").read()
    host_domain = open("/proc/sys/kernel/domainname").read()
    name, domain, line = run_ok(runtime, bundle).splitlines()
    assert (name, domain) == ("box-17", "example.test")
    assert ns_of(line, "uts") != ns_inode("uts")
    assert open("/proc/sys/kernel/hostname").read() == host_name
    assert open("/proc/sys/kernel/domainname").read() == host_domain


def test_mount_namespace_is_new(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", STAT_NS.format("mnt") + "; cat /proc/self/mountinfo")
    out = run_ok(runtime, bundle)
    assert ns_of(out.splitlines()[0], "mnt") != ns_inode("mnt")
    # The container's root is its rootfs, and none of the host's other mounts came along.
    root_line = next(line for line in out.splitlines()[1:] if line.split()[4] == "/")
    assert root_line.split()[3].endswith(f"/{bundle.path.name}/rootfs"), root_line
    assert " /proc/sys/fs/binfmt_misc " not in out and " /mnt/" not in out


def _host_mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_without_mount_namespace_delete_detaches_the_host_mounts(runtime, make_bundle):
    """With no mount namespace the container's mounts land on the host (as with runc,
    which leaves them there); delete takes them away."""
    bundle = make_bundle("sleep", "100")
    namespaces_without(bundle, "mount")
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    rootfs = bundle.path / "rootfs"
    assert f"{rootfs}/proc" in _host_mounts_under(rootfs)
    runtime("delete", "--force", cid)
    assert _host_mounts_under(rootfs) == []


def test_without_mount_namespace_a_failed_create_detaches_the_host_mounts(runtime, make_bundle):
    """The sysctl write fails after the mounts are made: nothing may stay mounted (the
    autouse leftovers check looks too)."""
    bundle = make_bundle("true")
    namespaces_without(bundle, "mount")
    bundle.config["linux"]["sysctl"] = {"kernel.msgmax": "x"}
    bundle.write()
    proc = runtime("create", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0 and "linux.sysctl.kernel.msgmax" in proc.stderr
    assert _host_mounts_under(bundle.path) == []


def test_without_mount_namespace_an_engines_rootfs_mount_stays(runtime, make_bundle):
    """An engine mounts the rootfs (containerd's overlay) before create: delete detaches
    only what the container added on top."""
    bundle = make_bundle("sleep", "100")
    namespaces_without(bundle, "mount")
    bundle.write()
    rootfs = bundle.path / "rootfs"
    subprocess.run(["mount", "--bind", rootfs, rootfs], check=True)
    try:
        cid = runtime.new_id()
        runtime("create", "--bundle", bundle.path, cid)
        runtime("delete", "--force", cid)
        assert _host_mounts_under(rootfs) == [str(rootfs)]
    finally:
        subprocess.run(["umount", rootfs], check=False)


def test_cgroup_namespace_shows_root(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "cat /proc/self/cgroup; " + STAT_NS.format("cgroup"))
    add_namespace(bundle, "cgroup")
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    paths = [line.split(":", 2)[2] for line in lines[:-1]]
    assert paths and set(paths) == {"/"}, lines
    assert ns_of(lines[-1], "cgroup") != ns_inode("cgroup")


def test_without_cgroup_namespace_the_container_cgroup_shows(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/cgroup")
    cid = runtime.new_id()
    code, out, err = runtime.run_output(bundle, cid)
    assert code == 0, err
    paths = [line.split(":", 2)[2] for line in out.splitlines()]
    assert paths and all(p.endswith("/" + cid) for p in paths), out


@pytest.fixture
def traversable(tmp_path):
    """Let a mapped (non-host-root) user reach the bundles: pytest makes its base dir 0700.
    The modes are restored afterwards."""
    changed = []
    for d in [tmp_path, *tmp_path.parents]:
        mode = d.stat().st_mode & 0o7777
        if not mode & 0o001:
            d.chmod(mode | 0o001)
            changed.append((d, mode))
    yield
    for d, mode in changed:
        d.chmod(mode)


@pytest.mark.usefixtures("traversable")
def test_user_namespace_maps_ids(runtime, make_bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    bundle = make_bundle("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                         "touch /shared/made-inside; mkdir /shared/dir-inside; " + STAT_NS.format("user"))
    (bundle.rootfs / "shared").mkdir()  # the rootfs belongs to the host's root: unmapped inside
    add_namespace(bundle, "user")
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    bundle.config["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                                    "options": ["rbind", "rw"]})
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    assert lines[0].split() == ["0", "100000", "65536"]
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2:4] == ["0", "0"]
    assert ns_of(lines[4], "user") != ns_inode("user")
    for name in ("made-inside", "dir-inside"):
        st = os.stat(shared / name)
        assert (st.st_uid, st.st_gid) == (100000, 200000), name


@pytest.mark.usefixtures("traversable")
def test_user_namespace_host_root_files_are_nobody(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "stat -c '%u %g' /bin/busybox; touch /tmp/x 2>&1; echo rc=$?")
    bundle.config["root"]["readonly"] = False
    add_namespace(bundle, "user")
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    assert lines[0] == "65534 65534"
    # /tmp is 1777: writable by anyone, and the file is made by host uid 100000.
    assert lines[-1] == "rc=0"
    assert os.stat(bundle.rootfs / "tmp/x").st_uid == 100000


def test_time_namespace_offsets(runtime, make_bundle):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    year = 365 * 86400
    bundle = make_bundle("sh", "-c", "cat /proc/uptime; cat /proc/self/timens_offsets; " + STAT_NS.format("time"))
    add_namespace(bundle, "time")
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": year, "nanosecs": 0},
                                             "monotonic": {"secs": 7 * 86400, "nanosecs": 5}}
    bundle.write()
    before = float(open("/proc/uptime").read().split()[0])
    lines = run_ok(runtime, bundle).splitlines()
    after = float(open("/proc/uptime").read().split()[0])
    inside = float(lines[0].split()[0])
    assert before + year - 1 <= inside <= after + year + 1, (before, inside, after)
    offsets = {line.split()[0]: line.split()[1:] for line in lines[1:3]}
    assert offsets == {"monotonic": [str(7 * 86400), "5"], "boottime": [str(year), "0"]}
    assert ns_of(lines[3], "time") != ns_inode("time")


def test_without_time_namespace_uptime_is_the_hosts(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/uptime")
    before = float(open("/proc/uptime").read().split()[0])
    inside = float(run_ok(runtime, bundle).split()[0])
    after = float(open("/proc/uptime").read().split()[0])
    assert before - 0.1 <= inside <= after + 0.1


@pytest.fixture
def netns_file(tmp_path):
    """A persistent network namespace bound on a file under tmp_path (unmounted afterwards)."""
    if not shutil.which("unshare"):
        pytest.skip("unshare(1) missing")
    path = tmp_path / "netns"
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_join_network_namespace_by_path(runtime, make_bundle, netns_file):
    bundle = make_bundle("sh", "-c", STAT_NS.format("net") + "; tail -n +3 /proc/net/dev | cut -d: -f1")
    for ns in bundle.config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = str(netns_file)
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    assert ns_of(lines[0], "net") == os.stat(netns_file).st_ino != ns_inode("net")
    assert [x.strip() for x in lines[1:]] == ["lo"]


def test_two_containers_joining_one_netns_share_it(runtime, make_bundle, netns_file):
    """What one container does to the joined namespace, the next one sees."""
    first = make_bundle("true")
    first.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    second = make_bundle("cat", "/proc/sys/net/ipv4/ip_forward")
    for bundle in (first, second):
        for ns in bundle.config["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = str(netns_file)
        bundle.write()
    host_before = open("/proc/sys/net/ipv4/ip_forward").read()
    run_ok(runtime, first)
    assert run_ok(runtime, second) == "1\n"
    assert open("/proc/sys/net/ipv4/ip_forward").read() == host_before


def test_join_namespace_of_missing_path_is_refused(runtime, make_bundle, tmp_path):
    bundle = make_bundle("true")
    bundle.config["linux"]["namespaces"][1]["path"] = str(tmp_path / "nope")
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0
    assert "linux.namespaces[1].path" in err and "Traceback" not in err


# --- sysctl ---------------------------------------------------------------------------------

def test_sysctl_in_net_and_ipc_namespaces(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced "
                         "/proc/sys/kernel/msgmax")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1",
                                        "kernel.msgmax": "12345"}
    bundle.write()
    host = [open(f"/proc/sys/{p}").read() for p in ("net/ipv4/ip_forward", "kernel/shm_rmid_forced",
                                                    "kernel/msgmax")]
    assert run_ok(runtime, bundle).split() == ["1", "1", "12345"]
    assert [open(f"/proc/sys/{p}").read() for p in ("net/ipv4/ip_forward", "kernel/shm_rmid_forced",
                                                    "kernel/msgmax")] == host


def test_sysctl_is_read_only_afterwards(runtime, make_bundle):
    """/proc/sys is in readonlyPaths: sysctls are written before, the program can't change them."""
    bundle = make_bundle("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward; cat /proc/sys/net/ipv4/ip_forward")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert out == "1\n" and "Read-only file system" in err


def test_sysctl_of_missing_key_fails_naming_it(runtime, make_bundle):
    bundle = make_bundle("true")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.no_such_knob": "1"}
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0
    assert "linux.sysctl.net.ipv4.no_such_knob" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_sysctl_not_in_a_container_namespace_is_refused(runtime, make_bundle):
    # The value written is the host's current one, so the bug, when present, changes nothing.
    current = open("/proc/sys/vm/stat_interval").read().strip()
    bundle = make_bundle("true")
    bundle.config["linux"]["sysctl"] = {"vm.stat_interval": current}
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and "linux.sysctl" in err and "vm.stat_interval" in err


def test_net_sysctl_without_network_namespace_is_refused(runtime, make_bundle):
    current = open("/proc/sys/net/ipv4/ip_forward").read().strip()
    bundle = make_bundle("true")
    namespaces_without(bundle, "network")
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": current}
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and "linux.sysctl" in err


# --- masked and read-only paths -------------------------------------------------------------

def test_masked_paths_file_and_directory(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "wc -c < /proc/timer_list; wc -c < /etc/secret; ls -A /opt/secrets | wc -l; "
                         "touch /opt/secrets/x 2>/dev/null && echo writable || echo ro; ls /opt/secrets-not")
    (bundle.rootfs / "etc/secret").write_text("password\n")
    (bundle.rootfs / "opt/secrets").mkdir(parents=True)
    (bundle.rootfs / "opt/secrets/key").write_text("k")
    (bundle.rootfs / "opt/secrets-not").mkdir()
    (bundle.rootfs / "opt/secrets-not/visible").write_text("v")
    bundle.config["linux"]["maskedPaths"] += ["/etc/secret", "/opt/secrets", "/opt/does-not-exist"]
    bundle.write()
    lines = run_ok(runtime, bundle).split()
    assert lines == ["0", "0", "0", "ro", "visible"]
    assert (bundle.rootfs / "etc/secret").read_text() == "password\n", "the mask must not write through"


def test_masked_proc_files_are_empty_by_default(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "for f in /proc/timer_list /proc/keys /proc/sched_debug; do "
                         "[ -e $f ] && wc -c < $f; done; ls -A /sys/firmware | wc -l")
    out = run_ok(runtime, bundle).split()
    assert out and set(out) == {"0"}, out


def test_without_masks_proc_files_are_readable(runtime, make_bundle):
    bundle = make_bundle("wc", "-c", "/proc/timer_list")
    bundle.config["linux"]["maskedPaths"] = []
    bundle.write()
    assert int(run_ok(runtime, bundle).split()[0]) > 0


def test_readonly_paths_refuse_writes(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo 1 > /proc/sys/kernel/shm_rmid_forced; touch /data/ro/x; "
                         "touch /data/rw/x && echo rw-ok")
    bundle.config["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["linux"]["readonlyPaths"] += ["/data/ro", "/missing/is/skipped"]
    bundle.config["process"]["cwd"] = "/data/rw"  # made before the read-only steps
    bundle.config["mounts"].append({"destination": "/data/ro", "type": "tmpfs", "source": "tmpfs"})
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert out == "rw-ok\n", err
    assert err.count("Read-only file system") == 2, err


def test_readonly_path_keeps_nosuid_nodev_noexec(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    bundle.config["linux"]["readonlyPaths"].append("/dev/shm")
    bundle.write()
    shm = [line.split() for line in run_ok(runtime, bundle).splitlines() if line.split()[4] == "/dev/shm"]
    top = shm[-1][5].split(",")
    assert "ro" in top
    assert {"nosuid", "nodev", "noexec"} <= set(top), shm[-1]


@pytest.mark.parametrize("readonly", [True, False])
def test_root_readonly(runtime, make_bundle, readonly):
    bundle = make_bundle("sh", "-c", "touch /marker && echo wrote; touch /tmp/t && echo tmp; "
                         "awk '$5 == \"/\" {print $6}' /proc/self/mountinfo")
    bundle.config["root"]["readonly"] = readonly
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    lines = out.splitlines()
    if readonly:
        assert len(lines) == 1 and lines[0].split(",")[0] == "ro", out
        assert "Read-only file system" in err
        assert not (bundle.rootfs / "marker").exists()
    else:
        assert lines[:2] == ["wrote", "tmp"] and lines[2].split(",")[0] == "rw", out
        assert (bundle.rootfs / "marker").exists()


# --- rootfs propagation ---------------------------------------------------------------------

def _root_optional_fields(out):
    for line in out.splitlines():
        f = line.split()
        if f[4] == "/":
            return f[6:f.index("-")]
    raise AssertionError(out)


@pytest.mark.parametrize("propagation", [None, "private", "rprivate", "slave", "rslave"])
def test_rootfs_propagation_not_shared(runtime, make_bundle, propagation):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    if propagation:
        bundle.config["linux"]["rootfsPropagation"] = propagation
    bundle.write()
    fields = _root_optional_fields(run_ok(runtime, bundle))
    assert not any(f.startswith("shared:") for f in fields), fields


@pytest.mark.parametrize("propagation", ["shared", "rshared"])
def test_rootfs_propagation_shared(runtime, make_bundle, propagation):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    bundle.config["linux"]["rootfsPropagation"] = propagation
    bundle.write()
    fields = _root_optional_fields(run_ok(runtime, bundle))
    assert any(f.startswith("shared:") for f in fields), fields


def test_rootfs_propagation_rslave_receives_host_mounts(runtime, make_bundle, tmp_path):
    """With rslave, a mount made on the host under a shared mount shows up in the container."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        bundle = make_bundle("sh", "-c", "while [ ! -e /s/sub/flag ]; do sleep 0.02; done; echo seen")
        (bundle.rootfs / "s").mkdir()
        bundle.config["mounts"].append({"destination": "/s", "type": "bind", "source": str(shared),
                                        "options": ["rbind", "rslave"]})
        bundle.write()
        cid = runtime.new_id()
        runtime("create", "--bundle", bundle.path, cid)
        (shared / "sub").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared / "sub")], check=True)
        (shared / "sub/flag").write_text("x")
        # The program waits for the flag and exits; if it never sees it, the delete --force ends it.
        runtime("start", cid)
        deadline = time.monotonic() + 5
        while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        status = runtime.state(cid)["status"]
        runtime("delete", "--force", cid)
        assert status == "stopped", "the container never saw the host's new mount"
    finally:
        subprocess.run(["umount", "-R", "-l", str(shared)], check=False)


# --- devices --------------------------------------------------------------------------------

STAT_DEV = "stat -c '%n %F %a %t:%T %u:%g' "


def parse_stat(out):
    return {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}


def test_default_devices(runtime, make_bundle):
    names = ["null", "zero", "full", "random", "urandom", "tty"]
    bundle = make_bundle("sh", "-c", STAT_DEV + " ".join("/dev/" + n for n in names))
    got = parse_stat(run_ok(runtime, bundle))
    want = {"null": "1:3", "zero": "1:5", "full": "1:7", "random": "1:8", "urandom": "1:9", "tty": "5:0"}
    for name, dev in want.items():
        # stat prints major and minor in hex
        major, minor = (format(int(x), "x") for x in dev.split(":"))
        assert got[f"/dev/{name}"] == f"character special file 666 {major}:{minor} 0:0", name


def test_default_devices_work(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo x > /dev/null && head -c 4 /dev/zero | wc -c && "
                         "head -c 8 /dev/urandom | wc -c && (echo x > /dev/full) 2>&1; true")
    out = run_ok(runtime, bundle).split("\n")
    assert out[:2] == ["4", "8"]
    assert "No space left on device" in out[2]


def test_default_device_links(runtime, make_bundle):
    links = ["fd", "stdin", "stdout", "stderr", "ptmx"]
    bundle = make_bundle("sh", "-c", "for l in " + " ".join(links) + "; do echo $l $(readlink /dev/$l); done; "
                         "ls /dev/fd/ | tr '\\n' ' '")
    lines = run_ok(runtime, bundle).splitlines()
    assert lines[:5] == ["fd /proc/self/fd", "stdin /proc/self/fd/0", "stdout /proc/self/fd/1",
                         "stderr /proc/self/fd/2", "ptmx pts/ptmx"]
    assert lines[5].split()[:3] == ["0", "1", "2"]


def test_dev_is_a_small_tmpfs(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "grep ' /dev ' /proc/self/mountinfo; ls -A /dev | tr '\\n' ' '")
    line, listing = run_ok(runtime, bundle).splitlines()
    assert "tmpfs" in line.split(" - ")[1] and "nosuid" in line.split()[5]
    # Only what the runtime made: no host device leaked in.
    assert set(listing.split()) == {"fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
                                    "stdin", "stdout", "tty", "urandom", "zero"}


def test_config_devices(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", STAT_DEV + "/dev/mynull /dev/myblk /dev/myfifo /dev/deep/dir/node; "
                         "cat /dev/myblk 2>&1 | grep -o 'Operation not permitted\\|No such device.*' | head -1")
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 1000, "gid": 1001},
        {"path": "/dev/myblk", "type": "b", "major": 7, "minor": 200, "fileMode": 0o640},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o620, "uid": 7, "gid": 8},
        {"path": "/dev/deep/dir/node", "type": "u", "major": 1, "minor": 5},
    ]
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    got = parse_stat("\n".join(lines[:-1]))
    assert got["/dev/mynull"] == "character special file 600 1:3 1000:1001"
    assert got["/dev/myblk"] == "block special file 640 7:c8 0:0"
    assert got["/dev/myfifo"] == "fifo 620 0:0 7:8"
    assert got["/dev/deep/dir/node"] == "character special file 666 1:5 0:0"  # fileMode defaults to 0666
    # 7:200 is not in the device cgroup's allow list: the node exists but can't be opened.
    assert lines[-1] == "Operation not permitted", lines[-1]


def test_config_device_without_major_is_0_0(runtime, make_bundle):
    """The official schema leaves major and minor out of the required fields, and runc
    makes such a device 0:0 (checked side by side): so do we."""
    bundle = make_bundle("sh", "-c", STAT_DEV + "/dev/x")
    bundle.config["linux"]["devices"] = [{"path": "/dev/x", "type": "c"}]
    bundle.write()
    assert run_ok(runtime, bundle).split(None, 1)[1].strip() == "character special file 666 0:0 0:0"


def test_config_device_overrides_default(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", STAT_DEV + "/dev/zero")
    bundle.config["linux"]["devices"] = [{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5,
                                          "fileMode": 0o600, "uid": 1000, "gid": 1000}]
    bundle.write()
    assert run_ok(runtime, bundle).split(None, 1)[1].strip() == "character special file 600 1:5 1000:1000"


def test_device_outside_dev_inside_rootfs(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", STAT_DEV + "/mnt/dev1")
    bundle.config["root"]["readonly"] = False
    bundle.config["linux"]["devices"] = [{"path": "/mnt/dev1", "type": "c", "major": 1, "minor": 9}]
    bundle.write()
    out = run_ok(runtime, bundle)
    assert out.split(None, 1)[1].strip() == "character special file 666 1:9 0:0"
    assert os.path.exists(bundle.rootfs / "mnt/dev1"), "made in the rootfs"
