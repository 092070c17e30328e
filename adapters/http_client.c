/*
 * http_client.c: the HTTP/1.1 client the http and itk destinations share
 * (http.h): connect (plain or TLS), write the request a build hook made,
 * read the response with its framing and limits, time out, and hand the
 * complete response to a judge hook that decides the outcome.
 *
 * - One message in flight; send() while one is returns -1. The client
 *   does no backoff: every failure is reported and the engine decides.
 * - One connection per request ("Connection: close"): nothing is left
 *   half-open between messages, at the cost of a handshake per message.
 *   The host is resolved when connecting, blocking (getaddrinfo), as the
 *   MLLP destination does. connect_timeout_ms bounds the TCP connect and
 *   the TLS handshake together; ack_timeout_ms then bounds the request
 *   and the whole response.
 * - TLS (https): the server is verified against tls.ca (or the system's
 *   store) and its name against tls.server_name or the URL's host (SNI
 *   for names, IP SANs for addresses); tls.cert and tls.key give a client
 *   certificate.
 * - The response: 1xx are skipped; at most max_message_bytes are read
 *   (the judge is told when it stopped there). No response, a connection
 *   that fails, a response that is not HTTP/1.x and no complete response
 *   within ack_timeout_ms are retried here; everything else is the
 *   judge's.
 */
#include "http.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "buf.h"
#include "delivery.h"
#include "log.h"
#include "version.h"

#define HTTP_LINE_MAX 4096   /* a chunk-size or trailer line */
#define EXCERPT_OUT   (HTTP_EXCERPT_MAX * 4 + 8)

enum http_conn { HTTP_CLOSED, HTTP_CONNECTING, HTTP_OPEN };

/* Where the response parser is. */
enum http_rs {
    RS_HEAD,         /* status line and headers, up to the empty line */
    RS_BODY_LEN,     /* Content-Length bytes */
    RS_BODY_EOF,     /* up to the close */
    RS_CHUNK_SIZE,   /* a chunk-size line */
    RS_CHUNK_DATA,
    RS_CHUNK_CRLF,   /* the CRLF after a chunk's data */
    RS_TRAILER,      /* trailer lines up to the empty one */
    RS_DONE,
};

