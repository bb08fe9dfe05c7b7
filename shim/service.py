"""containerd's ``containerd.task.v2.Task`` service, on ociruntime's API in this process.

A task is a container: its init process plus the processes ``Exec`` adds. Each process
has its stdio (shim/stdio.py), a pid once started, and an exit status kept until Delete.
The shim is their parent (the API clones with CLONE_PARENT) and a child subreaper, so it
reaps them (``reap``, on SIGCHLD) and is the one that knows their exit status.

Every handler runs on the loop's one thread, start to end: the API's own waits (for its
stage-1 child, for hooks) never race the reaper. Only Wait and Delete answer later
(``ttrpc.Pending``): Wait when the process exits, Delete once its output was copied.

Errors follow containerd-shim-runc-v2's: NotFound for an unknown task or a finished
process's kill, FailedPrecondition for a wrong state, the runtime's own line otherwise.
"""

import posix
import shutil
import time

from ociruntime import api
from ociruntime.errors import OCIError

from . import metrics, mounts, rendezvous
from .protocol import message, pack_any, unpack_any
from .stdio import ProcessIO
from .ttrpc import Code, Error, Pending

SERVICE = "containerd.task.v2.Task"
DRAIN_SECONDS = 2.0  # containerd-shim-runc-v2 waits as long for a process's output on delete
OOM_POLL_SECONDS = 1.0
STATUS = {"created": 1, "running": 2, "stopped": 3, "paused": 4, "pausing": 5}


def timestamp(seconds):
    """A Timestamp, or None for "not yet": containerd reads a zero Timestamp as 1970, an
    absent one as no time at all."""
    if not seconds:
        return None
    ts = message("google.protobuf.Timestamp")()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def exit_code(status):
    """A wait status as containerd reports it: the exit code, or 128 + the signal."""
    if posix.WIFSIGNALED(status):
        return 128 + posix.WTERMSIG(status)
    return posix.WEXITSTATUS(status)


class Process:
    def __init__(self, task, exec_id, io, spec=None):
        self.task, self.exec_id, self.io, self.spec = task, exec_id, io, spec
        self.pid = 0
        self.exit_status = None  # set once reaped
        self.exited_at = 0.0
        self.waiters = []

    @property
    def id(self):
        return self.exec_id or self.task.id

    def status(self):
        if self.exit_status is not None:
            return "stopped"
        if not self.exec_id:
            if self.task.restore_from is not None:
                return "created"  # nothing to ask the runtime: the container exists from Start on
            try:
                return api.state(self.task.id, root=self.task.root)["status"]
            except OCIError:
                return "stopped"
        return "running" if self.pid else "created"

    def exited(self, status):
        self.exit_status, self.exited_at = status, time.time()
        waiters, self.waiters = self.waiters, []
        for pending in waiters:
            pending.resolve(self.wait_response())

    def wait_response(self):
        return message("containerd.task.v2.WaitResponse")(exit_status=self.exit_status,
                                                          exited_at=timestamp(self.exited_at))


class Task:
    def __init__(self, request, root, rootfs_mounts, options):
        self.id, self.bundle = request.id, request.bundle
        self.root, self.rootfs_mounts, self.options = root, rootfs_mounts, options
        self.stdio = (request.stdin, request.stdout, request.stderr, request.terminal)
        self.init = None
        # Created from a checkpoint: its images, restored at Start (containerd-shim-runc-v2's
        # createdCheckpoint state); None once restored, or for a task created afresh.
        self.restore_from = request.checkpoint or None
        self.execs = {}
        self.oom_file = None  # its memory cgroup's counter of OOM kills, once started
        self.oom_kills = 0
        self.oom_timer = None

    def process(self, exec_id):
        if not exec_id:
            return self.init
        try:
            return self.execs[exec_id]
        except KeyError:
            raise Error.of(Code.NOT_FOUND, f"process does not exist {exec_id}") from None


