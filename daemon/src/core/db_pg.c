/*
 * db_pg.c - the PostgreSQL backend of db.h (URL "postgres://..." or "postgresql://...",
 * handed to libpq as a connection URI).
 *
 * One connection, used from the event loop thread only. The SQL of db.h already uses
 * PostgreSQL's $1..$n; it is checked here the way db_sqlite.c checks it (each of $1..$n used,
 * nothing else, one statement) and prepared once per text and parameter types.
 *
 * Where PostgreSQL differs from what the daemon was written against (SQLite), this file
 * restores SQLite's behaviour:
 *  - a failing statement inside a transaction fails alone: each runs under a savepoint, so
 *    code that takes VEND_ECONFLICT and goes on (payments.c) can go on; the savepoint, the
 *    statement and the release go in one round trip (libpq's pipeline mode, run());
 *  - db_begin() takes one write lock for the whole database (an advisory lock held to the
 *    end of the transaction), as BEGIN IMMEDIATE does: transactions that write are serialized,
 *    so the compare-and-set reasoning of the domain holds unchanged;
 *  - a lock waited for longer than LOCK_TIMEOUT_MS is VEND_EBUSY, as SQLite's busy timeout;
 *  - booleans (the value of a comparison) read as 1/0.
 * Results are read whole before the row callback runs, so a callback may run any statement.
 *
 * The server may go away (a restart, a failover): what needs it then fails as VEND_EBUSY, as
 * a locked SQLite does, so the callers' retries (results, sweeps, refunds) and HTTP's 503
 * apply. The next use outside a transaction connects again (at most once per backoff, 100 ms
 * doubling to 5 s) and prepares its statements anew; a transaction that was open when the
 * connection went is never continued on a new one: it fails to its end.
 *
 * The server may also hang (stopped, a frozen host, a network black hole), and the event loop
 * runs every statement to its end, so no wait here is unbounded:
 *  - a statement is sent asynchronously on a non-blocking socket and its answer polled for at
 *    most QUERY_DEADLINE_MS (6 s: the lock timeout and a second, so a wait for the write lock
 *    still ends with the server's own answer). Past it the connection is given up: its socket
 *    is shut and it counts as lost (VEND_EBUSY), so every later statement fails at once until
 *    a reconnect succeeds: a hung server costs one deadline, not one per statement.
 *  - no PQcancel: libpq 15's connects and waits for the server without a limit, and a server
 *    that did not answer the statement would not answer the cancel either. The shut socket is
 *    the cancel: the server ends the session when it next reads from it, and a statement still
 *    running within a second (client_connection_check_interval, PostgreSQL 14 and later).
 *  - a reconnect is PQresetStart/PQresetPoll: an attempt waits at most RECONNECT_WAIT_MS
 *    (0.5 s) at its first use, is carried on without waiting by later uses, and ends at
 *    connect_timeout (5 s unless the URL says); attempts come at most once per backoff.
 * Worst case for the loop: one QUERY_DEADLINE_MS when the server stops answering (once more
 * if it hangs again right after a reconnect), then RECONNECT_WAIT_MS per attempt, every
 * connect_timeout plus backoff (about 10 s) while it stays hung. Not bounded here: a host
 * name's lookup in PQresetStart (libpq resolves synchronously; an address in the URL avoids
 * it), the first connect at start (before the loop serves), migrations (no deadline: a long
 * one may take its time, before the loop serves) and read-only checkers (vend-check).
 */
#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "db.h"
#include "db_backend.h"
#include "log.h"
#include "vend/err.h"
#include "xmalloc.h"

#define CACHE_BUCKETS 256
#define CACHE_MAX     512
#define URL_MAX_LEN   4096
#define STR_(x)       #x
#define STR(x)        STR_(x)
/* SQLite's busy timeout (db_sqlite.c): a lock waited for longer is VEND_EBUSY. */
#define LOCK_TIMEOUT_MS 5000
/* The longest the loop waits for the server's answer to one statement before taking the
 * server for hung (stopped, frozen, behind a network black hole) and giving the connection
 * up: the lock timeout and a second, so that a wait for the write lock ends with the server's
 * own answer (55P03: VEND_EBUSY, the connection kept), not with this. */
#define QUERY_DEADLINE_MS (LOCK_TIMEOUT_MS + 1000)
/* A reconnect attempt holds the loop this long at most, once; later uses carry it on without
 * waiting, until connect_timeout. A server nearby answers in milliseconds; a hung one never,
 * so this is what each attempt costs the loop then. */
#define RECONNECT_WAIT_MS 500
/* Connecting: the whole attempt (the URL's connect_timeout wins; 0 there is this too). */
#define CONNECT_TIMEOUT_S "5"
#define CONNECT_MAX_S     3600
/* How often the server looks for its client during a statement (PostgreSQL 14 and later):
 * a statement given up at the deadline ends within this once the server runs again. */
#define CLIENT_CHECK_INTERVAL "'1s'"
/* The claims of db_claim_instance(), session advisory locks with two int4 keys (a key space of
 * their own, apart from WRITE_LOCK_KEY's bigint): (CLAIM_KEY, 0) exclusive for the only
 * vendd, shared by the instances of a group; (CLAIM_KEY_ID, hash of the client id) exclusive
 * for each instance. "vend" and "venE" in ASCII. */
#define CLAIM_KEY    "1986358884"
#define CLAIM_KEY_ID "1986358853"
/* The server ends a session of ours idle inside a transaction this long (session_setup()). */
#define IDLE_IN_TRANSACTION_MS 5000
/* Reconnect attempts after the connection is lost: the first at once, then this far apart,
 * doubling. */
#define RECONNECT_FIRST_MS 100
#define RECONNECT_MAX_MS   5000
/* The advisory lock db_begin() takes: any constant, the same in every vendd ("vend" in ASCII). */
#define WRITE_LOCK_KEY "1986358884"
#define BEGIN_WRITE    "BEGIN; SELECT pg_advisory_xact_lock(" WRITE_LOCK_KEY ")"
/* PostgreSQL's type OIDs (catalog/pg_type.h, stable across versions). */
#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700

struct cached_stmt {
    struct cached_stmt *next;
    char *sql;
    uint32_t hash;
    size_t nparams;
    Oid types[DB_MAX_PARAMS];
    bool control; /* BEGIN, SAVEPOINT and the like: never under the statement's savepoint */
    char name[16];
};

