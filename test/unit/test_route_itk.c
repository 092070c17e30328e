/*
 * test_route_itk.c: routing ITK messages: the metadata paths in filters
 * (itk.*, cda.nhs_number) on the sample discharge summary, itk.address
 * matching any address, HL7 paths empty on ITK and metadata empty on HL7
 * v2, objected() on cda.nhs_number, their compile errors; router_run_itk
 * (untransformed: the request's own bytes; itk-to-mdm; an HL7 v2 step
 * first is an error); the convert steps' config errors; mdm-to-itk on the
 * MDM letter; and ITK -> MDM -> ITK keeping the document's bytes. Runs
 * from the repository root.
 */
#include "hl7_test_util.h"

#include <openssl/evp.h>

#include "config.h"
#include "itk.h"
#include "objections.h"
#include "route.h"
#include "../../routes/route_tables_priv.h"

#define DATA "test/data/routes/"
#define ITK_SAMPLE "itk/discharge_summary_soap.xml"

/* ------------------------------------------------------------ helpers */

static struct itk_envelope *parse_itk_at(const char *p, size_t n, const char *file, int line)
{
    struct itk_envelope *env = NULL;
    struct itk_error err = { 0 };
    if (itk_parse(p, n, NULL, &env, &err) != 0 || !env) {
        print_error("itk_parse: %s (%s)\n", err.msg, err.itk_code);
        _fail(file, line);
    }
    return env;
}
#define parse_itk(p, n) parse_itk_at((p), (n), __FILE__, __LINE__)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open %s (tests run from the repo root)\n", path);
        fail();
    }
    struct buf b = { 0 };
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    fclose(f);
    char *p = dup_exact(b.p, b.len);
    *len = b.len;
    buf_free(&b);
    return p;
}

/* The sample discharge summary, and one with three addresses. */
static char *sample_raw, *three_raw;
static size_t sample_len, three_len;
static struct itk_envelope *sample_env, *three_env;
static struct route_tables *tables;   /* gp-practices, and the objections */
static struct objections *reg;

static int setup(void **state)
{
    (void)state;
    sample_raw = load_sample(ITK_SAMPLE, &sample_len);
    sample_env = parse_itk(sample_raw, sample_len);
    three_raw = read_file(DATA "itk_three_addresses.xml", &three_len);
    three_env = parse_itk(three_raw, three_len);
    static struct config_table t = {
        .name = (char *)"gp-practices", .file = (char *)DATA "gp_practices.csv", .line = 1,
    };
    struct config cfg = { .path = (char *)"test.conf", .tables = &t, .n_tables = 1 };
    struct route_error err;
    if (route_tables_load(&cfg, &tables, &err)) {
        print_error("%s\n", err.msg);
        return -1;
    }
    struct objections_set *set;
    char why[256];
    const char *file = "9990000018,research\n";
    if (!(reg = objections_new()) ||
        objections_set_parse(file, strlen(file), "t.csv", &set, why, sizeof why)) {
        print_error("objections: %s\n", why);
        return -1;
    }
    objections_install(reg, set);
    route_tables_set_objections(tables, reg);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    itk_free(sample_env);
    itk_free(three_env);
    free(sample_raw);
    free(three_raw);
    route_tables_free(tables);
    objections_unref(reg);
    return 0;
}

/* Evaluate text on an ITK envelope (env) or an HL7 v2 message (m): want
 * the result and, when false and want_why is not NULL, that reason. */
