/*
 * test_hl7_edit.c: set, set_raw, clear, segment insert and delete, and
 * serialisation: unedited messages come out byte for byte, an edit changes
 * only the bytes it must, and edited output parses back to the values set.
 */
#include "hl7_test_util.h"

#define MSH_L "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20260101120000||ADT^A01^ADT_A01|C1|P|2.4\r"
#define PID_L "PID|1||123^^^NHS^NH||DOE^JANE\r"
#define PV1_L "PV1|1|I\r"
#define BASE  MSH_L PID_L PV1_L

enum op { SET, SET_RAW, CLEAR };

struct edit_case {
    enum op op;
    const char *path;
    const char *value;
    const char *want;         /* the whole message after the edit */
};

static const struct edit_case edit_cases[] = {
    /* set: field, repetition, component, subcomponent */
    { SET, "PID-5.1", "ROE",     MSH_L "PID|1||123^^^NHS^NH||ROE^JANE\r" PV1_L },
    { SET, "PID-5", "SMITH",     MSH_L "PID|1||123^^^NHS^NH||SMITH\r" PV1_L },
    { SET, "PID-5", "A^B",       MSH_L "PID|1||123^^^NHS^NH||A\\S\\B\r" PV1_L },
    { SET, "PID-3", "A~B",       MSH_L "PID|1||A\\R\\B||DOE^JANE\r" PV1_L },
    { SET, "PID-1", "2",         MSH_L "PID|2||123^^^NHS^NH||DOE^JANE\r" PV1_L },
    { SET, "PID-3.1", "999",     MSH_L "PID|1||999^^^NHS^NH||DOE^JANE\r" PV1_L },
    { SET, "PID-3[1].4", "RLH",  MSH_L "PID|1||123^^^RLH^NH||DOE^JANE\r" PV1_L },
    { SET, "PID-3[2]", "X",      MSH_L "PID|1||123^^^NHS^NH~X||DOE^JANE\r" PV1_L },
    { SET, "PID-3[2].4", "MR",   MSH_L "PID|1||123^^^NHS^NH~^^^MR||DOE^JANE\r" PV1_L },
    { SET, "PID-3[4].5", "NH",   MSH_L "PID|1||123^^^NHS^NH~~~^^^^NH||DOE^JANE\r" PV1_L },
    { SET, "PID-5[2].1", "ALIAS", MSH_L "PID|1||123^^^NHS^NH||DOE^JANE~ALIAS\r" PV1_L },
    { SET, "PID-5.1.2", "Y",     MSH_L "PID|1||123^^^NHS^NH||DOE&Y^JANE\r" PV1_L },
    { SET, "PID-5.3.2", "Z",     MSH_L "PID|1||123^^^NHS^NH||DOE^JANE^&Z\r" PV1_L },
    { SET, "PID-5.1.1", "A&B",   MSH_L "PID|1||123^^^NHS^NH||A\\T\\B^JANE\r" PV1_L },
    { SET, "PID-8", "F",         MSH_L "PID|1||123^^^NHS^NH||DOE^JANE|||F\r" PV1_L },
    { SET, "PV1-2", "a\r\nb",    MSH_L PID_L "PV1|1|a\\X0D\\\\X0A\\b\r" },
    { SET, "PV1-2.1.1", "O",     MSH_L PID_L "PV1|1|O\r" },
    { SET, "PID-8", "\"\"",      MSH_L "PID|1||123^^^NHS^NH||DOE^JANE|||\"\"\r" PV1_L },
    /* MSH fields: numbering counts MSH-1 as the separator itself */
    { SET, "MSH-3", "NEW",
      "MSH|^~\\&|NEW|RLH|LCR|ONELONDON|20260101120000||ADT^A01^ADT_A01|C1|P|2.4\r" PID_L PV1_L },
    { SET, "MSH-9.2", "A08",
      "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20260101120000||ADT^A08^ADT_A01|C1|P|2.4\r" PID_L PV1_L },
    { SET, "MSH-12", "2.5",
      "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20260101120000||ADT^A01^ADT_A01|C1|P|2.5\r" PID_L PV1_L },
    { SET, "MSH-15", "AL",
      "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20260101120000||ADT^A01^ADT_A01|C1|P|2.4|||AL\r" PID_L PV1_L },
    /* a segment that does not exist yet is appended */
    { SET, "ZZZ-2", "v",         BASE "ZZZ||v\r" },
    { SET, "ZZZ-1.2", "v",       BASE "ZZZ|^v\r" },
    /* set_raw: structure below the path is the caller's */
    { SET_RAW, "PID-3", "A~B^C", MSH_L "PID|1||A~B^C||DOE^JANE\r" PV1_L },
    { SET_RAW, "PID-5.1", "X&Y", MSH_L "PID|1||123^^^NHS^NH||X&Y^JANE\r" PV1_L },
    { SET_RAW, "PID-5", "\\T\\", MSH_L "PID|1||123^^^NHS^NH||\\T\\\r" PV1_L },
    { SET_RAW, "PID-7", "1970",  MSH_L "PID|1||123^^^NHS^NH||DOE^JANE||1970\r" PV1_L },
    { SET_RAW, "ZZZ-1", "a^b",   BASE "ZZZ|a^b\r" },
    /* clear: the element empties, the separators around it stay */
    { CLEAR, "PID-5", NULL,      MSH_L "PID|1||123^^^NHS^NH||\r" PV1_L },
    { CLEAR, "PID-5.1", NULL,    MSH_L "PID|1||123^^^NHS^NH||^JANE\r" PV1_L },
    { CLEAR, "PID-3[1].4", NULL, MSH_L "PID|1||123^^^^NH||DOE^JANE\r" PV1_L },
    { CLEAR, "PV1-2", NULL,      MSH_L PID_L "PV1|1|\r" },
    { CLEAR, "MSH-3", NULL,
      "MSH|^~\\&||RLH|LCR|ONELONDON|20260101120000||ADT^A01^ADT_A01|C1|P|2.4\r" PID_L PV1_L },
    /* clearing what is not there changes nothing */
    { CLEAR, "PID-3[2]", NULL,   BASE },
    { CLEAR, "PID-50", NULL,     BASE },
    { CLEAR, "PID-5.2.3", NULL,  BASE },
    { CLEAR, "PID-5.4", NULL,    BASE },
    { CLEAR, "ZZZ-1", NULL,      BASE },
    { CLEAR, "PID[2]-1", NULL,   BASE },
};

