/*
 * delivery.c: the delivery engine (include/delivery.h). Feeds each
 * destination adapter its outbox, one message at a time, in order, and
 * writes the outcomes back to the store in batches: inside ingest's group
 * commit when one comes, else in a short transaction of its own.
 *
 * Threads (delivery_opts.threaded): the sending side (the adapters, their
 * timers, the reads of the outbox) runs on a thread of its own with its
 * own event_base (dbase); the writing side (write_ev, flush_ev, retry_ev,
 * the ingest hook, delivery_flush) stays on the main loop, so a commit's
 * fsync never holds up an ACK from a subscriber. e->lock guards what both
 * sides touch: each destination's pend array and counts, next_seq,
 * state and next_attempt_ms (written by the delivery side, except a
 * retry's D_WRITING -> D_IDLE by the writer), paused, the counters and
 * the latency histogram, e->n_pend. The lock is never held across a
 * store call, an adapter call or a log line. One side asks the other for
 * work with event_active (go_ev, kick_ev: on dbase; write_ev, flush_ev:
 * on the main base). Unthreaded, dbase is the main base and the lock is
 * taken all the same (uncontended).
 */
#include "delivery.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "store.h"

/* A store failure while writing outcomes: try again after this long. */
#define STORE_RETRY_MS 1000
#define ERR_MAX        1024
/* Outcomes wait at most this long for an ingest commit to join before the
 * engine commits them itself, and at most this many of them. */
#define FLUSH_MS       20
#define FLUSH_MAX      4096

enum dest_state {
    D_IDLE,         /* nothing queued (or paused): waits for a kick or resume */
    D_WAITING,      /* the head waits for its next attempt time (timer armed) */
    D_SENDING,      /* handed to the adapter; its report is awaited */
    D_WRITING,      /* a retry is reported: the head waits for its store write */
};

enum pending { P_DELIVERED, P_RETRY, P_DEAD };

/* An outcome reported but not yet in the store. */
struct outcome {
    enum pending kind;
    uint64_t     seq;
    uint32_t     attempts;    /* P_RETRY */
    uint64_t     next_ms;     /* P_RETRY */
    char        *err;         /* P_RETRY, P_DEAD */
};

struct dest {
    struct delivery_engine          *eng;
    const struct config_destination *cfg;
    uint32_t                         id;
    struct adapter                  *a;
    enum dest_state                  state;
    bool                             paused;
    struct event                    *timer;
    struct event                    *go_ev;   /* send the next one (after a report) */
    /* The first outbox seq not yet handed over: entries before it have an
       outcome (maybe still only in pend). 0 after a start: the head. */
    uint64_t                         next_seq;
    /* the entry in flight (D_SENDING, D_WRITING) */
    struct store_outbox_entry        cur;
    void                            *cur_owner;
    struct delivery                  d;
    char                             payload_ctrl[200];
    /* outcomes in report order, until written; n_written of them are in
       the transaction being committed */
    struct outcome                  *pend;
    size_t                           n_pend, cap_pend, n_written;
    uint64_t                         next_attempt_ms;
    uint64_t                         delivered, retried, dead;
    struct metrics_hist              latency;   /* receipt to confirmed, seconds */
    bool                             wake;      /* outcomes_done: fetch again */
};

/* An outcome copied for writing, so that the store calls run unlocked. */
struct wout {
    uint32_t       dest_id;
    struct outcome o;
};

struct delivery_engine {
    struct event_base *base;       /* the main loop: ingest, the store writes */
    struct event_base *dbase;      /* the sending side (== base unthreaded) */
    bool               threaded;
    pthread_t          thread;
    bool               running;    /* thread started */
    struct event      *stop_ev;    /* on dbase: leave the delivery loop */
    pthread_mutex_t    lock;
    bool               lock_ok;
    struct wout       *wr;         /* write_outcomes' copy (main side only) */
    size_t             cap_wr;
    struct store      *store;
    struct ingest     *ingest;     /* whose commits the outcomes join, or NULL */
    struct dest       *dests;
    size_t             n;
    size_t             n_pend;     /* outcomes waiting, all destinations */
    struct event      *write_ev;   /* lowest priority: commit the outcomes now */
    struct event      *flush_ev;   /* FLUSH_MS after the first outcome waits */
    struct event      *kick_ev;
    struct event      *retry_ev;   /* the store failed: write again later */
    uint64_t           rng;
    bool               closing;
    struct delivery_engine_stats stats;
};