static void check_at(const struct itk_envelope *env, const struct hl7_msg *m, const char *text,
                     bool want, const char *want_why, const char *file, int line)
{
    struct route_expr *e = NULL;
    struct route_error err;
    if (route_expr_compile(text, tables, &e, &err) != 0) {
        print_error("\"%s\" does not compile: %s\n", text, err.msg);
        _fail(file, line);
    }
    struct buf why = { 0 };
    bool got = env ? route_expr_eval_itk(e, env, &why) : route_expr_eval(e, m, &why);
    if (got != want) {
        print_error("\"%s\" is %s, want %s (why: %s)\n", text, got ? "true" : "false",
                    want ? "true" : "false", why.p ? why.p : "");
        _fail(file, line);
    }
    if (!got && want_why && (!why.p || strcmp(why.p, want_why) != 0)) {
        print_error("\"%s\" why:\n  got  \"%s\"\n  want \"%s\"\n", text, why.p ? why.p : "",
                    want_why);
        _fail(file, line);
    }
    bool again = env ? route_expr_eval_itk(e, env, NULL) : route_expr_eval(e, m, NULL);
    if (again != want) {
        print_error("\"%s\": a different answer without why\n", text);
        _fail(file, line);
    }
    buf_free(&why);
    route_expr_free(e);
}
#define check_itk(env, text, want, why) check_at((env), NULL, (text), (want), (why), __FILE__, __LINE__)
#define check_hl7(m, text, want, why) check_at(NULL, (m), (text), (want), (why), __FILE__, __LINE__)

static void check_error_at(const char *text, unsigned column, const char *want,
                           const char *file, int line)
{
    struct route_expr *e = NULL;
    struct route_error err;
    if (route_expr_compile(text, tables, &e, &err) == 0) {
        print_error("\"%s\" compiled, want column %u: %s\n", text, column, want);
        route_expr_free(e);
        _fail(file, line);
    }
    if (err.column != column || strcmp(err.text, want) != 0) {
        print_error("\"%s\":\n  got  column %u: \"%s\"\n  want column %u: \"%s\"\n", text,
                    err.column, err.text, column, want);
        _fail(file, line);
    }
}
#define check_error(text, column, want) check_error_at((text), (column), (want), __FILE__, __LINE__)

/* ------------------------------------------------------- expressions */

static void test_paths_on_sample(void **state)
{
    (void)state;
    const struct itk_envelope *env = sample_env;
    check_itk(env, "itk.service = 'urn:nhs-itk:services:201005:SendCDADocument-v2-0'", true, NULL);
    check_itk(env, "itk.interaction = 'urn:nhs-itk:interaction:"
              "primaryRecipienteDischargeInpatientDischargeSummaryDocument-v1-0'", true, NULL);
    check_itk(env, "itk.sender = 'R1H'", true, NULL);
    check_itk(env, "itk.address = 'F84003'", true, NULL);
    check_itk(env, "itk.tracking_id = '7D5B2A90-1C44-4F7B-8D3E-222222222222'", true, NULL);
    check_itk(env, "itk.profile = 'urn:nhs-en:profile:"
              "eDischargeInpatientDischargeSummaryDocument-v1-0'", true, NULL);
    check_itk(env, "cda.nhs_number = '9990000018'", true, NULL);
    check_itk(env, "itk.service ~ 'SendCDADocument' and itk.profile ~ 'eDischarge'", true, NULL);
    check_itk(env, "itk.sender in ('R1H', 'RLH')", true, NULL);
    check_itk(env, "exists(itk.service) and exists(cda.nhs_number) and itk.tracking_id", true,
              NULL);
    check_itk(env, "nhs_number_valid(cda.nhs_number)", true, NULL);
    check_itk(env, "in_table(itk.address, 'gp-practices')", true, NULL);
    check_itk(env, "itk.sender = 'RLH'", false, "itk.sender = 'RLH': itk.sender is 'R1H'");
    check_itk(env, "in_table(itk.sender, 'gp-practices')", false,
              "in_table(itk.sender, 'gp-practices'): itk.sender is 'R1H', not a key of "
              "gp-practices");
    /* a path compared with a path */
    check_itk(env, "itk.sender = itk.address", false,
              "itk.sender = itk.address: itk.sender is 'R1H', itk.address is 'F84003'");

    /* An envelope without interaction, addresses or CDA: absent reads as "". */
    size_t n;
    char *raw = read_file("test/data/itk/pdf_base64.xml", &n);
    struct itk_envelope *pdf = parse_itk(raw, n);
    check_itk(pdf, "exists(itk.interaction)", false,
              "exists(itk.interaction): itk.interaction is absent");
    check_itk(pdf, "itk.address", false, "itk.address: itk.address is absent");
    check_itk(pdf, "itk.address = ''", true, NULL);
    check_itk(pdf, "itk.address != 'F84003'", true, NULL);
    check_itk(pdf, "nhs_number_valid(cda.nhs_number)", false,
              "nhs_number_valid(cda.nhs_number): cda.nhs_number is absent: "
              "no NHS number");
    check_itk(pdf, "itk.profile = 'urn:nhs-en:profile:nonCodedCDADocument-v2-0'", true, NULL);
    itk_free(pdf);
    free(raw);
}

