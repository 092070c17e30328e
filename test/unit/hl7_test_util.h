/*
 * hl7_test_util.h: helpers shared by the codec's cmocka tests: samples
 * loaded into buffers of exactly their size (so AddressSanitizer sees any
 * read past the end), and assertions on spans and path reads that name the
 * caller's line and show the bytes that differ.
 */
#ifndef HL7BROKER_HL7_TEST_UTIL_H
#define HL7BROKER_HL7_TEST_UTIL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "hl7.h"

/* Tests run from the repository root. */
#define SAMPLES "../shared/samples"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A parsed message with the buffer it points into. */
struct sample {
    char           *buf;
    size_t          len;
    struct hl7_msg *msg;
};

/* Printable form of bytes for failure messages: control bytes as <CR>,
 * <LF> or <xx>. Returns a static buffer (one of two, so two can appear in
 * one message). */
static inline const char *show(const char *p, size_t n)
{
    static char out[2][4096];
    static int which;
    char *o = out[which ^= 1];
    size_t k = 0;

    if (!p)
        return "(null)";
    for (size_t i = 0; i < n && k < sizeof out[0] - 8; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            k += (size_t)snprintf(o + k, sizeof out[0] - k, "<CR>");
        else if (c == '\n')
            k += (size_t)snprintf(o + k, sizeof out[0] - k, "<LF>");
        else if (c < 0x20 || c >= 0x7f)
            k += (size_t)snprintf(o + k, sizeof out[0] - k, "<%02x>", c);
        else
            o[k++] = (char)c;
    }
    o[k] = '\0';
    return o;
}

/* A copy of n bytes in an allocation of exactly n bytes (1 when n is 0),
 * with no NUL after it. */
static inline char *dup_exact(const void *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n)
        memcpy(p, s, n);
    return p;
}

/* Read SAMPLES/name into an exact-size buffer. */
static inline char *load_sample(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", SAMPLES, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_error("cannot open %s (tests run from the repo root)\n", path);
        fail();
    }
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    fclose(f);
    char *p = dup_exact(b.p, b.len);
    *len = b.len;
    buf_free(&b);
    return p;
}

static inline void sample_close(struct sample *s)
{
    hl7_free(s->msg);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* Parse bytes that must parse; the sample owns a copy of them. */
static inline void bytes_open_at(struct sample *s, const char *p, size_t n,
                                 const char *file, int line)
{
    struct hl7_error err = {0};
    s->buf = dup_exact(p, n);
    s->len = n;
    s->msg = NULL;
    int rc = hl7_parse(s->buf, s->len, NULL, &s->msg, &err);
    if (rc != 0 || !s->msg) {
        print_error("parse of \"%s\" failed: %d (%s) at %s-%u offset %zu: %s\n",
                    show(p, n), rc, hl7_strerror(rc), err.segment, err.field,
                    err.offset, err.text);
        _fail(file, line);
    }
}
#define bytes_open(s, p, n) bytes_open_at((s), (p), (n), __FILE__, __LINE__)
#define text_open(s, t) bytes_open_at((s), (t), strlen(t), __FILE__, __LINE__)

static inline void sample_open_at(struct sample *s, const char *name,
                                  const char *file, int line)
{
    size_t n;
    char *p = load_sample(name, &n);
    bytes_open_at(s, p, n, file, line);
    free(p);
}
#define sample_open(s, name) sample_open_at((s), (name), __FILE__, __LINE__)

static inline void check_bytes(const char *got, size_t got_len,
                               const char *want, size_t want_len,
                               const char *what, const char *file, int line)
{
    if (got_len == want_len && (want_len == 0 || memcmp(got, want, want_len) == 0))
        return;
    size_t i = 0;
    while (i < got_len && i < want_len && got[i] == want[i])
        i++;
    print_error("%s differs at byte %zu\n  got  (%zu): \"%s\"\n  want (%zu): \"%s\"\n",
                what, i, got_len, show(got, got_len), want_len, show(want, want_len));
    _fail(file, line);
}

#define assert_span_n(sp, want, n) do { \
        struct hl7_span s_ = (sp); \
        check_bytes(s_.p, s_.len, (want), (n), "span", __FILE__, __LINE__); \
    } while (0)
#define assert_span(sp, want) assert_span_n((sp), (want), strlen(want))
#define assert_buf_n(b, want, n) \
    check_bytes((b)->p, (b)->len, (want), (n), "buffer", __FILE__, __LINE__)