const char *delivery_strerror(int code)
{
    switch (code) {
    case 0:                     return "success";
    case DELIVERY_E_NOMEM:      return "out of memory";
    case DELIVERY_E_NOT_FOUND:  return "no such destination";
    case DELIVERY_E_ADAPTER:    return "a destination adapter failed to start";
    case DELIVERY_E_STORE:      return "the store failed";
    }
    return "unknown delivery error";
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void lock(const struct delivery_engine *e)
{
    pthread_mutex_lock((pthread_mutex_t *)&e->lock);
}

static void unlock(const struct delivery_engine *e)
{
    pthread_mutex_unlock((pthread_mutex_t *)&e->lock);
}

/* splitmix64: jitter needs spread, not secrecy. */
static uint64_t rng_next(struct delivery_engine *e)
{
    uint64_t z = (e->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t retry_initial(const struct config_destination *c)
{
    return c->retry.initial_ms > 0 ? (uint64_t)c->retry.initial_ms : 1;
}

static uint64_t retry_max(const struct config_destination *c)
{
    uint64_t init = retry_initial(c);
    return c->retry.max_ms > 0 && (uint64_t)c->retry.max_ms > init ? (uint64_t)c->retry.max_ms
                                                                     : init;
}

/* Full jitter after the attempts-th failure: uniform in [initial, cap],
 * cap = min(max, initial * 2^(attempts-1)). */
static uint64_t backoff_ms(struct delivery_engine *e, const struct config_destination *c,
                           uint32_t attempts)
{
    uint64_t init = retry_initial(c), max = retry_max(c), cap = init;
    for (uint32_t i = 1; i < attempts && cap < max; i++)
        cap = cap > max / 2 ? max : cap * 2;
    if (cap > max)
        cap = max;
    return init + rng_next(e) % (cap - init + 1);
}

/* MSH-10 of an ER7 payload ("" for anything else). */
static void payload_control_id(const char *p, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    if (len < 4 || memcmp(p, "MSH", 3) != 0)
        return;
    char sep = p[3];
    size_t i = 3;
    for (int field = 1; field < 10; field++) {   /* p[3] opens MSH-2 */
        while (i < len && p[i] != sep && p[i] != '\r' && p[i] != '\n')
            i++;
        if (i >= len || p[i] != sep)
            return;
        i++;
    }
    size_t n = 0;
    while (i + n < len && p[i + n] != sep && p[i + n] != '\r' && p[i + n] != '\n'
           && n + 1 < outlen)
        n++;
    memcpy(out, p + i, n);
    out[n] = '\0';
}

static void fetch(struct dest *d);
static void schedule_write(struct delivery_engine *e);

static void drop_current(struct dest *d)
{
    free(d->cur_owner);
    d->cur_owner = NULL;
    memset(&d->cur, 0, sizeof d->cur);
}

static void arm_timer(struct dest *d, uint64_t delay_ms)
{
    struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
    evtimer_add(d->timer, &tv);
}

/* The sending side: timer_cb, go_cb, kick_cb, fetch and on_report run on
 * dbase. */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct dest *d = arg;
    lock(d->eng);
    bool due = d->state == D_WAITING;
    if (due)
        d->state = D_IDLE;
    unlock(d->eng);
    if (due)
        fetch(d);
}

/* Send the next one; or (threaded) a pause or resume, or a retry written. */
static void go_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct dest *d = arg;
    lock(d->eng);
    bool idle = d->paused && d->state == D_WAITING;
    if (idle)
        d->state = D_IDLE;
    unlock(d->eng);
    if (idle)
        evtimer_del(d->timer);
    fetch(d);
}

/* Send the next entry of d's outbox (the first at or after next_seq), or
 * wait for its time, or go idle. */
static void fetch(struct dest *d)
{
    struct delivery_engine *e = d->eng;
    lock(e);
    bool go = !d->paused && d->state == D_IDLE && !e->closing;
    uint64_t min_seq = d->next_seq;
    if (go)
        d->next_attempt_ms = 0;
    unlock(e);
    if (!go)
        return;
    /* Entries before min_seq have an outcome; should the writer reset
       next_seq meanwhile (they are written), the first at or after the
       old value is still the head. */
    drop_current(d);
    int rc = store_outbox_first(e->store, d->id, min_seq, &d->cur, &d->cur_owner);
    if (rc == STORE_E_NOT_FOUND)
        return;
    if (rc) {
        /* A corrupt head blocks its destination (FIFO) until an operator
           acts; look again later in case it was the store, not the entry. */
        log_error("delivery", "cannot read the outbox", "destination=%s error=%s detail=%s",
                  d->cfg->name, store_strerror(rc), store_last_error(e->store));
        lock(e);
        d->state = D_WAITING;
        unlock(e);
        arm_timer(d, retry_max(d->cfg));
        return;
    }
    uint64_t now = now_ms();
    if (d->cur.next_attempt_ms > now) {
        uint64_t wait = d->cur.next_attempt_ms - now;
        if (wait > retry_max(d->cfg))   /* the clock went back */
            wait = retry_max(d->cfg);
        lock(e);
        d->next_attempt_ms = d->cur.next_attempt_ms;
        d->state = D_WAITING;
        unlock(e);
        arm_timer(d, wait);
        return;
    }
    payload_control_id(d->cur.payload, d->cur.len, d->payload_ctrl, sizeof d->payload_ctrl);
    d->d = (struct delivery){
        .dest_id = d->id, .seq = d->cur.seq, .msg_id = d->cur.msg_id,
        .payload = d->cur.payload, .len = d->cur.len, .control_id = d->cur.control_id,
        .payload_control_id = d->payload_ctrl, .code = d->cur.code,
        .trigger = d->cur.trigger, .attempt = d->cur.attempts + 1,
    };
    lock(e);
    d->state = D_SENDING;
    unlock(e);
    if (d->a->type->send(d->a, &d->d) != 0) {
        lock(e);
        bool still = d->state == D_SENDING;
        unlock(e);
        if (still)
            delivery_report(d->a, &d->d, DELIVERY_RETRY, "the adapter could not start sending");
    }
}

/* Keep an outcome until it is written (with e->lock held). -1 when out of
 * memory. */
static int add_outcome(struct dest *d, enum pending kind, uint32_t attempts, uint64_t next_ms,
                       const char *err)
{
    if (d->n_pend == d->cap_pend) {
        size_t cap = d->cap_pend ? d->cap_pend * 2 : 64;
        struct outcome *p = realloc(d->pend, cap * sizeof *p);
        if (!p)
            return -1;
        d->pend = p;
        d->cap_pend = cap;
    }
    char *copy = NULL;
    if (err && !(copy = strdup(err)))
        return -1;
    d->pend[d->n_pend++] = (struct outcome){
        .kind = kind, .seq = d->cur.seq, .attempts = attempts, .next_ms = next_ms, .err = copy,
    };
    d->eng->n_pend++;
    return 0;
}

/* The adapter's report (a->report). A delivered or dead-lettered entry is
 * done with: the next one is sent at once and the outcome written with
 * the next batch (a crash before that sends it again: at least once). A
 * retry waits for its write, since its attempts and time decide the next
 * try. */
static void on_report(void *ctx, const struct delivery *del, int outcome, const char *detail)
{
    struct dest *d = ctx;
    struct delivery_engine *e = d->eng;
    lock(e);
    bool sending = d->state == D_SENDING;
    unlock(e);
    if (!sending || !del || del->seq != d->cur.seq) {
        log_warn("delivery", "an outcome for no delivery in flight was ignored",
                 "destination=%s seq=%llu", d->cfg->name,
                 del ? (unsigned long long)del->seq : 0ull);
        return;
    }
    const char *why = detail && detail[0] ? detail : "no detail given";
    uint32_t attempts = d->cur.attempts + 1;
    int64_t max_attempts = d->cfg->retry.max_attempts;
    char err[ERR_MAX];
    enum pending kind;
    uint64_t next_ms = 0;
    if (outcome == DELIVERY_OK) {
        kind = P_DELIVERED;
        err[0] = '\0';
    } else if (outcome == DELIVERY_RETRY
               && !(max_attempts > 0 && attempts >= (uint64_t)max_attempts)) {
        kind = P_RETRY;
        next_ms = now_ms() + backoff_ms(e, d->cfg, attempts);
        snprintf(err, sizeof err, "%s", why);
    } else {
        kind = P_DEAD;
        if (outcome == DELIVERY_RETRY)
            snprintf(err, sizeof err, "gave up after %u attempts: %s", attempts, why);
        else
            snprintf(err, sizeof err, "permanent failure: %s", why);
    }
    uint64_t now = now_ms();
    lock(e);
    if (add_outcome(d, kind, attempts, next_ms, kind == P_DELIVERED ? NULL : err)) {
        d->state = D_WAITING;
        unlock(e);
        /* Unrecorded, the entry is simply sent again after a pause. */
        log_error("delivery", "out of memory recording an outcome; the message will be sent "
                  "again", "destination=%s seq=%llu", d->cfg->name,
                  (unsigned long long)d->cur.seq);
        arm_timer(d, retry_max(d->cfg));
        return;
    }
    if (kind == P_RETRY) {
        d->retried++;
        d->state = D_WRITING;
        unlock(e);
        schedule_write(e);
        return;
    }
    if (kind == P_DELIVERED) {
        d->delivered++;
        if (d->cur.received_ms && now >= d->cur.received_ms)
            metrics_hist_observe(&d->latency, (double)(now - d->cur.received_ms) / 1000.0);
    } else {
        d->dead++;
    }
    d->next_seq = d->cur.seq + 1;
    d->state = D_IDLE;
    bool write_now = e->n_pend >= FLUSH_MAX;
    /* flush_ev is on the main base; the writer deletes it under the lock
       when nothing waits, so check and arm under the lock too. */
    if (!write_now && !evtimer_pending(e->flush_ev, NULL)) {
        struct timeval tv = { 0, FLUSH_MS * 1000 };
        evtimer_add(e->flush_ev, &tv);
    }
    unlock(e);
    if (kind == P_DEAD)
        log_warn("delivery", "message dead-lettered", "destination=%s seq=%llu msg=%llu "
                 "error=%s", d->cfg->name, (unsigned long long)d->cur.seq,
                 (unsigned long long)d->cur.msg_id, err);
    drop_current(d);
    /* Not fetch() here: an adapter that reports from inside send() would
       recurse once per queued message. */
    event_active(d->go_ev, 0, 0);
    if (write_now)
        schedule_write(e);
}

static void schedule_write(struct delivery_engine *e)
{
    if (!e->closing)
        event_active(e->write_ev, 0, 0);
}

/* The writing side: write_outcomes, outcomes_done, the ingest hook,
 * delivery_flush and write_cb run on the main loop. */

static size_t n_waiting(const struct delivery_engine *e)
{
    lock(e);
    size_t n = e->n_pend;
    unlock(e);
    return n;
}

/* Write every waiting outcome into t (again, if t is a redo). They are
 * copied under the lock (a few words each; the error texts stay theirs,
 * freed only on this side), then written unlocked: the sending side keeps
 * reporting meanwhile, its new outcomes waiting for the next batch. */
static int write_outcomes(struct delivery_engine *e, struct store_txn *t)
{
    size_t n = 0;
    lock(e);
    if (e->n_pend > e->cap_wr) {
        size_t cap = e->n_pend < 64 ? 64 : e->n_pend * 2;
        struct wout *w = realloc(e->wr, cap * sizeof *w);
        if (!w) {
            for (size_t i = 0; i < e->n; i++)
                e->dests[i].n_written = 0;
            unlock(e);
            return STORE_E_NOMEM;
        }
        e->wr = w;
        e->cap_wr = cap;
    }
    for (size_t i = 0; i < e->n; i++) {
        struct dest *d = &e->dests[i];
        for (size_t j = 0; j < d->n_pend; j++)
            e->wr[n++] = (struct wout){ .dest_id = d->id, .o = d->pend[j] };
        d->n_written = d->n_pend;
    }
    unlock(e);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const struct outcome *o = &e->wr[i].o;
        uint32_t id = e->wr[i].dest_id;
        switch (o->kind) {
        case P_DELIVERED:
            rc = store_outbox_delivered(t, id, o->seq);
            break;
        case P_RETRY:
            rc = store_outbox_retry(t, id, o->seq, o->attempts, o->next_ms, o->err);
            break;
        case P_DEAD:
            rc = store_outbox_dead(t, id, o->seq, o->err);
            break;
        }
        /* the entry went (an operator purged it): nothing to record */
        if (rc == STORE_E_NOT_FOUND)
            rc = 0;
    }
    return rc;
}

