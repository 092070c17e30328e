/*
 * admin.h: the admin HTTP server (DESIGN.md §7, §8): /healthz, /readyz,
 * /metrics (Prometheus) and the JSON API under /api/v1/, on the daemon's
 * event loop, optionally under TLS, every endpoint but /healthz and
 * /metrics behind a bearer token from broker.admin.token_file.
 *
 * Endpoints are rows of one table in admin.c (method, path pattern,
 * whether a token is needed, the query parameters allowed, a handler).
 * A handler gets a struct admin_request and answers through the helpers
 * below: JSON replies (jansson), errors, validated query parameters,
 * paging, the token owner's name, and the audit record.
 */
#ifndef HL7BROKER_ADMIN_H
#define HL7BROKER_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;
struct config;
struct store;
struct ingest;
struct sources;
struct delivery_engine;
struct buf;
struct objections;

/* POST /api/v1/reload calls back into the daemon: do what SIGHUP does
 * (read the config file again; a bad one leaves the running config in
 * place). Returns 0 when the new config runs, or -1 with every error
 * appended to errors, one line each. Called from the event loop, inside
 * a request: it may replace the delivery engine (admin_set_delivery) and
 * the tokens (admin_reload). */
typedef int (*admin_reload_fn)(void *ctx, struct buf *errors);

/* ---------------------------------------------------------- tokens
 *
 * The token file: one "NAME TOKEN" per line, separated by spaces or tabs;
 * lines whose first non-blank character is # are comments; blank lines
 * are skipped. NAME ([A-Za-z0-9._@-], 1..64) is who the audit log names;
 * TOKEN is 16..512 printable ASCII characters without spaces. No two
 * names and no two tokens alike. The file must be a regular file that
 * neither its group nor other users can read or write (chmod 600), at
 * most 1 MiB, and hold at least one token. */

#define ADMIN_TOKEN_MIN 16
#define ADMIN_TOKEN_MAX 512
#define ADMIN_NAME_MAX  64

struct admin_token {
    char          *name;
    unsigned char  digest[32];   /* SHA-256 of the token: compared, never the token */
};

/* Zero-initialise; admin_tokens_free() releases. */
struct admin_tokens {
    struct admin_token *v;
    size_t              n;
};

/* Parse text (len bytes) as a token file called path (for errors). On
 * error returns -1 with err "PATH:LINE: what is wrong" (the token itself
 * never quoted) and *out empty. */
int  admin_tokens_parse(const char *text, size_t len, const char *path,
                        struct admin_tokens *out, char *err, size_t errlen);
/* Check the file's type and mode, read it, parse it. */
int  admin_tokens_load(const char *path, struct admin_tokens *out, char *err, size_t errlen);
void admin_tokens_free(struct admin_tokens *t);
/* The name owning token (len bytes), or NULL. Takes the same time
 * whichever token (if any) matches: every entry is compared, in constant
 * time (CRYPTO_memcmp over SHA-256 digests). */
const char *admin_tokens_check(const struct admin_tokens *t, const char *token, size_t len);

/* ---------------------------------------------------------- the server */

struct admin;

/* What the server reads. Every pointer must outlive the server; cfg is
 * the daemon's running config (read again at every request, so a reload
 * shows). */
struct admin_opts {
    struct event_base      *base;
    const struct config    *cfg;
    struct store           *store;
    struct ingest          *ingest;
    struct sources         *sources;
    struct delivery_engine *delivery;   /* may be NULL; see admin_set_delivery */
    admin_reload_fn         reload;     /* NULL: POST /api/v1/reload answers 409 */
    void                   *reload_ctx;
    struct objections      *objections;  /* the register; NULL: the objections API answers 409 */
};

/* Load the tokens, make the TLS context (broker.admin.tls), bind
 * broker.admin.listen. Returns 0, or -1 with err filled (nothing left
 * open). Not called when broker.admin.enabled is false. */
int  admin_new(const struct admin_opts *o, struct admin **out, char *err, size_t errlen);
void admin_free(struct admin *a);   /* NULL allowed */

/* SIGHUP: read the running config's token_file again. A bad file keeps
 * the tokens in use (logged); returns 0 or -1. */
int  admin_reload(struct admin *a);

