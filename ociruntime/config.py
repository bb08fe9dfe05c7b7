"""Load a bundle's config.json and validate it before anything is created."""

from . import fastjson, pathnames
from .errors import ConfigError, OCIError


def load(bundle):
    """Return the validated config of ``bundle`` (an absolute path)."""
    path = pathnames.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError("", f"{path}: no such file (is {bundle} an OCI bundle?)") from None
    except OSError as e:
        raise ConfigError("", f"{path}: {e.strerror}") from None
    try:
        config = fastjson.loads(raw)
    except ValueError as e:
        raise ConfigError("", f"{path}: invalid JSON: {e}") from None
    where = nul_byte(config, raw)
    if where:
        raise ConfigError(*where)
    from .validate import validate_config

    validate_config(config)
    return config


def read_json(path, label):
    """A JSON file given on the command line (``-``: stdin), for ``label`` (the flag) in errors."""
    try:
        if path == "-":
            import sys

            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError as e:
        raise OCIError(f"{label} {path}: {e.strerror}") from None
    try:
        loaded = fastjson.loads(raw)
    except ValueError as e:
        raise OCIError(f"{label} {path}: not valid JSON ({e})") from None
    where = nul_byte(loaded, raw)
    if where:
        raise OCIError(f"{label} {path}: {where[0] or 'the document'}: {where[1]}")
    return loaded


def nul_byte(doc, raw=None):
    """``(path, message)`` for the first string or key of ``doc`` holding a NUL, else None.

    A string reaches C cut at its first NUL (cffi's char *), so "/proc/\\0kcore" would
    mask all of /proc: such a value is refused wherever it is. JSON can carry a NUL only
    as the escape ``\\u0000`` (a raw one is invalid JSON), so when ``doc`` was parsed from
    ``raw`` without that text there is nothing to walk (a dict from an API caller is walked).
    """
    if raw is not None and b"\\u0000" not in raw:
        return None
    from .validate import format_path

    todo = [([], doc)]
    while todo:
        path, node = todo.pop()
        if path and type(path[-1]) is str and "\0" in path[-1]:
            return format_path(path), "its key contains a NUL byte"
        if type(node) is str and "\0" in node:
            return format_path(path), "contains a NUL byte"
        members = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
        todo.extend(reversed([([*path, key], value) for key, value in members]))
    return None
