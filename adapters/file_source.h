/*
 * file_source.h: the file source, inside the "file" adapter type (file.c
 * dispatches on a->role to the destination or to these). Internal to
 * adapters/: the struct is here only so that file.c can size its state.
 */
#ifndef HL7BROKER_FILE_SOURCE_H
#define HL7BROKER_FILE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"

struct event;
struct file_job;

struct file_source {
    struct adapter      *a;
    /* copied from the config in configure() */
    char                *name;
    char                *dir, *work, *done, *error;
    int64_t              poll_ms, settle_ms;
    size_t               max_message, max_file;
    bool                 check_nhs_number;
    /* running */
    bool                 started, draining, recovered;
    int                  lock_fd;             /* work_dir/.lock, flocked; -1 when none */
    int                  ino_fd, ino_wd;      /* inotify; -1 when none */
    struct event        *ino_ev;
    struct event        *scan_ev;
    uint64_t             scan_at;             /* monotonic ms the scan is due; 0: none */
    struct file_job     *jobs;                /* files being taken */
    size_t               n_jobs, job_bytes;
    struct adapter_stats st;
};

int  file_source_configure(struct adapter *a, char *err, size_t errlen);
int  file_source_start(struct adapter *a, char *err, size_t errlen);
void file_source_drain(struct adapter *a);
bool file_source_busy(const struct adapter *a);
void file_source_stop(struct adapter *a);
void file_source_stats(const struct adapter *a, struct adapter_stats *s);

/* mkdir -p, mode 0750 (file.c). Returns 0 or -1 with errno. */
int file_make_dirs(const char *path);
/* write(2) all of p, going on after EINTR (file.c). 0, or -1 on failure. */
int file_write_all(int fd, const char *p, size_t n);

#endif
