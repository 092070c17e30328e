/*
 * admin.c: the admin HTTP server (see include/admin.h): bearer tokens, a
 * table of endpoints, JSON and Prometheus replies built from the figures
 * ingest, delivery, the sources and the store keep.
 */
#include "admin.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../adapters/tls.h"
#include "adapter.h"
#include "buf.h"
#include "config.h"
#include "dashboard.h"
#include "delivery.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "sources.h"
#include "store.h"
#include "version.h"
#include "admin_api.h"

#define COMPONENT "admin"

#define TOKEN_FILE_MAX   ((size_t)1 << 20)
#define MAX_BODY_BYTES   65536
#define MAX_HEADER_BYTES 16384
#define MAX_PATH_BYTES   2048
#define MAX_PATH_ARGS    4
#define TIMEOUT_SECS     30

/* ================================================================ tokens */

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > ADMIN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@'))
            return false;
    }
    return true;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

void admin_tokens_free(struct admin_tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

int admin_tokens_parse(const char *text, size_t len, const char *path,
                       struct admin_tokens *out, char *err, size_t errlen)
{
    struct admin_tokens t = { 0 };
    size_t cap = 0;
    unsigned line = 0;
    size_t i = 0;

    memset(out, 0, sizeof *out);
    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "%s: holds a NUL byte: a token file is text", path);
        return -1;
    }
    while (i < len) {
        line++;
        size_t start = i, end;
        while (i < len && text[i] != '\n')
            i++;
        end = i;
        if (i < len)
            i++;   /* the \n */
        if (end > start && text[end - 1] == '\r')
            end--;
        const char *p = text + start, *e = text + end;
        while (p < e && blank(*p))
            p++;
        while (e > p && blank(e[-1]))
            e--;
        if (p == e || *p == '#')
            continue;
        const char *name = p;
        while (p < e && !blank(*p))
            p++;
        size_t name_len = (size_t)(p - name);
        while (p < e && blank(*p))
            p++;
        const char *tok = p;
        while (p < e && !blank(*p))
            p++;
        size_t tok_len = (size_t)(p - tok);
        while (p < e && blank(*p))
            p++;
        if (!name_ok(name, name_len)) {
            snprintf(err, errlen, "%s:%u: the name must be 1 to %d of A-Z a-z 0-9 . _ - @ "
                     "(a line is \"NAME TOKEN\")", path, line, ADMIN_NAME_MAX);
            goto fail;
        }
        if (tok_len == 0) {
            snprintf(err, errlen, "%s:%u: no token after the name %.*s (a line is \"NAME TOKEN\")",
                     path, line, (int)name_len, name);
            goto fail;
        }
        if (p != e) {
            snprintf(err, errlen, "%s:%u: more than two fields (a line is \"NAME TOKEN\"; a "
                     "token holds no spaces)", path, line);
            goto fail;
        }
        if (tok_len < ADMIN_TOKEN_MIN || tok_len > ADMIN_TOKEN_MAX) {
            snprintf(err, errlen, "%s:%u: the token of %.*s is %zu characters: it must be %d "
                     "to %d (e.g. openssl rand -hex 32)", path, line, (int)name_len, name,
                     tok_len, ADMIN_TOKEN_MIN, ADMIN_TOKEN_MAX);
            goto fail;
        }
        for (size_t k = 0; k < tok_len; k++) {
            unsigned char c = (unsigned char)tok[k];
            if (c <= 0x20 || c >= 0x7f) {
                snprintf(err, errlen, "%s:%u: the token of %.*s holds a character that is not "
                         "printable ASCII", path, line, (int)name_len, name);
                goto fail;
            }
        }
        unsigned char digest[32];
        SHA256((const unsigned char *)tok, tok_len, digest);
        for (size_t k = 0; k < t.n; k++) {
            if (strlen(t.v[k].name) == name_len && memcmp(t.v[k].name, name, name_len) == 0) {
                snprintf(err, errlen, "%s:%u: the name %.*s is given twice", path, line,
                         (int)name_len, name);
                goto fail;
            }
            if (memcmp(t.v[k].digest, digest, sizeof digest) == 0) {
                snprintf(err, errlen, "%s:%u: the token of %.*s is also the token of %s: "
                         "each name needs its own", path, line, (int)name_len, name,
                         t.v[k].name);
                goto fail;
            }
        }
        if (t.n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct admin_token *v = realloc(t.v, ncap * sizeof *v);
            if (!v)
                goto nomem;
            t.v = v;
            cap = ncap;
        }
        struct admin_token *nt = &t.v[t.n];
        if (!(nt->name = strndup(name, name_len)))
            goto nomem;
        memcpy(nt->digest, digest, sizeof digest);
        t.n++;
    }
    if (t.n == 0) {
        snprintf(err, errlen, "%s: holds no token (a line is \"NAME TOKEN\")", path);
        goto fail;
    }
    *out = t;
    return 0;
nomem:
    snprintf(err, errlen, "%s: out of memory", path);
fail:
    admin_tokens_free(&t);
    return -1;
}

