/*
 * config.h: the broker's configuration: a libconfig file (DESIGN.md §4)
 * read through tables of settings into struct config, validated
 * completely, every error collected and reported as
 * "FILE:LINE: setting PATH: what is wrong".
 *
 * Each group of settings is a struct config_section: a list of rows (name,
 * kind, where the value goes via offsetof, default, range, validator), in
 * the manner of nginx's ngx_command_t. A generic loader fills the structs
 * and refuses unknown settings. Sources and destinations have a "type";
 * the settings particular to a type live in that type's own sections,
 * found in a registry (struct config_adapter_schema), so this core knows
 * no transport.
 */
#ifndef HL7BROKER_CONFIG_H
#define HL7BROKER_CONFIG_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------- errors */

/* Return codes of config_load(). */
enum config_err {
    CONFIG_OK = 0,
    CONFIG_E_NOMEM = -1,     /* memory could not be allocated */
    CONFIG_E_READ = -2,      /* the file cannot be read or does not parse */
    CONFIG_E_INVALID = -3,   /* the file parses but settings are wrong */
};

const char *config_strerror(int code);

/* One thing wrong with a config file. All strings are owned by the
 * struct config_errors holding the error. */
struct config_error {
    char    *file;       /* the file the setting is in (an @include, or the loaded file) */
    unsigned line;       /* 0 when the error is about the whole file */
    char    *setting;    /* path such as "sources[0].tls.cert"; NULL when
                            the error is not about one setting */
    char    *text;       /* what is wrong, a sentence without the location */
    char    *msg;        /* "FILE:LINE: setting PATH: TEXT", ready to print */
};

/* Zero-initialise before use; config_errors_free() releases it. At most
 * CONFIG_MAX_ERRORS are kept; the last then says that more were left out. */
struct config_errors {
    struct config_error *v;
    size_t               n;
    size_t               cap;
};
#define CONFIG_MAX_ERRORS 200

void config_errors_free(struct config_errors *errs);

/* -------------------------------------------------- the broker's config */

struct config_strlist {
    char  **v;
    size_t  n;
};

/* TLS on a listening socket (a source). */
struct config_tls_server {
    char                 *cert;                /* PEM certificate chain */
    char                 *key;                 /* PEM private key, not encrypted */
    char                 *ca;                  /* PEM CAs that sign client certificates */
    bool                  require_client_cert; /* mutual TLS */
    struct config_strlist allowed_subjects;    /* client subject DNs; empty: any the CA signed */
};

/* TLS on an outgoing connection (a destination). */
struct config_tls_client {
    char *ca;            /* PEM CAs to verify the server; NULL: the system's store */
    char *cert;          /* client certificate for mutual TLS, with key */
    char *key;
    char *server_name;   /* name to verify and send as SNI; NULL: the connect host */
};

struct config_admin {
    bool  enabled;
    char *listen;        /* host:port */
    char *token_file;    /* NULL: none configured */
    struct config_tls_server *tls;   /* NULL: plain HTTP */
};

struct config_log {
    int   level;         /* enum log_level */
    bool  syslog;
    char *facility;      /* "daemon", "local0".. (log_facility_parse) */
};

struct config_broker {
    char               *data_dir;
    char               *ods_code;     /* this organisation's ODS code (ITK identity); NULL: none */
    int64_t             max_map_bytes;
    struct config_admin admin;
    struct config_log   log;
};

/* Retention (top-level "retention"): how long records are kept. 0 keeps
 * them forever. The _seconds forms are for tests and short-lived stores;
 * each excludes its _days form. */
struct config_retention {
    int64_t delivered_days;     /* messages delivered everywhere, or unrouted */
    int64_t errors_days;        /* messages refused at ingest */
    int64_t delivered_seconds;
    int64_t errors_seconds;
    int64_t interval_seconds;   /* how often the pruner runs */
};

/* Ages in milliseconds (0: keep forever). */
uint64_t config_retention_delivered_ms(const struct config_retention *r);
uint64_t config_retention_errors_ms(const struct config_retention *r);

/* The objections register's file (see objections.h); file NULL: none. */
struct config_objections {
    char *file;
};

/* A lookup table used by route transforms (map). */
struct config_table {
    char                   *name;
    char                   *file;
    bool                    header;    /* the first row names the columns */
    unsigned                line;
    const config_setting_t *setting;
};

struct config_adapter_schema;

/* A configured source. Its type's own settings are in opts, a struct the
 * type's schema defines (e.g. struct mllp_source_opts for "mllp"). */
struct config_source {
    char                               *name;
    char                               *type;
    const struct config_adapter_schema *schema;
    void                               *opts;
    bool                                check_nhs_number;  /* refuse a failing check digit (AE) */
    unsigned                            line;
    const config_setting_t             *setting;   /* the whole group */
};

enum config_on_error_ack {
    CONFIG_ON_ERROR_RETRY = 0,         /* AE/AR from the subscriber: retry */
    CONFIG_ON_ERROR_DEAD_LETTER = 1,   /* move the message to the dead letters */
};

