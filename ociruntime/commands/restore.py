"""restore: a container, new from its bundle like one `create` makes, whose processes come
from CRIU images a `checkpoint` wrote instead of from process.args (runc's verb, its flags
and semantics). It comes back running; it is then a container like any other (state,
kill, exec, pause, checkpoint, delete). Without --detach the command waits for it, as
`run` does, exits with its status and deletes it.

The order is create's: the first record names what may be made (cgroups, the unit-less
cgroupfs driver's), the cgroups are made with their limits, and `criu swrk` joins them
before it restores, so every restored process starts in them. CRIU restores into the
rootfs bound on ``<state dir>/criu-root`` (it wants a mount point whose parent isn't
overmounted); the bind goes once CRIU is done. A failure anywhere removes all of it.
"""

import posix

from .. import cgroups, criu, fastjson, hooks, pathnames, state
from .. import config as config_mod
from .. import plan as plan_mod
from ..errors import HookError, OCIError
from ..linux import mountopts
from . import checkpoint as checkpoint_cmd
from . import create as create_cmd


def restore(root, container_id, bundle=".", image_path=None, work_path=None, tcp_established=False,
            ext_unix_sk=False, shell_job=False, file_locks=False, manage_cgroups_mode=None, pid_file=None,
            console_socket=None, console=None, no_pivot=False, empty_ns=(), auto_dedup=False, lazy_pages=False,
            lsm_profile=None, lsm_mount_context=None, criu_path="criu", stdio=None, systemd_cgroup=False):
    """Restore the container; returns its record (a dict: pid and all). ``console``: a
    connected socket the pty master goes to (``run``-like foreground), else the unix
    socket at ``console_socket``; ``stdio``: three fds for criu's (and so the restored
    pipes') 0, 1, 2, None for ours."""
    checkpoint_cmd.refuse_unsupported(lazy_pages)
    mode = checkpoint_cmd.cgroups_mode(manage_cgroups_mode)
    mask = checkpoint_cmd.empty_ns_mask(empty_ns)
    state.check_id(container_id)
    if systemd_cgroup:
        raise OCIError("restore --systemd-cgroup is not supported by this runtime yet: restore with the "
                       "cgroupfs driver")
    if posix.geteuid() != 0:
        raise OCIError("restore needs root (CRIU does): rootless containers can't be restored")
    images = pathnames.abspath(image_path or "checkpoint")
    descriptors = _read_descriptors(images)
    bundle = pathnames.abspath(bundle)
    config = config_mod.load(bundle)
    terminal = bool((config.get("process") or {}).get("terminal"))
    if console_socket and not terminal:
        raise OCIError("--console-socket is only used when process.terminal is true")
    if terminal and console is None and not console_socket:
        raise OCIError("process.terminal is true: --console-socket is needed to hand the terminal over "
                       "(or set process.terminal to false)")
    linux = config.get("linux") or {}
    cgroup_paths = cgroups.container_paths(linux.get("cgroupsPath"), container_id)
    plan = plan_mod.build(config, bundle, container_id, no_pivot=no_pivot, cgroup_paths=cgroup_paths,
                          cgroup_host=create_cmd._cgroup_host(linux))
    container = state.Container.new(root, container_id,
                                    create_cmd.first_record(config, container_id, bundle, plan, cgroup_paths))
    data = container.data
    created_cgroups, restored, bound = [], [], []
    try:
        cgroups.make(cgroup_paths, created_cgroups, plan["device_rules"], plan["cgroup_writes"])
        data["cgroups_created"] = created_cgroups
        container.save()
        _make_mountpoints(plan)
        criu_root = f"{container.dir}/criu-root"
        posix.mkdir(criu_root, 0o755)
        from ..native import detach_mount, mount

        mount(plan["rootfs"], criu_root, "", mountopts.MS_BIND | mountopts.MS_REC, "")
        bound.append(criu_root)
        _run_criu(plan, config, container, images, work_path, descriptors, criu_root, console, console_socket,
                  stdio, criu_path, restored,
                  dict(tcp_established=tcp_established, ext_unix_sk=ext_unix_sk, shell_job=shell_job,
                       file_locks=file_locks, empty_ns=mask, auto_dedup=auto_dedup, cgroups_mode=mode,
                       lsm_profile=lsm_profile, lsm_mount_context=lsm_mount_context))
        detach_mount(criu_root)
        bound.clear()
        posix.rmdir(criu_root)
        data.pop("creating", None)
        container.save()
        if pid_file:
            create_cmd.write_pid_file(pid_file, data["pid"])
    except BaseException as e:
        _undo(container, restored, created_cgroups, bound)
        if isinstance(e, HookError):
            hooks.run(hooks.entries(config, "poststop"), state.spec_state(data, "stopped"), fatal=False)
        raise
    finally:
        container.close()
    return data


