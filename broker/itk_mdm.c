/*
 * itk_mdm.c: discharge letters between ITK and HL7 v2: an ITK envelope's
 * document as an MDM^T02 (patient and document details read from the CDA),
 * and an MDM^T02/T04's ED observation as an ITK envelope. The document
 * bytes travel base64 both ways and come out exactly as they went in.
 */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <libxml/tree.h>
#include <openssl/evp.h>

#include "buf.h"
#include "hl7.h"
#include "itk.h"
#include "itk_int.h"

#define CDA_NS       "urn:hl7-org:v3"
#define SNOMED_OID   "2.16.840.1.113883.2.1.3.2.4.15"
#define SNOMED_OID2  "2.16.840.1.113883.6.96"
#define IDENTITY_ODS "urn:nhs-uk:identity:ods:"

static int whyf(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int whyf(char *why, size_t whylen, const char *fmt, ...)
{
    if (why && whylen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- reading the CDA ------------------------------------------------------ */

/* What the MDM takes from a ClinicalDocument; every field a copy or NULL. */
struct cda_info {
    char *doc_root, *doc_ext;        /* ClinicalDocument/id */
    char *code, *display, *code_system;
    char *effective;                 /* effectiveTime/@value */
    char *nhs_number;
    char *family, *given, *middle, *prefix;
    char *birth;                     /* birthTime/@value */
    char *gender;                    /* administrativeGenderCode/@code */
};

static void cda_free(struct cda_info *c)
{
    char **f[] = { &c->doc_root, &c->doc_ext, &c->code, &c->display,
                   &c->code_system, &c->effective, &c->nhs_number, &c->family,
                   &c->given, &c->middle, &c->prefix, &c->birth, &c->gender };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
}

static bool cda_is(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, CDA_NS) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

static xmlNode *cda_child(const xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (cda_is(c, name))
            return c;
    return NULL;
}

static xmlNode *cda_next(xmlNode *c, const char *name)
{
    for (c = c ? c->next : NULL; c; c = c->next)
        if (cda_is(c, name))
            return c;
    return NULL;
}

/* A copy of an attribute or of an element's text, blanks trimmed; NULL
 * when absent or empty. *nomem set when a copy could not be made. */
static char *dup_trim(const xmlChar *v, bool *nomem)
{
    if (!v)
        return NULL;
    const char *s = (const char *)v;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    if (!n)
        return NULL;
    char *d = strndup(s, n);
    if (!d)
        *nomem = true;
    return d;
}

static char *cda_attr(const xmlNode *n, const char *name, bool *nomem)
{
    if (!n)
        return NULL;
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    char *d = dup_trim(v, nomem);
    xmlFree(v);
    return d;
}

static char *cda_text(const xmlNode *n, bool *nomem)
{
    if (!n)
        return NULL;
    xmlChar *v = xmlNodeGetContent(n);
    char *d = dup_trim(v, nomem);
    xmlFree(v);
    return d;
}

static bool xml_mime(const char *m)
{
    if (!m)
        return false;
    size_t n = strcspn(m, ";");
    return (n == 8 && strncasecmp(m, "text/xml", 8) == 0) ||
           (n == 15 && strncasecmp(m, "application/xml", 15) == 0) ||
           (n > 4 && strncasecmp(m + n - 4, "+xml", 4) == 0);
}

/* Read the CDA details of a payload. A payload that is not a
 * ClinicalDocument has none, which is not an error. Returns -1 only
 * when memory runs out. */
static int cda_read(const struct itk_payload *p, struct cda_info *c)
{
    if (!xml_mime(p->mimetype) || !p->len)
        return 0;
    xmlDocPtr doc;
    if (itk_xml_read((const char *)p->data, p->len, SIZE_MAX, 0, &doc, NULL))
        return 0;
    bool nomem = false;
    xmlNode *cd = xmlDocGetRootElement(doc);
    if (!cda_is(cd, "ClinicalDocument"))
        goto out;
    xmlNode *id = cda_child(cd, "id");
    c->doc_root = cda_attr(id, "root", &nomem);
    c->doc_ext = cda_attr(id, "extension", &nomem);
    xmlNode *code = cda_child(cd, "code");
    c->code = cda_attr(code, "code", &nomem);
    c->display = cda_attr(code, "displayName", &nomem);
    c->code_system = cda_attr(code, "codeSystem", &nomem);
    c->effective = cda_attr(cda_child(cd, "effectiveTime"), "value", &nomem);
    xmlNode *pr = cda_child(cda_child(cd, "recordTarget"), "patientRole");
    for (xmlNode *i = cda_child(pr, "id"); i && !c->nhs_number; i = cda_next(i, "id")) {
        char *root = cda_attr(i, "root", &nomem);
        if (root && strcmp(root, ITK_NHS_NUMBER_OID) == 0)
            c->nhs_number = cda_attr(i, "extension", &nomem);
        free(root);
    }
    xmlNode *pat = cda_child(pr, "patient");
    xmlNode *name = cda_child(pat, "name");
    c->family = cda_text(cda_child(name, "family"), &nomem);
    xmlNode *g = cda_child(name, "given");
    c->given = cda_text(g, &nomem);
    c->middle = cda_text(cda_next(g, "given"), &nomem);
    c->prefix = cda_text(cda_child(name, "prefix"), &nomem);
    c->birth = cda_attr(cda_child(pat, "birthTime"), "value", &nomem);
    c->gender = cda_attr(cda_child(pat, "administrativeGenderCode"), "code", &nomem);
out:
    xmlFreeDoc(doc);
    return nomem ? -1 : 0;
}

/* HL7 v2 table 0001 from the NHS sex code (0, 1, 2, 9) or HL7 v3's. */
static const char *sex_of(const char *g)
{
    if (!g)
        return NULL;
    if (strcmp(g, "1") == 0 || strcasecmp(g, "M") == 0)
        return "M";
    if (strcmp(g, "2") == 0 || strcasecmp(g, "F") == 0)
        return "F";
    return "U";
}

/* ---- ITK to MDM ------------------------------------------------------------ */

/* One escaped value; NULL writes nothing. */
static int put(struct buf *b, const char *v)
{
    return v ? hl7_escape(&hl7_default_delims, v, strlen(v), b) : 0;
}

static int base64_append(struct buf *b, const unsigned char *data, size_t len)
{
    if (len / 3 >= (SIZE_MAX - 8) / 4 || buf_reserve(b, (len + 2) / 3 * 4 + 1))
        return -1;
    /* In chunks, since EVP_EncodeBlock takes an int length. */
    const size_t chunk = 3u << 20;
    for (size_t i = 0; i < len; i += chunk) {
        size_t n = len - i < chunk ? len - i : chunk;
        int k = EVP_EncodeBlock((unsigned char *)b->p + b->len, data + i, (int)n);
        b->len += (size_t)k;
    }
    b->p[b->len] = '\0';
    return 0;
}

int itk_to_mdm(const struct itk_envelope *env, const struct itk_mdm_opts *opts,
               struct buf *out, char *why, size_t whylen)
{
    if (!env || !env->n_payloads)
        return whyf(why, whylen, "the ITK envelope has no payload to carry");
    const struct itk_payload *p = &env->payloads[0];
    const char *app = opts && opts->sending_app ? opts->sending_app : "HL7BROKER";
    const char *rapp = opts && opts->receiving_app ? opts->receiving_app : "";
    const char *to = NULL;
    for (size_t i = 0; i < env->n_addresses && !to; i++)
        to = env->address_ods[i];

    struct cda_info c = {0};
    if (cda_read(p, &c))
        return whyf(why, whylen, "out of memory reading the CDA document");

    char now[16];
    const char *when = c.effective;
    if (!when) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(now, sizeof now, "%Y%m%d%H%M%S", &tm);
        when = now;
    }
    /* The ED's type and subtype from the mime type, parameters dropped. */
    const char *mime = p->mimetype ? p->mimetype : "application/octet-stream";
    size_t mlen = strcspn(mime, ";");
    size_t slash = strcspn(mime, "/");
    char *type = strndup(mime, slash < mlen ? slash : mlen);
    char *subtype = strndup(slash < mlen ? mime + slash + 1 : "",
                            slash < mlen ? mlen - slash - 1 : 0);
    const char *nhs = c.nhs_number ? c.nhs_number : p->nhs_number;
    const char *csys = c.code_system && (strcmp(c.code_system, SNOMED_OID) == 0 ||
                                         strcmp(c.code_system, SNOMED_OID2) == 0)
                           ? "SCT" : c.code_system;
    size_t mark = out->len;
    int rc = !type || !subtype;
#define P(x) (rc = rc || (x))
    P(buf_puts(out, "MSH|^~\\&|"));
    P(put(out, app));
    P(buf_putc(out, '|'));
    P(put(out, env->sender_ods));
    P(buf_putc(out, '|'));
    P(put(out, rapp));
    P(buf_putc(out, '|'));
    P(put(out, to));
    P(buf_putc(out, '|'));
    P(put(out, when));
    P(buf_puts(out, "||MDM^T02^MDM_T02|"));
    P(put(out, env->tracking_id));
    P(buf_puts(out, "|P|2.4\rEVN|T02|"));
    P(put(out, when));
    P(buf_puts(out, "\rPID|1||"));
    if (nhs) {
        P(put(out, nhs));
        P(buf_puts(out, "^^^NHS^NH"));
    }
    P(buf_puts(out, "||"));
    if (c.family || c.given || c.middle || c.prefix) {
        P(put(out, c.family));
        P(buf_putc(out, '^'));
        P(put(out, c.given));
        P(buf_putc(out, '^'));
        P(put(out, c.middle));
        if (c.prefix) {
            P(buf_puts(out, "^^"));
            P(put(out, c.prefix));
        }
    }
    P(buf_puts(out, "||"));
    P(put(out, c.birth));
    P(buf_putc(out, '|'));
    P(put(out, sex_of(c.gender)));
    P(buf_puts(out, "\rPV1|1|U\rTXA|1|"));
    if (c.code || c.display) {
        P(put(out, c.code));
        P(buf_putc(out, '^'));
        P(put(out, c.display));
    }
    P(buf_puts(out, "|AP|"));
    P(put(out, when));
    P(buf_puts(out, "||||||||"));
    /* TXA-12, an EI: the id's extension within its root, or the root. */
    if (c.doc_ext) {
        P(put(out, c.doc_ext));
        P(buf_puts(out, "^^"));
        P(put(out, c.doc_root));
        if (c.doc_root)
            P(buf_puts(out, "^ISO"));
    } else {
        P(put(out, c.doc_root));
    }
    P(buf_puts(out, "|||||AU\rOBX|1|ED|"));
    if (c.code || c.display) {
        P(put(out, c.code));
        P(buf_putc(out, '^'));
        P(put(out, c.display));
        if (csys) {
            P(buf_putc(out, '^'));
            P(put(out, csys));
        }
    }
    P(buf_puts(out, "||^"));
    P(put(out, type));
    P(buf_putc(out, '^'));
    P(put(out, subtype));
    P(buf_puts(out, "^Base64^"));
    P(base64_append(out, p->data, p->len));
    P(buf_puts(out, "||||||F\r"));
#undef P
    free(type);
    free(subtype);
    cda_free(&c);
    if (rc) {
        out->len = mark;
        if (out->p)
            out->p[mark] = '\0';
        return whyf(why, whylen, "out of memory building the MDM message");
    }
    return 0;
}

/* ---- MDM to ITK ------------------------------------------------------------ */

static bool span_is(const struct hl7_span *s, const char *v)
{
    return s->len == strlen(v) && memcmp(s->p, v, s->len) == 0;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64: a multiple of 4 characters, '=' only as the last one or
 * two, no other byte (line breaks have no place in an HL7 field). */
static int b64_decode(const char *s, size_t n, struct buf *out, char *why,
                      size_t whylen, unsigned obx)
{
    if (n == 0)
        return whyf(why, whylen, "OBX[%u]-5.5: the Base64 data is empty", obx);
    if (n % 4)
        return whyf(why, whylen, "OBX[%u]-5.5: Base64 length %zu is not a "
                    "multiple of 4", obx, n);
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    if (buf_reserve(out, n / 4 * 3))
        return whyf(why, whylen, "out of memory decoding OBX[%u]-5.5", obx);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (size_t j = 0; j < 4; j++) {
            size_t at = i + j;
            v[j] = at >= n - pad ? 0 : b64_val((unsigned char)s[at]);
            if (v[j] < 0)
                return whyf(why, whylen, "OBX[%u]-5.5: byte %zu of the Base64 "
                            "data (0x%02X) is not a Base64 character", obx,
                            at + 1, (unsigned char)s[at]);
        }
        unsigned long w = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                          (unsigned long)v[2] << 6 | (unsigned long)v[3];
        size_t k = i + 4 == n ? 3 - pad : 3;
        unsigned char t[3] = { (unsigned char)(w >> 16), (unsigned char)(w >> 8),
                               (unsigned char)w };
        /* Non-canonical padding (bits left over) is refused: such text is
         * not what any encoder writes, and two texts would give one file. */
        if (i + 4 == n && ((pad == 1 && (v[2] & 0x3)) || (pad == 2 && (v[1] & 0xf))))
            return whyf(why, whylen, "OBX[%u]-5.5: the last Base64 group has "
                        "bits set after the data", obx);
        buf_append(out, t, k);   /* reserved above */
    }
    return 0;
}

static const char *mime_type_of(const char *t)
{
    static const struct { const char *hl7, *mime; } map[] = {
        { "AP", "application" }, { "TEXT", "text" }, { "TX", "text" },
        { "IM", "image" }, { "AU", "audio" }, { "MULTIPART", "multipart" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(t, map[i].hl7) == 0)
            return map[i].mime;
    return NULL;
}

int mdm_to_itk(const struct hl7_msg *m, const struct mdm_itk_opts *opts,
               struct buf *out, char *why, size_t whylen)
{
    struct hl7_span s9, s9b, sp;
    hl7_get_str(m, "MSH-9.1", &s9);
    hl7_get_str(m, "MSH-9.2", &s9b);
    if (!span_is(&s9, "MDM") || !(span_is(&s9b, "T02") || span_is(&s9b, "T04")))
        return whyf(why, whylen, "not an MDM^T02 or MDM^T04 message (MSH-9 is "
                    "%.*s^%.*s)", (int)(s9.len > 20 ? 20 : s9.len), s9.p,
                    (int)(s9b.len > 20 ? 20 : s9b.len), s9b.p);
    if (!opts || !opts->sender_ods || !*opts->sender_ods)
        return whyf(why, whylen, "no sender ODS code configured for the ITK "
                    "envelope (broker.ods_code)");

    int rc = -1;
    struct buf addr = {0}, sender = {0}, audit = {0}, key = {0}, data = {0},
               raw = {0}, type = {0}, sub = {0}, mime = {0}, pid = {0};
    bool nomem = false;

    /* The address: configured (URI or ODS code), else MSH-6.1. */
    if (opts->address && *opts->address) {
        nomem = strchr(opts->address, ':')
                    ? buf_puts(&addr, opts->address)
                    : buf_printf(&addr, ITK_ODS_PREFIX "%s", opts->address);
    } else {
        struct hl7_path path;
        if (hl7_path_parse("MSH-6.1", 7, &path, NULL) == 0 &&
            hl7_get_decoded(m, &path, &raw) == HL7_VALUE && raw.len) {
            nomem = buf_printf(&addr, ITK_ODS_PREFIX "%s", raw.p);
        } else {
            whyf(why, whylen, "no address: MSH-6 (receiving facility) is empty "
                 "and no address is configured");
            goto out;
        }
        buf_reset(&raw);
    }
    nomem = nomem || buf_printf(&sender, ITK_ODS_PREFIX "%s", opts->sender_ods) ||
            buf_printf(&audit, IDENTITY_ODS "%s", opts->sender_ods);

    /* The first OBX of type ED. */
    size_t n_obx = hl7_segment_count(m, "OBX");
    unsigned found = 0;
    for (size_t i = 1; i <= n_obx && !found; i++) {
        char p[32];
        snprintf(p, sizeof p, "OBX[%zu]-2", i);
        if (hl7_get_str(m, p, &sp) == HL7_VALUE && span_is(&sp, "ED"))
            found = (unsigned)i;
    }
    if (!found) {
        if (n_obx)
            whyf(why, whylen, "no OBX of value type ED (OBX-2) among the %zu "
                 "OBX segments: no document to carry", n_obx);
        else
            whyf(why, whylen, "no OBX segment: no document to carry");
        goto out;
    }
    struct hl7_path path = { .seg = "OBX", .seg_seq = found, .field = 5 };
    path.comp = 2;
    hl7_get_decoded(m, &path, &type);
    path.comp = 3;
    hl7_get_decoded(m, &path, &sub);
    path.comp = 4;
    struct buf enc = {0};
    hl7_get_decoded(m, &path, &enc);
    path.comp = 5;
    enum hl7_presence pr = hl7_get_decoded(m, &path, &raw);
    if (nomem) {
        buf_free(&enc);
        whyf(why, whylen, "out of memory");
        goto out;
    }
    const char *e = enc.p ? enc.p : "";
    if (strcasecmp(e, "Base64") == 0) {
        if (b64_decode(raw.p ? raw.p : "", pr == HL7_VALUE ? raw.len : 0, &data,
                       why, whylen, found)) {
            buf_free(&enc);
            goto out;
        }
    } else if (strcasecmp(e, "A") == 0) {
        if (buf_append(&data, raw.p ? raw.p : "", raw.len)) {
            buf_free(&enc);
            whyf(why, whylen, "out of memory");
            goto out;
        }
    } else {
        whyf(why, whylen, "OBX[%u]-5.4: encoding '%.20s' is not Base64 or A",
             found, e);
        buf_free(&enc);
        goto out;
    }
    buf_free(&enc);

    /* The mime type: OBX-5.2/5.3 (HL7 table 0191 names mapped). */
    const char *t = type.len ? type.p : "application";
    const char *mt = mime_type_of(t);
    if (buf_puts(&mime, mt ? mt : t) || buf_putc(&mime, '/') ||
        buf_puts(&mime, sub.len ? sub.p : "octet-stream")) {
        whyf(why, whylen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < mime.len; i++)
        mime.p[i] = (char)tolower((unsigned char)mime.p[i]);

    /* A resend (same MSH-3, MSH-4, MSH-10) gets the same tracking id and
     * payload id, so the receiver can tell it is the same letter. */
    struct hl7_span a3, a4, a10;
    hl7_get_str(m, "MSH-3", &a3);
    hl7_get_str(m, "MSH-4", &a4);
    hl7_get_str(m, "MSH-10", &a10);
    if (buf_append(&key, a3.p, a3.len) || buf_putc(&key, '\n') ||
        buf_append(&key, a4.p, a4.len) || buf_putc(&key, '\n') ||
        buf_append(&key, a10.p, a10.len)) {
        whyf(why, whylen, "out of memory");
        goto out;
    }
    char track[37], pu[37];
    itk_uuid_from(key.p, key.len, track);
    if (buf_puts(&key, "\npayload")) {
        whyf(why, whylen, "out of memory");
        goto out;
    }
    itk_uuid_from(key.p, key.len, pu);
    if (buf_printf(&pid, "uuid_%s", pu) || nomem) {
        whyf(why, whylen, "out of memory");
        goto out;
    }

    const char *addresses[1] = { addr.p };
    struct itk_out_payload pl = {
        .id = pid.p,
        .mimetype = mime.p,
        .profile_id = opts->profile_id,
        .base64 = true,
        .data = (const unsigned char *)(data.p ? data.p : ""),
        .len = data.len,
    };
    struct itk_out_envelope oe = {
        .service = opts->service ? opts->service : ITK_SERVICE_CDA,
        .tracking_id = track,
        .addresses = addresses,
        .n_addresses = 1,
        .audit_identity = audit.p,
        .sender = sender.p,
        .interaction = opts->interaction,
        .infack_requested = opts->infack_requested,
        .ack_requested = opts->ack_requested,
        .payloads = &pl,
        .n_payloads = 1,
    };
    if (itk_build_envelope(out, &oe)) {
        whyf(why, whylen, "out of memory building the ITK envelope");
        goto out;
    }
    rc = 0;
out:
    buf_free(&addr);
    buf_free(&sender);
    buf_free(&audit);
    buf_free(&key);
    buf_free(&data);
    buf_free(&raw);
    buf_free(&type);
    buf_free(&sub);
    buf_free(&mime);
    buf_free(&pid);
    return rc;
}
