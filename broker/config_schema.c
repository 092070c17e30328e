/*
 * config_schema.c: what the broker's config file holds (DESIGN.md §4):
 * the tables of settings for broker, tables, sources, destinations, routes
 * and TLS, and the checks that span settings (names that routes refer to,
 * addresses two listeners would share). Settings particular to one
 * adapter type are in adapters/.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_rows.h"
#include "log.h"

/* ----------------------------------------------------------------- TLS */

static void tls_server_check(struct config_ctx *ctx, void *obj,
                             const config_setting_t *s, const char *path)
{
    struct config_tls_server *t = obj;
    char why[512];

    /* Runs after errors too: a setting that was wrong is NULL here. */
    if (t->cert && t->key && !config_check_pem(t->cert, t->key, why, sizeof why))
        config_report(ctx, s, path, "key", "%s", why);
    if (t->ca && !config_check_pem(t->ca, NULL, why, sizeof why))
        config_report(ctx, s, path, "ca", "%s", why);
    if (t->require_client_cert && !t->ca &&
        !(s && config_setting_get_member(s, "ca")))
        config_report(ctx, s, path, "require_client_cert",
                      "needs ca: the CA certificates that sign client certificates");
    if (t->allowed_subjects.n && !t->require_client_cert)
        config_report(ctx, s, path, "allowed_subjects",
                      "needs require_client_cert = true: without a client certificate "
                      "there is no subject to check");
}

static const struct config_row tls_server_rows[] = {
    ROW_STR(struct config_tls_server, cert, ROW_REQ, NULL, config_valid_file,
        "PEM certificate (chain) the source presents"),
    ROW_STR(struct config_tls_server, key, ROW_REQ, NULL, config_valid_file,
        "PEM private key of cert, without a passphrase"),
    ROW_STR(struct config_tls_server, ca, 0, NULL, config_valid_file,
        "PEM CA certificates that sign client certificates"),
    ROW_BOOL(struct config_tls_server, require_client_cert, 0, false,
         "mutual TLS: refuse clients without a certificate signed by ca"),
    ROW_STRLIST(struct config_tls_server, allowed_subjects, CONFIG_F_UNIQUE, 0, 0,
            config_valid_subject,
            "client certificate subjects allowed, as RFC 2253 strings (\"CN=pas.rlh.example,O=Barts Health\"); empty: any signed by ca"),
    ROW_END
};

const struct config_section config_tls_server_section = {
    .name = "TLS server",
    .rows = tls_server_rows,
    .size = sizeof(struct config_tls_server),
    .check = tls_server_check,
    .check_always = true,
};

static void tls_client_check(struct config_ctx *ctx, void *obj,
                             const config_setting_t *s, const char *path)
{
    struct config_tls_client *t = obj;
    char why[512];

    if (s && !config_setting_get_member(s, "cert") != !config_setting_get_member(s, "key"))
        config_report(ctx, s, path, config_setting_get_member(s, "cert") ? "cert" : "key",
                      "cert and key go together: set both for mutual TLS, or neither");
    else if (t->cert && t->key && !config_check_pem(t->cert, t->key, why, sizeof why))
        config_report(ctx, s, path, "key", "%s", why);
    if (t->ca && !config_check_pem(t->ca, NULL, why, sizeof why))
        config_report(ctx, s, path, "ca", "%s", why);
}

static const struct config_row tls_client_rows[] = {
    ROW_STR(struct config_tls_client, ca, 0, NULL, config_valid_file,
        "PEM CA certificates to verify the server; unset: the system's trust store"),
    ROW_STR(struct config_tls_client, cert, 0, NULL, config_valid_file,
        "PEM client certificate for mutual TLS (with key)"),
    ROW_STR(struct config_tls_client, key, 0, NULL, config_valid_file,
        "PEM private key of cert, without a passphrase"),
    ROW_STR(struct config_tls_client, server_name, 0, NULL, config_valid_hostname,
        "name to verify in the server certificate and send as SNI; unset: the connect host"),
    ROW_END
};

