/*
 * test_objections.c: the objections register (routes/objections.c): the
 * file format and its errors (FILE:LINE), NHS number normalising and
 * checking, purposes, lookups, run-time changes laid over the file, and
 * listing.
 */
#include "hl7_test_util.h"

#include "objections.h"

static void check_parse_error_at(const char *text, const char *want, const char *file, int line)
{
    struct objections_set *s = (struct objections_set *)&s;
    char err[512] = "";
    if (objections_set_parse(text, strlen(text), "obj.csv", &s, err, sizeof err) == 0 || s) {
        print_error("\"%s\" parsed, want %s\n", show(text, strlen(text)), want);
        _fail(file, line);
    }
    if (strcmp(err, want) != 0) {
        print_error("\"%s\":\n  got  \"%s\"\n  want \"%s\"\n", show(text, strlen(text)), err,
                    want);
        _fail(file, line);
    }
}
#define check_parse_error(t, w) check_parse_error_at((t), (w), __FILE__, __LINE__)

static struct objections *load(const char *text)
{
    struct objections_set *s;
    char err[512];
    assert_int_equal(objections_set_parse(text, strlen(text), "obj.csv", &s, err, sizeof err), 0);
    struct objections *o = objections_new();
    assert_non_null(o);
    objections_install(o, s);
    return o;
}

static void test_file_format(void **state)
{
    (void)state;
    struct objections_set *s;
    char err[512];
    const char *text = "nhs_number,purpose\r\n# a comment\r\n\r\n999 000 0018,research\r\n"
                       "9990000018,research\n  9990000026 , direct_care  \n9990000034,ig-2024_a";
    assert_int_equal(objections_set_parse(text, strlen(text), "obj.csv", &s, err, sizeof err), 0);
    assert_int_equal(objections_set_count(s), 3);     /* the duplicate kept once */
    objections_set_free(s);
    assert_int_equal(objections_set_parse("", 0, "obj.csv", &s, err, sizeof err), 0);
    assert_int_equal(objections_set_count(s), 0);
    objections_set_free(s);
}

static void test_file_errors(void **state)
{
    (void)state;
    check_parse_error("9990000018\n", "obj.csv:1: expected \"nhs_number,purpose\" (two columns)");
    check_parse_error("9990000018,research,x\n",
                      "obj.csv:1: expected \"nhs_number,purpose\" (two columns)");
    check_parse_error("nhs_number,purpose\n9990000018,research\n9990000019,research\n",
                      "obj.csv:3: not a valid NHS number: the check digit is wrong (modulus 11)");
    check_parse_error("999000001,research\n",
                      "obj.csv:1: not a valid NHS number: an NHS number has 10 digits");
    check_parse_error("99900000188,research\n",
                      "obj.csv:1: not a valid NHS number: an NHS number has 10 digits");
    check_parse_error("99900000AB,research\n",
                      "obj.csv:1: not a valid NHS number: an NHS number has only digits");
    check_parse_error(",research\n", "obj.csv:1: not a valid NHS number: no NHS number");
    check_parse_error("9990000018,Research\n", "obj.csv:1: bad purpose: 1 to 64 characters of "
                      "a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    check_parse_error("9990000018,\n", "obj.csv:1: bad purpose: 1 to 64 characters of "
                      "a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    check_parse_error("9990000018,research purpose\n", "obj.csv:1: bad purpose: 1 to 64 "
                      "characters of a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    char longp[100];
    snprintf(longp, sizeof longp, "9990000018,%065d\n", 0);
    check_parse_error(longp, "obj.csv:1: bad purpose: 1 to 64 characters of "
                      "a-z, 0-9, '_' and '-' (direct_care, research, ...)");
    const char nul[] = "9990000018,research\n99900\0000026,research\n";
    struct objections_set *s = NULL;
    char err[256];
    assert_int_equal(objections_set_parse(nul, sizeof nul - 1, "obj.csv", &s, err, sizeof err), -1);
    assert_string_equal(err, "obj.csv:2: a NUL byte: not a text file");
    /* A header only counts on the first line. */
    check_parse_error("9990000018,research\nnhs_number,purpose\n",
                      "obj.csv:2: not a valid NHS number: an NHS number has only digits");
    assert_int_equal(objections_set_read("test/data/no-such-file.csv", &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "test/data/no-such-file.csv: cannot open"));
}

static void test_lookup_and_purposes(void **state)
{
    (void)state;
    struct objections *o = load("9990000018,research\n9990000026,direct_care\n");
    assert_true(objections_has(o, "9990000018", 10, "research"));
    assert_true(objections_has(o, "999 000 0018", 12, "research"));
    assert_false(objections_has(o, "9990000018", 10, "direct_care"));
    assert_true(objections_has(o, "9990000026", 10, "direct_care"));
    assert_false(objections_has(o, "9990000026", 10, "research"));
    assert_false(objections_has(o, "9990000019", 10, "research"));   /* not valid */
    assert_false(objections_has(o, "", 0, "research"));
    assert_false(objections_has(NULL, "9990000018", 10, "research"));
    assert_true(objections_purpose_valid("direct_care"));
    assert_true(objections_purpose_valid("a-b_9"));
    assert_false(objections_purpose_valid(""));
    assert_false(objections_purpose_valid("Research"));
    assert_false(objections_purpose_valid("a b"));
    assert_false(objections_purpose_valid(NULL));
    objections_unref(o);
}

struct listing {
    char text[512];
};

static int list_fn(void *ctx, const char *nhs, const char *purpose, bool from_file)
{
    struct listing *l = ctx;
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof l->text - n, "%s %s %s\n", purpose, nhs, from_file ? "file" : "api");
    return 0;
}

