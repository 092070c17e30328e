/*
 * metrics.h: what the broker counts for operators (DESIGN.md §7):
 * fixed-bucket histograms that ingest and delivery fill on the loop
 * thread, and a writer of the Prometheus text exposition format 0.0.4
 * that the admin server's /metrics uses.
 */
#ifndef HL7BROKER_METRICS_H
#define HL7BROKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* ---------------------------------------------------------- histograms */

#define METRICS_HIST_MAX 24   /* finite bucket bounds at most */

/* A histogram: bounds[0..n) increasing upper bounds; counts[i] the
 * observations in (bounds[i-1], bounds[i]], counts[n] those above the
 * last (+Inf). Not cumulative: the writer adds them up. Plain data: copy
 * it by value. A zeroed one has no buckets but +Inf (still valid). */
struct metrics_hist {
    unsigned n;
    double   bounds[METRICS_HIST_MAX];
    uint64_t counts[METRICS_HIST_MAX + 1];
    double   sum;
    uint64_t count;
};

/* Set up empty with these bounds (n <= METRICS_HIST_MAX, increasing,
 * finite). Returns 0, or -1 when they are not. */
int  metrics_hist_init(struct metrics_hist *h, const double *bounds, unsigned n);
/* Latencies in seconds: 1 ms to 1 hour. */
void metrics_hist_init_latency(struct metrics_hist *h);
/* Batch sizes: 1, 2, 4 .. 4096. */
void metrics_hist_init_batch(struct metrics_hist *h);
/* Count one value (NaN is ignored; negative counts in the first bucket). */
void metrics_hist_observe(struct metrics_hist *h, double v);
/* Add b's counts into a (a sum across restarts of a component). Returns
 * -1, changing nothing, when their bounds differ (a zeroed a takes b's). */
int  metrics_hist_add(struct metrics_hist *a, const struct metrics_hist *b);

/* ------------------------------------------------- Prometheus text format
 *
 * A family is announced once with metrics_family() (its HELP and TYPE
 * lines) and its samples follow it, together: callers write family by
 * family. Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]*; label values are escaped (\\, \", \n). A
 * mistake (a bad name, a sample of another family, no memory) is sticky:
 * metrics_end() then returns -1 and the output must not be served. */

struct metrics_label {
    const char *name;
    const char *value;
};

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics_writer {
    struct buf       *out;
    char              family[128];
    enum metrics_type type;
    int               err;
};

void metrics_begin(struct metrics_writer *w, struct buf *out);
void metrics_family(struct metrics_writer *w, const char *name, enum metrics_type type,
                    const char *help);
/* A counter or gauge sample of the current family. */
void metrics_sample(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                    double value);
void metrics_sample_u64(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                        uint64_t value);
/* A histogram series of the current family: _bucket{...,le="b"} for each
 * bound (cumulative) and +Inf, then _sum and _count. */
void metrics_histogram(struct metrics_writer *w, const struct metrics_label *labels, size_t n,
                       const struct metrics_hist *h);
/* 0, or -1 when a mistake was made along the way. */
int  metrics_end(struct metrics_writer *w);

/* Helpers the writer uses, exposed for tests. */
bool metrics_valid_name(const char *s);
bool metrics_valid_label_name(const char *s);
int  metrics_escape_label_value(struct buf *out, const char *s);
/* A float as Prometheus reads it: shortest round-trip text, +Inf, -Inf, NaN. */
int  metrics_format_double(struct buf *out, double v);

#endif
