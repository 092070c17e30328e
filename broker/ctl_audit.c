/*
 * ctl_audit.c: `hl7ctl audit verify` and `hl7ctl audit tail`, offline
 * commands on the store's hash-chained audit log. They open the store
 * read-only, so they run beside a running broker.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "ctl.h"
#include "store.h"

int cmd_audit(int argc, char **argv);

enum { EXIT_INTACT = 0, EXIT_BROKEN = 1, EXIT_USAGE = 2 };

#define DEFAULT_CONFIG "conf/hl7broker.conf"
#define TAIL_DEFAULT 20

static void audit_usage(FILE *f)
{
    fprintf(f,
        "usage: hl7ctl audit verify [-c CONFIG | --data-dir DIR] [--json]\n"
        "       hl7ctl audit tail [-c CONFIG | --data-dir DIR] [-n N] [--json]\n"
        "\n"
        "The broker's audit log: one record per message accepted, refused or\n"
        "replayed, per pruning run, ..., each holding the time, the actor, the\n"
        "action, the subject, the outcome and details, chained by SHA-256 (each\n"
        "record's hash covers the previous record's hash and its own content).\n"
        "The store is opened read-only: both commands run beside a running broker.\n"
        "\n"
        "  verify            walk the chain from record 1 and report the first record\n"
        "                    that breaks it, and why (changed content, a missing\n"
        "                    record, records removed from the end)\n"
        "  tail              print the last N records, oldest first\n"
        "\n"
        "  -c, --config FILE the broker's config: its broker.data_dir is used\n"
        "                    (default " DEFAULT_CONFIG ")\n"
        "  --data-dir DIR    the store directory itself (no config read)\n"
        "  -n N              records to print (default %d; 0: all)\n"
        "  --json            JSON output (tail: an array of records)\n"
        "  -h, --help        this help\n"
        "\n"
        "Exit status: 0 the chain is intact (tail: printed); 1 the chain is broken\n"
        "(the first broken record and why are printed); 2 a usage error, or the\n"
        "config or the store cannot be opened.\n", TAIL_DEFAULT);
}

struct audit_opts {
    const char *config, *data_dir;
    bool        json;
    uint64_t    n;
};

/* The store under the config's data_dir, or --data-dir, read-only. */
static int open_store(const struct audit_opts *o, struct store **s)
{
    struct config cfg;
    struct config_errors errs = { 0 };
    const char *dir = o->data_dir;
    bool loaded = false;
    if (!dir) {
        int rc = config_load(o->config, &cfg, &errs);
        if (rc != CONFIG_OK) {
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "%s\n", errs.v[i].msg);
            fprintf(stderr, "hl7ctl audit: %s: %s (or give --data-dir)\n", o->config,
                    config_strerror(rc));
            config_errors_free(&errs);
            return -1;
        }
        loaded = true;
        dir = cfg.broker.data_dir;
    }
    char detail[512] = "";
    struct store_opts so = { .dir = dir, .read_only = true };
    int rc = store_open(&so, s, detail, sizeof detail);
    if (rc)
        fprintf(stderr, "hl7ctl audit: cannot open the store: %s\n",
                detail[0] ? detail : store_strerror(rc));
    if (loaded)
        config_free(&cfg);
    return rc ? -1 : 0;
}

static const char *fault_name(int f)
{
    switch (f) {
    case STORE_AUDIT_INTACT:     return "intact";
    case STORE_AUDIT_GAP:        return "missing_record";
    case STORE_AUDIT_BAD_RECORD: return "undecodable_record";
    case STORE_AUDIT_HASH:       return "content_hash_mismatch";
    case STORE_AUDIT_HEAD:       return "head_mismatch";
    }
    return "unknown";
}

static int do_verify(struct store *s, const struct audit_opts *o)
{
    struct store_audit_report r;
    int rc = store_audit_check(s, &r);
    if (rc && rc != STORE_E_CORRUPT) {
        fprintf(stderr, "hl7ctl audit verify: %s\n", store_last_error(s));
        return EXIT_USAGE;
    }
    if (o->json) {
        json_t *j = json_pack("{s:b, s:I, s:I}", "intact", rc == 0,
                              "checked", (json_int_t)r.checked, "head", (json_int_t)r.head_seq);
        if (j && rc) {
            json_object_set_new(j, "broken_seq", json_integer((json_int_t)r.bad_seq));
            json_object_set_new(j, "fault", json_string(fault_name(r.fault)));
            json_object_set_new(j, "why", json_string(r.why));
        }
        char *txt = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (txt)
            puts(txt);
        free(txt);
        json_decref(j);
    } else if (rc == 0) {
        printf("audit chain intact: %llu record%s, head %llu\n",
               (unsigned long long)r.checked, r.checked == 1 ? "" : "s",
               (unsigned long long)r.head_seq);
    } else {
        printf("audit chain BROKEN at record %llu: %s\n", (unsigned long long)r.bad_seq,
               r.why);
        printf("records 1 to %llu hold (%llu checked); the head in meta names %llu\n",
               (unsigned long long)r.checked, (unsigned long long)r.checked,
               (unsigned long long)r.head_seq);
    }
    return rc ? EXIT_BROKEN : EXIT_INTACT;
}

