/*
 * test_result_spool.c - the file the waiting results are kept in (result_spool.h): what is
 * saved is read back in order, an empty queue removes the file, and lines that are not a
 * machine's id and result are skipped, not trusted.
 */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "result_spool.h"
#include "vend/err.h"

struct got {
    size_t n;
    struct result_spool_entry e[8];
};

static const struct result_spool_entry *entry_at(void *arg, size_t i)
{
    return &((const struct result_spool_entry *)arg)[i];
}

static void collect(void *arg, const struct result_spool_entry *e)
{
    struct got *g = arg;

    if (g->n < 8)
        g->e[g->n] = *e;
    g->n++;
}

static void same(const struct result_spool_entry *a, const struct result_spool_entry *b)
{
    assert_string_equal(a->machine_id, b->machine_id);
    assert_string_equal(a->r.order_id, b->r.order_id);
    assert_int_equal(a->r.slot, b->r.slot);
    assert_int_equal(a->r.success, b->r.success);
    assert_int_equal(a->r.drop_detected, b->r.drop_detected);
    assert_int_equal(a->r.has_duration, b->r.has_duration);
    assert_int_equal(a->r.duration_ms, b->r.duration_ms);
    assert_int_equal(a->r.has_error, b->r.has_error);
    assert_string_equal(a->r.error, b->r.error);
    assert_int_equal(a->r.unit, b->r.unit);
}

static void temp_path(char *path, size_t size)
{
    const char *tmp = getenv("TMPDIR");
    char dir[256];

    snprintf(dir, sizeof(dir), "%s/spool-test-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(path, size, "%s/vendd.db-results", dir);
}

static void remove_temp(const char *path)
{
    char dir[300];

    unlink(path);
    snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(path, '/') - path), path);
    assert_int_equal(rmdir(dir), 0);
}

static void saved_results_come_back_in_order(void **state)
{
    struct result_spool_entry in[2] = {
        {.machine_id = "VM01",
         .r = {.order_id = "o-1", .slot = 2, .success = true, .drop_detected = true, .unit = 1}},
        {.machine_id = "VM02",
         .r = {.order_id = "o-2",
               .slot = 7,
               .has_duration = true,
               .duration_ms = 1200,
               .has_error = true,
               .error = "MOTOR_STALL"}},
    };
    struct got g = {0};
    char path[400];

    (void)state;
    temp_path(path, sizeof(path));
    assert_int_equal(result_spool_load(path, collect, &g), 0); /* no file: nothing */
    assert_int_equal(result_spool_save(path, 2, entry_at, in), VEND_OK);
    assert_int_equal(result_spool_load(path, collect, &g), 2);
    assert_int_equal(g.n, 2);
    for (size_t i = 0; i < 2; i++)
        same(&g.e[i], &in[i]);
    /* Replaced whole by the next save, removed by an empty one. */
    assert_int_equal(result_spool_save(path, 1, entry_at, &in[1]), VEND_OK);
    g.n = 0;
    assert_int_equal(result_spool_load(path, collect, &g), 1);
    assert_string_equal(g.e[0].r.order_id, "o-2");
    assert_int_equal(result_spool_save(path, 0, entry_at, in), VEND_OK);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(result_spool_save(path, 0, entry_at, in), VEND_OK);
    remove_temp(path);
}

static void bad_lines_are_skipped(void **state)
{
    static const char ok[] = "VM01 {\"orderId\":\"o-9\",\"slot\":1,\"success\":true,"
                             "\"dropDetected\":true,\"error\":null}\n";
    struct got g = {0};
    char path[400];
    FILE *f;

    (void)state;
    temp_path(path, sizeof(path));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("no-space-here\n", f);
    fputs("VM01 {\"orderId\":\"o-8\"}\n", f);   /* missing fields */
    fputs("bad/id {\"orderId\":\"o-8\"}\n", f); /* not a machine id */
    for (int i = 0; i < 6000; i++)              /* longer than any result */
        fputc('x', f);
    fputc('\n', f);
    fputs(ok, f);
    fputs("VM01 {\"orderId\":\"o-10\",\"slot\":1", f); /* cut off: no newline */
    fclose(f);
    assert_int_equal(result_spool_load(path, collect, &g), 1);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.e[0].machine_id, "VM01");
    assert_string_equal(g.e[0].r.order_id, "o-9");
    remove_temp(path);
}

/* A line with a NUL byte in it (a torn or hostile file) is skipped alone: the good line after
 * it still comes back. */
static void a_nul_byte_spoils_only_its_line(void **state)
{
    static const char bad[] = "VM01 {\"orderId\":\"o-11\"\0,\"slot\":1}\n";
    static const char ok[] = "VM01 {\"orderId\":\"o-12\",\"slot\":1,\"success\":true,"
                             "\"dropDetected\":true,\"error\":null}\n";
    struct got g = {0};
    char path[400];
    FILE *f;

    (void)state;
    temp_path(path, sizeof(path));
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(bad, 1, sizeof(bad) - 1, f), sizeof(bad) - 1);
    fputs(ok, f);
    fclose(f);
    assert_int_equal(result_spool_load(path, collect, &g), 1);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.e[0].r.order_id, "o-12");
    remove_temp(path);
}

static void too_many_or_unencodable_leave_the_file(void **state)
{
    struct result_spool_entry bad = {.machine_id = "VM01", .r = {.order_id = "o-1", .slot = 0}};
    struct result_spool_entry good = {.machine_id = "VM01", .r = {.order_id = "o-1", .slot = 1}};
    struct got g = {0};
    char path[400];

    (void)state;
    temp_path(path, sizeof(path));
    assert_int_equal(result_spool_save(path, 1, entry_at, &good), VEND_OK);
    assert_int_equal(result_spool_save(path, 1, entry_at, &bad), VEND_EINVAL);
    assert_int_equal(result_spool_save(path, RESULT_SPOOL_MAX + 1, entry_at, &good), VEND_EINVAL);
    assert_int_equal(result_spool_load(path, collect, &g), 1);
    assert_int_equal(g.e[0].r.slot, 1);
    remove_temp(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(saved_results_come_back_in_order),
        cmocka_unit_test(bad_lines_are_skipped),
        cmocka_unit_test(a_nul_byte_spoils_only_its_line),
        cmocka_unit_test(too_many_or_unencodable_leave_the_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