class TaskService:
    def __init__(self, loop, publisher, namespace, address, on_idle):
        self.loop, self.publisher, self.namespace, self.address = loop, publisher, namespace, address
        self.on_idle = on_idle
        self.tasks = {}
        self.by_pid = {}
        self.unclaimed = {}  # pid → wait status reaped before its process was known

    # --- the service -------------------------------------------------------------------------

    def register(self, server):
        for name, request in (("State", "StateRequest"), ("Create", "CreateTaskRequest"),
                              ("Start", "StartRequest"), ("Delete", "DeleteRequest"), ("Pids", "PidsRequest"),
                              ("Pause", "PauseRequest"), ("Resume", "ResumeRequest"),
                              ("Checkpoint", "CheckpointTaskRequest"), ("Kill", "KillRequest"),
                              ("Exec", "ExecProcessRequest"), ("ResizePty", "ResizePtyRequest"),
                              ("CloseIO", "CloseIORequest"), ("Update", "UpdateTaskRequest"),
                              ("Wait", "WaitRequest"), ("Stats", "StatsRequest"), ("Connect", "ConnectRequest"),
                              ("Shutdown", "ShutdownRequest")):
            server.register(SERVICE, name, message(f"containerd.task.v2.{request}"),
                            _runtime_errors(getattr(self, name.lower())))

    def has_tasks(self):
        return bool(self.tasks)

    def _task(self, task_id):
        try:
            return self.tasks[task_id]
        except KeyError:
            raise Error.of(Code.NOT_FOUND, "container not created") from None

    def create(self, r, ctx):
        """A task, created: its init waits for Start. With ``r.checkpoint`` (the images of a
        checkpoint) nothing runs yet: the stdio is made now and the restore happens at
        Start, as containerd-shim-runc-v2 does it; the pid is 0 until then."""
        if r.id in self.tasks:
            raise Error.of(Code.ALREADY_EXISTS, f"task {r.id}")
        if r.parent_checkpoint:
            raise Error.of(Code.UNIMPLEMENTED, "parent_checkpoint: restore from the checkpoint alone (CRIU follows "
                                               "the parent link its images hold)")
        rendezvous.consume(self.address, r.id)
        options = _runc_options(r.options)
        root = options.get("root") or f"/run/containerd/ociruntime/{self.namespace}"
        rootfs = mounts.mount_rootfs(r.bundle, r.rootfs)
        task = Task(r, root, rootfs, options)
        io = None
        pid = 0
        try:
            mounts.write_cleanup_record(r.bundle, root, bool(rootfs))
            io = ProcessIO(self.loop, r.stdin, r.stdout, r.stderr, r.terminal, options.get("io_owner"))
            task.init = Process(task, "", io)
            if task.restore_from is None:
                pid = api.create(r.id, r.bundle, root=root, console=io.console_peer(),
                                 stdio=None if r.terminal else io.stdio, pid_file=f"{r.bundle}/init.pid",
                                 no_pivot=options.get("no_pivot_root", False),
                                 no_new_keyring=options.get("no_new_keyring", False),
                                 systemd_cgroup=options.get("systemd_cgroup", False))
                io.started()  # pumps first: an exit already reaped is handled in _started
                self._started(task.init, pid)
        except BaseException:
            if io is not None:
                io.close()
            mounts.unmount_rootfs(r.bundle, rootfs)
            mounts.remove_cleanup_record(r.bundle)
            raise
        self.tasks[r.id] = task
        self._publish("/tasks/create", "containerd.events.TaskCreate", container_id=r.id, bundle=r.bundle,
                      rootfs=list(r.rootfs), pid=pid, checkpoint=r.checkpoint,
                      io=message("containerd.events.TaskIO")(stdin=r.stdin, stdout=r.stdout, stderr=r.stderr,
                                                               terminal=r.terminal))
        return message("containerd.task.v2.CreateTaskResponse")(pid=pid)

    def start(self, r, ctx):
        task = self._task(r.id)
        process = task.process(r.exec_id)
        if not r.exec_id:
            if task.restore_from is not None:
                self._restore(task)
            else:
                api.start(r.id, root=task.root)
            self._watch_oom(task)
            self._publish("/tasks/start", "containerd.events.TaskStart", container_id=r.id, pid=process.pid)
            return message("containerd.task.v2.StartResponse")(pid=process.pid)
        if process.pid:
            raise Error.of(Code.FAILED_PRECONDITION, f"process {r.exec_id} already started")
        io = process.io
        try:
            pid = api.exec(r.id, process.spec, root=task.root, console=io.console_peer(),
                           stdio=None if io.terminal else io.stdio)
        except BaseException:
            io.close()
            raise
        io.started()
        self._started(process, pid)
        self._publish("/tasks/exec-started", "containerd.events.TaskExecStarted", container_id=r.id,
                      exec_id=r.exec_id, pid=pid)
        return message("containerd.task.v2.StartResponse")(pid=pid)

    def _restore(self, task):
        """Start of a task created from a checkpoint: the container restored from its images
        with the task's stdio (the restored process's stdio pipes become ours, through
        CRIU's inherit_fd) or its console. The restored init is our child, reaped as any.
        A failed restore leaves the task created, as containerd-shim-runc-v2's does."""
        io, options = task.init.io, task.options
        pid = api.restore(task.id, task.bundle, task.restore_from, root=task.root, console=io.console_peer(),
                          stdio=None if io.terminal else io.stdio, pid_file=f"{task.bundle}/init.pid",
                          criu=options.get("criu") or "criu", work_path=options.get("criu_work_path") or None,
                          no_pivot=options.get("no_pivot_root", False),
                          systemd_cgroup=options.get("systemd_cgroup", False))
        task.restore_from = None
        io.started()
        self._started(task.init, pid)

    def _started(self, process, pid):
        process.pid = pid
        self.by_pid[pid] = process
        if pid in self.unclaimed:
            self._exited(process, self.unclaimed.pop(pid))

    def delete(self, r, ctx):
        self.reap()  # an exit the loop hasn't dispatched yet counts
        task = self._task(r.id)
        process = task.process(r.exec_id)
        status = process.status()
        if status not in ("stopped", "created"):
            raise Error.of(Code.FAILED_PRECONDITION, f"cannot delete a {status} process")
        pending = Pending()
        deadline = time.monotonic() + DRAIN_SECONDS

        def finish():
            if not process.io.drained() and time.monotonic() < deadline:
                self.loop.call_later(0.01, finish)
                return
            try:
                pending.resolve(self._delete(task, process))
            except OCIError as e:
                pending.fail(Error(Code.UNKNOWN, str(e)))
            except Error as e:
                pending.fail(e)

        finish()
        return pending

    def _delete(self, task, process):
        process.io.close()
        self.by_pid.pop(process.pid, None)
        if process.exec_id:
            del task.execs[process.exec_id]
        else:
            if task.oom_timer is not None:
                task.oom_timer.cancel()
                task.oom_timer = None
            api.delete(task.id, force=True, root=task.root)  # created: its init is killed, as runc's delete does
            mounts.unmount_rootfs(task.bundle, task.rootfs_mounts)
            mounts.remove_cleanup_record(task.bundle)
            del self.tasks[task.id]
            self._publish("/tasks/delete", "containerd.events.TaskDelete", container_id=task.id, id=task.id,
                          pid=process.pid, exit_status=process.exit_status or 0,
                          exited_at=timestamp(process.exited_at))
        return message("containerd.task.v2.DeleteResponse")(pid=process.pid, exit_status=process.exit_status or 0,
                                                            exited_at=timestamp(process.exited_at))

    def exec(self, r, ctx):
        task = self._task(r.id)
        if r.exec_id in task.execs:
            raise Error.of(Code.ALREADY_EXISTS, f"id {r.exec_id}")
        status = task.init.status()
        if status not in ("created", "running"):
            raise Error.of(Code.FAILED_PRECONDITION, f"cannot exec in a {status} container")
        spec = unpack_any(r.spec)
        io = ProcessIO(self.loop, r.stdin, r.stdout, r.stderr, r.terminal, task.options.get("io_owner"))
        task.execs[r.exec_id] = Process(task, r.exec_id, io, spec)
        self._publish("/tasks/exec-added", "containerd.events.TaskExecAdded", container_id=r.id, exec_id=r.exec_id)
        return message("google.protobuf.Empty")()

    def state(self, r, ctx):
        self.reap()  # an exit the loop hasn't dispatched yet counts
        task = self._task(r.id)
        process = task.process(r.exec_id)
        stdin, stdout, stderr, terminal = (*process.io.paths, process.io.terminal)
        return message("containerd.task.v2.StateResponse")(
            id=process.id, bundle=task.bundle, pid=process.pid, status=STATUS.get(process.status(), 0),
            stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal, exit_status=process.exit_status or 0,
            exited_at=timestamp(process.exited_at), exec_id=r.exec_id)

    def kill(self, r, ctx):
        self.reap()  # an exit the loop hasn't dispatched yet counts
        task = self._task(r.id)
        process = task.process(r.exec_id)
        if process.exit_status is not None:
            raise Error.of(Code.NOT_FOUND, "process already finished")
        if r.exec_id:
            if not process.pid:
                raise Error.of(Code.FAILED_PRECONDITION, "process not created")
            try:
                posix.kill(process.pid, r.signal)
            except ProcessLookupError:
                raise Error.of(Code.NOT_FOUND, "process already finished") from None
        else:
            api.kill(r.id, r.signal, all=r.all, root=task.root)
        return message("google.protobuf.Empty")()

    def pids(self, r, ctx):
        task = self._task(r.id)
        execs = {p.pid: p.exec_id for p in task.execs.values() if p.pid}
        info = message("containerd.v1.types.ProcessInfo")
        processes = []
        for pid in api.pids(r.id, root=task.root):
            entry = info(pid=pid)
            if pid in execs:
                entry.info.CopyFrom(pack_any(message("containerd.runc.v1.ProcessDetails")(exec_id=execs[pid])))
            processes.append(entry)
        return message("containerd.task.v2.PidsResponse")(processes=processes)

    def pause(self, r, ctx):
        task = self._task(r.id)
        api.pause(r.id, root=task.root)
        self._publish("/tasks/paused", "containerd.events.TaskPaused", container_id=r.id)
        return message("google.protobuf.Empty")()

    def resume(self, r, ctx):
        task = self._task(r.id)
        api.resume(r.id, root=task.root)
        self._publish("/tasks/resumed", "containerd.events.TaskResumed", container_id=r.id)
        return message("google.protobuf.Empty")()

    def checkpoint(self, r, ctx):
        """The container to CRIU images in ``r.path`` (containerd's; else the options'
        image_path), with containerd.runc.v1.CheckpointOptions mapped as
        containerd-shim-runc-v2 maps them onto runc's flags. With ``exit`` the container
        goes (CRIU kills its processes): its init's exit is reaped and reported as any."""
        task = self._task(r.id)
        if task.restore_from is not None:
            raise Error.of(Code.FAILED_PRECONDITION, "cannot checkpoint a task in created state")
        opts = message("containerd.runc.v1.CheckpointOptions")()
        if r.options.type_url:
            opts = unpack_any(r.options)
        image = r.path or opts.image_path
        if not image:
            raise Error.of(Code.INVALID_ARGUMENT, "checkpoint: no image path")
        # runc's shim: a work directory of its own unless one is asked for, gone afterwards;
        # on a failure, CRIU's log is kept beside the bundle as criu-dump.log.
        work = opts.work_path or f"{task.bundle}/criu-work"
        try:
            api.checkpoint(r.id, image, root=task.root, criu=task.options.get("criu") or "criu", work_path=work,
                           leave_running=not opts.exit, tcp_established=opts.open_tcp,
                           ext_unix_sk=opts.external_unix_sockets, shell_job=opts.terminal,
                           file_locks=opts.file_locks, empty_ns=tuple(opts.empty_namespaces),
                           manage_cgroups_mode=opts.cgroups_mode or None)
        except OCIError as e:
            if opts.work_path:
                raise
            kept = f"{task.bundle}/criu-dump.log"
            try:
                shutil.copyfile(f"{work}/dump.log", kept)
            except OSError:
                raise e from None
            raise OCIError(str(e).replace(f"{work}/dump.log", kept)) from None
        finally:
            if not opts.work_path:
                shutil.rmtree(work, ignore_errors=True)
        return message("google.protobuf.Empty")()

    def resizepty(self, r, ctx):
        process = self._task(r.id).process(r.exec_id)
        process.io.resize(r.width, r.height)
        return message("google.protobuf.Empty")()

    def closeio(self, r, ctx):
        process = self._task(r.id).process(r.exec_id)
        if r.stdin:
            process.io.close_stdin()
        return message("google.protobuf.Empty")()

    def update(self, r, ctx):
        task = self._task(r.id)
        api.update(r.id, unpack_any(r.resources), root=task.root)
        return message("google.protobuf.Empty")()

    def wait(self, r, ctx):
        self.reap()  # an exit the loop hasn't dispatched yet counts
        process = self._task(r.id).process(r.exec_id)
        if process.exit_status is not None:
            return process.wait_response()
        pending = Pending()
        process.waiters.append(pending)
        return pending

    def stats(self, r, ctx):
        task = self._task(r.id)
        return message("containerd.task.v2.StatsResponse")(stats=pack_any(metrics.convert(
            api.stats(r.id, root=task.root))))

    def connect(self, r, ctx):
        task = self.tasks.get(r.id)
        return message("containerd.task.v2.ConnectResponse")(
            shim_pid=posix.getpid(), task_pid=task.init.pid if task else 0)

    def shutdown(self, r, ctx):
        if not self.tasks:
            self.loop.call_soon(self.on_idle)  # after this answer has gone out
        return message("google.protobuf.Empty")()

    # --- exits ---------------------------------------------------------------------------------

    def reap(self):
        """SIGCHLD: every exited child; ours get their status, orphans (the subreaper's
        adoptees) are just collected."""
        while True:
            try:
                pid, status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            process = self.by_pid.get(pid)
            if process is None:
                self.unclaimed[pid] = status
                if len(self.unclaimed) > 1024:  # orphans nobody will claim: keep the newest
                    self.unclaimed.pop(next(iter(self.unclaimed)))
            elif process.exit_status is None:
                self._exited(process, status)

    def _exited(self, process, status):
        task = process.task
        if process is task.init:
            if task.oom_timer is not None:
                task.oom_timer.cancel()
                task.oom_timer = None
            self._check_oom(task)  # before the exit, as containerd-shim-runc-v2's eventfd has it
        process.io.copy_available()  # the output reaches the client before it learns of the exit
        process.exited(exit_code(status))
        self._publish("/tasks/exit", "containerd.events.TaskExit", container_id=process.task.id, id=process.id,
                      pid=process.pid, exit_status=process.exit_status, exited_at=timestamp(process.exited_at))

    # --- OOM -----------------------------------------------------------------------------------

    def _watch_oom(self, task):
        """TaskOOM when the kernel's OOM killer took a process from the container: its
        memory cgroup's oom_kill counter, read every OOM_POLL_SECONDS while it runs and once
        more when its init exits (an init the OOM killer took exits at once)."""
        task.oom_file = metrics.oom_counter_file(task.init.pid)
        if task.oom_file is None:
            return
        task.oom_kills = metrics.oom_kills(task.oom_file)

        def poll():
            self._check_oom(task)
            task.oom_timer = self.loop.call_later(OOM_POLL_SECONDS, poll)

        task.oom_timer = self.loop.call_later(OOM_POLL_SECONDS, poll)

    def _check_oom(self, task):
        if task.oom_file is None:
            return
        count = metrics.oom_kills(task.oom_file)
        if count > task.oom_kills:
            task.oom_kills = count
            self._publish("/tasks/oom", "containerd.events.TaskOOM", container_id=task.id)

    def _publish(self, topic, name, **fields):
        self.publisher.publish(topic, message(name)(**fields))


