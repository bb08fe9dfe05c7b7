"""state and list: what runc reports about containers."""

import sys

from .. import fastjson, state
from ..errors import OCIError
from ..log import warn
from ..state import StateError


def runc_state(container):
    """runc's state JSON: the spec's state plus rootfs, created and owner (pid 0 once stopped)."""
    data = container.data
    status = container.status()
    out = state.spec_state(data, status)
    out["pid"] = data.get("pid", 0) if status != "stopped" else 0  # none yet while "creating"
    out.update(rootfs=data["rootfs"], created=data["created"], owner=data.get("owner", ""))
    return out


def container_state(root, container_id):
    """runc's state of one container (needs no lock: a status is derived, never stored)."""
    with state.Container.load(root, container_id, lock=False) as container:
        return runc_state(container)


def all_states(root):
    """runc's state of every container under ``root``, by id; one whose record can't be
    trusted is left out with a warning, one deleted meanwhile silently."""
    rows = []
    for cid in state.list_ids(root):
        try:
            rows.append(container_state(root, cid))
        except StateError as e:
            warn(str(e))
        except OCIError:
            continue
    return rows


def state_main(root, container_id):
    sys.stdout.write(fastjson.dumps(container_state(root, container_id), indent="  ") + "\n")


def list_main(root, fmt="table", quiet=False):
    if fmt not in ("table", "json"):
        raise OCIError(f"invalid format option {fmt!r}: use table or json")
    rows = all_states(root)
    if quiet:
        sys.stdout.write("".join(r["id"] + "\n" for r in rows))
    elif fmt == "json":
        keys = ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations")
        sys.stdout.write(fastjson.dumps([{k: r[k] for k in keys if k in r} for r in rows]) + "\n")
    else:
        table = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        table += [(r["id"], str(r["pid"]), r["status"], r["bundle"], r["created"], r["owner"]) for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        for row in table:
            sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
