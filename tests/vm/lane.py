#!/usr/bin/env python3
"""The cgroup v2 lane: run the tests marked ``cgroup_v2`` on a pure cgroup v2 host (and
those marked ``apparmor`` on a host with AppArmor, those marked ``criu`` on a kernel where
``criu check`` passes), a qemu guest (software emulation) booted on Debian's cloud kernel
from an initramfs that holds what the tests use, at the same absolute paths as here. With
--systemd, the systemd guest instead: systemd is its pid 1, with the system bus
(dbus-daemon), on pure cgroup v2, and it runs the tests marked ``systemd``; with --systemd
--cgroup-v1 the same guest boots systemd on cgroup v1 (its legacy hierarchies) and runs
them there.

Usage: lane.py [--systemd [--cgroup-v1]] [--project DIR] [--python PY] [--build-only] [--timeout S] [--cpus N]
               [-- PYTEST_ARGS...]
(tests/vm/README.md tells more.)

The initramfs is two newc cpio archives, one after the other (the kernel unpacks both):

- the base: the Python interpreter and its standard library, the virtualenvs (the one
  running the tests and the one the ``ociruntime`` under test runs), that command
  (tests/devbuild.py: this checkout's build/dev one unless $OCIRUNTIME), /bin/busybox,
  /sbin/apparmor_parser, criu with what it runs for a network namespace (iproute2's ip,
  iptables-restore and its xtables extensions) and for tmpfs mounts (GNU tar, gzip, /bin/sh),
  podman and conmon with the few files they need (tests/test_podman_checkpoint.py; PODMAN_FILES,
  the overlay module: PODMAN_MODULES),
  systemd's pid 1 and tools, dbus-daemon and the few units and configuration files the
  systemd guest needs, every shared library those need (from ldd), and the booted
  kernel's module files criu needs (CRIU_MODULES
  and what they depend on, from its modules.dep; the plain guest's init loads them with
  insmod, dependencies first): one base for both guests. Built once and cached under
  <project>/build/v2-lane/, keyed by a hash of every file's path, size, mode and mtime
  (and this builder's source).
- the project: the project tree (no .git, .venv, build or tool caches; its __pycache__,
  warmed by a ``pytest --collect-only`` here) and the guest init (init.sh; for the
  systemd guest also its unit, v2lane.service, and a machine id), rebuilt on every run:
  it is small.

The guest runs ``<python> -m pytest -q -p no:cacheprovider -rfEsxXp -m MARKER <project>/tests``
from the project directory (MARKER: ``(cgroup_v2 or apparmor or criu) and not systemd``, in the
systemd guest ``systemd``; PYTEST_ARGS, when given, instead of ``<project>/tests``) and
prints ``V2LANE-EXIT=<pytest's exit code>`` last. The same selection, collected here first
(with conftest's deselection of them off), is what the guest must report as passed, each
one: a test deselected or skipped there fails the lane like a failed one.
"""

import argparse
import contextlib
import fcntl
import glob
import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import devbuild  # noqa: E402

EXIT_MARKER = "V2LANE-EXIT="
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")  # the firmware's terminal resets and clears
KERNEL_GLOB = "/boot/vmlinuz-*-cloud-amd64"
QEMU = "qemu-system-x86_64"
PACKAGES = "qemu-system-x86 linux-image-cloud-amd64"  # scripts/setup.sh installs them
BUSYBOX = "/bin/busybox"
RUNC = "/usr/sbin/runc"  # the reference, for benchmarks in the guest (bench/bench.py; Debian's runc)
APPARMOR_PARSER = "/sbin/apparmor_parser"  # loads the apparmor tests' profile (Debian's apparmor package)
# Checkpoint/restore for the tests marked criu (Debian's criu 3.17), and what it runs to dump
# and restore a process with a network namespace of its own (criu/net.c): iproute2's ip for
# `ip addr save`, `ip route save`, `ip -6 route save`, `ip rule save` and their restore
# (busybox's ip has neither); iptables-restore and ip6tables-restore, with which it locks the
# namespace's network while it works (its default --network-lock, runc's: a CRIU chain
# dropping all but its own packets, `-m mark`; Debian's are iptables-nft, whose extensions,
# dlopened from xtables/, parse the rules). The rules themselves it lists with libnftables,
# which it links (ldd finds it); iptables-save it runs only when a legacy (non-nft) one is
# there, and goes on without (it logs "execvp ... failed" first). A container's tmpfs
# mounts (its /dev) it saves and restores with GNU tar (`tar --create --gzip --no-unquote
# --sparse ...`: busybox's tar knows none of that, and criu says "Can't dump tmpfs
# content"), which runs gzip through /bin/sh -c (execv: not from PATH; busybox's sh is only
# on PATH here, so /bin/sh is the host's, dash). Its plugin directory /usr/lib/criu holds
# no plugin here: without it criu loads none.
CRIU = "/usr/sbin/criu"
CRIU_TOOLS = ("/bin/ip", "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-restore", "/bin/tar", "/bin/gzip",
              "/bin/sh")
