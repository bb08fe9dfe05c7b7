"""ociruntime as a library: runc's verbs as Python calls, for an engine (a containerd shim,
a custom one) that drives containers from a process that stays up instead of running the
``ociruntime`` command for each operation.

Each function does what the command of the same name does, with the same checks, state
directory (``root``, the command's ``--root``) and exceptions: every failure a user can
act on is an :class:`Error` whose ``str()`` is the one line the command prints. Nothing
is written to stdout; warnings go to stderr (and to the log file ``ociruntime.log.configure``
names, if any).

Processes. A container's init, and a process :func:`exec` starts, is cloned with
CLONE_PARENT: it is the caller's child, and the caller reaps it (a shim is a child
subreaper with a SIGCHLD-driven reaper). The API itself never waits for them; the only
child it waits for is a short-lived helper of its own during :func:`create` and
:func:`exec` (a reaper that waits for any child may reap it first: that is fine). An
unreaped (zombie) init is a stopped container: :func:`state` says "stopped", and
``delete(force=True)`` doesn't wait for it.

Sealing. Containers are only cloned from a Python that runs from a read-only handle on
its interpreter (CVE-2019-5736: the init's /proc/<pid>/exe is the caller's executable
until it execs). Call :func:`ensure_sealed` first thing in the program: it re-executes
the interpreter from such a handle once, with the same arguments and environment.

Importing this module costs next to nothing: each function imports what it needs.
"""

from .errors import OCIError

Error = OCIError  # the one exception type: str() is the line the command prints
DEFAULT_ROOT = "/run/ociruntime"  # the command's default --root


def create(container_id, bundle, *, root=DEFAULT_ROOT, stdio=None, console=None, console_socket=None, pid_file=None,
           no_pivot=False, no_new_keyring=False, preserve_fds=0, systemd_cgroup=False, rootless=None):
    """Create the container from the OCI bundle at ``bundle``, up to "created" (its init
    waits for :func:`start`; prestart, createRuntime and createContainer hooks have run);
    returns the init's pid.

    ``stdio``: None, the init inherits the caller's fds 0, 1, 2 (the command's behaviour);
    or three fds (each -1 to inherit that one) that become the init's 0, 1, 2 (copies:
    the caller keeps and closes its own).
    With ``process.terminal`` the init makes a pty in the container and sends its master
    (SCM_RIGHTS, see :func:`receive_pty_master`) over ``console``, a connected unix socket
    object, or to the unix socket at the path ``console_socket`` (``--console-socket``).
    ``pid_file``, ``no_pivot``, ``no_new_keyring``, ``preserve_fds``: the command's flags
    (``preserve_fds``: the caller's fds 3 .. 3+N-1 pass to the container).
    ``systemd_cgroup`` (``--systemd-cgroup``): the container's cgroup is a transient systemd
    scope (linux.cgroupsPath "slice:prefix:name"); the other calls find that in its state.
    ``rootless``: ``--rootless`` (None: auto): whether cgroups the caller can't write are
    done without (ociruntime/rootless.py).
    """
    from . import cgroups
    from .commands import create as verb

    cgroups.prime_migration()
    try:
        container, init = verb.create(root, container_id, bundle, pid_file=pid_file, no_pivot=no_pivot,
                                      no_new_keyring=no_new_keyring, preserve_fds=preserve_fds,
                                      console_socket=console_socket, console=console, stdio=stdio,
                                      systemd_cgroup=systemd_cgroup, rootless=rootless)
    finally:
        cgroups.end_priming()
    init.detach()
    container.close()
    return init.pid


def start(container_id, *, root=DEFAULT_ROOT):
    """Start the user's program in a created container: returns once it was exec'd and
    the poststart hooks ran (a failed exec or hook is raised)."""
    from .commands import start as verb

    verb.start_container(root, container_id)


def state(container_id, *, root=DEFAULT_ROOT):
    """runc's ``state`` JSON object: ociVersion, id, pid (0 once stopped), status
    ("creating", "created", "running", "paused" or "stopped"), bundle, rootfs, created,
    owner, and annotations when there are any."""
    from .commands import query

    return query.container_state(root, container_id)


def kill(container_id, signal="TERM", *, all=False, root=DEFAULT_ROOT):
    """Send ``signal`` (a number, or a name with or without SIG: "TERM", "SIGKILL",
    "RTMIN+1") to the init; with ``all``, to every process in the container's cgroups
    (frozen meanwhile, as runc does). A stopped container's init is never signalled:
    "container not running"."""
    from .commands import kill as verb

    verb.kill(root, container_id, signal, all)


def delete(container_id, *, force=False, root=DEFAULT_ROOT):
    """Delete a stopped (or created) container: its processes, the cgroups and state it
    made, then run the poststop hooks. ``force`` kills a running or paused one first
    and deletes a damaged record; deleting an id that doesn't exist then succeeds."""
    from .commands import delete as verb

    verb.delete(root, container_id, force)


