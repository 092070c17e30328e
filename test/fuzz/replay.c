/*
 * replay.c: runs a fuzz target over its corpus without libFuzzer, so that
 * `make test` keeps every input ever found passing (the SQLite fuzzcheck
 * idea). Each argument is a corpus directory or a single file; a missing
 * or empty directory is a failure, since it would silently test nothing.
 * Each input runs in a child process, so one crash does not hide another:
 * every failing input gets its own FAIL line.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

static const char *target;
static size_t inputs, failures;

/* Read a whole file into an exact-size allocation: a sanitizer build then
 * sees any overread, and like libFuzzer's inputs it is not NUL-terminated. */
static uint8_t *read_input(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b = {0};
    char chunk[65536];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        ok = buf_append(&b, chunk, n) == 0;
    ok = ok && !ferror(f);
    fclose(f);
    uint8_t *data = ok ? malloc(b.len ? b.len : 1) : NULL;
    if (data && b.len)
        memcpy(data, b.p, b.len);
    *len = b.len;
    buf_free(&b);
    return data;
}

/* Run one input in a child. Returns 0, or -1 when it could not be read. */
static int replay_file(const char *path)
{
    size_t len;
    uint8_t *data = read_input(path, &len);
    if (!data) {
        printf("FAIL %s: cannot read %s: %s\n", target, path, strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        LLVMFuzzerTestOneInput(data, len);
        _exit(0);
    }
    free(data);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        printf("FAIL %s: cannot run %s: %s\n", target, path, strerror(errno));
        return -1;
    }
    inputs++;
    if (WIFSIGNALED(st)) {
        printf("FAIL %s: %s (signal %d)\n", target, path, WTERMSIG(st));
        failures++;
    } else if (WEXITSTATUS(st) != 0) {
        printf("FAIL %s: %s (exit status %d)\n", target, path,
               WEXITSTATUS(st));
        failures++;
    }
    return 0;
}

static int skip_dots(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Replay every regular file of dir, in name order. */
static int replay_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dots, alphasort);
    if (n < 0) {
        printf("FAIL %s: corpus %s: %s\n", target, dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    size_t before = inputs;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = replay_file(path);
        free(names[i]);
    }
    free(names);
    if (rc == 0 && inputs == before) {
        printf("FAIL %s: corpus %s holds no input\n", target, dir);
        rc = -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
#ifdef FUZZ_TARGET
    target = "replay_" FUZZ_TARGET;
#else
    const char *slash = strrchr(argv[0], '/');
    target = slash ? slash + 1 : argv[0];
#endif
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", target);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            printf("FAIL %s: %s: %s\n", target, argv[i], strerror(errno));
            return 1;
        }
        int rc = S_ISDIR(st.st_mode) ? replay_dir(argv[i])
                                     : replay_file(argv[i]);
        if (rc != 0)
            return 1;
    }
    if (failures) {
        printf("%s: %zu of %zu inputs failed\n", target, failures, inputs);
        return 1;
    }
    printf("PASS %s (%zu inputs)\n", target, inputs);
    return 0;
}