struct pg_state {
    PGconn *conn;
    struct cached_stmt *buckets[CACHE_BUCKETS];
    size_t ncached;
    unsigned int next_name;
    bool warned_full;
    uint64_t changes; /* rows changed through this connection */
    bool tx;          /* pg_begin() opened a transaction that has not ended for the caller */
    bool lost;        /* the connection went away and is not back yet */
    bool abandoned;   /* given up at a deadline: its socket is shut, nothing more is sent */
    bool connecting;  /* a reconnect attempt is under way (PQresetStart) */
    PostgresPollingStatusType polling; /* where that attempt is */
    int64_t lost_at_ms, retry_at_ms, backoff_ms, attempt_end_ms;
    int connect_timeout_ms;
    /* db_claim_instance(): the advisory locks this session holds, taken again by a reconnect
     * (SQL ready to run; empty when no claim). */
    char claim_sql[160];
};

/* What a row callback reads: one row of a result held whole. */
struct pg_cursor {
    PGresult *res;
    int row;
};

static struct pg_state *state(struct db *db)
{
    return db->be;
}

/* SQLSTATE classes and codes (PostgreSQL manual, appendix A) mapped to db.h's contract. */
static int code_of(const char *sqlstate)
{
    static const struct {
        const char *code;
        int rc;
    } exact[] = {
        {"23505", VEND_ECONFLICT}, /* unique_violation */
        {"40001", VEND_EBUSY},     /* serialization_failure */
        {"40P01", VEND_EBUSY},     /* deadlock_detected */
        {"55P03", VEND_EBUSY},     /* lock_not_available (lock_timeout) */
        {"57P01", VEND_EBUSY},     /* admin_shutdown: the server stops */
        {"57P02", VEND_EBUSY},     /* crash_shutdown */
        {"57P03", VEND_EBUSY},     /* cannot_connect_now: the server starts */
        {"53200", VEND_ENOMEM},    /* out_of_memory */
        {"54000", VEND_ETOOBIG},   /* program_limit_exceeded */
        {"54001", VEND_ETOOBIG},   /* statement_too_complex */
        {"XX001", VEND_ECORRUPT},  /* data_corrupted */
        {"XX002", VEND_ECORRUPT},  /* index_corrupted */
    };

    if (sqlstate == NULL)
        return VEND_EDB; /* no answer from the server: the connection */
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (strcmp(sqlstate, exact[i].code) == 0)
            return exact[i].rc;
    }
    if (strncmp(sqlstate, "23", 2) == 0)
        return VEND_ECONSTRAINT; /* CHECK, FOREIGN KEY, NOT NULL, exclusion */
    if (strncmp(sqlstate, "08", 2) == 0)
        return VEND_EBUSY; /* connection exception */
    return VEND_EDB;
}

/* Records the detail of a failed result (res may be NULL: the connection's message) and maps
 * it. what names the statement. */