const struct config_section config_tls_client_section = {
    .name = "TLS client",
    .rows = tls_client_rows,
    .size = sizeof(struct config_tls_client),
    .check = tls_client_check,
    .check_always = true,
};

/* -------------------------------------------------------------- broker */

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };

static const struct config_row admin_rows[] = {
    ROW_BOOL(struct config_admin, enabled, ROW_SUM, true,
         "serve the admin API (metrics, health, JSON API, dashboard)"),
    ROW_STR(struct config_admin, listen, ROW_SUM | CONFIG_F_LISTEN, "127.0.0.1:8088",
        config_valid_hostport, "host:port of the admin API; keep it on loopback"),
    ROW_STR(struct config_admin, token_file, 0, NULL, config_valid_file,
        "file of bearer tokens, one \"NAME TOKEN\" per line; unset: none"),
    ROW_GROUP_OPT(struct config_admin, tls, ROW_SUM, &config_tls_server_section,
                  "TLS (1.2 or later) on the admin API, settings as a source's tls; unset: plain HTTP"),
    ROW_END
};

static const struct config_section admin_section = {
    .name = "admin",
    .rows = admin_rows,
    .size = sizeof(struct config_admin),
};

static const struct config_row log_rows[] = {
    ROW_ENUM(struct config_log, level, ROW_SUM, "info", log_levels,
         "least severe level logged"),
    ROW_BOOL(struct config_log, syslog, ROW_SUM, false,
         "log to syslog instead of stderr (hl7brokerd --syslog forces it on)"),
    ROW_STR(struct config_log, facility, 0, "daemon", config_valid_facility,
        "syslog facility: \"daemon\", \"user\", \"local0\"..\"local7\""),
    ROW_END
};

static const struct config_section log_section = {
    .name = "log",
    .rows = log_rows,
    .size = sizeof(struct config_log),
};

static const struct config_row broker_rows[] = {
    ROW_STR(struct config_broker, data_dir, ROW_SUM, "var/data", config_valid_nonempty,
        "directory of the message store; created when missing"),
    ROW_STR(struct config_broker, ods_code, ROW_SUM, NULL, config_valid_ods,
        "this organisation's ODS code (\"X26\"): the reporting identity of ITK infrastructure acknowledgements; required by itk sources"),
    ROW_INT(struct config_broker, max_map_bytes, ROW_SUM, 1073741824LL, 1048576LL, 1LL << 42,
        "largest size the store may grow to (LMDB map size); above 2147483647 write an L suffix"),
    ROW_GROUP(struct config_broker, admin, ROW_SUM, &admin_section, "the admin API"),
    ROW_GROUP(struct config_broker, log, ROW_SUM, &log_section, "logging"),
    ROW_END
};

static const struct config_section broker_section = {
    .name = "broker",
    .rows = broker_rows,
    .size = sizeof(struct config_broker),
};

/* ----------------------------------------------------------- retention */

#define DAY_MS (86400ull * 1000)
/* Ten years: anything longer is a typo for "forever" (0). */
#define RETENTION_MAX_DAYS 3650

uint64_t config_retention_delivered_ms(const struct config_retention *r)
{
    return r->delivered_seconds ? (uint64_t)r->delivered_seconds * 1000
                                : (uint64_t)r->delivered_days * DAY_MS;
}

uint64_t config_retention_errors_ms(const struct config_retention *r)
{
    return r->errors_seconds ? (uint64_t)r->errors_seconds * 1000
                             : (uint64_t)r->errors_days * DAY_MS;
}

