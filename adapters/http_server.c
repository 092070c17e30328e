/*
 * http_server.c: the HTTP(S) listener the http and itk sources share:
 * libevent's evhttp, plain or under TLS (bufferevent_openssl, the same
 * settings and checks as the MLLP source), the allow-list, max_connections,
 * the idle timeout, the client certificate subject check, the one path
 * and method, and requests kept safe while they wait for their answer.
 * What a request means is the source's (http_server_opts.handle).
 *
 * Connections: libevent accepts; the bufferevent callback (evhttp_set_bevcb)
 * makes each connection's bufferevent (TLS or not) and a record of ours,
 * which an urgent event then ties to its evhttp_connection: allow-list and
 * max_connections are checked there, before a byte is read, and the
 * connection's close callback is set, so that we hear of every close.
 * That close callback is how a request is never used after it is gone: a
 * request waiting for its answer belongs to its connection, and when the
 * connection is freed (the peer went and a write failed, the source was
 * stopped) the record forgets the request (or, when libevent has let go of
 * it, frees it itself); the answer that comes later is dropped.
 *
 * evhttp reads one request at a time per connection and stops reading
 * while its response is owed, so a connection holds at most one request
 * awaiting its answer; its idle timeout bounds a slow request, a slow
 * reader and a TLS handshake alike.
 */
#include "http.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "adapter.h"
#include "adapter_config.h"
#include "log.h"

#define BACKLOG       512
#define HEADERS_MAX   ((ev_ssize_t)64 << 10)   /* request line and headers */
#define RELISTEN_MS   1000                     /* pause after accept() fails (out of fds) */
#define PEER_MAX      (INET6_ADDRSTRLEN + 16)
#define NEVER_SEC     ((time_t)86400 * 365)    /* idle_timeout_ms = 0 */

/* One accepted connection. */
struct http_srv_conn {
    struct http_srv_conn         *next, *prev;  /* s->conns (or s->newborn: next only) */
    struct http_srv_conn         *hnext;        /* hash bucket, by evcon */
    struct http_server       *s;            /* NULL once the server has stopped */
    struct bufferevent       *bev;          /* until adopted */
    struct evhttp_connection *evcon;        /* adopted and open; NULL once closed */
    struct evhttp_request    *req;          /* waiting for its answer; NULL: none, or gone */
    bool                      refuse;       /* over max_connections (or stopping) at accept */
    bool                      waiting;      /* held, answer not yet come */
    bool                      req_ours;     /* libevent let go of req: ours to free */
    bool                      subject_ok;   /* the TLS subject was checked */
    char                      peer[PEER_MAX];
    char                     *tls_subject;
};

struct http_server {
    struct event_base     *base;
    /* copied from the options: the config may go on reload */
    char                  *component;
    char                  *name;
    char                  *listen;
    char                  *path;
    char                  *what;
    char                   host[256];
    unsigned               port;
    size_t                 max_connections;
    size_t                 max_body;
    struct timeval         idle;
    struct config_cidr    *allow;
    size_t                 n_allow;
    SSL_CTX               *ssl;
    char                 **subjects;
    size_t                 n_subjects;
    http_server_handler    handle;
    void                  *ctx;
    /* running */
    struct evhttp         *http;
    struct evhttp_bound_socket **bound;
    size_t                 n_bound;
    struct event          *adopt;       /* urgent: ties newborn records to their evcon */
    struct event          *relisten;
    struct http_srv_conn      *newborn;     /* made by bevcb, not yet adopted */
    struct http_srv_conn      *conns;       /* adopted: open, or closed awaiting their answer */
    struct http_srv_conn     **buckets;     /* open ones, by evcon */
    size_t                 n_buckets;   /* a power of two */
    size_t                 n_open;      /* newborn and open */
    size_t                 outstanding; /* held, answer not yet come */
    bool                   draining;
    struct adapter_stats   st;
};

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static struct log_ratelimit rl_refused = LOG_RATELIMIT_INIT(10000, 10);
static struct log_ratelimit rl_request = LOG_RATELIMIT_INIT(10000, 10);
static struct log_ratelimit rl_accept = LOG_RATELIMIT_INIT(10000, 2);