static int fail(struct db *db, const PGresult *res, const char *what)
{
    struct pg_state *st = state(db);
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *code = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    size_t len;

    if (msg == NULL)
        msg = st != NULL && st->conn != NULL ? PQerrorMessage(st->conn) : "no connection";
    len = strcspn(msg, "\n"); /* libpq's own messages end in a newline */
    db_set_error(db, "'%.80s': %.*s%s%s (SQLSTATE %s)", what, (int)len, msg,
                 detail != NULL ? ": " : "", detail != NULL ? detail : "",
                 code != NULL ? code : "none");
    /* The server is gone: busy until it is back, whatever the statement said. */
    if (st != NULL && st->conn != NULL && PQstatus(st->conn) == CONNECTION_BAD)
        return VEND_EBUSY;
    return code_of(code);
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until conn's socket is ready for events or end_ms (on mono_ms()) passes; end_ms < 0
 * waits without limit, a passed end_ms looks once. 1 ready, 0 timed out, -1 error. */
static int wait_socket(PGconn *conn, short events, int64_t end_ms)
{
    struct pollfd p = {.fd = PQsocket(conn), .events = events};

    if (p.fd < 0)
        return -1;
    for (;;) {
        int timeout = -1;
        int n;

        if (end_ms >= 0) {
            int64_t left = end_ms - mono_ms();
            timeout = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
        }
        n = poll(&p, 1, timeout);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* The server did not answer in waited_ms (0: libpq refused to go on with the connection): the
 * connection is given up. Its socket is shut now, so the server ends the session (and what it
 * holds, the write lock) as soon as it runs again; the reconnect below makes a new one. No
 * PQcancel: libpq 15's connects and waits for the
 * server with no limit, and a server that did not answer the statement would not answer the
 * cancel either; a statement still running is ended by the server's own look for its client
 * (CLIENT_CHECK_INTERVAL). */
static int give_up(struct db *db, const char *what, int waited_ms)
{
    struct pg_state *st = state(db);
    int fd = PQsocket(st->conn);

    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    st->abandoned = true;
    if (waited_ms > 0)
        db_set_error(db, "'%.80s': no answer from PostgreSQL in %d ms (server hung or unreachable)",
                     what, waited_ms);
    else
        db_set_error(db, "'%.80s': the connection to PostgreSQL is out of step: %.*s", what,
                     (int)strcspn(PQerrorMessage(st->conn), "\n"), PQerrorMessage(st->conn));
    if (!st->lost) {
        st->lost = true;
        st->lost_at_ms = mono_ms();
        st->retry_at_ms = st->lost_at_ms;
        st->backoff_ms = 0;
        log_warnx("database: %s; connection given up, reconnecting", db->errmsg);
    }
    return VEND_EBUSY;
}

/* When a wait of deadline_ms from now ends on mono_ms(); -1: never. A checker
 * (db_open_readonly(): vend-check) has no loop to keep going, and may read a large database
 * in a few long statements: no deadline. */
static int64_t deadline_end(const struct db *db, int deadline_ms)
{
    return deadline_ms < 0 || db->readonly ? -1 : mono_ms() + deadline_ms;
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType s = PQresultStatus(res);

    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

/*
 * Waits for the whole answer to what was just sent, at most deadline_ms (< 0: no limit):
 * *out gets the first failed result, else the last one (NULL if none). VEND_OK, or VEND_EBUSY
 * when the deadline passed (the connection is then given up). The socket is non-blocking, so
 * neither sending nor reading waits past the deadline.
 */
static int await(struct db *db, const char *what, int deadline_ms, PGresult **out)
{
    PGconn *c = state(db)->conn;
    PGresult *keep = NULL;
    int64_t end = deadline_end(db, deadline_ms);

    *out = NULL;
    /* A broken connection leaves the loops: PQgetResult() then reports it without waiting. */
    while (PQflush(c) > 0 && PQstatus(c) != CONNECTION_BAD) {
        if (wait_socket(c, POLLIN | POLLOUT, end) <= 0)
            goto late;
        PQconsumeInput(c);
    }
    for (;;) {
        PGresult *res;

        while (PQisBusy(c) && PQstatus(c) != CONNECTION_BAD) {
            if (wait_socket(c, POLLIN, end) <= 0)
                goto late;
            PQconsumeInput(c);
        }
        res = PQgetResult(c);
        if (res == NULL)
            break;
        if (keep != NULL && !result_ok(keep)) {
            PQclear(res);
        } else {
            PQclear(keep);
            keep = res;
        }
    }
    *out = keep;
    return VEND_OK;
late:
    PQclear(keep);
    return give_up(db, what, deadline_ms);
}

static uint32_t hash_sql(const char *s, const Oid *types, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    for (size_t i = 0; i < n; i++) {
        h ^= (uint32_t)types[i];
        h *= 16777619u;
    }
    return h;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9');
}

/* Past a quoted string or identifier starting at s (the quote); at the end if unterminated
 * (the server then reports it). A doubled quote is part of the text. */
static const char *skip_quoted(const char *s)
{
    char q = *s++;

    for (; *s != '\0'; s++) {
        if (*s == q) {
            if (s[1] != q)
                return s + 1;
            s++;
        }
    }
    return s;
}

/* Past a comment starting at s ("--" or slash-star), or s itself when none starts there. */
static const char *skip_comment(const char *s)
{
    if (s[0] == '-' && s[1] == '-')
        return s + strcspn(s, "\n");
    if (s[0] == '/' && s[1] == '*') {
        const char *end = strstr(s + 2, "*/");
        return end != NULL ? end + 2 : s + strlen(s);
    }
    return s;
}

/*
 * Checks sql as db_sqlite.c does, outside quotes and comments: placeholders exactly $1..$n,
 * each used; no other parameter syntax ("?", ":name", "@name"); one statement. Sets *control
 * for the statements that open or end transactions and savepoints.
 */
static int scan_sql(struct db *db, const char *sql, size_t nparams, bool *control)
{
    static const char *const controls[] = {"BEGIN",    "START", "COMMIT",    "END",
                                           "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"};
    bool used[DB_MAX_PARAMS] = {false};
    const char *first = NULL;
    bool ended = false; /* a ';' was seen */
    const char *s = sql;

    while (*s != '\0') {
        const char *past = skip_comment(s);
        if (past != s) {
            s = past;
            continue;
        }
        if (is_space(*s)) {
            s++;
            continue;
        }
        if (*s == ';') {
            ended = true;
            s++;
            continue;
        }
        if (ended) {
            db_set_error(db, "db_exec takes exactly one statement: '%.80s'", sql);
            return VEND_EINVAL;
        }
        if (first == NULL)
            first = s;
        if (*s == '\'' || *s == '"') {
            s = skip_quoted(s);
            continue;
        }
        if (*s == '$') {
            char *end = NULL;
            long v = -1;
            if (s[1] >= '0' && s[1] <= '9') {
                errno = 0;
                v = strtol(s + 1, &end, 10);
                if (errno != 0)
                    v = -1;
            }
            if (v < 1 || (unsigned long)v > nparams) {
                db_set_error(db, "sql parameter '%.*s' is not one of $1..$%zu: '%.80s'",
                             end != NULL ? (int)(end - s) : 2, s, nparams, sql);
                return VEND_EINVAL;
            }
            used[v - 1] = true;
            s = end;
            continue;
        }
        if (*s == '?' ||
            ((*s == ':' || *s == '@') && is_ident(s[1]) && (s == sql || s[-1] != ':'))) {
            db_set_error(db, "sql parameter '%.2s' is not one of $1..$%zu: '%.80s'", s, nparams,
                         sql);
            return VEND_EINVAL;
        }
        s++;
    }
    if (first == NULL) {
        db_set_error(db, "db_exec takes exactly one statement, got none: '%.80s'", sql);
        return VEND_EINVAL;
    }
    for (size_t i = 0; i < nparams; i++) {
        if (!used[i]) {
            db_set_error(db, "parameter $%zu is not used by '%.80s'", i + 1, sql);
            return VEND_EINVAL;
        }
    }
    *control = false;
    for (size_t i = 0; i < sizeof(controls) / sizeof(controls[0]); i++) {
        size_t len = strlen(controls[i]);
        if (strncasecmp(first, controls[i], len) == 0 && !is_ident(first[len]))
            *control = true;
    }
    return VEND_OK;
}

/* The parameter types the statement is prepared with: integers and reals as themselves, so
 * "$1 + 1000" is 64-bit arithmetic; text and NULL unknown, so the server infers the column's
 * type (a NULL then binds to any column, as in SQLite). */
static void types_of(const struct db_value *params, size_t nparams, Oid *types)
{
    for (size_t i = 0; i < nparams; i++) {
        switch (params[i].type) {
        case DB_T_INT:
            types[i] = OID_INT8;
            break;
        case DB_T_REAL:
            types[i] = OID_FLOAT8;
            break;
        default:
            types[i] = 0;
            break;
        }
    }
}

/* Finds the statement in the cache (*entry), or checks its text for stmt_new() (*entry
 * NULL). types gets the parameter types and *hash the key. */
static int stmt_find(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
                     Oid *types, uint32_t *hash, struct cached_stmt **entry, bool *control)
{
    struct pg_state *st = state(db);
    struct cached_stmt *e;

    *entry = NULL;
    types_of(params, nparams, types);
    *hash = hash_sql(sql, types, nparams);
    for (e = st->buckets[*hash % CACHE_BUCKETS]; e != NULL; e = e->next) {
        if (e->hash == *hash && e->nparams == nparams && strcmp(e->sql, sql) == 0 &&
            memcmp(e->types, types, nparams * sizeof(Oid)) == 0) {
            *entry = e;
            *control = e->control;
            return VEND_OK;
        }
    }
    return scan_sql(db, sql, nparams, control);
}

/* A cache entry for a statement stmt_find() did not have, to be prepared (stmt_keep() then
 * caches it); NULL when the cache is full (the statement runs unnamed, parsed each time). */
static struct cached_stmt *stmt_new(struct db *db, const char *sql, const Oid *types,
                                    size_t nparams, uint32_t hash, bool control)
{
    struct pg_state *st = state(db);
    struct cached_stmt *e;

    if (st->ncached >= CACHE_MAX) {
        if (!st->warned_full) {
            log_warnx("PostgreSQL statement cache full at %d entries; preparing each time",
                      CACHE_MAX);
            st->warned_full = true;
        }
        return NULL;
    }
    e = xcalloc(1, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "vend_%u", st->next_name++);
    e->sql = xstrdup(sql);
    e->hash = hash;
    e->nparams = nparams;
    memcpy(e->types, types, nparams * sizeof(Oid));
    e->control = control;
    return e;
}

/* The server prepared e: cached from now on. */
static void stmt_keep(struct pg_state *st, struct cached_stmt *e)
{
    struct cached_stmt **slot = &st->buckets[e->hash % CACHE_BUCKETS];

    e->next = *slot;
    *slot = e;
    st->ncached++;
}

static void stmt_free(struct cached_stmt *e)
{
    if (e != NULL)
        free(e->sql);
    free(e);
}

/*
 * The answers to n commands sent in pipeline mode and their sync, at most deadline_ms in
 * all: res[i] gets command i's first failed result, else its last (NULL: none). VEND_OK with
 * pipeline mode left, or VEND_EBUSY when the deadline passed (the connection is given up).
 */
static int await_pipeline(struct db *db, const char *what, PGresult **res, int n)
{
    PGconn *c = state(db)->conn;
    int64_t end = deadline_end(db, QUERY_DEADLINE_MS);
    PGresult *r;

    while (PQflush(c) > 0 && PQstatus(c) != CONNECTION_BAD) {
        if (wait_socket(c, POLLIN | POLLOUT, end) <= 0)
            goto late;
        PQconsumeInput(c);
    }
    /* Each command's results end with a NULL; then comes the sync. */
    for (int i = 0; i <= n; i++) {
        for (;;) {
            while (PQisBusy(c) && PQstatus(c) != CONNECTION_BAD) {
                if (wait_socket(c, POLLIN, end) <= 0)
                    goto late;
                PQconsumeInput(c);
            }
            if (PQstatus(c) == CONNECTION_BAD)
                goto done;
            r = PQgetResult(c);
            if (r == NULL || i == n) {
                PQclear(r); /* the sync */
                break;
            }
            if (res[i] != NULL && !result_ok(res[i])) {
                PQclear(r);
            } else {
                PQclear(res[i]);
                res[i] = r;
            }
        }
    }
done:
    /* A broken connection: the results in hand say so (fail(): VEND_EBUSY), and the reconnect
     * leaves pipeline mode. */
    if (PQexitPipelineMode(c) || PQstatus(c) == CONNECTION_BAD)
        return VEND_OK;
    return give_up(db, what, 0);
late:
    give_up(db, what, QUERY_DEADLINE_MS);
    return VEND_EBUSY;
}

/* Text of one parameter into buf (for integers and reals), or its own text. */
static int value_text(struct db *db, const struct db_value *v, size_t idx, char *buf, size_t size,
                      const char **out)
{
    switch (v->type) {
    case DB_T_NULL:
        *out = NULL;
        return VEND_OK;
    case DB_T_INT:
        snprintf(buf, size, "%lld", (long long)v->i);
        *out = buf;
        return VEND_OK;
    case DB_T_REAL:
        if (isnan(v->r))
            snprintf(buf, size, "NaN");
        else if (isinf(v->r))
            snprintf(buf, size, "%sInfinity", v->r < 0 ? "-" : "");
        else
            snprintf(buf, size, "%.17g", v->r);
        *out = buf;
        return VEND_OK;
    case DB_T_TEXT:
        *out = v->s;
        return VEND_OK;
    default:
        db_set_error(db, "parameter $%zu has unknown type %d", idx + 1, (int)v->type);
        return VEND_EINVAL;
    }
}

/* A statement without parameters or rows (savepoints, transaction control, settings). */
static int simple(struct db *db, const char *sql)
{
    struct pg_state *st = state(db);
    PGresult *res;
    int rc;

    if (st->abandoned)
        return VEND_EBUSY; /* the error that gave it up stays */
    if (!PQsendQuery(st->conn, sql))
        return fail(db, NULL, sql);
    rc = await(db, sql, QUERY_DEADLINE_MS, &res);
    if (rc == VEND_OK && !result_ok(res))
        rc = fail(db, res, sql);
    PQclear(res);
    return rc;
}

/* Rows changed, as SQLite counts them: INSERT, UPDATE, DELETE (RETURNING or not); 0 else. */
static int changed_rows(const PGresult *res)
{
    static const char *const verbs[] = {"INSERT ", "UPDATE ", "DELETE ", "MERGE "};
    const char *status = PQcmdStatus((PGresult *)res);
    const char *n = PQcmdTuples((PGresult *)res);

    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (strncmp(status, verbs[i], strlen(verbs[i])) == 0 && n[0] != '\0')
            return (int)strtol(n, NULL, 10);
    }
    return 0;
}

/*
 * Runs the statement and returns its result whole (or the error, mapped), in one round trip
 * (pipeline mode): its PREPARE first when it is new (fresh, then cached), and inside a
 * transaction (wrap) between SAVEPOINT vend_stmt and its RELEASE, so that it fails alone as
 * in SQLite (a failed PREPARE too). A failure then costs a second round trip: the rollback to
 * the savepoint. Savepoint, statement, release one at a time were three round trips.
 */
static int run(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
               const struct cached_stmt *entry, struct cached_stmt *fresh, bool wrap,
               PGresult **out)
{
    static const char *const names[] = {"SAVEPOINT vend_stmt", "PREPARE", "the statement",
                                        "RELEASE SAVEPOINT vend_stmt"};
    struct pg_state *st = state(db);
    PGconn *c = st->conn;
    char nums[DB_MAX_PARAMS][32];
    const char *values[DB_MAX_PARAMS];
    Oid types[DB_MAX_PARAMS];
    /* Slots of res: 0 savepoint, 1 prepare, 2 statement, 3 release (unused ones NULL). */
    PGresult *res[4] = {NULL};
    int at[4], n = 0, bad = -1;
    const char *name = entry != NULL ? entry->name : fresh != NULL ? fresh->name : NULL;
    bool sent;
    int rc;

    *out = NULL;
    for (size_t i = 0; i < nparams; i++) {
        rc = value_text(db, &params[i], i, nums[i], sizeof(nums[i]), &values[i]);
        if (rc < 0)
            goto out;
    }
    rc = VEND_EBUSY;
    if (st->abandoned)
        goto out;
    types_of(params, nparams, types);
    sent = PQenterPipelineMode(c);
    for (int k = 0; k < 4; k++)
        at[k] = -1;
    if (sent && wrap) {
        at[0] = n++;
        sent = PQsendQueryParams(c, names[0], 0, NULL, NULL, NULL, NULL, 0);
    }
    if (sent && fresh != NULL) {
        at[1] = n++;
        sent = PQsendPrepare(c, fresh->name, sql, (int)nparams, types);
    }
    at[2] = n++;
    sent = sent &&
           (name != NULL ? PQsendQueryPrepared(c, name, (int)nparams, values, NULL, NULL, 0)
                         : PQsendQueryParams(c, sql, (int)nparams, types, values, NULL, NULL, 0));
    if (sent && wrap) {
        at[3] = n++;
        sent = PQsendQueryParams(c, names[3], 0, NULL, NULL, NULL, NULL, 0);
    }
    if (!sent || !PQpipelineSync(c)) {
        /* libpq refused: the connection broke (VEND_EBUSY) or is out of step (given up). */
        rc = PQstatus(c) == CONNECTION_BAD ? fail(db, NULL, sql) : give_up(db, sql, 0);
        goto out;
    }
    {
        PGresult *got[4] = {NULL};
        rc = await_pipeline(db, sql, got, n);
        for (int k = 0; k < 4; k++)
            res[k] = at[k] >= 0 ? got[at[k]] : NULL;
    }
    if (rc < 0)
        goto out;
    /* The first failure says why (the commands after it were skipped: PIPELINE_ABORTED). */
    for (int k = 0; k < 4 && bad < 0; k++) {
        if (at[k] >= 0 && !(k == 2 ? PQresultStatus(res[k]) == PGRES_COMMAND_OK ||
                                         PQresultStatus(res[k]) == PGRES_TUPLES_OK
                                   : PQresultStatus(res[k]) == PGRES_COMMAND_OK))
            bad = k;
    }
    /* Prepared is prepared, whatever came after (PREPARE is not undone by a rollback). */
    if (fresh != NULL && bad != 0 && bad != 1) {
        stmt_keep(st, fresh);
        fresh = NULL;
    }
    if (bad >= 0) {
        rc = fail(db, res[bad], bad == 1 || bad == 2 ? sql : names[bad]);
        /* Back to before the statement; a failed release leaves the transaction aborted: the
         * caller's rollback ends it. */
        if ((bad == 1 || bad == 2) && wrap) {
            char why[DB_ERRMSG_MAX];

            memcpy(why, db->errmsg, sizeof(why));
            if (simple(db, "ROLLBACK TO SAVEPOINT vend_stmt; RELEASE SAVEPOINT vend_stmt") < 0)
                log_debug("database: rollback to the statement's savepoint failed: %s", db->errmsg);
            memcpy(db->errmsg, why, sizeof(why)); /* the statement's error is the answer */
        }
        goto out;
    }
    *out = res[2];
    res[2] = NULL;
    rc = VEND_OK;
out:
    stmt_free(fresh); /* not prepared: not cached */
    for (int k = 0; k < 4; k++)
        PQclear(res[k]);
    return rc;
}

/* Frees every cached statement (a new session has none of them). */
static void cache_clear(struct pg_state *st)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cached_stmt *e = st->buckets[i];
        while (e != NULL) {
            struct cached_stmt *next = e->next;
            free(e->sql);
            free(e);
            e = next;
        }
        st->buckets[i] = NULL;
    }
    st->ncached = 0;
    st->warned_full = false;
}

/* Take the session's claim (claim_sql) if it has one: VEND_ECONFLICT when another holds it. */
static int claim_take(struct db *db)
{
    struct pg_state *st = state(db);
    PGresult *res;
    int rc;

    if (st->claim_sql[0] == '\0')
        return VEND_OK;
    if (!PQsendQuery(st->conn, st->claim_sql))
        return fail(db, NULL, "claim");
    rc = await(db, "claim", QUERY_DEADLINE_MS, &res);
    if (rc == VEND_OK && !result_ok(res))
        rc = fail(db, res, "claim");
    else if (rc == VEND_OK && (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0)) {
        db_set_error(db, "another vendd holds this database's claim");
        rc = VEND_ECONFLICT;
    }
    PQclear(res);
    return rc;
}

/* 32-bit FNV-1a of s, as a signed int4 key. */
static int32_t claim_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (int32_t)h;
}

