/*
 * store.c: the message store on LMDB (see include/store.h): one
 * environment, named databases with big-endian integer keys, versioned
 * record encodings, and the SHA-256 hash-chained audit log.
 */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    DB_MESSAGES, DB_DEDUP, DB_ERRORS, DB_BY_PATIENT, DB_AUDIT, DB_META,
    DB_OUTBOX, DB_PAYLOADS, DB_DEAD, DB_COUNT
};

static const char *const db_names[DB_COUNT] = {
    [DB_MESSAGES] = "messages", [DB_DEDUP] = "dedup", [DB_ERRORS] = "errors",
    [DB_BY_PATIENT] = "by_patient", [DB_AUDIT] = "audit", [DB_META] = "meta",
    [DB_OUTBOX] = "outbox", [DB_PAYLOADS] = "payloads", [DB_DEAD] = "dead",
};

#define FORMAT          1u
/* A payload value of this one byte: the destination receives the message
 * exactly as received (no transform changed it); the bytes are read from
 * its messages record, not stored again. */
#define FORMAT_SAME     2u
#define HASH_LEN        32u
#define NHS_LEN         10u
#define DEFAULT_MAP     (64ull << 20)
/* Room for the named databases and a few more later without a reopen. */
#define MAX_DBS         32
/* LMDB's default build refuses keys over 511 bytes. A dedup key longer
 * than this keeps its first DEDUP_KEEP bytes (still readable in
 * mdb_dump) followed by the SHA-256 of the whole key. */
#define DEDUP_KEY_MAX   480u
#define DEDUP_KEEP      (DEDUP_KEY_MAX - HASH_LEN)

static const char META_SCHEMA[] = "schema_version";
static const char META_AUDIT_HEAD[] = "audit_head";

struct store_txn {
    struct store *s;
    MDB_txn      *txn;          /* NULL when no write transaction is open */
    int           failed;       /* a call failed after writing: commit refuses */
    uint64_t      next_msg, next_err, next_audit;   /* as at store_begin */
    uint8_t       audit_hash[HASH_LEN];
};

struct store {
    MDB_env *env;
    MDB_dbi  dbi[DB_COUNT];
    char    *dir;
    uint64_t map_size, map_max;
    bool     read_only;
    /* Next ids, advanced as records are written; a failed or aborted
     * transaction puts them back. */
    uint64_t next_msg, next_err, next_audit;
    uint8_t  audit_hash[HASH_LEN];  /* hash of record next_audit - 1 */
    struct store_txn txn;           /* single writer: the one write txn */
    /* Held shared by every transaction, read or write, from its begin to
     * its end; exclusive while the map is resized or the environment
     * reopened (LMDB wants no transaction active in the process then).
     * Read transactions may run on other threads than the writer's. */
    pthread_rwlock_t lock;
    bool     lock_ok;
};

/* The last failure's text, per thread: a read failing on one thread never
 * garbles the text another thread is about to report. */
static _Thread_local char tl_err[512];
/* The store whose write transaction this thread has open (NULL: none). */
static _Thread_local const struct store *tl_writing;

/* ------------------------------------------------------------ errors */

const char *store_strerror(int code)
{
    switch (code) {
    case STORE_OK:          return "success";
    case STORE_E_NOMEM:     return "out of memory";
    case STORE_E_IO:        return "store write or sync failed";
    case STORE_E_MAP_FULL:  return "store map full (grow and retry)";
    case STORE_E_FULL:      return "store full (map at its ceiling, or disk full)";
    case STORE_E_SCHEMA:    return "store written by a newer hl7broker";
    case STORE_E_CORRUPT:   return "store record corrupt";
    case STORE_E_NOT_FOUND: return "not found";
    case STORE_E_LMDB:      return "LMDB error";
    case STORE_E_INVAL:     return "invalid use of the store API";
    }
    /* LMDB's own codes sit in [MDB_KEYEXIST, MDB_LAST_ERRCODE]; mdb_strerror
     * explains those and falls back to strerror for errno values. */
    if (code > 0 || (code >= MDB_KEYEXIST && code <= MDB_LAST_ERRCODE))
        return mdb_strerror(code);
    return "unknown store error";
}

const char *store_last_error(const struct store *s)
{
    return s ? tl_err : "no store";
}

/* Map an LMDB code or errno to a store code, remembering its text. */
static int fail(struct store *s, int rc, const char *what)
{
    if (rc == 0)
        return 0;
    snprintf(tl_err, sizeof tl_err, "store %s: %s: %s", s->dir, what, mdb_strerror(rc));
    switch (rc) {
    case MDB_MAP_FULL:      return STORE_E_MAP_FULL;
    case MDB_NOTFOUND:      return STORE_E_NOT_FOUND;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND: return STORE_E_CORRUPT;
    case ENOMEM:            return STORE_E_NOMEM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:             return STORE_E_FULL;
    }
    return rc > 0 ? STORE_E_IO : STORE_E_LMDB;
}

static int fail_code(struct store *s, int code, const char *what)
{
    snprintf(tl_err, sizeof tl_err, "store %s: %s", s->dir, what);
    return code;
}

/* ------------------------------------------------------------ encoding */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Writes into a buffer sized beforehand by enc_size(); p NULL measures. */
struct enc {
    uint8_t *p;
    size_t   n;
};

static void enc_u8(struct enc *e, uint8_t v)
{
    if (e->p)
        e->p[e->n] = v;
    e->n += 1;
}

static void enc_u64(struct enc *e, uint64_t v)
{
    if (e->p)
        put_be64(e->p + e->n, v);
    e->n += 8;
}

static void enc_bytes(struct enc *e, const void *v, size_t len)
{
    if (e->p && len)
        memcpy(e->p + e->n, v, len);
    e->n += len;
}

static void enc_str(struct enc *e, const char *v)
{
    size_t len = v ? strlen(v) : 0;
    if (e->p)
        put_be32(e->p + e->n, (uint32_t)len);
    e->n += 4;
    enc_bytes(e, v, len);
}

/* Reads with every length checked against what is left. */
struct dec {
    const uint8_t *p;
    size_t         left;
};

static int dec_u8(struct dec *d, uint8_t *v)
{
    if (d->left < 1)
        return STORE_E_CORRUPT;
    *v = d->p[0];
    d->p += 1;
    d->left -= 1;
    return 0;
}

static int dec_u64(struct dec *d, uint64_t *v)
{
    if (d->left < 8)
        return STORE_E_CORRUPT;
    *v = get_be64(d->p);
    d->p += 8;
    d->left -= 8;
    return 0;
}

static int dec_str(struct dec *d, const uint8_t **v, size_t *len)
{
    if (d->left < 4)
        return STORE_E_CORRUPT;
    uint32_t n = get_be32(d->p);
    if (n > d->left - 4)
        return STORE_E_CORRUPT;
    *v = d->p + 4;
    *len = n;
    d->p += 4 + (size_t)n;
    d->left -= 4 + (size_t)n;
    return 0;
}

static int dec_format(struct dec *d)
{
    uint8_t f;
    if (dec_u8(d, &f) || f != FORMAT)
        return STORE_E_CORRUPT;
    return 0;
}

/* A string field must fit the encoding's u32 length. */
static bool str_ok(const char *v)
{
    return !v || strlen(v) <= UINT32_MAX;
}

/* The string fields of each record, in encoding order. */
#define MSG_NSTR 12
#define ERR_NSTR 5
#define AUDIT_NSTR 5

static void msg_strs(const struct store_msg *m, const char *v[MSG_NSTR])
{
    const char *f[MSG_NSTR] = { m->source, m->peer, m->tls_subject, m->kind, m->code,
                                m->trigger, m->structure, m->control_id, m->sending_app,
                                m->sending_fac, m->nhs_number, m->note };
    memcpy(v, f, sizeof f);
}

static void msg_slots(struct store_msg *m, const char **v[MSG_NSTR])
{
    const char **f[MSG_NSTR] = { &m->source, &m->peer, &m->tls_subject, &m->kind, &m->code,
                                 &m->trigger, &m->structure, &m->control_id,
                                 &m->sending_app, &m->sending_fac, &m->nhs_number,
                                 &m->note };
    memcpy(v, f, sizeof f);
}

static void err_strs(const struct store_err *e, const char *v[ERR_NSTR])
{
    const char *f[ERR_NSTR] = { e->source, e->peer, e->tls_subject, e->reason, e->ack_code };
    memcpy(v, f, sizeof f);
}

static void err_slots(struct store_err *e, const char **v[ERR_NSTR])
{
    const char **f[ERR_NSTR] = { &e->source, &e->peer, &e->tls_subject, &e->reason,
                                 &e->ack_code };
    memcpy(v, f, sizeof f);
}

static void audit_strs(const struct store_audit *a, const char *v[AUDIT_NSTR])
{
    const char *f[AUDIT_NSTR] = { a->actor, a->action, a->subject, a->outcome, a->details };
    memcpy(v, f, sizeof f);
}

static void enc_msg(struct enc *e, const struct store_msg *m)
{
    const char *v[MSG_NSTR];
    msg_strs(m, v);
    enc_u8(e, FORMAT);
    enc_u64(e, m->received_ms);
    enc_u8(e, m->state);
    for (int i = 0; i < MSG_NSTR; i++)
        enc_str(e, v[i]);
    enc_bytes(e, m->raw, m->raw_len);
}

static void enc_err(struct enc *e, const struct store_err *r)
{
    const char *v[ERR_NSTR];
    err_strs(r, v);
    enc_u8(e, FORMAT);
    enc_u64(e, r->received_ms);
    for (int i = 0; i < ERR_NSTR; i++)
        enc_str(e, v[i]);
    enc_bytes(e, r->raw, r->raw_len);
}

/* The audit record without its trailing hash. */
static void enc_audit(struct enc *e, const struct store_audit *a)
{
    const char *v[AUDIT_NSTR];
    audit_strs(a, v);
    enc_u8(e, FORMAT);
    enc_u64(e, a->time_ms);
    for (int i = 0; i < AUDIT_NSTR; i++)
        enc_str(e, v[i]);
}

/*
 * Decode n strings then the raw remainder into one malloc'd block: each
 * string NUL-terminated, raw too (for convenience; raw_len is its length).
 */
static int dec_block(struct dec *d, int n, const char **slots[], const char **raw,
                     size_t *raw_len, void **owner)
{
    const uint8_t *sp[MSG_NSTR];
    size_t sl[MSG_NSTR], total = d->left + 1;
    for (int i = 0; i < n; i++) {
        if (dec_str(d, &sp[i], &sl[i]))
            return STORE_E_CORRUPT;
        total += sl[i] + 1;
    }
    char *block = malloc(total), *p = block;
    if (!block)
        return STORE_E_NOMEM;
    for (int i = 0; i < n; i++) {
        memcpy(p, sp[i], sl[i]);
        p[sl[i]] = '\0';
        *slots[i] = p;
        p += sl[i] + 1;
    }
    memcpy(p, d->p, d->left);
    p[d->left] = '\0';
    *raw = p;
    *raw_len = d->left;
    *owner = block;
    return 0;
}

static int dec_msg(const MDB_val *v, struct store_msg *m, void **owner)
{
    struct dec d = { v->mv_data, v->mv_size };
    const char **slots[MSG_NSTR];
    memset(m, 0, sizeof *m);
    if (dec_format(&d) || dec_u64(&d, &m->received_ms) || dec_u8(&d, &m->state))
        return STORE_E_CORRUPT;
    msg_slots(m, slots);
    return dec_block(&d, MSG_NSTR, slots, &m->raw, &m->raw_len, owner);
}

static int dec_err(const MDB_val *v, struct store_err *e, void **owner)
{
    struct dec d = { v->mv_data, v->mv_size };
    const char **slots[ERR_NSTR];
    memset(e, 0, sizeof *e);
    if (dec_format(&d) || dec_u64(&d, &e->received_ms))
        return STORE_E_CORRUPT;
    err_slots(e, slots);
    return dec_block(&d, ERR_NSTR, slots, &e->raw, &e->raw_len, owner);
}

