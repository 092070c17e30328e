/*
 * test_store.c: the LMDB message store. Each test gets a fresh directory
 * under /tmp; records are read back through the store and, to pin the
 * on-disk format, with the LMDB API and mdb_dump. Disk-full and I/O
 * errors are injected by interposing fdatasync, pwrite and writev, which
 * liblmdb calls through the dynamic linker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "store.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

static const char ADT[] =
    "MSH|^~\\&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01|MSG0001|P|2.4\r"
    "PID|1||9434765919^^^NHS^NH||SMITH^JOHN\r";

/* ------------------------------------------------------------ fault injection */

/* errno for the next fdatasync / meta page write / data page write to
 * fail with; 0: pass through. Each fires once. */
static int fail_sync, fail_meta_write, fail_data_write;

int fdatasync(int fd)
{
    static int (*real)(int);
    if (fail_sync) {
        errno = fail_sync;
        fail_sync = 0;
        return -1;
    }
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    long pg = sysconf(_SC_PAGESIZE);
    /* LMDB's two meta pages are the first two pages of data.mdb. */
    if (fail_meta_write && off < 2 * pg) {
        errno = fail_meta_write;
        fail_meta_write = 0;
        return -1;
    }
    if (fail_data_write && off >= 2 * pg) {
        errno = fail_data_write;
        fail_data_write = 0;
        return -1;
    }
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pwrite");
    return real(fd, p, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (fail_data_write) {
        errno = fail_data_write;
        fail_data_write = 0;
        return -1;
    }
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "writev");
    return real(fd, iov, n);
}

/* ------------------------------------------------------------ fixtures */

struct fx {
    char base[64];      /* the mkdtemp directory */
    char dir[96];       /* base/data: the store creates it */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->base, "/tmp/hl7store-XXXXXX");
    if (!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->base);
    fail_sync = fail_meta_write = fail_data_write = 0;
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
    int rc = nftw(f->base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static struct store *open_store(const struct fx *f, uint64_t initial, uint64_t max)
{
    struct store_opts o = { .dir = f->dir, .map_initial = initial, .map_max = max };
    struct store *s = NULL;
    char detail[512];
    int rc = store_open(&o, &s, detail, sizeof detail);
    if (rc)
        print_error("store_open: %s (%s)\n", store_strerror(rc), detail);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static struct store_msg sample_msg(void)
{
    return (struct store_msg){
        .received_ms = 1780000000123ull, .state = STORE_MSG_ACCEPTED,
        .source = "rlh-pas", .peer = "10.1.2.3:5000", .tls_subject = "CN=pas.rlh.example",
        .kind = "hl7v2", .code = "ADT", .trigger = "A01", .structure = "ADT_A01",
        .control_id = "MSG0001", .sending_app = "PAS", .sending_fac = "RLH",
        .nhs_number = "9434765919", .raw = ADT, .raw_len = sizeof ADT - 1,
    };
}

static uint64_t put_msg(struct store_txn *t, const struct store_msg *m)
{
    uint64_t id = 0;
    assert_int_equal(store_put_message(t, m, NULL, 0, NULL, 0, &id), 0);
    return id;
}

static uint64_t put_audit(struct store_txn *t, const char *subject)
{
    struct store_audit a = { .time_ms = 1780000000000ull, .actor = "source=rlh-pas",
                             .action = "accept", .subject = subject, .outcome = "AA",
                             .details = "type=ADT^A01" };
    uint64_t seq = 0;
    assert_int_equal(store_audit_append(t, &a, &seq), 0);
    return seq;
}

static uint64_t count(struct store *s, const char *db)
{
    uint64_t n = UINT64_MAX;
    assert_int_equal(store_count(s, db, &n), 0);
    return n;
}

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The LMDB API on a closed store, to read or damage records directly. */
struct raw {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi  dbi;
};

static void raw_open(struct raw *r, const struct fx *f, const char *db, bool write)
{
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(r->env, 32), 0);
    assert_int_equal(mdb_env_open(r->env, f->dir, write ? 0 : MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, write ? 0 : MDB_RDONLY, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, db, 0, &r->dbi), 0);
}

static void raw_close(struct raw *r)
{
    if (r->txn)
        assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

static int raw_get_id(struct raw *r, uint64_t id, MDB_val *v)
{
    uint8_t k[8];
    be64(k, id);
    MDB_val key = { 8, k };
    return mdb_get(r->txn, r->dbi, &key, v);
}

static void raw_put_id(struct raw *r, uint64_t id, const void *p, size_t n)
{
    uint8_t k[8];
    be64(k, id);
    MDB_val key = { 8, k }, v = { n, (void *)p };
    assert_int_equal(mdb_put(r->txn, r->dbi, &key, &v, 0), 0);
}

/* ------------------------------------------------------------ open and reopen */

static void test_open_creates(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct stat st;
    char path[160];

    assert_int_equal(stat(f->dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/lock.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(store_map_size(s), 64 * MiB);
    assert_int_equal(store_map_max(s), 64 * MiB);      /* 0: no growth */
    assert_int_equal(store_grow(s), STORE_E_FULL);

    static const char *const dbs[] = { "messages", "dedup", "errors", "by_patient", "audit",
                                       "outbox", "payloads", "dead" };
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++)
        assert_int_equal(count(s, dbs[i]), 0);
    assert_int_equal(count(s, "meta"), 1);              /* schema_version */
    uint64_t n = 7;
    assert_int_equal(store_count(s, "nope", &n), STORE_E_NOT_FOUND);
    assert_int_equal(store_count(s, NULL, &n), STORE_E_NOT_FOUND);
    assert_int_equal(n, 7);
    uint64_t checked = 9, bad = 9;
    assert_int_equal(store_audit_verify(s, &checked, &bad), 0);
    assert_int_equal(checked, 0);
    assert_int_equal(bad, 0);
    store_close(s);

    /* The schema version is a big-endian u32 under "schema_version". */
    struct raw r;
    raw_open(&r, f, "meta", false);
    MDB_val k = { 14, "schema_version" }, v;
    assert_int_equal(mdb_get(r.txn, r.dbi, &k, &v), 0);
    assert_int_equal(v.mv_size, 4);
    assert_memory_equal(v.mv_data, "\0\0\0\1", 4);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
    store_close(NULL);                                  /* harmless */
}

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    struct store *s = (struct store *)1;
    char detail[512];
    struct store_opts o = { .dir = NULL };

    assert_int_equal(store_open(&o, &s, detail, sizeof detail), STORE_E_INVAL);
    assert_null(s);

    /* Only one level is created. */
    char deep[160];
    snprintf(deep, sizeof deep, "%s/a/b", f->base);
    o.dir = deep;
    assert_int_equal(store_open(&o, &s, detail, sizeof detail), STORE_E_IO);
    assert_null(s);
    assert_non_null(strstr(detail, deep));
    assert_non_null(strstr(detail, "No such file or directory"));

    /* A file where the directory should be. */
    FILE *fp = fopen(f->dir, "w");
    assert_non_null(fp);
    fclose(fp);
    o.dir = f->dir;
    assert_int_not_equal(store_open(&o, &s, detail, sizeof detail), 0);
    assert_null(s);
    assert_non_null(strstr(detail, f->dir));
    assert_int_equal(remove(f->dir), 0);
}

static void test_reopen_keeps_data_ids_continue(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    struct store_err e = { .received_ms = 5, .source = "rlh-pas", .reason = "bad MSH",
                           .ack_code = "AR", .raw = "junk", .raw_len = 4 };
    uint64_t id;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(put_audit(t, "msg=1"), 1);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 3);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 2);
    assert_int_equal(put_audit(t, "msg=3"), 2);
    assert_int_equal(store_commit(t), 0);
    store_close(s);

    s = open_store(f, 0, 0);
    assert_int_equal(count(s, "messages"), 3);
    assert_int_equal(count(s, "errors"), 2);
    assert_int_equal(count(s, "audit"), 2);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 4);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 3);
    assert_int_equal(put_audit(t, "msg=4"), 3);
    assert_int_equal(store_commit(t), 0);

    struct store_msg got;
    void *owner;
    assert_int_equal(store_get_message(s, 1, &got, &owner), 0);
    assert_string_equal(got.control_id, "MSG0001");
    free(owner);
    uint64_t checked, bad;
    assert_int_equal(store_audit_verify(s, &checked, &bad), 0);
    assert_int_equal(checked, 3);
    store_close(s);
}

