"""config.json ``hooks``: every kind runs at its point of the lifecycle, in order, with
the state on stdin, its args and env; timeouts; and each kind's failure semantics."""

import json
import os
import time

import pytest
from conftest import create_and_start

pytestmark = pytest.mark.root

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
HOST_KINDS = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def write_script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


class HookBundle:
    """A bundle whose hooks log "<kind> <state json>" lines to logdir/log; logdir is also
    bound at /hooklog in the container for startContainer, which runs after pivot_root."""

    def __init__(self, make_bundle, tmp_path, *args):
        self.logdir = tmp_path / "logdir"
        self.logdir.mkdir(exist_ok=True)
        self.log = self.logdir / "log"
        self.host_hook = write_script(tmp_path / "hook.sh", f'echo "$1 $(cat)" >> {self.log}\n')
        self.bundle = make_bundle(*(args or ("true",)))
        hooks_dir = self.bundle.rootfs / "hooks"
        hooks_dir.mkdir()
        write_script(hooks_dir / "hook.sh", 'echo "$1 $(cat)" >> /hooklog/log\n')
        self.bundle.config["mounts"].append({"destination": "/hooklog", "type": "bind",
                                             "source": str(self.logdir), "options": ["bind"]})
        self.bundle.config["hooks"] = {}

    def add(self, kind, path=None, args=None, env=None, timeout=None):
        if path is None:
            path = "/hooks/hook.sh" if kind == "startContainer" else self.host_hook
        hook = {"path": path, "args": args if args is not None else [path, kind], "env": env or ENV}
        if timeout is not None:
            hook["timeout"] = timeout
        self.bundle.config["hooks"].setdefault(kind, []).append(hook)
        self.bundle.write()
        return self

    def entries(self):
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            kind, _, state = line.partition(" ")
            out.append((kind, json.loads(state) if state.strip() else None))
        return out

    def kinds(self):
        return [k for k, _ in self.entries()]


def one_error_line(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def wait_stopped(runtime, cid, timeout=5):
    deadline = time.monotonic() + timeout
    while runtime.state(cid)["status"] != "stopped":
        assert time.monotonic() < deadline, runtime.state(cid)
        time.sleep(0.02)


# --- order and state ------------------------------------------------------------------------

def test_all_hooks_run_in_order_with_state(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path, "sh", "-c", "echo program >> /hooklog/log")
    for kind in KINDS:
        hb.add(kind)
    cid = runtime.new_id()
    code, out, err = runtime.run_output(hb.bundle, cid)
    assert code == 0, err
    entries = hb.entries()
    kinds = [k for k, _ in entries]
    # The program and poststart run concurrently: either may log first.
    assert kinds in (["prestart", "createRuntime", "createContainer", "startContainer", "program", "poststart",
                      "poststop"],
                     ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "program",
                      "poststop"]), entries
    states = {k: s for k, s in entries if k != "program"}
    pid = states["prestart"]["pid"]
    assert pid > 1
    for kind, s in states.items():
        assert s["id"] == cid and s["bundle"] == str(hb.bundle.path), (kind, s)
        assert s["ociVersion"] == hb.bundle.config["ociVersion"]
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer"):
        assert states[kind]["status"] in ("creating", "created"), (kind, states[kind])
        assert states[kind]["pid"] == pid
    assert states["poststart"]["status"] == "running" and states["poststart"]["pid"] == pid
    assert states["poststop"]["status"] == "stopped"
    assert states["poststop"].get("pid", 0) == 0


def test_create_time_hooks_run_at_create_and_start_ones_at_start(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path, "sleep", "30")
    for kind in KINDS:
        hb.add(kind)
    cid = runtime.new_id()
    runtime("create", "--bundle", hb.bundle.path, cid)
    assert hb.kinds() == ["prestart", "createRuntime", "createContainer"]
    runtime("start", cid)
    assert hb.kinds() == ["prestart", "createRuntime", "createContainer", "startContainer", "poststart"]
    runtime("kill", cid, "KILL")
    wait_stopped(runtime, cid)
    assert len(hb.kinds()) == 5, "poststop runs at delete, not when the program exits"
    runtime("delete", cid)
    assert hb.kinds()[-1] == "poststop"


