/*
 * invariants.h - SPEC §4's promises, checked on a database as it stands (read-only): what
 * vend-check(1) runs. Each check reads one consistent snapshot (the caller's read-only
 * transaction) and reports one line per violation, "INVARIANT SUBJECT: DETAIL", where
 * INVARIANT is one of the names below and SUBJECT names the order, unit, slot, alert or
 * notification. Only contradictions that are certain are reported: a database a healthy
 * vendd left behind, however it was interrupted, passes.
 */
#ifndef VEND_CHECK_INVARIANTS_H
#define VEND_CHECK_INVARIANTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct db;

/* Where violations go, and how many there were. */
struct report {
    FILE *out;
    long violations;
};

/* One violation line: "name subject: detail". */
void report_violation(struct report *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

struct check_opts {
    /* The checker's "now" and how late a deadline may be acted on (a sweep's timer, a
     * deadline clock that is not the wall clock): deadlines before now - slack count. */
    int64_t now_ms;
    int64_t slack_ms;
    /* vendd's LOW_STOCK_PERCENT; 0: the LOW_STOCK alerts are not checked. */
    int low_stock_percent;
};

/*
 * Every check on db (see vend-check(1) for what each means): violations go to r.
 * Returns VEND_OK when the checks ran (whatever they found), or a VEND_E* when the database
 * could not be read (db_errmsg() tells why).
 */
int invariants_check(struct db *db, const struct check_opts *o, struct report *r);

#endif