static void test_schema_newer_refused(void **state)
{
    struct fx *f = *state;
    store_close(open_store(f, 0, 0));

    struct raw r;
    raw_open(&r, f, "meta", true);
    MDB_val k = { 14, "schema_version" }, v = { 4, "\0\0\0\2" };
    assert_int_equal(mdb_put(r.txn, r.dbi, &k, &v, 0), 0);
    raw_close(&r);

    struct store_opts o = { .dir = f->dir };
    struct store *s = (struct store *)1;
    char detail[512];
    assert_int_equal(store_open(&o, &s, detail, sizeof detail), STORE_E_SCHEMA);
    assert_null(s);
    char want[512];
    snprintf(want, sizeof want, "store %s was written by a newer hl7broker (schema version "
             "2); this one reads schema version 1 at most", f->dir);
    assert_string_equal(detail, want);

    /* The refused store was not touched: still version 2. */
    raw_open(&r, f, "meta", false);
    assert_int_equal(mdb_get(r.txn, r.dbi, &k, &v), 0);
    assert_memory_equal(v.mv_data, "\0\0\0\2", 4);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);

    /* A version that is not a u32 is corrupt, not newer. */
    raw_open(&r, f, "meta", true);
    v = (MDB_val){ 2, "\0\1" };
    assert_int_equal(mdb_put(r.txn, r.dbi, &k, &v, 0), 0);
    raw_close(&r);
    assert_int_equal(store_open(&o, &s, detail, sizeof detail), STORE_E_CORRUPT);
    assert_null(s);
    assert_non_null(strstr(detail, "schema_version"));
}

/* ------------------------------------------------------------ messages */

static void test_message_round_trip(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg(), got;
    /* Raw bytes may hold anything, NULs included. */
    static const char bin[] = "MSH|^~\\&|A\0B\r\xff\xfe";
    struct store_msg n = { .received_ms = UINT64_MAX, .state = STORE_MSG_ERROR,
                           .raw = bin, .raw_len = sizeof bin - 1 };
    void *owner;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(put_msg(t, &n), 2);        /* every string NULL */
    /* Not committed yet: readers see nothing. */
    assert_int_equal(store_get_message(s, 1, &got, &owner), STORE_E_NOT_FOUND);
    assert_null(owner);
    assert_int_equal(store_commit(t), 0);

    assert_int_equal(store_get_message(s, 1, &got, &owner), 0);
    assert_non_null(owner);
    assert_int_equal(got.received_ms, 1780000000123ull);
    assert_int_equal(got.state, STORE_MSG_ACCEPTED);
    assert_string_equal(got.source, "rlh-pas");
    assert_string_equal(got.peer, "10.1.2.3:5000");
    assert_string_equal(got.tls_subject, "CN=pas.rlh.example");
    assert_string_equal(got.kind, "hl7v2");
    assert_string_equal(got.code, "ADT");
    assert_string_equal(got.trigger, "A01");
    assert_string_equal(got.structure, "ADT_A01");
    assert_string_equal(got.control_id, "MSG0001");
    assert_string_equal(got.sending_app, "PAS");
    assert_string_equal(got.sending_fac, "RLH");
    assert_string_equal(got.nhs_number, "9434765919");
    assert_int_equal(got.raw_len, sizeof ADT - 1);
    assert_memory_equal(got.raw, ADT, sizeof ADT - 1);
    assert_int_equal(got.raw[got.raw_len], '\0');
    free(owner);

    assert_int_equal(store_get_message(s, 2, &got, &owner), 0);
    assert_int_equal(got.received_ms, UINT64_MAX);
    assert_int_equal(got.state, STORE_MSG_ERROR);
    const char *strs[] = { got.source, got.peer, got.tls_subject, got.kind, got.code,
                           got.trigger, got.structure, got.control_id, got.sending_app,
                           got.sending_fac, got.nhs_number };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        assert_string_equal(strs[i], "");
    assert_int_equal(got.raw_len, sizeof bin - 1);
    assert_memory_equal(got.raw, bin, sizeof bin - 1);
    free(owner);

    assert_int_equal(store_get_message(s, 3, &got, &owner), STORE_E_NOT_FOUND);
    assert_int_equal(store_get_message(s, 0, &got, &owner), STORE_E_NOT_FOUND);
    store_close(s);
}

/* The bytes the header documents, built here independently. */
static size_t expect_str(uint8_t *p, const char *v)
{
    size_t n = strlen(v);
    p[0] = p[1] = 0;
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    memcpy(p + 4, v, n);
    return 4 + n;
}

