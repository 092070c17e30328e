/*
 * itk_soap.c: builds what the broker says in ITK 2 (SOAP answers and
 * faults, DistributionEnvelopes, SOAP requests, infrastructure acks) and
 * reads what ITK peers answer, with the parser's hardened XML settings.
 *
 * Output is written by hand through xml_text/xml_attr rather than with
 * xmlTextWriter: the writer passes control bytes and broken UTF-8
 * through, which would make the document not well-formed. Here every
 * value is escaped, and what XML 1.0 cannot carry at all becomes U+FFFD.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libxml/tree.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "buf.h"
#include "itk.h"
#include "itk_int.h"

#define WSA_FAULT_ACTION "http://www.w3.org/2005/08/addressing/soap/fault"
#define ITK_IDENTITY_ODS "urn:nhs-uk:identity:ods:"
#define ITK_SPEC         "urn:nhs-itk:ns:201005:"
#define XML_DECL         "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define REPLACEMENT      "\xEF\xBF\xBD"

/* ---- UUIDs ------------------------------------------------------------ */

static void uuid_format(unsigned char b[16], unsigned version, char out[37])
{
    static const char hex[] = "0123456789ABCDEF";
    b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    size_t k = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[b[i] >> 4];
        out[k++] = hex[b[i] & 0x0f];
    }
    out[k] = '\0';
}

void itk_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1 &&
        getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* Neither source answered: still unique in this process (counter,
         * time, pid), which is what a message id needs. */
        static _Atomic unsigned long counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long n = ++counter;
        pid_t pid = getpid();
        unsigned char seed[sizeof ts + sizeof n + sizeof pid];
        memcpy(seed, &ts, sizeof ts);
        memcpy(seed + sizeof ts, &n, sizeof n);
        memcpy(seed + sizeof ts + sizeof n, &pid, sizeof pid);
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256(seed, sizeof seed, md);
        memcpy(b, md, sizeof b);
    }
    uuid_format(b, 4, out);
}

void itk_uuid_from(const void *data, size_t len, char out[37])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    uuid_format(md, 5, out);
}

/* ---- escaping ----------------------------------------------------------- */

/* Length of the valid UTF-8 sequence for a character XML 1.0 allows at
 * p (n bytes left), or 0 when the bytes there are not one. */
static size_t utf8_ok(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t k;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { k = 2; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { k = 3; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 4; cp = c & 0x07; }
    else return 0;
    if (n < k)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;                               /* overlong, too big */
    if ((cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
        return 0;                               /* not XML characters */
    return k;
}

/* Append s[0..n) escaped for text (attr false) or a double- or
 * single-quoted attribute (attr true). Tab, LF and CR are kept as
 * character references in attributes (attribute normalisation would turn
 * them into spaces otherwise); other control bytes and invalid UTF-8,
 * which XML 1.0 cannot carry, become U+FFFD. */
static int xml_esc(struct buf *b, const char *s, size_t n, bool attr)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0, i = 0;
    while (i < n) {
        const char *rep = NULL;
        size_t step = 1;
        switch (p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        case '\t': rep = attr ? "&#9;" : NULL; break;
        case '\n': rep = attr ? "&#10;" : NULL; break;
        case '\r': rep = "&#13;"; break;   /* else read back as LF */
        default:
            if (p[i] < 0x20) {
                rep = REPLACEMENT;
            } else if (p[i] >= 0x80) {
                step = utf8_ok(p + i, n - i);
                if (!step) {
                    rep = REPLACEMENT;
                    step = 1;
                }
            }
        }
        if (!rep) {
            i += step;
            continue;
        }
        if (buf_append(b, s + run, i - run) || buf_puts(b, rep))
            return -1;
        i += step;
        run = i;
    }
    return buf_append(b, s + run, n - run);
}

static int text(struct buf *b, const char *s)
{
    return s ? xml_esc(b, s, strlen(s), false) : 0;
}

/* name="value" with a leading space; nothing when value is NULL. */
static int attr_kv(struct buf *b, const char *name, const char *value)
{
    if (!value)
        return 0;
    return buf_printf(b, " %s=\"", name) ||
           xml_esc(b, value, strlen(value), true) || buf_putc(b, '"');
}

/* <tag>value</tag>, the value escaped. */
static int el_text(struct buf *b, const char *tag, const char *value)
{
    return buf_printf(b, "<%s>", tag) || text(b, value) ||
           buf_printf(b, "</%s>", tag);
}

/* A leading XML declaration (and BOM and blanks around it), skipped so
 * a document can be placed inside another. */
static const char *skip_decl(const char *p, size_t *len)
{
    const char *end = p + *len;
    if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    const char *q = p;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
        q++;
    if (end - q >= 5 && memcmp(q, "<?xml", 5) == 0 &&
        (end - q == 5 || q[5] == ' ' || q[5] == '\t' || q[5] == '\r' ||
         q[5] == '\n' || q[5] == '?')) {
        const char *close = memmem(q, (size_t)(end - q), "?>", 2);
        if (close) {
            p = close + 2;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' ||
                               *p == '\n'))
                p++;
        }
    }
    *len = (size_t)(end - p);
    return p;
}

