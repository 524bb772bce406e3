/*
 * journal.h - the machine's persistent memory of the units it was asked about.
 *
 * SPEC §4 rule 1: at most one physical dispense per ordered unit. The journal remembers the
 * last VEND_FW_JOURNAL_CAP units (order id + unit) with what became of them, so that a
 * repeated command, a command after a reboot, and vendd's "settle" are answered from it and
 * never run the motor again.
 *
 * Entries. The journal is a fixed array of VEND_FW_JOURNAL_CAP entries; each holds one unit
 * in one of these states:
 *
 *   STARTED    written and durable before the motor is switched on
 *   DONE       the motor ran; the result is final (POWER_LOSS: it may have run, see below)
 *   REFUSED    the motor never ran and never will: BUSY, INVALID_SLOT, DOOR_OPEN, EXPIRED,
 *              MOTOR_FAULT, JOURNAL_FAULT
 *   CANCELLED  vendd settled the unit before any command for it arrived: it must never run
 *
 * A unit moves STARTED -> DONE, or is written once as REFUSED or CANCELLED, always in the
 * same entry. Only STARTED is ever left behind by a power cut; the machine turns it into
 * DONE with POWER_LOSS on the next start (machine.h), so it is never run again.
 *
 * Storage. Entry i is the record "jNN" of store.h: two kv copies "jNN.0" and "jNN.1", each
 * with a version number (seq) and a CRC-32; the valid copy with the higher seq is the entry.
 * One counter numbers every version the journal writes, so seq only grows.
 *
 * Crash consistency. A write of entry i goes to the copy of i that does not hold its current
 * version, so whatever a power cut or a failed put leaves in that copy (nothing, half the
 * bytes, garbage), the current version is still in the other copy with a valid CRC, and a
 * damaged copy fails its CRC and is ignored. After the put returns, the new copy is valid and
 * has the higher seq, so it wins. Hence at every instant each entry reads as either its old
 * or its new version, never a mix, and no write touches any other entry. Because STARTED is
 * durable before the motor starts, a unit whose motor ever ran is in the journal after any
 * power cut, as STARTED or DONE. (The residual risks: both copies decaying in flash, and a
 * checksum collision on torn bytes, 1 in 2^32.)
 *
 * RAM mirror. The whole journal lives in RAM too; lookups never touch flash. An entry whose
 * write failed stays in RAM marked dirty and is written again by vend_fw_journal_flush()
 * (the machine calls it every VEND_FW_RETRY_MS); until then the RAM version answers
 * lookups, and the kv store holds the previous version.
 *
 * Acknowledgement. vendd acknowledges results by moving on: a dispense command for a new
 * unit means vendd has closed every unit before it (one dispense at a time per machine,
 * SPEC §4 rule 10), by a result or by a settle. vend_fw_journal_ack() records that: every
 * version written until then is acknowledged. Versions written later are not, and the
 * machine re-publishes their results (machine.h). The mark (ack_seq) travels in every
 * version written, so it survives a reboot.
 *
 * Eviction. A new unit takes a free entry, else the acknowledged entry with the lowest seq
 * that is not STARTED and not dirty. If there is none (every entry is running, unwritten, or
 * not yet acknowledged: vendd settled more than VEND_FW_JOURNAL_CAP units in a row without a
 * dispense, or the flash is failing), vend_fw_journal_alloc() says VEND_ENOSPACE and the
 * machine records nothing new. The journal's horizon is thus VEND_FW_JOURNAL_CAP units: a
 * command repeated after that many newer units would not be recognized; "expiresAt" (checked
 * when the clock is synced) is the guard beyond it.
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_FW_JOURNAL_H
#define VEND_FW_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "vend/fw/hal.h"
#include "vend/fw/store.h"
#include "vend/msg.h"

#define VEND_FW_JOURNAL_CAP  32  /* units remembered; 2 kv keys each */
#define VEND_FW_JOURNAL_KIND 'J' /* store.h kind byte */

enum vend_fw_jstate {
    VEND_FW_J_FREE = 0,
    VEND_FW_J_STARTED,
    VEND_FW_J_DONE,
    VEND_FW_J_REFUSED,
    VEND_FW_J_CANCELLED,
};

/* One unit and what became of it: the fields of its dispense_result. */
struct vend_fw_jrec {
    enum vend_fw_jstate state;
    char order_id[VEND_ORDER_ID_MAX + 1];
    uint16_t unit; /* as the command or settle gave it: 0 = absent, the same unit as 1 */
    uint16_t slot;
    bool success;
    bool drop_detected;
    bool has_duration;
    uint32_t duration_ms;
    bool has_error;
    enum vend_result_error error; /* if has_error */
};

struct vend_fw_jentry {
    struct vend_fw_jrec rec;
    uint32_t seq; /* version number of rec; 0 = free */
    bool dirty;   /* rec is not yet in the kv store (a write failed) */
    struct vend_fw_store store;
};

struct vend_fw_journal {
    const struct vend_fw_hal *hal;
    uint32_t seq;     /* the last version number used */
    uint32_t ack_seq; /* versions with seq < ack_seq are acknowledged */
    uint32_t write_errors;
    uint32_t evictions;
    struct vend_fw_jentry e[VEND_FW_JOURNAL_CAP];
};

/*
 * Reads the journal from the kv store. VEND_OK (damaged copies are ignored, as after a power
 * cut); VEND_EIO if any copy could not be read: the journal is then unusable (a copy that
 * cannot be read may hold the only trace of a unit), and the caller tries again later.
 * hal must outlive j.
 */
int vend_fw_journal_open(struct vend_fw_journal *j, const struct vend_fw_hal *hal);

/* The entry holding order_id + unit (0 and 1 are the same unit), or -1. */
int vend_fw_journal_find(const struct vend_fw_journal *j, const char *order_id, uint16_t unit);

/* An entry a new unit may take (see Eviction), or VEND_ENOSPACE. Nothing is written. */
int vend_fw_journal_alloc(struct vend_fw_journal *j);

/*
 * Makes rec the new version of entry i and writes it. VEND_OK once durable; VEND_EIO if the
 * write failed: the entry is then dirty, answers lookups from RAM, and flush retries it.
 * VEND_EINVAL for a rec the journal could not read back (bad id, slot, unit, state).
 */
int vend_fw_journal_put(struct vend_fw_journal *j, int i, const struct vend_fw_jrec *rec);

/* Writes the dirty entries; stops at the first failure. VEND_OK when none is left dirty. */
int vend_fw_journal_flush(struct vend_fw_journal *j);

/* True if some entry is dirty. */
bool vend_fw_journal_dirty(const struct vend_fw_journal *j);

/* vendd has closed every unit so far: every version written until now is acknowledged. */
void vend_fw_journal_ack(struct vend_fw_journal *j);

/* True if entry i's current version is acknowledged. */
bool vend_fw_journal_acked(const struct vend_fw_journal *j, int i);

/*
 * Erases every entry from the kv store and RAM (a factory reset). VEND_OK, or VEND_EIO: some
 * copies may remain, so open the journal again before using it.
 */
int vend_fw_journal_wipe(struct vend_fw_journal *j);

#endif
