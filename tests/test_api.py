"""ociruntime.api, in-process: each test is a Python program of its own that seals itself
(api.ensure_sealed), drives real containers through the API — their inits and exec'd
processes are its children — and prints what it saw as JSON. The runtime fixture checks
that nothing is left behind, and the command line reads the same state directory."""

import json
import subprocess
import sys
import tempfile

import devbuild
import pytest
from conftest import launcher_command

pytestmark = pytest.mark.root

PRELUDE = """
import json, os, socket, sys, time
from ociruntime import api
api.ensure_sealed()
root = sys.argv[1]


def error(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except api.Error as e:
        return str(e)
    return None


def read_all(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def letter(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def until(check):
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)
"""


def api_program(runtime, code, *args):
    """Run ``code`` after PRELUDE (sys.argv: the runtime's root, then ``args``); the JSON it
    printed. Its output goes to a file: a container it created might hold a pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(launcher_command(PRELUDE + code, runtime.root, *map(str, args)),
                              stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=60).returncode
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert code == 0, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stderr == "", stderr
    return json.loads(stdout)


def fds(listing):
    return sorted(int(n) for n in listing.split())


def test_create_and_start_with_pipes_as_stdio(runtime, make_bundle):
    """The init's 0, 1, 2 are the caller's pipes: stdin read, stdout and stderr written,
    and it holds no other fd; it is the caller's child, reaped by the caller."""
    bundle = make_bundle("sh", "-c", "read line; echo out $line; echo err >&2; exec ls /proc/self/fd")
    cid = runtime.new_id()
    seen = api_program(runtime, """
cid, bundle = sys.argv[2:]
stdin_r, stdin_w = os.pipe()
out_r, out_w = os.pipe()
err_r, err_w = os.pipe()
pid = api.create(cid, bundle, root=root, stdio=(stdin_r, out_w, err_w))
for fd in (stdin_r, out_w, err_w):
    os.close(fd)
created = api.state(cid, root=root)
parent = int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
api.start(cid, root=root)
os.write(stdin_w, b"hello\\n")
os.close(stdin_w)
_, status = os.waitpid(pid, 0)
stopped = api.state(cid, root=root)
api.delete(cid, root=root)
print(json.dumps({"pid": pid, "created": created, "parent": parent, "me": os.getpid(), "status": status,
                  "out": read_all(out_r), "err": read_all(err_r), "stopped": stopped}))
""", cid, bundle.path)
    assert seen["created"]["status"] == "created" and seen["created"]["pid"] == seen["pid"]
    assert seen["parent"] == seen["me"]
    assert seen["status"] == 0, seen
    out, _, listing = seen["out"].partition("\n")
    assert out == "out hello"
    assert fds(listing) == [0, 1, 2, 3]  # 3: ls's own
    assert seen["err"] == "err\n"
    assert seen["stopped"]["status"] == "stopped" and seen["stopped"]["pid"] == 0


def test_only_stdio_and_preserved_fds_reach_the_container(runtime, make_bundle, tmp_path):
    """The caller's inheritable fds stay out, the preserved one (3) is passed, and the
    stdio copies the init held up high are gone — for the init and for an exec'd process."""
    (tmp_path / "three").write_text("content of three\n")
    bundle = make_bundle("sh", "-c", "cat <&3; exec ls /proc/self/fd")
    sleeper = make_bundle("sleep", "30")
    cid, other = runtime.new_id(), runtime.new_id()
    seen = api_program(runtime, """
cid, bundle, other, sleeper, three = sys.argv[2:]
fd = os.open(three, os.O_RDONLY)
if fd != 3:
    os.dup2(fd, 3)
os.set_inheritable(3, True)  # the caller's, to pass (a close-on-exec fd there would be the runtime's)
strays = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
for fd in strays:
    os.set_inheritable(fd, True)
devnull = os.open("/dev/null", os.O_RDWR)
out_r, out_w = os.pipe()
pid = api.create(cid, bundle, root=root, stdio=(devnull, out_w, out_w), preserve_fds=1)
api.start(cid, root=root)
os.close(out_w)
init_out = read_all(out_r)
os.waitpid(pid, 0)
api.delete(cid, root=root)

os.close(3)
api.create(other, sleeper, root=root, stdio=(devnull, devnull, devnull))
api.start(other, root=root)
out_r, out_w = os.pipe()
process = {"args": ["ls", "/proc/self/fd"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
pid = api.exec(other, process, root=root, stdio=(devnull, out_w, out_w))
os.close(out_w)
exec_out = read_all(out_r)
_, status = os.waitpid(pid, 0)
api.delete(other, force=True, root=root)
print(json.dumps({"init": init_out, "exec": exec_out, "status": status}))
""", cid, bundle.path, other, sleeper.path, tmp_path / "three")
    first, _, listing = seen["init"].partition("\n")
    assert first == "content of three"
    assert fds(listing) == [0, 1, 2, 3, 4]  # 3: preserved, 4: ls's own
    assert fds(seen["exec"]) == [0, 1, 2, 3], seen  # 3: ls's own
    assert seen["status"] == 0


