"""delete: remove a stopped container (with --force, stop it first):
its processes, cgroups and state directory; then run the poststop hooks.

What goes is what the kernel confirms is the container's (state.py): its cgroups
checked by ``cgroups.sort_owned``, its init by ``state.init_pid``. ``--force`` also
takes a damaged record (its sound fields) or a directory a create left without one.

A container that was created but never started is deleted without --force too, its
waiting init killed, as runc does: runtime.md calls deleting a container that is not
stopped an error (runtime-tools' delete test checks it, and runc fails that check too),
but engines are written against runc: containerd-shim-runc-v2's Delete of a task in its
created state runs a plain `delete` and fails when it fails, leaving the init blocked on
its start pipe with the container's namespaces, cgroups and mounts
(tests/test_runc_contract.py drives that shim). A running or paused container still
needs --force. `delete --force` of an id that doesn't exist succeeds, as runc's does.
"""

import _signal
import posix
import time

from .. import cgroups, hooks, hostmounts, state
from ..errors import OCIError
from ..log import warn


def _kill_all(paths, pid):
    """SIGKILL the init and everything in the cgroups; False when there was nothing to kill."""
    pids = cgroups.pids(paths)
    if pid is not None:
        pids.add(pid)
    for p in pids:
        try:
            posix.kill(p, _signal.SIGKILL)
        except ProcessLookupError:
            pass
    freezer = cgroups.freezer_file(paths)
    if pids and freezer and state.frozen(freezer):
        from .pause import set_frozen

        set_frozen(freezer, False)  # a frozen process can't die
    return bool(pids)


def _wait_stopped(container, paths, timeout=10.0):
    """Until the init and every process in the cgroups are gone. Nothing is reaped here:
    the init is the caller's child (CLONE_PARENT) and the caller's to wait for (a shim's
    reaper); a zombie counts as gone (``state.init_pid``), and the kernel no longer lists
    one in cgroup.procs."""
    deadline = time.monotonic() + timeout
    while True:
        if state.init_pid(container.data, paths) is None and not cgroups.pids(paths) and \
                (paths or _namespace_gone(container.data)):
            return
        if time.monotonic() > deadline:
            raise OCIError(f"container {container.id!r}: processes still running after SIGKILL")
        time.sleep(0.002)


def _stop_unit(name, paths, created):
    """The systemd driver's unit, unless systemd has collected it already (the bus and its
    library cost more than the rest of a delete)."""
    from .. import systemd

    if systemd.may_be_loaded(name, paths, created):
        from ..systemd_bus import stop_unit

        stop_unit(name)


def _namespace_gone(data):
    """No cgroups (rootless): the rest of the pid namespace goes with its init."""
    from ..rootless import namespace_gone

    return namespace_gone(data)


def destroy(container):
    """Kill what is left, remove the cgroups, mounts and state, then run poststop."""
    data = container.data
    paths, bad = cgroups.sort_owned(data.get("cgroup_paths") or {})
    for why in bad:
        warn(f"container {container.id!r}: cgroup_paths: {why}: left alone")
    pid = state.init_pid(data, paths)
    if _kill_all(paths, pid) or not paths:
        _wait_stopped(container, paths)
    if data.get("systemd_unit"):
        _stop_unit(data["systemd_unit"], paths, data.get("cgroups_created") or [])
    cgroups.remove(cgroups.removable(data.get("cgroups_created") or [], paths))
    try:
        hostmounts.detach_added(data)
    except OCIError as e:
        warn(str(e))
    final_state = container.spec_state() if state.has_spec_state(data) else None
    container.remove()
    if final_state is not None and "hooks" in data:
        hooks.run(data["hooks"]["poststop"], final_state, fatal=False)


def delete(root, container_id, force=False):
    if force:
        container, damage = state.Container.salvage(root, container_id)
        if container is None:
            return
        with container:
            if damage:
                warn(f"{damage}: what it names is left alone")
            destroy(container)
        return
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if status not in ("stopped", "created"):
            raise OCIError(f"cannot delete container {container_id!r} that is not stopped: {status}")
        destroy(container)
