/* The init's filesystem steps: mounts, device nodes, links, pivot_root, and
 * the masking that follows it. Every target is resolved inside the root. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "util.h"

#define PROPAGATION_FLAGS (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE)
#define OVERFLOW_ID 65534 /* the kernel's default overflowuid and overflowgid */

/* Flags a bind remount must keep when the kernel locked them on the source
 * (always so in a user namespace). */
static unsigned long locked_flags(const char *path)
{
    static const struct { unsigned long st, ms; } map[] = {
        {ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC}, {ST_NOATIME, MS_NOATIME},
        {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME}, {ST_RDONLY, MS_RDONLY},
    };
    struct statvfs sv;
    unsigned long f = 0;
    size_t i;

    if (statvfs(path, &sv) < 0)
        return 0;
    for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (sv.f_flag & map[i].st)
            f |= map[i].ms;
    return f;
}

static int remount_bind(const char *path, unsigned long flags)
{
    unsigned long base = MS_BIND | MS_REMOUNT | flags;
    if (mount(NULL, path, NULL, base, NULL) == 0)
        return 0;
    if (errno != EPERM)
        return -1;
    return mount(NULL, path, NULL, base | (locked_flags(path) & ~MS_RDONLY), NULL);
}

static int open_target(int rootfd, const struct oci_step *s, int create)
{
    /* proc and sysfs are refused on a symlink (the CVE-2019-19921 class). */
    int strict = s->fstype && (!strcmp(s->fstype, "proc") || !strcmp(s->fstype, "sysfs"));
    int fd = oci_open_in_root(rootfd, s->dst, create, strict);
    if (fd < 0)
        oci_fail(1, "%s: %s", s->label, s->dst);
    return fd;
}

/* Inside /proc only these may be covered (what lxcfs binds; runc's list). */
static const char *const proc_coverable[] = {
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo", "/proc/sys/kernel/ns_last_pid", "/proc/sys/crypto/fips_enabled",
};

/* runc's checkProcMount, on where the destination really resolved (a link in the rootfs
 * may lead there): a mount over procfs would redirect what is done through /proc later —
 * the masks and sysctls go through /proc/self/fd and /proc/sys (the CVE-2019-16884 and
 * CVE-2025-52881 class). /proc itself takes only a procfs, or a bind of one. */
static void check_destination(int rootfd, int fd, const struct oci_step *s)
{
    char root[4096], dst[4096], buf[32];
    ssize_t rn = readlink(oci_fdpath(rootfd, buf), root, sizeof(root) - 1);
    ssize_t dn = readlink(oci_fdpath(fd, buf), dst, sizeof(dst) - 1);
    const char *rel;
    struct statfs sf;
    size_t i;

    if (rn <= 0 || dn <= 0)
        oci_fail(1, "%s: read back where %s resolved", s->label, s->dst);
    root[rn] = dst[dn] = '\0';
    if (rn == 1)
        rn = 0; /* the root is "/" */
    if (strncmp(dst, root, rn) || (dst[rn] != '/' && dst[rn] != '\0'))
        oci_fail(0, "%s: %s resolved to %s, outside the rootfs %s", s->label, s->dst, dst, root);
    rel = dst[rn] ? dst + rn : "/";
    if (strncmp(rel, "/proc", 5) || (rel[5] != '/' && rel[5] != '\0'))
        return;
    if (!rel[5]) {
        if (s->fstype && !strcmp(s->fstype, "proc"))
            return;
        if ((s->flags & MS_BIND) && statfs(s->src, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC)
            return;
        oci_fail(0, "%s: %s is /proc in the container: only a procfs may be mounted there", s->label, s->dst);
    }
    for (i = 0; i < sizeof(proc_coverable) / sizeof(proc_coverable[0]); i++)
        if (!strcmp(rel, proc_coverable[i]))
            return;
    oci_fail(0, "%s: %s resolved to %s in the container, inside /proc: refused", s->label, s->dst, rel);
}

/* tmpcopyup: the tree under a directory, read through fds only (a symlink is copied as
 * one, never followed), made again in the new tmpfs. */
struct copy {
    const struct oci_step *s;
    char path[4096];            /* the entry being copied, below s->dst: for errors */
    char link[4096];            /* a symlink's target (here, not in the recursion's frames) */
    char data[65536];
};

__attribute__((noreturn))
static void copy_fail(struct copy *c, const char *what)
{
    oci_fail(1, "%s: tmpcopyup: %s %s%s", c->s->label, what, c->s->dst, c->path);
}

/* Give dirfd/name (name "": dirfd itself) st's times and, as `what` (OCI_COPYUP_*) says,
 * its owner, group and mode; the mode after the owner, whose change clears set-id bits. */
static void copy_attrs(struct copy *c, int dirfd, const char *name, const struct stat *st, unsigned what)
{
    struct timespec times[2] = {st->st_atim, st->st_mtim};
    mode_t mode = st->st_mode & 07777;

    if (fchownat(dirfd, name, what & OCI_COPYUP_UID ? st->st_uid : (uid_t)-1,
                 what & OCI_COPYUP_GID ? st->st_gid : (gid_t)-1, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) < 0)
        copy_fail(c, "chown");
    if ((what & OCI_COPYUP_MODE) && !S_ISLNK(st->st_mode) &&
        (*name ? fchmodat(dirfd, name, mode, 0) : fchmod(dirfd, mode)) < 0)
        copy_fail(c, "chmod");
    if ((*name ? utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW) : futimens(dirfd, times)) < 0)
        copy_fail(c, "set the times of");
}

