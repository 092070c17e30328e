/*
 * zmq_source.c: the "zmq" adapter type's source role (zmq.c dispatches on
 * a->role). A REP or ROUTER socket takes one HL7 message per request and
 * answers it with the message's ACK, sent only once ingest has committed
 * the message (or its refusal) durably.
 *
 * mode router: many requests in flight at once (up to max_inflight), from
 * REQ clients (frames: routing id, empty delimiter, body) or DEALER
 * clients (with or without the delimiter); each answer goes back with the
 * envelope its request came with, so a client may pipeline. Requests that
 * arrive in one loop turn share one commit.
 * mode rep: lock-step. The next request is not read until the answer to
 * the last one has been sent (a REP socket could not take it anyway).
 *
 * A request whose body is more than one frame is refused: AR, ERR 207
 * "it came in N frames", kept in the error store. A body over
 * max_message_bytes is refused the same way (ingest_refuse_oversize),
 * never truncated. ZeroMQ itself refuses frames over ZMQ_SOURCE_CEILING
 * times max_message_bytes (ZMQ_MAXMSGSIZE): it drops that sender's
 * connection, and no answer comes (the sender's REQ times out), which
 * bounds the memory a hostile sender can take.
 *
 * ZMQ_FD is edge-triggered: every wake-up, and every time reading may
 * resume (an answer sent, the in-flight count down), reads ZMQ_EVENTS and
 * takes requests until none is left or the source may take no more.
 * Answers are sent from the ingest reply; the next read is from the loop.
 *
 * ACKs of requests outstanding when the source is stopped are dropped
 * (the sender, having no answer, sends again and gets the stored ACK of
 * the duplicate). ACKs already queued get up to LINGER_MS to go out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <zmq.h>

#include "log.h"
#include "zmq_int.h"

#define COMPONENT   "zmq"
#define LINGER_MS   1000   /* for queued ACKs when the socket closes */
#define PUMP_BUDGET 256    /* requests taken per loop turn; then from the loop again */

struct zmq_source_req {
    struct zmq_source_req *next, *prev;
    struct zmq_source     *s;       /* NULL once the source is stopped */
    size_t                 n_env;
    zmq_msg_t              env[];   /* router: the envelope to answer with */
};

static struct log_ratelimit rl_refused = LOG_RATELIMIT_INIT(10000, 5);
static struct log_ratelimit rl_send = LOG_RATELIMIT_INIT(10000, 5);

/* --------------------------------------------------------- pure helpers */

size_t zmq_source_body_at(const size_t *sizes, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if (sizes[i] == 0)
            return i + 1;
    return 1;
}

void zmq_source_peer(char *out, size_t len, const char *addr, const unsigned char *id,
                     size_t id_len)
{
    static const char hex[] = "0123456789abcdef";
    if (!len)
        return;
    int w = snprintf(out, len, "%s", addr ? addr : "");
    size_t at = w < 0 ? 0 : (size_t)w;
    if (!id || at >= len)
        return;
    w = snprintf(out + at, len - at, " id=");
    at += w < 0 ? 0 : (size_t)w;
    size_t shown = id_len > ZMQ_SOURCE_ID_SHOWN ? ZMQ_SOURCE_ID_SHOWN : id_len;
    for (size_t i = 0; i < shown && at + 2 < len; i++) {
        out[at++] = hex[id[i] >> 4];
        out[at++] = hex[id[i] & 15];
    }
    if (shown < id_len && at + 2 < len) {
        out[at++] = '.';
        out[at++] = '.';
    }
    if (at < len)
        out[at] = '\0';
    else
        out[len - 1] = '\0';
}

/* ------------------------------------------------------------ requests */

static void req_free(struct zmq_source_req *q)
{
    for (size_t i = 0; i < q->n_env; i++)
        zmq_msg_close(&q->env[i]);
    free(q);
}

static void req_unlink(struct zmq_source *s, struct zmq_source_req *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        s->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->next = q->prev = NULL;
    s->inflight--;
}

/* Answer q with ack (its envelope first, for router). ZeroMQ takes it or,
 * when the sender has gone or does not read, drops it (ROUTER_MANDATORY is
 * off): the sender then sends again and gets the duplicate's ACK. */
