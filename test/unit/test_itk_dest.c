/*
 * test_itk_dest.c: the itk destination on a real event loop, against an
 * ITK receiver played by an evhttp server on 127.0.0.1 in the same loop
 * (plain, or TLS requiring a client certificate signed by the example
 * CA). The receiver checks what it got as a receiver would (itk_parse,
 * the WS-Addressing header read with XPath) and answers as the test says:
 * SimpleMessageResponse OK, a SOAP fault, 503, 404, an HTML 200, nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <openssl/ssl.h>

#include "adapter.h"
#include "adapter_config.h"
#include "buf.h"
#include "delivery.h"
#include "itk.h"
#include "log.h"

#define CA          "conf/tls/example-ca.pem"
#define SERVER_CERT "conf/tls/example-broker.pem"
#define SERVER_KEY  "conf/tls/example-broker.key"
#define CLIENT_CERT "conf/tls/example-client.pem"
#define CLIENT_KEY  "conf/tls/example-client.key"
#define SAMPLE      "test/data/itk/discharge_summary_soap.xml"
#define FROM        "https://broker.example.nhs.uk/itk"

extern const struct adapter_type itk_adapter;

enum answer { ANS_OK, ANS_FAULT, ANS_FAULT_OURS, ANS_503, ANS_404, ANS_HTML_200, ANS_EMPTY_200,
              ANS_NOTHING };

/* What the receiver saw of the last request. */
struct seen {
    int   method;
    char  uri[256];
    char  ctype[128];
    char  soapaction[256];
    int   parse_rc;         /* itk_parse of the body */
    char *message_id, *action, *to, *from, *de;
    char *service, *tracking_id;
};

struct fixture {
    struct event_base                *base;
    struct adapter                   *a;
    FILE                             *log;
    /* the receiver */
    struct evhttp                    *http;
    SSL_CTX                          *server_ssl;
    unsigned                          port;
    int                               answer;    /* enum answer */
    int                               requests;
    struct seen                       seen;
    /* the destination */
    char                              url[256];
    struct itk_destination_opts       o;
    struct config_tls_client          tls;
    struct config_destination         dst;
    char                             *payload;
    size_t                            payload_len;
    struct delivery                   d;
    int                               reports;
    int                               outcome;
    char                              detail[4096];
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void seen_clear(struct seen *s)
{
    free(s->message_id);
    free(s->action);
    free(s->to);
    free(s->from);
    free(s->de);
    free(s->service);
    free(s->tracking_id);
    memset(s, 0, sizeof *s);
}

/* The text of the first node xpath finds in doc, malloc'd; NULL if none. */
static char *xpath_text(xmlDocPtr doc, const char *xpath)
{
    char *r = NULL;
    xmlXPathContextPtr x = xmlXPathNewContext(doc);
    assert_non_null(x);
    xmlXPathRegisterNs(x, BAD_CAST "soap", BAD_CAST ITK_SOAP_NS);
    xmlXPathRegisterNs(x, BAD_CAST "wsa", BAD_CAST ITK_WSA_NS);
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST xpath, x);
    if (o && o->nodesetval && o->nodesetval->nodeNr > 0) {
        xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
        r = dup_or_null((const char *)t);
        xmlFree(t);
    }
    xmlXPathFreeObject(o);
    xmlXPathFreeContext(x);
    return r;
}

/* ------------------------------------------------------------ the receiver */