int admin_tokens_load(const char *path, struct admin_tokens *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open the token file: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *text = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: the token file is not a regular file", path);
        goto out;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(err, errlen, "%s: the token file can be used by its group or other users "
                 "(mode %04o): make it private with chmod 600", path,
                 (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if ((size_t)st.st_size > TOKEN_FILE_MAX) {
        snprintf(err, errlen, "%s: the token file is larger than %zu bytes", path,
                 TOKEN_FILE_MAX);
        goto out;
    }
    if (!(text = malloc(TOKEN_FILE_MAX + 1))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, text + n, TOKEN_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read the token file: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > TOKEN_FILE_MAX) {
            snprintf(err, errlen, "%s: the token file is larger than %zu bytes", path,
                     TOKEN_FILE_MAX);
            goto out;
        }
    }
    rc = admin_tokens_parse(text, n, path, out, err, errlen);
out:
    if (text) {
        OPENSSL_cleanse(text, TOKEN_FILE_MAX + 1);
        free(text);
    }
    close(fd);
    return rc;
}

const char *admin_tokens_check(const struct admin_tokens *t, const char *token, size_t len)
{
    unsigned char digest[32];
    const char *who = NULL;
    SHA256((const unsigned char *)token, len, digest);
    for (size_t i = 0; i < t->n; i++)
        if (CRYPTO_memcmp(t->v[i].digest, digest, sizeof digest) == 0)
            who = t->v[i].name;   /* no early exit: every entry is compared */
    return who;
}

/* ================================================================ the server */

/* A destination's counters from engines since replaced (reloads). */
struct carry {
    char               *name;
    uint64_t            delivered, retried, dead;
    struct metrics_hist latency;
};

struct admin {
    struct event_base      *base;
    const struct config    *cfg;
    struct store           *store;
    struct ingest          *ingest;
    struct sources         *sources;
    struct delivery_engine *delivery;
    admin_reload_fn         reload;
    void                   *reload_ctx;
    struct objections      *objections;
    struct evhttp          *http;
    SSL_CTX                *ssl;
    char                  **subjects;
    size_t                  n_subjects;
    struct admin_tokens     tokens;
    struct carry           *carry;
    size_t                  n_carry;
    bool                    stopping;
    double                  start_time;   /* Unix seconds */
    uint64_t                requests;
    uint64_t                auth_missing, auth_invalid, auth_forbidden;
};

struct endpoint;

struct admin_request {
    struct admin          *a;
    struct evhttp_request *req;
    const struct endpoint *ep;
    const char            *actor;
    char                   actor_buf[ADMIN_NAME_MAX + 1];   /* a reload frees the tokens */
    char                   peer[96];
    char                  *args[MAX_PATH_ARGS];
    unsigned               n_args;
    struct evkeyvalq       query;
    char                  *body;
    size_t                 body_len;
    bool                   replied;
};

struct admin *admin_of(const struct admin_request *r)
{
    return r->a;
}

const struct config *admin_config(const struct admin *a)
{
    return a->cfg;
}

struct store *admin_store(const struct admin *a)
{
    return a->store;
}

struct objections *admin_objections(const struct admin *a)
{
    return a->objections;
}

struct delivery_engine *admin_delivery(const struct admin *a)
{
    return a->delivery;
}

int admin_call_reload(struct admin *a, struct buf *errors)
{
    if (!a->reload) {
        buf_puts(errors, "this server cannot reload its config");
        return -1;
    }
    return a->reload(a->reload_ctx, errors);
}

const char *admin_actor(const struct admin_request *r)
{
    return r->actor ? r->actor : "";
}

const char *admin_peer(const struct admin_request *r)
{
    return r->peer;
}

const char *admin_path_arg(const struct admin_request *r, unsigned i)
{
    return i < r->n_args ? r->args[i] : NULL;
}

const char *admin_body(const struct admin_request *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body ? r->body : "";
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- replies */

static void common_headers(struct evhttp_request *req, const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 414: return "URI Too Long";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return NULL;
}

void admin_reply_text(struct admin_request *r, int status, const char *content_type,
                      const char *text, size_t len)
{
    if (r->replied)
        return;
    r->replied = true;
    common_headers(r->req, content_type);
    struct evbuffer *b = evbuffer_new();
    if (b && len)
        evbuffer_add(b, text, len);
    evhttp_send_reply(r->req, status, reason_phrase(status), b);
    if (b)
        evbuffer_free(b);
}

void admin_reply_json(struct admin_request *r, int status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"error\": {\"status\": 500, \"code\": \"internal\", "
                                  "\"message\": \"out of memory\"}}\n";
        admin_reply_text(r, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t) {
        s = t;
        s[n++] = '\n';
        s[n] = '\0';
    }
    admin_reply_text(r, status, "application/json", s, n);
    free(s);
}

void admin_reply_header(struct admin_request *r, const char *name, const char *value)
{
    if (!r->replied)
        evhttp_add_header(evhttp_request_get_output_headers(r->req), name, value);
}

static json_t *error_json(int status, const char *code, const char *message)
{
    return json_pack("{s:{s:i,s:s,s:s}}", "error", "status", status, "code", code,
                     "message", message);
}

void admin_reply_error(struct admin_request *r, int status, const char *code,
                       const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    admin_reply_json(r, status, error_json(status, code, msg));
}

/* ---------------------------------------------------------------- query */

const char *admin_query(const struct admin_request *r, const char *name)
{
    return evhttp_find_header(&r->query, name);
}

int admin_query_u64(struct admin_request *r, const char *name, uint64_t def, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    const char *v = admin_query(r, name);
    if (!v) {
        *out = def;
        return 0;
    }
    uint64_t n = 0;
    bool ok = *v != '\0' && strlen(v) <= 20;
    for (const char *p = v; ok && *p; p++) {
        if (*p < '0' || *p > '9' || n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            ok = false;
        else
            n = n * 10 + (uint64_t)(*p - '0');
    }
    if (!ok || n < min || n > max) {
        admin_reply_error(r, 400, "bad_parameter", "%s must be a whole number from %llu to %llu",
                          name, (unsigned long long)min, (unsigned long long)max);
        return -1;
    }
    *out = n;
    return 0;
}

int admin_query_bool(struct admin_request *r, const char *name, bool def, bool *out)
{
    const char *v = admin_query(r, name);
    if (!v)
        *out = def;
    else if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = false;
    else {
        admin_reply_error(r, 400, "bad_parameter", "%s must be true or false", name);
        return -1;
    }
    return 0;
}

int admin_query_page(struct admin_request *r, struct admin_page *p)
{
    if (admin_query_u64(r, "limit", ADMIN_PAGE_DEFAULT, 1, ADMIN_PAGE_MAX, &p->limit) ||
        admin_query_u64(r, "offset", 0, 0, UINT64_MAX / 2, &p->offset))
        return -1;
    return 0;
}

void admin_page_json(json_t *obj, const struct admin_page *p, uint64_t total)
{
    json_t *next = p->offset + p->limit < total ? json_integer((json_int_t)(p->offset + p->limit))
                                                : json_null();
    json_object_set_new(obj, "paging",
                        json_pack("{s:I,s:I,s:I,s:o}", "offset", (json_int_t)p->offset,
                                  "limit", (json_int_t)p->limit, "total", (json_int_t)total,
                                  "next_offset", next));
}

/* ---------------------------------------------------------------- audit */

int admin_audit(struct admin_request *r, const char *action, const char *subject,
                const char *outcome, const char *details)
{
    char actor[256];
    snprintf(actor, sizeof actor, "admin=%s peer=%s", admin_actor(r), r->peer);
    struct store_audit au = {
        .time_ms = now_ms(), .actor = actor, .action = action, .subject = subject ? subject : "",
        .outcome = outcome ? outcome : "", .details = details ? details : "",
    };
    int rc;
    for (;;) {
        struct store_txn *t;
        if ((rc = store_begin(r->a->store, &t)))
            break;
        if ((rc = store_audit_append(t, &au, NULL)))
            store_abort(t);
        else
            rc = store_commit(t);
        if (rc != STORE_E_MAP_FULL || (rc = store_grow(r->a->store)))
            break;
    }
    if (rc)
        log_error(COMPONENT, "cannot write the audit record", "actor=%s action=%s error=%s "
                  "detail=%s", actor, action, store_strerror(rc), store_last_error(r->a->store));
    return rc;
}

/* ================================================================ figures */

struct snap_source {
    const char                 *name, *type;
    bool                        running;
    struct adapter_stats        as;
    struct ingest_source_stats  is;
};

struct snap_dest {
    const char                 *name, *type;
    bool                        engine;    /* the engine knows it (stats valid) */
    bool                        store_ok;  /* depth, oldest, dead read */
    struct delivery_dest_stats  ds;
    uint64_t                    depth, oldest_ms, dead;
};

struct snap {
    struct snap_source     *src;
    size_t                  n_src;
    struct snap_dest       *dst;
    size_t                  n_dst;
    struct ingest_stats     ing;
    size_t                  pending;
    struct store_env_stats  env;
    bool                    env_ok;
    long long               rss_bytes, open_fds, max_fds;
    uint64_t                now_ms;
};

static const struct carry *carry_find(const struct admin *a, const char *name)
{
    for (size_t i = 0; i < a->n_carry; i++)
        if (strcmp(a->carry[i].name, name) == 0)
            return &a->carry[i];
    return NULL;
}

static void read_process(struct snap *s)
{
    s->rss_bytes = s->open_fds = s->max_fds = -1;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        long long size, rss;
        if (fscanf(f, "%lld %lld", &size, &rss) == 2)
            s->rss_bytes = rss * (long long)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            n += e->d_name[0] != '.';
        closedir(d);
        s->open_fds = n - 1;   /* less the directory's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        s->max_fds = (long long)rl.rlim_cur;
}

static void snap_free(struct snap *s)
{
    free(s->src);
    free(s->dst);
}

static int snap_take(struct admin *a, struct snap *s)
{
    const struct config *cfg = a->cfg;
    memset(s, 0, sizeof *s);
    s->now_ms = now_ms();
    s->src = calloc(cfg->n_sources ? cfg->n_sources : 1, sizeof *s->src);
    s->dst = calloc(cfg->n_destinations ? cfg->n_destinations : 1, sizeof *s->dst);
    if (!s->src || !s->dst) {
        snap_free(s);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_sources; i++) {
        struct snap_source *x = &s->src[s->n_src++];
        x->name = cfg->sources[i].name;
        x->type = cfg->sources[i].type;
        const struct adapter *ad = sources_find(a->sources, x->name);
        x->running = ad != NULL;
        if (ad && ad->type->stats)
            ad->type->stats(ad, &x->as);
        ingest_get_source_stats(a->ingest, x->name, &x->is);
    }
    for (size_t i = 0; i < cfg->n_destinations; i++) {
        struct snap_dest *x = &s->dst[s->n_dst++];
        x->name = cfg->destinations[i].name;
        x->type = cfg->destinations[i].type;
        metrics_hist_init_latency(&x->ds.latency);
        x->engine = a->delivery && delivery_get_stats(a->delivery, x->name, &x->ds) == 0;
        const struct carry *c = carry_find(a, x->name);
        if (c) {
            x->ds.delivered += c->delivered;
            x->ds.retried += c->retried;
            x->ds.dead_lettered += c->dead;
            metrics_hist_add(&x->ds.latency, &c->latency);
        }
        if (x->engine)
            x->store_ok = store_outbox_depth(a->store, x->ds.dest_id, &x->depth,
                                             &x->oldest_ms) == 0 &&
                          store_dead_count(a->store, x->ds.dest_id, &x->dead) == 0;
    }
    ingest_get_stats(a->ingest, &s->ing);
    s->pending = ingest_pending(a->ingest);
    s->env_ok = store_env_stats(a->store, &s->env) == 0;
    read_process(s);
    return 0;
}

static double oldest_age(const struct snap *s, const struct snap_dest *x)
{
    if (!x->depth || !x->oldest_ms || x->oldest_ms > s->now_ms)
        return 0;
    return (double)(s->now_ms - x->oldest_ms) / 1000.0;
}

static const char *dest_state(const struct snap_dest *x)
{
    if (!x->engine)
        return "stopped";
    if (x->ds.paused)
        return "paused";
    if (x->ds.in_flight)
        return "sending";
    if (x->ds.next_attempt_ms)
        return "retrying";
    return x->depth ? "queued" : "idle";
}

/* ---------------------------------------------------------------- Prometheus */

#define FAMILY(name, type, help) metrics_family(&w, "hl7broker_" name, type, help)

char *admin_metrics_text(struct admin *a, size_t *len)
{
    struct snap s;
    struct buf out = { 0 };
    struct metrics_writer w;
    if (snap_take(a, &s))
        return NULL;
    metrics_begin(&w, &out);

    /* sources */
#define SRC_COUNTER(nm, help, field) do { \
        FAMILY(nm, METRICS_COUNTER, help); \
        for (size_t i = 0; i < s.n_src; i++) { \
            struct metrics_label l = { "source", s.src[i].name }; \
            metrics_sample_u64(&w, &l, 1, s.src[i].field); \
        } \
    } while (0)
    FAMILY("source_up", METRICS_GAUGE, "1 when the source is listening, 0 when it is not");
    for (size_t i = 0; i < s.n_src; i++) {
        struct metrics_label l = { "source", s.src[i].name };
        metrics_sample_u64(&w, &l, 1, s.src[i].running);
    }
    SRC_COUNTER("source_connections_total", "connections accepted since start", as.connections);
    FAMILY("source_connections_open", METRICS_GAUGE, "connections open now");
    for (size_t i = 0; i < s.n_src; i++) {
        struct metrics_label l = { "source", s.src[i].name };
        metrics_sample_u64(&w, &l, 1, s.src[i].as.connections_open);
    }
    SRC_COUNTER("source_connections_refused_total",
                "connections refused (address not allowed, too many) since start",
                as.refused_connections);
    SRC_COUNTER("source_tls_failures_total", "TLS handshakes failed or refused since start",
                as.tls_failures);
    SRC_COUNTER("source_bytes_received_total", "bytes of messages received since start",
                as.bytes);
    SRC_COUNTER("source_messages_received_total",
                "messages answered since start (every outcome)", is.received);
    SRC_COUNTER("source_messages_accepted_total", "messages stored and acknowledged AA/CA",
                is.accepted);
    FAMILY("source_messages_refused_total", METRICS_COUNTER,
           "messages refused (AR/AE/CR/CE) and kept in the error store, by reason "
           "(not_hl7, no_control_id, version, processing_id, too_large, nhs_number: "
           "a failing NHS number check digit, itk_invalid)");
    for (size_t i = 0; i < s.n_src; i++) {
        for (int k = 0; k < INGEST_REFUSAL_COUNT; k++) {
            struct metrics_label l[2] = { { "source", s.src[i].name },
                                          { "reason", ingest_refusal_name(k) } };
            metrics_sample_u64(&w, l, 2, s.src[i].is.refused[k]);
        }
    }
    SRC_COUNTER("source_messages_duplicate_total",
                "resent messages answered with the stored ACK", is.duplicates);
    SRC_COUNTER("source_messages_failed_total",
                "messages the store could not take (answered AR: the sender retries)",
                is.failed);
    SRC_COUNTER("source_transform_errors_total",
                "messages stored with a route transform error", is.transform_errors);
    FAMILY("ingest_latency_seconds", METRICS_HISTOGRAM,
           "time from a message's receipt to its ACK (after the durable commit)");
    for (size_t i = 0; i < s.n_src; i++) {
        struct metrics_label l = { "source", s.src[i].name };
        metrics_histogram(&w, &l, 1, &s.src[i].is.latency);
    }

    /* destinations */
#define DST_SAMPLE(nm, type, help, expr) do { \
        FAMILY(nm, type, help); \
        for (size_t i = 0; i < s.n_dst; i++) { \
            const struct snap_dest *x = &s.dst[i]; \
            struct metrics_label l = { "destination", x->name }; \
            metrics_sample(&w, &l, 1, (double)(expr)); \
        } \
    } while (0)
    DST_SAMPLE("destination_queue_depth", METRICS_GAUGE,
               "messages waiting in the outbox (from the store)", x->depth);
    DST_SAMPLE("destination_oldest_age_seconds", METRICS_GAUGE,
               "age of the oldest queued message (0 when the queue is empty)",
               oldest_age(&s, x));
    DST_SAMPLE("destination_dead_letters", METRICS_GAUGE,
               "messages in the dead letters (from the store)", x->dead);
    DST_SAMPLE("destination_delivered_total", METRICS_COUNTER,
               "messages delivered since start", x->ds.delivered);
    DST_SAMPLE("destination_retries_total", METRICS_COUNTER,
               "failed attempts to be retried since start", x->ds.retried);
    DST_SAMPLE("destination_dead_lettered_total", METRICS_COUNTER,
               "messages moved to the dead letters since start", x->ds.dead_lettered);
    DST_SAMPLE("destination_in_flight", METRICS_GAUGE,
               "1 while a delivery awaits its outcome", x->ds.in_flight);
    DST_SAMPLE("destination_paused", METRICS_GAUGE, "1 when paused", x->ds.paused);
    DST_SAMPLE("destination_up", METRICS_GAUGE,
               "1 when the delivery engine runs this destination", x->engine);
    FAMILY("delivery_latency_seconds", METRICS_HISTOGRAM,
           "time from a message's receipt to its confirmed delivery");
    for (size_t i = 0; i < s.n_dst; i++) {
        struct metrics_label l = { "destination", s.dst[i].name };
        metrics_histogram(&w, &l, 1, &s.dst[i].ds.latency);
    }

    /* ingest and the store */
    FAMILY("ingest_commits_total", METRICS_COUNTER, "group commits (one fsync each) since start");
    metrics_sample_u64(&w, NULL, 0, s.ing.commits);
    FAMILY("ingest_commit_failures_total", METRICS_COUNTER,
           "messages refused because the store failed (AR) since start");
    metrics_sample_u64(&w, NULL, 0, s.ing.failed);
    FAMILY("ingest_commit_batch_size", METRICS_HISTOGRAM, "messages per group commit");
    metrics_histogram(&w, NULL, 0, &s.ing.batch_size);
    FAMILY("ingest_pending", METRICS_GAUGE, "messages waiting for the next commit");
    metrics_sample_u64(&w, NULL, 0, s.pending);
    FAMILY("store_map_grows_total", METRICS_COUNTER, "times the store map was doubled");
    metrics_sample_u64(&w, NULL, 0, s.ing.map_grows);
    if (s.env_ok) {
        FAMILY("store_map_bytes", METRICS_GAUGE, "size of the store's map now");
        metrics_sample_u64(&w, NULL, 0, s.env.map_bytes);
        FAMILY("store_map_max_bytes", METRICS_GAUGE, "largest the map may grow (max_map_bytes)");
        metrics_sample_u64(&w, NULL, 0, s.env.map_max);
        FAMILY("store_page_bytes", METRICS_GAUGE, "the store's page size");
        metrics_sample_u64(&w, NULL, 0, s.env.page_bytes);
        FAMILY("store_pages_used", METRICS_GAUGE, "pages written up to the highest in use");
        metrics_sample_u64(&w, NULL, 0, s.env.pages_used);
        FAMILY("store_pages_free", METRICS_GAUGE, "pages of the map never yet used");
        metrics_sample_u64(&w, NULL, 0, s.env.pages_free);
        FAMILY("store_free_bytes", METRICS_GAUGE,
               "bytes left before the store is full: unused map and growth to max_map_bytes");
        uint64_t room = s.env.pages_free * s.env.page_bytes;
        if (s.env.map_max > s.env.map_bytes)
            room += s.env.map_max - s.env.map_bytes;
        metrics_sample_u64(&w, NULL, 0, room);
    }

    /* the admin server and the process */
    FAMILY("admin_auth_failures_total", METRICS_COUNTER,
           "admin API requests refused for their credentials, by reason");
    {
        struct metrics_label l[1] = { { "reason", "missing" } };
        metrics_sample_u64(&w, l, 1, a->auth_missing);
        l[0].value = "invalid";
        metrics_sample_u64(&w, l, 1, a->auth_invalid);
        l[0].value = "client_certificate";
        metrics_sample_u64(&w, l, 1, a->auth_forbidden);
    }
    FAMILY("build_info", METRICS_GAUGE, "always 1; the version as a label");
    {
        struct metrics_label l = { "version", HL7BROKER_VERSION };
        metrics_sample_u64(&w, &l, 1, 1);
    }
    metrics_family(&w, "process_start_time_seconds", METRICS_GAUGE,
                   "start time of the process since the Unix epoch in seconds");
    metrics_sample(&w, NULL, 0, a->start_time);
    if (s.rss_bytes >= 0) {
        metrics_family(&w, "process_resident_memory_bytes", METRICS_GAUGE,
                       "resident memory size in bytes");
        metrics_sample(&w, NULL, 0, (double)s.rss_bytes);
    }
    if (s.open_fds >= 0) {
        metrics_family(&w, "process_open_fds", METRICS_GAUGE, "number of open file descriptors");
        metrics_sample(&w, NULL, 0, (double)s.open_fds);
    }
    if (s.max_fds >= 0) {
        metrics_family(&w, "process_max_fds", METRICS_GAUGE,
                       "maximum number of open file descriptors");
        metrics_sample(&w, NULL, 0, (double)s.max_fds);
    }
    snap_free(&s);
    if (metrics_end(&w)) {
        buf_free(&out);
        return NULL;
    }
    return buf_take(&out, len);
}

/* ---------------------------------------------------------------- JSON */

static json_t *hist_json(const struct metrics_hist *h)
{
    json_t *b = json_array();
    uint64_t cum = 0;
    for (unsigned i = 0; i <= h->n; i++) {
        cum += h->counts[i];
        json_array_append_new(b, json_pack("{s:o,s:I}", "le",
                                           i < h->n ? json_real(h->bounds[i]) : json_string("+Inf"),
                                           "count", (json_int_t)cum));
    }
    return json_pack("{s:I,s:f,s:o}", "count", (json_int_t)h->count, "sum", h->sum,
                     "buckets", b);
}

static json_t *source_json(const struct snap_source *x)
{
    json_t *refused = json_object();
    uint64_t total = 0;
    for (int k = 0; k < INGEST_REFUSAL_COUNT; k++) {
        json_object_set_new(refused, ingest_refusal_name(k),
                            json_integer((json_int_t)x->is.refused[k]));
        total += x->is.refused[k];
    }
    return json_pack("{s:s,s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o},s:o}",
                     "name", x->name, "type", x->type,
                     "state", x->running ? "listening" : "stopped",
                     "counters",
                     "connections", (json_int_t)x->as.connections,
                     "connections_open", (json_int_t)x->as.connections_open,
                     "connections_refused", (json_int_t)x->as.refused_connections,
                     "tls_failures", (json_int_t)x->as.tls_failures,
                     "bytes", (json_int_t)x->as.bytes,
                     "received", (json_int_t)x->is.received,
                     "accepted", (json_int_t)x->is.accepted,
                     "duplicates", (json_int_t)x->is.duplicates,
                     "failed", (json_int_t)x->is.failed,
                     "transform_errors", (json_int_t)x->is.transform_errors,
                     "refused", (json_int_t)total,
                     "refused_by_reason", refused,
                     "ingest_latency_seconds", hist_json(&x->is.latency));
}

static json_t *dest_json(const struct snap *s, const struct snap_dest *x)
{
    return json_pack("{s:s,s:s,s:s,s:b,s:I,s:f,s:I,s:b,s:{s:I,s:I,s:I},s:o}",
                     "name", x->name, "type", x->type, "state", dest_state(x),
                     "paused", x->ds.paused, "queue_depth", (json_int_t)x->depth,
                     "oldest_age_seconds", oldest_age(s, x), "dead_letters", (json_int_t)x->dead,
                     "in_flight", x->ds.in_flight,
                     "counters", "delivered", (json_int_t)x->ds.delivered,
                     "retried", (json_int_t)x->ds.retried,
                     "dead_lettered", (json_int_t)x->ds.dead_lettered,
                     "delivery_latency_seconds", hist_json(&x->ds.latency));
}

static json_t *sources_json(const struct snap *s, size_t from, size_t to)
{
    json_t *v = json_array();
    for (size_t i = from; i < to && i < s->n_src; i++)
        json_array_append_new(v, source_json(&s->src[i]));
    return v;
}

static json_t *dests_json(const struct snap *s, size_t from, size_t to)
{
    json_t *v = json_array();
    for (size_t i = from; i < to && i < s->n_dst; i++)
        json_array_append_new(v, dest_json(s, &s->dst[i]));
    return v;
}

/* ================================================================ endpoints */

static void h_healthz(struct admin_request *r)
{
    admin_reply_text(r, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void h_readyz(struct admin_request *r)
{
    struct admin *a = r->a;
    struct buf why = { 0 };
    const struct config *cfg = a->cfg;

#define NOT_READY(...) do { buf_puts(&why, why.len ? "; " : "not ready: "); \
                            buf_printf(&why, __VA_ARGS__); } while (0)
    if (a->stopping)
        NOT_READY("the broker is shutting down");
    struct store_txn *t;
    int rc = store_begin(a->store, &t);
    if (rc)
        NOT_READY("the store is not writable: %s", store_last_error(a->store));
    else
        store_abort(t);
    struct ingest_stats is;
    ingest_get_stats(a->ingest, &is);
    if (is.last_commit_failed)
        NOT_READY("the last commit to the store failed (messages were refused with AR)");
    struct store_env_stats env;
    if (store_env_stats(a->store, &env) == 0 && env.pages_free == 0 &&
        env.map_bytes >= env.map_max)
        NOT_READY("the store is full (max_map_bytes %llu reached)",
                  (unsigned long long)env.map_max);
    for (size_t i = 0; i < cfg->n_sources; i++)
        if (!sources_find(a->sources, cfg->sources[i].name))
            NOT_READY("source %s is not listening", cfg->sources[i].name);
    if (!a->delivery && cfg->n_destinations)
        NOT_READY("delivery is not running");
#undef NOT_READY
    if (why.len) {
        buf_putc(&why, '\n');
        admin_reply_text(r, 503, "text/plain; charset=utf-8", why.p, why.len);
    } else {
        admin_reply_text(r, 200, "text/plain; charset=utf-8", "ready\n", 6);
    }
    buf_free(&why);
}

static void h_metrics(struct admin_request *r)
{
    size_t len = 0;
    char *text = admin_metrics_text(r->a, &len);
    if (!text) {
        admin_reply_text(r, 500, "text/plain; charset=utf-8", "metrics unavailable\n", 20);
        return;
    }
    admin_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void h_stats(struct admin_request *r)
{
    struct snap s;
    if (snap_take(r->a, &s)) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    uint64_t room = s.env.pages_free * s.env.page_bytes +
                    (s.env.map_max > s.env.map_bytes ? s.env.map_max - s.env.map_bytes : 0);
    json_t *store = s.env_ok
        ? json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "map_bytes", (json_int_t)s.env.map_bytes,
                    "map_max_bytes", (json_int_t)s.env.map_max,
                    "page_bytes", (json_int_t)s.env.page_bytes,
                    "pages_used", (json_int_t)s.env.pages_used,
                    "pages_free", (json_int_t)s.env.pages_free,
                    "free_bytes", (json_int_t)room, "map_grows", (json_int_t)s.ing.map_grows)
        : json_null();
    json_t *body = json_pack(
        "{s:s,s:I,s:f,s:o,s:o,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o},s:o,s:{s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I}}",
        "version", HL7BROKER_VERSION, "time_ms", (json_int_t)s.now_ms,
        "start_time", r->a->start_time,
        "sources", sources_json(&s, 0, s.n_src),
        "destinations", dests_json(&s, 0, s.n_dst),
        "ingest", "accepted", (json_int_t)s.ing.accepted,
        "duplicates", (json_int_t)s.ing.duplicates, "refused", (json_int_t)s.ing.refused,
        "failed", (json_int_t)s.ing.failed, "commits", (json_int_t)s.ing.commits,
        "committed_messages", (json_int_t)s.ing.committed_msgs,
        "pending", (json_int_t)s.pending, "commit_batch_size", hist_json(&s.ing.batch_size),
        "store", store,
        "process", "resident_memory_bytes", (json_int_t)s.rss_bytes,
        "open_fds", (json_int_t)s.open_fds, "max_fds", (json_int_t)s.max_fds,
        "admin_auth_failures", "missing", (json_int_t)r->a->auth_missing,
        "invalid", (json_int_t)r->a->auth_invalid,
        "client_certificate", (json_int_t)r->a->auth_forbidden);
    snap_free(&s);
    admin_reply_json(r, 200, body);
}

static void h_sources(struct admin_request *r)
{
    struct admin_page p;
    struct snap s;
    if (admin_query_page(r, &p))
        return;
    if (snap_take(r->a, &s)) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t from = p.offset < s.n_src ? (size_t)p.offset : s.n_src;
    json_t *body = json_pack("{s:o}", "sources", sources_json(&s, from, from + p.limit));
    admin_page_json(body, &p, s.n_src);
    snap_free(&s);
    admin_reply_json(r, 200, body);
}

static void h_destinations(struct admin_request *r)
{
    struct admin_page p;
    struct snap s;
    if (admin_query_page(r, &p))
        return;
    if (snap_take(r->a, &s)) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t from = p.offset < s.n_dst ? (size_t)p.offset : s.n_dst;
    json_t *body = json_pack("{s:o}", "destinations", dests_json(&s, from, from + p.limit));
    admin_page_json(body, &p, s.n_dst);
    snap_free(&s);
    admin_reply_json(r, 200, body);
}

static void h_destination(struct admin_request *r)
{
    struct snap s;
    if (snap_take(r->a, &s)) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    const char *name = admin_path_arg(r, 0);
    for (size_t i = 0; i < s.n_dst; i++) {
        if (strcmp(s.dst[i].name, name) == 0) {
            json_t *body = dest_json(&s, &s.dst[i]);
            snap_free(&s);
            admin_reply_json(r, 200, body);
            return;
        }
    }
    snap_free(&s);
    admin_reply_error(r, 404, "not_found", "no destination is named %s", name);
}

/*
 * The endpoints. A pattern's "*" matches one path segment (URL-decoded,
 * see admin_path_arg). params lists the query parameters allowed (NULL:
 * none); any other is refused with 400. To add an endpoint: write a
 * handler that replies through admin_reply_*, and add a row.
 */
struct endpoint {
    enum evhttp_cmd_type method;
    const char          *pattern;
    bool                 auth;      /* a bearer token is required */
    const char *const   *params;
    void               (*fn)(struct admin_request *r);
};

static const char *const page_params[] = { "limit", "offset", NULL };

static const struct endpoint endpoints[] = {
    { EVHTTP_REQ_GET, "/",                         false, NULL,        dashboard_serve },
    { EVHTTP_REQ_GET, "/healthz",                  false, NULL,        h_healthz },
    { EVHTTP_REQ_GET, "/readyz",                   false, NULL,        h_readyz },
    { EVHTTP_REQ_GET, "/metrics",                  false, NULL,        h_metrics },
    { EVHTTP_REQ_GET, "/api/v1/stats",             true,  NULL,        h_stats },
    { EVHTTP_REQ_GET, "/api/v1/sources",           true,  page_params, h_sources },
    { EVHTTP_REQ_GET, "/api/v1/destinations",      true,  page_params, h_destinations },
    { EVHTTP_REQ_GET, "/api/v1/destinations/*",    true,  NULL,        h_destination },
    { EVHTTP_REQ_GET, "/api/v1/destinations/*/queue", true, page_params, admin_api_queue },
    { EVHTTP_REQ_GET, "/api/v1/destinations/*/dead", true, page_params,  admin_api_dead },
    { EVHTTP_REQ_POST, "/api/v1/destinations/*/pause", true, NULL,       admin_api_pause },
    { EVHTTP_REQ_POST, "/api/v1/destinations/*/resume", true, NULL,      admin_api_resume },
    { EVHTTP_REQ_POST, "/api/v1/destinations/*/dead/requeue", true, admin_api_seq_params,
      admin_api_requeue },
    { EVHTTP_REQ_POST, "/api/v1/destinations/*/dead/purge", true, admin_api_seq_params,
      admin_api_purge },
    { EVHTTP_REQ_GET, "/api/v1/messages",          true,  admin_api_search_params,
      admin_api_search },
    { EVHTTP_REQ_GET, "/api/v1/messages/*",        true,  NULL,        admin_api_message },
    { EVHTTP_REQ_POST, "/api/v1/messages/*/replay", true, admin_api_replay_params,
      admin_api_replay },
    { EVHTTP_REQ_POST, "/api/v1/reload",           true,  NULL,        admin_api_reload },
    { EVHTTP_REQ_GET, "/api/v1/objections",        true,  admin_api_objection_list_params,
      admin_api_objections },
    { EVHTTP_REQ_POST, "/api/v1/objections",       true,  admin_api_objection_params,
      admin_api_objection_add },
    { EVHTTP_REQ_DELETE, "/api/v1/objections",     true,  admin_api_objection_params,
      admin_api_objection_remove },
    { EVHTTP_REQ_GET, "/api/v1/audit",             true,  admin_api_audit_params,
      admin_api_audit },
};

#define N_ENDPOINTS (sizeof endpoints / sizeof endpoints[0])

/* ================================================================ dispatch */

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:    return "GET";
    case EVHTTP_REQ_POST:   return "POST";
    case EVHTTP_REQ_PUT:    return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD:   return "HEAD";
    default:                return "OTHER";
    }
}

static void free_args(struct admin_request *r)
{
    for (unsigned i = 0; i < r->n_args; i++)
        free(r->args[i]);
    r->n_args = 0;
}

/* Does path match pattern? Fills r->args with the "*" segments. -1 when
 * a matching segment does not decode (a NUL). */
static int match(const char *pattern, const char *path, struct admin_request *r)
{
    free_args(r);
    const char *p = pattern, *q = path;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return 0;
        p++, q++;
        size_t pl = strcspn(p, "/"), ql = strcspn(q, "/");
        if (pl == 1 && *p == '*') {
            if (ql == 0 || r->n_args == MAX_PATH_ARGS)
                return 0;
            char *seg = strndup(q, ql);
            size_t dl = 0;
            char *dec = seg ? evhttp_uridecode(seg, 0, &dl) : NULL;
            free(seg);
            if (!dec)
                return -1;
            if (dl != strlen(dec)) {
                free(dec);
                return -1;
            }
            r->args[r->n_args++] = dec;
        } else if (pl != ql || memcmp(p, q, pl) != 0) {
            return 0;
        }
        p += pl, q += ql;
    }
    return *p == '\0' && *q == '\0';
}

