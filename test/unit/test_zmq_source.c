/*
 * test_zmq_source.c: the zmq source. Its pure helpers (where a ROUTER
 * request's body starts, the peer recorded), its settings through the
 * real config loader, and the adapter on a real event loop with the real
 * ingest and a store in a temporary directory, against REQ and DEALER
 * sockets over ipc:// driven from the loop's thread: answers after the
 * commit, several requests in flight on ROUTER, a stop with a request
 * outstanding (its late reply must find nothing freed), drain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <zmq.h>

#include "../../adapters/zmq_int.h"
#include "adapter.h"
#include "adapter_config.h"
#include "config.h"
#include "ingest.h"
#include "log.h"
#include "store.h"

#define MSG(id) \
    "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|" id "|P|2.4\r" \
    "PID|1||9990000018^^^NHS^NH||SMITH^JOHN\r"

/* ---------------------------------------------------------- pure helpers */

static void test_body_at(void **state)
{
    (void)state;
    size_t req[] = { 5, 0, 100 };            /* REQ: id, delimiter, body */
    assert_int_equal(zmq_source_body_at(req, 3), 2);
    size_t dealer[] = { 5, 100 };            /* DEALER without the delimiter */
    assert_int_equal(zmq_source_body_at(dealer, 2), 1);
    size_t proxy[] = { 5, 7, 0, 100 };       /* a hop through a proxy */
    assert_int_equal(zmq_source_body_at(proxy, 4), 3);
    size_t two[] = { 5, 0, 100, 200 };       /* a two-frame body */
    assert_int_equal(zmq_source_body_at(two, 4), 2);
    size_t empty_body[] = { 5, 0 };          /* the delimiter and nothing */
    assert_int_equal(zmq_source_body_at(empty_body, 2), 2);
    size_t id_only[] = { 5 };
    assert_int_equal(zmq_source_body_at(id_only, 1), 1);
    assert_int_equal(zmq_source_body_at(NULL, 0), 0);
    size_t body_empty_first[] = { 5, 0, 0 }; /* an empty body after the delimiter */
    assert_int_equal(zmq_source_body_at(body_empty_first, 3), 2);
}

static void test_peer(void **state)
{
    (void)state;
    char out[ZMQ_SOURCE_PEER_MAX];
    zmq_source_peer(out, sizeof out, "127.0.0.1", NULL, 0);
    assert_string_equal(out, "127.0.0.1");
    const unsigned char id[] = { 0x00, 0x6b, 0x8b, 0x45, 0x67 };
    zmq_source_peer(out, sizeof out, "127.0.0.1", id, sizeof id);
    assert_string_equal(out, "127.0.0.1 id=006b8b4567");
    unsigned char big[255];
    memset(big, 0xab, sizeof big);
    zmq_source_peer(out, sizeof out, "10.0.0.1", big, sizeof big);
    assert_int_equal(strlen(out), strlen("10.0.0.1 id=") + 2 * ZMQ_SOURCE_ID_SHOWN + 2);
    assert_string_equal(out + strlen(out) - 4, "ab..");
    char tiny[8];
    zmq_source_peer(tiny, sizeof tiny, "127.0.0.1", id, sizeof id);
    assert_int_equal(strlen(tiny), 7);   /* cut, terminated */
    zmq_source_peer(tiny, sizeof tiny, "1.2", id, sizeof id);
    assert_true(strlen(tiny) < sizeof tiny);
    assert_memory_equal(tiny, "1.2 id=", 7);
    zmq_source_peer(out, sizeof out, NULL, NULL, 0);
    assert_string_equal(out, "");
}

/* ------------------------------------------------------------- settings */

