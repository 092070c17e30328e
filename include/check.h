/*
 * check.h: validate a config file as the daemon would load it, for
 * hl7brokerd --check and hl7ctl check-config.
 */
#ifndef HL7BROKER_CHECK_H
#define HL7BROKER_CHECK_H

#include <stdio.h>

/* Load path and build its routes. Valid: prints "PATH: OK (sources=N
 * destinations=N routes=N tables=N)" to out and returns 0. Not: prints
 * every error, one a line, then a count, to err and returns 1. */
int broker_check_config(const char *path, FILE *out, FILE *err);

#endif