static void log_refusal(struct admin_request *r, const char *path, const char *why)
{
    static struct log_ratelimit rl = LOG_RATELIMIT_INIT(10000, 10);
    log_msg_ratelimited(&rl, LOG_LEVEL_WARN, COMPONENT, "request refused",
                        "peer=%s method=%s path=%.200s reason=%s", r->peer,
                        method_name(evhttp_request_get_command(r->req)), path, why);
}

static void unauthorized(struct admin_request *r, const char *path, bool missing)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(h, "WWW-Authenticate", missing
                      ? "Bearer realm=\"hl7broker\""
                      : "Bearer realm=\"hl7broker\", error=\"invalid_token\"");
    if (missing)
        r->a->auth_missing++;
    else
        r->a->auth_invalid++;
    log_refusal(r, path, missing ? "no bearer token" : "wrong bearer token");
    admin_reply_error(r, 401, missing ? "unauthorized" : "invalid_token",
                      missing ? "this endpoint needs an Authorization: Bearer token"
                              : "the bearer token is not valid");
}

/* The token owner, or NULL after replying 401. */
static const char *authenticate(struct admin_request *r, const char *path)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r->req),
                                       "Authorization");
    if (!h) {
        unauthorized(r, path, true);
        return NULL;
    }
    while (*h == ' ' || *h == '\t')
        h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        unauthorized(r, path, false);
        return NULL;
    }
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    const char *who = n && n <= ADMIN_TOKEN_MAX ? admin_tokens_check(&r->a->tokens, h, n) : NULL;
    if (!who)
        unauthorized(r, path, false);
    return who;
}

