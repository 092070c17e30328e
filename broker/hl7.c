/*
 * hl7.c: the HL7 v2 parser and reader. One vectorised pass finds every
 * delimiter and segment end; a second, scalar pass over those positions
 * builds the segment list and each segment's tape of delimiter offsets.
 * Reads walk the tape, never the bytes.
 */
#include "hl7_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HL7_X86 1
#endif

const struct hl7_delims hl7_default_delims = { '|', '^', '~', '\\', '&', '\0' };

/* ------------------------------------------------------------------ errors */

const char *hl7_strerror(int code)
{
    switch (code) {
    case HL7_OK: return "success";
    case HL7_E_NOMEM: return "out of memory";
    case HL7_E_EMPTY: return "no segments in input";
    case HL7_E_TOO_LARGE: return "message larger than the configured maximum";
    case HL7_E_NO_MSH: return "message does not start with an MSH segment";
    case HL7_E_ENCODING: return "MSH encoding characters unusable";
    case HL7_E_SEGMENT_NAME: return "segment id is not three letters or digits";
    case HL7_E_MISSING_FIELD: return "required field missing";
    case HL7_E_BAD_PATH: return "path does not parse";
    case HL7_E_READ_ONLY: return "MSH-1 and MSH-2 cannot be edited";
    case HL7_E_BAD_VALUE: return "value holds a segment terminator";
    case HL7_E_RANGE: return "segment index out of range";
    case HL7_E_BATCH_COUNT: return "batch trailer count disagrees with content";
    case HL7_E_BATCH_STRUCTURE: return "batch header or trailer out of place";
    }
    return "unknown error";
}

int hl7_err_table0357(int code)
{
    switch (code) {
    case HL7_OK: return 0;
    case HL7_E_EMPTY:
    case HL7_E_NO_MSH:
    case HL7_E_SEGMENT_NAME:
    case HL7_E_BATCH_STRUCTURE:
        return 100;     /* segment sequence error */
    case HL7_E_MISSING_FIELD:
        return 101;     /* required field missing */
    case HL7_E_ENCODING:
    case HL7_E_BAD_VALUE:
        return 102;     /* data type error */
    }
    return 207;         /* application internal error */
}

void hl7_set_error(struct hl7_error *err, int code, const char *seg,
                   unsigned seq, unsigned field, size_t offset,
                   const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    snprintf(err->segment, sizeof err->segment, "%s", seg ? seg : "");
    err->seg_seq = seq;
    err->field = field;
    err->offset = offset;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
}

/* --------------------------------------------------- stage 1: find delimiters */

/* Structural characters: the four delimiters and the two line ends. None
 * of them is NUL (the delimiters are validated as printable), so a block
 * padded with zeros gains no false positions. */
struct scan_chars {
    char c[6];
};

static inline void flatten(uint32_t *out, size_t *n, uint64_t m, uint32_t base)
{
    /* Write eight positions unconditionally; branch only for dense blocks.
       OR-ing bit 63 keeps ctz defined when m runs out. */
    const uint64_t hi = 1ull << 63;
    unsigned cnt = (unsigned)__builtin_popcountll(m);
    uint32_t *o = out + *n;
    for (int k = 0; k < 8; k++) {
        o[k] = base + (uint32_t)__builtin_ctzll(m | hi);
        m &= m - 1;
    }
    if (cnt > 8) {
        for (int k = 8; k < 16; k++) {
            o[k] = base + (uint32_t)__builtin_ctzll(m | hi);
            m &= m - 1;
        }
        for (unsigned k = 16; m; k++) {
            o[k] = base + (uint32_t)__builtin_ctzll(m);
            m &= m - 1;
        }
    }
    *n += cnt;
}

static __attribute__((unused)) uint64_t block_mask_scalar(const char *p,
                                                          const struct scan_chars *sc)
{
    uint64_t m = 0;
    for (int i = 0; i < 64; i++) {
        char ch = p[i];
        if (ch == sc->c[0] || ch == sc->c[1] || ch == sc->c[2] ||
            ch == sc->c[3] || ch == sc->c[4] || ch == sc->c[5])
            m |= 1ull << i;
    }
    return m;
}

#ifdef HL7_X86
static inline uint64_t block_mask_sse2(const char *p, const __m128i v[6])
{
    uint64_t m = 0;
    for (int h = 0; h < 4; h++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * h));
        __m128i r = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, v[0]), _mm_cmpeq_epi8(x, v[1])),
            _mm_or_si128(_mm_cmpeq_epi8(x, v[2]), _mm_cmpeq_epi8(x, v[3])));
        r = _mm_or_si128(r, _mm_or_si128(_mm_cmpeq_epi8(x, v[4]),
                                         _mm_cmpeq_epi8(x, v[5])));
        m |= (uint64_t)(uint16_t)_mm_movemask_epi8(r) << (16 * h);
    }
    return m;
}

__attribute__((target("avx2")))
static inline uint64_t block_mask_avx2(const char *p, const __m256i v[6])
{
    uint64_t m = 0;
    for (int h = 0; h < 2; h++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32 * h));
        __m256i r = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(x, v[0]), _mm256_cmpeq_epi8(x, v[1])),
            _mm256_or_si256(_mm256_cmpeq_epi8(x, v[2]), _mm256_cmpeq_epi8(x, v[3])));
        r = _mm256_or_si256(r, _mm256_or_si256(_mm256_cmpeq_epi8(x, v[4]),
                                               _mm256_cmpeq_epi8(x, v[5])));
        m |= (uint64_t)(uint32_t)_mm256_movemask_epi8(r) << (32 * h);
    }
    return m;
}

