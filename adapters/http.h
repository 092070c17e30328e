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

#endif
