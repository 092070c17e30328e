/*
 * test_http_source.c: the http source on a real event loop on 127.0.0.1,
 * with a real store and ingest, stepped one loop turn at a time so that a
 * request can be caught between its submission and its commit: the ACK is
 * the response, written after the commit; a source stopped (a reload) or a
 * client gone while the request waits for its commit leaves nothing
 * dangling (run under ASan too).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "ingest.h"
#include "log.h"
#include "store.h"

static const char MSG[] =
    "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01|CTRL-1|P|2.4\r"
    "PID|1||9990000018^^^NHS^NH||SMITH^JOHN\r";

struct fixture {
    char                     dir[64];
    struct event_base       *base;
    struct store            *store;
    struct ingest           *ingest;
    struct adapter          *a;
    unsigned                 port;
    FILE                    *log;
    char                     listen[64];
    struct http_source_opts  o;
    struct config_source     src;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char detail[256], err[512] = "";
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hl7-http-src-test.XXXXXX");
    struct store_opts so = { .dir = f->dir };
    if (!mkdtemp(f->dir) || !(f->base = event_base_new()) ||
        store_open(&so, &f->store, detail, sizeof detail) ||
        ingest_new(f->base, f->store, &f->ingest) || !(f->log = tmpfile()))
        return -1;
    log_set_fd(fileno(f->log));
    log_set_level(LOG_LEVEL_DEBUG);
    f->port = free_port();
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:%u", f->port);
    f->o = (struct http_source_opts){ .listen = f->listen, .path = "/hl7", .max_connections = 8,
                                      .idle_timeout_ms = 10000, .max_message_bytes = 1 << 16 };
    f->src = (struct config_source){ .name = "web", .type = "http", .opts = &f->o };
    f->a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    if (!f->a || f->a->type->start(f->a, err, sizeof err)) {
        fprintf(stderr, "source: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
    ingest_flush(f->ingest);
    ingest_free(f->ingest);
    store_close(f->store);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A client that has sent one POST of MSG. */
static int post(const struct fixture *f)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "POST /hl7 HTTP/1.1\r\nHost: x\r\nContent-Type: application/hl7-v2+er7\r\n"
                     "Content-Length: %zu\r\n\r\n%s", strlen(MSG), MSG);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(write(fd, req, (size_t)n), n);
    return fd;
}

/* Keeps a normal-priority event active, so the group commit (the lowest
 * priority) cannot run, until a message waits for it: then the loop stops,
 * with the message submitted and not committed. */
static void on_spin(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    struct event *self = event_base_get_running_event(f->base);
    (void)fd, (void)what;
    if (ingest_pending(f->ingest) > 0)
        event_base_loopbreak(f->base);
    else
        event_active(self, EV_TIMEOUT, 0);
}

static void until_pending(struct fixture *f)
{
    struct event *spin = event_new(f->base, -1, 0, on_spin, f);
    struct timeval five = { 5, 0 };
    assert_non_null(spin);
    event_priority_set(spin, 1);
    event_active(spin, EV_TIMEOUT, 0);
    event_base_loopexit(f->base, &five);
    event_base_dispatch(f->base);
    event_free(spin);
    assert_int_equal(ingest_pending(f->ingest), 1);
}

/* Read the response (the loop turning meanwhile) until close or a whole
 * body; returns its length in out. */
static size_t response(struct fixture *f, int fd, char *out, size_t cap)
{
    size_t got = 0;
    double end = now() + 5;
    while (now() < end && got < cap - 1) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 5) <= 0)
            continue;
        ssize_t r = read(fd, out + got, cap - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        out[got] = '\0';
        if (strstr(out, "\rMSA|") && strstr(strstr(out, "\rMSA|") + 1, "\r"))
            break;
    }
    out[got] = '\0';
    return got;
}

static void test_ack_after_commit(void **state)
{
    struct fixture *f = *state;
    char buf[4096];
    int fd = post(f);
    until_pending(f);
    /* submitted, not committed: nothing may have been answered */
    struct pollfd p = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&p, 1, 50), 0);
    response(f, fd, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "Content-Type: application/hl7-v2+er7"));
    assert_non_null(strstr(buf, "MSA|AA|CTRL-1"));
    close(fd);
}

/* A reload stops the source while its request waits for the commit: the
 * connection goes with evhttp, the reply that follows finds it gone. */
static void test_stopped_while_waiting(void **state)
{
    struct fixture *f = *state;
    char buf[4096];
    int fd = post(f);
    until_pending(f);
    adapter_free(f->a);
    f->a = NULL;
    ingest_flush(f->ingest);   /* the commit and its reply, to nobody */
    assert_int_equal(ingest_pending(f->ingest), 0);
    assert_int_equal(response(f, fd, buf, sizeof buf), 0);   /* closed, unanswered */
    close(fd);
    struct ingest_stats st;
    ingest_get_stats(f->ingest, &st);
    assert_int_equal(st.accepted, 1);   /* stored all the same */
}

/* The client resets its connection before the commit: the ACK is written
 * to nobody, the connection closes, and the source serves on. */
static void test_client_gone_while_waiting(void **state)
{
    struct fixture *f = *state;
    char buf[4096];
    int fd = post(f);
    until_pending(f);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    double end = now() + 1;
    while (now() < end)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    assert_int_equal(st.connections_open, 0);
    fd = post(f);
    response(f, fd, buf, sizeof buf);
    assert_non_null(strstr(buf, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(buf, "MSA|CA|CTRL-1") ? strstr(buf, "MSA|CA|CTRL-1")
                                                 : strstr(buf, "MSA|AA|CTRL-1"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ack_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_while_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_waiting, setup, teardown),
    };
    return cmocka_run_group_tests_name("http_source", tests, NULL, NULL);
}