XTABLES = "/usr/lib/x86_64-linux-gnu/xtables"
# The guest kernel's modules criu needs, which the plain guest loads (with what they depend
# on; nothing loads one on demand there): those `criu check` wants (the socket diag families
# it dumps sockets with, tun and veth devices, nftables) and those dumping a network
# namespace needs: nf_conntrack_netlink (criu dumps its conntrack table: without it netlink
# says EINVAL and the dump fails), nft_compat and xt_mark for its network lock's `-m mark`
# (iptables-nft warns "Extension mark revision 0 not supported, missing kernel module?").
CRIU_MODULES = ("unix_diag", "inet_diag", "tcp_diag", "udp_diag", "raw_diag", "netlink_diag", "af_packet_diag",
                "tun", "veth", "nfnetlink", "nf_tables", "nf_conntrack_netlink", "nft_compat", "xt_mark")
# The systemd guest's pid 1, its tools and the system bus (Debian's systemd and dbus packages).
# containerd 1.6 and ctr (Debian's, as tests/containerd.py runs them here), for the criu tests
# that checkpoint and restore through containerd with our shim (tests/test_shim_checkpoint.py).
# Static Go binaries but for libc; the guest has no overlay module loaded: those tests use
# the native snapshotter.
CONTAINERD_FILES = ("/usr/bin/containerd", "/usr/bin/ctr")
SYSTEMD = "/lib/systemd/systemd"
SYSTEMD_FILES = (SYSTEMD, "/lib/systemd/systemd-shutdown", "/bin/systemctl", "/usr/bin/systemd-run",
                 "/usr/bin/busctl", "/usr/bin/dbus-daemon", "/usr/share/dbus-1/system.conf",
                 "/usr/share/dbus-1/system.d/org.freedesktop.systemd1.conf",  # who may call systemd on the bus
                 "/var/run",  # -> /run: the system bus's address in the D-Bus spec
                 # the units v2lane.service pulls in: the bus, and what their default dependencies need
                 *(f"/lib/systemd/system/{unit}" for unit in ("dbus.service", "dbus.socket", "sysinit.target")))
# Shared libraries loaded with dlopen, which ldd doesn't name: glibc's for pthread_exit, the C helper's sd-bus.
DLOPENED = ("libgcc_s.so.1", "libsystemd.so.0")
# podman driving the runtime (tests/test_podman_checkpoint.py: podman container checkpoint and
# restore, in the plain guest): Debian's podman 4.3 and conmon 2.1.6, the image policy
# `podman import` copies under (containers/image refuses without one), the default seccomp
# profile, /var/lib for the import's tmpfs (tests/test_podman.py's importing()), /var/tmp (where
# containers/image stages an image it copies: "stat /var/tmp: no such file or directory"), and the
# overlay module for its storage driver (the guest's init loads it with criu's).
PODMAN_FILES = ("/usr/bin/podman", "/usr/bin/conmon", "/etc/containers/policy.json",
                "/usr/share/containers/seccomp.json", "/var/lib", "/var/tmp")
PODMAN_MODULES = ("overlay",)
UNIT = "v2lane.service"  # the systemd guest's own unit (tests/vm/v2lane.service), started instead of default.target
# pytest's -m in each guest: the tests marked systemd need the systemd guest, the others the plain one.
MARKERS = {False: "(cgroup_v2 or apparmor or criu) and not systemd", True: "systemd"}
# Not copied from the project tree: its history, the installed venv (the base has the
# one that is used), build output (this lane's cache among it) and tools' caches.
PROJECT_SKIP = {".git", ".venv", "build", "dist", ".pytest_cache", ".ruff_cache", ".hypothesis",
                ".benchmarks"}
# Not copied from the standard library: the big parts no test imports (config-* is
# libpython's static archive, 25 MB).
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
# Not copied from a venv: the linter, a 24 MB binary the guest never runs.
VENV_SKIP = {"bin/ruff"}


class LaneError(Exception):
    """The lane cannot run here (a missing program or file), with what to do about it."""


