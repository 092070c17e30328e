/*
 * mllp_client.c: a blocking MLLP client over TCP or TLS, for hl7ctl send,
 * the load generator and the tests. Sockets are non-blocking underneath so
 * that every connect, handshake, write and reply has a deadline.
 */
#include "mllp_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum { VT = 0x0b, FS = 0x1c, CR = 0x0d, COMMIT_ACK = 0x06, COMMIT_NAK = 0x15 };

struct mllp_client {
    int      fd;
    SSL_CTX *ctx;
    SSL     *ssl;
    int      timeout_ms;
    size_t   max_reply;
    char     peer[300];          /* "host:port" for messages */
    char     err[600];
    unsigned long replies;       /* reply frames read */
    struct buf out;              /* the frame being sent */
    /* bytes read but not yet consumed (the start of a following frame) */
    size_t   rpos, rlen;
    char     rbuf[16384];
};

const char *mllp_client_strerror(int code)
{
    switch (code) {
    case MLLP_OK: return "success";
    case MLLP_E_NOMEM: return "out of memory";
    case MLLP_E_RESOLVE: return "host name did not resolve";
    case MLLP_E_CONNECT: return "connection failed";
    case MLLP_E_TLS: return "TLS failure";
    case MLLP_E_TIMEOUT: return "timed out";
    case MLLP_E_CLOSED: return "connection closed by the peer";
    case MLLP_E_IO: return "read or write failed";
    case MLLP_E_TOO_LARGE: return "reply too large";
    case MLLP_E_PROTOCOL: return "not a well-formed MLLP frame";
    }
    return "unknown error";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(struct mllp_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct mllp_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return code;
}

/* The OpenSSL error queue (and a failed verification) as text, emptied. */
static void tls_reason(struct mllp_client *c, char *out, size_t n)
{
    size_t used = 0;
    out[0] = 0;
    if (c->ssl) {
        long v = SSL_get_verify_result(c->ssl);
        if (v != X509_V_OK)
            used += (size_t)snprintf(out, n, "%s", X509_verify_cert_error_string(v));
    }
    unsigned long e;
    while ((e = ERR_get_error()) != 0 && used + 1 < n) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        const char *r = ERR_reason_error_string(e);
        used += (size_t)snprintf(out + used, n - used, "%s%s", used ? "; " : "", r ? r : one);
    }
    if (!out[0])
        snprintf(out, n, "no reason given");
}

/* Wait for fd to become readable or writable before deadline. */
static int wait_fd(struct mllp_client *c, short events, int64_t deadline, const char *what)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return fail(c, MLLP_E_TIMEOUT, "%s: no progress %s within %d ms", c->peer,
                        what, c->timeout_ms);
        struct pollfd p = { .fd = c->fd, .events = events };
        int r = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return fail(c, MLLP_E_IO, "%s: poll: %s", c->peer, strerror(errno));
    }
}

/* Read some bytes (at most n) before deadline. Returns the count or a
 * negative code. */
static long io_read(struct mllp_client *c, char *p, size_t n, int64_t deadline)
{
    for (;;) {
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (r > 0)
                return r;
            int e = SSL_get_error(c->ssl, r);
            int w;
            if (e == SSL_ERROR_WANT_READ)
                w = wait_fd(c, POLLIN, deadline, "waiting for the reply");
            else if (e == SSL_ERROR_WANT_WRITE)
                w = wait_fd(c, POLLOUT, deadline, "waiting for the reply");
            else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
                return fail(c, MLLP_E_CLOSED, "%s closed the connection", c->peer);
            else if (e == SSL_ERROR_SYSCALL)
                return fail(c, errno == ECONNRESET ? MLLP_E_CLOSED : MLLP_E_IO,
                            "%s: read: %s", c->peer, strerror(errno));
            else {
                char why[400];
                tls_reason(c, why, sizeof why);
                return fail(c, MLLP_E_TLS, "%s: TLS: %s", c->peer, why);
            }
            if (w)
                return w;
        } else {
            ssize_t r = recv(c->fd, p, n, 0);
            if (r > 0)
                return r;
            if (r == 0)
                return fail(c, MLLP_E_CLOSED, "%s closed the connection", c->peer);
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return fail(c, errno == ECONNRESET ? MLLP_E_CLOSED : MLLP_E_IO,
                            "%s: read: %s", c->peer, strerror(errno));
            int w = wait_fd(c, POLLIN, deadline, "waiting for the reply");
            if (w)
                return w;
        }
    }
}

