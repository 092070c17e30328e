/*
 * ctl_send.c: `hl7ctl send`, an MLLP sender. Each message goes out in its
 * own frame and waits for its ACK before the next, as real senders do;
 * the exit status says whether every message was accepted.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ctl.h"
#include "hl7.h"
#include "mllp_client.h"

int cmd_send(int argc, char **argv);

enum { EXIT_ACCEPTED = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

static const char *prog = "hl7ctl send";

static void send_usage(FILE *f)
{
    fprintf(f,
        "usage: hl7ctl send [--host H] [--port P] [OPTIONS] FILE...\n"
        "       hl7ctl send [OPTIONS] HOST:PORT FILE...\n"
        "\n"
        "Send HL7 v2 messages over MLLP and print each ACK. A file may hold one\n"
        "message, several, or FHS/BHS batches: each message goes in its own frame,\n"
        "and the next is sent only once the ACK of the last has come back. FILE\n"
        "'-' reads standard input. Every file is read and split before connecting.\n"
        "\n"
        "  --host H          server name or address (default 127.0.0.1)\n"
        "  --port P          server port (default 2575)\n"
        "  HOST:PORT         the same in one argument ([::1]:2575 for IPv6), before\n"
        "                    the files, when --host and --port are not given\n"
        "  --raw             send each file's bytes as they are, in one frame, without\n"
        "                    splitting (for batches as one unit, or input that does\n"
        "                    not parse)\n"
        "  --timeout-ms N    most time to connect, and to wait for each ACK\n"
        "                    (default 10000)\n"
        "  -q, --quiet       print only \"MSA-1 MSA-2\" for each ACK (AA RLH000123)\n"
        "  --max-bytes N     refuse input files larger than N bytes (default %zu)\n"
        "  --tls             use TLS (1.2 or later); the server is verified against\n"
        "                    --ca (or the system's trust store) and its name\n"
        "  --ca FILE         PEM CA certificates that sign the server's certificate\n"
        "  --cert FILE       PEM client certificate, for mutual TLS (with --key)\n"
        "  --key FILE        PEM private key of --cert\n"
        "  --server-name N   name (or address) the server certificate must carry,\n"
        "                    sent as SNI when a name (default: the host)\n"
        "  -h, --help        this help\n"
        "\n"
        "An ACK is printed with one segment per line, ACKs separated by a blank\n"
        "line. A server configured for MLLP release 2 answers each frame with a\n"
        "commit acknowledgement (<VT><ACK><FS><CR>, or <NAK>) too: it is shown as\n"
        "\"MLLP commit: ACK\" (or NAK) before the HL7 ACK. Replies over 16 MiB are\n"
        "an error. When the server closes the connection between messages (after a\n"
        "refusal, say), the next message is sent on a new connection.\n"
        "\n"
        "Exit status: 0 when every ACK is AA or CA; 1 when any is AE, AR, CE or CR\n"
        "(or a commit NAK); 2 for a usage error or a file that cannot be read or\n"
        "split (nothing is sent); 3 when the connection fails, times out or the\n"
        "reply is not an HL7 ACK.\n", (size_t)HL7_DEFAULT_MAX);
}

/* One message to send: a span of one of the input buffers. */
struct item {
    const char *file;
    size_t      index, count;     /* 1-based position within its file */
    const char *p;
    size_t      len;
};

struct send_opts {
    struct mllp_client_opts conn;
    bool   raw, quiet;
    size_t max_bytes;
};

/* "host:port" or "[v6]:port" into its parts (pointers into a copy). */
static bool split_address(const char *a, char **host, char **port)
{
    const char *colon = strrchr(a, ':');
    if (!colon || !colon[1] || strlen(colon + 1) > 5)
        return false;
    for (const char *q = colon + 1; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    size_t hl = (size_t)(colon - a);
    if (hl >= 2 && a[0] == '[' && a[hl - 1] == ']') {
        a++;
        hl -= 2;
    } else if (memchr(a, ':', hl)) {
        return false;                   /* a bare IPv6 address needs [] */
    }
    if (hl == 0)
        return false;
    *host = strndup(a, hl);
    *port = strdup(colon + 1);
    return *host && *port;
}

/* Print bytes with CR (and CRLF, LF) as line ends and other control bytes
 * as \xHH, so a reply can never drive the terminal. */
static void print_segments(const char *p, size_t n)
{
    bool line_start = true;     /* blank segments are not shown */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r' || c == '\n') {
            if (!line_start)
                putchar('\n');
            line_start = true;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
        line_start = false;
    }
    if (!line_start)
        putchar('\n');
}

