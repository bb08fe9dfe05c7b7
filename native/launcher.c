/*
 * The `ociruntime` command that scripts/setup.sh installs: it starts Python on the
 * launcher script (OCI_PYTHON -I -S OCI_SCRIPT args...), and for `create`, `run` and `exec`
 * it first forks the cgroup-migration primer (see prime_migration in
 * ociruntime/cgroups.py).
 *
 * Why here: the first cgroup migration in a while waits out an RCU grace period
 * (~10 ms here) while holding cgroupfs's lock, so nothing can make a cgroup until it
 * is over. Started before Python (which takes ~8 ms to start), that wait is over by
 * the time the container's cgroups are made. The primer is a child of this process,
 * which then execs Python: it shares no memory with the Python that follows.
 *
 * The primer "moves" itself into the cgroup it is already in, every 3 ms, until the
 * pipe it reads hangs up; Python finds it in OCIRUNTIME_PRIMER=<pid>:<fd of the write
 * end>, closes that fd once the container joined its cgroups, and reaps it. Without
 * it (any failure here, or another entry point) Python primes on a thread instead.
 *
 * For the commands that clone a container init (create, run, exec), Python is exec'd from
 * a handle nobody can write (native/exeseal.c): the init's /proc/<pid>/exe is then
 * never the host's interpreter. Where that is impossible the command fails here.
 *
 * OCIRUNTIME_IMPORTTIME in the environment adds `-X importtime` (Python's own
 * PYTHON* variables are ignored under -I).
 *
 * Built by native/build_launcher.py (for setup.sh's installed command, and tests/devbuild.py's
 * per-checkout one) with -DOCI_PYTHON, -DOCI_SCRIPT, -DOCI_VALUE_OPTIONS (the global
 * options that take a value, from ociruntime.main.GLOBAL) and -DOCI_EXESEAL_EMPTY_DIR
 * (overlayfs's second, empty layer beside the interpreter's directory: ociruntime.exeseal's,
 * which a pip-installed entry point's re-exec uses too).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exeseal.h"

static const char *const value_options[] = {OCI_VALUE_OPTIONS, NULL};

/* The command word, as ociruntime.main.parse finds it: after the global options. */
static const char *command_of(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-')
            return argv[i];
        if (strchr(argv[i], '='))
            continue;
        for (const char *const *o = value_options; *o; o++)
            if (strcmp(argv[i], *o) == 0) {
                i++;
                break;
            }
    }
    return NULL;
}

/* mountinfo's \ooo escapes undone in place, as ociruntime/mountinfo.py's unescape: three
 * octal digits of an ASCII character other than NUL; any other backslash stays. */
static void unescape(char *s)
{
    char *w = s;

    for (; *s; s++, w++) {
        if (s[0] == '\\' && (s[1] == '0' || s[1] == '1') && s[2] >= '0' && s[2] <= '7' && s[3] >= '0' &&
            s[3] <= '7' && (s[1] != '0' || s[2] != '0' || s[3] != '0')) {
            *w = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 | (s[3] - '0'));
            s += 3;
        } else {
            *w = *s;
        }
    }
    *w = '\0';
}

/* ",cpuset,cpu,...," of /proc/cgroups' first column: the kernel's controllers (just ","
 * if it can't be read, as cgroups.v1_controllers' empty set). */
static void read_controllers(const char *proc, char *out, size_t len)
{
    char path[4096], line[256];
    size_t used = 1;
    FILE *f;

    strcpy(out, ",");
    snprintf(path, sizeof(path), "%s/cgroups", proc);
    if (!(f = fopen(path, "re")))
        return;
    while (fgets(line, sizeof(line), f)) {
        size_t n = strcspn(line, "\t\n");

        if (line[0] == '#' || used + n + 2 > len)
            continue;
        memcpy(out + used, line, n);
        used += n;
        out[used++] = ',';
        out[used] = '\0';
    }
    fclose(f);
}

/* Whether a mountinfo line (modified in place) mounts a cgroup hierarchy, with its key
 * as /proc/self/cgroup names it: "" for cgroup2; for v1 the super options that are
 * controllers or name=X, in order (xattr, rw, clone_children... are none). *point is
 * its unescaped mount point. cgroups.hierarchies' rule; tests/test_mountinfo.py holds
 * the two equal on the same fixtures. */
