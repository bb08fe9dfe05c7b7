"""The attributes the init sets on itself before exec, in runc's order: process.scheduler
(sched_setattr), process.ioPriority (ioprio_set), linux.personality (personality),
linux.memoryPolicy (set_mempolicy) — words of the spec → kernel numbers, checked with
runc's rules (libcontainer/configs/validate) plus the kernel's own that are certain
(sched_setattr's deadline rules, exclusive node flags), so a config the kernel would
refuse fails here with the field's name. process.execCPUAffinity is parsed here; the
spec applies it to processes run by `exec` (commands/exec.py), never to the init.

Each function takes the config's object and returns plain data, or raises ConfigError.
"""

from ..errors import ConfigError

# sched_setattr(2): include/uapi/linux/sched.h
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
                  "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
               "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
               "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
_RT = ("SCHED_FIFO", "SCHED_RR")
_DL_SCALE = 10  # the kernel's smallest deadline runtime is 1 << DL_SCALE ns

# ioprio_set(2): include/uapi/linux/ioprio.h
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
IOPRIO_CLASS_SHIFT = 13

# personality(2): include/uapi/linux/personality.h
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}
PERSONALITY_FLAGS = {"UNAME26": 0x0020000, "ADDR_NO_RANDOMIZE": 0x0040000, "FDPIC_FUNCPTRS": 0x0080000,
                     "MMAP_PAGE_ZERO": 0x0100000, "ADDR_COMPAT_LAYOUT": 0x0200000,
                     "READ_IMPLIES_EXEC": 0x0400000, "ADDR_LIMIT_32BIT": 0x0800000, "SHORT_INODE": 0x1000000,
                     "WHOLE_SECONDS": 0x2000000, "STICKY_TIMEOUTS": 0x4000000, "ADDR_LIMIT_3GB": 0x8000000}

# set_mempolicy(2): include/uapi/linux/mempolicy.h (WEIGHTED_INTERLEAVE is Linux 6.9's)
MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4,
              "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_NUMA_BALANCING": 1 << 13}
_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_SOME_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE")

MAX_ID = 64 * 1024  # runc's sanity limit on a CPU or node number (configs.MaxCPU)


def _one_of(table, value, label, what):
    if value is None:
        raise ConfigError(label, "is required")
    if value not in table:
        raise ConfigError(label, f"unknown {what} {value!r} (known: {', '.join(table)})")
    return table[value]


def _int(obj, key, label, default=0):
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label}.{key}", "must be an integer")
    return value


def scheduler(s, label="process.scheduler"):
    """process.scheduler → the sched_attr fields: {policy, flags, nice, priority, runtime,
    deadline, period} (numbers) and its policy's name."""
    name = s.get("policy")
    policy = _one_of(SCHED_POLICIES, name, f"{label}.policy", "policy")
    if name == "SCHED_ISO":
        # Reserved in the kernel's ABI since 2.6, never implemented: sched_setattr says EINVAL.
        raise ConfigError(f"{label}.policy", "SCHED_ISO is reserved but not implemented by Linux")
    flags = 0
    for i, flag in enumerate(s.get("flags") or []):
        flags |= _one_of(SCHED_FLAGS, flag, f"{label}.flags[{i}]", "flag")
    nice, priority = _int(s, "nice", label), _int(s, "priority", label)
    runtime, deadline, period = (_int(s, k, label) for k in ("runtime", "deadline", "period"))
    # runc's rules
    if name in ("SCHED_OTHER", "SCHED_BATCH") and not -20 <= nice <= 19:
        raise ConfigError(f"{label}.nice", f"{nice} is out of range for {name} (-20 to 19)")
    if priority and name not in _RT:
        raise ConfigError(f"{label}.priority", f"only SCHED_FIFO and SCHED_RR have a priority, not {name}")
    if name != "SCHED_DEADLINE" and (runtime or deadline or period):
        raise ConfigError(label, f"runtime, deadline and period are for SCHED_DEADLINE only, not {name}")
    # The kernel's (sched_setattr(2)): EINVAL otherwise.
    if name in _RT and not 1 <= priority <= 99:
        raise ConfigError(f"{label}.priority", f"{name} needs a priority from 1 to 99, not {priority}")
    if name == "SCHED_DEADLINE":
        if runtime < 1 << _DL_SCALE:
            raise ConfigError(f"{label}.runtime", f"SCHED_DEADLINE needs a runtime of at least {1 << _DL_SCALE} ns")
        if deadline == 0:
            raise ConfigError(f"{label}.deadline", "SCHED_DEADLINE needs a deadline")
        if runtime > deadline:
            raise ConfigError(f"{label}.runtime", f"{runtime} ns is more than the deadline, {deadline} ns")
        if period and deadline > period:
            raise ConfigError(f"{label}.deadline", f"{deadline} ns is more than the period, {period} ns")
        if max(deadline, period) >= 1 << 63:
            raise ConfigError(label, "deadline and period must be below 2^63 ns")
    words = [name, *(s.get("flags") or [])]
    for key, value in (("nice", nice), ("priority", priority), ("runtime", runtime), ("deadline", deadline),
                       ("period", period)):
        if value:
            words.append(f"{key} {value}")
    return {"name": name, "policy": policy, "flags": flags, "nice": nice, "priority": priority,
            "runtime": runtime, "deadline": deadline, "period": period, "label": ", ".join(words)}


