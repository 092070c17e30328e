/*
 * ctl_admin.c: the hl7ctl commands that talk to a running broker through
 * its admin API (stats, queues, search, show, replay, dead, pause, resume,
 * reload) over libevent's HTTP client, TLS through adapters/tls.c; and
 * check-config, which validates a config file offline.
 *
 * Exit status: 0 ok, 1 not found or failed, 2 usage (or a parameter the
 * broker refused), 3 the broker unreachable, 4 the token refused (401).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/err.h>

#include "../adapters/tls.h"
#include "admin.h"
#include "buf.h"
#include "check.h"
#include "config.h"
#include "ctl.h"

#define DEFAULT_URL  "http://127.0.0.1:8088"
#define TIMEOUT_SECS 30
#define MAX_REPLY    ((size_t)256 << 20)

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_TOKEN = 4 };

static const char *prog = "hl7ctl";

/* ================================================================ options */

struct ctl {
    const char *cmd;
    const char *url, *token, *token_file, *ca;
    bool        json;
    char       *token_owned;
    /* the command's own options, by name ("--to" -> its value) */
    const char *const *opt_names;
    const char *opt_values[16];
    const char *pos[4];
    int         npos;
};

static void usage_online(FILE *f)
{
    fprintf(f,
        "usage: %s COMMAND [ARGS] [--json] [--url URL] [--token TOKEN | --token-file FILE]\n"
        "              [--ca FILE]\n"
        "\n"
        "Online commands, through the broker's admin API:\n"
        "  stats                          sources and destinations with their counters\n"
        "  queues [DEST] [--limit N] [--offset N]\n"
        "                                 every destination's queue; with DEST its entries\n"
        "  search [--nhs N] [--control-id C] [--type T] [--source S] [--destination D]\n"
        "         [--state S] [--since T] [--until T] [--limit N] [--offset N]\n"
        "                                 stored messages, newest first (T: ms since the\n"
        "                                 epoch or ISO 8601 UTC, 2024-05-01T13:45:00Z)\n"
        "  show MSG [--raw]               one message: header, segments, deliveries\n"
        "                                 (--raw: its bytes exactly as received)\n"
        "  replay MSG [--to DEST]         queue a message again (to where it went, or DEST)\n"
        "  dead list DEST [--limit N] [--offset N]\n"
        "  dead requeue DEST [--seq N]    dead letters back to the end of the queue\n"
        "  dead purge DEST [--seq N]      dead letters deleted\n"
        "  pause DEST | resume DEST       stop or restart delivery to DEST\n"
        "  reload                         read the config again (as SIGHUP)\n"
        "  objection list [--purpose P]   the objections register in force\n"
        "  objection add|remove NHS PURPOSE\n"
        "                                 record or withdraw an objection (at once,\n"
        "                                 kept in the store, audited)\n"
        "\n"
        "  --json            print the API's JSON instead of a table\n"
        "  --url URL         the admin API (default $HL7BROKER_URL or " DEFAULT_URL ")\n"
        "  --token TOKEN     the bearer token (default $HL7BROKER_TOKEN)\n"
        "  --token-file FILE a NAME TOKEN file like the broker's: its first token\n"
        "  --ca FILE         PEM CAs to verify an https:// broker (default: the system's)\n"
        "\n"
        "Exit status: 0 ok, 1 not found or failed, 2 usage or a bad parameter,\n"
        "3 the broker is unreachable, 4 the token was refused.\n", prog);
}

/* Parse argv (argv[0] is the command): the common options, the
 * command's own (names: those taking a value; flags: "--raw"-like ones
 * stored as "1"), and up to 4 positional arguments. */
static int parse_args(struct ctl *c, int argc, char **argv, const char *const *names,
                      const char *const *flags)
{
    c->cmd = argv[0];
    c->opt_names = names;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage_online(stdout);
            return 1;
        }
        if (strcmp(a, "--json") == 0) {
            c->json = true;
            continue;
        }
        if (strcmp(a, "--url") == 0)
            slot = &c->url;
        else if (strcmp(a, "--token") == 0)
            slot = &c->token;
        else if (strcmp(a, "--token-file") == 0)
            slot = &c->token_file;
        else if (strcmp(a, "--ca") == 0)
            slot = &c->ca;
        for (size_t k = 0; !slot && names && names[k]; k++)
            if (strcmp(a, names[k]) == 0)
                slot = &c->opt_values[k];
        bool flag = false;
        for (size_t k = 0; !slot && flags && flags[k]; k++)
            if (strcmp(a, flags[k]) == 0) {
                size_t n = 0;
                while (names && names[n])
                    n++;
                c->opt_values[n + k] = "1";
                flag = true;
            }
        if (flag)
            continue;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s %s: %s needs a value\n", prog, c->cmd, a);
                return -1;
            }
            *slot = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s %s: unknown option %s (see %s --help)\n", prog, c->cmd, a, prog);
            return -1;
        }
        if (c->npos == 4) {
            fprintf(stderr, "%s %s: too many arguments\n", prog, c->cmd);
            return -1;
        }
        c->pos[c->npos++] = a;
    }
    return 0;
}

