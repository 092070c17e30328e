/*
 * test_itk.c: the ITK envelope parser over the shared samples (every
 * metadata field of the good one, the mismatch of the bad one) and over
 * hostile inputs: entities, DOCTYPE, oversize, deep nesting, bad base64,
 * missing header fields, duplicate ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

/* Parse a data file; returns the rc, *env and err filled. */
static int parse_file(const char *name, struct itk_envelope **env,
                      struct itk_error *err)
{
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    size_t len;
    char *p = slurp(path, &len);
    int rc = itk_parse(p, len, NULL, env, err);
    free(p);
    return rc;
}

static void expect_fail(const char *name, int rc_want, const char *code,
                        const char *msg_part)
{
    struct itk_envelope *env = (void *)1;
    struct itk_error err;
    int rc = parse_file(name, &env, &err);
    if (rc != rc_want || !strstr(err.msg, msg_part))
        print_error("%s: rc %d (%s) '%s'\n", name, rc, err.itk_code, err.msg);
    assert_int_equal(rc, rc_want);
    assert_null(env);
    assert_int_equal(err.rc, rc_want);
    assert_string_equal(err.itk_code, code);
    assert_non_null(strstr(err.msg, msg_part));
}

static void test_good_sample(void **state)
{
    (void)state;
    struct itk_envelope *e;
    struct itk_error err;
    assert_int_equal(parse_file("discharge_summary_soap.xml", &e, &err), 0);
    assert_string_equal(err.itk_code, "");
    assert_string_equal(e->message_id,
                        "uuid:6B0C3F0E-5A4D-4C3B-9E0A-111111111111");
    assert_string_equal(e->action,
                        "urn:nhs-itk:services:201005:SendCDADocument-v2-0");
    assert_string_equal(e->service,
                        "urn:nhs-itk:services:201005:SendCDADocument-v2-0");
    assert_string_equal(e->tracking_id, "7D5B2A90-1C44-4F7B-8D3E-222222222222");
    assert_string_equal(e->interaction,
                        "urn:nhs-itk:interaction:primaryRecipienteDischarge"
                        "InpatientDischargeSummaryDocument-v1-0");
    assert_string_equal(e->sender, "urn:nhs-uk:addressing:ods:R1H");
    assert_string_equal(e->sender_ods, "R1H");
    assert_string_equal(e->audit_identity, "urn:nhs-uk:identity:ods:R1H");
    assert_int_equal(e->n_addresses, 1);
    assert_string_equal(e->addresses[0], "urn:nhs-uk:addressing:ods:F84003");
    assert_string_equal(e->address_ods[0], "F84003");
    assert_string_equal(e->profile, "urn:nhs-en:profile:"
                        "eDischargeInpatientDischargeSummaryDocument-v1-0");
    assert_true(e->infack_requested);
    assert_true(e->ack_requested);
    assert_int_equal(e->n_payloads, 1);
    struct itk_payload *p = &e->payloads[0];
    assert_string_equal(p->id, "uuid_3F1A9C2E-0B7D-4E61-A5C8-333333333333");
    assert_string_equal(p->mimetype, "text/xml");
    assert_string_equal(p->profile_id, e->profile);
    assert_false(p->base64);
    assert_string_equal(p->nhs_number, "9990000018");
    /* The CDA on its own, its default namespace declared on it. */
    assert_true(p->len > 100);
    assert_int_equal(strlen((char *)p->data), p->len);
    assert_true(strncmp((char *)p->data,
                        "<ClinicalDocument xmlns=\"urn:hl7-org:v3\">", 41) == 0);
    assert_non_null(strstr((char *)p->data, "extension=\"9990000018\""));
    assert_true(strcmp((char *)p->data + p->len - 19, "</ClinicalDocument>") == 0);
    itk_free(e);
}

static void test_bad_sample(void **state)
{
    (void)state;
    expect_fail("bad_manifest_mismatch.xml", ITK_E_PAYLOAD, "2003",
                "manifestitem uuid_A has no payload");
}

