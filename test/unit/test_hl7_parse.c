/*
 * test_hl7_parse.c: the codec's parser against every sample message, the
 * refused inputs of samples/bad and synthetic ones, error reporting, and
 * the structure walk.
 */
#include "hl7_test_util.h"

/* ------------------------------------------------------ sample values */

struct value_row {
    const char *path;
    enum hl7_presence pres;
    const char *raw;          /* raw bytes expected (ER7, escapes intact) */
};

struct sample_case {
    const char *file;
    const char *segments;     /* names in order, space-separated */
    const struct value_row *rows;   /* ends with a NULL path */
};

#define V(path, raw) { path, HL7_VALUE, raw }
#define E(path)      { path, HL7_EMPTY, "" }
#define A(path)      { path, HL7_ABSENT, "" }
#define END          { NULL, 0, NULL }

static const struct sample_case sample_cases[] = {
    { "adt_a01.hl7", "MSH EVN PID PD1 NK1 PV1 AL1 DG1", (const struct value_row[]){
        V("MSH-1", "|"), V("MSH-2", "^~\\&"), V("MSH-3", "PAS"), V("MSH-4", "RLH"),
        V("MSH-5", "LCR"), V("MSH-6", "ONELONDON"), V("MSH-7", "20261121093015"),
        E("MSH-8"), V("MSH-9", "ADT^A01^ADT_A01"), V("MSH-9.1", "ADT"),
        V("MSH-9.2", "A01"), V("MSH-9.3", "ADT_A01"), A("MSH-9.4"),
        V("MSH-10", "RLH000000123"), V("MSH-11", "P"), V("MSH-12", "2.4"),
        V("MSH-15", "AL"), V("MSH-16", "NE"), V("MSH-18", "UNICODE UTF-8"),
        V("MSH-21", "ITKv1.0"), A("MSH-22"),
        V("EVN-1", "A01"), V("EVN-5", "C12345^JONES^ANNE^^^DR"), V("EVN-5.2", "JONES"),
        V("EVN-6", "20261121092500"),
        V("PID-1", "1"), E("PID-2"),
        V("PID-3", "9990000018^^^NHS^NH~RLH1234567^^^RLH^MR"),
        V("PID-3[1]", "9990000018^^^NHS^NH"), V("PID-3[1].1", "9990000018"),
        V("PID-3.1", "9990000018"), V("PID-3[1].4", "NHS"), V("PID-3[1].5", "NH"),
        V("PID-3[2].1", "RLH1234567"), V("PID-3[2].4", "RLH"), V("PID-3[2].5", "MR"),
        E("PID-3[2].2"), A("PID-3[3]"), A("PID-3[2].6"),
        V("PID-5", "SMITH^JOHN^ALEXANDER^^MR"), V("PID-5.1", "SMITH"),
        V("PID-5.1.1", "SMITH"), A("PID-5.1.2"), V("PID-5.2", "JOHN"),
        V("PID-5.3", "ALEXANDER"), E("PID-5.4"), V("PID-5.5", "MR"), A("PID-5.6"),
        V("PID-7", "19700101"), V("PID-8", "M"), V("PID-11.5", "E1 1AA"),
        V("PID-11.7", "H"), V("PID-13.1", "02079460000"), E("PID-31"),
        V("PID-32", "NSTS01"), A("PID-33"),
        V("PD1-3", "STEPNEY GREEN PRACTICE^^F84003"), V("PD1-3.3", "F84003"),
        V("PD1-4.2", "BROWN"), V("NK1-3.2", "Spouse"), V("NK1-5", "02079460001"),
        V("PV1-2", "I"), V("PV1-3.1", "RLH-W12"), V("PV1-3.4", "RLH"),
        V("PV1-19", "IP20261121001"), V("PV1-44", "20261121092500"), A("PV1-45"),
        V("AL1-3.2", "Penicillin"), V("AL1-5", "Anaphylaxis"),
        V("DG1-3.2", "Acute myocardial infarction, unspecified"), V("DG1-6", "A"),
        A("PID[2]-1"), A("OBX-1"), A("ZZZ"),
        END } },
    { "adt_a03.hl7", "MSH EVN PID PV1", (const struct value_row[]){
        V("MSH-9.2", "A03"), V("MSH-9.3", "ADT_A03"), V("MSH-10", "RLH000000187"),
        V("EVN-2", "20261125160500"), V("PID-3[1].1", "9990000018"),
        V("PV1-36", "01"), V("PV1-43", "20261121092500"), V("PV1-44", "20261125160000"),
        A("PV1-45"),
        END } },
    { "adt_a08_escapes.hl7", "MSH EVN PID PV1 NTE OBX", (const struct value_row[]){
        V("MSH-9.2", "A08"), V("MSH-10", "KCH-77812"),
        V("PID-5.1", "O'NEILL"), V("PID-11.1", "FLAT 2\\T\\3"),
        V("PID-11.2", "CHAMPION HILL"),
        V("NTE-3", "Carer present \\F\\ interpreter requested\\.br\\Prefers "
                   "\\S\\morning\\S\\ appointments \\E\\ see note\\R\\second part"),
        A("NTE-3[2]"), A("NTE-3.2"),
        V("OBX-5", "Line one\\X0D\\\\X0A\\Line two with caf\\XC3A9\\"), V("OBX-11", "F"),
        END } },
    { "adt_a40_merge.hl7", "MSH EVN PID MRG", (const struct value_row[]){
        V("MSH-9.2", "A40"), V("MSH-9.3", "ADT_A39"), V("MSH-10", "GSTT-000991"),
        V("PID-3[2].1", "G7654321"), V("MRG-1", "G1111111^^^GSTT^MR"),
        V("MRG-1.1", "G1111111"), V("MRG-1.4", "GSTT"), V("MRG-1.5", "MR"),
        END } },
    { "oru_r01.hl7", "MSH PID PV1 ORC OBR OBX OBX OBX NTE", (const struct value_row[]){
        V("MSH-9", "ORU^R01^ORU_R01"), V("MSH-10", "UCLH-LAB-55501"),
        V("PID-5.1", "KOWALSKI"), V("ORC-2", "ORD778812"),
        V("OBR-4.2", "Full blood count"), V("OBR-25", "F"),
        V("OBX-5", "118"), V("OBX[1]-5", "118"), V("OBX[2]-5", "7.2"),
        V("OBX[3]-5", "254"), V("OBX[3]-3.2", "Platelets"), V("OBX[2]-6", "10*9/L"),
        V("OBX[3]-8", "N"), V("OBX[3]-14", "20261121142500"), A("OBX[4]-5"),
        A("OBX[4]"), V("NTE-1", "1"), V("NTE-3", "Mild anaemia. Suggest ferritin."),
        END } },
    { "mdm_t02_letter.hl7", "MSH EVN PID PV1 TXA OBX", (const struct value_row[]){
        V("MSH-9.3", "MDM_T02"), V("MSH-10", "BARTS-DOC-3301"),
        V("TXA-2.2", "Discharge summary"), E("TXA-12"), V("TXA-13", "DOC-3301"), V("TXA-17", "AU"),
        V("OBX-2", "ED"), E("OBX-5.1"), V("OBX-5.2", "application"),
        V("OBX-5.3", "pdf"), V("OBX-5.4", "Base64"),
        V("OBX-5.5", "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRv"
                     "YmoKdHJhaWxlcgo8PC9Sb290IDEgMCBSPj4KJSVFT0YK"),
        V("OBX-11", "F"),
        END } },
    { "custom_delimiters.hl7", "MSH EVN PID", (const struct value_row[]){
        V("MSH-1", "*"), V("MSH-2", "%$@!"), V("MSH-3", "GPSYS"), V("MSH-4", "H85026"),
        V("MSH-9", "ADT%A28%ADT_A05"), V("MSH-9.1", "ADT"), V("MSH-9.2", "A28"),
        V("MSH-10", "H85026-19"), V("MSH-12", "2.5"),
        V("PID-3", "9990000107%%%NHS%NH$H8-0042%%%H85026%MR"),
        V("PID-3[1].1", "9990000107"), V("PID-3[1].4", "NHS"),
        V("PID-3[2].1", "H8-0042"), V("PID-3[2].4", "H85026"),
        V("PID-5.1", "EVANS"), V("PID-5.2", "GARETH"), V("PID-7", "19480229"),
        V("PID-8", "M"),
        END } },
    { "v27_truncation.hl7", "MSH EVN PID PV1", (const struct value_row[]){
        V("MSH-1", "|"), V("MSH-2", "^~\\&#"), V("MSH-3", "PAS"), V("MSH-4", "LNWH"),
        V("MSH-9.2", "A31"), V("MSH-10", "LNWH-31-0007"), V("MSH-12", "2.7"),
        E("EVN-1"), V("EVN-2", "20261121120500"), V("PID-5.1", "CHEN"),
        V("PV1-2", "N"),
        END } },
    { "stray_escape.hl7", "MSH PID", (const struct value_row[]){
        V("MSH-10", "RLH-BAD-4"), V("PID-5", "SMI\\TH^JOHN\\X4"),
        V("PID-5.1", "SMI\\TH"), V("PID-5.2", "JOHN\\X4"), V("PID-7", "19700101"),
        V("PID-8", "M"),
        END } },
    { "adt_a01_lf.hl7", "MSH EVN PID PV1", (const struct value_row[]){
        V("MSH-10", "STG-4410"), V("MSH-16", "NE"), V("EVN-2", "20261121083000"),
        V("PID-3.1", "9990000085"), V("PID-5.1", "NGUYEN"), V("PID-8", "F"),
        V("PV1-3", "STG-ED^^^STG"), V("PV1-3.4", "STG"), A("PV1-4"),
        END } },
    { "adt_a01_crlf.hl7", "MSH EVN PID PV1", (const struct value_row[]){
        V("MSH-10", "STG-4411"), V("MSH-16", "NE"), V("EVN-2", "20261121083100"),
        V("PID-3.1", "9990000093"), V("PID-5.1", "ADEYEMI"), V("PID-8", "M"),
        V("PV1-3", "STG-ED^^^STG"), V("PV1-3.4", "STG"), A("PV1-4"),
        END } },
    { "bad/bad_nhs_number.hl7", "MSH EVN PID PV1", (const struct value_row[]){
        V("MSH-10", "RLH-BAD-2"), V("PID-3.1", "9990000019"), V("PV1-2", "I"),
        END } },
    { "bad/unknown_version.hl7", "MSH PID", (const struct value_row[]){
        V("MSH-9.1", "ADT"), V("MSH-10", "RLH-BAD-3"), V("MSH-12", "9.9"),
        V("PID-1", "1"),
        END } },
};

