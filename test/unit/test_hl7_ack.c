/*
 * test_hl7_ack.c: the ACK builder. Every ACK is parsed back with
 * hl7_parse and checked field by field; ACKs for broken or hostile input
 * must still parse and carry no control character but the CR that ends
 * each segment.
 */
#include <time.h>

#include "hl7_test_util.h"

#define NOW ((time_t)1780000000)      /* 2026-05-28 20:26:40 UTC */

/* The bytes of an ACK: printable apart from CR, which ends every segment
 * (including the last), each segment starting with a 3-character name. */
static bool ack_bytes_clean(const struct buf *b)
{
    bool ok = b->len >= 4 && b->p[b->len - 1] == '\r' && memcmp(b->p, "MSH", 3) == 0;
    for (size_t i = 0; ok && i < b->len; i++) {
        unsigned char c = (unsigned char)b->p[i];
        if ((c < 0x20 && c != '\r') || c == 0x7f)
            ok = false;
        if (c == '\r' && i + 1 < b->len) {
            /* a segment name follows */
            ok = i + 4 <= b->len;
            for (size_t k = 1; ok && k <= 3; k++) {
                unsigned char n = (unsigned char)b->p[i + k];
                ok = (n >= 'A' && n <= 'Z') || (n >= '0' && n <= '9');
            }
        }
    }
    if (!ok)
        print_error("ACK bytes not clean: \"%s\"\n", show(b->p, b->len));
    return ok;
}

/* Build an ACK, check its bytes, and parse it into s. */
static void build_and_parse_at(const struct hl7_ack_req *req, struct sample *s,
                               const char *file, int line)
{
    struct buf b = {0};
    int rc = hl7_ack_build(req, &b);
    if (rc != 0)
        print_error("hl7_ack_build returned %d\n", rc);
    if (rc != 0 || !ack_bytes_clean(&b)) {
        buf_free(&b);
        _fail(file, line);
    }
    struct hl7_error err = {0};
    s->buf = dup_exact(b.p, b.len);
    s->len = b.len;
    s->msg = NULL;
    buf_free(&b);
    rc = hl7_parse(s->buf, s->len, NULL, &s->msg, &err);
    if (rc != 0) {
        print_error("the ACK \"%s\" does not parse: %d (%s) at %s-%u: %s\n",
                    show(s->buf, s->len), rc, hl7_strerror(rc), err.segment, err.field,
                    err.text);
        free(s->buf);
        _fail(file, line);
    }
}
#define build_and_parse(req, s) build_and_parse_at((req), (s), __FILE__, __LINE__)

static void assert_time_field(const struct hl7_msg *ack, time_t when)
{
    struct hl7_span t;
    assert_int_equal(hl7_get_str(ack, "MSH-7", &t), HL7_VALUE);
    assert_true(t.len >= 14);
    char local[32], utc[32];
    struct tm tm;
    strftime(local, sizeof local, "%Y%m%d%H%M%S", localtime_r(&when, &tm));
    strftime(utc, sizeof utc, "%Y%m%d%H%M%S", gmtime_r(&when, &tm));
    if (memcmp(t.p, local, 14) != 0 && memcmp(t.p, utc, 14) != 0)
        fail_msg("MSH-7 \"%s\", want %s (local) or %s (UTC)", show(t.p, t.len),
                 local, utc);
}

/* ------------------------------------------------------------- codes */

static void test_ack_code_for(void **state)
{
    (void)state;
    static const struct {
        const char *msh;      /* NULL: msg NULL */
        enum hl7_ack_code accept, error, reject;
    } cases[] = {
        { NULL, HL7_AA, HL7_AE, HL7_AR },
        { "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4\r", HL7_AA, HL7_AE, HL7_AR },
        { "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4|||||\r", HL7_AA, HL7_AE, HL7_AR },
        { "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4|||AL|NE\r", HL7_CA, HL7_CE, HL7_CR },
        { "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4|||NE\r", HL7_CA, HL7_CE, HL7_CR },
        { "MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4||||AL\r", HL7_CA, HL7_CE, HL7_CR },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s = {0};
        if (cases[i].msh)
            text_open(&s, cases[i].msh);
        assert_int_equal(hl7_ack_code_for(s.msg, HL7_ACK_ACCEPT), cases[i].accept);
        assert_int_equal(hl7_ack_code_for(s.msg, HL7_ACK_ERROR), cases[i].error);
        assert_int_equal(hl7_ack_code_for(s.msg, HL7_ACK_REJECT), cases[i].reject);
        sample_close(&s);
    }
    /* samples: adt_a01 carries MSH-15 AL, so it is enhanced mode; the
     * stray_escape sample ends at MSH-12 */
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    assert_int_equal(hl7_ack_code_for(s.msg, HL7_ACK_ACCEPT), HL7_CA);
    sample_close(&s);
    sample_open(&s, "stray_escape.hl7");
    assert_int_equal(hl7_ack_code_for(s.msg, HL7_ACK_ACCEPT), HL7_AA);
    sample_close(&s);
}

