/*
 * itk_dest.c: the "itk" adapter type's destination role: each message
 * (an ITK SOAP request as the itk source took it, or a bare
 * DistributionEnvelope as the mdm-to-itk transform makes it) is sent on
 * to an ITK receiver as a SOAP 1.1 request of this broker's own, over
 * the shared HTTP/1.1 client (http_client.c: connections, TLS, timeouts,
 * response framing and limits).
 *
 * - The request: the message's DistributionEnvelope, unchanged, in a
 *   fresh SOAP envelope whose WS-Addressing header has MessageID "uuid:"
 *   + a UUID made from the destination's name and the message id (so a
 *   retry repeats it and the receiver can tell a resend), Action = the
 *   envelope's service, To = the url, From = from when set; headers
 *   Content-Type: text/xml; charset=utf-8 and SOAPAction: "<service>".
 * - A message that is not an ITK envelope (itk_parse fails), or whose
 *   service cannot be written as a SOAPAction header, is never sent:
 *   dead-lettered with why.
 * - The response: a SimpleMessageResponse OK with a 2xx status (or an
 *   empty 2xx body) is delivered. A SOAP fault, whatever the status, is
 *   the receiver refusing the message: dead-lettered, its ErrorCode and
 *   text kept in the detail. on_error_ack does not apply (as for http).
 *   A 2xx that is neither OK nor a fault has not confirmed anything: it
 *   is retried (retry.max_attempts then dead-letters it) with an excerpt
 *   of what arrived. 5xx without a fault, 3xx (redirects are not
 *   followed), no response, a connection that fails and no complete
 *   response within ack_timeout_ms are retried; 4xx without a fault is
 *   dead-lettered. A response over max_message_bytes cannot be read
 *   whole: retried unless its status is 4xx.
 */
#include "http.h"
#include "itk_adapter.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "adapter.h"
#include "adapter_config.h"
#include "buf.h"
#include "delivery.h"
#include "itk.h"

#define EXCERPT_OUT (HTTP_EXCERPT_MAX * 4 + 8)

/* a->state holds a pointer to this. */
struct itk_dest {
    struct http_client *c;
    char               *name;
    char               *url;
    char               *from;     /* NULL: no wsa:From */
    size_t              max_reply;
    struct buf          req;      /* the SOAP request being built */
};

static struct itk_dest *dest_of(const struct adapter *a)
{
    return *(struct itk_dest **)a->state;
}

/* Can service go into a quoted SOAPAction header as it is? Printable
 * ASCII without '"' or '\' (a URI always is). */
static bool header_safe(const char *v)
{
    if (!*v)
        return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
            return false;
    return true;
}

/* The wsa:MessageID of d at this destination: the same on every attempt. */
static void message_id(const struct itk_dest *s, const struct delivery *d, char out[42])
{
    struct buf b = { 0 };
    char uuid[37];
    if (buf_printf(&b, "%s", s->name) == 0 && buf_putc(&b, '\0') == 0 &&
        buf_printf(&b, "%" PRIu64, d->msg_id) == 0) {
        itk_uuid_from(b.p, b.len, uuid);
    } else {
        itk_uuid(uuid);   /* out of memory: a fresh one still sends */
    }
    buf_free(&b);
    snprintf(out, 42, "uuid:%s", uuid);
}

static enum delivery_outcome itk_build(void *ctx, const struct delivery *d,
                                       struct evbuffer *head, const void **body, size_t *len,
                                       char *detail, size_t dlen)
{
    struct itk_dest *s = ctx;
    struct itk_envelope *env = NULL;
    struct itk_error e = { 0 };
    /* The message passed the itk source's limits (or was made by a
       transform) when it was stored: its own size is the only limit. */
    struct itk_limits lim = { .max_bytes = d->len ? d->len : 1, .max_depth = 255 };
    char mid[42], ex[EXCERPT_OUT];
    enum delivery_outcome o = DELIVERY_OK;

    buf_reset(&s->req);
    int rc = itk_parse(d->payload, d->len, &lim, &env, &e);
    if (rc == ITK_E_NOMEM) {
        snprintf(detail, dlen, "out of memory reading the ITK message");
        return DELIVERY_RETRY;
    }
    if (rc != ITK_OK) {
        snprintf(detail, dlen, "the message is not an ITK envelope that can be sent (%s): %s",
                 e.itk_code, e.msg);
        return DELIVERY_PERMANENT;
    }
    if (!header_safe(env->service)) {
        http_excerpt(env->service, strlen(env->service), strlen(env->service),
                     HTTP_EXCERPT_MAX, ex, sizeof ex);
        snprintf(detail, dlen, "the envelope's service \"%s\" cannot be sent as a SOAPAction",
                 ex);
        o = DELIVERY_PERMANENT;
        goto out;
    }
    message_id(s, d, mid);
    if (itk_soap_wrap(&s->req, env->distribution_xml, env->distribution_len, mid, env->service,
                      s->url, s->from) != 0 ||
        evbuffer_add_printf(head,
                            "Content-Type: text/xml; charset=utf-8\r\nSOAPAction: \"%s\"\r\n",
                            env->service) < 0) {
        snprintf(detail, dlen, "out of memory writing the request");
        o = DELIVERY_RETRY;
        goto out;
    }
    *body = s->req.p;
    *len = s->req.len;
out:
    itk_free(env);
    return o;
}

