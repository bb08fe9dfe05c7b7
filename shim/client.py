"""A shim for engines without containerd: the same ``containerd-shim-ociruntime-v2`` process,
started for a bundle and driven through its Task service by this class.

    from ociruntime_shim.client import Shim

    shim = Shim.launch("/path/to/bundle", "web", namespace="myengine")
    shim.create(log="/var/log/web.log", stdin=True)   # the container's stdout and stderr go to the log
    shim.start()
    shim.write_stdin(b"hello\\n"); shim.close_stdin()
    status = shim.wait()                               # (exit status, exited at) — also from a new
    shim.delete()                                      # Shim.connect(bundle) after the engine restarted

The shim outlives the engine: it holds the container's stdio and its exit status until
``delete``. Without containerd there is no event stream (events are dropped); ``wait``
is how an engine learns of an exit.
"""

import posix
import subprocess
import sys

from .protocol import message, pack_any
from .ttrpc import NAMESPACE_KEY, Client, ConnectionClosed

SERVICE = "containerd.task.v2.Task"
SHIM = "containerd-shim-ociruntime-v2"


class Shim:
    def __init__(self, address, bundle, container_id, namespace):
        self.address, self.bundle, self.id, self.namespace = address, bundle, container_id, namespace
        self.client = Client(address)
        self._stdin = None

    @classmethod
    def launch(cls, bundle, container_id, *, namespace="default", binary=SHIM, engine="ociruntime-client",
               shim_cgroup=None):
        """Start (or join: see shim/main.py's grouping) the shim for ``bundle`` and connect.
        ``shim_cgroup``: the cgroup a new shim is started in (containerd's runtime option)."""
        bundle = _abspath(bundle)
        options = b""  # containerd writes the task's runtime options to start's stdin
        if shim_cgroup:
            options = pack_any(message("containerd.runc.v1.Options")(shim_cgroup=shim_cgroup)).SerializeToString()
        proc = subprocess.run([binary, "-namespace", namespace, "-address", engine, "-id", container_id, "start"],
                              cwd=bundle, input=options, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{binary} start: {proc.stderr.decode().strip() or proc.returncode}")
        return cls(proc.stdout.decode().strip(), bundle, container_id, namespace)

    @classmethod
    def connect(cls, bundle, container_id, *, namespace="default"):
        """Reach the shim of a container created earlier (by this engine before it restarted)."""
        bundle = _abspath(bundle)
        with open(f"{bundle}/address") as f:
            return cls(f.read().strip(), bundle, container_id, namespace)

    def _call(self, method, request_name, response_name="google.protobuf.Empty", timeout=60, **fields):
        request = message(f"containerd.task.v2.{request_name}")(id=self.id, **fields)
        return self.client.call(SERVICE, method, request, message(response_name), timeout=timeout,
                                metadata={NAMESPACE_KEY: self.namespace})

    def create(self, log=None, stdin=False, terminal=False, root=None, io_owner=None, systemd_cgroup=False,
               checkpoint=""):
        """Create the container; its stdout and stderr are appended to ``log`` (if given). With
        ``stdin`` a FIFO in the bundle is its stdin: ``write_stdin``. ``root``: the runtime's
        state directory (the shim's default: /run/containerd/ociruntime/<namespace>).
        ``io_owner``: (uid, gid) owning the container's ends of its stdio pipes.
        ``systemd_cgroup``: containerd's SystemdCgroup, the systemd cgroup driver. The init's pid.
        ``checkpoint``: the images of a checkpoint (``checkpoint``'s ``path``) to restore the
        container from, at ``start`` (the pid is then 0 until ``start`` returns it)."""
        stdin_path = ""
        if stdin:
            stdin_path = f"{self.bundle}/stdin"
            if not posix.access(stdin_path, posix.F_OK):
                posix.mkfifo(stdin_path, 0o600)
        out = f"file://{log}" if log else ""
        uid, gid = io_owner or (0, 0)
        options = None
        if root or io_owner or systemd_cgroup:
            options = pack_any(message("containerd.runc.v1.Options")(root=root, io_uid=uid, io_gid=gid,
                                                                     systemd_cgroup=systemd_cgroup))
        return self._call("Create", "CreateTaskRequest", "containerd.task.v2.CreateTaskResponse",
                          bundle=self.bundle, stdin=stdin_path, stdout=out, stderr=out, terminal=terminal,
                          options=options, checkpoint=checkpoint).pid

    def checkpoint(self, path, exit=False, **options):
        """Save the running container to CRIU images in ``path``; with ``exit`` it is gone
        afterwards (its exit status is then ``wait``'s), else it runs on. ``options``: the
        other fields of containerd.runc.v1.CheckpointOptions (``open_tcp``,
        ``external_unix_sockets``, ``terminal``, ``file_locks``, ``empty_namespaces``,
        ``cgroups_mode``, ``work_path``)."""
        opts = message("containerd.runc.v1.CheckpointOptions")(exit=exit, **options)
        self._call("Checkpoint", "CheckpointTaskRequest", path=path, options=pack_any(opts), timeout=120)

    def start(self):
        return self._call("Start", "StartRequest", "containerd.task.v2.StartResponse").pid

    def write_stdin(self, data):
        if self._stdin is None:
            self._stdin = posix.open(f"{self.bundle}/stdin", posix.O_WRONLY | posix.O_CLOEXEC)
        posix.write(self._stdin, data)

    def close_stdin(self):
        """End the container's stdin (EOF), as CloseIO does."""
        if self._stdin is not None:
            posix.close(self._stdin)
            self._stdin = None
        self._call("CloseIO", "CloseIORequest", stdin=True)

    def state(self):
        return self._call("State", "StateRequest", "containerd.task.v2.StateResponse")

    def pids(self):
        return [p.pid for p in self._call("Pids", "PidsRequest", "containerd.task.v2.PidsResponse").processes]

    def kill(self, signal=15, all=False):
        self._call("Kill", "KillRequest", signal=signal, all=all)

    def wait(self, timeout=None):
        """(exit status, exited at as seconds since the epoch), once the container exited."""
        r = self._call("Wait", "WaitRequest", "containerd.task.v2.WaitResponse", timeout=timeout)
        return r.exit_status, r.exited_at.ToNanoseconds() / 1e9

    def delete(self):
        """Delete the stopped container; the shim exits when it holds no container any more.
        The exit status."""
        r = self._call("Delete", "DeleteRequest", "containerd.task.v2.DeleteResponse")
        self.shutdown()
        return r.exit_status

    def shutdown(self):
        """Let the shim exit if it holds no container (as containerd does after a delete, or
        after a create that failed), and disconnect."""
        try:
            self._call("Shutdown", "ShutdownRequest", timeout=10)
        except (OSError, ConnectionClosed):
            pass  # it went as it answered
        self.close()
        try:
            posix.unlink(f"{self.bundle}/stdin")
        except FileNotFoundError:
            pass

    def close(self):
        """Disconnect; the shim and the container go on."""
        if self._stdin is not None:
            posix.close(self._stdin)
            self._stdin = None
        self.client.close()


def _abspath(path):
    return path if path.startswith("/") else f"{posix.getcwd()}/{path}"


def cli(argv):
    """The shim from a shell, for engines (and people) that script it. ``ociruntime run
    --detach`` keeps runc's behaviour; this keeps the container's stdio and exit status in
    the shim instead."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python3 -m ociruntime_shim.client",
                                     description="Drive a container through its shim, without containerd.")
    parser.add_argument("--namespace", default="default", help="the shim group (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, help):
        sub = commands.add_parser(name, help=help)
        sub.add_argument("bundle")
        sub.add_argument("id")
        return sub

    run = command("run", "launch the shim, create and start the container; print the pid")
    run.add_argument("--log", help="where the container's stdout and stderr go")
    run.add_argument("--root", help="the runtime's state directory")
    run.add_argument("--shim-cgroup", help="the cgroup a new shim starts in (absolute, from each hierarchy's root)")
    command("state", "print status and pid")
    command("kill", "signal the container's init").add_argument("signal", nargs="?", default="TERM")
    command("wait", "print the exit status once it exited, and exit with it")
    command("delete", "delete the stopped container (the shim exits with its last one)")
    args = parser.parse_args(argv)
    if args.command == "run":
        shim = Shim.launch(args.bundle, args.id, namespace=args.namespace, shim_cgroup=args.shim_cgroup)
        shim.create(log=args.log, root=args.root)
        print(shim.start())
        shim.close()
        return 0
    shim = Shim.connect(args.bundle, args.id, namespace=args.namespace)
    code = 0
    if args.command == "state":
        s = shim.state()
        print({1: "created", 2: "running", 3: "stopped", 4: "paused"}.get(s.status, "unknown"), s.pid)
    elif args.command == "kill":
        name = args.signal
        shim.kill(int(name) if name.isdigit() else signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    elif args.command == "wait":
        code = shim.wait()[0]
        print(code)
    elif args.command == "delete":
        shim.delete()
        return 0
    shim.close()
    return code


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
