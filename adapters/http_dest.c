/*
 * http_dest.c: the "http" adapter type, and its destination role (the
 * source role is http_source.c; the table's functions dispatch on
 * a->role): each message is POSTed to a URL by the shared HTTP/1.1
 * client (http_client.c: connections, TLS, timeouts, response framing
 * and limits) and the response status decides the outcome.
 *
 * - The body is sent as it is, Content-Type application/hl7-v2+er7 (or
 *   application/json when it starts with '{') unless headers gives one.
 * - The response: 2xx is delivered; 4xx will never succeed as it is and
 *   is dead-lettered; 5xx, 3xx (redirects are not followed), and the
 *   client's own failures (no response, a connection that fails, no
 *   complete response within ack_timeout_ms) are retried. At most
 *   max_message_bytes of the response are read: the status decides, the
 *   rest is ignored. Every failure's detail carries the status and an
 *   escaped excerpt of the body.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "adapter.h"
#include "adapter_config.h"
#include "delivery.h"

/* The destination's state; a->state holds a pointer to it, as the source
 * role's does. */
struct http_dest {
    struct http_client *c;
    bool                own_ctype;   /* headers gives a Content-Type */
};

static struct http_dest *dest_of(const struct adapter *a)
{
    return *(struct http_dest **)a->state;
}

static enum delivery_outcome http_build(void *ctx, const struct delivery *d,
                                        struct evbuffer *head, const void **body, size_t *len,
                                        char *detail, size_t dlen)
{
    const struct http_dest *s = ctx;
    bool json = d->len && d->payload[0] == '{';
    if (!s->own_ctype &&
        evbuffer_add_printf(head, "Content-Type: %s\r\n",
                            json ? "application/json" : "application/hl7-v2+er7") < 0) {
        snprintf(detail, dlen, "out of memory writing the request");
        return DELIVERY_RETRY;
    }
    *body = d->payload;
    *len = d->len;
    return DELIVERY_OK;
}

/* The response's status decides. */
static enum delivery_outcome http_judge(void *ctx, const struct delivery *d,
                                        const struct http_response *r, char *detail,
                                        size_t dlen)
{
    char ex[HTTP_EXCERPT_MAX * 4 + 8];
    enum delivery_outcome o;
    const char *why = "";
    (void)ctx, (void)d;
    if (r->status >= 200 && r->status <= 299) {
        o = DELIVERY_OK;
    } else if (r->status >= 400 && r->status <= 499) {
        o = DELIVERY_PERMANENT;
    } else {
        o = DELIVERY_RETRY;
        if (r->status >= 300 && r->status <= 399)
            why = " (redirects are not followed: fix the url)";
    }
    http_excerpt(r->body, r->body_len, r->body_total, HTTP_EXCERPT_MAX, ex, sizeof ex);
    snprintf(detail, dlen, "%s answered %d%s%s%s%s%s%s", r->url, r->status,
             r->reason[0] ? " " : "", r->reason, why, ex[0] ? ": " : "", ex,
             r->cut ? " (response cut at max_message_bytes)" : "");
    return o;
}

static int http_configure(struct adapter *a, char *err, size_t errlen)
{
    if (a->role != ADAPTER_DESTINATION) {
        snprintf(err, errlen, "adapter type \"http\" cannot run as a source");
        return -1;
    }
    const struct http_destination_opts *o = a->dst->opts;
    struct http_dest *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *(struct http_dest **)a->state = s;
    for (size_t i = 0; i < o->headers.n; i++)
        if (strncasecmp(o->headers.v[i], "content-type:", 13) == 0)
            s->own_ctype = true;
    struct http_client_opts co = {
        .component = "http", .name = a->name, .url = o->url, .headers = &o->headers,
        .tls = o->tls, .connect_timeout_ms = o->connect_timeout_ms,
        .ack_timeout_ms = a->dst->ack_timeout_ms, .max_message_bytes = o->max_message_bytes,
        .hooks = { .build = http_build, .judge = http_judge, .ctx = s },
    };
    s->c = http_client_new(a, &co, err, errlen);
    return s->c ? 0 : -1;
}

static int http_start(struct adapter *a, char *err, size_t errlen)
{
    return http_client_start(dest_of(a)->c, err, errlen);
}

static int http_send(struct adapter *a, const struct delivery *d)
{
    return http_client_send(dest_of(a)->c, d);
}

static void http_drain(struct adapter *a)
{
    (void)a;
}

static bool http_busy(const struct adapter *a)
{
    const struct http_dest *s = dest_of(a);
    return s && http_client_busy(s->c);
}

static void http_stop(struct adapter *a)
{
    struct http_dest *s = dest_of(a);
    if (!s)
        return;
    http_client_free(s->c);
    free(s);
    *(struct http_dest **)a->state = NULL;
}

static void http_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct http_dest *s = dest_of(a);
    http_client_stats(s ? s->c : NULL, out);
}

/* The type serves both roles: each entry goes to the role's code. */

static bool is_src(const struct adapter *a)
{
    return a->role == ADAPTER_SOURCE;
}

static int http_role_configure(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? http_src_configure(a, err, errlen) : http_configure(a, err, errlen);
}

static int http_role_start(struct adapter *a, char *err, size_t errlen)
{
    return is_src(a) ? http_src_start(a, err, errlen) : http_start(a, err, errlen);
}

static int http_role_send(struct adapter *a, const struct delivery *d)
{
    return is_src(a) ? -1 : http_send(a, d);
}

static void http_role_drain(struct adapter *a)
{
    if (is_src(a))
        http_src_drain(a);
    else
        http_drain(a);
}

static bool http_role_busy(const struct adapter *a)
{
    return is_src(a) ? http_src_busy(a) : http_busy(a);
}

static void http_role_stop(struct adapter *a)
{
    if (is_src(a))
        http_src_stop(a);
    else
        http_stop(a);
}

static void http_role_stats(const struct adapter *a, struct adapter_stats *out)
{
    if (is_src(a))
        http_src_stats(a, out);
    else
        http_stats(a, out);
}

const struct adapter_type http_adapter = {
    .name = "http",
    .roles = ADAPTER_SOURCE | ADAPTER_DESTINATION,
    /* each role keeps a pointer to state of its own here */
    .state_size = sizeof(void *),
    .configure = http_role_configure,
    .start = http_role_start,
    .send = http_role_send,
    .drain = http_role_drain,
    .busy = http_role_busy,
    .stop = http_role_stop,
    .stats = http_role_stats,
};