/* The outcomes written are durable (written) or not: drop them, and let
 * a destination whose retry was recorded look at its head again. Returns
 * how many were dropped. */
static size_t outcomes_done(struct delivery_engine *e, bool written)
{
    size_t done = 0;
    bool wake = false;
    lock(e);
    for (size_t i = 0; i < e->n; i++) {
        struct dest *d = &e->dests[i];
        size_t w = d->n_written;
        d->n_written = 0;
        if (!w || !written)
            continue;
        for (size_t j = 0; j < w; j++)
            free(d->pend[j].err);
        memmove(d->pend, d->pend + w, (d->n_pend - w) * sizeof *d->pend);
        d->n_pend -= w;
        e->n_pend -= w;
        done += w;
        if (d->n_pend)
            continue;
        /* Every entry before next_seq is gone from the store now, so the
           head is the next one; and next_seq must go, because the outbox
           may empty and seqs then start again lower down. */
        d->next_seq = 0;
        if (d->state == D_WRITING) {
            /* the retry is recorded: the head waits for its next attempt */
            d->state = D_IDLE;
            d->wake = wake = true;
        }
    }
    if (written && !e->n_pend)
        evtimer_del(e->flush_ev);
    unlock(e);
    for (size_t i = 0; wake && i < e->n; i++) {
        struct dest *d = &e->dests[i];
        if (!d->wake)
            continue;
        d->wake = false;
        if (e->threaded) {
            event_active(d->go_ev, 0, 0);
        } else {
            drop_current(d);
            fetch(d);
        }
    }
    return done;
}

