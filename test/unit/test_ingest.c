/*
 * test_ingest.c: the ingest core over a real store and event loop: group
 * commit, ACK codes per DESIGN.md §2, duplicates, the error store, audit
 * records, map growth and a full store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "buf.h"
#include "hl7.h"
#include "ingest.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "store.h"

#define SAMPLES "../shared/samples"

struct reply {
    int                 order;
    enum ingest_outcome outcome;
    bool                committed;
    char               *ack;
    size_t              ack_len;
};

struct fixture {
    char               dir[64];
    struct event_base *base;
    struct store      *store;
    struct ingest     *in;
    struct reply       r[64];
    int                nreplies;
};

static void on_reply(void *ctx, const struct ingest_reply *rep)
{
    struct fixture *f = *(struct fixture **)ctx;
    struct reply *r = &f->r[f->nreplies];
    r->order = f->nreplies++;
    r->outcome = rep->outcome;
    r->committed = rep->committed;
    r->ack = malloc(rep->ack_len + 1);
    memcpy(r->ack, rep->ack, rep->ack_len);
    r->ack[rep->ack_len] = '\0';
    r->ack_len = rep->ack_len;
}

static struct fixture *F;   /* the reply context points here */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void open_store(struct fixture *f, uint64_t initial, uint64_t max)
{
    char detail[256];
    struct store_opts o = { .dir = f->dir, .map_initial = initial, .map_max = max };
    assert_int_equal(store_open(&o, &f->store, detail, sizeof detail), 0);
    assert_int_equal(ingest_new(f->base, f->store, &f->in), 0);
}

static int setup_sized(void **state, uint64_t initial, uint64_t max)
{
    struct fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/hl7b-ingest-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    open_store(f, initial, max);
    F = f;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_sized(state, 0, (uint64_t)256 << 20);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ingest_free(f->in);
    store_close(f->store);
    event_base_free(f->base);
    for (int i = 0; i < f->nreplies; i++)
        free(f->r[i].ack);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    struct buf b = { 0 };
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0)
        buf_append(&b, chunk, n);
    fclose(fp);
    return buf_take(&b, len);
}

static const struct ingest_origin ORIGIN = { "test-src", "127.0.0.1:5000", NULL };

static void submit(struct fixture *f, const char *bytes, size_t len)
{
    assert_int_equal(ingest_submit(f->in, &ORIGIN, NULL, bytes, len, on_reply, &F), 0);
}

static void submit_file(struct fixture *f, const char *name)
{
    char path[256];
    size_t len;
    snprintf(path, sizeof path, SAMPLES "/%s", name);
    char *b = slurp(path, &len);
    submit(f, b, len);
    free(b);
}