static void retention_check(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                            const char *path)
{
    const struct config_retention *r = obj;
    if (r->delivered_days && r->delivered_seconds)
        config_report(ctx, s, path, "delivered_seconds",
                      "give delivered_days or delivered_seconds, not both");
    if (r->errors_days && r->errors_seconds)
        config_report(ctx, s, path, "errors_seconds",
                      "give errors_days or errors_seconds, not both");
}

static const struct config_row retention_rows[] = {
    ROW_INT(struct config_retention, delivered_days, ROW_SUM, 0, 0, RETENTION_MAX_DAYS,
        "days a message is kept once delivered to every destination (or routed nowhere); "
        "0: forever. Queued and dead-lettered messages are never pruned"),
    ROW_INT(struct config_retention, errors_days, ROW_SUM, 0, 0, RETENTION_MAX_DAYS,
        "days a message refused at ingest is kept in the error store; 0: forever"),
    ROW_INT(struct config_retention, delivered_seconds, 0, 0, 0, 86400LL * RETENTION_MAX_DAYS,
        "delivered_days in seconds, for tests and short-lived stores (not with delivered_days)"),
    ROW_INT(struct config_retention, errors_seconds, 0, 0, 0, 86400LL * RETENTION_MAX_DAYS,
        "errors_days in seconds, for tests (not with errors_days)"),
    ROW_INT(struct config_retention, interval_seconds, 0, 600, 1, 86400,
        "how often the pruner runs"),
    ROW_END
};

static const struct config_section retention_section = {
    .name = "retention",
    .rows = retention_rows,
    .size = sizeof(struct config_retention),
    .check = retention_check,
};

/* --------------------------------------------------------- objections */

static const struct config_row objections_rows[] = {
    ROW_STR(struct config_objections, file, ROW_SUM, NULL, config_valid_file,
        "CSV file of objections, \"nhs_number,purpose\" a line; read again at each reload"),
    ROW_END
};

static const struct config_section objections_section = {
    .name = "objections",
    .rows = objections_rows,
    .size = sizeof(struct config_objections),
};

/* -------------------------------------------------------------- tables */

static const struct config_row table_rows[] = {
    ROW_STR(struct config_table, name, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, NULL, config_valid_name,
        "name transforms use to refer to the table"),
    ROW_STR(struct config_table, file, ROW_REQ | ROW_SUM, NULL, config_valid_file,
        "CSV file of the table"),
    ROW_BOOL(struct config_table, header, 0, false,
         "the first row is a header (column names), not an entry; a first row \"key,value\" is taken as one anyway"),
    ROW_END
};

static const struct config_section table_section = {
    .name = "table",
    .rows = table_rows,
    .size = sizeof(struct config_table),
    .keep_origin = true,
    .line_offset = offsetof(struct config_table, line),
    .setting_offset = offsetof(struct config_table, setting),
};

/* ------------------------------------------------------------- sources */

static const struct config_row source_rows[] = {
    ROW_STR(struct config_source, name, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, NULL, config_valid_name,
        "unique name: letters, digits, '-', '_', '.'"),
    ROW_STR(struct config_source, type, ROW_REQ | ROW_SUM, NULL, config_valid_nonempty,
        "adapter type; its settings follow"),
    ROW_BOOL(struct config_source, check_nhs_number, ROW_SUM, false,
        "refuse (AE, ERR at PID-3; a SOAP fault for itk) a message whose NHS number fails the modulus 11 check digit"),
    ROW_END
};

static const struct config_section source_section = {
    .name = "source",
    .rows = source_rows,
    .size = sizeof(struct config_source),
    .keep_origin = true,
    .line_offset = offsetof(struct config_source, line),
    .setting_offset = offsetof(struct config_source, setting),
    .role = CONFIG_ROLE_SOURCE,
    .type_offset = offsetof(struct config_source, type),
    .schema_offset = offsetof(struct config_source, schema),
    .opts_offset = offsetof(struct config_source, opts),
};

/* -------------------------------------------------------- destinations */

static const char *const on_error_ack_choices[] = { "retry", "dead_letter", NULL };

