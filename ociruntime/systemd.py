"""The systemd cgroup driver's decisions (``--systemd-cgroup``): which transient unit a
container gets, where systemd puts its cgroup, and the unit properties that carry
linux.resources — all plain data, computed without a bus. ``systemd_bus`` talks to
systemd; ``cgroups`` still makes what systemd does not (v1 hierarchies it doesn't
manage) and writes every limit to cgroupfs afterwards, as runc does.

runc's rules (libcontainer/specconv, cgroups/systemd): linux.cgroupsPath is
"slice:prefix:name"; empty, the unit is "<prefix>-<id>.scope" in system.slice. The unit
is a scope holding the init (PIDs), with Delegate=yes, accounting on and no default
dependencies; a "Sec" annotation property becomes its "USec" twin.
"""

import posix

from . import cgroups, pathnames
from .errors import ConfigError
from .resources import DEFAULT_CFS_PERIOD

DEFAULT_SLICE = "system.slice"
DEFAULT_PREFIX = "ociruntime"  # runc's is "runc": a unit says which runtime made it
ANNOTATION_PREFIX = "org.systemd.property."
TRANSIENT = "/run/systemd/transient"  # where systemd keeps transient units' files while they are loaded
INFINITY = (1 << 64) - 1  # systemd's USEC_INFINITY / CGROUP_LIMIT_MAX: "max"
CPU_QUOTA_PERIOD_SINCE = 242  # systemd versions that know these properties
ALLOWED_CPUS_SINCE = 244
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\@")


class Unit:
    """A container's transient unit: ``name`` ("ociruntime-<id>.scope"), ``slice``
    ("system.slice"), and where its cgroup is below a hierarchy's systemd root
    (``cgroup``: "/system.slice/ociruntime-<id>.scope")."""

    def __init__(self, name, slice_name):
        self.name = name
        self.slice = slice_name
        self.cgroup = f"{expand_slice(slice_name)}/{name}".replace("//", "/")


def unit_for(cgroups_path, container_id):
    """linux.cgroupsPath (as given, or empty) → the container's Unit; errors name the field."""
    if not cgroups_path:
        return Unit(f"{DEFAULT_PREFIX}-{container_id}.scope", DEFAULT_SLICE)
    parts = cgroups_path.split(":")
    if len(parts) != 3:
        raise ConfigError("linux.cgroupsPath", f"expected \"slice:prefix:name\" for systemd cgroups, got "
                                               f"{cgroups_path!r}")
    slice_name, prefix, name = parts
    if not name:
        raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r}: the name (after the last ':') is empty")
    if name.endswith(".slice"):
        # runc would make a slice here and then fail to put a process in it (a slice holds none).
        raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r}: a slice can't hold the container's processes; "
                                               "name a scope (slice:prefix:name)")
    unit = f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    if not set(unit) <= _UNIT_CHARS or len(unit) > 255:
        raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r}: {unit!r} is not a valid systemd unit name")
    slice_name = slice_name or DEFAULT_SLICE
    try:
        expand_slice(slice_name)
    except ValueError as e:
        raise ConfigError("linux.cgroupsPath", f"{cgroups_path!r}: {e}") from None
    return Unit(unit, slice_name)


def expand_slice(slice_name):
    """systemd's slice nesting, as a path: "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice";
    "-.slice" is the root."""
    if not slice_name.endswith(".slice") or len(slice_name) == len(".slice") or "/" in slice_name:
        raise ValueError(f"invalid slice name {slice_name!r}")
    base = slice_name[:-len(".slice")]
    if base == "-":
        return "/"
    path, prefix = "", ""
    for component in base.split("-"):
        if not component:
            raise ValueError(f"invalid slice name {slice_name!r}")
        path += f"/{prefix}{component}.slice"
        prefix += f"{component}-"
    return path


