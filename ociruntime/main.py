"""The ``ociruntime`` entry point: a table of runc's commands and flags, a small
parser for it, and dispatch to one module per verb.

Every invocation pays for what it imports, so the hot verbs are parsed here with
nothing but the standard library; click (``cli.py``) is imported only to render
help and usage errors, built from the same table so the two can't disagree.
"""

import sys

from . import SPEC_VERSION, __version__, api
from .errors import OCIError

# Global options: flag -> (dest, takes a value, default)
GLOBAL = {
    "--root": ("root", True, None),  # /run/ociruntime; rootless: $XDG_RUNTIME_DIR/ociruntime (rootless.py)
    "--log": ("log", True, None),
    "--log-format": ("log_format", True, "text"),
    "--debug": ("debug", False, False),
    "--systemd-cgroup": ("systemd_cgroup", False, False),
    "--rootless": ("rootless", True, "auto"),
    "--criu": ("criu", True, "criu"),  # the CRIU binary checkpoint and restore run
}
# --rootless takes Go's strconv.ParseBool spellings, as runc's does, or "auto".
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")

_CREATE_OPTS = {
    "--bundle": ("bundle", True, "."), "-b": ("bundle", True, "."),
    "--pid-file": ("pid_file", True, None),
    "--console-socket": ("console_socket", True, None),
    "--no-pivot": ("no_pivot", False, False),
    "--no-new-keyring": ("no_new_keyring", False, False),
    "--preserve-fds": ("preserve_fds", "int", 0),
}

_UPDATE_OPTS = {
    "--resources": ("resources", True, None), "-r": ("resources", True, None),
    "--blkio-weight": ("blkio_weight", "int", None),
    "--pids-limit": ("pids_limit", "int", None),
    **{f"--{flag}": (flag.replace("-", "_"), True, None) for flag in (
        "cpu-period", "cpu-quota", "cpu-burst", "cpu-share", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus",
        "cpuset-mems", "cpu-idle", "memory", "memory-reservation", "memory-swap", "kernel-memory",
        "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema")},
}

# What checkpoint and restore share (runc's flags of both).
_CRIU_OPTS = {
    "--image-path": ("image_path", True, None),
    "--work-path": ("work_path", True, None),
    "--tcp-established": ("tcp_established", False, False),
    "--ext-unix-sk": ("ext_unix_sk", False, False),
    "--shell-job": ("shell_job", False, False),
    "--file-locks": ("file_locks", False, False),
    "--manage-cgroups-mode": ("manage_cgroups_mode", True, None),
    "--empty-ns": ("empty_ns", "list", ()),
    "--auto-dedup": ("auto_dedup", False, False),
    "--lazy-pages": ("lazy_pages", False, False),  # refused: see commands/checkpoint.py
}

