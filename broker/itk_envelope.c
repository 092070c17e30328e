/*
 * itk_envelope.c: parses and checks an ITK 2 DistributionEnvelope with
 * libxml2, hardened against hostile XML (no DOCTYPE, no entities, no
 * network, bounded size and depth), and extracts its routing metadata.
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <openssl/evp.h>

#include "itk.h"
#include "itk_int.h"

#define SOAP11_NS "http://schemas.xmlsoap.org/soap/envelope/"
#define WSA_NS    "http://www.w3.org/2005/08/addressing"
#define HL7V3_NS  "urn:hl7-org:v3"
#define SPEC_PREFIX "urn:nhs-itk:ns:201005:"

/* libxml2's own nesting limit without XML_PARSE_HUGE. */
#define LIBXML_DEPTH 256u

static const struct {
    int rc;
    const char *code;
    const char *text;
} codes[] = {
    { ITK_OK,          "",     "success" },
    { ITK_E_NOMEM,     "9999", "out of memory" },
    { ITK_E_TOO_LARGE, "1001", "request too large" },
    { ITK_E_XML,       "1000", "not well-formed XML" },
    { ITK_E_DOCTYPE,   "1002", "DOCTYPE refused" },
    { ITK_E_DEPTH,     "1003", "XML nested too deeply" },
    { ITK_E_STRUCTURE, "1004", "not an ITK distribution envelope" },
    { ITK_E_HEADER,    "2001", "envelope header incomplete" },
    { ITK_E_MANIFEST,  "2002", "manifest inconsistent" },
    { ITK_E_PAYLOAD,   "2003", "payloads inconsistent" },
    { ITK_E_BASE64,    "2004", "payload is not valid base64" },
    { ITK_E_IDENTITY,  "2005", "sender or audit identity missing" },
};

const char *itk_strerror(int rc)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].rc == rc)
            return codes[i].text;
    return "unknown ITK error";
}

static int fail(struct itk_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct itk_error *err, int rc, const char *fmt, ...)
{
    if (!err)
        return rc;
    err->rc = rc;
    err->itk_code[0] = '\0';
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].rc == rc)
            snprintf(err->itk_code, sizeof err->itk_code, "%s", codes[i].code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- libxml2 setup ---------------------------------------------------- */

static xmlParserInputPtr no_entity_loader(const char *url, const char *id,
                                          xmlParserCtxtPtr ctxt)
{
    (void)url; (void)id; (void)ctxt;
    return NULL;
}

static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx; (void)msg;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_libxml(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(no_entity_loader);
    xmlSetGenericErrorFunc(NULL, quiet);
}

/* Per-parse state, reached through ctxt->_private from the SAX hooks. */
struct guard {
    unsigned depth, max_depth;
    bool doctype, too_deep;
    startElementNsSAX2Func start;
    endElementNsSAX2Func end;
};

static void on_doctype(void *vctx, const xmlChar *name,
                       const xmlChar *ext_id, const xmlChar *sys_id)
{
    (void)name; (void)ext_id; (void)sys_id;
    xmlParserCtxtPtr ctxt = vctx;
    struct guard *g = ctxt->_private;
    g->doctype = true;
    xmlStopParser(ctxt);
}

static void on_start(void *vctx, const xmlChar *local, const xmlChar *prefix,
                     const xmlChar *uri, int nb_ns, const xmlChar **ns,
                     int nb_attr, int nb_def, const xmlChar **attrs)
{
    xmlParserCtxtPtr ctxt = vctx;
    struct guard *g = ctxt->_private;
    if (++g->depth > g->max_depth) {
        g->too_deep = true;
        xmlStopParser(ctxt);
        return;
    }
    g->start(vctx, local, prefix, uri, nb_ns, ns, nb_attr, nb_def, attrs);
}

static void on_end(void *vctx, const xmlChar *local, const xmlChar *prefix,
                   const xmlChar *uri)
{
    xmlParserCtxtPtr ctxt = vctx;
    struct guard *g = ctxt->_private;
    if (g->depth)
        g->depth--;
    g->end(vctx, local, prefix, uri);
}

static int read_xml(const char *bytes, size_t len, unsigned max_depth,
                    xmlDocPtr *doc, struct itk_error *err)
{
    *doc = NULL;
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return fail(err, ITK_E_NOMEM, "cannot create an XML parser");
    struct guard g = { .max_depth = max_depth,
                       .start = ctxt->sax->startElementNs,
                       .end = ctxt->sax->endElementNs };
    ctxt->_private = &g;
    ctxt->sax->internalSubset = on_doctype;
    ctxt->sax->externalSubset = NULL;
    ctxt->sax->entityDecl = NULL;
    ctxt->sax->startElementNs = on_start;
    ctxt->sax->endElementNs = on_end;
    int opts = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
               XML_PARSE_NOCDATA;
#ifdef XML_PARSE_NO_XXE
    opts |= XML_PARSE_NO_XXE;
#endif
    *doc = xmlCtxtReadMemory(ctxt, bytes, (int)len, NULL, NULL, opts);
    int rc = ITK_OK;
    if (g.doctype)
        rc = fail(err, ITK_E_DOCTYPE,
                  "the request has a DOCTYPE; DTDs and entities are refused");
    else if (g.too_deep)
        rc = fail(err, ITK_E_DEPTH,
                  "XML elements nested more than %u deep", max_depth);
    else if (!*doc || !ctxt->wellFormed) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char text[160] = "parse error";
        int line = 0;
        if (e && e->message) {
            snprintf(text, sizeof text, "%s", e->message);
            size_t n = strlen(text);
            while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
                text[--n] = '\0';
            /* Some messages run on over lines ("...encoding !\nBytes:"):
             * one line, for logs and fault texts. */
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)text[i] < 0x20)
                    text[i] = ' ';
            line = e->line;
        }
        rc = fail(err, ITK_E_XML, "not well-formed XML at line %d: %s",
                  line, text);
    }
    if (rc) {
        xmlFreeDoc(*doc);
        *doc = NULL;
    }
    xmlFreeParserCtxt(ctxt);
    return rc;
}

