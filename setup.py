"""Install ociruntime: the package, its JSON Schemas, and the C helper built by cffi."""

import glob
import importlib.util
import marshal
import os
import runpy
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPy(build_py):
    """Ship specs/*.json inside the package, record the git commit for --version, and
    compile the package's modules into one file (see ociruntime/__init__.py); compile the
    shim's .proto files into the descriptor set it loads (shim/proto/build.py)."""

    def run(self):
        super().run()
        build_proto = runpy.run_path(os.path.join(HERE, "shim", "proto", "build.py"))
        build_proto["build"](os.path.join(self.build_lib, "ociruntime_shim", "proto", build_proto["OUTPUT"]))
        target = os.path.join(self.build_lib, "ociruntime")
        os.makedirs(os.path.join(target, "specs"), exist_ok=True)
        for path in glob.glob(os.path.join(HERE, "specs", "*.json")):
            self.copy_file(path, os.path.join(target, "specs", os.path.basename(path)))
        try:
            commit = subprocess.run(["git", "-C", HERE, "rev-parse", "HEAD"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
        with open(os.path.join(target, "_build_info.py"), "w") as f:
            f.write(f'"""Written at build time by setup.py."""\n\nCOMMIT = "{commit}"\n')
        _write_compiled_modules(self.build_lib, target)


def _write_compiled_modules(build_lib, package_dir):
    """``modules.marshal``: (the interpreter's bytecode magic, {module name: (is package,
    marshalled code)}) for every module but ``ociruntime/__init__.py``, which serves them.

    File names in the code are relative to site-packages ("ociruntime/state.py"): the
    install location is unknown here, and linecache finds such names through sys.path.
    """
    modules = {}
    for path in sorted(glob.glob(os.path.join(package_dir, "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, build_lib)
        if rel == os.path.join("ociruntime", "__init__.py"):
            continue
        parts = rel[:-3].split(os.sep)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), rel, "exec", dont_inherit=True)
        modules[name] = (is_package, marshal.dumps(code))
    with open(os.path.join(package_dir, "modules.marshal"), "wb") as f:
        f.write(marshal.dumps((importlib.util.MAGIC_NUMBER, modules)))


setup(
    name="ociruntime",
    version="0.1.0",
    description="A runc-compatible OCI container runtime",
    # The shim's folder is shim/; installed it is ociruntime_shim (a name of its own beside
    # ociruntime, which it drives).
    packages=[*find_packages(include=["ociruntime", "ociruntime.*"]), "ociruntime_shim"],
    package_dir={"ociruntime_shim": "shim"},
    python_requires=">=3.11",
    install_requires=["cffi>=1.15", "click>=8", "jsonschema>=4", "protobuf"],
    setup_requires=["cffi>=1.15"],
    cffi_modules=["native/build_native.py:ffibuilder"],
    entry_points={"console_scripts": [
        "ociruntime = ociruntime.main:entry",  # seals itself (ociruntime.exeseal) for create, run and exec
        "containerd-shim-ociruntime-v2 = ociruntime_shim.main:entry",
    ]},
    cmdclass={"build_py": BuildPy},
    zip_safe=False,
)
