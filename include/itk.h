/*
 * itk.h: the NHS ITK 2 distribution envelope parser. Takes the bytes of a
 * SOAP 1.1 request (or a bare DistributionEnvelope), checks the envelope
 * is consistent and extracts what routing needs: service, interaction,
 * tracking id, sender, addresses, profile, and each payload decoded.
 */
#ifndef HL7BROKER_ITK_H
#define HL7BROKER_ITK_H

#include <stdbool.h>
#include <stddef.h>

#define ITK_NS          "urn:nhs-itk:ns:201005"
#define ITK_ODS_PREFIX  "urn:nhs-uk:addressing:ods:"
#define ITK_NHS_NUMBER_OID "2.16.840.1.113883.2.1.4.1"

/* Defaults when itk_parse gets no limits (or a 0 in a field). */
#define ITK_DEFAULT_MAX_BYTES  (10u * 1024 * 1024)
#define ITK_DEFAULT_MAX_DEPTH  128u

/* Limits on one request. A request over a limit is refused with an error
 * saying which limit (never truncated). max_bytes is capped at INT_MAX
 * (libxml2 takes an int length); max_depth at 255 (libxml2's own limit,
 * which stays on: XML_PARSE_HUGE is never used, so a single text node
 * over 10 MB is refused by libxml2 too, with its own message). */
struct itk_limits {
    size_t   max_bytes;   /* whole request */
    unsigned max_depth;   /* element nesting, root = 1 */
};

/* Error codes: 0 success, negative failures. Each has an ITK-style
 * numeric code (itk_error.itk_code) for a SOAP fault's ErrorCode:
 * 1000-series for requests that are not a well-formed, safe envelope,
 * 2000-series for envelopes whose content is inconsistent. */
enum itk_rc {
    ITK_OK          = 0,
    ITK_E_NOMEM     = -1,   /* 9999 */
    ITK_E_TOO_LARGE = -2,   /* 1001 request over max_bytes */
    ITK_E_XML       = -3,   /* 1000 not well-formed XML */
    ITK_E_DOCTYPE   = -4,   /* 1002 DOCTYPE (DTD, entities): refused */
    ITK_E_DEPTH     = -5,   /* 1003 nesting over max_depth */
    ITK_E_STRUCTURE = -6,   /* 1004 no SOAP Envelope/Body/DistributionEnvelope */
    ITK_E_HEADER    = -7,   /* 2001 header service or trackingid missing */
    ITK_E_MANIFEST  = -8,   /* 2002 manifest count, ids, attributes */
    ITK_E_PAYLOAD   = -9,   /* 2003 payload count, ids, content */
    ITK_E_BASE64    = -10,  /* 2004 base64 payload does not decode */
    ITK_E_IDENTITY  = -11,  /* 2005 sender or audit identity missing */
};

struct itk_error {
    int  rc;            /* enum itk_rc */
    char itk_code[8];   /* "1000", "2002", ... ("" on success) */
    char msg[256];      /* one sentence saying what is wrong */
};

const char *itk_strerror(int rc);

/* One payload, in manifest order. Strings are NUL-terminated and owned by
 * the envelope. */
struct itk_payload {
    char          *id;
    char          *mimetype;    /* from the manifest item */
    char          *profile_id;  /* from the manifest item, may be NULL */
    bool           base64;      /* the manifest item said base64="true" */
    /* The payload bytes: base64 decoded; for an XML payload the element
     * serialised on its own (namespaces it uses declared on it); else the
     * text content. NUL-terminated (the NUL not counted in len). */
    unsigned char *data;
    size_t         len;
    /* For a CDA payload (text/xml, not base64, a ClinicalDocument in
     * urn:hl7-org:v3): recordTarget/patientRole/id[@root=NHS number OID]
     * /@extension; NULL otherwise or when absent. */
    char          *nhs_number;
};

/* The routing metadata of one envelope. Route metadata names: itk.service,
 * itk.interaction, itk.sender, itk.address, itk.tracking_id, itk.profile,
 * cda.nhs_number. Everything is owned by the envelope and lives until
 * itk_free. Optional strings are NULL when absent. */