__attribute__((target("avx2")))
static size_t scan_avx2(const char *buf, size_t len, const struct scan_chars *sc,
                        uint32_t *out)
{
    __m256i v[6];
    for (int k = 0; k < 6; k++)
        v[k] = _mm256_set1_epi8(sc->c[k]);
    size_t n = 0, i = 0;
    for (; i + 64 <= len; i += 64) {
        uint64_t m = block_mask_avx2(buf + i, v);
        if (m)
            flatten(out, &n, m, (uint32_t)i);
    }
    if (i < len) {
        char tail[64] = { 0 };     /* zeros match no delimiter */
        memcpy(tail, buf + i, len - i);
        uint64_t m = block_mask_avx2(tail, v);
        if (m)
            flatten(out, &n, m, (uint32_t)i);
    }
    return n;
}
#endif

/* Find every structural character of buf; out must have room for len + 64
 * entries (flatten writes a little past the count). Returns the count. */
static size_t scan_structurals(const char *buf, size_t len,
                               const struct scan_chars *sc, uint32_t *out)
{
#ifdef HL7_X86
    static int have_avx2 = -1;
    if (have_avx2 < 0) {
        __builtin_cpu_init();
        have_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    if (have_avx2)
        return scan_avx2(buf, len, sc, out);
    __m128i v[6];
    for (int k = 0; k < 6; k++)
        v[k] = _mm_set1_epi8(sc->c[k]);
#endif
    size_t n = 0, i = 0;
    for (; i + 64 <= len; i += 64) {
#ifdef HL7_X86
        uint64_t m = block_mask_sse2(buf + i, v);
#else
        uint64_t m = block_mask_scalar(buf + i, sc);
#endif
        if (m)
            flatten(out, &n, m, (uint32_t)i);
    }
    if (i < len) {
        char tail[64] = { 0 };     /* zeros match no delimiter */
        memcpy(tail, buf + i, len - i);
#ifdef HL7_X86
        uint64_t m = block_mask_sse2(tail, v);
#else
        uint64_t m = block_mask_scalar(tail, sc);
#endif
        if (m)
            flatten(out, &n, m, (uint32_t)i);
    }
    return n;
}

/* ------------------------------------------------------- encoding characters */

static bool valid_delim(unsigned char c)
{
    /* printable, and neither a letter, a digit nor a space */
    if (c <= 0x20 || c >= 0x7f)
        return false;
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return false;
    return true;
}

/* Read MSH-1 and MSH-2 from a header segment at p (len bytes up to the
 * first line end). Returns 0, or HL7_E_ENCODING with err filled. */
static int read_delims(const char *p, size_t len, size_t base_off,
                       struct hl7_delims *d, struct hl7_error *err)
{
    if (len < 4) {
        hl7_set_error(err, HL7_E_ENCODING, "MSH", 1, 1, base_off + len,
                      "MSH ends before MSH-1: the field separator is missing");
        return HL7_E_ENCODING;
    }
    char fs = p[3];
    if (!valid_delim((unsigned char)fs)) {
        hl7_set_error(err, HL7_E_ENCODING, "MSH", 1, 1, base_off + 3,
                      "MSH-1 (field separator) 0x%02x is not a usable delimiter",
                      (unsigned char)fs);
        return HL7_E_ENCODING;
    }
    size_t k = 4;
    while (k < len && p[k] != fs)
        k++;
    size_t n = k - 4;
    if (n < 4 || n > 5) {
        hl7_set_error(err, HL7_E_ENCODING, "MSH", 1, 2, base_off + 4,
                      "MSH-2 (encoding characters) has %zu characters; it needs "
                      "4 (^~\\&) or 5 with the v2.7 truncation character", n);
        return HL7_E_ENCODING;
    }
    const char *e = p + 4;
    char all[6] = { fs, e[0], e[1], e[2], e[3], n == 5 ? e[4] : '\0' };
    for (size_t i = 0; i < n + 1; i++) {
        if (!valid_delim((unsigned char)all[i])) {
            hl7_set_error(err, HL7_E_ENCODING, "MSH", 1, 2, base_off + 3 + i,
                          "MSH-2 character %zu (0x%02x) is not a usable delimiter",
                          i, (unsigned char)all[i]);
            return HL7_E_ENCODING;
        }
        for (size_t j = 0; j < i; j++) {
            if (all[i] == all[j]) {
                hl7_set_error(err, HL7_E_ENCODING, "MSH", 1, 2, base_off + 3 + i,
                              "encoding character '%c' is used twice in MSH-1/MSH-2",
                              all[i]);
                return HL7_E_ENCODING;
            }
        }
    }
    d->field = fs;
    d->component = e[0];
    d->repetition = e[1];
    d->escape = e[2];
    d->subcomponent = e[3];
    d->truncation = n == 5 ? e[4] : '\0';
    return 0;
}

bool hl7_is_header_name(const char *p)
{
    return memcmp(p, "MSH", 3) == 0 || memcmp(p, "FHS", 3) == 0 || memcmp(p, "BHS", 3) == 0;
}

bool hl7_is_header_seg(const char *p, size_t len, char fs)
{
    return len >= 4 && p[3] == fs && hl7_is_header_name(p);
}

static bool seg_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool hl7_valid_seg_name(const char *p, size_t len, char fs)
{
    if (len < 3 || !seg_name_char(p[0]) || !seg_name_char(p[1]) || !seg_name_char(p[2]))
        return false;
    return len == 3 || p[3] == fs;
}

/* Where MSH-2's encoding characters end: the first field separator or
 * line end after offset 4. */
static size_t header_skip_end(const char *p, size_t avail, char fs)
{
    size_t k = 4;
    while (k < avail && p[k] != fs && p[k] != '\r' && p[k] != '\n')
        k++;
    return k;
}

/* ------------------------------------------------------------------- parse */

int hl7_grow_segs(struct hl7_msg *m)
{
    if (m->nsegs < m->capsegs)
        return 0;
    size_t cap = m->capsegs ? m->capsegs * 2 : 16;
    struct hl7_seg *n;
    if (m->segs_inline) {
        n = malloc(cap * sizeof *n);
        if (n)
            memcpy(n, m->segs, m->nsegs * sizeof *n);
    } else {
        n = realloc(m->segs, cap * sizeof *n);
    }
    if (!n)
        return HL7_E_NOMEM;
    m->segs = n;
    m->capsegs = cap;
    m->segs_inline = false;
    return 0;
}

static int add_seg(struct hl7_msg *m, const struct hl7_seg *s)
{
    if (m->nsegs == m->capsegs && hl7_grow_segs(m))
        return HL7_E_NOMEM;
    m->segs[m->nsegs++] = *s;
    return 0;
}

void hl7_free(struct hl7_msg *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nsegs; i++) {
        if (m->segs[i].owned) {
            free((void *)m->segs[i].p);
            free(m->segs[i].tape);
        }
    }
    if (!m->segs_inline)
        free(m->segs);
    if (!m->tape_inline)
        free(m->tape);
    free(m);
}