/* An audit value is its encoding then the hash; check the encoding's
 * shape so that a damaged length is reported as such. */
static int dec_audit_shape(const MDB_val *v)
{
    if (v->mv_size < HASH_LEN)
        return STORE_E_CORRUPT;
    struct dec d = { v->mv_data, v->mv_size - HASH_LEN };
    uint64_t t;
    const uint8_t *s;
    size_t n;
    if (dec_format(&d) || dec_u64(&d, &t))
        return STORE_E_CORRUPT;
    for (int i = 0; i < AUDIT_NSTR; i++)
        if (dec_str(&d, &s, &n))
            return STORE_E_CORRUPT;
    return d.left == 0 ? 0 : STORE_E_CORRUPT;
}

/* SHA-256(prev || data). */
static int chain_hash(const uint8_t prev[HASH_LEN], const void *data, size_t len,
                      uint8_t out[HASH_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)
             && EVP_DigestUpdate(ctx, prev, HASH_LEN)
             && EVP_DigestUpdate(ctx, data, len)
             && EVP_DigestFinal_ex(ctx, out, &n) && n == HASH_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : STORE_E_NOMEM;
}

/* ------------------------------------------------------------ opening */

static uint64_t page_round(uint64_t v)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t p = pg > 0 ? (uint64_t)pg : 4096;
    return (v + p - 1) / p * p;
}

/* The last 8-byte key of a database, or 0 when it is empty. */
static int last_key(struct store *s, MDB_txn *txn, int db, uint64_t *out, MDB_val *val)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->dbi[db], &c);
    if (rc)
        return fail(s, rc, "cursor");
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    mdb_cursor_close(c);
    *out = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return fail(s, rc, db_names[db]);
    if (k.mv_size != 8) {
        snprintf(tl_err, sizeof tl_err, "store %s: database %s has a key of %zu bytes "
                 "(8 expected)", s->dir, db_names[db], k.mv_size);
        return STORE_E_CORRUPT;
    }
    *out = get_be64(k.mv_data);
    if (val)
        *val = v;
    return 0;
}

/* Next ids and the audit chain's head, from what is on disk. */
static int load_counters(struct store *s, MDB_txn *txn)
{
    uint64_t last_msg, last_err, last_audit;
    MDB_val last_val = { 0, NULL };
    int rc;
    if ((rc = last_key(s, txn, DB_MESSAGES, &last_msg, NULL))
        || (rc = last_key(s, txn, DB_ERRORS, &last_err, NULL))
        || (rc = last_key(s, txn, DB_AUDIT, &last_audit, &last_val)))
        return rc;
    s->next_msg = last_msg + 1;
    s->next_err = last_err + 1;

    /* The chain continues from the head kept in meta. Should the records
     * and the head disagree (records removed or added by hand), carry on
     * past both without overwriting anything: store_audit_verify reports
     * the gap. */
    MDB_val k = { sizeof META_AUDIT_HEAD - 1, (void *)META_AUDIT_HEAD }, h;
    uint64_t head_seq = 0;
    memset(s->audit_hash, 0, HASH_LEN);
    rc = mdb_get(txn, s->dbi[DB_META], &k, &h);
    if (rc == 0) {
        if (h.mv_size != 8 + HASH_LEN)
            return fail_code(s, STORE_E_CORRUPT, "meta audit_head has the wrong size");
        head_seq = get_be64(h.mv_data);
        memcpy(s->audit_hash, (uint8_t *)h.mv_data + 8, HASH_LEN);
    } else if (rc != MDB_NOTFOUND) {
        return fail(s, rc, "meta audit_head");
    }
    if (last_audit > head_seq) {
        if (last_val.mv_size < HASH_LEN)
            return fail_code(s, STORE_E_CORRUPT, "the last audit record is too short");
        memcpy(s->audit_hash, (uint8_t *)last_val.mv_data + last_val.mv_size - HASH_LEN,
               HASH_LEN);
        head_seq = last_audit;
    }
    s->next_audit = head_seq + 1;
    return 0;
}

/* Open the databases, check or write the schema version, load counters. */
static int open_dbs(struct store *s)
{
    MDB_txn *txn;
    unsigned create = s->read_only ? 0 : MDB_CREATE;
    int rc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return fail(s, rc, "cannot begin the opening transaction");
    if ((rc = mdb_dbi_open(txn, db_names[DB_META], create, &s->dbi[DB_META]))) {
        rc = fail(s, rc, rc == MDB_NOTFOUND ? "not an hl7broker store (no database meta)"
                                            : "cannot open database meta");
        goto out;
    }
    MDB_val k = { sizeof META_SCHEMA - 1, (void *)META_SCHEMA }, v;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == 0) {
        if (v.mv_size != 4) {
            rc = fail_code(s, STORE_E_CORRUPT, "meta schema_version is not 4 bytes");
            goto out;
        }
        uint32_t have = get_be32(v.mv_data);
        if (have > STORE_SCHEMA_VERSION) {
            snprintf(tl_err, sizeof tl_err, "store %s was written by a newer hl7broker "
                     "(schema version %u); this one reads schema version %u at most",
                     s->dir, have, STORE_SCHEMA_VERSION);
            rc = STORE_E_SCHEMA;
            goto out;
        }
        if (have < 1) {
            rc = fail_code(s, STORE_E_CORRUPT, "meta schema_version is 0");
            goto out;
        }
    } else if (rc == MDB_NOTFOUND && s->read_only) {
        rc = fail_code(s, STORE_E_CORRUPT, "not an hl7broker store (no schema version)");
        goto out;
    } else if (rc == MDB_NOTFOUND) {
        uint8_t ver[4];
        put_be32(ver, STORE_SCHEMA_VERSION);
        MDB_val nv = { sizeof ver, ver };
        if ((rc = mdb_put(txn, s->dbi[DB_META], &k, &nv, 0))) {
            rc = fail(s, rc, "cannot write the schema version");
            goto out;
        }
    } else {
        rc = fail(s, rc, "cannot read the schema version");
        goto out;
    }
    for (int i = 0; i < DB_COUNT; i++) {
        if (i == DB_META)
            continue;
        if ((rc = mdb_dbi_open(txn, db_names[i], create, &s->dbi[i]))) {
            char what[64];
            snprintf(what, sizeof what, "cannot open database %s", db_names[i]);
            rc = fail(s, rc, what);
            goto out;
        }
    }
    if ((rc = load_counters(s, txn)))
        goto out;
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc)
        rc = fail(s, rc, "cannot commit the opening transaction");
out:
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

/* Create and open the environment at s->dir with at least map bytes. */
static int open_env(struct store *s, uint64_t map)
{
    char path[4096];
    struct stat st;
    int rc;
    snprintf(path, sizeof path, "%s/data.mdb", s->dir);
    if (stat(path, &st) == 0 && (uint64_t)st.st_size > map)
        map = (uint64_t)st.st_size;
    map = page_round(map);
    if ((rc = mdb_env_create(&s->env)))
        return fail(s, rc, "cannot create the environment");
    if ((rc = mdb_env_set_maxdbs(s->env, MAX_DBS))
        || (rc = mdb_env_set_mapsize(s->env, (size_t)map)))
        return fail(s, rc, "cannot configure the environment");
    /* Never MDB_NOSYNC, MDB_NOMETASYNC or MDB_MAPASYNC: a commit is durable. */
    if ((rc = mdb_env_open(s->env, s->dir, MDB_NOTLS | (s->read_only ? MDB_RDONLY : 0),
                           0600)))
        return fail(s, rc, "cannot open the environment");
    /* Keep the size the store last ran with if that is larger (it grew). */
    MDB_envinfo info;
    if ((rc = mdb_env_set_mapsize(s->env, 0)))
        return fail(s, rc, "cannot size the map");
    mdb_env_info(s->env, &info);
    if (info.me_mapsize < map) {
        if ((rc = mdb_env_set_mapsize(s->env, (size_t)map)))
            return fail(s, rc, "cannot size the map");
        mdb_env_info(s->env, &info);
    }
    s->map_size = info.me_mapsize;
    if (s->map_max < s->map_size)
        s->map_max = s->map_size;
    /* Reader slots of crashed processes (an hl7ctl killed mid-read) would
     * pin old pages and make the file grow for nothing. */
    int dead;
    mdb_reader_check(s->env, &dead);
    return open_dbs(s);
}

