/*
 * bench_hl7.c: codec throughput on one core, for `make bench`. For each
 * sample message and for a generated large ORU (hundreds of OBX): parse +
 * index, a path lookup, and serialise (unedited and after one edit).
 * Prints a markdown table and one machine-readable "BENCH" line per row.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hl7.h"

enum { LARGE_OBX = 500, MAX_INPUTS = 64 };

struct input {
    char        name[64];
    char       *data;
    size_t      len;
    bool        batch;          /* FHS/BHS file: split, then parse each */
    const char *lookup;         /* path text read in the lookup test */
    const char *edit;           /* path set before the edited serialise */
};

struct result {
    double parse_mbps, parse_msgs;
    double lookups;             /* per second */
    double ser_mbps, ser_edit_mbps;
};

static double target_secs = 0.3;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Stay on the CPU we started on, so every figure is one core's. */
static int pin_one_core(void)
{
#ifdef __linux__
    int cpu = sched_getcpu();
    if (cpu < 0)
        cpu = 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == 0)
        return cpu;
#endif
    return -1;
}

static volatile size_t sink;   /* keeps the optimiser from dropping work */

/* ------------------------------------------------------------- workloads */

static int parse_once(const struct input *in)
{
    if (!in->batch) {
        struct hl7_msg *m;
        if (hl7_parse(in->data, in->len, NULL, &m, NULL) != 0)
            return -1;
        sink += hl7_segment_count(m, NULL);
        hl7_free(m);
        return 0;
    }
    struct hl7_batch b;
    int rc = hl7_batch_split(in->data, in->len, &b, NULL);
    if (rc != 0 && rc != HL7_E_BATCH_COUNT)
        return -1;
    for (size_t i = 0; i < b.count; i++) {
        struct hl7_msg *m;
        if (hl7_parse(b.msgs[i].p, b.msgs[i].len, NULL, &m, NULL) != 0) {
            hl7_batch_free(&b);
            return -1;
        }
        sink += hl7_segment_count(m, NULL);
        hl7_free(m);
    }
    hl7_batch_free(&b);
    return 0;
}

/* Run fn until target_secs have passed; returns calls per second. */
#define MEASURE(rate, body)                                              \
    do {                                                                 \
        size_t n_ = 0, batch_ = 1;                                       \
        double t0_ = now(), el_;                                         \
        for (;;) {                                                       \
            for (size_t k_ = 0; k_ < batch_; k_++) {                     \
                body;                                                    \
            }                                                            \
            n_ += batch_;                                                \
            el_ = now() - t0_;                                           \
            if (el_ >= target_secs)                                      \
                break;                                                   \
            if (el_ < target_secs / 8)                                   \
                batch_ *= 2;                                             \
        }                                                                \
        (rate) = (double)n_ / el_;                                       \
    } while (0)

static int bench_one(const struct input *in, struct result *r)
{
    memset(r, 0, sizeof *r);
    if (parse_once(in) != 0)
        return -1;

    double rate;
    int failed = 0;
    MEASURE(rate, failed |= parse_once(in));
    if (failed)
        return -1;
    r->parse_msgs = rate;
    r->parse_mbps = rate * (double)in->len / 1e6;

    if (in->batch)
        return 0;    /* lookups and serialise are per message */

    struct hl7_msg *m;
    if (hl7_parse(in->data, in->len, NULL, &m, NULL) != 0)
        return -1;
    struct hl7_path path;
    if (hl7_path_parse(in->lookup, strlen(in->lookup), &path, NULL) != 0) {
        hl7_free(m);
        return -1;
    }
    struct hl7_span s;
    if (hl7_get(m, &path, &s) == HL7_ABSENT)
        fprintf(stderr, "bench: %s: %s is absent\n", in->name, in->lookup);
    MEASURE(rate, sink += hl7_get(m, &path, &s); sink += s.len);
    r->lookups = rate;

    struct buf b = {0};
    MEASURE(rate, buf_reset(&b); hl7_serialise(m, 0, &b); sink += b.len);
    r->ser_mbps = rate * (double)b.len / 1e6;

    struct hl7_path ep;
    static const char val[] = "BENCH-EDITED-0001";
    if (hl7_path_parse(in->edit, strlen(in->edit), &ep, NULL) == 0 &&
        hl7_set(m, &ep, val, sizeof val - 1, NULL) == 0) {
        MEASURE(rate, buf_reset(&b); hl7_serialise(m, 0, &b); sink += b.len);
        r->ser_edit_mbps = rate * (double)b.len / 1e6;
    }
    buf_free(&b);
    hl7_free(m);
    return 0;
}

