#!/usr/bin/env python3
"""Where the hot verbs of ociruntime spend their import time.

Usage (as root):  python3 bench/importtime.py [--repeat N] [--top K] [--runtime COMMAND]

Runs `create`, `state`, `start`, `kill`, `delete` and `run` of a busybox
container N times each through the installed command with OCIRUNTIME_IMPORTTIME=1,
for which the launcher adds `-X importtime` (e.g. `/work/main/.venv/bin/python3 -I -S
-X importtime .venv/bin/ociruntime-launcher --root R state ID`), and prints per verb the median
total import time, the top-level imports by median cumulative time, and the
modules with the largest median self time. Standard library only.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLE_MAKER = os.path.join(HERE, "..", "examples", "busybox_bundle.py")
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse(text):
    """importtime stderr -> list of (module, depth, self_us, cumulative_us)."""
    rows = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            rows.append((m.group(4), (len(m.group(3)) - 1) // 2, int(m.group(1)), int(m.group(2))))
    return rows


class Runner:
    def __init__(self, runtime, tmp):
        self.cmd = [runtime, "--root", os.path.join(tmp, "root")]
        self.tmp = tmp
        self.samples = {}  # verb -> [rows...]
        self.live = set()

    def verb(self, name, *args, check=True):
        err = os.path.join(self.tmp, "stderr")
        with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out, open(err, "wb") as ferr:
            rc = subprocess.call(self.cmd + [name, *args], stdin=null_in, stdout=null_out, stderr=ferr,
                                 env={**os.environ, "OCIRUNTIME_IMPORTTIME": "1"})
        with open(err) as f:
            text = f.read()
        if check and rc:
            raise SystemExit(f"{name} {' '.join(args)}: exit {rc}\n{text[-2000:]}")
        self.samples.setdefault(name, []).append(parse(text))

    def cleanup(self):
        for cid in self.live:
            subprocess.call(self.cmd + ["delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def report(verb, runs, top):
    totals = [sum(c for _, d, _, c in rows if d == 0) for rows in runs]
    print(
        f"\n== {verb}: total import time (sum of top-level cumulative), median of {len(runs)}: "
        f"{statistics.median(totals) / 1000:.1f} ms"
    )
    cum, self_ = {}, {}
    for rows in runs:
        for mod, depth, s, c in rows:
            if depth == 0:
                cum.setdefault(mod, []).append(c)
            self_.setdefault(mod, []).append(s)

    def med(d):
        return sorted(((statistics.median(v), k) for k, v in d.items()), reverse=True)

    print("  top-level imports by cumulative time:")
    for us, mod in med(cum)[:top]:
        print(f"    {us / 1000:7.2f} ms  {mod}")
    print("  largest self time (any depth):")
    for us, mod in med(self_)[:top]:
        print(f"    {us / 1000:7.2f} ms  {mod}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--runtime", default="ociruntime",
                   help="the installed command (native/launcher.c, which scripts/setup.sh builds)")
    args = p.parse_args()
    runtime = shutil.which(args.runtime) or args.runtime
    tmp = tempfile.mkdtemp(prefix="ociimport-")
    r = Runner(runtime, tmp)
    try:
        sleep_b, true_b = os.path.join(tmp, "sleep"), os.path.join(tmp, "true")
        subprocess.run([sys.executable, BUNDLE_MAKER, sleep_b, "sleep", "1000"], check=True)
        subprocess.run([sys.executable, BUNDLE_MAKER, true_b, "/bin/true"], check=True)
        for i in range(args.repeat + 1):  # round 0 warms caches and is dropped below
            cid = f"imp{i}"
            r.live.add(cid)
            r.verb("create", "--bundle", sleep_b, "--pid-file", os.path.join(tmp, "pid"), cid)
            r.verb("state", cid)
            r.verb("start", cid)
            r.verb("kill", cid, "KILL")
            r.verb("delete", "--force", cid)
            r.live.discard(cid)
            r.verb("run", "--bundle", true_b, f"run{i}")
        print(f"command: {r.cmd[0]} (OCIRUNTIME_IMPORTTIME=1)")
        for verb in ("state", "create", "start", "kill", "delete", "run"):
            report(verb, r.samples[verb][1:], args.top)
    finally:
        r.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
