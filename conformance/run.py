#!/usr/bin/env python3
"""Run the OCI runtime-tools validation suite against a runtime and tally it.

The validation programs (``validation/<name>/<name>.t`` in a runtime-tools
checkout) are TAP producers.  Each one is run from the checkout root (they
unpack ``rootfs-<arch>.tar.gz`` and copy ``runtimetest`` from there) with
``RUNTIME=<runtime>`` in its environment, under a per-program timeout.  The
TAP on stdout is parsed into ok / not ok / skip counts, and programs that
crashed, timed out, or printed no plan are flagged.

Each program gets its own fresh TMPDIR (the programs make their bundles
there); mounts a program leaves behind there are reported, then unmounted,
and the directory removed (``--keep-tmp`` keeps them).

This script measures; it does not judge: it exits 0 whatever the results
unless ``--fail-on-not-ok`` is given, and 2 if it could not run at all.

Environment:
  RUNTIME_TOOLS_DIR  path of a runtime-tools checkout whose ``runtimetest``
                     and validation executables are already built (required)
  RUNTIME            runtime binary to test (default: ``ociruntime`` on
                     PATH); ``--runtime`` overrides it

Must be run as root.  Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TIMEOUT = 120.0
DEFAULT_RUNTIME = "ociruntime"

# TAP test lines start in column 0; indented lines belong to YAML blocks or
# subtests and are deliberately ignored.
TEST_LINE = re.compile(r"^(not ok|ok)\b(.*)$")
PLAN_LINE = re.compile(r"^1\.\.(\d+)")
DIRECTIVE = re.compile(r"#\s*(SKIP|TODO)\b", re.IGNORECASE)

# Statuses of a program whose TAP stream is incomplete or missing.
ABNORMAL = ("timeout", "crashed", "bail-out", "no-plan", "plan-mismatch")
# Statuses that --fail-on-not-ok treats as failures besides any "not ok".
FAILING = ABNORMAL + ("diagnostic",)


class RunnerError(Exception):
    """A problem with the runner's own setup (exit status 2)."""


# --------------------------------------------------------------------------
# TAP parsing


def parse_tap(text):
    """Parse TAP output; return counts, plans and the failing lines.

    ``ok`` excludes ``ok ... # SKIP`` lines, which are counted as ``skip``.
    ``not ok ... # TODO`` lines are counted as ``not ok`` and also in
    ``todo``.  Each failure is the ``not ok`` line plus the indented lines
    (YAML diagnostics) and ``#`` comment lines that follow it.  Some
    programs print several TAP documents (each starting with ``TAP
    version``); their plans are summed.
    ``diagnostics`` collects YAML blocks of a program that printed no test
    line at all: several programs (the hook tests, for instance) report a
    failure only that way, followed by the plan ``1..0``.
    """
    result = {"ok": 0, "not_ok": 0, "skip": 0, "todo": 0, "plans": [],
              "bail_out": None, "failures": [], "diagnostics": []}
    block = None        # lines of the failure or diagnostic being collected
    for line in text.splitlines():
        if block is not None:
            if line.startswith((" ", "\t", "#")) or line == "":
                block.append(line)
                continue
            block = None

        match = TEST_LINE.match(line)
        if match:
            passed = match.group(1) == "ok"
            directive = DIRECTIVE.search(match.group(2))
            kind = directive.group(1).upper() if directive else None
            if passed and kind == "SKIP":
                result["skip"] += 1
            elif passed:
                result["ok"] += 1
            else:
                result["not_ok"] += 1
                if kind == "TODO":
                    result["todo"] += 1
                block = [line]
                result["failures"].append(block)
            continue

        plan = PLAN_LINE.match(line)
        if plan:
            result["plans"].append(int(plan.group(1)))
        elif line.startswith("Bail out!"):
            result["bail_out"] = line
        elif line.strip() == "---" and line.startswith(" "):
            block = [line]
            result["diagnostics"].append(block)

    if result["ok"] + result["not_ok"] + result["skip"]:
        result["diagnostics"] = []
    for key in ("failures", "diagnostics"):
        result[key] = ["\n".join(lines).rstrip() for lines in result[key]]
    return result


