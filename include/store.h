/*
 * store.h: the message store, one LMDB environment under data_dir with
 * the named databases of DESIGN.md §3. Ingest writes through it in group
 * commits: one write transaction for every message of a loop iteration,
 * committed (fsync) before any of their ACKs is sent.
 *
 * Single writer: all write calls come from the broker's one event loop.
 * Readers (hl7ctl, tests with mdb_dump) may open the environment at any
 * time; LMDB gives them a consistent snapshot.
 *
 * Layout (keys big-endian so cursor order is numeric order; every value
 * starts with a format byte, 1 today):
 *   messages    u64 msg id      -> struct store_msg, encoded
 *   dedup       source\0 MSH-3\0 MSH-4\0 MSH-10 -> u64 msg id + stored ACK bytes
 *               (a key over 480 bytes is kept as its first 448 bytes and
 *               the SHA-256 of the whole; LMDB keys stop at 511 bytes)
 *   errors      u64 error id    -> struct store_err, encoded
 *   by_patient  NHS number (10 bytes) + u64 msg id -> empty
 *   audit       u64 seq         -> struct store_audit, encoded, then the
 *                                  32-byte SHA-256 chain hash
 *   meta        name            -> value ("schema_version": u32;
 *                                  "audit_head": u64 last seq + its hash)
 *   outbox      u32 destination id + u64 seq -> see store_enqueue
 *   payloads    u32 destination id + u64 msg id -> the bytes to send
 *   dead        u32 destination id + u64 seq -> see store_outbox_dead
 * The encoding: after the format byte, fixed-width big-endian integers,
 * then each string as a u32 big-endian length and its bytes, in the order
 * of the struct's fields (a NULL string is stored as ""). Raw message
 * bytes come last, unchanged and without a length (they run to the end of
 * the value), so `mdb_dump -p` shows them readably:
 *   messages  01 | received_ms u64 | state u8 | 11 strings: source, peer,
 *             tls_subject, kind, code, trigger, structure, control_id,
 *             sending_app, sending_fac, nhs_number | raw
 *   errors    01 | received_ms u64 | 5 strings: source, peer, tls_subject,
 *             reason, ack_code | raw
 *   audit     01 | time_ms u64 | 5 strings: actor, action, subject,
 *             outcome, details | hash (32 bytes)
 * The audit hash of record n is SHA-256(hash of record n-1 || record n's
 * bytes before its hash); record 1 chains from 32 zero bytes. Sequence
 * numbers and ids start at 1.
 *
 * Errors: every function returns 0 or a STORE_E_* code; the underlying
 * LMDB or errno text, naming the directory, is in store_last_error().
 */
#ifndef HL7BROKER_STORE_H
#define HL7BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 1u

enum store_code {
    STORE_OK = 0,
    STORE_E_NOMEM = -100,
    STORE_E_IO = -101,          /* a write or fsync failed (errno: store_last_error) */
    STORE_E_MAP_FULL = -102,    /* the map is full: call store_grow() and redo the txn */
    STORE_E_FULL = -103,        /* the map is at map_max, or the disk is full */
    STORE_E_SCHEMA = -104,      /* the store was written by a newer hl7broker */
    STORE_E_CORRUPT = -105,     /* a record does not decode */
    STORE_E_NOT_FOUND = -106,
    STORE_E_LMDB = -107,        /* any other LMDB error (its text: store_last_error) */
    STORE_E_INVAL = -108,       /* a caller's mistake: NULL record, raw NULL with a
                                   length, a second store_begin, grow inside a txn */
};

/* Any store code, or an LMDB code, or an errno value, as text. */
const char *store_strerror(int code);

struct store;
struct store_txn;