static void test_pdf_base64(void **state)
{
    (void)state;
    struct itk_envelope *e;
    struct itk_error err;
    assert_int_equal(parse_file("pdf_base64.xml", &e, &err), 0);
    assert_int_equal(e->n_payloads, 1);
    assert_true(e->payloads[0].base64);
    assert_string_equal(e->payloads[0].mimetype, "application/pdf");
    assert_int_equal(e->payloads[0].len, 15);
    assert_memory_equal(e->payloads[0].data, "%PDF-1.4\n%%EOF\n", 15);
    assert_null(e->payloads[0].nhs_number);
    assert_null(e->interaction);
    assert_false(e->infack_requested);
    assert_false(e->ack_requested);
    assert_int_equal(e->n_addresses, 0);
    assert_string_equal(e->message_id, "uuid:M-1");
    assert_null(e->action);
    itk_free(e);
}

static void test_hostile_entities(void **state)
{
    (void)state;
    expect_fail("billion_laughs.xml", ITK_E_DOCTYPE, "1002", "DOCTYPE");
    expect_fail("xxe.xml", ITK_E_DOCTYPE, "1002", "DOCTYPE");
    expect_fail("doctype.xml", ITK_E_DOCTYPE, "1002", "DOCTYPE");
}

static void test_bad_content(void **state)
{
    (void)state;
    expect_fail("bad_base64.xml", ITK_E_BASE64, "2004",
                "payload uuid_P: byte 8 of the base64 text is not a base64 character");
    expect_fail("bad_base64_padding.xml", ITK_E_BASE64, "2004",
                "not a base64 character");
    expect_fail("missing_service.xml", ITK_E_HEADER, "2001", "no service");
    expect_fail("missing_trackingid.xml", ITK_E_HEADER, "2001",
                "no trackingid");
    expect_fail("missing_sender.xml", ITK_E_IDENTITY, "2005",
                "no senderAddress");
    expect_fail("missing_audit.xml", ITK_E_IDENTITY, "2005",
                "no auditIdentity");
    expect_fail("duplicate_payload_ids.xml", ITK_E_PAYLOAD, "2003",
                "payload id uuid_P appears twice");
    expect_fail("payload_count_mismatch.xml", ITK_E_PAYLOAD, "2003",
                "payloads count 2 but 1 payload");
}

/* Variants of the good sample made in memory. */
static int parse_replaced(const char *from, const char *to,
                          struct itk_error *err)
{
    size_t len;
    char *p = slurp(DATA "discharge_summary_soap.xml", &len);
    char *at = strstr(p, from);
    assert_non_null(at);
    size_t fl = strlen(from), tl = strlen(to);
    char *q = malloc(len - fl + tl + 1);
    assert_non_null(q);
    size_t head = (size_t)(at - p);
    memcpy(q, p, head);
    memcpy(q + head, to, tl);
    memcpy(q + head + tl, at + fl, len - head - fl + 1);
    struct itk_envelope *e = NULL;
    int rc = itk_parse(q, len - fl + tl, NULL, &e, err);
    itk_free(e);
    free(q);
    free(p);
    return rc;
}