static int pg_claim(struct db *db, const char *client_id, bool in_group)
{
    struct pg_state *st = state(db);
    int rc;

    if (in_group)
        snprintf(st->claim_sql, sizeof(st->claim_sql),
                 "SELECT pg_try_advisory_lock_shared(" CLAIM_KEY ", 0) AND "
                 "pg_try_advisory_lock(" CLAIM_KEY_ID ", %ld)",
                 (long)claim_hash(client_id));
    else
        snprintf(st->claim_sql, sizeof(st->claim_sql),
                 "SELECT pg_try_advisory_lock(" CLAIM_KEY ", 0)");
    rc = claim_take(db);
    if (rc == VEND_ECONFLICT && in_group)
        db_set_error(db,
                     "another vendd runs on this database as instance '%s', or one runs on "
                     "it without MQTT_SHARED_GROUP",
                     client_id);
    else if (rc == VEND_ECONFLICT)
        db_set_error(db, "another vendd runs on this database");
    return rc;
}

/* What the daemon assumes of a session; the server's defaults may differ per installation. */
static int session_setup(struct db *db)
{
    /* The server's defaults may differ per installation; these are what the daemon assumes. */
    int rc = simple(
        db,
        "SET lock_timeout = " STR(
            LOCK_TIMEOUT_MS) "; SET TIME ZONE 'UTC'; "
                             "SET client_encoding = 'UTF8'; SET standard_conforming_strings = on; "
                             "SET default_transaction_isolation = 'read committed'");

    if (rc == VEND_OK && db->readonly)
        rc = simple(db, "SET default_transaction_read_only = on");
    /* A vendd stopped inside a transaction (SIGSTOP, a frozen host, a network black hole)
     * would hold the write lock of every instance until the server's TCP keepalive noticed,
     * hours by default; vendd never leaves a transaction idle (each ends in its loop turn). */
    if (rc == VEND_OK && !db->readonly)
        rc = simple(db, "SET idle_in_transaction_session_timeout = " STR(IDLE_IN_TRANSACTION_MS));
    /* A statement given up at the deadline (give_up()) is ended by the server itself. */
    if (rc == VEND_OK && PQserverVersion(state(db)->conn) >= 140000)
        rc = simple(db, "SET client_connection_check_interval = " CLIENT_CHECK_INTERVAL);
    return rc;
}