/* The last failure on s as a sentence naming the directory and the cause
 * (LMDB's or the system's words), e.g. "store var/data: commit failed: No
 * space left on device". Kept per thread: the calling thread's last
 * failure, valid until its next store call; "" before any.
 *
 * Threads: one thread writes (store_begin ... commit, store_grow, the
 * pruner); the read calls (store_get_*, store_count, store_outbox_first,
 * store_outbox_depth, ...) may run on other threads at the same time. A
 * resize of the map or a reopen waits for every transaction to end. */
const char *store_last_error(const struct store *s);

struct store_opts {
    const char *dir;            /* created if missing (one level) */
    uint64_t    map_initial;    /* first map size; 0: 64 MiB. A store that already
                                   holds more, or last ran with a larger map,
                                   opens with that larger size */
    uint64_t    map_max;        /* ceiling for store_grow(); 0: no growth beyond initial */
    bool        read_only;      /* MDB_RDONLY: for hl7ctl beside a running broker;
                                   nothing is created, every write call fails */
};

/* Open (creating if needed) the environment and its databases, check or
 * write the schema version. On failure *detail (if given) receives a
 * sentence naming the directory and the cause. */
int  store_open(const struct store_opts *o, struct store **out, char *detail, size_t dlen);
void store_close(struct store *s);

/* Current map size and the ceiling (never below the current size). */
uint64_t store_map_size(const struct store *s);
uint64_t store_map_max(const struct store *s);

/* Double the map (up to map_max). Call with no write transaction open;
 * it waits for reads open on other threads to end (LMDB remaps). Returns
 * STORE_E_FULL when already at the ceiling. */
int store_grow(struct store *s);

/* A write transaction. Any call may return STORE_E_MAP_FULL: abort, grow,
 * and redo the whole batch. store_commit fsyncs (the environment is never
 * opened with MDB_NOSYNC or MDB_NOMETASYNC); after it returns 0 the batch
 * survives any crash. On failure the transaction is gone either way.
 *
 * One write transaction at a time (store_begin returns STORE_E_INVAL while
 * one is open). Once a call in it has failed after writing, store_commit
 * refuses it (returns that error and aborts). Abort, or a failed commit,
 * leaves no trace: the ids and audit sequence numbers it handed out are
 * handed out again. A commit that fails with ENOSPC returns STORE_E_FULL,
 * with EIO STORE_E_IO; the store stays usable and the next transaction may
 * succeed (after a failed meta page write LMDB refuses every transaction
 * until reopened: store_begin then reopens the environment itself). */
int  store_begin(struct store *s, struct store_txn **out);
int  store_commit(struct store_txn *t);
void store_abort(struct store_txn *t);

/* A message accepted at ingest. */
struct store_msg {
    uint64_t    received_ms;    /* Unix time in milliseconds */
    uint8_t     state;          /* enum store_msg_state */
    const char *source;         /* source name */
    const char *peer;           /* "ip:port" */
    const char *tls_subject;    /* "" when none */
    const char *kind;           /* "hl7v2" (later "itk") */
    const char *code, *trigger, *structure, *control_id;
    const char *sending_app, *sending_fac, *nhs_number;
    const char *note;           /* why the state is what it is (a transform error) */
    const char *raw;            /* the bytes as received */
    size_t      raw_len;
};

/* Queue payload for the destination named dest (its u32 id assigned on
 * first use and kept in meta "dest:NAME"; "dest_next" holds the next):
 * outbox[id + seq] = format, u64 msg id, u32 attempts (0), u64 next
 * attempt ms (0: now), u32-length last error (""); payloads[id + msg id]
 * = format, then the bytes; payload NULL: the message's own bytes, as
 * received (payloads then holds a one-byte marker and readers take the
 * bytes from the messages record: no second copy of an untransformed
 * message). seq is one past the highest in the outbox or the dead letters
 * for that destination: it only increases while the outbox holds entries. */
int store_dest_id(struct store_txn *t, const char *name, uint32_t *id);
int store_enqueue(struct store_txn *t, const char *dest, uint64_t msg_id,
                  const char *payload, size_t len, uint64_t *seq);

