"""Hooks run from the runtime's own namespaces (prestart, createRuntime, poststart,
poststop), with the failure semantics runtime.md gives each."""

from . import fastjson
from .errors import HookError
from .log import warn


def entries(config, name):
    """The hooks of one kind as the plain dicts the C helper runs."""
    out = []
    for i, h in enumerate((config.get("hooks") or {}).get(name) or []):
        out.append({"path": h["path"], "args": h.get("args") or [h["path"]], "env": h.get("env") or [],
                    "timeout": h.get("timeout", 0), "label": f"hooks.{name}[{i}]"})
    return out


def run(hooks, state, fatal):
    """Run ``hooks`` in order with ``state`` on stdin. A failure raises when ``fatal``
    (prestart, createRuntime), else it is logged as a warning and the rest still run."""
    if not hooks:
        return
    from .native import run_hook

    state_json = fastjson.dumps(state)
    for h in hooks:
        err = run_hook(h, state_json)
        if err:
            if fatal:
                raise HookError(f"{h['label']}: {err}")
            warn(f"{h['label']}: {err}")
