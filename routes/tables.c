/*
 * tables.c: the lookup tables routes use (map transforms, in_table()),
 * read from CSV files (RFC 4180) when the config is compiled, then held
 * as sorted arrays searched by binary search.
 */
#include "route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config.h"
#include "objections.h"
#include "route_tables_priv.h"

/* Larger files are refused: a lookup table is a few thousand rows, and a
 * file this size is almost certainly the wrong file. */
#define TABLE_MAX_BYTES ((size_t)64 << 20)

struct entry {
    const char *key;
    size_t      key_len;
    const char *value;
    unsigned    line;
};

struct table {
    char         *name;
    char         *data;      /* every key and value, each NUL-terminated */
    struct entry *e;         /* sorted by key */
    size_t        n;
};

struct route_tables {
    struct table      *t;
    size_t             n;
    struct objections *objections;   /* a reference; NULL: none */
};

/* ------------------------------------------------------------- errors */

static void table_error(struct route_error *err, const char *file, unsigned line,
                        const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void table_error(struct route_error *err, const char *file, unsigned line,
                        const char *name, const char *fmt, ...)
{
    if (!err)
        return;
    memset(err, 0, sizeof *err);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(err->msg, sizeof err->msg, "%s:%u: table %s: %s", file, line, name, err->text);
    else
        snprintf(err->msg, sizeof err->msg, "%s: table %s: %s", file, name, err->text);
}

/* ---------------------------------------------------------------- CSV */

/* One record being read: its fields, as offsets into the output arena
 * (which may move while it grows). */
struct field {
    size_t off, len;
};

struct csv {
    const char *p;
    size_t      len, i;
    unsigned    line;         /* of p[i] */
    unsigned    rec_line;     /* where the record csv_next read starts */
    struct buf  out;          /* decoded fields, each NUL-terminated */
    struct field *f;
    size_t      nf, capf;
};

static int add_field(struct csv *c, size_t off)
{
    if (c->nf == c->capf) {
        size_t cap = c->capf ? c->capf * 2 : 4;
        struct field *f = realloc(c->f, cap * sizeof *f);
        if (!f)
            return -1;
        c->f = f;
        c->capf = cap;
    }
    c->f[c->nf].off = off;
    c->f[c->nf].len = c->out.len - off;
    c->nf++;
    return buf_putc(&c->out, '\0');
}

/* Is p[i] the end of a line (LF, CRLF or a lone CR)? Consumes it. */
static bool eat_eol(struct csv *c)
{
    if (c->i >= c->len)
        return false;
    if (c->p[c->i] == '\n') {
        c->i++;
        c->line++;
        return true;
    }
    if (c->p[c->i] == '\r') {
        c->i++;
        if (c->i < c->len && c->p[c->i] == '\n')
            c->i++;
        c->line++;
        return true;
    }
    return false;
}

enum { CSV_RECORD = 1, CSV_END = 0, CSV_NOMEM = -1, CSV_BAD = -2 };

/* Read the next record into c->f[0..nf). Lines with nothing on them are
 * skipped. Returns CSV_RECORD, CSV_END, or CSV_BAD with why (and *bad_line)
 * set. */
static int csv_next(struct csv *c, const char **why, unsigned *bad_line)
{
    c->nf = 0;
    while (eat_eol(c))
        ;
    if (c->i >= c->len)
        return CSV_END;
    c->rec_line = c->line;
    for (;;) {
        size_t off = c->out.len;
        if (c->i < c->len && c->p[c->i] == '"') {
            unsigned opened = c->line;
            c->i++;
            for (;;) {
                if (c->i >= c->len) {
                    *why = "a quoted field opened on this line is never closed";
                    *bad_line = opened;
                    return CSV_BAD;
                }
                const char *q = memchr(c->p + c->i, '"', c->len - c->i);
                size_t upto = q ? (size_t)(q - c->p) : c->len;
                for (size_t k = c->i; k < upto; k++)
                    if (c->p[k] == '\n' || (c->p[k] == '\r' && (k + 1 == upto || c->p[k + 1] != '\n')))
                        c->line++;
                if (buf_append(&c->out, c->p + c->i, upto - c->i))
                    return CSV_NOMEM;
                c->i = upto;
                if (!q)
                    continue;             /* reports the open quote above */
                c->i++;
                if (c->i < c->len && c->p[c->i] == '"') {   /* "" is one quote */
                    if (buf_putc(&c->out, '"'))
                        return CSV_NOMEM;
                    c->i++;
                    continue;
                }
                break;
            }
            if (c->i < c->len && c->p[c->i] != ',' && c->p[c->i] != '\n' && c->p[c->i] != '\r') {
                *why = "after a closing quote comes ',' or the end of the line "
                       "(a quote inside a quoted field is written twice: \"\")";
                *bad_line = c->line;
                return CSV_BAD;
            }
        } else {
            size_t s = c->i;
            while (c->i < c->len && c->p[c->i] != ',' && c->p[c->i] != '\n' && c->p[c->i] != '\r') {
                if (c->p[c->i] == '"') {
                    *why = "a quote inside a field that does not start with one: "
                           "quote the whole field and write the quote twice (\"5\"\" disk\")";
                    *bad_line = c->line;
                    return CSV_BAD;
                }
                c->i++;
            }
            if (buf_append(&c->out, c->p + s, c->i - s))
                return CSV_NOMEM;
        }
        if (add_field(c, off))
            return CSV_NOMEM;
        if (c->i < c->len && c->p[c->i] == ',') {
            c->i++;
            continue;
        }
        eat_eol(c);
        return CSV_RECORD;
    }
}

/* ---------------------------------------------------------- the table */

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Write at most max bytes of s, printable, for an error message. */
static void show(char *dst, size_t cap, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 48) {
            o += (size_t)snprintf(dst + o, cap - o, "...");
            break;
        }
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", ch);
        else
            dst[o++] = (char)ch;
    }
    dst[o] = '\0';
}

