/*
 * transform.c: route transforms (route.h). A route's `transform` list is
 * compiled once (paths parsed, tables checked, keys read), then applied
 * in order to an editable copy of each message; and the JSON form of a
 * message, for routes whose output encoding is json.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "itk.h"
#include "route.h"
#include "route_int.h"

/* ------------------------------------------------------------- errors */

/* libconfig names an @include file as written in the directive; name it
 * as the operator can open it, relative to the main file's directory, as
 * the config loader does. */
static const char *error_file(const config_setting_t *at, char *where, size_t len)
{
    const char *file = config_setting_source_file(at);
    const config_setting_t *root = at->config ? config_root_setting(at->config) : NULL;
    const char *main_file = root ? config_setting_source_file(root) : NULL;
    if (!file || !main_file || strcmp(file, main_file) == 0 || file[0] == '/')
        return file;
    const char *slash = strrchr(main_file, '/');
    if (!slash || snprintf(where, len, "%.*s/%s", (int)(slash - main_file), main_file,
                           file) >= (int)len)
        return file;
    return where;
}

void route_err_set(struct route_error *err, const config_setting_t *at, const char *route,
                   const char *setting, unsigned column, const char *fmt, ...)
{
    if (!err)
        return;
    memset(err, 0, sizeof *err);
    snprintf(err->route, sizeof err->route, "%s", route ? route : "");
    snprintf(err->setting, sizeof err->setting, "%s", setting ? setting : "");
    err->column = column;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);

    size_t n = 0, cap = sizeof err->msg;
    char where[512];
    const char *file = at ? error_file(at, where, sizeof where) : NULL;
    unsigned line = at ? config_setting_source_line(at) : 0;
#define PUT(...) do { if (n < cap) n += (size_t)snprintf(err->msg + n, cap - n, __VA_ARGS__); } while (0)
    if (file && line)
        PUT("%s:%u: ", file, line);
    else if (file)
        PUT("%s: ", file);
    if (err->route[0])
        PUT("route %s: ", err->route);
    if (err->setting[0])
        PUT("setting %s: ", err->setting);
    if (column)
        PUT("column %u: ", column);
    PUT("%s", err->text);
#undef PUT
}

/* ------------------------------------------------------------ compiled */

enum tf_kind {
    TF_SET, TF_COPY, TF_CLEAR, TF_DELETE_SEGMENT, TF_MAP, TF_PSEUDONYMISE,
    TF_REDACT, TF_ENCODING, TF_DEPERSONALISE, TF_CONVERT,
};

/* convert = "...": what a TF_CONVERT step does. */
enum tf_convert { CV_NONE, CV_ITK_TO_MDM, CV_MDM_TO_ITK };

/* What each action is called and which arguments it takes. */
struct tf_spec {
    const char  *action;
    enum tf_kind kind;
    const char  *required;        /* an argument that must be given */
    const char  *optional[9];     /* arguments that may be */
    const char  *example;
};

static const struct tf_spec specs[] = {
    { "set", TF_SET, NULL, { "value", "from" },
      "{ set = \"MSH-5\"; value = \"LCR\"; } or { set = \"PID-2\"; from = \"PID-3.1\"; }" },
    { "copy", TF_COPY, "to", { NULL, NULL }, "{ copy = \"PID-3\"; to = \"PID-2\"; }" },
    { "clear", TF_CLEAR, NULL, { NULL, NULL }, "{ clear = \"PID-13\"; }" },
    { "delete_segment", TF_DELETE_SEGMENT, NULL, { "when", NULL },
      "{ delete_segment = \"NK1\"; }" },
    { "map", TF_MAP, "table", { "default", NULL },
      "{ map = \"PV1-3.4\"; table = \"site-codes\"; }" },
    { "pseudonymise", TF_PSEUDONYMISE, "key_file", { NULL, NULL },
      "{ pseudonymise = \"PID-3.1\"; key_file = \"/etc/hl7broker/research.key\"; }" },
    { "redact", TF_REDACT, NULL, { "with", NULL }, "{ redact = \"PID-5\"; }" },
    { "encoding", TF_ENCODING, NULL, { NULL, NULL }, "{ encoding = \"json\"; }" },
    { "depersonalise", TF_DEPERSONALISE, "key_file", { NULL, NULL },
      "{ depersonalise = \"research-v1\"; key_file = \"/etc/hl7broker/research.key\"; }" },
    /* which arguments go with which conversion is checked in compile_convert */
    { "convert", TF_CONVERT, NULL,
      { "sending_app", "receiving_app", "sender_ods", "service", "profile_id", "interaction",
        "address", "infack_requested", "ack_requested" },
      "{ convert = \"itk-to-mdm\"; } or { convert = \"mdm-to-itk\"; sender_ods = \"R1H\"; }" },
};
#define N_SPECS (sizeof specs / sizeof specs[0])

static const char *const arg_names[] = { "value", "from", "to", "when", "table", "default",
                                         "key_file", "with", "sending_app", "receiving_app",
                                         "sender_ods", "service", "profile_id", "interaction",
                                         "address", "infack_requested", "ack_requested", NULL };

/* Arguments that are true or false rather than strings. */
static bool is_bool_arg(const char *name)
{
    return strcmp(name, "infack_requested") == 0 || strcmp(name, "ack_requested") == 0;
}

/* The depersonalisation profile (README.md, Information governance). */
#define DEPERSONALISE_PROFILE "research-v1"

#define KEY_MIN 32          /* bytes of HMAC key, at least */
#define KEY_MAX 4096

struct tf {
    enum tf_kind       kind;
    char               setting[64];  /* "transform[2].map", for errors */
    struct hl7_path    path;         /* the target (delete_segment: seg only) */
    struct hl7_path    from;         /* set ... from, copy's source */
    bool               has_from;
    char              *text;         /* set's value, redact's with, map's default */
    bool               has_text;
    char              *table;        /* map */
    struct route_expr *when;         /* delete_segment */
    unsigned char     *key;          /* pseudonymise, depersonalise */
    size_t             key_len;
    enum tf_convert    convert;      /* convert */
    char              *cv[7];        /* its string arguments, by enum cv_arg */
    bool               infack, ack;  /* mdm-to-itk's ack flags */
};

/* convert's string arguments, in the order of cv_args. */
enum cv_arg { CA_SENDING_APP, CA_RECEIVING_APP, CA_SENDER_ODS, CA_SERVICE, CA_PROFILE_ID,
              CA_INTERACTION, CA_ADDRESS, N_CA };
