/*
 * test_zmq_dest.c: the zmq destination on a real event loop, against real
 * ZeroMQ peers: a SUB socket receiving the published stream (topic frame,
 * payload frame, prefix filtering, bind and connect, the high-water mark
 * refusing), and a REP peer in a thread answering OK, ERR, nonsense, or
 * too late (the socket is recreated and the next delivery goes through).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <zmq.h>

#include "adapter.h"
#include "adapter_config.h"
#include "config.h"
#include "delivery.h"
#include "log.h"

extern const struct adapter_type zmq_adapter;

#define MAX_STEPS 8

/* The REP peer: answers each request it takes with the next step. */
struct step {
    int         delay_ms;   /* before answering */
    const char *reply;
};

struct peer {
    void        *sock;
    struct step  steps[MAX_STEPS];
    int          n_steps;
    char         got[MAX_STEPS][256];
    atomic_int   answered;
    pthread_t    thread;
};

struct fixture {
    struct event_base          *base;
    struct event               *guard;   /* ends a loop that waits too long */
    bool                        timed_out;
    struct adapter             *a;
    FILE                       *log;
    void                       *zctx;    /* the test's peers' context */
    void                       *sub;     /* closed at teardown (or ctx_term would wait) */
    char                        ipc_dir[64];
    char                        endpoint[256];
    struct zmq_destination_opts o;
    struct config_destination   dst;
    struct delivery             d;
    int                         reports;
    int                         outcome;
    char                        detail[1024];
    struct peer                 peer;
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

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)fd, (void)what;
    f->timed_out = true;
    event_base_loopbreak(f->base);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->base = event_base_new()) || !(f->log = tmpfile()) ||
        !(f->guard = evtimer_new(f->base, on_guard, f)) || !(f->zctx = zmq_ctx_new()))
        return -1;
    log_set_fd(fileno(f->log));
    f->dst = (struct config_destination){ .name = "zmq-out", .type = "zmq",
                                          .ack_timeout_ms = 5000, .opts = &f->o };
    f->o = (struct zmq_destination_opts){ .mode = ZMQ_DEST_PUB, .sndhwm = 1000 };
    *state = f;
    return 0;
}

static void free_adapter(struct fixture *f)
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
    free_adapter(f);
    if (f->peer.thread)
        pthread_join(f->peer.thread, NULL);
    if (f->ipc_dir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/out.sock", f->ipc_dir);
        unlink(path);
        rmdir(f->ipc_dir);
    }
    if (f->sub)
        zmq_close(f->sub);
    zmq_ctx_term(f->zctx);
    event_free(f->guard);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    free(f);
    return 0;
}

/* The instance made by hand, as the core would. */
static void start(struct fixture *f)
{
    char err[512] = "";
    struct adapter *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->type = &zmq_adapter;
    a->name = f->dst.name;
    a->role = ADAPTER_DESTINATION;
    a->dst = &f->dst;
    a->base = f->base;
    a->report = on_report;
    a->report_ctx = f;
    assert_non_null(a->state = calloc(1, zmq_adapter.state_size));
    f->a = a;
    f->o.endpoint = f->endpoint;
    if (a->type->configure(a, err, sizeof err))
        fail_msg("configure: %s", err);
    if (a->type->start(a, err, sizeof err))
        fail_msg("start: %s", err);
}

static int deliver_as(struct fixture *f, const char *code, const char *trigger,
                      const char *payload, size_t len)
{
    f->d = (struct delivery){ .dest_id = 1, .seq = 1, .msg_id = 1, .payload = payload,
                              .len = len, .control_id = "C1", .payload_control_id = "C1",
                              .code = code, .trigger = trigger, .attempt = 1 };
    int before = f->reports;
    assert_int_equal(f->a->type->send(f->a, &f->d), 0);
    assert_int_equal(f->a->type->send(f->a, &f->d), -1);   /* one in flight */
    assert_int_equal(f->reports, before);                 /* reported from the loop */
    assert_true(f->a->type->busy(f->a));
    struct timeval tv = { 10, 0 };
    evtimer_add(f->guard, &tv);
    event_base_dispatch(f->base);
    evtimer_del(f->guard);
    assert_false(f->timed_out);
    assert_int_equal(f->reports, before + 1);
    assert_false(f->a->type->busy(f->a));
    return f->outcome;
}

static int deliver(struct fixture *f, const char *payload)
{
    return deliver_as(f, "ADT", "A01", payload, strlen(payload));
}

/* One message from sub within ms: its frames joined by '|' into out.
 * Returns false when none came. */
