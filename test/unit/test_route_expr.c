/*
 * test_route_expr.c: filter expressions (routes/expr.c): the grammar
 * (operators, functions, path forms, quoting, precedence, nesting), what
 * they say when false, and every compile error with its column.
 */
#include "hl7_test_util.h"

#include <regex.h>

#include "config.h"
#include "objections.h"
#include "route.h"
#include "../../routes/route_tables_priv.h"

static struct route_tables *tables;   /* site-codes, loaded once */
static struct objections *reg;        /* 9990000018 objected to research */

static int load_tables(void **state)
{
    (void)state;
    static struct config_table t = {
        .name = (char *)"site-codes", .file = (char *)"test/data/tables/site-codes.csv", .line = 1,
    };
    struct config cfg = { .path = (char *)"test.conf", .tables = &t, .n_tables = 1 };
    struct route_error err;
    if (route_tables_load(&cfg, &tables, &err)) {
        print_error("%s\n", err.msg);
        return -1;
    }
    struct objections_set *set;
    char why[256];
    const char *file = "# test\n999 000 0018,research\n";
    if (!(reg = objections_new()) ||
        objections_set_parse(file, strlen(file), "t.csv", &set, why, sizeof why)) {
        print_error("objections: %s\n", why);
        return -1;
    }
    objections_install(reg, set);
    route_tables_set_objections(tables, reg);
    return 0;
}

static int free_tables(void **state)
{
    (void)state;
    route_tables_free(tables);
    objections_unref(reg);
    return 0;
}

static struct route_expr *compile_at(const char *text, const char *file, int line)
{
    struct route_expr *e = NULL;
    struct route_error err;
    if (route_expr_compile(text, tables, &e, &err) != 0 || !e) {
        print_error("\"%s\" does not compile: %s\n", text, err.msg);
        _fail(file, line);
    }
    return e;
}

/* Evaluate text on msg: want the result, and when false the reason
 * (want_why NULL: not checked). */
static void check_eval_at(const struct hl7_msg *msg, const char *text, bool want,
                          const char *want_why, const char *file, int line)
{
    struct route_expr *e = compile_at(text, file, line);
    struct buf why = {0};
    bool got = route_expr_eval(e, msg, &why);
    if (got != want) {
        print_error("\"%s\" is %s, want %s (why: %s)\n", text, got ? "true" : "false",
                    want ? "true" : "false", why.p ? why.p : "");
        _fail(file, line);
    }
    if (got && why.len) {
        print_error("\"%s\" is true but left a reason: %s\n", text, why.p);
        _fail(file, line);
    }
    if (!got && want_why && (!why.p || strcmp(why.p, want_why) != 0)) {
        print_error("\"%s\" why:\n  got  \"%s\"\n  want \"%s\"\n", text, why.p ? why.p : "",
                    want_why);
        _fail(file, line);
    }
    /* Without a reason asked for, the same answer. */
    if (route_expr_eval(e, msg, NULL) != want) {
        print_error("\"%s\": a different answer without why\n", text);
        _fail(file, line);
    }
    buf_free(&why);
    route_expr_free(e);
}
#define check_eval(m, text, want, why) check_eval_at((m), (text), (want), (why), __FILE__, __LINE__)

static void check_error_at(const char *text, unsigned column, const char *want,
                           const char *file, int line)
{
    struct route_expr *e = (struct route_expr *)&e;   /* must become NULL */
    struct route_error err;
    int rc = route_expr_compile(text, tables, &e, &err);
    if (rc == 0 || e) {
        print_error("\"%s\" compiled, want column %u: %s\n", show(text, strlen(text)), column,
                    want);
        route_expr_free(rc == 0 ? e : NULL);
        _fail(file, line);
    }
    char msg[600];
    snprintf(msg, sizeof msg, "column %u: %s", column, want);
    if (err.column != column || strcmp(err.text, want) != 0 || strcmp(err.msg, msg) != 0) {
        print_error("\"%s\":\n  got  \"%s\" (column %u, text \"%s\")\n  want \"%s\"\n",
                    show(text, strlen(text)), err.msg, err.column, err.text, msg);
        _fail(file, line);
    }
}
#define check_error(text, column, want) check_error_at((text), (column), (want), __FILE__, __LINE__)

/* ------------------------------------------------------------ samples */

