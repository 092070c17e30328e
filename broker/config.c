/*
 * config.c: the generic loader behind include/config.h. It walks tables of
 * settings (struct config_section) over a libconfig tree, fills the structs
 * they describe, and collects every error with its file, line and setting
 * path. What the settings are is in config_schema.c and adapters/.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "log.h"

#define PATH_LEN 256
#define PATH_MAX_FILE 4096

struct config_ctx {
    struct config_errors *errs;
    const char           *path;     /* the file given to config_load */
    size_t                count;    /* errors found by this load */
    bool                  nomem;
    /* The text of one file, for the integer literal check. */
    char                 *text_file;
    char                 *text;
};

const char *config_strerror(int code)
{
    switch (code) {
    case CONFIG_OK:        return "success";
    case CONFIG_E_NOMEM:   return "out of memory";
    case CONFIG_E_READ:    return "the config file cannot be read or does not parse";
    case CONFIG_E_INVALID: return "the config file has invalid settings";
    default:               return "unknown config error";
    }
}

/* -------------------------------------------------------------- errors */

static void error_free(struct config_error *e)
{
    free(e->file);
    free(e->setting);
    free(e->text);
    free(e->msg);
}

void config_errors_free(struct config_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        error_free(&errs->v[i]);
    free(errs->v);
    errs->v = NULL;
    errs->n = errs->cap = 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void add_error(struct config_ctx *ctx, const char *file, unsigned line,
                      const char *setting, const char *text)
{
    struct config_errors *errs = ctx->errs;
    struct buf msg = { 0 };

    ctx->count++;
    if (errs->n >= CONFIG_MAX_ERRORS)
        return;
    if (errs->n + 1 == CONFIG_MAX_ERRORS) {
        setting = NULL;
        text = "too many errors; the rest are left out";
        line = 0;
        file = ctx->path;
    }
    if (errs->n == errs->cap) {
        size_t cap = errs->cap ? errs->cap * 2 : 16;
        struct config_error *v = realloc(errs->v, cap * sizeof *v);
        if (!v) {
            ctx->nomem = true;
            return;
        }
        errs->v = v;
        errs->cap = cap;
    }
    int rc = line ? buf_printf(&msg, "%s:%u: ", file, line) : buf_printf(&msg, "%s: ", file);
    if (rc == 0 && setting)
        rc = buf_printf(&msg, "setting %s: ", setting);
    if (rc == 0)
        rc = buf_puts(&msg, text);

    struct config_error e = {
        .file = strdup(file),
        .line = line,
        .setting = dup_or_null(setting),
        .text = strdup(text),
        .msg = rc == 0 ? buf_take(&msg, NULL) : NULL,
    };
    buf_free(&msg);
    if (!e.file || (setting && !e.setting) || !e.text || !e.msg) {
        error_free(&e);
        ctx->nomem = true;
        return;
    }
    errs->v[errs->n++] = e;
}

static void join_path(char *out, const char *path, const char *member)
{
    if (!member)
        snprintf(out, PATH_LEN, "%s", path);
    else if (!path || !*path)
        snprintf(out, PATH_LEN, "%s", member);
    else
        snprintf(out, PATH_LEN, "%s.%s", path, member);
}

/* path[i]; a path too long is cut (it only names a setting in a message). */
static void index_path(char *out, const char *path, size_t i)
{
    if (snprintf(out, PATH_LEN, "%s[%zu]", path, i) >= PATH_LEN)
        out[PATH_LEN - 1] = '\0';
}

/* libconfig names an @include file as written in the directive; name it
 * as the operator can open it: relative to the main file's directory. */
static const char *error_file(const struct config_ctx *ctx, const char *file, char *where)
{
    if (!file || strcmp(file, ctx->path) == 0)
        return ctx->path;
    const char *slash = strrchr(ctx->path, '/');
    if (file[0] == '/' || !slash)
        return file;
    if (snprintf(where, PATH_MAX_FILE, "%.*s/%s", (int)(slash - ctx->path), ctx->path,
                 file) >= PATH_MAX_FILE)
        return file;
    return where;
}

static void vreport(struct config_ctx *ctx, const config_setting_t *at,
                    const char *setting, const char *fmt, va_list ap)
{
    char text[1024];
    const char *file = at ? config_setting_source_file(at) : NULL;

    char where[PATH_MAX_FILE];

    vsnprintf(text, sizeof text, fmt, ap);
    add_error(ctx, error_file(ctx, file, where), at ? config_setting_source_line(at) : 0,
              setting && *setting ? setting : NULL, text);
}

/* An error about the setting at (path names it). */
static void report_at(struct config_ctx *ctx, const config_setting_t *at,
                      const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report_at(struct config_ctx *ctx, const config_setting_t *at,
                      const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(ctx, at, path, fmt, ap);
    va_end(ap);
}

void config_report(struct config_ctx *ctx, const config_setting_t *s,
                   const char *path, const char *member, const char *fmt, ...)
{
    char full[PATH_LEN];
    const config_setting_t *at = s;
    va_list ap;

    if (s && member && config_setting_is_group(s)) {
        const config_setting_t *m = config_setting_get_member(s, member);
        if (m)
            at = m;
    }
    join_path(full, path, member);
    va_start(ap, fmt);
    vreport(ctx, at, full, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- helpers */

static const char *kind_of(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:  return "a group { }";
    case CONFIG_TYPE_INT:    return "an integer";
    case CONFIG_TYPE_INT64:  return "an integer";
    case CONFIG_TYPE_FLOAT:  return "a floating point number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL:   return "a boolean";
    case CONFIG_TYPE_ARRAY:  return "an array [ ]";
    case CONFIG_TYPE_LIST:   return "a list ( )";
    default:                 return "nothing";
    }
}

/* value in double quotes, cut to fit an error line. */
static const char *quoted(char *out, size_t n, const char *v)
{
    if (strlen(v) > 80)
        snprintf(out, n, "\"%.77s...\"", v);
    else
        snprintf(out, n, "\"%s\"", v);
    return out;
}

/* An empty () is read as an empty array by some hands: accept [] too. */
static bool is_listish(const config_setting_t *s)
{
    int t = config_setting_type(s);
    return t == CONFIG_TYPE_LIST || (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0);
}

static const struct config_row *find_row(const struct config_section *sec, const char *name)
{
    if (!sec)
        return NULL;
    for (const struct config_row *r = sec->rows; r->name; r++)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];

    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *suggest(const struct config_section *a, const struct config_section *b,
                           const char *name)
{
    const char *best = NULL;
    size_t best_d = 3;
    const struct config_section *secs[2] = { a, b };

    for (int k = 0; k < 2; k++) {
        if (!secs[k])
            continue;
        for (const struct config_row *r = secs[k]->rows; r->name; r++) {
            size_t d = edit_distance(name, r->name);
            if (d < best_d && d < strlen(r->name)) {
                best = r->name;
                best_d = d;
            }
        }
    }
    return best;
}

/* libconfig 1.5 reads a plain integer literal beyond 32 bits as a wrapped
 * 32-bit value, silently; 64-bit values need an L suffix. Find the literal
 * in the file and compare, so that 5368709120 is an error and not 1 GiB.
 * Returns true (with the literal in lit) when the literal disagrees. */
static bool int_literal_wrapped(struct config_ctx *ctx, const config_setting_t *m,
                                char *lit, size_t litlen)
{
    char where[PATH_MAX_FILE];
    const char *file = config_setting_source_file(m);
    const char *name = config_setting_name(m);
    unsigned line = config_setting_source_line(m);

    if (!file || !name || line == 0)
        return false;
    file = error_file(ctx, file, where);
    if (!ctx->text_file || strcmp(ctx->text_file, file) != 0) {
        free(ctx->text_file);
        free(ctx->text);
        ctx->text_file = ctx->text = NULL;
        FILE *f = fopen(file, "r");
        if (!f)
            return false;
        struct buf b = { 0 };
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b.len < (16u << 20))
            if (buf_append(&b, chunk, n))
                break;
        fclose(f);
        ctx->text = buf_take(&b, NULL);
        buf_free(&b);
        ctx->text_file = strdup(file);
        if (!ctx->text || !ctx->text_file)
            return false;
    }

    const char *p = ctx->text;
    for (unsigned l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return false;
    const char *end = strchr(p, '\n');
    if (!end)
        end = p + strlen(p);
    size_t nl = strlen(name);
    for (const char *q = p; q + nl <= end; q++) {
        if (strncmp(q, name, nl) != 0)
            continue;
        if (q > p && (q[-1] == '_' || q[-1] == '-' || q[-1] == '*' ||
                      (q[-1] >= '0' && q[-1] <= '9') ||
                      ((q[-1] | 0x20) >= 'a' && (q[-1] | 0x20) <= 'z')))
            continue;
        const char *v = q + nl;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        if (v >= end || (*v != '=' && *v != ':'))
            continue;
        v++;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        const char *t = v;
        while (t < end && strchr("+-0123456789abcdefABCDEFxX", *t))
            t++;
        if (t == v || (t < end && *t == 'L'))
            return false;
        size_t tl = (size_t)(t - v);
        if (tl >= litlen)
            tl = litlen - 1;
        memcpy(lit, v, tl);
        lit[tl] = '\0';
        errno = 0;
        char *stop;
        long long want = strtoll(lit, &stop, 0);
        if (*stop)
            return false;
        return errno == ERANGE || want != config_setting_get_int64(m);
    }
    return false;
}

/* ------------------------------------------------------------- loading */

static void load_section(struct config_ctx *ctx, const struct config_section *sec,
                         void *obj, const config_setting_t *s, const char *path);
static void free_section(const struct config_section *sec, void *obj);

static void *field_at(void *obj, size_t offset)
{
    return (char *)obj + offset;
}

static void set_default(struct config_ctx *ctx, const struct config_row *row,
                        void *field, const char *path)
{
    switch (row->kind) {
    case CONFIG_STRING:
        if (row->def_str && !(*(char **)field = strdup(row->def_str)))
            ctx->nomem = true;
        break;
    case CONFIG_INT:
        *(int64_t *)field = row->def_int;
        break;
    case CONFIG_BOOL:
        *(bool *)field = row->def_int != 0;
        break;
    case CONFIG_ENUM:
        *(int *)field = 0;
        for (int i = 0; row->def_str && row->choices[i]; i++)
            if (strcmp(row->choices[i], row->def_str) == 0)
                *(int *)field = i;
        break;
    case CONFIG_GROUP:
        load_section(ctx, row->section, field, NULL, path);
        break;
    case CONFIG_STRLIST:
    case CONFIG_GROUP_OPT:
    case CONFIG_LIST:
    case CONFIG_RAW:
        break;   /* zero: empty or absent */
    }
}

static void load_string(struct config_ctx *ctx, const struct config_row *row,
                        char **field, const config_setting_t *m, const char *path)
{
    char why[512], q[96];

    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        report_at(ctx, m, path, "must be a string in double quotes, not %s", kind_of(m));
        return;
    }
    const char *v = config_setting_get_string(m);
    if (row->validate) {
        why[0] = '\0';
        if (!row->validate(v, why, sizeof why)) {
            report_at(ctx, m, path, "%s: %s", quoted(q, sizeof q, v), why);
            return;
        }
    }
    if (!(*field = strdup(v)))
        ctx->nomem = true;
}

static void load_int(struct config_ctx *ctx, const struct config_row *row,
                     int64_t *field, const config_setting_t *m, const char *path)
{
    char lit[64];
    int t = config_setting_type(m);

    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
        report_at(ctx, m, path, "must be an integer, not %s", kind_of(m));
        return;
    }
    if (t == CONFIG_TYPE_INT && int_literal_wrapped(ctx, m, lit, sizeof lit)) {
        report_at(ctx, m, path, "%s does not fit in 32 bits; write larger numbers "
                  "with an L suffix (%sL)", lit, lit);
        return;
    }
    long long v = config_setting_get_int64(m);
    if (v < row->min || v > row->max) {
        report_at(ctx, m, path, "%lld is out of range: it must be from %lld to %lld",
                  v, (long long)row->min, (long long)row->max);
        return;
    }
    *field = v;
}

static void load_enum(struct config_ctx *ctx, const struct config_row *row,
                      int *field, const config_setting_t *m, const char *path)
{
    char q[96];
    struct buf all = { 0 };

    if (config_setting_type(m) != CONFIG_TYPE_STRING) {
        report_at(ctx, m, path, "must be a string in double quotes, not %s", kind_of(m));
        return;
    }
    const char *v = config_setting_get_string(m);
    for (int i = 0; row->choices[i]; i++) {
        if (strcmp(row->choices[i], v) == 0) {
            *field = i;
            buf_free(&all);
            return;
        }
        if (buf_printf(&all, "%s\"%s\"", i ? ", " : "", row->choices[i]))
            ctx->nomem = true;
    }
    report_at(ctx, m, path, "%s is not one of %s", quoted(q, sizeof q, v),
              all.p ? all.p : "");
    buf_free(&all);
}

static void load_strlist(struct config_ctx *ctx, const struct config_row *row,
                         struct config_strlist *field, const config_setting_t *m,
                         const char *path)
{
    char epath[PATH_LEN], why[512], q[96];
    int t = config_setting_type(m);

    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
        report_at(ctx, m, path, "must be a list of strings [ \"a\", \"b\" ], not %s",
                  kind_of(m));
        return;
    }
    size_t n = (size_t)config_setting_length(m);
    if ((int64_t)n < row->min) {
        report_at(ctx, m, path, "must list at least %lld", (long long)row->min);
        return;
    }
    if (row->max && (int64_t)n > row->max) {
        report_at(ctx, m, path, "lists %zu; at most %lld are allowed", n, (long long)row->max);
        return;
    }
    if (n == 0)
        return;
    if (!(field->v = calloc(n, sizeof *field->v))) {
        ctx->nomem = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        index_path(epath, path, i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            report_at(ctx, e, epath, "must be a string, not %s", kind_of(e));
            continue;
        }
        const char *v = config_setting_get_string(e);
        if (row->validate) {
            why[0] = '\0';
            if (!row->validate(v, why, sizeof why)) {
                report_at(ctx, e, epath, "%s: %s", quoted(q, sizeof q, v), why);
                continue;
            }
        }
        if (row->flags & CONFIG_F_UNIQUE) {
            bool dup = false;
            for (size_t j = 0; j < field->n && !dup; j++)
                dup = strcmp(field->v[j], v) == 0;
            if (dup) {
                report_at(ctx, e, epath, "%s is listed twice", quoted(q, sizeof q, v));
                continue;
            }
        }
        if (!(field->v[field->n] = strdup(v))) {
            ctx->nomem = true;
            return;
        }
        field->n++;
    }
}

