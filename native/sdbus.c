/* The systemd cgroup driver's D-Bus client (ociruntime/systemd_bus.py): libsystemd's
 * sd-bus, as crun uses it, loaded at run time (dlopen "libsystemd.so.0", the few
 * functions by dlsym, their prototypes declared here): the helper builds without
 * libsystemd's headers, and a host without the library runs everything but
 * --systemd-cgroup. One call at a time, from one thread; a bus is not used after a fork. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "oci_native.h"

/* sd-bus.h's types and prototypes, as libsystemd.so.0 exports them (a stable ABI). */
typedef struct sd_bus sd_bus;
typedef struct sd_bus_message sd_bus_message;
typedef struct sd_bus_slot sd_bus_slot;
typedef struct {
    const char *name;
    const char *message;
    int _need_free;
} sd_bus_error;
typedef int (*sd_bus_message_handler_t)(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

#define SD_FUNCTIONS(X) \
    X(int, sd_bus_open_system, (sd_bus **ret)) \
    X(int, sd_bus_new, (sd_bus **ret)) \
    X(int, sd_bus_set_fd, (sd_bus *bus, int input_fd, int output_fd)) \
    X(int, sd_bus_start, (sd_bus *bus)) \
    X(sd_bus *, sd_bus_flush_close_unref, (sd_bus *bus)) \
    X(int, sd_bus_call, (sd_bus *bus, sd_bus_message *m, uint64_t usec, sd_bus_error *ret_error, \
                         sd_bus_message **reply)) \
    X(int, sd_bus_process, (sd_bus *bus, sd_bus_message **r)) \
    X(int, sd_bus_wait, (sd_bus *bus, uint64_t timeout_usec)) \
    X(int, sd_bus_add_match_async, (sd_bus *bus, sd_bus_slot **slot, const char *match, \
                                    sd_bus_message_handler_t callback, sd_bus_message_handler_t install_callback, \
                                    void *userdata)) \
    X(sd_bus_slot *, sd_bus_slot_unref, (sd_bus_slot *slot)) \
    X(int, sd_bus_get_property_string, (sd_bus *bus, const char *destination, const char *path, \
                                        const char *interface, const char *member, sd_bus_error *ret_error, \
                                        char **ret)) \
    X(int, sd_bus_message_new_method_call, (sd_bus *bus, sd_bus_message **m, const char *destination, \
                                            const char *path, const char *interface, const char *member)) \
    X(sd_bus_message *, sd_bus_message_unref, (sd_bus_message *m)) \
    X(int, sd_bus_message_seal, (sd_bus_message *m, uint64_t cookie, uint64_t timeout_usec)) \
    X(int, sd_bus_message_append, (sd_bus_message *m, const char *types, ...)) \
    X(int, sd_bus_message_append_basic, (sd_bus_message *m, char type, const void *p)) \
    X(int, sd_bus_message_append_array, (sd_bus_message *m, char type, const void *ptr, size_t size)) \
    X(int, sd_bus_message_open_container, (sd_bus_message *m, char type, const char *contents)) \
    X(int, sd_bus_message_close_container, (sd_bus_message *m)) \
    X(int, sd_bus_message_read, (sd_bus_message *m, const char *types, ...)) \
    X(int, sd_bus_message_read_basic, (sd_bus_message *m, char type, void *p)) \
    X(int, sd_bus_message_enter_container, (sd_bus_message *m, char type, const char *contents)) \
    X(int, sd_bus_message_exit_container, (sd_bus_message *m)) \
    X(int, sd_bus_message_peek_type, (sd_bus_message *m, char *type, const char **contents)) \
    X(int, sd_bus_message_rewind, (sd_bus_message *m, int complete)) \
    X(const sd_bus_error *, sd_bus_message_get_error, (sd_bus_message *m)) \
    X(void, sd_bus_error_free, (sd_bus_error *e))

#define SD_POINTER(ret, name, args) ret (*name) args;
static struct {
    SD_FUNCTIONS(SD_POINTER)
} sd;
static void *library;

#define DESTINATION "org.freedesktop.systemd1"
#define PATH "/org/freedesktop/systemd1"
#define MANAGER "org.freedesktop.systemd1.Manager"

struct oci_sd_bus {
    sd_bus *bus;
    uint64_t timeout;           /* µs, for a call and for a job */
};

__attribute__((format(printf, 2, 3)))
static int fail(struct oci_sd_reply *r, const char *fmt, ...)
{
    va_list ap;

    r->error[0] = 0;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* A D-Bus error (a reply's, or one sd-bus made from an errno), else step: strerror. */
static int bus_fail(struct oci_sd_reply *r, const sd_bus_error *e, int err, const char *step)
{
    if (e && e->name) {
        snprintf(r->error, sizeof(r->error), "%s", e->name);
        snprintf(r->message, sizeof(r->message), "%s", e->message ? e->message : e->name);
        return -1;
    }
    return fail(r, "%s: %s", step, strerror(-err));
}

int oci_sd_load(const char *name, struct oci_sd_reply *r)
{
    void *handle;

    if (library)
        return 0;
    handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!handle)
        return fail(r, "%s", dlerror());
#define SD_RESOLVE(ret, fn, args) \
    *(void **)&sd.fn = dlsym(handle, #fn); \
    if (!sd.fn) { \
        fail(r, "%s has no %s (a libsystemd older than 237?)", name, #fn); \
        dlclose(handle); \
        return -2; \
    }
    SD_FUNCTIONS(SD_RESOLVE)
    library = handle;
    return 0;
}

struct oci_sd_bus *oci_sd_open(unsigned int timeout, struct oci_sd_reply *r)
{
    struct oci_sd_bus *b;
    int err;

    if (!library) {
        fail(r, "libsystemd is not loaded");
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (!b) {
        fail(r, "%s", strerror(ENOMEM));
        return NULL;
    }
    b->timeout = (uint64_t)timeout * 1000000;
    err = sd.sd_bus_open_system(&b->bus);
    if (err < 0) {
        free(b);
        fail(r, "%s", strerror(-err));
        return NULL;
    }
    return b;
}

void oci_sd_close(struct oci_sd_bus *b)
{
    if (!b)
        return;
    sd.sd_bus_flush_close_unref(b->bus);
    free(b);
}

/* --- the property list ---------------------------------------------------------------- */

static int append_value(sd_bus_message *m, const struct oci_sd_property *p)
{
    const char *sig = p->signature;
    int i, err;

    if (sig[0] && !sig[1]) {
        union { int b; uint8_t y; int16_t n; uint16_t q; int32_t i; uint32_t u; int64_t x; uint64_t t; double d; } v;

        switch (sig[0]) {
        case 's': return sd.sd_bus_message_append_basic(m, 's', p->s ? p->s : "");
        case 'b': v.b = p->u != 0; break;
        case 'y': v.y = p->u; break;
        case 'n': v.n = p->i; break;
        case 'q': v.q = p->u; break;
        case 'i': v.i = p->i; break;
        case 'u': v.u = p->u; break;
        case 'x': v.x = p->i; break;
        case 't': v.t = p->u; break;
        case 'd': v.d = p->d; break;
        default: return -EINVAL;
        }
        return sd.sd_bus_message_append_basic(m, sig[0], &v);
    }
    if (strcmp(sig, "ay") == 0)
        return sd.sd_bus_message_append_array(m, 'y', p->bytes ? (const void *)p->bytes : "", p->n);
    if (strcmp(sig, "au") == 0)
        return sd.sd_bus_message_append_array(m, 'u', p->u32 ? (const void *)p->u32 : "", (size_t)p->n * 4);
    if (strcmp(sig, "a(ss)") == 0) {
        err = sd.sd_bus_message_open_container(m, 'a', "(ss)");
        for (i = 0; err >= 0 && i < p->n; i++)
            err = sd.sd_bus_message_append(m, "(ss)", p->pairs[2 * i], p->pairs[2 * i + 1]);
        return err < 0 ? err : sd.sd_bus_message_close_container(m);
    }
    return -EINVAL;
}

/* a(sv): each property a (name, variant) struct. */
static int append_properties(sd_bus_message *m, const struct oci_sd_property *props, int n,
                             struct oci_sd_reply *r)
{
    int i, err;

    err = sd.sd_bus_message_open_container(m, 'a', "(sv)");
    for (i = 0; err >= 0 && i < n; i++) {
        err = sd.sd_bus_message_open_container(m, 'r', "sv");
        if (err >= 0)
            err = sd.sd_bus_message_append_basic(m, 's', props[i].name);
        if (err >= 0)
            err = sd.sd_bus_message_open_container(m, 'v', props[i].signature);
        if (err >= 0)
            err = append_value(m, &props[i]);
        if (err >= 0)
            err = sd.sd_bus_message_close_container(m);
        if (err >= 0)
            err = sd.sd_bus_message_close_container(m);
        if (err < 0)
            return fail(r, "the unit property %s (D-Bus type %s): %s", props[i].name, props[i].signature,
                        strerror(-err));
    }
    if (err >= 0)
        err = sd.sd_bus_message_close_container(m);
    return err < 0 ? fail(r, "the unit properties: %s", strerror(-err)) : 0;
}

/* StartTransientUnit's arguments (ssa(sv)a(sa(sv))): the unit, mode "replace", its
 * properties, no auxiliary units. */
static int append_start(sd_bus_message *m, const char *unit, const struct oci_sd_property *props, int n,
                        struct oci_sd_reply *r)
{
    int err = sd.sd_bus_message_append(m, "ss", unit, "replace");

    if (err < 0)
        return fail(r, "StartTransientUnit: %s", strerror(-err));
    if (append_properties(m, props, n, r) < 0)
        return -1;
    err = sd.sd_bus_message_append(m, "a(sa(sv))", 0);
    return err < 0 ? fail(r, "StartTransientUnit: %s", strerror(-err)) : 0;
}

/* --- calls and jobs ------------------------------------------------------------------- */

static int new_call(struct oci_sd_bus *b, const char *method, sd_bus_message **m, struct oci_sd_reply *r)
{
    int err = sd.sd_bus_message_new_method_call(b->bus, m, DESTINATION, PATH, MANAGER, method);

    return err < 0 ? fail(r, "%s: %s", method, strerror(-err)) : 0;
}

/* Send the call and take its reply; on an error reply, its name and message. */
static int call(struct oci_sd_bus *b, sd_bus_message *m, const char *method, sd_bus_message **reply,
                struct oci_sd_reply *r)
{
    sd_bus_error e = {0};
    int err = sd.sd_bus_call(b->bus, m, b->timeout, &e, reply);

    sd.sd_bus_message_unref(m);
    if (err < 0) {
        bus_fail(r, &e, err, method);
        sd.sd_bus_error_free(&e);
        return -1;
    }
    return 0;
}

struct job_wait {
    const char *path;           /* the job's object path, once the call returned it */
    int done;
    int match_failed;
    struct oci_sd_reply *r;
};

/* JobRemoved (uoss): id, job path, unit, result. */
static int job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    struct job_wait *w = userdata;
    const char *path, *unit, *result;
    uint32_t id;

    if (w->done || !w->path || sd.sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
        return 0;
    if (strcmp(path, w->path) == 0) {
        snprintf(w->r->result, sizeof(w->r->result), "%s", result);
        w->done = 1;
    }
    return 0;
}

static int match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
    struct job_wait *w = userdata;
    const sd_bus_error *e = sd.sd_bus_message_get_error(m);

    if (e && e->name) {
        bus_fail(w->r, e, 0, "AddMatch");
        w->match_failed = 1;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Call a method that queues a job on `unit` (its reply: the job's path) and wait for the
 * job's JobRemoved; its result in r->result. The match goes to the bus before the call
 * (asynchronously: the bus handles one connection's messages in order), so the signal
 * can't be missed; signals that come before the reply are queued until the wait. */
static int run_job(struct oci_sd_bus *b, sd_bus_message *m, const char *method, const char *unit,
                   struct oci_sd_reply *r)
{
    struct job_wait w = {.r = r};
    sd_bus_message *reply = NULL;
    sd_bus_slot *slot = NULL;
    const char *path;
    double deadline;
    int err, ret = -1;

    err = sd.sd_bus_add_match_async(b->bus, &slot,
                                    "type='signal',sender='" DESTINATION "',path='" PATH "',"
                                    "interface='" MANAGER "',member='JobRemoved'",
                                    job_removed, match_installed, &w);
    if (err < 0) {
        sd.sd_bus_message_unref(m);
        return fail(r, "AddMatch: %s", strerror(-err));
    }
    if (call(b, m, method, &reply, r) < 0)
        goto out;
    err = sd.sd_bus_message_read(reply, "o", &path);
    if (err < 0) {
        fail(r, "%s: its reply: %s", method, strerror(-err));
        goto out;
    }
    w.path = path;
    deadline = now() + b->timeout / 1e6;
    for (;;) {
        err = sd.sd_bus_process(b->bus, NULL);
        if (w.match_failed)
            goto out;
        if (w.done) {
            ret = 0;
            goto out;
        }
        if (err < 0) {
            fail(r, "the system bus, waiting for the job for %s: %s", unit, strerror(-err));
            goto out;
        }
        if (err > 0)
            continue;
        if (now() >= deadline) {
            fail(r, "systemd did not finish the job for %s in %.0fs", unit, b->timeout / 1e6);
            goto out;
        }
        err = sd.sd_bus_wait(b->bus, (uint64_t)((deadline - now()) * 1e6) + 1);
        if (err < 0 && err != -EINTR) {
            fail(r, "the system bus, waiting for the job for %s: %s", unit, strerror(-err));
            goto out;
        }
    }
out:
    sd.sd_bus_message_unref(reply);
    sd.sd_bus_slot_unref(slot);
    return ret;
}

int oci_sd_start_unit(struct oci_sd_bus *b, const char *unit, const struct oci_sd_property *props, int nprops,
                      struct oci_sd_reply *r)
{
    sd_bus_message *m;

    if (new_call(b, "StartTransientUnit", &m, r) < 0)
        return -1;
    if (append_start(m, unit, props, nprops, r) < 0) {
        sd.sd_bus_message_unref(m);
        return -1;
    }
    return run_job(b, m, "StartTransientUnit", unit, r);
}

int oci_sd_stop_unit(struct oci_sd_bus *b, const char *unit, struct oci_sd_reply *r)
{
    sd_bus_message *m;
    int err;

    if (new_call(b, "StopUnit", &m, r) < 0)
        return -1;
    err = sd.sd_bus_message_append(m, "ss", unit, "replace");
    if (err < 0) {
        sd.sd_bus_message_unref(m);
        return fail(r, "StopUnit: %s", strerror(-err));
    }
    return run_job(b, m, "StopUnit", unit, r);
}

int oci_sd_set_properties(struct oci_sd_bus *b, const char *unit, int runtime, const struct oci_sd_property *props,
                          int nprops, struct oci_sd_reply *r)
{
    sd_bus_message *m, *reply = NULL;
    int err;

    if (new_call(b, "SetUnitProperties", &m, r) < 0)
        return -1;
    err = sd.sd_bus_message_append(m, "sb", unit, runtime);
    if (err < 0 || append_properties(m, props, nprops, r) < 0) {
        sd.sd_bus_message_unref(m);
        return err < 0 ? fail(r, "SetUnitProperties: %s", strerror(-err)) : -1;
    }
    err = call(b, m, "SetUnitProperties", &reply, r);
    sd.sd_bus_message_unref(reply);
    return err;
}

int oci_sd_reset_failed(struct oci_sd_bus *b, const char *unit, struct oci_sd_reply *r)
{
    sd_bus_message *m, *reply = NULL;
    int err;

    if (new_call(b, "ResetFailedUnit", &m, r) < 0)
        return -1;
    err = sd.sd_bus_message_append(m, "s", unit);
    if (err < 0) {
        sd.sd_bus_message_unref(m);
        return fail(r, "ResetFailedUnit: %s", strerror(-err));
    }
    err = call(b, m, "ResetFailedUnit", &reply, r);
    sd.sd_bus_message_unref(reply);
    return err;
}

int oci_sd_version(struct oci_sd_bus *b, struct oci_sd_reply *r)
{
    sd_bus_error e = {0};
    char *version = NULL;
    int err = sd.sd_bus_get_property_string(b->bus, DESTINATION, PATH, MANAGER, "Version", &e, &version);

    if (err < 0) {
        bus_fail(r, &e, err, "Version");
        sd.sd_bus_error_free(&e);
        return -1;
    }
    snprintf(r->result, sizeof(r->result), "%s", version);
    free(version);
    return 0;
}

/* --- for the tests: a message read back ----------------------------------------------- */

static void put_string(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20 || *s == 0x7f)  /* UTF-8 as it is: the literal is read as UTF-8 */
            fprintf(f, "\\x%02x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

/* The rest of the current container as Python literals, each followed by ", ". */
static int dump(sd_bus_message *m, FILE *f)
{
    char type;
    const char *contents;
    int err;

    while ((err = sd.sd_bus_message_peek_type(m, &type, &contents)) > 0) {
        if (type == 'a' || type == 'r' || type == 'v' || type == 'e') {
            err = sd.sd_bus_message_enter_container(m, type, contents);
            if (err < 0)
                return err;
            fputs(type == 'a' ? "[" : "(", f);
            if (type == 'v') {
                put_string(f, contents);
                fputs(", ", f);
            }
            err = dump(m, f);
            if (err < 0)
                return err;
            fputs(type == 'a' ? "]" : ")", f);
            err = sd.sd_bus_message_exit_container(m);
            if (err < 0)
                return err;
        } else {
            union { int b; uint8_t y; int16_t n; uint16_t q; int32_t i; uint32_t u; int64_t x; uint64_t t;
                    double d; const char *s; } v;

            err = sd.sd_bus_message_read_basic(m, type, &v);
            if (err < 0)
                return err;
            switch (type) {
            case 'b': fputs(v.b ? "True" : "False", f); break;
            case 'y': fprintf(f, "%u", v.y); break;
            case 'n': fprintf(f, "%d", v.n); break;
            case 'q': fprintf(f, "%u", v.q); break;
            case 'i': fprintf(f, "%d", v.i); break;
            case 'u': fprintf(f, "%u", v.u); break;
            case 'x': fprintf(f, "%lld", (long long)v.x); break;
            case 't': fprintf(f, "%llu", (unsigned long long)v.t); break;
            case 'd': fprintf(f, "%.17g", v.d); break;
            case 's': case 'o': case 'g': put_string(f, v.s); break;
            default: return -EINVAL;
            }
        }
        fputs(", ", f);
    }
    return err;
}

int oci_sd_test_marshal(const char *unit, const struct oci_sd_property *props, int nprops, char *out, int outlen,
                        struct oci_sd_reply *r)
{
    sd_bus *bus = NULL;
    sd_bus_message *m = NULL;
    char *text = NULL;
    size_t size = 0;
    FILE *f = NULL;
    int fds[2], owned = 0, err, ret = -1;

    /* A bus that is started (a message needs one), on a socket nobody answers. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
        return fail(r, "socketpair: %s", strerror(errno));
    err = sd.sd_bus_new(&bus);
    if (err >= 0)
        err = sd.sd_bus_set_fd(bus, fds[0], fds[0]);
    owned = err >= 0;
    if (err >= 0)
        err = sd.sd_bus_start(bus);
    if (err < 0) {
        fail(r, "a bus on a socketpair: %s", strerror(-err));
        goto out;
    }
    err = sd.sd_bus_message_new_method_call(bus, &m, DESTINATION, PATH, MANAGER, "StartTransientUnit");
    if (err < 0) {
        fail(r, "StartTransientUnit: %s", strerror(-err));
        goto out;
    }
    if (append_start(m, unit, props, nprops, r) < 0)
        goto out;
    err = sd.sd_bus_message_seal(m, 1, 0);
    if (err >= 0)
        err = sd.sd_bus_message_rewind(m, 1);
    f = open_memstream(&text, &size);
    if (err >= 0 && !f)
        err = -errno;
    if (err >= 0) {
        fputc('(', f);
        err = dump(m, f);
        fputc(')', f);
    }
    if (f)
        fclose(f);
    if (err < 0) {
        fail(r, "reading the message back: %s", strerror(-err));
        goto out;
    }
    if (size >= (size_t)outlen) {
        fail(r, "reading the message back: %zu bytes, more than %d", size, outlen - 1);
        goto out;
    }
    memcpy(out, text, size + 1);
    ret = 0;
out:
    free(text);
    sd.sd_bus_message_unref(m);
    close(fds[1]);  /* first: the bus's flush then ends at EOF, instead of waiting for its authentication */
    if (bus)
        sd.sd_bus_flush_close_unref(bus);  /* closes fds[0] once it has it */
    if (!owned)
        close(fds[0]);
    return ret;
}