static void test_sample_values(void **state)
{
    const struct sample_case *c = *state;
    struct sample s;
    sample_open(&s, c->file);

    /* segment names, in order */
    char want[128];
    snprintf(want, sizeof want, "%s", c->segments);
    size_t i = 0;
    for (char *tok = strtok(want, " "); tok; tok = strtok(NULL, " "), i++) {
        char name[4] = "";
        struct hl7_span raw = {0};
        if (!hl7_segment_at(s.msg, i, name, &raw))
            fail_msg("%s: segment %zu missing, want %s", c->file, i, tok);
        assert_string_equal(name, tok);
        assert_true(raw.len >= 3);
        assert_memory_equal(raw.p, tok, 3);
    }
    assert_int_equal(hl7_segment_count(s.msg, NULL), i);
    assert_false(hl7_segment_at(s.msg, i, (char[4]){0}, &(struct hl7_span){0}));

    for (const struct value_row *r = c->rows; r->path; r++)
        assert_get(s.msg, r->path, r->pres, r->raw);
    sample_close(&s);
}

static void test_segment_counts(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    assert_int_equal(hl7_segment_count(s.msg, NULL), 8);
    assert_int_equal(hl7_segment_count(s.msg, "MSH"), 1);
    assert_int_equal(hl7_segment_count(s.msg, "PID"), 1);
    assert_int_equal(hl7_segment_count(s.msg, "OBX"), 0);
    sample_close(&s);

    sample_open(&s, "oru_r01.hl7");
    assert_int_equal(hl7_segment_count(s.msg, NULL), 9);
    assert_int_equal(hl7_segment_count(s.msg, "OBX"), 3);
    assert_int_equal(hl7_segment_count(s.msg, "NTE"), 1);
    sample_close(&s);
}

