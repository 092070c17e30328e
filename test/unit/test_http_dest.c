/*
 * test_http_dest.c: the http destination on a real event loop, against an
 * evhttp server on 127.0.0.1 in the same loop (plain, or TLS with the
 * example CA and certificates in conf/tls). The server answers as the
 * test tells it: 200, 404, 503, a chunked 422, an oversize 200, nothing.
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
#include <openssl/ssl.h>

#include "adapter.h"
#include "adapter_config.h"
#include "delivery.h"
#include "log.h"

#define CA          "conf/tls/example-ca.pem"
#define SERVER_CERT "conf/tls/example-broker.pem"
#define SERVER_KEY  "conf/tls/example-broker.key"
#define CLIENT_CERT "conf/tls/example-client.pem"

extern const struct adapter_type http_adapter;

enum answer { ANS_200, ANS_404, ANS_503, ANS_422_CHUNKED, ANS_HUGE, ANS_NOTHING };

struct fixture {
    struct event_base            *base;
    struct adapter               *a;
    FILE                         *log;
    /* the server */
    struct evhttp                *http;
    SSL_CTX                      *server_ssl;
    unsigned                      port;
    int                           answer;    /* enum answer */
    int                           requests;
    int                           method;
    char                          uri[256];
    char                          ctype[128];
    char                          xtest[128];
    char                          body[1024];
    size_t                        body_len;
    /* the destination */
    char                          url[256];
    char                         *headers[2];
    struct http_destination_opts  o;
    struct config_tls_client      tls;
    struct config_destination     dst;
    char                          payload[512];
    struct delivery               d;
    int                           reports;
    int                           outcome;
    char                          detail[1024];
};

/* ------------------------------------------------------------ the server */

static void handler(struct evhttp_request *req, void *arg)
{
    struct fixture *f = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const char *v;
    f->requests++;
    f->method = evhttp_request_get_command(req);
    snprintf(f->uri, sizeof f->uri, "%s", evhttp_request_get_uri(req));
    snprintf(f->ctype, sizeof f->ctype, "%s", (v = evhttp_find_header(h, "Content-Type")) ? v : "");
    snprintf(f->xtest, sizeof f->xtest, "%s", (v = evhttp_find_header(h, "X-Test")) ? v : "");
    f->body_len = evbuffer_get_length(in);
    if (f->body_len > sizeof f->body)
        f->body_len = sizeof f->body;
    evbuffer_remove(in, f->body, f->body_len);

    struct evbuffer *out = evbuffer_new();
    switch (f->answer) {
    case ANS_200:
        evbuffer_add_printf(out, "ok");
        evhttp_send_reply(req, 200, "OK", out);
        break;
    case ANS_404:
        evbuffer_add(out, "no such patient\r\n\x01\xff", 19);
        evhttp_send_reply(req, 404, "Not Found", out);
        break;
    case ANS_503:
        evbuffer_add_printf(out, "try later");
        evhttp_send_reply(req, 503, "Service Unavailable", out);
        break;
    case ANS_422_CHUNKED:
        evhttp_send_reply_start(req, 422, "Unprocessable Entity");
        evbuffer_add_printf(out, "PID-3 ");
        evhttp_send_reply_chunk(req, out);
        evbuffer_add_printf(out, "is missing");
        evhttp_send_reply_chunk(req, out);
        evhttp_send_reply_end(req);
        break;
    case ANS_HUGE: {
        static char big[300000];
        memset(big, 'x', sizeof big);
        evbuffer_add(out, big, sizeof big);
        evhttp_send_reply(req, 200, "OK", out);
        break;
    }
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
    event_base_loopbreak(f->base);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->base = event_base_new()) || !(f->log = tmpfile()))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    log_set_fd(fileno(f->log));
    f->o = (struct http_destination_opts){ .url = f->url, .connect_timeout_ms = 2000,
                                           .max_message_bytes = 1048576 };
    f->dst = (struct config_destination){ .name = "test-http", .type = "http",
                                          .ack_timeout_ms = 2000, .opts = &f->o };
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
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    free(f);
    return 0;
}

/* Make the instance by hand, as adapter_new_destination would once the
 * type is registered. Returns configure's result, err filled. */
