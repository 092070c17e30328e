/*
 * prune_fill.c: fills a store with old, delivered messages for the
 * retention benchmark (test/bench/prune.sh): N messages received DAYS ago,
 * each with its dedup and by_patient entries and a payload for destination
 * "files", delivered (no outbox entry left), written straight through the
 * store API in large transactions.
 *
 * usage: prune_fill DIR N [DAYS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

#define PER_TXN 20000

static const char RAW[] =
    "MSH|^~\\&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01|%s|P|2.4\r"
    "EVN|A01|20250101120000\r"
    "PID|1||9434765919^^^NHS^NH||SMITH^JOHN^^^MR||19700101|M|||1 HIGH ST^^LONDON^^E1 1AA\r"
    "PV1|1|I|WARD1^BED1^RLH\r";

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: prune_fill DIR N [DAYS]\n");
        return 2;
    }
    unsigned long long n = strtoull(argv[2], NULL, 10);
    unsigned long long days = argc > 3 ? strtoull(argv[3], NULL, 10) : 30;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t received = ((uint64_t)ts.tv_sec - days * 86400) * 1000;
    struct store_opts o = { .dir = argv[1], .map_initial = 64ull << 20, .map_max = 64ull << 30 };
    struct store *s;
    char detail[512];
    int rc = store_open(&o, &s, detail, sizeof detail);
    if (rc) {
        fprintf(stderr, "prune_fill: %s\n", detail);
        return 1;
    }
    uint32_t dest = 0;
    for (unsigned long long done = 0; done < n;) {
        struct store_txn *t;
        unsigned long long start = done;
        if ((rc = store_begin(s, &t)))
            break;
        for (; !rc && done < n && done - start < PER_TXN; done++) {
            char ctrl[32], raw[sizeof RAW + 32];
            snprintf(ctrl, sizeof ctrl, "FILL%010llu", done);
            int len = snprintf(raw, sizeof raw, RAW, ctrl);
            struct store_msg m = {
                .received_ms = received + done / 1000, .state = STORE_MSG_ROUTED,
                .source = "bench", .peer = "127.0.0.1:1", .kind = "hl7v2", .code = "ADT",
                .trigger = "A01", .structure = "ADT_A01", .control_id = ctrl,
                .sending_app = "PAS", .sending_fac = "RLH", .nhs_number = "9434765919",
                .raw = raw, .raw_len = (size_t)len,
            };
            size_t klen;
            char *key = store_dedup_key("bench", "PAS", 3, "RLH", 3, ctrl, strlen(ctrl), &klen);
            uint64_t id, seq;
            rc = key ? store_put_message(t, &m, key, klen, "ACK", 3, &id) : STORE_E_NOMEM;
            free(key);
            if (!rc)
                rc = store_enqueue(t, "files", id, raw, (size_t)len, &seq);
            if (!rc && !dest)
                rc = store_dest_id(t, "files", &dest);
            if (!rc)
                rc = store_outbox_delivered(t, dest, seq);
        }
        if (rc == STORE_E_MAP_FULL) {
            store_abort(t);
            done = start;
            if ((rc = store_grow(s)))
                break;
            continue;
        }
        if (rc) {
            store_abort(t);
            break;
        }
        if ((rc = store_commit(t)))
            break;
    }
    if (rc)
        fprintf(stderr, "prune_fill: %s: %s\n", store_strerror(rc), store_last_error(s));
    store_close(s);
    return rc ? 1 : 0;
}