/* For CONFIG_F_UNIQUE string rows of a list's elements: no two alike. */
static void check_unique(struct config_ctx *ctx, const struct config_row *row,
                         void *arr, size_t n, const config_setting_t *list,
                         const char *path)
{
    const struct config_section *sec = row->section;
    char epath[PATH_LEN], q[96];

    for (const struct config_row *r = sec->rows; r->name; r++) {
        if (!(r->flags & CONFIG_F_UNIQUE) || r->kind != CONFIG_STRING)
            continue;
        for (size_t i = 1; i < n; i++) {
            const char *vi = *(char **)field_at((char *)arr + i * sec->size, r->offset);
            if (!vi)
                continue;
            for (size_t j = 0; j < i; j++) {
                const char *vj = *(char **)field_at((char *)arr + j * sec->size, r->offset);
                if (vj && strcmp(vi, vj) == 0) {
                    index_path(epath, path, i);
                    config_report(ctx, config_setting_get_elem(list, (unsigned)i), epath,
                                  r->name, "%s is taken: %s[%zu] has the same %s",
                                  quoted(q, sizeof q, vi), path, j, r->name);
                    break;
                }
            }
        }
    }
}

static void load_list(struct config_ctx *ctx, const struct config_row *row,
                      void *obj, const config_setting_t *m, const char *path)
{
    const struct config_section *sec = row->section;
    void **arrp = field_at(obj, row->offset);
    size_t *countp = field_at(obj, row->count_offset);
    char epath[PATH_LEN];

    if (!is_listish(m)) {
        report_at(ctx, m, path, "must be a list of groups ( { ... }, { ... } ), not %s",
                  kind_of(m));
        return;
    }
    size_t n = (size_t)config_setting_length(m);
    if ((int64_t)n < row->min) {
        report_at(ctx, m, path, "must hold at least %lld", (long long)row->min);
        return;
    }
    if (row->max && (int64_t)n > row->max) {
        report_at(ctx, m, path, "holds %zu; at most %lld are allowed", n, (long long)row->max);
        return;
    }
    if (n == 0)
        return;
    char *arr = calloc(n, sec->size);
    if (!arr) {
        ctx->nomem = true;
        return;
    }
    *arrp = arr;
    *countp = n;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        void *obj = arr + i * sec->size;
        index_path(epath, path, i);
        if (sec->keep_origin) {
            *(unsigned *)field_at(obj, sec->line_offset) = config_setting_source_line(e);
            *(const config_setting_t **)field_at(obj, sec->setting_offset) = e;
        }
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            report_at(ctx, e, epath, "must be a group { ... }, not %s", kind_of(e));
            continue;
        }
        load_section(ctx, sec, obj, e, epath);
    }
    check_unique(ctx, row, arr, n, m, path);
}