static void print_span(FILE *f, const struct hl7_span *s)
{
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->p[i];
        if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

/* What one ACK said: EXIT_ACCEPTED, EXIT_REFUSED or EXIT_TRANSPORT. */
static int judge_ack(const struct send_opts *o, const struct item *it, const struct buf *ack)
{
    struct hl7_msg *m = NULL;
    struct hl7_error err = { 0 };
    if (hl7_parse(ack->p, ack->len, NULL, &m, &err)) {
        fprintf(stderr, "%s: %s: message %zu: the reply is not an HL7 message: %s\n",
                prog, it->file, it->index, err.text);
        if (!o->quiet)
            print_segments(ack->p, ack->len);
        return EXIT_TRANSPORT;
    }
    struct hl7_span code, ctrl;
    enum hl7_presence pc = hl7_get_str(m, "MSA-1", &code);
    hl7_get_str(m, "MSA-2", &ctrl);
    int status;
    if (pc != HL7_VALUE) {
        fprintf(stderr, "%s: %s: message %zu: the reply has no MSA-1 (not an ACK)\n",
                prog, it->file, it->index);
        status = EXIT_TRANSPORT;
    } else if (code.len == 2 && (memcmp(code.p, "AA", 2) == 0 || memcmp(code.p, "CA", 2) == 0)) {
        status = EXIT_ACCEPTED;
    } else {
        status = EXIT_REFUSED;
    }

    /* The ACK should answer this message: MSA-2 = its MSH-10. */
    struct hl7_msg *sent = NULL;
    if (status == EXIT_ACCEPTED && hl7_parse(it->p, it->len, NULL, &sent, NULL) == 0) {
        struct hl7_span want;
        if (hl7_get_str(sent, "MSH-10", &want) == HL7_VALUE &&
            (want.len != ctrl.len || memcmp(want.p, ctrl.p, want.len) != 0)) {
            fprintf(stderr, "%s: %s: message %zu: the ACK's MSA-2 '", prog, it->file, it->index);
            print_span(stderr, &ctrl);
            fprintf(stderr, "' is not the message's control id '");
            print_span(stderr, &want);
            fprintf(stderr, "'\n");
            status = EXIT_REFUSED;
        }
        hl7_free(sent);
    }

    if (o->quiet) {
        print_span(stdout, &code);
        putchar(' ');
        print_span(stdout, &ctrl);
        putchar('\n');
    } else {
        print_segments(ack->p, ack->len);
    }
    hl7_free(m);
    return status;
}

/* Connect, printing the failure. */
static struct mllp_client *connect_or_say(const struct send_opts *o)
{
    struct mllp_client *c = NULL;
    char err[700];
    if (mllp_client_open(&o->conn, &c, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return NULL;
    }
    return c;
}

/* Send every item in turn. Returns the exit status. */
static int send_all(const struct send_opts *o, const struct item *items, size_t n)
{
    struct mllp_client *c = connect_or_say(o);
    if (!c)
        return EXIT_TRANSPORT;
    int status = EXIT_ACCEPTED;
    size_t used = 0;             /* exchanges on this connection */
    struct buf reply = { 0 };
    for (size_t i = 0; i < n; i++) {
        const struct item *it = &items[i];
        bool committed = false, nak = false;
        int rc = mllp_client_send(c, it->p, it->len);
        enum mllp_reply_kind kind = MLLP_REPLY_HL7;
        for (;;) {
            if (rc)
                break;
            rc = mllp_client_recv(c, &reply, &kind);
            if (rc || kind == MLLP_REPLY_HL7)
                break;
            committed = kind == MLLP_REPLY_COMMIT_ACK;
            nak = kind == MLLP_REPLY_COMMIT_NAK;
            if (o->quiet)
                printf("%s\n", committed ? "COMMIT-ACK" : "COMMIT-NAK");
            else
                printf("MLLP commit: %s\n", committed ? "ACK" : "NAK");
        }
        /* The server may close an idle or refused connection between
           messages: resend once on a new one (a duplicate is harmless). */
        if (rc == MLLP_E_CLOSED && used > 0 && !committed && !nak) {
            fprintf(stderr, "%s: %s; sending %s message %zu again on a new connection\n",
                    prog, mllp_client_error(c), it->file, it->index);
            mllp_client_close(c);
            used = 0;
            if (!(c = connect_or_say(o))) {
                status = EXIT_TRANSPORT;
                break;
            }
            i--;
            continue;
        }
        used++;
        if (rc && (committed || nak) && (rc == MLLP_E_CLOSED || rc == MLLP_E_TIMEOUT)) {
            /* A release 2 server may send only the commit acknowledgement. */
            fprintf(stderr, "%s: %s: message %zu: commit %s without an HL7 ACK (%s)\n", prog,
                    it->file, it->index, committed ? "ACK" : "NAK", mllp_client_error(c));
            if (nak)
                status = status == EXIT_TRANSPORT ? status : EXIT_REFUSED;
            if (rc == MLLP_E_CLOSED && i + 1 < n) {
                mllp_client_close(c);
                used = 0;
                if (!(c = connect_or_say(o))) {
                    status = EXIT_TRANSPORT;
                    break;
                }
            }
            continue;
        }
        if (rc) {
            fprintf(stderr, "%s: %s: message %zu of %zu: %s\n", prog, it->file, it->index,
                    it->count, mllp_client_error(c));
            status = EXIT_TRANSPORT;
            break;
        }
        int s = judge_ack(o, it, &reply);
        if (nak && s == EXIT_ACCEPTED)
            s = EXIT_REFUSED;
        if (s > status)
            status = s;
        if (!o->quiet && i + 1 < n)
            putchar('\n');
        fflush(stdout);
    }
    buf_free(&reply);
    mllp_client_close(c);
    return status;
}

static bool parse_size(const char *s, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int cmd_send(int argc, char **argv)
{
    struct send_opts o = {
        .conn = { .host = NULL, .port = NULL, .timeout_ms = 10000 },
        .max_bytes = HL7_DEFAULT_MAX,
    };
    char *addr_host = NULL, *addr_port = NULL;
    int first = 1;
    for (; first < argc; first++) {
        const char *a = argv[first];
        const char *v = first + 1 < argc ? argv[first + 1] : NULL;
        unsigned long long num;
#define TAKES(opt) (strcmp(a, opt) == 0 && v && (first++, true))
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            send_usage(stdout);
            return 0;
        } else if (strcmp(a, "--raw") == 0) {
            o.raw = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o.quiet = true;
        } else if (strcmp(a, "--tls") == 0) {
            o.conn.tls = true;
        } else if (TAKES("--host")) {
            o.conn.host = v;
        } else if (TAKES("--port")) {
            o.conn.port = v;
        } else if (TAKES("--ca")) {
            o.conn.ca = v;
        } else if (TAKES("--cert")) {
            o.conn.cert = v;
        } else if (TAKES("--key")) {
            o.conn.key = v;
        } else if (TAKES("--server-name")) {
            o.conn.server_name = v;
        } else if (TAKES("--timeout-ms")) {
            if (!parse_size(v, 1, INT_MAX, &num)) {
                fprintf(stderr, "%s: --timeout-ms wants a number of milliseconds from 1 to %d\n",
                        prog, INT_MAX);
                return EXIT_USAGE;
            }
            o.conn.timeout_ms = (int)num;
        } else if (TAKES("--max-bytes")) {
            if (!parse_size(v, 1, HL7_HARD_MAX, &num)) {
                fprintf(stderr, "%s: --max-bytes wants a number from 1 to %zu\n", prog,
                        (size_t)HL7_HARD_MAX);
                return EXIT_USAGE;
            }
            o.max_bytes = (size_t)num;
        } else if (strcmp(a, "--") == 0) {
            first++;
            break;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option %s, or it lacks its value\n", prog, a);
            send_usage(stderr);
            return EXIT_USAGE;
        } else {
            break;
        }
#undef TAKES
    }
    /* HOST:PORT before the files, when no --host or --port. */
    if (!o.conn.host && !o.conn.port && argc - first >= 2 &&
        split_address(argv[first], &addr_host, &addr_port)) {
        o.conn.host = addr_host;
        o.conn.port = addr_port;
        first++;
    }
    if (!o.conn.host)
        o.conn.host = "127.0.0.1";
    if (!o.conn.port)
        o.conn.port = "2575";
    int status = EXIT_USAGE;
    size_t nfiles = first < argc ? (size_t)(argc - first) : 0;
    struct buf *in = NULL;
    struct hl7_batch *batches = NULL;
    struct item *items = NULL;
    size_t nitems = 0;
    if (nfiles == 0) {
        fprintf(stderr, "%s: no FILE given\n", prog);
        send_usage(stderr);
        goto out;
    }
    if ((o.conn.cert != NULL) != (o.conn.key != NULL)) {
        fprintf(stderr, "%s: --cert and --key go together\n", prog);
        goto out;
    }
    if (!o.conn.tls && (o.conn.ca || o.conn.cert || o.conn.server_name)) {
        fprintf(stderr, "%s: --ca, --cert, --key and --server-name need --tls\n", prog);
        goto out;
    }
    in = calloc(nfiles, sizeof *in);
    batches = calloc(nfiles, sizeof *batches);
    if (!in || !batches) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    /* Read and split everything first: nothing is sent if any input is bad. */
    size_t total = 0;
    bool bad = false;
    for (size_t f = 0; f < nfiles; f++) {
        const char *file = argv[first + (int)f];
        if (ctl_read_input(prog, file, o.max_bytes, &in[f])) {
            bad = true;
            continue;
        }
        if (o.raw) {
            total++;
            continue;
        }
        struct hl7_error err = { 0 };
        int rc = hl7_batch_split(in[f].p ? in[f].p : "", in[f].len, &batches[f], &err);
        if (rc == HL7_E_BATCH_COUNT) {
            fprintf(stderr, "%s: %s: warning: %s (sending the %zu messages found)\n", prog,
                    file, err.text, batches[f].count);
        } else if (rc) {
            fprintf(stderr, "%s: %s: cannot split into messages: %s (byte offset %zu); "
                    "--raw sends the file as it is\n", prog, file, err.text, err.offset);
            bad = true;
            continue;
        }
        if (batches[f].count == 0) {
            fprintf(stderr, "%s: %s: holds no message\n", prog, file);
            bad = true;
        }
        total += batches[f].count;
    }
    if (bad)
        goto out;
    items = calloc(total, sizeof *items);
    if (!items) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    for (size_t f = 0; f < nfiles; f++) {
        const char *file = argv[first + (int)f];
        if (o.raw) {
            items[nitems++] = (struct item){ file, 1, 1, in[f].p ? in[f].p : "", in[f].len };
            continue;
        }
        for (size_t k = 0; k < batches[f].count; k++)
            items[nitems++] = (struct item){ file, k + 1, batches[f].count,
                                             batches[f].msgs[k].p, batches[f].msgs[k].len };
    }
    signal(SIGPIPE, SIG_IGN);
    status = send_all(&o, items, nitems);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
        if (status == EXIT_ACCEPTED)
            status = EXIT_REFUSED;
    }
out:
    for (size_t f = 0; in && f < nfiles; f++)
        buf_free(&in[f]);
    for (size_t f = 0; batches && f < nfiles; f++)
        if (batches[f].msgs)
            hl7_batch_free(&batches[f]);
    free(in);
    free(batches);
    free(items);
    free(addr_host);
    free(addr_port);
    return status;
}
