/*
 * test_mllp_adapter.c: the MLLP source on a real event loop on 127.0.0.1,
 * with the real ingest and a store in a temporary directory. Clients run
 * in a thread of their own (blocking, with deadlines) while the test's
 * thread runs the loop; a few cases drive non-blocking sockets from the
 * loop's thread to stop at an exact moment. Covers ACKs and their order,
 * framing over the wire, oversize refusal, commit bytes, connection
 * limits, the address allow-list, frame and idle timeouts, TLS with
 * client certificates and subjects, half and abrupt closes with replies
 * outstanding, drain and stop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "buf.h"
#include "ingest.h"
#include "log.h"
#include "mllp.h"
#include "mllp_client.h"
#include "store.h"

#define CA          "conf/tls/example-ca.pem"
#define SERVER_CERT "conf/tls/example-broker.pem"
#define SERVER_KEY  "conf/tls/example-broker.key"
#define CLIENT_CERT "conf/tls/example-client.pem"
#define CLIENT_KEY  "conf/tls/example-client.key"
#define CLIENT_SUBJECT "CN=pas.rlh.example,O=hl7broker example"

struct fixture {
    char                     dir[64];
    struct event_base       *base;
    struct store            *store;
    struct ingest           *ingest;
    struct adapter          *a;
    unsigned                 port;
    FILE                    *log;
    /* the config the adapter is made from; scribbled over once it is */
    char                     name[32];
    char                     listen[64];
    char                    *allow[4];
    char                    *subjects[2];
    struct mllp_source_opts  o;
    struct config_tls_server tls;
    struct config_source     src;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hl7-mllp-test.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char detail[256];
    struct store_opts so = { .dir = f->dir };
    if (!(f->base = event_base_new()) || store_open(&so, &f->store, detail, sizeof detail) ||
        ingest_new(f->base, f->store, &f->ingest))
        return -1;
    if (!(f->log = tmpfile()))
        return -1;
    log_set_fd(fileno(f->log));
    log_set_level(LOG_LEVEL_INFO);
    snprintf(f->name, sizeof f->name, "test-src");
    f->o = (struct mllp_source_opts){
        .listen = f->listen, .max_connections = 64, .idle_timeout_ms = 0,
        .max_message_bytes = 1 << 20, .frame_timeout_ms = 30000,
    };
    f->src = (struct config_source){ .name = f->name, .type = "mllp", .opts = &f->o };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
    ingest_flush(f->ingest);   /* replies for connections already gone */
    ingest_free(f->ingest);
    store_close(f->store);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A port nothing listens on just now. */
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

/* Make and start the source from f->o, then spoil the config it came
 * from: the adapter must have copied what it needs. */
static void start(struct fixture *f)
{
    char err[512] = "";
    f->port = free_port();
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:%u", f->port);
    f->a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    if (!f->a)
        fail_msg("adapter_new_source: %s", err);
    memset(f->name, 'X', sizeof f->name - 1);
    memset(f->listen, 'X', sizeof f->listen - 1);
    for (size_t i = 0; i < f->o.allow.n; i++)
        memset(f->o.allow.v[i], 'X', strlen(f->o.allow.v[i]));
    f->o.max_connections = 0;
    f->o.max_message_bytes = 0;
    f->src.opts = NULL;
    if (f->a->type->start(f->a, err, sizeof err))
        fail_msg("start: %s", err);
}

static void set_allow(struct fixture *f, const char *a, const char *b)
{
    size_t n = 0;
    f->allow[n++] = strdup(a);
    if (b)
        f->allow[n++] = strdup(b);
    f->o.allow = (struct config_strlist){ .v = f->allow, .n = n };
}

static void free_allow(struct fixture *f)
{
    for (size_t i = 0; i < 4; i++)
        free(f->allow[i]);
}

static struct adapter_stats stats(const struct fixture *f)
{
    struct adapter_stats st;
    f->a->type->stats(f->a, &st);
    return st;
}

