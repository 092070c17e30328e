/*
 * test_hl7_batch.c: hl7_batch_split over FHS/BHS batches, bare messages,
 * messages one after another, and trailers whose counts disagree.
 */
#include "hl7_test_util.h"

#define MSG(id) "MSH|^~\\&|LAB|NWPH|LCR|ONELONDON|2026||ORU^R01|" id "|P|2.4\rPID|1\r"

static void test_batch_sample(void **state)
{
    (void)state;
    size_t len;
    char *buf = load_sample("batch_oru.hl7", &len);
    struct hl7_batch b;
    memset(&b, 0x5a, sizeof b);
    struct hl7_error err = {0};
    assert_int_equal(hl7_batch_split(buf, len, &b, &err), 0);
    assert_int_equal(b.count, 3);
    assert_int_equal(b.batches, 1);
    assert_true(b.fhs.len > 4);
    assert_memory_equal(b.fhs.p, "FHS|^~\\&|LABSYS|NWPH|", 21);
    assert_true(b.bhs.len > 4);
    assert_memory_equal(b.bhs.p, "BHS|^~\\&|LABSYS|NWPH|", 21);

    static const char *ids[] = { "NWPH-B1-001", "NWPH-B1-002", "NWPH-B1-003" };
    static const char *names[] = { "GREEN", "WHITE", "BLACK" };
    static const char *sodium[] = { "139", "140", "141" };
    for (size_t i = 0; i < 3; i++) {
        struct hl7_span m = b.msgs[i];
        assert_true(m.p >= buf && m.p + m.len <= buf + len);    /* into buf */
        assert_memory_equal(m.p, "MSH|", 4);
        assert_int_equal(m.p[m.len - 1], '\r');                 /* terminators kept */
        /* no batch segment inside a message */
        for (size_t k = 0; k + 4 <= m.len; k++)
            if (m.p[k] == '\r' && k + 4 < m.len)
                assert_true(memcmp(m.p + k + 1, "BTS", 3) != 0 &&
                            memcmp(m.p + k + 1, "FTS", 3) != 0);
        struct sample s;
        bytes_open(&s, m.p, m.len);
        assert_int_equal(hl7_segment_count(s.msg, NULL), 4);
        assert_value(s.msg, "MSH-10", ids[i]);
        assert_value(s.msg, "PID-5.1", names[i]);
        assert_value(s.msg, "OBX-5", sodium[i]);
        assert_value(s.msg, "OBR-4.1.2", "E");
        assert_serialised_n(s.msg, 0, m.p, m.len);
        sample_close(&s);
    }
    /* the whole file is not one message */
    struct hl7_msg *msg = NULL;
    assert_int_equal(hl7_parse(buf, len, NULL, &msg, NULL), HL7_E_NO_MSH);
    hl7_batch_free(&b);
    free(buf);
}

/* A trailer whose count disagrees: HL7_E_BATCH_COUNT, messages still
 * listed. */
static void test_batch_count_mismatch(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        const char *from, *to;
        size_t count;
    } cases[] = {
        { "BTS-1 too small", "BTS|3\r", "BTS|2\r", 3 },
        { "BTS-1 too large", "BTS|3\r", "BTS|4\r", 3 },
        { "FTS-1 wrong", "FTS|1\r", "FTS|2\r", 3 },
    };
    size_t len;
    char *orig = load_sample("batch_oru.hl7", &len);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *at = memmem(orig, len, cases[i].from, strlen(cases[i].from));
        assert_non_null(at);
        struct buf in = {0};
        buf_append(&in, orig, (size_t)(at - orig));
        buf_puts(&in, cases[i].to);
        size_t rest = (size_t)(at - orig) + strlen(cases[i].from);
        buf_append(&in, orig + rest, len - rest);
        char *buf = dup_exact(in.p, in.len);
        size_t n = in.len;
        buf_free(&in);

        struct hl7_batch b = {0};
        struct hl7_error err = {0};
        int rc = hl7_batch_split(buf, n, &b, &err);
        if (rc != HL7_E_BATCH_COUNT)
            fail_msg("%s: rc %d (%s), want HL7_E_BATCH_COUNT", cases[i].what, rc,
                     hl7_strerror(rc));
        assert_int_equal(err.code, HL7_E_BATCH_COUNT);
        assert_int_equal(b.count, cases[i].count);
        assert_non_null(b.msgs);
        assert_memory_equal(b.msgs[2].p, "MSH|", 4);
        assert_true(strlen(err.text) > 0);
        hl7_batch_free(&b);
        free(buf);
    }
    free(orig);
}