/* ------------------------------------------------------------ configure */

static int nomem(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int setup(struct http_server *s, const struct http_server_opts *o, char *err,
                 size_t errlen)
{
    char why[256];

    if (!(s->component = strdup(o->component)) || !(s->name = strdup(o->name)) ||
        !(s->listen = strdup(o->listen)) || !(s->path = strdup(o->path ? o->path : "/")) ||
        !(s->what = strdup(o->what)))
        return nomem(err, errlen);
    if (config_parse_hostport(o->listen, s->host, sizeof s->host, &s->port) != 0) {
        snprintf(err, errlen, "listen: \"%s\" is not host:port", o->listen);
        return -1;
    }
    if (!http_valid_path(s->path, why, sizeof why)) {
        snprintf(err, errlen, "path: %s", why);
        return -1;
    }
    s->max_connections = o->max_connections;
    s->max_body = o->max_body;
    s->idle = o->idle_timeout_ms > 0 ? ms_tv(o->idle_timeout_ms)
                                     : (struct timeval){ NEVER_SEC, 0 };
    if (o->allow && o->allow->n) {
        if (!(s->allow = calloc(o->allow->n, sizeof *s->allow)))
            return nomem(err, errlen);
        for (size_t i = 0; i < o->allow->n; i++, s->n_allow++)
            if (config_parse_cidr(o->allow->v[i], &s->allow[i]) != 0) {
                snprintf(err, errlen, "allow: \"%s\" is not an address block", o->allow->v[i]);
                return -1;
            }
    }
    if (o->tls) {
        if (!(s->ssl = tls_server_context(o->tls, o->tls_session_id, err, errlen)))
            return -1;
        if (o->tls->allowed_subjects.n) {
            if (!(s->subjects = calloc(o->tls->allowed_subjects.n, sizeof *s->subjects)))
                return nomem(err, errlen);
            for (size_t i = 0; i < o->tls->allowed_subjects.n; i++, s->n_subjects++)
                if (!(s->subjects[i] = strdup(o->tls->allowed_subjects.v[i])))
                    return nomem(err, errlen);
        }
    }
    s->n_buckets = 16;
    while (s->n_buckets < s->max_connections)
        s->n_buckets <<= 1;
    if (!(s->buckets = calloc(s->n_buckets, sizeof *s->buckets)))
        return nomem(err, errlen);
    return 0;
}

struct http_server *http_server_new(struct event_base *base, const struct http_server_opts *o,
                                    char *err, size_t errlen)
{
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) {
        nomem(err, errlen);
        return NULL;
    }
    s->base = base;
    s->handle = o->handle;
    s->ctx = o->ctx;
    if (setup(s, o, err, errlen) != 0) {
        http_server_free(s);
        return NULL;
    }
    return s;
}

/* ---------------------------------------------------------- connections */

static size_t bucket(const struct http_server *s, const struct evhttp_connection *evcon)
{
    uint64_t h = (uint64_t)(uintptr_t)evcon * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (s->n_buckets - 1);
}

static struct http_srv_conn *lookup(const struct http_server *s,
                                const struct evhttp_connection *evcon)
{
    struct http_srv_conn *c = s->buckets[bucket(s, evcon)];
    while (c && c->evcon != evcon)
        c = c->hnext;
    return c;
}

static void unhash(struct http_server *s, struct http_srv_conn *c)
{
    for (struct http_srv_conn **p = &s->buckets[bucket(s, c->evcon)]; *p; p = &(*p)->hnext)
        if (*p == c) {
            *p = c->hnext;
            c->hnext = NULL;
            return;
        }
}

/* Free an adopted record (open or not: its evcon is already gone or
 * about to go). */
static void conn_free(struct http_srv_conn *c)
{
    struct http_server *s = c->s;
    if (s) {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c->tls_subject);
    free(c);
}

static void on_close(struct evhttp_connection *evcon, void *arg);

/* libevent made a connection: its bufferevent is ours to make. Returning
 * NULL would have libevent make a plain one, so on failure the request
 * handler (which finds no record) refuses whatever comes. */
