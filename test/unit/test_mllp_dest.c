/*
 * test_mllp_dest.c: the MLLP destination on a real event loop, against a
 * fake subscriber on 127.0.0.1 run in a thread of its own (blocking
 * sockets, plain or TLS with the example CA and certificates in
 * conf/tls). The fake answers each frame as the test tells it: AA, AE,
 * AR, a wrong MSA-2, bytes without framing, nothing, half an ACK then a
 * close, an oversize ACK.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "adapter.h"
#include "adapter_config.h"
#include "delivery.h"
#include "log.h"

#define CA          "conf/tls/example-ca.pem"
#define SERVER_CERT "conf/tls/example-broker.pem"
#define SERVER_KEY  "conf/tls/example-broker.key"
#define CLIENT_CERT "conf/tls/example-client.pem"
#define CLIENT_KEY  "conf/tls/example-client.key"

enum answer { ANS_AA, ANS_AE, ANS_AR, ANS_WRONG_ID, ANS_GARBAGE, ANS_NOTHING, ANS_HALF_CLOSE,
              ANS_HUGE };

/* ------------------------------------------------ the fake subscriber */

struct fake {
    int           lfd;
    unsigned      port;
    pthread_t     th;
    volatile int  stop;
    volatile int  answer;     /* enum answer */
    volatile int  conns;      /* connections accepted */
    volatile int  frames;     /* frames received */
    SSL_CTX      *ssl;        /* NULL: plain TCP */
};

struct link {
    int  fd;
    SSL *ssl;
};

static ssize_t link_read(struct link *l, char *p, size_t n)
{
    return l->ssl ? SSL_read(l->ssl, p, (int)n) : read(l->fd, p, n);
}

static void link_write(struct link *l, const char *p, size_t n)
{
    if (l->ssl)
        SSL_write(l->ssl, p, (int)n);
    else if (write(l->fd, p, n) < 0)
        return;
}

/* MSH-10 of the message in p (NUL-terminated), into ctl. */
static void msh10(const char *p, char *ctl, size_t len)
{
    const char *m = strstr(p, "MSH|");
    ctl[0] = '\0';
    if (!m)
        return;
    for (int i = 0; i < 9 && m; i++)
        m = strchr(m + 1, '|');
    if (!m)
        return;
    size_t n = strcspn(m + 1, "|\r");
    snprintf(ctl, len, "%.*s", (int)n, m + 1);
}

static void answer(struct fake *fk, struct link *l, const char *msg, bool *close_now)
{
    char ctl[64], out[4096];
    msh10(msg, ctl, sizeof ctl);
    const char *hdr = "MSH|^~\\&|RCV|FAC|BRK|FAC|20260101120000||ACK^A01^ACK|ACK1|P|2.5\r";
    switch (fk->answer) {
    case ANS_AA:
        snprintf(out, sizeof out, "\x0b%sMSA|AA|%s\r\x1c\r", hdr, ctl);
        break;
    case ANS_AE:
        snprintf(out, sizeof out, "\x0b%sMSA|AE|%s|PID-3 missing\rERR||PID^1^3|101\r\x1c\r", hdr,
                 ctl);
        break;
    case ANS_AR:
        snprintf(out, sizeof out,
                 "\x0b%sMSA|AR|%s\rERR|||207^Application internal error^HL70357|E|||"
                 "database down\r\x1c\r",
                 hdr, ctl);
        break;
    case ANS_WRONG_ID:
        snprintf(out, sizeof out, "\x0b%sMSA|AA|NOT-%s\r\x1c\r", hdr, ctl);
        break;
    case ANS_GARBAGE:
        snprintf(out, sizeof out, "HTTP/1.1 400 Bad Request\r\n\x01\xff");
        break;
    case ANS_NOTHING:
        return;
    case ANS_HALF_CLOSE:
        snprintf(out, sizeof out, "\x0b%sMSA|A", hdr);
        *close_now = true;
        break;
    case ANS_HUGE: {
        int n = snprintf(out, sizeof out, "\x0b%sMSA|AA|%s|", hdr, ctl);
        memset(out + n, 'x', 2000);
        memcpy(out + n + 2000, "\r\x1c\r", 4);
        break;
    }
    }
    link_write(l, out, strlen(out));
}