static void test_batch_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *what, *bytes;
        size_t count, batches;
        const char *ids[3];
    } cases[] = {
        { "bare message", MSG("A"), 1, 0, { "A" } },
        { "bare message, LF", "MSH|^~\\&|L|N|||2026||ORU^R01|A|P|2.4\nPID|1\n", 1, 0, { "A" } },
        { "no final terminator", "MSH|^~\\&|L|N|||2026||ORU^R01|A|P|2.4\rPID|1", 1, 0, { "A" } },
        { "two messages", MSG("A") MSG("B"), 2, 0, { "A", "B" } },
        { "leading blank lines", "\r\n\r\n" MSG("A") MSG("B"), 2, 0, { "A", "B" } },
        { "BHS only", "BHS|^~\\&|LAB\r" MSG("A") MSG("B") "BTS|2\r", 2, 1, { "A", "B" } },
        { "no trailers", "FHS|^~\\&\rBHS|^~\\&\r" MSG("A"), 1, 1, { "A" } },
        { "empty BTS-1", "BHS|^~\\&\r" MSG("A") "BTS\r", 1, 1, { "A" } },
        { "two batches", "FHS|^~\\&\rBHS|^~\\&\r" MSG("A") "BTS|1\rBHS|^~\\&\r" MSG("B")
                         MSG("C") "BTS|2\rFTS|2\r", 3, 2, { "A", "B", "C" } },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].bytes);
        char *buf = dup_exact(cases[i].bytes, n);
        struct hl7_batch b = {0};
        struct hl7_error err = {0};
        int rc = hl7_batch_split(buf, n, &b, &err);
        if (rc != 0 || b.count != cases[i].count || b.batches != cases[i].batches)
            fail_msg("%s: rc %d (%s), count %zu, batches %zu; want 0, %zu, %zu",
                     cases[i].what, rc, err.text, b.count, b.batches, cases[i].count,
                     cases[i].batches);
        for (size_t k = 0; k < b.count; k++) {
            struct sample s;
            bytes_open(&s, b.msgs[k].p, b.msgs[k].len);
            assert_value(s.msg, "MSH-10", cases[i].ids[k]);
            assert_int_equal(hl7_segment_count(s.msg, "PID"), 1);
            sample_close(&s);
        }
        hl7_batch_free(&b);
        free(buf);
    }
    /* messages include their own terminators, exactly */
    char *buf = dup_exact(MSG("A") MSG("B"), strlen(MSG("A") MSG("B")));
    struct hl7_batch b = {0};
    assert_int_equal(hl7_batch_split(buf, strlen(MSG("A") MSG("B")), &b, NULL), 0);
    assert_int_equal(b.count, 2);
    assert_span(b.msgs[0], MSG("A"));
    assert_span(b.msgs[1], MSG("B"));
    assert_int_equal(b.fhs.len, 0);
    assert_int_equal(b.bhs.len, 0);
    hl7_batch_free(&b);
    free(buf);
}

struct structure_case {
    const char *what, *bytes;
};

static void check_structure_errors(const struct structure_case *cases, size_t ncases)
{
    int wrong = 0;
    for (size_t i = 0; i < ncases; i++) {
        size_t n = strlen(cases[i].bytes);
        char *buf = dup_exact(cases[i].bytes, n);
        struct hl7_batch b = {0};
        struct hl7_error err = {0};
        int rc = hl7_batch_split(buf, n, &b, &err);
        if (rc != HL7_E_BATCH_STRUCTURE) {
            print_error("%s: rc %d (%s), want HL7_E_BATCH_STRUCTURE\n", cases[i].what,
                        rc, hl7_strerror(rc));
            wrong++;
        } else {
            assert_int_equal(err.code, HL7_E_BATCH_STRUCTURE);
            assert_true(strlen(err.text) > 0);
        }
        hl7_batch_free(&b);
        free(buf);
    }
    assert_int_equal(wrong, 0);
}

static void test_batch_headers_out_of_place(void **state)
{
    (void)state;
    static const struct structure_case cases[] = {
        { "FHS after a message", MSG("A") "FHS|^~\\&\r" MSG("B") },
        { "FHS twice", "FHS|^~\\&\rFHS|^~\\&\r" MSG("A") },
        { "BHS inside an open batch", "BHS|^~\\&\r" MSG("A") "BHS|^~\\&\r" MSG("B")
                                      "BTS|1\r" },
    };
    check_structure_errors(cases, ARRAY_LEN(cases));
}

