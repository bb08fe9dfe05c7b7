/* LSM settings of the container's process: the AppArmor profile and the SELinux label
 * it takes on at exec, written to the init's own /proc/self/attr files (what
 * libapparmor's aa_change_onexec and go-selinux's SetExecLabel do), and SELinux file
 * labels. Python decided the values and checked that the host has the LSM
 * (ociruntime/linux/lsm.py); this file only writes them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

static int apparmor_fd = -1, selinux_fd = -1;
static const char *apparmor_path = "/proc/self/attr/apparmor/exec";

/* /proc/<path> for writing, from the /proc the init has before its steps: it must be
 * procfs, and nothing may be mounted over anything on the way (RESOLVE_NO_XDEV), so no
 * file of someone else's can stand in for the attr file (the CVE-2019-16884 class).
 * Returns the fd, or -1 with errno. */
static int open_attr(const char *path, const char *field)
{
    struct open_how how = {.flags = O_WRONLY | O_CLOEXEC, .resolve = RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS};
    struct statfs sf;
    int proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC), fd, err;

    if (proc < 0)
        oci_fail(1, "%s: open /proc", field);
    if (fstatfs(proc, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC)
        oci_fail(0, "%s: /proc is not a procfs mount", field);
    fd = syscall(SYS_openat2, proc, path, &how, sizeof(how));
    err = errno;
    close(proc);
    errno = err;
    return fd;
}

static void write_attr(int fd, const char *value, const char *field, const char *what)
{
    size_t len = strlen(value);

    if (write(fd, value, len) != (ssize_t)len)
        oci_fail(1, "%s: %s", field, what);
}

void oci_lsm_prepare(const struct oci_plan *plan)
{
    const struct oci_process *p = &plan->process;

    if (p->apparmor_exec) {
        apparmor_fd = open_attr("self/attr/apparmor/exec", "process.apparmorProfile");
        if (apparmor_fd < 0 && errno == ENOENT) { /* kernels before 5.8: the shared file */
            apparmor_path = "/proc/self/attr/exec";
            apparmor_fd = open_attr("self/attr/exec", "process.apparmorProfile");
        }
        if (apparmor_fd < 0)
            oci_fail(1, "process.apparmorProfile: open %s", apparmor_path);
    }
    if (p->selinux_exec) {
        selinux_fd = open_attr("self/attr/exec", "process.selinuxLabel");
        if (selinux_fd < 0)
            oci_fail(1, "process.selinuxLabel: open /proc/self/attr/exec");
        if (!plan->no_new_keyring) {
            /* The session keyring the init joins next gets the process's label (runc's
             * SetKeyLabel); exec resets keycreate. */
            int fd = open_attr("self/attr/keycreate", "process.selinuxLabel");
            if (fd < 0)
                oci_fail(1, "process.selinuxLabel: open /proc/self/attr/keycreate");
            write_attr(fd, p->selinux_exec, "process.selinuxLabel", "label the session keyring (attr/keycreate)");
            close(fd);
        }
    }
}

void oci_lsm_apply(const struct oci_process *p)
{
    if (apparmor_fd >= 0) {
        /* "exec <profile>": ENOENT says no such profile is loaded */
        size_t len = strlen(p->apparmor_exec);
        if (write(apparmor_fd, p->apparmor_exec, len) != (ssize_t)len)
            oci_fail(1, "process.apparmorProfile: apply profile %s (write %s)", p->apparmor_exec + 5, apparmor_path);
        close(apparmor_fd);
        apparmor_fd = -1;
    }
    if (selinux_fd >= 0) {
        write_attr(selinux_fd, p->selinux_exec, "process.selinuxLabel", "set the exec label (attr/exec)");
        close(selinux_fd);
        selinux_fd = -1;
    }
}

void oci_set_file_label(int rootfd, const struct oci_step *s)
{
    char buf[32];
    int fd = oci_open_in_root(rootfd, s->dst, 0, 0);

    if (fd < 0)
        oci_fail(1, "%s: %s", s->label, s->dst);
    if (setxattr(oci_fdpath(fd, buf), "security.selinux", s->src, strlen(s->src), 0) < 0)
        oci_fail(1, "linux.mountLabel: label %s (%s)", s->dst, s->label);
    close(fd);
}
