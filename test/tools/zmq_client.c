/*
 * zmq_client.c: a ZeroMQ client for the tests of the zmq source (the
 * machine may have no python3-zmq).
 *
 *   zmq_client send ENDPOINT TIMEOUT_MS FILE [FILE...]
 *       One request from a REQ socket, each FILE one frame of it (two
 *       files: a two-frame request). Prints the answer, segments one a
 *       line. Exit 0 with an answer, 3 with none within TIMEOUT_MS.
 *   zmq_client load ENDPOINT CLIENTS MESSAGES PREFIX ACKED_FILE [dealer]
 *       CLIENTS REQ sockets (or with "dealer" one DEALER socket per client
 *       that sends all its MESSAGES at once, then reads the answers), each
 *       sending MESSAGES generated ADT^A01 messages with MSH-10
 *       PREFIX-<client>-<n>. The MSH-10 of every AA answer goes to
 *       ACKED_FILE (appended). Prints "RESULT sent=N acked=N other=N
 *       lost=N". Exit 0 when every message was answered AA. Bounded: 30 s,
 *       and 3 s without any answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#define MAX_CLIENTS 64
#define DEADLINE_MS 30000
#define IDLE_MS     3000   /* no answer this long: the broker is gone */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 > cap) {
            char *q = realloc(p, cap = (cap + 65536) * 2);
            if (!q) {
                free(p);
                fclose(f);
                return NULL;
            }
            p = q;
        }
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return p;
}

static void print_answer(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        putchar(p[i] == '\r' ? '\n' : p[i]);
    if (n && p[n - 1] != '\r' && p[n - 1] != '\n')
        putchar('\n');
}

static int cmd_send(const char *endpoint, int timeout_ms, char **files, int n)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0, rc = 3;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    if (zmq_connect(s, endpoint) != 0) {
        fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        rc = 2;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        size_t len;
        char *p = slurp(files[i], &len);
        if (!p) {
            fprintf(stderr, "cannot read %s\n", files[i]);
            rc = 2;
            goto out;
        }
        int sent = zmq_send(s, p, len, i + 1 < n ? ZMQ_SNDMORE : 0);
        free(p);
        if (sent < 0) {
            fprintf(stderr, "send: %s\n", zmq_strerror(zmq_errno()));
            rc = 2;
            goto out;
        }
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) >= 0) {
        print_answer(zmq_msg_data(&m), zmq_msg_size(&m));
        rc = 0;
    } else {
        fprintf(stderr, "no answer within %d ms\n", timeout_ms);
    }
    zmq_msg_close(&m);
out:
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

static size_t make_msg(char *buf, size_t len, const char *id)
{
    int n = snprintf(buf, len,
                     "MSH|^~\\&|ZCLIENT|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|%s|P|2.4\r"
                     "EVN|A01|20261121093000\r"
                     "PID|1||9990000018^^^NHS^NH||SMITH^JOHN||19700101|M\r",
                     id);
    return n < 0 ? 0 : (size_t)n;
}

/* MSA-1 and MSA-2 of an answer, into code and id. */
static void msa(const char *p, size_t n, char *code, char *id, size_t len)
{
    code[0] = id[0] = '\0';
    for (size_t i = 0; i + 4 <= n; i++) {
        if ((i == 0 || p[i - 1] == '\r') && memcmp(p + i, "MSA|", 4) == 0) {
            size_t a = i + 4, b = a;
            while (b < n && p[b] != '|' && p[b] != '\r')
                b++;
            snprintf(code, len, "%.*s", (int)(b - a), p + a);
            if (b < n && p[b] == '|') {
                size_t c = ++b;
                while (c < n && p[c] != '|' && p[c] != '\r')
                    c++;
                snprintf(id, len, "%.*s", (int)(c - b), p + b);
            }
            return;
        }
    }
}

struct client {
    void *s;
    int   next;       /* messages sent */
    int   answered;
};

