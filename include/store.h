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
 *   errors      u64 error id    -> struct store_err, encoded
 *   by_patient  NHS number (10 bytes) + u64 msg id -> empty
 *   audit       u64 seq         -> struct store_audit, encoded, then the
 *                                  32-byte SHA-256 chain hash
 *   meta        name            -> value ("schema_version": u32;
 *                                  "audit_head": last seq + its hash)
 *   outbox, payloads, dead      created empty, for routing
 * The encoding: after the format byte, fixed-width big-endian integers,
 * then each string as a u32 big-endian length and its bytes, in the order
 * of the struct's fields. Raw message bytes come last, unchanged, so
 * `mdb_dump -p` shows them readably.
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
    STORE_E_IO = -101,          /* a write or fsync failed (errno in detail) */
    STORE_E_MAP_FULL = -102,    /* the map is full: call store_grow() and redo the txn */
    STORE_E_FULL = -103,        /* the map is at max_map_bytes, or the disk is full */
    STORE_E_SCHEMA = -104,      /* the store was written by a newer hl7broker */
    STORE_E_CORRUPT = -105,     /* a record does not decode */
    STORE_E_NOT_FOUND = -106,
    STORE_E_LMDB = -107,        /* any other LMDB error (its text in detail) */
};

/* Any store code, or an LMDB code, or an errno value, as text. */
const char *store_strerror(int code);

struct store;
struct store_txn;

struct store_opts {
    const char *dir;            /* created if missing (one level) */
    uint64_t    map_initial;    /* first map size; 0: 64 MiB (or the file's size if larger) */
    uint64_t    map_max;        /* ceiling for store_grow(); 0: no growth beyond initial */
};

/* Open (creating if needed) the environment and its databases, check or
 * write the schema version. On failure *detail (if given) receives a
 * sentence naming the directory and the cause. */
int  store_open(const struct store_opts *o, struct store **out, char *detail, size_t dlen);
void store_close(struct store *s);

/* Current map size and the ceiling. */
uint64_t store_map_size(const struct store *s);

/* Double the map (up to map_max). Call with no transaction open. Returns
 * STORE_E_FULL when already at the ceiling. */
int store_grow(struct store *s);

/* A write transaction. Any call may return STORE_E_MAP_FULL: abort, grow,
 * and redo the whole batch. store_commit fsyncs (the environment is never
 * opened with MDB_NOSYNC or MDB_NOMETASYNC); after it returns 0 the batch
 * survives any crash. On failure the transaction is gone either way. */
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
    const char *raw;            /* the bytes as received */
    size_t      raw_len;
};

enum store_msg_state {
    STORE_MSG_ACCEPTED = 1,     /* stored, routing not yet done (no routes yet) */
    STORE_MSG_UNROUTED = 2,
    STORE_MSG_ROUTED = 3,
    STORE_MSG_ERROR = 4,        /* stored with a transform error */
};

/* Store a message, its by_patient entry (when nhs_number is 10 digits)
 * and its dedup entry with the ACK to replay. *id receives the new id. */
int store_put_message(struct store_txn *t, const struct store_msg *m,
                      const char *dedup_key, size_t dedup_len,
                      const char *ack, size_t ack_len, uint64_t *id);

/* Look a dedup key up. On a hit returns 0 with *id and the stored ACK
 * copied into a malloc'd *ack (caller frees); STORE_E_NOT_FOUND when new. */
int store_dedup_get(struct store_txn *t, const char *key, size_t len,
                    uint64_t *id, char **ack, size_t *ack_len);

/* Build the dedup key source\0MSH-3\0MSH-4\0MSH-10 into a malloc'd buffer. */
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

/* Reading back (for hl7ctl and tests; a read-only transaction of its own).
 * store_get_message fills m with pointers into *owner, a malloc'd block
 * the caller frees. */
int store_get_message(struct store *s, uint64_t id, struct store_msg *m, void **owner);
int store_count(struct store *s, const char *db, uint64_t *n);

/* Walk the audit chain; returns 0 when every hash holds, else
 * STORE_E_CORRUPT with *bad the first sequence number that does not. */
int store_audit_verify(struct store *s, uint64_t *checked, uint64_t *bad);

#endif
