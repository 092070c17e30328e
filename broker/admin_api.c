/*
 * admin_api.c: the admin JSON API beyond the figures (see admin.h and the
 * README's Operations section): queues and dead letters, pause and resume,
 * message search, detail and replay, reload, and the audit log. Every
 * call that returns message content or changes something is audited.
 */
#include "admin_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "config.h"
#include "delivery.h"
#include "log.h"
#include "objections.h"
#include "itk.h"
#include "store.h"

#define COMPONENT "admin"

/* The search looks at this many messages at most unless told otherwise. */
#define SCAN_DEFAULT 100000u
#define SCAN_MAX     10000000u
#define AUDIT_DEFAULT 100u

const char *const admin_api_seq_params[] = { "seq", NULL };
const char *const admin_api_search_params[] = {
    "nhs_number", "control_id", "type", "source", "destination", "state", "since", "until",
    "limit", "offset", "scan_limit", NULL,
};
const char *const admin_api_replay_params[] = { "to", NULL };
const char *const admin_api_audit_params[] = { "limit", NULL };

/* ================================================================ time */

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    /* Howard Hinnant's algorithm: days since 1970-01-01 */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static unsigned month_days(unsigned y, unsigned m)
{
    static const unsigned n[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : n[m - 1];
}

int admin_parse_time(const char *s, uint64_t *ms)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return -1;
    if (strspn(s, "0123456789") == n) {
        if (n > 15)   /* beyond the year 9999 */
            return -1;
        *ms = strtoull(s, NULL, 10);
        return 0;
    }
    unsigned y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (n > 0 && s[n - 1] == 'Z')
        n--;
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return -1;
    size_t i = 10;
    if (i < n) {
        if ((s[i] != 'T' && s[i] != ' ') || n < i + 6 || !digits(s + i + 1, 2, &h) ||
            s[i + 3] != ':' || !digits(s + i + 4, 2, &mi))
            return -1;
        i += 6;
        if (i < n) {
            if (s[i] != ':' || n < i + 3 || !digits(s + i + 1, 2, &sec))
                return -1;
            i += 3;
            if (i < n) {
                if (s[i] != '.' || n != i + 4 || !digits(s + i + 1, 3, &frac))
                    return -1;
                i += 4;
            }
        }
    }
    if (i != n || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 ||
        d > month_days(y, mo) || h > 23 || mi > 59 || sec > 59)
        return -1;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((uint64_t)days * 86400 + h * 3600u + mi * 60u + sec) * 1000 + frac;
    return 0;
}

void admin_format_time(uint64_t ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, len, "?");
        return;
    }
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(ms % 1000));
}

/* ================================================================ helpers */

static json_t *time_json(uint64_t ms)
{
    char t[40];
    admin_format_time(ms, t, sizeof t);
    return json_string(t);
}

/* Bytes as a JSON string: as they are when they are UTF-8, else each byte
 * as the character of that code (Latin-1), so nothing is lost. */
static json_t *bytes_json(const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    struct buf b = { 0 };
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x80)
            buf_putc(&b, (char)c);
        else {
            buf_putc(&b, (char)(0xc0 | c >> 6));
            buf_putc(&b, (char)(0x80 | (c & 0x3f)));
        }
    }
    j = json_stringn(b.p ? b.p : "", b.len);
    buf_free(&b);
    return j;
}

static const char *state_name(unsigned state)
{
    switch (state) {
    case STORE_MSG_ACCEPTED: return "accepted";
    case STORE_MSG_UNROUTED: return "unrouted";
    case STORE_MSG_ROUTED:   return "routed";
    case STORE_MSG_ERROR:    return "error";
    }
    return "unknown";
}

static int state_parse(const char *s)
{
    for (unsigned i = STORE_MSG_ACCEPTED; i <= STORE_MSG_ERROR; i++)
        if (strcmp(s, state_name(i)) == 0)
            return (int)i;
    return -1;
}

/* "ADT^A01", "ADT", or "" when the message has no type. */
static void type_text(const char *code, const char *trigger, char *out, size_t len)
{
    snprintf(out, len, "%s%s%s", code, *trigger ? "^" : "", trigger);
}