static void test_multi_address(void **state)
{
    (void)state;
    const struct itk_envelope *env = three_env;
    check_itk(env, "itk.address = 'F84003'", true, NULL);
    check_itk(env, "itk.address = 'Y01234'", true, NULL);
    check_itk(env, "itk.address = 'https://care.example.org/itk'", true, NULL);
    check_itk(env, "'Y01234' = itk.address", true, NULL);
    check_itk(env, "itk.address = 'X26'", false,
              "itk.address = 'X26': itk.address is 'F84003', 'Y01234' and "
              "'https://care.example.org/itk'");
    /* != : no address equals the value */
    check_itk(env, "itk.address != 'X26'", true, NULL);
    check_itk(env, "itk.address != 'Y01234'", false, NULL);
    check_itk(env, "itk.address ~ '^https:'", true, NULL);
    check_itk(env, "itk.address ~ '^Z'", false, NULL);
    check_itk(env, "itk.address in ('A1', 'Y01234')", true, NULL);
    check_itk(env, "itk.address in ('A1', 'B2')", false, NULL);
    check_itk(env, "itk.address", true, NULL);
    check_itk(env, "exists(itk.address)", true, NULL);
    check_itk(env, "in_table(itk.address, 'gp-practices')", true, NULL);
    check_itk(env, "not in_table(itk.address, 'gp-practices')", false,
              "not in_table(itk.address, 'gp-practices'): it is true (itk.address is "
              "'F84003', 'Y01234' and 'https://care.example.org/itk', one a key of "
              "gp-practices)");
    check_itk(env, "not (itk.address = 'Y01234')", false, NULL);
}

static void test_hl7_paths_empty_on_itk(void **state)
{
    (void)state;
    const struct itk_envelope *env = sample_env;
    check_itk(env, "PID-3", false, "PID-3: PID-3 is absent");
    check_itk(env, "exists(MSH-9)", false, "exists(MSH-9): MSH-9 is absent");
    check_itk(env, "MSH-9.1 = ''", true, NULL);
    check_itk(env, "MSH-9.1 != 'ADT'", true, NULL);
    check_itk(env, "nhs_number_valid(PID-3)", false,
              "nhs_number_valid(PID-3): PID-3 holds no NHS number (no repetition with "
              "assigning authority NHS or identifier type NH)");
    check_itk(env, "objected(PID-3, 'research')", false,
              "objected(PID-3, 'research'): PID-3 holds no NHS number");
    check_itk(env, "in_table(PV1-3.4, 'gp-practices')", false, NULL);
}

static void test_itk_paths_empty_on_hl7(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "mdm_t02_letter.hl7");
    check_hl7(s.msg, "itk.service", false, "itk.service: itk.service is absent");
    check_hl7(s.msg, "exists(cda.nhs_number)", false,
              "exists(cda.nhs_number): cda.nhs_number is absent");
    check_hl7(s.msg, "itk.address = ''", true, NULL);
    check_hl7(s.msg, "itk.address != 'F84003'", true, NULL);
    check_hl7(s.msg, "objected(cda.nhs_number, 'research')", false,
              "objected(cda.nhs_number, 'research'): cda.nhs_number holds no NHS number");
    /* the same patient, through PID-3 */
    check_hl7(s.msg, "objected(PID-3, 'research')", true, NULL);
    check_hl7(s.msg, "MSH-9.1 = 'MDM' and not exists(itk.tracking_id)", true, NULL);
    sample_close(&s);
}