/* The delivery engine changed (reloads restart it). Call with NULL
 * before freeing the old engine: its counters are kept and added to the
 * new engine's, so the *_total counters only reset at a restart. */
void admin_set_delivery(struct admin *a, struct delivery_engine *e);

/* The daemon is shutting down: /readyz answers 503 from now on. */
void admin_set_stopping(struct admin *a);

/* ---------------------------------------------------------- for handlers */

struct admin_request;

/* The token owner's name ("" on endpoints without a token). */
const char *admin_actor(const struct admin_request *r);
/* The peer as "ip:port". */
const char *admin_peer(const struct admin_request *r);
/* The i-th "*" segment of the endpoint's path pattern, URL-decoded;
 * NULL when there is no such segment. */
const char *admin_path_arg(const struct admin_request *r, unsigned i);
/* The request body (POST/PUT), NUL-terminated; len may be NULL. */
const char *admin_body(const struct admin_request *r, size_t *len);
struct admin *admin_of(const struct admin_request *r);
/* What the server was given (the config as running now; the engine may be
 * NULL while delivery is not running). */
const struct config    *admin_config(const struct admin *a);
struct store           *admin_store(const struct admin *a);
struct delivery_engine *admin_delivery(const struct admin *a);
struct objections      *admin_objections(const struct admin *a);   /* may be NULL */
/* Call the daemon's reload (see admin_reload_fn); -1 with a line in
 * errors when there is none. */
int admin_call_reload(struct admin *a, struct buf *errors);

/* Replies; exactly one per request. admin_reply_json takes body's
 * reference (it is serialised and freed). admin_reply_error answers
 * {"error": {"status": N, "code": "...", "message": "..."}}. */
void admin_reply_json(struct admin_request *r, int status, json_t *body);
void admin_reply_error(struct admin_request *r, int status, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void admin_reply_text(struct admin_request *r, int status, const char *content_type,
                      const char *text, size_t len);
/* Add a response header before the reply (ignored after it). */
void admin_reply_header(struct admin_request *r, const char *name, const char *value);

/* Query parameters (already checked against the endpoint's list). Each
 * getter replies 400 itself and returns -1 when a value is not valid;
 * the handler then just returns. An absent parameter gives def. */
const char *admin_query(const struct admin_request *r, const char *name);
int admin_query_u64(struct admin_request *r, const char *name, uint64_t def, uint64_t min,
                    uint64_t max, uint64_t *out);
int admin_query_bool(struct admin_request *r, const char *name, bool def, bool *out);

/* Paging: ?limit= (1..ADMIN_PAGE_MAX, default ADMIN_PAGE_DEFAULT) and
 * ?offset= (default 0). List endpoints allow both ("limit", "offset" in
 * their parameter list). */
#define ADMIN_PAGE_DEFAULT 100
#define ADMIN_PAGE_MAX     1000
struct admin_page {
    uint64_t limit, offset;
};
int admin_query_page(struct admin_request *r, struct admin_page *p);
/* Add {"paging": {"offset", "limit", "total", "next_offset" (null at the
 * end)}} to obj. */
void admin_page_json(json_t *obj, const struct admin_page *p, uint64_t total);

/* Write an audit record (one store transaction of its own) with the
 * actor "admin=NAME peer=IP:PORT". Returns 0 or a store code (logged). */
int admin_audit(struct admin_request *r, const char *action, const char *subject,
                const char *outcome, const char *details);

/* ---------------------------------------------------------- for tests */

/* A time as the API takes it: milliseconds since the Unix epoch (digits),
 * or ISO 8601 in UTC: YYYY-MM-DD, YYYY-MM-DDTHH:MM, ...:SS, ...:SS.fff,
 * each optionally ending in Z (a space may stand for the T). Returns 0,
 * or -1 for anything else (a field out of range, an offset other than Z,
 * a year before 1970 or after 9999). */
int admin_parse_time(const char *s, uint64_t *ms);
/* ms as "YYYY-MM-DDTHH:MM:SS.fffZ" into out (at least 32 bytes). */
void admin_format_time(uint64_t ms, char *out, size_t len);

/* The Prometheus text of the current figures into a malloc'd string
 * (caller frees); NULL without memory. */
char *admin_metrics_text(struct admin *a, size_t *len);

#endif
