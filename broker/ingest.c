/*
 * ingest.c: from received bytes to a durable message and its ACK. Checks a
 * message (DESIGN.md §2), queues it, and commits every queued message in
 * one store transaction when the event loop has read all ready input (a
 * lowest-priority event); only then are the ACKs handed back.
 */
#include "ingest.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "buf.h"
#include "hl7.h"
#include "itk.h"
#include "log.h"
#include "route.h"
#include "store.h"

#define PRIO_URGENT 0
#define PRIO_IO     1
#define PRIO_COMMIT 2

/* A batch this large commits at once, not waiting for idle input. */
#define BATCH_MAX_MSGS  4096
#define BATCH_MAX_BYTES ((size_t)64 << 20)

enum item_kind { ITEM_MESSAGE, ITEM_REFUSAL };

/* One destination's copy of a routed message. */
struct delivery_copy {
    char  *dest;
    char  *payload;   /* NULL: the message's own bytes (no transform changed them) */
    size_t len;
};

/* One submitted message waiting for the commit. Strings are copies, in
 * the item's own allocations, so the submitter may go away. */
struct item {
    struct item       *next;
    enum item_kind     kind;
    ingest_reply_fn    fn;
    void              *ctx;
    uint64_t           received_ms;
    bool               enhanced;     /* MSH-15/16 set: C* codes */
    char              *raw;
    size_t             raw_len;
    size_t             total_len;    /* refusals of oversize frames */
    char              *source, *peer, *tls_subject;
    /* messages */
    char              *code, *trigger, *structure, *control_id;
    char              *sending_app, *sending_fac, *nhs_number;
    char              *dedup_key;
    size_t             dedup_len;
    /* routing, decided at submit: what each destination receives */
    struct delivery_copy *deliveries;
    size_t             n_deliveries;
    uint8_t            state;        /* enum store_msg_state */
    char              *note;         /* a transform error */
    /* the ACK to send (built at submit; replaced by the stored one for a
       duplicate, or an AR when the store fails) */
    struct buf         ack;
    const char        *ack_code;
    char              *reason;       /* refusals */
    enum ingest_outcome outcome;
    uint64_t           id;
    uint8_t            refusal;      /* enum ingest_refusal */
    struct timespec    t0;           /* receipt (monotonic): the ingest latency */
    /* ITK requests */
    bool               itk;          /* kind "itk": the answer is SOAP */
    bool               fault;        /* the answer is a SOAP fault */
    struct item       *child;        /* its infrastructure ack, stored with it */
};

/* A source's counters (ingest_get_source_stats). */
struct src_stats {
    char                      *name;
    struct ingest_source_stats st;
};

