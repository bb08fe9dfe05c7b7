"""exec: a new process in a running container — its namespaces, cgroups, seccomp filter
and the process settings of config.json, --process or the command line (runc's flags)."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest
from conftest import RUNTIME
from test_terminal import recv_fd

pytestmark = pytest.mark.root

NS = ("ipc", "mnt", "net", "pid", "uts", "cgroup")


@pytest.fixture
def container(runtime, make_bundle):
    """A running container (sleep), deleted afterwards; its bundle and id."""
    bundle = make_bundle("sleep", "300")
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    yield bundle, cid
    runtime("delete", "--force", cid, check=False)


def exec_(runtime, cid, *command, opts=()):
    """`ociruntime exec [opts] cid command...`, its CompletedProcess whatever the exit."""
    return runtime("exec", *opts, cid, *command, check=False)


def exec_in(runtime, bundle, *command):
    """exec ``command`` in a container of ``bundle`` run for it, then deleted."""
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    try:
        return exec_(runtime, cid, *command)
    finally:
        runtime("delete", "--force", cid)


def one_error_line(proc, *words):
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ociruntime: "), proc.stderr
    for w in words:
        assert w in lines[0], proc.stderr


def test_exec_runs_in_the_containers_namespaces_and_cgroups(runtime, container):
    _, cid = container
    init = runtime.state(cid)["pid"]
    script = "; ".join(f"readlink /proc/self/ns/{n}" for n in NS) + "; cat /proc/self/cgroup; ps -o pid,comm"
    proc = exec_(runtime, cid, "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:len(NS)] == [os.readlink(f"/proc/{init}/ns/{n}") for n in NS]
    with open(f"/proc/{init}/cgroup") as f:
        host_view = f.read().splitlines()
    cgroup_lines = lines[len(NS):len(NS) + len(host_view)]
    assert all(line.endswith(":/") for line in cgroup_lines), cgroup_lines  # the container's cgroupns root
    assert lines[len(NS) + len(host_view) + 1].split() == ["1", "sleep"], "the container's init is pid 1"


@pytest.mark.parametrize("script, code", [("exit 7", 7), ("kill -TERM $$", 128 + 15)])
def test_exec_exits_with_the_process_status(runtime, container, script, code):
    assert exec_(runtime, container[1], "sh", "-c", script).returncode == code


def test_exec_takes_runcs_overrides(runtime, container):
    _, cid = container
    proc = exec_(runtime, cid, "sh", "-c", "echo $FOO $BAZ; pwd; id -u; id -g; id -G; "
                                           "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
                 opts=["-e", "FOO=bar", "-e", "BAZ=2", "--cwd", "/tmp", "-u", "1000:1001", "-g", "7",
                       "--cap", "CAP_NET_RAW", "--no-new-privs"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["bar 2", "/tmp", "1000", "1001"]
    assert "7" in lines[4].split()
    caps = int(lines[5].split()[1], 16)
    assert caps & (1 << 13), "CAP_NET_RAW added (ambient, so uid 1000 keeps it)"
    assert lines[6].split() == ["NoNewPrivs:", "1"]


def test_exec_uses_the_configs_process_by_default(runtime, make_bundle):
    bundle = make_bundle("sleep", "300")
    bundle.config["process"]["env"].append("FROM_CONFIG=yes")
    bundle.config["process"]["user"] = {"uid": 123, "gid": 456}
    bundle.config["process"]["cwd"] = "/etc"
    proc = exec_in(runtime, bundle.write(), "sh", "-c", "echo $FROM_CONFIG; id -u; id -g; pwd")
    assert proc.stdout.split() == ["yes", "123", "456", "/etc"], proc.stderr


def test_exec_process_file(runtime, container, tmp_path):
    process = {"args": ["sh", "-c", "echo $ONLY; id -u"], "env": ["ONLY=this"], "cwd": "/",
               "user": {"uid": 5, "gid": 5}}
    (tmp_path / "p.json").write_text(json.dumps(process))
    proc = exec_(runtime, container[1], opts=["--process", str(tmp_path / "p.json")])
    assert (proc.returncode, proc.stdout.split()) == (0, ["this", "5"]), proc.stderr


@pytest.mark.parametrize("process, field", [({"args": [], "cwd": "/"}, "process.args"),
                                            ({"args": ["true"]}, "process.cwd"),
                                            ({"args": ["true"], "cwd": "/", "user": {"uid": -1, "gid": 0}},
                                             "process.user.uid")])
def test_exec_process_file_is_validated(runtime, container, tmp_path, process, field):
    (tmp_path / "p.json").write_text(json.dumps(process))
    one_error_line(exec_(runtime, container[1], opts=["-p", str(tmp_path / "p.json")]), field)


def exec_holding(runtime, directory, *args):
    """`ociruntime exec --preserve-fds 1 ARGS` from a caller holding ``directory`` at fd 3."""
    argv = ["sh", "-c", 'd=$1; shift; exec "$@" 3<"$d"', "sh", str(directory),
            RUNTIME, "--root", runtime.root, "exec", "--preserve-fds", "1", *args]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how", ["--cwd", "--process"])
@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/self/fd/3/..", "/proc/self/fd/3/../../.."])
def test_exec_cwd_through_a_preserved_fd_is_refused(runtime, container, tmp_path, how, cwd):
    """The caller hands exec a host directory on fd 3 and names it as the working directory
    (CVE-2024-21626's class). Naive: chdir follows /proc/self/fd/3 out to the host and the
    program starts there; runc refuses ("possible container breakout detected")."""
    _, cid = container
    host = tmp_path / "host"
    host.mkdir()
    (host / "host-marker").write_text("host\n")
    probe = ["sh", "-c", "pwd; ls -a"]
    if how == "--cwd":
        proc = exec_holding(runtime, host, "--cwd", cwd, cid, *probe)
    else:
        (tmp_path / "p.json").write_text(json.dumps({"args": probe, "cwd": cwd, "user": {"uid": 0, "gid": 0}}))
        proc = exec_holding(runtime, host, "--process", str(tmp_path / "p.json"), cid)
    assert "host-marker" not in proc.stdout and "bundle" not in proc.stdout, proc.stdout
    one_error_line(proc, "process.cwd", cwd, "possible container breakout detected")
    init = runtime.state(cid)["pid"]
    assert json.loads(runtime("ps", "--format", "json", cid).stdout) == [init], "the refused process is gone"
    assert exec_(runtime, cid, "sh", "-c", "cd /tmp && pwd").stdout == "/tmp\n", "the container still works"


def test_exec_cwd_with_a_preserved_fd_is_the_containers(runtime, container, tmp_path):
    """The positive side: the fd still reaches the program, and a cwd in the container is kept."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "host-marker").write_text("host\n")
    proc = exec_holding(runtime, host, "--cwd", "/etc", container[1], "sh", "-c", "pwd; ls /proc/self/fd/3/")
    assert (proc.returncode, proc.stdout.split()) == (0, ["/etc", "host-marker"]), proc.stderr


def test_exec_applies_the_containers_seccomp_filter(runtime, make_bundle):
    bundle = make_bundle("sleep", "300")
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    bundle.config["root"]["readonly"] = False
    proc = exec_in(runtime, bundle.write(), "sh", "-c", "mkdir /tmp/x; grep ^Seccomp: /proc/self/status")
    assert "Permission denied" in proc.stderr and proc.stdout.split() == ["Seccomp:", "2"], proc


def test_exec_detach_writes_the_pid_and_delete_kills_the_process(runtime, container, tmp_path):
    _, cid = container
    proc = exec_(runtime, cid, "sleep", "200", opts=["--detach", "--pid-file", str(tmp_path / "pid")])
    assert proc.returncode == 0, proc.stderr
    pid = int((tmp_path / "pid").read_text())
    assert open(f"/proc/{pid}/comm").read().strip() == "sleep"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{runtime.state(cid)['pid']}/ns/pid")
    runtime("delete", "--force", cid)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        assert time.monotonic() < deadline, "the exec'd process outlived delete --force"
        time.sleep(0.02)


def test_exec_passes_only_stdio(runtime, container):
    proc = exec_(runtime, container[1], "ls", "/proc/self/fd")
    assert proc.stdout.split() == ["0", "1", "2", "3"], proc  # 3: ls's own directory


def test_exec_forwards_signals(runtime, container):
    """A foreground exec passes SIGTERM on and exits as the process did."""
    _, cid = container
    proc = subprocess.Popen([RUNTIME, "--root", runtime.root, "exec", cid, "sh", "-c",
                             "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out) == (9, "got-term\n"), err


def test_exec_tty_through_a_console_socket(runtime, container, tmp_path):
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    proc = exec_(runtime, container[1], "sh", "-c", "tty; echo from-exec; sleep 1",
                 opts=["--tty", "--detach", "--console-socket", path])
    assert proc.returncode == 0, proc.stderr
    conn, _ = server.accept()
    master, name = recv_fd(conn)
    conn.close()
    server.close()
    output = b""
    deadline = time.monotonic() + 5
    while b"from-exec" not in output and time.monotonic() < deadline:
        output += os.read(master, 1024)
    os.close(master)
    assert output.replace(b"\r", b"").split(b"\n")[:2] == [name.encode(), b"from-exec"]


def test_exec_refusals(runtime, container, make_bundle):
    _, cid = container
    one_error_line(exec_(runtime, "no-such-id", "true"), "no-such-id")
    one_error_line(exec_(runtime, cid), "no command")
    one_error_line(exec_(runtime, cid, "no-such-program"), "process.args[0]", "no-such-program")
    one_error_line(exec_(runtime, cid, "true", opts=["--detach", "--tty"]), "--console-socket")
    one_error_line(exec_(runtime, cid, "true", opts=["--cgroup", "sub"]), "--cgroup")
    runtime("pause", cid)
    one_error_line(exec_(runtime, cid, "true"), "paused")
    # --ignore-paused: the process joins the frozen cgroup and goes on once resumed
    late = subprocess.Popen([RUNTIME, "--root", runtime.root, "exec", "--ignore-paused", cid, "echo", "resumed"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    assert late.poll() is None, late.communicate()
    runtime("resume", cid)
    assert late.communicate(timeout=10)[0] == "resumed\n" and late.returncode == 0
    stopped = make_bundle("true")
    sid = runtime.new_id()
    runtime("create", "--bundle", stopped.path, sid)
    runtime("start", sid)
    deadline = time.monotonic() + 5
    while runtime.state(sid)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    one_error_line(exec_(runtime, sid, "true"), "stopped")
    runtime("delete", sid)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
@pytest.mark.parametrize("affinity, allowed", [({"final": "1"}, "1"), ({"initial": "0", "final": "0-1"}, "0-1"),
                                               ({"initial": "1"}, None)])
def test_exec_cpu_affinity(runtime, container, tmp_path, affinity, allowed):
    """final holds once the process is in the container's cgroups; without it the process
    may use all of the cpuset, whatever initial was (runc's reset)."""
    process = {"args": ["grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/",
               "user": {"uid": 0, "gid": 0}, "execCPUAffinity": affinity}
    (tmp_path / "p.json").write_text(json.dumps(process))
    proc = exec_(runtime, container[1], opts=["-p", str(tmp_path / "p.json")])
    expected = allowed or open(f"/proc/{runtime.state(container[1])['pid']}/status").read().split(
        "Cpus_allowed_list:")[1].split()[0]
    assert proc.stdout.split() == ["Cpus_allowed_list:", expected], proc.stderr