static struct bufferevent *on_bev(struct event_base *base, void *arg)
{
    struct http_server *s = arg;
    struct http_srv_conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = NULL;

    if (!c)
        return NULL;
    c->refuse = s->draining || s->n_open >= s->max_connections;
    if (s->ssl && !c->refuse) {
        SSL *ssl = SSL_new(s->ssl);
        /* on failure libevent frees ssl itself (BEV_OPT_CLOSE_ON_FREE) */
        bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                   BEV_OPT_CLOSE_ON_FREE)
                  : NULL;
        if (bev)
            bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        /* a refused connection is closed before anything is read from it */
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        free(c);
        log_error(s->component, "connection not set up: out of memory", "source=%s", s->name);
        return NULL;
    }
    c->s = s;
    c->bev = bev;
    c->next = s->newborn;
    s->newborn = c;
    s->n_open++;
    event_active(s->adopt, EV_TIMEOUT, 0);
    return bev;
}

/* Tie each newborn record to its evhttp_connection (the bufferevent's
 * callback argument, set by libevent after on_bev), or close it. Runs at
 * the urgent priority, before any I/O on the new connections. */
static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd, (void)what;

    while (s->newborn) {
        struct http_srv_conn *c = s->newborn;
        void *cbarg = NULL;
        s->newborn = c->next;
        c->next = NULL;
        bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
        struct evhttp_connection *evcon = cbarg;
        evutil_socket_t sock = bufferevent_getfd(c->bev);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int family = AF_UNSPEC;
        const void *addr = NULL;
        c->bev = NULL;

        memset(&ss, 0, sizeof ss);
        if (sock >= 0 && getpeername(sock, (struct sockaddr *)&ss, &sl) == 0)
            adapter_peer_format((struct sockaddr *)&ss, c->peer, sizeof c->peer, &family, &addr);
        else
            snprintf(c->peer, sizeof c->peer, "unknown");
        const char *why = !evcon                        ? "no connection"
                          : c->refuse && s->draining    ? "the source is stopping"
                          : c->refuse                   ? "max_connections reached"
                          : !adapter_peer_allowed(s->allow, s->n_allow, family, addr) ? "address not allowed"
                                                        : NULL;
        if (why) {
            s->st.refused_connections++;
            log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, s->component, "connection refused",
                                "source=%s peer=%s reason=%s max_connections=%zu", s->name,
                                c->peer, why, s->max_connections);
            s->n_open--;
            free(c);
            if (evcon)
                evhttp_connection_free(evcon);
            continue;
        }
        int one = 1;
        setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* answers are awaited */
        c->evcon = evcon;
        c->hnext = s->buckets[bucket(s, evcon)];
        s->buckets[bucket(s, evcon)] = c;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->st.connections++;
        evhttp_connection_set_closecb(evcon, on_close, c);
        log_debug(s->component, "connection opened", "source=%s peer=%s tls=%s open=%zu",
                  s->name, c->peer, s->ssl ? "yes" : "no", s->n_open);
    }
}

/* libevent is freeing the connection (the peer closed, a write or read
 * failed, a timeout, the source stopping). A request waiting for its
 * answer goes with it, unless libevent already let go of it. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
    struct http_srv_conn *c = arg;
    struct http_server *s = c->s;
    (void)evcon;

    unhash(s, c);
    c->evcon = NULL;
    s->n_open--;
    log_debug(s->component, "connection closed", "source=%s peer=%s unanswered=%d", s->name,
              c->peer, c->waiting);
    if (!c->waiting) {
        conn_free(c);
        return;
    }
    if (c->req && !evhttp_request_get_connection(c->req))
        c->req_ours = true;   /* detached by libevent: it will not free it */
    else
        c->req = NULL;        /* freed with the connection, right after this */
}

/* ------------------------------------------------------------- requests */

void http_server_reply_text(struct http_server *s, struct http_srv_conn *c,
                            struct evhttp_request *req, int code, const char *reason,
                            bool close, const char *text)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (code == 405)
        evhttp_add_header(h, "Allow", "POST");
    if (close || s->draining)
        evhttp_add_header(h, "Connection", "close");
    evbuffer_add_printf(evhttp_request_get_output_buffer(req), "%s\n", text);
    log_msg_ratelimited(&rl_request, LOG_LEVEL_WARN, s->component, "request refused",
                        "source=%s peer=%s status=%d reason=%s", s->name,
                        c ? c->peer : "unknown", code, text);
    evhttp_send_reply(req, code, reason, NULL);
}

