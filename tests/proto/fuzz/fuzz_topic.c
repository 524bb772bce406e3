/* fuzz_topic.c - parse; on success format again and expect the very same bytes. */
#include "fuzz.h"
#include "vend/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[VEND_TOPIC_MAX + 1];
    struct vend_topic t;
    int n;

    if (vend_topic_parse((const char *)data, size, &t) != VEND_OK)
        return 0;
    FUZZ_CHECK(vend_machine_id_valid(t.machine_id));
    n = vend_topic_format(buf, sizeof(buf), t.machine_id, t.kind);
    FUZZ_CHECK(n > 0 && (size_t)n == size && memcmp(buf, data, size) == 0);
    return 0;
}
