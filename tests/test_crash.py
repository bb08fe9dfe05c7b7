"""Fault injection: the runtime SIGKILLed at many instants of create, run, exec and
delete. Whatever the instant, `delete --force ID` then removes everything — init and
other processes, cgroups, host mounts, the state directory — and the id can be created
again; an init whose runtime died never waits for a start nobody can give.

OCIRUNTIME_CRASH_ROUNDS (default 40) sets the rounds per case. The instants sweep the
command's own duration, measured first, in even steps with a random offset inside each.
"""

import os
import random
import signal
import subprocess
import time

import pytest
from conftest import RUNTIME, processes_rooted_at

from ociruntime import cgroups

ROUNDS = int(os.environ.get("OCIRUNTIME_CRASH_ROUNDS", "40"))
TOKEN = f"OCIRUNTIME_CRASH_TEST={os.getpid()}-{random.getrandbits(32):08x}"


def _env():
    """The runtime's environment carries TOKEN: an init still in the runtime's code (not
    yet exec'd, maybe not yet pivoted) shows it in /proc/<pid>/environ."""
    name, value = TOKEN.split("=")
    return dict(os.environ, **{name: value})


def _marked():
    """Processes carrying TOKEN in their environment (the runtime's, or an exec'd one's)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if TOKEN.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _cgroup_dirs(cid):
    """The container's cgroup directories that exist (the default cgroupsPath: the id)."""
    cgroups._cache.clear()
    return [p for p in cgroups.container_paths(None, cid).values() if os.path.isdir(p)]


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def _timed(cmd):
    start = time.monotonic()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=_env(), timeout=30)
    return time.monotonic() - start


def _kill_at(cmd, delay):
    """Start ``cmd`` and SIGKILL it ``delay`` seconds later (if still running)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _offsets(duration):
    """ROUNDS instants over [0, 1.2 x duration]: one per even step, random within it."""
    step = 1.2 * duration / ROUNDS
    return [(i + random.random()) * step for i in range(ROUNDS)]


def _left(runtime, cid, bundle, grace=3.0):
    """What is left of ``cid`` after delete --force; processes get ``grace`` seconds to go
    (an init whose runtime died exits by itself at its next word with it)."""
    deadline = time.monotonic() + grace
    while True:
        found = []
        if os.path.exists(os.path.join(runtime.root, cid)):
            found.append(f"state dir {cid}")
        found += [f"cgroup {d}" for d in _cgroup_dirs(cid)]
        found += [f"mount {m}" for m in _mounts_under(bundle.path)]
        procs = set(_marked()) | set(processes_rooted_at(bundle.rootfs))
        found += [f"process {pid}" for pid in sorted(procs)]
        if not procs or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def _force_delete_leaves_nothing(runtime, cid, bundle, what):
    proc = runtime("delete", "--force", cid, check=False)
    assert proc.returncode == 0 or "does not exist" in proc.stderr, f"{what}: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    left = _left(runtime, cid, bundle)
    assert not left, f"{what}: left behind after delete --force: {left}"


def _again(runtime, cid, bundle):
    """The id can be created again, and deleted."""
    runtime("create", "--bundle", bundle.path, cid, env=_env())
    runtime("delete", "--force", cid)


def _kill_rounds(runtime, cid, bundle, cmd, duration):
    """``cmd`` (which makes ``cid``) killed at each instant: delete --force cleans up after
    it, and the id can be created again."""
    for n, delay in enumerate(_offsets(duration)):
        _kill_at(cmd, delay)
        _force_delete_leaves_nothing(runtime, cid, bundle, f"round {n}, killed after {delay * 1000:.1f} ms")
        _again(runtime, cid, bundle)


def _bundle(make_bundle, kind):
    bundle = make_bundle("sleep", "100")
    if kind == "hooks":  # the init stops at 'H' and 'S' on the way
        bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/true"}],
                                  "createContainer": [{"path": "/bin/true"}]}
    elif kind == "no-mount-namespace":  # the mounts go onto the host, under the rootfs
        linux = bundle.config["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    return bundle.write()


@pytest.mark.root
@pytest.mark.parametrize("kind", ["default", "hooks", "no-mount-namespace"])
def test_create_killed_at_any_instant(runtime, make_bundle, kind):
    bundle = _bundle(make_bundle, kind)
    cid = runtime.new_id("crash")
    duration = min(_timed([RUNTIME, "--root", runtime.root, "create", "--bundle", str(bundle.path), cid]),
                   _timed([RUNTIME, "--root", runtime.root, "delete", "--force", cid]) + 0.03)
    _kill_rounds(runtime, cid, bundle, [RUNTIME, "--root", runtime.root, "create", "--bundle", str(bundle.path), cid],
                 duration)


@pytest.mark.root
def test_run_killed_at_any_instant(runtime, make_bundle):
    bundle = _bundle(make_bundle, "default")
    cid = runtime.new_id("crash")
    cmd = [RUNTIME, "--root", runtime.root, "run", "--detach", "--bundle", str(bundle.path), cid]
    duration = _timed(cmd)
    runtime("delete", "--force", cid)
    _kill_rounds(runtime, cid, bundle, [RUNTIME, "--root", runtime.root, "run", "--bundle", str(bundle.path), cid],
                 duration)


@pytest.mark.root
def test_exec_killed_at_any_instant(runtime, make_bundle):
    """A killed exec leaves no process outside the container's cgroups: the one it was
    starting either never runs or is the container's, which delete --force kills."""
    bundle = _bundle(make_bundle, "default")
    cid = runtime.new_id("crash")
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    cmd = [RUNTIME, "--root", runtime.root, "exec", "-e", TOKEN, cid, "sleep", "100"]
    duration = _timed([*cmd[:-2], "true"])
    inside = set()
    for n, delay in enumerate(_offsets(duration)):
        _kill_at(cmd, delay)
        deadline = time.monotonic() + 3
        while True:
            with open(f"{_cgroup_dirs(cid)[0]}/cgroup.procs") as f:
                inside = {int(p) for p in f.read().split()}
            outside = [p for p in _marked() if p not in inside]
            if not outside or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert not outside, f"round {n}, killed after {delay * 1000:.1f} ms: exec left {outside} outside"
    _force_delete_leaves_nothing(runtime, cid, bundle, "after the exec rounds")


@pytest.mark.root
def test_delete_killed_at_any_instant(runtime, make_bundle):
    bundle = _bundle(make_bundle, "default")
    cid = runtime.new_id("crash")
    runtime("run", "--detach", "--bundle", bundle.path, cid)
    duration = _timed([RUNTIME, "--root", runtime.root, "delete", "--force", cid])
    for n, delay in enumerate(_offsets(duration)):
        runtime("run", "--detach", "--bundle", bundle.path, cid, env=_env())
        _kill_at([RUNTIME, "--root", runtime.root, "delete", "--force", cid], delay)
        _force_delete_leaves_nothing(runtime, cid, bundle, f"round {n}, killed after {delay * 1000:.1f} ms")