static void test_manifest_checks(void **state)
{
    (void)state;
    struct itk_error err;
    assert_int_equal(parse_replaced("manifest count=\"1\"",
                                    "manifest count=\"2\"", &err),
                     ITK_E_MANIFEST);
    assert_string_equal(err.msg, "manifest count 2 but 1 manifestitem");
    assert_int_equal(parse_replaced("manifest count=\"1\"",
                                    "manifest count=\"-1\"", &err),
                     ITK_E_MANIFEST);
    assert_string_equal(err.msg, "manifest count '-1' is not a number");
    assert_int_equal(parse_replaced("payloads count=\"1\"", "payloads", &err),
                     ITK_E_PAYLOAD);
    assert_string_equal(err.msg, "payloads has no count");
    assert_int_equal(parse_replaced("<itk:payload id=\"uuid_3F1A",
                                    "<itk:payload id=\"uuid_XF1A", &err),
                     ITK_E_PAYLOAD);
    assert_string_equal(err.msg, "manifestitem uuid_3F1A9C2E-0B7D-4E61-A5C8-"
                        "333333333333 has no payload");
    assert_int_equal(parse_replaced("<soap:Body>", "<soap:Body><x/>", &err), 0);
    assert_int_equal(parse_replaced("itk:DistributionEnvelope>",
                                    "itk:Other>", &err), ITK_E_XML);
    assert_int_equal(parse_replaced("xmlns:itk=\"urn:nhs-itk:ns:201005\"",
                                    "xmlns:itk=\"urn:other\"", &err),
                     ITK_E_STRUCTURE);
    assert_string_equal(err.itk_code, "1004");
    /* Truncated XML names the libxml2 error. */
    assert_int_equal(parse_replaced("</soap:Envelope>", "</soap:Envel", &err),
                     ITK_E_XML);
    assert_non_null(strstr(err.msg, "not well-formed XML at line"));
}

static void test_too_large(void **state)
{
    (void)state;
    size_t len = 50u * 1024 * 1024;
    char *p = malloc(len);
    assert_non_null(p);
    memset(p, ' ', len);
    const char *open = "<?xml version=\"1.0\"?><a>";
    memcpy(p, open, strlen(open));
    memcpy(p + len - 4, "</a>", 4);
    struct itk_envelope *e = (void *)1;
    struct itk_error err;
    assert_int_equal(itk_parse(p, len, NULL, &e, &err), ITK_E_TOO_LARGE);
    assert_null(e);
    assert_string_equal(err.itk_code, "1001");
    assert_string_equal(err.msg, "request of 52428800 bytes is over the limit "
                        "of 10485760 bytes");
    /* A configured limit applies too. */
    struct itk_limits lim = { .max_bytes = 100 };
    assert_int_equal(itk_parse(p, 101, &lim, &e, &err), ITK_E_TOO_LARGE);
    free(p);
    assert_int_equal(itk_parse("", 0, NULL, &e, &err), ITK_E_XML);
}

static char *nested(size_t levels, size_t *len)
{
    *len = levels * 7 + 1;
    char *p = malloc(*len + 1);
    assert_non_null(p);
    char *w = p;
    for (size_t i = 0; i < levels; i++)
        w += sprintf(w, "<a>");
    *w++ = 'x';
    for (size_t i = 0; i < levels; i++)
        w += sprintf(w, "</a>");
    *len = (size_t)(w - p);
    return p;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    struct itk_envelope *e = (void *)1;
    struct itk_error err;
    size_t len;
    char *p = nested(100000, &len);
    assert_int_equal(itk_parse(p, len, NULL, &e, &err), ITK_E_DEPTH);
    assert_null(e);
    assert_string_equal(err.itk_code, "1003");
    assert_string_equal(err.msg, "XML elements nested more than 128 deep");
    free(p);
    /* At the limit it parses (and is then not an envelope). */
    p = nested(128, &len);
    assert_int_equal(itk_parse(p, len, NULL, &e, &err), ITK_E_STRUCTURE);
    free(p);
    p = nested(129, &len);
    assert_int_equal(itk_parse(p, len, NULL, &e, &err), ITK_E_DEPTH);
    free(p);
    /* A configured depth over libxml2's own is capped below it. */
    struct itk_limits lim = { .max_depth = 100000 };
    p = nested(300, &len);
    assert_int_equal(itk_parse(p, len, &lim, &e, &err), ITK_E_DEPTH);
    assert_string_equal(err.msg, "XML elements nested more than 255 deep");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_sample),
        cmocka_unit_test(test_bad_sample),
        cmocka_unit_test(test_pdf_base64),
        cmocka_unit_test(test_hostile_entities),
        cmocka_unit_test(test_bad_content),
        cmocka_unit_test(test_manifest_checks),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_deep_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
