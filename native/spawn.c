/* Stage 1 (joins namespaces, clones the init) and the init itself, from the
 * clone to the exec of the user's program. See oci_native.h for the protocol. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

static char state_json[65536];

static pid_t raw_clone(unsigned long flags)
{
    /* fork semantics (child continues on a copy of this stack) with namespace flags */
    return syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
}

/* Receive one message of the expected type from the parent. */
static void expect(int fd, char type)
{
    ssize_t n = recv(fd, state_json, sizeof(state_json) - 1, 0);

    if (n <= 0) {
        oci_report_fd = -1; /* the parent is gone: nobody to report to */
        _exit(1);
    }
    state_json[n] = '\0';
    if (state_json[0] != type)
        oci_fail(0, "protocol: expected '%c', got '%c'", type, state_json[0]);
}

/* After 'R': wait for 'K', the parent's word that its state record names us. EOF (the
 * runtime died first) means nobody knows we exist: exit rather than wait for a start
 * that can never come. read(), not recv(): seccomp profiles allow it more often, and
 * with notify the filter is already loaded here. */
static void wait_committed(int fd)
{
    char c;
    ssize_t n;

    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1 || c != 'K') {
        oci_report_fd = -1;
        _exit(1);
    }
}

static void tell(int fd, char type)
{
    if (send(fd, &type, 1, MSG_NOSIGNAL) != 1)
        _exit(1);
}

