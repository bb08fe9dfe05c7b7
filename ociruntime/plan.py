"""config.json → the plan: plain data describing everything the container's init
must do, in order. Pure: no syscalls beyond reading the host (stat of bind
sources, the cgroup layout), so it is unit-tested without root.

The plan is a dict; its ``steps`` are dicts whose ``op`` names an OCI_STEP_* of
native/oci_native.h. ``ociruntime.native`` turns it into the C structs.
"""

import posix

from . import pathnames
from .errors import ConfigError, OCIError
from .hooks import entries as hook_entries
from .linux import capabilities, devices, mountopts, namespaces, rlimits, seccomp
from .log import warn

PIVOT_ROOT, PIVOT_MOVE, PIVOT_CHROOT = 0, 1, 2  # OCI_PIVOT_* of native/oci_native.h
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RESCTRL = "/sys/fs/resctrl"
NODE_ONLINE = "/sys/devices/system/node/online"


def step(op, label, dst=None, src=None, fstype=None, data=None, flags=0, propagation=0,
         mode=0, dev=0, uid=0, gid=0, copyup=0):
    return {"op": op, "label": label, "dst": dst, "src": src, "fstype": fstype, "data": data,
            "flags": flags, "propagation": propagation, "mode": mode, "dev": dev, "uid": uid, "gid": gid,
            "copyup": copyup}


def build(config, bundle, container_id, no_pivot=False, no_new_keyring=False, preserve_fds=0,
          cgroup_paths=None, cgroup_host=None, joins_first=False, in_userns=False):
    """Return the plan for ``config`` (already schema-validated) of the bundle at ``bundle``.
    ``cgroup_host`` (resources.Host) says where the host has each cgroup controller.
    ``in_userns``: the runtime itself runs in a user namespace (rootless podman's, as
    root there): device nodes can't be made even where the config asks no user namespace.
    ``joins_first``: the init waits until it is in its cgroups, limits and device rules
    written, before its first step (the systemd driver on v1: systemd moves it into a cgroup
    whose device rules are then written again, one by one, with the init inside)."""
    linux = config.get("linux") or {}
    process = config.get("process")
    if process is None:
        raise ConfigError("process", "is required to create a container")
    _refuse_intel_rdt(linux)
    apparmor_exec, selinux_exec, mount_label = _lsm(process, linux)

    ns_new, joined = _namespaces(linux)
    joins = [(path, namespaces.FLAGS[t]) for t, path in joined]
    ns_all = set(ns_new) | {t for t, _ in joined}
    userns = "user" in ns_all
    for field in ("hostname", "domainname"):
        if config.get(field) and "uts" not in ns_all:
            raise ConfigError(field, "needs a uts namespace (runc refuses to change the host's too)")

    root = config.get("root") or {}
    rootfs = pathnames.join(bundle, root.get("path", "rootfs"))
    if not pathnames.isdir(rootfs):
        raise ConfigError("root.path", f"{rootfs}: not a directory")
    rootfs = pathnames.realpath(rootfs)

    early_sync = userns
    steps = _steps(config, linux, bundle, rootfs, ns_new, ns_all, userns, no_pivot, cgroup_paths or {}, in_userns)
    if mount_label:
        _label_mounts(steps, mount_label)
    if not early_sync:
        _insert_wait_parent(steps, cgroup_paths or {}, joins_first)
    attrs = _process_attrs(process, linux)
    if "cgroup" in ns_new:
        _insert_wait_joined(steps, "unshare_cgroupns", joins_first)
    elif attrs["scheduler"] or attrs["memory_policy"] or joins_first:
        # runc's order: the init sets these once it is in its cgroups (an RT policy needs the
        # cpu cgroup's realtime runtime; a cpuset bounds the nodes and the deadline's CPUs).
        _insert_wait_joined(steps, "wait_joined", joins_first)
    clone_flags = 0
    for t in ns_new:
        if t not in ("cgroup", "time"):
            clone_flags |= namespaces.FLAGS[t]
    return {
        "id": container_id,
        "clone_flags": clone_flags,
        "unshare_cgroupns": "cgroup" in ns_new,
        # 'C' once the parent joined the cgroups: awaited at unshare_cgroupns or wait_joined
        "waits_for_join": any(s["op"] in ("unshare_cgroupns", "wait_joined") for s in steps),
        "unshare_timens": "time" in ns_new,
        "timens_offsets": _time_offsets(linux) if "time" in ns_new else None,
        "joins": joins,
        "userns": userns,
        # Joining namespaces puts the init beside their processes while it still holds the
        # host (its fds, its memory): non-dumpable keeps a same-uid process there without
        # CAP_SYS_PTRACE from reading or ptracing it, as runc's nsexec does. Not in a user
        # namespace: its /proc/self files would then belong to a root the init isn't.
        "non_dumpable": bool(joins) and not userns,
        "uid_map": _id_map(linux.get("uidMappings"), "linux.uidMappings") if "user" in ns_new else None,
        "gid_map": _id_map(linux.get("gidMappings"), "linux.gidMappings") if "user" in ns_new else None,
        "rootfs": rootfs,
        "early_sync": early_sync,
        "steps": steps,
        # What the parent must answer: 'G' (early or at a wait_parent step), 'H' with 'S'.
        "waits_for_parent": early_sync or any(s["op"] == "wait_parent" for s in steps),
        "stops_at_hooks": any(s["op"] == "hooks" for s in steps),
        "host_mounts": "mount" not in ns_all,
        "create_hooks": hook_entries(config, "createContainer"),
        "process": {**_process(process, hook_entries(config, "startContainer"), _seccomp(linux),
                             apparmor_exec, selinux_exec, lambda: _passwd_file(config, bundle, rootfs), userns),
                    **attrs},
        "terminal": bool(process.get("terminal")),
        "console_size": _console_size(process),
        "preserve_fds": _preserved_fds(preserve_fds),
        "no_new_keyring": no_new_keyring,
        "net_devices": _net_devices(linux, ns_all),
        "device_rules": devices.cgroup_rules((linux.get("resources") or {}).get("devices") or []),
        "cgroup_writes": cgroup_writes(linux.get("resources"), cgroup_host),
    }


