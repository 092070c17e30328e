/*
 * fuzz_mllp_frame.c: libFuzzer target for the MLLP framer. The first two
 * bytes choose the size limit and the head kept of an oversize frame, the
 * third how the rest is cut into pieces; the rest is the stream. Checks:
 * every byte is accounted for (framing, content, discarded or held); no
 * frame over the limit is ever emitted; cutting the stream differently
 * changes nothing; and the frames emitted, framed again, parse back
 * identically with nothing discarded.
 */
#include "fuzz.h"

#include "mllp.h"

/* `make fuzz` links the codec sources only (FUZZ_LIB_SRC in the Makefile):
 * the framer comes in with this target. The replay build links the
 * library, whose copy is then not pulled in. */
#include "../../adapters/mllp_frame.c"

struct events {
    struct buf data;     /* every event's bytes, one after another */
    size_t    *len;      /* per event */
    size_t    *total;
    int       *kind;
    size_t     n, cap;
};

static void events_free(struct events *e)
{
    buf_free(&e->data);
    free(e->len);
    free(e->total);
    free(e->kind);
}

static void events_add(struct events *e, const struct mllp_event *ev)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        size_t *len = realloc(e->len, cap * sizeof *len);
        CHECK(len);
        e->len = len;
        size_t *total = realloc(e->total, cap * sizeof *total);
        CHECK(total);
        e->total = total;
        int *kind = realloc(e->kind, cap * sizeof *kind);
        CHECK(kind);
        e->kind = kind;
        e->cap = cap;
    }
    e->len[e->n] = ev->len;
    e->total[e->n] = ev->total;
    e->kind[e->n] = ev->kind;
    e->n++;
    CHECK(buf_append(&e->data, ev->data, ev->len) == 0);
}

/* Feed p[0..n) in pieces whose sizes come from seed (0: whole), each piece
 * a copy freed once fed, and check what is emitted as it goes. */
static void run(struct mllp_framer *f, const uint8_t *p, size_t n, unsigned seed,
                struct events *e)
{
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < n) {
        size_t k = n - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t want = 1 + (x >> 16) % 97;
            if (want < k)
                k = want;
        }
        char *piece = malloc(k);
        CHECK(piece);
        memcpy(piece, p + off, k);
        size_t used = 0;
        while (used < k) {
            struct mllp_event ev;
            size_t u = mllp_framer_feed(f, piece + used, k - used, &ev);
            CHECK(ev.kind != MLLP_EV_NOMEM);
            CHECK(u > 0 && u <= k - used);
            used += u;
            if (ev.kind == MLLP_EV_NONE) {
                CHECK(used == k);
                continue;
            }
            if (ev.kind == MLLP_EV_FRAME) {
                CHECK(ev.len <= f->max_bytes);
                CHECK(ev.total == ev.len);
            } else {
                CHECK(ev.kind == MLLP_EV_OVERSIZE);
                CHECK(ev.total > f->max_bytes);
                CHECK(ev.len == (ev.total < f->keep_bytes ? ev.total : f->keep_bytes));
            }
            CHECK(!mllp_framer_in_frame(f));
            events_add(e, &ev);
        }
        CHECK(f->buf.len <= f->max_bytes);
        free(piece);
        off += k;
    }
}

static bool events_eq(const struct events *a, const struct events *b)
{
    return a->n == b->n && a->data.len == b->data.len &&
           (a->data.len == 0 || memcmp(a->data.p, b->data.p, a->data.len) == 0) &&
           (a->n == 0 || (memcmp(a->len, b->len, a->n * sizeof *a->len) == 0 &&
                          memcmp(a->total, b->total, a->n * sizeof *a->total) == 0 &&
                          memcmp(a->kind, b->kind, a->n * sizeof *a->kind) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max = (data[0] & 0x80) ? 65536 : 1 + (size_t)(data[0] & 0x3f);
    size_t keep = 1 + (size_t)(data[1] % 64);
    unsigned seed = data[2];
    const uint8_t *in = data + 3;
    size_t n = size - 3;

    struct mllp_framer f, g;
    struct events whole = { 0 }, cut = { 0 }, again = { 0 };

    /* whole */
    mllp_framer_init(&f, max, keep);
    run(&f, in, n, 0, &whole);
    size_t framed = 0;
    for (size_t i = 0; i < whole.n; i++)
        framed += whole.total[i] + 3;
    CHECK(framed + f.discarded_bytes + mllp_framer_held(&f) == n);
    CHECK(f.frames == whole.n);

    /* cut into pieces: the same */
    mllp_framer_init(&g, max, keep);
    run(&g, in, n, seed ? seed : 1, &cut);
    CHECK(events_eq(&whole, &cut));
    CHECK(g.frames == f.frames && g.oversize == f.oversize && g.abandoned == f.abandoned &&
          g.discarded_bytes == f.discarded_bytes && g.starts == f.starts &&
          mllp_framer_held(&g) == mllp_framer_held(&f));
    mllp_framer_free(&g);

    /* the frames emitted, framed again: the same frames, nothing lost */
    struct buf re = { 0 };
    struct events frames = { 0 };
    size_t at = 0;
    for (size_t i = 0; i < whole.n; i++) {
        if (whole.kind[i] == MLLP_EV_FRAME) {
            struct mllp_event ev = { .kind = MLLP_EV_FRAME, .data = whole.data.p ? whole.data.p + at : "",
                                     .len = whole.len[i], .total = whole.len[i] };
            events_add(&frames, &ev);
            CHECK(buf_putc(&re, MLLP_VT) == 0 && buf_append(&re, ev.data, ev.len) == 0 &&
                  buf_putc(&re, MLLP_FS) == 0 && buf_putc(&re, MLLP_CR) == 0);
        }
        at += whole.len[i];
    }
    mllp_framer_init(&g, max, keep);
    run(&g, (const uint8_t *)re.p, re.len, seed, &again);
    CHECK(events_eq(&frames, &again));
    CHECK(g.discarded_bytes == 0 && g.abandoned == 0 && g.oversize == 0 &&
          !mllp_framer_in_frame(&g));

    mllp_framer_free(&g);
    mllp_framer_free(&f);
    buf_free(&re);
    events_free(&frames);
    events_free(&whole);
    events_free(&cut);
    events_free(&again);
    return 0;
}