/* ingest's hook: the outcomes join its group commit. */
static int hook_write(void *ctx, struct store_txn *t)
{
    struct delivery_engine *e = ctx;
    return n_waiting(e) ? write_outcomes(e, t) : 0;
}

static void hook_done(void *ctx, bool written)
{
    struct delivery_engine *e = ctx;
    size_t done = outcomes_done(e, written);
    if (done) {
        e->stats.joined_commits++;
        e->stats.outcomes_written += done;
    }
}

void delivery_get_engine_stats(const struct delivery_engine *e,
                               struct delivery_engine_stats *st)
{
    *st = e->stats;
}

int delivery_flush(struct delivery_engine *e)
{
    if (!n_waiting(e))
        return 0;
    int rc;
    for (;;) {
        struct store_txn *t;
        if ((rc = store_begin(e->store, &t)))
            break;
        if ((rc = write_outcomes(e, t)))
            store_abort(t);
        else
            rc = store_commit(t);
        if (rc != STORE_E_MAP_FULL || (rc = store_grow(e->store)))
            break;
    }
    size_t done = outcomes_done(e, rc == 0);
    if (!rc) {
        e->stats.own_commits++;
        e->stats.outcomes_written += done;
    }
    if (rc) {
        log_error("delivery", "cannot record delivery outcomes; trying again",
                  "error=%s detail=%s", store_strerror(rc), store_last_error(e->store));
        if (!e->closing) {
            struct timeval tv = { STORE_RETRY_MS / 1000, (STORE_RETRY_MS % 1000) * 1000 };
            evtimer_add(e->retry_ev, &tv);
        }
        return DELIVERY_E_STORE;
    }
    return 0;
}