/* Decoded values of the escapes sample. */
static void test_escape_sample_decoded(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a08_escapes.hl7");
    assert_decoded(s.msg, "PID-11.1", "FLAT 2&3");
    assert_decoded(s.msg, "PID-5.1", "O'NEILL");
    assert_decoded(s.msg, "NTE-3", "Carer present | interpreter requested\n"
                   "Prefers ^morning^ appointments \\ see note~second part");
    assert_decoded(s.msg, "OBX-5", "Line one\r\nLine two with caf\xC3\xA9");
    sample_close(&s);

    /* escape characters with no closing one are kept literally */
    sample_open(&s, "stray_escape.hl7");
    assert_decoded(s.msg, "PID-5.1", "SMI\\TH");
    assert_decoded(s.msg, "PID-5.2", "JOHN\\X4");
    sample_close(&s);
}

static void test_delims(void **state)
{
    (void)state;
    const struct hl7_delims *d = &hl7_default_delims;
    assert_int_equal(d->field, '|');
    assert_int_equal(d->component, '^');
    assert_int_equal(d->repetition, '~');
    assert_int_equal(d->escape, '\\');
    assert_int_equal(d->subcomponent, '&');
    assert_int_equal(d->truncation, '\0');

    static const struct {
        const char *file;
        struct hl7_delims want;
    } cases[] = {
        { "adt_a01.hl7",           { '|', '^', '~', '\\', '&', '\0' } },
        { "custom_delimiters.hl7", { '*', '%', '$', '@',  '!', '\0' } },
        { "v27_truncation.hl7",    { '|', '^', '~', '\\', '&', '#' } },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        sample_open(&s, cases[i].file);
        const struct hl7_delims *got = hl7_msg_delims(s.msg);
        assert_non_null(got);
        assert_int_equal(got->field, cases[i].want.field);
        assert_int_equal(got->component, cases[i].want.component);
        assert_int_equal(got->repetition, cases[i].want.repetition);
        assert_int_equal(got->escape, cases[i].want.escape);
        assert_int_equal(got->subcomponent, cases[i].want.subcomponent);
        assert_int_equal(got->truncation, cases[i].want.truncation);
        sample_close(&s);
    }
}

static void test_segment_at_and_field_count(void **state)
{
    (void)state;
    struct sample s;
    sample_open(&s, "adt_a01.hl7");
    char name[4];
    struct hl7_span raw;
    assert_true(hl7_segment_at(s.msg, 0, name, &raw));
    assert_string_equal(name, "MSH");
    assert_true(raw.len > 9);
    assert_memory_equal(raw.p, "MSH|^~\\&|PAS|", 13);
    assert_int_equal(raw.p[raw.len - 1], '0');          /* "...ITKv1.0", no CR */
    assert_true(hl7_segment_at(s.msg, 7, name, &raw));
    assert_string_equal(name, "DG1");
    assert_span(raw, "DG1|1||I21.9^Acute myocardial infarction, unspecified^I10||20261121|A");
    assert_false(hl7_segment_at(s.msg, 8, name, &raw));
    assert_false(hl7_segment_at(s.msg, (size_t)-1, name, &raw));

    static const unsigned fields[] = { 21, 6, 32, 4, 5, 44, 5, 6 };
    for (size_t i = 0; i < ARRAY_LEN(fields); i++)
        assert_int_equal(hl7_field_count(s.msg, i), fields[i]);
    sample_close(&s);

    /* trailing empty fields count: the highest field number present */
    text_open(&s, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\rZZZ|a||\rYYY\r");
    assert_int_equal(hl7_field_count(s.msg, 0), 12);
    assert_int_equal(hl7_field_count(s.msg, 1), 3);
    assert_int_equal(hl7_field_count(s.msg, 2), 0);
    sample_close(&s);
}

/* LF, CRLF and CR endings, and blank lines, index the same message. */
struct node {
    enum hl7_node kind;
    struct hl7_path path;
    struct hl7_span raw;
    bool leaf;
};

struct node_list {
    struct node *v;
    size_t n, cap;
    size_t stop_after;        /* 0: never stop */
};

static int collect(void *ctx, enum hl7_node kind, const struct hl7_path *path,
                   const struct hl7_span *raw, bool leaf)
{
    struct node_list *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        assert_non_null(l->v);
    }
    l->v[l->n++] = (struct node){ kind, *path, *raw, leaf };
    if (l->stop_after && l->n == l->stop_after)
        return 42;
    return 0;
}

static void walk_all(const struct hl7_msg *msg, struct node_list *l)
{
    memset(l, 0, sizeof *l);
    assert_int_equal(hl7_walk(msg, collect, l), 0);
    assert_true(l->n > 0);
}

static bool path_equal(const struct hl7_path *a, const struct hl7_path *b)
{
    return strcmp(a->seg, b->seg) == 0 && a->seg_seq == b->seg_seq &&
           a->field == b->field && a->rep == b->rep && a->comp == b->comp &&
           a->sub == b->sub;
}

