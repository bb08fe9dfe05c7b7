"""config.json ``process``: what the container's program is, who it runs as, its
limits, capabilities and file descriptors, checked from inside real busybox containers."""

import os
import subprocess
import tempfile
import time

import pytest
from conftest import RUNTIME, run_ok

pytestmark = pytest.mark.root



def status_fields(out):
    """``Name:\\tvalue`` lines (from /proc/self/status) -> dict."""
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def cap_mask(*names):
    from ociruntime.linux.capabilities import BITS

    m = 0
    for n in names:
        m |= 1 << BITS[n]
    return f"{m:016x}"


# --- args, env, cwd -------------------------------------------------------------------------

def test_args_are_passed_verbatim(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", 'for a in "$@"; do echo "[$a]"; done', "argv0", "a b", "", "*", "$HOME")
    assert run_ok(runtime, bundle) == "[a b]\n[]\n[*]\n[$HOME]\n"


def test_env_is_exactly_the_config(runtime, make_bundle):
    """The config's env, and HOME from /etc/passwd as runc adds it when the env has none."""
    bundle = make_bundle("env")
    bundle.config["process"]["env"] = ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY=", "MULTI=a=b=c"]
    bundle.write()
    assert sorted(run_ok(runtime, bundle).splitlines()) == sorted([*bundle.config["process"]["env"], "HOME=/root"])


def test_program_is_found_in_path_of_env(runtime, make_bundle):
    bundle = make_bundle("mytool", "x")
    bundle.config["root"]["readonly"] = False
    tooldir = bundle.rootfs / "opt/tools"
    tooldir.mkdir(parents=True)
    (tooldir / "mytool").write_text("#!/bin/sh\necho mytool ran with $1\n")
    (tooldir / "mytool").chmod(0o755)
    bundle.config["process"]["env"] = ["PATH=/nonexistent:/opt/tools:/bin"]
    bundle.write()
    assert run_ok(runtime, bundle) == "mytool ran with x\n"


def test_program_not_executable_in_path_is_skipped(runtime, make_bundle):
    """execvp semantics: a non-executable file earlier in PATH doesn't shadow a later one."""
    bundle = make_bundle("echo", "from-bin")
    (bundle.rootfs / "opt/early").mkdir(parents=True)
    (bundle.rootfs / "opt/early/echo").write_text("not a program\n")
    (bundle.rootfs / "opt/early/echo").chmod(0o644)
    bundle.config["process"]["env"] = ["PATH=/opt/early:/bin"]
    bundle.write()
    assert run_ok(runtime, bundle) == "from-bin\n"


def test_absolute_program_path(runtime, make_bundle):
    bundle = make_bundle("/bin/busybox", "echo", "abs")
    bundle.config["process"]["env"] = []  # no PATH at all
    bundle.write()
    assert run_ok(runtime, bundle) == "abs\n"


def test_exit_code_is_passed_through(runtime, make_bundle):
    code, _, _ = runtime.run_output(make_bundle("sh", "-c", "exit 42"))
    assert code == 42


def test_cwd(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "pwd; readlink /proc/self/cwd")
    bundle.config["process"]["cwd"] = "/etc"
    bundle.write()
    assert run_ok(runtime, bundle) == "/etc\n/etc\n"


def test_missing_cwd_is_created(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "pwd; stat -c %F .")
    bundle.config["process"]["cwd"] = "/work/deep/dir"
    bundle.write()
    assert run_ok(runtime, bundle) == "/work/deep/dir\ndirectory\n"
    assert (bundle.rootfs / "work/deep/dir").is_dir()


def test_cwd_is_inside_the_rootfs(runtime, make_bundle):
    """Inside, the cwd is the configured path; from the host, the init's cwd and root are
    the rootfs's directories (same device and inode), not the host's."""
    bundle = make_bundle("sh", "-c", "readlink /proc/self/cwd; ls /proc/self/cwd/; exec sleep 30")
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.write()
    (bundle.rootfs / "tmp/only-in-rootfs").write_text("")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        pid = runtime.state(cid)["pid"]
        cwd = os.stat(f"/proc/{pid}/cwd")
        root = os.stat(f"/proc/{pid}/root")
    finally:
        runtime("delete", "--force", cid)
    tmp = os.stat(bundle.rootfs / "tmp")
    rootfs = os.stat(bundle.rootfs)
    assert (cwd.st_dev, cwd.st_ino) == (tmp.st_dev, tmp.st_ino)
    assert (root.st_dev, root.st_ino) == (rootfs.st_dev, rootfs.st_ino)


def test_cwd_seen_from_inside(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "readlink /proc/self/cwd; ls /proc/self/cwd/")
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.write()
    (bundle.rootfs / "tmp/only-in-rootfs").write_text("")
    assert run_ok(runtime, bundle) == "/tmp\nonly-in-rootfs\n"


# --- user -----------------------------------------------------------------------------------

def test_user_uid_gid_and_additional_gids(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' /proc/self/status")
    bundle.config["process"]["user"] = {"uid": 1234, "gid": 5678, "additionalGids": [5, 4000, 65534]}
    bundle.write()
    lines = run_ok(runtime, bundle).splitlines()
    assert lines[:2] == ["1234", "5678"]
    assert set(lines[2].split()) == {"5678", "5", "4000", "65534"}
    f = status_fields("\n".join(lines[3:]))
    assert f["Uid"].split() == ["1234"] * 4 and f["Gid"].split() == ["5678"] * 4
    assert sorted(f["Groups"].split(), key=int) == ["5", "4000", "65534"]


def test_root_user_has_no_supplementary_groups(runtime, make_bundle):
    """The runtime's own groups must not leak: setgroups to exactly the config's list."""
    bundle = make_bundle("grep", "^Groups:", "/proc/self/status")
    saved = os.getgroups()
    os.setgroups([0, 1, 2])  # undone below
    try:
        out = run_ok(runtime, bundle)
    finally:
        os.setgroups(saved)
    assert out.split(":", 1)[1].split() == []


def test_non_root_user_cannot_write_root_files(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "touch /etc/new 2>&1; touch /tmp/ok && stat -c '%u:%g' /tmp/ok")
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.write()
    out = run_ok(runtime, bundle)
    assert "Permission denied" in out and out.endswith("1000:1000\n")


@pytest.mark.parametrize("umask, created", [(0o022, "644"), (0o077, "600"), (0o002, "664"), (2**31 | 0o7027, "640")])
def test_umask(runtime, make_bundle, umask, created):
    """Bits past 0777 go, as umask(2) drops them (2**31 used to end in an OverflowError)."""
    bundle = make_bundle("sh", "-c", "umask; touch /tmp/f; stat -c %a /tmp/f")
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["user"]["umask"] = umask
    bundle.write()
    assert run_ok(runtime, bundle).split() == [f"{umask & 0o777:04o}", created]


def test_umask_unset_is_the_callers(runtime, make_bundle):
    """config.md: "If unspecified, the umask should not be changed from the calling
    process' umask" (runc sets 0022 instead; the spec's text decides)."""
    bundle = make_bundle("sh", "-c", "umask")
    saved = os.umask(0o077)
    try:
        out = run_ok(runtime, bundle)
    finally:
        os.umask(saved)
    assert out.strip() == "0077"


# --- rlimits --------------------------------------------------------------------------------

def test_rlimit_nofile(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "ulimit -n; ulimit -Hn")
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    bundle.write()
    assert run_ok(runtime, bundle).split() == ["123", "456"]


def test_default_rlimit_nofile_1024(runtime, make_bundle):
    assert run_ok(runtime, make_bundle("sh", "-c", "ulimit -n; ulimit -Hn")).split() == ["1024", "1024"]


def test_several_rlimits(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "grep -E '^Max (processes|core file size|file size|pending signals|"
                         "locked memory) ' /proc/self/limits")
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_FSIZE", "soft": 1048576, "hard": 2097152},
        {"type": "RLIMIT_SIGPENDING", "soft": 50, "hard": 60},
        {"type": "RLIMIT_MEMLOCK", "soft": 65536, "hard": 65536},
    ]
    bundle.write()
    rows = {}
    for line in run_ok(runtime, bundle).splitlines():
        parts = line.split()
        # "Max processes   100   200   processes": the two numbers after the name
        nums = [p for p in parts if p.isdigit()]
        rows[" ".join(p for p in parts[:3] if not p.isdigit())] = nums[:2]
    assert rows["Max processes"] == ["100", "200"]
    assert rows["Max core file"] == ["0", "4096"]
    assert rows["Max file size"] == ["1048576", "2097152"]
    assert rows["Max pending signals"] == ["50", "60"]
    assert rows["Max locked memory"] == ["65536", "65536"]


def test_rlimit_fsize_is_enforced(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "trap '' XFSZ; dd if=/dev/zero of=/tmp/f bs=1024 count=100 2>/dev/null; "
                         "stat -c %s /tmp/f")
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_FSIZE", "soft": 8192, "hard": 8192}]
    bundle.write()
    assert run_ok(runtime, bundle).strip() == "8192"


def test_rlimit_above_host_hard_limit_fails_clearly(runtime, make_bundle):
    """Without CAP_SYS_RESOURCE (not in this machine's bounding set) a hard limit can't be raised."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the host's RLIMIT_NOFILE is unlimited")
    with open("/proc/self/status") as f:
        capbnd = int(status_fields(f.read())["CapBnd"], 16)
    if capbnd & (1 << 24):
        pytest.skip("CAP_SYS_RESOURCE is available: raising the hard limit would succeed")
    bundle = make_bundle("true")
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard * 2}]
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "process.rlimits[0]" in err and "Operation not permitted" in err


# --- oomScoreAdj, noNewPrivileges -----------------------------------------------------------

@pytest.mark.parametrize("value", [0, 789, 1000])
def test_oom_score_adj(runtime, make_bundle, value):
    bundle = make_bundle("cat", "/proc/self/oom_score_adj")
    bundle.config["process"]["oomScoreAdj"] = value
    bundle.write()
    assert run_ok(runtime, bundle).strip() == str(value)


def test_oom_score_adj_below_callers_fails_clearly(runtime, make_bundle):
    """Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine's bounding set lacks."""
    with open("/proc/self/status") as f:
        if int(status_fields(f.read())["CapBnd"], 16) & (1 << 24):
            pytest.skip("CAP_SYS_RESOURCE available: lowering would succeed")
    bundle = make_bundle("true")
    bundle.config["process"]["oomScoreAdj"] = -999
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and "process.oomScoreAdj" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_oom_score_adj_unset_is_inherited(runtime, make_bundle):
    bundle = make_bundle("cat", "/proc/self/oom_score_adj")
    with open("/proc/self/oom_score_adj") as f:
        mine = f.read().strip()
    assert run_ok(runtime, bundle).strip() == mine


@pytest.mark.parametrize("nnp, shown", [(True, "1"), (False, "0")])
def test_no_new_privileges(runtime, make_bundle, nnp, shown):
    bundle = make_bundle("grep", "^NoNewPrivs:", "/proc/self/status")
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.write()
    assert run_ok(runtime, bundle).split() == ["NoNewPrivs:", shown]


SETUID_PROBE = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    printf("euid=%d\n", (int)geteuid());
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "NoNewPrivs:", 11) || !strncmp(line, "CapEff:", 7))
            fputs(line, stdout);
    return 0;
}
"""


@pytest.mark.parametrize("nnp", [True, False])
def test_setuid_binary_and_no_new_privileges(runtime, make_bundle, tmp_path, nnp):
    """A setuid-root program run by uid 1000: with noNewPrivileges it gains nothing (euid
    stays 1000, no effective capabilities); without, it becomes root with capabilities —
    so a runtime that ignored noNewPrivileges fails the first case."""
    bundle = make_bundle("/bin/setuid-probe")
    source = tmp_path / "probe.c"
    source.write_text(SETUID_PROBE)
    target = bundle.rootfs / "bin" / "setuid-probe"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(target), str(source)], check=True)
    os.chown(target, 0, 0)
    os.chmod(target, 0o4755)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.write()
    f = status_fields(run_ok(runtime, bundle).replace("=", ":\t"))
    if nnp:
        assert (f["euid"], f["NoNewPrivs"], f["CapEff"]) == ("1000", "1", "0" * 16), f
    else:
        assert f["euid"] == "0" and f["NoNewPrivs"] == "0" and int(f["CapEff"], 16) != 0, f


# --- capabilities ---------------------------------------------------------------------------

CAPS = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status"


def test_default_capabilities(runtime, make_bundle):
    f = status_fields(run_ok(runtime, make_bundle("sh", "-c", CAPS)))
    default = cap_mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert f == {"CapInh": "0" * 16, "CapPrm": default, "CapEff": default, "CapBnd": default,
                 "CapAmb": "0" * 16}


def test_all_five_capability_sets_non_root(runtime, make_bundle):
    """A non-root user keeps across exec only what is ambient (so permitted and inheritable)."""
    bundle = make_bundle("sh", "-c", CAPS)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_SETUID"],
        "effective": ["CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
        "inheritable": ["CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_CHOWN"],
        "ambient": ["CAP_NET_RAW", "CAP_SYS_CHROOT"],
    }
    bundle.write()
    f = status_fields(run_ok(runtime, bundle))
    ambient = cap_mask("CAP_NET_RAW", "CAP_SYS_CHROOT")
    assert f == {
        "CapBnd": cap_mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_SETUID"),
        "CapInh": cap_mask("CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_CHOWN"),
        "CapPrm": ambient,
        "CapEff": ambient,
        "CapAmb": ambient,
    }


def test_capabilities_root(runtime, make_bundle):
    """For uid 0 exec gives permitted = effective = bounding | inheritable (no file caps)."""
    bundle = make_bundle("sh", "-c", CAPS)
    bundle.config["process"]["noNewPrivileges"] = False
    bundle.config["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE"],
        "inheritable": ["CAP_DAC_OVERRIDE"],
        "ambient": ["CAP_DAC_OVERRIDE"],
    }
    bundle.write()
    f = status_fields(run_ok(runtime, bundle))
    bnd = cap_mask("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
    assert f == {"CapBnd": bnd, "CapInh": cap_mask("CAP_DAC_OVERRIDE"), "CapPrm": bnd, "CapEff": bnd,
                 "CapAmb": cap_mask("CAP_DAC_OVERRIDE")}


def test_capabilities_root_with_no_new_privileges(runtime, make_bundle):
    """With no_new_privs exec can't gain: root's sets are capped by the configured permitted."""
    bundle = make_bundle("sh", "-c", CAPS)
    bundle.config["process"]["noNewPrivileges"] = True
    bundle.config["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE"],
        "inheritable": [],
        "ambient": [],
    }
    bundle.write()
    f = status_fields(run_ok(runtime, bundle))
    prm = cap_mask("CAP_CHOWN", "CAP_DAC_OVERRIDE")
    assert f == {"CapBnd": cap_mask("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"), "CapInh": "0" * 16,
                 "CapPrm": prm, "CapEff": prm, "CapAmb": "0" * 16}


def test_ambient_needs_permitted_and_inheritable(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", CAPS)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_NET_RAW"], "effective": ["CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW"], "inheritable": [], "ambient": ["CAP_KILL", "CAP_NET_RAW"]}
    bundle.write()
    f = status_fields(run_ok(runtime, bundle))
    assert f["CapAmb"] == f["CapPrm"] == f["CapEff"] == "0" * 16
    assert f["CapBnd"] == cap_mask("CAP_KILL", "CAP_NET_RAW")


def test_empty_capabilities_drop_everything(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", CAPS + "; chown 1:1 /tmp 2>&1; true")
    bundle.config["root"]["readonly"] = False
    bundle.config["process"]["capabilities"] = {k: [] for k in
                                                ("bounding", "effective", "permitted", "inheritable", "ambient")}
    bundle.write()
    out = run_ok(runtime, bundle)
    caps = {k: v for k, v in status_fields(out).items() if k.startswith("Cap")}
    assert len(caps) == 5 and set(caps.values()) == {"0" * 16}, caps
    assert "Operation not permitted" in out


def test_capability_really_works(runtime, make_bundle):
    """CAP_CHOWN granted: chown succeeds; not granted (default set): it fails."""
    script = "touch /tmp/f && chown 1:1 /tmp/f && stat -c %u /tmp/f"
    with_cap = make_bundle("sh", "-c", script)
    with_cap.config["root"]["readonly"] = False
    for cap_set in ("bounding", "permitted", "effective"):
        with_cap.config["process"]["capabilities"][cap_set].append("CAP_CHOWN")
    with_cap.write()
    assert run_ok(runtime, with_cap) == "1\n"
    without = make_bundle("sh", "-c", script)
    without.config["root"]["readonly"] = False
    without.write()
    code, out, err = runtime.run_output(without)
    assert code != 0 and "Operation not permitted" in err


def test_unknown_capability_refused(runtime, make_bundle):
    bundle = make_bundle("true")
    bundle.config["process"]["capabilities"]["effective"] = ["CAP_KILL", "CAP_NOT_A_THING"]
    bundle.write()
    code, _, err = runtime.run_output(bundle)
    assert code != 0 and "Traceback" not in err
    assert "process.capabilities.effective[1]" in err and "CAP_NOT_A_THING" in err


# --- file descriptors -----------------------------------------------------------------------

def _fds(out):
    return sorted(int(n) for n in out.split())


def test_no_fds_leak_into_the_container(runtime, make_bundle):
    """The program (ls, pid 1) holds only stdio plus the fd of the directory it reads (3)."""
    bundle = make_bundle("ls", "/proc/self/fd")
    assert _fds(run_ok(runtime, bundle)) == [0, 1, 2, 3]


def test_no_fds_leak_after_create_and_start(runtime, make_bundle):
    """create and start are separate processes; the init must hold nothing of either once running."""
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    try:
        pid = runtime.state(cid)["pid"]
        runtime("start", cid)
        deadline = time.monotonic() + 5
        while open(f"/proc/{pid}/comm").read().strip() != "sleep":
            assert time.monotonic() < deadline, "the program never ran"
            time.sleep(0.01)
        fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    finally:
        runtime("delete", "--force", cid)
    assert fds == [0, 1, 2]


def test_stdio_on_the_host_dev_null_is_the_container_s(runtime, make_bundle):
    """stdin on the host's /dev/null (the runtime fixture's; conmon's, for a detached podman
    container) is reopened read-write from the container's own /dev/null, on its /dev
    (runc's reOpenDevNull): CRIU dumps no file on a mount outside the container's mount
    namespace, and podman container checkpoint failed with "Can't lookup mount=24 for fd=0
    path=/dev/null" (tests/test_podman_checkpoint.py)."""
    bundle = make_bundle("sh", "-c", "grep -E '^(flags|mnt_id):' /proc/self/fdinfo/0; "
                                     "grep ' /dev ' /proc/self/mountinfo")
    flags, mnt_id, dev = run_ok(runtime, bundle).splitlines()
    assert int(flags.split()[1], 8) & 3 == os.O_RDWR, flags
    assert mnt_id.split()[1] == dev.split()[0] and dev.split()[8] == "tmpfs", (mnt_id, dev)


def _run_with_fds(runtime, bundle, preserve, redirections):
    """Run through a shell that opens extra fds in the runtime's process (fd 3, 4...)."""
    cid = runtime.new_id()
    cmd = f"exec {RUNTIME} --root {runtime.root} run --bundle {bundle.path}"
    if preserve is not None:
        cmd += f" --preserve-fds {preserve}"
    cmd += f" {cid} {redirections}"
    return subprocess.run(["sh", "-c", cmd], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30)


def test_preserve_fds_passes_fds(runtime, make_bundle, tmp_path):
    (tmp_path / "three").write_text("content of three\n")
    (tmp_path / "four").write_text("content of four\n")
    bundle = make_bundle("sh", "-c", "cat <&3; cat <&4; exec ls /proc/self/fd")
    proc = _run_with_fds(runtime, bundle, 2, f"3<{tmp_path}/three 4<{tmp_path}/four")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n", 2)
    assert lines[:2] == ["content of three", "content of four"]
    assert _fds(lines[2]) == [0, 1, 2, 3, 4, 5]  # 5: ls's own


def test_preserve_fds_only_that_many(runtime, make_bundle, tmp_path):
    (tmp_path / "f").write_text("x\n")
    bundle = make_bundle("ls", "/proc/self/fd")
    proc = _run_with_fds(runtime, bundle, 1, f"3<{tmp_path}/f 4<{tmp_path}/f 5<{tmp_path}/f")
    assert proc.returncode == 0, proc.stderr
    assert _fds(proc.stdout) == [0, 1, 2, 3, 4]  # 4: ls's own


def test_extra_fds_not_passed_without_preserve(runtime, make_bundle, tmp_path):
    (tmp_path / "f").write_text("x\n")
    bundle = make_bundle("ls", "/proc/self/fd")
    proc = _run_with_fds(runtime, bundle, None, f"3<{tmp_path}/f 7<{tmp_path}/f")
    assert proc.returncode == 0, proc.stderr
    assert _fds(proc.stdout) == [0, 1, 2, 3]  # 3: ls's own


def _popen_with_pipe(runtime, make_bundle):
    """Run with a pipe's write end kept by Popen's pass_fds at its own number n and
    --preserve-fds n-2, so fd n reaches the container. Returns (n, what came through the
    pipe, the container's `ls -l /proc/self/fd`)."""
    r, w = os.pipe()
    bundle = make_bundle("sh", "-c", f"echo through-the-pipe > /proc/self/fd/{w}; exec ls -l /proc/self/fd/")
    cid = runtime.new_id()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([RUNTIME, "--root", runtime.root, "run", "--bundle", str(bundle.path),
                                 "--preserve-fds", str(w - 2), cid],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, pass_fds=(w,))
        os.close(w)
        try:
            data = os.read(r, 100)
        finally:
            os.close(r)
        code = proc.wait(timeout=30)
        out.seek(0)
        err.seek(0)
        listing, errors = out.read(), err.read()
    assert code == 0, errors
    fds = {}
    for line in listing.splitlines()[1:]:
        parts = line.split("->")
        fds[int(parts[0].split()[-1])] = parts[1].strip() if len(parts) > 1 else ""
    return w, data, fds


def test_preserve_fds_with_popen_pass_fds(runtime, make_bundle):
    w, data, fds = _popen_with_pipe(runtime, make_bundle)
    assert data == b"through-the-pipe\n"
    assert fds[w].startswith("pipe:")


def test_preserve_fds_gap_does_not_leak_runtime_fds(runtime, make_bundle):
    w, _, fds = _popen_with_pipe(runtime, make_bundle)
    leaked = {n: t for n, t in fds.items() if 3 <= n < w}
    assert not any(runtime.root in t or t.startswith("socket:") for t in leaked.values()), leaked


def test_stdio_is_the_callers(runtime, make_bundle, tmp_path):
    bundle = make_bundle("sh", "-c", "read line; echo got:$line; echo to-err >&2")
    cid = runtime.new_id()
    proc = subprocess.run([RUNTIME, "--root", runtime.root, "run", "--bundle", str(bundle.path), cid],
                          input="hello\n", capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "got:hello\n", "to-err\n")
