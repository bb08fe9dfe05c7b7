"""What the tests run: this checkout's code, never an installed copy.

The installed command (scripts/setup.sh) runs the package as pip installed it, served from
modules.marshal, so an edit is only seen after a reinstall; and /usr/local/bin holds
whichever checkout ran setup last. The tests run a command of the checkout's own instead,
in build/dev/: native/launcher.c built as the installed one is (static, create/run/exec
from a sealed handle on the interpreter: native/exeseal.c), with a launcher script that
puts the checkout first on sys.path. Its Python is then the checkout's sources as they
are (a checkout has no modules.marshal: ociruntime/__init__.py imports as usual); the C
helper (cffi) is built in place, ociruntime/_native*.so, where that command and the tests'
own process both import it.

``refresh()`` rebuilds these when what they are compiled from changed: native/, the
value-taking global options the launcher skips (ociruntime.main.GLOBAL), the sealed
handle's empty directory (ociruntime.exeseal.EMPTY_DIR), the interpreter and this file,
hashed into build/dev/key. tests/conftest.py calls it as the session
starts, tests/vm/lane.py before it packs the guest.
"""

import fcntl
import hashlib
import os
import runpy
import shutil
import sys
import sysconfig
import time
from typing import NamedTuple

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(PROJECT, "native")
OUT = os.path.join(PROJECT, "build", "dev")
# The venv's site-packages: cffi's backend, click, jsonschema (and the installed ociruntime,
# which the checkout, first on sys.path, shadows).
SITE = sysconfig.get_paths()["purelib"]

if sys.path[:1] != [PROJECT]:  # this checkout's ociruntime, also where pytest or a script put another first
    sys.path.insert(0, PROJECT)

build_launcher = runpy.run_path(os.path.join(NATIVE, "build_launcher.py"))


class Build(NamedTuple):
    runtime: str  # the command
    script: str  # its launcher script (shebang: interpreter and flags; a sys.path line)
    seconds: float | None  # what the refresh cost, None when it was up to date (or not ours)


def under_test():
    """The command the tests drive: $OCIRUNTIME when set (its script
    $OCIRUNTIME_LAUNCHER_SCRIPT, else this venv's installed one), else this checkout's."""
    runtime = os.environ.get("OCIRUNTIME")
    if runtime:
        script = os.environ.get("OCIRUNTIME_LAUNCHER_SCRIPT") or os.path.join(os.path.dirname(sys.executable),
                                                                              "ociruntime-launcher")
        return Build(runtime, script, None)
    return refresh()


def refresh():
    """This checkout's command, rebuilt first if its inputs changed."""
    runtime, script = os.path.join(OUT, "ociruntime"), os.path.join(OUT, "ociruntime-launcher")
    extension = os.path.join(PROJECT, "ociruntime", "_native" + sysconfig.get_config_var("EXT_SUFFIX"))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: sessions of one checkout may start together
        key = _key()
        try:
            with open(os.path.join(OUT, "key")) as f:
                current = f.read() == key and all(os.path.exists(p) for p in (runtime, script, extension))
        except FileNotFoundError:
            current = False
        if current:
            return Build(runtime, script, None)
        start = time.monotonic()
        tmpdir = os.path.join(OUT, "cffi")
        shutil.rmtree(tmpdir, ignore_errors=True)
        ffibuilder = runpy.run_path(os.path.join(NATIVE, "build_native.py"))["ffibuilder"]
        built = ffibuilder.compile(tmpdir=tmpdir)
        os.replace(built, extension)  # a rename: a process running the old one keeps it
        build_launcher["write_script"](script, sys.executable, [PROJECT, SITE])
        build_launcher["build"](runtime, sys.executable, script)
        with open(os.path.join(OUT, "key"), "w") as f:
            f.write(key)
        return Build(runtime, script, time.monotonic() - start)


def _key():
    h = hashlib.sha256()
    for name in sorted(os.listdir(NATIVE)):
        if name.endswith((".c", ".h", ".py")) and not name.startswith("_"):  # _*: cffi's generated source
            with open(os.path.join(NATIVE, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read() + b"\0")
    with open(__file__, "rb") as f:
        h.update(f.read())
    options, empty_dir = build_launcher["value_options"](), build_launcher["exeseal_empty_dir"]()
    h.update(f"{options}\0{empty_dir}\0{sys.executable}\0{sys.version}\0{SITE}".encode())
    return h.hexdigest()
