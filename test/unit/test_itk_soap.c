/*
 * test_itk_soap.c: the ITK builders (answers, faults, envelopes, SOAP
 * requests, infrastructure acks) read back by itk_parse and
 * itk_response_parse, hostile values escaped, and the response reader
 * over good answers, faults and hostile XML.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "itk.h"

#define DATA "test/data/itk/"
#define HOSTILE "<a b=\"c\" d='e'>&amp; ]]> </x>"

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

static struct itk_envelope *parse_ok(const char *p, size_t len)
{
    struct itk_envelope *e = NULL;
    struct itk_error err;
    int rc = itk_parse(p, len, NULL, &e, &err);
    if (rc)
        print_error("itk_parse: %d %s %s\n---\n%.*s\n", rc, err.itk_code,
                    err.msg, (int)len, p);
    assert_int_equal(rc, 0);
    assert_non_null(e);
    return e;
}

static struct itk_envelope *sample(void)
{
    size_t len;
    char *p = slurp(DATA "discharge_summary_soap.xml", &len);
    struct itk_envelope *e = parse_ok(p, len);
    free(p);
    return e;
}

static void check_uuid(const char *u, char version)
{
    assert_int_equal(strlen(u), 36);
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(u[i], '-');
        else
            assert_non_null(strchr("0123456789ABCDEF", u[i]));
    }
    assert_int_equal(u[14], version);
    assert_non_null(strchr("89AB", u[19]));
}

static void test_uuid(void **state)
{
    (void)state;
    char a[37], b[37], c[37], d[37];
    itk_uuid(a);
    itk_uuid(b);
    check_uuid(a, '4');
    check_uuid(b, '4');
    assert_string_not_equal(a, b);
    itk_uuid_from("EPR\nBARTS\nDOC-1", 15, c);
    itk_uuid_from("EPR\nBARTS\nDOC-1", 15, d);
    check_uuid(c, '5');
    assert_string_equal(c, d);
    itk_uuid_from("EPR\nBARTS\nDOC-2", 15, d);
    assert_string_not_equal(c, d);
}

/* The distribution envelope the parser kept is a document of its own
 * that parses back to the same envelope. */
static void test_distribution_xml(void **state)
{
    (void)state;
    struct itk_envelope *e = sample();
    assert_non_null(e->distribution_xml);
    assert_int_equal(strlen(e->distribution_xml), e->distribution_len);
    assert_true(strncmp(e->distribution_xml, "<itk:DistributionEnvelope", 25) == 0);
    assert_non_null(strstr(e->distribution_xml, "xmlns:itk=\"" ITK_NS "\""));
    struct itk_envelope *b = parse_ok(e->distribution_xml, e->distribution_len);
    assert_string_equal(b->tracking_id, e->tracking_id);
    assert_null(b->message_id);
    assert_int_equal(b->payloads[0].len, e->payloads[0].len);
    assert_memory_equal(b->payloads[0].data, e->payloads[0].data, e->payloads[0].len);
    assert_string_equal(b->payloads[0].nhs_number, "9990000018");
    itk_free(b);
    itk_free(e);

    /* Prefixes declared on the SOAP Envelope only are declared on the
     * kept envelope and payload. */
    const char *x =
        "<s:Envelope xmlns:s=\"" ITK_SOAP_NS "\" xmlns:i=\"" ITK_NS "\""
        " xmlns:h=\"urn:hl7-org:v3\" xmlns:q=\"urn:q\"><s:Body>"
        "<i:DistributionEnvelope><i:header service=\"S\" trackingid=\"T\">"
        "<i:auditIdentity><i:id uri=\"urn:a\"/></i:auditIdentity>"
        "<i:manifest count=\"1\"><i:manifestitem id=\"p\" mimetype=\"text/xml\"/>"
        "</i:manifest><i:senderAddress uri=\"urn:s\"/></i:header>"
        "<i:payloads count=\"1\"><i:payload id=\"p\"><h:ClinicalDocument q:x=\"1\">"
        "<h:recordTarget><h:patientRole><h:id root=\"2.16.840.1.113883.2.1.4.1\" "
        "extension=\"9990000018\"/></h:patientRole></h:recordTarget>"
        "</h:ClinicalDocument></i:payload></i:payloads></i:DistributionEnvelope>"
        "</s:Body></s:Envelope>";
    e = parse_ok(x, strlen(x));
    assert_non_null(strstr(e->distribution_xml, "xmlns:i=\"" ITK_NS "\""));
    assert_non_null(strstr((char *)e->payloads[0].data, "xmlns:h=\"urn:hl7-org:v3\""));
    assert_non_null(strstr((char *)e->payloads[0].data, "xmlns:q=\"urn:q\""));
    b = parse_ok(e->distribution_xml, e->distribution_len);
    assert_string_equal(b->payloads[0].nhs_number, "9990000018");
    assert_string_equal((char *)b->payloads[0].data, (char *)e->payloads[0].data);
    itk_free(b);
    itk_free(e);
}

