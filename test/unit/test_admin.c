/*
 * test_admin.c: the admin API's token file parser and checker, and the
 * Prometheus text writer (names, label escaping, histograms with
 * cumulative buckets ending in +Inf equal to _count).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "buf.h"
#include "metrics.h"

#define TOK1 "0123456789abcdef0123456789abcdef"
#define TOK2 "fedcba9876543210fedcba9876543210"

static int parse(const char *text, struct admin_tokens *t, char *err, size_t errlen)
{
    return admin_tokens_parse(text, strlen(text), "tokens", t, err, errlen);
}

static void test_tokens_good(void **state)
{
    (void)state;
    struct admin_tokens t;
    char err[512] = "";
    const char *text = "# comment\n\n   \t\n  # indented comment\r\n"
                       "alice " TOK1 "\r\n"
                       "\tbob.ops@site\t " TOK2 "   \n";
    assert_int_equal(parse(text, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.v[0].name, "alice");
    assert_string_equal(t.v[1].name, "bob.ops@site");
    assert_string_equal(admin_tokens_check(&t, TOK1, strlen(TOK1)), "alice");
    assert_string_equal(admin_tokens_check(&t, TOK2, strlen(TOK2)), "bob.ops@site");
    assert_null(admin_tokens_check(&t, TOK1, strlen(TOK1) - 1));
    assert_null(admin_tokens_check(&t, "", 0));
    assert_null(admin_tokens_check(&t, TOK1 "x", strlen(TOK1) + 1));
    admin_tokens_free(&t);
    /* no final newline */
    assert_int_equal(parse("alice " TOK1, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 1);
    admin_tokens_free(&t);
}

struct bad_case {
    const char *text;
    const char *want;   /* in the error */
};

static void test_tokens_bad(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        { "", "tokens: holds no token" },
        { "# only a comment\n\n", "tokens: holds no token" },
        { "alice\n", "tokens:1: no token after the name alice" },
        { "# c\nalice " TOK1 " extra\n", "tokens:2: more than two fields" },
        { "alice short\n", "tokens:1: the token of alice is 5 characters" },
        { "al!ce " TOK1 "\n", "tokens:1: the name must be" },
        { "alice " TOK1 "\nalice " TOK2 "\n", "tokens:2: the name alice is given twice" },
        { "alice " TOK1 "\nbob " TOK1 "\n", "tokens:2: the token of bob is also the token of alice" },
        { "alice 0123456789abcdef\x01" "0123\n", "not printable ASCII" },
        { "alice 0123456789abcdef\xc3\xa9" "0123\n", "not printable ASCII" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct admin_tokens t;
        char err[512] = "";
        assert_int_equal(parse(cases[i].text, &t, err, sizeof err), -1);
        assert_int_equal(t.n, 0);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
        /* the error never quotes a token */
        assert_null(strstr(err, TOK1));
    }
    /* a NUL byte */
    struct admin_tokens t;
    char err[512] = "";
    static const char nul[] = "alice " TOK1 "\0\n";
    assert_int_equal(admin_tokens_parse(nul, sizeof nul - 1, "tokens", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "NUL"));
    /* a name of 65 characters */
    char longname[200];
    memset(longname, 'n', 65);
    snprintf(longname + 65, sizeof longname - 65, " %s\n", TOK1);
    assert_int_equal(parse(longname, &t, err, sizeof err), -1);
}

