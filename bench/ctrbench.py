"""What bench/ctr_run.py and bench/shim_memory.py share: a private containerd (the tests'
own, tests/containerd.py) with the busybox image imported, and the ways it can run a
container that they compare.

- ``runc-shim+runc``: containerd-shim-runc-v2 driving runc, the reference;
- ``runc-shim+ociruntime``: containerd-shim-runc-v2 driving the ociruntime command;
- ``ociruntime-shim``: our containerd-shim-ociruntime-v2 (``--runtime io.containerd.ociruntime.v2``),
  when it is found: ``--shim-dir``, else build/dev of this checkout, else PATH.
"""

import argparse
import contextlib
import os
import platform
import shutil
import sys
import tempfile
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(PROJECT, "tests"), os.path.join(PROJECT, "examples")]
import busybox_bundle  # noqa: E402
from containerd import CONTAINERD, IMAGE, Containerd  # noqa: E402

from bench import first_line, resolve  # noqa: E402

SHIM = "containerd-shim-ociruntime-v2"
DEV_SHIM_DIR = os.path.join(PROJECT, "build", "dev")
REFERENCE = "runc-shim+runc"


class Way(NamedTuple):
    name: str
    options: list  # ctr run's runtime options


def argument_parser(doc):
    """The options both benchmarks take; add your own to it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--shim-dir", help=f"directory of {SHIM} (default: build/dev if it is there, else PATH)")
    parser.add_argument("--without-shim", action="store_true", help="leave our shim's row out, wherever it is")
    parser.add_argument("--runtime", default="ociruntime",
                        help="the ociruntime command containerd-shim-runc-v2 drives (default: ociruntime on PATH)")
    parser.add_argument("--reference", default="runc", help="the reference runtime (default: runc on PATH)")
    return parser


def parse(parser):
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit(f"{parser.prog}: run as root (containers need it)")
    if "/usr/sbin" not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    args.runtime, args.reference = resolve(args.runtime), resolve(args.reference)
    args.shim_dir = None if args.without_shim else shim_dir(args.shim_dir)
    return args


def shim_dir(chosen):
    """The directory holding our shim, or None when there is none (its row is left out)."""
    if chosen:
        if not os.access(os.path.join(chosen, SHIM), os.X_OK):
            raise SystemExit(f"bench: {SHIM} not found in {chosen}")
        return os.path.abspath(chosen)
    if os.access(os.path.join(DEV_SHIM_DIR, SHIM), os.X_OK):
        return DEV_SHIM_DIR
    found = shutil.which(SHIM)
    return os.path.dirname(found) if found else None


def ways(containerd, args):
    runc_shim = ["--runtime", "io.containerd.runc.v2", "--runc-root", containerd.runc_root, "--runc-binary"]
    found = [Way(REFERENCE, [*runc_shim, args.reference]), Way("runc-shim+ociruntime", [*runc_shim, args.runtime])]
    if args.shim_dir:
        found.append(Way("ociruntime-shim", ["--runtime", "io.containerd.ociruntime.v2"]))
    return found


def header(args, title):
    shim = os.path.join(args.shim_dir, SHIM) if args.shim_dir else \
        "left out (--without-shim)" if args.without_shim else "not found (build/dev, PATH): its row is left out"
    return [title,
            f"machine: nproc={os.cpu_count()} kernel={platform.release()}",
            f"containerd: {first_line([CONTAINERD, '--version'])}",
            f"reference: {args.reference}: {first_line([args.reference, '--version'])}",
            f"runtime:   {args.runtime}: {first_line([args.runtime, '--version'])}",
            f"our shim:  {shim}"]


@contextlib.contextmanager
def private_containerd(args):
    """A private containerd (our shim's directory first on its PATH) with the busybox image;
    stopped and checked for leftovers on the way out."""
    tmp = tempfile.mkdtemp(prefix="ctrbench-")
    daemon = Containerd(os.path.join(tmp, "containerd"), shim_dir=args.shim_dir)
    try:
        busybox_bundle.make_rootfs(os.path.join(tmp, "rootfs"))
        daemon.start()
        daemon.import_image(os.path.join(tmp, "rootfs"))
        yield daemon
    finally:
        try:
            daemon.close()
        except AssertionError as e:
            print(f"bench: {e}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def run_args(containerd, way, cid, *command, options=()):
    """`ctr run`'s arguments after ctr's own (``Containerd.ctr`` and ``ctr_argv`` add those)."""
    return ["run", *way.options, "--fifo-dir", containerd.fifo_dir, *options, IMAGE, cid, *command]


def rotated(items, i):
    """The order for round ``i``: each item goes first in turn, and the order reverses every
    other round, so none always follows the same one."""
    k = i % len(items)
    order = items[k:] + items[:k]
    return order if i // len(items) % 2 == 0 else order[::-1]