static void test_message_encoding(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    assert_int_equal(store_begin(s, &t), 0);
    for (int i = 0; i < 300; i++)                /* ids past one byte */
        put_msg(t, &m);
    assert_int_equal(store_commit(t), 0);
    store_close(s);

    uint8_t want[1024], *p = want;
    *p++ = 1;
    be64(p, 1780000000123ull), p += 8;
    *p++ = STORE_MSG_ACCEPTED;
    const char *strs[] = { "rlh-pas", "10.1.2.3:5000", "CN=pas.rlh.example", "hl7v2", "ADT",
                           "A01", "ADT_A01", "MSG0001", "PAS", "RLH", "9434765919", "" };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        p += expect_str(p, strs[i]);
    memcpy(p, ADT, sizeof ADT - 1), p += sizeof ADT - 1;

    struct raw r;
    MDB_val v, k;
    raw_open(&r, f, "messages", false);
    assert_int_equal(raw_get_id(&r, 1, &v), 0);
    assert_int_equal(v.mv_size, (size_t)(p - want));
    assert_memory_equal(v.mv_data, want, v.mv_size);
    /* Big-endian keys: cursor order is numeric order, 1..300. */
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(r.txn, r.dbi, &c), 0);
    uint64_t expect = 1;
    while (mdb_cursor_get(c, &k, &v, expect == 1 ? MDB_FIRST : MDB_NEXT) == 0) {
        uint8_t kb[8];
        be64(kb, expect++);
        assert_int_equal(k.mv_size, 8);
        assert_memory_equal(k.mv_data, kb, 8);
    }
    assert_int_equal(expect, 301);
    mdb_cursor_close(c);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
}

/* mdb_dump -p shows the raw bytes of a message: the recipe integration
 * tests use (printable bytes as they are, a backslash doubled, others as
 * \xx in lower-case hex; one line per key and per value, each led by a
 * space). */
static void test_mdb_dump_readable(void **state)
{
    struct fx *f = *state;
    if (system("command -v mdb_dump >/dev/null 2>&1") != 0)
        skip();
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    assert_int_equal(store_begin(s, &t), 0);
    put_msg(t, &m);
    assert_int_equal(store_commit(t), 0);

    char cmd[256], line[4096];
    snprintf(cmd, sizeof cmd, "mdb_dump -p -s messages '%s'", f->dir);
    FILE *p = popen(cmd, "r");      /* while the store is open: a reader */
    assert_non_null(p);
    int n = 0, key_line = -1, val_line = -1;
    char val[4096] = "";
    while (fgets(line, sizeof line, p)) {
        n++;
        if (strcmp(line, " \\00\\00\\00\\00\\00\\00\\00\\01\n") == 0)
            key_line = n;
        else if (key_line > 0 && val_line < 0) {
            val_line = n;
            snprintf(val, sizeof val, "%s", line);
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(key_line > 0, 1);
    assert_int_equal(val_line, key_line + 1);
    /* LMDB 0.9.24 prints a backslash as it is; later dumpers as \5c. */
    static const char tail[] = "&|PAS|RLH|LCR|NEL|20250101120000||ADT^A01^ADT_A01"
                               "|MSG0001|P|2.4\\0dPID|1||9434765919^^^NHS^NH||SMITH^JOHN\\0d\n";
    char a[512], b[512];
    snprintf(a, sizeof a, "MSH|^~\\%s", tail);
    snprintf(b, sizeof b, "MSH|^~\\5c%s", tail);
    assert_true(strstr(val, a) || strstr(val, b));
    assert_non_null(strstr(val, "\\00\\00\\00\\07rlh-pas\\00\\00\\00\\0d10.1.2.3:5000"));
    store_close(s);
}

/* ------------------------------------------------------------ dedup */

static void test_dedup(void **state)
{
    struct fx *f = *state;
    size_t klen = 0;
    char *key = store_dedup_key("rlh-pas", "PAS", 3, "RLH", 3, "MSG0001xyz", 7, &klen);
    assert_non_null(key);
    assert_int_equal(klen, 23);
    assert_memory_equal(key, "rlh-pas\0PAS\0RLH\0MSG0001", 24);  /* NUL beyond len */

    size_t k2len;
    char *key2 = store_dedup_key(NULL, NULL, 5, "RLH", 3, "MSG0002", 7, &k2len);
    assert_int_equal(k2len, 13);
    assert_memory_equal(key2, "\0\0RLH\0MSG0002", 14);

    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    static const char ack[] = "MSH|^~\\&|LCR|NEL|PAS|RLH|20250101120001||ACK^A01^ACK|1|P|2.4\r"
                              "MSA|AA|MSG0001\r";
    uint64_t id = 0;
    char *got = NULL;
    size_t got_len = 0;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dedup_get(t, key, klen, &id, &got, &got_len), STORE_E_NOT_FOUND);
    assert_int_equal(store_put_message(t, &m, key, klen, ack, sizeof ack - 1, &id), 0);
    assert_int_equal(id, 1);
    /* The transaction sees its own entry (two copies in one batch). */
    id = 0;
    assert_int_equal(store_dedup_get(t, key, klen, &id, NULL, NULL), 0);
    assert_int_equal(id, 1);
    /* An empty ACK is fine. */
    assert_int_equal(store_put_message(t, &m, key2, k2len, NULL, 0, &id), 0);
    assert_int_equal(id, 2);
    assert_int_equal(store_commit(t), 0);

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dedup_get(t, key, klen, &id, &got, &got_len), 0);
    assert_int_equal(id, 1);
    assert_int_equal(got_len, sizeof ack - 1);
    assert_memory_equal(got, ack, sizeof ack);  /* NUL-terminated */
    free(got);
    assert_int_equal(store_dedup_get(t, key2, k2len, &id, &got, &got_len), 0);
    assert_int_equal(id, 2);
    assert_int_equal(got_len, 0);
    assert_string_equal(got, "");
    free(got);
    /* A miss: one byte different, a prefix, nothing. */
    key[klen - 1] = '2';
    assert_int_equal(store_dedup_get(t, key, klen, &id, &got, &got_len), STORE_E_NOT_FOUND);
    assert_int_equal(store_dedup_get(t, key, klen - 1, &id, &got, &got_len),
                     STORE_E_NOT_FOUND);
    assert_int_equal(store_dedup_get(t, NULL, 0, &id, &got, &got_len), STORE_E_NOT_FOUND);

    /* Keys past LMDB's 511-byte limit still work and stay distinct. */
    char big_a[2000], big_b[2000];
    memset(big_a, 'x', sizeof big_a);
    memcpy(big_b, big_a, sizeof big_b);
    big_b[1999] = 'y';
    assert_int_equal(store_put_message(t, &m, big_a, sizeof big_a, "A", 1, &id), 0);
    assert_int_equal(id, 3);
    assert_int_equal(store_dedup_get(t, big_b, sizeof big_b, &id, &got, &got_len),
                     STORE_E_NOT_FOUND);
    assert_int_equal(store_put_message(t, &m, big_b, sizeof big_b, "B", 1, &id), 0);
    assert_int_equal(id, 4);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dedup_get(t, big_a, sizeof big_a, &id, &got, &got_len), 0);
    assert_int_equal(id, 3);
    assert_string_equal(got, "A");
    free(got);
    assert_int_equal(store_dedup_get(t, big_b, sizeof big_b, &id, &got, &got_len), 0);
    assert_int_equal(id, 4);
    assert_string_equal(got, "B");
    free(got);
    /* No dedup key: no entry. */
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, &id), 0);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(count(s, "dedup"), 4);
    assert_int_equal(count(s, "messages"), 5);
    store_close(s);

    /* On disk: the key as built, the value u64 id then the ACK. */
    struct raw r;
    MDB_val k = { k2len, key2 }, v;
    raw_open(&r, f, "dedup", false);
    assert_int_equal(mdb_get(r.txn, r.dbi, &k, &v), 0);
    assert_int_equal(v.mv_size, 8);
    assert_memory_equal(v.mv_data, "\0\0\0\0\0\0\0\2", 8);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
    free(key);
    free(key2);
}