/* Everything logged so far. */
static char *log_text(struct fixture *f)
{
    fflush(f->log);
    long n = ftell(f->log);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    rewind(f->log);
    assert_int_equal(fread(s, 1, (size_t)n, f->log), (size_t)n);
    fseek(f->log, 0, SEEK_END);
    return s;
}

static void assert_logged(struct fixture *f, const char *what)
{
    char *s = log_text(f);
    if (!strstr(s, what))
        fail_msg("not logged: %s\nlog:\n%s", what, s);
    free(s);
}

/* ------------------------------------------------ running the loop */

static void on_break(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* Run the loop for ms milliseconds. */
static void settle(struct fixture *f, int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    struct event *t = evtimer_new(f->base, on_break, f->base);
    evtimer_add(t, &tv);
    event_base_dispatch(f->base);
    event_free(t);
}

/* Run the loop until cond(f) holds; false after ms milliseconds. */
static bool pump(struct fixture *f, bool (*cond)(struct fixture *), int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (cond(f))
            return true;
        usleep(1000);
    }
    return cond(f);
}

/* Run the loop until cond(f) holds, holding back the group commit: a
 * pipe that is always readable keeps the I/O priority busy, and libevent
 * runs a lower priority only when every higher one is idle. So messages
 * are submitted but not answered yet. False after ms. */
struct hold {
    struct fixture *f;
    bool          (*cond)(struct fixture *);
};

static void on_hold(evutil_socket_t fd, short what, void *arg)
{
    struct hold *h = arg;
    (void)fd, (void)what;
    if (h->cond(h->f))
        event_base_loopbreak(h->f->base);
}

static bool pump_holding_commit(struct fixture *f, bool (*cond)(struct fixture *), int ms)
{
    struct hold h = { f, cond };
    struct timeval limit = { ms / 1000, (ms % 1000) * 1000 };
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    struct event *spin = event_new(f->base, p[0], EV_READ | EV_PERSIST, on_hold, &h);
    struct event *guard = evtimer_new(f->base, on_break, f->base);
    event_priority_set(spin, 1);
    event_add(spin, NULL);
    evtimer_add(guard, &limit);
    event_base_dispatch(f->base);
    event_free(spin);
    event_free(guard);
    close(p[0]);
    close(p[1]);
    return cond(f);
}

struct client {
    struct fixture *f;
    void          (*fn)(struct client *);
    int             done_fd;
    char            failure[512];   /* set by the client thread on a failed check */
    int             n;              /* parameters and results, per case */
};

