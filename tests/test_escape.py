"""Escape-class tests: a malicious rootfs (planted symlinks, a fake /dev/null, a path
swapped during setup) or a leaked descriptor must never give the container the host.

Each test says which naive behaviour it catches. Every check is made where it matters:
from inside the container (its mountinfo, what it can read) and on the host (its mount
table, its files, its core_pattern and hostname unchanged).

The attacks aim at /proc/sys/kernel/hostname, never at core_pattern: as writable to root,
but the container's own (it has a uts namespace), so even a vulnerable runtime changes
nothing of the host's. (runc 1.1.5, given a /dev/null linked to core_pattern, reopens its
stdio onto that "/dev/null" and the container's output goes into the sysctl.)
"""

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from conftest import RUNTIME, run_ok
from test_mounts import add_mount, host_mount_points, parse_mountinfo
from test_terminal import recv_fd

pytestmark = pytest.mark.root

SYSCTL = "/proc/sys/kernel/hostname"  # what planted links aim at: see above
HOST_SYSCTLS = ("/proc/sys/kernel/core_pattern", SYSCTL)


def read_host_sysctls():
    out = {}
    for path in HOST_SYSCTLS:
        with open(path) as f:
            out[path] = f.read()
    return out


@pytest.fixture
def host_dir():
    """A host directory outside every bundle holding a marker file, for a rootfs to point at."""
    path = f"/tmp/ocitest-host-{uuid.uuid4().hex[:10]}"
    os.mkdir(path)
    with open(os.path.join(path, "host-marker"), "w") as f:
        f.write("host\n")
    yield path
    subprocess.run(["umount", "-R", "-l", path], check=False, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", path], check=False)


@pytest.fixture
def host_sysctls_unchanged():
    """Fails the test if the host's core_pattern or hostname changed."""
    before = read_host_sysctls()
    yield
    assert read_host_sysctls() == before, "a host sysctl changed"


def without_dev_mounts(bundle):
    """No tmpfs on /dev: the rootfs's own /dev (and what it plants there) is used."""
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]


def refused(code, err, label):
    """The runtime failed with one line naming ``label`` (no traceback)."""
    return code != 0 and label in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def host_names_not_in(rootfs):
    """Entries of the host's / that the container's / doesn't have: seeing one means being out."""
    return set(os.listdir("/")) - set(os.listdir(rootfs)) - {"lost+found"}


# --- 1. mount destinations through symlinks: never the host, never procfs ---------------------
# A destination resolving into /proc (other than runc's few lxcfs files) is refused, as runc's
# checkProcMount does: a mount over procfs redirects what the runtime does through /proc
# later (CVE-2019-16884, CVE-2019-19921, CVE-2025-52881).

@pytest.mark.parametrize("where", ["evil", "dev/evil"])
@pytest.mark.parametrize("target", ["/proc/sys/kernel", "../../../../../proc/sys/kernel"])
def test_tmpfs_through_symlink_into_proc_is_refused(runtime, make_bundle, where, target):
    """Naive: resolves the link inside the rootfs (or worse, on the host) and mounts a tmpfs
    over /proc/sys/kernel without looking at where the destination landed."""
    bundle = make_bundle("cat", "/proc/self/mountinfo")
    without_dev_mounts(bundle)
    os.symlink(target, bundle.rootfs / where)
    i = add_mount(bundle, "/" + where, "tmpfs", "tmpfs")
    bundle.write()
    before = host_mount_points()
    code, out, err = runtime.run_output(bundle)
    assert not [p for p in host_mount_points() - before if p.startswith("/proc")], "a mount landed on the host"
    assert refused(code, err, f"mounts[{i}]"), (code, out, err)


def test_file_bind_through_symlink_onto_a_sysctl_is_refused(runtime, make_bundle, tmp_path,
                                                            host_sysctls_unchanged):
    """Naive: binds a bundle file over the container's sysctl file (or the host's)."""
    payload = tmp_path / "payload"
    payload.write_text("payload\n")
    bundle = make_bundle("cat", SYSCTL)
    os.symlink(SYSCTL, bundle.rootfs / "etc/link")
    i = add_mount(bundle, "/etc/link", "bind", payload, ["bind"])
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert SYSCTL not in host_mount_points()
    assert refused(code, err, f"mounts[{i}]"), (code, out, err)