struct http_client {
    struct adapter          *a;
    struct event_base       *base;
    struct http_client_hooks hooks;
    /* from the config */
    char                    *component;
    char                    *name;
    char                    *url;           /* for messages */
    struct http_url          u;
    char                    *req_head;      /* the request's fixed header lines, custom ones included */
    struct timeval           connect_to;
    struct timeval           ack_to;        /* tv_sec < 0: no timeout */
    size_t                   max_reply;
    size_t                   keep;          /* body bytes kept for the judge */
    SSL_CTX                 *ssl;
    char                    *verify_name;
    /* running */
    bool                     started;
    enum http_conn           conn;
    struct bufferevent      *bev;
    struct event            *timer;         /* connect+handshake, then the response */
    struct event            *later;         /* reports a failure found inside send() */
    enum delivery_outcome    later_outcome;
    char                     later_detail[HTTP_DETAIL_MAX];
    const struct delivery   *d;             /* in flight; NULL when idle */
    struct evbuffer         *req;           /* the request built, until connected */
    /* the response */
    enum http_rs             rs;
    int                      status;        /* 0: no status line yet */
    char                     reason[64];
    uint64_t                 remaining;     /* of the body or the chunk */
    size_t                   got;           /* response bytes read */
    bool                     cut;           /* stopped at max_message_bytes */
    struct buf               body;          /* up to keep bytes */
    size_t                   body_total;    /* seen */
    struct adapter_stats     st;
};

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static long long tv_ms(struct timeval tv)
{
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void http_excerpt(const char *p, size_t n, size_t total, size_t max, char *out, size_t outlen)
{
    size_t o = 0, i = 0;
    if (!outlen)
        return;
    for (; i < n && i < max && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else if (c == '\r')
            o += (size_t)snprintf(out + o, outlen - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, outlen - o, "\\n");
        else if (c == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\\\");
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    if ((i < n || total > n) && o + 4 < outlen)
        o += (size_t)snprintf(out + o, outlen - o, "...");
    out[o < outlen ? o : outlen - 1] = '\0';
}

/* ------------------------------------------------------------ configure */

/* The header lines every request carries, but the build hook's and
 * Content-Length. */
static int build_head(struct http_client *c, const struct config_strlist *headers, char *err,
                      size_t errlen)
{
    char why[256];
    bool v6 = strchr(c->u.host, ':') != NULL;
    struct evbuffer *b = evbuffer_new();
    int rc = -1;
    if (!b)
        goto nomem;
    if (evbuffer_add_printf(b, "POST %s HTTP/1.1\r\nHost: %s%s%s", c->u.path, v6 ? "[" : "",
                            c->u.host, v6 ? "]" : "") < 0)
        goto nomem;
    if (!c->u.default_port && evbuffer_add_printf(b, ":%u", c->u.port) < 0)
        goto nomem;
    if (evbuffer_add_printf(b, "\r\nUser-Agent: hl7broker/%s\r\nConnection: close\r\n",
                            HL7BROKER_VERSION) < 0)
        goto nomem;
    for (size_t i = 0; headers && i < headers->n; i++) {
        const char *h = headers->v[i];
        if (!http_header_valid(h, why, sizeof why)) {
            snprintf(err, errlen, "headers[%zu]: %s", i, why);
            goto out;
        }
        if (evbuffer_add_printf(b, "%s\r\n", h) < 0)
            goto nomem;
    }
    size_t n = evbuffer_get_length(b);
    if (!(c->req_head = malloc(n + 1)))
        goto nomem;
    evbuffer_remove(b, c->req_head, n);
    c->req_head[n] = '\0';
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    if (b)
        evbuffer_free(b);
    return rc;
}

struct http_client *http_client_new(struct adapter *a, const struct http_client_opts *o,
                                    char *err, size_t errlen)
{
    char why[256];
    struct http_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->a = a;
    c->base = a->base;
    c->hooks = o->hooks;
    if (!o->url) {
        snprintf(err, errlen, "url: required");
        goto fail;
    }
    if (!(c->component = strdup(o->component)) || !(c->name = strdup(o->name)) ||
        !(c->url = strdup(o->url))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (http_url_parse(o->url, &c->u, why, sizeof why) != 0) {
        snprintf(err, errlen, "url: \"%s\": %s", o->url, why);
        goto fail;
    }
    if (o->tls && !c->u.tls) {
        snprintf(err, errlen, "tls: a tls group needs an https:// url");
        goto fail;
    }
    if (build_head(c, o->headers, err, errlen) != 0)
        goto fail;
    c->connect_to = ms_tv(o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000);
    c->ack_to = o->ack_timeout_ms > 0 ? ms_tv(o->ack_timeout_ms) : (struct timeval){ -1, 0 };
    c->max_reply = o->max_message_bytes > 0 ? (size_t)o->max_message_bytes : 1048576;
    c->keep = o->keep_body ? c->max_reply : HTTP_EXCERPT_MAX;
    if (c->u.tls) {
        if (!(c->ssl = tls_client_context(o->tls, err, errlen)))
            goto fail;
        if (!(c->verify_name = strdup(o->tls && o->tls->server_name ? o->tls->server_name
                                                                    : c->u.host))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    return c;
fail:
    http_client_free(c);
    return NULL;
}

const char *http_client_url(const struct http_client *c)
{
    return c->url;
}

/* ------------------------------------------------------------ outcomes */

static void conn_close(struct http_client *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->timer)
        evtimer_del(c->timer);
    if (c->conn == HTTP_OPEN && c->st.connections_open)
        c->st.connections_open--;
    c->conn = HTTP_CLOSED;
}

/* The delivery in flight is over: the connection is closed and the
 * client idle before the report, so the engine may send the next message
 * from inside it. */
static void finish(struct http_client *c, enum delivery_outcome o, const char *detail)
{
    const struct delivery *d = c->d;
    conn_close(c);
    c->d = NULL;
    if (c->req)
        evbuffer_drain(c->req, evbuffer_get_length(c->req));
    if (!d)
        return;
    if (o == DELIVERY_OK) {
        c->st.messages++;
        c->st.bytes += d->len;
        log_debug(c->component, "delivered", "destination=%s msg_id=%llu status=%d", c->name,
                  (unsigned long long)d->msg_id, c->status);
    } else {
        log_warn(c->component, o == DELIVERY_RETRY ? "delivery failed: will retry"
                                                   : "delivery failed: permanent",
                 "destination=%s url=%s msg_id=%llu attempt=%u detail=%s", c->name, c->url,
                 (unsigned long long)d->msg_id, d->attempt, detail);
    }
    delivery_report(c->a, d, o, detail);
}

static void fail(struct http_client *c, const char *detail)
{
    finish(c, DELIVERY_RETRY, detail);
}

/* The response is complete: the judge decides. */
static void complete(struct http_client *c)
{
    char detail[HTTP_DETAIL_MAX] = "";
    struct http_response r = {
        .url = c->url, .status = c->status, .reason = c->reason,
        .body = c->body.p ? c->body.p : "", .body_len = c->body.len,
        .body_total = c->body_total, .cut = c->cut,
    };
    enum delivery_outcome o = c->hooks.judge(c->hooks.ctx, c->d, &r, detail, sizeof detail);
    finish(c, o, detail);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct http_client *c = arg;
    (void)fd, (void)what;
    char detail[sizeof c->later_detail];
    memcpy(detail, c->later_detail, sizeof detail);
    finish(c, c->later_outcome, detail);
}

/* A failure found inside send(): reported from the loop, as promised. */
static int fail_later(struct http_client *c, enum delivery_outcome o, const char *detail)
{
    c->later_outcome = o;
    snprintf(c->later_detail, sizeof c->later_detail, "%s", detail);
    event_active(c->later, EV_TIMEOUT, 0);
    return 0;
}

/* --------------------------------------------------------- the response */

/* Parse the status line and headers in h (n bytes, ending in the empty
 * line). Returns 0, or -1 with detail filled. */
static int parse_head(struct http_client *c, const char *h, size_t n, char *detail, size_t dlen)
{
    char ex[EXCERPT_OUT];
    const char *end = h + n, *eol = memchr(h, '\n', n);
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || !eol ||
        h[9] < '1' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9' ||
        (h[12] != ' ' && h[12] != '\r' && h[12] != '\n')) {
        http_excerpt(h, n, n, HTTP_EXCERPT_MAX, ex, sizeof ex);
        snprintf(detail, dlen, "the response from %s is not HTTP/1.x: %s", c->url, ex);
        return -1;
    }
    c->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    c->reason[0] = '\0';
    if (h[12] == ' ') {
        size_t rl = (size_t)(eol - (h + 13));
        if (rl && h[13 + rl - 1] == '\r')
            rl--;
        http_excerpt(h + 13, rl, rl, 40, c->reason, sizeof c->reason);
    }
    bool chunked = false, has_len = false;
    uint64_t len = 0;
    for (const char *l = eol + 1; l < end;) {
        const char *le = memchr(l, '\n', (size_t)(end - l));
        if (!le)
            break;
        size_t ll = (size_t)(le - l);
        if (ll && l[ll - 1] == '\r')
            ll--;
        const char *colon = memchr(l, ':', ll);
        if (colon) {
            size_t nl = (size_t)(colon - l);
            const char *v = colon + 1, *ve = l + ll;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            if (nl == 14 && strncasecmp(l, "content-length", 14) == 0) {
                uint64_t x = 0;
                const char *q = v;
                for (; q < ve && *q >= '0' && *q <= '9' && x < (UINT64_MAX - 9) / 10; q++)
                    x = x * 10 + (uint64_t)(*q - '0');
                if (q == v || (q < ve && *q != ' ' && *q != '\t') || (has_len && x != len)) {
                    snprintf(detail, dlen, "the response from %s has a bad Content-Length",
                             c->url);
                    return -1;
                }
                has_len = true;
                len = x;
            } else if (nl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
                /* chunked when it is the last coding */
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                chunked = ve - v >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
            }
        }
        l = le + 1;
    }
    if (c->status < 200) {
        c->rs = RS_HEAD;   /* 100 Continue and friends: the real one follows */
    } else if (c->status == 204 || c->status == 304) {
        c->rs = RS_DONE;
    } else if (chunked) {
        c->rs = RS_CHUNK_SIZE;
    } else if (has_len) {
        c->remaining = len;
        c->rs = len ? RS_BODY_LEN : RS_DONE;
    } else {
        c->rs = RS_BODY_EOF;
    }
    return 0;
}

/* Take n body bytes from in (up to keep of them are kept). Returns 0, or
 * -1 after a failure was reported. */
static int body_take(struct http_client *c, struct evbuffer *in, size_t n)
{
    if (c->body.len < c->keep) {
        size_t k = c->keep - c->body.len;
        if (k > n)
            k = n;
        if (buf_reserve(&c->body, k + 1) != 0) {
            fail(c, "out of memory reading the response");
            return -1;
        }
        evbuffer_copyout(in, c->body.p + c->body.len, k);
        c->body.len += k;
        c->body.p[c->body.len] = '\0';
    }
    c->body_total += n;
    c->got += n;
    evbuffer_drain(in, n);
    return 0;
}

/* Read what arrived. Returns 1 when the response is complete (or as much
 * of it as will be read), 0 for more, -1 after a failure was reported. */
static int parse(struct http_client *c, struct evbuffer *in)
{
    char detail[HTTP_DETAIL_MAX], ex[EXCERPT_OUT];
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (c->rs != RS_DONE && c->rs != RS_HEAD && c->got >= c->max_reply) {
            c->cut = true;
            return 1;
        }
        switch (c->rs) {
        case RS_DONE:
            return 1;
        case RS_HEAD: {
            struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            size_t hlen = e.pos >= 0 ? (size_t)e.pos + 4 : 0;
            if (e.pos < 0 && c->got + len <= c->max_reply)
                return 0;
            if (e.pos < 0 || c->got + hlen > c->max_reply) {
                size_t k = len < HTTP_EXCERPT_MAX ? len : HTTP_EXCERPT_MAX;
                http_excerpt((const char *)evbuffer_pullup(in, (ev_ssize_t)k), k, len,
                             HTTP_EXCERPT_MAX, ex, sizeof ex);
                snprintf(detail, sizeof detail,
                         "the response headers from %s are over max_message_bytes (%zu): %s",
                         c->url, c->max_reply, ex);
                c->st.oversize++;
                fail(c, detail);
                return -1;
            }
            const char *h = (const char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
            if (!h) {
                fail(c, "out of memory reading the response");
                return -1;
            }
            if (parse_head(c, h, hlen, detail, sizeof detail) != 0) {
                fail(c, detail);
                return -1;
            }
            evbuffer_drain(in, hlen);
            c->got += hlen;
            break;
        }
        case RS_BODY_EOF:
            if (!len)
                return 0;
            if (len > c->max_reply - c->got)
                len = c->max_reply - c->got;
            if (body_take(c, in, len) != 0)
                return -1;
            break;
        case RS_BODY_LEN:
        case RS_CHUNK_DATA: {
            if (!len)
                return 0;
            size_t n = c->remaining < len ? (size_t)c->remaining : len;
            if (n > c->max_reply - c->got)
                n = c->max_reply - c->got;
            if (body_take(c, in, n) != 0)
                return -1;
            c->remaining -= n;
            if (!c->remaining)
                c->rs = c->rs == RS_BODY_LEN ? RS_DONE : RS_CHUNK_CRLF;
            break;
        }
        case RS_CHUNK_CRLF:
        case RS_CHUNK_SIZE:
        case RS_TRAILER: {
            size_t eol_len = 0;
            struct evbuffer_ptr e = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
            if (e.pos < 0) {
                if (len > HTTP_LINE_MAX)
                    return 1;   /* not HTTP framing any more: the judge decides */
                return 0;
            }
            size_t ll = (size_t)e.pos;
            char line[32] = "";
            evbuffer_copyout(in, line, ll < sizeof line - 1 ? ll : sizeof line - 1);
            evbuffer_drain(in, ll + eol_len);
            c->got += ll + eol_len;
            if (c->rs == RS_CHUNK_CRLF) {
                c->rs = RS_CHUNK_SIZE;
            } else if (c->rs == RS_TRAILER) {
                if (ll == 0)
                    c->rs = RS_DONE;
            } else {
                char *q;
                errno = 0;
                unsigned long long size = strtoull(line, &q, 16);
                if (q == line || errno)
                    return 1;   /* a bad chunk size: the judge decides */
                c->remaining = size;
                c->rs = size ? RS_CHUNK_DATA : RS_TRAILER;
            }
            break;
        }
        }
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct http_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!c->d) {   /* nothing asked: the server talks out of turn */
        c->st.discarded_bytes += evbuffer_get_length(in);
        conn_close(c);
        return;
    }
    int r = parse(c, in);
    if (r == 1)
        complete(c);
}

/* --------------------------------------------------------- connection */

static void send_request(struct http_client *c)
{
    if (bufferevent_write_buffer(c->bev, c->req) != 0) {
        fail(c, "out of memory writing the request");
        return;
    }
    if (c->ack_to.tv_sec >= 0)
        evtimer_add(c->timer, &c->ack_to);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct http_client *c = arg;
    char why[256], detail[HTTP_DETAIL_MAX];
    (void)bev;

    if (what & BEV_EVENT_CONNECTED) {
        c->conn = HTTP_OPEN;
        c->st.connections_open++;
        evtimer_del(c->timer);
        if (c->d)
            send_request(c);
        else
            conn_close(c);
        return;
    }
    if (!c->d) {
        conn_close(c);
        return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && c->status >= 200) {
        /* a close ends a body without framing; elsewhere the status line
           has already said what happened to the message */
        complete(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        tls_client_error(c->bev, c->ssl, c->conn == HTTP_CONNECTING, why, sizeof why);
        if (c->ssl && c->conn == HTTP_CONNECTING)
            c->st.tls_failures++;
        snprintf(detail, sizeof detail, "%s %s: %s",
                 c->conn == HTTP_CONNECTING ? "cannot connect to" : "connection to", c->url, why);
    } else if (what & BEV_EVENT_EOF) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t len = evbuffer_get_length(in), k = len < HTTP_EXCERPT_MAX ? len : HTTP_EXCERPT_MAX;
        char ex[EXCERPT_OUT] = "";
        if (k)
            http_excerpt((const char *)evbuffer_pullup(in, (ev_ssize_t)k), k, len,
                         HTTP_EXCERPT_MAX, ex, sizeof ex);
        snprintf(detail, sizeof detail, "%s closed the connection before a complete response%s%s",
                 c->url, k ? ": " : "", ex);
    } else {
        return;
    }
    fail(c, detail);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_client *c = arg;
    char detail[HTTP_DETAIL_MAX];
    (void)fd, (void)what;
    if (c->conn == HTTP_CONNECTING)
        snprintf(detail, sizeof detail, "cannot connect to %s: not connected%s within %lld ms",
                 c->url, c->ssl ? " (TLS)" : "", tv_ms(c->connect_to));
    else if (c->status)
        snprintf(detail, sizeof detail, "%s answered %d but the response did not end within %lld ms",
                 c->url, c->status, tv_ms(c->ack_to));
    else
        snprintf(detail, sizeof detail, "no response from %s within %lld ms", c->url,
                 tv_ms(c->ack_to));
    fail(c, detail);
}

static int conn_open(struct http_client *c)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICSERV, .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
    struct addrinfo *res = NULL;
    char port[16], detail[HTTP_DETAIL_MAX];

    snprintf(port, sizeof port, "%u", c->u.port);
    int rc = getaddrinfo(c->u.host, port, &hints, &res);
    if (rc) {
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", c->u.host, gai_strerror(rc));
        return fail_later(c, DELIVERY_RETRY, detail);
    }
    c->bev = tls_client_bufferevent(c->base, c->ssl, c->verify_name);
    if (!c->bev) {
        freeaddrinfo(res);
        return fail_later(c, DELIVERY_RETRY, "out of memory making the connection");
    }
    c->conn = HTTP_CONNECTING;
    c->st.connections++;
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evtimer_add(c->timer, &c->connect_to);
    rc = bufferevent_socket_connect(c->bev, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(detail, sizeof detail, "cannot connect to %s: %s", c->url, strerror(errno));
        conn_close(c);
        return fail_later(c, DELIVERY_RETRY, detail);
    }
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* ------------------------------------------------------------ the API */

int http_client_start(struct http_client *c, char *err, size_t errlen)
{
    if (!(c->timer = evtimer_new(c->base, on_timer, c)) ||
        !(c->later = evtimer_new(c->base, on_later, c)) || !(c->req = evbuffer_new())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->started = true;
    log_info(c->component, "destination ready", "destination=%s url=%s", c->name, c->url);
    return 0;
}

/* The whole request for d into c->req. Returns DELIVERY_OK, or the
 * outcome to report with detail. */
static enum delivery_outcome build(struct http_client *c, const struct delivery *d,
                                   char *detail, size_t dlen)
{
    const void *body = NULL;
    size_t len = 0;
    evbuffer_drain(c->req, evbuffer_get_length(c->req));
    if (evbuffer_add(c->req, c->req_head, strlen(c->req_head)) != 0)
        goto nomem;
    enum delivery_outcome o = c->hooks.build(c->hooks.ctx, d, c->req, &body, &len, detail, dlen);
    if (o != DELIVERY_OK)
        return o;
    if (evbuffer_add_printf(c->req, "Content-Length: %zu\r\n\r\n", len) < 0 ||
        (len && evbuffer_add(c->req, body, len) != 0))
        goto nomem;
    return DELIVERY_OK;
nomem:
    snprintf(detail, dlen, "out of memory writing the request");
    return DELIVERY_RETRY;
}

int http_client_send(struct http_client *c, const struct delivery *d)
{
    char detail[HTTP_DETAIL_MAX] = "";
    if (!c || !c->started || c->d)
        return -1;
    c->d = d;
    c->rs = RS_HEAD;
    c->status = 0;
    c->reason[0] = '\0';
    c->remaining = 0;
    c->got = 0;
    c->cut = false;
    buf_reset(&c->body);
    c->body_total = 0;
    conn_close(c);   /* one connection per request */
    enum delivery_outcome o = build(c, d, detail, sizeof detail);
    if (o != DELIVERY_OK)
        return fail_later(c, o, detail);
    return conn_open(c);
}

bool http_client_busy(const struct http_client *c)
{
    return c && c->d != NULL;
}

void http_client_stats(const struct http_client *c, struct adapter_stats *out)
{
    if (!c) {
        *out = (struct adapter_stats){ 0 };
        return;
    }
    *out = c->st;
    out->connections_open = c->conn == HTTP_OPEN;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    c->d = NULL;   /* no report: the engine is going too */
    conn_close(c);
    if (c->timer)
        event_free(c->timer);
    if (c->later)
        event_free(c->later);
    if (c->req)
        evbuffer_free(c->req);
    SSL_CTX_free(c->ssl);
    buf_free(&c->body);
    free(c->verify_name);
    free(c->component);
    free(c->name);
    free(c->url);
    free(c->req_head);
    free(c);
}
