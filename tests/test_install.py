"""The installed package: its modules come from the one compiled file setup.py writes
(ociruntime/__init__.py), and what they report (__file__, tracebacks) still points at
the installed sources. The package is installed here as pip would lay it out, by this
checkout's setup.py (build_py), into a directory of the test's own; and by a plain
`pip install` into a fresh virtualenv, whose entry points seal themselves
(ociruntime.exeseal) without the setup.sh launcher."""

import errno
import glob
import os
import shutil
import subprocess
import sys
import tempfile

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


# --- a plain `pip install` ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh virtualenv holding this checkout as a plain ``pip install`` lays it out:
    console scripts, no setup.sh launcher. Installed from a copy of the working tree (pip
    builds in the source tree: the checkout's build/ stays the tests')."""
    base = tmp_path_factory.mktemp("pip")
    source = base / "source"
    shutil.copytree(devbuild.PROJECT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".bin", "build", "*.egg-info", "__pycache__", "_native*.so", ".pytest_cache"))
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(base / "venv")], check=True, capture_output=True)
    proc = subprocess.run([str(base / "venv/bin/pip"), "install", "-q", str(source)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return base / "venv"


def _in_files(command, **kwargs):
    """Run ``command`` with its output in a file (a created init holds what it inherits):
    (exit code, output)."""
    with tempfile.TemporaryFile("w+") as out:
        code = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60,
                              **kwargs).returncode
        out.seek(0)
        return code, out.read()


@pytest.mark.root
def test_the_pip_console_script_seals_itself(venv, runtime, make_bundle):
    """`ociruntime` as pip installs it (a console script: the venv's Python on a writable
    file) creates and runs containers, and the init's exe can't be opened for writing."""
    ociruntime = [str(venv / "bin/ociruntime"), "--root", runtime.root]
    assert (venv / "bin/containerd-shim-ociruntime-v2").exists()
    cid = runtime.new_id()
    code, out = _in_files([*ociruntime, "create", "--bundle", make_bundle("sleep", "30").path, cid])
    assert (code, out) == (0, "")
    try:
        pid = runtime.state(cid)["pid"]
        with pytest.raises(OSError) as refused:
            os.close(os.open(f"/proc/{pid}/exe", os.O_WRONLY))
        assert refused.value.errno == errno.EROFS, refused.value
        assert _in_files([*ociruntime, "start", cid]) == (0, "")
    finally:
        assert _in_files([*ociruntime, "delete", "--force", cid]) == (0, "")
    bundle = make_bundle("sh", "-c", "echo hello from $(hostname)")
    assert _in_files([*ociruntime, "run", "--bundle", bundle.path, runtime.new_id()]) == \
        (0, f"hello from {bundle.config['hostname']}\n")


API_PROGRAM = """
import os, sys
from ociruntime import api

api.ensure_sealed()
assert "OCIRUNTIME_EXESEAL" not in os.environ
root, cid, bundle = sys.argv[1:]
out_r, out_w = os.pipe()
pid = api.create(cid, bundle, root=root, stdio=(-1, out_w, out_w))
os.close(out_w)
api.start(cid, root=root)
print(os.read(out_r, 100).decode().strip(), os.waitpid(pid, 0)[1], api.state(cid, root=root)["status"])
api.delete(cid, root=root)
"""


@pytest.mark.root
def test_a_program_in_the_venv_seals_itself_and_drives_containers(venv, runtime, make_bundle, tmp_path):
    program = tmp_path / "engine.py"
    program.write_text(API_PROGRAM)
    cid = runtime.new_id()
    code, out = _in_files([str(venv / "bin/python"), str(program), runtime.root, cid,
                           str(make_bundle("echo", "hi").path)])
    assert (code, out) == (0, "hi 0 stopped\n")