def test_exec_returns_the_running_processs_pid(runtime, make_bundle):
    """exec returns once the process runs; it is the caller's child, in the container."""
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    seen = api_program(runtime, """
cid, bundle = sys.argv[2:]
null = os.open("/dev/null", os.O_RDWR)
init = api.create(cid, bundle, root=root, stdio=(null, null, null))
api.start(cid, root=root)
out_r, out_w = os.pipe()
process = {"args": ["sh", "-c", "hostname; echo $FOO; exit 7"], "cwd": "/tmp", "env": ["PATH=/bin", "FOO=bar"],
           "user": {"uid": 0, "gid": 0}}
pid = api.exec(cid, process, root=root, stdio=(null, out_w, out_w), pid_file=f"{root}.pid")
os.close(out_w)
parent = int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
same_ns = os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
pid_file = int(open(f"{root}.pid").read())
_, status = os.waitpid(pid, 0)
pids = api.pids(cid, root=root)
api.delete(cid, force=True, root=root)
os.unlink(f"{root}.pid")
print(json.dumps({"out": read_all(out_r), "parent": parent, "me": os.getpid(), "same_ns": same_ns,
                  "pid_file": pid_file, "pid": pid, "status": status, "pids": pids, "init": init}))
""", cid, bundle.path)
    assert seen["out"] == f"{bundle.config['hostname']}\nbar\n"  # the container's UTS namespace, the env given
    assert seen["parent"] == seen["me"] and seen["same_ns"] and seen["pid_file"] == seen["pid"]
    assert seen["status"] == 7 << 8
    assert seen["pids"] == [seen["init"]]


def test_a_zombie_init_is_stopped_and_delete_does_not_wait_for_it(runtime, make_bundle):
    """The API never reaps the caller's children: a killed init stays a zombie until the
    caller waits for it. Meanwhile the container is stopped; delete --force of a running
    one returns at once rather than waiting for the zombie to go."""
    bundle = make_bundle("sleep", "30")
    first, second, third = runtime.new_id(), runtime.new_id(), runtime.new_id()
    seen = api_program(runtime, """
first, second, third, bundle = sys.argv[2:]
null = os.open("/dev/null", os.O_RDWR)
out = {}
pid = api.create(first, bundle, root=root, stdio=(null, null, null))
api.start(first, root=root)
api.kill(first, "KILL", root=root)
until(lambda: letter(pid) == "Z")
out["state"] = api.state(first, root=root)
out["kill"] = error(api.kill, first, 9, root=root)
api.delete(first, root=root)
out["after_delete"] = letter(pid)
out["first"] = os.waitpid(pid, 0)[1]

pid = api.create(second, bundle, root=root, stdio=(null, null, null))
api.start(second, root=root)
started = time.monotonic()
api.delete(second, force=True, root=root)
out["force_seconds"] = time.monotonic() - started
out["after_force"] = letter(pid)
out["second"] = os.waitpid(pid, 0)[1]

# An exec'd process, ours and not reaped, holds the dying init in do_exit (a pid
# namespace's init waits there until all of the namespace is reaped): stopped all the same.
pid = api.create(third, bundle, root=root, stdio=(null, null, null))
api.start(third, root=root)
process = {"args": ["sleep", "30"], "cwd": "/", "user": {"uid": 0, "gid": 0}}
exec_pid = api.exec(third, process, root=root, stdio=(null, null, null))
api.kill(third, "KILL", root=root)
until(lambda: letter(exec_pid) == "Z")
out["dying"] = api.state(third, root=root)["status"]
started = time.monotonic()
api.delete(third, force=True, root=root)
out["dying_seconds"] = time.monotonic() - started
out["exec"] = os.waitpid(exec_pid, 0)[1]
out["third"] = os.waitpid(pid, 0)[1]
out["list"] = api.list(root=root)
print(json.dumps(out))
""", first, second, third, bundle.path)
    assert seen["state"]["status"] == "stopped" and seen["state"]["pid"] == 0
    assert seen["kill"] == "container not running"
    assert seen["after_delete"] == "Z" and seen["first"] == 9  # killed by SIGKILL: ours to reap
    assert seen["force_seconds"] < 2, seen
    assert seen["after_force"] == "Z" and seen["second"] == 9
    assert seen["dying"] == "stopped" and seen["dying_seconds"] < 2, seen
    assert seen["exec"] == seen["third"] == 9
    assert seen["list"] == []


def test_pause_resume_update_stats_pids_list(runtime, make_bundle):
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    seen = api_program(runtime, """
cid, bundle = sys.argv[2:]
null = os.open("/dev/null", os.O_RDWR)
pid = api.create(cid, bundle, root=root, stdio=(null, null, null))
api.start(cid, root=root)
out = {"pid": pid}
api.pause(cid, root=root)
out["paused"] = api.state(cid, root=root)["status"]
api.resume(cid, root=root)
out["resumed"] = api.state(cid, root=root)["status"]
api.update(cid, {"pids": {"limit": 42}}, root=root)
out["stats"] = api.stats(cid, root=root)
out["pids"] = api.pids(cid, root=root)
out["list"] = api.list(root=root)
out["state"] = api.state(cid, root=root)
print(json.dumps(out))
""", cid, bundle.path)
    try:
        assert (seen["paused"], seen["resumed"]) == ("paused", "running")
        assert seen["stats"]["pids"] == {"current": 1, "limit": 42}
        assert "memory" in seen["stats"] and "cpu" in seen["stats"]
        assert seen["pids"] == [seen["pid"]]
        assert seen["list"] == [seen["state"]]
        assert seen["state"] == runtime.state(cid)  # what the command prints: the same code
        assert json.loads(runtime("list", "--format", "json").stdout) == [seen["state"]]
    finally:
        runtime("delete", "--force", cid)