/* The first sign that the connection is gone: logged once, until it is back. */
static void note_lost(struct db *db)
{
    struct pg_state *st = state(db);
    const char *msg = PQerrorMessage(st->conn);

    if (st->lost)
        return;
    st->lost = true;
    st->lost_at_ms = mono_ms();
    st->retry_at_ms = st->lost_at_ms;
    st->backoff_ms = 0;
    log_warnx("database connection to PostgreSQL lost: %.*s; reconnecting", (int)strcspn(msg, "\n"),
              msg);
}

/* The attempt failed (why: its message): the next one after the backoff, 100 ms doubling. */
static int attempt_failed(struct db *db, const char *why)
{
    struct pg_state *st = state(db);
    char copy[DB_ERRMSG_MAX];

    snprintf(copy, sizeof(copy), "%s", why); /* why may be db->errmsg */
    st->connecting = false;
    st->backoff_ms = st->backoff_ms == 0                     ? RECONNECT_FIRST_MS
                     : st->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                                                             : st->backoff_ms * 2;
    st->retry_at_ms = mono_ms() + st->backoff_ms;
    db_set_error(db, "cannot reconnect to PostgreSQL: %.*s; next attempt in %lld ms",
                 (int)strcspn(copy, "\n"), copy, (long long)st->backoff_ms);
    return VEND_EBUSY;
}