static int cgroup_mount(char *line, const char *controllers, char *key, size_t keylen, char **point)
{
    char *fields[6], *p = line, *sep = NULL, *fstype, *opts, *o;
    int i;

    line[strcspn(line, "\n")] = '\0';
    for (i = 0; i < 6 && p; i++)
        fields[i] = strsep(&p, " ");
    while (i == 6 && p && (sep = strsep(&p, " ")) && strcmp(sep, "-") != 0)
        ; /* the optional fields (shared:N master:N ...), up to a lone "-" */
    if (!sep || strcmp(sep, "-") != 0 || !(fstype = strsep(&p, " ")) || !strsep(&p, " "))
        return 0;
    unescape(fstype);
    if (strcmp(fstype, "cgroup") != 0 && strcmp(fstype, "cgroup2") != 0)
        return 0;
    opts = strsep(&p, " ");
    unescape(fields[4]);
    *point = fields[4];
    key[0] = '\0';
    if (strcmp(fstype, "cgroup2") == 0)
        return 1;
    while (opts && (o = strsep(&opts, ","))) {
        char wanted[258];

        unescape(o);
        if (snprintf(wanted, sizeof(wanted), ",%s,", o) >= (int)sizeof(wanted) ||
            (!strstr(controllers, wanted) && strncmp(o, "name=", 5) != 0))
            continue;
        if (strlen(key) + strlen(o) + 2 > keylen)
            return 0;
        if (key[0])
            strcat(key, ",");
        strcat(key, o);
    }
    return key[0] != '\0';
}

/* "<mountpoint>/<path>/cgroup.procs" of the first hierarchy in /proc/self/cgroup that
 * is mounted (its first mount), as cgroups.own_procs finds it: 1, or 0 if none. */
static int own_procs(const char *proc, char *out, size_t len)
{
    char path[4096], controllers[4096], own[16384], *keys[64], *paths[64], key[256], *point, *line = NULL;
    char best_point[4096];
    int nown = 0, best;
    size_t size = 0, got;
    FILE *f;

    read_controllers(proc, controllers, sizeof(controllers));
    snprintf(path, sizeof(path), "%s/self/cgroup", proc);
    if (!(f = fopen(path, "re")))
        return 0;
    got = fread(own, 1, sizeof(own) - 1, f);
    fclose(f);
    own[got] = '\0';
    for (char *rest = own, *l; nown < 64 && (l = strsep(&rest, "\n"));) {
        char *k = strchr(l, ':'), *v;

        if (k && (v = strchr(++k, ':'))) {
            *v++ = '\0';
            keys[nown] = k;
            paths[nown++] = v;
        }
    }
    best = nown;
    snprintf(path, sizeof(path), "%s/self/mountinfo", proc);
    if (!(f = fopen(path, "re")))
        return 0;
    while (getline(&line, &size, f) > 0) {
        if (!cgroup_mount(line, controllers, key, sizeof(key), &point))
            continue;
        for (int i = 0; i < best; i++)
            if (strcmp(keys[i], key) == 0) {
                best = i;
                snprintf(best_point, sizeof(best_point), "%s", point);
                break;
            }
    }
    free(line);
    fclose(f);
    if (best == nown)
        return 0;
    char *rel = paths[best] + strspn(paths[best], "/");
    int n = (int)strlen(rel);

    while (n > 0 && rel[n - 1] == '/')
        n--;
    return snprintf(out, len, "%s%s%.*s/cgroup.procs", best_point, n ? "/" : "", n, rel) < (int)len;
}

static void prime(const char *procs, int stop_fd)
{
    struct pollfd stop = {.fd = stop_fd, .events = POLLIN};

    for (;;) {
        int fd = open(procs, O_WRONLY | O_CLOEXEC), ready;

        if (fd < 0 || write(fd, "0", 1) != 1)
            _exit(0);
        close(fd);
        ready = poll(&stop, 1, 3);
        if (ready > 0 || (ready < 0 && errno != EINTR))
            _exit(0);
    }
}

static void start_primer(void)
{
    char procs[4096], env[64];
    int stop[2];
    pid_t pid;

    if (!own_procs("/proc", procs, sizeof(procs)) || pipe2(stop, O_CLOEXEC) < 0)
        return;
    pid = fork();
    if (pid == 0) {
        if (dup2(stop[0], 0) < 0)
            _exit(0);
        close_range(1, ~0U, 0); /* the caller's stdio and fds are not the primer's to hold */
        prime(procs, 0);
    }
    close(stop[0]);
    if (pid < 0 || fcntl(stop[1], F_SETFD, 0) < 0) { /* the write end crosses the exec */
        close(stop[1]);
        return;
    }
    snprintf(env, sizeof(env), "%d:%d", (int)pid, stop[1]);
    setenv("OCIRUNTIME_PRIMER", env, 1);
}

