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

#endif