/* ---- SOAP answers -------------------------------------------------------- */

static int soap_open(struct buf *b)
{
    return buf_puts(b, XML_DECL
                    "<soap:Envelope xmlns:soap=\"" ITK_SOAP_NS "\""
                    " xmlns:wsa=\"" ITK_WSA_NS "\""
                    " xmlns:itk=\"" ITK_NS "\">\n");
}

static int message_id(struct buf *b)
{
    char u[37];
    itk_uuid(u);
    return buf_printf(b, "<wsa:MessageID>uuid:%s</wsa:MessageID>\n", u);
}

int itk_soap_ok(struct buf *out, const struct itk_envelope *req)
{
    size_t mark = out->len;
    int rc = soap_open(out) || buf_puts(out, "<soap:Header>\n") ||
             message_id(out);
    if (!rc && req && req->service)
        rc = buf_puts(out, "<wsa:Action>") || text(out, req->service) ||
             buf_puts(out, "Response</wsa:Action>\n");
    if (!rc && req && req->message_id)
        rc = el_text(out, "wsa:RelatesTo", req->message_id) ||
             buf_putc(out, '\n');
    if (!rc)
        rc = buf_puts(out, "</soap:Header>\n<soap:Body>\n"
                      "<itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse>\n"
                      "</soap:Body>\n</soap:Envelope>\n");
    if (rc) {
        out->len = mark;
        return -1;
    }
    return 0;
}

int itk_soap_fault(struct buf *out, const char *itk_code, const char *text_,
                   const char *relates_to)
{
    size_t mark = out->len;
    const char *code = itk_code && *itk_code ? itk_code : "9999";
    const char *why = text_ && *text_ ? text_ : "the request was not taken";
    char eid[37];
    itk_uuid(eid);
    int rc = soap_open(out) || buf_puts(out, "<soap:Header>\n") ||
             message_id(out) ||
             buf_puts(out, "<wsa:Action>" WSA_FAULT_ACTION "</wsa:Action>\n");
    if (!rc && relates_to)
        rc = el_text(out, "wsa:RelatesTo", relates_to) || buf_putc(out, '\n');
    if (!rc)
        rc = buf_printf(out, "</soap:Header>\n<soap:Body>\n<soap:Fault>\n"
                        "<faultcode>soap:%s</faultcode>\n",
                        code[0] == '9' ? "Server" : "Client") ||
             el_text(out, "faultstring", why) ||
             buf_printf(out, "\n<detail>\n<itk:ToolkitErrorInfo>\n"
                        "<itk:ErrorID>%s</itk:ErrorID>\n"
                        "<itk:ErrorCode codeSystem=\"" ITK_ERROR_CODE_OID "\">",
                        eid) ||
             text(out, code) || buf_puts(out, "</itk:ErrorCode>\n") ||
             el_text(out, "itk:ErrorText", why) || buf_putc(out, '\n') ||
             el_text(out, "itk:ErrorDiagnosticText", why) ||
             buf_puts(out, "\n</itk:ToolkitErrorInfo>\n</detail>\n"
                      "</soap:Fault>\n</soap:Body>\n</soap:Envelope>\n");
    if (rc) {
        out->len = mark;
        return -1;
    }
    return 0;
}

/* ---- DistributionEnvelope ------------------------------------------------ */

static int base64_out(struct buf *b, const unsigned char *data, size_t len)
{
    /* 57 input bytes a line: 76 characters, as MIME writes base64. */
    unsigned char line[80];
    for (size_t i = 0; i < len; i += 57) {
        size_t n = len - i < 57 ? len - i : 57;
        int k = EVP_EncodeBlock(line, data + i, (int)n);
        if (buf_append(b, line, (size_t)k) ||
            (i + n < len && buf_putc(b, '\n')))
            return -1;
    }
    return 0;
}

static int spec(struct buf *b, const char *key, const char *value)
{
    return buf_puts(b, "<itk:spec") || attr_kv(b, "key", key) ||
           attr_kv(b, "value", value) || buf_puts(b, "/>\n");
}