int store_open(const struct store_opts *o, struct store **out, char *detail, size_t dlen)
{
    struct store *s = NULL;
    int rc;
    *out = NULL;
    if (detail && dlen)
        detail[0] = '\0';
    if (!o || !o->dir || !o->dir[0]) {
        if (detail && dlen)
            snprintf(detail, dlen, "store: no data directory given");
        return STORE_E_INVAL;
    }
    if (!(s = calloc(1, sizeof *s)) || !(s->dir = strdup(o->dir))) {
        if (detail && dlen)
            snprintf(detail, dlen, "store %s: out of memory", o->dir);
        rc = STORE_E_NOMEM;
        goto out;
    }
    if (pthread_rwlock_init(&s->lock, NULL)) {
        if (detail && dlen)
            snprintf(detail, dlen, "store %s: cannot create its lock", o->dir);
        rc = STORE_E_NOMEM;
        goto out;
    }
    s->lock_ok = true;
    s->txn.s = s;
    s->map_max = o->map_max;
    s->read_only = o->read_only;
    if (!s->read_only && mkdir(o->dir, 0700) && errno != EEXIST) {
        rc = fail(s, errno, "cannot create the directory");
        goto out;
    }
    struct stat st;
    if (stat(o->dir, &st)) {
        rc = fail(s, errno, "cannot stat the directory");
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = fail(s, ENOTDIR, "cannot use the directory");
        goto out;
    }
    rc = open_env(s, o->map_initial ? o->map_initial : DEFAULT_MAP);
out:
    if (rc) {
        if (detail && dlen && s)
            snprintf(detail, dlen, "%s", tl_err);
        store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    store_abort(&s->txn);
    if (s->env)
        mdb_env_close(s->env);
    if (s->lock_ok)
        pthread_rwlock_destroy(&s->lock);
    free(s->dir);
    free(s);
}

/* The sizes change only under the lock held exclusive (a resize). */
uint64_t store_map_size(const struct store *s)
{
    pthread_rwlock_t *l = (pthread_rwlock_t *)&s->lock;
    pthread_rwlock_rdlock(l);
    uint64_t v = s->map_size;
    pthread_rwlock_unlock(l);
    return v;
}

uint64_t store_map_max(const struct store *s)
{
    pthread_rwlock_t *l = (pthread_rwlock_t *)&s->lock;
    pthread_rwlock_rdlock(l);
    uint64_t v = s->map_max;
    pthread_rwlock_unlock(l);
    return v;
}

static int reopen(struct store *s);
static int grow_locked(struct store *s);

int store_grow(struct store *s)
{
    if (tl_writing == s)
        return fail_code(s, STORE_E_INVAL, "store_grow with a transaction open");
    /* Waits for the reads other threads have open to end. */
    pthread_rwlock_wrlock(&s->lock);
    int rc = s->env ? 0 : reopen(s);
    if (!rc)
        rc = grow_locked(s);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

static int grow_locked(struct store *s)
{
    int rc;
    /* A dead process's reader slot may be what filled the map. */
    int dead;
    mdb_reader_check(s->env, &dead);
    uint64_t want = s->map_size > s->map_max / 2 ? s->map_max : s->map_size * 2;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg > 0)
        want -= want % (uint64_t)pg;
    if (want <= s->map_size) {
        snprintf(tl_err, sizeof tl_err, "store %s: the map is at its ceiling of %llu bytes",
                 s->dir, (unsigned long long)s->map_max);
        return STORE_E_FULL;
    }
    rc = mdb_env_set_mapsize(s->env, (size_t)want);
    if (rc)
        return fail(s, rc, "cannot grow the map");
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    return 0;
}

/* ------------------------------------------------------------ transactions */

/* Another process grew the map: adopt its size. */
static int adopt_map_size(struct store *s)
{
    int rc = mdb_env_set_mapsize(s->env, 0);
    if (rc)
        return rc;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    if (s->map_max < s->map_size)
        s->map_max = s->map_size;
    return 0;
}

/* After a failed meta page write LMDB refuses every transaction
 * (MDB_PANIC) until the environment is reopened; the file itself still
 * holds the last good commit. */
static int reopen(struct store *s)
{
    if (s->env)
        mdb_env_close(s->env);
    s->env = NULL;
    int rc = open_env(s, s->map_size);
    if (rc && s->env) {
        /* Try again on the next call rather than use a half-open env. */
        mdb_env_close(s->env);
        s->env = NULL;
    }
    return rc;
}

/* Take the lock shared with an environment open: a reopen that failed
 * left none, so try again now (with the lock exclusive). On failure the
 * lock is not held. */
static int lock_env(struct store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    while (!s->env) {
        pthread_rwlock_unlock(&s->lock);
        pthread_rwlock_wrlock(&s->lock);
        int rc = s->env ? 0 : reopen(s);
        pthread_rwlock_unlock(&s->lock);
        if (rc)
            return rc;
        pthread_rwlock_rdlock(&s->lock);
    }
    return 0;
}

/* With the lock exclusive: repair what made a transaction's begin fail
 * (MDB_MAP_RESIZED: adopt the size another process gave the map;
 * MDB_PANIC: reopen). Returns a store code. */
static int repair(struct store *s, int why)
{
    pthread_rwlock_wrlock(&s->lock);
    int rc;
    if (!s->env || why == MDB_PANIC)
        rc = reopen(s);
    else if ((rc = adopt_map_size(s)))
        rc = fail(s, rc, "cannot adopt the map's new size");
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* A read transaction, holding the lock shared until end_read. */
static int begin_read(struct store *s, MDB_txn **txn)
{
    int rc = lock_env(s);
    if (rc)
        return rc;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    /* Not while this thread writes: its own shared hold would deadlock. */
    if (rc == MDB_MAP_RESIZED && tl_writing != s) {
        pthread_rwlock_unlock(&s->lock);
        if ((rc = repair(s, MDB_MAP_RESIZED)) || (rc = lock_env(s)))
            return rc;
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    }
    if (rc) {
        pthread_rwlock_unlock(&s->lock);
        return fail(s, rc, "cannot begin a read transaction");
    }
    return 0;
}

static void end_read(struct store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->lock);
}

int store_begin(struct store *s, struct store_txn **out)
{
    struct store_txn *t = &s->txn;
    *out = NULL;
    if (t->txn)
        return fail_code(s, STORE_E_INVAL, "store_begin with a transaction already open");
    int rc = lock_env(s);
    if (rc)
        return rc;
    rc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
    /* Adopt a size another process gave the map, then reopen after a
     * panic (each at most once). */
    for (int fixes = 0; (rc == MDB_MAP_RESIZED || rc == MDB_PANIC) && fixes < 2; fixes++) {
        t->txn = NULL;
        pthread_rwlock_unlock(&s->lock);
        int r2 = repair(s, rc);
        if (r2 || (r2 = lock_env(s)))
            return r2;
        rc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
    }
    if (rc) {
        t->txn = NULL;
        pthread_rwlock_unlock(&s->lock);
        return fail(s, rc, "cannot begin a write transaction");
    }
    tl_writing = s;
    t->failed = 0;
    t->next_msg = s->next_msg;
    t->next_err = s->next_err;
    t->next_audit = s->next_audit;
    memcpy(t->audit_hash, s->audit_hash, HASH_LEN);
    *out = t;
    return 0;
}

/* The transaction is gone: forget what it would have written. */
static void rewind_counters(struct store_txn *t)
{
    struct store *s = t->s;
    s->next_msg = t->next_msg;
    s->next_err = t->next_err;
    s->next_audit = t->next_audit;
    memcpy(s->audit_hash, t->audit_hash, HASH_LEN);
}

int store_commit(struct store_txn *t)
{
    if (!t || !t->txn)
        return STORE_E_INVAL;
    struct store *s = t->s;
    if (t->failed) {
        int rc = t->failed;
        store_abort(t);
        return rc;
    }
    int rc = mdb_txn_commit(t->txn);
    t->txn = NULL;
    if (rc)
        rewind_counters(t);
    tl_writing = NULL;
    pthread_rwlock_unlock(&s->lock);
    return rc ? fail(s, rc, "commit failed") : 0;
}

void store_abort(struct store_txn *t)
{
    if (!t || !t->txn)
        return;
    mdb_txn_abort(t->txn);
    t->txn = NULL;
    rewind_counters(t);
    tl_writing = NULL;
    pthread_rwlock_unlock(&t->s->lock);
}

/* A usable write transaction, or the error it already had. */
static int txn_check(struct store_txn *t)
{
    if (!t || !t->txn)
        return STORE_E_INVAL;
    return t->failed;
}

/* Any failure of a write leaves the transaction to be aborted. */
static int put(struct store_txn *t, int db, MDB_val *k, MDB_val *v, unsigned flags)
{
    int rc = mdb_put(t->txn, t->s->dbi[db], k, v, flags);
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "cannot write to %s", db_names[db]);
        t->failed = fail(t->s, rc, what);
        return t->failed;
    }
    return 0;
}

/* ------------------------------------------------------------ records */

/* The dedup database key for a dedup key (long ones shortened). */
static int dedup_db_key(const char *key, size_t len, uint8_t tmp[DEDUP_KEY_MAX], MDB_val *k)
{
    if (len <= DEDUP_KEY_MAX) {
        k->mv_data = (void *)key;
        k->mv_size = len;
        return 0;
    }
    unsigned int n = 0;
    memcpy(tmp, key, DEDUP_KEEP);
    if (!EVP_Digest(key, len, tmp + DEDUP_KEEP, &n, EVP_sha256(), NULL) || n != HASH_LEN)
        return STORE_E_NOMEM;
    k->mv_data = tmp;
    k->mv_size = DEDUP_KEY_MAX;
    return 0;
}

static bool is_nhs_number(const char *v)
{
    if (!v)
        return false;
    for (size_t i = 0; i < NHS_LEN; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return v[NHS_LEN] == '\0';
}

int store_put_message(struct store_txn *t, const struct store_msg *m,
                      const char *dedup_key, size_t dedup_len,
                      const char *ack, size_t ack_len, uint64_t *id)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    const char *strs[MSG_NSTR];
    if (!m || (!m->raw && m->raw_len) || (!ack && ack_len) || (!dedup_key && dedup_len))
        return fail_code(s, STORE_E_INVAL, "store_put_message: invalid argument");
    msg_strs(m, strs);
    for (int i = 0; i < MSG_NSTR; i++)
        if (!str_ok(strs[i]))
            return fail_code(s, STORE_E_INVAL, "store_put_message: a field is over 4 GiB");

    uint64_t msg_id = s->next_msg;
    uint8_t kb[8];
    put_be64(kb, msg_id);
    struct enc e = { NULL, 0 };
    enc_msg(&e, m);
    MDB_val k = { sizeof kb, kb }, v = { e.n, NULL };
    if ((rc = put(t, DB_MESSAGES, &k, &v, MDB_APPEND | MDB_RESERVE)))
        return rc;
    e = (struct enc){ v.mv_data, 0 };
    enc_msg(&e, m);

    if (is_nhs_number(m->nhs_number)) {
        uint8_t pk[NHS_LEN + 8];
        memcpy(pk, m->nhs_number, NHS_LEN);
        put_be64(pk + NHS_LEN, msg_id);
        MDB_val key = { sizeof pk, pk }, empty = { 0, NULL };
        if ((rc = put(t, DB_BY_PATIENT, &key, &empty, 0)))
            return rc;
    }

    if (dedup_len) {
        uint8_t tmp[DEDUP_KEY_MAX];
        MDB_val key;
        if ((rc = dedup_db_key(dedup_key, dedup_len, tmp, &key)))
            return t->failed = fail_code(s, rc, "cannot hash a dedup key");
        MDB_val dv = { 8 + ack_len, NULL };
        if ((rc = put(t, DB_DEDUP, &key, &dv, MDB_RESERVE)))
            return rc;
        put_be64(dv.mv_data, msg_id);
        if (ack_len)
            memcpy((uint8_t *)dv.mv_data + 8, ack, ack_len);
    }
    s->next_msg = msg_id + 1;
    if (id)
        *id = msg_id;
    return 0;
}

int store_dedup_get(struct store_txn *t, const char *key, size_t len,
                    uint64_t *id, char **ack, size_t *ack_len)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    if (!key || !len)
        return STORE_E_NOT_FOUND;
    uint8_t tmp[DEDUP_KEY_MAX];
    MDB_val k, v;
    if ((rc = dedup_db_key(key, len, tmp, &k)))
        return fail_code(s, rc, "cannot hash a dedup key");
    rc = mdb_get(t->txn, s->dbi[DB_DEDUP], &k, &v);
    if (rc == MDB_NOTFOUND)
        return STORE_E_NOT_FOUND;
    if (rc)
        return fail(s, rc, "cannot read dedup");
    if (v.mv_size < 8)
        return fail_code(s, STORE_E_CORRUPT, "a dedup entry is shorter than 8 bytes");
    size_t n = v.mv_size - 8;
    if (ack) {
        if (!(*ack = malloc(n + 1)))
            return STORE_E_NOMEM;
        memcpy(*ack, (uint8_t *)v.mv_data + 8, n);
        (*ack)[n] = '\0';
    }
    if (ack_len)
        *ack_len = n;
    if (id)
        *id = get_be64(v.mv_data);
    return 0;
}

char *store_dedup_key(const char *source, const char *app, size_t app_len,
                      const char *fac, size_t fac_len, const char *ctrl,
                      size_t ctrl_len, size_t *len)
{
    size_t src_len = source ? strlen(source) : 0;
    if (!app) app_len = 0;
    if (!fac) fac_len = 0;
    if (!ctrl) ctrl_len = 0;
    size_t n = src_len + 1 + app_len + 1 + fac_len + 1 + ctrl_len;
    char *k = malloc(n + 1), *p = k;
    if (!k)
        return NULL;
    memcpy(p, source ? source : "", src_len), p += src_len, *p++ = '\0';
    memcpy(p, app ? app : "", app_len), p += app_len, *p++ = '\0';
    memcpy(p, fac ? fac : "", fac_len), p += fac_len, *p++ = '\0';
    memcpy(p, ctrl ? ctrl : "", ctrl_len), p += ctrl_len, *p = '\0';
    if (len)
        *len = n;
    return k;
}

int store_put_error(struct store_txn *t, const struct store_err *r, uint64_t *id)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    const char *strs[ERR_NSTR];
    if (!r || (!r->raw && r->raw_len))
        return fail_code(s, STORE_E_INVAL, "store_put_error: invalid argument");
    err_strs(r, strs);
    for (int i = 0; i < ERR_NSTR; i++)
        if (!str_ok(strs[i]))
            return fail_code(s, STORE_E_INVAL, "store_put_error: a field is over 4 GiB");
    uint64_t err_id = s->next_err;
    uint8_t kb[8];
    put_be64(kb, err_id);
    struct enc e = { NULL, 0 };
    enc_err(&e, r);
    MDB_val k = { sizeof kb, kb }, v = { e.n, NULL };
    if ((rc = put(t, DB_ERRORS, &k, &v, MDB_APPEND | MDB_RESERVE)))
        return rc;
    e = (struct enc){ v.mv_data, 0 };
    enc_err(&e, r);
    s->next_err = err_id + 1;
    if (id)
        *id = err_id;
    return 0;
}

