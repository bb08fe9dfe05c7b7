/* Small helpers shared by the C helper's files: error reporting to the parent
 * and path resolution inside a root directory. */
#ifndef OCI_UTIL_H
#define OCI_UTIL_H
#include "oci_native.h"

/* Send 'E' + formatted message (with ": strerror(errno)" when errno_too) on
 * the sync socket, or to stderr once the parent is gone, and _exit(1). */
__attribute__((noreturn, format(printf, 2, 3)))
void oci_fail(int errno_too, const char *fmt, ...);

/* The socket oci_fail() reports on; -1 once the parent stopped listening.
 * Then failures go to oci_error_fd (the exec-error pipe) and stderr. */
extern int oci_report_fd;
extern int oci_error_fd;

/* Open `path` below `rootfd` (O_PATH), resolving it as if rootfd were "/":
 * symlinks and ".." can never lead out. With `create`, missing components
 * are made (directories, and the last one a file when create == 2). With
 * `nosymlinks`, any symlink on the way is refused. Returns fd or -1/errno. */
int oci_open_in_root(int rootfd, const char *path, int create, int nosymlinks);

/* "/proc/self/fd/N" for a fd, in a caller-provided buffer. */
const char *oci_fdpath(int fd, char buf[32]);

/* Reset every signal to its default and unblock all: Python ignores SIGPIPE
 * and SIGXFSZ, and an ignored signal survives execve. */
void oci_reset_signals(void);

/* Run the plan's steps in order; `hooks_point` is called at OCI_STEP_HOOKS,
 * `wait_parent` for the parent's 'G' at OCI_STEP_WAIT_PARENT and its 'C' at
 * OCI_STEP_UNSHARE_CGROUPNS and OCI_STEP_WAIT_JOINED, and `console` at
 * OCI_STEP_CONSOLE, which leaves the pty's slave on fd 0. */
void oci_run_steps(const struct oci_plan *plan, void (*hooks_point)(const struct oci_plan *),
                   void (*wait_parent)(const struct oci_plan *, char type),
                   void (*console)(const struct oci_plan *));

/* Build the seccomp filter (errors surface before "created"), then load it:
 * oci_load_seccomp returns the listener fd with notify, else -1. */
void oci_prepare_seccomp(const struct oci_seccomp *s);
int oci_load_seccomp(void);

/* LSM settings (lsm.c): open the process's /proc/self/attr files and label the session
 * keyring to come (before the steps); write them (once the steps are done); label a
 * file (OCI_STEP_FILE_LABEL). Failures name the config field. */
void oci_lsm_prepare(const struct oci_plan *plan);
void oci_lsm_apply(const struct oci_process *p);
void oci_set_file_label(int rootfd, const struct oci_step *s);

/* process.scheduler, process.ioPriority, linux.personality, linux.memoryPolicy: the init
 * sets them on itself (native/process.c); a failure names the field. */
void oci_set_process_attrs(const struct oci_process *p);

#endif
