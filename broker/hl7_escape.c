/*
 * hl7_escape.c: HL7 escape sequences. Decoding turns a leaf value into
 * the bytes it stands for; encoding makes any bytes safe as a leaf value.
 */
#include "hl7_int.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A formatting command's count ("\.sp 2\" -> 2): absent means 1; returns
 * -1 when the argument is not a small number, and the sequence is then
 * kept as it is. Counts are capped so hostile input cannot multiply. */
#define FMT_MAX_REPEAT 99
static int fmt_count(const char *a, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == ' ')
        i++;
    if (i < n && a[i] == '+')
        i++;
    if (i == n)
        return 1;
    int v = 0;
    for (; i < n; i++) {
        if (a[i] < '0' || a[i] > '9')
            return -1;
        v = v * 10 + (a[i] - '0');
        if (v > FMT_MAX_REPEAT)
            return -1;
    }
    return v;
}

static bool starts(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && memcmp(s, lit, k) == 0;
}

/* Decode the sequence between two escape characters, s[0..n). Returns 1
 * when decoded into b, 0 when unknown (caller keeps it), -1 on no memory. */
static int decode_one(const struct hl7_delims *d, const char *s, size_t n, struct buf *b)
{
    if (n == 1) {
        char out;
        switch (s[0]) {
        case 'F': out = d->field; break;
        case 'S': out = d->component; break;
        case 'T': out = d->subcomponent; break;
        case 'R': out = d->repetition; break;
        case 'E': out = d->escape; break;
        case 'P':
            if (!d->truncation)
                return 0;
            out = d->truncation;
            break;
        case 'H':
        case 'N':
            return 1;           /* highlighting on/off: no plain-text form */
        default:
            return 0;
        }
        return buf_putc(b, out) ? -1 : 1;
    }
    if (s[0] == 'X') {
        if (n < 3 || (n - 1) % 2)
            return 0;
        for (size_t i = 1; i < n; i++)
            if (hexval(s[i]) < 0)
                return 0;
        if (buf_reserve(b, (n - 1) / 2))
            return -1;
        for (size_t i = 1; i < n; i += 2)
            b->p[b->len++] = (char)(hexval(s[i]) * 16 + hexval(s[i + 1]));
        b->p[b->len] = '\0';
        return 1;
    }
    if (s[0] == '.' && n >= 3) {
        const char *cmd = s + 1;
        size_t cn = n - 1;
        const char *arg = cn > 2 ? cmd + 2 : "";
        size_t an = cn > 2 ? cn - 2 : 0;
        if (cn == 2 && (starts(cmd, cn, "br") || starts(cmd, cn, "ce")))
            return buf_putc(b, '\n') ? -1 : 1;
        if (cn == 2 && (starts(cmd, cn, "fi") || starts(cmd, cn, "nf")))
            return 1;
        if (starts(cmd, cn, "sp") || starts(cmd, cn, "sk")) {
            int k = fmt_count(arg, an);
            if (k < 0)
                return 0;
            char c = cmd[1] == 'p' ? '\n' : ' ';
            for (int i = 0; i < k; i++)
                if (buf_putc(b, c))
                    return -1;
            return 1;
        }
        if (starts(cmd, cn, "in") || starts(cmd, cn, "ti")) {
            size_t i = 0;
            while (i < an && arg[i] == ' ')
                i++;
            if (i < an && (arg[i] == '+' || arg[i] == '-'))
                i++;
            return fmt_count(arg + i, an - i) < 0 ? 0 : 1;
        }
    }
    return 0;       /* \Zxx\, \Cxxyy\, \Mxxyyzz\ and the unknown stay as sent */
}

int hl7_unescape(const struct hl7_delims *d, const char *raw, size_t len, struct buf *b)
{
    const char esc = d->escape;
    size_t i = 0;
    while (i < len) {
        const char *e = memchr(raw + i, esc, len - i);
        if (!e)
            return buf_append(b, raw + i, len - i);
        size_t at = (size_t)(e - raw);
        if (buf_append(b, raw + i, at - i))
            return -1;
        const char *close = memchr(raw + at + 1, esc, len - at - 1);
        if (!close)     /* no closing escape: kept literally */
            return buf_append(b, raw + at, len - at);
        size_t cl = (size_t)(close - raw);
        int rc = cl > at + 1 ? decode_one(d, raw + at + 1, cl - at - 1, b) : 0;
        if (rc < 0)
            return -1;
        if (rc == 0) {
            /* Unknown: keep the opening escape and rescan from the next
               byte, so that the closing one can open a sequence of its own
               (\Z\T\ keeps "\Z" and decodes \T\). */
            if (buf_putc(b, esc))
                return -1;
            i = at + 1;
            continue;
        }
        i = cl + 1;
    }
    return 0;
}

int hl7_escape(const struct hl7_delims *d, const char *val, size_t len, struct buf *b)
{
    static const char hex[] = "0123456789ABCDEF";
    if (buf_reserve(b, len))
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)val[i];
        char code = 0;
        if (c == (unsigned char)d->escape)
            code = 'E';
        else if (c == (unsigned char)d->field)
            code = 'F';
        else if (c == (unsigned char)d->component)
            code = 'S';
        else if (c == (unsigned char)d->repetition)
            code = 'R';
        else if (c == (unsigned char)d->subcomponent)
            code = 'T';
        else if (d->truncation && c == (unsigned char)d->truncation)
            code = 'P';
        int rc;
        if (code) {
            char seq[3] = { d->escape, code, d->escape };
            rc = buf_append(b, seq, 3);
        } else if (c < 0x20 || c == 0x7f) {
            char seq[5] = { d->escape, 'X', hex[c >> 4], hex[c & 15], d->escape };
            rc = buf_append(b, seq, 5);
        } else {
            rc = buf_putc(b, (char)c);
        }
        if (rc)
            return -1;
    }
    return 0;
}