/* Printable ASCII, 1..max bytes: names and values taken from a query. */
static bool plain(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static void store_failed(struct admin_request *r, int rc)
{
    log_error(COMPONENT, "store read failed", "path_error=%s detail=%s", store_strerror(rc),
              store_last_error(admin_store(admin_of(r))));
    admin_reply_error(r, 500, "store", "the store failed: %s", store_strerror(rc));
}

/* The configured destination named by the path, or NULL after a 404. */
static const struct config_destination *path_dest(struct admin_request *r)
{
    const char *name = admin_path_arg(r, 0);
    const struct config *cfg = admin_config(admin_of(r));
    for (size_t i = 0; name && i < cfg->n_destinations; i++)
        if (strcmp(cfg->destinations[i].name, name) == 0)
            return &cfg->destinations[i];
    admin_reply_error(r, 404, "not_found", "no destination is named %.200s", name ? name : "");
    return NULL;
}

/* A message id from the path (1..2^63), or 0 after a 400. */
static uint64_t path_msg_id(struct admin_request *r)
{
    const char *s = admin_path_arg(r, 0);
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 19 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0') ||
        strtoull(s, NULL, 10) == 0 || strtoull(s, NULL, 10) > INT64_MAX) {
        admin_reply_error(r, 400, "bad_id", "a message id is a whole number from 1 to %lld",
                          (long long)INT64_MAX);
        return 0;
    }
    return strtoull(s, NULL, 10);
}

/* Run a write transaction: fn(t, arg), committed; the map grown and the
 * whole redone when it is full. Outcomes the engine holds are written
 * first, so the outbox is as it knows it. */
static int write_txn(struct admin_request *r, int (*fn)(struct store_txn *t, void *arg),
                     void *arg)
{
    struct admin *a = admin_of(r);
    struct store *s = admin_store(a);
    if (admin_delivery(a))
        delivery_flush(admin_delivery(a));
    int rc;
    for (;;) {
        struct store_txn *t;
        if ((rc = store_begin(s, &t)))
            break;
        if ((rc = fn(t, arg)))
            store_abort(t);
        else
            rc = store_commit(t);
        if (rc != STORE_E_MAP_FULL || (rc = store_grow(s)))
            break;
    }
    return rc;
}

/* ================================================================ queues */

struct list_ctx {
    json_t *items;
    bool    dead;
};

static int queue_item(void *ctx, const struct store_queue_item *it)
{
    struct list_ctx *c = ctx;
    char type[128];
    type_text(it->code, it->trigger, type, sizeof type);
    json_t *o = json_pack("{s:I,s:I,s:I,s:o,s:o}", "seq", (json_int_t)it->seq,
                          "msg_id", (json_int_t)it->msg_id,
                          "received_ms", (json_int_t)it->received_ms,
                          "control_id", bytes_json(it->control_id, strlen(it->control_id)),
                          "type", bytes_json(type, strlen(type)));
    if (!o)
        return 1;
    if (c->dead) {
        json_object_set_new(o, "error", bytes_json(it->error, strlen(it->error)));
    } else {
        json_object_set_new(o, "attempts", json_integer(it->attempts));
        json_object_set_new(o, "next_attempt_ms", json_integer((json_int_t)it->next_attempt_ms));
        json_object_set_new(o, "last_error", bytes_json(it->error, strlen(it->error)));
    }
    json_array_append_new(c->items, o);
    return 0;
}

static void list(struct admin_request *r, bool dead)
{
    struct admin_page p;
    const struct config_destination *dc = path_dest(r);
    if (!dc || admin_query_page(r, &p))
        return;
    struct store *s = admin_store(admin_of(r));
    uint32_t id;
    uint64_t total = 0;
    struct list_ctx c = { json_array(), dead };
    int rc = store_dest_find(s, dc->name, &id);
    if (rc == 0)
        rc = store_queue_list(s, id, dead, p.offset, p.limit, &total, queue_item, &c);
    if (rc && rc != STORE_E_NOT_FOUND) {
        json_decref(c.items);
        store_failed(r, rc);
        return;
    }
    json_t *body = json_pack("{s:s,s:I,s:o}", "destination", dc->name, "total",
                             (json_int_t)total, "items", c.items);
    admin_page_json(body, &p, total);
    admin_reply_json(r, 200, body);
}

void admin_api_queue(struct admin_request *r)
{
    list(r, false);
}

void admin_api_dead(struct admin_request *r)
{
    list(r, true);
}

