"""Cgroup placement: make the container's cgroup in every hierarchy, join it, apply
device rules, list and signal its processes, and remove it on delete.

Works on v1, v2 and hybrid hosts (v1 controllers plus a cgroup2 mount): each
controller is used where the host has it (``controller_versions``). The resource
limits themselves are computed by ``resources``; ``apply`` writes them.
"""

import _thread
import posix  # not os (~1.5 ms to import): delete and kill --all use this module

from . import mountinfo, pathnames
from .errors import OCIError
from .log import debug, warn

UNIFIED = ""  # key of the cgroup2 hierarchy in the maps below


_cache = {}
_stop_primer = None  # stops the running primer (and reaps the launcher's), while one runs
_primer_lock = _thread.allocate_lock()  # API calls in several threads: one primer at most


def hierarchies(proc="/proc"):
    """{controller-key: mountpoint} of the host (the first mount of each hierarchy): a v1
    key is exactly what /proc/self/cgroup names the hierarchy ("cpu,cpuacct",
    "name=systemd"), the cgroup2 mount's key is UNIFIED. ``proc``: where /proc is (a
    fixture's copy in tests)."""
    cached = _cache.get(("hierarchies", proc))
    if cached is not None:
        return cached
    found = _cache[("hierarchies", proc)] = {}
    controllers = None
    for m in mountinfo.mounts(proc, ("cgroup", "cgroup2")):
        if m.fstype == "cgroup2":
            found.setdefault(UNIFIED, m.point)
            continue
        if controllers is None:
            controllers = v1_controllers(proc)
        key = hierarchy_key(m.super_options, controllers)
        if key:  # no controller the kernel knows and no name: not a hierarchy we can name
            found.setdefault(key, m.point)
    return found


def v1_controllers(proc="/proc"):
    """The controller names this kernel has (the first column of /proc/cgroups)."""
    try:
        with open(f"{proc}/cgroups") as f:
            return {line.split("\t", 1)[0] for line in f if not line.startswith("#")}
    except OSError:
        return set()


def hierarchy_key(super_options, controllers):
    """A v1 mount's key: its controllers and name=X, in the mount's order (the kernel
    writes both lists in the same order), without the options that are no controller
    (rw, xattr, noprefix, clone_children, cpuset_v2_mode, favordynmods, release_agent=...)."""
    return ",".join(o for o in super_options if o in controllers or o.startswith("name="))


def pure_v2(hierarchy_map):
    """Whether a {controller-key: ...} map of hierarchies (the host's, or a container's
    paths) is the unified hierarchy alone: a pure cgroup v2 host."""
    return set(hierarchy_map) == {UNIFIED}


def own_cgroups(proc="/proc"):
    """{controller-key: path} of this process (from /proc/self/cgroup)."""
    cached = _cache.get(("own", proc))
    if cached is not None:
        return cached
    own = _cache[("own", proc)] = cgroups_of(f"{proc}/self/cgroup")
    return own


def cgroups_of(cgroup_file):
    """{controller-key: path} read from a /proc/<pid>/cgroup file."""
    found = {}
    with open(cgroup_file) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            found[controllers] = path
    return found


def container_paths(cgroups_path, container_id, proc="/proc"):
    """{mountpoint-dir: absolute dir} the container's cgroup lives at, per hierarchy.

    An absolute cgroupsPath is taken from each hierarchy's root; a relative one
    (and the default, the container id) below this process's own cgroup, as runc does.
    On cgroup2 a relative path goes below the parent of this process's cgroup, as
    runc's does: our own cgroup holds processes, so it can't enable controllers below.
    """
    inner = cgroups_path or container_id
    own = own_cgroups(proc) if not inner.startswith("/") else {}
    paths = {}
    for key, mountpoint in hierarchies(proc).items():
        base = own.get(key, "/") if own else "/"
        if key == UNIFIED:
            base = pathnames.dirname(base)
        rel = pathnames.normpath(pathnames.join(base, inner)).lstrip("/")
        if rel.startswith(".."):
            raise OCIError(f"linux.cgroupsPath: {cgroups_path!r} leaves the cgroup hierarchy")
        paths[key] = f"{mountpoint}/{rel}"
    return paths


