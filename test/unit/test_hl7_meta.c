/*
 * test_hl7_meta.c: header metadata (hl7_meta), the NHS number search in
 * PID-3 and the modulus 11 check.
 */
#include "hl7_test_util.h"

#define MSH_L "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"

static void test_meta_adt_a01(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    struct hl7_meta m;
    memset(&m, 0x5a, sizeof m);
    hl7_meta(s.msg, &m);
    assert_span(m.code, "ADT");
    assert_span(m.trigger, "A01");
    assert_span(m.structure, "ADT_A01");
    assert_span(m.control_id, "RLH000000123");
    assert_span(m.processing_id, "P");
    assert_span(m.version, "2.4");
    assert_span(m.sending_app, "PAS");
    assert_span(m.sending_fac, "RLH");
    assert_span(m.receiving_app, "LCR");
    assert_span(m.receiving_fac, "ONELONDON");
    assert_span(m.accept_ack, "AL");
    assert_span(m.app_ack, "NE");
    assert_span(m.charset, "UNICODE UTF-8");
    assert_span(m.nhs_number, "9990000018");
    sample_close(&s);
}

/* Whole HD for MSH-3..6, first component of MSH-11 and MSH-12, first
 * repetition of MSH-18; absent fields have length 0. */
static void test_meta_components_and_absence(void **state)
{
    (void)state;
    struct sample s;
    text_open(&s, "MSH|^~\\&|PAS^1.2.3^ISO|RLH^^L|LCR|ONELONDON|20260101||ORU^R01|X9|"
                  "P^T|2.5^GBR&&ISO|||||GBR|8859/1~UNICODE UTF-8\r");
    struct hl7_meta m;
    memset(&m, 0x5a, sizeof m);
    hl7_meta(s.msg, &m);
    assert_span(m.code, "ORU");
    assert_span(m.trigger, "R01");
    assert_int_equal(m.structure.len, 0);
    assert_span(m.control_id, "X9");
    assert_span(m.processing_id, "P");
    assert_span(m.version, "2.5");
    assert_span(m.sending_app, "PAS^1.2.3^ISO");
    assert_span(m.sending_fac, "RLH^^L");
    assert_int_equal(m.accept_ack.len, 0);
    assert_int_equal(m.app_ack.len, 0);
    assert_span(m.charset, "8859/1");
    assert_int_equal(m.nhs_number.len, 0);
    sample_close(&s);

    sample_open(&s, "custom_delimiters.hl7");
    hl7_meta(s.msg, &m);
    assert_span(m.code, "ADT");
    assert_span(m.trigger, "A28");
    assert_span(m.structure, "ADT_A05");
    assert_span(m.version, "2.5");
    assert_span(m.sending_app, "GPSYS");
    assert_span(m.nhs_number, "9990000107");
    assert_int_equal(m.charset.len, 0);
    sample_close(&s);
}

/* The NHS number is CX.1 of the first PID-3 repetition with CX.4 (its
 * first subcomponent) NHS or CX.5 NH. */
static void test_nhs_number_search(void **state)
{
    (void)state;
    static const struct {
        const char *pid3;
        const char *want;     /* NULL: none */
    } cases[] = {
        { "9990000018^^^NHS^NH", "9990000018" },
        { "9990000018^^^NHS", "9990000018" },
        { "9990000018^^^^NH", "9990000018" },
        { "9990000018^^^XX^NH", "9990000018" },
        { "9990000018^^^NHS&2.16.840.1.113883.2.1.4.1&ISO", "9990000018" },
        { "9990000018^^^NHS&2.16.840.1.113883.2.1.4.1&ISO^XX", "9990000018" },
        { "RLH1^^^RLH^MR~9990000026^^^NHS^NH", "9990000026" },
        { "111^^^NHS~222^^^NHS", "111" },
        { "RLH1^^^RLH^MR", NULL },
        { "9990000018^^^NHSX^MR", NULL },
        { "9990000018^^^X&NHS^MR", NULL },
        { "9990000018^^^RLH^NHX", NULL },
        { "9990000018^NHS^NH", NULL },          /* wrong components */
        { "", NULL },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char text[256];
        snprintf(text, sizeof text, MSH_L "PID|1||%s||DOE^JANE\r", cases[i].pid3);
        struct sample s;
        text_open(&s, text);
        struct hl7_span sp = { "garbage", 7 };
        bool found = hl7_nhs_number(s.msg, &sp);
        struct hl7_meta m;
        hl7_meta(s.msg, &m);
        if (found != (cases[i].want != NULL))
            fail_msg("PID-3 \"%s\": found %d (\"%s\")", cases[i].pid3, found,
                     show(sp.p, sp.len));
        if (cases[i].want) {
            assert_span(sp, cases[i].want);
            assert_span(m.nhs_number, cases[i].want);
        } else {
            assert_int_equal(m.nhs_number.len, 0);
        }
        sample_close(&s);
    }
    /* no PID at all */
    struct sample s;
    text_open(&s, MSH_L);
    struct hl7_span sp;
    assert_false(hl7_nhs_number(s.msg, &sp));
    sample_close(&s);
}

