"""The one error type the runtime raises for anything a user can fix.

Every command turns an ``OCIError`` into one clear line (and a JSON log entry
when ``--log-format json``) and a non-zero exit; anything else is a bug.
"""


class OCIError(Exception):
    """A failure the user can act on; ``str()`` is the line we print."""


class ConfigError(OCIError):
    """config.json is unreadable, invalid against the schema or unsupported.

    ``path`` is the JSON path of the offending field (``linux.namespaces[2].type``)
    or ``""`` for the whole document.
    """

    def __init__(self, path, message):
        self.path = path
        self.message = message
        where = path if path else "config.json"
        super().__init__(f"{where}: {message}")


class HookError(OCIError):
    """A prestart, createRuntime or createContainer hook failed: runtime.md says stop
    the container, destroy it and still run the poststop hooks."""
