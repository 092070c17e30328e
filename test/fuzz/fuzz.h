/*
 * fuzz.h: what the libFuzzer targets share: the entry point every target
 * defines (also driven by replay.c without libFuzzer) and the invariant
 * check that aborts, so both libFuzzer and the corpus replay see a crash.
 */
#ifndef HL7BROKER_FUZZ_H
#define HL7BROKER_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hl7.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the codec contract (include/hl7.h) does not hold. */
#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__,   \
                    __LINE__, #cond);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* Is the non-empty span s inside base[0..len)? Empty spans may point
 * anywhere. */
static inline bool fuzz_span_in(const struct hl7_span *s, const void *base,
                                size_t len)
{
    if (s->len == 0)
        return true;
    const char *b = base;
    return s->p >= b && s->len <= len && (size_t)(s->p - b) <= len - s->len;
}

static inline bool fuzz_span_eq(const struct hl7_span *s, const char *p,
                                size_t len)
{
    return s->len == len && (len == 0 || memcmp(s->p, p, len) == 0);
}

/* No byte below 0x20 and no DEL: nothing a terminal or a parser would
 * take for structure. */
static inline bool fuzz_clean(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* The error report a failing call filled in is well formed. */
static inline void fuzz_check_error(const struct hl7_error *err, int rc,
                                    size_t input_len)
{
    CHECK(err->code == rc);
    CHECK(memchr(err->segment, '\0', sizeof err->segment) != NULL);
    CHECK(memchr(err->text, '\0', sizeof err->text) != NULL);
    CHECK(err->offset <= input_len);
    CHECK(hl7_strerror(rc) != NULL);
}

#endif
