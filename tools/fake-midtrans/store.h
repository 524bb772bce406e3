/*
 * store.h - the fake's state: transactions with their refunds and status
 * history, the failure modes armed by tests, the log of requests received,
 * and the runtime settings. One mutex guards all of it, because the HTTP
 * server runs a thread per connection and the notifier has its own thread.
 *
 * Transactions follow Midtrans's status cycle: a Core QRIS charge starts
 * "pending"; a Snap transaction has no status at all (GET status answers
 * 404) until the customer picks a payment method. The operations that
 * Midtrans's API offers (create, status, expire, cancel, refund) and the ones
 * only the customer or Midtrans itself can cause (pay, deny, ...) are
 * separate calls, so the HTTP layer can keep the two APIs apart.
 *
 * Every call that returns a Midtrans answer fills *out with a new JSON
 * reference (status_code, status_message and the transaction fields, as
 * Midtrans sends them) and, when Midtrans would send a notification, *note
 * with one for the notifier (NULL when there is nothing to send, e.g. no
 * notification URL and auto_notify off). On error *out and *note stay NULL.
 *
 * Errors (negative VEND_E*, mapped to Midtrans status codes by the caller):
 *   VEND_ENOTFOUND  no such order_id / transaction_id (404)
 *   VEND_ECONFLICT  order_id already in use and not reusable (406)
 *   VEND_ESTATE     the action is not allowed in this status (412)
 *   VEND_ERANGE     refund amount is zero or more than what is left (414)
 *   VEND_EDUPKEY    refund_key reused with a different amount (406)
 *   VEND_ENOSPACE   the store is full (--max-transactions) or a transaction
 *                   has its maximum number of refunds
 *   VEND_EINVAL     a control-API argument is not acceptable
 */
#ifndef FAKE_MIDTRANS_STORE_H
#define FAKE_MIDTRANS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "fake.h"
#include "notify.h"

#define STORE_REFUND_KEY_MAX 100
#define STORE_REASON_MAX     255
#define STORE_AMOUNT_MAX     999999999999LL /* far above any real rupiah amount, below 2^53 */

enum store_kind {
    STORE_CORE, /* POST /v2/charge */
    STORE_SNAP, /* POST /snap/v1/transactions */
};

struct store_create_req {
    enum store_kind kind;
    char order_id[FAKE_ORDER_ID_MAX + 1];
    int64_t gross_amount;
    char acquirer[16]; /* Core QRIS: "gopay" or "airpay shopee" */
    int64_t expiry_s;  /* Core: custom_expiry in seconds; 0 = the default 15 min */
    /* X-Override-Notification / X-Append-Notification, already split. */
    char override_urls[FAKE_URLS_PER_HDR][FAKE_URL_MAX + 1];
    size_t noverride;
    char append_urls[FAKE_URLS_PER_HDR][FAKE_URL_MAX + 1];
    size_t nappend;
};

struct store_refund_req {
    char refund_key[STORE_REFUND_KEY_MAX + 1]; /* "" = Midtrans makes one up */
    int64_t amount;                            /* 0 = the whole gross_amount */
    char reason[STORE_REASON_MAX + 1];
};

/* A control-API state change (POST /_fake/{action}/{id}). */
struct store_action_req {
    const char *action;       /* pay, pending, expire, deny, cancel, failure */
    const char *status;       /* pay only: "settlement" (default) or "capture" */
    const char *fraud_status; /* pay only: "accept" (default), "challenge", "deny" */
    const char *payment_type; /* pay/pending on a Snap transaction: default "qris" */
    bool notify;              /* send the notification Midtrans would send */
};

/* Failure modes, armed per endpoint by POST /_fake/fail. */
enum store_fail_mode {
    STORE_FAIL_NONE,
    STORE_FAIL_HTTP,    /* answer http_status (5xx) with Midtrans's error body */
    STORE_FAIL_TIMEOUT, /* process, then hold the answer delay_ms (and maybe drop) */
    STORE_FAIL_GARBAGE, /* answer a non-JSON body */
    STORE_FAIL_REFUSE,  /* answer a Midtrans error status_code */
};

#define STORE_FAIL_BODY_MAX 4096