static int apply(struct hl7_msg *msg, enum op op, const char *path, const char *val,
                 struct hl7_error *err)
{
    struct hl7_path p = P(path);
    switch (op) {
    case SET:     return hl7_set(msg, &p, val, strlen(val), err);
    case SET_RAW: return hl7_set_raw(msg, &p, val, strlen(val), err);
    case CLEAR:   return hl7_clear(msg, &p, err);
    }
    return -100;
}

static const char *op_name(enum op op)
{
    return op == SET ? "set" : op == SET_RAW ? "set_raw" : "clear";
}

static void test_edit_exact_bytes(void **state)
{
    (void)state;
    int wrong = 0;
    for (size_t i = 0; i < ARRAY_LEN(edit_cases); i++) {
        const struct edit_case *c = &edit_cases[i];
        struct sample s;
        text_open(&s, BASE);
        struct hl7_error err = {0};
        int rc = apply(s.msg, c->op, c->path, c->value, &err);
        struct buf b = {0};
        if (rc == 0)
            assert_int_equal(hl7_serialise(s.msg, 0, &b), 0);
        if (rc != 0 || b.len != strlen(c->want) || memcmp(b.p, c->want, b.len) != 0) {
            print_error("%s %s \"%s\": rc %d\n  got  \"%s\"\n  want \"%s\"\n",
                        op_name(c->op), c->path, c->value ? show(c->value, strlen(c->value)) : "",
                        rc, show(b.p, b.len), show(c->want, strlen(c->want)));
            wrong++;
        }
        /* the caller's buffer is never written */
        assert_memory_equal(s.buf, BASE, strlen(BASE));
        buf_free(&b);
        sample_close(&s);
    }
    assert_int_equal(wrong, 0);
}

