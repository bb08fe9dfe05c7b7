"""process.terminal: run proxies its own pty; create hands the master to --console-socket."""

import array
import os
import socket
import time

import pytest

pytestmark = pytest.mark.root


def terminal_bundle(make_bundle, script, size=None):
    bundle = make_bundle("sh", "-c", script)
    bundle.config["process"]["terminal"] = True
    if size:
        bundle.config["process"]["consoleSize"] = {"height": size[0], "width": size[1]}
    return bundle.write()


def test_run_gives_the_program_a_pty(runtime, make_bundle):
    bundle = terminal_bundle(make_bundle, "tty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty", size=(33, 101))
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    lines = out.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert "stdio-is-a-tty" in lines


def test_console_size_is_applied(runtime, make_bundle):
    bundle = terminal_bundle(make_bundle, "stty size", size=(33, 101))
    code, out, err = runtime.run_output(bundle)
    assert (code, out.strip()) == (0, "33 101"), err


def recv_fd(conn):
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: fds.itemsize])
    return fds[0], msg.decode()


def console_server(tmp_path, name="console.sock"):
    """A listening unix socket for --console-socket, and its path."""
    path = str(tmp_path / name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    return server, path


def read_until(master, marker, timeout=5):
    """What the container wrote to its pty, up to ``marker`` (or its exit, or the timeout)."""
    output = b""
    deadline = time.monotonic() + timeout
    while marker not in output and time.monotonic() < deadline:
        try:
            output += os.read(master, 4096)
        except OSError:
            break
    return output


def run_with_console_socket(runtime, bundle, tmp_path, marker=b"done"):
    """create with --console-socket, start, read the pty up to ``marker``, delete; the
    slave's name the init sent and the output, \r\n made \n."""
    server, path = console_server(tmp_path)
    cid = runtime.new_id()
    try:
        runtime("create", "--bundle", bundle.path, "--console-socket", path, cid)
        conn, _ = server.accept()
        master, name = recv_fd(conn)
        conn.close()
        runtime("start", cid)
        output = read_until(master, marker)
        os.close(master)
    finally:
        server.close()
        runtime("delete", "--force", cid, check=False)
    return name, output.replace(b"\r", b"").decode()


def test_console_socket_receives_the_pty_master(runtime, make_bundle, tmp_path):
    bundle = terminal_bundle(make_bundle, "echo from-the-container; sleep 0.2")
    name, output = run_with_console_socket(runtime, bundle, tmp_path, b"from-the-container")
    assert name.startswith("/dev/pts/")
    assert "from-the-container" in output


CONSOLE_PROBE = ("tty; stat -c %t:%T /dev/console; stat -L -c %t:%T /proc/self/fd/0; "
                 "grep ' /dev/console ' /proc/self/mountinfo; touch /probe 2>/dev/null || echo read-only; echo done")


@pytest.mark.parametrize("readonly", [False, True])
def test_dev_console_is_the_pty(runtime, make_bundle, tmp_path, readonly):
    """The spec's /dev/console with process.terminal: the pty's slave bound there, the
    device the program's stdin is. Read-only root and no tmpfs on /dev: the rootfs's own
    /dev holds it, so it must be made before the root goes read-only (runc's order).
    Naive: no /dev/console at all, or made after the read-only remount and refused."""
    bundle = terminal_bundle(make_bundle, CONSOLE_PROBE)
    bundle.config["root"]["readonly"] = readonly
    if readonly:
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/dev"]
    bundle.write()
    name, output = run_with_console_socket(runtime, bundle, tmp_path)
    lines = output.splitlines()
    assert lines[-1] == "done", output
    minor = int(name.rsplit("/", 1)[1])
    assert lines[0] == name, output
    assert lines[1] == lines[2] == f"88:{minor:x}", output  # major 136: a pts, the stdin's own
    fields = lines[3].split()
    assert fields[3:5] == [f"/{minor}", "/dev/console"], lines[3]
    assert fields[fields.index("-") + 1] == "devpts", lines[3]
    assert ("read-only" in lines) == readonly, output


def test_exec_tty_mounts_nothing(runtime, make_bundle, tmp_path):
    """exec -t makes a pty for the new process only: the container's mount table (its
    /dev/console, the init's pty) stays as it was. Naive: binds the new pty on it."""
    bundle = terminal_bundle(make_bundle, "sleep 300")
    server, path = console_server(tmp_path)
    exec_server, exec_path = console_server(tmp_path, "exec.sock")
    cid = runtime.new_id()
    masters = []
    try:
        runtime("create", "--bundle", bundle.path, "--console-socket", path, cid)
        conn, _ = server.accept()
        masters.append(recv_fd(conn)[0])
        conn.close()
        runtime("start", cid)
        init = runtime.state(cid)["pid"]
        with open(f"/proc/{init}/mountinfo") as f:
            before = f.read()
        proc = runtime("exec", "--tty", "--detach", "--console-socket", exec_path, cid,
                       "sh", "-c", "tty; echo done; sleep 1", check=False)
        assert proc.returncode == 0, proc.stderr
        conn, _ = exec_server.accept()
        master, name = recv_fd(conn)
        masters.append(master)
        conn.close()
        assert read_until(master, b"done").replace(b"\r", b"").split(b"\n")[0] == name.encode()
        with open(f"/proc/{init}/mountinfo") as f:
            assert f.read() == before
    finally:
        runtime("delete", "--force", cid, check=False)
        server.close()
        exec_server.close()
        for m in masters:
            os.close(m)


def test_terminal_without_console_socket_is_refused(runtime, make_bundle):
    bundle = terminal_bundle(make_bundle, "true")
    proc = runtime("create", "--bundle", bundle.path, runtime.new_id(), check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "--console-socket" in proc.stderr


def test_console_socket_without_terminal_is_refused(runtime, make_bundle, tmp_path):
    bundle = make_bundle("true")
    proc = runtime("create", "--bundle", bundle.path, "--console-socket", tmp_path / "none.sock",
                   runtime.new_id(), check=False)
    assert proc.returncode == 1 and "process.terminal" in proc.stderr