static void pause_resume(struct admin_request *r, bool pause)
{
    const struct config_destination *dc = path_dest(r);
    if (!dc)
        return;
    struct delivery_engine *e = admin_delivery(admin_of(r));
    char subject[512];
    snprintf(subject, sizeof subject, "destination=%s", dc->name);
    if (!e || (pause ? delivery_pause(e, dc->name) : delivery_resume(e, dc->name))) {
        admin_audit(r, pause ? "pause" : "resume", subject, "refused", "delivery is not running");
        admin_reply_error(r, 409, "not_running", "delivery is not running (see the log)");
        return;
    }
    admin_audit(r, pause ? "pause" : "resume", subject, "ok", "");
    log_info(COMPONENT, pause ? "destination paused" : "destination resumed",
             "destination=%s admin=%s", dc->name, admin_actor(r));
    admin_reply_json(r, 200, json_pack("{s:s,s:b}", "destination", dc->name, "paused", pause));
}

void admin_api_pause(struct admin_request *r)
{
    pause_resume(r, true);
}

void admin_api_resume(struct admin_request *r)
{
    pause_resume(r, false);
}

struct dead_op {
    uint32_t id;
    uint64_t seq, n;
    bool     requeue;
};

static int dead_op_run(struct store_txn *t, void *arg)
{
    struct dead_op *o = arg;
    return o->requeue ? store_dead_requeue(t, o->id, o->seq, &o->n)
                      : store_dead_purge(t, o->id, o->seq, &o->n);
}

static void dead_change(struct admin_request *r, bool requeue)
{
    const struct config_destination *dc = path_dest(r);
    struct dead_op o = { .requeue = requeue };
    if (!dc || admin_query_u64(r, "seq", 0, 1, INT64_MAX, &o.seq))
        return;
    const char *action = requeue ? "requeue" : "purge";
    char subject[512], details[64] = "";
    snprintf(subject, sizeof subject, "destination=%s", dc->name);
    if (o.seq)
        snprintf(details, sizeof details, "seq=%llu", (unsigned long long)o.seq);
    struct store *s = admin_store(admin_of(r));
    int rc = store_dest_find(s, dc->name, &o.id);
    if (rc == 0)
        rc = write_txn(r, dead_op_run, &o);
    if (rc == STORE_E_NOT_FOUND && !o.seq) {
        rc = 0;   /* nothing ever queued there: nothing dead */
        o.n = 0;
    }
    if (rc == STORE_E_NOT_FOUND) {
        admin_audit(r, action, subject, "not_found", details);
        admin_reply_error(r, 404, "not_found", "%s has no dead letter %llu", dc->name,
                          (unsigned long long)o.seq);
        return;
    }
    if (rc) {
        admin_audit(r, action, subject, "failed", store_strerror(rc));
        store_failed(r, rc);
        return;
    }
    char d2[128];
    snprintf(d2, sizeof d2, "%s%scount=%llu", details, *details ? " " : "",
             (unsigned long long)o.n);
    admin_audit(r, action, subject, "ok", d2);
    log_info(COMPONENT, requeue ? "dead letters requeued" : "dead letters purged",
             "destination=%s count=%llu admin=%s", dc->name, (unsigned long long)o.n,
             admin_actor(r));
    if (requeue && admin_delivery(admin_of(r)))
        delivery_kick(admin_delivery(admin_of(r)));
    admin_reply_json(r, 200, json_pack("{s:s,s:I}", "destination", dc->name,
                                       requeue ? "requeued" : "purged", (json_int_t)o.n));
}

void admin_api_requeue(struct admin_request *r)
{
    dead_change(r, true);
}

void admin_api_purge(struct admin_request *r)
{
    dead_change(r, false);
}

/* ================================================================ messages */

static json_t *summary_json(uint64_t id, const struct store_msg *m)
{
    char type[256];
    type_text(m->code, m->trigger, type, sizeof type);
    return json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:s,s:o}", "id", (json_int_t)id,
                     "received_ms", (json_int_t)m->received_ms,
                     "received", time_json(m->received_ms),
                     "source", bytes_json(m->source, strlen(m->source)),
                     "type", bytes_json(type, strlen(type)),
                     "control_id", bytes_json(m->control_id, strlen(m->control_id)),
                     "nhs_number", bytes_json(m->nhs_number, strlen(m->nhs_number)),
                     "state", state_name(m->state),
                     "kind", bytes_json(m->kind, strlen(m->kind)));
}