def test_volume_over_proc_self_fd_cannot_redirect_the_masks(runtime, make_bundle, tmp_path):
    """A volume full of symlinks bound over the init's /proc/self/fd (through a planted
    link) would redirect every /proc/self/fd/N the runtime resolves after pivot_root: the
    mask of /proc/timer_list would bind one rootfs file onto another and leave the real
    file readable. Naive: accepts the mount because its destination resolved in the rootfs."""
    vol = tmp_path / "vol"
    vol.mkdir()
    bundle = make_bundle("sh", "-c", "wc -c < /proc/timer_list; cat /proc/self/mountinfo")
    for n in range(128):
        os.symlink(f"/etc/redirect-{n}", vol / str(n))
        (bundle.rootfs / f"etc/redirect-{n}").write_text(f"{n}\n")
    os.symlink("/proc/self/fd", bundle.rootfs / "vol")
    i = add_mount(bundle, "/vol", "bind", vol, ["bind"])
    bundle.config["linux"]["maskedPaths"] = ["/proc/timer_list"]
    bundle.config["linux"]["readonlyPaths"] = []
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    if code == 0:  # a runtime may keep its own /proc handles safe instead of refusing
        first, _, mountinfo = out.partition("\n")
        assert first.strip() == "0", "/proc/timer_list was left unmasked"
        assert not [m for m in parse_mountinfo(mountinfo) if m["point"].startswith("/proc/1/")]
    else:
        assert refused(code, err, f"mounts[{i}]"), (code, out, err)


def test_bind_onto_lxcfs_style_proc_file_is_allowed(runtime, make_bundle, tmp_path):
    """The other side of the /proc rule: runc lets a bind cover /proc/uptime (lxcfs does so)."""
    fake = tmp_path / "uptime"
    fake.write_text("12345.67 89.01\n")
    bundle = make_bundle("cat", "/proc/uptime")
    add_mount(bundle, "/proc/uptime", "bind", fake, ["bind", "ro"])
    bundle.write()
    assert run_ok(runtime, bundle) == "12345.67 89.01\n"


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_bind_through_dev_symlink_stays_in_rootfs(runtime, make_bundle, tmp_path, host_dir, form):
    """No /dev tmpfs, the rootfs's dev/evil leads to a host directory. Naive: resolves the
    destination on the host and binds the volume over the host's directory."""
    name = os.path.basename(host_dir)
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-volume").write_text("v\n")
    bundle = make_bundle("sh", "-c", f"ls /tmp/{name}/sub")
    without_dev_mounts(bundle)
    (bundle.rootfs / "tmp" / name).mkdir()
    os.symlink(host_dir if form == "absolute" else "../../../../.." + host_dir, bundle.rootfs / "dev/evil")
    add_mount(bundle, "/dev/evil/sub", "bind", vol, ["rbind"])
    bundle.write()
    out = run_ok(runtime, bundle)
    assert sorted(os.listdir(host_dir)) == ["host-marker"], "something was made in the host directory"
    assert not [p for p in host_mount_points() if p.startswith(host_dir)]
    assert out == "from-volume\n"



# --- 2. no runtime descriptor reaches the container, and its cwd is inside (CVE-2024-21626) ---
# runc leaked a directory fd (of /sys/fs/cgroup) into its init: process.cwd "/proc/self/fd/7"
# then started the container in the host's filesystem.

CWD_PROBE = "pwd -P; ls -a; cd ../../../../../../../../..; ls -a"


