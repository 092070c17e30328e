/*
 * test_hl7_path.c: path compilation and formatting, reads (raw and
 * decoded) with the four presences, and element counts.
 */
#include "hl7_test_util.h"

/* ------------------------------------------------------------ compile */

struct good_path {
    const char *text;
    struct hl7_path want;
    const char *canonical;    /* what hl7_path_format writes */
};

static const struct good_path good_paths[] = {
    { "PID-3",            { "PID", 0, 3, 0, 0, 0 },  "PID-3" },
    { "PID-3[2]",         { "PID", 0, 3, 2, 0, 0 },  "PID-3[2]" },
    { "PID-3[2].1",       { "PID", 0, 3, 2, 1, 0 },  "PID-3[2].1" },
    { "PID-5.1.1",        { "PID", 0, 5, 0, 1, 1 },  "PID-5.1.1" },
    { "OBX[3]-5",         { "OBX", 3, 5, 0, 0, 0 },  "OBX[3]-5" },
    { "MSH-9.2",          { "MSH", 0, 9, 0, 2, 0 },  "MSH-9.2" },
    { "PID.3.1",          { "PID", 0, 3, 0, 1, 0 },  "PID-3.1" },
    { "PID.3[2].1",       { "PID", 0, 3, 2, 1, 0 },  "PID-3[2].1" },
    { "PID",              { "PID", 0, 0, 0, 0, 0 },  "PID" },
    { "OBX[2]",           { "OBX", 2, 0, 0, 0, 0 },  "OBX[2]" },
    { "ZZ1-2",            { "ZZ1", 0, 2, 0, 0, 0 },  "ZZ1-2" },
    { "MSH-1",            { "MSH", 0, 1, 0, 0, 0 },  "MSH-1" },
    { "PV1-44",           { "PV1", 0, 44, 0, 0, 0 }, "PV1-44" },
    { "OBX[12]-5[3].4.2", { "OBX", 12, 5, 3, 4, 2 }, "OBX[12]-5[3].4.2" },
    { "PID-3[1].1",       { "PID", 0, 3, 1, 1, 0 },  "PID-3[1].1" },
};

static void assert_path_equal(const struct hl7_path *got, const struct hl7_path *want,
                              const char *text)
{
    if (strcmp(got->seg, want->seg) != 0 || got->seg_seq != want->seg_seq ||
        got->field != want->field || got->rep != want->rep ||
        got->comp != want->comp || got->sub != want->sub)
        fail_msg("\"%s\" compiled to %s[%u]-%u[%u].%u.%u, want %s[%u]-%u[%u].%u.%u",
                 text, got->seg, got->seg_seq, got->field, got->rep, got->comp,
                 got->sub, want->seg, want->seg_seq, want->field, want->rep,
                 want->comp, want->sub);
}

static void test_path_parse_good(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good_paths); i++) {
        const struct good_path *c = &good_paths[i];
        struct hl7_path p;
        struct hl7_error err = {0};
        memset(&p, 0x5a, sizeof p);
        int rc = hl7_path_parse(c->text, strlen(c->text), &p, &err);
        if (rc != 0)
            fail_msg("\"%s\": rc %d at column %zu", c->text, rc, err.offset);
        assert_path_equal(&p, &c->want, c->text);
    }
}

/* The length given is respected: the text need not be NUL-terminated. */
static void test_path_parse_uses_len(void **state)
{
    (void)state;
    struct hl7_path p;
    assert_int_equal(hl7_path_parse("PID-3.1", 5, &p, NULL), 0);
    assert_path_equal(&p, &(struct hl7_path){ "PID", 0, 3, 0, 0, 0 }, "PID-3 of PID-3.1");
    char *exact = dup_exact("OBX[3]-5", 8);        /* no NUL after it */
    assert_int_equal(hl7_path_parse(exact, 8, &p, NULL), 0);
    assert_path_equal(&p, &(struct hl7_path){ "OBX", 3, 5, 0, 0, 0 }, "OBX[3]-5");
    free(exact);
}

struct bad_path {
    const char *text;
    size_t lo, hi;            /* 0-based column at fault: where the bad
                                 element starts, or the character itself */
};

/* Decision: segment names are upper case (HL7 segment ids are), so
 * "pid-3" is refused at column 0 rather than read as PID-3 or as a
 * segment that can never exist. */
static const struct bad_path bad_paths[] = {
    { "", 0, 0 },
    { "PI", 0, 2 },
    { "P", 0, 1 },
    { "PID-", 4, 4 },
    { "PID-x", 4, 4 },
    { "PID-3[0]", 5, 6 },
    { "PID-3[", 6, 6 },
    { "PID-3[2", 7, 7 },
    { "PID-3[x]", 5, 6 },
    { "PID-3[]", 5, 6 },
    { "PID-0", 4, 4 },
    { "PID-3.0", 5, 6 },
    { "PID-3..1", 5, 6 },
    { "PID-3.1.", 7, 8 },
    { "PID-3.1.1.1", 9, 9 },
    { "PID-3x", 5, 5 },
    { "PID-3 ", 5, 5 },
    { "PID-3[2]x", 8, 8 },
    { "PIDX-3", 0, 3 },
    { "P!D-3", 0, 1 },
    { "pid-3", 0, 0 },
    { "PID[0]-3", 3, 4 },
    { "PID[2", 5, 5 },
    { "PID-99999999999999999999", 4, 23 },   /* anywhere in the number */
    { "-3", 0, 0 },
    { "PID_3", 3, 3 },
};

