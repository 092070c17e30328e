/*
 * route.h: routes (DESIGN.md §6): filter expressions, transforms and
 * lookup tables, compiled once when the config loads, then run on each
 * message at ingest. A route takes messages from some sources, keeps
 * those its `when` expression accepts, transforms a copy, and names the
 * destinations that receive the resulting bytes.
 *
 * Everything here is pure: no I/O after compilation (tables and key files
 * are read when compiling), no global state, safe to run on any thread.
 */
#ifndef HL7BROKER_ROUTE_H
#define HL7BROKER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "hl7.h"

struct config;
struct config_route;
struct config_table;

/* A compile or run error: where and what, ready to print. For config
 * errors: "FILE:LINE: route NAME: setting SETTING: column N: TEXT". */
struct route_error {
    char     route[64];     /* "" when not about one route */
    char     setting[64];   /* "when", "transform[2].map", ... */
    unsigned column;        /* 1-based column in the expression; 0: none */
    char     text[256];
    char     msg[512];      /* the whole line */
};

/* ------------------------------------------------------------ tables */

/* Lookup tables from CSV files (RFC 4180: quoted fields, doubled quotes,
 * CRLF or LF; an optional header row, recognised when `header = true` in
 * the table's config or when the first row is "key,value"): the first
 * column is the key, the second the value; more columns are an error.
 * Duplicate keys are an error naming both lines. */
struct route_tables;

int  route_tables_load(const struct config *cfg, struct route_tables **out,
                       struct route_error *err);
void route_tables_free(struct route_tables *t);

/* The value for key in table name: NULL when the table or the key is
 * missing. The pointer lives as long as the tables. */
const char *route_table_get(const struct route_tables *t, const char *name,
                            const char *key, size_t key_len);
bool route_table_exists(const struct route_tables *t, const char *name);

/* ------------------------------------------------------- expressions */

/* A filter expression (`when`):
 *   expr    := or
 *   or      := and { "or" and }
 *   and     := unary { "and" unary }
 *   unary   := "not" unary | "(" expr ")" | compare
 *   compare := value [ ("=" | "!=" | "~") value | "in" "(" value { "," value } ")" ]
 *   value   := PATH | 'string' | "string" | NUMBER | FUNC "(" args ")"
 * PATH is a codec path (PID-3[2].1, OBX[3]-5, MSH-9.2); its value is the
 * decoded text (HL7 escapes resolved); an absent path reads as "". `~` is
 * a POSIX extended regular expression (compiled once), matched anywhere
 * unless anchored. A compare without an operator is true when the value
 * is not empty. Functions: exists(PATH), nhs_number_valid(PATH) (PID-3:
 * the NHS number repetition; otherwise the value itself),
 * in_table(PATH, 'table'), objected(PATH, 'purpose'). Keywords are lower
 * case.
 *
 * On ITK messages (router_run_itk) PATH may also be a metadata name:
 *   itk.service       header service ("urn:nhs-itk:services:201005:...")
 *   itk.interaction   the handlingSpecification interaction id
 *   itk.sender        the sender's ODS code (senderAddress
 *                     "urn:nhs-uk:addressing:ods:R1H" reads "R1H"); a
 *                     sender that is not an ODS URI reads as the URI
 *   itk.address       every address, each as itk.sender reads (ODS code,
 *                     else the URI): multi-valued. A bare itk.address, =,
 *                     ~, in, exists() and in_table() are true when ANY
 *                     address makes them true; != is true when NO
 *                     address equals the value (not (itk.address = X))
 *   itk.tracking_id   header trackingid
 *   itk.profile       the first manifest item's profileid
 *   cda.nhs_number    the NHS number of the first CDA payload's record
 *                     target (for objected() and nhs_number_valid())
 * An absent one reads as "". Other names under itk. and cda. do not
 * compile. On an HL7 v2 message the metadata names read as "", and on an
 * ITK message the HL7 paths (PID-3, MSH-9.2, ...) do. */
struct route_expr;

int  route_expr_compile(const char *text, const struct route_tables *tables,
                        struct route_expr **out, struct route_error *err);
void route_expr_free(struct route_expr *e);

/* Evaluate on m. When the result is false and why is not NULL, why gets
 * the text of the innermost clause that made it false and what the
 * message held ("MSH-9.2 in ('A01','A02'): MSH-9.2 is 'A08'"). */
bool route_expr_eval(const struct route_expr *e, const struct hl7_msg *m, struct buf *why);

/* The same on an ITK message (env from itk_parse): the metadata names read
 * its values, the HL7 paths read as "". */
struct itk_envelope;
bool route_expr_eval_itk(const struct route_expr *e, const struct itk_envelope *env,
                         struct buf *why);

/* The metadata names above, in that order, NULL-terminated; and what the
 * i-th value of one reads on env, as filters read it (NULL: absent, or no
 * i-th value: only itk.address has more than one). */
extern const char *const *const route_itk_paths;
const char *route_itk_value(const struct itk_envelope *env, const char *name, size_t i);

/* -------------------------------------------------------- transforms */

