/*
 * tls.c: the TLS pieces every TCP adapter shares (see adapters/tls.h).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "config.h"

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;   /* never prompt on a terminal: an encrypted key is an error */
}

const char *tls_error_text(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()))
        last = e;
    buf[0] = '\0';
    if (last)
        ERR_error_string_n(last, buf, len);
    return buf;
}

SSL_CTX *tls_context_new(const SSL_METHOD *method, unsigned long extra_options,
                         char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        snprintf(err, errlen, "tls: cannot make a TLS context: %s",
                 tls_error_text(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        snprintf(err, errlen, "tls: cannot require TLS 1.2: %s", tls_error_text(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | extra_options);
    return ctx;
}

int tls_use_cert_key(SSL_CTX *ctx, const char *cert, const char *key, char *err, size_t errlen)
{
    char why[256];
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "tls.cert: cannot use %s: %s", cert, tls_error_text(why, sizeof why));
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "tls.key: cannot use %s: %s", key, tls_error_text(why, sizeof why));
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.key: %s does not go with the certificate %s: %s", key, cert,
                 tls_error_text(why, sizeof why));
        return -1;
    }
    return 0;
}

SSL_CTX *tls_client_context(const struct config_tls_client *t, char *err, size_t errlen)
{
    char why[256];
    const char *ca = t ? t->ca : NULL, *cert = t ? t->cert : NULL, *key = t ? t->key : NULL;
    if (!cert != !key) {
        snprintf(err, errlen, "tls: cert and key go together: give both or neither");
        return NULL;
    }
    SSL_CTX *ctx = tls_context_new(TLS_client_method(), 0, err, errlen);
    if (!ctx)
        return NULL;
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "tls.ca: cannot use %s: %s", ca ? ca : "the system's CAs",
                 tls_error_text(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert && tls_use_cert_key(ctx, cert, key, err, errlen)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct bufferevent *tls_client_bufferevent(struct event_base *base, SSL_CTX *ctx,
                                           const char *verify_name)
{
    if (!ctx)
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    SSL *ssl = SSL_new(ctx);
    struct in6_addr ip;
    bool is_ip = inet_pton(AF_INET, verify_name, &ip) == 1 ||
                 inet_pton(AF_INET6, verify_name, &ip) == 1;
    if (ssl && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), verify_name) != 1
                      : (SSL_set_tlsext_host_name(ssl, verify_name) != 1 ||
                         SSL_set1_host(ssl, verify_name) != 1))) {
        SSL_free(ssl);
        return NULL;
    }
    if (!ssl)
        return NULL;
    /* on failure libevent frees ssl itself (BEV_OPT_CLOSE_ON_FREE) */
    struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                                             BUFFEREVENT_SSL_CONNECTING,
                                                             BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

SSL_CTX *tls_server_context(const struct config_tls_server *t, const char *session_id,
                            char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = tls_context_new(TLS_server_method(), SSL_OP_CIPHER_SERVER_PREFERENCE,
                                   err, errlen);
    if (!ctx)
        return NULL;
    if (tls_use_cert_key(ctx, t->cert, t->key, err, errlen))
        goto fail;
    int verify = SSL_VERIFY_NONE;
    if (t->ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
        if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1 || !names) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            snprintf(err, errlen, "tls.ca: cannot use %s: %s", t->ca,
                     tls_error_text(why, sizeof why));
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);   /* takes names */
        /* With a CA but no requirement, a client may present a
           certificate (it must then verify) or not. */
        verify = SSL_VERIFY_PEER;
    }
    if (t->require_client_cert)
        verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, verify, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)session_id,
                                   (unsigned)strlen(session_id));
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

char *tls_peer_subject(SSL *ssl)
{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    X509 *cert = SSL_get1_peer_certificate(ssl);
#else
    X509 *cert = SSL_get_peer_certificate(ssl);
#endif
    if (!cert)
        return NULL;
    char *out = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n >= 0 && (out = malloc((size_t)n + 1))) {
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    X509_free(cert);
    return out;
}

void tls_client_error(struct bufferevent *bev, bool ssl, bool connecting, char *why,
                      size_t len)
{
    int e = EVUTIL_SOCKET_ERROR();
    unsigned long se, cause = 0;
    while ((se = bufferevent_get_openssl_error(bev)))
        if (ERR_GET_LIB(se))
            cause = se;
    long vr = ssl ? SSL_get_verify_result(bufferevent_openssl_get_ssl(bev)) : X509_V_OK;
    if (ssl && connecting && vr != X509_V_OK)
        snprintf(why, len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
    else if (cause)
        ERR_error_string_n(cause, why, len);
    else if (e)
        snprintf(why, len, "%s", evutil_socket_error_to_string(e));
    else
        snprintf(why, len, "the connection failed");
    ERR_clear_error();
}
