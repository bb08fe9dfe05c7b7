"""checkpoint: save a running container's processes to CRIU images (runc's verb, its flags
and semantics): afterwards the container is gone, as runc leaves it, unless
--leave-running or --pre-dump. restore.py brings it back from the images."""

import posix
import stat

from .. import criu, pathnames, state
from ..errors import OCIError

DESCRIPTORS = "descriptors.json"  # runc's name: what the init's fds 0, 1, 2 were, for restore's inherit_fd


def image_paths(image_path, parent_path):
    """runc's rules: the images go to --image-path (default ./checkpoint), made if
    missing; --parent-path is relative to it and must be a directory."""
    image_path = pathnames.abspath(image_path or "checkpoint")
    pathnames.makedirs(image_path, 0o700)
    if parent_path:
        if parent_path.startswith("/"):
            raise OCIError("--parent-path must be relative (to --image-path)")
        if not pathnames.isdir(pathnames.join(image_path, parent_path)):
            raise OCIError(f"invalid --parent-path: {pathnames.join(image_path, parent_path)}: not a directory")
    return image_path


def refuse_unsupported(lazy_pages=False, page_server=None, status_fd=None):
    """The options of runc's that this runtime doesn't drive: refused, never ignored."""
    if lazy_pages:
        raise OCIError("--lazy-pages is not supported by this runtime (it needs criu's lazy-pages daemon "
                       "and a page server): restore from complete images")
    if page_server:
        raise OCIError("--page-server is not supported by this runtime: write the images locally")
    if status_fd not in (None, -1):
        raise OCIError("--status-fd goes with --lazy-pages, which this runtime doesn't support")


def empty_ns_mask(names):
    """--empty-ns: runc's mask, the network namespace always in it (nobody restores its devices)."""
    mask = criu.CLONE_NEWNET
    for name in names:
        if name not in criu.EMPTY_NS:
            raise OCIError(f"--empty-ns: namespace {name!r} is not supported (only network)")
        mask |= criu.EMPTY_NS[name]
    return mask


def cgroups_mode(mode):
    if not mode:
        return None
    if mode not in criu.CGROUP_MODES:
        raise OCIError(f"--manage-cgroups-mode: invalid value {mode!r}: use soft, full or strict")
    return criu.CGROUP_MODES[mode]


def open_work_dir(work_path):
    """--work-path (CRIU's logs and work files), made if missing: (its path, an fd on it),
    or (None, None) without one (CRIU then works in the image directory)."""
    if not work_path:
        return None, None
    work_dir = pathnames.abspath(work_path)
    pathnames.makedirs(work_dir, 0o700)
    return work_dir, open_dir(work_dir, "--work-path")


def open_dir(path, what):
    try:
        return posix.open(path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError as e:
        raise OCIError(f"{what} {path}: {e.strerror}") from None


def checkpoint(root, container_id, image_path=None, work_path=None, parent_path=None, leave_running=False,
               tcp_established=False, ext_unix_sk=False, shell_job=False, file_locks=False, pre_dump=False,
               manage_cgroups_mode=None, empty_ns=(), auto_dedup=False, lazy_pages=False, page_server=None,
               status_fd=None, criu_path="criu"):
    refuse_unsupported(lazy_pages, page_server, status_fd)
    mode = cgroups_mode(manage_cgroups_mode)
    mask = empty_ns_mask(empty_ns)
    with state.Container.load(root, container_id) as container:
        status = container.status()
        if status not in ("running", "paused"):
            raise OCIError(f"container {container_id!r} cannot be checkpointed in {status} state")
        data = container.data
        facts = data.get("checkpoint")
        if facts is None:
            raise OCIError(f"container {container_id!r} was created by an older ociruntime, which kept no "
                           "checkpoint facts: recreate it to checkpoint it")
        if posix.geteuid() != 0:
            raise OCIError("checkpoint needs root (CRIU does): rootless containers can't be checkpointed")
        images = image_paths(image_path, parent_path)
        pid = data["pid"]
        fds = [open_dir(images, "--image-path")]
        try:
            work_dir, work_fd = open_work_dir(work_path)
            if work_fd is not None:
                fds.append(work_fd)
            opts = criu.dump_options(
                pid=pid, rootfs=data["rootfs"], images_fd=fds[0], work_fd=work_fd,
                facts=facts, masked_files=masked_files(pid, facts["masked"]),
                freezer=data.get("freezer"), annotations=data.get("annotations") or {},
                leave_running=leave_running, tcp_established=tcp_established, ext_unix_sk=ext_unix_sk,
                shell_job=shell_job, file_locks=file_locks, empty_ns=mask, auto_dedup=auto_dedup,
                cgroups_mode=mode, parent=parent_path, pre_dump=pre_dump)
            if not pre_dump:
                _write_descriptors(pid, images)
            log = pathnames.join(work_dir or images, "dump.log")
            with criu.Session(criu_path, "checkpoint") as session:
                session.call(criu.request(criu.PRE_DUMP if pre_dump else criu.DUMP, opts), log=log)
        finally:
            for fd in fds:
                posix.close(fd)
        if not (leave_running or pre_dump):
            from .delete import destroy

            destroy(container)  # criu ended its processes; as runc, the container goes with them


def masked_files(pid, masked):
    """The masked paths that are files (a directory is masked by a tmpfs, which CRIU saves
    itself): each a bind of /dev/null, which CRIU is told about, as runc does."""
    out = []
    for path in masked:
        try:
            st = posix.stat(f"/proc/{pid}/root{path}")
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            out.append(path)
    return out


def _write_descriptors(pid, images):
    """What the init's 0, 1 and 2 are ("pipe:[1234]", a path): restore hands the pipes
    among them to the restored process as the new stdio (criu's inherit_fd)."""
    from .. import fastjson

    names = []
    for fd in range(3):
        try:
            names.append(posix.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            names.append("")
    with open(pathnames.join(images, DESCRIPTORS), "w") as f:
        f.write(fastjson.dumps(names))