def owned(paths, record):
    """``paths`` ({key: directory}, read from the state ``record``) once each is shown to
    be a cgroup a container can own; else an error naming the record and the path."""
    good, bad = sort_owned(paths)
    if bad:
        raise OCIError(f"{record}: cgroup_paths: {bad[0]}")
    return good


def sort_owned(paths):
    """({key: directory} of the entries that are a container's cgroup, [why each other one
    is not])."""
    mounts = hierarchies()
    own = own_cgroups()
    good, bad = {}, []
    for key, path in paths.items():
        why = _not_ownable(key, path, mounts, own)
        if why:
            bad.append(f"{path!r} {why}")
        else:
            good[key] = path
    return good, bad


def _not_ownable(key, path, mounts, own):
    """Why ``path`` can't be a container's cgroup in hierarchy ``key``, or None. A
    container's cgroup lies strictly below the host's mount of its hierarchy, in plain
    form (no "..", no "//"), and neither is nor contains this process's own cgroup:
    whatever a state record says, the runtime never freezes, signals or removes the
    host's hierarchy roots, its own cgroup or anything outside cgroupfs."""
    mount = mounts.get(key)
    if mount is None:
        return f"is in no cgroup hierarchy of this host ({key or 'cgroup2'!r})"
    mount = mount.rstrip("/")
    if pathnames.normpath(path) != path or not path.startswith(mount + "/"):
        return f"is not a cgroup below the host's {key or 'cgroup2'} hierarchy at {mount}"
    mine = own.get(key)
    if mine is not None and (mine == path[len(mount):] or mine.startswith(path[len(mount):] + "/")):
        return "holds the runtime's own cgroup"
    return None


def removable(created, paths):
    """The directories of a record's ``created`` list that are one of the container's
    checked cgroups (``paths``) or an ancestor of one that a container could own."""
    mounts = hierarchies()
    own = own_cgroups()
    return [d for d in created if any((d == leaf or leaf.startswith(d + "/")) and not _not_ownable(key, d, mounts, own)
                                      for key, leaf in paths.items())]


def prime_migration():
    """Have the kernel ready to move a process between cgroups when the container joins.

    A migration waits out an RCU grace period (~10 ms here, holding cgroupfs's lock, so
    even a mkdir there waits) unless another one happened within about one grace period
    before. A primer "moves" itself into the cgroup it is already in (nothing changes
    cgroup) every 3 ms until ``join`` is done: the first of those pays the wait while
    this process starts, the rest keep the kernel in its fast state.

    The installed ``ociruntime`` command (native/launcher.c) forks the primer before
    Python even starts and names it in OCIRUNTIME_PRIMER; here we adopt it. Otherwise a
    thread of ours primes, from now. A thread, not a forked child: a child would share
    this process's memory copy-on-write, and every page Python touched meanwhile would
    fault (about 1.5 ms per create here).

    Already priming (the command primed before its imports, then called the API; another
    thread's create): nothing more to do.
    """
    with _primer_lock:
        if _stop_primer is None:
            _start_primer()


def _start_primer():
    global _stop_primer
    launcher = _adopt_launcher_primer()
    if launcher is not None:
        debug(f"cgroup migration primer: the launcher's, pid {launcher[0]}")

        def stop():
            _stop_launcher_primer(*launcher)

        _stop_primer = stop
        return
    procs = own_procs()
    if procs is None:
        return
    import sys

    stop = _thread.allocate_lock()
    stop.acquire()
    _thread.start_new_thread(_prime, (procs, stop))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # the thread's next move mustn't wait 5 ms for the GIL

    def stop_thread():
        stop.release()
        sys.setswitchinterval(interval)  # a process that stays up (a shim) gets its own back

    _stop_primer = stop_thread
    debug(f"cgroup migration primer: a thread, writing {procs}")


def own_procs(proc="/proc"):
    """cgroup.procs of this process's cgroup in the first hierarchy of /proc/self/cgroup
    that is mounted, or None: where a primer writes. native/launcher.c's own_procs finds
    the same file (tests/test_mountinfo.py)."""
    mounts = hierarchies(proc)
    own = next(((mounts[k], p.strip("/")) for k, p in own_cgroups(proc).items() if k in mounts), None)
    return None if own is None else "/".join(part for part in (*own, "cgroup.procs") if part)


