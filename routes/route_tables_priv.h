/*
 * route_tables_priv.h: what expr.c needs of tables.c beyond route.h: the
 * names of the tables loaded, to suggest one when an expression names a
 * table that does not exist.
 */
#ifndef HL7BROKER_ROUTE_TABLES_PRIV_H
#define HL7BROKER_ROUTE_TABLES_PRIV_H

#include <stddef.h>

struct route_tables;

struct objections;

/* The objections register objected() reads (the tables hold a reference;
 * NULL: none, and objected() does not compile). */
void               route_tables_set_objections(struct route_tables *t, struct objections *o);
struct objections *route_tables_objections(const struct route_tables *t);

size_t      route_tables_count(const struct route_tables *t);
const char *route_tables_name(const struct route_tables *t, size_t i);

#endif
