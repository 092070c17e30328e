/*
 * hl7brokerd.c: the broker daemon. Runs in the foreground on one libevent
 * loop: loads and validates the config, SIGHUP reloads it (a bad file
 * leaves the running config in place), SIGTERM and SIGINT stop it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin.h"
#include "buf.h"
#include "check.h"
#include "config.h"
#include "delivery.h"
#include "ingest.h"
#include "log.h"
#include "objections.h"
#include "retention.h"
#include "route.h"
#include "sources.h"
#include "store.h"
#include "version.h"

#define DEFAULT_CONFIG "conf/hl7broker.conf"
#define PROGRAM "hl7brokerd"

struct daemon {
    const char        *config_path;
    bool               force_syslog;
    struct config      cfg;          /* the running config */
    char              *data_dir;     /* the data_dir in use: changing it needs a restart */
    struct event_base *base;
    struct event      *ev_term;
    struct event      *ev_int;
    struct event      *ev_hup;
    struct store      *store;
    struct ingest     *ingest;
    struct sources    *sources;
    struct router     *router;       /* the running config's routes */
    struct objections *objections;   /* the register every router shares */
    struct delivery_engine *delivery; /* the running config's destinations */
    struct admin      *admin;        /* NULL when broker.admin.enabled is false */
    struct retention  *retention;    /* the pruner */
    struct event      *ev_drain;     /* shutdown: waits for ACKs to be written */
    struct timespec    drain_deadline;
    bool               stopping;
};

/* How long shutdown waits for ACKs to reach slow peers. */
#define DRAIN_TIMEOUT_MS 5000

/* The store starts at this size and doubles up to broker.max_map_bytes. */
#define STORE_MAP_INITIAL ((uint64_t)64 << 20)

static int start_delivery(struct daemon *d);

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROGRAM " [-c FILE] [--check] [--syslog]\n"
        "       " PROGRAM " --version | --help | --config-reference\n"
        "\n"
        "The HL7 v2 message broker. Runs in the foreground and logs to stderr,\n"
        "one logfmt line per event.\n"
        "\n"
        "  -c, --config FILE     the config file (default: " DEFAULT_CONFIG ")\n"
        "      --check           validate the config, print every error, exit:\n"
        "                        0 when valid, 1 when not\n"
        "      --syslog          log to syslog instead of stderr\n"
        "      --config-reference\n"
        "                        print every setting as a markdown table\n"
        "  -V, --version         print the version and exit\n"
        "  -h, --help            print this help and exit\n"
        "\n"
        "Signals: SIGHUP reloads the config (a bad file is refused and the\n"
        "running config kept); SIGTERM and SIGINT stop the broker (exit 0).\n"
        "Exit status: 0 stopped cleanly, 1 bad config or failure, 2 usage.\n");
}

/* ------------------------------------------------------------ logging */

static void apply_logging(const struct config *cfg, bool force_syslog)
{
    int facility = log_facility_parse(cfg->broker.log.facility ? cfg->broker.log.facility : "daemon");
    log_set_level((enum log_level)cfg->broker.log.level);
    log_set_syslog(force_syslog || cfg->broker.log.syslog, PROGRAM,
                   facility < 0 ? log_facility_parse("daemon") : facility);
}

static void log_config_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++) {
        const struct config_error *e = &errs->v[i];
        struct log_line l;
        if (!log_line_begin(&l, LOG_LEVEL_ERROR, "config", "config error"))
            return;
        log_line_add(&l, "file", "%s", e->file);
        if (e->line)
            log_line_add(&l, "line", "%u", e->line);
        if (e->setting)
            log_line_add(&l, "setting", "%s", e->setting);
        log_line_add(&l, "error", "%s", e->text);
        log_line_end(&l);
    }
}

static void libevent_log(int severity, const char *msg)
{
    enum log_level level = severity == EVENT_LOG_DEBUG ? LOG_LEVEL_DEBUG :
                           severity == EVENT_LOG_MSG ? LOG_LEVEL_INFO :
                           severity == EVENT_LOG_WARN ? LOG_LEVEL_WARN : LOG_LEVEL_ERROR;
    log_msg(level, "libevent", msg, NULL);
}

/* ------------------------------------------------------------- --check */

