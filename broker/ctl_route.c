/*
 * ctl_route.c: `hl7ctl route-test`, the routes of a config tried offline
 * on message files: which routes take each message, why the others do
 * not, and the exact bytes each destination would receive.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "buf.h"
#include "ctl.h"
#include "config.h"
#include "hl7.h"
#include "itk.h"
#include "route.h"

int cmd_route_test(int argc, char **argv);

enum { EXIT_RAN = 0, EXIT_BAD_MESSAGE = 1, EXIT_CONFIG = 2 };

static const char *prog = "hl7ctl route-test";

static void route_test_usage(FILE *f)
{
    fprintf(f,
        "usage: hl7ctl route-test -c CONFIG [--source NAME] [--route NAME] [--raw] MESSAGE...\n"
        "\n"
        "Run the routes of CONFIG on each message, as the broker would at ingest,\n"
        "and print for every route whether it takes the message; for those that do\n"
        "not, the clause of `when` that failed (or the source it does not take);\n"
        "for those that do, the destinations and the exact bytes they would receive:\n"
        "ER7 one segment a line (each is sent ending in CR; control bytes are shown\n"
        "as \\r, \\n, \\t, \\xHH), JSON one segment a line (it is sent compact, as\n"
        "one line). A MESSAGE file may hold one message, several, or FHS/BHS\n"
        "batches; '-' reads standard input. A file that starts with '<' is an ITK\n"
        "request (a SOAP envelope or a bare DistributionEnvelope): its metadata\n"
        "(itk.service, itk.address, ..., cda.nhs_number) is printed first, and\n"
        "XML payloads are shown one line a line. Nothing is sent and nothing is\n"
        "stored.\n"
        "\n"
        "  -c, --config FILE  the broker's config file (required)\n"
        "  --source NAME      the source the messages come from; routes that do not\n"
        "                     take it say so (default: any source)\n"
        "  --route NAME       show only this route\n"
        "  --raw              write only the bytes destinations would receive, exactly,\n"
        "                     to standard output (one payload after another, for each\n"
        "                     route that matches: use --route to pick one); the report\n"
        "                     goes to standard error\n"
        "  -h, --help         this help\n"
        "\n"
        "Exit status: 0 when every message was run through the routes (whatever\n"
        "matched); 1 when a message cannot be read or does not parse (the others are\n"
        "still run); 2 for a usage error or an invalid config (every error is\n"
        "printed as FILE:LINE: ...).\n");
}

struct rt_opts {
    const char *config, *source, *route;
    bool        raw;
};

static void show_er7(FILE *out, const char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '\r')
            continue;
        if (i > start || i < n) {
            fputs("    ", out);
            ctl_put_escaped(out, p + start, i - start);
            fputc('\n', out);
        }
        start = i + 1;
    }
}

/* JSON as the report shows it: one segment a line, as ER7 is shown. */
static void show_json(FILE *out, const char *p, size_t n)
{
    json_error_t e;
    json_t *j = json_loadb(p, n, JSON_ALLOW_NUL, &e);
    json_t *segs = j ? json_object_get(j, "segments") : NULL;
    if (!json_is_array(segs) || json_object_size(j) != 1) {
        fputs("    ", out);      /* not our shape: show it as it is */
        ctl_put_escaped(out, p, n);
        fputc('\n', out);
        json_decref(j);
        return;
    }
    fputs("    {\"segments\": [\n", out);
    for (size_t i = 0; i < json_array_size(segs); i++) {
        char *line = json_dumps(json_array_get(segs, i), 0);
        fputs("      ", out);
        if (line)
            ctl_put_escaped(out, line, strlen(line));
        fputs(i + 1 < json_array_size(segs) ? ",\n" : "\n", out);
        free(line);
    }
    fputs("    ]}\n", out);
    json_decref(j);
}

/* XML (an ITK request or envelope): after an optional UTF-8 byte order
 * mark and white space, '<'. */
static bool starts_xml(const char *p, size_t n)
{
    size_t i = 0;
    if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i < n && p[i] == '<';
}

/* Text shown one line (ending in LF or CRLF) a line. */
static void show_lines(FILE *out, const char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '\n')
            continue;
        size_t end = i > start && p[i - 1] == '\r' ? i - 1 : i;
        if (i > start || i < n) {
            fputs("    ", out);
            ctl_put_escaped(out, p + start, end - start);
            fputc('\n', out);
        }
        start = i + 1;
    }
}

struct run {
    const struct rt_opts *o;
    const struct config  *cfg;
    FILE                 *report;     /* stdout, or stderr with --raw */
    size_t                index;      /* of the route, in config order */
    int                   matched;
};