static void assert_same_walk(const struct hl7_msg *a, const struct hl7_msg *b)
{
    struct node_list la, lb;
    walk_all(a, &la);
    walk_all(b, &lb);
    assert_int_equal(la.n, lb.n);
    for (size_t i = 0; i < la.n; i++) {
        assert_int_equal(la.v[i].kind, lb.v[i].kind);
        assert_true(path_equal(&la.v[i].path, &lb.v[i].path));
        assert_int_equal(la.v[i].leaf, lb.v[i].leaf);
        check_bytes(la.v[i].raw.p, la.v[i].raw.len, lb.v[i].raw.p,
                    lb.v[i].raw.len, "walked element", __FILE__, __LINE__);
    }
    free(la.v);
    free(lb.v);
}

static char *replace_lf(const char *in, size_t len, const char *term, size_t *out_len)
{
    struct buf b = {0};
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n')
            assert_int_equal(buf_puts(&b, term), 0);
        else
            assert_int_equal(buf_putc(&b, in[i]), 0);
    }
    char *p = dup_exact(b.p, b.len);
    *out_len = b.len;
    buf_free(&b);
    return p;
}

static void test_line_endings_equivalent(void **state)
{
    (void)state;
    size_t lf_len;
    char *lf = load_sample("adt_a01_lf.hl7", &lf_len);
    static const char *terms[] = { "\r", "\r\n", "\n\n", "\r\n\r\n" };
    struct sample ref;
    bytes_open(&ref, lf, lf_len);
    for (size_t i = 0; i < ARRAY_LEN(terms); i++) {
        size_t n;
        char *variant = replace_lf(lf, lf_len, terms[i], &n);
        struct sample s;
        bytes_open(&s, variant, n);
        assert_int_equal(hl7_segment_count(s.msg, NULL), 4);
        assert_same_walk(ref.msg, s.msg);
        sample_close(&s);
        free(variant);
    }
    sample_close(&ref);
    free(lf);

    /* the two sample files hold different messages of the same shape */
    struct sample a, b;
    sample_open(&a, "adt_a01_lf.hl7");
    sample_open(&b, "adt_a01_crlf.hl7");
    assert_int_equal(hl7_segment_count(a.msg, NULL), hl7_segment_count(b.msg, NULL));
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(hl7_field_count(a.msg, i), hl7_field_count(b.msg, i));
    static const char *same[] = { "MSH-3", "MSH-4", "MSH-9", "MSH-12", "MSH-15",
                                  "MSH-16", "EVN-1", "PID-3[1].4", "PID-3[1].5",
                                  "PV1-2", "PV1-3" };
    for (size_t i = 0; i < ARRAY_LEN(same); i++) {
        struct hl7_span x, y;
        assert_int_equal(hl7_get_str(a.msg, same[i], &x), HL7_VALUE);
        assert_int_equal(hl7_get_str(b.msg, same[i], &y), HL7_VALUE);
        check_bytes(x.p, x.len, y.p, y.len, same[i], __FILE__, __LINE__);
    }
    /* no terminator byte leaks into any element */
    struct node_list l;
    walk_all(b.msg, &l);
    for (size_t i = 0; i < l.n; i++)
        for (size_t k = 0; k < l.v[i].raw.len; k++)
            assert_true(l.v[i].raw.p[k] != '\r' && l.v[i].raw.p[k] != '\n');
    free(l.v);
    sample_close(&a);
    sample_close(&b);
}

/* ------------------------------------------------------- refused input */

struct bad_case {
    const char *name;
    const char *bytes;        /* NULL: samples file name */
    int code;
    const char *segment;      /* NULL: not checked */
    unsigned field;
    long offset;              /* -1: not checked */
};

#define GOOD_MSH "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"

static const struct bad_case bad_cases[] = {
    { "bad/no_msh.hl7", NULL, HL7_E_NO_MSH, NULL, 0, 0 },
    { "bad/truncated_msh.hl7", NULL, HL7_E_ENCODING, "MSH", 2, -1 },
    { "bad/missing_type.hl7", NULL, HL7_E_MISSING_FIELD, "MSH", 9, 47 },
    { "empty", "", HL7_E_EMPTY, NULL, 0, -1 },
    { "blank lines only", "\r\n\r\n\n\r", HL7_E_EMPTY, NULL, 0, -1 },
    { "PID first", "PID|1\r" GOOD_MSH, HL7_E_NO_MSH, NULL, 0, 0 },
    { "MSH alone", "MSH", HL7_E_ENCODING, "MSH", 1, 3 },
    { "MSH| alone", "MSH|", HL7_E_ENCODING, "MSH", 2, 4 },
    { "escape = field sep", "MSH|^~|&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r",
      HL7_E_ENCODING, "MSH", 2, -1 },
    { "duplicate encoding chars", "MSH|^^\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r",
      HL7_E_ENCODING, "MSH", 2, -1 },
    { "CR as field sep", "MSH\r^~\\&\rA\r", HL7_E_ENCODING, "MSH", 1, 3 },
    { "MSH-2 only", "MSH|^~\\&\r", HL7_E_MISSING_FIELD, "MSH", 9, -1 },
    { "MSH-9.1 empty", "MSH|^~\\&|A|B|C|D|20260101||^A01|1|P|2.4\r",
      HL7_E_MISSING_FIELD, "MSH", 9, 27 },
    { "segment name of 2", GOOD_MSH "PI|1\r", HL7_E_SEGMENT_NAME, NULL, 0, 43 },
    { "segment name of 4", GOOD_MSH "PIDX|1\r", HL7_E_SEGMENT_NAME, NULL, 0, 43 },
    { "segment name punct", GOOD_MSH "PV1|1\rP-D|1\r", HL7_E_SEGMENT_NAME, NULL, 0, 49 },
};