static void test_objected_cda(void **state)
{
    (void)state;
    check_itk(sample_env, "objected(cda.nhs_number, 'research')", true, NULL);
    check_itk(sample_env, "objected(cda.nhs_number, 'direct_care')", false,
              "objected(cda.nhs_number, 'direct_care'): NHS number '9990000018' has no "
              "objection for direct_care");
    check_itk(sample_env, "not objected(cda.nhs_number, 'research')", false,
              "not objected(cda.nhs_number, 'research'): it is true (NHS number "
              "'9990000018' objected for research)");
}

static void test_compile_errors(void **state)
{
    (void)state;
    check_error("itk.servce = 'x'", 1, "unknown metadata path 'itk.servce' (did you mean "
                "itk.service?)");
    check_error("ITK.SERVICE = 'x'", 1, "unknown metadata path 'ITK.SERVICE' (did you mean "
                "itk.service?)");
    check_error("itk.adress = 'F84003'", 1, "unknown metadata path 'itk.adress' (did you mean "
                "itk.address?)");
    check_error("MSH-9.1 = 'MDM' and exists(cda.nhs)", 28, "unknown metadata path 'cda.nhs' "
                "(the ITK metadata paths are itk.service, itk.interaction, itk.sender, "
                "itk.address, itk.tracking_id, itk.profile and cda.nhs_number)");
    check_error("objected(cda.patient, 'research')", 10, "unknown metadata path "
                "'cda.patient' (the ITK metadata paths are itk.service, itk.interaction, "
                "itk.sender, itk.address, itk.tracking_id, itk.profile and cda.nhs_number)");
    check_error("itk.address in ('A', itk.foo)", 22, "unknown metadata path 'itk.foo' (the "
                "ITK metadata paths are itk.service, itk.interaction, itk.sender, "
                "itk.address, itk.tracking_id, itk.profile and cda.nhs_number)");
    check_error("in_table(itk.address, 'practices')", 23,
                "unknown table 'practices'");
    check_error("itk.address ~ itk.sender", 15,
                "the right of '~' is a regular expression in quotes, like '^A0[1-3]$'");
}

/* ------------------------------------------------------------ router */

struct outcome {
    char               route[64];
    enum route_verdict verdict;
    char               why[512];
    struct buf         payload;
    const char        *payload_ptr;
    char               to[128];
};

struct outcomes {
    struct outcome v[8];
    size_t         n;
};

static void record(void *ctx, const struct route_result *res)
{
    struct outcomes *o = ctx;
    assert_true(o->n < ARRAY_LEN(o->v));
    struct outcome *x = &o->v[o->n++];
    snprintf(x->route, sizeof x->route, "%s", res->route);
    x->verdict = res->verdict;
    snprintf(x->why, sizeof x->why, "%s", res->why ? res->why : "");
    if (res->verdict == ROUTE_MATCHED) {
        x->payload_ptr = res->payload;
        assert_int_equal(buf_append(&x->payload, res->payload, res->payload_len), 0);
        size_t n = 0;
        for (size_t i = 0; i < res->n_to; i++)
            n += (size_t)snprintf(x->to + n, sizeof x->to - n, "%s%s", i ? "," : "",
                                  res->to[i]);
    } else {
        assert_null(res->payload);
    }
}

static void outcomes_free(struct outcomes *o)
{
    for (size_t i = 0; i < o->n; i++)
        buf_free(&o->v[i].payload);
    memset(o, 0, sizeof *o);
}

static struct router *load(const char *path, struct config *cfg)
{
    struct config_errors errs = { 0 };
    int rc = config_load(path, cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.v[i].msg);
    config_errors_free(&errs);
    assert_int_equal(rc, CONFIG_OK);
    struct router *r = router_new(cfg, NULL, NULL);
    assert_non_null(r);
    return r;
}

#define check_outcome(o, i, name, verd) do { \
        assert_string_equal((o)->v[i].route, (name)); \
        if ((o)->v[i].verdict != (verd)) \
            print_error("route %s: %s\n", (o)->v[i].route, (o)->v[i].why); \
        assert_int_equal((o)->v[i].verdict, (verd)); \
    } while (0)