# --- the archives -----------------------------------------------------------------------


class Tree:
    """Absolute path -> entry of the guest's file system, as they are on this host:
    ("dir", mode, mtime), ("file", mode, mtime, host path), ("link", mode, mtime, target),
    ("data", mode, mtime, bytes) or ("node", mode, mtime, rdev)."""

    def __init__(self):
        self.entries = {}
        self.walked = set()  # directories added with everything below them

    def add(self, path, walk=False, skip=None):
        """Add ``path`` as it is here: a symlink and what it points at (followed, not
        walked), a directory (and with ``walk`` everything below it but what ``skip(path)``
        refuses), a file. Symlinked parent directories become symlinks too (/lib -> usr/lib)."""
        path = os.path.join(self._real_dir(os.path.dirname(os.path.abspath(path))), os.path.basename(path))
        if path in self.entries and (not walk or path in self.walked):
            return
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            self.entries[path] = ("link", st.st_mode, int(st.st_mtime), target)
            self.add(os.path.normpath(os.path.join(os.path.dirname(path), target)))
        elif stat.S_ISDIR(st.st_mode):
            self.entries[path] = ("dir", st.st_mode, int(st.st_mtime))
            if walk:
                self.walked.add(path)
                for name in sorted(os.listdir(path)):
                    child = os.path.join(path, name)
                    if not (skip and skip(child)):
                        self.add(child, walk=True, skip=skip)
        elif stat.S_ISREG(st.st_mode):
            self.entries[path] = ("file", st.st_mode, int(st.st_mtime), path)
        # sockets, fifos and devices of the host are not the guest's business

    def _real_dir(self, d):
        """The real path of directory ``d``, recording each directory and symlink on the way."""
        if d == "/":
            return d
        parent = self._real_dir(os.path.dirname(d))
        path = os.path.join(parent, os.path.basename(d))
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            self.entries.setdefault(path, ("link", st.st_mode, int(st.st_mtime), target))
            return self._real_dir(os.path.normpath(os.path.join(parent, target)))
        self.entries.setdefault(path, ("dir", st.st_mode, int(st.st_mtime)))
        return path

    def dir(self, path, mode=0o755):
        self.entries.setdefault(path, ("dir", stat.S_IFDIR | mode, 0))

    def data(self, path, content, mode=0o644):
        self.entries[path] = ("data", stat.S_IFREG | mode, int(time.time()), content)

    def node(self, path, mode, major, minor):
        self.entries[path] = ("node", mode, 0, os.makedev(major, minor))

    def elf_files(self):
        """The host paths of the tree's executables and shared objects that are ELF files."""
        for entry in self.entries.values():
            if entry[0] == "file" and (entry[1] & 0o111 or ".so" in os.path.basename(entry[3])):
                with open(entry[3], "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        yield entry[3]

    def add_shared_libraries(self):
        """Add what the dynamic linker loads for every ELF file in the tree (ldd's answer),
        and what is dlopened: libgcc_s, which glibc loads for pthread_exit and thread
        cancellation, and libsystemd.so.0, the C helper's for --systemd-cgroup
        (native/sdbus.c; dbus-daemon links it too), with the libraries it needs."""
        files = sorted(self.elf_files())
        dlopened = [p for name in DLOPENED for p in glob.glob(f"/lib/*-linux-gnu/{name}")[:1]]
        out = subprocess.run(["ldd", *files, *dlopened], capture_output=True, text=True).stdout if files else ""
        libs = set(re.findall(r"^\s+(?:\S+ => )?(/\S+) \(0x", out, re.M))
        libs.update(dlopened)
        for lib in sorted(libs):
            self.add(lib)

    def fingerprint(self):
        """A hash of every entry: path, kind, mode, mtime, and a file's size and inode change time."""
        h = hashlib.sha256()
        for path in sorted(self.entries):
            entry = self.entries[path]
            h.update(repr(entry[:3]).encode() + path.encode() + b"\0")
            if entry[0] == "file":
                st = os.stat(entry[3])
                h.update(f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}".encode())
            elif entry[0] in ("link", "data", "node"):
                h.update(repr(entry[3]).encode())
        return h.hexdigest()

    def write_cpio(self, out, first_ino=1):
        """Write the tree as a newc cpio archive (parents before children); return the
        next free inode number, for an archive that follows this one."""
        ino = first_ino
        for path in sorted(self.entries):
            kind, mode, mtime, *rest = self.entries[path]
            data, rdev = b"", 0
            if kind == "file":
                with open(rest[0], "rb") as f:
                    data = f.read()
            elif kind == "data":
                data = rest[0] if isinstance(rest[0], bytes) else rest[0].encode()
            elif kind == "link":
                data = rest[0].encode()
            elif kind == "node":
                rdev = rest[0]
            _cpio_entry(out, path.lstrip("/"), ino, mode, mtime, data, rdev)
            ino += 1
        _cpio_entry(out, "TRAILER!!!", 0, 0, 0, b"", 0)
        return ino


def _cpio_entry(out, name, ino, mode, mtime, data, rdev):
    name = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, mtime & 0xFFFFFFFF, len(data), 0, 0,
              os.major(rdev), os.minor(rdev), len(name), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header + name + b"\0" * (-(len(header) + len(name)) % 4))
    out.write(data + b"\0" * (-len(data) % 4))