static void run_loop(struct fixture *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* MSA-1, MSA-2 and the ERR code of an ACK. */
static void ack_fields(const struct reply *r, char *msa1, char *msa2, char *errcode)
{
    struct hl7_msg *m;
    struct hl7_error e;
    assert_int_equal(hl7_parse(r->ack, r->ack_len, NULL, &m, &e), 0);
    struct hl7_span s;
    hl7_get_str(m, "MSA-1", &s);
    snprintf(msa1, 8, "%.*s", (int)s.len, s.p ? s.p : "");
    hl7_get_str(m, "MSA-2", &s);
    snprintf(msa2, 64, "%.*s", (int)s.len, s.p ? s.p : "");
    /* ERR-3.1 (v2.5+) or the code in ERR-1.4.1 (before) */
    if (hl7_get_str(m, "ERR-3.1", &s) != HL7_VALUE)
        hl7_get_str(m, "ERR-1.4.1", &s);
    snprintf(errcode, 8, "%.*s", (int)s.len, s.p ? s.p : "");
    hl7_free(m);
}

static uint64_t count(struct fixture *f, const char *db)
{
    uint64_t n = 0;
    assert_int_equal(store_count(f->store, db, &n), 0);
    return n;
}

/* Every message of one loop iteration: one commit, replies after it, in
 * submission order. */
static void test_group_commit(void **state)
{
    struct fixture *f = *state;
    const char *files[] = { "adt_a01.hl7", "adt_a03.hl7", "oru_r01.hl7", "adt_a40_merge.hl7",
                            "custom_delimiters.hl7", "v27_truncation.hl7",
                            "adt_a01_lf.hl7", "adt_a01_crlf.hl7", "mdm_t02_letter.hl7",
                            "adt_a08_escapes.hl7", "stray_escape.hl7" };
    const char *ctrl[] = { "RLH000000123", "RLH000000187", "UCLH-LAB-55501", "GSTT-000991",
                           "H85026-19", "LNWH-31-0007", "STG-4410", "STG-4411",
                           "BARTS-DOC-3301", "KCH-77812", "RLH-BAD-4" };
    size_t n = sizeof files / sizeof files[0];
    for (size_t i = 0; i < n; i++)
        submit_file(f, files[i]);
    assert_int_equal(f->nreplies, 0);            /* nothing before the commit */
    assert_int_equal(ingest_pending(f->in), n);
    run_loop(f);
    assert_int_equal(f->nreplies, (int)n);
    struct ingest_stats st;
    ingest_get_stats(f->in, &st);
    assert_int_equal(st.commits, 1);
    assert_int_equal(st.committed_msgs, n);
    assert_int_equal(st.accepted, n);
    for (size_t i = 0; i < n; i++) {
        char a1[8], a2[64], ec[8];
        ack_fields(&f->r[i], a1, a2, ec);
        assert_int_equal(f->r[i].outcome, INGEST_ACCEPTED);
        assert_true(f->r[i].committed);
        assert_string_equal(a2, ctrl[i]);
        /* MSH-15/16 present: enhanced mode, CA; otherwise AA */
        bool enhanced = strstr(files[i], "a01.hl7") || strstr(files[i], "a03") ||
                        strstr(files[i], "oru") || strstr(files[i], "a40") ||
                        strstr(files[i], "lf") || strstr(files[i], "crlf") ||
                        strstr(files[i], "mdm") || strstr(files[i], "escapes");
        assert_string_equal(a1, enhanced ? "CA" : "AA");
        assert_string_equal(ec, "");
    }
    assert_int_equal(count(f, "messages"), n);
    assert_int_equal(count(f, "dedup"), n);
    assert_int_equal(count(f, "audit"), n);
    assert_int_equal(count(f, "errors"), 0);
    /* by_patient: every sample but none carries a 10-digit NHS number */
    assert_int_equal(count(f, "by_patient"), n);
}

/* The same message twice, in one batch and across batches: one stored
 * copy, the same ACK bytes each time. */
static void test_duplicates(void **state)
{
    struct fixture *f = *state;
    submit_file(f, "oru_r01.hl7");
    submit_file(f, "oru_r01.hl7");
    run_loop(f);
    submit_file(f, "oru_r01.hl7");
    run_loop(f);
    assert_int_equal(f->nreplies, 3);
    assert_int_equal(f->r[0].outcome, INGEST_ACCEPTED);
    assert_int_equal(f->r[1].outcome, INGEST_DUPLICATE);
    assert_int_equal(f->r[2].outcome, INGEST_DUPLICATE);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(f->r[i].ack_len, f->r[0].ack_len);
        assert_memory_equal(f->r[i].ack, f->r[0].ack, f->r[0].ack_len);
    }
    assert_int_equal(count(f, "messages"), 1);
    assert_int_equal(count(f, "audit"), 3);
    /* another source with the same MSH-3/4/10 is a different message */
    struct ingest_origin other = { "other-src", "127.0.0.1:6000", "CN=x" };
    size_t len;
    char *b = slurp(SAMPLES "/oru_r01.hl7", &len);
    assert_int_equal(ingest_submit(f->in, &other, NULL, b, len, on_reply, &F), 0);
    free(b);
    run_loop(f);
    assert_int_equal(f->r[3].outcome, INGEST_ACCEPTED);
    assert_int_equal(count(f, "messages"), 2);
}

