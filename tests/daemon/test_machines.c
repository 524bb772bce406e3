/*
 * test_machines.c - machines.c on its own: the default machine is registered once and never
 * overwritten at a later start, the one existence check, and a status for a machine that is
 * not registered changes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "machines.h"
#include "vend/err.h"
#include "vend/msg.h"

static int setup(void **state)
{
    struct dfx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    dfx_open(f);
    dfx_clock_set(1764235800000); /* 2025-11-27T09:30:00.000Z */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct dfx *f = *state;

    dfx_close(f);
    free(f);
    return 0;
}

/* Every start registers MACHINE_ID; only the first creates it, the operator's edits stay. */
static void test_default_machine_registered_once(void **state)
{
    struct dfx *f = *state;
    char buf[128];

    assert_int_equal(machines_exists(&f->v, "VM01"), 0);
    assert_int_equal(machines_register_default(&f->v, "VM01"), VEND_OK);
    assert_int_equal(machines_exists(&f->v, "VM01"), 1);
    dfx_text(f->v.db, "SELECT name || '|' || status || '|' || created_at FROM machines", buf,
             sizeof(buf));
    assert_string_equal(buf, "VM01|OFFLINE|2025-11-27T09:30:00.000Z");

    dfx_sql(f->v.db, "UPDATE machines SET name = 'Lobby', status = 'ONLINE'");
    dfx_clock_set(dfx_clock_ms() + 60000);
    assert_int_equal(machines_register_default(&f->v, "VM01"), VEND_OK);
    dfx_text(f->v.db, "SELECT name || '|' || status || '|' || created_at FROM machines", buf,
             sizeof(buf));
    assert_string_equal(buf, "Lobby|ONLINE|2025-11-27T09:30:00.000Z");
    assert_int_equal(dfx_int(f->v.db, "SELECT count(*) FROM machines"), 1);

    /* The operator's registration, unlike the default one, refuses an existing id. */
    assert_int_equal(machines_register(&f->v, "VM01", "Other", NULL), VEND_ECONFLICT);
    assert_int_equal(machines_register(&f->v, "VM02", "Hall", "Floor 2"), VEND_OK);
    assert_int_equal(machines_exists(&f->v, "VM02"), 1);
    assert_int_equal(machines_exists(&f->v, "vm02"), 0);
}

static void test_status_of_unknown_machine(void **state)
{
    struct dfx *f = *state;
    struct vend_status st = {.status = VEND_PRESENCE_ONLINE};
    bool changed = true;
    char *before, *after;

    assert_int_equal(machines_register_default(&f->v, "VM01"), VEND_OK);
    before = dfx_snapshot(f->v.db);
    assert_int_equal(machines_apply_status(&f->v, "VM09", &st, &changed), VEND_ENOTFOUND);
    assert_false(changed);
    after = dfx_snapshot(f->v.db);
    assert_string_equal(after, before);
    free(before);
    free(after);
    assert_int_equal(machines_apply_status(&f->v, "VM01", &st, &changed), VEND_OK);
    assert_true(changed);
    assert_int_equal(machines_apply_status(&f->v, "VM01", &st, &changed), VEND_OK);
    assert_false(changed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_machine_registered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_of_unknown_machine, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
