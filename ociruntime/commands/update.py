"""update: change a running container's resource limits, from runc's flags or a
LinuxResources JSON (--resources FILE|-). As runc does, the new values are merged
into the container's resources and the whole set is applied again, so that paired
settings (quota with period, memory with swap) are written together."""


from .. import cgroups, state
from ..errors import ConfigError, OCIError
from ..resources import Host, writes

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

# flag -> (resource group, field, parser)
_FLAGS = {
    "cpu_period": ("cpu", "period", int), "cpu_quota": ("cpu", "quota", int), "cpu_burst": ("cpu", "burst", int),
    "cpu_share": ("cpu", "shares", int), "cpu_rt_period": ("cpu", "realtimePeriod", int),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", int), "cpuset_cpus": ("cpu", "cpus", str),
    "cpuset_mems": ("cpu", "mems", str), "cpu_idle": ("cpu", "idle", int),
    "memory": ("memory", "limit", "bytes"), "memory_reservation": ("memory", "reservation", "bytes"),
    "memory_swap": ("memory", "swap", "bytes"), "kernel_memory": ("memory", "kernel", "bytes"),
    "kernel_memory_tcp": ("memory", "kernelTCP", "bytes"),
    "blkio_weight": ("blockIO", "weight", int), "pids_limit": ("pids", "limit", int),
}


def ram_in_bytes(value):
    """docker's units.RAMInBytes, which runc uses: "512", "64m", "1.5GiB", "-1"."""
    text = value.strip().lower()
    if text == "-1":
        return -1
    text = text.removesuffix("b")
    if text[-2:-1] in ("k", "m", "g", "t", "p") and text.endswith("i"):
        text = text[:-1]
    unit = text[-1] if text and text[-1] in _UNITS else ""
    try:
        amount = float(text[:-1].rstrip() if unit else text)
    except ValueError:
        raise ValueError(f"invalid size {value!r}") from None
    if amount < 0:
        raise ValueError(f"invalid size {value!r}")
    return int(amount * _UNITS.get(unit, 1))


def from_flags(flags):
    """runc update's flags → a LinuxResources dict (only what was given)."""
    if flags.get("l3_cache_schema") or flags.get("mem_bw_schema"):
        raise OCIError("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by this runtime")
    out = {}
    for dest, (group, field, parse) in _FLAGS.items():
        value = flags.get(dest)
        if value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        try:
            value = ram_in_bytes(value) if parse == "bytes" else parse(value)
        except (ValueError, OverflowError) as e:  # OverflowError: "1e400" is an infinite float
            raise OCIError(f"update: invalid value for {flag}: {e}") from None
        out.setdefault(group, {})[field] = value
    return out


def from_file(path):
    from ..config import read_json

    loaded = read_json(path, "update: --resources")
    if not isinstance(loaded, dict):
        raise OCIError(f"update: --resources {path}: must be a JSON object (LinuxResources)")
    return loaded


def merge(old, new):
    """``new`` over ``old``, a group at a time: an object's fields are replaced one by
    one, block devices by major:minor (as runc upserts them), anything else whole."""
    merged = dict(old)
    for group, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(group), dict):
            merged[group] = {**old[group], **{k: _upsert(old[group].get(k), v) for k, v in value.items()}}
        else:
            merged[group] = value
    return merged


def _upsert(old, new):
    if not (isinstance(old, list) and isinstance(new, list) and all(isinstance(d, dict) and "major" in d
                                                                     for d in old + new)):
        return new
    by_device = {(d["major"], d["minor"]): d for d in old}
    by_device.update({(d["major"], d["minor"]): d for d in new})
    return list(by_device.values())


def _check_before_update(paths, memory, planned):
    """memory.checkBeforeUpdate: refuse a limit below what the container uses now."""
    limit = memory.get("limit")
    if not memory.get("checkBeforeUpdate") or not limit or limit < 0:
        return
    for w in planned:
        if w["file"] in ("memory.max", "memory.limit_in_bytes"):
            usage = cgroups.memory_usage(cgroups.directory_of(paths, w))
            if usage is not None and limit < usage:
                raise OCIError(f"{w['label']}: {limit} is below the container's current usage {usage}")


def checked(resources):
    """``resources`` if the schema's LinuxResources takes them, as config.json's are checked:
    a wrong type or an out-of-range number is one line naming the field."""
    from ..validate import validate_part

    try:
        validate_part(resources, "config-linux.schema.json#/definitions/Resources")
    except ConfigError as e:
        raise OCIError(f"update: {e.path or 'resources'}: {e.message}") from None
    return resources


def update(root, container_id, resources):
    """Merge ``resources`` (LinuxResources) into the container's and apply the whole set."""
    new = checked(resources)
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if status == "stopped":
            raise OCIError(f"container {container_id!r} is not running")
        data = container.data
        merged = merge(data.get("resources") or {}, new)
        if (merged.get("memory") or {}).get("limit") == -1 and "swap" not in (new.get("memory") or {}):
            merged["memory"].pop("swap", None)  # unlimited memory: unlimited swap too, as runc does
        planned = writes(merged, Host(*cgroups.controller_versions()))
        paths = container.cgroup_paths
        _check_before_update(paths, new.get("memory") or {}, planned)
        if data.get("systemd_unit"):
            _set_unit_properties(data["systemd_unit"], planned)
        cgroups.apply(paths, planned)
        data["resources"] = merged
        container.save()


def _set_unit_properties(unit, planned):
    """The systemd driver: the unit's properties first, so that systemd, which rewrites
    its cgroup files from them (daemon-reload), keeps the new limits; cgroupfs after."""
    from .. import systemd
    from ..systemd_bus import Bus

    with Bus() as bus:
        bus.set_properties(unit, systemd.resource_properties(planned, [], bus.version), f"update: systemd unit {unit}")


def main(root, container_id, resources=None, **flags):
    update(root, container_id, from_file(resources) if resources else from_flags(flags))
