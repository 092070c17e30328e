/*
 * mllp_frame.c: the MLLP framer (see include/mllp.h for the rules). A
 * frame that starts and ends within one piece is handed back where it
 * lies, without a copy; only a frame that spans pieces is gathered, and
 * never more than max_bytes of it.
 */
#include "mllp.h"

#include <string.h>

/* Above this, a frame's buffer is released rather than kept for the next
 * frame, so one large message does not pin its memory to the connection. */
#define KEEP_CAPACITY ((size_t)64 << 10)

void mllp_framer_init(struct mllp_framer *f, size_t max_bytes, size_t keep_bytes)
{
    memset(f, 0, sizeof *f);
    f->max_bytes = max_bytes ? max_bytes : 1;
    if (keep_bytes > f->max_bytes)
        keep_bytes = f->max_bytes;
    f->keep_bytes = keep_bytes ? keep_bytes : 1;
    f->state = MLLP_OUTSIDE;
}

void mllp_framer_free(struct mllp_framer *f)
{
    buf_free(&f->buf);
}

size_t mllp_framer_held(const struct mllp_framer *f)
{
    if (f->state == MLLP_OUTSIDE)
        return 0;
    return 1 + f->len + (f->state == MLLP_SAW_FS);
}

/* Add n content bytes to a gathered frame: all of them while the frame is
 * within max_bytes, its first keep_bytes once it is over. */
static int gather(struct mllp_framer *f, const char *src, size_t n)
{
    f->len += n;
    size_t want = f->len <= f->max_bytes ? f->len
                  : f->len < f->keep_bytes ? f->len : f->keep_bytes;
    if (f->buf.len > want) {
        f->buf.len = want;   /* just went over: keep the head only */
        return 0;
    }
    /* here buf holds every earlier byte, so src continues it */
    return want > f->buf.len ? buf_append(&f->buf, src, want - f->buf.len) : 0;
}

static void frame_begin(struct mllp_framer *f)
{
    f->state = MLLP_IN_FRAME;
    f->len = 0;
    f->starts++;
    if (f->buf.cap > KEEP_CAPACITY)
        buf_free(&f->buf);
    else
        buf_reset(&f->buf);
}

static void frame_abandon(struct mllp_framer *f)
{
    f->discarded_bytes += mllp_framer_held(f);
    f->abandoned++;
}

size_t mllp_framer_feed(struct mllp_framer *f, const char *p, size_t n,
                        struct mllp_event *ev)
{
    /* direct: the current frame began in p, its content is p[start, start + len) */
    bool direct = false;
    size_t start = 0, i = 0;

    memset(ev, 0, sizeof *ev);
    while (i < n) {
        switch (f->state) {
        case MLLP_OUTSIDE: {
            const char *vt = memchr(p + i, MLLP_VT, n - i);
            size_t skip = vt ? (size_t)(vt - (p + i)) : n - i;
            f->discarded_bytes += skip;
            i += skip;
            if (vt) {
                i++;
                frame_begin(f);
                direct = true;
                start = i;
            }
            break;
        }
        case MLLP_IN_FRAME: {
            const char *s = p + i;
            const char *fs = memchr(s, MLLP_FS, n - i);
            size_t lim = fs ? (size_t)(fs - s) : n - i;
            const char *vt = memchr(s, MLLP_VT, lim);
            size_t k = vt ? (size_t)(vt - s) : lim;
            if (direct)
                f->len += k;
            else if (gather(f, s, k))
                goto nomem;
            i += k;
            if (vt) {
                frame_abandon(f);
                i++;
                frame_begin(f);
                direct = true;
                start = i;
            } else if (fs) {
                i++;
                f->state = MLLP_SAW_FS;
            }
            break;
        }
        case MLLP_SAW_FS: {
            unsigned char c = (unsigned char)p[i];
            if (c == MLLP_CR) {
                i++;
                f->frames++;
                f->state = MLLP_OUTSIDE;
                const char *data = direct ? p + start : f->buf.p ? f->buf.p : "";
                ev->total = f->len;
                if (f->len > f->max_bytes) {
                    f->oversize++;
                    ev->kind = MLLP_EV_OVERSIZE;
                    ev->len = f->len < f->keep_bytes ? f->len : f->keep_bytes;
                } else {
                    ev->kind = MLLP_EV_FRAME;
                    ev->len = f->len;
                }
                ev->data = data;
                return i;
            }
            if (c == MLLP_VT) {
                frame_abandon(f);
                i++;
                frame_begin(f);
                direct = true;
                start = i;
                break;
            }
            /* the <FS> was content; c is looked at again in its new state */
            if (direct)
                f->len++;
            else if (gather(f, "\x1c", 1))
                goto nomem;
            if (c == MLLP_FS)
                i++;
            else
                f->state = MLLP_IN_FRAME;
            break;
        }
        }
    }
    /* out of input inside a frame that began here: gather it before p goes */
    if (direct && f->state != MLLP_OUTSIDE) {
        size_t len = f->len;
        f->len = 0;
        if (gather(f, p + start, len))
            goto nomem;
    }
    return n;
nomem:
    ev->kind = MLLP_EV_NOMEM;
    return i;
}
