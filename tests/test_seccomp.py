"""linux.seccomp in real containers: every action, operator and flag, errnoRet and
defaultErrnoRet, the unknown-name rule, and SCMP_ACT_NOTIFY handed to a listener
that answers the container's syscalls. Plus the plan's refusals (pure)."""

import json
import os
import re
import socket
import struct
import threading

import pytest
from conftest import run_ok

from ociruntime.linux import seccomp

MKDIR = ["mkdir", "mkdirat"]


def _filter(default="SCMP_ACT_ALLOW", syscalls=(), **extra):
    return {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": list(syscalls), **extra}


def _bundle(make_bundle, script, seccomp_filter, **process):
    bundle = make_bundle("sh", "-c", script)
    bundle.config["linux"]["seccomp"] = seccomp_filter
    bundle.config["process"].update(process)
    return bundle.write()


def _all_syscalls():
    """Every x86_64 syscall name the kernel headers (linux-libc-dev) define."""
    with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
        return re.findall(r"#define __NR_(\w+) \d+", f.read())


@pytest.mark.root
def test_errno_with_and_without_errno_ret(runtime, make_bundle):
    script = "mkdir /dev/shm/a; rmdir /tmp; echo status=$?; grep Seccomp: /proc/self/status"
    bundle = _bundle(make_bundle, script, _filter(
        syscalls=[{"names": MKDIR, "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                  {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"}]))
    code, out, err = runtime.run_output(bundle)
    assert "can't create directory '/dev/shm/a': Permission denied" in err  # errnoRet 13: EACCES
    assert "'/tmp': Operation not permitted" in err  # no errnoRet: EPERM
    assert re.search(r"Seccomp:\s+2", out), out


@pytest.mark.root
def test_default_errno_ret_with_an_allow_list(runtime, make_bundle):
    """defaultAction ERRNO + defaultErrnoRet: everything but mkdir is allowed by name;
    mkdir falls to the default and fails with ENOSYS (38)."""
    allowed = [name for name in _all_syscalls() if name not in MKDIR]
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a; echo done", _filter(
        default="SCMP_ACT_ERRNO", defaultErrnoRet=38, syscalls=[{"names": allowed, "action": "SCMP_ACT_ALLOW"}]))
    code, out, err = runtime.run_output(bundle)
    assert "can't create directory '/dev/shm/a': Function not implemented" in err, err
    assert "done" in out


@pytest.mark.root
@pytest.mark.parametrize("op,value,value_two,blocked", [
    ("SCMP_CMP_EQ", 3, 0, [3]),
    ("SCMP_CMP_NE", 3, 0, [1, 2, 4, 5, 6]),
    ("SCMP_CMP_LT", 3, 0, [1, 2]),
    ("SCMP_CMP_LE", 3, 0, [1, 2, 3]),
    ("SCMP_CMP_GT", 3, 0, [4, 5, 6]),
    ("SCMP_CMP_GE", 3, 0, [3, 4, 5, 6]),
    ("SCMP_CMP_MASKED_EQ", 6, 2, [2, 3]),  # (pid & 6) == 2
])
def test_argument_operators(runtime, make_bundle, op, value, value_two, blocked):
    """kill(pid, 0) for pids 1..6: the rule turns matching pids into EACCES; the others
    give success (pid 1, the shell) or ESRCH (no such pid)."""
    rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 0, "op": op, "value": value, "valueTwo": value_two}]}
    script = "for p in 1 2 3 4 5 6; do kill -0 $p 2>&1 && echo pid $p: ok; done; true"
    out = run_ok(runtime, _bundle(make_bundle, script, _filter(syscalls=[rule])))
    outcome = dict(re.findall(r"pid (\d): (ok|Permission denied|No such process)", out))
    assert len(outcome) == 6, out
    assert sorted(int(p) for p, o in outcome.items() if o == "Permission denied") == blocked, out
    assert all(o == ("ok" if p == "1" else "No such process") for p, o in outcome.items() if int(p) not in blocked)


