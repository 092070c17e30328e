/*
 * expr.c: filter expressions (a route's `when`), compiled once into a
 * tree whose paths, regular expressions and table names are resolved,
 * then evaluated on each message without touching the heap unless a value
 * holds HL7 escapes (or a false result's reason is wanted).
 */
#include "route.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "itk.h"
#include "objections.h"
#include "route_tables_priv.h"

/* Deeper nesting (parentheses and `not`) is refused: the parser and the
 * evaluator recurse once per level, and a config must not be able to
 * exhaust the stack. */
#define EXPR_MAX_DEPTH 64

/* Largest regular expression accepted, in the units regex_check() counts
 * (about one node of the pattern glibc compiles each; its memory grows
 * with their square), and the deepest nesting of its groups. */
#define REGEX_MAX_WEIGHT 1000
#define REGEX_MAX_GROUPS 64

/* Source text quoted in an error: at most 64 bytes, then "...". Used as
 * "%.*s%s" with SNIP(len, text). */
#define SNIP(len, text) (int)((len) > 64 ? 64 : (len)), (text), (len) > 64 ? "..." : ""

/* Longest value quoted in a reason; the rest is cut to "...". */
#define WHY_VALUE_MAX 64

/* ---------------------------------------------------------------- tree */

enum vkind { V_PATH, V_STR, V_META };

/* The ITK metadata paths (route.h): what they read on an ITK message. */
enum meta {
    M_SERVICE, M_INTERACTION, M_SENDER, M_ADDRESS, M_TRACKING_ID, M_PROFILE, M_NHS_NUMBER,
};
static const char *const meta_names[] = {
    "itk.service", "itk.interaction", "itk.sender", "itk.address", "itk.tracking_id",
    "itk.profile", "cda.nhs_number", NULL,
};
#define N_META (sizeof meta_names / sizeof *meta_names - 1)

const char *const *const route_itk_paths = meta_names;

struct value {
    enum vkind      kind;
    enum meta       meta;       /* V_META */
    struct hl7_path path;
    char           *s;          /* V_STR: the literal, NUL-terminated */
    size_t          len;
    size_t          start, end; /* where it is in the text */
};

enum nkind { N_OR, N_AND, N_NOT, N_CMP, N_EXISTS, N_NHS, N_IN_TABLE, N_OBJECTED };
enum cmpop { OP_TRUTHY, OP_EQ, OP_NE, OP_RE, OP_IN };

struct node {
    enum nkind    kind;
    size_t        start, end;   /* the clause's text, for reasons */
    struct node **kids;         /* N_OR, N_AND: n; N_NOT: 1 */
    size_t        n;
    enum cmpop    op;           /* N_CMP */
    struct value  lhs;          /* N_CMP; the functions' path */
    struct value *rhs;          /* N_CMP: 1, or the `in` list */
    size_t        nrhs;
    regex_t       re;           /* OP_RE */
    bool          has_re;
    char         *table;        /* N_IN_TABLE; N_OBJECTED: the purpose */
    struct objections *reg;     /* N_OBJECTED (the expression's tables hold it) */
};

struct route_expr {
    char                      *text;
    size_t                     len;
    const struct route_tables *tables;
    struct node               *root;
};

static void value_free(struct value *v)
{
    free(v->s);
}

static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->kids[i]);
    free(n->kids);
    if (n->kind == N_CMP || n->kind == N_EXISTS || n->kind == N_NHS || n->kind == N_IN_TABLE ||
        n->kind == N_OBJECTED)
        value_free(&n->lhs);
    for (size_t i = 0; i < n->nrhs; i++)
        value_free(&n->rhs[i]);
    free(n->rhs);
    if (n->has_re)
        regfree(&n->re);
    free(n->table);
    free(n);
}

void route_expr_free(struct route_expr *e)
{
    if (!e)
        return;
    node_free(e->root);
    free(e->text);
    free(e);
}

/* --------------------------------------------------------------- lexer */

enum tkind {
    T_END, T_LP, T_RP, T_COMMA, T_EQ, T_NE, T_RE, T_STR, T_NUM, T_WORD, T_PATH, T_ERR
};

struct token {
    enum tkind kind;
    size_t     start, len;
};

struct parser {
    const char                *t;
    size_t                     len, i;
    struct token               tok;
    size_t                     prev_end;    /* end of the token before tok */
    enum tkind                 prev_kind;
    const struct route_tables *tables;
    struct route_error        *err;
    unsigned                   depth;
    bool                       failed;
};