static void test_path_parse_bad(void **state)
{
    (void)state;
    int wrong = 0;
    for (size_t i = 0; i < ARRAY_LEN(bad_paths); i++) {
        const struct bad_path *c = &bad_paths[i];
        char *text = dup_exact(c->text, strlen(c->text));
        struct hl7_path p;
        struct hl7_error err;
        memset(&err, 0, sizeof err);
        int rc = hl7_path_parse(text, strlen(c->text), &p, &err);
        free(text);
        if (rc != HL7_E_BAD_PATH) {
            print_error("\"%s\": rc %d, want HL7_E_BAD_PATH\n", c->text, rc);
            wrong++;
            continue;
        }
        assert_int_equal(err.code, HL7_E_BAD_PATH);
        assert_true(strlen(err.text) > 0);
        if (err.offset < c->lo || err.offset > c->hi) {
            print_error("\"%s\": column %zu, want %zu..%zu (%s)\n", c->text,
                        err.offset, c->lo, c->hi, err.text);
            wrong++;
        }
        /* err may be NULL */
        assert_int_equal(hl7_path_parse(c->text, strlen(c->text), &p, NULL),
                         HL7_E_BAD_PATH);
    }
    assert_int_equal(wrong, 0);
}

/* ------------------------------------------------------------- format */

static void test_path_format_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good_paths); i++) {
        const struct good_path *c = &good_paths[i];
        struct buf b = {0};
        assert_int_equal(hl7_path_format(&c->want, &b), 0);
        assert_buf(&b, c->canonical);
        struct hl7_path again;
        assert_int_equal(hl7_path_parse(b.p, b.len, &again, NULL), 0);
        assert_path_equal(&again, &c->want, b.p);
        buf_free(&b);
    }
    /* appends */
    struct buf b = {0};
    buf_puts(&b, "at ");
    struct hl7_path p = { "OBX", 2, 5, 1, 3, 2 };
    assert_int_equal(hl7_path_format(&p, &b), 0);
    assert_buf(&b, "at OBX[2]-5[1].3.2");
    buf_free(&b);
}

/* ------------------------------------------------------------ presence */

/* PID-1 "1", PID-2 empty, PID-3 X, PID-5 DOE^""^^&"", PID-6/7 empty,
 * PID-8 the HL7 null, PID-9 empty (a trailing separator), no PID-10. */
static const char presence_msg[] =
    "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"
    "PID|1||X||DOE^\"\"^^&\"\"|||\"\"|\r";

static void test_presence(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        enum hl7_presence pres;
        const char *raw;
    } cases[] = {
        { "PID-1",     HL7_VALUE,  "1" },
        { "PID[1]-1",  HL7_VALUE,  "1" },
        { "PID-2",     HL7_EMPTY,  "" },
        { "PID-3",     HL7_VALUE,  "X" },
        { "PID-3[1]",  HL7_VALUE,  "X" },
        { "PID-3[2]",  HL7_ABSENT, "" },
        { "PID-3.1",   HL7_VALUE,  "X" },
        { "PID-3.1.1", HL7_VALUE,  "X" },
        { "PID-3.2",   HL7_ABSENT, "" },
        { "PID-5.1",   HL7_VALUE,  "DOE" },
        { "PID-5.1.2", HL7_ABSENT, "" },
        { "PID-5.2",   HL7_NULL,   "\"\"" },
        { "PID-5.3",   HL7_EMPTY,  "" },
        { "PID-5.4",   HL7_VALUE,  "&\"\"" },
        { "PID-5.4.1", HL7_EMPTY,  "" },
        { "PID-5.4.2", HL7_NULL,   "\"\"" },
        { "PID-5.5",   HL7_ABSENT, "" },
        { "PID-7",     HL7_EMPTY,  "" },
        { "PID-8",     HL7_NULL,   "\"\"" },
        { "PID-9",     HL7_EMPTY,  "" },
        { "PID-10",    HL7_ABSENT, "" },
        { "PID-99",    HL7_ABSENT, "" },
        { "PID[2]-1",  HL7_ABSENT, "" },
        { "PID[2]",    HL7_ABSENT, "" },
        { "PV1-1",     HL7_ABSENT, "" },
        { "PV1",       HL7_ABSENT, "" },
        { "PID",       HL7_VALUE,  "PID|1||X||DOE^\"\"^^&\"\"|||\"\"|" },
        { "MSH-8",     HL7_EMPTY,  "" },
        { "MSH-13",    HL7_ABSENT, "" },
    };
    struct sample s;
    text_open(&s, presence_msg);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct hl7_path p = P(cases[i].path);
        struct hl7_span sp = { "garbage", 7 };
        enum hl7_presence got = hl7_get(s.msg, &p, &sp);
        if (got != cases[i].pres)
            fail_msg("%s: %s, want %s", cases[i].path, presence_name(got),
                     presence_name(cases[i].pres));
        check_bytes(sp.p, sp.len, cases[i].raw, strlen(cases[i].raw), cases[i].path,
                    __FILE__, __LINE__);
        /* hl7_get_str agrees */
        struct hl7_span sp2 = {0};
        assert_int_equal(hl7_get_str(s.msg, cases[i].path, &sp2), got);
        assert_int_equal(sp2.len, sp.len);
    }
    sample_close(&s);
}