static const char *const cv_args[N_CA] = { "sending_app", "receiving_app", "sender_ods",
                                           "service", "profile_id", "interaction", "address" };

struct route_transforms {
    char                       route[64];
    const struct route_tables *tables;
    bool                       json;
    size_t                     n;
    struct tf                 *v;
};

static void tf_free(struct tf *t)
{
    free(t->text);
    free(t->table);
    for (size_t i = 0; i < N_CA; i++)
        free(t->cv[i]);
    if (t->when)
        route_expr_free(t->when);
    if (t->key) {
        OPENSSL_cleanse(t->key, t->key_len);
        free(t->key);
    }
}

void route_transforms_free(struct route_transforms *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        tf_free(&t->v[i]);
    free(t->v);
    free(t);
}

/* ------------------------------------------------------------- compile */

struct cctx {
    const char         *route;
    route_report_fn     report;
    void               *ctx;
    struct route_error *first;
    unsigned            errors;
};

static void report(struct cctx *c, const config_setting_t *at, const char *setting,
                   unsigned column, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct cctx *c, const config_setting_t *at, const char *setting,
                   unsigned column, const char *fmt, ...)
{
    struct route_error e;
    char text[sizeof e.text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    route_err_set(&e, at, c->route, setting, column, "%s", text);
    if (c->errors++ == 0 && c->first)
        *c->first = e;
    if (c->report)
        c->report(c->ctx, &e);
}

static const struct tf_spec *spec_for(const char *name)
{
    for (size_t i = 0; i < N_SPECS; i++)
        if (strcmp(specs[i].action, name) == 0)
            return &specs[i];
    return NULL;
}

static bool is_arg(const char *name)
{
    for (size_t i = 0; arg_names[i]; i++)
        if (strcmp(arg_names[i], name) == 0)
            return true;
    return false;
}

static bool spec_takes(const struct tf_spec *s, const char *arg)
{
    if (s->required && strcmp(s->required, arg) == 0)
        return true;
    for (size_t i = 0; i < sizeof s->optional / sizeof *s->optional && s->optional[i]; i++)
        if (strcmp(s->optional[i], arg) == 0)
            return true;
    return false;
}

static void spec_args(const struct tf_spec *s, char *out, size_t len)
{
    const char *a[1 + sizeof s->optional / sizeof *s->optional] = { s->required };
    for (size_t i = 0; i < sizeof s->optional / sizeof *s->optional; i++)
        a[i + 1] = s->optional[i];
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof a / sizeof *a; i++) {
        if (!a[i])
            continue;
        if (n < len)
            n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", a[i]);
    }
    if (!n)
        snprintf(out, len, "nothing else");
}

static bool is_header_seg(const char *seg)
{
    return strncmp(seg, "MSH", 3) == 0 || strncmp(seg, "FHS", 3) == 0
        || strncmp(seg, "BHS", 3) == 0;
}

static void member_setting(char *out, size_t len, unsigned i, const char *name)
{
    snprintf(out, len, "transform[%u].%s", i, name);
}

/* The codec's "bad path 'X' at column N: what" without the column, which
 * the error carries on its own. */
static void path_text(const struct hl7_error *he, char *out, size_t len)
{
    const char *at = strstr(he->text, " at column ");
    const char *rest = at ? strstr(at, ": ") : NULL;
    if (at && rest)
        snprintf(out, len, "%.*s%s", (int)(at - he->text), he->text, rest);
    else
        snprintf(out, len, "%s", he->text);
}

/* Parse the path held by member m. target: the transform writes there. */
static int compile_path(struct cctx *c, const config_setting_t *m, unsigned i,
                        struct hl7_path *p, bool target)
{
    char setting[64], text[256];
    const char *s = config_setting_get_string(m);
    struct hl7_error he = { 0 };
    member_setting(setting, sizeof setting, i, config_setting_name(m));
    if (hl7_path_parse(s, strlen(s), p, &he)) {
        path_text(&he, text, sizeof text);
        report(c, m, setting, (unsigned)he.offset + 1, "%s", text);
        return -1;
    }
    if (!p->field) {
        report(c, m, setting, 0, "'%s' is a whole segment: give a field, like %.3s-3",
               s, p->seg);
        return -1;
    }
    if (target && is_header_seg(p->seg) && p->field <= 2) {
        report(c, m, setting, 0, "%.3s-%u holds the encoding characters and cannot be changed",
               p->seg, p->field);
        return -1;
    }
    return 0;
}

static int read_key(struct cctx *c, const config_setting_t *m, unsigned i, struct tf *t)
{
    char setting[64];
    const char *file = config_setting_get_string(m);
    member_setting(setting, sizeof setting, i, "key_file");
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        report(c, m, setting, 0, "cannot read the key file %s: %s", file, strerror(errno));
        return -1;
    }
    int rc = -1;
    struct stat st;
    unsigned char *key = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        report(c, m, setting, 0, "the key file %s is not a regular file", file);
        goto out;
    }
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        report(c, m, setting, 0, "the key file %s can be read or written by every user "
               "(mode %04o): make it private with chmod 600", file,
               (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size > KEY_MAX) {
        report(c, m, setting, 0, "the key file %s is larger than %d bytes: a key file "
               "holds one key", file, KEY_MAX);
        goto out;
    }
    key = malloc(KEY_MAX + 1);
    if (!key) {
        report(c, m, setting, 0, "out of memory");
        goto out;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, key + n, KEY_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            report(c, m, setting, 0, "cannot read the key file %s: %s", file, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > KEY_MAX) {
            report(c, m, setting, 0, "the key file %s is larger than %d bytes: a key file "
                   "holds one key", file, KEY_MAX);
            goto out;
        }
    }
    /* Trailing white space is not part of the key: editors add a line end. */
    while (n && (key[n - 1] == '\n' || key[n - 1] == '\r' || key[n - 1] == ' '
                 || key[n - 1] == '\t'))
        n--;
    if (n == 0) {
        report(c, m, setting, 0, "the key file %s is empty: put a secret in it, such as "
               "the output of `openssl rand -hex 32`", file);
        goto out;
    }
    if (n < KEY_MIN) {
        report(c, m, setting, 0, "the key in %s is %zu bytes: it must be at least %d "
               "(`openssl rand -hex 32` makes a good one)", file, n, KEY_MIN);
        goto out;
    }
    t->key = key;
    t->key_len = n;
    key = NULL;
    rc = 0;
out:
    if (key) {
        OPENSSL_cleanse(key, KEY_MAX + 1);
        free(key);
    }
    close(fd);
    return rc;
}

