/*
 * test_config.c: the config loader. Good files load with the values they
 * hold (or the defaults); each test/data/config/bad_*.conf yields exactly
 * the errors its "# expect: LINE: ..." comments list, in order; the value
 * checks and parsers adapters reuse; the summary and the reference.
 * Runs from the repository root (make test).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapter_config.h"
#include "buf.h"
#include "config.h"
#include "log.h"

#define DATA "test/data/config/"

/* Load a file that must be valid; on failure show why. */
static void load_ok(const char *path, struct config *cfg)
{
    struct config_errors errs = { 0 };
    int rc = config_load(path, cfg, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("unexpected: %s\n", errs.v[i].msg);
    config_errors_free(&errs);
    assert_int_equal(rc, CONFIG_OK);
}

/* ------------------------------------------------------------ good files */

static void test_default_conf(void **state)
{
    (void)state;
    struct config cfg;
    load_ok("conf/hl7broker.conf", &cfg);

    assert_string_equal(cfg.broker.data_dir, "var/data");
    assert_true(cfg.broker.admin.enabled);
    assert_string_equal(cfg.broker.admin.listen, "127.0.0.1:8088");
    assert_string_equal(cfg.broker.admin.token_file, "conf/admin.token");
    assert_int_equal(cfg.broker.log.level, LOG_LEVEL_INFO);
    assert_false(cfg.broker.log.syslog);

    assert_int_equal(cfg.n_sources, 1);
    const struct config_source *s = &cfg.sources[0];
    assert_string_equal(s->name, "local-mllp");
    assert_string_equal(s->type, "mllp");
    assert_ptr_equal(s->schema, &mllp_config_schema);
    const struct mllp_source_opts *m = s->opts;
    assert_string_equal(m->listen, "127.0.0.1:2575");
    assert_int_equal(m->allow.n, 2);
    assert_string_equal(m->allow.v[0], "127.0.0.1/32");
    assert_string_equal(m->allow.v[1], "::1/128");
    assert_null(m->tls);

    assert_int_equal(cfg.n_destinations, 1);
    assert_string_equal(cfg.destinations[0].type, "file");
    assert_int_equal(cfg.n_routes, 1);
    assert_ptr_equal(cfg.routes[0].from_src[0], &cfg.sources[0]);
    assert_ptr_equal(cfg.routes[0].to_dst[0], &cfg.destinations[0]);
    assert_int_equal(cfg.n_tables, 1);
    assert_ptr_equal(config_find_source(&cfg, "local-mllp"), &cfg.sources[0]);
    assert_null(config_find_source(&cfg, "nope"));
    config_free(&cfg);
    config_free(&cfg);   /* twice is harmless */
}

static void test_london_conf(void **state)
{
    (void)state;
    struct config cfg;
    load_ok("conf/london.conf", &cfg);

    assert_int_equal(cfg.n_sources, 3);
    assert_int_equal(cfg.n_destinations, 7);
    assert_int_equal(cfg.n_routes, 4);
    assert_int_equal(cfg.broker.max_map_bytes, 68719476736LL);
    assert_true(cfg.broker.log.syslog);
    assert_string_equal(cfg.broker.log.facility, "local0");

    const struct mllp_source_opts *pas = config_find_source(&cfg, "rlh-pas")->opts;
    assert_non_null(pas->tls);
    assert_true(pas->tls->require_client_cert);
    assert_int_equal(pas->tls->allowed_subjects.n, 1);
    const struct mllp_source_opts *path = config_find_source(&cfg, "rlh-path")->opts;
    assert_true(path->commit_ack);
    assert_int_equal(path->max_message_bytes, 16777216);

    const struct config_destination *ucp = config_find_destination(&cfg, "ucp");
    assert_int_equal(ucp->on_error_ack, CONFIG_ON_ERROR_DEAD_LETTER);
    assert_int_equal(ucp->retry.max_attempts, 20);
    const struct mllp_destination_opts *uo = ucp->opts;
    assert_string_equal(uo->tls->server_name, "ucp.london.example");
    assert_true(config_find_destination(&cfg, "research-rde")->paused);

    const struct config_route *adt = &cfg.routes[0];
    assert_string_equal(adt->name, "adt-to-hies");
    assert_int_equal(adt->to.n, 5);
    assert_int_equal(config_setting_length(adt->transform), 2);
    assert_non_null(adt->when);
    config_free(&cfg);
}

static void test_full_values(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(DATA "good_full.conf", &cfg);

    const struct config_broker *b = &cfg.broker;
    assert_string_equal(b->data_dir, "/tmp/hl7broker-test-data");
    assert_int_equal(b->max_map_bytes, 8589934592LL);
    assert_false(b->admin.enabled);
    assert_string_equal(b->admin.listen, "[::1]:9099");
    assert_int_equal(b->log.level, LOG_LEVEL_DEBUG);
    assert_true(b->log.syslog);
    assert_string_equal(b->log.facility, "local3");

    assert_int_equal(cfg.n_tables, 2);
    assert_string_equal(cfg.tables[1].name, "more.codes_2");
    assert_int_equal(cfg.tables[1].line, 11);

    const struct config_source *pas = &cfg.sources[0];
    const struct mllp_source_opts *m = pas->opts;
    assert_int_equal(pas->line, 15);
    assert_non_null(pas->setting);
    assert_string_equal(m->listen, "[::]:12575");
    assert_int_equal(m->max_connections, 10);
    assert_int_equal(m->idle_timeout_ms, 0);
    assert_int_equal(m->max_message_bytes, 65536);
    assert_int_equal(m->frame_timeout_ms, 5000);
    assert_int_equal(m->allow.n, 4);
    assert_string_equal(m->allow.v[1], "192.168.1.7");
    assert_true(m->commit_ack);
    assert_string_equal(m->tls->cert, "conf/tls/example-broker.pem");
    assert_string_equal(m->tls->key, "conf/tls/example-broker.key");
    assert_string_equal(m->tls->ca, "conf/tls/example-ca.pem");
    assert_true(m->tls->require_client_cert);
    assert_int_equal(m->tls->allowed_subjects.n, 2);
    assert_string_equal(m->tls->allowed_subjects.v[1], "CN=b");

    const struct config_source *drop = &cfg.sources[1];
    const struct file_source_opts *f = drop->opts;
    assert_ptr_equal(drop->schema, &file_config_schema);
    assert_string_equal(f->directory, "/tmp/in");
    assert_int_equal(f->poll_ms, 250);
    assert_int_equal(f->max_message_bytes, 2048);
    assert_string_equal(f->work_dir, "/tmp/in/.work");     /* defaults beside the directory */
    assert_string_equal(f->done_dir, "/tmp/in/done");
    assert_string_equal(f->error_dir, "/tmp/in/error");
    assert_int_equal(f->settle_ms, 1000);
    assert_int_equal(f->max_file_bytes, 67108864);

    const struct config_destination *hie = &cfg.destinations[0];
    const struct mllp_destination_opts *d = hie->opts;
    assert_string_equal(d->connect, "hie.nel.example:2575");
    assert_int_equal(d->connect_timeout_ms, 2000);
    assert_int_equal(d->max_message_bytes, 4096);
    assert_int_equal(hie->ack_timeout_ms, 1000);
    assert_int_equal(hie->retry.initial_ms, 100);
    assert_int_equal(hie->retry.max_ms, 100);
    assert_int_equal(hie->retry.max_attempts, 7);
    assert_int_equal(hie->on_error_ack, CONFIG_ON_ERROR_DEAD_LETTER);
    assert_true(hie->paused);
    assert_string_equal(d->tls->server_name, "hie.nel.example");
    assert_string_equal(d->tls->cert, "conf/tls/example-client.pem");

    /* A partly set group keeps the defaults of the rest. */
    const struct config_destination *out = &cfg.destinations[1];
    assert_int_equal(out->retry.initial_ms, 500);
    assert_int_equal(out->retry.max_ms, 1000);
    assert_int_equal(out->retry.max_attempts, 0);
    assert_int_equal(out->ack_timeout_ms, 30000);
    assert_int_equal(out->on_error_ack, CONFIG_ON_ERROR_RETRY);
    assert_false(out->paused);

    const struct config_route *adt = &cfg.routes[0];
    assert_string_equal(adt->when, "MSH-9.1 = 'ADT'");
    assert_int_equal(adt->from.n, 2);
    assert_ptr_equal(adt->from_src[1], drop);
    assert_ptr_equal(adt->to_dst[0], out);
    assert_ptr_equal(adt->to_dst[1], hie);
    assert_int_equal(config_setting_length(adt->transform), 2);
    const config_setting_t *t0 = config_setting_get_elem(adt->transform, 0);
    const char *v = NULL;
    assert_true(config_setting_lookup_string(t0, "set", &v));
    assert_string_equal(v, "MSH-5");
    assert_null(cfg.routes[1].when);
    assert_int_equal(config_setting_length(cfg.routes[1].transform), 0);
    config_free(&cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    load_ok(DATA "good_empty.conf", &cfg);
    assert_string_equal(cfg.broker.data_dir, "var/data");
    assert_int_equal(cfg.broker.max_map_bytes, 1073741824LL);
    assert_true(cfg.broker.admin.enabled);
    assert_string_equal(cfg.broker.admin.listen, "127.0.0.1:8088");
    assert_null(cfg.broker.admin.token_file);
    assert_int_equal(cfg.broker.log.level, LOG_LEVEL_INFO);
    assert_false(cfg.broker.log.syslog);
    assert_string_equal(cfg.broker.log.facility, "daemon");
    assert_int_equal(cfg.n_sources + cfg.n_destinations + cfg.n_routes + cfg.n_tables, 0);
    assert_null(cfg.sources);
    config_free(&cfg);

    /* Type defaults, from a minimal source. */
    load_ok(DATA "good_include.conf", &cfg);
    const struct mllp_source_opts *m = cfg.sources[0].opts;
    assert_int_equal(m->max_connections, 64);
    assert_int_equal(m->idle_timeout_ms, 600000);
    assert_int_equal(m->max_message_bytes, 4194304);
    assert_int_equal(m->frame_timeout_ms, 30000);
    assert_int_equal(m->allow.n, 0);
    assert_false(m->commit_ack);
    assert_null(m->tls);
    assert_int_equal(cfg.n_routes, 1);   /* from the @include */
    config_free(&cfg);
}

/* ------------------------------------------------------------- bad files */

static void test_missing_file(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = { 0 };

    assert_int_equal(config_load(DATA "no-such.conf", &cfg, &errs), CONFIG_E_READ);
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.v[0].msg,
                        DATA "no-such.conf: cannot read the config file: No such file or directory");
    assert_int_equal(errs.v[0].line, 0);
    assert_null(errs.v[0].setting);

    /* A second load adds to the same list. */
    assert_int_equal(config_load("test/data", &cfg, &errs), CONFIG_E_READ);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.v[1].msg,
                        "test/data: cannot read the config file: not a regular file");
    config_errors_free(&errs);
    config_free(&cfg);
}