def bind_steps(plan):
    """The plan's bind mounts (not remounts): a checkpoint names their mount points to CRIU
    as external, a restore maps them to their sources."""
    return [s for s in plan["steps"]
            if s["op"] == "mount" and s["flags"] & mountopts.MS_BIND and not s["flags"] & mountopts.MS_REMOUNT]


def checkpoint_facts(plan):
    """What a checkpoint of this container must tell CRIU (criu.py), kept in its state
    record: the mount points of bind mounts and device nodes, which CRIU is to leave to
    whoever restores ("external": their sources are the host's), the masked paths, and the
    namespaces the container joined by path ({type: path})."""
    externals = [s["dst"] for s in bind_steps(plan)] + [s["dst"] for s in plan["steps"] if s["op"] == "mknod"]
    masked = [s["dst"] for s in plan["steps"] if s["op"] == "mask"]
    flag_names = {flag: name for name, flag in namespaces.FLAGS.items()}
    return {"externals": externals, "masked": masked,
            "joined": {flag_names[flag]: path for path, flag in plan["joins"]}}


def _preserved_fds(count):
    """--preserve-fds N passes fds 3 to 2+N: N can't be negative (the init's own fds are
    moved above 2+N) nor reach past the open file limit."""
    limit = posix.sysconf("SC_OPEN_MAX") - 3
    if not 0 <= count <= limit:
        raise OCIError(f"--preserve-fds {count}: must be 0 to {limit} (fds from 3 up to the open file limit)")
    return count