static void fail(struct parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error only: what follows it is usually its echo. */
static void fail(struct parser *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    p->tok.kind = T_ERR;
    if (!p->err)
        return;
    struct route_error *err = p->err;
    memset(err, 0, sizeof *err);
    err->column = (unsigned)(at > p->len ? p->len : at) + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    snprintf(err->msg, sizeof err->msg, "column %u: %s", err->column, err->text);
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '_';
}

static bool is_path_char(char c)
{
    return is_word_char(c) || c == '-' || c == '.' || c == '[' || c == ']';
}

static void lex(struct parser *p)
{
    const char *t = p->t;
    if (p->failed)
        return;
    p->prev_end = p->tok.start + p->tok.len;
    p->prev_kind = p->tok.kind;
    while (p->i < p->len && (t[p->i] == ' ' || t[p->i] == '\t' || t[p->i] == '\r' || t[p->i] == '\n'))
        p->i++;
    size_t s = p->i;
    struct token *k = &p->tok;
    k->start = s;
    k->len = 1;
    if (s >= p->len) {
        k->kind = T_END;
        k->len = 0;
        return;
    }
    char c = t[s], next = s + 1 < p->len ? t[s + 1] : '\0';
    switch (c) {
    case '(': k->kind = T_LP; break;
    case ')': k->kind = T_RP; break;
    case ',': k->kind = T_COMMA; break;
    case '~': k->kind = T_RE; break;
    case '=':
        if (next == '=') {
            fail(p, s, "'==' is not an operator: equality is a single '='");
            return;
        }
        k->kind = T_EQ;
        break;
    case '!':
        if (next == '=') {
            k->kind = T_NE;
            k->len = 2;
            break;
        }
        if (next == '~')
            fail(p, s, "'!~' is not an operator: write not (A ~ 'regex')");
        else
            fail(p, s, "'!' is not an operator: write 'not'");
        return;
    case '<': case '>':
        fail(p, s, "'%c' is not an operator: the comparisons are =, !=, ~ and in (...)", c);
        return;
    case '&':
        fail(p, s, "'&' is not an operator: write 'and'");
        return;
    case '|':
        fail(p, s, "'|' is not an operator: write 'or'");
        return;
    case '\'': case '"': {
        size_t i = s + 1;
        for (;;) {
            const char *q = i < p->len ? memchr(t + i, c, p->len - i) : NULL;
            if (!q) {
                fail(p, s, "a string opened here is never closed (a quote inside a string is "
                           "written twice: 'O''Brien')");
                return;
            }
            i = (size_t)(q - t) + 1;
            if (i < p->len && t[i] == c) {
                i++;
                continue;
            }
            break;
        }
        k->kind = T_STR;
        k->len = i - s;
        break;
    }
    default:
        if (is_digit(c) || (c == '-' && is_digit(next))) {
            size_t i = s + 1;
            while (i < p->len && is_digit(t[i]))
                i++;
            if (i + 1 < p->len && t[i] == '.' && is_digit(t[i + 1])) {
                i += 2;
                while (i < p->len && is_digit(t[i]))
                    i++;
            }
            if (i < p->len && is_path_char(t[i])) {
                if (c == '-') {
                    fail(p, s, "unexpected '-'");
                    return;
                }
                while (i < p->len && is_path_char(t[i]))   /* a path, "1AB-2"? */
                    i++;
                k->kind = T_PATH;
            } else {
                k->kind = T_NUM;
            }
            k->len = i - s;
            break;
        }
        if (is_alpha(c) || c == '_') {
            size_t i = s + 1;
            while (i < p->len && is_word_char(t[i]))
                i++;
            bool path = (c >= 'A' && c <= 'Z') ||
                        (i < p->len && (t[i] == '-' || t[i] == '.' || t[i] == '['));
            if (path)
                while (i < p->len && is_path_char(t[i]))
                    i++;
            k->kind = path ? T_PATH : T_WORD;
            k->len = i - s;
            break;
        }
        if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
            fail(p, s, "unexpected byte 0x%02x", (unsigned char)c);
        else
            fail(p, s, "unexpected character '%c'", c);
        return;
    }
    p->i = s + k->len;
}

static bool tok_is(const struct parser *p, const char *word)
{
    return p->tok.kind == T_WORD && p->tok.len == strlen(word) &&
           memcmp(p->t + p->tok.start, word, p->tok.len) == 0;
}

static const char *const keywords[] = { "and", "or", "not", "in" };

/* A keyword written in capitals ("AND") is lexed as a path: say so. */
static const char *shouted_keyword(const struct parser *p)
{
    if (p->tok.kind != T_PATH && p->tok.kind != T_WORD)
        return NULL;
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if (p->tok.len == strlen(keywords[i]) &&
            strncasecmp(p->t + p->tok.start, keywords[i], p->tok.len) == 0 &&
            memcmp(p->t + p->tok.start, keywords[i], p->tok.len) != 0)
            return keywords[i];
    return NULL;
}

static bool is_keyword(const struct parser *p)
{
    for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
        if (tok_is(p, keywords[i]))
            return true;
    return false;
}

/* What the current token is, for "found ..." in errors. */
static const char *found(const struct parser *p, char *b, size_t cap)
{
    if (p->tok.kind == T_END)
        return "the end of the expression";
    size_t n = p->tok.len > 32 ? 32 : p->tok.len;
    snprintf(b, cap, "'%.*s%s'", (int)n, p->t + p->tok.start, n < p->tok.len ? "..." : "");
    return b;
}

/* Is the next character after the current token, spaces aside, c? */
static bool next_char_is(const struct parser *p, char c)
{
    size_t i = p->i;
    while (i < p->len && (p->t[i] == ' ' || p->t[i] == '\t' || p->t[i] == '\r' || p->t[i] == '\n'))
        i++;
    return i < p->len && p->t[i] == c;
}

/* A string followed at once by more text ('O'NEILL'): most likely a quote
 * meant to be inside it. Reports that and returns true. */
static bool quote_inside_string(struct parser *p)
{
    if (p->prev_kind != T_STR || p->tok.start != p->prev_end || p->tok.kind == T_END ||
        p->tok.kind == T_RP || p->tok.kind == T_COMMA)
        return false;
    fail(p, p->prev_end - 1, "the string ends here: a quote inside a string is written "
         "twice: 'O''Brien'");
    return true;
}

/* ------------------------------------------------------------- helpers */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The candidate closest to word, when close enough to be a likely typo. */
static const char *closest(const char *word, const char *const *cand, size_t n)
{
    const char *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < n; i++) {
        if (!cand[i])
            continue;
        size_t d = edit_distance(word, cand[i]);
        if (d < bd) {
            bd = d;
            best = cand[i];
        }
    }
    return best;
}

