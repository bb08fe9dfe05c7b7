"""Compile the .proto files beside this script into one FileDescriptorSet, descriptors.binpb,
which ``ociruntime_shim.protocol`` loads into protobuf's descriptor pool at run time.

A descriptor set, not generated ``_pb2`` modules: it is plain data, so the protobuf runtime
installed beside the shim may be of any version, while generated code is tied to the protoc
that wrote it. The files here are this project's text; containerd's .proto files gave the
names, packages and field numbers (gogoproto options dropped: they only shape Go code).

setup.py runs it into the built package, tests/devbuild.py into the checkout; neither
imports the package (it has no descriptors yet):

    python3 shim/proto/build.py OUT
"""

import glob
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = "descriptors.binpb"  # its name beside protocol.py's proto/ folder, in a checkout and installed


def sources():
    """The .proto files, sorted: what the set is compiled from (tests/devbuild.py hashes them)."""
    return sorted(glob.glob(os.path.join(HERE, "*.proto")))


def build(out):
    """Write the set to ``out`` (replaced by a rename), with the well-known types it imports
    (Any, Empty, Timestamp) included, so that it is complete by itself."""
    args = ["-I", HERE, f"--descriptor_set_out={out}.tmp", "--include_imports",
            *(os.path.basename(path) for path in sources())]
    protoc = _protoc()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    proc = subprocess.run([*protoc, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(protoc)} failed on {HERE}: {proc.stderr.strip()}")
    os.replace(out + ".tmp", out)


def _protoc():
    """Debian's protoc (protobuf-compiler: scripts/setup.sh installs it), else grpcio-tools'
    (pyproject.toml's build requirement, for a ``pip install .`` on a machine without it;
    run as a module, it adds its copy of the well-known types to the include path)."""
    protoc = shutil.which("protoc")
    if protoc:
        return [protoc]
    if importlib.util.find_spec("grpc_tools"):
        return [sys.executable, "-m", "grpc_tools.protoc"]
    raise RuntimeError("no protoc to compile shim/proto: install Debian's protobuf-compiler or pip's grpcio-tools")


if __name__ == "__main__":
    build(sys.argv[1])
