/*
 * The contract between ociruntime's Python side (which decides) and this C
 * helper (which does). Python fills a `struct oci_plan` through cffi; C only
 * reads it. Every string is NUL-terminated, every array carries its length,
 * every pointer stays owned and kept alive by Python until oci_spawn() returns.
 * After clone() the container init holds a copy-on-write snapshot of the plan
 * and touches no Python object again: from there on, only this file's code runs.
 *
 * The parent side of the protocol (what the Python caller does on sync_fd) is
 * described next to the message constants below.
 */
#ifndef OCI_NATIVE_H
#define OCI_NATIVE_H

/* Steps the init runs, in the order Python put them. Paths (`dst`) before
 * OCI_STEP_PIVOT are resolved inside the rootfs, never following a symlink out
 * of it; after it they are resolved inside the new root. */
#define OCI_STEP_MOUNT          1  /* mount src on dst (fstype, flags, data); create dst: dir, or file if mode == S_IFREG;
                                      a bind with extra flags is remounted; a tmpfs with `copyup` gets a copy
                                      of what dst held (OCI_COPYUP_*); then propagation */
#define OCI_STEP_MKNOD          2  /* mknod dst (mode incl. type, dev) + chown uid:gid; in a user
                                      namespace: bind-mount host path src instead */
#define OCI_STEP_SYMLINK        3  /* symlink(src, dst) unless dst exists */
#define OCI_STEP_HOOKS          4  /* tell the parent (prestart + createRuntime run there), wait for the
                                      state JSON, then run the plan's createContainer hooks */
#define OCI_STEP_PIVOT          5  /* enter the rootfs; flags: OCI_PIVOT_* */
#define OCI_STEP_SYSCTL         6  /* write src to dst (a /proc/sys path) */
#define OCI_STEP_READONLY       7  /* bind dst on itself and remount it read-only (missing: skipped) */
#define OCI_STEP_MASK           8  /* cover dst: /dev/null on a file, read-only empty tmpfs (data) on a dir */
#define OCI_STEP_REMOUNT_ROOT   9  /* remount / with flags (read-only root) */
#define OCI_STEP_HOSTNAME      10  /* sethostname(src) */
#define OCI_STEP_DOMAINNAME    11  /* setdomainname(src) */
#define OCI_STEP_PROPAGATION   12  /* mount(NULL, dst, NULL, propagation): "/" before PIVOT means the host root */
#define OCI_STEP_BIND_ROOTFS   13  /* bind the rootfs onto itself (recursive) so pivot_root can use it */
#define OCI_STEP_MKDIR         14  /* make dst (and its parents) a directory */
#define OCI_STEP_WAIT_PARENT   15  /* wait for 'G' here (see the protocol below) */
#define OCI_STEP_UNSHARE_CGROUPNS 16 /* wait for 'C' (the parent joined the cgroups), then unshare the
                                      cgroup namespace, rooted at the cgroup the init is now in */
#define OCI_STEP_FILE_LABEL    17  /* set dst's SELinux label (xattr security.selinux) to src: linux.mountLabel
                                      on an mqueue mount point, which takes no context= */
#define OCI_STEP_WAIT_JOINED   18  /* wait for 'C' (the parent joined the cgroups): before the process
                                      attributes that depend on them (scheduler, memory policy) */
#define OCI_STEP_CONSOLE       19  /* process.terminal: make the pty (see console_fd); with dst, bind its
                                      slave onto dst (/dev/console, made an empty file if missing) */

/* An OCI_STEP_MOUNT's `copyup` (runc's tmpcopyup, on a tmpfs only): 0, or OCI_COPYUP and what
 * else the tmpfs's root takes from the directory dst was before it was covered. The directory
 * is opened before the mount (a dst that doesn't exist yet is made: nothing to copy, and the
 * root keeps what the mount gave it); the tmpfs is mounted read-write, the tree under that fd
 * copied into it — directories, files, symlinks as symlinks (never followed), device nodes,
 * fifos and sockets as nodes, each with its owner, group, mode and times; no xattrs, hard links
 * become copies — then remounted read-only if flags say MS_RDONLY. */
#define OCI_COPYUP              1  /* copy dst's contents into the new tmpfs */
#define OCI_COPYUP_MODE         2  /* the root takes dst's mode (the data sets no mode=) */
#define OCI_COPYUP_UID          4  /* ... dst's owner (no uid=), unless 65534: maybe unmapped (runc */
#define OCI_COPYUP_GID          8  /* ... dst's group (no gid=)    takes neither, only the mode) */