/* OBX-5.5 of an MDM, base64 decoded. */
static void mdm_document(const char *p, size_t n, struct buf *out)
{
    struct sample s;
    bytes_open(&s, p, n);
    struct buf b64 = { 0 };
    struct hl7_path path = P("OBX-5.5");
    assert_int_equal(hl7_get_decoded(s.msg, &path, &b64), HL7_VALUE);
    unsigned char *d = malloc(b64.len + 3);
    assert_non_null(d);
    int len = EVP_DecodeBlock(d, (const unsigned char *)b64.p, (int)b64.len);
    assert_true(len >= 0);
    if (b64.len && b64.p[b64.len - 1] == '=')
        len--;
    if (b64.len > 1 && b64.p[b64.len - 2] == '=')
        len--;
    assert_int_equal(buf_append(out, (char *)d, (size_t)len), 0);
    free(d);
    buf_free(&b64);
    sample_close(&s);
}

static void test_router_itk(void **state)
{
    (void)state;
    struct config cfg;
    struct router *r = load(DATA "itk.conf", &cfg);
    struct outcomes o = { 0 };
    assert_int_equal(router_run_itk(r, "epr", sample_env, sample_raw, sample_len, record, &o), 2);
    assert_int_equal(o.n, 5);
    /* untransformed: the request's own bytes, not a copy */
    check_outcome(&o, 0, "summaries-to-gp", ROUTE_MATCHED);
    assert_string_equal(o.v[0].to, "gp-itk");
    assert_ptr_equal(o.v[0].payload_ptr, sample_raw);
    assert_int_equal(o.v[0].payload.len, sample_len);
    /* itk-to-mdm, then an HL7 v2 step */
    check_outcome(&o, 1, "summaries-as-mdm", ROUTE_MATCHED);
    assert_string_equal(o.v[1].to, "gp-v2");
    {
        struct sample s;
        bytes_open(&s, o.v[1].payload.p, o.v[1].payload.len);
        assert_value(s.msg, "MSH-9.1", "MDM");
        assert_value(s.msg, "MSH-9.2", "T02");
        assert_value(s.msg, "MSH-3", "BROKER");
        assert_value(s.msg, "MSH-5", "GPSYS");
        assert_value(s.msg, "MSH-11", "T");
        assert_value(s.msg, "PID-3.1", "9990000018");
        sample_close(&s);
        struct buf doc = { 0 };
        mdm_document(o.v[1].payload.p, o.v[1].payload.len, &doc);
        assert_int_equal(doc.len, sample_env->payloads[0].len);
        assert_memory_equal(doc.p, sample_env->payloads[0].data, doc.len);
        buf_free(&doc);
    }
    check_outcome(&o, 2, "research", ROUTE_FILTERED);
    assert_string_equal(o.v[2].why, "not objected(cda.nhs_number, 'research'): it is true "
                        "(NHS number '9990000018' objected for research)");
    check_outcome(&o, 3, "letters-to-itk", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 4, "wrong-first-step", ROUTE_ERROR);
    assert_string_equal(o.v[4].why, "transform[0].set: this message is ITK and set edits HL7 "
                        "v2: begin the transforms with { convert = \"itk-to-mdm\"; } to edit "
                        "the MDM^T02 it makes (or leave the transforms out to pass the ITK "
                        "message on as it is)");
    outcomes_free(&o);

    /* three addresses: the practice is one of them */
    assert_int_equal(router_run_itk(r, "epr", three_env, three_raw, three_len, record, &o), 2);
    check_outcome(&o, 0, "summaries-to-gp", ROUTE_MATCHED);
    assert_ptr_equal(o.v[0].payload_ptr, three_raw);
    outcomes_free(&o);

    /* an HL7 v2 message through the same routes: metadata reads as empty */
    size_t n;
    char *letter = load_sample("mdm_t02_letter.hl7", &n);
    assert_int_equal(router_run(r, NULL, letter, n, record, &o), 3);
    check_outcome(&o, 0, "summaries-to-gp", ROUTE_FILTERED);
    check_outcome(&o, 1, "summaries-as-mdm", ROUTE_FILTERED);
    assert_string_equal(o.v[1].why, "in_table(itk.address, 'gp-practices'): itk.address is "
                        "absent");
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    check_outcome(&o, 3, "letters-to-itk", ROUTE_MATCHED);
    check_outcome(&o, 4, "wrong-first-step", ROUTE_MATCHED);
    outcomes_free(&o);
    free(letter);

    assert_int_equal(router_run_itk(r, "epr", NULL, sample_raw, sample_len, record, &o), -1);
    assert_int_equal(o.n, 0);
    router_free(r);
    config_free(&cfg);
}