/* PID-40: 35 more separators after PID-5. */
static void test_set_far_field(void **state)
{
    (void)state;
    struct buf want = {0};
    buf_puts(&want, MSH_L "PID|1||123^^^NHS^NH||DOE^JANE");
    for (int i = 0; i < 35; i++)
        buf_putc(&want, '|');
    buf_puts(&want, "Q\r" PV1_L);
    struct sample s;
    text_open(&s, BASE);
    struct hl7_path p = P("PID-40");
    assert_int_equal(hl7_set(s.msg, &p, "Q", 1, NULL), 0);
    assert_serialised_n(s.msg, 0, want.p, want.len);
    assert_value(s.msg, "PID-40", "Q");
    assert_get(s.msg, "PID-39", HL7_EMPTY, "");
    assert_int_equal(hl7_field_count(s.msg, 1), 40);
    buf_free(&want);
    sample_close(&s);
}

/* A read after an edit sees the new value; several edits accumulate. */
static void test_reads_follow_edits(void **state)
{
    (void)state;
    struct sample s;
    text_open(&s, BASE);
    assert_value(s.msg, "PID-5.1", "DOE");
    struct hl7_path p = P("PID-5.1");
    assert_int_equal(hl7_set(s.msg, &p, "ROE", 3, NULL), 0);
    assert_value(s.msg, "PID-5.1", "ROE");
    assert_value(s.msg, "PID-5.2", "JANE");
    p = P("PID-5.2");
    assert_int_equal(hl7_set(s.msg, &p, "JO^ANNE", 7, NULL), 0);
    assert_value(s.msg, "PID-5", "ROE^JO\\S\\ANNE");
    assert_decoded(s.msg, "PID-5.2", "JO^ANNE");
    p = P("PID-5.2");
    assert_int_equal(hl7_clear(s.msg, &p, NULL), 0);
    assert_get(s.msg, "PID-5.2", HL7_EMPTY, "");
    p = P("PV1-2");
    assert_int_equal(hl7_set(s.msg, &p, "O", 1, NULL), 0);
    assert_serialised(s.msg, MSH_L "PID|1||123^^^NHS^NH||ROE^\r" "PV1|1|O\r");
    sample_close(&s);
}

/* Whatever hl7_set accepts reads back; a second MSH is a special case (its
 * MSH-1 is the separator itself), so it must either be built so that
 * MSH[2]-3 reads back or be refused. */
static void test_set_reads_back_everywhere(void **state)
{
    (void)state;
    static const char *paths[] = { "MSH[2]-3", "MSH[2]-9.1", "PID[3]-2", "ZZZ[2]-1.2.3",
                                   "MSH-21[3].2", "PV1-2[2].3.4" };
    int wrong = 0;
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        struct sample s;
        text_open(&s, BASE);
        struct hl7_path p = P(paths[i]);
        int rc = hl7_set(s.msg, &p, "V", 1, NULL);
        struct hl7_span sp = {0};
        enum hl7_presence pres = rc == 0 ? hl7_get(s.msg, &p, &sp) : HL7_ABSENT;
        if (rc == 0 && (pres != HL7_VALUE || sp.len != 1 || sp.p[0] != 'V')) {
            struct buf b = {0};
            hl7_serialise(s.msg, 0, &b);
            print_error("set %s = V: rc 0, then reads %s \"%s\"; message \"%s\"\n",
                        paths[i], presence_name(pres), show(sp.p, sp.len),
                        show(b.p, b.len));
            buf_free(&b);
            wrong++;
        }
        if (rc != 0)
            assert_serialised(s.msg, BASE);
        sample_close(&s);
    }
    assert_int_equal(wrong, 0);
}

