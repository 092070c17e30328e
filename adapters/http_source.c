/*
 * http_source.c: the "http" adapter type's source role (HL7 v2 over HTTP):
 * each POST to the configured path carries one message in its body; the
 * response, written only after ingest has committed the message (or the
 * reason it was refused), carries the HL7 ACK. The listener, TLS,
 * connections and allow-list are http_server.c's (shared with the itk
 * source); this file says what a request means.
 *
 * Answers:
 *  - 200 with the ACK (Content-Type application/hl7-v2+er7) for every
 *    HL7-level outcome: AA/CA, AE/AR/CE/CR, a duplicate's stored ACK;
 *  - 503 with the ACK (AR/CR) when the store could not take the message
 *    (the sender should send it again), or while the source is stopping;
 *  - 404 for a path other than the configured one, 405 (with Allow: POST)
 *    for another method, 415 for a body that is not HL7 v2 ER7
 *    (application/hl7-v2+er7, x-application/hl7-v2+er7 or text/plain,
 *    any parameters), 403 for a client certificate subject not allowed;
 *  - libevent itself answers 413 for a body over max_message_bytes (it
 *    reads and discards the rest: never truncated, never stored), 400 for
 *    a request it cannot parse, and the same for headers over its limit.
 */
#include "http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "adapter.h"
#include "adapter_config.h"
#include "ingest.h"
#include "log.h"

#define COMPONENT     "http"
#define ACK_TYPE      "application/hl7-v2+er7"

static void on_request(void *ctx, struct http_server *srv, struct http_srv_conn *c,
                       struct evhttp_request *req);

int http_src_configure(struct adapter *a, char *err, size_t errlen)
{
    const struct http_source_opts *o = a->src->opts;
    const struct ingest_policy policy = {
        .max_message_bytes = (size_t)o->max_message_bytes,
        .check_nhs_number = a->src->check_nhs_number,
    };
    struct http_server_opts so = {
        .component = COMPONENT,
        .name = a->name,
        .listen = o->listen,
        .path = o->path,
        .what = "HL7 v2 messages",
        .max_connections = (size_t)o->max_connections,
        .idle_timeout_ms = o->idle_timeout_ms,
        .max_body = (size_t)o->max_message_bytes,
        .allow = &o->allow,
        .tls = o->tls,
        .tls_session_id = "hl7broker-http",
        .handle = on_request,
    };
    return http_src_new(a, &policy, &so, err, errlen) ? 0 : -1;
}

/* HL7 v2 ER7's media types. */
static const char *const hl7_types[] = { "application/hl7-v2+er7", "x-application/hl7-v2+er7",
                                         "text/plain", NULL };

static void on_reply(void *ctx, const struct ingest_reply *r);

static void on_request(void *ctx, struct http_server *srv, struct http_srv_conn *c,
                       struct evhttp_request *req)
{
    struct http_src *s = ctx;
    struct adapter_stats *st = http_server_counters(srv);

    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!http_media_type_in(ct, hl7_types)) {
        http_server_reply_text(srv, c, req, 415, "Unsupported Media Type", false,
                               "unsupported media type: send the message as Content-Type "
                               "application/hl7-v2+er7 (x-application/hl7-v2+er7 and "
                               "text/plain are taken too)");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > s->policy.max_message_bytes) {   /* libevent refuses these first */
        st->oversize++;
        http_server_reply_text(srv, c, req, 413, "Payload Too Large", true,
                               "the message is larger than max_message_bytes");
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    if (!body) {
        http_server_reply_text(srv, c, req, 503, "Service Unavailable", true,
                               "out of memory: try again");
        return;
    }
    struct ingest_origin o = { .source = s->name, .peer = http_srv_conn_peer(c),
                               .tls_subject = http_srv_conn_subject(c) };
    http_srv_conn_hold(c, req);   /* before: the reply may come whenever */
    if (ingest_submit(s->ingest, &o, &s->policy, body, len, on_reply, c) != 0) {
        http_srv_conn_unhold(c);
        http_server_reply_text(srv, c, req, 503, "Service Unavailable", true,
                               "out of memory: try again");
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

    if (!req)   /* the connection went before the ACK */
        return;
    if (!r->ack || r->ack_len == 0) {
        http_server_reply_text(srv, c, req, 500, "Internal Server Error", true,
                               "no ACK could be made: send the message again");
        return;
    }
    bool failed = r->outcome == INGEST_FAILED;
    http_server_reply(srv, c, req, failed ? 503 : 200, failed ? "Service Unavailable" : "OK",
                      ACK_TYPE, r->ack, r->ack_len);
}