static const char OK_RESPONSE[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" "
    "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\" xmlns:itk=\"urn:nhs-itk:ns:201005\">"
    "<soap:Header><wsa:MessageID>uuid:0A1B2C3D-0000-4000-8000-000000000001</wsa:MessageID>"
    "<wsa:Action>urn:nhs-itk:services:201005:SendCDADocument-v2-0Response</wsa:Action>"
    "</soap:Header><soap:Body><itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse>"
    "</soap:Body></soap:Envelope>";

static const char FAULT_RESPONSE[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" "
    "xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">"
    "<soap:Header><wsa:MessageID>uuid:0A1B2C3D-0000-4000-8000-000000000002</wsa:MessageID>"
    "<wsa:Action>http://www.w3.org/2005/08/addressing/soap/fault</wsa:Action></soap:Header>"
    "<soap:Body><soap:Fault><faultcode>soap:Client</faultcode>"
    "<faultstring>A client related error has occurred, see detail element for further "
    "information</faultstring><detail>"
    "<itk:ToolkitErrorInfo xmlns:itk=\"urn:nhs-itk:ns:201005\">"
    "<itk:ErrorID>7C4F3C60-0000-4000-8000-000000000003</itk:ErrorID>"
    "<itk:ErrorCode codeSystem=\"2.16.840.1.113883.2.1.3.2.4.17.268\">2010</itk:ErrorCode>"
    "<itk:ErrorText>Patient not registered at this practice</itk:ErrorText>"
    "<itk:ErrorDiagnosticText>NHS number 9990000018 unknown</itk:ErrorDiagnosticText>"
    "</itk:ToolkitErrorInfo></detail></soap:Fault></soap:Body></soap:Envelope>";

static void receiver_record(struct fixture *f, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct seen *s = &f->seen;
    const char *v;
    seen_clear(s);
    s->method = evhttp_request_get_command(req);
    snprintf(s->uri, sizeof s->uri, "%s", evhttp_request_get_uri(req));
    snprintf(s->ctype, sizeof s->ctype, "%s", (v = evhttp_find_header(h, "Content-Type")) ? v : "");
    snprintf(s->soapaction, sizeof s->soapaction, "%s",
             (v = evhttp_find_header(h, "SOAPAction")) ? v : "");
    size_t len = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);

    struct itk_envelope *env = NULL;
    struct itk_error err;
    s->parse_rc = itk_parse(body ? body : "", len, NULL, &env, &err);
    if (s->parse_rc == ITK_OK) {
        s->message_id = dup_or_null(env->message_id);
        s->action = dup_or_null(env->action);
        s->de = dup_or_null(env->distribution_xml);
        s->service = dup_or_null(env->service);
        s->tracking_id = dup_or_null(env->tracking_id);
    } else {
        print_error("the receiver could not parse the request: %s\n", err.msg);
    }
    itk_free(env);
    xmlDocPtr doc = body ? xmlReadMemory(body, (int)len, "request.xml", NULL, XML_PARSE_NONET)
                         : NULL;
    if (doc) {
        s->to = xpath_text(doc, "/soap:Envelope/soap:Header/wsa:To");
        s->from = xpath_text(doc, "/soap:Envelope/soap:Header/wsa:From/wsa:Address");
        xmlFreeDoc(doc);
    }
}

static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    f->requests++;
    receiver_record(f, req);

    struct evbuffer *out = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "text/xml; charset=utf-8");
    switch (f->answer) {
    case ANS_OK:
        evbuffer_add(out, OK_RESPONSE, sizeof OK_RESPONSE - 1);
        evhttp_send_reply(req, 200, "OK", out);
        break;
    case ANS_FAULT:
        evbuffer_add(out, FAULT_RESPONSE, sizeof FAULT_RESPONSE - 1);
        evhttp_send_reply(req, 500, "Internal Server Error", out);
        break;
    case ANS_FAULT_OURS: {
        struct buf b = { 0 };
        assert_int_equal(itk_soap_fault(&b, "2002", "manifest count 2 but 1 item", NULL), 0);
        evbuffer_add(out, b.p, b.len);
        buf_free(&b);
        evhttp_send_reply(req, 500, "Internal Server Error", out);
        break;
    }
    case ANS_503:
        evbuffer_add_printf(out, "<html><body>down for maintenance</body></html>");
        evhttp_send_reply(req, 503, "Service Unavailable", out);
        break;
    case ANS_404:
        evbuffer_add_printf(out, "<html><body>no such endpoint</body></html>");
        evhttp_send_reply(req, 404, "Not Found", out);
        break;
    case ANS_HTML_200:
        evbuffer_add_printf(out, "<html><body>Welcome to nginx!</body></html>");
        evhttp_send_reply(req, 200, "OK", out);
        break;
    case ANS_EMPTY_200:
        evhttp_send_reply(req, 200, "OK", out);
        break;
    case ANS_NOTHING:
        break;   /* the client gives up; evhttp_free cleans up */
    }
    evbuffer_free(out);
}

