"""config.json ``mounts``, checked from inside real busybox containers through
/proc/self/mountinfo, and from the host for mounts that must never land there."""

import os
import shutil
import stat
import subprocess
import uuid

import pytest
from conftest import Runtime, run_ok
from test_linux import traversable  # noqa: F401  (a fixture)

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


# --- tmpcopyup: a tmpfs that starts with what the directory it covers holds (runc's extension) -

PODMAN_TMPFS = ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]  # podman's --read-only /tmp, /run, /var/tmp
SEED_TIMES = (1_000_000_000, 1_100_000_000)  # atime, mtime of every seeded entry


def seed(directory, fifo=True, root=("dir", 0o1777, 0, 0, None), shift=0):
    """Make ``directory`` (``root``: its mode, owner, group) and fill it with every kind of
    entry tmpcopyup copies, each with its own owner, group, mode and times (ids + ``shift``);
    return {relative path: what its copy must be} (_tree's form). The links are never to be
    followed: one leads to the rootfs's /etc/passwd, one to / (the whole rootfs), one nowhere."""
    want = {
        "": root,
        "file": ("file", 0o640, 1234, 5678, "hello\n"),
        "setgid": ("file", 0o2711, 1000, 1000, "#!/bin/sh\n"),
        "sub": ("dir", 0o751, 42, 43, None),
        "sub/inner": ("file", 0o600, 0, 0, "inner\n"),
        "sub/deeper": ("dir", 0o1777, 0, 0, None),
        "sub/deeper/empty": ("file", 0o644, 7, 7, ""),
        "passwd": ("link", 0o777, 7, 8, "/etc/passwd"),
        "root": ("link", 0o777, 0, 0, "/"),
        "rel": ("link", 0o777, 0, 0, "sub/inner"),
        "dangling": ("link", 0o777, 9, 9, "/nonexistent"),
    }
    if fifo:
        want["fifo"] = ("fifo", 0o620, 5, 6, None)
    for rel, (kind, mode, uid, gid, what) in want.items():
        path = os.path.join(directory, rel)
        if kind == "dir":
            os.mkdir(path)
        elif kind == "file":
            with open(path, "w") as f:
                f.write(what)
        elif kind == "link":
            os.symlink(what, path)
        else:
            os.mkfifo(path)
        os.chown(path, uid + shift, gid + shift, follow_symlinks=False)
        if kind != "link":
            os.chmod(path, mode)
    for rel in sorted(want, key=len, reverse=True):  # a directory after what it holds
        os.utime(os.path.join(directory, rel), SEED_TIMES, follow_symlinks=False)
    return {rel: (kind, mode, uid + shift, gid + shift, what, SEED_TIMES)
            for rel, (kind, mode, uid, gid, what) in want.items()}


def _tree(directory, times=True):
    """{relative path: (kind, mode, uid, gid, content or link target, (atime, mtime))} of
    everything under ``directory``, no link followed; each entry stat'ed before it is read
    or listed, so reading leaves the times compared alone."""
    kinds = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link", stat.S_IFIFO: "fifo"}
    out = {}

    def walk(rel):
        path = os.path.join(directory, rel)
        st = os.lstat(path)
        kind = kinds.get(stat.S_IFMT(st.st_mode), oct(stat.S_IFMT(st.st_mode)))
        what = None
        if kind == "file":
            with open(path) as f:
                what = f.read()
        elif kind == "link":
            what = os.readlink(path)
        out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what,
                    (int(st.st_atime), int(st.st_mtime)) if times else None)
        if kind == "dir":
            for name in sorted(os.listdir(path)):
                walk(os.path.join(rel, name))

    walk("")
    return out


def untimed(tree):
    """A _tree without the times: the rootfs's, whose atimes the copying changed."""
    return {rel: (*v[:5], None) for rel, v in tree.items()}


def created_tree(runtime, bundle, directory):
    """create the container; its mountinfo and _tree(directory) as the waiting init sees
    them (/proc/<pid>/root); then delete it."""
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        pid = runtime.state(cid)["pid"]
        return _inside_mounts(pid), _tree(f"/proc/{pid}/root{directory}")
    finally:
        runtime("delete", "--force", cid)


def test_tmpcopyup_copies_the_directory(runtime, make_bundle):
    """A tmpfs with podman's options on a rootfs directory holding files, directories,
    links and a FIFO: the tmpfs holds identical copies (owner, group, mode, times, set-id
    bits; links as links, never followed), its root the directory's owner, group, mode."""
    bundle = make_bundle("true")
    want = seed(bundle.rootfs / "seed", root=("dir", 0o750, 11, 12, None))
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    inside, copied = created_tree(runtime, bundle, "/seed")
    m = mount_at(inside, "/seed")
    assert m["fstype"] == "tmpfs" and {"rw", "nosuid", "nodev"} <= m["opts"], m
    assert copied == want
    assert _tree(bundle.rootfs / "seed", times=False) == untimed(want)


