/*
 * test_log.c: the logfmt logger: value quoting and escaping (a hostile
 * value never makes a second line or a forged key), the pairs formatter,
 * level filtering, the line builder and rate limiting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

static FILE *out;

static int setup(void **state)
{
    (void)state;
    out = tmpfile();
    if (!out)
        return -1;
    log_set_fd(fileno(out));
    log_set_level(LOG_LEVEL_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_fd(2);
    log_set_level(LOG_LEVEL_INFO);
    fclose(out);
    return 0;
}

/* Everything logged since the last call, as a string to free. */
static char *take(void)
{
    struct buf b = { 0 };
    char chunk[4096];
    size_t n;
    fflush(out);
    rewind(out);
    while ((n = fread(chunk, 1, sizeof chunk, out)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    rewind(out);
    assert_int_equal(ftruncate(fileno(out), 0), 0);
    return buf_take(&b, NULL);
}

/* The line without its "ts=... " prefix, which must be well-formed. */
static const char *body(const char *line)
{
    regex_t re;
    assert_int_equal(regcomp(&re, "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                  "\\.[0-9]{3}Z ", REG_EXTENDED), 0);
    int rc = regexec(&re, line, 0, NULL, 0);
    regfree(&re);
    assert_int_equal(rc, 0);
    return strchr(line, ' ') + 1;
}

static void value_is(const char *in, size_t len, const char *want)
{
    struct buf b = { 0 };
    assert_int_equal(log_append_value(&b, in, len), 0);
    assert_string_equal(b.p ? b.p : "", want);
    buf_free(&b);
}

static void test_values(void **state)
{
    (void)state;
    value_is("plain", 5, "plain");
    value_is("127.0.0.1:2575", 14, "127.0.0.1:2575");
    value_is("", 0, "\"\"");
    value_is(NULL, 0, "\"\"");
    value_is("two words", 9, "\"two words\"");
    value_is("a=b", 3, "\"a=b\"");
    value_is("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
    value_is("back\\slash", 10, "\"back\\\\slash\"");
    value_is("x\nts=1 level=error msg=forged", 29,
             "\"x\\nts=1 level=error msg=forged\"");
    value_is("cr\rtab\t", 7, "\"cr\\rtab\\t\"");
    value_is("\x0b\x1c\x0d", 3, "\"\\x0b\\x1c\\r\"");       /* MLLP framing bytes */
    value_is("nul\0byte", 8, "\"nul\\x00byte\"");
    value_is("del\x7f", 4, "\"del\\x7f\"");
    value_is("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");          /* valid UTF-8 kept */
    value_is("bad\xc3(", 5, "\"bad\\xc3(\"");               /* invalid escaped */
    value_is("\xed\xa0\x80", 3, "\"\\xed\\xa0\\x80\"");      /* a surrogate */
    value_is("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"");

    char big[LOG_VALUE_MAX + 100];
    memset(big, 'a', sizeof big);
    struct buf b = { 0 };
    assert_int_equal(log_append_value(&b, big, sizeof big), 0);
    assert_int_equal(b.len, LOG_VALUE_MAX + 5);            /* quotes and "..." */
    assert_memory_equal(b.p + b.len - 4, "...\"", 4);
    buf_free(&b);
}

static void test_line(void **state)
{
    (void)state;
    log_info("mllp", "connection refused", "peer=%s:%u reason=%s", "10.0.0.9", 40000u,
             "not in allow list");
    char *text = take();
    assert_string_equal(body(text), "level=info component=mllp msg=\"connection refused\" "
                        "peer=10.0.0.9:40000 reason=\"not in allow list\"\n");
    free(text);

    /* A hostile value stays on its line and inside its quotes. */
    log_warn("ingest", "bad message", "control_id=%s", "X\nts=0 level=error msg=pwned");
    text = take();
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);   /* one line */
    assert_non_null(strstr(text, "control_id=\"X\\nts=0 level=error msg=pwned\"\n"));
    free(text);

    log_error("a b", "x", NULL);
    text = take();
    assert_string_equal(body(text), "level=error component=\"a b\" msg=x\n");
    free(text);
}

static void test_conversions(void **state)
{
    (void)state;
    long long big = -9000000000LL;
    const char *none = getenv("HL7BROKER_TEST_NEVER_SET");   /* NULL, unseen by gcc */
    size_t n = 42;
    log_info("t", "m", "a=%d b=%u c=%lld d=%zu e=%x f=%.*s g=%5.2f h=%c i=%% j=%s k=%03d l=%s",
             -5, 7u, big, n, 255u, 3, "abcdef", 3.14159, 'Z', "lit", 7, none);
    char *text = take();
    assert_string_equal(body(text), "level=info component=t msg=m a=-5 b=7 c=-9000000000 "
                        "d=42 e=ff f=abc g=\" 3.14\" h=Z i=% j=lit k=007 l=\"\"\n");
    free(text);

    log_info("t", "m", "bare v=%s", "x");
    text = take();
    assert_string_equal(body(text), "level=info component=t msg=m bare v=x\n");
    free(text);
}

static void test_levels(void **state)
{
    (void)state;
    enum log_level l;
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_level_parse("verbose", &l), -1);
    assert_string_equal(log_level_name(LOG_LEVEL_DEBUG), "debug");
    assert_true(log_facility_parse("local7") >= 0);
    assert_int_equal(log_facility_parse("kern"), -1);

    log_set_level(LOG_LEVEL_WARN);
    log_info("t", "hidden", NULL);
    log_debug("t", "hidden", NULL);
    log_warn("t", "shown", NULL);
    char *text = take();
    assert_string_equal(body(text), "level=warn component=t msg=shown\n");
    free(text);
    log_set_level(LOG_LEVEL_INFO);
}

static void test_builder(void **state)
{
    (void)state;
    struct log_line l;
    assert_true(log_line_begin(&l, LOG_LEVEL_INFO, "config", "source"));
    log_line_add(&l, "name", "%s", "rlh-pas");
    log_line_add(&l, "bad key!", "%d", 3);
    log_line_add(&l, "allow", "%s", "a b");
    log_line_end(&l);
    char *text = take();
    assert_string_equal(body(text), "level=info component=config msg=source name=rlh-pas "
                        "bad_key_=3 allow=\"a b\"\n");
    free(text);

    assert_false(log_line_begin(&l, LOG_LEVEL_DEBUG, "config", "source"));
    log_line_add(&l, "x", "%d", 1);   /* harmless after a filtered begin */
    log_line_end(&l);
    text = take();
    assert_string_equal(text, "");
    free(text);
}

static void test_ratelimit(void **state)
{
    (void)state;
    struct log_ratelimit rl = LOG_RATELIMIT_INIT(60000, 3);
    for (int i = 0; i < 10; i++)
        log_msg_ratelimited(&rl, LOG_LEVEL_WARN, "mllp", "refused", "n=%d", i);
    char *text = take();
    size_t lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++)
        lines++;
    assert_int_equal(lines, 3);
    assert_int_equal(rl.suppressed, 7);
    free(text);

    /* A new window: the next line carries the count of those dropped. */
    rl.window_start_ms -= 60000;
    log_msg_ratelimited(&rl, LOG_LEVEL_WARN, "mllp", "refused", "n=%d", 10);
    text = take();
    assert_string_equal(body(text), "level=warn component=mllp msg=refused n=10 suppressed=7\n");
    free(text);
    assert_int_equal(rl.suppressed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests_name("log", tests, setup, teardown);
}
