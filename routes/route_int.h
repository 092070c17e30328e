/*
 * route_int.h: what transform.c and router.c share and nobody else needs:
 * the one way route errors are worded, and compiling a transform list
 * with every error reported (route_transforms_compile stops at the first).
 */
#ifndef HL7BROKER_ROUTE_INT_H
#define HL7BROKER_ROUTE_INT_H

#include <libconfig.h>

#include "route.h"

/* Fill err: route and setting names, column (0: none) and the text; msg
 * becomes "FILE:LINE: route NAME: setting SETTING: column N: TEXT", each
 * part left out when unknown (at NULL: no file and line; route or setting
 * NULL or ""). */
void route_err_set(struct route_error *err, const config_setting_t *at, const char *route,
                   const char *setting, unsigned column, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* As route_transforms_compile, but every error goes to report (when not
 * NULL) and the first also into first (when not NULL). Returns 0, or -1
 * when there was any error (then *out is NULL). */
int route_transforms_compile_all(const struct config_route *r,
                                 const struct route_tables *tables,
                                 struct route_transforms **out,
                                 route_report_fn report, void *ctx,
                                 struct route_error *first);

/* The number of steps of a transform list (0: the route passes the
 * message on unchanged). */
size_t route_transforms_count(const struct route_transforms *t);

/* Apply t to an ITK message (router_run_itk): its first step must be
 * { convert = "itk-to-mdm"; }, which makes the MDM^T02 the other steps
 * edit; any other first step is an error saying so. t has at least one
 * step. Returns 0, or -1 with err (as route_transforms_apply). */
struct itk_envelope;
int route_transforms_apply_itk(const struct route_transforms *t, const struct itk_envelope *env,
                               struct buf *out, struct route_error *err);

#endif
