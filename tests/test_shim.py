"""The shim without containerd: an engine starts containerd-shim-ociruntime-v2 for a bundle
and drives it with ociruntime_shim.client.Shim — real containers, checked from inside and
from the host (the shim process, its socket, the state directory afterwards).
The containerd path is tests/test_containerd.py."""

import errno
import os
import signal
import time

import devbuild
import pytest
from ociruntime_shim import main as shim_main
from ociruntime_shim import metrics
from ociruntime_shim.client import Shim
from ociruntime_shim.ttrpc import ConnectionClosed

SHIM = os.path.join(devbuild.OUT, devbuild.SHIM)


@pytest.fixture
def engine(tmp_path, runtime):
    """Launch shims for bundles in a namespace of this test; after it, every shim it launched
    must have gone (it exits with its last container) and its socket with it."""
    namespace = f"t{os.urandom(4).hex()}"
    launched = []

    def launch(bundle, cid, **options):
        runtime.ids.add(cid)
        shim = Shim.launch(str(bundle.path), cid, namespace=namespace, binary=SHIM, engine=str(tmp_path), **options)
        launched.append(shim)
        return shim

    def adopt(bundle, cid):
        """A shim launched by another process of the test: checked afterwards too."""
        runtime.ids.add(cid)
        launched.append(Shim.connect(bundle, cid, namespace=namespace))

    launch.namespace = namespace
    launch.root = str(tmp_path / "state")
    launch.adopt = adopt
    yield launch
    for shim in launched:  # a test that failed half-way: its containers go, and with them the shim
        try:
            again = Shim.connect(shim.bundle, shim.id, namespace=namespace)
        except (OSError, ConnectionClosed):
            continue  # gone with its last container, as it should
        try:
            again.kill(signal.SIGKILL)
        except Exception:  # noqa: BLE001 — stopped already, or never created
            pass
        try:
            again.wait(timeout=10)
            again.delete()
        except Exception:  # noqa: BLE001
            again.shutdown()
    for shim in launched:  # the shim removes its socket, then its reservations, then its lock
        path = shim.address.removeprefix("unix://")
        deadline = time.monotonic() + 5
        while (left := [p for p in (path, path + ".tasks", path + ".lock") if os.path.exists(p)]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"the shim left {left}"


def shim_pid(shim):
    return shim._call("Connect", "ConnectRequest", "containerd.task.v2.ConnectResponse").shim_pid


def gone(pid, timeout=5):
    """Whether ``pid`` exited (or does within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_output_stdin_and_exit_status(engine, make_bundle, tmp_path):
    bundle = make_bundle("sh", "-c", "read line; echo got $line; echo oops >&2; exit 7")
    shim = engine(bundle, "io")
    log = tmp_path / "io.log"
    pid = shim.create(log=str(log), stdin=True, root=engine.root)
    assert pid > 0 and shim.state().status == 1  # CREATED
    # Cloned from the shim, the waiting init's exe is the shim's interpreter: sealed (CVE-2019-5736).
    with pytest.raises(OSError) as refused:
        os.close(os.open(f"/proc/{pid}/exe", os.O_WRONLY))
    assert refused.value.errno == errno.EROFS, refused.value
    assert shim.start() == pid
    shim.write_stdin(b"hello\n")
    shim.close_stdin()
    status, exited_at = shim.wait(timeout=30)
    assert status == 7 and abs(exited_at - time.time()) < 30
    assert shim.state().status == 3  # STOPPED
    owner = shim_pid(shim)
    assert shim.delete() == 7
    assert sorted(log.read_text().splitlines()) == ["got hello", "oops"]
    assert gone(owner), "the shim stayed after its last container was deleted"
    assert not os.listdir(engine.root)


def test_wait_after_the_engine_restarted(engine, make_bundle):
    """The engine goes away (its connection closes); a new one connects through the bundle's
    address file and still gets the exit status, which the shim kept."""
    bundle = make_bundle("sleep", "30")
    shim = engine(bundle, "restart")
    shim.create(root=engine.root)
    pid = shim.start()
    shim.close()
    again = Shim.connect(str(bundle.path), "restart", namespace=engine.namespace)
    assert again.state().status == 2 and again.state().pid == pid  # RUNNING
    again.kill(signal.SIGKILL)
    assert again.wait(timeout=30)[0] == 128 + signal.SIGKILL
    again.close()
    third = Shim.connect(str(bundle.path), "restart", namespace=engine.namespace)
    assert third.wait(timeout=5)[0] == 137  # kept until delete
    assert third.delete() == 137


def test_containers_of_a_namespace_share_one_shim(engine, make_bundle):
    """One process serves the namespace's containers, and stays until the last is deleted."""
    shims = [engine(make_bundle("sleep", "30"), f"share{i}") for i in range(3)]
    for shim in shims:
        shim.create(root=engine.root)
        shim.start()
    owners = {shim_pid(s) for s in shims}
    assert len(owners) == 1, owners
    owner = owners.pop()
    for i, shim in enumerate(shims):
        assert not gone(owner, timeout=0), f"the shim left with {len(shims) - i} containers"
        shim.kill(signal.SIGKILL)  # sleep, pid 1 of its namespace, ignores TERM
        assert shim.wait(timeout=30)[0] == 128 + signal.SIGKILL
        shim.delete()
    assert gone(owner)


def test_a_failed_create_says_why_and_leaves_nothing(engine, make_bundle):
    bundle = make_bundle("true")
    bundle.config["process"]["cwd"] = "relative"
    bundle.write()
    shim = engine(bundle, "bad")
    with pytest.raises(Exception) as e:
        shim.create(root=engine.root)
    assert "process.cwd" in str(e.value), e.value
    assert "\n" not in str(e.value).strip()
    shim.shutdown()
    assert not os.path.exists(f"{bundle.path}/ociruntime-shim.json")


def test_output_waits_for_a_late_reader(engine, make_bundle, tmp_path):
    """What is put in a FIFO nobody has opened for reading is dropped when its writer closes
    it: the shim copies to an output FIFO only once a reader has it, however late."""
    fifo = str(tmp_path / "stdout")
    os.mkfifo(fifo)
    shim = engine(make_bundle("echo", "late"), "late")
    create_with_stdout(shim, fifo, engine.root)
    shim.start()
    assert shim.wait(timeout=30)[0] == 0
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        got, deadline = b"", time.monotonic() + 10
        while got != b"late\n" and time.monotonic() < deadline:
            try:
                got += os.read(reader, 100)
            except BlockingIOError:
                pass
            time.sleep(0.02)
    finally:
        os.close(reader)
    shim.delete()
    assert got == b"late\n"


def test_output_is_in_the_fifo_when_wait_answers(engine, make_bundle, tmp_path):
    """ctr 1.6 closes its FIFO readers as soon as Wait tells it the task stopped (task.Delete:
    io.Close before io.Wait), so a task's output must be in its FIFO by then — also with
    twenty tasks at once keeping one shim's loop busy. containerd's runc shim doesn't promise
    this (its copy runs apart from its exit), which is why ``ctr run`` can lose output there."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"fifo{i}" for i in range(20)]
    bundles = {cid: make_bundle("echo", cid) for cid in ids}
    fifos = {cid: str(tmp_path / f"{cid}.out") for cid in ids}
    for fifo in fifos.values():
        os.mkfifo(fifo)
    readers = {cid: os.open(fifos[cid], os.O_RDONLY | os.O_NONBLOCK) for cid in ids}

    def run(cid):
        shim = engine(bundles[cid], cid)
        create_with_stdout(shim, fifos[cid], engine.root)
        shim.start()
        status = shim.wait(timeout=60)[0]
        try:
            got = os.read(readers[cid], 100)  # at once: no waiting for the output
        except BlockingIOError:
            got = b""
        shim.delete()
        return status, got

    try:
        with ThreadPoolExecutor(len(ids)) as pool:
            results = dict(zip(ids, pool.map(run, ids), strict=True))
    finally:
        for reader in readers.values():
            os.close(reader)
    wrong = {cid: got for cid, got in results.items() if got != (0, f"{cid}\n".encode())}
    assert not wrong, f"{len(wrong)} of 20 without their output when Wait answered: {wrong}"


def create_with_stdout(shim, path, root):
    """Create the task with ``path`` (a FIFO, as containerd gives) as its stdout."""
    from ociruntime_shim.protocol import message, pack_any

    shim._call("Create", "CreateTaskRequest", "containerd.task.v2.CreateTaskResponse", bundle=shim.bundle,
               stdout=path, options=pack_any(message("containerd.runc.v1.Options")(root=root)))


def test_runtime_options_shim_cgroup_and_io_owner(engine, make_bundle, tmp_path):
    """containerd's runtime options: shim_cgroup (on start's stdin) is where a new shim starts,
    as the runc shim's; io_uid/io_gid own the container's ends of its stdio pipes."""
    from ociruntime import cgroups

    name = f"/ocitest-shim-{os.urandom(3).hex()}"
    made = [mountpoint + name for mountpoint in cgroups.hierarchies().values()]
    for directory in made:
        os.mkdir(directory)
        for setting in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset starts empty: no process may join
            if os.path.exists(f"{directory}/{setting}"):
                with open(f"{directory}/../{setting}") as parent, open(f"{directory}/{setting}", "w") as f:
                    f.write(parent.read())
    try:
        bundle = make_bundle("sh", "-c", "stat -L -c %u:%g /proc/self/fd/1 /proc/self/fd/2")
        shim = engine(bundle, "opts", shim_cgroup=name)
        owner = shim_pid(shim)
        with open(f"/proc/{owner}/cgroup") as f:
            placed = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
        assert {key: placed[key] for key in cgroups.hierarchies()} == dict.fromkeys(cgroups.hierarchies(), name)
        log = tmp_path / "opts.log"
        shim.create(log=str(log), root=engine.root, io_owner=(1000, 1001))
        shim.start()
        assert shim.wait(timeout=30)[0] == 0
        shim.delete()
        assert gone(owner)
        assert log.read_text() == "1000:1001\n1000:1001\n"
    finally:
        for directory in made:
            os.rmdir(directory)  # empty: the shim left it


def test_a_bad_shim_cgroup_is_one_error_line(engine, make_bundle):
    bundle = make_bundle("true")
    for path, says in (("shims", "not an absolute, normalized cgroup path"),
                       ("/a/../b", "not an absolute, normalized cgroup path"),
                       (f"/ocitest-none-{os.urandom(3).hex()}", "no such cgroup")):
        with pytest.raises(RuntimeError) as e:
            engine(bundle, "badcg", shim_cgroup=path)
        assert f"options.shim_cgroup: {path!r}" in str(e.value) or f"options.shim_cgroup: {path}:" in str(e.value)
        assert says in str(e.value) and "\n" not in str(e.value).strip()
    assert not os.path.exists(f"{bundle.path}/address")


# --- pure logic ----------------------------------------------------------------------------------

def test_a_dead_shims_files_are_removed_a_live_ones_kept(tmp_path):
    import socket

    from ociruntime_shim import rendezvous

    path = str(tmp_path / "s")

    def leave_files(with_socket):
        if with_socket:
            dead = socket.socket(socket.AF_UNIX)
            dead.bind(path)
            dead.close()  # the file stays, nothing listens: a SIGKILLed shim's
        open(path + ".lock", "w").close()
        os.mkdir(path + ".tasks")
        open(path + ".tasks/t1", "w").close()

    for with_socket in (True, False):  # the socket gone already (an engine removed it), the rest left
        leave_files(with_socket)
        rendezvous.remove_dead(f"unix://{path}")
        assert os.listdir(tmp_path) == []
    # containerd's delete action, from the C launcher: a bundle without a cleanup record whose
    # shim's socket is gone but not its lock
    import subprocess

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "address").write_text(f"unix://{path}")
    leave_files(with_socket=False)
    proc = subprocess.run([SHIM, "-namespace", "ns", "-id", "x", "-bundle", str(bundle), "delete"],
                          capture_output=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, b""), proc.stderr
    assert os.listdir(tmp_path) == ["bundle"]
    (bundle / "address").unlink()
    bundle.rmdir()
    live = rendezvous.join_or_listen(f"unix://{path}", "t2")
    try:
        rendezvous.remove_dead(f"unix://{path}")
        assert sorted(os.listdir(tmp_path)) == ["s", "s.lock"]
    finally:
        live.close()


def test_alive_means_a_shim_answers(engine, make_bundle, tmp_path, monkeypatch):
    """A socket that accepts and never answers (a shim being killed, a child it forked that
    has not exec'd) is alive only while it keeps doing so; a shim answers at once."""
    import socket
    import threading

    from ociruntime_shim import rendezvous

    shim = engine(make_bundle("true"), "alive")
    started = time.monotonic()
    assert rendezvous._alive(shim.address.removeprefix("unix://"))
    assert time.monotonic() - started < 0.5
    shim.shutdown()
    path = str(tmp_path / "dying")
    dying = socket.socket(socket.AF_UNIX)
    dying.bind(path)
    dying.listen()
    threading.Timer(0.3, dying.close).start()
    assert not rendezvous._alive(path)
    monkeypatch.setattr(rendezvous, "ALIVE_SECONDS", 1.0)
    with socket.socket(socket.AF_UNIX) as busy:
        busy.bind(path + "2")
        busy.listen()
        assert rendezvous._alive(path + "2")  # never refused: a busy shim's socket stays


def test_start_options_read_by_hand():
    from ociruntime_shim.protocol import message, pack_any

    from ociruntime.errors import OCIError

    def packed(name, **fields):
        return pack_any(message(name)(**fields)).SerializeToString()

    assert shim_main.start_options(b"") == {}
    assert shim_main.start_options(packed("containerd.runc.v1.Options", shim_cgroup="/s", root="/r")) == \
        {"shim_cgroup": "/s"}
    assert shim_main.start_options(packed("containerd.runc.v1.Options", root="/r")) == {"shim_cgroup": ""}
    assert shim_main.start_options(packed("containerd.runc.v1.ProcessDetails", exec_id="x")) == {}
    with pytest.raises(OCIError, match="runtime options on stdin"):
        shim_main.start_options(packed("containerd.runc.v1.Options", shim_cgroup="/s")[:-1])


def test_flags_as_containerd_passes_them():
    opts = shim_main.parse(["-namespace", "ns", "-address", "/run/c.sock", "-publish-binary", "/bin/containerd",
                            "-id", "web", "-debug", "start"])
    assert opts == {"namespace": "ns", "address": "/run/c.sock", "publish_binary": "/bin/containerd", "id": "web",
                    "debug": True, "action": "start"}
    assert shim_main.parse(["--id=x", "-bundle", "/b", "delete"])["bundle"] == "/b"
    with pytest.raises(Exception, match="flag provided but not defined: -nope"):
        shim_main.parse(["-nope", "start"])


def test_grouping():
    assert shim_main.group_of({}, "default") == "namespace:default"
    assert shim_main.group_of({"io.kubernetes.cri.sandbox-id": "pod1"}, "k8s.io") == "group:pod1"
    a = shim_main.socket_address("/run/containerd/containerd.sock", "default", "namespace:default")
    assert a.startswith("unix:///run/containerd/s/") and len(a) == len("unix:///run/containerd/s/") + 64
    assert a != shim_main.socket_address("/run/containerd/containerd.sock", "other", "namespace:other")


def test_metrics_from_runtime_stats():
    stats = {"cpu": {"usage": {"total": 5000, "kernel": 2000, "user": 3000, "percpu": [2500, 2500]}},
             "memory": {"usage": {"usage": 4096, "limit": 8192, "failcnt": 1}, "raw": {"rss": 100, "pgfault": 7,
                                                                                        "total_pgfault": 9}},
             "pids": {"current": 3, "limit": 10},
             "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 512}]}}
    v1 = metrics.convert(stats, unified=False)
    assert (v1.cpu.usage.total, list(v1.cpu.usage.per_cpu), v1.memory.usage.usage, v1.memory.usage.limit) == \
        (5000, [2500, 2500], 4096, 8192)
    assert (v1.memory.rss, v1.memory.pg_fault, v1.memory.total_pg_fault, v1.pids.current) == (100, 7, 9, 3)
    assert v1.blkio.io_service_bytes_recursive[0].value == 512
    v2 = metrics.convert(stats, unified=True)
    assert (v2.cpu.usage_usec, v2.memory.usage, v2.pids.limit, v2.io.usage[0].rbytes) == (5, 4096, 10, 512)


def test_the_client_from_a_shell(engine, make_bundle, tmp_path):
    """python3 -m ociruntime_shim.client: run (detached, output to a log), state, kill, wait,
    delete — each its own process, as a script would call them."""
    import subprocess
    import sys

    bundle = make_bundle("sh", "-c", "echo started; sleep 30")
    env = {**os.environ, "PATH": f"{devbuild.OUT}:{os.environ['PATH']}",
           "PYTHONPATH": f"{devbuild.PROJECT}:{os.path.join(devbuild.OUT, 'py')}"}

    def client(*args):
        proc = subprocess.run([sys.executable, "-m", "ociruntime_shim.client", "--namespace", engine.namespace,
                               *args], capture_output=True, text=True, env=env, timeout=60)
        return proc.returncode, proc.stdout.strip(), proc.stderr

    log = tmp_path / "cli.log"
    code, pid, err = client("run", "--log", str(log), "--root", engine.root, str(bundle.path), "cli")
    assert code == 0 and pid.isdigit(), err
    engine.adopt(str(bundle.path), "cli")
    assert client("state", str(bundle.path), "cli")[:2] == (0, f"running {pid}")
    assert client("kill", str(bundle.path), "cli", "KILL")[::2] == (0, "")
    assert client("wait", str(bundle.path), "cli")[:2] == (137, "137")
    assert client("delete", str(bundle.path), "cli")[0] == 0
    assert log.read_text() == "started\n"


def test_the_runtime_runs_in_the_shim_itself(engine, make_bundle, tmp_path):
    """Every Task call is served in the shim's own process: traced from before Create to the
    shim's exit, the only program executed is the container's (no `ociruntime` per call)."""
    import subprocess

    bundle = make_bundle("sleep", "30")
    shim = engine(bundle, "inproc")
    owner = shim_pid(shim)
    trace = tmp_path / "execve.trace"
    strace = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), "-p", str(owner)])
    deadline = time.monotonic() + 10
    while _tracer(owner) == 0:
        assert time.monotonic() < deadline and strace.poll() is None, "strace did not attach to the shim"
        time.sleep(0.02)
    pid = shim.create(root=engine.root)
    assert shim.start() == pid
    assert shim.state().status == 2  # RUNNING
    assert shim.pids() == [pid]
    shim._call("Pause", "PauseRequest")
    shim._call("Resume", "ResumeRequest")
    assert shim._call("Stats", "StatsRequest", "containerd.task.v2.StatsResponse").stats.type_url
    shim.kill(signal.SIGKILL)
    assert shim.wait(timeout=30)[0] == 137
    shim.delete()
    assert gone(owner)
    strace.wait(timeout=10)
    executed = [(int(line.split()[0]), line.split('"')[1]) for line in trace.read_text().splitlines()
                if "execve(" in line and line.rstrip().endswith("= 0")]
    assert executed == [(pid, "/bin/sleep")], trace.read_text()


def _tracer(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("TracerPid:")).split()[1])
