"""process.apparmorProfile, process.selinuxLabel, linux.mountLabel.

Where the host has the LSM they are applied; where it doesn't, a setting is one clear
error naming the field, before anything is created. This development host has neither
AppArmor nor SELinux, so what runs here is:

- the plain data the init applies (the attr values, mount data with context=), from
  the plan, without root;
- the refusal, with real containers;
- the C side (native/lsm.c) against this kernel, which has no LSM to take the values:
  a test launcher built from native/launcher.c runs a script that makes the plan an
  LSM host would make and spawns the init from it; the init opens the attr files,
  writes them, mounts with context=, labels mqueue — and each write fails here, which
  shows it was made, with the field named, before "created".

A profile or label really taking effect can't be seen on this host. AppArmor's can in
the qemu lane (tests/vm: Debian's kernel has AppArmor): the tests marked ``apparmor``
load a profile and run a container under it. SELinux's is tested nowhere.
"""

import json
import os
import subprocess
import uuid

import devbuild
import pytest
from conftest import LAUNCHER_SCRIPT
from test_plan import all_caps_available, build, config, refused, steps  # noqa: F401 (an autouse fixture)

from ociruntime import plan
from ociruntime.linux import lsm
from ociruntime.linux import mountopts as mo

LABEL = "system_u:object_r:container_file_t:s0:c1,c2"
PROCESS_LABEL = "system_u:system_r:container_t:s0:c1,c2"
CONTEXT = f'context="{LABEL}"'


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return tmp_path


# --- detection -------------------------------------------------------------------------------

def test_apparmor_detection_follows_the_host():
    host = (os.path.isdir("/sys/kernel/security/apparmor") and os.path.exists("/sys/module/apparmor")
            and open("/sys/module/apparmor/parameters/enabled").read().startswith("Y"))
    assert lsm.apparmor_enabled() is host


def test_selinux_detection_follows_the_host():
    with open("/proc/filesystems") as f:
        known = "\tselinuxfs\n" in f.read()
    if not known:
        assert lsm.selinux_enabled() is False
    else:  # a kernel with SELinux: enabled iff selinuxfs is mounted and a policy loaded
        with open("/proc/self/mountinfo") as f:
            mounted = any(" - selinuxfs " in line for line in f)
        if not mounted:
            assert lsm.selinux_enabled() is False


def test_selinuxfs_mounts_from_mountinfo():
    text = ("24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
            "25 24 0:23 / /sys/fs/selinux rw,relatime shared:8 - selinuxfs selinuxfs rw\n"
            "26 24 0:23 / /mnt/ro\\040se ro,relatime - selinuxfs selinuxfs rw\n"
            "27 24 0:23 / /mnt/other\\040se rw,relatime - selinuxfs selinuxfs rw\n")
    assert lsm.selinuxfs_mounts(text) == ["/sys/fs/selinux", "/mnt/other se"]


# --- the values the init writes --------------------------------------------------------------

def test_values_are_what_the_init_writes():
    assert lsm.values({"apparmorProfile": "docker-default", "selinuxLabel": PROCESS_LABEL},
                      {"mountLabel": LABEL}) == ("exec docker-default", PROCESS_LABEL, LABEL)


def test_empty_strings_are_unset():
    assert lsm.values({"apparmorProfile": "", "selinuxLabel": ""}, {"mountLabel": ""}) == (None, None, None)
    assert lsm.values({}, {}) == (None, None, None)


@pytest.mark.parametrize("field, value", [
    ("process.selinuxLabel", 'system_u:system_r:x_t:s0"'),
    ("linux.mountLabel", "a\nb"),
    ("process.apparmorProfile", "a\0b"),
])
def test_values_that_cant_be_written_are_refused(field, value):
    section, key = field.split(".")
    process = {key: value} if section == "process" else {}
    linux = {key: value} if section == "linux" else {}
    with pytest.raises(ValueError, match=f"^{field}: "):
        lsm.values(process, linux)


def test_mount_data_adds_a_quoted_context():
    assert lsm.mount_data(None, LABEL) == CONTEXT
    assert lsm.mount_data("mode=755", LABEL) == "mode=755," + CONTEXT
    assert lsm.mount_data("mode=755", None) == "mode=755"


# --- the plan with a mount label -------------------------------------------------------------

def labelled(cfg, bundle, **kw):
    """The plan an SELinux host makes of cfg with linux.mountLabel = LABEL: build() checks
    the host first, which refuses it here, so the label is applied to a plan built without
    it — by the same function build() calls."""
    p = build(cfg, bundle, **kw)
    plain = json.loads(json.dumps(p["steps"]))
    plan._label_mounts(p["steps"], LABEL)
    return plain, p