static void test_bad_input(void **state)
{
    const struct bad_case *c = *state;
    char *buf;
    size_t len;
    if (c->bytes) {
        len = strlen(c->bytes);
        buf = dup_exact(c->bytes, len);
    } else {
        buf = load_sample(c->name, &len);
    }
    struct hl7_msg *msg = (struct hl7_msg *)&msg;   /* must be reset to NULL */
    struct hl7_error err;
    memset(&err, 0x5a, sizeof err);
    int rc = hl7_parse(buf, len, NULL, &msg, &err);
    if (rc != c->code)
        fail_msg("%s: rc %d (%s), want %d (%s)", c->name, rc, hl7_strerror(rc),
                 c->code, hl7_strerror(c->code));
    assert_null(msg);
    assert_int_equal(err.code, c->code);
    assert_true(memchr(err.segment, '\0', sizeof err.segment) != NULL);
    assert_true(memchr(err.text, '\0', sizeof err.text) != NULL);
    assert_true(strlen(err.text) > 0);
    if (c->segment) {
        assert_string_equal(err.segment, c->segment);
        assert_int_equal(err.seg_seq, 1);
        assert_int_equal(err.field, c->field);
    }
    if (c->offset >= 0)
        assert_int_equal(err.offset, (size_t)c->offset);
    /* err may be NULL */
    assert_int_equal(hl7_parse(buf, len, NULL, &msg, NULL), c->code);
    assert_null(msg);
    free(buf);
}

/* MSH-2 of truncated_msh ("^~") begins at byte 4; the error points there
 * or within it. */
static void test_truncated_msh_offset(void **state)
{
    (void)state;
    size_t len;
    char *buf = load_sample("bad/truncated_msh.hl7", &len);
    struct hl7_msg *msg = NULL;
    struct hl7_error err = {0};
    assert_int_equal(hl7_parse(buf, len, NULL, &msg, &err), HL7_E_ENCODING);
    assert_in_range(err.offset, 4, 6);
    free(buf);
}

/* The offset of missing_type's MSH-9 computed from the bytes, so the table
 * value above is not a magic number. */
static void test_missing_type_offset(void **state)
{
    (void)state;
    size_t len;
    char *buf = load_sample("bad/missing_type.hl7", &len);
    size_t bars = 0, off = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '|' && ++bars == 8) {
            off = i + 1;
            break;
        }
    assert_int_equal(off, 47);
    assert_int_equal(buf[off], '|');     /* MSH-9 is empty */
    free(buf);
}

static void test_binary_garbage(void **state)
{
    (void)state;
    size_t len;
    char *buf = load_sample("bad/binary_garbage.hl7", &len);
    assert_int_equal(len, 512);
    struct hl7_msg *msg = NULL;
    struct hl7_error err = {0};
    int rc = hl7_parse(buf, len, NULL, &msg, &err);
    assert_true(rc < 0);
    assert_true(rc == HL7_E_NO_MSH || rc == HL7_E_SEGMENT_NAME ||
                rc == HL7_E_EMPTY || rc == HL7_E_ENCODING);
    assert_int_equal(err.code, rc);
    assert_null(msg);
    assert_true(strlen(err.text) > 0);
    free(buf);
}

static void test_bad_samples_that_parse(void **state)
{
    (void)state;
    struct sample s;
    struct hl7_meta m;

    sample_open(&s, "bad/unknown_version.hl7");
    hl7_meta(s.msg, &m);
    assert_span(m.version, "9.9");
    assert_span(m.control_id, "RLH-BAD-3");
    sample_close(&s);

    sample_open(&s, "bad/bad_nhs_number.hl7");
    struct hl7_span nhs;
    assert_true(hl7_nhs_number(s.msg, &nhs));
    assert_span(nhs, "9990000019");
    assert_int_equal(hl7_nhs_check(nhs.p, nhs.len), HL7_NHS_CHECK_DIGIT);
    sample_close(&s);

    sample_open(&s, "adt_a01.hl7");
    assert_true(hl7_nhs_number(s.msg, &nhs));
    assert_span(nhs, "9990000018");
    assert_int_equal(hl7_nhs_check(nhs.p, nhs.len), HL7_NHS_VALID);
    sample_close(&s);
}

static void test_max_bytes(void **state)
{
    (void)state;
    size_t len;
    char *buf = load_sample("adt_a01.hl7", &len);
    struct hl7_msg *msg = NULL;
    struct hl7_error err = {0};
    struct hl7_parse_opts opts = { .max_bytes = len - 1 };
    assert_int_equal(hl7_parse(buf, len, &opts, &msg, &err), HL7_E_TOO_LARGE);
    assert_int_equal(err.code, HL7_E_TOO_LARGE);
    assert_null(msg);
    opts.max_bytes = len;
    assert_int_equal(hl7_parse(buf, len, &opts, &msg, &err), 0);
    assert_non_null(msg);
    hl7_free(msg);
    opts.max_bytes = 0;                          /* the default, 64 MiB */
    assert_int_equal(hl7_parse(buf, len, &opts, &msg, &err), 0);
    hl7_free(msg);
    hl7_free(NULL);
    free(buf);
}

/* A large message: 20000 OBX segments index and read quickly (the suite
 * would time out on quadratic work), and the default limit of 64 MiB
 * refuses one byte more. */
