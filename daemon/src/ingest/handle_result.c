/* handle_result.c - vm/{id}/dispense_result: decode, then the dispense path applies it (or
 * keeps it until the database can take it: dispense_result_submit). */
#include "dispense_result.h"
#include "ingest.h"
#include "log.h"
#include "vendd.h"
#include "vend/codec.h"
#include "vend/err.h"
#include "vend/msg.h"

int handle_result(struct vendd *v, const char *machine_id, const char *payload, size_t len)
{
    struct vend_dispense_result r;
    struct vend_diag diag;
    int rc = vend_decode_dispense_result(payload, len, &r, &diag);

    if (rc < 0) {
        log_warnx("rejected dispense_result from '%s': %s: %s", machine_id, diag.field,
                  vend_strerror(rc));
        return rc;
    }
    /* PUBACKed already (libmosquitto acknowledges before on_message): only vendd has it. */
    crashpoint(&v->crash, CRASH_RESULT_RECEIVED);
    return dispense_result_submit(v, machine_id, &r);
}
