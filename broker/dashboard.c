/*
 * dashboard.c: GET / on the admin server: the embedded dashboard page and
 * its Content-Security-Policy, whose script and style hashes are worked
 * out from the embedded bytes, so the page can change without anyone
 * keeping a hash in step by hand.
 */
#include "dashboard.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "admin.h"
#include "log.h"

#define COMPONENT "admin"

/* Append " 'sha256-B64'" for each element <tag>...</tag> in page to out
 * (used bytes in *n), or " 'none'" when there is none. -1 when out is too
 * small or an element not closed. */
static int hashes(const unsigned char *page, size_t len, const char *tag, char *out,
                  size_t outlen, size_t *n)
{
    char open[16], close[16];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t ol = strlen(open), cl = strlen(close);
    const unsigned char *p = page, *end = page + len;
    for (unsigned found = 0;; found++) {
        const unsigned char *s = memmem(p, (size_t)(end - p), open, ol);
        if (!s) {
            if (found)
                return 0;
            int w = snprintf(out + *n, outlen - *n, " 'none'");
            if (w < 0 || (size_t)w >= outlen - *n)
                return -1;
            *n += (size_t)w;
            return 0;
        }
        s += ol;
        const unsigned char *e = memmem(s, (size_t)(end - s), close, cl);
        if (!e)
            return -1;
        unsigned char md[SHA256_DIGEST_LENGTH];
        unsigned char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
        if (!EVP_Digest(s, (size_t)(e - s), md, NULL, EVP_sha256(), NULL))
            return -1;
        EVP_EncodeBlock(b64, md, SHA256_DIGEST_LENGTH);
        int w = snprintf(out + *n, outlen - *n, " 'sha256-%s'", (const char *)b64);
        if (w < 0 || (size_t)w >= outlen - *n)
            return -1;
        *n += (size_t)w;
        p = e + cl;
    }
}

int dashboard_csp(const unsigned char *page, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    int w;
#define PUT(s) do { w = snprintf(out + n, outlen - n, "%s", s); \
                    if (w < 0 || (size_t)w >= outlen - n) return -1; \
                    n += (size_t)w; } while (0)
    if (!outlen)
        return -1;
    PUT("default-src 'self'; script-src");
    if (hashes(page, len, "script", out, outlen, &n))
        return -1;
    PUT("; style-src");
    if (hashes(page, len, "style", out, outlen, &n))
        return -1;
    PUT("; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'");
#undef PUT
    return 0;
}

void dashboard_serve(struct admin_request *r)
{
    /* worked out once: the page does not change while the broker runs */
    static char csp[1024];
    static bool ready;
    if (!ready) {
        if (dashboard_csp(dashboard_html, dashboard_html_len, csp, sizeof csp)) {
            log_error(COMPONENT, "dashboard unavailable", "reason=%s",
                      "its Content-Security-Policy does not fit");
            admin_reply_error(r, 500, "internal", "the dashboard is not available");
            return;
        }
        ready = true;
    }
    admin_reply_header(r, "Content-Security-Policy", csp);
    admin_reply_header(r, "X-Frame-Options", "DENY");
    admin_reply_header(r, "Referrer-Policy", "no-referrer");
    admin_reply_text(r, 200, "text/html; charset=utf-8", (const char *)dashboard_html,
                     dashboard_html_len);
}