static enum delivery_outcome itk_judge(void *ctx, const struct delivery *d,
                                       const struct http_response *r, char *detail, size_t dlen)
{
    struct itk_dest *s = ctx;
    struct itk_response ir = { .kind = ITK_RESPONSE_OTHER };
    char ex[EXCERPT_OUT], code[sizeof ir.code * 4 + 8], text[sizeof ir.text * 4 + 8];
    const char *sp = r->reason[0] ? " " : "";
    (void)d;

    http_excerpt(r->body, r->body_len, r->body_total, HTTP_EXCERPT_MAX, ex, sizeof ex);
    if (r->cut) {
        if (r->status >= 400 && r->status <= 499) {
            snprintf(detail, dlen, "%s answered %d%s%s (response over max_message_bytes): %s",
                     r->url, r->status, sp, r->reason, ex);
            return DELIVERY_PERMANENT;
        }
        snprintf(detail, dlen,
                 "%s answered %d%s%s with a response over max_message_bytes (%zu), "
                 "not read whole: %s", r->url, r->status, sp, r->reason, s->max_reply, ex);
        return DELIVERY_RETRY;
    }
    if (r->status >= 200)
        itk_response_parse(r->body, r->body_len, s->max_reply, &ir);
    if (ir.kind == ITK_RESPONSE_FAULT) {
        http_excerpt(ir.code, strnlen(ir.code, sizeof ir.code), 0, sizeof ir.code, code,
                     sizeof code);
        http_excerpt(ir.text, strnlen(ir.text, sizeof ir.text), 0, sizeof ir.text, text,
                     sizeof text);
        snprintf(detail, dlen, "%s answered %d%s%s: SOAP fault %s: %s", r->url, r->status, sp,
                 r->reason, code[0] ? code : "(no code)", text);
        return DELIVERY_PERMANENT;
    }
    if (r->status >= 200 && r->status <= 299) {
        if (ir.kind == ITK_RESPONSE_OK) {
            snprintf(detail, dlen, "%s answered %d%s%s: OK", r->url, r->status, sp, r->reason);
            return DELIVERY_OK;
        }
        http_excerpt(ir.text, strnlen(ir.text, sizeof ir.text), 0, sizeof ir.text, text,
                     sizeof text);
        snprintf(detail, dlen,
                 "%s answered %d%s%s but not with an ITK SimpleMessageResponse OK (%s): %s",
                 r->url, r->status, sp, r->reason, text, ex);
        return DELIVERY_RETRY;
    }
    snprintf(detail, dlen, "%s answered %d%s%s%s%s%s", r->url, r->status, sp, r->reason,
             r->status >= 300 && r->status <= 399
                 ? " (redirects are not followed: fix the url)" : "",
             ex[0] ? ": " : "", ex);
    return r->status >= 400 && r->status <= 499 ? DELIVERY_PERMANENT : DELIVERY_RETRY;
}

int itk_dst_configure(struct adapter *a, char *err, size_t errlen)
{
    const struct itk_destination_opts *o = a->dst->opts;
    struct itk_dest *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *(struct itk_dest **)a->state = s;
    if (!o->url) {
        snprintf(err, errlen, "url: required");
        return -1;
    }
    if (!(s->name = strdup(a->name)) || !(s->url = strdup(o->url)) ||
        (o->from && !(s->from = strdup(o->from)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->max_reply = o->max_message_bytes > 0 ? (size_t)o->max_message_bytes : 1048576;
    struct http_client_opts co = {
        .component = "itk", .name = a->name, .url = o->url, .tls = o->tls,
        .connect_timeout_ms = o->connect_timeout_ms, .ack_timeout_ms = a->dst->ack_timeout_ms,
        .max_message_bytes = (int64_t)s->max_reply, .keep_body = true,
        .hooks = { .build = itk_build, .judge = itk_judge, .ctx = s },
    };
    s->c = http_client_new(a, &co, err, errlen);
    return s->c ? 0 : -1;
}

int itk_dst_start(struct adapter *a, char *err, size_t errlen)
{
    return http_client_start(dest_of(a)->c, err, errlen);
}

int itk_dst_send(struct adapter *a, const struct delivery *d)
{
    return http_client_send(dest_of(a)->c, d);
}

void itk_dst_drain(struct adapter *a)
{
    (void)a;
}

bool itk_dst_busy(const struct adapter *a)
{
    const struct itk_dest *s = dest_of(a);
    return s && http_client_busy(s->c);
}

void itk_dst_stop(struct adapter *a)
{
    struct itk_dest *s = dest_of(a);
    if (!s)
        return;
    http_client_free(s->c);
    buf_free(&s->req);
    free(s->name);
    free(s->url);
    free(s->from);
    free(s);
    *(struct itk_dest **)a->state = NULL;
}

void itk_dst_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct itk_dest *s = dest_of(a);
    http_client_stats(s ? s->c : NULL, out);
}
