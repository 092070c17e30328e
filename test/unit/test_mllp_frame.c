/*
 * test_mllp_frame.c: the MLLP framer (include/mllp.h): frames whole, byte
 * by byte and in every chunking; several per piece; junk, restarts, <FS>
 * without <CR>, empty frames, the size limit exactly and beyond, resync
 * after an oversize frame, and the head kept of one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mllp.h"

#define MAX_EVENTS 16

struct got {
    enum mllp_event_kind kind;
    char                 data[256];
    size_t               len, total;
};

struct run {
    struct got ev[MAX_EVENTS];
    size_t     n;
};

/* Feed in[0..n) in pieces of chunk bytes, each piece in its own
 * allocation freed right after it was fed (so a framer that kept a
 * pointer into it would be caught by ASan), collecting the events. */
static void feed(struct mllp_framer *f, const char *in, size_t n, size_t chunk, struct run *r)
{
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        char *piece = malloc(k);
        assert_non_null(piece);
        memcpy(piece, in + off, k);
        size_t used = 0;
        while (used < k) {
            struct mllp_event ev;
            size_t u = mllp_framer_feed(f, piece + used, k - used, &ev);
            assert_true(u > 0 && u <= k - used);
            used += u;
            assert_int_not_equal(ev.kind, MLLP_EV_NOMEM);
            if (ev.kind == MLLP_EV_NONE) {
                assert_int_equal(used, k);
                continue;
            }
            assert_true(r->n < MAX_EVENTS);
            struct got *g = &r->ev[r->n++];
            g->kind = ev.kind;
            g->len = ev.len;
            g->total = ev.total;
            assert_true(ev.len < sizeof g->data);
            memcpy(g->data, ev.data, ev.len);
        }
        free(piece);
    }
}

static void expect(const struct got *g, enum mllp_event_kind kind, const char *data, size_t total)
{
    assert_int_equal(g->kind, kind);
    assert_int_equal(g->len, strlen(data));
    assert_memory_equal(g->data, data, g->len);
    assert_int_equal(g->total, total);
}

#define S(lit) lit, sizeof(lit) - 1

/* Every chunking from byte by byte to whole gives the same events and
 * counters as the whole input does. */
static void every_chunking(const char *in, size_t n, size_t max, size_t keep,
                           void (*check)(const struct run *, const struct mllp_framer *))
{
    for (size_t chunk = 1; chunk <= n; chunk++) {
        struct mllp_framer f;
        struct run r = { 0 };
        mllp_framer_init(&f, max, keep);
        feed(&f, in, n, chunk, &r);
        check(&r, &f);
        mllp_framer_free(&f);
    }
}

static void check_one(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 1);
    expect(&r->ev[0], MLLP_EV_FRAME, "MSH|^~\\&|A|B\rPID|1\r", 19);
    assert_int_equal(f->frames, 1);
    assert_int_equal(f->discarded_bytes, 0);
    assert_false(mllp_framer_in_frame(f));
}

static void test_split(void **state)
{
    (void)state;
    every_chunking(S("\x0bMSH|^~\\&|A|B\rPID|1\r\x1c\r"), 1024, 64, check_one);
}

static void check_three(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 3);
    expect(&r->ev[0], MLLP_EV_FRAME, "one", 3);
    expect(&r->ev[1], MLLP_EV_FRAME, "two", 3);
    expect(&r->ev[2], MLLP_EV_FRAME, "three", 5);
    assert_int_equal(f->frames, 3);
    assert_int_equal(f->discarded_bytes, 0);
}