def build_exec(config, process, init_pid, preserve_fds=0):
    """The plan for `exec`: a process cloned into the namespaces of the running container
    whose init is ``init_pid`` (its config ``config``), set up from ``process`` (a
    schema-valid process object) with the container's seccomp filter, as runc's setns
    init does. No mounts, no hooks; the parent joins the container's cgroups."""
    linux = config.get("linux") or {}
    types = [ns["type"] for ns in linux.get("namespaces") or []]
    if "mount" not in types:
        raise ConfigError("linux.namespaces", "exec needs the container to have a mount namespace "
                                              "(without one its root is a chroot the new process can't join)")
    joins = [(f"/proc/{init_pid}/ns/{namespaces.PROC_NAMES[t]}", namespaces.FLAGS[t])
             for t in sorted(types, key=namespaces.JOIN_ORDER.index)]
    apparmor_exec, selinux_exec, _ = _lsm(process, linux)
    attrs = _process_attrs(process, linux)
    steps = []
    if attrs["scheduler"] or attrs["memory_policy"]:
        _insert_wait_joined(steps, "wait_joined")
    waits_for_join = bool(steps)
    if process.get("terminal"):
        steps.append(step("console", "process.terminal"))  # a pty, and no mount: the container's is there
    userns = "user" in types
    process_plan = _process(process, [], _seccomp(linux), apparmor_exec, selinux_exec,
                            lambda: (f"/proc/{init_pid}/root", "/etc/passwd"), userns)
    if userns:
        from .rootless import exec_groups

        exec_groups(process_plan, init_pid)
    affinity = (None, None)
    if process.get("execCPUAffinity") is not None:
        from .linux import procattrs

        affinity = procattrs.exec_cpu_affinity(process["execCPUAffinity"])
    return {
        "exec_cpu_affinity": affinity,  # (initial, final): before and after the cgroup join
        "id": None, "clone_flags": 0, "unshare_cgroupns": False, "unshare_timens": False, "timens_offsets": None,
        "waits_for_join": waits_for_join,
        "joins": joins,
        "userns": userns,
        "non_dumpable": not userns,  # it always joins: see build()
        "uid_map": None, "gid_map": None,
        "rootfs": "/",  # the container's, once its mount namespace is joined
        "early_sync": False, "steps": steps, "waits_for_parent": False, "stops_at_hooks": False,
        "host_mounts": False, "create_hooks": [],
        # the container's /etc/passwd as it is now, mounts and all
        "process": {**process_plan, **attrs},
        "terminal": bool(process.get("terminal")),
        "console_size": _console_size(process),
        "preserve_fds": _preserved_fds(preserve_fds),
        "no_new_keyring": False,
        "net_devices": [], "device_rules": [], "cgroup_writes": [],
    }


def has_limits(resources):
    """Whether linux.resources sets anything beyond device rules (most containers don't)."""
    return any(v not in (None, {}, []) for k, v in (resources or {}).items() if k != "devices")


def cgroup_writes(resources, host):
    """The resource limits as cgroup file writes (``resources`` is imported only when
    there are limits)."""
    if not has_limits(resources):
        return []
    from . import resources as resources_mod

    return resources_mod.writes(resources, host or resources_mod.Host({}))


def _insert_wait_parent(steps, cgroup_paths, first=False):
    """The init needs the parent's 'G' only once a step reads a cgroup directory (or at
    the hooks): until then it builds mounts while the parent makes the cgroups."""
    dirs = tuple(cgroup_paths.values())
    for i, s in enumerate(steps):
        if first or s["op"] == "hooks" or (s["src"] and dirs and s["src"].startswith(dirs)):
            steps.insert(i, step("wait_parent", "linux.cgroupsPath"))
            return


def _insert_wait_joined(steps, op, first=False):
    """A step that waits for 'C' (joined): as late as it can, so the init builds its mounts
    meanwhile — before the hooks (the parent sends 'C' before it reads 'H'), else last; and
    after a wait_parent step, as 'G' comes before 'C'. A cgroup namespace (unshare_cgroupns)
    is rooted where the init is when it unshares, so that one also comes before the first
    cgroup mount, which shows the namespace's root. ``first``: right after the wait_parent
    step (or first of all), before any other."""
    start = next((i + 1 for i, s in enumerate(steps) if s["op"] == "wait_parent"), 0)
    cgroup_fs = ("cgroup", "cgroup2") if op == "unshare_cgroupns" else ()
    at = start if first else next((i for i in range(start, len(steps))
                                   if steps[i]["op"] == "hooks" or steps[i]["fstype"] in cgroup_fs), len(steps))
    label = "linux.namespaces" if op == "unshare_cgroupns" else "linux.cgroupsPath"
    steps.insert(at, step(op, label))


