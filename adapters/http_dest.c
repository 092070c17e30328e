/*
 * http_dest.c: the "http" adapter type, and its destination role (the
 * source role is http_source.c; the table's functions dispatch on
 * a->role): each message is
 * POSTed to a URL (HTTP/1.1, plain or TLS 1.2+) and the response status
 * decides the outcome, reported once (delivery_report).
 *
 * - One message in flight; send() while one is returns -1. The adapter
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
 * - The body is sent as it is, Content-Type application/hl7-v2+er7 (or
 *   application/json when it starts with '{') unless headers gives one.
 * - The response: 2xx is delivered; 4xx will never succeed as it is and
 *   is dead-lettered; 5xx, 1xx left over, 3xx (redirects are not
 *   followed), no response, a connection that fails, and no complete
 *   response within ack_timeout_ms are retried. At most max_message_bytes
 *   of the response are read: the status decides, the rest is ignored.
 *   Every failure's detail carries the status and an escaped excerpt of
 *   the body.
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
#include "delivery.h"
#include "log.h"
#include "version.h"

#define COMPONENT   "http"
#define EXCERPT_MAX 200     /* bytes of a response body shown in details and logs */
#define HTTP_LINE_MAX 4096   /* a chunk-size or trailer line */
#define DETAIL_MAX    3072   /* a detail: room for the URL (path up to 2 KiB) and an excerpt */

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

