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

#endif
