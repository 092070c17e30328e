/*
 * tls.h: what every TCP adapter's TLS layer shares (adapters/ only): a
 * context made the one way this broker allows (TLS 1.2 or later, no
 * compression or renegotiation, never a passphrase prompt), a certificate
 * and key loaded and checked against each other, and OpenSSL's errors as
 * text.
 */
#ifndef HL7BROKER_ADAPTERS_TLS_H
#define HL7BROKER_ADAPTERS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct bufferevent;
struct event_base;
struct config_tls_client;
struct config_tls_server;

/* The most recent OpenSSL error as text ("" when there is none); the
 * error queue is emptied. */
const char *tls_error_text(char *buf, size_t len);

/* A new context for method with the broker's rules, or NULL with err
 * filled. extra_options are or-ed into SSL_CTX_set_options. */
SSL_CTX *tls_context_new(const SSL_METHOD *method, unsigned long extra_options,
                         char *err, size_t errlen);

/* Load a PEM certificate chain and its unencrypted key and check that they
 * belong together. Returns 0, or -1 with err naming the setting and file. */
int tls_use_cert_key(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen);

/* A client context: the server verified against t->ca (or the system's
 * CAs when t or t->ca is NULL), with t->cert and t->key as the client
 * certificate when given (both or neither). NULL with err filled. */
SSL_CTX *tls_client_context(const struct config_tls_client *t, char *err, size_t errlen);

/* A server context from a source's tls group: t->cert and t->key
 * presented; with t->ca, client certificates signed by it are verified
 * (and required with t->require_client_cert). session_id names the
 * source's sessions ("hl7broker-mllp"). NULL with err filled. Checking
 * t->allowed_subjects is the caller's, once the handshake is done
 * (tls_peer_subject). */
SSL_CTX *tls_server_context(const struct config_tls_server *t, const char *session_id,
                            char *err, size_t errlen);

/* The peer's certificate subject as an RFC 2253 string
 * ("CN=pas.rlh.example,O=Barts Health"), malloc'd: the caller frees it.
 * NULL when there is no certificate (or no memory). */
char *tls_peer_subject(SSL *ssl);

/* A bufferevent for an outgoing connection, not yet connected: TLS over
 * ctx, checking that the server is verify_name (an IP address against the
 * certificate's IP entries; a name against its names, sent as SNI), or
 * plain TCP when ctx is NULL. NULL when it cannot be made. */
struct bufferevent *tls_client_bufferevent(struct event_base *base, SSL_CTX *ctx,
                                           const char *verify_name);

/* Why a client connection's bufferevent reported BEV_EVENT_ERROR, as a
 * phrase into why: a failed certificate check while connecting (ssl,
 * connecting), else the last OpenSSL error, else the socket error. The
 * OpenSSL error queue is left empty. */
void tls_client_error(struct bufferevent *bev, bool ssl, bool connecting, char *why,
                      size_t len);

#endif