static void copy_file(struct copy *c, int in, int out)
{
    ssize_t n, w, off;

    while ((n = read(in, c->data, sizeof(c->data))) > 0)
        for (off = 0; off < n; off += w)
            if ((w = write(out, c->data + off, n - off)) < 0)
                copy_fail(c, "write");
    if (n < 0)
        copy_fail(c, "read");
}

static void copy_tree(struct copy *c, int from, int to);

static void copy_entry(struct copy *c, int from, int to, const char *name)
{
    const unsigned all = OCI_COPYUP_MODE | OCI_COPYUP_UID | OCI_COPYUP_GID;
    char buf[32];
    struct stat st;
    ssize_t n;
    int at, in, out;

    if (fstatat(from, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        copy_fail(c, "stat");
    if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
        /* Opened as what is there now, never through a link, and read only once it is
         * known to be a directory or a file (not a device or FIFO swapped in). */
        at = openat(from, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (at < 0 || fstat(at, &st) < 0)
            copy_fail(c, "open");
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            errno = ESTALE; /* replaced since it was listed */
            copy_fail(c, "copy");
        }
        in = S_ISDIR(st.st_mode) ? openat(at, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                 : open(oci_fdpath(at, buf), O_RDONLY | O_NOCTTY | O_CLOEXEC);
        if (in < 0)
            copy_fail(c, "open");
        close(at);
        if (S_ISDIR(st.st_mode)) {
            if (mkdirat(to, name, 0700) < 0)
                copy_fail(c, "mkdir");
            out = openat(to, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (out < 0)
                copy_fail(c, "open the copy of");
            copy_tree(c, in, out);
        } else {
            out = openat(to, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (out < 0)
                copy_fail(c, "create");
            copy_file(c, in, out);
            close(in);
        }
        copy_attrs(c, out, "", &st, all);
        close(out);
        return;
    }
    if (S_ISLNK(st.st_mode)) {
        n = readlinkat(from, name, c->link, sizeof(c->link));
        if (n < 0 || n == sizeof(c->link))
            copy_fail(c, "readlink");
        c->link[n] = '\0';
        if (symlinkat(c->link, to, name) < 0)
            copy_fail(c, "symlink");
    } else if (mknodat(to, name, st.st_mode, st.st_rdev) < 0) { /* devices, FIFOs, sockets */
        copy_fail(c, "mknod");
    }
    copy_attrs(c, to, name, &st, all);
}

/* Copy what directory `from` holds into directory `to`; closes `from`. */
static void copy_tree(struct copy *c, int from, int to)
{
    DIR *d = fdopendir(from);
    size_t len = strlen(c->path);
    struct dirent *e;

    if (!d)
        copy_fail(c, "read");
    while ((errno = 0, e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (len + 1 + strlen(e->d_name) >= sizeof(c->path)) {
            errno = ENAMETOOLONG;
            copy_fail(c, "copy");
        }
        c->path[len] = '/';
        strcpy(c->path + len + 1, e->d_name);
        copy_entry(c, dirfd(d), to, e->d_name);
        c->path[len] = '\0';
    }
    if (errno)
        copy_fail(c, "read");
    closedir(d);
}

/* dst as it is before the tmpfs covers it, a directory to read; -1 if it isn't there yet
 * (made by the mount: nothing to copy). */
static int copyup_source(int rootfd, const struct oci_step *s)
{
    int fd = oci_open_in_root(rootfd, s->dst, 0, 0), dir;

    if (fd < 0 && errno == ENOENT)
        return -1;
    if (fd < 0)
        oci_fail(1, "%s: %s", s->label, s->dst);
    dir = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        oci_fail(1, "%s: tmpcopyup: open %s", s->label, s->dst);
    close(fd);
    return dir;
}

/* Copy what `from` (closed here) held into the tmpfs just mounted on s->dst, whose root
 * takes from's times and what s->copyup says; then make it read-only if asked. */
static void copy_up(int rootfd, const struct oci_step *s, int from)
{
    static struct copy c;
    char buf[32];
    struct stat st, tst;
    struct statfs sf;
    int fd = open_target(rootfd, s, 0);
    int to = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    unsigned what = s->copyup;

    c.s = s;
    c.path[0] = '\0';
    if (to < 0 || fstat(from, &st) < 0 || fstat(to, &tst) < 0 || fstatfs(to, &sf) < 0)
        copy_fail(&c, "open");
    if (sf.f_type != TMPFS_MAGIC || tst.st_dev == st.st_dev)
        oci_fail(0, "%s: tmpcopyup: %s is not the tmpfs just mounted", s->label, s->dst);
    /* An id a user namespace doesn't map reads as the overflow id: the root keeps the
     * mount's owner (the container's root), as with runc, rather than become nobody's. */
    if (st.st_uid == OVERFLOW_ID)
        what &= ~OCI_COPYUP_UID;
    if (st.st_gid == OVERFLOW_ID)
        what &= ~OCI_COPYUP_GID;
    copy_tree(&c, from, to);
    copy_attrs(&c, to, "", &st, what);
    close(to);
    if ((s->flags & MS_RDONLY) && remount_bind(oci_fdpath(fd, buf), s->flags & ~MS_REMOUNT) < 0)
        oci_fail(1, "%s: remount %s read-only", s->label, s->dst);
    close(fd);
}

static void do_mount(int rootfd, const struct oci_step *s)
{
    char buf[32];
    int from = s->copyup ? copyup_source(rootfd, s) : -1; /* before the tmpfs covers it */
    int fd = open_target(rootfd, s, S_ISREG(s->mode) ? 2 : 1);
    unsigned long flags = s->flags;
    struct stat st, fst;

    check_destination(rootfd, fd, s);
    if (from >= 0) {
        /* The directory read is the one mounted on; the copy goes in read-write. */
        if (fstat(from, &st) < 0 || fstat(fd, &fst) < 0 || st.st_dev != fst.st_dev || st.st_ino != fst.st_ino)
            oci_fail(0, "%s: tmpcopyup: %s was replaced while it was opened", s->label, s->dst);
        flags &= ~MS_RDONLY;
    }

    if (mount(s->src, oci_fdpath(fd, buf), s->fstype, flags, s->data) < 0)
        oci_fail(1, "%s: mount %s on %s", s->label, s->src ? s->src : s->fstype, s->dst);
    close(fd);
    if (from >= 0)
        copy_up(rootfd, s, from);
    /* The fd pointed under the new mount; what follows needs the mount itself. */
    if ((flags & MS_BIND) && (flags & ~(MS_BIND | MS_REC | MS_SILENT))) {
        fd = open_target(rootfd, s, 0);
        if (remount_bind(oci_fdpath(fd, buf), flags & ~(MS_BIND | MS_REC | MS_REMOUNT)) < 0)
            oci_fail(1, "%s: remount %s", s->label, s->dst);
        close(fd);
    }
    if (s->propagation) {
        fd = open_target(rootfd, s, 0);
        if (mount(NULL, oci_fdpath(fd, buf), NULL, s->propagation, NULL) < 0)
            oci_fail(1, "%s: set propagation of %s", s->label, s->dst);
        close(fd);
    }
}

/* The directory that will hold s->dst, made if missing, and dst's last component. */
static int open_parent(int rootfd, const struct oci_step *s, const char **base)
{
    char parent[4096];
    const char *slash = strrchr(s->dst, '/');
    size_t n = slash ? (size_t)(slash - s->dst) : 0;
    int pfd;

    if (n >= sizeof(parent))
        oci_fail(0, "%s: path too long", s->label);
    memcpy(parent, s->dst, n);
    parent[n] = '\0';
    pfd = oci_open_in_root(rootfd, n ? parent : "/", 1, 0);
    if (pfd < 0)
        oci_fail(1, "%s: %s", s->label, n ? parent : "/");
    *base = slash ? slash + 1 : s->dst;
    return pfd;
}

static void do_mknod(int rootfd, const struct oci_step *s, int userns)
{
    const char *base;
    struct stat st;
    int fd, pfd;

    if (userns) {
        /* mknod is not allowed in a user namespace: bind the host's node. */
        struct oci_step bind = *s;
        bind.fstype = NULL;
        bind.flags = MS_BIND;
        bind.mode = S_IFREG;
        bind.propagation = 0;
        do_mount(rootfd, &bind);
        return;
    }
    pfd = open_parent(rootfd, s, &base);
    if (mknodat(pfd, base, s->mode, s->dev) < 0 && errno != EEXIST)
        oci_fail(1, "%s: mknod %s", s->label, s->dst);
    /* What is there now, not what it links to: a node the rootfs already had passes only
     * if it is that device, so the owner never goes through a planted link. */
    fd = openat(pfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0)
        oci_fail(1, "%s: %s", s->label, s->dst);
    if ((st.st_mode & S_IFMT) != (s->mode & S_IFMT) || (!S_ISFIFO(st.st_mode) && st.st_rdev != s->dev))
        oci_fail(0, "%s: %s is in the rootfs already, and is not that device", s->label, s->dst);
    if (fchownat(fd, "", s->uid, s->gid, AT_EMPTY_PATH) < 0)
        oci_fail(1, "%s: chown %s", s->label, s->dst);
    close(fd);
    close(pfd);
}

static void do_symlink(int rootfd, const struct oci_step *s)
{
    const char *base;
    int pfd = open_parent(rootfd, s, &base);

    if (symlinkat(s->src, pfd, base) < 0 && errno != EEXIST)
        oci_fail(1, "%s: symlink %s -> %s", s->label, s->dst, s->src);
    close(pfd);
}

/* pivot_root refuses a new root whose parent mount is shared: make the mount
 * holding the rootfs private (in our own mount namespace only). */
static void make_parent_private(const char *rootfs)
{
    char path[4096];
    char *slash;

    snprintf(path, sizeof(path), "%s", rootfs);
    for (;;) {
        if (mount(NULL, path[0] ? path : "/", NULL, MS_PRIVATE, NULL) == 0)
            return;
        if (errno != EINVAL || !path[0])
            oci_fail(1, "root.path: make the mount holding %s private", rootfs);
        slash = strrchr(path, '/');
        if (!slash)
            return;
        *slash = '\0';
    }
}

static void do_pivot(const char *rootfs, unsigned long how)
{
    int oldroot, newroot;

    if (how == OCI_PIVOT_CHROOT) {
        if (chdir(rootfs) < 0 || chroot(".") < 0 || chdir("/") < 0)
            oci_fail(1, "root.path: chroot %s", rootfs);
        return;
    }
    if (how == OCI_PIVOT_MOVE) {
        if (chdir(rootfs) < 0 || mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
            oci_fail(1, "root.path: move %s to / and chroot", rootfs);
        return;
    }
    oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0 || newroot < 0)
        oci_fail(1, "root.path: open %s", rootfs);
    /* pivot_root(".", ".") stacks the old root under the new one; detach it. */
    if (fchdir(newroot) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        oci_fail(1, "root.path: pivot_root into %s", rootfs);
    if (fchdir(oldroot) < 0 || mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        oci_fail(1, "root.path: detach the old root");
    close(oldroot);
    close(newroot);
}

/* runc's reOpenDevNull: stdio that is the null device (conmon gives a detached
 * container the host's /dev/null as stdin) is reopened from the container's own
 * /dev/null once inside the new root. Else it stays a file on a mount outside the
 * container's mount namespace, which CRIU cannot dump ("Can't lookup mount=N for fd=0
 * path=/dev/null": podman container checkpoint). The container's /dev/null must be the
 * null device itself; a container without one keeps what it has. */
static void reopen_dev_null(void)
{
    struct stat null_st, st;
    int fd, nullfd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (nullfd < 0)
        return;
    if (fstat(nullfd, &null_st) < 0 || !S_ISCHR(null_st.st_mode) || null_st.st_rdev != makedev(1, 3) ||
        fcntl(nullfd, F_SETFL, 0) < 0) {
        close(nullfd);
        return;
    }
    for (fd = 0; fd < 3; fd++)
        if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == null_st.st_rdev && dup3(nullfd, fd, 0) < 0)
            oci_fail(1, "stdio: reopen /dev/null as fd %d in the container", fd);
    close(nullfd);
}

/* The spec's /dev/console: the pty's slave (our stdin by now) bound onto it, the
 * file made if the rootfs has none, as runc does. */
static void mount_console(int rootfd, const struct oci_step *s)
{
    char buf[32];
    struct oci_step bind = *s;

    bind.src = oci_fdpath(0, buf);
    bind.fstype = NULL;
    bind.flags = MS_BIND;
    bind.mode = S_IFREG;
    bind.propagation = 0;
    do_mount(rootfd, &bind);
}

static int open_existing(int rootfd, const struct oci_step *s)
{
    int fd = oci_open_in_root(rootfd, s->dst, 0, 0);
    if (fd < 0 && errno != ENOENT)
        oci_fail(1, "%s: %s", s->label, s->dst);
    return fd;
}

static void do_readonly(int rootfd, const struct oci_step *s)
{
    char buf[32];
    int fd = open_existing(rootfd, s);

    if (fd < 0)
        return;
    if (mount(oci_fdpath(fd, buf), oci_fdpath(fd, buf), NULL, MS_BIND | MS_REC, NULL) < 0)
        oci_fail(1, "%s: bind %s", s->label, s->dst);
    close(fd);
    fd = open_existing(rootfd, s);
    /* Keep nosuid, nodev, noexec and the atime flags it had: only add read-only. */
    if (fd < 0 || remount_bind(oci_fdpath(fd, buf), MS_RDONLY | locked_flags(oci_fdpath(fd, buf))) < 0)
        oci_fail(1, "%s: remount %s read-only", s->label, s->dst);
    close(fd);
}

static void do_mask(int rootfd, const struct oci_step *s)
{
    char buf[32], nbuf[32];
    struct stat st;
    int fd = open_existing(rootfd, s), nullfd;

    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0)
        oci_fail(1, "%s: stat %s", s->label, s->dst);
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", oci_fdpath(fd, buf), "tmpfs", MS_RDONLY, s->data) < 0)
            oci_fail(1, "%s: mask %s", s->label, s->dst);
    } else {
        /* Only a real /dev/null may cover a file (the CVE-2025-31133 class). */
        nullfd = oci_open_in_root(rootfd, "/dev/null", 0, 1);
        if (nullfd < 0 || fstat(nullfd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
            oci_fail(0, "%s: /dev/null in the container is not the null device", s->label);
        if (mount(oci_fdpath(nullfd, nbuf), oci_fdpath(fd, buf), NULL, MS_BIND, NULL) < 0)
            oci_fail(1, "%s: mask %s", s->label, s->dst);
        close(nullfd);
    }
    close(fd);
}

static void write_file(int rootfd, const struct oci_step *s)
{
    struct open_how how = {
        .flags = O_WRONLY | O_CLOEXEC | O_TRUNC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS,
    };
    int fd = syscall(SYS_openat2, rootfd, s->dst, &how, sizeof(how));
    size_t len = strlen(s->src);

    if (fd < 0 || write(fd, s->src, len) != (ssize_t)len)
        oci_fail(1, "%s: write %s", s->label, s->dst);
    close(fd);
}

void oci_run_steps(const struct oci_plan *plan, void (*hooks_point)(const struct oci_plan *),
                   void (*wait_parent)(const struct oci_plan *, char type),
                   void (*console)(const struct oci_plan *))
{
    int rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC), i;

    if (rootfd < 0)
        oci_fail(1, "root.path: %s", plan->rootfs);
    for (i = 0; i < plan->nsteps; i++) {
        const struct oci_step *s = &plan->steps[i];

        switch (s->op) {
        case OCI_STEP_PROPAGATION:
            if (mount(NULL, s->dst, NULL, s->propagation, NULL) < 0)
                oci_fail(1, "%s: set propagation of %s", s->label, s->dst);
            break;
        case OCI_STEP_BIND_ROOTFS:
            make_parent_private(plan->rootfs);
            if (mount(plan->rootfs, plan->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
                oci_fail(1, "root.path: bind %s", plan->rootfs);
            close(rootfd);
            rootfd = open(plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (rootfd < 0)
                oci_fail(1, "root.path: %s", plan->rootfs);
            break;
        case OCI_STEP_MOUNT:
            do_mount(rootfd, s);
            break;
        case OCI_STEP_MKNOD:
            do_mknod(rootfd, s, plan->userns);
            break;
        case OCI_STEP_SYMLINK:
            do_symlink(rootfd, s);
            break;
        case OCI_STEP_MKDIR: {
            int fd = oci_open_in_root(rootfd, s->dst, 1, 0);
            if (fd < 0)
                oci_fail(1, "%s: %s", s->label, s->dst);
            close(fd);
            break;
        }
        case OCI_STEP_HOOKS:
            hooks_point(plan);
            break;
        case OCI_STEP_WAIT_PARENT:
            wait_parent(plan, 'G');
            break;
        case OCI_STEP_UNSHARE_CGROUPNS:
            wait_parent(plan, 'C');
            if (unshare(CLONE_NEWCGROUP) < 0)
                oci_fail(1, "%s: unshare the cgroup namespace", s->label);
            break;
        case OCI_STEP_FILE_LABEL:
            oci_set_file_label(rootfd, s);
            break;
        case OCI_STEP_WAIT_JOINED:
            wait_parent(plan, 'C');
            break;
        case OCI_STEP_CONSOLE:
            console(plan);
            if (s->dst)
                mount_console(rootfd, s);
            break;
        case OCI_STEP_PIVOT:
            close(rootfd);
            do_pivot(plan->rootfs, s->flags);
            reopen_dev_null();
            rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (rootfd < 0)
                oci_fail(1, "open the new root");
            break;
        case OCI_STEP_SYSCTL:
            write_file(rootfd, s);
            break;
        case OCI_STEP_READONLY:
            do_readonly(rootfd, s);
            break;
        case OCI_STEP_MASK:
            do_mask(rootfd, s);
            break;
        case OCI_STEP_REMOUNT_ROOT:
            if (remount_bind("/", s->flags) < 0)
                oci_fail(1, "%s: remount /", s->label);
            break;
        case OCI_STEP_HOSTNAME:
            if (sethostname(s->src, strlen(s->src)) < 0)
                oci_fail(1, "%s: sethostname %s", s->label, s->src);
            break;
        case OCI_STEP_DOMAINNAME:
            if (setdomainname(s->src, strlen(s->src)) < 0)
                oci_fail(1, "%s: setdomainname %s", s->label, s->src);
            break;
        default:
            oci_fail(0, "unknown plan step %d", s->op);
        }
    }
    close(rootfd);
}