/* The value of the command's option name (NULL when not given). */
static const char *opt(const struct ctl *c, const char *name)
{
    size_t n = 0;
    for (; c->opt_names && c->opt_names[n]; n++)
        if (strcmp(c->opt_names[n], name) == 0)
            return c->opt_values[n];
    return NULL;
}

/* A flag given after the value options (see parse_args). */
static bool flag_set(const struct ctl *c, size_t index)
{
    size_t n = 0;
    while (c->opt_names && c->opt_names[n])
        n++;
    return c->opt_values[n + index] != NULL;
}

/* The first token of a NAME TOKEN file. */
static int token_from_file(struct ctl *c)
{
    struct buf b = { 0 };
    if (ctl_read_input(prog, c->token_file, 1 << 20, &b))
        return -1;
    const char *p = b.p ? b.p : "";
    int rc = -1;
    while (*p) {
        size_t n = strcspn(p, "\n");
        char line[1100];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            char name[128], tok[1024];
            char *h = line + strspn(line, " \t");
            if (*h && *h != '#' && *h != '\r' && sscanf(h, "%127s %1023s", name, tok) == 2) {
                c->token_owned = strdup(tok);
                rc = c->token_owned ? 0 : -1;
                break;
            }
        }
        p += n + (p[n] == '\n');
    }
    if (rc)
        fprintf(stderr, "%s: %s: no \"NAME TOKEN\" line\n", prog, c->token_file);
    buf_free(&b);
    return rc;
}

static int resolve_conn(struct ctl *c)
{
    if (!c->url)
        c->url = getenv("HL7BROKER_URL");
    if (!c->url || !*c->url)
        c->url = DEFAULT_URL;
    if (!c->token && c->token_file) {
        if (token_from_file(c))
            return -1;
        c->token = c->token_owned;
    }
    if (!c->token)
        c->token = getenv("HL7BROKER_TOKEN");
    if (!c->token || !*c->token) {
        fprintf(stderr, "%s %s: no token: give --token, --token-file or set HL7BROKER_TOKEN\n",
                prog, c->cmd);
        return -1;
    }
    return 0;
}

/* ================================================================ HTTP */

struct reply {
    int        status;     /* 0: no response */
    struct buf body;
    char       err[256];
    bool       too_big;
};

static void on_done(struct evhttp_request *req, void *arg)
{
    struct reply *r = arg;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        if (!r->err[0])
            snprintf(r->err, sizeof r->err, "no response");
        return;
    }
    r->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = in ? evbuffer_get_length(in) : 0;
    if (n > MAX_REPLY) {
        r->too_big = true;
        return;
    }
    if (n && buf_reserve(&r->body, n + 1) == 0) {
        evbuffer_remove(in, r->body.p, n);
        r->body.len = n;
        r->body.p[n] = '\0';
    }
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct reply *r = arg;
    const char *why = "connection failed";
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:      why = "timed out"; break;
    case EVREQ_HTTP_EOF:          why = "the connection closed before a reply"; break;
    case EVREQ_HTTP_INVALID_HEADER: why = "the reply's headers do not parse"; break;
    case EVREQ_HTTP_BUFFER_ERROR: why = "connection refused or failed"; break;
    case EVREQ_HTTP_DATA_TOO_LONG: why = "the reply is too long"; break;
    default: break;
    }
    unsigned long ssl_err = ERR_peek_last_error();
    if (ssl_err) {
        char t[200];
        ERR_error_string_n(ssl_err, t, sizeof t);
        snprintf(r->err, sizeof r->err, "%s (TLS: %s)", why, t);
        ERR_clear_error();
    } else {
        snprintf(r->err, sizeof r->err, "%s", why);
    }
}

