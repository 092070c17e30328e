/*
 * log.c: logfmt event lines to a file descriptor or to syslog (see
 * include/log.h). Each line is built in memory and written with one
 * write(), so lines from several threads do not interleave.
 */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_now = LOG_LEVEL_INFO;
static atomic_int log_fd = 2;
static atomic_bool log_to_syslog = false;

static const char *const level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_ERROR] = "error",
};

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_ERROR)
        return "error";
    return level_names[level];
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (unsigned i = 0; i <= LOG_LEVEL_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level_now, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&log_level_now);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&log_level_now);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int log_facility_parse(const char *name)
{
    static const struct { const char *name; int facility; } facilities[] = {
        { "daemon", LOG_DAEMON }, { "user", LOG_USER },
        { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
        { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
        { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
        { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
    };
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++)
        if (strcmp(name, facilities[i].name) == 0)
            return facilities[i].facility;
    return -1;
}

void log_set_syslog(bool on, const char *ident, int facility)
{
    bool was = atomic_exchange(&log_to_syslog, on);
    if (was)
        closelog();
    if (on)
        openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

/* ------------------------------------------------------------ escaping */

/* Length of the valid UTF-8 sequence (2 to 4 bytes) at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;   /* range of the second byte */

    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;                    /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

static bool plain_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '"' && c != '=' && c != '\\';
}

int log_append_value(struct buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    bool cut = false;

    if (!s)
        len = 0;
    if (len > LOG_VALUE_MAX) {
        len = LOG_VALUE_MAX;
        cut = true;
    }
    bool plain = len > 0 && !cut;
    for (size_t i = 0; plain && i < len; i++)
        plain = plain_byte(u[i]);
    if (plain)
        return buf_append(out, s, len);

    if (buf_reserve(out, len + 8))
        return -1;
    int rc = buf_putc(out, '"');
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = u[i];
        size_t seq;
        switch (c) {
        case '"':  rc = buf_puts(out, "\\\""); break;
        case '\\': rc = buf_puts(out, "\\\\"); break;
        case '\n': rc = buf_puts(out, "\\n"); break;
        case '\r': rc = buf_puts(out, "\\r"); break;
        case '\t': rc = buf_puts(out, "\\t"); break;
        default:
            if (c >= 0x20 && c < 0x7F) {
                rc = buf_putc(out, (char)c);
            } else if (c >= 0x80 && (seq = utf8_seq(u + i, len - i)) > 0) {
                rc = buf_append(out, u + i, seq);
                i += seq - 1;
            } else {
                char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
                rc = buf_append(out, esc, sizeof esc);
            }
        }
    }
    if (rc == 0 && cut)
        rc = buf_puts(out, "...");
    if (rc == 0)
        rc = buf_putc(out, '"');
    return rc;
}

static int append_key(struct buf *out, const char *key, size_t len)
{
    if (buf_putc(out, ' '))
        return -1;
    if (len == 0)
        return buf_putc(out, '_');
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        if (buf_putc(out, ok ? c : '_'))
            return -1;
    }
    return 0;
}

/* -------------------------------------------------- the pairs formatter */

/* Format the one conversion at *pf (just past its '%') into v, taking its
 * argument from ap. Returns 0, or -1 for a conversion this formatter does
 * not support (the rest of the format is then abandoned, because the
 * types of the remaining arguments are unknown). */
static int format_conversion(struct buf *v, const char **pf, va_list *ap)
{
    const char *start = *pf - 1;          /* the '%' */
    const char *f = *pf;
    int stars[2], nstars = 0;
    int precision = -1;
    char tmp[512];
    int n = -1;

    while (*f && strchr("-+ #0", *f))
        f++;
    if (*f == '*') {
        stars[nstars++] = va_arg(*ap, int);
        f++;
    } else {
        while (*f >= '0' && *f <= '9')
            f++;
    }
    if (*f == '.') {
        f++;
        if (*f == '*') {
            precision = va_arg(*ap, int);
            stars[nstars++] = precision;
            f++;
        } else {
            precision = 0;
            for (; *f >= '0' && *f <= '9'; f++)
                if (precision < 100000)
                    precision = precision * 10 + (*f - '0');
        }
    }
    enum { L_NONE, L_HH, L_H, L_L, L_LL, L_Z, L_J, L_T, L_BIGL } len = L_NONE;
    if (f[0] == 'h' && f[1] == 'h') { len = L_HH; f += 2; }
    else if (f[0] == 'l' && f[1] == 'l') { len = L_LL; f += 2; }
    else if (*f == 'h') { len = L_H; f++; }
    else if (*f == 'l') { len = L_L; f++; }
    else if (*f == 'z') { len = L_Z; f++; }
    else if (*f == 'j') { len = L_J; f++; }
    else if (*f == 't') { len = L_T; f++; }
    else if (*f == 'L') { len = L_BIGL; f++; }

    char conv = *f;
    if (!conv)
        return -1;
    f++;
    *pf = f;

    if (conv == '%')
        return buf_putc(v, '%');
    if (conv == 's') {
        const char *s = va_arg(*ap, const char *);
        if (!s)
            return 0;
        size_t sl = precision >= 0 ? strnlen(s, (size_t)precision) : strlen(s);
        return buf_append(v, s, sl);
    }

    size_t speclen = (size_t)(f - start);
    char spec[32];
    if (speclen >= sizeof spec)
        return -1;
    memcpy(spec, start, speclen);
    spec[speclen] = '\0';

#define EMIT(T) do {                                                        \
        T x_ = va_arg(*ap, T);                                              \
        if (nstars == 0)                                                    \
            n = snprintf(tmp, sizeof tmp, spec, x_);                        \
        else if (nstars == 1)                                               \
            n = snprintf(tmp, sizeof tmp, spec, stars[0], x_);              \
        else                                                                \
            n = snprintf(tmp, sizeof tmp, spec, stars[0], stars[1], x_);    \
    } while (0)

    switch (conv) {
    case 'd': case 'i':
        switch (len) {
        case L_L:  EMIT(long); break;
        case L_LL: EMIT(long long); break;
        case L_Z:  EMIT(ssize_t); break;
        case L_J:  EMIT(intmax_t); break;
        case L_T:  EMIT(ptrdiff_t); break;
        case L_BIGL: return -1;
        default:   EMIT(int); break;
        }
        break;
    case 'u': case 'x': case 'X': case 'o':
        switch (len) {
        case L_L:  EMIT(unsigned long); break;
        case L_LL: EMIT(unsigned long long); break;
        case L_Z:  EMIT(size_t); break;
        case L_J:  EMIT(uintmax_t); break;
        case L_T:  EMIT(ptrdiff_t); break;
        case L_BIGL: return -1;
        default:   EMIT(unsigned); break;
        }
        break;
    case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
        if (len == L_BIGL)
            EMIT(long double);
        else
            EMIT(double);
        break;
    case 'c':
        EMIT(int);
        break;
    case 'p':
        EMIT(void *);
        break;
    default:                              /* %n and anything unknown */
        return -1;
    }
#undef EMIT
    if (n < 0)
        return -1;
    size_t got = (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1;
    return buf_append(v, tmp, got);
}

/* Append the pairs of fmt to out. */
static int format_pairs(struct buf *out, const char *fmt, va_list *ap)
{
    struct buf v = { 0 };
    int rc = 0;
    const char *f = fmt;

    while (rc == 0 && *f) {
        if (*f == ' ') {
            f++;
            continue;
        }
        const char *key = f;
        while (*f && *f != '=' && *f != ' ')
            f++;
        rc = append_key(out, key, (size_t)(f - key));
        if (rc || *f != '=')
            continue;                     /* a bare key */
        f++;
        buf_reset(&v);
        while (rc == 0 && *f && *f != ' ') {
            if (*f == '%') {
                f++;
                if (format_conversion(&v, &f, ap)) {
                    buf_free(&v);
                    return buf_puts(out, "=?? log_format_error=unsupported_conversion");
                }
            } else {
                rc = buf_putc(&v, *f++);
            }
        }
        if (rc == 0)
            rc = buf_putc(out, '=');
        if (rc == 0)
            rc = log_append_value(out, v.p, v.len);
    }
    buf_free(&v);
    return rc;
}

/* ------------------------------------------------------------- output */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;                       /* nowhere left to complain */
        }
        p += w;
        n -= (size_t)w;
    }
}

