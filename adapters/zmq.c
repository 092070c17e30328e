/*
 * zmq.c: the "zmq" adapter type (its table dispatches on a->role: the
 * source role is zmq_source.c), the helpers both roles share, and the
 * destination role: messages out over ZeroMQ, on the libevent loop
 * through the socket's ZMQ_FD.
 *
 * mode pub: best-effort notification. Each message is two frames: the
 * topic "<code>^<trigger>" ("ADT^A01"; just the code when there is no
 * trigger), then the payload. Subscribers filter on the topic prefix. A
 * delivery is OK once ZeroMQ has queued it. The socket refuses rather
 * than drops when a subscriber's queue is full (ZMQ_XPUB_NODROP with
 * sndhwm): that delivery is retried later.
 *
 * mode req: confirmed delivery, one message in flight. The payload goes
 * as one frame; the subscriber (a REP or ROUTER socket) answers with one
 * frame (further frames are ignored):
 *   "OK..."        the subscriber has it: DELIVERY_OK;
 *   "ERR <text>"   refused: DELIVERY_PERMANENT when on_error_ack is
 *                  dead_letter, else DELIVERY_RETRY, with the text;
 *   anything else  DELIVERY_RETRY, the reply quoted in the detail.
 * No reply within ack_timeout_ms: the socket is closed and made anew (a
 * REQ socket cannot send again before it has its reply) and the delivery
 * is retried; a reply that comes later is lost with the old socket.
 *
 * ZMQ_FD is edge-triggered: it signals that something changed, not that
 * a message waits. So on every wake-up and after every send, ZMQ_EVENTS
 * is read in a loop until nothing is left to receive.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <zmq.h>

#include "adapter.h"
#include "adapter_config.h"
#include "config.h"
#include "delivery.h"
#include "log.h"
#include "zmq_int.h"

#define COMPONENT       "zmq"
#define REPLY_SHOWN     200     /* bytes of a reply quoted in a detail */
#define DEFAULT_ACK_MS  30000   /* when the destination gives none */

struct zmq_dest {
    struct adapter        *a;
    char                  *name;
    char                  *endpoint;
    int                    mode;          /* enum zmq_dest_mode */
    bool                   bind;
    int                    sndhwm;
    int64_t                ack_ms;
    int                    on_error_ack;  /* enum config_on_error_ack */
    void                  *zctx;
    void                  *sock;          /* NULL: to be made at the next send */
    struct event          *io;            /* EV_READ on the socket's ZMQ_FD */
    struct event          *later;         /* reports the outcome from the loop */
    struct event          *ack_timer;     /* req: the reply is due */
    const struct delivery *d;             /* in flight; NULL when idle */
    bool                   awaiting;      /* req: sent, the reply not yet read */
    bool                   finished;      /* the outcome is decided, not yet reported */
    enum delivery_outcome  outcome;
    char                   detail[512];
    struct adapter_stats   st;
};

static void on_io(evutil_socket_t fd, short what, void *arg);

/* ------------------------------------------------------ shared helpers */

bool zmq_readable(void *sock)
{
    int ev = 0;
    size_t evlen = sizeof ev;
    return zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &evlen) == 0 && (ev & ZMQ_POLLIN);
}

struct event *zmq_watch(struct event_base *base, void *sock, event_callback_fn cb, void *arg)
{
    int fd = -1;
    size_t fdlen = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &fdlen) != 0)
        return NULL;
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, cb, arg);
    if (ev && event_add(ev, NULL) != 0) {
        event_free(ev);
        ev = NULL;
    }
    if (!ev)
        errno = ENOMEM;
    return ev;
}

/* --------------------------------------------------------- destination */