static void test_ack_code_str(void **state)
{
    (void)state;
    static const char *want[] = { "AA", "AE", "AR", "CA", "CE", "CR" };
    static const enum hl7_ack_code codes[] = { HL7_AA, HL7_AE, HL7_AR, HL7_CA,
                                               HL7_CE, HL7_CR };
    for (size_t i = 0; i < ARRAY_LEN(codes); i++)
        assert_string_equal(hl7_ack_code_str(codes[i]), want[i]);
}

/* ------------------------------------------------------------- accept */

static void test_ack_accept_adt_a01(void **state)
{
    (void)state;
    struct sample in, ack;
    sample_open(&in, "adt_a01.hl7");
    struct hl7_ack_req req = {
        .code = HL7_AA, .msg = in.msg, .raw = in.buf, .raw_len = in.len,
        .control_id = "ACK0001", .now = NOW,
    };
    build_and_parse(&req, &ack);
    static const struct {
        const char *path, *want;
    } fields[] = {
        { "MSH-1", "|" }, { "MSH-2", "^~\\&" },
        { "MSH-3", "LCR" }, { "MSH-4", "ONELONDON" },
        { "MSH-5", "PAS" }, { "MSH-6", "RLH" },
        { "MSH-9", "ACK^A01^ACK" }, { "MSH-10", "ACK0001" },
        { "MSH-11", "P" }, { "MSH-12", "2.4" }, { "MSH-18", "UNICODE UTF-8" },
        { "MSA-1", "AA" }, { "MSA-2", "RLH000000123" },
    };
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        assert_value(ack.msg, fields[i].path, fields[i].want);
    assert_time_field(ack.msg, NOW);
    assert_int_equal(hl7_segment_count(ack.msg, NULL), 2);
    assert_int_equal(hl7_segment_count(ack.msg, "MSA"), 1);
    assert_int_equal(hl7_segment_count(ack.msg, "ERR"), 0);
    struct hl7_meta m;
    hl7_meta(ack.msg, &m);
    assert_span(m.code, "ACK");
    assert_span(m.trigger, "A01");
    assert_span(m.structure, "ACK");
    sample_close(&ack);

    /* the ACK is appended to what the buffer holds */
    struct buf b = {0};
    buf_puts(&b, "\x0b");
    assert_int_equal(hl7_ack_build(&req, &b), 0);
    assert_true(b.len > 4);
    assert_memory_equal(b.p, "\x0bMSH|^~\\&|LCR|", 14);
    buf_free(&b);
    sample_close(&in);
}

static void test_ack_generated_control_id_and_time(void **state)
{
    (void)state;
    struct sample in, a1, a2;
    sample_open(&in, "oru_r01.hl7");
    struct hl7_ack_req req = { .code = HL7_CA, .msg = in.msg, .raw = in.buf,
                               .raw_len = in.len };
    time_t before = time(NULL);
    build_and_parse(&req, &a1);
    build_and_parse(&req, &a2);
    struct hl7_span id1, id2;
    assert_int_equal(hl7_get_str(a1.msg, "MSH-10", &id1), HL7_VALUE);
    assert_int_equal(hl7_get_str(a2.msg, "MSH-10", &id2), HL7_VALUE);
    if (id1.len == id2.len && memcmp(id1.p, id2.p, id1.len) == 0)
        fail_msg("two ACKs share the generated control id \"%s\"", show(id1.p, id1.len));
    assert_value(a1.msg, "MSA-1", "CA");
    assert_value(a1.msg, "MSA-2", "UCLH-LAB-55501");
    assert_value(a1.msg, "MSH-9", "ACK^R01^ACK");
    /* now 0: the current time (allow the second to tick over) */
    struct hl7_span t;
    assert_int_equal(hl7_get_str(a1.msg, "MSH-7", &t), HL7_VALUE);
    char l1[32], l2[32], u1[32], u2[32];
    struct tm tm;
    time_t after = before + 1;
    strftime(l1, sizeof l1, "%Y%m%d%H%M%S", localtime_r(&before, &tm));
    strftime(l2, sizeof l2, "%Y%m%d%H%M%S", localtime_r(&after, &tm));
    strftime(u1, sizeof u1, "%Y%m%d%H%M%S", gmtime_r(&before, &tm));
    strftime(u2, sizeof u2, "%Y%m%d%H%M%S", gmtime_r(&after, &tm));
    assert_true(t.len >= 14);
    assert_true(memcmp(t.p, l1, 14) == 0 || memcmp(t.p, l2, 14) == 0 ||
                memcmp(t.p, u1, 14) == 0 || memcmp(t.p, u2, 14) == 0);
    sample_close(&a1);
    sample_close(&a2);
    sample_close(&in);
}