/* TLS: the client's certificate subject is in allowed_subjects. */
static bool subject_allowed(struct admin_request *r)
{
    struct admin *a = r->a;
    if (!a->ssl || !a->n_subjects)
        return true;
    struct evhttp_connection *c = evhttp_request_get_connection(r->req);
    struct bufferevent *bev = c ? evhttp_connection_get_bufferevent(c) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl)
        return false;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    X509 *cert = SSL_get1_peer_certificate(ssl);
#else
    X509 *cert = SSL_get_peer_certificate(ssl);
#endif
    bool ok = false;
    if (cert) {
        BIO *b = BIO_new(BIO_s_mem());
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
            char *p;
            long n = BIO_get_mem_data(b, &p);
            for (size_t i = 0; n >= 0 && i < a->n_subjects && !ok; i++)
                ok = strlen(a->subjects[i]) == (size_t)n &&
                     memcmp(a->subjects[i], p, (size_t)n) == 0;
        }
        BIO_free(b);
        X509_free(cert);
    }
    return ok;
}

/* Every query parameter is one the endpoint takes, given once. */
static bool check_query(struct admin_request *r)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->req);
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    if (q && evhttp_parse_query_str(q, &r->query) != 0) {
        admin_reply_error(r, 400, "bad_query", "the query string does not parse");
        return false;
    }
    for (struct evkeyval *kv = r->query.tqh_first; kv; kv = kv->next.tqe_next) {
        bool known = false;
        for (size_t i = 0; r->ep->params && r->ep->params[i] && !known; i++)
            known = strcmp(r->ep->params[i], kv->key) == 0;
        if (!known) {
            struct buf allowed = { 0 };
            for (size_t i = 0; r->ep->params && r->ep->params[i]; i++)
                buf_printf(&allowed, "%s%s", i ? ", " : "", r->ep->params[i]);
            admin_reply_error(r, 400, "bad_parameter", "unknown query parameter %.64s "
                              "(this endpoint takes: %s)", kv->key,
                              allowed.len ? allowed.p : "none");
            buf_free(&allowed);
            return false;
        }
        for (struct evkeyval *o = kv->next.tqe_next; o; o = o->next.tqe_next)
            if (strcmp(o->key, kv->key) == 0) {
                admin_reply_error(r, 400, "bad_parameter", "query parameter %.64s given twice",
                                  kv->key);
                return false;
            }
    }
    return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    struct admin_request r = { .a = a, .req = req };
    TAILQ_INIT(&r.query);
    a->requests++;

    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (conn)
        evhttp_connection_get_peer(conn, &addr, &port);
    snprintf(r.peer, sizeof r.peer, strchr(addr ? addr : "", ':') ? "[%s]:%u" : "%s:%u",
             addr ? addr : "?", (unsigned)port);

    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || !*path)
        path = "/";
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (strlen(path) > MAX_PATH_BYTES) {
        admin_reply_error(&r, 414, "uri_too_long", "the path is longer than %d bytes",
                          MAX_PATH_BYTES);
        goto out;
    }
    if (!subject_allowed(&r)) {
        a->auth_forbidden++;
        log_refusal(&r, path, "client certificate subject not allowed");
        admin_reply_error(&r, 403, "forbidden", "the client certificate is not allowed");
        goto out;
    }

    const struct endpoint *ep = NULL;
    struct buf allow = { 0 };
    bool bad_path = false;
    for (size_t i = 0; i < N_ENDPOINTS && !ep; i++) {
        int m = match(endpoints[i].pattern, path, &r);
        if (m < 0)
            bad_path = true;
        if (m <= 0)
            continue;
        bool head_get = method == EVHTTP_REQ_HEAD && endpoints[i].method == EVHTTP_REQ_GET;
        if (endpoints[i].method == method || head_get)
            ep = &endpoints[i];
        else
            buf_printf(&allow, "%s%s", allow.len ? ", " : "", method_name(endpoints[i].method));
    }
    if (!ep) {
        free_args(&r);
        if (allow.len) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow.p);
            admin_reply_error(&r, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)",
                              method_name(method), allow.p);
        } else if (bad_path) {
            admin_reply_error(&r, 400, "bad_path", "the path does not decode");
        } else {
            admin_reply_error(&r, 404, "not_found", "no such endpoint");
        }
        buf_free(&allow);
        goto out;
    }
    buf_free(&allow);
    r.ep = ep;
    if (ep->auth) {
        const char *who = authenticate(&r, path);
        if (!who)
            goto out;
        snprintf(r.actor_buf, sizeof r.actor_buf, "%s", who);
        r.actor = r.actor_buf;
    }
    if (!check_query(&r))
        goto out;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t blen = in ? evbuffer_get_length(in) : 0;
    if (blen) {
        if (!(r.body = malloc(blen + 1))) {
            admin_reply_error(&r, 500, "internal", "out of memory");
            goto out;
        }
        evbuffer_remove(in, r.body, blen);
        r.body[blen] = '\0';
        r.body_len = blen;
    }
    log_debug(COMPONENT, "request", "peer=%s actor=%s method=%s path=%.200s", r.peer,
              admin_actor(&r), method_name(method), path);
    ep->fn(&r);
    if (!r.replied)
        admin_reply_error(&r, 500, "internal", "the handler gave no reply");