/* ------------------------------------------------------------ errors */

static void test_error_records(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    static const char junk[] = "GET / HTTP/1.1\r\n\0\x01";
    struct store_err e = { .received_ms = 1780000000999ull, .source = "rlh-pas",
                           .peer = "10.9.9.9:4000", .tls_subject = NULL,
                           .reason = "not HL7: no MSH segment", .ack_code = "AR",
                           .raw = junk, .raw_len = sizeof junk - 1 };
    struct store_err empty = { 0 }, got;
    struct store_msg m = sample_msg();
    uint64_t id = 0;
    void *owner;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(put_msg(t, &m), 1);        /* ids are per database */
    assert_int_equal(store_put_error(t, &empty, &id), 0);
    assert_int_equal(id, 2);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(count(s, "errors"), 2);

    assert_int_equal(store_get_error(s, 1, &got, &owner), 0);
    assert_int_equal(got.received_ms, 1780000000999ull);
    assert_string_equal(got.source, "rlh-pas");
    assert_string_equal(got.peer, "10.9.9.9:4000");
    assert_string_equal(got.tls_subject, "");
    assert_string_equal(got.reason, "not HL7: no MSH segment");
    assert_string_equal(got.ack_code, "AR");
    assert_int_equal(got.raw_len, sizeof junk - 1);
    assert_memory_equal(got.raw, junk, sizeof junk - 1);
    free(owner);

    assert_int_equal(store_get_error(s, 2, &got, &owner), 0);
    assert_int_equal(got.received_ms, 0);
    assert_string_equal(got.reason, "");
    assert_string_equal(got.ack_code, "");
    assert_int_equal(got.raw_len, 0);
    assert_string_equal(got.raw, "");
    free(owner);
    assert_int_equal(store_get_error(s, 3, &got, &owner), STORE_E_NOT_FOUND);
    store_close(s);

    /* On disk: 01, time, five strings, raw to the end. */
    uint8_t want[256], *p = want;
    *p++ = 1;
    be64(p, 1780000000999ull), p += 8;
    p += expect_str(p, "rlh-pas");
    p += expect_str(p, "10.9.9.9:4000");
    p += expect_str(p, "");
    p += expect_str(p, "not HL7: no MSH segment");
    p += expect_str(p, "AR");
    memcpy(p, junk, sizeof junk - 1), p += sizeof junk - 1;
    struct raw r;
    MDB_val v;
    raw_open(&r, f, "errors", false);
    assert_int_equal(raw_get_id(&r, 1, &v), 0);
    assert_int_equal(v.mv_size, (size_t)(p - want));
    assert_memory_equal(v.mv_data, want, v.mv_size);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
}

/* ------------------------------------------------------------ by_patient */

static void test_by_patient(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    static const char *const nhs[] = {
        "9434765919",       /* 1: indexed */
        "943476591",        /* 2: nine digits */
        "94347659190",      /* 3: eleven */
        "94347A5919",       /* 4: a letter */
        "",                 /* 5 */
        NULL,               /* 6 */
        " 943476591",       /* 7: a space */
        "4010232137",       /* 8: indexed */
        "9434765919",       /* 9: same patient as 1 */
    };
    assert_int_equal(store_begin(s, &t), 0);
    for (size_t i = 0; i < sizeof nhs / sizeof nhs[0]; i++) {
        m.nhs_number = nhs[i];
        assert_int_equal(put_msg(t, &m), i + 1);
    }
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(count(s, "by_patient"), 3);
    store_close(s);

    /* Keys: NHS number then the big-endian id, sorted; values empty. */
    static const char *const want[] = {
        "4010232137\0\0\0\0\0\0\0\x08",
        "9434765919\0\0\0\0\0\0\0\x01",
        "9434765919\0\0\0\0\0\0\0\x09",
    };
    struct raw r;
    MDB_cursor *c;
    MDB_val k, v;
    raw_open(&r, f, "by_patient", false);
    assert_int_equal(mdb_cursor_open(r.txn, r.dbi, &c), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(mdb_cursor_get(c, &k, &v, i ? MDB_NEXT : MDB_FIRST), 0);
        assert_int_equal(k.mv_size, 18);
        assert_memory_equal(k.mv_data, want[i], 18);
        assert_int_equal(v.mv_size, 0);
    }
    assert_int_equal(mdb_cursor_get(c, &k, &v, MDB_NEXT), MDB_NOTFOUND);
    mdb_cursor_close(c);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
}

/* ------------------------------------------------------------ audit */

static void sha256_2(const void *a, size_t an, const void *b, size_t bn, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n;
    assert_non_null(ctx);
    assert_true(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL));
    assert_true(EVP_DigestUpdate(ctx, a, an));
    assert_true(EVP_DigestUpdate(ctx, b, bn));
    assert_true(EVP_DigestFinal_ex(ctx, out, &n));
    EVP_MD_CTX_free(ctx);
}

/* 12 records over three transactions. */
static void write_chain(struct store *s)
{
    struct store_txn *t;
    static const int per_txn[] = { 4, 3, 5 };
    uint64_t want = 1;
    char subject[32];
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(store_begin(s, &t), 0);
        for (int j = 0; j < per_txn[i]; j++) {
            snprintf(subject, sizeof subject, "msg=%llu", (unsigned long long)want);
            assert_int_equal(put_audit(t, subject), want++);
        }
        assert_int_equal(store_commit(t), 0);
    }
}

static void expect_verify(struct store *s, int rc, uint64_t checked, uint64_t bad)
{
    uint64_t c = 99, b = 99;
    assert_int_equal(store_audit_verify(s, &c, &b), rc);
    assert_int_equal(c, checked);
    assert_int_equal(b, bad);
}

