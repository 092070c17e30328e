/*
 * test_delivery.c: the delivery engine on a real event loop and a temp
 * store, with a fake destination adapter type whose behaviour each test
 * scripts: OK, RETRY n times then OK, PERMANENT; reported synchronously
 * from send() or from a timer. The test_threaded_* tests run the engine
 * with its sending side on a thread of its own (delivery_opts.threaded):
 * the fake then runs on that thread and records under sent_lock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "adapter.h"
#include "config.h"
#include "delivery.h"
#include "ingest.h"
#include "store.h"

/* ------------------------------------------------------------ the fake */

enum behaviour { B_OK, B_RETRY_THEN_OK, B_PERMANENT };

struct sent {
    char     dest[16];
    char     ctrl[16];
    uint64_t seq;
    unsigned attempt;
    uint64_t at_ms;
};

struct script {
    enum behaviour b;
    int            fails;
    bool           refuse;      /* send() returns -1 without reporting */       /* B_RETRY_THEN_OK: RETRY this many times per message */
    bool           async;       /* report from a 0 ms timer */
    bool           hold;        /* never report (a delivery stays in flight) */
};

#define MAX_SENT 256
static struct sent sent[MAX_SENT];
static int n_sent;
static struct script scripts[2];   /* by destination: "a", "b" */
static pthread_mutex_t sent_lock = PTHREAD_MUTEX_INITIALIZER;

static int sent_count(void)
{
    pthread_mutex_lock(&sent_lock);
    int n = n_sent;
    pthread_mutex_unlock(&sent_lock);
    return n;
}

struct fake_state {
    struct event          *ev;
    const struct delivery *d;
    enum delivery_outcome  o;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void fake_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct adapter *a = arg;
    struct fake_state *st = a->state;
    delivery_report(a, st->d, st->o, st->o == DELIVERY_OK ? "AA" : "fake failure");
}

static int fake_configure(struct adapter *a, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct fake_state *st = a->state;
    st->ev = evtimer_new(a->base, fake_fire, a);
    return st->ev ? 0 : -1;
}

static int fake_send(struct adapter *a, const struct delivery *d)
{
    struct fake_state *st = a->state;
    struct script *sc = &scripts[a->name[0] == 'b'];
    pthread_mutex_lock(&sent_lock);
    assert_true(n_sent < MAX_SENT);
    struct sent *s = &sent[n_sent];
    snprintf(s->dest, sizeof s->dest, "%s", a->name);
    snprintf(s->ctrl, sizeof s->ctrl, "%s", d->control_id);
    s->seq = d->seq;
    s->attempt = d->attempt;
    s->at_ms = now_ms();
    n_sent++;
    pthread_mutex_unlock(&sent_lock);
    assert_string_equal(d->payload_control_id, d->control_id);
    if (sc->refuse)
        return -1;
    if (sc->hold)
        return 0;
    enum delivery_outcome o = DELIVERY_OK;
    if (sc->b == B_PERMANENT)
        o = DELIVERY_PERMANENT;
    else if (sc->b == B_RETRY_THEN_OK && (int)d->attempt <= sc->fails)
        o = DELIVERY_RETRY;
    if (sc->async) {
        st->d = d;
        st->o = o;
        struct timeval tv = { 0, 0 };
        evtimer_add(st->ev, &tv);
    } else {
        delivery_report(a, d, o, o == DELIVERY_OK ? "AA" : "fake failure");
    }
    return 0;
}

static void fake_stop(struct adapter *a)
{
    struct fake_state *st = a->state;
    if (st->ev)
        event_free(st->ev);
    st->ev = NULL;
}

static const struct adapter_type fake_type = {
    .name = "fake", .roles = ADAPTER_DESTINATION, .state_size = sizeof(struct fake_state),
    .configure = fake_configure, .send = fake_send, .stop = fake_stop,
};

/* ------------------------------------------------------------ fixtures */