#define OCI_PIVOT_ROOT          0  /* pivot_root and detach the old root */
#define OCI_PIVOT_MOVE          1  /* move the rootfs mount onto / and chroot (--no-pivot) */
#define OCI_PIVOT_CHROOT        2  /* chroot only: no mount namespace of our own */

struct oci_step {
    int op;
    const char *label;          /* the config field this step comes from, for errors: "mounts[2]" */
    const char *src;
    const char *dst;
    const char *fstype;
    const char *data;
    unsigned long flags;        /* MS_* */
    unsigned long propagation;  /* MS_SHARED|MS_SLAVE|MS_PRIVATE|MS_UNBINDABLE [| MS_REC], 0: leave */
    unsigned int mode;
    unsigned long long dev;
    unsigned int uid, gid;
    unsigned int copyup;        /* OCI_COPYUP* bits, 0: none */
};

struct oci_hook {
    const char *path;
    const char *const *argv;    /* NULL-terminated */
    const char *const *envp;    /* NULL-terminated */
    int timeout;                /* seconds, 0: none */
};

struct oci_join {
    const char *path;
    int nstype;                 /* CLONE_NEW* */
};

struct oci_rlimit {
    int resource;
    unsigned long long soft, hard;
};

/* A seccomp filter: libseccomp compiles it to BPF (actions and operators are its
 * ABI values, SCMP_ACT_*, SCMP_CMP_*, computed by Python) and the init loads that
 * with seccomp(2) and `flags` itself. */
struct oci_seccomp_arg {
    unsigned int index;
    int op;
    unsigned long long value, value_two;
};

struct oci_seccomp_rule {
    const char *name;           /* a syscall libseccomp doesn't know is skipped, as runc does */
    unsigned int action;
    int nargs;
    const struct oci_seccomp_arg *args;
};

struct oci_seccomp {
    int enabled;
    unsigned int default_action;
    int narchs;
    const char *const *archs;   /* libseccomp arch names: "x86_64", "x86", "x32" */
    unsigned int flags;         /* SECCOMP_FILTER_FLAG_* bits, NEW_LISTENER included when notify */
    int notify;                 /* SCMP_ACT_NOTIFY rules: loaded before 'R', listener fd sent as 'N' */
    int nrules;
    const struct oci_seccomp_rule *rules;
};

/* process.scheduler, for sched_setattr(2): policy and flags are the kernel's numbers. */
struct oci_sched {
    int enabled;
    unsigned int policy;        /* SCHED_* */
    unsigned long long flags;   /* SCHED_FLAG_* */
    int nice;
    unsigned int priority;
    unsigned long long runtime, deadline, period; /* ns, SCHED_DEADLINE's */
    const char *label;          /* for errors: "SCHED_FIFO, priority 10" */
};

/* linux.memoryPolicy, for set_mempolicy(2). */
struct oci_mempolicy {
    int enabled;
    int mode;                   /* MPOL_* | MPOL_F_* */
    int nwords;                 /* the node mask: bit n of the 64-bit words is node n; 0 words: none */
    const unsigned long long *nodes;
    const char *label;          /* for errors: "MPOL_BIND, nodes 0-1; this host's nodes: 0" */
};

