/*
 * test_itk_mdm.c: discharge letters between ITK and HL7 v2: the ITK
 * sample as an MDM^T02 field by field, the MDM sample as an envelope
 * itk_parse takes, document bytes exact through both round trips,
 * hostile names kept inside their fields, and bad inputs refused with a
 * reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "buf.h"
#include "hl7.h"
#include "itk.h"

#define DATA "test/data/itk/"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static struct itk_envelope *parse_env(const char *p, size_t len)
{
    struct itk_envelope *e = NULL;
    struct itk_error err;
    int rc = itk_parse(p, len, NULL, &e, &err);
    if (rc)
        print_error("itk_parse: %s\n%.*s\n", err.msg, (int)len, p);
    assert_int_equal(rc, 0);
    return e;
}

static struct itk_envelope *sample_env(void)
{
    size_t len;
    char *p = slurp(DATA "discharge_summary_soap.xml", &len);
    struct itk_envelope *e = parse_env(p, len);
    free(p);
    return e;
}

static struct hl7_msg *parse_hl7(const char *p, size_t len)
{
    struct hl7_msg *m = NULL;
    struct hl7_error err;
    int rc = hl7_parse(p, len, NULL, &m, &err);
    if (rc)
        print_error("hl7_parse: %s\n", err.text);
    assert_int_equal(rc, 0);
    return m;
}

/* The decoded value at path, as a new string. */
static char *get(const struct hl7_msg *m, const char *path)
{
    struct hl7_path hp;
    assert_int_equal(hl7_path_parse(path, strlen(path), &hp, NULL), 0);
    struct buf b = {0};
    hl7_get_decoded(m, &hp, &b);
    char *s = buf_take(&b, NULL);
    assert_non_null(s);
    return s;
}

