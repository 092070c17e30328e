/*
 * fuzz_path.c: libFuzzer target for the path reader and the editor. The
 * input's first line is a path text, the rest a message. A path that
 * compiles must format and compile back to itself; reads must agree with
 * each other; an edit must read back as written and the serialised result
 * must parse again. The first line doubles as the value written.
 */
#include "fuzz.h"

/* Edits at absurd indices would only measure memory: the broker's paths
 * come from its configuration, not from the wire. */
enum { MAX_SEG_SEQ = 64, MAX_FIELD = 256, MAX_INDEX = 64 };

static bool is_header_name(const struct hl7_path *p)
{
    return strcmp(p->seg, "MSH") == 0 || strcmp(p->seg, "FHS") == 0 ||
           strcmp(p->seg, "BHS") == 0;
}

/* Fields 1 and 2 of a header segment (MSH, FHS, BHS) hold the delimiters
 * and are never editable, and an edit may not create a header segment.
 * Returns 1 when p names fields 1 or 2 of a header segment the message
 * holds (HL7_E_READ_ONLY), -1 when p names a header segment that is
 * absent or not yet a header (HL7_E_RANGE, HL7_E_READ_ONLY or success
 * are all fine), 0 otherwise. */
static int header_edit(const struct hl7_msg *msg, const struct hl7_path *p)
{
    if (!is_header_name(p) || p->field == 0)
        return 0;
    struct hl7_path seg = { .seg_seq = p->seg_seq };
    memcpy(seg.seg, p->seg, 4);
    struct hl7_span raw;
    if (hl7_get(msg, &seg, &raw) == HL7_ABSENT)
        return -1;
    if (raw.len < 4 || raw.p[3] != hl7_msg_delims(msg)->field)
        return -1;
    return p->field <= 2;
}

/* seg_seq 0 and 1 both mean the first segment of that name. */
static bool same_path(const struct hl7_path *a, const struct hl7_path *b)
{
    unsigned sa = a->seg_seq ? a->seg_seq : 1, sb = b->seg_seq ? b->seg_seq : 1;
    return memcmp(a->seg, b->seg, 4) == 0 && sa == sb &&
           a->field == b->field && a->rep == b->rep && a->comp == b->comp &&
           a->sub == b->sub;
}

static bool is_null_value(const char *p, size_t len)
{
    return len == 2 && p[0] == '"' && p[1] == '"';
}

static void check_path(const char *text, size_t len, struct hl7_path *p,
                       bool *ok)
{
    struct hl7_error err;
    memset(p, 0x77, sizeof *p);
    int rc = hl7_path_parse(text, len, p, &err);
    *ok = rc == 0;
    if (rc != 0) {
        CHECK(rc == HL7_E_BAD_PATH);
        CHECK(err.code == rc);
        CHECK(err.offset <= len);
        CHECK(memchr(err.text, '\0', sizeof err.text) != NULL);
        return;
    }
    CHECK(p->seg[3] == '\0' && strlen(p->seg) == 3);

    /* Canonical text compiles to the same path and formats the same. */
    struct buf f1 = {0}, f2 = {0};
    if (hl7_path_format(p, &f1) == 0) {
        struct hl7_path q;
        CHECK(hl7_path_parse(f1.p, f1.len, &q, NULL) == 0);
        CHECK(same_path(p, &q));
        if (hl7_path_format(&q, &f2) == 0)
            CHECK(f1.len == f2.len && memcmp(f1.p, f2.p, f1.len) == 0);
    }
    buf_free(&f1);
    buf_free(&f2);
}