/* Carries the attempt on until it connects, fails or end_ms passes (a passed end_ms: as far
 * as it goes without waiting). 1 connected, 0 under way, -1 failed. */
static int attempt_poll(struct db *db, int64_t end_ms)
{
    struct pg_state *st = state(db);

    for (;;) {
        int w;

        if (st->polling == PGRES_POLLING_OK)
            return 1;
        if (st->polling == PGRES_POLLING_FAILED)
            return -1;
        w = wait_socket(st->conn, st->polling == PGRES_POLLING_READING ? POLLIN : POLLOUT, end_ms);
        if (w == 0 || (w < 0 && mono_ms() >= end_ms))
            return 0;
        /* No socket (between two hosts of the URL): libpq goes on by itself. */
        st->polling = PQresetPoll(st->conn);
    }
}

/*
 * VEND_OK when the connection can take a statement. When it is gone: inside a transaction
 * VEND_EBUSY (the server rolled it back; its rest must not run on a new session), outside one
 * a reconnect if the backoff allows, else VEND_EBUSY.
 *
 * A reconnect never holds the loop long: PQresetStart() and at most RECONNECT_WAIT_MS of
 * PQresetPoll() at the attempt's first use, then a look without waiting at each later use,
 * until connect_timeout ends the attempt. Everything fails at once with VEND_EBUSY meanwhile.
 */
static int conn_ready(struct db *db)
{
    struct pg_state *st = state(db);
    int64_t now, wait_end;
    int rc;

    if (PQstatus(st->conn) == CONNECTION_OK && !st->lost)
        return VEND_OK;
    note_lost(db);
    if (st->tx) {
        db_set_error(db, "the connection to PostgreSQL was lost inside a transaction; the server "
                         "rolled it back");
        return VEND_EBUSY;
    }
    now = mono_ms();
    wait_end = now;
    if (!st->connecting) {
        if (now < st->retry_at_ms) {
            db_set_error(db, "no connection to PostgreSQL for %lld ms; next attempt in %lld ms",
                         (long long)(now - st->lost_at_ms), (long long)(st->retry_at_ms - now));
            return VEND_EBUSY;
        }
        /* Closes the old socket (a given-up one too) and starts connecting. Note: a host name
         * is resolved here, synchronously (libpq); an address in the URL avoids it. */
        st->abandoned = false;
        st->connecting = true;
        st->attempt_end_ms = now + st->connect_timeout_ms;
        st->polling = PGRES_POLLING_WRITING;
        if (!PQresetStart(st->conn))
            return attempt_failed(db, PQerrorMessage(st->conn));
        wait_end = now + RECONNECT_WAIT_MS;
    }
    rc = attempt_poll(db, wait_end < st->attempt_end_ms ? wait_end : st->attempt_end_ms);
    if (rc == 0 && mono_ms() < st->attempt_end_ms) {
        db_set_error(db, "no connection to PostgreSQL for %lld ms; connecting",
                     (long long)(mono_ms() - st->lost_at_ms));
        return VEND_EBUSY;
    }
    if (rc == 0)
        return attempt_failed(db, "no answer within connect_timeout");
    if (rc < 0)
        return attempt_failed(db, PQerrorMessage(st->conn));
    st->connecting = false;
    /* Sending never waits for the server: await() bounds every wait. */
    /* A claim lost while away (another vendd took it) keeps this one off the database. */
    if (PQsetnonblocking(st->conn, 1) != 0 || session_setup(db) < 0 || claim_take(db) < 0)
        return attempt_failed(db, db->errmsg);
    /* The old session's prepared statements died with it. */
    cache_clear(st);
    st->lost = false;
    log_info("database connection to PostgreSQL restored after %lld ms",
             (long long)(mono_ms() - st->lost_at_ms));
    return VEND_OK;
}

static int pg_exec(struct db *db, const char *sql, const struct db_value *params, size_t nparams,
                   db_row_fn *fn, void *arg)
{
    struct pg_state *st = state(db);
    struct cached_stmt *entry = NULL;
    struct pg_cursor cur = {0};
    struct db_row row = {.ops = &db_backend_pg, .cur = &cur};
    Oid types[DB_MAX_PARAMS];
    uint32_t hash = 0;
    bool control = false;
    bool wrapped = false;
    int rc;

    for (size_t i = 0; i < nparams; i++) {
        if (params[i].type != DB_T_NULL && params[i].type != DB_T_INT &&
            params[i].type != DB_T_REAL && params[i].type != DB_T_TEXT) {
            db_set_error(db, "parameter $%zu has unknown type %d", i + 1, (int)params[i].type);
            return VEND_EINVAL;
        }
    }
    rc = conn_ready(db);
    if (rc < 0)
        return rc;
    rc = stmt_find(db, sql, params, nparams, types, &hash, &entry, &control);
    if (rc < 0)
        return rc;
    /* SQLite undoes a failed statement alone and the transaction goes on; PostgreSQL would
     * abort the whole transaction (a failed prepare too): run() wraps it in a savepoint. */
    wrapped = !control && PQtransactionStatus(st->conn) == PQTRANS_INTRANS;
    rc = run(db, sql, params, nparams, entry,
             entry == NULL ? stmt_new(db, sql, types, nparams, hash, control) : NULL, wrapped,
             &cur.res);
    if (rc < 0)
        goto out;
    rc = changed_rows(cur.res);
    st->changes += (uint64_t)rc;
    if (fn != NULL) {
        int nrows = PQntuples(cur.res);
        for (cur.row = 0; cur.row < nrows; cur.row++) {
            if (fn(arg, &row) != 0) {
                rc = 0; /* as SQLite: a stopped statement reports no changes */
                break;
            }
        }
    }
out:
    PQclear(cur.res);
    return rc;
}