def container_paths(unit, proc="/proc"):
    """{controller-key: directory} of the unit's cgroup in each of the host's hierarchies,
    as cgroups.container_paths gives them for the cgroupfs driver. On cgroup v2 systemd's
    root is the hierarchy's; on v1 (and a hybrid host's cgroup2) it is where systemd itself
    is, less its init.scope (runc's getSubsystemPath), which is not the root in a container."""
    mounts = cgroups.hierarchies(proc)
    if cgroups.pure_v2(mounts):
        return {cgroups.UNIFIED: mounts[cgroups.UNIFIED] + unit.cgroup}
    init = cgroups.cgroups_of(f"{proc}/1/cgroup")  # systemd's own
    paths = {}
    for key, mountpoint in mounts.items():
        base = init.get(key, "/")
        if base.endswith("/init.scope"):
            base = base[:-len("/init.scope")]
        paths[key] = mountpoint + pathnames.normpath(base.rstrip("/") + unit.cgroup)
    return paths


# --- unit properties ---------------------------------------------------------------------

def start_properties(unit, pid, annotations, legacy=False):
    """What StartTransientUnit is given beyond the resources (runc's Apply): a
    [(name, D-Bus signature, value)] list. ``legacy``: the host has cgroup v1 controllers
    (runc's legacy manager), whose I/O accounting is BlockIOAccounting; IOAccounting there
    is cgroup v2's, which systemd would translate to it (logging that it does)."""
    return [
        ("Description", "s", f"ociruntime container {unit.name}"),
        ("Slice", "s", unit.slice),
        ("Delegate", "b", True),
        ("PIDs", "au", [pid]),
        # Always account, as runc does: the same files as the cgroupfs driver's, and the
        # kernel is not keen on enabling memory accounting for a cgroup later.
        ("MemoryAccounting", "b", True),
        ("CPUAccounting", "b", True),
        ("BlockIOAccounting" if legacy else "IOAccounting", "b", True),
        ("TasksAccounting", "b", True),
        ("DefaultDependencies", "b", False),
        *annotation_properties(annotations),
    ]


def resource_properties(writes, device_rules, version, proc="/proc"):
    """The unit properties for linux.resources, from the cgroup file writes the cgroupfs
    driver would do (resources.writes) and the device rules: one reading of the config
    for both drivers. ``version``: a callable giving systemd's version, asked only for
    properties newer systemds know (CPUQuotaPeriodUSec, AllowedCPUs). Writes no property
    maps stay cgroupfs writes only, as runc's do."""
    props = device_properties(device_rules, proc) if device_rules else []
    quota = period = None
    for w in writes:
        file, value = w["file"], w["value"]
        if file in _SIMPLE and _SIMPLE[file][1] in (None, w["version"]):
            props.append((_SIMPLE[file][0], "t", _limit(value, w["label"])))
        elif file == "cpu.weight":
            props.append(("CPUWeight", "t", _number(value, w["label"])))
        elif file == "cpu.shares":
            props.append(("CPUShares", "t", _number(value, w["label"])))
        elif file == "blkio.weight":
            props.append(("BlockIOWeight", "t", _number(value, w["label"])))
        elif file == "cpu.max":
            q, _, p = value.partition(" ")
            quota = -1 if q == "max" else _number(q, w["label"])
            period = _number(p, w["label"]) if p else DEFAULT_CFS_PERIOD
        elif file == "cpu.cfs_quota_us":
            quota = _signed(value, w["label"])
        elif file == "cpu.cfs_period_us":
            period = _number(value, w["label"])
        elif file in ("cpuset.cpus", "cpuset.mems") and version() >= ALLOWED_CPUS_SINCE:
            name = "AllowedCPUs" if file == "cpuset.cpus" else "AllowedMemoryNodes"
            props.append((name, "ay", range_to_bits(value, w["label"])))
    if quota is not None or period is not None:
        props.extend(_cpu_quota(quota or 0, period or 0, version))
    return props


# cgroup file → (property, the hierarchy version it is read from, None: either)
_SIMPLE = {
    "memory.max": ("MemoryMax", "v2"), "memory.low": ("MemoryLow", "v2"), "memory.high": ("MemoryHigh", "v2"),
    "memory.min": ("MemoryMin", "v2"), "memory.swap.max": ("MemorySwapMax", "v2"),
    "memory.limit_in_bytes": ("MemoryLimit", "v1"), "pids.max": ("TasksMax", None),
}