def test_mount_label_goes_where_runc_puts_it(bundle):
    cfg = config()
    plain, p = labelled(cfg, bundle)
    by_dst = {s["dst"]: s for s in steps(p, "mount")}
    before = {s["dst"]: s for s in plain if s["op"] == "mount"}
    for dst in ("/dev", "/dev/pts", "/dev/shm"):  # tmpfs, devpts, tmpfs
        assert by_dst[dst]["data"] == before[dst]["data"] + "," + CONTEXT
    for dst in ("/proc", "/sys", "/dev/mqueue"):
        assert by_dst[dst]["data"] == before[dst]["data"]
    masks = steps(p, "mask")
    assert masks and all(s["data"] == CONTEXT for s in masks)
    # mqueue takes no context=: its mount point gets the label as an xattr right after
    i = next(i for i, s in enumerate(p["steps"]) if s["op"] == "mount" and s["dst"] == "/dev/mqueue")
    label_step = p["steps"][i + 1]
    assert (label_step["op"], label_step["dst"], label_step["src"]) == ("file_label", "/dev/mqueue", LABEL)
    assert label_step["label"] == p["steps"][i]["label"]
    assert len(steps(p, "file_label")) == 1
    # nothing else changed
    assert len(p["steps"]) == len(plain) + 1


def test_mount_label_skips_binds_and_remounts(bundle):
    (bundle / "d").mkdir()
    paths = {"memory": "/sys/fs/cgroup/memory/cid", "": "/sys/fs/cgroup/unified/cid"}
    cfg = config()
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "d", "options": ["rbind", "ro"]})
    cfg["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs"})
    _, p = labelled(cfg, bundle, cgroup_paths=paths)
    (data,) = [s for s in steps(p, "mount") if s["dst"] == "/data"]
    assert data["data"] is None
    (t,) = [s for s in steps(p, "mount") if s["dst"] == "/t"]
    assert t["data"] == CONTEXT, "a tmpfs without options gets the context alone"
    i = [m["destination"] for m in cfg["mounts"]].index("/sys/fs/cgroup")
    cg = steps(p, "mount", f"mounts[{i}]")
    assert cg[0]["fstype"] == "tmpfs" and cg[0]["data"] == "mode=755," + CONTEXT, "v1: the tmpfs holding them"
    assert all(s["data"] is None for s in cg[1:] if s["flags"] & mo.MS_BIND)
    assert cg[-1]["flags"] & mo.MS_REMOUNT and cg[-1]["data"] is None, "a remount keeps the context it has"


def test_mount_label_skips_cgroup_mounts(bundle):
    cfg = config()
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    _, p = labelled(cfg, bundle, cgroup_paths={"pids": "/sys/fs/cgroup/pids/cid", "": "/sys/fs/cgroup/unified/cid"})
    hierarchies = [s for s in steps(p, "mount") if s["fstype"] in ("cgroup", "cgroup2")]
    assert hierarchies and all(CONTEXT not in (s["data"] or "") for s in hierarchies)


# --- build() against this host ---------------------------------------------------------------

@pytest.mark.parametrize("section, key, value, enabled, lsm_name", [
    ("process", "apparmorProfile", "docker-default", lsm.apparmor_enabled, "AppArmor"),
    ("process", "selinuxLabel", PROCESS_LABEL, lsm.selinux_enabled, "SELinux"),
    ("linux", "mountLabel", LABEL, lsm.selinux_enabled, "SELinux"),
])
def test_build_applies_or_refuses_by_the_host(bundle, section, key, value, enabled, lsm_name):
    cfg = config()
    cfg[section][key] = value
    if not enabled():
        refused(cfg, bundle, f"{section}.{key}", f"{lsm_name} is not enabled on this host")
        return
    p = build(cfg, bundle)
    if key == "apparmorProfile":
        assert p["process"]["apparmor_exec"] == "exec " + value
    elif key == "selinuxLabel":
        assert p["process"]["selinux_exec"] == value
    else:
        assert any(s["data"] and s["data"].endswith(f'context="{value}"') for s in steps(p, "mount"))


def test_build_leaves_empty_settings_alone(bundle):
    cfg = config()
    cfg["process"].update(apparmorProfile="", selinuxLabel="")
    cfg["linux"]["mountLabel"] = ""
    p = build(cfg, bundle)
    assert p["process"]["apparmor_exec"] is None and p["process"]["selinux_exec"] is None
    assert build(config(), bundle)["steps"] == p["steps"]


# --- real containers -------------------------------------------------------------------------

def _one_error(proc, *needles):
    assert proc.returncode != 0, f"exit 0\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.mark.root
