"""checkpoint and restore with CRIU (ociruntime/criu.py, commands/checkpoint.py and
restore.py). The real thing needs a kernel where `criu check` passes: those tests are
marked ``criu`` and run in the qemu lane's plain guest. Here, on any host: the RPC
messages against protobuf's own reading of criu's rpc.proto, and what a host where CRIU
can't work gets from `checkpoint` (this machine's kernel is one)."""

import json
import os
import select
import shutil
import subprocess
import time

import pytest
from conftest import RUNTIME, leftovers

from ociruntime import criu

RPC_PROTO = "/usr/include/criu/rpc.proto"  # Debian's criu package ships it


# --- the RPC messages, read back by protobuf from criu's own rpc.proto --------------------


@pytest.fixture(scope="module")
def rpc(tmp_path_factory):
    """criu's rpc.proto compiled (protoc, which setup.sh installs) into protobuf classes."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    if not os.path.exists(RPC_PROTO):
        pytest.fail(f"{RPC_PROTO} is missing: scripts/setup.sh installs criu")
    out = tmp_path_factory.mktemp("rpc") / "rpc.binpb"
    subprocess.run(["protoc", "-I", os.path.dirname(RPC_PROTO), f"--descriptor_set_out={out}", "rpc.proto"],
                   check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


FACTS = {"externals": ["/etc/hosts", "/dev/null", "/sys/fs/cgroup"], "masked": ["/proc/kcore", "/proc/acpi"],
         "joined": {"network": "/run/netns/x", "ipc": "/proc/1/ns/ipc"}}


def test_a_dump_request_is_what_runc_sends(rpc):
    opts = criu.dump_options(42, "/b/rootfs", 7, FACTS, masked_files=["/proc/kcore"], work_fd=8,
                             freezer="/sys/fs/cgroup/x/cgroup.freeze", annotations={}, leave_running=True,
                             shell_job=True, cgroups_mode=criu.CGROUP_MODES["full"], ns_inode=lambda path: 4026,
                             empty_ns=criu.CLONE_NEWNET)
    req = rpc("criu_req").FromString(criu.request(criu.DUMP, opts))
    o = req.opts
    assert req.type == criu.DUMP
    assert (o.images_dir_fd, o.work_dir_fd, o.pid, o.root, o.log_file, o.log_level) == (7, 8, 42, "/b/rootfs",
                                                                                         "dump.log", 4)
    assert o.leave_running and o.shell_job and o.manage_cgroups and o.notify_scripts and o.orphan_pts_master
    assert not o.tcp_established and o.HasField("tcp_established")
    assert o.empty_ns == 0x40000000 and o.manage_cgroups_mode == 4
    assert o.freeze_cgroup == "/sys/fs/cgroup/x"
    assert o.config_file == "/etc/criu/runc.conf"
    assert list(o.external) == ["net[4026]:extRootNetNS"]  # ipc is joined on restore, not external
    assert [(m.key, m.val) for m in o.ext_mnt] == [("/etc/hosts", "/etc/hosts"), ("/dev/null", "/dev/null"),
                                                   ("/sys/fs/cgroup", "/sys/fs/cgroup"), ("/proc/kcore", "/dev/null")]
    assert not o.HasField("parent_img")


def test_a_pre_dump_request_tracks_memory_and_names_no_mounts(rpc):
    opts = criu.dump_options(42, "/r", 7, FACTS, annotations={"org.criu.config": ""}, parent="../parent",
                             pre_dump=True, ns_inode=lambda path: 1)
    o = rpc("criu_req").FromString(criu.request(criu.PRE_DUMP, opts)).opts
    assert o.parent_img == "../parent" and o.track_mem
    assert not o.ext_mnt and not o.HasField("config_file")  # an empty annotation: no configuration file


def test_a_restore_request_is_what_runc_sends(rpc):
    opts = criu.restore_options("/run/x/c/criu-root", 5, [("/etc/hosts", "/b/hosts")], ["/dev/null"], True,
                                annotations={"org.criu.config": "/etc/c.conf"}, joined=FACTS["joined"],
                                lsm_profile="apparmor:p", empty_ns=criu.CLONE_NEWNET)
    opts["inherit_fd"] = [("pipe:[123]", 1), ("extRootNetNS", 4)]
    opts["cg_root"] = [("cpu,cpuacct", "/c"), ("name=systemd", "/c")]
    req = rpc("criu_req").FromString(criu.request(criu.RESTORE, opts))
    o = req.opts
    assert req.type == criu.RESTORE
    assert o.rst_sibling and o.evasive_devices and o.orphan_pts_master and o.root == "/run/x/c/criu-root"
    assert o.log_file == "restore.log" and o.config_file == "/etc/c.conf" and o.lsm_profile == "apparmor:p"
    assert [(m.key, m.val) for m in o.ext_mnt] == [("/etc/hosts", "/b/hosts"), ("/dev/null", "/dev/null"),
                                                   ("/dev/null", "/dev/null")]
    assert [(j.ns, j.ns_file) for j in o.join_ns] == [("ipc", "/proc/1/ns/ipc")]
    assert [(i.key, i.fd) for i in o.inherit_fd] == [("pipe:[123]", 1), ("extRootNetNS", 4)]
    assert [(c.ctrl, c.path) for c in o.cg_root] == [("cpu,cpuacct", "/c"), ("name=systemd", "/c")]


def test_a_notify_answer(rpc):
    req = rpc("criu_req").FromString(criu.request(criu.NOTIFY, notify_success=True))
    assert req.type == criu.NOTIFY and req.notify_success and not req.HasField("opts")


def test_responses_are_read_as_protobuf_writes_them(rpc):
    resp = rpc("criu_resp")
    notify = resp(type=criu.NOTIFY, success=True, notify={"script": "post-restore", "pid": 4242})
    assert criu.response(notify.SerializeToString()) == {"type": criu.NOTIFY, "success": True,
                                                         "notify": ("post-restore", 4242)}
    failed = resp(type=criu.RESTORE, success=False, cr_errno=-1, cr_errmsg="Can't fork for 1: File exists")
    assert criu.response(failed.SerializeToString()) == {"type": criu.RESTORE, "success": False, "cr_errno": -1,
                                                         "cr_errmsg": "Can't fork for 1: File exists"}
    done = resp(type=criu.RESTORE, success=True, restore={"pid": 99})
    assert criu.response(done.SerializeToString())["restore_pid"] == 99
    version = resp(type=criu.VERSION, success=True, version={"major_number": 3, "minor_number": 17, "sublevel": 1})
    assert criu.response(version.SerializeToString())["version"] == (3, 17, 1)


def test_a_failure_is_one_line_with_criu_s_words(tmp_path):
    log = tmp_path / "dump.log"
    log.write_text("(00.01) Warn (criu/x.c:1): not this\n(00.02) Error (criu/util.c:642): exited, status=1\n"
                   "(00.03) Error (criu/files-reg.c:1710): Can't lookup mount=24 for fd=0\n"
                   "(00.04) Error (criu/cr-dump.c:2053): Dumping FAILED.\n")
    resp = {"type": criu.DUMP, "success": False, "cr_errmsg": "Error (criu/kerndat.c:1615): kerndat failed."}
    assert criu.error_text(resp, str(log)) == f"criu dump: kerndat failed. (log: {log})"
    del resp["cr_errmsg"]  # criu < 3.16: the log's last error that says why
    assert criu.error_text(resp, str(log)) == f"criu dump: Can't lookup mount=24 for fd=0 (log: {log})"
    assert criu.error_text({"type": criu.RESTORE, "cr_errno": 2}) == \
        "criu restore: criu failed: No such file or directory"


def test_the_version_request_against_the_real_criu():
    with criu.Session() as session:  # the VERSION RPC, which needs no kernel features
        assert session.call(criu.request(criu.VERSION))["version"] >= (3, 0, 0)


def test_only_masked_files_are_named_to_criu(tmp_path):
    """A masked directory is a tmpfs CRIU saves itself; a masked file is a bind of
    /dev/null, named to CRIU; a masked path that doesn't exist is nothing."""
    from ociruntime.commands.checkpoint import masked_files

    (tmp_path / "file").write_text("")
    (tmp_path / "dir").mkdir()
    paths = [str(tmp_path / "file"), str(tmp_path / "dir"), str(tmp_path / "none")]
    assert masked_files(os.getpid(), paths) == [str(tmp_path / "file")]  # our root: this host's /