int store_audit_append(struct store_txn *t, const struct store_audit *a, uint64_t *seq)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    const char *strs[AUDIT_NSTR];
    if (!a)
        return fail_code(s, STORE_E_INVAL, "store_audit_append: invalid argument");
    audit_strs(a, strs);
    for (int i = 0; i < AUDIT_NSTR; i++)
        if (!str_ok(strs[i]))
            return fail_code(s, STORE_E_INVAL, "store_audit_append: a field is over 4 GiB");
    uint64_t n = s->next_audit;
    uint8_t kb[8], head[8 + HASH_LEN];
    put_be64(kb, n);
    struct enc e = { NULL, 0 };
    enc_audit(&e, a);
    size_t body = e.n;
    MDB_val k = { sizeof kb, kb }, v = { body + HASH_LEN, NULL };
    if ((rc = put(t, DB_AUDIT, &k, &v, MDB_APPEND | MDB_RESERVE)))
        return rc;
    e = (struct enc){ v.mv_data, 0 };
    enc_audit(&e, a);
    uint8_t *hash = (uint8_t *)v.mv_data + body;
    if ((rc = chain_hash(s->audit_hash, v.mv_data, body, hash)))
        return t->failed = fail_code(s, rc, "cannot compute the audit hash");
    put_be64(head, n);
    memcpy(head + 8, hash, HASH_LEN);
    MDB_val hk = { sizeof META_AUDIT_HEAD - 1, (void *)META_AUDIT_HEAD },
            hv = { sizeof head, head };
    if ((rc = put(t, DB_META, &hk, &hv, 0)))
        return rc;
    s->next_audit = n + 1;
    memcpy(s->audit_hash, head + 8, HASH_LEN);
    if (seq)
        *seq = n;
    return 0;
}

/* ------------------------------------------------------------ reading */

static int get_record(struct store *s, int db, uint64_t id, void *rec, void **owner,
                      int (*decode)(const MDB_val *, void *, void **))
{
    MDB_txn *txn;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = { sizeof kb, kb }, v;
    *owner = NULL;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    rc = mdb_get(txn, s->dbi[db], &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = STORE_E_NOT_FOUND;
    } else if (rc) {
        rc = fail(s, rc, db_names[db]);
    } else if ((rc = decode(&v, rec, owner)) == STORE_E_CORRUPT) {
        snprintf(tl_err, sizeof tl_err, "store %s: %s record %llu does not decode",
                 s->dir, db_names[db], (unsigned long long)id);
    }
    end_read(s, txn);
    return rc;
}

static int dec_msg_any(const MDB_val *v, void *rec, void **owner)
{
    return dec_msg(v, rec, owner);
}

static int dec_err_any(const MDB_val *v, void *rec, void **owner)
{
    return dec_err(v, rec, owner);
}

int store_get_message(struct store *s, uint64_t id, struct store_msg *m, void **owner)
{
    return get_record(s, DB_MESSAGES, id, m, owner, dec_msg_any);
}

int store_get_error(struct store *s, uint64_t id, struct store_err *e, void **owner)
{
    return get_record(s, DB_ERRORS, id, e, owner, dec_err_any);
}

int store_count(struct store *s, const char *db, uint64_t *n)
{
    int i = 0;
    while (i < DB_COUNT && (!db || strcmp(db, db_names[i]) != 0))
        i++;
    if (i == DB_COUNT)
        return fail_code(s, STORE_E_NOT_FOUND, "store_count: no such database");
    MDB_txn *txn;
    MDB_stat st;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    rc = mdb_stat(txn, s->dbi[i], &st);
    end_read(s, txn);
    if (rc)
        return fail(s, rc, db_names[i]);
    *n = st.ms_entries;
    return 0;
}

static void hex32(const uint8_t *h, char out[65])
{
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = x[h[i] >> 4];
        out[2 * i + 1] = x[h[i] & 15];
    }
    out[64] = '\0';
}

int store_audit_check(struct store *s, struct store_audit_report *r)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    uint8_t prev[HASH_LEN] = { 0 }, h[HASH_LEN];
    uint64_t expect = 1, ok = 0;
    memset(r, 0, sizeof *r);
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_AUDIT], &c))) {
        rc = fail(s, rc, "audit");
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), expect++) {
        /* Sequence numbers run 1, 2, 3, ... with no gap. */
        if (k.mv_size != 8) {
            r->fault = STORE_AUDIT_BAD_RECORD;
            snprintf(r->why, sizeof r->why, "a key of %zu bytes (8 expected) where record "
                     "%llu should be", k.mv_size, (unsigned long long)expect);
            break;
        }
        uint64_t seq = get_be64(k.mv_data);
        if (seq != expect) {
            r->fault = STORE_AUDIT_GAP;
            snprintf(r->why, sizeof r->why, "record %llu is missing (the next present is "
                     "%llu)", (unsigned long long)expect, (unsigned long long)seq);
            break;
        }
        if (dec_audit_shape(&v)) {
            r->fault = STORE_AUDIT_BAD_RECORD;
            snprintf(r->why, sizeof r->why, "record %llu does not decode (%zu bytes): its "
                     "format byte or a length was changed", (unsigned long long)seq,
                     v.mv_size);
            break;
        }
        if ((rc = chain_hash(prev, v.mv_data, v.mv_size - HASH_LEN, h)))
            goto out;
        if (memcmp(h, (uint8_t *)v.mv_data + v.mv_size - HASH_LEN, HASH_LEN)) {
            char want[65], have[65];
            hex32(h, want);
            hex32((uint8_t *)v.mv_data + v.mv_size - HASH_LEN, have);
            r->fault = STORE_AUDIT_HASH;
            snprintf(r->why, sizeof r->why, "record %llu: content hash mismatch: stored "
                     "%.16s..., SHA-256(previous hash || content) is %.16s... (this record "
                     "was changed, or the one before it rewritten with a fresh hash)",
                     (unsigned long long)seq, have, want);
            break;
        }
        memcpy(prev, h, HASH_LEN);
        ok++;
    }
    if (rc && rc != MDB_NOTFOUND && !r->fault) {
        rc = fail(s, rc, "audit");
        goto out;
    }
    rc = 0;
    /* The head names the last record: records missing from the end, or
     * added after it, show here. */
    MDB_val hk = { sizeof META_AUDIT_HEAD - 1, (void *)META_AUDIT_HEAD }, hv;
    int r2 = mdb_get(txn, s->dbi[DB_META], &hk, &hv);
    if (r2 == 0 && hv.mv_size == 8 + HASH_LEN)
        r->head_seq = get_be64(hv.mv_data);
    else if (r2 == 0)
        r->head_seq = UINT64_MAX;
    else if (r2 != MDB_NOTFOUND) {
        rc = fail(s, r2, "meta audit_head");
        goto out;
    }
    if (r->fault) {
        r->bad_seq = expect;
    } else if (r->head_seq == UINT64_MAX) {
        r->fault = STORE_AUDIT_HEAD;
        r->bad_seq = ok + 1;
        snprintf(r->why, sizeof r->why, "the head in meta (audit_head) has the wrong size");
    } else if (r->head_seq > ok) {
        r->fault = STORE_AUDIT_GAP;
        r->bad_seq = ok + 1;
        snprintf(r->why, sizeof r->why, "records %llu to %llu are missing (the head in meta "
                 "names %llu as the last)", (unsigned long long)ok + 1,
                 (unsigned long long)r->head_seq, (unsigned long long)r->head_seq);
    } else if (r->head_seq < ok) {
        r->fault = STORE_AUDIT_HEAD;
        r->bad_seq = r->head_seq + 1;
        snprintf(r->why, sizeof r->why, "record %llu and after were added beyond the head in "
                 "meta (which names %llu as the last)", (unsigned long long)r->head_seq + 1,
                 (unsigned long long)r->head_seq);
    } else if (ok && memcmp((uint8_t *)hv.mv_data + 8, prev, HASH_LEN)) {
        r->fault = STORE_AUDIT_HEAD;
        r->bad_seq = ok--;
        snprintf(r->why, sizeof r->why, "record %llu: previous-hash mismatch: its hash is not "
                 "the one the head in meta keeps (the record was rewritten with a fresh "
                 "hash)", (unsigned long long)r->bad_seq);
    }
    r->checked = ok;
    if (r->fault) {
        snprintf(tl_err, sizeof tl_err, "store %s: the audit chain breaks at record %llu: %s",
                 s->dir, (unsigned long long)r->bad_seq, r->why);
        rc = STORE_E_CORRUPT;
    }
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

int store_audit_verify(struct store *s, uint64_t *checked, uint64_t *bad)
{
    struct store_audit_report r;
    int rc = store_audit_check(s, &r);
    if (checked)
        *checked = rc == 0 || rc == STORE_E_CORRUPT ? r.checked : 0;
    if (bad)
        *bad = rc == STORE_E_CORRUPT ? r.bad_seq : 0;
    return rc;
}

/* One audit value's strings, NUL-terminated, into buf (grown as needed). */
static int audit_decode(const MDB_val *v, struct store_audit *a, char **buf, size_t *cap)
{
    struct dec d = { v->mv_data, v->mv_size >= HASH_LEN ? v->mv_size - HASH_LEN : 0 };
    const uint8_t *sp[AUDIT_NSTR];
    size_t sl[AUDIT_NSTR], need = 0;
    memset(a, 0, sizeof *a);
    if (dec_audit_shape(v) || dec_format(&d) || dec_u64(&d, &a->time_ms))
        return STORE_E_CORRUPT;
    for (int i = 0; i < AUDIT_NSTR; i++) {
        if (dec_str(&d, &sp[i], &sl[i]))
            return STORE_E_CORRUPT;
        need += sl[i] + 1;
    }
    if (need > *cap) {
        char *n = realloc(*buf, need);
        if (!n)
            return STORE_E_NOMEM;
        *buf = n;
        *cap = need;
    }
    const char **slot[AUDIT_NSTR] = { &a->actor, &a->action, &a->subject, &a->outcome,
                                      &a->details };
    char *p = *buf;
    for (int i = 0; i < AUDIT_NSTR; i++) {
        if (sl[i])
            memcpy(p, sp[i], sl[i]);
        p[sl[i]] = '\0';
        *slot[i] = p;
        p += sl[i] + 1;
    }
    return 0;
}

int store_audit_tail(struct store *s, uint64_t n, store_audit_fn fn, void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    char *buf = NULL;
    size_t cap = 0;
    static const uint8_t zero[HASH_LEN];
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_AUDIT], &c))) {
        rc = fail(s, rc, "audit");
        goto out;
    }
    /* Step back n records from the end, then walk forward. */
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    for (uint64_t i = 1; rc == 0 && (n == 0 || i < n); i++)
        rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct store_audit a;
        uint64_t seq = k.mv_size == 8 ? get_be64(k.mv_data) : 0;
        int d = audit_decode(&v, &a, &buf, &cap);
        if (d == STORE_E_NOMEM) {
            rc = d;
            goto out;
        }
        if (d) {
            a = (struct store_audit){ 0, "(undecodable)", "(undecodable)", "(undecodable)",
                                      "(undecodable)", "(undecodable)" };
        }
        const uint8_t *h = v.mv_size >= HASH_LEN ? (uint8_t *)v.mv_data + v.mv_size - HASH_LEN
                                                 : zero;
        if ((rc = fn(ctx, seq, &a, h)))
            goto out;
    }
    rc = rc == MDB_NOTFOUND ? 0 : fail(s, rc, "audit");
out:
    free(buf);
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

/* ------------------------------------------------------------ the outbox */

static const char META_DEST_PREFIX[] = "dest:";
static const char META_DEST_NEXT[] = "dest_next";