const struct hl7_delims *hl7_msg_delims(const struct hl7_msg *m)
{
    return &m->d;
}

/* Up to this size the tape is allocated with the message, at its worst-case
 * size; beyond, it starts smaller and grows. */
#define INLINE_TAPE_MAX (256u << 10)

static int check_header(struct hl7_msg *m, struct hl7_error *err);

/* Record the segment first[start..end) whose tape entries are
 * P[tape_first..*w). A header segment (MSH, FHS, BHS) loses the entries
 * of its MSH-2, whose characters are data, not delimiters. */
static int close_seg(struct hl7_msg *m, const char *first, uint32_t start, uint32_t end,
                     uint32_t tape_first, uint32_t *w, struct hl7_error *err)
{
    const char *sp = first + start;
    uint32_t slen = end - start;
    const char fs = m->d.field;
    if (!hl7_valid_seg_name(sp, slen, fs)) {
        hl7_set_error(err, HL7_E_SEGMENT_NAME, "", 0, 0, m->lead + start,
                      "segment %zu does not start with a three-character "
                      "segment id followed by '%c'", m->nsegs + 1, fs);
        return HL7_E_SEGMENT_NAME;
    }
    if (hl7_is_header_seg(sp, slen, fs)) {
        uint32_t skip = (uint32_t)header_skip_end(sp, slen, fs);
        uint32_t *t = m->tape + tape_first;     /* t[0] is MSH-1 at offset 3 */
        uint32_t n = *w - tape_first, k = 1;
        while (k < n && t[k] < skip)
            k++;
        if (k > 1) {
            memmove(t + 1, t + k, (n - k) * sizeof *t);
            *w -= k - 1;
        }
    }
    struct hl7_seg s = { 0 };
    memcpy(s.name, sp, 3);
    s.p = sp;
    s.len = slen;
    s.ntape = *w - tape_first;
    s.tail_len = tape_first;    /* parked: fixed up once the tape stops moving */
    return add_seg(m, &s);
}

int hl7_parse(const char *buf, size_t len, const struct hl7_parse_opts *opts,
              struct hl7_msg **out, struct hl7_error *err)
{
    int rc;
    size_t max = opts && opts->max_bytes ? opts->max_bytes : HL7_DEFAULT_MAX;
    if (max > HL7_HARD_MAX)
        max = HL7_HARD_MAX;
    *out = NULL;
    if (len > max) {
        hl7_set_error(err, HL7_E_TOO_LARGE, "", 0, 0, max,
                      "message is %zu bytes, over the maximum of %zu", len, max);
        return HL7_E_TOO_LARGE;
    }

    size_t lead = 0;
    while (lead < len && (buf[lead] == '\r' || buf[lead] == '\n'))
        lead++;
    if (lead == len) {
        hl7_set_error(err, HL7_E_EMPTY, "", 0, 0, 0, "input holds no segments");
        return HL7_E_EMPTY;
    }
    const char *first = buf + lead;
    size_t avail = len - lead;
    if (avail < 3 || memcmp(first, "MSH", 3) != 0) {
        if (avail >= 3 && hl7_valid_seg_name(first, 3, 0)) {
            char name[4] = { first[0], first[1], first[2], 0 };
            bool batch = strcmp(name, "FHS") == 0 || strcmp(name, "BHS") == 0;
            hl7_set_error(err, HL7_E_NO_MSH, name, 1, 0, lead,
                          "the first segment must be MSH; found %s%s", name,
                          batch ? ": a batch must be split into its messages, sent one "
                                  "per MLLP frame" : "");
        } else {
            hl7_set_error(err, HL7_E_NO_MSH, "", 0, 0, lead,
                          "the first segment must be MSH; found bytes that are not "
                          "an HL7 segment");
        }
        return HL7_E_NO_MSH;
    }
    /* MSH-1 and MSH-2 sit in the first dozen bytes: look no further for
       them (the segment end is found by the scan below). */
    size_t line = 0;
    while (line < avail && line < 16 && first[line] != '\r' && first[line] != '\n')
        line++;

