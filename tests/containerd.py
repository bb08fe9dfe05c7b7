"""A private containerd for the tests and the benchmarks: its own root, state, sockets and
namespace in one directory, a busybox image imported offline, and a teardown that proves
it left nothing on the machine.

containerd itself is the machine's (Debian's 1.6); everything it makes is kept findable:
- its root, state, gRPC and ttrpc sockets, its "opt" directory and ctr's FIFOs (``--fifo-dir``)
  are under ``base``; runc shims are pointed at ``runc_root`` there too (``--runc-root``);
- its containers' cgroups are ``/<namespace>/<id>`` in every hierarchy (ctr's default
  cgroupsPath), and the namespace is unique to this instance;
- its shims reparent to init (they ``setsid``), so they are found by their command line,
  which names this instance's socket after ``-address``, and their children by parentage;
- a shim's own socket is ``/run/containerd/s/<sha256(address/namespace/id)>`` where
  containerd's shim library places it (runtime/v2/shim/util_unix.go, SocketAddress), or
  whatever address the shim printed (the bundle's ``address`` file, read by ``shim_address``).

Standard library only: bench/ctr_run.py and bench/shim_memory.py import it too.
"""

import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tarfile
import time

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
IMAGE = "docker.io/library/busybox:ociruntime-test"
SHIM_RUNTIME_ROOT = "/run/containerd/ociruntime"  # our shim's --root for a namespace: <this>/<namespace>
SHIM_SOCKETS = "/run/containerd/s"
CGROUP_ROOT = "/sys/fs/cgroup"
# Plugins a test needs none of: CRI (it would want CNI and pull images) and the snapshotters
# this machine can't back, which only log errors at start-up.
DISABLED_PLUGINS = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]