static void test_soap_ok(void **state)
{
    (void)state;
    struct itk_envelope *e = sample();
    struct buf b = {0};
    assert_int_equal(itk_soap_ok(&b, e), 0);
    assert_true(strncmp(b.p, "<?xml version=\"1.0\"", 19) == 0);
    assert_non_null(strstr(b.p, "<wsa:Action>" ITK_SERVICE_CDA "Response</wsa:Action>"));
    assert_non_null(strstr(b.p, "<wsa:RelatesTo>uuid:6B0C3F0E-5A4D-4C3B-9E0A-111111111111"
                                "</wsa:RelatesTo>"));
    assert_non_null(strstr(b.p, "<wsa:MessageID>uuid:"));
    struct itk_response r;
    itk_response_parse(b.p, b.len, 0, &r);
    assert_int_equal(r.kind, ITK_RESPONSE_OK);
    /* No MessageID in the request: no RelatesTo. */
    free(e->message_id);
    e->message_id = NULL;
    buf_reset(&b);
    assert_int_equal(itk_soap_ok(&b, e), 0);
    assert_null(strstr(b.p, "RelatesTo"));
    buf_free(&b);
    itk_free(e);
}

static void test_soap_fault(void **state)
{
    (void)state;
    struct buf b = {0};
    struct itk_response r;
    assert_int_equal(itk_soap_fault(&b, "2002", "manifest count 2 but 1 manifestitem",
                                    "uuid:M-1"), 0);
    assert_non_null(strstr(b.p, "<faultcode>soap:Client</faultcode>"));
    assert_non_null(strstr(b.p, "codeSystem=\"" ITK_ERROR_CODE_OID "\">2002<"));
    assert_non_null(strstr(b.p, "<wsa:RelatesTo>uuid:M-1</wsa:RelatesTo>"));
    itk_response_parse(b.p, b.len, 0, &r);
    assert_int_equal(r.kind, ITK_RESPONSE_FAULT);
    assert_string_equal(r.code, "2002");
    assert_string_equal(r.text, "manifest count 2 but 1 manifestitem");

    buf_reset(&b);
    assert_int_equal(itk_soap_fault(&b, "9999", "out of memory", NULL), 0);
    assert_non_null(strstr(b.p, "<faultcode>soap:Server</faultcode>"));
    assert_null(strstr(b.p, "RelatesTo"));
    itk_response_parse(b.p, b.len, 0, &r);
    assert_int_equal(r.kind, ITK_RESPONSE_FAULT);
    assert_string_equal(r.code, "9999");

    /* Hostile text and relates_to: escaped, the document keeps its shape
     * and the text comes back (the control byte as U+FFFD). */
    buf_reset(&b);
    assert_int_equal(itk_soap_fault(&b, "1000", HOSTILE "\x01" "end",
                                    "</wsa:RelatesTo><x>"), 0);
    assert_null(strstr(b.p, "]]>"));
    assert_null(strstr(b.p, "<a b"));
    assert_null(memchr(b.p, '\x01', b.len));
    itk_response_parse(b.p, b.len, 0, &r);
    assert_int_equal(r.kind, ITK_RESPONSE_FAULT);
    assert_string_equal(r.code, "1000");
    assert_string_equal(r.text, HOSTILE "\xEF\xBF\xBD" "end");
    buf_free(&b);
}

