"""devicefilter.program(): its eBPF, run by a small interpreter here, must give every
request the verdict a v1 devices cgroup gives after the same rules were written to it
(modelled below after security/device_cgroup.c). As root, with a cgroup2 hierarchy
mounted: native.attach_device_filter() on a real cgroup of our own, and, with a v1
devices hierarchy too, the kernel's verdicts for the same rules in both."""

import ctypes
import errno
import itertools
import operator
import os
import platform

import pytest
from conftest import launcher_python
from hypothesis import given, settings
from hypothesis import strategies as st

from ociruntime.errors import OCIError
from ociruntime.linux import devices
from ociruntime.linux.devicefilter import program
from ociruntime.spec import default_config

BLOCK, CHAR = 1, 2  # BPF_DEVCG_DEV_*
MKNOD, READ, WRITE = 1, 2, 4  # BPF_DEVCG_ACC_*
BITS = {"m": MKNOD, "r": READ, "w": WRITE}
WILD = 0xFFFFFFFF  # the kernel's ~0 major/minor
U64 = (1 << 64) - 1

# The eBPF opcodes (linux/bpf.h) program() may use, and the conditional jumps: class BPF_JMP
# (5), compared with the sign-extended immediate, or with a register when BPF_X (8) is set.
LDX_W, AND32_K, RSH32_K, MOV32_K, MOV32_X, EXIT = 0x61, 0x54, 0x74, 0xB4, 0xBC, 0x95
JUMPS = {0x10: operator.eq, 0x50: operator.ne, 0x40: lambda a, b: a & b != 0}  # JEQ, JNE, JSET


def decode(prog):
    """[(code, dst, src, off, imm)] of struct bpf_insn, little endian."""
    assert prog and len(prog) % 8 == 0
    return [(prog[i], prog[i + 1] & 0xF, prog[i + 1] >> 4, int.from_bytes(prog[i + 2:i + 4], "little", signed=True),
             int.from_bytes(prog[i + 4:i + 8], "little", signed=True)) for i in range(0, len(prog), 8)]


def run(prog, kind, major, minor, access):
    """r0 after running the program on one request (struct bpf_cgroup_dev_ctx), as the
    kernel would. Registers hold 32-bit values only (every write is 32-bit); reading one
    never written, or an unknown opcode, fails."""
    ctx = b"".join(v.to_bytes(4, "little") for v in (access << 16 | kind, major, minor))
    insns = decode(prog)
    regs = {1: "ctx"}
    pc = 0
    while True:
        code, dst, src, off, imm = insns[pc]
        pc += 1
        if code == LDX_W:
            assert regs[src] == "ctx" and off in (0, 4, 8)
            regs[dst] = int.from_bytes(ctx[off:off + 4], "little")
        elif code == AND32_K:
            regs[dst] &= imm & WILD
        elif code == RSH32_K:
            regs[dst] >>= imm
        elif code == MOV32_K:
            regs[dst] = imm & WILD
        elif code == MOV32_X:
            regs[dst] = regs[src] & WILD
        elif code == EXIT:
            return regs[0]
        elif code & 7 == 5 and code & 0xF0 in JUMPS:
            assert 0 <= off and pc + off < len(insns), "jumps go forward, inside the program"
            if JUMPS[code & 0xF0](regs[dst], regs[src] if code & 8 else imm & U64):
                pc += off
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


class V1Cgroup:
    """A v1 devices cgroup under one that allows everything (security/device_cgroup.c):
    devcgroup_update_access() for each line written, and the permission check."""

    def __init__(self):
        self.allow_by_default = True
        self.exceptions = []  # [type, major, minor, access]

    def write(self, file, line):
        if line[0] == "a":
            self.allow_by_default, self.exceptions = file == "allow", []
            return
        kind, numbers, access = line.split()
        ex = [{"b": BLOCK, "c": CHAR}[kind], *(WILD if n == "*" else int(n) for n in numbers.split(":")),
              sum({BITS[c] for c in access})]
        same = [e for e in self.exceptions if e[:3] == ex[:3]]
        if (file == "allow") != self.allow_by_default:  # dev_exception_add: merge into the same one
            if same:
                same[0][3] |= ex[3]
            else:
                self.exceptions.append(ex)
        else:  # dev_exception_rm: only from the same one, never from a wildcard covering it
            for e in same:
                e[3] &= ~ex[3]
                if not e[3]:
                    self.exceptions.remove(e)

    def permits(self, kind, major, minor, access):
        hits = [e for e in self.exceptions if e[0] == kind and e[1] in (WILD, major) and e[2] in (WILD, minor)]
        if self.allow_by_default:  # match_exception_partial: no exception shares a requested bit
            return not any(access & e[3] for e in hits)
        return any(not access & ~e[3] for e in hits)  # match_exception: one grants all requested bits


