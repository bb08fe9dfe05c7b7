"""update, events and ps against real running containers: update changes the live
limits (read back from cgroupfs), events prints runc-shaped stats and OOM events,
ps lists the container's processes."""

import json
import subprocess
import time

import pytest
from conftest import RUNTIME, create_and_start, wait_status

from ociruntime.commands.events import parse_duration
from ociruntime.commands.update import from_flags, merge, ram_in_bytes
from ociruntime.errors import OCIError

pytestmark = pytest.mark.root


@pytest.mark.parametrize("text, value", [("512", 512), ("64m", 64 << 20), ("64M", 64 << 20), ("1.5GiB", 3 << 29),
                                         ("2kb", 2048), ("-1", -1), ("1 g", 1 << 30)])
def test_ram_in_bytes(text, value):
    assert ram_in_bytes(text) == value


@pytest.mark.parametrize("text", ["", "m", "12x", "-5", "1..2m"])
def test_ram_in_bytes_refuses(text):
    with pytest.raises(ValueError):
        ram_in_bytes(text)


@pytest.mark.parametrize("text, seconds", [("5s", 5), ("100ms", 0.1), ("1m30s", 90), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "0s", "s", "5x", ""])
def test_parse_duration_refuses(text):
    with pytest.raises(OCIError):
        parse_duration(text)


def test_update_flags_and_merge():
    new = from_flags({"memory": "128m", "cpu_quota": "50000", "pids_limit": 20, "blkio_weight": None})
    assert new == {"memory": {"limit": 128 << 20}, "cpu": {"quota": 50000}, "pids": {"limit": 20}}
    old = {"memory": {"limit": 1, "swap": 5}, "cpu": {"period": 100000},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1},
                                                 {"major": 8, "minor": 1, "rate": 2}]}}
    merged = merge(old, {**new, "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 1, "rate": 9}]}})
    assert merged["memory"] == {"limit": 128 << 20, "swap": 5}
    assert merged["cpu"] == {"period": 100000, "quota": 50000}
    assert merged["blockIO"]["throttleReadBpsDevice"] == [{"major": 8, "minor": 0, "rate": 1},
                                                          {"major": 8, "minor": 1, "rate": 9}]
    with pytest.raises(OCIError, match="--memory"):
        from_flags({"memory": "lots"})


def _cgroup_dir(pid, controller):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return f"/sys/fs/cgroup/{controller}{path}"
    raise AssertionError(f"{pid} has no {controller} cgroup")


def _read(path):
    with open(path) as f:
        return f.read().strip()


@pytest.fixture
def sleeper(runtime, make_bundle):
    bundle = make_bundle("sleep", "60")
    bundle.config["linux"]["resources"].update(memory={"limit": 64 << 20}, pids={"limit": 50},
                                               cpu={"period": 100000, "quota": 20000})
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    yield cid, runtime.state(cid)["pid"]
    runtime("delete", "--force", cid)


@pytest.mark.cgroup_v1_hybrid
def test_update_flags_change_live_limits(runtime, sleeper):
    cid, pid = sleeper
    runtime("update", "--memory", "128m", "--pids-limit", "20", "--cpu-quota", "50000", "--cpu-share", "256", cid)
    assert _read(f"{_cgroup_dir(pid, 'memory')}/memory.limit_in_bytes") == str(128 << 20)
    assert _read(f"{_cgroup_dir(pid, 'pids')}/pids.max") == "20"
    assert _read(f"{_cgroup_dir(pid, 'cpu')}/cpu.cfs_quota_us") == "50000"
    assert _read(f"{_cgroup_dir(pid, 'cpu')}/cpu.cfs_period_us") == "100000"  # kept from create
    assert _read(f"{_cgroup_dir(pid, 'cpu')}/cpu.shares") == "256"


@pytest.mark.cgroup_v1_hybrid
def test_update_resources_file_and_stdin(runtime, sleeper, tmp_path):
    cid, pid = sleeper
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"memory": {"limit": 96 << 20, "swap": 128 << 20}, "pids": {"limit": 7}}))
    runtime("update", "--resources", res, cid)
    memory = _cgroup_dir(pid, "memory")
    assert _read(f"{memory}/memory.limit_in_bytes") == str(96 << 20)
    assert _read(f"{memory}/memory.memsw.limit_in_bytes") == str(128 << 20)
    # raising both past the old memory+swap needs the swap written first: the retry handles it
    runtime("update", "-r", "-", cid, input=json.dumps({"memory": {"limit": 256 << 20, "swap": 512 << 20}}))
    assert _read(f"{memory}/memory.limit_in_bytes") == str(256 << 20)
    assert _read(f"{memory}/memory.memsw.limit_in_bytes") == str(512 << 20)
    assert _read(f"{_cgroup_dir(pid, 'pids')}/pids.max") == "7"