/* One request; path includes the query. Returns an exit status (0 for
 * any response: the caller reads r->status). */
static int http_call(struct ctl *c, const char *method, const char *path, struct reply *r)
{
    struct evhttp_uri *u = evhttp_uri_parse(c->url);
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    bool https = scheme && strcmp(scheme, "https") == 0;
    int rc = EXIT_UNREACHABLE;
    struct event_base *base = NULL;
    struct evhttp_connection *conn = NULL;
    SSL_CTX *ctx = NULL;
    memset(r, 0, sizeof *r);
    if (!u || !scheme || (!https && strcmp(scheme, "http") != 0) || !host || !*host) {
        fprintf(stderr, "%s: --url %s: want http://HOST:PORT or https://HOST:PORT\n", prog, c->url);
        rc = EXIT_USAGE;
        goto out;
    }
    int port = evhttp_uri_get_port(u);
    if (port <= 0)
        port = https ? 443 : 80;
    const char *prefix = evhttp_uri_get_path(u);
    if (!(base = event_base_new()))
        goto oom;
    if (https) {
        char err[512] = "";
        struct config_tls_client t = { .ca = (char *)c->ca };
        if (!(ctx = tls_client_context(&t, err, sizeof err))) {
            fprintf(stderr, "%s: TLS: %s\n", prog, err);
            rc = EXIT_USAGE;
            goto out;
        }
        struct bufferevent *bev = tls_client_bufferevent(base, ctx, host);
        if (!bev || !(conn = evhttp_connection_base_bufferevent_new(base, NULL, bev, host,
                                                                    (ev_uint16_t)port))) {
            if (bev)
                bufferevent_free(bev);
            goto oom;
        }
    } else if (!(conn = evhttp_connection_base_new(base, NULL, host, (ev_uint16_t)port))) {
        goto oom;
    }
    evhttp_connection_set_timeout(conn, TIMEOUT_SECS);
    evhttp_connection_set_retries(conn, 0);
    struct evhttp_request *req = evhttp_request_new(on_done, r);
    if (!req)
        goto oom;
    evhttp_request_set_error_cb(req, on_error);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char auth[ADMIN_TOKEN_MAX + 16];
    snprintf(auth, sizeof auth, "Bearer %s", c->token);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Authorization", auth);
    evhttp_add_header(h, "Accept", "application/json");
    evhttp_add_header(h, "Connection", "close");
    struct buf full = { 0 };
    size_t pl = prefix ? strlen(prefix) : 0;
    while (pl && prefix[pl - 1] == '/')
        pl--;
    buf_append(&full, prefix ? prefix : "", pl);
    buf_puts(&full, path);
    enum evhttp_cmd_type type = strcmp(method, "POST") == 0     ? EVHTTP_REQ_POST
                                : strcmp(method, "DELETE") == 0 ? EVHTTP_REQ_DELETE
                                                                : EVHTTP_REQ_GET;
    if (type == EVHTTP_REQ_POST)
        evhttp_add_header(h, "Content-Length", "0");
    if (!full.p || evhttp_make_request(conn, req, type, full.p) != 0) {
        buf_free(&full);
        snprintf(r->err, sizeof r->err, "cannot make the request");
        goto unreachable;
    }
    buf_free(&full);
    event_base_dispatch(base);
    if (r->too_big) {
        fprintf(stderr, "%s: %s: the reply is larger than %zu bytes\n", prog, c->url, MAX_REPLY);
        rc = EXIT_FAILED;
        goto out;
    }
    if (r->status) {
        rc = EXIT_OK;
        goto out;
    }
unreachable:
    fprintf(stderr, "%s: cannot reach the broker at %s: %s\n", prog, c->url,
            r->err[0] ? r->err : "no response");
    rc = EXIT_UNREACHABLE;
    goto out;
oom:
    fprintf(stderr, "%s: out of memory\n", prog);
    rc = EXIT_FAILED;
out:
    if (conn)
        evhttp_connection_free(conn);
    if (ctx)
        SSL_CTX_free(ctx);
    if (base)
        event_base_free(base);
    if (u)
        evhttp_uri_free(u);
    return rc;
}