#define CLIENT_CHECK(c, cond)                                                             \
    do {                                                                                  \
        if (!(cond) && !(c)->failure[0]) {                                                \
            snprintf((c)->failure, sizeof (c)->failure, "%s:%d: %s", __FILE__, __LINE__, \
                     #cond);                                                              \
            return;                                                                       \
        }                                                                                 \
    } while (0)

static void *client_main(void *arg)
{
    struct client *c = arg;
    c->fn(c);
    char one = 1;
    if (write(c->done_fd, &one, 1) != 1)
        abort();
    return NULL;
}

/* Run fn in a thread while this one runs the loop, until fn returns. */
static void run_client(struct fixture *f, void (*fn)(struct client *), int n)
{
    struct client c = { .f = f, .fn = fn, .n = n };
    int p[2];
    pthread_t t;
    assert_int_equal(pipe(p), 0);
    c.done_fd = p[1];
    struct event *done = event_new(f->base, p[0], EV_READ, on_break, f->base);
    struct event *guard = evtimer_new(f->base, on_break, f->base);
    struct timeval limit = { 30, 0 };
    event_add(done, NULL);
    evtimer_add(guard, &limit);
    assert_int_equal(pthread_create(&t, NULL, client_main, &c), 0);
    event_base_dispatch(f->base);
    pthread_join(t, NULL);   /* a hung client ends on its own deadlines */
    event_free(done);
    event_free(guard);
    close(p[0]);
    close(p[1]);
    if (c.failure[0])
        fail_msg("client: %s", c.failure);
    settle(f, 50);   /* let the server see the end of what the client did */
}

/* ------------------------------------------------ client helpers */

static int msg(char *out, size_t len, int i)
{
    return snprintf(out, len,
                    "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20260101120000||ADT^A01^ADT_A01|"
                    "CTRL%04d|P|2.5\rEVN|A01|20260101120000\rPID|1||%d^^^RLH^MR||DOE^JOHN\r",
                    i, 1000 + i);
}

static int open_client(struct client *c, struct mllp_client **out, bool tls, bool cert)
{
    char port[16], err[512];
    snprintf(port, sizeof port, "%u", c->f->port);
    struct mllp_client_opts o = {
        .host = "127.0.0.1", .port = port, .timeout_ms = 5000, .tls = tls,
        .ca = tls ? CA : NULL, .cert = cert ? CLIENT_CERT : NULL, .key = cert ? CLIENT_KEY : NULL,
    };
    return mllp_client_open(&o, out, err, sizeof err);
}

/* The next reply is an HL7 ACK with code code for message i. */
static bool ack_is(struct mllp_client *m, const char *code, int i)
{
    struct buf b = { 0 };
    enum mllp_reply_kind kind;
    char want[64];
    snprintf(want, sizeof want, "\rMSA|%s|CTRL%04d", code, i);
    bool ok = mllp_client_recv(m, &b, &kind) == 0 && kind == MLLP_REPLY_HL7 && b.p &&
              strstr(b.p, want) != NULL;
    if (!ok)
        fprintf(stderr, "wanted %s, got: %s\n", want + 1, b.p ? b.p : mllp_client_error(m));
    buf_free(&b);
    return ok;
}

/* The server has closed the connection (the next read says so). */
static bool closed(struct mllp_client *m)
{
    struct buf b = { 0 };
    enum mllp_reply_kind kind;
    int rc = mllp_client_recv(m, &b, &kind);
    buf_free(&b);
    return rc == MLLP_E_CLOSED || rc == MLLP_E_IO || rc == MLLP_E_TLS;
}

/* Raw TCP, for bytes the client library would not send (junk, pieces,
 * pipelined frames). No cmocka asserts: these run in the client thread. */
static int tcp_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Append message i, framed, to b. */
static void frame_msg(struct buf *b, int i)
{
    char m[512];
    int n = msg(m, sizeof m, i);
    buf_putc(b, MLLP_VT);
    buf_append(b, m, (size_t)n);
    buf_append(b, "\x1c\r", 2);
}

/* Read until one whole frame is in *in; move its content to out. */
static bool recv_frame(int fd, struct buf *in, struct buf *out)
{
    for (;;) {
        char *end = in->len ? memmem(in->p, in->len, "\x1c\r", 2) : NULL;
        if (end) {
            char *start = memchr(in->p, MLLP_VT, (size_t)(end - in->p));
            if (!start)
                return false;
            buf_reset(out);
            buf_append(out, start + 1, (size_t)(end - start - 1));
            size_t used = (size_t)(end + 2 - in->p);
            memmove(in->p, in->p + used, in->len - used);
            in->len -= used;
            return true;
        }
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        char chunk[4096];
        ssize_t r;
        if (poll(&pf, 1, 5000) != 1 || (r = read(fd, chunk, sizeof chunk)) <= 0)
            return false;
        buf_append(in, chunk, (size_t)r);
    }
}

/* The next frame is an HL7 ACK with code for message i. */
static bool raw_ack_is(int fd, struct buf *in, const char *code, int i)
{
    struct buf f = { 0 };
    char want[64];
    snprintf(want, sizeof want, "\rMSA|%s|CTRL%04d", code, i);
    bool ok = recv_frame(fd, in, &f) && f.p && strstr(f.p, want);
    if (!ok)
        fprintf(stderr, "wanted %s, got: %s\n", want + 1, f.p ? f.p : "(nothing)");
    buf_free(&f);
    return ok;
}

/* The server closes the connection: EOF or a reset within 5 s. */
static bool raw_closed(int fd)
{
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    char chunk[256];
    while (poll(&pf, 1, 5000) == 1) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0)
            return false;
    }
    return false;
}

