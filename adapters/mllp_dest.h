/*
 * mllp_dest.h: the MLLP destination, inside the "mllp" adapter type
 * (mllp.c dispatches on a->role to the source or to these). Internal to
 * adapters/: the struct is here only so that mllp.c can size its state.
 */
#ifndef HL7BROKER_MLLP_DEST_H
#define HL7BROKER_MLLP_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/time.h>

#include <openssl/ssl.h>

#include "adapter.h"
#include "mllp.h"

struct delivery;
struct bufferevent;
struct event;

enum mllp_dest_conn {
    MLLP_DEST_CLOSED,
    MLLP_DEST_CONNECTING,   /* TCP connect and, under TLS, the handshake */
    MLLP_DEST_OPEN,
};

struct mllp_dest {
    struct adapter        *a;
    struct event_base     *base;
    /* copied from the config in configure() */
    char                  *name;
    char                  *connect;       /* host:port, for messages */
    char                   host[256];
    unsigned               port;
    struct timeval         connect_to;
    struct timeval         ack_to;        /* tv_sec < 0: no ACK timeout */
    size_t                 max_reply;
    int                    on_error_ack;  /* enum config_on_error_ack */
    SSL_CTX               *ssl;
    char                  *verify_name;   /* tls.server_name, or the connect host */
    /* running */
    bool                   started;
    enum mllp_dest_conn    conn;
    struct bufferevent    *bev;
    struct event          *timer;         /* connect+handshake, then the ACK */
    struct event          *later;         /* reports a failure found inside send() */
    char                   later_detail[1024];
    struct mllp_framer     fr;
    const struct delivery *d;             /* in flight; NULL when idle */
    struct adapter_stats   st;
};

int  mllp_dest_configure(struct adapter *a, char *err, size_t errlen);
int  mllp_dest_start(struct adapter *a, char *err, size_t errlen);
int  mllp_dest_send(struct adapter *a, const struct delivery *d);
bool mllp_dest_busy(const struct adapter *a);
void mllp_dest_stop(struct adapter *a);
void mllp_dest_stats(const struct adapter *a, struct adapter_stats *s);

#endif
