"""The installed package: its modules come from the one compiled file setup.py writes
(ociruntime/__init__.py), and what they report (__file__, tracebacks) still points at
the installed sources. The package is installed here as pip would lay it out, by this
checkout's setup.py (build_py), into a directory of the test's own."""

import glob
import os
import shutil
import subprocess
import sys

import devbuild
import pytest


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site-packages directory holding this checkout's package as setup.py builds it
    (with the C helper built for the tests: build_py doesn't compile it)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(site)], cwd=devbuild.PROJECT,
                   check=True, capture_output=True)
    for extension in glob.glob(os.path.join(devbuild.PROJECT, "ociruntime", "_native*.so")):
        shutil.copy(extension, site / "ociruntime")
    return site


def installed_python(site, code):
    """Run ``code`` as the installed launcher runs Python: -I -S, the site directory appended."""
    return subprocess.run([sys.executable, "-I", "-S", "-c",
                           f"import sys\nsys.path.extend([{str(site)!r}, {devbuild.SITE!r}])\n{code}"],
                          capture_output=True, text=True, timeout=60)

# The installed package's Python modules (not __init__ itself, not the cffi extension).
INSTALLED_MODULES = """
import os, ociruntime
site, installed = os.path.dirname(ociruntime.__path__[0]), set()
for base, _, files in os.walk(ociruntime.__path__[0]):
    for f in files:
        if f.endswith(".py"):
            parts = os.path.relpath(os.path.join(base, f), site)[:-3].split(os.sep)
            installed.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
installed.discard("ociruntime")
"""


def test_every_module_is_served_from_the_compiled_file(site):
    proc = installed_python(site, INSTALLED_MODULES + """
import importlib
for name in sorted(installed):
    module = importlib.import_module(name)
    assert type(module.__spec__.loader).__name__ == "_CompiledModules", name
    assert os.path.isfile(module.__file__), module.__file__
print(len(installed))
""")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 25


def test_the_compiled_code_is_the_installed_source(site):
    """Each served module's code matches the installed .py next to it (a stale file would not)."""
    proc = installed_python(site, INSTALLED_MODULES + """
import marshal
finder = next(f for f in sys.meta_path if type(f).__name__ == "_CompiledModules")
assert set(finder.modules) == installed, set(finder.modules) ^ installed
for name, (is_package, blob) in finder.modules.items():
    path = finder.find_spec(name).origin
    with open(path) as f:
        expected = compile(f.read(), os.path.relpath(path, site), "exec", dont_inherit=True)
    assert marshal.loads(blob) == expected, name  # code equality: bytecode, constants, names, lines
""")
    assert proc.returncode == 0, proc.stderr


def test_a_crash_shows_its_source_lines(site):
    proc = installed_python(site, "from ociruntime import pathnames\npathnames.realpath(1.5)")
    assert proc.returncode == 1
    assert 'File "ociruntime/pathnames.py"' in proc.stderr, proc.stderr
    assert "posix.open(path" in proc.stderr, proc.stderr  # the line itself, read from the installed file


def test_the_shim_package_is_installed_with_its_descriptor_set(site):
    """shim/ installs as ociruntime_shim, with the descriptor set build_py compiled into it
    and nothing else of shim/proto (its .proto files and build.py are the build's)."""
    proc = installed_python(site, "from ociruntime_shim import protocol\nprint(protocol.__file__)\n"
                                  "print(protocol.message('containerd.task.v2.CreateTaskRequest').DESCRIPTOR.full_name)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{site}/ociruntime_shim/protocol.py", "containerd.task.v2.CreateTaskRequest"]
    assert sorted(os.listdir(site / "ociruntime_shim" / "proto")) == ["descriptors.binpb"]