/* The DistributionEnvelope element, declaring the itk namespace. */
static int build_de(struct buf *b, const struct itk_out_envelope *e)
{
    char track[37];
    const char *tracking = e->tracking_id;
    if (!tracking) {
        itk_uuid(track);
        tracking = track;
    }
    /* One id per payload, the same in the manifest and the payload. */
    char (*ids)[42] = calloc(e->n_payloads ? e->n_payloads : 1, sizeof *ids);
    if (!ids)
        return -1;
    for (size_t i = 0; i < e->n_payloads; i++)
        if (!e->payloads[i].id) {
            char u[37];
            itk_uuid(u);
            snprintf(ids[i], sizeof ids[i], "uuid_%s", u);
        }
#define ID(i) (e->payloads[i].id ? e->payloads[i].id : ids[i])
    int rc = buf_puts(b, "<itk:DistributionEnvelope xmlns:itk=\"" ITK_NS "\">\n"
                      "<itk:header") ||
             attr_kv(b, "service", e->service ? e->service : "") ||
             attr_kv(b, "trackingid", tracking) || buf_puts(b, ">\n");
    if (!rc && e->n_addresses) {
        rc = buf_puts(b, "<itk:addresslist>\n");
        for (size_t i = 0; !rc && i < e->n_addresses; i++)
            rc = buf_puts(b, "<itk:address") ||
                 attr_kv(b, "uri", e->addresses[i] ? e->addresses[i] : "") ||
                 buf_puts(b, "/>\n");
        rc = rc || buf_puts(b, "</itk:addresslist>\n");
    }
    if (!rc && e->audit_identity)
        rc = buf_puts(b, "<itk:auditIdentity>\n<itk:id") ||
             attr_kv(b, "uri", e->audit_identity) ||
             buf_puts(b, "/>\n</itk:auditIdentity>\n");
    rc = rc || buf_printf(b, "<itk:manifest count=\"%zu\">\n", e->n_payloads);
    for (size_t i = 0; !rc && i < e->n_payloads; i++) {
        const struct itk_out_payload *p = &e->payloads[i];
        rc = buf_puts(b, "<itk:manifestitem") || attr_kv(b, "id", ID(i)) ||
             attr_kv(b, "mimetype", p->mimetype ? p->mimetype : "") ||
             attr_kv(b, "profileid", p->profile_id) ||
             (p->base64 && buf_puts(b, " base64=\"true\"")) ||
             buf_puts(b, "/>\n");
    }
    rc = rc || buf_puts(b, "</itk:manifest>\n");
    if (!rc && e->sender)
        rc = buf_puts(b, "<itk:senderAddress") || attr_kv(b, "uri", e->sender) ||
             buf_puts(b, "/>\n");
    if (!rc && (e->interaction || e->infack_requested || e->ack_requested)) {
        rc = buf_puts(b, "<itk:handlingSpecification>\n") ||
             (e->interaction && spec(b, ITK_SPEC "interaction", e->interaction)) ||
             (e->infack_requested && spec(b, ITK_SPEC "infackrequested", "true")) ||
             (e->ack_requested && spec(b, ITK_SPEC "ackrequested", "true")) ||
             buf_puts(b, "</itk:handlingSpecification>\n");
    }
    rc = rc || buf_printf(b, "</itk:header>\n<itk:payloads count=\"%zu\">\n",
                          e->n_payloads);
    for (size_t i = 0; !rc && i < e->n_payloads; i++) {
        const struct itk_out_payload *p = &e->payloads[i];
        rc = buf_puts(b, "<itk:payload") || attr_kv(b, "id", ID(i)) ||
             buf_puts(b, ">");
        if (rc)
            break;
        if (p->base64) {
            rc = base64_out(b, p->data, p->len);
        } else {
            size_t n = p->len;
            const char *x = p->data ? skip_decl((const char *)p->data, &n) : "";
            rc = buf_append(b, x, p->data ? n : 0);
        }
        rc = rc || buf_puts(b, "</itk:payload>\n");
    }
#undef ID
    rc = rc || buf_puts(b, "</itk:payloads>\n</itk:DistributionEnvelope>\n");
    free(ids);
    return rc ? -1 : 0;
}

int itk_build_envelope(struct buf *out, const struct itk_out_envelope *e)
{
    size_t mark = out->len;
    if (buf_puts(out, XML_DECL) || build_de(out, e)) {
        out->len = mark;
        return -1;
    }
    return 0;
}

