"""create: build the container up to "created" — init waiting, createRuntime and
createContainer hooks done, pid file written — and return."""

import posix

from .. import SPEC_VERSION, cgroups, fastjson, hooks, hostmounts, pathnames, state
from .. import config as config_mod
from .. import plan as plan_mod
from ..errors import HookError, OCIError
from ..log import timestamp, warn
from ..native import Init


def create(root, container_id, bundle, pid_file=None, no_pivot=False, no_new_keyring=False,
           preserve_fds=0, console_socket=None, console=None, stdio=None, systemd_cgroup=False, rootless=None):
    """Create the container; returns (Container, Init). The caller closes both.

    With process.terminal the init sends its pty master to ``console`` (a connected
    socket: ``run``'s own, an API caller's) or to the unix socket at ``console_socket``
    (an engine's). ``stdio``: three fds for the init's 0, 1, 2 (None: ours).
    ``systemd_cgroup``: the cgroup is a transient systemd unit (systemd.py).
    ``rootless``: --rootless, None for auto (rootless.py).
    """
    state.check_id(container_id)
    bundle = pathnames.abspath(bundle)
    config = config_mod.load(bundle)
    terminal = bool((config.get("process") or {}).get("terminal"))
    if console_socket and not terminal:
        raise OCIError("--console-socket is only used when process.terminal is true")
    connected = None
    if not terminal:
        console = None  # run offers its own; only a terminal uses it
    elif console is None:
        if not console_socket:
            raise OCIError("process.terminal is true: --console-socket is needed to hand the terminal over "
                           "(or set process.terminal to false)")
        console = connected = connect_console(console_socket)
    linux = config.get("linux") or {}
    unit = None
    if systemd_cgroup:
        from .. import systemd

        if not systemd.running():
            raise OCIError("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system): "
                           "use the cgroupfs driver (no --systemd-cgroup)")
        unit = systemd.unit_for(linux.get("cgroupsPath"), container_id)
        shown = cgroup_paths = systemd.container_paths(unit)
    else:
        shown = cgroup_paths = cgroups.container_paths(linux.get("cgroupsPath"), container_id)
    from .. import rootless as rootless_mod

    unprivileged = posix.geteuid() != 0
    in_userns = rootless_mod.in_user_namespace()  # root there: rootless podman's runtime
    if unprivileged or rootless is not False:
        if unit is not None and rootless_mod.cgroups_rootless(rootless):
            raise OCIError("--systemd-cgroup: rootless, the scope would be the user's systemd's (runc's "
                           "systemd-user driver), which this runtime doesn't drive yet")
        cgroup_paths, shown = rootless_mod.prepare(config, cgroup_paths, rootless)
    plan = plan_mod.build(config, bundle, container_id, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                          preserve_fds=preserve_fds, cgroup_paths=shown, cgroup_host=_cgroup_host(linux),
                          joins_first=unit is not None and _v1_devices(), in_userns=in_userns)
    if unprivileged or in_userns:
        rootless_mod.finish(plan, linux)
    # The first record names all this create may make (write-ahead: state.py).
    container = state.Container.new(root, container_id, first_record(config, container_id, bundle, plan,
                                                                      cgroup_paths, unit))
    data = container.data
    init = None
    created_cgroups = []
    started_units = []  # the systemd driver's, once systemd has it
    try:
        try:
            init = Init(plan, console.fileno() if console is not None else -1, stdio)
        finally:
            if connected is not None:
                connected.close()  # the init holds its own copy
        # While the kernel clones the init into its namespaces, make the cgroups.
        if unit is None:
            cgroups.make(cgroup_paths, created_cgroups, plan["device_rules"], plan["cgroup_writes"])
        init.wait_pid()
        data.update({
            "cgroups_created": created_cgroups,
            "pid": init.pid,
            "init_start_time": state.proc_start_time(init.pid)[0],
            "start_fd": init.start_r,
            "start_pipe": posix.readlink(f"/proc/self/fd/{init.start_r}"),
            "err_fd": init.err_r,
        })
        container.save()  # before the init joins the cgroups: delete --force can find it there
        if unit is not None:
            _start_unit(unit, init.pid, config, plan, container, created_cgroups, started_units)
        if plan["uid_map"]:
            init.write_id_maps()
        # The init goes on with its setup while we join the cgroups (cgroupfs waits out
        # the grace period main.py's primer started); it only stops where the plan says.
        if plan["waits_for_parent"]:
            init.send(b"G")
        cgroups.join(cgroup_paths, init.pid)
        if plan["waits_for_join"]:
            init.send(b"C")
        if plan["stops_at_hooks"]:
            init.expect(b"H")
            _move_net_devices(plan, init)
            hook_state = state.spec_state(data, "created")
            hooks.run(hooks.entries(config, "prestart"), hook_state, fatal=True)
            hooks.run(hooks.entries(config, "createRuntime"), hook_state, fatal=True)
            init.send(b"S", fastjson.dumps(hook_state).encode())
        listener = (plan["process"]["seccomp"] or {}).get("listener")
        if listener:
            hand_over_listener(listener, init.expect_fd(b"N"), state.spec_state(data, "creating"))
        init.expect(b"R")
        if not plan["stops_at_hooks"]:
            _move_net_devices(plan, init)
        del data["creating"]
        container.save()
        init.commit()  # from now on the init waits for start; before, it would exit with us
        if pid_file:
            write_pid_file(pid_file, init.pid)
    except BaseException as e:
        _undo(container, init, created_cgroups, started_units)
        if isinstance(e, HookError):
            hooks.run(hooks.entries(config, "poststop"), state.spec_state(container.data, "stopped"), fatal=False)
        raise
    return container, init


