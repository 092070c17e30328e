/*
 * test_ingest_itk.c: ITK requests through the ingest core over a real
 * store and event loop: the SimpleMessageResponse after the commit,
 * duplicates answered the same, SOAP faults for bad envelopes (kept in
 * the error store), the infrastructure ack stored and routed with its
 * request, the NHS number check, and oversize refusals.
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
#include "ingest.h"
#include "itk.h"
#include "config.h"
#include "log.h"
#include "route.h"
#include "store.h"

#define GOOD "../shared/samples/itk/discharge_summary_soap.xml"
#define BAD  "../shared/samples/itk/bad_manifest_mismatch.xml"
#define TRACKING "7D5B2A90-1C44-4F7B-8D3E-222222222222"

struct reply {
    enum ingest_outcome outcome;
    bool                committed, fault;
    struct buf          ack;
};

struct fixture {
    char               dir[64];
    struct event_base *base;
    struct store      *store;
    struct ingest     *in;
    struct reply       r[16];
    int                n;
};

static void on_reply(void *ctx, const struct ingest_reply *rep)
{
    struct fixture *f = ctx;
    assert_true(f->n < 16);
    struct reply *r = &f->r[f->n++];
    r->outcome = rep->outcome;
    r->committed = rep->committed;
    r->fault = rep->fault;
    buf_append(&r->ack, rep->ack, rep->ack_len);
    buf_putc(&r->ack, '\0');
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/hl7b-itk-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    char detail[256];
    struct store_opts o = { .dir = f->dir, .map_max = (uint64_t)256 << 20 };
    assert_int_equal(store_open(&o, &f->store, detail, sizeof detail), 0);
    assert_int_equal(ingest_new(f->base, f->store, &f->in), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    ingest_free(f->in);
    store_close(f->store);
    event_base_free(f->base);
    for (int i = 0; i < f->n; i++)
        buf_free(&f->r[i].ack);
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

static const struct ingest_origin ORIGIN = { "itk-in", "127.0.0.1:5000", "CN=epr.barts" };

static void submit(struct fixture *f, const char *bytes, size_t len,
                   const struct ingest_policy *p)
{
    assert_int_equal(ingest_submit_itk(f->in, &ORIGIN, p, bytes, len, on_reply, f), 0);
}

static void submit_file(struct fixture *f, const char *path, const struct ingest_policy *p)
{
    size_t len;
    char *b = slurp(path, &len);
    submit(f, b, len, p);
    free(b);
}

static uint64_t count(struct fixture *f, const char *db)
{
    uint64_t n = 0;
    assert_int_equal(store_count(f->store, db, &n), 0);
    return n;
}

static void run_loop(struct fixture *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* The good request: answered OK only after the commit, stored whole as
 * kind itk with its metadata; sent again, the same answer, stored once. */
static void test_accept_and_duplicate(void **state)
{
    struct fixture *f = *state;
    submit_file(f, GOOD, NULL);
    assert_int_equal(f->n, 0);              /* nothing before the commit */
    run_loop(f);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->r[0].outcome, INGEST_ACCEPTED);
    assert_true(f->r[0].committed);
    assert_false(f->r[0].fault);
    assert_non_null(strstr(f->r[0].ack.p, "SimpleMessageResponse"));
    assert_non_null(strstr(f->r[0].ack.p, ">OK<"));
    assert_non_null(strstr(f->r[0].ack.p, "6B0C3F0E-5A4D-4C3B-9E0A-111111111111"));

    struct store_msg m;
    void *owner;
    assert_int_equal(store_get_message(f->store, 1, &m, &owner), 0);
    assert_string_equal(m.kind, "itk");
    assert_string_equal(m.code, "ITK");
    assert_string_equal(m.trigger, "SendCDADocument-v2-0");
    assert_string_equal(m.control_id, TRACKING);
    assert_string_equal(m.nhs_number, "9990000018");
    assert_string_equal(m.sending_fac, "R1H");
    size_t len;
    char *raw = slurp(GOOD, &len);
    assert_int_equal(m.raw_len, len);
    assert_memory_equal(m.raw, raw, len);   /* the envelope kept whole */
    free(owner);
    assert_int_equal(count(f, "by_patient"), 1);
    assert_int_equal(count(f, "audit"), 1);

    /* the same tracking id again (a resend with a new MessageID) */
    char *again = strdup(raw);
    char *mid = strstr(again, "111111111111");
    memcpy(mid, "999999999999", 12);
    submit(f, again, len, NULL);
    run_loop(f);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->r[1].outcome, INGEST_DUPLICATE);
    assert_string_equal(f->r[1].ack.p, f->r[0].ack.p);
    assert_int_equal(count(f, "messages"), 1);
    free(again);
    free(raw);
}

