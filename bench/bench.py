#!/usr/bin/env python3
"""Side-by-side start-up benchmark: ociruntime against runc.

Usage (as root):

    python3 bench/bench.py [--runs N] [--runtime PATH] [--reference PATH] [--json FILE]

The machine is small and noisy, so absolute times mean little. Every scenario
therefore runs both runtimes in ONE process, alternating them sample by sample
(A B, B A, A B, ... so that drift, page-cache and frequency effects and the
"who goes first" bias hit both equally), and the number to quote is the ratio
of the medians, ociruntime / runc.

Scenarios (see bench/README.md for more):

  a. run      `run` of a bundle whose process is /bin/true, one invocation.
  b. lifecycle  create, start, wait until the init has exited, delete: four
              invocations, total wall time (plus each step on its own).
  c. state    `state` of a running `sleep 1000` container, per invocation; also
              `python -I -S -c pass` with the interpreter of ociruntime's
              launcher, the floor any Python verb pays.
  d. memory   VmRSS, RssAnon, RssFile (/proc/<pid>/status) and Pss, Pss_Anon
              (/proc/<pid>/smaps_rollup) of the container's init while it
              waits in `created`.
  e. update   `update --memory` of a running `sleep` container, per invocation.
  f. events   `events --stats` of a running `sleep` container, per invocation.
  g. checkpoint  `checkpoint` of a running `sleep` container into a fresh image
              directory, then `restore --detach` of those images as a new
              container (CRIU: the qemu lane's guest). Its stdio are pipes the
              bench holds, as CRIU needs (a pipe is restored onto the new one).

Processes are started with os.posix_spawn and reaped with os.wait4, so the
timing wraps only the process itself and the CPU time (user+sys, including
reaped descendants) comes for free. Container stdio is /dev/null (stdin,
stdout) and a file (stderr), never a pipe: a container inherits its create's
stdio and would keep a pipe open.

Each runtime gets its own --root under a temporary directory, every container
id is unique, and every container is `delete --force`d on the way out, also on
Ctrl-C or failure. Standard library only.
"""

import argparse
import itertools
import json
import math
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# scripts/setup.sh installs a C launcher that runs this script; its shebang names the interpreter.
INSTALLED_SCRIPT = os.path.join(HERE, "..", ".venv", "bin", "ociruntime-launcher")
BUNDLE_MAKER = os.path.join(HERE, "..", "examples", "busybox_bundle.py")
DEVNULL = "/dev/null"


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- processes


class Runtime:
    """One runtime binary with its own state root; knows which containers it left alive."""

    def __init__(self, name, path, root, errfile, flags=()):
        self.name = name
        self.path = path
        self.root = root
        self.flags = list(flags)  # global flags for every invocation (--systemd-cgroup)
        self.errfile = errfile  # stderr of every invocation, for error messages
        self.live = set()  # container ids that may exist and need a delete --force

    def argv(self, *args):
        return [self.path, "--root", self.root, *self.flags, *args]

    def call(self, *args, check=True, stdout=DEVNULL):
        """Run one command; return (wall seconds, cpu seconds)."""
        return spawn(self.argv(*args), stdout=stdout, stderr=self.errfile, check=check)

    def create(self, cid, bundle, pid_file):
        self.live.add(cid)
        return self.call("create", "--bundle", bundle, "--pid-file", pid_file, cid)

    def delete(self, cid, force=False):
        t = self.call("delete", *(["--force"] if force else []), cid)
        self.live.discard(cid)
        return t

    def cleanup(self):
        """delete --force everything this runtime may still hold; return ids that failed."""
        ids = set(self.live)
        try:
            ids.update(n for n in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, n)))
        except FileNotFoundError:
            pass
        failed = []
        for cid in sorted(ids):
            try:
                spawn(self.argv("delete", "--force", cid), stderr=self.errfile, check=False)
            except BaseException:  # a second Ctrl-C: keep going, the rest still matter
                pass
            if os.path.exists(os.path.join(self.root, cid)):
                failed.append(cid)
            self.live.discard(cid)
        return failed