# command -> (help, options, positionals (name, required)); a positional whose
# "required" is REST takes every argument after it verbatim (ps's own options).
REST = "rest"
COMMANDS = {
    "create": ("create a container", _CREATE_OPTS, [("container_id", True)]),
    "start": ("start the user program of a created container", {}, [("container_id", True)]),
    "run": ("create and start a container, wait for it and delete it", dict(
        _CREATE_OPTS, **{"--detach": ("detach", False, False), "-d": ("detach", False, False),
                         "--keep": ("keep", False, False), "--no-subreaper": ("no_subreaper", False, False)}),
        [("container_id", True)]),
    "exec": ("execute new process inside the container", {
        "--console-socket": ("console_socket", True, None),
        "--pid-file": ("pid_file", True, None),
        "--process": ("process", True, None), "-p": ("process", True, None),
        "--detach": ("detach", False, False), "-d": ("detach", False, False),
        "--tty": ("tty", False, False), "-t": ("tty", False, False),
        "--cwd": ("cwd", True, None),
        "--env": ("env", "list", ()), "-e": ("env", "list", ()),
        "--user": ("user", True, None), "-u": ("user", True, None),
        "--additional-gids": ("additional_gids", "list", ()), "-g": ("additional_gids", "list", ()),
        "--cap": ("caps", "list", ()), "-c": ("caps", "list", ()),
        "--no-new-privs": ("no_new_privs", False, False),
        "--apparmor": ("apparmor", True, None),
        "--process-label": ("process_label", True, None),
        "--preserve-fds": ("preserve_fds", "int", 0),
        "--ignore-paused": ("ignore_paused", False, False),
        "--cgroup": ("cgroup", "list", ()),
    }, [("container_id", True), ("command", REST)]),
    "state": ("output the state of a container", {}, [("container_id", True)]),
    "kill": ("send a signal to the container's init process", {
        "--all": ("all", False, False), "-a": ("all", False, False)},
        [("container_id", True), ("signal", False)]),
    "pause": ("suspend every process in the container", {}, [("container_id", True)]),
    "resume": ("resume every process of a paused container", {}, [("container_id", True)]),
    "delete": ("delete a container and what it holds", {
        "--force": ("force", False, False), "-f": ("force", False, False)}, [("container_id", True)]),
    "list": ("list containers", {
        "--format": ("fmt", True, "table"), "-f": ("fmt", True, "table"),
        "--quiet": ("quiet", False, False), "-q": ("quiet", False, False)}, []),
    "update": ("update container resource constraints", _UPDATE_OPTS, [("container_id", True)]),
    "events": ("display container events such as OOM notifications and resource usage statistics", {
        "--interval": ("interval", True, "5s"), "--stats": ("stats", False, False)}, [("container_id", True)]),
    "ps": ("display the processes running inside a container", {
        "--format": ("fmt", True, "table"), "-f": ("fmt", True, "table")},
        [("container_id", True), ("ps_args", REST)]),
    "spec": ("create a new specification file", {
        "--bundle": ("bundle", True, "."), "-b": ("bundle", True, "."),
        "--rootless": ("rootless", False, False)}, []),
    "features": ("show the enabled features", {}, []),
    "checkpoint": ("checkpoint a running container", dict(
        _CRIU_OPTS, **{"--parent-path": ("parent_path", True, None),
                       "--leave-running": ("leave_running", False, False),
                       "--pre-dump": ("pre_dump", False, False),
                       "--page-server": ("page_server", True, None),
                       "--status-fd": ("status_fd", "int", -1)}), [("container_id", True)]),
    "restore": ("restore a container from a previous checkpoint", dict(
        _CRIU_OPTS, **{"--bundle": ("bundle", True, "."), "-b": ("bundle", True, "."),
                       "--console-socket": ("console_socket", True, None),
                       "--pid-file": ("pid_file", True, None),
                       "--detach": ("detach", False, False), "-d": ("detach", False, False),
                       "--no-subreaper": ("no_subreaper", False, False),
                       "--no-pivot": ("no_pivot", False, False),
                       "--lsm-profile": ("lsm_profile", True, None),
                       "--lsm-mount-context": ("lsm_mount_context", True, None)}), [("container_id", True)]),
    "help": ("show a list of commands or help for one command", {}, [("topic", False)]),
}
ALIASES = {"h": "help"}


class UsageError(Exception):
    pass


def _take(argv, i, table, out):
    """Consume the option at argv[i] per ``table``; return the next index."""
    arg = argv[i]
    name, eq, value = arg.partition("=")
    dest, kind, _ = table[name]
    if kind is False:
        if eq:
            raise UsageError(f"option {name} takes no value")
        out[dest] = True
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            raise UsageError(f"option {name} needs a value")
        value = argv[i + 1]
        i += 1
    if kind == "int":
        if not (value.isascii() and value.removeprefix("-").isdigit()):  # not "--5", not "٥"
            raise UsageError(f"option {name}: {value!r} is not a number")
        value = int(value)
    if kind == "list":  # repeatable: each use adds one
        value = [*out[dest], value]
    out[dest] = value
    return i + 1


def parse(argv):
    """argv (without the program) -> (global options, command, command options)."""
    glob = {dest: default for dest, _, default in GLOBAL.values()}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name = argv[i].partition("=")[0]
        if name in ("--version", "-v"):
            return glob, "version", {}
        if name not in GLOBAL:
            raise UsageError(f"unknown global option {name}")
        i = _take(argv, i, GLOBAL, glob)
    if i >= len(argv):
        raise UsageError("no command given")
    command = ALIASES.get(argv[i], argv[i])
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}")
    _, table, positionals = COMMANDS[command]
    opts = {dest: default for dest, _, default in table.values()}
    rest = []
    verbatim_after = next((n for n, (_, req) in enumerate(positionals) if req == REST), None)
    i += 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or len(rest) == verbatim_after:
            rest.extend(argv[i + 1:] if arg == "--" else argv[i:])
            break
        if arg.startswith("-") and len(arg) > 1 and not arg[1:].isdigit():
            name = arg.partition("=")[0]
            if name not in table:
                raise UsageError(f"unknown option {name} for {command}")
            i = _take(argv, i, table, opts)
            continue
        rest.append(arg)
        i += 1
    if verbatim_after is not None:
        opts[positionals[verbatim_after][0]] = rest[verbatim_after:]
        rest, positionals = rest[:verbatim_after], positionals[:verbatim_after]
    if len(rest) > len(positionals):
        raise UsageError(f"{command}: too many arguments")
    for (dest, required), value in zip(positionals, rest + [None] * (len(positionals) - len(rest)), strict=True):
        if value is None and required:
            raise UsageError(f"{command}: missing {dest.replace('_', ' ')}")
        if value is not None:
            opts[dest] = value
    return glob, command, opts