struct fx {
    char                      base_dir[64];
    char                      dir[96];
    struct store             *s;
    struct event_base        *base;
    struct delivery_engine   *e;
    struct config_destination dests[2];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->base_dir, "/tmp/hl7deliv-XXXXXX");
    if (!mkdtemp(f->base_dir))
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/data", f->base_dir);
    struct store_opts o = { .dir = f->dir };
    if (store_open(&o, &f->s, NULL, 0) || !(f->base = event_base_new()))
        return -1;
    const char *names[2] = { "a", "b" };
    for (int i = 0; i < 2; i++)
        f->dests[i] = (struct config_destination){
            .name = (char *)names[i], .type = (char *)"fake", .ack_timeout_ms = 1000,
            .retry = { .initial_ms = 5, .max_ms = 40, .max_attempts = 0 },
        };
    memset(scripts, 0, sizeof scripts);
    n_sent = 0;
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    delivery_free(f->e);
    store_close(f->s);
    event_base_free(f->base);
    int rc = nftw(f->base_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void start_mode(struct fx *f, size_t n, bool threaded)
{
    struct delivery_opts o = { .base = f->base, .store = f->s, .dests = f->dests,
                               .n_dests = n, .type = &fake_type, .seed = 42,
                               .threaded = threaded };
    char err[256] = "";
    int rc = delivery_new(&o, &f->e, err, sizeof err);
    if (rc)
        fail_msg("delivery_new: %s", err);
}

static void start(struct fx *f, size_t n)
{
    start_mode(f, n, false);
}

static void start_threaded(struct fx *f, size_t n)
{
    start_mode(f, n, true);
}

static void enqueue(struct fx *f, const char *dest, const char *ctrl)
{
    struct store_txn *t;
    char payload[128];
    snprintf(payload, sizeof payload, "MSH|^~\\&|A|B|C|D|20250101||ADT^A01|%s|P|2.4\r", ctrl);
    struct store_msg m = { .received_ms = now_ms(), .state = STORE_MSG_ROUTED,
                           .source = "pas", .code = "ADT", .trigger = "A01",
                           .control_id = ctrl, .raw = payload, .raw_len = strlen(payload) };
    uint64_t id;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, &id), 0);
    assert_int_equal(store_enqueue(t, dest, id, payload, strlen(payload), NULL), 0);
    assert_int_equal(store_commit(t), 0);
}

static uint64_t depth(struct fx *f, const char *dest)
{
    struct delivery_dest_stats st;
    uint64_t n;
    assert_int_equal(delivery_get_stats(f->e, dest, &st), 0);
    assert_int_equal(store_outbox_depth(f->s, st.dest_id, &n, NULL), 0);
    return n;
}

static uint64_t depth_id(struct fx *f, uint32_t id)
{
    uint64_t n;
    assert_int_equal(store_outbox_depth(f->s, id, &n, NULL), 0);
    return n;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* Run the loop until cond holds or ms pass; returns cond. */
static bool run_until(struct fx *f, int ms, bool (*cond)(struct fx *))
{
    struct event *t = event_new(f->base, -1, EV_PERSIST, tick, NULL);
    struct timeval tv = { 0, 2000 };
    event_add(t, &tv);
    uint64_t end = now_ms() + (uint64_t)ms;
    bool ok;
    while (!(ok = cond(f)) && now_ms() < end)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(t);
    return ok;
}

static int want_sent;
static bool sent_reached(struct fx *f)
{
    (void)f;
    return sent_count() >= want_sent;
}

/* Threaded: wait for n sends without running the main loop (nothing is
 * written meanwhile). */
static bool wait_sent(int n, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (sent_count() < n && now_ms() < end)
        usleep(1000);
    return sent_count() >= n;
}

static bool a_empty(struct fx *f)
{
    return depth(f, "a") == 0;
}

static bool b_empty(struct fx *f)
{
    return depth(f, "b") == 0;
}

/* ------------------------------------------------------------ tests */

static void test_fifo_ok(void **state)
{
    struct fx *f = *state;
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    enqueue(f, "a", "M3");
    delivery_kick(f->e);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, 3);
    const char *want[] = { "M1", "M2", "M3" };
    for (int i = 0; i < 3; i++) {
        assert_string_equal(sent[i].ctrl, want[i]);
        assert_int_equal(sent[i].attempt, 1);
    }
    uint64_t payloads;
    assert_int_equal(store_count(f->s, "payloads", &payloads), 0);
    assert_int_equal(payloads, 3);
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.delivered, 3);
}

static void test_retry_keeps_order_and_backoff_bounds(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 4, .async = true };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    assert_true(run_until(f, 5000, a_empty));
    /* M1 tried 5 times (4 retries), then M2 5 times: never interleaved */
    assert_int_equal(n_sent, 10);
    for (int i = 0; i < 10; i++) {
        assert_string_equal(sent[i].ctrl, i < 5 ? "M1" : "M2");
        assert_int_equal(sent[i].attempt, (unsigned)(i % 5) + 1);
    }
    /* the wait after failure k is in [initial, min(max, initial * 2^(k-1))],
       give or take the timer's granularity */
    for (int i = 1; i < 5; i++) {
        uint64_t gap = sent[i].at_ms - sent[i - 1].at_ms;
        uint64_t cap = 5ull << (i - 1);
        if (cap > 40)
            cap = 40;
        assert_true(gap + 1 >= 5);
        assert_true(gap <= cap + 100);
    }
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.retried, 8);
    assert_int_equal(st.delivered, 2);
}

