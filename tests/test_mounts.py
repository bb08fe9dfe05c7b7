"""config.json ``mounts``, checked from inside real busybox containers through
/proc/self/mountinfo, and from the host for mounts that must never land there."""

import os
import subprocess
import uuid

import pytest
from conftest import run_ok

pytestmark = pytest.mark.root



def parse_mountinfo(text):
    """mountinfo lines -> list of dicts (later mounts last, as the kernel lists them)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or "-" not in f:
            continue
        sep = f.index("-")
        out.append({"root": f[3], "point": f[4].replace("\\040", " "), "opts": set(f[5].split(",")),
                    "optional": f[6:sep], "fstype": f[sep + 1], "source": f[sep + 2],
                    "super": set(f[sep + 3].split(","))})
    return out


def mount_at(text, point):
    """The top mount at ``point`` in mountinfo text."""
    found = [m for m in parse_mountinfo(text) if m["point"] == point]
    assert found, f"no mount at {point} in:\n{text}"
    return found[-1]


def host_mount_points():
    with open("/proc/self/mountinfo") as f:
        return {m["point"] for m in parse_mountinfo(f.read())}


def add_mount(bundle, destination, type_=None, source=None, options=None):
    m = {"destination": destination}
    if type_:
        m["type"] = type_
    if source is not None:
        m["source"] = str(source)
    if options is not None:
        m["options"] = options
    bundle.config["mounts"].append(m)
    return len(bundle.config["mounts"]) - 1


MOUNTINFO = "cat /proc/self/mountinfo"


# --- bind mounts ----------------------------------------------------------------------------

def test_bind_mount_directory_read_write(runtime, make_bundle, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text("from host\n")
    bundle = make_bundle("sh", "-c", "cat /data/hello; echo inside > /data/back")
    add_mount(bundle, "/data", "bind", src, ["bind"])
    bundle.write()
    assert run_ok(runtime, bundle) == "from host\n"
    assert (src / "back").read_text() == "inside\n"


def test_bind_mount_single_file(runtime, make_bundle, tmp_path):
    src = tmp_path / "file.conf"
    src.write_text("setting=1\n")
    bundle = make_bundle("sh", "-c", "cat /etc/app/file.conf; stat -c %F /etc/app/file.conf; " + MOUNTINFO)
    add_mount(bundle, "/etc/app/file.conf", "bind", src, ["bind", "ro"])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert out.startswith("setting=1\nregular file\n")
    assert "ro" in mount_at(out, "/etc/app/file.conf")["opts"]
    assert (bundle.rootfs / "etc/app/file.conf").is_file(), "the mount point file is made in the rootfs"


def test_bind_type_none_with_bind_option(runtime, make_bundle, tmp_path):
    """runc's older style: no type (or "none"), "bind" in the options."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    bundle = make_bundle("cat", "/a/f", "/b/f")
    add_mount(bundle, "/a", None, src, ["bind"])
    add_mount(bundle, "/b", "none", src, ["rbind"])
    bundle.write()
    assert run_ok(runtime, bundle) == "xx"


def test_rbind_brings_submounts_bind_does_not(runtime, make_bundle, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub/under").write_text("hidden by the submount\n")
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "sub")], check=True)
    try:
        (src / "sub/on-submount").write_text("on submount\n")
        bundle = make_bundle("sh", "-c", "ls /r/sub; echo --; ls /b/sub")
        add_mount(bundle, "/r", "bind", src, ["rbind"])
        add_mount(bundle, "/b", "bind", src, ["bind"])
        bundle.write()
        out = run_ok(runtime, bundle)
    finally:
        subprocess.run(["umount", "-l", str(src / "sub")], check=False)
    assert out == "on-submount\n--\nunder\n"