int store_dest_id(struct store_txn *t, const char *name, uint32_t *id)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    size_t n = strlen(name ? name : "");
    if (n == 0 || n > 400)
        return fail_code(s, STORE_E_INVAL, "a destination name of 1 to 400 bytes");
    char key[sizeof META_DEST_PREFIX + 400];
    memcpy(key, META_DEST_PREFIX, sizeof META_DEST_PREFIX - 1);
    memcpy(key + sizeof META_DEST_PREFIX - 1, name, n);
    MDB_val k = { sizeof META_DEST_PREFIX - 1 + n, key }, v;
    rc = mdb_get(t->txn, s->dbi[DB_META], &k, &v);
    if (rc == 0) {
        if (v.mv_size != 4)
            return fail_code(s, STORE_E_CORRUPT, "meta dest: entry has the wrong size");
        *id = get_be32(v.mv_data);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return fail(s, rc, "meta dest:");
    /* a new destination: the next id, kept in meta in this transaction */
    MDB_val nk = { sizeof META_DEST_NEXT - 1, (void *)META_DEST_NEXT }, nv;
    uint32_t next = 1;
    rc = mdb_get(t->txn, s->dbi[DB_META], &nk, &nv);
    if (rc == 0 && nv.mv_size == 4)
        next = get_be32(nv.mv_data);
    else if (rc != MDB_NOTFOUND && rc != 0)
        return fail(s, rc, "meta dest_next");
    uint8_t idb[4], nextb[4];
    put_be32(idb, next);
    put_be32(nextb, next + 1);
    MDB_val iv = { 4, idb }, xv = { 4, nextb };
    if ((rc = put(t, DB_META, &k, &iv, 0)) || (rc = put(t, DB_META, &nk, &xv, 0)))
        return rc;
    *id = next;
    return 0;
}

/* The next sequence number in dest's part of the outbox: one past the
 * highest key with that prefix (dead letters keep their seq, so the
 * highest of both). */
static int next_seq(struct store_txn *t, int db, uint32_t dest, uint64_t *seq)
{
    struct store *s = t->s;
    MDB_cursor *c;
    int rc = mdb_cursor_open(t->txn, s->dbi[db], &c);
    if (rc)
        return fail(s, rc, "cursor");
    uint8_t kb[12];
    put_be32(kb, dest + 1);
    put_be64(kb + 4, 0);
    MDB_val k = { 12, kb }, v;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    *seq = 1;
    if (rc == 0 && k.mv_size == 12 && get_be32(k.mv_data) == dest)
        *seq = get_be64((uint8_t *)k.mv_data + 4) + 1;
    mdb_cursor_close(c);
    if (rc && rc != MDB_NOTFOUND)
        return fail(s, rc, db_names[db]);
    return 0;
}

int store_enqueue(struct store_txn *t, const char *dest, uint64_t msg_id,
                  const char *payload, size_t len, uint64_t *seq_out)
{
    uint32_t id;
    int rc = store_dest_id(t, dest, &id);
    if (rc)
        return rc;
    uint64_t seq, dead_seq;
    if ((rc = next_seq(t, DB_OUTBOX, id, &seq)) || (rc = next_seq(t, DB_DEAD, id, &dead_seq)))
        return rc;
    if (dead_seq > seq)
        seq = dead_seq;
    /* outbox: msg id, attempts, next attempt (ms), last error */
    uint8_t kb[12], vb[1 + 8 + 4 + 8 + 4];
    put_be32(kb, id);
    put_be64(kb + 4, seq);
    vb[0] = FORMAT;
    put_be64(vb + 1, msg_id);
    put_be32(vb + 9, 0);
    put_be64(vb + 13, 0);
    put_be32(vb + 21, 0);
    MDB_val k = { 12, kb }, v = { sizeof vb, vb };
    if ((rc = put(t, DB_OUTBOX, &k, &v, MDB_NOOVERWRITE)))
        return rc;
    /* payloads: the bytes the destination receives */
    uint8_t pk[12];
    put_be32(pk, id);
    put_be64(pk + 4, msg_id);
    MDB_val pkv = { 12, pk }, pv = { payload ? len + 1 : 1, NULL };
    if ((rc = put(t, DB_PAYLOADS, &pkv, &pv, MDB_RESERVE)))
        return rc;
    ((uint8_t *)pv.mv_data)[0] = payload ? FORMAT : FORMAT_SAME;
    if (payload && len)
        memcpy((uint8_t *)pv.mv_data + 1, payload, len);
    if (seq_out)
        *seq_out = seq;
    return 0;
}

/* ------------------------------------------------------------ delivery */

#define OUTBOX_VAL_MIN (1 + 8 + 4 + 8 + 4)

static void outbox_key(uint8_t kb[12], uint32_t dest, uint64_t seq)
{
    put_be32(kb, dest);
    put_be64(kb + 4, seq);
}

/* An outbox value: format, msg id, attempts, next attempt, last error. */
static int dec_outbox(const MDB_val *v, uint64_t *msg_id, uint32_t *attempts,
                      uint64_t *next_ms, const uint8_t **err, size_t *err_len)
{
    struct dec d = { v->mv_data, v->mv_size };
    uint64_t m, n;
    const uint8_t *e;
    size_t el;
    if (dec_format(&d) || dec_u64(&d, &m) || d.left < 4)
        return STORE_E_CORRUPT;
    uint32_t a = get_be32(d.p);
    d.p += 4;
    d.left -= 4;
    if (dec_u64(&d, &n) || dec_str(&d, &e, &el) || d.left != 0)
        return STORE_E_CORRUPT;
    if (msg_id) *msg_id = m;
    if (attempts) *attempts = a;
    if (next_ms) *next_ms = n;
    if (err) *err = e;
    if (err_len) *err_len = el;
    return 0;
}

/* The message's fields the delivery needs, read in place: code (4),
 * trigger (5) and control id (7) of the 12 strings. A message that is
 * gone (pruned) or does not decode reads as empty strings. */
static void msg_fields(MDB_txn *txn, struct store *s, uint64_t msg_id, uint64_t *received,
                       const uint8_t *p[3], size_t l[3], const uint8_t **raw, size_t *raw_len)
{
    if (raw)
        *raw = NULL, *raw_len = 0;
    static const int want[3] = { 7, 4, 5 };   /* control_id, code, trigger */
    uint8_t kb[8];
    put_be64(kb, msg_id);
    MDB_val k = { 8, kb }, v;
    for (int i = 0; i < 3; i++)
        p[i] = NULL, l[i] = 0;
    if (received)
        *received = 0;
    if (mdb_get(txn, s->dbi[DB_MESSAGES], &k, &v))
        return;
    struct dec d = { v.mv_data, v.mv_size };
    uint64_t rec;
    uint8_t state;
    const uint8_t *sp[MSG_NSTR];
    size_t sl[MSG_NSTR];
    if (dec_format(&d) || dec_u64(&d, &rec) || dec_u8(&d, &state))
        return;
    for (int i = 0; i < MSG_NSTR; i++)
        if (dec_str(&d, &sp[i], &sl[i]))
            return;
    if (received)
        *received = rec;
    for (int i = 0; i < 3; i++)
        p[i] = sp[want[i]], l[i] = sl[want[i]];
    if (raw)
        *raw = d.p, *raw_len = d.left;
}

int store_outbox_first(struct store *s, uint32_t dest_id, uint64_t min_seq,
                       struct store_outbox_entry *e, void **owner)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    uint8_t kb[12];
    MDB_val k = { 12, kb }, v;
    *owner = NULL;
    memset(e, 0, sizeof *e);
    outbox_key(kb, dest_id, min_seq);
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_OUTBOX], &c))) {
        rc = fail(s, rc, "outbox");
        goto out;
    }
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size != 12 || get_be32(k.mv_data) != dest_id))) {
        rc = STORE_E_NOT_FOUND;
        goto out;
    }
    if (rc) {
        rc = fail(s, rc, "outbox");
        goto out;
    }
    uint64_t seq = get_be64((uint8_t *)k.mv_data + 4), msg_id, next_ms;
    uint32_t attempts;
    const uint8_t *err;
    size_t err_len;
    if (dec_outbox(&v, &msg_id, &attempts, &next_ms, &err, &err_len)) {
        snprintf(tl_err, sizeof tl_err, "store %s: outbox entry %u/%llu does not decode",
                 s->dir, dest_id, (unsigned long long)seq);
        rc = STORE_E_CORRUPT;
        goto out;
    }
    uint8_t pk[12];
    outbox_key(pk, dest_id, msg_id);
    MDB_val pkv = { 12, pk }, pv;
    rc = mdb_get(txn, s->dbi[DB_PAYLOADS], &pkv, &pv);
    bool same = rc == 0 && pv.mv_size == 1 && ((uint8_t *)pv.mv_data)[0] == FORMAT_SAME;
    if (rc == MDB_NOTFOUND || (rc == 0 && !same && (pv.mv_size < 1
                                                    || ((uint8_t *)pv.mv_data)[0] != FORMAT))) {
        snprintf(tl_err, sizeof tl_err, "store %s: outbox entry %u/%llu has no payload "
                 "(message %llu)", s->dir, dest_id, (unsigned long long)seq,
                 (unsigned long long)msg_id);
        rc = STORE_E_CORRUPT;
        goto out;
    }
    if (rc) {
        rc = fail(s, rc, "payloads");
        goto out;
    }
    const uint8_t *mp[3];
    size_t ml[3];
    uint64_t received;
    const uint8_t *raw;
    size_t raw_len;
    msg_fields(txn, s, msg_id, &received, mp, ml, &raw, &raw_len);
    const uint8_t *payload = (uint8_t *)pv.mv_data + 1;
    size_t plen = pv.mv_size - 1;
    if (same) {
        if (!raw) {
            snprintf(tl_err, sizeof tl_err, "store %s: outbox entry %u/%llu: message %llu, "
                     "whose bytes it sends, is gone", s->dir, dest_id,
                     (unsigned long long)seq, (unsigned long long)msg_id);
            rc = STORE_E_CORRUPT;
            goto out;
        }
        payload = raw;
        plen = raw_len;
    }

    /* One block: payload, last error, control id, code, trigger, each
     * NUL-terminated. */
    size_t total = plen + 1 + err_len + 1 + ml[0] + 1 + ml[1] + 1 + ml[2] + 1;
    char *block = malloc(total), *p = block;
    if (!block) {
        rc = STORE_E_NOMEM;
        goto out;
    }
    const uint8_t *src[5] = { payload, err, mp[0], mp[1], mp[2] };
    size_t len[5] = { plen, err_len, ml[0], ml[1], ml[2] };
    const char **dst[5] = { &e->payload, &e->last_error, &e->control_id, &e->code,
                            &e->trigger };
    for (int i = 0; i < 5; i++) {
        if (len[i])
            memcpy(p, src[i], len[i]);
        p[len[i]] = '\0';
        *dst[i] = p;
        p += len[i] + 1;
    }
    e->dest_id = dest_id;
    e->seq = seq;
    e->msg_id = msg_id;
    e->attempts = attempts;
    e->next_attempt_ms = next_ms;
    e->received_ms = received;
    e->len = plen;
    *owner = block;
    rc = 0;
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

/* The outbox entry's msg id, with the transaction's own writes. */
static int outbox_get(struct store_txn *t, uint32_t dest, uint64_t seq, uint8_t kb[12],
                      uint64_t *msg_id)
{
    struct store *s = t->s;
    outbox_key(kb, dest, seq);
    MDB_val k = { 12, kb }, v;
    int rc = mdb_get(t->txn, s->dbi[DB_OUTBOX], &k, &v);
    if (rc == MDB_NOTFOUND) {
        snprintf(tl_err, sizeof tl_err, "store %s: no outbox entry %u/%llu", s->dir, dest,
                 (unsigned long long)seq);
        return STORE_E_NOT_FOUND;
    }
    if (rc)
        return fail(s, rc, "cannot read outbox");
    if (dec_outbox(&v, msg_id, NULL, NULL, NULL, NULL)) {
        snprintf(tl_err, sizeof tl_err, "store %s: outbox entry %u/%llu does not decode",
                 s->dir, dest, (unsigned long long)seq);
        return STORE_E_CORRUPT;
    }
    return 0;
}

static int del(struct store_txn *t, int db, MDB_val *k)
{
    int rc = mdb_del(t->txn, t->s->dbi[db], k, NULL);
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "cannot delete from %s", db_names[db]);
        t->failed = fail(t->s, rc, what);
        return t->failed;
    }
    return 0;
}

int store_outbox_delivered(struct store_txn *t, uint32_t dest_id, uint64_t seq)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    uint8_t kb[12];
    uint64_t msg_id;
    if ((rc = outbox_get(t, dest_id, seq, kb, &msg_id)))
        return rc;
    MDB_val k = { 12, kb };
    return del(t, DB_OUTBOX, &k);
}