#define assert_buf(b, want) assert_buf_n((b), (want), strlen(want))

static inline const char *presence_name(int p)
{
    switch (p) {
    case HL7_ABSENT: return "ABSENT";
    case HL7_EMPTY:  return "EMPTY";
    case HL7_NULL:   return "NULL";
    case HL7_VALUE:  return "VALUE";
    }
    return "?";
}

static inline struct hl7_path path_at(const char *text, const char *file, int line)
{
    struct hl7_path path;
    struct hl7_error err = {0};
    memset(&path, 0, sizeof path);
    int rc = hl7_path_parse(text, strlen(text), &path, &err);
    if (rc != 0) {
        print_error("path \"%s\" does not compile: %d at column %zu\n",
                    text, rc, err.offset);
        _fail(file, line);
    }
    return path;
}
#define P(text) path_at((text), __FILE__, __LINE__)

/* Read path and compare presence and raw bytes (want NULL: bytes not
 * checked). */
static inline void check_get(const struct hl7_msg *msg, const char *path,
                             enum hl7_presence pres, const char *want,
                             const char *file, int line)
{
    struct hl7_path pa = path_at(path, file, line);
    struct hl7_span sp = {0};
    enum hl7_presence got = hl7_get(msg, &pa, &sp);
    if (got != pres) {
        print_error("%s: presence %s, want %s (span \"%s\")\n", path,
                    presence_name(got), presence_name(pres), show(sp.p, sp.len));
        _fail(file, line);
    }
    if (want) {
        char what[128];
        snprintf(what, sizeof what, "%s", path);
        check_bytes(sp.p, sp.len, want, strlen(want), what, file, line);
    }
}
#define assert_get(msg, path, pres, want) \
    check_get((msg), (path), (pres), (want), __FILE__, __LINE__)
#define assert_value(msg, path, want) assert_get((msg), (path), HL7_VALUE, (want))
#define assert_absent(msg, path) assert_get((msg), (path), HL7_ABSENT, "")

/* Read path decoded and compare with want (n bytes). */
static inline void check_decoded(const struct hl7_msg *msg, const char *path,
                                 const char *want, size_t want_len,
                                 const char *file, int line)
{
    struct hl7_path pa = path_at(path, file, line);
    struct buf b = {0};
    enum hl7_presence got = hl7_get_decoded(msg, &pa, &b);
    bool ok = got == HL7_VALUE && b.len == want_len &&
              (want_len == 0 || memcmp(b.p, want, want_len) == 0);
    if (!ok) {
        print_error("%s decoded: presence %s (want VALUE)\n  got  (%zu): \"%s\"\n"
                    "  want (%zu): \"%s\"\n", path, presence_name(got), b.len,
                    show(b.p, b.len), want_len, show(want, want_len));
        buf_free(&b);
        _fail(file, line);
    }
    buf_free(&b);
}
#define assert_decoded_n(msg, path, want, n) \
    check_decoded((msg), (path), (want), (n), __FILE__, __LINE__)
#define assert_decoded(msg, path, want) \
    assert_decoded_n((msg), (path), (want), strlen(want))

/* Serialise msg with flags and compare with want exactly. */
static inline void check_serialised(const struct hl7_msg *msg, unsigned flags,
                                    const char *want, size_t want_len,
                                    const char *file, int line)
{
    struct buf b = {0};
    int rc = hl7_serialise(msg, flags, &b);
    bool ok = rc == 0 && b.len == want_len &&
              (want_len == 0 || memcmp(b.p, want, want_len) == 0);
    if (!ok) {
        size_t i = 0;
        while (i < b.len && i < want_len && b.p[i] == want[i])
            i++;
        print_error("hl7_serialise returned %d; output differs at byte %zu\n"
                    "  got  (%zu): \"%s\"\n  want (%zu): \"%s\"\n", rc, i,
                    b.len, show(b.p, b.len), want_len, show(want, want_len));
        buf_free(&b);
        _fail(file, line);
    }
    buf_free(&b);
}
#define assert_serialised_n(msg, flags, want, n) \
    check_serialised((msg), (flags), (want), (n), __FILE__, __LINE__)
#define assert_serialised(msg, want) \
    assert_serialised_n((msg), 0, (want), strlen(want))

/* A small deterministic generator (xorshift64*) for reproducible random
 * cases. */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

#endif