struct ingest {
    struct event_base  *base;
    struct store       *store;
    const struct router *router;    /* NULL: no routes, messages are kept unrouted */
    struct event       *commit_ev;
    struct item        *head, **tail;
    size_t              n, bytes;
    bool                urgent;
    struct ingest_stats stats;
    void              (*on_commit)(void *ctx);
    void               *on_commit_ctx;
    /* another writer's changes joining each batch (ingest_set_txn_hook) */
    int               (*hook_write)(void *ctx, struct store_txn *t);
    void              (*hook_done)(void *ctx, bool written);
    void               *hook_ctx;
    struct src_stats   *srcs;
    size_t              n_srcs;
    char               *ods_code;     /* infrastructure acks' identity; NULL: none */
    bool                warned_ods;   /* the missing ODS code was logged */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *dup_span(const struct hl7_span *s)
{
    char *p = malloc(s->len + 1);
    if (p) {
        if (s->len)
            memcpy(p, s->p, s->len);
        p[s->len] = '\0';
    }
    return p;
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static void item_free(struct item *it)
{
    if (!it)
        return;
    free(it->raw);
    free(it->source);
    free(it->peer);
    free(it->tls_subject);
    free(it->code);
    free(it->trigger);
    free(it->structure);
    free(it->control_id);
    free(it->sending_app);
    free(it->sending_fac);
    free(it->nhs_number);
    free(it->dedup_key);
    free(it->reason);
    free(it->note);
    for (size_t i = 0; i < it->n_deliveries; i++) {
        free(it->deliveries[i].dest);
        free(it->deliveries[i].payload);
    }
    free(it->deliveries);
    buf_free(&it->ack);
    item_free(it->child);
    free(it);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg);

int ingest_new(struct event_base *base, struct store *store, struct ingest **out)
{
    struct ingest *in = calloc(1, sizeof *in);
    if (!in)
        return -1;
    in->base = base;
    in->store = store;
    in->tail = &in->head;
    metrics_hist_init_batch(&in->stats.batch_size);
    /* Sets the priorities every later event is created with (the default
       is the middle one, PRIO_IO). Done before any other event exists. */
    event_base_priority_init(base, 3);
    in->commit_ev = event_new(base, -1, 0, commit_cb, in);
    if (!in->commit_ev || event_priority_set(in->commit_ev, PRIO_COMMIT)) {
        ingest_free(in);
        return -1;
    }
    *out = in;
    return 0;
}

void ingest_free(struct ingest *in)
{
    if (!in)
        return;
    struct item *it = in->head;
    while (it) {
        struct item *next = it->next;
        item_free(it);
        it = next;
    }
    if (in->commit_ev)
        event_free(in->commit_ev);
    for (size_t i = 0; i < in->n_srcs; i++)
        free(in->srcs[i].name);
    free(in->srcs);
    free(in->ods_code);
    free(in);
}

void ingest_set_router(struct ingest *in, const struct router *r)
{
    in->router = r;
}

/* ------------------------------------------------------------ routing */

struct routing {
    struct item *it;
    bool         matched, error, refuse, nomem;
    struct buf   errors;
};

static void on_route(void *ctx, const struct route_result *res)
{
    struct routing *r = ctx;
    if (res->verdict == ROUTE_ERROR) {
        r->error = true;
        r->refuse |= !res->accept_errors;
        buf_printf(&r->errors, "%sroute %s: %s", r->errors.len ? "; " : "", res->route,
                   res->why ? res->why : "transform failed");
        return;
    }
    if (res->verdict != ROUTE_MATCHED)
        return;
    r->matched = true;
    struct item *it = r->it;
    struct delivery_copy *d = realloc(it->deliveries,
                                      (it->n_deliveries + res->n_to) * sizeof *d);
    if (!d) {
        r->nomem = true;
        return;
    }
    it->deliveries = d;
    /* Untransformed: no copy here, and the store keeps the bytes once. */
    bool same = res->payload_len == it->raw_len
                && memcmp(res->payload, it->raw, it->raw_len) == 0;
    for (size_t i = 0; i < res->n_to; i++) {
        struct delivery_copy *c = &it->deliveries[it->n_deliveries];
        c->dest = strdup(res->to[i]);
        c->payload = same ? NULL : malloc(res->payload_len ? res->payload_len : 1);
        c->len = res->payload_len;
        if (!c->dest || (!same && !c->payload)) {
            free(c->dest);
            free(c->payload);
            r->nomem = true;
            return;
        }
        if (!same)
            memcpy(c->payload, res->payload, res->payload_len);
        it->n_deliveries++;
    }
}

/* Decide, at submit, what each destination will receive (DESIGN.md §1:
 * routing happens at ingest; the commit stores the result). Sets the
 * message's state and, for a transform error on a route that refuses,
 * turns the answer into AE (a SOAP fault for ITK). m is the parsed HL7
 * message, or env the ITK envelope. Returns -1 when memory ran out. */
static int route_item(struct ingest *in, struct item *it, const struct hl7_msg *m,
                      const struct itk_envelope *env)
{
    it->state = STORE_MSG_UNROUTED;
    if (!in->router)
        return 0;
    struct routing r = { .it = it };
    if (env)
        router_run_itk(in->router, it->source, env, it->raw, it->raw_len, on_route, &r);
    else
        router_run(in->router, it->source, it->raw, it->raw_len, on_route, &r);
    int rc = r.nomem ? -1 : 0;
    if (!rc && r.error) {
        it->state = STORE_MSG_ERROR;
        it->note = buf_take(&r.errors, NULL);
        if (!it->note)
            rc = -1;
        if (!rc && r.refuse) {
            /* stored with the error, answered AE: nothing is delivered */
            buf_reset(&it->ack);
            if (env) {
                char text[600];
                snprintf(text, sizeof text, "accepted and stored, but not routed: %.500s",
                         it->note);
                it->fault = true;
                it->ack_code = "fault:9100";
                if (itk_soap_fault(&it->ack, "9100", text, env->message_id))
                    rc = -1;
            } else {
                struct hl7_error err = { 0 };
                hl7_set_error(&err, HL7_E_BAD_VALUE, "", 0, 0, 0,
                              "accepted and stored, but not routed: %s", it->note);
                enum hl7_ack_code code = hl7_ack_code_for(m, HL7_ACK_ERROR);
                struct hl7_ack_req req = { .code = code, .msg = m, .err = &err,
                                           .hl7_code = 207 };
                it->ack_code = hl7_ack_code_str(code);
                if (hl7_ack_build(&req, &it->ack))
                    rc = -1;
            }
            for (size_t i = 0; i < it->n_deliveries; i++) {
                free(it->deliveries[i].dest);
                free(it->deliveries[i].payload);
            }
            it->n_deliveries = 0;
        }
    } else if (!rc && r.matched) {
        it->state = STORE_MSG_ROUTED;
    }
    buf_free(&r.errors);
    return rc;
}

size_t ingest_pending(const struct ingest *in)
{
    return in->n;
}

void ingest_get_stats(const struct ingest *in, struct ingest_stats *s)
{
    *s = in->stats;
}

const char *ingest_refusal_name(enum ingest_refusal r)
{
    switch (r) {
    case INGEST_REFUSAL_NOT_HL7:       return "not_hl7";
    case INGEST_REFUSAL_NO_CONTROL_ID: return "no_control_id";
    case INGEST_REFUSAL_VERSION:       return "version";
    case INGEST_REFUSAL_PROCESSING_ID: return "processing_id";
    case INGEST_REFUSAL_TOO_LARGE:     return "too_large";
    case INGEST_REFUSAL_NHS_NUMBER:    return "nhs_number";
    case INGEST_REFUSAL_ITK:           return "itk_invalid";
    case INGEST_REFUSAL_COUNT:         break;
    }
    return "other";
}

static struct src_stats *src_stats_find(const struct ingest *in, const char *name)
{
    for (size_t i = 0; i < in->n_srcs; i++)
        if (strcmp(in->srcs[i].name, name) == 0)
            return &in->srcs[i];
    return NULL;
}

/* The counters of source name, made on first use; NULL without memory
 * (the message then goes uncounted: counting never fails a message). */
static struct src_stats *src_stats_get(struct ingest *in, const char *name)
{
    struct src_stats *s = src_stats_find(in, name);
    if (s)
        return s;
    s = realloc(in->srcs, (in->n_srcs + 1) * sizeof *s);
    if (!s)
        return NULL;
    in->srcs = s;
    s = &in->srcs[in->n_srcs];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name)))
        return NULL;
    metrics_hist_init_latency(&s->st.latency);
    in->n_srcs++;
    return s;
}

