/*
 * mllp.c: the "mllp" adapter type, and its source role (the destination
 * role is mllp_dest.c; the table's functions dispatch on a->role). Listens on host:port, plain or under TLS;
 * frames what each peer sends (mllp_frame.c), hands every message to
 * ingest and writes its ACK back, in the order the messages arrived.
 *
 * Limits (DESIGN.md §8), so that no peer can stall the others or make
 * memory grow without bound:
 *  - a frame is gathered up to max_message_bytes; of a longer one only its
 *    first MLLP_HEAD_KEEP bytes are kept, for the AR (mllp.h);
 *  - at most MAX_INFLIGHT messages per connection wait for their ACK, and
 *    at most MAX_OUTPUT bytes of ACKs wait for the peer to read them:
 *    beyond either, the connection is not read until it drains, so its
 *    unread input stays in the kernel (and at most READ_HIGH bytes here);
 *  - a frame (and a TLS handshake) must finish within frame_timeout_ms, a
 *    connection may sit idle for idle_timeout_ms, the peer must read its
 *    ACKs within idle_timeout_ms;
 *  - max_connections, then an allow-list of addresses and, under TLS, of
 *    client certificate subjects.
 *
 * MLLP release 2 (commit_ack): each message is answered with the commit
 * block first, <VT><ACK><FS><CR> when it is durably stored (or was
 * already: a duplicate) and <VT><NAK><FS><CR> otherwise (refused or not
 * storable), then the HL7 ACK frame. The sender so learns about the commit
 * before it reads the HL7 answer.
 *
 * TLS (tls set): TLS 1.2 or later. With ca, a client may present a
 * certificate, which must verify; require_client_cert makes one
 * mandatory, and allowed_subjects then lists the subjects taken, compared
 * exactly with the certificate's subject printed as RFC 2253
 * ("CN=pas.rlh.example,O=Barts Health"). The subject goes with each
 * message to ingest. A refusal is logged with OpenSSL's reason.
 *
 * A connection that ends while replies are outstanding (the peer went,
 * or the source was stopped) keeps its small record until ingest has
 * called back for every message it submitted; those replies are dropped.
 * When the peer only half-closes (EOF), the replies still owed are written
 * before the connection is closed. Writing to a peer that has gone raises
 * SIGPIPE: the process must ignore it (hl7brokerd does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "adapter.h"
#include "adapter_config.h"
#include "tls.h"
#include "ingest.h"
#include "log.h"
#include "mllp.h"
#include "mllp_dest.h"

#define COMPONENT    "mllp"
#define BACKLOG      512
#define MAX_INFLIGHT 8                    /* messages per connection awaiting their ACK */
#define MAX_OUTPUT   ((size_t)256 << 10)  /* ACK bytes per connection awaiting the peer */
#define READ_HIGH    ((size_t)256 << 10)  /* input buffered per connection, unframed */
#define RELISTEN_MS  1000                 /* pause after accept() fails (out of fds) */
#define PEER_MAX     (INET6_ADDRSTRLEN + 16)

struct mllp_source;

struct conn {
    struct conn        *next, *prev;
    struct mllp_source *s;        /* NULL once the source is gone (waiting for replies) */
    struct bufferevent *bev;      /* NULL once closed */
    struct event       *timer;    /* the frame (or TLS handshake) timeout */
    struct mllp_framer  fr;
    uint64_t            timed_start;   /* fr.starts when the frame timer was armed */
    bool                timing;
    bool                handshaking;   /* TLS: not established yet */
    bool                eof;           /* the peer sends no more */
    bool                tls;           /* bev is an OpenSSL bufferevent */
    unsigned            outstanding;   /* submitted, reply not yet called */
    unsigned long long  messages, bytes;
    char                peer[PEER_MAX];
    char               *tls_subject;
};

struct mllp_source {
    struct event_base     *base;
    struct ingest         *ingest;
    /* copied from the config in configure(): the config may go on reload */
    char                  *name;
    char                  *listen;
    char                   host[256];
    unsigned               port;
    size_t                 max_connections;
    struct timeval         idle, frame;      /* idle.tv_sec < 0: no idle timeout */
    struct ingest_policy   policy;
    struct config_cidr    *allow;
    size_t                 n_allow;
    bool                   commit_ack;
    SSL_CTX               *ssl;
    char                 **subjects;
    size_t                 n_subjects;
    /* running */
    struct evconnlistener **ls;
    size_t                 n_ls;
    struct event          *relisten;
    struct conn           *conns;     /* open, or closed with replies outstanding */
    size_t                 n_open;
    bool                   draining;
    struct adapter_stats   st;
};

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