static bool receive(void *sub, int ms, char *out, size_t outlen)
{
    zmq_pollitem_t it = { .socket = sub, .events = ZMQ_POLLIN };
    if (zmq_poll(&it, 1, ms) <= 0)
        return false;
    out[0] = '\0';
    int more = 1;
    for (bool first = true; more; first = false) {
        char frame[1024];
        int n = zmq_recv(sub, frame, sizeof frame - 1, 0);
        assert_true(n >= 0);
        frame[n < (int)sizeof frame - 1 ? n : (int)sizeof frame - 1] = '\0';
        size_t mlen = sizeof more;
        assert_int_equal(zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &mlen), 0);
        if (!first)
            strncat(out, "|", outlen - strlen(out) - 1);
        strncat(out, frame, outlen - strlen(out) - 1);
    }
    return true;
}

static void *new_sub(struct fixture *f, const char *prefix)
{
    void *sub = zmq_socket(f->zctx, ZMQ_SUB);
    int zero = 0;
    assert_non_null(sub);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, prefix, strlen(prefix)), 0);
    f->sub = sub;
    return sub;
}

static void bind_any_tcp(struct fixture *f, void *sock)
{
    size_t len = sizeof f->endpoint;
    assert_int_equal(zmq_bind(sock, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len), 0);
}

/* Publish until the subscriber has one (a subscription takes a moment to
 * reach the publisher: the slow joiner), then check a marked message
 * arrives whole and in order. */
static void check_stream(struct fixture *f, void *sub)
{
    char got[2048], payload[64];
    bool joined = false;
    for (int i = 0; i < 200 && !joined; i++) {
        snprintf(payload, sizeof payload, "MSH|^~\\&|try %d", i);
        assert_int_equal(deliver(f, payload), DELIVERY_OK);
        assert_non_null(strstr(f->detail, "ADT^A01"));
        joined = receive(sub, 25, got, sizeof got);
    }
    assert_true(joined);
    assert_int_equal(strncmp(got, "ADT^A01|MSH|^~\\&|try ", 21), 0);

    /* Filtered out by the subscriber's prefix. */
    assert_int_equal(deliver_as(f, "ORU", "R01", "MSH|oru", 7), DELIVERY_OK);
    /* No trigger: the topic is the code. */
    assert_int_equal(deliver_as(f, "ADT", "", "MSH|no trigger", 14), DELIVERY_OK);
    assert_int_equal(deliver(f, "MSH|^~\\&|final"), DELIVERY_OK);
    bool bare = false, final = false;
    while (!final && receive(sub, 2000, got, sizeof got)) {
        assert_null(strstr(got, "oru"));
        if (strcmp(got, "ADT|MSH|no trigger") == 0)
            bare = true;
        else if (strcmp(got, "ADT^A01|MSH|^~\\&|final") == 0)
            final = true;
        else   /* a late copy of a try */
            assert_int_equal(strncmp(got, "ADT^A01|MSH|^~\\&|try ", 21), 0);
    }
    assert_true(bare);
    assert_true(final);
}

static void test_pub_connect(void **state)
{
    struct fixture *f = *state;
    void *sub = new_sub(f, "ADT");
    bind_any_tcp(f, sub);
    f->o.bind = false;
    start(f);
    check_stream(f, sub);
}

static void test_pub_bind(void **state)
{
    struct fixture *f = *state;
    snprintf(f->ipc_dir, sizeof f->ipc_dir, "/tmp/hl7-zmq-dest.XXXXXX");
    assert_non_null(mkdtemp(f->ipc_dir));
    snprintf(f->endpoint, sizeof f->endpoint, "ipc://%s/out.sock", f->ipc_dir);
    f->o.bind = true;
    start(f);
    void *sub = new_sub(f, "ADT");
    assert_int_equal(zmq_connect(sub, f->endpoint), 0);
    check_stream(f, sub);
}

/* A subscriber that stops reading: once its queue is full the publisher
 * refuses (retryable) instead of dropping. */
static void test_pub_hwm(void **state)
{
    struct fixture *f = *state;
    void *sub = new_sub(f, "");
    int one = 1;
    assert_int_equal(zmq_setsockopt(sub, ZMQ_RCVHWM, &one, sizeof one), 0);
    bind_any_tcp(f, sub);
    f->o.bind = false;
    f->o.sndhwm = 1;
    start(f);
    char got[2048];
    bool joined = false;
    for (int i = 0; i < 200 && !joined; i++) {
        assert_int_equal(deliver(f, "MSH|join"), DELIVERY_OK);
        joined = receive(sub, 25, got, sizeof got);
    }
    assert_true(joined);

    size_t big = 1u << 20;
    char *payload = malloc(big);
    assert_non_null(payload);
    memset(payload, 'x', big);
    int outcome = DELIVERY_OK;
    for (int i = 0; i < 1000 && outcome == DELIVERY_OK; i++)
        outcome = deliver_as(f, "ADT", "A01", payload, big);
    assert_int_equal(outcome, DELIVERY_RETRY);
    assert_non_null(strstr(f->detail, "high-water mark"));
    free(payload);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    for (int i = 0; i < p->n_steps; i++) {
        char buf[256];
        int n = zmq_recv(p->sock, buf, sizeof buf - 1, 0);
        if (n < 0)
            break;   /* RCVTIMEO: the test failed elsewhere */
        buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = '\0';
        snprintf(p->got[i], sizeof p->got[i], "%s", buf);
        if (p->steps[i].delay_ms)
            usleep((useconds_t)p->steps[i].delay_ms * 1000);
        zmq_send(p->sock, p->steps[i].reply, strlen(p->steps[i].reply), 0);
        atomic_fetch_add(&p->answered, 1);
    }
    zmq_close(p->sock);
    return NULL;
}

