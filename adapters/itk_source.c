/*
 * itk_source.c: the "itk" adapter type's source role: NHS ITK 2 SOAP 1.1
 * requests POSTed over HTTPS (the listener, TLS, connections and
 * allow-list are http_server.c's, shared with the http source). Each body
 * goes to ingest_submit_itk, which checks the envelope, stores it whole
 * (kind itk) and routes it; the answer is written only after the commit.
 *
 * Answers (Content-Type text/xml; charset=utf-8):
 *  - 200 with a SimpleMessageResponse OK: stored (or already stored: a
 *    duplicate tracking id gets the same answer again);
 *  - 500 with a SOAP fault (ITK ErrorCode and a sentence saying what is
 *    wrong): an invalid envelope, unsafe XML (DOCTYPE, entities, too
 *    deep), a body over max_message_bytes (1001: kept in the error store,
 *    never truncated into the store), the store failing (9999: retry);
 *  - 415 with a SOAP fault: a Content-Type other than text/xml or
 *    application/soap+xml (any parameters, a charset or none);
 *  - 404 another path, 405 (Allow: POST) another method, 403 a client
 *    certificate subject not allowed, 503 while stopping (text/plain);
 *  - libevent's own 413 for a body more than OVERSIZE_SLACK over the
 *    limit (read and discarded, never buffered whole).
 *
 * libevent 2.1 offers no hook between a request's headers and its body,
 * so a body over the limit can only be answered by us if evhttp lets it
 * in: its limit is max_message_bytes + OVERSIZE_SLACK, and such a body
 * is refused here without being copied.
 */
#include "http.h"   /* first: itk_adapter.h needs size_t */
#include "itk_adapter.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "adapter.h"
#include "adapter_config.h"
#include "buf.h"
#include "config.h"
#include "ingest.h"
#include "itk.h"
#include "log.h"

#define COMPONENT       "itk"
#define SOAP_TYPE       "text/xml; charset=utf-8"
#define OVERSIZE_SLACK  ((size_t)64 << 20)   /* read past the limit to answer with a fault */
#define HEAD_KEPT       4096                  /* of an oversize body, for the error store */

static void on_request(void *ctx, struct http_server *srv, struct http_srv_conn *c,
                       struct evhttp_request *req);

int itk_src_configure(struct adapter *a, char *err, size_t errlen)
{
    const struct itk_source_opts *o = a->src->opts;
    const struct ingest_policy policy = {
        .max_message_bytes = (size_t)o->max_message_bytes,
        .max_depth = (unsigned)o->max_depth,
        .check_nhs_number = a->src->check_nhs_number,
    };
    struct http_server_opts so = {
        .component = COMPONENT,
        .name = a->name,
        .listen = o->listen,
        .path = o->path ? o->path : "/itk",
        .what = "ITK SOAP requests",
        .max_connections = (size_t)o->max_connections,
        .idle_timeout_ms = o->idle_timeout_ms,
        .max_body = (size_t)o->max_message_bytes + OVERSIZE_SLACK,
        .allow = &o->allow,
        .tls = o->tls,
        .tls_session_id = "hl7broker-itk",
        .handle = on_request,
    };
    return http_src_new(a, &policy, &so, err, errlen) ? 0 : -1;
}

/* SOAP 1.1's text/xml or SOAP 1.2's application/soap+xml; parameters (a
 * charset, or none) are not looked at: the XML declaration says the
 * encoding. */
static const char *const soap_types[] = { "text/xml", "application/soap+xml", NULL };

/* Answer now with a SOAP fault (nothing was submitted). */
static void reply_fault(struct http_server *srv, struct http_srv_conn *c,
                        struct evhttp_request *req, int code, const char *reason,
                        const char *itk_code, const char *text)
{
    struct buf b = { 0 };
    if (itk_soap_fault(&b, itk_code, text, NULL) != 0) {
        buf_free(&b);
        http_server_reply_text(srv, c, req, 503, "Service Unavailable", true,
                               "out of memory: try again");
        return;
    }
    log_warn(COMPONENT, "request refused", "source=%s peer=%s status=%d code=%s reason=\"%s\"",
             http_server_name(srv), http_srv_conn_peer(c), code, itk_code, text);
    http_server_reply(srv, c, req, code, reason, SOAP_TYPE, b.p, b.len);
    buf_free(&b);
}

static void on_reply(void *ctx, const struct ingest_reply *r);

static void on_request(void *ctx, struct http_server *srv, struct http_srv_conn *c,
                       struct evhttp_request *req)
{
    struct http_src *s = ctx;
    struct adapter_stats *st = http_server_counters(srv);
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");

    if (!http_media_type_in(ct, soap_types)) {
        reply_fault(srv, c, req, 415, "Unsupported Media Type", "1000",
                    "unsupported media type: POST the SOAP request as Content-Type text/xml "
                    "(application/soap+xml is taken too)");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    bool over = len > s->policy.max_message_bytes;
    size_t take = over ? (len < HEAD_KEPT ? len : HEAD_KEPT) : len;
    const char *body = take ? (const char *)evbuffer_pullup(in, (ev_ssize_t)take) : "";
    if (!body) {
        reply_fault(srv, c, req, 503, "Service Unavailable", "9999",
                    "the broker is out of memory: send the request again");
        return;
    }
    struct ingest_origin o = { .source = s->name, .peer = http_srv_conn_peer(c),
                               .tls_subject = http_srv_conn_subject(c) };
    int rc;
    http_srv_conn_hold(c, req);   /* before: the reply may come whenever */
    if (over) {
        char why[160];
        snprintf(why, sizeof why,
                 "the request is %zu bytes, more than max_message_bytes (%zu): not taken", len,
                 s->policy.max_message_bytes);
        st->oversize++;
        rc = ingest_refuse_itk(s->ingest, &o, body, take, "1001", why, on_reply, c);
    } else {
        rc = ingest_submit_itk(s->ingest, &o, &s->policy, body, len, on_reply, c);
    }
    if (rc != 0) {
        http_srv_conn_unhold(c);
        reply_fault(srv, c, req, 503, "Service Unavailable", "9999",
                    "the broker is out of memory: send the request again");
        return;
    }
    st->messages++;
    st->bytes += len;
}

static void on_reply(void *ctx, const struct ingest_reply *r)
{
    struct http_srv_conn *c = ctx;
    struct http_server *srv;
    struct evhttp_request *req = http_srv_conn_resume(c, &srv);

    if (!req)   /* the client went before its answer */
        return;
    if (!r->ack || r->ack_len == 0) {
        reply_fault(srv, c, req, 500, "Internal Server Error", "9999",
                    "no answer could be made: send the request again");
        return;
    }
    if (r->fault)
        http_server_reply(srv, c, req, 500, "Internal Server Error", SOAP_TYPE, r->ack,
                          r->ack_len);
    else
        http_server_reply(srv, c, req, 200, "OK", SOAP_TYPE, r->ack, r->ack_len);
}