static void log_route_error(void *ctx, const struct route_error *e)
{
    log_error("config", "route error", "error=%s", e->msg);
    ++*(size_t *)ctx;
}

/* ------------------------------------------------------------ data dir */

/* mkdir -p path; returns 0 or -1 with errno set. *created says whether
 * the last component was made now. */
static int make_dirs(const char *path, mode_t mode, bool *created)
{
    char *p = strdup(path);
    int rc = 0;
    struct stat st;

    *created = false;
    if (!p)
        return -1;
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) == 0) {
            *created = c == '\0';
        } else if (errno != EEXIST) {
            rc = -1;
        } else if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            rc = -1;
        }
        *s = c;
        if (rc || c == '\0')
            break;
    }
    free(p);
    return rc;
}

/* ------------------------------------------------------------- signals */

static bool past(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* Shutdown, second half: once every ACK is written (or time is up),
 * leave the loop. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    bool busy = sources_busy(d->sources);
    if (!busy || past(&d->drain_deadline)) {
        if (busy)
            log_warn("daemon", "stopping with ACKs unwritten to slow peers",
                     "waited_ms=%d", DRAIN_TIMEOUT_MS);
        event_base_loopbreak(d->base);
    }
}

/* Shutdown: stop accepting, commit what was received, let its ACKs go
 * out, then stop. A second signal stops at once. */
static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    const char *name = sig == SIGTERM ? "SIGTERM" : "SIGINT";
    if (d->stopping) {
        log_warn("daemon", "stopping now", "signal=%s", name);
        event_base_loopbreak(d->base);
        return;
    }
    d->stopping = true;
    admin_set_stopping(d->admin);
    log_info("daemon", "stopping", "signal=%s pending=%zu", name, ingest_pending(d->ingest));
    sources_drain(d->sources);
    ingest_flush(d->ingest);
    clock_gettime(CLOCK_MONOTONIC, &d->drain_deadline);
    d->drain_deadline.tv_sec += DRAIN_TIMEOUT_MS / 1000;
    struct timeval tick = { 0, 20000 };
    d->ev_drain = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
    if (!d->ev_drain || event_add(d->ev_drain, &tick))
        event_base_loopbreak(d->base);
}

/* Settings read once at start: a reload cannot change them. */
static void warn_restart_needed(const struct daemon *d, const struct config *next)
{
    const struct config_broker *a = &d->cfg.broker, *b = &next->broker;

    if (strcmp(d->data_dir, b->data_dir) != 0)
        log_warn("config", "change needs a restart", "setting=broker.data_dir running=%s file=%s",
                 d->data_dir, b->data_dir);
    if (a->max_map_bytes != b->max_map_bytes)
        log_warn("config", "change needs a restart",
                 "setting=broker.max_map_bytes running=%lld file=%lld",
                 (long long)a->max_map_bytes, (long long)b->max_map_bytes);
    const struct config_admin *x = &a->admin, *y = &b->admin;
    const struct config_tls_server *xt = x->tls, *yt = y->tls;
    if (x->enabled != y->enabled || strcmp(x->listen, y->listen) != 0 ||
        (xt == NULL) != (yt == NULL) ||
        (xt && yt && (strcmp(xt->cert, yt->cert) != 0 || strcmp(xt->key, yt->key) != 0)))
        log_warn("config", "change needs a restart",
                 "setting=broker.admin running=%s file=%s", x->enabled ? x->listen : "off",
                 y->enabled ? y->listen : "off");
}

/* The objections file of cfg, read (NULL when none is configured). */
static int read_objections(const struct config *cfg, struct objections_set **out,
                           struct buf *errors)
{
    *out = NULL;
    if (!cfg->objections.file)
        return 0;
    char why[512];
    if (objections_set_read(cfg->objections.file, out, why, sizeof why) == 0)
        return 0;
    struct route_error e;
    router_objections_error(cfg, why, &e);
    log_error("config", "objections error", "error=%s", e.msg);
    if (errors)
        buf_printf(errors, "%s\n", e.msg);
    return -1;
}

static int load_objection_change(void *ctx, const char *nhs, const char *purpose, bool objected)
{
    return objections_change(ctx, nhs, purpose, objected, NULL) ? STORE_E_NOMEM : 0;
}