static struct node *node_new(struct parser *p, enum nkind kind, size_t start)
{
    struct node *n = calloc(1, sizeof *n);
    if (!n) {
        fail(p, start, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->start = start;
    return n;
}

static int add_kid(struct parser *p, struct node *n, struct node *kid)
{
    struct node **k = realloc(n->kids, (n->n + 1) * sizeof *k);
    if (!k) {
        fail(p, kid->start, "out of memory");
        return -1;
    }
    n->kids = k;
    n->kids[n->n++] = kid;
    return 0;
}

/* -------------------------------------------------------------- parser */

static struct node *parse_or(struct parser *p);

/* An ITK metadata name (itk.service, ...) at t, len bytes, into v. */
static int parse_meta(struct parser *p, struct value *v, const char *t, size_t len)
{
    for (size_t i = 0; i < N_META; i++)
        if (len == strlen(meta_names[i]) && memcmp(t, meta_names[i], len) == 0) {
            v->kind = V_META;
            v->meta = (enum meta)i;
            return 0;
        }
    char w[65];
    snprintf(w, sizeof w, "%.*s", (int)(len > 64 ? 64 : len), t);
    const char *s = closest(w, meta_names, N_META);
    if (!s) {
        /* "ITK.Service": the same name in other capitals */
        for (size_t i = 0; i < N_META && !s; i++)
            if (strcasecmp(w, meta_names[i]) == 0)
                s = meta_names[i];
    }
    if (s)
        fail(p, p->tok.start, "unknown metadata path '%.*s%s' (did you mean %s?)",
             SNIP(len, t), s);
    else
        fail(p, p->tok.start, "unknown metadata path '%.*s%s' (the ITK metadata paths are "
             "itk.service, itk.interaction, itk.sender, itk.address, itk.tracking_id, "
             "itk.profile and cda.nhs_number)", SNIP(len, t));
    return -1;
}

/* A path, string or number at the current token into v. */
static int parse_value(struct parser *p, struct value *v, const char *expected)
{
    char fb[48];
    const struct token k = p->tok;
    const char *t = p->t + k.start;
    memset(v, 0, sizeof *v);
    v->start = k.start;
    v->end = k.start + k.len;
    switch (k.kind) {
    case T_STR: {
        char q = t[0];
        v->kind = V_STR;
        v->s = malloc(k.len);
        if (!v->s) {
            fail(p, k.start, "out of memory");
            return -1;
        }
        for (size_t i = 1; i + 1 < k.len; i++) {
            v->s[v->len++] = t[i];
            if (t[i] == q)
                i++;                    /* '' is one quote */
        }
        v->s[v->len] = '\0';
        break;
    }
    case T_NUM:
        v->kind = V_STR;
        v->s = strndup(t, k.len);
        if (!v->s) {
            fail(p, k.start, "out of memory");
            return -1;
        }
        v->len = k.len;
        break;
    case T_PATH: {
        const char *kw = shouted_keyword(p);
        if (kw) {
            fail(p, k.start, "keywords are lower case: write '%s', not '%.*s'", kw,
                 (int)k.len, t);
            return -1;
        }
        if (k.len >= 4 && (strncasecmp(t, "itk.", 4) == 0 || strncasecmp(t, "cda.", 4) == 0)) {
            if (parse_meta(p, v, t, k.len))
                return -1;
            break;
        }
        struct hl7_error he;
        v->kind = V_PATH;
        if (hl7_path_parse(t, k.len, &v->path, &he)) {
            /* The codec's sentence is "bad path 'X' at column N: what";
               the column is given here in the expression's terms. */
            const char *what = strstr(he.text, "' at column ");
            what = what ? strstr(what, ": ") : NULL;
            fail(p, k.start + he.offset, "bad path '%.*s%s': %s", SNIP(k.len, t),
                 what ? what + 2 : he.text);
            return -1;
        }
        break;
    }
    case T_WORD:
        if (next_char_is(p, '('))
            fail(p, k.start, "%s, found the function %.*s%s(): a function is true or false, "
                 "not a value", expected, SNIP(k.len, t));
        else if (is_keyword(p))
            fail(p, k.start, "%s, found '%.*s'", expected, (int)k.len, t);
        else
            fail(p, k.start, "unexpected word '%.*s%s': %s (strings are in quotes: 'ADT')",
                 SNIP(k.len, t), expected);
        return -1;
    case T_ERR:
        return -1;
    default:
        fail(p, k.start, "%s, found %s", expected, found(p, fb, sizeof fb));
        return -1;
    }
    lex(p);
    return p->failed ? -1 : 0;
}

/* A function call; the current token is its name, followed by '('. */
static struct node *parse_func(struct parser *p)
{
    static const char *const funcs[] = { "exists", "nhs_number_valid", "in_table", "objected" };
    const struct token name = p->tok;
    const char *nm = p->t + name.start;
    char fb[48];
    int f = -1;
    for (size_t i = 0; i < sizeof funcs / sizeof *funcs; i++)
        if (name.len == strlen(funcs[i]) && memcmp(nm, funcs[i], name.len) == 0)
            f = (int)i;
    if (f < 0) {
        char w[65];
        snprintf(w, sizeof w, "%.*s", (int)(name.len > 64 ? 64 : name.len), nm);
        const char *s = closest(w, funcs, 3);
        if (s)
            fail(p, name.start, "unknown function '%s' (did you mean %s?)", w, s);
        else
            fail(p, name.start, "unknown function '%s' (the functions are exists, "
                 "nhs_number_valid, in_table and objected)", w);
        return NULL;
    }
    static const enum nkind kinds[] = { N_EXISTS, N_NHS, N_IN_TABLE, N_OBJECTED };
    struct node *n = node_new(p, kinds[f], name.start);
    if (!n)
        return NULL;
    lex(p);                                         /* ( */
    lex(p);
    struct value purpose = {0};
    char usage[64];
    snprintf(usage, sizeof usage, "%s(PATH%s)", funcs[f], f >= 2 ? f == 2 ? ", 'table'" : ", 'purpose'" : "");
    if (p->tok.kind != T_PATH && !p->failed) {
        fail(p, p->tok.start, "%s() takes a path first, like %s, found %s", funcs[f],
             f == 2 ? "in_table(PV1-3.4, 'site-codes')" : f == 3 ? "objected(PID-3, 'research')"
                    : f == 1 ? "nhs_number_valid(PID-3)" : "exists(PID-3)",
             found(p, fb, sizeof fb));
        goto bad;
    }
    if (parse_value(p, &n->lhs, "expected a path"))
        goto bad;
    if (f >= 2) {
        if (p->tok.kind != T_COMMA) {
            fail(p, p->tok.start, "expected ',' and a %s in quotes: %s", f == 2 ? "table name" : "purpose",
                 usage);
            goto bad;
        }
        lex(p);
        if (p->tok.kind != T_STR) {
            if (!p->failed)
                fail(p, p->tok.start, "expected a %s in quotes: %s, found %s",
                     f == 2 ? "table name" : "purpose", usage, found(p, fb, sizeof fb));
            goto bad;
        }
        size_t at = p->tok.start;
        if (parse_value(p, &purpose, "expected a string"))
            goto bad;
        if (f == 2) {
            if (!route_table_exists(p->tables, purpose.s)) {
                size_t nt = route_tables_count(p->tables);
                const char **names = nt ? calloc(nt, sizeof *names) : NULL;
                for (size_t i = 0; names && i < nt; i++)
                    names[i] = route_tables_name(p->tables, i);
                const char *s = names ? closest(purpose.s, names, nt) : NULL;
                if (s)
                    fail(p, at, "unknown table '%s' (did you mean %s?)", purpose.s, s);
                else if (nt == 0)
                    fail(p, at, "unknown table '%s' (no tables are configured)", purpose.s);
                else
                    fail(p, at, "unknown table '%s'", purpose.s);
                free(names);
                goto bad;
            }
            n->table = purpose.s;
            purpose.s = NULL;
        } else {
            if (!objections_purpose_valid(purpose.s)) {
                fail(p, at, "bad purpose '%.*s%s': 1 to %d characters of a-z, 0-9, '_' and '-' "
                     "(direct_care, research, ...)", SNIP(strlen(purpose.s), purpose.s),
                     OBJECTIONS_PURPOSE_MAX);
                goto bad;
            }
            if (!(n->reg = route_tables_objections(p->tables))) {
                fail(p, name.start, "objected() needs the objections register, which only "
                     "the broker's routes have");
                goto bad;
            }
            n->table = purpose.s;
            purpose.s = NULL;
        }
    }
    if (p->tok.kind != T_RP) {
        if (!p->failed)
            fail(p, p->tok.start, "expected ')' to close %s(: it takes %s, found %s", funcs[f],
                 f >= 2 ? "two arguments" : "one path", found(p, fb, sizeof fb));
        goto bad;
    }
    n->end = p->tok.start + 1;
    lex(p);
    value_free(&purpose);
    return n;
bad:
    value_free(&purpose);
    node_free(n);
    return NULL;
}

/* glibc compiles x{m,n} as n copies of x and x+ as x x*: nested, the
 * copies multiply ("a{100}{100}{100}" asks for gigabytes), and its
 * compile time grows exponentially with repetitions of what can match
 * nothing ("^(((a?)?)+)+", "a?+++"). Such patterns are refused when the
 * config loads, as are back-references, whose matching backtracks. */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define REGEX_TOO_BIG "too large: with its repetitions expanded it has more than " \
    STRINGIFY(REGEX_MAX_WEIGHT) " elements"

/* A group being read: its size so far, and whether what it has read can
 * match nothing. */
struct re_group {
    double sum;
    bool   prefix_empty;    /* the current alternative before the last atom */
    bool   alt_empty;       /* an earlier alternative */
};

struct re_atom {
    bool   has;
    bool   empty;           /* can match nothing */
    double w;
};

static void re_add_atom(struct re_group *g, struct re_atom *last, bool empty, double w)
{
    if (last->has)
        g->prefix_empty = g->prefix_empty && last->empty;
    g->sum += w;
    *last = (struct re_atom){ .has = true, .empty = empty, .w = w };
}

/* Length of an interval "{m}", "{m,}", "{m,n}" at s (0 if not one), with
 * the most copies it makes and whether it allows none. */
static size_t re_interval(const char *s, size_t len, double *copies, bool *zero)
{
    size_t j = 1;
    double m = 0, n = -1;
    if (j >= len || !is_digit(s[j]))
        return 0;
    while (j < len && is_digit(s[j]) && m < 1e6)
        m = m * 10 + (s[j++] - '0');
    if (j < len && s[j] == ',') {
        j++;
        n = m + 1;                              /* {m,}: m copies and a star */
        if (j < len && is_digit(s[j]))
            for (n = 0; j < len && is_digit(s[j]) && n < 1e6;)
                n = n * 10 + (s[j++] - '0');
    }
    if (j >= len || s[j] != '}')
        return 0;
    *copies = n > m ? n : m > 0 ? m : 1;
    *zero = m == 0;
    return j + 1;
}

static const char *regex_check(const char *s, size_t len)
{
    struct re_group g[REGEX_MAX_GROUPS + 1];
    struct re_atom saved[REGEX_MAX_GROUPS + 1];
    struct re_atom last = {0};
    int depth = 0;
    g[0] = (struct re_group){ .prefix_empty = true };
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            if (i + 1 < len && s[i + 1] >= '1' && s[i + 1] <= '9')
                return "back-references (\\1) are not supported";
            i++;
            /* GNU's word boundaries match nothing: \b \B \< \> \` \' */
            re_add_atom(&g[depth], &last, i < len && strchr("bB<>`'", s[i]) && s[i], 1);
            break;
        case '[': {                             /* a bracket expression is one atom */
            size_t j = i + 1;
            if (j < len && s[j] == '^')
                j++;
            if (j < len && s[j] == ']')
                j++;
            while (j < len && s[j] != ']') {
                if (s[j] == '[' && j + 1 < len && (s[j + 1] == ':' || s[j + 1] == '.' || s[j + 1] == '=')) {
                    char close = s[j + 1];
                    j += 2;
                    while (j + 1 < len && !(s[j] == close && s[j + 1] == ']'))
                        j++;
                    j += 2;
                    continue;
                }
                j++;
            }
            i = j;
            re_add_atom(&g[depth], &last, false, 1);
            break;
        }
        case '(':
            if (depth == REGEX_MAX_GROUPS)
                return "groups nest too deeply";
            saved[depth] = last;
            g[++depth] = (struct re_group){ .prefix_empty = true };
            last = (struct re_atom){0};
            break;
        case ')': {
            if (depth == 0) {
                re_add_atom(&g[depth], &last, false, 1);
                break;
            }
            const struct re_group *in = &g[depth];
            bool empty = in->alt_empty || (in->prefix_empty && (!last.has || last.empty));
            double w = in->sum;
            last = saved[--depth];
            re_add_atom(&g[depth], &last, empty, w);
            break;
        }
        case '|':
            g[depth].alt_empty = g[depth].alt_empty ||
                                 (g[depth].prefix_empty && (!last.has || last.empty));
            g[depth].prefix_empty = true;
            last = (struct re_atom){0};
            break;
        case '^': case '$':
            re_add_atom(&g[depth], &last, true, 1);
            break;
        case '*': case '?': case '+': case '{': {
            double copies = 1;
            bool zero = c != '+';
            size_t n = 1;
            if (c == '{' && !(n = re_interval(s + i, len - i, &copies, &zero))) {
                re_add_atom(&g[depth], &last, false, 1);   /* a literal '{' */
                break;
            }
            if (c == '+')
                copies = 2;
            i += n - 1;
            if (!last.has)
                break;                          /* nothing to repeat: regcomp decides */
            if (last.empty)
                return "a repetition of something that can already match nothing, like "
                       "(a*)+ or a?*: keep only one of the repetitions";
            g[depth].sum += last.w * (copies - 1) + 1;
            last.w = last.w * copies + 1;
            last.empty = zero;
            break;
        }
        default:
            re_add_atom(&g[depth], &last, false, 1);
            break;
        }
        if (g[depth].sum > REGEX_MAX_WEIGHT || last.w > REGEX_MAX_WEIGHT)
            return REGEX_TOO_BIG;
    }
    double total = 0;
    for (int d = 0; d <= depth; d++)
        total += g[d].sum;
    return total > REGEX_MAX_WEIGHT ? REGEX_TOO_BIG : NULL;
}

