/*
 * store.h - one logical record kept as two checksummed, numbered copies in the kv store.
 *
 * A record named base lives in the keys "<base>.0" and "<base>.1". Each copy is one kv value
 * of VEND_FW_KV_VALUE_SIZE bytes, little-endian:
 *
 *   [0]       kind: the record type ('J' journal entry, 'C' config), so that a copy of one
 *             type is never read as another
 *   [1]       layout version (VEND_FW_STORE_VERSION)
 *   [2..5]    seq: the version number of the contents, never 0
 *   [6..91]   payload, VEND_FW_STORE_PAYLOAD bytes; the caller gives it meaning
 *   [92..95]  CRC-32 (IEEE 802.3) of bytes 0..91
 *
 * A copy is valid when its kind, version and CRC match, its seq is not 0 and the caller's
 * validator accepts the payload. The value of the record is the valid copy with the higher
 * seq. vend_fw_store_save() writes to the other copy: the one that does not hold the value.
 * So a write that is cut off or fails can damage only the copy holding the version before
 * the current one, and the current one stays readable (journal.h has the whole argument).
 *
 * Callers number versions with one counter that only grows, so a newer version always has
 * the higher seq.
 *
 * No OS headers: compiled freestanding for the ESP32.
 */
#ifndef VEND_FW_STORE_H
#define VEND_FW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/fw/hal.h"

#define VEND_FW_STORE_VERSION 1
#define VEND_FW_STORE_HEAD    6 /* kind, version, seq */
#define VEND_FW_STORE_PAYLOAD (VEND_FW_KV_VALUE_SIZE - VEND_FW_STORE_HEAD - 4)
/* Longest base name: the key adds ".0". */
#define VEND_FW_STORE_BASE_MAX (VEND_FW_KV_KEY_MAX - 2)

/* What the store knows about the two copies of one record. */
struct vend_fw_store {
    uint32_t seq[2]; /* seq of each copy when last read or written; 0 = invalid or unknown */
};

/* Accepts or rejects a payload whose CRC matched (bounds, enums, strings). */
typedef bool vend_fw_store_valid_fn(const uint8_t *payload);

/*
 * Reads both copies of base. VEND_OK: payload (VEND_FW_STORE_PAYLOAD bytes) and *seq hold
 * the current value. VEND_ENOTFOUND: neither copy is valid (never written, or both damaged).
 * VEND_EIO: a copy could not be read; *st is then not to be written through, because the
 * unreadable copy may hold the current value.
 */
int vend_fw_store_load(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base,
                       uint8_t kind, vend_fw_store_valid_fn *valid, uint8_t *payload,
                       uint32_t *seq);

/*
 * Writes payload as version seq (greater than both copies' seq) into the copy that does not
 * hold the current value. VEND_OK once durable. VEND_EIO: that copy is now unknown (a retry
 * goes to it again); the current value is untouched.
 */
int vend_fw_store_save(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base,
                       uint8_t kind, const uint8_t *payload, uint32_t seq);

/* Erases both copies. VEND_OK, or VEND_EIO from the store. */
int vend_fw_store_erase(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base);

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32()) of n bytes at p. */
uint32_t vend_fw_crc32(const uint8_t *p, size_t n);

/* Little-endian field access for payloads. */
void vend_fw_put_u16(uint8_t *p, uint16_t v);
void vend_fw_put_u32(uint8_t *p, uint32_t v);
uint16_t vend_fw_get_u16(const uint8_t *p);
uint32_t vend_fw_get_u32(const uint8_t *p);

#endif
