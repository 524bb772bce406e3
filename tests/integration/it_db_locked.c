/*
 * it_db_locked.c - the database locked by another process past vendd's busy timeout (5 s:
 * BUSY_TIMEOUT_MS in db_sqlite.c, LOCK_TIMEOUT in db_pg.c), as a long `sqlite3` or `psql`
 * session would (SPEC §4 rules 2, 7 and 8; docs/HTTP-API.md: 503 BUSY / UNAVAILABLE):
 *
 *   - during the payment notification: vendd answers 503 well before Midtrans gives up
 *     (15 s), stores nothing, and Midtrans's retry after the unlock makes the order PAID
 *     once, with one payment event and one command;
 *   - during a trigger: 503, the order stays PAID with nothing sent; a trigger after the
 *     unlock dispenses it once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define WAIT_MS      5000
#define LOCK_WAIT_MS 12000 /* vendd's 5 s busy wait, and room for a loaded machine */
#define MIDTRANS_MS  15000 /* how long Midtrans waits for the webhook's answer */

static const char *const env[] = {"DISPENSE_RESULT_GRACE_MS=1000", "ORDER_RATE_PER_MIN=10000",
                                  "ORDER_PENDING_MAX=1000", "MIDTRANS_TIMEOUT_MS=3000", NULL};

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 10, 100}, {0, 0, 0}};

    *state = harness_fixture_new_midtrans(env, NULL, slots, "it-db-locked");
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* expect_sql(h, fmt, arg, want, timeout_ms): the query fmt (with arg) gives want in time. */
#define expect_sql(h, fmt, arg, want, timeout_ms) expect_sql_at(h, want, timeout_ms, fmt, arg)

static void __attribute__((format(printf, 4, 5)))
expect_sql_at(struct harness *h, const char *want, int timeout_ms, const char *fmt, ...)
{
    char sql[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    if (harness_sql_wait(h, sql, want, timeout_ms) < 0)
        fail_msg("%s: wanted '%s' (log: %s)", sql, want, h->log_path);
}

/* Hold the write lock of vendd's database from another connection (SQLite: BEGIN EXCLUSIVE,
 * reads go on in WAL; PostgreSQL: the advisory lock of db_pg.c). */
static struct harness_db_lock *lock_database(struct harness *h)
{
    struct harness_db_lock *l = harness_db_lock(h);

    assert_non_null(l);
    return l;
}

static void unlock_database(struct harness_db_lock *l)
{
    assert_int_equal(harness_db_unlock(l), 0);
}

/* The first delivery attempt of id's notifications that vendd answered, waited for:
 * its HTTP status (0 if none came in time). */
static long first_answer(struct harness *h, const char *id, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;

    for (;;) {
        struct harness_reply r;
        json_t *e;
        size_t i;
        long got = 0;

        assert_int_equal(harness_fake_call(h, "GET", "/_fake/notifications", NULL, &r), 200);
        json_array_foreach(json_object_get(r.json, "notifications"), i, e)
        {
            const char *oid = json_string_value(json_object_get(e, "order_id"));
            const char *st = json_string_value(json_object_get(e, "transaction_status"));

            if (got == 0 && oid != NULL && strcmp(oid, id) == 0 && st != NULL &&
                strcmp(st, "settlement") == 0)
                got = (long)json_integer_value(json_object_get(e, "http_status"));
        }
        harness_reply_free(&r);
        if (got != 0 || harness_now_ms() >= deadline)
            return got;
        harness_sleep_ms(20);
    }
}

static void notification_on_a_locked_database_is_retried(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    char id[64], path[128], got[64];
    int slot = 0, unit = 0;
    uint64_t t0, took;
    struct harness_db_lock *lock;
    long http = 0;

    assert_int_equal(
        harness_order_customer(h, "[{\"slot\":1,\"quantity\":1}]", "qris", id, sizeof(id), NULL),
        201);
    assert_true(harness_fake_notified(h, id, "pending", 1, WAIT_MS, &http) >= 1);
    lock = lock_database(h);
    t0 = harness_now_ms();
    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
    /* Refused, so that Midtrans sends it again, and in time: Midtrans waits 15 s. */
    http = first_answer(h, id, MIDTRANS_MS);
    took = harness_now_ms() - t0;
    print_message("first notification answered %ld after %llu ms\n", http,
                  (unsigned long long)took);
    if (http == 0 || (http >= 200 && http < 300))
        fail_msg("notification on a locked database answered %ld (log: %s)", http, h->log_path);
    assert_true(took < LOCK_WAIT_MS);
    /* Nothing stored, nothing sent, while it is locked. */
    expect_sql(h,
               "SELECT count(*) FROM payment_events WHERE order_id = '%s' AND transaction_status "
               "= 'settlement'",
               id, "0", 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "PENDING", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 0), seen);
    unlock_database(lock);

    /* Midtrans's retry goes through: PAID once, one command. */
    if (harness_mqtt_wait(&f->machine, seen + 1, LOCK_WAIT_MS) < seen + 1)
        fail_msg("no command after the unlock (log: %s)", h->log_path);
    assert_true(harness_fake_notified(h, id, "settlement", 1, LOCK_WAIT_MS, &http) >= 1);
    assert_int_equal(http, 200);
    assert_int_equal(harness_command_parse(harness_mqtt_payload(&f->machine, seen), got,
                                           sizeof(got), &slot, &unit),
                     0);
    assert_string_equal(got, id);
    assert_int_equal(harness_answer(&f->machine, id, slot, unit), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", id, "COMPLETED", WAIT_MS);
    expect_sql(h,
               "SELECT count(*) || ' ' || min(outcome) FROM payment_events WHERE order_id = '%s' "
               "AND transaction_status = 'settlement'",
               id, "1 PAID", 0);
    expect_sql(h, "SELECT count(*) FROM dispense_logs WHERE order_id = '%s'", id, "1", 0);
    expect_sql(h, "SELECT count(*) FROM stock_logs WHERE order_id = '%s'", id, "1", 0);
    expect_sql(h, "SELECT current_stock || ' ' || reserved FROM slots WHERE slot_number = %s", "1",
               "9 0", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 300), seen + 1);
    assert_int_equal(harness_check(h, NULL), 0);
}