struct search {
    struct store *store;
    const char   *control_id, *code, *trigger, *source;
    uint32_t      dest_id;
    bool          dest, dest_unknown;
    int           state;
    uint64_t      since, until;   /* until 0: none */
    uint64_t      offset, limit, matched;
    json_t       *items;
    int           rc;
};

static int search_one(void *ctx, uint64_t id, const struct store_msg *m)
{
    struct search *q = ctx;
    if ((q->control_id && strcmp(m->control_id, q->control_id) != 0) ||
        (q->code && strcmp(m->code, q->code) != 0) ||
        (q->trigger && strcmp(m->trigger, q->trigger) != 0) ||
        (q->source && strcmp(m->source, q->source) != 0) ||
        (q->state > 0 && m->state != q->state) || m->received_ms < q->since ||
        (q->until && m->received_ms >= q->until))
        return 0;
    if (q->dest) {
        bool yes = false;
        if (q->dest_unknown)
            return 0;
        if ((q->rc = store_has_payload(q->store, q->dest_id, id, &yes)))
            return 1;
        if (!yes)
            return 0;
    }
    if (q->matched >= q->offset && q->matched - q->offset < q->limit)
        json_array_append_new(q->items, summary_json(id, m));
    q->matched++;
    return 0;
}

/* An HL7 code such as ADT or A01: 1..20 of A-Z 0-9 _. */
static bool code_ok(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

void admin_api_search(struct admin_request *r)
{
    struct admin *a = admin_of(r);
    struct admin_page p;
    struct search q = { .store = admin_store(a), .state = -1 };
    uint64_t scan_limit;
    char code[32] = "", trigger[32] = "";
    if (admin_query_page(r, &p) ||
        admin_query_u64(r, "scan_limit", SCAN_DEFAULT, 1, SCAN_MAX, &scan_limit))
        return;
    q.offset = p.offset;
    q.limit = p.limit;
    const char *nhs = admin_query(r, "nhs_number");
    if (nhs && (strlen(nhs) != 10 || strspn(nhs, "0123456789") != 10)) {
        admin_reply_error(r, 400, "bad_parameter", "nhs_number must be 10 digits");
        return;
    }
    if ((q.control_id = admin_query(r, "control_id")) && !plain(q.control_id, 199)) {
        admin_reply_error(r, 400, "bad_parameter",
                          "control_id must be 1 to 199 printable ASCII characters");
        return;
    }
    const char *type = admin_query(r, "type");
    if (type) {
        const char *caret = strchr(type, '^');
        size_t cl = caret ? (size_t)(caret - type) : strlen(type);
        if (!code_ok(type, cl) || (caret && !code_ok(caret + 1, strlen(caret + 1)))) {
            admin_reply_error(r, 400, "bad_parameter",
                              "type must be a message code, or code^trigger (ADT, ADT^A01)");
            return;
        }
        memcpy(code, type, cl);
        q.code = code;
        if (caret) {
            snprintf(trigger, sizeof trigger, "%s", caret + 1);
            q.trigger = trigger;
        }
    }
    if ((q.source = admin_query(r, "source")) && !plain(q.source, 200)) {
        admin_reply_error(r, 400, "bad_parameter", "source must be a source name");
        return;
    }
    const char *dest = admin_query(r, "destination");
    if (dest) {
        const struct config *cfg = admin_config(a);
        bool known = false;
        for (size_t i = 0; i < cfg->n_destinations && !known; i++)
            known = strcmp(cfg->destinations[i].name, dest) == 0;
        if (!known) {
            admin_reply_error(r, 404, "not_found", "no destination is named %.200s", dest);
            return;
        }
        q.dest = true;
        int rc = store_dest_find(q.store, dest, &q.dest_id);
        if (rc == STORE_E_NOT_FOUND)
            q.dest_unknown = true;
        else if (rc) {
            store_failed(r, rc);
            return;
        }
    }
    const char *state = admin_query(r, "state");
    if (state && (q.state = state_parse(state)) < 0) {
        admin_reply_error(r, 400, "bad_parameter",
                          "state must be one of accepted, unrouted, routed, error");
        return;
    }
    const char *since = admin_query(r, "since"), *until = admin_query(r, "until");
    if ((since && admin_parse_time(since, &q.since)) ||
        (until && admin_parse_time(until, &q.until))) {
        admin_reply_error(r, 400, "bad_parameter", "%s must be milliseconds since the epoch or "
                          "an ISO 8601 UTC time (2024-05-01, 2024-05-01T13:45:00Z)",
                          since && admin_parse_time(since, &q.since) ? "since" : "until");
        return;
    }
    if (until && q.until <= q.since) {
        admin_reply_error(r, 400, "bad_parameter", "until must be later than since");
        return;
    }

    q.items = json_array();
    uint64_t scanned = 0;
    bool more = false;
    int rc = store_msg_scan(q.store, nhs, scan_limit, search_one, &q, &scanned, &more);
    if (!rc)
        rc = q.rc;
    if (rc) {
        json_decref(q.items);
        store_failed(r, rc);
        return;
    }
    /* Search results name patients: who looked, for what, is recorded. */
    struct buf det = { 0 };
    const char *const *pn = admin_api_search_params;
    for (size_t i = 0; pn[i]; i++) {
        const char *v = admin_query(r, pn[i]);
        if (v)
            buf_printf(&det, "%s%s=%.200s", det.len ? " " : "", pn[i], v);
    }
    buf_printf(&det, "%smatched=%llu", det.len ? " " : "", (unsigned long long)q.matched);
    admin_audit(r, "search", "messages", "ok", det.p);
    buf_free(&det);
    json_t *body = json_pack("{s:o,s:o,s:I,s:b}", "items", q.items,
                             "total", more ? json_null() : json_integer((json_int_t)q.matched),
                             "scanned", (json_int_t)scanned, "truncated", more);
    if (!more)
        admin_page_json(body, &p, q.matched);
    admin_reply_json(r, 200, body);
}

/* The segments of raw: each with its name and its fields, raw as
 * received: fields[i - 1] is SEG-i (for MSH, MSH-1 is the separator). */
static json_t *segments_json(const char *raw, size_t len)
{
    json_t *v = json_array();
    char sep = len > 3 && memcmp(raw, "MSH", 3) == 0 ? raw[3] : '|';
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && raw[j] != '\r' && raw[j] != '\n')
            j++;
        if (j > i) {
            const char *s = raw + i;
            size_t n = j - i;
            size_t nl = 0;
            while (nl < n && s[nl] != sep)
                nl++;
            json_t *fields = json_array();
            bool msh = nl == 3 && (memcmp(s, "MSH", 3) == 0 || memcmp(s, "FHS", 3) == 0 ||
                                   memcmp(s, "BHS", 3) == 0);
            size_t k = nl;
            if (msh && k < n) {
                json_array_append_new(fields, bytes_json(&sep, 1));
                k++;
                size_t e = k;
                while (e < n && s[e] != sep)
                    e++;
                json_array_append_new(fields, bytes_json(s + k, e - k));
                k = e;
            }
            while (k < n) {
                k++;   /* the separator */
                size_t e = k;
                while (e < n && s[e] != sep)
                    e++;
                json_array_append_new(fields, bytes_json(s + k, e - k));
                k = e;
            }
            json_array_append_new(v, json_pack("{s:o,s:o}", "name", bytes_json(s, nl),
                                               "fields", fields));
        }
        i = j + 1;
    }
    return v;
}