@pytest.mark.parametrize("field, value, enabled, lsm_name", [
    ("process.apparmorProfile", "docker-default", lsm.apparmor_enabled, "AppArmor"),
    ("process.selinuxLabel", PROCESS_LABEL, lsm.selinux_enabled, "SELinux"),
    ("linux.mountLabel", LABEL, lsm.selinux_enabled, "SELinux"),
])
def test_create_refuses_a_setting_the_host_cant_apply(runtime, make_bundle, field, value, enabled, lsm_name):
    if enabled():
        pytest.skip(f"{lsm_name} is enabled here: nothing to refuse")
    bundle = make_bundle("true")
    section, key = field.split(".")
    bundle.config[section][key] = value
    bundle.write()
    cid = runtime.new_id()
    proc = runtime("create", "--bundle", bundle.path, cid, check=False)
    _one_error(proc, f"{field}: {lsm_name} is not enabled on this host")
    assert runtime("state", cid, check=False).returncode != 0


@pytest.mark.root
def test_empty_settings_run(runtime, make_bundle):
    bundle = make_bundle("echo", "ok")
    bundle.config["process"].update(apparmorProfile="", selinuxLabel="")
    bundle.config["linux"]["mountLabel"] = ""
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert (code, out) == (0, "ok\n"), err


@pytest.mark.root
def test_features_claim_an_lsm_only_where_create_applies_it(runtime, make_bundle):
    features = json.loads(runtime("features").stdout)["linux"]
    assert features["apparmor"] == {"enabled": lsm.apparmor_enabled()}
    assert features["selinux"] == {"enabled": lsm.selinux_enabled()}
    for name, field, value in (("apparmor", "apparmorProfile", "no-such-profile-here"),
                               ("selinux", "selinuxLabel", PROCESS_LABEL)):
        bundle = make_bundle("true")
        bundle.config["process"][field] = value
        bundle.write()
        proc = runtime("create", "--bundle", bundle.path, runtime.new_id(), check=False)
        refused_here = "is not enabled on this host" in proc.stderr
        assert refused_here is not features[name]["enabled"], proc.stderr
        if proc.returncode == 0:  # applied (a real label on an SELinux host)
            runtime("delete", "--force", proc.args[-1])


# --- AppArmor for real (the qemu lane: Debian's kernel has it) --------------------------------

APPARMOR_PARSER = "/sbin/apparmor_parser"


@pytest.fixture
def apparmor_profile(tmp_path):
    """A profile loaded for the test (and removed after): all files but /secret."""
    name = f"ociruntime-test-{uuid.uuid4().hex[:8]}"
    text = f"profile {name} flags=(attach_disconnected) {{\n  file,\n  deny /secret r,\n}}\n"
    subprocess.run([APPARMOR_PARSER, "-r", "-K"], input=text, text=True, capture_output=True, check=True)
    yield name
    subprocess.run([APPARMOR_PARSER, "-R", "-K"], input=text, text=True, capture_output=True, check=True)


@pytest.mark.root
@pytest.mark.apparmor
def test_apparmor_profile_confines_the_container(runtime, make_bundle, apparmor_profile):
    assert json.loads(runtime("features").stdout)["linux"]["apparmor"] == {"enabled": True}
    bundle = make_bundle("sh", "-c", "cat /proc/self/attr/current; cat /secret; echo rc=$?")
    (bundle.rootfs / "secret").write_text("s3cret\n")
    code, out, err = runtime.run_output(bundle)
    assert (code, out) == (0, "unconfined\ns3cret\nrc=0\n"), err
    bundle.config["process"]["apparmorProfile"] = apparmor_profile
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert (code, out) == (0, f"{apparmor_profile} (enforce)\nrc=1\n"), err
    assert "Permission denied" in err


@pytest.mark.root
@pytest.mark.apparmor
def test_apparmor_profile_not_loaded_fails_create(runtime, make_bundle):
    bundle = make_bundle("true")
    bundle.config["process"]["apparmorProfile"] = "ociruntime-no-such-profile"
    bundle.write()
    cid = runtime.new_id()
    proc = runtime("create", "--bundle", bundle.path, cid, check=False)
    _one_error(proc, "process.apparmorProfile: apply profile ociruntime-no-such-profile "
                     "(write /proc/self/attr/apparmor/exec): No such file or directory")
    assert runtime("state", cid, check=False).returncode != 0


# --- the C side against this kernel ----------------------------------------------------------

