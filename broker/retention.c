/*
 * retention.c: the pruner (include/retention.h). A run walks the store in
 * small steps on the event loop: collect what the outbox and the dead
 * letters still name, then prune messages, then errors, then write the
 * audit record. Each step is one bounded transaction; between steps the
 * loop serves everything else first.
 */
#include "retention.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"

/* Per step: outbox and dead entries read, messages or errors removed. A
 * step of 256 messages takes well under a couple of milliseconds before
 * its commit's fsync. */
#define SCAN_STEP  8192
#define PRUNE_STEP 256

enum phase { PH_IDLE, PH_SCAN, PH_MESSAGES, PH_ERRORS, PH_AUDIT };

struct retention {
    struct event_base      *base;
    struct store           *store;
    struct config_retention cfg;
    struct event           *timer;
    struct event           *step_ev;    /* a timer at the lowest priority: the next step */
    enum phase              phase;
    struct store_prune     *prune;
    uint64_t                started_ms, msg_cutoff, err_cutoff;
    struct store_prune_counts counts;
    uint64_t                last_step_us;   /* 0 after a read-only step */
    struct retention_stats  stats;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void arm_timer(struct retention *r)
{
    struct timeval tv = { (time_t)r->cfg.interval_seconds, 0 };
    evtimer_add(r->timer, &tv);
}

static void end_run(struct retention *r)
{
    store_prune_free(r->prune);
    r->prune = NULL;
    r->phase = PH_IDLE;
    arm_timer(r);
}

/* The next step waits for the next loop iteration: a timer due now is
 * made active only after the loop has polled for input again (an
 * event_active here would run in this same pass of the active queue,
 * step after step, and starve reading and writing sockets). */
static void next_step(struct retention *r)
{
    /* A pause twice as long as the last write step: the pruner takes at
     * most a third of the loop's time, and a message arriving mid-step
     * waits for one step at most. */
    uint64_t us = 2 * r->last_step_us;
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    evtimer_add(r->step_ev, &tv);
}

/* One write transaction: a prune step, or the audit record. */
static int write_step(struct retention *r, bool *done)
{
    struct store_txn *t;
    uint64_t t0 = mono_us();
    int rc = store_begin(r->store, &t);
    if (rc)
        return rc;
    if (r->phase == PH_MESSAGES) {
        rc = store_prune_messages(t, r->prune, r->msg_cutoff, PRUNE_STEP, &r->counts, done);
    } else if (r->phase == PH_ERRORS) {
        rc = store_prune_errors(t, r->prune, r->err_cutoff, PRUNE_STEP, &r->counts, done);
    } else {
        char details[256];
        snprintf(details, sizeof details, "messages=%llu payloads=%llu errors=%llu kept=%llu "
                 "delivered_cutoff_ms=%llu errors_cutoff_ms=%llu",
                 (unsigned long long)r->counts.messages, (unsigned long long)r->counts.payloads,
                 (unsigned long long)r->counts.errors, (unsigned long long)r->counts.kept,
                 (unsigned long long)r->msg_cutoff, (unsigned long long)r->err_cutoff);
        struct store_audit a = { .time_ms = now_ms(), .actor = "retention", .action = "prune",
                                 .subject = "store", .outcome = "ok", .details = details };
        rc = store_audit_append(t, &a, NULL);
        *done = true;
    }
    if (rc) {
        store_abort(t);
        return rc;
    }
    /* (LMDB commits a step that changed nothing without an fsync.) */
    if ((rc = store_commit(t)))
        return rc;
    uint64_t us = mono_us() - t0;
    r->last_step_us = us;
    r->stats.steps++;
    if (us > r->stats.max_step_us)
        r->stats.max_step_us = us;
    return 0;
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    struct retention *r = arg;
    bool done = false;
    int rc = 0;
    (void)fd;
    (void)what;
    r->last_step_us = 0;
    if (r->phase == PH_SCAN) {
        rc = store_prune_scan(r->prune, SCAN_STEP, &done);
        if (!rc && done)
            r->phase = r->msg_cutoff ? PH_MESSAGES : PH_ERRORS;
        if (!rc && r->phase == PH_ERRORS && !r->err_cutoff)
            r->phase = PH_AUDIT;
    } else if (r->phase != PH_IDLE) {
        rc = write_step(r, &done);
        if (rc == STORE_E_MAP_FULL) {
            /* deletes need fresh pages too: grow and redo the step */
            rc = store_grow(r->store);
            done = false;
        }
        if (!rc && done) {
            if (r->phase == PH_MESSAGES)
                r->phase = r->err_cutoff ? PH_ERRORS : PH_AUDIT;
            else if (r->phase == PH_ERRORS)
                r->phase = PH_AUDIT;
            else
                r->phase = PH_IDLE;
            if (r->phase == PH_AUDIT && !r->counts.messages && !r->counts.errors)
                r->phase = PH_IDLE;     /* nothing removed: no record */
        }
    }
    if (rc) {
        log_error("retention", "pruning stopped; retried at the next interval",
                  "error=%s detail=%s", store_strerror(rc), store_last_error(r->store));
        end_run(r);
        return;
    }
    if (r->phase != PH_IDLE) {
        next_step(r);
        return;
    }
    r->stats.runs++;
    r->stats.last_run_ms = now_ms();
    r->stats.messages += r->counts.messages;
    r->stats.payloads += r->counts.payloads;
    r->stats.errors += r->counts.errors;
    log_info("retention", "pruning done",
             "messages=%llu payloads=%llu errors=%llu kept=%llu ms=%llu max_step_us=%llu",
             (unsigned long long)r->counts.messages, (unsigned long long)r->counts.payloads,
             (unsigned long long)r->counts.errors, (unsigned long long)r->counts.kept,
             (unsigned long long)(r->stats.last_run_ms - r->started_ms),
             (unsigned long long)r->stats.max_step_us);
    end_run(r);
}

void retention_run_now(struct retention *r)
{
    if (r->phase != PH_IDLE)
        return;
    uint64_t dms = config_retention_delivered_ms(&r->cfg),
             ems = config_retention_errors_ms(&r->cfg);
    if (!dms && !ems) {
        arm_timer(r);
        return;
    }
    evtimer_del(r->timer);
    r->started_ms = now_ms();
    /* 0: that kind is kept forever (a cutoff of 0 prunes nothing). */
    r->msg_cutoff = dms && dms < r->started_ms ? r->started_ms - dms : 0;
    r->err_cutoff = ems && ems < r->started_ms ? r->started_ms - ems : 0;
    memset(&r->counts, 0, sizeof r->counts);
    if (store_prune_new(r->store, &r->prune)) {
        log_error("retention", "out of memory", NULL);
        arm_timer(r);
        return;
    }
    r->phase = PH_SCAN;
    next_step(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    retention_run_now(arg);
}

int retention_new(struct event_base *base, struct store *s,
                  const struct config_retention *cfg, struct retention **out)
{
    struct retention *r = calloc(1, sizeof *r);
    *out = NULL;
    if (!r)
        return -1;
    r->base = base;
    r->store = s;
    r->cfg = *cfg;
    if (r->cfg.interval_seconds <= 0)
        r->cfg.interval_seconds = 600;
    if (event_base_get_npriorities(base) < 3)
        event_base_priority_init(base, 3);
    int low = event_base_get_npriorities(base) - 1;
    r->timer = evtimer_new(base, timer_cb, r);
    r->step_ev = evtimer_new(base, step_cb, r);
    if (!r->timer || !r->step_ev || event_priority_set(r->step_ev, low)) {
        retention_free(r);
        return -1;
    }
    arm_timer(r);
    *out = r;
    return 0;
}

void retention_set_config(struct retention *r, const struct config_retention *cfg)
{
    bool new_interval = cfg->interval_seconds != r->cfg.interval_seconds;
    r->cfg = *cfg;
    if (r->cfg.interval_seconds <= 0)
        r->cfg.interval_seconds = 600;
    if (new_interval && r->phase == PH_IDLE)
        arm_timer(r);
}

void retention_get_stats(const struct retention *r, struct retention_stats *st)
{
    *st = r->stats;
}

void retention_free(struct retention *r)
{
    if (!r)
        return;
    if (r->timer)
        event_free(r->timer);
    if (r->step_ev)
        event_free(r->step_ev);
    store_prune_free(r->prune);
    free(r);
}
