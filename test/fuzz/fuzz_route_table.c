/*
 * fuzz_route_table.c: libFuzzer target for lookup tables (CSV). The first
 * byte says whether the table has a header row; the rest is the file.
 * Checks: an error names a line within the file; a table that loads finds
 * every key of its entries, in order, with the value it holds, and finds
 * no key it does not hold.
 */
#include "fuzz.h"

#include "route.h"

/* The tables come in with this target: see fuzz_route_expr.c. */
#include "../../routes/tables.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool header = data[0] & 1;
    const char *p = (const char *)data + 1;
    size_t len = size - 1;
    /* An exact-size copy: a sanitizer build sees any read past the end. */
    char *copy = malloc(len ? len : 1);
    CHECK(copy);
    memcpy(copy, p, len);

    unsigned lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += copy[i] == '\n' || (copy[i] == '\r' && (i + 1 == len || copy[i + 1] != '\n'));

    struct table t = {0};
    struct route_error err;
    memset(&err, 0x55, sizeof err);
    int rc = table_parse(&t, copy, len, header, "f.csv", "t", &err);
    if (rc) {
        CHECK(rc == -1);
        CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        CHECK(strncmp(err.msg, "f.csv", 5) == 0);
        unsigned line = 0;
        if (sscanf(err.msg, "f.csv:%u:", &line) == 1)
            CHECK(line >= 1 && line <= lines);
        table_clear(&t);
        free(copy);
        return 0;
    }
    CHECK(t.n > 0);
    t.name = strdup("t");
    CHECK(t.name);
    struct route_tables ts = { .t = &t, .n = 1 };
    for (size_t i = 0; i < t.n; i++) {
        CHECK(t.e[i].key_len > 0);
        CHECK(t.e[i].line >= 1 && t.e[i].line <= lines);
        if (i)
            CHECK(entry_cmp(&t.e[i - 1], &t.e[i]) < 0);
        CHECK(route_table_get(&ts, "t", t.e[i].key, t.e[i].key_len) == t.e[i].value);
        /* a key one byte shorter is another key, or none */
        const char *v = route_table_get(&ts, "t", t.e[i].key, t.e[i].key_len - 1);
        CHECK(!v || i > 0);
    }
    CHECK(route_table_get(&ts, "t", "", 0) == NULL);
    CHECK(route_table_get(&ts, "u", t.e[0].key, t.e[0].key_len) == NULL);
    table_clear(&t);
    free(copy);
    return 0;
}