/* All the ways to read one path agree. Returns the presence. */
static enum hl7_presence check_reads(const struct hl7_msg *msg,
                                     const struct hl7_path *p,
                                     const char *text, size_t tlen,
                                     const char *base, size_t blen)
{
    struct hl7_span got;
    enum hl7_presence pres = hl7_get(msg, p, &got);
    CHECK(pres >= HL7_ABSENT && pres <= HL7_VALUE);
    if (base)
        CHECK(fuzz_span_in(&got, base, blen));
    switch (pres) {
    case HL7_ABSENT:
    case HL7_EMPTY:
        CHECK(got.len == 0);
        break;
    case HL7_NULL:
        CHECK(is_null_value(got.p, got.len));
        break;
    case HL7_VALUE:
        CHECK(got.len > 0 && !is_null_value(got.p, got.len));
        break;
    }

    /* Decoded: same presence, appended, equal to hl7_unescape of raw. */
    struct buf dec = {0}, ref = {0};
    if (buf_append(&dec, "PFX", 3) == 0) {
        enum hl7_presence pd = hl7_get_decoded(msg, p, &dec);
        CHECK(pd == pres);
        CHECK(dec.len >= 3 && memcmp(dec.p, "PFX", 3) == 0);
        /* MSH-1 and MSH-2 (and FHS, BHS) are the delimiters themselves:
         * read literally, never decoded. */
        bool literal = is_header_name(p) && p->field >= 1 && p->field <= 2;
        if (pres == HL7_VALUE && !literal &&
            hl7_unescape(hl7_msg_delims(msg), got.p, got.len, &ref) == 0)
            CHECK(dec.len - 3 == ref.len &&
                  memcmp(dec.p + 3, ref.p ? ref.p : "", ref.len) == 0);
        if (pres == HL7_ABSENT || pres == HL7_EMPTY)
            CHECK(dec.len == 3);
    }
    buf_free(&dec);
    buf_free(&ref);

    if (p->field != 0 && p->sub == 0) {   /* a count is of children */
        size_t n = hl7_count(msg, p);
        if (pres == HL7_ABSENT || pres == HL7_EMPTY)
            CHECK(n == 0);
        CHECK(n <= got.len + 1);
    }

    /* The text convenience reads the same span. */
    if (text && memchr(text, '\0', tlen) == NULL) {
        char *z = malloc(tlen + 1);
        if (z) {
            memcpy(z, text, tlen);
            z[tlen] = '\0';
            struct hl7_span s2;
            CHECK(hl7_get_str(msg, z, &s2) == pres);
            CHECK(s2.len == got.len && (got.len == 0 || s2.p == got.p));
            free(z);
        }
    }
    return pres;
}

/* Serialise, parse again, and compare segment counts. A header edit may
 * legitimately empty MSH-9.1, which parsing then refuses. Returns the new
 * message (caller frees), or NULL. The buffer is handed to the caller. */
static struct hl7_msg *reparse(const struct hl7_msg *msg, unsigned flags,
                               bool header_edit, struct buf *out)
{
    struct hl7_error err;
    struct hl7_msg *again = NULL;
    int rc = hl7_serialise(msg, flags, out);
    if (rc == HL7_E_NOMEM)
        return NULL;
    CHECK(rc == 0);
    if (flags & HL7_SER_CR)
        CHECK(out->len == 0 || memchr(out->p, '\n', out->len) == NULL);
    rc = hl7_parse(out->p, out->len, NULL, &again, &err);
    if (rc == HL7_E_NOMEM)
        return NULL;
    if (rc != 0) {
        if (!(header_edit && rc == HL7_E_MISSING_FIELD))
            fprintf(stderr, "re-parse after edit: %s (%s)\n",
                    hl7_strerror(rc), err.text);
        CHECK(header_edit && rc == HL7_E_MISSING_FIELD);
        return NULL;
    }
    CHECK(hl7_segment_count(again, NULL) == hl7_segment_count(msg, NULL));
    return again;
}

/* After hl7_set of val, the path reads val back decoded. */
static void check_reads_back(const struct hl7_msg *msg,
                             const struct hl7_path *p, const char *val,
                             size_t len)
{
    struct buf dec = {0};
    enum hl7_presence pres = hl7_get_decoded(msg, p, &dec);
    if (is_null_value(val, len)) {
        CHECK(pres == HL7_NULL);
    } else {
        CHECK(pres == HL7_VALUE);
        CHECK(dec.len == len && memcmp(dec.p, val, len) == 0);
    }
    buf_free(&dec);
}

/* A raw value may hold structure below the path's level only: never a
 * line end or a field separator, no repetition separator at a repetition
 * or component path, and so on down. */
static bool holds_structure_at_or_above(const struct hl7_msg *msg,
                                        const struct hl7_path *p,
                                        const char *val, size_t len)
{
    const struct hl7_delims *d = hl7_msg_delims(msg);
    for (size_t i = 0; i < len; i++) {
        char c = val[i];
        if (c == '\r' || c == '\n' || c == d->field ||
            ((p->rep || p->comp) && c == d->repetition) ||
            (p->comp && c == d->component) ||
            (p->sub && c == d->subcomponent))
            return true;
    }
    return false;
}

