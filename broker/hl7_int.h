/*
 * hl7_int.h: the codec's private structures, shared by the files of the
 * codec (hl7.c, hl7_edit.c, hl7_escape.c, hl7_batch.c, hl7_ack.c) only.
 */
#ifndef HL7BROKER_HL7_INT_H
#define HL7BROKER_HL7_INT_H

#include "hl7.h"

/* One segment. p/len are its bytes without terminator; tail is what
 * followed it in the input up to the next segment (terminator and blank
 * lines), kept so that serialising changes only what was edited. tape
 * holds the offsets (from p) of every delimiter in the segment, in order,
 * except the encoding characters of MSH-2 (and FHS-2, BHS-2). */
struct hl7_seg {
    const char *p;
    uint32_t    len;
    uint32_t    ntape;
    uint32_t   *tape;
    const char *tail;
    uint32_t    tail_len;
    char        name[4];
    bool        owned;      /* p and tape are this segment's allocations */
};

struct hl7_msg {
    const char       *buf;
    size_t            len;
    struct hl7_delims d;
    size_t            lead;     /* blank bytes before the first segment */
    struct hl7_seg   *segs;
    size_t            nsegs, capsegs;
    uint32_t         *tape;     /* the tape of the original segments */
    char              term[3];  /* terminator of the first segment */
    bool              edited;
    bool              segs_inline, tape_inline;  /* in the message's own block */
};

/* Make room for one more segment. Returns 0 or HL7_E_NOMEM. */
int hl7_grow_segs(struct hl7_msg *m);

/* A child element being iterated: the bytes [pos, end) of the container
 * and the tape entries [i, te) within it, split by sep. */
struct hl7_iter {
    const char     *p;
    const uint32_t *tape;
    uint32_t        i, te;
    uint32_t        pos, end;
    char            sep;
    bool            done;
};

/* One child: bytes [a, b) and tape entries [ti, te). */
struct hl7_elem {
    uint32_t a, b, ti, te;
};

void hl7_iter_init(struct hl7_iter *it, const char *p, const uint32_t *tape,
                   const struct hl7_elem *within, char sep);
bool hl7_iter_next(struct hl7_iter *it, struct hl7_elem *out);

/* Is name (3 bytes) MSH, FHS or BHS, the segments whose second field
 * holds encoding characters? */
bool hl7_is_header_name(const char *name);

/* Is this segment one whose second field holds encoding characters? */
bool hl7_is_header_seg(const char *p, size_t len, char fs);

/* Locate field `field` (HL7 numbering) of segment s as an element.
 * Returns false when the segment has fewer fields. MSH-1 is not an
 * element (it is the separator itself); callers handle it. */
bool hl7_seg_field(const struct hl7_msg *m, const struct hl7_seg *s,
                   unsigned field, struct hl7_elem *out);

/* The segment a path names, or NULL. */
const struct hl7_seg *hl7_find_seg(const struct hl7_msg *m, const char name[4],
                                   unsigned seq, size_t *index);

/* Index one segment's delimiters into a new tape (owned segments). */
int hl7_index_segment(const struct hl7_delims *d, const char *p, uint32_t len,
                      uint32_t **tape, uint32_t *ntape);

bool hl7_valid_seg_name(const char *p, size_t len, char fs);


#endif