static bool valid_seg_name(const char *s)
{
    if (strlen(s) != 3)
        return false;
    for (int i = 0; i < 3; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* An ODS organisation code: 1 to 16 letters and digits ("R1H", "F84003"). */
static bool valid_ods(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* A URI as the envelope carries one: a scheme and a colon, no white space
 * or control bytes, at most 1024 bytes. */
static bool valid_uri(const char *s)
{
    size_t n = strlen(s);
    const char *colon = strchr(s, ':');
    if (n == 0 || n > 1024 || !colon || colon == s)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* An HL7 v2 name for MSH-3/MSH-5: no delimiters or control bytes. */
static bool valid_app(const char *s)
{
    size_t n = strlen(s);
    if (n > 227)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || strchr("|^~\\&", s[i]))
            return false;
    return true;
}

/* { convert = "itk-to-mdm" | "mdm-to-itk"; ... } at transform[i] of
 * n_steps: which arguments go with which, where the step may stand, and
 * the values. */
static void compile_convert(struct cctx *c, const config_setting_t *g,
                            const config_setting_t *action, unsigned i, unsigned n_steps,
                            struct tf *t)
{
    char setting[64];
    const char *av = config_setting_get_string(action);
    member_setting(setting, sizeof setting, i, "convert");
    bool to_mdm = strcmp(av, "itk-to-mdm") == 0;
    if (!to_mdm && strcmp(av, "mdm-to-itk") != 0) {
        report(c, action, setting, 0, "'%s' is not a conversion: \"itk-to-mdm\" (an ITK "
               "message to an HL7 v2 MDM^T02, the first transform) or \"mdm-to-itk\" (an "
               "HL7 v2 MDM^T02/T04 to an ITK envelope, the last transform)", av);
        return;
    }
    if (to_mdm && i != 0)
        report(c, action, setting, 0, "itk-to-mdm turns the ITK message the route receives "
               "into an MDM^T02, so it must be the first transform (it is transform[%u])", i);
    if (!to_mdm && i + 1 != n_steps)
        report(c, action, setting, 0, "mdm-to-itk writes the ITK envelope the destinations "
               "receive, so it must be the last transform (%u follow%s it)", n_steps - i - 1,
               n_steps - i - 1 == 1 ? "s" : "");
    t->convert = to_mdm ? CV_ITK_TO_MDM : CV_MDM_TO_ITK;
    const char *takes = to_mdm
        ? "itk-to-mdm takes sending_app and receiving_app"
        : "mdm-to-itk takes sender_ods, service, profile_id, interaction, address, "
          "infack_requested and ack_requested";
    int n = config_setting_length(g);
    for (int k = 0; k < n; k++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)k);
        const char *name = config_setting_name(m);
        if (strcmp(name, "convert") == 0 || !is_arg(name))
            continue;
        bool mdm_arg = strcmp(name, "sending_app") == 0 || strcmp(name, "receiving_app") == 0;
        bool ok = to_mdm ? mdm_arg : !mdm_arg && spec_takes(spec_for("convert"), name);
        member_setting(setting, sizeof setting, i, name);
        if (!ok) {
            report(c, m, setting, 0, "'%s' does not go with convert = \"%s\" (%s)", name, av,
                   takes);
            continue;
        }
        if (is_bool_arg(name)) {
            if (config_setting_type(m) == CONFIG_TYPE_BOOL) {
                bool v = config_setting_get_bool(m);
                if (strcmp(name, "infack_requested") == 0)
                    t->infack = v;
                else
                    t->ack = v;
            }
            continue;
        }
        if (config_setting_type(m) != CONFIG_TYPE_STRING)
            continue;           /* already reported */
        const char *v = config_setting_get_string(m);
        size_t a = 0;
        while (a < N_CA && strcmp(cv_args[a], name) != 0)
            a++;
        if (a == N_CA)
            continue;
        const char *bad = NULL;
        switch ((enum cv_arg)a) {
        case CA_SENDING_APP:
        case CA_RECEIVING_APP:
            if (!valid_app(v))
                bad = "an HL7 v2 application name, without the delimiters | ^ ~ \\ & "
                      "or control characters";
            break;
        case CA_SENDER_ODS:
            if (!valid_ods(v))
                bad = "an ODS organisation code: 1 to 16 letters and digits, like \"R1H\"";
            break;
        case CA_ADDRESS:
            if (!valid_ods(v) && !valid_uri(v))
                bad = "an ODS code (\"F84003\") or a URI (\"urn:nhs-uk:addressing:ods:"
                      "F84003\")";
            break;
        case CA_SERVICE:
        case CA_PROFILE_ID:
        case CA_INTERACTION:
            if (!valid_uri(v))
                bad = "a URI, like \"urn:nhs-itk:services:201005:SendCDADocument-v2-0\"";
            break;
        case N_CA:
            break;
        }
        if (bad) {
            report(c, m, setting, 0, "'%s' is not %s", v, bad);
            continue;
        }
        if (!(t->cv[a] = strdup(v)))
            report(c, m, setting, 0, "out of memory");
    }
    if (!to_mdm && !config_setting_get_member(g, "sender_ods")) {
        member_setting(setting, sizeof setting, i, "convert");
        report(c, action, setting, 0, "mdm-to-itk needs sender_ods, the ODS code the envelope "
               "is sent from, as in { convert = \"mdm-to-itk\"; sender_ods = \"R1H\"; }");
    }
}

/* Compile group g (transform[i]) into t. Returns 0, or -1 when an error
 * was reported. */
static int compile_one(struct cctx *c, const config_setting_t *g, unsigned i, unsigned n_steps,
                       const struct route_tables *tables, struct tf *t,
                       int *encoding_at, bool *json)
{
    char setting[64];
    const config_setting_t *action = NULL;
    const struct tf_spec *spec = NULL;
    unsigned before = c->errors;

    snprintf(setting, sizeof setting, "transform[%u]", i);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        report(c, g, setting, 0, "must be a group such as { set = \"MSH-5\"; value = \"X\"; }");
        return -1;
    }
    int n = config_setting_length(g);
    for (int k = 0; k < n; k++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)k);
        const char *name = config_setting_name(m);
        const struct tf_spec *s = spec_for(name);
        member_setting(setting, sizeof setting, i, name);
        if (s) {
            if (action)
                report(c, m, setting, 0, "a second action in one transform (the first is "
                       "%s): give each its own group, like %s", spec->action, s->example);
            else {
                action = m;
                spec = s;
            }
        } else if (!is_arg(name)) {
            report(c, m, setting, 0, "unknown key '%s': a transform is one of set, copy, "
                   "clear, delete_segment, map, pseudonymise, redact, encoding, convert, with "
                   "its arguments", name);
            continue;
        }
        if (is_bool_arg(name)) {
            if (config_setting_type(m) != CONFIG_TYPE_BOOL)
                report(c, m, setting, 0, "must be true or false (without quotes)");
        } else if (config_setting_type(m) != CONFIG_TYPE_STRING)
            report(c, m, setting, 0, "must be a string, in double quotes");
    }
    if (!action) {
        snprintf(setting, sizeof setting, "transform[%u]", i);
        report(c, g, setting, 0, "no action: give one of set, copy, clear, delete_segment, "
               "map, pseudonymise, redact, encoding, convert, like { set = \"MSH-5\"; value = \"X\"; }");
        return -1;
    }
    char takes[64];
    spec_args(spec, takes, sizeof takes);
    for (int k = 0; k < n; k++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)k);
        const char *name = config_setting_name(m);
        if (is_arg(name) && spec->kind != TF_CONVERT && !spec_takes(spec, name)) {
            member_setting(setting, sizeof setting, i, name);
            report(c, m, setting, 0, "'%s' does not go with %s (%s takes %s), as in %s",
                   name, spec->action, spec->action, takes, spec->example);
        }
    }
    member_setting(setting, sizeof setting, i, spec->action);
    if (spec->required && !config_setting_get_member(g, spec->required))
        report(c, action, setting, 0, "needs '%s', as in %s", spec->required, spec->example);
    const config_setting_t *value = config_setting_get_member(g, "value");
    const config_setting_t *from = config_setting_get_member(g, "from");
    if (spec->kind == TF_SET && !value == !from)
        report(c, action, setting, 0, value ? "give value or from, not both"
               : "needs value (the text to set) or from (a path to take it from), as in %s",
               spec->example);
    if (c->errors != before)
        return -1;

    /* The keys are right; now their values. */
    const char *av = config_setting_get_string(action);
    t->kind = spec->kind;
    snprintf(t->setting, sizeof t->setting, "%s", setting);
    switch (spec->kind) {
    case TF_SET:
        if (compile_path(c, action, i, &t->path, true))
            break;
        if (value) {
            t->has_text = true;
            t->text = strdup(config_setting_get_string(value));
        } else if (!compile_path(c, from, i, &t->from, false)) {
            t->has_from = true;
        }
        break;
    case TF_COPY:
        if (!compile_path(c, action, i, &t->from, false))
            t->has_from = true;
        compile_path(c, config_setting_get_member(g, "to"), i, &t->path, true);
        break;
    case TF_CLEAR:
    case TF_PSEUDONYMISE:
    case TF_REDACT:
    case TF_MAP:
        compile_path(c, action, i, &t->path, true);
        break;
    case TF_DELETE_SEGMENT:
        if (!valid_seg_name(av))
            report(c, action, setting, 0, "'%s' is not a segment id: three capital letters "
                   "or digits, like NK1", av);
        else if (is_header_seg(av))
            report(c, action, setting, 0, "%s is a header segment and cannot be deleted", av);
        else
            memcpy(t->path.seg, av, 4);
        break;
    case TF_CONVERT:
        compile_convert(c, g, action, i, n_steps, t);
        break;
    case TF_DEPERSONALISE:
        if (strcmp(av, DEPERSONALISE_PROFILE) != 0)
            report(c, action, setting, 0, "'%s' is not a depersonalisation profile: the one "
                   "there is is \"" DEPERSONALISE_PROFILE "\"", av);
        break;
    case TF_ENCODING:
        if (strcmp(av, "er7") != 0 && strcmp(av, "json") != 0)
            report(c, action, setting, 0, "'%s' is not an encoding: \"er7\" or \"json\"", av);
        else if (*encoding_at >= 0)
            report(c, action, setting, 0, "the encoding is already given by transform[%d]",
                   *encoding_at);
        else {
            *encoding_at = (int)i;
            *json = strcmp(av, "json") == 0;
        }
        break;
    }
    const config_setting_t *m;
    if (spec->kind == TF_REDACT && (m = config_setting_get_member(g, "with"))) {
        t->has_text = true;
        t->text = strdup(config_setting_get_string(m));
    }
    if (spec->kind == TF_MAP) {
        m = config_setting_get_member(g, "table");
        const char *name = config_setting_get_string(m);
        member_setting(setting, sizeof setting, i, "table");
        if (!tables || !route_table_exists(tables, name))
            report(c, m, setting, 0, "no table is named '%s' (tables are declared in the "
                   "tables list)", name);
        else
            t->table = strdup(name);
        if ((m = config_setting_get_member(g, "default"))) {
            t->has_text = true;
            t->text = strdup(config_setting_get_string(m));
        }
    }
    if (spec->kind == TF_PSEUDONYMISE || spec->kind == TF_DEPERSONALISE)
        read_key(c, config_setting_get_member(g, "key_file"), i, t);
    if (spec->kind == TF_DELETE_SEGMENT && (m = config_setting_get_member(g, "when"))) {
        struct route_error ee = { 0 };
        member_setting(setting, sizeof setting, i, "when");
        if (route_expr_compile(config_setting_get_string(m), tables, &t->when, &ee))
            report(c, m, setting, ee.column, "%s", ee.text[0] ? ee.text : ee.msg);
    }
    if (c->errors == before && ((t->has_text && !t->text) || (spec->kind == TF_MAP && !t->table)))
        report(c, action, setting, 0, "out of memory");
    return c->errors != before ? -1 : 0;
}