struct itk_envelope {
    char   *message_id;      /* wsa:MessageID (optional) */
    char   *action;          /* wsa:Action (optional) */
    char   *service;         /* header/@service */
    char   *tracking_id;     /* header/@trackingid */
    char   *interaction;     /* handlingSpecification interaction (optional) */
    char   *sender;          /* senderAddress/@uri */
    char   *sender_ods;      /* its ODS code when an ODS URI, else NULL */
    char   *audit_identity;  /* auditIdentity/id/@uri */
    char  **addresses;       /* addresslist/address/@uri, n_addresses of them */
    char  **address_ods;     /* per address: ODS code or NULL */
    size_t  n_addresses;
    char   *profile;         /* the first manifest item's profileid */
    bool    infack_requested;  /* handlingSpecification ...:infackrequested */
    bool    ack_requested;     /* handlingSpecification ...:ackrequested */
    struct itk_payload *payloads;
    size_t  n_payloads;
    /* The DistributionEnvelope element serialised on its own (the
     * namespaces it uses declared on it), NUL-terminated: what the itk
     * destination wraps in a SOAP request of its own. */
    char   *distribution_xml;
    size_t  distribution_len;
};

/* Parse and check one request. lim NULL means the defaults. libxml2 runs
 * with network access off, no entity substitution and no DTD loading; any
 * DOCTYPE is refused outright (so no XXE and no entity expansion). On
 * success returns 0 and *out is the envelope (free with itk_free); on
 * failure returns a negative itk_rc, *out is NULL and err (when not NULL)
 * says what is wrong. The first call also sets libxml2's external entity
 * loader to one that loads nothing (process-wide). Thread-safe. */
int  itk_parse(const char *bytes, size_t len, const struct itk_limits *lim,
               struct itk_envelope **out, struct itk_error *err);

/* NULL is allowed. */
void itk_free(struct itk_envelope *env);

/* ------------------------------------------------- building (itk_soap.c)
 *
 * Everything built here is UTF-8 XML with an XML declaration; every text
 * and attribute value is escaped (&, <, >, ", ' and control bytes), so
 * values taken from a message can never change the document's shape.
 * Functions append to out and return 0, or -1 when memory runs out. */
struct buf;

#define ITK_SOAP_NS   "http://schemas.xmlsoap.org/soap/envelope/"
#define ITK_WSA_NS    "http://www.w3.org/2005/08/addressing"
#define ITK_SERVICE_INFACK   "urn:nhs-itk:services:201005:SendInfrastructureAck-v1-0"
#define ITK_SERVICE_BUSACK   "urn:nhs-itk:services:201005:SendBusinessAck-v1-0"
#define ITK_SERVICE_CDA      "urn:nhs-itk:services:201005:SendCDADocument-v2-0"
#define ITK_ERROR_CODE_OID   "2.16.840.1.113883.2.1.3.2.4.17.268"

/* A fresh random (version 4) UUID in upper case, 36 characters and the
 * NUL: "6B0C3F0E-5A4D-4C3B-9E0A-111111111111". A stable one from bytes
 * (the SHA-256 of data, shaped as a version 5-style UUID): the same input
 * gives the same UUID, so a message sent twice carries one tracking id. */
void itk_uuid(char out[37]);
void itk_uuid_from(const void *data, size_t len, char out[37]);

/* The synchronous answer to a request that was committed: a SOAP 1.1
 * envelope with a WS-Addressing header (MessageID fresh, Action =
 * request's service + "Response", RelatesTo = the request's MessageID when
 * it had one) and <itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse>
 * in the body. */
int itk_soap_ok(struct buf *out, const struct itk_envelope *req);

/* A SOAP 1.1 fault for a request that was not taken: faultcode
 * soap:Client (itk_code 1xxx/2xxx) or soap:Server (9xxx: the broker's
 * own trouble, the sender may retry), faultstring, and in detail an
 * itk:ToolkitErrorInfo with ErrorID (fresh UUID), ErrorCode (codeSystem
 * ITK_ERROR_CODE_OID), ErrorText = text and ErrorDiagnosticText = text.
 * relates_to: the request's MessageID, or NULL. */
int itk_soap_fault(struct buf *out, const char *itk_code, const char *text,
                   const char *relates_to);

/* One payload to put in a built envelope: data is written base64 encoded
 * (base64="true" in the manifest) when base64 is true, else as XML as it
 * is (it must be a well-formed element: the caller's promise). */
struct itk_out_payload {
    const char          *id;          /* NULL: "uuid_" + a fresh UUID */
    const char          *mimetype;
    const char          *profile_id;  /* NULL: no profileid attribute */
    bool                 base64;
    const unsigned char *data;
    size_t               len;
};

/* A DistributionEnvelope to build. addresses and sender are URIs
 * ("urn:nhs-uk:addressing:ods:F84003"); audit_identity a URI too
 * ("urn:nhs-uk:identity:ods:R1H"). interaction NULL: no interaction spec;
 * the two ack flags are written as handlingSpecification specs (only
 * when true). */
struct itk_out_envelope {
    const char                   *service;
    const char                   *tracking_id;   /* NULL: a fresh UUID */
    const char *const            *addresses;
    size_t                        n_addresses;
    const char                   *audit_identity;
    const char                   *sender;
    const char                   *interaction;
    bool                          infack_requested, ack_requested;
    const struct itk_out_payload *payloads;
    size_t                        n_payloads;
};