# --- containers -------------------------------------------------------------------------


COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"


class Piped:
    """A container whose stdio are pipes the test holds (what CRIU can checkpoint: a pipe,
    unlike a deleted temporary file outside the container, is restored onto a new one)."""

    def __init__(self, runtime, bundle, cid=None):
        self.runtime, self.bundle = runtime, bundle
        self.cid = cid or runtime.new_id("ck")
        self.out = None

    def cmd(self, *args):
        return [RUNTIME, "--root", self.runtime.root, *map(str, args)]

    def spawn(self, *args):
        """Run a runtime command whose stdio become the container's: new pipes, ours to read."""
        r, w = os.pipe()
        stdin_r, stdin_w = os.pipe()
        try:
            proc = subprocess.run(self.cmd(*args), stdin=stdin_r, stdout=w, stderr=w, timeout=120)
        finally:
            os.close(w)
            os.close(stdin_r)
        if self.out is not None:
            self.out.close()
        self.out = os.fdopen(r, "rb", buffering=0)
        self.stdin = stdin_w
        return proc

    def create_and_start(self):
        assert self.spawn("create", "--bundle", self.bundle.path, self.cid).returncode == 0, self.read_all()
        self.runtime("start", self.cid)

    def restore(self, *args):
        proc = self.spawn("restore", "--detach", "--bundle", self.bundle.path, *args, self.cid)
        assert proc.returncode == 0, self.read_all()

    def numbers(self, count, timeout=30):
        """The next ``count`` numbers the counter writes."""
        return read_numbers(self.out.fileno(), count, timeout)

    def drain(self):
        """The numbers already written and not read yet."""
        return [int(n) for n in self.read_all().split() if n.isdigit()]

    def read_all(self):
        os.set_blocking(self.out.fileno(), False)
        try:
            return self.out.read() or b""
        except BlockingIOError:
            return b""
        finally:
            os.set_blocking(self.out.fileno(), True)