def test_several_hooks_of_one_kind_run_in_order(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    for n in range(3):
        hb.add("prestart", args=[hb.host_hook, f"prestart-{n}"])
    runtime.run_output(hb.bundle)
    assert hb.kinds() == ["prestart-0", "prestart-1", "prestart-2"]


def test_host_hooks_run_in_host_namespaces_create_container_in_the_containers(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    body = f'echo "$1 $(stat -L -c %i /proc/self/ns/net) $(stat -L -c %i /proc/self/ns/mnt)" >> {hb.log}\n'
    script = write_script(tmp_path / "ns.sh", body)
    for kind in ("prestart", "createRuntime", "createContainer", "poststart", "poststop"):
        hb.add(kind, path=script)
    code, _, err = runtime.run_output(hb.bundle)
    assert code == 0, err
    seen = {line.split()[0]: line.split()[1:] for line in hb.log.read_text().splitlines()}
    host = [str(os.stat(f"/proc/self/ns/{n}").st_ino) for n in ("net", "mnt")]
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        assert seen[kind] == host, kind
    assert seen["createContainer"][0] != host[0] and seen["createContainer"][1] != host[1]


def test_start_container_hook_runs_inside_after_pivot(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    script = hb.bundle.rootfs / "hooks/inside.sh"
    write_script(script, 'echo "startContainer $(hostname) $(ls /hooks | tr \'\\n\' \' \')" >> /hooklog/log\n')
    hb.add("startContainer", path="/hooks/inside.sh")
    code, _, err = runtime.run_output(hb.bundle)
    assert code == 0, err
    line = hb.log.read_text().split()
    # the container's hostname, and /hooks is the rootfs's directory
    assert line[:2] == ["startContainer", hb.bundle.config["hostname"]]
    assert "inside.sh" in line and "hook.sh" in line


# --- args, env, timeout ---------------------------------------------------------------------

def test_hook_args_include_argv0(runtime, make_bundle, tmp_path):
    """argv[0] is passed as given: busybox picks its applet by it."""
    if not os.path.exists("/bin/busybox"):
        pytest.skip("no host busybox")
    hb = HookBundle(make_bundle, tmp_path)
    hb.add("prestart", path="/bin/busybox",
           args=["sh", "-c", f'echo "prestart $0|$1|$2" >> {hb.log}', "zero", "one", "two words"])
    code, _, err = runtime.run_output(hb.bundle)
    assert code == 0, err
    assert hb.log.read_text() == "prestart zero|one|two words\n"


def test_hook_env_is_exactly_the_configured_env(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    script = write_script(tmp_path / "env.sh", f"env | sort > {hb.logdir}/env-$1\n")
    hb.add("prestart", path=script, args=[script, "pre"], env=ENV + ["FOO=bar baz", "EMPTY="])
    hb.add("poststop", path=script, args=[script, "post"], env=ENV + ["ONLY_POST=1"])
    env = dict(os.environ, LEAK_FROM_CALLER="yes")
    code = runtime("run", "--bundle", hb.bundle.path, runtime.new_id(), env=env).returncode
    assert code == 0
    pre = set((hb.logdir / "env-pre").read_text().splitlines())
    post = set((hb.logdir / "env-post").read_text().splitlines())
    # sh adds PWD (and may add SHLVL); nothing of the runtime's caller
    pre -= {line for line in pre if line.startswith(("PWD=", "SHLVL=", "_="))}
    post -= {line for line in post if line.startswith(("PWD=", "SHLVL=", "_="))}
    assert pre == set(ENV) | {"FOO=bar baz", "EMPTY="}
    assert post == set(ENV) | {"ONLY_POST=1"}


def test_hook_without_env_gets_none_of_the_callers(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    script = write_script(tmp_path / "env.sh", f"/usr/bin/env > {hb.logdir}/env\n")
    hb.bundle.config["hooks"] = {"prestart": [{"path": script}]}
    hb.bundle.write()
    env = dict(os.environ, LEAK_FROM_CALLER="yes")
    runtime("run", "--bundle", hb.bundle.path, runtime.new_id(), env=env)
    assert "LEAK_FROM_CALLER" not in (hb.logdir / "env").read_text()


def test_hook_timeout_kills_it_and_fails_create(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    marker = "7.31415"
    script = write_script(tmp_path / "slow.sh", f"exec sleep {marker}\n")
    hb.add("prestart", path=script, timeout=1)
    hb.add("poststop")
    cid = runtime.new_id()
    t0 = time.monotonic()
    proc = runtime("create", "--bundle", hb.bundle.path, cid, check=False)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0
    line = one_error_line(proc.stderr)
    assert "hooks.prestart[0]" in line and "timed out" in line
    assert elapsed < 4, elapsed
    sleepers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in open(f"/proc/{pid}/cmdline").read():
                sleepers.append(pid)
        except OSError:
            pass
    assert not sleepers, "the timed-out hook is still running"
    assert runtime("state", cid, check=False).returncode != 0


def test_hook_within_timeout_is_fine(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    hb.add("prestart", timeout=5)
    code, _, err = runtime.run_output(hb.bundle)
    assert code == 0 and hb.kinds() == ["prestart"], err


# --- failures -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_time_hook_fails_create(runtime, make_bundle, tmp_path, kind):
    hb = HookBundle(make_bundle, tmp_path, "sh", "-c", "echo program >> /hooklog/log")
    failing = write_script(tmp_path / "fail.sh", f'echo "{kind}-failed" >> {hb.log}; exit 3\n')
    for k in ("prestart", "createRuntime", "createContainer"):
        hb.add(k)
        if k == kind:
            hb.add(k, path=failing)
            hb.add(k)  # after the failing one: must not run
    hb.add("startContainer")
    hb.add("poststop")
    cid = runtime.new_id()
    proc = runtime("create", "--bundle", hb.bundle.path, cid, check=False)
    assert proc.returncode != 0
    line = one_error_line(proc.stderr)
    assert f"hooks.{kind}[1]" in line and ("status 3" in line or "exit" in line), line
    kinds = hb.kinds()
    assert f"{kind}-failed" in kinds
    after = kinds[kinds.index(f"{kind}-failed") + 1:]
    assert kind not in after and "startContainer" not in after and "program" not in kinds
    assert runtime("state", cid, check=False).returncode != 0, "no container is left"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_time_hook_runs_poststop(runtime, make_bundle, tmp_path, kind):
    """runtime.md: a failing create-time hook stops the container and the lifecycle continues
    at delete, whose poststop hooks run."""
    hb = HookBundle(make_bundle, tmp_path)
    hb.add(kind, path=write_script(tmp_path / "fail.sh", "exit 1\n"))
    hb.add("poststop")
    proc = runtime("create", "--bundle", hb.bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0
    assert hb.kinds() == ["poststop"]


def test_missing_hook_program_fails_naming_it(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    hb.add("createRuntime", path=str(tmp_path / "no-such-hook"))
    proc = runtime("create", "--bundle", hb.bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0
    assert "hooks.createRuntime[0]" in proc.stderr and "Traceback" not in proc.stderr


def test_hook_killed_by_signal_fails_create(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    hb.add("prestart", path=write_script(tmp_path / "sig.sh", "kill -KILL $$\n"))
    proc = runtime("create", "--bundle", hb.bundle.path, runtime.new_id(), check=False)
    assert proc.returncode != 0
    line = one_error_line(proc.stderr)
    assert "hooks.prestart[0]" in line and "signal 9" in line


def _start_fails_at(runtime, hb, label):
    """create, then a start that fails with one error line naming ``label``; the
    container ends up stopped. Returns its id."""
    cid = runtime.new_id()
    runtime("create", "--bundle", hb.bundle.path, cid)
    proc = runtime("start", cid, check=False)
    assert proc.returncode != 0
    assert label in one_error_line(proc.stderr)
    wait_stopped(runtime, cid)
    return cid


def test_failing_start_container_hook_fails_start(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path, "sh", "-c", "echo program >> /hooklog/log")
    write_script(hb.bundle.rootfs / "hooks/fail.sh", "exit 4\n")
    hb.add("startContainer", path="/hooks/fail.sh")
    hb.add("poststart")
    hb.add("poststop")
    cid = _start_fails_at(runtime, hb, "hooks.startContainer[0]")
    assert "program" not in hb.kinds() and "poststart" not in hb.kinds()
    runtime("delete", cid)
    assert hb.kinds() == ["poststop"]


def test_failing_poststart_hook_stops_the_container(runtime, make_bundle, tmp_path):
    """runtime.md (1.1+): a failing poststart hook is an error that stops the container."""
    hb = HookBundle(make_bundle, tmp_path, "sleep", "30")
    hb.add("poststart", path=write_script(tmp_path / "fail.sh", "exit 5\n"))
    hb.add("poststop")
    cid = _start_fails_at(runtime, hb, "hooks.poststart[0]")
    runtime("delete", cid)
    assert hb.kinds() == ["poststop"]


def test_failing_poststop_hook_only_warns(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path)
    hb.add("poststop", path=write_script(tmp_path / "fail.sh", "exit 6\n"))
    hb.add("poststop")  # still runs
    cid = create_and_start(runtime, hb.bundle)
    wait_stopped(runtime, cid)
    proc = runtime("delete", cid, check=False)
    assert proc.returncode == 0, proc.stderr
    line = one_error_line(proc.stderr)
    assert "warning" in line and "hooks.poststop[0]" in line
    assert hb.kinds() == ["poststop"]
    assert runtime("state", cid, check=False).returncode != 0, "deleted despite the hook"


def test_delete_force_runs_poststop(runtime, make_bundle, tmp_path):
    hb = HookBundle(make_bundle, tmp_path, "sleep", "30")
    hb.add("poststop")
    cid = create_and_start(runtime, hb.bundle)
    runtime("delete", "--force", cid)
    (entry,) = hb.entries()
    assert entry[0] == "poststop" and entry[1]["id"] == cid and entry[1]["status"] == "stopped"