static struct bufferevent *server_bev(struct event_base *base, void *arg)
{
    struct fixture *f = arg;
    return bufferevent_openssl_socket_new(base, -1, SSL_new(f->server_ssl),
                                          BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

/* tls: serve https, requiring a client certificate signed by the CA. */
static void server_start(struct fixture *f, bool tls)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    f->http = evhttp_new(f->base);
    assert_non_null(f->http);
    if (tls) {
        f->server_ssl = SSL_CTX_new(TLS_server_method());
        assert_non_null(f->server_ssl);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(f->server_ssl, SERVER_CERT), 1);
        assert_int_equal(
            SSL_CTX_use_PrivateKey_file(f->server_ssl, SERVER_KEY, SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_load_verify_locations(f->server_ssl, CA, NULL), 1);
        SSL_CTX_set_verify(f->server_ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           NULL);
        evhttp_set_bevcb(f->http, server_bev, f);
    }
    evhttp_set_gencb(f->http, handler, f);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len),
                     0);
    f->port = ntohs(sin.sin_port);
}

static void server_stop(struct fixture *f)
{
    if (f->http)
        evhttp_free(f->http);
    f->http = NULL;
    SSL_CTX_free(f->server_ssl);
    f->server_ssl = NULL;
}

/* ------------------------------------------------------------ fixture */

static void on_report(void *ctx, const struct delivery *d, int outcome, const char *detail)
{
    struct fixture *f = ctx;
    assert_ptr_equal(d, &f->d);
    f->reports++;
    f->outcome = outcome;
    snprintf(f->detail, sizeof f->detail, "%s", detail ? detail : "");
    if (getenv("TEST_VERBOSE"))
        print_message("outcome %d: %s\n", outcome, f->detail);
    event_base_loopbreak(f->base);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->base = event_base_new()) || !(f->log = tmpfile()))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    log_set_fd(fileno(f->log));
    f->o = (struct itk_destination_opts){ .url = f->url, .connect_timeout_ms = 2000,
                                          .max_message_bytes = 1048576 };
    f->dst = (struct config_destination){ .name = "gp-f84003", .type = "itk",
                                          .ack_timeout_ms = 2000, .opts = &f->o };
    f->payload = slurp(SAMPLE, &f->payload_len);
    *state = f;
    return 0;
}

static void adapter_release(struct fixture *f)
{
    if (!f->a)
        return;
    f->a->type->stop(f->a);
    free(f->a->state);
    free(f->a);
    f->a = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_release(f);
    server_stop(f);
    seen_clear(&f->seen);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    free(f->payload);
    free(f);
    return 0;
}

/* Make the instance by hand, as adapter_new_destination would. Returns
 * configure's result, err filled. */
static int make(struct fixture *f, char *err, size_t errlen)
{
    adapter_release(f);
    struct adapter *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->type = &itk_adapter;
    a->name = f->dst.name;
    a->role = ADAPTER_DESTINATION;
    a->dst = &f->dst;
    a->base = f->base;
    a->report = on_report;
    a->report_ctx = f;
    a->state = calloc(1, itk_adapter.state_size);
    assert_non_null(a->state);
    f->a = a;
    return a->type->configure(a, err, errlen);
}

