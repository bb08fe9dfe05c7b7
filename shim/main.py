"""``containerd-shim-ociruntime-v2``: the command containerd runs (runtime/v2/README.md).

    containerd-shim-ociruntime-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
    containerd-shim-ociruntime-v2 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR delete

``start`` runs in the task's bundle. It finds the shim serving the task's group (a pod:
containerd's sandbox annotation; else the whole namespace, so that containers share one
interpreter's memory) and prints its ttrpc address, or starts it: the listening socket is
made here, then a fork becomes the long-lived shim (shim/daemon.py) while this process
prints the address and exits — containerd waits for that exit and for stdout to close.
``delete`` cleans up after a shim that died (shim/cleanup.py).

``start`` is on every container's path, so it imports no protobuf: the address is known
before the daemon has loaded anything, and a connection made early waits in the backlog.
The task's runtime options, which containerd writes to its stdin, are read by hand
(ociruntime/protowire.py) for the one field ``start`` acts on, ``shim_cgroup``.
"""

import posix
import sys

from ociruntime import protowire as wire
from ociruntime.errors import OCIError

# Annotations that put containers in one shim, as containerd-shim-runc-v2 reads them
# (runtime/v2/runc/manager); ours first.
GROUP_ANNOTATIONS = ("io.containerd.ociruntime.v2.group", "io.containerd.runc.v2.group",
                     "io.kubernetes.cri.sandbox-id")
SOCKET_DIR = "/run/containerd/s"  # containerd's own (runtime/v2/shim/util_unix.go: socketRoot)
OPTIONS_TYPE = "containerd.runc.v1.Options"  # shim/proto/containerd.runc.v1.proto
SHIM_CGROUP_FIELD = 3  # Options.shim_cgroup
FLAGS = {"-namespace": "namespace", "-address": "address", "-publish-binary": "publish_binary", "-id": "id",
         "-bundle": "bundle", "-socket": "socket"}


def parse(argv):
    """Go's flag package, as containerd's shims use it: -name value, -name=value, --name."""
    opts = {"debug": False}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        name, eq, value = argv[i].lstrip("-").partition("=")
        key = FLAGS.get("-" + name)
        if name in ("debug", "v"):
            opts["debug" if name == "debug" else "version"] = True
        elif key is None:
            raise OCIError(f"flag provided but not defined: -{name}")
        elif eq:
            opts[key] = value
        elif i + 1 < len(argv):
            i += 1
            opts[key] = argv[i]
        else:
            raise OCIError(f"flag needs an argument: -{name}")
        i += 1
    opts["action"] = argv[i] if i < len(argv) else ""
    return opts


def group_of(annotations, namespace):
    """The shim a task goes to: its pod's (or an explicit group's), else its namespace's."""
    for key in GROUP_ANNOTATIONS:
        if annotations.get(key):
            return f"group:{annotations[key]}"
    return f"namespace:{namespace}"


def socket_address(containerd_address, namespace, group):
    """unix:///run/containerd/s/<sha256>, as containerd's shims name theirs; "ociruntime"
    in the hash keeps ours apart from a runc shim's for the same pod."""
    from _sha256 import sha256

    digest = sha256(f"{containerd_address}/{namespace}/ociruntime/{group}".encode()).hexdigest()
    return f"unix://{SOCKET_DIR}/{digest}"


def start_options(data):
    """What ``start`` takes from the task's runtime options (an Any on its stdin, or
    nothing): ``shim_cgroup``. Options of another type are not ours to read, as the runc
    shim ignores them."""
    if not data:
        return {}
    try:
        packed = dict(wire.fields(data))
        if not isinstance(packed.get(1), bytes) or packed[1].decode().rpartition("/")[2] != OPTIONS_TYPE:
            return {}
        shim_cgroup = dict(wire.fields(packed.get(2, b""))).get(SHIM_CGROUP_FIELD, b"")
        return {"shim_cgroup": shim_cgroup.decode()} if isinstance(shim_cgroup, bytes) else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise OCIError(f"runtime options on stdin: {e}") from None