/* Refusals: AR with the ERR code DESIGN.md §2 gives, kept in errors. */
static void test_refusals(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *bytes;
        const char *code, *err;
    } cases[] = {
        { "PID|1||9990000018^^^NHS^NH||SMITH^JOHN\rPV1|1|I\r", "AR", "100" },
        { "MSH|^~\r", "AR", "102" },
        { "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015|||RLH-BAD-1|P|2.4\rPID|1\r", "AR", "101" },
        { "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|RLH-BAD-3|P|9.9\rPID|1\r", "AR", "203" },
        { "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01|X1|Q|2.5\r", "AR", "202" },
        { "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01|X2|Q|2.5|||AL|NE\r", "CR", "202" },
        { "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01||P|2.5\r", "AR", "101" },
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        submit(f, cases[i].bytes, strlen(cases[i].bytes));
    run_loop(f);
    assert_int_equal(f->nreplies, (int)n);
    for (size_t i = 0; i < n; i++) {
        char a1[8], a2[64], ec[8];
        ack_fields(&f->r[i], a1, a2, ec);
        assert_int_equal(f->r[i].outcome, INGEST_REFUSED);
        assert_false(f->r[i].committed);
        assert_string_equal(a1, cases[i].code);
        assert_string_equal(ec, cases[i].err);
    }
    assert_int_equal(count(f, "errors"), n);
    assert_int_equal(count(f, "messages"), 0);
    assert_int_equal(count(f, "audit"), n);
    uint64_t checked = 0, bad = 0;
    assert_int_equal(store_audit_verify(f->store, &checked, &bad), 0);
    assert_int_equal(checked, n);
}

static void test_oversize(void **state)
{
    struct fixture *f = *state;
    const char head[] = "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01|BIG1|P|2.4\rPID|1||";
    assert_int_equal(ingest_refuse_oversize(f->in, &ORIGIN, head, sizeof head - 1, 9000000,
                                            4194304, on_reply, &F), 0);
    run_loop(f);
    assert_int_equal(f->nreplies, 1);
    char a1[8], a2[64], ec[8];
    ack_fields(&f->r[0], a1, a2, ec);
    assert_string_equal(a1, "AR");
    assert_string_equal(a2, "BIG1");
    assert_string_equal(ec, "207");
    assert_non_null(strstr(f->r[0].ack, "over this source's max_message_bytes of 4194304"));
    assert_int_equal(count(f, "errors"), 1);
}

/* A map far too small for the batch grows (and the batch is redone). */
static int setup_small(void **state)
{
    return setup_sized(state, (uint64_t)256 << 10, (uint64_t)64 << 20);
}