struct store_fail {
    enum store_fail_mode mode;
    unsigned count;       /* calls left */
    unsigned http_status; /* HTTP: 500..599; REFUSE/GARBAGE: 0 = default */
    unsigned delay_ms;    /* TIMEOUT */
    bool drop;            /* TIMEOUT: close without answering after the delay */
    char status_code[4];  /* REFUSE: Midtrans code, e.g. "412" */
    char status_message[256];
    char body[STORE_FAIL_BODY_MAX + 1]; /* GARBAGE: "" = an HTML error page */
};

/* Runtime settings (GET/POST /_fake/config). */
struct store_settings {
    char notify_url[FAKE_URL_MAX + 1];
    bool notify_pending;   /* a created QRIS charge notifies "pending" */
    bool auto_notify;      /* state changes notify by themselves */
    bool core_http_mirror; /* Core API: HTTP status = body status_code */
};

/* What the HTTP layer records about one Midtrans request. */
struct store_logreq {
    const char *method;
    const char *path;
    const char *endpoint; /* failure-injection name, or "unknown" */
    const char *auth;     /* "ok", "missing", "malformed", "wrong_key", "password_not_empty" */
    const char *content_type, *accept, *user_agent, *x_override, *x_append; /* NULL = absent */
    const char *body;
    size_t body_len;
};

/* Never NULL. base is "http://127.0.0.1:PORT", used in URLs we hand out. */
struct store *store_new(const struct fake_conf *conf, const char *base);
void store_free(struct store *s);

/* Midtrans API. id is an order_id or a transaction_id. */
int store_create(struct store *s, const struct store_create_req *rq, json_t **out,
                 struct note **note);
int store_status(struct store *s, const char *id, json_t **out);
int store_expire(struct store *s, const char *id, json_t **out, struct note **note);
int store_cancel(struct store *s, const char *id, json_t **out, struct note **note);
int store_refund(struct store *s, const char *id, const struct store_refund_req *rq, json_t **out,
                 struct note **note);

/* Control API. */
int store_action(struct store *s, const char *id, const struct store_action_req *rq, json_t **out,
                 struct note **note);
/* A notification of the transaction as it is now, or, with status set, as
 * if its transaction_status were that (an old one: out-of-order delivery).
 * bad_signature signs with the wrong key; url replaces the targets. */
int store_make_note(struct store *s, const char *id, const char *status, bool bad_signature,
                    const char *url, struct note **note);
/* The fake's own view of one transaction, or a summary of all. */
int store_tx_json(struct store *s, const char *id, json_t **out);
json_t *store_list_json(struct store *s);
/* Looks a Snap token or a QR transaction_id up for the browser pages. */
int store_lookup_token(struct store *s, const char *token, char *order_id, size_t size);
int store_qr_string(struct store *s, const char *transaction_id, char *qr, size_t size);

/* Pending Core transactions past their expiry_time become "expire"; up to
 * max notes are returned in notes[] (the caller sends or frees them). */
size_t store_expire_due(struct store *s, time_t now, struct note **notes, size_t max);

/* Failure modes. endpoint is a route's name or "any". */
int store_fail_set(struct store *s, const char *endpoint, const struct store_fail *f);
void store_fail_clear(struct store *s);
/* Consumes one call of the failure armed for endpoint (else "any"); false
 * if none is armed. */
bool store_fail_take(struct store *s, const char *endpoint, struct store_fail *out);
json_t *store_fail_json(struct store *s);

/* Request log (bounded ring). Returns the entry's seq for store_log_answer. */
uint64_t store_log_request(struct store *s, const struct store_logreq *r);
void store_log_answer(struct store *s, uint64_t seq, unsigned http_status, const char *injected);
json_t *store_requests_json(struct store *s, uint64_t since);
void store_requests_clear(struct store *s);

void store_settings_get(struct store *s, struct store_settings *out);
void store_settings_set(struct store *s, const struct store_settings *in);

/* Back to the state at start: no transactions, requests or failures, the
 * settings from the command line. */
void store_reset(struct store *s);

/* Sleeps ms, or less if store_stop() is called: held answers must not keep
 * the process from exiting. */
void store_hold(struct store *s, unsigned ms);
void store_stop(struct store *s);

/* Midtrans signature_key: lowercase hex SHA-512 of order_id + status_code +
 * gross_amount + server_key. out must hold 129 bytes. */
void store_signature(const char *order_id, const char *status_code, const char *gross_amount,
                     const char *server_key, char out[129]);

#endif
