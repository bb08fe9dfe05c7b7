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
 * per-checkout one) with -DOCI_PYTHON, -DOCI_SCRIPT and -DOCI_VALUE_OPTIONS (the global
 * options that take a value, from ociruntime.main.GLOBAL).
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

/* overlayfs's second, empty layer under the interpreter's directory (exeseal.c) */
#define EXESEAL_EMPTY_DIR "/run/ociruntime-exeseal"

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

/* "<mountpoint><path>/cgroup.procs" of the first hierarchy in /proc/self/cgroup that
 * is mounted: the key of a v1 mount is its super options without rw/ro, of cgroup2 "". */
static int own_procs(char *out, size_t len)
{
    char line[4096], mounts[16][2][256];
    int nmounts = 0, found = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (!f)
        return 0;
    while (nmounts < 16 && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - "), *fields[5], *p = line, fstype[64], source[256], opts[1024];
        int i;

        if (!sep || sscanf(sep, " - %63s %255s %1023s", fstype, source, opts) != 3)
            continue;
        if (strcmp(fstype, "cgroup") != 0 && strcmp(fstype, "cgroup2") != 0)
            continue;
        for (i = 0; i < 5 && p; i++) {
            fields[i] = strsep(&p, " ");
        }
        if (i < 5)
            continue;
        snprintf(mounts[nmounts][1], sizeof(mounts[0][1]), "%s", fields[4]);
        mounts[nmounts][0][0] = '\0';
        if (strcmp(fstype, "cgroup") == 0) {
            char *o, *rest = opts;
            while ((o = strsep(&rest, ","))) {
                if (strcmp(o, "rw") == 0 || strcmp(o, "ro") == 0)
                    continue;
                if (mounts[nmounts][0][0])
                    strncat(mounts[nmounts][0], ",", sizeof(mounts[0][0]) - strlen(mounts[nmounts][0]) - 1);
                strncat(mounts[nmounts][0], o, sizeof(mounts[0][0]) - strlen(mounts[nmounts][0]) - 1);
            }
        }
        nmounts++;
    }
    fclose(f);
    f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char *keys = strchr(line, ':'), *path;

        if (!keys || !(path = strchr(++keys, ':')))
            continue;
        *path++ = '\0';
        path[strcspn(path, "\n")] = '\0';
        for (int i = 0; i < nmounts; i++)
            if (strcmp(mounts[i][0], keys) == 0) {
                found = snprintf(out, len, "%s%s/cgroup.procs", mounts[i][1], strcmp(path, "/") ? path : "") <
                        (int)len;
                break;
            }
    }
    fclose(f);
    return found;
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

    if (!own_procs(procs, sizeof(procs)) || pipe2(stop, O_CLOEXEC) < 0)
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

int main(int argc, char **argv)
{
    const char *command = command_of(argc, argv);
    char **args = calloc(argc + 6, sizeof(char *));
    int clones = command && (strcmp(command, "create") == 0 || strcmp(command, "run") == 0 ||
                             strcmp(command, "exec") == 0);

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
    if (clones) {
        int exe = oci_sealed_exe(OCI_PYTHON, EXESEAL_EMPTY_DIR);
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