def _refuse_intel_rdt(linux):
    """Intel RDT is not implemented: refused rather than silently ignored."""
    if linux.get("intelRdt"):
        if not pathnames.exists(RESCTRL):
            raise ConfigError("linux.intelRdt", f"this host has no resctrl filesystem (Intel RDT): no {RESCTRL}")
        raise ConfigError("linux.intelRdt", "Intel RDT (resctrl) is not implemented by this runtime")


def _net_devices(linux, ns_all):
    """linux.netDevices → [(host name, name inside or None)], moved by netdevices.py."""
    net_devices = linux.get("netDevices") or {}
    if not net_devices:
        return []
    from .netdevices import valid_name

    if "network" not in ns_all:
        raise ConfigError("linux.netDevices", "needs a network namespace: without one the devices are the host's")
    out = []
    for name, dev in net_devices.items():
        label = f"linux.netDevices.{name}"
        if not valid_name(name):
            raise ConfigError(label, f"{name!r} is not a network device name")
        new = (dev or {}).get("name")
        if new is not None and not valid_name(new):
            raise ConfigError(f"{label}.name", f"{new!r} is not a network device name (1 to 15 bytes, "
                                               "no '/', ':' or whitespace)")
        out.append((name, new or None))
    return out


def _process_attrs(process, linux):
    """What the init sets on itself before exec (linux/procattrs.py): scheduler, I/O
    priority, personality, memory policy; None each when not configured."""
    attrs = {"scheduler": None, "io_priority": None, "personality": None, "memory_policy": None}
    given = {k for k in ("scheduler", "ioPriority", "execCPUAffinity") if process.get(k) is not None} | \
        {k for k in ("personality", "memoryPolicy") if linux.get(k) is not None}
    if not given:
        return attrs
    from .linux import procattrs

    if "scheduler" in given:
        attrs["scheduler"] = procattrs.scheduler(process["scheduler"])
        for line in procattrs.scheduler_warnings(attrs["scheduler"]):
            warn(line)
    if "ioPriority" in given:
        attrs["io_priority"] = procattrs.io_priority(process["ioPriority"])
    if "personality" in given:
        attrs["personality"] = procattrs.personality(linux["personality"])
    if "memoryPolicy" in given:
        attrs["memory_policy"] = procattrs.memory_policy(linux["memoryPolicy"], pathnames.read_text(NODE_ONLINE))
    if "execCPUAffinity" in given:
        # Checked only: the spec applies it to processes `exec` starts, never to the init.
        procattrs.exec_cpu_affinity(process["execCPUAffinity"])
    return attrs


def _lsm(process, linux):
    """(apparmor_exec, selinux_exec, mount_label), each None when unset; the host is
    looked at only when one is set. See linux/lsm.py."""
    if not (process.get("apparmorProfile") or process.get("selinuxLabel") or linux.get("mountLabel")):
        return None, None, None
    from .linux import lsm

    try:
        return lsm.settings(process, linux)
    except ValueError as e:
        path, msg = str(e).split(": ", 1)
        raise ConfigError(path, msg) from None