/* Independent modulus 11: weights 10..2 over the first nine digits; the
 * check digit is 11 - (sum mod 11), 11 becoming 0 and 10 never valid. */
static enum hl7_nhs_check ref_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 9; i++)
        sum += (s[i] - '0') * (10 - i);
    int check = 11 - sum % 11;
    if (check == 11)
        check = 0;
    if (check == 10 || check != s[9] - '0')
        return HL7_NHS_CHECK_DIGIT;
    return HL7_NHS_VALID;
}

static void test_nhs_check_cases(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        enum hl7_nhs_check want;
    } cases[] = {
        { "9990000018", HL7_NHS_VALID },
        { "9990000026", HL7_NHS_VALID },
        { "9990000107", HL7_NHS_VALID },
        { "9990000050", HL7_NHS_VALID },        /* remainder 0: check digit 0 */
        { "9434765919", HL7_NHS_VALID },
        { "9990000019", HL7_NHS_CHECK_DIGIT },
        { "9990000010", HL7_NHS_CHECK_DIGIT },
        { "9990000000", HL7_NHS_CHECK_DIGIT },  /* 11 - 1 = 10: never valid */
        { "9990000009", HL7_NHS_CHECK_DIGIT },
        { "", HL7_NHS_EMPTY },
        { "999000001", HL7_NHS_LENGTH },
        { "99900000188", HL7_NHS_LENGTH },
        { "1", HL7_NHS_LENGTH },
        { "99900000a8", HL7_NHS_NOT_DIGITS },
        { "999 000 01", HL7_NHS_NOT_DIGITS },
        { "-990000018", HL7_NHS_NOT_DIGITS },
        { "999000001\xC2", HL7_NHS_NOT_DIGITS },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].s);
        char *p = dup_exact(cases[i].s, n);
        enum hl7_nhs_check got = hl7_nhs_check(p, n);
        free(p);
        if (got != cases[i].want)
            fail_msg("hl7_nhs_check(\"%s\") = %d (%s), want %d (%s)", cases[i].s, got,
                     hl7_nhs_check_str(got), cases[i].want,
                     hl7_nhs_check_str(cases[i].want));
    }
    assert_int_equal(hl7_nhs_check(NULL, 0), HL7_NHS_EMPTY);
    /* the length given counts, not a NUL */
    assert_int_equal(hl7_nhs_check("9990000018999", 10), HL7_NHS_VALID);
}

/* Every check digit of 2000 prefixes, against the reference above. */
static void test_nhs_check_exhaustive(void **state)
{
    (void)state;
    size_t tens = 0;
    for (unsigned prefix = 999000000; prefix < 999002000; prefix++) {
        for (int d = 0; d < 10; d++) {
            char s[11];
            snprintf(s, sizeof s, "%09u%d", prefix, d);
            enum hl7_nhs_check want = ref_check(s);
            enum hl7_nhs_check got = hl7_nhs_check(s, 10);
            if (got != want)
                fail_msg("hl7_nhs_check(\"%s\") = %d, want %d", s, got, want);
        }
        char s[11];
        snprintf(s, sizeof s, "%09u0", prefix);
        int sum = 0;
        for (int i = 0; i < 9; i++)
            sum += (s[i] - '0') * (10 - i);
        tens += 11 - sum % 11 == 10;
    }
    assert_true(tens > 0);      /* the remainder-10 case was exercised */
}

static void test_nhs_check_str(void **state)
{
    (void)state;
    const enum hl7_nhs_check all[] = { HL7_NHS_VALID, HL7_NHS_EMPTY, HL7_NHS_LENGTH,
                                       HL7_NHS_NOT_DIGITS, HL7_NHS_CHECK_DIGIT };
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        const char *s = hl7_nhs_check_str(all[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(s, hl7_nhs_check_str(all[k]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_adt_a01),
        cmocka_unit_test(test_meta_components_and_absence),
        cmocka_unit_test(test_nhs_number_search),
        cmocka_unit_test(test_nhs_check_cases),
        cmocka_unit_test(test_nhs_check_exhaustive),
        cmocka_unit_test(test_nhs_check_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