static void start(struct fixture *f, const char *scheme, unsigned port, const char *path)
{
    char err[512] = "";
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%u%s", scheme, port, path);
    if (make(f, err, sizeof err))
        fail_msg("configure: %s", err);
    memset(f->url, 'X', sizeof f->url - 1);   /* the adapter keeps its own copy */
    if (f->a->type->start(f->a, err, sizeof err))
        fail_msg("start: %s", err);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* Send payload (len bytes) as message msg_id and run the loop until its
 * outcome is reported (or 5 s pass). Returns the outcome, -1 when none
 * came. */
static int deliver_bytes(struct fixture *f, const char *payload, size_t len, uint64_t msg_id)
{
    f->d = (struct delivery){ .dest_id = 1, .seq = msg_id, .msg_id = msg_id, .payload = payload,
                              .len = len, .control_id = "", .payload_control_id = "",
                              .code = "", .trigger = "", .attempt = 1 };
    int before = f->reports;
    assert_int_equal(f->a->type->send(f->a, &f->d), 0);
    assert_true(f->a->type->busy(f->a));
    assert_int_equal(f->a->type->send(f->a, &f->d), -1);   /* one in flight */
    struct event *t = evtimer_new(f->base, on_deadline, f->base);
    struct timeval tv = { 5, 0 };
    evtimer_add(t, &tv);
    event_base_dispatch(f->base);
    event_free(t);
    if (f->reports == before)
        return -1;
    assert_int_equal(f->reports, before + 1);
    assert_false(f->a->type->busy(f->a));
    return f->outcome;
}

static int deliver(struct fixture *f, uint64_t msg_id)
{
    return deliver_bytes(f, f->payload, f->payload_len, msg_id);
}

static void assert_detail(struct fixture *f, const char *what)
{
    if (!strstr(f->detail, what))
        fail_msg("detail \"%s\" does not say \"%s\"", f->detail, what);
}

/* The original message's DistributionEnvelope, serialised as itk_parse
 * does. */
static char *original_de(const char *bytes, size_t len)
{
    struct itk_envelope *env = NULL;
    assert_int_equal(itk_parse(bytes, len, NULL, &env, NULL), ITK_OK);
    char *de = strdup(env->distribution_xml);
    assert_non_null(de);
    itk_free(env);
    return de;
}

/* -------------------------------------------------------------- cases */

static void test_ok(void **state)
{
    struct fixture *f = *state;
    f->o.from = FROM;
    server_start(f, false);
    start(f, "http", f->port, "/itk/receive");
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
    assert_int_equal(f->requests, 1);

    /* what the receiver saw */
    struct seen *s = &f->seen;
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/itk/receive", f->port);
    assert_int_equal(s->method, EVHTTP_REQ_POST);
    assert_string_equal(s->uri, "/itk/receive");
    assert_string_equal(s->ctype, "text/xml; charset=utf-8");
    assert_string_equal(s->soapaction, "\"" ITK_SERVICE_CDA "\"");
    assert_int_equal(s->parse_rc, ITK_OK);
    assert_non_null(s->message_id);
    assert_int_equal(strncmp(s->message_id, "uuid:", 5), 0);
    assert_int_equal(strlen(s->message_id), 5 + 36);
    /* a fresh MessageID of this broker's, not the one it received */
    assert_string_not_equal(s->message_id, "uuid:6B0C3F0E-5A4D-4C3B-9E0A-111111111111");
    assert_string_equal(s->action, ITK_SERVICE_CDA);
    assert_non_null(s->to);
    assert_string_equal(s->to, url);
    assert_non_null(s->from);
    assert_string_equal(s->from, FROM);
    /* the DistributionEnvelope travels unchanged */
    char *de = original_de(f->payload, f->payload_len);
    assert_string_equal(s->de, de);
    free(de);
    assert_string_equal(s->tracking_id, "7D5B2A90-1C44-4F7B-8D3E-222222222222");

    /* the MessageID is per message: the same again for msg 7, another for 8 */
    char *first = strdup(s->message_id);
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
    assert_string_equal(f->seen.message_id, first);
    assert_int_equal(deliver(f, 8), DELIVERY_OK);
    assert_string_not_equal(f->seen.message_id, first);
    free(first);

    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    assert_int_equal(st.messages, 3);
    assert_int_equal(st.connections, 3);
}

static void test_bare_envelope_no_from(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    /* a bare DistributionEnvelope, as the mdm-to-itk transform stores it */
    char *de = original_de(f->payload, f->payload_len);
    struct buf bare = { 0 };
    assert_int_equal(buf_printf(&bare, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n%s", de), 0);
    assert_int_equal(deliver_bytes(f, bare.p, bare.len, 9), DELIVERY_OK);
    assert_int_equal(f->seen.parse_rc, ITK_OK);
    assert_string_equal(f->seen.de, de);
    assert_string_equal(f->seen.action, ITK_SERVICE_CDA);
    assert_null(f->seen.from);   /* from unset: no wsa:From */
    assert_non_null(f->seen.to);
    buf_free(&bare);
    free(de);
}

static void test_fault_dead_letter(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    f->answer = ANS_FAULT;
    assert_int_equal(deliver(f, 7), DELIVERY_PERMANENT);
    assert_detail(f, "500");
    assert_detail(f, "SOAP fault 2010");
    assert_detail(f, "Patient not registered at this practice");
    /* the fault this broker's own itk source would send */
    f->answer = ANS_FAULT_OURS;
    assert_int_equal(deliver(f, 8), DELIVERY_PERMANENT);
    assert_detail(f, "SOAP fault 2002");
    assert_detail(f, "manifest count 2 but 1 item");
}

static void test_503_then_ok(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    f->answer = ANS_503;
    assert_int_equal(deliver(f, 7), DELIVERY_RETRY);
    assert_detail(f, "503 Service Unavailable");
    assert_detail(f, "down for maintenance");
    char *first = strdup(f->seen.message_id);
    f->answer = ANS_OK;
    f->d.attempt = 2;
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
    assert_string_equal(f->seen.message_id, first);   /* a retry repeats it */
    assert_int_equal(f->requests, 2);
    free(first);
}

static void test_timeout_retry(void **state)
{
    struct fixture *f = *state;
    f->dst.ack_timeout_ms = 200;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    f->answer = ANS_NOTHING;
    assert_int_equal(deliver(f, 7), DELIVERY_RETRY);
    assert_detail(f, "no response");
    assert_detail(f, "within 200 ms");
    f->answer = ANS_OK;
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
}

static void test_refused_retry(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);   /* a port nothing listens on once it is gone */
    unsigned port = f->port;
    server_stop(f);
    start(f, "http", port, "/itk");
    assert_int_equal(deliver(f, 7), DELIVERY_RETRY);
    assert_detail(f, "cannot connect");
}

static void test_other_answers(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    /* a 200 that confirms nothing: not delivered, tried again */
    f->answer = ANS_HTML_200;
    assert_int_equal(deliver(f, 7), DELIVERY_RETRY);
    assert_detail(f, "not with an ITK SimpleMessageResponse OK");
    assert_detail(f, "Welcome to nginx!");
    /* 4xx without a fault: dead letter */
    f->answer = ANS_404;
    assert_int_equal(deliver(f, 7), DELIVERY_PERMANENT);
    assert_detail(f, "404 Not Found");
    assert_detail(f, "no such endpoint");
    /* an empty 2xx: taken as OK */
    f->answer = ANS_EMPTY_200;
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
}

static void test_not_itk_dead_letter(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/itk");
    const char er7[] = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||123\r";
    assert_int_equal(deliver_bytes(f, er7, sizeof er7 - 1, 7), DELIVERY_PERMANENT);
    assert_detail(f, "not an ITK envelope");
    assert_int_equal(f->requests, 0);   /* never sent */
    /* a SOAPAction that would break the header: never sent either */
    size_t len;
    char *p = slurp(SAMPLE, &len);
    struct buf b = { 0 };
    const char *svc = "service=\"urn:nhs-itk:services:201005:SendCDADocument-v2-0\"";
    char *at = strstr(p, svc);
    assert_non_null(at);
    assert_int_equal(buf_append(&b, p, (size_t)(at - p)), 0);
    assert_int_equal(buf_puts(&b, "service=\"urn:x&#13;&#10;X-Evil: 1\""), 0);
    assert_int_equal(buf_puts(&b, at + strlen(svc)), 0);
    assert_int_equal(deliver_bytes(f, b.p, b.len, 8), DELIVERY_PERMANENT);
    assert_detail(f, "cannot be sent as a SOAPAction");
    assert_int_equal(f->requests, 0);
    buf_free(&b);
    free(p);
}

static void test_https_client_cert(void **state)
{
    struct fixture *f = *state;
    server_start(f, true);
    /* without a client certificate the receiver refuses the handshake */
    f->tls = (struct config_tls_client){ .ca = CA };
    f->o.tls = &f->tls;
    start(f, "https", f->port, "/itk");
    assert_int_equal(deliver(f, 7), DELIVERY_RETRY);
    assert_int_equal(f->requests, 0);
    /* with one */
    f->tls = (struct config_tls_client){ .ca = CA, .cert = CLIENT_CERT, .key = CLIENT_KEY };
    start(f, "https", f->port, "/itk");
    assert_int_equal(deliver(f, 7), DELIVERY_OK);
    assert_int_equal(f->requests, 1);
    char url[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/itk", f->port);
    assert_string_equal(f->seen.to, url);
    f->answer = ANS_FAULT;
    assert_int_equal(deliver(f, 8), DELIVERY_PERMANENT);
    assert_detail(f, "Patient not registered");
}

static void test_config_errors(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    snprintf(f->url, sizeof f->url, "ftp://127.0.0.1/x");
    assert_int_not_equal(make(f, err, sizeof err), 0);
    assert_non_null(strstr(err, "http:// or https://"));
    f->tls = (struct config_tls_client){ .ca = CA };
    f->o.tls = &f->tls;
    snprintf(f->url, sizeof f->url, "http://127.0.0.1/x");
    assert_int_not_equal(make(f, err, sizeof err), 0);
    assert_non_null(strstr(err, "https://"));
    f->o.url = NULL;
    assert_int_not_equal(make(f, err, sizeof err), 0);
    assert_non_null(strstr(err, "url"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_envelope_no_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_itk_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_client_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xmlCleanupParser();
    return rc;
}