@pytest.mark.usefixtures("traversable")
def test_tmpcopyup_in_a_user_namespace(runtime, make_bundle):
    """In a user namespace the copies keep their owners (the container's ids of the
    mapped host ones): seen from the host, the same ids as the directory's. A directory
    whose owner the namespace doesn't map (the host's root: "nobody" inside) leaves the
    tmpfs's root to the container's root, as runc does: it can write there."""
    bundle = make_bundle("sh", "-c", "touch /hostowned/x && stat -c '%a %u %g' /hostowned; ls /hostowned")
    want = seed(bundle.rootfs / "seed", root=("dir", 0o750, 11, 12, None), shift=100000)
    os.mkdir(bundle.rootfs / "hostowned", 0o755)
    (bundle.rootfs / "hostowned/f").write_text("")
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        bundle.config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS)
    add_mount(bundle, "/hostowned", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    inside, copied = created_tree(runtime, bundle, "/seed")
    assert mount_at(inside, "/seed")["fstype"] == "tmpfs" and copied == want
    assert run_ok(runtime, bundle) == "755 0 0\nf\nx\n"


class Runc(Runtime):
    binary = "/usr/sbin/runc"


def test_tmpcopyup_as_runc_does(runtime, make_bundle, tmp_path):
    """runc 1.1 on the same bundle makes the same tree: names, kinds, contents, link targets,
    owners and groups, modes of files (set-id bits too) and of the root. Where it differs,
    this runtime keeps closer to the directory: runc gives every copy the time of copying,
    makes directories under its umask (1777 becomes 1755), leaves the root owned by root,
    and fails on a FIFO ("lchown …/fifo: no such file or directory"): none here."""
    bundle = make_bundle("true")
    seed(bundle.rootfs / "seed", fifo=False, root=("dir", 0o750, 11, 12, None))
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    runc = Runc(tmp_path / "runc-state")
    trees = {name: created_tree(rt, bundle, "/seed")[1] for name, rt in (("runc", runc), ("ociruntime", runtime))}

    def agreed(tree):
        return {rel: (kind, None if kind == "dir" and rel else mode, uid if rel else None, gid if rel else None, what)
                for rel, (kind, mode, uid, gid, what, _) in tree.items()}

    assert agreed(trees["ociruntime"]) == agreed(trees["runc"])
    assert trees["runc"][""][1:4] == (0o750, 0, 0) and trees["ociruntime"][""][1:4] == (0o750, 11, 12)


def test_tmpcopyup_writes_stay_in_the_tmpfs(runtime, make_bundle):
    """What the container writes, changes or removes there never reaches the rootfs; the
    container holds no fd of the runtime's (the copy's are closed)."""
    script = ("echo new > /seed/new && echo changed > /seed/sub/inner && rm /seed/file && mkdir /seed/made && "
              "chmod 700 /seed && ls /seed && exec ls /proc/self/fd")
    bundle = make_bundle("sh", "-c", script)
    want = seed(bundle.rootfs / "seed")
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    out = run_ok(runtime, bundle).split()
    assert out == ["dangling", "fifo", "made", "new", "passwd", "rel", "root", "setgid", "sub",
                   "0", "1", "2", "3"], out
    assert _tree(bundle.rootfs / "seed", times=False) == untimed(want)


@pytest.mark.parametrize("how", ["root.readonly", "ro tmpfs"])
def test_tmpcopyup_and_read_only(runtime, make_bundle, how):
    """podman's --read-only: a read-only root with tmpcopyup tmpfs on it, which take
    writes. A read-only tmpcopyup tmpfs (on a read-write root) is filled first, then made
    read-only."""
    bundle = make_bundle("sh", "-c", "touch /seed/x && echo wrote; touch /y || echo refused; cat /seed/rel; "
                                     + MOUNTINFO)
    seed(bundle.rootfs / "seed")
    bundle.config["root"]["readonly"] = how == "root.readonly"
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS if how == "root.readonly" else ["ro", "tmpcopyup"])
    bundle.write()
    out = run_ok(runtime, bundle)
    if how == "root.readonly":
        assert out.splitlines()[:3] == ["wrote", "refused", "inner"], out
        assert "ro" in mount_at(out, "/")["opts"] and "rw" in mount_at(out, "/seed")["opts"]
    else:
        assert out.splitlines()[0] == "inner", out
        assert "rw" in mount_at(out, "/")["opts"] and "ro" in mount_at(out, "/seed")["opts"]
    assert mount_at(out, "/seed")["fstype"] == "tmpfs" and not (bundle.rootfs / "seed/x").exists()