/* ------------------------------------------------------------ cases */

static void client_plain(struct client *c)
{
    struct buf in = { 0 }, out = { 0 };
    int fd = tcp_connect(c->f->port);
    CLIENT_CHECK(c, fd >= 0);
    for (int i = 0; i < 3; i++) {
        buf_reset(&out);
        frame_msg(&out, i);
        CLIENT_CHECK(c, send_all(fd, out.p, out.len));
        CLIENT_CHECK(c, raw_ack_is(fd, &in, "AA", i));
    }
    /* after junk, byte by byte */
    buf_reset(&out);
    frame_msg(&out, 3);
    CLIENT_CHECK(c, send_all(fd, "junk\r\n", 6));
    for (size_t k = 0; k < out.len; k++)
        CLIENT_CHECK(c, send_all(fd, out.p + k, 1));
    CLIENT_CHECK(c, raw_ack_is(fd, &in, "AA", 3));
    close(fd);
    buf_free(&in);
    buf_free(&out);
}

static void test_plain(void **state)
{
    struct fixture *f = *state;
    set_allow(f, "::1/128", "127.0.0.0/8");
    start(f);
    run_client(f, client_plain, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.connections, 1);
    assert_int_equal(st.connections_open, 0);
    assert_int_equal(st.messages, 4);
    assert_int_equal(st.discarded_bytes, 6);
    assert_int_equal(st.refused_connections, 0);
    assert_false(f->a->type->busy(f->a));
    assert_logged(f, "component=mllp msg=\"connection opened\" source=test-src peer=127.0.0.1:");
    assert_logged(f, "msg=\"connection closed\" source=test-src peer=127.0.0.1:");
    assert_logged(f, "reason=\"closed by the peer\" messages=4");
    assert_logged(f, "msg=\"bytes outside a frame discarded\"");

    /* what the store holds names the source and the peer */
    struct store_msg sm;
    void *owner;
    assert_int_equal(store_get_message(f->store, 1, &sm, &owner), 0);
    assert_string_equal(sm.source, "test-src");
    assert_memory_equal(sm.peer, "127.0.0.1:", 10);
    assert_string_equal(sm.control_id, "CTRL0000");
    free(owner);
    free_allow(f);
}

/* Many frames in one write: answered all, in order, though at most a few
 * are in flight at a time. */
static void client_pipelined(struct client *c)
{
    struct buf in = { 0 }, all = { 0 };
    int fd = tcp_connect(c->f->port);
    CLIENT_CHECK(c, fd >= 0);
    for (int i = 0; i < c->n; i++)
        frame_msg(&all, i);
    CLIENT_CHECK(c, send_all(fd, all.p, all.len));
    for (int i = 0; i < c->n; i++)
        CLIENT_CHECK(c, raw_ack_is(fd, &in, "AA", i));
    close(fd);
    buf_free(&in);
    buf_free(&all);
}

static void test_pipelined(void **state)
{
    struct fixture *f = *state;
    start(f);
    run_client(f, client_pipelined, 200);
    assert_int_equal(stats(f).messages, 200);
    uint64_t n;
    assert_int_equal(store_count(f->store, "messages", &n), 0);
    assert_int_equal(n, 200);
}

