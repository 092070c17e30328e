/*
 * file_config.c: the settings of file sources (a directory messages are
 * dropped into) and file destinations (a directory written atomically).
 */
#include "adapter_config.h"
#include "config_rows.h"

static const struct config_row file_source_rows[] = {
    ROW_STR(struct file_source_opts, directory, ROW_REQ | ROW_SUM, NULL, config_valid_nonempty,
            "directory to take message files from"),
    ROW_INT(struct file_source_opts, poll_ms, 0, 1000, 10, 3600000,
            "how often to look for new files"),
    ROW_INT(struct file_source_opts, max_message_bytes, 0, 4194304, 1024, 268435456,
            "largest file accepted"),
    ROW_END
};

static const struct config_section file_source_section = {
    .name = "file source",
    .rows = file_source_rows,
    .size = sizeof(struct file_source_opts),
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
