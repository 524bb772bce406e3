/*
 * test_checkout_clock.c - a customer order waiting for payment under wall-clock steps
 * (checkout.c). Its expiry is ORDER_PAYMENT_TTL_S after its creation, a duration that
 * Midtrans also counts from its own clock: a step of the server's wall clock must neither
 * expire it early (the customer may be paying) nor keep it, and its promised stock, an hour
 * longer. No Midtrans here (v.midtrans NULL): each check finds no gateway and goes straight
 * to the expiry decision, which is what these tests are about.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkout.h"
#include "db.h"
#include "deadline.h"
#include "fixture.h"
#include "orders.h"
#include "vend/err.h"

#define T0      1764235800000 /* 2025-11-27T09:30:00.000Z */
#define HOUR_MS 3600000

/* The monotonic clock follows the fixture's wall clock but for the steps a test makes. */
static int64_t s_step_ms;

static int64_t mono_ms(void)
{
    return dfx_clock_ms() - s_step_ms;
}

/* The wall clock steps by delta_ms; the monotonic clock does not. */
static void wall_step(int64_t delta_ms)
{
    s_step_ms += delta_ms;
    dfx_clock_set(dfx_clock_ms() + delta_ms);
}

/* Real time passes: both clocks move. */
static void advance(int64_t ms)
{
    dfx_clock_set(dfx_clock_ms() + ms);
}

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_clock_set(T0);
    s_step_ms = 0;
    dfx_open(f);
    f->v.mono_ms = mono_ms;
    f->v.boot_id = "test-boot";
    assert_int_equal(checkout_new(&f->v.checkout), VEND_OK);
    dfx_sql(f->v.db, "INSERT INTO machines (id, name, status, created_at, updated_at) VALUES "
                     "('VM01', 'VM01', 'ONLINE', 'x', 'x')");
    dfx_sql(f->v.db, "INSERT INTO products (id, name, price, created_at, updated_at) VALUES "
                     "(1, 'Cola', 5000, 'x', 'x')");
    dfx_sql(f->v.db,
            "INSERT INTO slots (id, machine_id, slot_number, product_id, capacity, current_stock, "
            "motor_duration_ms, created_at, updated_at) VALUES "
            "(1, 'VM01', 1, 1, 10, 5, 1500, 'x', 'x')");
    /* As app.c does at start: the deadline clock anchored for this boot. */
    assert_int_equal(deadline_resume(&f->v), VEND_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct dfx *f = *state;

    checkout_free(&f->v);
    deadline_stop(&f->v);
    dfx_close(f);
    free(f);
    return 0;
}

/* A PENDING QRIS order of one unit, due for its first check now (as checkout_resume leaves
 * one), recorded the way checkout_create records it. */
static void pending_order(struct dfx *f, const char *id)
{
    struct order_new in = {.method = PAYMENT_QRIS, .nitems = 1};
    char why[200] = "", sql[160];

    snprintf(in.id, sizeof(in.id), "%s", id);
    in.items[0].slot = 1;
    in.items[0].quantity = 1;
    assert_int_equal(db_begin(f->v.db), VEND_OK);
    if (orders_create_locked(&f->v, &in, f->v.now_ms(), why, sizeof(why)) != VEND_OK)
        fail_msg("order '%s': %s", id, why);
    assert_int_equal(db_commit(f->v.db), VEND_OK);
    snprintf(sql, sizeof(sql),
             "UPDATE orders SET next_check_at = created_at, payment_qr = 'qr' WHERE id = '%s'", id);
    dfx_sql(f->v.db, sql);
}

static void expect_status(struct dfx *f, const char *want)
{
    char got[32];

    dfx_text(f->v.db, "SELECT status FROM orders", got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("order is %s, want %s", got, want);
}

/* Forwards by an hour a minute in: the customer still has the rest of the time to pay. */
static void step_forward_does_not_expire_a_pending_order(void **state)
{
    struct dfx *f = *state;

    pending_order(f, "O1");
    advance(60 * 1000);
    wall_step(HOUR_MS);
    checkout_sweep(&f->v);
    expect_status(f, "PENDING");
    advance((int64_t)f->conf.order_payment_ttl_s * 1000 - 60 * 1000 - 1000);
    checkout_sweep(&f->v);
    expect_status(f, "PENDING");
    /* Its time, as counted on the monotonic clock, is up. */
    advance(2000);
    checkout_sweep(&f->v);
    expect_status(f, "EXPIRED");
    /* Its promised unit is free again. */
    assert_int_equal(dfx_int(f->v.db, "SELECT reserved FROM slots"), 0);
}

/* Backwards by an hour: the order is still asked about and ends at its time. */
static void step_back_does_not_postpone_the_expiry(void **state)
{
    struct dfx *f = *state;

    pending_order(f, "O1");
    checkout_sweep(&f->v);
    expect_status(f, "PENDING");
    wall_step(-HOUR_MS);
    advance((int64_t)f->conf.order_payment_ttl_s * 1000 + 1000);
    checkout_sweep(&f->v);
    expect_status(f, "EXPIRED");
}

/* A step between two processes on the same boot changes nothing either. */
static void step_then_restart_keeps_the_expiry(void **state)
{
    struct dfx *f = *state;

    pending_order(f, "O1");
    wall_step(HOUR_MS);
    advance(1000);
    checkout_free(&f->v);
    deadline_stop(&f->v);
    memset(&f->v.deadline, 0, sizeof(f->v.deadline));
    assert_int_equal(checkout_new(&f->v.checkout), VEND_OK);
    assert_int_equal(deadline_resume(&f->v), VEND_OK);
    assert_int_equal(checkout_resume(&f->v), VEND_OK);
    checkout_sweep(&f->v);
    expect_status(f, "PENDING");
    advance((int64_t)f->conf.order_payment_ttl_s * 1000);
    checkout_sweep(&f->v);
    expect_status(f, "EXPIRED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(step_forward_does_not_expire_a_pending_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(step_back_does_not_postpone_the_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(step_then_restart_keeps_the_expiry, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
