/*
 * http.h: what the http adapter's files share (adapters/ only): the URL,
 * header and path checks, so that the config loader and configure()
 * refuse the same things with the same words; and the two roles' entry
 * points, which the type's table (http_source.c) dispatches to.
 */
#ifndef HL7BROKER_ADAPTERS_HTTP_H
#define HL7BROKER_ADAPTERS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http_url {
    bool     tls;          /* https */
    char     host[256];    /* without brackets for IPv6 */
    unsigned port;         /* 80 / 443 when the URL gives none */
    bool     default_port; /* the URL gave none */
    char     path[2048];   /* from the first '/', query included; "/" when absent */
};

/* Parse http://host[:port][/path[?query]] or https://... Refused: other
 * schemes, credentials (user@), fragments, bytes that are not printable
 * ASCII, an empty or invalid host, ports outside 1..65535. Returns 0, or
 * -1 with a sentence in why. */
int http_url_parse(const char *s, struct http_url *u, char *why, size_t whylen);

/* Is h a header line the broker may add to each request: "Name: value",
 * Name an RFC 9110 token, no CR, LF or other control bytes (HTAB allowed
 * in the value), and not one of the headers the client writes itself
 * (Host, Content-Length, Transfer-Encoding, Connection)? */
bool http_header_valid(const char *h, char *why, size_t whylen);

/* http_url_parse in the shape of config_validate_fn, for the settings
 * table (http_header_valid has that shape already). */
bool http_valid_url(const char *v, char *why, size_t whylen);

/* Is v a source's path: '/' then printable ASCII, no '?' or '#', at most
 * HTTP_PATH_MAX bytes? (config_validate_fn) */
#define HTTP_PATH_MAX 1024
bool http_valid_path(const char *v, char *why, size_t whylen);

/* The source role (http_source.c); the type's table in http_dest.c
 * dispatches to these when a->role is ADAPTER_SOURCE. The source keeps
 * its state in memory of its own: a->state holds a pointer to it. */
struct adapter;
struct adapter_stats;
int  http_src_configure(struct adapter *a, char *err, size_t errlen);
int  http_src_start(struct adapter *a, char *err, size_t errlen);
void http_src_drain(struct adapter *a);
bool http_src_busy(const struct adapter *a);
void http_src_stop(struct adapter *a);
void http_src_stats(const struct adapter *a, struct adapter_stats *out);

/* ==================== http_client (itk-dest branch) ====================
 * The HTTP/1.1 client of the http and itk destinations (http_client.c):
 * one request in flight, one connection per request ("Connection:
 * close"), plain or TLS 1.2+, connect_timeout_ms over the TCP connect and
 * the TLS handshake, ack_timeout_ms over the request and the whole
 * response, at most max_message_bytes of the response read. Connection
 * failures, timeouts and responses that are not HTTP/1.x are retried by
 * the client itself; a complete response goes to the destination's judge
 * hook, which says what it means. Each delivery's outcome is reported
 * once, from the loop (delivery_report). */
#include <stdint.h>

#include "delivery.h"

struct adapter;
struct adapter_stats;
struct evbuffer;
struct config_strlist;
struct config_tls_client;

#define HTTP_EXCERPT_MAX 200    /* bytes of a response shown in details and logs */
#define HTTP_DETAIL_MAX  3072   /* a detail: room for a URL (2 KiB path) and an excerpt */

/* A complete response (or as much as max_message_bytes allowed). */
struct http_response {
    const char *url;         /* as configured */
    int         status;      /* 200..599 */
    const char *reason;      /* the reason phrase, escaped; "" when none */
    const char *body;        /* what was kept of the body (see keep_body), NUL-terminated */
    size_t      body_len;    /* bytes in body */
    size_t      body_total;  /* body bytes read */
    bool        cut;         /* reading stopped at max_message_bytes */
};

struct http_client_hooks {
    /* Build d's request: append its header lines ("Name: value\r\n",
       Content-Type included: the client writes none) to head and point
       *body at its body (copied before build returns to the client).
       DELIVERY_OK: send it. Any other outcome is reported with detail
       (from the loop) and nothing is sent. */
    enum delivery_outcome (*build)(void *ctx, const struct delivery *d, struct evbuffer *head,
                                   const void **body, size_t *len, char *detail, size_t dlen);
    /* What a complete response means; detail (a sentence: use
       http_excerpt for what arrived) is reported with it. */
    enum delivery_outcome (*judge)(void *ctx, const struct delivery *d,
                                   const struct http_response *r, char *detail, size_t dlen);
    void *ctx;
};

struct http_client_opts {
    const char                     *component;          /* for logs: "http", "itk" */
    const char                     *name;               /* the destination's */
    const char                     *url;                /* http[s]://...; copied */
    const struct config_strlist    *headers;            /* added to every request; NULL: none */
    const struct config_tls_client *tls;                /* https only; NULL: defaults */
    int64_t                         connect_timeout_ms; /* <= 0: 10 s */
    int64_t                         ack_timeout_ms;     /* <= 0: none */
    int64_t                         max_message_bytes;  /* <= 0: 1 MiB */
    bool                            keep_body;          /* keep the whole body read,
                                                           not just HTTP_EXCERPT_MAX bytes */
    struct http_client_hooks        hooks;
};

struct http_client;

/* Make a client for destination a (its base and reporter), checking the
 * url, headers and tls group. NULL with err filled ("url: ...",
 * "headers[1]: ...", "tls: ..."). Nothing is opened yet. */
struct http_client *http_client_new(struct adapter *a, const struct http_client_opts *o,
                                    char *err, size_t errlen);
int  http_client_start(struct http_client *c, char *err, size_t errlen);
/* Send d (valid until its outcome is reported). -1 when not started or
 * a delivery is in flight; else 0 and the outcome comes later. */
int  http_client_send(struct http_client *c, const struct delivery *d);
bool http_client_busy(const struct http_client *c);
void http_client_stats(const struct http_client *c, struct adapter_stats *out);
const char *http_client_url(const struct http_client *c);
/* Close everything (a delivery in flight is dropped unreported); NULL
 * allowed. */
void http_client_free(struct http_client *c);

/* What arrived, made safe to show: printable ASCII as it is, CR as \r, LF
 * as \n, backslash doubled, anything else as \xNN; at most max input
 * bytes, then "..." when more (total) was seen. Always NUL-terminated. */
void http_excerpt(const char *p, size_t n, size_t total, size_t max, char *out,
                  size_t outlen);
/* ================== end of http_client (itk-dest branch) ================== */

#endif
