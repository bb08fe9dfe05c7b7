"""runc's contract in the details, side by side: each test runs the same commands on the
same kind of bundle against Debian's runc (the reference, with its own --root) and
against ociruntime, and checks they behave the same — or, where this runtime refuses
what runc does (rootless), that it says so."""

import glob
import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import time

import pytest
from conftest import RUNTIME, Runtime, stop_daemon, wait_status

pytestmark = pytest.mark.root  # runc, the reference, comes with scripts/setup.sh (Debian's runc)

FREEZER = "/sys/fs/cgroup/freezer"
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"


class Runc(Runtime):
    """The reference: runc with its own --root, driven like the ``runtime`` fixture."""

    binary = shutil.which("runc") or "/usr/sbin/runc"


@pytest.fixture
def runc(tmp_path):
    rt = Runc(tmp_path / "runc-state")
    yield rt
    for cid in rt.ids:
        rt("delete", "--force", cid, check=False)


@pytest.fixture
def both(runtime, runc):
    """[(name, runtime)]: runc first, the reference."""
    return [("runc", runc), ("ociruntime", runtime)]


def same(both, story):
    """story(rt) for runc and for ociruntime; assert they agree, return runc's."""
    results = {name: story(rt) for name, rt in both}
    assert results["ociruntime"] == results["runc"], results
    return results["runc"]


# --- delete ---------------------------------------------------------------------------------

def test_delete_force_of_a_missing_id_succeeds_plain_delete_fails(both):
    def story(rt):
        return rt("delete", "--force", "no-such-id", check=False).returncode, \
            rt("delete", "no-such-id", check=False).returncode != 0

    assert same(both, story) == (0, True)


def test_delete_of_a_created_container_kills_its_init(both, make_bundle):
    """runtime.md would call it an error; runc deletes it, and containerd's shim relies on that."""
    bundle = make_bundle("sleep", "100")

    def story(rt):
        cid = rt.new_id()
        rt("create", "--bundle", bundle.path, cid)
        pid = rt.state(cid)["pid"]
        code = rt("delete", cid, check=False).returncode
        gone = rt("state", cid, check=False).returncode != 0
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return code, gone, _alive(pid)

    assert same(both, story) == (0, True, False)


def test_delete_of_a_running_or_paused_container_still_needs_force(both, make_bundle):
    bundle = make_bundle("sleep", "100")

    def story(rt):
        cid = rt.new_id()
        rt("create", "--bundle", bundle.path, cid)
        rt("start", cid)
        running = rt("delete", cid, check=False).returncode != 0
        rt("pause", cid)
        paused = rt("delete", cid, check=False).returncode != 0
        rt("delete", "--force", cid)
        return running, paused

    assert same(both, story) == (True, True)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- run --keep, run --no-subreaper, help ---------------------------------------------------

def test_run_keep_leaves_the_stopped_container(both, make_bundle):
    bundle = make_bundle("sh", "-c", "exit 3")

    def story(rt):
        cid = rt.new_id()
        code = rt("run", "--keep", "--bundle", bundle.path, cid, check=False).returncode
        status = rt.state(cid)["status"]
        rt("delete", cid)
        return code, status

    assert same(both, story) == (3, "stopped")