/* ------------------------------------------------------------ configure */

static int tls_configure(struct mllp_source *s, const struct config_tls_server *t,
                         char *err, size_t errlen)
{
    if (!(s->ssl = tls_server_context(t, "hl7broker-mllp", err, errlen)))
        return -1;
    if (t->allowed_subjects.n) {
        s->subjects = calloc(t->allowed_subjects.n, sizeof *s->subjects);
        if (!s->subjects)
            goto nomem;
        for (size_t i = 0; i < t->allowed_subjects.n; i++, s->n_subjects++)
            if (!(s->subjects[i] = strdup(t->allowed_subjects.v[i])))
                goto nomem;
    }
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int src_configure(struct adapter *a, char *err, size_t errlen)
{
    struct mllp_source *s = a->state;
    const struct mllp_source_opts *o = a->src->opts;

    s->base = a->base;
    s->ingest = a->ingest;
    if (!(s->name = strdup(a->name)) || !(s->listen = strdup(o->listen))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (config_parse_hostport(o->listen, s->host, sizeof s->host, &s->port) != 0) {
        snprintf(err, errlen, "listen: \"%s\" is not host:port", o->listen);
        return -1;
    }
    s->max_connections = (size_t)o->max_connections;
    s->idle = o->idle_timeout_ms > 0 ? ms_tv(o->idle_timeout_ms) : (struct timeval){ -1, 0 };
    s->frame = ms_tv(o->frame_timeout_ms);
    s->policy.max_message_bytes = (size_t)o->max_message_bytes;
    s->policy.check_nhs_number = a->src->check_nhs_number;
    s->commit_ack = o->commit_ack;
    if (o->allow.n) {
        if (!(s->allow = calloc(o->allow.n, sizeof *s->allow))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < o->allow.n; i++, s->n_allow++)
            if (config_parse_cidr(o->allow.v[i], &s->allow[i]) != 0) {
                snprintf(err, errlen, "allow: \"%s\" is not an address block", o->allow.v[i]);
                return -1;
            }
    }
    if (o->tls && tls_configure(s, o->tls, err, errlen) != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------- connections */

static struct log_ratelimit rl_refused = LOG_RATELIMIT_INIT(10000, 10);
static struct log_ratelimit rl_tls = LOG_RATELIMIT_INIT(10000, 10);
static struct log_ratelimit rl_junk = LOG_RATELIMIT_INIT(10000, 5);
static struct log_ratelimit rl_oversize = LOG_RATELIMIT_INIT(10000, 5);
static struct log_ratelimit rl_accept = LOG_RATELIMIT_INIT(10000, 2);

static size_t out_len(const struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static size_t in_len(const struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_input(c->bev));
}

/* Too much is waiting on our side: read nothing more for now. */
static bool conn_full(const struct conn *c)
{
    return c->outstanding >= MAX_INFLIGHT || out_len(c) > MAX_OUTPUT;
}

static bool conn_can_frame(const struct conn *c)
{
    return !c->s->draining && !c->handshaking && !conn_full(c);
}

static void conn_free(struct conn *c)
{
    if (c->s) {
        if (c->prev)
            c->prev->next = c->next;
        else
            c->s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    if (c->timer)
        event_free(c->timer);
    mllp_framer_free(&c->fr);
    free(c->tls_subject);
    free(c);
}

/* Close the socket. The record goes too, unless replies are outstanding:
 * then the last of them frees it. */
static void conn_close(struct conn *c, enum log_level level, const char *reason)
{
    struct mllp_source *s = c->s;
    size_t partial = mllp_framer_held(&c->fr);

    s->st.discarded_bytes += partial;
    log_msg(level, COMPONENT, "connection closed",
            "source=%s peer=%s reason=%s messages=%llu bytes=%llu partial_bytes=%zu unanswered=%u",
            s->name, c->peer, reason, c->messages, c->bytes, partial, c->outstanding);
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->timer)
        event_del(c->timer);
    s->n_open--;
    if (c->outstanding == 0)
        conn_free(c);
}

static void on_reply(void *ctx, const struct ingest_reply *r);

/* Frame what has been read, submitting each message, until the input is
 * used up or the connection is full. Returns false when it was closed. */
static bool conn_frame(struct conn *c)
{
    struct mllp_source *s = c->s;
    struct evbuffer *in = bufferevent_get_input(c->bev);

    while (conn_can_frame(c)) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            break;
        size_t n = evbuffer_get_contiguous_space(in);
        if (n == 0)
            n = len < 4096 ? len : 4096;   /* pulled up into one piece */
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        struct mllp_event ev;
        uint64_t discarded = c->fr.discarded_bytes, abandoned = c->fr.abandoned;
        size_t used = mllp_framer_feed(&c->fr, p, n, &ev);

        c->bytes += used;
        s->st.bytes += used;
        if (c->fr.discarded_bytes != discarded) {
            s->st.discarded_bytes += c->fr.discarded_bytes - discarded;
            log_msg_ratelimited(&rl_junk, LOG_LEVEL_WARN, COMPONENT,
                                c->fr.abandoned != abandoned
                                    ? "unfinished frame discarded: a new start byte came"
                                    : "bytes outside a frame discarded",
                                "source=%s peer=%s bytes=%llu", s->name, c->peer,
                                (unsigned long long)(c->fr.discarded_bytes - discarded));
        }
        struct ingest_origin o = { .source = s->name, .peer = c->peer,
                                   .tls_subject = c->tls_subject };
        int rc = 0;
        switch (ev.kind) {
        case MLLP_EV_NONE:
            break;
        case MLLP_EV_FRAME:
            c->outstanding++;   /* before: the count holds whenever the reply comes */
            rc = ingest_submit(s->ingest, &o, &s->policy, ev.data, ev.len, on_reply, c);
            break;
        case MLLP_EV_OVERSIZE:
            s->st.oversize++;
            log_msg_ratelimited(&rl_oversize, LOG_LEVEL_WARN, COMPONENT,
                                "message over max_message_bytes refused",
                                "source=%s peer=%s bytes=%zu limit=%zu", s->name, c->peer,
                                ev.total, s->policy.max_message_bytes);
            c->outstanding++;
            rc = ingest_refuse_oversize(s->ingest, &o, ev.data, ev.len, ev.total,
                                        s->policy.max_message_bytes, on_reply, c);
            break;
        case MLLP_EV_NOMEM:
            rc = -1;
            break;
        }
        if (ev.kind == MLLP_EV_FRAME || ev.kind == MLLP_EV_OVERSIZE) {
            if (rc) {
                c->outstanding--;   /* no reply will come */
            } else {
                c->messages++;
                s->st.messages++;
            }
        }
        evbuffer_drain(in, used);   /* only now: ev.data may point into it */
        if (rc) {
            conn_close(c, LOG_LEVEL_ERROR, "out of memory");
            return false;
        }
    }
    return true;
}

/* Bring reading, timers and the end of the connection in line with its
 * state; call after anything that changes it. */
static void conn_update(struct conn *c)
{
    struct mllp_source *s = c->s;
    size_t pending_in = in_len(c);

    if (c->eof && c->outstanding == 0 && out_len(c) == 0 &&
        !(pending_in && conn_can_frame(c))) {
        conn_close(c, LOG_LEVEL_INFO, "closed by the peer");
        return;
    }
    bool reading = !s->draining && !c->eof && !conn_full(c);
    if (reading != ((bufferevent_get_enabled(c->bev) & EV_READ) != 0)) {
        if (reading)
            bufferevent_enable(c->bev, EV_READ);
        else
            bufferevent_disable(c->bev, EV_READ);
    }

    /* The frame timer runs while the peer could be sending the frame's
       end and is not held back by us. */
    if (!c->handshaking) {
        bool want = reading && mllp_framer_in_frame(&c->fr);
        if (want && (!c->timing || c->timed_start != c->fr.starts)) {
            evtimer_add(c->timer, &s->frame);
            c->timing = true;
            c->timed_start = c->fr.starts;
        } else if (!want && c->timing) {
            evtimer_del(c->timer);
            c->timing = false;
        }
    }
    /* Input read before we stopped: frame it from the loop, not from here
       (this may run inside an ingest reply). */
    if (pending_in && conn_can_frame(c))
        bufferevent_trigger(c->bev, EV_READ,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (conn_frame(c))
        conn_update(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_update(arg);   /* the ACKs drained: maybe read again, or finish */
}

static void on_reply(void *ctx, const struct ingest_reply *r)
{
    struct conn *c = ctx;

    c->outstanding--;
    if (!c->bev) {
        if (c->outstanding == 0)
            conn_free(c);
        return;
    }
    if (!r->ack || r->ack_len == 0) {
        conn_close(c, LOG_LEVEL_ERROR, "no ACK could be made: closing so the sender sends again");
        return;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char commit[4] = { MLLP_VT, r->committed ? MLLP_ACK : MLLP_NAK, MLLP_FS, MLLP_CR };
    static const char vt = MLLP_VT, end[2] = { MLLP_FS, MLLP_CR };
    struct iovec iov[4];
    int n = 0;
    if (c->s->commit_ack)
        iov[n++] = (struct iovec){ (void *)commit, sizeof commit };
    iov[n++] = (struct iovec){ (void *)&vt, 1 };
    iov[n++] = (struct iovec){ (void *)r->ack, r->ack_len };
    iov[n++] = (struct iovec){ (void *)end, sizeof end };

    /* Plain TCP with nothing queued: write now. Going through the output
       buffer costs two epoll_ctl calls and a loop turn per ACK, a third of
       the system calls of a message under load. What the socket does not
       take goes to the buffer, in order. */
    size_t done = 0;
    if (!c->tls && evbuffer_get_length(out) == 0) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(bufferevent_getfd(c->bev), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            done = (size_t)w;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (done >= iov[i].iov_len) {
            done -= iov[i].iov_len;
            continue;
        }
        rc |= evbuffer_add(out, (const char *)iov[i].iov_base + done, iov[i].iov_len - done);
        done = 0;
    }
    if (rc) {
        conn_close(c, LOG_LEVEL_ERROR, "out of memory");
        return;
    }
    conn_update(c);
}

static void tls_refuse(struct conn *c, const char *reason, const char *detail)
{
    struct mllp_source *s = c->s;
    s->st.tls_failures++;
    log_msg_ratelimited(&rl_tls, LOG_LEVEL_WARN, COMPONENT, "TLS connection refused",
                        "source=%s peer=%s reason=%s error=%s subject=%s", s->name, c->peer,
                        reason, detail, c->tls_subject);
    conn_close(c, LOG_LEVEL_INFO, reason);
}

static void tls_established(struct conn *c)
{
    struct mllp_source *s = c->s;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    c->handshaking = false;
    evtimer_del(c->timer);
    c->tls_subject = tls_peer_subject(ssl);
    if (s->n_subjects) {
        bool ok = false;
        for (size_t i = 0; c->tls_subject && i < s->n_subjects && !ok; i++)
            ok = strcmp(c->tls_subject, s->subjects[i]) == 0;
        if (!ok) {
            tls_refuse(c, "client certificate subject not allowed",
                       c->tls_subject ? "not in allowed_subjects" : "no client certificate");
            return;
        }
    }
    log_info(COMPONENT, "TLS established", "source=%s peer=%s protocol=%s cipher=%s subject=%s",
             s->name, c->peer, SSL_get_version(ssl), SSL_get_cipher_name(ssl), c->tls_subject);
    conn_update(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    char why[256];

    if (what & BEV_EVENT_CONNECTED) {
        tls_established(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        int e = EVUTIL_SOCKET_ERROR();
        /* libevent hands its record back newest first, and puts an
           SSL_ERROR_* code of its own (no library part) among OpenSSL's
           errors: keep the oldest real one, the cause. */
        unsigned long se, cause = 0;
        while ((se = bufferevent_get_openssl_error(bev)))
            if (ERR_GET_LIB(se))
                cause = se;
        if (cause)
            ERR_error_string_n(cause, why, sizeof why);
        else if (e)
            snprintf(why, sizeof why, "%s", evutil_socket_error_to_string(e));
        else
            snprintf(why, sizeof why, "the connection failed");
        ERR_clear_error();
        if (c->handshaking) {
            tls_refuse(c, "TLS handshake failed", why);
        } else {
            char reason[300];
            snprintf(reason, sizeof reason, "error: %s", why);
            conn_close(c, LOG_LEVEL_INFO, reason);
        }
        return;
    }
    if (what & BEV_EVENT_EOF) {
        if (c->handshaking) {
            tls_refuse(c, "TLS handshake failed", "the peer closed the connection");
            return;
        }
        c->eof = true;
        conn_update(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (c->handshaking) {
            tls_refuse(c, "TLS handshake failed", "idle timeout");
        } else if (what & BEV_EVENT_WRITING) {
            conn_close(c, LOG_LEVEL_INFO, "write timeout: the peer reads no ACKs");
        } else if (c->outstanding || out_len(c)) {
            conn_update(c);   /* waiting on us, not idle: read on */
        } else {
            conn_close(c, LOG_LEVEL_INFO, "idle timeout");
        }
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd, (void)what;
    if (c->handshaking) {
        tls_refuse(c, "TLS handshake failed", "not finished within frame_timeout_ms");
        return;
    }
    c->timing = false;
    conn_close(c, LOG_LEVEL_WARN,
               "frame timeout: a frame was not finished within frame_timeout_ms");
}



static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct mllp_source *s = arg;
    char peer[PEER_MAX];
    int family;
    const void *addr;
    (void)l, (void)salen;

    adapter_peer_format(sa, peer, sizeof peer, &family, &addr);
    if (!adapter_peer_allowed(s->allow, s->n_allow, family, addr)) {
        s->st.refused_connections++;
        log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, COMPONENT,
                            "connection refused: address not allowed", "source=%s peer=%s",
                            s->name, peer);
        evutil_closesocket(fd);
        return;
    }
    if (s->n_open >= s->max_connections) {
        s->st.refused_connections++;
        log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, COMPONENT,
                            "connection refused: max_connections reached",
                            "source=%s peer=%s max_connections=%zu", s->name, peer,
                            s->max_connections);
        evutil_closesocket(fd);
        return;
    }

    struct conn *c = calloc(1, sizeof *c);
    if (!c || !(c->timer = evtimer_new(s->base, on_timer, c)))
        goto nomem;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* ACKs are small and awaited */
    if (s->ssl) {
        SSL *ssl = SSL_new(s->ssl);
        c->bev = ssl ? bufferevent_openssl_socket_new(s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        /* On failure libevent frees ssl itself (BEV_OPT_CLOSE_ON_FREE), not fd. */
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);   /* a bare TCP close is EOF */
        c->handshaking = true;
        c->tls = true;
    } else {
        c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev)
        goto nomem;
    memcpy(c->peer, peer, sizeof peer);
    c->s = s;
    mllp_framer_init(&c->fr, s->policy.max_message_bytes, MLLP_HEAD_KEEP);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_open++;
    s->st.connections++;

    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
    bufferevent_set_timeouts(c->bev, s->idle.tv_sec >= 0 ? &s->idle : NULL,
                             s->idle.tv_sec >= 0 ? &s->idle : NULL);
    log_info(COMPONENT, "connection opened", "source=%s peer=%s tls=%s open=%zu", s->name,
             c->peer, s->ssl ? "yes" : "no", s->n_open);
    if (c->handshaking)
        evtimer_add(c->timer, &s->frame);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    return;
nomem:
    if (c && c->timer)
        event_free(c->timer);
    free(c);
    evutil_closesocket(fd);
    log_error(COMPONENT, "connection refused: out of memory", "source=%s peer=%s", s->name, peer);
}

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
    struct mllp_source *s = arg;
    (void)fd, (void)what;
    for (size_t i = 0; !s->draining && i < s->n_ls; i++)
        evconnlistener_enable(s->ls[i]);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct mllp_source *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    (void)l;
    log_msg_ratelimited(&rl_accept, LOG_LEVEL_ERROR, COMPONENT, "accept failed: pausing",
                        "source=%s error=%s pause_ms=%d", s->name,
                        evutil_socket_error_to_string(e), RELISTEN_MS);
    /* Most likely out of file descriptors: accepting again at once would
       spin. Wait for connections to close. */
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_disable(s->ls[i]);
    struct timeval tv = ms_tv(RELISTEN_MS);
    evtimer_add(s->relisten, &tv);
}

/* ----------------------------------------------------------- the table */

static void close_listeners(struct mllp_source *s)
{
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_free(s->ls[i]);
    free(s->ls);
    s->ls = NULL;
    s->n_ls = 0;
    if (s->relisten)
        event_free(s->relisten);
    s->relisten = NULL;
}

static int src_start(struct adapter *a, char *err, size_t errlen)
{
    struct mllp_source *s = a->state;
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
    struct addrinfo *res = NULL;
    char port[16];

    snprintf(port, sizeof port, "%u", s->port);
    int rc = getaddrinfo(s->host, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "listen %s: cannot resolve %s: %s", s->listen, s->host,
                 gai_strerror(rc));
        return -1;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    if (!(s->ls = calloc(n, sizeof *s->ls)) ||
        !(s->relisten = evtimer_new(s->base, on_relisten, s))) {
        freeaddrinfo(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Every address the host has; a source runs if one of them binds. */
    char first_err[256] = "";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char where[PEER_MAX];
        int family;
        const void *addr;
        adapter_peer_format(ai->ai_addr, where, sizeof where, &family, &addr);
        struct evconnlistener *l = evconnlistener_new_bind(
            s->base, on_accept, s,
            LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, BACKLOG,
            ai->ai_addr, (int)ai->ai_addrlen);
        if (!l) {
            int e = errno;
            if (!first_err[0])
                snprintf(first_err, sizeof first_err, "cannot listen on %s: %s", where,
                         strerror(e));
            log_warn(COMPONENT, "cannot listen", "source=%s address=%s error=%s", s->name, where,
                     strerror(e));
            continue;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        s->ls[s->n_ls++] = l;
        log_info(COMPONENT, "listening", "source=%s address=%s tls=%s", s->name, where,
                 s->ssl ? "yes" : "no");
    }
    freeaddrinfo(res);
    if (!s->n_ls) {
        snprintf(err, errlen, "listen %s: %s", s->listen, first_err[0] ? first_err : "no address");
        return -1;
    }
    return 0;
}

static void src_drain(struct adapter *a)
{
    struct mllp_source *s = a->state;
    s->draining = true;
    close_listeners(s);
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->bev)
            conn_update(c);
    }
}

static bool src_busy(const struct adapter *a)
{
    const struct mllp_source *s = a->state;
    for (const struct conn *c = s->conns; c; c = c->next)
        if (c->outstanding || (c->bev && out_len(c)))
            return true;
    return false;
}

static void src_stop(struct adapter *a)
{
    struct mllp_source *s = a->state;

    s->draining = true;
    close_listeners(s);
    while (s->conns) {
        struct conn *c = s->conns;
        bool waits = c->outstanding > 0;
        if (c->bev)
            conn_close(c, LOG_LEVEL_INFO, "source stopped");
        if (waits) {   /* still listed: detach it; its last reply frees it */
            s->conns = c->next;
            if (c->next)
                c->next->prev = NULL;
            c->s = NULL;
        }
    }
    SSL_CTX_free(s->ssl);
    s->ssl = NULL;
    for (size_t i = 0; i < s->n_subjects; i++)
        free(s->subjects[i]);
    free(s->subjects);
    s->subjects = NULL;
    s->n_subjects = 0;
    free(s->allow);
    s->allow = NULL;
    s->n_allow = 0;
    free(s->name);
    s->name = NULL;
    free(s->listen);
    s->listen = NULL;
}

static void src_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct mllp_source *s = a->state;
    *out = s->st;
    out->connections_open = s->n_open;
}

/* The type serves both roles: each entry goes to the role's code. */

static int mllp_configure(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? mllp_dest_configure(a, err, errlen)
                                          : src_configure(a, err, errlen);
}

static int mllp_start(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? mllp_dest_start(a, err, errlen)
                                          : src_start(a, err, errlen);
}

static int mllp_send(struct adapter *a, const struct delivery *d)
{
    return a->role == ADAPTER_DESTINATION ? mllp_dest_send(a, d) : -1;
}

static void mllp_drain(struct adapter *a)
{
    if (a->role != ADAPTER_DESTINATION)   /* a destination finishes its message */
        src_drain(a);
}

static bool mllp_busy(const struct adapter *a)
{
    return a->role == ADAPTER_DESTINATION ? mllp_dest_busy(a) : src_busy(a);
}

static void mllp_stop(struct adapter *a)
{
    if (a->role == ADAPTER_DESTINATION)
        mllp_dest_stop(a);
    else
        src_stop(a);
}

static void mllp_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (a->role == ADAPTER_DESTINATION)
        mllp_dest_stats(a, out);
    else
        src_stats(a, out);
}

union mllp_instance {
    struct mllp_source src;
    struct mllp_dest   dst;
};

const struct adapter_type mllp_adapter = {
    .name = "mllp",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    .state_size = sizeof(union mllp_instance),
    .configure = mllp_configure,
    .start = mllp_start,
    .send = mllp_send,
    .drain = mllp_drain,
    .busy = mllp_busy,
    .stop = mllp_stop,
    .stats = mllp_stats,
};
