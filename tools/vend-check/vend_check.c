/*
 * vend_check.c - vend-check(1): SPEC §4's invariants checked on a vendd database, read-only,
 * SQLite or PostgreSQL, with vmsim's drop log when there is one. Exit 0: every invariant
 * holds; 1: one line per violation on stdout; 2: usage, the database or the drop log.
 */
#define _DEFAULT_SOURCE /* timegm */

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "drops.h"
#include "invariants.h"
#include "vend/err.h"

#define EXIT_VIOLATION 1
#define EXIT_USAGE     2

#define SLACK_S_DEFAULT 60
#define SLACK_S_MAX     86400
#define LOW_PCT_DEFAULT 20 /* vendd's LOW_STOCK_PERCENT default (docs/CONFIG.md) */

struct opts {
    const char *url;
    const char *drops;
    struct check_opts check;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vend-check [--drops FILE] [--now TIME] [--slack-s N] "
            "[--low-stock-percent N] DATABASE_URL\n"
            "  DATABASE_URL      sqlite:PATH or postgresql://... (default: $DATABASE_URL),\n"
            "                    opened read-only\n"
            "  --drops FILE      vmsim's drop log (vmsim --drop-log)\n"
            "  --now TIME        the time deadlines are judged at, YYYY-MM-DDTHH:MM:SS[.mmm]Z\n"
            "                    (default: now)\n"
            "  --slack-s N       a deadline counts once N seconds past (default %d)\n"
            "  --low-stock-percent N  vendd's LOW_STOCK_PERCENT (default %d; 0: not checked)\n"
            "exit: 0 every invariant holds, 1 violations (one line each), 2 usage or I/O\n",
            SLACK_S_DEFAULT, LOW_PCT_DEFAULT);
}

/* "YYYY-MM-DDTHH:MM:SS" with ".mmm" or not, then "Z": epoch milliseconds. */
static bool parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    int ms = 0, n = 0;
    size_t len = strlen(s);

    if (len != 20 && len != 24)
        return false;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19)
        return false;
    if (len == 24 && (s[19] != '.' || sscanf(s + 20, "%3d", &ms) != 1 || s[23] != 'Z'))
        return false;
    if (len == 20 && s[19] != 'Z')
        return false;
    for (size_t i = 0; i < 19; i++)
        if ((i == 4 || i == 7)     ? s[i] != '-'
            : i == 10              ? s[i] != 'T'
            : (i == 13 || i == 16) ? s[i] != ':'
                                   : (s[i] < '0' || s[i] > '9'))
            return false;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return true;
}

static bool parse_uint(const char *name, const char *s, long max, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || s[0] == '+' || v > max) {
        fprintf(stderr, "vend-check: --%s '%s': expected an integer in 0..%ld\n", name, s, max);
        return false;
    }
    *out = v;
    return true;
}

static int now_ms(int64_t *out)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return VEND_EIO;
    *out = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return VEND_OK;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"drops", required_argument, NULL, 'd'},
        {"now", required_argument, NULL, 'n'},
        {"slack-s", required_argument, NULL, 's'},
        {"low-stock-percent", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool has_now = false;
    long v = 0;
    int c;

    o->check.slack_ms = SLACK_S_DEFAULT * 1000;
    o->check.low_stock_percent = LOW_PCT_DEFAULT;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->drops = optarg;
            break;
        case 'n':
            if (!parse_time(optarg, &o->check.now_ms)) {
                fprintf(stderr, "vend-check: --now '%s': expected YYYY-MM-DDTHH:MM:SS[.mmm]Z\n",
                        optarg);
                return EXIT_USAGE;
            }
            has_now = true;
            break;
        case 's':
            if (!parse_uint("slack-s", optarg, SLACK_S_MAX, &v))
                return EXIT_USAGE;
            o->check.slack_ms = (int64_t)v * 1000;
            break;
        case 'l':
            if (!parse_uint("low-stock-percent", optarg, 99, &v))
                return EXIT_USAGE;
            o->check.low_stock_percent = (int)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "vend-check: one DATABASE_URL expected, got %d arguments\n", argc - optind);
        return EXIT_USAGE;
    }
    o->url = optind < argc ? argv[optind] : getenv("DATABASE_URL");
    if (o->url == NULL || o->url[0] == '\0') {
        fprintf(stderr, "vend-check: no DATABASE_URL given\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!has_now && now_ms(&o->check.now_ms) < 0) {
        fprintf(stderr, "vend-check: cannot read the clock: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    struct report r = {.out = stdout};
    struct drops *drops = NULL;
    struct db *db = NULL;
    char err[512] = "";
    int rc, status;

    status = parse_args(argc, argv, &o);
    if (status != 0)
        return status;
    if (o.drops != NULL && drops_load(&drops, o.drops, err, sizeof(err)) < 0) {
        fprintf(stderr, "vend-check: %s\n", err);
        return EXIT_USAGE;
    }
    rc = db_open_readonly(&db, o.url, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "vend-check: %s\n", err);
        drops_free(drops);
        return EXIT_USAGE;
    }
    /* One snapshot for every check, so a live vendd's commits cannot tear a comparison. */
    rc = db_begin(db);
    if (rc >= 0)
        rc = invariants_check(db, &o.check, &r);
    if (rc >= 0 && drops != NULL)
        rc = drops_check(db, drops, &r);
    if (rc < 0) {
        fprintf(stderr, "vend-check: cannot read the database: %s (%s)\n", vend_strerror(rc),
                db_errmsg(db));
        status = EXIT_USAGE;
    }
    db_rollback(db);
    db_close(db);
    drops_free(drops);
    if (fflush(stdout) != 0 && status == 0) {
        fprintf(stderr, "vend-check: cannot write the report: %s\n", strerror(errno));
        status = EXIT_USAGE;
    }
    if (status == 0 && r.violations > 0) {
        fprintf(stderr, "vend-check: %ld violation(s)\n", r.violations);
        status = EXIT_VIOLATION;
    }
    return status;
}