def _adopt_launcher_primer():
    """(pid, fd) of the launcher's primer, once checked to be our live child and a pipe."""
    value = posix.environ.get(b"OCIRUNTIME_PRIMER")
    if not value:
        return None
    try:
        pid, fd = (int(part) for part in value.split(b":"))
        if pid <= 0 or posix.fstat(fd).st_mode & 0o170000 != 0o010000:  # not a pipe: not ours
            return None
        if posix.waitpid(pid, posix.WNOHANG)[0]:  # ours, but already gone
            posix.close(fd)
            return None
    except (ValueError, OSError):  # ChildProcessError: not our child
        return None
    posix.set_inheritable(fd, False)  # hooks and the init must not hold it
    return pid, fd


def _prime(procs, stop):
    try:
        while True:
            fd = posix.open(procs, posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, b"0")
            finally:
                posix.close(fd)
            if stop.acquire(timeout=0.003):
                return
    except OSError:
        return  # only ever a head start: join works without it


def _stop_launcher_primer(pid, fd):
    """The launcher's primer exits as soon as its pipe hangs up; it is our child, so
    reap it rather than leave a zombie."""
    posix.close(fd)
    try:
        posix.waitpid(pid, 0)
    except ChildProcessError:
        pass


def end_priming():
    """Stop the primer, if ``join`` has not already."""
    global _stop_primer
    with _primer_lock:
        stop, _stop_primer = _stop_primer, None
    if stop is not None:
        stop()


def controller_versions():
    """({controller: "v1"|"v2"}, pure_v2) of this host: v1 where a v1 hierarchy has the
    controller, else v2 where the cgroup2 root offers it (a hybrid host has both)."""
    mounts = hierarchies()
    versions = {}
    if UNIFIED in mounts:
        try:
            with open(f"{mounts[UNIFIED]}/cgroup.controllers") as f:
                versions = dict.fromkeys(f.read().split(), "v2")
        except OSError:
            pass
    for key in mounts:
        if key != UNIFIED:
            versions.update((c, "v1") for c in key.split(",") if not c.startswith("name="))
    return versions, pure_v2(mounts)


def make(paths, created, device_rules, writes):
    """Make each cgroup directory, then apply the device rules and the resource
    ``writes`` before any process is in it: v1 device rules go in one by one (deny all,
    then allow), and a process inside would see the gaps. Every directory made is
    appended to ``created`` at once, so that a create failing half-way still knows what
    to ``remove``."""
    try:
        for key, path in paths.items():
            made = _makedirs(path)
            created.extend(made)
            if "cpuset" in key.split(","):
                for d in made:
                    _inherit_cpuset(d)
        if UNIFIED in paths:
            _enable_controllers(paths[UNIFIED], {w["controller"] for w in writes if w["version"] == "v2"})
        devices = controller_path(paths, "devices")
        if device_rules and devices:
            for kind, rule in device_rules:
                _write(f"{devices}/devices.{kind}", rule)
    except OSError as e:
        raise OCIError(f"linux.cgroupsPath: {e.filename}: {e.strerror}") from None
    if device_rules and not devices:
        _attach_device_filter(paths, device_rules)
    apply(paths, writes)


def _attach_device_filter(paths, device_rules):
    """Without a v1 devices controller the rules become an eBPF device program on the
    container's cgroup2 directory (also on a hybrid host: the kernel asks both)."""
    if UNIFIED not in paths:
        raise OCIError("linux.resources.devices: this host has neither a v1 devices cgroup nor cgroup v2")
    from .linux.devicefilter import program
    from .native import attach_device_filter

    attach_device_filter(paths[UNIFIED], program(device_rules))


def _enable_controllers(path, wanted):
    """Enable controllers in cgroup.subtree_control from the cgroup2 root down to the
    container's parent, so the container's directory has their files. On a pure v2
    host every controller offered (runc does the same: stats need them); on a hybrid
    host only those the resources use there."""
    mounts = hierarchies()
    mountpoint = mounts[UNIFIED]
    needed = set(wanted)
    if pure_v2(mounts):
        with open(f"{mountpoint}/cgroup.controllers") as f:
            wanted = set(f.read().split())
    wanted.discard("cgroup")
    if not wanted:
        return
    parent = mountpoint
    for part in path[len(mountpoint):].strip("/").split("/")[:-1]:
        _enable_in(parent, wanted, needed)
        parent = f"{parent}/{part}"
    _enable_in(parent, wanted, needed)


