/* Build and load the process's seccomp filter with libseccomp. */
#define _GNU_SOURCE
#include <errno.h>
#include <seccomp.h>
#include <string.h>

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

static scmp_filter_ctx prepared;

void oci_prepare_seccomp(const struct oci_seccomp *s)
{
    scmp_filter_ctx ctx;
    int i, rc;

    if (!s->enabled)
        return;
    ctx = seccomp_init(s->default_action);
    if (!ctx)
        oci_fail(0, "linux.seccomp: seccomp_init failed");
    /* libseccomp sets no_new_privs by default; that is process.noNewPrivileges' call. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0)
        oci_fail(0, "linux.seccomp: clear SCMP_FLTATR_CTL_NNP");
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
    if (s->tsync && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) < 0)
        oci_fail(0, "linux.seccomp.flags: SECCOMP_FILTER_FLAG_TSYNC is not supported");
    if (s->log && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1) < 0)
        oci_fail(0, "linux.seccomp.flags: SECCOMP_FILTER_FLAG_LOG is not supported");
    if (s->spec_allow && seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1) < 0)
        oci_fail(0, "linux.seccomp.flags: SECCOMP_FILTER_FLAG_SPEC_ALLOW is not supported");
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
    prepared = ctx;
}

void oci_load_seccomp(void)
{
    int rc;

    if (!prepared)
        return;
    rc = seccomp_load(prepared);
    seccomp_release(prepared);
    prepared = NULL;
    if (rc < 0) {
        errno = -rc;
        oci_fail(1, "linux.seccomp: load the filter");
    }
}