static void send_answer(struct zmq_source *s, struct zmq_source_req *q, const char *ack,
                        size_t len)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < q->n_env; i++)
        rc = zmq_msg_send(&q->env[i], s->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ? -1 : 0;
    if (rc == 0)
        rc = zmq_send(s->sock, ack, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
    if (rc)
        log_msg_ratelimited(&rl_send, LOG_LEVEL_WARN, COMPONENT, "ACK not sent",
                            "source=%s endpoint=%s error=%s", s->name, s->endpoint,
                            zmq_strerror(zmq_errno()));
}

static void on_reply(void *ctx, const struct ingest_reply *r)
{
    struct zmq_source_req *q = ctx;
    struct zmq_source *s = q->s;
    if (!s) {   /* the source was stopped: nowhere to answer */
        req_free(q);
        return;
    }
    req_unlink(s, q);
    if (s->sock)
        send_answer(s, q, r->ack ? r->ack : "", r->ack ? r->ack_len : 0);
    req_free(q);
    /* Reading may resume, and the send may have taken ZMQ_FD's edge: look
       again, from the loop (this runs inside ingest's commit). */
    if (s->kick)
        event_active(s->kick, EV_TIMEOUT, 0);
}

/* Take one request off the socket and submit it. Returns 1 when one was
 * taken, 0 when none was waiting, -1 on a socket error. */
static int take_request(struct zmq_source *s)
{
    zmq_msg_t f[ZMQ_SOURCE_MAX_FRAMES];
    size_t sizes[ZMQ_SOURCE_MAX_FRAMES];
    size_t n = 0, frames = 0;
    char addr[256] = "";

    for (bool more = true; more;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            if (frames == 0)
                return e == EAGAIN || e == EINTR ? 0 : -1;
            break;   /* a multipart message arrives whole: not expected */
        }
        if (!addr[0]) {   /* a ROUTER's routing id frame carries none: the next */
            const char *pa = zmq_msg_gets(&m, "Peer-Address");
            if (pa && pa[0])
                snprintf(addr, sizeof addr, "%s", pa);
        }
        more = zmq_msg_more(&m);
        frames++;
        if (n < ZMQ_SOURCE_MAX_FRAMES) {
            zmq_msg_init(&f[n]);
            zmq_msg_move(&f[n], &m);
            sizes[n] = zmq_msg_size(&f[n]);
            n++;
        }
        zmq_msg_close(&m);
    }

    if (!addr[0])
        snprintf(addr, sizeof addr, "%s", s->endpoint);
    bool router = s->mode == ZMQ_SRC_ROUTER;
    size_t body = router ? zmq_source_body_at(sizes, n) : 0;
    size_t n_body = frames - body;
    const char *data = body < n ? zmq_msg_data(&f[body]) : "";
    size_t len = body < n ? sizes[body] : 0;
    size_t head = len > ZMQ_SOURCE_HEAD_KEEP ? ZMQ_SOURCE_HEAD_KEEP : len;
    char peer[ZMQ_SOURCE_PEER_MAX];
    zmq_source_peer(peer, sizeof peer, addr, router && n ? zmq_msg_data(&f[0]) : NULL,
                    router && n ? sizes[0] : 0);
    struct ingest_origin o = { .source = s->name, .peer = peer };

    struct zmq_source_req *q = calloc(1, sizeof *q + body * sizeof(zmq_msg_t));
    int rc = -1;
    if (q) {
        q->s = s;
        for (size_t i = 0; i < body; i++, q->n_env++) {
            zmq_msg_init(&q->env[i]);
            zmq_msg_move(&q->env[i], &f[i]);
        }
        q->next = s->reqs;
        if (s->reqs)
            s->reqs->prev = q;
        s->reqs = q;
        s->inflight++;
        s->st.messages++;
        s->st.bytes += len;
        if (n_body > 1) {
            char reason[160];
            snprintf(reason, sizeof reason, "it came in %zu ZeroMQ frames: this source takes "
                     "each message as one frame", n_body);
            log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, COMPONENT,
                                "multi-frame message refused", "source=%s peer=%s frames=%zu",
                                s->name, peer, n_body);
            rc = ingest_refuse(s->a->ingest, &o, data, head, reason, on_reply, q);
        } else if (len > s->policy.max_message_bytes) {
            s->st.oversize++;
            log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, COMPONENT,
                                "message over max_message_bytes refused",
                                "source=%s peer=%s bytes=%zu limit=%zu", s->name, peer, len,
                                s->policy.max_message_bytes);
            rc = ingest_refuse_oversize(s->a->ingest, &o, data, head, len,
                                        s->policy.max_message_bytes, on_reply, q);
        } else {
            rc = ingest_submit(s->a->ingest, &o, &s->policy, data, len, on_reply, q);
        }
    }
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    if (rc) {
        /* No reply will come. Answer empty (a REP socket must answer before
           it reads again; the sender learns it was not taken). */
        log_error(COMPONENT, "request not taken: out of memory", "source=%s peer=%s", s->name,
                  peer);
        if (q) {
            req_unlink(s, q);
            send_answer(s, q, "", 0);
            req_free(q);
        } else if (!router) {
            zmq_send(s->sock, "", 0, ZMQ_DONTWAIT);
        }
    }
    return 1;
}

/* Take every request waiting, while the source may take more. ZMQ_EVENTS
 * is read first, always: that is what clears ZMQ_FD. Left readable (the
 * source full or draining), the fd would wake the loop at once again and
 * again, and ingest's commit, at a lower priority, would never run. */