/* A route's transform list (the config's `transform = ( {...}, ... )`),
 * run in order on an editable copy of the message:
 *   { set = PATH; value = "text"; }      set a value (escaped for the message)
 *   { set = PATH; from = PATH; }         set from another path's decoded value
 *   { copy = PATH; to = PATH; }          copy raw, structure and all
 *   { clear = PATH; }                    empty the element
 *   { delete_segment = "NK1"; [when = "expr";] }   every such segment (that matches)
 *   { map = PATH; table = "name"; [default = "text";] }
 *                                        replace the value by the table's;
 *                                        no entry and no default: a transform error
 *   { pseudonymise = PATH; key_file = "file"; }
 *                                        HMAC-SHA-256 of the value under the key,
 *                                        lower-case hex; stable across restarts
 *   { redact = PATH; [with = "text";] }  every repetition's value replaced
 *                                        (default: empty)
 *   { encoding = "er7" | "json"; }       the output encoding (default er7);
 *                                        the JSON shape is in README.md
 *   { convert = "itk-to-mdm"; [sending_app = "X"; receiving_app = "Y";] }
 *                                        an ITK message to the HL7 v2 MDM^T02
 *                                        itk_to_mdm() makes (MSH-3/MSH-5 from
 *                                        the two options); only as the FIRST
 *                                        step, and the steps after it edit
 *                                        that MDM^T02. On an HL7 v2 message:
 *                                        a transform error
 *   { convert = "mdm-to-itk"; sender_ods = "R1H"; [service = "URI";
 *     profile_id = "URI"; interaction = "URI"; address = "F84003" | "URI";
 *     infack_requested = true|false; ack_requested = true|false;] }
 *                                        an HL7 v2 MDM^T02/T04 (its first ED
 *                                        OBX) to the bare DistributionEnvelope
 *                                        mdm_to_itk() makes, for an itk
 *                                        destination; only as the LAST step,
 *                                        without an encoding. address
 *                                        defaults to MSH-6.1 as an ODS code,
 *                                        service to SendCDADocument-v2-0
 * On an ITK message (router_run_itk) a route with transforms must begin
 * with itk-to-mdm: any other first step is a transform error saying so;
 * a route without transforms passes the request on as received.
 * An empty value at the source path of set/map/pseudonymise leaves the
 * target as it is.
 * Where they act: set and copy write one place (the first segment of the
 * name unless the path gives [n]). clear, map, pseudonymise and redact act
 * on every segment of the name unless the path gives [n], and for a
 * component path on every repetition unless it gives one; map,
 * pseudonymise and redact change only elements holding a value (not
 * empty, not the HL7 null ""). redact of a field with an empty `with`
 * empties the field; otherwise each repetition becomes `with`. The key
 * file: at least 32 bytes (trailing white space is not part of the key),
 * not readable or writable by every user. */
struct route_transforms;

int  route_transforms_compile(const struct config_route *r, const struct route_tables *tables,
                              struct route_transforms **out, struct route_error *err);
void route_transforms_free(struct route_transforms *t);

/* Apply to m (edited in place) and write the bytes a destination receives
 * into out (appended; ER7 segments end in CR). Returns 0, or -1 with err
 * saying which transform failed and why. */
int route_transforms_apply(const struct route_transforms *t, struct hl7_msg *m,
                           struct buf *out, struct route_error *err);

/* The JSON form of a message (used by encoding = "json"). */
int route_to_json(const struct hl7_msg *m, struct buf *out);

/* ------------------------------------------------------------ router */

/* Every route of a config, compiled. */
struct router;

/* Compile every route (and the tables). Every error is reported through
 * report (one call each), and the result is NULL when there was any (when
 * the tables do not load, only their error: routes are not compiled). The
 * router keeps copies of what it needs: cfg may be freed before it. */
typedef void (*route_report_fn)(void *ctx, const struct route_error *err);
struct router *router_new(const struct config *cfg, route_report_fn report, void *ctx);

/* router_new reads the config's objections file (objections.file) into a
 * register of its own. router_new_shared uses reg instead (NULL: none,
 * and objected() does not compile), keeping a reference: the daemon's
 * register, which run-time changes reach. */
struct objections;
struct router *router_new_shared(const struct config *cfg, struct objections *reg,
                                 route_report_fn report, void *ctx);

/* An objections file error as a route error ("FILE:LINE: objections.file:
 * WHY", the config's line). */
void router_objections_error(const struct config *cfg, const char *why, struct route_error *e);
void router_free(struct router *r);

/* What routing did with one message. */
enum route_verdict { ROUTE_MATCHED, ROUTE_NOT_FROM_SOURCE, ROUTE_FILTERED, ROUTE_ERROR };

struct route_result {
    const char        *route;        /* the route's name */
    enum route_verdict verdict;
    const char        *why;          /* FILTERED: the failing clause; ERROR: the error */
    bool               accept_errors;/* ERROR: the route's on_transform_error is "accept" */
    const char        *payload;      /* MATCHED: the transformed bytes */
    size_t             payload_len;
    const char *const *to;           /* MATCHED: destination names */
    size_t             n_to;
};

/* Run every route on raw (from source) and call fn once per route, in
 * config order. Strings passed to fn live until fn returns. Returns the
 * number of routes that matched, or -1 when raw does not parse. */
typedef void (*route_result_fn)(void *ctx, const struct route_result *res);
int router_run(const struct router *r, const char *source, const char *raw, size_t len,
               route_result_fn fn, void *ctx);

/* Run every route on an ITK message: env is raw parsed (itk_parse), raw
 * the request as received. As router_run (returns the routes matched).
 * Filters read the metadata paths itk.service, itk.interaction,
 * itk.sender, itk.address (true for a compare when any address matches),
 * itk.tracking_id, itk.profile and cda.nhs_number (HL7 paths read as
 * empty; on an HL7 v2 message the metadata paths read as empty). A route
 * without transforms passes raw on unchanged. Transforms must begin with
 * { convert = "itk-to-mdm"; }: the HL7 v2 steps after it edit the
 * MDM^T02 it makes; any other first step is a transform error saying so.
 * On an HL7 v2 message { convert = "mdm-to-itk"; ... } (the last step)
 * makes a DistributionEnvelope for an itk destination. */
int router_run_itk(const struct router *r, const char *source, const struct itk_envelope *env,
                   const char *raw, size_t len, route_result_fn fn, void *ctx);

#endif
