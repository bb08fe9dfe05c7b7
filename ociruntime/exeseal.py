"""Running from a read-only handle on the interpreter (the CVE-2019-5736 class).

A container's init is cloned from the runtime's Python, so until it execs the
container's program its /proc/<pid>/exe is that interpreter: a container process
opening it could write the host's binary once nothing runs it. ``native.Init`` refuses
to clone from a Python whose /proc/self/exe is writable. The installed ``ociruntime``
command (native/launcher.c) execs Python from a sealed handle for create, run and exec;
any other entry point — a pip console script, a shim, a custom engine — calls
``ensure_sealed()``, which re-executes the interpreter from one, as runc re-executes
itself from a sealed copy. The handle (native/exeseal.c): the interpreter's directory
as the only lower layer of an internal read-only overlayfs, else a sealed memfd copy.
"""

import posix
import sys

from .errors import OCIError

# overlayfs's second, empty layer beside the interpreter's directory; native/build_launcher.py
# compiles the same one into the launcher.
EMPTY_DIR = "/run/ociruntime-exeseal"
# In the environment across the re-exec only: a Python still unsealed after it stops there.
_GUARD = "OCIRUNTIME_EXESEAL"


def ensure_sealed():
    """Return once this process runs from a read-only handle on its interpreter; else
    re-execute it from one: argv[0] is ``sys.executable`` (so a virtualenv is still
    found), the arguments ``sys.orig_argv``'s, the environment ours."""
    from ._native import ffi, lib

    if lib.oci_exe_sealed():
        if _GUARD.encode() in posix.environ:
            import os

            os.environ.pop(_GUARD, None)  # ours, not the program's: hooks and children don't see it
        return
    exe = sys.executable
    if _GUARD.encode() in posix.environ:
        raise OCIError(f"{exe} still runs from a writable file after re-executing it from a read-only handle")
    if not exe:
        raise OCIError("cannot re-execute this Python from a read-only handle: its executable is unknown")
    fd = lib.oci_sealed_exe(exe.encode(), EMPTY_DIR.encode())
    if fd < 0:
        raise OCIError(f"cannot make a read-only handle on {exe} to run from: {posix.strerror(ffi.errno)}")
    import os

    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execve(fd, [exe, *sys.orig_argv[1:]], {**os.environ, _GUARD: "1"})
    except OSError as e:
        posix.close(fd)
        raise OCIError(f"cannot re-execute {exe} from a read-only handle: {e.strerror}") from None