static void test_audit_chain(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    write_chain(s);
    expect_verify(s, 0, 12, 0);
    assert_int_equal(store_audit_verify(s, NULL, NULL), 0);
    store_close(s);

    /* Each hash is SHA-256(previous hash || record bytes before the hash),
     * from 32 zero bytes; the head in meta is the last seq and hash. */
    struct raw r;
    MDB_val v;
    uint8_t prev[32] = { 0 }, h[32];
    raw_open(&r, f, "audit", false);
    for (uint64_t seq = 1; seq <= 12; seq++) {
        assert_int_equal(raw_get_id(&r, seq, &v), 0);
        assert_true(v.mv_size > 32);
        assert_int_equal(((uint8_t *)v.mv_data)[0], 1);
        sha256_2(prev, 32, v.mv_data, v.mv_size - 32, h);
        assert_memory_equal(h, (uint8_t *)v.mv_data + v.mv_size - 32, 32);
        memcpy(prev, h, 32);
    }
    MDB_dbi meta;
    assert_int_equal(mdb_dbi_open(r.txn, "meta", 0, &meta), 0);
    MDB_val k = { 10, "audit_head" };
    assert_int_equal(mdb_get(r.txn, meta, &k, &v), 0);
    assert_int_equal(v.mv_size, 40);
    assert_memory_equal(v.mv_data, "\0\0\0\0\0\0\0\x0c", 8);
    assert_memory_equal((uint8_t *)v.mv_data + 8, prev, 32);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);

    /* The chain continues across a reopen. */
    s = open_store(f, 0, 0);
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_audit(t, "msg=13"), 13);
    assert_int_equal(store_commit(t), 0);
    expect_verify(s, 0, 13, 0);
    store_close(s);
}

/* Change one byte of record seq in place (its text, not its hash). */
static void damage_audit(const struct fx *f, uint64_t seq, size_t at)
{
    struct raw r;
    MDB_val v;
    raw_open(&r, f, "audit", true);
    assert_int_equal(raw_get_id(&r, seq, &v), 0);
    uint8_t copy[1024];
    assert_true(v.mv_size <= sizeof copy && at < v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[at] ^= 0x20;
    raw_put_id(&r, seq, copy, v.mv_size);
    raw_close(&r);
}

static void test_audit_tamper_detected(void **state)
{
    struct fx *f = *state;
    store_close(open_store(f, 0, 0));
    struct store *s = open_store(f, 0, 0);
    write_chain(s);
    store_close(s);

    damage_audit(f, 7, 12);                 /* a byte of the actor text */
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 6, 7);
    assert_non_null(strstr(store_last_error(s), "audit chain breaks at record 7"));
    store_close(s);

    damage_audit(f, 7, 12);                 /* put it back */
    s = open_store(f, 0, 0);
    expect_verify(s, 0, 12, 0);
    store_close(s);

    /* The last record. */
    damage_audit(f, 12, 30);
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 11, 12);
    store_close(s);
    damage_audit(f, 12, 30);

    /* The first record's format byte. */
    damage_audit(f, 1, 0);
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 0, 1);
    store_close(s);
    damage_audit(f, 1, 0);

    /* A string length made to run past the end is corrupt, not a crash. */
    damage_audit(f, 3, 9);                  /* the top byte of actor's length */
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 2, 3);
    store_close(s);
}

static void test_audit_rewrite_detected(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    write_chain(s);
    store_close(s);

    /* Rewrite record 5 and recompute its own hash: record 6 no longer
     * chains from it. */
    struct raw r;
    MDB_val v;
    uint8_t copy[1024], prev[32];
    raw_open(&r, f, "audit", true);
    assert_int_equal(raw_get_id(&r, 4, &v), 0);
    memcpy(prev, (uint8_t *)v.mv_data + v.mv_size - 32, 32);
    assert_int_equal(raw_get_id(&r, 5, &v), 0);
    size_t n = v.mv_size;
    memcpy(copy, v.mv_data, n);
    copy[n - 33] ^= 0x01;                   /* last byte of details */
    sha256_2(prev, 32, copy, n - 32, copy + n - 32);
    raw_put_id(&r, 5, copy, n);
    raw_close(&r);
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 5, 6);
    store_close(s);
}

static void test_audit_gaps_detected(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    write_chain(s);
    store_close(s);

    /* The last two records removed: the head in meta still says 12. */
    struct raw r;
    uint8_t kb[8];
    MDB_val k = { 8, kb };
    raw_open(&r, f, "audit", true);
    be64(kb, 12);
    assert_int_equal(mdb_del(r.txn, r.dbi, &k, NULL), 0);
    be64(kb, 11);
    assert_int_equal(mdb_del(r.txn, r.dbi, &k, NULL), 0);
    raw_close(&r);
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 10, 11);
    /* New records go after the head and do not hide the gap. */
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_audit(t, "msg=13"), 13);
    assert_int_equal(store_commit(t), 0);
    expect_verify(s, STORE_E_CORRUPT, 10, 11);
    store_close(s);

    /* A record removed from the middle. */
    raw_open(&r, f, "audit", true);
    be64(kb, 4);
    assert_int_equal(mdb_del(r.txn, r.dbi, &k, NULL), 0);
    raw_close(&r);
    s = open_store(f, 0, 0);
    expect_verify(s, STORE_E_CORRUPT, 3, 4);
    store_close(s);
}

/* ------------------------------------------------------------ abort */

static void test_abort_leaves_no_trace(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    struct store_err e = { .reason = "x" };
    uint64_t id;
    size_t klen;
    char *key = store_dedup_key("src", "A", 1, "F", 1, "C1", 2, &klen);

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(store_put_message(t, &m, key, klen, "ACK", 3, &id), 0);
    assert_int_equal(id, 2);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(put_audit(t, "msg=1"), 1);
    store_abort(t);
    store_abort(t);                         /* twice is harmless */

    assert_int_equal(count(s, "messages"), 0);
    assert_int_equal(count(s, "errors"), 0);
    assert_int_equal(count(s, "audit"), 0);
    assert_int_equal(count(s, "dedup"), 0);
    assert_int_equal(count(s, "by_patient"), 0);
    assert_int_equal(count(s, "meta"), 1);  /* no audit_head */
    expect_verify(s, 0, 0, 0);

    /* The same ids again, and the chain starts from zero again. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dedup_get(t, key, klen, &id, NULL, NULL), STORE_E_NOT_FOUND);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(put_audit(t, "msg=1"), 1);
    assert_int_equal(store_commit(t), 0);

    /* An abort after commits rewinds to the committed ids. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    store_abort(t);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    assert_int_equal(store_commit(t), 0);
    expect_verify(s, 0, 2, 0);
    assert_int_equal(count(s, "messages"), 2);
    store_close(s);

    /* Closing with a transaction open aborts it. */
    s = open_store(f, 0, 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 3);
    store_close(s);
    s = open_store(f, 0, 0);
    assert_int_equal(count(s, "messages"), 2);
    store_close(s);
    free(key);
}