void http_server_reply(struct http_server *s, struct http_srv_conn *c, struct evhttp_request *req,
                       int code, const char *reason, const char *content_type,
                       const void *body, size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    if (s->draining)
        evhttp_add_header(h, "Connection", "close");
    if (evbuffer_add(evhttp_request_get_output_buffer(req), body, len) != 0) {
        evhttp_clear_headers(h);
        http_server_reply_text(s, c, req, 500, "Internal Server Error", true, "out of memory");
        return;
    }
    evhttp_send_reply(req, code, reason, NULL);
}

/* Under TLS with allowed_subjects: is this connection's client one of
 * them? Checked once per connection, at its first request. */
static bool subject_allowed(struct http_server *s, struct http_srv_conn *c)
{
    if (!s->ssl || c->subject_ok)
        return true;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl)
        return false;
    c->tls_subject = tls_peer_subject(ssl);
    bool ok = s->n_subjects == 0;
    for (size_t i = 0; c->tls_subject && i < s->n_subjects && !ok; i++)
        ok = strcmp(c->tls_subject, s->subjects[i]) == 0;
    if (!ok) {
        s->st.tls_failures++;
        log_msg_ratelimited(&rl_refused, LOG_LEVEL_WARN, s->component, "TLS client refused",
                            "source=%s peer=%s reason=%s subject=%s", s->name, c->peer,
                            c->tls_subject ? "client certificate subject not allowed"
                                           : "no client certificate",
                            c->tls_subject);
        return false;
    }
    log_info(s->component, "TLS established",
             "source=%s peer=%s protocol=%s cipher=%s subject=%s", s->name, c->peer,
             SSL_get_version(ssl), SSL_get_cipher_name(ssl), c->tls_subject);
    c->subject_ok = true;
    return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_server *s = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct http_srv_conn *c = evcon ? lookup(s, evcon) : NULL;

    if (!c || c->waiting) {   /* no record: on_bev failed; waiting: cannot happen */
        http_server_reply_text(s, c, req, 503, "Service Unavailable", true,
                               "the broker could not set up this connection: try again");
        return;
    }
    if (!subject_allowed(s, c)) {
        http_server_reply_text(s, c, req, 403, "Forbidden", true,
                               c->tls_subject ? "client certificate subject not allowed"
                                              : "a client certificate is required");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (!path || strcmp(path, s->path) != 0) {
        char text[HTTP_PATH_MAX + 64];
        snprintf(text, sizeof text, "not found: %s are POSTed to %s", s->what, s->path);
        http_server_reply_text(s, c, req, 404, "Not Found", false, text);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        char text[256];
        snprintf(text, sizeof text, "method not allowed: POST %s, one per request", s->what);
        http_server_reply_text(s, c, req, 405, "Method Not Allowed", false, text);
        return;
    }
    if (s->draining) {
        http_server_reply_text(s, c, req, 503, "Service Unavailable", true,
                               "the broker is stopping: send the message again later");
        return;
    }
    s->handle(s->ctx, s, c, req);
}

void http_srv_conn_hold(struct http_srv_conn *c, struct evhttp_request *req)
{
    c->waiting = true;
    c->req = req;
    c->s->outstanding++;
}

void http_srv_conn_unhold(struct http_srv_conn *c)
{
    c->waiting = false;
    c->req = NULL;
    c->s->outstanding--;
}

struct evhttp_request *http_srv_conn_resume(struct http_srv_conn *c, struct http_server **sp)
{
    struct http_server *s = c->s;
    struct evhttp_request *req = c->req;

    c->waiting = false;
    c->req = NULL;
    if (s)
        s->outstanding--;
    if (!req || c->req_ours || !s) {   /* the connection went before the answer */
        if (s)
            log_info(s->component, "answer dropped: the client went before the commit",
                     "source=%s peer=%s", s->name, c->peer);
        if (req && c->req_ours)
            evhttp_request_free(req);
        conn_free(c);
        *sp = NULL;
        return NULL;
    }
    *sp = s;
    return req;
}