static void retry_check(struct config_ctx *ctx, void *obj,
                        const config_setting_t *s, const char *path)
{
    struct config_retry *r = obj;
    if (r->max_ms < r->initial_ms)
        config_report(ctx, s, path, "max_ms",
                      "%lld is less than initial_ms (%lld)",
                      (long long)r->max_ms, (long long)r->initial_ms);
}

static const struct config_row retry_rows[] = {
    ROW_INT(struct config_retry, initial_ms, 0, 500, 1, 86400000,
        "wait before the first retry; doubles on each failure"),
    ROW_INT(struct config_retry, max_ms, 0, 60000, 1, 86400000,
        "longest wait between retries"),
    ROW_INT(struct config_retry, max_attempts, 0, 0, 0, 1000000,
        "attempts before the message is dead-lettered; 0: retry for ever (the queue waits)"),
    ROW_END
};

static const struct config_section retry_section = {
    .name = "retry",
    .rows = retry_rows,
    .size = sizeof(struct config_retry),
    .check = retry_check,
};

static const struct config_row destination_rows[] = {
    ROW_STR(struct config_destination, name, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, NULL, config_valid_name,
        "unique name: letters, digits, '-', '_', '.'"),
    ROW_STR(struct config_destination, type, ROW_REQ | ROW_SUM, NULL, config_valid_nonempty,
        "adapter type; its settings follow"),
    ROW_INT(struct config_destination, ack_timeout_ms, 0, 30000, 100, 3600000,
        "how long to wait for the subscriber's ACK before the attempt fails"),
    ROW_GROUP(struct config_destination, retry, 0, &retry_section,
          "back-off for failed deliveries"),
    ROW_ENUM(struct config_destination, on_error_ack, 0, "retry", on_error_ack_choices,
         "what an AE/AR (CE/CR) from the subscriber does"),
    ROW_BOOL(struct config_destination, paused, ROW_SUM, false,
         "start with delivery paused (messages queue)"),
    ROW_END
};

static const struct config_section destination_section = {
    .name = "destination",
    .rows = destination_rows,
    .size = sizeof(struct config_destination),
    .keep_origin = true,
    .line_offset = offsetof(struct config_destination, line),
    .setting_offset = offsetof(struct config_destination, setting),
    .role = CONFIG_ROLE_DESTINATION,
    .type_offset = offsetof(struct config_destination, type),
    .schema_offset = offsetof(struct config_destination, schema),
    .opts_offset = offsetof(struct config_destination, opts),
};

/* -------------------------------------------------------------- routes */

static void route_check(struct config_ctx *ctx, void *obj,
                        const config_setting_t *s, const char *path)
{
    struct config_route *r = obj;
    char epath[300];

    for (int i = 0; r->transform && i < config_setting_length(r->transform); i++) {
        const config_setting_t *e = config_setting_get_elem(r->transform, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            snprintf(epath, sizeof epath, "%s.transform[%d]", path, i);
            config_report(ctx, e, epath, NULL, "must be a group such as "
                          "{ set = \"MSH-5\"; value = \"X\"; }");
        }
    }
    (void)s;
}

static void route_fini(void *obj)
{
    struct config_route *r = obj;
    free(r->from_src);
    free(r->to_dst);
    r->from_src = NULL;
    r->to_dst = NULL;
}

static const char *const on_transform_error_choices[] = { "refuse", "accept", NULL };