/* The bare DistributionEnvelope (XML declaration first), as a transform
 * stores it for an itk destination. itk_parse takes it back. */
int itk_build_envelope(struct buf *out, const struct itk_out_envelope *e);

/* A SOAP 1.1 request around a serialised DistributionEnvelope (de, as in
 * itk_envelope.distribution_xml, without an XML declaration of its own):
 * header wsa:MessageID (message_id, NULL: "uuid:" + fresh UUID),
 * wsa:Action (action), wsa:To (to, NULL: none), wsa:From/wsa:Address
 * (from, NULL: none). */
int itk_soap_wrap(struct buf *out, const char *de, size_t de_len, const char *message_id,
                  const char *action, const char *to, const char *from);

/* The infrastructure acknowledgement of a request (ITK
 * InfrastructureResponse): a whole SOAP request, service
 * ITK_SERVICE_INFACK, addressed to req's sender, sent from and reported
 * by ods_code ("urn:nhs-uk:addressing:ods:CODE" and
 * "urn:nhs-uk:identity:ods:CODE"), trackingIdRef = req's tracking id,
 * serviceRef = req's service, result "OK" or "Failure" (then an
 * errorInfo with err_code and err_text). */
int itk_infack_build(struct buf *out, const struct itk_envelope *req, const char *ods_code,
                     bool ok, const char *err_code, const char *err_text);

/* ---------------------------------------------- responses (itk_soap.c) */

enum itk_response_kind {
    ITK_RESPONSE_OK,        /* SimpleMessageResponse "OK" (or an empty 2xx body) */
    ITK_RESPONSE_FAULT,     /* a SOAP Fault: code and text filled */
    ITK_RESPONSE_OTHER,     /* anything else: text says what it was */
};

struct itk_response {
    enum itk_response_kind kind;
    char code[16];          /* the ITK ErrorCode, or the faultcode when none */
    char text[512];         /* ErrorText, else faultstring; or what was wrong */
};

/* Read a SOAP response body (parsed with the same safe settings as
 * itk_parse, limited to max_bytes, 0: ITK_DEFAULT_MAX_BYTES). */
void itk_response_parse(const char *body, size_t len, size_t max_bytes,
                        struct itk_response *out);

/* ---------------------------------------------- letters (itk_mdm.c) */

struct hl7_msg;

/* ITK to HL7 v2: an MDM^T02 for the envelope's first payload. Message
 * settings come from opts (NULL fields: defaults). */
struct itk_mdm_opts {
    const char *sending_app;      /* MSH-3; NULL: "HL7BROKER" */
    const char *receiving_app;    /* MSH-5; NULL: "" */
};

/* MSH (MSH-4 = sender's ODS code, MSH-6 = first address's ODS code,
 * MSH-7 = the CDA effectiveTime or now, MSH-9 MDM^T02^MDM_T02, MSH-10 =
 * tracking id, MSH-11 P, MSH-12 2.4), EVN, PID (PID-3 = the CDA NHS
 * number ^^^NHS^NH, name and birth time and sex from the record target),
 * PV1 (class U), TXA (type from the CDA code, activity time, unique
 * document number = the CDA id, completion AU), OBX type ED carrying the
 * payload base64: ^<type>^<subtype>^Base64^<data> from its mime type.
 * Returns 0, or -1 with why (no payload, ...). */
int itk_to_mdm(const struct itk_envelope *env, const struct itk_mdm_opts *opts,
               struct buf *out, char *why, size_t whylen);

/* HL7 v2 MDM^T02 or T04 to a bare DistributionEnvelope: the first OBX of
 * type ED is decoded (Base64, or A for text) and becomes the one payload,
 * base64="true", mime type from OBX-5.2/5.3. */
struct mdm_itk_opts {
    const char *service;          /* NULL: ITK_SERVICE_CDA */
    const char *profile_id;       /* NULL: none */
    const char *interaction;      /* NULL: none */
    const char *sender_ods;       /* required: senderAddress and auditIdentity */
    const char *address;          /* a URI or an ODS code; NULL: MSH-6.1 as an ODS code */
    bool        infack_requested, ack_requested;
};
/* The tracking id is itk_uuid_from(MSH-3, MSH-4, MSH-10), so a resend
 * carries the same one. Returns 0, or -1 with why (not MDM, no ED OBX,
 * bad base64, no address). */
int mdm_to_itk(const struct hl7_msg *m, const struct mdm_itk_opts *opts, struct buf *out,
               char *why, size_t whylen);

#endif