static void test_adt_filter_on_samples(void **state)
{
    (void)state;
    const char *adt = "MSH-9.1 = 'ADT' and MSH-9.2 in ('A01','A02','A03','A08','A40')";
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, adt, true, NULL);
    sample_close(&s);
    sample_open(&s, "adt_a03.hl7");
    check_eval(s.msg, adt, true, NULL);
    sample_close(&s);
    sample_open(&s, "adt_a40_merge.hl7");
    check_eval(s.msg, adt, true, NULL);
    sample_close(&s);
    sample_open(&s, "oru_r01.hl7");
    check_eval(s.msg, adt, false, "MSH-9.1 = 'ADT': MSH-9.1 is 'ORU'");
    sample_close(&s);
    sample_open(&s, "custom_delimiters.hl7");     /* ADT^A28 in other delimiters */
    check_eval(s.msg, adt, false,
               "MSH-9.2 in ('A01','A02','A03','A08','A40'): MSH-9.2 is 'A28'");
    check_eval(s.msg, "PID-3[2].1 = 'H8-0042' and PID-5.1 = 'EVANS'", true, NULL);
    sample_close(&s);
}

static void test_nhs_number_valid(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, "nhs_number_valid(PID-3)", true, NULL);
    check_eval(s.msg, "nhs_number_valid(PID-3.1)", true, NULL);   /* the value itself */
    check_eval(s.msg, "nhs_number_valid(PID-3[1].1)", true, NULL);
    check_eval(s.msg, "nhs_number_valid(PID-3[2].1)", false,
               "nhs_number_valid(PID-3[2].1): PID-3[2].1 is 'RLH1234567': "
               "an NHS number has only digits");
    check_eval(s.msg, "nhs_number_valid(PID-19)", false,
               "nhs_number_valid(PID-19): PID-19 is empty: no NHS number");
    check_eval(s.msg, "not nhs_number_valid(PID-3)", false,
               "not nhs_number_valid(PID-3): it is true (NHS number '9990000018': valid)");
    sample_close(&s);

    sample_open(&s, "bad/bad_nhs_number.hl7");
    check_eval(s.msg, "nhs_number_valid(PID-3)", false,
               "nhs_number_valid(PID-3): NHS number '9990000019': "
               "the check digit is wrong (modulus 11)");
    check_eval(s.msg, "not nhs_number_valid(PID-3)", true, NULL);
    sample_close(&s);

    /* No repetition marked NHS: the whole field's first repetition is not
       taken for one. */
    text_open(&s, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"
                  "PID|1||9990000018^^^RLH^MR\r");
    check_eval(s.msg, "nhs_number_valid(PID-3)", false,
               "nhs_number_valid(PID-3): PID-3 holds no NHS number (no repetition with "
               "assigning authority NHS or identifier type NH)");
    check_eval(s.msg, "nhs_number_valid(PID-3.1)", true, NULL);
    sample_close(&s);
}

/* ---------------------------------------------------------- operators */

static void test_operators_and_paths(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    /* = and != */
    check_eval(s.msg, "MSH-9.2 = 'A01'", true, NULL);
    check_eval(s.msg, "MSH-9.2 = 'A08'", false, "MSH-9.2 = 'A08': MSH-9.2 is 'A01'");
    check_eval(s.msg, "MSH-9.2 != 'A08'", true, NULL);
    check_eval(s.msg, "MSH-9.2 != 'A01'", false, "MSH-9.2 != 'A01': MSH-9.2 is 'A01'");
    check_eval(s.msg, "'A01' = MSH-9.2", true, NULL);
    check_eval(s.msg, "MSH-9.2 = EVN-1", true, NULL);          /* path against path */
    check_eval(s.msg, "MSH-9.2 != EVN-1", false,
               "MSH-9.2 != EVN-1: MSH-9.2 is 'A01', EVN-1 is 'A01'");
    check_eval(s.msg, "MSH-9.1 = 'adt'", false, "MSH-9.1 = 'adt': MSH-9.1 is 'ADT'");
    /* every path form */
    check_eval(s.msg, "PID-3 = '9990000018^^^NHS^NH~RLH1234567^^^RLH^MR'", true, NULL);
    check_eval(s.msg, "PID-3[2].1 = 'RLH1234567'", true, NULL);
    check_eval(s.msg, "PID-3[2].4 = 'RLH'", true, NULL);
    check_eval(s.msg, "PID-3.1 = '9990000018'", true, NULL);   /* first repetition */
    check_eval(s.msg, "PID-5.1.1 = 'SMITH'", true, NULL);
    check_eval(s.msg, "PV1-3.4 = 'RLH'", true, NULL);
    check_eval(s.msg, "PID.5.2 = 'JOHN'", true, NULL);
    check_eval(s.msg, "MSH-9.2 = 'A01'", true, NULL);
    check_eval(s.msg, "MSH-1 = '|' and MSH-2 = '^~\\&'", true, NULL);
    /* numbers are compared as their text */
    check_eval(s.msg, "PID-7 = 19700101", true, NULL);
    check_eval(s.msg, "PID-1 = 1", true, NULL);
    check_eval(s.msg, "PID-1 = 1.0", false, "PID-1 = 1.0: PID-1 is '1'");
    check_eval(s.msg, "PID-1 != -1", true, NULL);
    /* absent and empty read as "" */
    check_eval(s.msg, "ZZZ-1 = ''", true, NULL);
    check_eval(s.msg, "PID-2 = ''", true, NULL);
    check_eval(s.msg, "PID-2 = 'x'", false, "PID-2 = 'x': PID-2 is empty");
    check_eval(s.msg, "ZZZ-1 = 'x'", false, "ZZZ-1 = 'x': ZZZ-1 is absent");
    check_eval(s.msg, "PID[2]-3 != ''", false, "PID[2]-3 != '': PID[2]-3 is absent");
    /* a value alone: true when not empty */
    check_eval(s.msg, "PID-8", true, NULL);
    check_eval(s.msg, "PID-2", false, "PID-2: PID-2 is empty");
    check_eval(s.msg, "ZZZ", false, "ZZZ: ZZZ is absent");
    check_eval(s.msg, "'x'", true, NULL);
    check_eval(s.msg, "''", false, "'': it is empty");
    sample_close(&s);

    sample_open(&s, "oru_r01.hl7");
    check_eval(s.msg, "OBX[3]-5 = '254'", true, NULL);
    check_eval(s.msg, "OBX[2]-3.1 = 'WBC'", true, NULL);
    check_eval(s.msg, "OBX-5 = '118'", true, NULL);             /* the first */
    check_eval(s.msg, "OBX[4]-5 = '254'", false, "OBX[4]-5 = '254': OBX[4]-5 is absent");
    sample_close(&s);
}

