/*
 * fuzz_midtrans_answer.c - Midtrans's answers to vendd's calls (charge, Snap transaction,
 * status, expire, cancel, refund) as domain/midtrans.c reads them: a gateway answering
 * garbage, or whoever sits on the path to it. The input's first byte picks the call, the next
 * two the HTTP status (100..599), the rest is the body. Never a crash; the result is one of
 * the documented errors, its strings terminated, without control characters (they reach the
 * log and the customer), and a success carries what its call must.
 */
#include <string.h>

#include "fuzz.h"
#include "httpc.h"
#include "midtrans.h"
#include "vend/err.h"

#define BODY_MAX (64u * 1024u)

/* A terminated string of its array without C0 controls or DEL. */
#define CHECK_TEXT(a)                                                                              \
    do {                                                                                           \
        FUZZ_CHECK(memchr((a), '\0', sizeof(a)) != NULL);                                          \
        for (const char *c_ = (a); *c_ != '\0'; c_++)                                              \
            FUZZ_CHECK((unsigned char)*c_ >= 0x20 && *c_ != 0x7f);                                 \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct midtrans_result res;
    static char body[BODY_MAX + 1];
    struct httpc_response hr = {.detail = "fuzz"};
    enum midtrans_call call;
    int err;

    if (size < 3 || size - 3 > BODY_MAX)
        return 0;
    call = (enum midtrans_call)(data[0] % (MIDTRANS_REFUND + 1));
    hr.status = 100 + (long)(((unsigned)data[1] << 8 | data[2]) % 500);
    memcpy(body, data + 3, size - 3);
    body[size - 3] = '\0';
    hr.body = body;
    hr.len = size - 3;
    memset(&res, 0, sizeof(res));
    midtrans_read_answer(call, &hr, &res);

    err = res.err;
    FUZZ_CHECK(err == VEND_OK || err == VEND_ETIMEDOUT || err == VEND_EUNAVAILABLE ||
               err == VEND_EIO || err == VEND_EAUTH || err == VEND_ENOTFOUND || err == VEND_ESTATE);
    FUZZ_CHECK(res.http_status == hr.status);
    FUZZ_CHECK(memchr(res.detail, '\0', sizeof(res.detail)) != NULL);
    CHECK_TEXT(res.status_code);
    CHECK_TEXT(res.token);
    CHECK_TEXT(res.redirect_url);
    CHECK_TEXT(res.transaction_id);
    CHECK_TEXT(res.qr_string);
    if (err != VEND_OK)
        return 0;
    switch (call) {
    case MIDTRANS_CREATE_SNAP:
        FUZZ_CHECK(res.token[0] != '\0' && res.redirect_url[0] != '\0');
        break;
    case MIDTRANS_CREATE_QRIS:
        FUZZ_CHECK(res.qr_string[0] != '\0' && res.transaction_id[0] != '\0');
        break;
    case MIDTRANS_STATUS:
        FUZZ_CHECK(res.status.order_id[0] != '\0' && res.status.amount >= 0);
        CHECK_TEXT(res.status.order_id);
        CHECK_TEXT(res.status.transaction_status);
        CHECK_TEXT(res.status.signature_key);
        (void)midtrans_outcome_of(&res.status);
        break;
    case MIDTRANS_EXPIRE:
    case MIDTRANS_CANCEL:
    case MIDTRANS_REFUND:
        break;
    }
    return 0;
}
