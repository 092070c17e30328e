/*
 * ctl.h: what the hl7ctl commands share: reading their input files and
 * showing bytes on a terminal one line at a time.
 */
#ifndef HL7BROKER_CTL_H
#define HL7BROKER_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"

/* Read a whole file (standard input for "-") into b, refusing more than
 * max bytes. On failure prints "PROG: PATH: reason" to stderr and returns
 * -1. */
int ctl_read_input(const char *prog, const char *path, size_t max, struct buf *b);

/* Write p[0..n) with control characters as C escapes (\n \r \t \xHH), so
 * that any value stays on one line. */
void ctl_put_escaped(FILE *out, const char *p, size_t n);


/* A table printed with aligned columns: the header row, then each row,
 * columns separated by two spaces, the last one not padded. Cells are
 * copied with control characters as C escapes (a value never breaks a
 * line); widths count UTF-8 characters. right has bit i set for columns
 * aligned right (numbers). Zero-initialise after setting ncols. */
struct ctl_table {
    size_t    ncols;
    uint32_t  right;
    size_t    nrows;       /* header included */
    char    **cells;       /* nrows * ncols */
};
/* Add a row of ncols cells (NULL cells print as ""). -1 without memory. */
int  ctl_table_add(struct ctl_table *t, const char *const *row);
void ctl_table_print(const struct ctl_table *t, FILE *out);
void ctl_table_free(struct ctl_table *t);

#endif
