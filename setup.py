"""Install ociruntime: the package, its JSON Schemas, and the C helper built by cffi."""

import glob
import os
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPy(build_py):
    """Ship specs/*.json inside the package and record the git commit for --version."""

    def run(self):
        super().run()
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


setup(
    name="ociruntime",
    version="0.1.0",
    description="A runc-compatible OCI container runtime",
    packages=find_packages(include=["ociruntime", "ociruntime.*"]),
    python_requires=">=3.11",
    install_requires=["cffi>=1.15", "click>=8", "jsonschema>=4"],
    setup_requires=["cffi>=1.15"],
    cffi_modules=["native/build_native.py:ffibuilder"],
    entry_points={"console_scripts": ["ociruntime = ociruntime.main:entry"]},
    cmdclass={"build_py": BuildPy},
    zip_safe=False,
)
