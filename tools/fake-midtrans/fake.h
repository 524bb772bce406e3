/*
 * fake.h - the one context of fake-midtrans and the bounds every module
 * shares.
 *
 * main() fills struct fake_conf from the command line, builds the store,
 * the notifier and the HTTP server, and hands this struct to every
 * libmicrohttpd callback as its closure: there is no other global state.
 */
#ifndef FAKE_MIDTRANS_FAKE_H
#define FAKE_MIDTRANS_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds on everything that comes from outside. Midtrans's own limits where
 * its documentation gives them (order_id), generous round numbers elsewhere. */
#define FAKE_KEY_MAX        128   /* --server-key */
#define FAKE_URL_MAX        512   /* one notification URL */
#define FAKE_ORDER_ID_MAX   50    /* Snap/Core order_id (Midtrans) */
#define FAKE_ID_MAX         64    /* a path {id}: order_id or a 36-char transaction_id */
#define FAKE_BODY_MAX       32768 /* request body */
#define FAKE_MAX_TX_DEFAULT 10000 /* --max-transactions */
#define FAKE_URLS_PER_HDR   3     /* X-Override/X-Append-Notification (Midtrans) */

struct store;
struct notifier;
struct http_server;

struct fake_conf {
    char server_key[FAKE_KEY_MAX + 1];
    char notify_url[FAKE_URL_MAX + 1]; /* "" = none */
    char merchant_id[32];
    uint16_t port;              /* 0 = pick a free one */
    unsigned retry_unit_ms;     /* one "minute" of Midtrans's retry schedule */
    unsigned notify_timeout_ms; /* how long a notification POST may take */
    size_t max_transactions;
    bool quiet; /* no per-request log line on stderr */
};

struct fake {
    struct fake_conf conf;
    struct store *store;
    struct notifier *notifier;
    struct http_server *http;
    uint16_t port; /* the bound port */
    char base[64]; /* "http://127.0.0.1:PORT", for URLs we hand out */
};

#endif