/* Every value of a built envelope comes back from itk_parse as it went
 * in, however hostile, and payload bytes come back exactly. */
static void test_build_round_trip(void **state)
{
    (void)state;
    unsigned char bin[1000];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7 + 3);
    const char *cda = "<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><recordTarget>"
                      "<patientRole><id root=\"2.16.840.1.113883.2.1.4.1\" "
                      "extension=\"9990000018\"/></patientRole></recordTarget>"
                      "<title>A &amp; B &lt; C</title></ClinicalDocument>";
    const char *with_decl_text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    char with_decl[600];
    snprintf(with_decl, sizeof with_decl, "%s%s", with_decl_text, cda);
    const char *addrs[] = { "urn:nhs-uk:addressing:ods:F84003", "urn:x:" HOSTILE };
    struct itk_out_payload pl[] = {
        { .id = "uuid_" HOSTILE, .mimetype = "application/pdf",
          .profile_id = "urn:p:\"'<>&", .base64 = true, .data = bin,
          .len = sizeof bin },
        { .mimetype = "text/xml", .data = (const unsigned char *)with_decl,
          .len = strlen(with_decl) },
        { .id = "empty", .mimetype = "application/octet-stream", .base64 = true,
          .data = bin, .len = 1 },
    };
    struct itk_out_envelope oe = {
        .service = "urn:svc:" HOSTILE,
        .tracking_id = "T\t1\n2\r3 " HOSTILE,
        .addresses = addrs, .n_addresses = 2,
        .audit_identity = "urn:nhs-uk:identity:ods:R1H",
        .sender = "urn:nhs-uk:addressing:ods:R1H",
        .interaction = "urn:i:" HOSTILE,
        .infack_requested = true, .ack_requested = false,
        .payloads = pl, .n_payloads = 3,
    };
    struct buf b = {0};
    assert_int_equal(itk_build_envelope(&b, &oe), 0);
    assert_true(strncmp(b.p, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<itk:DistributionEnvelope", 64) == 0);
    struct itk_envelope *e = parse_ok(b.p, b.len);
    assert_string_equal(e->service, oe.service);
    assert_string_equal(e->tracking_id, oe.tracking_id);
    assert_int_equal(e->n_addresses, 2);
    assert_string_equal(e->addresses[0], addrs[0]);
    assert_string_equal(e->address_ods[0], "F84003");
    assert_string_equal(e->addresses[1], addrs[1]);
    assert_string_equal(e->sender_ods, "R1H");
    assert_string_equal(e->audit_identity, oe.audit_identity);
    assert_string_equal(e->interaction, oe.interaction);
    assert_true(e->infack_requested);
    assert_false(e->ack_requested);
    assert_string_equal(e->profile, "urn:p:\"'<>&");
    assert_int_equal(e->n_payloads, 3);
    assert_string_equal(e->payloads[0].id, pl[0].id);
    assert_true(e->payloads[0].base64);
    assert_int_equal(e->payloads[0].len, sizeof bin);
    assert_memory_equal(e->payloads[0].data, bin, sizeof bin);
    assert_true(strncmp(e->payloads[1].id, "uuid_", 5) == 0);
    assert_int_equal(strlen(e->payloads[1].id), 41);
    assert_false(e->payloads[1].base64);
    assert_string_equal((char *)e->payloads[1].data, cda);
    assert_string_equal(e->payloads[1].nhs_number, "9990000018");
    assert_int_equal(e->payloads[2].len, 1);
    assert_int_equal(e->payloads[2].data[0], bin[0]);
    itk_free(e);

    /* No tracking id, no addresses, no specs: a fresh tracking id. */
    oe.tracking_id = NULL;
    oe.n_addresses = 0;
    oe.interaction = NULL;
    oe.infack_requested = false;
    oe.n_payloads = 1;
    buf_reset(&b);
    assert_int_equal(itk_build_envelope(&b, &oe), 0);
    assert_null(strstr(b.p, "handlingSpecification"));
    e = parse_ok(b.p, b.len);
    check_uuid(e->tracking_id, '4');
    assert_int_equal(e->n_addresses, 0);
    assert_null(e->interaction);
    itk_free(e);
    buf_free(&b);
}

/* Bytes XML 1.0 cannot carry (control bytes, broken UTF-8, U+FFFE)
 * become U+FFFD; valid UTF-8 and tab/LF/CR in attributes pass as they are. */
static void test_build_unrepresentable(void **state)
{
    (void)state;
    struct itk_out_payload pl = { .mimetype = "text/plain", .base64 = true,
                                  .data = (const unsigned char *)"x", .len = 1 };
    struct itk_out_envelope oe = {
        .service = "a\x01" "b\x1f" "c\xff" "d\xC0\xAF" "e\xEF\xBF\xBE" "f\xED\xA0\x80" "g",
        .tracking_id = "\xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80\t\r\n",
        .audit_identity = "urn:nhs-uk:identity:ods:R1H",
        .sender = "urn:nhs-uk:addressing:ods:R1H",
        .payloads = &pl, .n_payloads = 1,
    };
    struct buf b = {0};
    assert_int_equal(itk_build_envelope(&b, &oe), 0);
    struct itk_envelope *e = parse_ok(b.p, b.len);
#define R "\xEF\xBF\xBD"
    assert_string_equal(e->service, "a" R "b" R "c" R "d" R R "e" R R R "f" R R R "g");
#undef R
    assert_string_equal(e->tracking_id, oe.tracking_id);
    itk_free(e);
    buf_free(&b);
}

static void test_soap_wrap(void **state)
{
    (void)state;
    struct itk_envelope *e = sample();
    struct buf b = {0};
    assert_int_equal(itk_soap_wrap(&b, e->distribution_xml, e->distribution_len,
                                   "uuid:M-" HOSTILE, e->service,
                                   "https://gp.example/itk?a=1&b=2", "urn:from:" HOSTILE), 0);
    assert_non_null(strstr(b.p, "<wsa:To>https://gp.example/itk?a=1&amp;b=2</wsa:To>"));
    assert_non_null(strstr(b.p, "<wsa:From><wsa:Address>urn:from:"));
    struct itk_envelope *w = parse_ok(b.p, b.len);
    assert_string_equal(w->message_id, "uuid:M-" HOSTILE);
    assert_string_equal(w->action, e->service);
    assert_string_equal(w->tracking_id, e->tracking_id);
    assert_int_equal(w->payloads[0].len, e->payloads[0].len);
    assert_memory_equal(w->payloads[0].data, e->payloads[0].data, e->payloads[0].len);
    itk_free(w);

    /* A bare envelope as itk_build_envelope writes it (declaration first),
     * no message id, no To or From. */
    struct itk_out_payload pl = { .mimetype = "text/plain", .base64 = true,
                                  .data = (const unsigned char *)"hello", .len = 5 };
    struct itk_out_envelope oe = {
        .service = ITK_SERVICE_CDA, .tracking_id = "T-1",
        .audit_identity = "urn:nhs-uk:identity:ods:R1H",
        .sender = "urn:nhs-uk:addressing:ods:R1H",
        .payloads = &pl, .n_payloads = 1,
    };
    struct buf de = {0};
    assert_int_equal(itk_build_envelope(&de, &oe), 0);
    buf_reset(&b);
    assert_int_equal(itk_soap_wrap(&b, de.p, de.len, NULL, ITK_SERVICE_CDA, NULL, NULL), 0);
    assert_null(strstr(b.p, "wsa:To"));
    assert_null(strstr(b.p, "wsa:From"));
    w = parse_ok(b.p, b.len);
    assert_true(strncmp(w->message_id, "uuid:", 5) == 0);
    check_uuid(w->message_id + 5, '4');
    assert_string_equal(w->tracking_id, "T-1");
    assert_string_equal((char *)w->payloads[0].data, "hello");
    itk_free(w);
    buf_free(&de);
    buf_free(&b);
    itk_free(e);
}

static void test_infack(void **state)
{
    (void)state;
    struct itk_envelope *req = sample();
    struct buf b = {0}, b2 = {0};
    assert_int_equal(itk_infack_build(&b, req, "BRK01", true, NULL, NULL), 0);
    struct itk_envelope *a = parse_ok(b.p, b.len);
    assert_string_equal(a->action, ITK_SERVICE_INFACK);
    assert_string_equal(a->service, ITK_SERVICE_INFACK);
    assert_int_equal(a->n_addresses, 1);
    assert_string_equal(a->addresses[0], "urn:nhs-uk:addressing:ods:R1H");
    assert_string_equal(a->sender, "urn:nhs-uk:addressing:ods:BRK01");
    assert_string_equal(a->audit_identity, "urn:nhs-uk:identity:ods:BRK01");
    assert_int_equal(a->n_payloads, 1);
    const char *ir = (const char *)a->payloads[0].data;
    assert_true(strncmp(ir, "<itk:InfrastructureResponse", 27) == 0);
    assert_non_null(strstr(ir, "trackingIdRef=\"7D5B2A90-1C44-4F7B-8D3E-222222222222\""));
    assert_non_null(strstr(ir, "serviceRef=\"" ITK_SERVICE_CDA "\""));
    assert_non_null(strstr(ir, "result=\"OK\""));
    assert_non_null(strstr(ir, "<itk:id uri=\"urn:nhs-uk:identity:ods:BRK01\"/>"));
    assert_null(strstr(ir, "errorInfo"));
    /* The same request acked again carries the same tracking id. */
    assert_int_equal(itk_infack_build(&b2, req, "BRK01", true, NULL, NULL), 0);
    struct itk_envelope *a2 = parse_ok(b2.p, b2.len);
    assert_string_equal(a2->tracking_id, a->tracking_id);
    assert_string_not_equal(a2->message_id, a->message_id);
    itk_free(a2);
    itk_free(a);

    buf_reset(&b);
    assert_int_equal(itk_infack_build(&b, req, "BRK&01", false, "2003",
                                      "payload " HOSTILE), 0);
    a = parse_ok(b.p, b.len);
    assert_string_equal(a->sender, "urn:nhs-uk:addressing:ods:BRK&01");
    ir = (const char *)a->payloads[0].data;
    assert_non_null(strstr(ir, "result=\"Failure\""));
    assert_non_null(strstr(ir, "<itk:ErrorCode codeSystem=\"" ITK_ERROR_CODE_OID "\">2003<"));
    assert_non_null(strstr(ir, "<itk:ErrorText>payload &lt;a b=\"c\" d='e'&gt;&amp;amp; ]]&gt;"));
    itk_free(a);
    buf_free(&b);
    buf_free(&b2);
    itk_free(req);
}

static void expect_response(const char *body, size_t max, enum itk_response_kind kind,
                            const char *code, const char *text_part)
{
    struct itk_response r;
    memset(&r, 'x', sizeof r);
    itk_response_parse(body, strlen(body), max, &r);
    if (r.kind != kind || !strstr(r.text, text_part))
        print_error("kind %d code '%s' text '%s'\n", r.kind, r.code, r.text);
    assert_int_equal(r.kind, kind);
    assert_non_null(memchr(r.code, '\0', sizeof r.code));
    assert_non_null(memchr(r.text, '\0', sizeof r.text));
    if (code)
        assert_string_equal(r.code, code);
    assert_non_null(strstr(r.text, text_part));
}

#define ENV_OPEN "<soap:Envelope xmlns:soap=\"" ITK_SOAP_NS "\" xmlns:itk=\"" ITK_NS "\"><soap:Body>"
#define ENV_CLOSE "</soap:Body></soap:Envelope>"

static void test_response_parse(void **state)
{
    (void)state;
    expect_response(ENV_OPEN "<itk:SimpleMessageResponse> OK\n</itk:SimpleMessageResponse>"
                    ENV_CLOSE, 0, ITK_RESPONSE_OK, "", "OK");
    expect_response("", 0, ITK_RESPONSE_OK, "", "empty");
    expect_response(" \r\n", 0, ITK_RESPONSE_OK, "", "empty");
    expect_response(ENV_OPEN "<itk:SimpleMessageResponse>NOT OK</itk:SimpleMessageResponse>"
                    ENV_CLOSE, 0, ITK_RESPONSE_OTHER, "", "'NOT OK'");
    expect_response(ENV_OPEN "<itk:Other/>" ENV_CLOSE, 0, ITK_RESPONSE_OTHER, "",
                    "holds Other");
    expect_response(ENV_OPEN ENV_CLOSE, 0, ITK_RESPONSE_OTHER, "", "Body is empty");
    expect_response("<html><body>502 Bad Gateway</body></html>", 0,
                    ITK_RESPONSE_OTHER, "", "root element html");
    expect_response("502 Bad Gateway", 0, ITK_RESPONSE_OTHER, "", "not well-formed");
    /* A fault without ITK detail: faultcode and faultstring. */
    expect_response(ENV_OPEN "<soap:Fault><faultcode>soap:Server</faultcode>"
                    "<faultstring>busy &amp; tired</faultstring></soap:Fault>" ENV_CLOSE,
                    0, ITK_RESPONSE_FAULT, "soap:Server", "busy & tired");
    /* ITK detail wins over faultstring. */
    expect_response(ENV_OPEN "<soap:Fault><faultcode>soap:Client</faultcode>"
                    "<faultstring>A client related error has occurred</faultstring>"
                    "<detail><itk:ToolkitErrorInfo><itk:ErrorID>E</itk:ErrorID>"
                    "<itk:ErrorCode codeSystem=\"x\">2200</itk:ErrorCode>"
                    "<itk:ErrorText>unknown recipient</itk:ErrorText>"
                    "</itk:ToolkitErrorInfo></detail></soap:Fault>" ENV_CLOSE,
                    0, ITK_RESPONSE_FAULT, "2200", "unknown recipient");
    /* Long values are cut with "...", control bytes become spaces. */
    char big[2000];
    char *p = big + sprintf(big, ENV_OPEN "<soap:Fault><faultcode>");
    memset(p, 'C', 40);
    p += 40;
    p += sprintf(p, "</faultcode><faultstring>a&#9;b");
    memset(p, 'T', 900);
    p += 900;
    sprintf(p, "</faultstring></soap:Fault>" ENV_CLOSE);
    struct itk_response r;
    itk_response_parse(big, strlen(big), 0, &r);
    assert_int_equal(r.kind, ITK_RESPONSE_FAULT);
    assert_int_equal(strlen(r.code), sizeof r.code - 1);
    assert_int_equal(strlen(r.text), sizeof r.text - 1);
    assert_true(strncmp(r.text, "a b", 3) == 0);
    assert_string_equal(r.text + sizeof r.text - 4, "...");
}

static void test_response_hostile(void **state)
{
    (void)state;
    size_t len;
    char *x = slurp(DATA "xxe.xml", &len);
    expect_response(x, 0, ITK_RESPONSE_OTHER, "", "DOCTYPE");
    free(x);
    x = slurp(DATA "billion_laughs.xml", &len);
    expect_response(x, 0, ITK_RESPONSE_OTHER, "", "DOCTYPE");
    free(x);
    expect_response(ENV_OPEN "<itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse>"
                    ENV_CLOSE, 64, ITK_RESPONSE_OTHER, "", "over the limit of 64 bytes");
    /* Deep nesting. */
    size_t n = 300;
    char *deep = malloc(n * 7 + 1);
    assert_non_null(deep);
    char *q = deep;
    for (size_t i = 0; i < n; i++)
        q += sprintf(q, "<a>");
    for (size_t i = 0; i < n; i++)
        q += sprintf(q, "</a>");
    expect_response(deep, 0, ITK_RESPONSE_OTHER, "", "nested");
    free(deep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_distribution_xml),
        cmocka_unit_test(test_soap_ok),
        cmocka_unit_test(test_soap_fault),
        cmocka_unit_test(test_build_round_trip),
        cmocka_unit_test(test_build_unrepresentable),
        cmocka_unit_test(test_soap_wrap),
        cmocka_unit_test(test_infack),
        cmocka_unit_test(test_response_parse),
        cmocka_unit_test(test_response_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