int store_outbox_retry(struct store_txn *t, uint32_t dest_id, uint64_t seq,
                       uint32_t attempts, uint64_t next_attempt_ms, const char *last_error)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    size_t el = last_error ? strlen(last_error) : 0;
    if (el > UINT32_MAX)
        return fail_code(s, STORE_E_INVAL, "store_outbox_retry: an error over 4 GiB");
    uint8_t kb[12];
    uint64_t msg_id;
    if ((rc = outbox_get(t, dest_id, seq, kb, &msg_id)))
        return rc;
    MDB_val k = { 12, kb }, v = { OUTBOX_VAL_MIN + el, NULL };
    if ((rc = put(t, DB_OUTBOX, &k, &v, MDB_RESERVE)))
        return rc;
    uint8_t *p = v.mv_data;
    p[0] = FORMAT;
    put_be64(p + 1, msg_id);
    put_be32(p + 9, attempts);
    put_be64(p + 13, next_attempt_ms);
    put_be32(p + 21, (uint32_t)el);
    if (el)
        memcpy(p + OUTBOX_VAL_MIN, last_error, el);
    return 0;
}

int store_outbox_dead(struct store_txn *t, uint32_t dest_id, uint64_t seq,
                      const char *final_error)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    size_t el = final_error ? strlen(final_error) : 0;
    if (el > UINT32_MAX)
        return fail_code(s, STORE_E_INVAL, "store_outbox_dead: an error over 4 GiB");
    uint8_t kb[12];
    uint64_t msg_id;
    if ((rc = outbox_get(t, dest_id, seq, kb, &msg_id)))
        return rc;
    /* dead: format, msg id, u32-length final error */
    MDB_val k = { 12, kb }, v = { 1 + 8 + 4 + el, NULL };
    if ((rc = put(t, DB_DEAD, &k, &v, MDB_RESERVE)))
        return rc;
    uint8_t *p = v.mv_data;
    p[0] = FORMAT;
    put_be64(p + 1, msg_id);
    put_be32(p + 9, (uint32_t)el);
    if (el)
        memcpy(p + 13, final_error, el);
    MDB_val dk = { 12, kb };
    return del(t, DB_OUTBOX, &dk);
}

static int first_received(void *ctx, const struct store_queue_item *it)
{
    *(uint64_t *)ctx = it->received_ms;
    return 0;
}

int store_outbox_depth(struct store *s, uint32_t dest_id, uint64_t *n, uint64_t *oldest_ms)
{
    uint64_t count = 0, oldest = 0;
    int rc = store_queue_list(s, dest_id, false, 0, 1, &count, first_received, &oldest);
    if (!rc) {
        if (n) *n = count;
        if (oldest_ms) *oldest_ms = oldest;
    }
    return rc;
}

int store_dead_count(struct store *s, uint32_t dest_id, uint64_t *n)
{
    uint64_t count = 0;
    int rc = store_queue_list(s, dest_id, true, 0, 0, &count, NULL, NULL);
    if (!rc && n)
        *n = count;
    return rc;
}

int store_env_stats(struct store *s, struct store_env_stats *st)
{
    MDB_envinfo info;
    MDB_stat ms;
    int rc = lock_env(s);
    if (rc)
        return rc;
    if ((rc = mdb_env_info(s->env, &info)) || (rc = mdb_env_stat(s->env, &ms))) {
        pthread_rwlock_unlock(&s->lock);
        return fail(s, rc, "cannot read the environment's statistics");
    }
    uint64_t map_max = s->map_max;
    pthread_rwlock_unlock(&s->lock);
    uint64_t page = ms.ms_psize ? ms.ms_psize : 4096;
    uint64_t total = (uint64_t)info.me_mapsize / page;
    uint64_t used = (uint64_t)info.me_last_pgno + 1;
    *st = (struct store_env_stats){
        .map_bytes = (uint64_t)info.me_mapsize, .map_max = map_max,
        .page_bytes = page, .pages_total = total, .pages_used = used > total ? total : used,
        .pages_free = used > total ? 0 : total - used,
        .readers = info.me_numreaders, .max_readers = info.me_maxreaders,
    };
    return 0;
}

/* ------------------------------------------------------------ retention */

struct store_prune {
    struct store *s;
    uint64_t     *ids;          /* msg ids the outbox or dead letters name */
    size_t        n, cap;
    bool          sorted;       /* after the scan: kept sorted from then on */
    uint64_t     *last[2];      /* per dest id: the highest outbox / dead seq seen */
    size_t        ndest;        /* entries in last[0] and last[1] */
    int           scan_db;      /* 0 outbox, 1 dead, 2 scan done */
    uint8_t       resume[12];   /* the scan goes on from this key */
    uint64_t      next_msg, next_err;
};

int store_prune_new(struct store *s, struct store_prune **out)
{
    struct store_prune *p = calloc(1, sizeof *p);
    *out = NULL;
    if (!p)
        return STORE_E_NOMEM;
    p->s = s;
    p->next_msg = p->next_err = 1;
    *out = p;
    return 0;
}

void store_prune_free(struct store_prune *p)
{
    if (!p)
        return;
    free(p->ids);
    free(p->last[0]);
    free(p->last[1]);
    free(p);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Where id is, or would go, in the sorted ids. */
static size_t refs_pos(const struct store_prune *p, uint64_t id)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool refs_has(const struct store_prune *p, uint64_t id)
{
    size_t i = refs_pos(p, id);
    return i < p->n && p->ids[i] == id;
}

static int refs_add(struct store_prune *p, uint64_t id)
{
    size_t at = p->n;
    if (p->sorted) {
        at = refs_pos(p, id);
        if (at < p->n && p->ids[at] == id)
            return 0;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 1024;
        uint64_t *n = realloc(p->ids, cap * sizeof *n);
        if (!n)
            return STORE_E_NOMEM;
        p->ids = n;
        p->cap = cap;
    }
    if (at < p->n)
        memmove(p->ids + at + 1, p->ids + at, (p->n - at) * sizeof *p->ids);
    p->ids[at] = id;
    p->n++;
    return 0;
}

/* Remember seq as seen for dest in db (0 outbox, 1 dead). */
static int refs_seen(struct store_prune *p, int db, uint32_t dest, uint64_t seq)
{
    if (dest >= p->ndest) {
        size_t n = (size_t)dest + 16;
        for (int i = 0; i < 2; i++) {
            uint64_t *v = realloc(p->last[i], n * sizeof *v);
            if (!v)
                return STORE_E_NOMEM;
            memset(v + p->ndest, 0, (n - p->ndest) * sizeof *v);
            p->last[i] = v;
        }
        p->ndest = n;
    }
    if (seq > p->last[db][dest])
        p->last[db][dest] = seq;
    return 0;
}

/* An outbox or dead entry: dest + seq key, the msg id after the format byte. */
static int refs_entry(struct store_prune *p, int db, const MDB_val *k, const MDB_val *v)
{
    if (k->mv_size != 12 || v->mv_size < 9)
        return 0;   /* not ours to judge here; the delivery engine reports it */
    int rc = refs_seen(p, db, get_be32(k->mv_data), get_be64((uint8_t *)k->mv_data + 4));
    return rc ? rc : refs_add(p, get_be64((uint8_t *)v->mv_data + 1));
}

int store_prune_scan(struct store_prune *p, size_t max, bool *done)
{
    struct store *s = p->s;
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    size_t seen = 0;
    *done = p->scan_db >= 2;
    if (*done)
        return 0;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    while (p->scan_db < 2 && (max == 0 || seen < max)) {
        int db = p->scan_db == 0 ? DB_OUTBOX : DB_DEAD;
        if ((rc = mdb_cursor_open(txn, s->dbi[db], &c))) {
            rc = fail(s, rc, db_names[db]);
            goto out;
        }
        MDB_val k = { 12, p->resume }, v;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && (max == 0 || seen < max);
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), seen++)
            if ((rc = refs_entry(p, p->scan_db, &k, &v)))
                goto out;
        if (rc == 0) {
            /* stopped at max: go on after this key next time */
            if (k.mv_size == 12) {
                memcpy(p->resume, k.mv_data, 12);
            }
        } else if (rc == MDB_NOTFOUND) {
            p->scan_db++;
            memset(p->resume, 0, sizeof p->resume);
        } else {
            rc = fail(s, rc, db_names[db]);
            goto out;
        }
        rc = 0;
        mdb_cursor_close(c);
        c = NULL;
    }
    if (p->scan_db >= 2) {
        if (p->n)
            qsort(p->ids, p->n, sizeof *p->ids, cmp_u64);
        size_t w = 0;
        for (size_t i = 0; i < p->n; i++)
            if (w == 0 || p->ids[w - 1] != p->ids[i])
                p->ids[w++] = p->ids[i];
        p->n = w;
        p->sorted = true;
        *done = true;
    }
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

/* The number of destination ids handed out (meta dest_next - 1). */
static int dest_count(struct store_txn *t, uint32_t *n)
{
    MDB_val k = { sizeof META_DEST_NEXT - 1, (void *)META_DEST_NEXT }, v;
    int rc = mdb_get(t->txn, t->s->dbi[DB_META], &k, &v);
    *n = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return fail(t->s, rc, "meta dest_next");
    if (v.mv_size == 4 && get_be32(v.mv_data) > 0)
        *n = get_be32(v.mv_data) - 1;
    return 0;
}

/* Outbox and dead entries written since the scan (or the last step), seen
 * in this write transaction. */
static int refs_refresh(struct store_txn *t, struct store_prune *p, uint32_t ndest)
{
    struct store *s = t->s;
    for (int i = 0; i < 2; i++) {
        int db = i == 0 ? DB_OUTBOX : DB_DEAD;
        MDB_cursor *c;
        int rc = mdb_cursor_open(t->txn, s->dbi[db], &c);
        if (rc)
            return fail(s, rc, db_names[db]);
        for (uint32_t d = 1; d <= ndest; d++) {
            uint8_t kb[12];
            uint64_t last = d < p->ndest ? p->last[i][d] : 0;
            outbox_key(kb, d, last + 1);
            MDB_val k = { 12, kb }, v;
            for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
                 rc == 0 && k.mv_size == 12 && get_be32(k.mv_data) == d;
                 rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
                if ((rc = refs_entry(p, i, &k, &v)))
                    break;
            if (rc && rc != MDB_NOTFOUND) {
                mdb_cursor_close(c);
                return rc < 0 && rc >= STORE_E_INVAL ? rc : fail(s, rc, db_names[db]);
            }
        }
        mdb_cursor_close(c);
    }
    return 0;
}

/* Delete k from db when present; *gone says whether it was. */
static int del_if(struct store_txn *t, int db, MDB_val *k, bool *gone)
{
    int rc = mdb_del(t->txn, t->s->dbi[db], k, NULL);
    if (gone)
        *gone = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    return rc ? del(t, db, k) : 0;
}