def join_shim_cgroup(path):
    """Move this process, and so the shim it forks, into the cgroup ``path`` names (from each
    hierarchy's root), as containerd-shim-runc-v2 moves its shim: the cgroup2 directory, or
    every v1 hierarchy that has it."""
    from ociruntime import cgroups, pathnames

    if not path.startswith("/") or pathnames.normpath(path) != path:
        raise OCIError(f"options.shim_cgroup: {path!r} is not an absolute, normalized cgroup path")
    joined = 0
    for mountpoint in cgroups.hierarchies().values():
        try:
            cgroups._write(f"{mountpoint}{path}/cgroup.procs", str(posix.getpid()))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise OCIError(f"options.shim_cgroup: {mountpoint}{path}: {e.strerror}") from None
        joined += 1
    if not joined:
        raise OCIError(f"options.shim_cgroup: {path}: no such cgroup")


def _stdin():
    """All of stdin (containerd writes the options and closes it); nothing from a terminal."""
    if posix.isatty(0):
        return b""
    chunks = []
    try:
        while chunk := posix.read(0, 65536):
            chunks.append(chunk)
    except OSError:  # no stdin at all
        pass
    return b"".join(chunks)


def start(opts):
    from ociruntime import fastjson

    from . import rendezvous

    shim_cgroup = start_options(_stdin()).get("shim_cgroup")
    if shim_cgroup:
        join_shim_cgroup(shim_cgroup)  # the shim forked below is born there (one already serving stays put)
    with open("config.json", "rb") as f:
        annotations = fastjson.loads(f.read()).get("annotations") or {}
    address = socket_address(opts.get("address", ""), opts["namespace"], group_of(annotations, opts["namespace"]))
    listener = rendezvous.join_or_listen(address, opts["id"])
    _write_address(address)
    if listener is not None:
        _spawn_daemon(listener, address, opts)
    posix.write(1, address.encode())


def _write_address(address):
    """The bundle's ``address`` file: containerd reads it to reconnect after a restart."""
    with open(".address", "w") as f:
        f.write(address)
    posix.rename(".address", "address")


def _spawn_daemon(listener, address, opts):
    """Fork the long-lived shim. It leaves containerd's process group and stdio (containerd
    waits for our stdout to close) and logs to the bundle's ``log`` FIFO, which containerd
    reads (else to ``shim.log`` there)."""
    pid = posix.fork()
    if pid:
        listener.close()
        return
    try:
        posix.setsid()
        null = posix.open("/dev/null", posix.O_RDWR)
        posix.dup2(null, 0)
        posix.dup2(null, 1)
        try:  # containerd reads the bundle's log FIFO; an engine without it gets a file there
            log = posix.open("log", posix.O_WRONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        except OSError:
            log = posix.open("shim.log", posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o600)
        posix.dup2(log, 2)
        posix.chdir("/")  # not a bundle: containerd removes those
        from . import daemon

        code = daemon.serve(listener, address, opts)
    except BaseException as e:  # noqa: BLE001 — a daemon's last word goes to its log
        print(f"containerd-shim-ociruntime-v2: {e}", file=sys.stderr)
        code = 1
    posix._exit(code)


def main(argv):
    opts = parse(argv)
    if opts.get("version"):
        from ociruntime import __version__

        print(f"containerd-shim-ociruntime-v2:\n  Version:  {__version__}\n")
        return 0
    if not opts.get("namespace"):
        raise OCIError("shim namespace cannot be empty")
    if opts["action"] == "start":
        from ociruntime import exeseal

        exeseal.ensure_sealed()  # the daemon forked from here clones inits (a pip console script re-executes)
        start(opts)
    elif opts["action"] == "delete":
        from . import cleanup

        posix.write(1, cleanup.after_dead_shim(opts))
    else:
        raise OCIError(f"unknown action {opts['action']!r}: containerd runs the shim with start or delete")
    return 0


def entry():
    try:
        sys.exit(main(sys.argv[1:]))
    except OCIError as e:
        print(f"containerd-shim-ociruntime-v2: {e}", file=sys.stderr)
        sys.exit(1)