/* ---------------------------------------------------------------- inputs */

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct buf b = {0};
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (buf_append(&b, chunk, n) != 0) {
            rc = -1;
            break;
        }
    if (ferror(f))
        rc = -1;
    fclose(f);
    if (rc) {
        buf_free(&b);
        return -1;
    }
    *data = buf_take(&b, len);
    return *data ? 0 : -1;
}

/* A pathology result as a lab system sends it: full blood count, U&E,
 * LFTs and so on repeated to n OBX, some with notes. */
static char *make_large_oru(int n, size_t *len)
{
    static const struct { const char *code, *name, *type, *value, *unit,
                          *range, *flag; } tests[] = {
        { "HB", "Haemoglobin", "NM", "118", "g/L", "130-170", "L" },
        { "WBC", "White cell count", "NM", "7.2", "10*9/L", "4.0-11.0", "N" },
        { "PLT", "Platelets", "NM", "256", "10*9/L", "150-400", "N" },
        { "NA", "Sodium", "NM", "139", "mmol/L", "133-146", "N" },
        { "K", "Potassium", "NM", "5.9", "mmol/L", "3.5-5.3", "H" },
        { "CREA", "Creatinine", "NM", "88", "umol/L", "59-104", "N" },
        { "EGFR", "eGFR (CKD-EPI)", "NM", ">90", "mL/min/1.73m2", ">60", "N" },
        { "ALT", "Alanine transaminase", "NM", "23", "U/L", "0-41", "N" },
        { "CRP", "C-reactive protein", "NM", "12", "mg/L", "0-5", "H" },
        { "COMM", "Comment", "TX", "Sample slightly haemolysed\\.br\\"
          "potassium may be falsely raised", "", "", "A" },
    };
    size_t nt = sizeof tests / sizeof tests[0];
    struct buf b = {0};
    int rc = buf_printf(&b,
        "MSH|^~\\&|WINPATH|UCLH|LCR|ONELONDON|20261121143000||"
        "ORU^R01^ORU_R01|UCLH-LAB-99999|P|2.4|||AL|NE|GBR|UNICODE UTF-8|EN\r"
        "PID|1||9990000042^^^NHS^NH~U4455667^^^UCLH^MR||KOWALSKI^ANNA^^^MRS"
        "||19550317|F|||22 GOWER STREET^^LONDON^^WC1E 6BT^GBR^H\r"
        "PV1|1|O|UCLH-OPD^^^UCLH\r"
        "ORC|RE|ORD778812|LAB55501||CM\r"
        "OBR|1|ORD778812|LAB55501|PROFILE^Cumulative profile^WINPATH|||"
        "20261121120000|||||||20261121123000||G1234567^BROWN^SARAH^^^DR||||"
        "||20261121142500||HM|F\r");
    for (int i = 1; rc == 0 && i <= n; i++) {
        size_t k = (size_t)(i - 1) % nt;
        rc = buf_printf(&b, "OBX|%d|%s|%s^%s^WINPATH|%d|%s|%s|%s|%s|||F|||"
                        "20261121142500||LAB^MACHINE^%d\r",
                        i, tests[k].type, tests[k].code, tests[k].name,
                        (i - 1) / (int)nt + 1, tests[k].value, tests[k].unit,
                        tests[k].range, tests[k].flag, i % 7);
        if (rc == 0 && i % 50 == 0)
            rc = buf_printf(&b, "NTE|%d|L|Reviewed by duty biochemist; "
                            "results telephoned to ward \\T\\ GP\r", i / 50);
    }
    if (rc) {
        buf_free(&b);
        return NULL;
    }
    return buf_take(&b, len);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct input *)a)->name,
                  ((const struct input *)b)->name);
}

static void choose_paths(struct input *in)
{
    struct hl7_msg *m;
    in->lookup = "MSH-10";
    in->edit = "MSH-10";
    if (hl7_parse(in->data, in->len, NULL, &m, NULL) != 0)
        return;
    if (hl7_segment_count(m, "OBX") > 1) {
        char last[32];   /* the last OBX: the far end of the index */
        snprintf(last, sizeof last, "OBX[%zu]-5",
                 hl7_segment_count(m, "OBX"));
        char *dup = strdup(last);
        if (dup)
            in->lookup = dup;
        in->edit = "OBX[1]-5";
    } else if (hl7_segment_count(m, "PID") > 0) {
        in->lookup = "PID-3[1].1";
        in->edit = "PID-5.1";
    }
    hl7_free(m);
}