enum store_msg_state {
    STORE_MSG_ACCEPTED = 1,     /* stored, routing not yet done (no routes yet) */
    STORE_MSG_UNROUTED = 2,
    STORE_MSG_ROUTED = 3,
    STORE_MSG_ERROR = 4,        /* stored with a transform error */
};

/* Store a message, its by_patient entry (when nhs_number is exactly 10
 * ASCII digits) and its dedup entry with the ACK to replay (none when
 * dedup_len is 0; an existing entry for the key is replaced). *id (may be
 * NULL) receives the new id. */
int store_put_message(struct store_txn *t, const struct store_msg *m,
                      const char *dedup_key, size_t dedup_len,
                      const char *ack, size_t ack_len, uint64_t *id);

/* Look a dedup key up (this transaction's own writes included). On a hit
 * returns 0 with *id and the stored ACK copied into a malloc'd,
 * NUL-terminated *ack (caller frees); STORE_E_NOT_FOUND when new. id, ack
 * and ack_len may each be NULL. */
int store_dedup_get(struct store_txn *t, const char *key, size_t len,
                    uint64_t *id, char **ack, size_t *ack_len);

/* Build the dedup key source\0MSH-3\0MSH-4\0MSH-10 into a malloc'd buffer
 * (NUL-terminated beyond *len; NULL parts count as ""). NULL without memory. */
char *store_dedup_key(const char *source, const char *app, size_t app_len,
                      const char *fac, size_t fac_len, const char *ctrl,
                      size_t ctrl_len, size_t *len);

/* A message refused at ingest. */
struct store_err {
    uint64_t    received_ms;
    const char *source, *peer, *tls_subject;
    const char *reason;         /* the error a person reads */
    const char *ack_code;       /* "AR", "AE", "CR", "CE" or "" (nothing sent) */
    const char *raw;
    size_t      raw_len;
};
int store_put_error(struct store_txn *t, const struct store_err *e, uint64_t *id);

/* An audit record. The store adds the sequence number and the chain hash:
 * SHA-256 over the previous record's hash and this record's encoding. */
struct store_audit {
    uint64_t    time_ms;
    const char *actor;          /* "source=rlh-pas peer=10.1.2.3:5000 tls=CN=..." */
    const char *action;         /* "accept", "refuse", "duplicate", ... */
    const char *subject;        /* "msg=42", "error=7" */
    const char *outcome;        /* "ok", "AR", ... */
    const char *details;
};
int store_audit_append(struct store_txn *t, const struct store_audit *a, uint64_t *seq);

/* Reading back (for hl7ctl and tests; a read-only transaction of its own,
 * so committed data only). store_get_message and store_get_error fill the
 * record with pointers into *owner, a malloc'd block the caller frees:
 * every string NUL-terminated, raw too (raw_len its length, which may
 * include NULs). STORE_E_NOT_FOUND for no such id, STORE_E_CORRUPT for a
 * record that does not decode (*owner then NULL). */
int store_get_message(struct store *s, uint64_t id, struct store_msg *m, void **owner);
int store_get_error(struct store *s, uint64_t id, struct store_err *e, void **owner);

/* Entries in the named database ("messages", "dedup", "errors",
 * "by_patient", "audit", "meta", "outbox", "payloads", "dead");
 * STORE_E_NOT_FOUND for any other name. */
int store_count(struct store *s, const char *db, uint64_t *n);

/* Walk the audit chain; returns 0 when every hash holds, else
 * STORE_E_CORRUPT with *bad the first sequence number that does not: a
 * record whose hash or encoding is wrong, a gap in the sequence, or
 * records missing after (or added beyond) the head kept in meta.
 * *checked receives the number of records that held. Either may be NULL. */
int store_audit_verify(struct store *s, uint64_t *checked, uint64_t *bad);

