"""Device cgroup rules → a cgroup v2 device filter: a BPF_PROG_TYPE_CGROUP_DEVICE eBPF program.

cgroup v2 has no devices.allow/devices.deny files: the kernel asks eBPF programs attached to
the cgroup instead. ``program()`` gives the rules exactly the meaning they have when written
in order to a v1 cgroup that starts allowing everything. Like runc (devicefilter.go, which
replays the rules through its v1 emulator first) it does not compile the rules one by one:
v1 keeps a default verdict and a list of exceptions that later rules merge into or take
bits off, and a rule narrower than a wildcard exception cannot punch a hole in it. So the
rules are replayed as security/device_cgroup.c does, and each resulting exception becomes
one block of the program. Unlike runc, such a hole-punching rule is ignored, as v1 ignores
it, rather than refused. The kernel's own check is mirrored too: a request for several
access bits (an O_RDWR open) needs one allow exception granting all of them, and is refused
by a deny exception holding any of them.

No imports but our errors: this runs on the create path.
"""

from ..errors import OCIError

# struct bpf_cgroup_dev_ctx's encoding: access_type = access << 16 | type.
_TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_RWM = 7
_ANY = 0xFFFFFFFF  # the kernel's wildcard major/minor (~0): "*" parses to it, as does a literal 4294967295

# The few eBPF opcodes the program uses (linux/bpf_common.h, linux/bpf.h).
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: if dst == imm goto pc + 1 + off
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: if dst & imm goto ...
_EXIT = 0x95  # BPF_JMP | BPF_EXIT: return r0 (1: allow, 0: deny)
_JMP_CLASS = 0x05


def _insn(code, dst=0, src=0, off=0, imm=0):
    """One struct bpf_insn, little endian: code, dst_reg:4 | src_reg:4 << 4, s16 off, s32 imm."""
    return bytes((code, src << 4 | dst)) + off.to_bytes(2, "little", signed=True) + (imm & 0xFFFFFFFF).to_bytes(
        4, "little")


# r1 is the context; r2 = type, r3 = requested access bits, r4 = major, r5 = minor.
_PROLOGUE = b"".join((
    _insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),
    _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),
    _insn(_LDX_W, 4, 1, 4),
    _insn(_LDX_W, 5, 1, 8),
))


def _verdict(allow):
    return _insn(_MOV32_K, 0, imm=int(allow)) + _insn(_EXIT)


def _parse(rule):
    """"c 1:3 rwm" → ((type, major, minor), access bits), refusing what v1 refuses to parse."""
    try:
        kind, numbers, access = rule.split(" ")
        major, minor = numbers.split(":")
        key = (_TYPES[kind], _number(major), _number(minor))
        bits = 0
        for c in access:
            bits |= _ACCESS[c]
        if bits:
            return key, bits
    except (ValueError, KeyError):
        pass
    raise OCIError(f"linux.resources.devices: invalid device rule {rule!r}")


def _number(text):
    if text == "*":
        return _ANY
    if not (text.isascii() and text.isdigit()) or int(text) > _ANY:
        raise ValueError(text)
    return int(text)


def _exceptions(rules):
    """Replay the rules as the v1 controller does: (allow by default?, {(type, major, minor): access bits})."""
    default_allow, exceptions = True, {}
    for kind, rule in rules:
        if rule.split(" ")[0] == "a":
            default_allow, exceptions = kind == "allow", {}
            continue
        key, bits = _parse(rule)
        if (kind == "allow") != default_allow:
            exceptions[key] = exceptions.get(key, 0) | bits
            continue
        # A rule going the default's way only takes bits off the exception with exactly its key.
        left = exceptions.pop(key, 0) & ~bits
        if left:
            exceptions[key] = left
    return default_allow, exceptions


def _block(key, bits, allow):
    """Return ``allow`` if the request falls under this exception, else jump to the next block."""
    kind, major, minor = key
    checks = [(_JNE_K, 2, 0, kind)]
    if major != _ANY:
        checks.append((_JNE_K, 4, 0, major))
    if minor != _ANY:
        checks.append((_JNE_K, 5, 0, minor))
    if allow:  # every requested bit must be granted: skip if one lies outside
        if bits != _RWM:
            checks.append((_JSET_K, 3, 0, _RWM & ~bits))
    else:  # one requested bit in the exception is enough to refuse: skip if none is
        checks += [(_MOV32_X, 1, 3, 0), (_AND32_K, 1, 0, bits), (_JEQ_K, 1, 0, 0)]
    end = len(checks) + 2
    return b"".join(_insn(code, dst, src, end - 1 - i if code & 7 == _JMP_CLASS else 0, imm)
                    for i, (code, dst, src, imm) in enumerate(checks)) + _verdict(allow)


def program(rules):
    """[("allow"|"deny", "c 1:3 rwm" | "a")] (devices.cgroup_rules()) → the filter's instructions, as bytes.

    Majors and minors are compared as 64-bit registers with a sign-extended 32-bit immediate:
    one of 2**31 or more never matches, which is right, as no device number is that large.
    """
    default_allow, exceptions = _exceptions(rules)
    blocks = (_block(key, bits, not default_allow) for key, bits in exceptions.items())
    return _PROLOGUE + b"".join(blocks) + _verdict(default_allow)
