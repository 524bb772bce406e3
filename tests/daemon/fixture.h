/*
 * fixture.h - a struct vendd for daemon tests: a real database, a real loop, a pinned
 * clock, no broker (v.mqtt NULL) and the default config (v.conf = &conf). Every helper
 * asserts with cmocka.
 *
 * The database is a fresh SQLite file in a mkdtemp directory ($TMPDIR or /tmp), or, when
 * VEND_TEST_DB=pg, a fresh database on the private PostgreSQL server whose URL is the url=
 * line of the file VEND_PG_STATE names (tests/support/pgcluster; CTest sets both for the
 * *_pg registrations). Each PostgreSQL database is a copy of one migrated template per
 * process, so a test starts from the same empty schema as on SQLite. The directory exists
 * in both modes, for the files a test writes itself.
 */
#ifndef VEND_TEST_DAEMON_FIXTURE_H
#define VEND_TEST_DAEMON_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "db.h"
#include "vendd.h"

struct dfx {
    struct vendd v;
    struct vendd_conf conf; /* the defaults (docs/CONFIG.md), v.conf unless a test sets its own */
    char dir[256];
    char url[1024];  /* what db_open was given: a second connection opens the same */
    char pgname[64]; /* PostgreSQL: this test's database, dropped by dfx_close */
    int pgextra;     /* PostgreSQL: databases of dfx_empty_url, dropped by dfx_close */
};

/* True when the fixture runs on PostgreSQL (VEND_TEST_DB=pg). */
bool dfx_pg(void);

/* The pinned clock: v.now_ms (and, unless a test sets its own, v.mono_ms) of every fixture
 * reads it. */
void dfx_clock_set(int64_t epoch_ms);
int64_t dfx_clock_ms(void);

/* Create the directory and database (migrated) and the loop. */
void dfx_open(struct dfx *f);
/* The URL of another database of the fixture's backend, empty and not migrated (SQLite: the
 * file name in f->dir; PostgreSQL: a new database that dfx_close drops). */
void dfx_empty_url(struct dfx *f, const char *name, char *buf, size_t size);
/* Close everything and remove the directory with its files. */
void dfx_close(struct dfx *f);

/* Run one statement without parameters; asserts success. Returns rows changed. */
int dfx_sql(struct db *db, const char *sql);
/* First column of the first row, asserted present and non-NULL. */
int64_t dfx_int(struct db *db, const char *sql);
/* Same for text, into buf; "(null)" for NULL, asserts a row exists. */
void dfx_text(struct db *db, const char *sql, char *buf, size_t size);
/* How long this connection waits for another's write lock (SQLite's busy timeout,
 * PostgreSQL's lock_timeout); both backends default to 5 s. */
void dfx_busy_ms(struct db *db, int ms);
/* on: this connection stops enforcing foreign keys (and, on SQLite, CHECKs), to write the
 * rows only a damaged database holds. On PostgreSQL this is session_replication_role
 * replica, which also stops the schema's triggers (events, sales rollup) until off. */
void dfx_unchecked(struct db *db, bool on);
/* The first column of every row, joined by sep, NULLs left out (SQLite's group_concat,
 * PostgreSQL's string_agg, in the order the query gives); "" for no row. */
void dfx_join(struct db *db, const char *sql, const char *sep, char *buf, size_t size);
/* Every column of the first row, joined by ' ': NULL as '-', a REAL as "%.2f" (both
 * backends print reals differently), the rest as the backend's text. Asserts a row. */
void dfx_row(struct db *db, const char *sql, char *buf, size_t size);
/* Every row of the domain tables as one JSON string (malloc'd): equal snapshots mean
 * nothing changed. */
char *dfx_snapshot(struct db *db);

#endif