static void test_in(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, "MSH-9.2 in ('A01')", true, NULL);
    check_eval(s.msg, "MSH-9.2 in ('A08', 'A01')", true, NULL);
    check_eval(s.msg, "MSH-9.2 in ('A02','A03')", false,
               "MSH-9.2 in ('A02','A03'): MSH-9.2 is 'A01'");
    check_eval(s.msg, "MSH-9.2 in ('A02', EVN-1)", true, NULL);   /* paths in the list */
    check_eval(s.msg, "MSH-9.1 in ('A02', EVN-1)", false,
               "MSH-9.1 in ('A02', EVN-1): MSH-9.1 is 'ADT', EVN-1 is 'A01'");
    check_eval(s.msg, "PID-1 in (2, 1)", true, NULL);
    check_eval(s.msg, "ZZZ-1 in ('', 'x')", true, NULL);
    check_eval(s.msg, "MSH-9.2 in(\n\t'A01'\n)", true, NULL);     /* any white space */
    sample_close(&s);
}

static void test_regex(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, "MSH-9.2 ~ 'A0[1-3]'", true, NULL);
    check_eval(s.msg, "MSH-9.2 ~ '^A0[1-3]$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ 'MIT'", true, NULL);              /* anywhere */
    check_eval(s.msg, "PID-5.1 ~ '^MIT'", false, "PID-5.1 ~ '^MIT': PID-5.1 is 'SMITH'");
    check_eval(s.msg, "PID-5.1 ~ 'SMI$'", false, "PID-5.1 ~ 'SMI$': PID-5.1 is 'SMITH'");
    check_eval(s.msg, "PID-5.1 ~ '^SMITH$'", true, NULL);
    check_eval(s.msg, "PID-11.5 ~ '^E1 [0-9][A-Z]{2}$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ '^(SMITH|JONES)$'", true, NULL);
    check_eval(s.msg, "ZZZ-1 ~ '^$'", true, NULL);
    check_eval(s.msg, "ZZZ-1 ~ 'x'", false, "ZZZ-1 ~ 'x': ZZZ-1 is absent");
    check_eval(s.msg, "PV1-3.1 ~ '^RLH-W[0-9]+'", true, NULL);
    /* repetitions of what cannot be empty, brackets and classes are fine */
    check_eval(s.msg, "PID-5.1 ~ '^(([A-Z]+)+)+$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ '^[]A-Z[:digit:]]{2,8}$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ '^(S?M)+ITH$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ '^[[:upper:]]{5}$'", true, NULL);
    check_eval(s.msg, "PID-5.1 ~ '.{0,999}'", true, NULL);
    sample_close(&s);
}