out:
    free_args(&r);
    free(r.body);
    evhttp_clear_headers(&r.query);
}

/* ================================================================ lifecycle */

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    struct admin *a = arg;
    SSL *ssl = SSL_new(a->ssl);
    if (!ssl)
        return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static int tls_setup(struct admin *a, const struct config_tls_server *t, char *err, size_t errlen)
{
    char why[256];
    a->ssl = tls_context_new(TLS_server_method(), SSL_OP_CIPHER_SERVER_PREFERENCE, err, errlen);
    if (!a->ssl || tls_use_cert_key(a->ssl, t->cert, t->key, err, errlen))
        return -1;
    int verify = SSL_VERIFY_NONE;
    if (t->ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
        if (SSL_CTX_load_verify_locations(a->ssl, t->ca, NULL) != 1 || !names) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, errlen, "tls.ca: cannot use %s: %s", t->ca,
                     tls_error_text(why, sizeof why));
            return -1;
        }
        SSL_CTX_set_client_CA_list(a->ssl, names);
        verify = SSL_VERIFY_PEER;
    }
    if (t->require_client_cert)
        verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(a->ssl, verify, NULL);
    static const unsigned char sid[] = "hl7broker-admin";
    SSL_CTX_set_session_id_context(a->ssl, sid, sizeof sid - 1);
    if (t->allowed_subjects.n) {
        if (!(a->subjects = calloc(t->allowed_subjects.n, sizeof *a->subjects)))
            goto nomem;
        for (size_t i = 0; i < t->allowed_subjects.n; i++, a->n_subjects++)
            if (!(a->subjects[i] = strdup(t->allowed_subjects.v[i])))
                goto nomem;
    }
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int admin_new(const struct admin_opts *o, struct admin **out, char *err, size_t errlen)
{
    const struct config_admin *ac = &o->cfg->broker.admin;
    struct admin *a = calloc(1, sizeof *a);
    char host[256];
    unsigned port = 0;

    *out = NULL;
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->base = o->base;
    a->cfg = o->cfg;
    a->store = o->store;
    a->ingest = o->ingest;
    a->sources = o->sources;
    a->delivery = o->delivery;
    a->reload = o->reload;
    a->reload_ctx = o->reload_ctx;
    a->objections = o->objections;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->start_time = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;

    if (ac->token_file) {
        if (admin_tokens_load(ac->token_file, &a->tokens, err, errlen))
            goto fail;
    } else {
        log_warn(COMPONENT, "no token_file: every /api/v1 request will be refused",
                 "setting=broker.admin.token_file");
    }
    if (ac->tls && tls_setup(a, ac->tls, err, errlen))
        goto fail;
    if (!ac->listen || config_parse_hostport(ac->listen, host, sizeof host, &port) != 0) {
        snprintf(err, errlen, "broker.admin.listen: not a host:port");
        goto fail;
    }
    if (!(a->http = evhttp_new(o->base))) {
        snprintf(err, errlen, "cannot make the HTTP server");
        goto fail;
    }
    evhttp_set_max_body_size(a->http, MAX_BODY_BYTES);
    evhttp_set_max_headers_size(a->http, MAX_HEADER_BYTES);
    evhttp_set_timeout(a->http, TIMEOUT_SECS);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(a->http, on_request, a);
    if (a->ssl)
        evhttp_set_bevcb(a->http, tls_bev, a);
    if (!evhttp_bind_socket_with_handle(a->http, host, (ev_uint16_t)port)) {
        snprintf(err, errlen, "broker.admin.listen: cannot listen on %s: %s", ac->listen,
                 strerror(errno));
        goto fail;
    }
    log_info(COMPONENT, "listening", "listen=%s tls=%s tokens=%zu", ac->listen,
             a->ssl ? "on" : "off", a->tokens.n);
    *out = a;
    return 0;
fail:
    admin_free(a);
    return -1;
}

