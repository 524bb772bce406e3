/* test_journal.c - the two-copy kv records (store.c) and the journal on top of them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "fake_hal.h"
#include "vend/err.h"
#include "vend/fw/journal.h"
#include "vend/fw/store.h"

static bool accept_all(const uint8_t *p)
{
    (void)p;
    return true;
}

/* Accepts a payload whose first byte is not 0xEE. */
static bool reject_ee(const uint8_t *p)
{
    return p[0] != 0xEE;
}

static struct fake_kv_entry *entry(struct fake *f, const char *key)
{
    size_t i;

    for (i = 0; i < FAKE_KV_KEYS; i++) {
        if (strcmp(f->kv.e[i].key, key) == 0)
            return &f->kv.e[i];
    }
    fail_msg("no key '%s'", key);
    return NULL;
}

static void crc_known_value(void **state)
{
    (void)state;
    /* The CRC-32 check value of the catalogue, as zlib's crc32(). */
    assert_int_equal(vend_fw_crc32((const uint8_t *)"123456789", 9), 0xCBF43926u);
    assert_int_equal(vend_fw_crc32((const uint8_t *)"", 0), 0);
}

static void store_alternates_copies(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_store st = {{0, 0}}, st2;
    uint8_t p[VEND_FW_STORE_PAYLOAD], q[VEND_FW_STORE_PAYLOAD];
    uint32_t seq;

    (void)state;
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq),
                     VEND_ENOTFOUND);
    memset(p, 1, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 1), VEND_OK);
    assert_true(entry(f, "r.0")->present);
    memset(p, 2, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 2), VEND_OK);
    assert_true(entry(f, "r.1")->present);
    memset(p, 3, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 3), VEND_OK);
    /* The third version went over the first, never over the current one. */
    assert_int_equal(entry(f, "r.0")->value[VEND_FW_STORE_HEAD], 3);
    assert_int_equal(entry(f, "r.1")->value[VEND_FW_STORE_HEAD], 2);
    assert_int_equal(vend_fw_store_load(&st2, &f->hal, "r", 'X', accept_all, q, &seq), VEND_OK);
    assert_int_equal(seq, 3);
    assert_memory_equal(p, q, sizeof(p));
    /* A version must be newer than both copies. */
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 3), VEND_EINVAL);
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 0), VEND_EINVAL);
    /* Another kind under the same key is not this record. */
    assert_int_equal(vend_fw_store_load(&st2, &f->hal, "r", 'Y', accept_all, q, &seq),
                     VEND_ENOTFOUND);
    /* Base names must leave room for ".N" within the key limit. */
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "abcdefghijklmn", 'X', p, 9), VEND_EINVAL);
    fake_free(f);
}

static void store_damage_falls_back(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_store st = {{0, 0}};
    uint8_t p[VEND_FW_STORE_PAYLOAD], q[VEND_FW_STORE_PAYLOAD];
    uint32_t seq;

    (void)state;
    memset(p, 1, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 10), VEND_OK);
    memset(p, 2, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 11), VEND_OK);
    /* One flipped bit in the newest copy: its CRC fails, the older version is the value. */
    entry(f, "r.1")->value[40] ^= 0x10;
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq), VEND_OK);
    assert_int_equal(seq, 10);
    assert_int_equal(q[0], 1);
    /* The next write goes over the damaged copy, keeping version 10. */
    memset(p, 3, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 12), VEND_OK);
    assert_int_equal(entry(f, "r.0")->value[VEND_FW_STORE_HEAD], 1);
    /* A copy the validator rejects counts as damaged too. */
    memset(p, 0xEE, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 13), VEND_OK);
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', reject_ee, q, &seq), VEND_OK);
    assert_int_equal(seq, 12);
    /* Both damaged: nothing. */
    entry(f, "r.1")->value[VEND_FW_KV_VALUE_SIZE - 1] ^= 1;
    entry(f, "r.0")->value[2] ^= 1;
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq),
                     VEND_ENOTFOUND);
    /* A read error is not "absent": the caller must not write blind. */
    f->get_fails = true;
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq), VEND_EIO);
    f->get_fails = false;
    assert_int_equal(vend_fw_store_erase(&st, &f->hal, "r"), VEND_OK);
    assert_false(entry(f, "r.0")->present);
    assert_false(entry(f, "r.1")->present);
    fake_free(f);
}

