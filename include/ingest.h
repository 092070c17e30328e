/*
 * ingest.h: the core's front door. A source adapter hands each message it
 * receives to ingest_submit() and, once the message (or the reason it was
 * refused) is durably committed, gets back the ACK bytes to write.
 *
 * Validation and ACK rules are DESIGN.md §2. Every message submitted in
 * one event-loop iteration joins one store transaction (group commit): a
 * lowest-priority libevent event fires once the ready input has been
 * read, commits, and only then calls the replies, in submission order.
 */
#ifndef HL7BROKER_INGEST_H
#define HL7BROKER_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

struct event_base;
struct store;

/* Who sent a message: kept in the store, the error store and the audit. */
struct ingest_origin {
    const char *source;         /* the source's configured name */
    const char *peer;           /* "ip:port" ("[v6]:port") */
    const char *tls_subject;    /* client certificate subject, or NULL */
};

/* What happened to a message. */
enum ingest_outcome {
    INGEST_ACCEPTED,    /* stored; AA/CA */
    INGEST_DUPLICATE,   /* already stored; the original ACK replayed */
    INGEST_REFUSED,     /* not acceptable; in the error store; AR/AE/CR/CE */
    INGEST_FAILED,      /* the store could not take it; AR/CR; the sender should retry */
};

struct ingest_reply {
    enum ingest_outcome outcome;
    const char         *ack;        /* HL7 ACK bytes (no framing); valid during the call */
    size_t              ack_len;
    bool                committed;  /* the message is durably stored (MLLP commit ACK) */
    bool                fault;      /* ITK: ack is a SOAP fault (HTTP 500), else a
                                       SimpleMessageResponse (HTTP 200) */
};

/* Called exactly once per submitted message, from the event loop, after
 * the commit. ctx is the submitter's. */
typedef void (*ingest_reply_fn)(void *ctx, const struct ingest_reply *r);

/* Per-source rules a submit is checked against. */
struct ingest_policy {
    size_t   max_message_bytes;
    bool     check_nhs_number;  /* refuse a failing NHS number check digit (AE, ERR at PID-3) */
    unsigned max_depth;         /* ITK: XML nesting limit (0: ITK_DEFAULT_MAX_DEPTH) */
};

struct ingest;

/* The core runs on base with the store open. It sets the base's event
 * priorities (3: 0 urgent, 1 normal I/O, 2 the group commit). */
int  ingest_new(struct event_base *base, struct store *store, struct ingest **out);
void ingest_free(struct ingest *in);

/* Route with r from now on (NULL: no routing; messages are stored as
 * unrouted). Messages already submitted keep the routing they had. r must
 * outlive its use: set another (or NULL) before freeing it. */
struct router;
void ingest_set_router(struct ingest *in, const struct router *r);

/* Submit one message (bytes are copied). Returns 0; the reply follows
 * after the next commit. Never refuses synchronously except for lack of
 * memory (-1), when the caller should close the connection. */
int ingest_submit(struct ingest *in, const struct ingest_origin *o,
                  const struct ingest_policy *p, const char *bytes, size_t len,
                  ingest_reply_fn fn, void *ctx);

/* Refuse a message the adapter could not take whole (over the size
 * limit): head/head_len is what was kept of it (for the error store and to
 * recover the MSH for the AR), total its full length. Reply as submit. */
int ingest_refuse_oversize(struct ingest *in, const struct ingest_origin *o,
                           const char *head, size_t head_len, size_t total,
                           size_t limit, ingest_reply_fn fn, void *ctx);

/* Refuse a message the transport could not take as it came (a ZeroMQ
 * request in several body frames, say): answered AR (CR in enhanced
 * mode) with ERR 207 carrying reason, and kept in the error store.
 * head/head_len is what was kept of it (the MSH is recovered from it for
 * the AR). Reply as submit. */
int ingest_refuse(struct ingest *in, const struct ingest_origin *o, const char *head,
                  size_t head_len, const char *reason, ingest_reply_fn fn, void *ctx);