static void test_read_only_and_bad_requests(void **state)
{
    (void)state;
    static const struct {
        enum op op;
        const char *path;
        int code;
    } cases[] = {
        { SET, "MSH-1", HL7_E_READ_ONLY },
        { SET, "MSH-2", HL7_E_READ_ONLY },
        { SET, "MSH-2.1", HL7_E_READ_ONLY },
        { SET_RAW, "MSH-1", HL7_E_READ_ONLY },
        { SET_RAW, "MSH-2", HL7_E_READ_ONLY },
        { CLEAR, "MSH-1", HL7_E_READ_ONLY },
        { CLEAR, "MSH-2", HL7_E_READ_ONLY },
        { SET, "PID", HL7_E_BAD_PATH },
        { SET, "OBX[2]", HL7_E_BAD_PATH },
        { SET_RAW, "PID", HL7_E_BAD_PATH },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        text_open(&s, BASE);
        struct hl7_error err = {0};
        int rc = apply(s.msg, cases[i].op, cases[i].path, "X", &err);
        if (rc != cases[i].code)
            fail_msg("%s %s: rc %d (%s), want %d (%s)", op_name(cases[i].op),
                     cases[i].path, rc, hl7_strerror(rc), cases[i].code,
                     hl7_strerror(cases[i].code));
        assert_int_equal(err.code, cases[i].code);
        assert_serialised(s.msg, BASE);
        /* err may be NULL */
        struct hl7_path p = P(cases[i].path);
        if (cases[i].op == SET)
            assert_int_equal(hl7_set(s.msg, &p, "X", 1, NULL), cases[i].code);
        sample_close(&s);
    }
}

static void test_set_raw_refuses_terminators(void **state)
{
    (void)state;
    static const char *values[] = { "a\rb", "a\nb", "\r", "ab\n", "a\r\nPID|2" };
    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        struct sample s;
        text_open(&s, BASE);
        struct hl7_path p = P("PID-5");
        struct hl7_error err = {0};
        assert_int_equal(hl7_set_raw(s.msg, &p, values[i], strlen(values[i]), &err),
                         HL7_E_BAD_VALUE);
        assert_int_equal(err.code, HL7_E_BAD_VALUE);
        assert_serialised(s.msg, BASE);
        assert_int_equal(hl7_segment_count(s.msg, "PID"), 1);
        sample_close(&s);
    }
}

/* Values are escaped in the message's own delimiters. */
static void test_edit_custom_delimiters(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "custom_delimiters.hl7");
    struct hl7_path p = P("PID-3[2].1");
    assert_int_equal(hl7_set(s.msg, &p, "H9-0001", 7, NULL), 0);
    p = P("PID-5.1");
    assert_int_equal(hl7_set(s.msg, &p, "A*B%C", 5, NULL), 0);
    p = P("ZZZ-2");
    assert_int_equal(hl7_set(s.msg, &p, "v|w", 3, NULL), 0);
    assert_serialised(s.msg,
        "MSH*%$@!*GPSYS*H85026*LCR*ONELONDON*20261121120000**ADT%A28%ADT_A05*H85026-19*P*2.5\r"
        "EVN*A28*20261121120000\r"
        "PID*1**9990000107%%%NHS%NH$H9-0001%%%H85026%MR**A@F@B@S@C%GARETH**19480229*M\r"
        "ZZZ**v|w\r");
    assert_decoded(s.msg, "PID-5.1", "A*B%C");
    sample_close(&s);

    /* v2.7: the truncation character is escaped too */
    sample_open(&s, "v27_truncation.hl7");
    p = P("PID-5.1");
    assert_int_equal(hl7_set(s.msg, &p, "A#B", 3, NULL), 0);
    assert_value(s.msg, "PID-5.1", "A\\P\\B");
    assert_decoded(s.msg, "PID-5.1", "A#B");
    assert_value(s.msg, "MSH-2", "^~\\&#");
    sample_close(&s);
}