def failure_title(failure):
    """The description of a failure's ``not ok`` line, without the number."""
    first = failure.splitlines()[0]
    return re.sub(r"^not ok\s*\d*\s*-?\s*", "", first)


# --------------------------------------------------------------------------
# Running the programs


def find_checkout():
    """Return the runtime-tools checkout named by RUNTIME_TOOLS_DIR, checked."""
    value = os.environ.get("RUNTIME_TOOLS_DIR")
    if not value:
        raise RunnerError(
            "RUNTIME_TOOLS_DIR is not set: point it at a runtime-tools checkout "
            "in which runtimetest and the validation executables are built")
    root = Path(value).resolve()
    if not (root / "validation").is_dir():
        raise RunnerError(f"RUNTIME_TOOLS_DIR={value}: no validation/ directory; "
                          "is this a runtime-tools checkout?")
    if not os.access(root / "runtimetest", os.X_OK):
        raise RunnerError(f"RUNTIME_TOOLS_DIR={value}: runtimetest is not built "
                          "(no executable runtimetest in the checkout root)")
    if not list_programs(root):
        raise RunnerError(f"RUNTIME_TOOLS_DIR={value}: no validation/*/*.t "
                          "executables; build the validation executables first")
    arch = {"x86_64": "amd64", "i686": "386", "i386": "386",
            "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    if not (root / f"rootfs-{arch}.tar.gz").is_file():
        print(f"warning: {root}/rootfs-{arch}.tar.gz not found; programs that "
              "need a bundle will fail", file=sys.stderr)
    return root


def list_programs(root):
    """All built validation programs, sorted by path."""
    return sorted(p for p in root.glob("validation/*/*.t")
                  if p.is_file() and os.access(p, os.X_OK))


def find_runtime(requested):
    """Resolve the runtime to an absolute path (programs run from the checkout)."""
    name = requested or os.environ.get("RUNTIME") or DEFAULT_RUNTIME
    if os.sep in name:
        path = Path(name).resolve()
        if not os.access(path, os.X_OK) or path.is_dir():
            raise RunnerError(f"runtime {name!r} is not an executable file")
        return str(path)
    found = shutil.which(name)
    if not found:
        raise RunnerError(f"runtime {name!r} not found on PATH; use --runtime PATH "
                          "or RUNTIME=PATH")
    return str(Path(found).resolve())


def runtime_version(runtime):
    """The output of ``<runtime> --version``, or None."""
    try:
        out = subprocess.run([runtime, "--version"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def shorten(text, width):
    """text on one line, cut to width characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def first_error_line(stderr):
    """The most telling stderr line: a runtime's error message if any."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        msg = re.search(r'level=error msg="(.*)"', line)
        if msg:
            return msg.group(1).replace('\\"', '"')
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else ""


def mounts_under(directory):
    """Mount points below directory, per /proc/self/mountinfo, deepest first."""
    prefix = str(directory).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4]
                # mountinfo escapes space, tab, newline and backslash as \ooo
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)
                if point.startswith(prefix):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def clean_tmpdir(directory):
    """Unmount what a program left mounted under directory, then remove it.

    The directory is left in place if anything is still mounted below it:
    removing files through a leaked bind mount could delete host files.
    """
    for point in mounts_under(directory):
        subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if mounts_under(directory):
        print(f"warning: mounts remain under {directory}; not removing it",
              file=sys.stderr)
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def run_program(program, root, env, timeout, tmpdir):
    """Run one validation program and return its result record.

    Its output goes to files rather than pipes, so that a container process
    which inherited them cannot keep the runner waiting after the program
    exits.  TMPDIR points at a fresh directory (where the programs make their
    bundles) so that files and mounts left behind can be found and cleaned.
    """
    # Like /tmp, it must be traversable by the unprivileged users that
    # user-namespace tests map root to.
    tmpdir.mkdir(mode=0o755)
    tmpdir.chmod(0o755)
    env = dict(env, TMPDIR=str(tmpdir))
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(program)], cwd=root, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            # The program leads its own session: end it and whatever it
            # started in that process group (a container may remain).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    leaked_mounts = mounts_under(tmpdir)

    stdout = stdout.decode("utf-8", "replace")
    stderr = stderr.decode("utf-8", "replace")
    tap = parse_tap(stdout)
    counted = tap["ok"] + tap["not_ok"] + tap["skip"]
    plan = sum(tap["plans"]) if tap["plans"] else None

    notes = []
    if timed_out:
        status = "timeout"
        notes.append(f"killed after {timeout:g}s; a container may be left behind")
    elif proc.returncode != 0:
        status = "crashed"
        notes.append(f"exit status {proc.returncode}" if proc.returncode > 0
                     else f"killed by signal {-proc.returncode}")
    elif tap["bail_out"]:
        status = "bail-out"
    elif not stdout.strip():
        # e.g. process_rlimits_fail prints nothing when the runtime
        # correctly refuses the config, and exits 1 when it does not.
        status = "no-output"
    elif plan is None:
        status = "no-plan"
    elif plan != counted:
        status = "plan-mismatch"
        notes.append(f"planned {plan}, saw {counted}")
    elif tap["not_ok"]:
        status = "not-ok"
    elif tap["diagnostics"]:
        status = "diagnostic"
        notes.append("failure reported only as a YAML diagnostic")
    elif counted == 0:
        status = "no-tests"
    else:
        status = "pass"
    if plan is None and status not in ("no-plan", "no-output"):
        notes.append("no plan")
    if tap["bail_out"]:
        notes.append(tap["bail_out"])
    if leaked_mounts:
        notes.append(f"left {len(leaked_mounts)} mount(s) under its TMPDIR")
    if status == "crashed" and stderr.strip():
        notes.append(shorten(first_error_line(stderr), 110))

    return {
        "program": program.parent.name,
        "path": str(program.relative_to(root)),
        "status": status,
        "ok": tap["ok"],
        "not_ok": tap["not_ok"],
        "skip": tap["skip"],
        "todo": tap["todo"],
        "plan": plan,
        "exit_status": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "seconds": round(elapsed, 2),
        "notes": notes,
        "leaked_mounts": leaked_mounts,
        "failing_tests": [failure_title(f) for f in tap["failures"]],
        "failures": tap["failures"],
        "diagnostics": tap["diagnostics"],
        "stderr_tail": stderr[-4000:],
        "_stdout": stdout,
        "_stderr": stderr,
    }