static void test_decoded_values(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a08_escapes.hl7");
    check_eval(s.msg, "PID-11.1 = 'FLAT 2&3'", true, NULL);          /* \T\ */
    check_eval(s.msg, "PID-11.1 = 'FLAT 2\\T\\3'", false,
               "PID-11.1 = 'FLAT 2\\T\\3': PID-11.1 is 'FLAT 2&3'");
    check_eval(s.msg, "NTE-3 ~ 'present [|] interpreter'", true, NULL);   /* \F\ */
    check_eval(s.msg, "NTE-3 ~ '^Carer.*see note~second part$'", true, NULL);
    check_eval(s.msg, "OBX-5 = 'x'", false,
               "OBX-5 = 'x': OBX-5 is 'Line one\\x0d\\x0aLine two with caf\xc3\xa9'");
    check_eval(s.msg, "PID-5.1 = \"O'NEILL\"", true, NULL);
    check_eval(s.msg, "PID-5.1 = 'O''NEILL'", true, NULL);
    sample_close(&s);

    /* The HL7 null "" is a value: two quotes. */
    text_open(&s, "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.4\rPID|1||X||\"\"\r");
    check_eval(s.msg, "PID-5 = '\"\"'", true, NULL);
    check_eval(s.msg, "exists(PID-5)", true, NULL);
    check_eval(s.msg, "PID-5", true, NULL);
    sample_close(&s);
}

static void test_strings(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, "'it''s' = \"it's\"", true, NULL);
    check_eval(s.msg, "\"say \"\"hi\"\"\" = 'say \"hi\"'", true, NULL);
    check_eval(s.msg, "'''' = \"'\"", true, NULL);
    check_eval(s.msg, "'' = \"\"", true, NULL);
    check_eval(s.msg, "'a\\b' ~ '^a[\\\\]b$'", true, NULL);        /* no escapes in strings */
    check_eval(s.msg, "'and or not in' = \"and or not in\"", true, NULL);
    check_eval(s.msg, "'x' = 'y'", false, "'x' = 'y': it is false");
    sample_close(&s);
}

/* ---------------------------------------------------- logic and reasons */

static void test_logic_and_precedence(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    /* and */
    check_eval(s.msg, "MSH-9.1 = 'ADT' and PID-8 = 'M'", true, NULL);
    check_eval(s.msg, "MSH-9.1 = 'ADT' and PID-8 = 'F' and MSH-9.2 = 'A08'", false,
               "PID-8 = 'F': PID-8 is 'M'");
    /* or: every operand's reason */
    check_eval(s.msg, "MSH-9.2 = 'A08' or MSH-9.2 = 'A01'", true, NULL);
    check_eval(s.msg, "MSH-9.2 = 'A08' or MSH-9.1 = 'ORU' or PID-8 != 'M'", false,
               "MSH-9.2 = 'A08': MSH-9.2 is 'A01'; MSH-9.1 = 'ORU': MSH-9.1 is 'ADT'; "
               "PID-8 != 'M': PID-8 is 'M'");
    /* not */
    check_eval(s.msg, "not MSH-9.2 = 'A08'", true, NULL);
    check_eval(s.msg, "not MSH-9.2 = 'A01'", false,
               "not MSH-9.2 = 'A01': it is true (MSH-9.2 is 'A01')");
    check_eval(s.msg, "not (MSH-9.1 = 'ADT' and PID-8 = 'M')", false,
               "not (MSH-9.1 = 'ADT' and PID-8 = 'M'): it is true");
    check_eval(s.msg, "not not PID-8 = 'M'", true, NULL);
    check_eval(s.msg, "not exists(ZU1)", true, NULL);
    /* and binds tighter than or: (F and T) or T */
    check_eval(s.msg, "MSH-9.1 = 'ORU' and PID-8 = 'M' or MSH-9.2 = 'A01'", true, NULL);
    check_eval(s.msg, "MSH-9.2 = 'A01' or MSH-9.1 = 'ORU' and PID-8 = 'M'", true, NULL);
    check_eval(s.msg, "(MSH-9.2 = 'A01' or MSH-9.1 = 'ORU') and PID-8 = 'F'", false,
               "PID-8 = 'F': PID-8 is 'M'");
    check_eval(s.msg, "MSH-9.1 = 'ORU' and (PID-8 = 'M' or MSH-9.2 = 'A01')", false,
               "MSH-9.1 = 'ORU': MSH-9.1 is 'ADT'");
    /* not binds tighter than and and or */
    check_eval(s.msg, "not MSH-9.1 = 'ADT' and MSH-9.2 = 'XXX'", false,
               "not MSH-9.1 = 'ADT': it is true (MSH-9.1 is 'ADT')");
    check_eval(s.msg, "not (MSH-9.1 = 'ADT' and MSH-9.2 = 'XXX')", true, NULL);
    check_eval(s.msg, "not MSH-9.1 = 'ADT' or MSH-9.2 = 'A01'", true, NULL);
    check_eval(s.msg, "not (MSH-9.1 = 'ADT' or MSH-9.2 = 'A01')", false,
               "not (MSH-9.1 = 'ADT' or MSH-9.2 = 'A01'): it is true");
    /* a false and inside an or */
    check_eval(s.msg, "(MSH-9.1 = 'ORU' and PID-8 = 'M') or (MSH-9.2 = 'A08' and PID-8 = 'M')",
               false, "MSH-9.1 = 'ORU': MSH-9.1 is 'ADT'; MSH-9.2 = 'A08': MSH-9.2 is 'A01'");
    /* a true or inside an and leaves no reason behind */
    check_eval(s.msg, "(MSH-9.2 = 'A08' or PID-8 = 'M') and PID-7 = 1",
               false, "PID-7 = 1: PID-7 is '19700101'");
    /* parentheses and white space anywhere */
    check_eval(s.msg, " ( ( MSH-9.2='A01' ) )\n", true, NULL);
    check_eval(s.msg, "(MSH-9.2='A02')", false, "MSH-9.2='A02': MSH-9.2 is 'A01'");
    sample_close(&s);
}