def _label_mounts(steps, mount_label):
    """linux.mountLabel, as runc applies it: context="<label>" in the data of every
    mount that takes it (tmpfs, devpts, the tmpfs of a v1 cgroup mount, the tmpfs that
    masks a directory...; not bind, proc, sysfs, cgroup mounts, nor a remount, which
    keeps the context it has), and an xattr on mqueue's mount point."""
    from .linux import lsm

    for i in range(len(steps) - 1, -1, -1):
        s = steps[i]
        if s["op"] == "mask":
            s["data"] = lsm.mount_data(None, mount_label)  # used only where it mounts a tmpfs
        elif s["op"] == "mount" and s["fstype"] == "mqueue":
            steps.insert(i + 1, step("file_label", s["label"], dst=s["dst"], src=mount_label))
        elif (s["op"] == "mount" and s["fstype"] and s["fstype"] not in lsm.NO_CONTEXT
              and not s["flags"] & (mountopts.MS_BIND | mountopts.MS_REMOUNT)):
            s["data"] = lsm.mount_data(s["data"], mount_label)


def _namespaces(linux):
    new, joins, seen = [], [], set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        t = ns["type"]
        if t in seen:
            raise ConfigError(f"linux.namespaces[{i}].type", f"duplicate namespace {t!r}")
        seen.add(t)
        if ns.get("path"):
            if not pathnames.exists(ns["path"]):
                raise ConfigError(f"linux.namespaces[{i}].path", f"{ns['path']}: no such file")
            joins.append((t, ns["path"]))
        else:
            new.append(t)
    joins.sort(key=lambda j: namespaces.JOIN_ORDER.index(j[0]))
    return new, joins


def _id_map(mappings, label):
    if not mappings:
        raise ConfigError(label, "a user namespace needs id mappings")
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def _time_offsets(linux):
    offsets = linux.get("timeOffsets") or {}
    lines = []
    for clock in ("monotonic", "boottime"):
        if clock in offsets:
            o = offsets[clock]
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    return "".join(lines) or None


def _steps(config, linux, bundle, rootfs, ns_new, ns_all, userns, no_pivot, cgroup_paths, in_userns=False):
    mounts = config.get("mounts") or []
    steps = []
    propagation = mountopts.PROPAGATION.get(linux.get("rootfsPropagation"))
    if "mount" in ns_new:
        # Host mounts reach the container (rslave) unless it asked to share both ways.
        shared = propagation is not None and propagation & mountopts.MS_SHARED
        steps.append(step("propagation", "linux.rootfsPropagation", dst="/",
                          propagation=(mountopts.MS_SHARED if shared else mountopts.MS_SLAVE) | mountopts.MS_REC))
    steps.append(step("bind_rootfs", "root.path"))
    for i, m in enumerate(mounts):
        steps.extend(_mount_steps(m, f"mounts[{i}]", bundle, "cgroup" in ns_new, cgroup_paths))

    dev_bound = any(_clean(m["destination"]) == "/dev" and _is_bind(m) for m in mounts)
    if not dev_bound:
        steps.extend(_device_steps(linux, bind=in_userns and not userns))
    cwd = config["process"].get("cwd", "/")
    steps.append(step("mkdir", "process.cwd", dst=cwd))
    if any(hook_entries(config, name) for name in ("prestart", "createRuntime", "createContainer")):
        # Without such hooks the init needn't stop for the parent: it runs straight
        # through to 'R' while the parent joins the cgroups.
        steps.append(step("hooks", "hooks"))
    # Without a mount namespace of our own there is nothing to pivot: chroot (runc's choice).
    how = PIVOT_CHROOT if "mount" not in ns_all else PIVOT_MOVE if no_pivot else PIVOT_ROOT
    steps.append(step("pivot", "root.path", flags=how))
    if propagation is not None and "mount" in ns_new:
        steps.append(step("propagation", "linux.rootfsPropagation", dst="/", propagation=propagation))
    if config["process"].get("terminal"):
        # The spec's /dev/console is the pty's slave: bound there once the config's mounts
        # are all in, before the root goes read-only and the masks (runc's place).
        steps.append(step("console", "process.terminal", dst="/dev/console"))

    for key, value in (linux.get("sysctl") or {}).items():
        _check_sysctl(key, ns_all)
        steps.append(step("sysctl", f"linux.sysctl.{key}", dst="/proc/sys/" + key.replace(".", "/"), src=value))
    if (config.get("root") or {}).get("readonly"):
        steps.append(step("remount_root", "root.readonly", dst="/", flags=mountopts.MS_RDONLY))
    for i, path in enumerate(linux.get("readonlyPaths") or []):
        steps.append(step("readonly", f"linux.readonlyPaths[{i}]", dst=path))
    for i, path in enumerate(linux.get("maskedPaths") or []):
        steps.append(step("mask", f"linux.maskedPaths[{i}]", dst=path))
    if config.get("hostname"):
        steps.append(step("hostname", "hostname", src=config["hostname"]))
    if config.get("domainname"):
        steps.append(step("domainname", "domainname", src=config["domainname"]))
    return steps


