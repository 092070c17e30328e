/*
 * fuzz_route_expr.c: libFuzzer target for filter expressions. The input
 * is an expression's text (up to its first NUL, as a config string would
 * be). Checks: a compile error names a column within the text (or just
 * past its end) and reads "column N: TEXT"; a compiled expression
 * evaluates on fixed messages without failing, gives the same answer with
 * and without a reason asked for, and leaves a reason exactly when false;
 * the same on a fixed ITK envelope (metadata paths, two addresses).
 */
#include "fuzz.h"

#include "itk.h"
#include "route.h"

/* `make fuzz` links the codec sources only (FUZZ_LIB_SRC in the Makefile):
 * the expression compiler and the tables come in with this target. The
 * replay build links the library, whose copies are then not pulled in. */
#include "../../routes/expr.c"
#include "../../routes/tables.c"

static const char *const messages[] = {
    "MSH|^~\\&|PAS|RLH|LCR|ONELONDON|20261121093015||ADT^A01^ADT_A01|RLH000000123|P|2.4|||AL|NE\r"
    "EVN|A01|20261121093000\r"
    "PID|1||9990000018^^^NHS^NH~RLH1234567^^^RLH^MR||SMITH^JOHN^ALEXANDER^^MR||19700101|M\r"
    "PV1|1|I|RLH-W12^B04^1^RLH\r"
    "OBX|1|NM|HB^Haemoglobin||118|g/L\rOBX|2|TX|NOTE||caf\\XC3A9\\ \\T\\ \\F\\||\"\"\r",
    "MSH*%$@!*GPSYS*H85026*LCR*ONELONDON*20261121120000**ADT%A28%ADT_A05*H85026-19*P*2.5\r"
    "PID*1**9990000107%%%NHS%NH$H8-0042%%%H85026%MR**EVANS@T@%GARETH**19480229*M\r",
};

static struct hl7_msg *msgs[sizeof messages / sizeof *messages];

/* An ITK envelope as itk_parse would give it (built by hand: this target
 * does not link libxml2). */
static char *addresses[] = { (char *)"urn:nhs-uk:addressing:ods:F84003",
                             (char *)"https://care.example.org/itk" };
static char *address_ods[] = { (char *)"F84003", NULL };
static struct itk_payload payload = { .id = (char *)"uuid_1", .mimetype = (char *)"text/xml",
                                      .nhs_number = (char *)"9990000018" };
static const struct itk_envelope env = {
    .service = (char *)"urn:nhs-itk:services:201005:SendCDADocument-v2-0",
    .tracking_id = (char *)"7D5B2A90-1C44-4F7B-8D3E-222222222222",
    .sender = (char *)"urn:nhs-uk:addressing:ods:R1H", .sender_ods = (char *)"R1H",
    .addresses = addresses, .address_ods = address_ods, .n_addresses = 2,
    .profile = (char *)"urn:nhs-en:profile:eDischargeInpatientDischargeSummaryDocument-v1-0",
    .payloads = &payload, .n_payloads = 1,
};
static struct route_tables tables;
static struct table site_codes = { .name = (char *)"site-codes" };

static void setup(void)
{
    for (size_t i = 0; i < sizeof messages / sizeof *messages; i++)
        CHECK(hl7_parse(messages[i], strlen(messages[i]), NULL, &msgs[i], NULL) == 0);
    static const char csv[] = "key,value\nRLH,Royal London\nRLH-W12,Ward 12\nA01,admit\n";
    CHECK(table_parse(&site_codes, csv, sizeof csv - 1, false, "site-codes.csv",
                      "site-codes", NULL) == 0);
    tables.t = &site_codes;
    tables.n = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    char *text = malloc(size + 1);
    CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    size_t len = strlen(text);

    struct route_expr *e = (struct route_expr *)text;   /* must be set */
    struct route_error err;
    memset(&err, 0x55, sizeof err);
    int rc = route_expr_compile(text, &tables, &e, &err);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(e == NULL);
        CHECK(err.column >= 1 && err.column <= len + 1);
        CHECK(memchr(err.text, '\0', sizeof err.text) != NULL);
        CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
        CHECK(err.text[0] != '\0');
        char want[sizeof err.msg];
        snprintf(want, sizeof want, "column %u: %s", err.column, err.text);
        CHECK(strcmp(want, err.msg) == 0);
        free(text);
        return 0;
    }
    CHECK(e != NULL);
    for (size_t i = 0; i < sizeof msgs / sizeof *msgs; i++) {
        struct buf why = {0};
        bool r = route_expr_eval(e, msgs[i], &why);
        CHECK(route_expr_eval(e, msgs[i], NULL) == r);
        CHECK(r ? why.len == 0 : why.len > 0);
        buf_free(&why);
    }
    struct buf why = {0};
    bool r = route_expr_eval_itk(e, &env, &why);
    CHECK(route_expr_eval_itk(e, &env, NULL) == r);
    CHECK(r ? why.len == 0 : why.len > 0);
    buf_free(&why);
    route_expr_free(e);
    free(text);
    return 0;
}
