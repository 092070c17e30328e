/*
 * test_route_tables.c: lookup tables from CSV files (routes/tables.c):
 * RFC 4180 quoting, line endings, a BOM, header rows, and the errors a
 * table can have, each naming its file and line.
 */
#include "hl7_test_util.h"

#include <unistd.h>

#include "config.h"
#include "route.h"

#define TABLES "test/data/tables/"

/* A config holding one table, as config_load would leave it. */
struct one {
    struct config       cfg;
    struct config_table t;
};

static void one_init(struct one *o, const char *name, const char *file, bool header)
{
    memset(o, 0, sizeof *o);
    o->cfg.path = (char *)"test.conf";
    o->cfg.tables = &o->t;
    o->cfg.n_tables = 1;
    o->t.name = (char *)name;
    o->t.file = (char *)file;
    o->t.header = header;
    o->t.line = 7;
}

static struct route_tables *load_ok_at(const char *file, bool header, const char *src, int line)
{
    struct one o;
    struct route_tables *t = NULL;
    struct route_error err;
    one_init(&o, "t", file, header);
    if (route_tables_load(&o.cfg, &t, &err) != 0 || !t) {
        print_error("loading %s failed: %s\n", file, err.msg);
        _fail(src, line);
    }
    return t;
}
#define load_ok(file, header) load_ok_at((file), (header), __FILE__, __LINE__)

static void load_bad_at(const char *file, bool header, const char *want, const char *src, int line)
{
    struct one o;
    struct route_tables *t = (struct route_tables *)&o;   /* must become NULL */
    struct route_error err;
    one_init(&o, "t", file, header);
    int rc = route_tables_load(&o.cfg, &t, &err);
    if (rc == 0 || t) {
        print_error("loading %s succeeded, want \"%s\"\n", file, want);
        route_tables_free(rc == 0 ? t : NULL);
        _fail(src, line);
    }
    if (strcmp(err.msg, want) != 0) {
        print_error("loading %s:\n  got  \"%s\"\n  want \"%s\"\n", file, err.msg, want);
        _fail(src, line);
    }
}
#define load_bad(file, header, want) load_bad_at((file), (header), (want), __FILE__, __LINE__)

static void check_get_at(const struct route_tables *t, const char *key, const char *want,
                         const char *src, int line)
{
    const char *got = route_table_get(t, "t", key, strlen(key));
    if (!want && !got)
        return;
    if (!want || !got || strcmp(got, want) != 0) {
        print_error("t[\"%s\"] = %s%s%s, want %s%s%s\n", show(key, strlen(key)),
                    got ? "\"" : "", got ? show(got, strlen(got)) : "NULL", got ? "\"" : "",
                    want ? "\"" : "", want ? want : "NULL", want ? "\"" : "");
        _fail(src, line);
    }
}
#define check_table(t, key, want) check_get_at((t), (key), (want), __FILE__, __LINE__)

/* ------------------------------------------------------------- reading */

static void test_plain_with_key_value_header(void **state)
{
    (void)state;
    struct route_tables *t = load_ok(TABLES "site-codes.csv", false);
    check_table(t, "RLH", "Royal London Hospital");
    check_table(t, "KCH", "King's College Hospital");
    check_table(t, "UCLH", "University College Hospital");
    check_table(t, "RLH-W12", "Ward 12 (Royal London)");
    check_table(t, "key", NULL);            /* "key,value" is a header */
    check_table(t, "rlh", NULL);            /* exact keys */
    check_table(t, "RL", NULL);
    check_table(t, "RLHX", NULL);
    check_table(t, "", NULL);
    assert_true(route_table_exists(t, "t"));
    assert_false(route_table_exists(t, "T"));
    assert_null(route_table_get(t, "other", "RLH", 3));
    /* key_len counts, not a NUL */
    assert_string_equal(route_table_get(t, "t", "RLHX", 3), "Royal London Hospital");
    route_tables_free(t);
}

static void test_quoting(void **state)
{
    (void)state;
    struct route_tables *t = load_ok(TABLES "quoted.csv", false);
    check_table(t, "RLH", "Royal London, Whitechapel");
    check_table(t, "KCH", "King's \"Denmark Hill\"");
    check_table(t, "MULTI", "line one\nline two");
    check_table(t, "MULTICRLF", "a\r\nb");
    check_table(t, "EMPTY", "");
    check_table(t, "EMPTYQ", "");
    check_table(t, "a,b", "comma key");
    route_tables_free(t);
}

static void test_line_endings(void **state)
{
    (void)state;
    struct route_tables *t = load_ok(TABLES "crlf.csv", false);   /* no final newline */
    check_table(t, "A01", "admit");
    check_table(t, "A02", "transfer");
    check_table(t, "A03", "discharge");
    route_tables_free(t);

    t = load_ok(TABLES "cr.csv", false);                          /* lone CRs */
    check_table(t, "A", "1");
    check_table(t, "B", "2");
    check_table(t, "C", "3");
    route_tables_free(t);
}

static void test_bom(void **state)
{
    (void)state;
    struct route_tables *t = load_ok(TABLES "bom.csv", false);
    check_table(t, "RLH", "Royal London");
    check_table(t, "key", NULL);
    check_table(t, "\xef\xbb\xbfkey", NULL);
    route_tables_free(t);
}

