/*
 * drops.c - vmsim's drop log against the database; see drops.h.
 */
#include "drops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "unit_status.h"
#include "vend/err.h"
#include "vend/msg.h"
#include "xmalloc.h"

#define LINE_MAX_LEN 256     /* the longest valid line is about 150 bytes */
#define DROPS_MAX    5000000 /* lines kept: a bound on memory (about 0.6 GB) */
#define TIME_LEN     24      /* "2026-11-29T12:00:00.000Z" */

struct drop {
    char machine[VEND_MACHINE_ID_MAX + 1];
    char order[VEND_ORDER_ID_MAX + 1];
    int64_t unit, slot;
    char at[TIME_LEN + 1];
};

struct start {
    char machine[VEND_MACHINE_ID_MAX + 1];
    char at[TIME_LEN + 1]; /* the first start of the machine in the file */
};

struct drops {
    struct drop *d;
    size_t n, cap;
    struct start *s;
    size_t ns, scap;
};

/* Copy one field (no space, no control character, 1..size-1 bytes). */
static bool field(char *dst, size_t size, const char *src)
{
    size_t len = strlen(src);

    if (len == 0 || len >= size)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)src[i] <= ' ' || src[i] == 0x7f)
            return false;
    memcpy(dst, src, len + 1);
    return true;
}

static bool number(int64_t *out, const char *s, int64_t min, int64_t max)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || s[0] == '+' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Split line (NUL-terminated, newline removed) at single spaces into at most max fields. */
static size_t split(char *line, char **f, size_t max)
{
    size_t n = 0;
    char *p = line;

    while (n < max) {
        f[n++] = p;
        p = strchr(p, ' ');
        if (p == NULL)
            return n;
        *p++ = '\0';
    }
    return max + 1; /* too many */
}

static int add_start(struct drops *ds, const char *machine, const char *at)
{
    for (size_t i = 0; i < ds->ns; i++) {
        if (strcmp(ds->s[i].machine, machine) == 0) {
            if (strcmp(at, ds->s[i].at) < 0)
                memcpy(ds->s[i].at, at, TIME_LEN + 1);
            return VEND_OK;
        }
    }
    if (ds->ns == ds->scap) {
        ds->scap = ds->scap == 0 ? 16 : ds->scap * 2;
        ds->s = xrealloc(ds->s, ds->scap * sizeof(*ds->s));
    }
    snprintf(ds->s[ds->ns].machine, sizeof(ds->s[ds->ns].machine), "%s", machine);
    memcpy(ds->s[ds->ns].at, at, TIME_LEN + 1);
    ds->ns++;
    return VEND_OK;
}

/* One line; false with err set when it is not one of drops.h's. */
static bool parse_line(struct drops *ds, char *line, char *err, size_t errlen)
{
    char *f[7];
    size_t n = split(line, f, 6);
    struct drop d = {0};

    if (n == 3 && strcmp(f[0], "start") == 0) {
        if (strlen(f[1]) != TIME_LEN || !field(d.machine, sizeof(d.machine), f[2])) {
            snprintf(err, errlen, "a 'start' line needs TIME (%d bytes) and a machine id",
                     TIME_LEN);
            return false;
        }
        add_start(ds, d.machine, f[1]);
        return true;
    }
    if (n != 6 || strcmp(f[0], "drop") != 0) {
        snprintf(err, errlen,
                 "expected 'start TIME MACHINE' or 'drop TIME MACHINE ORDER UNIT "
                 "SLOT'");
        return false;
    }
    if (strlen(f[1]) != TIME_LEN || !field(d.machine, sizeof(d.machine), f[2]) ||
        !field(d.order, sizeof(d.order), f[3]) || !number(&d.unit, f[4], 0, VEND_UNIT_MAX) ||
        !number(&d.slot, f[5], 1, 255)) {
        snprintf(err, errlen,
                 "bad 'drop' line: TIME of %d bytes, machine id, order id, unit 0..%d and slot "
                 "1..255 expected",
                 TIME_LEN, VEND_UNIT_MAX);
        return false;
    }
    memcpy(d.at, f[1], TIME_LEN + 1);
    if (d.unit == 0)
        d.unit = 1; /* no "unit" in the command: the order's only unit */
    if (ds->n == DROPS_MAX) {
        snprintf(err, errlen, "more than %d drops: not read further", DROPS_MAX);
        return false;
    }
    if (ds->n == ds->cap) {
        ds->cap = ds->cap == 0 ? 256 : ds->cap * 2;
        ds->d = xrealloc(ds->d, ds->cap * sizeof(*ds->d));
    }
    ds->d[ds->n++] = d;
    return true;
}

