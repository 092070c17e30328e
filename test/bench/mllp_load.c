/*
 * mllp_load.c: an MLLP load generator. N connections, each sending one
 * message and waiting for its ACK before the next, as real senders do,
 * with a unique control id per message; prints messages/s and the ACK
 * latency distribution. Used by `make bench` and the integration tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hl7.h"
#include "mllp_client.h"

/* ----------------------------------------------------------- histogram */

/* Latencies in microseconds, log-linear: exact below 256 us, then 128
 * buckets per power of two (under 0.8% error), up to 2^40 us. Fixed size,
 * whatever the number of messages. */
#define H_SUB   128
#define H_LIN   256
#define H_MAXK  40
#define H_N     (H_LIN + (H_MAXK - 8 + 1) * H_SUB)

struct hist {
    uint64_t count, max_us, sum_us;
    uint64_t b[H_N];
};

static size_t h_index(uint64_t v)
{
    if (v < H_LIN)
        return (size_t)v;
    int k = 63 - __builtin_clzll(v);
    if (k > H_MAXK)
        return H_N - 1;
    return H_LIN + (size_t)(k - 8) * H_SUB + (size_t)((v >> (k - 7)) - H_SUB);
}

static double h_value(size_t i)     /* middle of bucket i */
{
    if (i < H_LIN)
        return (double)i;
    size_t k = (i - H_LIN) / H_SUB + 8, m = (i - H_LIN) % H_SUB + H_SUB;
    double w = (double)(1ull << (k - 7));
    return (double)m * w + w / 2;
}