static json_t *opt_json(const char *s)
{
    return s ? bytes_json(s, strlen(s)) : json_null();
}

/* An ITK message's routing metadata and payloads (what itk.* and cda.*
 * paths read), or null when it no longer parses. */
static json_t *itk_json(const char *raw, size_t len)
{
    struct itk_envelope *env;
    if (itk_parse(raw, len, NULL, &env, NULL))
        return json_null();
    json_t *addr = json_array(), *pl = json_array();
    for (size_t i = 0; i < env->n_addresses; i++)
        json_array_append_new(addr, opt_json(env->addresses[i]));
    for (size_t i = 0; i < env->n_payloads; i++) {
        const struct itk_payload *p = &env->payloads[i];
        json_array_append_new(pl, json_pack("{s:o,s:o,s:o,s:b,s:I,s:o}",
            "id", opt_json(p->id), "mimetype", opt_json(p->mimetype),
            "profile_id", opt_json(p->profile_id), "base64", p->base64,
            "bytes", (json_int_t)p->len, "nhs_number", opt_json(p->nhs_number)));
    }
    json_t *o = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:b,s:o}",
        "service", opt_json(env->service), "interaction", opt_json(env->interaction),
        "tracking_id", opt_json(env->tracking_id), "sender", opt_json(env->sender),
        "audit_identity", opt_json(env->audit_identity), "profile", opt_json(env->profile),
        "message_id", opt_json(env->message_id), "addresses", addr,
        "infack_requested", env->infack_requested, "ack_requested", env->ack_requested,
        "payloads", pl);
    itk_free(env);
    return o;
}

