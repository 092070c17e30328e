/*
 * config_rows.h: shorthand for writing tables of settings (struct
 * config_row). Only files that define tables include it. In each macro the
 * setting's name is the struct member's name, T the struct, f the member.
 */
#ifndef HL7BROKER_CONFIG_ROWS_H
#define HL7BROKER_CONFIG_ROWS_H

#include <stddef.h>

#include "config.h"

#define ROW_STR(T, f, fl, def, val, d) \
    { .name = #f, .kind = CONFIG_STRING, .offset = offsetof(T, f), .flags = (fl), \
      .def_str = (def), .validate = (val), .doc = (d) }
#define ROW_INT(T, f, fl, def, lo, hi, d) \
    { .name = #f, .kind = CONFIG_INT, .offset = offsetof(T, f), .flags = (fl), \
      .def_int = (def), .min = (lo), .max = (hi), .doc = (d) }
#define ROW_BOOL(T, f, fl, def, d) \
    { .name = #f, .kind = CONFIG_BOOL, .offset = offsetof(T, f), .flags = (fl), \
      .def_int = (def), .doc = (d) }
#define ROW_ENUM(T, f, fl, def, ch, d) \
    { .name = #f, .kind = CONFIG_ENUM, .offset = offsetof(T, f), .flags = (fl), \
      .def_str = (def), .choices = (ch), .doc = (d) }
#define ROW_STRLIST(T, f, fl, lo, hi, val, d) \
    { .name = #f, .kind = CONFIG_STRLIST, .offset = offsetof(T, f), .flags = (fl), \
      .min = (lo), .max = (hi), .validate = (val), .doc = (d) }
#define ROW_GROUP(T, f, fl, sec, d) \
    { .name = #f, .kind = CONFIG_GROUP, .offset = offsetof(T, f), .flags = (fl), \
      .section = (sec), .doc = (d) }
#define ROW_GROUP_OPT(T, f, fl, sec, d) \
    { .name = #f, .kind = CONFIG_GROUP_OPT, .offset = offsetof(T, f), .flags = (fl), \
      .section = (sec), .doc = (d) }
#define ROW_LIST(T, f, count, sec, d) \
    { .name = #f, .kind = CONFIG_LIST, .offset = offsetof(T, f), \
      .count_offset = offsetof(T, count), .section = (sec), .doc = (d) }
#define ROW_RAW(T, f, fl, type, d) \
    { .name = #f, .kind = CONFIG_RAW, .offset = offsetof(T, f), .flags = (fl), \
      .raw_type = (type), .doc = (d) }
#define ROW_END { .name = NULL }

#define ROW_REQ CONFIG_F_REQUIRED
#define ROW_SUM CONFIG_F_SUMMARY

#endif