static int io_write_all(struct mllp_client *c, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        if (c->ssl) {
            ERR_clear_error();
            size_t done = 0;
            int r = SSL_write_ex(c->ssl, p, chunk, &done);
            if (r > 0) {
                p += done;
                n -= done;
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            int w;
            if (e == SSL_ERROR_WANT_WRITE)
                w = wait_fd(c, POLLOUT, deadline, "sending");
            else if (e == SSL_ERROR_WANT_READ)
                w = wait_fd(c, POLLIN, deadline, "sending");
            else if (e == SSL_ERROR_ZERO_RETURN)
                return fail(c, MLLP_E_CLOSED, "%s closed the connection", c->peer);
            else if (e == SSL_ERROR_SYSCALL)
                return fail(c, errno == EPIPE || errno == ECONNRESET ? MLLP_E_CLOSED : MLLP_E_IO,
                            "%s: write: %s", c->peer, errno ? strerror(errno) : "connection closed");
            else {
                char why[400];
                tls_reason(c, why, sizeof why);
                return fail(c, MLLP_E_TLS, "%s: TLS: %s", c->peer, why);
            }
            if (w)
                return w;
        } else {
            ssize_t r = send(c->fd, p, chunk, MSG_NOSIGNAL);
            if (r > 0) {
                p += r;
                n -= (size_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return fail(c, errno == EPIPE || errno == ECONNRESET ? MLLP_E_CLOSED : MLLP_E_IO,
                            "%s: write: %s", c->peer, strerror(errno));
            int w = wait_fd(c, POLLOUT, deadline, "sending");
            if (w)
                return w;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ connecting */

static int tcp_connect(struct mllp_client *c, const struct mllp_client_opts *o,
                       int64_t deadline)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(o->host, o->port, &hints, &res);
    if (g)
        return fail(c, MLLP_E_RESOLVE, "%s: cannot resolve: %s", c->peer, gai_strerror(g));
    int rc = fail(c, MLLP_E_CONNECT, "%s: no address to connect to", c->peer);
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        a->ai_protocol);
        if (fd < 0) {
            rc = fail(c, MLLP_E_CONNECT, "%s: socket: %s", c->peer, strerror(errno));
            continue;
        }
        c->fd = fd;
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            r = wait_fd(c, POLLOUT, deadline, "connecting");
            if (r) {
                rc = r;
                close(fd);
                c->fd = -1;
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            errno = soerr;
            r = soerr ? -1 : 0;
        }
        if (r < 0) {
            rc = fail(c, MLLP_E_CONNECT, "%s: connect: %s", c->peer, strerror(errno));
            close(fd);
            c->fd = -1;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    return rc;
}

static int tls_start(struct mllp_client *c, const struct mllp_client_opts *o,
                     int64_t deadline)
{
    char why[400];
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return fail(c, MLLP_E_NOMEM, "TLS: cannot make a context");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    int ok = o->ca ? SSL_CTX_load_verify_locations(c->ctx, o->ca, NULL)
                   : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
        tls_reason(c, why, sizeof why);
        return fail(c, MLLP_E_TLS, "TLS: cannot load the CA certificates %s: %s",
                    o->ca ? o->ca : "(system)", why);
    }
    if (o->cert || o->key) {
        if (!o->cert || !o->key)
            return fail(c, MLLP_E_TLS, "TLS: a client certificate needs both cert and key");
        if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert) != 1) {
            tls_reason(c, why, sizeof why);
            return fail(c, MLLP_E_TLS, "TLS: cannot load the certificate %s: %s", o->cert, why);
        }
        if (SSL_CTX_use_PrivateKey_file(c->ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(c->ctx) != 1) {
            tls_reason(c, why, sizeof why);
            return fail(c, MLLP_E_TLS, "TLS: cannot use the key %s: %s", o->key, why);
        }
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl)
        return fail(c, MLLP_E_NOMEM, "TLS: cannot make a connection");
    const char *name = o->server_name ? o->server_name : o->host;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1)
            return fail(c, MLLP_E_TLS, "TLS: cannot verify against the address %s", name);
    } else {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(c->ssl, name) != 1 || SSL_set_tlsext_host_name(c->ssl, name) != 1)
            return fail(c, MLLP_E_TLS, "TLS: cannot verify against the name %s", name);
    }
    SSL_set_fd(c->ssl, c->fd);
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(c->ssl, r);
        int w;
        if (e == SSL_ERROR_WANT_READ)
            w = wait_fd(c, POLLIN, deadline, "in the TLS handshake");
        else if (e == SSL_ERROR_WANT_WRITE)
            w = wait_fd(c, POLLOUT, deadline, "in the TLS handshake");
        else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
            return fail(c, MLLP_E_TLS, "%s: TLS handshake failed: %s", c->peer,
                        errno ? strerror(errno) : "the server closed the connection");
        else {
            tls_reason(c, why, sizeof why);
            return fail(c, MLLP_E_TLS, "%s: TLS handshake failed: %s", c->peer, why);
        }
        if (w)
            return w;
    }
    return 0;
}

