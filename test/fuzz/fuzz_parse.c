/*
 * fuzz_parse.c: libFuzzer target for the parser. Any input: hl7_parse must
 * succeed or fail cleanly; a parsed message must walk consistently, read
 * back what the walk saw, serialise unedited to the very input bytes and
 * re-parse from the all-CR form; hl7_batch_split must list spans in order.
 */
#include <ctype.h>

#include "fuzz.h"

enum { MAX_CHECKED_READS = 256 };

/* Segment name -> how many seen so far, for the expected seg_seq. */
struct name_count {
    uint32_t key;      /* 0: free slot */
    unsigned n;
};

struct walk_state {
    const struct hl7_msg *msg;
    const char *base;
    size_t len;
    size_t nodes;
    size_t stop_at;          /* SIZE_MAX: never stop */
    int prev_depth;
    bool prev_leaf;
    struct hl7_span anc[5];  /* the latest element at each depth */
    bool anc_set[5];
    size_t segments;         /* SEGMENT nodes seen */
    unsigned field, rep, comp;
    unsigned expect_seq;
    unsigned field_count;
    size_t reads;
    struct name_count names[128];
    bool names_full;
};

static int depth_of(enum hl7_node kind)
{
    switch (kind) {
    case HL7_NODE_SEGMENT: return 0;
    case HL7_NODE_FIELD:   return 1;
    case HL7_NODE_REP:     return 2;
    case HL7_NODE_COMP:    return 3;
    case HL7_NODE_SUB:     return 4;
    }
    return -1;
}

static unsigned bump_name(struct walk_state *w, const char name[4])
{
    uint32_t key = 0x1000000u | (uint32_t)(unsigned char)name[0] << 16 |
                   (uint32_t)(unsigned char)name[1] << 8 |
                   (unsigned char)name[2];
    size_t n = sizeof w->names / sizeof w->names[0];
    for (size_t i = key % n, k = 0; k < n; i = (i + 1) % n, k++) {
        if (w->names[i].key == key)
            return ++w->names[i].n;
        if (w->names[i].key == 0) {
            w->names[i].key = key;
            return w->names[i].n = 1;
        }
    }
    w->names_full = true;
    return 0;
}

static bool valid_name(const char name[4])
{
    for (int i = 0; i < 3; i++)
        if (!isalnum((unsigned char)name[i]))
            return false;
    return name[3] == '\0';
}

/* A leaf's path read back with hl7_get finds the same bytes, and the
 * presence its contents imply. MSH-1 and MSH-2 are special (they hold
 * the delimiters) and are left out. */
static void check_read(struct walk_state *w, enum hl7_node kind,
                       const struct hl7_path *path, const struct hl7_span *raw)
{
    if (kind == HL7_NODE_SEGMENT || kind == HL7_NODE_FIELD)
        return;
    if (strcmp(path->seg, "MSH") == 0 && path->field <= 2)
        return;
    if (w->reads++ >= MAX_CHECKED_READS)
        return;
    struct hl7_path p = *path;
    if (kind == HL7_NODE_REP)
        p.comp = p.sub = 0;
    else if (kind == HL7_NODE_COMP)
        p.sub = 0;
    struct hl7_span got;
    enum hl7_presence pres = hl7_get(w->msg, &p, &got);
    CHECK(fuzz_span_eq(&got, raw->p, raw->len));
    if (raw->len == 0)
        CHECK(pres == HL7_EMPTY);
    else if (raw->len == 2 && raw->p[0] == '"' && raw->p[1] == '"')
        CHECK(pres == HL7_NULL);
    else
        CHECK(pres == HL7_VALUE);
}