struct oci_process {
    const char *const *argv;    /* NULL-terminated; argv[0] searched in PATH of envp if it has no '/' */
    const char *const *envp;
    const char *cwd;            /* chdir'd last, as the process's user; refused unless the kernel's getcwd
                                   finds it inside the root (a path through a preserved directory fd,
                                   /proc/self/fd/3, leads out: CVE-2024-21626's class), asked first as
                                   root before the seccomp filter, the last chdir landing on the same
                                   directory */
    unsigned int uid, gid;
    int ngroups;                /* -1: leave supplementary groups alone */
    const unsigned int *groups;
    int umask;                  /* -1: leave */
    int set_caps;               /* 0: leave all five sets alone */
    unsigned long long cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int nrlimits;
    const struct oci_rlimit *rlimits;
    int no_new_privs;
    int oom_score_adj;
    int set_oom_score_adj;
    struct oci_seccomp seccomp; /* loaded last before exec; with notify before 'R' (the listener fd
                                   goes to the parent, who hands it on while create still runs);
                                   before dropping privileges when no_new_privs is off (it needs
                                   CAP_SYS_ADMIN then) */
    int nhooks;                 /* startContainer hooks, run after start, before exec */
    const struct oci_hook *hooks;
    /* LSM settings (native/lsm.c), NULL: unset. Their /proc/self/attr files are opened
       before the steps, in the /proc the init starts with (checked to be procfs, nothing
       mounted over them), and written before finalize_process: the exec of the process
       (and of startContainer hooks, as with runc) takes them on. */
    const char *apparmor_exec;  /* "exec <profile>" for attr/apparmor/exec (attr/exec on old kernels) */
    const char *selinux_exec;   /* the label for attr/exec, and attr/keycreate for the session keyring */
    /* Attributes the init sets on itself (native/process.c) after no_new_privs, before seccomp
       and dropping privileges (runc's order), and in its cgroups when the plan says so (an
       OCI_STEP_WAIT_JOINED or OCI_STEP_UNSHARE_CGROUPNS step came first). 0: leave. */
    struct oci_sched sched;     /* process.scheduler */
    int ioprio;                 /* process.ioPriority: class << 13 | level, for the init's process group */
    int set_personality;        /* linux.personality: personality(persona) */
    unsigned long persona;      /* PER_* domain | flags */
    struct oci_mempolicy mempolicy; /* linux.memoryPolicy */
};

struct oci_plan {
    int clone_flags;            /* CLONE_NEW* the init is cloned into (never CLONE_NEWCGROUP: that is
                                   a step, OCI_STEP_UNSHARE_CGROUPNS, once the init is in its cgroups) */
    int unshare_timens;         /* stage 1 unshares the time namespace (clone() can't) ... */
    const char *timens_offsets; /* ... and writes these offsets first, or NULL */
    int njoins;                 /* namespaces joined (setns) before the clone, user namespace first */
    const struct oci_join *joins;
    int userns;                 /* in a user namespace: setresuid(0) after 'G' */
    int non_dumpable;           /* stage 1 (and so the init, until its exec) is non-dumpable: joined
                                   namespaces' processes can't ptrace or read it (CVE-2016-9962) */
    int early_sync;             /* wait for 'G' before anything (the id maps of a user namespace);
                                   else the steps may hold an OCI_STEP_WAIT_PARENT */
    const char *rootfs;         /* absolute host path */
    int nsteps;
    const struct oci_step *steps;
    int ncreate_hooks;          /* createContainer hooks (run at OCI_STEP_HOOKS) */
    const struct oci_hook *create_hooks;
    struct oci_process process;
    int preserve_fds;           /* fds 3 .. 3+preserve_fds-1 stay open across exec */
    int no_new_keyring;
    int sync_fd;                /* child's end of the SOCK_SEQPACKET pair */
    int start_fd;               /* read end of the start pipe: the init blocks on it while "created" */
    int start_wfd;              /* its write end, held by the init so the read can't see EOF */
    int err_rfd, err_wfd;       /* the exec-error pipe: after 'R' a failure is written to err_wfd;
                                   a successful exec closes it, so its reader sees EOF */
    int console_fd;             /* -1, or a connected unix socket: at OCI_STEP_CONSOLE (after pivot_root,
                                   before the read-only root and the masks) the init makes a pty in
                                   the container's devpts, sends the master over it with SCM_RIGHTS
                                   (payload: the slave's path) and takes the slave as its stdio and
                                   controlling terminal */
    unsigned short console_rows, console_cols; /* process.consoleSize, 0: leave */
    int stdio[3];               /* the process's fds 0, 1, 2: the init dup2()s each one that isn't -1
                                   onto its number right after closing what it inherited (-1: keep the
                                   caller's, which it inherited); like every fd the init keeps, each
                                   sits above the preserved range. A terminal's pty (OCI_STEP_CONSOLE)
                                   replaces all three later. */
};