/* One message with one fd attached (SCM_RIGHTS). */
static int send_with_fd(int sock, const void *buf, size_t len, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* Load the seccomp filter; with notify its listener fd goes to the parent as 'N'. */
static void load_seccomp(const struct oci_plan *plan)
{
    int listener = oci_load_seccomp();

    if (listener >= 0) {
        if (send_with_fd(plan->sync_fd, "N", 1, listener) < 0)
            _exit(1);
        close(listener);
    }
}

static void wait_parent(const struct oci_plan *plan, char type)
{
    expect(plan->sync_fd, type);
}

static void hooks_point(const struct oci_plan *plan)
{
    char err[512];
    int i, rc;

    tell(plan->sync_fd, 'H');
    expect(plan->sync_fd, 'S');
    for (i = 0; i < plan->ncreate_hooks; i++) {
        rc = oci_run_hook(&plan->create_hooks[i], state_json + 1, err, sizeof(err));
        if (rc != 0)
            oci_fail(0, "hooks.createContainer[%d]: %s", i, err);
    }
}

static int last_cap(void)
{
    int cap = CAP_LAST_CAP;
    while (prctl(PR_CAPBSET_READ, cap + 1, 0, 0, 0) >= 0)
        cap++;
    while (cap > 0 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
        cap--;
    return cap;
}

static void set_caps(const struct oci_process *p, int last)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    int cap;

    memset(data, 0, sizeof(data));
    data[0].effective = (unsigned int)p->cap_effective;
    data[1].effective = (unsigned int)(p->cap_effective >> 32);
    data[0].permitted = (unsigned int)p->cap_permitted;
    data[1].permitted = (unsigned int)(p->cap_permitted >> 32);
    data[0].inheritable = (unsigned int)p->cap_inheritable;
    data[1].inheritable = (unsigned int)(p->cap_inheritable >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        oci_fail(1, "process.capabilities: capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        oci_fail(1, "process.capabilities.ambient: clear");
    for (cap = 0; cap <= last; cap++)
        if ((p->cap_ambient >> cap) & 1)
            if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                oci_fail(1, "process.capabilities.ambient: raise capability %d", cap);
}

/* Whether the directory we are in is inside the process's root: a path through a
 * directory fd it was handed (--preserve-fds: /proc/self/fd/3, /proc/self/fd/3/..)
 * leads out of it whatever the string says (runc's fix of CVE-2024-21626). The kernel's
 * own getcwd tells: "(unreachable)..." for a directory outside the root, ENOENT for one
 * already removed. */
static void check_reachable(const char *cwd)
{
    char buf[4096];
    long n = syscall(SYS_getcwd, buf, sizeof(buf));

    if (n < 0 && errno != ENOENT)
        oci_fail(1, "process.cwd: getcwd after chdir %s", cwd);
    if (n < 0 || buf[0] != '/')
        oci_fail(0, "process.cwd: %s is outside the container's root: possible container breakout detected", cwd);
}

/* The cwd is checked early, as root and before the container's seccomp filter is
 * loaded (a filter may refuse getcwd itself: runtime-tools' linux_seccomp does); the
 * final chdir, as the process's user, must then land on that same directory. A cwd
 * root can't enter yet (a user namespace's root without access) is checked after. */
static int check_cwd_early(const char *cwd, struct stat *st)
{
    if (chdir(cwd) < 0)
        return 0;
    check_reachable(cwd);
    if (stat(".", st) < 0)
        oci_fail(1, "process.cwd: stat %s", cwd);
    return 1;
}

static void enter_cwd(const char *cwd, int checked, const struct stat *early)
{
    struct stat st;

    if (chdir(cwd) < 0)
        oci_fail(1, "process.cwd: chdir %s", cwd);
    if (!checked) {
        check_reachable(cwd);
        return;
    }
    if (stat(".", &st) < 0)
        oci_fail(1, "process.cwd: stat %s", cwd);
    if (st.st_dev != early->st_dev || st.st_ino != early->st_ino)
        oci_fail(0, "process.cwd: %s changed while the process was set up", cwd);
}

/* Everything between the filesystem and the exec: limits, identity, caps. */
static void finalize_process(const struct oci_plan *plan)
{
    const struct oci_process *p = &plan->process;
    int i, last = last_cap(), cwd_checked;
    struct stat cwd_st;

    cwd_checked = check_cwd_early(p->cwd, &cwd_st);
    for (i = 0; i < p->nrlimits; i++) {
        struct rlimit rl = {p->rlimits[i].soft, p->rlimits[i].hard};
        if (setrlimit(p->rlimits[i].resource, &rl) < 0)
            oci_fail(1, "process.rlimits[%d]: setrlimit(%d, soft=%llu, hard=%llu)", i,
                     p->rlimits[i].resource, p->rlimits[i].soft, p->rlimits[i].hard);
    }
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        oci_fail(1, "process.noNewPrivileges");
    oci_set_process_attrs(p);
    oci_prepare_seccomp(&p->seccomp);
    if (!p->no_new_privs)
        load_seccomp(plan); /* needs CAP_SYS_ADMIN: before the caps go */
    /* The preserved fds cross the exec; close_inherited() closed the rest but our
     * own, which are close-on-exec. */
    for (i = 3; i < 3 + plan->preserve_fds; i++) {
        int fl = fcntl(i, F_GETFD);
        if (fl >= 0)
            fcntl(i, F_SETFD, fl & ~FD_CLOEXEC);
    }
    if (p->set_caps) {
        for (i = 0; i <= last; i++)
            if (!((p->cap_bounding >> i) & 1) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0)
                oci_fail(1, "process.capabilities.bounding: drop capability %d", i);
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            oci_fail(1, "prctl(PR_SET_KEEPCAPS)");
    }
    if (p->ngroups >= 0 && setgroups(p->ngroups, (const gid_t *)p->groups) < 0)
        oci_fail(1, "process.user.additionalGids: setgroups");
    if (setresgid(p->gid, p->gid, p->gid) < 0)
        oci_fail(1, "process.user.gid: setresgid(%u)", p->gid);
    if (setresuid(p->uid, p->uid, p->uid) < 0)
        oci_fail(1, "process.user.uid: setresuid(%u)", p->uid);
    if (p->set_caps) {
        prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
        set_caps(p, last);
    }
    if (p->umask >= 0)
        umask(p->umask);
    enter_cwd(p->cwd, cwd_checked, &cwd_st);
}

static const char *env_path(const char *const *envp)
{
    for (; envp && *envp; envp++)
        if (!strncmp(*envp, "PATH=", 5))
            return *envp + 5;
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* execvpe's search, done before "created" so a missing program fails create. */
static const char *find_program(const struct oci_process *p, char *buf, size_t len)
{
    const char *name = p->argv[0], *dirs = env_path(p->envp);
    struct stat st;

    if (strchr(name, '/')) {
        if (access(name, X_OK) < 0)
            oci_fail(1, "process.args[0]: %s", name);
        return name;
    }
    while (*dirs) {
        const char *end = strchrnul(dirs, ':');
        int n = snprintf(buf, len, "%.*s/%s", (int)(end - dirs), dirs, name);
        if (n > 0 && (size_t)n < len && stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return buf;
        dirs = *end ? end + 1 : end;
    }
    /* runc's words after the name (Go's exec.ErrNotFound): engines match them to tell "not
     * found" from other failures (podman: exit 127, tests/test_podman.py). */
    oci_fail(0, "process.args[0]: %s: executable file not found in $PATH", name);
}

#define NKEEP 9

/* Close every inherited fd but stdio, the preserved ones and our own (up to nine), so
 * nothing of the caller's (its state-dir lock, its sockets) outlives create. */
static void close_inherited(const struct oci_plan *plan)
{
    int keep[NKEEP] = {plan->sync_fd, plan->start_fd, plan->start_wfd, plan->err_rfd, plan->err_wfd,
                       plan->console_fd, plan->stdio[0], plan->stdio[1], plan->stdio[2]};
    int i, j, lo = 3 + plan->preserve_fds;

    /* In the preserved range, a close-on-exec fd is one of the runtime's own (the
     * caller's arrive without the flag): it must not reach the container. */
    for (i = 3; i < lo; i++) {
        int fl = fcntl(i, F_GETFD);
        if (fl >= 0 && (fl & FD_CLOEXEC))
            close(i);
    }

    for (i = 0; i < NKEEP; i++)
        for (j = i + 1; j < NKEEP; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    for (i = 0; i < NKEEP; i++) {
        if (keep[i] < lo)
            continue;
        if (keep[i] > lo && syscall(SYS_close_range, lo, keep[i] - 1, 0) < 0)
            oci_fail(1, "close_range");
        lo = keep[i] + 1;
    }
    if (syscall(SYS_close_range, lo, ~0U, 0) < 0)
        oci_fail(1, "close_range");
}

/* The caller's stdio for the process (plan->stdio) onto 0, 1, 2; then their copies up
 * high are closed: only 0, 1, 2 (and the preserved fds) reach the program. */
static void take_stdio(const struct oci_plan *plan)
{
    int i;

    for (i = 0; i < 3; i++)
        if (plan->stdio[i] >= 0 && dup2(plan->stdio[i], i) < 0)
            oci_fail(1, "stdio: dup2 onto fd %d", i);
    for (i = 0; i < 3; i++)
        if (plan->stdio[i] >= 0)
            close(plan->stdio[i]);
}

/* A pty made inside the container (its devpts), master sent to the console socket,
 * slave our stdio (OCI_STEP_CONSOLE). */
static void setup_console(const struct oci_plan *plan)
{
    char name[64];
    int master, slave, n, unlock = 0;

    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        oci_fail(1, "process.terminal: open /dev/ptmx in the container");
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &n) < 0)
        oci_fail(1, "process.terminal: unlock the pty");
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0)
        oci_fail(1, "process.terminal: open the pty's slave");
    if (plan->console_rows || plan->console_cols) {
        struct winsize ws = {.ws_row = plan->console_rows, .ws_col = plan->console_cols};
        if (ioctl(slave, TIOCSWINSZ, &ws) < 0)
            oci_fail(1, "process.consoleSize");
    }
    if (fchown(slave, plan->process.uid, plan->process.gid) < 0)
        oci_fail(1, "process.terminal: chown the pty to the process's user");
    snprintf(name, sizeof(name), "/dev/pts/%d", n);
    if (send_with_fd(plan->console_fd, name, strlen(name), master) < 0)
        oci_fail(1, "--console-socket: send the pty master");
    close(master);
    close(plan->console_fd);
    if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
        oci_fail(1, "process.terminal: make the pty our stdio");
    if (slave > 2)
        close(slave);
    if (ioctl(0, TIOCSCTTY, 0) < 0)
        oci_fail(1, "process.terminal: make the pty our controlling terminal");
}

static void run_init(const struct oci_plan *plan, int said_pid[2])
{
    const struct oci_process *p = &plan->process;
    char program[4096], err[512], c;
    const char *path;
    mode_t saved_umask;
    int i, rc;

    /* Stage 1 and the init share sync_fd, and the parent must read 'P' first: an init
     * with nothing to wait for could otherwise say 'R' ahead of it. Stage 1 closes its
     * end once 'P' is sent; EOF here means it was. */
    close(said_pid[1]);
    while (read(said_pid[0], &c, 1) < 0 && errno == EINTR)
        ;
    close(said_pid[0]);
    oci_report_fd = plan->sync_fd;
    close_inherited(plan);
    take_stdio(plan);
    prctl(PR_SET_NAME, "ociruntime:init", 0, 0, 0);
    if (plan->early_sync)
        expect(plan->sync_fd, 'G');
    if (plan->userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
        oci_fail(1, "linux.uidMappings: become root in the user namespace");
    if (setsid() < 0)
        oci_fail(1, "setsid");
    oci_lsm_prepare(plan);
    if (!plan->no_new_keyring && syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL) < 0 &&
        errno != ENOSYS)
        oci_fail(1, "join a new session keyring");
    if (p->set_oom_score_adj) {
        char v[16];
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC), n = snprintf(v, sizeof(v), "%d", p->oom_score_adj);
        if (fd < 0 || write(fd, v, n) != n)
            oci_fail(1, "process.oomScoreAdj: write %d", p->oom_score_adj);
        close(fd);
    }
    saved_umask = umask(0);
    oci_run_steps(plan, hooks_point, wait_parent, setup_console);
    umask(saved_umask);
    oci_lsm_apply(p);
    finalize_process(plan);
    path = find_program(p, program, sizeof(program));
    if (p->no_new_privs && p->seccomp.notify)
        load_seccomp(plan); /* its listener must reach the parent before create returns */
    tell(plan->sync_fd, 'R');
    wait_committed(plan->sync_fd);
    oci_report_fd = -1;
    oci_error_fd = plan->err_wfd;
    /* "created": wait for start. EOF would mean nobody can ever start us. */
    if (read(plan->start_fd, &c, 1) != 1)
        _exit(127);
    for (i = 0; i < p->nhooks; i++) {
        rc = oci_run_hook(&p->hooks[i], state_json + 1, err, sizeof(err));
        if (rc != 0)
            oci_fail(0, "hooks.startContainer[%d]: %s", i, err);
    }
    oci_reset_signals();
    if (p->no_new_privs && !p->seccomp.notify)
        oci_load_seccomp(); /* as late as possible: only execve runs under it here */
    execve(path, (char *const *)p->argv, (char *const *)p->envp);
    oci_fail(1, "exec %s", path);
}

int oci_spawn(const struct oci_plan *plan)
{
    char msg[32];
    pid_t stage1 = fork(), init;
    int i, n, said_pid[2];

    if (stage1 != 0)
        return stage1 < 0 ? -errno : stage1;
    /* Stage 1: join, then clone the init as a sibling (the caller's child). */
    oci_report_fd = plan->sync_fd;
    if (plan->non_dumpable && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        oci_fail(1, "prctl(PR_SET_DUMPABLE, 0)");
    for (i = 0; i < plan->njoins; i++) {
        int fd = open(plan->joins[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, plan->joins[i].nstype) < 0)
            oci_fail(1, "linux.namespaces: join %s", plan->joins[i].path);
        close(fd);
    }
    if (plan->unshare_timens) {
        if (unshare(CLONE_NEWTIME) < 0)
            oci_fail(1, "linux.namespaces: unshare the time namespace");
        if (plan->timens_offsets) {
            int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
            size_t len = strlen(plan->timens_offsets);
            if (fd < 0 || write(fd, plan->timens_offsets, len) != (ssize_t)len)
                oci_fail(1, "linux.timeOffsets: write /proc/self/timens_offsets");
            close(fd);
        }
    }
    if (pipe2(said_pid, O_CLOEXEC) < 0)
        oci_fail(1, "pipe");
    init = raw_clone(plan->clone_flags | CLONE_PARENT);
    if (init < 0)
        oci_fail(1, "linux.namespaces: clone");
    if (init == 0)
        run_init(plan, said_pid);
    close(said_pid[0]);
    n = snprintf(msg, sizeof(msg), "P%d", init);
    send(plan->sync_fd, msg, n, MSG_NOSIGNAL);
    close(said_pid[1]); /* the init may speak now */
    _exit(0);
}

int oci_run_hook(const struct oci_hook *hook, const char *state, char *err, int errlen)
{
    int in[2], status = 0, pidfd, timeout_ms = hook->timeout > 0 ? hook->timeout * 1000 : -1;
    size_t len = strlen(state), off = 0;
    struct pollfd pfd;
    pid_t pid;

    if (pipe2(in, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "%s: pipe: %s", hook->path, strerror(errno));
        return -errno;
    }
    pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        oci_reset_signals();
        execve(hook->path, (char *const *)hook->argv, (char *const *)hook->envp);
        dprintf(2, "ociruntime: hook %s: %s\n", hook->path, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    if (pid < 0) {
        close(in[1]);
        snprintf(err, errlen, "%s: fork: %s", hook->path, strerror(errno));
        return -errno;
    }
    /* SIGPIPE is ignored here (inherited from Python): a hook need not read stdin. */
    while (off < len) {
        ssize_t w = write(in[1], state + off, len - off);
        if (w <= 0)
            break;
        off += w;
    }
    close(in[1]);
    pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        int ready;

        pfd.fd = pidfd;
        pfd.events = POLLIN;
        do
            ready = poll(&pfd, 1, timeout_ms);
        while (ready < 0 && errno == EINTR);
        close(pidfd);
        if (ready == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(err, errlen, "%s: timed out after %d s", hook->path, hook->timeout);
            return -ETIMEDOUT;
        }
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(err, errlen, "%s: wait: %s", hook->path, strerror(errno));
            return -errno;
        }
    if (WIFEXITED(status))
        snprintf(err, errlen, "%s: exited with status %d", hook->path, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(err, errlen, "%s: killed by signal %d", hook->path, WTERMSIG(status));
    return status;
}
