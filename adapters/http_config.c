/*
 * http_config.c: the settings of http sources and destinations (HL7 v2
 * POSTed over HTTP or HTTPS), and the URL and header checks the
 * destination shares with its client in http_dest.c.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "adapter_config.h"
#include "config_rows.h"

int http_url_parse(const char *s, struct http_url *u, char *why, size_t whylen)
{
    const char *p;
    memset(u, 0, sizeof *u);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f) {
            snprintf(why, whylen, "the URL has a space, control or non-ASCII byte at offset %zu"
                     " (percent-encode it)", (size_t)(c - (const unsigned char *)s));
            return -1;
        }
    }
    if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        p = s + 8;
        u->tls = true;
    } else {
        snprintf(why, whylen, "the URL must start with http:// or https://");
        return -1;
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (memchr(p, '@', alen)) {
        snprintf(why, whylen, "credentials in the URL are not supported: give an Authorization"
                 " header in headers");
        return -1;
    }
    if (strchr(rest, '#')) {
        snprintf(why, whylen, "the URL has a fragment (#...): it is never sent, remove it");
        return -1;
    }
    /* host, [v6] or name/v4, then an optional :port */
    const char *h = p, *hend, *port = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb) {
            snprintf(why, whylen, "the URL's IPv6 address has no closing ']'");
            return -1;
        }
        h = p + 1;
        hend = rb;
        if (rb + 1 < rest) {
            if (rb[1] != ':') {
                snprintf(why, whylen, "the URL has bytes after the IPv6 address that are not :port");
                return -1;
            }
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hend = colon ? colon : rest;
        port = colon ? colon + 1 : NULL;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= sizeof u->host) {
        snprintf(why, whylen, hlen ? "the URL's host is too long" : "the URL has no host");
        return -1;
    }
    memcpy(u->host, h, hlen);
    u->host[hlen] = '\0';
    char hwhy[200];
    if (!config_valid_hostname(u->host, hwhy, sizeof hwhy)) {
        snprintf(why, whylen, "the URL's host \"%s\": %s", u->host, hwhy);
        return -1;
    }
    if (port) {
        unsigned long v = 0;
        const char *q = port;
        for (; q < rest && *q >= '0' && *q <= '9' && v <= 65535; q++)
            v = v * 10 + (unsigned long)(*q - '0');
        if (q == port || q != rest || v == 0 || v > 65535) {
            snprintf(why, whylen, "the URL's port \"%.*s\" is not a number in 1..65535",
                     (int)(rest - port), port);
            return -1;
        }
        u->port = (unsigned)v;
    } else {
        u->port = u->tls ? 443 : 80;
        u->default_port = true;
    }
    int n = snprintf(u->path, sizeof u->path, "%s%s", *rest == '/' ? "" : "/", rest);
    if (n < 0 || (size_t)n >= sizeof u->path) {
        snprintf(why, whylen, "the URL's path is over %zu bytes", sizeof u->path - 1);
        return -1;
    }
    return 0;
}

bool http_valid_url(const char *v, char *why, size_t whylen)
{
    struct http_url u;
    return http_url_parse(v, &u, why, whylen) == 0;
}

bool http_header_valid(const char *h, char *why, size_t whylen)
{
    static const char *const own[] = { "host", "content-length", "transfer-encoding",
                                       "connection", NULL };
    size_t n = 0;
    for (; h[n] && h[n] != ':'; n++) {
        unsigned char c = (unsigned char)h[n];
        bool tchar = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     (c && strchr("!#$%&'*+-.^_`|~", c));
        if (!tchar) {
            snprintf(why, whylen, "header \"%.40s\": byte %zu of the name is not allowed in a"
                     " header name (the form is \"Name: value\")", h, n);
            return false;
        }
    }
    if (!h[n] || n == 0) {
        snprintf(why, whylen, "header \"%.40s\" is not \"Name: value\"", h);
        return false;
    }
    for (size_t i = n + 1; h[i]; i++) {
        unsigned char c = (unsigned char)h[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            snprintf(why, whylen, "header \"%.*s\": the value has a control byte (\\x%02x) at"
                     " offset %zu: CR, LF and the like are not allowed", (int)n, h, c, i);
            return false;
        }
    }
    for (size_t i = 0; own[i]; i++) {
        if (strlen(own[i]) == n && strncasecmp(h, own[i], n) == 0) {
            snprintf(why, whylen, "header \"%.*s\" is written by the broker itself", (int)n, h);
            return false;
        }
    }
    return true;
}