int itk_soap_wrap(struct buf *out, const char *de, size_t de_len,
                  const char *message_id_, const char *action, const char *to,
                  const char *from)
{
    size_t mark = out->len;
    const char *body = skip_decl(de, &de_len);
    int rc = soap_open(out) || buf_puts(out, "<soap:Header>\n");
    if (!rc && message_id_)
        rc = el_text(out, "wsa:MessageID", message_id_) || buf_putc(out, '\n');
    else if (!rc)
        rc = message_id(out);
    rc = rc || el_text(out, "wsa:Action", action ? action : "") ||
         buf_putc(out, '\n');
    if (!rc && to)
        rc = el_text(out, "wsa:To", to) || buf_putc(out, '\n');
    if (!rc && from)
        rc = buf_puts(out, "<wsa:From>") || el_text(out, "wsa:Address", from) ||
             buf_puts(out, "</wsa:From>\n");
    rc = rc || buf_puts(out, "</soap:Header>\n<soap:Body>\n") ||
         buf_append(out, body, de_len) ||
         (de_len && body[de_len - 1] != '\n' && buf_putc(out, '\n')) ||
         buf_puts(out, "</soap:Body>\n</soap:Envelope>\n");
    if (rc) {
        out->len = mark;
        return -1;
    }
    return 0;
}

int itk_infack_build(struct buf *out, const struct itk_envelope *req,
                     const char *ods_code, bool ok, const char *err_code,
                     const char *err_text)
{
    size_t mark = out->len;
    if (!ods_code)
        ods_code = "";
    struct buf ir = {0}, de = {0}, uri = {0};
    char *sender = NULL, *identity = NULL;
    int rc = -1;

    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);

    if (buf_puts(&ir, "<itk:InfrastructureResponse xmlns:itk=\"" ITK_NS "\"") ||
        attr_kv(&ir, "timestamp", stamp) ||
        attr_kv(&ir, "serviceRef", req->service ? req->service : "") ||
        attr_kv(&ir, "trackingIdRef", req->tracking_id ? req->tracking_id : "") ||
        attr_kv(&ir, "result", ok ? "OK" : "Failure") ||
        buf_puts(&ir, ">\n<itk:reportingIdentity>\n<itk:id uri=\"" ITK_IDENTITY_ODS) ||
        xml_esc(&ir, ods_code, strlen(ods_code), true) ||
        buf_puts(&ir, "\"/>\n</itk:reportingIdentity>\n"))
        goto out;
    if (!ok) {
        char eid[37];
        itk_uuid(eid);
        const char *why = err_text && *err_text ? err_text : "the request failed";
        if (buf_printf(&ir, "<itk:errors>\n<itk:errorInfo>\n"
                       "<itk:ErrorID>%s</itk:ErrorID>\n"
                       "<itk:ErrorCode codeSystem=\"" ITK_ERROR_CODE_OID "\">",
                       eid) ||
            text(&ir, err_code && *err_code ? err_code : "9999") ||
            buf_puts(&ir, "</itk:ErrorCode>\n") ||
            el_text(&ir, "itk:ErrorText", why) ||
            buf_puts(&ir, "\n</itk:errorInfo>\n</itk:errors>\n"))
            goto out;
    }
    if (buf_puts(&ir, "</itk:InfrastructureResponse>"))
        goto out;

    if (buf_printf(&uri, ITK_ODS_PREFIX "%s", ods_code) ||
        !(sender = buf_take(&uri, NULL)) ||
        buf_printf(&uri, ITK_IDENTITY_ODS "%s", ods_code) ||
        !(identity = buf_take(&uri, NULL)))
        goto out;
    /* Stable: the ack of one request, produced again, is the same ack. */
    struct buf key = {0};
    char track[37];
    if (buf_printf(&key, "infack\n%s\n%s\n%s", req->tracking_id ? req->tracking_id : "",
                   ods_code, ok ? "OK" : "Failure")) {
        buf_free(&key);
        goto out;
    }
    itk_uuid_from(key.p, key.len, track);
    buf_free(&key);

    const char *to = req->sender;
    struct itk_out_payload pl = {
        .mimetype = "text/xml",
        .data = (const unsigned char *)ir.p,
        .len = ir.len,
    };
    struct itk_out_envelope e = {
        .service = ITK_SERVICE_INFACK,
        .tracking_id = track,
        .addresses = to ? &to : NULL,
        .n_addresses = to ? 1 : 0,
        .audit_identity = identity,
        .sender = sender,
        .payloads = &pl,
        .n_payloads = 1,
    };
    if (build_de(&de, &e) ||
        itk_soap_wrap(out, de.p, de.len, NULL, ITK_SERVICE_INFACK, to, sender))
        goto out;
    rc = 0;
