/*
 * test_route_transform.c: route transforms (routes/transform.c). Each
 * transform on the shared samples with the exact bytes expected, the JSON
 * form, a pseudonymisation known-answer test, and the text of every
 * compile error. The cases are routes in the .conf files of
 * test/data/routes.
 * Runs from the repository root (make test).
 */
#include "hl7_test_util.h"

#include <glob.h>
#include <sys/stat.h>

#include "config.h"
#include "route.h"

#define DATA "test/data/routes/"

static struct config        cfg;
static struct route_tables *tables;

static int setup(void **state)
{
    (void)state;
    /* git keeps no modes but the executable bit: make the keys private */
    chmod(DATA "test.key", 0600);
    chmod(DATA "empty.key", 0600);
    chmod(DATA "short.key", 0600);
    chmod(DATA "public.key", 0644);
    struct config_errors errs = { 0 };
    int rc = config_load(DATA "transforms.conf", &cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.v[i].msg);
    config_errors_free(&errs);
    if (rc != CONFIG_OK)
        return -1;
    struct route_error err = { 0 };
    if (route_tables_load(&cfg, &tables, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    route_tables_free(tables);
    config_free(&cfg);
    return 0;
}

static const struct config_route *find_route(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_routes; i++)
        if (strcmp(c->routes[i].name, name) == 0)
            return &c->routes[i];
    print_error("no route %s in the test config\n", name);
    fail();
    return NULL;
}

static struct route_transforms *compile(const char *route)
{
    struct route_transforms *t = NULL;
    struct route_error err = { 0 };
    if (route_transforms_compile(find_route(&cfg, route), tables, &t, &err)) {
        print_error("compile %s: %s\n", route, err.msg);
        fail();
    }
    return t;
}

/* Apply route's transforms to a sample (or text) and compare the output. */
static void check_apply_at(const char *route, const char *sample, const char *text,
                           const char *want, size_t want_len, const char *file, int line)
{
    struct route_transforms *t = compile(route);
    struct sample s;
    if (sample)
        sample_open_at(&s, sample, file, line);
    else
        bytes_open_at(&s, text, strlen(text), file, line);
    struct buf out = { 0 };
    struct route_error err = { 0 };
    if (route_transforms_apply(t, s.msg, &out, &err)) {
        print_error("apply %s: %s\n", route, err.msg);
        _fail(file, line);
    }
    check_bytes(out.p, out.len, want, want_len, route, file, line);
    buf_free(&out);
    sample_close(&s);
    route_transforms_free(t);
}
#define check_apply(route, sample, want) \
    check_apply_at((route), (sample), NULL, (want), strlen(want), __FILE__, __LINE__)
#define check_apply_text(route, text, want) \
    check_apply_at((route), NULL, (text), (want), strlen(want), __FILE__, __LINE__)

static void check_apply_fails_at(const char *route, const char *sample, const char *want_msg,
                                 const char *want_setting, const char *file, int line)
{
    struct route_transforms *t = compile(route);
    struct sample s;
    sample_open_at(&s, sample, file, line);
    struct buf out = { 0 };
    struct route_error err = { 0 };
    if (route_transforms_apply(t, s.msg, &out, &err) != -1) {
        print_error("apply %s succeeded: %s\n", route, show(out.p, out.len));
        _fail(file, line);
    }
    check_bytes(err.msg, strlen(err.msg), want_msg, strlen(want_msg), "error", file, line);
    check_bytes(err.setting, strlen(err.setting), want_setting, strlen(want_setting),
                "setting", file, line);
    check_bytes(err.route, strlen(err.route), route, strlen(route), "route", file, line);
    buf_free(&out);
    sample_close(&s);
    route_transforms_free(t);
}
#define check_apply_fails(route, sample, msg, setting) \
    check_apply_fails_at((route), (sample), (msg), (setting), __FILE__, __LINE__)

/* ------------------------------------------------------------ samples */

/* adt_a01_lf.hl7 (LF line ends), as the transforms write it: CR. */
#define LF_MSH "MSH|^~\\&|PAS|STG|LCR|ONELONDON|20261121083000||ADT^A04^ADT_A01|STG-4410|P|2.4|||AL|NE\r"
#define LF_EVN "EVN|A04|20261121083000\r"
#define LF_PID "PID|1||9990000085^^^NHS^NH||NGUYEN^LINH||20010607|F\r"
#define LF_PV1 "PV1|1|E|STG-ED^^^STG\r"

/* adt_a08_escapes.hl7 */
#define ESC_MSH "MSH|^~\\&|PAS|KCH|LCR|ONELONDON|20261121101500||ADT^A08^ADT_A01|KCH-77812|P|2.4|||AL|NE|GBR|UNICODE UTF-8|EN||ITKv1.0\r"
#define ESC_EVN "EVN|A08|20261121101500\r"
#define ESC_PID_A "PID|1||"
#define ESC_PID_B "||O'NEILL^SIOBHAN^^^MS||19851224|F|||FLAT 2\\T\\3^CHAMPION HILL^LONDON^^SE5 9RS^GBR^H||07700900123^PRN^CP\r"
#define ESC_PID ESC_PID_A "9990000026^^^NHS^NH~K998877^^^KCH^MR" ESC_PID_B
#define ESC_PV1 "PV1|1|O|KCH-OPD^^^KCH|||||||||||||||OP5512\r"
#define ESC_NTE "NTE|1||Carer present \\F\\ interpreter requested\\.br\\Prefers \\S\\morning\\S\\ appointments \\E\\ see note\\R\\second part\r"
#define ESC_OBX "OBX|1|TX|NOTE^Free text^L||Line one\\X0D\\\\X0A\\Line two with caf\\XC3A9\\||||||F\r"
#define ESC_TAIL ESC_PV1 ESC_NTE ESC_OBX

/* ---------------------------------------------------------- transforms */

static void test_no_transforms(void **state)
{
    (void)state;
    /* Without transforms the message comes out as it came, in CR. */
    check_apply("none", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID LF_PV1);
    check_apply("none", "adt_a08_escapes.hl7", ESC_MSH ESC_EVN ESC_PID ESC_TAIL);
}

static void test_set(void **state)
{
    (void)state;
    /* value: escaped for the message */
    check_apply("set-value", "adt_a01_lf.hl7",
                "MSH|^~\\&|PAS|STG|HIE\\F\\1\\S\\A|ONELONDON|20261121083000||ADT^A04^ADT_A01|"
                "STG-4410|P|2.4|||AL|NE\r" LF_EVN LF_PID LF_PV1);
    /* from: the decoded value of another path */
    check_apply("set-from", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1|9990000085|9990000085^^^NHS^NH||NGUYEN^LINH||20010607|F\r"
                LF_PV1);
    /* an empty source leaves the target as it is */
    check_apply("set-from-absent", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID LF_PV1);
    /* decoded, then escaped again: delimiters stay escaped, \.br\ is a line feed */
    check_apply("set-from-escaped", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID ESC_TAIL
                "ZNT|Carer present \\F\\ interpreter requested\\X0A\\Prefers \\S\\morning"
                "\\S\\ appointments \\E\\ see note\\R\\second part\r");
    /* a segment that is not there is created */
    check_apply("set-new-segment", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID LF_PV1 "ZPI||^x\r");
    /* a transform after encoding = "er7" still runs */
    check_apply("er7", "adt_a01_lf.hl7", LF_MSH "EVN|A99|20261121083000\r" LF_PID LF_PV1);
}

static void test_copy(void **state)
{
    (void)state;
    check_apply("copy", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1|9990000085^^^NHS^NH|9990000085^^^NHS^NH||NGUYEN^LINH||"
                "20010607|F\r" LF_PV1);
    /* copying nothing empties the target */
    check_apply("copy-absent", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1||9990000085^^^NHS^NH||||20010607|F\r" LF_PV1);
    /* structure that does not fit the target is a transform error */
    check_apply_fails("copy-too-deep", "adt_a01_lf.hl7",
                      "route copy-too-deep: transform[0].copy: PID-2.1: a raw value may not "
                      "hold a delimiter of its own level or above (byte 10)",
                      "transform[0].copy");
}

static void test_clear(void **state)
{
    (void)state;
    check_apply("clear", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1||9990000085^^^NHS^NH||NGUYEN^||20010607|F\r" "PV1|1|E|\r");
    /* a component path without a repetition: every repetition */
    check_apply("clear-every-rep", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID_A "9990000026^^^^NH~K998877^^^^MR" ESC_PID_B ESC_TAIL);
}

static void test_delete_segment(void **state)
{
    (void)state;
    check_apply("delete", "adt_a01_lf.hl7", LF_MSH LF_PID LF_PV1);
    check_apply("delete", "adt_a08_escapes.hl7", ESC_MSH ESC_PID ESC_TAIL);
    /* when: evaluated on each OBX in turn; OBX 1 (flag L) and 2 (WBC) go */
    check_apply("delete-when", "oru_r01.hl7",
                "MSH|^~\\&|WINPATH|UCLH|LCR|ONELONDON|20261121143000||ORU^R01^ORU_R01|"
                "UCLH-LAB-55501|P|2.4|||AL|NE|GBR|UNICODE UTF-8|EN\r"
                "PID|1||9990000042^^^NHS^NH~U4455667^^^UCLH^MR||KOWALSKI^ANNA^^^MRS||19550317|F"
                "|||22 GOWER STREET^^LONDON^^WC1E 6BT^GBR^H\r"
                "PV1|1|O|UCLH-OPD^^^UCLH\r"
                "ORC|RE|ORD778812|LAB55501||CM\r"
                "OBR|1|ORD778812|LAB55501|FBC^Full blood count^WINPATH|||20261121120000|||||||"
                "20261121123000||G1234567^BROWN^SARAH^^^DR||||||20261121142500||HM|F\r"
                "OBX|3|NM|PLT^Platelets^WINPATH||254|10*9/L|150-400|N|||F|||20261121142500\r"
                "NTE|1||Mild anaemia. Suggest ferritin.\r");
    /* no segment of that name: nothing happens */
    check_apply("delete-when", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID LF_PV1);
}

static void test_map(void **state)
{
    (void)state;
    check_apply("map", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID "PV1|1|E|STG-ED^^^R1X99\r");
    check_apply("map-default", "adt_a01_lf.hl7", LF_MSH LF_EVN LF_PID "PV1|1|E|STG-ED^^^R1X99\r");
    /* KCH is not in the table */
    check_apply_fails("map", "adt_a08_escapes.hl7",
                      "route map: transform[0].map: no entry for 'KCH' in table 'sites', and "
                      "no default", "transform[0].map");
    check_apply("map-default", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID "PV1|1|O|KCH-OPD^^^UNKNOWN|||||||||||||||OP5512\r"
                ESC_NTE ESC_OBX);
    /* every repetition; an empty value is left alone */
    check_apply("map-every-rep", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID_A "9990000026^^^?^NH~K998877^^^?^MR" ESC_PID_B ESC_TAIL);
    check_apply_text("map", "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\rPV1|1|I|W^B^1\r",
                     "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\rPV1|1|I|W^B^1\r");
}

/* The expected values come from OpenSSL's command line, not this code:
 *   printf '%s' 9990000085 | openssl dgst -sha256 \
 *       -hmac 'TEST KEY for hl7broker unit tests only, not a secret'
 * (the key file's trailing line feed is not part of the key). */
#define HMAC_9990000085 "6e2443a0c42bdba1b10bb7b7c9ee343eaa8a8a960475cd562e1a908eb584ac9d"
#define HMAC_9990000018 "8b8545528e0a2c069288c8172f437f39420bcdadac2fd837d9314ea0ffd777c9"
#define HMAC_RLH1234567 "977a42fa76d7ef2661511d76e9f5685fc4e5fb082050d4a62efd3f6f1d61d136"

static void test_pseudonymise(void **state)
{
    (void)state;
    check_apply("pseudonymise", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1||" HMAC_9990000085 "^^^NHS^NH||NGUYEN^LINH||20010607|F\r"
                LF_PV1);
    /* every repetition, and the same again from a fresh compile (the key
       is read again, as after a restart) */
    for (int round = 0; round < 2; round++) {
        struct route_transforms *t = compile("pseudonymise");
        struct sample s;
        sample_open(&s, "adt_a01.hl7");
        struct buf out = { 0 };
        assert_int_equal(route_transforms_apply(t, s.msg, &out, NULL), 0);
        assert_non_null(strstr(out.p, "PID|1||" HMAC_9990000018 "^^^NHS^NH~"
                                      HMAC_RLH1234567 "^^^RLH^MR||SMITH^"));
        assert_null(strstr(out.p, "9990000018"));
        buf_free(&out);
        sample_close(&s);
        route_transforms_free(t);
    }
}

static void test_redact(void **state)
{
    (void)state;
    /* an empty with empties the field; a component in every repetition */
    check_apply("redact", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID_A "9990000026^^^NHS^NH~K998877^^^KCH^MR||||19851224|F|||"
                "X^CHAMPION HILL^LONDON^^SE5 9RS^GBR^H||07700900123^PRN^CP\r" ESC_TAIL);
    /* a field: every repetition becomes with */
    check_apply("redact-reps", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID_A "REDACTED~REDACTED" ESC_PID_B ESC_TAIL);
    check_apply("redact-component", "adt_a08_escapes.hl7",
                ESC_MSH ESC_EVN ESC_PID_A "***^^^NHS^NH~***^^^KCH^MR" ESC_PID_B ESC_TAIL);
    /* nothing there: nothing added */
    check_apply("redact", "adt_a01_lf.hl7",
                LF_MSH LF_EVN "PID|1||9990000085^^^NHS^NH||||20010607|F\r" LF_PV1);
}

/* ---------------------------------------------------------------- JSON */

static void test_json_escapes(void **state)
{
    (void)state;
    check_apply("json", "adt_a08_escapes.hl7",
        "{\"segments\":["
        "{\"id\":\"MSH\",\"fields\":[\"|\",\"^~\\\\&\",\"PAS\",\"KCH\",\"LCR\",\"ONELONDON\","
        "\"20261121101500\",null,{\"components\":[\"ADT\",\"A08\",\"ADT_A01\"]},\"KCH-77812\","
        "\"P\",\"2.4\",null,null,\"AL\",\"NE\",\"GBR\",\"UNICODE UTF-8\",\"EN\",null,"
        "\"ITKv1.0\"]},"
        "{\"id\":\"EVN\",\"fields\":[\"A08\",\"20261121101500\"]},"
        "{\"id\":\"PID\",\"fields\":[\"1\",null,{\"repetitions\":["
        "{\"components\":[\"9990000026\",null,null,\"NHS\",\"NH\"]},"
        "{\"components\":[\"K998877\",null,null,\"KCH\",\"MR\"]}]},null,"
        "{\"components\":[\"O'NEILL\",\"SIOBHAN\",null,null,\"MS\"]},null,\"19851224\",\"F\","
        "null,null,{\"components\":[\"FLAT 2&3\",\"CHAMPION HILL\",\"LONDON\",null,"
        "\"SE5 9RS\",\"GBR\",\"H\"]},null,{\"components\":[\"07700900123\",\"PRN\",\"CP\"]}]},"
        "{\"id\":\"PV1\",\"fields\":[\"1\",\"O\",{\"components\":[\"KCH-OPD\",null,null,"
        "\"KCH\"]},null,null,null,null,null,null,null,null,null,null,null,null,null,null,"
        "\"OP5512\"]},"
        "{\"id\":\"NTE\",\"fields\":[\"1\",null,\"Carer present | interpreter requested\\n"
        "Prefers ^morning^ appointments \\\\ see note~second part\"]},"
        "{\"id\":\"OBX\",\"fields\":[\"1\",\"TX\",{\"components\":[\"NOTE\",\"Free text\","
        "\"L\"]},null,\"Line one\\r\\nLine two with caf\xc3\xa9\",null,null,null,null,null,"
        "\"F\"]}]}");
}

static void json_of(const char *text, struct buf *out)
{
    struct sample s;
    text_open(&s, text);
    assert_int_equal(route_to_json(s.msg, out), 0);
    sample_close(&s);
}

static void test_json_shape(void **state)
{
    (void)state;
    struct buf b = { 0 };
    /* subcomponents, the HL7 null, trailing empties, a bare segment */
    json_of("MSH|^~\\&|A||||||ADT^A01|1|P|2.4\rPID|1||A&B^C~D||\"\"|\rZZZ\r", &b);
    assert_buf(&b, "{\"segments\":["
               "{\"id\":\"MSH\",\"fields\":[\"|\",\"^~\\\\&\",\"A\",null,null,null,null,null,"
               "{\"components\":[\"ADT\",\"A01\"]},\"1\",\"P\",\"2.4\"]},"
               "{\"id\":\"PID\",\"fields\":[\"1\",null,{\"repetitions\":[{\"components\":["
               "{\"subcomponents\":[\"A\",\"B\"]},\"C\"]},\"D\"]},null,\"\\\"\\\"\",null]},"
               "{\"id\":\"ZZZ\",\"fields\":[]}]}");
    buf_reset(&b);
    /* custom delimiters: the shape does not depend on them */
    json_of("MSH*%$@!*GP******ADT%A28*1*P*2.5\rPID*1**X%Y$Z!W*a@F@b\r", &b);
    assert_buf(&b, "{\"segments\":["
               "{\"id\":\"MSH\",\"fields\":[\"*\",\"%$@!\",\"GP\",null,null,null,null,null,"
               "{\"components\":[\"ADT\",\"A28\"]},\"1\",\"P\",\"2.5\"]},"
               "{\"id\":\"PID\",\"fields\":[\"1\",null,{\"repetitions\":[{\"components\":"
               "[\"X\",\"Y\"]},{\"components\":[{\"subcomponents\":[\"Z\",\"W\"]}]}]},"
               "\"a*b\"]}]}");
    buf_free(&b);
}

static void test_json_utf8(void **state)
{
    (void)state;
    struct buf b = { 0 };
    /* UTF-8 kept; invalid bytes (a lone E9, an overlong C0 AF, a surrogate
       ED A0 80, an escape giving FF) each become U+FFFD */
    json_of("MSH|^~\\&|A||||||ADT^A01|1|P|2.4\r"
            "PID|caf\xc3\xa9|caf\xe9|\xc0\xaf|\xed\xa0\x80|\\XFF\\|\xf0\x9f\x8f\xa5\r", &b);
    assert_buf(&b, "{\"segments\":["
               "{\"id\":\"MSH\",\"fields\":[\"|\",\"^~\\\\&\",\"A\",null,null,null,null,null,"
               "{\"components\":[\"ADT\",\"A01\"]},\"1\",\"P\",\"2.4\"]},"
               "{\"id\":\"PID\",\"fields\":[\"caf\xc3\xa9\",\"caf\xef\xbf\xbd\","
               "\"\xef\xbf\xbd\xef\xbf\xbd\",\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\","
               "\"\xef\xbf\xbd\",\"\xf0\x9f\x8f\xa5\"]}]}");
    buf_reset(&b);
    /* MSH-18 8859/1: Latin-1 bytes become their UTF-8 */
    json_of("MSH|^~\\&|A||||||ADT^A01|1|P|2.4||||||8859/1\rPID|caf\xe9|\\XE9\\\r", &b);
    assert_non_null(strstr(b.p, "{\"id\":\"PID\",\"fields\":[\"caf\xc3\xa9\",\"\xc3\xa9\"]}"));
    buf_reset(&b);
    /* a NUL from an escape is kept, as \u0000 */
    json_of("MSH|^~\\&|A||||||ADT^A01|1|P|2.4\rPID|a\\X00\\b\r", &b);
    assert_non_null(strstr(b.p, "\"fields\":[\"a\\u0000b\"]"));
    buf_free(&b);
}

/* ------------------------------------------------------ compile errors */

struct collected {
    char   msgs[32][512];
    size_t n;
};

static void collect(void *ctx, const struct route_error *e)
{
    struct collected *c = ctx;
    if (c->n < 32)
        snprintf(c->msgs[c->n++], sizeof c->msgs[0], "%s", e->msg);
}

#define BAD DATA "bad_transforms.conf"

static void test_compile_errors(void **state)
{
    (void)state;
    static const char *const want[] = {
        BAD ":10: route unknown-key: setting transform[0].colour: unknown key 'colour': a "
            "transform is one of set, copy, clear, delete_segment, map, pseudonymise, redact, "
            "encoding, convert, with its arguments",
        BAD ":12: route no-action: setting transform[0]: no action: give one of set, copy, "
            "clear, delete_segment, map, pseudonymise, redact, encoding, convert, like { set = "
            "\"MSH-5\"; value = \"X\"; }",
        BAD ":14: route two-actions: setting transform[0].clear: a second action in one "
            "transform (the first is set): give each its own group, like { clear = "
            "\"PID-13\"; }",
        BAD ":16: route bad-path: setting transform[0].clear: column 5: bad path 'PID-x': a "
            "field number is a number from 1, like PID-3",
        BAD ":18: route whole-segment: setting transform[0].redact: 'PID' is a whole "
            "segment: give a field, like PID-3",
        BAD ":20: route read-only: setting transform[0].set: MSH-2 holds the encoding "
            "characters and cannot be changed",
        BAD ":22: route unknown-table: setting transform[0].table: no table is named 'nope' "
            "(tables are declared in the tables list)",
        BAD ":24: route missing-arg: setting transform[0].copy: needs 'to', as in { copy = "
            "\"PID-3\"; to = \"PID-2\"; }",
        BAD ":26: route set-both: setting transform[0].set: give value or from, not both",
        BAD ":28: route wrong-arg: setting transform[0].with: 'with' does not go with clear "
            "(clear takes nothing else), as in { clear = \"PID-13\"; }",
        BAD ":30: route not-string: setting transform[0].value: must be a string, in double "
            "quotes",
        BAD ":32: route bad-segment: setting transform[0].delete_segment: 'nk1' is not a "
            "segment id: three capital letters or digits, like NK1",
        BAD ":32: route bad-segment: setting transform[1].delete_segment: MSH is a header "
            "segment and cannot be deleted",
        NULL,   /* bad-when: the expression compiler's own words, checked below */
        BAD ":36: route bad-encoding: setting transform[0].encoding: 'xml' is not an "
            "encoding: \"er7\" or \"json\"",
        BAD ":36: route bad-encoding: setting transform[2].encoding: the encoding is already "
            "given by transform[1]",
        BAD ":38: route key-missing: setting transform[0].key_file: cannot read the key file "
            "test/data/routes/no-such.key: No such file or directory",
        BAD ":40: route key-empty: setting transform[0].key_file: the key file "
            "test/data/routes/empty.key is empty: put a secret in it, such as the output of "
            "`openssl rand -hex 32`",
        BAD ":42: route key-short: setting transform[0].key_file: the key in "
            "test/data/routes/short.key is 9 bytes: it must be at least 32 (`openssl rand "
            "-hex 32` makes a good one)",
        BAD ":44: route key-public: setting transform[0].key_file: the key file "
            "test/data/routes/public.key can be read or written by every user (mode 0644): "
            "make it private with chmod 600",
    };
    struct config bad;
    struct config_errors errs = { 0 };
    assert_int_equal(config_load(BAD, &bad, &errs), CONFIG_OK);
    struct collected *got = calloc(1, sizeof *got);
    assert_non_null(got);
    struct router *r = router_new(&bad, collect, got);
    assert_null(r);
    for (size_t i = 0; i < got->n; i++)
        if (i >= ARRAY_LEN(want) || (want[i] && strcmp(got->msgs[i], want[i]) != 0))
            print_error("error %zu:\n  got  %s\n  want %s\n", i, got->msgs[i],
                        i < ARRAY_LEN(want) && want[i] ? want[i] : "(none)");
    assert_int_equal(got->n, ARRAY_LEN(want));
    for (size_t i = 0; i < got->n; i++)
        if (want[i])
            assert_string_equal(got->msgs[i], want[i]);
    /* the when of delete_segment: where, and the column within it */
    assert_non_null(strstr(got->msgs[13], BAD ":34: route bad-when: setting transform[0].when: "
                                          "column 9: "));

    /* route_transforms_compile alone: the first error, in its parts */
    struct route_transforms *t = (struct route_transforms *)1;
    struct route_error e = { 0 };
    assert_int_equal(route_transforms_compile(find_route(&bad, "bad-path"), NULL, &t, &e), -1);
    assert_null(t);
    assert_string_equal(e.route, "bad-path");
    assert_string_equal(e.setting, "transform[0].clear");
    assert_int_equal(e.column, 5);
    assert_string_equal(e.text, "bad path 'PID-x': a field number is a number from 1, like PID-3");
    assert_string_equal(e.msg, want[3]);
    /* without tables, a map names its table as unknown */
    assert_int_equal(route_transforms_compile(find_route(&cfg, "map"), NULL, &t, &e), -1);
    assert_string_equal(e.setting, "transform[0].table");

    free(got);
    config_free(&bad);
}

static void test_good_configs_compile(void **state)
{
    (void)state;
    static const char *const files[] = { "conf/hl7broker.conf", "conf/london.conf",
                                         DATA "transforms.conf", DATA "routes.conf" };
    chmod("conf/keys/research-example.key", 0600);
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        struct config c;
        struct config_errors errs = { 0 };
        int rc = config_load(files[i], &c, &errs);
        for (size_t k = 0; k < errs.n; k++)
            print_error("%s\n", errs.v[k].msg);
        config_errors_free(&errs);
        assert_int_equal(rc, CONFIG_OK);
        struct collected *got = calloc(1, sizeof *got);
        struct router *r = router_new(&c, collect, got);
        for (size_t k = 0; k < got->n; k++)
            print_error("%s\n", got->msgs[k]);
        assert_non_null(r);
        router_free(r);
        free(got);
        config_free(&c);
    }
}

/* ------------------------------------------------------ depersonalise */

/* The decoded value at text (a path) of m, "" when none. */
static void value_of(const struct hl7_msg *m, const char *text, struct buf *v)
{
    struct hl7_path p;
    struct hl7_error he;
    buf_reset(v);
    assert_int_equal(hl7_path_parse(text, strlen(text), &p, &he), 0);
    hl7_get_decoded(m, &p, v);
    if (buf_putc(v, '\0') == 0)
        v->len--;
}

/* Must not appear in out: what would identify the person. */
static void gone_at(const char *out, const char *what, const char *path, const char *file, int line)
{
    if (strlen(what) >= 3 && strstr(out, what)) {
        print_error("%s '%s' survived depersonalisation:\n%s\n", path, what, out);
        _fail(file, line);
    }
}
#define gone(out, what, path) gone_at((out), (what), (path), __FILE__, __LINE__)

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void check_depersonalised(const struct route_transforms *t, const char *raw, size_t len)
{
    struct hl7_msg *m0 = NULL, *m1 = NULL, *m2 = NULL, *out = NULL;
    struct buf b1 = { 0 }, b2 = { 0 }, v = { 0 }, w = { 0 };
    struct route_error err;
    assert_int_equal(hl7_parse(raw, len, NULL, &m0, NULL), 0);
    assert_int_equal(hl7_parse(raw, len, NULL, &m1, NULL), 0);
    assert_int_equal(hl7_parse(raw, len, NULL, &m2, NULL), 0);
    assert_int_equal(route_transforms_apply(t, m1, &b1, &err), 0);
    assert_int_equal(route_transforms_apply(t, m2, &b2, &err), 0);
    /* Stable: the same message gives the same bytes. */
    assert_int_equal(b1.len, b2.len);
    assert_memory_equal(b1.p, b2.p, b1.len);
    assert_int_equal(buf_putc(&b1, '\0'), 0);
    assert_int_equal(hl7_parse(b1.p, b1.len - 1, NULL, &out, NULL), 0);
    /* What identified the person is nowhere in the output. */
    static const char *const removed[] = {
        /* (PID-11.3, the town, is checked empty below: LONDON is in ONELONDON) */
        "PID-5.1", "PID-5.2", "PID-5.3", "PID-6.1", "PID-9.1", "PID-11.1", "PID-11.2",
        "PID-13.1", "PID-14.1", "PID-18.1", "PV1-19.1", "NK1-2.1", "NK1-2.2",
        "NK1-4.1", "NK1-5.1", "NTE-3", "PID-3[1].1", "PID-3[2].1", "PID-3[3].1", "MRG-1.1",
    };
    for (size_t i = 0; i < sizeof removed / sizeof *removed; i++) {
        value_of(m0, removed[i], &v);
        if (v.len)
            gone(b1.p, v.p, removed[i]);
    }
    value_of(m0, "PID-7.1", &v);
    if (v.len > 4)
        gone(b1.p, v.p, "PID-7.1");
    value_of(m0, "PID-11.5", &v);
    if (strchr(v.p ? v.p : "", ' '))
        gone(b1.p, v.p, "PID-11.5");
    /* Field by field. */
    static const char *const empty[] = { "PID-5", "PID-6", "PID-9", "PID-11.1", "PID-11.2",
                                         "PID-11.3", "PID-13", "PID-14", "NK1-2", "NK1-4",
                                         "NK1-5", "NTE-3" };
    for (size_t i = 0; i < sizeof empty / sizeof *empty; i++) {
        value_of(out, empty[i], &w);
        if (w.len) {
            print_error("%s holds '%s'\n", empty[i], w.p);
            fail();
        }
    }
    value_of(out, "PID-7.1", &w);
    assert_true(w.len <= 4);
    value_of(m0, "PID-7.1", &v);
    if (v.len >= 4)
        assert_memory_equal(w.p, v.p, 4);             /* the year is kept */
    value_of(out, "PID-11.5", &w);
    assert_null(strchr(w.p ? w.p : "", ' '));
    value_of(m0, "PID-11.5", &v);
    if (v.len) {
        assert_true(w.len >= 2 && w.len <= 4);          /* the district: E1, SE5, WC1E */
        assert_memory_equal(w.p, v.p, w.len);
    }
    struct hl7_span nhs;
    if (hl7_nhs_number(m0, &nhs)) {
        struct hl7_span pn;
        assert_true(hl7_nhs_number(out, &pn));           /* still marked NHS */
        char got[80];
        snprintf(got, sizeof got, "%.*s", (int)pn.len, pn.p);
        assert_true(is_hex64(got));
        char num[16];
        snprintf(num, sizeof num, "%.*s", (int)nhs.len, nhs.p);
        gone(b1.p, num, "the NHS number");
    }
    value_of(out, "ZDP-1", &w);
    assert_string_equal(w.p, "research-v1");
    hl7_free(m0);
    hl7_free(m1);
    hl7_free(m2);
    hl7_free(out);
    buf_free(&b1);
    buf_free(&b2);
    buf_free(&v);
    buf_free(&w);
}

static void test_depersonalise_every_sample(void **state)
{
    (void)state;
    struct route_transforms *t = compile("depersonalise");
    glob_t g;
    assert_int_equal(glob(SAMPLES "/*.hl7", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 10);
    size_t checked = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *name = strrchr(g.gl_pathv[i], '/') + 1;
        size_t len;
        char *raw = load_sample(name, &len);
        struct hl7_batch b = { 0 };
        assert_int_equal(hl7_batch_split(raw, len, &b, NULL), 0);
        for (size_t k = 0; k < b.count; k++, checked++)
            check_depersonalised(t, b.msgs[k].p, b.msgs[k].len);
        hl7_batch_free(&b);
        free(raw);
    }
    assert_true(checked >= 12);
    globfree(&g);
    route_transforms_free(t);
}

static void test_depersonalise_values(void **state)
{
    (void)state;
    /* The pseudonym is the HMAC of the value, as pseudonymise makes it. */
    struct route_transforms *a = compile("depersonalise"), *b = compile("pseudonymise");
    struct sample s1, s2;
    struct buf o1 = { 0 }, o2 = { 0 }, v1 = { 0 }, v2 = { 0 };
    struct route_error err;
    sample_open(&s1, "adt_a01.hl7");
    sample_open(&s2, "adt_a01.hl7");
    assert_int_equal(route_transforms_apply(a, s1.msg, &o1, &err), 0);
    assert_int_equal(route_transforms_apply(b, s2.msg, &o2, &err), 0);
    value_of(s1.msg, "PID-3[1].1", &v1);
    value_of(s2.msg, "PID-3[1].1", &v2);
    assert_string_equal(v1.p, v2.p);
    value_of(s1.msg, "PID-11", &v1);
    assert_string_equal(v1.p, "^^^^E1^GBR^H");
    value_of(s1.msg, "PID-7", &v1);
    assert_string_equal(v1.p, "1970");
    assert_non_null(strstr(o1.p, "\rZDP|research-v1|HMAC-SHA-256\r"));
    sample_close(&s1);
    sample_close(&s2);
    /* A postcode without its space, and one already a district. */
    text_open(&s1, "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.4\r"
                   "PID|1||9990000018^^^NHS^NH||X^Y||1970|M|||1 A ST^^L^^E16AN~^^^^SW1\r");
    buf_reset(&o1);
    assert_int_equal(route_transforms_apply(a, s1.msg, &o1, &err), 0);
    value_of(s1.msg, "PID-11", &v1);
    assert_string_equal(v1.p, "^^^^E1~^^^^SW1");
    sample_close(&s1);
    buf_free(&o1);
    buf_free(&o2);
    buf_free(&v1);
    buf_free(&v2);
    route_transforms_free(a);
    route_transforms_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_transforms),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_delete_segment),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_pseudonymise),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_json_utf8),
        cmocka_unit_test(test_depersonalise_every_sample),
        cmocka_unit_test(test_depersonalise_values),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_good_configs_compile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