static int pg_script(struct db *db, const char *sql)
{
    struct pg_state *st = state(db);
    PGresult *res;
    int rc = VEND_OK;

    rc = conn_ready(db);
    if (rc < 0)
        return rc;
    if (st->abandoned)
        return VEND_EBUSY;
    /* Several statements in one simple query: the server runs them in order and stops at the
     * first error, whose message comes last. Migrations only, before the loop serves: a long
     * one may take its time, so no deadline. */
    if (!PQsendQuery(st->conn, sql))
        return fail(db, NULL, "script");
    rc = await(db, "script", -1, &res);
    if (rc == VEND_OK && res != NULL && !result_ok(res))
        rc = fail(db, res, "script");
    PQclear(res);
    return rc;
}

static int pg_begin(struct db *db)
{
    struct pg_state *st = state(db);
    int rc;

    /* The caller starts anew: a transaction lost with a connection is over for it. */
    st->tx = false;
    rc = conn_ready(db);
    if (rc < 0)
        return rc;
    /* PostgreSQL only warns about a nested BEGIN; SQLite refuses it, and so does db.h. */
    if (PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        db_set_error(db, "'BEGIN': a transaction is already open");
        return VEND_EDB;
    }
    /* Read-only: one snapshot for every statement of the transaction, and no write lock. */
    if (db->readonly) {
        rc = simple(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        st->tx = rc == VEND_OK;
        return rc;
    }
    /* BEGIN IMMEDIATE: the write lock now, so a transaction never waits for it half-way; both
     * in one round trip. */
    rc = simple(db, BEGIN_WRITE);
    /* The server went away since the last statement (a restart while idle): a failed BEGIN
     * did nothing, so it may be tried once more on a new connection. */
    if (rc < 0 && PQstatus(st->conn) == CONNECTION_BAD) {
        rc = conn_ready(db);
        if (rc == VEND_OK)
            rc = simple(db, BEGIN_WRITE);
    }
    /* No lock (its timeout): the transaction BEGIN opened is ended, the lock's error kept. */
    if (rc < 0 && !st->abandoned && PQstatus(st->conn) == CONNECTION_OK &&
        PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        char detail[DB_ERRMSG_MAX];

        memcpy(detail, db->errmsg, sizeof(detail));
        if (simple(db, "ROLLBACK") < 0)
            log_warnx("database rollback after a failed begin failed: %s", db->errmsg);
        memcpy(db->errmsg, detail, sizeof(detail));
    }
    st->tx = rc == VEND_OK;
    return rc;
}

static int pg_commit(struct db *db)
{
    struct pg_state *st = state(db);
    PGresult *res;
    int rc;

    if (PQstatus(st->conn) != CONNECTION_OK || st->lost) {
        st->tx = false;
        note_lost(db);
        db_set_error(db, "'COMMIT': the connection to PostgreSQL was lost; the server rolled "
                         "the transaction back");
        return VEND_EBUSY;
    }
    if (PQtransactionStatus(st->conn) == PQTRANS_IDLE) {
        db_set_error(db, "'COMMIT': no transaction is open");
        return VEND_EDB;
    }
    /* Whatever the answer, the transaction is over (lost with the connection at worst: the
     * caller then retries, and its compare-and-set finds what did commit). */
    st->tx = false;
    if (!PQsendQuery(st->conn, "COMMIT"))
        return fail(db, NULL, "COMMIT");
    rc = await(db, "COMMIT", QUERY_DEADLINE_MS, &res);
    if (rc < 0) {
        /* Maybe committed: the caller's retry finds out (compare-and-set). */
        return rc;
    }
    /* COMMIT of an aborted transaction "succeeds" as a ROLLBACK: that is a failure here. */
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = fail(db, res, "COMMIT");
    } else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        db_set_error(db, "'COMMIT': the transaction had failed and was rolled back");
        rc = VEND_EDB;
    } else {
        rc = VEND_OK;
    }
    PQclear(res);
    return rc;
}

static int pg_rollback(struct db *db)
{
    struct pg_state *st = state(db);

    st->tx = false;
    /* Without a connection there is nothing to roll back: the server did. */
    if (PQstatus(st->conn) != CONNECTION_OK || st->lost ||
        PQtransactionStatus(st->conn) == PQTRANS_IDLE)
        return VEND_OK;
    return simple(db, "ROLLBACK");
}

static bool pg_in_transaction(struct db *db)
{
    PGTransactionStatusType s = PQtransactionStatus(state(db)->conn);

    /* Lost (a given-up connection still looks busy): over, as after a restart. */
    if (state(db)->lost)
        return false;
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
}

static int pg_checkpoint(struct db *db)
{
    (void)db; /* the server checkpoints by itself */
    return VEND_OK;
}

static void pg_version(struct db *db, uint64_t out[2])
{
    struct pg_state *st = state(db);
    PGresult *res;

    out[0] = st->changes;
    /* The whole snapshot (xmin:xmax:in-progress ids), not its xmax alone: an older transaction
     * committing after a younger one leaves xmax where it was but leaves the in-progress
     * list. Two equal snapshots see the same rows. Hashed (FNV-1a), never UINT64_MAX. */
    out[1] = UINT64_MAX;
    /* No connection: unknown (nothing is kept); a reconnect is for the statements. */
    if (st->lost || PQstatus(st->conn) != CONNECTION_OK ||
        !PQsendQuery(st->conn, "SELECT pg_current_snapshot()::text") ||
        await(db, "SELECT pg_current_snapshot()", QUERY_DEADLINE_MS, &res) < 0)
        return;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        uint64_t h = 14695981039346656037u;

        for (const unsigned char *p = (const unsigned char *)PQgetvalue(res, 0, 0); *p != '\0'; p++)
            h = (h ^ *p) * 1099511628211u;
        out[1] = h != UINT64_MAX ? h : 0;
    }
    PQclear(res);
}

static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgresql: %.*s", (int)strcspn(message, "\n"), message);
}

/* SQLite compares text byte by byte; so does PostgreSQL only under the C collation. Others
 * (en_US.UTF-8) order ids and names differently, and cursors of the lists with them. */
static void warn_collation(struct db *db)
{
    static const char sql[] =
        "SELECT datcollate FROM pg_database WHERE datname = current_database()";
    PGresult *res = NULL;

    if (!PQsendQuery(state(db)->conn, sql) || await(db, sql, QUERY_DEADLINE_MS, &res) < 0)
        return;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        const char *c = PQgetvalue(res, 0, 0);
        if (strcmp(c, "C") != 0 && strcmp(c, "POSIX") != 0 && strncmp(c, "C.", 2) != 0)
            log_warnx("PostgreSQL database collation is '%s': text sorts unlike SQLite's; "
                      "create the database with LC_COLLATE 'C'",
                      c);
    }
    PQclear(res);
}

