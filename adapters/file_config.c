/*
 * file_config.c: the settings of file sources (a directory messages are
 * dropped into, with work, done and error folders) and file destinations
 * (a directory written atomically).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter_config.h"
#include "config_rows.h"

static const struct config_row file_source_rows[] = {
    ROW_STR(struct file_source_opts, directory, ROW_REQ | ROW_SUM, NULL, config_valid_nonempty,
            "directory to take message files from (made at start if missing)"),
    ROW_STR(struct file_source_opts, work_dir, 0, NULL, config_valid_nonempty,
            "where a file is moved (renamed) while its messages are stored; unset: <directory>/.work; same filesystem as directory"),
    ROW_STR(struct file_source_opts, done_dir, ROW_SUM, NULL, config_valid_nonempty,
            "where a file goes once every message in it is stored; unset: <directory>/done"),
    ROW_STR(struct file_source_opts, error_dir, ROW_SUM, NULL, config_valid_nonempty,
            "where a file with a refused message goes, with <file>.reason beside it; unset: <directory>/error"),
    ROW_INT(struct file_source_opts, poll_ms, 0, 1000, 10, 3600000,
            "how often to look for new files (inotify wakes the source sooner where it works)"),
    ROW_INT(struct file_source_opts, settle_ms, 0, 1000, 0, 3600000,
            "a file is taken only when it has not changed (ctime) for this long"),
    ROW_INT(struct file_source_opts, max_message_bytes, 0, 4194304, 1024, 268435456,
            "largest message in a file; a larger one is refused (file to error_dir)"),
    ROW_INT(struct file_source_opts, max_file_bytes, 0, 67108864, 1024, 1073741824,
            "largest file read; a larger one is refused whole into error_dir, never truncated"),
    ROW_END
};

/* path without trailing slashes, for comparing settings */
static size_t trimmed_len(const char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        n--;
    return n;
}

static bool same_path(const char *a, const char *b)
{
    size_t n = trimmed_len(a);
    return n == trimmed_len(b) && strncmp(a, b, n) == 0;
}

/* A directory the broker can read and write, or one it can create (its
 * nearest existing ancestor is a writable directory). */
static bool dir_usable(const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(why, whylen, "\"%s\" is not a directory", path);
            return false;
        }
        if (access(path, R_OK | W_OK | X_OK) != 0) {
            snprintf(why, whylen, "\"%s\": the broker cannot read and write it: %s", path,
                     strerror(errno));
            return false;
        }
        return true;
    }
    if (errno != ENOENT) {
        snprintf(why, whylen, "\"%s\" cannot be used as a directory: %s", path, strerror(errno));
        return false;
    }
    char *p = strdup(path);
    bool ok = false;
    if (!p) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    for (;;) {
        size_t n = trimmed_len(p);
        p[n] = '\0';
        char *slash = strrchr(p, '/');
        const char *parent = p;
        if (!slash)
            parent = ".";
        else if (slash == p)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(parent, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                snprintf(why, whylen, "\"%s\" cannot be created: \"%s\" is not a directory",
                         path, parent);
            else if (access(parent, W_OK | X_OK) != 0)
                snprintf(why, whylen, "\"%s\" does not exist and cannot be created: \"%s\": %s",
                         path, parent, strerror(errno));
            else
                ok = true;
            break;
        }
        if (errno != ENOENT || !slash || slash == p) {
            snprintf(why, whylen, "\"%s\" cannot be created: \"%s\": %s", path, parent,
                     strerror(errno));
            break;
        }
    }
    free(p);
    return ok;
}

/* Fill the folders left unset, then check every folder on disk and that
 * no two are the same. */
static void file_source_check(struct config_ctx *ctx, void *obj, const config_setting_t *s,
                              const char *path)
{
    struct file_source_opts *o = obj;
    struct { char **v; const char *name, *def; } dirs[] = {
        { &o->work_dir, "work_dir", ".work" },
        { &o->done_dir, "done_dir", "done" },
        { &o->error_dir, "error_dir", "error" },
    };
    char why[512];
    if (!dir_usable(o->directory, why, sizeof why))
        config_report(ctx, s, path, "directory", "%s", why);
    for (size_t i = 0; i < 3; i++) {
        if (!*dirs[i].v) {
            size_t n = trimmed_len(o->directory) + strlen(dirs[i].def) + 2;
            if (!(*dirs[i].v = malloc(n))) {
                config_report(ctx, s, path, dirs[i].name, "out of memory");
                return;
            }
            snprintf(*dirs[i].v, n, "%.*s/%s", (int)trimmed_len(o->directory), o->directory,
                     dirs[i].def);
        } else if (!dir_usable(*dirs[i].v, why, sizeof why)) {
            config_report(ctx, s, path, dirs[i].name, "%s", why);
        }
        if (same_path(*dirs[i].v, o->directory))
            config_report(ctx, s, path, dirs[i].name, "\"%s\" is the directory itself: "
                          "it must be a folder of its own", *dirs[i].v);
        for (size_t k = 0; k < i; k++)
            if (same_path(*dirs[i].v, *dirs[k].v))
                config_report(ctx, s, path, dirs[i].name, "\"%s\" is also %s: each folder "
                              "must be a different one", *dirs[i].v, dirs[k].name);
    }
}

static const struct config_section file_source_section = {
    .name = "file source",
    .rows = file_source_rows,
    .size = sizeof(struct file_source_opts),
    .check = file_source_check,
};

static const struct config_row file_destination_rows[] = {
    ROW_STR(struct file_destination_opts, directory, ROW_REQ | ROW_SUM, NULL, config_valid_nonempty,
            "directory to write one file per message into (write, fsync, rename)"),
    ROW_END
};

static const struct config_section file_destination_section = {
    .name = "file destination",
    .rows = file_destination_rows,
    .size = sizeof(struct file_destination_opts),
};

const struct config_adapter_schema file_config_schema = {
    .type = "file",
    .source = &file_source_section,
    .destination = &file_destination_section,
};