    /* One allocation holds the message, a first segment table and, for
       all but large input, a tape big enough for any density of
       delimiters (scan_structurals may write 64 entries past the count). */
    size_t cap = avail <= INLINE_TAPE_MAX ? avail + 64 : avail / 3 + 128;
    size_t segcap = avail / 48 + 8;
    bool inline_tape = avail <= INLINE_TAPE_MAX;
    size_t size = sizeof(struct hl7_msg) + segcap * sizeof(struct hl7_seg)
                  + (inline_tape ? cap * sizeof(uint32_t) : 0);
    struct hl7_msg *m = malloc(size);
    if (!m)
        return HL7_E_NOMEM;
    memset(m, 0, sizeof *m);
    m->segs = (struct hl7_seg *)(void *)(m + 1);
    m->capsegs = segcap;
    m->segs_inline = true;
    if (inline_tape) {
        m->tape = (uint32_t *)(void *)(m->segs + segcap);
        m->tape_inline = true;
    }
    m->buf = buf;
    m->len = len;
    m->lead = lead;
    rc = read_delims(first, line, lead, &m->d, err);
    if (rc)
        goto fail;

    /* Large input: room for every byte being a delimiter would be 4x the
       input, so start from a typical density and grow for dense input. */
    if (!m->tape && !(m->tape = malloc(cap * sizeof *m->tape))) {
        rc = HL7_E_NOMEM;
        goto fail;
    }
    struct scan_chars sc = { { m->d.field, m->d.component, m->d.repetition,
                               m->d.subcomponent, '\r', '\n' } };
    size_t npos;
    if (cap >= avail + 64) {
        npos = scan_structurals(first, avail, &sc, m->tape);
    } else {
        /* Scan in chunks so that a dense input grows the tape as needed. */
        npos = 0;
        size_t chunk = 1 << 16;
        for (size_t off = 0; off < avail; off += chunk) {
            size_t n = avail - off < chunk ? avail - off : chunk;
            if (cap - npos < n + 64) {
                size_t ncap = cap * 2 > npos + n + 64 ? cap * 2 : npos + n + 64;
                uint32_t *t = realloc(m->tape, ncap * sizeof *t);  /* never inline here */
                if (!t) {
                    rc = HL7_E_NOMEM;
                    goto fail;
                }
                m->tape = t;
                cap = ncap;
            }
            size_t got = scan_structurals(first + off, n, &sc, m->tape + npos);
            for (size_t k = npos; k < npos + got; k++)
                m->tape[k] += (uint32_t)off;
            npos += got;
        }
    }

    /* Stage 2: one pass over the positions. Delimiters become the current
       segment's tape entries, in place (w never passes r), as offsets from
       the segment start; line ends close segments. Every delimiter is
       above 0x20 (read_delims), so one compare tells a line end. */
    uint32_t *P = m->tape;
    uint32_t seg_start = 0, tape_first = 0, w = 0;
    for (size_t r = 0; r < npos; r++) {
        uint32_t pos = P[r];
        P[w] = pos - seg_start;
        if (__builtin_expect((unsigned char)first[pos] > '\r', 1)) {
            w++;
            continue;
        }
        if (pos > seg_start
            && (rc = close_seg(m, first, seg_start, pos, tape_first, &w, err)))
            goto fail;
        seg_start = pos + 1;
        tape_first = w;
    }
    if (avail > seg_start
        && (rc = close_seg(m, first, seg_start, (uint32_t)avail, tape_first, &w, err)))
        goto fail;
    for (size_t i = 0; i < m->nsegs; i++) {
        struct hl7_seg *g = &m->segs[i];
        g->tape = m->tape + g->tail_len;
        const char *end = g->p + g->len;
        const char *next = i + 1 < m->nsegs ? m->segs[i + 1].p : buf + len;
        g->tail = end;
        g->tail_len = (uint32_t)(next - end);
    }
    /* edited and inserted segments end like the first one did */
    const struct hl7_seg *g0 = &m->segs[0];
    m->term[0] = g0->tail_len ? g0->tail[0] : '\r';
    if (g0->tail_len > 1 && g0->tail[0] == '\r' && g0->tail[1] == '\n')
        m->term[1] = '\n';
    if ((rc = check_header(m, err)))
        goto fail;
    *out = m;
    return 0;
fail:
    if (rc == HL7_E_NOMEM)
        hl7_set_error(err, rc, "", 0, 0, 0, "out of memory parsing %zu bytes", len);
    hl7_free(m);
    return rc;
}

int hl7_index_segment(const struct hl7_delims *d, const char *p, uint32_t len,
                      uint32_t **tape, uint32_t *ntape)
{
    size_t n = 0;
    for (uint32_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == d->field || c == d->component || c == d->repetition || c == d->subcomponent)
            n++;
    }
    uint32_t *t = malloc((n ? n : 1) * sizeof *t);
    if (!t)
        return HL7_E_NOMEM;
    uint32_t skip = hl7_is_header_seg(p, len, d->field)
                        ? (uint32_t)header_skip_end(p, len, d->field) : 0;
    size_t w = 0;
    for (uint32_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == d->field || c == d->component || c == d->repetition || c == d->subcomponent) {
            if (i >= skip || i == 3)
                t[w++] = i;
        }
    }
    *tape = t;
    *ntape = (uint32_t)w;
    return 0;
}

/* ------------------------------------------------------------------ reading */

