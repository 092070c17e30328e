/*
 * dashboard.h: the live dashboard served at GET / by the admin server:
 * one self-contained HTML page (broker/dashboard.html) embedded in the
 * binary at build time, sent with a Content-Security-Policy that allows
 * its inline script and style by their SHA-256 hashes and nothing else.
 */
#ifndef HL7BROKER_DASHBOARD_H
#define HL7BROKER_DASHBOARD_H

#include <stddef.h>

struct admin_request;

/* The page: dashboard_html_len bytes, followed by a NUL (not counted).
 * Generated from broker/dashboard.html by the Makefile (xxd -i). */
extern const unsigned char dashboard_html[];
extern const size_t dashboard_html_len;

/* The Content-Security-Policy for page (len bytes) into out: default-src
 * 'self', with every <script>...</script> and <style>...</style> element
 * allowed by the SHA-256 of its text ('sha256-BASE64'). Returns 0, or -1
 * when the policy does not fit outlen or an element is not closed. */
int dashboard_csp(const unsigned char *page, size_t len, char *out, size_t outlen);

/* The GET / handler (no token: the page asks for one and sends it with
 * its API calls). */
void dashboard_serve(struct admin_request *r);

#endif