def run_holding_dir_fds(runtime, bundle, directory, numbers, *global_opts, preserve_fds=0):
    """`run` from a process holding a directory fd at each of ``numbers``: without
    --preserve-fds fds a caller leaks, which the runtime must not pass on."""
    code = ("import os, sys\n"
            f"fd = os.open({str(directory)!r}, os.O_RDONLY | os.O_DIRECTORY)\n"
            "os.set_inheritable(fd, True)  # it may be one of the numbers: dup2 leaves it as it is\n"
            f"for n in {list(numbers)!r}:\n"
            "    os.dup2(fd, n)\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n")
    argv = [sys.executable, "-c", code, RUNTIME, "--root", runtime.root, *global_opts,
            "run", "--preserve-fds", str(preserve_fds), "--bundle", str(bundle.path), runtime.new_id()]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def assert_inside_or_refused(proc, bundle):
    """The program never ran (one line naming process.cwd), or nothing it listed, from
    its cwd up to where .. stops, is the host's."""
    if not proc.stdout:
        assert refused(proc.returncode, proc.stderr, "process.cwd"), proc
        return
    listed = set(proc.stdout.split())
    assert "host-marker" not in listed, f"the program started in the host directory: {proc.stdout}"
    assert not listed & host_names_not_in(bundle.rootfs), f"the program reached the host's /: {proc.stdout}"


@pytest.mark.parametrize("n", [3, 4, 7, 15])
def test_cwd_through_a_callers_fd_never_leaves_the_rootfs(runtime, make_bundle, host_dir, n):
    """The caller holds a host directory at fds 3..15. Naive: passes them on (no close of
    inherited fds) and chdirs to process.cwd after pivot_root, following the magic link."""
    bundle = make_bundle("sh", "-c", CWD_PROBE)
    bundle.config["process"]["cwd"] = f"/proc/self/fd/{n}"
    bundle.write()
    assert_inside_or_refused(run_holding_dir_fds(runtime, bundle, host_dir, range(3, 16)), bundle)