static void test_large_message(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_puts(&b, GOOD_MSH "PID|1||9990000018^^^NHS^NH\r");
    for (int i = 1; i <= 20000; i++)
        buf_printf(&b, "OBX|%d|NM|HB^Haemoglobin||%d|g/L|||||F\r", i, 100 + i % 50);
    struct sample s;
    bytes_open(&s, b.p, b.len);
    assert_int_equal(hl7_segment_count(s.msg, "OBX"), 20000);
    assert_value(s.msg, "OBX[20000]-1", "20000");
    assert_value(s.msg, "OBX[20000]-5", "100");
    assert_value(s.msg, "OBX[12345]-5", "145");
    struct hl7_path p = P("OBX[19999]-5");
    assert_int_equal(hl7_set(s.msg, &p, "1", 1, NULL), 0);
    assert_value(s.msg, "OBX[19999]-5", "1");
    assert_int_equal(hl7_segment_delete(s.msg, 2, NULL), 0);
    assert_value(s.msg, "OBX[1]-1", "2");
    sample_close(&s);
    buf_free(&b);

    size_t big = HL7_DEFAULT_MAX + 1;
    char *huge = calloc(1, big);
    assert_non_null(huge);
    memcpy(huge, GOOD_MSH, strlen(GOOD_MSH));
    struct hl7_msg *msg = NULL;
    struct hl7_error err = {0};
    assert_int_equal(hl7_parse(huge, big, NULL, &msg, &err), HL7_E_TOO_LARGE);
    assert_null(msg);
    free(huge);
}

/* Accepted variations: blank lines anywhere, no final terminator, a segment
 * that is only its name, mixed terminators. */
static void test_accepted_variations(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t segments;
    } cases[] = {
        { GOOD_MSH, 1 },
        { "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4", 1 },
        { "\r\n\n" GOOD_MSH "\r\rPID|1\n\r\nPV1\r\n", 3 },
        { GOOD_MSH "ZZ1|x\nZZ2|y\r\nZZ3", 4 },
        { GOOD_MSH "ZZZ\r", 2 },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct sample s;
        text_open(&s, cases[i].bytes);
        assert_int_equal(hl7_segment_count(s.msg, NULL), cases[i].segments);
        assert_value(s.msg, "MSH-9.1", "ADT");
        assert_value(s.msg, "MSH-12", "2.4");
        sample_close(&s);
    }
    struct sample s;
    text_open(&s, GOOD_MSH "ZZ1|x\nZZ2|y\r\nZZ3");
    assert_value(s.msg, "ZZ1-1", "x");
    assert_value(s.msg, "ZZ2-1", "y");
    assert_get(s.msg, "ZZ3", HL7_VALUE, "ZZ3");
    sample_close(&s);
}

/* Random damage to real messages: never a crash or an overread (run under
 * the sanitizers), and whatever parses serialises back unchanged. */
static void test_mutations_never_crash(void **state)
{
    (void)state;
    static const char *files[] = { "adt_a01.hl7", "custom_delimiters.hl7",
                                   "v27_truncation.hl7", "adt_a08_escapes.hl7" };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    static const char interesting[] = "|^~\\&\r\n#*%$@!MSH\"0 ";
    for (size_t f = 0; f < ARRAY_LEN(files); f++) {
        size_t len;
        char *orig = load_sample(files[f], &len);
        for (int round = 0; round < 300; round++) {
            size_t n = len - rng_next(&seed) % (len / 2 + 1);   /* truncate too */
            char *buf = dup_exact(orig, n);
            int flips = 1 + (int)(rng_next(&seed) % 4);
            for (int k = 0; k < flips && n; k++) {
                uint64_t r = rng_next(&seed);
                size_t at = (size_t)(r % n);
                buf[at] = (r >> 32) & 1 ? (char)(r >> 40)
                                        : interesting[(r >> 40) % (sizeof interesting - 1)];
            }
            struct hl7_msg *msg = NULL;
            struct hl7_error err = {0};
            int rc = hl7_parse(buf, n, NULL, &msg, &err);
            if (rc == 0) {
                assert_non_null(msg);
                assert_serialised_n(msg, 0, buf, n);
                struct hl7_meta m;
                hl7_meta(msg, &m);
                assert_true(m.code.len > 0);
                struct node_list l;
                memset(&l, 0, sizeof l);
                hl7_walk(msg, collect, &l);
                free(l.v);
                hl7_free(msg);
            } else {
                assert_true(rc < 0);
                assert_null(msg);
                assert_int_equal(err.code, rc);
            }
            free(buf);
        }
        free(orig);
    }
}

/* ------------------------------------------------------ error strings */

static const int all_codes[] = {
    HL7_OK, HL7_E_NOMEM, HL7_E_EMPTY, HL7_E_TOO_LARGE, HL7_E_NO_MSH,
    HL7_E_ENCODING, HL7_E_SEGMENT_NAME, HL7_E_MISSING_FIELD, HL7_E_BAD_PATH,
    HL7_E_READ_ONLY, HL7_E_BAD_VALUE, HL7_E_RANGE, HL7_E_BATCH_COUNT,
    HL7_E_BATCH_STRUCTURE,
};

static void test_strerror(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(all_codes); i++) {
        const char *s = hl7_strerror(all_codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (size_t k = 0; k < i; k++)
            if (strcmp(s, hl7_strerror(all_codes[k])) == 0)
                fail_msg("codes %d and %d share the text \"%s\"", all_codes[i],
                         all_codes[k], s);
    }
    assert_non_null(hl7_strerror(-1000));
    assert_non_null(hl7_strerror(5));
}

/* Table 0357: 0 accepted, 100 segment sequence error, 101 required field
 * missing, 102 data type error, 207 application internal error. Where the
 * header leaves a choice, either of the sensible codes is accepted. */