static bool cmp_op(const struct parser *p)
{
    return p->tok.kind == T_EQ || p->tok.kind == T_NE || p->tok.kind == T_RE || tok_is(p, "in");
}

/* A compared value must be a value: a bare segment ("ADT", often a string
 * missing its quotes) is refused. */
static int check_operand(struct parser *p, const struct value *v)
{
    if (v->kind == V_PATH && v->path.field == 0) {
        int n = (int)(v->end - v->start);
        fail(p, v->start, "'%.*s' is a segment, not a value: write a string in quotes ('%.*s') "
             "or a field (%.*s-1)", n, p->t + v->start, n, p->t + v->start, n, p->t + v->start);
        return -1;
    }
    return 0;
}

static struct node *parse_compare(struct parser *p)
{
    char fb[48];
    const char *expected = "expected a path (like PID-3), a string in quotes, a number or a function";
    if (p->tok.kind == T_WORD && !is_keyword(p)) {
        if (next_char_is(p, '(')) {
            struct node *n = parse_func(p);
            if (n && cmp_op(p)) {
                fail(p, p->tok.start, "%.*s is true or false: it cannot be compared "
                     "(use it alone, or after 'not')", (int)(n->end - n->start), p->t + n->start);
                node_free(n);
                return NULL;
            }
            return n;
        }
        static const char *const funcs[] = { "exists", "nhs_number_valid", "in_table", "objected" };
        for (size_t i = 0; i < sizeof funcs / sizeof *funcs; i++)
            if (tok_is(p, funcs[i])) {
                fail(p, p->tok.start, "%s is a function: write %s(PATH%s)", funcs[i], funcs[i],
                     i >= 2 ? ", '...'" : "");
                return NULL;
            }
    }
    struct node *n = node_new(p, N_CMP, p->tok.start);
    if (!n)
        return NULL;
    if (parse_value(p, &n->lhs, expected))
        goto bad;
    n->end = n->lhs.end;
    if (!cmp_op(p)) {
        n->op = OP_TRUTHY;
        return n;
    }
    if (check_operand(p, &n->lhs))
        goto bad;
    const struct token op = p->tok;
    n->op = op.kind == T_EQ ? OP_EQ : op.kind == T_NE ? OP_NE : op.kind == T_RE ? OP_RE : OP_IN;
    lex(p);
    if (n->op != OP_IN) {
        char exp[96];
        snprintf(exp, sizeof exp, "expected a path, a string or a number after '%.*s'",
                 (int)op.len, p->t + op.start);
        n->rhs = calloc(1, sizeof *n->rhs);
        if (!n->rhs) {
            fail(p, op.start, "out of memory");
            goto bad;
        }
        n->nrhs = 1;
        if (parse_value(p, &n->rhs[0], exp) || check_operand(p, &n->rhs[0]))
            goto bad;
        n->end = n->rhs[0].end;
        if (n->op == OP_RE) {
            const struct value *r = &n->rhs[0];
            if (r->kind != V_STR) {
                fail(p, r->start, "the right of '~' is a regular expression in quotes, "
                     "like '^A0[1-3]$'");
                goto bad;
            }
            const char *why = regex_check(r->s, r->len);
            if (why) {
                fail(p, r->start, "regular expression %.*s%s: %s",
                     SNIP(r->end - r->start, p->t + r->start), why);
                goto bad;
            }
            int rc = regcomp(&n->re, r->s, REG_EXTENDED | REG_NOSUB);
            if (rc) {
                char msg[160];
                regerror(rc, &n->re, msg, sizeof msg);
                fail(p, r->start, "bad regular expression %.*s%s: %s",
                     SNIP(r->end - r->start, p->t + r->start), msg);
                goto bad;
            }
            n->has_re = true;
        }
        return n;
    }
    if (p->tok.kind != T_LP) {
        if (!p->failed)
            fail(p, p->tok.start, "expected '(' after 'in', like in ('A01','A02'), found %s",
                 found(p, fb, sizeof fb));
        goto bad;
    }
    lex(p);
    for (;;) {
        struct value *r = realloc(n->rhs, (n->nrhs + 1) * sizeof *r);
        if (!r) {
            fail(p, p->tok.start, "out of memory");
            goto bad;
        }
        n->rhs = r;
        if (parse_value(p, &n->rhs[n->nrhs], "expected a value in the list")) {
            n->nrhs++;   /* parse_value leaves it safe to free */
            goto bad;
        }
        n->nrhs++;
        if (check_operand(p, &n->rhs[n->nrhs - 1]))
            goto bad;
        if (p->tok.kind == T_COMMA) {
            lex(p);
            continue;
        }
        if (p->tok.kind == T_RP)
            break;
        if (p->failed)
            goto bad;
        if (quote_inside_string(p))
            goto bad;
        if (p->tok.kind == T_END)
            fail(p, p->tok.start, "expected ')' after the list of values");
        else
            fail(p, p->tok.start, "expected ',' or ')' in the list of values, found %s",
                 found(p, fb, sizeof fb));
        goto bad;
    }
    n->end = p->tok.start + 1;
    lex(p);
    return n;
bad:
    node_free(n);
    return NULL;
}

