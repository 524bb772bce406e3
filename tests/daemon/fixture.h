/*
 * fixture.h - a struct vendd for daemon tests: a real SQLite database in a fresh
 * mkdtemp directory ($TMPDIR or /tmp), a real loop, a pinned clock, no broker
 * (v.mqtt NULL) and the default config (v.conf = &conf). Every helper asserts with cmocka.
 */
#ifndef VEND_TEST_DAEMON_FIXTURE_H
#define VEND_TEST_DAEMON_FIXTURE_H

#include <stdint.h>

#include "conf.h"
#include "db.h"
#include "vendd.h"

struct dfx {
    struct vendd v;
    struct vendd_conf conf; /* the defaults (docs/CONFIG.md), v.conf unless a test sets its own */
    char dir[256];
    char url[320];
};

/* The pinned clock: v.now_ms (and, unless a test sets its own, v.mono_ms) of every fixture
 * reads it. */
void dfx_clock_set(int64_t epoch_ms);
int64_t dfx_clock_ms(void);

/* Create the directory and database (migrated) and the loop. */
void dfx_open(struct dfx *f);
/* Close everything and remove the directory with its files. */
void dfx_close(struct dfx *f);

/* Run one statement without parameters; asserts success. Returns rows changed. */
int dfx_sql(struct db *db, const char *sql);
/* First column of the first row, asserted present and non-NULL. */
int64_t dfx_int(struct db *db, const char *sql);
/* Same for text, into buf; "(null)" for NULL, asserts a row exists. */
void dfx_text(struct db *db, const char *sql, char *buf, size_t size);
/* Every row of the domain tables as one JSON string (malloc'd): equal snapshots mean
 * nothing changed. */
char *dfx_snapshot(struct db *db);

#endif
