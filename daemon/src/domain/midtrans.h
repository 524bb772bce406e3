/*
 * midtrans.h - the Midtrans payment gateway as vendd uses it: create a Snap or QRIS
 * transaction, ask its status, expire or cancel it, refund it, and read and verify the
 * notifications it sends. The calls go through httpc (libcurl on the loop), so a slow or
 * absent gateway never stalls vendd; every answer is checked before it is believed.
 *
 * What counts (from Midtrans's documentation):
 *   - signature_key = lowercase hex SHA-512(order_id + status_code + gross_amount + server
 *     key), over the strings exactly as received; compared in constant time;
 *   - paid = transaction_status "settlement", or "capture" with fraud_status "accept" (or no
 *     fraud_status), with status_code "200";
 *   - an answer's JSON status_code of 401 and above is a failure whatever the HTTP status
 *     (407 is the expire API's success), and a 5xx or no answer means "try again later".
 */
#ifndef VENDD_MIDTRANS_H
#define VENDD_MIDTRANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vend/msg.h"

struct httpc;
struct httpc_response;
struct midtrans;

#define MIDTRANS_SIGNATURE_HEX 128
/* Midtrans allows [A-Za-z0-9_~.-]{1,50} as an order id; vendd's own ids are shorter. */
#define MIDTRANS_ORDER_ID_MAX 50
/* Connecting takes at most this (the whole call: MIDTRANS_TIMEOUT_MS). */
#define MIDTRANS_CONNECT_TIMEOUT_MS 3000
/* A notification body vendd reads; real ones are about 1 KiB. */
#define MIDTRANS_NOTIFICATION_MAX 16384

/* A notification, or the same shape as GET /v2/{id}/status answers it. */
struct midtrans_notification {
    char order_id[VEND_ORDER_ID_MAX + 1];
    char transaction_id[65];
    char transaction_status[24];
    char status_code[8];
    char gross_amount[24]; /* as received, e.g. "10000.00": the signature covers this text */
    char fraud_status[16]; /* "" when absent */
    char payment_type[32];
    char signature_key[MIDTRANS_SIGNATURE_HEX + 1]; /* "" when absent */
    int64_t amount;                                 /* gross_amount in whole rupiah */
};

/* What a notification or status means for the order. */
enum midtrans_outcome {
    MIDTRANS_PAID,      /* settlement, or capture with fraud_status accept */
    MIDTRANS_PENDING,   /* waiting for the customer: nothing to do */
    MIDTRANS_CANCELLED, /* deny, cancel, failure */
    MIDTRANS_EXPIRED,   /* expire */
    MIDTRANS_REFUNDED,  /* refund, partial_refund */
    MIDTRANS_OTHER,     /* anything else (chargeback, authorize, a capture under review) */
};

/*
 * Decode a notification body (untrusted): a JSON object of at most MIDTRANS_NOTIFICATION_MAX
 * bytes whose order_id, transaction_status, status_code and gross_amount are strings of the
 * expected form; other fields are optional and unknown ones ignored. gross_amount must be
 * whole rupiah ("10000" or "10000.00"). Returns VEND_OK, or a VEND_E* with why naming the
 * field.
 */
int midtrans_parse_notification(const char *body, size_t len, struct midtrans_notification *n,
                                char *why, size_t why_size);

/* True when n->signature_key is the signature of n under server_key (constant time). */
bool midtrans_signature_ok(const struct midtrans_notification *n, const char *server_key);

/* Write the signature of n under server_key as 128 lowercase hex digits + NUL (for tests). */
void midtrans_sign(const struct midtrans_notification *n, const char *server_key,
                   char out[MIDTRANS_SIGNATURE_HEX + 1]);

enum midtrans_outcome midtrans_outcome_of(const struct midtrans_notification *n);
const char *midtrans_outcome_name(enum midtrans_outcome o);

/* ---- calls ---------------------------------------------------------------------------- */

struct midtrans_config {
    const char *server_key;       /* required */
    const char *api_base;         /* Core API base, "/v2/..." is appended */
    const char *snap_base;        /* Snap base, "/transactions" is appended */
    const char *notification_url; /* NULL or "": no X-Override-Notification */
    uint32_t connect_timeout_ms;
    uint32_t timeout_ms;
};

enum midtrans_call {
    MIDTRANS_CREATE_SNAP,
    MIDTRANS_CREATE_QRIS,
    MIDTRANS_STATUS,
    MIDTRANS_EXPIRE,
    MIDTRANS_CANCEL,
    MIDTRANS_REFUND,
};

/* One line of an order, for item_details (Midtrans checks they add up to the total). */
struct midtrans_item {
    char id[16];
    char name[51];
    int64_t price;
    int64_t quantity;
};

struct midtrans_request {
    enum midtrans_call call;
    const char *order_id;
    int64_t amount;                    /* CREATE_*: the total; REFUND: the amount */
    const struct midtrans_item *items; /* CREATE_*: may be NULL */
    uint32_t expiry_minutes;           /* CREATE_*: 0 = Midtrans's default */
    size_t nitems;
    const char *refund_key; /* REFUND */
    const char *reason;     /* REFUND */
};

struct midtrans_result {
    /*
     * VEND_OK: Midtrans did it (for STATUS: it answered with the transaction);
     * VEND_ETIMEDOUT: no answer in time; VEND_EUNAVAILABLE: could not connect, or a 5xx;
     * VEND_EIO: an answer that is not what Midtrans sends (garbage);
     * VEND_EAUTH: the server key was refused; VEND_ENOTFOUND: no such transaction;
     * VEND_ESTATE: Midtrans refused it (e.g. 412 not in a state for it, 406 duplicate).
     * Only VEND_ETIMEDOUT, VEND_EUNAVAILABLE and VEND_EIO are worth the same call again.
     */
    int err;
    long http_status;
    char status_code[8]; /* the answer's JSON status_code, "" if none */
    char detail[200];    /* for the log: what went wrong, never a secret */
    /* CREATE_SNAP */
    char token[128];
    char redirect_url[512];
    /* CREATE_QRIS */
    char transaction_id[65];
    char qr_string[1024];
    /* STATUS */
    struct midtrans_notification status;
    /* REFUND */
    int64_t refund_amount;
};

typedef void midtrans_done_fn(void *arg, const struct midtrans_result *res);

/* A client; cfg's strings are copied. Returns VEND_OK or VEND_EINVAL (logged). */
int midtrans_new(struct midtrans **out, struct httpc *httpc, const struct midtrans_config *cfg);
void midtrans_free(struct midtrans *m);

/*
 * Start req; done(arg, result) runs later from the loop, exactly once unless cancelled.
 * *id (may be NULL) is for midtrans_cancel(). Returns VEND_OK or VEND_EINVAL.
 */
int midtrans_start(struct midtrans *m, const struct midtrans_request *req, midtrans_done_fn *done,
                   void *arg, uint64_t *id);
void midtrans_cancel(struct midtrans *m, uint64_t id);

/*
 * What midtrans_start() makes of an answer to call before done() gets it: hr (the transport's
 * outcome, the HTTP status and the body, all untrusted) into *res, which the caller zeroed.
 * Public for the fuzz target of Midtrans's answers (tests/fuzz/fuzz_midtrans_answer.c).
 */
void midtrans_read_answer(enum midtrans_call call, const struct httpc_response *hr,
                          struct midtrans_result *res);

#endif