static int load(struct drops *ds, const char *path, char *err, size_t errlen)
{
    char line[LINE_MAX_LEN + 2], why[200];
    unsigned long lineno = 0;
    FILE *f = fopen(path, "r");
    int rc = VEND_OK;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open the drop log '%s': %s", path, strerror(errno));
        return VEND_EIO;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);

        lineno++;
        if (len > 0 && line[len - 1] == '\n') {
            line[--len] = '\0';
        } else if (!feof(f)) {
            snprintf(err, errlen, "%s:%lu: line longer than %d bytes", path, lineno, LINE_MAX_LEN);
            rc = VEND_EIO;
            break;
        } else {
            break; /* a last line without its newline: a writer killed mid-line, not a drop */
        }
        if (!parse_line(ds, line, why, sizeof(why))) {
            snprintf(err, errlen, "%s:%lu: %s", path, lineno, why);
            rc = VEND_EIO;
            break;
        }
    }
    if (rc == VEND_OK && ferror(f)) {
        snprintf(err, errlen, "cannot read the drop log '%s'", path);
        rc = VEND_EIO;
    }
    fclose(f);
    return rc;
}

static int by_unit(const void *a, const void *b)
{
    const struct drop *x = a, *y = b;
    int c = strcmp(x->order, y->order);

    if (c != 0)
        return c;
    if (x->unit != y->unit)
        return x->unit < y->unit ? -1 : 1;
    return strcmp(x->at, y->at);
}

/* ---- against the database ---------------------------------------------------------------- */

struct unit_state {
    bool found, dropped;
    char status[16];
    char machine[VEND_MACHINE_ID_MAX + 1];
    int64_t slot;
};

static int take_unit(void *arg, const struct db_row *row)
{
    struct unit_state *u = arg;
    const char *s = db_row_text(row, 0), *m = db_row_text(row, 1);

    u->found = true;
    snprintf(u->status, sizeof(u->status), "%s", s != NULL ? s : "?");
    snprintf(u->machine, sizeof(u->machine), "%s", m != NULL ? m : "?");
    u->slot = db_row_int(row, 2);
    u->dropped = db_row_int(row, 3) != 0;
    return 1;
}

/* One drop (the first of its unit): vendd counts the unit as dropped, or will still decide. */
static int check_drop(struct db *db, const struct drop *d, struct report *r)
{
    struct db_value p[2] = {DB_TEXT(d->order), DB_INT(d->unit)};
    struct unit_state u = {0};
    int rc;

    rc = db_exec(db,
                 "SELECT status, machine_id, slot_number, CASE WHEN " UNIT_DROPPED_SQL
                 " THEN 1 ELSE 0 END FROM dispense_logs WHERE order_id = $1 AND unit = $2",
                 p, 2, take_unit, &u);
    if (rc < 0)
        return rc;
    if (!u.found) {
        report_violation(r, "drop_without_unit",
                         "order %s unit %" PRId64 ": %s slot %" PRId64
                         " dropped it at %s, vendd has no such unit",
                         d->order, d->unit, d->machine, d->slot, d->at);
    } else if (strcmp(u.machine, d->machine) != 0 || u.slot != d->slot) {
        report_violation(r, "drop_without_unit",
                         "order %s unit %" PRId64 ": %s slot %" PRId64
                         " dropped it at %s, vendd sent it to %s slot %" PRId64,
                         d->order, d->unit, d->machine, d->slot, d->at, u.machine, u.slot);
    } else if (!u.dropped && strcmp(u.status, "SENT") != 0 && strcmp(u.status, "UNSETTLED") != 0) {
        /* SENT and UNSETTLED: the result or the settle is still to come. */
        report_violation(r, "drop_without_unit",
                         "order %s unit %" PRId64 ": %s slot %" PRId64
                         " dropped it at %s, vendd says %s and not dropped",
                         d->order, d->unit, d->machine, d->slot, d->at, u.status);
    }
    return VEND_OK;
}