static void test_several(void **state)
{
    (void)state;
    every_chunking(S("\x0bone\x1c\r\x0btwo\x1c\r\x0bthree\x1c\r"), 1024, 64, check_three);

    /* feed() stops after each frame, leaving the rest for the next call */
    struct mllp_framer f;
    struct mllp_event ev;
    const char in[] = "\x0b" "a\x1c\r\x0b" "b\x1c\r";
    mllp_framer_init(&f, 64, 64);
    size_t u = mllp_framer_feed(&f, in, sizeof in - 1, &ev);
    assert_int_equal(u, 4);
    assert_int_equal(ev.kind, MLLP_EV_FRAME);
    assert_ptr_equal(ev.data, in + 1);   /* whole in one piece: not copied */
    u = mllp_framer_feed(&f, in + 4, sizeof in - 1 - 4, &ev);
    assert_int_equal(u, 4);
    assert_int_equal(ev.kind, MLLP_EV_FRAME);
    assert_memory_equal(ev.data, "b", 1);
    mllp_framer_free(&f);
}

static void check_junk(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 2);
    expect(&r->ev[0], MLLP_EV_FRAME, "A", 1);
    expect(&r->ev[1], MLLP_EV_FRAME, "B", 1);
    /* "xx", "\r\nyy" and the trailing "\x1c\rz" */
    assert_int_equal(f->discarded_bytes, 2 + 4 + 3);
    assert_int_equal(f->abandoned, 0);
}

static void test_junk(void **state)
{
    (void)state;
    every_chunking(S("xx\x0b" "A\x1c\r\r\nyy\x0b" "B\x1c\r\x1c\rz"), 1024, 64, check_junk);
}

static void check_oversize(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 3);
    expect(&r->ev[0], MLLP_EV_OVERSIZE, "MSH", 10);
    expect(&r->ev[1], MLLP_EV_FRAME, "okay", 4);
    expect(&r->ev[2], MLLP_EV_OVERSIZE, "abc", 5);
    assert_int_equal(f->oversize, 2);
    assert_int_equal(f->frames, 3);
    assert_int_equal(f->discarded_bytes, 1);
    assert_true(f->buf.len <= 4);
}

static void test_oversize(void **state)
{
    (void)state;
    /* limit 4, keep 3: refused with its head and length, then back in step */
    every_chunking(S("\x0bMSH|ABCDEF\x1c\r" "-" "\x0bokay\x1c\r" "\x0b" "abcde\x1c\r"), 4, 3,
                   check_oversize);
}

static void check_limit(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 3);
    expect(&r->ev[0], MLLP_EV_FRAME, "12345", 5);
    expect(&r->ev[1], MLLP_EV_OVERSIZE, "12345", 6);
    expect(&r->ev[2], MLLP_EV_FRAME, "1234", 4);
    assert_int_equal(f->oversize, 1);
}

static void test_exact_limit(void **state)
{
    (void)state;
    every_chunking(S("\x0b" "12345\x1c\r\x0b" "123456\x1c\r\x0b" "1234\x1c\r"), 5, 64, check_limit);
}

static void check_restart(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 2);
    expect(&r->ev[0], MLLP_EV_FRAME, "CD", 2);
    expect(&r->ev[1], MLLP_EV_FRAME, "E", 1);
    assert_int_equal(f->abandoned, 2);
    /* <VT>AB, then <VT>XYZ<FS> (an oversize partial, cut short too) */
    assert_int_equal(f->discarded_bytes, 3 + 5);
    assert_int_equal(f->oversize, 0);
}

static void test_restart(void **state)
{
    (void)state;
    every_chunking(S("\x0b" "AB\x0b" "CD\x1c\r\x0bXYZ\x1c\x0b" "E\x1c\r"), 2, 64, check_restart);
}

static void check_fs(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 3);
    expect(&r->ev[0], MLLP_EV_FRAME, "A\x1c" "B", 3);
    expect(&r->ev[1], MLLP_EV_FRAME, "C\x1c", 2);
    expect(&r->ev[2], MLLP_EV_FRAME, "\x1c\x1c\n", 3);
    assert_int_equal(f->discarded_bytes, 0);
}

static void test_fs_without_cr(void **state)
{
    (void)state;
    every_chunking(S("\x0b" "A\x1c" "B\x1c\r\x0b" "C\x1c\x1c\r\x0b\x1c\x1c\n\x1c\r"), 64, 64, check_fs);
}

