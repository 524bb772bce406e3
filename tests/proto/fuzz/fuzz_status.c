/* fuzz_status.c - decode; on success encode, decode again and expect the same struct. */
#include "fuzz.h"

static int same(const struct vend_status *a, const struct vend_status *b)
{
    return a->status == b->status && a->door == b->door && a->has_rssi == b->has_rssi &&
           a->rssi == b->rssi && a->has_fw == b->has_fw && strcmp(a->fw, b->fw) == 0 &&
           a->has_settle == b->has_settle && a->settle == b->settle &&
           a->has_config_error == b->has_config_error &&
           strcmp(a->config_error, b->config_error) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_status a, b;
    struct vend_diag dg;
    int rc, n;

    rc = vend_decode_status((const char *)data, size, &a, &dg);
    fuzz_check_diag(rc, &dg);
    if (rc != VEND_OK)
        return 0;
    n = vend_encode_status(buf, sizeof(buf), &a);
    FUZZ_CHECK(n > 0 && (size_t)n <= VEND_PAYLOAD_MAX && strlen(buf) == (size_t)n);
    rc = vend_decode_status(buf, (size_t)n, &b, &dg);
    fuzz_check_diag(rc, &dg);
    FUZZ_CHECK(rc == VEND_OK);
    FUZZ_CHECK(same(&a, &b));
    return 0;
}