static void check_edits(struct hl7_msg *msg, const struct hl7_path *p,
                        const char *val, size_t len)
{
    struct hl7_error err;
    struct buf b = {0};
    struct hl7_msg *again;
    bool hdr = is_header_name(p);
    int ro = header_edit(msg, p);

    memset(&err, 0x5a, sizeof err);

    /* hl7_set: escaped, so any bytes at all are fine. */
    int rc = hl7_set(msg, p, val, len, &err);
    if (rc == HL7_E_NOMEM)
        return;
    if (p->field == 0)
        CHECK(rc == HL7_E_BAD_PATH);
    else if (ro > 0)
        CHECK(rc == HL7_E_READ_ONLY);
    else if (ro < 0)
        CHECK(rc == 0 || rc == HL7_E_READ_ONLY || rc == HL7_E_RANGE);
    else
        CHECK(rc == 0);
    if (rc == 0 && (ro == 0 || p->field > 2)) {
        check_reads_back(msg, p, val, len);
        check_reads(msg, p, NULL, 0, NULL, 0);
        again = reparse(msg, 0, hdr, &b);
        if (again) {
            check_reads_back(again, p, val, len);
            hl7_free(again);
        }
        buf_reset(&b);
    } else if (rc != 0) {
        fuzz_check_error(&err, rc, SIZE_MAX);
    }
    if (ro < 0)
        ro = header_edit(msg, p);   /* the segment may exist now */

    /* hl7_set_raw: structure below the path's level only. */
    rc = hl7_set_raw(msg, p, val, len, &err);
    if (rc == HL7_E_NOMEM)
        goto out;
    bool structure = holds_structure_at_or_above(msg, p, val, len);
    if (p->field == 0)
        CHECK(rc == HL7_E_BAD_PATH || (structure && rc == HL7_E_BAD_VALUE));
    else if (ro > 0)
        CHECK(rc == HL7_E_READ_ONLY || (structure && rc == HL7_E_BAD_VALUE));
    else if (ro < 0 && (rc == HL7_E_READ_ONLY || rc == HL7_E_RANGE))
        ;
    else if (structure)
        CHECK(rc == HL7_E_BAD_VALUE);
    else
        CHECK(rc == 0);
    if (rc == 0) {
        again = reparse(msg, 0, hdr, &b);
        hl7_free(again);
        buf_reset(&b);
    }

    /* hl7_clear: the element reads as absent or empty afterwards. */
    rc = hl7_clear(msg, p, &err);
    if (rc == HL7_E_NOMEM)
        goto out;
    if (p->field == 0)
        CHECK(rc == 0 || rc == HL7_E_BAD_PATH);
    else if (ro > 0)
        CHECK(rc == HL7_E_READ_ONLY);
    else if (ro < 0)
        CHECK(rc == 0 || rc == HL7_E_READ_ONLY || rc == HL7_E_RANGE);
    else
        CHECK(rc == 0);
    if (rc == 0 && p->field != 0 && (ro == 0 || p->field > 2)) {
        struct hl7_span s;
        enum hl7_presence pres = hl7_get(msg, p, &s);
        CHECK(pres == HL7_ABSENT || pres == HL7_EMPTY);
    }
    again = reparse(msg, HL7_SER_CR, hdr, &b);
    hl7_free(again);
    buf_reset(&b);

    /* Segments: append one, refuse past the end and the MSH, delete. */
    char fs = hl7_msg_delims(msg)->field;
    char zfz[] = { 'Z', 'F', 'Z', fs, '1', fs, 'x' };
    size_t n = hl7_segment_count(msg, NULL);
    rc = hl7_segment_insert(msg, n, zfz, sizeof zfz, &err);
    if (rc == HL7_E_NOMEM)
        goto out;
    CHECK(rc == 0);
    CHECK(hl7_segment_count(msg, NULL) == n + 1);
    CHECK(hl7_segment_insert(msg, n + 2, zfz, sizeof zfz, &err) != 0);
    CHECK(hl7_segment_insert(msg, n, zfz + 1, sizeof zfz - 1, &err) != 0);
    CHECK(hl7_segment_delete(msg, 0, &err) != 0);
    again = reparse(msg, 0, hdr, &b);
    hl7_free(again);
    buf_reset(&b);
    CHECK(hl7_segment_delete(msg, n, &err) == 0);
    CHECK(hl7_segment_count(msg, NULL) == n);
    CHECK(hl7_segment_delete(msg, n, &err) != 0);
out:
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t tlen = nl ? (size_t)(nl - in) : size;
    struct hl7_path p;
    bool path_ok;

    check_path(in, tlen, &p, &path_ok);
    if (!nl)
        return 0;

    const char *mbuf = nl + 1;
    size_t mlen = size - tlen - 1;
    struct hl7_msg *msg = NULL;
    if (hl7_parse(mbuf, mlen, NULL, &msg, NULL) != 0)
        return 0;

    if (!path_ok) {
        /* A bad path reads as absent through the text convenience. */
        char *z = malloc(tlen + 1);
        if (z) {
            memcpy(z, in, tlen);
            z[tlen] = '\0';
            struct hl7_span s;
            if (memchr(in, '\0', tlen) == NULL)
                CHECK(hl7_get_str(msg, z, &s) == HL7_ABSENT);
            free(z);
        }
        hl7_free(msg);
        return 0;
    }

    check_reads(msg, &p, in, tlen, mbuf, mlen);

    if (p.seg_seq <= MAX_SEG_SEQ && p.field <= MAX_FIELD &&
        p.rep <= MAX_INDEX && p.comp <= MAX_INDEX && p.sub <= MAX_INDEX)
        check_edits(msg, &p, in, tlen);
    hl7_free(msg);
    return 0;
}
