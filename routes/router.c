/*
 * router.c: every route of a config compiled (filters, transforms, the
 * tables they use), and one message run through all of them: which
 * routes take it, why the others do not, and the bytes each destination
 * gets. The router copies what it needs, so it outlives the config.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "itk.h"
#include "route.h"
#include "objections.h"
#include "route_int.h"
#include "route_tables_priv.h"

struct compiled_route {
    char                    *name;
    char                   **from;
    size_t                   n_from;
    char                   **to;
    size_t                   n_to;
    struct route_expr       *when;
    struct route_transforms *tf;
    bool                     accept_errors;
};

struct router {
    struct route_tables   *tables;
    struct compiled_route *v;
    size_t                 n;
};

static void free_strs(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static char **dup_strs(const struct config_strlist *l)
{
    char **v = calloc(l->n ? l->n : 1, sizeof *v);
    for (size_t i = 0; v && i < l->n; i++) {
        if (!(v[i] = strdup(l->v[i]))) {
            free_strs(v, i);
            return NULL;
        }
    }
    return v;
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        struct compiled_route *c = &r->v[i];
        free(c->name);
        free_strs(c->from, c->n_from);
        free_strs(c->to, c->n_to);
        if (c->when)
            route_expr_free(c->when);
        route_transforms_free(c->tf);
    }
    free(r->v);
    if (r->tables)
        route_tables_free(r->tables);
    free(r);
}

struct counting {
    route_report_fn report;
    void           *ctx;
    unsigned        n;
};

static void count_report(void *ctx, const struct route_error *e)
{
    struct counting *c = ctx;
    c->n++;
    if (c->report)
        c->report(c->ctx, e);
}

struct router *router_new(const struct config *cfg, route_report_fn report, void *ctx)
{
    /* A register of its own, from the config's file alone. */
    struct objections *reg = objections_new();
    struct route_error e = { 0 };
    if (!reg) {
        route_err_set(&e, NULL, NULL, NULL, 0, "out of memory compiling the routes");
        if (report)
            report(ctx, &e);
        return NULL;
    }
    if (cfg->objections.file) {
        struct objections_set *set;
        char why[sizeof e.msg];
        if (objections_set_read(cfg->objections.file, &set, why, sizeof why)) {
            router_objections_error(cfg, why, &e);
            if (report)
                report(ctx, &e);
            objections_unref(reg);
            return NULL;
        }
        objections_install(reg, set);
    }
    struct router *r = router_new_shared(cfg, reg, report, ctx);
    objections_unref(reg);
    return r;
}

void router_objections_error(const struct config *cfg, const char *why, struct route_error *e)
{
    memset(e, 0, sizeof *e);
    const config_setting_t *at = cfg->lc ? config_lookup(cfg->lc, "objections.file") : NULL;
    snprintf(e->text, sizeof e->text, "%s", why);
    if (at && config_setting_source_file(at))
        snprintf(e->msg, sizeof e->msg, "%s:%u: objections.file: %s",
                 config_setting_source_file(at), config_setting_source_line(at), why);
    else
        snprintf(e->msg, sizeof e->msg, "objections.file: %s", why);
}

struct router *router_new_shared(const struct config *cfg, struct objections *reg,
                                 route_report_fn report, void *ctx)
{
    struct counting cnt = { .report = report, .ctx = ctx };
    struct route_error e;
    struct router *r = calloc(1, sizeof *r);
    if (!r || (cfg->n_routes && !(r->v = calloc(cfg->n_routes, sizeof *r->v)))) {
        route_err_set(&e, NULL, NULL, NULL, 0, "out of memory compiling the routes");
        count_report(&cnt, &e);
        router_free(r);
        return NULL;
    }
    memset(&e, 0, sizeof e);
    if (route_tables_load(cfg, &r->tables, &e)) {
        /* Routes that use the tables would only add noise: fix these first. */
        if (!e.msg[0])
            snprintf(e.msg, sizeof e.msg, "%s", e.text[0] ? e.text : "cannot load the tables");
        count_report(&cnt, &e);
        router_free(r);
        return NULL;
    }
    route_tables_set_objections(r->tables, reg);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct config_route *cr = &cfg->routes[i];
        struct compiled_route *c = &r->v[r->n++];
        c->name = strdup(cr->name ? cr->name : "");
        c->from = dup_strs(&cr->from);
        c->n_from = c->from ? cr->from.n : 0;
        c->to = dup_strs(&cr->to);
        c->n_to = c->to ? cr->to.n : 0;
        c->accept_errors = cr->on_transform_error == CONFIG_ON_TRANSFORM_ACCEPT;
        if (!c->name || !c->from || !c->to) {
            route_err_set(&e, cr->setting, cr->name, NULL, 0, "out of memory");
            count_report(&cnt, &e);
            continue;
        }
        if (cr->when) {
            struct route_error ee = { 0 };
            if (route_expr_compile(cr->when, r->tables, &c->when, &ee)) {
                const config_setting_t *at = cr->setting
                    ? config_setting_get_member(cr->setting, "when") : NULL;
                route_err_set(&e, at ? at : cr->setting, cr->name, "when", ee.column, "%s",
                              ee.text[0] ? ee.text : ee.msg);
                count_report(&cnt, &e);
                c->when = NULL;
            }
        }
        route_transforms_compile_all(cr, r->tables, &c->tf, count_report, &cnt, NULL);
    }
    if (cnt.n) {
        router_free(r);
        return NULL;
    }
    return r;
}

