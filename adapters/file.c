/*
 * file.c: the "file" adapter type, and its destination role (the source
 * role is file_source.c; the table's functions dispatch on a->role): one
 * file per message in a directory, written so that a reader never sees a
 * partial file under a final name (write a dot-prefixed temporary, fsync,
 * rename without replacing, fsync the directory).
 *
 * Names: "<msg id>-<code>_<trigger>-<control id>.hl7" (".json" when the
 * payload is JSON), each part cut to [A-Za-z0-9._-]. A final name that
 * exists already means this message was delivered before (the engine
 * retries after a crash): it is left alone and the delivery reported OK.
 * Failures (ENOSPC, EACCES, ...) are reported retryable. The work is done
 * inside send(), synchronously; the outcome is reported from the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "delivery.h"
#include "file_source.h"
#include "log.h"

#define COMPONENT "file"
#define PART_MAX  64    /* bytes of each name part kept */

struct file_dest {
    struct adapter        *a;
    char                  *name;
    char                  *dir;
    struct event          *later;     /* reports the outcome from the loop */
    const struct delivery *d;         /* in flight; NULL when idle */
    enum delivery_outcome  outcome;
    char                   detail[512];
    struct adapter_stats   st;
};

static int dest_configure(struct adapter *a, char *err, size_t errlen)
{
    struct file_dest *s = a->state;
    const struct file_destination_opts *o = a->dst->opts;
    s->a = a;
    if (!(s->name = strdup(a->name)) || !(s->dir = strdup(o->directory))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* mkdir -p (the source makes its folders with it too) */
int file_make_dirs(const char *path)
{
    char *p = strdup(path);
    int rc = 0;
    if (!p)
        return -1;
    for (char *q = p + 1; *q && rc == 0; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        if (mkdir(p, 0750) != 0 && errno != EEXIST)
            rc = -1;
        *q = '/';
    }
    if (rc == 0 && mkdir(p, 0750) != 0 && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct file_dest *s = arg;
    (void)fd, (void)what;
    const struct delivery *d = s->d;
    char detail[sizeof s->detail];
    memcpy(detail, s->detail, sizeof detail);
    s->d = NULL;   /* idle before the report: the engine may send from it */
    if (d)
        delivery_report(s->a, d, s->outcome, detail);
}

static int dest_start(struct adapter *a, char *err, size_t errlen)
{
    struct file_dest *s = a->state;
    if (file_make_dirs(s->dir) != 0) {
        snprintf(err, errlen, "directory %s: cannot create it: %s", s->dir, strerror(errno));
        return -1;
    }
    if (!(s->later = evtimer_new(a->base, on_later, s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    log_info(COMPONENT, "destination ready", "destination=%s directory=%s", s->name, s->dir);
    return 0;
}

/* Append s (cut to PART_MAX bytes, anything outside [A-Za-z0-9._-] made
 * '_') to out. */
static void put_part(char *out, size_t outlen, const char *s)
{
    size_t o = strlen(out);
    for (size_t i = 0; s && s[i] && i < PART_MAX && o + 1 < outlen; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[o++] = ok ? c : '_';
    }
    out[o] = '\0';
}

static void final_name(const struct delivery *d, char *out, size_t outlen)
{
    snprintf(out, outlen, "%llu-", (unsigned long long)d->msg_id);
    put_part(out, outlen, d->code);
    put_part(out, outlen, "_");
    put_part(out, outlen, d->trigger);
    put_part(out, outlen, "-");
    put_part(out, outlen, d->control_id);
    bool json = d->len && d->payload[0] == '{';
    put_part(out, outlen, json ? ".json" : ".hl7");
}

int file_write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write d into the directory. Returns the outcome, with detail filled. */
static enum delivery_outcome deliver(struct file_dest *s, const struct delivery *d)
{
    char name[PART_MAX * 3 + 64], tmp[PART_MAX * 3 + 96];
    unsigned rnd = 0;
    int dfd = -1, fd = -1;
    enum delivery_outcome o = DELIVERY_RETRY;
    const char *step = "open the directory";

    final_name(d, name, sizeof name);
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (unsigned)getpid() ^ (unsigned)d->seq;
    snprintf(tmp, sizeof tmp, ".tmp-%llu-%08x", (unsigned long long)d->msg_id, rnd);

    if ((dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        goto fail;
    step = "create a temporary file";
    if ((fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0)
        goto fail;
    step = "write";
    if (file_write_all(fd, d->payload, d->len) != 0)
        goto fail_unlink;
    step = "fsync";
    if (fsync(fd) != 0)
        goto fail_unlink;
    step = "close";
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail_unlink;
    step = "rename into place";
    rc = renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* no RENAME_NOREPLACE here: a hard link never replaces either */
        rc = linkat(dfd, tmp, dfd, name, 0);
        if (rc == 0 || errno == EEXIST)
            unlinkat(dfd, tmp, 0);
    }
    if (rc != 0 && errno == EEXIST) {
        unlinkat(dfd, tmp, 0);
        snprintf(s->detail, sizeof s->detail, "%s/%s exists already: delivered before, kept",
                 s->dir, name);
        log_info(COMPONENT, "already delivered", "destination=%s file=%s msg_id=%llu", s->name,
                 name, (unsigned long long)d->msg_id);
        o = DELIVERY_OK;
        goto out;
    }
    if (rc != 0)
        goto fail_unlink;
    step = "fsync the directory";
    if (fsync(dfd) != 0)
        goto fail;   /* the file is in place; a retry finds it and reports OK */
    snprintf(s->detail, sizeof s->detail, "%s/%s", s->dir, name);
    s->st.messages++;
    s->st.bytes += d->len;
    o = DELIVERY_OK;
    goto out;

fail_unlink : {
    int e = errno;
    unlinkat(dfd, tmp, 0);
    errno = e;
}
fail:
    snprintf(s->detail, sizeof s->detail, "cannot %s for %s in %s: %s", step, name, s->dir,
             strerror(errno));
    log_warn(COMPONENT, "delivery failed: will retry", "destination=%s msg_id=%llu detail=%s",
             s->name, (unsigned long long)d->msg_id, s->detail);
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return o;
}

static int dest_send(struct adapter *a, const struct delivery *d)
{
    struct file_dest *s = a->state;
    if (!s->later || s->d)
        return -1;
    s->d = d;
    s->outcome = deliver(s, d);
    event_active(s->later, EV_TIMEOUT, 0);
    return 0;
}

static bool dest_busy(const struct adapter *a)
{
    const struct file_dest *s = a->state;
    return s->d != NULL;
}

static void dest_stop(struct adapter *a)
{
    struct file_dest *s = a->state;
    if (s->later)
        event_free(s->later);
    s->later = NULL;
    s->d = NULL;
    free(s->name);
    free(s->dir);
    s->name = s->dir = NULL;
}

static void dest_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct file_dest *s = a->state;
    *out = s->st;
}

/* The type serves both roles: each entry goes to the role's code. */

static int file_configure(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? dest_configure(a, err, errlen)
                                          : file_source_configure(a, err, errlen);
}

static int file_start(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? dest_start(a, err, errlen)
                                          : file_source_start(a, err, errlen);
}

static int file_send(struct adapter *a, const struct delivery *d)
{
    return a->role == ADAPTER_DESTINATION ? dest_send(a, d) : -1;
}

static void file_drain(struct adapter *a)
{
    if (a->role != ADAPTER_DESTINATION)   /* a destination finishes its file */
        file_source_drain(a);
}

static bool file_busy(const struct adapter *a)
{
    return a->role == ADAPTER_DESTINATION ? dest_busy(a) : file_source_busy(a);
}

static void file_stop(struct adapter *a)
{
    if (a->role == ADAPTER_DESTINATION)
        dest_stop(a);
    else
        file_source_stop(a);
}

static void file_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (a->role == ADAPTER_DESTINATION)
        dest_stats(a, out);
    else
        file_source_stats(a, out);
}

union file_instance {
    struct file_dest   dst;
    struct file_source src;
};

const struct adapter_type file_adapter = {
    .name = "file",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    .state_size = sizeof(union file_instance),
    .configure = file_configure,
    .start = file_start,
    .send = file_send,
    .drain = file_drain,
    .busy = file_busy,
    .stop = file_stop,
    .stats = file_stats,
};