bool http_valid_path(const char *v, char *why, size_t whylen)
{
    if (v[0] != '/') {
        snprintf(why, whylen, "a path starts with '/', like \"/\" or \"/hl7/v2\"");
        return false;
    }
    size_t n = strlen(v);
    if (n > HTTP_PATH_MAX) {
        snprintf(why, whylen, "the path is over %d bytes", HTTP_PATH_MAX);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
            snprintf(why, whylen, "byte %zu of the path is not allowed: a path is printable"
                     " ASCII without spaces, '?' or '#' (percent-encode others)", i);
            return false;
        }
    }
    return true;
}

static const struct config_row http_source_rows[] = {
    ROW_STR(struct http_source_opts, listen, ROW_REQ | ROW_SUM | CONFIG_F_LISTEN, NULL,
            config_valid_hostport,
            "host:port to listen on: 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8443"),
    ROW_STR(struct http_source_opts, path, ROW_SUM, "/", http_valid_path,
            "the path messages are POSTed to; other paths are answered 404 (the query string is ignored)"),
    ROW_INT(struct http_source_opts, max_connections, 0, 64, 1, 10000,
            "connections open at once; more are closed as they arrive"),
    ROW_INT(struct http_source_opts, idle_timeout_ms, 0, 600000, 0, 86400000,
            "close a connection that sends or reads nothing this long (also bounds a TLS handshake and a slow request); 0: never"),
    ROW_INT(struct http_source_opts, max_message_bytes, 0, 4194304, 1024, 268435456,
            "largest request body accepted; a larger one is answered 413, never truncated"),
    ROW_STRLIST(struct http_source_opts, allow, ROW_SUM, 0, 0, config_valid_cidr,
                "peer addresses allowed, as CIDR blocks (\"10.1.0.0/16\", \"::1/128\"); empty: any"),
    ROW_GROUP_OPT(struct http_source_opts, tls, ROW_SUM, &config_tls_server_section,
                  "TLS (1.2 or later) on the listening socket (HTTPS); unset: plain HTTP"),
    ROW_END
};

static const struct config_section http_source_section = {
    .name = "http source",
    .rows = http_source_rows,
    .size = sizeof(struct http_source_opts),
};

static const struct config_row http_destination_rows[] = {
    ROW_STR(struct http_destination_opts, url, ROW_REQ | ROW_SUM, NULL, http_valid_url,
            "where to POST each message: http://host[:port]/path or https://..."),
    ROW_STRLIST(struct http_destination_opts, headers, 0, 0, 64, http_header_valid,
                "extra request headers, each \"Name: value\" (\"Authorization: Bearer ...\"); a Content-Type here replaces the default"),
    ROW_INT(struct http_destination_opts, connect_timeout_ms, 0, 10000, 100, 600000,
            "most time to establish the connection (and TLS)"),
    ROW_INT(struct http_destination_opts, max_message_bytes, 0, 1048576, 1024, 268435456,
            "largest response (status line, headers and body) read back; the rest is ignored"),
    ROW_GROUP_OPT(struct http_destination_opts, tls, ROW_SUM, &config_tls_client_section,
                  "for https URLs: CAs, client certificate, name to verify; unset: the system's CAs and the URL's host"),
    ROW_END
};

/* A tls group means https: on an http:// URL it would silently do nothing. */
static void http_destination_check(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                                   const char *path)
{
    const struct http_destination_opts *o = obj;
    struct http_url u;
    char why[256];
    if (o->url && o->tls && http_url_parse(o->url, &u, why, sizeof why) == 0 && !u.tls)
        config_report(ctx, s, path, "tls", "a tls group needs an https:// url");
}

static const struct config_section http_destination_section = {
    .name = "http destination",
    .rows = http_destination_rows,
    .size = sizeof(struct http_destination_opts),
    .check = http_destination_check,
};

const struct config_adapter_schema http_config_schema = {
    .type = "http",
    .source = &http_source_section,
    .destination = &http_destination_section,
};
