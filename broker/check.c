/*
 * check.c: validating a config file the way the daemon would load it
 * (settings, then routes), for hl7brokerd --check and hl7ctl check-config.
 */
#include "check.h"

#include "config.h"
#include "route.h"

static void print_route_error(void *ctx, const struct route_error *e)
{
    struct { FILE *err; size_t n; } *c = ctx;
    fprintf(c->err, "%s\n", e->msg);
    c->n++;
}

int broker_check_config(const char *path, FILE *out, FILE *err)
{
    struct config cfg;
    struct config_errors errs = { 0 };

    int rc = config_load(path, &cfg, &errs);
    if (rc == CONFIG_OK) {
        struct { FILE *err; size_t n; } ctx = { err, 0 };
        struct router *r = router_new(&cfg, print_route_error, &ctx);
        if (r) {
            fprintf(out, "%s: OK (sources=%zu destinations=%zu routes=%zu tables=%zu)\n", path,
                    cfg.n_sources, cfg.n_destinations, cfg.n_routes, cfg.n_tables);
            router_free(r);
        } else {
            fprintf(err, "%s: %zu error%s in routes\n", path, ctx.n, ctx.n == 1 ? "" : "s");
        }
        config_free(&cfg);
        return r ? 0 : 1;
    }
    for (size_t i = 0; i < errs.n; i++)
        fprintf(err, "%s\n", errs.v[i].msg);
    fprintf(err, "%s: %zu error%s\n", path, errs.n, errs.n == 1 ? "" : "s");
    config_errors_free(&errs);
    return 1;
}