static void test_max_attempts_dead_letters(void **state)
{
    struct fx *f = *state;
    f->dests[0].retry.max_attempts = 3;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 100 };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    assert_true(run_until(f, 3000, a_empty));
    assert_int_equal(n_sent, 6);
    assert_string_equal(sent[2].ctrl, "M1");
    assert_int_equal(sent[2].attempt, 3);
    assert_string_equal(sent[3].ctrl, "M2");
    uint64_t dead;
    assert_int_equal(store_count(f->s, "dead", &dead), 0);
    assert_int_equal(dead, 2);
}

static void test_permanent_dead_letters(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_PERMANENT, .async = true };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, 2);
    assert_int_equal(sent[0].attempt, 1);
    assert_int_equal(sent[1].attempt, 1);
    uint64_t dead;
    assert_int_equal(store_count(f->s, "dead", &dead), 0);
    assert_int_equal(dead, 2);
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.dead_lettered, 2);
}

static void test_pause_resume(void **state)
{
    struct fx *f = *state;
    f->dests[0].paused = true;
    enqueue(f, "a", "M1");
    start(f, 1);
    delivery_kick(f->e);
    want_sent = 1;
    assert_false(run_until(f, 100, sent_reached));
    assert_int_equal(delivery_resume(f->e, "a"), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, 1);
    assert_int_equal(delivery_pause(f->e, "a"), 0);
    enqueue(f, "a", "M2");
    delivery_kick(f->e);
    want_sent = 2;
    assert_false(run_until(f, 100, sent_reached));
    assert_int_equal(delivery_resume(f->e, "a"), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_string_equal(sent[1].ctrl, "M2");
    assert_int_equal(delivery_pause(f->e, "nope"), DELIVERY_E_NOT_FOUND);
}

static void test_destinations_independent(void **state)
{
    struct fx *f = *state;
    f->dests[0].retry.initial_ms = 1000;   /* a's head waits a long time */
    f->dests[0].retry.max_ms = 1000;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 100 };
    scripts[1] = (struct script){ .b = B_OK, .async = true };
    enqueue(f, "a", "A1");
    enqueue(f, "a", "A2");
    enqueue(f, "b", "B1");
    enqueue(f, "b", "B2");
    start(f, 2);
    assert_true(run_until(f, 2000, b_empty));
    assert_int_equal(depth(f, "a"), 2);
    int na = 0;
    for (int i = 0; i < n_sent; i++)
        if (strcmp(sent[i].dest, "a") == 0) {
            assert_string_equal(sent[i].ctrl, "A1");
            na++;
        }
    assert_int_equal(na, 1);
}

static void test_restart_resumes(void **state)
{
    struct fx *f = *state;
    f->dests[0].retry.initial_ms = 5;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 100 };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    want_sent = 2;
    assert_true(run_until(f, 2000, sent_reached));
    /* let the second failure's outcome be written */
    delivery_flush(f->e);
    delivery_free(f->e);
    f->e = NULL;
    store_close(f->s);
    struct store_opts o = { .dir = f->dir };
    assert_int_equal(store_open(&o, &f->s, NULL, 0), 0);
    int before = n_sent;
    scripts[0] = (struct script){ .b = B_OK };
    start(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, before + 2);
    assert_string_equal(sent[before].ctrl, "M1");
    assert_int_equal(sent[before].attempt, (unsigned)before + 1);
    assert_string_equal(sent[before + 1].ctrl, "M2");
    assert_int_equal(sent[before + 1].attempt, 1);
}

/* The wait after a failure is stored: with 5 attempts already made (as
 * left by an earlier run), the 6th failure waits uniform in
 * [initial, min(max, initial * 2^5)]. */