/* OBX[5] when three exist: OBX[4] and OBX[5] are created. */
static void test_set_beyond_last_segment(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "oru_r01.hl7");
    struct hl7_path p = P("OBX[5]-5");
    assert_int_equal(hl7_set(s.msg, &p, "v", 1, NULL), 0);
    assert_int_equal(hl7_segment_count(s.msg, "OBX"), 5);
    assert_int_equal(hl7_segment_count(s.msg, NULL), 11);
    assert_value(s.msg, "OBX[5]-5", "v");
    assert_value(s.msg, "OBX[3]-5", "254");
    struct hl7_span sp;
    assert_true(hl7_get_str(s.msg, "OBX[4]-5", &sp) <= HL7_EMPTY);
    assert_get(s.msg, "OBX[4]", HL7_VALUE, "OBX");
    assert_value(s.msg, "NTE-3", "Mild anaemia. Suggest ferritin.");
    sample_close(&s);
}

/* Assumption: new segments of a name that exists go after the last
 * segment of that name (an OBX group stays together); a new name goes at
 * the end. */
static void test_new_segment_placement(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "oru_r01.hl7");
    struct hl7_path p = P("OBX[5]-5");
    assert_int_equal(hl7_set(s.msg, &p, "v", 1, NULL), 0);
    static const char *names[] = { "MSH", "PID", "PV1", "ORC", "OBR", "OBX", "OBX",
                                   "OBX", "OBX", "OBX", "NTE" };
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char name[4];
        struct hl7_span raw;
        assert_true(hl7_segment_at(s.msg, i, name, &raw));
        if (strcmp(name, names[i]) != 0)
            fail_msg("segment %zu is %s, want %s", i, name, names[i]);
        if (i == 9)
            assert_span(raw, "OBX|||||v");
    }
    sample_close(&s);
}

/* ---------------------------------------------------- segment insert/delete */

static void test_segment_insert(void **state)
{
    (void)state;
    static const struct {
        size_t at;
        const char *raw;
        const char *want;
    } cases[] = {
        { 1, "ZPI|1|X", MSH_L "ZPI|1|X\r" PID_L PV1_L },
        { 2, "ZPI|1|X", MSH_L PID_L "ZPI|1|X\r" PV1_L },
        { 3, "ZPI|1|X", BASE "ZPI|1|X\r" },
        { 3, "ZPI", BASE "ZPI\r" },
        { 3, "Z01|a^b~c", BASE "Z01|a^b~c\r" },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        text_open(&s, BASE);
        struct hl7_error err = {0};
        assert_int_equal(hl7_segment_insert(s.msg, cases[i].at, cases[i].raw,
                                            strlen(cases[i].raw), &err), 0);
        assert_serialised(s.msg, cases[i].want);
        assert_int_equal(hl7_segment_count(s.msg, NULL), 4);
        sample_close(&s);
    }
    /* the new segment reads like any other */
    struct sample s;
    text_open(&s, BASE);
    assert_int_equal(hl7_segment_insert(s.msg, 2, "ZPI|1|X^Y", 9, NULL), 0);
    assert_value(s.msg, "ZPI-2.2", "Y");
    assert_value(s.msg, "PV1-2", "I");
    char name[4];
    struct hl7_span raw;
    assert_true(hl7_segment_at(s.msg, 2, name, &raw));
    assert_string_equal(name, "ZPI");
    assert_span(raw, "ZPI|1|X^Y");
    sample_close(&s);
}