static void expect(const struct hl7_msg *m, const char *path, const char *want)
{
    char *got = get(m, path);
    if (strcmp(got, want) != 0)
        print_error("%s: '%s', want '%s'\n", path, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* Base64 decode of OBX-5.5 (the test's own decoder: OpenSSL's). */
static unsigned char *obx_data(const struct hl7_msg *m, size_t *len)
{
    char *t = get(m, "OBX-5.5");
    size_t n = strlen(t);
    assert_true(n % 4 == 0 && n > 0);
    unsigned char *d = malloc(n / 4 * 3 + 1);
    assert_non_null(d);
    int k = EVP_DecodeBlock(d, (unsigned char *)t, (int)n);
    assert_true(k >= 0);
    size_t pad = t[n - 1] == '=' ? (t[n - 2] == '=' ? 2 : 1) : 0;
    *len = (size_t)k - pad;
    free(t);
    return d;
}

static void test_itk_to_mdm_sample(void **state)
{
    (void)state;
    struct itk_envelope *e = sample_env();
    struct buf out = {0};
    char why[256] = "";
    assert_int_equal(itk_to_mdm(e, NULL, &out, why, sizeof why), 0);
    struct hl7_msg *m = parse_hl7(out.p, out.len);
    assert_int_equal(hl7_segment_count(m, NULL), 6);
    expect(m, "MSH-3", "HL7BROKER");
    expect(m, "MSH-4", "R1H");
    expect(m, "MSH-5", "");
    expect(m, "MSH-6", "F84003");
    expect(m, "MSH-7", "20261125170000+0000");
    expect(m, "MSH-9", "MDM^T02^MDM_T02");
    expect(m, "MSH-10", "7D5B2A90-1C44-4F7B-8D3E-222222222222");
    expect(m, "MSH-11", "P");
    expect(m, "MSH-12", "2.4");
    expect(m, "EVN-1", "T02");
    expect(m, "EVN-2", "20261125170000+0000");
    expect(m, "PID-3", "9990000018^^^NHS^NH");
    expect(m, "PID-5.1", "Smith");
    expect(m, "PID-5.2", "John");
    expect(m, "PID-7", "19700101");
    expect(m, "PID-8", "");
    expect(m, "PV1-2", "U");
    expect(m, "TXA-2", "373942005^Discharge summary");
    expect(m, "TXA-3", "AP");
    expect(m, "TXA-4", "20261125170000+0000");
    expect(m, "TXA-12", "8A2C6E14-7B1F-4C0D-9F3A-444444444444");
    expect(m, "TXA-17", "AU");
    expect(m, "OBX-2", "ED");
    expect(m, "OBX-3", "373942005^Discharge summary^SCT");
    expect(m, "OBX-5.1", "");
    expect(m, "OBX-5.2", "text");
    expect(m, "OBX-5.3", "xml");
    expect(m, "OBX-5.4", "Base64");
    expect(m, "OBX-11", "F");
    size_t n;
    unsigned char *d = obx_data(m, &n);
    assert_int_equal(n, e->payloads[0].len);
    assert_memory_equal(d, e->payloads[0].data, n);
    free(d);
    hl7_free(m);

    struct itk_mdm_opts o = { .sending_app = "BROKER|X", .receiving_app = "GPSYS" };
    buf_reset(&out);
    assert_int_equal(itk_to_mdm(e, &o, &out, why, sizeof why), 0);
    m = parse_hl7(out.p, out.len);
    expect(m, "MSH-3", "BROKER|X");
    expect(m, "MSH-5", "GPSYS");
    hl7_free(m);
    buf_free(&out);
    itk_free(e);
}

/* A CDA with hostile names and ids, gender, prefix and a document id
 * with an extension. */
static void test_itk_to_mdm_hostile(void **state)
{
    (void)state;
    const char *cda =
        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"
        "<id root=\"2.16.840.1.113883.2.1.3.2.4.18.24\" extension=\"D|1^2\"/>"
        "<code code=\"C~1\" codeSystem=\"1.2.3\" displayName=\"Letter &amp; \\ more\"/>"
        "<effectiveTime value=\"20260101\"/>"
        "<recordTarget><patientRole>"
        "<id root=\"1.2.3.4\" extension=\"LOCAL1\"/>"
        "<id root=\"2.16.840.1.113883.2.1.4.1\" extension=\"9990000018|X\"/>"
        "<patient><name><prefix>Dr</prefix><given>Ann^e</given><given>M&amp;ry</given>"
        "<family>O|Brien\r\nEVN|evil</family></name>"
        "<administrativeGenderCode code=\"2\"/><birthTime value=\"19800202\"/>"
        "</patient></patientRole></recordTarget></ClinicalDocument>";
    const char *addrs[] = { "urn:nhs-uk:addressing:ods:F8|4003" };
    struct itk_out_payload pl = { .mimetype = "text/xml", .data = (const unsigned char *)cda,
                                  .len = strlen(cda) };
    struct itk_out_envelope oe = {
        .service = ITK_SERVICE_CDA, .tracking_id = "T|1^2",
        .addresses = addrs, .n_addresses = 1,
        .audit_identity = "urn:nhs-uk:identity:ods:R1H",
        .sender = "urn:nhs-uk:addressing:ods:R~1H",
        .payloads = &pl, .n_payloads = 1,
    };
    struct buf b = {0}, out = {0};
    assert_int_equal(itk_build_envelope(&b, &oe), 0);
    struct itk_envelope *e = parse_env(b.p, b.len);
    char why[256];
    assert_int_equal(itk_to_mdm(e, NULL, &out, why, sizeof why), 0);
    struct hl7_msg *m = parse_hl7(out.p, out.len);
    assert_int_equal(hl7_segment_count(m, NULL), 6);
    assert_int_equal(hl7_segment_count(m, "EVN"), 1);
    expect(m, "MSH-4", "R~1H");
    expect(m, "MSH-6", "F8|4003");
    expect(m, "MSH-10", "T|1^2");
    expect(m, "PID-3.1", "9990000018|X");
    expect(m, "PID-3.4", "NHS");
    expect(m, "PID-5.1", "O|Brien\nEVN|evil");   /* XML reads CR LF as LF */
    expect(m, "PID-5.2", "Ann^e");
    expect(m, "PID-5.3", "M&ry");
    expect(m, "PID-5.5", "Dr");
    expect(m, "PID-7", "19800202");
    expect(m, "PID-8", "F");
    expect(m, "TXA-2.1", "C~1");
    expect(m, "TXA-2.2", "Letter & \\ more");
    expect(m, "TXA-12.1", "D|1^2");
    expect(m, "TXA-12.3", "2.16.840.1.113883.2.1.3.2.4.18.24");
    expect(m, "TXA-12.4", "ISO");
    expect(m, "OBX-3.3", "1.2.3");
    size_t n;
    unsigned char *d = obx_data(m, &n);
    assert_int_equal(n, e->payloads[0].len);
    assert_memory_equal(d, e->payloads[0].data, n);
    free(d);
    hl7_free(m);
    itk_free(e);
    buf_free(&b);
    buf_free(&out);
}

static void test_mdm_to_itk_sample(void **state)
{
    (void)state;
    size_t len;
    char *p = slurp(DATA "mdm_t02_letter.hl7", &len);
    struct hl7_msg *m = parse_hl7(p, len);
    struct mdm_itk_opts o = { .sender_ods = "BRK01",
                              .profile_id = "urn:nhs-en:profile:nonCodedCDADocument-v2-0",
                              .interaction = "urn:i", .infack_requested = true };
    struct buf out = {0}, out2 = {0};
    char why[256] = "";
    assert_int_equal(mdm_to_itk(m, &o, &out, why, sizeof why), 0);
    assert_true(strncmp(out.p, "<?xml", 5) == 0);
    struct itk_envelope *e = parse_env(out.p, out.len);
    assert_string_equal(e->service, ITK_SERVICE_CDA);
    assert_int_equal(e->n_addresses, 1);
    assert_string_equal(e->addresses[0], "urn:nhs-uk:addressing:ods:F84003");
    assert_string_equal(e->sender, "urn:nhs-uk:addressing:ods:BRK01");
    assert_string_equal(e->audit_identity, "urn:nhs-uk:identity:ods:BRK01");
    assert_string_equal(e->interaction, "urn:i");
    assert_true(e->infack_requested);
    assert_false(e->ack_requested);
    assert_string_equal(e->profile, o.profile_id);
    assert_int_equal(e->n_payloads, 1);
    assert_true(e->payloads[0].base64);
    assert_string_equal(e->payloads[0].mimetype, "application/pdf");
    size_t n;
    unsigned char *d = obx_data(m, &n);
    assert_int_equal(e->payloads[0].len, n);
    assert_memory_equal(e->payloads[0].data, d, n);
    assert_true(memcmp(d, "%PDF-1.4", 8) == 0);
    free(d);
    /* A resend: the same tracking id and payload id. */
    assert_int_equal(mdm_to_itk(m, &o, &out2, why, sizeof why), 0);
    assert_int_equal(out.len, out2.len);
    assert_memory_equal(out.p, out2.p, out.len);
    char t[37];
    itk_uuid_from("EPR\nBARTS\nBARTS-DOC-3301", 24, t);
    assert_string_equal(e->tracking_id, t);
    itk_free(e);

    /* A configured address, ODS code or URI. */
    o.address = "Y12345";
    buf_reset(&out);
    assert_int_equal(mdm_to_itk(m, &o, &out, why, sizeof why), 0);
    e = parse_env(out.p, out.len);
    assert_string_equal(e->address_ods[0], "Y12345");
    itk_free(e);
    o.address = "urn:nhs-uk:addressing:ods:Z9";
    buf_reset(&out);
    assert_int_equal(mdm_to_itk(m, &o, &out, why, sizeof why), 0);
    e = parse_env(out.p, out.len);
    assert_string_equal(e->addresses[0], "urn:nhs-uk:addressing:ods:Z9");
    itk_free(e);

    hl7_free(m);
    buf_free(&out);
    buf_free(&out2);
    free(p);
}

/* ITK -> MDM -> ITK: the document bytes come back exactly. */
static void test_round_trip_itk(void **state)
{
    (void)state;
    struct itk_envelope *e = sample_env();
    struct buf mdm = {0}, itk = {0};
    char why[256];
    assert_int_equal(itk_to_mdm(e, NULL, &mdm, why, sizeof why), 0);
    struct hl7_msg *m = parse_hl7(mdm.p, mdm.len);
    struct mdm_itk_opts o = { .sender_ods = "BRK01" };
    assert_int_equal(mdm_to_itk(m, &o, &itk, why, sizeof why), 0);
    struct itk_envelope *e2 = parse_env(itk.p, itk.len);
    assert_string_equal(e2->payloads[0].mimetype, "text/xml");
    assert_string_equal(e2->addresses[0], e->addresses[0]);
    assert_int_equal(e2->payloads[0].len, e->payloads[0].len);
    assert_memory_equal(e2->payloads[0].data, e->payloads[0].data, e->payloads[0].len);
    itk_free(e2);
    itk_free(e);
    hl7_free(m);
    buf_free(&mdm);
    buf_free(&itk);
}

/* MDM -> ITK -> MDM: the same document bytes (and base64 text). */
static void test_round_trip_mdm(void **state)
{
    (void)state;
    size_t len;
    char *p = slurp(DATA "mdm_t02_letter.hl7", &len);
    struct hl7_msg *m = parse_hl7(p, len);
    struct mdm_itk_opts o = { .sender_ods = "R1H" };
    struct buf itk = {0}, mdm = {0};
    char why[256];
    assert_int_equal(mdm_to_itk(m, &o, &itk, why, sizeof why), 0);
    struct itk_envelope *e = parse_env(itk.p, itk.len);
    assert_int_equal(itk_to_mdm(e, NULL, &mdm, why, sizeof why), 0);
    struct hl7_msg *m2 = parse_hl7(mdm.p, mdm.len);
    char *a = get(m, "OBX-5.5"), *b = get(m2, "OBX-5.5");
    assert_string_equal(a, b);
    free(a);
    free(b);
    expect(m2, "OBX-5.2", "application");
    expect(m2, "OBX-5.3", "pdf");
    expect(m2, "MSH-6", "F84003");
    expect(m2, "MSH-4", "R1H");
    size_t n1, n2;
    unsigned char *d1 = obx_data(m, &n1), *d2 = obx_data(m2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(d1, d2, n1);
    free(d1);
    free(d2);
    hl7_free(m2);
    itk_free(e);
    hl7_free(m);
    buf_free(&itk);
    buf_free(&mdm);
    free(p);
}

static void expect_refused(const char *msg, const struct mdm_itk_opts *o,
                           const char *why_part)
{
    struct hl7_msg *m = parse_hl7(msg, strlen(msg));
    struct buf out = {0};
    char why[256] = "";
    int rc = mdm_to_itk(m, o, &out, why, sizeof why);
    if (rc != -1 || !strstr(why, why_part))
        print_error("rc %d why '%s', want '%s'\n", rc, why, why_part);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(why, why_part));
    assert_int_equal(out.len, 0);
    buf_free(&out);
    hl7_free(m);
}

#define MSH "MSH|^~\\&|EPR|BARTS|GPSYS|F84003|20261125170000||MDM^T02^MDM_T02|C1|P|2.4\r"

static void test_mdm_bad(void **state)
{
    (void)state;
    struct mdm_itk_opts o = { .sender_ods = "BRK01" };
    expect_refused("MSH|^~\\&|EPR|BARTS|GPSYS|F84003|20261125170000||ADT^A01|C1|P|2.4\r"
                   "PID|1||9990000018^^^NHS^NH\r", &o, "not an MDM^T02 or MDM^T04 message "
                   "(MSH-9 is ADT^A01)");
    expect_refused("MSH|^~\\&|EPR|BARTS|GPSYS|F84003|20261125170000||MDM^T01|C1|P|2.4\r",
                   &o, "(MSH-9 is MDM^T01)");
    expect_refused(MSH "TXA|1\r", &o, "no OBX segment");
    expect_refused(MSH "OBX|1|TX|X||hello\rOBX|2|ST|X||x\r", &o,
                   "no OBX of value type ED (OBX-2) among the 2 OBX segments");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Base64^JVBERi0x!\r", &o,
                   "OBX[1]-5.5: Base64 length 9 is not a multiple of 4");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Base64^JVBE*i0x\r", &o,
                   "OBX[1]-5.5: byte 5 of the Base64 data (0x2A) is not a Base64 character");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Base64^JV=Ei0xA\r", &o,
                   "byte 3 of the Base64 data (0x3D)");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Base64^JVB=\r", &o,
                   "bits set after the data");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Base64^\r", &o,
                   "the Base64 data is empty");
    expect_refused(MSH "OBX|1|ED|X||^application^pdf^Hex^414243\r", &o,
                   "OBX[1]-5.4: encoding 'Hex' is not Base64 or A");
    expect_refused("MSH|^~\\&|EPR|BARTS|GPSYS||20261125170000||MDM^T02|C1|P|2.4\r"
                   "OBX|1|ED|X||^text^plain^A^hi\r", &o, "no address: MSH-6");
    struct mdm_itk_opts none = {0};
    expect_refused(MSH "OBX|1|ED|X||^text^plain^A^hi\r", &none, "no sender ODS code");
    expect_refused(MSH "OBX|1|ED|X||^text^plain^A^hi\r", NULL, "no sender ODS code");
}