/* Route errors during a reload: logged, and kept for the caller. */
struct reload_errors {
    size_t      n;
    struct buf *out;   /* may be NULL */
};

static void reload_route_error(void *ctx, const struct route_error *e)
{
    struct reload_errors *re = ctx;
    log_error("config", "route error", "error=%s", e->msg);
    if (re->out)
        buf_printf(re->out, "%s\n", e->msg);
    re->n++;
}

/* Read the config file again and run it (SIGHUP, POST /api/v1/reload). A
 * file that does not load or whose routes do not build leaves the running
 * config in place: returns -1 with each error as a line in errors (may be
 * NULL). Returns 0 once the new config runs (a source that failed to
 * start is logged: the rest runs). */
/* why: "SIGHUP" or what else asked ("admin-api"), for the log. */
static int daemon_reload(struct daemon *d, const char *why, struct buf *errors)
{
    struct config next;
    struct config_errors errs = { 0 };

    if (strcmp(why, "SIGHUP") == 0)
        log_info("config", "reloading", "file=%s signal=SIGHUP", d->config_path);
    else
        log_info("config", "reloading", "file=%s trigger=%s", d->config_path, why);
    int rc = config_load(d->config_path, &next, &errs);
    if (rc != CONFIG_OK) {
        log_config_errors(&errs);
        log_error("config", "reload refused; the running config stays",
                  "file=%s errors=%zu reason=%s", d->config_path, errs.n, config_strerror(rc));
        for (size_t i = 0; errors && i < errs.n; i++)
            buf_printf(errors, "%s\n", errs.v[i].msg);
        if (errors && errs.n == 0)
            buf_printf(errors, "%s: %s\n", d->config_path, config_strerror(rc));
        config_errors_free(&errs);
        return -1;
    }
    struct objections_set *oset;
    if (read_objections(&next, &oset, errors)) {
        log_error("config", "reload refused; the running config stays",
                  "file=%s reason=%s", d->config_path, "objections file");
        config_free(&next);
        return -1;
    }
    struct reload_errors re = { 0, errors };
    struct router *router = router_new_shared(&next, d->objections, reload_route_error, &re);
    if (!router) {
        objections_set_free(oset);
        log_error("config", "reload refused; the running config stays",
                  "file=%s errors=%zu reason=%s", d->config_path, re.n, "route errors");
        if (errors && re.n == 0)
            buf_printf(errors, "%s: the routes do not build\n", d->config_path);
        config_free(&next);
        return -1;
    }
    objections_install(d->objections, oset);
    log_info("config", "objections file read", "file=%s entries=%zu",
             next.objections.file ? next.objections.file : "(none)", objections_set_count(oset));
    warn_restart_needed(d, &next);
    /* Messages accepted from now on route by the new routes; those
       already accepted keep what they were given. */
    ingest_set_router(d->ingest, router);
    ingest_set_ods_code(d->ingest, next.broker.ods_code);
    router_free(d->router);
    d->router = router;
    /* The new config keeps the running store settings (they need a restart). */
    struct config old = d->cfg;
    d->cfg = next;
    size_t failed = sources_apply(d->sources, &d->cfg);
    /* The engine holds the destinations' config: start it again on the
       new one. A delivery in flight is sent again (at least once). */
    ingest_set_on_commit(d->ingest, NULL, NULL);
    admin_set_delivery(d->admin, NULL);   /* keeps the old engine's counters */
    delivery_free(d->delivery);
    d->delivery = NULL;
    if (start_delivery(d))
        failed++;
    admin_set_delivery(d->admin, d->delivery);
    if (d->admin)
        admin_reload(d->admin);           /* the token file, read again */
    retention_set_config(d->retention, &d->cfg.retention);
    config_free(&old);
    apply_logging(&d->cfg, d->force_syslog);
    config_log_summary(&d->cfg, "config reloaded");
    if (failed)
        log_error("config", "reload applied, but some sources did not start",
                  "failed=%zu", failed);
    return 0;
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    daemon_reload(arg, "SIGHUP", NULL);
}

static int admin_reload_cb(void *ctx, struct buf *errors)
{
    return daemon_reload(ctx, "admin-api", errors);
}