/* Remove message id (value v, read before any delete) and what hangs on it. */
static int prune_one(struct store_txn *t, MDB_cursor *c, uint64_t id, const MDB_val *v,
                     uint32_t ndest, struct store_prune_counts *cnt)
{
    struct store *s = t->s;
    struct dec d = { v->mv_data, v->mv_size };
    uint64_t rec;
    uint8_t state;
    const uint8_t *sp[MSG_NSTR];
    size_t sl[MSG_NSTR];
    char *dkey = NULL;
    size_t dlen = 0;
    uint8_t pk[NHS_LEN + 8];
    bool have_nhs = false;
    int rc = 0;
    bool ok = !dec_format(&d) && !dec_u64(&d, &rec) && !dec_u8(&d, &state);
    for (int i = 0; ok && i < MSG_NSTR; i++)
        ok = !dec_str(&d, &sp[i], &sl[i]);
    if (ok) {
        /* copied out: the deletes below may move the page */
        char *src = strndup((const char *)sp[0], sl[0]);
        if (!src)
            return STORE_E_NOMEM;
        dkey = store_dedup_key(src, (const char *)sp[8], sl[8], (const char *)sp[9], sl[9],
                               (const char *)sp[7], sl[7], &dlen);
        free(src);
        if (!dkey)
            return STORE_E_NOMEM;
        if (sl[10] == NHS_LEN) {
            memcpy(pk, sp[10], NHS_LEN);
            have_nhs = true;
            for (size_t i = 0; i < NHS_LEN; i++)
                have_nhs = have_nhs && pk[i] >= '0' && pk[i] <= '9';
            put_be64(pk + NHS_LEN, id);
        }
    }
    if ((rc = mdb_cursor_del(c, 0))) {
        free(dkey);
        return t->failed = fail(s, rc, "cannot delete from messages");
    }
    if (have_nhs) {
        MDB_val k = { sizeof pk, pk };
        if ((rc = del_if(t, DB_BY_PATIENT, &k, NULL)))
            goto out;
    }
    if (dkey) {
        uint8_t tmp[DEDUP_KEY_MAX];
        MDB_val k, dv;
        if ((rc = dedup_db_key(dkey, dlen, tmp, &k))) {
            rc = t->failed = fail_code(s, rc, "cannot hash a dedup key");
            goto out;
        }
        rc = mdb_get(t->txn, s->dbi[DB_DEDUP], &k, &dv);
        if (rc == 0 && dv.mv_size >= 8 && get_be64(dv.mv_data) == id)
            rc = del_if(t, DB_DEDUP, &k, NULL);
        else if (rc == MDB_NOTFOUND || rc == 0)
            rc = 0;
        else
            rc = t->failed = fail(s, rc, "cannot read dedup");
        if (rc)
            goto out;
    }
    for (uint32_t dst = 1; dst <= ndest; dst++) {
        uint8_t kb[12];
        bool gone;
        outbox_key(kb, dst, id);
        MDB_val k = { 12, kb };
        if ((rc = del_if(t, DB_PAYLOADS, &k, &gone)))
            goto out;
        cnt->payloads += gone;
    }
    cnt->messages++;
out:
    free(dkey);
    return rc;
}

int store_prune_messages(struct store_txn *t, struct store_prune *p, uint64_t cutoff_ms,
                         size_t max, struct store_prune_counts *cnt, bool *done)
{
    int rc = txn_check(t);
    *done = false;
    if (rc)
        return rc;
    struct store *s = t->s;
    if (!p->sorted)
        return fail_code(s, STORE_E_INVAL, "store_prune_messages before the scan is done");
    uint32_t ndest;
    if ((rc = dest_count(t, &ndest)) || (rc = refs_refresh(t, p, ndest)))
        return rc;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, s->dbi[DB_MESSAGES], &c)))
        return fail(s, rc, "messages");
    uint8_t kb[8];
    put_be64(kb, p->next_msg);
    MDB_val k = { 8, kb }, v;
    size_t pruned = 0, looked = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (pruned >= max || looked >= 4 * max)
            break;
        looked++;
        if (k.mv_size != 8)
            continue;
        uint64_t id = get_be64(k.mv_data);
        p->next_msg = id + 1;
        if (v.mv_size >= 9 && get_be64((uint8_t *)v.mv_data + 1) >= cutoff_ms) {
            *done = true;       /* ids follow time: the rest are younger */
            break;
        }
        if (refs_has(p, id)) {
            cnt->kept++;
            continue;
        }
        if ((rc = prune_one(t, c, id, &v, ndest, cnt)))
            break;
        pruned++;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *done = true;
        rc = 0;
    } else if (rc > 0 || (rc < 0 && rc < STORE_E_INVAL)) {
        rc = t->failed = fail(s, rc, "messages");
    }
    return rc;
}

int store_prune_errors(struct store_txn *t, struct store_prune *p, uint64_t cutoff_ms,
                       size_t max, struct store_prune_counts *cnt, bool *done)
{
    int rc = txn_check(t);
    *done = false;
    if (rc)
        return rc;
    struct store *s = t->s;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(t->txn, s->dbi[DB_ERRORS], &c)))
        return fail(s, rc, "errors");
    uint8_t kb[8];
    put_be64(kb, p->next_err);
    MDB_val k = { 8, kb }, v;
    size_t pruned = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && pruned < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 8)
            p->next_err = get_be64(k.mv_data) + 1;
        if (v.mv_size >= 9 && get_be64((uint8_t *)v.mv_data + 1) >= cutoff_ms) {
            *done = true;
            break;
        }
        if ((rc = mdb_cursor_del(c, 0))) {
            rc = t->failed = fail(s, rc, "cannot delete from errors");
            break;
        }
        cnt->errors++;
        pruned++;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *done = true;
        rc = 0;
    } else if (rc > 0 || (rc < 0 && rc < STORE_E_INVAL)) {
        rc = t->failed = fail(s, rc, "errors");
    }
    return rc;
}

/* ------------------------------------------------------------ the admin API */

int store_dest_find(struct store *s, const char *name, uint32_t *id)
{
    size_t n = strlen(name ? name : "");
    if (n == 0 || n > 400)
        return STORE_E_NOT_FOUND;
    char key[sizeof META_DEST_PREFIX + 400];
    memcpy(key, META_DEST_PREFIX, sizeof META_DEST_PREFIX - 1);
    memcpy(key + sizeof META_DEST_PREFIX - 1, name, n);
    MDB_val k = { sizeof META_DEST_PREFIX - 1 + n, key }, v;
    MDB_txn *txn;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == MDB_NOTFOUND)
        rc = STORE_E_NOT_FOUND;
    else if (rc)
        rc = fail(s, rc, "meta dest:");
    else if (v.mv_size != 4)
        rc = fail_code(s, STORE_E_CORRUPT, "meta dest: entry has the wrong size");
    else
        *id = get_be32(v.mv_data);
    end_read(s, txn);
    return rc;
}

/* A dead letter: format, msg id, u32-length final error. */
static int dec_dead(const MDB_val *v, uint64_t *msg_id, const uint8_t **err, size_t *err_len)
{
    struct dec d = { v->mv_data, v->mv_size };
    if (dec_format(&d) || dec_u64(&d, msg_id) || dec_str(&d, err, err_len) || d.left != 0)
        return STORE_E_CORRUPT;
    return 0;
}

/* Copy n bytes NUL-terminated into a fixed buffer or a malloc'd one. */
static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, p, n);
        c[n] = '\0';
    }
    return c;
}

int store_queue_list(struct store *s, uint32_t dest_id, bool dead, uint64_t offset,
                     uint64_t limit, uint64_t *total, store_queue_fn fn, void *ctx)
{
    int db = dead ? DB_DEAD : DB_OUTBOX;
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    uint8_t kb[12];
    MDB_val k = { 12, kb }, v;
    uint64_t count = 0;
    bool stop = false;
    outbox_key(kb, dest_id, 0);
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[db], &c))) {
        rc = fail(s, rc, db_names[db]);
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), count++) {
        if (k.mv_size != 12 || get_be32(k.mv_data) != dest_id)
            break;
        if (stop || count < offset || count - offset >= limit)
            continue;
        struct store_queue_item it = { .seq = get_be64((uint8_t *)k.mv_data + 4) };
        const uint8_t *e;
        size_t el;
        int bad = dead ? dec_dead(&v, &it.msg_id, &e, &el)
                       : dec_outbox(&v, &it.msg_id, &it.attempts, &it.next_attempt_ms, &e, &el);
        if (bad) {
            snprintf(tl_err, sizeof tl_err, "store %s: %s entry %u/%llu does not decode",
                     s->dir, db_names[db], dest_id, (unsigned long long)it.seq);
            rc = STORE_E_CORRUPT;
            goto out;
        }
        const uint8_t *mp[3];
        size_t ml[3];
        msg_fields(txn, s, it.msg_id, &it.received_ms, mp, ml, NULL, NULL);
        char *strs[4] = { dup_bytes(e, el), dup_bytes(mp[0], ml[0]), dup_bytes(mp[1], ml[1]),
                          dup_bytes(mp[2], ml[2]) };
        if (!strs[0] || !strs[1] || !strs[2] || !strs[3])
            rc = STORE_E_NOMEM;
        else {
            it.error = strs[0], it.control_id = strs[1], it.code = strs[2], it.trigger = strs[3];
            stop = fn(ctx, &it) != 0;
        }
        for (int i = 0; i < 4; i++)
            free(strs[i]);
        if (rc)
            goto out;
    }
    if (rc && rc != MDB_NOTFOUND) {
        rc = fail(s, rc, db_names[db]);
        goto out;
    }
    rc = 0;
    if (total)
        *total = count;
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

/* Decode message id's record from v and hand it to fn. */
static int scan_one(struct store *s, uint64_t id, const MDB_val *v, store_msg_fn fn, void *ctx,
                    bool *stop)
{
    struct store_msg m;
    void *owner = NULL;
    int rc = dec_msg(v, &m, &owner);
    if (rc == STORE_E_CORRUPT) {
        snprintf(tl_err, sizeof tl_err, "store %s: messages record %llu does not decode",
                 s->dir, (unsigned long long)id);
        return rc;
    }
    if (rc)
        return rc;
    *stop = fn(ctx, id, &m) != 0;
    free(owner);
    return 0;
}

int store_msg_scan(struct store *s, const char *nhs_number, uint64_t max_scan,
                   store_msg_fn fn, void *ctx, uint64_t *scanned, bool *more)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k, v;
    uint64_t n = 0;
    bool stop = false, left = false;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    int db = nhs_number ? DB_BY_PATIENT : DB_MESSAGES;
    if ((rc = mdb_cursor_open(txn, s->dbi[db], &c))) {
        rc = fail(s, rc, db_names[db]);
        goto out;
    }
    if (nhs_number) {
        if (!is_nhs_number(nhs_number)) {
            rc = STORE_E_INVAL;
            goto out;
        }
        /* the entry after this patient's last, then backwards */
        uint8_t pk[NHS_LEN + 8];
        memcpy(pk, nhs_number, NHS_LEN);
        memset(pk + NHS_LEN, 0xff, 8);
        k = (MDB_val){ sizeof pk, pk };
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == 0)
            rc = mdb_cursor_get(c, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
        for (; rc == 0 && !stop; rc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
            if (k.mv_size != NHS_LEN + 8 || memcmp(k.mv_data, nhs_number, NHS_LEN) != 0)
                break;
            if (max_scan && n >= max_scan) {
                left = true;
                break;
            }
            n++;
            uint64_t id = get_be64((uint8_t *)k.mv_data + NHS_LEN);
            uint8_t kb[8];
            put_be64(kb, id);
            MDB_val mk = { 8, kb }, mv;
            int r2 = mdb_get(txn, s->dbi[DB_MESSAGES], &mk, &mv);
            if (r2 == MDB_NOTFOUND)
                continue;   /* pruned */
            if (r2) {
                rc = fail(s, r2, "messages");
                goto out;
            }
            if ((r2 = scan_one(s, id, &mv, fn, ctx, &stop))) {
                rc = r2;
                goto out;
            }
        }
    } else {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_LAST); rc == 0 && !stop;
             rc = mdb_cursor_get(c, &k, &v, MDB_PREV)) {
            if (max_scan && n >= max_scan) {
                left = true;
                break;
            }
            n++;
            if (k.mv_size != 8)
                continue;
            int r2 = scan_one(s, get_be64(k.mv_data), &v, fn, ctx, &stop);
            if (r2) {
                rc = r2;
                goto out;
            }
        }
    }
    if (rc && rc != MDB_NOTFOUND) {
        rc = fail(s, rc, db_names[db]);
        goto out;
    }
    rc = 0;
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    if (scanned)
        *scanned = n;
    if (more)
        *more = left;
    return rc;
}

int store_has_payload(struct store *s, uint32_t dest_id, uint64_t msg_id, bool *yes)
{
    MDB_txn *txn;
    uint8_t pk[12];
    outbox_key(pk, dest_id, msg_id);
    MDB_val k = { 12, pk }, v;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    rc = mdb_get(txn, s->dbi[DB_PAYLOADS], &k, &v);
    *yes = rc == 0;
    end_read(s, txn);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : fail(s, rc, "payloads");
}