static void test_map_grows(void **state)
{
    struct fixture *f = *state;
    struct buf b = { 0 };
    for (int i = 0; i < 40; i++) {
        buf_reset(&b);
        buf_printf(&b, "MSH|^~\\&|LAB|X|LCR|Y|2026||ORU^R01|GROW%d|P|2.4\rOBX|1|TX|||", i);
        for (int k = 0; k < 20000; k++)
            buf_puts(&b, "abcdefgh");
        buf_puts(&b, "\r");
        submit(f, b.p, b.len);
    }
    buf_free(&b);
    run_loop(f);
    assert_int_equal(f->nreplies, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(f->r[i].outcome, INGEST_ACCEPTED);
    struct ingest_stats st;
    ingest_get_stats(f->in, &st);
    assert_true(st.map_grows >= 1);
    assert_int_equal(st.commits, 1);
    assert_int_equal(count(f, "messages"), 40);
}

/* At the ceiling: every message of the batch gets AR, nothing is kept, and
 * the broker goes on (a later, smaller batch can still be answered). */
static int setup_tiny(void **state)
{
    return setup_sized(state, (uint64_t)256 << 10, (uint64_t)256 << 10);
}

static void test_store_full(void **state)
{
    struct fixture *f = *state;
    struct buf b = { 0 };
    for (int i = 0; i < 4; i++) {
        buf_reset(&b);
        buf_printf(&b, "MSH|^~\\&|LAB|X|LCR|Y|2026||ORU^R01|FULL%d|P|2.4|||AL|NE\rOBX|1|TX|||", i);
        for (int k = 0; k < 20000; k++)
            buf_puts(&b, "abcdefgh");
        buf_puts(&b, "\r");
        submit(f, b.p, b.len);
    }
    buf_free(&b);
    run_loop(f);
    assert_int_equal(f->nreplies, 4);
    for (int i = 0; i < 4; i++) {
        char a1[8], a2[64], ec[8];
        ack_fields(&f->r[i], a1, a2, ec);
        assert_int_equal(f->r[i].outcome, INGEST_FAILED);
        assert_false(f->r[i].committed);
        assert_string_equal(a1, "CR");
        assert_string_equal(ec, "207");
    }
    assert_int_equal(count(f, "messages"), 0);
    submit_file(f, "custom_delimiters.hl7");
    run_loop(f);
    assert_int_equal(f->nreplies, 5);
    assert_int_equal(f->r[4].outcome, INGEST_ACCEPTED);
}

/* ingest_flush commits at once, without the loop. */
static void test_flush(void **state)
{
    struct fixture *f = *state;
    submit_file(f, "adt_a03.hl7");
    ingest_flush(f->in);
    assert_int_equal(f->nreplies, 1);
    assert_int_equal(count(f, "messages"), 1);
    run_loop(f);   /* nothing more happens */
    assert_int_equal(f->nreplies, 1);
}

/* Routing at ingest: each destination's payload and outbox entry go into
 * the message's transaction; no match is stored unrouted; a transform
 * error is stored with the error and answered AE/CE, or AA/CA where the
 * route accepts errors. */
static void test_routing(void **state)
{
    struct fixture *f = *state;
    struct config cfg;
    struct config_errors errs = { 0 };
    assert_int_equal(config_load("test/data/routes/ingest.conf", &cfg, &errs), CONFIG_OK);
    struct router *r = router_new(&cfg, NULL, NULL);
    assert_non_null(r);
    ingest_set_router(f->in, r);
    struct ingest_origin o = { "test-src", "127.0.0.1:5000", NULL };
    const char *files[] = { "adt_a01.hl7", "oru_r01.hl7", "mdm_t02_letter.hl7",
                            "custom_delimiters.hl7" };
    for (size_t i = 0; i < 4; i++) {
        char path[256];
        size_t len;
        snprintf(path, sizeof path, SAMPLES "/%s", files[i]);
        char *b = slurp(path, &len);
        assert_int_equal(ingest_submit(f->in, &o, NULL, b, len, on_reply, &F), 0);
        free(b);
    }
    /* a message no route takes */
    const char *siu = "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|2026||SIU^S12|S1|P|2.4\rSCH|1\r";
    assert_int_equal(ingest_submit(f->in, &o, NULL, siu, strlen(siu), on_reply, &F), 0);
    run_loop(f);
    assert_int_equal(f->nreplies, 5);
    char a1[8], a2[64], ec[8];
    ack_fields(&f->r[0], a1, a2, ec);
    assert_string_equal(a1, "CA");
    ack_fields(&f->r[1], a1, a2, ec);
    assert_string_equal(a1, "CE");              /* refused route: stored, CE */
    assert_string_equal(ec, "207");
    assert_non_null(strstr(f->r[1].ack, "oru-needs-a-site"));
    ack_fields(&f->r[2], a1, a2, ec);
    assert_string_equal(a1, "CA");              /* accepted with the error recorded */
    ack_fields(&f->r[3], a1, a2, ec);
    assert_string_equal(a1, "AA");
    ack_fields(&f->r[4], a1, a2, ec);
    assert_string_equal(a1, "AA");
    for (int i = 0; i < 5; i++)
        assert_int_equal(f->r[i].outcome, INGEST_ACCEPTED);

    /* two ADTs to two destinations each; nothing for the others */
    assert_int_equal(count(f, "messages"), 5);
    assert_int_equal(count(f, "outbox"), 4);
    assert_int_equal(count(f, "payloads"), 4);
    static const uint8_t want_state[] = { STORE_MSG_ROUTED, STORE_MSG_ERROR, STORE_MSG_ERROR,
                                          STORE_MSG_ROUTED, STORE_MSG_UNROUTED };
    for (uint64_t id = 1; id <= 5; id++) {
        struct store_msg m;
        void *owner;
        assert_int_equal(store_get_message(f->store, id, &m, &owner), 0);
        assert_int_equal(m.state, want_state[id - 1]);
        if (m.state == STORE_MSG_ERROR)
            assert_non_null(strstr(m.note, "needs-a-site"));
        else
            assert_string_equal(m.note, "");
        free(owner);
    }
    ingest_set_router(f->in, NULL);
    router_free(r);
    config_free(&cfg);
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_store_full, setup_tiny, teardown),
        cmocka_unit_test_setup_teardown(test_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
