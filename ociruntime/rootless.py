"""Rootless: containers created by an ordinary user, as runc 1.1 creates them.

Two things decide, as in runc:

- the runtime's effective uid (runc's RootlessEUID): not root, the config must have a
  user namespace with id mappings, and whatever needs a privilege the caller lacks is
  refused up front, one line naming the field (``check``); the id maps are written by
  the runtime itself when they map the caller's own uid and gid only (gid_map after
  "deny" in setgroups, as the kernel demands), else by newuidmap/newgidmap, which check
  them against /etc/subuid and /etc/subgid (``id_map_plan``);
- ``--rootless auto|true|false`` (runc's rootless cgroup manager; auto: not root, or
  root in a user namespace that isn't the host's): cgroups the caller can't write are
  then done without — unless the config sets resource limits or a cgroupsPath, which
  are refused (``cgroup_paths``).

The default --root follows runc's: ``$XDG_RUNTIME_DIR/ociruntime`` (0700, sticky) for a
user whose XDG_RUNTIME_DIR is set, else /run/ociruntime (``default_root``).

Imported by create and run only, and by the others when --root isn't given and the
caller isn't root.
"""

import posix

from . import pathnames
from .api import DEFAULT_ROOT
from .errors import ConfigError, OCIError

_WHOLE_RANGE = ["0", "0", "4294967295"]  # /proc/self/uid_map of the host's user namespace


def in_user_namespace():
    """Whether this process runs in a user namespace other than the host's (runc's
    userns.RunningInUserNS: its uid_map is not the identity over every id)."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != _WHOLE_RANGE
    except OSError:
        return False


def cgroups_rootless(value):
    """--rootless (True, False, None for auto) → whether cgroups the caller can't write
    are done without: runc's shouldUseRootlessCgroupManager for its cgroupfs driver."""
    if value is not None:
        return value
    return posix.geteuid() != 0 or in_user_namespace()


def default_root():
    """runc's default --root: ``$XDG_RUNTIME_DIR/<name>`` made 0700 with the sticky bit
    (the XDG spec's way to keep it from being pruned) when XDG_RUNTIME_DIR is set and the
    caller is not root — or is root in a user namespace whose $USER is not root —, else
    /run/ociruntime, which an ordinary user can't use: said up front."""
    env = posix.environ
    xdg = env.get(b"XDG_RUNTIME_DIR", b"").decode(errors="surrogateescape")
    euid = posix.geteuid()
    honor = bool(xdg) and (euid != 0 or (in_user_namespace() and env.get(b"USER") != b"root"))
    if not honor:
        if euid != 0 and not _writable(DEFAULT_ROOT):
            raise OCIError(f"--root: the default {DEFAULT_ROOT} is not writable by uid {euid} and XDG_RUNTIME_DIR "
                           "is not set: set XDG_RUNTIME_DIR to a directory of this user's, or pass --root")
        return DEFAULT_ROOT
    root = pathnames.join(xdg, "ociruntime")
    try:
        try:
            posix.mkdir(root, 0o700)
        except FileExistsError:
            pass
        posix.chmod(root, 0o1700)
    except OSError as e:
        raise OCIError(f"--root: $XDG_RUNTIME_DIR/ociruntime ({root}): {e.strerror}: the path in "
                       "$XDG_RUNTIME_DIR must be writable by the user") from None
    return root


def _writable(path):
    """Whether a state root could be used or made at ``path``."""
    while not pathnames.exists(path):
        path = pathnames.dirname(path) or "/"
    return posix.access(path, posix.W_OK | posix.X_OK)


def prepare(config, paths, rootless):
    """Before the plan: refuse what an ordinary user can't have (``check``), and decide
    the cgroups (``cgroup_paths``) with --rootless ``rootless`` (None: auto)."""
    if posix.geteuid() != 0:
        check(config)
    return cgroup_paths(config.get("linux") or {}, paths, cgroups_rootless(rootless))


def finish(plan, linux):
    """After the plan, for an ordinary user or root in a user namespace (rootless
    podman's runtime): how an ordinary user's id maps are written (``id_map_plan``; root
    in a user namespace writes them itself), and no device rules — they need
    CAP_SYS_ADMIN (a v1 devices cgroup) or CAP_BPF (v2's device program) on the host;
    runc ignores them in a user namespace too, and a user namespace can't make device
    nodes, only bind those its user may open."""
    if posix.geteuid() != 0:
        id_map_plan(plan, linux)
    plan["device_rules"] = []