static void test_functions(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    check_eval(s.msg, "exists(PID-3)", true, NULL);
    check_eval(s.msg, "exists(PD1)", true, NULL);                   /* a segment */
    check_eval(s.msg, "exists(ZU1)", false, "exists(ZU1): ZU1 is absent");
    check_eval(s.msg, "exists(PID-2)", false, "exists(PID-2): PID-2 is empty");
    check_eval(s.msg, "exists(PID-3[2].4)", true, NULL);
    check_eval(s.msg, "exists(PID-3[3])", false, "exists(PID-3[3]): PID-3[3] is absent");
    check_eval(s.msg, "in_table(PV1-3.4, 'site-codes')", true, NULL);
    check_eval(s.msg, "in_table(PV1-3.1, 'site-codes')", true, NULL);
    check_eval(s.msg, "in_table(PID-5.1, 'site-codes')", false,
               "in_table(PID-5.1, 'site-codes'): PID-5.1 is 'SMITH', not a key of site-codes");
    check_eval(s.msg, "in_table(ZZZ-1, 'site-codes')", false,
               "in_table(ZZZ-1, 'site-codes'): ZZZ-1 is absent");
    check_eval(s.msg, "not in_table(PV1-3.4, 'site-codes')", false,
               "not in_table(PV1-3.4, 'site-codes'): it is true "
               "(PV1-3.4 is 'RLH', a key of site-codes)");
    check_eval(s.msg, "exists(PV1-3.4) and not in_table(PV1-3.4, \"site-codes\")", false, NULL);
    sample_close(&s);
}

static void test_why_appends_and_eval_edges(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    struct route_expr *e = compile_at("PID-8 = 'F'", __FILE__, __LINE__);
    struct buf why = {0};
    buf_puts(&why, "route adt: ");
    assert_false(route_expr_eval(e, s.msg, &why));
    assert_string_equal(why.p, "route adt: PID-8 = 'F': PID-8 is 'M'");
    buf_free(&why);
    assert_false(route_expr_eval(NULL, s.msg, NULL));
    assert_false(route_expr_eval(e, NULL, NULL));
    route_expr_free(e);
    route_expr_free(NULL);

    /* A long value is cut in the reason. */
    char msg[400];
    snprintf(msg, sizeof msg, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\rNTE|1||%s\r",
             "0123456789012345678901234567890123456789012345678901234567890123456789");
    sample_close(&s);
    text_open(&s, msg);
    check_eval(s.msg, "NTE-3 = 'x'", false, "NTE-3 = 'x': NTE-3 is "
               "'0123456789012345678901234567890123456789012345678901234567890123...'");
    sample_close(&s);
}

static void test_nesting_limit(void **state)
{
    (void)state;
    char text[512];
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    size_t n = 0;
    for (int i = 0; i < 64; i++)
        text[n++] = '(';
    n += (size_t)snprintf(text + n, sizeof text - n, "PID-8");
    for (int i = 0; i < 64; i++)
        text[n++] = ')';
    text[n] = '\0';
    check_eval(s.msg, text, true, NULL);                       /* 64 levels */
    memmove(text + 1, text, n + 1);
    text[0] = '(';
    strcat(text, ")");
    check_error(text, 65, "the expression nests more than 64 levels deep");

    n = 0;
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "not ");
    snprintf(text + n, sizeof text - n, "PID-8");
    check_eval(s.msg, text, true, NULL);                       /* 64 nots: even */
    memmove(text + 4, text, strlen(text) + 1);
    memcpy(text, "not ", 4);
    check_error(text, 257, "the expression nests more than 64 levels deep");
    sample_close(&s);
}