static void test_header_setting(void **state)
{
    (void)state;
    struct route_tables *t = load_ok(TABLES "header.csv", true);
    check_table(t, "code", NULL);
    check_table(t, "RLH", "Royal London");
    check_table(t, "KCH", "King's");
    route_tables_free(t);

    t = load_ok(TABLES "header.csv", false);        /* then it is an entry */
    check_table(t, "code", "name");
    check_table(t, "RLH", "Royal London");
    route_tables_free(t);
}

static void test_many_keys(void **state)
{
    (void)state;
    char path[] = "/tmp/test_route_tables_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    for (int i = 4999; i >= 0; i--)                 /* reverse order */
        fprintf(f, "K%d,value %d\n", i * 7, i);
    fclose(f);
    struct route_tables *t = load_ok(path, false);
    for (int i = 0; i < 5000; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "K%d", i * 7);
        snprintf(v, sizeof v, "value %d", i);
        check_table(t, k, v);
        snprintf(k, sizeof k, "K%d", i * 7 + 1);
        check_table(t, k, NULL);
    }
    route_tables_free(t);
    unlink(path);
}

static void test_several_tables_and_none(void **state)
{
    (void)state;
    struct config_table ts[2] = {
        { .name = (char *)"site-codes", .file = (char *)TABLES "site-codes.csv", .line = 3 },
        { .name = (char *)"events", .file = (char *)TABLES "crlf.csv", .line = 4 },
    };
    struct config cfg = { .path = (char *)"test.conf", .tables = ts, .n_tables = 2 };
    struct route_tables *t = NULL;
    struct route_error err;
    assert_int_equal(route_tables_load(&cfg, &t, &err), 0);
    assert_string_equal(route_table_get(t, "site-codes", "KCH", 3), "King's College Hospital");
    assert_string_equal(route_table_get(t, "events", "A03", 3), "discharge");
    assert_null(route_table_get(t, "events", "KCH", 3));
    assert_true(route_table_exists(t, "events"));
    assert_false(route_table_exists(t, "site-code"));
    route_tables_free(t);

    /* The second table fails: nothing is returned, nothing leaks. */
    ts[1].file = (char *)TABLES "duplicate.csv";
    t = NULL;
    assert_int_equal(route_tables_load(&cfg, &t, &err), -1);
    assert_null(t);
    assert_string_equal(err.msg, TABLES "duplicate.csv:5: table events: duplicate key 'RLH' "
                        "(also on line 1)");

    struct config empty = { .path = (char *)"test.conf" };
    assert_int_equal(route_tables_load(&empty, &t, &err), 0);
    assert_non_null(t);
    assert_false(route_table_exists(t, "site-codes"));
    assert_null(route_table_get(t, "site-codes", "RLH", 3));
    route_tables_free(t);

    assert_null(route_table_get(NULL, "site-codes", "RLH", 3));
    assert_false(route_table_exists(NULL, "site-codes"));
    route_tables_free(NULL);
}

/* -------------------------------------------------------------- errors */

static void test_errors(void **state)
{
    (void)state;
    load_bad(TABLES "wrong-columns.csv", false,
             TABLES "wrong-columns.csv:3: table t: 3 fields, expected 2 (key,value) "
             "(quote a value that holds a comma: \"a, b\")");
    load_bad(TABLES "semicolon.csv", false,
             TABLES "semicolon.csv:1: table t: 1 field, expected 2 (key,value) "
             "(the separator is a comma)");
    load_bad(TABLES "duplicate.csv", false,
             TABLES "duplicate.csv:5: table t: duplicate key 'RLH' (also on line 1)");
    load_bad(TABLES "unterminated.csv", false,
             TABLES "unterminated.csv:2: table t: a quoted field opened on this line is "
             "never closed");
    load_bad(TABLES "empty.csv", false,
             TABLES "empty.csv: table t: no entries: a table is lines of key,value");
    load_bad(TABLES "header-only.csv", true,
             TABLES "header-only.csv: table t: no entries: a table is lines of key,value");
    /* blank lines are skipped but counted, and so are lines inside quotes */
    load_bad(TABLES "lines.csv", false,
             TABLES "lines.csv:6: table t: 1 field, expected 2 (key,value)");
    load_bad(TABLES "stray-quote.csv", false,
             TABLES "stray-quote.csv:1: table t: a quote inside a field that does not start "
             "with one: quote the whole field and write the quote twice (\"5\"\" disk\")");
    load_bad(TABLES "after-quote.csv", false,
             TABLES "after-quote.csv:1: table t: after a closing quote comes ',' or the end "
             "of the line (a quote inside a quoted field is written twice: \"\")");
    load_bad(TABLES "empty-key.csv", false,
             TABLES "empty-key.csv:2: table t: the key (the first field) is empty");
    load_bad(TABLES "nul.csv", false,
             TABLES "nul.csv:2: table t: a NUL byte: this is not a text file");
    load_bad(TABLES "no-such-file.csv", false,
             "test.conf:7: table t: cannot open " TABLES "no-such-file.csv: "
             "No such file or directory");
}

static void test_size_limit(void **state)
{
    (void)state;
    char path[] = "/tmp/test_route_tables_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, ((off_t)64 << 20) + 1), 0);   /* sparse */
    close(fd);
    char want[256];
    snprintf(want, sizeof want, "test.conf:7: table t: %s is 67108865 bytes, more than the "
             "64 MiB a table may hold", path);
    load_bad(path, false, want);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_with_key_value_header),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_header_setting),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_several_tables_and_none),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_size_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