# --- what the guest needs ---------------------------------------------------------------


def default_python(project):
    """The interpreter the guest runs pytest with: this one when it is a venv's (as when
    the tests run), else the project's .venv."""
    if sys.prefix != sys.base_prefix:
        return os.path.join(sys.prefix, "bin", os.path.basename(sys.executable))
    return os.path.join(project, ".venv", "bin", "python3")


def venv_of(path):
    """The virtualenv directory ``path`` (a python or a script in its bin/) belongs to, or None."""
    d = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return d if os.path.isfile(os.path.join(d, "pyvenv.cfg")) else None


def launcher_paths(binary):
    """The absolute paths compiled into the static launcher (native/launcher.c: the venv's
    python and the launcher script), those that exist here."""
    with open(binary, "rb") as f:
        blob = f.read()
    found = {m.decode() for m in re.findall(rb"\0(/[\w./+-]+)\0", blob)}
    return sorted(p for p in found if p.endswith(("-launcher", "/python3")) and os.path.isfile(p))


def python_paths(python):
    """The directories ``python`` imports from (standard library, lib-dynload, its venv's site-packages)."""
    out = subprocess.run([python, "-I", "-c", "import sys; print('\\n'.join(sys.path))"], capture_output=True,
                         text=True, check=True).stdout
    return [p for p in out.splitlines() if p and os.path.isdir(p)]


def base_tree(python, runtime, modules=()):
    """Everything but the project: interpreter, standard library, venvs, runtime, busybox,
    runc, criu and ip, systemd and dbus (the systemd guest's), libraries, and the kernel
    module files ``modules`` (kernel_modules())."""
    for path, what in ((python, "the tests' python"), (runtime, "the ociruntime launcher"), (BUSYBOX, "busybox"),
                       (RUNC, "runc"), (APPARMOR_PARSER, "apparmor_parser"), (CRIU, "criu"),
                       *((path, "criu's ip, iptables, tar, gzip, sh") for path in (*CRIU_TOOLS, XTABLES)),
                       *((path, "systemd, dbus") for path in (*SYSTEMD_FILES, CGROUPS_AGENT)),
                       *((path, "containerd") for path in CONTAINERD_FILES),
                       *((path, "podman, conmon") for path in PODMAN_FILES)):
        if not os.path.exists(path):
            raise LaneError(f"{path} ({what}) is missing: run scripts/setup.sh")
    tree = Tree()
    tree.add(python)
    venvs = {venv_of(python)}
    shim = os.path.join(os.path.dirname(runtime), devbuild.SHIM)  # our containerd shim, where it is beside it
    for binary in (runtime, shim) if os.path.exists(shim) else (runtime,):
        tree.add(binary)
        for path in launcher_paths(binary):
            tree.add(path)
            venvs.add(venv_of(path))
    for venv in sorted(v for v in venvs if v):
        tree.add(venv, walk=True, skip=lambda p, venv=venv: os.path.relpath(p, venv) in VENV_SKIP)
    for d in python_paths(python):
        if not any(d == v or d.startswith(v + "/") for v in venvs if v):
            tree.add(d, walk=True, skip=_stdlib_skip)
    tree.add(BUSYBOX)
    tree.add(RUNC)
    tree.add(APPARMOR_PARSER)
    tree.add(CRIU)
    for path in CRIU_TOOLS:
        tree.add(path)
    tree.add(XTABLES, walk=True)
    for path in (*SYSTEMD_FILES, CGROUPS_AGENT):
        tree.add(path, walk=True)
    for path in (*CONTAINERD_FILES, *PODMAN_FILES):
        tree.add(path)
    tree.add_shared_libraries()
    for path in modules:
        tree.add(path)
    return tree