def v1(rules):
    cgroup = V1Cgroup()
    for kind, rule in rules:
        cgroup.write(kind, rule)
    return cgroup


def verdicts(rules, requests):
    prog, model = program(rules), v1(rules)
    return {r: run(prog, *r) for r in requests}, {r: int(model.permits(*r)) for r in requests}


NUMBERS = ["*", "1", "3"]  # few, so that rules and requests meet often
RULES = st.lists(st.tuples(
    st.sampled_from(["allow", "deny"]),
    st.one_of(st.just("a"), st.builds(
        lambda kind, major, minor, access: f"{kind} {major}:{minor} {''.join(access)}",
        st.sampled_from("bc"), st.sampled_from(NUMBERS), st.sampled_from(NUMBERS),
        st.lists(st.sampled_from("rwm"), min_size=1, max_size=3))),
), max_size=10)
# Every (type, major, minor, access) the rules above can tell apart; access 0 is access(F_OK).
REQUESTS = list(itertools.product((BLOCK, CHAR), (1, 3, 7), (1, 3, 7), range(8)))


@settings(max_examples=400, deadline=None)
@given(rules=RULES)
def test_same_verdicts_as_v1(rules):
    got, want = verdicts(rules, REQUESTS)
    assert got == want


def test_no_rules_allow_everything():
    insns = decode(program([]))
    assert len(insns) == 8  # the 6 loads of the context, then r0 = 1, exit
    assert insns[-2:] == [(MOV32_K, 0, 0, 0, 1), (EXIT, 0, 0, 0, 0)]


def test_one_block_per_exception():
    # "c 1:3 rwm": type, major, minor, verdict (2); "c *:* m": type, access (jset), verdict (2)
    assert len(decode(program([("deny", "a"), ("allow", "c 1:3 rwm"), ("allow", "c *:* m")]))) == 6 + 5 + 4 + 2
    # deny "c 1:3 w": type, major, minor, access (3: r1 = r3 & w, skip if 0), verdict (2)
    assert len(decode(program([("deny", "c 1:3 w")]))) == 6 + 8 + 2
    # a rule the default already gives, and one whose exception a later rule takes back, leave no block
    assert len(decode(program([("allow", "c 1:3 r"), ("deny", "c 1:5 r"), ("allow", "c 1:5 r")]))) == 8


def test_runc_default_rules():
    rules = devices.cgroup_rules(default_config()["linux"]["resources"]["devices"])
    got, want = verdicts(rules, [(CHAR, 1, 3, READ | WRITE), (CHAR, 136, 4, WRITE), (CHAR, 10, 200, READ),
                                 (CHAR, 4, 1, MKNOD), (BLOCK, 8, 0, MKNOD),
                                 (CHAR, 4, 1, READ), (BLOCK, 8, 0, READ), (CHAR, 10, 229, READ | WRITE)])
    assert got == want == dict(zip(got, [1] * 5 + [0] * 3, strict=True))


def test_a_narrower_allow_cannot_punch_a_hole_in_a_wildcard_deny():
    """v1 takes an allow off the exception with the same key only: /dev/null stays denied
    (a "last matching rule wins" filter would allow it)."""
    got, want = verdicts([("deny", "c *:* rwm"), ("allow", "c 1:3 rwm")], [(CHAR, 1, 3, READ)])
    assert got == want == {(CHAR, 1, 3, READ): 0}


