/*
 * zmq_config.c: the settings of ZeroMQ sources (a REP or ROUTER socket that
 * answers each message with its ACK) and destinations (PUB for best-effort
 * notification, REQ for delivery confirmed by the subscriber's reply).
 */
#include <stdio.h>
#include <string.h>

#include "adapter_config.h"
#include "config_rows.h"

static const char *const zmq_mode_choices[] = { "pub", "req", NULL };
static const char *const zmq_source_mode_choices[] = { "router", "rep", NULL };

/* A ZeroMQ endpoint of a transport that takes a fixed address. */
static bool valid_endpoint(const char *v, char *why, size_t whylen)
{
    static const char *const transports[] = { "tcp://", "ipc://", "inproc://", NULL };
    for (size_t i = 0; transports[i]; i++) {
        size_t n = strlen(transports[i]);
        if (strncmp(v, transports[i], n) == 0 && v[n])
            return true;
    }
    snprintf(why, whylen, "not a ZeroMQ endpoint: expected tcp://host:port, ipc://path "
                          "or inproc://name");
    return false;
}

/* bind's default depends on mode: a publisher usually binds and its
 * subscribers connect; a requester connects to its subscriber. */
static void zmq_destination_check(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                                  const char *path)
{
    struct zmq_destination_opts *o = obj;
    (void)ctx, (void)path;
    if (!s || !config_setting_get_member(s, "bind"))
        o->bind = o->mode == ZMQ_DEST_PUB;
}

static const struct config_row zmq_destination_rows[] = {
    ROW_STR(struct zmq_destination_opts, endpoint, ROW_REQ | ROW_SUM, NULL, valid_endpoint,
            "ZeroMQ endpoint: tcp://127.0.0.1:5556, ipc:///run/hl7/out.sock"),
    ROW_ENUM(struct zmq_destination_opts, mode, ROW_SUM, "req", zmq_mode_choices,
             "pub: best effort, topic frame \"ADT^A01\" then the payload; req: one frame, "
             "confirmed by a reply \"OK\" (or refused by \"ERR <text>\")"),
    ROW_BOOL(struct zmq_destination_opts, bind, ROW_SUM, false,
             "bind the endpoint (true) or connect to it (false); unset: true for pub, "
             "false for req"),
    ROW_INT(struct zmq_destination_opts, sndhwm, 0, 1000, 0, 10000000,
            "messages queued per peer before sends are refused (retried later); 0: no limit"),
    ROW_END
};

static const struct config_section zmq_destination_section = {
    .name = "zmq destination",
    .rows = zmq_destination_rows,
    .size = sizeof(struct zmq_destination_opts),
    .check = zmq_destination_check,
};

static const struct config_row zmq_source_rows[] = {
    ROW_STR(struct zmq_source_opts, endpoint, ROW_REQ | ROW_SUM, NULL, valid_endpoint,
            "ZeroMQ endpoint senders reach: tcp://127.0.0.1:5560, ipc:///run/hl7/in.sock"),
    ROW_ENUM(struct zmq_source_opts, mode, ROW_SUM, "router", zmq_source_mode_choices,
             "router: many requests in flight from many REQ or DEALER clients; rep: "
             "lock-step, one request at a time; each request is one frame, answered by "
             "its ACK once committed"),
    ROW_BOOL(struct zmq_source_opts, bind, ROW_SUM, true,
             "bind the endpoint (true) or connect to it (false)"),
    ROW_INT(struct zmq_source_opts, max_message_bytes, 0, 4194304, 1024, 268435456,
            "largest message accepted; a larger one is answered AR (up to 4 times this; "
            "beyond, ZeroMQ drops the sender's connection with no answer)"),
    ROW_INT(struct zmq_source_opts, max_inflight, 0, 256, 1, 100000,
            "router: requests awaiting their ACK at once; more wait in ZeroMQ's queue"),
    ROW_INT(struct zmq_source_opts, rcvhwm, 0, 1000, 1, 10000000,
            "messages ZeroMQ queues per sender before it stops reading from it"),
    ROW_END
};

static const struct config_section zmq_source_section = {
    .name = "zmq source",
    .rows = zmq_source_rows,
    .size = sizeof(struct zmq_source_opts),
};

const struct config_adapter_schema zmq_config_schema = {
    .type = "zmq",
    .source = &zmq_source_section,
    .destination = &zmq_destination_section,
};