def exec(container_id, process, *, root=DEFAULT_ROOT, stdio=None, console=None, console_socket=None, pid_file=None):
    """Run ``process`` (an OCI runtime-spec ``process`` object, the dict ``ociruntime exec
    --process FILE`` reads) in the running container — in all its namespaces and cgroups,
    under its seccomp filter — and return its pid once it runs (``exec --detach``). The
    process is the caller's child: the caller waits for it.

    ``stdio``, ``console``, ``console_socket``, ``pid_file``: as for :func:`create`
    (``process["terminal"]`` asks for a pty, handed over ``console`` or ``console_socket``).
    """
    from . import cgroups
    from .commands import exec as verb

    cgroups.prime_migration()
    try:
        target = verb.Target(root, container_id)
        init = verb.spawn(target, verb.checked_process(target.config, process), stdio=stdio, console=console,
                          console_socket=console_socket)
    finally:
        cgroups.end_priming()
    return verb.start(init, pid_file)


def pause(container_id, *, root=DEFAULT_ROOT):
    """Freeze every process of a running container (its state becomes "paused")."""
    from .commands import pause as verb

    verb.set_paused(root, container_id, True)


def resume(container_id, *, root=DEFAULT_ROOT):
    """Thaw a paused container."""
    from .commands import pause as verb

    verb.set_paused(root, container_id, False)


def update(container_id, resources, *, root=DEFAULT_ROOT):
    """Change a container's resource limits: ``resources`` is a ``linux.resources``
    object (what ``update --resources -`` reads), merged into the container's current
    ones; the whole set is written again."""
    from .commands import update as verb

    verb.update(root, container_id, resources)


def checkpoint(container_id, image_path, *, root=DEFAULT_ROOT, criu="criu", **options):
    """Save the running container to CRIU images in ``image_path`` (``ociruntime
    checkpoint``); the container is then gone unless ``leave_running`` or ``pre_dump``.
    ``options``: the command's flags as keyword arguments (``work_path``, ``parent_path``,
    ``leave_running``, ``tcp_established``, ``ext_unix_sk``, ``shell_job``, ``file_locks``,
    ``pre_dump``, ``manage_cgroups_mode``, ``empty_ns``, ``auto_dedup``). ``criu``: its
    binary (``--criu``)."""
    from .commands import checkpoint as verb

    verb.checkpoint(root, container_id, image_path=image_path, criu_path=criu, **options)


def restore(container_id, bundle, image_path, *, root=DEFAULT_ROOT, stdio=None, console=None, console_socket=None,
            pid_file=None, criu="criu", **options):
    """Restore a container from the bundle at ``bundle`` and the CRIU images in
    ``image_path`` (``ociruntime restore --detach``): it runs once this returns its init's
    pid. The restored init is the caller's child (CRIU restores it as its own sibling).
    ``stdio``: three fds CRIU runs with; the restored process's stdio pipes become them
    (None: the caller's). ``console``, ``console_socket``: where the restored pty's
    master goes, as for :func:`create`. ``options``: the command's other flags
    (``work_path``, ``tcp_established``, ``ext_unix_sk``, ``shell_job``, ``file_locks``,
    ``manage_cgroups_mode``, ``empty_ns``, ``auto_dedup``, ``no_pivot``, ``lsm_profile``,
    ``lsm_mount_context``)."""
    from .commands import restore as verb

    return verb.restore(root, container_id, bundle, image_path=image_path, stdio=stdio, console=console,
                        console_socket=console_socket, pid_file=pid_file, criu_path=criu, **options)["pid"]


def stats(container_id, *, root=DEFAULT_ROOT):
    """The container's resource usage: the "data" object of ``events --stats`` (cpu,
    memory, pids, blkio, hugetlb... as runc reports them)."""
    from .commands import events

    return events.container_stats(root, container_id)


def pids(container_id, *, root=DEFAULT_ROOT):
    """The pids (in the caller's pid namespace) of every process in the container's
    cgroups, sorted (``ps --format json``; an empty list where runc prints null)."""
    from .commands import ps

    return ps.container_pids(root, container_id)


def list(*, root=DEFAULT_ROOT):
    """:func:`state` of every container under ``root``, by id. One whose record can't be
    trusted is left out, with a warning on stderr."""
    from .commands import query

    return query.all_states(root)


def receive_pty_master(sock):
    """``(fd, slave name)``: the pty master an init (or exec'd process) sent over the
    console socket ``sock`` (a connected unix socket object). The fd is the caller's."""
    from .native import receive_pty_master as receive

    return receive(sock)


def ensure_sealed():
    """Make sure this process runs from a read-only handle on its interpreter, which
    creating a container needs: if it doesn't, re-execute the interpreter from one (the
    program starts again from the top, with ``sys.orig_argv`` and the same environment;
    stdin already read is not read again, so call this first thing). Returns only once
    sealed; raises :class:`Error` when no read-only handle can be made."""
    from . import exeseal

    exeseal.ensure_sealed()
