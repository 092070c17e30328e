/*
 * test_retention.c: the store's side of retention and the audit trail:
 * pruning keeps what is queued or dead-lettered and removes delivered and
 * unrouted messages with their indexes; audit records are never pruned;
 * store_audit_check names the first broken record and why; the tail;
 * read-only opening.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"

#define OLD   1000000ull        /* received long ago */
#define YOUNG 9000000ull
#define CUTOFF 5000000ull

struct fx {
    char base[64];
    char dir[96];
    struct store *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->base, "/tmp/hl7ret-XXXXXX");
    if (!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
    struct store_opts o = { .dir = f->dir };
    char detail[256];
    if (store_open(&o, &f->s, detail, sizeof detail))
        return -1;
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    int rc = nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static uint64_t count(struct store *s, const char *db)
{
    uint64_t n = UINT64_MAX;
    assert_int_equal(store_count(s, db, &n), 0);
    return n;
}

/* A message from PAS with control id ctrl, its dedup entry, queued for
 * each destination in dests (NULL-terminated, may be empty). */
static uint64_t put(struct store_txn *t, uint64_t received, const char *ctrl,
                    const char *nhs, const char *const *dests)
{
    struct store_msg m = {
        .received_ms = received, .state = STORE_MSG_ROUTED, .source = "rlh-pas",
        .peer = "127.0.0.1:1", .kind = "hl7v2", .code = "ADT", .trigger = "A01",
        .control_id = ctrl, .sending_app = "PAS", .sending_fac = "RLH", .nhs_number = nhs,
        .raw = "MSH|x", .raw_len = 5,
    };
    size_t klen;
    char *key = store_dedup_key("rlh-pas", "PAS", 3, "RLH", 3, ctrl, strlen(ctrl), &klen);
    uint64_t id;
    assert_int_equal(store_put_message(t, &m, key, klen, "ACK", 3, &id), 0);
    free(key);
    for (size_t i = 0; dests && dests[i]; i++)
        assert_int_equal(store_enqueue(t, dests[i], id, "payload", 7, NULL), 0);
    struct store_audit a = { .time_ms = received, .actor = "source=rlh-pas",
                             .action = "accept", .subject = "msg", .outcome = "AA" };
    assert_int_equal(store_audit_append(t, &a, NULL), 0);
    return id;
}

static bool has_dedup(struct store_txn *t, const char *ctrl, uint64_t *id)
{
    size_t klen;
    char *key = store_dedup_key("rlh-pas", "PAS", 3, "RLH", 3, ctrl, strlen(ctrl), &klen);
    int rc = store_dedup_get(t, key, klen, id, NULL, NULL);
    free(key);
    return rc == 0;
}

static struct store_prune_counts prune_all(struct store *s, size_t batch, uint64_t cutoff)
{
    struct store_prune *p;
    struct store_prune_counts c = { 0 };
    bool done = false;
    assert_int_equal(store_prune_new(s, &p), 0);
    for (int i = 0; !done && i < 10000; i++)
        assert_int_equal(store_prune_scan(p, 2, &done), 0);
    assert_true(done);
    done = false;
    for (int i = 0; !done && i < 10000; i++) {
        struct store_txn *t;
        assert_int_equal(store_begin(s, &t), 0);
        assert_int_equal(store_prune_messages(t, p, cutoff, batch, &c, &done), 0);
        assert_int_equal(store_commit(t), 0);
    }
    assert_true(done);
    done = false;
    for (int i = 0; !done && i < 10000; i++) {
        struct store_txn *t;
        assert_int_equal(store_begin(s, &t), 0);
        assert_int_equal(store_prune_errors(t, p, cutoff, batch, &c, &done), 0);
        assert_int_equal(store_commit(t), 0);
    }
    store_prune_free(p);
    return c;
}

static void test_prune_keeps_queued_and_dead(void **state)
{
    struct fx *f = *state;
    struct store *s = f->s;
    struct store_txn *t;
    static const char *const a[] = { "a", NULL }, *const ab[] = { "a", "b", NULL };
    assert_int_equal(store_begin(s, &t), 0);
    uint64_t delivered = put(t, OLD, "C1", "9434765919", ab);   /* 1: delivered to both */
    uint64_t queued = put(t, OLD, "C2", "9434765919", ab);      /* 2: b still queued */
    uint64_t dead = put(t, OLD, "C3", NULL, a);                 /* 3: dead letter on a */
    uint64_t unrouted = put(t, OLD, "C4", "9434765919", NULL);  /* 4: routed nowhere */
    uint64_t young = put(t, YOUNG, "C5", "9434765919", a);      /* 5: young, delivered */
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(delivered, 1);
    assert_int_equal(young, 5);

    /* deliver: a gets 1, 2 and 5 (seqs 1, 2, 4); b gets 1 (seq 1); a's 3 dies */
    uint32_t ida, idb;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dest_id(t, "a", &ida), 0);
    assert_int_equal(store_dest_id(t, "b", &idb), 0);
    assert_int_equal(store_outbox_delivered(t, ida, 1), 0);
    assert_int_equal(store_outbox_delivered(t, ida, 2), 0);
    assert_int_equal(store_outbox_dead(t, ida, 3, "AR from subscriber"), 0);
    assert_int_equal(store_outbox_delivered(t, ida, 4), 0);
    assert_int_equal(store_outbox_delivered(t, idb, 1), 0);
    /* a refused message */
    struct store_err e = { .received_ms = OLD, .source = "rlh-pas", .reason = "bad",
                           .ack_code = "AR", .raw = "x", .raw_len = 1 };
    assert_int_equal(store_put_error(t, &e, NULL), 0);
    e.received_ms = YOUNG;
    assert_int_equal(store_put_error(t, &e, NULL), 0);
    assert_int_equal(store_commit(t), 0);

    uint64_t audit_before = count(s, "audit");
    assert_int_equal(count(s, "payloads"), 6);
    assert_int_equal(count(s, "by_patient"), 4);

    struct store_prune_counts c = prune_all(s, 1, CUTOFF);
    assert_int_equal(c.messages, 2);         /* 1 and 4 */
    assert_int_equal(c.kept, 2);             /* 2 and 3 */
    assert_int_equal(c.payloads, 2);         /* 1's to a and b */
    assert_int_equal(c.errors, 1);

    struct store_msg m;
    void *owner;
    assert_int_equal(store_get_message(s, delivered, &m, &owner), STORE_E_NOT_FOUND);
    assert_int_equal(store_get_message(s, unrouted, &m, &owner), STORE_E_NOT_FOUND);
    uint64_t keep[] = { queued, dead, young };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(store_get_message(s, keep[i], &m, &owner), 0);
        free(owner);
    }
    assert_int_equal(count(s, "messages"), 3);
    assert_int_equal(count(s, "payloads"), 4);
    assert_int_equal(count(s, "by_patient"), 2);     /* 2 and 5 */
    assert_int_equal(count(s, "dedup"), 3);
    assert_int_equal(count(s, "outbox"), 1);
    assert_int_equal(count(s, "dead"), 1);
    assert_int_equal(count(s, "errors"), 1);
    assert_int_equal(count(s, "audit"), audit_before);   /* never pruned */
    uint64_t checked;
    assert_int_equal(store_audit_verify(s, &checked, NULL), 0);

    assert_int_equal(store_begin(s, &t), 0);
    uint64_t id;
    assert_false(has_dedup(t, "C1", &id));
    assert_true(has_dedup(t, "C2", &id));
    store_abort(t);

    /* Once delivered, the queued one goes too. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_outbox_delivered(t, idb, 2), 0);
    assert_int_equal(store_commit(t), 0);
    c = prune_all(s, 100, CUTOFF);
    assert_int_equal(c.messages, 1);
    assert_int_equal(c.kept, 1);
    assert_int_equal(count(s, "messages"), 2);
}

/* A later duplicate's dedup entry (same key, newer id) outlives the old one. */
static void test_prune_keeps_newer_dedup(void **state)
{
    struct fx *f = *state;
    struct store_txn *t;
    assert_int_equal(store_begin(f->s, &t), 0);
    put(t, OLD, "SAME", NULL, NULL);
    uint64_t second = put(t, YOUNG, "SAME", NULL, NULL);
    assert_int_equal(store_commit(t), 0);
    struct store_prune_counts c = prune_all(f->s, 10, CUTOFF);
    assert_int_equal(c.messages, 1);
    uint64_t id = 0;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_true(has_dedup(t, "SAME", &id));
    assert_int_equal(id, second);
    store_abort(t);
}