/* ---- tree helpers ----------------------------------------------------- */

static bool is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
           strcmp((const char *)n->ns->href, ns) == 0 &&
           strcmp((const char *)n->name, name) == 0;
}

static xmlNode *child(const xmlNode *n, const char *ns, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

static xmlNode *next_el(xmlNode *c, const char *ns, const char *name)
{
    for (c = c ? c->next : NULL; c; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

/* A copy of attribute name (no namespace) of n, or NULL when absent.
 * *nomem is set when the copy could not be made. */
static char *attr(const xmlNode *n, const char *name, bool *nomem)
{
    if (!n)
        return NULL;
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    xmlFree(v);
    if (!s)
        *nomem = true;
    return s;
}

static char *text_of(const xmlNode *n, bool *nomem)
{
    if (!n)
        return NULL;
    xmlChar *v = xmlNodeGetContent(n);
    if (!v)
        return NULL;
    char *s = strdup((const char *)v);
    xmlFree(v);
    if (!s)
        *nomem = true;
    return s;
}

static bool empty(const char *s)
{
    return !s || !*s;
}

static char *ods_of(const char *uri, bool *nomem)
{
    size_t n = strlen(ITK_ODS_PREFIX);
    if (!uri || strncmp(uri, ITK_ODS_PREFIX, n) != 0 || !uri[n])
        return NULL;
    char *s = strdup(uri + n);
    if (!s)
        *nomem = true;
    return s;
}

/* A count attribute: decimal digits only, at most 9 of them. */
static bool parse_count(const char *s, size_t *out)
{
    if (empty(s) || strlen(s) > 9)
        return false;
    size_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return true;
}

/* ---- payload content -------------------------------------------------- */

static bool b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Decode base64 text, XML whitespace allowed anywhere. Padding must be
 * exact: a multiple of 4 characters, '=' only as the last one or two. */
static int decode_b64(const char *id, const char *text, unsigned char **out,
                      size_t *out_len, struct itk_error *err)
{
    size_t n = strlen(text), k = 0;
    char *clean = malloc(n + 1);
    if (!clean)
        return fail(err, ITK_E_NOMEM, "out of memory decoding payload %s", id);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        clean[k++] = (char)c;
    }
    int rc = ITK_OK;
    size_t pad = 0;
    if (k == 0) {
        rc = fail(err, ITK_E_BASE64, "payload %s is base64 but empty", id);
        goto out;
    }
    if (k % 4 != 0) {
        rc = fail(err, ITK_E_BASE64,
                  "payload %s: base64 length %zu is not a multiple of 4",
                  id, k);
        goto out;
    }
    if (clean[k - 1] == '=')
        pad = clean[k - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < k - pad; i++) {
        if (!b64_char((unsigned char)clean[i])) {
            rc = fail(err, ITK_E_BASE64,
                      "payload %s: byte %zu of the base64 text is not a "
                      "base64 character", id, i);
            goto out;
        }
    }
    if (k > INT_MAX) {
        rc = fail(err, ITK_E_BASE64, "payload %s: base64 text too long", id);
        goto out;
    }
    unsigned char *data = malloc(k / 4 * 3 + 1);
    if (!data) {
        rc = fail(err, ITK_E_NOMEM, "out of memory decoding payload %s", id);
        goto out;
    }
    int got = EVP_DecodeBlock(data, (const unsigned char *)clean, (int)k);
    if (got < 0 || (size_t)got != k / 4 * 3) {
        free(data);
        rc = fail(err, ITK_E_BASE64, "payload %s does not decode as base64",
                  id);
        goto out;
    }
    *out_len = (size_t)got - pad;
    data[*out_len] = '\0';
    *out = data;
out:
    free(clean);
    return rc;
}

/* Serialise element el as a document of its own, so the namespaces it
 * inherits are declared on it: the deep copy declares on the copy's root
 * each namespace used below but declared above el. (xmlReconciliateNs is
 * not used: it re-declares a default namespace declared inside the copy
 * as a new "default:" prefix on the root, rewriting every element name.) */
static int dump_element(const xmlNode *el, unsigned char **out, size_t *len)
{
    int rc = ITK_E_NOMEM;
    xmlDocPtr d = xmlNewDoc((const xmlChar *)"1.0");
    xmlBufferPtr b = xmlBufferCreate();
    if (!d || !b)
        goto out;
    xmlNodePtr copy = xmlDocCopyNode((xmlNodePtr)el, d, 1);
    if (!copy)
        goto out;
    xmlDocSetRootElement(d, copy);
    if (xmlNodeDump(b, d, copy, 0, 0) < 0)
        goto out;
    size_t n = (size_t)xmlBufferLength(b);
    unsigned char *p = malloc(n + 1);
    if (!p)
        goto out;
    memcpy(p, xmlBufferContent(b), n);
    p[n] = '\0';
    *out = p;
    *len = n;
    rc = ITK_OK;
out:
    xmlBufferFree(b);
    xmlFreeDoc(d);
    return rc;
}

static xmlNode *first_element(const xmlNode *n)
{
    for (xmlNode *c = n->children; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return c;
    return NULL;
}

static size_t element_count(const xmlNode *n)
{
    size_t k = 0;
    for (xmlNode *c = n->children; c; c = c->next)
        k += c->type == XML_ELEMENT_NODE;
    return k;
}

/* recordTarget/patientRole/id[@root = NHS number OID]/@extension */
static char *cda_nhs_number(const xmlNode *doc_el, bool *nomem)
{
    for (xmlNode *rt = child(doc_el, HL7V3_NS, "recordTarget"); rt;
         rt = next_el(rt, HL7V3_NS, "recordTarget")) {
        xmlNode *pr = child(rt, HL7V3_NS, "patientRole");
        for (xmlNode *id = child(pr, HL7V3_NS, "id"); id;
             id = next_el(id, HL7V3_NS, "id")) {
            bool nm = false;
            char *root = attr(id, "root", &nm);
            bool match = root && strcmp(root, ITK_NHS_NUMBER_OID) == 0;
            free(root);
            if (nm) {
                *nomem = true;
                return NULL;
            }
            if (match) {
                char *ext = attr(id, "extension", nomem);
                if (!empty(ext))
                    return ext;
                free(ext);
            }
        }
    }
    return NULL;
}

static int payload_content(struct itk_payload *p, const xmlNode *el,
                           struct itk_error *err)
{
    bool nomem = false;
    if (p->base64) {
        char *t = text_of(el, &nomem);
        if (nomem)
            return fail(err, ITK_E_NOMEM, "out of memory");
        if (element_count(el)) {
            free(t);
            return fail(err, ITK_E_BASE64,
                        "payload %s is base64 but holds XML elements", p->id);
        }
        int rc = decode_b64(p->id, t ? t : "", &p->data, &p->len, err);
        free(t);
        return rc;
    }
    size_t k = element_count(el);
    if (k > 1)
        return fail(err, ITK_E_PAYLOAD,
                    "payload %s holds %zu XML elements, expected one",
                    p->id, k);
    if (k == 1) {
        xmlNode *doc_el = first_element(el);
        if (dump_element(doc_el, &p->data, &p->len))
            return fail(err, ITK_E_NOMEM, "out of memory");
        if (is_el(doc_el, HL7V3_NS, "ClinicalDocument") && p->mimetype &&
            strcmp(p->mimetype, "text/xml") == 0) {
            p->nhs_number = cda_nhs_number(doc_el, &nomem);
            if (nomem)
                return fail(err, ITK_E_NOMEM, "out of memory");
        }
        return ITK_OK;
    }
    char *t = text_of(el, &nomem);
    if (nomem)
        return fail(err, ITK_E_NOMEM, "out of memory");
    if (!t && !(t = strdup("")))
        return fail(err, ITK_E_NOMEM, "out of memory");
    p->data = (unsigned char *)t;
    p->len = strlen(t);
    return ITK_OK;
}

/* ---- the envelope ----------------------------------------------------- */

void itk_free(struct itk_envelope *e)
{
    if (!e)
        return;
    free(e->message_id);
    free(e->action);
    free(e->service);
    free(e->tracking_id);
    free(e->interaction);
    free(e->sender);
    free(e->sender_ods);
    free(e->audit_identity);
    for (size_t i = 0; i < e->n_addresses; i++) {
        free(e->addresses[i]);
        free(e->address_ods[i]);
    }
    free(e->addresses);
    free(e->address_ods);
    free(e->profile);
    for (size_t i = 0; i < e->n_payloads; i++) {
        struct itk_payload *p = &e->payloads[i];
        free(p->id);
        free(p->mimetype);
        free(p->profile_id);
        free(p->data);
        free(p->nhs_number);
    }
    free(e->payloads);
    free(e->distribution_xml);
    free(e);
}

static int read_header(struct itk_envelope *e, const xmlNode *hdr,
                       struct itk_error *err)
{
    bool nomem = false;
    e->service = attr(hdr, "service", &nomem);
    e->tracking_id = attr(hdr, "trackingid", &nomem);
    if (nomem)
        return fail(err, ITK_E_NOMEM, "out of memory");
    if (empty(e->service))
        return fail(err, ITK_E_HEADER, "the envelope header has no service");
    if (empty(e->tracking_id))
        return fail(err, ITK_E_HEADER,
                    "the envelope header has no trackingid");

    xmlNode *al = child(hdr, ITK_NS, "addresslist");
    size_t n = 0;
    for (xmlNode *a = child(al, ITK_NS, "address"); a;
         a = next_el(a, ITK_NS, "address"))
        n++;
    if (n) {
        e->addresses = calloc(n, sizeof *e->addresses);
        e->address_ods = calloc(n, sizeof *e->address_ods);
        if (!e->addresses || !e->address_ods)
            return fail(err, ITK_E_NOMEM, "out of memory");
        for (xmlNode *a = child(al, ITK_NS, "address"); a;
             a = next_el(a, ITK_NS, "address")) {
            char *uri = attr(a, "uri", &nomem);
            if (nomem)
                return fail(err, ITK_E_NOMEM, "out of memory");
            if (empty(uri)) {
                free(uri);
                return fail(err, ITK_E_HEADER,
                            "address %zu in the addresslist has no uri",
                            e->n_addresses + 1);
            }
            e->addresses[e->n_addresses] = uri;
            e->address_ods[e->n_addresses++] = ods_of(uri, &nomem);
            if (nomem)
                return fail(err, ITK_E_NOMEM, "out of memory");
        }
    }

    xmlNode *sa = child(hdr, ITK_NS, "senderAddress");
    e->sender = attr(sa, "uri", &nomem);
    e->sender_ods = ods_of(e->sender, &nomem);
    xmlNode *aid = child(child(hdr, ITK_NS, "auditIdentity"), ITK_NS, "id");
    e->audit_identity = attr(aid, "uri", &nomem);
    if (nomem)
        return fail(err, ITK_E_NOMEM, "out of memory");
    if (empty(e->sender))
        return fail(err, ITK_E_IDENTITY,
                    "the envelope header has no senderAddress uri");
    if (empty(e->audit_identity))
        return fail(err, ITK_E_IDENTITY,
                    "the envelope header has no auditIdentity id uri");

    xmlNode *hs = child(hdr, ITK_NS, "handlingSpecification");
    for (xmlNode *s = child(hs, ITK_NS, "spec"); s;
         s = next_el(s, ITK_NS, "spec")) {
        char *key = attr(s, "key", &nomem);
        char *val = attr(s, "value", &nomem);
        if (nomem) {
            free(key);
            free(val);
            return fail(err, ITK_E_NOMEM, "out of memory");
        }
        if (key && strcmp(key, SPEC_PREFIX "interaction") == 0 &&
            !e->interaction) {
            e->interaction = val;
            val = NULL;
        } else if (key && strcmp(key, SPEC_PREFIX "infackrequested") == 0) {
            e->infack_requested = val && strcmp(val, "true") == 0;
        } else if (key && strcmp(key, SPEC_PREFIX "ackrequested") == 0) {
            e->ack_requested = val && strcmp(val, "true") == 0;
        }
        free(key);
        free(val);
    }
    return ITK_OK;
}

/* The element name under parent (in the envelope, or its header when
 * where is " header"), whose count attribute must be the number of its
 * item children: *out is it, *n that number. Returns ITK_OK, or code
 * (ITK_E_NOMEM) with err saying what is wrong. */
static int counted(const xmlNode *parent, const char *where, const char *name,
                   const char *item, int code, xmlNode **out, size_t *n,
                   struct itk_error *err)
{
    bool nomem = false;
    xmlNode *el = child(parent, ITK_NS, name);
    if (!el)
        return fail(err, code, "the envelope%s has no %s", where, name);
    char *cs = attr(el, "count", &nomem);
    size_t count = 0;
    bool ok = parse_count(cs, &count);
    if (nomem)
        return fail(err, ITK_E_NOMEM, "out of memory");
    if (!ok) {
        int rc = cs ? fail(err, code, "%s count '%.40s' is not a number", name, cs)
                    : fail(err, code, "%s has no count", name);
        free(cs);
        return rc;
    }
    free(cs);
    *n = 0;
    for (xmlNode *it = child(el, ITK_NS, item); it; it = next_el(it, ITK_NS, item))
        ++*n;
    if (*n != count)
        return fail(err, code, "%s count %zu but %zu %s", name, count, *n, item);
    *out = el;
    return ITK_OK;
}

static int read_manifest(struct itk_envelope *e, const xmlNode *hdr,
                         struct itk_error *err)
{
    bool nomem = false;
    xmlNode *m;
    size_t n;
    int rc = counted(hdr, " header", "manifest", "manifestitem", ITK_E_MANIFEST, &m, &n, err);
    if (rc)
        return rc;
    if (n == 0)
        return fail(err, ITK_E_MANIFEST, "the manifest lists no items");
    e->payloads = calloc(n, sizeof *e->payloads);
    if (!e->payloads)
        return fail(err, ITK_E_NOMEM, "out of memory");
    for (xmlNode *it = child(m, ITK_NS, "manifestitem"); it;
         it = next_el(it, ITK_NS, "manifestitem")) {
        struct itk_payload *p = &e->payloads[e->n_payloads++];
        p->id = attr(it, "id", &nomem);
        p->mimetype = attr(it, "mimetype", &nomem);
        p->profile_id = attr(it, "profileid", &nomem);
        char *b64 = attr(it, "base64", &nomem);
        p->base64 = b64 && strcmp(b64, "true") == 0;
        free(b64);
        if (nomem)
            return fail(err, ITK_E_NOMEM, "out of memory");
        if (empty(p->id))
            return fail(err, ITK_E_MANIFEST, "manifestitem %zu has no id",
                        e->n_payloads);
        if (empty(p->mimetype))
            return fail(err, ITK_E_MANIFEST,
                        "manifestitem %.80s has no mimetype", p->id);
    }
    if (e->payloads[0].profile_id && !(e->profile = strdup(e->payloads[0].profile_id)))
        return fail(err, ITK_E_NOMEM, "out of memory");
    return ITK_OK;
}

/* Ids sorted, so duplicates and look-ups cost n log n however many
 * payloads a hostile request lists. */
struct id_ref {
    const char *id;
    xmlNode    *node;    /* the payload element, or NULL */
    size_t      index;   /* the manifest item */
};

static int cmp_ref(const void *a, const void *b)
{
    return strcmp(((const struct id_ref *)a)->id,
                  ((const struct id_ref *)b)->id);
}

static struct id_ref *find_ref(struct id_ref *refs, size_t n, const char *id)
{
    struct id_ref key = { .id = id };
    return n ? bsearch(&key, refs, n, sizeof *refs, cmp_ref) : NULL;
}

static int read_payloads(struct itk_envelope *e, const xmlNode *de,
                         struct itk_error *err)
{
    xmlNode *ps;
    size_t n;
    int rc = counted(de, "", "payloads", "payload", ITK_E_PAYLOAD, &ps, &n, err);
    if (rc)
        return rc;
    size_t nm = e->n_payloads, np = 0;
    struct id_ref *man = calloc(nm ? nm : 1, sizeof *man);
    struct id_ref *pay = calloc(n ? n : 1, sizeof *pay);
    xmlChar **ids = calloc(n ? n : 1, sizeof *ids);
    if (!man || !pay || !ids) {
        rc = fail(err, ITK_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nm; i++)
        man[i] = (struct id_ref){ e->payloads[i].id, NULL, i };
    qsort(man, nm, sizeof *man, cmp_ref);
    for (size_t i = 1; i < nm; i++)
        if (strcmp(man[i - 1].id, man[i].id) == 0) {
            rc = fail(err, ITK_E_MANIFEST,
                      "manifestitem id %.80s appears twice", man[i].id);
            goto out;
        }
    for (xmlNode *p = child(ps, ITK_NS, "payload"); p;
         p = next_el(p, ITK_NS, "payload")) {
        xmlChar *id = xmlGetNoNsProp(p, (const xmlChar *)"id");
        if (!id || !*id) {
            xmlFree(id);
            rc = fail(err, ITK_E_PAYLOAD, "payload %zu has no id", np + 1);
            goto out;
        }
        ids[np] = id;
        pay[np] = (struct id_ref){ (const char *)id, p, 0 };
        np++;
    }
    qsort(pay, np, sizeof *pay, cmp_ref);
    for (size_t i = 0; i < np; i++) {
        if (i && strcmp(pay[i - 1].id, pay[i].id) == 0) {
            rc = fail(err, ITK_E_PAYLOAD, "payload id %.80s appears twice",
                      pay[i].id);
            goto out;
        }
    }
    /* Manifest order, so the first item named is the first listed. */
    for (size_t i = 0; i < nm; i++) {
        if (!find_ref(pay, np, e->payloads[i].id)) {
            rc = fail(err, ITK_E_PAYLOAD, "manifestitem %.80s has no payload",
                      e->payloads[i].id);
            goto out;
        }
    }
    for (xmlNode *p = child(ps, ITK_NS, "payload"); p;
         p = next_el(p, ITK_NS, "payload")) {
        xmlChar *id = xmlGetNoNsProp(p, (const xmlChar *)"id");
        bool listed = id && find_ref(man, nm, (const char *)id);
        if (!listed)
            rc = fail(err, ITK_E_PAYLOAD, "payload %.80s is not in the manifest",
                      id ? (const char *)id : "");
        xmlFree(id);
        if (rc)
            goto out;
    }
    for (size_t i = 0; i < nm; i++) {
        struct itk_payload *pl = &e->payloads[i];
        if ((rc = payload_content(pl, find_ref(pay, np, pl->id)->node, err)))
            goto out;
    }
out:
    for (size_t i = 0; i < np; i++)
        xmlFree(ids[i]);
    free(ids);
    free(pay);
    free(man);
    return rc;
}

/* The DistributionEnvelope: the root, or in a SOAP 1.1 Body. */
static xmlNode *find_envelope(xmlDocPtr doc, struct itk_envelope *e,
                              bool *nomem)
{
    xmlNode *root = xmlDocGetRootElement(doc);
    if (is_el(root, ITK_NS, "DistributionEnvelope"))
        return root;
    if (!is_el(root, SOAP11_NS, "Envelope"))
        return NULL;
    xmlNode *h = child(root, SOAP11_NS, "Header");
    e->message_id = text_of(child(h, WSA_NS, "MessageID"), nomem);
    e->action = text_of(child(h, WSA_NS, "Action"), nomem);
    xmlNode *body = child(root, SOAP11_NS, "Body");
    return child(body, ITK_NS, "DistributionEnvelope");
}

int itk_xml_read(const char *bytes, size_t len, size_t max_bytes,
                 unsigned max_depth, xmlDocPtr *doc, struct itk_error *err)
{
    *doc = NULL;
    if (!max_bytes)
        max_bytes = ITK_DEFAULT_MAX_BYTES;
    if (!max_depth)
        max_depth = ITK_DEFAULT_MAX_DEPTH;
    if (max_bytes > INT_MAX)
        max_bytes = INT_MAX;
    if (max_depth >= LIBXML_DEPTH)
        max_depth = LIBXML_DEPTH - 1;
    if (len > max_bytes)
        return fail(err, ITK_E_TOO_LARGE,
                    "request of %zu bytes is over the limit of %zu bytes",
                    len, max_bytes);
    if (len == 0)
        return fail(err, ITK_E_XML, "the request is empty");
    pthread_once(&init_once, init_libxml);
    return read_xml(bytes, len, max_depth, doc, err);
}

int itk_parse(const char *bytes, size_t len, const struct itk_limits *lim,
              struct itk_envelope **out, struct itk_error *err)
{
    *out = NULL;
    if (err)
        *err = (struct itk_error){0};
    xmlDocPtr doc;
    int rc = itk_xml_read(bytes, len, lim ? lim->max_bytes : 0,
                          lim ? lim->max_depth : 0, &doc, err);
    if (rc)
        return rc;
    struct itk_envelope *e = calloc(1, sizeof *e);
    if (!e) {
        rc = fail(err, ITK_E_NOMEM, "out of memory");
        goto out;
    }
    bool nomem = false;
    xmlNode *de = find_envelope(doc, e, &nomem);
    if (nomem) {
        rc = fail(err, ITK_E_NOMEM, "out of memory");
        goto out;
    }
    if (!de) {
        rc = fail(err, ITK_E_STRUCTURE,
                  "no DistributionEnvelope (" ITK_NS ") in a SOAP 1.1 Body");
        goto out;
    }
    xmlNode *hdr = child(de, ITK_NS, "header");
    if (!hdr) {
        rc = fail(err, ITK_E_HEADER, "the DistributionEnvelope has no header");
        goto out;
    }
    if ((rc = read_header(e, hdr, err)) || (rc = read_manifest(e, hdr, err)) ||
        (rc = read_payloads(e, de, err)))
        goto out;
    unsigned char *dx = NULL;
    if (dump_element(de, &dx, &e->distribution_len)) {
        rc = fail(err, ITK_E_NOMEM, "out of memory");
        goto out;
    }
    e->distribution_xml = (char *)dx;
    *out = e;
    e = NULL;
out:
    itk_free(e);
    xmlFreeDoc(doc);
    return rc;
}
