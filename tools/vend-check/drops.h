/*
 * drops.h - the simulated machines' record of physical drops (vmsim --drop-log), checked
 * against the database: SPEC §4 rule 1, at most one physical dispense per ordered unit.
 *
 * The file holds one line per event, fields separated by one space, appended by every vmsim
 * process that was given it:
 *
 *   start TIME MACHINE                  a simulated machine came up (its drops are all here
 *                                       from TIME on)
 *   drop TIME MACHINE ORDER UNIT SLOT   a product left slot SLOT of MACHINE while it ran the
 *                                       command for ORDER's UNIT (0: the command had no
 *                                       "unit", the same as 1)
 *
 * TIME is ISO 8601 UTC with milliseconds, the machine's wall clock.
 */
#ifndef VEND_CHECK_DROPS_H
#define VEND_CHECK_DROPS_H

#include <stddef.h>

#include "invariants.h"

struct db;
struct drops;

/* Read path (before any database work, so a bad file is an error, not half a report).
 * Returns VEND_OK with *out, or VEND_EIO with err naming the file, the line and the fault. */
int drops_load(struct drops **out, const char *path, char *err, size_t errlen);
/* NULL is fine. */
void drops_free(struct drops *ds);

/*
 * Check ds against db (inside the caller's snapshot): a unit dropped twice (double_drop); a
 * drop whose unit vendd does not count as dropped once final, or that belongs to another
 * machine or slot (drop_without_unit); a unit vendd counts as dropped on a machine of the
 * file, sent after that machine started, with no drop (unit_without_drop). Returns VEND_OK,
 * or a VEND_E* from the database.
 */
int drops_check(struct db *db, struct drops *ds, struct report *r);

#endif