/* Entries enqueued after the scan are seen by the next step. */
static void test_prune_sees_late_enqueue(void **state)
{
    struct fx *f = *state;
    struct store *s = f->s;
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    uint64_t id = put(t, OLD, "L1", NULL, NULL);
    assert_int_equal(store_commit(t), 0);
    struct store_prune *p;
    bool done;
    assert_int_equal(store_prune_new(s, &p), 0);
    assert_int_equal(store_prune_scan(p, 0, &done), 0);
    assert_true(done);
    assert_int_equal(store_begin(s, &t), 0);     /* a replay, say */
    assert_int_equal(store_enqueue(t, "late", id, "x", 1, NULL), 0);
    assert_int_equal(store_commit(t), 0);
    struct store_prune_counts c = { 0 };
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_prune_messages(t, p, CUTOFF, 10, &c, &done), 0);
    assert_int_equal(store_commit(t), 0);
    assert_true(done);
    assert_int_equal(c.messages, 0);
    assert_int_equal(c.kept, 1);
    store_prune_free(p);
}

/* ------------------------------------------------------------ audit */

static void put_chain(struct store *s, int n)
{
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    for (int i = 1; i <= n; i++) {
        char subj[32];
        snprintf(subj, sizeof subj, "msg=%d", i);
        struct store_audit a = { .time_ms = 1780000000000ull + (uint64_t)i,
                                 .actor = "source=rlh-pas peer=127.0.0.1:1",
                                 .action = "accept", .subject = subj, .outcome = "AA",
                                 .details = "type=ADT^A01" };
        assert_int_equal(store_audit_append(t, &a, NULL), 0);
    }
    assert_int_equal(store_commit(t), 0);
}