void hl7_iter_init(struct hl7_iter *it, const char *p, const uint32_t *tape,
                   const struct hl7_elem *within, char sep)
{
    it->p = p;
    it->tape = tape;
    it->i = within->ti;
    it->te = within->te;
    it->pos = within->a;
    it->end = within->b;
    it->sep = sep;
    it->done = false;
}

bool hl7_iter_next(struct hl7_iter *it, struct hl7_elem *out)
{
    if (it->done)
        return false;
    out->a = it->pos;
    out->ti = it->i;
    while (it->i < it->te && it->p[it->tape[it->i]] != it->sep)
        it->i++;
    if (it->i < it->te) {
        out->b = it->tape[it->i];
        out->te = it->i;
        it->pos = out->b + 1;
        it->i++;
    } else {
        out->b = it->end;
        out->te = it->te;
        it->done = true;
    }
    return true;
}

bool hl7_seg_field(const struct hl7_msg *m, const struct hl7_seg *s,
                   unsigned field, struct hl7_elem *out)
{
    bool header = hl7_is_header_seg(s->p, s->len, m->d.field);
    unsigned want = field;      /* element number: name is element 0 */
    if (header) {
        if (field < 2)
            return false;
        want = field - 1;
    }
    const char fs = m->d.field;
    unsigned k = 0;
    uint32_t i = 0;
    for (; i < s->ntape; i++) {
        if (s->p[s->tape[i]] == fs && ++k == want)
            break;
    }
    if (k < want || want == 0)
        return false;
    out->a = s->tape[i] + 1;
    out->ti = i + 1;
    uint32_t j = i + 1;
    while (j < s->ntape && s->p[s->tape[j]] != fs)
        j++;
    out->te = j;
    out->b = j < s->ntape ? s->tape[j] : s->len;
    return true;
}

const struct hl7_seg *hl7_find_seg(const struct hl7_msg *m, const char name[4],
                                   unsigned seq, size_t *index)
{
    unsigned want = seq ? seq : 1, k = 0;
    for (size_t i = 0; i < m->nsegs; i++) {
        const struct hl7_seg *s = &m->segs[i];
        if (s->name[0] == name[0] && s->name[1] == name[1] && s->name[2] == name[2]
            && ++k == want) {
            if (index)
                *index = i;
            return s;
        }
    }
    return NULL;
}

/* Step from e into child idx (1-based) split by sep; false when absent. */
static bool child(const struct hl7_seg *s, struct hl7_elem *e, char sep, unsigned idx)
{
    struct hl7_iter it;
    hl7_iter_init(&it, s->p, s->tape, e, sep);
    struct hl7_elem c;
    for (unsigned k = 1; hl7_iter_next(&it, &c); k++) {
        if (k == idx) {
            *e = c;
            return true;
        }
    }
    return false;
}

static enum hl7_presence presence(const char *p, size_t len)
{
    if (len == 0)
        return HL7_EMPTY;
    if (len == 2 && p[0] == '"' && p[1] == '"')
        return HL7_NULL;
    return HL7_VALUE;
}

/* Resolve path to an element of segment s; MSH-1 is answered directly. */
static enum hl7_presence resolve(const struct hl7_msg *m, const struct hl7_seg *s,
                                 const struct hl7_path *path, struct hl7_elem *e,
                                 struct hl7_span *out)
{
    if (path->field == 0) {
        out->p = s->p;
        out->len = s->len;
        e->a = 0;
        e->b = s->len;
        e->ti = 0;
        e->te = s->ntape;
        return HL7_VALUE;
    }
    if (path->field == 1 && hl7_is_header_seg(s->p, s->len, m->d.field)) {
        if (path->rep > 1 || path->comp > 1 || path->sub > 1)
            return HL7_ABSENT;
        out->p = s->p + 3;
        out->len = 1;
        return HL7_VALUE;
    }
    if (!hl7_seg_field(m, s, path->field, e))
        return HL7_ABSENT;
    if (path->rep || path->comp) {
        if (!child(s, e, m->d.repetition, path->rep ? path->rep : 1))
            return HL7_ABSENT;
        if (path->comp) {
            if (!child(s, e, m->d.component, path->comp))
                return HL7_ABSENT;
            if (path->sub && !child(s, e, m->d.subcomponent, path->sub))
                return HL7_ABSENT;
        }
    }
    out->p = s->p + e->a;
    out->len = e->b - e->a;
    return presence(out->p, out->len);
}

enum hl7_presence hl7_get(const struct hl7_msg *m, const struct hl7_path *path,
                          struct hl7_span *out)
{
    out->p = NULL;
    out->len = 0;
    const struct hl7_seg *s = hl7_find_seg(m, path->seg, path->seg_seq, NULL);
    if (!s)
        return HL7_ABSENT;
    struct hl7_elem e;
    enum hl7_presence pr = resolve(m, s, path, &e, out);
    if (pr == HL7_ABSENT || pr == HL7_EMPTY) {
        out->p = pr == HL7_EMPTY ? out->p : NULL;
        out->len = 0;
    }
    return pr;
}

enum hl7_presence hl7_get_decoded(const struct hl7_msg *m, const struct hl7_path *path,
                                  struct buf *b)
{
    struct hl7_span v;
    enum hl7_presence pr = hl7_get(m, path, &v);
    if (pr != HL7_VALUE && pr != HL7_NULL)
        return pr;
    const struct hl7_seg *s = hl7_find_seg(m, path->seg, path->seg_seq, NULL);
    int rc;
    if ((path->field == 1 || path->field == 2) && hl7_is_header_seg(s->p, s->len, m->d.field))
        rc = buf_append(b, v.p, v.len);     /* MSH-1 and MSH-2 are literal */
    else
        rc = hl7_unescape(&m->d, v.p, v.len, b);
    return rc ? HL7_ABSENT : pr;
}

