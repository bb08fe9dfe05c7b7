"""linux.seccomp → the plain-data filter the C helper hands to libseccomp.

Actions and operators become libseccomp's ABI numbers (seccomp.h). Rules whose
action equals the default are dropped (libseccomp refuses them; they change
nothing). Syscall names libseccomp doesn't know are skipped by the C side, as
runc does: a profile may name syscalls newer than this libseccomp.
"""

EPERM = 1

ACTIONS = {
    "SCMP_ACT_KILL": lambda e: 0x00000000,
    "SCMP_ACT_KILL_THREAD": lambda e: 0x00000000,
    "SCMP_ACT_KILL_PROCESS": lambda e: 0x80000000,
    "SCMP_ACT_TRAP": lambda e: 0x00030000,
    "SCMP_ACT_ERRNO": lambda e: 0x00050000 | (e & 0xFFFF),
    "SCMP_ACT_TRACE": lambda e: 0x7FF00000 | (e & 0xFFFF),
    "SCMP_ACT_LOG": lambda e: 0x7FFC0000,
    "SCMP_ACT_ALLOW": lambda e: 0x7FFF0000,
}

OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": "tsync",
    "SECCOMP_FILTER_FLAG_LOG": "log",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "spec_allow",
}


def action(name, errno_ret, label):
    make = ACTIONS.get(name)
    if make is None:
        if name == "SCMP_ACT_NOTIFY":
            raise ValueError(f"{label}: SCMP_ACT_NOTIFY is not supported by this runtime yet")
        raise ValueError(f"{label}: unknown action {name!r}")
    return make(EPERM if errno_ret is None else errno_ret)


def arch_name(name):
    """SCMP_ARCH_X86_64 → x86_64, libseccomp's own spelling."""
    return name.removeprefix("SCMP_ARCH_").lower()


def build(seccomp):
    """Return the filter dict, or raise ValueError("path: message")."""
    if seccomp.get("listenerPath"):
        raise ValueError("linux.seccomp.listenerPath: seccomp notify is not supported by this runtime yet")
    default = action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    flags = {}
    for i, flag in enumerate(seccomp.get("flags") or []):
        if flag not in FLAGS:
            raise ValueError(f"linux.seccomp.flags[{i}]: unsupported flag {flag!r}")
        flags[FLAGS[flag]] = True
    rules = []
    for i, sc in enumerate(seccomp.get("syscalls") or []):
        label = f"linux.seccomp.syscalls[{i}]"
        act = action(sc["action"], sc.get("errnoRet"), label + ".action")
        if act == default:
            continue
        args = []
        for j, a in enumerate(sc.get("args") or []):
            op = OPERATORS.get(a["op"])
            if op is None:
                raise ValueError(f"{label}.args[{j}].op: unknown operator {a['op']!r}")
            args.append((a["index"], op, a["value"], a.get("valueTwo", 0)))
        for name in sc["names"]:
            rules.append({"name": name, "action": act, "args": args})
    return {
        "default_action": default,
        "archs": [arch_name(a) for a in seccomp.get("architectures") or []],
        "flags": flags,
        "rules": rules,
    }