static void test_misuse(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 1 * MiB, 4 * MiB);
    struct store_txn *t, *t2 = (struct store_txn *)1;
    struct store_msg m = sample_msg();
    uint64_t id;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_begin(s, &t2), STORE_E_INVAL);
    assert_null(t2);
    assert_int_equal(store_grow(s), STORE_E_INVAL);
    assert_int_equal(store_put_message(t, NULL, NULL, 0, NULL, 0, &id), STORE_E_INVAL);
    struct store_msg bad = m;
    bad.raw = NULL;
    assert_int_equal(store_put_message(t, &bad, NULL, 0, NULL, 0, &id), STORE_E_INVAL);
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 3, &id), STORE_E_INVAL);
    assert_int_equal(store_put_error(t, NULL, &id), STORE_E_INVAL);
    assert_int_equal(store_audit_append(t, NULL, &id), STORE_E_INVAL);
    /* Refused arguments write nothing: the transaction still commits. */
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, NULL), 0);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(count(s, "messages"), 1);

    /* A finished transaction is refused, not used. */
    assert_int_equal(store_put_message(t, &m, NULL, 0, NULL, 0, &id), STORE_E_INVAL);
    assert_int_equal(store_commit(t), STORE_E_INVAL);
    assert_int_equal(store_commit(NULL), STORE_E_INVAL);
    store_abort(NULL);
    assert_int_equal(store_grow(s), 0);     /* no txn open now */
    store_close(s);
}

/* ------------------------------------------------------------ map growth */

static char big_raw[3000];

static struct store_msg big_msg(uint64_t n)
{
    struct store_msg m = sample_msg();
    snprintf(big_raw, sizeof big_raw, "MSH|^~\\&|PAS|RLH|||||ADT^A01|%llu|P|2.4\r",
             (unsigned long long)n);
    size_t len = strlen(big_raw);
    memset(big_raw + len, 'Z', sizeof big_raw - len);
    m.raw = big_raw;
    m.raw_len = sizeof big_raw;
    m.received_ms = n;
    return m;
}

/* One batch of 4 messages and an audit record; returns the first error. */
static int write_batch(struct store *s, uint64_t first)
{
    struct store_txn *t;
    uint64_t id;
    int rc = store_begin(s, &t);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < 4 && !rc; i++) {
        struct store_msg m = big_msg(first + i);
        if ((rc = store_put_message(t, &m, NULL, 0, NULL, 0, &id)) == 0)
            assert_int_equal(id, first + i);
    }
    if (!rc) {
        struct store_audit a = { .action = "accept", .subject = "batch" };
        rc = store_audit_append(t, &a, NULL);
    }
    if (rc) {
        store_abort(t);
        return rc;
    }
    return store_commit(t);
}

static void test_map_growth(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 64 * KiB, 1 * MiB);
    assert_int_equal(store_map_size(s), 64 * KiB);
    assert_int_equal(store_map_max(s), 1 * MiB);

    uint64_t next = 1;
    int grows = 0, map_full = 0, rc;
    for (;;) {
        rc = write_batch(s, next);
        if (rc == 0) {
            next += 4;
            continue;
        }
        assert_int_equal(rc, STORE_E_MAP_FULL);
        map_full++;
        assert_non_null(strstr(store_last_error(s), "MDB_MAP_FULL"));
        rc = store_grow(s);
        if (rc == STORE_E_FULL)
            break;
        assert_int_equal(rc, 0);
        grows++;
        assert_int_equal(store_map_size(s), (64 * KiB) << grows);
    }
    assert_int_equal(grows, 4);             /* 128 KiB .. 1 MiB */
    assert_int_equal(map_full, 5);
    assert_int_equal(store_map_size(s), 1 * MiB);
    assert_non_null(strstr(store_last_error(s), "ceiling"));
    uint64_t stored = next - 1;
    assert_true(stored > 150);

    /* Every committed message is there, the failed batches are not. */
    assert_int_equal(count(s, "messages"), stored);
    assert_int_equal(count(s, "audit"), stored / 4);
    struct store_msg got;
    void *owner;
    for (uint64_t id = 1; id <= stored; id++) {
        assert_int_equal(store_get_message(s, id, &got, &owner), 0);
        struct store_msg want = big_msg(id);
        assert_int_equal(got.received_ms, id);
        assert_int_equal(got.raw_len, want.raw_len);
        assert_memory_equal(got.raw, want.raw, want.raw_len);
        free(owner);
    }
    assert_int_equal(store_get_message(s, stored + 1, &got, &owner), STORE_E_NOT_FOUND);

    /* At the ceiling the store still takes a small write in a new txn. */
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    struct store_audit a = { .action = "full", .subject = "store" };
    uint64_t seq;
    assert_int_equal(store_audit_append(t, &a, &seq), 0);
    assert_int_equal(seq, stored / 4 + 1);
    assert_int_equal(store_commit(t), 0);
    expect_verify(s, 0, stored / 4 + 1, 0);
    store_close(s);

    /* The file is now larger than map_initial: it opens at the size it
     * last ran with, and everything is there. */
    char path[160];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true((uint64_t)st.st_size > 64 * KiB);
    s = open_store(f, 64 * KiB, 0);
    assert_int_equal(store_map_size(s), 1 * MiB);
    assert_int_equal(store_map_max(s), 1 * MiB);
    assert_int_equal(count(s, "messages"), stored);
    assert_int_equal(store_get_message(s, stored, &got, &owner), 0);
    assert_int_equal(got.received_ms, stored);
    free(owner);
    expect_verify(s, 0, stored / 4 + 1, 0);
    /* And it can still grow when allowed to. */
    store_close(s);
    s = open_store(f, 64 * KiB, 4 * MiB);
    assert_int_equal(store_map_max(s), 4 * MiB);
    next = stored + 1;
    while ((rc = write_batch(s, next)) == 0)
        next += 4;
    assert_int_equal(rc, STORE_E_MAP_FULL);
    assert_true(next < stored + 40);        /* a few freed pages at most */
    assert_int_equal(store_grow(s), 0);
    assert_int_equal(store_map_size(s), 2 * MiB);
    assert_int_equal(write_batch(s, next), 0);
    assert_int_equal(count(s, "messages"), next + 3);
    store_close(s);
}

