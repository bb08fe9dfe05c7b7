#!/usr/bin/env python3
"""The smallest memory limit under which `run` of `echo` succeeds 5 times out of 5,
for ociruntime and runc side by side (issue 3's "must show").

Usage (as root): python3 bench/memlimit.py [--runtime PATH] [--reference PATH] [--tries N]

The bundle is runc's default spec with a busybox rootfs (examples/busybox_bundle.py),
process `echo hi`, and linux.resources.memory {limit: L, swap: L}. Whatever a runtime
does inside the container's cgroup before exec is charged to the container, so a
smaller number means less of the runtime's own memory is charged to it. Limits are
tried from 8 MiB down in 64 KiB steps below 1 MiB and 256 KiB steps above; the answer
is the smallest limit at which every try printed "hi" and exited 0 (the next step
down is printed too, to show where it starts failing).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLE_MAKER = os.path.join(HERE, "..", "examples", "busybox_bundle.py")
KIB = 1024


def limits():
    """8 MiB down to 64 KiB: 256 KiB steps, then 64 KiB steps below 1 MiB."""
    return list(range(8192 * KIB, 1024 * KIB, -256 * KIB)) + list(range(1024 * KIB, 0, -64 * KIB))


def successes(runtime, root, bundle, limit, tries):
    config_path = os.path.join(bundle, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}
    with open(config_path, "w") as f:
        json.dump(config, f)
    ok = 0
    for i in range(tries):
        cid = f"memlimit-{os.getpid()}-{limit}-{i}"
        try:
            proc = subprocess.run([runtime, "--root", root, "run", "--bundle", bundle, cid], capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=30)
            ok += proc.returncode == 0 and proc.stdout.strip() == "hi"
        except subprocess.TimeoutExpired:
            pass
        finally:
            subprocess.run([runtime, "--root", root, "delete", "--force", cid], capture_output=True)
    return ok


def smallest(runtime, root, bundle, tries):
    """(smallest limit with tries/tries, [(limit, successes)...] as tried)."""
    tried, best = [], None
    for limit in limits():
        ok = successes(runtime, root, bundle, limit, tries)
        tried.append((limit, ok))
        if ok < tries:
            break
        best = limit
    return best, tried


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", default="ociruntime")
    parser.add_argument("--reference", default="runc")
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memlimit-") as tmp:
        rows = []
        for name in (args.runtime, args.reference):
            path = shutil.which(name) or name
            bundle = os.path.join(tmp, f"bundle-{os.path.basename(path)}")
            subprocess.run([sys.executable, BUNDLE_MAKER, bundle, "echo", "hi"], check=True,
                           stdout=subprocess.DEVNULL)
            best, tried = smallest(path, os.path.join(tmp, f"root-{os.path.basename(path)}"), bundle, args.tries)
            rows.append((path, best, tried[-1]))
        for path, best, (last, ok) in rows:
            shown = f"{best / KIB / 1024:.3f} MiB ({best // KIB} KiB)" if best else "none of the limits tried"
            print(f"{path}: smallest limit with {args.tries}/{args.tries}: {shown}; "
                  f"at {last // KIB} KiB: {ok}/{args.tries}")


if __name__ == "__main__":
    main()
