/* fuzz_telemetry.c - decode; on success encode, decode again and expect the same struct. */
#include "fuzz.h"

static int same(const struct vend_telemetry *a, const struct vend_telemetry *b)
{
    size_t i;

    if (a->has_timestamp != b->has_timestamp || strcmp(a->timestamp, b->timestamp) != 0 ||
        a->nslots != b->nslots || a->has_temperature != b->has_temperature ||
        a->temperature != b->temperature || a->door != b->door)
        return 0;
    for (i = 0; i < a->nslots; i++) {
        if (a->slots[i].id != b->slots[i].id || a->slots[i].level != b->slots[i].level)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_telemetry a, b;
    struct vend_diag dg;
    int rc, n;

    rc = vend_decode_telemetry((const char *)data, size, &a, &dg);
    fuzz_check_diag(rc, &dg);
    if (rc != VEND_OK)
        return 0;
    n = vend_encode_telemetry(buf, sizeof(buf), &a);
    FUZZ_CHECK(n > 0 && (size_t)n <= VEND_PAYLOAD_MAX && strlen(buf) == (size_t)n);
    rc = vend_decode_telemetry(buf, (size_t)n, &b, &dg);
    fuzz_check_diag(rc, &dg);
    FUZZ_CHECK(rc == VEND_OK);
    FUZZ_CHECK(same(&a, &b));
    return 0;
}
