"""The lifecycle of runtime.md with real containers: create, start, state, kill, delete, run."""

import os
import time

import pytest
from conftest import create_and_start, wait_status

pytestmark = pytest.mark.root


def test_run_prints_and_exits_with_status(runtime, make_bundle):
    bundle = make_bundle("sh", "-c", "echo hello; exit 3")
    code, out, err = runtime.run_output(bundle)
    assert (code, out) == (3, "hello\n"), err


def test_run_killed_by_signal_gives_128_plus_signal(runtime, make_bundle):
    """pid 1 can't be killed from inside its namespace: kill it from outside while `run` waits."""
    import subprocess

    from conftest import RUNTIME

    bundle = make_bundle("sleep", "100")
    cid = runtime.new_id()
    proc = subprocess.Popen([RUNTIME, "--root", runtime.root, "run", "--bundle", bundle.path, cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while runtime("state", cid, check=False).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    wait_status(runtime, cid, "running")
    runtime("kill", cid, "KILL")
    assert proc.wait(timeout=10) == 137, proc.stderr.read()


def test_create_start_state_delete(runtime, make_bundle, tmp_path):
    bundle = make_bundle("sh", "-c", "echo started > /tmp/marker; sleep 30")
    bundle.config["root"]["readonly"] = False
    bundle.write()
    cid = runtime.new_id()
    pid_file = tmp_path / "pid"
    runtime("create", "--bundle", bundle.path, "--pid-file", pid_file, cid)
    state = runtime.state(cid)
    assert state["status"] == "created"
    assert state["id"] == cid and state["bundle"] == str(bundle.path)
    assert int(pid_file.read_text()) == state["pid"]
    assert not (bundle.rootfs / "tmp/marker").exists(), "the user program ran before start"
    runtime("start", cid)
    wait_status(runtime, cid, "running")
    deadline = time.monotonic() + 5
    while not (bundle.rootfs / "tmp/marker").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (bundle.rootfs / "tmp/marker").read_text() == "started\n"
    proc = runtime("delete", cid, check=False)
    assert proc.returncode != 0 and "not stopped" in proc.stderr
    assert runtime.state(cid)["status"] == "running", "a refused delete must leave the container alone"
    runtime("kill", cid, "KILL")
    wait_status(runtime, cid, "stopped")
    assert runtime.state(cid)["pid"] == 0
    runtime("delete", cid)
    proc = runtime("state", cid, check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_start_twice_fails(runtime, make_bundle):
    bundle = make_bundle("sleep", "30")
    cid = create_and_start(runtime, bundle)
    proc = runtime("start", cid, check=False)
    assert proc.returncode != 0 and "not created" in proc.stderr
    runtime("delete", "--force", cid)


# Each named shell traps TERM: it writes /got-<name> (and a child exits), then carries on.
TRAPS = """
for n in {children}; do
    sh -c 'trap "echo TERM > /got-$0; exit" TERM; touch /ready-$0; while :; do sleep 0.05; done' $n &
done
trap 'echo TERM > /got-init' TERM
touch /ready-init
while :; do sleep 0.05; done
"""


def _trapping(runtime, make_bundle, children=()):
    """A running container whose init (and ``children``) report the TERMs they get."""
    bundle = make_bundle("sh", "-c", TRAPS.format(children=" ".join(children)))
    bundle.config["root"]["readonly"] = False
    bundle.write()
    cid = create_and_start(runtime, bundle)
    deadline = time.monotonic() + 10
    while not all((bundle.rootfs / f"ready-{n}").exists() for n in ("init", *children)):
        assert time.monotonic() < deadline, "the container's shells never set their traps"
        time.sleep(0.02)
    return bundle, cid


def _got_term(bundle, names, timeout=5):
    """Which of ``names`` reported a TERM (waiting for all of them up to ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all((bundle.rootfs / f"got-{n}").exists() for n in names):
        time.sleep(0.02)
    return sorted(n for n in names if (bundle.rootfs / f"got-{n}").exists())


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15", "sigterm"])
def test_kill_signal_spellings(runtime, make_bundle, sig):
    bundle, cid = _trapping(runtime, make_bundle)
    proc = runtime("kill", cid, sig, check=False)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert _got_term(bundle, ["init"]) == ["init"], "the init never got a TERM"
    runtime("delete", "--force", cid)


def test_kill_without_a_signal_sends_term(runtime, make_bundle):
    bundle, cid = _trapping(runtime, make_bundle)
    runtime("kill", cid)
    assert _got_term(bundle, ["init"]) == ["init"], "the init never got a TERM"
    assert runtime.state(cid)["status"] == "running", "TERM, trapped, must not have ended it"
    runtime("delete", "--force", cid)


def test_kill_all_reaches_every_process(runtime, make_bundle):
    bundle, cid = _trapping(runtime, make_bundle, children=("a", "b"))
    runtime("kill", "--all", cid, "TERM")
    assert _got_term(bundle, ["init", "a", "b"]) == ["a", "b", "init"]
    runtime("delete", "--force", cid)


def test_delete_force_kills_running_container(runtime, make_bundle):
    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    pid = runtime.state(cid)["pid"]
    runtime("delete", "--force", cid)
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_delete_force_of_created_container(runtime, make_bundle):
    bundle = make_bundle("true")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    runtime("delete", "--force", cid)


def test_an_init_with_nothing_to_wait_for_never_speaks_before_its_pid(runtime, make_bundle):
    """Stage 1 sends the init's pid, the init its 'R', on one socket. An init with no mounts
    and nothing to wait for used to say 'R' first: create failed ("init exited during
    setup") and left that init alive. On one CPU that happened to about 1 create in 3."""
    bundle = make_bundle("true")
    bundle.config["mounts"] = []
    bundle.config["linux"]["maskedPaths"] = bundle.config["linux"]["readonlyPaths"] = []
    bundle.write()
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        for _ in range(30):
            cid = runtime.new_id()
            runtime("create", "--bundle", bundle.path, cid)
            runtime("delete", "--force", cid)
    finally:
        os.sched_setaffinity(0, cpus)


def test_list_shows_containers(runtime, make_bundle):
    import json

    bundle = make_bundle("sleep", "100")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    table = runtime("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == [cid, str(runtime.state(cid)["pid"]), "created"]
    listed = json.loads(runtime("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == [cid] and listed[0]["status"] == "created"
    assert runtime("list", "-q").stdout == cid + "\n"
    runtime("delete", "--force", cid)


def test_run_with_bundle_path_makes_up_an_id(runtime, make_bundle):
    bundle = make_bundle("echo", "ok")
    proc = runtime("run", str(bundle.path) + "/")
    assert proc.stdout == "ok\n"


def test_duplicate_id_refused_and_first_container_untouched(runtime, make_bundle):
    bundle = make_bundle("sleep", "100")
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    proc = runtime("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert runtime.state(cid)["status"] == "created"
    runtime("delete", "--force", cid)


def test_concurrent_deletes_are_serialized(runtime, make_bundle):
    """The state lock: of two deletes racing on one container, one deletes it and the
    other finds it gone (which --force takes as done, as runc does); neither fails half-way."""
    import subprocess

    from conftest import RUNTIME

    bundle = make_bundle("sleep", "100")
    cid = create_and_start(runtime, bundle)
    procs = [subprocess.Popen([RUNTIME, "--root", runtime.root, "delete", "--force", cid],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=20), p.stderr.read()) for p in procs]
    assert results == [(0, ""), (0, "")]
    assert runtime("state", cid, check=False).returncode != 0


def test_features_lists_what_works(runtime):
    import json

    features = json.loads(runtime("features").stdout)
    assert features["ociVersionMin"] == "1.0.0"
    assert "time" in features["linux"]["namespaces"]
    assert features["linux"]["seccomp"]["enabled"] is True
    assert "rro" not in features["mountOptions"] and "rbind" in features["mountOptions"]


def test_features_memory_policy_and_the_refused(runtime):
    """memoryPolicy lists every mode and flag of the spec (features-linux.md: the runtime
    MUST recognize them); intelRdt, refused by create, says so; netDevices are moved."""
    import json
    import os

    features = json.loads(runtime("features").stdout)["linux"]
    with open(os.path.join(os.path.dirname(__file__), "..", "specs", "config-linux.schema.json")) as f:
        schema = json.load(f)["definitions"]["MemoryPolicy"]["properties"]
    assert features["memoryPolicy"] == {"modes": sorted(schema["mode"]["enum"]),
                                        "flags": sorted(schema["flags"]["items"]["enum"])}
    assert features["netDevices"] == {"enabled": True}
    assert features["intelRdt"] == {"enabled": False, "schemata": False, "monitoring": False}
