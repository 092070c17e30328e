/*
 * lmdb_commit.c: what one durable LMDB write costs on this disk, the floor
 * under every ACK the broker sends: a write transaction putting one
 * message-sized record, committed with fsync, timed over many commits.
 *
 * usage: lmdb_commit DIR [COMMITS] [VALUE_BYTES]
 * DIR is made (and emptied of data.mdb/lock.mdb afterwards); it should be
 * on the disk the broker's data_dir uses.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int check(int rc, const char *what)
{
    if (rc)
        fprintf(stderr, "lmdb_commit: %s: %s\n", what, mdb_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: lmdb_commit DIR [COMMITS] [VALUE_BYTES]\n");
        return 2;
    }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 200;
    size_t vlen = argc > 3 ? (size_t)atol(argv[3]) : 1024;
    if (n < 1 || vlen < 1 || vlen > (1u << 24)) {
        fprintf(stderr, "lmdb_commit: bad COMMITS or VALUE_BYTES\n");
        return 2;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "lmdb_commit: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    if (check(mdb_env_create(&env), "env_create") ||
        check(mdb_env_set_mapsize(env, (size_t)256 << 20), "set_mapsize") ||
        check(mdb_env_set_maxdbs(env, 4), "set_maxdbs") ||
        check(mdb_env_open(env, dir, 0, 0644), dir))
        return 1;
    if (check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin") ||
        check(mdb_dbi_open(txn, "messages", MDB_CREATE, &dbi), "dbi_open") ||
        check(mdb_txn_commit(txn), "commit"))
        return 1;

    char *val = malloc(vlen);
    double *t = malloc((size_t)n * sizeof *t);
    if (!val || !t)
        return 1;
    for (size_t i = 0; i < vlen; i++)
        val[i] = (char)('A' + i % 26);
    for (int i = 0; i < n; i++) {
        uint64_t k = __builtin_bswap64((uint64_t)i + 1);
        MDB_val key = { sizeof k, &k }, v = { vlen, val };
        double t0 = now_ms();
        if (check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin") ||
            check(mdb_put(txn, dbi, &key, &v, 0), "put") ||
            check(mdb_txn_commit(txn), "commit"))
            return 1;
        t[i] = now_ms() - t0;
    }
    mdb_env_close(env);

    /* For comparison: one 4 KiB write and fdatasync of a plain file. */
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync.probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    double *f = malloc((size_t)n * sizeof *f);
    char page[4096] = { 0 };
    int nf = 0;
    for (int i = 0; fd >= 0 && f && i < n; i++) {
        double t0 = now_ms();
        if (pwrite(fd, page, sizeof page, 0) != (ssize_t)sizeof page || fdatasync(fd))
            break;
        f[nf++] = now_ms() - t0;
    }
    if (fd >= 0)
        close(fd);
    unlink(path);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);

    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double fmed = 0;
    if (nf) {
        qsort(f, (size_t)nf, sizeof *f, cmp_double);
        fmed = f[nf / 2];
    }
    printf("LMDB commit (one %zu-byte put, fsync) over %d commits: median %.3f ms, "
           "p90 %.3f ms, min %.3f ms, max %.3f ms; fdatasync of 4 KiB: median %.3f ms\n",
           vlen, n, t[n / 2], t[(n * 9) / 10], t[0], t[n - 1], fmed);
    printf("RESULT commits=%d median_ms=%.3f p90_ms=%.3f min_ms=%.3f max_ms=%.3f "
           "fdatasync_median_ms=%.3f\n", n, t[n / 2], t[(n * 9) / 10], t[0], t[n - 1], fmed);
    free(val);
    free(t);
    free(f);
    return 0;
}
