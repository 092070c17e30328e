/*
 * test_store_outbox.c: the store's delivery calls: reading an outbox head
 * with its payload and message fields, delivered, retry, dead letters and
 * queue depth.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

struct fx {
    char base[64];
    char dir[96];
    struct store *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->base, "/tmp/hl7outbox-XXXXXX");
    if (!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
    struct store_opts o = { .dir = f->dir };
    if (store_open(&o, &f->s, NULL, 0)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    int rc = nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* Store a message with control id ctrl and queue payload for dest. */
static uint64_t put_msg(struct store *s, const char *dest, const char *ctrl,
                        uint64_t received, const char *payload)
{
    struct store_txn *t;
    struct store_msg m = { .received_ms = received, .state = STORE_MSG_ROUTED,
                           .source = "pas", .code = "ADT", .trigger = "A01",
                           .control_id = ctrl, .raw = "MSH|x", .raw_len = 5 };
    uint64_t id, seq;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, &id), 0);
    assert_int_equal(store_enqueue(t, dest, id, payload, strlen(payload), &seq), 0);
    assert_int_equal(store_commit(t), 0);
    return seq;
}

static uint32_t dest_id(struct store *s, const char *name)
{
    struct store_txn *t;
    uint32_t id;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dest_id(t, name, &id), 0);
    assert_int_equal(store_commit(t), 0);
    return id;
}

static void test_head_and_outcomes(void **state)
{
    struct fx *f = *state;
    struct store_outbox_entry e;
    void *owner;
    uint32_t a = dest_id(f->s, "a"), b = dest_id(f->s, "b");
    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), STORE_E_NOT_FOUND);
    assert_null(owner);

    uint64_t s1 = put_msg(f->s, "a", "C1", 1000, "P1");
    uint64_t s2 = put_msg(f->s, "a", "C2", 2000, "P2");
    put_msg(f->s, "b", "C3", 3000, "P3");

    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), 0);
    assert_int_equal(e.dest_id, a);
    assert_int_equal(e.seq, s1);
    assert_int_equal(e.attempts, 0);
    assert_int_equal(e.next_attempt_ms, 0);
    assert_int_equal(e.received_ms, 1000);
    assert_string_equal(e.payload, "P1");
    assert_int_equal(e.len, 2);
    assert_string_equal(e.control_id, "C1");
    assert_string_equal(e.code, "ADT");
    assert_string_equal(e.trigger, "A01");
    assert_string_equal(e.last_error, "");
    free(owner);
    assert_int_equal(store_outbox_first(f->s, a, s1 + 1, &e, &owner), 0);
    assert_int_equal(e.seq, s2);
    free(owner);
    assert_int_equal(store_outbox_first(f->s, a, s2 + 1, &e, &owner), STORE_E_NOT_FOUND);

    uint64_t n, oldest;
    assert_int_equal(store_outbox_depth(f->s, a, &n, &oldest), 0);
    assert_int_equal(n, 2);
    assert_int_equal(oldest, 1000);
    assert_int_equal(store_outbox_depth(f->s, b, &n, &oldest), 0);
    assert_int_equal(n, 1);
    assert_int_equal(oldest, 3000);
    assert_int_equal(store_outbox_depth(f->s, 99, &n, &oldest), 0);
    assert_int_equal(n, 0);
    assert_int_equal(oldest, 0);

    /* retry rewrites the entry */
    struct store_txn *t;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_outbox_retry(t, a, s1, 3, 123456, "timed out"), 0);
    assert_int_equal(store_outbox_retry(t, a, 77, 1, 1, "x"), STORE_E_NOT_FOUND);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), 0);
    assert_int_equal(e.seq, s1);
    assert_int_equal(e.attempts, 3);
    assert_int_equal(e.next_attempt_ms, 123456);
    assert_string_equal(e.last_error, "timed out");
    assert_string_equal(e.payload, "P1");
    free(owner);

    /* delivered: the entry goes, the payload stays */
    uint64_t payloads;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_outbox_delivered(t, a, s1), 0);
    assert_int_equal(store_outbox_delivered(t, a, s1), STORE_E_NOT_FOUND);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(store_count(f->s, "payloads", &payloads), 0);
    assert_int_equal(payloads, 3);
    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), 0);
    assert_int_equal(e.seq, s2);
    free(owner);

    /* dead: moved with msg id and error; seq keeps increasing after it */
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_outbox_dead(t, a, s2, "AR: unknown patient"), 0);
    assert_int_equal(store_outbox_dead(t, a, s2, "again"), STORE_E_NOT_FOUND);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), STORE_E_NOT_FOUND);
    uint64_t dead;
    assert_int_equal(store_count(f->s, "dead", &dead), 0);
    assert_int_equal(dead, 1);
    assert_int_equal(store_outbox_depth(f->s, a, &n, NULL), 0);
    assert_int_equal(n, 0);
    uint64_t s4 = put_msg(f->s, "a", "C4", 4000, "P4");
    assert_true(s4 > s2);
    /* b untouched throughout */
    assert_int_equal(store_outbox_depth(f->s, b, &n, NULL), 0);
    assert_int_equal(n, 1);
}

/* An untransformed copy (payload NULL) is not stored twice: the entry
 * reads the message's own bytes. */
static void test_payload_same_as_message(void **state)
{
    struct fx *f = *state;
    uint32_t a = dest_id(f->s, "a");
    static const char raw[] = "MSH|^~\\&|PAS|RLH|||20260101||ADT^A01|C9|P|2.4\rPID|1\r";
    struct store_msg m = { .received_ms = 5, .state = STORE_MSG_ROUTED, .source = "pas",
                           .code = "ADT", .trigger = "A01", .control_id = "C9",
                           .raw = raw, .raw_len = sizeof raw - 1 };
    struct store_txn *t;
    uint64_t id, seq;
    assert_int_equal(store_begin(f->s, &t), 0);
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, &id), 0);
    assert_int_equal(store_enqueue(t, "a", id, NULL, sizeof raw - 1, &seq), 0);
    assert_int_equal(store_commit(t), 0);
    struct store_outbox_entry e;
    void *owner;
    assert_int_equal(store_outbox_first(f->s, a, 0, &e, &owner), 0);
    assert_int_equal(e.len, sizeof raw - 1);
    assert_memory_equal(e.payload, raw, sizeof raw - 1);
    assert_string_equal(e.control_id, "C9");
    free(owner);
}

static void test_needs_txn(void **state)
{
    struct fx *f = *state;
    assert_int_equal(store_outbox_delivered(NULL, 1, 1), STORE_E_INVAL);
    assert_int_equal(store_outbox_retry(NULL, 1, 1, 1, 1, ""), STORE_E_INVAL);
    assert_int_equal(store_outbox_dead(NULL, 1, 1, ""), STORE_E_INVAL);
    (void)f;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_head_and_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_same_as_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_txn, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