static void on_result(void *ctx, const struct route_result *res)
{
    struct run *r = ctx;
    const struct config_route *cr = &r->cfg->routes[r->index++];
    if (r->o->route && strcmp(r->o->route, res->route) != 0)
        return;
    FILE *out = r->report;
    fprintf(out, "%s: ", res->route);
    switch (res->verdict) {
    case ROUTE_NOT_FROM_SOURCE:
        fprintf(out, "not from source %s (it takes", r->o->source);
        for (size_t i = 0; i < cr->from.n; i++)
            fprintf(out, "%s %s", i ? "," : "", cr->from.v[i]);
        fputs(")\n", out);
        break;
    case ROUTE_FILTERED:
        fputs("filtered: ", out);
        ctl_put_escaped(out, res->why, strlen(res->why));
        fputc('\n', out);
        break;
    case ROUTE_ERROR:
        fputs("error: ", out);
        ctl_put_escaped(out, res->why, strlen(res->why));
        fprintf(out, " (on_transform_error = %s: the message would be stored and answered %s)\n",
                res->accept_errors ? "accept" : "refuse", res->accept_errors ? "AA" : "AE");
        break;
    case ROUTE_MATCHED: {
        bool json = res->payload_len && res->payload[0] == '{';
        bool xml = res->payload_len && starts_xml(res->payload, res->payload_len);
        r->matched++;
        fputs("matched: to", out);
        for (size_t i = 0; i < res->n_to; i++)
            fprintf(out, "%s %s", i ? "," : "", res->to[i]);
        fprintf(out, " (%s, %zu bytes)\n", json ? "json" : xml ? "xml" : "er7",
                res->payload_len);
        if (r->o->raw)
            fwrite(res->payload, 1, res->payload_len, stdout);
        else if (json)
            show_json(out, res->payload, res->payload_len);
        else if (xml)
            show_lines(out, res->payload, res->payload_len);
        else
            show_er7(out, res->payload, res->payload_len);
        break;
    }
    }
}

static void print_parse_error(const char *file, size_t msgno, const struct hl7_error *e)
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

/* An ITK request: its metadata, then the routes. Returns 0, or 1 when it
 * is not a valid request. */
static int run_itk(const char *file, const struct buf *in, const struct router *router,
                   struct run *r)
{
    struct itk_envelope *env = NULL;
    struct itk_error err = { 0 };
    if (itk_parse(in->p, in->len, NULL, &env, &err)) {
        fprintf(stderr, "%s: %s: not a valid ITK request (ITK error %s): %s\n", prog, file,
                err.itk_code, err.msg);
        return EXIT_BAD_MESSAGE;
    }
    FILE *out = r->report;
    fprintf(out, "# %s: ITK request %s", file, env->tracking_id ? env->tracking_id : "");
    if (r->o->source)
        fprintf(out, " from %s", r->o->source);
    fputc('\n', out);
    for (size_t k = 0; route_itk_paths[k]; k++) {
        const char *name = route_itk_paths[k];
        const char *v = route_itk_value(env, name, 0);
        fprintf(out, "#   %s", name);
        if (!v) {
            fputs(" absent\n", out);
            continue;
        }
        for (size_t i = 0; v; v = route_itk_value(env, name, ++i)) {
            fputs(i ? ", '" : " = '", out);
            ctl_put_escaped(out, v, strlen(v));
            fputc('\'', out);
        }
        fputc('\n', out);
    }
    r->index = 0;
    r->matched = 0;
    router_run_itk(router, r->o->source, env, in->p, in->len, on_result, r);
    if (!r->o->route)
        fprintf(out, "= %d of %zu routes matched\n", r->matched, r->cfg->n_routes);
    itk_free(env);
    return 0;
}