SCRIPT = """
import json, sys
{path_setup}
from ociruntime import native, plan
from ociruntime.errors import OCIError

bundle, tweak = sys.argv[2], json.loads(sys.argv[3])
with open(bundle + "/config.json") as f:
    cfg = json.load(f)
# The plan an LSM host makes of these settings (this host refuses them in build()).
p = plan.build(cfg, bundle, "lsm-c-path", no_new_keyring=tweak.get("no_new_keyring", False), cgroup_paths={{}})
p["process"]["apparmor_exec"] = tweak.get("apparmor_exec")
p["process"]["selinux_exec"] = tweak.get("selinux_exec")
if tweak.get("mount_label"):
    plan._label_mounts(p["steps"], tweak["mount_label"])
init = native.Init(p)
try:
    init.wait_pid()
    init.expect(b"R")
    print("created")
except OCIError as e:
    print(e)
finally:
    init.kill()
"""


@pytest.fixture(scope="module")
def spawn_launcher(tmp_path_factory):
    """A launcher like the installed one (native/launcher.c, Python from a read-only
    handle) whose script spawns an init from a plan: run as `<it> create <bundle> <json>`."""
    d = tmp_path_factory.mktemp("lsm-launcher")
    with open(LAUNCHER_SCRIPT) as f:
        lines = f.read().splitlines()
    python = lines[0][2:].split()[0]
    path_setup = next(line for line in lines if line.startswith("sys.path"))
    (d / "script.py").write_text(SCRIPT.format(path_setup=path_setup))
    devbuild.build_launcher["build"](str(d / "launcher"), python, str(d / "script.py"))
    return str(d / "launcher")


def spawn(launcher, bundle, **tweak):
    """What the init said: "created", or its error. (Tests take the runtime fixture for
    its check that no mount or process of the bundle is left.)"""
    proc = subprocess.run([launcher, "create", str(bundle.path), json.dumps(tweak)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout.strip()


@pytest.mark.root
def test_c_side_creates_without_settings(runtime, spawn_launcher, make_bundle):
    """The harness itself: with no LSM setting the init gets to "created"."""
    assert spawn(spawn_launcher, make_bundle("true")) == "created"


@pytest.mark.root
def test_c_side_writes_the_apparmor_profile(runtime, spawn_launcher, make_bundle):
    # No attr/apparmor/ without AppArmor: the init falls back to the shared attr/exec,
    # whose write this kernel refuses (no LSM takes it) — before "created".
    assert not os.path.exists("/proc/self/attr/apparmor") or lsm.apparmor_enabled()
    if lsm.apparmor_enabled():
        pytest.skip("AppArmor is enabled here: the write would succeed")
    msg = spawn(spawn_launcher, make_bundle("true"), apparmor_exec="exec some-profile")
    assert msg == ("process.apparmorProfile: apply profile some-profile (write /proc/self/attr/exec): "
                   "Invalid argument")


@pytest.mark.root
@pytest.mark.parametrize("no_new_keyring, what", [
    (False, "label the session keyring (attr/keycreate)"),
    (True, "set the exec label (attr/exec)"),
])
def test_c_side_writes_the_selinux_label(runtime, spawn_launcher, make_bundle, no_new_keyring, what):
    if lsm.selinux_enabled():
        pytest.skip("SELinux is enabled here: the write would succeed")
    msg = spawn(spawn_launcher, make_bundle("true"), selinux_exec=PROCESS_LABEL, no_new_keyring=no_new_keyring)
    assert msg == f"process.selinuxLabel: {what}: Invalid argument"


@pytest.mark.root
def test_c_side_mounts_with_the_context(runtime, spawn_launcher, make_bundle):
    """tmpfs refuses context= where no LSM takes it: the data reached the kernel."""
    if lsm.selinux_enabled():
        pytest.skip("SELinux is enabled here: the mount would succeed")
    bundle = make_bundle("true")
    i = [m["destination"] for m in bundle.config["mounts"]].index("/dev")
    assert spawn(spawn_launcher, bundle, mount_label=LABEL) == f"mounts[{i}]: mount tmpfs on /dev: Invalid argument"


@pytest.mark.root
def test_c_side_labels_mqueue_and_masks(runtime, spawn_launcher, make_bundle):
    if lsm.selinux_enabled():
        pytest.skip("SELinux is enabled here: the label would be taken")
    bundle = make_bundle("true")
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] in ("proc", "mqueue")]
    bundle.config["linux"]["maskedPaths"] = ["/etc"]
    bundle.write()
    i = [m["type"] for m in bundle.config["mounts"]].index("mqueue")
    # mqueue has no xattrs where no LSM provides security.selinux
    assert spawn(spawn_launcher, bundle, mount_label=LABEL) == \
        f"linux.mountLabel: label /dev/mqueue (mounts[{i}]): Operation not supported"
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] == "proc"]
    bundle.write()
    assert spawn(spawn_launcher, bundle, mount_label=LABEL) == "linux.maskedPaths[0]: mask /etc: Invalid argument"