/* The sender's delimiters, all five of them where v2.7 gives five. */
static void test_ack_keeps_delimiters(void **state)
{
    (void)state;
    struct sample in, ack;
    sample_open(&in, "custom_delimiters.hl7");
    struct hl7_ack_req req = { .code = HL7_AA, .msg = in.msg, .raw = in.buf,
                               .raw_len = in.len, .control_id = "A1", .now = NOW };
    struct buf b = {0};
    assert_int_equal(hl7_ack_build(&req, &b), 0);
    assert_true(b.len > 9);
    assert_memory_equal(b.p, "MSH*%$@!*LCR*ONELONDON*GPSYS*H85026*", 36);
    buf_free(&b);
    build_and_parse(&req, &ack);
    const struct hl7_delims *d = hl7_msg_delims(ack.msg);
    assert_int_equal(d->field, '*');
    assert_int_equal(d->component, '%');
    assert_int_equal(d->repetition, '$');
    assert_int_equal(d->escape, '@');
    assert_int_equal(d->subcomponent, '!');
    assert_value(ack.msg, "MSH-9", "ACK%A28%ACK");
    assert_value(ack.msg, "MSH-12", "2.5");
    assert_value(ack.msg, "MSA-1", "AA");
    assert_value(ack.msg, "MSA-2", "H85026-19");
    sample_close(&ack);
    sample_close(&in);

    sample_open(&in, "v27_truncation.hl7");
    req = (struct hl7_ack_req){ .code = HL7_AA, .msg = in.msg, .raw = in.buf,
                                .raw_len = in.len, .control_id = "A2", .now = NOW };
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "MSH-2", "^~\\&#");
    assert_int_equal(hl7_msg_delims(ack.msg)->truncation, '#');
    assert_value(ack.msg, "MSH-9", "ACK^A31^ACK");
    assert_value(ack.msg, "MSH-12", "2.7");
    assert_value(ack.msg, "MSA-2", "LNWH-31-0007");
    sample_close(&ack);
    sample_close(&in);
}

/* -------------------------------------------------------------- errors */

/* Before 2.5: ERR-1 = segment^sequence^field^code&text&HL70357. */
static void test_ack_error_v24(void **state)
{
    (void)state;
    struct sample in, ack;
    sample_open(&in, "adt_a01.hl7");
    struct hl7_error err = { .code = HL7_E_BAD_VALUE, .segment = "PID", .seg_seq = 1,
                             .field = 3, .offset = 200, .text = "PID-3 is not a CX" };
    struct hl7_ack_req req = { .code = HL7_AE, .msg = in.msg, .raw = in.buf,
                               .raw_len = in.len, .control_id = "E1", .now = NOW,
                               .err = &err, .hl7_code = 102 };
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "MSA-1", "AE");
    assert_value(ack.msg, "MSA-2", "RLH000000123");
    assert_int_equal(hl7_segment_count(ack.msg, "ERR"), 1);
    assert_value(ack.msg, "ERR-1.1", "PID");
    assert_value(ack.msg, "ERR-1.2", "1");
    assert_value(ack.msg, "ERR-1.3", "3");
    assert_value(ack.msg, "ERR-1.4.1", "102");
    assert_value(ack.msg, "ERR-1.4.3", "HL70357");
    struct hl7_span text;
    assert_int_equal(hl7_get_str(ack.msg, "ERR-1.4.2", &text), HL7_VALUE);
    assert_true(text.len > 0);
    char name[4];
    struct hl7_span raw;
    assert_true(hl7_segment_at(ack.msg, 2, name, &raw));
    assert_string_equal(name, "ERR");
    assert_int_equal(hl7_field_count(ack.msg, 2), 1);       /* only ERR-1 */
    sample_close(&ack);

    /* hl7_code 0: taken from the codec error */
    err.code = HL7_E_MISSING_FIELD;
    err.field = 8;
    req.hl7_code = 0;
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "ERR-1.3", "8");
    assert_value(ack.msg, "ERR-1.4.1", "101");
    sample_close(&ack);
    sample_close(&in);
}