static int zmq_dest_configure(struct adapter *a, char *err, size_t errlen)
{
    struct zmq_dest *s = a->state;
    const struct zmq_destination_opts *o = a->dst->opts;
    if (!o || !o->endpoint) {
        snprintf(err, errlen, "destination %s: no endpoint", a->name);
        return -1;
    }
    s->a = a;
    s->mode = o->mode;
    s->bind = o->bind;
    s->sndhwm = (int)o->sndhwm;
    s->ack_ms = a->dst->ack_timeout_ms > 0 ? a->dst->ack_timeout_ms : DEFAULT_ACK_MS;
    s->on_error_ack = a->dst->on_error_ack;
    if (!(s->name = strdup(a->name ? a->name : "")) || !(s->endpoint = strdup(o->endpoint))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static const char *mode_name(const struct zmq_dest *s)
{
    return s->mode == ZMQ_DEST_PUB ? "pub" : "req";
}

static void close_socket(struct zmq_dest *s)
{
    if (s->io)
        event_free(s->io);   /* before the socket: the fd is the socket's */
    s->io = NULL;
    if (s->sock)
        zmq_close(s->sock);
    s->sock = NULL;
    s->awaiting = false;
}

/* Make the socket, bind or connect it, and watch its ZMQ_FD. Returns 0, or
 * -1 with err filled (and no socket). */
static int open_socket(struct zmq_dest *s, char *err, size_t errlen)
{
    int zero = 0, one = 1;
    const char *step = "create the socket";

    if (!(s->sock = zmq_socket(s->zctx, s->mode == ZMQ_DEST_PUB ? ZMQ_PUB : ZMQ_REQ)))
        goto fail;
    step = "set its options";
    if (zmq_setsockopt(s->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s->sock, ZMQ_SNDHWM, &s->sndhwm, sizeof s->sndhwm) != 0)
        goto fail;
    /* Refuse (EAGAIN) rather than drop silently when a subscriber's queue
       is full, so the engine retries. */
    if (s->mode == ZMQ_DEST_PUB &&
        zmq_setsockopt(s->sock, ZMQ_XPUB_NODROP, &one, sizeof one) != 0)
        goto fail;
    step = s->bind ? "bind" : "connect";
    if ((s->bind ? zmq_bind(s->sock, s->endpoint) : zmq_connect(s->sock, s->endpoint)) != 0)
        goto fail;
    step = "watch its ZMQ_FD";
    if (!(s->io = zmq_watch(s->a->base, s->sock, on_io, s)))
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s (%s): cannot %s: %s", s->endpoint, mode_name(s), step,
             zmq_strerror(zmq_errno()));
    close_socket(s);
    return -1;
}

/* Decide the outcome of the delivery in flight; it is reported from the
 * loop (on_later), never from inside send(). */
static void finish(struct zmq_dest *s, enum delivery_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct zmq_dest *s, enum delivery_outcome o, const char *fmt, ...)
{
    if (!s->d || s->finished)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->detail, sizeof s->detail, fmt, ap);
    va_end(ap);
    s->outcome = o;
    s->finished = true;
    s->awaiting = false;
    evtimer_del(s->ack_timer);
    if (o != DELIVERY_OK)
        log_warn(COMPONENT, o == DELIVERY_RETRY ? "delivery failed: will retry"
                                                : "delivery refused",
                 "destination=%s msg_id=%llu detail=%s", s->name,
                 (unsigned long long)s->d->msg_id, s->detail);
    event_active(s->later, EV_TIMEOUT, 0);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    struct zmq_dest *s = arg;
    (void)fd, (void)what;
    const struct delivery *d = s->d;
    if (!d || !s->finished)
        return;
    char detail[sizeof s->detail];
    memcpy(detail, s->detail, sizeof detail);
    s->d = NULL;   /* idle before the report: the engine may send from it */
    s->finished = false;
    delivery_report(s->a, d, s->outcome, detail);
}