def test_a_deny_refuses_a_request_with_any_of_its_bits():
    requests = [(CHAR, 1, 3, READ), (CHAR, 1, 3, WRITE), (CHAR, 1, 3, READ | WRITE)]
    got, want = verdicts([("deny", "c 1:3 w")], requests)
    assert got == want == dict(zip(requests, [1, 0, 0], strict=True))


@pytest.mark.parametrize("rule", ["p 1:3 rwm", "c 1:3 ", "c 1:3 rx", "c 1:3", "c 1 r", "c 4294967296:0 r",
                                  "c -1:0 r", "c 1:3  r"])
def test_invalid_rules(rule):
    with pytest.raises(OCIError, match=r"^linux.resources.devices: invalid device rule"):
        program([("allow", rule)])


def mount_of(fstype, option=None):
    """Where a cgroup hierarchy is mounted (the first one with ``option`` among its
    super options), or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            rest = fields[fields.index("-") + 1:]
            if rest[0] == fstype and (option is None or option in rest[2].split(",")):
                return fields[4]
    return None


def own_cgroup(mount):
    """A cgroup directory of this test's own below ``mount``, removed afterwards."""
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and the cgroup hierarchy")
    path = os.path.join(mount, f"ociruntime-test-bpf-{os.getpid()}")
    os.mkdir(path)  # fails rather than adopt a cgroup someone else made
    try:
        yield path
    finally:
        os.rmdir(path)  # its processes have exited and been reaped: subprocess.run waits


@pytest.fixture
def cgroup():
    yield from own_cgroup(mount_of("cgroup2"))


@pytest.fixture
def v1_cgroup():
    yield from own_cgroup(mount_of("cgroup", "devices"))


def in_package_python(code, *args):
    """Run ``code`` in a Python of its own that imports the package the tests run, with its
    compiled C helper (conftest.launcher_python)."""
    proc = launcher_python(code, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


ATTACH = """
import sys
from ociruntime.errors import OCIError
from ociruntime.native import attach_device_filter
try:
    attach_device_filter(sys.argv[1], bytes.fromhex(sys.argv[2]))
except OCIError as e:
    print(e)
"""


def attach(path, prog):
    """native.attach_device_filter(path, prog): its OCIError's text, or "" when it worked."""
    return in_package_python(ATTACH, path, prog.hex()).strip()


# What a process in the cgroup may do with each device node: open it read-only (READ), write-only
# (WRITE), read-write, access(F_OK) it (no access bit), make one like it in a scratch directory (MKNOD).
PROBE = """
import errno, os, sys
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
scratch = sys.argv[2]

def attempt(call, *args):
    try:
        call(*args)
        return 0
    except OSError as e:
        return e.errno

def open_close(path, flags):
    os.close(os.open(path, flags | os.O_NONBLOCK))

for i, path in enumerate(sys.argv[3:]):
    st = os.stat(path)
    results = [attempt(open_close, path, flags) for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR)]
    results.append(0 if os.access(path, os.F_OK) else errno.EPERM)  # access() tells no errno
    results.append(attempt(os.mknod, f"{scratch}/{i}", st.st_mode, st.st_rdev))
    print(*results)
"""
PROBED_ACCESS = (READ, WRITE, READ | WRITE, 0, MKNOD)


def probe(procs, scratch, *paths):
    """{device node: {access bits: errno or 0}} for each way PROBE uses it from a process in the
    cgroup whose cgroup.procs is ``procs``. Nodes it makes in ``scratch`` are left there."""
    lines = in_package_python(PROBE, procs, str(scratch), *paths).splitlines()
    return {path: dict(zip(PROBED_ACCESS, map(int, line.split()), strict=True))
            for path, line in zip(paths, lines, strict=True)}


def attached(path):
    """The ids of the device programs attached to the cgroup: BPF_PROG_QUERY by hand, for
    want of bpftool here (union bpf_attr's query member, linux/bpf.h)."""
    class Query(ctypes.Structure):
        _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
                    ("query_flags", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                    ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32)]

    sys_bpf = {"x86_64": 321, "aarch64": 280}[platform.machine()]
    bpf_prog_query, bpf_cgroup_device = 16, 6
    ids = (ctypes.c_uint32 * 64)()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        query = Query(fd, bpf_cgroup_device, 0, 0, ctypes.addressof(ids), len(ids))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(sys_bpf, bpf_prog_query, ctypes.byref(query), ctypes.sizeof(query)) < 0:
            raise OSError(ctypes.get_errno(), "BPF_PROG_QUERY")
    finally:
        os.close(fd)
    return ids[:query.prog_cnt]