# --- cgroups --------------------------------------------------------------------------------

def cgroup_paths(linux, paths, rootless):
    """(the container's cgroup directories, the ones its cgroup mount shows).

    As root, or with --rootless false, ``paths`` both. Rootless, the container has
    cgroups only where the caller may make them and move its init there (a cgroup v2
    subtree delegated to it: systemd's user slice) — in every hierarchy, or in none; with
    none, its cgroup mount shows the caller's own cgroups (runc binds the init's, still
    the caller's), and resource limits or a cgroupsPath are refused, as runc refuses them.
    """
    if not rootless or not paths:
        return paths, paths
    denied = next((why for why in map(_not_delegated, paths.values()) if why), None)
    if denied is None:
        return paths, paths
    from .plan import has_limits

    uid = posix.geteuid()
    if has_limits(linux.get("resources")):
        raise ConfigError("linux.resources", f"rootless: uid {uid} has no cgroup to set limits in ({denied}; "
                                             "a cgroup v2 subtree delegated to the user is needed)")
    if linux.get("cgroupsPath"):
        raise ConfigError("linux.cgroupsPath", f"rootless: {denied}")
    return {}, own_cgroup_dirs()


def _not_delegated(path):
    """Why the caller can't make the cgroup ``path`` and move a process of its own there,
    or None: the nearest directory of it that exists, and its cgroup.procs, must be
    writable; so must the cgroup.procs of the nearest cgroup holding both it and the
    caller's own (cgroup v2 moves a process only so far: its delegation rule)."""
    from .cgroups import hierarchies, own_cgroups

    top = path
    while not pathnames.isdir(top):
        top = pathnames.dirname(top)
    if not posix.access(top, posix.W_OK) or not posix.access(f"{top}/cgroup.procs", posix.W_OK):
        return f"{top} is not writable by uid {posix.geteuid()}"
    for key, mountpoint in hierarchies().items():
        if path.startswith(mountpoint + "/"):
            common = _common(path, pathnames.join(mountpoint, own_cgroups().get(key, "/").lstrip("/")))
            if not posix.access(f"{common}/cgroup.procs", posix.W_OK):
                return (f"{common}/cgroup.procs is not writable by uid {posix.geteuid()}: a process of its own "
                        f"can't be moved to {path}")
    return None


def _common(a, b):
    parts = []
    for x, y in zip(a.split("/"), b.split("/"), strict=False):
        if x != y:
            break
        parts.append(x)
    return "/".join(parts) or "/"


def own_cgroup_dirs():
    """{hierarchy key: directory} of the caller's own cgroups."""
    from .cgroups import hierarchies, own_cgroups

    own = own_cgroups()
    return {key: pathnames.join(mountpoint, own[key].lstrip("/")) for key, mountpoint in hierarchies().items()
            if key in own}


# --- the config -----------------------------------------------------------------------------

def check(config):
    """Refuse, one line naming the field, what an ordinary user can't have: runc's
    rootless validation (a user namespace with mappings, uid=/gid= mount options that
    are mapped) and what would otherwise fail half-way for want of a privilege."""
    linux = config.get("linux") or {}
    namespaces = linux.get("namespaces") or []
    types = {ns["type"] for ns in namespaces}
    uid = posix.geteuid()
    if "user" not in types:
        raise ConfigError("linux.namespaces", f"rootless (uid {uid}): a user namespace is needed (runc: rootless "
                                              "container requires user namespaces)")
    new_userns = any(ns["type"] == "user" and not ns.get("path") for ns in namespaces)
    for field in ("uidMappings", "gidMappings") if new_userns else ():
        if not linux.get(field):
            raise ConfigError(f"linux.{field}", f"rootless (uid {uid}): at least one mapping is needed")
    if "time" in types:
        raise ConfigError("linux.namespaces", "rootless: a time namespace is made before the user namespace, "
                                              "which needs CAP_SYS_ADMIN on the host")
    if linux.get("netDevices"):
        raise ConfigError("linux.netDevices", "rootless: moving a host network device needs CAP_NET_ADMIN on "
                                              "the host")
    if new_userns:
        _check_mapped(config, linux)