static void h_add(struct hist *h, uint64_t us)
{
    h->b[h_index(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

static void h_merge(struct hist *into, const struct hist *h)
{
    for (size_t i = 0; i < H_N; i++)
        into->b[i] += h->b[i];
    into->count += h->count;
    into->sum_us += h->sum_us;
    if (h->max_us > into->max_us)
        into->max_us = h->max_us;
}

static double h_percentile_ms(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(p * (double)h->count + 0.999999);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < H_N; i++) {
        seen += h->b[i];
        if (seen >= want) {
            double v = h_value(i);
            return (v > (double)h->max_us ? (double)h->max_us : v) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ------------------------------------------------------------- options */

static const char default_template[] =
    "MSH|^~\\&|LOADGEN|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|X|P|2.4\r"
    "EVN|A01|20261121093000|||C12345^JONES^ANNE^^^DR\r"
    "PID|1||9990000018^^^NHS^NH~RLH1234567^^^RLH^MR||SMITH^JOHN^ALEXANDER^^MR||19700101|M|||"
    "1 HIGH STREET^^LONDON^^E1 1AA^GBR^H||02079460000^PRN^PH\r"
    "PV1|1|I|RLH-W12^B04^1^RLH||||C12345^JONES^ANNE^^^DR|||MED||||19|||C12345^JONES^ANNE^^^DR"
    "|IP|V0001234^^^RLH^VN|||||||||||||||||||||||||20261121092500\r";

struct opts {
    struct mllp_client_opts conn;
    unsigned connections, idle;
    uint64_t messages;          /* total; 0 with seconds > 0 */
    double   seconds;
    const char *acked_file, *template_file, *prefix;
    bool quiet;
    unsigned sink_port, sink_copies;   /* --sink: the receiving end too */
    double   sink_timeout;
};

static struct opts O = {
    .conn = { .host = "127.0.0.1", .port = "2575", .timeout_ms = 10000 },
    .connections = 1, .sink_copies = 1, .sink_timeout = 60,
};

/* The template, split around MSH-10. */
static const char *t_head, *t_tail;
static size_t t_head_len, t_tail_len;
static char prefix_buf[32];

static int acked_fd = -1;
static atomic_uint_fast64_t next_msg;      /* messages claimed so far */
static atomic_int stop_flag;
static int64_t deadline_ns;
static pthread_barrier_t ready_barrier, go_barrier;   /* connected; clock set */

/* SIGINT or SIGTERM: finish the messages in flight, then report. */
static void on_stop(int sig)
{
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: mllp_load [--host H] [--port P] [--connections N]\n"
        "                 [--messages M | --seconds S] [--template FILE]\n"
        "                 [--id-prefix P] [--acked-file F] [--idle N] [--timeout-ms N]\n"
        "                 [--tls [--ca F] [--cert F --key F] [--server-name N]] [--quiet]\n"
        "                 [--sink PORT [--sink-copies K] [--sink-timeout S]]\n"
        "\n"
        "N connections (default 1) each send a message, wait for its ACK, and send\n"
        "the next, until M messages in all (default 1000) have been answered or S\n"
        "seconds have passed (or SIGINT/SIGTERM). Each message is the template (default: a built-in\n"
        "ADT^A01; --template FILE: the first message of FILE) with MSH-10 replaced\n"
        "by a unique control id PREFIX-CONN-SEQ (PREFIX from --id-prefix, default\n"
        "from the time and pid).\n"
        "\n"
        "  --acked-file F   append each control id answered AA or CA to F, one per\n"
        "                   line, written as each ACK arrives (F is truncated first)\n"
        "  --idle N         first open N more connections that send nothing, held\n"
        "                   open to the end (\"idle: N open\" on stderr once they are)\n"
        "  --timeout-ms N   connect timeout and ACK timeout (default 10000)\n"
        "  --quiet          print only the RESULT line\n"
        "  --sink PORT      also be the subscribers: listen on 127.0.0.1:PORT for the\n"
        "                   broker's MLLP destinations, answer each message AA at once,\n"
        "                   and wait (up to --sink-timeout S, default 60) until every\n"
        "                   accepted message has arrived K times (--sink-copies, default\n"
        "                   1); then print \"SINK ...\": the rate fully delivered and the\n"
        "                   latency from the sender's first byte to the K-th arrival.\n"
        "                   Needs --messages; control ids are then PREFIX-CONN-N with N\n"
        "                   the message's number overall\n"
        "\n"
        "Prints the rate and the ACK latency (p50, p99, max) and a line\n"
        "\"RESULT key=value ...\" for scripts. A connection that fails stops; the\n"
        "others go on. Exit status: 0 when every message got AA/CA, 1 when some got\n"
        "another code (or a wrong MSA-2), 3 when a connection failed, 2 for usage.\n");
}

static bool num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
#define TAKES(opt) (strcmp(a, opt) == 0 && v && (i++, true))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--tls") == 0) {
            O.conn.tls = true;
        } else if (strcmp(a, "--quiet") == 0) {
            O.quiet = true;
        } else if (TAKES("--host")) {
            O.conn.host = v;
        } else if (TAKES("--port")) {
            O.conn.port = v;
        } else if (TAKES("--ca")) {
            O.conn.ca = v;
        } else if (TAKES("--cert")) {
            O.conn.cert = v;
        } else if (TAKES("--key")) {
            O.conn.key = v;
        } else if (TAKES("--server-name")) {
            O.conn.server_name = v;
        } else if (TAKES("--template")) {
            O.template_file = v;
        } else if (TAKES("--id-prefix")) {
            O.prefix = v;
        } else if (TAKES("--acked-file")) {
            O.acked_file = v;
        } else if (TAKES("--connections") && num(v, 1, 100000, &d)) {
            O.connections = (unsigned)d;
        } else if (TAKES("--idle") && num(v, 0, 1000000, &d)) {
            O.idle = (unsigned)d;
        } else if (TAKES("--messages") && num(v, 1, 1e12, &d)) {
            O.messages = (uint64_t)d;
        } else if (TAKES("--seconds") && num(v, 0.001, 1e6, &d)) {
            O.seconds = d;
        } else if (TAKES("--sink") && num(v, 1, 65535, &d)) {
            O.sink_port = (unsigned)d;
        } else if (TAKES("--sink-copies") && num(v, 1, 255, &d)) {
            O.sink_copies = (unsigned)d;
        } else if (TAKES("--sink-timeout") && num(v, 0.001, 1e6, &d)) {
            O.sink_timeout = d;
        } else if (TAKES("--timeout-ms") && num(v, 1, INT_MAX, &d)) {
            O.conn.timeout_ms = (int)d;
        } else {
            fprintf(stderr, "mllp_load: bad or incomplete option %s\n", a);
            usage(stderr);
            return -1;
        }
#undef TAKES
    }
    if (!O.messages && O.seconds <= 0)
        O.messages = 1000;
    if (O.messages && O.seconds > 0) {
        fprintf(stderr, "mllp_load: give --messages or --seconds, not both\n");
        return -1;
    }
    if (O.sink_port && !O.messages) {
        fprintf(stderr, "mllp_load: --sink needs --messages\n");
        return -1;
    }
    if (O.prefix && strlen(O.prefix) > 16) {
        fprintf(stderr, "mllp_load: --id-prefix: at most 16 characters\n");
        return -1;
    }
    return 0;
}

/* Load the template and find MSH-10 in it. */
static int load_template(struct buf *store)
{
    const char *p = default_template;
    size_t len = sizeof default_template - 1;
    if (O.template_file) {
        FILE *f = fopen(O.template_file, "rb");
        if (!f) {
            fprintf(stderr, "mllp_load: %s: %s\n", O.template_file, strerror(errno));
            return -1;
        }
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            if (buf_append(store, chunk, n)) {
                fclose(f);
                return -1;
            }
        fclose(f);
        struct hl7_batch b;
        struct hl7_error e = { 0 };
        int rc = hl7_batch_split(store->p ? store->p : "", store->len, &b, &e);
        if ((rc && rc != HL7_E_BATCH_COUNT) || b.count == 0) {
            fprintf(stderr, "mllp_load: %s: no usable message: %s\n", O.template_file,
                    rc ? e.text : "empty");
            hl7_batch_free(&b);
            return -1;
        }
        p = b.msgs[0].p;
        len = b.msgs[0].len;
        hl7_batch_free(&b);
    }
    struct hl7_msg *m;
    struct hl7_error e = { 0 };
    if (hl7_parse(p, len, NULL, &m, &e)) {
        fprintf(stderr, "mllp_load: the template does not parse: %s\n", e.text);
        return -1;
    }
    struct hl7_span ctrl;
    if (hl7_get_str(m, "MSH-10", &ctrl) != HL7_VALUE || ctrl.p < p || ctrl.p > p + len) {
        fprintf(stderr, "mllp_load: the template needs a control id in MSH-10 to replace\n");
        hl7_free(m);
        return -1;
    }
    t_head = p;
    t_head_len = (size_t)(ctrl.p - p);
    t_tail = ctrl.p + ctrl.len;
    t_tail_len = len - t_head_len - ctrl.len;
    hl7_free(m);
    return 0;
}

/* ------------------------------------------------------------- workers */

struct worker {
    pthread_t   thread;
    unsigned    index;
    struct hist hist;
    uint64_t    accepted, refused, bad_ack, sent;
    int         error;          /* the failure that stopped it, 0 if none */
    char        errtext[700];
    char        first_refusal[160];
};

/* Claim the next message to send; *n is its number overall (from 0). */
static bool claim(uint64_t *n)
{
    if (atomic_load(&stop_flag))
        return false;
    if (O.messages) {
        *n = atomic_fetch_add(&next_msg, 1);
        return *n < O.messages;
    }
    *n = 0;
    return mono_ns() < deadline_ns;
}

/* ------------------------------------------------------------- the sink
 *
 * One thread, epoll, any number of broker connections on one port. Each
 * framed message is answered AA with MSA-2 = its MSH-10 at once; the
 * message's number (the last part of its control id) counts its copies,
 * and the K-th arrival records the latency from its send. */

static _Atomic int64_t *send_ns;       /* by message number: its first byte */
static uint8_t *copies;                /* by message number: arrivals */
static struct hist *sink_hist;
static uint64_t sink_full, sink_received, sink_unknown;
static int64_t sink_last_ns;
static atomic_uint_fast64_t sink_full_seen;
static atomic_int sink_stop;
static int sink_fd = -1;

struct sink_conn {
    int fd;
    struct buf in, out;
};

static void sink_note(const char *msg, size_t len)
{
    /* MSH-10: after the 9th field separator of the first segment */
    if (len < 4 || memcmp(msg, "MSH", 3) != 0)
        return;
    char sep = msg[3];
    size_t i = 3;
    for (int f = 0; f < 9 && i < len; i++)
        if (msg[i] == sep)
            f++;
        else if (msg[i] == '\r')
            return;
    size_t j = i;
    while (j < len && msg[j] != sep && msg[j] != '\r')
        j++;
    sink_received++;
    const char *dash = memrchr(msg + i, '-', j - i);
    uint64_t n = 0;
    bool ok = dash && dash + 1 < msg + j;
    for (const char *c = dash ? dash + 1 : msg; ok && c < msg + j; c++) {
        if (*c < '0' || *c > '9' || n > O.messages)
            ok = false;
        else
            n = n * 10 + (uint64_t)(*c - '0');
    }
    if (!ok || n == 0 || n > O.messages) {
        sink_unknown++;
        return;
    }
    if (++copies[n] == O.sink_copies) {
        int64_t now = mono_ns(), t0 = atomic_load(&send_ns[n]);
        if (t0 > 0 && now > t0)
            h_add(sink_hist, (uint64_t)((now - t0) / 1000));
        sink_full++;
        sink_last_ns = now;
        atomic_store(&sink_full_seen, sink_full);
    }
}

/* Answer one message; its MSH-10 is copied into the ACK. */
static int sink_answer(struct sink_conn *c, const char *msg, size_t len)
{
    const char *id = "";
    size_t idlen = 0;
    if (len > 4 && memcmp(msg, "MSH", 3) == 0) {
        char sep = msg[3];
        size_t i = 3;
        for (int f = 0; f < 9 && i < len; i++)
            if (msg[i] == sep)
                f++;
        size_t j = i;
        while (j < len && msg[j] != sep && msg[j] != '\r')
            j++;
        id = msg + i;
        idlen = j - i;
    }
    static const char head[] = "\x0bMSH|^~\\&|SINK|BENCH|LOADGEN|RLH|20261121000000||ACK|S";
    return buf_append(&c->out, head, sizeof head - 1) || buf_append(&c->out, id, idlen) ||
           buf_append(&c->out, "|P|2.4\rMSA|AA|", 14) || buf_append(&c->out, id, idlen) ||
           buf_append(&c->out, "\r\x1c\r", 3);
}

/* Read what there is, answer every whole frame, write. -1: close it. */
static int sink_io(struct sink_conn *c)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(c->fd, chunk, sizeof chunk);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (buf_append(&c->in, chunk, (size_t)n))
            return -1;
    }
    size_t used = 0;
    for (;;) {
        const char *start = memchr(c->in.p + used, 0x0b, c->in.len - used);
        if (!start)
            break;
        size_t from = (size_t)(start - c->in.p) + 1;
        const char *end = NULL;
        for (size_t k = from; k + 1 < c->in.len; k++)
            if (c->in.p[k] == 0x1c && c->in.p[k + 1] == 0x0d) {
                end = c->in.p + k;
                break;
            }
        if (!end) {
            used = from - 1;
            break;
        }
        sink_note(c->in.p + from, (size_t)(end - c->in.p) - from);
        if (sink_answer(c, c->in.p + from, (size_t)(end - c->in.p) - from))
            return -1;
        used = (size_t)(end - c->in.p) + 2;
    }
    if (used) {
        memmove(c->in.p, c->in.p + used, c->in.len - used);
        c->in.len -= used;
    }
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + off, c->out.len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        off += (size_t)n;
    }
    memmove(c->out.p, c->out.p + off, c->out.len - off);
    c->out.len -= off;
    return 0;
}

