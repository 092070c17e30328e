/*
 * hl7_edit.c: editing a parsed message and writing it out. An edit
 * rebuilds only the segment it touches (into memory the message owns)
 * and re-indexes that segment; every other byte stays where it was.
 */
#include "hl7_int.h"

#include <stdlib.h>
#include <string.h>

/* Replace segment i's bytes with a copy of p[0..len), re-indexed. */
static int replace_seg(struct hl7_msg *m, size_t i, const char *p, size_t len)
{
    if (len > HL7_HARD_MAX)
        return HL7_E_TOO_LARGE;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return HL7_E_NOMEM;
    memcpy(copy, p, len);
    uint32_t *tape, ntape;
    if (hl7_index_segment(&m->d, copy, (uint32_t)len, &tape, &ntape)) {
        free(copy);
        return HL7_E_NOMEM;
    }
    struct hl7_seg *s = &m->segs[i];
    if (s->owned) {
        free((void *)s->p);
        free(s->tape);
    }
    s->p = copy;
    s->len = (uint32_t)len;
    s->tape = tape;
    s->ntape = ntape;
    s->owned = true;
    m->edited = true;
    return 0;
}

static int insert_seg(struct hl7_msg *m, size_t i, const char *p, size_t len)
{
    if (hl7_grow_segs(m))
        return HL7_E_NOMEM;
    memmove(&m->segs[i + 1], &m->segs[i], (m->nsegs - i) * sizeof *m->segs);
    m->nsegs++;
    struct hl7_seg *s = &m->segs[i];
    memset(s, 0, sizeof *s);
    memcpy(s->name, p, 3);
    s->tail = NULL;     /* written with the message's terminator */
    int rc = replace_seg(m, i, p, len);
    if (rc) {
        memmove(&m->segs[i], &m->segs[i + 1], (m->nsegs - i - 1) * sizeof *m->segs);
        m->nsegs--;
    }
    return rc;
}

/* Find segment seq of name, creating empty ones (after the last of that
 * name, or at the end) until it exists. */
static int seg_for_edit(struct hl7_msg *m, const struct hl7_path *path, size_t *index)
{
    unsigned want = path->seg_seq ? path->seg_seq : 1;
    bool header = hl7_is_header_name(path->seg);
    for (;;) {
        unsigned have = 0;
        size_t last = m->nsegs;
        for (size_t i = 0; i < m->nsegs; i++) {
            if (memcmp(m->segs[i].name, path->seg, 3) == 0) {
                last = i;
                if (++have == want) {
                    *index = i;
                    return 0;
                }
            }
        }
        if (header)     /* a header cannot be conjured from a path */
            return HL7_E_RANGE;
        size_t at = last < m->nsegs ? last + 1 : m->nsegs;
        int rc = insert_seg(m, at, path->seg, 3);
        if (rc)
            return rc;
    }
}

static int put_seps(struct buf *b, char sep, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (buf_putc(b, sep))
            return -1;
    return 0;
}

/* Find element idx (1-based) of e split by sep. When it is missing,
 * *missing is how many separators to add at e's end, and e becomes the
 * empty element at that point. */
static void locate(const struct hl7_seg *s, struct hl7_elem *e, char sep,
                   unsigned idx, unsigned *missing)
{
    struct hl7_iter it;
    hl7_iter_init(&it, s->p, s->tape, e, sep);
    struct hl7_elem c;
    unsigned k = 0;
    while (hl7_iter_next(&it, &c)) {
        if (++k == idx) {
            *e = c;
            *missing = 0;
            return;
        }
    }
    *missing = idx - k;
    e->a = e->b;
    e->ti = e->te;
}

/* Rebuild segment si with the element at path replaced by val (already in
 * ER7 form). */
