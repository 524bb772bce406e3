/*
 * journal.c - the dispense journal: a RAM mirror of VEND_FW_JOURNAL_CAP entries, each kept
 * in the kv store as a two-copy record (store.h). The design and its crash-consistency
 * argument are in journal.h.
 */
#include <string.h>

#include "vend/err.h"
#include "vend/fw/journal.h"
#include "vend/topic.h"

/* Payload layout of one entry (store.h payload, little-endian). */
enum {
    P_ACK_SEQ = 0,   /* u32 */
    P_STATE = 4,     /* u8, enum vend_fw_jstate */
    P_FLAGS = 5,     /* u8, F_* */
    P_SLOT = 6,      /* u16 */
    P_UNIT = 8,      /* u16 */
    P_DURATION = 10, /* u32 */
    P_ERROR = 14,    /* u8: 0 none, else enum vend_result_error + 1 */
    P_ID_LEN = 15,   /* u8 */
    P_ID = 16,       /* VEND_ORDER_ID_MAX bytes, zero-padded */
    P_END = P_ID + VEND_ORDER_ID_MAX,
};

enum { F_SUCCESS = 1, F_DROP = 2, F_DURATION = 4, F_ALL = 7 };

_Static_assert(P_END <= VEND_FW_STORE_PAYLOAD, "a journal entry fits one kv value");
_Static_assert(VEND_FW_JOURNAL_CAP <= 100, "entry names are jNN");

/* "jNN" for entry i. */
static void base_of(char *base, int i)
{
    base[0] = 'j';
    base[1] = (char)('0' + i / 10);
    base[2] = (char)('0' + i % 10);
    base[3] = '\0';
}

static bool rec_valid(const struct vend_fw_jrec *r)
{
    const char *end;

    if (r->state < VEND_FW_J_STARTED || r->state > VEND_FW_J_CANCELLED)
        return false;
    if (r->slot < VEND_SLOT_MIN || r->slot > VEND_SLOT_MAX || r->unit > VEND_UNIT_MAX)
        return false;
    if (r->has_duration && r->duration_ms > VEND_DURATION_MS_MAX)
        return false;
    if (r->has_error && (unsigned)r->error >= VEND_RESULT_ERROR_COUNT)
        return false;
    end = memchr(r->order_id, '\0', sizeof(r->order_id));
    return end != NULL && vend_order_id_valid_len(r->order_id, (size_t)(end - r->order_id));
}

static void encode(uint8_t *p, const struct vend_fw_jrec *r, uint32_t ack_seq)
{
    size_t n = strlen(r->order_id);

    memset(p, 0, VEND_FW_STORE_PAYLOAD);
    vend_fw_put_u32(p + P_ACK_SEQ, ack_seq);
    p[P_STATE] = (uint8_t)r->state;
    p[P_FLAGS] = (uint8_t)((r->success ? F_SUCCESS : 0) | (r->drop_detected ? F_DROP : 0) |
                           (r->has_duration ? F_DURATION : 0));
    vend_fw_put_u16(p + P_SLOT, r->slot);
    vend_fw_put_u16(p + P_UNIT, r->unit);
    vend_fw_put_u32(p + P_DURATION, r->has_duration ? r->duration_ms : 0);
    p[P_ERROR] = (uint8_t)(r->has_error ? (unsigned)r->error + 1u : 0u);
    p[P_ID_LEN] = (uint8_t)n;
    memcpy(p + P_ID, r->order_id, n);
}

/* The inverse of encode(); false for anything encode() would not have written. */
static bool decode(const uint8_t *p, struct vend_fw_jrec *r)
{
    size_t n = p[P_ID_LEN], k;

    memset(r, 0, sizeof(*r));
    if (n == 0 || n > VEND_ORDER_ID_MAX || (p[P_FLAGS] & ~F_ALL) != 0 ||
        p[P_ERROR] > VEND_RESULT_ERROR_COUNT)
        return false;
    /* Padding is zero: a stray byte means this is not a record we wrote. */
    for (k = P_ID + n; k < VEND_FW_STORE_PAYLOAD; k++) {
        if (p[k] != 0)
            return false;
    }
    r->state = (enum vend_fw_jstate)p[P_STATE];
    r->success = (p[P_FLAGS] & F_SUCCESS) != 0;
    r->drop_detected = (p[P_FLAGS] & F_DROP) != 0;
    r->has_duration = (p[P_FLAGS] & F_DURATION) != 0;
    r->slot = vend_fw_get_u16(p + P_SLOT);
    r->unit = vend_fw_get_u16(p + P_UNIT);
    r->duration_ms = vend_fw_get_u32(p + P_DURATION);
    r->has_error = p[P_ERROR] != 0;
    r->error = r->has_error ? (enum vend_result_error)(p[P_ERROR] - 1) : VEND_RESULT_ERROR_TIMEOUT;
    memcpy(r->order_id, p + P_ID, n);
    r->order_id[n] = '\0';
    return rec_valid(r);
}

static bool payload_valid(const uint8_t *p)
{
    struct vend_fw_jrec r;

    return decode(p, &r);
}