def _make_mountpoints(plan):
    """The mount points of the config's mounts, made in the rootfs where missing, as the
    init makes them at create (runc's prepareCriuRestoreMounts): CRIU mounts on them and
    fails on a missing one (a bundle whose rootfs never ran: podman's restore --import).
    Not those inside another filesystem the container mounts (a tmpfs, /proc, /sys):
    CRIU brings that back with what is in it."""
    from ..native import make_mountpoint

    mounts = [s for s in plan["steps"] if s["op"] == "mount" and not s["flags"] & mountopts.MS_REMOUNT]
    covering = [s["dst"] for s in mounts if not s["flags"] & mountopts.MS_BIND]
    for s in mounts:
        if not any(s["dst"].startswith(d.rstrip("/") + "/") for d in covering):
            try:
                make_mountpoint(plan["rootfs"], s["dst"], file=bool(s["mode"] & 0o100000))
            except OCIError as e:
                raise OCIError(f"{s['label']}: {e}") from None


def _read_descriptors(images):
    path = pathnames.join(images, checkpoint_cmd.DESCRIPTORS)
    try:
        with open(path) as f:
            names = fastjson.loads(f.read())
    except FileNotFoundError:
        if not pathnames.isdir(images):
            raise OCIError(f"--image-path {images}: no such directory") from None
        raise OCIError(f"--image-path {images}: no {checkpoint_cmd.DESCRIPTORS}: not the images of a "
                       "checkpoint (a pre-dump's can't be restored)") from None
    except (OSError, ValueError) as e:
        raise OCIError(f"{path}: {getattr(e, 'strerror', None) or e}") from None
    if type(names) is not list or not all(type(n) is str for n in names):
        raise OCIError(f"{path}: not a list of file names")
    return names


def _run_criu(plan, config, container, images, work_path, descriptors, criu_root, console, console_socket, stdio,
              criu_path, restored, flags):
    """The RESTORE request and its notifications; the restored init's pid lands in
    ``restored`` (and the record) as soon as CRIU names it."""
    data = container.data
    fds = [checkpoint_cmd.open_dir(images, "--image-path")]
    extra = []  # criu's fds from 4 on: the external namespaces
    try:
        work_dir, work_fd = checkpoint_cmd.open_work_dir(work_path)
        if work_fd is not None:
            fds.append(work_fd)
        facts = data["checkpoint"]
        binds = [(s["dst"], s["src"]) for s in plan_mod.bind_steps(plan)]
        devices = [s["dst"] for s in plan["steps"] if s["op"] == "mknod"]
        opts = criu.restore_options(criu_root, fds[0], binds, devices, bool(facts["masked"]),
                                    work_fd=work_fd, annotations=data["annotations"],
                                    joined=facts["joined"], **flags)
        inherit = [(name, fd) for fd, name in enumerate(descriptors) if name.startswith("pipe:")]
        for ns_type, path in sorted(facts["joined"].items()):
            if ns_type in criu.EXTERNAL_NS:
                extra.append(_open_namespace(path, ns_type))
                inherit.append((criu.EXTERNAL_NS[ns_type][1], 3 + len(extra)))
        if inherit:
            opts["inherit_fd"] = inherit
        log = pathnames.join(work_dir or images, "restore.log")
        with criu.Session(criu_path, "restore", stdio=stdio, extra=extra) as session:
            # criu joins the container's cgroups first: what it restores starts there
            cgroups.join(data["cgroup_paths"], session.pid)
            opts["cg_root"] = _cgroup_roots(session.pid)

            def on_notify(script, pid, received):
                if script == "setup-namespaces":
                    hook_state = state.spec_state(dict(data, pid=pid), "created")
                    hooks.run(hooks.entries(config, "prestart"), hook_state, fatal=True)
                    hooks.run(hooks.entries(config, "createRuntime"), hook_state, fatal=True)
                elif script == "post-restore":
                    _record_init(container, pid, restored)
                elif script == "orphan-pts-master" and received:
                    _hand_over_master(received[0], console, console_socket)

            resp = session.call(criu.request(criu.RESTORE, opts), on_notify, log=log)
            if not restored and resp.get("restore_pid"):
                _record_init(container, resp["restore_pid"], restored)
    finally:
        for fd in fds + extra:
            posix.close(fd)
    if not restored:
        raise OCIError("restore: criu named no restored process")


