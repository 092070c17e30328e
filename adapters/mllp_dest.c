/*
 * mllp_dest.c: the MLLP destination. Connects to a subscriber (plain TCP
 * or TLS 1.2+), sends one message at a time in an MLLP frame and reads its
 * HL7 ACK back, reporting each outcome once (delivery_report).
 *
 * - One message in flight; send() while one is returns -1. The adapter
 *   does no backoff: every failure is reported and the engine decides.
 * - The connection stays open between messages. It is (re)opened by the
 *   send() that finds it closed; connect_timeout_ms bounds the TCP connect
 *   and the TLS handshake together. The host is resolved then, blocking
 *   (getaddrinfo): configure numeric addresses or names /etc/hosts knows
 *   when that matters.
 * - TLS: the server is verified against tls.ca (or the system's store)
 *   and its name against tls.server_name, or the connect host (SNI is
 *   sent for names, IP addresses are checked against IP SANs); tls.cert
 *   and tls.key give a client certificate.
 * - The reply: AA/CA is delivered; AE/AR/CE/CR is retried or dead-lettered
 *   per on_error_ack; MSA-2 must equal the MSH-10 sent. Anything else (a
 *   mismatch, bytes outside a frame, a reply that does not parse, one over
 *   max_message_bytes) is a retryable error, logged with an escaped excerpt
 *   of what arrived, and the connection is closed to resynchronise. So is
 *   no reply within ack_timeout_ms, and a connection that fails or closes.
 */
#include "mllp_dest.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "adapter_config.h"
#include "buf.h"
#include "delivery.h"
#include "hl7.h"
#include "log.h"

#define COMPONENT   "mllp"
#define EXCERPT_MAX 80    /* bytes of a bad reply shown in details and logs */

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

/* What arrived, made safe to show: printable ASCII as it is, CR as \r,
 * anything else as \xNN, at most EXCERPT_MAX input bytes ("..." after). */
static void excerpt(const char *p, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && i < EXCERPT_MAX && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else if (c == '\r')
            o += (size_t)snprintf(out + o, outlen - o, "\\r");
        else if (c == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\\\");
        else
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
    }
    if (n > EXCERPT_MAX && o + 4 < outlen)
        o += (size_t)snprintf(out + o, outlen - o, "...");
    out[o < outlen ? o : outlen - 1] = '\0';
}

/* ------------------------------------------------------------ configure */