/* Print the API's error and map its status to an exit status. */
static int api_error(const struct ctl *c, const struct reply *r, json_t *body)
{
    json_t *e = body ? json_object_get(body, "error") : NULL;
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg)
        msg = r->status == 401 ? "the token was refused" : "the broker refused the request";
    fprintf(stderr, "%s %s: %d: %s\n", prog, c->cmd, r->status, msg);
    json_t *errs = body ? json_object_get(body, "errors") : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(errs, i, v)
        fprintf(stderr, "  %s\n", json_string_value(v) ? json_string_value(v) : "");
    if (r->status == 401)
        return EXIT_TOKEN;
    if (r->status == 400)
        return EXIT_USAGE;
    return EXIT_FAILED;
}

/* Call the API; on a 2xx reply *out holds the parsed body (or, with
 * --json, the body is printed and *out is NULL). Returns an exit status. */
static int api(struct ctl *c, const char *method, const char *path, json_t **out)
{
    struct reply r;
    *out = NULL;
    int rc = http_call(c, method, path, &r);
    if (rc) {
        buf_free(&r.body);
        return rc;
    }
    json_error_t je;
    json_t *body = json_loadb(r.body.p ? r.body.p : "", r.body.len, 0, &je);
    if (r.status < 200 || r.status > 299) {
        rc = api_error(c, &r, body);
        json_decref(body);
    } else if (!body) {
        fprintf(stderr, "%s %s: the reply is not JSON: %s\n", prog, c->cmd, je.text);
        rc = EXIT_FAILED;
    } else if (c->json) {
        fwrite(r.body.p, 1, r.body.len, stdout);
        json_decref(body);
    } else {
        *out = body;
    }
    buf_free(&r.body);
    return rc;
}

/* Append "?name=value" or "&name=value" (URL-encoded) to q when value
 * is given. */
static void query_add(struct buf *q, const char *name, const char *value)
{
    if (!value)
        return;
    char *enc = evhttp_encode_uri(value);
    bool first = !q->len || !memchr(q->p, '?', q->len);
    buf_printf(q, "%c%s=%s", first ? '?' : '&', name, enc ? enc : "");
    free(enc);
}

/* path + "/" + the URL-encoded segment. */
static void path_add(struct buf *p, const char *segment)
{
    char *enc = evhttp_encode_uri(segment);
    buf_printf(p, "/%s", enc ? enc : "");
    free(enc);
}

/* ================================================================ printing */

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static const char *num(json_t *o, const char *key, char *out, size_t len)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%.1f", json_real_value(v));
    else if (json_is_true(v))
        snprintf(out, len, "yes");
    else if (json_is_false(v))
        snprintf(out, len, "no");
    else
        snprintf(out, len, "-");
    return out;
}

static const char *ms_text(json_t *o, const char *key, char *out, size_t len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        snprintf(out, len, "-");
    else
        admin_format_time((uint64_t)json_integer_value(v), out, len);
    return out;
}

static int finish(json_t *body)
{
    json_decref(body);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

/* ================================================================ commands */

static int need_pos(const struct ctl *c, int n, const char *what)
{
    if (c->npos != n) {
        fprintf(stderr, "%s %s: usage: %s %s %s\n", prog, c->cmd, prog, c->cmd, what);
        return -1;
    }
    return 0;
}

#define SETUP(names, flags, npos, what) \
    struct ctl c = { 0 }; \
    int prc = parse_args(&c, argc, argv, names, flags); \
    if (prc) \
        return prc > 0 ? EXIT_OK : EXIT_USAGE; \
    if (need_pos(&c, npos, what) || resolve_conn(&c)) { \
        free(c.token_owned); \
        return EXIT_USAGE; \
    }

int cmd_stats(int argc, char **argv)
{
    SETUP(NULL, NULL, 0, "");
    json_t *b;
    int rc = api(&c, "GET", "/api/v1/stats", &b);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    char t[4][32];
    struct ctl_table src = { .ncols = 7, .right = 0x78 };
    ctl_table_add(&src, (const char *const[]){ "SOURCE", "TYPE", "STATE", "RECEIVED",
                                               "ACCEPTED", "REFUSED", "DUPLICATES" });
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(b, "sources"), i, x) {
        json_t *k = json_object_get(x, "counters");
        ctl_table_add(&src, (const char *const[]){ str(x, "name"), str(x, "type"),
            str(x, "state"), num(k, "received", t[0], 32), num(k, "accepted", t[1], 32),
            num(k, "refused", t[2], 32), num(k, "duplicates", t[3], 32) });
    }
    ctl_table_print(&src, stdout);
    ctl_table_free(&src);
    fputc('\n', stdout);
    char u[5][32];
    struct ctl_table dst = { .ncols = 8, .right = 0xf8 };
    ctl_table_add(&dst, (const char *const[]){ "DESTINATION", "TYPE", "STATE", "QUEUED",
                                               "OLDEST_S", "DEAD", "DELIVERED", "RETRIED" });
    json_array_foreach(json_object_get(b, "destinations"), i, x) {
        json_t *k = json_object_get(x, "counters");
        ctl_table_add(&dst, (const char *const[]){ str(x, "name"), str(x, "type"),
            str(x, "state"), num(x, "queue_depth", u[0], 32),
            num(x, "oldest_age_seconds", u[1], 32), num(x, "dead_letters", u[2], 32),
            num(k, "delivered", u[3], 32), num(k, "retried", u[4], 32) });
    }
    ctl_table_print(&dst, stdout);
    ctl_table_free(&dst);
    json_t *in = json_object_get(b, "ingest");
    printf("\ningest: accepted %s, refused %s, duplicates %s, commits %s, pending %s\n",
           num(in, "accepted", t[0], 32), num(in, "refused", t[1], 32),
           num(in, "duplicates", t[2], 32), num(in, "commits", t[3], 32),
           num(in, "pending", u[0], 32));
    return finish(b);
}

