"""Load: 100 containers created, started, listed and deleted by 8 concurrent workers,
while `list` and `state` are asked all along. No command fails, none hangs, every
answer is consistent, and nothing is left.

OCIRUNTIME_LOAD_CONTAINERS and OCIRUNTIME_LOAD_WORKERS change the numbers.
"""

import glob
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import leftovers

CONTAINERS = int(os.environ.get("OCIRUNTIME_LOAD_CONTAINERS", "100"))
WORKERS = int(os.environ.get("OCIRUNTIME_LOAD_WORKERS", "8"))
STATUSES = {"creating", "created", "running", "stopped", "paused"}


@pytest.mark.root
def test_many_containers_at_once(runtime, make_bundle, tmp_path):
    bundle = make_bundle("sleep", "100")
    ids = [runtime.new_id("load") for _ in range(CONTAINERS)]
    errors = []
    done = threading.Event()

    def lifecycle(cid):
        runtime("create", "--bundle", bundle.path, cid, timeout=120)
        assert runtime.state(cid)["status"] == "created"
        runtime("start", cid, timeout=120)
        assert runtime.state(cid)["status"] == "running"
        assert cid in runtime("list", "--quiet").stdout.split()
        runtime("kill", cid, "KILL")
        runtime("delete", "--force", cid, timeout=120)
        gone = runtime("state", cid, check=False)
        assert gone.returncode != 0 and "does not exist" in gone.stderr, gone

    def watch():
        """list and state while the workers go: every answer parses and agrees."""
        while not done.is_set():
            listing = runtime("list", "--format", "json", check=False)
            if listing.returncode != 0 or "Traceback" in listing.stderr:
                errors.append(f"list: {listing.returncode} {listing.stderr}")
                continue
            for entry in json.loads(listing.stdout) or []:
                if entry["status"] not in STATUSES or entry["id"] not in ids:
                    errors.append(f"list: {entry}")
                one = runtime("state", entry["id"], check=False)
                if one.returncode == 0:
                    if json.loads(one.stdout)["status"] not in STATUSES:
                        errors.append(f"state: {one.stdout}")
                elif "does not exist" not in one.stderr:  # deleted meanwhile is fine
                    errors.append(f"state {entry['id']}: {one.stderr}")

    start = time.monotonic()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            failures = [f.exception() for f in [pool.submit(lifecycle, cid) for cid in ids]]
    finally:
        done.set()
        watcher.join(timeout=120)
    wall = time.monotonic() - start
    print(f"\nload: {CONTAINERS} containers, {WORKERS} workers, {wall:.1f} s")
    failed = [f"{cid}: {e}" for cid, e in zip(ids, failures, strict=True) if e is not None]
    assert not failed, f"{len(failed)} lifecycles failed, first: {failed[0]}"
    assert not errors, errors[:5]
    assert not watcher.is_alive(), "list/state hung"
    assert runtime("list", "--quiet").stdout == ""
    assert not leftovers(runtime, tmp_path)


@pytest.mark.root
def test_containers_sharing_a_parent_cgroup_none_of_them_found(runtime, make_bundle, tmp_path):
    """containerd puts a namespace's containers in /<namespace>/<id>, and its first ones may
    be created together: two creates make the same missing parent at once, and a delete
    removes the parent it made while another create is making its own directory in it.
    Neither may fail the other (a parent left with another's container in it stays, as runc
    leaves every parent)."""
    rootfs = make_bundle("true").rootfs
    configs = []
    for round_ in range(6):
        parent = f"ocirt-shared-{os.urandom(4).hex()}"
        for _ in range(WORKERS):
            cid = runtime.new_id("shared")
            path = tmp_path / cid
            path.mkdir()
            config = json.loads((rootfs.parent / "config.json").read_text())
            config["root"]["path"] = str(rootfs)
            config["linux"]["cgroupsPath"] = f"/{parent}/{cid}"
            (path / "config.json").write_text(json.dumps(config))
            configs.append((round_, parent, cid, path))
    try:
        for round_ in range(6):
            batch = [(cid, path) for r, _, cid, path in configs if r == round_]
            with ThreadPoolExecutor(WORKERS) as pool:
                runs = list(pool.map(lambda c: runtime("run", "--bundle", c[1], c[0], check=False, timeout=120), batch))
            failed = [f"{cid}: {proc.stderr.strip()}" for (cid, _), proc in zip(batch, runs, strict=True)
                      if proc.returncode != 0]
            assert not failed, f"round {round_}: {len(failed)} of {WORKERS} failed: {failed}"
    finally:
        for parent in {p for _, p, _, _ in configs}:
            for d in glob.glob(f"/sys/fs/cgroup/*/{parent}"):
                os.rmdir(d)