/* What store_audit_check found wrong with the first record that breaks. */
enum store_audit_fault {
    STORE_AUDIT_INTACT = 0,
    STORE_AUDIT_GAP,        /* sequence number bad_seq is missing */
    STORE_AUDIT_BAD_RECORD, /* the record does not decode (key or value damaged) */
    STORE_AUDIT_HASH,       /* its stored hash is not SHA-256(hash of the record
                               before || its content): the record was changed, or
                               the one before it was rewritten with a fresh hash */
    STORE_AUDIT_HEAD,       /* the head in meta disagrees: records removed from the
                               end, added after it, or the last one rewritten */
};

struct store_audit_report {
    uint64_t checked;       /* records that held, from seq 1 */
    uint64_t head_seq;      /* the last sequence number meta names (0: none) */
    uint64_t bad_seq;       /* the first that breaks; 0 when intact */
    int      fault;         /* enum store_audit_fault */
    char     why[320];      /* a sentence about bad_seq; "" when intact */
};

/* store_audit_verify with the reason: 0 when intact, STORE_E_CORRUPT with
 * r filled when not, another code when the store cannot be read. */
int store_audit_check(struct store *s, struct store_audit_report *r);

/* Calls fn for each of the last n audit records (all when n is 0), oldest
 * first, in one read transaction. The record's strings and hash are valid
 * only during the call. A record that does not decode is passed with
 * every string "(undecodable)". fn returning non-zero stops the walk (that
 * value is returned). */
typedef int (*store_audit_fn)(void *ctx, uint64_t seq, const struct store_audit *a,
                              const uint8_t hash[32]);
int store_audit_tail(struct store *s, uint64_t n, store_audit_fn fn, void *ctx);

/* ------------------------------------------------------------ delivery
 * The delivery engine's view of the outbox (DESIGN.md §1: per-destination
 * FIFO). The write calls need the store's one write transaction; a call
 * that fails after writing leaves it to be aborted, as above. */

/* One outbox entry with what sending it needs. */
struct store_outbox_entry {
    uint32_t    dest_id;
    uint64_t    seq;
    uint64_t    msg_id;
    uint32_t    attempts;        /* attempts made so far (0: never tried) */
    uint64_t    next_attempt_ms; /* Unix ms; 0: now */
    uint64_t    received_ms;     /* the message's (0 when its record is gone) */
    const char *last_error;      /* "" when none */
    const char *payload;         /* the bytes to send (NUL-terminated beyond len) */
    size_t      len;
    const char *control_id, *code, *trigger;   /* from the message record ("" when gone) */
};

/* The first entry of dest_id's outbox with seq >= min_seq (0 or 1: the
 * head), committed data only (a read transaction of its own). Fills *e
 * with pointers into *owner, one malloc'd block the caller frees; every
 * string NUL-terminated. STORE_E_NOT_FOUND when there is none;
 * STORE_E_CORRUPT for an entry that does not decode or has no payload
 * (*owner then NULL). */
int store_outbox_first(struct store *s, uint32_t dest_id, uint64_t min_seq,
                       struct store_outbox_entry *e, void **owner);

/* Delivered: the outbox entry goes; its payload stays ("exactly what was
 * sent to whom" is kept for audit until retention prunes it).
 * STORE_E_NOT_FOUND when there is no such entry. */
int store_outbox_delivered(struct store_txn *t, uint32_t dest_id, uint64_t seq);

/* A failed attempt: rewrite the entry's attempts, next attempt time (Unix
 * ms) and last error (NULL: ""). STORE_E_NOT_FOUND when there is none. */
int store_outbox_retry(struct store_txn *t, uint32_t dest_id, uint64_t seq,
                       uint32_t attempts, uint64_t next_attempt_ms, const char *last_error);

/* Dead-letter: dead[dest_id + seq] = format, u64 msg id, u32-length final
 * error; the outbox entry goes, the payload stays. STORE_E_NOT_FOUND when
 * there is no such outbox entry. */
int store_outbox_dead(struct store_txn *t, uint32_t dest_id, uint64_t seq,
                      const char *final_error);