static void client_oversize(struct client *c)
{
    struct mllp_client *m;
    char b[4096];
    CLIENT_CHECK(c, open_client(c, &m, false, false) == 0);
    int n = msg(b, sizeof b, 1);
    memcpy(b + n, "NTE|1||", 7);
    n += 7;
    memset(b + n, 'x', 3000);
    n += 3000;
    b[n++] = '\r';
    CLIENT_CHECK(c, mllp_client_send(m, b, (size_t)n) == 0);
    CLIENT_CHECK(c, ack_is(m, "AR", 1));   /* the MSH recovered from the head */
    n = msg(b, sizeof b, 2);
    CLIENT_CHECK(c, mllp_client_send(m, b, (size_t)n) == 0);
    CLIENT_CHECK(c, ack_is(m, "AA", 2));   /* back in step */
    mllp_client_close(m);
}

static void test_oversize(void **state)
{
    struct fixture *f = *state;
    f->o.max_message_bytes = 1024;
    start(f);
    run_client(f, client_oversize, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.oversize, 1);
    assert_int_equal(st.messages, 2);
    assert_logged(f, "msg=\"message over max_message_bytes refused\"");
    uint64_t n;
    assert_int_equal(store_count(f->store, "errors", &n), 0);
    assert_int_equal(n, 1);
}

static void client_commit(struct client *c)
{
    struct mllp_client *m;
    struct buf r = { 0 };
    enum mllp_reply_kind kind;
    char b[512];
    CLIENT_CHECK(c, open_client(c, &m, false, false) == 0);
    int n = msg(b, sizeof b, 7);
    CLIENT_CHECK(c, mllp_client_send(m, b, (size_t)n) == 0);
    CLIENT_CHECK(c, mllp_client_recv(m, &r, &kind) == 0 && kind == MLLP_REPLY_COMMIT_ACK);
    CLIENT_CHECK(c, ack_is(m, "AA", 7));
    /* not HL7: refused, so not committed */
    CLIENT_CHECK(c, mllp_client_send(m, "hello", 5) == 0);
    CLIENT_CHECK(c, mllp_client_recv(m, &r, &kind) == 0 && kind == MLLP_REPLY_COMMIT_NAK);
    CLIENT_CHECK(c, mllp_client_recv(m, &r, &kind) == 0 && kind == MLLP_REPLY_HL7 &&
                        strstr(r.p, "\rMSA|AR|"));
    /* an empty frame is answered too */
    CLIENT_CHECK(c, mllp_client_send(m, "", 0) == 0);
    CLIENT_CHECK(c, mllp_client_recv(m, &r, &kind) == 0 && kind == MLLP_REPLY_COMMIT_NAK);
    CLIENT_CHECK(c, mllp_client_recv(m, &r, &kind) == 0 && kind == MLLP_REPLY_HL7 &&
                        strstr(r.p, "\rMSA|AR|"));
    buf_free(&r);
    mllp_client_close(m);
}

static void test_commit_ack(void **state)
{
    struct fixture *f = *state;
    f->o.commit_ack = true;
    start(f);
    run_client(f, client_commit, 0);
    assert_int_equal(stats(f).messages, 3);
}

static void client_max_connections(struct client *c)
{
    struct mllp_client *a, *b2, *c3;
    char b[512];
    int n = msg(b, sizeof b, 1);
    CLIENT_CHECK(c, open_client(c, &a, false, false) == 0);
    CLIENT_CHECK(c, mllp_client_send(a, b, (size_t)n) == 0);
    CLIENT_CHECK(c, ack_is(a, "AA", 1));
    CLIENT_CHECK(c, open_client(c, &b2, false, false) == 0);   /* the kernel accepts it */
    CLIENT_CHECK(c, closed(b2));                               /* we close it at once */
    mllp_client_close(b2);
    mllp_client_close(a);
    usleep(100 * 1000);   /* the server sees a go */
    n = msg(b, sizeof b, 2);
    CLIENT_CHECK(c, open_client(c, &c3, false, false) == 0);
    CLIENT_CHECK(c, mllp_client_send(c3, b, (size_t)n) == 0);
    CLIENT_CHECK(c, ack_is(c3, "AA", 2));
    mllp_client_close(c3);
}

