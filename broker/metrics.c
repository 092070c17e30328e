/*
 * metrics.c: histograms and the Prometheus text format writer (see
 * include/metrics.h).
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int metrics_hist_init(struct metrics_hist *h, const double *bounds, unsigned n)
{
    if (n > METRICS_HIST_MAX)
        return -1;
    for (unsigned i = 0; i < n; i++)
        if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1]))
            return -1;
    memset(h, 0, sizeof *h);
    h->n = n;
    if (n)
        memcpy(h->bounds, bounds, n * sizeof *bounds);
    return 0;
}

void metrics_hist_init_latency(struct metrics_hist *h)
{
    static const double b[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                1, 2.5, 5, 10, 30, 60, 300, 900, 3600 };
    metrics_hist_init(h, b, sizeof b / sizeof b[0]);
}

void metrics_hist_init_batch(struct metrics_hist *h)
{
    double b[13];
    for (unsigned i = 0; i < 13; i++)
        b[i] = (double)(1u << i);
    metrics_hist_init(h, b, 13);
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
    if (isnan(v))
        return;
    unsigned i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

int metrics_hist_add(struct metrics_hist *a, const struct metrics_hist *b)
{
    if (a->n == 0 && a->count == 0) {
        double sum = a->sum;
        *a = *b;
        a->sum += sum;
        return 0;
    }
    if (a->n != b->n || memcmp(a->bounds, b->bounds, a->n * sizeof a->bounds[0]) != 0)
        return -1;
    for (unsigned i = 0; i <= a->n; i++)
        a->counts[i] += b->counts[i];
    a->count += b->count;
    a->sum += b->sum;
    return 0;
}

/* ------------------------------------------------------------ the format */

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

bool metrics_valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, true))
            return false;
    return true;
}

bool metrics_valid_label_name(const char *s)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0)
        return false;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, false))
            return false;
    return true;
}

int metrics_escape_label_value(struct buf *out, const char *s)
{
    int rc = 0;
    for (; s && *s && !rc; s++) {
        if (*s == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*s == '"')
            rc = buf_puts(out, "\\\"");
        else if (*s == '\n')
            rc = buf_puts(out, "\\n");
        else
            rc = buf_putc(out, *s);
    }
    return rc;
}

/* HELP text escapes only \ and newline. */
static int escape_help(struct buf *out, const char *s)
{
    int rc = 0;
    for (; s && *s && !rc; s++) {
        if (*s == '\\')
            rc = buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = buf_puts(out, "\\n");
        else
            rc = buf_putc(out, *s);
    }
    return rc;
}

int metrics_format_double(struct buf *out, double v)
{
    if (isnan(v))
        return buf_puts(out, "NaN");
    if (isinf(v))
        return buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    if (v == floor(v) && fabs(v) < 9007199254740992.0)   /* 2^53: exact integers */
        return buf_printf(out, "%.0f", v);
    char tmp[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return buf_puts(out, tmp);
}

void metrics_begin(struct metrics_writer *w, struct buf *out)
{
    memset(w, 0, sizeof *w);
    w->out = out;
}

static const char *type_name(enum metrics_type t)
{
    return t == METRICS_COUNTER ? "counter" : t == METRICS_GAUGE ? "gauge" : "histogram";
}

void metrics_family(struct metrics_writer *w, const char *name, enum metrics_type type,
                    const char *help)
{
    if (w->err)
        return;
    if (!metrics_valid_name(name) || strlen(name) >= sizeof w->family - 16) {
        w->err = -1;
        return;
    }
    snprintf(w->family, sizeof w->family, "%s", name);
    w->type = type;
    if (buf_printf(w->out, "# HELP %s ", name) || escape_help(w->out, help ? help : "") ||
        buf_printf(w->out, "\n# TYPE %s %s\n", name, type_name(type)))
        w->err = -1;
}

/* name{labels[,extra]} */
static int series(struct metrics_writer *w, const char *suffix, const struct metrics_label *l,
                  size_t n, const struct metrics_label *extra)
{
    int rc = buf_printf(w->out, "%s%s", w->family, suffix);
    if (!rc && (n || extra)) {
        rc = buf_putc(w->out, '{');
        for (size_t i = 0; i < n + (extra != NULL) && !rc; i++) {
            const struct metrics_label *x = i < n ? &l[i] : extra;
            if (i < n) {   /* the caller's: valid, not "le", none twice */
                if (!metrics_valid_label_name(x->name) || strcmp(x->name, "le") == 0)
                    return -1;
                for (size_t j = 0; j < i; j++)
                    if (strcmp(l[j].name, x->name) == 0)
                        return -1;
            }
            rc = buf_printf(w->out, "%s%s=\"", i ? "," : "", x->name) ||
                 metrics_escape_label_value(w->out, x->value) || buf_putc(w->out, '"');
        }
        if (!rc)
            rc = buf_putc(w->out, '}');
    }
    return rc ? -1 : buf_putc(w->out, ' ');
}

void metrics_sample(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                    double value)
{
    if (w->err)
        return;
    if (!w->family[0] || w->type == METRICS_HISTOGRAM || series(w, "", labels, n, NULL) ||
        metrics_format_double(w->out, value) || buf_putc(w->out, '\n'))
        w->err = -1;
}

void metrics_sample_u64(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                        uint64_t value)
{
    if (w->err)
        return;
    if (!w->family[0] || w->type == METRICS_HISTOGRAM || series(w, "", labels, n, NULL) ||
        buf_printf(w->out, "%llu\n", (unsigned long long)value))
        w->err = -1;
}

void metrics_histogram(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                       const struct metrics_hist *h)
{
    if (w->err)
        return;
    if (!w->family[0] || w->type != METRICS_HISTOGRAM || h->n > METRICS_HIST_MAX) {
        w->err = -1;
        return;
    }
    uint64_t cum = 0;
    struct buf le = { 0 };
    for (unsigned i = 0; i <= h->n && !w->err; i++) {
        cum += h->counts[i];
        buf_reset(&le);
        if (metrics_format_double(&le, i < h->n ? h->bounds[i] : INFINITY) || !le.p)
            w->err = -1;
        struct metrics_label x = { "le", le.p };
        if (w->err || series(w, "_bucket", labels, n, &x) ||
            buf_printf(w->out, "%llu\n", (unsigned long long)cum))
            w->err = -1;
    }
    buf_free(&le);
    if (w->err)
        return;
    /* +Inf equals _count by construction: count is the sum of counts */
    if (series(w, "_sum", labels, n, NULL) || metrics_format_double(w->out, h->sum) ||
        buf_putc(w->out, '\n') || series(w, "_count", labels, n, NULL) ||
        buf_printf(w->out, "%llu\n", (unsigned long long)cum))
        w->err = -1;
}

int metrics_end(struct metrics_writer *w)
{
    return w->err ? -1 : 0;
}