int route_transforms_compile_all(const struct config_route *r,
                                 const struct route_tables *tables,
                                 struct route_transforms **out,
                                 route_report_fn report_fn, void *ctx,
                                 struct route_error *first)
{
    struct cctx c = { .route = r->name ? r->name : "", .report = report_fn, .ctx = ctx,
                      .first = first };
    *out = NULL;
    struct route_transforms *t = calloc(1, sizeof *t);
    unsigned n = r->transform ? (unsigned)config_setting_length(r->transform) : 0;
    if (!t || (n && !(t->v = calloc(n, sizeof *t->v)))) {
        report(&c, r->setting, NULL, 0, "out of memory");
        route_transforms_free(t);
        return -1;
    }
    snprintf(t->route, sizeof t->route, "%s", c.route);
    t->tables = tables;
    int encoding_at = -1;
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(r->transform, i);
        compile_one(&c, g, i, n, tables, &t->v[t->n], &encoding_at, &t->json);
        t->n++;      /* kept even when wrong: freed with the rest */
    }
    if (!c.errors && n && t->v[n - 1].convert == CV_MDM_TO_ITK && encoding_at >= 0) {
        const config_setting_t *g = config_setting_get_elem(r->transform, (unsigned)encoding_at);
        report(&c, config_setting_get_member(g, "encoding"), t->v[encoding_at].setting, 0,
               "an encoding does not go with mdm-to-itk (transform[%u]), which writes an ITK "
               "envelope: leave the encoding out", n - 1);
    }
    if (c.errors) {
        route_transforms_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int route_transforms_compile(const struct config_route *r, const struct route_tables *tables,
                             struct route_transforms **out, struct route_error *err)
{
    struct route_error scratch;
    return route_transforms_compile_all(r, tables, out, NULL, NULL, err ? err : &scratch);
}

/* --------------------------------------------------------------- apply */

struct actx {
    const struct route_transforms *t;
    const struct tf               *tf;
    struct route_error            *err;
};

static int fail(struct actx *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct actx *a, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    route_err_set(a->err, NULL, a->t->route, a->tf->setting, 0, "%s", text);
    /* At run time there is no file and line, and "setting" would mislead:
       the message is what was wrong. */
    if (a->err)
        snprintf(a->err->msg, sizeof a->err->msg, "route %s: %s: %s", a->t->route,
                 a->tf->setting, text);
    return -1;
}

static int fail_codec(struct actx *a, const struct hl7_path *p, const struct hl7_error *he)
{
    struct buf pb = { 0 };
    hl7_path_format(p, &pb);
    int rc = fail(a, "%s: %s", pb.p ? pb.p : "?", he->text);
    buf_free(&pb);
    return rc;
}

/* A value quoted for an error message: control bytes as \xHH, cut short. */
static void quote(const char *p, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            o += (size_t)snprintf(out + o, len - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
        if (i + 1 < n && o + 8 >= len) {
            o += (size_t)snprintf(out + o, len - o, "...");
            break;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

/* Every place a value transform acts on: each segment of the name unless
 * the path gives [n], and for a component path (or map, pseudonymise and
 * a non-empty redact of a field) each repetition unless it gives one. */
typedef int (*place_fn)(struct actx *a, struct hl7_msg *m, const struct hl7_path *p);

static int each_place(struct actx *a, struct hl7_msg *m, bool per_rep, place_fn fn)
{
    const struct hl7_path *path = &a->tf->path;
    char name[4];
    memcpy(name, path->seg, 3);
    name[3] = '\0';
    size_t nseg = path->seg_seq ? 1 : hl7_segment_count(m, name);
    for (size_t s = 1; s <= nseg; s++) {
        struct hl7_path p = *path;
        if (!path->seg_seq)
            p.seg_seq = (unsigned)s;
        if (path->rep || (!path->comp && !per_rep)) {
            if (fn(a, m, &p))
                return -1;
            continue;
        }
        struct hl7_path fp = { .field = p.field, .seg_seq = p.seg_seq };
        memcpy(fp.seg, p.seg, 4);
        size_t nrep = hl7_count(m, &fp);
        for (size_t r = 1; r <= nrep; r++) {
            p.rep = (unsigned)r;
            if (fn(a, m, &p))
                return -1;
        }
    }
    return 0;
}

static int place_clear(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct hl7_error he = { 0 };
    return hl7_clear(m, p, &he) ? fail_codec(a, p, &he) : 0;
}

static int place_redact(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct hl7_span v;
    if (hl7_get(m, p, &v) != HL7_VALUE)
        return 0;       /* nothing there to hide */
    struct hl7_error he = { 0 };
    const char *with = a->tf->text ? a->tf->text : "";
    int rc = *with ? hl7_set(m, p, with, strlen(with), &he) : hl7_clear(m, p, &he);
    return rc ? fail_codec(a, p, &he) : 0;
}

static int place_map(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct buf v = { 0 };
    int rc = 0;
    if (hl7_get_decoded(m, p, &v) != HL7_VALUE)
        goto out;
    const char *to = route_table_get(a->t->tables, a->tf->table, v.p, v.len);
    if (!to && !a->tf->has_text) {
        char q[96];
        quote(v.p, v.len, q, sizeof q);
        rc = fail(a, "no entry for '%s' in table '%s', and no default", q, a->tf->table);
        goto out;
    }
    if (!to)
        to = a->tf->text;
    struct hl7_error he = { 0 };
    if (hl7_set(m, p, to, strlen(to), &he))
        rc = fail_codec(a, p, &he);
out:
    buf_free(&v);
    return rc;
}

static int place_pseudonymise(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct buf v = { 0 };
    int rc = 0;
    if (hl7_get_decoded(m, p, &v) != HL7_VALUE)
        goto out;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!HMAC(EVP_sha256(), a->tf->key, (int)a->tf->key_len,
              (const unsigned char *)v.p, v.len, md, &mdlen)) {
        rc = fail(a, "HMAC-SHA-256 failed");
        goto out;
    }
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned k = 0; k < mdlen; k++)
        snprintf(hex + 2 * k, 3, "%02x", md[k]);
    struct hl7_error he = { 0 };
    if (hl7_set(m, p, hex, 2 * (size_t)mdlen, &he))
        rc = fail_codec(a, p, &he);
    OPENSSL_cleanse(hex, sizeof hex);
out:
    if (v.p)
        OPENSSL_cleanse(v.p, v.len);   /* the identifier, in the clear */
    buf_free(&v);
    return rc;
}

static int apply_set(struct actx *a, struct hl7_msg *m)
{
    const struct tf *t = a->tf;
    struct buf v = { 0 };
    struct hl7_error he = { 0 };
    int rc = 0;
    if (t->has_text) {
        if (hl7_set(m, &t->path, t->text, strlen(t->text), &he))
            rc = fail_codec(a, &t->path, &he);
    } else {
        enum hl7_presence pr = hl7_get_decoded(m, &t->from, &v);
        if ((pr == HL7_VALUE || pr == HL7_NULL)
            && hl7_set(m, &t->path, v.p ? v.p : "", v.len, &he))
            rc = fail_codec(a, &t->path, &he);
    }
    buf_free(&v);
    return rc;
}

static int apply_copy(struct actx *a, struct hl7_msg *m)
{
    const struct tf *t = a->tf;
    struct hl7_span s;
    struct hl7_error he = { 0 };
    enum hl7_presence pr = hl7_get(m, &t->from, &s);
    if (pr == HL7_ABSENT || pr == HL7_EMPTY)
        return hl7_clear(m, &t->path, &he) ? fail_codec(a, &t->path, &he) : 0;
    /* The span may live in the segment the edit replaces: copy it first. */
    struct buf v = { 0 };
    if (buf_append(&v, s.p, s.len))
        return fail(a, "out of memory");
    int rc = 0;
    if (hl7_set_raw(m, &t->path, v.p, v.len, &he))
        rc = fail_codec(a, &t->path, &he);
    buf_free(&v);
    return rc;
}

/* Does the k-th (0-based) segment named name match the transform's when?
 * Its paths then refer to that segment: it is evaluated on a copy of the
 * message holding no other segment of that name. */
static int segment_matches(struct actx *a, const struct hl7_msg *m, const char *name,
                           size_t k, bool *match)
{
    struct buf ser = { 0 };
    struct hl7_msg *v = NULL;
    size_t *idx = NULL, n = 0;
    int rc = -1;
    if (hl7_serialise(m, HL7_SER_CR, &ser)
        || hl7_parse(ser.p, ser.len, &(struct hl7_parse_opts){ .max_bytes = HL7_HARD_MAX },
                     &v, NULL)
        || !(idx = malloc((hl7_segment_count(v, name) + 1) * sizeof *idx))) {
        fail(a, "cannot copy the message to evaluate when");
        goto out;
    }
    char nm[4];
    for (size_t i = 1; hl7_segment_at(v, i, nm, NULL); i++)
        if (strncmp(nm, name, 3) == 0)
            idx[n++] = i;
    for (size_t j = n; j-- > 0;)          /* from the end: indices stay put */
        if (j != k && hl7_segment_delete(v, idx[j], NULL)) {
            fail(a, "cannot copy the message to evaluate when");
            goto out;
        }
    *match = route_expr_eval(a->tf->when, v, NULL);
    rc = 0;
out:
    free(idx);
    hl7_free(v);
    buf_free(&ser);
    return rc;
}

static int apply_delete(struct actx *a, struct hl7_msg *m)
{
    const char *name = a->tf->path.seg;
    size_t nseg = hl7_segment_count(m, NULL);
    size_t of_name = hl7_segment_count(m, name);
    /* From the last backwards, so indices before i stay put. */
    for (size_t i = nseg; i-- > 1;) {
        char nm[4];
        hl7_segment_at(m, i, nm, NULL);
        if (strncmp(nm, name, 3) != 0)
            continue;
        of_name--;                 /* i is now the of_name-th (0-based) */
        bool match = true;
        if (a->tf->when && segment_matches(a, m, name, of_name, &match))
            return -1;
        struct hl7_error he = { 0 };
        if (match && hl7_segment_delete(m, i, &he))
            return fail(a, "%s", he.text);
    }
    return 0;
}

/* ------------------------------------------------------ depersonalise */

/* Run fn over every place of path (as each_place does for a transform's
 * own path), with the running transform's key and setting. */
static int dp_each(struct actx *a, struct hl7_msg *m, const char *path, bool per_rep, place_fn fn)
{
    struct tf t = *a->tf;
    struct hl7_error he = { 0 };
    if (hl7_path_parse(path, strlen(path), &t.path, &he))
        return fail(a, "internal: bad path %s", path);
    t.text = NULL;
    t.has_text = false;
    const struct tf *save = a->tf;
    a->tf = &t;
    int rc = each_place(a, m, per_rep, fn);
    a->tf = save;
    return rc;
}

/* A date (YYYYMMDD...) cut to its year. */
static int place_year(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct buf v = { 0 };
    int rc = 0;
    if (hl7_get_decoded(m, p, &v) == HL7_VALUE && v.len > 4) {
        struct hl7_error he = { 0 };
        if (hl7_set(m, p, v.p, 4, &he))
            rc = fail_codec(a, p, &he);
    }
    buf_free(&v);
    return rc;
}

/* A UK postcode cut to its outward code (the district): the part before
 * the space ("E1 6AN" -> "E1"); written without the space, all but the
 * last three characters ("E16AN" -> "E1"). Shorter values (4 characters
 * or fewer, without a space) are already no more than a district. */
static int place_district(struct actx *a, struct hl7_msg *m, const struct hl7_path *p)
{
    struct buf v = { 0 };
    int rc = 0;
    if (hl7_get_decoded(m, p, &v) == HL7_VALUE) {
        size_t b = 0, e = v.len;
        while (b < e && v.p[b] == ' ')
            b++;
        while (e > b && v.p[e - 1] == ' ')
            e--;
        const char *sp = memchr(v.p + b, ' ', e - b);
        size_t n = sp ? (size_t)(sp - (v.p + b)) : (e - b > 4 ? e - b - 3 : e - b);
        struct hl7_error he = { 0 };
        if (n != v.len && hl7_set(m, p, v.p + b, n, &he))
            rc = fail_codec(a, p, &he);
    }
    buf_free(&v);
    return rc;
}

/* OBX-5 of the OBX segments whose value type (OBX-2) is free text or an
 * embedded document: TX, FT, ST, ED. */
static int dp_obx_text(struct actx *a, struct hl7_msg *m)
{
    size_t n = hl7_segment_count(m, "OBX");
    for (size_t k = 1; k <= n; k++) {
        struct hl7_path t2 = { .seg = "OBX", .seg_seq = (unsigned)k, .field = 2 };
        struct hl7_path v5 = { .seg = "OBX", .seg_seq = (unsigned)k, .field = 5 };
        struct buf ty = { 0 };
        bool text = false;
        if (hl7_get_decoded(m, &t2, &ty) == HL7_VALUE && ty.len == 2)
            text = !memcmp(ty.p, "TX", 2) || !memcmp(ty.p, "FT", 2) || !memcmp(ty.p, "ST", 2) ||
                   !memcmp(ty.p, "ED", 2);
        buf_free(&ty);
        if (text && place_clear(a, m, &v5))
            return -1;
    }
    return 0;
}

static int apply_depersonalise(struct actx *a, struct hl7_msg *m)
{
    /* Identifiers: pseudonyms (HMAC-SHA-256 under the key), so one
       patient's records still link up. */
    static const char *const pseudo[] = { "PID-2.1", "PID-3.1", "PID-4.1", "PID-18.1",
                                          "PV1-19.1", "MRG-1.1", "MRG-2.1", "MRG-3.1" };
    /* Gone: names, addresses, phones, other identifying fields, free text. */
    static const char *const gone[] = {
        "PID-5", "PID-6", "PID-9", "PID-13", "PID-14", "PID-19", "PID-20", "PID-21",
        "NK1-2", "NK1-4", "NK1-5", "NK1-6", "NK1-30", "NK1-31", "NK1-32", "NTE-3",
        "MRG-7",
    };
    /* PID-11: only the district, country and address type are left. */
    static const char *const addr[] = { "PID-11.1", "PID-11.2", "PID-11.3", "PID-11.4",
                                        "PID-11.8", "PID-11.9", "PID-11.10", "PID-11.11",
                                        "PID-11.12", "PID-11.13", "PID-11.14" };
    for (size_t i = 0; i < sizeof pseudo / sizeof *pseudo; i++)
        if (dp_each(a, m, pseudo[i], true, place_pseudonymise))
            return -1;
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
        if (dp_each(a, m, gone[i], false, place_clear))
            return -1;
    for (size_t i = 0; i < sizeof addr / sizeof *addr; i++)
        if (dp_each(a, m, addr[i], true, place_clear))
            return -1;
    if (dp_each(a, m, "PID-11.5", true, place_district) ||
        dp_each(a, m, "PID-7.1", true, place_year) || dp_each(a, m, "PID-29.1", true, place_year) ||
        dp_obx_text(a, m))
        return -1;
    /* Say what was done: a ZDP segment at the end naming the profile. */
    char zdp[64];
    int n = snprintf(zdp, sizeof zdp, "ZDP%c" DEPERSONALISE_PROFILE "%cHMAC-SHA-256",
                     hl7_msg_delims(m)->field, hl7_msg_delims(m)->field);
    struct hl7_error he = { 0 };
    if (hl7_segment_insert(m, hl7_segment_count(m, NULL), zdp, (size_t)n, &he))
        return fail(a, "%s", he.text);
    return 0;
}

/* mdm-to-itk: m as a DistributionEnvelope into out. */
static int apply_mdm_to_itk(struct actx *a, const struct hl7_msg *m, struct buf *out)
{
    const struct tf *tf = a->tf;
    const struct mdm_itk_opts o = {
        .service = tf->cv[CA_SERVICE], .profile_id = tf->cv[CA_PROFILE_ID],
        .interaction = tf->cv[CA_INTERACTION], .sender_ods = tf->cv[CA_SENDER_ODS],
        .address = tf->cv[CA_ADDRESS], .infack_requested = tf->infack,
        .ack_requested = tf->ack,
    };
    char why[256] = "";
    size_t before = out->len;
    if (mdm_to_itk(m, &o, out, why, sizeof why)) {
        out->len = before;
        if (out->p)
            out->p[before] = '\0';
        return fail(a, "mdm-to-itk: %s", why[0] ? why : "cannot make the ITK envelope");
    }
    return 0;
}

/* Steps from..n on m, then the output into out. */
static int apply_from(const struct route_transforms *t, size_t from, struct hl7_msg *m,
                      struct buf *out, struct route_error *err)
{
    struct actx a = { .t = t, .err = err };
    for (size_t i = from; i < t->n; i++) {
        const struct tf *tf = a.tf = &t->v[i];
        int rc = 0;
        bool field_only = !tf->path.rep && !tf->path.comp;
        switch (tf->kind) {
        case TF_SET:
            rc = apply_set(&a, m);
            break;
        case TF_COPY:
            rc = apply_copy(&a, m);
            break;
        case TF_CLEAR:
            rc = each_place(&a, m, false, place_clear);
            break;
        case TF_DELETE_SEGMENT:
            rc = apply_delete(&a, m);
            break;
        case TF_MAP:
            rc = each_place(&a, m, true, place_map);
            break;
        case TF_PSEUDONYMISE:
            rc = each_place(&a, m, true, place_pseudonymise);
            break;
        case TF_REDACT:
            /* An empty `with` empties a whole field; otherwise each
               repetition that holds something becomes `with`. */
            rc = each_place(&a, m, !(field_only && !(tf->text && *tf->text)), place_redact);
            break;
        case TF_DEPERSONALISE:
            rc = apply_depersonalise(&a, m);
            break;
        case TF_ENCODING:
            break;
        case TF_CONVERT:
            if (tf->convert == CV_ITK_TO_MDM)
                rc = fail(&a, "itk-to-mdm takes an ITK message, and this one is HL7 v2: "
                          "leave the step out (an HL7 v2 message is edited as it is), or "
                          "take this route's messages from an itk source only");
            else
                return apply_mdm_to_itk(&a, m, out);      /* the last step */
            break;
        }
        if (rc)
            return -1;
    }
    int rc = t->json ? route_to_json(m, out) : hl7_serialise(m, HL7_SER_CR, out);
    if (rc) {
        a.tf = &(struct tf){ .setting = "output" };
        return fail(&a, "out of memory writing the %s output", t->json ? "JSON" : "ER7");
    }
    return 0;
}

int route_transforms_apply(const struct route_transforms *t, struct hl7_msg *m,
                           struct buf *out, struct route_error *err)
{
    return apply_from(t, 0, m, out, err);
}

size_t route_transforms_count(const struct route_transforms *t)
{
    return t ? t->n : 0;
}

int route_transforms_apply_itk(const struct route_transforms *t, const struct itk_envelope *env,
                               struct buf *out, struct route_error *err)
{
    struct actx a = { .t = t, .err = err };
    if (!t->n) {
        a.tf = &(struct tf){ .setting = "transform" };
        return fail(&a, "internal: no transforms to apply");
    }
    a.tf = &t->v[0];
    if (t->v[0].convert != CV_ITK_TO_MDM) {
        const char *dot = strchr(t->v[0].setting, '.');
        return fail(&a, "this message is ITK and %s edits HL7 v2: begin the transforms with "
                    "{ convert = \"itk-to-mdm\"; } to edit the MDM^T02 it makes (or leave "
                    "the transforms out to pass the ITK message on as it is)",
                    dot ? dot + 1 : "this step");
    }
    const struct itk_mdm_opts o = { .sending_app = t->v[0].cv[CA_SENDING_APP],
                                    .receiving_app = t->v[0].cv[CA_RECEIVING_APP] };
    struct buf mdm = { 0 };
    struct hl7_msg *m = NULL;
    struct hl7_error he = { 0 };
    char why[256] = "";
    int rc = -1;
    if (itk_to_mdm(env, &o, &mdm, why, sizeof why))
        fail(&a, "itk-to-mdm: %s", why[0] ? why : "cannot make the MDM^T02");
    else if (hl7_parse(mdm.p ? mdm.p : "", mdm.len,
                       &(struct hl7_parse_opts){ .max_bytes = HL7_HARD_MAX }, &m, &he))
        fail(&a, "itk-to-mdm: the MDM^T02 made does not parse: %s", he.text);
    else
        rc = apply_from(t, 1, m, out, err);
    hl7_free(m);
    buf_free(&mdm);
    return rc;
}

/* ---------------------------------------------------------------- JSON */

/* Append p[0..n) to b as UTF-8: from ISO 8859-1 when latin1, otherwise
 * checked, each byte that does not start a well-formed UTF-8 sequence
 * becoming U+FFFD. */
static int put_utf8(struct buf *b, const unsigned char *p, size_t n, bool latin1)
{
    static const char repl[] = "\xEF\xBF\xBD";
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c < 0x80) {
            if (buf_putc(b, (char)c))
                return -1;
            i++;
            continue;
        }
        if (latin1) {
            char two[2] = { (char)(0xC0 | (c >> 6)), (char)(0x80 | (c & 0x3F)) };
            if (buf_append(b, two, 2))
                return -1;
            i++;
            continue;
        }
        size_t len = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;           /* no overlong forms */
            else if (c == 0xED)
                hi = 0x9F;           /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;           /* nothing above U+10FFFF */
        }
        bool ok = len && i + len <= n && p[i + 1] >= lo && p[i + 1] <= hi;
        for (size_t k = 2; ok && k < len; k++)
            ok = p[i + k] >= 0x80 && p[i + k] <= 0xBF;
        if (ok ? buf_append(b, p + i, len) : buf_append(b, repl, 3))
            return -1;
        i += ok ? len : 1;
    }
    return 0;
}

