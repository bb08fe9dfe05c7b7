"""events: the container's resource usage as runc prints it — one "stats" event with
--stats, else one every --interval, plus an "oom" event whenever the kernel's OOM
killer takes one of its processes — until the container stops."""

import sys
import time

from .. import fastjson, state
from ..errors import OCIError
from ..stats import collect, oom_kills

_OOM_POLL = 0.05  # seconds between looks at the OOM kill counter

# Go's duration units in seconds, ordered so that no unit is tried after a prefix of it
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text):
    """A Go duration, as runc's --interval takes it: "5s", "100ms", "1m30s"."""
    rest, total = text.strip(), 0.0
    if not rest:
        raise OCIError("--interval: empty duration")
    while rest:
        digits = len(rest) - len(rest.lstrip("0123456789."))
        unit = next((u for u in _DURATION_UNITS if rest[digits:].startswith(u)), None)
        if not digits or unit is None:
            raise OCIError(f"--interval: invalid duration {text!r} (e.g. 5s, 500ms, 1m)")
        try:
            total += float(rest[:digits]) * _DURATION_UNITS[unit]
        except ValueError:
            raise OCIError(f"--interval: invalid duration {text!r}") from None
        rest = rest[digits + len(unit):]
    if total <= 0:
        raise OCIError("--interval: the duration must be greater than 0")
    return total


def _emit(kind, container_id, data=None):
    event = {"type": kind, "id": container_id}
    if data is not None:
        event["data"] = data
    sys.stdout.write(fastjson.dumps(event) + "\n")
    sys.stdout.flush()


def _running(container):
    if container.status() == "stopped":
        raise OCIError(f"container with id {container.id} is not running")
    return container.cgroup_paths


def container_stats(root, container_id):
    """The container's resource usage now: the "data" of runc's stats event."""
    with state.Container.load(root, container_id, lock=False) as container:
        return collect(_running(container))


def main(root, container_id, interval="5s", stats=False):
    period = parse_duration(interval)
    if stats:
        _emit("stats", container_id, container_stats(root, container_id))
        return 0
    with state.Container.load(root, container_id, lock=False) as container:
        paths = _running(container)
        seen_ooms = oom_kills(paths)
        next_stats = time.monotonic() + period
        while True:
            time.sleep(max(0.0, min(_OOM_POLL, next_stats - time.monotonic())))
            # Stopped is read before the count: an OOM kill that stops it is still counted.
            stopped = container.status() == "stopped"
            ooms = oom_kills(paths)
            for _ in range(ooms - seen_ooms):
                _emit("oom", container_id)
            seen_ooms = ooms
            if stopped:
                return 0
            if time.monotonic() >= next_stats:
                _emit("stats", container_id, collect(paths))
                next_stats += period