# Sysctls that belong to a namespace (runc's list): only those may be set, and only
# when the container has that namespace of its own; anything else would be the host's.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
_UTS_SYSCTLS = {"kernel.hostname", "kernel.domainname"}


def _check_sysctl(key, namespaces_):
    label = f"linux.sysctl.{key}"
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        needed = "ipc"
    elif key.startswith("net."):
        needed = "network"
    elif key in _UTS_SYSCTLS:
        needed = "uts"
    else:
        raise ConfigError(label, "is not in a namespace of the container's: setting it would change the host")
    if needed not in namespaces_:
        raise ConfigError(label, f"needs a {needed} namespace: without one it would change the host's")


def _oom_score_adj(value):
    """The kernel takes -1000..1000 in /proc/<pid>/oom_score_adj (found by tests/test_fuzz.py:
    a value past int's range used to end in a traceback)."""
    if value is not None and not -1000 <= value <= 1000:
        raise ConfigError("process.oomScoreAdj", f"{value} is outside the kernel's range -1000..1000")
    return value


def _id(value, path):
    """A uid or gid: 4294967295 is (uid_t)-1, which setresuid/setresgid read as "leave unchanged",
    so the process would silently keep the runtime's root: refused."""
    if value == 0xFFFFFFFF:
        raise ConfigError(path, "4294967295 is (uid_t)-1, which the kernel reads as \"unchanged\"")
    return value


def _umask(value):
    """umask(2) keeps only the permission bits (mask & 0777), as runc passes the value through;
    doing it here keeps values past int's range (2**31, found by tests/test_fuzz.py) off the C side."""
    return -1 if value is None else value & 0o777


def _clean(path):
    """An absolute, normalized path ("//x" is kept by normpath: strip it to "/x")."""
    return "/" + pathnames.normpath("/" + path).lstrip("/")


def _is_bind(m):
    return m.get("type") == "bind" or any(o in ("bind", "rbind") for o in m.get("options") or [])


def _mount_steps(m, label, bundle, cgroupns, cgroup_paths):
    dst = _clean(m["destination"])
    try:
        flags, propagation, data = mountopts.parse(m.get("options") or [], label + ".options")
    except ValueError as e:
        raise ConfigError(label + ".options", str(e).split(": ", 1)[1]) from None
    fstype = m.get("type")
    src = m.get("source")
    copyup = "tmpcopyup" in (m.get("options") or [])
    if copyup and (fstype != "tmpfs" or _is_bind(m)):
        # runc ignores it there.
        warn(f"{label}.options: 'tmpcopyup' has no effect on a mount that is not a tmpfs")
    if m.get("uidMappings") or m.get("gidMappings"):
        raise ConfigError(label, "id-mapped mounts are not supported by this runtime yet")
    if _is_bind(m):
        if not src:
            raise ConfigError(label + ".source", "a bind mount needs a source")
        src = pathnames.join(bundle, src)
        if not pathnames.exists(src):
            raise ConfigError(label + ".source", f"{src}: no such file or directory")
        if data:
            # The kernel ignores filesystem data on a bind mount; runc passes it along silently.
            warn(f"{label}.options: {data!r} has no effect on a bind mount")
        mode = 0 if pathnames.isdir(src) else 0o100000
        return [step("mount", label, dst=dst, src=src, flags=flags | mountopts.MS_BIND, data=None,
                     propagation=propagation, mode=mode)]
    if fstype == "cgroup":
        return _cgroup_mount_steps(label, dst, flags, propagation, cgroupns, cgroup_paths)
    if not fstype:
        raise ConfigError(label + ".type", "is required for a mount that is not a bind mount")
    return [step("mount", label, dst=dst, src=src or fstype, fstype=fstype, flags=flags,
                 data=data or None, propagation=propagation,
                 copyup=mountopts.copyup(data) if copyup and fstype == "tmpfs" else 0)]