static const char *delivery_status(int st)
{
    switch (st) {
    case STORE_DELIVERY_QUEUED: return "queued";
    case STORE_DELIVERY_DEAD:   return "dead";
    default:                    return "delivered";
    }
}

static int delivery_item(void *ctx, const struct store_delivery *d)
{
    json_t *o = json_pack("{s:o,s:s,s:I,s:o,s:o}",
                          "destination", bytes_json(d->dest, strlen(d->dest)),
                          "status", delivery_status(d->status),
                          "attempts", (json_int_t)d->attempts,
                          "last_error", bytes_json(d->error, strlen(d->error)),
                          "payload", bytes_json(d->payload, d->len));
    if (o && d->seq)
        json_object_set_new(o, "seq", json_integer((json_int_t)d->seq));
    json_array_append_new(ctx, o);
    return 0;
}

void admin_api_message(struct admin_request *r)
{
    uint64_t id = path_msg_id(r);
    if (!id)
        return;
    struct store *s = admin_store(admin_of(r));
    struct store_msg m;
    void *owner = NULL;
    char subject[64];
    snprintf(subject, sizeof subject, "msg=%llu", (unsigned long long)id);
    int rc = store_get_message(s, id, &m, &owner);
    if (rc == STORE_E_NOT_FOUND) {
        admin_reply_error(r, 404, "not_found", "no message %llu", (unsigned long long)id);
        return;
    }
    if (rc) {
        store_failed(r, rc);
        return;
    }
    json_t *deliveries = json_array();
    if ((rc = store_msg_deliveries(s, id, delivery_item, deliveries))) {
        json_decref(deliveries);
        free(owner);
        store_failed(r, rc);
        return;
    }
    json_t *body = summary_json(id, &m);
    json_object_set_new(body, "peer", bytes_json(m.peer, strlen(m.peer)));
    json_object_set_new(body, "tls_subject", bytes_json(m.tls_subject, strlen(m.tls_subject)));
    json_object_set_new(body, "note", bytes_json(m.note, strlen(m.note)));
    json_object_set_new(body, "raw", bytes_json(m.raw, m.raw_len));
    json_object_set_new(body, "raw_bytes", json_integer((json_int_t)m.raw_len));
    bool itk = strcmp(m.kind, "itk") == 0;
    json_object_set_new(body, "segments", itk ? json_array() : segments_json(m.raw, m.raw_len));
    if (itk)
        json_object_set_new(body, "itk", itk_json(m.raw, m.raw_len));
    json_object_set_new(body, "deliveries", deliveries);
    free(owner);
    admin_audit(r, "read", subject, "ok", "");
    admin_reply_json(r, 200, body);
}

struct replay {
    uint64_t     msg_id;
    const char **dests;
    size_t       n;
    uint64_t    *seqs;
};

static int replay_run(struct store_txn *t, void *arg)
{
    struct replay *p = arg;
    int rc = 0;
    for (size_t i = 0; i < p->n && !rc; i++)
        rc = store_replay(t, p->dests[i], p->msg_id, &p->seqs[i]);
    return rc;
}

