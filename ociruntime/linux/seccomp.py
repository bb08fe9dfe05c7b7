"""linux.seccomp → the plain-data filter the C helper compiles with libseccomp and
loads itself with seccomp(2).

Actions and operators become libseccomp's ABI numbers (seccomp.h); flags become the
kernel's SECCOMP_FILTER_FLAG_* bits, passed to seccomp(2) directly (that is how
WAIT_KILLABLE_RECV works with a libseccomp older than 2.6). Rules whose action
equals the default are dropped (libseccomp refuses them; they change nothing).

Unknown syscall names (runc's rule): a name libseccomp can't resolve on this machine
is skipped by the C side, because profiles name syscalls newer than the libseccomp
that reads them (Docker's does); every name it knows gets its rule, and a wrong
action, operator, flag or architecture is an error, never skipped.

SCMP_ACT_NOTIFY: the filter is loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER and the
init sends the listener fd to the runtime, which passes it on to listenerPath with
the container process state (create.py). runc's rules hold: NOTIFY can't be the
default action, and it needs listenerPath. One of ours: NOTIFY on sendmsg is refused,
since the init sends that fd with sendmsg under the filter and would wait forever on
a listener that doesn't have it yet.
"""

EPERM = 1

NOTIFY = 0x7FC00000
ACTIONS = {
    "SCMP_ACT_KILL": lambda e: 0x00000000,
    "SCMP_ACT_KILL_THREAD": lambda e: 0x00000000,
    "SCMP_ACT_KILL_PROCESS": lambda e: 0x80000000,
    "SCMP_ACT_TRAP": lambda e: 0x00030000,
    "SCMP_ACT_ERRNO": lambda e: 0x00050000 | (e & 0xFFFF),
    "SCMP_ACT_TRACE": lambda e: 0x7FF00000 | (e & 0xFFFF),
    "SCMP_ACT_LOG": lambda e: 0x7FFC0000,
    "SCMP_ACT_ALLOW": lambda e: 0x7FFF0000,
    "SCMP_ACT_NOTIFY": lambda e: NOTIFY,
}

OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

# linux/seccomp.h
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
NEW_LISTENER = 8
TSYNC_ESRCH = 16
WAIT_KILLABLE_RECV = FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]


def action(name, errno_ret, label):
    make = ACTIONS.get(name)
    if make is None:
        raise ValueError(f"{label}: unknown action {name!r}")
    return make(EPERM if errno_ret is None else errno_ret)


def arch_name(name):
    """SCMP_ARCH_X86_64 → x86_64, libseccomp's own spelling."""
    return name.removeprefix("SCMP_ARCH_").lower()


def build(seccomp):
    """Return the filter dict, or raise ValueError("path: message")."""
    default = action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    if default == NOTIFY:
        raise ValueError("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY can't be the default action")
    flags = 0
    for i, flag in enumerate(seccomp.get("flags") or []):
        if flag not in FLAGS:
            raise ValueError(f"linux.seccomp.flags[{i}]: unsupported flag {flag!r}")
        flags |= FLAGS[flag]
    rules = []
    for i, sc in enumerate(seccomp.get("syscalls") or []):
        label = f"linux.seccomp.syscalls[{i}]"
        act = action(sc["action"], sc.get("errnoRet"), label + ".action")
        if act == default:
            continue
        if act == NOTIFY and "sendmsg" in sc["names"]:
            raise ValueError(f"{label}.names: SCMP_ACT_NOTIFY on sendmsg would stop the container's init before "
                             "it can hand the listener over")
        args = []
        for j, a in enumerate(sc.get("args") or []):
            op = OPERATORS.get(a["op"])
            if op is None:
                raise ValueError(f"{label}.args[{j}].op: unknown operator {a['op']!r}")
            args.append((a["index"], op, a["value"], a.get("valueTwo", 0)))
        for name in sc["names"]:
            rules.append({"name": name, "action": act, "args": args})
    listener = None
    if any(r["action"] == NOTIFY for r in rules):
        if not seccomp.get("listenerPath"):
            raise ValueError("linux.seccomp.listenerPath: needed by the SCMP_ACT_NOTIFY rules")
        listener = {"path": seccomp["listenerPath"], "metadata": seccomp.get("listenerMetadata", "")}
        flags |= NEW_LISTENER | (TSYNC_ESRCH if flags & FLAGS["SECCOMP_FILTER_FLAG_TSYNC"] else 0)
    else:
        flags &= ~WAIT_KILLABLE_RECV  # it qualifies the listener's waits: without one it means nothing
    return {
        "default_action": default,
        "archs": [arch_name(a) for a in seccomp.get("architectures") or []],
        "flags": flags,
        "rules": rules,
        "listener": listener,
    }