def scheduler_warnings(sched, label="process.scheduler"):
    """Fields the kernel takes and ignores under this policy (runc passes them silently)."""
    if sched["nice"] and sched["name"] in (*_RT, "SCHED_DEADLINE"):
        return [f"{label}.nice: has no effect under {sched['name']}"]
    return []


def io_priority(io, label="process.ioPriority"):
    """process.ioPriority → the ioprio value (class << 13 | level) for ioprio_set."""
    cls = _one_of(IOPRIO_CLASSES, io.get("class"), f"{label}.class", "class")
    level = _int(io, "priority", label)  # optional in the official schema: 0, as runc reads it
    if not 0 <= level <= 7:
        raise ConfigError(f"{label}.priority", f"{level} is out of range (0, the highest, to 7)")
    return cls << IOPRIO_CLASS_SHIFT | level


def personality(p, label="linux.personality"):
    """linux.personality → the persona for personality(2): domain | flags. The spec defines
    no flag names yet (runc ignores flags with a warning); the kernel's own are taken."""
    persona = _one_of(PERSONALITY_DOMAINS, p.get("domain"), f"{label}.domain", "domain")
    for i, flag in enumerate(p.get("flags") or []):
        persona |= _one_of(PERSONALITY_FLAGS, flag, f"{label}.flags[{i}]", "personality flag")
    return persona


def id_list(text, label):
    """A CPU or node list ("0-3,7", runc's ToCPUSet: spaces and empty items allowed) →
    sorted ids; None for "" or None."""
    if not text:
        return None
    ids = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        lo, dash, hi = (part.strip() for part in item.partition("-"))
        if not all(n.isascii() and n.isdigit() for n in (lo, hi if dash else lo)):
            raise ConfigError(label, f"{text!r}: {item!r} is not a number or a range N-M")
        first, last = int(lo), int(hi) if dash else int(lo)
        if max(first, last) > MAX_ID:
            raise ConfigError(label, f"{text!r}: ids go from 0 to {MAX_ID}")
        if first > last:
            raise ConfigError(label, f"{text!r}: invalid range {item!r}")
        ids.update(range(first, last + 1))
    if not ids:
        raise ConfigError(label, f"{text!r}: no CPU or node in the list")
    return sorted(ids)


def memory_policy(m, online_nodes=None, label="linux.memoryPolicy"):
    """linux.memoryPolicy → {mode: MPOL_* | MPOL_F_*, nodes: [64-bit words of the node mask],
    label: the words for errors}. ``online_nodes``: the host's list, for the error text."""
    name = m.get("mode")
    mode = _one_of(MPOL_MODES, name, f"{label}.mode", "mode")
    flag_names = []
    for i, flag in enumerate(m.get("flags") or []):
        mode |= _one_of(MPOL_FLAGS, flag, f"{label}.flags[{i}]", "flag")
        flag_names.append(flag)
    if "MPOL_F_STATIC_NODES" in flag_names and "MPOL_F_RELATIVE_NODES" in flag_names:
        raise ConfigError(f"{label}.flags", "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other")
    nodes = id_list(m.get("nodes"), f"{label}.nodes") or []
    if name in _NO_NODES and nodes:
        raise ConfigError(f"{label}.nodes", f"{name} takes no nodes")
    if name in _SOME_NODES and not nodes:
        raise ConfigError(f"{label}.nodes", f"{name} needs at least one node")
    words = [0] * (nodes[-1] // 64 + 1) if nodes else []
    for n in nodes:
        words[n // 64] |= 1 << (n % 64)
    text = "|".join([name, *flag_names]) + (f", nodes {m['nodes']}" if nodes else "")
    if online_nodes is not None:
        text += f"; this host's nodes: {online_nodes or 'none'}"
    return {"mode": mode, "nodes": words, "label": text}


def exec_cpu_affinity(a, label="process.execCPUAffinity"):
    """process.execCPUAffinity → (initial, final) CPU id lists or None. `exec` applies them;
    for the init they are only checked: the spec never applies them there (runc neither)."""
    return id_list(a.get("initial"), f"{label}.initial"), id_list(a.get("final"), f"{label}.final")
