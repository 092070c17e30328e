/*
 * hl7ctl.c: the command-line face of hl7broker. Offline commands work on
 * files (parse); online ones, added as the broker grows, talk to the
 * admin API.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ctl.h"
#include "hl7.h"
#include "version.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const char *prog = "hl7ctl";

/* ---------------------------------------------------------------- input */

static void print_error(const char *file, size_t msgno, const struct hl7_error *e)
{
    fprintf(stderr, "%s: %s: message %zu: ", prog, file, msgno);
    if (e->segment[0]) {
        fprintf(stderr, "segment %s", e->segment);
        if (e->seg_seq > 1)
            fprintf(stderr, "[%u]", e->seg_seq);
        if (e->field)
            fprintf(stderr, ", field %s-%u", e->segment, e->field);
        fprintf(stderr, ", ");
    }
    fprintf(stderr, "byte offset %zu: %s (%s)\n", e->offset, e->text, hl7_strerror(e->code));
}

/* ---------------------------------------------------------------- parse */

struct printer {
    const struct hl7_delims *d;
    struct buf line, val;
    FILE *out;
};

static bool only_delims(const struct hl7_delims *d, const struct hl7_span *s)
{
    for (size_t i = 0; i < s->len; i++) {
        char c = s->p[i];
        if (c != d->component && c != d->repetition && c != d->subcomponent)
            return false;
    }
    return true;
}

static int print_node(void *ctx, enum hl7_node kind, const struct hl7_path *path,
                      const struct hl7_span *raw, bool leaf)
{
    struct printer *pr = ctx;
    if (kind == HL7_NODE_SEGMENT) {
        fprintf(pr->out, "%.3s", path->seg);
        if (path->seg_seq > 1)
            fprintf(pr->out, "[%u]", path->seg_seq);
        fputc('\n', pr->out);
        return 0;
    }
    if (raw->len == 0 || only_delims(pr->d, raw))
        return 0;
    int depth = 1;
    if (kind == HL7_NODE_REP)
        depth = 2;
    else if (kind == HL7_NODE_COMP)
        depth = path->rep ? 3 : 2;
    else if (kind == HL7_NODE_SUB)
        depth = path->rep ? 4 : 3;
    buf_reset(&pr->line);
    struct hl7_path p = *path;
    p.seg_seq = path->seg_seq > 1 ? path->seg_seq : 0;
    hl7_path_format(&p, &pr->line);
    fprintf(pr->out, "%*s%s", depth * 2, "", pr->line.p);
    if (leaf) {
        buf_reset(&pr->val);
        bool literal = path->field <= 2 && (memcmp(path->seg, "MSH", 3) == 0
                                            || memcmp(path->seg, "FHS", 3) == 0
                                            || memcmp(path->seg, "BHS", 3) == 0);
        if (literal)
            buf_append(&pr->val, raw->p, raw->len);
        else
            hl7_unescape(pr->d, raw->p, raw->len, &pr->val);
        fputs(" = ", pr->out);
        ctl_put_escaped(pr->out, pr->val.p ? pr->val.p : "", pr->val.len);
    }
    fputc('\n', pr->out);
    return 0;
}

static void parse_usage(FILE *f)
{
    fprintf(f,
        "usage: %s parse [--max-bytes N] FILE...\n"
        "\n"
        "Parse HL7 v2 messages and print each as a tree: one line per segment,\n"
        "then one line per non-empty value with its path and decoded value\n"
        "(PID-5.1 = O'NEILL). Composite values show their path alone, above\n"
        "their parts. A file may hold one message, several, or FHS/BHS\n"
        "batches; each message is printed on its own. FILE '-' reads standard\n"
        "input.\n"
        "\n"
        "  --max-bytes N   refuse inputs larger than N bytes (default %zu)\n"
        "  -h, --help      this help\n"
        "\n"
        "Exit status: 0 when every message parses; 1 when any does not (the\n"
        "error names the file, message, segment, field and byte offset); 2 for\n"
        "a usage error.\n", prog, (size_t)HL7_DEFAULT_MAX);
}