static void test_segment_insert_refused(void **state)
{
    (void)state;
    static const struct {
        size_t at;
        const char *raw;
        int code;             /* 1: any negative code */
    } cases[] = {
        { 1, "Z!|1", HL7_E_SEGMENT_NAME },
        { 1, "ZP", HL7_E_SEGMENT_NAME },
        { 1, "ZP|1", HL7_E_SEGMENT_NAME },
        { 1, "ZPIX|1", HL7_E_SEGMENT_NAME },
        { 1, "ZPI^1", HL7_E_SEGMENT_NAME },
        { 1, "", HL7_E_SEGMENT_NAME },
        { 4, "ZPI|1", HL7_E_RANGE },
        { 100, "ZPI|1", HL7_E_RANGE },
        { 1, "ZPI|a\rPID|2", 1 },
        { 1, "ZPI|a\n", 1 },
        { 0, "ZPI|1", 1 },                /* nothing may come before MSH */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        text_open(&s, BASE);
        struct hl7_error err = {0};
        int rc = hl7_segment_insert(s.msg, cases[i].at, cases[i].raw,
                                    strlen(cases[i].raw), &err);
        if (cases[i].code == 1 ? rc >= 0 : rc != cases[i].code)
            fail_msg("insert \"%s\" at %zu: rc %d (%s)", show(cases[i].raw,
                     strlen(cases[i].raw)), cases[i].at, rc, hl7_strerror(rc));
        assert_int_equal(err.code, rc);
        assert_serialised(s.msg, BASE);
        sample_close(&s);
    }
    /* in a message with other delimiters, '|' does not end a name */
    struct sample s;
    sample_open(&s, "custom_delimiters.hl7");
    assert_int_equal(hl7_segment_insert(s.msg, 3, "ZPI|1", 5, NULL), HL7_E_SEGMENT_NAME);
    assert_int_equal(hl7_segment_insert(s.msg, 3, "ZPI*1", 5, NULL), 0);
    assert_value(s.msg, "ZPI-1", "1");
    sample_close(&s);
}

static void test_segment_delete(void **state)
{
    (void)state;
    struct sample s;
    text_open(&s, BASE);
    struct hl7_error err = {0};
    assert_int_equal(hl7_segment_delete(s.msg, 3, &err), HL7_E_RANGE);
    assert_int_equal(err.code, HL7_E_RANGE);
    assert_true(hl7_segment_delete(s.msg, 0, &err) < 0);
    assert_serialised(s.msg, BASE);
    assert_int_equal(hl7_segment_delete(s.msg, 2, &err), 0);
    assert_serialised(s.msg, MSH_L PID_L);
    assert_absent(s.msg, "PV1-2");
    assert_int_equal(hl7_segment_delete(s.msg, 1, &err), 0);
    assert_serialised(s.msg, MSH_L);
    assert_int_equal(hl7_segment_count(s.msg, NULL), 1);
    sample_close(&s);

    /* segment indices follow a delete */
    sample_open(&s, "oru_r01.hl7");
    assert_int_equal(hl7_segment_delete(s.msg, 5, NULL), 0);   /* OBX[1] */
    assert_int_equal(hl7_segment_count(s.msg, "OBX"), 2);
    assert_value(s.msg, "OBX[1]-5", "7.2");
    assert_value(s.msg, "OBX[2]-5", "254");
    assert_absent(s.msg, "OBX[3]-5");
    sample_close(&s);
}

/* ------------------------------------------------------------ serialise */

static const char *all_samples[] = {
    "adt_a01.hl7", "adt_a03.hl7", "adt_a08_escapes.hl7", "adt_a40_merge.hl7",
    "oru_r01.hl7", "mdm_t02_letter.hl7", "adt_a01_lf.hl7", "adt_a01_crlf.hl7",
    "custom_delimiters.hl7", "v27_truncation.hl7", "stray_escape.hl7",
    "bad/unknown_version.hl7", "bad/bad_nhs_number.hl7",
};

static void test_serialise_unedited_identical(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(all_samples); i++) {
        struct sample s;
        sample_open(&s, all_samples[i]);
        assert_serialised_n(s.msg, 0, s.buf, s.len);
        /* appends */
        struct buf b = {0};
        buf_puts(&b, "xyz");
        assert_int_equal(hl7_serialise(s.msg, 0, &b), 0);
        assert_int_equal(b.len, s.len + 3);
        assert_memory_equal(b.p, "xyz", 3);
        assert_memory_equal(b.p + 3, s.buf, s.len);
        buf_free(&b);
        sample_close(&s);
    }
    /* blank lines, a missing final terminator, mixed terminators */
    static const char *odd[] = {
        "\r\n" MSH_L "\r\r" PID_L "\n\n" PV1_L,
        MSH_L "PID|1",
        MSH_L "PID|1\nPV1|1\r\nZZZ|x\n",
    };
    for (size_t i = 0; i < ARRAY_LEN(odd); i++) {
        struct sample s;
        text_open(&s, odd[i]);
        assert_serialised(s.msg, odd[i]);
        sample_close(&s);
    }
}