void admin_api_replay(struct admin_request *r)
{
    uint64_t id = path_msg_id(r);
    if (!id)
        return;
    struct admin *a = admin_of(r);
    const struct config *cfg = admin_config(a);
    struct store *s = admin_store(a);
    const char *to = admin_query(r, "to");
    char subject[64];
    snprintf(subject, sizeof subject, "msg=%llu", (unsigned long long)id);
    struct replay p = { .msg_id = id };
    p.dests = calloc(cfg->n_destinations + 1, sizeof *p.dests);
    p.seqs = calloc(cfg->n_destinations + 1, sizeof *p.seqs);
    struct store_msg m;
    void *owner = NULL;
    if (!p.dests || !p.seqs) {
        admin_reply_error(r, 500, "internal", "out of memory");
        goto out;
    }
    int rc = store_get_message(s, id, &m, &owner);
    free(owner);
    if (rc == STORE_E_NOT_FOUND) {
        admin_reply_error(r, 404, "not_found", "no message %llu", (unsigned long long)id);
        goto out;
    }
    if (rc) {
        store_failed(r, rc);
        goto out;
    }
    for (size_t i = 0; i < cfg->n_destinations; i++) {
        const char *name = cfg->destinations[i].name;
        if (to) {
            if (strcmp(name, to) == 0)
                p.dests[p.n++] = name;
            continue;
        }
        uint32_t did;
        bool yes = false;
        rc = store_dest_find(s, name, &did);
        if (rc == 0)
            rc = store_has_payload(s, did, id, &yes);
        if (rc && rc != STORE_E_NOT_FOUND) {
            store_failed(r, rc);
            goto out;
        }
        if (yes)
            p.dests[p.n++] = name;
    }
    if (to && !p.n) {
        admin_reply_error(r, 404, "not_found", "no destination is named %.200s", to);
        goto out;
    }
    if (!p.n) {
        admin_reply_error(r, 409, "not_routed", "message %llu was not routed to any configured "
                          "destination: name one with ?to=", (unsigned long long)id);
        goto out;
    }
    struct buf det = { 0 };
    for (size_t i = 0; i < p.n; i++)
        buf_printf(&det, "%s%s", i ? "," : "to=", p.dests[i]);
    if ((rc = write_txn(r, replay_run, &p))) {
        admin_audit(r, "replay", subject, "failed", det.p);
        buf_free(&det);
        store_failed(r, rc);
        goto out;
    }
    admin_audit(r, "replay", subject, "ok", det.p);
    log_info(COMPONENT, "message replayed", "msg=%llu to=%s admin=%s", (unsigned long long)id,
             det.p + 3, admin_actor(r));
    buf_free(&det);
    if (admin_delivery(a))
        delivery_kick(admin_delivery(a));
    json_t *items = json_array();
    for (size_t i = 0; i < p.n; i++)
        json_array_append_new(items, json_pack("{s:s,s:I}", "destination", p.dests[i],
                                               "seq", (json_int_t)p.seqs[i]));
    admin_reply_json(r, 200, json_pack("{s:I,s:o}", "id", (json_int_t)id, "replayed", items));
out:
    free(p.dests);
    free(p.seqs);
}

/* ================================================================ reload, audit */

void admin_api_reload(struct admin_request *r)
{
    struct buf errors = { 0 };
    int rc = admin_call_reload(admin_of(r), &errors);
    if (rc) {
        json_t *list = json_array();
        const char *p = errors.p ? errors.p : "";
        while (*p) {
            size_t n = strcspn(p, "\n");
            if (n)
                json_array_append_new(list, bytes_json(p, n));
            p += n + (p[n] == '\n');
        }
        admin_audit(r, "reload", "config", "refused", errors.p ? errors.p : "");
        json_t *body = json_pack("{s:{s:i,s:s,s:s},s:o,s:b}", "error", "status", 400,
                                 "code", "bad_config", "message",
                                 "the config file is not valid: the running config stays",
                                 "errors", list, "reloaded", 0);
        buf_free(&errors);
        admin_reply_json(r, 400, body);
        return;
    }
    buf_free(&errors);
    admin_audit(r, "reload", "config", "ok", "");
    admin_reply_json(r, 200, json_pack("{s:b}", "reloaded", 1));
}

static int audit_item(void *ctx, uint64_t seq, const struct store_audit *au,
                      const uint8_t hash[32])
{
    (void)hash;
    json_array_append_new(ctx, json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o}",
                                         "seq", (json_int_t)seq,
                                         "time_ms", (json_int_t)au->time_ms,
                                         "time", time_json(au->time_ms),
                                         "actor", bytes_json(au->actor, strlen(au->actor)),
                                         "action", bytes_json(au->action, strlen(au->action)),
                                         "subject", bytes_json(au->subject, strlen(au->subject)),
                                         "outcome", bytes_json(au->outcome, strlen(au->outcome)),
                                         "details", bytes_json(au->details, strlen(au->details))));
    return 0;
}