static int syslog_priority(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_DEBUG: return LOG_DEBUG;
    case LOG_LEVEL_INFO:  return LOG_INFO;
    case LOG_LEVEL_WARN:  return LOG_WARNING;
    default:              return LOG_ERR;
    }
}

static int line_start(struct buf *b, size_t *body, enum log_level level,
                      const char *component, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char when[40];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000L);

    int rc = buf_printf(b, "ts=%s ", when);
    *body = b->len;
    if (rc == 0)
        rc = buf_printf(b, "level=%s component=", log_level_name(level));
    if (rc == 0)
        rc = log_append_value(b, component, component ? strlen(component) : 0);
    if (rc == 0)
        rc = buf_puts(b, " msg=");
    if (rc == 0)
        rc = log_append_value(b, msg, msg ? strlen(msg) : 0);
    return rc;
}

static void line_emit(struct buf *b, size_t body, enum log_level level, int rc)
{
    static const char oom[] =
        "level=error component=log msg=\"cannot format a log line: out of memory\"\n";

    if (atomic_load(&log_to_syslog)) {
        if (rc)
            syslog(LOG_ERR, "%s", oom);
        else
            syslog(syslog_priority(level), "%s", b->p + body);
    } else if (rc) {
        write_all(atomic_load(&log_fd), oom, sizeof oom - 1);
    } else if (buf_putc(b, '\n') == 0) {
        write_all(atomic_load(&log_fd), b->p, b->len);
    }
    buf_free(b);
}

