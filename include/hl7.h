/*
 * hl7.h: the HL7 v2 (ER7) codec every part of the broker uses: a parser
 * that indexes a message in place, path reads and edits, escapes, batches,
 * header metadata, NHS number checks and the ACK builder.
 *
 * Ownership: hl7_parse() does not copy the input. The message keeps
 * pointers into the caller's buffer, which must outlive the message and
 * stay unchanged. Edited segments are copied into memory the message owns.
 * Spans returned by reads point into the caller's buffer or into that
 * memory and are valid until the next edit of the same message or
 * hl7_free(), whichever comes first.
 */
#ifndef HL7BROKER_HL7_H
#define HL7BROKER_HL7_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* ---------------------------------------------------------------- errors */

/* 0 is success; every failure is one of these negative codes. */
enum hl7_err {
    HL7_OK = 0,
    HL7_E_NOMEM = -1,          /* memory could not be allocated */
    HL7_E_EMPTY = -2,          /* input holds no segment at all */
    HL7_E_TOO_LARGE = -3,      /* input exceeds the configured maximum */
    HL7_E_NO_MSH = -4,         /* first segment is not MSH */
    HL7_E_ENCODING = -5,       /* MSH-1/MSH-2 encoding characters unusable */
    HL7_E_SEGMENT_NAME = -6,   /* a segment id is not 3 letters or digits */
    HL7_E_MISSING_FIELD = -7,  /* a required header field is empty */
    HL7_E_BAD_PATH = -8,       /* a path expression does not parse */
    HL7_E_READ_ONLY = -9,      /* MSH-1 and MSH-2 cannot be edited */
    HL7_E_BAD_VALUE = -10,     /* raw value holds a segment terminator */
    HL7_E_RANGE = -11,         /* segment index out of range */
    HL7_E_BATCH_COUNT = -12,   /* BTS-1 or FTS-1 disagrees with content */
    HL7_E_BATCH_STRUCTURE = -13, /* batch header/trailer out of place */
};

/* Where a failure was found, and what a person should know about it.
 * segment is "" when the failure is not inside a segment. seg_seq is the
 * 1-based position among segments of that name, field the HL7 field
 * number (0 when the whole segment is meant), offset the byte offset into
 * the input. */
struct hl7_error {
    int      code;              /* enum hl7_err */
    char     segment[4];
    unsigned seg_seq;
    unsigned field;
    size_t   offset;
    char     text[200];         /* a sentence naming what is wrong */
};

/* Fill err (when not NULL) with a code, a location and a sentence; for
 * callers that report their own checks in the codec's terms. */