static int edit(struct hl7_msg *m, const struct hl7_path *path, const char *val,
                size_t len, bool clear_only, struct hl7_error *err)
{
    const struct hl7_delims *d = &m->d;
    if (path->field == 0) {
        hl7_set_error(err, HL7_E_BAD_PATH, path->seg, path->seg_seq, 0, 0,
                      "an edit needs a field: %.3s-N", path->seg);
        return HL7_E_BAD_PATH;
    }
    size_t si;
    if (clear_only) {
        if (!hl7_find_seg(m, path->seg, path->seg_seq, &si))
            return 0;
    } else {
        int rc = seg_for_edit(m, path, &si);
        if (rc) {
            hl7_set_error(err, rc, path->seg, path->seg_seq, path->field, 0,
                          rc == HL7_E_RANGE ? "there is no %.3s[%u] and a header segment "
                                              "cannot be created by an edit"
                                            : "out of memory editing %.3s[%u]",
                          path->seg, path->seg_seq ? path->seg_seq : 1);
            return rc;
        }
    }
    const struct hl7_seg *s = &m->segs[si];
    bool header = hl7_is_header_seg(s->p, s->len, d->field);
    if (!header && hl7_is_header_name(s->name)) {
        hl7_set_error(err, HL7_E_READ_ONLY, path->seg, path->seg_seq, path->field, 0,
                      "this %.3s has no encoding characters, so its fields cannot be "
                      "edited", path->seg);
        return HL7_E_READ_ONLY;
    }
    if (header && path->field <= 2) {
        hl7_set_error(err, HL7_E_READ_ONLY, path->seg, path->seg_seq, path->field, 0,
                      "%.3s-%u holds the encoding characters and cannot be edited",
                      path->seg, path->field);
        return HL7_E_READ_ONLY;
    }

    /* Walk down the levels; the padding is the separators that make the
       path exist, all inserted at the point where the target begins. */
    struct buf pad = { 0 };
    struct hl7_elem e = { 0, s->len, 0, s->ntape };
    unsigned miss;
    unsigned elem = header ? path->field - 1 : path->field;
    locate(s, &e, d->field, elem + 1, &miss);
    bool absent = miss > 0;
    int rc = put_seps(&pad, d->field, miss);
    if (!rc && (path->rep || path->comp)) {
        unsigned r = path->rep ? path->rep : 1;
        if (absent)
            rc = put_seps(&pad, d->repetition, r - 1);
        else {
            locate(s, &e, d->repetition, r, &miss);
            absent = miss > 0;
            rc = put_seps(&pad, d->repetition, miss);
        }
        if (!rc && path->comp) {
            if (absent)
                rc = put_seps(&pad, d->component, path->comp - 1);
            else {
                locate(s, &e, d->component, path->comp, &miss);
                absent = miss > 0;
                rc = put_seps(&pad, d->component, miss);
            }
            if (!rc && path->sub) {
                if (absent)
                    rc = put_seps(&pad, d->subcomponent, path->sub - 1);
                else {
                    locate(s, &e, d->subcomponent, path->sub, &miss);
                    absent = miss > 0;
                    rc = put_seps(&pad, d->subcomponent, miss);
                }
            }
        }
    }
    if (rc) {
        buf_free(&pad);
        return HL7_E_NOMEM;
    }
    if (clear_only && (absent || e.a == e.b)) {
        buf_free(&pad);
        return 0;       /* nothing there to clear */
    }

    struct buf nb = { 0 };
    rc = buf_reserve(&nb, s->len + pad.len + len)
        || buf_append(&nb, s->p, e.a)
        || buf_append(&nb, pad.p, pad.len)
        || buf_append(&nb, val, len)
        || buf_append(&nb, s->p + e.b, s->len - e.b);
    buf_free(&pad);
    if (!rc)
        rc = replace_seg(m, si, nb.p, nb.len);
    else
        rc = HL7_E_NOMEM;
    buf_free(&nb);
    if (rc)
        hl7_set_error(err, rc, path->seg, path->seg_seq, path->field, 0,
                      "cannot edit %.3s-%u: %s", path->seg, path->field, hl7_strerror(rc));
    return rc;
}

int hl7_set(struct hl7_msg *m, const struct hl7_path *path, const char *val,
            size_t len, struct hl7_error *err)
{
    struct buf enc = { 0 };
    if (hl7_escape(&m->d, val, len, &enc)) {
        hl7_set_error(err, HL7_E_NOMEM, path->seg, path->seg_seq, path->field, 0,
                      "out of memory");
        return HL7_E_NOMEM;
    }
    int rc = edit(m, path, enc.p ? enc.p : "", enc.len, false, err);
    buf_free(&enc);
    return rc;
}

