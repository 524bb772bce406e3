/* fuzz_dispense_result.c - decode; on success encode, decode again and expect the same struct. */
#include "fuzz.h"

static int same(const struct vend_dispense_result *a, const struct vend_dispense_result *b)
{
    return strcmp(a->order_id, b->order_id) == 0 && a->slot == b->slot &&
           a->success == b->success && a->drop_detected == b->drop_detected &&
           a->has_duration == b->has_duration && a->duration_ms == b->duration_ms &&
           a->has_error == b->has_error && strcmp(a->error, b->error) == 0 && a->unit == b->unit;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_dispense_result a, b;
    struct vend_diag dg;
    int rc, n;

    rc = vend_decode_dispense_result((const char *)data, size, &a, &dg);
    fuzz_check_diag(rc, &dg);
    if (rc != VEND_OK)
        return 0;
    n = vend_encode_dispense_result(buf, sizeof(buf), &a);
    FUZZ_CHECK(n > 0 && (size_t)n <= VEND_PAYLOAD_MAX && strlen(buf) == (size_t)n);
    rc = vend_decode_dispense_result(buf, (size_t)n, &b, &dg);
    fuzz_check_diag(rc, &dg);
    FUZZ_CHECK(rc == VEND_OK);
    FUZZ_CHECK(same(&a, &b));
    return 0;
}
