#!/usr/bin/env python3
"""What a shim costs in memory per container: 10 `sleep` containers per way, then PSS
and RSS summed over that way's shim processes, divided by the number of containers.

Usage (as root):

    python3 bench/shim_memory.py [--containers N] [--rounds R] [--shim-dir DIR] [--runtime PATH] [--reference PATH]

One private containerd (tests/containerd.py). Only one way's containers run at a time
(PSS splits a shared page among the processes mapping it: shims of another way running
beside would lower the number), their shims are found by their command line, and
Pss/Rss come from /proc/<pid>/smaps_rollup a second after the last container started.
Each round measures every way, in an order that rotates from round to round; the
numbers are medians over the rounds, ratios against containerd-shim-runc-v2 + runc.
RSS counts every page of the shim binary and its libraries in each shim; PSS shares
them out, so it is the number that adds up across containers.
"""

import statistics
import subprocess
import sys
import time

import ctrbench

SETTLE = 1.0  # seconds after the last start: a shim's start-up garbage collected or freed


def measure(containerd, way, n):
    """(PSS KiB, RSS KiB, shim processes) of ``way``'s shims with ``n`` containers running."""
    ids = [containerd.new_id("mem") for _ in range(n)]
    try:
        for cid in ids:
            containerd.ctr(*ctrbench.run_args(containerd, way, cid, "sleep", "1000", options=["--detach", "--null-io"]))
        time.sleep(SETTLE)
        shims = containerd.shim_pids()
        if not shims:
            raise SystemExit(f"shim_memory: no shim process found for {way.name}")
        pss = rss = 0
        for pid in shims:
            rollup = _smaps_rollup(pid)
            pss, rss = pss + rollup["Pss"], rss + rollup["Rss"]
        return pss, rss, len(shims)
    finally:
        for cid in ids:
            containerd.remove(cid)
        deadline = time.monotonic() + 30
        while containerd.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.05)


def _smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[name] = int(value.split()[0])
    return out


def main():
    parser = ctrbench.argument_parser(__doc__)
    parser.add_argument("--containers", type=int, default=10, help="containers per way (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per way (default 3)")
    args = ctrbench.parse(parser)
    if args.containers < 1 or args.rounds < 1:
        raise SystemExit("shim_memory: --containers and --rounds must be at least 1")
    print("\n".join(ctrbench.header(args, f"shim memory with {args.containers} `sleep` containers per way")),
          flush=True)
    try:
        with ctrbench.private_containerd(args) as containerd:
            ways = ctrbench.ways(containerd, args)
            got = {way.name: [] for way in ways}
            for i in range(args.rounds):
                for way in ctrbench.rotated(ways, i):
                    got[way.name].append(measure(containerd, way, args.containers))
    except (AssertionError, subprocess.TimeoutExpired) as e:  # a ctr that failed or hung
        print(f"shim_memory: {e}", file=sys.stderr)
        return 1
    n = args.containers
    pss = {name: statistics.median(r[0] for r in rows) / n for name, rows in got.items()}
    rss = {name: statistics.median(r[1] for r in rows) / n for name, rows in got.items()}
    print(f"\nper container, median of {args.rounds} rounds; ratio = value / value of {ctrbench.REFERENCE}")
    print(f"  {'':<24}{'shims':>6}{'PSS KiB':>10}{'ratio':>8}{'RSS KiB':>10}{'ratio':>8}")
    ref = ctrbench.REFERENCE
    for name, rows in got.items():
        shims = statistics.median(r[2] for r in rows)
        print(f"  {name:<24}{shims:>6.0f}{pss[name]:>10.0f}{pss[name] / pss[ref]:>7.2f}x"
              f"{rss[name]:>10.0f}{rss[name] / rss[ref]:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