void hl7_set_error(struct hl7_error *err, int code, const char *seg,
                   unsigned seq, unsigned field, size_t offset,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* A short fixed description of any enum hl7_err code. */
const char *hl7_strerror(int code);

/* The HL7 table 0357 error code an ACK should carry for a codec error
 * (100 segment sequence, 101 required field missing, 102 data type, 207
 * application internal error). */
int hl7_err_table0357(int code);

/* ---------------------------------------------------------------- values */

/* A run of bytes in a message: raw ER7, escapes not decoded. */
struct hl7_span {
    const char *p;
    size_t      len;
};

/* What a read found. ABSENT: the path is beyond the message's structure.
 * EMPTY: the element exists and holds nothing. NULL: the element holds the
 * HL7 null "" (delete the value at the receiver). VALUE: anything else. */
enum hl7_presence {
    HL7_ABSENT = 0,
    HL7_EMPTY,
    HL7_NULL,
    HL7_VALUE,
};

/* The delimiters a message declares in MSH-1 and MSH-2. truncation is
 * '\0' unless MSH-2 carries a fifth character (v2.7). */
struct hl7_delims {
    char field, component, repetition, escape, subcomponent, truncation;
};

extern const struct hl7_delims hl7_default_delims; /* |^~\& */

/* ----------------------------------------------------------------- parse */

struct hl7_msg;   /* opaque: the index and any edits */

struct hl7_parse_opts {
    size_t max_bytes;   /* refuse larger input; 0 means HL7_DEFAULT_MAX */
};
#define HL7_DEFAULT_MAX ((size_t)64 << 20)   /* 64 MiB */
#define HL7_HARD_MAX    ((size_t)UINT32_MAX - 1)

/* Index one message in buf[0..len). Segments end in CR, LF or CRLF; blank
 * lines are skipped. The first segment must be MSH with usable encoding
 * characters, and MSH-9.1 (message code) must be present. On success
 * *out is a new message (free with hl7_free) and 0 is returned; otherwise
 * a negative code, *out is NULL and err (if not NULL) says where. opts
 * may be NULL. Time and memory are linear in len. */
int  hl7_parse(const char *buf, size_t len, const struct hl7_parse_opts *opts,
               struct hl7_msg **out, struct hl7_error *err);
void hl7_free(struct hl7_msg *msg);

const struct hl7_delims *hl7_msg_delims(const struct hl7_msg *msg);

/* ------------------------------------------------------------------ paths */

/* A compiled path: SEG[n]-F[r].C.S, all indices 1-based; 0 means "not
 * given". Without a repetition a component path reads the first
 * repetition, and a bare field path reads the whole field (every
 * repetition, raw). */
struct hl7_path {
    char     seg[4];
    unsigned seg_seq;      /* [n] after the segment name; 0 = first */
    unsigned field;        /* 0 = the whole segment */
    unsigned rep;
    unsigned comp;
    unsigned sub;
};

/* Compile "PID-3[2].1". Also accepts '.' between segment and field
 * ("PID.3.1") and a bare segment name ("PID"). Returns 0, or
 * HL7_E_BAD_PATH with err->offset the 0-based position of the character
 * at fault (err->text names it 1-based, as people count columns). */
int hl7_path_parse(const char *text, size_t len, struct hl7_path *path,
                   struct hl7_error *err);

/* Write the canonical text of a path ("PID-3[2].1") into b. */
int hl7_path_format(const struct hl7_path *path, struct buf *b);

/* Read the raw bytes at path. Returns the presence; *out is set to the
 * span (len 0 for ABSENT and EMPTY). */
enum hl7_presence hl7_get(const struct hl7_msg *msg, const struct hl7_path *path,
                          struct hl7_span *out);

/* hl7_get with the escapes decoded, appended to b (which is not reset). */
enum hl7_presence hl7_get_decoded(const struct hl7_msg *msg,
                                  const struct hl7_path *path, struct buf *b);

/* Convenience: compile text and read; a bad path reads as ABSENT. */
enum hl7_presence hl7_get_str(const struct hl7_msg *msg, const char *path,
                              struct hl7_span *out);

/* Counts. Segments: how many named name (NULL: all). Repetitions of a
 * field path, components of a field or repetition path, subcomponents of
 * a component path: 0 when absent or empty. */
size_t hl7_segment_count(const struct hl7_msg *msg, const char *name);
size_t hl7_count(const struct hl7_msg *msg, const struct hl7_path *path);

/* Segment i (0-based, message order): its name and raw bytes (without the
 * terminator). Returns false when i is out of range. */
bool hl7_segment_at(const struct hl7_msg *msg, size_t i, char name[4],
                    struct hl7_span *raw);

/* Number of fields in segment i (the highest field number present). */
unsigned hl7_field_count(const struct hl7_msg *msg, size_t i);

/* Walk every element of the message in order. The callback sees each
 * segment, field, repetition, component and subcomponent with its path
 * and raw span; leaf is true when the element has no children. seg_seq is
 * always filled in; rep is 0 inside a field that has no repetition
 * separator (so paths print as PID-5.1, not PID-5[1].1), and REP nodes
 * are visited only for fields that have one. Return non-zero from the
 * callback to stop; that value is returned. */
enum hl7_node { HL7_NODE_SEGMENT, HL7_NODE_FIELD, HL7_NODE_REP,
                HL7_NODE_COMP, HL7_NODE_SUB };
typedef int (*hl7_walk_fn)(void *ctx, enum hl7_node kind,
                           const struct hl7_path *path,
                           const struct hl7_span *raw, bool leaf);
int hl7_walk(const struct hl7_msg *msg, hl7_walk_fn fn, void *ctx);

/* ---------------------------------------------------------------- escapes */

/* Decode the escape sequences of raw (one leaf value, in the delimiters d)
 * and append the result to b: \F\ \S\ \T\ \R\ \E\ \P\ become the
 * delimiter characters, \Xhh..\ the bytes, \.br\ a line feed, \.sp n\ n
 * line feeds, \.sk n\ n spaces, \.ce\ a line feed; \H\ \N\ \.fi\ \.nf\
 * \.in\ \.ti\ are dropped. Unknown or malformed sequences, and an escape
 * character with no closing one, are kept as they are. Returns 0 or -1
 * (no memory). */
int hl7_unescape(const struct hl7_delims *d, const char *raw, size_t len,
                 struct buf *b);

/* Encode a value for use as one leaf: the escape character first, then
 * every delimiter, and every control byte (CR as \X0D\, LF as \X0A\,
 * tab as \X09\...), so the value can never break the structure or an
 * MLLP frame. Appends to b. Returns 0 or -1. */
int hl7_escape(const struct hl7_delims *d, const char *val, size_t len,
               struct buf *b);

/* ------------------------------------------------------------------ edits */

/* Set the element at path to val, escaped. Missing segments, fields,
 * repetitions, components and subcomponents are created, except header
 * segments (MSH, FHS, BHS: HL7_E_RANGE). A path without a field is
 * refused (HL7_E_BAD_PATH); MSH-1 and MSH-2 are HL7_E_READ_ONLY. */
int hl7_set(struct hl7_msg *msg, const struct hl7_path *path,
            const char *val, size_t len, struct hl7_error *err);

/* As hl7_set, but val is raw ER7 in this message's delimiters and may
 * carry structure below the path's level (a whole field with
 * repetitions, say). A CR or LF in val, or a delimiter at or above the
 * path's level (a field separator anywhere, a repetition separator in a
 * repetition...), is HL7_E_BAD_VALUE. */
int hl7_set_raw(struct hl7_msg *msg, const struct hl7_path *path,
                const char *val, size_t len, struct hl7_error *err);

/* Empty the element at path (its delimiters stay). Clearing an absent
 * element is a no-op. */
int hl7_clear(struct hl7_msg *msg, const struct hl7_path *path,
              struct hl7_error *err);

/* Insert a segment, given as raw bytes without terminator ("ZPI|1|X"),
 * before position i (1 to count; count appends). The name must be 3
 * letters or digits followed by the field separator or the end, and not
 * a header segment (MSH, FHS, BHS). */
int hl7_segment_insert(struct hl7_msg *msg, size_t i, const char *raw,
                       size_t len, struct hl7_error *err);

/* Delete segment i. Deleting the MSH (i == 0) is refused. */
int hl7_segment_delete(struct hl7_msg *msg, size_t i, struct hl7_error *err);

/* Serialise to b (appended). A message never edited comes out byte for
 * byte as it came in, terminators included. Edited and inserted segments
 * end in the terminator the first segment used (CR, LF or CRLF), unless
 * HL7_SER_CR is given, which ends every segment in CR (the standard). */
#define HL7_SER_CR 1u
int hl7_serialise(const struct hl7_msg *msg, unsigned flags, struct buf *b);

/* ----------------------------------------------------------------- batches */

/* A file or batch split into messages: spans into the caller's buffer,
 * each including its segment terminators. FHS/BHS/BTS/FTS segments are
 * not part of any message; any other segment before the first MSH is an
 * error (HL7_E_NO_MSH), as is a trailer without its header, or anything
 * after FTS (HL7_E_BATCH_STRUCTURE). An empty batch is 0 messages, not an
 * error; input with no segment at all is HL7_E_EMPTY. */
struct hl7_batch {
    struct hl7_span *msgs;
    size_t           count;
    size_t           batches;        /* BHS segments seen */
    struct hl7_span  fhs, bhs;       /* first headers; len 0 if none */
};

/* Split buf. Works for a bare message, several messages one after
 * another, and FHS/BHS/BTS/FTS batches. When BTS-1 or FTS-1 is present
 * and disagrees with what was found, returns HL7_E_BATCH_COUNT with the
 * messages still listed in *out (the caller decides). Free with
 * hl7_batch_free. */
int  hl7_batch_split(const char *buf, size_t len, struct hl7_batch *out,
                     struct hl7_error *err);
void hl7_batch_free(struct hl7_batch *b);

/* ---------------------------------------------------------------- metadata */

/* Header facts, as raw spans into the message (HL7 escapes not decoded;
 * len 0 when absent). Valid like any span. */
struct hl7_meta {
    struct hl7_span code;          /* MSH-9.1  ADT */
    struct hl7_span trigger;       /* MSH-9.2  A01 */
    struct hl7_span structure;     /* MSH-9.3  ADT_A01 */
    struct hl7_span control_id;    /* MSH-10 */
    struct hl7_span processing_id; /* MSH-11.1 */
    struct hl7_span version;       /* MSH-12.1 */
    struct hl7_span sending_app;   /* MSH-3 (whole HD) */
    struct hl7_span sending_fac;   /* MSH-4 */
    struct hl7_span receiving_app; /* MSH-5 */
    struct hl7_span receiving_fac; /* MSH-6 */
    struct hl7_span accept_ack;    /* MSH-15 */
    struct hl7_span app_ack;       /* MSH-16 */
    struct hl7_span charset;       /* MSH-18 (first repetition) */
    struct hl7_span nhs_number;    /* see hl7_nhs_number */
};
void hl7_meta(const struct hl7_msg *msg, struct hl7_meta *m);

/* The NHS number: CX.1 of the first PID-3 repetition whose CX.4 (first
 * subcomponent) is NHS or whose CX.5 is NH. Returns false if none. */
bool hl7_nhs_number(const struct hl7_msg *msg, struct hl7_span *out);

/* Modulus 11 check of a 10-digit NHS number. */
enum hl7_nhs_check {
    HL7_NHS_VALID = 0,
    HL7_NHS_EMPTY,          /* no number given */
    HL7_NHS_LENGTH,         /* not 10 characters */
    HL7_NHS_NOT_DIGITS,     /* a character that is not 0-9 */
    HL7_NHS_CHECK_DIGIT,    /* check digit wrong, or the remainder gives 10 */
};
enum hl7_nhs_check hl7_nhs_check(const char *s, size_t len);
const char *hl7_nhs_check_str(enum hl7_nhs_check c);

/* ------------------------------------------------------------------- ACKs */

enum hl7_ack_code { HL7_AA, HL7_AE, HL7_AR, HL7_CA, HL7_CE, HL7_CR };
enum hl7_ack_kind { HL7_ACK_ACCEPT, HL7_ACK_ERROR, HL7_ACK_REJECT };

/* Enhanced mode when MSH-15 or MSH-16 is non-empty: then ACCEPT, ERROR
 * and REJECT become CA, CE, CR; otherwise AA, AE, AR. msg may be NULL
 * (original mode). */
enum hl7_ack_code hl7_ack_code_for(const struct hl7_msg *msg,
                                   enum hl7_ack_kind kind);
const char *hl7_ack_code_str(enum hl7_ack_code c);

struct hl7_ack_req {
    enum hl7_ack_code code;
    const struct hl7_msg *msg;   /* the message answered, or NULL when it
                                    did not parse: then raw/raw_len is read
                                    for whatever MSH fields can be recovered */
    const char *raw;
    size_t      raw_len;
    const char *control_id;      /* MSH-10 of the ACK; NULL: generated */
    time_t      now;             /* MSH-7; 0: time(NULL) */
    /* The error, for AE/AR/CE/CR (may be NULL): table 0357 code, location
       and text. hl7_code 0 means hl7_err_table0357(err->code). */
    const struct hl7_error *err;
    int         hl7_code;
    char        severity;        /* ERR-4: 'E' (default), 'W' or 'I' */
    unsigned    err_rep;         /* the field repetition at fault, ERR-2.4
                                    (v2.5 on; ERR-1 has no place for it);
                                    0: not given */
};

/* Build the ACK into b (appended): MSH with MSH-3/4 and MSH-5/6 swapped,
 * MSH-7 now, MSH-9 ACK^<trigger>^ACK, MSH-10 fresh, MSH-11, MSH-12 and
 * MSH-18 copied, the sender's delimiters; MSA-1 code, MSA-2 the original
 * MSH-10; and for an error an ERR segment in the form of the message's
 * version (before 2.5: ERR-1; 2.5 on: ERR-2, ERR-3, ERR-4, ERR-7, ERR-8).
 * Recovered bytes are sanitised so that no control character reaches the
 * ACK. Segments end in CR. Returns 0 or HL7_E_NOMEM. */
int hl7_ack_build(const struct hl7_ack_req *req, struct buf *b);

#endif
