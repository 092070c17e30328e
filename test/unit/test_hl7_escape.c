/*
 * test_hl7_escape.c: hl7_unescape and hl7_escape, with the default and a
 * custom escape character, formatting commands, malformed sequences, and
 * round trips of random bytes.
 */
#include "hl7_test_util.h"

static const struct hl7_delims custom = { '*', '%', '$', '@', '!', '\0' };
static const struct hl7_delims v27 = { '|', '^', '~', '\\', '&', '#' };

struct esc_case {
    const struct hl7_delims *d;   /* NULL: hl7_default_delims */
    const char *in;
    size_t in_len;                /* 0: strlen(in) */
    const char *out;
    size_t out_len;               /* 0: strlen(out) */
};

#define T(in, out)        { NULL, in, 0, out, 0 }
#define TN(in, out, n)    { NULL, in, 0, out, n }
#define TD(d, in, out)    { d, in, 0, out, 0 }

static const struct esc_case unescape_cases[] = {
    T("", ""),
    T("plain text", "plain text"),
    T("caf\xC3\xA9", "caf\xC3\xA9"),
    /* delimiters */
    T("a\\F\\b", "a|b"),
    T("a\\S\\b", "a^b"),
    T("a\\T\\b", "a&b"),
    T("a\\R\\b", "a~b"),
    T("a\\E\\b", "a\\b"),
    T("\\F\\\\S\\\\T\\\\R\\\\E\\", "|^&~\\"),
    TD(&v27, "a\\P\\b", "a#b"),
    /* hex */
    T("\\X41\\", "A"),
    T("\\X414243\\", "ABC"),
    T("x\\X0D0A\\y", "x\r\ny"),
    T("Line one\\X0D\\\\X0A\\Line two", "Line one\r\nLine two"),
    T("caf\\XC3A9\\", "caf\xC3\xA9"),
    TN("a\\X00\\b", "a\0b", 3),
    /* formatting */
    T("a\\.br\\b", "a\nb"),
    T("a\\.sp 2\\b", "a\n\nb"),
    T("a\\.sp 1\\b", "a\nb"),
    T("a\\.sk 3\\b", "a   b"),
    T("a\\.ce\\b", "a\nb"),
    T("a\\H\\b\\N\\c", "abc"),
    T("\\H\\bold\\N\\", "bold"),
    T("a\\.fi\\b\\.nf\\c", "abc"),
    T("a\\.in 4\\b", "ab"),
    T("a\\.ti 2\\b", "ab"),
    /* unknown or malformed: kept as they are */
    T("a\\Zxx\\b", "a\\Zxx\\b"),
    T("a\\Q\\b", "a\\Q\\b"),
    T("\\X4\\", "\\X4\\"),
    T("JOHN\\X4", "JOHN\\X4"),
    T("\\X414\\", "\\X414\\"),
    T("\\X4G\\", "\\X4G\\"),
    T("\\XZZ\\", "\\XZZ\\"),
    T("\\X\\", "\\X\\"),
    T("\\\\", "\\\\"),
    T("a\\.zz\\b", "a\\.zz\\b"),
    T("\\.sk x\\", "\\.sk x\\"),
    /* escape with no closing one */
    T("SMI\\TH", "SMI\\TH"),
    T("abc\\", "abc\\"),
    T("\\", "\\"),
    T("\\F", "\\F"),
    T("a\\F\\b\\c", "a|b\\c"),
    /* custom escape character: '@'; a backslash is then just a byte */
    TD(&custom, "A@F@B", "A*B"),
    TD(&custom, "@S@@T@@R@@E@", "%!$@"),
    TD(&custom, "@X41@", "A"),
    TD(&custom, "@.br@", "\n"),
    TD(&custom, "a\\F\\b", "a\\F\\b"),
    TD(&custom, "EV@ANS", "EV@ANS"),
};

static const struct esc_case escape_cases[] = {
    T("", ""),
    T("plain text", "plain text"),
    T("caf\xC3\xA9", "caf\xC3\xA9"),
    T("a|b^c~d\\e&f", "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"),
    T("\\F\\", "\\E\\F\\E\\"),
    T("a\rb\nc\r\n", "a\\X0D\\b\\X0A\\c\\X0D\\\\X0A\\"),
    TD(&custom, "*%$@!", "@F@@S@@R@@E@@T@"),
    TD(&custom, "a|b\\c", "a|b\\c"),
    TD(&v27, "a#b", "a\\P\\b"),
    T("a#b", "a#b"),
};