def kernel_modules(kernel, names=CRIU_MODULES):
    """The module files of ``kernel`` (its version from its file name, vmlinuz-<version>)
    that load ``names``, each after those it depends on (modules.dep); a module built into
    the kernel has none.

    The guest loads them with busybox's insmod, in this order, rather than with modprobe:
    the order is known here, so the guest needs no modules.dep (nor the rest of depmod's
    files busybox's modprobe looks for), and a module that fails is named by its own
    file, not by the one that pulled it in."""
    name = os.path.basename(kernel)
    version = name[len("vmlinuz-"):] if name.startswith("vmlinuz-") else None
    moddir = f"/lib/modules/{version}"
    if not version or not os.path.isfile(f"{moddir}/modules.dep"):
        raise LaneError(f"no modules for the guest's kernel {kernel} (looked for {moddir}/modules.dep from its "
                        f"name vmlinuz-<version>): apt-get install {PACKAGES} (scripts/setup.sh does)")
    deps = {}
    with open(f"{moddir}/modules.dep") as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
    with open(f"{moddir}/modules.builtin") as f:
        builtin = {_module_name(line.strip()) for line in f}
    by_name = {_module_name(path): path for path in deps}
    order = []

    def visit(path):
        if path not in order:
            for dep in deps.get(path, ()):
                visit(dep)
            order.append(path)

    for module in names:
        if module in by_name:
            visit(by_name[module])
        elif module not in builtin:
            raise LaneError(f"the guest's kernel {version} has no module {module} ({moddir}/modules.dep)")
    return [f"{moddir}/{path}" for path in order]


def _module_name(path):
    """A module's name from its file's path: kernel/net/ipv4/tcp_diag.ko -> tcp_diag (dashes as underscores)."""
    return re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path)).replace("-", "_")


def _stdlib_skip(path):
    name = os.path.basename(path)
    return name in STDLIB_SKIP or name.startswith("config-") and os.path.isdir(path)