/* -------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    check_error("", 1, "the expression is empty: leave `when` out to take every message");
    check_error("  \n", 1, "the expression is empty: leave `when` out to take every message");
    /* lists */
    check_error("MSH-9.2 in ('A01','A02'", 24, "expected ')' after the list of values");
    check_error("MSH-9.2 in ('A01' 'A02')", 19,
                "expected ',' or ')' in the list of values, found ''A02''");
    check_error("MSH-9.2 in 'A01'", 12,
                "expected '(' after 'in', like in ('A01','A02'), found ''A01''");
    check_error("MSH-9.2 in", 11,
                "expected '(' after 'in', like in ('A01','A02'), found the end of the expression");
    check_error("MSH-9.2 in ()", 13, "expected a value in the list, found ')'");
    check_error("MSH-9.2 in ('A01',)", 19, "expected a value in the list, found ')'");
    check_error("MSH-9.2 in ('A01', exists(PID-3))", 20,
                "expected a value in the list, found the function exists(): a function is "
                "true or false, not a value");
    check_error("PID-3 in ('A', ADT)", 16,
                "'ADT' is a segment, not a value: write a string in quotes ('ADT') or a field "
                "(ADT-1)");
    /* functions */
    check_error("exist(PID-3)", 1, "unknown function 'exist' (did you mean exists?)");
    check_error("PID-8 = 'M' and nhs_number_vaild(PID-3)", 17,
                "unknown function 'nhs_number_vaild' (did you mean nhs_number_valid?)");
    check_error("frobnicate(PID-3)", 1, "unknown function 'frobnicate' (the functions are "
                "exists, nhs_number_valid, in_table and objected)");
    check_error("in_table(PV1-3.4, 'site-code')", 19,
                "unknown table 'site-code' (did you mean site-codes?)");
    check_error("in_table(PV1-3.4, 'zzzzzzzzz')", 19, "unknown table 'zzzzzzzzz'");
    check_error("in_table(PV1-3.4)", 17,
                "expected ',' and a table name in quotes: in_table(PATH, 'table')");
    check_error("in_table(PV1-3.4, site-codes)", 19, "expected a table name in quotes: "
                "in_table(PATH, 'table'), found 'site-codes'");
    check_error("exists('PID-3')", 8,
                "exists() takes a path first, like exists(PID-3), found ''PID-3''");
    check_error("exists(exists(PID-3))", 8,
                "exists() takes a path first, like exists(PID-3), found 'exists'");
    check_error("nhs_number_valid()", 18, "nhs_number_valid() takes a path first, like "
                "nhs_number_valid(PID-3), found ')'");
    check_error("exists(PID-3", 13, "expected ')' to close exists(: it takes one path, "
                "found the end of the expression");
    check_error("exists(PID-3, 'x')", 13,
                "expected ')' to close exists(: it takes one path, found ','");
    check_error("in_table(PV1-3.4, 'site-codes', 'x')", 31,
                "expected ')' to close in_table(: it takes two arguments, found ','");
    check_error("exists(PID-3) = 'x'", 15, "exists(PID-3) is true or false: it cannot be "
                "compared (use it alone, or after 'not')");
    check_error("exists", 1, "exists is a function: write exists(PATH)");
    check_error("PID-3 and in_table", 11, "in_table is a function: write in_table(PATH, '...')");
    check_error("PID-8 = exists(PID-3)", 9, "expected a path, a string or a number after '=', "
                "found the function exists(): a function is true or false, not a value");
    check_error("objected(PID-3, 'Research')", 17, "bad purpose 'Research': 1 to 64 "
                "characters of a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    check_error("objected(PID-3, '')", 17, "bad purpose '': 1 to 64 "
                "characters of a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    check_error("objected('9990000018', 'research')", 10, "objected() takes a path first, "
                "like objected(PID-3, 'research'), found ''9990000018''");
    check_error("objected(PID-3)", 15,
                "expected ',' and a purpose in quotes: objected(PATH, 'purpose')");
    /* values */
    check_error("MSH-9.1 = ADT", 11, "'ADT' is a segment, not a value: write a string in "
                "quotes ('ADT') or a field (ADT-1)");
    check_error("MSH-9.1 = 'ADT", 11, "a string opened here is never closed (a quote inside "
                "a string is written twice: 'O''Brien')");
    check_error("PID-5.1 = 'O'NEILL'", 13, "the string ends here: a quote inside a string "
                "is written twice: 'O''Brien'");
    check_error("PID-5.1 in ('O'NEILL', 'X')", 15, "the string ends here: a quote inside a "
                "string is written twice: 'O''Brien'");
    check_error("(PID-5.1 = \"O\"NEILL\")", 14, "the string ends here: a quote inside a "
                "string is written twice: 'O''Brien'");
    check_error("pid-3 = 'x'", 1, "bad path 'pid-3': a path starts with a three-character "
                "segment id in capitals, like PID");
    check_error("MSH-9.1 = 'ADT' and PID-x = 'y'", 25,
                "bad path 'PID-x': a field number is a number from 1, like PID-3");
    check_error("OBX[0]-5 = '1'", 5, "bad path 'OBX[0]-5': a segment index is a number from 1 "
                "in brackets, like OBX[2]");
    check_error("PID-3[2]x = '1'", 9,
                "bad path 'PID-3[2]x': a component follows a '.', like PID-5.1");
    check_error("12abc", 1, "bad path '12abc': a path starts with a three-character segment "
                "id in capitals, like PID");
    check_error("MSH-9.1 = 'ADT' and foo", 21, "unexpected word 'foo': expected a path (like "
                "PID-3), a string in quotes, a number or a function (strings are in quotes: "
                "'ADT')");
    check_error("MSH-9.1 = 'ADT' and", 20, "expected a path (like PID-3), a string in quotes, "
                "a number or a function, found the end of the expression");
    check_error("and", 1, "expected a path (like PID-3), a string in quotes, a number or a "
                "function, found 'and'");
    check_error("MSH-9.1 = ", 11, "expected a path, a string or a number after '=', found "
                "the end of the expression");
    check_error("PID-8 != )", 10,
                "expected a path, a string or a number after '!=', found ')'");
    /* regular expressions */
    check_error("PID-3 ~ PID-5", 9, "the right of '~' is a regular expression in quotes, "
                "like '^A0[1-3]$'");
    regex_t re;
    char want[300], reason[160];
    int rc = regcomp(&re, "(", REG_EXTENDED | REG_NOSUB);
    assert_int_not_equal(rc, 0);
    regerror(rc, &re, reason, sizeof reason);
    snprintf(want, sizeof want, "bad regular expression '(': %s", reason);
    check_error("PID-3 ~ '('", 9, want);
    rc = regcomp(&re, "a{2,1}", REG_EXTENDED | REG_NOSUB);
    assert_int_not_equal(rc, 0);
    regerror(rc, &re, reason, sizeof reason);
    snprintf(want, sizeof want, "bad regular expression \"a{2,1}\": %s", reason);
    check_error("MSH-9.2 = 'A01' and PID-3 ~ \"a{2,1}\"", 29, want);
    /* patterns glibc would take minutes or gigabytes to compile */
    check_error("PID-5.1 ~ '^S?????+++'", 11, "regular expression '^S?????+++': a repetition "
                "of something that can already match nothing, like (a*)+ or a?*: keep only one "
                "of the repetitions");
    check_error("PID-5.1 ~ '^((S+)*)+'", 11, "regular expression '^((S+)*)+': a repetition of "
                "something that can already match nothing, like (a*)+ or a?*: keep only one of "
                "the repetitions");
    check_error("PID-5.1 ~ '(A|)*'", 11, "regular expression '(A|)*': a repetition of "
                "something that can already match nothing, like (a*)+ or a?*: keep only one of "
                "the repetitions");
    check_error("PID-5.1 ~ 'a{100}{100}'", 11, "regular expression 'a{100}{100}': too large: "
                "with its repetitions expanded it has more than 1000 elements");
    check_error("PID-5.1 ~ '(S)\\1'", 11,
                "regular expression '(S)\\1': back-references (\\1) are not supported");
    {
        char deep[200] = "PID-5.1 ~ '";
        for (int i = 0; i < 65; i++)
            strcat(deep, "(");
        strcat(deep, "'");
        char want_deep[200] = "regular expression '";      /* 64 bytes quoted, then ... */
        for (int i = 0; i < 63; i++)
            strcat(want_deep, "(");
        strcat(want_deep, "...: groups nest too deeply");
        check_error(deep, 11, want_deep);
    }
    /* operators that are not */
    check_error("MSH-9.1 == 'ADT'", 9, "'==' is not an operator: equality is a single '='");
    check_error("MSH-9.1 = 'ADT' && PID-8 = 'M'", 17, "'&' is not an operator: write 'and'");
    check_error("MSH-9.1 = 'ADT' || PID-8 = 'M'", 17, "'|' is not an operator: write 'or'");
    check_error("!exists(PID-3)", 1, "'!' is not an operator: write 'not'");
    check_error("PID-3 !~ 'x'", 7, "'!~' is not an operator: write not (A ~ 'regex')");
    check_error("PID-8 <> 'M'", 7,
                "'<' is not an operator: the comparisons are =, !=, ~ and in (...)");
    check_error("PID-7 > 1970", 7,
                "'>' is not an operator: the comparisons are =, !=, ~ and in (...)");
    check_error("MSH-9.1 = 'ADT' AND MSH-9.2 = 'A01'", 17,
                "keywords are lower case: write 'and', not 'AND'");
    check_error("MSH-9.1 = 'ADT' Or PID-8", 17, "keywords are lower case: write 'or', not 'Or'");
    check_error("NOT MSH-9.1 = 'ADT'", 1, "keywords are lower case: write 'not', not 'NOT'");
    check_error("MSH-9.1 'ADT'", 9, "expected an operator (=, !=, ~, in), 'and', 'or' or the "
                "end of the expression, found ''ADT''");
    check_error("MSH-9.1 = 'a' = 'b'", 15,
                "expected 'and', 'or' or the end of the expression, found '='");
    /* parentheses */
    check_error("(MSH-9.1 = 'ADT'", 17, "expected ')' to close the '(' at column 1, found the "
                "end of the expression");
    check_error("MSH-9.1 = 'ADT')", 16, "')' without a '(' before it");
    check_error("()", 2, "expected a path (like PID-3), a string in quotes, a number or a "
                "function, found ')'");
    /* characters */
    check_error("MSH-9.1 = 'ADT' # note", 17, "unexpected character '#'");
    check_error("PID-3 = -x", 9, "unexpected character '-'");
    check_error("PID-3 = \x01", 9, "unexpected byte 0x01");
    check_error("PID-3 = \xc3\xa9", 9, "unexpected byte 0xc3");
}

