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

#endif
