"""An ordinary user of a test module's own (``ordinary_user``): useradd with ranges in
/etc/subuid and /etc/subgid, an XDG_RUNTIME_DIR (/run/user/UID) and a work directory
(its HOME) it owns. Afterwards everything it made goes — its processes (its uid, or in a
user namespace it made: a container's, as its sub-ids too), the mounts below its
directories, the directories, the user, its group and its /etc/subuid and /etc/subgid
lines — and what is still there then fails the module's teardown, each leftover named
(``leftovers``, ``gone``): also a file of its uid or gid made since in /tmp, /var/tmp,
/run or /dev/shm.

Sub-ids are not a process's or a file's mark of the user: useradd gives the first free
range (100000 on a fresh machine), the very ids other tests map containers to.

Used by tests/test_rootless.py (the runtime as the user) and tests/test_podman_rootless.py
(rootless podman as the user); each names its users with a prefix of its own.
"""

import contextlib
import fcntl
import grp
import os
import pwd
import shutil
import struct
import subprocess
import tempfile
import time
import uuid

from containerd import _command, kill_until_gone  # (_command: a process's command line)

SUBID_FILES = ("/etc/subuid", "/etc/subgid")
# Where a user's stray files would outlive it (a recursive walk: they are small).
SHARED_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm")
NS_GET_OWNER_UID = 0xB704  # ioctl on a user namespace's fd: the uid that made it


class User:
    def __init__(self, name):
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, entry.pw_uid, entry.pw_gid
        self.xdg = f"/run/user/{self.uid}"
        self.work = tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp")
        self.subuid, self.subgid = _subids("/etc/subuid", name), _subids("/etc/subgid", name)
        self.ids = {"ociruntime": set(), "runc": set()}
        self.since = time.time()

    def env(self, **extra):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.work,
               "USER": self.name, "LOGNAME": self.name, "XDG_RUNTIME_DIR": self.xdg}
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def setpriv(self):
        """The start of a command line that runs the rest as the user (its uid and gid, no
        supplementary groups, no capabilities): for commands whose caller needs the argv,
        such as a pty's (tests/test_podman.py's Terminal)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]

    def run(self, *args, env=None, timeout=60, cgroup=None):
        """Run ``args`` as the user: its uid and gid, no supplementary groups; in the cgroup
        v2 directory ``cgroup`` if given (moved there while still root). Output goes
        through files: a created container keeps the stdio it inherited."""
        def become():
            if cgroup:
                with open(f"{cgroup}/cgroup.procs", "w") as f:
                    f.write("0")
            os.setgroups([])
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)

        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  preexec_fn=become, env=env or self.env(), cwd=self.work,
                                  timeout=timeout).returncode
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(args, code, out.read(), err.read())

    def processes(self):
        """Pids of the user's live processes: its uid (any of the four), or in a user
        namespace it made (a dead container's init is a zombie until its parent — this
        process for run, the host's init after create — reaps it)."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if str(self.uid) not in fields.get("Uid", "").split() and _userns_owner(pid) != self.uid:
                continue
            if fields.get("State", "").split()[:1] == ["Z"]:  # dead: whoever is its parent reaps it
                try:
                    os.waitpid(int(pid), os.WNOHANG)
                except ChildProcessError:
                    pass
                continue
            found.append(int(pid))
        return found


def _userns_owner(pid):
    """The uid that made the process's user namespace (as the host sees it), None for the
    host's or a process gone."""
    try:
        if os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user"):
            return None
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return struct.unpack("I", fcntl.ioctl(fd, NS_GET_OWNER_UID, bytes(4)))[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def _subids(path, name):
    """(first, count) of the user's first range in /etc/subuid or /etc/subgid, or None."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            owner, first, count = line.strip().split(":")
            if owner == name:
                return int(first), int(count)
    return None


def _drop_subids(name):
    """Remove the user's lines, and only those: another session may add its own meanwhile."""
    for path in SUBID_FILES:
        with open(path) as f:
            lines = f.readlines()
        kept = [line for line in lines if line.split(":")[0] != name]
        if kept != lines:
            with open(path, "w") as f:
                f.writelines(kept)


def unmount_below(path):
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _create(prefix):
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=65536", "-K", "SUB_GID_COUNT=65536",
                    name], check=True, capture_output=True)
    return name


def _give_subids(u):
    """A useradd that assigns none: a range past every other."""
    _drop_subids(u.name)
    first = 1 + max([99999] + [s + c - 1 for p in SUBID_FILES for _, s, c in
                               (map(int, (0, *line.split(":")[1:])) for line in open(p) if line.strip())])
    subprocess.run(["usermod", "--add-subuids", f"{first}-{first + 65535}", "--add-subgids",
                    f"{first}-{first + 65535}", u.name], check=True, capture_output=True)
    u.subuid = u.subgid = (first, 65536)


def remove(u):
    """Kill the user's processes, unmount and remove its directories (what a failed test
    left too). Before userdel: a uid freed may be given to another session's user."""
    kill_until_gone(u.processes)
    for path in (u.work, u.xdg):
        unmount_below(path)
        shutil.rmtree(path, ignore_errors=True)


def leftovers(u):
    """What of the user is still on the machine after ``remove``, before userdel: []."""
    found = [f"process {pid} {_command(pid)}" for pid in u.processes()]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f
                  if any(line.split()[4] == p or line.split()[4].startswith(p + "/") for p in (u.work, u.xdg))]
    found += [f"directory {p}" for p in (u.work, u.xdg) if os.path.lexists(p)]
    proc = subprocess.run(["find", *SHARED_DIRS, "-xdev", "-newerct", f"@{u.since:.3f}", "(", "-uid", str(u.uid),
                           "-o", "-gid", str(u.gid), ")", "-print"], capture_output=True, text=True, timeout=120)
    found += [f"file {path}" for path in proc.stdout.splitlines()]
    return found


def gone(name):
    """What of the user's records is left after userdel: []."""
    found = []
    for what, lookup in (("passwd", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            lookup(name)
            found.append(f"{what} entry {name}")
        except KeyError:
            pass
    for path in SUBID_FILES:
        with open(path) as f:
            found += [f"{path}: {line.strip()}" for line in f if line.split(":")[0] == name]
    return found


@contextlib.contextmanager
def ordinary_user(prefix):
    """A new user named ``prefix`` + 6 hex digits (see the module's docstring); on leaving,
    all it made is removed, and AssertionError names whatever was left."""
    name = _create(prefix)
    u = None
    found = []
    try:
        u = User(name)
        if u.subuid is None or u.subgid is None:
            _give_subids(u)
        os.makedirs(u.xdg, 0o700, exist_ok=True)
        os.chown(u.xdg, u.uid, u.gid)
        os.chmod(u.xdg, 0o700)
        os.chown(u.work, u.uid, u.gid)
        yield u
    finally:
        if u is not None:
            remove(u)
            found += leftovers(u)
        subprocess.run(["userdel", name], capture_output=True)
        _drop_subids(name)
        found += gone(name)
    assert not found, f"the user {name} left behind: {found}"
