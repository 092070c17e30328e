/*
 * adapter.h: transports as plug-ins (DESIGN.md §5). An adapter type is a
 * table of functions, defined once; sources and destinations are
 * instances of a type, made from the config. The core never knows which
 * transport it talks to: it allocates each instance's private state
 * (state_size bytes, zeroed), calls the table, and takes messages through
 * ingest_submit().
 */
#ifndef HL7BROKER_ADAPTER_H
#define HL7BROKER_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct ingest;
struct config_source;
struct config_destination;
struct delivery;

#define ADAPTER_SOURCE      1u
#define ADAPTER_DESTINATION 2u

/* An instance. The core fills everything but state's contents. */
struct adapter {
    const struct adapter_type       *type;
    const char                      *name;   /* the configured name */
    unsigned                         role;   /* ADAPTER_SOURCE or ADAPTER_DESTINATION */
    const struct config_source      *src;    /* role SOURCE: its config (opts by type) */
    const struct config_destination *dst;    /* role DESTINATION */
    struct ingest                   *ingest; /* where a source submits */
    struct event_base               *base;
    void                            *state;  /* state_size bytes, zeroed */
    /* role DESTINATION: where outcomes go (see delivery_report) */
    void (*report)(void *ctx, const struct delivery *d, int outcome, const char *detail);
    void                            *report_ctx;
};

/* Counters an adapter keeps (metrics come later). */
struct adapter_stats {
    unsigned long long connections, connections_open, refused_connections;
    unsigned long long messages, bytes, discarded_bytes, oversize, tls_failures;
};

struct adapter_type {
    const char *name;           /* "mllp", "file", ... as in the config */
    unsigned    roles;          /* ADAPTER_SOURCE | ADAPTER_DESTINATION */
    size_t      state_size;

    /* Prepare the instance from its config (a->src or a->dst): TLS
       contexts, parsed addresses. Errors go into err (a sentence); return
       non-zero on failure. Nothing is opened yet. */
    int  (*configure)(struct adapter *a, char *err, size_t errlen);
    /* Start listening / connecting on base. */
    int  (*start)(struct adapter *a, char *err, size_t errlen);
    /* Destinations: send one delivery (the routing issue). */
    int  (*send)(struct adapter *a, const struct delivery *d);
    /* Stop taking new work (close listeners, stop reading); work in
       flight continues so its ACKs can be written. */
    void (*drain)(struct adapter *a);
    /* True while output (ACKs) is still waiting to be written. */
    bool (*busy)(const struct adapter *a);
    /* Close everything and free what configure/start made; the core then
       frees state. Must cope with a never-started instance. */
    void (*stop)(struct adapter *a);
    void (*stats)(const struct adapter *a, struct adapter_stats *s);
};

/* The registry: every built-in type, by name. NULL when unknown. */
const struct adapter_type *adapter_type_find(const char *name);

/* Make an instance of the type the config names (state allocated and
 * zeroed) and configure it. Returns NULL with err filled on failure. */
struct adapter *adapter_new_source(const struct config_source *src, struct event_base *base,
                                   struct ingest *ingest, char *err, size_t errlen);
/* The same for a destination; outcomes of send() go to report(ctx, ...)
 * (an enum delivery_outcome in outcome). */
struct adapter *adapter_new_destination(const struct config_destination *dst,
                                        struct event_base *base,
                                        void (*report)(void *ctx, const struct delivery *d,
                                                       int outcome, const char *detail),
                                        void *ctx, char *err, size_t errlen);
void adapter_free(struct adapter *a);   /* stop + free; NULL allowed */

/* A TCP peer (adapters/peer.c): sa as "ip:port" ("[v6]:port"; a v4
 * address mapped into v6 as plain v4) into out, with its family and a
 * pointer to its address inside sa (NULL for other families). */
struct sockaddr;
struct config_cidr;
void adapter_peer_format(const struct sockaddr *sa, char *out, size_t len, int *family,
                         const void **addr);
/* True when the allow-list is empty or one of its blocks holds addr. */
bool adapter_peer_allowed(const struct config_cidr *allow, size_t n_allow, int family,
                          const void *addr);

#endif
