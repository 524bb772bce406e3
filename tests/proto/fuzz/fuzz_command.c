/* fuzz_command.c - decode; on success encode, decode again and expect the same struct. */
#include "fuzz.h"

static int same(const struct vend_command *a, const struct vend_command *b)
{
    return a->cmd == b->cmd && a->slot == b->slot && strcmp(a->order_id, b->order_id) == 0 &&
           a->timeout_ms == b->timeout_ms && a->unit == b->unit &&
           a->expires_at_ms == b->expires_at_ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[VEND_PAYLOAD_MAX + 1];
    struct vend_command a, b;
    struct vend_diag dg;
    int rc, n;

    rc = vend_decode_command((const char *)data, size, &a, &dg);
    fuzz_check_diag(rc, &dg);
    if (rc != VEND_OK)
        return 0;
    n = vend_encode_command(buf, sizeof(buf), &a);
    FUZZ_CHECK(n > 0 && (size_t)n <= VEND_PAYLOAD_MAX && strlen(buf) == (size_t)n);
    rc = vend_decode_command(buf, (size_t)n, &b, &dg);
    fuzz_check_diag(rc, &dg);
    FUZZ_CHECK(rc == VEND_OK);
    FUZZ_CHECK(same(&a, &b));
    return 0;
}
