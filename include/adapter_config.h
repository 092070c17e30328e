/*
 * adapter_config.h: the settings each adapter type adds to a source or a
 * destination, as the structs the loader fills (struct config_source.opts
 * and struct config_destination.opts) and the schemas registered in
 * config_adapter_schemas[]. A new adapter type adds its structs and its
 * schema here and in adapters/.
 */
#ifndef HL7BROKER_ADAPTER_CONFIG_H
#define HL7BROKER_ADAPTER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* --------------------------------------------------------------- mllp */

struct mllp_source_opts {
    char                     *listen;             /* host:port */
    int64_t                   max_connections;
    int64_t                   idle_timeout_ms;    /* 0: never */
    int64_t                   max_message_bytes;
    int64_t                   frame_timeout_ms;
    struct config_strlist     allow;              /* CIDRs; empty: any peer */
    bool                      commit_ack;         /* MLLP release 2 commit bytes */
    struct config_tls_server *tls;                /* NULL: plain TCP */
};

struct mllp_destination_opts {
    char                     *connect;            /* host:port */
    int64_t                   connect_timeout_ms;
    int64_t                   max_message_bytes;  /* of the ACK read back */
    struct config_tls_client *tls;                /* NULL: plain TCP */
};

extern const struct config_adapter_schema mllp_config_schema;

/* --------------------------------------------------------------- file */

struct file_source_opts {
    char   *directory;
    int64_t poll_ms;
    int64_t max_message_bytes;
};

struct file_destination_opts {
    char *directory;
};

extern const struct config_adapter_schema file_config_schema;

#endif
