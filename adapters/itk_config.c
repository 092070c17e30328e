/*
 * itk_config.c: the settings of itk sources (ITK 2 SOAP requests received
 * over HTTPS) and itk destinations (the same sent on). URLs and paths are
 * checked as the http adapter checks them.
 */
#include "http.h"

#include <stdio.h>

#include "adapter_config.h"
#include "config_rows.h"
#include "itk.h"

static const struct config_row itk_source_rows[] = {
    ROW_STR(struct itk_source_opts, listen, ROW_REQ | ROW_SUM | CONFIG_F_LISTEN, NULL,
            config_valid_hostport,
            "host:port to listen on: 0.0.0.0:8443, [::1]:8443"),
    ROW_STR(struct itk_source_opts, path, ROW_SUM, "/itk", http_valid_path,
            "the path ITK requests are POSTed to; other paths are answered 404"),
    ROW_INT(struct itk_source_opts, max_connections, 0, 64, 1, 10000,
            "connections open at once; more are closed as they arrive"),
    ROW_INT(struct itk_source_opts, idle_timeout_ms, 0, 600000, 0, 86400000,
            "close a connection that sends or reads nothing this long; 0: never"),
    ROW_INT(struct itk_source_opts, max_message_bytes, 0, 10485760, 1024, 268435456,
            "largest request accepted; a larger one gets a SOAP fault (1001), never truncated"),
    ROW_INT(struct itk_source_opts, max_depth, 0, ITK_DEFAULT_MAX_DEPTH, 8, 255,
            "deepest XML element nesting accepted; deeper gets a SOAP fault (1003)"),
    ROW_STRLIST(struct itk_source_opts, allow, ROW_SUM, 0, 0, config_valid_cidr,
                "peer addresses allowed, as CIDR blocks (\"10.1.0.0/16\"); empty: any"),
    ROW_GROUP_OPT(struct itk_source_opts, tls, ROW_SUM, &config_tls_server_section,
                  "TLS (1.2 or later): certificate, key, client CAs, require_client_cert, allowed_subjects; unset: plain HTTP (only behind a TLS proxy)"),
    ROW_END
};

static const struct config_section itk_source_section = {
    .name = "itk source",
    .rows = itk_source_rows,
    .size = sizeof(struct itk_source_opts),
};

static const struct config_row itk_destination_rows[] = {
    ROW_STR(struct itk_destination_opts, url, ROW_REQ | ROW_SUM, NULL, http_valid_url,
            "where to POST each ITK request: https://host[:port]/path (also its wsa:To)"),
    ROW_STR(struct itk_destination_opts, from, ROW_SUM, NULL, http_valid_url,
            "this broker's own ITK endpoint URL, sent as wsa:From; unset: none"),
    ROW_INT(struct itk_destination_opts, connect_timeout_ms, 0, 10000, 100, 600000,
            "most time to establish the connection (and TLS)"),
    ROW_INT(struct itk_destination_opts, max_message_bytes, 0, 1048576, 1024, 268435456,
            "largest response read back; a longer one is a failure that is retried"),
    ROW_GROUP_OPT(struct itk_destination_opts, tls, ROW_SUM, &config_tls_client_section,
                  "for https URLs: CAs, client certificate, name to verify; unset: the system's CAs and the URL's host"),
    ROW_END
};

static void itk_destination_check(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                                  const char *path)
{
    const struct itk_destination_opts *o = obj;
    struct http_url u;
    char why[256];
    if (o->url && o->tls && http_url_parse(o->url, &u, why, sizeof why) == 0 && !u.tls)
        config_report(ctx, s, path, "tls", "a tls group needs an https:// url");
}

static const struct config_section itk_destination_section = {
    .name = "itk destination",
    .rows = itk_destination_rows,
    .size = sizeof(struct itk_destination_opts),
    .check = itk_destination_check,
};

const struct config_adapter_schema itk_config_schema = {
    .type = "itk",
    .source = &itk_source_section,
    .destination = &itk_destination_section,
};