static int sink_listen(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)O.sink_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    sink_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sink_fd < 0 || setsockopt(sink_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(sink_fd, (struct sockaddr *)&a, sizeof a) || listen(sink_fd, 64)) {
        fprintf(stderr, "mllp_load: --sink %u: %s\n", O.sink_port, strerror(errno));
        return -1;
    }
    return 0;
}

static void *sink_run(void *arg)
{
    (void)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sink_fd, &ev)) {
        fprintf(stderr, "mllp_load: sink: epoll: %s\n", strerror(errno));
        return NULL;
    }
    struct sink_conn *conns[256] = { 0 };
    unsigned nconns = 0;
    while (!atomic_load(&sink_stop)) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct sink_conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(sink_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct sink_conn *nc = nconns < 256 ? calloc(1, sizeof *nc) : NULL;
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                    struct epoll_event e2 = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                    conns[nconns++] = nc;
                }
                continue;
            }
            if (sink_io(c)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
            }
        }
    }
    for (unsigned i = 0; i < nconns; i++) {
        if (conns[i]->fd >= 0)
            close(conns[i]->fd);
        buf_free(&conns[i]->in);
        buf_free(&conns[i]->out);
        free(conns[i]);
    }
    close(ep);
    return NULL;
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct mllp_client *c = NULL;
    struct buf msg = { 0 }, reply = { 0 };
    char err[700];
    int rc = mllp_client_open(&O.conn, &c, err, sizeof err);
    if (rc) {
        w->error = rc;
        snprintf(w->errtext, sizeof w->errtext, "%s", err);
    }
    pthread_barrier_wait(&ready_barrier);
    pthread_barrier_wait(&go_barrier);
    if (rc)
        return NULL;

    char id[64];
    uint64_t number;
    for (uint64_t seq = 1; claim(&number); seq++) {
        int idlen = snprintf(id, sizeof id, "%s-%u-%" PRIu64, O.prefix, w->index,
                             O.sink_port ? number + 1 : seq);
        buf_reset(&msg);
        if (buf_append(&msg, t_head, t_head_len) || buf_append(&msg, id, (size_t)idlen) ||
            buf_append(&msg, t_tail, t_tail_len)) {
            w->error = MLLP_E_NOMEM;
            snprintf(w->errtext, sizeof w->errtext, "out of memory");
            break;
        }
        int64_t t0 = mono_ns();
        if (send_ns)
            atomic_store(&send_ns[number + 1], t0);
        rc = mllp_client_send(c, msg.p, msg.len);
        w->sent++;
        enum mllp_reply_kind kind = MLLP_REPLY_HL7;
        while (!rc) {
            rc = mllp_client_recv(c, &reply, &kind);
            if (rc || kind == MLLP_REPLY_HL7)
                break;
        }
        if (rc) {
            w->error = rc;
            snprintf(w->errtext, sizeof w->errtext, "message %s: %s", id, mllp_client_error(c));
            break;
        }
        int64_t t1 = mono_ns();
        h_add(&w->hist, (uint64_t)((t1 - t0) / 1000));

        struct hl7_msg *m = NULL;
        struct hl7_span code = { 0 }, ctrl = { 0 };
        if (hl7_parse(reply.p, reply.len, NULL, &m, NULL) == 0) {
            hl7_get_str(m, "MSA-1", &code);
            hl7_get_str(m, "MSA-2", &ctrl);
        }
        bool ok_code = code.len == 2 && (memcmp(code.p, "AA", 2) == 0 ||
                                         memcmp(code.p, "CA", 2) == 0);
        bool ok_ctrl = ctrl.len == (size_t)idlen && memcmp(ctrl.p, id, ctrl.len) == 0;
        if (ok_code && ok_ctrl) {
            w->accepted++;
            if (acked_fd >= 0) {
                id[idlen] = '\n';
                /* one write per line: whole lines even if we are killed */
                if (write(acked_fd, id, (size_t)idlen + 1) < 0) {
                    w->error = MLLP_E_IO;
                    snprintf(w->errtext, sizeof w->errtext, "%s: %s", O.acked_file,
                             strerror(errno));
                    hl7_free(m);
                    break;
                }
            }
        } else {
            if (!ok_ctrl && ok_code)
                w->bad_ack++;
            else
                w->refused++;
            if (!w->first_refusal[0])
                snprintf(w->first_refusal, sizeof w->first_refusal,
                         "message %s answered MSA-1 '%.*s' MSA-2 '%.*s'", id,
                         (int)(code.len > 8 ? 8 : code.len), code.p ? code.p : "",
                         (int)(ctrl.len > 64 ? 64 : ctrl.len), ctrl.p ? ctrl.p : "");
        }
        hl7_free(m);
    }
    buf_free(&msg);
    buf_free(&reply);
    mllp_client_close(c);
    return NULL;
}

