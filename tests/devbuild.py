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

The shim's package, ``ociruntime_shim``, is the folder shim/ (setup.py's package_dir): here
build/dev/py/ociruntime_shim is a symlink to it, and build/dev/py is on sys.path, of this
process and of the launcher script. ``refresh_shim()`` makes the link and compiles
shim/proto/*.proto into shim/proto/descriptors.binpb when they changed (their own key,
descriptors.binpb.key: a .proto edit rebuilds no C); ``refresh()`` calls it, and so does
``under_test()`` when $OCIRUNTIME names another command: the tests' own process imports
this checkout's packages all the same.
"""

import contextlib
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
PY = os.path.join(OUT, "py")  # holds the link ociruntime_shim -> shim/
# The venv's site-packages: cffi's backend, click, jsonschema (and the installed ociruntime,
# which the checkout, first on sys.path, shadows).
SITE = sysconfig.get_paths()["purelib"]

if sys.path[:1] != [PROJECT]:  # this checkout's ociruntime, also where pytest or a script put another first
    sys.path.insert(0, PROJECT)
os.makedirs(PY, exist_ok=True)  # before it goes on sys.path: a missing folder is cached as holding nothing
if PY not in sys.path:
    sys.path.insert(1, PY)

SHIM = "containerd-shim-ociruntime-v2"  # containerd finds it on PATH: the tests put OUT first there

build_launcher = runpy.run_path(os.path.join(NATIVE, "build_launcher.py"))
build_proto = runpy.run_path(os.path.join(PROJECT, "shim", "proto", "build.py"))


class Build(NamedTuple):
    runtime: str  # the command
    script: str  # its launcher script (shebang: interpreter and flags; a sys.path line)
    seconds: float | None  # what the refresh cost, None when it was up to date (or not ours)


def under_test():
    """The command the tests drive: $OCIRUNTIME when set (its script
    $OCIRUNTIME_LAUNCHER_SCRIPT, else this venv's installed one), else this checkout's."""
    runtime = os.environ.get("OCIRUNTIME")
    if runtime:
        refresh_shim()  # the tests' own process imports this checkout's shim all the same
        script = os.environ.get("OCIRUNTIME_LAUNCHER_SCRIPT") or os.path.join(os.path.dirname(sys.executable),
                                                                              "ociruntime-launcher")
        return Build(runtime, script, None)
    return refresh()


def refresh():
    """This checkout's command, rebuilt first if its inputs changed."""
    runtime, script = os.path.join(OUT, "ociruntime"), os.path.join(OUT, "ociruntime-launcher")
    shim, shim_script = os.path.join(OUT, SHIM), os.path.join(OUT, SHIM + "-launcher")
    extension = os.path.join(PROJECT, "ociruntime", "_native" + sysconfig.get_config_var("EXT_SUFFIX"))
    refresh_shim()
    with _locked():
        key = _key()
        try:
            with open(os.path.join(OUT, "key")) as f:
                current = f.read() == key and all(os.path.exists(p) for p in (runtime, script, extension, shim))
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
        build_launcher["write_script"](script, sys.executable, [PROJECT, PY, SITE])
        build_launcher["build"](runtime, sys.executable, script)
        build_launcher["write_script"](shim_script, sys.executable, [PROJECT, PY, SITE], shim=True)
        build_launcher["build"](shim, sys.executable, shim_script, shim=True)
        with open(os.path.join(OUT, "key"), "w") as f:
            f.write(key)
        return Build(runtime, script, time.monotonic() - start)


def refresh_shim():
    """The link build/dev/py/ociruntime_shim -> shim/, and shim/proto/descriptors.binpb
    compiled anew if the .proto files or their build script changed."""
    link, shim = os.path.join(PY, "ociruntime_shim"), os.path.join(PROJECT, "shim")
    descriptors = os.path.join(shim, "proto", build_proto["OUTPUT"])
    with _locked():
        if not (os.path.islink(link) and os.readlink(link) == shim):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(shim, link)
        h = hashlib.sha256()
        for path in [*build_proto["sources"](), os.path.join(shim, "proto", "build.py")]:
            with open(path, "rb") as f:
                h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
        # The key beside the set, not in build/: tests/vm/lane.py packs the checkout without
        # build/, and its guest, which has no protoc, must find the set current.
        key, key_path = h.hexdigest(), descriptors + ".key"
        try:
            with open(key_path) as f:
                current = f.read() == key and os.path.exists(descriptors)
        except FileNotFoundError:
            current = False
        if not current:
            build_proto["build"](descriptors)
            with open(key_path, "w") as f:
                f.write(key)


@contextlib.contextmanager
def _locked():
    """One build at a time: sessions of one checkout may start together."""
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
