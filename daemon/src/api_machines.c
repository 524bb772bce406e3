/* Placeholder: being written (machines, slots, stock, config). Answers 501 until then. */
#include "api.h"

#define NOT_YET(fn)                                                                                \
    void fn(void *ctx, const struct http_request *req, struct http_response *res)                 \
    {                                                                                              \
        (void)ctx;                                                                                 \
        (void)req;                                                                                 \
        http_reply_error(res, 501, "NOT_IMPLEMENTED", "not implemented yet");                      \
    }
NOT_YET(api_machines_create)
NOT_YET(api_machines_list)
NOT_YET(api_machines_get)
NOT_YET(api_machines_put_slot)
NOT_YET(api_machines_put_config)
NOT_YET(api_stock_get)