int mllp_client_open(const struct mllp_client_opts *o, struct mllp_client **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    struct mllp_client *c = calloc(1, sizeof *c);
    if (!c) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return MLLP_E_NOMEM;
    }
    c->fd = -1;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    c->max_reply = o->max_reply ? o->max_reply : MLLP_CLIENT_MAX_REPLY;
    bool v6 = strchr(o->host, ':') != NULL;
    snprintf(c->peer, sizeof c->peer, "%s%s%s:%s", v6 ? "[" : "", o->host, v6 ? "]" : "",
             o->port);
    int64_t deadline = now_ms() + c->timeout_ms;
    int rc = tcp_connect(c, o, deadline);
    if (!rc && o->tls)
        rc = tls_start(c, o, deadline);
    if (rc) {
        if (err && errlen)
            snprintf(err, errlen, "%s", c->err);
        mllp_client_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void mllp_client_close(struct mllp_client *c)
{
    if (!c)
        return;
    if (c->ssl) {
        if (SSL_is_init_finished(c->ssl))
            SSL_shutdown(c->ssl);        /* best effort, non-blocking */
        SSL_free(c->ssl);
    }
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    buf_free(&c->out);
    free(c);
}

/* A connection dropped before any reply is most often a refusal at
 * connection time: say what it may have been. */
static int hint(struct mllp_client *c, int rc)
{
    if ((rc != MLLP_E_CLOSED && rc != MLLP_E_IO) || c->replies)
        return rc;
    size_t n = strlen(c->err);
    snprintf(c->err + n, sizeof c->err - n, "%s",
             c->ssl ? " (the server may have refused the connection: this client's "
                      "certificate or address, or too many connections)"
                    : " (the server may have refused the connection: this client's "
                      "address, or too many connections; or it expects TLS)");
    return rc;
}

int mllp_client_send(struct mllp_client *c, const char *msg, size_t len)
{
    c->err[0] = 0;
    /* One write per frame, so that a small one leaves in one segment. */
    static const char vt = VT, end[2] = { FS, CR };
    buf_reset(&c->out);
    if (buf_reserve(&c->out, len + 3) || buf_append(&c->out, &vt, 1) ||
        buf_append(&c->out, msg, len) || buf_append(&c->out, end, 2))
        return fail(c, MLLP_E_NOMEM, "out of memory framing a message of %zu bytes", len);
    return hint(c, io_write_all(c, c->out.p, c->out.len, now_ms() + c->timeout_ms));
}

int mllp_client_recv(struct mllp_client *c, struct buf *b, enum mllp_reply_kind *kind)
{
    c->err[0] = 0;
    buf_reset(b);
    int64_t deadline = now_ms() + c->timeout_ms;
    enum { OUTSIDE, INSIDE, AFTER_FS } st = OUTSIDE;
    for (;;) {
        while (c->rpos < c->rlen) {
            char *p = c->rbuf + c->rpos;
            size_t n = c->rlen - c->rpos;
            if (st == OUTSIDE) {
                c->rpos++;
                if (*p == VT)
                    st = INSIDE;
                else if (*p != '\r' && *p != '\n')
                    return fail(c, MLLP_E_PROTOCOL, "%s sent byte 0x%02x outside a frame "
                                "(a reply must start with <VT>, 0x0b)", c->peer,
                                (unsigned char)*p);
            } else if (st == INSIDE) {
                char *fs = memchr(p, FS, n);
                size_t take = fs ? (size_t)(fs - p) : n;
                if (b->len + take > c->max_reply)
                    return fail(c, MLLP_E_TOO_LARGE, "%s: the reply is larger than %zu bytes",
                                c->peer, c->max_reply);
                if (take && buf_append(b, p, take))
                    return fail(c, MLLP_E_NOMEM, "out of memory reading the reply");
                c->rpos += take + (fs ? 1 : 0);
                if (fs)
                    st = AFTER_FS;
            } else {
                if (*p != CR)
                    return fail(c, MLLP_E_PROTOCOL, "%s: <FS> not followed by <CR> "
                                "(byte 0x%02x) at the end of the reply", c->peer,
                                (unsigned char)*p);
                c->rpos++;
                c->replies++;
                *kind = MLLP_REPLY_HL7;
                if (b->len == 1 && b->p[0] == COMMIT_ACK)
                    *kind = MLLP_REPLY_COMMIT_ACK;
                else if (b->len == 1 && b->p[0] == COMMIT_NAK)
                    *kind = MLLP_REPLY_COMMIT_NAK;
                if (!b->p)
                    buf_append(b, "", 0);
                return 0;
            }
        }
        c->rpos = c->rlen = 0;
        long r = io_read(c, c->rbuf, sizeof c->rbuf, deadline);
        if (r == MLLP_E_TIMEOUT)
            return fail(c, MLLP_E_TIMEOUT, "%s: no %s within %d ms", c->peer,
                        st == OUTSIDE ? "reply" : "end of the reply frame", c->timeout_ms);
        if (r == MLLP_E_CLOSED && st != OUTSIDE)
            return fail(c, MLLP_E_CLOSED, "%s closed the connection in the middle of a "
                        "reply (%zu bytes read)", c->peer, b->len);
        if (r == MLLP_E_CLOSED)
            return hint(c, fail(c, MLLP_E_CLOSED, "%s closed the connection without "
                                "replying", c->peer));
        if (r < 0)
            return hint(c, (int)r);
        c->rlen = (size_t)r;
    }
}

const char *mllp_client_error(const struct mllp_client *c)
{
    return c->err;
}