static void load_row(struct config_ctx *ctx, const struct config_row *row,
                     void *obj, const config_setting_t *s, const char *path)
{
    void *field = field_at(obj, row->offset);
    const config_setting_t *m = s ? config_setting_get_member(s, row->name) : NULL;
    char mpath[PATH_LEN];

    join_path(mpath, path, row->name);
    if (!m) {
        if (row->flags & CONFIG_F_REQUIRED)
            config_report(ctx, s, path, row->name, "is required but missing");
        else
            set_default(ctx, row, field, mpath);
        return;
    }

    switch (row->kind) {
    case CONFIG_STRING:
        load_string(ctx, row, field, m, mpath);
        break;
    case CONFIG_INT:
        load_int(ctx, row, field, m, mpath);
        break;
    case CONFIG_BOOL:
        if (config_setting_type(m) != CONFIG_TYPE_BOOL)
            report_at(ctx, m, mpath, "must be true or false, not %s", kind_of(m));
        else
            *(bool *)field = config_setting_get_bool(m) != 0;
        break;
    case CONFIG_ENUM:
        load_enum(ctx, row, field, m, mpath);
        break;
    case CONFIG_STRLIST:
        load_strlist(ctx, row, field, m, mpath);
        break;
    case CONFIG_GROUP:
        if (config_setting_type(m) != CONFIG_TYPE_GROUP) {
            report_at(ctx, m, mpath, "must be a group { ... }, not %s", kind_of(m));
            set_default(ctx, row, field, mpath);
        } else {
            load_section(ctx, row->section, field, m, mpath);
        }
        break;
    case CONFIG_GROUP_OPT:
        if (config_setting_type(m) != CONFIG_TYPE_GROUP) {
            report_at(ctx, m, mpath, "must be a group { ... }, not %s", kind_of(m));
        } else {
            void *sub = calloc(1, row->section->size);
            if (!sub) {
                ctx->nomem = true;
                break;
            }
            *(void **)field = sub;
            load_section(ctx, row->section, sub, m, mpath);
        }
        break;
    case CONFIG_LIST:
        load_list(ctx, row, obj, m, mpath);
        break;
    case CONFIG_RAW:
        if (config_setting_type(m) == row->raw_type ||
            (row->raw_type == CONFIG_TYPE_LIST && is_listish(m)))
            *(const config_setting_t **)field = m;
        else
            report_at(ctx, m, mpath, "must be %s, not %s",
                      row->raw_type == CONFIG_TYPE_LIST ? "a list ( )" :
                      row->raw_type == CONFIG_TYPE_GROUP ? "a group { }" : "another type",
                      kind_of(m));
        break;
    }
}