static int tls_configure(struct mllp_dest *s, const struct config_tls_client *t, char *err,
                         size_t errlen)
{
    if (!(s->ssl = tls_client_context(t, err, errlen)))
        return -1;
    if (!(s->verify_name = strdup(t && t->server_name ? t->server_name : s->host))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int mllp_dest_configure(struct adapter *a, char *err, size_t errlen)
{
    struct mllp_dest *s = a->state;
    const struct mllp_destination_opts *o = a->dst->opts;

    s->a = a;
    s->base = a->base;
    if (!(s->name = strdup(a->name)) || !(s->connect = strdup(o->connect))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (config_parse_hostport(o->connect, s->host, sizeof s->host, &s->port) != 0) {
        snprintf(err, errlen, "connect: \"%s\" is not host:port", o->connect);
        return -1;
    }
    s->connect_to = ms_tv(o->connect_timeout_ms);
    s->ack_to = a->dst->ack_timeout_ms > 0 ? ms_tv(a->dst->ack_timeout_ms)
                                           : (struct timeval){ -1, 0 };
    s->max_reply = (size_t)o->max_message_bytes;
    s->on_error_ack = a->dst->on_error_ack;
    if (o->tls && tls_configure(s, o->tls, err, errlen) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ outcomes */

static void conn_close(struct mllp_dest *s)
{
    if (s->bev)
        bufferevent_free(s->bev);
    s->bev = NULL;
    if (s->timer)
        evtimer_del(s->timer);
    if (s->conn == MLLP_DEST_OPEN && s->st.connections_open)
        s->st.connections_open--;
    s->conn = MLLP_DEST_CLOSED;
    mllp_framer_free(&s->fr);
}

/* The delivery in flight is over: the adapter is idle before the report,
 * so the engine may send the next message from inside it. */
static void finish(struct mllp_dest *s, enum delivery_outcome o, const char *detail)
{
    const struct delivery *d = s->d;
    s->d = NULL;
    if (s->timer)
        evtimer_del(s->timer);
    if (!d)
        return;
    if (o == DELIVERY_OK) {
        s->st.messages++;
        log_debug(COMPONENT, "delivered", "destination=%s msg_id=%llu control_id=%s", s->name,
                  (unsigned long long)d->msg_id, d->payload_control_id);
    } else {
        log_warn(COMPONENT, o == DELIVERY_RETRY ? "delivery failed: will retry"
                                                : "delivery failed: permanent",
                 "destination=%s connect=%s msg_id=%llu attempt=%u detail=%s", s->name,
                 s->connect, (unsigned long long)d->msg_id, d->attempt, detail);
    }
    delivery_report(s->a, d, o, detail);
}

/* Close the connection and report a retryable failure. */
static void fail(struct mllp_dest *s, const char *detail)
{
    conn_close(s);
    finish(s, DELIVERY_RETRY, detail);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct mllp_dest *s = arg;
    (void)fd, (void)what;
    char detail[sizeof s->later_detail];
    memcpy(detail, s->later_detail, sizeof detail);
    fail(s, detail);
}

/* A failure found inside send(): reported from the loop, as promised. */
static int fail_later(struct mllp_dest *s, const char *detail)
{
    snprintf(s->later_detail, sizeof s->later_detail, "%s", detail);
    event_active(s->later, EV_TIMEOUT, 0);
    return 0;
}

/* ------------------------------------------------------------ the reply */

/* The field at path, decoded, into out (empty when absent). */
static void field_text(const struct hl7_msg *m, const char *path, char *out, size_t outlen)
{
    struct hl7_path p;
    struct buf b = { 0 };
    out[0] = '\0';
    if (hl7_path_parse(path, strlen(path), &p, NULL) == 0 &&
        hl7_get_decoded(m, &p, &b) == HL7_VALUE && b.len)
        excerpt(b.p, b.len, out, outlen);
    buf_free(&b);
}

static void on_reply(struct mllp_dest *s, const char *p, size_t n)
{
    char ex[EXCERPT_MAX * 4 + 8], detail[1024];
    struct hl7_msg *m = NULL;
    struct hl7_error herr = { 0 };
    const struct delivery *d = s->d;

    if (!d) {
        excerpt(p, n, ex, sizeof ex);
        log_warn(COMPONENT, "reply with no message in flight: closing", "destination=%s reply=%s",
                 s->name, ex);
        conn_close(s);
        return;
    }
    if (hl7_parse(p, n, NULL, &m, &herr) != 0) {
        excerpt(p, n, ex, sizeof ex);
        snprintf(detail, sizeof detail, "the reply is not an HL7 message (%s): %s", herr.text, ex);
        fail(s, detail);
        return;
    }
    char code[8], ctl[200], text[EXCERPT_MAX * 4 + 8];
    field_text(m, "MSA-1", code, sizeof code);
    field_text(m, "MSA-2", ctl, sizeof ctl);
    const char *want = d->payload_control_id && d->payload_control_id[0] ? d->payload_control_id
                                                                         : d->control_id;
    bool ok = !strcmp(code, "AA") || !strcmp(code, "CA");
    bool err = !strcmp(code, "AE") || !strcmp(code, "AR") || !strcmp(code, "CE") ||
               !strcmp(code, "CR");
    if (!ok && !err) {
        excerpt(p, n, ex, sizeof ex);
        snprintf(detail, sizeof detail, "the reply has no usable MSA-1 (\"%s\"): %s", code, ex);
        hl7_free(m);
        fail(s, detail);
        return;
    }
    if (want && want[0] && strcmp(ctl, want) != 0) {
        excerpt(p, n, ex, sizeof ex);
        snprintf(detail, sizeof detail,
                 "the reply's MSA-2 \"%s\" is not the control id sent \"%s\": %s", ctl, want, ex);
        hl7_free(m);
        fail(s, detail);
        return;
    }
    if (ok) {
        hl7_free(m);
        finish(s, DELIVERY_OK, code);
        return;
    }
    field_text(m, "MSA-3", text, sizeof text);
    if (!text[0])
        field_text(m, "ERR-8", text, sizeof text);   /* user message */
    if (!text[0])
        field_text(m, "ERR-7", text, sizeof text);   /* diagnostic information */
    if (!text[0])
        field_text(m, "ERR-3.2", text, sizeof text);
    if (!text[0])
        field_text(m, "ERR-1", text, sizeof text);
    hl7_free(m);
    snprintf(detail, sizeof detail, "the subscriber answered %s%s%s", code,
             text[0] ? ": " : "", text);
    finish(s, s->on_error_ack == CONFIG_ON_ERROR_DEAD_LETTER ? DELIVERY_PERMANENT : DELIVERY_RETRY,
           detail);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct mllp_dest *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char ex[EXCERPT_MAX * 4 + 8], detail[1024];

    while (s->bev == bev && evbuffer_get_length(in)) {
        size_t len = evbuffer_get_length(in);
        if (!mllp_framer_in_frame(&s->fr)) {
            const unsigned char *c = evbuffer_pullup(in, 1);
            if (*c == '\r' || *c == '\n') {   /* stray line ends between frames */
                evbuffer_drain(in, 1);
                continue;
            }
            if (*c != MLLP_VT) {
                size_t k = len < EXCERPT_MAX + 1 ? len : EXCERPT_MAX + 1;
                excerpt((const char *)evbuffer_pullup(in, (ev_ssize_t)k), k, ex, sizeof ex);
                s->st.discarded_bytes += len;
                if (s->d) {
                    snprintf(detail, sizeof detail, "the reply is not MLLP framed: %s", ex);
                    fail(s, detail);
                } else {
                    log_warn(COMPONENT, "bytes outside a frame with no message in flight: closing",
                             "destination=%s reply=%s", s->name, ex);
                    conn_close(s);
                }
                return;
            }
        }
        size_t n = evbuffer_get_contiguous_space(in);
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        struct mllp_event ev;
        size_t used = mllp_framer_feed(&s->fr, p, n, &ev);
        s->st.bytes += used;
        switch (ev.kind) {
        case MLLP_EV_NONE:
            evbuffer_drain(in, used);
            break;
        case MLLP_EV_FRAME:
            on_reply(s, ev.data, ev.len);   /* may close the connection */
            if (s->bev == bev)
                evbuffer_drain(in, used);
            break;
        case MLLP_EV_OVERSIZE:
            s->st.oversize++;
            excerpt(ev.data, ev.len, ex, sizeof ex);
            snprintf(detail, sizeof detail,
                     "the reply (%zu bytes) is over max_message_bytes (%zu): %s", ev.total,
                     s->max_reply, ex);
            fail(s, detail);
            return;
        case MLLP_EV_NOMEM:
            fail(s, "out of memory reading the reply");
            return;
        }
    }
}

/* --------------------------------------------------------- connection */

static void send_frame(struct mllp_dest *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    static const char vt = MLLP_VT, end[2] = { MLLP_FS, MLLP_CR };
    if (evbuffer_add(out, &vt, 1) || evbuffer_add(out, s->d->payload, s->d->len) ||
        evbuffer_add(out, end, 2)) {
        fail(s, "out of memory writing the message");
        return;
    }
    if (s->ack_to.tv_sec >= 0)
        evtimer_add(s->timer, &s->ack_to);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct mllp_dest *s = arg;
    char why[256], detail[1024];
    (void)bev;

    if (what & BEV_EVENT_CONNECTED) {
        s->conn = MLLP_DEST_OPEN;
        s->st.connections_open++;
        evtimer_del(s->timer);
        if (s->ssl) {
            SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
            log_info(COMPONENT, "connected", "destination=%s connect=%s tls=yes protocol=%s",
                     s->name, s->connect, SSL_get_version(ssl));
        } else {
            log_info(COMPONENT, "connected", "destination=%s connect=%s tls=no", s->name,
                     s->connect);
        }
        if (s->d)
            send_frame(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        tls_client_error(s->bev, s->ssl, s->conn == MLLP_DEST_CONNECTING, why, sizeof why);
        if (s->ssl && s->conn == MLLP_DEST_CONNECTING)
            s->st.tls_failures++;
        snprintf(detail, sizeof detail, "%s %s: %s",
                 s->conn == MLLP_DEST_CONNECTING ? "cannot connect to" : "connection to",
                 s->connect, why);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(detail, sizeof detail, "%s closed the connection%s", s->connect,
                 s->d ? " before the ACK" : "");
    } else {
        return;
    }
    if (s->d) {
        fail(s, detail);
    } else {
        log_info(COMPONENT, "connection closed", "destination=%s detail=%s", s->name, detail);
        conn_close(s);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mllp_dest *s = arg;
    char detail[256];
    (void)fd, (void)what;
    if (s->conn == MLLP_DEST_CONNECTING)
        snprintf(detail, sizeof detail, "cannot connect to %s: not connected%s within %lld ms",
                 s->connect, s->ssl ? " (TLS)" : "",
                 (long long)s->connect_to.tv_sec * 1000 + s->connect_to.tv_usec / 1000);
    else
        snprintf(detail, sizeof detail, "no ACK from %s within %lld ms", s->connect,
                 (long long)s->ack_to.tv_sec * 1000 + s->ack_to.tv_usec / 1000);
    fail(s, detail);
}

static int conn_open(struct mllp_dest *s)
{
    struct addrinfo hints = { .ai_flags = AI_NUMERICSERV, .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
    struct addrinfo *res = NULL;
    char port[16], detail[1024];

    snprintf(port, sizeof port, "%u", s->port);
    int rc = getaddrinfo(s->host, port, &hints, &res);
    if (rc) {
        snprintf(detail, sizeof detail, "cannot resolve %s: %s", s->host, gai_strerror(rc));
        return fail_later(s, detail);
    }
    mllp_framer_init(&s->fr, s->max_reply, s->max_reply);
    s->bev = tls_client_bufferevent(s->base, s->ssl, s->verify_name);
    if (!s->bev) {
        freeaddrinfo(res);
        return fail_later(s, "out of memory making the connection");
    }
    s->conn = MLLP_DEST_CONNECTING;
    s->st.connections++;
    bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    evtimer_add(s->timer, &s->connect_to);
    rc = bufferevent_socket_connect(s->bev, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
        snprintf(detail, sizeof detail, "cannot connect to %s: %s", s->connect,
                 strerror(errno));
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

int mllp_dest_start(struct adapter *a, char *err, size_t errlen)
{
    struct mllp_dest *s = a->state;
    if (!(s->timer = evtimer_new(s->base, on_timer, s)) ||
        !(s->later = evtimer_new(s->base, on_later, s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->started = true;
    log_info(COMPONENT, "destination ready", "destination=%s connect=%s tls=%s", s->name,
             s->connect, s->ssl ? "yes" : "no");
    return 0;
}

int mllp_dest_send(struct adapter *a, const struct delivery *d)
{
    struct mllp_dest *s = a->state;
    if (!s->started || s->d)
        return -1;
    s->d = d;
    if (s->conn == MLLP_DEST_OPEN) {
        send_frame(s);
        return 0;
    }
    if (s->conn == MLLP_DEST_CLOSED)
        return conn_open(s);
    return 0;   /* connecting: the frame goes once connected */
}

bool mllp_dest_busy(const struct adapter *a)
{
    const struct mllp_dest *s = a->state;
    return s->d != NULL;
}

void mllp_dest_stop(struct adapter *a)
{
    struct mllp_dest *s = a->state;
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
    free(s->connect);
    s->verify_name = s->name = s->connect = NULL;
}

void mllp_dest_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct mllp_dest *s = a->state;
    *out = s->st;
    out->connections_open = s->conn == MLLP_DEST_OPEN;
}
