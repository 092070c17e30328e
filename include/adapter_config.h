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
    char   *directory;          /* where files are dropped */
    char   *work_dir;           /* claimed files; unset: <directory>/.work */
    char   *done_dir;           /* committed files; unset: <directory>/done */
    char   *error_dir;          /* files with a refused message; unset: <directory>/error */
    int64_t poll_ms;
    int64_t settle_ms;          /* a file unchanged this long is complete */
    int64_t max_message_bytes;
    int64_t max_file_bytes;
};

struct file_destination_opts {
    char *directory;
};

extern const struct config_adapter_schema file_config_schema;

/* ---------------------------------------------------------------- zmq */

enum zmq_dest_mode {
    ZMQ_DEST_PUB = 0,   /* best effort: topic frame + payload frame */
    ZMQ_DEST_REQ = 1,   /* one frame, confirmed by the subscriber's reply */
};

struct zmq_destination_opts {
    char   *endpoint;   /* "tcp://127.0.0.1:5556", "ipc:///run/x.sock" */
    int     mode;       /* enum zmq_dest_mode */
    bool    bind;       /* absent: true for pub, false for req */
    int64_t sndhwm;     /* messages queued per peer; 0: no limit */
};

enum zmq_source_mode {
    ZMQ_SRC_ROUTER = 0,   /* many requests in flight, from many clients */
    ZMQ_SRC_REP = 1,      /* lock-step: one request at a time */
};

struct zmq_source_opts {
    char   *endpoint;           /* "tcp://127.0.0.1:5560", "ipc:///run/x.sock" */
    int     mode;               /* enum zmq_source_mode */
    bool    bind;               /* false: connect to the endpoint */
    int64_t max_message_bytes;
    int64_t max_inflight;       /* router: requests awaiting their ACK at once */
    int64_t rcvhwm;             /* messages queued per peer before ZeroMQ holds back */
};

extern const struct config_adapter_schema zmq_config_schema;

/* --------------------------------------------------------------- http */

struct http_source_opts {
    char                     *listen;             /* host:port */
    char                     *path;               /* the one path POSTs go to */
    int64_t                   max_connections;
    int64_t                   idle_timeout_ms;    /* 0: never */
    int64_t                   max_message_bytes;  /* of a request body */
    struct config_strlist     allow;              /* CIDRs; empty: any peer */
    struct config_tls_server *tls;                /* NULL: plain HTTP */
};

struct http_destination_opts {
    char                     *url;                /* http[s]://host[:port][/path] */
    struct config_strlist     headers;            /* "Name: value", added to each request */
    int64_t                   connect_timeout_ms;
    int64_t                   max_message_bytes;  /* of the response read back */
    struct config_tls_client *tls;                /* https only; NULL: defaults */
};

extern const struct config_adapter_schema http_config_schema;

/* ---------------------------------------------------------------- itk */

struct itk_source_opts {
    char                     *listen;             /* host:port */
    char                     *path;               /* the one path requests are POSTed to */
    int64_t                   max_connections;
    int64_t                   idle_timeout_ms;    /* 0: never */
    int64_t                   max_message_bytes;  /* of a request body */
    int64_t                   max_depth;          /* XML element nesting */
    struct config_strlist     allow;              /* CIDRs; empty: any peer */
    struct config_tls_server *tls;                /* NULL: plain HTTP (tests, a TLS proxy) */
};

struct itk_destination_opts {
    char                     *url;                /* http[s]://host[:port][/path] */
    char                     *from;               /* wsa:From address; NULL: none */
    int64_t                   connect_timeout_ms;
    int64_t                   max_message_bytes;  /* of the response read back */
    struct config_tls_client *tls;                /* https only; NULL: defaults */
};

extern const struct config_adapter_schema itk_config_schema;

#endif