static void test_include_error(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = { 0 };

    assert_int_equal(config_load(DATA "include_bad_main.conf", &cfg, &errs), CONFIG_E_INVALID);
    assert_int_equal(errs.n, 2);
    assert_string_equal(errs.v[0].file, DATA "include_bad.inc");
    assert_int_equal(errs.v[0].line, 3);
    assert_string_equal(errs.v[0].setting, "routes[0].to[0]");
    assert_string_equal(errs.v[0].text, "no destination is named \"nowhere\"");
    /* The 32-bit wrap check reads the included file's text too. */
    assert_string_equal(errs.v[1].msg, DATA "include_bad.inc:4: setting broker.max_map_bytes: "
                        "5368709120 does not fit in 32 bits; write larger numbers with an L "
                        "suffix (5368709120L)");
    config_errors_free(&errs);
}

static void test_every_error_reported(void **state)
{
    (void)state;
    struct config cfg;
    struct config_errors errs = { 0 };

    /* Nine wrong settings in three groups: all nine reported, sorted by line. */
    assert_int_equal(config_load(DATA "bad_types.conf", &cfg, &errs), CONFIG_E_INVALID);
    assert_int_equal(errs.n, 9);
    for (size_t i = 1; i < errs.n; i++)
        assert_true(errs.v[i - 1].line <= errs.v[i].line);
    assert_null(cfg.sources);       /* nothing half-loaded is left */
    assert_null(cfg.lc);
    config_errors_free(&errs);
    assert_int_equal(errs.n, 0);
}

