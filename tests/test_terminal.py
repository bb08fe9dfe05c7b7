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


def test_console_socket_receives_the_pty_master(runtime, make_bundle, tmp_path):
    bundle = terminal_bundle(make_bundle, "echo from-the-container; sleep 0.2")
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, "--console-socket", path, cid)
    conn, _ = server.accept()
    master, name = recv_fd(conn)
    assert name.startswith("/dev/pts/")
    runtime("start", cid)
    output = b""
    deadline = time.monotonic() + 5
    while b"from-the-container" not in output and time.monotonic() < deadline:
        try:
            output += os.read(master, 4096)
        except OSError:
            break
    assert b"from-the-container" in output
    os.close(master)
    conn.close()
    server.close()
    while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    runtime("delete", cid)


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
