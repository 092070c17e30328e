/*
 * test_file_dest.c: the file destination on a real event loop, writing
 * into a temporary directory: complete files under the right names, no
 * temporary files left behind, an existing name kept (reported OK), an
 * unwritable directory reported retryable, the directory made at start.
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
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "adapter.h"
#include "adapter_config.h"
#include "delivery.h"
#include "log.h"

struct fixture {
    char                         tmp[64];
    char                         dir[128];
    struct event_base           *base;
    struct adapter              *a;
    FILE                        *log;
    struct file_destination_opts o;
    struct config_destination    dst;
    struct delivery              d;
    int                          reports;
    int                          outcome;
    char                         detail[1024];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    chmod(path, 0700);
    return remove(path);
}

static void on_report(void *ctx, const struct delivery *d, int outcome, const char *detail)
{
    struct fixture *f = ctx;
    assert_ptr_equal(d, &f->d);
    f->reports++;
    f->outcome = outcome;
    snprintf(f->detail, sizeof f->detail, "%s", detail ? detail : "");
    event_base_loopbreak(f->base);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || !(f->base = event_base_new()) || !(f->log = tmpfile()))
        return -1;
    snprintf(f->tmp, sizeof f->tmp, "/tmp/hl7-file-dest.XXXXXX");
    if (!mkdtemp(f->tmp))
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/out/a", f->tmp);   /* made at start */
    log_set_fd(fileno(f->log));
    f->o.directory = f->dir;
    f->dst = (struct config_destination){ .name = "files", .type = "file", .opts = &f->o };
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    adapter_free(f->a);
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
    f->a = adapter_new_destination(&f->dst, f->base, on_report, f, err, sizeof err);
    if (!f->a)
        fail_msg("adapter_new_destination: %s", err);
    if (f->a->type->start(f->a, err, sizeof err))
        fail_msg("start: %s", err);
}

static int deliver(struct fixture *f, uint64_t msg_id, const char *ctl, const char *payload)
{
    f->d = (struct delivery){ .dest_id = 1, .seq = msg_id, .msg_id = msg_id, .payload = payload,
                              .len = strlen(payload), .control_id = ctl,
                              .payload_control_id = ctl, .code = "ADT", .trigger = "A01",
                              .attempt = 1 };
    int before = f->reports;
    assert_int_equal(f->a->type->send(f->a, &f->d), 0);
    assert_int_equal(f->a->type->send(f->a, &f->d), -1);   /* one in flight */
    assert_int_equal(f->reports, before);                 /* reported from the loop */
    event_base_dispatch(f->base);
    assert_int_equal(f->reports, before + 1);
    assert_false(f->a->type->busy(f->a));
    return f->outcome;
}

static char *slurp(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("no file %s", path);
    char *s = calloc(1, 8192);
    assert_non_null(s);
    size_t n = fread(s, 1, 8191, fp);
    s[n] = '\0';
    fclose(fp);
    return s;
}

/* Names in dir, sorted, joined with ' '. */
static void listing(const char *dir, char *out, size_t len)
{
    struct dirent **v;
    int n = scandir(dir, &v, NULL, alphasort);
    assert_true(n >= 0);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i]->d_name, ".") && strcmp(v[i]->d_name, "..")) {
            if (out[0])
                strncat(out, " ", len - strlen(out) - 1);
            strncat(out, v[i]->d_name, len - strlen(out) - 1);
        }
        free(v[i]);
    }
    free(v);
}

static const char MSG[] = "MSH|^~\\&|BRK|FAC|RCV|FAC|20260101120000||ADT^A01|C1|P|2.5\rPID|1\r";

static void test_write(void **state)
{
    struct fixture *f = *state;
    char ls[1024];
    start(f);
    assert_int_equal(deliver(f, 42, "C1", MSG), DELIVERY_OK);
    assert_int_equal(deliver(f, 43, "a/../b c", "{\"resourceType\":\"Bundle\"}"), DELIVERY_OK);
    listing(f->dir, ls, sizeof ls);
    assert_string_equal(ls, "42-ADT_A01-C1.hl7 43-ADT_A01-a_.._b_c.json");
    char *s = slurp(f->dir, "42-ADT_A01-C1.hl7");
    assert_string_equal(s, MSG);
    free(s);
    s = slurp(f->dir, "43-ADT_A01-a_.._b_c.json");
    assert_string_equal(s, "{\"resourceType\":\"Bundle\"}");
    free(s);
}

static void test_exists_not_overwritten(void **state)
{
    struct fixture *f = *state;
    char ls[1024];
    start(f);
    assert_int_equal(deliver(f, 42, "C1", MSG), DELIVERY_OK);
    assert_int_equal(deliver(f, 42, "C1", "MSH|changed\r"), DELIVERY_OK);
    assert_non_null(strstr(f->detail, "exists"));
    char *s = slurp(f->dir, "42-ADT_A01-C1.hl7");
    assert_string_equal(s, MSG);
    free(s);
    listing(f->dir, ls, sizeof ls);
    assert_string_equal(ls, "42-ADT_A01-C1.hl7");   /* no temporary left */
}

/* The unwritable case as a user the directory's modes apply to: root
 * writes anywhere, so under root it runs in a child that becomes nobody.
 * Returns 0 when the delivery was reported RETRY with EACCES. */
static int unwritable_case(struct fixture *f)
{
    char err[512];
    f->a = adapter_new_destination(&f->dst, f->base, on_report, f, err, sizeof err);
    if (!f->a || f->a->type->start(f->a, err, sizeof err))
        return 10;
    f->d = (struct delivery){ .msg_id = 42, .payload = MSG, .len = strlen(MSG),
                              .control_id = "C1", .payload_control_id = "C1", .code = "ADT",
                              .trigger = "A01", .attempt = 1 };
    if (f->a->type->send(f->a, &f->d) != 0)
        return 11;
    event_base_dispatch(f->base);
    if (f->reports != 1 || f->outcome != DELIVERY_RETRY)
        return 12;
    if (!strstr(f->detail, "Permission denied"))
        return 13;
    return 0;
}

static void test_unwritable(void **state)
{
    struct fixture *f = *state;
    char ls[1024], sub[160];
    snprintf(sub, sizeof sub, "%s/out", f->tmp);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_equal(mkdir(f->dir, 0555), 0);
    assert_int_equal(chmod(f->tmp, 0755), 0);
    assert_int_equal(chmod(f->dir, 0555), 0);
    if (geteuid() == 0) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) || setuid(65534) || event_reinit(f->base))
                _exit(20);
            _exit(unwritable_case(f));
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    } else {
        assert_int_equal(unwritable_case(f), 0);
        adapter_free(f->a);
        f->a = NULL;
    }
    listing(f->dir, ls, sizeof ls);
    assert_string_equal(ls, "");   /* nothing half-written */
    assert_int_equal(chmod(f->dir, 0700), 0);
    start(f);
    f->reports = 0;
    assert_int_equal(deliver(f, 42, "C1", MSG), DELIVERY_OK);   /* the retry succeeds */
}

static void test_directory_gone(void **state)
{
    struct fixture *f = *state;
    start(f);
    assert_int_equal(rmdir(f->dir), 0);
    assert_int_equal(deliver(f, 42, "C1", MSG), DELIVERY_RETRY);
    assert_non_null(strstr(f->detail, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exists_not_overwritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