def test_tmpcopyup_on_a_missing_or_empty_directory(runtime, make_bundle):
    """A destination the rootfs lacks is made as for any mount: nothing to copy, the root
    the tmpfs's own (1777, or the mode= asked); an empty one gives an empty tmpfs with its
    mode. The data's mode=, uid=, gid= win over the directory's."""
    bundle = make_bundle("sh", "-c", "stat -c '%n %a %u %g' /fresh /asked /empty /own; ls -A /fresh /empty /own")
    os.mkdir(bundle.rootfs / "empty", 0o700)
    os.mkdir(bundle.rootfs / "own")
    (bundle.rootfs / "own/f").write_text("")
    os.chown(bundle.rootfs / "own", 5, 6)
    os.chmod(bundle.rootfs / "own", 0o755)
    add_mount(bundle, "/fresh", "tmpfs", "tmpfs", ["tmpcopyup"])
    add_mount(bundle, "/asked", "tmpfs", "tmpfs", ["tmpcopyup", "mode=0710"])
    add_mount(bundle, "/empty", "tmpfs", "tmpfs", ["tmpcopyup"])
    add_mount(bundle, "/own", "tmpfs", "tmpfs", ["tmpcopyup", "uid=9", "mode=0705"])
    bundle.write()
    assert run_ok(runtime, bundle) == ("/fresh 1777 0 0\n/asked 710 0 0\n/empty 700 0 0\n/own 705 9 6\n"
                                       "/empty:\n\n/fresh:\n\n/own:\nf\n")
    assert sorted(os.listdir(bundle.rootfs / "fresh")) == []


def test_tmpcopyup_through_a_link_copies_the_rootfs_own(runtime, make_bundle, host_dir):
    """The destination is a link to a host directory: it resolves inside the rootfs, and
    the rootfs's directory there is what is copied, never the host's."""
    name = os.path.basename(host_dir)
    with open(os.path.join(host_dir, "host-secret"), "w") as f:
        f.write("host\n")
    bundle = make_bundle("true")
    os.makedirs(bundle.rootfs / "tmp" / name)
    (bundle.rootfs / "tmp" / name / "inside").write_text("rootfs\n")
    os.symlink(host_dir, bundle.rootfs / "escape")
    add_mount(bundle, "/escape", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    inside, copied = created_tree(runtime, bundle, f"/tmp/{name}")
    assert mount_at(inside, f"/tmp/{name}")["fstype"] == "tmpfs"
    assert sorted(copied) == ["", "inside"] and copied["inside"][4] == "rootfs\n"
    assert sorted(os.listdir(host_dir)) == ["host-secret"] and host_dir not in host_mount_points()


def without_mount_namespace(bundle):
    bundle.config["linux"]["namespaces"] = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "mount"]


def test_tmpcopyup_without_a_mount_namespace(runtime, make_bundle):
    """The tmpfs lands on the host's rootfs directory, filled; delete detaches it and the
    directory is as it was."""
    bundle = make_bundle("sleep", "100")
    want = seed(bundle.rootfs / "seed")
    without_mount_namespace(bundle)
    add_mount(bundle, "/seed", "tmpfs", "tmpfs", PODMAN_TMPFS)
    bundle.write()
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        assert f"{bundle.rootfs}/seed" in host_mount_points()
        assert _tree(bundle.rootfs / "seed") == want
    finally:
        runtime("delete", "--force", cid)
    assert f"{bundle.rootfs}/seed" not in host_mount_points()
    assert _tree(bundle.rootfs / "seed", times=False) == untimed(want)


@pytest.mark.parametrize("mount_namespace", [True, False])
def test_tmpcopyup_failure_names_the_mount(runtime, make_bundle, mount_namespace):
    """A destination that is a file, and one whose tree is deeper than a path may be: one
    line naming the mount and where, nothing left mounted (the fixture checks the host)."""
    bundle = make_bundle("true")
    (bundle.rootfs / "afile").write_text("x")
    deep = os.open(bundle.rootfs, os.O_RDONLY | os.O_DIRECTORY)
    for name in ("deep", *["d" * 250] * 17):  # 17 * 251 > 4096
        os.mkdir(name, dir_fd=deep)
        deep, parent = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=deep), deep
        os.close(parent)
    os.close(deep)
    if not mount_namespace:
        without_mount_namespace(bundle)
    mounts = bundle.config["mounts"]
    for dst, words in (("/afile", ["/afile", "Not a directory"]), ("/deep", ["/deep/ddd", "File name too long"])):
        bundle.config["mounts"] = list(mounts)
        i = add_mount(bundle, dst, "tmpfs", "tmpfs", ["tmpcopyup"])
        bundle.write()
        code, _, err = runtime.run_output(bundle)
        assert code != 0 and f"mounts[{i}]: tmpcopyup: " in err and all(w in err for w in words), err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    shutil.rmtree(bundle.rootfs / "deep")


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