#ifdef OCI_SHIM
#include <sys/socket.h>
#include <sys/un.h>

/* The shim's `delete` when the shim deleted the task itself. containerd runs `delete` after
 * every task's connection closed, also then, and waits for it (shim/cleanup.py): with no
 * cleanup record in the bundle (OCI_SHIM_RECORD) and no dead shim's socket (or lock) to remove,
 * the answer is the empty DeleteResponse, given here without starting Python. 1 if so. */
static int nothing_to_clean(int argc, char **argv)
{
    const char *bundle = ".";
    char path[4096], address[4096];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    ssize_t got;
    int fd, alive;

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-bundle") == 0 || strcmp(argv[i], "--bundle") == 0) && i + 1 < argc)
            bundle = argv[i + 1];
        else if (strncmp(argv[i], "-bundle=", 8) == 0 || strncmp(argv[i], "--bundle=", 9) == 0)
            bundle = strchr(argv[i], '=') + 1;
    }
    snprintf(path, sizeof(path), "%s/%s", bundle, OCI_SHIM_RECORD);
    if (access(path, F_OK) == 0 || errno != ENOENT)
        return 0;
    snprintf(path, sizeof(path), "%s/address", bundle);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT;
    got = read(fd, address, sizeof(address) - 1);
    close(fd);
    if (got < 0)
        return 0;
    address[got] = '\0';
    const char *socket_path = strncmp(address, "unix://", 7) == 0 ? address + 7 : address;
    if (strlen(socket_path) >= sizeof(sun.sun_path))
        return 0;
    if (access(socket_path, F_OK) != 0) {
        if (errno != ENOENT)
            return 0;
        snprintf(path, sizeof(path), "%s.lock", socket_path); /* a dead one's, its socket removed */
        return access(path, F_OK) != 0 && errno == ENOENT;    /* else the shim left, and took both */
    }
    strcpy(sun.sun_path, socket_path);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return 0;
    alive = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0; /* a dead one's: Python removes it */
    close(fd);
    return alive;
}
#endif

int main(int argc, char **argv)
{
    const char *command = command_of(argc, argv);
    char **args = calloc(argc + 6, sizeof(char *));
    int clones = command && (strcmp(command, "create") == 0 || strcmp(command, "run") == 0 ||
                             strcmp(command, "exec") == 0);
#ifdef OCI_SHIM
    /* containerd-shim-ociruntime-v2 ... ACTION: the long-lived shim that `start` forks
     * clones every init it serves; `delete` clones nothing. No primer: the shim joins no
     * cgroup of its own. */
    int sealed = argc > 1 && strcmp(argv[argc - 1], "start") == 0;
    clones = 0;
    if (argc > 1 && strcmp(argv[argc - 1], "delete") == 0 && nothing_to_clean(argc, argv))
        return 0;
#else
    int sealed = clones;
#endif

    if (!args)
        return 1;
    unsetenv("OCIRUNTIME_PRIMER"); /* only ever ours */
    if (clones)
        start_primer();
    int n = 0;
    args[n++] = OCI_PYTHON;
    args[n++] = "-I";
    args[n++] = "-S";
    if (getenv("OCIRUNTIME_IMPORTTIME")) { /* tests/test_pathnames.py, bench/importtime.py */
        args[n++] = "-X";
        args[n++] = "importtime";
    }
    args[n++] = OCI_SCRIPT;
    memcpy(args + n, argv + 1, (argc - 1) * sizeof(char *));
    if (sealed) {
        int exe = oci_sealed_exe(OCI_PYTHON, OCI_EXESEAL_EMPTY_DIR);
        if (exe < 0) {
            fprintf(stderr, "ociruntime: cannot make a read-only handle on %s to run from: %s\n", OCI_PYTHON,
                    strerror(errno));
            return 1;
        }
        syscall(SYS_execveat, exe, "", args, environ, AT_EMPTY_PATH);
    } else {
        execv(OCI_PYTHON, args);
    }
    fprintf(stderr, "ociruntime: cannot run %s: %s (run scripts/setup.sh again)\n", OCI_PYTHON, strerror(errno));
    return 127;
}