/* The engine's own commit, when no ingest commit is coming to join. */
static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct delivery_engine *e = arg;
    if (e->ingest && ingest_pending(e->ingest) > 0) {
        /* ingest commits later in this loop iteration; join it */
        return;
    }
    delivery_flush(e);
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct delivery_engine *e = arg;
    for (size_t i = 0; i < e->n; i++)
        fetch(&e->dests[i]);
}

void delivery_kick(struct delivery_engine *e)
{
    if (e && !e->closing)
        event_active(e->kick_ev, 0, 0);
}

/* The delivery thread: dbase's loop, until stop_cb. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

static void *thread_main(void *arg)
{
    struct delivery_engine *e = arg;
    event_base_loop(e->dbase, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void on_ingest_commit(void *ctx)
{
    delivery_kick(ctx);
}

void delivery_attach_ingest(struct delivery_engine *e, struct ingest *in)
{
    e->ingest = in;
    ingest_set_on_commit(in, on_ingest_commit, e);
    ingest_set_txn_hook(in, hook_write, hook_done, e);
}

static struct dest *find(const struct delivery_engine *e, const char *name)
{
    for (size_t i = 0; name && i < e->n; i++)
        if (strcmp(e->dests[i].cfg->name, name) == 0)
            return &e->dests[i];
    return NULL;
}

/* Threaded, the sending side acts on a pause or resume in go_cb (a timer
 * of dbase is not deleted from here: event_del would wait for its
 * callback, which may wait for the lock). */