/* A call that fails after writing poisons the txn: commit refuses it. */
static void test_failed_call_poisons_txn(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 64 * KiB, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg(), huge = sample_msg();
    static char raw[128 * 1024];
    memset(raw, 'H', sizeof raw);
    huge.raw = raw;
    huge.raw_len = sizeof raw;
    uint64_t id;

    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(store_put_message(t, &huge, NULL, 0, NULL, 0, &id), STORE_E_MAP_FULL);
    assert_int_equal(store_audit_append(t, &(struct store_audit){ 0 }, &id),
                     STORE_E_MAP_FULL);
    assert_int_equal(store_commit(t), STORE_E_MAP_FULL);
    assert_int_equal(count(s, "messages"), 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(store_commit(t), 0);
    store_close(s);
}

/* ------------------------------------------------------------ disk errors */

static void test_commit_disk_full_then_recovers(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();

    /* fsync fails with ENOSPC. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(put_audit(t, "msg=1"), 1);
    fail_sync = ENOSPC;
    assert_int_equal(store_commit(t), STORE_E_FULL);
    assert_int_equal(fail_sync, 0);         /* it did fsync */
    assert_non_null(strstr(store_last_error(s), "No space left on device"));
    assert_non_null(strstr(store_last_error(s), f->dir));
    assert_int_equal(count(s, "messages"), 0);

    /* Space is back: the next transaction succeeds with the same ids. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 1);
    assert_int_equal(put_audit(t, "msg=1"), 1);
    assert_int_equal(store_commit(t), 0);

    /* A data page write fails with ENOSPC. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    fail_data_write = ENOSPC;
    assert_int_equal(store_commit(t), STORE_E_FULL);
    assert_int_equal(fail_data_write, 0);

    /* fsync fails with EIO. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    fail_sync = EIO;
    assert_int_equal(store_commit(t), STORE_E_IO);
    assert_non_null(strstr(store_last_error(s), "Input/output error"));

    /* The meta page write fails: LMDB refuses further transactions until
     * the environment is reopened, which store_begin does. */
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    fail_meta_write = EIO;
    assert_int_equal(store_commit(t), STORE_E_IO);
    assert_int_equal(fail_meta_write, 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 2);
    assert_int_equal(put_audit(t, "msg=2"), 2);
    assert_int_equal(store_commit(t), 0);
    assert_int_equal(count(s, "messages"), 2);
    expect_verify(s, 0, 2, 0);
    store_close(s);

    /* What is on disk is exactly the two committed batches. */
    s = open_store(f, 0, 0);
    assert_int_equal(count(s, "messages"), 2);
    assert_int_equal(count(s, "by_patient"), 2);
    expect_verify(s, 0, 2, 0);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(put_msg(t, &m), 3);
    store_abort(t);
    store_close(s);
}

/* ------------------------------------------------------------ corrupt records */

static void test_corrupt_records(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    struct store_err e = { .source = "s", .reason = "r", .raw = "xyz", .raw_len = 3 };
    size_t klen;
    char *key = store_dedup_key("s", "A", 1, "F", 1, "C", 1, &klen);
    uint64_t id;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_put_message(t, &m, key, klen, "ACK", 3, &id), 0);
    assert_int_equal(store_put_error(t, &e, &id), 0);
    assert_int_equal(store_commit(t), 0);
    store_close(s);

    /* Every cut of the message before its raw bytes, as ids 1000 + cut;
     * a string length past the end; a wrong format byte. */
    struct raw r;
    MDB_val v;
    uint8_t copy[1024];
    raw_open(&r, f, "messages", true);
    assert_int_equal(raw_get_id(&r, 1, &v), 0);
    size_t n = v.mv_size, head = n - (sizeof ADT - 1);
    memcpy(copy, v.mv_data, n);
    for (size_t cut = 0; cut < head; cut++)
        raw_put_id(&r, 1000 + cut, copy, cut);
    copy[10 + 0] = 0xff;                    /* source's length: 0xff000007 */
    raw_put_id(&r, 2000, copy, n);
    copy[10] = 0;
    copy[0] = 2;
    raw_put_id(&r, 2001, copy, n);
    copy[0] = 1;
    raw_put_id(&r, 2002, copy, head);       /* no raw bytes: fine */
    for (size_t i = 0; i < head; i++) {     /* each header byte set to 0xff */
        uint8_t c = copy[i];
        copy[i] = 0xff;
        raw_put_id(&r, 3000 + i, copy, n);
        copy[i] = c;
    }
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(r.txn, "errors", 0, &dbi), 0);
    uint8_t kb[8];
    be64(kb, 2);
    MDB_val k = { 8, kb }, ev = { 5, "\1\0\0\0\0" };
    assert_int_equal(mdb_put(r.txn, dbi, &k, &ev, 0), 0);
    assert_int_equal(mdb_dbi_open(r.txn, "dedup", 0, &dbi), 0);
    k = (MDB_val){ klen, key };
    ev = (MDB_val){ 7, "\0\0\0\0\0\0\1" };
    assert_int_equal(mdb_put(r.txn, dbi, &k, &ev, 0), 0);
    raw_close(&r);

    s = open_store(f, 0, 0);
    struct store_msg got;
    void *owner = (void *)1;
    for (size_t cut = 0; cut < head; cut++) {
        assert_int_equal(store_get_message(s, 1000 + cut, &got, &owner), STORE_E_CORRUPT);
        assert_null(owner);
    }
    assert_non_null(strstr(store_last_error(s), "messages record 1"));
    assert_int_equal(store_get_message(s, 2000, &got, &owner), STORE_E_CORRUPT);
    assert_int_equal(store_get_message(s, 2001, &got, &owner), STORE_E_CORRUPT);
    assert_int_equal(store_get_message(s, 2002, &got, &owner), 0);
    assert_int_equal(got.raw_len, 0);
    assert_string_equal(got.nhs_number, "9434765919");
    free(owner);
    /* A damaged length or format byte is refused; a damaged time, state
     * or text byte still decodes. Never a read out of bounds (ASan). */
    int corrupt = 0;
    for (size_t i = 0; i < head; i++) {
        int rc = store_get_message(s, 3000 + i, &got, &owner);
        assert_true(rc == 0 || rc == STORE_E_CORRUPT);
        if (rc == 0)
            free(owner);
        else
            corrupt++;
    }
    /* The format byte and every byte of the 12 lengths (0xff anywhere in
     * one makes it 255 or more, past the end of this short value). */
    assert_true(n < 255 + 4 + 10);
    assert_int_equal(corrupt, 1 + 12 * 4);
    struct store_err gerr;
    assert_int_equal(store_get_error(s, 2, &gerr, &owner), STORE_E_CORRUPT);
    assert_int_equal(store_get_error(s, 1, &gerr, &owner), 0);
    assert_string_equal(gerr.reason, "r");
    free(owner);
    assert_int_equal(store_begin(s, &t), 0);
    char *ack = NULL;
    size_t ack_len;
    assert_int_equal(store_dedup_get(t, key, klen, &id, &ack, &ack_len), STORE_E_CORRUPT);
    assert_null(ack);
    store_abort(t);
    store_close(s);
    free(key);
}