/* The connection's connect_timeout (the URL's, else CONNECT_TIMEOUT_S; libpq's floor of 2 s,
 * and "none" is CONNECT_TIMEOUT_S here: a reconnect attempt must end) in ms. */
static int connect_timeout_ms(PGconn *conn)
{
    PQconninfoOption *opts = PQconninfo(conn);
    long s = strtol(CONNECT_TIMEOUT_S, NULL, 10);

    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL) {
            long v = strtol(o->val, NULL, 10);
            if (v > 0)
                s = v < 2 ? 2 : v > CONNECT_MAX_S ? CONNECT_MAX_S : v;
        }
    }
    PQconninfoFree(opts);
    return (int)s * 1000;
}

static int pg_open(struct db *db, const char *target)
{
    struct pg_state *st;
    char *uri = NULL;
    size_t len = strnlen(target, URL_MAX_LEN + 1);
    int rc;

    if (len > URL_MAX_LEN) {
        db_set_error(db, "database URL 'postgresql://...' longer than %d bytes", URL_MAX_LEN);
        return VEND_EINVAL;
    }
    st = xcalloc(1, sizeof(*st));
    db->be = st;
    uri = xmalloc(len + sizeof("postgresql://"));
    memcpy(uri, "postgresql://", sizeof("postgresql://") - 1);
    memcpy(uri + sizeof("postgresql://") - 1, target, len + 1);
    /* connect_timeout first: a value in the URL (expanded after it) wins. */
    st->conn = PQconnectdbParams((const char *const[]){"connect_timeout", "dbname", NULL},
                                 (const char *const[]){CONNECT_TIMEOUT_S, uri, NULL}, 1);
    if (st->conn == NULL || PQstatus(st->conn) != CONNECTION_OK) {
        /* libpq's message names host and port, never the password. */
        const char *msg = st->conn != NULL ? PQerrorMessage(st->conn) : "out of memory";
        db_set_error(db, "cannot connect to PostgreSQL database (postgresql://...): %.*s",
                     (int)strcspn(msg, "\n"), msg);
        rc = VEND_EDB;
        goto out;
    }
    PQsetNoticeProcessor(st->conn, notice_to_log, NULL);
    st->connect_timeout_ms = connect_timeout_ms(st->conn);
    /* Sending never waits for the server: await() bounds every wait. */
    if (PQsetnonblocking(st->conn, 1) != 0) {
        rc = fail(db, NULL, "PQsetnonblocking");
        goto out;
    }
    rc = session_setup(db);
    if (rc == VEND_OK) {
        int sv = PQserverVersion(st->conn);
        /* Which server and database, never the password (not for a read-only checker). */
        if (!db->readonly)
            log_info("database: PostgreSQL %d.%d, database '%s' on %s port %s as '%s'", sv / 10000,
                     sv % 10000, PQdb(st->conn), PQhost(st->conn), PQport(st->conn),
                     PQuser(st->conn));
        warn_collation(db);
    }
out:
    free(uri);
    if (rc < 0)
        db->ops->close(db);
    return rc;
}

static void pg_close(struct db *db)
{
    struct pg_state *st = state(db);

    if (st == NULL)
        return;
    cache_clear(st);
    if (st->conn != NULL)
        PQfinish(st->conn); /* the server drops the prepared statements with the session */
    free(st);
    db->be = NULL;
}

static const struct pg_cursor *cur(const struct db_row *row)
{
    return row->cur;
}

static int pg_row_count(const struct db_row *row)
{
    return PQnfields(cur(row)->res);
}

static bool pg_row_is_null(const struct db_row *row, int col)
{
    return PQgetisnull(cur(row)->res, cur(row)->row, col);
}

static const char *pg_row_text(const struct db_row *row, int col)
{
    const struct pg_cursor *c = cur(row);

    if (PQgetisnull(c->res, c->row, col))
        return NULL;
    if (PQftype(c->res, col) == OID_BOOL) /* SQLite's comparisons give 1 and 0 */
        return PQgetvalue(c->res, c->row, col)[0] == 't' ? "1" : "0";
    return PQgetvalue(c->res, c->row, col);
}

static int64_t pg_row_int(const struct db_row *row, int col)
{
    const char *s = pg_row_text(row, col);
    char *end = NULL;
    long long v;

    if (s == NULL)
        return 0;
    errno = 0;
    v = strtoll(s, &end, 10);
    /* A numeric with a fraction (avg) or a real: truncated, as sqlite3_column_int64. */
    if (end != NULL && (*end == '.' || *end == 'e' || *end == 'E'))
        return (int64_t)strtod(s, NULL);
    return (int64_t)v;
}

static double pg_row_real(const struct db_row *row, int col)
{
    const char *s = pg_row_text(row, col);

    return s != NULL ? strtod(s, NULL) : 0.0;
}

static const char *pg_row_name(const struct db_row *row, int col)
{
    return PQfname(cur(row)->res, col);
}

static enum db_type pg_row_type(const struct db_row *row, int col)
{
    const struct pg_cursor *c = cur(row);

    if (PQgetisnull(c->res, c->row, col))
        return DB_T_NULL;
    switch (PQftype(c->res, col)) {
    case OID_BOOL:
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        return DB_T_INT;
    case OID_FLOAT4:
    case OID_FLOAT8:
        return DB_T_REAL;
    case OID_NUMERIC:
        /* sum() of integers is numeric here and an integer in SQLite: decided per value. */
        return strchr(PQgetvalue(c->res, c->row, col), '.') != NULL ? DB_T_REAL : DB_T_INT;
    default:
        return DB_T_TEXT;
    }
}

const struct db_backend db_backend_pg = {
    .name = "postgresql",
    .migrations = schema_pg,
    .nmigrations = &schema_pg_count,
    .sql_tables = "SELECT tablename FROM pg_catalog.pg_tables "
                  "WHERE schemaname = current_schema()",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .script = pg_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .in_transaction = pg_in_transaction,
    .checkpoint = pg_checkpoint,
    .claim = pg_claim,
    .version = pg_version,
    .row_count = pg_row_count,
    .row_is_null = pg_row_is_null,
    .row_int = pg_row_int,
    .row_real = pg_row_real,
    .row_text = pg_row_text,
    .row_name = pg_row_name,
    .row_type = pg_row_type,
};