static const char *const page_opts[] = { "--limit", "--offset", NULL };

/* The entries of DEST's queue or dead letters. */
static int list_entries(struct ctl *c, const char *dest, bool dead)
{
    struct buf p = { 0 }, q = { 0 };
    buf_puts(&p, "/api/v1/destinations");
    path_add(&p, dest);
    buf_puts(&p, dead ? "/dead" : "/queue");
    query_add(&q, "limit", opt(c, "--limit"));
    query_add(&q, "offset", opt(c, "--offset"));
    if (q.len)
        buf_append(&p, q.p, q.len);
    json_t *b;
    int rc = api(c, "GET", p.p, &b);
    buf_free(&p);
    buf_free(&q);
    if (rc || !b)
        return rc;
    char t[5][40];
    struct ctl_table tb = { .ncols = dead ? 6 : 7, .right = dead ? 0x3 : 0x13 };
    if (dead)
        ctl_table_add(&tb, (const char *const[]){ "SEQ", "MSG", "RECEIVED", "TYPE",
                                                  "CONTROL_ID", "ERROR" });
    else
        ctl_table_add(&tb, (const char *const[]){ "SEQ", "MSG", "RECEIVED", "TYPE",
                                                  "ATTEMPTS", "CONTROL_ID", "LAST_ERROR" });
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(b, "items"), i, x) {
        num(x, "seq", t[0], 40);
        num(x, "msg_id", t[1], 40);
        ms_text(x, "received_ms", t[2], 40);
        if (dead)
            ctl_table_add(&tb, (const char *const[]){ t[0], t[1], t[2], str(x, "type"),
                                                      str(x, "control_id"), str(x, "error") });
        else
            ctl_table_add(&tb, (const char *const[]){ t[0], t[1], t[2], str(x, "type"),
                num(x, "attempts", t[3], 40), str(x, "control_id"), str(x, "last_error") });
    }
    ctl_table_print(&tb, stdout);
    ctl_table_free(&tb);
    printf("%zu of %s %s in %s\n", json_array_size(json_object_get(b, "items")),
           num(b, "total", t[4], 40), dead ? "dead letters" : "queued", str(b, "destination"));
    return finish(b);
}

int cmd_queues(int argc, char **argv)
{
    struct ctl c = { 0 };
    int prc = parse_args(&c, argc, argv, page_opts, NULL);
    if (prc)
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    if (c.npos > 1) {
        fprintf(stderr, "%s queues: usage: %s queues [DEST] [--limit N] [--offset N]\n", prog,
                prog);
        return EXIT_USAGE;
    }
    if (resolve_conn(&c))
        return EXIT_USAGE;
    int rc;
    if (c.npos == 1) {
        rc = list_entries(&c, c.pos[0], false);
        free(c.token_owned);
        return rc;
    }
    json_t *b;
    rc = api(&c, "GET", "/api/v1/destinations?limit=1000", &b);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    char t[5][32];
    struct ctl_table tb = { .ncols = 8, .right = 0xf8 };
    ctl_table_add(&tb, (const char *const[]){ "DESTINATION", "TYPE", "STATE", "QUEUED",
                                              "OLDEST_S", "DEAD", "DELIVERED", "PAUSED" });
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(b, "destinations"), i, x) {
        json_t *k = json_object_get(x, "counters");
        ctl_table_add(&tb, (const char *const[]){ str(x, "name"), str(x, "type"),
            str(x, "state"), num(x, "queue_depth", t[0], 32),
            num(x, "oldest_age_seconds", t[1], 32), num(x, "dead_letters", t[2], 32),
            num(k, "delivered", t[3], 32), num(x, "paused", t[4], 32) });
    }
    ctl_table_print(&tb, stdout);
    ctl_table_free(&tb);
    return finish(b);
}