@pytest.mark.cgroup_v1_hybrid
def test_update_errors_are_clear(runtime, sleeper):
    cid, pid = sleeper
    proc = runtime("update", "--memory", "4k", cid, check=False)  # below what the container uses
    assert proc.returncode != 0 and "linux.resources.memory.limit: write" in proc.stderr, proc.stderr
    proc = runtime("update", "-r", "-", cid, check=False,
                   input=json.dumps({"memory": {"limit": 4096, "checkBeforeUpdate": True}}))
    assert proc.returncode != 0 and "below the container's current usage" in proc.stderr, proc.stderr
    proc = runtime("update", "--resources", "/nonexistent.json", cid, check=False)
    assert proc.returncode != 0 and "/nonexistent.json: No such file" in proc.stderr
    proc = runtime("update", "--memory", "1g", "nosuchcontainer", check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert _read(f"{_cgroup_dir(pid, 'memory')}/memory.limit_in_bytes") == str(64 << 20)  # unchanged


@pytest.mark.cgroup_v1_hybrid
def test_events_stats_is_shaped_like_runcs(runtime, sleeper):
    cid, pid = sleeper
    event = json.loads(runtime("events", "--stats", cid).stdout)
    assert event["type"] == "stats" and event["id"] == cid
    data = event["data"]
    assert set(data) >= {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"}
    assert data["memory"]["usage"]["limit"] == 64 << 20 and data["memory"]["usage"]["usage"] > 0
    assert data["pids"] == {"current": 1, "limit": 50}
    assert data["cpu"]["usage"]["total"] > 0
    runc_help = subprocess.run(["runc", "events", "--help"], capture_output=True, text=True)
    assert "--stats" in runc_help.stdout  # the reference has the same verb and flag


@pytest.mark.cgroup_v1_hybrid
def test_events_streams_stats_and_reports_an_oom(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 60")
    bundle.config["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}
    bundle.write()
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    events = subprocess.Popen([RUNTIME, "--root", runtime.root, "events", "--interval", "300ms", cid],
                              stdout=subprocess.PIPE, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ("oom" in seen and seen.count("stats") >= 2):
            seen.append(json.loads(events.stdout.readline())["type"])
        assert "oom" in seen and seen.count("stats") >= 2, seen
        runtime("kill", cid, "KILL")
        assert events.wait(timeout=5) == 0  # the stream ends with the container
    finally:
        events.kill()
        events.wait()
        runtime("delete", "--force", cid)


def test_events_of_a_stopped_container_is_an_error(runtime, make_bundle):
    cid = create_and_start(runtime, make_bundle("true"))
    wait_status(runtime, cid, "stopped")
    proc = runtime("events", "--stats", cid, check=False)
    assert proc.returncode != 0 and f"container with id {cid} is not running" in proc.stderr
    runtime("delete", cid)


def _wait_pids(runtime, cid, count, timeout=5):
    """The container's pids (ps --format json) once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while len(pids := json.loads(runtime("ps", "--format", "json", cid).stdout) or []) != count:
        assert time.monotonic() < deadline, pids
        time.sleep(0.02)
    return pids


def test_ps_json_and_table(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "sleep 60 & exec sleep 61")
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    try:
        init = runtime.state(cid)["pid"]
        pids = _wait_pids(runtime, cid, 2)
        assert init in pids
        table = runtime("ps", cid).stdout.splitlines()
        assert table[0].split()[:3] == ["UID", "PID", "PPID"]
        assert sorted(int(row.split()[1]) for row in table[1:]) == sorted(pids)
        custom = runtime("ps", cid, "-o", "pid,args").stdout.splitlines()  # ps options after the id
        assert custom[0].split() == ["PID", "COMMAND"]
        assert {row.split(None, 1)[1] for row in custom[1:]} == {"sleep 60", "sleep 61"}
        proc = runtime("ps", "--format", "yaml", cid, check=False)
        assert proc.returncode != 0 and "invalid format" in proc.stderr
    finally:
        runtime("delete", "--force", cid)
    assert runtime("ps", "-f", "json", cid, check=False).returncode != 0  # gone


def test_kill_all_reaches_every_process_in_the_cgroup(runtime, make_bundle):
    """USR1 to all: the shell traps it and lives (its trap ends one wait, the next reaps
    the sleeps), its two sleeps (default action) die."""
    bundle = make_bundle("sh", "-c", "trap 'true' USR1; sleep 100 & sleep 100 & wait; wait; exec sleep 1000")
    cid = runtime.new_id()
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    try:
        init = runtime.state(cid)["pid"]
        _wait_pids(runtime, cid, 3)
        runtime("kill", "--all", cid, "USR1")
        assert _wait_pids(runtime, cid, 1) == [init]
        assert runtime.state(cid)["status"] == "running"
    finally:
        runtime("delete", "--force", cid)


def test_a_reader_that_goes_away_ends_events_quietly(runtime, make_bundle):
    """`events | head -c 10`: no error line once the reader is gone, as runc's (SIGPIPE)."""
    cid = create_and_start(runtime, make_bundle("sleep", "100"))
    proc = subprocess.run(f"{RUNTIME} --root {runtime.root} events --interval 100ms {cid} | head -c 10; "
                          "echo \" ${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", capture_output=True,
                          text=True, timeout=30)
    assert proc.stdout.startswith('{"type": "') and proc.stdout.split()[-1] == "141", proc
    assert proc.stderr == "", proc.stderr
    runtime("delete", "--force", cid)
