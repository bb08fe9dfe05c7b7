"""cffi build script for the C helper: ``ociruntime._native``.

setup.py runs it through ``cffi_modules``; the declarations below are the
part of ``oci_native.h`` Python may touch, kept verbatim in sync with it.
"""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["spawn.c", "rootfs.c", "seccomp.c", "bpf.c", "util.c", "exeseal.c", "lsm.c", "process.c", "sdbus.c"]


def _declarations():
    """oci_native.h minus its include guard, which cffi can't read (it does read the #defines)."""
    with open(os.path.join(HERE, "oci_native.h")) as f:
        lines = [line for line in f if not line.startswith(("#if", "#endif", "#define OCI_NATIVE_H"))]
    return "".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_declarations())
ffibuilder.set_source(
    "ociruntime._native",
    '#include "oci_native.h"',
    sources=[os.path.join(HERE, s) for s in SOURCES],
    include_dirs=[HERE],
    # dl: sdbus.c dlopens libsystemd.so.0 (libc has dlopen since glibc 2.34; libdl.so, a stub
    # there, keeps older ones linking). No libsystemd here: a host without it still runs.
    libraries=["seccomp", "dl"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "..", "build"), verbose=True)
