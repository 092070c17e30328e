/*
 * adapters.c: the registries of adapter types: their config schemas (for
 * the loader) and their tables of functions (for the core), and making
 * and freeing instances. A new type adds an entry to each list.
 */
#include "adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_config.h"
#include "delivery.h"

const struct config_adapter_schema *const config_adapter_schemas[] = {
    &mllp_config_schema,
    &file_config_schema,
    &zmq_config_schema,
    &http_config_schema,
    &itk_config_schema,
    NULL,
};

extern const struct adapter_type mllp_adapter;
extern const struct adapter_type file_adapter;
extern const struct adapter_type zmq_adapter;
extern const struct adapter_type http_adapter;
extern const struct adapter_type itk_adapter;

static const struct adapter_type *const adapter_types[] = {
    &mllp_adapter,
    &file_adapter,
    &zmq_adapter,
    &http_adapter,
    &itk_adapter,
    NULL,
};

const struct adapter_type *adapter_type_find(const char *name)
{
    for (size_t i = 0; name && adapter_types[i]; i++)
        if (strcmp(adapter_types[i]->name, name) == 0)
            return adapter_types[i];
    return NULL;
}

/* An instance of type name in role, its state allocated; NULL with err
 * filled when the type is unknown, cannot take the role, or no memory. */
static struct adapter *instance(const char *type, unsigned role, char *err, size_t errlen)
{
    const struct adapter_type *t = adapter_type_find(type);
    if (!t || !(t->roles & role) || (role == ADAPTER_DESTINATION && !t->send)) {
        snprintf(err, errlen, "adapter type \"%s\" cannot run as a %s yet", type,
                 role == ADAPTER_SOURCE ? "source" : "destination");
        return NULL;
    }
    struct adapter *a = calloc(1, sizeof *a);
    if (!a || !(a->state = calloc(1, t->state_size ? t->state_size : 1))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->type = t;
    a->role = role;
    return a;
}

/* Configure a made instance; on failure it is freed. */
static struct adapter *configured(struct adapter *a, char *err, size_t errlen)
{
    if (a && a->type->configure(a, err, errlen) != 0) {
        adapter_free(a);
        return NULL;
    }
    return a;
}

struct adapter *adapter_new_source(const struct config_source *src, struct event_base *base,
                                   struct ingest *ingest, char *err, size_t errlen)
{
    struct adapter *a = instance(src->type, ADAPTER_SOURCE, err, errlen);
    if (a) {
        a->name = src->name;
        a->src = src;
        a->ingest = ingest;
        a->base = base;
    }
    return configured(a, err, errlen);
}

struct adapter *adapter_new_destination(const struct config_destination *dst,
                                        struct event_base *base,
                                        void (*report)(void *ctx, const struct delivery *d,
                                                       int outcome, const char *detail),
                                        void *ctx, char *err, size_t errlen)
{
    struct adapter *a = instance(dst->type, ADAPTER_DESTINATION, err, errlen);
    if (a) {
        a->name = dst->name;
        a->dst = dst;
        a->base = base;
        a->report = report;
        a->report_ctx = ctx;
    }
    return configured(a, err, errlen);
}

void delivery_report(struct adapter *a, const struct delivery *d, enum delivery_outcome o,
                     const char *detail)
{
    if (a->report)
        a->report(a->report_ctx, d, (int)o, detail);
}

void adapter_free(struct adapter *a)
{
    if (!a)
        return;
    if (a->type && a->type->stop)
        a->type->stop(a);
    free(a->state);
    free(a);
}