/* Entries queued for dest_id, and the received time of the oldest one's
 * message (0 when the queue is empty or its record is gone). Either
 * pointer may be NULL. Committed data only. */
int store_outbox_depth(struct store *s, uint32_t dest_id, uint64_t *n, uint64_t *oldest_ms);

/* ------------------------------------------------------------ metrics */

/* Entries in dest_id's dead letters (committed data only). */
int store_dead_count(struct store *s, uint32_t dest_id, uint64_t *n);

/* The environment's size: the map (bytes, and its growth ceiling), pages
 * of page_bytes in it, those written up to the highest one in use
 * (pages_used; LMDB's free list inside them is not counted apart) and
 * those never yet used (pages_free: room before the map must grow). */
struct store_env_stats {
    uint64_t map_bytes, map_max, page_bytes;
    uint64_t pages_total, pages_used, pages_free;
    unsigned readers, max_readers;
};
int store_env_stats(struct store *s, struct store_env_stats *st);
/* ------------------------------------------------------------ retention
 * The pruner (broker/retention.c) removes old records in small steps, each
 * its own short transaction, so that ingest is never held up for long.
 *
 * A run: store_prune_new; store_prune_scan until *done (collects, a chunk
 * per read transaction, the msg ids the outbox and the dead letters still
 * name); then store_prune_messages and store_prune_errors in write
 * transactions until each says *done; store_prune_free. Each write step
 * first picks up outbox entries added since the last step (in the same
 * transaction), so a message enqueued meanwhile is never pruned.
 *
 * A message is pruned when it was received before the cutoff and neither
 * the outbox nor the dead letters name it (delivered everywhere, or
 * routed nowhere); with it go its payloads, its by_patient entry and its
 * dedup entry (when that still names it: a later duplicate's stays).
 * Messages are taken in id order and a run stops at the first one received
 * at or after the cutoff. An error record goes when received before its
 * cutoff. Audit records are never pruned. */
struct store_prune;

struct store_prune_counts {
    uint64_t messages, payloads, errors;
    uint64_t kept;          /* old messages kept: still queued or dead-lettered */
};

int  store_prune_new(struct store *s, struct store_prune **out);
void store_prune_free(struct store_prune *p);

/* Reads up to max outbox and dead entries (0: all) in one read transaction. */
int store_prune_scan(struct store_prune *p, size_t max, bool *done);

/* Prunes up to max messages (examining at most 4 * max) received before
 * cutoff_ms, adding to *c. */
int store_prune_messages(struct store_txn *t, struct store_prune *p, uint64_t cutoff_ms,
                         size_t max, struct store_prune_counts *c, bool *done);

/* Prunes up to max error records received before cutoff_ms. */
int store_prune_errors(struct store_txn *t, struct store_prune *p, uint64_t cutoff_ms,
                       size_t max, struct store_prune_counts *c, bool *done);


/* ------------------------------------------------------------ the admin API
 * Reading the outbox, the dead letters, the messages and the audit log for
 * operators, and the changes they make (requeue, purge, replay). Readers
 * take a read transaction of their own (committed data only); callbacks
 * get pointers valid only during the call, and return nonzero to stop. */

/* The objections register's run-time changes (objections.h), in meta
 * under "objection:PURPOSE:NHS" -> one byte, 1 objected (added) or 0
 * withdrawn (removed, hiding the file's entry). nhs: 10 digits; purpose:
 * [a-z0-9_-], 1..64. */
int store_objection_put(struct store_txn *t, const char *nhs, const char *purpose,
                        bool objected);
typedef int (*store_objection_fn)(void *ctx, const char *nhs, const char *purpose,
                                  bool objected);
/* Every change kept, in key order; stops when fn returns non-zero. */
int store_objections_each(struct store *s, store_objection_fn fn, void *ctx);

/* The id of the destination named name, without assigning one:
 * STORE_E_NOT_FOUND when no message was ever queued for it. */
