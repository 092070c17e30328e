/*
 * mllp_client.h: a small blocking MLLP client (plain TCP or TLS 1.2+), the
 * sending side that hl7ctl send and the load generator use. One message
 * out, one reply back, every step bounded by a deadline.
 *
 * Framing is MLLP: <VT> message <FS><CR>. A reply frame holding exactly one
 * byte, <ACK> (0x06) or <NAK> (0x15), is an MLLP release 2 commit
 * acknowledgement and is reported as such; anything else is the HL7 ACK.
 *
 * Thread safety: a client belongs to one thread at a time; distinct
 * clients may be used from distinct threads.
 */
#ifndef HL7BROKER_MLLP_CLIENT_H
#define HL7BROKER_MLLP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* 0 is success; failures are these negative codes. The client's last
 * error text (mllp_client_error) says what happened in a sentence. */
enum mllp_client_err {
    MLLP_OK = 0,
    MLLP_E_NOMEM = -200,
    MLLP_E_RESOLVE = -201,      /* host name did not resolve */
    MLLP_E_CONNECT = -202,      /* TCP connection refused or failed */
    MLLP_E_TLS = -203,          /* TLS setup, handshake or verification failed */
    MLLP_E_TIMEOUT = -204,      /* the deadline passed */
    MLLP_E_CLOSED = -205,       /* the peer closed the connection */
    MLLP_E_IO = -206,           /* a read or write failed (errno in the text) */
    MLLP_E_TOO_LARGE = -207,    /* a reply exceeds max_reply */
    MLLP_E_PROTOCOL = -208,     /* bytes that are not a well-formed MLLP frame */
};

const char *mllp_client_strerror(int code);

struct mllp_client_opts {
    const char *host;           /* name or address */
    const char *port;           /* number or service name */
    int         timeout_ms;     /* connect + handshake, and each reply; <= 0: 10000 */
    size_t      max_reply;      /* largest reply frame; 0: 16 MiB */
    /* TLS: off unless tls is true. ca verifies the server (NULL: the
       system's trust store); cert/key present a client certificate;
       server_name is checked against the certificate (a DNS name or an IP
       address) and sent as SNI when it is a name; NULL: host. */
    bool        tls;
    const char *ca, *cert, *key, *server_name;
};

#define MLLP_CLIENT_MAX_REPLY ((size_t)16 << 20)

struct mllp_client;

/* Connect (and handshake). On failure returns a negative code, *out is
 * NULL, and err (if given) holds a sentence naming the peer and cause. */
int mllp_client_open(const struct mllp_client_opts *o, struct mllp_client **out,
                     char *err, size_t errlen);

/* Close and free; NULL allowed. */
void mllp_client_close(struct mllp_client *c);

/* Write one frame: <VT> msg <FS><CR>. The bytes are sent as given. */
int mllp_client_send(struct mllp_client *c, const char *msg, size_t len);

enum mllp_reply_kind {
    MLLP_REPLY_HL7,             /* an HL7 message (normally the ACK) */
    MLLP_REPLY_COMMIT_ACK,      /* release 2 commit acknowledgement */
    MLLP_REPLY_COMMIT_NAK,      /* release 2 negative commit acknowledgement */
};

/* Read the next reply frame into b (reset first; the frame's content
 * without <VT> and <FS><CR>), waiting at most timeout_ms. Bytes between
 * frames other than CR and LF are a protocol error. */
int mllp_client_recv(struct mllp_client *c, struct buf *b, enum mllp_reply_kind *kind);

/* The last error, as a sentence; "" when none. Valid until the next call. */
const char *mllp_client_error(const struct mllp_client *c);

#endif
