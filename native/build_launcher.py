"""Build the ``ociruntime`` command: native/launcher.c, a small static program (it starts
~0.4 ms sooner than a dynamic one) that, for create, run and exec, starts the
cgroup-migration primer and then runs Python on a launcher script, which skips site
(-I -S) and puts the package on sys.path itself (~3 ms less per call than a console
script).

Two builds use it: scripts/setup.sh's installed command (the installed package, served
from modules.marshal), and tests/devbuild.py's per-checkout command, whose script puts the
checkout's source tree first on sys.path.

    python3 -I native/build_launcher.py OUT SCRIPT            # the installed package's command
    python3 -I native/build_launcher.py --shim OUT SCRIPT     # containerd-shim-ociruntime-v2

The shim's build (-DOCI_SHIM) runs ``start`` from the sealed handle — the long-lived
process it forks clones the inits — starts no primer, and answers ``delete`` itself when
there is nothing to clean up (containerd runs it after every task's delete and waits).

The value-taking global options the C side skips to find the command word come from
``ociruntime.main.GLOBAL`` as this process imports it, the sealed handle's empty
directory from ``ociruntime.exeseal``.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


ENTRY = {False: "ociruntime.main", True: "ociruntime_shim.main"}


def write_script(path, python, sys_path, shim=False):
    """The launcher script: ``python`` -IS, ``sys_path`` appended, then the CLI (or the shim)."""
    with open(path + ".tmp", "w") as f:
        f.write(f"#!{python} -IS\nimport sys\nsys.path.extend({list(sys_path)!r})\n"
                f"from {ENTRY[shim]} import entry\nentry()\n")
    os.chmod(path + ".tmp", 0o755)
    os.replace(path + ".tmp", path)


def build(out, python, script, shim=False):
    """Compile the launcher for ``python`` and ``script`` to ``out`` (replaced by a rename:
    a running one is never written over)."""
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-static", "-o", out + ".tmp",
                    os.path.join(HERE, "launcher.c"), os.path.join(HERE, "exeseal.c"),
                    f'-DOCI_PYTHON="{python}"', f'-DOCI_SCRIPT="{script}"',
                    f"-DOCI_VALUE_OPTIONS={value_options()}", f'-DOCI_EXESEAL_EMPTY_DIR="{exeseal_empty_dir()}"',
                    *(['-DOCI_SHIM', f'-DOCI_SHIM_RECORD="{shim_record()}"'] if shim else [])],
                   check=True)
    os.replace(out + ".tmp", out)


def value_options():
    """The C initializer of launcher.c's value_options: '"--root","--log",...'."""
    from ociruntime.main import GLOBAL

    return ",".join(f'"{name}"' for name, (_, takes_value, _) in GLOBAL.items() if takes_value)


def shim_record():
    """The file in a bundle that says a task has something to clean up: ``ociruntime_shim.mounts``'."""
    from ociruntime_shim.mounts import RECORD

    return RECORD


def exeseal_empty_dir():
    """overlayfs's empty layer for the sealed handle: ``ociruntime.exeseal``'s."""
    from ociruntime.exeseal import EMPTY_DIR

    return EMPTY_DIR


def main(*args):
    import ociruntime

    shim = args[0] == "--shim"
    out, script = args[shim:]
    write_script(script, sys.executable, [os.path.dirname(ociruntime.__path__[0])], shim)
    build(out, sys.executable, script, shim)


if __name__ == "__main__":
    main(*sys.argv[1:])
