/*
 * sources.h: the running source adapters, kept in step with the config.
 * Applying a new config starts the sources it adds, stops those it
 * removes, restarts those whose settings changed, and leaves the others
 * (and their connections) alone.
 */
#ifndef HL7BROKER_SOURCES_H
#define HL7BROKER_SOURCES_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct event_base;
struct ingest;
struct sources;

struct sources *sources_new(struct event_base *base, struct ingest *ingest);

/* Bring the running sources in line with cfg. Returns the number of
 * sources that failed to start (each logged with its reason); the others
 * run regardless. cfg must stay alive until the next apply or free. */
size_t sources_apply(struct sources *s, const struct config *cfg);

/* Stop taking input everywhere (shutdown); replies still get written. */
void sources_drain(struct sources *s);

/* True while any source still has ACKs to write. */
bool sources_busy(const struct sources *s);

/* How many are running. */
size_t sources_count(const struct sources *s);

/* The running source named name (its adapter: name, type, stats), or
 * NULL when it is not running (never started, failed, or removed). Valid
 * until the next apply or free. */
struct adapter;
const struct adapter *sources_find(const struct sources *s, const char *name);

void sources_free(struct sources *s);

#endif
