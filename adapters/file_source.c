/*
 * file_source.c: the "file" adapter type's source role (file.c dispatches
 * here on a->role). Takes HL7 v2 files dropped into a directory, stores
 * every message in them through ingest, and only then moves the file out.
 *
 * A file is taken when it is complete: a regular file (not a symlink),
 * its name not starting with '.' nor ending in .tmp or .part, and its
 * ctime (which every write, truncate, rename or chmod moves, and which
 * no program can set back) at least settle_ms old. Writers should write
 * under a dot or .tmp name and rename; settle_ms covers those that do not.
 *
 * Life of a file: rename into work_dir (the claim: atomic, so no file is
 * taken twice), read whole (at most max_file_bytes, else refused whole,
 * never truncated), split (bare messages one after another, or FHS/BHS
 * batches), each message submitted to ingest with origin peer = the file
 * name. When every message's reply has come back (committed), the file is
 * renamed into done_dir, or, when one or more were refused, into
 * error_dir with "<name>.reason" beside it (written first) saying which
 * and why. Accepted messages of such a file stay stored; dropping the
 * fixed file again is safe, they are recognised as duplicates (ingest
 * dedups on source, MSH-3, MSH-4, MSH-10). Nothing in done_dir or
 * error_dir is ever replaced: a name taken gets ".<ms>-<n>" added.
 *
 * A file the store could not take (disk full) stays in work_dir and is
 * submitted again every RETRY_MS. At start, files left in work_dir (a
 * crash, a stop while waiting) are taken again before new ones; messages
 * stored already are duplicates then, so nothing is lost or doubled.
 * Files are taken oldest first (mtime, then name), at most MAX_JOBS or
 * MAX_JOB_BYTES at a time.
 */
#include "file_source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#endif

#include <event2/event.h>

#include "adapter_config.h"
#include "buf.h"
#include "hl7.h"
#include "ingest.h"
#include "log.h"

#define COMPONENT     "file"
#define MAX_JOBS      64                    /* files in flight */
#define MAX_JOB_BYTES ((size_t)64 << 20)    /* bytes of files in flight (one file always) */
#define HEAD_KEEP     ((size_t)64 << 10)    /* of an oversize message, kept for the error store */
#define RETRY_MS      5000                  /* store failure or a move that failed */
#define NAME_KEEP     200                   /* bytes of a name kept when a suffix is added */

struct file_part {
    struct file_job *j;
    size_t           i;
};

struct file_result {
    enum ingest_outcome outcome;
    char               *why;     /* refusals: "MSH-10 "x": AR: text" */
};

struct file_job {
    struct file_source *s;       /* NULL once the source stopped: replies then just free */
    struct file_job    *next, *prev;
    char               *name;    /* in work_dir; the original name */
    char               *buf;
    size_t              len;
    struct hl7_batch    b;
    struct file_part   *parts;
    struct file_result *res;
    size_t              outstanding;
    bool                short_submit;  /* memory ran out before every message went */
    bool                moving;        /* all replied; the move out failed, to retry */
    char               *reason;        /* set when the move out goes to error_dir */
    struct event       *retry_ev;
};

static struct log_ratelimit rl_dir = LOG_RATELIMIT_INIT(60000, 2);
static struct log_ratelimit rl_skip = LOG_RATELIMIT_INIT(60000, 5);
static struct log_ratelimit rl_claim = LOG_RATELIMIT_INIT(10000, 5);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *join(const char *dir, const char *name)
{
    struct buf b = { 0 };
    if (buf_printf(&b, "%s/%s", dir, name)) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, NULL);
}

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* Rename without ever replacing: renameat2 where the kernel and the
 * filesystem have it, else link + unlink (a link never replaces). */
static int rename_noreplace(int ofd, const char *old, int nfd, const char *new)
{
    int rc = renameat2(ofd, old, nfd, new, RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        rc = linkat(ofd, old, nfd, new, 0);
        if (rc == 0)
            unlinkat(ofd, old, 0);
    }
    return rc;
}