static void test_tokens_file_mode(void **state)
{
    (void)state;
    char path[] = "/tmp/test_admin_tokens.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "ops " TOK1 "\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    struct admin_tokens t;
    char err[512] = "";
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(admin_tokens_load(path, &t, err, sizeof err), 0);
    assert_int_equal(t.n, 1);
    admin_tokens_free(&t);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(admin_tokens_load(path, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "mode 0640"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(admin_tokens_load(path, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(path);
    assert_int_equal(admin_tokens_load(path, &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
    assert_int_equal(admin_tokens_load("/tmp", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a regular file"));
}

/* ------------------------------------------------------------ Prometheus */

static void test_prom_escaping(void **state)
{
    (void)state;
    struct buf out = { 0 };
    struct metrics_writer w;
    metrics_begin(&w, &out);
    metrics_family(&w, "x_total", METRICS_COUNTER, "help with \\ and\nnewline");
    struct metrics_label l[2] = { { "source", "a\"b\\c\nd" }, { "reason", "plain" } };
    metrics_sample_u64(&w, l, 2, 18446744073709551615ull);
    metrics_family(&w, "g", METRICS_GAUGE, "");
    metrics_sample(&w, NULL, 0, 0.25);
    metrics_sample(&w, l + 1, 1, 1e21);
    metrics_sample(&w, l + 1, 1, NAN);
    assert_int_equal(metrics_end(&w), 0);
    assert_string_equal(out.p,
        "# HELP x_total help with \\\\ and\\nnewline\n"
        "# TYPE x_total counter\n"
        "x_total{source=\"a\\\"b\\\\c\\nd\",reason=\"plain\"} 18446744073709551615\n"
        "# HELP g \n"
        "# TYPE g gauge\n"
        "g 0.25\n"
        "g{reason=\"plain\"} 1e+21\n"
        "g{reason=\"plain\"} NaN\n");
    buf_free(&out);
}

static void test_prom_mistakes(void **state)
{
    (void)state;
    struct buf out = { 0 };
    struct metrics_writer w;
    /* a bad metric name */
    metrics_begin(&w, &out);
    metrics_family(&w, "9bad", METRICS_GAUGE, "");
    assert_int_equal(metrics_end(&w), -1);
    /* a bad label name, "le" and a label twice */
    static const struct metrics_label bad[][2] = {
        { { "a-b", "x" }, { "c", "y" } },
        { { "le", "x" }, { "c", "y" } },
        { { "c", "x" }, { "c", "y" } },
        { { "__reserved", "x" }, { "c", "y" } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        buf_reset(&out);
        metrics_begin(&w, &out);
        metrics_family(&w, "ok", METRICS_GAUGE, "");
        metrics_sample(&w, bad[i], 2, 1);
        assert_int_equal(metrics_end(&w), -1);
    }
    /* a sample before any family; a histogram sample in a gauge family */
    metrics_begin(&w, &out);
    metrics_sample(&w, NULL, 0, 1);
    assert_int_equal(metrics_end(&w), -1);
    struct metrics_hist h;
    metrics_hist_init_batch(&h);
    metrics_begin(&w, &out);
    metrics_family(&w, "ok", METRICS_GAUGE, "");
    metrics_histogram(&w, NULL, 0, &h);
    assert_int_equal(metrics_end(&w), -1);
    buf_free(&out);
    assert_true(metrics_valid_name("a:b_c9"));
    assert_false(metrics_valid_name(""));
    assert_false(metrics_valid_label_name("a:b"));
}

static void test_prom_histogram(void **state)
{
    (void)state;
    struct metrics_hist h;
    static const double bounds[] = { 0.5, 1, 2.5 };
    static const double bad[] = { 1, 1 };
    assert_int_equal(metrics_hist_init(&h, bad, 2), -1);
    assert_int_equal(metrics_hist_init(&h, bounds, 3), 0);
    double obs[] = { 0.1, 0.5, 0.7, 1, 2, 3, 100, -1 };
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        metrics_hist_observe(&h, obs[i]);
    metrics_hist_observe(&h, NAN);   /* ignored */
    assert_int_equal(h.count, 8);
    struct buf out = { 0 };
    struct metrics_writer w;
    metrics_begin(&w, &out);
    metrics_family(&w, "lat_seconds", METRICS_HISTOGRAM, "latency");
    struct metrics_label l = { "source", "s1" };
    metrics_histogram(&w, &l, 1, &h);
    assert_int_equal(metrics_end(&w), 0);
    assert_string_equal(out.p,
        "# HELP lat_seconds latency\n"
        "# TYPE lat_seconds histogram\n"
        "lat_seconds_bucket{source=\"s1\",le=\"0.5\"} 3\n"
        "lat_seconds_bucket{source=\"s1\",le=\"1\"} 5\n"
        "lat_seconds_bucket{source=\"s1\",le=\"2.5\"} 6\n"
        "lat_seconds_bucket{source=\"s1\",le=\"+Inf\"} 8\n"
        "lat_seconds_sum{source=\"s1\"} 106.3\n"
        "lat_seconds_count{source=\"s1\"} 8\n");

    /* adding: same bounds add up; other bounds are refused */
    struct metrics_hist sum = { 0 }, other;
    assert_int_equal(metrics_hist_add(&sum, &h), 0);
    assert_int_equal(metrics_hist_add(&sum, &h), 0);
    assert_int_equal(sum.count, 16);
    assert_int_equal(sum.counts[3], 4);
    metrics_hist_init_latency(&other);
    assert_int_equal(metrics_hist_add(&other, &h), -1);

    /* the latency buckets print as plain decimals, no label: only le */
    metrics_hist_observe(&other, 0.002);
    buf_reset(&out);
    metrics_begin(&w, &out);
    metrics_family(&w, "l", METRICS_HISTOGRAM, "x");
    metrics_histogram(&w, NULL, 0, &other);
    assert_int_equal(metrics_end(&w), 0);
    assert_non_null(strstr(out.p, "l_bucket{le=\"0.001\"} 0\nl_bucket{le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(out.p, "l_bucket{le=\"3600\"} 1\nl_bucket{le=\"+Inf\"} 1\n"
                                  "l_sum 0.002\nl_count 1\n"));
    buf_free(&out);
}

static void test_format_double(void **state)
{
    (void)state;
    static const struct { double v; const char *want; } cases[] = {
        { 0, "0" }, { 1, "1" }, { -3, "-3" }, { 0.1, "0.1" }, { 0.0025, "0.0025" },
        { 1.0 / 3, "0.333333333333333" }, { INFINITY, "+Inf" }, { -INFINITY, "-Inf" },
        { 1e300, "1e+300" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b = { 0 };
        assert_int_equal(metrics_format_double(&b, cases[i].v), 0);
        if (cases[i].v == 1.0 / 3)
            assert_true(strtod(b.p, NULL) == cases[i].v);
        else
            assert_string_equal(b.p, cases[i].want);
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens_good),
        cmocka_unit_test(test_tokens_bad),
        cmocka_unit_test(test_tokens_file_mode),
        cmocka_unit_test(test_prom_escaping),
        cmocka_unit_test(test_prom_mistakes),
        cmocka_unit_test(test_prom_histogram),
        cmocka_unit_test(test_format_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
