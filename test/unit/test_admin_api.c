/*
 * test_admin_api.c: the pure helpers of the admin API and hl7ctl's online
 * commands: times as the API takes and gives them, and aligned tables.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "ctl.h"

static void test_parse_time_good(void **state)
{
    (void)state;
    static const struct { const char *in; uint64_t ms; } cases[] = {
        { "0", 0 },
        { "1700000000123", 1700000000123ull },
        { "1970-01-01", 0 },
        { "2024-05-01", 1714521600000ull },
        { "2024-05-01T13:45", 1714571100000ull },
        { "2024-05-01T13:45:07Z", 1714571107000ull },
        { "2024-05-01 13:45:07.250Z", 1714571107250ull },
        { "2024-02-29T00:00:00Z", 1709164800000ull },
        { "2000-02-29", 951782400000ull },
        { "9999-12-31T23:59:59.999Z", 253402300799999ull },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 1;
        if (admin_parse_time(cases[i].in, &ms) != 0)
            fail_msg("%s did not parse", cases[i].in);
        if (ms != cases[i].ms)
            fail_msg("%s: %llu, want %llu", cases[i].in, (unsigned long long)ms,
                     (unsigned long long)cases[i].ms);
    }
}

static void test_parse_time_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "yesterday", "-1", "1e9", "2024-13-01", "2024-00-10", "2023-02-29", "2024-04-31",
        "2024-05-01T24:00", "2024-05-01T12:60", "2024-05-01T12:00:60", "2024-05-01T12",
        "2024-05-01T12:00:00+01:00", "2024-05-01T12:00:00.5Z", "1969-12-31", "2024/05/01",
        "2024-5-1", "10000-01-01", "9999999999999999", "2024-05-01ZZ", "2024-05-01T12:00:00Zx",
        " 2024-05-01", "123456789012345678901234567890123",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms;
        if (admin_parse_time(bad[i], &ms) == 0)
            fail_msg("%s parsed as %llu", bad[i], (unsigned long long)ms);
    }
    uint64_t ms;
    assert_int_equal(admin_parse_time(NULL, &ms), -1);
}

static void test_format_time(void **state)
{
    (void)state;
    char t[40];
    admin_format_time(0, t, sizeof t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    admin_format_time(1714571107250ull, t, sizeof t);
    assert_string_equal(t, "2024-05-01T13:45:07.250Z");
    uint64_t back;
    assert_int_equal(admin_parse_time(t, &back), 0);
    assert_int_equal(back, 1714571107250ull);
}

static char *table_text(struct ctl_table *t)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);
    assert_non_null(f);
    ctl_table_print(t, f);
    fclose(f);
    return p;
}

static void test_table(void **state)
{
    (void)state;
    struct ctl_table t = { .ncols = 3, .right = 0x2 };
    assert_int_equal(ctl_table_add(&t, (const char *const[]){ "NAME", "N", "NOTE" }), 0);
    assert_int_equal(ctl_table_add(&t, (const char *const[]){ "hie", "12", "ok" }), 0);
    assert_int_equal(ctl_table_add(&t, (const char *const[]){ "files-long", "3", NULL }), 0);
    char *s = table_text(&t);
    assert_string_equal(s, "NAME         N  NOTE\n"
                           "hie         12  ok\n"
                           "files-long   3  \n");
    free(s);
    ctl_table_free(&t);
}

static void test_table_escapes_and_utf8(void **state)
{
    (void)state;
    struct ctl_table t = { .ncols = 2 };
    ctl_table_add(&t, (const char *const[]){ "A", "B" });
    ctl_table_add(&t, (const char *const[]){ "line\r\nbreak\x01", "x" });
    ctl_table_add(&t, (const char *const[]){ "O\xc3\x8f", "y" });   /* two characters */
    char *s = table_text(&t);
    assert_string_equal(s, "A                  B\n"
                           "line\\r\\nbreak\\x01  x\n"
                           "O\xc3\x8f                 y\n");
    free(s);
    ctl_table_free(&t);
    struct ctl_table empty = { .ncols = 1 };
    s = table_text(&empty);
    assert_string_equal(s, "");
    free(s);
    ctl_table_free(&empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_time_good),
        cmocka_unit_test(test_parse_time_bad),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_escapes_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
