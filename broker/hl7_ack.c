/*
 * hl7_ack.c: building acknowledgements (DESIGN.md §2), for a parsed
 * message or, when the message did not parse, from whatever of its MSH
 * can be recovered.
 */
#include "hl7_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char *const ack_codes[] = { "AA", "AE", "AR", "CA", "CE", "CR" };

const char *hl7_ack_code_str(enum hl7_ack_code c)
{
    return (unsigned)c < 6 ? ack_codes[c] : "AR";
}

static const struct hl7_path P15 = { "MSH", 0, 15, 0, 0, 0 };
static const struct hl7_path P16 = { "MSH", 0, 16, 0, 0, 0 };

enum hl7_ack_code hl7_ack_code_for(const struct hl7_msg *msg, enum hl7_ack_kind kind)
{
    bool enhanced = false;
    if (msg) {
        struct hl7_span v;
        enhanced = hl7_get(msg, &P15, &v) >= HL7_NULL || hl7_get(msg, &P16, &v) >= HL7_NULL;
    }
    switch (kind) {
    case HL7_ACK_ACCEPT: return enhanced ? HL7_CA : HL7_AA;
    case HL7_ACK_ERROR: return enhanced ? HL7_CE : HL7_AE;
    case HL7_ACK_REJECT: break;
    }
    return enhanced ? HL7_CR : HL7_AR;
}

static const char *table0357_text(int code)
{
    switch (code) {
    case 0: return "Message accepted";
    case 100: return "Segment sequence error";
    case 101: return "Required field missing";
    case 102: return "Data type error";
    case 103: return "Table value not found";
    case 104: return "Value too long";
    case 200: return "Unsupported message type";
    case 201: return "Unsupported event code";
    case 202: return "Unsupported processing id";
    case 203: return "Unsupported version id";
    case 204: return "Unknown key identifier";
    case 205: return "Duplicate key identifier";
    case 206: return "Application record locked";
    }
    return "Application internal error";
}

/* The header fields an ACK copies, raw in the sender's delimiters. */
enum { F_SAPP, F_SFAC, F_RAPP, F_RFAC, F_TRIGGER, F_CTRL, F_PROC, F_VER, F_CHARSET, F_N };

static void from_msg(const struct hl7_msg *m, struct hl7_span f[F_N])
{
    static const struct hl7_path paths[F_N] = {
        [F_SAPP] = { "MSH", 0, 3, 0, 0, 0 },   [F_SFAC] = { "MSH", 0, 4, 0, 0, 0 },
        [F_RAPP] = { "MSH", 0, 5, 0, 0, 0 },   [F_RFAC] = { "MSH", 0, 6, 0, 0, 0 },
        [F_TRIGGER] = { "MSH", 0, 9, 0, 2, 0 }, [F_CTRL] = { "MSH", 0, 10, 0, 0, 0 },
        [F_PROC] = { "MSH", 0, 11, 0, 0, 0 },  [F_VER] = { "MSH", 0, 12, 0, 0, 0 },
        [F_CHARSET] = { "MSH", 0, 18, 0, 0, 0 },
    };
    for (int i = 0; i < F_N; i++)
        hl7_get(m, &paths[i], &f[i]);
}

static bool ok_delim(unsigned char c)
{
    return c > 0x20 && c < 0x7f && !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')
                                     || (c >= 'a' && c <= 'z'));
}

/* Recover delimiters and fields from the first line of unparsed input.
 * Anything doubtful falls back to the defaults and empty fields. */