def _enable_in(directory, wanted, needed):
    """Enable ``wanted`` there; one the resources don't need may fail (as runc lets it):
    rootless, a delegated subtree offers only what its delegator enabled (rootless.py)."""
    with open(f"{directory}/cgroup.subtree_control") as f:
        missing = wanted - set(f.read().split())
    for controller in sorted(missing):
        try:
            _write(f"{directory}/cgroup.subtree_control", f"+{controller}")
        except OSError as e:
            if controller not in needed:
                continue
            raise OCIError(f"linux.resources: enabling the {controller} controller in "
                           f"{directory}/cgroup.subtree_control: {e.strerror}") from None


def apply(paths, writes):
    """Carry out ``resources.writes`` on the container's cgroups. A write marked
    "retry" that the kernel refuses with EINVAL is tried again after the others (a new
    period below the old quota, a memory limit above the old memory+swap limit...)."""
    from .log import warn

    later = []
    for w in writes:
        directory = directory_of(paths, w)
        try:
            _write_setting(directory, w)
            if w["on_error"] == "dropped" and not _holds(directory, w):
                warn(f"{w['label']}: this kernel ignores {w['file']} (it reads back otherwise); ignored")
        except OSError as e:
            if e.errno == 22 and w["on_error"] == "retry":  # EINVAL
                later.append((directory, w))
            elif e.errno == 2 and w["on_error"] == "optional":  # ENOENT
                continue
            elif e.errno in (2, 95, 524) and w["on_error"] == "dropped":  # ENOENT, EOPNOTSUPP, ENOTSUPP
                warn(f"{w['label']}: this kernel dropped {w['file']}; ignored")
            else:
                raise _write_error(directory, w, e) from None
    for directory, w in later:
        try:
            _write_setting(directory, w)
        except OSError as e:
            raise _write_error(directory, w, e) from None


def _holds(directory, w):
    """Whether a write reads back (newer kernels take kernel-memory limits and drop them)."""
    with open(f"{directory}/{w['file']}") as f:
        return f.read().strip() == w["value"]


def directory_of(paths, w):
    """The container's directory that a resources.write goes to."""
    directory = paths.get(UNIFIED) if w["version"] == "v2" else controller_path(paths, w["controller"])
    if directory is None:
        raise OCIError(f"{w['label']}: the container has no {w['controller']} cgroup")
    return directory


def _write_setting(directory, w):
    file, value = w["file"], w["value"]
    if w["alt"] and not pathnames.exists(f"{directory}/{file}"):
        file, value = w["alt"]
    _write(f"{directory}/{file}", value)


def _write_error(directory, w, e):
    detail = e.strerror
    if e.errno == 2:  # ENOENT
        detail = "this kernel has no such file there (the controller lacks this feature)"
    elif e.errno == 16 and w["file"] in ("memory.limit_in_bytes", "memory.max"):  # EBUSY
        detail = f"below what the container uses now ({memory_usage(directory)} bytes)"
    return OCIError(f"{w['label']}: write {w['value']!r} to {directory}/{w['file']}: {detail}")


def memory_usage(directory):
    """Bytes of memory the cgroup at ``directory`` uses now (v1 or v2), or None."""
    for name in ("memory.usage_in_bytes", "memory.current"):
        try:
            with open(f"{directory}/{name}") as f:
                return int(f.read())
        except OSError:
            continue
    return None


def join(paths, pid):
    """Move ``pid`` into the container's cgroups, then widen its CPU affinity."""
    try:
        for key, path in paths.items():
            if key == UNIFIED and not _is_leaf_ok(path):
                continue
            _write(f"{path}/cgroup.procs", str(pid))
    except OSError as e:
        raise OCIError(f"linux.cgroupsPath: {e.filename}: {e.strerror}") from None
    finally:
        end_priming()
    _reset_affinity(pid)