@pytest.mark.root
def test_filter_on_a_real_cgroup(cgroup, tmp_path):
    def reads():
        found = probe(f"{cgroup}/cgroup.procs", tmp_path, "/dev/null", "/dev/zero")
        return {path: results[READ] for path, results in found.items()}

    assert attach(cgroup, program([("deny", "c 1:3 rwm")])) == ""
    assert reads() == {"/dev/null": errno.EPERM, "/dev/zero": 0}
    first = attached(cgroup)
    assert len(first) == 1
    # update: the new filter replaces the old one rather than adding to it
    assert attach(cgroup, program([("deny", "c 1:5 r")])) == ""
    assert reads() == {"/dev/null": 0, "/dev/zero": errno.EPERM}
    second = attached(cgroup)
    assert len(second) == 1 and second != first


@pytest.mark.root
def test_attach_errors(cgroup):
    no_r0 = bytes.fromhex("9500000000000000")  # exit, r0 never set
    error = attach(cgroup, no_r0)
    assert error.startswith("linux.resources.devices: load the eBPF program: Permission denied: verifier: ")
    assert error.endswith(" | 0: (95) exit | R0 !read_ok")
    assert attach(cgroup, program([])[:-3]) == ("linux.resources.devices: load the eBPF program: "
                                                "61 bytes are not whole instructions")
    assert attach(f"{cgroup}/missing", program([])) == (f"linux.resources.devices: open {cgroup}/missing: "
                                                        "No such file or directory")
    assert attached(cgroup) == []


# Device nodes: /dev/null and /dev/zero's numbers, and numbers no driver has here (opening
# them fails with ENXIO, but only after the device cgroup allowed it).
NODES = [("c", 1, 3), ("c", 1, 5), ("c", 2, 1), ("b", 3, 1), ("b", 3, 3)]


@pytest.mark.root
@pytest.mark.parametrize("rules", [
    [("deny", "c 1:3 w"), ("deny", "b 3:* r")],
    [("deny", "c *:* rwm"), ("allow", "c 1:3 rwm")],
    [("deny", "a"), ("allow", "c 1:* r"), ("allow", "c 1:3 w"), ("allow", "b *:* m")],
    [("deny", "a"), ("allow", "c *:* m"), ("deny", "c 1:3 m"), ("allow", "b 3:1 rw"), ("deny", "b 3:1 r")],
    devices.cgroup_rules(default_config()["linux"]["resources"]["devices"]),
], ids=["partial-deny", "no-hole-in-wildcard", "split-allows", "whitelist-removals", "runc-defaults"])
@pytest.mark.cgroup_v1_hybrid
def test_the_kernel_agrees(cgroup, v1_cgroup, tmp_path, rules):
    """The same rules in a v1 devices cgroup and as our filter on a cgroup v2: the kernel
    refuses (EPERM) exactly the requests the model refuses, in both."""
    paths = []
    for kind, major, minor in NODES:
        paths.append(str(tmp_path / f"{kind}{major}.{minor}"))
        os.mknod(paths[-1], devices.TYPES[kind] | 0o600, os.makedev(major, minor))
    model = v1(rules)
    want = {path: {access: int(model.permits(BLOCK if kind == "b" else CHAR, major, minor, access))
                   for access in PROBED_ACCESS} for path, (kind, major, minor) in zip(paths, NODES, strict=True)}
    for kind, rule in rules:
        with open(f"{v1_cgroup}/devices.{kind}", "w") as f:
            f.write(rule)
    assert attach(cgroup, program(rules)) == ""
    for procs, scratch in ((f"{v1_cgroup}/cgroup.procs", "v1"), (f"{cgroup}/cgroup.procs", "v2")):
        (tmp_path / scratch).mkdir()
        found = probe(procs, tmp_path / scratch, *paths)
        assert {path: {access: int(e != errno.EPERM) for access, e in results.items()}
                for path, results in found.items()} == want, scratch