enum hl7_presence hl7_get_str(const struct hl7_msg *m, const char *text,
                              struct hl7_span *out)
{
    struct hl7_path p;
    if (hl7_path_parse(text, strlen(text), &p, NULL)) {
        out->p = NULL;
        out->len = 0;
        return HL7_ABSENT;
    }
    return hl7_get(m, &p, out);
}

size_t hl7_segment_count(const struct hl7_msg *m, const char *name)
{
    if (!name)
        return m->nsegs;
    size_t n = 0;
    for (size_t i = 0; i < m->nsegs; i++)
        n += strncmp(m->segs[i].name, name, 3) == 0;
    return n;
}

size_t hl7_count(const struct hl7_msg *m, const struct hl7_path *path)
{
    const struct hl7_seg *s = hl7_find_seg(m, path->seg, path->seg_seq, NULL);
    if (!s || path->field == 0)
        return 0;
    if (path->field == 1 && hl7_is_header_seg(s->p, s->len, m->d.field))
        return path->rep > 1 || path->comp > 1 || path->sub > 1 ? 0 : 1;
    struct hl7_elem e;
    if (!hl7_seg_field(m, s, path->field, &e) || e.a == e.b)
        return 0;
    char sep = m->d.repetition;
    if (path->comp) {
        if (!child(s, &e, sep, path->rep ? path->rep : 1)
            || !child(s, &e, m->d.component, path->comp))
            return 0;
        sep = m->d.subcomponent;
    } else if (path->rep) {
        if (!child(s, &e, sep, path->rep))
            return 0;
        sep = m->d.component;
    }
    if (e.a == e.b)
        return 0;
    size_t n = 1;
    for (uint32_t i = e.ti; i < e.te; i++)
        n += s->p[s->tape[i]] == sep;
    return n;
}

bool hl7_segment_at(const struct hl7_msg *m, size_t i, char name[4], struct hl7_span *raw)
{
    if (i >= m->nsegs)
        return false;
    if (name)
        memcpy(name, m->segs[i].name, 4);
    if (raw) {
        raw->p = m->segs[i].p;
        raw->len = m->segs[i].len;
    }
    return true;
}

unsigned hl7_field_count(const struct hl7_msg *m, size_t i)
{
    if (i >= m->nsegs)
        return 0;
    const struct hl7_seg *s = &m->segs[i];
    unsigned n = 0;
    for (uint32_t k = 0; k < s->ntape; k++)
        n += s->p[s->tape[k]] == m->d.field;
    if (hl7_is_header_seg(s->p, s->len, m->d.field))
        n++;
    return n;
}

/* --------------------------------------------------------------------- walk */

static unsigned name_code(const char *n)
{
    unsigned v = 0;
    for (int i = 0; i < 3; i++)
        v = v * 36 + (unsigned)(n[i] >= 'A' ? n[i] - 'A' + 10 : n[i] - '0');
    return v;
}

struct walk {
    const struct hl7_msg *m;
    const struct hl7_seg *s;
    hl7_walk_fn fn;
    void *ctx;
    struct hl7_path path;
};

static int visit(struct walk *w, enum hl7_node kind, const struct hl7_elem *e, bool leaf)
{
    struct hl7_span sp = { w->s->p + e->a, e->b - e->a };
    return w->fn(w->ctx, kind, &w->path, &sp, leaf);
}

static bool has_sep(const struct hl7_seg *s, const struct hl7_elem *e, char sep)
{
    for (uint32_t i = e->ti; i < e->te; i++)
        if (s->p[s->tape[i]] == sep)
            return true;
    return false;
}

static int walk_field(struct walk *w, const struct hl7_elem *f)
{
    const struct hl7_delims *d = &w->m->d;
    int rc;
    bool reps = has_sep(w->s, f, d->repetition);
    bool comps = has_sep(w->s, f, d->component) || has_sep(w->s, f, d->subcomponent);
    w->path.rep = w->path.comp = w->path.sub = 0;
    if ((rc = visit(w, HL7_NODE_FIELD, f, !reps && !comps)))
        return rc;
    if (!reps && !comps)
        return 0;
    struct hl7_iter ri;
    struct hl7_elem r;
    hl7_iter_init(&ri, w->s->p, w->s->tape, f, d->repetition);
    /* a field without repetitions reads as PID-5.1, not PID-5[1].1 */
    for (w->path.rep = reps; hl7_iter_next(&ri, &r); w->path.rep += reps) {
        bool rc_comps = has_sep(w->s, &r, d->component) || has_sep(w->s, &r, d->subcomponent);
        w->path.comp = w->path.sub = 0;
        if (reps && (rc = visit(w, HL7_NODE_REP, &r, !rc_comps)))
            return rc;
        if (!rc_comps)
            continue;
        struct hl7_iter ci;
        struct hl7_elem c;
        hl7_iter_init(&ci, w->s->p, w->s->tape, &r, d->component);
        for (w->path.comp = 1; hl7_iter_next(&ci, &c); w->path.comp++) {
            bool subs = has_sep(w->s, &c, d->subcomponent);
            w->path.sub = 0;
            if ((rc = visit(w, HL7_NODE_COMP, &c, !subs)))
                return rc;
            if (!subs)
                continue;
            struct hl7_iter si;
            struct hl7_elem sc;
            hl7_iter_init(&si, w->s->p, w->s->tape, &c, d->subcomponent);
            for (w->path.sub = 1; hl7_iter_next(&si, &sc); w->path.sub++)
                if ((rc = visit(w, HL7_NODE_SUB, &sc, true)))
                    return rc;
        }
    }
    return 0;
}

