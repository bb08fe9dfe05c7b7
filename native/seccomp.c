/* Build the process's seccomp filter with libseccomp and load it with seccomp(2). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

static void add_rule(scmp_filter_ctx ctx, const struct oci_seccomp_rule *r, int nr,
                     unsigned int nargs, const struct oci_seccomp_arg *args)
{
    struct scmp_arg_cmp cmp[6];
    unsigned int i;
    int rc;

    for (i = 0; i < nargs && i < 6; i++) {
        cmp[i].arg = args[i].index;
        cmp[i].op = args[i].op;
        cmp[i].datum_a = args[i].value;
        cmp[i].datum_b = args[i].value_two;
    }
    rc = seccomp_rule_add_array(ctx, r->action, nr, nargs, cmp);
    if (rc < 0) {
        errno = -rc;
        oci_fail(1, "linux.seccomp: add a rule for %s", r->name);
    }
}

static int repeated_index(const struct oci_seccomp_rule *r)
{
    int i, j;
    for (i = 0; i < r->nargs; i++)
        for (j = i + 1; j < r->nargs; j++)
            if (r->args[i].index == r->args[j].index)
                return 1;
    return 0;
}

static struct sock_fprog prepared;
static unsigned int prepared_flags;

int oci_seccomp_flags_supported(unsigned int flags)
{
    /* A known flag set gets EFAULT for the NULL program; an unknown one EINVAL. */
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, NULL) < 0 && errno == EFAULT;
}

/* libseccomp's BPF for ctx, into `prepared` (seccomp_export_bpf writes to an fd). */
static void export_program(scmp_filter_ctx ctx)
{
    int fd = memfd_create("seccomp-bpf", MFD_CLOEXEC), rc;
    off_t len;

    if (fd < 0)
        oci_fail(1, "linux.seccomp: memfd_create");
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) {
        errno = -rc;
        oci_fail(1, "linux.seccomp: export the filter");
    }
    len = lseek(fd, 0, SEEK_END);
    prepared.filter = malloc(len > 0 ? len : 1);
    if (len <= 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS ||
        !prepared.filter || pread(fd, prepared.filter, len, 0) != len)
        oci_fail(0, "linux.seccomp: the filter has %lld bytes of BPF (at most %d instructions fit)", (long long)len,
                 BPF_MAXINSNS);
    prepared.len = len / sizeof(struct sock_filter);
    close(fd);
}

void oci_prepare_seccomp(const struct oci_seccomp *s)
{
    scmp_filter_ctx ctx;
    int i, rc;

    if (!s->enabled)
        return;
    if (!oci_seccomp_flags_supported(s->flags))
        oci_fail(0, "linux.seccomp.flags: this kernel's seccomp doesn't take the flags 0x%x", s->flags);
    ctx = seccomp_init(s->default_action);
    if (!ctx)
        oci_fail(0, "linux.seccomp: seccomp_init failed");
    for (i = 0; i < s->narchs; i++) {
        uint32_t arch = seccomp_arch_resolve_name(s->archs[i]);
        if (arch == 0)
            oci_fail(0, "linux.seccomp.architectures[%d]: unknown architecture %s", i, s->archs[i]);
        rc = seccomp_arch_add(ctx, arch);
        if (rc < 0 && rc != -EEXIST) {
            errno = -rc;
            oci_fail(1, "linux.seccomp.architectures[%d]: %s", i, s->archs[i]);
        }
    }
    for (i = 0; i < s->nrules; i++) {
        const struct oci_seccomp_rule *r = &s->rules[i];
        int nr = seccomp_syscall_resolve_name(r->name), j;

        if (nr == __NR_SCMP_ERROR)
            continue; /* unknown to libseccomp: ignored (runc's rule) */
        if (r->nargs > 6)
            oci_fail(0, "linux.seccomp: %s: more than 6 argument conditions", r->name);
        if (repeated_index(r)) {
            /* libseccomp can't test one argument twice in a rule: one rule per condition. */
            for (j = 0; j < r->nargs; j++)
                add_rule(ctx, r, nr, 1, &r->args[j]);
        } else {
            add_rule(ctx, r, nr, r->nargs, r->args);
        }
    }
    export_program(ctx);
    seccomp_release(ctx);
    prepared_flags = s->flags;
}

int oci_load_seccomp(void)
{
    int rc;

    if (!prepared.filter)
        return -1;
    rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, prepared_flags, &prepared);
    if (rc < 0)
        oci_fail(1, "linux.seccomp: load the filter");
    free(prepared.filter);
    prepared.filter = NULL;
    return (prepared_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) ? rc : -1;
}