static struct node *parse_unary(struct parser *p)
{
    struct node *n = NULL;
    if (!tok_is(p, "not") && p->tok.kind != T_LP)
        return parse_compare(p);
    if (++p->depth > EXPR_MAX_DEPTH) {
        fail(p, p->tok.start, "the expression nests more than %d levels deep", EXPR_MAX_DEPTH);
        goto out;
    }
    if (tok_is(p, "not")) {
        size_t start = p->tok.start;
        lex(p);
        struct node *kid = parse_unary(p);
        if (!kid)
            goto out;
        n = node_new(p, N_NOT, start);
        if (!n || add_kid(p, n, kid)) {
            node_free(kid);
            node_free(n);
            n = NULL;
            goto out;
        }
        n->end = p->prev_end;      /* the closing ')' of not (...) too */
    } else if (p->tok.kind == T_LP) {
        size_t open = p->tok.start;
        lex(p);
        n = parse_or(p);
        if (n && p->tok.kind != T_RP) {
            char fb[48];
            if (!p->failed && !quote_inside_string(p))
                fail(p, p->tok.start, "expected ')' to close the '(' at column %zu, found %s",
                     open + 1, found(p, fb, sizeof fb));
            node_free(n);
            n = NULL;
            goto out;
        }
        if (n)
            lex(p);
    }
out:
    p->depth--;
    if (p->failed) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* and/or: a list of operands (kind N_AND or N_OR) unless there is one. */
static struct node *parse_list(struct parser *p, enum nkind kind)
{
    const char *word = kind == N_OR ? "or" : "and";
    struct node *first = kind == N_OR ? parse_list(p, N_AND) : parse_unary(p);
    if (!first || !tok_is(p, word))
        return first;
    struct node *n = node_new(p, kind, first->start);
    if (!n || add_kid(p, n, first)) {
        node_free(first);
        node_free(n);
        return NULL;
    }
    while (tok_is(p, word)) {
        lex(p);
        struct node *kid = kind == N_OR ? parse_list(p, N_AND) : parse_unary(p);
        if (!kid || add_kid(p, n, kid)) {
            node_free(kid);
            node_free(n);
            return NULL;
        }
    }
    n->end = n->kids[n->n - 1]->end;
    return n;
}

static struct node *parse_or(struct parser *p)
{
    return parse_list(p, N_OR);
}

int route_expr_compile(const char *text, const struct route_tables *tables,
                       struct route_expr **out, struct route_error *err)
{
    struct parser p = { .t = text ? text : "", .tables = tables, .err = err };
    p.len = strlen(p.t);
    *out = NULL;
    if (err)
        memset(err, 0, sizeof *err);