static const struct config_row route_rows[] = {
    ROW_STR(struct config_route, name, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, NULL, config_valid_name,
        "unique name: letters, digits, '-', '_', '.'"),
    ROW_STRLIST(struct config_route, from, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, 1, 0, config_valid_name,
            "names of the sources whose messages the route takes"),
    ROW_STR(struct config_route, when, ROW_SUM, NULL, config_valid_nonempty,
        "filter expression (DESIGN §6); unset: every message"),
    ROW_RAW(struct config_route, transform, ROW_SUM, CONFIG_TYPE_LIST,
        "transforms, in order, as a list of groups (DESIGN §6)"),
    ROW_STRLIST(struct config_route, to, ROW_REQ | ROW_SUM | CONFIG_F_UNIQUE, 1, 0, config_valid_name,
            "names of the destinations that receive the result"),
    ROW_ENUM(struct config_route, on_transform_error, 0, "refuse", on_transform_error_choices,
         "a transform failing on a message (no map entry, say): \"refuse\" stores it with the error and answers AE; \"accept\" stores and records it and answers AA"),
    ROW_END
};

static const struct config_section route_section = {
    .name = "route",
    .rows = route_rows,
    .size = sizeof(struct config_route),
    .keep_origin = true,
    .line_offset = offsetof(struct config_route, line),
    .setting_offset = offsetof(struct config_route, setting),
    .check = route_check,
    .check_always = true,
    .fini = route_fini,
};

/* ------------------------------------------------------- whole file */

/* The element of list (a setting) whose string is v, for its line. */
static const config_setting_t *elem_named(const config_setting_t *list, const char *v, int *index)
{
    for (int i = 0; list && i < config_setting_length(list); i++) {
        const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        const char *ev = config_setting_get_string(e);
        if (ev && strcmp(ev, v) == 0) {
            *index = i;
            return e;
        }
    }
    *index = -1;
    return list;
}

static void resolve_routes(struct config_ctx *ctx, struct config *cfg)
{
    char path[300];

    for (size_t i = 0; i < cfg->n_routes; i++) {
        struct config_route *r = &cfg->routes[i];
        const config_setting_t *from = r->setting ? config_setting_get_member(r->setting, "from") : NULL;
        const config_setting_t *to = r->setting ? config_setting_get_member(r->setting, "to") : NULL;

        if (r->from.n && !(r->from_src = calloc(r->from.n, sizeof *r->from_src)))
            return;
        if (r->to.n && !(r->to_dst = calloc(r->to.n, sizeof *r->to_dst)))
            return;
        for (size_t j = 0; j < r->from.n; j++) {
            r->from_src[j] = (struct config_source *)config_find_source(cfg, r->from.v[j]);
            if (!r->from_src[j]) {
                int k;
                const config_setting_t *e = elem_named(from, r->from.v[j], &k);
                snprintf(path, sizeof path, "routes[%zu].from[%d]", i, k);
                config_report(ctx, e, path, NULL, "no source is named \"%s\"", r->from.v[j]);
            }
        }
        for (size_t j = 0; j < r->to.n; j++) {
            r->to_dst[j] = (struct config_destination *)config_find_destination(cfg, r->to.v[j]);
            if (!r->to_dst[j]) {
                int k;
                const config_setting_t *e = elem_named(to, r->to.v[j], &k);
                snprintf(path, sizeof path, "routes[%zu].to[%d]", i, k);
                config_report(ctx, e, path, NULL, "no destination is named \"%s\"",
                              r->to.v[j]);
            }
        }
    }
}

/* An itk source answers infrastructure acks in this organisation's name. */
static void check_itk_identity(struct config_ctx *ctx, struct config *cfg)
{
    char path[64];
    for (size_t i = 0; i < cfg->n_sources && !cfg->broker.ods_code; i++) {
        const struct config_source *s = &cfg->sources[i];
        if (s->type && strcmp(s->type, "itk") == 0) {
            snprintf(path, sizeof path, "sources[%zu]", i);
            config_report(ctx, s->setting, path, "type", "an itk source needs broker.ods_code "
                          "(this organisation's ODS code: the identity its infrastructure "
                          "acknowledgements report)");
            return;
        }
    }
}

struct listener {
    const char             *value;
    char                    path[300];
    const config_setting_t *at;
    char                    host[256];
    unsigned                port;
};