static char *with_terms(const char *in, size_t len, const char *from, const char *to,
                        size_t *out_len)
{
    struct buf b = {0};
    size_t fl = strlen(from);
    for (size_t i = 0; i < len;) {
        if (i + fl <= len && memcmp(in + i, from, fl) == 0) {
            buf_puts(&b, to);
            i += fl;
        } else {
            buf_putc(&b, in[i++]);
        }
    }
    char *p = dup_exact(b.p, b.len);
    *out_len = b.len;
    buf_free(&b);
    return p;
}

static void test_serialise_cr_flag(void **state)
{
    (void)state;
    static const struct {
        const char *file, *term;
    } cases[] = {
        { "adt_a01_lf.hl7", "\n" }, { "adt_a01_crlf.hl7", "\r\n" }, { "adt_a01.hl7", "\r" },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        sample_open(&s, cases[i].file);
        size_t n;
        char *want = with_terms(s.buf, s.len, cases[i].term, "\r", &n);
        assert_serialised_n(s.msg, HL7_SER_CR, want, n);
        free(want);
        sample_close(&s);
    }
}

/* Edited and inserted segments end as the first segment does; HL7_SER_CR
 * makes every one CR. */
static void test_edit_keeps_line_endings(void **state)
{
    (void)state;
    static const struct {
        const char *file, *term;
    } cases[] = { { "adt_a01_lf.hl7", "\n" }, { "adt_a01_crlf.hl7", "\r\n" } };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        sample_open(&s, cases[i].file);
        struct hl7_path p = P("PID-5.1");
        assert_int_equal(hl7_set(s.msg, &p, "X", 1, NULL), 0);
        assert_int_equal(hl7_segment_insert(s.msg, 4, "ZZZ|1", 5, NULL), 0);
        /* expected: the original with the surname replaced and ZZZ added */
        struct hl7_span old;
        assert_true(hl7_get_str(s.msg, "MSH-10", &old) == HL7_VALUE);
        const char *surname = i == 0 ? "NGUYEN" : "ADEYEMI";
        const char *at = memmem(s.buf, s.len, surname, strlen(surname));
        assert_non_null(at);
        struct buf want = {0};
        buf_append(&want, s.buf, (size_t)(at - s.buf));
        buf_putc(&want, 'X');
        buf_append(&want, at + strlen(surname), s.len - (size_t)(at - s.buf) - strlen(surname));
        buf_puts(&want, "ZZZ|1");
        buf_puts(&want, cases[i].term);
        assert_serialised_n(s.msg, 0, want.p, want.len);
        size_t n;
        char *cr = with_terms(want.p, want.len, cases[i].term, "\r", &n);
        assert_serialised_n(s.msg, HL7_SER_CR, cr, n);
        free(cr);
        buf_free(&want);
        sample_close(&s);
    }
}

/* An edit changes only the bytes it must, in a real message. */
static void test_edit_changes_only_its_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *path, *value, *old, *new;
    } cases[] = {
        { "PID-5.2", "JON", "SMITH^JOHN^", "SMITH^JON^" },
        { "PID-3[2].1", "RLH7654321", "~RLH1234567^", "~RLH7654321^" },
        { "MSH-10", "NEWID", "|RLH000000123|", "|NEWID|" },
        { "DG1-6", "F", "|20261121|A\r", "|20261121|F\r" },
        { "PV1-19", "", "|IP20261121001|", "||" },
        { "AL1-3.2", "Pen & cillin", "^Penicillin^", "^Pen \\T\\ cillin^" },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        sample_open(&s, "adt_a01.hl7");
        struct hl7_path p = P(cases[i].path);
        assert_int_equal(hl7_set(s.msg, &p, cases[i].value, strlen(cases[i].value), NULL), 0);
        size_t n;
        char *want = with_terms(s.buf, s.len, cases[i].old, cases[i].new, &n);
        assert_true(n != s.len || memcmp(want, s.buf, n) != 0);  /* old was found */
        assert_serialised_n(s.msg, 0, want, n);
        free(want);
        sample_close(&s);
    }
}