/*
 * Messages on sync_fd, one per datagram, first byte is the type.
 *   child -> parent  'P' + decimal pid   stage 1 cloned the init (which is the caller's child);
 *                                        always the first message: the init waits for it
 *   parent -> child  'G'                 id maps written, cgroup directories made: go on (the
 *                                        parent joins the cgroups meanwhile and answers 'H'
 *                                        only once they are joined). Awaited first thing with
 *                                        early_sync, else at the OCI_STEP_WAIT_PARENT step;
 *                                        sent only when the init will read it (neither: not sent).
 *   parent -> child  'C'                 cgroups joined; sent only when the steps hold an
 *                                        OCI_STEP_UNSHARE_CGROUPNS or OCI_STEP_WAIT_JOINED, awaited
 *                                        there (the mounts before it are built while the parent joins)
 *   child -> parent  'H'                 mounts done, before pivot: run prestart + createRuntime hooks
 *                                        (only at an OCI_STEP_HOOKS step, which the plan has only
 *                                        when there are prestart, createRuntime or createContainer
 *                                        hooks; without one the init runs straight on to 'R')
 *   parent -> child  'S' + state JSON    hooks done; the JSON is the state for container hooks
 *   child -> parent  'N' + SCM_RIGHTS    the seccomp listener fd (only with seccomp.notify), sent
 *                                        right after the filter is loaded
 *   child -> parent  'R'                 created: waits for 'K'
 *   parent -> child  'K'                 the parent's state record names the init: block on
 *                                        start_fd now. EOF instead (the runtime died) makes the
 *                                        init exit: no init outlives a create that didn't finish
 *   child -> parent  'E' + message       failed; the init exits 1
 * After 'R' the init waits for one byte on start_fd, runs the startContainer
 * hooks and execs; if anything fails then it writes the message to err_wfd and
 * "ociruntime: <msg>" to stderr, and exits 127. Whoever started it reads err_rfd
 * (through /proc/<pid>/fd when it is another process) until EOF.
 */

/* Fork stage 1, which joins namespaces and clones the init. Returns stage 1's
 * pid (reap it) or -errno. The caller may have other threads (ociruntime/cgroups.py's
 * primer): stage 1 is a fork(), which leaves the child's libc (malloc) consistent. */
int oci_spawn(const struct oci_plan *plan);

/* 1 if this process runs from a file nobody can write (native/exeseal.c: the
 * launcher execs Python from a read-only overlayfs or a sealed memfd, and so does
 * ociruntime/exeseal.py's re-exec), else 0: an init cloned from it would show the
 * host's interpreter at /proc/<pid>/exe. */
int oci_exe_sealed(void);

/* A close-on-exec fd to exec `path` from (execveat AT_EMPTY_PATH, fexecve), whose file
 * can't be written: `path`'s directory as the only lower layer of an internal read-only
 * overlayfs (the other layer: `empty_dir`, made if missing), else a sealed memfd copy.
 * -1 with errno when neither works. */
int oci_sealed_exe(const char *path, const char *empty_dir);

/* Whether seccomp(2) takes these SECCOMP_FILTER_FLAG_* bits on this kernel: 1 or 0. */
int oci_seccomp_flags_supported(unsigned int flags);

/* PR_SET_CHILD_SUBREAPER on the caller: a foreground `run` reaps what the container's
 * processes orphan, as runc's does. Returns 0 or -errno. */
int oci_set_child_subreaper(void);

/* Make the mount point path inside the directory root (restore's, as create's init makes
 * them): resolved in the root, never through a link out of it; missing components become
 * directories, the last one an empty file when file is 1. Returns 0 or -errno. */
int oci_make_mountpoint(const char *root, const char *path, int file);

/* Lazily detach the mount at path (umount2 MNT_DETACH). Returns 0 or -errno. */
int oci_detach_mount(const char *path);

/* mount(2) as is, for the shim's rootfs mounts on the host (containerd's snapshot: an
 * overlay or a bind). Returns 0 or -errno. */
int oci_mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data);

/* A socket(domain, type | SOCK_CLOEXEC, protocol) made in the network namespace at ns_path
 * (the calling thread enters it and comes back). Returns the fd or -errno. */
int oci_netns_socket(const char *ns_path, int domain, int type, int protocol);

/* Run one hook from the caller's namespaces with `state` on stdin. Returns the
 * wait status, -ETIMEDOUT after killing a hook that ran over, or -errno. */
int oci_run_hook(const struct oci_hook *hook, const char *state, char *err, int errlen);

/* cgroup v2 device control: load `insns` (insn_bytes of struct bpf_insn, from
 * ociruntime/linux/devicefilter.py) as a BPF_PROG_TYPE_CGROUP_DEVICE program,
 * attach it to the cgroup directory (BPF_F_ALLOW_MULTI), then detach the device
 * programs attached there before: a new cgroup gets its filter, an updated one
 * has it replaced. The program stays attached after its fd is closed. Returns 0,
 * or -1 with one line in err: the failed step, strerror, the verifier's reason. */