static int load_text(const char *text, struct config *cfg)
{
    char path[] = "/tmp/hl7-zmq-conf.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    struct config_errors errs = { 0 };
    int rc = config_load(path, cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_message("# %s\n", errs.v[i].msg);
    config_errors_free(&errs);
    unlink(path);
    return rc;
}

static void test_settings(void **state)
{
    (void)state;
    struct config cfg = { 0 };
    assert_int_equal(load_text("broker = { data_dir = \"/tmp/x\"; };\n"
                               "sources = ( { name = \"z1\"; type = \"zmq\"; "
                               "endpoint = \"tcp://127.0.0.1:5560\"; },\n"
                               "  { name = \"z2\"; type = \"zmq\"; mode = \"rep\"; bind = false; "
                               "endpoint = \"ipc:///tmp/x.sock\"; max_message_bytes = 2048; "
                               "max_inflight = 8; rcvhwm = 10; } );\n",
                               &cfg),
                     CONFIG_OK);
    const struct zmq_source_opts *a = cfg.sources[0].opts, *b = cfg.sources[1].opts;
    assert_string_equal(a->endpoint, "tcp://127.0.0.1:5560");
    assert_int_equal(a->mode, ZMQ_SRC_ROUTER);
    assert_true(a->bind);
    assert_int_equal(a->max_message_bytes, 4194304);
    assert_int_equal(a->max_inflight, 256);
    assert_int_equal(a->rcvhwm, 1000);
    assert_int_equal(b->mode, ZMQ_SRC_REP);
    assert_false(b->bind);
    assert_int_equal(b->max_message_bytes, 2048);
    assert_int_equal(b->max_inflight, 8);
    assert_int_equal(b->rcvhwm, 10);
    config_free(&cfg);

    assert_int_equal(load_text("broker = { data_dir = \"/tmp/x\"; };\n"
                               "sources = ( { name = \"z\"; type = \"zmq\"; mode = \"pull\"; "
                               "endpoint = \"tcp://127.0.0.1:5560\"; } );\n", &cfg),
                     CONFIG_E_INVALID);
    config_free(&cfg);
    assert_int_equal(load_text("broker = { data_dir = \"/tmp/x\"; };\n"
                               "sources = ( { name = \"z\"; type = \"zmq\"; "
                               "endpoint = \"127.0.0.1:5560\"; } );\n", &cfg),
                     CONFIG_E_INVALID);
    config_free(&cfg);
    assert_int_equal(load_text("broker = { data_dir = \"/tmp/x\"; };\n"
                               "sources = ( { name = \"z\"; type = \"zmq\"; } );\n", &cfg),
                     CONFIG_E_INVALID);
    config_free(&cfg);
}

/* ------------------------------------------------------- on a real loop */

struct fixture {
    char                   dir[64];
    char                   endpoint[128];
    struct event_base     *base;
    struct store          *store;
    struct ingest         *ingest;
    struct adapter        *a;
    FILE                  *log;
    void                  *zctx;     /* the clients' */
    void                  *cl[4];
    struct event          *tick;
    struct event          *guard;
    bool                   timed_out;
    int                    want;     /* answers to wait for */
    int                    got;
    char                   ans[8][512];
    struct zmq_source_opts o;
    struct config_source   src;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

extern const struct adapter_type zmq_adapter;

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hl7-zmqsrc-test.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char detail[256];
    struct store_opts so = { .dir = f->dir };
    if (!(f->base = event_base_new()) || store_open(&so, &f->store, detail, sizeof detail) ||
        ingest_new(f->base, f->store, &f->ingest) || !(f->log = tmpfile()) ||
        !(f->zctx = zmq_ctx_new()))
        return -1;
    log_set_fd(fileno(f->log));
    log_set_level(LOG_LEVEL_INFO);
    snprintf(f->endpoint, sizeof f->endpoint, "ipc://%s/in.sock", f->dir);
    f->o = (struct zmq_source_opts){ .endpoint = f->endpoint, .mode = ZMQ_SRC_ROUTER,
                                     .bind = true, .max_message_bytes = 1024,
                                     .max_inflight = 16, .rcvhwm = 1000 };
    f->src = (struct config_source){ .name = "zsrc", .type = "zmq", .opts = &f->o };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
    ingest_flush(f->ingest);
    for (int i = 0; i < 4; i++)
        if (f->cl[i])
            zmq_close(f->cl[i]);
    zmq_ctx_term(f->zctx);
    if (f->tick)
        event_free(f->tick);
    if (f->guard)
        event_free(f->guard);
    ingest_free(f->ingest);
    store_close(f->store);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start(struct fixture *f)
{
    char err[512] = "";
    f->a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    if (!f->a || zmq_adapter.start(f->a, err, sizeof err))
        fail_msg("zmq source: %s", err);
}

static void *client(struct fixture *f, int i, int type)
{
    int zero = 0;
    f->cl[i] = zmq_socket(f->zctx, type);
    assert_non_null(f->cl[i]);
    zmq_setsockopt(f->cl[i], ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(f->cl[i], f->endpoint), 0);
    return f->cl[i];
}

/* Collect answers from every client socket (the last frame of each). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)fd, (void)what;
    for (int i = 0; i < 4; i++) {
        while (f->cl[i]) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, f->cl[i], ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            bool last = !zmq_msg_more(&m);
            if (last && f->got < 8)
                snprintf(f->ans[f->got++], sizeof f->ans[0], "%.*s", (int)zmq_msg_size(&m),
                         (const char *)zmq_msg_data(&m));
            zmq_msg_close(&m);
        }
    }
    if (f->got >= f->want)
        event_base_loopbreak(f->base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)fd, (void)what;
    f->timed_out = true;
    event_base_loopbreak(f->base);
}

/* Run the loop until want answers arrived in all (or ms passed). */
static void run_until(struct fixture *f, int want, int ms)
{
    struct timeval every = { 0, 5000 }, limit = { ms / 1000, (ms % 1000) * 1000 };
    f->want = want;
    f->timed_out = false;
    if (!f->tick)
        f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, f);
    if (!f->guard)
        f->guard = evtimer_new(f->base, on_guard, f);
    event_add(f->tick, &every);
    evtimer_add(f->guard, &limit);
    event_base_dispatch(f->base);
    event_del(f->tick);
    evtimer_del(f->guard);
}

static bool has_msa(const char *ans, const char *code, const char *id)
{
    char want[128];
    snprintf(want, sizeof want, "\rMSA|%s|%s", code, id);
    return strstr(ans, want) != NULL;
}

static void test_router_answers(void **state)
{
    struct fixture *f = *state;
    start(f);
    void *req = client(f, 0, ZMQ_REQ);
    void *dealer = client(f, 1, ZMQ_DEALER);
    assert_int_equal(zmq_send(req, MSG("R-1"), strlen(MSG("R-1")), 0), (int)strlen(MSG("R-1")));
    /* a DEALER pipelines three, with the delimiter a REQ would put */
    const char *ids[] = { MSG("D-1"), MSG("D-2"), MSG("D-3") };
    for (int i = 0; i < 3; i++) {
        zmq_send(dealer, "", 0, ZMQ_SNDMORE);
        zmq_send(dealer, ids[i], strlen(ids[i]), 0);
    }
    run_until(f, 4, 5000);
    assert_false(f->timed_out);
    assert_int_equal(f->got, 4);
    int seen = 0;
    for (int i = 0; i < 4; i++) {
        seen |= has_msa(f->ans[i], "AA", "R-1") ? 1 : 0;
        seen |= has_msa(f->ans[i], "AA", "D-1") ? 2 : 0;
        seen |= has_msa(f->ans[i], "AA", "D-2") ? 4 : 0;
        seen |= has_msa(f->ans[i], "AA", "D-3") ? 8 : 0;
    }
    assert_int_equal(seen, 15);
    assert_false(zmq_adapter.busy(f->a));
    struct ingest_stats st;
    ingest_get_stats(f->ingest, &st);
    assert_int_equal(st.accepted, 4);
    struct adapter_stats as;
    zmq_adapter.stats(f->a, &as);
    assert_int_equal(as.messages, 4);
}

static void test_refusals(void **state)
{
    struct fixture *f = *state;
    f->o.mode = ZMQ_SRC_REP;
    start(f);
    void *req = client(f, 0, ZMQ_REQ);
    /* two frames */
    zmq_send(req, MSG("TWO"), strlen(MSG("TWO")), ZMQ_SNDMORE);
    zmq_send(req, "PID|2\r", 6, 0);
    run_until(f, 1, 5000);
    assert_int_equal(f->got, 1);
    assert_true(has_msa(f->ans[0], "AR", "TWO"));
    assert_non_null(strstr(f->ans[0], "2 ZeroMQ frames"));
    /* over max_message_bytes (1024), under the ceiling */
    char big[2048];
    size_t n = (size_t)snprintf(big, sizeof big, "%sNTE|1||", MSG("BIG"));
    memset(big + n, 'x', sizeof big - n - 1);
    big[sizeof big - 1] = '\r';
    zmq_send(req, big, sizeof big, 0);
    run_until(f, 2, 5000);
    assert_int_equal(f->got, 2);
    assert_true(has_msa(f->ans[1], "AR", "BIG"));
    assert_non_null(strstr(f->ans[1], "max_message_bytes of 1024"));
    /* more frames than are kept (ZMQ_SOURCE_MAX_FRAMES): counted, refused */
    for (int i = 0; i < ZMQ_SOURCE_MAX_FRAMES + 6; i++)
        zmq_send(req, i ? "PID|1\r" : MSG("MANY"), i ? 6 : strlen(MSG("MANY")),
                 i < ZMQ_SOURCE_MAX_FRAMES + 5 ? ZMQ_SNDMORE : 0);
    run_until(f, 3, 5000);
    assert_int_equal(f->got, 3);
    assert_true(has_msa(f->ans[2], "AR", "MANY"));
    assert_non_null(strstr(f->ans[2], "70 ZeroMQ frames"));
    /* an empty body */
    zmq_send(req, "", 0, 0);
    run_until(f, 4, 5000);
    assert_int_equal(f->got, 4);
    assert_non_null(strstr(f->ans[3], "\rMSA|AR|"));
}

/* Stopped with a request submitted and not yet committed: the reply
 * comes after the state is gone and must touch nothing of it. */
static void test_stop_outstanding(void **state)
{
    struct fixture *f = *state;
    start(f);
    void *req = client(f, 0, ZMQ_REQ);
    zmq_send(req, MSG("S-1"), strlen(MSG("S-1")), 0);
    for (int i = 0; i < 200 && !zmq_adapter.busy(f->a); i++) {
        usleep(5000);
        event_base_loop(f->base, EVLOOP_NONBLOCK | EVLOOP_ONCE);
    }
    /* taken, maybe committed already; if not, stop with it outstanding */
    assert_true(zmq_adapter.busy(f->a) || ingest_pending(f->ingest) == 0);
    adapter_free(f->a);
    f->a = NULL;
    ingest_flush(f->ingest);   /* the reply to a stopped source */
    struct ingest_stats st;
    ingest_get_stats(f->ingest, &st);
    assert_int_equal(st.accepted, 1);
}

static void test_drain(void **state)
{
    struct fixture *f = *state;
    start(f);
    void *req = client(f, 0, ZMQ_REQ);
    zmq_send(req, MSG("B-1"), strlen(MSG("B-1")), 0);
    run_until(f, 1, 5000);
    assert_int_equal(f->got, 1);
    zmq_adapter.drain(f->a);
    zmq_send(req, MSG("B-2"), strlen(MSG("B-2")), 0);
    run_until(f, 2, 300);   /* draining: not read, not answered */
    assert_true(f->timed_out);
    assert_int_equal(f->got, 1);
    assert_false(zmq_adapter.busy(f->a));
    struct ingest_stats st;
    ingest_get_stats(f->ingest, &st);
    assert_int_equal(st.accepted, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_at),
        cmocka_unit_test(test_peer),
        cmocka_unit_test(test_settings),
        cmocka_unit_test_setup_teardown(test_router_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