static void test_backoff_stored(void **state)
{
    struct fx *f = *state;
    f->dests[0].retry.initial_ms = 100;
    f->dests[0].retry.max_ms = 100000;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 100 };
    enqueue(f, "a", "M1");
    struct store_txn *t;
    uint32_t id;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_dest_id(t, "a", &id), 0);
    assert_int_equal(store_outbox_retry(t, id, 1, 5, 0, "earlier"), 0);
    assert_int_equal(store_commit(t), 0);
    start(f, 1);
    want_sent = 1;
    assert_true(run_until(f, 2000, sent_reached));
    assert_int_equal(sent[0].attempt, 6);
    assert_int_equal(delivery_flush(f->e), 0);
    struct store_outbox_entry e;
    void *owner;
    assert_int_equal(store_outbox_first(f->s, id, 0, &e, &owner), 0);
    assert_int_equal(e.attempts, 6);
    assert_string_equal(e.last_error, "fake failure");
    uint64_t wait = e.next_attempt_ms - sent[0].at_ms;
    assert_true(wait + 1 >= 100);
    assert_true(wait <= 3200 + 50);
    free(owner);
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.next_attempt_ms, e.next_attempt_ms);
    assert_false(st.in_flight);
}

static void on_reply(void *ctx, const struct ingest_reply *r)
{
    (void)r;
    (*(int *)ctx)++;
}

/* An ingest commit kicks the engine: an idle destination looks again. */
static void test_ingest_commit_kicks(void **state)
{
    struct fx *f = *state;
    struct ingest *in;
    assert_int_equal(ingest_new(f->base, f->s, &in), 0);
    start(f, 1);
    delivery_attach_ingest(f->e, in);
    enqueue(f, "a", "M1");   /* behind the engine's back: no kick */
    want_sent = 1;
    assert_false(run_until(f, 50, sent_reached));
    static const char msg[] =
        "MSH|^~\\&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01|X1|P|2.4\r"
        "PID|1||9434765919^^^NHS^NH||SMITH^JOHN\r";
    struct ingest_origin o = { "pas", "127.0.0.1:5000", NULL };
    int replies = 0;
    assert_int_equal(ingest_submit(in, &o, NULL, msg, strlen(msg), on_reply, &replies), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(replies, 1);
    assert_string_equal(sent[0].ctrl, "M1");
    delivery_free(f->e);   /* first: it detaches itself from in */
    f->e = NULL;
    ingest_free(in);
}

/* Outcomes join the next ingest commit: no commit of the engine's own. */
static void test_outcomes_join_ingest_commit(void **state)
{
    struct fx *f = *state;
    struct ingest *in;
    assert_int_equal(ingest_new(f->base, f->s, &in), 0);
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    enqueue(f, "a", "M3");
    start(f, 1);
    delivery_attach_ingest(f->e, in);
    assert_int_equal(n_sent, 1);   /* the first, from delivery_new */
    static const char msg[] =
        "MSH|^~\\&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01|X1|P|2.4\r"
        "PID|1||9434765919^^^NHS^NH||SMITH^JOHN\r";
    struct ingest_origin o = { "pas", "127.0.0.1:5000", NULL };
    int replies = 0;
    want_sent = 3;
    assert_true(run_until(f, 2000, sent_reached));
    /* all three sent, none written yet: the outbox still holds them */
    assert_int_equal(depth(f, "a"), 3);
    assert_int_equal(ingest_submit(in, &o, NULL, msg, strlen(msg), on_reply, &replies), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(replies, 1);
    struct delivery_engine_stats es;
    delivery_get_engine_stats(f->e, &es);
    assert_int_equal(es.own_commits, 0);
    assert_int_equal(es.joined_commits, 1);
    assert_int_equal(es.outcomes_written, 3);
    delivery_free(f->e);   /* first: it detaches itself from in */
    f->e = NULL;
    ingest_free(in);
}

/* With no ingest commit to join, the engine writes a batch of its own
 * shortly after: one commit for many outcomes. */
static void test_outcomes_own_commit_batches(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 50; i++) {
        char ctrl[16];
        snprintf(ctrl, sizeof ctrl, "M%d", i + 1);
        enqueue(f, "a", ctrl);
    }
    start(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, 50);
    for (int i = 0; i < 50; i++) {
        char ctrl[16];
        snprintf(ctrl, sizeof ctrl, "M%d", i + 1);
        assert_string_equal(sent[i].ctrl, ctrl);
    }
    struct delivery_engine_stats es;
    delivery_get_engine_stats(f->e, &es);
    assert_int_equal(es.outcomes_written, 50);
    assert_true(es.own_commits >= 1 && es.own_commits <= 3);
}

/* After everything is written the outbox may empty and seqs start again
 * low: the engine must still find the new entries. */
static void test_seq_restart_after_empty(void **state)
{
    struct fx *f = *state;
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    enqueue(f, "a", "M3");   /* seq 1 again: the outbox was empty */
    delivery_kick(f->e);
    want_sent = 3;
    assert_true(run_until(f, 2000, sent_reached));
    assert_true(run_until(f, 2000, a_empty));
    assert_string_equal(sent[2].ctrl, "M3");
}

/* send() failing to start counts as a retryable failure. */
static void test_send_refused_is_retry(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_OK, .refuse = true };
    enqueue(f, "a", "M1");
    start(f, 1);
    want_sent = 2;
    assert_true(run_until(f, 2000, sent_reached));
    scripts[0].refuse = false;
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(sent[1].attempt, 2);
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_true(st.retried >= 1);
    assert_int_equal(st.delivered, 1);
}