static void test_max_connections(void **state)
{
    struct fixture *f = *state;
    f->o.max_connections = 1;
    start(f);
    run_client(f, client_max_connections, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.refused_connections, 1);
    assert_int_equal(st.connections, 2);
    assert_logged(f, "msg=\"connection refused: max_connections reached\" source=test-src "
                     "peer=127.0.0.1:");
}

static void client_refused(struct client *c)
{
    struct mllp_client *m;
    char b[512];
    int n = msg(b, sizeof b, 1);
    CLIENT_CHECK(c, open_client(c, &m, false, false) == 0);
    mllp_client_send(m, b, (size_t)n);   /* may fail: already closed */
    CLIENT_CHECK(c, closed(m));
    mllp_client_close(m);
}

static void test_allow_list(void **state)
{
    struct fixture *f = *state;
    set_allow(f, "10.0.0.0/8", "::1/128");
    start(f);
    run_client(f, client_refused, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.refused_connections, 1);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.messages, 0);
    assert_logged(f, "msg=\"connection refused: address not allowed\" source=test-src "
                     "peer=127.0.0.1:");
    free_allow(f);
}

#define PARTIAL "\x0bMSH|^~\\&|never finished"   /* 24 bytes */

static void client_timeouts(struct client *c)
{
    int fd = tcp_connect(c->f->port);
    CLIENT_CHECK(c, fd >= 0);
    CLIENT_CHECK(c, send_all(fd, PARTIAL, sizeof PARTIAL - 1));
    CLIENT_CHECK(c, raw_closed(fd));   /* frame_timeout_ms */
    close(fd);
    fd = tcp_connect(c->f->port);
    CLIENT_CHECK(c, fd >= 0);
    CLIENT_CHECK(c, raw_closed(fd));   /* idle_timeout_ms */
    close(fd);
}

static void test_timeouts(void **state)
{
    struct fixture *f = *state;
    f->o.frame_timeout_ms = 100;
    f->o.idle_timeout_ms = 300;
    start(f);
    run_client(f, client_timeouts, 0);
    assert_logged(f, "reason=\"frame timeout: a frame was not finished within frame_timeout_ms\"");
    assert_logged(f, "partial_bytes=24");
    assert_logged(f, "reason=\"idle timeout\"");
    assert_int_equal(stats(f).discarded_bytes, sizeof PARTIAL - 1);
}

static void tls_config(struct fixture *f, const char *subject)
{
    f->tls = (struct config_tls_server){
        .cert = SERVER_CERT, .key = SERVER_KEY, .ca = CA, .require_client_cert = true,
    };
    if (subject) {
        f->subjects[0] = (char *)subject;
        f->tls.allowed_subjects = (struct config_strlist){ .v = f->subjects, .n = 1 };
    }
    f->o.tls = &f->tls;
}

static void client_tls(struct client *c)
{
    struct mllp_client *m;
    char b[512];
    int n = msg(b, sizeof b, 5);
    CLIENT_CHECK(c, open_client(c, &m, true, true) == 0);
    CLIENT_CHECK(c, mllp_client_send(m, b, (size_t)n) == 0);
    CLIENT_CHECK(c, ack_is(m, "AA", 5));
    mllp_client_close(m);

    /* without a client certificate: the handshake fails (under TLS 1.3
       the client may only hear of it when it reads) */
    if (open_client(c, &m, true, false) == 0) {
        mllp_client_send(m, b, (size_t)n);
        CLIENT_CHECK(c, closed(m));
        mllp_client_close(m);
    }
    /* plain TCP on the TLS port */
    CLIENT_CHECK(c, open_client(c, &m, false, false) == 0);
    mllp_client_send(m, b, (size_t)n);
    CLIENT_CHECK(c, closed(m));
    mllp_client_close(m);
}