static int make(struct fixture *f, char *err, size_t errlen)
{
    adapter_release(f);
    struct adapter *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->type = &http_adapter;
    a->name = f->dst.name;
    a->role = ADAPTER_DESTINATION;
    a->dst = &f->dst;
    a->base = f->base;
    a->report = on_report;
    a->report_ctx = f;
    a->state = calloc(1, http_adapter.state_size);
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

/* Send payload and run the loop until its outcome is reported (or 5 s
 * pass). Returns the outcome, -1 when none came. */
static int deliver(struct fixture *f, const char *payload)
{
    snprintf(f->payload, sizeof f->payload, "%s", payload);
    f->d = (struct delivery){ .dest_id = 1, .seq = 1, .msg_id = 7, .payload = f->payload,
                              .len = strlen(f->payload), .control_id = "C1",
                              .payload_control_id = "C1", .code = "ADT", .trigger = "A01",
                              .attempt = 1 };
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

static void assert_detail(struct fixture *f, const char *what)
{
    if (!strstr(f->detail, what))
        fail_msg("detail \"%s\" does not say \"%s\"", f->detail, what);
}

#define ER7 "MSH|^~\\&|BRK|FAC|RCV|FAC|20260101120000||ADT^A01|C1|P|2.5\rPID|1||123\r"

/* -------------------------------------------------------------- cases */

static void test_200(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/hl7/in?feed=adt");
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);
    assert_int_equal(f->requests, 1);
    assert_int_equal(f->method, EVHTTP_REQ_POST);
    assert_string_equal(f->uri, "/hl7/in?feed=adt");
    assert_string_equal(f->ctype, "application/hl7-v2+er7");
    assert_int_equal(f->body_len, strlen(ER7));
    assert_memory_equal(f->body, ER7, strlen(ER7));
    /* again, on a new connection */
    assert_int_equal(deliver(f, "{\"msh\":{\"10\":\"C2\"}}"), DELIVERY_OK);
    assert_int_equal(f->requests, 2);
    assert_string_equal(f->ctype, "application/json");
    assert_int_equal(f->body_len, 19);
    assert_memory_equal(f->body, "{\"msh\":{\"10\":\"C2\"}}", 19);
    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    assert_int_equal(st.messages, 2);
    assert_int_equal(st.connections, 2);
}

static void test_headers(void **state)
{
    struct fixture *f = *state;
    f->headers[0] = "X-Test: yes please";
    f->headers[1] = "content-type: text/plain";
    f->o.headers = (struct config_strlist){ .v = f->headers, .n = 2 };
    server_start(f, false);
    start(f, "http", f->port, "");
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);
    assert_string_equal(f->uri, "/");
    assert_string_equal(f->xtest, "yes please");
    assert_string_equal(f->ctype, "text/plain");
}

static void test_404_permanent(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/x");
    f->answer = ANS_404;
    assert_int_equal(deliver(f, ER7), DELIVERY_PERMANENT);
    assert_detail(f, "404 Not Found");
    assert_detail(f, "no such patient\\r\\n\\x01\\xff");   /* escaped, not raw */
    assert_null(strchr(f->detail, '\x01'));
    assert_null(strchr(f->detail, '\n'));
}

static void test_422_chunked(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/x");
    f->answer = ANS_422_CHUNKED;
    assert_int_equal(deliver(f, ER7), DELIVERY_PERMANENT);
    assert_detail(f, "422");
    assert_detail(f, "PID-3 is missing");
}

static void test_503_retry(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);
    start(f, "http", f->port, "/x");
    f->answer = ANS_503;
    assert_int_equal(deliver(f, ER7), DELIVERY_RETRY);
    assert_detail(f, "503");
    assert_detail(f, "try later");
    f->answer = ANS_200;
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);
}

static void test_huge_response(void **state)
{
    struct fixture *f = *state;
    f->o.max_message_bytes = 4096;
    server_start(f, false);
    start(f, "http", f->port, "/x");
    f->answer = ANS_HUGE;
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);   /* the status decides */
    assert_detail(f, "max_message_bytes");
}

static void test_timeout(void **state)
{
    struct fixture *f = *state;
    f->dst.ack_timeout_ms = 200;
    server_start(f, false);
    start(f, "http", f->port, "/x");
    f->answer = ANS_NOTHING;
    assert_int_equal(deliver(f, ER7), DELIVERY_RETRY);
    assert_detail(f, "no response");
    assert_detail(f, "within 200 ms");
    f->answer = ANS_200;
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);
}