@pytest.mark.root
def test_two_conditions_on_one_argument(runtime, make_bundle):
    """runc turns conditions repeating an index into one rule each (libseccomp can't AND
    them): pid == 2 or pid == 3 are blocked, not pid 4."""
    rule = {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
            "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": 2}, {"index": 0, "op": "SCMP_CMP_EQ", "value": 3}]}
    script = "for p in 2 3 4; do kill -0 $p 2>&1; done; true"
    out = run_ok(runtime, _bundle(make_bundle, script, _filter(syscalls=[rule])))
    assert "pid 2: Permission denied" in out and "pid 3: Permission denied" in out
    assert "pid 4: No such process" in out


@pytest.mark.root
@pytest.mark.parametrize("action,expect", [
    ("SCMP_ACT_KILL", "status=159"),  # 128 + SIGSYS
    ("SCMP_ACT_KILL_THREAD", "status=159"),
    ("SCMP_ACT_KILL_PROCESS", "status=159"),
    ("SCMP_ACT_TRAP", "status=159"),
    ("SCMP_ACT_TRACE", "Function not implemented"),  # no tracer attached: ENOSYS
    ("SCMP_ACT_LOG", "created"),  # allowed (and logged)
])
def test_actions(runtime, make_bundle, action, expect):
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a 2>&1 && echo created; echo status=$?",
                     _filter(syscalls=[{"names": MKDIR, "action": action}]))
    out = run_ok(runtime, bundle)
    assert expect in out, out


@pytest.mark.root
def test_unknown_syscall_names_are_skipped_known_ones_kept(runtime, make_bundle):
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a 2>&1; true", _filter(
        syscalls=[{"names": ["no_such_syscall_at_all", *MKDIR], "action": "SCMP_ACT_ERRNO"}]))
    assert "Operation not permitted" in run_ok(runtime, bundle)


@pytest.mark.root
@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_LOG"], ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_TSYNC"]])
def test_flags_load(runtime, make_bundle, flags):
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a 2>&1; grep Seccomp: /proc/self/status", _filter(
        syscalls=[{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}], flags=flags))
    out = run_ok(runtime, bundle)
    assert "Operation not permitted" in out and re.search(r"Seccomp:\s+2", out)


@pytest.mark.root
def test_without_no_new_privileges_for_a_non_root_user(runtime, make_bundle):
    """Loaded before the capabilities go (it needs CAP_SYS_ADMIN without no_new_privs)."""
    bundle = _bundle(make_bundle, "mkdir /tmp/a 2>&1; grep -E 'Seccomp:|NoNewPrivs:' /proc/self/status; id -u",
                     _filter(syscalls=[{"names": MKDIR, "action": "SCMP_ACT_ERRNO"}]),
                     noNewPrivileges=False, user={"uid": 1000, "gid": 1000})
    out = run_ok(runtime, bundle)
    assert "Operation not permitted" in out and re.search(r"Seccomp:\s+2", out) and re.search(r"NoNewPrivs:\s+0", out)
    assert out.strip().endswith("1000")


