/*
 * test_file_source.c: the file source on a real event loop with the real
 * ingest and a store in a temporary directory: files taken whole (single,
 * several, batch), only when settled, never dot/.tmp/.part files; refused
 * messages and files into error/ with a reason; size limits; names never
 * replaced; files left in the work folder taken again at start; drain,
 * busy and stop with replies outstanding; one source per work folder.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "ingest.h"
#include "log.h"
#include "store.h"

#define SAMPLES "../shared/samples/"

struct fixture {
    char                    tmp[64];
    char                    data[96], in[96], work[96], done[96], error[96];
    struct event_base      *base;
    struct store           *store;
    struct ingest          *ingest;
    struct adapter         *a;
    FILE                   *log;
    struct file_source_opts o;
    struct config_source    src;
    struct event           *hog;       /* kept active: the commit never gets its turn */
    bool                    hogging;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->tmp, sizeof f->tmp, "/tmp/hl7-file-src.XXXXXX");
    if (!mkdtemp(f->tmp))
        return -1;
    snprintf(f->data, sizeof f->data, "%s/data", f->tmp);
    snprintf(f->in, sizeof f->in, "%s/in", f->tmp);
    snprintf(f->work, sizeof f->work, "%s/in/.work", f->tmp);
    snprintf(f->done, sizeof f->done, "%s/in/done", f->tmp);
    snprintf(f->error, sizeof f->error, "%s/in/error", f->tmp);
    mkdir(f->data, 0700);
    char detail[256];
    struct store_opts so = { .dir = f->data };
    if (!(f->base = event_base_new()) || store_open(&so, &f->store, detail, sizeof detail) ||
        ingest_new(f->base, f->store, &f->ingest) || !(f->log = tmpfile()))
        return -1;
    log_set_fd(fileno(f->log));
    log_set_level(LOG_LEVEL_INFO);
    f->o = (struct file_source_opts){
        .directory = f->in, .work_dir = f->work, .done_dir = f->done, .error_dir = f->error,
        .poll_ms = 50, .settle_ms = 0, .max_message_bytes = 1 << 20, .max_file_bytes = 4 << 20,
    };
    f->src = (struct config_source){ .name = "drop", .type = "file", .opts = &f->o };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
    ingest_flush(f->ingest);
    if (f->hog)
        event_free(f->hog);
    ingest_free(f->ingest);
    store_close(f->store);
    event_base_free(f->base);
    log_set_fd(2);
    fclose(f->log);
    nftw(f->tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void start(struct fixture *f)
{
    char err[512] = "";
    f->a = adapter_new_source(&f->src, f->base, f->ingest, err, sizeof err);
    if (!f->a)
        fail_msg("configure: %s", err);
    if (f->a->type->start(f->a, err, sizeof err) != 0)
        fail_msg("start: %s", err);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *b = malloc(1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, fp);
    fclose(fp);
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

/* Write name in dir from the concatenation of the sample files (NULL-ended). */
static void drop(const char *dir, const char *name, ...)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *out = fopen(path, "wb");
    assert_non_null(out);
    va_list ap;
    va_start(ap, name);
    for (const char *s; (s = va_arg(ap, const char *));) {
        size_t n;
        char *b = slurp(s, &n);
        assert_non_null(b);
        fwrite(b, 1, n, out);
        free(b);
    }
    va_end(ap);
    fclose(out);
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static bool exists(const char *dir, const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static uint64_t count(struct fixture *f, const char *db)
{
    uint64_t n = 0;
    assert_int_equal(store_count(f->store, db, &n), 0);
    return n;
}

/* Run the loop until dir holds want files (or 5 s). */
static void run_until(struct fixture *f, const char *dir, size_t want)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (count_files(dir) >= want)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 5)
            fail_msg("%s: %zu files, want %zu", dir, count_files(dir), want);
        struct timeval tv = { 0, 10000 };
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
}

static void run_for(struct fixture *f, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static void on_hog(evutil_socket_t fd, short what, void *arg)
{
    struct fixture *f = arg;
    (void)fd, (void)what;
    struct timeval zero = { 0, 0 };
    if (f->hogging)   /* a timer: active again at the next loop turn, not this one */
        evtimer_add(f->hog, &zero);
}

/* Run the loop for ms with the commit held back (replies outstanding). */
static void run_uncommitted(struct fixture *f, int ms)
{
    if (!f->hog)
        assert_non_null(f->hog = evtimer_new(f->base, on_hog, f));
    f->hogging = true;
    on_hog(-1, 0, f);
    run_for(f, ms);
    f->hogging = false;
    event_del(f->hog);
}

static void test_good_files(void **state)
{
    struct fixture *f = *state;
    start(f);
    drop(f->in, "one.hl7", SAMPLES "adt_a01.hl7", NULL);
    drop(f->in, "two.hl7", SAMPLES "adt_a03.hl7", SAMPLES "oru_r01.hl7", NULL);
    drop(f->in, "batch.hl7", SAMPLES "batch_oru.hl7", NULL);
    drop(f->in, "lf.hl7", SAMPLES "adt_a01_lf.hl7", NULL);   /* a duplicate of one.hl7 */
    run_until(f, f->done, 4);
    assert_true(exists(f->done, "one.hl7") && exists(f->done, "two.hl7") &&
                exists(f->done, "batch.hl7") && exists(f->done, "lf.hl7"));
    assert_int_equal(count_files(f->in), 2);   /* done and error folders only */
    assert_int_equal(count_files(f->work), 0);
    assert_int_equal(count_files(f->error), 0);
    assert_int_equal(count(f, "messages"), 7);
    assert_int_equal(count(f, "errors"), 0);
    assert_false(f->a->type->busy(f->a));
}

static void test_not_taken(void **state)
{
    struct fixture *f = *state;
    f->o.settle_ms = 400;
    start(f);
    drop(f->in, ".hidden.hl7", SAMPLES "adt_a01.hl7", NULL);
    drop(f->in, "x.tmp", SAMPLES "adt_a01.hl7", NULL);
    drop(f->in, "x.PART", SAMPLES "adt_a01.hl7", NULL);
    char target[256], link[256];
    snprintf(target, sizeof target, "%s/.hidden.hl7", f->in);
    snprintf(link, sizeof link, "%s/link.hl7", f->in);
    assert_int_equal(symlink(target, link), 0);
    drop(f->in, "fresh.hl7", SAMPLES "adt_a01.hl7", NULL);
    run_for(f, 200);   /* not settled yet */
    assert_true(exists(f->in, "fresh.hl7"));
    assert_int_equal(count(f, "messages"), 0);
    run_until(f, f->done, 1);
    assert_true(exists(f->done, "fresh.hl7"));
    run_for(f, 200);
    assert_true(exists(f->in, ".hidden.hl7") && exists(f->in, "x.tmp") &&
                exists(f->in, "x.PART") && exists(f->in, "link.hl7"));
    assert_int_equal(count(f, "messages"), 1);
}

static void test_refused(void **state)
{
    struct fixture *f = *state;
    f->o.max_message_bytes = 1024;
    f->o.max_file_bytes = 4096;
    start(f);
    drop(f->in, "mixed.hl7", SAMPLES "oru_r01.hl7", SAMPLES "bad/unknown_version.hl7", NULL);
    drop(f->in, "garbage.hl7", SAMPLES "bad/binary_garbage.hl7", NULL);
    drop(f->in, "big-msg.hl7", SAMPLES "adt_a03.hl7", NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/big-msg.hl7", f->in);
    FILE *fp = fopen(path, "ab");   /* then one message of 2000 bytes and more */
    assert_non_null(fp);
    fputs("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|BIG-1|P|2.4\rPID|1||1^^^X\rNTE|1||", fp);
    for (int i = 0; i < 2000; i++)
        fputc('x', fp);
    fputs("\r", fp);
    fclose(fp);
    drop(f->in, "empty.hl7", NULL);
    /* over max_file_bytes: refused whole, kept whole */
    drop(f->in, "big-file.hl7", SAMPLES "adt_a01.hl7", SAMPLES "adt_a03.hl7",
         SAMPLES "adt_a01.hl7", SAMPLES "adt_a03.hl7", SAMPLES "adt_a01.hl7",
         SAMPLES "adt_a03.hl7", SAMPLES "adt_a01.hl7", SAMPLES "adt_a03.hl7", NULL);
    struct stat big;
    snprintf(path, sizeof path, "%s/big-file.hl7", f->in);
    assert_int_equal(stat(path, &big), 0);
    assert_true(big.st_size > 4096);
    run_until(f, f->error, 10);
    assert_int_equal(count_files(f->done), 0);

    snprintf(path, sizeof path, "%s/mixed.hl7.reason", f->error);
    char *r = slurp(path, NULL);
    assert_non_null(r);
    assert_non_null(strstr(r, "1 accepted, 0 duplicates, 1 refused"));
    assert_non_null(strstr(r, "message 2 of 2"));
    assert_non_null(strstr(r, "MSH-12"));
    free(r);
    snprintf(path, sizeof path, "%s/garbage.hl7.reason", f->error);
    assert_non_null(r = slurp(path, NULL));
    assert_non_null(strstr(r, "refused whole"));
    free(r);
    snprintf(path, sizeof path, "%s/big-msg.hl7.reason", f->error);
    assert_non_null(r = slurp(path, NULL));
    assert_non_null(strstr(r, "message 2 of 2"));
    assert_non_null(strstr(r, "max_message_bytes"));
    free(r);
    snprintf(path, sizeof path, "%s/empty.hl7.reason", f->error);
    assert_non_null(r = slurp(path, NULL));
    assert_non_null(strstr(r, "empty"));
    free(r);
    snprintf(path, sizeof path, "%s/big-file.hl7.reason", f->error);
    assert_non_null(r = slurp(path, NULL));
    assert_non_null(strstr(r, "max_file_bytes of 4096"));
    free(r);
    struct stat moved;
    snprintf(path, sizeof path, "%s/big-file.hl7", f->error);
    assert_int_equal(stat(path, &moved), 0);
    assert_int_equal(moved.st_size, big.st_size);
    /* oru and adt_a03 stored; the refused two in the error store */
    assert_int_equal(count(f, "messages"), 2);
    assert_int_equal(count(f, "errors"), 2);
}

static void test_names_never_replaced(void **state)
{
    struct fixture *f = *state;
    start(f);
    drop(f->in, "a.hl7", SAMPLES "adt_a01.hl7", NULL);
    run_until(f, f->done, 1);
    drop(f->in, "a.hl7", SAMPLES "adt_a03.hl7", NULL);
    run_until(f, f->done, 2);
    drop(f->in, "a.hl7", SAMPLES "bad/no_msh.hl7", NULL);
    drop(f->error, "a.hl7.reason", SAMPLES "adt_a01.hl7", NULL);   /* a reason name taken */
    run_until(f, f->error, 3);
    char path[256];
    snprintf(path, sizeof path, "%s/a.hl7", f->done);
    char *b = slurp(path, NULL);
    assert_non_null(strstr(b, "ADT^A01"));   /* the first one, kept */
    free(b);
    assert_false(exists(f->error, "a.hl7"));
    assert_int_equal(count(f, "messages"), 2);
}

static void test_work_left_over(void **state)
{
    struct fixture *f = *state;
    mkdir(f->in, 0750);
    mkdir(f->work, 0750);
    drop(f->work, "crash.hl7", SAMPLES "adt_a01.hl7", SAMPLES "adt_a03.hl7", NULL);
    start(f);
    run_until(f, f->done, 1);
    assert_true(exists(f->done, "crash.hl7"));
    assert_int_equal(count(f, "messages"), 2);
    /* taken again (a crash after the commit, before the move): duplicates */
    drop(f->work, "again.hl7", SAMPLES "adt_a01.hl7", NULL);
    adapter_free(f->a);
    f->a = NULL;
    start(f);
    run_until(f, f->done, 2);
    assert_int_equal(count(f, "messages"), 2);
}

static void test_drain_busy_stop(void **state)
{
    struct fixture *f = *state;
    mkdir(f->in, 0750);
    mkdir(f->work, 0750);
    drop(f->work, "w.hl7", SAMPLES "adt_a01.hl7", NULL);
    start(f);
    run_uncommitted(f, 100);   /* claimed and submitted, not committed */
    assert_int_equal(ingest_pending(f->ingest), 1);
    assert_int_equal(count_files(f->done), 0);
    assert_true(f->a->type->busy(f->a));
    f->a->type->drain(f->a);
    drop(f->in, "late.hl7", SAMPLES "adt_a03.hl7", NULL);
    ingest_flush(f->ingest);
    assert_false(f->a->type->busy(f->a));
    assert_true(exists(f->done, "w.hl7"));
    run_for(f, 150);
    assert_true(exists(f->in, "late.hl7"));   /* draining: nothing new taken */

    /* stop with a reply outstanding: the file stays in work_dir */
    adapter_free(f->a);
    f->a = NULL;
    drop(f->work, "x.hl7", SAMPLES "oru_r01.hl7", NULL);
    start(f);
    run_uncommitted(f, 100);
    assert_true(ingest_pending(f->ingest) >= 1);
    adapter_free(f->a);
    f->a = NULL;
    ingest_flush(f->ingest);   /* the reply finds a detached file */
    assert_true(exists(f->work, "x.hl7"));
    assert_false(exists(f->done, "x.hl7"));
    assert_int_equal(count(f, "messages"), 2 + exists(f->work, "late.hl7"));
}

/* A second source on the same work folder would take again the files the
 * first has in flight: it does not start. */
static void test_work_dir_locked(void **state)
{
    struct fixture *f = *state;
    start(f);
    struct config_source other = f->src;
    other.name = "other";
    char err[512] = "";
    struct adapter *b = adapter_new_source(&other, f->base, f->ingest, err, sizeof err);
    assert_non_null(b);
    assert_int_not_equal(b->type->start(b, err, sizeof err), 0);
    assert_non_null(strstr(err, "in use by another file source"));
    adapter_free(b);
    adapter_free(f->a);   /* stopped: the folder is free again */
    f->a = NULL;
    start(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_never_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_left_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_busy_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_dir_locked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
