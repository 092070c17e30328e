/*
 * test_ingest_nhs.c: the per-source NHS number check (ingest_policy
 * check_nhs_number) over a real store and event loop: a failing check
 * digit is refused AE (CE in enhanced mode) with ERR 102 at PID^1^3^rep,
 * kept in the error store, audited and counted under reason nhs_number;
 * a valid number, no number, or the setting off is accepted.
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
#include "store.h"

#define SAMPLES "../shared/samples"

struct reply {
    enum ingest_outcome outcome;
    char               *ack;
    size_t              ack_len;
};

struct fixture {
    char               dir[64];
    struct event_base *base;
    struct store      *store;
    struct ingest     *in;
    struct reply       r[16];
    int                nreplies;
};

static struct fixture *F;

static void on_reply(void *ctx, const struct ingest_reply *rep)
{
    struct fixture *f = *(struct fixture **)ctx;
    assert_true(f->nreplies < 16);
    struct reply *r = &f->r[f->nreplies++];
    r->outcome = rep->outcome;
    r->ack = malloc(rep->ack_len + 1);
    assert_non_null(r->ack);
    memcpy(r->ack, rep->ack, rep->ack_len);
    r->ack[rep->ack_len] = '\0';
    r->ack_len = rep->ack_len;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/hl7b-nhs-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->base = event_base_new();
    char detail[256];
    struct store_opts o = { .dir = f->dir, .map_max = (uint64_t)64 << 20 };
    assert_int_equal(store_open(&o, &f->store, detail, sizeof detail), 0);
    assert_int_equal(ingest_new(f->base, f->store, &f->in), 0);
    F = f;
    *state = f;
    return 0;
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

static const struct ingest_origin ORIGIN = { "pas", "127.0.0.1:5000", NULL };
static const struct ingest_policy CHECK = { .check_nhs_number = true };
static const struct ingest_policy NO_CHECK = { .check_nhs_number = false };

/* Submit one message and commit; returns its reply. */
static const struct reply *send1(struct fixture *f, const struct ingest_policy *p,
                                 const char *bytes, size_t len)
{
    int before = f->nreplies;
    assert_int_equal(ingest_submit(f->in, &ORIGIN, p, bytes, len, on_reply, &F), 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(f->nreplies, before + 1);
    return &f->r[before];
}

static const struct reply *send_str(struct fixture *f, const struct ingest_policy *p,
                                    const char *s)
{
    return send1(f, p, s, strlen(s));
}

/* The value at path in the ACK ("" when absent). */
static void ack_get(const struct reply *r, const char *path, char *out, size_t n)
{
    struct hl7_msg *m;
    struct hl7_error e;
    assert_int_equal(hl7_parse(r->ack, r->ack_len, NULL, &m, &e), 0);
    struct hl7_span s;
    hl7_get_str(m, path, &s);
    snprintf(out, n, "%.*s", (int)s.len, s.p ? s.p : "");
    hl7_free(m);
}

static void assert_ack(const struct reply *r, const char *path, const char *want)
{
    char v[512];
    ack_get(r, path, v, sizeof v);
    if (strcmp(v, want) != 0)
        fail_msg("%s is '%s', expected '%s' in\n%s", path, v, want, r->ack);
}

static void assert_ack_has(const struct reply *r, const char *path, const char *want)
{
    char v[512];
    ack_get(r, path, v, sizeof v);
    if (!strstr(v, want))
        fail_msg("%s is '%s', expected it to hold '%s'", path, v, want);
}

static uint64_t count(struct fixture *f, const char *db)
{
    uint64_t n = 0;
    assert_int_equal(store_count(f->store, db, &n), 0);
    return n;
}

static uint64_t refused_nhs(struct fixture *f)
{
    struct ingest_source_stats st;
    ingest_get_source_stats(f->in, ORIGIN.source, &st);
    return st.refused[INGEST_REFUSAL_NHS_NUMBER];
}

#define MSH25 "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|"

/* A valid number passes; so does a message with none, or an empty one. */
static void test_valid_and_absent_pass(void **state)
{
    struct fixture *f = *state;
    const struct reply *r;
    r = send_str(f, &CHECK, MSH25 "V1|P|2.5\rPID|1||9990000018^^^NHS^NH~RLH1^^^RLH^MR||SMITH\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    assert_ack(r, "MSA-1", "AA");
    r = send_str(f, &CHECK, MSH25 "V2|P|2.5\rPID|1||RLH1234567^^^RLH^MR||SMITH\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    r = send_str(f, &CHECK, MSH25 "V3|P|2.5\rEVN|A01\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    r = send_str(f, &CHECK, MSH25 "V4|P|2.5\rPID|1||^^^NHS^NH||SMITH\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    /* a local identifier that fails the check is not an NHS number */
    r = send_str(f, &CHECK, MSH25 "V5|P|2.5\rPID|1||9990000019^^^RLH^MR||SMITH\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    assert_int_equal(count(f, "messages"), 5);
    assert_int_equal(count(f, "errors"), 0);
    assert_int_equal(refused_nhs(f), 0);
}

/* A bad check digit: AE, ERR-2 PID^1^3^<repetition>, ERR-3 102, the text
 * says the expected and the given digit; error store, audit, counter. */
static void test_bad_check_digit_refused(void **state)
{
    struct fixture *f = *state;
    const char *msg = MSH25 "B1|P|2.5\rPID|1||RLH1234567^^^RLH^MR~9990000019^^^NHS^NH||SMITH\r";
    const struct reply *r = send_str(f, &CHECK, msg);
    assert_int_equal(r->outcome, INGEST_REFUSED);
    assert_ack(r, "MSA-1", "AE");
    assert_ack(r, "MSA-2", "B1");
    assert_ack(r, "ERR-2", "PID^1^3^2");
    assert_ack(r, "ERR-3.1", "102");
    assert_ack(r, "ERR-3.2", "Data type error");
    assert_ack(r, "ERR-3.3", "HL70357");
    assert_ack(r, "ERR-4", "E");
    char off[64];
    snprintf(off, sizeof off, "byte offset %zu", (size_t)(strstr(msg, "9990000019") - msg));
    assert_ack(r, "ERR-7", off);
    assert_ack(r, "ERR-8", "NHS number '9990000019' in PID-3 fails the modulus 11 check: "
                           "check digit expected 8, got 9");

    assert_int_equal(count(f, "messages"), 0);
    assert_int_equal(count(f, "errors"), 1);
    struct store_err e;
    void *owner = NULL;
    assert_int_equal(store_get_error(f->store, 1, &e, &owner), 0);
    assert_string_equal(e.ack_code, "AE");
    assert_string_equal(e.source, "pas");
    assert_non_null(strstr(e.reason, "check digit expected 8, got 9"));
    assert_int_equal(e.raw_len, strlen(msg));
    assert_memory_equal(e.raw, msg, e.raw_len);
    free(owner);

    assert_int_equal(count(f, "audit"), 1);
    uint64_t checked = 0;
    assert_int_equal(store_audit_verify(f->store, &checked, NULL), 0);
    assert_int_equal(checked, 1);

    assert_int_equal(refused_nhs(f), 1);
    struct ingest_source_stats st;
    ingest_get_source_stats(f->in, "pas", &st);
    assert_int_equal(st.received, 1);
    assert_int_equal(st.refused[INGEST_REFUSAL_NOT_HL7], 0);
    assert_string_equal(ingest_refusal_name(INGEST_REFUSAL_NHS_NUMBER), "nhs_number");
}

static int audit_last(void *ctx, uint64_t seq, const struct store_audit *a,
                      const uint8_t hash[32])
{
    (void)seq;
    (void)hash;
    char *out = ctx;
    snprintf(out, 512, "%s %s %s %s", a->action, a->outcome, a->subject, a->details);
    return 0;
}

static void test_audited_as_refusal(void **state)
{
    struct fixture *f = *state;
    send_str(f, &CHECK, MSH25 "A1|P|2.5\rPID|1||9990000019^^^NHS^NH||SMITH\r");
    char line[512] = "";
    assert_int_equal(store_audit_tail(f->store, 1, audit_last, line), 0);
    assert_non_null(strstr(line, "refuse AE error=1 "));
    assert_non_null(strstr(line, "check digit expected 8, got 9"));
}

/* The setting off (or no policy): the same message is accepted. */
static void test_setting_off_passes(void **state)
{
    struct fixture *f = *state;
    const char *bad = MSH25 "O1|P|2.5\rPID|1||9990000019^^^NHS^NH||SMITH\r";
    const struct reply *r = send_str(f, &NO_CHECK, bad);
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    assert_ack(r, "MSA-1", "AA");
    r = send_str(f, NULL, MSH25 "O2|P|2.5\rPID|1||9990000019^^^NHS^NH||SMITH\r");
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    assert_int_equal(count(f, "messages"), 2);
    assert_int_equal(refused_nhs(f), 0);
}

/* MSH-15/16 set: CE. */
static void test_enhanced_mode_ce(void **state)
{
    struct fixture *f = *state;
    const struct reply *r = send_str(
        f, &CHECK, MSH25 "E1|P|2.5|||AL|NE\rPID|1||9990000019^^^NHS^NH||SMITH\r");
    assert_int_equal(r->outcome, INGEST_REFUSED);
    assert_ack(r, "MSA-1", "CE");
    assert_ack(r, "ERR-2", "PID^1^3^1");
    assert_ack(r, "ERR-3.1", "102");
    assert_int_equal(refused_nhs(f), 1);
}

/* Before v2.5 the location is ERR-1 (no place for a repetition), the text
 * MSA-3: the sample bad_nhs_number.hl7 (v2.4, MSH-15 AL: CE). */
static void test_v24_sample(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(SAMPLES "/bad/bad_nhs_number.hl7", "rb");
    assert_non_null(fp);
    char b[4096];
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    const struct reply *r = send1(f, &CHECK, b, n);
    assert_int_equal(r->outcome, INGEST_REFUSED);
    assert_ack(r, "MSA-1", "CE");
    assert_ack(r, "MSA-2", "RLH-BAD-2");
    assert_ack(r, "MSA-3", "NHS number '9990000019' in PID-3 fails the modulus 11 check: "
                           "check digit expected 8, got 9");
    assert_ack(r, "ERR-1", "PID^1^3^102&Data type error&HL70357");
    /* the same sample from a source that does not check: accepted */
    r = send1(f, &NO_CHECK, b, n);
    assert_int_equal(r->outcome, INGEST_ACCEPTED);
    assert_ack(r, "MSA-1", "CA");
}

/* The other ways a number fails, and a hostile value quoted safely. */
static void test_failure_texts(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *pid3, *text;
    } cases[] = {
        { "999000001^^^NHS^NH", "NHS number '999000001' in PID-3 is 9 characters long: "
                                "an NHS number has 10 digits" },
        { "99900000AB^^^NHS", "NHS number '99900000AB' in PID-3 is not all digits: "
                              "an NHS number has only digits" },
        { "9990000000^^^NHS^NH", "NHS number '9990000000' in PID-3 fails the modulus 11 "
                                 "check: its first nine digits give a check digit of 10, "
                                 "which no NHS number has" },
        { "123456789012345678901234567890^^^NHS^NH",
          "NHS number '12345678901234567890...' in PID-3 is 30 characters long: "
          "an NHS number has 10 digits" },
        { "999\x01\x7f" "00001^^^NHS^NH", "NHS number '999??00001' in PID-3 is not all "
                                          "digits: an NHS number has only digits" },
    };
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < nc; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, MSH25 "F%zu|P|2.5\rPID|1||%s||SMITH\r", i, cases[i].pid3);
        const struct reply *r = send_str(f, &CHECK, msg);
        assert_int_equal(r->outcome, INGEST_REFUSED);
        assert_ack(r, "MSA-1", "AE");
        assert_ack(r, "ERR-2", "PID^1^3^1");
        assert_ack(r, "ERR-8", cases[i].text);
    }
    assert_int_equal(refused_nhs(f), nc);
    assert_int_equal(count(f, "errors"), nc);
    /* the other checks come first: no control id is still 101 */
    const struct reply *r = send_str(f, &CHECK, MSH25 "|P|2.5\rPID|1||9990000019^^^NHS^NH\r");
    assert_ack(r, "MSA-1", "AR");
    assert_ack_has(r, "ERR-3.1", "101");
    assert_int_equal(refused_nhs(f), nc);
}

/* Custom delimiters: the repetition is found with the sender's own. */
static void test_custom_delimiters(void **state)
{
    struct fixture *f = *state;
    const struct reply *r = send_str(
        f, &CHECK, "MSH*%$@!*GPSYS*H85026*LCR*ONELONDON*20261121120000**ADT%A28%ADT_A05*C1*P*2.5"
                   "\rPID*1**H8-0042%%%H85026%MR$9990000108%%%NHS%NH**EVANS%GARETH\r");
    assert_int_equal(r->outcome, INGEST_REFUSED);
    assert_ack(r, "MSA-1", "AE");
    assert_ack(r, "ERR-2", "PID%1%3%2");
    assert_ack_has(r, "ERR-8", "check digit expected 7, got 8");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_and_absent_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_check_digit_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audited_as_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setting_off_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enhanced_mode_ce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v24_sample, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_texts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_delimiters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