void ingest_get_source_stats(const struct ingest *in, const char *source,
                             struct ingest_source_stats *s)
{
    const struct src_stats *ss = source ? src_stats_find(in, source) : NULL;
    if (ss) {
        *s = ss->st;
        return;
    }
    memset(s, 0, sizeof *s);
    metrics_hist_init_latency(&s->latency);
}

static void count_item(struct ingest *in, const struct item *it, bool ok)
{
    struct src_stats *ss = src_stats_get(in, it->source);
    if (!ss)
        return;
    struct ingest_source_stats *st = &ss->st;
    st->received++;
    st->bytes += it->total_len;
    if (!ok || it->outcome == INGEST_FAILED)
        st->failed++;
    else if (it->outcome == INGEST_ACCEPTED)
        st->accepted++, st->transform_errors += it->state == STORE_MSG_ERROR;
    else if (it->outcome == INGEST_DUPLICATE)
        st->duplicates++;
    else
        st->refused[it->refusal < INGEST_REFUSAL_COUNT ? it->refusal : INGEST_REFUSAL_NOT_HL7]++;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - it->t0.tv_sec) + (now.tv_nsec - it->t0.tv_nsec) / 1e9;
    metrics_hist_observe(&st->latency, secs);
}

/* Queue an item and make sure a commit will follow. */
static void enqueue(struct ingest *in, struct item *it)
{
    *in->tail = it;
    in->tail = &it->next;
    in->n++;
    in->bytes += it->raw_len;
    if (in->n == 1)
        event_active(in->commit_ev, 0, 0);
    if (!in->urgent && (in->n >= BATCH_MAX_MSGS || in->bytes >= BATCH_MAX_BYTES)) {
        /* Do not wait for the input to go quiet: a steady firehose would
           otherwise grow the batch without bound. */
        event_del(in->commit_ev);
        event_priority_set(in->commit_ev, PRIO_URGENT);
        event_active(in->commit_ev, 0, 0);
        in->urgent = true;
    }
}

static struct item *item_new(const struct ingest_origin *o, const char *bytes, size_t len,
                             ingest_reply_fn fn, void *ctx)
{
    struct item *it = calloc(1, sizeof *it);
    if (!it)
        return NULL;
    it->fn = fn;
    it->ctx = ctx;
    it->received_ms = now_ms();
    clock_gettime(CLOCK_MONOTONIC, &it->t0);
    it->raw = malloc(len ? len : 1);
    it->raw_len = len;
    it->total_len = len;
    it->source = dup_str(o->source);
    it->peer = dup_str(o->peer);
    it->tls_subject = dup_str(o->tls_subject);
    if (!it->raw || !it->source || !it->peer || !it->tls_subject) {
        item_free(it);
        return NULL;
    }
    if (len)
        memcpy(it->raw, bytes, len);
    return it;
}

/* The reason a refusal answered with table 0357 hl7_code is counted under
 * (for the refusals whose code says it). */
static enum ingest_refusal refusal_for_code(int hl7_code)
{
    switch (hl7_code) {
    case 101: return INGEST_REFUSAL_NO_CONTROL_ID;
    case 203: return INGEST_REFUSAL_VERSION;
    case 202: return INGEST_REFUSAL_PROCESSING_ID;
    case 207: return INGEST_REFUSAL_TOO_LARGE;
    }
    return INGEST_REFUSAL_NOT_HL7;
}

/* Turn it into a refusal for reason answered with code (table 0357
 * hl7_code) and err for the ERR segment, err_rep the field repetition at
 * fault (ERR-2.4; 0: none). msg may be NULL when the message did not
 * parse. */
static int refuse_item(struct item *it, const struct hl7_msg *msg, enum hl7_ack_kind kind,
                       int hl7_code, const struct hl7_error *err, enum ingest_refusal reason,
                       unsigned err_rep)
{
    it->kind = ITEM_REFUSAL;
    it->outcome = INGEST_REFUSED;
    it->refusal = (uint8_t)reason;
    enum hl7_ack_code code = hl7_ack_code_for(msg, kind);
    it->ack_code = hl7_ack_code_str(code);
    it->reason = strdup(err->text);
    struct hl7_ack_req req = {
        .code = code, .msg = msg, .raw = it->raw, .raw_len = it->raw_len,
        .err = err, .hl7_code = hl7_code, .err_rep = err_rep,
    };
    if (!it->reason || hl7_ack_build(&req, &it->ack))
        return -1;
    return 0;
}