static void fmt_time(uint64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(out, n, "%llu", (unsigned long long)ms);
        return;
    }
    size_t l = strlen(out);
    snprintf(out + l, n - l, ".%03uZ", (unsigned)(ms % 1000));
}

struct tail_ctx {
    bool    json;
    json_t *arr;
};

static int print_record(void *ctx, uint64_t seq, const struct store_audit *a,
                        const uint8_t hash[32])
{
    struct tail_ctx *t = ctx;
    char when[48], hex[65];
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = x[hash[i] >> 4];
        hex[2 * i + 1] = x[hash[i] & 15];
    }
    hex[64] = '\0';
    fmt_time(a->time_ms, when, sizeof when);
    if (t->json) {
        json_t *r = json_pack("{s:I, s:s, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s}",
                              "seq", (json_int_t)seq, "time", when,
                              "time_ms", (json_int_t)a->time_ms, "actor", a->actor,
                              "action", a->action, "subject", a->subject,
                              "outcome", a->outcome, "details", a->details, "hash", hex);
        if (!r || json_array_append_new(t->arr, r))
            return -1;
        return 0;
    }
    printf("%-8llu %-24s %-10s %-14s %-8s ", (unsigned long long)seq, when, a->action,
           a->subject, a->outcome);
    ctl_put_escaped(stdout, a->actor, strlen(a->actor));
    fputs("  ", stdout);
    ctl_put_escaped(stdout, a->details, strlen(a->details));
    printf("  %.16s\n", hex);
    return 0;
}

static int do_tail(struct store *s, const struct audit_opts *o)
{
    struct tail_ctx t = { .json = o->json };
    if (o->json && !(t.arr = json_array())) {
        fprintf(stderr, "hl7ctl audit tail: out of memory\n");
        return EXIT_USAGE;
    }
    if (!o->json)
        printf("%-8s %-24s %-10s %-14s %-8s %s  %s  %s\n", "SEQ", "TIME (UTC)", "ACTION",
               "SUBJECT", "OUTCOME", "ACTOR", "DETAILS", "HASH");
    int rc = store_audit_tail(s, o->n, print_record, &t);
    if (rc) {
        fprintf(stderr, "hl7ctl audit tail: %s\n",
                rc == -1 ? "out of memory" : store_last_error(s));
        json_decref(t.arr);
        return EXIT_USAGE;
    }
    if (o->json) {
        char *txt = json_dumps(t.arr, JSON_INDENT(2));
        if (txt)
            puts(txt);
        free(txt);
        json_decref(t.arr);
    }
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "hl7ctl audit tail: writing output: %s\n", strerror(errno));
        return EXIT_BROKEN;
    }
    return EXIT_INTACT;
}

int cmd_audit(int argc, char **argv)
{
    struct audit_opts o = { .config = DEFAULT_CONFIG, .n = TAIL_DEFAULT };
    if (argc < 2) {
        audit_usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        audit_usage(stdout);
        return 0;
    }
    bool verify = strcmp(sub, "verify") == 0, tail = strcmp(sub, "tail") == 0;
    if (!verify && !tail) {
        fprintf(stderr, "hl7ctl audit: unknown subcommand '%s'\n", sub);
        audit_usage(stderr);
        return EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            audit_usage(stdout);
            return 0;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            o.config = argv[++i];
        } else if (strcmp(a, "--data-dir") == 0 && i + 1 < argc) {
            o.data_dir = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (tail && strcmp(a, "-n") == 0 && i + 1 < argc) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (errno || *end || !argv[i][0] || argv[i][0] == '-') {
                fprintf(stderr, "hl7ctl audit tail: -n wants a number (0: all)\n");
                return EXIT_USAGE;
            }
            o.n = v;
        } else {
            fprintf(stderr, "hl7ctl audit %s: unknown option or missing value: %s\n", sub, a);
            audit_usage(stderr);
            return EXIT_USAGE;
        }
    }
    struct store *s;
    if (open_store(&o, &s))
        return EXIT_USAGE;
    int rc = verify ? do_verify(s, &o) : do_tail(s, &o);
    store_close(s);
    return rc;
}
