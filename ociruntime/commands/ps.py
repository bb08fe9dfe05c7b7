"""ps: the container's processes — as a JSON array of pids, or as the host's ``ps``
table (``ps -ef`` unless other ps options follow the id) cut to the container's rows."""

import subprocess
import sys

from .. import cgroups, fastjson, state
from ..errors import OCIError


def container_pids(root, container_id):
    """The pids (host's numbers) in the container's cgroups, sorted."""
    with state.Container.load(root, container_id, lock=False) as container:
        if not container.cgroup_paths:  # created rootless, without cgroups
            from ..rootless import namespace_pids

            return sorted(namespace_pids(container.data))
        return sorted(cgroups.pids(container.cgroup_paths))


def main(root, container_id, fmt="table", ps_args=()):
    if fmt not in ("table", "json"):
        raise OCIError(f"invalid format option {fmt!r}: use table or json")
    pids = container_pids(root, container_id)
    if fmt == "json":
        sys.stdout.write(fastjson.dumps(pids or None) + "\n")  # runc encodes no pids as null
        return
    args = list(ps_args) or ["-ef"]
    try:
        proc = subprocess.run(["ps", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise OCIError("ps: the host has no ps command (procps)") from None
    if proc.returncode != 0:
        raise OCIError(f"ps {' '.join(args)}: {(proc.stdout + proc.stderr).strip()}")
    header, *rows = proc.stdout.splitlines()
    titles = header.split()
    if "PID" not in titles:
        raise OCIError("couldn't find PID field in ps output")
    column = titles.index("PID")
    wanted = set(pids)
    out = [header] + [row for row in rows if row.split() and int(row.split()[column]) in wanted]
    sys.stdout.write("\n".join(out) + "\n")