static int read_file(const char *path, char **data, size_t *len, char *why, size_t whylen)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size > TABLE_MAX_BYTES) {
        snprintf(why, whylen, "%s is %lld bytes, more than the %zu MiB a table may hold",
                 path, (long long)st.st_size, TABLE_MAX_BYTES >> 20);
        fclose(f);
        return -1;
    }
    struct buf b = {0};
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > TABLE_MAX_BYTES) {
            snprintf(why, whylen, "%s is more than the %zu MiB a table may hold",
                     path, TABLE_MAX_BYTES >> 20);
            rc = -1;
            break;
        }
        if (buf_append(&b, chunk, n)) {
            snprintf(why, whylen, "out of memory reading %s", path);
            rc = -1;
            break;
        }
    }
    if (!rc && ferror(f)) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc) {
        buf_free(&b);
        return -1;
    }
    *data = buf_take(&b, len);
    if (!*data) {
        snprintf(why, whylen, "out of memory reading %s", path);
        return -1;
    }
    return 0;
}

static bool is_word(const char *s, size_t len, const char *w)
{
    return len == strlen(w) && strncasecmp(s, w, len) == 0;
}

/* Parse the CSV text p[0..len) into t. file and name are for errors. */
static int table_parse(struct table *t, const char *p, size_t len, bool header,
                       const char *file, const char *name, struct route_error *err)
{
    struct csv c = { .p = p, .len = len, .line = 1 };
    struct { size_t key, key_len, value; unsigned line; } *raw = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    bool first = true;

    if (memchr(p, '\0', len)) {
        size_t at = (size_t)((const char *)memchr(p, '\0', len) - p);
        unsigned line = 1;
        for (size_t k = 0; k < at; k++)
            line += p[k] == '\n';
        table_error(err, file, line, name, "a NUL byte: this is not a text file");
        return -1;
    }
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)   /* a UTF-8 BOM */
        c.i = 3;

    for (;;) {
        const char *why = NULL;
        unsigned bad_line = 0;
        unsigned line;
        size_t mark = c.out.len;
        int r = csv_next(&c, &why, &bad_line);
        if (r == CSV_END)
            break;
        if (r == CSV_NOMEM) {
            table_error(err, file, 0, name, "out of memory");
            goto out;
        }
        if (r == CSV_BAD) {
            table_error(err, file, bad_line, name, "%s", why);
            goto out;
        }
        line = c.rec_line;
        if (c.nf != 2) {
            const char *hint = "";
            if (c.nf == 1 && (memchr(c.out.p + c.f[0].off, ';', c.f[0].len) ||
                              memchr(c.out.p + c.f[0].off, '\t', c.f[0].len)))
                hint = " (the separator is a comma)";
            else if (c.nf > 2)
                hint = " (quote a value that holds a comma: \"a, b\")";
            table_error(err, file, line, name, "%zu field%s, expected 2 (key,value)%s",
                        c.nf, c.nf == 1 ? "" : "s", hint);
            goto out;
        }
        const char *k = c.out.p + c.f[0].off;
        if (first) {
            first = false;
            if (header || (is_word(k, c.f[0].len, "key") &&
                           is_word(c.out.p + c.f[1].off, c.f[1].len, "value"))) {
                c.out.len = mark;
                continue;
            }
        }
        if (c.f[0].len == 0) {
            table_error(err, file, line, name, "the key (the first field) is empty");
            goto out;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *nr = realloc(raw, ncap * sizeof *raw);
            if (!nr) {
                table_error(err, file, 0, name, "out of memory");
                goto out;
            }
            raw = nr;
            cap = ncap;
        }
        raw[n].key = c.f[0].off;
        raw[n].key_len = c.f[0].len;
        raw[n].value = c.f[1].off;
        raw[n].line = line;
        n++;
    }
    if (n == 0) {
        table_error(err, file, 0, name, "no entries: a table is lines of key,value");
        goto out;
    }

    /* The arena no longer moves: turn offsets into pointers. */
    t->data = buf_take(&c.out, NULL);
    t->e = malloc(n * sizeof *t->e);
    if (!t->data || !t->e) {
        table_error(err, file, 0, name, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++) {
        t->e[k].key = t->data + raw[k].key;
        t->e[k].key_len = raw[k].key_len;
        t->e[k].value = t->data + raw[k].value;
        t->e[k].line = raw[k].line;
    }
    t->n = n;
    qsort(t->e, n, sizeof *t->e, entry_cmp);
    /* Of the keys given twice, report the repeat a reader meets first. */
    const struct entry *dup = NULL;
    for (size_t k = 1; k < n; k++) {
        const struct entry *a = &t->e[k - 1], *b = &t->e[k];
        if (a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0 &&
            (!dup || b->line < dup[1].line))
            dup = a;
    }
    if (dup) {
        char key[256];
        show(key, sizeof key, dup->key, dup->key_len);
        table_error(err, file, dup[1].line, name, "duplicate key '%s' (also on line %u)",
                    key, dup->line);
        goto out;
    }
    rc = 0;
out:
    buf_free(&c.out);
    free(c.f);
    free(raw);
    return rc;
}

