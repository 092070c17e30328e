/*
 * objections.c: the objections register (see include/objections.h): the
 * file's entries and the run-time changes, each a sorted array searched
 * by bisection, behind one mutex.
 */
#include "objections.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hl7.h"

struct entry {
    char purpose[OBJECTIONS_PURPOSE_MAX + 1];
    char nhs[11];
    bool objected;          /* run-time changes: added (true) or removed */
};

struct objections_set {
    struct entry *v;
    size_t        n, cap;
};

struct objections {
    pthread_mutex_t        lock;
    unsigned               refs;
    struct objections_set *file;
    struct objections_set  changes;
};

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->purpose, y->purpose);
    return c ? c : strcmp(x->nhs, y->nhs);
}

static struct entry *set_find(const struct objections_set *s, const char *nhs,
                              const char *purpose)
{
    if (!s || !s->n)
        return NULL;
    struct entry k;
    snprintf(k.purpose, sizeof k.purpose, "%s", purpose);
    memcpy(k.nhs, nhs, sizeof k.nhs);
    return bsearch(&k, s->v, s->n, sizeof *s->v, entry_cmp);
}

static int set_push(struct objections_set *s, const char *nhs, const char *purpose)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct entry *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    struct entry *e = &s->v[s->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->purpose, sizeof e->purpose, "%s", purpose);
    memcpy(e->nhs, nhs, sizeof e->nhs);
    e->objected = true;
    return 0;
}

/* Sort and drop duplicates. */
static void set_finish(struct objections_set *s)
{
    if (!s->n)
        return;
    qsort(s->v, s->n, sizeof *s->v, entry_cmp);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++)
        if (entry_cmp(&s->v[w - 1], &s->v[i]) != 0)
            s->v[w++] = s->v[i];
    s->n = w;
}

bool objections_purpose_valid(const char *p)
{
    size_t n = 0;
    if (!p)
        return false;
    for (; p[n]; n++) {
        char c = p[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return n >= 1 && n <= OBJECTIONS_PURPOSE_MAX;
}

int objections_nhs_normalise(const char *s, size_t len, char out[11], const char **why)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            continue;
        if (n == 10) {
            *why = hl7_nhs_check_str(HL7_NHS_LENGTH);
            return -1;
        }
        out[n++] = s[i];
    }
    out[n] = '\0';
    enum hl7_nhs_check c = hl7_nhs_check(out, n);
    if (c != HL7_NHS_VALID) {
        *why = hl7_nhs_check_str(c);
        return -1;
    }
    return 0;
}

static int set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void objections_set_free(struct objections_set *s)
{
    if (!s)
        return;
    free(s->v);
    free(s);
}

size_t objections_set_count(const struct objections_set *s)
{
    return s ? s->n : 0;
}

int objections_set_parse(const char *text, size_t len, const char *path,
                         struct objections_set **out, char *err, size_t errlen)
{
    *out = NULL;
    struct objections_set *s = calloc(1, sizeof *s);
    if (!s)
        return set_err(err, errlen, "%s: out of memory", path);
    unsigned line = 0;
    bool seen = false;
    size_t i = 0;
    while (i < len) {
        size_t b = i;
        while (i < len && text[i] != '\n')
            i++;
        size_t e = i;
        if (i < len)
            i++;
        line++;
        if (e > b && text[e - 1] == '\r')
            e--;
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t'))
            e--;
        while (b < e && (text[b] == ' ' || text[b] == '\t'))
            b++;
        if (b == e || text[b] == '#')
            continue;
        const char *l = text + b;
        size_t n = e - b;
        if (memchr(l, '\0', n)) {
            objections_set_free(s);
            return set_err(err, errlen, "%s:%u: a NUL byte: not a text file", path, line);
        }
        if (!seen && n == 18 && memcmp(l, "nhs_number,purpose", 18) == 0) {
            seen = true;
            continue;
        }
        seen = true;
        const char *comma = memchr(l, ',', n);
        if (!comma || memchr(comma + 1, ',', n - (size_t)(comma + 1 - l))) {
            objections_set_free(s);
            return set_err(err, errlen, "%s:%u: expected \"nhs_number,purpose\" (two columns)",
                           path, line);
        }
        char nhs[11];
        const char *why;
        if (objections_nhs_normalise(l, (size_t)(comma - l), nhs, &why)) {
            objections_set_free(s);
            return set_err(err, errlen, "%s:%u: not a valid NHS number: %s", path, line, why);
        }
        const char *p = comma + 1;
        size_t pn = (size_t)(l + n - p);
        while (pn && *p == ' ') {
            p++;
            pn--;
        }
        char purpose[OBJECTIONS_PURPOSE_MAX + 2];
        snprintf(purpose, sizeof purpose, "%.*s", (int)(pn > OBJECTIONS_PURPOSE_MAX + 1
                                                       ? OBJECTIONS_PURPOSE_MAX + 1 : pn), p);
        if (!objections_purpose_valid(purpose)) {
            objections_set_free(s);
            return set_err(err, errlen, "%s:%u: bad purpose: 1 to %d characters of a-z, 0-9, "
                           "'_' and '-' (direct_care, research, ...)", path, line,
                           OBJECTIONS_PURPOSE_MAX);
        }
        if (set_push(s, nhs, purpose)) {
            objections_set_free(s);
            return set_err(err, errlen, "%s:%u: out of memory", path, line);
        }
    }
    set_finish(s);
    *out = s;
    return 0;
}

