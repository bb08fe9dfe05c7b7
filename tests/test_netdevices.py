"""linux.netDevices: a host device (one end of a veth pair made for the test) moved into
the container's network namespace — renamed, up, with its permanent global addresses and
without the others — and traffic through it to the pair's host end; the ways it fails."""

import socket
import subprocess
import threading
import uuid

import pytest
from conftest import run_ok

pytestmark = pytest.mark.root


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def veth():
    """(host end, the end to move, a /30 subnet's prefix "10.254.N."): the moved end is
    destroyed with the container's namespace, which takes its peer along."""
    tag = uuid.uuid4().hex[:8]
    host, moved, net = f"och{tag}", f"occ{tag}", f"10.254.{int(tag[:2], 16)}."
    ip("link", "add", host, "type", "veth", "peer", "name", moved)
    try:
        ip("addr", "add", f"{net}1/30", "dev", host)
        ip("link", "set", host, "up")
        yield host, moved, net
    finally:
        ip("link", "del", host, check=False)
        ip("link", "del", moved, check=False)


def listen(address):
    """A TCP listener on the host; returns (port, a function giving what one client sent)."""
    srv = socket.socket()
    srv.bind((address, 0))
    srv.listen(1)
    srv.settimeout(20)
    got = []

    def serve():
        try:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                got.append(conn.recv(100))
        except OSError as e:
            got.append(e)
        finally:
            srv.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def received():
        thread.join(25)
        return got[0] if got else None

    return srv.getsockname()[1], received


def test_net_device_moved_renamed_up_with_its_global_addresses(runtime, make_bundle, veth):
    host, moved, net = veth
    ip("addr", "add", f"{net}2/30", "dev", moved)
    ip("addr", "add", "192.0.2.7/24", "scope", "link", "dev", moved)  # not global: stays behind
    ip("addr", "add", "fd00:254::7/64", "dev", moved, "nodad")
    ip("link", "set", moved, "up")
    port, received = listen(f"{net}1")
    bundle = make_bundle("sh", "-c", f"ip -o link show ceth0; ip -o addr show dev ceth0; "
                                     f"echo from-the-container | nc {net}1 {port}")
    bundle.config["linux"]["netDevices"] = {moved: {"name": "ceth0"}}
    bundle.write()
    out = run_ok(runtime, bundle)
    link, *addrs = out.splitlines()
    assert "ceth0" in link and "UP" in link.split(">")[0]
    inet = sorted(line.split()[3] for line in addrs if " inet" in line and "scope global" in line)
    assert inet == [f"{net}2/30", "fd00:254::7/64"]
    assert "192.0.2.7" not in out
    assert received() == b"from-the-container\n"
    assert ip("link", "show", moved, check=False).returncode != 0  # not on the host any more


def test_net_device_name_template(runtime, make_bundle, veth):
    host, moved, _ = veth
    peer_index = ip("-o", "link", "show", host).stdout.split(":")[0]
    bundle = make_bundle("sh", "-c", "ip -o link | grep -v ': lo:' | cut -d: -f2")
    bundle.config["linux"]["netDevices"] = {moved: {"name": "cnet%d"}}
    bundle.write()
    assert run_ok(runtime, bundle).split() == [f"cnet0@if{peer_index}"]


def test_net_device_keeps_its_name(runtime, make_bundle, veth):
    _, moved, _ = veth
    bundle = make_bundle("sh", "-c", f"ip -o link show {moved} | grep -c ',UP'")
    bundle.config["linux"]["netDevices"] = {moved: {}}
    bundle.write()
    assert run_ok(runtime, bundle) == "1\n"


def create_fails(runtime, bundle, *needles):
    proc = runtime("create", "--bundle", bundle.path, runtime.new_id(), check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_net_device_missing_on_the_host(runtime, make_bundle):
    bundle = make_bundle("true")
    bundle.config["linux"]["netDevices"] = {"ocnosuch0": {}}
    bundle.write()
    create_fails(runtime, bundle, "linux.netDevices.ocnosuch0: no such network device on the host")


def test_net_device_name_taken_in_the_container(runtime, make_bundle, veth):
    """The namespace has a lo already: refused before the device is touched (the kernel
    would move it, then fail the rename), so it is still on the host, still up."""
    _, moved, _ = veth
    ip("link", "set", moved, "up")
    bundle = make_bundle("true")
    bundle.config["linux"]["netDevices"] = {moved: {"name": "lo"}}
    bundle.write()
    create_fails(runtime, bundle, f"linux.netDevices.{moved}: lo already exists in the container's network namespace")
    assert ",UP" in ip("-o", "link", "show", moved).stdout


def test_net_device_seen_by_the_hooks(runtime, make_bundle, veth, tmp_path):
    """Moved before the first hook: a createRuntime hook finds it in the init's namespace."""
    _, moved, _ = veth
    seen = tmp_path / "seen"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\npid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/')\n"
                    f"nsenter --net=/proc/$pid/ns/net ip -o link show hooked0 > {seen}\n")
    hook.chmod(0o755)
    bundle = make_bundle("true")
    bundle.config["linux"]["netDevices"] = {moved: {"name": "hooked0"}}
    bundle.config["hooks"] = {"createRuntime": [{"path": str(hook)}]}
    bundle.write()
    run_ok(runtime, bundle)
    assert "hooked0" in seen.read_text()


def test_init_error_comes_first(runtime, make_bundle, veth):
    """An init that fails first thing (an oomScoreAdj the kernel refuses) is the error, not
    the device move: the parent moves devices only once the init waits at 'H' or 'R'."""
    _, moved, _ = veth
    bundle = make_bundle("true")
    bundle.config["linux"]["netDevices"] = {moved: {}}
    bundle.config["process"]["oomScoreAdj"] = 5000
    bundle.write()
    for _ in range(10):
        create_fails(runtime, bundle, "process.oomScoreAdj")