const char *http_srv_conn_peer(const struct http_srv_conn *c)
{
    return c->peer;
}

const char *http_srv_conn_subject(const struct http_srv_conn *c)
{
    return c->tls_subject;
}

struct adapter_stats *http_server_counters(struct http_server *s)
{
    return &s->st;
}

const char *http_server_name(const struct http_server *s)
{
    return s->name;
}

/* ------------------------------------------------------------ listening */

static void on_relisten(evutil_socket_t fd, short what, void *arg)
{
    struct http_server *s = arg;
    (void)fd, (void)what;
    for (size_t i = 0; !s->draining && i < s->n_bound; i++)
        evconnlistener_enable(evhttp_bound_socket_get_listener(s->bound[i]));
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct http_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    (void)l;
    log_msg_ratelimited(&rl_accept, LOG_LEVEL_ERROR, s->component, "accept failed: pausing",
                        "source=%s error=%s pause_ms=%d", s->name,
                        evutil_socket_error_to_string(e), RELISTEN_MS);
    /* Most likely out of file descriptors: accepting again at once would
       spin. Wait for connections to close. */
    for (size_t i = 0; i < s->n_bound; i++)
        evconnlistener_disable(evhttp_bound_socket_get_listener(s->bound[i]));
    struct timeval tv = ms_tv(RELISTEN_MS);
    evtimer_add(s->relisten, &tv);
}