static void recover(const char *raw, size_t len, struct hl7_delims *d, struct hl7_span f[F_N])
{
    *d = hl7_default_delims;
    if (!raw)
        return;
    size_t line = 0;
    while (line < len && raw[line] != '\r' && raw[line] != '\n')
        line++;
    if (line < 8 || memcmp(raw, "MSH", 3) != 0)
        return;
    char c[5];
    for (int i = 0; i < 5; i++)
        c[i] = raw[3 + i];
    for (int i = 0; i < 5; i++) {
        if (!ok_delim((unsigned char)c[i]))
            return;
        for (int j = 0; j < i; j++)
            if (c[i] == c[j])
                return;
    }
    d->field = c[0];
    d->component = c[1];
    d->repetition = c[2];
    d->escape = c[3];
    d->subcomponent = c[4];
    size_t k = 8;
    if (k < line && raw[k] != d->field && ok_delim((unsigned char)raw[k])
        && !memchr(c, raw[k], 5))
        d->truncation = raw[k++];
    if (k < line && raw[k] != d->field) {
        *d = hl7_default_delims;
        return;
    }
    /* raw[k] is the separator before MSH-3 */
    static const unsigned want[F_N] = { 3, 4, 5, 6, 9, 10, 11, 12, 18 };
    unsigned field = 2;
    size_t start = k + 1;
    for (size_t i = k + 1; i <= line; i++) {
        if (i < line && raw[i] != d->field)
            continue;
        field++;
        for (int j = 0; j < F_N; j++) {
            if (want[j] == field) {
                f[j].p = raw + start;
                f[j].len = i - start;
            }
        }
        start = i + 1;
    }
    /* the trigger is MSH-9.2 */
    struct hl7_span t = f[F_TRIGGER];
    f[F_TRIGGER].p = NULL;
    f[F_TRIGGER].len = 0;
    const char *c1 = t.p ? memchr(t.p, d->component, t.len) : NULL;
    if (c1) {
        const char *from = c1 + 1, *end = t.p + t.len;
        const char *c2 = memchr(from, d->component, (size_t)(end - from));
        f[F_TRIGGER].p = from;
        f[F_TRIGGER].len = (size_t)((c2 ? c2 : end) - from);
    }
}

/* Append a copied field, turning control bytes into \Xhh\ so nothing from
 * the sender can break the ACK's structure or its MLLP frame. */