/* req: what the subscriber's reply means. */
static void on_reply(struct zmq_dest *s, const char *r, size_t n)
{
    int shown = n > REPLY_SHOWN ? REPLY_SHOWN : (int)n;
    if (!s->awaiting) {
        log_warn(COMPONENT, "reply with nothing in flight: ignored", "destination=%s reply=%.*s",
                 s->name, shown, r);
        return;
    }
    if (n >= 2 && memcmp(r, "OK", 2) == 0) {
        s->st.messages++;
        s->st.bytes += s->d->len;
        finish(s, DELIVERY_OK, "reply %.*s", shown, r);
    } else if (n >= 3 && memcmp(r, "ERR", 3) == 0) {
        const char *t = r + 3;
        size_t tn = n - 3;
        if (tn && *t == ' ')
            t++, tn--;
        int tshown = tn > REPLY_SHOWN ? REPLY_SHOWN : (int)tn;
        finish(s, s->on_error_ack == CONFIG_ON_ERROR_DEAD_LETTER ? DELIVERY_PERMANENT
                                                                : DELIVERY_RETRY,
               "refused by the subscriber: %.*s", tshown, t);
    } else {
        finish(s, DELIVERY_RETRY, "unexpected reply (neither OK nor ERR): %.*s", shown, r);
    }
}

/* Receive everything waiting. ZMQ_FD only says that something changed, so
 * read ZMQ_EVENTS until no message is left. */
static void drain_socket(struct zmq_dest *s)
{
    while (s->sock && zmq_readable(s->sock)) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        bool more = zmq_msg_more(&m);
        on_reply(s, zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
        while (more && s->sock) {   /* frames after the first are ignored */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0)
                more = false;
            else
                more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    drain_socket(arg);
}

static void on_ack_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct zmq_dest *s = arg;
    char err[512] = "";
    (void)fd, (void)what;
    if (!s->awaiting)
        return;
    /* A REQ socket must have its reply before it sends again: start over. */
    close_socket(s);
    if (open_socket(s, err, sizeof err) != 0)
        log_warn(COMPONENT, "cannot recreate the socket: will try at the next send",
                 "destination=%s detail=%s", s->name, err);
    finish(s, DELIVERY_RETRY, "no reply within %lld ms from %s: socket recreated",
           (long long)s->ack_ms, s->endpoint);
}

