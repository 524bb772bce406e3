/* store.c - two checksummed, numbered copies per record in the kv store (store.h). */
#include <string.h>

#include "vend/err.h"
#include "vend/fw/store.h"

#define CRC_AT (VEND_FW_KV_VALUE_SIZE - 4)

uint32_t vend_fw_crc32(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int b;

    /* Bitwise: a record is 92 bytes, and a table would cost 1 KiB of flash for nothing. */
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

void vend_fw_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

void vend_fw_put_u32(uint8_t *p, uint32_t v)
{
    vend_fw_put_u16(p, (uint16_t)(v & 0xFFFFu));
    vend_fw_put_u16(p + 2, (uint16_t)(v >> 16));
}

uint16_t vend_fw_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t vend_fw_get_u32(const uint8_t *p)
{
    return (uint32_t)vend_fw_get_u16(p) | ((uint32_t)vend_fw_get_u16(p + 2) << 16);
}

/* "<base>.<copy>" into key (VEND_FW_KV_KEY_MAX + 1 bytes); false if base is too long. */
static bool key_of(char *key, const char *base, int copy)
{
    size_t n = strlen(base);

    if (n == 0 || n > VEND_FW_STORE_BASE_MAX)
        return false;
    memcpy(key, base, n);
    key[n] = '.';
    key[n + 1] = (char)('0' + copy);
    key[n + 2] = '\0';
    return true;
}

/* Reads one copy: 1 and its seq if valid, 0 if absent or damaged, or VEND_EIO. */
static int read_copy(const struct vend_fw_hal *hal, const char *base, int copy, uint8_t kind,
                     vend_fw_store_valid_fn *valid, uint8_t *value, uint32_t *seq)
{
    char key[VEND_FW_KV_KEY_MAX + 1];
    int rc;

    if (!key_of(key, base, copy))
        return VEND_EINVAL;
    rc = hal->kv_get(hal->ctx, key, value);
    if (rc == VEND_ENOTFOUND)
        return 0;
    if (rc < 0)
        return VEND_EIO;
    *seq = vend_fw_get_u32(value + 2);
    if (value[0] != kind || value[1] != VEND_FW_STORE_VERSION || *seq == 0 ||
        vend_fw_get_u32(value + CRC_AT) != vend_fw_crc32(value, CRC_AT) ||
        !valid(value + VEND_FW_STORE_HEAD))
        return 0;
    return 1;
}

int vend_fw_store_load(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base,
                       uint8_t kind, vend_fw_store_valid_fn *valid, uint8_t *payload, uint32_t *seq)
{
    uint8_t v[2][VEND_FW_KV_VALUE_SIZE];
    uint32_t s[2] = {0, 0};
    int ok[2], c, cur;

    for (c = 0; c < 2; c++) {
        ok[c] = read_copy(hal, base, c, kind, valid, v[c], &s[c]);
        if (ok[c] < 0)
            return ok[c];
        if (!ok[c])
            s[c] = 0;
    }
    st->seq[0] = s[0];
    st->seq[1] = s[1];
    if (s[0] == 0 && s[1] == 0)
        return VEND_ENOTFOUND;
    cur = s[1] > s[0] ? 1 : 0;
    memcpy(payload, v[cur] + VEND_FW_STORE_HEAD, VEND_FW_STORE_PAYLOAD);
    *seq = s[cur];
    return VEND_OK;
}

int vend_fw_store_save(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base,
                       uint8_t kind, const uint8_t *payload, uint32_t seq)
{
    char key[VEND_FW_KV_KEY_MAX + 1];
    uint8_t v[VEND_FW_KV_VALUE_SIZE];
    /* The older (or unknown) copy: never the one holding the current value. */
    int copy = st->seq[0] <= st->seq[1] ? 0 : 1;

    if (seq == 0 || seq <= st->seq[0] || seq <= st->seq[1] || !key_of(key, base, copy))
        return VEND_EINVAL;
    v[0] = kind;
    v[1] = VEND_FW_STORE_VERSION;
    vend_fw_put_u32(v + 2, seq);
    memcpy(v + VEND_FW_STORE_HEAD, payload, VEND_FW_STORE_PAYLOAD);
    vend_fw_put_u32(v + CRC_AT, vend_fw_crc32(v, CRC_AT));
    /* From here until the put returns, this copy holds anything at all. */
    st->seq[copy] = 0;
    if (hal->kv_put(hal->ctx, key, v) < 0)
        return VEND_EIO;
    st->seq[copy] = seq;
    return VEND_OK;
}

int vend_fw_store_erase(struct vend_fw_store *st, const struct vend_fw_hal *hal, const char *base)
{
    char key[VEND_FW_KV_KEY_MAX + 1];
    int c;

    for (c = 0; c < 2; c++) {
        if (!key_of(key, base, c))
            return VEND_EINVAL;
        st->seq[c] = 0;
        if (hal->kv_erase(hal->ctx, key) < 0)
            return VEND_EIO;
    }
    return VEND_OK;
}
