/*
 * fuzz_unescape.c: libFuzzer target for the escape decoder and encoder.
 * The first byte picks a delimiter set (the default, v2.7 with a
 * truncation character, or one built from the next bytes); the rest is a
 * raw value. Decoding must not fail and must append; encoding any bytes
 * must leave no structure behind and decode back to exactly those bytes.
 */
#include "fuzz.h"

/* Characters a sender could plausibly declare as delimiters: punctuation
 * that no escape sequence (\F\ \X0D\ \.br\ \.sp 2\ ...) contains. */
static const char pool[] = "|^~\\&#*%$@!+=:;?/<>{}[]()'\"`_,-";

static bool is_delim(const struct hl7_delims *d, char c)
{
    return c == d->field || c == d->component || c == d->repetition ||
           c == d->subcomponent || (d->truncation && c == d->truncation);
}

/* Five or six distinct characters from the pool, chosen by seed. */
static void custom_delims(const uint8_t *seed, size_t n, bool trunc,
                          struct hl7_delims *d)
{
    char used[sizeof pool] = {0};
    char pick[6];
    size_t npool = sizeof pool - 1;
    for (int i = 0; i < 6; i++) {
        size_t k = (i < (int)n ? seed[i] : (uint8_t)(i * 7)) % npool;
        while (used[k])
            k = (k + 1) % npool;
        used[k] = 1;
        pick[i] = pool[k];
    }
    d->field = pick[0];
    d->component = pick[1];
    d->repetition = pick[2];
    d->escape = pick[3];
    d->subcomponent = pick[4];
    d->truncation = trunc ? pick[5] : '\0';
}

static void check_unescape(const struct hl7_delims *d, const char *raw,
                           size_t len)
{
    struct buf b = {0};
    if (buf_append(&b, "PFX", 3) != 0)
        return;
    int rc = hl7_unescape(d, raw, len, &b);
    if (rc == 0) {
        CHECK(b.len >= 3 && memcmp(b.p, "PFX", 3) == 0);
        /* Without an escape character there is nothing to decode. */
        if (memchr(raw, d->escape, len) == NULL)
            CHECK(b.len - 3 == len && memcmp(b.p + 3, raw, len) == 0);
    } else {
        CHECK(rc == -1);
    }
    buf_free(&b);
}

static void check_round_trip(const struct hl7_delims *d, const char *val,
                             size_t len)
{
    struct buf enc = {0}, dec = {0};
    if (buf_append(&enc, "PFX", 3) != 0)
        goto out;
    int rc = hl7_escape(d, val, len, &enc);
    if (rc != 0) {
        CHECK(rc == -1);
        goto out;
    }
    CHECK(enc.len >= 3 && memcmp(enc.p, "PFX", 3) == 0);
    const char *e = enc.p + 3;
    size_t elen = enc.len - 3;
    size_t nesc = 0;
    for (size_t i = 0; i < elen; i++) {
        CHECK(e[i] != '\r' && e[i] != '\n');
        CHECK(!is_delim(d, e[i]));
        nesc += e[i] == d->escape;
    }
    CHECK(nesc % 2 == 0);           /* every sequence is closed */
    /* Printable bytes that are no delimiter pass through unchanged (the
     * encoder may also escape other control bytes than CR and LF). */
    if (memchr(val, d->escape, len) == NULL && fuzz_clean(val, len)) {
        bool plain = true;
        for (size_t i = 0; i < len && plain; i++)
            plain = !is_delim(d, val[i]);
        if (plain)
            CHECK(elen == len && memcmp(e, val, len) == 0);
    }

    rc = hl7_unescape(d, e, elen, &dec);
    if (rc != 0) {
        CHECK(rc == -1);
        goto out;
    }
    if (dec.len != len || (len && memcmp(dec.p, val, len) != 0)) {
        fprintf(stderr, "escape/unescape round trip differs: delims "
                "%c%c%c%c%c%c, %zu bytes in, %zu encoded, %zu back\n",
                d->field, d->component, d->repetition, d->escape,
                d->subcomponent, d->truncation ? d->truncation : ' ', len,
                elen, dec.len);
        CHECK(!"round trip");
    }
out:
    buf_free(&enc);
    buf_free(&dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        check_unescape(&hl7_default_delims, "", 0);
        check_round_trip(&hl7_default_delims, "", 0);
        return 0;
    }
    uint8_t mode = data[0];
    const char *raw = (const char *)data + 1;
    size_t len = size - 1;

    struct hl7_delims sets[4];
    size_t nsets = 0;
    sets[nsets++] = hl7_default_delims;
    struct hl7_delims v27 = hl7_default_delims;
    v27.truncation = '#';
    sets[nsets++] = v27;
    if (mode & 1) {
        /* The next six bytes choose a custom set; they stay in the value. */
        custom_delims(data + 1, size - 1, mode & 2, &sets[nsets++]);
    }
    if (mode & 4) {
        struct hl7_delims star = { '*', '%', '$', '@', '!', '\0' };
        sets[nsets++] = star;
    }

    for (size_t i = 0; i < nsets; i++) {
        check_unescape(&sets[i], raw, len);
        check_round_trip(&sets[i], raw, len);
    }
    return 0;
}