static void test_mdm_to_itk(void **state)
{
    (void)state;
    struct config cfg;
    struct router *r = load(DATA "itk_roundtrip.conf", &cfg);
    struct outcomes o = { 0 };
    size_t n;
    char *letter = load_sample("mdm_t02_letter.hl7", &n);
    assert_int_equal(router_run(r, "pas", letter, n, record, &o), 1);
    check_outcome(&o, 0, "to-mdm", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 1, "to-itk", ROUTE_MATCHED);
    assert_string_equal(o.v[1].to, "gp-itk");
    struct itk_envelope *env = parse_itk(o.v[1].payload.p, o.v[1].payload.len);
    assert_int_equal(env->n_addresses, 1);
    assert_string_equal(env->address_ods[0], "F84003");
    assert_string_equal(env->sender_ods, "R1H");
    assert_int_equal(env->n_payloads, 1);
    assert_true(env->infack_requested);
    assert_false(env->ack_requested);
    struct buf doc = { 0 };
    mdm_document(letter, n, &doc);
    assert_int_equal(env->payloads[0].len, doc.len);
    assert_memory_equal(env->payloads[0].data, doc.p, doc.len);
    buf_free(&doc);
    itk_free(env);
    /* itk-to-mdm on an HL7 v2 message: what to write instead */
    check_outcome(&o, 2, "hl7-to-mdm", ROUTE_ERROR);
    assert_string_equal(o.v[2].why, "transform[0].convert: itk-to-mdm takes an ITK message, "
                        "and this one is HL7 v2: leave the step out (an HL7 v2 message is "
                        "edited as it is), or take this route's messages from an itk source "
                        "only");
    check_outcome(&o, 3, "itk-edit-itk", ROUTE_NOT_FROM_SOURCE);
    outcomes_free(&o);
    free(letter);
    router_free(r);
    config_free(&cfg);
}

/* ITK -> (itk-to-mdm) -> MDM -> (mdm-to-itk) -> ITK: the document's bytes
 * come back exactly; and both steps in one route. */
static void test_round_trip(void **state)
{
    (void)state;
    struct config cfg;
    struct router *r = load(DATA "itk_roundtrip.conf", &cfg);
    struct outcomes o = { 0 }, back = { 0 };
    assert_int_equal(router_run_itk(r, "epr", sample_env, sample_raw, sample_len, record, &o),
                     2);
    check_outcome(&o, 0, "to-mdm", ROUTE_MATCHED);
    assert_int_equal(router_run(r, "pas", o.v[0].payload.p, o.v[0].payload.len, record, &back),
                     1);
    check_outcome(&back, 1, "to-itk", ROUTE_MATCHED);
    struct itk_envelope *env = parse_itk(back.v[1].payload.p, back.v[1].payload.len);
    assert_int_equal(env->n_payloads, 1);
    assert_int_equal(env->payloads[0].len, sample_env->payloads[0].len);
    assert_memory_equal(env->payloads[0].data, sample_env->payloads[0].data,
                        sample_env->payloads[0].len);
    itk_free(env);

    /* one route: itk-to-mdm, an edit, mdm-to-itk */
    check_outcome(&o, 3, "itk-edit-itk", ROUTE_MATCHED);
    env = parse_itk(o.v[3].payload.p, o.v[3].payload.len);
    assert_string_equal(env->sender_ods, "X26");
    assert_int_equal(env->n_addresses, 1);
    assert_string_equal(env->address_ods[0], "Y01234");
    assert_int_equal(env->payloads[0].len, sample_env->payloads[0].len);
    assert_memory_equal(env->payloads[0].data, sample_env->payloads[0].data,
                        sample_env->payloads[0].len);
    itk_free(env);
    outcomes_free(&o);
    outcomes_free(&back);
    router_free(r);
    config_free(&cfg);
}