static bool takes_from(const struct compiled_route *c, const char *source)
{
    if (!source)
        return true;
    for (size_t i = 0; i < c->n_from; i++)
        if (strcmp(c->from[i], source) == 0)
            return true;
    return false;
}

int router_run(const struct router *r, const char *source, const char *raw, size_t len,
               route_result_fn fn, void *ctx)
{
    const struct hl7_parse_opts opts = { .max_bytes = HL7_HARD_MAX };
    struct hl7_msg *m = NULL;
    if (hl7_parse(raw, len, &opts, &m, NULL))
        return -1;
    int matched = 0;
    struct buf why = { 0 }, out = { 0 };
    for (size_t i = 0; i < r->n; i++) {
        const struct compiled_route *c = &r->v[i];
        struct route_result res = { .route = c->name, .accept_errors = c->accept_errors };
        struct hl7_msg *copy = NULL;
        buf_reset(&why);
        buf_reset(&out);
        if (!takes_from(c, source)) {
            res.verdict = ROUTE_NOT_FROM_SOURCE;
        } else if (c->when && !route_expr_eval(c->when, m, &why)) {
            res.verdict = ROUTE_FILTERED;
            res.why = why.len ? why.p : "the when expression is false";
        } else {
            /* Each route edits a copy of its own: parsing again is the
               cheapest copy (the index is built, the bytes are shared). */
            struct route_error err = { 0 };
            if (hl7_parse(raw, len, &opts, &copy, NULL)) {
                res.verdict = ROUTE_ERROR;
                res.why = "out of memory";
            } else if (route_transforms_apply(c->tf, copy, &out, &err)) {
                res.verdict = ROUTE_ERROR;
                buf_printf(&why, "%s: %s", err.setting, err.text);
                res.why = why.len ? why.p : "transform failed";
            } else {
                res.verdict = ROUTE_MATCHED;
                res.payload = out.p ? out.p : "";
                res.payload_len = out.len;
                res.to = (const char *const *)c->to;
                res.n_to = c->n_to;
                matched++;
            }
        }
        fn(ctx, &res);
        hl7_free(copy);
    }
    buf_free(&why);
    buf_free(&out);
    hl7_free(m);
    return matched;
}

int router_run_itk(const struct router *r, const char *source, const struct itk_envelope *env,
                   const char *raw, size_t len, route_result_fn fn, void *ctx)
{
    if (!env)
        return -1;
    int matched = 0;
    struct buf why = { 0 }, out = { 0 };
    for (size_t i = 0; i < r->n; i++) {
        const struct compiled_route *c = &r->v[i];
        struct route_result res = { .route = c->name, .accept_errors = c->accept_errors };
        buf_reset(&why);
        buf_reset(&out);
        if (!takes_from(c, source)) {
            res.verdict = ROUTE_NOT_FROM_SOURCE;
        } else if (c->when && !route_expr_eval_itk(c->when, env, &why)) {
            res.verdict = ROUTE_FILTERED;
            res.why = why.len ? why.p : "the when expression is false";
        } else if (route_transforms_count(c->tf) == 0) {
            /* Untransformed: the request as received, the same bytes (so
               ingest stores them once). */
            res.verdict = ROUTE_MATCHED;
            res.payload = raw ? raw : "";
            res.payload_len = raw ? len : 0;
            res.to = (const char *const *)c->to;
            res.n_to = c->n_to;
            matched++;
        } else {
            struct route_error err = { 0 };
            if (route_transforms_apply_itk(c->tf, env, &out, &err)) {
                res.verdict = ROUTE_ERROR;
                buf_printf(&why, "%s: %s", err.setting, err.text);
                res.why = why.len ? why.p : "transform failed";
            } else {
                res.verdict = ROUTE_MATCHED;
                res.payload = out.p ? out.p : "";
                res.payload_len = out.len;
                res.to = (const char *const *)c->to;
                res.n_to = c->n_to;
                matched++;
            }
        }
        fn(ctx, &res);
    }
    buf_free(&why);
    buf_free(&out);
    return matched;
}