struct jctx {
    const struct hl7_delims *d;
    bool    latin1;
    json_t *segments, *fields, *reps, *comps, *subs;
    struct buf dec, utf;
    int     err;
};

/* The JSON value of a leaf: null when empty, else its decoded text. */
static json_t *leaf_value(struct jctx *j, enum hl7_node kind, const struct hl7_path *path,
                          const struct hl7_span *raw)
{
    if (raw->len == 0)
        return json_null();
    buf_reset(&j->dec);
    buf_reset(&j->utf);
    bool literal = kind == HL7_NODE_FIELD && path->field <= 2 && is_header_seg(path->seg);
    if (literal ? buf_append(&j->dec, raw->p, raw->len)
                : hl7_unescape(j->d, raw->p, raw->len, &j->dec))
        return NULL;
    if (put_utf8(&j->utf, (const unsigned char *)(j->dec.p ? j->dec.p : ""), j->dec.len,
                 j->latin1))
        return NULL;
    return json_stringn(j->utf.p ? j->utf.p : "", j->utf.len);
}

static json_t *container(const char *key, json_t **arr)
{
    json_t *o = json_object();
    *arr = json_array();
    if (!o || !*arr || json_object_set_new(o, key, *arr)) {
        json_decref(o);
        *arr = NULL;
        return NULL;
    }
    return o;
}