int hl7_walk(const struct hl7_msg *m, hl7_walk_fn fn, void *ctx)
{
    struct walk w = { .m = m, .fn = fn, .ctx = ctx };
    int rc = 0;
    /* how many of each segment id so far: ids are 3 of [A-Z0-9] */
    uint32_t *seen = calloc(36 * 36 * 36, sizeof *seen);
    if (!seen)
        return HL7_E_NOMEM;
    for (size_t i = 0; i < m->nsegs; i++) {
        const struct hl7_seg *s = &m->segs[i];
        w.s = s;
        memset(&w.path, 0, sizeof w.path);
        memcpy(w.path.seg, s->name, 4);
        w.path.seg_seq = ++seen[name_code(s->name)];
        struct hl7_elem whole = { 0, s->len, 0, s->ntape };
        if ((rc = visit(&w, HL7_NODE_SEGMENT, &whole, s->len <= 3)))
            goto out;
        bool header = hl7_is_header_seg(s->p, s->len, m->d.field);
        struct hl7_iter fi;
        struct hl7_elem e;
        hl7_iter_init(&fi, s->p, s->tape, &whole, m->d.field);
        hl7_iter_next(&fi, &e);          /* element 0: the segment id */
        unsigned f = 0;
        if (header) {                    /* MSH-1: the separator itself */
            e.a = 3;
            e.b = 4;
            e.ti = e.te = 0;
            w.path.field = f = 1;
            if ((rc = visit(&w, HL7_NODE_FIELD, &e, true)))
                goto out;
        }
        while (hl7_iter_next(&fi, &e)) {
            w.path.field = ++f;
            w.path.rep = w.path.comp = w.path.sub = 0;
            if (header && f == 2) {      /* MSH-2 is literal, never split */
                if ((rc = visit(&w, HL7_NODE_FIELD, &e, true)))
                    goto out;
                continue;
            }
            if ((rc = walk_field(&w, &e)))
                goto out;
        }
    }
out:
    free(seen);
    return rc;
}

/* -------------------------------------------------------------------- paths */

static bool read_num(const char *t, size_t len, size_t *i, unsigned *out)
{
    size_t start = *i;
    unsigned long v = 0;
    while (*i < len && t[*i] >= '0' && t[*i] <= '9') {
        v = v * 10 + (unsigned long)(t[*i] - '0');
        if (v > 1000000) {
            *i = start;         /* point at the number */
            return false;
        }
        (*i)++;
    }
    if (*i == start)
        return false;
    if (v == 0) {
        *i = start;             /* indices count from 1: point at the 0 */
        return false;
    }
    *out = (unsigned)v;
    return true;
}

static bool read_index(const char *t, size_t len, size_t *i, unsigned *out)
{
    if (*i >= len || t[*i] != '[')
        return true;
    (*i)++;
    if (!read_num(t, len, i, out))
        return false;
    if (*i >= len || t[*i] != ']')
        return false;
    (*i)++;
    return true;
}

int hl7_path_parse(const char *t, size_t len, struct hl7_path *p, struct hl7_error *err)
{
    memset(p, 0, sizeof *p);
    size_t i = 0;
    const char *what;
    if (len < 3 || !seg_name_char(t[0]) || !seg_name_char(t[1]) || !seg_name_char(t[2])) {
        what = "a path starts with a three-character segment id in capitals, like PID";
        goto bad;
    }
    memcpy(p->seg, t, 3);
    i = 3;
    what = "a segment index is a number from 1 in brackets, like OBX[2]";
    if (!read_index(t, len, &i, &p->seg_seq))
        goto bad;
    if (i == len)
        return 0;
    what = "after the segment comes '-' and a field number, like PID-3";
    if (t[i] != '-' && t[i] != '.')
        goto bad;
    i++;
    what = "a field number is a number from 1, like PID-3";
    if (!read_num(t, len, &i, &p->field))
        goto bad;
    what = "a repetition is a number from 1 in brackets, like PID-3[2]";
    if (!read_index(t, len, &i, &p->rep))
        goto bad;
    if (i < len) {
        what = "a component follows a '.', like PID-5.1";
        if (t[i] != '.')
            goto bad;
        i++;
        if (!read_num(t, len, &i, &p->comp))
            goto bad;
    }
    if (i < len) {
        what = "a subcomponent follows a '.', like PID-3.4.1";
        if (t[i] != '.')
            goto bad;
        i++;
        if (!read_num(t, len, &i, &p->sub))
            goto bad;
    }
    if (i < len) {
        what = "unexpected characters after the path";
        goto bad;
    }
    return 0;
bad:
    hl7_set_error(err, HL7_E_BAD_PATH, "", 0, 0, i, "bad path '%.*s' at column %zu: %s",
                  (int)(len > 64 ? 64 : len), t, i + 1, what);
    return HL7_E_BAD_PATH;
}

int hl7_path_format(const struct hl7_path *p, struct buf *b)
{
    int rc = buf_append(b, p->seg, 3);
    if (!rc && p->seg_seq > 1)
        rc = buf_printf(b, "[%u]", p->seg_seq);
    if (!rc && p->field)
        rc = buf_printf(b, "-%u", p->field);
    if (!rc && p->field && p->rep)
        rc = buf_printf(b, "[%u]", p->rep);
    if (!rc && p->field && p->comp)
        rc = buf_printf(b, ".%u", p->comp);
    if (!rc && p->field && p->comp && p->sub)
        rc = buf_printf(b, ".%u", p->sub);
    return rc;
}