int admin_reload(struct admin *a)
{
    const char *file = a->cfg->broker.admin.token_file;
    struct admin_tokens t = { 0 };
    char err[512] = "";
    if (file && admin_tokens_load(file, &t, err, sizeof err)) {
        log_error(COMPONENT, "token file refused; the tokens in use stay", "error=%s", err);
        return -1;
    }
    admin_tokens_free(&a->tokens);
    a->tokens = t;
    log_info(COMPONENT, "tokens reloaded", "file=%s tokens=%zu", file ? file : "", t.n);
    return 0;
}

void admin_set_delivery(struct admin *a, struct delivery_engine *e)
{
    if (!a)
        return;
    if (a->delivery && a->delivery != e) {
        /* keep the old engine's counters, by destination name */
        const struct config *cfg = a->cfg;
        for (size_t i = 0; i < cfg->n_destinations; i++) {
            struct delivery_dest_stats st;
            const char *name = cfg->destinations[i].name;
            if (delivery_get_stats(a->delivery, name, &st) != 0)
                continue;
            struct carry *c = (struct carry *)carry_find(a, name);
            if (!c) {
                struct carry *v = realloc(a->carry, (a->n_carry + 1) * sizeof *v);
                if (!v)
                    continue;
                a->carry = v;
                c = &a->carry[a->n_carry];
                memset(c, 0, sizeof *c);
                if (!(c->name = strdup(name)))
                    continue;
                metrics_hist_init_latency(&c->latency);
                a->n_carry++;
            }
            c->delivered += st.delivered;
            c->retried += st.retried;
            c->dead += st.dead_lettered;
            metrics_hist_add(&c->latency, &st.latency);
        }
    }
    a->delivery = e;
}

void admin_set_stopping(struct admin *a)
{
    if (a)
        a->stopping = true;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    if (a->http)
        evhttp_free(a->http);
    if (a->ssl)
        SSL_CTX_free(a->ssl);
    for (size_t i = 0; i < a->n_subjects; i++)
        free(a->subjects[i]);
    free(a->subjects);
    admin_tokens_free(&a->tokens);
    for (size_t i = 0; i < a->n_carry; i++)
        free(a->carry[i].name);
    free(a->carry);
    free(a);
}
