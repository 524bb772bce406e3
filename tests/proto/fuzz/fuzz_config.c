/* fuzz_config.c - decode; on success encode, decode again and expect the same struct. */
#include "fuzz.h"

static int same(const struct vend_config *a, const struct vend_config *b)
{
    return a->motor_timeout_ms == b->motor_timeout_ms &&
           a->drop_sensor_delay_ms == b->drop_sensor_delay_ms &&
           a->telemetry_interval_ms == b->telemetry_interval_ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_config a, b;
    struct vend_diag dg;
    int rc, n;

    rc = vend_decode_config((const char *)data, size, &a, &dg);
    fuzz_check_diag(rc, &dg);
    if (rc != VEND_OK)
        return 0;
    n = vend_encode_config(buf, sizeof(buf), &a);
    FUZZ_CHECK(n > 0 && (size_t)n <= VEND_PAYLOAD_MAX && strlen(buf) == (size_t)n);
    rc = vend_decode_config(buf, (size_t)n, &b, &dg);
    fuzz_check_diag(rc, &dg);
    FUZZ_CHECK(rc == VEND_OK);
    FUZZ_CHECK(same(&a, &b));
    return 0;
}