/* A delivery in flight when the engine stops is sent again next time, as
 * the same attempt: nothing was recorded for it (at-least-once). */
static void test_in_flight_at_stop_is_resent(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_OK, .async = true };
    enqueue(f, "a", "M1");
    start(f, 1);
    assert_int_equal(n_sent, 1);        /* sent from delivery_new, report pending */
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_true(st.in_flight);
    delivery_free(f->e);
    f->e = NULL;
    assert_int_equal(depth_id(f, st.dest_id), 1);
    start(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(n_sent, 2);
    assert_string_equal(sent[1].ctrl, "M1");
    assert_int_equal(sent[1].attempt, 1);
}

/* ------------------------------------------------------------ threaded */

/* Many messages to two destinations, one reporting from send(), one from
 * a timer: each destination's order kept, every outcome written. */
static void test_threaded_fifo(void **state)
{
    struct fx *f = *state;
    scripts[1] = (struct script){ .b = B_OK, .async = true };
    for (int i = 0; i < 60; i++) {
        char ctrl[16];
        snprintf(ctrl, sizeof ctrl, "A%d", i + 1);
        enqueue(f, "a", ctrl);
        snprintf(ctrl, sizeof ctrl, "B%d", i + 1);
        enqueue(f, "b", ctrl);
    }
    start_threaded(f, 2);
    for (int i = 0; i < 40; i++) {     /* more while it runs */
        char ctrl[16];
        snprintf(ctrl, sizeof ctrl, "A%d", i + 61);
        enqueue(f, "a", ctrl);
        snprintf(ctrl, sizeof ctrl, "B%d", i + 61);
        enqueue(f, "b", ctrl);
        delivery_kick(f->e);
    }
    assert_true(run_until(f, 5000, a_empty));
    assert_true(run_until(f, 5000, b_empty));
    assert_int_equal(sent_count(), 200);
    int na = 0, nb = 0;
    for (int i = 0; i < 200; i++) {
        char want[16];
        int k = sent[i].dest[0] == 'a' ? ++na : ++nb;
        snprintf(want, sizeof want, "%c%d", sent[i].dest[0] == 'a' ? 'A' : 'B', k);
        assert_string_equal(sent[i].ctrl, want);
        assert_int_equal(sent[i].attempt, 1);
    }
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.delivered, 100);
    assert_false(st.in_flight);
    struct delivery_engine_stats es;
    delivery_get_engine_stats(f->e, &es);
    assert_int_equal(es.outcomes_written, 200);
}

/* A retry waits for its write (on the main loop), then for its time, on
 * the delivery thread; the order is kept. */
static void test_threaded_retry(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 3, .async = true };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start_threaded(f, 1);
    assert_true(run_until(f, 5000, a_empty));
    assert_int_equal(sent_count(), 8);
    for (int i = 0; i < 8; i++) {
        assert_string_equal(sent[i].ctrl, i < 4 ? "M1" : "M2");
        assert_int_equal(sent[i].attempt, (unsigned)(i % 4) + 1);
        if (i % 4)   /* the backoff's lower bound */
            assert_true(sent[i].at_ms - sent[i - 1].at_ms + 1 >= 5);
    }
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_int_equal(st.retried, 6);
    assert_int_equal(st.delivered, 2);
}

/* A retry is not tried again until the main loop has written it. */
static void test_threaded_retry_waits_for_write(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 1 };
    enqueue(f, "a", "M1");
    start_threaded(f, 1);
    assert_true(wait_sent(1, 2000));
    assert_false(wait_sent(2, 100));    /* the main loop has not run */
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(sent_count(), 2);
    assert_int_equal(sent[1].attempt, 2);
}

static bool a_waiting(struct fx *f)
{
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    return st.next_attempt_ms != 0;
}

