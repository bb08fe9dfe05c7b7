/* cgroup v2 device control: load the device filter Python compiled
 * (ociruntime/linux/devicefilter.py) and make it the one attached to a cgroup,
 * as runc does on create and on update. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "oci_native.h"

#define MAX_PROGS 64 /* the kernel's BPF_CGROUP_MAX_PROGS: a query never holds more */

static int sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

static int load(const unsigned char *insns, int insn_bytes, char *log, unsigned int loglen)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (unsigned long)insns;
    attr.insn_cnt = insn_bytes / sizeof(struct bpf_insn);
    attr.license = (unsigned long)"Apache";
    if (log) {
        attr.log_buf = (unsigned long)log;
        attr.log_size = loglen;
        attr.log_level = 1;
    }
    /* The verifier gives up with EAGAIN when a signal is pending (a shim's SIGCHLD):
     * load again, as libbpf and runc's cilium/ebpf do. */
    for (int attempt = 1;; attempt++) {
        int fd = sys_bpf(BPF_PROG_LOAD, &attr);
        if (fd >= 0 || errno != EAGAIN || attempt == 5)
            return fd;
    }
}

/* err = "load the eBPF program: <strerror>: verifier: <its log's last lines>".
 * The verifier writes a log only when asked: load again with one. The reason is
 * at its end, before a line of statistics (kernels >= 6.4 keep the end when the
 * buffer is short). */
static void load_error(const unsigned char *insns, int insn_bytes, int saved, char *err, int errlen)
{
    char log[8192] = "", *last;
    size_t n, used, need, i;
    int fd = load(insns, insn_bytes, log, sizeof(log));

    if (fd >= 0)
        close(fd);
    n = strnlen(log, sizeof(log));
    while (n > 0 && log[n - 1] == '\n')
        n--;
    last = memrchr(log, '\n', n);
    if (last && strncmp(last + 1, "processed ", 10) == 0)
        n = last - log;
    used = snprintf(err, errlen, "load the eBPF program: %s%s", strerror(saved), n ? ": verifier: " : "");
    /* As much of the end as fits, on one line: each newline becomes " | ". */
    for (i = n, need = used + 1; i > 0; i--) {
        need += log[i - 1] == '\n' ? 3 : 1;
        if (need > (size_t)errlen)
            break;
    }
    for (; i < n; i++) {
        if (log[i] == '\n')
            used += sprintf(err + used, " | ");
        else
            err[used++] = log[i];
    }
    if (used < (size_t)errlen)
        err[used] = '\0';
}

/* Kernels before 5.11 charge programs to RLIMIT_MEMLOCK, summed over all of
 * root's (runc#2167): lift the limit for the load, then put it back, so that no
 * child of ours (the container init) inherits the change. */
static int load_program(const unsigned char *insns, int insn_bytes, char *err, int errlen)
{
    struct rlimit old, unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    int lifted = getrlimit(RLIMIT_MEMLOCK, &old) == 0 && setrlimit(RLIMIT_MEMLOCK, &unlimited) == 0;
    int fd = load(insns, insn_bytes, NULL, 0);

    if (fd < 0)
        load_error(insns, insn_bytes, errno, err, errlen);
    if (lifted)
        setrlimit(RLIMIT_MEMLOCK, &old);
    return fd;
}

/* The ids of the device programs attached to the cgroup itself (not inherited). */
static int query(int dirfd, __u32 *ids, __u32 *count)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = dirfd;
    attr.query.attach_type = BPF_CGROUP_DEVICE;
    attr.query.prog_ids = (unsigned long)ids;
    attr.query.prog_cnt = MAX_PROGS;
    if (sys_bpf(BPF_PROG_QUERY, &attr) < 0)
        return -1;
    *count = attr.query.prog_cnt;
    return 0;
}

/* BPF_PROG_ATTACH or BPF_PROG_DETACH the program progfd on the cgroup dirfd. */
static int cgroup_prog(int cmd, int dirfd, int progfd)
{
    union bpf_attr attr;

    memset(&attr, 0, sizeof(attr));
    attr.target_fd = dirfd;
    attr.attach_bpf_fd = progfd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = cmd == BPF_PROG_ATTACH ? BPF_F_ALLOW_MULTI : 0;
    return sys_bpf(cmd, &attr);
}

/* Detach the program `id` from the cgroup. One we may not open (an LSM policy
 * guarding, say, systemd's) stays: it can only refuse more, never allow. */
static int detach(int dirfd, __u32 id)
{
    union bpf_attr attr;
    int fd, rc;

    memset(&attr, 0, sizeof(attr));
    attr.prog_id = id;
    fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
    if (fd < 0)
        return errno == ENOENT || errno == EPERM || errno == EACCES ? 0 : -1;
    rc = cgroup_prog(BPF_PROG_DETACH, dirfd, fd);
    if (rc < 0 && errno == ENOENT)
        rc = 0; /* someone detached it meanwhile */
    close(fd);
    return rc;
}

int oci_attach_device_filter(const char *cgroup_dir, const unsigned char *insns, int insn_bytes,
                             char *err, int errlen)
{
    __u32 old[MAX_PROGS], nold = 0, i;
    int dirfd, progfd = -1, rc = -1;

    if (insn_bytes <= 0 || insn_bytes % sizeof(struct bpf_insn)) {
        snprintf(err, errlen, "load the eBPF program: %d bytes are not whole instructions", insn_bytes);
        return -1;
    }
    dirfd = open(cgroup_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (dirfd < 0) {
        snprintf(err, errlen, "open %s: %s", cgroup_dir, strerror(errno));
        return -1;
    }
    /* The new program goes on before the old ones come off: in between a request
     * must pass both (BPF_F_ALLOW_MULTI), so the switch never lets through what
     * either refuses. */
    if (query(dirfd, old, &nold) < 0) {
        snprintf(err, errlen, "query the device programs of %s: %s", cgroup_dir, strerror(errno));
        goto out;
    }
    progfd = load_program(insns, insn_bytes, err, errlen);
    if (progfd < 0)
        goto out;
    if (cgroup_prog(BPF_PROG_ATTACH, dirfd, progfd) < 0) {
        snprintf(err, errlen, "attach the eBPF program to %s: %s", cgroup_dir, strerror(errno));
        goto out;
    }
    for (i = 0; i < nold; i++) {
        if (detach(dirfd, old[i]) < 0) {
            snprintf(err, errlen, "detach the old eBPF program %u from %s: %s", old[i], cgroup_dir,
                     strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    if (progfd >= 0)
        close(progfd);
    close(dirfd);
    return rc;
}