def test_the_console_comes_over_a_connected_socket(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "tty; echo hi")
    bundle.config["process"]["terminal"] = True
    bundle.write()
    cid = runtime.new_id()
    seen = api_program(runtime, """
cid, bundle = sys.argv[2:]
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
pid = api.create(cid, bundle, root=root, console=theirs)
theirs.close()
master, name = api.receive_pty_master(ours)
api.start(cid, root=root)
os.waitpid(pid, 0)
output = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:  # EIO: the slave side is gone
        break
    if not chunk:
        break
    output += chunk
api.delete(cid, root=root)
print(json.dumps({"name": name, "output": output.decode()}))
""", cid, bundle.path)
    assert seen["name"].startswith("/dev/pts/")
    assert seen["output"].replace("\r", "") == f"{seen['name']}\nhi\n"


def test_errors_are_the_commands_lines(runtime, make_bundle):
    """Each failure is an api.Error whose text is the line the command prints, and a
    failed create or exec leaves nothing behind."""
    sleeper = make_bundle("sleep", "30")
    broken = make_bundle("true")
    broken.config["linux"]["namespaces"][0]["type"] = "nonsense"
    broken.write()
    cid = runtime.new_id()
    seen = api_program(runtime, """
cid, sleeper, broken = sys.argv[2:]
null = os.open("/dev/null", os.O_RDWR)
out = {}
out["start"] = error(api.start, "nothing-here", root=root)
out["create"] = error(api.create, "broken", broken, root=root, stdio=(null, null, null))
out["stdio"] = error(api.create, "broken", sleeper, root=root, stdio=(null, 999, null))
out["stdio_shape"] = error(api.create, "broken", sleeper, root=root, stdio=(null, null))
api.create(cid, sleeper, root=root, stdio=(null, null, null))
out["signal"] = error(api.kill, cid, "NOTASIGNAL", root=root)
out["signal_number"] = error(api.kill, cid, 999, root=root)
out["delete"] = error(api.delete, cid, root=root, force=False) or "deleted"  # created: no --force needed
api.create(cid, sleeper, root=root, stdio=(null, null, null))
api.start(cid, root=root)
out["missing_program"] = error(api.exec, cid, {"args": ["no-such-program"], "cwd": "/", "env": ["PATH=/bin"],
                                               "user": {"uid": 0, "gid": 0}}, root=root, stdio=(null, null, null))
out["bad_process"] = error(api.exec, cid, {"args": "sh", "cwd": "/", "user": {"uid": 0, "gid": 0}}, root=root)
out["nul"] = error(api.exec, cid, {"args": ["sh"], "cwd": "/", "env": ["A=\\0"], "user": {"uid": 0, "gid": 0}},
                   root=root)
out["update"] = error(api.update, cid, {"memory": {"limit": "1g"}}, root=root)
out["pids"] = api.pids(cid, root=root)
api.delete(cid, force=True, root=root)
print(json.dumps(out))
""", cid, sleeper.path, broken.path)
    cli = runtime("start", "nothing-here", check=False).stderr
    assert cli == f"ociruntime: {seen['start']}\n"
    cli = runtime("create", "--bundle", broken.path, runtime.new_id(), check=False).stderr
    assert cli == f"ociruntime: {seen['create']}\n" and "linux.namespaces[0].type" in cli
    assert seen["stdio"] == "stdio[1]: fd 999: Bad file descriptor"
    assert seen["stdio_shape"].startswith("stdio: ")
    assert seen["signal"] == "invalid signal 'NOTASIGNAL': not a signal number or name"
    assert seen["signal_number"].startswith("invalid signal '999': signals are 0 to")
    assert seen["delete"] == "deleted"
    assert seen["missing_program"] == "process.args[0]: no-such-program: executable file not found in $PATH"
    assert seen["bad_process"].startswith("process.args: "), seen["bad_process"]
    assert seen["nul"] == "exec: process.env[0]: contains a NUL byte"
    assert seen["update"] == 'update: memory.limit: must be an integer (got "1g")'
    assert len(seen["pids"]) == 1, "a failed exec left a process in the container"


def test_importing_the_api_is_lean():
    """No click, no jsonschema, no os: only the API module and the error types."""
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c",
                           f"import sys\nsys.path.insert(0, {devbuild.PROJECT!r})\nimport ociruntime.api"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert {m for m in modules if m.startswith("ociruntime")} == {"ociruntime", "ociruntime.api", "ociruntime.errors"}
    assert not modules & {"click", "jsonschema", "os", "json", "subprocess"}, modules
