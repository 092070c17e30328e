/*
 * test_router.c: the router (routes/router.c) on test/data/routes/routes.conf:
 * each route's verdict for samples from each source (matched with its
 * payload and destinations, filtered with why, not from the source, a
 * transform error and whether it refuses), each route editing its own
 * copy, and compile errors all reported. Runs from the repository root.
 */
#include "hl7_test_util.h"

#include <sys/stat.h>

#include "config.h"
#include "route.h"

#define DATA "test/data/routes/"

/* What one router_run reported, copied out of the callback. */
struct outcome {
    char               route[64];
    enum route_verdict verdict;
    char               why[512];
    bool               accept_errors;
    struct buf         payload;
    char               to[128];       /* "a,b" */
};

struct outcomes {
    struct outcome v[16];
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
    x->accept_errors = res->accept_errors;
    if (res->verdict == ROUTE_MATCHED) {
        assert_non_null(res->payload);
        assert_int_equal(buf_append(&x->payload, res->payload, res->payload_len), 0);
        size_t n = 0;
        for (size_t i = 0; i < res->n_to; i++)
            n += (size_t)snprintf(x->to + n, sizeof x->to - n, "%s%s", i ? "," : "",
                                  res->to[i]);
    } else {
        assert_null(res->payload);
        assert_int_equal(res->n_to, 0);
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
    return router_new(cfg, NULL, NULL);
}

static struct router *router;
static struct config  cfg;

static int setup(void **state)
{
    (void)state;
    chmod(DATA "test.key", 0600);
    router = load(DATA "routes.conf", &cfg);
    return router ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    router_free(router);
    config_free(&cfg);
    return 0;
}

/* Run a sample from source; returns router_run's result. */
static int run(const char *sample, const char *source, struct outcomes *o)
{
    size_t len;
    char *raw = load_sample(sample, &len);
    memset(o, 0, sizeof *o);
    int n = router_run(router, source, raw, len, record, o);
    free(raw);
    return n;
}

#define check_outcome(o, i, name, verd) do { \
        assert_string_equal((o)->v[i].route, (name)); \
        assert_int_equal((o)->v[i].verdict, (verd)); \
    } while (0)

static void test_adt_from_pas(void **state)
{
    (void)state;
    struct outcomes o;
    assert_int_equal(run("adt_a01_lf.hl7", "pas", &o), 4);
    assert_int_equal(o.n, 5);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_MATCHED);
    assert_string_equal(o.v[0].to, "hie");
    assert_buf(&o.v[0].payload,
               "MSH|^~\\&|PAS|STG|HIE|ONELONDON|20261121083000||ADT^A04^ADT_A01|STG-4410|P|2.4"
               "|||AL|NE\rEVN|A04|20261121083000\rPID|1||9990000085^^^NHS^NH||NGUYEN^LINH||"
               "20010607|F\rPV1|1|E|STG-ED^^^R1X99\r");
    check_outcome(&o, 1, "results-json", ROUTE_NOT_FROM_SOURCE);
    assert_string_equal(o.v[1].why, "");
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    assert_string_equal(o.v[2].to, "rde");
    /* HMAC-SHA-256 of 9990000085 under test.key (see test_route_transform.c) */
    assert_buf(&o.v[2].payload,
               "MSH|^~\\&|PAS|STG|LCR|ONELONDON|20261121083000||ADT^A04^ADT_A01|STG-4410|P|2.4"
               "|||AL|NE\rEVN|A04|20261121083000\rPID|1||"
               "6e2443a0c42bdba1b10bb7b7c9ee343eaa8a8a960475cd562e1a908eb584ac9d"
               "^^^NHS^NH||||20010607|F\rPV1|1|E|STG-ED^^^STG\r");
    check_outcome(&o, 3, "lenient", ROUTE_MATCHED);
    /* each route edits a copy of its own: nothing of the others here */
    check_outcome(&o, 4, "everything", ROUTE_MATCHED);
    assert_string_equal(o.v[4].to, "archive,hie");
    assert_buf(&o.v[4].payload,
               "MSH|^~\\&|PAS|STG|LCR|ONELONDON|20261121083000||ADT^A04^ADT_A01|STG-4410|P|2.4"
               "|||AL|NE\rEVN|A04|20261121083000\rPID|1||9990000085^^^NHS^NH||NGUYEN^LINH||"
               "20010607|F\rPV1|1|E|STG-ED^^^STG\r");
    outcomes_free(&o);
}

static void test_transform_errors(void **state)
{
    (void)state;
    struct outcomes o;
    /* KCH is not in the sites table */
    assert_int_equal(run("adt_a08_escapes.hl7", "pas", &o), 2);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_ERROR);
    assert_string_equal(o.v[0].why, "transform[1].map: no entry for 'KCH' in table 'sites', "
                                    "and no default");
    assert_false(o.v[0].accept_errors);
    check_outcome(&o, 1, "results-json", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    check_outcome(&o, 3, "lenient", ROUTE_ERROR);
    assert_string_equal(o.v[3].why, "transform[0].map: no entry for 'KCH' in table 'sites', "
                                    "and no default");
    assert_true(o.v[3].accept_errors);
    check_outcome(&o, 4, "everything", ROUTE_MATCHED);
    outcomes_free(&o);
}

static void test_results_from_lab(void **state)
{
    (void)state;
    struct outcomes o;
    assert_int_equal(run("oru_r01.hl7", "lab", &o), 3);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 1, "results-json", ROUTE_MATCHED);
    assert_string_equal(o.v[1].to, "archive");
    const char *json = o.v[1].payload.p;
    assert_true(strncmp(json, "{\"segments\":[{\"id\":\"MSH\",\"fields\":[\"|\",\"^~\\\\&\","
                              "\"WINPATH\",", 48) == 0);
    assert_non_null(strstr(json, "{\"id\":\"NTE\",\"fields\":[\"1\",null,"
                                 "\"Mild anaemia. Suggest ferritin.\"]}]}"));
    assert_int_equal(json[o.v[1].payload.len - 1], '}');
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    check_outcome(&o, 3, "lenient", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 4, "everything", ROUTE_MATCHED);
    outcomes_free(&o);
}

