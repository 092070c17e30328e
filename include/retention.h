/*
 * retention.h: the pruner. On a timer it removes messages delivered to
 * every destination (or routed nowhere) older than retention.delivered_*,
 * and refused messages older than retention.errors_*, through the store's
 * store_prune_* steps: one short write transaction per step, each step an
 * event at the loop's lowest priority, so that reading input and ingest's
 * commits always go first. Queued and dead-lettered messages and audit
 * records are never pruned; each run that removed anything writes one
 * audit record with its counts.
 */
#ifndef HL7BROKER_RETENTION_H
#define HL7BROKER_RETENTION_H

#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "store.h"

struct retention;

struct retention_stats {
    uint64_t runs;              /* runs finished */
    uint64_t messages, payloads, errors;   /* removed, all runs */
    uint64_t last_run_ms;       /* Unix ms a run last finished; 0: none yet */
    uint64_t steps;             /* write transactions */
    uint64_t max_step_us;       /* the longest one, commit included */
};

/* Start the pruner on base (its timer fires every interval_seconds; with
 * both ages 0 it does nothing). The config's values are copied. Returns
 * 0, or -1 without memory. */
int  retention_new(struct event_base *base, struct store *s,
                   const struct config_retention *cfg, struct retention **out);
/* A reloaded config: new ages and interval, from the next run on. */
void retention_set_config(struct retention *r, const struct config_retention *cfg);
/* Start a run now unless one is under way. */
void retention_run_now(struct retention *r);
void retention_get_stats(const struct retention *r, struct retention_stats *st);
/* Stops a run under way (what it committed stays) and frees r. */
void retention_free(struct retention *r);

#endif
