/*
 * A read-only handle on the interpreter, to exec the runtime from (the CVE-2019-5736
 * class). A container init is cloned from the runtime, so until it execs the
 * container's program its /proc/<pid>/exe is the runtime's own executable: a
 * container process that opens it (or a program "#!/proc/self/exe") gets the host's
 * binary, and could write it once nothing runs it. Exec'd from this handle instead,
 * /proc/self/exe is a file nobody can write:
 *   - an internal overlayfs mount (fsopen/fsmount, never attached anywhere) whose
 *     only layers are the binary's directory and an empty one: overlayfs without an
 *     upper layer refuses every write (EROFS), and unlike a read-only bind mount it
 *     can't be remounted writable. No copy: a few syscalls. runc's exeseal does this.
 *   - else a sealed memfd copy (F_SEAL_WRITE|SHRINK|GROW|SEAL), ~7 MB copied.
 * native/launcher.c (static) links this file to make the handle; the C helper links
 * it for oci_exe_sealed(), which Python checks before it clones an init.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exeseal.h"

#define FSCONFIG_SET_STRING 1
#define FSCONFIG_CMD_CREATE 6
#define MOUNT_ATTR_RDONLY 0x1
#define MOUNT_ATTR_NOSUID 0x2
#define MOUNT_ATTR_NODEV 0x4
#ifndef MFD_EXEC
#define MFD_EXEC 0x10
#endif

static int overlay_handle(const char *dir, const char *name, const char *empty_dir)
{
    char lower[2 * PATH_MAX + 2];
    int ctx, mnt, fd = -1;

    if (strpbrk(dir, ":\\,") || strpbrk(empty_dir, ":\\,"))
        return -1; /* would need overlayfs escaping: take the memfd way */
    if (snprintf(lower, sizeof(lower), "%s:%s", dir, empty_dir) >= (int)sizeof(lower))
        return -1;
    ctx = syscall(SYS_fsopen, "overlay", 1 /* FSOPEN_CLOEXEC */);
    if (ctx < 0)
        return -1;
    /* The empty directory must exist and be ours; mkdir races are harmless. */
    mkdir(empty_dir, 0700);
    if (syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, "lowerdir", lower, 0) == 0) {
        syscall(SYS_fsconfig, ctx, FSCONFIG_SET_STRING, "xino", "off", 0); /* spares dmesg noise */
        if (syscall(SYS_fsconfig, ctx, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0) {
            mnt = syscall(SYS_fsmount, ctx, 1 /* FSMOUNT_CLOEXEC */,
                          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
            if (mnt >= 0) {
                fd = openat(mnt, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                close(mnt);
            }
        }
    }
    close(ctx);
    return fd;
}

static int memfd_handle(const char *path)
{
    int src = open(path, O_RDONLY | O_CLOEXEC), fd;
    struct stat st;
    off_t off = 0;

    if (src < 0)
        return -1;
    fd = memfd_create("ociruntime-python", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL) /* kernels before 6.3 know no MFD_EXEC */
        fd = memfd_create("ociruntime-python", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || fstat(src, &st) < 0)
        goto fail;
    while (off < st.st_size)
        if (sendfile(fd, src, &off, st.st_size - off) <= 0)
            goto fail;
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        goto fail;
    close(src);
    return fd;
fail:
    close(src);
    if (fd >= 0)
        close(fd);
    return -1;
}

int oci_sealed_exe(const char *path, const char *empty_dir)
{
    char real[PATH_MAX], *slash;
    int fd;

    if (!realpath(path, real) || !(slash = strrchr(real, '/')))
        return -1;
    *slash = '\0';
    fd = overlay_handle(real[0] ? real : "/", slash + 1, empty_dir);
    *slash = '/';
    return fd >= 0 ? fd : memfd_handle(real);
}

int oci_exe_sealed(void)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), seals, sealed = 0;
    struct statvfs sv;

    if (fd < 0)
        return 0;
    if (fstatvfs(fd, &sv) == 0 && (sv.f_flag & ST_RDONLY))
        sealed = 1;
    else if ((seals = fcntl(fd, F_GET_SEALS)) >= 0 && (seals & F_SEAL_WRITE))
        sealed = 1;
    close(fd);
    return sealed;
}