def _limit(value, label):
    """A cgroup limit file's value as a unit property: "max" and -1 are infinity."""
    if value in ("max", "-1"):
        return INFINITY
    return _number(value, label)


def _number(value, label):
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(label, f"{value!r} is not a number systemd can take") from None
    if not 0 <= n <= INFINITY:
        raise ConfigError(label, f"{value!r} is out of range for systemd")
    return n


def _signed(value, label):
    try:
        return int(value)
    except ValueError:
        raise ConfigError(label, f"{value!r} is not a number") from None


def _cpu_quota(quota, period, version):
    """runc's addCpuQuota: systemd takes a quota as µs per CPU second, in whole percents
    (rounded up to 10 ms, so that the cgroupfs write after it still fits below)."""
    props = []
    if period and version() >= CPU_QUOTA_PERIOD_SINCE:
        props.append(("CPUQuotaPeriodUSec", "t", period))
    per_sec = INFINITY
    if quota > 0:
        per_sec = quota * 1000000 // (period or DEFAULT_CFS_PERIOD)
        if per_sec % 10000:
            per_sec = (per_sec // 10000 + 1) * 10000
    props.append(("CPUQuotaPerSecUSec", "t", per_sec))
    return props


def range_to_bits(text, label):
    """A cpuset list ("0-2,5") → the little-endian bitmask systemd's AllowedCPUs takes."""
    bits = 0
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            lo, dash, hi = part.partition("-")
            lo, hi = int(lo), int(hi) if dash else int(lo)
            if lo > hi or lo < 0 or hi > 8192:
                raise ValueError
            for n in range(lo, hi + 1):
                bits |= 1 << n
    except ValueError:
        raise ConfigError(label, f"{text!r} is not a CPU or node list") from None
    return bits.to_bytes((bits.bit_length() + 7) // 8 or 1, "little")


def device_properties(device_rules, proc="/proc"):
    """DevicePolicy and DeviceAllow for the device rules (linux/devices.cgroup_rules), as
    runc gives them: its rule emulation reduced to what rules can say here. A list that
    ends allowing everything is DevicePolicy=auto; an allow list is "strict" with its
    entries (a wildcard major with a fixed minor, and a device whose node systemd can't
    name, are left to the cgroupfs rules); a deny list systemd can't express: strict and
    empty, with a warning, as runc does."""
    allow_all, allowed, denied = _emulate(device_rules)
    if allow_all and not denied:
        return [("DevicePolicy", "s", "auto"), ("DeviceAllow", "a(ss)", [])]
    if allow_all:
        from .log import warn

        warn("linux.resources.devices: systemd takes no deny rules: its unit denies every device "
             "(the cgroupfs rules written after it say the rest)")
        return [("DevicePolicy", "s", "strict"), ("DeviceAllow", "a(ss)", [])]
    entries = []
    for (typ, major, minor), perms in allowed.items():
        path = _device_entry(typ, major, minor, proc)
        if path and perms:
            entries.append((path, "".join(p for p in "rwm" if p in perms)))
    return [("DevicePolicy", "s", "strict"), ("DeviceAllow", "a(ss)", entries)]


def _emulate(device_rules):
    """(allows everything, {(type, major, minor): perms} allowed, denied rules) after the
    rules in order, from a cgroup that allows nothing (what systemd's strict starts from)."""
    allow_all, allowed, denied = False, {}, {}
    for kind, rule in device_rules:
        if rule == "a":
            allow_all = kind == "allow"
            allowed, denied = {}, {}
            continue
        typ, numbers, perms = rule.split(" ")
        key = (typ, *numbers.split(":"))
        if kind == "allow":
            if allow_all:
                denied.pop(key, None)
            else:
                allowed[key] = allowed.get(key, "") + perms
        elif allow_all:
            denied[key] = perms
        else:
            left = "".join(p for p in allowed.get(key, "") if p not in perms)
            allowed[key] = left
    return allow_all, allowed, denied


def _device_entry(typ, major, minor, proc):
    """systemd's name for a device rule, or None where it has none (runc's rules)."""
    kind = {"c": "char", "b": "block"}.get(typ)
    if kind is None:
        return None
    if major == "*":
        return f"{kind}-*" if minor == "*" else None
    if minor == "*":
        return _device_group(kind, int(major), proc)
    path = f"/dev/{kind}/{major}:{minor}"
    return path if pathnames.exists(path) or pathnames.exists(f"/sys{path}") else None


def _device_group(kind, major, proc):
    """'char-pts' for (char, 136): the driver's name in /proc/devices, which DeviceAllow takes."""
    section = None
    with open(f"{proc}/devices") as f:
        for line in f:
            line = line.strip()
            if line.endswith("devices:"):
                section = "char" if line.startswith("Character") else "block"
            elif line and section == kind:
                number, _, name = line.partition(" ")
                if number == str(major):
                    return f"{kind}-{name}"
    return None


# --- annotations --------------------------------------------------------------------------

def annotation_properties(annotations):
    """org.systemd.property.<Name> annotations → unit properties (runc's initSystemdProps).
    The value is GVariant text; the forms taken are a quoted string, true/false, a typed
    number ("uint64 5", "uint32 5", "int64 -1", "int32 5", "double 1.5", "@t 5") and a bare
    integer (int32) or decimal (double); anything else is refused by name. A name ending in
    a lowercase letter and "Sec" is given in µs as "...USec", as runc does."""
    props = []
    for key in sorted(annotations or {}):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        name = key[len(ANNOTATION_PREFIX):]
        label = f"annotations.{key}"
        if len(name) < 3 or not name.isascii() or not name.isalpha():
            raise ConfigError(label, f"{name!r} is not a systemd property name (3 or more ASCII letters)")
        signature, value = _gvariant(annotations[key], label)
        if name.endswith("Sec") and name[-4].islower():
            if signature in ("s", "b"):
                raise ConfigError(label, f"{annotations[key]!r}: {name} takes a number of seconds")
            name, signature, value = name[:-3] + "USec", "t", int(value * 1000000)
        props.append((name, signature, value))
    return props


_TYPED = {"uint64": "t", "uint32": "u", "int64": "x", "int32": "i", "uint16": "q", "int16": "n", "byte": "y",
          "double": "d", "@t": "t", "@u": "u", "@x": "x", "@i": "i", "@q": "q", "@n": "n", "@y": "y", "@d": "d"}
_RANGES = {"t": (0, INFINITY), "u": (0, (1 << 32) - 1), "x": (-(1 << 63), (1 << 63) - 1),
           "i": (-(1 << 31), (1 << 31) - 1), "q": (0, 65535), "n": (-32768, 32767), "y": (0, 255)}


def _gvariant(text, label):
    """(signature, value) of one GVariant text value, in the forms annotation_properties names."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and "\\" not in text:
        return "s", text[1:-1]
    if text in ("true", "false"):
        return "b", text == "true"
    kind, _, number = text.partition(" ")
    signature = _TYPED.get(kind)
    if signature is None:
        signature, number = ("d" if "." in text else "i"), text
    try:
        value = float(number) if signature == "d" else int(number.strip())
    except ValueError:
        raise ConfigError(label, f"{text!r}: this runtime takes a quoted string, true/false or a number "
                                 "(\"uint64 5\") as a systemd property value") from None
    lo, hi = _RANGES.get(signature, (None, None))
    if lo is not None and not lo <= value <= hi:
        raise ConfigError(label, f"{text!r} is out of range")
    return signature, value


def may_be_loaded(name, paths, created=()):
    """Whether systemd may still have the container's unit: its cgroup is there, or its
    transient unit file (systemd removes that when it collects the unit, as it does a
    scope whose processes all exited). When neither is, delete needs no bus at all.
    ``created``: the directories the runtime made itself (on v1, the container's cgroups
    in the hierarchies systemd doesn't manage), which stay after systemd collected the
    unit and say nothing of it."""
    ours = set(created)
    return (any(pathnames.exists(p) for p in paths.values() if p not in ours)
            or pathnames.exists(f"{TRANSIENT}/{name}"))


def running():
    """Whether systemd is this host's init (sd_booted: /run/systemd/system is a directory)."""
    try:
        return posix.lstat("/run/systemd/system").st_mode & 0o170000 == 0o040000
    except OSError:
        return False