static bool wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

static void add_listener(struct listener *v, size_t *n, const char *value,
                         const char *path, const config_setting_t *at)
{
    struct listener *l = &v[*n];
    if (!value || config_parse_hostport(value, l->host, sizeof l->host, &l->port))
        return;
    l->value = value;
    snprintf(l->path, sizeof l->path, "%s", path);
    l->at = at;
    (*n)++;
}

/* No two listeners on one address: the second could never bind. */
static void check_listeners(struct config_ctx *ctx, struct config *cfg)
{
    size_t cap = 1, n = 0;
    char path[300];

    for (size_t i = 0; i < cfg->n_sources; i++) {
        const struct config_source *s = &cfg->sources[i];
        if (s->schema && s->schema->source)
            for (const struct config_row *r = s->schema->source->rows; r->name; r++)
                cap += (r->flags & CONFIG_F_LISTEN) != 0;
    }
    struct listener *v = calloc(cap, sizeof *v);
    if (!v)
        return;

    const config_setting_t *broker = config_lookup(cfg->lc, "broker");
    const config_setting_t *admin = broker ? config_setting_get_member(broker, "admin") : NULL;
    const config_setting_t *at = admin ? config_setting_get_member(admin, "listen") : NULL;
    if (cfg->broker.admin.enabled)
        add_listener(v, &n, cfg->broker.admin.listen, "broker.admin.listen",
                     at ? at : admin ? admin : broker);

    for (size_t i = 0; i < cfg->n_sources; i++) {
        const struct config_source *s = &cfg->sources[i];
        if (!s->schema || !s->schema->source || !s->opts)
            continue;
        for (const struct config_row *r = s->schema->source->rows; r->name; r++) {
            if (!(r->flags & CONFIG_F_LISTEN) || r->kind != CONFIG_STRING)
                continue;
            const char *value = *(char *const *)((const char *)s->opts + r->offset);
            const config_setting_t *m = config_setting_get_member(s->setting, r->name);
            snprintf(path, sizeof path, "sources[%zu].%s", i, r->name);
            add_listener(v, &n, value, path, m ? m : s->setting);
        }
    }

    for (size_t i = 1; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (v[i].port != v[j].port)
                continue;
            if (strcasecmp(v[i].host, v[j].host) == 0 || wildcard(v[i].host) ||
                wildcard(v[j].host)) {
                config_report(ctx, v[i].at, v[i].path, NULL,
                              "\"%s\" clashes with %s (\"%s\"): both cannot listen there",
                              v[i].value, v[j].path, v[j].value);
                break;
            }
        }
    }
    free(v);
}

static void root_check(struct config_ctx *ctx, void *obj,
                       const config_setting_t *s, const char *path)
{
    (void)s;
    (void)path;
    resolve_routes(ctx, obj);
    check_listeners(ctx, obj);
    check_itk_identity(ctx, obj);
}

static const struct config_row root_rows[] = {
    ROW_GROUP(struct config, broker, 0, &broker_section, "the broker itself"),
    ROW_GROUP(struct config, retention, 0, &retention_section,
         "how long delivered messages and refused ones are kept (audit records: always)"),
    ROW_GROUP(struct config, objections, 0, &objections_section,
         "the register of people who objected to sharing, per purpose (objected() in routes)"),
    ROW_LIST(struct config, tables, n_tables, &table_section,
         "lookup tables for transforms"),
    ROW_LIST(struct config, sources, n_sources, &source_section,
         "where messages come from"),
    ROW_LIST(struct config, destinations, n_destinations, &destination_section,
         "where messages go"),
    ROW_LIST(struct config, routes, n_routes, &route_section,
         "which messages go where, and how they are changed"),
    ROW_END
};

const struct config_section config_root_section = {
    .name = "config",
    .rows = root_rows,
    .size = sizeof(struct config),
    .check = root_check,
    .check_always = true,
};