def first_record(config, container_id, bundle, plan, cgroup_paths, unit=None):
    """The state record before anything is made: it names what may be (create's, restore's)."""
    linux = config.get("linux") or {}
    return {
        "ociVersion": config.get("ociVersion", SPEC_VERSION),
        "id": container_id,
        "bundle": bundle,
        "rootfs": plan["rootfs"],
        "created": timestamp(),
        "owner": "",
        "annotations": config.get("annotations") or {},
        "cgroup_paths": cgroup_paths,
        "freezer": cgroups.freezer_file(cgroup_paths),
        # systemd's unit makes its own (and what it doesn't make is named once it is up)
        "cgroups_created": [] if unit else cgroups.missing(cgroup_paths),
        "systemd_unit": unit.name if unit else None,
        # None: the container has its own mount namespace
        "host_mounts": hostmounts.present(plan["rootfs"]) if plan["host_mounts"] else None,
        "resources": linux.get("resources") or {},  # what `update` merges into
        "hooks": {name: hooks.entries(config, name) for name in ("poststart", "poststop")},
        "checkpoint": plan_mod.checkpoint_facts(plan),  # what `checkpoint` tells CRIU
    }


def _move_net_devices(plan, init):
    """linux.netDevices, once the init is known to be alive and waiting (at 'H' or 'R': an
    init that failed before has said why), before any hook and the program."""
    if plan["net_devices"]:
        from .. import netdevices

        netdevices.move(plan["net_devices"], init.pid)


def _v1_devices():
    """Whether device rules go to a v1 devices cgroup: written one by one, so with the
    systemd driver (the init already in the cgroup) the init waits until they are all in."""
    return cgroups.controller_versions()[0].get("devices") == "v1"


def _cgroup_host(linux):
    """Where the host has each cgroup controller: looked up only for resource limits."""
    if not plan_mod.has_limits(linux.get("resources")):
        return None
    from ..resources import Host

    return Host(*cgroups.controller_versions())


def connect_console(path):
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OCIError(f"--console-socket {path}: {e.strerror}") from None
    return sock


def hand_over_listener(listener, fd, container_state):
    """Send the seccomp listener fd and the container process state to listenerPath:
    one connection, one state, then closed (runtime-spec config-linux.md)."""
    import _socket

    process_state = {"ociVersion": SPEC_VERSION, "fds": ["seccompFd"], "pid": container_state["pid"],
                     "metadata": listener["metadata"], "state": container_state}
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(listener["path"])
        sock.sendmsg([fastjson.dumps(process_state).encode()],
                     [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little"))])
    except OSError as e:
        raise OCIError(f"linux.seccomp.listenerPath: {listener['path']}: {e.strerror}") from None
    finally:
        sock.close()
        posix.close(fd)


def _start_unit(unit, pid, config, plan, container, created_cgroups, started_units):
    """The systemd driver: a transient scope holding the init, with the resources as unit
    properties; then, as runc does, the cgroups systemd doesn't make (v1 hierarchies it
    doesn't manage) and every limit and device rule written to cgroupfs too."""
    from .. import systemd
    from ..systemd_bus import Bus

    what = "linux.cgroupsPath"
    paths = container.data["cgroup_paths"]
    with Bus() as bus:
        properties = systemd.start_properties(unit, pid, config.get("annotations"), not cgroups.pure_v2(paths))
        properties += systemd.resource_properties(plan["cgroup_writes"], plan["device_rules"], bus.version)
        bus.start_unit(unit.name, properties, what)
        started_units.append(unit.name)
    container.data["cgroups_created"] = cgroups.missing(paths)
    container.save()
    cgroups.make(paths, created_cgroups, plan["device_rules"], plan["cgroup_writes"])
    container.data["cgroups_created"] = created_cgroups


def _undo(container, init, created_cgroups, started_units):
    """Leave nothing behind: no process, no unit, no cgroup, no host mount, no state directory."""
    if init is not None:
        init.kill()
        init.detach()
    for name in started_units:
        from ..systemd_bus import stop_unit

        _cleanup(stop_unit, name)
    _cleanup(cgroups.remove, created_cgroups)
    _cleanup(hostmounts.detach_added, container.data)
    container.remove()


def _cleanup(undo, what):
    try:
        undo(what)
    except OCIError as e:
        warn(f"cleaning up after a failed create: {e}")


def write_pid_file(path, pid):
    path = pathnames.abspath(path)
    tmp = pathnames.join(pathnames.dirname(path), f".{pathnames.basename(path)}.tmp")
    with open(tmp, "w") as f:
        f.write(str(pid))
    posix.rename(tmp, path)