/* Run every message of one file. Returns 0, or 1 when one did not parse. */
static int run_file(const char *file, const struct router *router, struct run *r)
{
    struct buf in = { 0 };
    int status = 0;
    if (ctl_read_input(prog, file, HL7_DEFAULT_MAX, &in)) {
        buf_free(&in);
        return EXIT_BAD_MESSAGE;
    }
    if (in.len && starts_xml(in.p, in.len)) {
        status = run_itk(file, &in, router, r);
        buf_free(&in);
        return status;
    }
    struct hl7_batch batch;
    struct hl7_error err = { 0 };
    int rc = hl7_batch_split(in.p ? in.p : "", in.len, &batch, &err);
    if (rc && rc != HL7_E_BATCH_COUNT) {
        print_parse_error(file, 1, &err);
        buf_free(&in);
        return EXIT_BAD_MESSAGE;
    }
    if (rc == HL7_E_BATCH_COUNT)
        fprintf(stderr, "%s: %s: segment %s, byte offset %zu: %s (the messages are run "
                "anyway)\n", prog, file, err.segment, err.offset, err.text);
    for (size_t k = 0; k < batch.count; k++) {
        const struct hl7_span *s = &batch.msgs[k];
        struct hl7_msg *m;
        struct hl7_error perr = { 0 };
        if (hl7_parse(s->p, s->len, &(struct hl7_parse_opts){ .max_bytes = HL7_HARD_MAX },
                      &m, &perr)) {
            perr.offset += (size_t)(s->p - in.p);
            print_parse_error(file, k + 1, &perr);
            status = EXIT_BAD_MESSAGE;
            continue;
        }
        struct hl7_meta meta;
        hl7_meta(m, &meta);
        fprintf(r->report, "# %s: message %zu of %zu: %.*s^%.*s %.*s", file, k + 1,
                batch.count, (int)meta.code.len, meta.code.p ? meta.code.p : "",
                (int)meta.trigger.len, meta.trigger.p ? meta.trigger.p : "",
                (int)meta.control_id.len, meta.control_id.p ? meta.control_id.p : "");
        if (r->o->source)
            fprintf(r->report, " from %s", r->o->source);
        fputc('\n', r->report);
        hl7_free(m);
        r->index = 0;
        r->matched = 0;
        if (router_run(router, r->o->source, s->p, s->len, on_result, r) < 0) {
            fprintf(stderr, "%s: %s: message %zu: does not parse\n", prog, file, k + 1);
            status = EXIT_BAD_MESSAGE;
            continue;
        }
        if (!r->o->route)
            fprintf(r->report, "= %d of %zu routes matched\n", r->matched, r->cfg->n_routes);
    }
    hl7_batch_free(&batch);
    buf_free(&in);
    return status;
}

static void print_route_error(void *ctx, const struct route_error *e)
{
    (void)ctx;
    fprintf(stderr, "%s\n", e->msg);
}

int cmd_route_test(int argc, char **argv)
{
    struct rt_opts o = { 0 };
    int first = 1;
    for (; first < argc; first++) {
        const char *a = argv[first];
        bool has_arg = first + 1 < argc;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            route_test_usage(stdout);
            return 0;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && has_arg) {
            o.config = argv[++first];
        } else if (strcmp(a, "--source") == 0 && has_arg) {
            o.source = argv[++first];
        } else if (strcmp(a, "--route") == 0 && has_arg) {
            o.route = argv[++first];
        } else if (strcmp(a, "--raw") == 0) {
            o.raw = true;
        } else if (strcmp(a, "--") == 0) {
            first++;
            break;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option %s (or it needs a value)\n", prog, a);
            route_test_usage(stderr);
            return EXIT_CONFIG;
        } else {
            break;
        }
    }
    if (!o.config || first >= argc) {
        fprintf(stderr, "%s: %s\n", prog, !o.config ? "-c CONFIG is required"
                                                    : "no message file given");
        route_test_usage(stderr);
        return EXIT_CONFIG;
    }

    struct config cfg;
    struct config_errors errs = { 0 };
    if (config_load(o.config, &cfg, &errs) != CONFIG_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.v[i].msg);
        fprintf(stderr, "%s: %s: %zu error%s\n", prog, o.config, errs.n,
                errs.n == 1 ? "" : "s");
        config_errors_free(&errs);
        return EXIT_CONFIG;
    }
    int status = EXIT_RAN;
    struct router *router = NULL;
    if (o.source && !config_find_source(&cfg, o.source)) {
        fprintf(stderr, "%s: %s has no source named \"%s\"\n", prog, o.config, o.source);
        status = EXIT_CONFIG;
        goto out;
    }
    if (o.route) {
        size_t i = 0;
        while (i < cfg.n_routes && strcmp(cfg.routes[i].name, o.route) != 0)
            i++;
        if (i == cfg.n_routes) {
            fprintf(stderr, "%s: %s has no route named \"%s\"\n", prog, o.config, o.route);
            status = EXIT_CONFIG;
            goto out;
        }
    }
    if (!(router = router_new(&cfg, print_route_error, NULL))) {
        fprintf(stderr, "%s: %s: the routes do not compile\n", prog, o.config);
        status = EXIT_CONFIG;
        goto out;
    }
    struct run r = { .o = &o, .cfg = &cfg, .report = o.raw ? stderr : stdout };
    for (int i = first; i < argc; i++)
        if (run_file(argv[i], router, &r))
            status = EXIT_BAD_MESSAGE;
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: writing output: %s\n", prog, strerror(errno));
        status = EXIT_BAD_MESSAGE;
    }
out:
    router_free(router);
    config_free(&cfg);
    return status;
}