/* refuse_item with the reason the code says. */
static int make_refusal(struct item *it, const struct hl7_msg *msg, enum hl7_ack_kind kind,
                        int hl7_code, const struct hl7_error *err)
{
    return refuse_item(it, msg, kind, hl7_code, err, refusal_for_code(hl7_code), 0);
}

static bool supported_version(const struct hl7_span *v)
{
    static const char *const ok[] = {
        "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1",
        "2.8", "2.8.1", "2.8.2", NULL,
    };
    for (int i = 0; ok[i]; i++)
        if (v->len == strlen(ok[i]) && memcmp(v->p, ok[i], v->len) == 0)
            return true;
    return false;
}

static bool supported_processing_id(const struct hl7_span *p)
{
    return p->len == 1 && (p->p[0] == 'P' || p->p[0] == 'D' || p->p[0] == 'T');
}

/* Check a parsed message against DESIGN.md §2. Returns 0 when acceptable;
 * otherwise fills err and *hl7_code. */
static int check_message(const struct hl7_msg *m, const struct hl7_meta *md,
                         struct hl7_error *err, int *hl7_code)
{
    if (!md->control_id.len) {
        hl7_set_error(err, HL7_E_MISSING_FIELD, "MSH", 1, 10, 0,
                      "MSH-10 (message control id) is empty: the broker needs it to "
                      "acknowledge the message and to recognise a resend");
        *hl7_code = 101;
        return -1;
    }
    if (!supported_version(&md->version)) {
        hl7_set_error(err, HL7_E_MISSING_FIELD, "MSH", 1, 12, 0,
                      "unsupported HL7 version '%.*s' in MSH-12: this broker takes "
                      "v2.1 to v2.8.2", (int)(md->version.len > 16 ? 16 : md->version.len),
                      md->version.p ? md->version.p : "");
        *hl7_code = 203;
        return -1;
    }
    if (!supported_processing_id(&md->processing_id)) {
        hl7_set_error(err, HL7_E_MISSING_FIELD, "MSH", 1, 11, 0,
                      "unsupported processing id '%.*s' in MSH-11: expected P, D or T",
                      (int)(md->processing_id.len > 16 ? 16 : md->processing_id.len),
                      md->processing_id.p ? md->processing_id.p : "");
        *hl7_code = 202;
        return -1;
    }
    (void)m;
    return 0;
}

/* At most 20 bytes of s, each byte that is not printable ASCII as '?',
 * and "..." when there was more: for quoting a sender's value in a text. */