/* Where msg_id stands in dest_id's outbox or dead letters (the last
 * entry for it: a replay may queue a message twice). */
static int find_entry(struct store *s, MDB_txn *txn, int db, uint32_t dest_id, uint64_t msg_id,
                      struct store_delivery *d, char **err)
{
    MDB_cursor *c;
    uint8_t kb[12];
    MDB_val k = { 12, kb }, v;
    outbox_key(kb, dest_id, 0);
    int rc = mdb_cursor_open(txn, s->dbi[db], &c);
    if (rc)
        return fail(s, rc, db_names[db]);
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || get_be32(k.mv_data) != dest_id)
            break;
        uint64_t m = 0;
        uint32_t attempts = 0;
        const uint8_t *e = NULL;
        size_t el = 0;
        int bad = db == DB_DEAD ? dec_dead(&v, &m, &e, &el)
                                : dec_outbox(&v, &m, &attempts, NULL, &e, &el);
        if (bad || m != msg_id)
            continue;
        char *copy = dup_bytes(e, el);
        if (!copy) {
            mdb_cursor_close(c);
            return STORE_E_NOMEM;
        }
        free(*err);
        *err = copy;
        d->status = db == DB_DEAD ? STORE_DELIVERY_DEAD : STORE_DELIVERY_QUEUED;
        d->seq = get_be64((uint8_t *)k.mv_data + 4);
        d->attempts = attempts;
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : fail(s, rc, db_names[db]);
}

int store_msg_deliveries(struct store *s, uint64_t msg_id, store_delivery_fn fn, void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *c = NULL;
    MDB_val k = { sizeof META_DEST_PREFIX - 1, (void *)META_DEST_PREFIX }, v;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_META], &c))) {
        rc = fail(s, rc, "meta");
        goto out;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t pl = sizeof META_DEST_PREFIX - 1;
        if (k.mv_size < pl || memcmp(k.mv_data, META_DEST_PREFIX, pl) != 0)
            break;
        if (v.mv_size != 4)
            continue;
        uint32_t dest_id = get_be32(v.mv_data);
        uint8_t pk[12];
        outbox_key(pk, dest_id, msg_id);
        MDB_val pkv = { 12, pk }, pv;
        int r2 = mdb_get(txn, s->dbi[DB_PAYLOADS], &pkv, &pv);
        if (r2 == MDB_NOTFOUND)
            continue;
        if (r2) {
            rc = fail(s, r2, "payloads");
            goto out;
        }
        struct store_delivery d = { .dest_id = dest_id, .status = STORE_DELIVERY_DELIVERED };
        char *name = dup_bytes((uint8_t *)k.mv_data + pl, k.mv_size - pl), *err = NULL;
        const uint8_t *payload = (uint8_t *)pv.mv_data + 1;
        size_t plen = pv.mv_size ? pv.mv_size - 1 : 0;
        if (pv.mv_size == 1 && ((uint8_t *)pv.mv_data)[0] == FORMAT_SAME) {
            const uint8_t *mp[3], *raw;
            size_t ml[3], raw_len;
            msg_fields(txn, s, msg_id, NULL, mp, ml, &raw, &raw_len);
            payload = raw, plen = raw ? raw_len : 0;
        }
        char *pcopy = dup_bytes(payload ? payload : (const uint8_t *)"", plen);
        if (!name || !pcopy) {
            free(name), free(pcopy);
            rc = STORE_E_NOMEM;
            goto out;
        }
        if ((r2 = find_entry(s, txn, DB_OUTBOX, dest_id, msg_id, &d, &err)) == 0 &&
            d.status == STORE_DELIVERY_DELIVERED)
            r2 = find_entry(s, txn, DB_DEAD, dest_id, msg_id, &d, &err);
        int stop = 0;
        if (!r2) {
            d.dest = name, d.error = err ? err : "", d.payload = pcopy, d.len = plen;
            stop = fn(ctx, &d);
        }
        free(name), free(err), free(pcopy);
        if (r2) {
            rc = r2;
            goto out;
        }
        if (stop)
            break;
    }
    rc = rc == 0 || rc == MDB_NOTFOUND ? 0 : fail(s, rc, "meta");
out:
    if (c)
        mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}

/* Add an outbox entry for msg_id at dest_id's next seq. */
static int outbox_add(struct store_txn *t, uint32_t dest_id, uint64_t msg_id, uint64_t *seq_out)
{
    uint64_t seq, dead_seq;
    int rc;
    if ((rc = next_seq(t, DB_OUTBOX, dest_id, &seq)) ||
        (rc = next_seq(t, DB_DEAD, dest_id, &dead_seq)))
        return rc;
    if (dead_seq > seq)
        seq = dead_seq;
    uint8_t kb[12], vb[OUTBOX_VAL_MIN];
    outbox_key(kb, dest_id, seq);
    vb[0] = FORMAT;
    put_be64(vb + 1, msg_id);
    put_be32(vb + 9, 0);
    put_be64(vb + 13, 0);
    put_be32(vb + 21, 0);
    MDB_val k = { 12, kb }, v = { sizeof vb, vb };
    if ((rc = put(t, DB_OUTBOX, &k, &v, MDB_NOOVERWRITE)))
        return rc;
    if (seq_out)
        *seq_out = seq;
    return 0;
}

/* The dead letters of dest_id (or the one seq) as seq/msg id pairs, in order. */
static int dead_collect(struct store_txn *t, uint32_t dest_id, uint64_t only, uint64_t **pairs,
                        size_t *n)
{
    struct store *s = t->s;
    MDB_cursor *c;
    uint8_t kb[12];
    MDB_val k = { 12, kb }, v;
    size_t cap = 0;
    *pairs = NULL;
    *n = 0;
    outbox_key(kb, dest_id, only);
    int rc = mdb_cursor_open(t->txn, s->dbi[DB_DEAD], &c);
    if (rc)
        return fail(s, rc, "dead");
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || get_be32(k.mv_data) != dest_id)
            break;
        uint64_t seq = get_be64((uint8_t *)k.mv_data + 4), msg_id;
        const uint8_t *e;
        size_t el;
        if (only && seq != only)
            break;
        if (dec_dead(&v, &msg_id, &e, &el)) {
            snprintf(tl_err, sizeof tl_err, "store %s: dead entry %u/%llu does not decode",
                     s->dir, dest_id, (unsigned long long)seq);
            rc = STORE_E_CORRUPT;
            break;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(*pairs, ncap * 2 * sizeof *p);
            if (!p) {
                rc = STORE_E_NOMEM;
                break;
            }
            *pairs = p;
            cap = ncap;
        }
        (*pairs)[2 * *n] = seq;
        (*pairs)[2 * *n + 1] = msg_id;
        (*n)++;
        if (only)
            break;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    else if (rc > 0)
        rc = fail(s, rc, "dead");
    if (!rc && only && *n == 0) {
        snprintf(tl_err, sizeof tl_err, "store %s: no dead letter %u/%llu", s->dir, dest_id,
                 (unsigned long long)only);
        rc = STORE_E_NOT_FOUND;
    }
    if (rc) {
        free(*pairs);
        *pairs = NULL;
        *n = 0;
    }
    return rc;
}

static int dead_move(struct store_txn *t, uint32_t dest_id, uint64_t seq, uint64_t *n,
                     bool requeue)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    uint64_t *pairs;
    size_t count;
    if ((rc = dead_collect(t, dest_id, seq, &pairs, &count)))
        return rc;
    for (size_t i = 0; i < count && !rc; i++) {
        uint8_t kb[12];
        outbox_key(kb, dest_id, pairs[2 * i]);
        MDB_val k = { 12, kb };
        /* delete first: the new seq is then one past the outbox's and the
           remaining dead letters' highest, and the order is kept */
        if (!(rc = del(t, DB_DEAD, &k)) && requeue)
            rc = outbox_add(t, dest_id, pairs[2 * i + 1], NULL);
    }
    free(pairs);
    if (!rc && n)
        *n = count;
    return rc;
}

int store_dead_requeue(struct store_txn *t, uint32_t dest_id, uint64_t seq, uint64_t *n)
{
    return dead_move(t, dest_id, seq, n, true);
}

int store_dead_purge(struct store_txn *t, uint32_t dest_id, uint64_t seq, uint64_t *n)
{
    return dead_move(t, dest_id, seq, n, false);
}

int store_replay(struct store_txn *t, const char *dest, uint64_t msg_id, uint64_t *seq)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    struct store *s = t->s;
    uint8_t kb[8];
    put_be64(kb, msg_id);
    MDB_val mk = { 8, kb }, mv;
    rc = mdb_get(t->txn, s->dbi[DB_MESSAGES], &mk, &mv);
    if (rc == MDB_NOTFOUND) {
        snprintf(tl_err, sizeof tl_err, "store %s: no message %llu", s->dir,
                 (unsigned long long)msg_id);
        return STORE_E_NOT_FOUND;
    }
    if (rc)
        return fail(s, rc, "messages");
    uint32_t id;
    if ((rc = store_dest_id(t, dest, &id)))
        return rc;
    uint8_t pk[12];
    outbox_key(pk, id, msg_id);
    MDB_val pkv = { 12, pk }, pv;
    rc = mdb_get(t->txn, s->dbi[DB_PAYLOADS], &pkv, &pv);
    if (rc == MDB_NOTFOUND) {
        /* never routed there: the message's own bytes */
        uint8_t same = FORMAT_SAME;
        MDB_val sv = { 1, &same };
        if ((rc = put(t, DB_PAYLOADS, &pkv, &sv, 0)))
            return rc;
    } else if (rc) {
        return fail(s, rc, "payloads");
    }
    return outbox_add(t, id, msg_id, seq);
}

/* ------------------------------------------------------------ objections */

static const char META_OBJECTION_PREFIX[] = "objection:";

int store_objection_put(struct store_txn *t, const char *nhs, const char *purpose,
                        bool objected)
{
    int rc = txn_check(t);
    if (rc)
        return rc;
    size_t pn = strlen(purpose ? purpose : ""), nn = strlen(nhs ? nhs : "");
    if (pn == 0 || pn > 64 || nn != 10 || strchr(purpose, ':'))
        return fail_code(t->s, STORE_E_INVAL, "an objection: a purpose of 1 to 64 bytes "
                         "and a 10-digit NHS number");
    char key[sizeof META_OBJECTION_PREFIX + 64 + 1 + 10];
    int kn = snprintf(key, sizeof key, "%s%s:%s", META_OBJECTION_PREFIX, purpose, nhs);
    uint8_t b = objected ? 1 : 0;
    MDB_val k = { (size_t)kn, key }, v = { 1, &b };
    return put(t, DB_META, &k, &v, 0);
}

int store_objections_each(struct store *s, store_objection_fn fn, void *ctx)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = begin_read(s, &txn);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_META], &c))) {
        end_read(s, txn);
        return fail(s, rc, "meta");
    }
    const size_t pl = sizeof META_OBJECTION_PREFIX - 1;
    MDB_val k = { pl, (void *)META_OBJECTION_PREFIX }, v;
    int r = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    rc = 0;
    while (r == 0 && k.mv_size > pl && memcmp(k.mv_data, META_OBJECTION_PREFIX, pl) == 0) {
        char key[sizeof META_OBJECTION_PREFIX + 64 + 1 + 10];
        if (k.mv_size >= sizeof key || v.mv_size != 1) {
            rc = fail_code(s, STORE_E_CORRUPT, "meta objection: entry has the wrong size");
            break;
        }
        memcpy(key, (const char *)k.mv_data + pl, k.mv_size - pl);
        key[k.mv_size - pl] = '\0';
        char *colon = strrchr(key, ':');
        if (!colon) {
            rc = fail_code(s, STORE_E_CORRUPT, "meta objection: entry without a number");
            break;
        }
        *colon = '\0';
        if ((rc = fn(ctx, colon + 1, key, *(const uint8_t *)v.mv_data != 0)))
            break;
        r = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    if (!rc && r && r != MDB_NOTFOUND)
        rc = fail(s, r, "meta");
    mdb_cursor_close(c);
    end_read(s, txn);
    return rc;
}