def _check_mapped(config, linux):
    uids, gids = linux["uidMappings"], linux["gidMappings"]
    user = (config.get("process") or {}).get("user") or {}
    for field, value, mappings in (("uid", user.get("uid", 0), uids), ("gid", user.get("gid", 0), gids)):
        if not _mapped(value, mappings):
            raise ConfigError(f"process.user.{field}", f"{value} is not mapped in the user namespace "
                                                       f"(linux.{field}Mappings)")
    for i, gid in enumerate(user.get("additionalGids") or []):
        if not _mapped(gid, gids):
            raise ConfigError(f"process.user.additionalGids[{i}]", f"{gid} is not mapped in the user namespace "
                                                                   "(linux.gidMappings)")
    for i, m in enumerate(config.get("mounts") or []):
        for option in m.get("options") or []:
            name, _, value = option.partition("=")
            if name in ("uid", "gid") and value.isdigit() and not _mapped(int(value), uids if name == "uid" else gids):
                raise ConfigError(f"mounts[{i}].options", f"{option}: not mapped in the user namespace (runc: "
                                                          f"cannot specify {name}= mount options for unmapped "
                                                          f"{name} in rootless containers)")


def _mapped(value, mappings):
    return any(m["containerID"] <= value < m["containerID"] + m["size"] for m in mappings)


def id_map_plan(plan, linux):
    """Fill in how the parent writes the id maps (native.Init.write_id_maps): each one
    mapping only the caller's own id is written directly, gid_map after "deny" in
    setgroups (the kernel demands it of a writer without CAP_SETGID; the process then
    can't set supplementary groups: it keeps the caller's, shown as the overflow gid,
    and process.user.additionalGids is refused, as runc refuses it); any other through
    newuidmap/newgidmap (setuid helpers that check /etc/subuid and /etc/subgid)."""
    if not plan["uid_map"]:
        return
    own = (("uid", "uidMappings", posix.geteuid()), ("gid", "gidMappings", posix.getegid()))
    for kind, field, mine in own:
        mappings = linux[field]
        if len(mappings) == 1 and mappings[0]["hostID"] == mine and mappings[0]["size"] == 1:
            continue
        tool = _which(f"new{kind}map")
        if tool is None:
            raise ConfigError(f"linux.{field}", f"rootless: maps ids other than the caller's own ({mine}): that "
                                                f"needs new{kind}map (Debian's uidmap) and /etc/sub{kind} entries")
        plan[f"{kind}_map_tool"] = tool
    if not plan.get("gid_map_tool"):
        plan["setgroups"] = "deny"
        if plan["process"]["groups"]:
            raise ConfigError("process.user.additionalGids", "rootless: with only the caller's own gid mapped, "
                                                             "setgroups is denied in the user namespace")
        plan["process"]["groups"] = None  # leave them: setgroups(2) would fail


def exec_groups(process_plan, init_pid):
    """An exec'd process joins the container's user namespace: where setgroups is denied
    there (the caller's own gid mapped by itself), it keeps its groups, as the init did."""
    try:
        with open(f"/proc/{init_pid}/setgroups") as f:
            denied = f.read().strip() == "deny"
    except OSError:
        return
    if denied:
        if process_plan["groups"]:
            raise ConfigError("process.user.additionalGids", "setgroups is denied in the container's user "
                                                             "namespace (created rootless)")
        process_plan["groups"] = None


def namespace_pids(data):
    """The processes of a container without cgroups: those in its init's pid namespace
    (what ps and kill --all list in its cgroups otherwise)."""
    from .state import init_pid

    pid = init_pid(data, {})
    if pid is None:
        return set()
    try:
        ns = posix.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return set()
    if ns == posix.readlink("/proc/self/ns/pid"):
        raise OCIError("the container has neither cgroups (created rootless) nor a pid namespace of its own: "
                       "its processes can't be told from the host's")
    found = set()
    for name in posix.listdir("/proc"):
        if name.isdigit():
            try:
                if posix.readlink(f"/proc/{name}/ns/pid") == ns:
                    found.add(int(name))
            except OSError:
                continue
    return found


def namespace_gone(data):
    """Whether a container without cgroups has no process left: its init is gone or a
    zombie. Killed, a pid namespace's init stays in do_exit (``state`` already calls it
    stopped) until every other process of the namespace has been reaped."""
    pid = data.get("pid")
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    after = stat[stat.rindex(b")") + 2:].split()
    return int(after[19]) != data.get("init_start_time") or after[0] in (b"Z", b"X")


def _which(name):
    for directory in posix.environ.get(b"PATH", b"/usr/sbin:/usr/bin:/sbin:/bin").decode().split(":"):
        path = pathnames.join(directory or ".", name)
        if posix.access(path, posix.X_OK):
            return path
    return None