static int cmd_parse(int argc, char **argv)
{
    size_t max = HL7_DEFAULT_MAX;
    int first = 1;
    for (; first < argc; first++) {
        const char *a = argv[first];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            parse_usage(stdout);
            return 0;
        } else if (strcmp(a, "--max-bytes") == 0 && first + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++first], &end, 10);
            if (errno || *end || v == 0 || v > HL7_HARD_MAX) {
                fprintf(stderr, "%s parse: --max-bytes wants a number from 1 to %zu\n",
                        prog, (size_t)HL7_HARD_MAX);
                return 2;
            }
            max = (size_t)v;
        } else if (strcmp(a, "--") == 0) {
            first++;
            break;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s parse: unknown option %s\n", prog, a);
            parse_usage(stderr);
            return 2;
        } else {
            break;
        }
    }
    if (first >= argc) {
        parse_usage(stderr);
        return 2;
    }
    int status = 0;
    struct printer pr = { .out = stdout };
    for (int i = first; i < argc; i++) {
        const char *file = argv[i];
        struct buf in = { 0 };
        if (ctl_read_input(prog, file, max, &in)) {
            status = 1;
            buf_free(&in);
            continue;
        }
        struct hl7_batch batch;
        struct hl7_error err = { 0 };
        int rc = hl7_batch_split(in.p ? in.p : "", in.len, &batch, &err);
        if (rc && rc != HL7_E_BATCH_COUNT) {
            print_error(file, 1, &err);
            status = 1;
            buf_free(&in);
            continue;
        }
        if (rc == HL7_E_BATCH_COUNT) {
            fprintf(stderr, "%s: %s: segment %s, byte offset %zu: %s\n", prog, file,
                    err.segment, err.offset, err.text);
            status = 1;
        }
        for (size_t k = 0; k < batch.count; k++) {
            struct hl7_msg *m;
            struct hl7_parse_opts o = { .max_bytes = max };
            struct hl7_error perr = { 0 };
            const struct hl7_span *s = &batch.msgs[k];
            size_t base = (size_t)(s->p - in.p);
            if (hl7_parse(s->p, s->len, &o, &m, &perr)) {
                perr.offset += base;
                print_error(file, k + 1, &perr);
                status = 1;
                continue;
            }
            printf("# %s: message %zu of %zu (%zu bytes at offset %zu)\n", file, k + 1,
                   batch.count, s->len, base);
            pr.d = hl7_msg_delims(m);
            hl7_walk(m, print_node, &pr);
            hl7_free(m);
        }
        hl7_batch_free(&batch);
        buf_free(&in);
    }
    buf_free(&pr.line);
    buf_free(&pr.val);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
        return 1;
    }
    return status;
}

/* ---------------------------------------------------------------- main */

int cmd_send(int argc, char **argv);   /* ctl_send.c */
int cmd_route_test(int argc, char **argv);   /* ctl_route.c */
int cmd_audit(int argc, char **argv);        /* ctl_audit.c */
/* ctl_admin.c: online commands (the admin API) and check-config */
int cmd_stats(int, char **), cmd_queues(int, char **), cmd_search(int, char **),
    cmd_show(int, char **), cmd_replay(int, char **), cmd_dead(int, char **),
    cmd_pause(int, char **), cmd_resume(int, char **), cmd_reload(int, char **),
    cmd_check_config(int, char **), cmd_objection(int, char **);

static const struct command commands[] = {
    { "parse", cmd_parse, "print HL7 v2 messages as a tree of paths and values" },
    { "send", cmd_send, "send HL7 v2 messages over MLLP (or TLS) and print each ACK" },
    { "route-test", cmd_route_test, "run a config's routes on messages: what matches, why not, the bytes sent" },
    { "audit", cmd_audit, "verify the audit log's hash chain, or print its last records" },
    { "check-config", cmd_check_config, "validate a config file offline (as hl7brokerd --check)" },
    { "stats", cmd_stats, "online: sources and destinations with their counters" },
    { "queues", cmd_queues, "online: every destination's queue, or one's entries" },
    { "search", cmd_search, "online: find stored messages (NHS number, control id, type, time...)" },
    { "show", cmd_show, "online: one message, its segments and deliveries (--raw: its bytes)" },
    { "replay", cmd_replay, "online: queue a message again, to where it went or --to DEST" },
    { "dead", cmd_dead, "online: dead letters: list, requeue or purge DEST [--seq N]" },
    { "pause", cmd_pause, "online: stop delivery to a destination" },
    { "resume", cmd_resume, "online: restart delivery to a destination" },
    { "reload", cmd_reload, "online: read the broker's config again (as SIGHUP)" },
    { "objection", cmd_objection, "online: the objections register: list, add or remove" },
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: %s [--version] [--help] COMMAND [ARGS...]\n"
        "\n"
        "hl7ctl is the command line of the hl7broker HL7 v2 and ITK broker.\n"
        "\n"
        "Commands:\n", prog);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'%s COMMAND --help' explains a command. Online commands take --url URL,\n"
               "--token TOKEN or --token-file FILE, --ca FILE and --json (the API's own\n"
               "JSON); HL7BROKER_URL (default http://127.0.0.1:8088) and HL7BROKER_TOKEN\n"
               "set them from the environment. Exit status of online commands: 0 ok,\n"
               "1 not found or failed, 2 usage, 3 broker unreachable, 4 token refused.\n", prog);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(c, "--version") == 0 || strcmp(c, "version") == 0) {
        printf("hl7ctl %s\n", HL7BROKER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(c, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n", prog, c);
    usage(stderr);
    return 2;
}