out:
    if (rc)
        out->len = mark;
    buf_free(&ir);
    buf_free(&de);
    buf_free(&uri);
    free(sender);
    free(identity);
    return rc;
}

/* ---- responses ----------------------------------------------------------- */

static bool soap_is(const xmlNode *n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, ns) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

/* SOAP 1.1 Fault children (faultcode, detail...) are unqualified, but
 * some stacks qualify them: match the local name in no namespace or the
 * SOAP one. */
static bool fault_part(const xmlNode *n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE &&
           strcmp((const char *)n->name, name) == 0 &&
           (!n->ns || soap_is(n, ITK_SOAP_NS, name));
}

static xmlNode *soap_child(const xmlNode *n, const char *ns, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (ns ? soap_is(c, ns, name) : fault_part(c, name))
            return c;
    return NULL;
}

/* The text of n, blanks trimmed, control bytes as spaces, cut to fit
 * out (with "..." when cut). Returns whether there was any. */
static bool copy_text(const xmlNode *n, char *out, size_t size)
{
    out[0] = '\0';
    if (!n)
        return false;
    xmlChar *v = xmlNodeGetContent(n);
    if (!v)
        return false;
    const char *s = (const char *)v;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
                   s[len - 1] == '\r' || s[len - 1] == '\n'))
        len--;
    while (len && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
        s++;
        len--;
    }
    bool cut = len >= size;
    if (cut) {
        len = size - 4;
        /* Not in the middle of a UTF-8 sequence. */
        while (len && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (cut)
        memcpy(out + len, "...", 3), len += 3;
    out[len] = '\0';
    xmlFree(v);
    return len > 0;
}

static void other(struct itk_response *out, const char *fmt, const char *arg)
{
    out->kind = ITK_RESPONSE_OTHER;
    snprintf(out->text, sizeof out->text, fmt, arg);
    for (char *p = out->text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
}

void itk_response_parse(const char *body, size_t len, size_t max_bytes,
                        struct itk_response *out)
{
    *out = (struct itk_response){ .kind = ITK_RESPONSE_OTHER };
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' ||
                       body[i] == '\n'))
        i++;
    if (i == len) {
        out->kind = ITK_RESPONSE_OK;
        snprintf(out->text, sizeof out->text, "empty response body");
        return;
    }
    xmlDocPtr doc;
    struct itk_error err = {0};
    if (itk_xml_read(body, len, max_bytes, 0, &doc, &err)) {
        other(out, "the response is not a SOAP envelope: %s", err.msg);
        return;
    }
    xmlNode *root = xmlDocGetRootElement(doc);
    xmlNode *b = soap_is(root, ITK_SOAP_NS, "Envelope")
                     ? soap_child(root, ITK_SOAP_NS, "Body") : NULL;
    xmlNode *first = NULL;
    for (xmlNode *c = b ? b->children : NULL; c && !first; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            first = c;
    if (!b) {
        other(out, "the response is not a SOAP 1.1 envelope with a Body (root "
              "element %.200s)", root ? (const char *)root->name : "none");
    } else if (!first) {
        other(out, "the response's SOAP Body is empty%s", "");
    } else if (soap_is(first, ITK_SOAP_NS, "Fault")) {
        out->kind = ITK_RESPONSE_FAULT;
        xmlNode *info = soap_child(soap_child(first, NULL, "detail"), ITK_NS,
                                   "ToolkitErrorInfo");
        if (!copy_text(soap_child(info, ITK_NS, "ErrorCode"), out->code,
                       sizeof out->code))
            copy_text(soap_child(first, NULL, "faultcode"), out->code,
                      sizeof out->code);
        if (!copy_text(soap_child(info, ITK_NS, "ErrorText"), out->text,
                       sizeof out->text) &&
            !copy_text(soap_child(first, NULL, "faultstring"), out->text,
                       sizeof out->text))
            snprintf(out->text, sizeof out->text, "SOAP fault without a text");
    } else if (soap_is(first, ITK_NS, "SimpleMessageResponse")) {
        char v[128];
        copy_text(first, v, sizeof v);
        if (strcmp(v, "OK") == 0) {
            out->kind = ITK_RESPONSE_OK;
            snprintf(out->text, sizeof out->text, "OK");
        } else {
            other(out, "SimpleMessageResponse is '%s', not OK", v);
        }
    } else {
        other(out, "the response's SOAP Body holds %.200s, not a "
              "SimpleMessageResponse or a Fault", (const char *)first->name);
    }
    xmlFreeDoc(doc);
}