static void test_threaded_pause_resume(void **state)
{
    struct fx *f = *state;
    f->dests[0].paused = true;
    enqueue(f, "a", "M1");
    start_threaded(f, 1);
    delivery_kick(f->e);
    want_sent = 1;
    assert_false(run_until(f, 100, sent_reached));
    assert_int_equal(delivery_resume(f->e, "a"), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(sent_count(), 1);
    assert_int_equal(delivery_pause(f->e, "a"), 0);
    enqueue(f, "a", "M2");
    delivery_kick(f->e);
    want_sent = 2;
    assert_false(run_until(f, 100, sent_reached));
    assert_int_equal(delivery_resume(f->e, "a"), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_string_equal(sent[1].ctrl, "M2");

    /* paused while its head waits for a retry: it stays put */
    f->dests[0].retry.initial_ms = 300;
    scripts[0] = (struct script){ .b = B_RETRY_THEN_OK, .fails = 1 };
    enqueue(f, "a", "M3");
    delivery_kick(f->e);
    assert_true(run_until(f, 2000, a_waiting));
    assert_int_equal(delivery_pause(f->e, "a"), 0);
    assert_false(a_waiting(f));
    want_sent = 4;
    assert_false(run_until(f, 600, sent_reached));
    assert_int_equal(delivery_resume(f->e, "a"), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(sent_count(), 4);
    assert_string_equal(sent[3].ctrl, "M3");
    assert_int_equal(sent[3].attempt, 2);
    assert_int_equal(delivery_pause(f->e, "nope"), DELIVERY_E_NOT_FOUND);
}

/* The outcomes reported on the delivery thread join the next ingest
 * commit on the main loop. */
static void test_threaded_outcomes_join_ingest_commit(void **state)
{
    struct fx *f = *state;
    struct ingest *in;
    assert_int_equal(ingest_new(f->base, f->s, &in), 0);
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    enqueue(f, "a", "M3");
    start_threaded(f, 1);
    delivery_attach_ingest(f->e, in);
    /* sent on the delivery thread while the main loop does not run */
    assert_true(wait_sent(3, 2000));
    assert_int_equal(depth(f, "a"), 3);
    static const char msg[] =
        "MSH|^~\\&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01|X1|P|2.4\r"
        "PID|1||9434765919^^^NHS^NH||SMITH^JOHN\r";
    struct ingest_origin o = { "pas", "127.0.0.1:5000", NULL };
    int replies = 0;
    assert_int_equal(ingest_submit(in, &o, NULL, msg, strlen(msg), on_reply, &replies), 0);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(replies, 1);
    struct delivery_engine_stats es;
    delivery_get_engine_stats(f->e, &es);
    assert_int_equal(es.own_commits, 0);
    assert_int_equal(es.joined_commits, 1);
    assert_int_equal(es.outcomes_written, 3);
    delivery_free(f->e);   /* first: it detaches itself from in */
    f->e = NULL;
    ingest_free(in);
}

/* Freed with a delivery in flight (the thread stopped, the adapter freed
 * on the main thread): the entry is sent again next time, same attempt. */
static void test_threaded_free_in_flight(void **state)
{
    struct fx *f = *state;
    scripts[0] = (struct script){ .b = B_OK, .hold = true };
    enqueue(f, "a", "M1");
    enqueue(f, "a", "M2");
    start_threaded(f, 1);
    assert_true(wait_sent(1, 2000));
    struct delivery_dest_stats st;
    assert_int_equal(delivery_get_stats(f->e, "a", &st), 0);
    assert_true(st.in_flight);
    delivery_free(f->e);
    f->e = NULL;
    assert_int_equal(depth_id(f, st.dest_id), 2);
    scripts[0] = (struct script){ .b = B_OK, .async = true };
    start_threaded(f, 1);
    assert_true(run_until(f, 2000, a_empty));
    assert_int_equal(sent_count(), 3);
    assert_string_equal(sent[1].ctrl, "M1");
    assert_int_equal(sent[1].attempt, 1);
    assert_string_equal(sent[2].ctrl, "M2");
}

int main(void)
{
    /* before any event_base: the threaded engine wakes loops across threads */
    if (evthread_use_pthreads() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_keeps_order_and_backoff_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_max_attempts_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destinations_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_commit_kicks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcomes_join_ingest_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcomes_own_commit_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seq_restart_after_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_refused_is_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_at_stop_is_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_retry_waits_for_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_outcomes_join_ingest_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threaded_free_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