int cmd_search(int argc, char **argv)
{
    static const char *const names[] = { "--nhs", "--control-id", "--type", "--source",
                                         "--destination", "--state", "--since", "--until",
                                         "--limit", "--offset", "--scan-limit", NULL };
    static const char *const params[] = { "nhs_number", "control_id", "type", "source",
                                          "destination", "state", "since", "until",
                                          "limit", "offset", "scan_limit", NULL };
    SETUP(names, NULL, 0, "[--nhs N] [--control-id C] [--type T] ...");
    struct buf p = { 0 }, q = { 0 };
    buf_puts(&p, "/api/v1/messages");
    for (size_t i = 0; names[i]; i++)
        query_add(&q, params[i], opt(&c, names[i]));
    if (q.len)
        buf_append(&p, q.p, q.len);
    json_t *b;
    int rc = api(&c, "GET", p.p, &b);
    buf_free(&p);
    buf_free(&q);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    char t[3][40];
    struct ctl_table tb = { .ncols = 7, .right = 0x1 };
    ctl_table_add(&tb, (const char *const[]){ "ID", "RECEIVED", "SOURCE", "TYPE", "CONTROL_ID",
                                              "NHS_NUMBER", "STATE" });
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(b, "items"), i, x)
        ctl_table_add(&tb, (const char *const[]){ num(x, "id", t[0], 40), str(x, "received"),
            str(x, "source"), str(x, "type"), str(x, "control_id"), str(x, "nhs_number"),
            str(x, "state") });
    ctl_table_print(&tb, stdout);
    ctl_table_free(&tb);
    json_t *total = json_object_get(b, "total");
    if (json_is_integer(total))
        printf("%zu of %s\n", json_array_size(json_object_get(b, "items")),
               num(b, "total", t[1], 40));
    else
        printf("%zu shown; the search stopped after %s messages (--scan-limit): there may be "
               "more\n", json_array_size(json_object_get(b, "items")),
               num(b, "scanned", t[2], 40));
    return finish(b);
}

static bool msg_id_ok(const char *s)
{
    size_t n = strlen(s);
    return n && n <= 19 && strspn(s, "0123456789") == n;
}