static void load_section(struct config_ctx *ctx, const struct config_section *sec,
                         void *obj, const config_setting_t *s, const char *path)
{
    size_t before = ctx->count;
    const struct config_section *tsec = NULL;
    void *opts = NULL;
    bool members_known = true;

    for (const struct config_row *r = sec->rows; r->name; r++)
        load_row(ctx, r, obj, s, path);

    if (sec->role != CONFIG_ROLE_NONE) {
        const char *type = *(char **)field_at(obj, sec->type_offset);
        const struct config_adapter_schema *schema = type ? config_adapter_schema_find(type) : NULL;
        members_known = false;
        if (type && !schema) {
            struct buf known = { 0 };
            for (size_t i = 0; config_adapter_schemas[i]; i++)
                if (buf_printf(&known, "%s\"%s\"", i ? ", " : "", config_adapter_schemas[i]->type))
                    ctx->nomem = true;
            config_report(ctx, s, path, "type", "unknown type \"%s\"; the types are %s",
                          type, known.p ? known.p : "");
            buf_free(&known);
        } else if (schema) {
            bool src = sec->role == CONFIG_ROLE_SOURCE;
            tsec = src ? schema->source : schema->destination;
            if (!tsec) {
                config_report(ctx, s, path, "type", "type \"%s\" cannot be a %s",
                              type, src ? "source" : "destination");
            } else if (!(opts = calloc(1, tsec->size))) {
                ctx->nomem = true;
                tsec = NULL;
            } else {
                *(const struct config_adapter_schema **)field_at(obj, sec->schema_offset) = schema;
                *(void **)field_at(obj, sec->opts_offset) = opts;
                for (const struct config_row *r = tsec->rows; r->name; r++)
                    load_row(ctx, r, opts, s, path);
                members_known = true;
            }
        }
    }

    /* Unknown settings. Under an unknown type, what is unknown is unknown. */
    for (int i = 0; s && members_known && i < config_setting_length(s); i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        const char *name = config_setting_name(m);
        if (!name || find_row(sec, name) || find_row(tsec, name))
            continue;
        char mpath[PATH_LEN];
        join_path(mpath, path, name);
        const char *hint = suggest(sec, tsec, name);
        if (hint)
            report_at(ctx, m, mpath, "unknown setting; did you mean \"%s\"?", hint);
        else if (tsec)
            report_at(ctx, m, mpath, "unknown setting for type \"%s\"",
                      *(char **)field_at(obj, sec->type_offset));
        else
            report_at(ctx, m, mpath, "unknown setting");
    }

    bool clean = ctx->count == before;
    if (sec->check && (clean || sec->check_always))
        sec->check(ctx, obj, s, path);
    if (tsec && tsec->check && (clean || tsec->check_always))
        tsec->check(ctx, opts, s, path);
}