/* ---------------------------------------------------------- idle peers */

static int open_idle(int *fds, unsigned n)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
    int g = getaddrinfo(O.conn.host, O.conn.port, &hints, &res);
    if (g) {
        fprintf(stderr, "mllp_load: %s: %s\n", O.conn.host, gai_strerror(g));
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || connect(fds[i], res->ai_addr, res->ai_addrlen) < 0) {
            fprintf(stderr, "mllp_load: idle connection %u: %s\n", i + 1, strerror(errno));
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = -1;
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}

/* How many idle connections the server has not closed. */
static unsigned idle_still_open(const int *fds, unsigned n)
{
    unsigned open = 0;
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        struct pollfd p = { .fd = fds[i], .events = POLLIN };
        char c;
        if (poll(&p, 1, 0) == 0 || (p.revents & POLLIN &&
                                    recv(fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0))
            open++;
    }
    return open;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv))
        return 2;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!O.prefix) {
        snprintf(prefix_buf, sizeof prefix_buf, "L%lx%lx", (unsigned long)time(NULL) % 0xfffff,
                 (unsigned long)getpid() % 0xfff);
        O.prefix = prefix_buf;
    }
    struct buf tpl = { 0 };
    if (load_template(&tpl))
        return 2;
    if (O.acked_file) {
        acked_fd = open(O.acked_file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (acked_fd < 0) {
            fprintf(stderr, "mllp_load: %s: %s\n", O.acked_file, strerror(errno));
            return 2;
        }
    }
    int *idle = NULL;
    if (O.idle) {
        idle = malloc(O.idle * sizeof *idle);
        if (!idle || open_idle(idle, O.idle)) {
            fprintf(stderr, "mllp_load: could not open %u idle connections "
                    "(is ulimit -n high enough?)\n", O.idle);
            return 3;
        }
        fprintf(stderr, "idle: %u open\n", O.idle);
    }

    pthread_t sink_thread;
    if (O.sink_port) {
        send_ns = calloc(O.messages + 1, sizeof *send_ns);
        copies = calloc(O.messages + 1, 1);
        sink_hist = calloc(1, sizeof *sink_hist);
        if (!send_ns || !copies || !sink_hist || sink_listen() ||
            pthread_create(&sink_thread, NULL, sink_run, NULL)) {
            fprintf(stderr, "mllp_load: cannot start the sink\n");
            return 3;
        }
    }

    struct worker *w = calloc(O.connections, sizeof *w);
    if (!w) {
        fprintf(stderr, "mllp_load: out of memory\n");
        return 3;
    }
    pthread_barrier_init(&ready_barrier, NULL, O.connections + 1);
    pthread_barrier_init(&go_barrier, NULL, O.connections + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (unsigned i = 0; i < O.connections; i++) {
        w[i].index = i + 1;
        if (pthread_create(&w[i].thread, &attr, worker_run, &w[i])) {
            fprintf(stderr, "mllp_load: cannot start thread %u\n", i + 1);
            return 3;
        }
    }
    pthread_barrier_wait(&ready_barrier);        /* every connection is open */
    int64_t t0 = mono_ns();
    if (O.seconds > 0)
        deadline_ns = t0 + (int64_t)(O.seconds * 1e9);
    pthread_barrier_wait(&go_barrier);
    struct hist *all = calloc(1, sizeof *all);
    uint64_t accepted = 0, refused = 0, bad_ack = 0, sent = 0;
    unsigned failed = 0;
    for (unsigned i = 0; i < O.connections; i++) {
        pthread_join(w[i].thread, NULL);
        h_merge(all, &w[i].hist);
        accepted += w[i].accepted;
        refused += w[i].refused;
        bad_ack += w[i].bad_ack;
        sent += w[i].sent;
        if (w[i].error)
            failed++;
    }
    double secs = (double)(mono_ns() - t0) / 1e9;
    unsigned idle_open = O.idle ? idle_still_open(idle, O.idle) : 0;

    unsigned shown = 0;
    for (unsigned i = 0; i < O.connections && shown < 5; i++)
        if (w[i].error) {
            fprintf(stderr, "mllp_load: connection %u: %s\n", w[i].index, w[i].errtext);
            shown++;
        }
    if (failed > shown)
        fprintf(stderr, "mllp_load: ... %u connections failed in all\n", failed);
    shown = 0;
    for (unsigned i = 0; i < O.connections && shown < 3; i++)
        if (w[i].first_refusal[0]) {
            fprintf(stderr, "mllp_load: connection %u: %s\n", w[i].index, w[i].first_refusal);
            shown++;
        }
    double rate = secs > 0 ? (double)all->count / secs : 0;
    if (!O.quiet) {
        printf("%u connection%s, %" PRIu64 " ACKs in %.2f s: %.0f messages/s\n",
               O.connections, O.connections == 1 ? "" : "s", all->count, secs, rate);
        printf("ACK latency: p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms\n",
               h_percentile_ms(all, 0.50), h_percentile_ms(all, 0.99),
               (double)all->max_us / 1000.0,
               all->count ? (double)all->sum_us / (double)all->count / 1000.0 : 0.0);
        printf("accepted (AA/CA) %" PRIu64 ", refused %" PRIu64 ", wrong MSA-2 %" PRIu64
               ", failed connections %u of %u\n", accepted, refused, bad_ack, failed,
               O.connections);
        if (O.idle)
            printf("idle connections: %u opened, %u still open at the end\n", O.idle, idle_open);
    }
    printf("RESULT connections=%u sent=%" PRIu64 " acks=%" PRIu64 " accepted=%" PRIu64
           " refused=%" PRIu64 " bad_ack=%" PRIu64 " failed_connections=%u seconds=%.3f"
           " msgs_per_s=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f idle=%u idle_open=%u\n",
           O.connections, sent, all->count, accepted, refused, bad_ack, failed, secs, rate,
           h_percentile_ms(all, 0.50), h_percentile_ms(all, 0.99),
           (double)all->max_us / 1000.0, O.idle, idle_open);
    fflush(stdout);

    if (O.sink_port) {
        int64_t until = mono_ns() + (int64_t)(O.sink_timeout * 1e9);
        while (atomic_load(&sink_full_seen) < accepted && mono_ns() < until &&
               !atomic_load(&stop_flag))
            usleep(2000);
        atomic_store(&sink_stop, 1);
        pthread_join(sink_thread, NULL);
        double ssecs = sink_full ? (double)(sink_last_ns - t0) / 1e9 : 0;
        double srate = ssecs > 0 ? (double)sink_full / ssecs : 0;
        if (!O.quiet) {
            printf("sink: %" PRIu64 " of %" PRIu64 " accepted messages arrived %u times, in "
                   "%.2f s from the first send: %.0f messages/s fully delivered "
                   "(%.0f deliveries/s)\n", sink_full, accepted, O.sink_copies, ssecs, srate,
                   srate * O.sink_copies);
            printf("first byte sent to last copy received: p50 %.3f ms, p99 %.3f ms, "
                   "max %.3f ms\n", h_percentile_ms(sink_hist, 0.50),
                   h_percentile_ms(sink_hist, 0.99), (double)sink_hist->max_us / 1000.0);
        }
        printf("SINK copies=%u delivered_all=%" PRIu64 " accepted=%" PRIu64 " received=%"
               PRIu64 " unknown=%" PRIu64 " seconds=%.3f msgs_per_s=%.1f deliveries_per_s=%.1f"
               " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", O.sink_copies, sink_full, accepted,
               sink_received, sink_unknown, ssecs, srate, srate * O.sink_copies,
               h_percentile_ms(sink_hist, 0.50), h_percentile_ms(sink_hist, 0.99),
               (double)sink_hist->max_us / 1000.0);
        fflush(stdout);
        if (sink_fd >= 0)
            close(sink_fd);
        free(send_ns);
        free(copies);
        free(sink_hist);
        if (sink_full < accepted)
            failed++;
    }

    for (unsigned i = 0; idle && i < O.idle; i++)
        if (idle[i] >= 0)
            close(idle[i]);
    free(idle);
    free(all);
    free(w);
    buf_free(&tpl);
    if (acked_fd >= 0)
        close(acked_fd);
    if (failed)
        return 3;
    return refused || bad_ack ? 1 : 0;
}