def spawn(argv, stdout=DEVNULL, stderr=DEVNULL, check=True):
    """Run argv with stdin /dev/null and the given stdout/stderr files, wait for it.

    Returns (wall seconds, cpu seconds user+sys of the child and the descendants
    it reaped). The wall time covers posix_spawn to wait4, nothing else.
    (ru_maxrss is not returned: after posix_spawn's vfork it reports this
    process's own peak, not the child's.)
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, DEVNULL, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    ]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    try:
        _, status, ru = os.wait4(pid, 0)
    except BaseException:
        # Ctrl-C reached the child too (same process group): reap it before leaving.
        os.wait4(pid, 0)
        raise
    wall = time.perf_counter() - t0
    if check and os.waitstatus_to_exitcode(status) != 0:
        detail = ""
        if stderr != DEVNULL:
            with open(stderr, errors="replace") as f:
                detail = f.read().strip()[-2000:]
        raise BenchError(f"{' '.join(argv)}: exit {os.waitstatus_to_exitcode(status)}: {detail}")
    return wall, ru.ru_utime + ru.ru_stime


def spawn_with_fds(argv, fds):
    """Like spawn, with stdin from fds[0] and stdout and stderr to fds[1] (pipes: g's
    containers, which inherit them; fds[2] is that pipe's read end, for an error's text).
    Returns wall seconds."""
    actions = [(os.POSIX_SPAWN_DUP2, fds[0], 0), (os.POSIX_SPAWN_DUP2, fds[1], 1), (os.POSIX_SPAWN_DUP2, fds[1], 2)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, _ = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        os.set_blocking(fds[2], False)
        try:
            detail = os.read(fds[2], 65536).decode(errors="replace").strip()[-2000:]
        except BlockingIOError:
            detail = ""
        raise BenchError(f"{' '.join(argv)}: exit {os.waitstatus_to_exitcode(status)}: {detail}")
    return wall


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError as e:
        return f"({e})"
    return (out.splitlines() or ["?"])[0]


def launcher_interpreter(path):
    """The interpreter named by the shebang of ``path`` (None for a binary)."""
    try:
        with open(path, "rb") as f:
            line = f.readline(4096)
    except OSError:
        return None
    if not line.startswith(b"#!"):
        return None
    words = line[2:].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env":  # #!/usr/bin/env python3 -IS
        words = [w for w in words[1:] if not w.startswith("-") or w in ("-I", "-S", "-IS")]
        return shutil.which(words[0]) if words else None
    return words[0] if words else None


def read_pid(pid_file, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(pid_file) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{pid_file}: no pid written")
        time.sleep(0.001)


def proc_status(path, *keys):
    """{key: KiB} from a /proc/<pid>/status-like file (``Key:  123 kB`` lines)."""
    out = {}
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in keys:
                out[name] = int(value.split()[0])
    return out


def wait_exit(pidfd, timeout=10.0):
    """Block until the process behind ``pidfd`` has exited (pidfds poll readable then)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise BenchError("container did not exit in time")


# --------------------------------------------------------------------------- statistics


def p90(values):
    s = sorted(values)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def summary(values):
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": p90(values),
        "min": min(values),
        "max": max(values),
    }


ORDERS3 = list(itertools.permutations(("A", "B", "py")))


def alternate(i, a, b):
    """The pair in the order used for iteration i: A B, B A, A B, ..."""
    return (a, b) if i % 2 == 0 else (b, a)


# --------------------------------------------------------------------------- scenarios


