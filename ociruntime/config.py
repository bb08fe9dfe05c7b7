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
        return fastjson.loads(raw)
    except ValueError as e:
        raise OCIError(f"{label} {path}: not valid JSON ({e})") from None