static void emit(enum log_level level, const char *component, const char *msg,
                 unsigned suppressed, const char *fmt, va_list ap)
{
    struct buf b = { 0 };
    size_t body = 0;
    va_list aq;

    int rc = line_start(&b, &body, level, component, msg);
    if (rc == 0 && fmt) {
        va_copy(aq, ap);
        rc = format_pairs(&b, fmt, &aq);
        va_end(aq);
    }
    if (rc == 0 && suppressed)
        rc = buf_printf(&b, " suppressed=%u", suppressed);
    line_emit(&b, body, level, rc);
}

void log_vmsg(enum log_level level, const char *component, const char *msg,
              const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    emit(level, component, msg, 0, fmt, ap);
}

void log_msg(enum log_level level, const char *component, const char *msg,
             const char *fmt, ...)
{
    va_list ap;
    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    emit(level, component, msg, 0, fmt, ap);
    va_end(ap);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level,
                         const char *component, const char *msg,
                         const char *fmt, ...)
{
    va_list ap;
    if (!log_enabled(level))
        return;
    int64_t now = monotonic_ms();
    if (rl->in_window == 0 || now - rl->window_start_ms >= (int64_t)rl->interval_ms) {
        rl->window_start_ms = now;
        rl->in_window = 0;
    }
    if (rl->in_window >= rl->burst) {
        if (rl->suppressed < UINT32_MAX)
            rl->suppressed++;
        return;
    }
    rl->in_window++;
    unsigned suppressed = rl->suppressed;
    rl->suppressed = 0;
    va_start(ap, fmt);
    emit(level, component, msg, suppressed, fmt, ap);
    va_end(ap);
}

/* -------------------------------------------------------- line builder */

bool log_line_begin(struct log_line *l, enum log_level level,
                    const char *component, const char *msg)
{
    memset(l, 0, sizeof *l);
    if (!log_enabled(level))
        return false;
    l->level = level;
    l->active = true;
    if (line_start(&l->b, &l->body, level, component, msg)) {
        buf_free(&l->b);
        l->active = false;
        log_error("log", "cannot format a log line: out of memory", NULL);
        return false;
    }
    return true;
}

void log_line_add(struct log_line *l, const char *key, const char *fmt, ...)
{
    struct buf v = { 0 };
    va_list ap;

    if (!l->active)
        return;
    va_start(ap, fmt);
    int rc = buf_vprintf(&v, fmt, ap);
    va_end(ap);
    if (rc == 0)
        rc = append_key(&l->b, key, strlen(key));
    if (rc == 0)
        rc = buf_putc(&l->b, '=');
    if (rc == 0)
        rc = log_append_value(&l->b, v.p, v.len);
    buf_free(&v);
    if (rc) {
        buf_free(&l->b);
        l->active = false;
        log_error("log", "cannot format a log line: out of memory", NULL);
    }
}

void log_line_end(struct log_line *l)
{
    if (!l->active)
        return;
    line_emit(&l->b, l->body, l->level, 0);
    l->active = false;
}