def _open_namespace(path, ns_type):
    try:
        return posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError as e:
        raise OCIError(f"linux.namespaces: the {ns_type} namespace {path} must exist to restore into it: "
                       f"{e.strerror}") from None


def _cgroup_roots(pid):
    """Where each hierarchy's restored cgroups go: criu's own, the container's (it joined
    them). runc sends these on cgroup v1 only; on v2 criu then recreates the cgroup the
    checkpointed container had, so a restore under another id (another cgroup) would
    land outside its own: the v2 one (no controller: every one) is sent too."""
    from ..cgroups import cgroups_of

    return [(key.split("=", 1)[-1] if key.startswith("name=") else key or None, path)
            for key, path in sorted(cgroups_of(f"/proc/{pid}/cgroup").items())]


def _record_init(container, pid, restored):
    restored.append(pid)
    container.data.update({
        "pid": pid,
        "init_start_time": state.proc_start_time(pid)[0] or 0,
        # A restored init never waits for start: no start pipe to find (state.status_of).
        "start_fd": 0, "start_pipe": "", "err_fd": 0,
    })
    container.save()


def _hand_over_master(master, console, console_socket):
    """The restored pty's master, which CRIU sends orphaned: to whoever takes the terminal."""
    import _socket

    sock = console if console is not None else create_cmd.connect_console(console_socket)
    try:
        sock.sendmsg([b"/dev/ptmx"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, master.to_bytes(4, "little"))])
    except OSError as e:
        raise OCIError(f"--console-socket: sending the terminal: {e.strerror}") from None
    finally:
        if console is None:
            sock.close()


def _undo(container, restored, created_cgroups, bound):
    """Leave nothing behind: no restored process, cgroup, mount or state directory."""
    from ..native import detach_mount
    from . import delete

    paths = container.data["cgroup_paths"]
    if delete._kill_all(paths, restored[0] if restored else None):
        create_cmd._cleanup(lambda _: delete._wait_stopped(container, paths), None)
    for pid in restored:
        try:
            posix.waitpid(pid, 0)  # our child (criu's sibling)
        except ChildProcessError:
            pass
    for path in bound:
        create_cmd._cleanup(detach_mount, path)
    try:
        posix.rmdir(f"{container.dir}/criu-root")
    except OSError:
        pass
    create_cmd._cleanup(cgroups.remove, created_cgroups)
    container.remove()


def main(root, container_id, detach=False, no_subreaper=False, console_socket=None, **options):
    """The command: in the foreground (no --detach) it waits for the container as `run`
    does — a subreaper, forwarding signals, proxying its pty — then deletes it and exits
    with its status."""
    from . import run as run_cmd

    ours, theirs = run_cmd.foreground(detach, no_subreaper, console_socket)
    try:
        data = restore(root, container_id, console_socket=console_socket, console=theirs, **options)
    finally:
        if theirs is not None:
            theirs.close()
    if detach:
        return 0
    master = None
    if ours is not None:
        ours.setblocking(False)
        try:
            from ..native import receive_pty_master

            master, _ = receive_pty_master(ours)
        except (BlockingIOError, OCIError):
            pass  # no terminal
        ours.close()
    try:
        run_cmd.forward_signals(data["pid"], master)
        status = run_cmd.wait_for(data["pid"], master)
    finally:
        run_cmd.restore_signals()
    run_cmd._destroy(root, container_id)
    return run_cmd.exit_code(status)