static void store_failed_write_keeps_current(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_store st = {{0, 0}};
    uint8_t p[VEND_FW_STORE_PAYLOAD], q[VEND_FW_STORE_PAYLOAD];
    uint32_t seq;

    (void)state;
    memset(p, 1, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 1), VEND_OK);
    memset(p, 2, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 2), VEND_OK);
    f->fail_from = f->fail_to = f->puts + 1;
    memset(p, 3, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 3), VEND_EIO);
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq), VEND_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(q[0], 2);
    /* The retry goes to the same (unknown) copy, never over version 2. */
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 3), VEND_OK);
    assert_int_equal(entry(f, "r.1")->value[VEND_FW_STORE_HEAD], 2);
    /* The same with the current value in copy 0: the retry still avoids it. */
    f->fail_from = f->fail_to = f->puts + 1;
    memset(p, 4, sizeof(p));
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 4), VEND_EIO);
    assert_int_equal(vend_fw_store_save(&st, &f->hal, "r", 'X', p, 4), VEND_OK);
    assert_int_equal(entry(f, "r.0")->value[VEND_FW_STORE_HEAD], 3);
    assert_int_equal(vend_fw_store_load(&st, &f->hal, "r", 'X', accept_all, q, &seq), VEND_OK);
    assert_int_equal(seq, 4);
    fake_free(f);
}

static struct vend_fw_jrec rec_of(const char *id, uint16_t unit, enum vend_fw_jstate s)
{
    struct vend_fw_jrec r;

    memset(&r, 0, sizeof(r));
    memcpy(r.order_id, id, strlen(id) + 1);
    r.unit = unit;
    r.slot = 7;
    r.state = s;
    if (s == VEND_FW_J_DONE) {
        r.success = r.drop_detected = true;
        r.has_duration = true;
        r.duration_ms = 1850;
    }
    if (s == VEND_FW_J_REFUSED) {
        r.has_error = true;
        r.error = VEND_RESULT_ERROR_BUSY;
    }
    return r;
}

static void journal_round_trip(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_journal *j = test_calloc(1, sizeof(*j)), *k = test_calloc(1, sizeof(*k));
    struct vend_fw_jrec r;
    int i;

    (void)state;
    assert_int_equal(vend_fw_journal_open(j, &f->hal), VEND_OK);
    assert_int_equal(vend_fw_journal_find(j, "A", 0), -1);
    i = vend_fw_journal_alloc(j);
    assert_true(i >= 0);
    r = rec_of("A", 0, VEND_FW_J_STARTED);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_OK);
    /* No unit and unit 1 are the same unit; unit 2 is another. */
    assert_int_equal(vend_fw_journal_find(j, "A", 1), i);
    assert_int_equal(vend_fw_journal_find(j, "A", 0), i);
    assert_int_equal(vend_fw_journal_find(j, "A", 2), -1);
    assert_int_equal(vend_fw_journal_find(j, "a", 1), -1);
    r = rec_of("A", 0, VEND_FW_J_DONE);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_OK);
    i = vend_fw_journal_alloc(j);
    r = rec_of("B-1.x~y_z", 100, VEND_FW_J_REFUSED);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_OK);

    assert_int_equal(vend_fw_journal_open(k, &f->hal), VEND_OK);
    i = vend_fw_journal_find(k, "A", 1);
    assert_true(i >= 0);
    assert_int_equal(k->e[i].rec.state, VEND_FW_J_DONE);
    assert_true(k->e[i].rec.success && k->e[i].rec.drop_detected && k->e[i].rec.has_duration);
    assert_int_equal(k->e[i].rec.duration_ms, 1850);
    assert_false(k->e[i].rec.has_error);
    i = vend_fw_journal_find(k, "B-1.x~y_z", 100);
    assert_true(i >= 0);
    assert_int_equal(k->e[i].rec.state, VEND_FW_J_REFUSED);
    assert_int_equal(k->e[i].rec.unit, 100);
    assert_int_equal(k->e[i].rec.slot, 7);
    assert_true(k->e[i].rec.has_error);
    assert_int_equal(k->e[i].rec.error, VEND_RESULT_ERROR_BUSY);
    assert_false(k->e[i].rec.success || k->e[i].rec.drop_detected || k->e[i].rec.has_duration);
    assert_int_equal(k->seq, j->seq);
    /* Records the journal could not read back are refused. */
    r.slot = 0;
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_EINVAL);
    r = rec_of("bad id", 1, VEND_FW_J_DONE);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_EINVAL);
    r = rec_of("A", 101, VEND_FW_J_DONE);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_EINVAL);
    r = rec_of("A", 1, VEND_FW_J_FREE);
    assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_EINVAL);
    assert_int_equal(vend_fw_journal_put(j, VEND_FW_JOURNAL_CAP, &r), VEND_EINVAL);

    assert_int_equal(vend_fw_journal_wipe(k), VEND_OK);
    assert_int_equal(vend_fw_journal_open(k, &f->hal), VEND_OK);
    assert_int_equal(vend_fw_journal_find(k, "A", 1), -1);
    test_free(j);
    test_free(k);
    fake_free(f);
}