/* ------------------------------------------------------------- freeing */

static void free_row(const struct config_row *row, void *obj)
{
    void *field = field_at(obj, row->offset);

    switch (row->kind) {
    case CONFIG_STRING:
        free(*(char **)field);
        *(char **)field = NULL;
        break;
    case CONFIG_STRLIST: {
        struct config_strlist *l = field;
        for (size_t i = 0; i < l->n; i++)
            free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
        break;
    }
    case CONFIG_GROUP:
        free_section(row->section, field);
        break;
    case CONFIG_GROUP_OPT: {
        void *sub = *(void **)field;
        if (sub) {
            free_section(row->section, sub);
            free(sub);
        }
        *(void **)field = NULL;
        break;
    }
    case CONFIG_LIST: {
        char *arr = *(void **)field;
        size_t *countp = field_at(obj, row->count_offset);
        for (size_t i = 0; arr && i < *countp; i++)
            free_section(row->section, arr + i * row->section->size);
        free(arr);
        *(void **)field = NULL;
        *countp = 0;
        break;
    }
    case CONFIG_INT:
    case CONFIG_BOOL:
    case CONFIG_ENUM:
    case CONFIG_RAW:
        break;
    }
}

static void free_section(const struct config_section *sec, void *obj)
{
    if (sec->fini)
        sec->fini(obj);
    if (sec->role != CONFIG_ROLE_NONE) {
        const struct config_adapter_schema *schema =
            *(const struct config_adapter_schema **)field_at(obj, sec->schema_offset);
        void **optsp = field_at(obj, sec->opts_offset);
        if (schema && *optsp) {
            const struct config_section *tsec =
                sec->role == CONFIG_ROLE_SOURCE ? schema->source : schema->destination;
            free_section(tsec, *optsp);
        }
        free(*optsp);
        *optsp = NULL;
    }
    for (const struct config_row *r = sec->rows; r->name; r++)
        free_row(r, obj);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free_section(&config_root_section, cfg);
    if (cfg->lc) {
        config_destroy(cfg->lc);
        free(cfg->lc);
    }
    free(cfg->path);
    memset(cfg, 0, sizeof *cfg);
}

