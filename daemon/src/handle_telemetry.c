/* Placeholder: being written. */
#include "ingest.h"
#include "vend/err.h"
int handle_telemetry(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    (void)v, (void)machine_id, (void)payload, (void)len;
    return VEND_EINTERNAL;
}
