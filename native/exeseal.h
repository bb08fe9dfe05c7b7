/* oci_sealed_exe(): see native/exeseal.c. */
#ifndef OCI_EXESEAL_H
#define OCI_EXESEAL_H

/* A close-on-exec fd to exec `path` from, whose file can't be written: on an
 * internal read-only overlayfs (the other layer: `empty_dir`, made if missing), else
 * a sealed memfd copy. -1 with errno when neither works. */
int oci_sealed_exe(const char *path, const char *empty_dir);

/* 1 if /proc/self/exe is on a read-only mount or a write-sealed memfd. */
int oci_exe_sealed(void);

#endif