/* ---------------------------------------------------------------- load */

/* Errors in file and line order; those on one line stay in the order they
 * were found (an insertion sort: stable, and there are at most a few
 * hundred). */
static void sort_errors(struct config_error *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct config_error e = v[i];
        size_t j = i;
        while (j > 0) {
            int c = strcmp(v[j - 1].file, e.file);
            if (c < 0 || (c == 0 && v[j - 1].line <= e.line))
                break;
            v[j] = v[j - 1];
            j--;
        }
        v[j] = e;
    }
}

int config_load(const char *path, struct config *cfg, struct config_errors *errs)
{
    struct config_ctx ctx = { .errs = errs, .path = path };
    size_t first = errs->n;
    struct stat st;
    char text[512];
    int rc = CONFIG_OK;

    memset(cfg, 0, sizeof *cfg);
    if (stat(path, &st) != 0) {
        snprintf(text, sizeof text, "cannot read the config file: %s", strerror(errno));
        add_error(&ctx, path, 0, NULL, text);
        return ctx.nomem ? CONFIG_E_NOMEM : CONFIG_E_READ;
    }
    if (!S_ISREG(st.st_mode)) {
        add_error(&ctx, path, 0, NULL, "cannot read the config file: not a regular file");
        return ctx.nomem ? CONFIG_E_NOMEM : CONFIG_E_READ;
    }

    cfg->lc = calloc(1, sizeof *cfg->lc);
    cfg->path = strdup(path);
    char *dir = strdup(path);
    if (!cfg->lc || !cfg->path || !dir) {
        free(dir);
        rc = CONFIG_E_NOMEM;
        goto out;
    }
    config_init(cfg->lc);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    config_set_include_dir(cfg->lc, slash ? dir : ".");
    free(dir);

    if (!config_read_file(cfg->lc, path)) {
        const char *efile = config_error_file(cfg->lc);
        const char *etext = config_error_text(cfg->lc);
        if (config_error_type(cfg->lc) == CONFIG_ERR_FILE_IO)
            snprintf(text, sizeof text, "cannot read the config file: %s",
                     errno ? strerror(errno) : "I/O error");
        else
            snprintf(text, sizeof text, "%s", etext ? etext : "parse error");
        char where[PATH_MAX_FILE];
        add_error(&ctx, error_file(&ctx, efile, where), (unsigned)config_error_line(cfg->lc),
                  NULL, text);
        rc = CONFIG_E_READ;
        goto out;
    }

    load_section(&ctx, &config_root_section, cfg, config_root_setting(cfg->lc), "");
    if (ctx.nomem)
        rc = CONFIG_E_NOMEM;
    else if (ctx.count)
        rc = CONFIG_E_INVALID;

    if (errs->n > first)
        sort_errors(errs->v + first, errs->n - first);

out:
    if (rc == CONFIG_E_NOMEM)
        add_error(&ctx, path, 0, NULL, "out of memory");
    if (rc != CONFIG_OK)
        config_free(cfg);
    free(ctx.text_file);
    free(ctx.text);
    return rc;
}