struct config_retry {
    int64_t initial_ms;
    int64_t max_ms;
    int64_t max_attempts;              /* 0: no limit */
};

struct config_destination {
    char                               *name;
    char                               *type;
    int64_t                             ack_timeout_ms;
    struct config_retry                 retry;
    int                                 on_error_ack;   /* enum config_on_error_ack */
    bool                                paused;
    const struct config_adapter_schema *schema;
    void                               *opts;
    unsigned                            line;
    const config_setting_t             *setting;
};

/* What a transform that fails on a message (a map with no entry and no
 * default, say) does to the message's answer. Either way the message is
 * stored with the error recorded and that route delivers nothing. */
enum config_on_transform_error {
    CONFIG_ON_TRANSFORM_REFUSE = 0,    /* answer AE (CE) */
    CONFIG_ON_TRANSFORM_ACCEPT = 1,    /* answer AA (CA) */
};

struct config_route {
    char                       *name;
    struct config_strlist       from;       /* source names */
    char                       *when;       /* filter expression; NULL: every message */
    const config_setting_t     *transform;  /* list of groups; NULL: none */
    struct config_strlist       to;         /* destination names */
    int                         on_transform_error;  /* enum config_on_transform_error */
    /* from and to resolved: from_src[i] is the source from.v[i] names. */
    struct config_source      **from_src;
    struct config_destination **to_dst;
    unsigned                    line;
    const config_setting_t     *setting;
};

/*
 * The loaded configuration. Every pointer in it (strings, arrays, opts and
 * the libconfig settings) is owned by it and lives until config_free().
 * Nothing changes it after config_load(), so readers on any thread may
 * share it.
 */
struct config {
    char                      *path;
    config_t                  *lc;          /* the parsed file */
    struct config_broker       broker;
    struct config_retention    retention;
    struct config_objections   objections;
    struct config_table       *tables;
    size_t                     n_tables;
    struct config_source      *sources;
    size_t                     n_sources;
    struct config_destination *destinations;
    size_t                     n_destinations;
    struct config_route       *routes;
    size_t                     n_routes;
};

/*
 * Read and validate the file at path into *cfg. Relative paths in the
 * file (data_dir, certificates, tables) are relative to the working
 * directory; @include paths are relative to the file's directory.
 *
 * Returns CONFIG_OK with *cfg filled, or an error code with every problem
 * found appended to errs (which may already hold errors) and *cfg left
 * empty: config_free() on it is harmless either way.
 */
int  config_load(const char *path, struct config *cfg, struct config_errors *errs);
void config_free(struct config *cfg);

const struct config_source      *config_find_source(const struct config *cfg, const char *name);
const struct config_destination *config_find_destination(const struct config *cfg, const char *name);

/* Log the configuration: a line per source, destination and route (the
 * settings their tables mark CONFIG_F_SUMMARY), then a count line with
 * msg=what. */
void config_log_summary(const struct config *cfg, const char *what);

/* Print the reference of every setting, as a markdown table, to f. */
void config_print_reference(FILE *f);

/* ----------------------------------------------- tables of settings */

enum config_kind {
    CONFIG_STRING,     /* char *, a copy; NULL when absent without default */
    CONFIG_INT,        /* int64_t in [min, max] */
    CONFIG_BOOL,       /* bool */
    CONFIG_ENUM,       /* int: the index of the value in choices */
    CONFIG_STRLIST,    /* struct config_strlist from [ "a", "b" ] or ( "a", "b" );
                          min and max bound the count (max 0: no bound) */
    CONFIG_GROUP,      /* a struct embedded at offset, filled by section;
                          defaults apply when the group is absent */
    CONFIG_GROUP_OPT,  /* a pointer at offset to a struct allocated only when
                          the group is present (NULL otherwise) */
    CONFIG_LIST,       /* ( { }, { } ): an array of section->size structs at
                          offset, its count (size_t) at count_offset */
    CONFIG_RAW,        /* const config_setting_t * kept as it is; raw_type is
                          the libconfig type it must have */
};

#define CONFIG_F_REQUIRED 0x1u   /* absent is an error */
#define CONFIG_F_SUMMARY  0x2u   /* shown in the summary log line */
#define CONFIG_F_LISTEN   0x4u   /* a host:port to listen on: checked for clashes */
#define CONFIG_F_UNIQUE   0x8u   /* CONFIG_STRING in a CONFIG_LIST: no two alike */

struct config_ctx;   /* the loader's state, for validators and checks */

/* Checks one string value (or one element of a list of strings). Returns
 * true when it is fine; otherwise false with a sentence in why. */
typedef bool (*config_validate_fn)(const char *value, char *why, size_t whylen);

