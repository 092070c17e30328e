/*
 * buf.h: a growable byte buffer, the one way this project builds output
 * whose size it cannot know in advance (serialised messages, ACKs, logs).
 */
#ifndef HL7BROKER_BUF_H
#define HL7BROKER_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A zero-initialised struct buf is an empty buffer ready for use.
 * p is NUL-terminated whenever len > 0 or after any append, so text can be
 * printed directly; binary data may contain NULs of its own. The buffer
 * owns p; release it with buf_free(). */
struct buf {
    char  *p;
    size_t len;
    size_t cap;
};

/* Each returns 0, or -1 when memory cannot be had (the buffer is then
 * unchanged). */
int  buf_reserve(struct buf *b, size_t extra);
int  buf_append(struct buf *b, const void *data, size_t n);
int  buf_putc(struct buf *b, char c);
int  buf_puts(struct buf *b, const char *s);
int  buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int  buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);

/* Release the memory; b is then an empty buffer again. NULL is allowed. */
void buf_free(struct buf *b);

/* Hand the contents to the caller, who frees them with free(); b becomes
 * empty. Returns a NUL-terminated allocation even for an empty buffer, or
 * NULL when memory cannot be had. */
char *buf_take(struct buf *b, size_t *len);

#endif