static void test_err_table0357(void **state)
{
    (void)state;
    static const struct {
        int code;
        int want, or_want;
    } cases[] = {
        { HL7_OK,                0,   0 },
        { HL7_E_MISSING_FIELD,   101, 101 },
        { HL7_E_NO_MSH,          100, 100 },
        { HL7_E_ENCODING,        102, 100 },
        { HL7_E_SEGMENT_NAME,    100, 102 },
        { HL7_E_EMPTY,           100, 102 },
        { HL7_E_BAD_VALUE,       102, 102 },
        { HL7_E_NOMEM,           207, 207 },
        { HL7_E_TOO_LARGE,       207, 102 },
        { HL7_E_BATCH_COUNT,     100, 207 },
        { HL7_E_BATCH_STRUCTURE, 100, 207 },
        { -1000,                 207, 207 },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int got = hl7_err_table0357(cases[i].code);
        if (got != cases[i].want && got != cases[i].or_want)
            fail_msg("hl7_err_table0357(%d) = %d, want %d", cases[i].code, got,
                     cases[i].want);
    }
    /* every code maps to a defined table 0357 value */
    for (size_t i = 1; i < ARRAY_LEN(all_codes); i++) {
        int got = hl7_err_table0357(all_codes[i]);
        assert_true((got >= 100 && got <= 103) || (got >= 200 && got <= 207));
    }
}

/* --------------------------------------------------------------- walk */

static void test_walk_order(void **state)
{
    (void)state;
    struct sample s;
    text_open(&s, GOOD_MSH "ZZZ|a~b^c&d|e\rYYY|f\r");
    struct node_list l;
    walk_all(s.msg, &l);

    /* segments in message order, each before its elements */
    static const char *segs[] = { "MSH", "ZZZ", "YYY" };
    size_t nseg = 0, seg_at[3] = {0};
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].kind == HL7_NODE_SEGMENT) {
            assert_true(nseg < 3);
            assert_string_equal(l.v[i].path.seg, segs[nseg]);
            assert_int_equal(l.v[i].path.seg_seq, 1);
            assert_int_equal(l.v[i].path.field, 0);
            assert_false(l.v[i].leaf);
            seg_at[nseg++] = i;
        }
    assert_int_equal(nseg, 3);
    assert_int_equal(seg_at[0], 0);
    assert_span(l.v[seg_at[1]].raw, "ZZZ|a~b^c&d|e");
    assert_span(l.v[seg_at[2]].raw, "YYY|f");

    /* every node after a segment belongs to it, fields in order, and a
     * child follows its parent (pre-order) */
    for (size_t i = 1; i < l.n; i++) {
        const struct node *prev = &l.v[i - 1], *cur = &l.v[i];
        if (cur->kind == HL7_NODE_SEGMENT)
            continue;
        assert_string_equal(cur->path.seg, prev->path.seg);
        assert_true(cur->path.field >= prev->path.field);
        if (cur->kind > prev->kind)                 /* went down: a child */
            assert_false(prev->leaf);
    }

    /* the leaves below MSH, in order, whatever depth they are reported at:
     * the header allows a walk that skips a level with a single child
     * (a field that does not repeat reported without a REP node) */
    static const char *leaves[] = { "a", "b", "c", "d", "e", "f" };
    size_t nleaf = 0;
    for (size_t i = seg_at[1]; i < l.n; i++)
        if (l.v[i].leaf) {
            assert_true(nleaf < ARRAY_LEN(leaves));
            assert_span(l.v[i].raw, leaves[nleaf]);
            nleaf++;
        }
    assert_int_equal(nleaf, ARRAY_LEN(leaves));

    /* specific elements: fields, repetitions, components, subcomponents */
    size_t fields = 0, reps = 0, comps = 0, subs = 0;
    for (size_t i = seg_at[1]; i < seg_at[2]; i++) {
        const struct node *n = &l.v[i];
        if (n->kind == HL7_NODE_FIELD) {
            assert_int_equal(n->path.field, fields + 1);
            assert_span(n->raw, fields == 0 ? "a~b^c&d" : "e");
            fields++;
        } else if (n->kind == HL7_NODE_REP && n->path.field == 1) {
            assert_int_equal(n->path.rep, reps + 1);
            assert_span(n->raw, reps == 0 ? "a" : "b^c&d");
            reps++;
        } else if (n->kind == HL7_NODE_COMP && n->path.field == 1 && n->path.rep == 2) {
            assert_int_equal(n->path.comp, comps + 1);
            assert_span(n->raw, comps == 0 ? "b" : "c&d");
            if (comps == 1)
                assert_false(n->leaf);          /* "c&d" has subcomponents */
            comps++;
        } else if (n->kind == HL7_NODE_SUB && n->path.comp == 2) {
            assert_int_equal(n->path.sub, subs + 1);
            assert_span(n->raw, subs == 0 ? "c" : "d");
            assert_true(n->leaf);
            subs++;
        }
    }
    assert_int_equal(fields, 2);
    assert_int_equal(reps, 2);
    assert_int_equal(comps, 2);
    assert_int_equal(subs, 2);
    free(l.v);

    /* stopping: the callback's value comes back and no more calls follow */
    memset(&l, 0, sizeof l);
    l.stop_after = 3;
    assert_int_equal(hl7_walk(s.msg, collect, &l), 42);
    assert_int_equal(l.n, 3);
    free(l.v);
    sample_close(&s);
}

/* leaf is true exactly when the element has no children: a non-leaf is
 * followed by a deeper node, a leaf never is. A segment that is only its
 * name has no children. */
static void test_walk_leaf_flags(void **state)
{
    (void)state;
    static const char *files[] = { "adt_a01.hl7", "oru_r01.hl7", "custom_delimiters.hl7",
                                   "v27_truncation.hl7" };
    struct sample s;
    for (size_t f = 0; f <= ARRAY_LEN(files); f++) {
        if (f < ARRAY_LEN(files))
            sample_open(&s, files[f]);
        else
            text_open(&s, GOOD_MSH "ZZZ\rYYY|\rXXX|a^b\rWWW\r");
        struct node_list l;
        walk_all(s.msg, &l);
        for (size_t i = 0; i < l.n; i++) {
            const struct node *n = &l.v[i];
            bool deeper_next = i + 1 < l.n && l.v[i + 1].kind > n->kind;
            if (n->leaf == deeper_next) {
                struct buf b = {0};
                hl7_path_format(&n->path, &b);
                print_error("%s: %s (\"%s\") has leaf=%d but %s\n",
                            f < ARRAY_LEN(files) ? files[f] : "ZZZ message", b.p,
                            show(n->raw.p, n->raw.len), n->leaf,
                            deeper_next ? "children follow" : "no child follows");
                buf_free(&b);
                free(l.v);
                sample_close(&s);
                fail();
            }
        }
        free(l.v);
        sample_close(&s);
    }
}