struct config_row {
    const char                  *name;
    enum config_kind             kind;
    size_t                       offset;
    size_t                       count_offset;   /* CONFIG_LIST */
    unsigned                     flags;          /* CONFIG_F_* */
    const char                  *def_str;        /* CONFIG_STRING, CONFIG_ENUM */
    int64_t                      def_int;        /* CONFIG_INT, CONFIG_BOOL */
    int64_t                      min, max;       /* CONFIG_INT; counts for lists */
    const char *const           *choices;        /* CONFIG_ENUM, NULL-terminated */
    config_validate_fn           validate;       /* CONFIG_STRING, CONFIG_STRLIST */
    const struct config_section *section;        /* groups and lists */
    int                          raw_type;       /* CONFIG_RAW: CONFIG_TYPE_* */
    const char                  *doc;            /* one line for the reference */
};

enum config_role {
    CONFIG_ROLE_NONE = 0,
    CONFIG_ROLE_SOURCE = 1,
    CONFIG_ROLE_DESTINATION = 2,
};

struct config_section {
    const char              *name;      /* for the reference, e.g. "mllp source" */
    const struct config_row *rows;      /* ends with a row whose name is NULL */
    size_t                   size;      /* sizeof the struct the rows fill */
    /* Where a CONFIG_LIST element keeps its line and group (keep_origin). */
    bool                     keep_origin;
    size_t                   line_offset;     /* unsigned */
    size_t                   setting_offset;  /* const config_setting_t * */
    /* A typed section (sources, destinations): its "type" string row picks
     * a config_adapter_schema whose section for role fills opts. */
    enum config_role         role;
    size_t                   type_offset;     /* char * */
    size_t                   schema_offset;   /* const struct config_adapter_schema * */
    size_t                   opts_offset;     /* void * */
    /* Checks across settings, run when the rows loaded without error (or
     * always, with check_always, for checks that bear with values left
     * NULL by errors). s is the group (NULL when absent), path its name
     * for errors. */
    bool                     check_always;
    void (*check)(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                  const char *path);
    /* Frees what check allocated; the loader frees what the rows hold. */
    void (*fini)(void *obj);
};

/* One adapter type's settings. source or destination is NULL when the
 * type cannot play that role. */
struct config_adapter_schema {
    const char                  *type;
    const struct config_section *source;
    const struct config_section *destination;
};

/* The whole file: broker, tables, sources, destinations, routes. */
extern const struct config_section config_root_section;

/* The registry: every adapter type the broker knows, NULL-terminated
 * (adapters/adapters.c). */
extern const struct config_adapter_schema *const config_adapter_schemas[];

const struct config_adapter_schema *config_adapter_schema_find(const char *type);

/* Sections shared by adapter types: TLS is a layer any TCP adapter can
 * put on. */
extern const struct config_section config_tls_server_section;
extern const struct config_section config_tls_client_section;

/* For check functions: report an error about the member named member of
 * group s (path is the group's path). The line is the member's when it is
 * present, else the group's. member may be NULL to mean the group itself. */
void config_report(struct config_ctx *ctx, const config_setting_t *s,
                   const char *path, const char *member, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ------------------------------------------------------------ validators */

/* Each has the shape of config_validate_fn. */
bool config_valid_name(const char *v, char *why, size_t whylen);
bool config_valid_ods(const char *v, char *why, size_t whylen);        /* [A-Z0-9], 3..10 */       /* [A-Za-z0-9._-], 1..64, starts alnum */
bool config_valid_nonempty(const char *v, char *why, size_t whylen);
bool config_valid_hostport(const char *v, char *why, size_t whylen);   /* 1.2.3.4:p [::1]:p host:p */
bool config_valid_hostname(const char *v, char *why, size_t whylen);   /* a DNS name or an address */
bool config_valid_cidr(const char *v, char *why, size_t whylen);       /* 10.0.0.0/8, ::1/128, or an address */
bool config_valid_file(const char *v, char *why, size_t whylen);       /* a readable regular file */
bool config_valid_subject(const char *v, char *why, size_t whylen);    /* an X.509 DN such as CN=x,O=y */
bool config_valid_facility(const char *v, char *why, size_t whylen);   /* syslog facility name */

/* Split "host:port", "[v6]:port" into host (without brackets) and port.
 * Returns 0, or -1 when s is not valid (see config_valid_hostport). */
int config_parse_hostport(const char *s, char *host, size_t hostlen, unsigned *port);

/* An address block: family AF_INET or AF_INET6, addr in network order
 * (4 or 16 bytes used), prefix in bits. */
struct config_cidr {
    int           family;
    unsigned char addr[16];
    unsigned      prefix;
};

/* Parse "addr/prefix" or a bare address (a /32 or /128). Returns 0, or -1
 * when s is not valid (see config_valid_cidr). */
int config_parse_cidr(const char *s, struct config_cidr *out);

/* Does the address (family AF_INET or AF_INET6, 4 or 16 bytes in network
 * order) fall in the block? An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 blocks. */
bool config_cidr_match(const struct config_cidr *c, int family, const void *addr);

/* Check a PEM certificate file (and, when key is not NULL, the private key
 * that goes with it). Returns true when usable; otherwise false with a
 * sentence in why. */
bool config_check_pem(const char *cert, const char *key, char *why, size_t whylen);

#endif