static int put_safe(struct buf *b, const struct hl7_delims *d, const struct hl7_span *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->p[i];
        int rc;
        if (c < 0x20 || c == 0x7f) {
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

/* v2.5 and later carry the error in ERR-2..8; earlier versions in ERR-1. */
static bool version_25_or_later(const struct hl7_span *v, const struct hl7_delims *d)
{
    unsigned major = 0, minor = 0;
    size_t i = 0;
    while (i < v->len && v->p[i] >= '0' && v->p[i] <= '9')
        major = major * 10 + (unsigned)(v->p[i++] - '0');
    if (i == 0 || i >= v->len || v->p[i] != '.')
        return false;
    i++;
    size_t s = i;
    while (i < v->len && v->p[i] >= '0' && v->p[i] <= '9' && minor < 1000)
        minor = minor * 10 + (unsigned)(v->p[i++] - '0');
    if (i == s || (i < v->len && v->p[i] != '.' && v->p[i] != d->component))
        return false;
    return major > 2 || (major == 2 && minor >= 5);
}

static _Atomic unsigned long ack_counter;

int hl7_ack_build(const struct hl7_ack_req *req, struct buf *b)
{
    struct hl7_delims d;
    struct hl7_span f[F_N] = { { 0 } };
    if (req->msg) {
        d = *hl7_msg_delims(req->msg);
        from_msg(req->msg, f);
    } else {
        recover(req->raw, req->raw_len, &d, f);
    }
    const char fs = d.field, cs = d.component;

    time_t now = req->now ? req->now : time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    /* UTC, with its offset unless '+' is one of this sender's delimiters */
    bool plus = fs == '+' || cs == '+' || d.repetition == '+' || d.escape == '+'
                || d.subcomponent == '+' || d.truncation == '+';
    strftime(ts, sizeof ts, plus ? "%Y%m%d%H%M%S" : "%Y%m%d%H%M%S+0000", &tm);

    char gen[48];
    const char *ctrl = req->control_id;
    if (!ctrl) {
        snprintf(gen, sizeof gen, "ACK%lld%06lu", (long long)now,
                 (atomic_fetch_add(&ack_counter, 1) + 1) % 1000000);
        ctrl = gen;
    }
    struct hl7_span ctrl_s = { ctrl, strlen(ctrl) };
    static const struct hl7_span def_proc = { "P", 1 }, def_ver = { "2.4", 3 };
    const struct hl7_span *proc = f[F_PROC].len ? &f[F_PROC] : &def_proc;
    const struct hl7_span *ver = f[F_VER].len ? &f[F_VER] : &def_ver;
    /* MSH-12.1 decides the ERR form */
    struct hl7_span ver1 = *ver;
    const char *vc = memchr(ver1.p, cs, ver1.len);
    if (vc)
        ver1.len = (size_t)(vc - ver1.p);
    bool v25 = version_25_or_later(&ver1, &d);

    char enc[6] = { d.component, d.repetition, d.escape, d.subcomponent, d.truncation, 0 };
    size_t before = b->len;
    bool bad = false;
#define PUT(x) do { if (x) bad = true; } while (0)
    PUT(buf_append(b, "MSH", 3));
    PUT(buf_putc(b, fs));
    PUT(buf_puts(b, enc));
    const int swap[4] = { F_RAPP, F_RFAC, F_SAPP, F_SFAC };
    for (int i = 0; i < 4; i++) {
        PUT(buf_putc(b, fs));
        PUT(put_safe(b, &d, &f[swap[i]]));
    }
    PUT(buf_putc(b, fs));
    PUT(buf_puts(b, ts));
    PUT(buf_putc(b, fs));                       /* MSH-8 security */
    PUT(buf_putc(b, fs));
    PUT(buf_append(b, "ACK", 3));
    if (f[F_TRIGGER].len) {
        PUT(buf_putc(b, cs));
        PUT(put_safe(b, &d, &f[F_TRIGGER]));
        PUT(buf_putc(b, cs));
        PUT(buf_append(b, "ACK", 3));
    }
    PUT(buf_putc(b, fs));
    PUT(hl7_escape(&d, ctrl_s.p, ctrl_s.len, b));
    PUT(buf_putc(b, fs));
    PUT(put_safe(b, &d, proc));
    PUT(buf_putc(b, fs));
    PUT(put_safe(b, &d, ver));
    if (f[F_CHARSET].len) {
        for (int i = 13; i <= 18; i++)
            PUT(buf_putc(b, fs));
        PUT(put_safe(b, &d, &f[F_CHARSET]));
    }
    PUT(buf_putc(b, '\r'));

    bool error = req->code != HL7_AA && req->code != HL7_CA;
    const struct hl7_error *e = req->err;
    int code = req->hl7_code ? req->hl7_code : (e ? hl7_err_table0357(e->code) : 0);
    const char *text = e && e->text[0] ? e->text : NULL;

    PUT(buf_append(b, "MSA", 3));
    PUT(buf_putc(b, fs));
    PUT(buf_puts(b, hl7_ack_code_str(req->code)));
    PUT(buf_putc(b, fs));
    PUT(put_safe(b, &d, &f[F_CTRL]));
    if (error && text && !v25) {
        PUT(buf_putc(b, fs));                   /* MSA-3 text (before 2.5) */
        PUT(hl7_escape(&d, text, strlen(text), b));
    }
    PUT(buf_putc(b, '\r'));

    if (error && (code || e)) {
        if (!code)
            code = 207;
        const char *ctext = table0357_text(code);
        char sev = req->severity ? req->severity : 'E';
        char loc_seq[16] = "", loc_field[16] = "";
        const char *seg = e && e->segment[0] ? e->segment : "";
        if (seg[0]) {
            snprintf(loc_seq, sizeof loc_seq, "%u", e->seg_seq ? e->seg_seq : 1);
            if (e->field)
                snprintf(loc_field, sizeof loc_field, "%u", e->field);
        }
        PUT(buf_append(b, "ERR", 3));
        PUT(buf_putc(b, fs));
        if (!v25) {
            /* ERR-1 (ELD): segment ^ sequence ^ field ^ code&text&HL70357 */
            PUT(buf_printf(b, "%s%c%s%c%s%c%d%c", seg, cs, loc_seq, cs, loc_field, cs,
                           code, d.subcomponent));
            PUT(hl7_escape(&d, ctext, strlen(ctext), b));
            PUT(buf_printf(b, "%cHL70357", d.subcomponent));
        } else {
            /* ERR-2 location, ERR-3 code, ERR-4 severity, ERR-7 diagnostics,
               ERR-8 user message */
            PUT(buf_putc(b, fs));
            if (seg[0])
                PUT(buf_printf(b, "%s%c%s%c%s", seg, cs, loc_seq, cs, loc_field));
            if (seg[0] && e->field && req->err_rep)
                PUT(buf_printf(b, "%c%u", cs, req->err_rep));
            PUT(buf_printf(b, "%c%d%c", fs, code, cs));
            PUT(hl7_escape(&d, ctext, strlen(ctext), b));
            PUT(buf_printf(b, "%cHL70357%c%c%c%c%c", cs, fs, sev, fs, fs, fs));
            if (e) {
                char diag[64];
                snprintf(diag, sizeof diag, "byte offset %zu", e->offset);
                PUT(buf_puts(b, diag));
            }
            PUT(buf_putc(b, fs));
            if (text)
                PUT(hl7_escape(&d, text, strlen(text), b));
        }
        PUT(buf_putc(b, '\r'));
    }
#undef PUT
    if (bad) {
        b->len = before;
        return HL7_E_NOMEM;
    }
    return 0;
}