class Containerd:
    """One containerd daemon with its own directory ``base`` and namespace. ``shim_dir`` goes
    first on its PATH: containerd finds ``containerd-shim-NAME-v2`` there (the shim under test)."""

    def __init__(self, base, shim_dir=None):
        self.base = str(base)
        self.address = os.path.join(self.base, "containerd.sock")
        self.config = os.path.join(self.base, "config.toml")
        self.log = os.path.join(self.base, "containerd.log")
        self.fifo_dir = os.path.join(self.base, "fifo")
        self.runc_root = os.path.join(self.base, "runc")
        self.namespace = f"ocirt-{os.urandom(4).hex()}"
        self.shim_dir = shim_dir
        self.daemon = None
        self.ids = set()  # every container id handed out: their shims' sockets are checked
        self.addresses = {}  # id -> the socket paths its shim was seen to listen on
        os.makedirs(self.base, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    f"disabled_plugins = {json.dumps(DISABLED_PLUGINS)}\n"
                    f'[grpc]\n  address = "{self.address}"\n[ttrpc]\n  address = "{self.address}.ttrpc"\n'
                    # else it makes /opt/containerd on the machine
                    f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.base}/opt"\n')

    # --- the daemon

    def start(self, timeout=30):
        env = dict(os.environ)
        if self.shim_dir:
            env["PATH"] = f"{self.shim_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        with open(self.log, "a") as log:
            self.daemon = subprocess.Popen([CONTAINERD, "--config", self.config], stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.ctr("version", check=False, timeout=10).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not come up: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout=30):
        """SIGTERM, as an init system stops it; SIGKILL after ``timeout``. Its shims stay up
        (their own process groups). containerd 1.6 leaves its ttrpc socket file behind: it
        is its own, and removed here."""
        if self.daemon is None:
            return
        self.daemon.terminate()
        try:
            self.daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.wait()
        self.daemon = None
        for own in (self.address, self.address + ".ttrpc"):
            if os.path.exists(own):
                os.unlink(own)

    def restart(self, timeout=30):
        self.stop(timeout)
        self.start(timeout)

    def log_tail(self, chars=3000):
        with open(self.log, errors="replace") as f:
            return f.read()[-chars:]

    # --- clients

    def ctr_argv(self, *args):
        """``ctr`` on this daemon and namespace."""
        return [CTR, "--address", self.address, "--namespace", self.namespace, *map(str, args)]

    def ctr(self, *args, check=True, timeout=60, input=None):
        """Run ``ctr`` on this daemon and namespace; the CompletedProcess (text)."""
        proc = subprocess.run(self.ctr_argv(*args), capture_output=True, text=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def import_image(self, rootfs, name=IMAGE):
        archive = os.path.join(self.base, "image.tar")
        oci_archive(rootfs, archive, name)
        self.ctr("images", "import", archive, timeout=120)
        os.unlink(archive)

    def new_id(self, prefix="c"):
        cid = f"{prefix}-{os.urandom(5).hex()}"
        self.ids.add(cid)
        return cid

    def bundle(self, cid):
        return os.path.join(self.base, "state", "io.containerd.runtime.v2.task", self.namespace, cid)

    def shim_address(self, cid):
        """The ttrpc address the task's shim printed (containerd keeps it in the bundle);
        remembered, so that what is left there is checked too."""
        with open(os.path.join(self.bundle(cid), "address")) as f:
            address = f.read().strip()
        self.addresses.setdefault(cid, set()).add(address.removeprefix("unix://"))
        return address

    def shim_files(self, cid):
        """What is on the machine of the shim sockets ``cid`` had: the one containerd's shim
        library names for it, and any its shim was seen at, each with files named after it
        (a shim may keep a lock or a directory beside its socket)."""
        digest = hashlib.sha256(os.path.join(self.address, self.namespace, cid).encode()).hexdigest()
        sockets = {os.path.join(SHIM_SOCKETS, digest), *self.addresses.get(cid, ())}
        return sorted(p for s in sockets for p in glob.glob(glob.escape(s) + "*"))

    def tasks(self):
        """{id: (pid, status)} from ``ctr task ls``."""
        rows = [line.split() for line in self.ctr("task", "ls").stdout.splitlines()[1:]]
        return {row[0]: (int(row[1]), row[2]) for row in rows if len(row) == 3}

    # --- what it made

    def shim_pids(self, cid=None):
        """This daemon's shims (of the task ``cid``, if given): ``-address <our socket>`` on their
        command line."""
        found = []
        for pid, argv in _command_lines():
            pairs = set(zip(argv, argv[1:], strict=False))
            if ("-address", self.address) in pairs and (cid is None or ("-id", cid) in pairs):
                found.append(pid)
        return found

    def cgroup_pids(self, cid=None):
        """Processes in a cgroup of our namespace (of the container ``cid``, if given), any hierarchy."""
        prefix = f"/{self.namespace}" + (f"/{cid}" if cid else "")
        found = []
        for pid in _pids():
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    paths = [line.rstrip("\n").split(":", 2)[2] for line in f]
            except OSError:
                continue
            if any(p == prefix or p.startswith(prefix + "/") for p in paths):
                found.append(pid)
        return found

    def processes(self, cid=None):
        """Our shims, whatever they started (a runtime command mid-call), and our containers."""
        shims = self.shim_pids(cid)
        return sorted(set(shims) | _descendants(shims) | set(self.cgroup_pids(cid)))

    def cgroups(self, cid=None):
        """Cgroup directories of the container ``cid``, or all below our namespace's (deepest first)."""
        tops = glob.glob(os.path.join(CGROUP_ROOT, "*", self.namespace, *([cid] if cid else [])))
        below = [os.path.join(d, n) for top in tops for d, subdirs, _ in os.walk(top) for n in subdirs]
        return sorted(below + (tops if cid else []), key=lambda p: -p.count("/"))

    def mounts(self, under=None):
        under = under or self.base
        with open("/proc/self/mountinfo") as f:
            points = [_unescape(line.split()[4]) for line in f]
        return [p for p in points if p == under or p.startswith(under + "/")]

    def leftovers(self, cid, settle=10):
        """What the container ``cid`` left after its task and container were deleted: [].
        Asked again for up to ``settle`` seconds: a shim exits, and a dead shim's `delete`
        action runs, a moment after containerd has answered."""
        deadline = time.monotonic() + settle
        while (found := self._left_by(cid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return found

    def _left_by(self, cid):
        found = [f"container record {cid}"] if cid in self.ctr("containers", "ls", "-q").stdout.split() else []
        found += [f"process {pid}: {_command(pid)}" for pid in self.processes(cid)]
        found += [f"cgroup {d}" for d in self.cgroups(cid)]
        found += [f"mount {m}" for m in self.mounts(self.bundle(cid))]
        found += [f"bundle {p}" for p in [self.bundle(cid)] if os.path.exists(p)]
        found += [f"FIFO {p}" for p in glob.glob(os.path.join(self.fifo_dir, "*", f"{cid}-*"))]
        found += [f"shim socket {p}" for p in self.shim_files(cid)]
        found += [f"runc state {p}" for p in [os.path.join(self.runc_root, self.namespace, cid)] if os.path.exists(p)]
        return found

    def remove(self, cid):
        """Force the container ``cid`` out, as far as containerd and ctr can: its task, its
        record, and the FIFOs of a ctr that didn't get to remove them."""
        self.ctr("task", "delete", "--force", cid, check=False)
        self.ctr("containers", "delete", cid, check=False)
        for fifo in glob.glob(os.path.join(self.fifo_dir, "*", f"{cid}-*")):
            os.unlink(fifo)

    def _on_the_machine(self):
        """What would outlive ``base``: processes, mounts, cgroups, shims' sockets."""
        found = [f"process {pid}: {_command(pid)}" for pid in self.processes()]
        found += [f"mount {m}" for m in self.mounts()]
        found += [f"cgroup {d}" for d in self.cgroups()]
        return found + [f"shim socket {p}" for cid in sorted(self.ids) for p in self.shim_files(cid)]

    def _special_files(self):
        """FIFOs and sockets in ``base``: a task's FIFOs or shim log not removed with it."""
        found = []
        for d, _, files in os.walk(self.base):
            for name in files:
                kind = _special_file(os.path.join(d, name))
                if kind:
                    found.append(f"{kind} {os.path.join(d, name)}")
        return found

    # --- teardown

    def close(self):
        """Delete what is left the way a user would, stop the daemon, then check the machine:
        raise AssertionError naming whatever was left (process, mount, cgroup, FIFO, socket),
        after removing it all anyway."""
        found = []
        try:
            if self.daemon is not None and self.daemon.poll() is None:
                for cid in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                    found.append(f"container record {cid}")
                    self.ctr("task", "delete", "--force", cid, check=False)
                    self.ctr("containers", "delete", cid, check=False)
        except subprocess.TimeoutExpired as e:
            found.append(f"a hung ctr: {e}")
        self.stop()
        found += self._on_the_machine() + self._special_files()
        self._force_clean()
        for top in glob.glob(os.path.join(CGROUP_ROOT, "*", self.namespace)):
            try:
                os.rmdir(top)  # the namespace's own, made along with its first container's
            except OSError as e:
                found.append(f"cgroup {top}: {e.strerror}")
        # Our shim's runtime root for the namespace (and its signing key beside it) stays after
        # the last task, as containerd-shim-runc-v2's /run/containerd/runc/<ns> does: the
        # namespace is this daemon's own, so they go with it; a container's state in there is a leftover.
        root = os.path.join(SHIM_RUNTIME_ROOT, self.namespace)
        if os.path.isdir(root):
            found += [f"runtime state {os.path.join(root, name)}" for name in os.listdir(root)]
            shutil.rmtree(root)
        if os.path.exists(root + ".key"):
            os.unlink(root + ".key")
        remaining = self._on_the_machine()
        if remaining:
            raise AssertionError(f"left behind {found}; could not remove {remaining} (kept {self.base})")
        shutil.rmtree(self.base)
        if found:
            raise AssertionError(f"left behind (now removed): {found}")

    def _force_clean(self):
        for d in self.cgroups():  # a frozen process doesn't die until thawed
            state = os.path.join(d, "freezer.state")
            if os.path.exists(state):
                with open(state, "w") as f:
                    f.write("THAWED")
        kill_until_gone(self.processes)
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30)
        for d in self.cgroups():
            try:
                os.rmdir(d)
            except OSError:
                pass  # reported by the second look
        for path in (p for cid in self.ids for p in self.shim_files(cid)):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


# --- the task service of a shim, called directly (ctr 1.6 has no `task update`)

TASK_SERVICE = "containerd.task.v2.Task"
RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"


def shim_call(address, method, payload, namespace, timeout=60):
    """One ttrpc call to a shim's containerd.task.v2.Task service, as containerd makes it:
    a frame (length, stream id, type 1 = request, flags) around a protobuf Request. Returns
    (ok, the error's message)."""
    request = pb_field(1, TASK_SERVICE.encode()) + pb_field(2, method.encode()) + pb_field(3, payload) + \
        pb_field(5, pb_field(1, b"containerd-namespace") + pb_field(2, namespace.encode()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address.removeprefix("unix://"))
        s.sendall(struct.pack(">IIBB", len(request), 1, 1, 0) + request)
        length = struct.unpack(">IIBB", _recv(s, 10))[0]
        status = dict(pb_fields(_recv(s, length))).get(1)  # Response.status (google.rpc.Status)
    return (False, dict(pb_fields(status)).get(2, b"").decode()) if status else (True, "")


def update_request(cid, resources):
    """An UpdateTaskRequest: containerd sends LinuxResources as JSON in a protobuf Any."""
    return pb_field(1, cid.encode()) + pb_field(2, pb_field(1, RESOURCES_TYPE.encode()) +
                                                 pb_field(2, json.dumps(resources).encode()))


def pb_field(number, data):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def pb_fields(buf):
    """(number, bytes) of each length-delimited field; varint fields are skipped."""
    i = 0

    def varint():
        nonlocal i
        value = shift = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            varint()
            continue
        n = varint()
        yield key >> 3, buf[i:i + n]
        i += n


def _varint(n):
    out = b""
    while n > 0x7F:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def _recv(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the shim hung up")
        data += chunk
    return data


# --- the image

def oci_archive(rootfs, out, name):
    """An OCI image layout tarball with one layer, ``rootfs``; ``ctr images import`` names it ``name``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(str(rootfs), arcname=".")
    blobs = {}

    def blob(data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    lay = blob(layer.getvalue(), "application/vnd.oci.image.layer.v1.tar")
    cfg = blob(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                           "rootfs": {"type": "layers", "diff_ids": [lay["digest"]]}}).encode(),
               "application/vnd.oci.image.config.v1+json")
    manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": cfg, "layers": [lay]}).encode(), "application/vnd.oci.image.manifest.v1+json")
    index = {"schemaVersion": 2, "manifests": [{**manifest, "annotations": {"io.containerd.image.name": name}}]}
    with tarfile.open(out, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(),
                 **{f"blobs/sha256/{d}": b for d, b in blobs.items()}}
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# --- /proc

def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _command_lines():
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        yield pid, argv


def kill_until_gone(processes):
    """SIGKILL the pids ``processes()`` lists until it lists none (5 s at the most)."""
    for _ in range(50):
        pids = processes()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def _descendants(pids):
    children = {}
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _unescape(path):
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _special_file(path):
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else None