static void test_tls(void **state)
{
    struct fixture *f = *state;
    tls_config(f, CLIENT_SUBJECT);
    start(f);
    run_client(f, client_tls, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.tls_failures, 2);
    assert_logged(f, "msg=\"TLS established\" source=test-src peer=127.0.0.1:");
    assert_logged(f, "subject=\"" CLIENT_SUBJECT "\"");
    assert_logged(f, "msg=\"TLS connection refused\"");
    assert_logged(f, "reason=\"TLS handshake failed\" error=\"error:");   /* OpenSSL's text */
    char *text = log_text(f);
    assert_null(strstr(text, "lib(0)"));
    free(text);

    struct store_msg sm;
    void *owner;
    assert_int_equal(store_get_message(f->store, 1, &sm, &owner), 0);
    assert_string_equal(sm.tls_subject, CLIENT_SUBJECT);
    free(owner);
}

static void client_tls_subject(struct client *c)
{
    struct mllp_client *m;
    char b[512];
    int n = msg(b, sizeof b, 5);
    CLIENT_CHECK(c, open_client(c, &m, true, true) == 0);
    mllp_client_send(m, b, (size_t)n);
    CLIENT_CHECK(c, closed(m));
    mllp_client_close(m);
}

static void test_tls_subject_refused(void **state)
{
    struct fixture *f = *state;
    tls_config(f, "CN=someone.else,O=hl7broker example");
    start(f);
    run_client(f, client_tls_subject, 0);
    struct adapter_stats st = stats(f);
    assert_int_equal(st.messages, 0);
    assert_int_equal(st.tls_failures, 1);
    assert_logged(f, "reason=\"client certificate subject not allowed\"");
}

/* ------------------------------------------- raw sockets, one thread */

static void raw_send_frames(int fd, int first, int count)
{
    struct buf all = { 0 };
    for (int i = first; i < first + count; i++)
        frame_msg(&all, i);
    assert_true(send_all(fd, all.p, all.len));
    buf_free(&all);
}

static unsigned long long g_want;

static bool got_messages(struct fixture *f)
{
    return stats(f).messages >= g_want;
}

static bool not_busy(struct fixture *f)
{
    return !f->a->type->busy(f->a);
}

static bool none_open(struct fixture *f)
{
    return stats(f).connections_open == 0;
}

/* A peer that half-closes still gets the ACKs it is owed. */
static void client_half_close(struct client *c)
{
    struct buf in = { 0 }, all = { 0 };
    int fd = tcp_connect(c->f->port);
    CLIENT_CHECK(c, fd >= 0);
    for (int i = 0; i < 3; i++)
        frame_msg(&all, i);
    CLIENT_CHECK(c, send_all(fd, all.p, all.len));
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 3; i++)
        CLIENT_CHECK(c, raw_ack_is(fd, &in, "AA", i));
    CLIENT_CHECK(c, in.len == 0 && raw_closed(fd));
    close(fd);
    buf_free(&in);
    buf_free(&all);
}

static void test_half_close(void **state)
{
    struct fixture *f = *state;
    start(f);
    run_client(f, client_half_close, 0);
    assert_int_equal(stats(f).messages, 3);
    assert_logged(f, "reason=\"closed by the peer\" messages=3 bytes=");
}

/* A peer that resets the connection with replies outstanding: the replies
 * arrive for a connection that is gone and are dropped. */
static void test_reset_outstanding(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = tcp_connect(f->port);
    assert_true(fd >= 0);
    raw_send_frames(fd, 0, 5);
    g_want = 5;
    assert_true(pump_holding_commit(f, got_messages, 5000));
    assert_true(f->a->type->busy(f->a));   /* submitted, not yet committed */
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);                              /* RST */
    assert_true(pump(f, not_busy, 5000));
    assert_true(pump(f, none_open, 5000));
    uint64_t n;
    assert_int_equal(store_count(f->store, "messages", &n), 0);
    assert_int_equal(n, 5);                 /* stored all the same */
}