static int walk_cb(void *ctx, enum hl7_node kind, const struct hl7_path *path,
                   const struct hl7_span *raw, bool leaf)
{
    struct walk_state *w = ctx;
    int depth = depth_of(kind);
    CHECK(depth >= 0);
    CHECK(path != NULL && raw != NULL);
    CHECK(valid_name(path->seg));
    CHECK(fuzz_span_in(raw, w->base, w->len));

    /* Pre-order: children follow a non-leaf, never a leaf. */
    if (w->nodes == 0)
        CHECK(kind == HL7_NODE_SEGMENT);
    else if (w->prev_leaf)
        CHECK(depth <= w->prev_depth);
    else
        CHECK(depth > w->prev_depth);

    /* Each element lies inside its parent. */
    for (int d = depth - 1; d >= 0; d--) {
        if (!w->anc_set[d])
            continue;
        const struct hl7_span *a = &w->anc[d];
        if (raw->len > 0)
            CHECK(a->len > 0 && fuzz_span_in(raw, a->p, a->len));
        break;
    }
    w->anc[depth] = *raw;
    w->anc_set[depth] = true;
    for (int d = depth + 1; d < 5; d++)
        w->anc_set[d] = false;

    switch (kind) {
    case HL7_NODE_SEGMENT: {
        char name[4];
        struct hl7_span seg;
        CHECK(hl7_segment_at(w->msg, w->segments, name, &seg));
        CHECK(memcmp(name, path->seg, 4) == 0);
        CHECK(fuzz_span_eq(&seg, raw->p, raw->len));
        if (w->segments == 0)
            CHECK(strcmp(name, "MSH") == 0);
        unsigned seq = bump_name(w, name);
        if (seq)
            CHECK(path->seg_seq == seq);
        CHECK(path->field == 0);
        w->expect_seq = path->seg_seq;
        w->field_count = hl7_field_count(w->msg, w->segments);
        w->segments++;
        w->field = 0;
        break;
    }
    case HL7_NODE_FIELD:
        CHECK(path->seg_seq == w->expect_seq);
        CHECK(path->field > w->field);
        CHECK(path->field <= w->field_count);
        w->field = path->field;
        w->rep = 0;    /* stays 0 when the field has no repetitions */
        w->comp = 0;
        break;
    case HL7_NODE_REP:
        CHECK(path->field == w->field);
        CHECK(path->rep > w->rep);
        w->rep = path->rep;
        w->comp = 0;
        break;
    case HL7_NODE_COMP:
        CHECK(path->field == w->field && path->rep == w->rep);
        CHECK(path->comp > w->comp);
        w->comp = path->comp;
        break;
    case HL7_NODE_SUB:
        CHECK(path->field == w->field && path->rep == w->rep &&
              path->comp == w->comp);
        CHECK(path->sub >= 1);
        break;
    }
    if (leaf)
        check_read(w, kind, path, raw);

    w->prev_depth = depth;
    w->prev_leaf = leaf;
    if (w->nodes++ == w->stop_at)
        return 7;
    return 0;
}