class Bench:
    def __init__(self, args, runtime, reference, tmp):
        self.args = args
        self.tmp = tmp
        self.results = {}
        self.counter = 0
        flags = ["--systemd-cgroup"] if args.systemd_cgroup else []
        self.a = Runtime(
            os.path.basename(args.runtime), runtime, os.path.join(tmp, "root-a"), os.path.join(tmp, "stderr-a"), flags
        )
        self.b = Runtime(
            os.path.basename(args.reference), reference, os.path.join(tmp, "root-b"), os.path.join(tmp, "stderr-b"),
            flags
        )
        self.interp = args.floor_python or launcher_interpreter(runtime) or launcher_interpreter(INSTALLED_SCRIPT)
        self.true_bundle = os.path.join(tmp, "bundle-true")
        self.sleep_bundle = os.path.join(tmp, "bundle-sleep")

    def new_id(self, rt, what):
        self.counter += 1
        return f"bench-{what}-{'a' if rt is self.a else 'b'}-{os.getpid()}-{self.counter}"

    def pid_file(self, rt):
        return os.path.join(self.tmp, f"pid-{'a' if rt is self.a else 'b'}")

    # -- setup

    def make_bundles(self):
        for bundle, args in ((self.true_bundle, ["/bin/true"]), (self.sleep_bundle, ["sleep", "1000"])):
            subprocess.run([sys.executable, BUNDLE_MAKER, bundle, *args], check=True, stdout=subprocess.DEVNULL)

    def header(self):
        a, b = self.a, self.b
        lines = [
            f"machine: nproc={os.cpu_count()} kernel={platform.release()} ({platform.machine()})",
            f"runtime:   {a.path}: {first_line([a.path, '--version'])}",
            f"reference: {b.path}: {first_line([b.path, '--version'])}",
            f"python floor: {self.interp or '(runtime is not a script)'}"
            + (
                f": {first_line([self.interp, '-I', '-S', '-c', 'import sys; print(sys.version.split()[0])'])}"
                if self.interp
                else ""
            ),
            f"runs: {self.args.runs} per scenario, alternating A/B (ABBA...), ratio = median(A)/median(B)",
            f"global flags: {' '.join(self.a.flags) or '(none)'}; scenarios: {self.args.only}",
        ]
        self.results["machine"] = {"nproc": os.cpu_count(), "kernel": platform.release()}
        self.results["versions"] = {"runtime": lines[1], "reference": lines[2], "python_floor": lines[3]}
        return lines

    # -- (a) run /bin/true

    def run_once(self, rt):
        cid = self.new_id(rt, "run")
        rt.live.add(cid)
        wall, cpu = rt.call("run", "--bundle", self.true_bundle, cid)
        rt.live.discard(cid)
        return wall, cpu

    # -- (b) create, start, wait, delete

    def lifecycle_once(self, rt):
        cid = self.new_id(rt, "life")
        pid_file = self.pid_file(rt)
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        t0 = time.perf_counter()
        rt.create(cid, self.true_bundle, pid_file)
        # The init waits in "created", so it is surely alive: pin it with a pidfd now.
        pidfd = os.pidfd_open(read_pid(pid_file))
        t1 = time.perf_counter()
        try:
            rt.call("start", cid)
            t2 = time.perf_counter()
            wait_exit(pidfd)
            t3 = time.perf_counter()
        finally:
            os.close(pidfd)
        rt.delete(cid)
        t4 = time.perf_counter()
        return {"total": t4 - t0, "create": t1 - t0, "start": t2 - t1, "wait": t3 - t2, "delete": t4 - t3}

    # -- (c) state

    def start_sleeper(self, rt):
        cid = self.new_id(rt, "state")
        rt.create(cid, self.sleep_bundle, self.pid_file(rt))
        rt.call("start", cid)
        out = os.path.join(self.tmp, "state-out")
        rt.call("state", cid, stdout=out)
        with open(out) as f:
            status = json.load(f).get("status")
        if status != "running":
            raise BenchError(f"{rt.name} state {cid}: status {status!r}, expected running")
        return cid

    # -- (d) memory

    def memory_once(self, rt):
        cid = self.new_id(rt, "mem")
        pid_file = self.pid_file(rt)
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        rt.create(cid, self.true_bundle, pid_file)
        try:
            pid = read_pid(pid_file)
            mem = proc_status(f"/proc/{pid}/status", "VmRSS", "RssAnon", "RssFile")
            mem.update(proc_status(f"/proc/{pid}/smaps_rollup", "Pss", "Pss_Anon"))
        finally:
            rt.delete(cid, force=True)
        return mem

    # -- driver

    def timed_pairs(self, name, fn, runs, warmup=1):
        """Call fn(rt) for both runtimes, alternating; return {rt: [result...]}."""
        for i in range(warmup):
            for rt in alternate(i, self.a, self.b):
                fn(rt)
        got = {self.a: [], self.b: []}
        for i in range(runs):
            for rt in alternate(i, self.a, self.b):
                got[rt].append(fn(rt))
        return got

    def run_all(self):
        n = self.args.runs
        out = []
        if "a" in self.args.only:
            out += self.run_true(n)
        if "b" in self.args.only:
            out += self.lifecycle(n)
        if "c" in self.args.only:
            out += self.state(n)
        if "d" in self.args.only:
            out += self.memory(n)
        if "e" in self.args.only or "f" in self.args.only:
            out += self.resource_verbs(n)
        if "g" in self.args.only:
            out += self.checkpoint_restore(n)
        return out

    def run_true(self, n):
        got = self.timed_pairs("run", self.run_once, n)
        return self.report(
            "a. run /bin/true (one `run` invocation)",
            {
                "wall": ([w for w, _ in got[self.a]], [w for w, _ in got[self.b]]),
                "cpu user+sys": ([c for _, c in got[self.a]], [c for _, c in got[self.b]]),
            },
            key="run",
        )

    def lifecycle(self, n):
        got = self.timed_pairs("lifecycle", self.lifecycle_once, n)
        rows = {}
        for part in ("total", "create", "start", "wait", "delete"):
            rows[part] = ([r[part] for r in got[self.a]], [r[part] for r in got[self.b]])
        return self.report("b. create -> start -> wait (pidfd) -> delete, separate invocations", rows, key="lifecycle")

    def state(self, n):
        sleepers = {}
        try:
            for rt in (self.a, self.b):
                sleepers[rt] = self.start_sleeper(rt)
            state_n = n * 3  # cheap, and the smallest numbers need the most samples
            walls = {self.a: [], self.b: [], "py": []}
            cpus = {self.a: [], self.b: [], "py": []}
            floor = [self.interp, "-I", "-S", "-c", "pass"] if self.interp else None
            for i in range(state_n + 1):  # the first round is a warm-up
                # With the floor: cycle through all six orders of the three, so none
                # of them always goes first or always follows the same one.
                order = ORDERS3[i % 6] if floor else alternate(i, self.a, self.b)
                for who in order:
                    who = {"A": self.a, "B": self.b}.get(who, who)
                    if who == "py":
                        w, c = spawn(floor)
                    else:
                        w, c = who.call("state", sleepers[who])
                    if i:
                        walls[who].append(w)
                        cpus[who].append(c)
        finally:
            for rt, cid in sleepers.items():
                rt.delete(cid, force=True)
        rows = {"wall": (walls[self.a], walls[self.b]), "cpu user+sys": (cpus[self.a], cpus[self.b])}
        lines = self.report(f"c. state of a running container (per invocation, {state_n} samples)", rows, key="state")
        if floor:
            fw, fc = summary(walls["py"]), summary(cpus["py"])
            sa = summary(walls[self.a])
            wa = max(14, len(self.a.name) + 6)
            lines.append(
                f"  {'python -I -S -c pass':<22}{fmt_ms(fw['median']):>{wa}}{fmt_ms(fw['p90']):>10}"
                f"   (wall; cpu {fmt_ms(fc['median'])})"
            )
            lines.append(
                f"  {self.a.name} state / python floor (medians): {sa['median'] / fw['median']:.2f}x"
                f"   (state minus floor: {fmt_ms(sa['median'] - fw['median'])})"
            )
            self.results["state"]["python_floor"] = {
                "wall": fw,
                "cpu": fc,
                "samples": walls["py"],
                "ratio_state_to_floor": sa["median"] / fw["median"],
            }
        return lines

    def memory(self, n):
        mem_n = max(5, n // 3)
        got = self.timed_pairs("memory", self.memory_once, mem_n, warmup=0)
        rows = {}
        for k in ("VmRSS", "RssAnon", "RssFile", "Pss", "Pss_Anon"):
            rows[k] = ([r.get(k, 0) for r in got[self.a]], [r.get(k, 0) for r in got[self.b]])
        return self.report(
            f"d. memory of the init waiting in `created` (KiB, {mem_n} samples)", rows, key="memory", unit="KiB"
        )

    # -- (e) update, (f) events --stats

    def resource_verbs(self, n):
        """Per invocation: `update --memory` (alternating two limits, so every call
        changes the live limit) and `events --stats` of a running container."""
        sleepers = {}
        calls = itertools.count()
        try:
            for rt in (self.a, self.b):
                sleepers[rt] = self.start_sleeper(rt)

            def update(rt):
                return rt.call("update", "--memory", ("64m", "96m")[next(calls) // 2 % 2], sleepers[rt])[0]

            got = self.timed_pairs("update", update, n)
            lines = self.report("e. update --memory of a running container (per invocation)",
                                {"wall": (got[self.a], got[self.b])}, key="update")
            got = self.timed_pairs("events", lambda rt: rt.call("events", "--stats", sleepers[rt])[0], n)
            lines += self.report("f. events --stats of a running container (per invocation)",
                                 {"wall": (got[self.a], got[self.b])}, key="events_stats")
        finally:
            for rt, cid in sleepers.items():
                rt.delete(cid, force=True)
        return lines

    # -- (g) checkpoint, restore

    def checkpoint_restore_once(self, rt):
        """create+start a sleeper on pipes; time `checkpoint`, then `restore --detach` of it."""
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            cid = self.new_id(rt, "ck")
            rt.live.add(cid)
            fds = (stdin_r, out_w, out_r)
            spawn_with_fds(rt.argv("create", "--bundle", self.sleep_bundle, cid), fds)
            rt.call("start", cid)
            images = os.path.join(self.tmp, f"images-{cid}")
            dump = spawn_with_fds(rt.argv("checkpoint", "--image-path", images, cid), fds)
            rt.live.discard(cid)
            cid = self.new_id(rt, "rst")
            rt.live.add(cid)
            restore = spawn_with_fds(rt.argv("restore", "--detach", "--bundle", self.sleep_bundle, "--image-path",
                                             images, cid), fds)
            rt.delete(cid, force=True)
            shutil.rmtree(images, ignore_errors=True)
        finally:
            for fd in (stdin_r, stdin_w, out_r, out_w):
                os.close(fd)
        return {"checkpoint": dump, "restore": restore}

    def checkpoint_restore(self, n):
        got = self.timed_pairs("checkpoint", self.checkpoint_restore_once, n)
        rows = {part: ([r[part] for r in got[self.a]], [r[part] for r in got[self.b]])
                for part in ("checkpoint", "restore")}
        return self.report("g. checkpoint of a running `sleep`, restore --detach of its images", rows,
                           key="checkpoint")

    def report(self, title, rows, key, unit="ms"):
        """Format rows {label: (samples A, samples B)}; store them in self.results[key]."""
        a, b = self.a.name, self.b.name
        wa, wb = max(14, len(a) + 6), max(14, len(b) + 6)
        lines = ["", title, f"  {'':<22}{a + ' med':>{wa}}{'p90':>10}{b + ' med':>{wb}}{'p90':>10}{'ratio':>9}"]
        store = {}
        for label, (xa, xb) in rows.items():
            sa, sb = summary(xa), summary(xb)
            ratio = sa["median"] / sb["median"] if sb["median"] else float("nan")
            f = fmt_ms if unit == "ms" else (lambda v: f"{v:.0f}")
            lines.append(
                f"  {label:<22}{f(sa['median']):>{wa}}{f(sa['p90']):>10}"
                f"{f(sb['median']):>{wb}}{f(sb['p90']):>10}{ratio:>8.2f}x"
            )
            store[label] = {
                "runtime": sa,
                "reference": sb,
                "ratio_of_medians": ratio,
                "samples_runtime": xa,
                "samples_reference": xb,
            }
        self.results[key] = store
        return lines


def fmt_ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def resolve(path):
    found = path if os.sep in path else shutil.which(path)
    if not found or not os.access(found, os.X_OK):
        raise SystemExit(f"bench: {path}: not found or not executable")
    return os.path.abspath(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="samples per runtime and scenario (default 30)")
    parser.add_argument("--runtime", default="ociruntime", help="runtime under test (default: ociruntime on PATH)")
    parser.add_argument("--reference", default="runc", help="reference runtime (default: runc on PATH)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample and summary as JSON")
    parser.add_argument("--floor-python", metavar="PATH", help="interpreter for the python floor in (c) (default: "
                        "the runtime's shebang, else that of .venv/bin/ociruntime-launcher)")
    parser.add_argument("--systemd-cgroup", action="store_true",
                        help="pass --systemd-cgroup to both runtimes (a host running systemd)")
    parser.add_argument("--only", default="abcdef", help="the scenarios to run, e.g. 'ab' (default: abcdef; "
                        "g, checkpoint/restore, needs a kernel CRIU works on: the qemu lane's guest)")
    args = parser.parse_args()
    if not set(args.only) <= set("abcdefg") or not args.only:
        raise SystemExit("bench: --only takes letters of abcdefg")
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (containers need it)")
    if args.runs < 1:
        raise SystemExit("bench: --runs must be at least 1")
    if "/usr/sbin" not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

    runtime, reference = resolve(args.runtime), resolve(args.reference)
    tmp = tempfile.mkdtemp(prefix="ocibench-")
    bench = Bench(args, runtime, reference, tmp)
    failed = []
    started = time.monotonic()
    try:
        print("\n".join(bench.header()), flush=True)
        bench.make_bundles()
        for line in bench.run_all():
            print(line)
        print(f"\n(total bench time {time.monotonic() - started:.0f} s)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(bench.results, f, indent=1)
            print(f"samples written to {args.json}")
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        for rt in (bench.a, bench.b):
            failed += [f"{rt.name}:{cid}" for cid in rt.cleanup()]
        if failed:
            print(f"bench: could not delete {', '.join(failed)}; left {tmp} in place", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
