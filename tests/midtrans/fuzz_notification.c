/*
 * fuzz_notification.c - the payment notification decoder on arbitrary bytes (the webhook is
 * open to the internet). It must answer VEND_OK or an error naming a field, never crash,
 * overrun or leak; a decoded notification holds only bounded, NUL-terminated strings.
 */
#include <string.h>

#include "fuzz.h"
#include "midtrans.h"
#include "vend/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct midtrans_notification n;
    char why[160] = "";
    int rc = midtrans_parse_notification((const char *)data, size, &n, why, sizeof(why));

    FUZZ_CHECK(rc == VEND_OK || (rc < 0 && why[0] != '\0'));
    if (rc == VEND_OK) {
        FUZZ_CHECK(memchr(n.order_id, '\0', sizeof(n.order_id)) != NULL);
        FUZZ_CHECK(n.order_id[0] != '\0' && n.amount >= 0);
        FUZZ_CHECK(memchr(n.signature_key, '\0', sizeof(n.signature_key)) != NULL);
        /* Verifying any decoded notification is safe too. */
        (void)midtrans_signature_ok(&n, "k");
        (void)midtrans_outcome_of(&n);
    }
    return 0;
}