static int json_node(void *ctx, enum hl7_node kind, const struct hl7_path *path,
                     const struct hl7_span *raw, bool leaf)
{
    struct jctx *j = ctx;
    json_t *v = NULL, *into = NULL;
    switch (kind) {
    case HL7_NODE_SEGMENT: {
        char id[4] = { path->seg[0], path->seg[1], path->seg[2], 0 };
        if (!(v = json_object()) || json_array_append_new(j->segments, v)
            || json_object_set_new(v, "id", json_string(id))
            || json_object_set_new(v, "fields", j->fields = json_array()))
            return j->err = -1;       /* what was made belongs to segments */
        return 0;
    }
    case HL7_NODE_FIELD:
        /* fields[k] is field k+1: fill the gaps the walk skips */
        while (json_array_size(j->fields) + 1 < path->field)
            if (json_array_append_new(j->fields, json_null()))
                return j->err = -1;
        into = j->fields;
        j->reps = j->comps = j->subs = NULL;
        if (leaf)
            v = leaf_value(j, kind, path, raw);
        else if (memchr(raw->p, j->d->repetition, raw->len))
            v = container("repetitions", &j->reps);
        else
            v = container("components", &j->comps);
        break;
    case HL7_NODE_REP:
        into = j->reps;
        j->comps = j->subs = NULL;
        v = leaf ? leaf_value(j, kind, path, raw) : container("components", &j->comps);
        break;
    case HL7_NODE_COMP:
        into = j->comps;
        j->subs = NULL;
        v = leaf ? leaf_value(j, kind, path, raw) : container("subcomponents", &j->subs);
        break;
    case HL7_NODE_SUB:
        into = j->subs;
        v = leaf_value(j, kind, path, raw);
        break;
    }
    if (!v || !into) {
        json_decref(v);
        return j->err = -1;
    }
    return j->err = json_array_append_new(into, v);
}

static int dump_to_buf(const char *p, size_t n, void *data)
{
    return buf_append(data, p, n);
}

int route_to_json(const struct hl7_msg *m, struct buf *out)
{
    struct jctx j = { .d = hl7_msg_delims(m) };
    struct hl7_meta meta;
    hl7_meta(m, &meta);
    j.latin1 = meta.charset.len == 6 && memcmp(meta.charset.p, "8859/1", 6) == 0;
    json_t *root = json_object();
    j.segments = json_array();
    int rc = -1;
    if (!root || !j.segments || json_object_set_new(root, "segments", j.segments)) {
        if (!root)
            json_decref(j.segments);
        goto out;
    }
    if (hl7_walk(m, json_node, &j) || j.err)
        goto out;
    size_t before = out->len;
    if (json_dump_callback(root, dump_to_buf, out, JSON_COMPACT)) {
        out->len = before;
        if (out->p)
            out->p[before] = '\0';
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    buf_free(&j.dec);
    buf_free(&j.utf);
    return rc;
}