/* A bad envelope: a SOAP fault naming the mismatch, in the error store. */
static void test_fault(void **state)
{
    struct fixture *f = *state;
    submit_file(f, BAD, NULL);
    const char *junk = "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">";
    submit(f, junk, strlen(junk), NULL);
    const char *bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\">"
                       "<!ENTITY b \"&a;&a;&a;&a;\">]><l>&b;</l>";
    submit(f, bomb, strlen(bomb), NULL);
    run_loop(f);
    assert_int_equal(f->n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->r[i].outcome, INGEST_REFUSED);
        assert_true(f->r[i].fault);
        assert_false(f->r[i].committed);
        assert_non_null(strstr(f->r[i].ack.p, "Fault"));
        assert_non_null(strstr(f->r[i].ack.p, "ToolkitErrorInfo"));
    }
    assert_non_null(strstr(f->r[0].ack.p, "manifest"));
    assert_non_null(strstr(f->r[1].ack.p, "1000"));
    assert_non_null(strstr(f->r[2].ack.p, "1002"));
    assert_int_equal(count(f, "messages"), 0);
    assert_int_equal(count(f, "errors"), 3);
    struct ingest_source_stats st;
    ingest_get_source_stats(f->in, "itk-in", &st);
    assert_int_equal(st.refused[INGEST_REFUSAL_ITK], 3);
}

/* infackrequested: an InfrastructureResponse stored with the request,
 * from the same source, naming this broker; none for a duplicate. */
static void test_infack(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ingest_set_ods_code(f->in, "X26"), 0);
    submit_file(f, GOOD, NULL);
    run_loop(f);
    submit_file(f, GOOD, NULL);
    run_loop(f);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->r[1].outcome, INGEST_DUPLICATE);
    assert_int_equal(count(f, "messages"), 2);
    struct store_msg m;
    void *owner;
    assert_int_equal(store_get_message(f->store, 2, &m, &owner), 0);
    assert_string_equal(m.kind, "itk");
    assert_string_equal(m.source, "itk-in");
    assert_string_equal(m.peer, "broker");
    assert_string_equal(m.trigger, "SendInfrastructureAck-v1-0");
    struct itk_envelope *env;
    assert_int_equal(itk_parse(m.raw, m.raw_len, NULL, &env, NULL), 0);
    assert_string_equal(env->service, ITK_SERVICE_INFACK);
    assert_int_equal(env->n_addresses, 1);
    assert_string_equal(env->addresses[0], "urn:nhs-uk:addressing:ods:R1H");
    assert_int_equal(env->n_payloads, 1);
    const char *p = (const char *)env->payloads[0].data;
    assert_non_null(strstr(p, "InfrastructureResponse"));
    assert_non_null(strstr(p, TRACKING));
    assert_non_null(strstr(p, "X26"));
    assert_non_null(strstr(p, "\"OK\""));
    itk_free(env);
    free(owner);
}

/* check_nhs_number: a CDA NHS number failing its check digit is refused
 * with fault 2006; without the setting it is taken. */
static void test_nhs_check(void **state)
{
    struct fixture *f = *state;
    size_t len;
    char *raw = slurp(GOOD, &len);
    char *nhs = strstr(raw, "extension=\"9990000018\"");
    assert_non_null(nhs);
    nhs[20] = '9';                           /* 9990000019: the check digit fails */
    struct ingest_policy on = { .check_nhs_number = true };
    submit(f, raw, len, &on);
    run_loop(f);
    assert_int_equal(f->r[0].outcome, INGEST_REFUSED);
    assert_true(f->r[0].fault);
    assert_non_null(strstr(f->r[0].ack.p, "2006"));
    assert_non_null(strstr(f->r[0].ack.p, "9990000019"));
    struct ingest_source_stats st;
    ingest_get_source_stats(f->in, "itk-in", &st);
    assert_int_equal(st.refused[INGEST_REFUSAL_NHS_NUMBER], 1);
    submit(f, raw, len, NULL);
    run_loop(f);
    assert_int_equal(f->r[1].outcome, INGEST_ACCEPTED);
    free(raw);
}