def _reset_affinity(pid):
    """The init inherits the runtime's CPU affinity (an engine may pin itself); allow every
    possible CPU instead and let the kernel narrow that to the container's cpuset, as runc
    does (tryResetCPUAffinity). A failure is a warning there and here."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            cpus = [int(n) for part in f.read().strip().split(",") for n in part.split("-")]
        posix.sched_setaffinity(pid, range(max(cpus) + 1))
    except (OSError, ValueError) as e:
        warn(f"resetting the CPU affinity of pid {pid} failed -- the container may inherit the runtime's: {e}")


def _inherit_cpuset(path):
    """A new v1 cpuset starts empty and takes no process: copy the parent's cpus and mems.
    A parent still empty (another create made it a moment ago and has not filled it yet)
    is filled first from its own, as runc does; the hierarchy's root is never empty."""
    parent = path.rpartition("/")[0]
    for name in ("cpuset.cpus", "cpuset.mems"):
        if _read_cpuset(f"{path}/{name}"):
            continue
        value = _read_cpuset(f"{parent}/{name}")
        if not value:
            _inherit_cpuset(parent)
            value = _read_cpuset(f"{parent}/{name}")
        _write(f"{path}/{name}", value)


def _read_cpuset(path):
    with open(path) as f:
        return f.read().strip()


def _is_leaf_ok(path):
    """A cgroup2 directory we can add a process to (no domain controllers enabled below)."""
    try:
        with open(f"{path}/cgroup.subtree_control") as f:
            return not f.read().strip()
    except OSError:
        return False


def missing(paths):
    """The directories ``make`` would create for ``paths`` now, parents first: what a
    create's first state record names before any of them exists."""
    return [d for path in paths.values() for d in _missing(path)]


def _missing(path):
    found = []
    while not pathnames.isdir(path):
        found.append(path)
        path = path.rpartition("/")[0]
    return found[::-1]


def _makedirs(path):
    """Make ``path`` and its missing parents; the directories this call made. Containers
    may share a parent none of them found (containerd's /<namespace>): one another create
    made meanwhile is not ours (EEXIST, left out), one another delete removed meanwhile
    (ENOENT below it) is made again."""
    made = []
    for attempt in range(100):
        try:
            for d in _missing(path):
                try:
                    posix.mkdir(d)
                except FileExistsError:
                    if not pathnames.isdir(d):
                        raise
                    continue
                made.append(d)
            return made
        except FileNotFoundError:
            if attempt == 99:
                raise


def _write(path, value):
    """One write(2) of a cgroup file, never creating it: a file the kernel lacks is
    ENOENT (open(..., "w") would try O_CREAT, and cgroupfs answers that with EPERM).
    The write's error names the file, as the open's does."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, value.encode())
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    finally:
        posix.close(fd)


def controller_path(paths, controller):
    """The container's directory in the hierarchy holding ``controller``, or None."""
    return next((p for k, p in paths.items() if controller in k.split(",")), None)


def freezer_file(paths):
    """The file that freezes the container: v1's freezer.state, else cgroup v2's
    cgroup.freeze (also on a hybrid host without a v1 freezer), else None."""
    freezer = controller_path(paths, "freezer")
    if freezer:
        return f"{freezer}/freezer.state"
    if UNIFIED in paths:
        return f"{paths[UNIFIED]}/cgroup.freeze"
    return None


def pids(paths):
    """Every pid in the container's cgroups (v1 hierarchies may differ while moving)."""
    found = set()
    for path in paths.values():
        try:
            with open(f"{path}/cgroup.procs") as f:
                found.update(int(line) for line in f if line.strip())
        except OSError:
            continue
    return found


def remove(created):
    """Remove the directories this runtime created, deepest first; never anything else.

    A cgroup whose last process just died stays busy until the kernel has reaped
    it, so EBUSY is retried for up to a second. A parent that now holds another
    container's cgroup too is left to that one.
    """
    import time

    for d in sorted(created, key=len, reverse=True):
        for attempt in range(100):
            try:
                posix.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == 16 and _has_children(d):  # EBUSY
                    break
                if e.errno != 16 or attempt == 99:
                    raise OCIError(f"cgroup {d}: {e.strerror}") from None
                time.sleep(0.01)


def _has_children(d):
    try:
        with posix.scandir(d) as entries:
            return any(e.is_dir(follow_symlinks=False) for e in entries)
    except OSError:
        return False
