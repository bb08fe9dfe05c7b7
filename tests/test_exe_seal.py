"""The CVE-2019-5736 class: a container must never get a writable handle on the
runtime's own executable or interpreter through /proc/<pid>/exe.

The init is cloned from the runtime's Python, so until it execs the container's
program its exe is that interpreter; ``process.args[0] = "/proc/self/exe"`` (or a
script "#!/proc/self/exe") makes the kernel run it *inside* the container. The
launcher runs Python from a read-only overlayfs handle (native/exeseal.c), so what
the container reaches there refuses writes with EROFS. A naive runtime hands over the
host's /usr/bin/python3.11 itself: the open fails only with ETXTBSY, and only while
some process still runs Python, after which the write succeeds.
"""

import errno
import hashlib
import os
import subprocess
import sys
import tempfile

import pytest
from conftest import LAUNCHER_SCRIPT, launcher_python

pytestmark = pytest.mark.root

PROBE = """
import os
print("exe", os.readlink("/proc/self/exe"))
try:
    os.close(os.open("/proc/self/exe", os.O_WRONLY))
    print("open-for-write ok")
except OSError as e:
    print("open-for-write", os.strerror(e.errno))
"""


def _host_python_libraries():
    """What the host interpreter needs to start, at the paths it looks for them: its
    loader, libc & co. (as ldd names them) and its standard library."""
    out = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True, text=True, check=True).stdout
    return sorted({p for p in out.split() if p.startswith("/")} | {os.path.dirname(os.__file__)})


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_the_inits_exe_cannot_be_written_from_the_container(runtime, make_bundle):
    interpreter = os.path.realpath(sys.executable)
    before = _digest(interpreter)
    bundle = make_bundle("/proc/self/exe", "-I", "-S", "-c", PROBE)
    for path in _host_python_libraries():  # read-only, so the probe can only reach the exe
        bundle.config["mounts"].append({"destination": path, "type": "bind", "source": os.path.realpath(path),
                                        "options": ["rbind", "ro", "nosuid", "nodev"]})
    bundle.write()
    code, out, err = runtime.run_output(bundle)
    assert code == 0, err
    assert "open-for-write Read-only file system" in out, out  # a naive runtime: "Text file busy"
    exe = out.split("exe ", 1)[1].split()[0]
    assert exe != interpreter, out
    assert _digest(interpreter) == before


def test_python_not_run_read_only_creates_no_container(runtime, make_bundle):
    """Python started from its writable file, which didn't call ensure_sealed, refuses to
    clone an init, says how to fix it, and leaves nothing behind (the runtime fixture checks)."""
    cid = runtime.new_id()
    proc = launcher_python("from ociruntime import api\ntry:\n"
                           "    api.create(sys.argv[1], sys.argv[2], root=sys.argv[3])\n"
                           "except api.Error as e:\n    print(e)\n", cid, make_bundle("true").path, runtime.root)
    assert proc.returncode == 0, proc.stderr
    assert "runs from a writable file (/proc/self/exe)" in proc.stdout, proc.stdout
    assert "ociruntime.api.ensure_sealed()" in proc.stdout, proc.stdout
    assert proc.stderr == ""


def test_the_command_seals_itself(runtime, make_bundle):
    """The launcher script run by a writable Python (as a pip console script is): create
    re-executes it from a read-only handle, once, and the init's exe can't be written."""
    with open(LAUNCHER_SCRIPT) as f:
        interpreter = f.readline()[2:].split()
    bundle = make_bundle("sleep", "30")
    cid = runtime.new_id()
    with tempfile.TemporaryFile("w+") as err:  # not a pipe: the created init holds its stderr
        code = subprocess.run([*interpreter, LAUNCHER_SCRIPT, "--root", runtime.root, "create", "--bundle",
                               bundle.path, cid], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                              timeout=30).returncode
        err.seek(0)
        output = err.read()
    try:
        assert code == 0 and output == "", output
        pid = runtime.state(cid)["pid"]
        with pytest.raises(OSError) as refused:
            os.close(os.open(f"/proc/{pid}/exe", os.O_WRONLY))
        assert refused.value.errno == errno.EROFS
    finally:
        runtime("delete", "--force", cid)


@pytest.mark.parametrize("setup, error", [
    ("os.environ['OCIRUNTIME_EXESEAL'] = '1'", "still runs from a writable file after re-executing it"),
    ("sys.executable = '/nonexistent/python3'",
     "cannot make a read-only handle on /nonexistent/python3 to run from: No such file or directory"),
])
def test_sealing_that_cannot_work_is_one_error(setup, error):
    """A re-exec that didn't seal (the guard it sets stops a loop), or an interpreter with
    no file to seal: one line, no re-exec."""
    proc = launcher_python(f"import os\nfrom ociruntime import api\n{setup}\ntry:\n    api.ensure_sealed()\n"
                           "except api.Error as e:\n    print(e)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()] and error in proc.stdout, proc.stdout


HARNESS = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "exeseal.h"
extern char **environ;
int main(int argc, char **argv)
{
    int fd = oci_sealed_exe(argv[1], argv[2]);
    if (fd < 0) { perror("oci_sealed_exe"); return 2; }
    syscall(SYS_execveat, fd, "", argv + 3, environ, AT_EMPTY_PATH);
    perror("execveat");
    return 3;
}
"""

SEALS_PROBE = """
import fcntl, os
fd = os.open("/proc/self/exe", os.O_RDONLY)
print("exe", os.readlink("/proc/self/exe"))
print("read-only mount", bool(os.fstatvfs(fd).f_flag & os.ST_RDONLY))
try:
    print("write-sealed", bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE))
except OSError:
    print("write-sealed", False)
"""


@pytest.mark.parametrize("empty_dir,expect", [
    ("{tmp}/empty", ["read-only mount True", "write-sealed False"]),  # the overlayfs way
    ("{tmp}/a:b", ["exe /memfd:ociruntime-python (deleted)", "read-only mount False", "write-sealed True"]),
])
def test_both_ways_of_sealing(tmp_path, empty_dir, expect):
    """native/exeseal.c on its own: overlayfs, and the sealed memfd it falls back to (an
    empty directory whose name overlayfs would need escaped makes it take that way)."""
    native = os.path.join(os.path.dirname(__file__), "..", "native")
    (tmp_path / "harness.c").write_text(HARNESS)
    subprocess.run(["gcc", "-O2", "-I", native, "-o", tmp_path / "harness", tmp_path / "harness.c",
                    os.path.join(native, "exeseal.c")], check=True)
    interpreter = os.path.realpath(sys.executable)
    proc = subprocess.run([tmp_path / "harness", interpreter, empty_dir.format(tmp=tmp_path), "python3", "-I", "-S",
                           "-c", SEALS_PROBE], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for line in expect:
        assert line in proc.stdout.splitlines(), proc.stdout
    assert f"exe {interpreter}" not in proc.stdout