# --------------------------------------------------------------------------
# Reporting


ROW = "{:<36} {:>6} {:>6} {:>6}  {:<13} {:>7}  {}"


def print_header():
    print(ROW.format("program", "ok", "not ok", "skip", "status", "seconds", "notes"))
    print("-" * 90)


def print_row(r):
    print(ROW.format(r["program"], r["ok"], r["not_ok"], r["skip"], r["status"],
                     f"{r['seconds']:.1f}", "; ".join(r["notes"])), flush=True)


def print_verbose(results, width=400):
    """Print each program's failing TAP lines (long lines cut to width)."""
    for r in results:
        if not (r["failures"] or r["diagnostics"] or r["status"] in ABNORMAL):
            continue
        print(f"\n=== {r['program']} ({r['status']})")
        for text in r["failures"] + r["diagnostics"]:
            for line in text.splitlines():
                print(line if len(line) <= width else line[:width] + " [...]")
        if r["status"] in ABNORMAL and r["stderr_tail"].strip():
            print("--- stderr (tail):")
            print(r["stderr_tail"].rstrip()[-2000:])


def totals(results):
    return {key: sum(r[key] for r in results)
            for key in ("ok", "not_ok", "skip", "todo")}


# --------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Run runtime-tools' validation programs against an OCI "
                    "runtime and count the TAP results.",
        epilog="Needs RUNTIME_TOOLS_DIR (a built runtime-tools checkout); run as root.")
    parser.add_argument("filters", nargs="*", metavar="NAME",
                        help="only run programs whose name contains one of these "
                             "substrings (e.g. linux_cgroups)")
    parser.add_argument("--runtime", metavar="PATH",
                        help="runtime binary to test (default: $RUNTIME, else "
                             f"{DEFAULT_RUNTIME} on PATH)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"per-program timeout (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--save-output", metavar="DIR",
                        help="write each program's raw stdout (TAP) and stderr to DIR")
    parser.add_argument("--keep-tmp", action="store_true",
                        help="keep each program's TMPDIR (bundles, leftover mounts) "
                             "instead of unmounting and removing it")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="print the failing TAP lines (not ok + diagnostics) per program")
    parser.add_argument("--list", action="store_true",
                        help="list the programs that would run and exit")
    parser.add_argument("--fail-on-not-ok", action="store_true",
                        help="exit 1 if any test is not ok, or any program crashed, "
                             "timed out, bailed out, printed no/partial plan, or "
                             "reported a failure only as a diagnostic")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        root = find_checkout()
        programs = list_programs(root)
        if args.filters:
            programs = [p for p in programs
                        if any(f in p.parent.name for f in args.filters)]
            if not programs:
                raise RunnerError(f"no validation program matches {args.filters}")
        if args.list:
            for p in programs:
                print(p.parent.name)
            return 0
        runtime = find_runtime(args.runtime)
    except RunnerError as err:
        print(f"run.py: error: {err}", file=sys.stderr)
        return 2

    if os.geteuid() != 0:
        print("warning: not running as root; the validation programs expect root "
              "and most will fail", file=sys.stderr)

    env = dict(os.environ, RUNTIME=runtime)
    version = runtime_version(runtime)
    print(f"runtime: {runtime}" + (f" ({version.splitlines()[0]})" if version else ""))
    print(f"runtime-tools: {root}")
    print(f"programs: {len(programs)}, timeout {args.timeout:g}s each\n")

    save_dir = Path(args.save_output) if args.save_output else None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="oci-conformance-"))
    work.chmod(0o755)
    started = time.time()
    results = []
    print_header()
    for program in programs:
        tmpdir = work / program.parent.name
        r = run_program(program, root, env, args.timeout, tmpdir)
        if not args.keep_tmp:
            clean_tmpdir(tmpdir)
        if save_dir:
            (save_dir / f"{r['program']}.tap").write_text(r["_stdout"])
            (save_dir / f"{r['program']}.stderr").write_text(r["_stderr"])
        del r["_stdout"], r["_stderr"]
        results.append(r)
        print_row(r)
    wall = time.time() - started
    if args.keep_tmp:
        print(f"(per-program TMPDIRs kept under {work})")
    else:
        try:
            work.rmdir()
        except OSError:
            print(f"warning: {work} not empty (see warnings above)", file=sys.stderr)

    t = totals(results)
    abnormal = [r["program"] for r in results if r["status"] in ABNORMAL]
    failing = [r["program"] for r in results if r["status"] in FAILING]
    print("-" * 90)
    print(f"TOTAL: {t['ok']} ok / {t['not_ok']} not ok / {t['skip']} skip "
          f"across {len(results)} programs")
    statuses = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    print(f"ok including skips: {t['ok'] + t['skip']}; statuses: "
          + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
          + f"; {wall:.0f}s")
    if abnormal:
        print(f"abnormal programs ({len(abnormal)}): {', '.join(abnormal)}")
    diagnostic_only = [r["program"] for r in results if r["status"] == "diagnostic"]
    if diagnostic_only:
        print(f"failures reported only as diagnostics ({len(diagnostic_only)}): "
              f"{', '.join(diagnostic_only)}")
    if args.verbose:
        print_verbose(results)

    if args.json:
        report = {
            "runtime": runtime,
            "runtime_version": version,
            "runtime_tools_dir": str(root),
            "timeout": args.timeout,
            "filters": args.filters,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(wall, 1),
            "totals": dict(t, programs=len(results), abnormal=abnormal,
                           diagnostic_only=[r["program"] for r in results
                                            if r["status"] == "diagnostic"]),
            "programs": results,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    if args.fail_on_not_ok and (t["not_ok"] or failing):
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:           # the runner itself failed: not a test result
        import traceback
        traceback.print_exc()
        sys.exit(2)
