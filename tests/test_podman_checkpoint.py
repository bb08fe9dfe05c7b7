"""podman container checkpoint and restore with ociruntime as podman's runtime, and with
runc beside it (the reference), as root: tests/test_podman.py's private podman (its
``podman_setup`` and ``podman`` fixtures: own storage and configuration, the cgroupfs
manager, no network, the busybox image imported, a leak check after every scenario and
at the module's end). CRIU works only where `criu check` passes: marked ``criu``, these
run in the qemu lane's plain guest (tests/vm/README.md), which carries podman and conmon.

What podman 4.3.1 / conmon 2.1.6 run for them (ID, U = <root>/overlay-containers/ID/userdata):
- ``checkpoint --help`` (probing for support) before each checkpoint and restore
- ``checkpoint --image-path U/checkpoint --work-path U ID`` (podman; with --export too:
  podman packs U/checkpoint into the tarball itself), then ``delete --force ID``
- ``restore --bundle U --pid-file <runroot>/overlay-containers/ID/userdata/pidfile --detach
  --image-path U/checkpoint --work-path U ID`` (conmon, which keeps the new init's stdio;
  restore --import: the new container's ID and paths)
"""

import os
import time

import pytest
import test_podman
from conftest import pure_cgroup_v2
from test_podman import IMAGE, _wait_for

pytestmark = [pytest.mark.root, pytest.mark.criu]

# test_podman.py's fixtures: the module's private podman, and it with each runtime in turn.
podman_setup, podman = test_podman.podman_setup, test_podman.podman

# One line a count, ten a second: where a restored container goes on is in its log.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"


def counts(podman, cid):
    return [int(line) for line in podman("logs", cid).stdout.split()]


def start_counting(podman):
    cid = podman.start(IMAGE, "sh", "-c", COUNTER)
    _wait_for(lambda: len(counts(podman, cid)) >= 5, "the counter counting")
    return cid


def assert_goes_on(before, after):
    """``after`` (a restored container's log) goes on where ``before`` (the log at the
    checkpoint) stopped: one by one from the next number, not from 1. It holds ``before``
    first when the log is the same file (restore); a container imported under another
    name has only what it wrote since."""
    new = after[len(before):] if after[:len(before)] == before else after
    assert before and new, (before, after)
    assert new == list(range(before[-1] + 1, before[-1] + 1 + len(new))), (before, after)


def checkpointed(podman, cid, *args):
    """podman container checkpoint ``args`` ``cid``: the container is then exited, its
    count standing still; the count so far."""
    podman("container", "checkpoint", *args, cid, timeout=120)
    assert podman.inspect(cid, "{{.State.Status}}") == "exited"
    assert podman.inspect(cid, "{{.State.Checkpointed}}") == "true"
    before = counts(podman, cid)
    time.sleep(0.5)
    assert counts(podman, cid) == before, "the counter went on after the checkpoint"
    return before


def test_checkpoint_and_restore(podman):
    """checkpoint stops the container (its process is gone: state exited); restore brings it
    back, running, and it counts on from where it stopped."""
    cid = start_counting(podman)
    try:
        pid = podman.pid(cid)
        before = checkpointed(podman, cid)
        assert not os.path.exists(f"/proc/{pid}/cmdline") or podman.inspect(cid, "{{.State.Pid}}") == "0"
        podman("container", "restore", cid, timeout=120)
        assert podman.inspect(cid, "{{.State.Status}}") == "running"
        _wait_for(lambda: len(counts(podman, cid)) >= len(before) + 5, "the restored counter counting")
        assert_goes_on(before, counts(podman, cid))
    finally:
        podman.remove(cid)


def test_export_and_import_under_a_new_name(podman, tmp_path):
    """checkpoint --export writes a tarball; restore --import makes a new container of it,
    under another name, which counts on from where the first one stopped, in a cgroup of
    its own. Not with runc 1.1.5 on cgroup v2 (the lane's guest): it gives criu no cgroup
    root there, and criu puts the process back in the checkpointed container's cgroup,
    which it makes again and nothing removes (ociruntime's restore sends the new one:
    commands/restore.py)."""
    archive = tmp_path / "checkpoint.tar.gz"
    name = f"imported-{os.urandom(4).hex()}"
    cid = start_counting(podman)
    stray = None
    try:
        before = checkpointed(podman, cid, "--export", archive)
        assert archive.stat().st_size > 0
        new = podman("container", "restore", "--import", archive, "--name", name, timeout=120).stdout.strip()
        assert new != cid and podman.inspect(name, "{{.ID}}") == new
        assert podman.inspect(new, "{{.State.Status}}") == "running"
        _wait_for(lambda: len(counts(podman, new)) >= 5, "the imported counter counting")
        assert_goes_on(before, counts(podman, new))
        with open(f"/proc/{podman.pid(new)}/cgroup") as f:
            cgroup = f.read().strip().split(":", 2)[2]
        if podman.name == "runc" and pure_cgroup_v2():
            assert cgroup == f"{podman.setup.cgroup_parent}/libpod-{cid}", cgroup
            stray = f"/sys/fs/cgroup{cgroup}"
        else:
            assert cgroup.endswith(f"/libpod-{new}"), cgroup
    finally:
        podman.remove(cid)
        podman("rm", "--force", "--time", "0", name, check=False)
        if stray:
            _wait_for(lambda: _rmdir(stray), f"{stray} empty")


def _rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