struct http_dest {
    struct adapter        *a;
    struct event_base     *base;
    /* from the config, in configure() */
    char                  *name;
    char                  *url;           /* for messages */
    struct http_url        u;
    char                  *req_head;      /* the request's fixed header lines, custom ones included */
    bool                   own_ctype;     /* headers gives a Content-Type */
    struct timeval         connect_to;
    struct timeval         ack_to;        /* tv_sec < 0: no timeout */
    size_t                 max_reply;
    SSL_CTX               *ssl;
    char                  *verify_name;
    /* running */
    bool                   started;
    enum http_conn         conn;
    struct bufferevent    *bev;
    struct event          *timer;         /* connect+handshake, then the response */
    struct event          *later;         /* reports a failure found inside send() */
    char                   later_detail[DETAIL_MAX];
    const struct delivery *d;             /* in flight; NULL when idle */
    /* the response */
    enum http_rs           rs;
    int                    status;        /* 0: no status line yet */
    char                   reason[64];
    uint64_t               remaining;     /* of the body or the chunk */
    size_t                 got;           /* response bytes read */
    bool                   cut;           /* stopped at max_message_bytes */
    char                   body[EXCERPT_MAX + 1];
    size_t                 body_len;      /* kept in body */
    size_t                 body_total;    /* seen */
    struct adapter_stats   st;
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

/* What arrived, made safe to show: printable ASCII as it is, CR as \r, LF
 * as \n, anything else as \xNN, at most EXCERPT_MAX input bytes; "..."
 * after when more (total) was seen. */
static void excerpt(const char *p, size_t n, size_t total, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < EXCERPT_MAX && o + 5 < outlen; i++) {
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
    if ((total > n || n > EXCERPT_MAX) && o + 4 < outlen)
        o += (size_t)snprintf(out + o, outlen - o, "...");
    out[o < outlen ? o : outlen - 1] = '\0';
}

/* ------------------------------------------------------------ configure */

static int tls_configure(struct http_dest *s, const struct config_tls_client *t, char *err,
                         size_t errlen)
{
    if (!(s->ssl = tls_client_context(t, err, errlen)))
        return -1;
    if (!(s->verify_name = strdup(t && t->server_name ? t->server_name : s->u.host))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The header lines every request carries, but Content-Type and
 * Content-Length. */
static int build_head(struct http_dest *s, const struct config_strlist *headers, char *err,
                      size_t errlen)
{
    char why[256];
    bool v6 = strchr(s->u.host, ':') != NULL;
    struct evbuffer *b = evbuffer_new();
    int rc = -1;
    if (!b)
        goto nomem;
    if (evbuffer_add_printf(b, "POST %s HTTP/1.1\r\nHost: %s%s%s", s->u.path, v6 ? "[" : "",
                            s->u.host, v6 ? "]" : "") < 0)
        goto nomem;
    if (!s->u.default_port && evbuffer_add_printf(b, ":%u", s->u.port) < 0)
        goto nomem;
    if (evbuffer_add_printf(b, "\r\nUser-Agent: hl7broker/%s\r\nConnection: close\r\n",
                            HL7BROKER_VERSION) < 0)
        goto nomem;
    for (size_t i = 0; i < headers->n; i++) {
        const char *h = headers->v[i];
        if (!http_header_valid(h, why, sizeof why)) {
            snprintf(err, errlen, "headers[%zu]: %s", i, why);
            goto out;
        }
        if (strncasecmp(h, "content-type:", 13) == 0)
            s->own_ctype = true;
        if (evbuffer_add_printf(b, "%s\r\n", h) < 0)
            goto nomem;
    }
    size_t n = evbuffer_get_length(b);
    if (!(s->req_head = malloc(n + 1)))
        goto nomem;
    evbuffer_remove(b, s->req_head, n);
    s->req_head[n] = '\0';
    rc = 0;
    goto out;
nomem:
    snprintf(err, errlen, "out of memory");
out:
    if (b)
        evbuffer_free(b);
    return rc;
}

static int http_configure(struct adapter *a, char *err, size_t errlen)
{
    struct http_dest *s = a->state;
    char why[256];
    if (a->role != ADAPTER_DESTINATION) {
        snprintf(err, errlen, "adapter type \"http\" cannot run as a source");
        return -1;
    }
    const struct http_destination_opts *o = a->dst->opts;
    s->a = a;
    s->base = a->base;
    if (!o->url) {
        snprintf(err, errlen, "url: required");
        return -1;
    }
    if (!(s->name = strdup(a->name)) || !(s->url = strdup(o->url))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (http_url_parse(o->url, &s->u, why, sizeof why) != 0) {
        snprintf(err, errlen, "url: \"%s\": %s", o->url, why);
        return -1;
    }
    if (o->tls && !s->u.tls) {
        snprintf(err, errlen, "tls: a tls group needs an https:// url");
        return -1;
    }
    if (build_head(s, &o->headers, err, errlen) != 0)
        return -1;
    s->connect_to = ms_tv(o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000);
    s->ack_to = a->dst->ack_timeout_ms > 0 ? ms_tv(a->dst->ack_timeout_ms)
                                           : (struct timeval){ -1, 0 };
    s->max_reply = o->max_message_bytes > 0 ? (size_t)o->max_message_bytes : 1048576;
    if (s->u.tls && tls_configure(s, o->tls, err, errlen) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ outcomes */

static void conn_close(struct http_dest *s)
{
    if (s->bev)
        bufferevent_free(s->bev);
    s->bev = NULL;
    if (s->timer)
        evtimer_del(s->timer);
    if (s->conn == HTTP_OPEN && s->st.connections_open)
        s->st.connections_open--;
    s->conn = HTTP_CLOSED;
}

/* The delivery in flight is over: the connection is closed and the
 * adapter idle before the report, so the engine may send the next message
 * from inside it. */
static void finish(struct http_dest *s, enum delivery_outcome o, const char *detail)
{
    const struct delivery *d = s->d;
    conn_close(s);
    s->d = NULL;
    if (!d)
        return;
    if (o == DELIVERY_OK) {
        s->st.messages++;
        s->st.bytes += d->len;
        log_debug(COMPONENT, "delivered", "destination=%s msg_id=%llu status=%d", s->name,
                  (unsigned long long)d->msg_id, s->status);
    } else {
        log_warn(COMPONENT, o == DELIVERY_RETRY ? "delivery failed: will retry"
                                                : "delivery failed: permanent",
                 "destination=%s url=%s msg_id=%llu attempt=%u detail=%s", s->name, s->url,
                 (unsigned long long)d->msg_id, d->attempt, detail);
    }
    delivery_report(s->a, d, o, detail);
}

static void fail(struct http_dest *s, const char *detail)
{
    finish(s, DELIVERY_RETRY, detail);
}

/* The response's status decides. */
static void complete(struct http_dest *s)
{
    char ex[EXCERPT_MAX * 4 + 8], detail[DETAIL_MAX];
    enum delivery_outcome o;
    const char *why = "";
    if (s->status >= 200 && s->status <= 299) {
        o = DELIVERY_OK;
    } else if (s->status >= 400 && s->status <= 499) {
        o = DELIVERY_PERMANENT;
    } else {
        o = DELIVERY_RETRY;
        if (s->status >= 300 && s->status <= 399)
            why = " (redirects are not followed: fix the url)";
    }
    excerpt(s->body, s->body_len, s->body_total, ex, sizeof ex);
    snprintf(detail, sizeof detail, "%s answered %d%s%s%s%s%s%s", s->url, s->status,
             s->reason[0] ? " " : "", s->reason, why, ex[0] ? ": " : "", ex,
             s->cut ? " (response cut at max_message_bytes)" : "");
    finish(s, o, detail);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct http_dest *s = arg;
    (void)fd, (void)what;
    char detail[sizeof s->later_detail];
    memcpy(detail, s->later_detail, sizeof detail);
    fail(s, detail);
}

/* A failure found inside send(): reported from the loop, as promised. */
static int fail_later(struct http_dest *s, const char *detail)
{
    snprintf(s->later_detail, sizeof s->later_detail, "%s", detail);
    event_active(s->later, EV_TIMEOUT, 0);
    return 0;
}

/* --------------------------------------------------------- the response */

/* Parse the status line and headers in h (n bytes, ending in the empty
 * line). Returns 0, or -1 with detail filled. */
static int parse_head(struct http_dest *s, const char *h, size_t n, char *detail, size_t dlen)
{
    char ex[EXCERPT_MAX * 4 + 8];
    const char *end = h + n, *eol = memchr(h, '\n', n);
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' || !eol ||
        h[9] < '1' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9' ||
        (h[12] != ' ' && h[12] != '\r' && h[12] != '\n')) {
        excerpt(h, n, n, ex, sizeof ex);
        snprintf(detail, dlen, "the response from %s is not HTTP/1.x: %s", s->url, ex);
        return -1;
    }
    s->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    s->reason[0] = '\0';
    if (h[12] == ' ') {
        size_t rl = (size_t)(eol - (h + 13));
        if (rl && h[13 + rl - 1] == '\r')
            rl--;
        excerpt(h + 13, rl < 40 ? rl : 40, rl, s->reason, sizeof s->reason);
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
                             s->url);
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
    if (s->status < 200) {
        s->rs = RS_HEAD;   /* 100 Continue and friends: the real one follows */
    } else if (s->status == 204 || s->status == 304) {
        s->rs = RS_DONE;
    } else if (chunked) {
        s->rs = RS_CHUNK_SIZE;
    } else if (has_len) {
        s->remaining = len;
        s->rs = len ? RS_BODY_LEN : RS_DONE;
    } else {
        s->rs = RS_BODY_EOF;
    }
    return 0;
}

/* Take up to n body bytes from in (only an excerpt is kept). */
static void body_take(struct http_dest *s, struct evbuffer *in, size_t n)
{
    if (s->body_len < EXCERPT_MAX) {
        size_t k = EXCERPT_MAX - s->body_len;
        if (k > n)
            k = n;
        evbuffer_copyout(in, s->body + s->body_len, k);
        s->body_len += k;
    }
    s->body_total += n;
    s->got += n;
    evbuffer_drain(in, n);
}

/* Read what arrived. Returns 1 when the response is complete (or as much
 * of it as will be read), 0 for more, -1 after a failure was reported. */
static int parse(struct http_dest *s, struct evbuffer *in)
{
    char detail[DETAIL_MAX], ex[EXCERPT_MAX * 4 + 8];
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (s->rs != RS_DONE && s->rs != RS_HEAD && s->got >= s->max_reply) {
            s->cut = true;
            return 1;
        }
        switch (s->rs) {
        case RS_DONE:
            return 1;
        case RS_HEAD: {
            struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
            size_t hlen = e.pos >= 0 ? (size_t)e.pos + 4 : 0;
            if (e.pos < 0 && s->got + len <= s->max_reply)
                return 0;
            if (e.pos < 0 || s->got + hlen > s->max_reply) {
                size_t k = len < EXCERPT_MAX ? len : EXCERPT_MAX;
                excerpt((const char *)evbuffer_pullup(in, (ev_ssize_t)k), k, len, ex, sizeof ex);
                snprintf(detail, sizeof detail,
                         "the response headers from %s are over max_message_bytes (%zu): %s",
                         s->url, s->max_reply, ex);
                s->st.oversize++;
                fail(s, detail);
                return -1;
            }
            const char *h = (const char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
            if (!h) {
                fail(s, "out of memory reading the response");
                return -1;
            }
            if (parse_head(s, h, hlen, detail, sizeof detail) != 0) {
                fail(s, detail);
                return -1;
            }
            evbuffer_drain(in, hlen);
            s->got += hlen;
            break;
        }
        case RS_BODY_EOF:
            if (!len)
                return 0;
            body_take(s, in, len);
            break;
        case RS_BODY_LEN:
        case RS_CHUNK_DATA: {
            if (!len)
                return 0;
            size_t n = s->remaining < len ? (size_t)s->remaining : len;
            if (n > s->max_reply - s->got)
                n = s->max_reply - s->got;
            body_take(s, in, n);
            s->remaining -= n;
            if (!s->remaining)
                s->rs = s->rs == RS_BODY_LEN ? RS_DONE : RS_CHUNK_CRLF;
            break;
        }
        case RS_CHUNK_CRLF:
        case RS_CHUNK_SIZE:
        case RS_TRAILER: {
            size_t eol_len = 0;
            struct evbuffer_ptr e = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
            if (e.pos < 0) {
                if (len > HTTP_LINE_MAX)
                    return 1;   /* not HTTP framing any more: the status decides */
                return 0;
            }
            size_t ll = (size_t)e.pos;
            char line[32] = "";
            evbuffer_copyout(in, line, ll < sizeof line - 1 ? ll : sizeof line - 1);
            evbuffer_drain(in, ll + eol_len);
            s->got += ll + eol_len;
            if (s->rs == RS_CHUNK_CRLF) {
                s->rs = RS_CHUNK_SIZE;
            } else if (s->rs == RS_TRAILER) {
                if (ll == 0)
                    s->rs = RS_DONE;
            } else {
                char *q;
                errno = 0;
                unsigned long long size = strtoull(line, &q, 16);
                if (q == line || errno)
                    return 1;   /* a bad chunk size: the status decides */
                s->remaining = size;
                s->rs = size ? RS_CHUNK_DATA : RS_TRAILER;
            }
            break;
        }
        }
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct http_dest *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!s->d) {   /* nothing asked: the server talks out of turn */
        s->st.discarded_bytes += evbuffer_get_length(in);
        conn_close(s);
        return;
    }
    int r = parse(s, in);
    if (r == 1)
        complete(s);
}

/* --------------------------------------------------------- connection */

static void send_request(struct http_dest *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    const struct delivery *d = s->d;
    bool json = d->len && d->payload[0] == '{';
    int rc = evbuffer_add(out, s->req_head, strlen(s->req_head));
    if (rc == 0 && !s->own_ctype)
        rc = evbuffer_add_printf(out, "Content-Type: %s\r\n",
                                 json ? "application/json" : "application/hl7-v2+er7") < 0;
    if (rc == 0)
        rc = evbuffer_add_printf(out, "Content-Length: %zu\r\n\r\n", d->len) < 0;
    if (rc == 0)
        rc = evbuffer_add(out, d->payload, d->len);
    if (rc != 0) {
        fail(s, "out of memory writing the request");
        return;
    }
    if (s->ack_to.tv_sec >= 0)
        evtimer_add(s->timer, &s->ack_to);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct http_dest *s = arg;
    char why[256], detail[DETAIL_MAX];
    (void)bev;

    if (what & BEV_EVENT_CONNECTED) {
        s->conn = HTTP_OPEN;
        s->st.connections_open++;
        evtimer_del(s->timer);
        if (s->d)
            send_request(s);
        else
            conn_close(s);
        return;
    }
    if (!s->d) {
        conn_close(s);
        return;
    }
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && s->status >= 200) {
        /* a close ends a body without framing; elsewhere the status line
           has already said what happened to the message */
        complete(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        tls_client_error(s->bev, s->ssl, s->conn == HTTP_CONNECTING, why, sizeof why);
        if (s->ssl && s->conn == HTTP_CONNECTING)
            s->st.tls_failures++;
        snprintf(detail, sizeof detail, "%s %s: %s",
                 s->conn == HTTP_CONNECTING ? "cannot connect to" : "connection to", s->url, why);
    } else if (what & BEV_EVENT_EOF) {
        struct evbuffer *in = bufferevent_get_input(s->bev);
        size_t len = evbuffer_get_length(in), k = len < EXCERPT_MAX ? len : EXCERPT_MAX;
        char ex[EXCERPT_MAX * 4 + 8] = "";
        if (k)
            excerpt((const char *)evbuffer_pullup(in, (ev_ssize_t)k), k, len, ex, sizeof ex);
        snprintf(detail, sizeof detail, "%s closed the connection before a complete response%s%s",
                 s->url, k ? ": " : "", ex);
    } else {
        return;
    }
    fail(s, detail);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_dest *s = arg;
    char detail[DETAIL_MAX];
    (void)fd, (void)what;
    if (s->conn == HTTP_CONNECTING)
        snprintf(detail, sizeof detail, "cannot connect to %s: not connected%s within %lld ms",
                 s->url, s->ssl ? " (TLS)" : "", tv_ms(s->connect_to));
    else if (s->status)
        snprintf(detail, sizeof detail, "%s answered %d but the response did not end within %lld ms",
                 s->url, s->status, tv_ms(s->ack_to));
    else
        snprintf(detail, sizeof detail, "no response from %s within %lld ms", s->url,
                 tv_ms(s->ack_to));
    fail(s, detail);
}

static int conn_open(struct http_dest *s)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICSERV, .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
    struct addrinfo *res = NULL;
    char port[16], detail[DETAIL_MAX];

    snprintf(port, sizeof port, "%u", s->u.port);
    int rc = getaddrinfo(s->u.host, port, &hints, &res);
    if (rc) {
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", s->u.host, gai_strerror(rc));
        return fail_later(s, detail);
    }
    s->bev = tls_client_bufferevent(s->base, s->ssl, s->verify_name);
    if (!s->bev) {
        freeaddrinfo(res);
        return fail_later(s, "out of memory making the connection");
    }
    s->conn = HTTP_CONNECTING;
    s->st.connections++;
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    evtimer_add(s->timer, &s->connect_to);
    rc = bufferevent_socket_connect(s->bev, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(detail, sizeof detail, "cannot connect to %s: %s", s->url, strerror(errno));
        conn_close(s);
        return fail_later(s, detail);
    }
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* ------------------------------------------------------------ the table */

static int http_start(struct adapter *a, char *err, size_t errlen)
{
    struct http_dest *s = a->state;
    if (!(s->timer = evtimer_new(s->base, on_timer, s)) ||
        !(s->later = evtimer_new(s->base, on_later, s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->started = true;
    log_info(COMPONENT, "destination ready", "destination=%s url=%s", s->name, s->url);
    return 0;
}

static int http_send(struct adapter *a, const struct delivery *d)
{
    struct http_dest *s = a->state;
    if (!s->started || s->d)
        return -1;
    s->d = d;
    s->rs = RS_HEAD;
    s->status = 0;
    s->reason[0] = '\0';
    s->remaining = 0;
    s->got = 0;
    s->cut = false;
    s->body_len = s->body_total = 0;
    conn_close(s);   /* one connection per request */
    return conn_open(s);
}

static void http_drain(struct adapter *a)
{
    (void)a;
}

static bool http_busy(const struct adapter *a)
{
    const struct http_dest *s = a->state;
    return s->d != NULL;
}

static void http_stop(struct adapter *a)
{
    struct http_dest *s = a->state;
    s->d = NULL;   /* no report: the engine is going too */
    conn_close(s);
    if (s->timer)
        event_free(s->timer);
    if (s->later)
        event_free(s->later);
    s->timer = s->later = NULL;
    s->started = false;
    SSL_CTX_free(s->ssl);
    s->ssl = NULL;
    free(s->verify_name);
    free(s->name);
    free(s->url);
    free(s->req_head);
    s->verify_name = s->name = s->url = s->req_head = NULL;
}

static void http_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct http_dest *s = a->state;
    *out = s->st;
    out->connections_open = s->conn == HTTP_OPEN;
}

/* The type serves both roles: each entry goes to the role's code. */

static bool is_src(const struct adapter *a)
{
    return a->role == ADAPTER_SOURCE;
}

static int http_role_configure(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? http_src_configure(a, err, errlen) : http_configure(a, err, errlen);
}

static int http_role_start(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? http_src_start(a, err, errlen) : http_start(a, err, errlen);
}

static int http_role_send(struct adapter *a, const struct delivery *d)
{
    return is_src(a) ? -1 : http_send(a, d);
}

static void http_role_drain(struct adapter *a)
{
    if (is_src(a))
        http_src_drain(a);
    else
        http_drain(a);
}

static bool http_role_busy(const struct adapter *a)
{
    return is_src(a) ? http_src_busy(a) : http_busy(a);
}

static void http_role_stop(struct adapter *a)
{
    if (is_src(a))
        http_src_stop(a);
    else
        http_stop(a);
}

static void http_role_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (is_src(a))
        http_src_stats(a, out);
    else
        http_stats(a, out);
}

const struct adapter_type http_adapter = {
    .name = "http",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    /* the source role needs only a pointer here (http.h) */
    .state_size = sizeof(struct http_dest),
    .configure = http_role_configure,
    .start = http_role_start,
    .send = http_role_send,
    .drain = http_role_drain,
    .busy = http_role_busy,
    .stop = http_role_stop,
    .stats = http_role_stats,
};