/* Each bad_*.conf: the errors must be exactly the "# expect:" lines, in
 * order, each a prefix of "LINE: setting PATH: text" after "FILE:". */
static void test_bad_file(void **state)
{
    const char *path = *state;
    struct config cfg;
    struct config_errors errs = { 0 };
    char line[1024];
    char *want[64];
    size_t nwant = 0;

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) && nwant < 64) {
        if (strncmp(line, "# expect: ", 10) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        size_t need = strlen(path) + strlen(line) + 2;
        want[nwant] = malloc(need);
        assert_non_null(want[nwant]);
        snprintf(want[nwant], need, "%s:%s", path, line + 10);
        nwant++;
    }
    fclose(f);
    assert_true(nwant > 0);

    int rc = config_load(path, &cfg, &errs);
    assert_int_not_equal(rc, CONFIG_OK);
    bool ok = errs.n == nwant;
    for (size_t i = 0; i < nwant && i < errs.n; i++)
        if (strncmp(errs.v[i].msg, want[i], strlen(want[i])) != 0)
            ok = false;
    if (!ok) {
        for (size_t i = 0; i < nwant; i++)
            print_error("want: %s\n", want[i]);
        for (size_t i = 0; i < errs.n; i++)
            print_error("got:  %s\n", errs.v[i].msg);
    }
    for (size_t i = 0; i < nwant; i++)
        free(want[i]);
    config_errors_free(&errs);
    assert_true(ok);
}