/* Stopped with replies outstanding: the connection's record outlives the
 * source until ingest calls back (ASan checks nothing is used after free
 * and nothing leaks). */
static void test_stop_outstanding(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = tcp_connect(f->port);
    assert_true(fd >= 0);
    raw_send_frames(fd, 0, 3);
    g_want = 3;
    assert_true(pump_holding_commit(f, got_messages, 5000));
    assert_true(f->a->type->busy(f->a));
    adapter_free(f->a);
    f->a = NULL;
    ingest_flush(f->ingest);   /* the replies, to a source that is gone */
    settle(f, 50);
    char b[64];
    fcntl(fd, F_SETFL, O_NONBLOCK);
    assert_int_equal(read(fd, b, sizeof b), 0);   /* closed without an answer */
    close(fd);
    assert_logged(f, "reason=\"source stopped\" messages=3 bytes=");
    assert_logged(f, "unanswered=3");
}

/* drain: no new connections, no new frames; what is in flight is answered. */
static void test_drain(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = tcp_connect(f->port);
    assert_true(fd >= 0);
    raw_send_frames(fd, 0, 2);
    g_want = 2;
    assert_true(pump_holding_commit(f, got_messages, 5000));
    f->a->type->drain(f->a);
    assert_true(f->a->type->busy(f->a));
    assert_true(pump(f, not_busy, 5000));
    raw_send_frames(fd, 2, 1);           /* not read any more */
    settle(f, 100);
    assert_int_equal(stats(f).messages, 2);
    assert_false(f->a->type->busy(f->a));
    assert_int_equal(tcp_connect(f->port), -1);   /* not listening */

    char in[4096];
    struct buf all = { 0 };
    ssize_t r;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while ((r = read(fd, in, sizeof in)) > 0)
        buf_append(&all, in, (size_t)r);
    assert_non_null(all.p);
    assert_non_null(strstr(all.p, "MSA|AA|CTRL0000"));
    assert_non_null(strstr(all.p, "MSA|AA|CTRL0001"));
    assert_null(strstr(all.p, "CTRL0002"));
    buf_free(&all);
    close(fd);
}

/* ------------------------------------------------------- config errors */

static void test_config_errors(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";

    assert_non_null(adapter_type_find("mllp"));
    assert_null(adapter_type_find("carrier-pigeon"));

    f->src.type = "carrier-pigeon";   /* every built-in type can be a source now */
    assert_null(adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err));
    assert_non_null(strstr(err, "\"carrier-pigeon\""));
    f->src.type = "mllp";

    f->tls = (struct config_tls_server){ .cert = "conf/tls/no-such.pem", .key = SERVER_KEY };
    f->o.tls = &f->tls;
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:2575");
    assert_null(adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err));
    assert_non_null(strstr(err, "tls.cert"));

    f->tls = (struct config_tls_server){ .cert = SERVER_CERT, .key = CLIENT_KEY };
    assert_null(adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err));
    assert_non_null(strstr(err, "tls.key"));
    f->o.tls = NULL;

    /* the port is taken */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(f->listen, sizeof f->listen, "127.0.0.1:%u", ntohs(sin.sin_port));
    struct adapter *a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    assert_non_null(a);
    assert_int_not_equal(a->type->start(a, err, sizeof err), 0);
    assert_non_null(strstr(err, "cannot listen"));
    adapter_free(a);
    close(fd);

    /* stop without start, and twice */
    a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    assert_non_null(a);
    a->type->stop(a);
    adapter_free(a);
    adapter_free(NULL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);   /* as the daemon does: a peer gone is an error, not a death */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allow_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_subject_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_outstanding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("mllp_adapter", tests, NULL, NULL);
}