/* The header promises seg_seq and rep always filled in: a component of a
 * field that does not repeat still names repetition 1. */
/* rep is 0 inside a field without repetition separators (so paths print
 * as ZZZ-1.1), and the repetition number inside one that has them. */
static void test_walk_fills_in_rep(void **state)
{
    (void)state;
    struct sample s;
    text_open(&s, GOOD_MSH "ZZZ|a^b&c|x~y^z\r");
    struct node_list l;
    walk_all(s.msg, &l);
    size_t checked = 0;
    for (size_t i = 0; i < l.n; i++) {
        const struct node *n = &l.v[i];
        assert_true(n->path.seg_seq >= 1);
        if (n->kind >= HL7_NODE_REP && strcmp(n->path.seg, "ZZZ") == 0) {
            if (n->path.field == 1) {
                assert_int_equal(n->path.rep, 0);
                assert_true(n->kind != HL7_NODE_REP);
            } else {
                /* ZZZ-2[1] = x; ZZZ-2[2] = y^z with its components */
                bool second = n->raw.len && (n->raw.p[0] == 'y' || n->raw.p[0] == 'z');
                assert_int_equal(n->path.rep, second ? 2 : 1);
            }
            checked++;
        }
    }
    /* ZZZ-1.1, ZZZ-1.2, ZZZ-1.2.1, ZZZ-1.2.2, ZZZ-2[1], ZZZ-2[2], ZZZ-2[2].1, ZZZ-2[2].2 */
    assert_int_equal(checked, 8);
    free(l.v);
    sample_close(&s);
}

/* Every element the walk reports reads back, by its path, as the same
 * bytes (MSH-1 and MSH-2 aside: their structure is special). */
static void test_walk_paths_read_back(void **state)
{
    (void)state;
    static const char *files[] = { "adt_a01.hl7", "oru_r01.hl7",
                                   "custom_delimiters.hl7", "adt_a01_crlf.hl7",
                                   "mdm_t02_letter.hl7", "adt_a08_escapes.hl7" };
    for (size_t f = 0; f < ARRAY_LEN(files); f++) {
        struct sample s;
        sample_open(&s, files[f]);
        struct node_list l;
        walk_all(s.msg, &l);
        size_t segments = 0;
        for (size_t i = 0; i < l.n; i++) {
            struct node *n = &l.v[i];
            if (strcmp(n->path.seg, "MSH") == 0 && (n->path.field == 1 || n->path.field == 2))
                continue;
            struct hl7_path p = n->path;
            if (n->kind == HL7_NODE_SEGMENT) {
                segments++;
                p.field = p.rep = p.comp = p.sub = 0;
            }
            if (n->kind == HL7_NODE_FIELD)
                p.rep = p.comp = p.sub = 0;     /* the whole field */
            assert_true(p.seg_seq >= 1);
            struct hl7_span got = {0};
            enum hl7_presence pres = hl7_get(s.msg, &p, &got);
            if (n->raw.len == 0)
                assert_true(pres == HL7_EMPTY);
            else
                assert_true(pres == HL7_VALUE || pres == HL7_NULL);
            check_bytes(got.p, got.len, n->raw.p, n->raw.len, files[f], __FILE__, __LINE__);
        }
        assert_int_equal(segments, hl7_segment_count(s.msg, NULL));
        free(l.v);
        sample_close(&s);
    }
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_segment_counts),
        cmocka_unit_test(test_escape_sample_decoded),
        cmocka_unit_test(test_delims),
        cmocka_unit_test(test_segment_at_and_field_count),
        cmocka_unit_test(test_line_endings_equivalent),
        cmocka_unit_test(test_truncated_msh_offset),
        cmocka_unit_test(test_missing_type_offset),
        cmocka_unit_test(test_binary_garbage),
        cmocka_unit_test(test_bad_samples_that_parse),
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_accepted_variations),
        cmocka_unit_test(test_large_message),
        cmocka_unit_test(test_mutations_never_crash),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_err_table0357),
        cmocka_unit_test(test_walk_order),
        cmocka_unit_test(test_walk_leaf_flags),
        cmocka_unit_test(test_walk_fills_in_rep),
        cmocka_unit_test(test_walk_paths_read_back),
    };
    /* one named test per table row */
    static char names[ARRAY_LEN(sample_cases) + ARRAY_LEN(bad_cases)][80];
    struct CMUnitTest tests[ARRAY_LEN(sample_cases) + ARRAY_LEN(bad_cases) +
                            ARRAY_LEN(fixed)];
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_LEN(sample_cases); i++, n++) {
        snprintf(names[n], sizeof names[n], "sample_values %s", sample_cases[i].file);
        tests[n] = (struct CMUnitTest){ .name = names[n], .test_func = test_sample_values,
                                        .initial_state = (void *)&sample_cases[i] };
    }
    for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++, n++) {
        snprintf(names[n], sizeof names[n], "bad_input %s", bad_cases[i].name);
        tests[n] = (struct CMUnitTest){ .name = names[n], .test_func = test_bad_input,
                                        .initial_state = (void *)&bad_cases[i] };
    }
    for (size_t i = 0; i < ARRAY_LEN(fixed); i++)
        tests[n++] = fixed[i];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
