/*
 * log.h: the broker's event log. One line per event in logfmt
 * (ts= level= component= msg= key=value ...), to stderr or to syslog.
 * Every value is quoted and escaped as needed, so a hostile value (a peer
 * address, a control id, a config string) can never start a new line or
 * forge a key.
 */
#ifndef HL7BROKER_LOG_H
#define HL7BROKER_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Named LOG_LEVEL_* because <syslog.h> owns LOG_INFO, LOG_ERR and friends. */
enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR,
};

/* A value longer than this many bytes is cut and ends in "...". */
#define LOG_VALUE_MAX 1024

/* "debug", "info", "warn", "error". log_level_parse() returns 0 and sets
 * *out, or -1 for any other name. */
const char *log_level_name(enum log_level level);
int         log_level_parse(const char *name, enum log_level *out);

/* Events below the level are dropped (default: info). */
void           log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool           log_enabled(enum log_level level);

/* Write lines to fd instead of stderr (tests). The fd stays the caller's. */
void log_set_fd(int fd);

/* Send lines to syslog (on) or to the fd (off). ident is kept by pointer
 * and must outlive the logger (a string literal or argv[0]); facility is
 * a LOG_DAEMON/LOG_LOCAL0.. value from <syslog.h>. Under syslog the ts=
 * pair is left out: syslog stamps each line itself. */
void log_set_syslog(bool on, const char *ident, int facility);

/* The syslog facility named "daemon", "user" or "local0".."local7";
 * returns -1 for any other name. */
int log_facility_parse(const char *name);

/*
 * Log one event. fmt (may be NULL: no pairs) holds space-separated
 * key=value pairs whose values are printf conversions or literal text,
 * e.g. "peer=%s:%u bytes=%zu". Keys come from the program and are written
 * as they are; each value is formatted, then quoted and escaped. Supported
 * conversions: %s %.*s %c %d %i %u %x %X %o %f %g %e %p with the usual
 * flags, width, precision and length modifiers; %n is refused. A NULL %s
 * prints as "". component and msg are escaped like values.
 */
void log_msg(enum log_level level, const char *component, const char *msg,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_vmsg(enum log_level level, const char *component, const char *msg,
              const char *fmt, va_list ap);

#define log_debug(component, ...) log_msg(LOG_LEVEL_DEBUG, component, __VA_ARGS__)
#define log_info(component, ...)  log_msg(LOG_LEVEL_INFO, component, __VA_ARGS__)
#define log_warn(component, ...)  log_msg(LOG_LEVEL_WARN, component, __VA_ARGS__)
#define log_error(component, ...) log_msg(LOG_LEVEL_ERROR, component, __VA_ARGS__)

/*
 * Rate limiting for events a peer can trigger at will (refused
 * connections, bad frames): at most burst events per interval_ms at one
 * call site; the rest are counted, and the next line that gets through
 * carries suppressed=N. Declare one per call site:
 *     static struct log_ratelimit rl = LOG_RATELIMIT_INIT(10000, 5);
 * Not thread-safe: use one per thread.
 */
struct log_ratelimit {
    unsigned interval_ms;
    unsigned burst;
    int64_t  window_start_ms;
    unsigned in_window;
    unsigned suppressed;
};
#define LOG_RATELIMIT_INIT(interval_ms, burst) { (interval_ms), (burst), 0, 0, 0 }

void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level,
                         const char *component, const char *msg,
                         const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Build a line a pair at a time, for callers that decide at run time
 * which pairs to write (e.g. a summary driven by a settings table):
 *     struct log_line l;
 *     if (log_line_begin(&l, LOG_LEVEL_INFO, "config", "source")) {
 *         log_line_add(&l, "name", "%s", name);
 *         log_line_end(&l);
 *     }
 * log_line_begin() returns false (and nothing need follow) when the
 * level is filtered out. log_line_end() writes the line and releases it.
 */
struct log_line {
    struct buf     b;
    enum log_level level;
    size_t         body;   /* offset past "ts=... " */
    bool           active; /* false: filtered out, calls do nothing */
};

bool log_line_begin(struct log_line *l, enum log_level level,
                    const char *component, const char *msg);
void log_line_add(struct log_line *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_line_end(struct log_line *l);

/* Append s[0..len) to out as a logfmt value: bare when it is plain
 * printable ASCII without space, '"', '=' or '\'; otherwise in double
 * quotes with \" \\ \n \r \t and \xHH for other control bytes and for
 * bytes that are not valid UTF-8. Cut at LOG_VALUE_MAX bytes. Returns 0
 * or -1 when memory cannot be had. */
int log_append_value(struct buf *out, const char *s, size_t len);

#endif