/* A version given, the form of the ERR segment that version uses. */
static void test_ack_error_form_by_version(void **state)
{
    (void)state;
    static const struct {
        const char *version;
        bool v25;
    } cases[] = {
        { "2.3", false }, { "2.3.1", false }, { "2.4", false },
        { "2.5", true }, { "2.5.1", true }, { "2.6", true }, { "2.7", true },
        { "2.8", true }, { "2.5^GBR", true }, { "2.4^GBR", false },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char text[256];
        snprintf(text, sizeof text,
                 "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|"
                 "V%zu|P|%s\rPID|1||X\r", i, cases[i].version);
        struct sample in, ack;
        text_open(&in, text);
        struct hl7_error err = { .code = HL7_E_BAD_VALUE, .segment = "PID",
                                 .seg_seq = 1, .field = 3, .text = "bad" };
        struct hl7_ack_req req = { .code = HL7_AE, .msg = in.msg, .control_id = "E",
                                   .raw = in.buf, .raw_len = in.len, .now = NOW,
                                   .err = &err, .hl7_code = 102 };
        build_and_parse(&req, &ack);
        struct hl7_span sp;
        bool has_err1 = hl7_get_str(ack.msg, "ERR-1.1", &sp) == HL7_VALUE;
        bool has_err3 = hl7_get_str(ack.msg, "ERR-3.1", &sp) == HL7_VALUE;
        if (has_err1 == cases[i].v25 || has_err3 != cases[i].v25)
            fail_msg("version %s: ERR-1 %s, ERR-3 %s; want the %s form",
                     cases[i].version, has_err1 ? "set" : "empty",
                     has_err3 ? "set" : "empty", cases[i].v25 ? "2.5" : "2.4");
        sample_close(&ack);
        sample_close(&in);
    }
}

/* 2.5 on: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user text. */
static void test_ack_error_v25(void **state)
{
    (void)state;
    static const char msg25[] =
        "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|MSG25|P|2.5\r"
        "PID|1||X\r";
    struct sample in, ack;
    text_open(&in, msg25);
    struct hl7_error err = { .code = HL7_E_BAD_VALUE, .segment = "PID", .seg_seq = 1,
                             .field = 3, .text = "bad | value ^ here & there" };
    struct hl7_ack_req req = { .code = HL7_AE, .msg = in.msg, .raw = in.buf,
                               .raw_len = in.len, .control_id = "E2", .now = NOW,
                               .err = &err, .hl7_code = 102 };
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "MSA-1", "AE");
    assert_value(ack.msg, "MSA-2", "MSG25");
    assert_value(ack.msg, "MSH-12", "2.5");
    assert_int_equal(hl7_segment_count(ack.msg, "ERR"), 1);
    struct hl7_span sp;
    assert_true(hl7_get_str(ack.msg, "ERR-1", &sp) <= HL7_EMPTY);
    assert_value(ack.msg, "ERR-2.1", "PID");
    assert_value(ack.msg, "ERR-2.2", "1");
    assert_value(ack.msg, "ERR-2.3", "3");
    assert_value(ack.msg, "ERR-3.1", "102");
    assert_value(ack.msg, "ERR-3.3", "HL70357");
    assert_value(ack.msg, "ERR-4", "E");
    assert_decoded(ack.msg, "ERR-8", "bad | value ^ here & there");
    sample_close(&ack);

    /* severity, enhanced code, a text holding line breaks */
    err.code = HL7_E_MISSING_FIELD;
    snprintf(err.text, sizeof err.text, "line one\r\nline two\x01");
    req.severity = 'W';
    req.code = HL7_CE;
    req.hl7_code = 0;
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "MSA-1", "CE");
    assert_value(ack.msg, "ERR-3.1", "101");
    assert_value(ack.msg, "ERR-4", "W");
    assert_int_equal(hl7_get_str(ack.msg, "ERR-8", &sp), HL7_VALUE);
    sample_close(&ack);

    req.severity = 'I';
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "ERR-4", "I");
    sample_close(&ack);
    sample_close(&in);
}