static int open_dir(const char *path)
{
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void scan_later(struct file_source *s, int64_t ms);

/* ---------------------------------------------------------------- jobs */

static void job_free(struct file_job *j)
{
    if (!j)
        return;
    if (j->retry_ev)
        event_free(j->retry_ev);
    if (j->res)
        for (size_t i = 0; i < j->b.count; i++)
            free(j->res[i].why);
    free(j->res);
    free(j->parts);
    hl7_batch_free(&j->b);
    free(j->buf);
    free(j->reason);
    free(j->name);
    free(j);
}

/* Take j off its source's list and free it (its file stays where it is). */
static void job_drop(struct file_job *j)
{
    struct file_source *s = j->s;
    if (s) {
        if (j->prev)
            j->prev->next = j->next;
        else
            s->jobs = j->next;
        if (j->next)
            j->next->prev = j->prev;
        s->n_jobs--;
        s->job_bytes -= j->len;
    }
    job_free(j);
}

static struct file_job *job_find(const struct file_source *s, const char *name)
{
    for (struct file_job *j = s->jobs; j; j = j->next)
        if (strcmp(j->name, name) == 0)
            return j;
    return NULL;
}

/* Write reason as <cand>.reason in dfd, never replacing. Returns 0,
 * EEXIST-ish 1 when the name is taken, -1 on failure (errno). */
static int write_reason(int dfd, const char *cand, const char *reason)
{
    char *final = NULL, *tmp = NULL;
    unsigned rnd = 0;
    int fd = -1, rc = -1, e = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
        rnd = (unsigned)getpid() ^ (unsigned)mono_ms();
    struct buf b = { 0 };
    if (buf_printf(&b, "%s.reason", cand) || !(final = buf_take(&b, NULL)))
        goto nomem;
    if (buf_printf(&b, ".reason-%08x.tmp", rnd) || !(tmp = buf_take(&b, NULL)))
        goto nomem;
    if ((fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0)
        goto out;
    if (file_write_all(fd, reason, strlen(reason)) || fsync(fd))
        goto unlink;
    int c = close(fd);
    fd = -1;
    if (c)
        goto unlink;
    if (rename_noreplace(dfd, tmp, dfd, final) == 0) {
        rc = 0;
        goto out;
    }
    if (errno == EEXIST)
        rc = 1;
unlink:
    e = errno;
    unlinkat(dfd, tmp, 0);
    errno = e;
    goto out;
nomem:
    buf_free(&b);
    errno = ENOMEM;
out:
    e = errno;
    if (fd >= 0)
        close(fd);
    free(final);
    free(tmp);
    errno = e;
    return rc;
}

/* Move work_dir/name into dir under a name not taken (with the reason file
 * beside it when reason is set). Returns 0 (also when the work file has
 * gone: another instance finished it), or -1 with why filled. */
static int move_out(struct file_source *s, const char *name, const char *dir,
                    const char *reason, char *final, size_t finallen, char *why, size_t whylen)
{
    int wfd = open_dir(s->work), dfd = open_dir(dir), rc = -1;
    const char *step = "open the folder";
    int64_t ms = wall_ms();
    if (wfd < 0 || dfd < 0)
        goto fail;
    for (unsigned k = strlen(name) > NAME_KEEP ? 1 : 0; k < 1000; k++) {
        char cand[NAME_KEEP + 64];
        if (k == 0)
            snprintf(cand, sizeof cand, "%s", name);
        else
            snprintf(cand, sizeof cand, "%.*s.%lld-%u", NAME_KEEP, name, (long long)ms, k);
        struct stat st;
        if (fstatat(dfd, cand, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if (reason) {
            step = "write the reason file";
            int w = write_reason(dfd, cand, reason);
            if (w == 1)
                continue;
            if (w < 0)
                goto fail;
        }
        step = "move the file";
        if (rename_noreplace(wfd, name, dfd, cand) == 0) {
            fsync(dfd);
            snprintf(final, finallen, "%s/%s", dir, cand);
            rc = 0;
            goto out;
        }
        int e = errno;
        if (reason) {
            char r[NAME_KEEP + 80];
            snprintf(r, sizeof r, "%s.reason", cand);
            unlinkat(dfd, r, 0);
        }
        errno = e;
        if (e == EEXIST)
            continue;
        if (e == ENOENT) {
            snprintf(final, finallen, "(gone from %s already)", s->work);
            rc = 0;
            goto out;
        }
        goto fail;
    }
    errno = EEXIST;
    step = "find a free name";
fail:
    snprintf(why, whylen, "cannot %s in %s: %s", step, dir, strerror(errno));
out:
    if (wfd >= 0)
        close(wfd);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* Move the job's file out (done_dir, or error_dir with j->reason); on
 * failure retry later. Frees the job when it is moved. */
static void job_move(struct file_job *j)
{
    struct file_source *s = j->s;
    char final[4096], why[512];
    const char *dir = j->reason ? s->error : s->done;
    if (move_out(s, j->name, dir, j->reason, final, sizeof final, why, sizeof why) != 0) {
        log_error(COMPONENT, "cannot move the file out of the work folder: will retry",
                  "source=%s file=%s error=%s retry_ms=%d", s->name, j->name, why, RETRY_MS);
        j->moving = true;
        if (!s->draining) {
            struct timeval tv = { RETRY_MS / 1000, (RETRY_MS % 1000) * 1000 };
            evtimer_add(j->retry_ev, &tv);
        }
        return;
    }
    if (j->reason)
        log_warn(COMPONENT, "file refused: moved to the error folder", "source=%s file=%s to=%s",
                 s->name, j->name, final);
    else
        log_info(COMPONENT, "file stored: moved to the done folder",
                 "source=%s file=%s messages=%zu to=%s", s->name, j->name, j->b.count, final);
    job_drop(j);
    scan_later(s, 0);
}

/* Refuse the whole file: nothing in it was submitted. */
static void job_refuse_file(struct file_job *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void job_refuse_file(struct file_job *j, const char *fmt, ...)
{
    struct buf b = { 0 };
    va_list ap;
    buf_printf(&b, "file: %s\nsource: %s\nrefused whole: nothing in it was stored.\n"
               "reason: ", j->name, j->s->name);
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    buf_putc(&b, '\n');
    j->reason = buf_take(&b, NULL);
    if (!j->reason)
        j->reason = strdup("refused (out of memory writing the reason)\n");
    job_move(j);
}

/* "text" without control bytes, for one line of a reason file. */
static void put_line(struct buf *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_putc(b, (unsigned char)p[i] < 0x20 || p[i] == 0x7f ? ' ' : p[i]);
}

/* Why a message was refused, read back from its ACK: MSA-2 (the control
 * id), MSA-1, and ERR-8 (v2.5 on) or MSA-3. */
static char *ack_reason(const char *ack, size_t len)
{
    struct buf b = { 0 }, t = { 0 };
    struct hl7_msg *m = NULL;
    if (ack && len && hl7_parse(ack, len, NULL, &m, NULL) == 0) {
        struct hl7_span code = { 0 }, ctrl = { 0 };
        struct hl7_path p;
        hl7_get_str(m, "MSA-1", &code);
        hl7_get_str(m, "MSA-2", &ctrl);
        buf_puts(&b, "MSH-10 \"");
        put_line(&b, ctrl.p, ctrl.len > 64 ? 64 : ctrl.len);
        buf_puts(&b, "\": ");
        put_line(&b, code.p, code.len > 8 ? 8 : code.len);
        buf_puts(&b, ": ");
        if (hl7_path_parse("ERR-8", 5, &p, NULL) == 0)
            hl7_get_decoded(m, &p, &t);
        if (!t.len && hl7_path_parse("MSA-3", 5, &p, NULL) == 0)
            hl7_get_decoded(m, &p, &t);
        if (t.len)
            put_line(&b, t.p, t.len);
        else
            buf_puts(&b, "refused");
        hl7_free(m);
    } else {
        buf_puts(&b, "refused (its answer could not be read)");
    }
    buf_free(&t);
    return buf_take(&b, NULL);
}

static void job_submit(struct file_job *j);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct file_job *j = arg;
    (void)fd, (void)what;
    if (!j->s || j->s->draining)
        return;
    if (j->moving)
        job_move(j);
    else
        job_submit(j);
}

/* Every message has its reply: move the file out, or try again later. */
static void job_finish(struct file_job *j)
{
    struct file_source *s = j->s;
    if (!s) {
        job_free(j);
        return;
    }
    size_t acc = 0, dup = 0, ref = 0, fail = 0;
    for (size_t i = 0; i < j->b.count; i++) {
        switch (j->res[i].outcome) {
        case INGEST_ACCEPTED: acc++; break;
        case INGEST_DUPLICATE: dup++; break;
        case INGEST_REFUSED: ref++; break;
        case INGEST_FAILED: fail++; break;
        }
    }
    if (fail || j->short_submit) {
        if (s->draining) {
            log_warn(COMPONENT, "file left in the work folder: taken again at the next start",
                     "source=%s file=%s", s->name, j->name);
            job_drop(j);
            return;
        }
        log_warn(COMPONENT, "the store could not take the file's messages: will retry",
                 "source=%s file=%s failed=%zu retry_ms=%d", s->name, j->name,
                 fail + (j->short_submit ? 1 : 0), RETRY_MS);
        struct timeval tv = { RETRY_MS / 1000, (RETRY_MS % 1000) * 1000 };
        evtimer_add(j->retry_ev, &tv);
        return;
    }
    s->st.messages += j->b.count;
    s->st.bytes += j->len;
    if (ref) {
        struct buf b = { 0 };
        buf_printf(&b, "file: %s\nsource: %s\nmessages: %zu: %zu accepted, %zu duplicates, "
                   "%zu refused\n", j->name, s->name, j->b.count, acc, dup, ref);
        buf_puts(&b, "The accepted messages are stored and routed; the refused ones are in the "
                 "broker's error store. Drop the file again once fixed: the messages stored "
                 "already are recognised as duplicates.\n");
        for (size_t i = 0; i < j->b.count; i++) {
            if (j->res[i].outcome != INGEST_REFUSED)
                continue;
            size_t off = (size_t)(j->b.msgs[i].p - j->buf);
            buf_printf(&b, "message %zu of %zu (bytes %zu to %zu): %s\n", i + 1, j->b.count,
                       off, off + j->b.msgs[i].len, j->res[i].why ? j->res[i].why : "refused");
        }
        j->reason = buf_take(&b, NULL);
        if (!j->reason)
            j->reason = strdup("refused (out of memory writing the reason)\n");
    }
    job_move(j);
}

static void on_reply(void *ctx, const struct ingest_reply *r)
{
    struct file_part *p = ctx;
    struct file_job *j = p->j;
    j->res[p->i].outcome = r->outcome;
    if (r->outcome == INGEST_REFUSED && j->s && !j->res[p->i].why)
        j->res[p->i].why = ack_reason(r->ack, r->ack_len);
    if (--j->outstanding == 0)
        job_finish(j);
}

/* Submit every message of the file; the replies come after the commit.
 * May finish (and free) j at once when nothing could be submitted. */
static void job_submit(struct file_job *j)
{
    struct file_source *s = j->s;
    struct ingest_origin o = { .source = s->name, .peer = j->name, .tls_subject = NULL };
    struct ingest_policy pol = { .max_message_bytes = s->max_message,
                                 .check_nhs_number = s->check_nhs_number };
    j->short_submit = false;
    for (size_t i = 0; i < j->b.count; i++) {
        free(j->res[i].why);
        j->res[i] = (struct file_result){ .outcome = INGEST_FAILED };
        j->parts[i] = (struct file_part){ .j = j, .i = i };
        const struct hl7_span *m = &j->b.msgs[i];
        int rc;
        if (m->len > s->max_message)
            rc = ingest_refuse_oversize(s->a->ingest, &o, m->p, m->len > HEAD_KEEP ? HEAD_KEEP :
                                        m->len, m->len, s->max_message, on_reply, &j->parts[i]);
        else
            rc = ingest_submit(s->a->ingest, &o, &pol, m->p, m->len, on_reply, &j->parts[i]);
        if (rc) {
            j->short_submit = true;
            break;
        }
        j->outstanding++;
    }
    if (j->outstanding == 0)
        job_finish(j);
}

/* Read work_dir/name whole. Returns 0, 1 when the file is refused (why
 * filled), -1 when the failure may pass (no memory, no descriptors). */
static int job_read(struct file_job *j, char *why, size_t whylen)
{
    struct file_source *s = j->s;
    char *path = join(s->work, j->name);
    int fd = -1, rc = 1;
    if (!path)
        return -1;
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0) {
        rc = errno == EMFILE || errno == ENFILE || errno == ENOMEM ? -1 : 1;
        snprintf(why, whylen, "cannot open the file: %s", strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(why, whylen, "cannot read the file's status: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > s->max_file) {
        snprintf(why, whylen, "the file is %lld bytes, over this source's max_file_bytes of %zu; "
                 "it was not read", (long long)st.st_size, s->max_file);
        goto out;
    }
    size_t cap = (size_t)st.st_size + 1;
    if (!(j->buf = malloc(cap))) {
        rc = -1;
        goto out;
    }
    for (;;) {
        if (j->len == cap) {
            if (cap > s->max_file) {
                snprintf(why, whylen, "the file grew past this source's max_file_bytes of %zu "
                         "while being read; it was not taken", s->max_file);
                goto out;
            }
            size_t nc = cap * 2 > s->max_file + 1 ? s->max_file + 1 : cap * 2;
            char *n = realloc(j->buf, nc);
            if (!n) {
                rc = -1;
                goto out;
            }
            j->buf = n;
            cap = nc;
        }
        ssize_t r = read(fd, j->buf + j->len, cap - j->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "cannot read the file: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        j->len += (size_t)r;
    }
    if (j->len == 0) {
        snprintf(why, whylen, "the file is empty");
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* A file now in work_dir: read, split, submit. */
static void job_start(struct file_source *s, const char *name)
{
    struct file_job *j = calloc(1, sizeof *j);
    if (!j || !(j->name = strdup(name)) || !(j->retry_ev = evtimer_new(s->a->base, on_retry, j))) {
        job_free(j);
        log_error(COMPONENT, "out of memory: file left in the work folder", "source=%s file=%s",
                  s->name, name);
        return;
    }
    j->s = s;
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    s->n_jobs++;

    char why[512] = "";
    int rc = job_read(j, why, sizeof why);
    s->job_bytes += j->len;
    if (rc < 0) {
        log_warn(COMPONENT, "cannot take the file now: will retry", "source=%s file=%s error=%s",
                 s->name, name, why[0] ? why : "out of memory");
        job_drop(j);   /* stays in work_dir; recover() takes it on a later scan */
        s->recovered = false;
        return;
    }
    if (rc > 0) {
        job_refuse_file(j, "%s", why);
        return;
    }
    struct hl7_error err = { 0 };
    int src = hl7_batch_split(j->buf, j->len, &j->b, &err);
    if (src == HL7_E_NOMEM) {
        log_warn(COMPONENT, "out of memory splitting the file: will retry", "source=%s file=%s",
                 s->name, name);
        job_drop(j);
        s->recovered = false;
        return;
    }
    if (src == HL7_E_BATCH_COUNT) {
        job_refuse_file(j, "batch trailer count wrong (%s): the file may be incomplete", err.text);
        return;
    }
    if (src) {
        job_refuse_file(j, "not a file of HL7 v2 messages: %s", err.text);
        return;
    }
    if (j->b.count == 0) {   /* an empty batch: valid, nothing to store */
        job_move(j);
        return;
    }
    j->parts = calloc(j->b.count, sizeof *j->parts);
    j->res = calloc(j->b.count, sizeof *j->res);
    if (!j->parts || !j->res) {
        log_warn(COMPONENT, "out of memory: will retry", "source=%s file=%s", s->name, name);
        free(j->res);   /* job_free reads res up to b.count */
        j->res = NULL;
        job_drop(j);
        s->recovered = false;
        return;
    }
    log_debug(COMPONENT, "file taken", "source=%s file=%s bytes=%zu messages=%zu", s->name, name,
              j->len, j->b.count);
    job_submit(j);
}

/* --------------------------------------------------------------- scans */

struct cand {
    char   *name;
    int64_t mtime_ns;
};

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool budget_left(const struct file_source *s)
{
    return s->n_jobs < MAX_JOBS && s->job_bytes < MAX_JOB_BYTES;
}

/* The files in path that may be taken, oldest first. With settle, only
 * those unchanged for settle_ms; *wait_ms is lowered to when the next one
 * settles. Returns the count (*out to free), or -1 when path cannot be
 * read. */
static long collect(struct file_source *s, const char *path, bool settle, struct cand **out,
                    int64_t *wait_ms)
{
    DIR *d = opendir(path);
    struct cand *v = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    if (!d)
        return -1;
    int64_t now = wall_ms();
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        struct stat st;
        if (name[0] == '.' || ends_with_ci(name, ".tmp") || ends_with_ci(name, ".part"))
            continue;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
            continue;
        if (!S_ISREG(st.st_mode)) {
            log_msg_ratelimited(&rl_skip, LOG_LEVEL_WARN, COMPONENT,
                                "not a regular file: left alone", "source=%s file=%s/%s",
                                s->name, path, name);
            continue;
        }
        if (job_find(s, name))
            continue;
        if (settle) {
            int64_t changed = (int64_t)st.st_ctim.tv_sec * 1000 + st.st_ctim.tv_nsec / 1000000;
            int64_t age = now - changed;
            if (age < s->settle_ms) {
                int64_t left = s->settle_ms - age;
                if (left > s->settle_ms)
                    left = s->settle_ms;   /* a ctime in the future: look again later */
                if (left + 1 < *wait_ms)
                    *wait_ms = left + 1;
                continue;
            }
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct cand *nv = realloc(v, nc * sizeof *nv);
            if (!nv)
                break;   /* take what was listed; the rest next time */
            v = nv;
            cap = nc;
        }
        if (!(v[n].name = strdup(name)))
            break;
        v[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, cand_cmp);
    *out = v;
    return (long)n;
}

static void cands_free(struct cand *v, long n)
{
    for (long i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

/* Files left in work_dir (a crash, a stop): taken again before new ones. */
static void recover(struct file_source *s)
{
    struct cand *v;
    int64_t wait = 0;
    long n = collect(s, s->work, false, &v, &wait);
    if (n < 0) {
        log_msg_ratelimited(&rl_dir, LOG_LEVEL_ERROR, COMPONENT, "cannot read the work folder",
                            "source=%s work_dir=%s error=%s", s->name, s->work, strerror(errno));
        return;
    }
    long i = 0;
    for (; i < n && budget_left(s) && !s->draining; i++) {
        log_info(COMPONENT, "taking again a file left in the work folder", "source=%s file=%s",
                 s->name, v[i].name);
        job_start(s, v[i].name);
    }
    if (i == n)
        s->recovered = true;
    cands_free(v, n);
}

#ifdef __linux__
static void watch(struct file_source *s)
{
    if (s->ino_fd < 0 || s->ino_wd >= 0)
        return;
    s->ino_wd = inotify_add_watch(s->ino_fd, s->dir,
                                  IN_CLOSE_WRITE | IN_MOVED_TO | IN_ATTRIB | IN_MOVE_SELF |
                                  IN_DELETE_SELF | IN_ONLYDIR);
}
#else
static void watch(struct file_source *s)
{
    (void)s;
}
#endif

static void scan(struct file_source *s)
{
    s->scan_at = 0;
    if (s->draining)
        return;
    int64_t wait = s->poll_ms;
    if (!s->recovered)
        recover(s);
    if (!s->recovered) {   /* work_dir first; the rest waits for budget */
        scan_later(s, wait);
        return;
    }
    watch(s);
    struct cand *v;
    long n = collect(s, s->dir, true, &v, &wait);
    if (n < 0) {
        log_msg_ratelimited(&rl_dir, LOG_LEVEL_ERROR, COMPONENT, "cannot read the directory",
                            "source=%s directory=%s error=%s", s->name, s->dir, strerror(errno));
        scan_later(s, wait);
        return;
    }
    int dfd = open_dir(s->dir), wfd = open_dir(s->work);
    for (long i = 0; i < n && dfd >= 0 && wfd >= 0 && budget_left(s) && !s->draining; i++) {
        if (rename_noreplace(dfd, v[i].name, wfd, v[i].name) != 0) {
            if (errno == ENOENT)
                continue;   /* gone meanwhile */
            log_msg_ratelimited(&rl_claim, LOG_LEVEL_WARN, COMPONENT,
                                errno == EEXIST ? "a file of that name is still in the work "
                                "folder: this one is taken later" :
                                "cannot move the file into the work folder",
                                "source=%s file=%s error=%s", s->name, v[i].name, strerror(errno));
            continue;
        }
        job_start(s, v[i].name);
    }
    if (dfd < 0 || wfd < 0)
        log_msg_ratelimited(&rl_dir, LOG_LEVEL_ERROR, COMPONENT, "cannot open the folders",
                            "source=%s directory=%s work_dir=%s error=%s", s->name, s->dir,
                            s->work, strerror(errno));
    if (dfd >= 0)
        close(dfd);
    if (wfd >= 0)
        close(wfd);
    cands_free(v, n);
    scan_later(s, wait);
}

static void on_scan(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    scan(arg);
}

/* Scan in ms (0: at the next loop turn), unless one is due sooner. */
static void scan_later(struct file_source *s, int64_t ms)
{
    if (s->draining || !s->scan_ev)
        return;
    uint64_t at = mono_ms() + (uint64_t)ms;
    if (s->scan_at && s->scan_at <= at)
        return;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(s->scan_ev, &tv);
    s->scan_at = at;
}

#ifdef __linux__
static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct file_source *s = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    (void)what;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            if (e->mask & (IN_IGNORED | IN_MOVE_SELF | IN_DELETE_SELF)) {
                if (s->ino_wd >= 0 && (e->mask & IN_MOVE_SELF))
                    inotify_rm_watch(s->ino_fd, s->ino_wd);
                s->ino_wd = -1;   /* watched again once the directory is back */
            }
            p += sizeof *e + e->len;
        }
    }
    scan_later(s, 0);
}
#endif

/* ------------------------------------------------------------ the type */

int file_source_configure(struct adapter *a, char *err, size_t errlen)
{
    struct file_source *s = a->state;
    const struct file_source_opts *o = a->src->opts;
    s->a = a;
    s->ino_fd = s->ino_wd = s->lock_fd = -1;
    s->poll_ms = o->poll_ms;
    s->settle_ms = o->settle_ms;
    s->max_message = (size_t)o->max_message_bytes;
    s->check_nhs_number = a->src->check_nhs_number;
    s->max_file = (size_t)o->max_file_bytes;
    if (!o->work_dir || !o->done_dir || !o->error_dir) {
        snprintf(err, errlen, "work_dir, done_dir and error_dir are not set (config not checked)");
        return -1;
    }
    if (!(s->name = strdup(a->name)) || !(s->dir = strdup(o->directory)) ||
        !(s->work = strdup(o->work_dir)) || !(s->done = strdup(o->done_dir)) ||
        !(s->error = strdup(o->error_dir))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int file_source_start(struct adapter *a, char *err, size_t errlen)
{
    struct file_source *s = a->state;
    struct { const char *setting, *path; } dirs[] = {
        { "directory", s->dir }, { "work_dir", s->work },
        { "done_dir", s->done }, { "error_dir", s->error },
    };
    struct stat top = { 0 };
    for (size_t i = 0; i < 4; i++) {
        struct stat st;
        if (file_make_dirs(dirs[i].path) != 0 || stat(dirs[i].path, &st) != 0) {
            snprintf(err, errlen, "%s %s: cannot create it: %s", dirs[i].setting, dirs[i].path,
                     strerror(errno));
            return -1;
        }
        if (i == 0)
            top = st;
        else if (st.st_dev != top.st_dev) {
            snprintf(err, errlen, "%s %s is on another filesystem than directory %s: files are "
                     "moved by rename, which needs one filesystem", dirs[i].setting,
                     dirs[i].path, s->dir);
            return -1;
        }
    }
    /* One taker per work_dir: another source (here or in another broker)
       would take again the files this one has in flight. */
    char *lock = join(s->work, ".lock");
    if (!lock) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        snprintf(err, errlen, e == EWOULDBLOCK ? "work_dir %s is in use by another file source "
                 "(here or in another broker): give each source a folder of its own" :
                 "work_dir %s: cannot lock %s: %s", s->work, lock, strerror(e));
        free(lock);
        return -1;
    }
    free(lock);
    if (!(s->scan_ev = evtimer_new(a->base, on_scan, s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
#ifdef __linux__
    s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (s->ino_fd >= 0 &&
        !(s->ino_ev = event_new(a->base, s->ino_fd, EV_READ | EV_PERSIST, on_inotify, s))) {
        close(s->ino_fd);
        s->ino_fd = -1;
    }
    if (s->ino_ev)
        event_add(s->ino_ev, NULL);
    watch(s);
#endif
    if (s->ino_wd < 0)
        log_warn(COMPONENT, "no inotify watch on the directory: looking every poll_ms",
                 "source=%s directory=%s poll_ms=%lld", s->name, s->dir, (long long)s->poll_ms);
    s->started = true;
    scan_later(s, 0);
    log_info(COMPONENT, "source ready", "source=%s directory=%s work_dir=%s done_dir=%s "
             "error_dir=%s settle_ms=%lld", s->name, s->dir, s->work, s->done, s->error,
             (long long)s->settle_ms);
    return 0;
}

void file_source_drain(struct adapter *a)
{
    struct file_source *s = a->state;
    s->draining = true;
    if (s->scan_ev)
        evtimer_del(s->scan_ev);
    s->scan_at = 0;
    if (s->ino_ev)
        event_del(s->ino_ev);
    /* Files waiting for a retry stay in work_dir for the next start;
       those with replies outstanding finish. */
    for (struct file_job *j = s->jobs, *next; j; j = next) {
        next = j->next;
        if (j->outstanding == 0) {
            log_info(COMPONENT, "file left in the work folder: taken again at the next start",
                     "source=%s file=%s", s->name, j->name);
            job_drop(j);
        }
    }
}

bool file_source_busy(const struct adapter *a)
{
    const struct file_source *s = a->state;
    for (const struct file_job *j = s->jobs; j; j = j->next)
        if (j->outstanding)
            return true;
    return false;
}

void file_source_stop(struct adapter *a)
{
    struct file_source *s = a->state;
    s->draining = true;
    while (s->jobs) {
        struct file_job *j = s->jobs;
        if (j->outstanding) {
            /* replies still to come: they free it; the file stays in work_dir */
            s->jobs = j->next;
            if (s->jobs)
                s->jobs->prev = NULL;
            j->s = NULL;
            if (j->retry_ev)
                evtimer_del(j->retry_ev);
        } else {
            job_drop(j);
        }
    }
    s->n_jobs = 0;
    s->job_bytes = 0;
    if (s->scan_ev)
        event_free(s->scan_ev);
    s->scan_ev = NULL;
    if (s->ino_ev)
        event_free(s->ino_ev);
    s->ino_ev = NULL;
    if (s->ino_fd >= 0)
        close(s->ino_fd);
    s->ino_fd = s->ino_wd = -1;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    s->lock_fd = -1;
    free(s->name);
    free(s->dir);
    free(s->work);
    free(s->done);
    free(s->error);
    s->name = s->dir = s->work = s->done = s->error = NULL;
}

void file_source_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct file_source *s = a->state;
    *out = s->st;
    out->connections_open = s->n_jobs;
}