static void test_refused(void **state)
{
    struct fixture *f = *state;
    server_start(f, false);   /* a port nothing listens on once it is gone */
    unsigned port = f->port;
    server_stop(f);
    start(f, "http", port, "/x");
    assert_int_equal(deliver(f, ER7), DELIVERY_RETRY);
    assert_detail(f, "cannot connect");
}

static void test_https(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CA };
    f->o.tls = &f->tls;
    server_start(f, true);
    start(f, "https", f->port, "/secure");   /* verified against the IP SAN 127.0.0.1 */
    assert_int_equal(deliver(f, ER7), DELIVERY_OK);
    assert_string_equal(f->uri, "/secure");
    assert_memory_equal(f->body, ER7, strlen(ER7));
    f->answer = ANS_404;
    assert_int_equal(deliver(f, ER7), DELIVERY_PERMANENT);
}

static void test_https_wrong_name(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CA, .server_name = "other.example" };
    f->o.tls = &f->tls;
    server_start(f, true);
    start(f, "https", f->port, "/secure");
    assert_int_equal(deliver(f, ER7), DELIVERY_RETRY);
    assert_detail(f, "cannot connect");
    assert_detail(f, "hostname mismatch");
    assert_int_equal(f->requests, 0);
}

static void test_https_untrusted(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CLIENT_CERT };
    f->o.tls = &f->tls;
    server_start(f, true);
    start(f, "https", f->port, "/secure");
    assert_int_equal(deliver(f, ER7), DELIVERY_RETRY);
    assert_detail(f, "certificate verify failed");
    assert_int_equal(f->requests, 0);
}

static void expect_config_error(struct fixture *f, const char *url, const char *what)
{
    char err[512] = "";
    snprintf(f->url, sizeof f->url, "%s", url);
    if (make(f, err, sizeof err) == 0)
        fail_msg("configure accepted url \"%s\"", url);
    if (!strstr(err, what))
        fail_msg("url \"%s\": error \"%s\" does not say \"%s\"", url, err, what);
}

static void test_config_errors(void **state)
{
    struct fixture *f = *state;
    expect_config_error(f, "ftp://127.0.0.1/x", "http:// or https://");
    expect_config_error(f, "http:///x", "no host");
    expect_config_error(f, "http://127.0.0.1:0/x", "1..65535");
    expect_config_error(f, "http://127.0.0.1:99999/x", "1..65535");
    expect_config_error(f, "http://127.0.0.1:8a/x", "1..65535");
    expect_config_error(f, "http://user:pw@127.0.0.1/x", "credentials");
    expect_config_error(f, "http://127.0.0.1/x#frag", "fragment");
    expect_config_error(f, "http://127.0.0.1/a b", "space");
    expect_config_error(f, "http://[::1/x", "']'");
    expect_config_error(f, "http://bad_host!/x", "host");

    f->headers[0] = "X-Evil: a\r\nX-Injected: b";
    f->o.headers = (struct config_strlist){ .v = f->headers, .n = 1 };
    expect_config_error(f, "http://127.0.0.1/x", "control byte");
    f->headers[0] = "NoColon";
    expect_config_error(f, "http://127.0.0.1/x", "Name: value");
    f->headers[0] = "Content-Length: 5";
    expect_config_error(f, "http://127.0.0.1/x", "written by the broker");
    f->o.headers.n = 0;

    f->tls = (struct config_tls_client){ .ca = CA };
    f->o.tls = &f->tls;
    expect_config_error(f, "http://127.0.0.1/x", "https://");
    f->tls = (struct config_tls_client){ .ca = "/nonexistent/ca.pem" };
    expect_config_error(f, "https://127.0.0.1/x", "tls.ca");

    /* and the good shapes */
    char err[512] = "";
    f->o.tls = NULL;
    const char *good[] = { "http://127.0.0.1", "HTTP://example.org:8080/a/b?c=d",
                           "http://[::1]:8080/x", "https://hie.example/hl7" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(f->url, sizeof f->url, "%s", good[i]);
        if (make(f, err, sizeof err))
            fail_msg("url \"%s\" refused: %s", good[i], err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_200, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_404_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_422_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_503_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_wrong_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_https_untrusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
