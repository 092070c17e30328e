/*
 * objections.h: the objections register (information governance): which
 * NHS numbers objected to their data being shared, for which purpose
 * ("direct_care", "research", or any name of [a-z0-9_-], 1..64).
 *
 * Two layers: the entries of a file named in the config (top-level
 * `objections = { file = "..."; };`, read again at each reload), and the
 * changes made at run time (admin API, hl7ctl objection), kept in the
 * store's meta database and laid over the file: an added objection holds
 * whatever the file says; a removed one hides the file's entry.
 *
 * The daemon holds one register for its lifetime; every router built from
 * a config shares it (reference counted), so a change made at run time is
 * seen by the next message routed. Lookups and changes take a lock: safe
 * from any thread.
 *
 * The file: one "nhs_number,purpose" per line (LF or CRLF); blank lines
 * and lines starting with # are skipped; a first line "nhs_number,purpose"
 * is a header. Spaces inside the NHS number are removed ("943 476 5919");
 * it must then pass the modulus 11 check. A line that does not parse is
 * an error "FILE:LINE: what" and the whole file is refused. The same
 * entry twice is kept once.
 */
#ifndef HL7BROKER_OBJECTIONS_H
#define HL7BROKER_OBJECTIONS_H

#include <stdbool.h>
#include <stddef.h>

#define OBJECTIONS_PURPOSE_MAX 64
#define OBJECTIONS_FILE_MAX ((size_t)1 << 30)   /* a bigger file is refused */

struct objections;        /* the shared register */
struct objections_set;    /* a file's entries, read but not yet in use */

struct objections *objections_new(void);                  /* NULL: out of memory */
struct objections *objections_ref(struct objections *o);  /* returns o */
void objections_unref(struct objections *o);              /* NULL allowed */

/* A purpose name: [a-z0-9_-], 1..64 characters. */
bool objections_purpose_valid(const char *p);

/* s (len bytes) without its spaces into out: 0 when it is then a valid
 * NHS number, else -1 with why (a static string). */
int objections_nhs_normalise(const char *s, size_t len, char out[11], const char **why);

/* Parse text as the file path (for errors) / read and parse the file.
 * Returns 0, or -1 with err "PATH:LINE: what" (or "PATH: what"). */
int  objections_set_parse(const char *text, size_t len, const char *path,
                          struct objections_set **out, char *err, size_t errlen);
int  objections_set_read(const char *path, struct objections_set **out, char *err, size_t errlen);
void objections_set_free(struct objections_set *s);
size_t objections_set_count(const struct objections_set *s);

/* Put s (owned from now on; NULL: an empty file) in place of the file
 * entries in use. The run-time changes stay. */
void objections_install(struct objections *o, struct objections_set *s);

/* A run-time change: objected true adds, false removes. nhs must be a
 * normalised valid number and purpose valid. Returns 0, or -1 (out of
 * memory). Whether it changed anything: *changed (may be NULL). */
int objections_change(struct objections *o, const char *nhs, const char *purpose,
                      bool objected, bool *changed);

/* Did nhs (len bytes, spaces allowed) object for purpose? */
bool objections_has(struct objections *o, const char *nhs, size_t len, const char *purpose);

/* Every objection in force (purpose NULL: all), ordered by purpose then
 * number; from_file: it comes from the file (not a run-time addition).
 * Stops when fn returns non-zero and returns that. */
typedef int (*objections_fn)(void *ctx, const char *nhs, const char *purpose, bool from_file);
int objections_each(struct objections *o, const char *purpose, objections_fn fn, void *ctx);

#endif
