/*
 * fuzz_ack.c: libFuzzer target for the ACK builder. The first two bytes
 * choose the ACK code and options; the rest is what a sender sent. An ACK
 * is built from the raw bytes alone (as when they do not parse) and, when
 * they parse, from the message too. Every ACK must parse, carry no control
 * byte but CR, and say what the request asked for.
 */
#include "fuzz.h"

static bool field_is(const struct hl7_msg *m, const char *path,
                     const char *want)
{
    struct hl7_span s;
    hl7_get_str(m, path, &s);
    return fuzz_span_eq(&s, want, strlen(want));
}

/* The raw text of path in the ACK is that of orig_path in the original,
 * when that is present and clean (so no sanitising could change it). */
static void check_copied(const struct hl7_msg *ack, const char *ack_path,
                         const struct hl7_msg *orig, const char *orig_path)
{
    struct hl7_span a, o;
    hl7_get_str(ack, ack_path, &a);
    hl7_get_str(orig, orig_path, &o);
    if (o.len == 0 || !fuzz_clean(o.p, o.len))
        return;   /* absent: the builder may supply a default */
    if (!fuzz_span_eq(&a, o.p, o.len)) {
        fprintf(stderr, "ACK %s is '%.*s', original %s is '%.*s'\n",
                ack_path, (int)a.len, a.p ? a.p : "", orig_path, (int)o.len,
                o.p ? o.p : "");
        CHECK(!"field copied into the ACK");
    }
}

static bool is_error_code(enum hl7_ack_code c)
{
    return c != HL7_AA && c != HL7_CA;
}

static void check_ack(const struct hl7_ack_req *req)
{
    struct buf b = {0};
    if (buf_append(&b, "PFX", 3) != 0)
        return;
    int rc = hl7_ack_build(req, &b);
    if (rc == HL7_E_NOMEM)
        goto out;
    CHECK(rc == 0);
    CHECK(b.len > 3 && memcmp(b.p, "PFX", 3) == 0);
    const char *ack = b.p + 3;
    size_t len = b.len - 3;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)ack[i];
        if ((c < 0x20 && c != '\r') || c == 0x7f) {
            fprintf(stderr, "ACK byte %zu is 0x%02x: %.*s\n", i, c,
                    (int)len, ack);
            CHECK(!"control byte in the ACK");
        }
    }
    CHECK(ack[len - 1] == '\r');

    struct hl7_msg *m = NULL;
    struct hl7_error err;
    rc = hl7_parse(ack, len, NULL, &m, &err);
    if (rc == HL7_E_NOMEM)
        goto out;
    if (rc != 0) {
        fprintf(stderr, "ACK does not parse: %s at %zu (%s)\n", err.text,
                err.offset, hl7_strerror(rc));
        CHECK(!"ACK parses");
    }

    struct hl7_meta meta;
    hl7_meta(m, &meta);
    CHECK(fuzz_span_eq(&meta.code, "ACK", 3));
    CHECK(meta.control_id.len > 0);
    if (req->control_id)
        CHECK(fuzz_span_eq(&meta.control_id, req->control_id,
                           strlen(req->control_id)));
    struct hl7_span s;
    CHECK(hl7_get_str(m, "MSH-7", &s) == HL7_VALUE);
    CHECK(hl7_segment_count(m, "MSH") == 1);
    CHECK(hl7_segment_count(m, "MSA") == 1);
    CHECK(field_is(m, "MSA-1", hl7_ack_code_str(req->code)));
    if (req->err && is_error_code(req->code))
        CHECK(hl7_segment_count(m, "ERR") >= 1);

    const struct hl7_msg *o = req->msg;
    if (o) {
        const struct hl7_delims *d1 = hl7_msg_delims(o), *d2 = hl7_msg_delims(m);
        CHECK(d1->field == d2->field && d1->component == d2->component &&
              d1->repetition == d2->repetition && d1->escape == d2->escape &&
              d1->subcomponent == d2->subcomponent);
        check_copied(m, "MSA-2", o, "MSH-10");
        check_copied(m, "MSH-3", o, "MSH-5");
        check_copied(m, "MSH-4", o, "MSH-6");
        check_copied(m, "MSH-5", o, "MSH-3");
        check_copied(m, "MSH-6", o, "MSH-4");
        check_copied(m, "MSH-12.1", o, "MSH-12.1");
        struct hl7_span trig;
        if (hl7_get_str(o, "MSH-9.2", &trig) == HL7_VALUE)
            check_copied(m, "MSH-9.2", o, "MSH-9.2");
    }
    hl7_free(m);
out:
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t opt = data[0], opt2 = data[1];
    const char *raw = (const char *)data + 2;
    size_t len = size - 2;

    for (int c = HL7_AA; c <= HL7_CR; c++) {
        const char *s = hl7_ack_code_str(c);
        CHECK(s != NULL && strlen(s) == 2);
    }
    CHECK(hl7_ack_code_for(NULL, HL7_ACK_ACCEPT) == HL7_AA);
    CHECK(hl7_ack_code_for(NULL, HL7_ACK_ERROR) == HL7_AE);
    CHECK(hl7_ack_code_for(NULL, HL7_ACK_REJECT) == HL7_AR);

    struct hl7_msg *msg = NULL;
    struct hl7_error perr;
    int prc = hl7_parse(raw, len, NULL, &msg, &perr);
    if (prc == HL7_E_NOMEM)
        return 0;

    /* The caller's own error, with whatever text the input carries. */
    struct hl7_error own;
    memset(&own, 0, sizeof own);
    own.code = HL7_E_MISSING_FIELD;
    memcpy(own.segment, (opt2 & 1) ? "PID" : "", (opt2 & 1) ? 4 : 1);
    own.seg_seq = opt2 >> 4;
    own.field = opt2;
    own.offset = len;
    size_t tl = len < sizeof own.text - 1 ? len : sizeof own.text - 1;
    memcpy(own.text, raw, tl);
    own.text[tl] = '\0';

    static const char sev[] = { 'E', 'W', 'I', '\0' };
    struct hl7_ack_req req = {
        .code = (enum hl7_ack_code)(opt % 6),
        .msg = NULL,
        .raw = raw,
        .raw_len = len,
        .control_id = (opt & 8) ? "ACK0001" : NULL,
        .now = (opt & 16) ? (time_t)1795000000 : 0,
        .err = NULL,
        .hl7_code = (opt & 32) ? 207 : 0,
        .severity = sev[(opt2 >> 1) & 3],
    };
    if (opt & 64)
        req.err = prc != 0 ? &perr : &own;
    else if (opt & 128)
        req.err = &own;

    check_ack(&req);

    if (prc == 0) {
        struct hl7_meta meta;
        hl7_meta(msg, &meta);
        bool enhanced = meta.accept_ack.len > 0 || meta.app_ack.len > 0;
        CHECK(hl7_ack_code_for(msg, HL7_ACK_ACCEPT) ==
              (enhanced ? HL7_CA : HL7_AA));
        CHECK(hl7_ack_code_for(msg, HL7_ACK_ERROR) ==
              (enhanced ? HL7_CE : HL7_AE));
        CHECK(hl7_ack_code_for(msg, HL7_ACK_REJECT) ==
              (enhanced ? HL7_CR : HL7_AR));
        req.msg = msg;
        check_ack(&req);
        hl7_free(msg);
    }
    return 0;
}