int vend_fw_journal_open(struct vend_fw_journal *j, const struct vend_fw_hal *hal)
{
    uint8_t p[VEND_FW_STORE_PAYLOAD];
    char base[4];
    uint32_t seq;
    int i, rc;

    memset(j, 0, sizeof(*j));
    j->hal = hal;
    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        struct vend_fw_jentry *e = &j->e[i];

        base_of(base, i);
        rc = vend_fw_store_load(&e->store, hal, base, VEND_FW_JOURNAL_KIND, payload_valid, p, &seq);
        if (rc == VEND_ENOTFOUND)
            continue;
        if (rc < 0)
            goto out;
        decode(p, &e->rec);
        e->seq = seq;
        /* store_save() needs every new seq above both copies of the entry it writes. */
        if (e->store.seq[0] > j->seq)
            j->seq = e->store.seq[0];
        if (e->store.seq[1] > j->seq)
            j->seq = e->store.seq[1];
        if (vend_fw_get_u32(p + P_ACK_SEQ) > j->ack_seq)
            j->ack_seq = vend_fw_get_u32(p + P_ACK_SEQ);
    }
    rc = VEND_OK;
out:
    if (rc < 0)
        memset(j->e, 0, sizeof(j->e));
    return rc;
}

static uint16_t unit_norm(uint16_t unit)
{
    return unit == 0 ? 1 : unit;
}

int vend_fw_journal_find(const struct vend_fw_journal *j, const char *order_id, uint16_t unit)
{
    int i, found = -1;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        const struct vend_fw_jentry *e = &j->e[i];

        if (e->rec.state == VEND_FW_J_FREE || unit_norm(e->rec.unit) != unit_norm(unit) ||
            strcmp(e->rec.order_id, order_id) != 0)
            continue;
        /* One unit has one entry; should a damaged store ever hold two, the newest speaks. */
        if (found < 0 || e->seq > j->e[found].seq)
            found = i;
    }
    return found;
}

bool vend_fw_journal_acked(const struct vend_fw_journal *j, int i)
{
    return j->e[i].seq < j->ack_seq;
}

int vend_fw_journal_alloc(struct vend_fw_journal *j)
{
    int i, victim = -1;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        const struct vend_fw_jentry *e = &j->e[i];

        if (e->rec.state == VEND_FW_J_FREE && !e->dirty)
            return i;
        if (e->dirty || e->rec.state == VEND_FW_J_STARTED || !vend_fw_journal_acked(j, i))
            continue;
        if (victim < 0 || e->seq < j->e[victim].seq)
            victim = i;
    }
    if (victim < 0)
        return VEND_ENOSPACE;
    j->evictions++;
    return victim;
}

/* Writes entry i's RAM version with its seq; clears dirty on success. */
static int write_entry(struct vend_fw_journal *j, int i)
{
    struct vend_fw_jentry *e = &j->e[i];
    uint8_t p[VEND_FW_STORE_PAYLOAD];
    char base[4];
    int rc;

    base_of(base, i);
    encode(p, &e->rec, j->ack_seq);
    rc = vend_fw_store_save(&e->store, j->hal, base, VEND_FW_JOURNAL_KIND, p, e->seq);
    if (rc < 0) {
        j->write_errors++;
        e->dirty = true;
        return VEND_EIO;
    }
    e->dirty = false;
    return VEND_OK;
}

int vend_fw_journal_put(struct vend_fw_journal *j, int i, const struct vend_fw_jrec *rec)
{
    struct vend_fw_jentry *e;

    if (i < 0 || i >= VEND_FW_JOURNAL_CAP || !rec_valid(rec))
        return VEND_EINVAL;
    e = &j->e[i];
    e->rec = *rec;
    /* Normalize what the wire never carries, so RAM and flash compare equal. */
    if (!e->rec.has_duration)
        e->rec.duration_ms = 0;
    if (!e->rec.has_error)
        e->rec.error = VEND_RESULT_ERROR_TIMEOUT;
    /* A retry keeps this seq: one version, however many attempts it takes. */
    e->seq = ++j->seq;
    return write_entry(j, i);
}

int vend_fw_journal_flush(struct vend_fw_journal *j)
{
    int i;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        if (j->e[i].dirty && write_entry(j, i) < 0)
            return VEND_EIO;
    }
    return VEND_OK;
}

bool vend_fw_journal_dirty(const struct vend_fw_journal *j)
{
    int i;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        if (j->e[i].dirty)
            return true;
    }
    return false;
}

void vend_fw_journal_ack(struct vend_fw_journal *j)
{
    j->ack_seq = j->seq + 1;
}

int vend_fw_journal_wipe(struct vend_fw_journal *j)
{
    char base[4];
    int i, rc = VEND_OK;

    for (i = 0; i < VEND_FW_JOURNAL_CAP; i++) {
        base_of(base, i);
        if (vend_fw_store_erase(&j->e[i].store, j->hal, base) < 0)
            rc = VEND_EIO;
        memset(&j->e[i], 0, sizeof(j->e[i]));
    }
    return rc;
}