static void test_filtered(void **state)
{
    (void)state;
    struct outcomes o;
    /* a result from the PAS: adt-to-hie's when is false */
    assert_int_equal(run("oru_r01.hl7", "pas", &o), 2);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_FILTERED);
    assert_non_null(strstr(o.v[0].why, "MSH-9.1"));
    assert_non_null(strstr(o.v[0].why, "ORU"));
    check_outcome(&o, 1, "results-json", ROUTE_NOT_FROM_SOURCE);
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    check_outcome(&o, 3, "lenient", ROUTE_ERROR);      /* UCLH: no entry */
    check_outcome(&o, 4, "everything", ROUTE_MATCHED);
    outcomes_free(&o);
    /* a bad NHS number check digit keeps it from research */
    assert_int_equal(run("bad/bad_nhs_number.hl7", "pas", &o), 3);
    check_outcome(&o, 2, "research", ROUTE_FILTERED);
    assert_non_null(strstr(o.v[2].why, "nhs_number_valid"));
    outcomes_free(&o);
}

static void test_any_source(void **state)
{
    (void)state;
    struct outcomes o;
    /* source NULL (route-test without --source): no route is out of reach */
    assert_int_equal(run("oru_r01.hl7", NULL, &o), 3);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_FILTERED);
    check_outcome(&o, 1, "results-json", ROUTE_MATCHED);
    check_outcome(&o, 2, "research", ROUTE_MATCHED);
    check_outcome(&o, 3, "lenient", ROUTE_ERROR);
    check_outcome(&o, 4, "everything", ROUTE_MATCHED);
    outcomes_free(&o);
    /* a source no route takes */
    assert_int_equal(run("oru_r01.hl7", "elsewhere", &o), 0);
    for (size_t i = 0; i < o.n; i++)
        assert_int_equal(o.v[i].verdict, ROUTE_NOT_FROM_SOURCE);
    outcomes_free(&o);
}

static void test_unparseable(void **state)
{
    (void)state;
    struct outcomes o;
    assert_int_equal(run("bad/no_msh.hl7", "pas", &o), -1);
    assert_int_equal(o.n, 0);
    assert_int_equal(run("bad/binary_garbage.hl7", "pas", &o), -1);
    assert_int_equal(o.n, 0);
}

static void test_outlives_config(void **state)
{
    (void)state;
    struct config c;
    struct router *r = load(DATA "routes.conf", &c);
    assert_non_null(r);
    config_free(&c);          /* the router keeps what it needs */
    struct outcomes o = { 0 };
    const char *msg = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\nPV1|1|I|W^B^1^RLH\n";
    char *raw = dup_exact(msg, strlen(msg));
    assert_int_equal(router_run(r, "pas", raw, strlen(msg), record, &o), 3);
    check_outcome(&o, 0, "adt-to-hie", ROUTE_MATCHED);
    assert_buf(&o.v[0].payload,
               "MSH|^~\\&|A|B|HIE|D|20260101||ADT^A01|1|P|2.4\rPV1|1|I|W^B^1^R1H12\r");
    check_outcome(&o, 2, "research", ROUTE_FILTERED);   /* no PID at all */
    free(raw);
    outcomes_free(&o);
    router_free(r);
}

struct reported {
    char   msgs[8][512];
    size_t n;
};

static void collect(void *ctx, const struct route_error *e)
{
    struct reported *r = ctx;
    if (r->n < ARRAY_LEN(r->msgs))
        snprintf(r->msgs[r->n], sizeof r->msgs[0], "%s", e->msg);
    r->n++;
}

static void test_compile_errors(void **state)
{
    (void)state;
    struct config c;
    struct config_errors errs = { 0 };
    assert_int_equal(config_load(DATA "bad_routes.conf", &c, &errs), CONFIG_OK);
    struct reported rep = { 0 };
    assert_null(router_new(&c, collect, &rep));
    assert_int_equal(rep.n, 2);
    /* the expression's own text follows the column */
    assert_true(strncmp(rep.msgs[0], DATA "bad_routes.conf:10: route bad-when: setting when: "
                                     "column 22: ",
                        strlen(DATA "bad_routes.conf:10: route bad-when: setting when: "
                               "column 22: ")) == 0);
    assert_string_equal(rep.msgs[1], DATA "bad_routes.conf:14: route bad-transform: setting "
                        "transform[0].table: no table is named 'site-codes' (tables are "
                        "declared in the tables list)");
    config_free(&c);

    /* an error in an @include names the file relative to the main one */
    assert_int_equal(config_load(DATA "include_main.conf", &c, &errs), CONFIG_OK);
    memset(&rep, 0, sizeof rep);
    assert_null(router_new(&c, collect, &rep));
    assert_int_equal(rep.n, 1);
    assert_string_equal(rep.msgs[0], DATA "include_routes.inc:3: route r: setting "
                        "transform[0].clear: column 7: bad path 'PID-3[0]': a repetition is "
                        "a number from 1 in brackets, like PID-3[2]");
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adt_from_pas),
        cmocka_unit_test(test_transform_errors),
        cmocka_unit_test(test_results_from_lab),
        cmocka_unit_test(test_filtered),
        cmocka_unit_test(test_any_source),
        cmocka_unit_test(test_unparseable),
        cmocka_unit_test(test_outlives_config),
        cmocka_unit_test(test_compile_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