static void test_unknown_table_without_tables(void **state)
{
    (void)state;
    struct route_expr *e = NULL;
    struct route_error err;
    assert_int_equal(route_expr_compile("in_table(PV1-3.4, 'site-codes')", NULL, &e, &err), -1);
    assert_null(e);
    assert_string_equal(err.msg, "column 19: unknown table 'site-codes' "
                        "(no tables are configured)");
    assert_int_equal(err.column, 19);
    /* objected() needs the register (the broker's routes have one). */
    assert_int_equal(route_expr_compile("not objected(PID-3, 'research')", NULL, &e, &err), -1);
    assert_string_equal(err.msg, "column 5: objected() needs the objections register, which "
                        "only the broker's routes have");
    /* Expressions without tables compile without them. */
    assert_int_equal(route_expr_compile("PID-8 = 'M'", NULL, &e, &err), 0);
    route_expr_free(e);
}

static void test_objected(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");                   /* 9990000018 */
    check_eval(s.msg, "objected(PID-3, 'research')", true, NULL);
    check_eval(s.msg, "MSH-9.1 = 'ADT' and not objected(PID-3, 'research')", false,
               "not objected(PID-3, 'research'): it is true (NHS number '9990000018' "
               "objected for research)");
    check_eval(s.msg, "objected(PID-3, 'direct_care')", false,
               "objected(PID-3, 'direct_care'): NHS number '9990000018' has no objection "
               "for direct_care");
    check_eval(s.msg, "objected(PID-3.1, 'research')", true, NULL);   /* the value itself */
    check_eval(s.msg, "objected(PID-3[2].1, 'research')", false, NULL);
    check_eval(s.msg, "objected(PID-19, 'research')", false,
               "objected(PID-19, 'research'): PID-19 holds no NHS number");
    /* Compiled once; a change made at run time shows at the next eval. */
    struct route_expr *e = NULL;
    struct route_error err;
    assert_int_equal(route_expr_compile("objected(PID-3, 'direct_care')", tables, &e, &err), 0);
    assert_false(route_expr_eval(e, s.msg, NULL));
    bool changed;
    assert_int_equal(objections_change(reg, "9990000018", "direct_care", true, &changed), 0);
    assert_true(changed);
    assert_true(route_expr_eval(e, s.msg, NULL));
    assert_int_equal(objections_change(reg, "9990000018", "direct_care", false, &changed), 0);
    assert_true(changed);
    assert_false(route_expr_eval(e, s.msg, NULL));
    route_expr_free(e);
    sample_close(&s);
    /* Spaces in the number are removed before the lookup. */
    text_open(&s, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"
                  "PID|1||999 000 0018^^^NHS^NH||X^Y\r");
    check_eval(s.msg, "objected(PID-3, 'research')", true, NULL);
    sample_close(&s);
    sample_open(&s, "oru_r01.hl7");                   /* 9990000042: no objection */
    check_eval(s.msg, "objected(PID-3, 'research')", false, NULL);
    sample_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adt_filter_on_samples),
        cmocka_unit_test(test_nhs_number_valid),
        cmocka_unit_test(test_objected),
        cmocka_unit_test(test_operators_and_paths),
        cmocka_unit_test(test_in),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_decoded_values),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_logic_and_precedence),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_why_appends_and_eval_edges),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unknown_table_without_tables),
    };
    return cmocka_run_group_tests(tests, load_tables, free_tables);
}