static void run_cases(const struct esc_case *cases, size_t n, bool escape)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++) {
        const struct esc_case *c = &cases[i];
        const struct hl7_delims *d = c->d ? c->d : &hl7_default_delims;
        size_t in_len = c->in_len ? c->in_len : strlen(c->in);
        size_t out_len = c->out_len ? c->out_len : strlen(c->out);
        char *in = dup_exact(c->in, in_len);
        struct buf b = {0};
        buf_puts(&b, ">");                          /* both append */
        int rc = escape ? hl7_escape(d, in, in_len, &b)
                        : hl7_unescape(d, in, in_len, &b);
        free(in);
        assert_int_equal(rc, 0);
        if (b.len != out_len + 1 || memcmp(b.p + 1, c->out, out_len) != 0 ||
            b.p[0] != '>') {
            print_error("%s(\"%s\") = \"%s\", want \"%s\"\n",
                        escape ? "escape" : "unescape", show(c->in, in_len),
                        show(b.p + 1, b.len - 1), show(c->out, out_len));
            wrong++;
        }
        buf_free(&b);
    }
    assert_int_equal(wrong, 0);
}

static void test_unescape(void **state)
{
    (void)state;
    run_cases(unescape_cases, ARRAY_LEN(unescape_cases), false);
}

static void test_escape(void **state)
{
    (void)state;
    run_cases(escape_cases, ARRAY_LEN(escape_cases), true);
}

/* Escaped output never holds a delimiter, CR or LF except the escape
 * character opening and closing sequences; unescaping gives back the
 * original bytes, whatever they were. */
static void round_trip(const struct hl7_delims *d, uint64_t seed)
{
    static const char alphabet[] = "|^~\\&*%$@!#\r\nX0AFSTREP.br ";
    for (int round = 0; round < 3000; round++) {
        size_t n = (size_t)(rng_next(&seed) % 48);
        char *val = malloc(n ? n : 1);
        assert_non_null(val);
        for (size_t k = 0; k < n; k++) {
            uint64_t r = rng_next(&seed);
            val[k] = (r & 3) ? alphabet[(r >> 8) % (sizeof alphabet - 1)] : (char)(r >> 16);
        }
        struct buf esc = {0}, back = {0};
        assert_int_equal(hl7_escape(d, val, n, &esc), 0);
        for (size_t k = 0; k < esc.len; k++) {
            char c = esc.p[k];
            assert_true(c != '\r' && c != '\n');
            assert_true(c != d->field && c != d->component && c != d->repetition &&
                        c != d->subcomponent);
            if (d->truncation)
                assert_true(c != d->truncation);
        }
        assert_int_equal(hl7_unescape(d, esc.p, esc.len, &back), 0);
        if (back.len != n || (n && memcmp(back.p, val, n) != 0)) {
            print_error("round trip of \"%s\" gave \"%s\" (escaped \"%s\")\n",
                        show(val, n), show(back.p, back.len), show(esc.p, esc.len));
            free(val);
            buf_free(&esc);
            buf_free(&back);
            fail();
        }
        free(val);
        buf_free(&esc);
        buf_free(&back);
    }
}

static void test_round_trip_default(void **state)
{
    (void)state;
    round_trip(&hl7_default_delims, 1);
}

static void test_round_trip_custom(void **state)
{
    (void)state;
    round_trip(&custom, 2);
}

static void test_round_trip_truncation(void **state)
{
    (void)state;
    round_trip(&v27, 3);
}

/* Escaped values set into a message read back decoded as the original. */
static void test_round_trip_through_message(void **state)
{
    (void)state;
    static const char *values[] = { "A|B", "x^y&z~w", "back\\slash", "cr\rlf\n",
                                    "\\F\\ literally", "caf\xC3\xA9" };
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        struct hl7_path p = P("NTE-3");
        struct hl7_error err = {0};
        assert_int_equal(hl7_set(s.msg, &p, values[i], strlen(values[i]), &err), 0);
        assert_decoded(s.msg, "NTE-3", values[i]);
        /* still one repetition, component and subcomponent */
        assert_int_equal(hl7_count(s.msg, &p), 1);
    }
    sample_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_round_trip_default),
        cmocka_unit_test(test_round_trip_custom),
        cmocka_unit_test(test_round_trip_truncation),
        cmocka_unit_test(test_round_trip_through_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