int cmd_show(int argc, char **argv)
{
    static const char *const flags[] = { "--raw", NULL };
    SETUP(NULL, flags, 1, "MSG [--raw]");
    if (!msg_id_ok(c.pos[0])) {
        fprintf(stderr, "%s show: %s is not a message id (a number)\n", prog, c.pos[0]);
        free(c.token_owned);
        return EXIT_USAGE;
    }
    bool raw = flag_set(&c, 0);
    if (raw)
        c.json = false;
    struct buf p = { 0 };
    buf_printf(&p, "/api/v1/messages/%s", c.pos[0]);
    json_t *b;
    int rc = api(&c, "GET", p.p, &b);
    buf_free(&p);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    json_t *rawv = json_object_get(b, "raw");
    if (raw) {
        fwrite(json_string_value(rawv), 1, json_string_length(rawv), stdout);
        return finish(b);
    }
    char t[2][40];
    printf("message %s\n", num(b, "id", t[0], 40));
    static const char *const fields[] = { "received", "source", "peer", "tls_subject", "type",
                                          "control_id", "nhs_number", "state", "note", NULL };
    for (size_t i = 0; fields[i]; i++) {
        const char *v = str(b, fields[i]);
        if (!*v)
            continue;
        printf("  %-12s ", fields[i]);
        ctl_put_escaped(stdout, v, strlen(v));
        fputc('\n', stdout);
    }
    json_t *itk = json_object_get(b, "itk");
    if (json_is_object(itk)) {
        static const char *const ik[] = { "service", "interaction", "tracking_id", "sender",
                                          "audit_identity", "profile", NULL };
        for (size_t i = 0; ik[i]; i++) {
            const char *v = str(itk, ik[i]);
            if (!*v)
                continue;
            printf("  itk.%-8s ", ik[i]);
            ctl_put_escaped(stdout, v, strlen(v));
            fputc('\n', stdout);
        }
        size_t ai;
        json_t *av;
        json_array_foreach(json_object_get(itk, "addresses"), ai, av) {
            printf("  itk.address  ");
            ctl_put_escaped(stdout, json_string_value(av) ? json_string_value(av) : "",
                            json_string_length(av));
            fputc('\n', stdout);
        }
        json_array_foreach(json_object_get(itk, "payloads"), ai, av) {
            char nb[40];
            printf("  payload      %s %s, %s bytes%s\n", str(av, "id"), str(av, "mimetype"),
                   num(av, "bytes", nb, sizeof nb),
                   json_is_true(json_object_get(av, "base64")) ? ", base64" : "");
        }
    }
    printf("\n");
    /* the message one segment a line */
    const char *rp = json_string_value(rawv) ? json_string_value(rawv) : "";
    size_t rn = json_string_length(rawv);
    for (size_t k = 0; k < rn;) {
        size_t e = k;
        while (e < rn && rp[e] != '\r' && rp[e] != '\n')
            e++;
        if (e > k) {
            fputs("  ", stdout);
            ctl_put_escaped(stdout, rp + k, e - k);
            fputc('\n', stdout);
        }
        k = e + 1;
    }
    size_t i;
    json_t *x;
    printf("\n");
    struct ctl_table tb = { .ncols = 5, .right = 0x8 };
    ctl_table_add(&tb, (const char *const[]){ "DESTINATION", "STATUS", "SEQ", "ATTEMPTS",
                                              "LAST_ERROR" });
    json_array_foreach(json_object_get(b, "deliveries"), i, x)
        ctl_table_add(&tb, (const char *const[]){ str(x, "destination"), str(x, "status"),
            num(x, "seq", t[0], 40), num(x, "attempts", t[1], 40), str(x, "last_error") });
    ctl_table_print(&tb, stdout);
    ctl_table_free(&tb);
    return finish(b);
}

int cmd_replay(int argc, char **argv)
{
    static const char *const names[] = { "--to", NULL };
    SETUP(names, NULL, 1, "MSG [--to DEST]");
    if (!msg_id_ok(c.pos[0])) {
        fprintf(stderr, "%s replay: %s is not a message id (a number)\n", prog, c.pos[0]);
        free(c.token_owned);
        return EXIT_USAGE;
    }
    struct buf p = { 0 };
    buf_printf(&p, "/api/v1/messages/%s/replay", c.pos[0]);
    query_add(&p, "to", opt(&c, "--to"));
    json_t *b;
    int rc = api(&c, "POST", p.p, &b);
    buf_free(&p);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    size_t i;
    json_t *x;
    char t[40];
    json_array_foreach(json_object_get(b, "replayed"), i, x)
        printf("message %s queued again for %s (seq %s)\n", c.pos[0], str(x, "destination"),
               num(x, "seq", t, sizeof t));
    return finish(b);
}

int cmd_dead(int argc, char **argv)
{
    static const char *const names[] = { "--limit", "--offset", "--seq", NULL };
    SETUP(names, NULL, 2, "list|requeue|purge DEST [--seq N] [--limit N] [--offset N]");
    const char *sub = c.pos[0], *dest = c.pos[1];
    int rc;
    if (strcmp(sub, "list") == 0) {
        if (opt(&c, "--seq")) {
            fprintf(stderr, "%s dead list: --seq is for requeue and purge\n", prog);
            rc = EXIT_USAGE;
        } else {
            rc = list_entries(&c, dest, true);
        }
        free(c.token_owned);
        return rc;
    }
    if (strcmp(sub, "requeue") != 0 && strcmp(sub, "purge") != 0) {
        fprintf(stderr, "%s dead: %s is not list, requeue or purge\n", prog, sub);
        free(c.token_owned);
        return EXIT_USAGE;
    }
    if (opt(&c, "--limit") || opt(&c, "--offset")) {
        fprintf(stderr, "%s dead %s: --limit and --offset are for list\n", prog, sub);
        free(c.token_owned);
        return EXIT_USAGE;
    }
    struct buf p = { 0 };
    buf_puts(&p, "/api/v1/destinations");
    path_add(&p, dest);
    buf_printf(&p, "/dead/%s", sub);
    query_add(&p, "seq", opt(&c, "--seq"));
    json_t *b;
    rc = api(&c, "POST", p.p, &b);
    buf_free(&p);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    bool rq = strcmp(sub, "requeue") == 0;
    char t[40];
    num(b, rq ? "requeued" : "purged", t, sizeof t);
    printf("%s: %s dead letter%s %s\n", dest, t, strcmp(t, "1") == 0 ? "" : "s",
           rq ? "requeued" : "purged");
    return finish(b);
}

