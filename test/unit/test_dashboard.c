/*
 * test_dashboard.c: the dashboard's Content-Security-Policy (a hash per
 * inline script and style element, refusals when an element is not closed
 * or the policy does not fit) and the embedded page itself (NUL-terminated,
 * ASCII, one script and one style, no external URL, no markup from strings).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "dashboard.h"

#define H_ABC   "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
#define H_EMPTY "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
#define H_STYLE "'sha256-gG2yISYereRMiG2lMXrbiUgi0Ubw9p7QCeWcroOvy9Y='"
#define TAIL    "; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " \
                "form-action 'none'; frame-ancestors 'none'"

static int csp(const char *page, char *out, size_t outlen)
{
    return dashboard_csp((const unsigned char *)page, strlen(page), out, outlen);
}

static void test_csp_hashes(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(csp("<html><style>p{}</style><script>abc</script></html>", out, sizeof out), 0);
    assert_string_equal(out, "default-src 'self'; script-src " H_ABC "; style-src " H_STYLE TAIL);
    /* two scripts, an empty one: both hashed, in order */
    assert_int_equal(csp("<script>abc</script>x<script></script>", out, sizeof out), 0);
    assert_string_equal(out, "default-src 'self'; script-src " H_ABC " " H_EMPTY "; style-src 'none'" TAIL);
    /* nothing inline: nothing allowed */
    assert_int_equal(csp("<p>hello</p>", out, sizeof out), 0);
    assert_string_equal(out, "default-src 'self'; script-src 'none'; style-src 'none'" TAIL);
}

static void test_csp_refusals(void **state)
{
    (void)state;
    char out[1024];
    assert_int_equal(csp("<script>abc", out, sizeof out), -1);
    assert_int_equal(csp("<style>p{}</script>", out, sizeof out), -1);
    char small[64];
    assert_int_equal(csp("<script>abc</script>", small, sizeof small), -1);
    assert_int_equal(csp("<script>abc</script>", out, 0), -1);
    /* exactly big enough, and one byte short */
    const char *page = "<script>abc</script>";
    assert_int_equal(csp(page, out, sizeof out), 0);
    size_t need = strlen(out) + 1;
    assert_int_equal(csp(page, out, need), 0);
    assert_int_equal(csp(page, out, need - 1), -1);
}

static void test_embedded_page(void **state)
{
    (void)state;
    const char *p = (const char *)dashboard_html;
    size_t n = dashboard_html_len;
    assert_true(n > 1000);
    assert_int_equal(dashboard_html[n], 0);
    assert_int_equal(strlen(p), n);
    assert_memory_equal(p, "<!DOCTYPE html>", 15);
    for (size_t i = 0; i < n; i++)
        assert_true(dashboard_html[i] == '\n' || (dashboard_html[i] >= 0x20 && dashboard_html[i] < 0x7f));
    static const char *const banned[] = { "http:", "https:", "//cdn", "innerHTML", "outerHTML",
                                          "insertAdjacentHTML", "document.write", "eval(" };
    for (size_t i = 0; i < sizeof banned / sizeof banned[0]; i++)
        assert_null(strstr(p, banned[i]));
    const char *s = strstr(p, "<script>");
    assert_non_null(s);
    assert_null(strstr(s + 1, "<script"));
    s = strstr(p, "<style>");
    assert_non_null(s);
    assert_null(strstr(s + 1, "<style"));
    char out[1024];
    assert_int_equal(dashboard_csp(dashboard_html, n, out, sizeof out), 0);
    assert_non_null(strstr(out, "script-src 'sha256-"));
    assert_non_null(strstr(out, "style-src 'sha256-"));
    assert_null(strstr(out, "unsafe"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csp_hashes),
        cmocka_unit_test(test_csp_refusals),
        cmocka_unit_test(test_embedded_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