int delivery_pause(struct delivery_engine *e, const char *name)
{
    struct dest *d = find(e, name);
    if (!d)
        return DELIVERY_E_NOT_FOUND;
    lock(e);
    d->paused = true;
    bool waiting = d->state == D_WAITING;
    if (waiting && !e->threaded)
        d->state = D_IDLE;
    unlock(e);
    if (e->threaded)
        event_active(d->go_ev, 0, 0);
    else if (waiting)
        evtimer_del(d->timer);
    return 0;
}

int delivery_resume(struct delivery_engine *e, const char *name)
{
    struct dest *d = find(e, name);
    if (!d)
        return DELIVERY_E_NOT_FOUND;
    lock(e);
    d->paused = false;
    unlock(e);
    if (e->threaded)
        event_active(d->go_ev, 0, 0);
    else
        fetch(d);
    return 0;
}

int delivery_get_stats(const struct delivery_engine *e, const char *name,
                       struct delivery_dest_stats *st)
{
    const struct dest *d = find(e, name);
    if (!d)
        return DELIVERY_E_NOT_FOUND;
    lock(e);
    *st = (struct delivery_dest_stats){
        .dest_id = d->id, .paused = d->paused,
        .in_flight = d->state == D_SENDING,
        .next_attempt_ms = d->state == D_WAITING && !d->paused ? d->next_attempt_ms : 0,
        .delivered = d->delivered, .retried = d->retried, .dead_lettered = d->dead,
        .latency = d->latency,
    };
    unlock(e);
    return 0;
}

/* Store ids for every destination, assigned now for new ones. */
static int assign_ids(struct delivery_engine *e, char *err, size_t errlen)
{
    struct store_txn *t;
    int rc = store_begin(e->store, &t);
    for (size_t i = 0; !rc && i < e->n; i++)
        rc = store_dest_id(t, e->dests[i].cfg->name, &e->dests[i].id);
    if (rc)
        store_abort(t);
    else
        rc = store_commit(t);
    if (rc) {
        snprintf(err, errlen, "delivery: cannot assign destination ids: %s",
                 store_last_error(e->store));
        return DELIVERY_E_STORE;
    }
    return 0;
}

/* An instance of an injected type (tests), as adapter_new_destination
 * makes one of the configured type. */
static struct adapter *new_injected(const struct adapter_type *t, struct dest *d,
                                    char *err, size_t errlen)
{
    struct adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->state = calloc(1, t->state_size ? t->state_size : 1))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->type = t;
    a->name = d->cfg->name;
    a->role = ADAPTER_DESTINATION;
    a->dst = d->cfg;
    a->base = d->eng->dbase;
    a->report = on_report;
    a->report_ctx = d;
    if (t->configure && t->configure(a, err, errlen) != 0) {
        adapter_free(a);
        return NULL;
    }
    return a;
}