static int zmq_dest_start(struct adapter *a, char *err, size_t errlen)
{
    struct zmq_dest *s = a->state;
    if (!(s->zctx = zmq_ctx_new())) {
        snprintf(err, errlen, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (!(s->later = evtimer_new(a->base, on_later, s)) ||
        !(s->ack_timer = evtimer_new(a->base, on_ack_timeout, s))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (open_socket(s, err, errlen) != 0)
        return -1;
    log_info(COMPONENT, "destination ready", "destination=%s endpoint=%s mode=%s bind=%s",
             s->name, s->endpoint, mode_name(s), s->bind ? "true" : "false");
    return 0;
}

static void send_pub(struct zmq_dest *s, const struct delivery *d)
{
    char topic[256];
    if (d->trigger && d->trigger[0])
        snprintf(topic, sizeof topic, "%s^%s", d->code ? d->code : "", d->trigger);
    else
        snprintf(topic, sizeof topic, "%s", d->code ? d->code : "");
    if (zmq_send(s->sock, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if (e == EAGAIN)
            finish(s, DELIVERY_RETRY, "%s: high-water mark reached (sndhwm %d): a subscriber "
                   "is not keeping up", s->endpoint, s->sndhwm);
        else
            finish(s, DELIVERY_RETRY, "%s: cannot send: %s", s->endpoint, zmq_strerror(e));
        return;
    }
    if (zmq_send(s->sock, d->payload, d->len, ZMQ_DONTWAIT) < 0) {
        /* Not expected once the first frame went (the check is per
           message), but a half-sent message must not stay queued. */
        int e = zmq_errno();
        close_socket(s);
        finish(s, DELIVERY_RETRY, "%s: cannot send the payload frame: %s; socket closed",
               s->endpoint, zmq_strerror(e));
        return;
    }
    s->st.messages++;
    s->st.bytes += d->len;
    finish(s, DELIVERY_OK, "published on %s as %s", s->endpoint, topic);
}

static void send_req(struct zmq_dest *s, const struct delivery *d)
{
    if (zmq_send(s->sock, d->payload, d->len, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        if (e != EAGAIN)
            close_socket(s);   /* EFSM and worse: start over at the next send */
        finish(s, DELIVERY_RETRY, "%s: cannot send: %s", s->endpoint,
               e == EAGAIN ? "no peer ready to take it" : zmq_strerror(e));
        return;
    }
    s->awaiting = true;
    struct timeval tv = { .tv_sec = s->ack_ms / 1000, .tv_usec = (s->ack_ms % 1000) * 1000 };
    evtimer_add(s->ack_timer, &tv);
}

static int zmq_dest_send(struct adapter *a, const struct delivery *d)
{
    struct zmq_dest *s = a->state;
    char err[512];
    if (!s->later || s->d)
        return -1;
    s->d = d;
    s->finished = false;
    if (!s->sock && open_socket(s, err, sizeof err) != 0) {
        finish(s, DELIVERY_RETRY, "%s", err);
        return 0;
    }
    if (s->mode == ZMQ_DEST_PUB)
        send_pub(s, d);
    else
        send_req(s, d);
    drain_socket(s);   /* ZMQ_FD is edge-triggered: look now, not at the next edge */
    return 0;
}

static void zmq_dest_drain(struct adapter *a)
{
    (void)a;
}

static bool zmq_dest_busy(const struct adapter *a)
{
    const struct zmq_dest *s = a->state;
    return s->d != NULL;
}

static void zmq_dest_stop(struct adapter *a)
{
    struct zmq_dest *s = a->state;
    close_socket(s);
    if (s->later)
        event_free(s->later);
    if (s->ack_timer)
        event_free(s->ack_timer);
    s->later = s->ack_timer = NULL;
    if (s->zctx)
        zmq_ctx_term(s->zctx);   /* prompt: every socket had ZMQ_LINGER 0 */
    s->zctx = NULL;
    s->d = NULL;
    free(s->name);
    free(s->endpoint);
    s->name = s->endpoint = NULL;
}

static void zmq_dest_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct zmq_dest *s = a->state;
    *out = s->st;
}

/* The type serves both roles: each entry goes to the role's code. */

static int zmq_configure(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? zmq_dest_configure(a, err, errlen)
                                          : zmq_source_configure(a, err, errlen);
}

static int zmq_start(struct adapter *a, char *err, size_t errlen)
{
    return a->role == ADAPTER_DESTINATION ? zmq_dest_start(a, err, errlen)
                                          : zmq_source_start(a, err, errlen);
}

static int zmq_send_delivery(struct adapter *a, const struct delivery *d)
{
    return a->role == ADAPTER_DESTINATION ? zmq_dest_send(a, d) : -1;
}

static void zmq_drain(struct adapter *a)
{
    if (a->role == ADAPTER_DESTINATION)
        zmq_dest_drain(a);
    else
        zmq_source_drain(a);
}

static bool zmq_busy(const struct adapter *a)
{
    return a->role == ADAPTER_DESTINATION ? zmq_dest_busy(a) : zmq_source_busy(a);
}

static void zmq_stop(struct adapter *a)
{
    if (a->role == ADAPTER_DESTINATION)
        zmq_dest_stop(a);
    else
        zmq_source_stop(a);
}

static void zmq_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (a->role == ADAPTER_DESTINATION)
        zmq_dest_stats(a, out);
    else
        zmq_source_stats(a, out);
}

union zmq_instance {
    struct zmq_source src;
    struct zmq_dest   dst;
};

const struct adapter_type zmq_adapter = {
    .name = "zmq",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    .state_size = sizeof(union zmq_instance),
    .configure = zmq_configure,
    .start = zmq_start,
    .send = zmq_send_delivery,
    .drain = zmq_drain,
    .busy = zmq_busy,
    .stop = zmq_stop,
    .stats = zmq_stats,
};