    struct route_expr *e = calloc(1, sizeof *e);
    if (!e || !(e->text = strdup(p.t))) {
        free(e);
        fail(&p, 0, "out of memory");
        return -1;
    }
    e->len = p.len;
    e->tables = tables;
    lex(&p);
    if (p.tok.kind == T_END) {
        fail(&p, 0, "the expression is empty: leave `when` out to take every message");
        goto bad;
    }
    e->root = parse_or(&p);
    if (!p.failed && p.tok.kind != T_END) {
        char fb[48];
        const char *kw = shouted_keyword(&p);
        if (quote_inside_string(&p))
            ;
        else if (p.tok.kind == T_RP)
            fail(&p, p.tok.start, "')' without a '(' before it");
        else if (kw)
            fail(&p, p.tok.start, "keywords are lower case: write '%s', not '%.*s'", kw,
                 (int)p.tok.len, p.t + p.tok.start);
        else if (p.tok.kind == T_STR || p.tok.kind == T_NUM || p.tok.kind == T_PATH)
            fail(&p, p.tok.start, "expected an operator (=, !=, ~, in), 'and', 'or' or the end "
                 "of the expression, found %s", found(&p, fb, sizeof fb));
        else
            fail(&p, p.tok.start, "expected 'and', 'or' or the end of the expression, found %s",
                 found(&p, fb, sizeof fb));
    }
    if (p.failed)
        goto bad;
    *out = e;
    return 0;
bad:
    route_expr_free(e);
    return -1;
}

/* ---------------------------------------------------------- evaluation */

struct eval {
    const struct route_expr   *e;
    const struct hl7_msg      *m;      /* NULL on an ITK message */
    const struct itk_envelope *env;    /* NULL on an HL7 v2 message */
    char                       esc;
    struct buf                 scratch[2];   /* decoded values, when escaped */
};

struct val {
    const char        *p;
    size_t             len;
    enum hl7_presence  pr;
};

/* How many values v has: one, except itk.address, which has one per
 * address of the envelope. None reads as one empty value, as an absent
 * path does. */
static size_t count(const struct eval *ev, const struct value *v)
{
    if (v->kind == V_META && v->meta == M_ADDRESS && ev->env && ev->env->n_addresses > 1)
        return ev->env->n_addresses;
    return 1;
}

/* An ODS code when the URI is one ("urn:nhs-uk:addressing:ods:F84003"
 * reads as F84003), else the URI. */
static const char *ods_or_uri(const char *ods, const char *uri)
{
    return ods && *ods ? ods : uri;
}

/* The i-th value of a metadata path on env, NULL when absent. */
static const char *meta_str(const struct itk_envelope *env, enum meta m, size_t i)
{
    if (!env)
        return NULL;
    switch (m) {
    case M_SERVICE:     return env->service;
    case M_INTERACTION: return env->interaction;
    case M_SENDER:      return ods_or_uri(env->sender_ods, env->sender);
    case M_TRACKING_ID: return env->tracking_id;
    case M_PROFILE:     return env->profile;
    case M_ADDRESS:
        if (i >= env->n_addresses || !env->addresses)
            return NULL;
        return ods_or_uri(env->address_ods ? env->address_ods[i] : NULL, env->addresses[i]);
    case M_NHS_NUMBER:
        /* the first CDA payload's record target */
        for (size_t k = 0; env->payloads && k < env->n_payloads; k++)
            if (env->payloads[k].nhs_number)
                return env->payloads[k].nhs_number;
        return NULL;
    }
    return NULL;
}

/* The i-th value of v (see count), decoded into scratch[slot] only when
 * it holds escapes. On an ITK message HL7 paths read as absent, and on an
 * HL7 v2 message the metadata paths do. */
static void get_at(struct eval *ev, const struct value *v, size_t i, int slot, struct val *out)
{
    if (v->kind == V_STR) {
        out->p = v->s;
        out->len = v->len;
        out->pr = v->len ? HL7_VALUE : HL7_EMPTY;
        return;
    }
    out->p = "";
    out->len = 0;
    out->pr = HL7_ABSENT;
    if (v->kind == V_META) {
        const char *s = meta_str(ev->env, v->meta, i);
        if (s) {
            out->p = s;
            out->len = strlen(s);
            out->pr = out->len ? HL7_VALUE : HL7_EMPTY;
        }
        return;
    }
    if (!ev->m)
        return;
    struct hl7_span s;
    out->pr = hl7_get(ev->m, &v->path, &s);
    if (out->pr != HL7_VALUE && out->pr != HL7_NULL)
        return;
    out->p = s.p;
    out->len = s.len;
    if (!memchr(s.p, ev->esc, s.len))
        return;
    struct buf *b = &ev->scratch[slot];
    buf_reset(b);
    if (hl7_get_decoded(ev->m, &v->path, b) == HL7_ABSENT)
        return;      /* out of memory: the raw bytes are the best there is */
    out->p = b->len ? b->p : "";
    out->len = b->len;
}

static void get(struct eval *ev, const struct value *v, int slot, struct val *out)
{
    get_at(ev, v, 0, slot, out);
}

const char *route_itk_value(const struct itk_envelope *env, const char *name, size_t i)
{
    for (size_t k = 0; k < N_META; k++)
        if (strcmp(name, meta_names[k]) == 0)
            return k == M_ADDRESS || i == 0 ? meta_str(env, (enum meta)k, i) : NULL;
    return NULL;
}

static bool same(const struct val *a, const struct val *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* Does any value of a equal any value of b? (Single-valued: a = b.) */
static bool any_same(struct eval *ev, const struct value *a, const struct value *b)
{
    struct val x, y;
    for (size_t i = 0; i < count(ev, a); i++) {
        get_at(ev, a, i, 0, &x);
        for (size_t j = 0; j < count(ev, b); j++) {
            get_at(ev, b, j, 1, &y);
            if (same(&x, &y))
                return true;
        }
    }
    return false;
}

/* regexec wants a NUL-terminated string (REG_STARTEND would do without,
 * but sanitizers and other libcs still read to the NUL), and a value may
 * point into the message: match on a terminated copy. */
static bool regex_matches(struct eval *ev, const regex_t *re, const struct val *v)
{
    struct buf *b = &ev->scratch[1];
    if (v->p != b->p) {
        buf_reset(b);
        if (buf_append(b, v->p, v->len))
            return false;
    }
    return regexec(re, b->len ? b->p : "", 0, NULL, 0) == 0;
}

/* ------------------------------------------------------------ reasons */

static void put_clause(struct buf *why, const struct eval *ev, const struct node *n)
{
    buf_append(why, ev->e->text + n->start, n->end - n->start);
}

static void put_quoted(struct buf *why, const char *p, size_t len)
{
    buf_putc(why, '\'');
    for (size_t i = 0; i < len; i++) {
        if (i == WHY_VALUE_MAX) {
            buf_puts(why, "...");
            break;
        }
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            buf_printf(why, "\\x%02x", c);
        else
            buf_putc(why, (char)c);
    }
    buf_putc(why, '\'');
}

/* "PID-3 is 'x'", "... is empty", "... is absent", naming the path as the
 * expression wrote it. */
static void put_holding(struct buf *why, struct eval *ev, const struct value *v, const struct val *x)
{
    buf_append(why, ev->e->text + v->start, v->end - v->start);
    size_t n = count(ev, v);
    if (n > 1) {        /* itk.address with several addresses */
        struct val y;
        buf_puts(why, " is ");
        for (size_t i = 0; i < n; i++) {
            get_at(ev, v, i, 0, &y);
            if (i)
                buf_puts(why, i + 1 < n ? ", " : " and ");
            put_quoted(why, y.p, y.len);
        }
        return;
    }
    if (x->pr == HL7_ABSENT)
        buf_puts(why, " is absent");
    else if (x->pr == HL7_EMPTY)
        buf_puts(why, " is empty");
    else {
        buf_puts(why, " is ");
        put_quoted(why, x->p, x->len);
    }
}

/* What the message holds at every path of a comparison. */
static void put_holdings(struct buf *why, struct eval *ev, const struct node *n)
{
    int count = 0;
    struct val x;
    if (n->lhs.kind != V_STR) {
        get(ev, &n->lhs, 0, &x);
        put_holding(why, ev, &n->lhs, &x);
        count++;
    }
    for (size_t i = 0; i < n->nrhs; i++) {
        if (n->rhs[i].kind == V_STR)
            continue;
        if (count++)
            buf_puts(why, ", ");
        get(ev, &n->rhs[i], 0, &x);
        put_holding(why, ev, &n->rhs[i], &x);
    }
    if (!count)
        buf_puts(why, n->kind == N_CMP && n->op == OP_TRUTHY ? "it is empty" : "it is false");
}

static bool is_pid3(const struct value *v)
{
    const struct hl7_path *p = &v->path;
    return v->kind == V_PATH && memcmp(p->seg, "PID", 4) == 0 && p->seg_seq <= 1 && p->field == 3 && !p->rep &&
           !p->comp && !p->sub;
}

/* objected()'s number: for PID-3 the NHS number repetition, otherwise the
 * path's value. False when there is none. */
static bool objected_number(struct eval *ev, const struct node *n, const char **p, size_t *len)
{
    if (is_pid3(&n->lhs)) {
        struct hl7_span s;
        if (!ev->m || !hl7_nhs_number(ev->m, &s) || !s.len)
            return false;
        *p = s.p;
        *len = s.len;
        return true;
    }
    struct val x;
    get(ev, &n->lhs, 0, &x);
    *p = x.p;
    *len = x.len;
    return x.len > 0;
}

/* Is any value of in_table()'s path a key of its table? */
static bool any_in_table(struct eval *ev, const struct node *n)
{
    struct val a;
    for (size_t i = 0; i < count(ev, &n->lhs); i++) {
        get_at(ev, &n->lhs, i, 0, &a);
        if (a.len && route_table_get(ev->e->tables, n->table, a.p, a.len) != NULL)
            return true;
    }
    return false;
}

/* Does any value of v match the compare's regular expression? */
static bool any_matches(struct eval *ev, const struct node *n)
{
    struct val a;
    for (size_t i = 0; i < count(ev, &n->lhs); i++) {
        get_at(ev, &n->lhs, i, 0, &a);
        if (regex_matches(ev, &n->re, &a))
            return true;
    }
    return false;
}

static void explain_leaf(struct buf *why, struct eval *ev, const struct node *n)
{
    struct val x;
    switch (n->kind) {
    case N_CMP:
        put_holdings(why, ev, n);
        return;
    case N_EXISTS:
        get(ev, &n->lhs, 0, &x);
        put_holding(why, ev, &n->lhs, &x);
        return;
    case N_IN_TABLE:
        get(ev, &n->lhs, 0, &x);
        put_holding(why, ev, &n->lhs, &x);
        if (count(ev, &n->lhs) > 1)
            buf_printf(why, ", %s a key of %s", any_in_table(ev, n) ? "one" : "none",
                       n->table);
        else if (x.len) {
            bool key = route_table_get(ev->e->tables, n->table, x.p, x.len) != NULL;
            buf_printf(why, ", %s key of %s", key ? "a" : "not a", n->table);
        }
        return;
    case N_OBJECTED: {
        const char *num;
        size_t len;
        if (!objected_number(ev, n, &num, &len)) {
            buf_append(why, ev->e->text + n->lhs.start, n->lhs.end - n->lhs.start);
            buf_puts(why, " holds no NHS number");
            return;
        }
        buf_puts(why, "NHS number ");
        put_quoted(why, num, len);
        buf_printf(why, objections_has(n->reg, num, len, n->table) ? " objected for %s"
                                                                   : " has no objection for %s",
                   n->table);
        return;
    }
    case N_NHS:
        if (is_pid3(&n->lhs)) {
            struct hl7_span s;
            if (!ev->m || !hl7_nhs_number(ev->m, &s)) {
                buf_append(why, ev->e->text + n->lhs.start, n->lhs.end - n->lhs.start);
                buf_puts(why, " holds no NHS number (no repetition with assigning "
                              "authority NHS or identifier type NH)");
                return;
            }
            x.p = s.p;
            x.len = s.len;
            buf_puts(why, "NHS number ");
            put_quoted(why, s.p, s.len);
        } else {
            get(ev, &n->lhs, 0, &x);
            put_holding(why, ev, &n->lhs, &x);
        }
        buf_printf(why, ": %s", hl7_nhs_check_str(hl7_nhs_check(x.p, x.len)));
        return;
    default:
        return;
    }
}

static bool eval(struct eval *ev, const struct node *n, struct buf *why)
{
    struct val a;
    bool r = false;
    switch (n->kind) {
    case N_OR: {
        size_t mark = why ? why->len : 0;
        for (size_t i = 0; i < n->n; i++) {
            if (why && i)
                buf_puts(why, "; ");
            if (eval(ev, n->kids[i], why)) {
                if (why && why->p) {
                    why->len = mark;
                    why->p[mark] = '\0';
                }
                return true;
            }
        }
        return false;
    }
    case N_AND:
        for (size_t i = 0; i < n->n; i++)
            if (!eval(ev, n->kids[i], why))
                return false;
        return true;
    case N_NOT:
        if (!eval(ev, n->kids[0], NULL))
            return true;
        if (why) {
            put_clause(why, ev, n);
            buf_puts(why, ": it is true");
            enum nkind k = n->kids[0]->kind;
            if (k != N_OR && k != N_AND && k != N_NOT) {
                buf_puts(why, " (");
                explain_leaf(why, ev, n->kids[0]);
                buf_putc(why, ')');
            }
        }
        return false;
    case N_CMP:
        /* Against a multi-valued path (itk.address), =, ~, in and a bare
           path are true when any of its values is; != when none is equal. */
        switch (n->op) {
        case OP_TRUTHY:
            for (size_t i = 0; i < count(ev, &n->lhs) && !r; i++) {
                get_at(ev, &n->lhs, i, 0, &a);
                r = a.len > 0;
            }
            break;
        case OP_EQ:
        case OP_NE:
            r = any_same(ev, &n->lhs, &n->rhs[0]) == (n->op == OP_EQ);
            break;
        case OP_RE:
            r = any_matches(ev, n);
            break;
        case OP_IN:
            for (size_t i = 0; i < n->nrhs && !r; i++)
                r = any_same(ev, &n->lhs, &n->rhs[i]);
            break;
        }
        break;
    case N_EXISTS:
        for (size_t i = 0; i < count(ev, &n->lhs) && !r; i++) {
            get_at(ev, &n->lhs, i, 0, &a);
            r = a.pr == HL7_VALUE || a.pr == HL7_NULL;
        }
        break;
    case N_IN_TABLE:
        r = any_in_table(ev, n);
        break;
    case N_OBJECTED: {
        const char *num;
        size_t len;
        r = objected_number(ev, n, &num, &len) && objections_has(n->reg, num, len, n->table);
        break;
    }
    case N_NHS:
        if (is_pid3(&n->lhs)) {
            struct hl7_span s;
            r = ev->m && hl7_nhs_number(ev->m, &s) && hl7_nhs_check(s.p, s.len) == HL7_NHS_VALID;
        } else {
            get(ev, &n->lhs, 0, &a);
            r = hl7_nhs_check(a.p, a.len) == HL7_NHS_VALID;
        }
        break;
    }
    if (!r && why) {
        put_clause(why, ev, n);
        buf_puts(why, ": ");
        explain_leaf(why, ev, n);
    }
    return r;
}

static bool run(struct eval *ev, struct buf *why)
{
    bool r = eval(ev, ev->e->root, why);
    buf_free(&ev->scratch[0]);
    buf_free(&ev->scratch[1]);
    return r;
}

bool route_expr_eval(const struct route_expr *e, const struct hl7_msg *m, struct buf *why)
{
    if (!e || !m)
        return false;
    struct eval ev = { .e = e, .m = m, .esc = hl7_msg_delims(m)->escape };
    return run(&ev, why);
}

bool route_expr_eval_itk(const struct route_expr *e, const struct itk_envelope *env,
                         struct buf *why)
{
    if (!e || !env)
        return false;
    struct eval ev = { .e = e, .env = env };
    return run(&ev, why);
}