static void trigger_on_a_locked_database_is_refused(void **state)
{
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    size_t seen = harness_mqtt_wait(&f->machine, 0, 0);
    struct harness_reply r;
    uint64_t t0, took;
    struct harness_db_lock *lock;
    long st;

    assert_int_equal(harness_order(h, "locked-1", 1, 1), 0);
    lock = lock_database(h);
    t0 = harness_now_ms();
    st = harness_trigger(h, "locked-1", &r);
    took = harness_now_ms() - t0;
    print_message("trigger answered %ld after %llu ms: %s\n", st, (unsigned long long)took,
                  r.body != NULL ? r.body : "");
    assert_int_equal(st, 503);
    assert_string_equal(harness_reply_str(&r, "error.code"), "BUSY");
    harness_reply_free(&r);
    assert_true(took < LOCK_WAIT_MS);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", "locked-1", "PAID", 0);
    expect_sql(h, "SELECT count(*) FROM dispense_logs WHERE order_id = '%s'", "locked-1", "0", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 1, 300), seen);
    unlock_database(lock);

    /* Nothing was left half done: the next trigger dispenses it, once. */
    assert_int_equal(harness_trigger(h, "locked-1", NULL), 200);
    if (harness_mqtt_wait(&f->machine, seen + 1, WAIT_MS) < seen + 1)
        fail_msg("no command after the unlock (log: %s)", h->log_path);
    assert_int_equal(harness_answer(&f->machine, "locked-1", 1, 0), 0);
    expect_sql(h, "SELECT status FROM orders WHERE id = '%s'", "locked-1", "COMPLETED", WAIT_MS);
    expect_sql(h, "SELECT count(*) FROM stock_logs WHERE order_id = '%s'", "locked-1", "1", 0);
    assert_int_equal(harness_mqtt_wait(&f->machine, seen + 2, 300), seen + 1);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(notification_on_a_locked_database_is_retried),
        cmocka_unit_test(trigger_on_a_locked_database_is_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
