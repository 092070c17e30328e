/*
 * config_valid.c: the value checks settings tables use (names, host:port,
 * CIDR blocks, files, certificates), and the parsers behind them that
 * adapters reuse to act on the same values.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "log.h"

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), false)

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool config_valid_ods(const char *v, char *why, size_t whylen)
{
    size_t n = strlen(v);
    if (n < 3 || n > 10) {
        snprintf(why, whylen, "an ODS code is 3 to 10 letters and digits (\"X26\", \"R1H\")");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9'))) {
            snprintf(why, whylen, "an ODS code is upper-case letters and digits: byte %zu is not", i);
            return false;
        }
    }
    return true;
}

bool config_valid_name(const char *v, char *why, size_t whylen)
{
    size_t n = strlen(v);
    if (n == 0)
        return WHY("a name cannot be empty");
    if (n > 64)
        return WHY("a name can be at most 64 characters long");
    if (!is_alnum(v[0]))
        return WHY("a name must start with a letter or a digit");
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(v[i]) && v[i] != '-' && v[i] != '_' && v[i] != '.')
            return WHY("a name can hold only letters, digits, '-', '_' and '.'");
    return true;
}

bool config_valid_nonempty(const char *v, char *why, size_t whylen)
{
    if (!*v)
        return WHY("cannot be empty");
    return true;
}

/* A DNS name (RFC 1123 labels) or a dotted IPv4 address. */
static bool host_ok(const char *h, size_t n, char *why, size_t whylen)
{
    char tmp[256];
    bool numeric = true;

    if (n == 0)
        return WHY("the host is empty");
    if (n > 253)
        return WHY("the host name is longer than 253 characters");
    for (size_t i = 0; i < n; i++)
        if (!(h[i] == '.' || (h[i] >= '0' && h[i] <= '9')))
            numeric = false;
    if (numeric) {
        struct in_addr a;
        memcpy(tmp, h, n);
        tmp[n] = '\0';
        if (inet_pton(AF_INET, tmp, &a) != 1)
            return WHY("\"%s\" is not a valid IPv4 address", tmp);
        return true;
    }
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || h[i] == '.') {
            if (label == 0)
                return WHY("the host name has an empty label");
            if (label > 63)
                return WHY("a label of the host name is longer than 63 characters");
            if (h[i - 1] == '-')
                return WHY("a label of the host name ends with '-'");
            label = 0;
            continue;
        }
        if (!is_alnum(h[i]) && h[i] != '-')
            return WHY("the host name holds '%c'; use letters, digits, '-' and '.'", h[i]);
        if (label == 0 && h[i] == '-')
            return WHY("a label of the host name starts with '-'");
        label++;
    }
    return true;
}

bool config_valid_hostname(const char *v, char *why, size_t whylen)
{
    struct in6_addr a6;
    if (inet_pton(AF_INET6, v, &a6) == 1)
        return true;
    return host_ok(v, strlen(v), why, whylen);
}

static bool parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port,
                           char *why, size_t whylen)
{
    const char *h, *p;
    size_t hl;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (!close)
            return WHY("an IPv6 address needs a closing ']', e.g. [::1]:2575");
        h = s + 1;
        hl = (size_t)(close - h);
        if (hl == 0 || hl >= sizeof tmp)
            return WHY("not a valid IPv6 address in [ ]");
        memcpy(tmp, h, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return WHY("\"%s\" is not a valid IPv6 address", tmp);
        if (close[1] != ':')
            return WHY("expected :port after ']', e.g. [::1]:2575");
        p = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return WHY("expected host:port, e.g. 127.0.0.1:2575");
        h = s;
        hl = (size_t)(colon - s);
        if (memchr(h, ':', hl))
            return WHY("an IPv6 address must be in brackets, e.g. [::1]:2575");
        if (!host_ok(h, hl, why, whylen))
            return false;
        p = colon + 1;
    }

    size_t pl = strlen(p);
    unsigned long v = 0;
    if (pl == 0 || pl > 5 || strspn(p, "0123456789") != pl)
        return WHY("the port must be a number from 1 to 65535");
    for (size_t i = 0; i < pl; i++)
        v = v * 10 + (unsigned long)(p[i] - '0');
    if (v < 1 || v > 65535)
        return WHY("the port must be a number from 1 to 65535");
    if (host) {
        if (hl >= hostlen)
            return WHY("the host is too long");
        memcpy(host, h, hl);
        host[hl] = '\0';
    }
    if (port)
        *port = (unsigned)v;
    return true;
}

bool config_valid_hostport(const char *v, char *why, size_t whylen)
{
    return parse_hostport(v, NULL, 0, NULL, why, whylen);
}