/* ---------------------------------------------------------- header checks */

static const struct hl7_path P_MSH9_1 = { "MSH", 0, 9, 0, 1, 0 };

static int check_header(struct hl7_msg *m, struct hl7_error *err)
{
    struct hl7_span v;
    enum hl7_presence pr = hl7_get(m, &P_MSH9_1, &v);
    if (pr != HL7_VALUE) {
        const struct hl7_seg *s = &m->segs[0];
        struct hl7_elem e;
        size_t off = hl7_seg_field(m, s, 9, &e) ? e.a : s->len;
        hl7_set_error(err, HL7_E_MISSING_FIELD, "MSH", 1, 9,
                      (size_t)(s->p - m->buf) + off,
                      "MSH-9 (message type) is empty: every message must say its "
                      "type, like ADT^A01");
        return HL7_E_MISSING_FIELD;
    }
    return 0;
}

/* -------------------------------------------------------------- metadata */

#define MSHP(f, r, c) { "MSH", 0, f, r, c, 0 }
static const struct hl7_path P_CODE = MSHP(9, 0, 1), P_TRIGGER = MSHP(9, 0, 2),
    P_STRUCT = MSHP(9, 0, 3), P_CTRL = MSHP(10, 0, 0), P_PROC = MSHP(11, 0, 1),
    P_VER = MSHP(12, 0, 1), P_SAPP = MSHP(3, 0, 0), P_SFAC = MSHP(4, 0, 0),
    P_RAPP = MSHP(5, 0, 0), P_RFAC = MSHP(6, 0, 0), P_ACC = MSHP(15, 0, 0),
    P_APP = MSHP(16, 0, 0), P_CHARSET = MSHP(18, 1, 0);

void hl7_meta(const struct hl7_msg *m, struct hl7_meta *md)
{
    hl7_get(m, &P_CODE, &md->code);
    hl7_get(m, &P_TRIGGER, &md->trigger);
    hl7_get(m, &P_STRUCT, &md->structure);
    hl7_get(m, &P_CTRL, &md->control_id);
    hl7_get(m, &P_PROC, &md->processing_id);
    hl7_get(m, &P_VER, &md->version);
    hl7_get(m, &P_SAPP, &md->sending_app);
    hl7_get(m, &P_SFAC, &md->sending_fac);
    hl7_get(m, &P_RAPP, &md->receiving_app);
    hl7_get(m, &P_RFAC, &md->receiving_fac);
    hl7_get(m, &P_ACC, &md->accept_ack);
    hl7_get(m, &P_APP, &md->app_ack);
    hl7_get(m, &P_CHARSET, &md->charset);
    if (!hl7_nhs_number(m, &md->nhs_number)) {
        md->nhs_number.p = NULL;
        md->nhs_number.len = 0;
    }
}

static bool span_is(const struct hl7_seg *s, const struct hl7_elem *e, const char *lit)
{
    size_t n = strlen(lit);
    return e->b - e->a == n && memcmp(s->p + e->a, lit, n) == 0;
}

bool hl7_nhs_number(const struct hl7_msg *m, struct hl7_span *out)
{
    static const char pid[4] = "PID";
    const struct hl7_seg *s = hl7_find_seg(m, pid, 1, NULL);
    struct hl7_elem f;
    if (!s || !hl7_seg_field(m, s, 3, &f))
        return false;
    struct hl7_iter ri;
    struct hl7_elem r;
    hl7_iter_init(&ri, s->p, s->tape, &f, m->d.repetition);
    while (hl7_iter_next(&ri, &r)) {
        struct hl7_elem c4 = r, c5 = r, c1 = r;
        bool nhs = false;
        if (child(s, &c4, m->d.component, 4) && child(s, &c4, m->d.subcomponent, 1))
            nhs = span_is(s, &c4, "NHS");
        if (!nhs && child(s, &c5, m->d.component, 5))
            nhs = span_is(s, &c5, "NH");
        if (nhs && child(s, &c1, m->d.component, 1)) {
            out->p = s->p + c1.a;
            out->len = c1.b - c1.a;
            return true;
        }
    }
    return false;
}

enum hl7_nhs_check hl7_nhs_check(const char *s, size_t len)
{
    if (!s || len == 0)
        return HL7_NHS_EMPTY;
    if (len != 10)
        return HL7_NHS_LENGTH;
    int sum = 0;
    for (size_t i = 0; i < 10; i++) {
        if (s[i] < '0' || s[i] > '9')
            return HL7_NHS_NOT_DIGITS;
        if (i < 9)
            sum += (s[i] - '0') * (int)(10 - i);
    }
    int check = 11 - sum % 11;
    if (check == 11)
        check = 0;
    if (check == 10 || check != s[9] - '0')
        return HL7_NHS_CHECK_DIGIT;
    return HL7_NHS_VALID;
}

const char *hl7_nhs_check_str(enum hl7_nhs_check c)
{
    switch (c) {
    case HL7_NHS_VALID: return "valid";
    case HL7_NHS_EMPTY: return "no NHS number";
    case HL7_NHS_LENGTH: return "an NHS number has 10 digits";
    case HL7_NHS_NOT_DIGITS: return "an NHS number has only digits";
    case HL7_NHS_CHECK_DIGIT: return "the check digit is wrong (modulus 11)";
    }
    return "unknown";
}