/* ------------------------------------------------------------ validators */

static void test_hostport(void **state)
{
    (void)state;
    char host[256], why[256];
    unsigned port = 0;

    assert_int_equal(config_parse_hostport("127.0.0.1:2575", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 2575);
    assert_int_equal(config_parse_hostport("[::1]:1", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_int_equal(config_parse_hostport("hie.nel.example:65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "hie.nel.example");
    assert_int_equal(port, 65535);
    assert_int_equal(config_parse_hostport("localhost:8088", host, sizeof host, &port), 0);

    static const char *const bad[] = {
        "", ":2575", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:25x", "127.0.0.1:-1", "::1:2575", "[::1]", "[::1]2575", "[::1:2575",
        "[zz]:1", "[]:1", "1.2.3:4", "256.1.1.1:1", "a..b:1", "-a.example:1", "a-.example:1",
        "a b:1", "host_name:1", "127.0.0.1:+25",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (config_valid_hostport(bad[i], why, sizeof why))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(why[0] != '\0');
    }
    assert_true(config_valid_hostname("hie.example", why, sizeof why));
    assert_true(config_valid_hostname("::1", why, sizeof why));
    assert_false(config_valid_hostname("bad!", why, sizeof why));
}

static void test_cidr(void **state)
{
    (void)state;
    struct config_cidr c;
    unsigned char a4[4], a6[16];
    char why[256];

    assert_int_equal(config_parse_cidr("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    inet_pton(AF_INET, "10.200.3.4", a4);
    assert_true(config_cidr_match(&c, AF_INET, a4));
    inet_pton(AF_INET, "11.0.0.1", a4);
    assert_false(config_cidr_match(&c, AF_INET, a4));
    inet_pton(AF_INET6, "::ffff:10.1.2.3", a6);   /* IPv4-mapped on a dual-stack socket */
    assert_true(config_cidr_match(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "::1", a6);
    assert_false(config_cidr_match(&c, AF_INET6, a6));

    assert_int_equal(config_parse_cidr("192.168.1.7", &c), 0);
    assert_int_equal(c.prefix, 32);
    inet_pton(AF_INET, "192.168.1.7", a4);
    assert_true(config_cidr_match(&c, AF_INET, a4));
    inet_pton(AF_INET, "192.168.1.8", a4);
    assert_false(config_cidr_match(&c, AF_INET, a4));

    assert_int_equal(config_parse_cidr("172.16.0.0/12", &c), 0);
    inet_pton(AF_INET, "172.31.255.255", a4);
    assert_true(config_cidr_match(&c, AF_INET, a4));
    inet_pton(AF_INET, "172.32.0.0", a4);
    assert_false(config_cidr_match(&c, AF_INET, a4));

    assert_int_equal(config_parse_cidr("fd00::/8", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    inet_pton(AF_INET6, "fd12:3456::1", a6);
    assert_true(config_cidr_match(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "fe80::1", a6);
    assert_false(config_cidr_match(&c, AF_INET6, a6));
    inet_pton(AF_INET, "10.0.0.1", a4);
    assert_false(config_cidr_match(&c, AF_INET, a4));

    assert_int_equal(config_parse_cidr("0.0.0.0/0", &c), 0);
    inet_pton(AF_INET, "8.8.8.8", a4);
    assert_true(config_cidr_match(&c, AF_INET, a4));
    assert_int_equal(config_parse_cidr("::/0", &c), 0);
    assert_int_equal(config_parse_cidr("::1/128", &c), 0);

    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/8/8", "10.0.0.1/8", "::1/129",
        "fd00::1/8", "10.0.0.0/x", "10.0.0.0/-1", "1.2.3.4.5/32", "10.0.0.0/0008", "host/8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (config_valid_cidr(bad[i], why, sizeof why))
            fail_msg("accepted \"%s\"", bad[i]);
}

static void test_names_and_files(void **state)
{
    (void)state;
    char why[256];

    assert_true(config_valid_name("rlh-pas", why, sizeof why));
    assert_true(config_valid_name("A.b_c-9", why, sizeof why));
    assert_false(config_valid_name("", why, sizeof why));
    assert_false(config_valid_name("-x", why, sizeof why));
    assert_false(config_valid_name("a b", why, sizeof why));
    assert_false(config_valid_name("a\"b", why, sizeof why));
    assert_false(config_valid_name("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                   why, sizeof why));   /* 65 */
    assert_true(config_valid_file("conf/hl7broker.conf", why, sizeof why));
    assert_false(config_valid_file("conf", why, sizeof why));
    assert_string_equal(why, "is not a regular file");
    assert_false(config_valid_file("conf/nope", why, sizeof why));
    assert_true(config_check_pem("conf/tls/example-broker.pem", "conf/tls/example-broker.key",
                                 why, sizeof why));
    assert_false(config_check_pem("conf/tls/example-broker.pem", "conf/tls/example-client.key",
                                  why, sizeof why));
    assert_false(config_check_pem("conf/tls/example-broker.key", NULL, why, sizeof why));
}

/* ------------------------------------------------- summary and reference */

static char *read_all(FILE *f)
{
    struct buf b = { 0 };
    char chunk[4096];
    size_t n;
    rewind(f);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(&b, chunk, n), 0);
    return buf_take(&b, NULL);
}

static void test_summary(void **state)
{
    (void)state;
    struct config cfg;
    FILE *f = tmpfile();
    assert_non_null(f);

    load_ok("conf/hl7broker.conf", &cfg);
    log_set_fd(fileno(f));
    config_log_summary(&cfg, "config loaded");
    log_set_fd(2);
    char *text = read_all(f);
    fclose(f);
    assert_non_null(strstr(text, " level=info component=config msg=source name=local-mllp "
                                 "type=mllp check_nhs_number=false listen=127.0.0.1:2575 "
                                 "allow=127.0.0.1/32,::1/128 "
                                 "commit_ack=false tls=off\n"));
    assert_non_null(strstr(text, "msg=destination name=local-file type=file paused=false "
                                 "directory=var/out\n"));
    assert_non_null(strstr(text, "msg=route name=everything-to-file from=local-mllp "
                                 "transform=0 to=local-file\n"));
    assert_non_null(strstr(text, "msg=\"config loaded\" file=conf/hl7broker.conf sources=1 "
                                 "destinations=1 routes=1 tables=1\n"));
    free(text);
    config_free(&cfg);
}

static void test_reference(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    config_print_reference(f);
    char *text = read_all(f);
    fclose(f);
    assert_non_null(strstr(text, "| setting | type | default | meaning |\n"));
    assert_non_null(strstr(text, "| `sources[type=mllp].listen` | string | required |"));
    assert_non_null(strstr(text, "| `destinations[].retry.initial_ms` | integer 1..86400000 | 500 |"));
    assert_non_null(strstr(text, "| `broker.data_dir` | string | `\"var/data\"` |"));
    free(text);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_conf),
        cmocka_unit_test(test_london_conf),
        cmocka_unit_test(test_full_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_include_error),
        cmocka_unit_test(test_every_error_reported),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_names_and_files),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_reference),
    };
    int failed = cmocka_run_group_tests_name("config", tests, NULL, NULL);

    /* One test per bad_*.conf, named after the file. */
    glob_t g;
    if (glob(DATA "bad_*.conf", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        fprintf(stderr, "test_config: no " DATA "bad_*.conf (run from the repository root)\n");
        return 1;
    }
    struct CMUnitTest *bad = calloc(g.gl_pathc, sizeof *bad);
    if (!bad)
        return 1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        bad[i].name = g.gl_pathv[i] + strlen(DATA);
        bad[i].test_func = test_bad_file;
        bad[i].initial_state = g.gl_pathv[i];
    }
    failed += _cmocka_run_group_tests("config bad files", bad, g.gl_pathc, NULL, NULL);
    free(bad);
    globfree(&g);
    return failed;
}