/* Over the source's limit: fault 1001, kept as an error, never stored
 * cut short as a message; the parser's own limit answers the same. */
static void test_oversize(void **state)
{
    struct fixture *f = *state;
    const char head[] = "<soap:Envelope";
    assert_int_equal(ingest_refuse_itk(f->in, &ORIGIN, head, sizeof head - 1, "1001",
                                       "the request is over 1024 bytes", on_reply, f), 0);
    size_t len;
    char *raw = slurp(GOOD, &len);
    struct ingest_policy small = { .max_message_bytes = 1024 };
    submit(f, raw, len, &small);
    run_loop(f);
    assert_int_equal(f->n, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->r[i].outcome, INGEST_REFUSED);
        assert_non_null(strstr(f->r[i].ack.p, "1001"));
    }
    assert_int_equal(count(f, "messages"), 0);
    assert_int_equal(count(f, "errors"), 2);
    free(raw);
}

/* Routed: the letter and its infrastructure ack each reach their
 * destination in the request's own transaction; a route whose transform
 * fails on the letter makes the answer fault 9100 (stored, not
 * delivered), the ack says Failure, and a resend gets the fault again. */
static void test_routed(void **state)
{
    struct fixture *f = *state;
    struct config cfg;
    struct config_errors errs = { 0 };
    assert_int_equal(config_load("test/data/routes/itk_ingest.conf", &cfg, &errs), CONFIG_OK);
    struct router *r = router_new(&cfg, NULL, NULL);
    assert_non_null(r);
    ingest_set_router(f->in, r);
    assert_int_equal(ingest_set_ods_code(f->in, cfg.broker.ods_code), 0);

    submit_file(f, GOOD, NULL);
    run_loop(f);
    assert_int_equal(f->r[0].outcome, INGEST_ACCEPTED);
    assert_false(f->r[0].fault);
    assert_int_equal(count(f, "messages"), 2);     /* the letter, its ack */
    assert_int_equal(count(f, "outbox"), 2);       /* one to gp, one to acks */
    assert_int_equal(count(f, "payloads"), 2);

    /* addressed to F84099: the HL7 step cannot edit ITK */
    size_t len;
    char *raw = slurp(GOOD, &len);
    char *a = strstr(raw, "ods:F84003");
    memcpy(a + 4, "F84099", 6);
    char *t = strstr(raw, "222222222222\"");
    memcpy(t, "333333333333", 12);
    submit(f, raw, len, NULL);
    run_loop(f);
    submit(f, raw, len, NULL);
    run_loop(f);
    assert_int_equal(f->n, 3);
    assert_int_equal(f->r[1].outcome, INGEST_ACCEPTED);
    assert_true(f->r[1].fault);
    assert_non_null(strstr(f->r[1].ack.p, "9100"));
    assert_non_null(strstr(f->r[1].ack.p, "itk-to-mdm"));
    assert_int_equal(f->r[2].outcome, INGEST_DUPLICATE);
    assert_true(f->r[2].fault);                     /* replayed as it was */
    assert_string_equal(f->r[2].ack.p, f->r[1].ack.p);
    assert_int_equal(count(f, "messages"), 4);
    assert_int_equal(count(f, "outbox"), 3);        /* only its ack is queued */
    struct store_msg m;
    void *owner;
    assert_int_equal(store_get_message(f->store, 3, &m, &owner), 0);
    assert_int_equal(m.state, STORE_MSG_ERROR);
    free(owner);
    assert_int_equal(store_get_message(f->store, 4, &m, &owner), 0);
    assert_non_null(memmem(m.raw, m.raw_len, "Failure", 7));
    free(owner);
    free(raw);
    ingest_set_router(f->in, NULL);
    router_free(r);
    config_free(&cfg);
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accept_and_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_infack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nhs_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
