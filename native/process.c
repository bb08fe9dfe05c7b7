/* The init's own attributes, set on itself before exec in runc's order (after
 * no_new_privs, before seccomp and dropping privileges): process.scheduler,
 * process.ioPriority, linux.personality, linux.memoryPolicy. Python checked the
 * values (ociruntime/linux/procattrs.py); what the kernel still refuses here
 * fails create with the field's name. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* The kernel's struct sched_attr, SCHED_ATTR_SIZE_VER1 (with the utilization clamps,
 * left 0, as runc does); our own so no header version matters. */
struct oci_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};

#define SCHED_FIFO_ 1
#define SCHED_RR_ 2
#define SCHED_DEADLINE_ 6
#define IOPRIO_WHO_PGRP_ 2

/* Why sched_setattr refused, when the errno alone wouldn't say. */
static const char *sched_hint(unsigned int policy, int err)
{
    if (err == EPERM && (policy == SCHED_FIFO_ || policy == SCHED_RR_))
        return " (a realtime policy needs CAP_SYS_NICE in the host's user namespace or an RLIMIT_RTPRIO that "
               "allows the priority, and where the kernel has RT group scheduling, realtime CPU time in the "
               "container's cpu cgroup: linux.resources.cpu.realtimeRuntime)";
    if (err == EPERM && policy == SCHED_DEADLINE_)
        return " (SCHED_DEADLINE needs the process's CPUs to be all of its scheduling domain: no cpuset "
               "or affinity that narrows them)";
    if (err == EBUSY && policy == SCHED_DEADLINE_)
        return " (the kernel's deadline admission control: not enough CPU bandwidth left for this runtime/period)";
    return "";
}

static void set_scheduler(const struct oci_sched *s)
{
    struct oci_sched_attr attr;
    int err;

    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.policy = s->policy;
    attr.flags = s->flags;
    attr.nice = s->nice;
    attr.priority = s->priority;
    attr.runtime = s->runtime;
    attr.deadline = s->deadline;
    attr.period = s->period;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0)
        return;
    err = errno;
    oci_fail(0, "process.scheduler: sched_setattr(%s): %s%s", s->label, strerror(err), sched_hint(s->policy, err));
}

static void set_mempolicy_(const struct oci_mempolicy *m)
{
    /* maxnode counts one more than the mask's bits (the kernel decrements it first) */
    unsigned long maxnode = m->nwords ? (unsigned long)m->nwords * 64 + 1 : 0;

    if (syscall(SYS_set_mempolicy, m->mode, m->nwords ? m->nodes : NULL, maxnode) == 0)
        return;
    if (errno == ENOSYS)
        oci_fail(0, "linux.memoryPolicy: this kernel has no NUMA memory policies (set_mempolicy: %s)",
                 strerror(ENOSYS));
    oci_fail(1, "linux.memoryPolicy: set_mempolicy(%s)", m->label);
}

void oci_set_process_attrs(const struct oci_process *p)
{
    if (p->sched.enabled)
        set_scheduler(&p->sched);
    /* The process group, as runc does: the init leads its own (setsid), so for now it is
     * the init alone, and whatever it starts inherits the priority. */
    if (p->ioprio && syscall(SYS_ioprio_set, IOPRIO_WHO_PGRP_, 0, p->ioprio) < 0)
        oci_fail(1, "process.ioPriority: ioprio_set(class %d, priority %d)", p->ioprio >> 13, p->ioprio & 7);
    if (p->set_personality && syscall(SYS_personality, p->persona) < 0)
        oci_fail(1, "linux.personality: personality(%#lx)", p->persona);
    if (p->mempolicy.enabled)
        set_mempolicy_(&p->mempolicy);
}
