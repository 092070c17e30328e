/*
 * delivery.h: from the outbox to the subscribers (DESIGN.md §1, §5). Each
 * destination is an adapter instance; the delivery engine feeds it the
 * head of its outbox, strictly in order, one message at a time, and the
 * adapter reports each outcome once. The engine retries with backoff,
 * dead-letters by policy, and records outcomes in the store.
 */
#ifndef HL7BROKER_DELIVERY_H
#define HL7BROKER_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

struct adapter;

/* One message for one destination, as handed to its adapter's send().
 * Every pointer stays valid until the adapter has reported the outcome. */
struct delivery {
    uint32_t    dest_id;
    uint64_t    seq;         /* the outbox position */
    uint64_t    msg_id;
    const char *payload;     /* the bytes to send, as routed (ER7 or JSON) */
    size_t      len;
    const char *control_id;  /* MSH-10 of the original message (for names
                                and MSA-2 checks: the payload keeps it unless
                                a transform changed it; see payload_control_id) */
    const char *payload_control_id; /* MSH-10 of the payload ("" for JSON) */
    const char *code, *trigger;     /* MSH-9.1 and MSH-9.2 ("ADT", "A01") */
    unsigned    attempt;     /* 1 on the first try */
};

enum delivery_outcome {
    DELIVERY_OK,         /* the subscriber has it (AA/CA, 2xx, file renamed...) */
    DELIVERY_RETRY,      /* try again later (connection failed, timeout, 5xx...) */
    DELIVERY_PERMANENT,  /* will never succeed as is: dead-letter it (policy permitting) */
};

/* A destination adapter reports the outcome of the delivery in flight,
 * exactly once, from the event loop; detail says what happened in a
 * sentence (what arrived, which error), kept as the last error. */
typedef void (*delivery_report_fn)(void *ctx, const struct delivery *d,
                                   enum delivery_outcome o, const char *detail);

/* The adapter instance gets its reporter when the engine creates it;
 * adapters call this. */
void delivery_report(struct adapter *a, const struct delivery *d,
                     enum delivery_outcome o, const char *detail);

/* ------------------------------------------------------------ the engine
 *
 * One engine per broker, on the event loop (its sending side on a thread
 * of its own when delivery_opts.threaded). Each configured destination
 * is an adapter instance fed strictly in outbox order, one delivery in
 * flight at a time:
 *   - the head entry is read from the store (attempts and next attempt
 *     time included, so a restart resumes exactly where the store says:
 *     at the first unconfirmed entry; at-least-once);
 *   - DELIVERY_OK: the entry is marked delivered (its payload is kept)
 *     and the next one is sent;
 *   - DELIVERY_RETRY: attempts + 1, the next attempt after a backoff of
 *     full jitter, uniform in [initial_ms, min(max_ms, initial_ms *
 *     2^(attempts-1))]; once attempts reaches retry.max_attempts (when not
 *     0) the entry is dead-lettered instead;
 *   - DELIVERY_PERMANENT: dead-lettered at once.
 * The detail of every failure is kept as the entry's last error. An entry
 * that keeps failing blocks its destination only.
 *
 * Outcomes are written in batches, never a commit each: they join the
 * next ingest group commit (delivery_attach_ingest), or, when no message
 * arrives within 20 ms (or 4096 outcomes wait), a short transaction of the
 * engine's own. A delivered or dead-lettered entry does not wait for its
 * write: the next entry is sent at once. A crash before the write sends
 * those entries again, in order (at least once). A retry does wait for its
 * write, as the attempts and the next attempt time it records decide when
 * the head is tried again.
 */

struct event_base;
struct store;
struct ingest;
struct config_destination;
struct adapter_type;
struct delivery_engine;

enum delivery_code {
    DELIVERY_E_NOMEM = -200,
    DELIVERY_E_NOT_FOUND = -201,   /* no destination of that name */
    DELIVERY_E_ADAPTER = -202,     /* a destination adapter would not configure or start */
    DELIVERY_E_STORE = -203,       /* the store failed (store_last_error says why) */
};

const char *delivery_strerror(int code);

struct delivery_opts {
    struct event_base               *base;
    struct store                    *store;
    const struct config_destination *dests;   /* must outlive the engine */
    size_t                           n_dests;
    /* Tests: make every destination an instance of this type instead of
       the type its config names (NULL: adapter_new_destination). */
    const struct adapter_type       *type;
    uint64_t                         seed;    /* backoff jitter; 0: from the clock */
    /* Run the sending side (the destination adapters, their timers, the
       reads of the outbox) on a thread of its own with its own event_base;
       the outcome writes stay on base's loop (inside ingest's commits or
       the engine's own), so a commit's fsync never holds up a subscriber's
       ACK. Needs evthread_use_pthreads() called before base was made. Every
       delivery_* call is still made from base's thread. false: everything
       on base. */
    bool                             threaded;
};

/* Create the engine: each destination's adapter (configured and
 * started), its store id (assigned now if new: one write transaction, so
 * call it with none open), and a first look at every outbox not paused
 * by its config. On failure returns a code with err filled. */
int  delivery_new(const struct delivery_opts *o, struct delivery_engine **out,
                  char *err, size_t errlen);
/* Write the outcomes not yet written, stop the adapters (a delivery in
 * flight is abandoned: the entry stays first in its outbox and is sent
 * again next time), free. NULL allowed. */
void delivery_free(struct delivery_engine *e);

/* Look again at every idle outbox (new entries were committed). Cheap: the
 * looking happens in an event, once, however often it is called. */
void delivery_kick(struct delivery_engine *e);

/* Have in call delivery_kick after each commit that stored something, and
 * let the outcomes join its commits. The engine detaches itself from in
 * when freed: free the engine before in. */
void delivery_attach_ingest(struct delivery_engine *e, struct ingest *in);

/* Write the outcomes reported so far now (they are otherwise written at
 * the end of the loop iteration). Returns 0 or DELIVERY_E_STORE. */
int  delivery_flush(struct delivery_engine *e);

/* Pause a destination: nothing more is sent to it (a delivery in flight
 * finishes and its outcome is recorded) until delivery_resume. Both
 * return 0 or DELIVERY_E_NOT_FOUND. */
int  delivery_pause(struct delivery_engine *e, const char *dest);
int  delivery_resume(struct delivery_engine *e, const char *dest);

/* A destination's state and counters since start. */
struct delivery_dest_stats {
    uint32_t dest_id;
    bool     paused;
    bool     in_flight;          /* a delivery awaits its outcome */
    uint64_t next_attempt_ms;    /* the head is waiting to be retried then (0: not) */
    uint64_t delivered, retried, dead_lettered;
    struct metrics_hist latency; /* seconds from the message's receipt to its
                                    confirmed delivery (DELIVERY_OK written) */
};
int  delivery_get_stats(const struct delivery_engine *e, const char *dest,
                        struct delivery_dest_stats *st);

/* How the outcomes reached the store since start: commits of the engine's
 * own, ingest commits they joined, and outcomes written. */
struct delivery_engine_stats {
    uint64_t own_commits, joined_commits, outcomes_written;
};
void delivery_get_engine_stats(const struct delivery_engine *e,
                               struct delivery_engine_stats *st);

#endif
