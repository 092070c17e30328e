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
#include <stdint.h>

#include "ingest.h"

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

/* ------------------------------------------------ http_server.c
 *
 * The HTTP(S) listener the http and itk sources share: evhttp, plain or
 * TLS 1.2+ (mutual TLS and allowed_subjects checked at a connection's
 * first request: 403), the allow-list and max_connections (checked before
 * a byte is read: the connection is closed), the idle timeout, the one
 * path (else 404) and method POST (else 405 with Allow: POST), 503 while
 * stopping. A request that passes goes to handle(); what it means is the
 * source's. */
struct event_base;
struct evhttp_request;
struct config_strlist;
struct config_tls_server;
struct http_server;
struct http_srv_conn;

typedef void (*http_server_handler)(void *ctx, struct http_server *s, struct http_srv_conn *c,
                                    struct evhttp_request *req);

struct http_server_opts {
    const char                     *component;       /* log component: "http", "itk" */
    const char                     *name;            /* the source's name */
    const char                     *listen;          /* host:port */
    const char                     *path;            /* NULL: "/" */
    const char                     *what;            /* what is POSTed, for the 404/405
                                                        text: "HL7 v2 messages" */
    size_t                          max_connections;
    int64_t                         idle_timeout_ms;  /* 0: never */
    size_t                          max_body;        /* larger: libevent's own 413 */
    const struct config_strlist    *allow;           /* NULL or empty: any peer */
    const struct config_tls_server *tls;             /* NULL: plain HTTP */
    const char                     *tls_session_id;  /* "hl7broker-http" */
    http_server_handler             handle;
    void                           *ctx;
};

/* Everything from o is copied. NULL with err filled on failure. */
struct http_server *http_server_new(struct event_base *base, const struct http_server_opts *o,
                                    char *err, size_t errlen);
int  http_server_start(struct http_server *s, char *err, size_t errlen);
void http_server_drain(struct http_server *s);
bool http_server_busy(const struct http_server *s);
/* Closes everything; requests still held are answered by no one: their
 * http_srv_conn_resume returns NULL (and frees what is left). NULL allowed. */
void http_server_free(struct http_server *s);
struct adapter_stats;
void http_server_stats(const struct http_server *s, struct adapter_stats *out);
/* The counters the handler adds to (messages, bytes, oversize). */
struct adapter_stats *http_server_counters(struct http_server *s);
const char *http_server_name(const struct http_server *s);

/* Answers, from handle() or after http_srv_conn_resume: a sentence
 * (text/plain; close: Connection: close), or a body of content_type.
 * Either sends Connection: close while the server is stopping. */
void http_server_reply_text(struct http_server *s, struct http_srv_conn *c,
                            struct evhttp_request *req, int code, const char *reason,
                            bool close, const char *text);
void http_server_reply(struct http_server *s, struct http_srv_conn *c, struct evhttp_request *req,
                       int code, const char *reason, const char *content_type,
                       const void *body, size_t len);

/* The peer ("ip:port") and client certificate subject (NULL: none) of a
 * connection, valid while c is. */
const char *http_srv_conn_peer(const struct http_srv_conn *c);
const char *http_srv_conn_subject(const struct http_srv_conn *c);

/* A request whose answer comes later (after a commit): hold it before
 * handing it on (unhold if that fails at once). When the answer comes,
 * http_srv_conn_resume gives the request to answer and its server, or NULL
 * when the client went (or the server was freed) meanwhile: c is freed
 * then, and the answer is dropped. */
void http_srv_conn_hold(struct http_srv_conn *c, struct evhttp_request *req);
void http_srv_conn_unhold(struct http_srv_conn *c);
struct evhttp_request *http_srv_conn_resume(struct http_srv_conn *c, struct http_server **s);

/* Is the media type of a Content-Type value (before any ';', blanks
 * trimmed, case ignored) one of ok (NULL-terminated)? NULL ct: no. */
bool http_media_type_in(const char *ct, const char *const *ok);

/* A source on http_server.c (the http and itk types): what its handler
 * needs. a->state holds a pointer to it. */
struct adapter;
struct http_src {
    struct ingest       *ingest;
    char                *name;
    struct ingest_policy policy;
    struct http_server  *srv;
};

/* Make a's source state (a->state then points to it), with policy, and
 * its server from so (so->ctx becomes the state). Returns it, or NULL
 * with err filled (http_src_stop frees what was made). */
struct http_src *http_src_new(struct adapter *a, const struct ingest_policy *policy,
                              struct http_server_opts *so, char *err, size_t errlen);

/* The source role's lifecycle, the same for both types (their tables
 * dispatch here when a->role is ADAPTER_SOURCE); configure is each
 * type's: http_src_configure (http_source.c), itk_src_configure. */
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
