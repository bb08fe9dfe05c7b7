"""Where errors and warnings go: stderr, and with --log the file engines read back
(JSON lines with level, msg, time under --log-format json, like runc's logrus)."""

import sys
import time

_log_path = None
_json = False
_debug = False


def configure(path=None, fmt="text", debug=False):
    global _log_path, _json, _debug
    _log_path, _json, _debug = path, fmt == "json", debug


def _emit(level, msg):
    if _log_path:
        if _json:
            import json

            line = json.dumps({"level": level, "msg": msg, "time": timestamp()})
        else:
            line = f'time="{timestamp()}" level={level} msg="{msg}"'
        try:
            with open(_log_path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def timestamp():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def error(msg):
    """The one line a failed command leaves: on stderr, and in the log file (a line break
    in it, from a value the user gave or a hook's output, is written as \\n)."""
    msg = msg.replace("\r", "\\r").replace("\n", "\\n")
    _emit("error", msg)
    sys.stderr.write(f"ociruntime: {msg}\n")


def internal_error(exc):
    """An exception nothing turned into an OCIError: one line, as any error; with --debug
    its traceback goes to the log file too (traceback is imported only then)."""
    error(f"internal error: {type(exc).__name__}: {exc}")
    if _debug and _log_path:
        import traceback

        _emit("debug", "".join(traceback.format_exception(exc)))


def warn(msg):
    _emit("warning", msg)
    sys.stderr.write(f"ociruntime: warning: {msg}\n")


def debug(msg):
    if _debug:
        _emit("debug", msg)
        sys.stderr.write(f"ociruntime: debug: {msg}\n")