/* -------------------------------------------------------------- lookup */

const struct config_source *config_find_source(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_sources; i++)
        if (cfg->sources[i].name && strcmp(cfg->sources[i].name, name) == 0)
            return &cfg->sources[i];
    return NULL;
}

const struct config_destination *config_find_destination(const struct config *cfg,
                                                         const char *name)
{
    for (size_t i = 0; i < cfg->n_destinations; i++)
        if (cfg->destinations[i].name && strcmp(cfg->destinations[i].name, name) == 0)
            return &cfg->destinations[i];
    return NULL;
}

const struct config_adapter_schema *config_adapter_schema_find(const char *type)
{
    for (size_t i = 0; config_adapter_schemas[i]; i++)
        if (strcmp(config_adapter_schemas[i]->type, type) == 0)
            return config_adapter_schemas[i];
    return NULL;
}

/* ------------------------------------------------------------- summary */

static void summary_rows(struct log_line *l, const struct config_section *sec,
                         const void *obj, const char *prefix)
{
    char key[PATH_LEN];

    for (const struct config_row *r = sec->rows; r->name; r++) {
        if (!(r->flags & CONFIG_F_SUMMARY))
            continue;
        const void *field = (const char *)obj + r->offset;
        join_path(key, prefix, r->name);
        switch (r->kind) {
        case CONFIG_STRING:
            if (*(char *const *)field)
                log_line_add(l, key, "%s", *(char *const *)field);
            break;
        case CONFIG_INT:
            log_line_add(l, key, "%lld", (long long)*(const int64_t *)field);
            break;
        case CONFIG_BOOL:
            log_line_add(l, key, "%s", *(const bool *)field ? "true" : "false");
            break;
        case CONFIG_ENUM:
            log_line_add(l, key, "%s", r->choices[*(const int *)field]);
            break;
        case CONFIG_STRLIST: {
            const struct config_strlist *sl = field;
            struct buf b = { 0 };
            for (size_t i = 0; i < sl->n; i++)
                if (buf_printf(&b, "%s%s", i ? "," : "", sl->v[i]))
                    break;
            log_line_add(l, key, "%s", b.p ? b.p : "");
            buf_free(&b);
            break;
        }
        case CONFIG_GROUP:
            summary_rows(l, r->section, field, key);
            break;
        case CONFIG_GROUP_OPT:
            log_line_add(l, key, "%s", *(void *const *)field ? "on" : "off");
            break;
        case CONFIG_LIST:
            log_line_add(l, key, "%zu",
                         *(const size_t *)((const char *)obj + r->count_offset));
            break;
        case CONFIG_RAW: {
            const config_setting_t *raw = *(const config_setting_t *const *)field;
            log_line_add(l, key, "%d", raw ? config_setting_length(raw) : 0);
            break;
        }
        }
    }
}

static void summary_item(const char *what, const struct config_section *sec,
                         const void *obj)
{
    struct log_line l;

    if (!log_line_begin(&l, LOG_LEVEL_INFO, "config", what))
        return;
    summary_rows(&l, sec, obj, "");
    if (sec->role != CONFIG_ROLE_NONE) {
        const struct config_adapter_schema *schema =
            *(const struct config_adapter_schema *const *)((const char *)obj + sec->schema_offset);
        const void *opts = *(void *const *)((const char *)obj + sec->opts_offset);
        const struct config_section *tsec = !schema ? NULL :
            sec->role == CONFIG_ROLE_SOURCE ? schema->source : schema->destination;
        if (tsec && opts)
            summary_rows(&l, tsec, opts, "");
    }
    log_line_end(&l);
}