/* ------------------------------------------------ rejects of broken input */

struct reject_case {
    const char *file;
    const char *sapp, *sfac, *ctrl;   /* recovered MSH-3, MSH-4, MSH-10; NULL: not checked */
};

static const struct reject_case reject_cases[] = {
    { "bad/truncated_msh.hl7", NULL, NULL, NULL },
    { "bad/no_msh.hl7", NULL, NULL, NULL },
    { "bad/binary_garbage.hl7", NULL, NULL, NULL },
    { "bad/missing_type.hl7", "PAS", "RLH", "RLH-BAD-1" },
};

static void test_ack_reject_broken_input(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(reject_cases); i++) {
        const struct reject_case *c = &reject_cases[i];
        size_t len;
        char *raw = load_sample(c->file, &len);
        struct hl7_msg *msg = NULL;
        struct hl7_error err = {0};
        int rc = hl7_parse(raw, len, NULL, &msg, &err);
        assert_true(rc < 0);
        struct hl7_ack_req req = { .code = HL7_AR, .msg = NULL, .raw = raw,
                                   .raw_len = len, .control_id = "R1", .now = NOW,
                                   .err = &err };
        struct sample ack;
        build_and_parse(&req, &ack);
        assert_value(ack.msg, "MSA-1", "AR");
        assert_value(ack.msg, "MSH-10", "R1");
        assert_int_equal(hl7_segment_count(ack.msg, "ERR"), 1);
        /* the table 0357 code is in ERR-1.4.1 or ERR-3.1 */
        char code[8];
        snprintf(code, sizeof code, "%d", hl7_err_table0357(rc));
        struct hl7_span a = {0}, b = {0};
        hl7_get_str(ack.msg, "ERR-1.4.1", &a);
        hl7_get_str(ack.msg, "ERR-3.1", &b);
        bool found = (a.len == strlen(code) && memcmp(a.p, code, a.len) == 0) ||
                     (b.len == strlen(code) && memcmp(b.p, code, b.len) == 0);
        if (!found)
            fail_msg("%s: ACK carries no ERR code %s: \"%s\" / \"%s\"", c->file, code,
                     show(a.p, a.len), show(b.p, b.len));
        if (c->sapp) {
            assert_value(ack.msg, "MSH-5", c->sapp);
            assert_value(ack.msg, "MSH-6", c->sfac);
            assert_value(ack.msg, "MSH-3", "LCR");
            assert_value(ack.msg, "MSH-4", "ONELONDON");
            assert_value(ack.msg, "MSA-2", c->ctrl);
            assert_value(ack.msg, "MSH-12", "2.4");
        }
        sample_close(&ack);
        free(raw);
    }
    /* nothing at all to go on */
    struct hl7_ack_req req = { .code = HL7_AR, .control_id = "R2", .now = NOW };
    struct sample ack;
    build_and_parse(&req, &ack);
    assert_value(ack.msg, "MSA-1", "AR");
    assert_value(ack.msg, "MSH-9.1", "ACK");
    sample_close(&ack);
}

/* Control characters in whatever is recovered or copied never reach the
 * ACK. */
static void test_ack_sanitises(void **state)
{
    (void)state;
    static const struct {
        const char *raw;
        size_t len;
    } hostile[] = {
#define H(s) { s, sizeof s - 1 }
        H("MSH|^~\\&|P\x01" "AS|RL\x1b" "H|LCR|ONE\x7f" "LONDON|2026||ADT^A\x0b" "01|ID\0\x02X|P|2.4\r"),
        H("MSH\x01^~\\&\x01" "APP\x01" "FAC\x01\x01\x01\x01\x01" "ADT^A01\x01" "X\x01P\x01" "2.4\r"),
        H("MSH|\x0b~\\&|APP|FAC|||||ADT^A01|X|P|2.4\r"),
        H("MSH|^~\\&|APP|FAC|||||ADT^A01|X\nY\rZZZ|1|P|2.4\r"),
        H("MSH|^~\\&|A\x1c" "PP|F\x0b" "AC|||||ADT^A01|\x1c\r|P|2.4\r"),
        H("MSH|^~\\&|" "\xff\xfe" "|FAC|||||ADT^A01|X|P|2.\x00" "4\r"),
        H("MSH"),
        H("MSH|"),
        H("MSH|^~\\&|APP"),
        H("MSH|^~\\&|A\tPP|F\fAC|||||ADT^A\t01|X\t1|P\b|2.4\r"),
#undef H
    };
    for (size_t i = 0; i < ARRAY_LEN(hostile); i++) {
        char *raw = dup_exact(hostile[i].raw, hostile[i].len);
        struct hl7_ack_req req = { .code = HL7_AR, .raw = raw, .raw_len = hostile[i].len,
                                   .now = NOW };
        struct sample ack;
        build_and_parse(&req, &ack);
        assert_value(ack.msg, "MSA-1", "AR");
        sample_close(&ack);

        /* and when the hostile bytes did parse, from the message */
        struct hl7_msg *msg = NULL;
        if (hl7_parse(raw, hostile[i].len, NULL, &msg, NULL) == 0) {
            req.msg = msg;
            req.code = HL7_AA;
            build_and_parse(&req, &ack);
            assert_value(ack.msg, "MSA-1", "AA");
            sample_close(&ack);
            hl7_free(msg);
        }
        free(raw);
    }

}