/* Start delivery to the running config's destinations. */
static int start_delivery(struct daemon *d)
{
    char err[512] = "";
    struct delivery_opts o = {
        .base = d->base, .store = d->store,
        .dests = d->cfg.destinations, .n_dests = d->cfg.n_destinations,
        .threaded = true,
    };
    int rc = delivery_new(&o, &d->delivery, err, sizeof err);
    if (rc) {
        log_error("daemon", "delivery not started", "error=%s detail=%s",
                  delivery_strerror(rc), err);
        d->delivery = NULL;
        return -1;
    }
    delivery_attach_ingest(d->delivery, d->ingest);
    return 0;
}

/* ---------------------------------------------------------------- main */

static int run(struct daemon *d)
{
    struct config_errors errs = { 0 };
    bool created = false;
    int rc = 1;

    int lrc = config_load(d->config_path, &d->cfg, &errs);
    if (lrc != CONFIG_OK) {
        log_set_syslog(d->force_syslog, PROGRAM, log_facility_parse("daemon"));
        log_config_errors(&errs);
        log_error("daemon", "cannot start: the config is not valid",
                  "file=%s errors=%zu reason=%s", d->config_path, errs.n, config_strerror(lrc));
        config_errors_free(&errs);
        return 1;
    }
    apply_logging(&d->cfg, d->force_syslog);
    log_info("daemon", "starting", "version=%s pid=%ld config=%s",
             HL7BROKER_VERSION, (long)getpid(), d->config_path);
    config_log_summary(&d->cfg, "config loaded");

    if (!(d->data_dir = strdup(d->cfg.broker.data_dir)))
        goto out;
    if (make_dirs(d->data_dir, 0750, &created) != 0) {
        log_error("daemon", "cannot create the data directory", "path=%s error=%s",
                  d->data_dir, strerror(errno));
        goto out;
    }
    if (created)
        log_info("daemon", "created the data directory", "path=%s", d->data_dir);

    event_set_log_callback(libevent_log);
    /* Before any event_base: delivery runs on a thread of its own and the
       two loops wake each other (event_active across threads). */
    if (evthread_use_pthreads() != 0) {
        log_error("daemon", "cannot enable libevent's thread support", NULL);
        goto out;
    }
    if (!(d->base = event_base_new())) {
        log_error("daemon", "cannot create the event loop", NULL);
        goto out;
    }

    char detail[512] = "";
    struct store_opts so = {
        .dir = d->data_dir,
        .map_initial = (uint64_t)d->cfg.broker.max_map_bytes < STORE_MAP_INITIAL
                           ? (uint64_t)d->cfg.broker.max_map_bytes : STORE_MAP_INITIAL,
        .map_max = (uint64_t)d->cfg.broker.max_map_bytes,
    };
    int src = store_open(&so, &d->store, detail, sizeof detail);
    if (src) {
        log_error("daemon", "cannot open the message store", "path=%s error=%s",
                  d->data_dir, detail[0] ? detail : store_strerror(src));
        goto out;
    }
    if (ingest_new(d->base, d->store, &d->ingest)) {
        log_error("daemon", "cannot set up ingest", NULL);
        goto out;
    }
    struct objections_set *oset;
    if (!(d->objections = objections_new()) || read_objections(&d->cfg, &oset, NULL)) {
        log_error("daemon", "cannot start: the objections register does not load", NULL);
        goto out;
    }
    objections_install(d->objections, oset);
    int orc = store_objections_each(d->store, load_objection_change, d->objections);
    if (orc) {
        log_error("daemon", "cannot start: the objections kept in the store do not read",
                  "error=%s", store_strerror(orc));
        goto out;
    }
    size_t nerr = 0;
    if (!(d->router = router_new_shared(&d->cfg, d->objections, log_route_error, &nerr))) {
        log_error("daemon", "cannot start: the routes are not valid", "errors=%zu", nerr);
        goto out;
    }
    ingest_set_router(d->ingest, d->router);
    if (ingest_set_ods_code(d->ingest, d->cfg.broker.ods_code))
        goto out;
    if (start_delivery(d))
        goto out;
    if (retention_new(d->base, d->store, &d->cfg.retention, &d->retention)) {
        log_error("daemon", "out of memory", NULL);
        goto out;
    }
    if (!(d->sources = sources_new(d->base, d->ingest))) {
        log_error("daemon", "out of memory", NULL);
        goto out;
    }
    d->ev_term = evsignal_new(d->base, SIGTERM, on_stop, d);
    d->ev_int = evsignal_new(d->base, SIGINT, on_stop, d);
    d->ev_hup = evsignal_new(d->base, SIGHUP, on_reload, d);
    if (!d->ev_term || !d->ev_int || !d->ev_hup || event_add(d->ev_term, NULL) ||
        event_add(d->ev_int, NULL) || event_add(d->ev_hup, NULL)) {
        log_error("daemon", "cannot set up signal handling", NULL);
        goto out;
    }
    if (sources_apply(d->sources, &d->cfg) > 0) {
        log_error("daemon", "cannot start: a source failed to start", NULL);
        goto out;
    }
    if (d->cfg.broker.admin.enabled) {
        char aerr[512] = "";
        struct admin_opts ao = {
            .base = d->base, .cfg = &d->cfg, .store = d->store, .ingest = d->ingest,
            .sources = d->sources, .delivery = d->delivery,
            .reload = admin_reload_cb, .reload_ctx = d, .objections = d->objections,
        };
        if (admin_new(&ao, &d->admin, aerr, sizeof aerr)) {
            log_error("daemon", "cannot start: the admin API did not start", "error=%s", aerr);
            goto out;
        }
    }
    log_info("daemon", "running", "pid=%ld data_dir=%s sources=%zu map_bytes=%llu",
             (long)getpid(), d->data_dir, sources_count(d->sources),
             (unsigned long long)store_map_size(d->store));
    if (event_base_dispatch(d->base) < 0) {
        log_error("daemon", "the event loop failed", NULL);
        goto out;
    }
    rc = 0;
    struct ingest_stats st;
    ingest_get_stats(d->ingest, &st);
    log_info("daemon", "stopped", "exit=0 accepted=%llu duplicates=%llu refused=%llu "
             "failed=%llu commits=%llu", (unsigned long long)st.accepted,
             (unsigned long long)st.duplicates, (unsigned long long)st.refused,
             (unsigned long long)st.failed, (unsigned long long)st.commits);
out:
    admin_free(d->admin);
    d->admin = NULL;
    if (d->ingest)
        ingest_flush(d->ingest);   /* commit what is left (replies go to live sources) */
    sources_free(d->sources);
    if (d->ingest)
        ingest_set_on_commit(d->ingest, NULL, NULL);
    delivery_free(d->delivery);
    retention_free(d->retention);
    ingest_free(d->ingest);
    router_free(d->router);
    objections_unref(d->objections);
    store_close(d->store);
    if (d->ev_drain)
        event_free(d->ev_drain);
    if (d->ev_term)
        event_free(d->ev_term);
    if (d->ev_int)
        event_free(d->ev_int);
    if (d->ev_hup)
        event_free(d->ev_hup);
    if (d->base)
        event_base_free(d->base);
    config_free(&d->cfg);
    free(d->data_dir);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256, OPT_SYSLOG, OPT_REFERENCE };
    static const struct option options[] = {
        { "config",           required_argument, NULL, 'c' },
        { "check",            no_argument,       NULL, OPT_CHECK },
        { "syslog",           no_argument,       NULL, OPT_SYSLOG },
        { "config-reference", no_argument,       NULL, OPT_REFERENCE },
        { "version",          no_argument,       NULL, 'V' },
        { "help",             no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct daemon d = { .config_path = DEFAULT_CONFIG };
    bool check = false;
    int c;

    while ((c = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            d.config_path = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case OPT_SYSLOG:
            d.force_syslog = true;
            break;
        case OPT_REFERENCE:
            config_print_reference(stdout);
            return 0;
        case 'V':
            printf(PROGRAM " " HL7BROKER_VERSION "\n");
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROGRAM ": unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    if (check)
        return broker_check_config(d.config_path, stdout, stderr);

    signal(SIGPIPE, SIG_IGN);
    int rc = run(&d);
    libevent_global_shutdown();
    log_set_syslog(false, PROGRAM, 0);
    return rc;
}
