"""Resource control on a pure cgroup v2 host (run inside the qemu v2 lane, see
tests/vm/): limits read back from the v2 files inside and outside the container,
update, events, pause through cgroup.freeze, an OOM kill, device rules through the
eBPF device program, and nothing left under /sys/fs/cgroup after delete."""

import json
import os
import subprocess
import time

import pytest
from conftest import RUNTIME, wait_status

pytestmark = [pytest.mark.root, pytest.mark.cgroup_v2]

LIMITS = {
    "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
    "cpu": {"shares": 2048, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 42},
}
V2_FILES = {  # file → the value runc's conversions give for LIMITS
    "memory.max": str(64 << 20), "memory.swap.max": str(32 << 20), "memory.low": str(32 << 20),
    "cpu.weight": "174", "cpu.max": "20000 100000", "cpuset.cpus": "0", "cpuset.mems": "0", "pids.max": "42",
}


def _cgroup_dir(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0].startswith("0::"), lines  # one unified hierarchy
    return "/sys/fs/cgroup" + lines[0][3:]


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _run_detached(runtime, bundle):
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    return cid, runtime.state(cid)["pid"]


def test_limits_read_back_outside_and_inside(runtime, make_bundle):
    script = "; ".join(f"echo {name}=$(cat /sys/fs/cgroup/{name})" for name in V2_FILES)
    bundle = make_bundle("sh", "-c", script + "; sleep 60")
    bundle.config["linux"]["resources"].update(LIMITS)
    bundle.write()
    cid, pid = _run_detached(runtime, bundle)
    directory = _cgroup_dir(pid)
    assert directory.endswith("/" + cid)
    assert {name: _read(f"{directory}/{name}") for name in V2_FILES} == V2_FILES
    runtime("delete", "--force", cid)
    assert not os.path.exists(directory)
    bundle.config["process"]["args"] = ["sh", "-c", script]
    code, out, err = runtime.run_output(bundle.write())
    assert code == 0, err
    assert dict(line.split("=", 1) for line in out.splitlines()) == V2_FILES


def test_v1_only_settings_are_refused_on_v2(runtime, make_bundle):
    for field, value in (("memory", {"swappiness": 10}), ("cpu", {"realtimeRuntime": 1000}),
                         ("network", {"classID": 1})):
        bundle = make_bundle("true")
        bundle.config["linux"]["resources"][field] = value
        bundle.write()
        proc = runtime("run", "--bundle", bundle.path, runtime.new_id(), check=False)
        assert proc.returncode != 0 and f"linux.resources.{field}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_unified_keys_are_written(runtime, make_bundle):
    bundle = make_bundle("cat", "/sys/fs/cgroup/memory.high", "/sys/fs/cgroup/pids.max")
    bundle.config["linux"]["resources"]["unified"] = {"memory.high": "50000000", "pids.max": "17"}
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    assert out.split() == ["49999872", "17"]  # memory.high rounds down to pages


def test_update_pause_events_ps(runtime, make_bundle):
    bundle = make_bundle("sleep", "60")
    bundle.config["linux"]["resources"].update(memory={"limit": 64 << 20}, cpu={"quota": 20000, "period": 100000})
    bundle.write()
    cid, pid = _run_detached(runtime, bundle)
    directory = _cgroup_dir(pid)
    runtime("update", "--memory", "128m", "--cpu-quota", "50000", "--pids-limit", "11", cid)
    assert _read(f"{directory}/memory.max") == str(128 << 20)
    assert _read(f"{directory}/cpu.max") == "50000 100000"  # the period kept from create
    assert _read(f"{directory}/pids.max") == "11"
    stats = json.loads(runtime("events", "--stats", cid).stdout)["data"]
    assert stats["memory"]["usage"]["limit"] == 128 << 20 and stats["pids"] == {"current": 1, "limit": 11}
    assert stats["cpu"]["usage"]["total"] > 0
    assert json.loads(runtime("ps", "-f", "json", cid).stdout) == [pid]
    runtime("pause", cid)
    assert runtime.state(cid)["status"] == "paused"
    assert "frozen 1" in _read(f"{directory}/cgroup.events").splitlines()
    runtime("resume", cid)
    assert runtime.state(cid)["status"] == "running"
    runtime("pause", cid)
    runtime("delete", "--force", cid)  # of a paused container
    assert not os.path.exists(directory)


def test_oom_kill_exits_137_and_is_an_event(runtime, make_bundle):
    """The OOM comes once `events` is watching: its first stats line says it took the count
    of OOM kills to compare with (before, under the emulated guest's load, the program's
    `sleep 1` could run out before `events` started, and the event was never seen)."""
    go = "/dev/shm/go"
    bundle = make_bundle("sh", "-c", f"while [ ! -e {go} ]; do sleep 0.05; done; "
                                     "exec dd if=/dev/zero of=/dev/null bs=64M count=1")
    bundle.config["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    bundle.write()
    cid, pid = _run_detached(runtime, bundle)
    events = subprocess.Popen([RUNTIME, "--root", runtime.root, "events", "--interval", "100ms", cid],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(events.stdout.readline())["type"] == "stats"  # watching
        with open(f"/proc/{pid}/root{go}", "w"):
            pass
        while (event := json.loads(events.stdout.readline()))["type"] == "stats":
            pass
        assert event == {"type": "oom", "id": cid}
        assert events.wait(timeout=30) == 0
    finally:
        events.kill()
        events.wait()
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)
    bundle.config["process"]["args"] = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]  # at once
    code, out, err = runtime.run_output(bundle.write())
    assert code == 137, (code, out, err)


def test_device_rules_through_the_ebpf_program(runtime, make_bundle):
    """A block device node made in the container (b 7:0) but not allowed: opening it is
    EPERM from the device filter; with an allow rule the open gets past the filter (to
    whatever the driver says: a loop device without a file reads nothing)."""
    script = "head -c1 /dev/blk >/dev/null 2>/tmp/err; cat /tmp/err; head -c1 /dev/zero | wc -c"
    for allow in (False, True):
        bundle = make_bundle("sh", "-c", script)
        bundle.config["root"]["readonly"] = False
        bundle.config["linux"]["devices"] = [{"path": "/dev/blk", "type": "b", "major": 7, "minor": 0}]
        if allow:
            bundle.config["linux"]["resources"]["devices"].append(
                {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"})
        bundle.write()
        code, out, err = runtime.run_output(bundle)
        assert code == 0, err
        assert ("Operation not permitted" in out) == (not allow), (allow, out, err)
        assert out.split()[-1] == "1"  # /dev/zero, allowed by default, reads


def test_nothing_left_under_sys_fs_cgroup(runtime, make_bundle):
    before = sorted(d for d, _, _ in os.walk("/sys/fs/cgroup"))
    bundle = make_bundle("sleep", "60")
    bundle.config["linux"]["cgroupsPath"] = "/ociruntime-test/deeper/c"
    bundle.config["linux"]["resources"]["pids"] = {"limit": 5}
    bundle.write()
    cid, pid = _run_detached(runtime, bundle)
    assert _cgroup_dir(pid) == "/sys/fs/cgroup/ociruntime-test/deeper/c"
    runtime("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    runtime("delete", cid)
    time.sleep(0.1)
    assert sorted(d for d, _, _ in os.walk("/sys/fs/cgroup")) == before