int hl7_set_raw(struct hl7_msg *m, const struct hl7_path *path, const char *val,
                size_t len, struct hl7_error *err)
{
    /* The value may hold structure below the path's level, never at or
       above it: a field holds repetitions, a repetition components... */
    const struct hl7_delims *d = &m->d;
    char banned[5] = { '\r', '\n', d->field, 0, 0 };
    if (path->rep || path->comp)
        banned[3] = d->repetition;
    if (path->comp)
        banned[4] = d->component;
    bool sub = path->sub != 0;
    for (size_t i = 0; i < len; i++) {
        char c = val[i];
        if (memchr(banned, c, path->comp ? 5 : (path->rep ? 4 : 3))
            || (sub && c == d->subcomponent)) {
            hl7_set_error(err, HL7_E_BAD_VALUE, path->seg, path->seg_seq, path->field, i,
                          c == '\r' || c == '\n'
                              ? "a raw value may not hold a line end (byte %zu)"
                              : "a raw value may not hold a delimiter of its own "
                                "level or above (byte %zu)", i);
            return HL7_E_BAD_VALUE;
        }
    }
    return edit(m, path, val, len, false, err);
}

int hl7_clear(struct hl7_msg *m, const struct hl7_path *path, struct hl7_error *err)
{
    return edit(m, path, "", 0, true, err);
}

int hl7_segment_insert(struct hl7_msg *m, size_t i, const char *raw, size_t len,
                       struct hl7_error *err)
{
    if (i > m->nsegs) {
        hl7_set_error(err, HL7_E_RANGE, "", 0, 0, 0,
                      "cannot insert at segment %zu of %zu", i, m->nsegs);
        return HL7_E_RANGE;
    }
    if (!hl7_valid_seg_name(raw, len, m->d.field)
        || hl7_is_header_name(raw)) {
        hl7_set_error(err, HL7_E_SEGMENT_NAME, "", 0, 0, 0,
                      "a new segment starts with a three-character id (not MSH, FHS "
                      "or BHS) and '%c'",
                      m->d.field);
        return HL7_E_SEGMENT_NAME;
    }
    for (size_t k = 0; k < len; k++) {
        if (raw[k] == '\r' || raw[k] == '\n') {
            hl7_set_error(err, HL7_E_BAD_VALUE, "", 0, 0, k,
                          "a segment may not hold a line end (byte %zu)", k);
            return HL7_E_BAD_VALUE;
        }
    }
    if (i == 0) {
        hl7_set_error(err, HL7_E_RANGE, "", 0, 0, 0, "MSH must stay the first segment");
        return HL7_E_RANGE;
    }
    int rc = insert_seg(m, i, raw, len);
    if (rc)
        hl7_set_error(err, rc, "", 0, 0, 0, "%s", hl7_strerror(rc));
    return rc;
}

int hl7_segment_delete(struct hl7_msg *m, size_t i, struct hl7_error *err)
{
    if (i == 0 || i >= m->nsegs) {
        hl7_set_error(err, HL7_E_RANGE, "", 0, 0, 0,
                      i == 0 ? "the MSH segment cannot be deleted"
                             : "no segment %zu to delete", i);
        return HL7_E_RANGE;
    }
    struct hl7_seg *s = &m->segs[i];
    if (s->owned) {
        free((void *)s->p);
        free(s->tape);
    }
    memmove(s, s + 1, (m->nsegs - i - 1) * sizeof *s);
    m->nsegs--;
    m->edited = true;
    return 0;
}

int hl7_serialise(const struct hl7_msg *m, unsigned flags, struct buf *b)
{
    bool cr = flags & HL7_SER_CR;
    if (!m->edited && !cr)
        return buf_append(b, m->buf, m->len) ? HL7_E_NOMEM : 0;
    size_t tl = strlen(m->term);
    if (!cr && buf_append(b, m->buf, m->lead))
        return HL7_E_NOMEM;
    for (size_t i = 0; i < m->nsegs; i++) {
        const struct hl7_seg *s = &m->segs[i];
        int rc = buf_append(b, s->p, s->len);
        if (!rc) {
            if (cr)
                rc = buf_putc(b, '\r');
            else if (s->tail && s->tail_len)
                rc = buf_append(b, s->tail, s->tail_len);
            else if (!s->tail || i + 1 < m->nsegs)
                rc = buf_append(b, m->term, tl);   /* inserted, or had none */
        }
        if (rc)
            return HL7_E_NOMEM;
    }
    return 0;
}