@pytest.mark.parametrize("n", range(3, 16))
def test_cwd_through_a_runtime_fd_never_leaves_the_rootfs(runtime, make_bundle, tmp_path, n):
    """Whatever the runtime itself holds when it makes the init (its state directory, the
    bundle, cgroup directories, the log): none is a way out. Naive: the CVE's own leak."""
    bundle = make_bundle("sh", "-c", CWD_PROBE)
    bundle.config["process"]["cwd"] = f"/proc/self/fd/{n}"
    bundle.write()
    proc = runtime("--log", tmp_path / "log", "run", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert_inside_or_refused(proc, bundle)


@pytest.mark.parametrize("target", ["/proc/self/fd/7", "../proc/self/fd/7", "/proc/1/fd/7"])
def test_cwd_through_a_planted_link_never_leaves_the_rootfs(runtime, make_bundle, host_dir, target):
    """The image's working directory is a link to a magic link. Naive: checks the cwd
    string, not where it leads."""
    bundle = make_bundle("sh", "-c", CWD_PROBE)
    os.symlink(target, bundle.rootfs / "work")
    bundle.config["process"]["cwd"] = "/work"
    bundle.write()
    assert_inside_or_refused(run_holding_dir_fds(runtime, bundle, host_dir, range(3, 16)), bundle)


@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/self/fd/3/.."])
def test_cwd_through_a_preserved_fd_never_leaves_the_rootfs(runtime, make_bundle, host_dir, cwd):
    """The caller hands the container a host directory on purpose (--preserve-fds 1) and
    process.cwd names it. Naive: chdir after pivot_root follows the magic link out."""
    bundle = make_bundle("sh", "-c", CWD_PROBE)
    bundle.config["process"]["cwd"] = cwd
    bundle.write()
    assert_inside_or_refused(run_holding_dir_fds(runtime, bundle, host_dir, [3], preserve_fds=1), bundle)


def test_cwd_swapped_for_a_preserved_fd_never_leaves_the_rootfs(runtime, make_bundle, host_dir):
    """process.cwd (/work) is made in the rootfs, then a createContainer hook puts a link
    to /proc/self/fd/3, the preserved host directory, in its place. Naive: trusts the
    directory it made and chdirs through whatever is there at the end; the check belongs
    after the chdir, on where the process really is (runc's fix of CVE-2024-21626)."""
    bundle = make_bundle("sh", "-c", CWD_PROBE)
    work = bundle.rootfs / "work"
    bundle.config["process"]["cwd"] = "/work"
    bundle.config["hooks"] = {"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"rmdir {work} && ln -s /proc/self/fd/3 {work}"]}]}
    bundle.write()
    proc = run_holding_dir_fds(runtime, bundle, host_dir, [3], preserve_fds=1)
    assert_inside_or_refused(proc, bundle)
    assert "possible container breakout detected" in proc.stderr, proc.stderr


def test_cwd_is_the_configured_directory(runtime, make_bundle):
    """The positive side: cwd is the rootfs's directory, and .. from it is the rootfs's /."""
    bundle = make_bundle("sh", "-c", "readlink /proc/self/cwd; pwd -P; ls ..")
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.write()
    lines = run_ok(runtime, bundle).split()
    assert lines[:2] == ["/tmp", "/tmp"]
    assert set(lines[2:]) == set(os.listdir(bundle.rootfs))


def program_fds(pid):
    """{fd: target} of a process, read on the host."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/{pid}/fd/{n}")
        except FileNotFoundError:
            pass
    return out


def wait_exec(pid, comm):
    deadline = time.monotonic() + 5
    while open(f"/proc/{pid}/comm").read().strip() != comm:
        assert time.monotonic() < deadline, f"{comm} never ran"
        time.sleep(0.01)


@pytest.mark.parametrize("opts", [[], ["--log", "LOG", "--log-format", "json"], ["--debug", "--log", "LOG"]],
                         ids=["plain", "log-json", "debug-log"])
def test_only_stdio_reaches_the_program(runtime, make_bundle, tmp_path, opts):
    """After create (with --pid-file) and start, the program holds 0, 1 and 2 and nothing
    of the runtime's: not the state directory, the bundle, the pid file or the log.
    Naive: keeps its log file or exec fifo open across the exec."""
    opts = [str(tmp_path / "runtime.log") if o == "LOG" else o for o in opts]
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    runtime(*opts, "create", "--bundle", bundle.path, "--pid-file", tmp_path / "pid", cid)
    try:
        pid = runtime.state(cid)["pid"]
        runtime(*opts, "start", cid)
        wait_exec(pid, "sleep")
        fds = program_fds(pid)
    finally:
        runtime("delete", "--force", cid)
    assert sorted(fds) == [0, 1, 2], fds
    assert not [t for t in fds.values() if str(tmp_path) in t], fds


def test_only_stdio_reaches_the_program_inside(runtime, make_bundle, tmp_path, host_dir):
    """The same seen from inside, through run with --log, from a caller leaking fds:
    /proc/self/fd lists 0, 1, 2 and ls's own directory fd, and none leads out."""
    bundle = make_bundle("ls", "-l", "/proc/self/fd/")
    proc = run_holding_dir_fds(runtime, bundle, host_dir, range(3, 16), "--log", str(tmp_path / "log"))
    assert proc.returncode == 0, proc.stderr
    fds = {}
    for line in proc.stdout.splitlines()[1:]:
        name, _, target = line.partition(" -> ")
        fds[int(name.split()[-1])] = target
    # ls's own: the directory it reads (closed before it reads the links back)
    own = [n for n, t in fds.items() if n > 2 and (t == "" or t.endswith("/fd"))]
    assert len(own) == 1 and sorted(set(fds) - set(own)) == [0, 1, 2], fds
    assert not [t for t in fds.values() if host_dir in t or str(tmp_path) in t], fds


def test_only_the_pty_reaches_the_program_with_a_console_socket(runtime, make_bundle, tmp_path):
    """With process.terminal the console socket (a host unix socket) and the pty master
    go to the caller; the program holds only the pty's slave. Naive: leaks the socket."""
    bundle = make_bundle("sleep", "30")
    bundle.config["process"]["terminal"] = True
    bundle.write()
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    cid = runtime.new_id()
    master = None
    try:
        runtime("create", "--bundle", bundle.path, "--console-socket", path, cid)
        conn, _ = server.accept()
        master, name = recv_fd(conn)
        conn.close()
        pid = runtime.state(cid)["pid"]
        runtime("start", cid)
        wait_exec(pid, "sleep")
        fds = program_fds(pid)
    finally:
        runtime("delete", "--force", cid)
        server.close()
        if master is not None:
            os.close(master)
    assert sorted(fds) == [0, 1, 2], fds
    assert set(fds.values()) == {name}, fds


# --- 3. masked and read-only paths against a planted or swapped /dev/null (CVE-2025-31133) ----
# A masked file is covered by a bind of the container's /dev/null. If that is a link to
# core_pattern, a naive runtime binds the host's core_pattern, writable, over the masked
# path (here: a link to the harmless SYSCTL); if it is a regular file, that file; if it is
# missing, old runc skipped the mask.

MASK_PROBE = "wc -c < /proc/timer_list; cat /proc/self/mountinfo"


def masked_or_refused(code, out, err):
    """Either the runtime refused with one line about /dev/null, or /proc/timer_list is
    really masked: empty, and what covers it is not a procfs file (the linked sysctl)."""
    if code != 0:
        assert refused(code, err, "/dev/null"), (code, out, err)
        return
    first, _, mountinfo = out.partition("\n")
    covers = [m for m in parse_mountinfo(mountinfo) if m["point"] == "/proc/timer_list"]
    assert covers, "/proc/timer_list is not masked"
    assert covers[-1]["fstype"] != "proc", f"a procfs file covers /proc/timer_list: {covers[-1]}"
    assert first.strip() == "0", "/proc/timer_list is readable"


@pytest.mark.parametrize("planted", ["link-sysctl", "link-dotdot-sysctl", "regular-file"])
def test_planted_dev_null_never_masks(runtime, make_bundle, host_sysctls_unchanged, planted):
    """No /dev tmpfs: the rootfs's dev/null is what the masks would use. Naive: binds
    whatever /dev/null resolves to over each masked file."""
    bundle = make_bundle("sh", "-c", MASK_PROBE)
    without_dev_mounts(bundle)
    null = bundle.rootfs / "dev/null"
    if planted == "regular-file":
        null.write_text("not the null device\n")
    else:
        os.symlink(SYSCTL if planted == "link-sysctl" else "../../../.." + SYSCTL, null)
    bundle.write()
    masked_or_refused(*runtime.run_output(bundle))
    assert SYSCTL not in host_mount_points()


@pytest.mark.parametrize("swap", ["link-sysctl", "regular-file", "removed"])
def test_dev_null_swapped_during_setup_never_masks(runtime, make_bundle, host_sysctls_unchanged, swap):
    """A createContainer hook runs in the container's mount namespace after the devices are
    made and before the masks: it stands for whoever swaps the container's /dev/null in
    that window. Naive: trusts the /dev/null it made itself (runc before 1.2.8), or skips
    a mask whose /dev/null is missing (runc before 1.0)."""
    bundle = make_bundle("sh", "-c", MASK_PROBE)
    null = f"{bundle.path.resolve()}/rootfs/dev/null"
    plant = {"link-sysctl": f"ln -s {SYSCTL} {null}",
             "regular-file": f"echo not-null > {null}", "removed": "true"}[swap]
    bundle.config["hooks"] = {"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"rm -f {null} && {plant}"]}]}
    bundle.write()
    masked_or_refused(*runtime.run_output(bundle))


def test_dev_without_null_never_skips_masks(runtime, make_bundle, tmp_path):
    """/dev is bound from a directory with no null device. Naive: the mask's bind of
    /dev/null fails with ENOENT, taken for "the masked path doesn't exist", and skipped."""
    host_dev = tmp_path / "hostdev"
    host_dev.mkdir()
    bundle = make_bundle("sh", "-c", MASK_PROBE)
    without_dev_mounts(bundle)
    add_mount(bundle, "/dev", "bind", host_dev, ["rbind"])
    bundle.write()
    masked_or_refused(*runtime.run_output(bundle))
    assert os.listdir(host_dev) == []


@pytest.mark.parametrize("form", ["absolute", "relative"])
def test_masked_and_readonly_paths_through_links_stay_in_rootfs(runtime, make_bundle, host_dir, form):
    """maskedPaths and readonlyPaths entries that are links to a host directory and file.
    Naive: resolves them on the host (before pivot_root, or outside the root) and masks or
    binds read-only the host's instead of the container's, which stays readable/writable."""
    name = os.path.basename(host_dir)
    lead = host_dir if form == "absolute" else "../../../../.." + host_dir
    bundle = make_bundle("sh", "-c", f"wc -c < /etc/m; touch /etc/r/x 2>&1; touch /tmp/{name}/y && echo rw")
    bundle.config["root"]["readonly"] = False
    inside = bundle.rootfs / "tmp" / name
    (inside / "ro").mkdir(parents=True)
    (inside / "host-marker").write_text("the rootfs's own\n")
    os.symlink(lead + "/host-marker", bundle.rootfs / "etc/m")
    os.symlink(lead + "/ro", bundle.rootfs / "etc/r")
    bundle.config["linux"]["maskedPaths"].append("/etc/m")
    bundle.config["linux"]["readonlyPaths"].append("/etc/r")
    bundle.write()
    out = run_ok(runtime, bundle)
    assert out.splitlines()[0] == "0", "the rootfs's file behind the link is not masked"
    assert "Read-only file system" in out.splitlines()[1], "the rootfs's directory behind the link is writable"
    assert out.splitlines()[2] == "rw"
    assert not [p for p in host_mount_points() if p.startswith(host_dir)]
    assert sorted(os.listdir(host_dir)) == ["host-marker"]


@pytest.mark.parametrize("link", ["/etc/passwd", "../../../etc/passwd"])
def test_device_over_planted_link_never_chowns_its_target(runtime, make_bundle, link):
    """No /dev tmpfs, and the rootfs's dev/mydev is a link to its /etc/passwd. Naive: mknod
    fails with EEXIST and the device's uid/gid are then applied through the link, handing
    /etc/passwd to the container's unprivileged user."""
    bundle = make_bundle("sh", "-c", "stat -c '%u:%g %F' /dev/mydev /etc/passwd")
    without_dev_mounts(bundle)
    os.symlink(link, bundle.rootfs / "dev/mydev")
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "uid": 1000, "gid": 1000}]
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    st = os.stat(bundle.rootfs / "etc/passwd")
    assert (st.st_uid, st.st_gid) == (0, 0), "the device's owner went to the link's target"
    if code == 0:  # the device made, or the link left alone (runc leaves what exists)
        assert out.splitlines()[0] in ("1000:1000 character special file", "0:0 symbolic link"), out
        assert out.splitlines()[1] == "0:0 regular file", out
    else:
        assert refused(code, err, "linux.devices[0]"), (code, out, err)


# --- 4. an init joining namespaces can't be read from them (CVE-2016-9962) -------------------
# Until its exec the init is the runtime: host environment, host fds, host memory. A process
# in a namespace it joins, same uid but without CAP_SYS_PTRACE, must not read or ptrace it.

PEEK = ("while [ ! -e /tmp/go ]; do sleep 0.02; done; "
        "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = ociruntime:init ] || continue; "
        "cat $p/environ >/dev/null 2>&1 && echo readable || echo denied; done >/tmp/seen.tmp; "
        "mv /tmp/seen.tmp /tmp/seen; sleep 30")


def test_an_init_joining_a_pid_namespace_is_not_readable_from_it(runtime, make_bundle):
    """Container A (root, default capabilities) watches its pid namespace while B's init,
    which joined it, waits in `created`. Naive: A reads B's /proc/<pid>/environ — the
    runtime's own environment — as runc did before 1.0-rc3."""
    watcher = make_bundle("sh", "-c", PEEK)
    watcher.config["root"]["readonly"] = False
    watcher.write()
    a = runtime.new_id()
    runtime("create", "--bundle", watcher.path, a)
    b = None
    try:
        runtime("start", a)
        joiner = make_bundle("true")
        for ns in joiner.config["linux"]["namespaces"]:
            if ns["type"] == "pid":
                ns["path"] = f"/proc/{runtime.state(a)['pid']}/ns/pid"
        joiner.write()
        b = runtime.new_id()
        runtime("create", "--bundle", joiner.path, b)
        (watcher.rootfs / "tmp/go").touch()
        seen = watcher.rootfs / "tmp/seen"
        deadline = time.monotonic() + 10
        while not seen.exists():
            assert time.monotonic() < deadline, "the watcher never reported"
            time.sleep(0.02)
        assert seen.read_text() == "denied\n"
    finally:
        for cid in (b, a):
            if cid:
                runtime("delete", "--force", cid)
