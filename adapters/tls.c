/*
 * tls.c: the TLS pieces every TCP adapter shares (see adapters/tls.h).
 */
#include "tls.h"

#include <stdio.h>

#include <openssl/err.h>

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
