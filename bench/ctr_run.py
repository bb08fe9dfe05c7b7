#!/usr/bin/env python3
"""`ctr run --rm IMG ID /bin/true` through containerd, side by side: our shim,
containerd-shim-runc-v2 with runc, and containerd-shim-runc-v2 with ociruntime.

Usage (as root):

    python3 bench/ctr_run.py [--runs N] [--shim-dir DIR] [--runtime PATH] [--reference PATH] [--json FILE]
                             [--beside-running]

One private containerd (tests/containerd.py: its own root, state, sockets and namespace
in a temporary directory) runs every sample. The ways take turns within each round, in
an order that rotates (and reverses) from round to round, after one unmeasured warm-up
round; the numbers to quote are the ratios of the medians to containerd-shim-runc-v2 +
runc's. Wall time is ctr's, from spawn to exit: containerd creating the container record,
the snapshot, the shim (started per container), the runtime's create, start, the exit,
delete, and the shim going away.
"""

import json
import os
import sys

import ctrbench

from bench import BenchError, fmt_ms, spawn, summary


def main():
    parser = ctrbench.argument_parser(__doc__)
    parser.add_argument("--runs", type=int, default=30, help="samples per way (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample")
    parser.add_argument("--beside-running", action="store_true",
                        help="keep one container of each way running meanwhile (a namespace that is in use: our "
                             "shim, one per namespace, is then already up; containerd-shim-runc-v2 is per container)")
    args = ctrbench.parse(parser)
    if args.runs < 1:
        raise SystemExit("ctr_run: --runs must be at least 1")
    print("\n".join(ctrbench.header(args, "ctr run --rm IMG ID /bin/true")), flush=True)
    try:
        with ctrbench.private_containerd(args) as containerd:
            ways = ctrbench.ways(containerd, args)
            errors = os.path.join(containerd.base, "ctr.stderr")
            samples = {way.name: [] for way in ways}
            running = []
            if args.beside_running:
                for way in ways:
                    running.append(containerd.new_id("resident"))
                    containerd.ctr(*ctrbench.run_args(containerd, way, running[-1], "sleep", "3600",
                                                      options=["--detach", "--null-io"]))
            for i in range(args.runs + 1):  # round 0 warms up
                for way in ctrbench.rotated(ways, i):
                    run = ctrbench.run_args(containerd, way, containerd.new_id("bench"), "/bin/true", options=["--rm"])
                    wall, _ = spawn(containerd.ctr_argv("--timeout", "60s", *run), stderr=errors)
                    if i:
                        samples[way.name].append(wall)
            for cid in running:
                containerd.ctr("task", "kill", "--signal", "SIGKILL", cid)
                containerd.ctr("task", "delete", "--force", cid)
                containerd.ctr("containers", "delete", cid)
    except BenchError as e:
        print(f"ctr_run: {e}", file=sys.stderr)
        return 1
    reference = summary(samples[ctrbench.REFERENCE])["median"]
    beside = ", one container of each way running beside" if args.beside_running else ""
    print(f"\n{args.runs} rounds{beside}; ratio = median / median of {ctrbench.REFERENCE}")
    print(f"  {'':<24}{'median':>10}{'p90':>10}{'ratio':>9}")
    for name, values in samples.items():
        s = summary(values)
        print(f"  {name:<24}{fmt_ms(s['median']):>10}{fmt_ms(s['p90']):>10}{s['median'] / reference:>8.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({name: {"summary": summary(v), "samples": v} for name, v in samples.items()}, f, indent=1)
        print(f"samples written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