static void quote_value(const char *s, size_t len, char out[24])
{
    size_t n = len > 20 ? 20 : len, i;
    for (i = 0; i < n; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    strcpy(out + i, len > n ? "..." : "");
}

/* The per-source NHS number check (policy check_nhs_number): the NHS
 * number hl7_meta found (CX.1 of the first PID-3 repetition marked NHS or
 * NH) must pass hl7_nhs_check (modulus 11). A message without one, or
 * with an empty one, has nothing to check. Returns 0 when acceptable;
 * otherwise fills err (located at PID-3, the byte offset of the number)
 * and *rep, the PID-3 repetition holding it. */
static int check_nhs_number(const struct hl7_msg *m, const struct hl7_meta *md,
                            const char *raw, size_t raw_len, struct hl7_error *err,
                            unsigned *rep)
{
    const struct hl7_span *n = &md->nhs_number;
    if (!n->len)
        return 0;
    enum hl7_nhs_check c = hl7_nhs_check(n->p, n->len);
    if (c == HL7_NHS_VALID)
        return 0;
    /* which repetition of PID-3: the one whose CX.1 is this span */
    *rep = 0;
    struct hl7_path path = { .seg = "PID", .field = 3, .comp = 1 };
    size_t reps = hl7_count(m, &(struct hl7_path){ .seg = "PID", .field = 3 });
    for (size_t r = 1; r <= reps && !*rep && r <= UINT_MAX; r++) {
        struct hl7_span s;
        path.rep = (unsigned)r;
        if (hl7_get(m, &path, &s) != HL7_ABSENT && s.p == n->p && s.len == n->len)
            *rep = (unsigned)r;
    }
    size_t offset = n->p >= raw && n->p < raw + raw_len ? (size_t)(n->p - raw) : 0;
    char q[24];
    quote_value(n->p, n->len, q);
    if (c == HL7_NHS_LENGTH) {
        hl7_set_error(err, HL7_E_BAD_VALUE, "PID", 1, 3, offset,
                      "NHS number '%s' in PID-3 is %zu characters long: an NHS number "
                      "has 10 digits", q, n->len);
    } else if (c == HL7_NHS_NOT_DIGITS) {
        hl7_set_error(err, HL7_E_BAD_VALUE, "PID", 1, 3, offset,
                      "NHS number '%s' in PID-3 is not all digits: an NHS number has "
                      "only digits", q);
    } else {
        /* the digit that would pass the same check, if any */
        char t[10];
        int want = -1;
        memcpy(t, n->p, sizeof t);
        for (int d = 0; d <= 9 && want < 0; d++) {
            t[9] = (char)('0' + d);
            if (hl7_nhs_check(t, sizeof t) == HL7_NHS_VALID)
                want = d;
        }
        if (want >= 0)
            hl7_set_error(err, HL7_E_BAD_VALUE, "PID", 1, 3, offset,
                          "NHS number '%s' in PID-3 fails the modulus 11 check: check "
                          "digit expected %d, got %c", q, want, n->p[9]);
        else
            hl7_set_error(err, HL7_E_BAD_VALUE, "PID", 1, 3, offset,
                          "NHS number '%s' in PID-3 fails the modulus 11 check: its "
                          "first nine digits give a check digit of 10, which no NHS "
                          "number has", q);
    }
    return -1;
}

static bool is_enhanced(const struct hl7_meta *md)
{
    return md->accept_ack.len > 0 || md->app_ack.len > 0;
}

int ingest_submit(struct ingest *in, const struct ingest_origin *o,
                  const struct ingest_policy *p, const char *bytes, size_t len,
                  ingest_reply_fn fn, void *ctx)
{
    struct item *it = item_new(o, bytes, len, fn, ctx);
    if (!it)
        return -1;
    struct hl7_msg *m = NULL;
    struct hl7_error err = { 0 };
    struct hl7_parse_opts po = { .max_bytes = p && p->max_message_bytes ? p->max_message_bytes : 0 };
    int rc = hl7_parse(it->raw, it->raw_len, &po, &m, &err);
    if (rc) {
        if (make_refusal(it, NULL, HL7_ACK_REJECT, 0, &err))
            goto nomem;
        enqueue(in, it);
        return 0;
    }
    struct hl7_meta md;
    hl7_meta(m, &md);
    it->enhanced = is_enhanced(&md);
    int code = 0;
    if (check_message(m, &md, &err, &code)) {
        if (make_refusal(it, m, HL7_ACK_REJECT, code, &err))
            goto nomem;
        hl7_free(m);
        enqueue(in, it);
        return 0;
    }
    /* The NHS number check: AE (CE), table 0357 code 102 (data type
       error: the value is there but is not a valid NHS number; 103 is for
       a code not in its table), ERR-2 PID^1^3^<repetition>. */
    unsigned rep = 0;
    if (p && p->check_nhs_number
        && check_nhs_number(m, &md, it->raw, it->raw_len, &err, &rep)) {
        if (refuse_item(it, m, HL7_ACK_ERROR, 102, &err, INGEST_REFUSAL_NHS_NUMBER, rep))
            goto nomem;
        hl7_free(m);
        enqueue(in, it);
        return 0;
    }
    it->kind = ITEM_MESSAGE;
    it->outcome = INGEST_ACCEPTED;
    it->code = dup_span(&md.code);
    it->trigger = dup_span(&md.trigger);
    it->structure = dup_span(&md.structure);
    it->control_id = dup_span(&md.control_id);
    it->sending_app = dup_span(&md.sending_app);
    it->sending_fac = dup_span(&md.sending_fac);
    it->nhs_number = dup_span(&md.nhs_number);
    it->dedup_key = store_dedup_key(it->source, md.sending_app.p, md.sending_app.len,
                                    md.sending_fac.p, md.sending_fac.len,
                                    md.control_id.p, md.control_id.len, &it->dedup_len);
    enum hl7_ack_code ack = hl7_ack_code_for(m, HL7_ACK_ACCEPT);
    it->ack_code = hl7_ack_code_str(ack);
    struct hl7_ack_req req = { .code = ack, .msg = m };
    if (!it->code || !it->trigger || !it->structure || !it->control_id || !it->sending_app
        || !it->sending_fac || !it->nhs_number || !it->dedup_key
        || hl7_ack_build(&req, &it->ack) || route_item(in, it, m, NULL))
        goto nomem;
    hl7_free(m);
    enqueue(in, it);
    return 0;
nomem:
    hl7_free(m);
    item_free(it);
    return -1;
}

int ingest_refuse_oversize(struct ingest *in, const struct ingest_origin *o,
                           const char *head, size_t head_len, size_t total,
                           size_t limit, ingest_reply_fn fn, void *ctx)
{
    struct item *it = item_new(o, head, head_len, fn, ctx);
    if (!it)
        return -1;
    it->total_len = total;
    struct hl7_error err = { 0 };
    hl7_set_error(&err, HL7_E_TOO_LARGE, "", 0, 0, limit,
                  "message refused: %zu%s bytes is over this source's max_message_bytes "
                  "of %zu", total, total > head_len ? " or more" : "", limit);
    if (make_refusal(it, NULL, HL7_ACK_REJECT, 207, &err)) {
        item_free(it);
        return -1;
    }
    enqueue(in, it);
    return 0;
}

int ingest_refuse(struct ingest *in, const struct ingest_origin *o, const char *head,
                  size_t head_len, const char *reason, ingest_reply_fn fn, void *ctx)
{
    struct item *it = item_new(o, head, head_len, fn, ctx);
    if (!it)
        return -1;
    struct hl7_error err = { 0 };
    hl7_set_error(&err, HL7_E_BAD_VALUE, "", 0, 0, 0, "message refused: %s",
                  reason ? reason : "not taken by the source");
    if (make_refusal(it, NULL, HL7_ACK_REJECT, 207, &err)) {
        item_free(it);
        return -1;
    }
    enqueue(in, it);
    return 0;
}

/* ------------------------------------------------------------------ ITK */

int ingest_set_ods_code(struct ingest *in, const char *ods_code)
{
    char *c = ods_code ? strdup(ods_code) : NULL;
    if (ods_code && !c)
        return -1;
    free(in->ods_code);
    in->ods_code = c;
    in->warned_ods = false;
    return 0;
}

/* Turn it into a refused ITK request answered with a SOAP fault. */
static int itk_refusal(struct item *it, const char *itk_code, const char *text,
                       const char *relates_to, enum ingest_refusal why)
{
    it->kind = ITEM_REFUSAL;
    it->outcome = INGEST_REFUSED;
    it->itk = true;
    it->fault = true;
    it->refusal = (uint8_t)why;
    it->ack_code = strcmp(itk_code, "1001") == 0 ? "fault:1001" :
                   why == INGEST_REFUSAL_NHS_NUMBER ? "fault:2006" : "fault";
    it->reason = strdup(text);
    buf_reset(&it->ack);
    if (!it->reason || itk_soap_fault(&it->ack, itk_code, text, relates_to))
        return -1;
    return 0;
}

/* The short name of a service URI: what follows its last ':'. */
static const char *uri_tail(const char *uri)
{
    const char *c = uri ? strrchr(uri, ':') : NULL;
    return c ? c + 1 : uri ? uri : "";
}

/* Fill it (an ITK message) from env: metadata, dedup key, routing. The
 * answer (ack) is left to the caller. */
static int itk_message(struct ingest *in, struct item *it, const struct itk_envelope *env,
                       const char *nhs)
{
    it->kind = ITEM_MESSAGE;
    it->outcome = INGEST_ACCEPTED;
    it->itk = true;
    it->code = strdup("ITK");
    it->trigger = dup_str(uri_tail(env->service));
    it->structure = dup_str(uri_tail(env->profile));
    it->control_id = dup_str(env->tracking_id);
    it->sending_app = dup_str(env->sender);
    it->sending_fac = dup_str(env->sender_ods);
    it->nhs_number = dup_str(nhs);
    it->dedup_key = store_dedup_key(it->source, "ITK", 3, "", 0, env->tracking_id,
                                    strlen(env->tracking_id), &it->dedup_len);
    if (!it->code || !it->trigger || !it->structure || !it->control_id || !it->sending_app
        || !it->sending_fac || !it->nhs_number || !it->dedup_key)
        return -1;
    return route_item(in, it, NULL, env);
}

/* The NHS number of an envelope: the first CDA payload's. */
static const char *itk_nhs_number(const struct itk_envelope *env)
{
    for (size_t i = 0; i < env->n_payloads; i++)
        if (env->payloads[i].nhs_number)
            return env->payloads[i].nhs_number;
    return NULL;
}

/* The infrastructure ack of parent's request env, as a message of its
 * own from the same source, routed now and stored with the parent. */
static int itk_infack(struct ingest *in, struct item *parent, const struct itk_envelope *env)
{
    if (!in->ods_code) {
        if (!in->warned_ods)
            log_warn("ingest", "an ITK request asks for an infrastructure ack, but "
                     "broker.ods_code is not set: none is made", "source=%s tracking_id=%s",
                     parent->source, env->tracking_id);
        in->warned_ods = true;
        return 0;
    }
    bool ok = parent->state != STORE_MSG_ERROR;
    struct buf b = { 0 };
    if (itk_infack_build(&b, env, in->ods_code, ok, ok ? NULL : "9100",
                         ok ? NULL : parent->note)) {
        buf_free(&b);
        return -1;
    }
    const struct ingest_origin o = { .source = parent->source, .peer = "broker" };
    struct item *it = item_new(&o, b.p, b.len, NULL, NULL);
    buf_free(&b);
    if (!it)
        return -1;
    struct itk_envelope *ack = NULL;
    struct itk_error e = { 0 };
    int rc = itk_parse(it->raw, it->raw_len, NULL, &ack, &e);
    if (rc) {
        /* our own builder's output: never expected */
        log_error("ingest", "an infrastructure ack the broker built does not parse",
                  "error=%s", e.msg);
        item_free(it);
        return rc == ITK_E_NOMEM ? -1 : 0;
    }
    rc = itk_message(in, it, ack, NULL);
    itk_free(ack);
    if (rc) {
        item_free(it);
        return -1;
    }
    parent->child = it;
    return 0;
}

int ingest_submit_itk(struct ingest *in, const struct ingest_origin *o,
                      const struct ingest_policy *p, const char *bytes, size_t len,
                      ingest_reply_fn fn, void *ctx)
{
    struct item *it = item_new(o, bytes, len, fn, ctx);
    if (!it)
        return -1;
    it->itk = true;
    struct itk_limits lim = {
        .max_bytes = p ? p->max_message_bytes : 0,
        .max_depth = p ? p->max_depth : 0,
    };
    struct itk_envelope *env = NULL;
    struct itk_error e = { 0 };
    int rc = itk_parse(it->raw, it->raw_len, &lim, &env, &e);
    if (rc == ITK_E_NOMEM)
        goto nomem;
    if (rc) {
        if (itk_refusal(it, e.itk_code, e.msg, NULL,
                        rc == ITK_E_TOO_LARGE ? INGEST_REFUSAL_TOO_LARGE : INGEST_REFUSAL_ITK))
            goto nomem;
        enqueue(in, it);
        return 0;
    }
    const char *nhs = itk_nhs_number(env);
    enum hl7_nhs_check nc = nhs ? hl7_nhs_check(nhs, strlen(nhs)) : HL7_NHS_VALID;
    if (p && p->check_nhs_number && nc != HL7_NHS_VALID) {
        char text[300];
        snprintf(text, sizeof text, "the NHS number '%.20s' in the CDA recordTarget "
                 "(patientRole/id root %s) is not valid: %s", nhs, ITK_NHS_NUMBER_OID,
                 hl7_nhs_check_str(nc));
        if (itk_refusal(it, "2006", text, env->message_id, INGEST_REFUSAL_NHS_NUMBER))
            goto nomem;
        itk_free(env);
        enqueue(in, it);
        return 0;
    }
    it->ack_code = "OK";
    if (itk_soap_ok(&it->ack, env) || itk_message(in, it, env, nhs))
        goto nomem;
    if (env->infack_requested && itk_infack(in, it, env))
        goto nomem;
    itk_free(env);
    enqueue(in, it);
    return 0;
nomem:
    itk_free(env);
    item_free(it);
    return -1;
}

int ingest_refuse_itk(struct ingest *in, const struct ingest_origin *o, const char *head,
                      size_t head_len, const char *itk_code, const char *reason,
                      ingest_reply_fn fn, void *ctx)
{
    struct item *it = item_new(o, head, head_len, fn, ctx);
    if (!it)
        return -1;
    const char *code = itk_code && itk_code[0] ? itk_code : "1000";
    if (itk_refusal(it, code, reason ? reason : "not taken by the source", NULL,
                    strcmp(code, "1001") == 0 ? INGEST_REFUSAL_TOO_LARGE
                                              : INGEST_REFUSAL_ITK)) {
        item_free(it);
        return -1;
    }
    enqueue(in, it);
    return 0;
}

/* ------------------------------------------------------------ the commit */

static int write_item(struct ingest *in, struct store_txn *t, struct item *it)
{
    int rc;
    char actor[512], subject[64], details[256];
    snprintf(actor, sizeof actor, "source=%s peer=%s%s%s", it->source, it->peer,
             it->tls_subject[0] ? " tls=" : "", it->tls_subject);
    struct store_audit a = { .time_ms = it->received_ms, .actor = actor, .subject = subject,
                             .details = details };
    if (it->kind == ITEM_MESSAGE) {
        uint64_t id;
        char *stored = NULL;
        size_t stored_len = 0;
        rc = store_dedup_get(t, it->dedup_key, it->dedup_len, &id, &stored, &stored_len);
        if (rc == 0) {
            it->outcome = INGEST_DUPLICATE;
            it->id = id;
            buf_reset(&it->ack);
            rc = buf_append(&it->ack, stored, stored_len) ? STORE_E_NOMEM : 0;
            /* an ITK answer replayed: a fault (9100) stays a fault */
            if (it->itk)
                it->fault = !memmem(stored, stored_len, "SimpleMessageResponse", 21);
            free(stored);
            if (rc)
                return rc;
            a.action = "duplicate";
            a.outcome = "replayed";
            snprintf(subject, sizeof subject, "msg=%llu", (unsigned long long)id);
            snprintf(details, sizeof details, "control_id=%.120s", it->control_id);
        } else if (rc == STORE_E_NOT_FOUND) {
            struct store_msg sm = {
                .received_ms = it->received_ms, .state = it->state, .note = it->note,
                .source = it->source, .peer = it->peer, .tls_subject = it->tls_subject,
                .kind = it->itk ? "itk" : "hl7v2", .code = it->code, .trigger = it->trigger,
                .structure = it->structure, .control_id = it->control_id,
                .sending_app = it->sending_app, .sending_fac = it->sending_fac,
                .nhs_number = it->nhs_number, .raw = it->raw, .raw_len = it->raw_len,
            };
            rc = store_put_message(t, &sm, it->dedup_key, it->dedup_len, it->ack.p,
                                   it->ack.len, &it->id);
            for (size_t i = 0; !rc && i < it->n_deliveries; i++) {
                const struct delivery_copy *dc = &it->deliveries[i];
                rc = store_enqueue(t, dc->dest, it->id, dc->payload, dc->len, NULL);
            }
            /* an infrastructure ack is made only for a request stored now */
            if (!rc && it->child)
                rc = write_item(in, t, it->child);
            if (rc)
                return rc;
            it->outcome = INGEST_ACCEPTED;
            a.action = "accept";
            a.outcome = it->ack_code;
            snprintf(subject, sizeof subject, "msg=%llu", (unsigned long long)it->id);
            snprintf(details, sizeof details, "type=%.16s^%.16s control_id=%.120s routed_to=%zu%s",
                     it->code, it->trigger, it->control_id, it->n_deliveries,
                     it->state == STORE_MSG_ERROR ? " transform_error" :
                     it->state == STORE_MSG_UNROUTED ? " unrouted" : "");
        } else {
            return rc;
        }
    } else {
        struct store_err se = {
            .received_ms = it->received_ms, .source = it->source, .peer = it->peer,
            .tls_subject = it->tls_subject, .reason = it->reason, .ack_code = it->ack_code,
            .raw = it->raw, .raw_len = it->raw_len,
        };
        if ((rc = store_put_error(t, &se, &it->id)))
            return rc;
        a.action = "refuse";
        a.outcome = it->ack_code;
        snprintf(subject, sizeof subject, "error=%llu", (unsigned long long)it->id);
        snprintf(details, sizeof details, "bytes=%zu reason=%.200s", it->total_len, it->reason);
    }
    (void)in;
    return store_audit_append(t, &a, NULL);
}

/* The store could not take the batch: every item gets AR (CR), not stored. */
static void fail_batch(struct ingest *in, struct item *head, int rc)
{
    struct hl7_error err = { 0 };
    hl7_set_error(&err, HL7_E_NOMEM, "", 0, 0, 0,
                  "the broker could not store the message (%s); nothing was kept, "
                  "send it again later", store_strerror(rc));
    for (struct item *it = head; it; it = it->next) {
        it->outcome = INGEST_FAILED;
        buf_reset(&it->ack);
        in->stats.failed++;
        if (it->itk) {
            it->fault = true;
            itk_soap_fault(&it->ack, "9999", err.text, NULL);
            continue;
        }
        struct hl7_ack_req req = {
            .code = it->enhanced ? HL7_CR : HL7_AR, .raw = it->raw, .raw_len = it->raw_len,
            .err = &err, .hl7_code = 207,
        };
        hl7_ack_build(&req, &it->ack);
    }
    log_error("ingest", "store write failed: messages refused with AR",
              "error=%s detail=%s messages=%zu", store_strerror(rc),
              store_last_error(in->store), in->n);
}

/* Write the batch (and the hook's changes, when with_hook) in one
 * transaction. *hooked says whether the hook's changes were committed: a
 * hook that fails is left out and the batch written without it, so
 * another writer's trouble never refuses messages. */
static int write_batch(struct ingest *in, struct item *head, bool *hooked)
{
    bool with_hook = in->hook_write != NULL;
    *hooked = false;
    for (;;) {
        struct store_txn *t;
        int rc = store_begin(in->store, &t);
        if (rc)
            return rc;
        for (struct item *it = head; it && !rc; it = it->next)
            rc = write_item(in, t, it);
        if (!rc && with_hook && in->hook_write(in->hook_ctx, t)) {
            log_warn("ingest", "the delivery outcomes could not join the commit; "
                     "committing the messages without them", "detail=%s",
                     store_last_error(in->store));
            store_abort(t);
            with_hook = false;
            for (struct item *it = head; it; it = it->next)
                if (it->outcome == INGEST_DUPLICATE)
                    it->outcome = INGEST_ACCEPTED;
            continue;
        }
        if (rc) {
            store_abort(t);
        } else {
            rc = store_commit(t);
        }
        if (rc != STORE_E_MAP_FULL) {
            *hooked = rc == 0 && with_hook;
            return rc;
        }
        rc = store_grow(in->store);
        if (rc)
            return rc;
        in->stats.map_grows++;
        log_info("store", "map grown", "map_bytes=%llu",
                 (unsigned long long)store_map_size(in->store));
        /* redo the whole batch: the aborted txn kept nothing, and a
           duplicate answer found in it may have changed */
        for (struct item *it = head; it; it = it->next)
            if (it->outcome == INGEST_DUPLICATE)
                it->outcome = INGEST_ACCEPTED;
    }
}

static void commit_now(struct ingest *in)
{
    if (!in->head)
        return;
    struct item *head = in->head;
    size_t n = in->n;
    in->head = NULL;
    in->tail = &in->head;
    in->n = 0;
    in->bytes = 0;
    if (in->urgent) {
        event_del(in->commit_ev);
        event_priority_set(in->commit_ev, PRIO_COMMIT);
        in->urgent = false;
    }

    bool hooked;
    int rc = write_batch(in, head, &hooked);
    bool ok = rc == 0;
    if (in->hook_done)
        in->hook_done(in->hook_ctx, hooked);
    in->stats.last_commit_failed = !ok;
    if (ok) {
        in->stats.commits++;
        in->stats.committed_msgs += n;
        metrics_hist_observe(&in->stats.batch_size, (double)n);
    } else {
        in->n = n;   /* for the log line */
        fail_batch(in, head, rc);
        in->n = 0;
    }
    struct item *it = head;
    while (it) {
        struct item *next = it->next;
        if (ok) {
            if (it->outcome == INGEST_ACCEPTED)
                in->stats.accepted++;
            else if (it->outcome == INGEST_DUPLICATE)
                in->stats.duplicates++;
            else
                in->stats.refused++;
        }
        count_item(in, it, ok);
        struct ingest_reply r = {
            .outcome = it->outcome, .ack = it->ack.p, .ack_len = it->ack.len,
            .committed = ok && it->kind == ITEM_MESSAGE, .fault = it->fault,
        };
        it->fn(it->ctx, &r);
        item_free(it);
        it = next;
    }
    if (ok && in->on_commit)
        in->on_commit(in->on_commit_ctx);
}

void ingest_set_on_commit(struct ingest *in, void (*fn)(void *ctx), void *ctx)
{
    in->on_commit = fn;
    in->on_commit_ctx = ctx;
}

void ingest_set_txn_hook(struct ingest *in, int (*write)(void *ctx, struct store_txn *t),
                         void (*done)(void *ctx, bool written), void *ctx)
{
    in->hook_write = write;
    in->hook_done = done;
    in->hook_ctx = ctx;
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    commit_now(arg);
}

void ingest_flush(struct ingest *in)
{
    event_del(in->commit_ev);
    commit_now(in);
}