static void test_get_str_bad_path_is_absent(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    static const char *bad[] = { "", "PID-", "PID-3[0]", "pid-3", "PID-x" };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct hl7_span sp = { "garbage", 7 };
        assert_int_equal(hl7_get_str(s.msg, bad[i], &sp), HL7_ABSENT);
        assert_int_equal(sp.len, 0);
    }
    struct hl7_span sp;
    assert_int_equal(hl7_get_str(s.msg, "PID-5.1", &sp), HL7_VALUE);
    assert_span(sp, "SMITH");
    sample_close(&s);
}

static void test_get_decoded_appends(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a08_escapes.hl7");
    struct buf b = {0};
    buf_puts(&b, "addr: ");
    struct hl7_path p = P("PID-11.1");
    assert_int_equal(hl7_get_decoded(s.msg, &p, &b), HL7_VALUE);
    assert_buf(&b, "addr: FLAT 2&3");

    /* absent and empty leave the buffer as it was */
    size_t before = b.len;
    p = P("PID-11.4");
    assert_int_equal(hl7_get_decoded(s.msg, &p, &b), HL7_EMPTY);
    p = P("ZZZ-1");
    assert_int_equal(hl7_get_decoded(s.msg, &p, &b), HL7_ABSENT);
    assert_int_equal(b.len, before);
    buf_free(&b);
    sample_close(&s);

    /* decoding uses the message's own escape character */
    text_open(&s, "MSH*%$@!*A*B*C*D*20260101**ADT%A01*1*P*2.5\r"
                  "PID*1**X**A@F@B@S@C@T@D@R@E@E@F\\F\\\r");
    assert_decoded(s.msg, "PID-5", "A*B%C!D$E@F\\F\\");
    sample_close(&s);
}

/* --------------------------------------------------------------- count */

/* Assumption: a field path counts repetitions, a repetition path (or a
 * component path given a repetition) components, a component path
 * subcomponents. */
static void test_count(void **state)
{
    (void)state;
    static const struct {
        const char *file;     /* NULL: count_msg */
        const char *path;
        size_t want;
    } cases[] = {
        { "adt_a01.hl7", "PID-3", 2 },
        { "adt_a01.hl7", "PID-5", 1 },
        { "adt_a01.hl7", "PID-3[1]", 5 },
        { "adt_a01.hl7", "PID-3[2]", 5 },
        { "adt_a01.hl7", "PID-5[1]", 5 },
        { "adt_a01.hl7", "PID-5.1", 1 },
        { "adt_a01.hl7", "PID-2", 0 },
        { "adt_a01.hl7", "PID-40", 0 },
        { "adt_a01.hl7", "PID-3[3]", 0 },
        { "adt_a01.hl7", "ZZZ-1", 0 },
        { "adt_a01.hl7", "MSH-9", 1 },
        { "adt_a01.hl7", "MSH-9[1]", 3 },
        { "oru_r01.hl7", "OBX[3]-3[1]", 3 },
        { NULL, "ZZZ-1", 2 },
        { NULL, "ZZZ-1[1]", 2 },
        { NULL, "ZZZ-1[2]", 1 },
        { NULL, "ZZZ-1.1", 3 },
        { NULL, "ZZZ-1[1].1", 3 },
        { NULL, "ZZZ-1.2", 1 },
        { NULL, "ZZZ-1[2].1", 1 },
        { NULL, "ZZZ-1.3", 0 },
        { NULL, "ZZZ-2", 0 },
        { NULL, "ZZZ-2[1]", 0 },
        { NULL, "ZZZ-3", 3 },
    };
    static const char count_msg[] =
        "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\rZZZ|a&b&c^d~e||x~~z\r";
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        if (cases[i].file)
            sample_open(&s, cases[i].file);
        else
            text_open(&s, count_msg);
        struct hl7_path p = P(cases[i].path);
        size_t got = hl7_count(s.msg, &p);
        if (got != cases[i].want)
            fail_msg("hl7_count(%s) in %s = %zu, want %zu", cases[i].path,
                     cases[i].file ? cases[i].file : "ZZZ message", got, cases[i].want);
        sample_close(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_parse_good),
        cmocka_unit_test(test_path_parse_uses_len),
        cmocka_unit_test(test_path_parse_bad),
        cmocka_unit_test(test_path_format_round_trip),
        cmocka_unit_test(test_presence),
        cmocka_unit_test(test_get_str_bad_path_is_absent),
        cmocka_unit_test(test_get_decoded_appends),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
