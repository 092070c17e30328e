/*
 * sources.c: running source adapters and reloads (see include/sources.h).
 * A source is "unchanged" when its name, type and every setting in its
 * config group are the same; that comparison is a fingerprint of the
 * libconfig group, so it covers settings of any adapter type.
 */
#include "sources.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "buf.h"
#include "config.h"
#include "log.h"

struct running {
    struct adapter *a;
    char           *name;
    char           *fingerprint;
};

struct sources {
    struct event_base *base;
    struct ingest     *ingest;
    struct running    *v;
    size_t             n;
};

/* A canonical text of a setting and everything under it. */
static void fingerprint(const config_setting_t *s, struct buf *b)
{
    const char *name = config_setting_name(s);
    buf_printf(b, "%s:%d=", name ? name : "", config_setting_type(s));
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        buf_printf(b, "%d", config_setting_get_int(s));
        break;
    case CONFIG_TYPE_INT64:
        buf_printf(b, "%lld", config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_FLOAT:
        buf_printf(b, "%.17g", config_setting_get_float(s));
        break;
    case CONFIG_TYPE_BOOL:
        buf_printf(b, "%d", config_setting_get_bool(s));
        break;
    case CONFIG_TYPE_STRING: {
        const char *v = config_setting_get_string(s);
        buf_printf(b, "%zu:%s", strlen(v), v);
        break;
    }
    default: {   /* group, array, list */
        int n = config_setting_length(s);
        buf_putc(b, '{');
        for (int i = 0; i < n; i++) {
            fingerprint(config_setting_get_elem(s, (unsigned)i), b);
            buf_putc(b, ';');
        }
        buf_putc(b, '}');
    }
    }
}

static char *source_fingerprint(const struct config_source *src)
{
    struct buf b = { 0 };
    buf_printf(&b, "%s|%s|", src->name, src->type);
    if (src->setting)
        fingerprint(src->setting, &b);
    return buf_take(&b, NULL);
}

struct sources *sources_new(struct event_base *base, struct ingest *ingest)
{
    struct sources *s = calloc(1, sizeof *s);
    if (s) {
        s->base = base;
        s->ingest = ingest;
    }
    return s;
}

static void running_stop(struct running *r)
{
    adapter_free(r->a);
    free(r->name);
    free(r->fingerprint);
}

static const struct config_source *find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_sources; i++)
        if (strcmp(cfg->sources[i].name, name) == 0)
            return &cfg->sources[i];
    return NULL;
}

size_t sources_apply(struct sources *s, const struct config *cfg)
{
    size_t failed = 0;
    struct running *next = calloc(cfg->n_sources ? cfg->n_sources : 1, sizeof *next);
    char **prints = calloc(cfg->n_sources ? cfg->n_sources : 1, sizeof *prints);
    if (!next || !prints) {
        free(next);
        free(prints);
        log_error("sources", "out of memory applying the config", NULL);
        return cfg->n_sources;
    }
    for (size_t i = 0; i < cfg->n_sources; i++)
        prints[i] = source_fingerprint(&cfg->sources[i]);

    /* Keep the unchanged, stop the rest (before starting anything, so a
       changed source can take its old port again). */
    for (size_t k = 0; k < s->n; k++) {
        struct running *r = &s->v[k];
        const struct config_source *src = find(cfg, r->name);
        size_t i = src ? (size_t)(src - cfg->sources) : 0;
        if (src && prints[i] && strcmp(prints[i], r->fingerprint) == 0) {
            r->a->src = src;          /* same settings, in the new config's memory */
            r->a->name = src->name;
            next[i] = *r;
            continue;
        }
        log_info("sources", src ? "source changed: restarting" : "source removed: stopping",
                 "source=%s", r->name);
        running_stop(r);
    }
    for (size_t i = 0; i < cfg->n_sources; i++) {
        if (next[i].a) {
            free(prints[i]);
            continue;
        }
        const struct config_source *src = &cfg->sources[i];
        char err[512] = "";
        struct adapter *a = adapter_new_source(src, s->base, s->ingest, err, sizeof err);
        if (a && a->type->start(a, err, sizeof err) != 0) {
            adapter_free(a);
            a = NULL;
        }
        if (!a) {
            log_error("sources", "source not started", "source=%s type=%s error=%s",
                      src->name, src->type, err[0] ? err : "unknown");
            free(prints[i]);
            failed++;
            continue;
        }
        next[i].a = a;
        next[i].name = strdup(src->name);
        next[i].fingerprint = prints[i];
        log_info("sources", "source started", "source=%s type=%s", src->name, src->type);
    }
    free(prints);
    /* compact: failed sources leave holes */
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_sources; i++)
        if (next[i].a)
            next[n++] = next[i];
    free(s->v);
    s->v = next;
    s->n = n;
    return failed;
}

void sources_drain(struct sources *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].a->type->drain)
            s->v[i].a->type->drain(s->v[i].a);
}

bool sources_busy(const struct sources *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].a->type->busy && s->v[i].a->type->busy(s->v[i].a))
            return true;
    return false;
}

size_t sources_count(const struct sources *s)
{
    return s->n;
}

const struct adapter *sources_find(const struct sources *s, const char *name)
{
    for (size_t i = 0; s && name && i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return s->v[i].a;
    return NULL;
}

void sources_free(struct sources *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        running_stop(&s->v[i]);
    free(s->v);
    free(s);
}