static void check_meta(const struct hl7_msg *msg, const char *buf, size_t len)
{
    struct hl7_meta m;
    memset(&m, 0xa5, sizeof m);
    hl7_meta(msg, &m);
    const struct hl7_span *all[] = {
        &m.code, &m.trigger, &m.structure, &m.control_id, &m.processing_id,
        &m.version, &m.sending_app, &m.sending_fac, &m.receiving_app,
        &m.receiving_fac, &m.accept_ack, &m.app_ack, &m.charset,
        &m.nhs_number,
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECK(fuzz_span_in(all[i], buf, len));
    CHECK(m.code.len > 0);   /* hl7_parse requires MSH-9.1 */

    struct hl7_span code;
    CHECK(hl7_get_str(msg, "MSH-9.1", &code) != HL7_ABSENT);
    CHECK(fuzz_span_eq(&code, m.code.p, m.code.len));

    struct hl7_span nhs;
    if (hl7_nhs_number(msg, &nhs)) {
        CHECK(fuzz_span_in(&nhs, buf, len));
        CHECK(fuzz_span_eq(&m.nhs_number, nhs.p, nhs.len));
        enum hl7_nhs_check c = hl7_nhs_check(nhs.p, nhs.len);
        CHECK(c >= HL7_NHS_VALID && c <= HL7_NHS_CHECK_DIGIT);
        CHECK(hl7_nhs_check_str(c) != NULL);
    }
    CHECK(hl7_nhs_check(m.nhs_number.p, m.nhs_number.len) <=
          HL7_NHS_CHECK_DIGIT);

    const struct hl7_delims *d = hl7_msg_delims(msg);
    CHECK(d != NULL);
    char ds[6] = { d->field, d->component, d->repetition, d->escape,
                   d->subcomponent, d->truncation };
    int nd = d->truncation ? 6 : 5;
    for (int i = 0; i < nd; i++) {
        CHECK(ds[i] != '\r' && ds[i] != '\n');
        for (int j = i + 1; j < nd; j++)
            CHECK(ds[i] != ds[j]);
    }
}

/* Serialise unedited: the input, byte for byte. All-CR: parses again
 * into the same segments. */
static void check_serialise(const struct hl7_msg *msg, const char *buf,
                            size_t len)
{
    struct buf b = {0};
    if (buf_append(&b, "PFX", 3) != 0)
        return;
    int rc = hl7_serialise(msg, 0, &b);
    if (rc == HL7_E_NOMEM)
        goto out;
    CHECK(rc == 0);
    CHECK(b.len == len + 3 && memcmp(b.p, "PFX", 3) == 0);
    CHECK(memcmp(b.p + 3, buf, len) == 0);

    buf_reset(&b);
    rc = hl7_serialise(msg, HL7_SER_CR, &b);
    if (rc == HL7_E_NOMEM)
        goto out;
    CHECK(rc == 0);
    CHECK(memchr(b.p ? b.p : "", '\n', b.len) == NULL);
    struct hl7_msg *again = NULL;
    struct hl7_error err;
    rc = hl7_parse(b.p, b.len, NULL, &again, &err);
    if (rc == HL7_E_NOMEM)
        goto out;
    CHECK(rc == 0);
    size_t n = hl7_segment_count(msg, NULL);
    CHECK(hl7_segment_count(again, NULL) == n);
    for (size_t i = 0; i < n; i++) {
        char n1[4], n2[4];
        struct hl7_span s1, s2;
        CHECK(hl7_segment_at(msg, i, n1, &s1));
        CHECK(hl7_segment_at(again, i, n2, &s2));
        CHECK(memcmp(n1, n2, 4) == 0);
        CHECK(fuzz_span_eq(&s1, s2.p, s2.len));
    }
    hl7_free(again);
out:
    buf_free(&b);
}

static void check_batch(const char *buf, size_t len)
{
    struct hl7_batch batch;
    struct hl7_error err;
    memset(&batch, 0, sizeof batch);
    int rc = hl7_batch_split(buf, len, &batch, &err);
    if (rc != 0)
        fuzz_check_error(&err, rc, len);
    if (rc == 0 || rc == HL7_E_BATCH_COUNT) {
        CHECK(batch.count == 0 || batch.msgs != NULL);
        CHECK(fuzz_span_in(&batch.fhs, buf, len));
        CHECK(fuzz_span_in(&batch.bhs, buf, len));
        const char *end = buf;
        for (size_t i = 0; i < batch.count; i++) {
            const struct hl7_span *s = &batch.msgs[i];
            CHECK(fuzz_span_in(s, buf, len));
            if (s->len == 0)
                continue;
            CHECK(s->p >= end);      /* in order, not overlapping */
            end = s->p + s->len;
            /* Each listed message that parses serialises to its span. */
            struct hl7_msg *m = NULL;
            if (hl7_parse(s->p, s->len, NULL, &m, NULL) == 0) {
                struct buf b = {0};
                if (hl7_serialise(m, 0, &b) == 0)
                    CHECK(b.len == s->len && memcmp(b.p, s->p, s->len) == 0);
                buf_free(&b);
                hl7_free(m);
            }
        }
    }
    hl7_batch_free(&batch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct hl7_msg *msg = (struct hl7_msg *)&msg;   /* must become NULL */
    struct hl7_error err;
    memset(&err, 0x5a, sizeof err);

    int rc = hl7_parse(buf, size, NULL, &msg, &err);
    if (rc != 0) {
        CHECK(rc < 0 && rc >= HL7_E_BATCH_STRUCTURE);
        CHECK(msg == NULL);
        fuzz_check_error(&err, rc, size);
        int t = hl7_err_table0357(rc);
        CHECK(t == 0 || (t >= 100 && t <= 103) || (t >= 200 && t <= 207));
    }
    struct hl7_msg *m2 = NULL;
    int rc2 = hl7_parse(buf, size, NULL, &m2, NULL);        /* err optional */
    CHECK(rc2 == rc || rc2 == HL7_E_NOMEM || rc == HL7_E_NOMEM);
    hl7_free(m2);
    if (rc == HL7_E_NOMEM)
        return 0;

    if (size >= 2) {
        struct hl7_parse_opts small = { .max_bytes = size - 1 };
        m2 = NULL;
        CHECK(hl7_parse(buf, size, &small, &m2, &err) == HL7_E_TOO_LARGE);
        CHECK(m2 == NULL);
    }

    if (rc == 0) {
        struct walk_state *w = calloc(1, sizeof *w);
        if (w) {
            w->msg = msg;
            w->base = buf;
            w->len = size;
            w->stop_at = SIZE_MAX;
            CHECK(hl7_walk(msg, walk_cb, w) == 0);
            CHECK(w->nodes == 0 || w->prev_leaf);
            CHECK(w->segments == hl7_segment_count(msg, NULL));
            CHECK(w->segments >= 1);
            char name[4];
            struct hl7_span raw;
            CHECK(!hl7_segment_at(msg, w->segments, name, &raw));
            CHECK(hl7_segment_count(msg, "MSH") >= 1);

            /* Stopping early returns the callback's value. */
            size_t total = w->nodes;
            memset(w, 0, sizeof *w);
            w->msg = msg;
            w->base = buf;
            w->len = size;
            w->stop_at = total ? (size_t)data[size / 2] % total : 0;
            CHECK(hl7_walk(msg, walk_cb, w) == (total ? 7 : 0));
            free(w);
        }
        check_meta(msg, buf, size);
        check_serialise(msg, buf, size);
        hl7_free(msg);
    }

    check_batch(buf, size);
    hl7_free(NULL);
    return 0;
}
