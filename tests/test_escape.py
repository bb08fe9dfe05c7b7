"""Escape-class tests: a malicious rootfs (planted symlinks, a fake /dev/null, a path
swapped during setup) or a leaked descriptor must never give the container the host.

Each test says which naive behaviour it catches. Every check is made where it matters:
from inside the container (its mountinfo, what it can read) and on the host (its mount
table, its files, /proc/sys/kernel/core_pattern unchanged). No test ever writes to a host
sysctl: an attack aimed at core_pattern is judged by where it was mounted, never by a write.
"""

import os
import subprocess
import uuid

import pytest
from conftest import run_ok
from test_mounts import add_mount, host_mount_points, parse_mountinfo

pytestmark = pytest.mark.root

CORE_PATTERN = "/proc/sys/kernel/core_pattern"


def read_core_pattern():
    with open(CORE_PATTERN) as f:
        return f.read()


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
def core_pattern_unchanged():
    """Fails the test if /proc/sys/kernel/core_pattern changed on the host."""
    before = read_core_pattern()
    yield
    assert read_core_pattern() == before, "the host's core_pattern changed"


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


def test_file_bind_through_symlink_onto_core_pattern_is_refused(runtime, make_bundle, tmp_path,
                                                                core_pattern_unchanged):
    """Naive: binds a bundle file over the container's core_pattern (or the host's)."""
    payload = tmp_path / "payload"
    payload.write_text("|/payload\n")
    bundle = make_bundle("cat", CORE_PATTERN)
    os.symlink(CORE_PATTERN, bundle.rootfs / "etc/cp")
    i = add_mount(bundle, "/etc/cp", "bind", payload, ["bind"])
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert CORE_PATTERN not in host_mount_points()
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