/* Every control byte in the error text, in both ERR forms. */
static void test_ack_sanitises_error_text(void **state)
{
    (void)state;
    static const char *versions[] = { "2.4", "2.5" };
    for (size_t v = 0; v < ARRAY_LEN(versions); v++) {
        char text[160];
        snprintf(text, sizeof text, "MSH|^~\\&|A|B|C|D|2026||ADT^A01|X|P|%s\r", versions[v]);
        struct sample in;
        text_open(&in, text);
        struct hl7_error err = { .code = HL7_E_BAD_VALUE, .segment = "PID", .seg_seq = 1,
                                 .field = 3 };
        size_t k = 0;
        for (int c = 1; c < 0x20; c++) {
            err.text[k++] = 'x';
            err.text[k++] = (char)c;
        }
        err.text[k++] = 0x7f;
        err.text[k] = '\0';
        struct hl7_ack_req req = { .code = HL7_AE, .msg = in.msg, .raw = in.buf,
                                   .raw_len = in.len, .now = NOW, .err = &err };
        struct buf b = {0};
        int rc = hl7_ack_build(&req, &b);
        bool clean = rc == 0 && ack_bytes_clean(&b);
        buf_free(&b);
        sample_close(&in);
        if (!clean)
            fail_msg("v%s: control bytes of the error text reach the ACK", versions[v]);
    }
}

/* Random bytes after "MSH", parsed or not: the ACK always parses. */
static void test_ack_random_input(void **state)
{
    (void)state;
    uint64_t seed = 42;
    static const char alphabet[] = "|^~\\&#\r\n\x01\x0b\x1c\x7f\x00" "ADT^A01P2.4MSH";
    for (int round = 0; round < 400; round++) {
        size_t n = 3 + (size_t)(rng_next(&seed) % 120);
        char *raw = malloc(n);
        assert_non_null(raw);
        memcpy(raw, "MSH", 3);
        for (size_t k = 3; k < n; k++) {
            uint64_t r = rng_next(&seed);
            raw[k] = (r & 1) ? alphabet[(r >> 8) % (sizeof alphabet - 1)] : (char)(r >> 16);
        }
        struct hl7_error err = {0};
        struct hl7_msg *msg = NULL;
        int rc = hl7_parse(raw, n, NULL, &msg, &err);
        struct hl7_ack_req req = { .code = rc ? HL7_AR : HL7_AA, .msg = msg, .raw = raw,
                                   .raw_len = n, .now = NOW, .err = rc ? &err : NULL };
        struct sample ack;
        build_and_parse(&req, &ack);
        sample_close(&ack);
        hl7_free(msg);
        free(raw);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_code_for),
        cmocka_unit_test(test_ack_code_str),
        cmocka_unit_test(test_ack_accept_adt_a01),
        cmocka_unit_test(test_ack_generated_control_id_and_time),
        cmocka_unit_test(test_ack_keeps_delimiters),
        cmocka_unit_test(test_ack_error_v24),
        cmocka_unit_test(test_ack_error_form_by_version),
        cmocka_unit_test(test_ack_error_v25),
        cmocka_unit_test(test_ack_reject_broken_input),
        cmocka_unit_test(test_ack_sanitises),
        cmocka_unit_test(test_ack_sanitises_error_text),
        cmocka_unit_test(test_ack_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