/* ---------------------------------------------------- config errors */

struct errors {
    char   v[16][512];
    size_t n;
};

static void collect(void *ctx, const struct route_error *e)
{
    struct errors *x = ctx;
    assert_true(x->n < ARRAY_LEN(x->v));
    snprintf(x->v[x->n++], sizeof x->v[0], "%s", e->msg);
}

static void test_convert_errors(void **state)
{
    (void)state;
#define BAD DATA "bad_itk_transforms.conf"
    static const char *const want[] = {
        BAD ":8: route not-first: setting transform[1].convert: itk-to-mdm turns the ITK "
            "message the route receives into an MDM^T02, so it must be the first transform "
            "(it is transform[1])",
        BAD ":10: route not-last: setting transform[0].convert: mdm-to-itk writes the ITK "
            "envelope the destinations receive, so it must be the last transform (1 follows "
            "it)",
        BAD ":13: route unknown: setting transform[0].convert: 'itk-to-fhir' is not a "
            "conversion: \"itk-to-mdm\" (an ITK message to an HL7 v2 MDM^T02, the first "
            "transform) or \"mdm-to-itk\" (an HL7 v2 MDM^T02/T04 to an ITK envelope, the last "
            "transform)",
        BAD ":15: route no-sender: setting transform[0].convert: mdm-to-itk needs sender_ods, "
            "the ODS code the envelope is sent from, as in { convert = \"mdm-to-itk\"; "
            "sender_ods = \"R1H\"; }",
        BAD ":17: route bad-ods: setting transform[0].sender_ods: 'R1H/2' is not an ODS "
            "organisation code: 1 to 16 letters and digits, like \"R1H\"",
        BAD ":19: route wrong-arg: setting transform[0].sending_app: 'sending_app' does not "
            "go with convert = \"mdm-to-itk\" (mdm-to-itk takes sender_ods, service, "
            "profile_id, interaction, address, infack_requested and ack_requested)",
        BAD ":21: route not-bool: setting transform[0].infack_requested: must be true or "
            "false (without quotes)",
        BAD ":23: route bad-address: setting transform[0].address: 'F84 003' is not an ODS "
            "code (\"F84003\") or a URI (\"urn:nhs-uk:addressing:ods:F84003\")",
        BAD ":25: route bad-app: setting transform[0].sending_app: 'A|B' is not an HL7 v2 "
            "application name, without the delimiters | ^ ~ \\ & or control characters",
        BAD ":27: route json-itk: setting transform[0].encoding: an encoding does not go with "
            "mdm-to-itk (transform[1]), which writes an ITK envelope: leave the encoding out",
    };
#undef BAD
    struct config cfg;
    struct config_errors errs = { 0 };
    int rc = config_load(DATA "bad_itk_transforms.conf", &cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.v[i].msg);
    config_errors_free(&errs);
    assert_int_equal(rc, CONFIG_OK);
    struct errors got = { 0 };
    assert_null(router_new(&cfg, collect, &got));
    for (size_t i = 0; i < got.n && i < ARRAY_LEN(want); i++)
        if (strcmp(got.v[i], want[i]) != 0) {
            print_error("error %zu:\n  got  %s\n  want %s\n", i + 1, got.v[i], want[i]);
            fail();
        }
    assert_int_equal(got.n, ARRAY_LEN(want));
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_on_sample),
        cmocka_unit_test(test_multi_address),
        cmocka_unit_test(test_hl7_paths_empty_on_itk),
        cmocka_unit_test(test_itk_paths_empty_on_hl7),
        cmocka_unit_test(test_objected_cda),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_router_itk),
        cmocka_unit_test(test_mdm_to_itk),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_convert_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