int objections_set_read(const char *path, struct objections_set **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return set_err(err, errlen, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > OBJECTIONS_FILE_MAX) {
        fclose(f);
        return set_err(err, errlen, "%s: larger than %zu bytes: refused", path,
                       OBJECTIONS_FILE_MAX);
    }
    size_t n = (size_t)st.st_size;
    char *text = malloc(n ? n : 1);
    if (!text) {
        fclose(f);
        return set_err(err, errlen, "%s: out of memory", path);
    }
    size_t got = n ? fread(text, 1, n, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(text);
        return set_err(err, errlen, "%s: read error (the file changed while read?)", path);
    }
    int rc = objections_set_parse(text, n, path, out, err, errlen);
    free(text);
    return rc;
}

struct objections *objections_new(void)
{
    struct objections *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    if (pthread_mutex_init(&o->lock, NULL)) {
        free(o);
        return NULL;
    }
    o->refs = 1;
    return o;
}

struct objections *objections_ref(struct objections *o)
{
    pthread_mutex_lock(&o->lock);
    o->refs++;
    pthread_mutex_unlock(&o->lock);
    return o;
}

void objections_unref(struct objections *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    unsigned left = --o->refs;
    pthread_mutex_unlock(&o->lock);
    if (left)
        return;
    pthread_mutex_destroy(&o->lock);
    objections_set_free(o->file);
    free(o->changes.v);
    free(o);
}

void objections_install(struct objections *o, struct objections_set *s)
{
    pthread_mutex_lock(&o->lock);
    struct objections_set *old = o->file;
    o->file = s;
    pthread_mutex_unlock(&o->lock);
    objections_set_free(old);
}

int objections_change(struct objections *o, const char *nhs, const char *purpose,
                      bool objected, bool *changed)
{
    int rc = 0;
    pthread_mutex_lock(&o->lock);
    bool before = set_find(&o->changes, nhs, purpose)
        ? set_find(&o->changes, nhs, purpose)->objected
        : set_find(o->file, nhs, purpose) != NULL;
    struct entry *e = set_find(&o->changes, nhs, purpose);
    if (e) {
        e->objected = objected;
    } else if (set_push(&o->changes, nhs, purpose) == 0) {
        o->changes.v[o->changes.n - 1].objected = objected;
        qsort(o->changes.v, o->changes.n, sizeof *o->changes.v, entry_cmp);
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&o->lock);
    if (changed)
        *changed = rc == 0 && before != objected;
    return rc;
}

bool objections_has(struct objections *o, const char *nhs, size_t len, const char *purpose)
{
    char n[11];
    const char *why;
    if (!o || objections_nhs_normalise(nhs, len, n, &why))
        return false;
    pthread_mutex_lock(&o->lock);
    const struct entry *c = set_find(&o->changes, n, purpose);
    bool r = c ? c->objected : set_find(o->file, n, purpose) != NULL;
    pthread_mutex_unlock(&o->lock);
    return r;
}

int objections_each(struct objections *o, const char *purpose, objections_fn fn, void *ctx)
{
    /* A snapshot, so fn runs without the lock. */
    struct objections_set all = { 0 };
    struct objections_set fromfile = { 0 };
    int rc = 0;
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; o->file && i < o->file->n && !rc; i++) {
        const struct entry *e = &o->file->v[i];
        if (purpose && strcmp(e->purpose, purpose))
            continue;
        const struct entry *c = set_find(&o->changes, e->nhs, e->purpose);
        if (!c || c->objected)
            rc = set_push(&all, e->nhs, e->purpose) || set_push(&fromfile, e->nhs, e->purpose);
    }
    for (size_t i = 0; i < o->changes.n && !rc; i++) {
        const struct entry *e = &o->changes.v[i];
        if ((purpose && strcmp(e->purpose, purpose)) || !e->objected ||
            set_find(o->file, e->nhs, e->purpose))
            continue;
        rc = set_push(&all, e->nhs, e->purpose);
    }
    pthread_mutex_unlock(&o->lock);
    if (!rc) {
        set_finish(&all);
        for (size_t i = 0; i < all.n && !rc; i++)
            rc = fn(ctx, all.v[i].nhs, all.v[i].purpose,
                    set_find(&fromfile, all.v[i].nhs, all.v[i].purpose) != NULL);
    }
    free(all.v);
    free(fromfile.v);
    return rc;
}