static void pump(struct zmq_source *s)
{
    for (int budget = PUMP_BUDGET; s->sock; budget--) {
        if (!zmq_readable(s->sock) || s->draining || s->inflight >= s->max_inflight)
            return;
        if (budget == 0) {   /* let other sources and the commit run */
            event_active(s->kick, EV_TIMEOUT, 0);
            return;
        }
        int rc = take_request(s);
        if (rc < 0)
            log_msg_ratelimited(&rl_send, LOG_LEVEL_ERROR, COMPONENT, "receive failed",
                                "source=%s endpoint=%s error=%s", s->name, s->endpoint,
                                zmq_strerror(zmq_errno()));
        if (rc <= 0)
            return;
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pump(arg);
}

/* ----------------------------------------------------------- the table */

int zmq_source_configure(struct adapter *a, char *err, size_t errlen)
{
    struct zmq_source *s = a->state;
    const struct zmq_source_opts *o = a->src ? a->src->opts : NULL;
    if (!o || !o->endpoint) {
        snprintf(err, errlen, "source %s: no endpoint", a->name);
        return -1;
    }
    s->a = a;
    s->mode = o->mode;
    s->bind = o->bind;
    s->rcvhwm = (int)o->rcvhwm;
    s->max_inflight = s->mode == ZMQ_SRC_REP ? 1 : (size_t)o->max_inflight;
    s->policy.max_message_bytes = (size_t)o->max_message_bytes;
    s->policy.check_nhs_number = a->src->check_nhs_number;
    if (!(s->name = strdup(a->name ? a->name : "")) || !(s->endpoint = strdup(o->endpoint))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static const char *mode_name(const struct zmq_source *s)
{
    return s->mode == ZMQ_SRC_REP ? "rep" : "router";
}

int zmq_source_start(struct adapter *a, char *err, size_t errlen)
{
    struct zmq_source *s = a->state;
    int linger = LINGER_MS;
    int64_t ceiling = (int64_t)s->policy.max_message_bytes * ZMQ_SOURCE_CEILING;
    const char *step = "create a ZeroMQ context";

    if (!(s->zctx = zmq_ctx_new()))
        goto fail;
    step = "create the socket";
    if (!(s->sock = zmq_socket(s->zctx, s->mode == ZMQ_SRC_REP ? ZMQ_REP : ZMQ_ROUTER)))
        goto fail;
    step = "set its options";
    if (zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_RCVHWM, &s->rcvhwm, sizeof s->rcvhwm) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &ceiling, sizeof ceiling) != 0)
        goto fail;
    step = s->bind ? "bind" : "connect";
    if ((s->bind ? zmq_bind(s->sock, s->endpoint) : zmq_connect(s->sock, s->endpoint)) != 0)
        goto fail;
    step = "watch its ZMQ_FD";
    if (!(s->kick = evtimer_new(a->base, on_io, s)) ||
        !(s->io = zmq_watch(a->base, s->sock, on_io, s)))
        goto fail;
    log_info(COMPONENT, "source ready", "source=%s endpoint=%s mode=%s bind=%s", s->name,
             s->endpoint, mode_name(s), s->bind ? "true" : "false");
    event_active(s->kick, EV_TIMEOUT, 0);   /* connect mode: requests may be queued already */
    return 0;
fail:
    snprintf(err, errlen, "%s (%s): cannot %s: %s", s->endpoint, mode_name(s), step,
             zmq_strerror(zmq_errno()));
    return -1;   /* stop() frees what was made */
}

void zmq_source_drain(struct adapter *a)
{
    struct zmq_source *s = a->state;
    s->draining = true;   /* read nothing more; answers still go out */
}

bool zmq_source_busy(const struct adapter *a)
{
    const struct zmq_source *s = a->state;
    return s->inflight > 0;
}

void zmq_source_stop(struct adapter *a)
{
    struct zmq_source *s = a->state;
    s->draining = true;
    if (s->io)
        event_free(s->io);   /* before the socket: the fd is the socket's */
    if (s->kick)
        event_free(s->kick);
    s->io = s->kick = NULL;
    if (s->inflight)
        log_info(COMPONENT, "source stopped with requests unanswered",
                 "source=%s unanswered=%zu", s->name, s->inflight);
    for (struct zmq_source_req *q = s->reqs; q; q = q->next)
        q->s = NULL;   /* each frees itself when ingest replies */
    s->reqs = NULL;
    s->inflight = 0;
    if (s->sock)
        zmq_close(s->sock);
    s->sock = NULL;
    if (s->zctx)
        zmq_ctx_term(s->zctx);   /* waits up to LINGER_MS for queued ACKs */
    s->zctx = NULL;
    free(s->name);
    free(s->endpoint);
    s->name = s->endpoint = NULL;
}

void zmq_source_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct zmq_source *s = a->state;
    *out = s->st;
}