static void journal_ack_and_eviction(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_journal *j = test_calloc(1, sizeof(*j));
    struct vend_fw_jrec r;
    char id[8];
    int i, n;

    (void)state;
    assert_int_equal(vend_fw_journal_open(j, &f->hal), VEND_OK);
    /* The two oldest entries: a running unit, and one whose write failed. */
    r = rec_of("RUN", 0, VEND_FW_J_STARTED);
    assert_int_equal(vend_fw_journal_alloc(j), 0);
    assert_int_equal(vend_fw_journal_put(j, 0, &r), VEND_OK);
    f->fail_from = f->fail_to = f->puts + 1;
    r = rec_of("DIRTY", 0, VEND_FW_J_REFUSED);
    assert_int_equal(vend_fw_journal_alloc(j), 1);
    assert_int_equal(vend_fw_journal_put(j, 1, &r), VEND_EIO);
    assert_true(j->e[1].dirty);
    assert_true(vend_fw_journal_dirty(j));
    assert_int_equal(j->write_errors, 1);
    /* The RAM version answers while the flash holds nothing. */
    assert_int_equal(vend_fw_journal_find(j, "DIRTY", 0), 1);
    /* Fill the rest; nothing acknowledged yet, so nothing may be evicted. */
    for (n = 2; n < VEND_FW_JOURNAL_CAP; n++) {
        id[0] = 'U';
        id[1] = (char)('0' + n / 10);
        id[2] = (char)('0' + n % 10);
        id[3] = '\0';
        r = rec_of(id, 0, VEND_FW_J_DONE);
        i = vend_fw_journal_alloc(j);
        assert_int_equal(i, n);
        assert_int_equal(vend_fw_journal_put(j, i, &r), VEND_OK);
        assert_false(vend_fw_journal_acked(j, i));
    }
    assert_int_equal(vend_fw_journal_alloc(j), VEND_ENOSPACE);
    assert_int_equal(j->evictions, 0);
    vend_fw_journal_ack(j);
    assert_true(vend_fw_journal_acked(j, 2));
    /* The oldest acknowledged entry that is neither running nor unwritten. */
    assert_int_equal(vend_fw_journal_alloc(j), 2);
    assert_int_equal(j->evictions, 1);
    /* Once written, the dirty entry may go like any other. */
    assert_int_equal(vend_fw_journal_flush(j), VEND_OK);
    assert_false(vend_fw_journal_dirty(j));
    vend_fw_journal_ack(j);
    /* A retry keeps its version number: DIRTY (2) is older than U02 (3). */
    assert_int_equal(vend_fw_journal_alloc(j), 1);
    r = rec_of("NEW", 0, VEND_FW_J_CANCELLED);
    assert_int_equal(vend_fw_journal_put(j, 1, &r), VEND_OK);
    assert_false(vend_fw_journal_acked(j, 1));
    /* A flush that fails stops at once: one write, not one per entry. */
    r = rec_of("D2", 0, VEND_FW_J_DONE);
    f->fail_from = f->puts + 1;
    f->fail_to = f->puts + 100;
    assert_int_equal(vend_fw_journal_put(j, 3, &r), VEND_EIO);
    assert_int_equal(vend_fw_journal_put(j, 4, &r), VEND_EIO);
    n = (int)f->puts;
    assert_int_equal(vend_fw_journal_flush(j), VEND_EIO);
    assert_int_equal(f->puts, n + 1);
    f->fail_from = f->fail_to = 0;
    assert_int_equal(vend_fw_journal_flush(j), VEND_OK);

    /* The acknowledgement mark survives a reopen. */
    n = (int)j->ack_seq;
    assert_int_equal(vend_fw_journal_open(j, &f->hal), VEND_OK);
    assert_int_equal(j->ack_seq, n);
    assert_true(vend_fw_journal_acked(j, vend_fw_journal_find(j, "U05", 0)));
    assert_false(vend_fw_journal_acked(j, vend_fw_journal_find(j, "D2", 0)));
    test_free(j);
    fake_free(f);
}

static void journal_unreadable(void **state)
{
    struct fake *f = fake_new();
    struct vend_fw_journal *j = test_calloc(1, sizeof(*j));
    struct vend_fw_jrec r = rec_of("A", 0, VEND_FW_J_DONE);

    (void)state;
    assert_int_equal(vend_fw_journal_open(j, &f->hal), VEND_OK);
    assert_int_equal(vend_fw_journal_put(j, 0, &r), VEND_OK);
    f->get_fails = true;
    assert_int_equal(vend_fw_journal_open(j, &f->hal), VEND_EIO);
    /* Nothing half-loaded is left to answer from. */
    assert_int_equal(vend_fw_journal_find(j, "A", 0), -1);
    test_free(j);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_known_value),
        cmocka_unit_test(store_alternates_copies),
        cmocka_unit_test(store_damage_falls_back),
        cmocka_unit_test(store_failed_write_keeps_current),
        cmocka_unit_test(journal_round_trip),
        cmocka_unit_test(journal_ack_and_eviction),
        cmocka_unit_test(journal_unreadable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