int store_dest_find(struct store *s, const char *name, uint32_t *id);

/* One entry of an outbox or of the dead letters. */
struct store_queue_item {
    uint64_t    seq, msg_id;
    uint32_t    attempts;          /* outbox only */
    uint64_t    next_attempt_ms;   /* outbox only */
    uint64_t    received_ms;       /* the message's (0 when its record is gone) */
    const char *error;             /* last error (outbox) or final error (dead) */
    const char *control_id, *code, *trigger;   /* "" when the message is gone */
};
typedef int (*store_queue_fn)(void *ctx, const struct store_queue_item *it);

/* dest_id's outbox (dead false) or dead letters (dead true) in seq order:
 * *total receives the number of entries; fn is called for entries
 * offset .. offset + limit - 1. STORE_E_CORRUPT for an entry that does
 * not decode. */
int store_queue_list(struct store *s, uint32_t dest_id, bool dead, uint64_t offset,
                     uint64_t limit, uint64_t *total, store_queue_fn fn, void *ctx);

/* Messages newest first. With nhs_number (10 digits) only the by_patient
 * index is walked; otherwise messages with ids below before_id (0: all),
 * at most max_scan of them (0: no limit). fn gets each decoded message;
 * *scanned receives how many were looked at and *more whether any were
 * left unlooked at because of max_scan (either may be NULL). */
typedef int (*store_msg_fn)(void *ctx, uint64_t id, const struct store_msg *m);
int store_msg_scan(struct store *s, const char *nhs_number, uint64_t max_scan,
                   store_msg_fn fn, void *ctx, uint64_t *scanned, bool *more);

/* Whether dest_id holds a payload for msg_id (the message was routed there). */
int store_has_payload(struct store *s, uint32_t dest_id, uint64_t msg_id, bool *yes);

/* What became of one message at each destination it was queued for. */
enum store_delivery_status {
    STORE_DELIVERY_QUEUED = 1,     /* in the outbox */
    STORE_DELIVERY_DEAD = 2,       /* in the dead letters */
    STORE_DELIVERY_DELIVERED = 3,  /* in neither: confirmed */
};
struct store_delivery {
    const char *dest;              /* the destination's name */
    uint32_t    dest_id;
    int         status;            /* enum store_delivery_status */
    uint64_t    seq;               /* queued or dead: its entry (0 when delivered) */
    uint32_t    attempts;          /* queued: attempts so far */
    const char *error;             /* queued: last error; dead: final error; else "" */
    const char *payload;           /* the bytes sent (or to be), the message's own
                                      when stored as the same-bytes marker */
    size_t      len;
};
typedef int (*store_delivery_fn)(void *ctx, const struct store_delivery *d);
/* Every destination holding a payload for msg_id, in destination id
 * order. Finding the status walks that destination's outbox and dead
 * letters. */
int store_msg_deliveries(struct store *s, uint64_t msg_id, store_delivery_fn fn, void *ctx);

/* Move dest_id's dead letters (all when seq is 0, else that one) back to
 * the end of its outbox, in their order, with attempts 0 and no error.
 * *n receives how many. STORE_E_NOT_FOUND when seq names no dead letter. */
int store_dead_requeue(struct store_txn *t, uint32_t dest_id, uint64_t seq, uint64_t *n);
/* Delete dest_id's dead letters (all, or the one seq); payloads stay.
 * STORE_E_NOT_FOUND when seq names no dead letter. */
int store_dead_purge(struct store_txn *t, uint32_t dest_id, uint64_t seq, uint64_t *n);

/* Queue message msg_id again for dest, with the payload stored for it
 * there (the message's own bytes when there is none). *seq (may be NULL)
 * receives the new outbox position. STORE_E_NOT_FOUND when there is no
 * such message. */
int store_replay(struct store_txn *t, const char *dest, uint64_t msg_id, uint64_t *seq);


#endif
