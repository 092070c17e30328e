/*
 * hl7_batch.c: splitting files and batches (FHS/BHS ... BTS/FTS) into
 * messages, and checking the trailer counts.
 */
#include "hl7_int.h"

#include <stdlib.h>
#include <string.h>

static bool is_seg(const char *p, size_t n, const char *name)
{
    if (n < 3 || memcmp(p, name, 3) != 0)
        return false;
    if (n == 3)
        return true;
    char c = p[3];
    return !((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'));
}

static int push(struct hl7_batch *b, size_t *cap, const char *p, size_t len)
{
    if (b->count == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct hl7_span *n = realloc(b->msgs, nc * sizeof *n);
        if (!n)
            return HL7_E_NOMEM;
        b->msgs = n;
        *cap = nc;
    }
    b->msgs[b->count].p = p;
    b->msgs[b->count].len = len;
    b->count++;
    return 0;
}

/* The count in a trailer's first field (BTS-1, FTS-1): -1 when empty,
 * -2 when not a whole number. */
static long trailer_count(const char *p, size_t n)
{
    if (n <= 4)
        return -1;
    char fs = p[3];
    size_t i = 4;
    long v = 0;
    while (i < n && p[i] != fs) {
        if (p[i] < '0' || p[i] > '9' || v > 100000000)
            return -2;
        v = v * 10 + (p[i] - '0');
        i++;
    }
    return i == 4 ? -1 : v;
}

void hl7_batch_free(struct hl7_batch *b)
{
    if (!b)
        return;
    free(b->msgs);
    memset(b, 0, sizeof *b);
}

int hl7_batch_split(const char *buf, size_t len, struct hl7_batch *out,
                    struct hl7_error *err)
{
    memset(out, 0, sizeof *out);
    size_t cap = 0, pos = 0, batch_msgs = 0;
    const char *cur = NULL;     /* start of the open message */
    bool in_batch = false, seen = false, ended = false;
    int result = 0, rc = 0;

#define CLOSE(at)                                                     \
    do {                                                              \
        if (cur) {                                                    \
            if ((rc = push(out, &cap, cur, (size_t)((at) - cur))))    \
                goto fail;                                            \
            batch_msgs += in_batch;                                   \
            cur = NULL;                                               \
        }                                                             \
    } while (0)
#define STRUCTURE(name, ...)                                          \
    do {                                                              \
        hl7_set_error(err, HL7_E_BATCH_STRUCTURE, name, 1, 0, pos,    \
                      __VA_ARGS__);                                   \
        rc = HL7_E_BATCH_STRUCTURE;                                   \
        goto fail;                                                    \
    } while (0)

    while (pos < len) {
        size_t e = pos;
        while (e < len && buf[e] != '\r' && buf[e] != '\n')
            e++;
        size_t next = e;
        if (next < len)
            next += (buf[next] == '\r' && next + 1 < len && buf[next + 1] == '\n') ? 2 : 1;
        const char *p = buf + pos;
        size_t n = e - pos;
        if (n == 0) {
            pos = next;
            continue;
        }
        if (ended)
            STRUCTURE("FTS", "nothing may follow FTS (file trailer); found more at byte %zu",
                      pos);
        if (is_seg(p, n, "MSH")) {
            CLOSE(p);
            cur = p;
        } else if (is_seg(p, n, "FHS")) {
            if (seen)
                STRUCTURE("FHS", "FHS (file header) must come first; found at byte %zu", pos);
            out->fhs.p = p;
            out->fhs.len = n;
        } else if (is_seg(p, n, "BHS")) {
            CLOSE(p);
            if (in_batch)
                STRUCTURE("BHS", "BHS at byte %zu opens a batch before the previous one "
                          "was closed by BTS", pos);
            if (!out->batches) {
                out->bhs.p = p;
                out->bhs.len = n;
            }
            out->batches++;
            in_batch = true;
            batch_msgs = 0;
        } else if (is_seg(p, n, "BTS")) {
            CLOSE(p);
            if (!in_batch)
                STRUCTURE("BTS", "BTS (batch trailer) at byte %zu closes no batch: "
                          "BHS is missing", pos);
            long want = trailer_count(p, n);
            if (want != -1 && (want < 0 || (size_t)want != batch_msgs) && !result) {
                hl7_set_error(err, HL7_E_BATCH_COUNT, "BTS", (unsigned)out->batches, 1,
                              pos + 4, "BTS-1 says %.*s messages but the batch holds %zu",
                              (int)(n - 4 > 20 ? 20 : n - 4), p + 4, batch_msgs);
                result = HL7_E_BATCH_COUNT;
            }
            in_batch = false;
        } else if (is_seg(p, n, "FTS")) {
            CLOSE(p);
            if (!out->fhs.len)
                STRUCTURE("FTS", "FTS (file trailer) at byte %zu without FHS", pos);
            if (in_batch)
                STRUCTURE("FTS", "FTS at byte %zu while a batch is open: BTS is missing",
                          pos);
            long want = trailer_count(p, n);
            if (want != -1 && (want < 0 || (size_t)want != out->batches) && !result) {
                hl7_set_error(err, HL7_E_BATCH_COUNT, "FTS", 1, 1, pos + 4,
                              "FTS-1 says %.*s batches but the file holds %zu",
                              (int)(n - 4 > 20 ? 20 : n - 4), p + 4, out->batches);
                result = HL7_E_BATCH_COUNT;
            }
            ended = true;
        } else if (!cur) {
            char name[4] = { 0 };
            if (n >= 3 && hl7_valid_seg_name(p, 3, 0)) {
                memcpy(name, p, 3);
                hl7_set_error(err, HL7_E_NO_MSH, name, 1, 0, pos,
                              "segment %s at byte %zu is outside any message: "
                              "a message starts with MSH", name, pos);
            } else {
                hl7_set_error(err, HL7_E_NO_MSH, "", 0, 0, pos,
                              "bytes at %zu are not an HL7 segment: a message "
                              "starts with MSH", pos);
            }
            rc = HL7_E_NO_MSH;
            goto fail;
        }
        seen = true;
        pos = next;
    }
    CLOSE(buf + len);
#undef CLOSE
#undef STRUCTURE
    if (out->count == 0 && !seen) {
        hl7_set_error(err, HL7_E_EMPTY, "", 0, 0, 0, "no messages in input");
        return HL7_E_EMPTY;
    }
    return result;
fail:
    if (rc == HL7_E_NOMEM)
        hl7_set_error(err, rc, "", 0, 0, 0, "out of memory splitting a batch");
    hl7_batch_free(out);
    return rc;
}