static int pause_resume(int argc, char **argv, bool pause)
{
    SETUP(NULL, NULL, 1, "DEST");
    struct buf p = { 0 };
    buf_puts(&p, "/api/v1/destinations");
    path_add(&p, c.pos[0]);
    buf_puts(&p, pause ? "/pause" : "/resume");
    json_t *b;
    int rc = api(&c, "POST", p.p, &b);
    buf_free(&p);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    printf("%s: %s\n", str(b, "destination"), pause ? "paused" : "resumed");
    return finish(b);
}

int cmd_pause(int argc, char **argv)
{
    return pause_resume(argc, argv, true);
}

int cmd_resume(int argc, char **argv)
{
    return pause_resume(argc, argv, false);
}

int cmd_reload(int argc, char **argv)
{
    SETUP(NULL, NULL, 0, "");
    json_t *b;
    int rc = api(&c, "POST", "/api/v1/reload", &b);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    printf("config reloaded\n");
    return finish(b);
}

int cmd_objection(int argc, char **argv)
{
    static const char *const names[] = { "--purpose", NULL };
    struct ctl c = { 0 };
    int prc = parse_args(&c, argc, argv, names, NULL);
    if (prc)
        return prc > 0 ? EXIT_OK : EXIT_USAGE;
    const char *sub = c.npos ? c.pos[0] : "";
    bool list = strcmp(sub, "list") == 0;
    bool add = strcmp(sub, "add") == 0, rem = strcmp(sub, "remove") == 0;
    if ((!list && !add && !rem) || c.npos != (list ? 1 : 3) || (!list && opt(&c, "--purpose"))) {
        fprintf(stderr, "%s objection: usage: %s objection list [--purpose P] | "
                "add NHS_NUMBER PURPOSE | remove NHS_NUMBER PURPOSE\n", prog, prog);
        free(c.token_owned);
        return EXIT_USAGE;
    }
    if (resolve_conn(&c)) {
        free(c.token_owned);
        return EXIT_USAGE;
    }
    struct buf p = { 0 };
    buf_puts(&p, "/api/v1/objections");
    if (list) {
        query_add(&p, "purpose", opt(&c, "--purpose"));
    } else {
        query_add(&p, "nhs_number", c.pos[1]);
        query_add(&p, "purpose", c.pos[2]);
    }
    json_t *b;
    int rc = api(&c, list ? "GET" : add ? "POST" : "DELETE", p.p, &b);
    buf_free(&p);
    free(c.token_owned);
    if (rc || !b)
        return rc;
    if (list) {
        struct ctl_table t = { .ncols = 3 };
        ctl_table_add(&t, (const char *const[]){ "NHS_NUMBER", "PURPOSE", "SOURCE" });
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(b, "items"), i, x)
            ctl_table_add(&t, (const char *const[]){ str(x, "nhs_number"), str(x, "purpose"),
                                                    str(x, "source") });
        ctl_table_print(&t, stdout);
        ctl_table_free(&t);
    } else {
        bool changed = json_is_true(json_object_get(b, "changed"));
        printf("%s %s: objection %s%s\n", str(b, "nhs_number"), str(b, "purpose"),
               add ? "recorded" : "withdrawn", changed ? "" : " (no change)");
    }
    return finish(b);
}

int cmd_check_config(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: %s check-config [-c] FILE\n\nValidate a config file offline, as "
                   "hl7brokerd --check does: every error printed.\nExit status: 0 valid, "
                   "1 not, 2 usage.\n", prog);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                break;
            path = argv[++i];
        } else if (!path && argv[i][0] != '-') {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (!path) {
        fprintf(stderr, "%s check-config: usage: %s check-config [-c] FILE\n", prog, prog);
        return EXIT_USAGE;
    }
    return broker_check_config(path, stdout, stderr);
}