static size_t load_samples(const char *dir, struct input *in, size_t max)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "bench: %s: %s\n", dir, strerror(errno));
        return 0;
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".hl7") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct input *x = &in[n];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "%s", e->d_name);
        if (read_file(path, &x->data, &x->len) != 0)
            continue;
        x->batch = x->len >= 3 && (memcmp(x->data, "FHS", 3) == 0 ||
                                   memcmp(x->data, "BHS", 3) == 0);
        n++;
    }
    closedir(d);
    qsort(in, n, sizeof *in, by_name);
    return n;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: bench_hl7 [-t SECONDS] [-o LARGE_ORU_FILE] "
                    "SAMPLES_DIR\n");
}

int main(int argc, char **argv)
{
    const char *large_path = NULL, *samples = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            target_secs = atof(argv[++i]);
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            large_path = argv[++i];
        else if (argv[i][0] != '-' && !samples)
            samples = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (!samples || target_secs <= 0) {
        usage();
        return 2;
    }

    static struct input in[MAX_INPUTS];
    size_t n = load_samples(samples, in, MAX_INPUTS - 1);
    if (n == 0) {
        fprintf(stderr, "bench: no .hl7 samples in %s\n", samples);
        return 1;
    }
    struct input *large = &in[n++];
    snprintf(large->name, sizeof large->name, "large_oru_%d_obx.hl7",
             LARGE_OBX);
    large->data = make_large_oru(LARGE_OBX, &large->len);
    if (!large->data)
        return 1;
    if (large_path) {   /* the same bytes, for the Python side */
        FILE *f = fopen(large_path, "wb");
        if (!f || fwrite(large->data, 1, large->len, f) != large->len ||
            fclose(f) != 0) {
            fprintf(stderr, "bench: %s: %s\n", large_path, strerror(errno));
            return 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        choose_paths(&in[i]);

    int cpu = pin_one_core();
    static struct result res[MAX_INPUTS];
    static bool ok[MAX_INPUTS];
    for (size_t i = 0; i < n; i++)
        ok[i] = bench_one(&in[i], &res[i]) == 0;

    printf("hl7 codec, one core (cpu %d), %.2f s per figure\n\n", cpu,
           target_secs);
    printf("| message | bytes | parse+index MB/s | parse+index msg/s "
           "| lookup | lookups/s | serialise MB/s | serialise after edit MB/s |\n"
           "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        if (!ok[i])
            printf("| %s | %zu | does not parse | | | | | |\n", in[i].name,
                   in[i].len);
        else if (in[i].batch)
            printf("| %s (split + parse each) | %zu | %.0f | %.0f | | | | |\n",
                   in[i].name, in[i].len, r->parse_mbps, r->parse_msgs);
        else
            printf("| %s | %zu | %.0f | %.0f | %s | %.0f | %.0f | %.0f |\n",
                   in[i].name, in[i].len, r->parse_mbps, r->parse_msgs,
                   in[i].lookup, r->lookups, r->ser_mbps, r->ser_edit_mbps);
    }
    printf("\n");

    double tot_bytes = 0, tot_time = 0;
    size_t tot_msgs = 0;
    for (size_t i = 0; i < n; i++) {
        const struct result *r = &res[i];
        if (!ok[i]) {
            printf("BENCH name=%s bytes=%zu error=parse\n", in[i].name,
                   in[i].len);
            continue;
        }
        printf("BENCH name=%s bytes=%zu parse_mbps=%.1f parse_msgs=%.0f "
               "lookup=%s lookups=%.0f ser_mbps=%.1f ser_edit_mbps=%.1f\n",
               in[i].name, in[i].len, r->parse_mbps, r->parse_msgs,
               in[i].batch ? "-" : in[i].lookup, r->lookups, r->ser_mbps,
               r->ser_edit_mbps);
        if (&in[i] != large) {
            tot_bytes += (double)in[i].len;
            tot_time += 1.0 / r->parse_msgs;
            tot_msgs++;
        }
    }
    if (tot_msgs)   /* each sample once, in turn */
        printf("BENCH name=all_samples bytes=%.0f parse_mbps=%.1f "
               "parse_msgs=%.0f\n", tot_bytes, tot_bytes / tot_time / 1e6,
               (double)tot_msgs / tot_time);
    (void)sink;
    return 0;
}