def project_tree(project, python, pytest_args, under_test, systemd=False, command=None, modules=()):
    """The project tree, the guest's init and the few files the guest makes no other way
    (the system bus's user; for the systemd guest, its unit and a machine id)."""
    tree = Tree()

    def skip(path):
        name = os.path.basename(path)
        return name in PROJECT_SKIP or name.endswith(".egg-info")

    tree.add(project, walk=True, skip=skip)
    for d in ("/proc", "/sys", "/dev", "/run", "/root", "/etc", "/v2lane"):
        tree.dir(d)
    tree.dir("/tmp", 0o1777)
    tree.node("/dev/console", stat.S_IFCHR | 0o600, 5, 1)  # the init's stdio, before devtmpfs is mounted
    tree.data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/nonexistent:/bin/false\n"
              "nobody:x:65534:65534:nobody:/:/bin/false\n")
    tree.data("/etc/group", "root:x:0:\ntty:x:5:\nmessagebus:x:101:\nnogroup:x:65534:\n")
    tree.data("/init", guest_init(project, python, pytest_args, under_test, systemd, command, modules), 0o755)
    if systemd:
        # One of its own, each boot: without one, systemd takes the boot for the first and presets every unit.
        tree.data("/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
        for d in ("/etc/systemd", "/etc/systemd/system"):
            tree.dir(d)
        with open(os.path.join(HERE, UNIT)) as f:
            tree.data(f"/etc/systemd/system/{UNIT}", f.read())
    return tree


def pytest_command(project, python, pytest_args, systemd=False):
    """The guest's pytest; -rfEsxXp: a summary line for every outcome ("PASSED <node id>")."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEsxXp", "-m", MARKERS[systemd],
            *(pytest_args or [os.path.join(project, "tests")])]


def guest_tests(project, python, pytest_args, systemd=False):
    """The node ids the guest must pass: its selection, collected here as the guest would
    (V2LANE_COLLECT=1: conftest deselects nothing for the guest). This also leaves the
    project's __pycache__ holding the bytecode of the test modules (assertions rewritten by
    pytest) and of what they import: compiling them in the guest took ~10 of its ~16 s of
    pytest (TCG is slow at that)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([*pytest_command(project, python, pytest_args, systemd), "--collect-only"], cwd=project,
                          env={**env, "V2LANE_COLLECT": "1"}, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode not in (0, 5):  # 5: nothing selected, which the lane reports
        raise LaneError(f"collecting the guest's tests here failed:\n{proc.stdout}{proc.stderr}")
    return {line for line in proc.stdout.splitlines() if "::" in line}


def guest_init(project, python, pytest_args, under_test, systemd=False, command=None, modules=()):
    """The guest's /init: init.sh filled in; it loads the kernel module files ``modules``
    (the plain guest, in this order) and runs pytest, or ``command`` (a shell command line:
    a benchmark) in its place."""
    command = [BUSYBOX, "sh", "-c", command] if command else pytest_command(project, python, pytest_args, systemd)
    # What was packed, named: the guest's conftest neither looks for nor builds another (no compiler there).
    env = (f"export OCIRUNTIME={shlex.quote(under_test.runtime)} "
           f"OCIRUNTIME_LAUNCHER_SCRIPT={shlex.quote(under_test.script)}")
    path = ":".join(dict.fromkeys([os.path.dirname(under_test.runtime), "/usr/local/sbin", "/usr/local/bin",
                                   "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    with open(os.path.join(HERE, "init.sh")) as f:
        script = f.read()
    for key, value in (("@PATH@", path), ("@ENV@", env), ("@PROJECT@", shlex.quote(project)),
                       ("@COMMAND@", shlex.join(command)), ("@SYSTEMD@", SYSTEMD if systemd else ""),
                       ("@MODULES@", shlex.join(modules))):
        script = script.replace(key, value)
    return script


def build(project, python=None, pytest_args=(), cache_dir=None, log=None, systemd=False, command=None):
    """Write the guest's initramfs (``systemd``: the systemd guest's; ``command``: run that
    shell command line instead of pytest); return (its path, {step: seconds}, the node ids
    the guest must pass: none for a command)."""
    log = log or (lambda msg: None)
    project = os.path.abspath(project)
    if project != devbuild.PROJECT and not os.environ.get("OCIRUNTIME"):
        raise LaneError(f"{project} is not this checkout: run its own tests/vm/lane.py, or name the "
                        "ociruntime to test in OCIRUNTIME")
    python = python or default_python(project)
    cache_dir = cache_dir or os.path.join(project, "build", "v2-lane")
    os.makedirs(cache_dir, exist_ok=True)
    times = {}
    t0 = time.monotonic()
    under_test = devbuild.under_test()  # the command the tests here run, rebuilt if native/ changed
    modules = kernel_modules(find_kernel(), CRIU_MODULES + PODMAN_MODULES)
    base = base_tree(python, under_test.runtime, modules)
    with open(__file__, "rb") as f:
        key = hashlib.sha256(f.read() + base.fingerprint().encode()).hexdigest()[:16]
    times["scan"] = time.monotonic() - t0
    base_path = os.path.join(cache_dir, f"base-{key}.cpio")
    t0 = time.monotonic()
    if os.path.exists(base_path):
        log(f"v2-lane: base archive cached: {base_path}")
    else:
        for old in glob.glob(os.path.join(cache_dir, "base-*.cpio")):
            os.unlink(old)
        with open(base_path + ".tmp", "wb") as out:
            base.write_cpio(out)
        os.rename(base_path + ".tmp", base_path)
        log(f"v2-lane: base archive built: {base_path} ({os.path.getsize(base_path) >> 20} MiB, "
            f"{len(base.entries)} entries)")
    times["base"] = time.monotonic() - t0
    t0 = time.monotonic()
    expected = set() if command else guest_tests(project, python, pytest_args, systemd)
    times["collect"] = time.monotonic() - t0
    t0 = time.monotonic()
    initrd = os.path.join(cache_dir, f"initrd{_suffix(systemd)}.cpio")
    with open(initrd + ".tmp", "wb") as out:
        with open(base_path, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        project_tree(project, python, pytest_args, under_test, systemd, command, modules).write_cpio(
            out, first_ino=len(base.entries) + 1)
    os.rename(initrd + ".tmp", initrd)
    times["project"] = time.monotonic() - t0
    log(f"v2-lane: initramfs {initrd} ({os.path.getsize(initrd) >> 20} MiB) in {sum(times.values()):.2f}s: "
        + ", ".join(f"{step} {seconds:.2f}s" for step, seconds in times.items()))
    return initrd, times, expected


# --- the guest --------------------------------------------------------------------------


def find_kernel():
    kernel = os.environ.get("V2LANE_KERNEL")
    if kernel:
        if not os.path.isfile(kernel):
            raise LaneError(f"V2LANE_KERNEL={kernel} is not a file")
        return kernel
    found = sorted(glob.glob(KERNEL_GLOB), key=lambda p: [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", p)])
    if not found:
        raise LaneError(f"no kernel {KERNEL_GLOB}: apt-get install {PACKAGES} (scripts/setup.sh does)")
    return found[-1]


def find_qemu():
    qemu = shutil.which(QEMU)
    if not qemu:
        raise LaneError(f"{QEMU} is missing: apt-get install {PACKAGES} (scripts/setup.sh does)")
    return qemu


class Boot:
    """One finished guest: its console lines, pytest's exit code (None: no marker) and timings."""

    def __init__(self, lines, exit_code, timed_out, booted, elapsed):
        self.lines, self.exit_code, self.timed_out = lines, exit_code, timed_out
        self.booted, self.elapsed = booted, elapsed  # seconds to the init's first line, to qemu's exit

    @property
    def output(self):
        return "\n".join(self.lines)

    def pytest_output(self):
        """The console between the init's first line and its marker: pytest's own output."""
        start = next((i + 1 for i, line in enumerate(self.lines) if line.startswith("V2LANE-BOOTED")), 0)
        end = next((i for i, line in enumerate(self.lines) if line.startswith("V2LANE-DONE")), len(self.lines))
        return "\n".join(self.lines[start:end])

    def summary(self):
        """pytest's last line, e.g. "3 passed, 1 deselected in 12.34s" (without the ='s)."""
        for line in reversed(self.lines):
            if re.search(r"\d+ (passed|failed|errors?|skipped|deselected)\b|no tests ran", line):
                return line.strip("= ")
        return None

    def passed(self):
        """The node ids pytest's summary says passed (a "PASSED <node id>" line each)."""
        return {line[len("PASSED "):] for line in self.lines if line.startswith("PASSED ")}

    def not_passed(self):
        """What the guest had to pass and didn't (failed, skipped, deselected, never ran), sorted."""
        return sorted(self.expected - self.passed())


def _die_with_parent():
    """In qemu's child before the exec: be killed when we die, even by SIGKILL (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


# One host thread emulates both CPUs (thread=single): as fast here as a thread per CPU,
# kinder to a shared CI host, and clear of cross-CPU races in multi-threaded TCG. Two
# CPUs, so that tests can pin and limit to one of several.
ACCEL = "tcg,thread=single"
# quiet, but with the kernel's warnings (loglevel=5: a backtrace shows); a CPU stuck in
# the kernel for 60 s (watchdog_thresh=30) panics, and so ends the guest, at once.
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet loglevel=5 softlockup_panic=1 watchdog_thresh=30"
# The v1 systemd guest (--cgroup-v1): the same initramfs, its kernel command line telling
# systemd to mount the legacy hierarchies (a v1 one for each controller and its own,
# name=systemd; no cgroup2 at all: without the second argument systemd 252 mounts the hybrid
# layout). On v1 systemd hears that a cgroup emptied from the kernel's release agent, its
# cgroups-agent: without it a scope whose processes all exited stays active.
CGROUP_V1_ARGS = "systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1"
CGROUPS_AGENT = "/lib/systemd/systemd-cgroups-agent"


def boot(initrd, timeout=1800, memory=2048, cpus=2, echo=None, kernel=None, cgroup_v1=False):
    """Boot the guest on ``initrd`` and wait for it to power off (killed after ``timeout``
    seconds); ``echo(line)`` sees each console line as it comes. ``cgroup_v1``: the kernel
    command line tells systemd to mount cgroup v1 (CGROUP_V1_ARGS). V2LANE_ACCEL overrides
    qemu's -accel (e.g. ``tcg`` for a thread per CPU)."""
    cmd = [find_qemu(), "-accel", os.environ.get("V2LANE_ACCEL") or ACCEL, "-m", str(memory), "-smp", str(cpus),
           "-nographic", "-nic", "none", "-no-reboot", "-kernel", kernel or find_kernel(), "-initrd", initrd,
           "-append", f"{KERNEL_ARGS} {CGROUP_V1_ARGS}" if cgroup_v1 else KERNEL_ARGS]
    lines, booted = [], [None]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)

    def pump():
        for raw in proc.stdout:
            line = ANSI.sub("", raw.decode(errors="replace")).rstrip("\r\n").replace("\r", "")
            if booted[0] is None and line.startswith("V2LANE-BOOTED"):
                booted[0] = time.monotonic() - start
            lines.append(line)
            if echo:
                echo(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:  # timed out, or interrupted: never leave a qemu behind
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    exit_code = next((int(line[len(EXIT_MARKER):]) for line in reversed(lines)
                      if re.fullmatch(re.escape(EXIT_MARKER) + r"\d+", line)), None)
    return Boot(lines, exit_code, timed_out, booted[0], time.monotonic() - start)


def run(project, python=None, pytest_args=(), timeout=1800, echo=None, log=None, cpus=2, systemd=False,
        command=None, cgroup_v1=False):
    """Build and boot (``systemd``: the systemd guest; with ``cgroup_v1``, on cgroup v1); the
    Boot, with ``build_times``, ``expected`` (the node ids the guest must pass) and
    ``console_log`` (the console, also written as it comes to console.log,
    console-systemd.log for the systemd guest, console-systemd-v1.log on v1, beside the
    initramfs: ``tail -f`` it)."""
    if cgroup_v1 and not systemd:
        raise LaneError("--cgroup-v1 is the systemd guest's (--systemd): the plain guest is the cgroup v2 one")
    with _locked(project, log):
        initrd, times, expected = build(project, python, pytest_args, log=log, systemd=systemd, command=command)
        console_log = os.path.join(os.path.dirname(initrd), f"console{_suffix(systemd)}{'-v1' * cgroup_v1}.log")
        result = _boot_logged(initrd, console_log, timeout, echo, cpus, cgroup_v1)
    result.build_times, result.expected, result.console_log = times, expected, console_log
    return result


def _suffix(systemd):
    """What names the systemd guest's files in the cache directory apart (they share the base)."""
    return "-systemd" if systemd else ""


def _boot_logged(initrd, console_log, timeout, echo, cpus, cgroup_v1):
    with open(console_log, "w") as f:

        def write(line):
            f.write(line + "\n")
            f.flush()
            if echo:
                echo(line)

        return boot(initrd, timeout=timeout, echo=write, cpus=cpus, cgroup_v1=cgroup_v1)


@contextlib.contextmanager
def _locked(project, log):
    """One lane at a time per project: they share the initramfs and console.log."""
    lock_dir = os.path.join(os.path.abspath(project), "build")
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, "v2-lane.lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log("v2-lane: another lane of this project is running: waiting for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=os.path.dirname(os.path.dirname(HERE)),
                        help="the project checkout to test (default: the one holding this file)")
    parser.add_argument("--python", help="the guest's python (default: this venv's, else <project>/.venv's)")
    parser.add_argument("--build-only", action="store_true", help="write the initramfs, print its path")
    parser.add_argument("--timeout", type=float, default=1800, help="kill the guest after this many seconds")
    parser.add_argument("--cpus", type=int, default=2, help="the guest's CPUs (default 2)")
    parser.add_argument("--systemd", action="store_true",
                        help="the systemd guest (systemd pid 1, the system bus): the tests marked systemd")
    parser.add_argument("--cgroup-v1", action="store_true",
                        help="with --systemd: systemd on cgroup v1 (legacy hierarchies) instead of v2")
    parser.add_argument("--command", help="a shell command line the guest runs in the project instead of pytest "
                        "(e.g. a benchmark); its exit code is the lane's")
    parser.add_argument("pytest_args", nargs="*", help="instead of <project>/tests (after --)")
    args = parser.parse_args(argv)
    if args.cgroup_v1 and not args.systemd:
        parser.error("--cgroup-v1 goes with --systemd (the plain guest is the cgroup v2 one)")
    try:
        if args.build_only:
            with _locked(args.project, print):
                print(build(args.project, args.python, args.pytest_args, log=print, systemd=args.systemd,
                            command=args.command)[0])
            return 0
        result = run(args.project, args.python, args.pytest_args, timeout=args.timeout, cpus=args.cpus,
                     echo=lambda line: print(line, flush=True), log=lambda msg: print(msg, flush=True),
                     systemd=args.systemd, command=args.command, cgroup_v1=args.cgroup_v1)
    except LaneError as e:
        print(f"v2-lane: {e}", file=sys.stderr)
        return 2
    booted = f"{result.booted:.1f}s" if result.booted is not None else "never"
    print(f"v2-lane: booted in {booted}, qemu ended after {result.elapsed:.1f}s"
          + (f" (TIMED OUT after {args.timeout:.0f}s, killed)" if result.timed_out else ""))
    missing = result.not_passed()
    if missing:
        print(f"v2-lane: {len(missing)} of the {len(result.expected)} tests selected for the guest did not pass "
              "there:\n  " + "\n  ".join(missing))
    return 1 if result.exit_code is None or (missing and not result.exit_code) else result.exit_code


if __name__ == "__main__":
    sys.exit(main())