static void serve(struct fake *fk, int fd)
{
    struct link l = { .fd = fd };
    char buf[8192];
    size_t have = 0;

    fk->conns++;
    if (fk->ssl) {
        l.ssl = SSL_new(fk->ssl);
        SSL_set_fd(l.ssl, fd);
        if (SSL_accept(l.ssl) != 1)
            goto out;
    }
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (fk->stop)
            break;
        if (!(l.ssl && SSL_pending(l.ssl)) && poll(&p, 1, 50) == 0)
            continue;
        ssize_t r = link_read(&l, buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        buf[have] = '\0';
        char *end = strstr(buf, "\x1c\r");
        if (!end)
            continue;
        *end = '\0';
        fk->frames++;
        bool close_now = false;
        answer(fk, &l, buf, &close_now);
        size_t used = (size_t)(end + 2 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (close_now)
            break;
    }
out:
    if (l.ssl)
        SSL_free(l.ssl);
    close(fd);
}

static void *fake_main(void *arg)
{
    struct fake *fk = arg;
    while (!fk->stop) {
        struct pollfd p = { .fd = fk->lfd, .events = POLLIN };
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(fk->lfd, NULL, NULL);
        if (fd >= 0)
            serve(fk, fd);
    }
    return NULL;
}

static void fake_start(struct fake *fk, bool tls, bool want_client_cert)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    fk->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fk->lfd >= 0);
    assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fk->lfd, 8), 0);
    assert_int_equal(getsockname(fk->lfd, (struct sockaddr *)&sin, &len), 0);
    fk->port = ntohs(sin.sin_port);
    if (tls) {
        fk->ssl = SSL_CTX_new(TLS_server_method());
        assert_non_null(fk->ssl);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(fk->ssl, SERVER_CERT), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(fk->ssl, SERVER_KEY, SSL_FILETYPE_PEM), 1);
        if (want_client_cert) {
            assert_int_equal(SSL_CTX_load_verify_locations(fk->ssl, CA, NULL), 1);
            SSL_CTX_set_verify(fk->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(struct fake *fk)
{
    if (fk->lfd <= 0)
        return;
    fk->stop = 1;
    pthread_join(fk->th, NULL);
    close(fk->lfd);
    SSL_CTX_free(fk->ssl);
    fk->lfd = 0;
}

/* ------------------------------------------------------------ fixture */

struct fixture {
    struct event_base           *base;
    struct adapter              *a;
    struct fake                  fk;
    FILE                        *log;
    char                         connect[64];
    struct mllp_destination_opts o;
    struct config_tls_client     tls;
    struct config_destination    dst;
    /* the message in flight and what was reported */
    char                         payload[512];
    char                         ctl[32];
    struct delivery              d;
    int                          reports;
    int                          outcome;
    char                         detail[1024];
};

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
    f->o = (struct mllp_destination_opts){ .connect = f->connect, .connect_timeout_ms = 2000,
                                           .max_message_bytes = 1024 };
    f->dst = (struct config_destination){ .name = "test-dst", .type = "mllp",
                                          .ack_timeout_ms = 2000, .opts = &f->o };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
    fake_stop(&f->fk);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    free(f);
    return 0;
}

static void start(struct fixture *f, unsigned port)
{
    char err[512] = "";
    snprintf(f->connect, sizeof f->connect, "127.0.0.1:%u", port);
    f->a = adapter_new_destination(&f->dst, f->base, on_report, f, err, sizeof err);
    if (!f->a)
        fail_msg("adapter_new_destination: %s", err);
    memset(f->connect, 'X', sizeof f->connect - 1);   /* the adapter keeps its own copy */
    if (f->a->type->start(f->a, err, sizeof err))
        fail_msg("start: %s", err);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* Send a message with control id ctl and run the loop until its outcome
 * is reported (or 5 s pass). Returns the outcome, -1 when none came. */
static int deliver(struct fixture *f, const char *ctl)
{
    snprintf(f->ctl, sizeof f->ctl, "%s", ctl);
    snprintf(f->payload, sizeof f->payload,
             "MSH|^~\\&|BRK|FAC|RCV|FAC|20260101120000||ADT^A01|%s|P|2.5\rPID|1||123\r", ctl);
    f->d = (struct delivery){ .dest_id = 1, .seq = 1, .msg_id = 7, .payload = f->payload,
                              .len = strlen(f->payload), .control_id = f->ctl,
                              .payload_control_id = f->ctl, .code = "ADT", .trigger = "A01",
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

/* -------------------------------------------------------------- cases */

static void test_aa_keeps_connection(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    assert_int_equal(deliver(f, "C1"), DELIVERY_OK);
    assert_int_equal(deliver(f, "C2"), DELIVERY_OK);
    assert_int_equal(deliver(f, "C3"), DELIVERY_OK);
    assert_int_equal(f->fk.conns, 1);
    assert_int_equal(f->fk.frames, 3);
    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    assert_int_equal(st.messages, 3);
    assert_int_equal(st.connections_open, 1);
}

static void test_error_acks(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_AE;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "AE");
    assert_detail(f, "PID-3 missing");
    f->fk.answer = ANS_AR;
    assert_int_equal(deliver(f, "C2"), DELIVERY_RETRY);
    assert_detail(f, "AR");
    assert_detail(f, "database down");
    /* the connection survives an error ACK */
    f->fk.answer = ANS_AA;
    assert_int_equal(deliver(f, "C3"), DELIVERY_OK);
    assert_int_equal(f->fk.conns, 1);
}

static void test_error_ack_dead_letter(void **state)
{
    struct fixture *f = *state;
    f->dst.on_error_ack = CONFIG_ON_ERROR_DEAD_LETTER;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_AR;
    assert_int_equal(deliver(f, "C1"), DELIVERY_PERMANENT);
    assert_detail(f, "AR");
}

static void test_wrong_control_id(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_WRONG_ID;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "NOT-C1");
    assert_detail(f, "MSA-2");
    /* it closed the connection to resynchronise: the next one reconnects */
    f->fk.answer = ANS_AA;
    assert_int_equal(deliver(f, "C2"), DELIVERY_OK);
    assert_int_equal(f->fk.conns, 2);
}

static void test_garbage(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_GARBAGE;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "not MLLP framed");
    assert_detail(f, "HTTP/1.1 400");
    assert_detail(f, "\\x01\\xff");   /* escaped, not raw */
    assert_null(strchr(f->detail, '\x01'));
}

static void test_ack_timeout(void **state)
{
    struct fixture *f = *state;
    f->dst.ack_timeout_ms = 200;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_NOTHING;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "no ACK");
    f->fk.answer = ANS_AA;
    assert_int_equal(deliver(f, "C2"), DELIVERY_OK);
    assert_int_equal(f->fk.conns, 2);
}