void admin_api_audit(struct admin_request *r)
{
    uint64_t limit;
    if (admin_query_u64(r, "limit", AUDIT_DEFAULT, 1, ADMIN_PAGE_MAX, &limit))
        return;
    json_t *items = json_array();
    int rc = store_audit_tail(admin_store(admin_of(r)), limit, audit_item, items);
    if (rc) {
        json_decref(items);
        store_failed(r, rc);
        return;
    }
    admin_reply_json(r, 200, json_pack("{s:o}", "items", items));
}

/* ============================================================ objections */

const char *const admin_api_objection_params[] = { "nhs_number", "purpose", NULL };
const char *const admin_api_objection_list_params[] = { "purpose", NULL };

static int objection_json(void *ctx, const char *nhs, const char *purpose, bool from_file)
{
    json_t *o = json_pack("{s:s,s:s,s:s}", "nhs_number", nhs, "purpose", purpose, "source",
                          from_file ? "file" : "api");
    return o ? json_array_append_new(ctx, o) : -1;
}

/* The register, or NULL after a 409. */
static struct objections *objections_of(struct admin_request *r)
{
    struct objections *o = admin_objections(admin_of(r));
    if (!o)
        admin_reply_error(r, 409, "not_running", "the objections register is not available");
    return o;
}

void admin_api_objections(struct admin_request *r)
{
    struct objections *o = objections_of(r);
    if (!o)
        return;
    const char *purpose = admin_query(r, "purpose");
    if (purpose && !objections_purpose_valid(purpose)) {
        admin_reply_error(r, 400, "bad_parameter", "purpose: 1 to %d characters of a-z, 0-9, "
                          "'_' and '-'", OBJECTIONS_PURPOSE_MAX);
        return;
    }
    json_t *items = json_array();
    if (!items || objections_each(o, purpose, objection_json, items)) {
        json_decref(items);
        admin_reply_error(r, 500, "nomem", "out of memory");
        return;
    }
    json_t *body = json_pack("{s:I,s:o}", "total", (json_int_t)json_array_size(items),
                             "items", items);
    admin_reply_json(r, 200, body);
}

static void objection_change(struct admin_request *r, bool objected)
{
    const char *action = objected ? "objection_add" : "objection_remove";
    struct objections *o = objections_of(r);
    if (!o)
        return;
    const char *num = admin_query(r, "nhs_number"), *purpose = admin_query(r, "purpose");
    char nhs[11];
    const char *why = "";
    if (!num || objections_nhs_normalise(num, strlen(num), nhs, &why)) {
        admin_reply_error(r, 400, "bad_parameter", "nhs_number: %s",
                          num ? why : "required: a valid NHS number");
        return;
    }
    if (!purpose || !objections_purpose_valid(purpose)) {
        admin_reply_error(r, 400, "bad_parameter", "purpose: required, 1 to %d characters of "
                          "a-z, 0-9, '_' and '-' (direct_care, research, ...)",
                          OBJECTIONS_PURPOSE_MAX);
        return;
    }
    char subject[128];
    snprintf(subject, sizeof subject, "nhs_number=%s purpose=%s", nhs, purpose);
    /* Durable first: the register changes once the store has it. */
    struct store *s = admin_store(admin_of(r));
    int rc;
    for (;;) {
        struct store_txn *t;
        if ((rc = store_begin(s, &t)))
            break;
        if ((rc = store_objection_put(t, nhs, purpose, objected)))
            store_abort(t);
        else
            rc = store_commit(t);
        if (rc != STORE_E_MAP_FULL || (rc = store_grow(s)))
            break;
    }
    if (rc) {
        admin_audit(r, action, subject, "failed", store_strerror(rc));
        store_failed(r, rc);
        return;
    }
    bool changed = false;
    if (objections_change(o, nhs, purpose, objected, &changed)) {
        admin_audit(r, action, subject, "failed", "out of memory");
        admin_reply_error(r, 500, "nomem", "out of memory");
        return;
    }
    admin_audit(r, action, subject, "ok", changed ? "" : "no change");
    log_info(COMPONENT, objected ? "objection added" : "objection removed",
             "purpose=%s admin=%s changed=%s", purpose, admin_actor(r), changed ? "yes" : "no");
    admin_reply_json(r, 200, json_pack("{s:s,s:s,s:b,s:b}", "nhs_number", nhs, "purpose",
                                       purpose, "objected", objected, "changed", changed));
}

void admin_api_objection_add(struct admin_request *r)
{
    objection_change(r, true);
}

void admin_api_objection_remove(struct admin_request *r)
{
    objection_change(r, false);
}