int http_server_start(struct http_server *s, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP };
    struct addrinfo *res = NULL;
    char port[16];

    if (!(s->http = evhttp_new(s->base)) ||
        !(s->adopt = event_new(s->base, -1, 0, on_adopt, s)) ||
        !(s->relisten = evtimer_new(s->base, on_relisten, s)))
        return nomem(err, errlen);
    event_priority_set(s->adopt, 0);
    evhttp_set_bevcb(s->http, on_bev, s);
    evhttp_set_gencb(s->http, on_request, s);
    evhttp_set_allowed_methods(s->http, (ev_uint16_t)~0u);   /* the others get 405 from us */
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->max_body);
    evhttp_set_max_headers_size(s->http, HEADERS_MAX);
    evhttp_set_timeout_tv(s->http, &s->idle);
    evhttp_set_default_content_type(s->http, "text/plain; charset=utf-8");
    /* a body over the limit is read and discarded before the 413, so the
       sender reads the answer rather than a reset */
    evhttp_set_flags(s->http, EVHTTP_SERVER_LINGERING_CLOSE);

    snprintf(port, sizeof port, "%u", s->port);
    int rc = getaddrinfo(s->host, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "listen %s: cannot resolve %s: %s", s->listen, s->host,
                 gai_strerror(rc));
        return -1;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    if (!(s->bound = calloc(n, sizeof *s->bound))) {
        freeaddrinfo(res);
        return nomem(err, errlen);
    }
    /* Every address the host has; a source runs if one of them binds. */
    char first_err[256] = "";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char where[PEER_MAX];
        int family;
        const void *addr;
        adapter_peer_format(ai->ai_addr, where, sizeof where, &family, &addr);
        struct evconnlistener *l = evconnlistener_new_bind(
            s->base, NULL, NULL,
            LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, BACKLOG,
            ai->ai_addr, (int)ai->ai_addrlen);
        struct evhttp_bound_socket *b = l ? evhttp_bind_listener(s->http, l) : NULL;
        if (!b) {
            int e = errno;
            if (l)
                evconnlistener_free(l);
            if (!first_err[0])
                snprintf(first_err, sizeof first_err, "cannot listen on %s: %s", where,
                         strerror(e));
            log_warn(s->component, "cannot listen", "source=%s address=%s error=%s", s->name,
                     where, strerror(e));
            continue;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        s->bound[s->n_bound++] = b;
        log_info(s->component, "listening", "source=%s address=%s path=%s tls=%s", s->name,
                 where, s->path, s->ssl ? "yes" : "no");
    }
    freeaddrinfo(res);
    if (!s->n_bound) {
        snprintf(err, errlen, "listen %s: %s", s->listen, first_err[0] ? first_err : "no address");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- stopping */

static void close_listeners(struct http_server *s)
{
    for (size_t i = 0; s->http && i < s->n_bound; i++)
        evhttp_del_accept_socket(s->http, s->bound[i]);
    s->n_bound = 0;
    if (s->relisten)
        evtimer_del(s->relisten);
}

static size_t out_len(const struct http_srv_conn *c)
{
    struct bufferevent *bev = c->evcon ? evhttp_connection_get_bufferevent(c->evcon) : NULL;
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void http_server_drain(struct http_server *s)
{
    if (!s)
        return;
    s->draining = true;
    close_listeners(s);
    /* Close the connections with nothing owed; the others close once
       their answer is written (Connection: close). */
    for (struct http_srv_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->evcon && !c->waiting && out_len(c) == 0)
            evhttp_connection_free(c->evcon);   /* on_close frees c */
    }
}

bool http_server_busy(const struct http_server *s)
{
    if (!s)
        return false;
    if (s->outstanding)
        return true;
    for (const struct http_srv_conn *c = s->conns; c; c = c->next)
        if (out_len(c))
            return true;
    return false;
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    s->draining = true;
    if (s->adopt)
        event_free(s->adopt);
    if (s->relisten)
        event_free(s->relisten);
    s->adopt = s->relisten = NULL;
    /* Frees every connection: on_close runs for the adopted ones. */
    if (s->http)
        evhttp_free(s->http);
    s->http = NULL;
    while (s->newborn) {   /* their bufferevents went with evhttp */
        struct http_srv_conn *c = s->newborn;
        s->newborn = c->next;
        free(c);
    }
    /* What is left waits for its answer, which will free it. */
    for (struct http_srv_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        c->next = c->prev = NULL;
        c->s = NULL;
    }
    s->conns = NULL;
    free(s->bound);
    free(s->buckets);
    SSL_CTX_free(s->ssl);
    for (size_t i = 0; i < s->n_subjects; i++)
        free(s->subjects[i]);
    free(s->subjects);
    free(s->allow);
    free(s->component);
    free(s->name);
    free(s->listen);
    free(s->path);
    free(s->what);
    free(s);
}

void http_server_stats(const struct http_server *s, struct adapter_stats *out)
{
    memset(out, 0, sizeof *out);
    if (s) {
        *out = s->st;
        out->connections_open = s->n_open;
    }
}

/* ------------------------------------------------ what sources share */

bool http_media_type_in(const char *ct, const char *const *ok)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    for (size_t i = 0; ok[i]; i++)
        if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0)
            return true;
    return false;
}

static struct http_src *src_of(const struct adapter *a)
{
    return *(struct http_src **)a->state;
}

struct http_src *http_src_new(struct adapter *a, const struct ingest_policy *policy,
                              struct http_server_opts *so, char *err, size_t errlen)
{
    struct http_src *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(a->name))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *(struct http_src **)a->state = s;
    s->ingest = a->ingest;
    s->policy = *policy;
    so->ctx = s;
    s->srv = http_server_new(a->base, so, err, errlen);
    return s->srv ? s : NULL;
}

int http_src_start(struct adapter *a, char *err, size_t errlen)
{
    return http_server_start(src_of(a)->srv, err, errlen);
}

void http_src_drain(struct adapter *a)
{
    struct http_src *s = src_of(a);
    if (s)
        http_server_drain(s->srv);
}

bool http_src_busy(const struct adapter *a)
{
    const struct http_src *s = src_of(a);
    return s && http_server_busy(s->srv);
}

void http_src_stop(struct adapter *a)
{
    struct http_src *s = src_of(a);
    if (!s)
        return;
    http_server_free(s->srv);
    free(s->name);
    free(s);
    *(struct http_src **)a->state = NULL;
}

void http_src_stats(const struct adapter *a, struct adapter_stats *out)
{
    const struct http_src *s = src_of(a);
    memset(out, 0, sizeof *out);
    if (s)
        http_server_stats(s->srv, out);
}