int delivery_new(const struct delivery_opts *o, struct delivery_engine **out,
                 char *err, size_t errlen)
{
    struct delivery_engine *e = calloc(1, sizeof *e);
    int rc = DELIVERY_E_NOMEM;
    char aerr[512];
    *out = NULL;
    if (!e || (o->n_dests && !(e->dests = calloc(o->n_dests, sizeof *e->dests)))) {
        snprintf(err, errlen, "delivery: out of memory");
        goto out;
    }
    e->base = o->base;
    e->store = o->store;
    e->n = o->n_dests;
    e->threaded = o->threaded;
    e->rng = o->seed ? o->seed : now_ms() ^ ((uint64_t)getpid() << 32);
    if (pthread_mutex_init(&e->lock, NULL)) {
        snprintf(err, errlen, "delivery: cannot create a lock");
        goto out;
    }
    e->lock_ok = true;
    /* The outcome batch runs at the lowest priority, like ingest's commit. */
    if (event_base_get_npriorities(e->base) < 3)
        event_base_priority_init(e->base, 3);
    int low = event_base_get_npriorities(e->base) - 1;
    e->dbase = e->base;
    if (e->threaded) {
        if (!(e->dbase = event_base_new()) || event_base_priority_init(e->dbase, 3)
            || !(e->stop_ev = event_new(e->dbase, -1, 0, stop_cb, e->dbase))) {
            snprintf(err, errlen, "delivery: cannot create the delivery thread's event loop");
            goto out;
        }
    }
    e->write_ev = event_new(e->base, -1, 0, write_cb, e);
    e->flush_ev = evtimer_new(e->base, write_cb, e);
    e->kick_ev = event_new(e->dbase, -1, 0, kick_cb, e);
    e->retry_ev = evtimer_new(e->base, write_cb, e);
    if (!e->write_ev || !e->flush_ev || !e->kick_ev || !e->retry_ev
        || event_priority_set(e->write_ev, low)) {
        snprintf(err, errlen, "delivery: out of memory");
        goto out;
    }
    for (size_t i = 0; i < e->n; i++) {
        struct dest *d = &e->dests[i];
        d->eng = e;
        metrics_hist_init_latency(&d->latency);
        d->cfg = &o->dests[i];
        d->paused = d->cfg->paused;
        if (!(d->timer = evtimer_new(e->dbase, timer_cb, d))
            || !(d->go_ev = event_new(e->dbase, -1, 0, go_cb, d))) {
            snprintf(err, errlen, "delivery: out of memory");
            goto out;
        }
    }
    if ((rc = assign_ids(e, err, errlen)))
        goto out;
    rc = DELIVERY_E_ADAPTER;
    for (size_t i = 0; i < e->n; i++) {
        struct dest *d = &e->dests[i];
        aerr[0] = '\0';
        d->a = o->type ? new_injected(o->type, d, aerr, sizeof aerr)
                       : adapter_new_destination(d->cfg, e->dbase, on_report, d, aerr,
                                                 sizeof aerr);
        if (!d->a || (d->a->type->start && d->a->type->start(d->a, aerr, sizeof aerr))) {
            snprintf(err, errlen, "destination %s: %s", d->cfg->name, aerr);
            goto out;
        }
    }
    if (e->threaded) {
        /* the first look at every outbox happens on the thread */
        event_active(e->kick_ev, 0, 0);
        /* Signals go to the main thread (the thread inherits this mask);
           a fault's own signal stays deliverable (sanitizers, core dumps). */
        sigset_t all, old;
        sigfillset(&all);
        static const int faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP };
        for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
            sigdelset(&all, faults[i]);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int trc = pthread_create(&e->thread, NULL, thread_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (trc) {
            snprintf(err, errlen, "delivery: cannot start the delivery thread: %s",
                     strerror(trc));
            rc = DELIVERY_E_NOMEM;
            goto out;
        }
        e->running = true;
    } else {
        for (size_t i = 0; i < e->n; i++)
            fetch(&e->dests[i]);
    }
    rc = 0;
out:
    if (rc) {
        delivery_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void delivery_free(struct delivery_engine *e)
{
    if (!e)
        return;
    if (e->running) {
        /* stop_ev, not event_base_loopbreak from here: a break before the
           loop has started would be forgotten when it starts */
        event_active(e->stop_ev, 0, 0);
        pthread_join(e->thread, NULL);
        e->running = false;
    }
    /* No new sends from here on; outcomes already reported are kept. */
    e->closing = true;
    if (e->ingest) {
        ingest_set_on_commit(e->ingest, NULL, NULL);
        ingest_set_txn_hook(e->ingest, NULL, NULL, NULL);
    }
    if (e->write_ev)
        delivery_flush(e);
    for (size_t i = 0; i < e->n; i++) {
        struct dest *d = &e->dests[i];
        adapter_free(d->a);
        if (d->timer)
            event_free(d->timer);
        if (d->go_ev)
            event_free(d->go_ev);
        drop_current(d);
        for (size_t j = 0; j < d->n_pend; j++)
            free(d->pend[j].err);
        free(d->pend);
    }
    if (e->write_ev)
        event_free(e->write_ev);
    if (e->flush_ev)
        event_free(e->flush_ev);
    if (e->kick_ev)
        event_free(e->kick_ev);
    if (e->retry_ev)
        event_free(e->retry_ev);
    if (e->stop_ev)
        event_free(e->stop_ev);
    if (e->dbase && e->dbase != e->base)
        event_base_free(e->dbase);
    if (e->lock_ok)
        pthread_mutex_destroy(&e->lock);
    free(e->wr);
    free(e->dests);
    free(e);
}