/* ------------------------------------------------------------- the API */

static void table_clear(struct table *t)
{
    free(t->name);
    free(t->data);
    free(t->e);
}

void route_tables_free(struct route_tables *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        table_clear(&t->t[i]);
    free(t->t);
    objections_unref(t->objections);
    free(t);
}

int route_tables_load(const struct config *cfg, struct route_tables **out,
                      struct route_error *err)
{
    *out = NULL;
    struct route_tables *ts = calloc(1, sizeof *ts);
    size_t n = cfg ? cfg->n_tables : 0;
    if (!ts || (n && !(ts->t = calloc(n, sizeof *ts->t)))) {
        free(ts);
        table_error(err, cfg && cfg->path ? cfg->path : "config", 0, "(all)", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct config_table *ct = &cfg->tables[i];
        const char *name = ct->name ? ct->name : "";
        struct table *t = &ts->t[ts->n];
        char why[sizeof err->text];
        char *data;
        size_t len;
        if (read_file(ct->file ? ct->file : "", &data, &len, why, sizeof why)) {
            table_error(err, cfg->path ? cfg->path : "config", ct->line, name, "%s", why);
            goto fail;
        }
        int rc = table_parse(t, data, len, ct->header, ct->file, name, err);
        free(data);
        if (!rc && !(t->name = strdup(name))) {
            table_error(err, ct->file, 0, name, "out of memory");
            rc = -1;
        }
        if (rc) {
            table_clear(t);
            goto fail;
        }
        ts->n++;
    }
    *out = ts;
    return 0;
fail:
    route_tables_free(ts);
    return -1;
}

static const struct table *find(const struct route_tables *ts, const char *name)
{
    if (!ts || !name)
        return NULL;
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].name, name) == 0)
            return &ts->t[i];
    return NULL;
}

bool route_table_exists(const struct route_tables *t, const char *name)
{
    return find(t, name) != NULL;
}

const char *route_table_get(const struct route_tables *ts, const char *name,
                            const char *key, size_t key_len)
{
    const struct table *t = find(ts, name);
    if (!t || (!key && key_len))
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct entry *e = &t->e[mid];
        size_t m = e->key_len < key_len ? e->key_len : key_len;
        int c = m ? memcmp(e->key, key, m) : 0;
        if (c == 0)
            c = e->key_len < key_len ? -1 : e->key_len > key_len;
        if (c == 0)
            return e->value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t route_tables_count(const struct route_tables *t)
{
    return t ? t->n : 0;
}

const char *route_tables_name(const struct route_tables *t, size_t i)
{
    return t && i < t->n ? t->t[i].name : NULL;
}

void route_tables_set_objections(struct route_tables *t, struct objections *o)
{
    if (!t)
        return;
    objections_unref(t->objections);
    t->objections = o ? objections_ref(o) : NULL;
}

struct objections *route_tables_objections(const struct route_tables *t)
{
    return t ? t->objections : NULL;
}
