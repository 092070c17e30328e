/*
 * ctl.h: what the hl7ctl commands share: reading their input files and
 * showing bytes on a terminal one line at a time.
 */
#ifndef HL7BROKER_CTL_H
#define HL7BROKER_CTL_H

#include <stddef.h>
#include <stdio.h>

#include "buf.h"

/* Read a whole file (standard input for "-") into b, refusing more than
 * max bytes. On failure prints "PROG: PATH: reason" to stderr and returns
 * -1. */
int ctl_read_input(const char *prog, const char *path, size_t max, struct buf *b);

/* Write p[0..n) with control characters as C escapes (\n \r \t \xHH), so
 * that any value stays on one line. */
void ctl_put_escaped(FILE *out, const char *p, size_t n);

#endif