int oci_attach_device_filter(const char *cgroup_dir, const unsigned char *insns, int insn_bytes,
                             char *err, int errlen);

/*
 * The systemd cgroup driver's D-Bus client (native/sdbus.c; ociruntime/systemd_bus.py calls
 * it): libsystemd's sd-bus, loaded at run time. Python computes the unit name and its
 * properties (ociruntime/systemd.py); C marshals them and talks to systemd's Manager
 * (org.freedesktop.systemd1) on the system bus. Every function but oci_sd_close fills
 * `struct oci_sd_reply` and returns 0, or -1 with `error` (a D-Bus error's name, "" when
 * the failure was no D-Bus error reply: a connection, a marshalling, a timeout) and
 * `message` (the error's message, else what failed and why) set.
 */

/* A unit property, (name, D-Bus signature, value): the value's field follows the signature:
 *   "s"                          s (NULL: "")
 *   "b" "y" "q" "u" "t"          u (b: 0 or 1)
 *   "n" "i" "x"                  i
 *   "d"                          d
 *   "ay"                         bytes, n of them
 *   "au"                         u32, n of them
 *   "a(ss)"                      pairs: 2n strings, each pair's first then its second
 * Any other signature is refused (-1, naming the property). */
struct oci_sd_property {
    const char *name;
    const char *signature;
    const char *s;
    unsigned long long u;
    long long i;
    double d;
    int n;
    const unsigned char *bytes;
    const unsigned int *u32;
    const char *const *pairs;
};

struct oci_sd_reply {
    char error[256];            /* the D-Bus error's name ("org.freedesktop.systemd1.NoSuchUnit"), or "" */
    char message[1024];         /* the D-Bus error's message, or "<step>: <strerror>", dlerror()... */
    char result[256];           /* a job's result ("done", "canceled", "timeout", "failed", "dependency",
                                   "skipped"), or oci_sd_version's string ("252.39-1~deb12u2") */
};

/* An open connection to the system bus (opaque). */
struct oci_sd_bus;

/* dlopen `library` ("libsystemd.so.0") and look up the functions used (sd-bus of systemd
 * 237 or later), once per process. -1: no such library (message: dlerror()'s); -2: it
 * lacks a function (message names it). */
int oci_sd_load(const char *library, struct oci_sd_reply *reply);

/* Connect to the system bus (sd_bus_open_system: $DBUS_SYSTEM_BUS_ADDRESS, else
 * /run/dbus/system_bus_socket). `timeout` (seconds) bounds each call and each job's wait.
 * NULL on failure, with message strerror's. */
struct oci_sd_bus *oci_sd_open(unsigned int timeout, struct oci_sd_reply *reply);
void oci_sd_close(struct oci_sd_bus *bus);

/* StartTransientUnit(unit, "replace", props, []) and StopUnit(unit, "replace"): each waits
 * for its job's JobRemoved (matched before the call is sent) and puts the job's result in
 * reply->result. After `timeout` without it: -1, error "", message "systemd did not finish
 * the job for <unit> in <timeout>s". */
int oci_sd_start_unit(struct oci_sd_bus *bus, const char *unit, const struct oci_sd_property *props, int nprops,
                      struct oci_sd_reply *reply);
int oci_sd_stop_unit(struct oci_sd_bus *bus, const char *unit, struct oci_sd_reply *reply);

/* SetUnitProperties(unit, runtime, props); ResetFailedUnit(unit). */
int oci_sd_set_properties(struct oci_sd_bus *bus, const char *unit, int runtime, const struct oci_sd_property *props,
                          int nprops, struct oci_sd_reply *reply);
int oci_sd_reset_failed(struct oci_sd_bus *bus, const char *unit, struct oci_sd_reply *reply);

/* The Manager's Version property, in reply->result. */
int oci_sd_version(struct oci_sd_bus *bus, struct oci_sd_reply *reply);

/* For the tests (no bus needed, only the library): build the StartTransientUnit call
 * oci_sd_start_unit would send, seal it, read it back, and write its arguments to `out` as
 * a Python literal in UTF-8: ('<unit>', 'replace', [('<name>', ('<signature>', <value>)),
 * ...], []), with a trailing ", " after each item; an array is a list (ay too: of numbers),
 * a struct or variant a tuple. -1 also when it doesn't fit in outlen. */
int oci_sd_test_marshal(const char *unit, const struct oci_sd_property *props, int nprops, char *out, int outlen,
                        struct oci_sd_reply *reply);

#endif