static void test_changes_over_the_file(void **state)
{
    (void)state;
    struct objections *o = load("9990000018,research\n");
    bool changed;
    /* Remove the file's entry; add another. */
    assert_int_equal(objections_change(o, "9990000018", "research", false, &changed), 0);
    assert_true(changed);
    assert_false(objections_has(o, "9990000018", 10, "research"));
    assert_int_equal(objections_change(o, "9990000026", "research", true, &changed), 0);
    assert_true(changed);
    assert_int_equal(objections_change(o, "9990000026", "research", true, &changed), 0);
    assert_false(changed);
    assert_int_equal(objections_change(o, "9990000034", "direct_care", true, NULL), 0);
    struct listing l = { "" };
    assert_int_equal(objections_each(o, NULL, list_fn, &l), 0);
    assert_string_equal(l.text, "direct_care 9990000034 api\nresearch 9990000026 api\n");
    l.text[0] = '\0';
    assert_int_equal(objections_each(o, "research", list_fn, &l), 0);
    assert_string_equal(l.text, "research 9990000026 api\n");
    /* A reload brings a new file: the changes stay over it. */
    struct objections_set *s;
    char err[256];
    const char *f2 = "9990000018,research\n9990000042,research\n";
    assert_int_equal(objections_set_parse(f2, strlen(f2), "obj.csv", &s, err, sizeof err), 0);
    objections_install(o, s);
    assert_false(objections_has(o, "9990000018", 10, "research"));
    assert_true(objections_has(o, "9990000042", 10, "research"));
    assert_true(objections_has(o, "9990000026", 10, "research"));
    l.text[0] = '\0';
    assert_int_equal(objections_each(o, "research", list_fn, &l), 0);
    assert_string_equal(l.text, "research 9990000026 api\nresearch 9990000042 file\n");
    /* Shared: a second reference keeps it alive. */
    struct objections *o2 = objections_ref(o);
    objections_unref(o);
    assert_true(objections_has(o2, "9990000042", 10, "research"));
    objections_unref(o2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_lookup_and_purposes),
        cmocka_unit_test(test_changes_over_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
