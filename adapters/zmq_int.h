/*
 * zmq_int.h: inside the "zmq" adapter type (zmq.c dispatches on a->role to
 * the destination there or to the source in zmq_source.c). Internal to
 * adapters/: the source's struct is here only so that zmq.c can size its
 * state; the helpers are shared by both roles and tested on their own.
 */
#ifndef HL7BROKER_ZMQ_INT_H
#define HL7BROKER_ZMQ_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "ingest.h"

/* ------------------------------------------------------ shared helpers */

/* True when a message waits on sock. ZMQ_FD is edge-triggered: it says
 * that something changed, and reading ZMQ_EVENTS (or any send or recv)
 * may consume the edge. So whoever stops reading with a message still
 * waiting must look again itself (with this) when it can read once more. */
bool zmq_readable(void *sock);

/* An EV_READ | EV_PERSIST event on sock's ZMQ_FD, added. NULL with
 * zmq_errno()/errno set on failure. Free it (event_free) before closing
 * the socket: the fd is the socket's. */
struct event *zmq_watch(struct event_base *base, void *sock, event_callback_fn cb, void *arg);

/* ---------------------------------------------------------- the source */

#define ZMQ_SOURCE_MAX_FRAMES 64        /* frames of one request kept; more are counted */
#define ZMQ_SOURCE_HEAD_KEEP  65536     /* bytes of a refused message kept for the AR */
#define ZMQ_SOURCE_CEILING    4         /* ZMQ_MAXMSGSIZE is this times max_message_bytes */
#define ZMQ_SOURCE_ID_SHOWN   32        /* bytes of a routing id shown in the peer */
#define ZMQ_SOURCE_PEER_MAX   (2 * ZMQ_SOURCE_ID_SHOWN + 320)

struct zmq_source_req;

struct zmq_source {
    struct adapter        *a;
    /* copied from the config in configure(): the config may go on reload */
    char                  *name;
    char                  *endpoint;
    int                    mode;          /* enum zmq_source_mode */
    bool                   bind;
    int                    rcvhwm;
    size_t                 max_inflight;  /* 1 for rep */
    struct ingest_policy   policy;
    /* running */
    void                  *zctx;
    void                  *sock;
    struct event          *io;            /* EV_READ on the socket's ZMQ_FD */
    struct event          *kick;          /* read again, from the loop */
    struct zmq_source_req *reqs;          /* submitted, reply not yet called */
    size_t                 inflight;
    bool                   draining;
    struct adapter_stats   st;
};

int  zmq_source_configure(struct adapter *a, char *err, size_t errlen);
int  zmq_source_start(struct adapter *a, char *err, size_t errlen);
void zmq_source_drain(struct adapter *a);
bool zmq_source_busy(const struct adapter *a);
void zmq_source_stop(struct adapter *a);
void zmq_source_stats(const struct adapter *a, struct adapter_stats *s);

/* Pure helpers (unit tested). */

/* A ROUTER request's frames (sizes[0..n), sizes[0] the routing id): the
 * index of its first body frame. The envelope is the id and any hops up
 * to and including the first empty frame (what REQ sockets and proxies
 * put); a DEALER that sends no empty delimiter has the id alone. */
size_t zmq_source_body_at(const size_t *sizes, size_t n);

/* The peer recorded with a message: addr (ZeroMQ's Peer-Address, or the
 * endpoint when it has none), then for ROUTER " id=" and the routing id in
 * hex (its first ZMQ_SOURCE_ID_SHOWN bytes, then ".."). Always terminated;
 * cut to fit len. */
void zmq_source_peer(char *out, size_t len, const char *addr, const unsigned char *id,
                     size_t id_len);

#endif
