#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

int oci_report_fd = -1;
int oci_error_fd = -1;

void oci_fail(int errno_too, const char *fmt, ...)
{
    char msg[4096];
    int saved = errno, n;
    va_list ap;

    msg[0] = 'E';
    va_start(ap, fmt);
    n = vsnprintf(msg + 1, sizeof(msg) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if (n > (int)sizeof(msg) - 2)
        n = sizeof(msg) - 2;
    if (errno_too)
        n += snprintf(msg + 1 + n, sizeof(msg) - 1 - n, ": %s", strerror(saved));
    if (n > (int)sizeof(msg) - 2)
        n = sizeof(msg) - 2;
    if (oci_report_fd >= 0 && send(oci_report_fd, msg, n + 1, MSG_NOSIGNAL) >= 0)
        _exit(1);
    if (oci_error_fd >= 0) {
        ssize_t ignored = write(oci_error_fd, msg + 1, n); /* unread: stderr below still has it */
        (void)ignored;
    }
    dprintf(2, "ociruntime: %.*s\n", n, msg + 1);
    _exit(127);
}

const char *oci_fdpath(int fd, char buf[32])
{
    snprintf(buf, 32, "/proc/self/fd/%d", fd);
    return buf;
}

static int resolve(int rootfd, const char *path, int nosymlinks)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (nosymlinks ? RESOLVE_NO_SYMLINKS : 0),
    };
    return syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

int oci_open_in_root(int rootfd, const char *path, int create, int nosymlinks)
{
    char prefix[4096];
    size_t len = strlen(path), i;
    int fd = resolve(rootfd, path, nosymlinks);

    if (fd >= 0 || errno != ENOENT || !create)
        return fd;
    if (len >= sizeof(prefix)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* Walk the prefixes; make each missing one inside its resolved parent. */
    for (i = 1; i <= len; i++) {
        int last = (i == len), parent, rc;
        const char *base;

        if (!last && path[i] != '/')
            continue;
        if (path[i - 1] == '/')
            continue;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        fd = resolve(rootfd, prefix, nosymlinks);
        if (fd >= 0) {
            if (!last)
                close(fd);
            continue;
        }
        if (errno != ENOENT)
            return -1;
        base = strrchr(prefix, '/');
        if (base) {
            *(char *)base = '\0';
            parent = resolve(rootfd, prefix[0] ? prefix : "/", nosymlinks);
            base++;
        } else {
            parent = dup(rootfd);
            base = prefix;
        }
        if (parent < 0)
            return -1;
        /* O_PATH directory fds are valid dirfds for the *at() calls. */
        if (last && create == 2) {
            rc = openat(parent, base, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY | O_CLOEXEC, 0644);
            if (rc >= 0)
                close(rc);
            rc = rc < 0 ? -1 : 0;
        } else {
            rc = mkdirat(parent, base, 0755);
        }
        close(parent);
        if (rc < 0 && errno != EEXIST)
            return -1;
        memcpy(prefix, path, i);
        prefix[i] = '\0';
        fd = resolve(rootfd, prefix, nosymlinks);
        if (fd < 0)
            return -1;
        if (!last)
            close(fd);
    }
    return fd;
}

void oci_reset_signals(void)
{
    struct sigaction sa;
    sigset_t all;
    int sig;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL); /* fails harmlessly for SIGKILL, SIGSTOP and RT internals */
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
}

int oci_set_child_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

int oci_make_mountpoint(const char *root, const char *path, int file)
{
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC), fd, err;

    if (rootfd < 0)
        return -errno;
    fd = oci_open_in_root(rootfd, path, file ? 2 : 1, 0);
    err = fd < 0 ? -errno : 0;
    if (fd >= 0)
        close(fd);
    close(rootfd);
    return err;
}

int oci_detach_mount(const char *path)
{
    return umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 ? -errno : 0;
}

int oci_mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data) < 0 ? -errno : 0;
}

int oci_netns_socket(const char *ns_path, int domain, int type, int protocol)
{
    /* setns() moves only the calling thread; it comes back before returning. */
    int target = open(ns_path, O_RDONLY | O_CLOEXEC), own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = -1, err = 0;

    if (target < 0 || own < 0)
        err = errno;
    else if (setns(target, CLONE_NEWNET) < 0)
        err = errno;
    else {
        fd = socket(domain, type | SOCK_CLOEXEC, protocol);
        err = fd < 0 ? errno : 0;
        if (setns(own, CLONE_NEWNET) < 0)
            abort(); /* this thread would stay in the container's network namespace */
    }
    if (target >= 0)
        close(target);
    if (own >= 0)
        close(own);
    return err ? -err : fd;
}