/* A REP peer bound on a free port that answers as steps say. */
static void start_peer(struct fixture *f, const struct step *steps, int n)
{
    struct peer *p = &f->peer;
    int zero = 0, timeout = 10000;
    assert_true(n <= MAX_STEPS);
    memcpy(p->steps, steps, (size_t)n * sizeof *steps);
    p->n_steps = n;
    assert_non_null(p->sock = zmq_socket(f->zctx, ZMQ_REP));
    assert_int_equal(zmq_setsockopt(p->sock, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(p->sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    bind_any_tcp(f, p->sock);
    assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void test_req_ok(void **state)
{
    struct fixture *f = *state;
    const struct step steps[] = { { 0, "OK" }, { 0, "OK AA C2" } };
    start_peer(f, steps, 2);
    f->o.mode = ZMQ_DEST_REQ;
    f->o.bind = false;
    start(f);
    assert_int_equal(deliver(f, "MSH|one"), DELIVERY_OK);
    assert_int_equal(deliver(f, "MSH|two"), DELIVERY_OK);
    assert_non_null(strstr(f->detail, "OK AA C2"));
    pthread_join(f->peer.thread, NULL);
    f->peer.thread = 0;
    assert_string_equal(f->peer.got[0], "MSH|one");
    assert_string_equal(f->peer.got[1], "MSH|two");
    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    assert_int_equal(st.messages, 2);
}

static void test_req_refused(void **state)
{
    struct fixture *f = *state;
    const struct step steps[] = { { 0, "ERR unknown patient" }, { 0, "what?" },
                                  { 0, "ERR unknown patient" } };
    start_peer(f, steps, 3);
    f->o.mode = ZMQ_DEST_REQ;
    f->o.bind = false;
    start(f);
    assert_int_equal(deliver(f, "MSH|one"), DELIVERY_RETRY);   /* on_error_ack retry */
    assert_non_null(strstr(f->detail, "unknown patient"));
    assert_int_equal(deliver(f, "MSH|two"), DELIVERY_RETRY);   /* neither OK nor ERR */
    assert_non_null(strstr(f->detail, "what?"));

    free_adapter(f);
    f->dst.on_error_ack = CONFIG_ON_ERROR_DEAD_LETTER;
    start(f);
    assert_int_equal(deliver(f, "MSH|three"), DELIVERY_PERMANENT);
    assert_non_null(strstr(f->detail, "unknown patient"));
}

/* No reply in time: retry, with a new socket that works; the late reply
 * to the old one is not taken for the next delivery's. */
static void test_req_timeout(void **state)
{
    struct fixture *f = *state;
    const struct step steps[] = { { 600, "ERR too late" }, { 0, "OK" } };
    start_peer(f, steps, 2);
    f->o.mode = ZMQ_DEST_REQ;
    f->o.bind = false;
    f->dst.ack_timeout_ms = 150;
    f->dst.on_error_ack = CONFIG_ON_ERROR_DEAD_LETTER;
    start(f);
    assert_int_equal(deliver(f, "MSH|one"), DELIVERY_RETRY);
    assert_non_null(strstr(f->detail, "no reply within 150 ms"));
    for (int i = 0; i < 500 && atomic_load(&f->peer.answered) < 1; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&f->peer.answered), 1);
    assert_int_equal(deliver(f, "MSH|two"), DELIVERY_OK);
    pthread_join(f->peer.thread, NULL);
    f->peer.thread = 0;
    assert_string_equal(f->peer.got[1], "MSH|two");
}

/* The type serves sources too (test_zmq_source.c); one without its
 * settings is refused, and stopping it never started is harmless. */
static void test_source_without_settings(void **state)
{
    struct fixture *f = *state;
    struct adapter a = { .type = &zmq_adapter, .name = "in", .role = ADAPTER_SOURCE };
    char err[256] = "";
    a.state = calloc(1, zmq_adapter.state_size);
    assert_int_not_equal(zmq_adapter.configure(&a, err, sizeof err), 0);
    assert_non_null(strstr(err, "source"));
    zmq_adapter.stop(&a);   /* never started */
    free(a.state);
    (void)f;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pub_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pub_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pub_hwm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_req_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_without_settings, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
