/*
 * mllp_config.c: the settings of MLLP sources and destinations (HL7 over
 * TCP with MLLP framing, optionally under TLS).
 */
#include "adapter_config.h"
#include "config_rows.h"

static const struct config_row mllp_source_rows[] = {
    ROW_STR(struct mllp_source_opts, listen, ROW_REQ | ROW_SUM | CONFIG_F_LISTEN, NULL,
            config_valid_hostport,
            "host:port to listen on: 127.0.0.1:2575, [::1]:2575, 0.0.0.0:2575, host.example:2575"),
    ROW_INT(struct mllp_source_opts, max_connections, 0, 64, 1, 10000,
            "connections open at once; more are refused"),
    ROW_INT(struct mllp_source_opts, idle_timeout_ms, 0, 600000, 0, 86400000,
            "close a connection idle this long; 0: never"),
    ROW_INT(struct mllp_source_opts, max_message_bytes, 0, 4194304, 1024, 268435456,
            "largest message accepted; a larger frame is answered AR (its first 64 KiB kept) and the connection reads on"),
    ROW_INT(struct mllp_source_opts, frame_timeout_ms, 0, 30000, 100, 3600000,
            "most time from a frame's start byte to its end bytes, and for a TLS handshake; then the connection is closed"),
    ROW_STRLIST(struct mllp_source_opts, allow, ROW_SUM, 0, 0, config_valid_cidr,
                "peer addresses allowed, as CIDR blocks (\"10.1.0.0/16\", \"::1/128\"); empty: any"),
    ROW_BOOL(struct mllp_source_opts, commit_ack, ROW_SUM, false,
             "MLLP release 2: answer each frame with the commit bytes (ACK/NAK) too"),
    ROW_GROUP_OPT(struct mllp_source_opts, tls, ROW_SUM, &config_tls_server_section,
                  "TLS (1.2 or later) on the listening socket; unset: plain TCP"),
    ROW_END
};

static const struct config_section mllp_source_section = {
    .name = "mllp source",
    .rows = mllp_source_rows,
    .size = sizeof(struct mllp_source_opts),
};

static const struct config_row mllp_destination_rows[] = {
    ROW_STR(struct mllp_destination_opts, connect, ROW_REQ | ROW_SUM, NULL, config_valid_hostport,
            "host:port of the subscriber"),
    ROW_INT(struct mllp_destination_opts, connect_timeout_ms, 0, 10000, 100, 600000,
            "most time to establish the connection (and TLS)"),
    ROW_INT(struct mllp_destination_opts, max_message_bytes, 0, 1048576, 1024, 268435456,
            "largest ACK read back from the subscriber"),
    ROW_GROUP_OPT(struct mllp_destination_opts, tls, ROW_SUM, &config_tls_client_section,
                  "TLS (1.2 or later) to the subscriber; unset: plain TCP"),
    ROW_END
};

static const struct config_section mllp_destination_section = {
    .name = "mllp destination",
    .rows = mllp_destination_rows,
    .size = sizeof(struct mllp_destination_opts),
};

const struct config_adapter_schema mllp_config_schema = {
    .type = "mllp",
    .source = &mllp_source_section,
    .destination = &mllp_destination_section,
};