static void raw_edit(const struct fx *f, uint64_t seq, size_t at, bool remove_it)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t kb[8];
    for (int i = 7; i >= 0; i--)
        kb[i] = (uint8_t)(seq >> (8 * (7 - i)));
    MDB_val k = { 8, kb }, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "audit", 0, &dbi), 0);
    if (remove_it) {
        assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    } else {
        assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
        uint8_t copy[512];
        assert_true(v.mv_size <= sizeof copy);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[at] ^= 0x01;
        MDB_val nv = { v.mv_size, copy };
        assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static struct store *reopen_ro(struct fx *f)
{
    store_close(f->s);
    f->s = NULL;
    struct store_opts o = { .dir = f->dir, .read_only = true };
    char detail[256];
    assert_int_equal(store_open(&o, &f->s, detail, sizeof detail), 0);
    return f->s;
}

static void test_audit_check_reasons(void **state)
{
    struct fx *f = *state;
    put_chain(f->s, 6);
    struct store_audit_report r;
    assert_int_equal(store_audit_check(f->s, &r), 0);
    assert_int_equal(r.checked, 6);
    assert_int_equal(r.head_seq, 6);
    assert_int_equal(r.fault, STORE_AUDIT_INTACT);

    store_close(f->s);
    f->s = NULL;
    raw_edit(f, 4, 20, false);          /* a byte of the actor */
    struct store *s = reopen_ro(f);
    assert_int_equal(store_audit_check(s, &r), STORE_E_CORRUPT);
    assert_int_equal(r.bad_seq, 4);
    assert_int_equal(r.checked, 3);
    assert_int_equal(r.fault, STORE_AUDIT_HASH);
    assert_non_null(strstr(r.why, "content hash mismatch"));

    store_close(f->s);
    f->s = NULL;
    raw_edit(f, 4, 20, false);          /* back */
    raw_edit(f, 2, 0, true);            /* a gap */
    s = reopen_ro(f);
    assert_int_equal(store_audit_check(s, &r), STORE_E_CORRUPT);
    assert_int_equal(r.bad_seq, 2);
    assert_int_equal(r.fault, STORE_AUDIT_GAP);
    assert_non_null(strstr(r.why, "record 2 is missing"));
    /* a read-only store refuses writes */
    struct store_txn *t;
    assert_int_not_equal(store_begin(s, &t), 0);
}

static int collect(void *ctx, uint64_t seq, const struct store_audit *a, const uint8_t h[32])
{
    char *out = ctx;
    (void)h;
    size_t n = strlen(out);
    snprintf(out + n, 256 - n, "%llu:%s ", (unsigned long long)seq, a->subject);
    return 0;
}

static void test_audit_tail(void **state)
{
    struct fx *f = *state;
    char out[256] = "";
    assert_int_equal(store_audit_tail(f->s, 3, collect, out), 0);
    assert_string_equal(out, "");
    put_chain(f->s, 5);
    assert_int_equal(store_audit_tail(f->s, 3, collect, out), 0);
    assert_string_equal(out, "3:msg=3 4:msg=4 5:msg=5 ");
    out[0] = '\0';
    assert_int_equal(store_audit_tail(f->s, 0, collect, out), 0);
    assert_string_equal(out, "1:msg=1 2:msg=2 3:msg=3 4:msg=4 5:msg=5 ");
    out[0] = '\0';
    assert_int_equal(store_audit_tail(f->s, 50, collect, out), 0);
    assert_string_equal(out, "1:msg=1 2:msg=2 3:msg=3 4:msg=4 5:msg=5 ");
}

static void test_read_only_missing(void **state)
{
    struct fx *f = *state;
    struct store_opts o = { .dir = "/nonexistent/hl7ret", .read_only = true };
    struct store *s = NULL;
    char detail[256];
    assert_int_not_equal(store_open(&o, &s, detail, sizeof detail), 0);
    assert_null(s);
    assert_non_null(strstr(detail, "/nonexistent/hl7ret"));
    (void)f;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prune_keeps_queued_and_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_newer_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_sees_late_enqueue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_check_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_missing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