def check_globals(glob, command):
    """Every global option is acted on or refused where runc acts on it, never parsed and
    dropped. --criu is checkpoint's and restore's; the other commands take it and leave it,
    as runc's do: engines pass it to every command (go-runc does when a CRIU path is configured)."""
    if glob["log_format"] not in ("text", "json"):
        raise OCIError(f"--log-format: invalid value {glob['log_format']!r}: use text or json")
    rootless = glob["rootless"]
    if rootless not in _TRUE + _FALSE + ("auto", ""):
        raise OCIError(f"--rootless: invalid value {rootless!r}: use true, false or auto")


def dispatch(glob, command, opts):
    """Run one command; returns the exit code."""
    check_globals(glob, command)
    root = glob["root"] or _default_root(command)
    if command == "help":
        from .cli import help_main

        return help_main(**opts)
    if command == "version":
        sys.stdout.write(f"ociruntime version {__version__}\ncommit: {_commit()}\nspec: {SPEC_VERSION}\n")
        return 0
    if command in ("create", "run", "exec"):
        from . import cgroups, exeseal

        exeseal.ensure_sealed()  # the launcher ran us sealed; a pip console script re-executes here
        cgroups.prime_migration()  # before the imports: the earlier, the better
        try:
            if command == "run":
                from .commands import run

                return run.main(root, systemd_cgroup=glob["systemd_cgroup"], rootless=_rootless(glob["rootless"]),
                                **opts)
            if command == "exec":
                from .commands import exec as exec_cmd

                return exec_cmd.main(root, **opts)
            api.create(root=root, systemd_cgroup=glob["systemd_cgroup"], rootless=_rootless(glob["rootless"]),
                       **opts)
        finally:
            cgroups.end_priming()
    # The verbs the API offers as they are: the command is the call.
    if command == "start":
        api.start(root=root, **opts)
    elif command == "kill":
        api.kill(root=root, **opts)
    elif command == "delete":
        api.delete(root=root, **opts)
    elif command == "pause":
        api.pause(root=root, **opts)
    elif command == "resume":
        api.resume(root=root, **opts)
    # The rest print, or take runc's flags: the command's main calls the verb the API calls.
    elif command == "state":
        from .commands import query

        query.state_main(root, **opts)
    elif command == "list":
        from .commands import query

        query.list_main(root, **opts)
    elif command == "update":
        from .commands import update

        update.main(root, **opts)
    elif command == "events":
        from .commands import events

        return events.main(root, **opts)
    elif command == "ps":
        from .commands import ps

        ps.main(root, **opts)
    elif command == "spec":
        from .commands import spec

        spec.main(**opts)
    elif command == "features":
        from .commands import features

        features.main()
    elif command == "checkpoint":
        from .commands import checkpoint

        checkpoint.checkpoint(root, criu_path=glob["criu"], **opts)
    elif command == "restore":
        from .commands import restore

        return restore.main(root, criu_path=glob["criu"], systemd_cgroup=glob["systemd_cgroup"], **opts)
    return 0


def _rootless(value):
    """--rootless as create takes it: True, False, or None for auto."""
    return True if value in _TRUE else False if value in _FALSE else None


def _default_root(command):
    """runc's: /run/ociruntime, or for an ordinary user $XDG_RUNTIME_DIR/ociruntime."""
    if command in ("help", "version", "spec", "features"):
        return None
    import posix

    if posix.geteuid() == 0 and b"XDG_RUNTIME_DIR" not in posix.environ:
        return api.DEFAULT_ROOT
    from .rootless import default_root

    return default_root()


def _commit():
    try:
        from ._build_info import COMMIT
    except ImportError:
        return "unknown"
    return COMMIT


def main(argv=None):
    """Run the command line; an exception nobody turned into an OCIError is still one
    line (a bug, or input nobody foresaw), never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    from . import log

    try:
        try:
            glob, command, opts = parse(argv)
        except UsageError as e:
            if any(a in ("-h", "--help") for a in argv) or not argv:
                from .cli import run_click

                return run_click(argv)
            from .cli import usage_error

            return usage_error(argv, str(e))
        log.configure(glob["log"], glob["log_format"], glob["debug"])
        return dispatch(glob, command, opts)
    except OCIError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output went away (`events ... | head`): end quietly, as a
        # program killed by SIGPIPE does (runc is).
        return 128 + 13
    except Exception as e:  # the last line of defence: a bug, still one line
        log.internal_error(e)
        return 1


def entry():
    """Console-script entry: exit with main()'s code.

    Every file the runtime writes is closed by then (``with`` blocks), and nothing is
    registered with atexit, so after flushing stdio the interpreter's teardown (about
    1.5 ms per command here) is skipped with _exit.
    """
    import posix

    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
    posix._exit(code)