/* Many edits, serialise, parse the result: the values are there. */
static void test_edit_then_reparse(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    struct hl7_path p;
    p = P("PID-5.1");
    assert_int_equal(hl7_set(s.msg, &p, "O'BRIEN|X", 9, NULL), 0);
    p = P("PID-3[3].1");
    assert_int_equal(hl7_set(s.msg, &p, "NEW1", 4, NULL), 0);
    p = P("PID-3[3].4");
    assert_int_equal(hl7_set(s.msg, &p, "LOC", 3, NULL), 0);
    p = P("PID-13");
    assert_int_equal(hl7_clear(s.msg, &p, NULL), 0);
    p = P("NTE-3");
    assert_int_equal(hl7_set(s.msg, &p, "line1\nline2", 11, NULL), 0);
    p = P("PV1-3");
    assert_int_equal(hl7_set_raw(s.msg, &p, "W1^B2^3^RLH", 11, NULL), 0);
    assert_int_equal(hl7_segment_insert(s.msg, 3, "ZPI|1|Z^Y", 9, NULL), 0);
    assert_int_equal(hl7_segment_delete(s.msg, 7, NULL), 0);  /* AL1, now 7th */
    p = P("MSH-10");
    assert_int_equal(hl7_set(s.msg, &p, "RLH000000124", 12, NULL), 0);

    struct buf out = {0};
    assert_int_equal(hl7_serialise(s.msg, 0, &out), 0);
    sample_close(&s);
    bytes_open(&s, out.p, out.len);
    buf_free(&out);

    assert_decoded(s.msg, "PID-5.1", "O'BRIEN|X");
    assert_value(s.msg, "PID-5.2", "JOHN");
    assert_value(s.msg, "PID-3[1].1", "9990000018");
    assert_value(s.msg, "PID-3[2].1", "RLH1234567");
    assert_value(s.msg, "PID-3[3]", "NEW1^^^LOC");
    assert_get(s.msg, "PID-13", HL7_EMPTY, "");
    assert_value(s.msg, "PID-32", "NSTS01");
    assert_decoded(s.msg, "NTE-3", "line1\nline2");
    assert_value(s.msg, "PV1-3.2", "B2");
    assert_value(s.msg, "ZPI-2.2", "Y");
    assert_value(s.msg, "MSH-10", "RLH000000124");
    assert_value(s.msg, "MSH-9", "ADT^A01^ADT_A01");
    assert_int_equal(hl7_segment_count(s.msg, "AL1"), 0);
    assert_int_equal(hl7_segment_count(s.msg, "NTE"), 1);
    static const char *names[] = { "MSH", "EVN", "PID", "ZPI", "PD1", "NK1", "PV1",
                                   "DG1", "NTE" };
    assert_int_equal(hl7_segment_count(s.msg, NULL), ARRAY_LEN(names));
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char name[4];
        struct hl7_span raw;
        assert_true(hl7_segment_at(s.msg, i, name, &raw));
        assert_string_equal(name, names[i]);
    }
    sample_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edit_exact_bytes),
        cmocka_unit_test(test_set_far_field),
        cmocka_unit_test(test_reads_follow_edits),
        cmocka_unit_test(test_set_reads_back_everywhere),
        cmocka_unit_test(test_read_only_and_bad_requests),
        cmocka_unit_test(test_set_raw_refuses_terminators),
        cmocka_unit_test(test_edit_custom_delimiters),
        cmocka_unit_test(test_set_beyond_last_segment),
        cmocka_unit_test(test_new_segment_placement),
        cmocka_unit_test(test_segment_insert),
        cmocka_unit_test(test_segment_insert_refused),
        cmocka_unit_test(test_segment_delete),
        cmocka_unit_test(test_serialise_unedited_identical),
        cmocka_unit_test(test_serialise_cr_flag),
        cmocka_unit_test(test_edit_keeps_line_endings),
        cmocka_unit_test(test_edit_changes_only_its_bytes),
        cmocka_unit_test(test_edit_then_reparse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