@pytest.mark.root
@pytest.mark.parametrize("no_new_privs", [False, True])
def test_a_filter_refusing_getcwd(runtime, make_bundle, no_new_privs):
    """The cwd is checked with getcwd before the filter is loaded (without noNewPrivileges
    it is loaded before the process's last steps): a filter refusing getcwd (runtime-tools'
    linux_seccomp) still runs the container, and the container sees the refusal."""
    bundle = _bundle(make_bundle, "cd /tmp && echo in-tmp; pwd", _filter(
        syscalls=[{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]), noNewPrivileges=no_new_privs, cwd="/etc")
    code, out, err = runtime.run_output(bundle)
    assert code == 0 and out.startswith("in-tmp\n"), (code, out, err)


# --- SCMP_ACT_NOTIFY ---------------------------------------------------------------------------

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes
EXDEV = 18


class Agent(threading.Thread):
    """A seccomp agent: takes the process state and fd from listenerPath, then answers
    every notified syscall with -EXDEV until the container's filter is gone."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.state, self.answered, self.extra = None, [], None

    def run(self):
        import fcntl

        conn, _ = self.server.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        self.state = json.loads(msg)
        self.extra = conn.recv(1)  # b"": exactly one state per connection, then closed
        conn.close()
        try:
            while True:
                buf = bytearray(80)
                fcntl.ioctl(fds[0], SECCOMP_IOCTL_NOTIF_RECV, buf)
                notif_id, pid, _, nr = struct.unpack_from("<QIIi", buf)
                self.answered.append(nr)
                fcntl.ioctl(fds[0], SECCOMP_IOCTL_NOTIF_SEND, struct.pack("<QqiI", notif_id, 0, -EXDEV, 0))
        except OSError:
            pass  # every process under the filter is gone
        finally:
            os.close(fds[0])
            self.server.close()


@pytest.mark.root
@pytest.mark.parametrize("flags", [[], ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"]])
def test_notify_hands_the_listener_to_the_agent(runtime, make_bundle, tmp_path, flags):
    listener = str(tmp_path / "agent.sock")
    agent = Agent(listener)
    agent.start()
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a 2>&1; echo status=$?", _filter(
        syscalls=[{"names": MKDIR, "action": "SCMP_ACT_NOTIFY"}], flags=flags,
        listenerPath=listener, listenerMetadata="hello agent"))
    cid = runtime.new_id()
    runtime("create", "--bundle", bundle.path, cid)
    state = runtime.state(cid)
    agent.join(0.1)
    assert agent.state == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": state["pid"],
                           "metadata": "hello agent", "state": {"ociVersion": "1.3.0", "id": cid, "status": "creating",
                                                                "bundle": str(bundle.path), "pid": state["pid"]}}
    assert agent.extra == b""
    runtime("start", cid)
    agent.join(10)
    assert not agent.is_alive()
    assert agent.answered and set(agent.answered) <= {83, 258}  # mkdir, mkdirat on x86_64
    runtime("delete", cid)


@pytest.mark.root
def test_notify_answers_reach_the_container(runtime, make_bundle, tmp_path):
    listener = str(tmp_path / "agent.sock")
    agent = Agent(listener)
    agent.start()
    bundle = _bundle(make_bundle, "mkdir /dev/shm/a 2>&1; echo status=$?", _filter(
        syscalls=[{"names": MKDIR, "action": "SCMP_ACT_NOTIFY"}], listenerPath=listener))
    out = run_ok(runtime, bundle)
    assert "Invalid cross-device link" in out and "status=1" in out  # the agent's -EXDEV


@pytest.mark.root
def test_notify_listener_unreachable_fails_create_cleanly(runtime, make_bundle, tmp_path):
    missing = str(tmp_path / "nobody-listens.sock")
    bundle = _bundle(make_bundle, "true", _filter(syscalls=[{"names": MKDIR, "action": "SCMP_ACT_NOTIFY"}],
                                                  listenerPath=missing))
    cid = runtime.new_id()
    proc = runtime("create", "--bundle", bundle.path, cid, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"ociruntime: linux.seccomp.listenerPath: {missing}: No such file or directory"], proc.stderr
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --- the plan's rules (pure) --------------------------------------------------------------------

@pytest.mark.parametrize("config,error", [
    (_filter(default="SCMP_ACT_NOTIFY", listenerPath="/x"),
     "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY can't be the default action"),
    (_filter(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.listenerPath: needed by the SCMP_ACT_NOTIFY rules"),
    (_filter(syscalls=[{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}], listenerPath="/x"),
     "linux.seccomp.syscalls[0].names: SCMP_ACT_NOTIFY on sendmsg"),
    (_filter(flags=["SECCOMP_FILTER_FLAG_NOPE"]), "linux.seccomp.flags[0]: unsupported flag"),
    (_filter(syscalls=[{"names": ["x"], "action": "SCMP_ACT_NOPE"}]), "linux.seccomp.syscalls[0].action: unknown"),
])
def test_refused(config, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        seccomp.build(config)


def test_flags_become_kernel_bits():
    notify = [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    killable = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"]
    # with a listener: NEW_LISTENER (8), and TSYNC needs TSYNC_ESRCH (16) beside it
    assert seccomp.build(_filter(syscalls=notify, flags=killable, listenerPath="/x"))["flags"] == 32 | 1 | 8 | 16
    # WAIT_KILLABLE_RECV only qualifies a listener's waits (libseccomp drops it the same way)
    assert seccomp.build(_filter(flags=killable))["flags"] == 1
    assert seccomp.build(_filter(listenerPath="/x"))["listener"] is None  # no NOTIFY rule: ignored (spec)