def _cgroup_mount_steps(label, dst, flags, propagation, cgroupns, cgroup_paths):
    """A cgroup mount shows the container's own cgroups: on cgroup2 one mount; on v1 a
    tmpfs with one mount per hierarchy, bound from the host unless there is a cgroup ns."""
    from .cgroups import UNIFIED, pure_v2

    if pure_v2(cgroup_paths):
        if cgroupns:
            return [step("mount", label, dst=dst, src="cgroup", fstype="cgroup2", flags=flags,
                         propagation=propagation)]
        return [step("mount", label, dst=dst, src=cgroup_paths[UNIFIED], flags=flags | mountopts.MS_BIND,
                     propagation=propagation)]
    out = [step("mount", label, dst=dst, src="tmpfs", fstype="tmpfs", data="mode=755",
                flags=flags & ~mountopts.MS_RDONLY)]
    for key, path in sorted(cgroup_paths.items()):
        name = key.split("=", 1)[1] if key.startswith("name=") else (key or "unified")
        sub = pathnames.join(dst, name)
        if cgroupns:
            fstype = "cgroup2" if key == UNIFIED else "cgroup"
            data = None if key == UNIFIED else key
            out.append(step("mount", label, dst=sub, src="cgroup", fstype=fstype, data=data, flags=flags))
        else:
            out.append(step("mount", label, dst=sub, src=path, flags=flags | mountopts.MS_BIND))
    if flags & mountopts.MS_RDONLY:
        out.append(step("mount", label, dst=dst, src="tmpfs", fstype="tmpfs",
                        flags=flags | mountopts.MS_REMOUNT))
    if propagation:
        out[0]["propagation"] = propagation
    return out


def _device_steps(linux, bind=False):
    """The device nodes: made (mknod), or where the init can't make them (it is in a user
    namespace) bound from the host's — by the init itself when the container has a user
    namespace of its own, by the plan's bind mounts (``bind``) when the runtime was in one
    already and the container shares it (rootless podman's; runc binds them there too)."""
    out = []
    nodes = [(path, t, ma, mi, 0o666, 0, 0, "default device") for path, t, ma, mi in devices.DEFAULT_NODES]
    config_paths = set()
    for i, d in enumerate(linux.get("devices") or []):
        config_paths.add(_clean(d["path"]))
        nodes.append((d["path"], d["type"], d.get("major", 0), d.get("minor", 0), d.get("fileMode", 0o666),
                      d.get("uid", 0), d.get("gid", 0), f"linux.devices[{i}]"))
    for path, t, major, minor, mode, uid, gid, label in nodes:
        if label == "default device" and path in config_paths:
            continue
        if t == "p":
            major = minor = 0
        if bind:
            out.append(step("mount", label, dst=_clean(path), src=_clean(path), flags=mountopts.MS_BIND,
                            mode=devices.S_IFREG))
            continue
        out.append(step("mknod", label, dst=_clean(path), src=_clean(path),
                        mode=devices.TYPES[t] | (mode & 0o7777),
                        dev=devices.makedev(major, minor), uid=uid, gid=gid))
    for target, link in devices.DEFAULT_LINKS:
        out.append(step("symlink", "default device link", dst=link, src=target))
    return out


def _console_size(process):
    size = process.get("consoleSize") or {}
    return size.get("height", 0), size.get("width", 0)