def read_numbers(fd, count, timeout=30):
    """The next ``count`` numbers written on lines to ``fd`` (a pipe, a pty master)."""
    got, buf = [], b""
    deadline = time.monotonic() + timeout
    while len(got) < count:
        if not select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"no output for {timeout}s (got {got}, {buf!r})")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"output ended (got {got}, {buf!r})")
        buf += chunk
        *lines, buf = buf.split(b"\n")
        got += [int(n) for n in lines if n.strip().isdigit()]
    return got


@pytest.fixture
def counter(runtime, make_bundle):
    """A started container counting on its stdout pipe, its first numbers read."""
    c = Piped(runtime, make_bundle("sh", "-c", COUNTER))
    c.create_and_start()
    assert c.numbers(2) == [1, 2]
    return c


def _criu_check():
    return subprocess.run(["criu", "check"], capture_output=True, text=True)


@pytest.mark.root
def test_where_criu_fails_checkpoint_says_what_criu_said_in_one_line(runtime, make_bundle, tmp_path):
    """A dump CRIU refuses, on this host or any: the container's stdout is a deleted file
    outside it, which CRIU can't save (and on a kernel CRIU can't work with, it says so
    first). One line, criu's own words, and the container is as it was."""
    bundle = make_bundle("sh", "-c", "sleep 600")
    cid = runtime.new_id("ck")
    runtime("create", "--bundle", bundle.path, cid)  # its stdout: the runtime driver's deleted temporary file
    runtime("start", cid)
    images = tmp_path / "images"
    proc = runtime("checkpoint", "--image-path", images, cid, check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    prefix, suffix = "ociruntime: checkpoint: criu dump: ", f" (log: {images}/dump.log)"
    assert lines[0].startswith(prefix) and lines[0].endswith(suffix), lines
    said = lines[0][len(prefix):-len(suffix)]
    with open(images / "dump.log") as f:
        assert f"): {said}" in f.read(), said  # an error line of criu's log, word for word
    check = _criu_check()
    if check.returncode != 0:  # this machine's kernel: criu check says the same
        assert f"): {said}" in check.stdout + check.stderr, (said, check.stdout, check.stderr)
    assert runtime.state(cid)["status"] == "running"
    runtime("delete", "--force", cid)


@pytest.mark.root
def test_checkpoint_refuses_what_it_cannot_do(runtime, make_bundle, tmp_path):
    bundle = make_bundle("sleep", "600")
    cid = runtime.new_id("ck")
    runtime("create", "--bundle", bundle.path, cid)
    refusals = [([], f"container {cid!r} cannot be checkpointed in created state")]
    for args, said in refusals:
        _refused(runtime, tmp_path, args, cid, said)
    runtime("start", cid)
    for args, said in ((["--lazy-pages"], "--lazy-pages is not supported"),
                       (["--page-server", "127.0.0.1:1"], "--page-server is not supported"),
                       (["--empty-ns", "ipc"], "--empty-ns: namespace 'ipc' is not supported (only network)"),
                       (["--manage-cgroups-mode", "hard"], "--manage-cgroups-mode: invalid value 'hard'"),
                       (["--parent-path", "/abs"], "--parent-path must be relative")):
        _refused(runtime, tmp_path, args, cid, said)
    assert runtime.state(cid)["status"] == "running"
    proc = runtime("--criu", tmp_path / "no-criu", "checkpoint", "--image-path", tmp_path / "i", cid, check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"ociruntime: checkpoint: --criu {tmp_path}/no-criu: no such executable"]
    runtime("delete", "--force", cid)
    _refused(runtime, tmp_path, [], "nosuch", "container 'nosuch' does not exist")


def _refused(runtime, tmp_path, args, cid, said):
    proc = runtime("checkpoint", "--image-path", tmp_path / "i", *args, cid, check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"ociruntime: {said}"), proc.stderr


@pytest.mark.root
def test_restore_refuses_what_is_not_a_checkpoint(runtime, make_bundle, tmp_path):
    bundle = make_bundle("true")
    cid = runtime.new_id("ck")
    for images, said in ((tmp_path / "none", f"--image-path {tmp_path}/none: no such directory"),
                         (tmp_path, f"--image-path {tmp_path}: no descriptors.json: not the images of a checkpoint")):
        proc = runtime("restore", "--detach", "--bundle", bundle.path, "--image-path", images, cid, check=False)
        assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1 and said in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --- in the lane's guest, where CRIU works ----------------------------------------------


def _cgroups_named(cid):
    return [os.path.join(base, d) for base, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs if d == cid]


@pytest.mark.root
@pytest.mark.criu
def test_a_counter_checkpointed_and_restored_continues_from_its_count(runtime, tmp_path, counter):
    c = counter
    before = c.numbers(3)
    images = tmp_path / "images"
    runtime("checkpoint", "--image-path", images, c.cid)
    # gone, as runc leaves it: no record, no cgroup, no process
    assert runtime("state", c.cid, check=False).returncode == 1
    assert not _cgroups_named(c.cid)
    c.numbers(0)
    rest = c.read_all()  # what it wrote before the dump, still in the old pipe
    last = int(rest.split()[-1]) if rest.split() else before[-1]
    c.cid = runtime.new_id("ck")  # a restore into a new id
    c.restore("--image-path", images)
    after = c.numbers(5)
    assert after[0] == last + 1 and after == list(range(last + 1, last + 6)), (last, after)
    st = runtime.state(c.cid)
    assert st["status"] == "running" and st["pid"] > 0
    # a container like any other: exec, ps, pause/resume, kill, delete
    out = runtime("exec", c.cid, "cat", "/proc/1/cmdline").stdout
    assert out.split("\0")[:2] == ["sh", "-c"]
    assert _cgroups_named(c.cid), "the restored container has no cgroup of its own"
    with open(f"/proc/{st['pid']}/cgroup") as f:
        assert c.cid in f.read()
    runtime("pause", c.cid)
    assert runtime.state(c.cid)["status"] == "paused"
    runtime("resume", c.cid)
    runtime("kill", c.cid, "KILL")
    deadline = time.monotonic() + 10
    while runtime.state(c.cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    runtime("delete", c.cid)
    assert not leftovers(runtime, tmp_path)


@pytest.mark.root
@pytest.mark.criu
def test_leave_running_then_restore_beside_it(runtime, make_bundle, tmp_path, counter):
    c = counter
    before = max(c.numbers(3) + c.drain())  # counted before the dump
    images = tmp_path / "images"
    runtime("checkpoint", "--leave-running", "--image-path", images, c.cid)
    assert runtime.state(c.cid)["status"] == "running"
    after = max(c.numbers(3) + c.drain())  # it goes on counting
    runtime("delete", "--force", c.cid)
    copy = Piped(runtime, make_bundle("sh", "-c", COUNTER))  # another bundle, the same image
    copy.restore("--image-path", images)
    first = copy.numbers(1)[0]
    assert before < first <= after + 1, (before, first, after)  # from the count at the dump, not from 1
    runtime("delete", "--force", copy.cid)


@pytest.mark.root
@pytest.mark.criu
def test_pre_dump_then_dump_then_restore(runtime, tmp_path, counter):
    c = counter
    c.numbers(3)
    runtime("checkpoint", "--pre-dump", "--image-path", tmp_path / "parent", c.cid)
    assert runtime.state(c.cid)["status"] == "running"
    assert (tmp_path / "parent" / "pagemap-1.img").exists() or list((tmp_path / "parent").glob("pagemap-*.img"))
    c.numbers(3)
    final = tmp_path / "final"
    runtime("checkpoint", "--image-path", final, "--parent-path", "../parent", c.cid)
    assert (final / "parent").is_symlink()
    c.numbers(0)
    rest = c.read_all().split()
    last = int(rest[-1])
    c.restore("--image-path", final)
    assert c.numbers(3)[0] == last + 1
    runtime("delete", "--force", c.cid)


@pytest.mark.root
@pytest.mark.criu
def test_a_container_with_a_tty(runtime, make_bundle, tmp_path):
    """The pty: CRIU restores its slave orphaned and hands the new master over, which
    restore sends to --console-socket."""
    bundle = make_bundle("sh", "-c", COUNTER)
    bundle.config["process"]["terminal"] = True
    bundle.write()
    cid = runtime.new_id("ck")
    master = _with_console(lambda path: runtime("create", "--bundle", bundle.path, "--console-socket", path, cid),
                           tmp_path, "console.sock")
    runtime("start", cid)
    counted = read_numbers(master, 3)
    images = tmp_path / "images"
    runtime("checkpoint", "--image-path", images, cid)
    os.close(master)
    master = _with_console(lambda path: runtime("restore", "--detach", "--bundle", bundle.path, "--console-socket",
                                                path, "--image-path", images, cid), tmp_path, "console2.sock")
    after = read_numbers(master, 3)
    assert after[0] > counted[-1], (counted, after)
    os.write(master, b"\x03")  # the pty's line discipline came back too: ^C ends the shell
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.state(cid)["status"] == "stopped"
    os.close(master)
    runtime("delete", cid)


def _with_console(command, tmp_path, name):
    """Run ``command(socket path)``; the pty master it sent there."""
    from test_terminal import console_server, recv_fd

    server, path = console_server(tmp_path, name)
    with server:
        command(path)
        conn, _ = server.accept()
        with conn:
            return recv_fd(conn)[0]


@pytest.mark.root
@pytest.mark.criu
def test_a_failed_restore_leaves_nothing_behind(runtime, tmp_path, counter):
    c = counter
    c.numbers(2)
    images = tmp_path / "images"
    runtime("checkpoint", "--image-path", images, c.cid)
    broken = tmp_path / "broken"
    shutil.copytree(images, broken)
    for core in broken.glob("core-*.img"):
        core.write_bytes(b"\0" * 16)  # what CRIU reads the processes from, damaged
    cid = runtime.new_id("ck")
    proc = runtime("restore", "--detach", "--bundle", c.bundle.path, "--image-path", broken, cid, check=False)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("ociruntime: restore: criu restore: "), \
        proc.stderr
    assert f"(log: {broken}/restore.log)" in lines[0]
    assert not os.path.exists(os.path.join(runtime.root, cid))
    assert not _cgroups_named(cid)
    assert not leftovers(runtime, tmp_path)
    # the good images still restore
    c.restore("--image-path", images)
    assert c.numbers(2)
    runtime("delete", "--force", c.cid)
    with open("/proc/self/mountinfo") as f:
        assert "criu-root" not in f.read()


@pytest.mark.root
@pytest.mark.criu
def test_restore_in_the_foreground_waits_and_deletes(runtime, make_bundle, tmp_path):
    bundle = make_bundle("sh", "-c", "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i; sleep 0.05; done; exit 7")
    c = Piped(runtime, bundle)
    c.create_and_start()
    c.numbers(2)
    images = tmp_path / "images"
    runtime("checkpoint", "--image-path", images, c.cid)
    proc = c.spawn("restore", "--bundle", bundle.path, "--image-path", images, c.cid)
    assert proc.returncode == 7, c.read_all()
    assert runtime("state", c.cid, check=False).returncode == 1  # deleted once it exited
    numbers = [int(n) for n in c.read_all().split()]
    assert numbers and numbers[-1] == 40 and numbers[0] > 1


def test_state_json_keeps_the_checkpoint_facts(runtime, make_bundle):
    bundle = make_bundle("sleep", "600")
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(bundle.path),
                                    "options": ["rbind"]})
    bundle.write()
    cid = runtime.new_id("ck")
    runtime("create", "--bundle", bundle.path, cid)
    with open(os.path.join(runtime.root, cid, "state.json")) as f:
        facts = json.load(f)["checkpoint"]
    assert "/data" in facts["externals"] and "/dev/null" in facts["externals"]
    assert "/proc/kcore" in facts["masked"]
    assert facts["joined"] == {}
    runtime("delete", "--force", cid)