static void test_closed_mid_message(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_HALF_CLOSE;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "closed the connection");
    f->fk.answer = ANS_AA;
    assert_int_equal(deliver(f, "C2"), DELIVERY_OK);
}

static void test_oversize_reply(void **state)
{
    struct fixture *f = *state;
    fake_start(&f->fk, false, false);
    start(f, f->fk.port);
    f->fk.answer = ANS_HUGE;
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "max_message_bytes");
}

static void test_refused(void **state)
{
    struct fixture *f = *state;
    /* a port nothing listens on */
    fake_start(&f->fk, false, false);
    unsigned port = f->fk.port;
    fake_stop(&f->fk);
    start(f, port);
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "cannot connect");
}

static void test_tls(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CA, .cert = CLIENT_CERT, .key = CLIENT_KEY };
    f->o.tls = &f->tls;
    fake_start(&f->fk, true, true);
    start(f, f->fk.port);   /* verified against the IP SAN 127.0.0.1 */
    assert_int_equal(deliver(f, "C1"), DELIVERY_OK);
    assert_int_equal(deliver(f, "C2"), DELIVERY_OK);
    assert_int_equal(f->fk.conns, 1);
}

static void test_tls_server_name(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CA, .server_name = "broker.example" };
    f->o.tls = &f->tls;
    fake_start(&f->fk, true, false);
    start(f, f->fk.port);
    assert_int_equal(deliver(f, "C1"), DELIVERY_OK);
}

static void test_tls_wrong_name(void **state)
{
    struct fixture *f = *state;
    f->tls = (struct config_tls_client){ .ca = CA, .server_name = "other.example" };
    f->o.tls = &f->tls;
    fake_start(&f->fk, true, false);
    start(f, f->fk.port);
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "cannot connect");
    assert_detail(f, "hostname mismatch");
    assert_int_equal(f->fk.frames, 0);
}

static void test_tls_untrusted(void **state)
{
    struct fixture *f = *state;
    /* the server's own certificate is not a CA that signs it */
    f->tls = (struct config_tls_client){ .ca = CLIENT_CERT };
    f->o.tls = &f->tls;
    fake_start(&f->fk, true, false);
    start(f, f->fk.port);
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "certificate verify failed");
    assert_int_equal(f->fk.frames, 0);
}

static void test_tls_connect_timeout(void **state)
{
    struct fixture *f = *state;
    /* a listener nobody accepts from: TCP connects (the backlog), the
       handshake never answers */
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    f->tls = (struct config_tls_client){ .ca = CA };
    f->o.tls = &f->tls;
    f->o.connect_timeout_ms = 200;
    start(f, ntohs(sin.sin_port));
    assert_int_equal(deliver(f, "C1"), DELIVERY_RETRY);
    assert_detail(f, "within 200 ms");
    close(lfd);
}

static void test_config_errors(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    snprintf(f->connect, sizeof f->connect, "127.0.0.1:1");
    f->tls = (struct config_tls_client){ .ca = "/nonexistent/ca.pem" };
    f->o.tls = &f->tls;
    assert_null(adapter_new_destination(&f->dst, f->base, on_report, f, err, sizeof err));
    assert_non_null(strstr(err, "tls.ca"));
    f->tls = (struct config_tls_client){ .ca = CA, .cert = CLIENT_CERT };
    assert_null(adapter_new_destination(&f->dst, f->base, on_report, f, err, sizeof err));
    assert_non_null(strstr(err, "cert and key"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_aa_keeps_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_ack_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_control_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_mid_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_server_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_wrong_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_untrusted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