/* ITK 2 (DESIGN.md §5, README "Discharge letters over ITK"). Submit one
 * SOAP request (bytes are copied). It is checked with itk_parse (limits
 * from p: max_message_bytes, max_depth); one that fails is kept in the
 * error store and answered with a SOAP fault carrying the ITK error code
 * and what is wrong (reply outcome REFUSED, fault true). A good one is
 * stored whole as a message of kind "itk" (control id = tracking id,
 * NHS number from a CDA payload), deduplicated on source + tracking id
 * (a duplicate gets the stored answer again), routed, and answered with a
 * SimpleMessageResponse after the commit. When it asks for an
 * infrastructure acknowledgement, one (result OK, or Failure when its
 * routing failed) is built with this broker's ODS code
 * (ingest_set_ods_code), stored as another itk message from the same
 * source and routed like any other, in the same transaction. A store
 * failure is answered with a SOAP fault (9999, the sender should retry).
 * Reply as submit; reply->ack is the SOAP response body. */
int ingest_submit_itk(struct ingest *in, const struct ingest_origin *o,
                      const struct ingest_policy *p, const char *bytes, size_t len,
                      ingest_reply_fn fn, void *ctx);

/* Refuse an ITK request the transport could not take whole (over
 * max_message_bytes: itk_code "1001"): kept in the error store (head is
 * what was kept of it) and answered with a SOAP fault. Reply as submit. */
int ingest_refuse_itk(struct ingest *in, const struct ingest_origin *o, const char *head,
                      size_t head_len, const char *itk_code, const char *reason,
                      ingest_reply_fn fn, void *ctx);

/* This broker's ODS code, for infrastructure acknowledgements (copied;
 * NULL: none, and a request asking for one is still accepted, the
 * acknowledgement is not made and the log says so). */
int ingest_set_ods_code(struct ingest *in, const char *ods_code);

/* Call fn(ctx) after each successful commit, once its replies are
 * called (the delivery engine looks at its outboxes again). NULL: none. */
void ingest_set_on_commit(struct ingest *in, void (*fn)(void *ctx), void *ctx);

/* Let another writer's changes join each group commit: write(ctx, t) is
 * called inside every batch's transaction, after the messages (again if
 * the transaction is redone); done(ctx, written) after the commit, written
 * saying whether those changes are now durable. A write that fails (non-
 * zero) is left out: the messages are committed without it. The delivery
 * engine records its outcomes so. NULLs: none. */
struct store_txn;
void ingest_set_txn_hook(struct ingest *in, int (*write)(void *ctx, struct store_txn *t),
                         void (*done)(void *ctx, bool written), void *ctx);

/* Commit whatever is pending now and call its replies (used at shutdown). */
void ingest_flush(struct ingest *in);

/* Messages waiting for the next commit. */
size_t ingest_pending(const struct ingest *in);

/* Counters since start (metrics come later). */
struct ingest_stats {
    uint64_t accepted, duplicates, refused, failed;
    uint64_t commits, committed_msgs, map_grows;
    struct metrics_hist batch_size;   /* messages per successful commit */
    bool     last_commit_failed;      /* the latest commit attempt failed */
};
void ingest_get_stats(const struct ingest *in, struct ingest_stats *s);

/* Why a message was refused (the metrics' reason label). */
enum ingest_refusal {
    INGEST_REFUSAL_NOT_HL7,         /* does not parse: no readable MSH */
    INGEST_REFUSAL_NO_CONTROL_ID,   /* MSH-10 empty */
    INGEST_REFUSAL_VERSION,         /* MSH-12 not supported */
    INGEST_REFUSAL_PROCESSING_ID,   /* MSH-11 not P, D or T */
    INGEST_REFUSAL_TOO_LARGE,       /* over max_message_bytes */
    INGEST_REFUSAL_NHS_NUMBER,      /* NHS number fails its check digit (check_nhs_number) */
    INGEST_REFUSAL_ITK,             /* an ITK request that is not a valid envelope */
    INGEST_REFUSAL_COUNT,
};
/* "not_hl7", "no_control_id", "version", "processing_id", "too_large",
 * "nhs_number", "itk_invalid". */
const char *ingest_refusal_name(enum ingest_refusal r);

/* One source's counters since start, counted when each message's reply
 * is made (after its commit). received = accepted + duplicates + failed +
 * the refused of every reason. */
struct ingest_source_stats {
    uint64_t received, accepted, duplicates, failed, bytes;
    uint64_t refused[INGEST_REFUSAL_COUNT];
    uint64_t transform_errors;         /* accepted, but a route's transform failed */
    struct metrics_hist latency;       /* seconds from receipt to the reply (ACK) */
};
/* The counters of the source named source. A source that has sent
 * nothing yet gets zeroes (and an empty latency histogram). */
void ingest_get_source_stats(const struct ingest *in, const char *source,
                             struct ingest_source_stats *s);

#endif