def _runc_options(any_):
    """CreateTaskRequest.options: containerd.runc.v1.Options (``ctr --runc-root``...), the
    fields this shim honours; a setting it can't honour is refused, not dropped. Three are
    not Create's: ``shim_cgroup`` is start's (shim/main.py), ``binary_name`` names the runtime
    the runc shim runs, and this shim is that runtime, and ``criu_image_path`` is containerd's
    (where it unpacks a checkpoint to restore: the request's ``checkpoint``). ``criu_path``
    is CRIU's binary for Checkpoint and restore, ``criu_work_path`` restore's work directory
    (runc's shim: --criu, and restore's --work-path)."""
    if not any_.type_url:
        return {}
    opts = unpack_any(any_)
    return {"root": opts.root, "no_pivot_root": opts.no_pivot_root, "no_new_keyring": opts.no_new_keyring,
            "io_owner": (opts.io_uid, opts.io_gid), "systemd_cgroup": opts.systemd_cgroup,
            "criu": opts.criu_path, "criu_work_path": opts.criu_work_path}


def _runtime_errors(handler):
    """The runtime's errors reach containerd as its one-line message (status UNKNOWN, as a
    runc error reaches containerd through containerd-shim-runc-v2)."""
    def call(request, ctx):
        try:
            return handler(request, ctx)
        except OCIError as e:
            raise Error(Code.UNKNOWN, str(e)) from None
    return call