void config_log_summary(const struct config *cfg, const char *what)
{
    const struct config_section *root = &config_root_section;

    for (const struct config_row *r = root->rows; r->name; r++) {
        const void *field = (const char *)cfg + r->offset;
        if (r->kind == CONFIG_GROUP) {
            summary_item(r->name, r->section, field);
        } else if (r->kind == CONFIG_LIST) {
            const char *arr = *(const void *const *)field;
            size_t n = *(const size_t *)((const char *)cfg + r->count_offset);
            /* "sources" -> "source", "destinations" -> "destination" */
            char what1[64];
            snprintf(what1, sizeof what1, "%s", r->name);
            size_t wl = strlen(what1);
            if (wl > 1 && what1[wl - 1] == 's')
                what1[wl - 1] = '\0';
            for (size_t i = 0; i < n; i++)
                summary_item(what1, r->section, arr + i * r->section->size);
        }
    }
    log_info("config", what, "file=%s sources=%zu destinations=%zu routes=%zu tables=%zu",
             cfg->path, cfg->n_sources, cfg->n_destinations, cfg->n_routes, cfg->n_tables);
}

/* ----------------------------------------------------------- reference */

static void ref_type(const struct config_row *r, struct buf *b)
{
    switch (r->kind) {
    case CONFIG_STRING:
        buf_puts(b, "string");
        break;
    case CONFIG_INT:
        buf_printf(b, "integer %lld..%lld", (long long)r->min, (long long)r->max);
        break;
    case CONFIG_BOOL:
        buf_puts(b, "bool");
        break;
    case CONFIG_ENUM:
        buf_puts(b, "one of");
        for (int i = 0; r->choices[i]; i++)
            buf_printf(b, "%s `\"%s\"`", i ? "," : "", r->choices[i]);
        break;
    case CONFIG_STRLIST:
        buf_puts(b, "list of strings");
        break;
    case CONFIG_GROUP:
    case CONFIG_GROUP_OPT:
        buf_puts(b, "group");
        break;
    case CONFIG_LIST:
        buf_puts(b, "list of groups");
        break;
    case CONFIG_RAW:
        buf_puts(b, r->raw_type == CONFIG_TYPE_LIST ? "list" : "setting");
        break;
    }
}

static void ref_default(const struct config_row *r, struct buf *b)
{
    if (r->flags & CONFIG_F_REQUIRED) {
        buf_puts(b, "required");
        return;
    }
    switch (r->kind) {
    case CONFIG_STRING:
    case CONFIG_ENUM:
        if (r->def_str)
            buf_printf(b, "`\"%s\"`", r->def_str);
        else
            buf_puts(b, "unset");
        break;
    case CONFIG_INT:
        buf_printf(b, "%lld", (long long)r->def_int);
        break;
    case CONFIG_BOOL:
        buf_puts(b, r->def_int ? "true" : "false");
        break;
    case CONFIG_STRLIST:
    case CONFIG_LIST:
        buf_puts(b, "empty");
        break;
    case CONFIG_GROUP:
        buf_puts(b, "(defaults)");
        break;
    case CONFIG_GROUP_OPT:
    case CONFIG_RAW:
        buf_puts(b, "unset");
        break;
    }
}

static void ref_section(FILE *f, const struct config_section *sec, const char *prefix)
{
    char key[PATH_LEN];
    struct buf t = { 0 }, d = { 0 };

    for (const struct config_row *r = sec->rows; r->name; r++) {
        join_path(key, prefix, r->name);
        buf_reset(&t);
        buf_reset(&d);
        ref_type(r, &t);
        ref_default(r, &d);
        fprintf(f, "| `%s` | %s | %s | %s |\n", key, t.p ? t.p : "", d.p ? d.p : "",
                r->doc ? r->doc : "");
        if (r->kind == CONFIG_GROUP || r->kind == CONFIG_GROUP_OPT) {
            ref_section(f, r->section, key);
        } else if (r->kind == CONFIG_LIST) {
            char elem[PATH_LEN + 8];
            snprintf(elem, sizeof elem, "%s[]", key);
            ref_section(f, r->section, elem);
            if (r->section->role != CONFIG_ROLE_NONE) {
                for (size_t i = 0; config_adapter_schemas[i]; i++) {
                    const struct config_adapter_schema *a = config_adapter_schemas[i];
                    const struct config_section *tsec =
                        r->section->role == CONFIG_ROLE_SOURCE ? a->source : a->destination;
                    char typed[PATH_LEN + 80];
                    if (!tsec)
                        continue;
                    snprintf(typed, sizeof typed, "%s[type=%s]", key, a->type);
                    ref_section(f, tsec, typed);
                }
            }
        }
    }
    buf_free(&t);
    buf_free(&d);
}

void config_print_reference(FILE *f)
{
    fprintf(f, "| setting | type | default | meaning |\n");
    fprintf(f, "| --- | --- | --- | --- |\n");
    ref_section(f, &config_root_section, "");
}