static void check_empty(const struct run *r, const struct mllp_framer *f)
{
    assert_int_equal(r->n, 2);
    expect(&r->ev[0], MLLP_EV_FRAME, "", 0);
    expect(&r->ev[1], MLLP_EV_FRAME, "", 0);
    assert_int_equal(f->frames, 2);
}

static void test_empty(void **state)
{
    (void)state;
    every_chunking(S("\x0b\x1c\r\x0b\x1c\r"), 64, 64, check_empty);
}

static void test_held(void **state)
{
    (void)state;
    struct mllp_framer f;
    struct run r = { 0 };
    mllp_framer_init(&f, 64, 64);
    assert_int_equal(mllp_framer_held(&f), 0);
    feed(&f, S("zz\x0b" "ABC"), 2, &r);
    assert_true(mllp_framer_in_frame(&f));
    assert_int_equal(mllp_framer_held(&f), 4);
    feed(&f, S("\x1c"), 1, &r);
    assert_int_equal(mllp_framer_held(&f), 5);
    assert_int_equal(f.discarded_bytes, 2);
    feed(&f, S("\r"), 1, &r);
    assert_int_equal(mllp_framer_held(&f), 0);
    assert_int_equal(r.n, 1);
    expect(&r.ev[0], MLLP_EV_FRAME, "ABC", 3);
    assert_int_equal(f.starts, 1);
    mllp_framer_free(&f);
}

/* A large frame: gathered across pieces within the limit, only the head
 * kept beyond it, and the buffer let go of afterwards. */
static void test_large(void **state)
{
    (void)state;
    const size_t max = 100000, big = 300000;
    char *in = malloc(big + 3);
    assert_non_null(in);
    in[0] = MLLP_VT;
    for (size_t i = 0; i < big; i++)
        in[1 + i] = (char)('a' + i % 26);
    in[big + 1] = MLLP_FS;
    in[big + 2] = MLLP_CR;

    struct mllp_framer f;
    mllp_framer_init(&f, max, MLLP_HEAD_KEEP);
    struct mllp_event ev = { 0 };
    size_t off = 0;
    while (off < big + 3) {
        size_t k = big + 3 - off < 4096 ? big + 3 - off : 4096;
        off += mllp_framer_feed(&f, in + off, k, &ev);
        assert_true(f.buf.len <= max);
        if (ev.kind != MLLP_EV_NONE)
            break;
    }
    assert_int_equal(off, big + 3);
    assert_int_equal(ev.kind, MLLP_EV_OVERSIZE);
    assert_int_equal(ev.total, big);
    assert_int_equal(ev.len, MLLP_HEAD_KEEP);
    assert_memory_equal(ev.data, in + 1, MLLP_HEAD_KEEP);

    /* exactly max, in pieces: whole */
    in[max + 1] = MLLP_FS;
    in[max + 2] = MLLP_CR;
    off = 0;
    while (off < max + 3) {
        size_t k = max + 3 - off < 1000 ? max + 3 - off : 1000;
        off += mllp_framer_feed(&f, in + off, k, &ev);
        if (ev.kind != MLLP_EV_NONE)
            break;
    }
    assert_int_equal(off, max + 3);
    assert_int_equal(ev.kind, MLLP_EV_FRAME);
    assert_int_equal(ev.len, max);
    assert_memory_equal(ev.data, in + 1, max);

    /* the next frame does not keep the large buffer */
    off = mllp_framer_feed(&f, S("\x0bxy"), &ev);
    assert_true(f.buf.cap <= 64 << 10);
    mllp_framer_free(&f);
    free(in);
}

static void test_init_clamps(void **state)
{
    (void)state;
    struct mllp_framer f;
    mllp_framer_init(&f, 10, 100);
    assert_int_equal(f.keep_bytes, 10);
    mllp_framer_init(&f, 0, 0);
    assert_int_equal(f.max_bytes, 1);
    assert_int_equal(f.keep_bytes, 1);
    mllp_framer_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_several),
        cmocka_unit_test(test_junk),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_exact_limit),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_fs_without_cr),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_held),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_init_clamps),
    };
    return cmocka_run_group_tests_name("mllp_frame", tests, NULL, NULL);
}
