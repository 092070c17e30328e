/*
 * mllp.h: MLLP framing (HL7 v2 over a byte stream): <VT> message <FS><CR>.
 * A pure byte-level framer, with no I/O, shared by MLLP sources and
 * destinations and fuzzed on its own.
 *
 * How the framer treats what it is fed:
 *  - Bytes outside a frame are discarded and counted (discarded_bytes).
 *  - A frame may arrive in any number of pieces, and one piece may hold
 *    any number of frames: feed() stops at each complete frame.
 *  - <FS> not followed by <CR> is message content (it is not legal in HL7,
 *    so the codec refuses the message, and the sender hears why); the
 *    frame ends at the first <FS><CR>.
 *  - <VT> inside a frame starts a new frame: the unfinished one is
 *    discarded (its bytes counted in discarded_bytes, the frame in
 *    abandoned). A sender that restarts after an error is believed rather
 *    than glued to its own debris; no ACK is owed for the partial.
 *  - A frame whose content exceeds max_bytes is reported as
 *    MLLP_EV_OVERSIZE when its end arrives, with only its first keep_bytes
 *    kept (enough to recover the MSH for the refusal) and its full length;
 *    no more than max_bytes of a frame is ever held. The next <VT> starts
 *    afresh (resync); one that comes before the end abandons the oversize
 *    frame like any unfinished one. The caller's frame timeout bounds a
 *    frame that never ends.
 *  - An empty frame (<VT><FS><CR>) is a frame of length 0: every frame
 *    gets exactly one answer, so a sender waiting for one never hangs.
 */
#ifndef HL7BROKER_MLLP_H
#define HL7BROKER_MLLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define MLLP_VT  0x0B   /* start block */
#define MLLP_FS  0x1C   /* end block, first byte */
#define MLLP_CR  0x0D   /* end block, second byte */
#define MLLP_ACK 0x06   /* MLLP release 2 commit acknowledgement */
#define MLLP_NAK 0x15   /* MLLP release 2 negative commit acknowledgement */

/* How much of an oversize frame the MLLP source keeps (at most). */
#define MLLP_HEAD_KEEP ((size_t)64 << 10)

enum mllp_state {
    MLLP_OUTSIDE,   /* between frames */
    MLLP_IN_FRAME,  /* after <VT> */
    MLLP_SAW_FS,    /* in a frame, just after an <FS> */
};

enum mllp_event_kind {
    MLLP_EV_NONE,       /* everything fed was consumed; feed more */
    MLLP_EV_FRAME,      /* a complete frame: data/len is its content */
    MLLP_EV_OVERSIZE,   /* a complete frame over max_bytes: data/len its first
                           bytes (at most keep_bytes), total its length */
    MLLP_EV_NOMEM,      /* memory could not be had: give up on the stream */
};

struct mllp_event {
    enum mllp_event_kind kind;
    const char          *data;
    size_t               len;
    size_t               total;
};

/* One stream's framer. Zero it, then mllp_framer_init(); release with
 * mllp_framer_free(). The counters are the caller's to read. */
struct mllp_framer {
    size_t          max_bytes;    /* largest content accepted */
    size_t          keep_bytes;   /* kept of an oversize frame (<= max_bytes) */
    enum mllp_state state;
    size_t          len;          /* content bytes of the current frame so far */
    struct buf      buf;          /* its first bytes, when it spans feeds */
    uint64_t        frames;       /* complete frames (oversize ones too) */
    uint64_t        oversize;
    uint64_t        abandoned;    /* unfinished frames cut short by a <VT> */
    uint64_t        starts;       /* <VT> seen: changes whenever a frame begins */
    uint64_t        discarded_bytes;
};

/* max_bytes >= 1; keep_bytes is clamped to [1, max_bytes]. */
void mllp_framer_init(struct mllp_framer *f, size_t max_bytes, size_t keep_bytes);
void mllp_framer_free(struct mllp_framer *f);

/*
 * Consume bytes from p[0..n) up to and including the end of the first
 * frame completed there (or all of them). Returns how many were consumed;
 * ev says what, if anything, was completed. ev->data points either into
 * p or into the framer: it stays valid until the next call and while p
 * does. Feed the rest (p + returned, n - returned) in later calls.
 */
size_t mllp_framer_feed(struct mllp_framer *f, const char *p, size_t n,
                        struct mllp_event *ev);

static inline bool mllp_framer_in_frame(const struct mllp_framer *f)
{
    return f->state != MLLP_OUTSIDE;
}

/* The bytes of the unfinished frame seen so far (its <VT>, its content
 * and a pending <FS>): what would be discarded if the stream ended now. 0
 * between frames. */
size_t mllp_framer_held(const struct mllp_framer *f);

#endif