int config_parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port)
{
    char why[256];
    return parse_hostport(s, host, hostlen, port, why, sizeof why) ? 0 : -1;
}

static bool parse_cidr(const char *s, struct config_cidr *out, char *why, size_t whylen)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    struct config_cidr c = { 0 };

    if (al == 0 || al >= sizeof addr)
        return WHY("expected an address block such as 10.0.0.0/8 or ::1/128");
    memcpy(addr, s, al);
    addr[al] = '\0';
    c.family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    unsigned max = c.family == AF_INET ? 32 : 128;
    if (inet_pton(c.family, addr, c.addr) != 1)
        return WHY("\"%s\" is not a valid %s address", addr,
                   c.family == AF_INET ? "IPv4" : "IPv6");
    c.prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t pl = strlen(p);
        if (pl == 0 || pl > 3 || strspn(p, "0123456789") != pl)
            return WHY("the prefix length after '/' must be a number from 0 to %u", max);
        c.prefix = 0;
        for (size_t i = 0; i < pl; i++)
            c.prefix = c.prefix * 10 + (unsigned)(p[i] - '0');
        if (c.prefix > max)
            return WHY("the prefix length after '/' must be a number from 0 to %u", max);
    }

    /* Bits past the prefix are a mistake (10.1.2.3/8 meant 10.0.0.0/8?). */
    struct config_cidr net = c;
    for (unsigned bit = c.prefix; bit < max; bit++)
        net.addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
    if (memcmp(net.addr, c.addr, max / 8) != 0) {
        char shown[INET6_ADDRSTRLEN];
        inet_ntop(c.family, net.addr, shown, sizeof shown);
        return WHY("has host bits set after the first %u; the block is %s/%u",
                   c.prefix, shown, c.prefix);
    }
    if (out)
        *out = c;
    return true;
}

bool config_valid_cidr(const char *v, char *why, size_t whylen)
{
    return parse_cidr(v, NULL, why, whylen);
}

int config_parse_cidr(const char *s, struct config_cidr *out)
{
    char why[256];
    return parse_cidr(s, out, why, sizeof why) ? 0 : -1;
}

bool config_cidr_match(const struct config_cidr *c, int family, const void *addr)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    const unsigned char *a = addr;

    if (c->family == AF_INET && family == AF_INET6 && memcmp(a, mapped, 12) == 0) {
        a += 12;
        family = AF_INET;
    }
    if (family != c->family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a, c->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xFFu << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

bool config_valid_file(const char *v, char *why, size_t whylen)
{
    struct stat st;

    if (!*v)
        return WHY("a file name cannot be empty");
    int fd = open(v, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return WHY("cannot read the file: %s", strerror(errno));
    int rc = fstat(fd, &st);
    close(fd);
    if (rc != 0)
        return WHY("cannot read the file: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return WHY("is not a regular file");
    return true;
}

bool config_valid_subject(const char *v, char *why, size_t whylen)
{
    if (!*v || !strchr(v, '='))
        return WHY("expected a certificate subject such as \"CN=pas.example,O=Trust\"");
    return true;
}

bool config_valid_facility(const char *v, char *why, size_t whylen)
{
    if (log_facility_parse(v) < 0)
        return WHY("the syslog facility must be \"daemon\", \"user\" or \"local0\" to \"local7\"");
    return true;
}

/* ------------------------------------------------------------ PEM files */

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(bool *)u = true;
    return -1;
}

bool config_check_pem(const char *cert, const char *key, char *why, size_t whylen)
{
    BIO *cb = NULL, *kb = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    bool ok = false, encrypted = false;

    if (!(cb = BIO_new_file(cert, "r"))) {
        snprintf(why, whylen, "cannot read %s", cert);
        goto out;
    }
    if (!(x = PEM_read_bio_X509(cb, NULL, NULL, NULL))) {
        snprintf(why, whylen, "%s holds no PEM certificate", cert);
        goto out;
    }
    if (key) {
        if (!(kb = BIO_new_file(key, "r"))) {
            snprintf(why, whylen, "cannot read %s", key);
            goto out;
        }
        if (!(pk = PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, &encrypted))) {
            if (encrypted)
                snprintf(why, whylen, "%s is encrypted; the broker needs a key without a "
                         "passphrase (protect the file with its permissions)", key);
            else
                snprintf(why, whylen, "%s holds no PEM private key", key);
            goto out;
        }
        if (X509_check_private_key(x, pk) != 1) {
            snprintf(why, whylen, "the key %s does not belong to the certificate %s", key, cert);
            goto out;
        }
    }
    ok = true;
out:
    EVP_PKEY_free(pk);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    return ok;
}