/* The second OBX carries the ED; text data (encoding A) with escapes;
 * table 0191 type names become mime types. */
static void test_mdm_text(void **state)
{
    (void)state;
    const char *msg = MSH "OBX|1|TX|X||note\r"
                          "OBX|2|ED|X||^TEXT^Plain^A^a\\F\\b\\S\\c\\E\\d\r";
    struct hl7_msg *m = parse_hl7(msg, strlen(msg));
    struct mdm_itk_opts o = { .sender_ods = "BRK01" };
    struct buf out = {0};
    char why[256];
    assert_int_equal(mdm_to_itk(m, &o, &out, why, sizeof why), 0);
    struct itk_envelope *e = parse_env(out.p, out.len);
    assert_string_equal(e->payloads[0].mimetype, "text/plain");
    assert_string_equal((char *)e->payloads[0].data, "a|b^c\\d");
    itk_free(e);
    hl7_free(m);
    buf_free(&out);
}

static void test_itk_to_mdm_bad(void **state)
{
    (void)state;
    struct itk_envelope e = {0};
    struct buf out = {0};
    char why[256] = "";
    assert_int_equal(itk_to_mdm(&e, NULL, &out, why, sizeof why), -1);
    assert_non_null(strstr(why, "no payload"));
    assert_int_equal(out.len, 0);
    /* A payload that is not a CDA: MDM without patient details, the
     * bytes still carried. */
    struct itk_payload p = { .id = "x", .mimetype = "application/pdf",
                             .base64 = true, .data = (unsigned char *)"%PDF\0\1", .len = 6 };
    e.payloads = &p;
    e.n_payloads = 1;
    e.tracking_id = "T";
    assert_int_equal(itk_to_mdm(&e, NULL, &out, why, sizeof why), 0);
    struct hl7_msg *m = parse_hl7(out.p, out.len);
    expect(m, "PID-3", "");
    expect(m, "OBX-5.2", "application");
    expect(m, "OBX-5.3", "pdf");
    size_t n;
    unsigned char *d = obx_data(m, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(d, "%PDF\0\1", 6);
    free(d);
    hl7_free(m);
    /* Not well-formed XML claimed as text/xml: no details, no failure. */
    p.mimetype = "text/xml";
    p.data = (unsigned char *)"<ClinicalDocument";
    p.len = 17;
    buf_reset(&out);
    assert_int_equal(itk_to_mdm(&e, NULL, &out, why, sizeof why), 0);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_itk_to_mdm_sample),
        cmocka_unit_test(test_itk_to_mdm_hostile),
        cmocka_unit_test(test_itk_to_mdm_bad),
        cmocka_unit_test(test_mdm_to_itk_sample),
        cmocka_unit_test(test_round_trip_itk),
        cmocka_unit_test(test_round_trip_mdm),
        cmocka_unit_test(test_mdm_bad),
        cmocka_unit_test(test_mdm_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