/* ------------------------------------------------------------ strerror */

/* The outbox: destination ids assigned once and kept; seq increases per
 * destination across transactions and reopens; an aborted enqueue leaves
 * nothing; payloads hold the exact bytes. */
static void test_outbox(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    struct store_msg m = sample_msg();
    uint64_t seq;
    uint32_t id;

    assert_int_equal(store_begin(s, &t), 0);
    uint64_t m1 = put_msg(t, &m);
    assert_int_equal(store_enqueue(t, "nel-hie", m1, "PAYLOAD-A", 9, &seq), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(store_enqueue(t, "ucp", m1, "PAYLOAD-B", 9, &seq), 0);
    assert_int_equal(seq, 1);
    uint64_t m2 = put_msg(t, &m);
    assert_int_equal(store_enqueue(t, "nel-hie", m2, "", 0, &seq), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(store_dest_id(t, "nel-hie", &id), 0);
    assert_int_equal(id, 1);
    assert_int_equal(store_dest_id(t, "ucp", &id), 0);
    assert_int_equal(id, 2);
    assert_int_equal(store_commit(t), 0);

    assert_int_equal(store_begin(s, &t), 0);    /* aborted: no trace */
    assert_int_equal(store_enqueue(t, "research", m2, "X", 1, &seq), 0);
    store_abort(t);
    store_close(s);

    s = open_store(f, 0, 0);
    assert_int_equal(count(s, "outbox"), 3);
    assert_int_equal(count(s, "payloads"), 3);
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_dest_id(t, "research", &id), 0);
    assert_int_equal(id, 3);                    /* the aborted one was not kept */
    assert_int_equal(store_enqueue(t, "nel-hie", m2 + 1, "P3", 2, &seq), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(store_commit(t), 0);
    store_close(s);

    struct raw r;
    raw_open(&r, f, "payloads", false);
    uint8_t k[12] = { 0, 0, 0, 2 };
    be64(k + 4, m1);
    MDB_val key = { 12, k }, v;
    assert_int_equal(mdb_get(r.txn, r.dbi, &key, &v), 0);
    assert_int_equal(v.mv_size, 10);
    assert_memory_equal((uint8_t *)v.mv_data + 1, "PAYLOAD-B", 9);
    mdb_txn_abort(r.txn);
    r.txn = NULL;
    raw_close(&r);
}

static void test_strerror(void **state)
{
    (void)state;
    static const int codes[] = { STORE_E_NOMEM, STORE_E_IO, STORE_E_MAP_FULL, STORE_E_FULL,
                                 STORE_E_SCHEMA, STORE_E_CORRUPT, STORE_E_NOT_FOUND,
                                 STORE_E_LMDB, STORE_E_INVAL };
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *a = store_strerror(codes[i]);
        assert_true(strlen(a) > 5);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(a, store_strerror(codes[j]));
    }
    assert_string_equal(store_strerror(0), "success");
    assert_string_equal(store_strerror(STORE_E_FULL),
                        "store full (map at its ceiling, or disk full)");
    assert_non_null(strstr(store_strerror(MDB_MAP_FULL), "MDB_MAP_FULL"));
    assert_non_null(strstr(store_strerror(MDB_PANIC), "MDB_PANIC"));
    assert_string_equal(store_strerror(ENOSPC), "No space left on device");
    assert_string_equal(store_strerror(EIO), "Input/output error");
    assert_string_equal(store_strerror(-5), "unknown store error");
}

/* ------------------------------------------------------------ threads */

struct reader {
    struct store *s;
    volatile int  stop;
    uint64_t      reads, last_seen;
    int           rc;
    char          err[512];
};

/* Reads on a thread of its own (as the delivery thread does) while the
 * main thread writes and grows the map. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) && r->reads < 1000000) {
        uint64_t n = 0;
        int rc = store_count(r->s, "messages", &n);
        if (rc) {
            r->rc = rc;
            snprintf(r->err, sizeof r->err, "%s", store_last_error(r->s));
            break;
        }
        if (n < r->last_seen) {      /* a committed message went missing */
            r->rc = -1;
            break;
        }
        r->last_seen = n;
        struct store_msg m;
        void *owner = NULL;
        if (n && (rc = store_get_message(r->s, n, &m, &owner)) != 0) {
            r->rc = rc;
            break;
        }
        free(owner);
        r->reads++;
    }
    return NULL;
}

static void test_reads_on_another_thread_while_growing(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 64 * KiB, 4 * MiB);
    struct reader r = { .s = s };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
    uint64_t next = 1;
    int grows = 0, rc;
    for (int i = 0; i < 100000; i++) {
        rc = write_batch(s, next);
        if (rc == 0) {
            next += 4;
            continue;
        }
        assert_int_equal(rc, STORE_E_MAP_FULL);
        if ((rc = store_grow(s)) == STORE_E_FULL)
            break;
        assert_int_equal(rc, 0);
        grows++;
    }
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (r.rc)
        print_error("reader: %d %s\n", r.rc, r.err);
    assert_int_equal(r.rc, 0);
    assert_int_equal(grows, 6);             /* 128 KiB .. 4 MiB */
    assert_true(r.reads > 0);
    assert_int_equal(count(s, "messages"), next - 1);
    store_close(s);
}

/* A failure on one thread leaves the text another thread reads alone. */
static void *fail_read(void *arg)
{
    struct store *s = arg;
    struct store_msg m;
    void *owner;
    uint64_t n;
    store_count(s, "nosuch", &n);
    store_get_message(s, 999999, &m, &owner);
    return (void *)(intptr_t)(strstr(store_last_error(s), "no such database") != NULL);
}

static void test_last_error_per_thread(void **state)
{
    struct fx *f = *state;
    struct store *s = open_store(f, 0, 0);
    struct store_txn *t;
    assert_int_equal(store_begin(s, &t), 0);
    assert_int_equal(store_grow(s), STORE_E_INVAL);
    assert_non_null(strstr(store_last_error(s), "transaction open"));
    pthread_t th;
    void *ok;
    assert_int_equal(pthread_create(&th, NULL, fail_read, s), 0);
    assert_int_equal(pthread_join(th, &ok), 0);
    assert_true(ok != NULL);
    assert_non_null(strstr(store_last_error(s), "transaction open"));
    store_abort(t);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data_ids_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_newer_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mdb_dump_readable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_by_patient, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_tamper_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_rewrite_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_gaps_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_no_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_call_poisons_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_disk_full_then_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_on_another_thread_while_growing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_last_error_per_thread, setup, teardown),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