/* Assumption: a trailer with no header open, or anything after the file
 * trailer, is also "out of place". */
static void test_batch_trailers_out_of_place(void **state)
{
    (void)state;
    static const struct structure_case cases[] = {
        /* trailers without counts, so that only the structure is wrong */
        { "BTS without BHS", MSG("A") "BTS\r" },
        { "FTS without FHS", MSG("A") "FTS\r" },
        { "message after FTS", "FHS|^~\\&\r" MSG("A") "FTS\r" MSG("B") },
        { "BHS after FTS", "FHS|^~\\&\r" MSG("A") "FTS\rBHS|^~\\&\r" MSG("B") },
    };
    check_structure_errors(cases, ARRAY_LEN(cases));
}

/* hl7.h: "Lines before the first MSH that are not batch headers ... are
 * not part of any message": they are skipped, not an error. */
/* Anything but a batch header before the first MSH is refused, naming
 * where: a file source must not drop a segment silently. */
static void test_batch_junk_before_first_msh(void **state)
{
    (void)state;
    static const struct {
        const char *what, *bytes, *segment;
        size_t len, offset;
    } cases[] = {
#define J(what, s, seg, off) { what, s, seg, sizeof s - 1, off }
        J("a line of text", "junk line\r\n\r" MSG("A"), "", 0),
        J("a segment", "ZZZ|1\r" MSG("A"), "ZZZ", 0),
        J("binary", "\x01\xff\x02" "ab\r" MSG("A"), "", 0),
        J("inside a batch", "FHS|^~\\&\rBHS|^~\\&\rjunk\r" MSG("A") "BTS|1\rFTS|1\r", "", 18),
#undef J
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *buf = dup_exact(cases[i].bytes, cases[i].len);
        struct hl7_batch b = {0};
        struct hl7_error err = {0};
        int rc = hl7_batch_split(buf, cases[i].len, &b, &err);
        if (rc != HL7_E_NO_MSH)
            print_error("%s: rc %d (%s)\n", cases[i].what, rc, err.text);
        assert_int_equal(rc, HL7_E_NO_MSH);
        assert_string_equal(err.segment, cases[i].segment);
        assert_int_equal(err.offset, cases[i].offset);
        assert_non_null(strstr(err.text, "a message starts with MSH"));
        assert_int_equal(b.count, 0);
        hl7_batch_free(&b);
        free(buf);
    }
}

/* A batch with no messages is valid HL7 (senders use it as "nothing to
 * send"): it splits into zero messages; the input is not empty, so it is
 * not HL7_E_EMPTY ("input holds no segment at all"). */
static void test_batch_empty_batch(void **state)
{
    (void)state;
    static const char text[] = "FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r";
    char *buf = dup_exact(text, sizeof text - 1);
    struct hl7_batch b = {0};
    struct hl7_error err = {0};
    int rc = hl7_batch_split(buf, sizeof text - 1, &b, &err);
    size_t count = b.count, batches = b.batches;
    bool headers = b.fhs.len > 0 && b.bhs.len > 0;
    hl7_batch_free(&b);
    free(buf);
    if (rc != 0)
        fail_msg("rc %d (%s: %s), want 0", rc, hl7_strerror(rc), err.text);
    assert_int_equal(count, 0);
    assert_int_equal(batches, 1);
    assert_true(headers);
}

static void test_batch_nothing(void **state)
{
    (void)state;
    /* no message at all */
    struct hl7_batch b = {0};
    int rc = hl7_batch_split("", 0, &b, NULL);
    assert_true(rc == 0 || rc == HL7_E_EMPTY);
    assert_int_equal(b.count, 0);
    hl7_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_sample),
        cmocka_unit_test(test_batch_count_mismatch),
        cmocka_unit_test(test_batch_shapes),
        cmocka_unit_test(test_batch_headers_out_of_place),
        cmocka_unit_test(test_batch_trailers_out_of_place),
        cmocka_unit_test(test_batch_empty_batch),
        cmocka_unit_test(test_batch_nothing),
        /* last: under AddressSanitizer a failure here ends the program */
        cmocka_unit_test(test_batch_junk_before_first_msh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