@pytest.mark.parametrize("flags", [(), ("--no-subreaper",)])
def test_run_is_the_subreaper_of_orphans_unless_told_not(both, make_bundle, tmp_path, flags):
    """Without a pid namespace of its own, what the container orphans is reparented to the
    nearest subreaper: the foreground `run` itself, as runc's, unless --no-subreaper."""
    bundle = make_bundle("sh", "-c", "(sh -c 'sleep 0.3; exec grep PPid /proc/self/status' &); sleep 1")
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle.write()

    def story(rt):
        cid = rt.new_id()
        binary = rt.binary if isinstance(rt, Runc) else RUNTIME
        with open(tmp_path / f"out-{cid}", "w+") as out:
            proc = subprocess.Popen([binary, "--root", rt.root, "run", *flags, "--bundle", bundle.path, cid],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
            assert proc.wait(timeout=30) == 0, proc.stderr.read()
            out.seek(0)
            ppid = int(out.read().split()[1])
        return ppid == proc.pid

    assert same(both, story) == (not flags)


def test_help_verb(both):
    def story(rt):
        top, create, short, unknown = (rt(*a, check=False) for a in (["help"], ["help", "create"], ["h", "kill"],
                                                                   ["help", "no-such-command"]))
        return (top.returncode, "create" in top.stdout and "delete" in top.stdout,
                create.returncode, "--bundle" in create.stdout and "--pid-file" in create.stdout,
                short.returncode, "--all" in short.stdout, unknown.returncode != 0)

    assert same(both, story) == (0, True, 0, True, 0, True, True)


# --- global flags: acted on or refused, never parsed and dropped -----------------------------

def test_rootless_is_validated_and_false_or_auto_run_as_usual(both, make_bundle):
    bundle = make_bundle("true")

    def story(rt):
        return tuple(rt("--rootless", value, "run", "--bundle", bundle.path, rt.new_id(), check=False).returncode
                     for value in ("bogus", "false", "auto", "0"))

    assert same(both, story) == (1, 0, 0, 0)


def test_rootless_true_is_refused_with_one_line(runtime, make_bundle):
    """runc as root runs it (its rootless cgroup manager only ignores cgroup permission
    errors); rootless mode is not implemented here, so it is refused, not ignored."""
    proc = runtime("--rootless", "true", "run", "--bundle", make_bundle("true").path, runtime.new_id(), check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["ociruntime: --rootless true: rootless containers are not supported "
                                        "by this runtime yet"]


def test_log_format_is_validated(both):
    assert same(both, lambda rt: rt("--log-format", "xml", "list", check=False).returncode) == 1


@pytest.mark.parametrize("args, says", [
    (["--criu", "/usr/sbin/criu", "checkpoint", "x"], "unknown command 'checkpoint'"),
    (["--rootless", "maybe", "list"], "--rootless: invalid value 'maybe'"),
    (["--systemd-cgroup", "list"], "--systemd-cgroup"),
])
def test_global_flags_without_an_effect_here_are_refused(runtime, args, says):
    proc = runtime(*args, check=False)
    assert proc.returncode != 0 and says in proc.stderr.splitlines()[-1], proc.stderr


def test_criu_is_taken_by_every_command_as_runc_takes_it(both):
    """go-runc passes --criu to every command when the engine has a CRIU path configured;
    only checkpoint and restore read it (and they are unknown commands here)."""
    assert same(both, lambda rt: rt("--criu", "/usr/sbin/criu", "list", "-q", check=False).returncode) == 0


# --- HOME -------------------------------------------------------------------------------------

@pytest.fixture
def home_bundle(make_bundle):
    def make(uid=0, env=None, passwd=PASSWD):
        bundle = make_bundle("sh", "-c", 'echo "$HOME"')
        bundle.config["process"]["user"] = {"uid": uid, "gid": uid}
        if env is not None:
            bundle.config["process"]["env"] = env
        bundle.write()
        (bundle.rootfs / "etc/passwd").unlink()
        if passwd is not None:
            (bundle.rootfs / "etc/passwd").write_text(passwd)
        return bundle

    return make


@pytest.mark.parametrize("uid, env, home", [
    (0, None, "/root"), (1000, None, "/home/app"), (4242, None, "/"),
    (1000, ["PATH=/bin", "HOME=/mine"], "/mine"), (1000, ["HOME=", "PATH=/bin"], "/home/app"),
])
def test_home_from_the_containers_passwd(both, home_bundle, uid, env, home):
    bundle = home_bundle(uid, env)

    def story(rt):
        code, out, err = rt.run_output(bundle)
        return code, out
    assert same(both, story) == (0, home + "\n")


def test_home_without_passwd_or_with_a_symlink_out_of_the_rootfs(both, home_bundle, tmp_path):
    host = tmp_path / "host-passwd"
    host.write_text("root:x:0:0::/host-secret:/bin/sh\n")
    missing = home_bundle(0, passwd=None)
    escaping = home_bundle(0, passwd=None)
    (escaping.rootfs / "etc/passwd").symlink_to(host)

    def story(rt):
        return rt.run_output(missing)[1], rt.run_output(escaping)[1]

    assert same(both, story) == ("/\n", "/\n")


def test_exec_sets_home_from_the_containers_passwd(both, home_bundle):
    bundle = home_bundle(0)
    bundle.config["process"]["args"] = ["sleep", "100"]
    bundle.write()

    def story(rt):
        cid = rt.new_id()
        rt("create", "--bundle", bundle.path, cid)
        rt("start", cid)
        homes = [rt("exec", *user, cid, "sh", "-c", 'echo "$HOME"').stdout
                 for user in ([], ["--user", "1000"], ["--user", "4242:4242"], ["--env", "HOME=/x"])]
        rt("delete", "--force", cid)
        return homes

    assert same(both, story) == ["/root\n", "/home/app\n", "/\n", "/x\n"]


# --- kill -------------------------------------------------------------------------------------

def test_kill_in_every_state_as_runc(both, make_bundle):
    """created, running, paused: the init is signalled; stopped: refused ("container not
    running") unless --all, which signals what is left in the cgroups (nothing)."""
    bundle = make_bundle("sleep", "100")

    def story(rt):
        cid = rt.new_id()
        seen = {}

        def kills(status):
            seen[status] = (rt("kill", cid, "0", check=False).returncode,
                            rt("kill", "--all", cid, "0", check=False).returncode)

        rt("create", "--bundle", bundle.path, cid)
        kills("created")
        rt("start", cid)
        kills("running")
        rt("pause", cid)
        kills("paused")
        rt("kill", cid, "KILL")  # a paused container is thawed for SIGKILL
        wait_status(rt, cid, "stopped")
        kills("stopped")
        seen["stopped KILL"] = rt("kill", cid, "KILL", check=False).returncode
        rt("delete", cid)
        return seen

    assert same(both, story) == {"created": (0, 0), "running": (0, 0), "paused": (0, 0), "stopped": (1, 0),
                                 "stopped KILL": 1}


def test_kill_all_keeps_a_paused_container_paused_unless_sigkill(runtime, make_bundle):
    """runc 1.1.5 thaws a paused container after `kill --all` with any signal (its
    freeze-signal-thaw doesn't look at the state it started from); here a paused container
    stays paused, as `kill` without --all leaves it, except for SIGKILL."""
    bundle = make_bundle("sh", "-c", "sleep 100 & sleep 100")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    runtime("start", cid)
    runtime("pause", cid)
    runtime("kill", "--all", cid, "USR1")
    assert runtime.state(cid)["status"] == "paused"
    runtime("kill", "--all", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)


@pytest.mark.cgroup_v1_hybrid  # the v1 freezer; strace comes with scripts/setup.sh
def test_kill_all_freezes_signals_then_thaws(both, make_bundle, tmp_path):
    """Listing the cgroup and then signalling what was listed misses a child that a listed
    process forks meanwhile (a fork bomb outruns it); runc freezes the cgroup, signals every
    process, thaws. Traced: the FROZEN write, then a kill() per process, then THAWED."""
    bundle = make_bundle("sh", "-c", "sleep 100 & sleep 100 & while true; do sleep 1; done")
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle.write()

    def story(rt):
        cid = rt.new_id()
        rt("create", "--bundle", bundle.path, cid)
        rt("start", cid)
        pids = _pids(rt, cid)
        trace = tmp_path / f"trace-{cid}"
        binary = rt.binary if isinstance(rt, Runc) else RUNTIME
        subprocess.run(["strace", "-f", "-qq", "-e", "trace=write,kill", "-e", "signal=none", "-o", trace,
                        binary, "--root", rt.root, "kill", "--all", cid, "CONT"], check=True, timeout=60)
        events = []
        for line in trace.read_text().splitlines():
            if '"FROZEN"' in line or '"THAWED"' in line:
                events.append("FROZEN" if "FROZEN" in line else "THAWED")
            elif " kill(" in line and "SIGCONT" in line:
                events.append(int(line.split("kill(")[1].split(",")[0]))
        status = rt.state(cid)["status"]
        rt("delete", "--force", cid)
        signalled = [e for e in events if isinstance(e, int)]
        order = [e if isinstance(e, str) else "kill" for e in events]
        collapsed = [e for i, e in enumerate(order) if i == 0 or e != order[i - 1]]
        return collapsed, sorted(signalled) == sorted(pids), status

    assert same(both, story) == (["FROZEN", "kill", "THAWED"], True, "running")


def _pids(rt, cid):
    return json.loads(rt("ps", "--format", "json", cid).stdout) or []


# --- a real engine: containerd-shim-runc-v2 deletes a task that never started ------------------

CONTAINERD = "/usr/bin/containerd"


def test_containerd_shim_deletes_a_created_task(tmp_path, rootfs_template):
    """A private containerd (its own root, state and socket), a busybox OCI image imported.
    `ctr run -d --pid-file <unwritable>` leaves a task created, never started (ctr fails
    writing the pid file between the shim's create and start). The shim's Delete of a task
    in that state (containerd-shim-runc-v2's createdState.Delete) runs a plain
    `<runtime> delete <id>`, and takes an error as the delete failing: with runc it
    succeeds, the init is gone; so must it with ociruntime."""
    base = tmp_path / "containerd"
    base.mkdir()
    (base / "config.toml").write_text(
        f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", '
        '"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", '
        '"io.containerd.snapshotter.v1.aufs"]\n'
        f'[grpc]\n  address = "{base}/containerd.sock"\n[ttrpc]\n  address = "{base}/containerd.sock.ttrpc"\n')
    namespace = f"ocirt-{os.urandom(4).hex()}"
    cgroups_before = set(glob.glob(f"/sys/fs/cgroup/*/{namespace}"))

    def ctr(*args, check=True):
        proc = subprocess.run(["ctr", "--address", f"{base}/containerd.sock", "-n", namespace, *map(str, args)],
                              capture_output=True, text=True, timeout=60)
        assert not check or proc.returncode == 0, f"ctr {args}: {proc.stdout}{proc.stderr}"
        return proc

    log = open(base / "containerd.log", "w")
    daemon = subprocess.Popen([CONTAINERD, "--config", base / "config.toml"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    made = []
    try:
        deadline = time.monotonic() + 30
        while ctr("version", check=False).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (base / "containerd.log").read_text()
            time.sleep(0.1)
        _oci_archive(rootfs_template, base / "busybox.tar", "docker.io/library/busybox:ociruntime-test")
        ctr("images", "import", base / "busybox.tar")
        results = {}
        for name, binary in (("runc", Runc.binary), ("ociruntime", RUNTIME)):
            cid, root = f"{name}-created", base / f"{name}-root"
            proc = ctr("run", "-d", "--runc-binary", binary, "--runc-root", root, "--pid-file", "/nonexistent/dir/pid",
                       "docker.io/library/busybox:ociruntime-test", cid, "sleep", "100", check=False)
            assert "/nonexistent/dir" in proc.stderr, proc.stderr
            assert ctr("task", "ls").stdout.split()[-1] == "CREATED", ctr("task", "ls").stdout
            pid = int(ctr("task", "ls").stdout.split()[-2])
            bundle = base / "state/io.containerd.runtime.v2.task" / namespace / cid
            made.append((cid, (bundle / "address").read_text().strip()))
            deleted, error = _shim_call(made[-1][1], "Delete", _pb_field(1, cid.encode()), namespace)
            listed = subprocess.run([binary, "--root", root / namespace, "list", "-q"], capture_output=True,
                                    text=True).stdout.split()
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            results[name] = (deleted, error, listed, _alive(pid))
        assert results["ociruntime"] == results["runc"] == (True, "", [], False), results
    finally:
        for cid, shim in made:
            ctr("task", "delete", "--force", cid, check=False)
            ctr("container", "delete", cid, check=False)
            try:  # a shim whose task containerd didn't delete itself stays up until told
                _shim_call(shim, "Shutdown", _pb_field(1, cid.encode()), namespace)
            except (OSError, AssertionError):
                pass  # it had gone, or went without answering
        stop_daemon(daemon, 30)
        log.close()
        for path in sorted(set(glob.glob(f"/sys/fs/cgroup/*/{namespace}")) - cgroups_before):
            os.rmdir(path)  # the namespace's parent cgroup (fails, and says so, if a container's is left)


def _oci_archive(rootfs, out, name):
    """An OCI image layout tarball with one layer, ``rootfs``; ``ctr images import`` names it ``name``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(str(rootfs), arcname=".")
    blobs = {}

    def blob(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    lay = blob(layer.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    cfg = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                           "rootfs": {"type": "layers", "diff_ids": [lay["digest"]]}}).encode(),
               "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": cfg, "layers": [lay]}).encode(), "application/vnd.oci.image.manifest.v1+json")
    index = {"schemaVersion": 2, "manifests": [{**manifest, "annotations": {"io.containerd.image.name": name}}]}
    with tarfile.open(out, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(),
                 **{f"blobs/sha256/{d}": b for d, b in blobs.items()}}
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _shim_call(address, method, payload, namespace):
    """One ttrpc call to the shim's containerd.task.v2.Task service, as containerd makes it:
    a frame (length, stream id, type 1 = request, flags) around a protobuf Request. Returns
    (ok, the error's message)."""
    request = _pb_field(1, b"containerd.task.v2.Task") + _pb_field(2, method.encode()) + _pb_field(3, payload) + \
        _pb_field(5, _pb_field(1, b"containerd-namespace") + _pb_field(2, namespace.encode()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(address.removeprefix("unix://"))
        s.sendall(struct.pack(">IIBB", len(request), 1, 1, 0) + request)
        length = struct.unpack(">IIBB", _recv(s, 10))[0]
        status = dict(_pb_fields(_recv(s, length))).get(1)  # Response.status (google.rpc.Status)
    return (False, dict(_pb_fields(status)).get(2, b"").decode()) if status else (True, "")


def _recv(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, "the shim hung up"
        data += chunk
    return data


def _varint(n):
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _pb_field(number, data):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _pb_fields(buf):
    """(number, bytes) of each length-delimited field; varint fields are skipped."""
    i = 0

    def varint():
        nonlocal i
        value = shift = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            varint()
            continue
        n = varint()
        yield key >> 3, buf[i:i + n]
        i += n