def test_bind_ro_refuses_writes(runtime, make_bundle, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bundle = make_bundle("sh", "-c", "touch /data/x; " + MOUNTINFO)
    add_mount(bundle, "/data", "bind", src, ["rbind", "ro"])
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert "Read-only file system" in err
    assert "ro" in mount_at(out, "/data")["opts"]
    assert not (src / "x").exists()


def test_bind_remount_flags_show_in_mountinfo(runtime, make_bundle, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/flags", "bind", src, ["rbind", "nosuid", "nodev", "noexec", "ro"])
    add_mount(bundle, "/plain", "bind", src, ["rbind"])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_at(out, "/flags")["opts"]
    plain = mount_at(out, "/plain")["opts"]
    assert "rw" in plain and not {"nosuid", "nodev", "noexec"} & plain


def test_noexec_bind_refuses_exec(runtime, make_bundle, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    script = src / "run.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o755)
    bundle = make_bundle("sh", "-c", "/x/run.sh; /y/run.sh")
    add_mount(bundle, "/x", "bind", src, ["rbind", "noexec"])
    add_mount(bundle, "/y", "bind", src, ["rbind"])
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert out == "ran\n" and "Permission denied" in err


def test_relative_bind_source_resolves_against_bundle(runtime, make_bundle):
    bundle = make_bundle("cat", "/in/file")
    (bundle.path / "stuff").mkdir()
    (bundle.path / "stuff/file").write_text("bundle-relative\n")
    add_mount(bundle, "/in", "bind", "stuff", ["bind"])
    bundle.write()
    # Run from elsewhere: the source must not depend on the runtime's cwd.
    assert run_ok(runtime, bundle) == "bundle-relative\n"


def test_missing_bind_source_fails_naming_the_mount(runtime, make_bundle, tmp_path):
    bundle = make_bundle("true")
    i = add_mount(bundle, "/in", "bind", tmp_path / "nope", ["bind"])
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and f"mounts[{i}].source" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# --- flags and atime ------------------------------------------------------------------------

@pytest.mark.parametrize("option, shown, absent", [
    ("noatime", {"noatime"}, {"relatime"}),
    ("relatime", {"relatime"}, {"noatime"}),
    ("strictatime", set(), {"relatime", "noatime"}),
    ("nodiratime", {"nodiratime"}, set()),
])
def test_atime_options(runtime, make_bundle, option, shown, absent):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/t", "tmpfs", "tmpfs", [option])
    bundle.write()
    opts = mount_at(run_ok(runtime, bundle), "/t")["opts"]
    assert shown <= opts and not absent & opts, opts


@pytest.mark.parametrize("fstype", ["tmpfs", "bind"])
def test_nosuid_nodev_noexec_flags(runtime, make_bundle, tmp_path, fstype):
    (tmp_path / "src").mkdir()
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    opts = ["nosuid", "nodev", "noexec"]
    if fstype == "bind":
        add_mount(bundle, "/t", "bind", tmp_path / "src", ["rbind", *opts])
    else:
        add_mount(bundle, "/t", "tmpfs", "tmpfs", opts)
    add_mount(bundle, "/u", "tmpfs", "tmpfs", ["suid", "dev", "exec"])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert set(opts) <= mount_at(out, "/t")["opts"]
    assert not set(opts) & mount_at(out, "/u")["opts"]


def test_later_option_undoes_earlier(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/t", "tmpfs", "tmpfs", ["ro", "noexec", "rw", "exec"])
    bundle.write()
    opts = mount_at(run_ok(runtime, bundle), "/t")["opts"]
    assert "rw" in opts and "noexec" not in opts


# --- propagation ----------------------------------------------------------------------------

@pytest.fixture
def shared_host_dir(tmp_path):
    """A tmpfs under tmp_path with shared propagation on the host; unmounted after."""
    path = tmp_path / "shared"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-R", "-l", str(path)], check=False)


@pytest.mark.parametrize("option, want", [
    ("rslave", "master"), ("slave", "master"),
    ("rshared", "shared"), ("shared", "shared"),
    ("rprivate", None), ("private", None),
    ("unbindable", "unbindable"),
])
def test_bind_propagation(runtime, make_bundle, shared_host_dir, option, want):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/p", "bind", shared_host_dir, ["rbind", option])
    bundle.write()
    fields = mount_at(run_ok(runtime, bundle), "/p")["optional"]
    kinds = {f.split(":")[0] for f in fields}
    if want is None:
        assert not kinds, fields
    else:
        assert want in kinds, fields
    if want == "master":
        assert "shared" not in kinds, fields


def test_tmpfs_propagation_shared(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/p", "tmpfs", "tmpfs", ["rshared"])
    add_mount(bundle, "/q", "tmpfs", "tmpfs", [])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert any(f.startswith("shared:") for f in mount_at(out, "/p")["optional"])
    assert not mount_at(out, "/q")["optional"]


# --- filesystems ----------------------------------------------------------------------------

def test_tmpfs_size_and_mode(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "stat -c %a /t; df -k /t | tail -1; " + MOUNTINFO)
    add_mount(bundle, "/t", "tmpfs", "tmpfs", ["size=2m", "mode=0710", "nosuid"])
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    assert lines[0] == "710"
    assert lines[1].split()[1] == "2048"
    m = mount_at("\n".join(lines[2:]), "/t")
    assert m["fstype"] == "tmpfs" and {"size=2048k", "mode=710"} <= m["super"] and "nosuid" in m["opts"]


def test_tmpfs_size_is_enforced(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "dd if=/dev/zero of=/t/big bs=1024 count=200 2>/dev/null; echo rc=$?; "
                         "ls -s /t/big")
    add_mount(bundle, "/t", "tmpfs", "tmpfs", ["size=64k"])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert out.splitlines()[0] != "rc=0", out
    assert int(out.splitlines()[-1].split()[0]) <= 64


@pytest.mark.cgroup_v1_hybrid
def test_default_filesystems_are_mounted(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    out = run_ok(runtime, bundle)
    want = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
            "/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "tmpfs"}
    for point, fstype in want.items():
        assert mount_at(out, point)["fstype"] == fstype, point
    assert "ro" in mount_at(out, "/sys")["opts"]
    assert {"ro", "nosuid", "nodev", "noexec"} <= mount_at(out, "/sys/fs/cgroup")["opts"]
    devpts = mount_at(out, "/dev/pts")
    assert {"mode=620", "ptmxmode=666", "gid=5"} <= devpts["super"]
    cgroups = [m for m in parse_mountinfo(out) if m["point"].startswith("/sys/fs/cgroup/")]
    assert cgroups and all(m["fstype"] in ("cgroup", "cgroup2") for m in cgroups)
    assert all("ro" in m["opts"] for m in cgroups)


@pytest.mark.cgroup_v1_hybrid
def test_cgroup_mount_shows_container_cgroup(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "cat /sys/fs/cgroup/pids/cgroup.procs; ls /sys/fs/cgroup")
    out = run_ok(runtime, bundle).split()
    assert out[0] == "1", "only the container's own process is in its pids cgroup"
    assert "pids" in out and "memory" in out


def test_mqueue_and_devpts_usable(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "ls -A /dev/mqueue | wc -l; ls /dev/pts")
    out = run_ok(runtime, bundle).split()
    assert out == ["0", "ptmx"]


def test_sysfs_and_proc_are_the_containers(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "ls /sys/class/net; ls -d /proc/[0-9]* | wc -l")
    out = run_ok(runtime, bundle).split()
    assert out[0] == "lo" and len(out) == 2, "sysfs of the container's network namespace"
    assert int(out[1]) <= 3


def test_missing_parents_of_destination_are_created(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "stat -c %F /a/b/c/d; " + MOUNTINFO)
    add_mount(bundle, "/a/b/c/d", "tmpfs", "tmpfs")
    bundle.write()  # the root is read-only: the directories are made before that
    out = run_ok(runtime, bundle)
    assert out.startswith("directory\n")
    assert mount_at(out, "/a/b/c/d")["fstype"] == "tmpfs"
    assert (bundle.rootfs / "a/b/c/d").is_dir()


def test_destination_with_dotdot_stays_inside(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    add_mount(bundle, "/../../x/../y", "tmpfs", "tmpfs")
    bundle.write()
    assert mount_at(run_ok(runtime, bundle), "/y")["fstype"] == "tmpfs"
    assert (bundle.rootfs / "y").is_dir()


def test_mount_over_mount(runtime, make_bundle, tmp_path):
    """Later mounts stack on earlier ones at the same destination and inside them."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("bound\n")
    bundle = make_bundle("sh", "-c", "cat /m/f; ls /m/inner")
    add_mount(bundle, "/m", "tmpfs", "tmpfs")
    add_mount(bundle, "/m", "bind", tmp_path / "src", ["bind"])
    add_mount(bundle, "/m/inner", "tmpfs", "tmpfs")
    bundle.write()
    assert run_ok(runtime, bundle) == "bound\n"
    assert (tmp_path / "src/inner").is_dir(), "the inner mount point was made in the bound dir"


# --- refused options ------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["idmap", "rnoexec", "rro"])
def test_unsupported_mount_option_refused(runtime, make_bundle, tmp_path, option):
    (tmp_path / "src").mkdir()
    bundle = make_bundle("true")
    i = add_mount(bundle, "/t", "bind", tmp_path / "src", ["rbind", option])
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code != 0
    assert f"mounts[{i}].options" in err and option in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (bundle.rootfs / "t").exists(), "refused before anything was made"


def test_unknown_filesystem_type_fails_naming_mount(runtime, make_bundle):
    bundle = make_bundle("true")
    i = add_mount(bundle, "/t", "nosuchfs", "x")
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and f"mounts[{i}]" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_bad_tmpfs_data_fails_naming_mount(runtime, make_bundle):
    bundle = make_bundle("true")
    i = add_mount(bundle, "/t", "tmpfs", "tmpfs", ["size=lots"])
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and f"mounts[{i}]" in err and "Traceback" not in err


# --- symlinks must not lead mounts out of the rootfs (CVE-2021-30465 class) -----------------

@pytest.fixture
def host_dir():
    """A directory on the host, outside every bundle, that a malicious rootfs points at."""
    path = f"/tmp/ocitest-escape-{uuid.uuid4().hex[:10]}"
    os.mkdir(path)
    yield path
    subprocess.run(["umount", "-R", "-l", path], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", path], check=False)


def _inside_mounts(pid):
    with open(f"/proc/{pid}/mountinfo") as f:
        return f.read()


@pytest.mark.parametrize("form", ["absolute", "relative", "dotdot-absolute"])
def test_symlinked_destination_stays_in_rootfs(runtime, make_bundle, host_dir, form):
    name = os.path.basename(host_dir)
    target = {"absolute": host_dir, "relative": "../../../../../../../../.." + host_dir,
              "dotdot-absolute": "/../../.." + host_dir}[form]
    bundle = make_bundle("sleep", "30")
    (bundle.rootfs / "tmp" / name).mkdir()  # where the link leads when resolved inside the rootfs
    os.symlink(target, bundle.rootfs / "escape")
    add_mount(bundle, "/escape/sub", "tmpfs", "tmpfs")
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        pid = runtime.state(cid)["pid"]
        host_points = host_mount_points()
        inside = _inside_mounts(pid)
    finally:
        runtime("delete", "--force", cid)
    assert not any(p.startswith(host_dir) for p in host_points), "a mount landed on the host"
    assert not os.path.exists(os.path.join(host_dir, "sub")), "a mount point was made on the host"
    assert mount_at(inside, f"/tmp/{name}/sub")["fstype"] == "tmpfs"
    assert (bundle.rootfs / "tmp" / name / "sub").is_dir()


def test_dangling_symlinked_destination_never_reaches_host(runtime, make_bundle, host_dir):
    """The link's target doesn't exist in the rootfs: either fail cleanly or make it inside."""
    name = os.path.basename(host_dir)
    bundle = make_bundle("sh", "-c", "grep -c ' /tmp/" + name + "/sub ' /proc/self/mountinfo")
    os.symlink(host_dir, bundle.rootfs / "escape")
    i = add_mount(bundle, "/escape/sub", "tmpfs", "tmpfs")
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert not os.path.exists(os.path.join(host_dir, "sub")), "a mount point was made on the host"
    assert "Traceback" not in err
    if code == 0:
        assert out == "1\n" and (bundle.rootfs / "tmp" / name / "sub").is_dir()
    else:
        assert f"mounts[{i}]" in err and len(err.strip().splitlines()) == 1, err


def test_symlink_under_dev_stays_in_rootfs(runtime, make_bundle, host_dir):
    """No /dev tmpfs: the rootfs's own /dev holds a link out; mounts and device nodes
    through it must land in the rootfs."""
    name = os.path.basename(host_dir)
    bundle = make_bundle("sleep", "30")
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    (bundle.rootfs / "tmp" / name).mkdir()
    os.symlink(host_dir, bundle.rootfs / "dev/evil")
    add_mount(bundle, "/dev/evil/sub", "tmpfs", "tmpfs")
    bundle.config["linux"]["devices"] = [{"path": "/dev/evil/node", "type": "c", "major": 1, "minor": 3}]
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        host_points = host_mount_points()
        inside = _inside_mounts(runtime.state(cid)["pid"])
    finally:
        runtime("delete", "--force", cid)
    assert not any(p.startswith(host_dir) for p in host_points)
    assert os.listdir(host_dir) == [], "something was made in the host dir"
    assert mount_at(inside, f"/tmp/{name}/sub")["fstype"] == "tmpfs"
    assert (bundle.rootfs / "tmp" / name / "node").exists()
    # Clean the device nodes the rootfs /dev got (they live in the bundle, not on the host).


def test_symlinked_file_bind_destination_stays_in_rootfs(runtime, make_bundle, tmp_path, host_dir):
    """The final component is a link to a host file: the bind covers the rootfs's file."""
    host_file = os.path.join(host_dir, "victim")
    with open(host_file, "w") as f:
        f.write("host\n")
    src = tmp_path / "payload"
    src.write_text("payload\n")
    name = os.path.basename(host_dir)
    bundle = make_bundle("sleep", "30")
    (bundle.rootfs / "tmp" / name).mkdir()
    (bundle.rootfs / "tmp" / name / "victim").write_text("rootfs\n")
    os.symlink(host_file, bundle.rootfs / "etc/link")
    add_mount(bundle, "/etc/link", "bind", src, ["bind"])
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        host_points = host_mount_points()
        with open(host_file) as f:
            host_content = f.read()
        inside = _inside_mounts(runtime.state(cid)["pid"])
    finally:
        runtime("delete", "--force", cid)
    assert host_file not in host_points and host_content == "host\n"
    assert mount_at(inside, f"/tmp/{name}/victim")["root"].endswith("/payload")


def test_bind_mounted_dev_is_left_alone(runtime, make_bundle, tmp_path):
    host_dev = tmp_path / "hostdev"
    host_dev.mkdir()
    (host_dev / "tty").write_text("")
    os.chown(host_dev / "tty", 1000, 5)
    bundle = make_bundle("ls", "/dev")
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    add_mount(bundle, "/dev", "bind", host_dev, ["rbind"])
    # Masking a file needs a real /dev/null, which this /dev doesn't have (see test_linux).
    bundle.config["linux"]["maskedPaths"] = []
    bundle.write()
    assert run_ok(runtime, bundle) == "tty\n"
    st = os.stat(host_dev / "tty")
    assert sorted(os.listdir(host_dev)) == ["tty"] and (st.st_uid, st.st_gid) == (1000, 5)


def test_proc_on_a_symlink_is_refused(runtime, make_bundle, host_dir):
    bundle = make_bundle("true")
    os.rmdir(bundle.rootfs / "proc")
    os.symlink(host_dir, bundle.rootfs / "proc")
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and "mounts[0]" in err and "Traceback" not in err
    assert os.listdir(host_dir) == []
    assert host_dir not in host_mount_points()