def _seccomp(linux):
    if linux.get("seccomp") is None:
        return None
    try:
        return seccomp.build(linux["seccomp"])
    except ValueError as e:
        path, msg = str(e).split(": ", 1)
        raise ConfigError(path, msg) from None


def _passwd_file(config, bundle, rootfs):
    """(root, path in it) of the /etc/passwd the container will see: the rootfs's, or
    what the last mount over it (or over a directory above it) puts there — a bind
    mount's source; nothing for another kind of mount, whose files don't exist yet."""
    for m in reversed(config.get("mounts") or []):
        dst = _clean(m["destination"])
        if dst == "/etc/passwd" or "/etc/passwd".startswith(dst.rstrip("/") + "/"):
            if not (_is_bind(m) and m.get("source")):
                return None
            src = pathnames.join(bundle, m["source"])
            if dst == "/etc/passwd":
                return pathnames.dirname(src) or "/", pathnames.basename(src)
            return src, "/etc/passwd"[len(dst):]
    return rootfs, "/etc/passwd"


def _process(process, start_hooks, seccomp_filter, apparmor_exec=None, selinux_exec=None, passwd_file=None,
             userns=False):
    """``passwd_file()``: where the container's /etc/passwd is, for a HOME the env lacks.
    ``userns``: the process is in a user namespace, where it has every capability its
    bounding set allows (an ordinary user's runtime has none of its own)."""
    user = process.get("user") or {}
    caps = process.get("capabilities")
    masks = {}
    if caps is not None:
        for name in capabilities.SETS:
            try:
                masks[name] = capabilities.mask(caps.get(name) or [], f"process.capabilities.{name}")
            except ValueError as e:
                path, msg = str(e).split(": ", 1)
                raise ConfigError(path, msg) from None
        # The kernel only keeps ambient caps that are both permitted and inheritable.
        masks["ambient"] &= masks["permitted"] & masks["inheritable"]
        available = capabilities.own_bounding() if userns else capabilities.own_permitted()
        for name in ("permitted", "effective", "inheritable"):
            missing = masks[name] & ~available
            if missing:
                raise ConfigError(f"process.capabilities.{name}",
                                  f"{', '.join(capabilities.names(missing))} not available to the runtime "
                                  "(missing from its own capability set)")
    limits = []
    seen = set()
    for i, rl in enumerate(process.get("rlimits") or []):
        resource = rlimits.RESOURCES.get(rl["type"])
        if resource is None:
            raise ConfigError(f"process.rlimits[{i}].type", f"unknown rlimit {rl['type']!r}")
        if resource in seen:
            raise ConfigError(f"process.rlimits[{i}].type", f"duplicate rlimit {rl['type']!r}")
        if rl["soft"] > rl["hard"]:
            raise ConfigError(f"process.rlimits[{i}]", "soft limit is above the hard limit")
        seen.add(resource)
        limits.append((resource, rl["soft"], rl["hard"]))
    args = process.get("args") or []
    if not args:
        raise ConfigError("process.args", "is required and must not be empty")
    env = process.get("env")
    if env is None:
        env = [DEFAULT_PATH]
    if passwd_file is not None:
        from .passwd import with_home

        env = with_home(env, user.get("uid", 0), passwd_file)
    return {
        "args": args,
        "env": env,
        "cwd": process.get("cwd", "/"),
        "uid": _id(user.get("uid", 0), "process.user.uid"),
        "gid": _id(user.get("gid", 0), "process.user.gid"),
        "groups": [_id(g, f"process.user.additionalGids[{i}]")
                   for i, g in enumerate(user.get("additionalGids") or [])],
        "umask": _umask(user.get("umask")),
        "caps": masks or None,
        "rlimits": limits,
        "no_new_privs": bool(process.get("noNewPrivileges")),
        "oom_score_adj": _oom_score_adj(process.get("oomScoreAdj")),
        "start_hooks": start_hooks,
        "seccomp": seccomp_filter,
        "apparmor_exec": apparmor_exec,
        "selinux_exec": selinux_exec,
    }