struct missing_ctx {
    const struct drops *ds;
    struct report *r;
};

static int missing_row(void *arg, const struct db_row *row)
{
    struct missing_ctx *c = arg;
    struct drop key = {0};
    const char *order = db_row_text(row, 0);

    if (order == NULL || strlen(order) >= sizeof(key.order))
        return 0;
    memcpy(key.order, order, strlen(order) + 1);
    key.unit = db_row_int(row, 1);
    /* Any drop of the unit will do: bsearch on (order, unit) ignores the time. */
    for (size_t lo = 0, hi = c->ds->n; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        const struct drop *d = &c->ds->d[mid];
        int cmp = strcmp(key.order, d->order);

        if (cmp == 0)
            cmp = key.unit < d->unit ? -1 : key.unit > d->unit ? 1 : 0;
        if (cmp == 0)
            return 0;
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    report_violation(c->r, "unit_without_drop",
                     "order %s unit %" PRId64 ": %s on %s slot %" PRId64
                     " (sent %s), the machine dropped nothing for it",
                     order, key.unit, db_row_text(row, 2), db_row_text(row, 3), db_row_int(row, 4),
                     db_row_text(row, 5));
    return 0;
}

int drops_load(struct drops **out, const char *path, char *err, size_t errlen)
{
    struct drops *ds = xcalloc(1, sizeof(*ds));
    int rc = load(ds, path, err, errlen);

    if (rc < 0) {
        drops_free(ds);
        ds = NULL;
    } else if (ds->n > 0) {
        qsort(ds->d, ds->n, sizeof(*ds->d), by_unit); /* NULL with no drop: not for qsort */
    }
    *out = ds;
    return rc;
}

void drops_free(struct drops *ds)
{
    if (ds == NULL)
        return;
    free(ds->d);
    free(ds->s);
    free(ds);
}

int drops_check(struct db *db, struct drops *ds, struct report *r)
{
    int rc;

    for (size_t i = 0; i < ds->n; i++) {
        size_t j = i;

        while (j + 1 < ds->n && strcmp(ds->d[j + 1].order, ds->d[i].order) == 0 &&
               ds->d[j + 1].unit == ds->d[i].unit)
            j++;
        if (j > i)
            report_violation(r, "double_drop",
                             "order %s unit %" PRId64 ": dropped %zu times (%s slot %" PRId64
                             " at %s, %s slot %" PRId64 " at %s)",
                             ds->d[i].order, ds->d[i].unit, j - i + 1, ds->d[i].machine,
                             ds->d[i].slot, ds->d[i].at, ds->d[j].machine, ds->d[j].slot,
                             ds->d[j].at);
        rc = check_drop(db, &ds->d[i], r);
        if (rc < 0)
            return rc;
        i = j;
    }
    for (size_t i = 0; i < ds->ns; i++) {
        struct db_value p[2] = {DB_TEXT(ds->s[i].machine), DB_TEXT(ds->s[i].at)};
        struct missing_ctx c = {.ds = ds, .r = r};

        rc = db_exec(db,
                     "SELECT order_id, unit, status, machine_id, slot_number, command_sent_at "
                     "FROM dispense_logs WHERE machine_id = $1 AND command_sent_at >= $2 "
                     "AND " UNIT_DROPPED_SQL " ORDER BY order_id, unit",
                     p, 2, missing_row, &c);
        if (rc < 0)
            return rc;
    }
    return VEND_OK;
}