@pytest.mark.root
@pytest.mark.criu
def test_restore_runs_the_create_runtime_hooks_with_the_restored_pid(runtime, make_bundle, tmp_path):
    """As runc does at CRIU's "setup-namespaces": prestart and createRuntime see the
    restored init's pid (its namespaces exist, its program doesn't run yet)."""
    seen = tmp_path / "hook-state.json"
    bundle = make_bundle("sh", "-c", COUNTER)
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/busybox",
                                                 "args": ["busybox", "sh", "-c", f"cat > {seen}"]}]}
    bundle.write()
    c = Piped(runtime, bundle)
    c.create_and_start()
    c.numbers(2)
    runtime("checkpoint", "--image-path", tmp_path / "images", c.cid)
    seen.unlink()
    c.restore("--image-path", tmp_path / "images")
    c.numbers(1)
    hook_state = json.loads(seen.read_text())
    assert hook_state["id"] == c.cid and hook_state["pid"] == runtime.state(c.cid)["pid"]
    runtime("delete", "--force", c.cid)


def test_restore_makes_mount_points_inside_the_rootfs_only(tmp_path):
    """restore's mount points (native.make_mountpoint): a link in the rootfs is resolved
    inside it, as the init resolves its mount targets; nothing is made outside."""
    from ociruntime.errors import OCIError
    from ociruntime.native import make_mountpoint

    rootfs, outside = tmp_path / "rootfs", tmp_path / "outside"
    (rootfs / "usr" / "lib").mkdir(parents=True)
    outside.mkdir()
    (rootfs / "etc").symlink_to(outside)  # absolute: inside the root it leads nowhere
    (rootfs / "lib").symlink_to("/usr/lib")  # absolute: inside the root, to its usr/lib
    with pytest.raises(OCIError, match="/etc/hosts: making the mount point in .*: No such file or directory"):
        make_mountpoint(str(rootfs), "/etc/hosts", file=True)
    make_mountpoint(str(rootfs), "/lib/modules", file=False)
    make_mountpoint(str(rootfs), "/data/a/b")
    make_mountpoint(str(rootfs), "/data/a/b")  # already there: nothing to do
    assert not list(outside.iterdir())
    assert (rootfs / "usr" / "lib" / "modules").is_dir() and (rootfs / "data" / "a" / "b").is_dir()