static int cmd_load(const char *endpoint, int clients, int messages, const char *prefix,
                    const char *acked_path, int dealer)
{
    if (clients < 1 || clients > MAX_CLIENTS || messages < 1) {
        fprintf(stderr, "load: 1..%d clients, at least one message\n", MAX_CLIENTS);
        return 2;
    }
    FILE *acked = fopen(acked_path, "a");
    if (!acked) {
        perror(acked_path);
        return 2;
    }
    void *ctx = zmq_ctx_new();
    struct client c[MAX_CLIENTS] = { { 0 } };
    zmq_pollitem_t items[MAX_CLIENTS];
    int zero = 0;
    long sent = 0, ok = 0, other = 0;
    char buf[512], id[128];

    for (int i = 0; i < clients; i++) {
        c[i].s = zmq_socket(ctx, dealer ? ZMQ_DEALER : ZMQ_REQ);
        zmq_setsockopt(c[i].s, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(c[i].s, endpoint) != 0) {
            fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
            return 2;
        }
        items[i] = (zmq_pollitem_t){ .socket = c[i].s, .events = ZMQ_POLLIN };
    }
    /* REQ: one at a time per client; DEALER: all at once, with the empty
       delimiter a REQ socket would put. */
    for (int i = 0; i < clients; i++) {
        int burst = dealer ? messages : 1;
        for (int k = 0; k < burst; k++, c[i].next++, sent++) {
            snprintf(id, sizeof id, "%s-%d-%d", prefix, i, c[i].next);
            size_t n = make_msg(buf, sizeof buf, id);
            if (dealer)
                zmq_send(c[i].s, "", 0, ZMQ_SNDMORE);
            zmq_send(c[i].s, buf, n, 0);
        }
    }
    long long deadline = now_ms() + DEADLINE_MS, last = now_ms();
    while (ok + other < sent && now_ms() < deadline && now_ms() - last < IDLE_MS) {
        if (zmq_poll(items, clients, 200) < 0)
            break;
        for (int i = 0; i < clients; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (dealer) {   /* the empty delimiter first */
                zmq_msg_recv(&m, c[i].s, 0);
                zmq_msg_close(&m);
                zmq_msg_init(&m);
            }
            if (zmq_msg_recv(&m, c[i].s, 0) < 0) {
                zmq_msg_close(&m);
                continue;
            }
            char code[16];
            msa(zmq_msg_data(&m), zmq_msg_size(&m), code, id, sizeof id);
            zmq_msg_close(&m);
            c[i].answered++;
            last = now_ms();
            if (strcmp(code, "AA") == 0 && strncmp(id, prefix, strlen(prefix)) == 0) {
                ok++;
                fprintf(acked, "%s\n", id);
            } else {
                other++;
                fprintf(stderr, "client %d: answer %s %s\n", i, code, id);
            }
            if (!dealer && c[i].next < messages) {
                snprintf(id, sizeof id, "%s-%d-%d", prefix, i, c[i].next++);
                size_t n = make_msg(buf, sizeof buf, id);
                zmq_send(c[i].s, buf, n, 0);
                sent++;
            }
        }
    }
    fclose(acked);
    printf("RESULT sent=%ld acked=%ld other=%ld lost=%ld\n", sent, ok, other,
           sent - ok - other);
    for (int i = 0; i < clients; i++)
        zmq_close(c[i].s);
    zmq_ctx_term(ctx);
    return ok == (long)clients * messages ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "send") == 0)
        return cmd_send(argv[2], atoi(argv[3]), argv + 4, argc - 4);
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "load") == 0)
        return cmd_load(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5], argv[6],
                        argc == 8 && strcmp(argv[7], "dealer") == 0);
    fprintf(stderr, "usage: zmq_client send ENDPOINT TIMEOUT_MS FILE [FILE...]\n"
                    "       zmq_client load ENDPOINT CLIENTS MESSAGES PREFIX ACKED_FILE [dealer]\n");
    return 2;
}
