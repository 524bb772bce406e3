/*
 * store.c - transactions, refunds, failure modes, the request log and the
 * settings of fake-midtrans, behind one mutex (see store.h).
 *
 * Response and notification bodies are built here, from the transaction,
 * because their fields and formats are the point of the fake: they follow
 * Midtrans's documentation (amounts as "10000.00", times as GMT+7
 * "YYYY-MM-DD HH:MM:SS", status_code per status, signature_key as Midtrans signs it).
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vend/err.h"
#include "xmalloc.h"

#define MAX_REFUNDS      16   /* per transaction */
#define MAX_HISTORY      16   /* status changes kept per transaction */
#define LOG_MAX          1000 /* requests kept for GET /_fake/requests */
#define TIME_LEN         20   /* "YYYY-MM-DD HH:MM:SS" */
#define UUID_LEN         37
#define QR_MAX           256
#define AMOUNT_LEN       32
#define DEFAULT_EXPIRY_S 900 /* Midtrans's QRIS default expiry */
#define GMT7_S           (7 * 3600)

/* X(enum, transaction_status, status_code): status_code as the notification docs and the
 * code tables give it - pending 201, paid/refunded 200, failed 202. */
#define TX_STATUS_MAP(X)                                                                           \
    X(NONE, "", "404")                                                                             \
    X(PENDING, "pending", "201")                                                                   \
    X(SETTLEMENT, "settlement", "200")                                                             \
    X(CAPTURE, "capture", "200")                                                                   \
    X(AUTHORIZE, "authorize", "200")                                                               \
    X(DENY, "deny", "202")                                                                         \
    X(CANCEL, "cancel", "202")                                                                     \
    X(EXPIRE, "expire", "202")                                                                     \
    X(FAILURE, "failure", "202")                                                                   \
    X(REFUND, "refund", "200")                                                                     \
    X(PARTIAL_REFUND, "partial_refund", "200")

enum tx_status {
#define TX_ENUM(e, name, code) TX_##e,
    TX_STATUS_MAP(TX_ENUM)
#undef TX_ENUM
        TX_NSTATUS
};

static const struct {
    const char *name;
    const char *code;
} s_status[] = {
#define TX_ROW(e, name, code) {name, code},
    TX_STATUS_MAP(TX_ROW)
#undef TX_ROW
};

#define BIT(st) (1u << (st))

/* Control-API actions: what the customer, the bank or Midtrans itself does
 * to a transaction. TX_NONE as target means "from the request" (pay). */
static const struct action {
    const char *name;
    enum tx_status to;
    unsigned from;
} s_actions[] = {
    {"pending", TX_PENDING, BIT(TX_NONE)},
    {"pay", TX_NONE, BIT(TX_NONE) | BIT(TX_PENDING) | BIT(TX_CAPTURE)},
    {"expire", TX_EXPIRE, BIT(TX_PENDING)},
    /* settlement -> deny is the rare reversal of Midtrans's status cycle. */
    {"deny", TX_DENY, BIT(TX_PENDING) | BIT(TX_CAPTURE) | BIT(TX_SETTLEMENT)},
    {"cancel", TX_CANCEL, BIT(TX_PENDING) | BIT(TX_CAPTURE)},
    {"failure", TX_FAILURE, BIT(TX_PENDING)},
};
#define NACTIONS (sizeof(s_actions) / sizeof(s_actions[0]))

/* Failure-injection targets: the route names, then the catch-all. */
static const char *const s_endpoints[] = {"snap",   "charge", "status", "expire",
                                          "cancel", "refund", "any"};
#define NENDPOINTS (sizeof(s_endpoints) / sizeof(s_endpoints[0]))

static const char *const s_payment_types[] = {"qris",          "gopay",    "shopeepay",
                                              "bank_transfer", "echannel", "credit_card"};
static const char *const s_fraud_statuses[] = {"accept", "challenge", "deny"};

struct refund {
    int64_t amount;
    char key[STORE_REFUND_KEY_MAX + 1];
    char reason[STORE_REASON_MAX + 1];
    char created_at[TIME_LEN];
    json_t *answer; /* the response, replayed for the same refund_key */
};

struct hist {
    enum tx_status st;
    char at[TIME_LEN];
};

struct tx {
    enum store_kind kind;
    enum tx_status st;
    bool superseded; /* order_id reused after expire/cancel */
    char order_id[FAKE_ORDER_ID_MAX + 1];
    char transaction_id[UUID_LEN];
    char snap_token[UUID_LEN];
    char payment_type[16];
    char acquirer[16];
    char issuer[16];
    char fraud_status[12];
    char cross_ref[UUID_LEN];
    int64_t gross;
    int64_t refunded;
    char transaction_time[TIME_LEN];
    char settlement_time[TIME_LEN];
    char expiry_time[TIME_LEN];
    time_t expiry_at; /* 0 = never */
    int64_t expiry_s;
    char qr[QR_MAX];
    char *override_urls[FAKE_URLS_PER_HDR];
    size_t noverride;
    char *append_urls[FAKE_URLS_PER_HDR];
    size_t nappend;
    struct refund *refunds;
    size_t nrefunds;
    struct hist history[MAX_HISTORY];
    size_t nhistory;
    size_t history_dropped;
};

struct logent {
    uint64_t seq;
    json_t *entry;
};

struct store {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* store_hold() sleeps on it; store_stop() wakes it */
    bool stopping;
    char server_key[FAKE_KEY_MAX + 1];
    char merchant_id[32];
    char base[64];
    size_t max_tx;
    struct store_settings initial;
    struct store_settings settings;
    struct tx **txs;
    size_t ntx, cap;
    struct store_fail fails[NENDPOINTS];
    struct logent log[LOG_MAX];
    uint64_t log_seq;
};

/* ---- small helpers ------------------------------------------------------ */

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void fmt_time(time_t t, char out[TIME_LEN])
{
    struct tm tm;

    /* Midtrans times are GMT+7 without a zone suffix. */
    t += GMT7_S;
    gmtime_r(&t, &tm);
    if (strftime(out, TIME_LEN, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        out[0] = '\0';
}

static void fmt_amount(int64_t v, char out[AMOUNT_LEN])
{
    /* IDR has no decimals, but Midtrans writes two ("10000.00"). */
    snprintf(out, AMOUNT_LEN, "%" PRId64 ".00", v);
}

static void uuid4(char out[UUID_LEN])
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        fprintf(stderr, "fake-midtrans: RAND_bytes failed\n");
        abort();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, UUID_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void store_signature(const char *order_id, const char *status_code, const char *gross_amount,
                     const char *server_key, char out[129])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;

    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, order_id, strlen(order_id)) == 1 &&
         EVP_DigestUpdate(ctx, status_code, strlen(status_code)) == 1 &&
         EVP_DigestUpdate(ctx, gross_amount, strlen(gross_amount)) == 1 &&
         EVP_DigestUpdate(ctx, server_key, strlen(server_key)) == 1 &&
         EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 64;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        fprintf(stderr, "fake-midtrans: SHA-512 failed\n");
        abort();
    }
    for (i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[128] = '\0';
}

/* CRC-16/CCITT-FALSE, the checksum that ends every QRIS payload (tag 63). */
static unsigned crc16(const char *s, size_t len)
{
    unsigned crc = 0xffff;
    size_t i;
    int b;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

static void tlv(char *buf, size_t size, size_t *len, const char *tag, const char *val)
{
    size_t vlen = strlen(val);
    int n;

    if (vlen > 99)
        vlen = 99;
    n = snprintf(buf + *len, size - *len, "%s%02zu%.*s", tag, vlen, (int)vlen, val);
    if (n > 0 && (size_t)n < size - *len)
        *len += (size_t)n;
}

/* A dynamic QRIS payload in EMVCo TLV form with a valid CRC, so a client
 * that renders or parses it sees the real structure; it pays nobody. */
static void make_qr(const struct tx *t, const char *merchant_id, char out[QR_MAX])
{
    char sub[100], amount[AMOUNT_LEN];
    size_t len = 0, slen = 0;

    tlv(out, QR_MAX, &len, "00", "01");
    tlv(out, QR_MAX, &len, "01", "12");
    tlv(sub, sizeof(sub), &slen, "00",
        strcmp(t->acquirer, "airpay shopee") == 0 ? "ID.CO.SHOPEE.WWW" : "COM.GO-JEK.WWW");
    tlv(sub, sizeof(sub), &slen, "01", merchant_id);
    tlv(out, QR_MAX, &len, "26", sub);
    tlv(out, QR_MAX, &len, "52", "5499");
    tlv(out, QR_MAX, &len, "53", "360");
    snprintf(amount, sizeof(amount), "%" PRId64, t->gross);
    tlv(out, QR_MAX, &len, "54", amount);
    tlv(out, QR_MAX, &len, "58", "ID");
    tlv(out, QR_MAX, &len, "59", "FAKE MIDTRANS");
    tlv(out, QR_MAX, &len, "60", "JAKARTA");
    slen = 0;
    /* EMV bill number and reference label hold 25 characters. */
    copy_str(amount, 26, t->order_id);
    tlv(sub, sizeof(sub), &slen, "01", amount);
    copy_str(amount, 26, t->transaction_id);
    tlv(sub, sizeof(sub), &slen, "05", amount);
    tlv(out, QR_MAX, &len, "62", sub);
    if (len + 8 < QR_MAX) {
        memcpy(out + len, "6304", 4);
        len += 4;
        snprintf(out + len, QR_MAX - len, "%04X", crc16(out, len));
    }
}

static void push_history(struct tx *t, enum tx_status st)
{
    if (t->nhistory == MAX_HISTORY) {
        memmove(&t->history[0], &t->history[1], sizeof(t->history[0]) * (MAX_HISTORY - 1));
        t->nhistory--;
        t->history_dropped++;
    }
    t->history[t->nhistory].st = st;
    fmt_time(time(NULL), t->history[t->nhistory].at);
    t->nhistory++;
}

static void set_status(struct tx *t, enum tx_status st)
{
    t->st = st;
    push_history(t, st);
}

static void tx_free(struct tx *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < t->noverride; i++)
        free(t->override_urls[i]);
    for (i = 0; i < t->nappend; i++)
        free(t->append_urls[i]);
    for (i = 0; i < t->nrefunds; i++)
        json_decref(t->refunds[i].answer);
    free(t->refunds);
    free(t);
}

/* The latest transaction with this order_id, else any with this
 * transaction_id (in Midtrans's status API either identifies a transaction). */
static struct tx *find(struct store *s, const char *id)
{
    size_t i;

    for (i = s->ntx; i-- > 0;) {
        if (!s->txs[i]->superseded && strcmp(s->txs[i]->order_id, id) == 0)
            return s->txs[i];
    }
    for (i = s->ntx; i-- > 0;) {
        if (strcmp(s->txs[i]->transaction_id, id) == 0)
            return s->txs[i];
    }
    return NULL;
}

/* As the status API sees it: a Snap transaction nobody has chosen a
 * payment method for does not exist yet (404, as Midtrans answers). */
static struct tx *find_visible(struct store *s, const char *id)
{
    struct tx *t = find(s, id);

    return t != NULL && t->st != TX_NONE ? t : NULL;
}

static bool in_list(const char *v, const char *const *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(v, list[i]) == 0)
            return true;
    }
    return false;
}

static int status_by_name(const char *name, enum tx_status *out)
{
    int i;

    for (i = TX_PENDING; i < TX_NSTATUS; i++) {
        if (strcmp(name, s_status[i].name) == 0) {
            *out = (enum tx_status)i;
            return 0;
        }
    }
    return VEND_EINVAL;
}

/* ---- JSON bodies -------------------------------------------------------- */

enum purpose {
    FOR_STATUS, /* GET /v2/{id}/status */
    FOR_NOTIFY, /* the HTTP notification */
};

static bool refunded_status(enum tx_status st)
{
    return st == TX_REFUND || st == TX_PARTIAL_REFUND;
}

static json_t *refunds_json(const struct tx *t)
{
    json_t *a = json_array();
    char amount[AMOUNT_LEN];
    size_t i;

    for (i = 0; i < t->nrefunds; i++) {
        fmt_amount(t->refunds[i].amount, amount);
        json_array_append_new(a, json_pack("{s:I,s:s,s:s,s:s,s:s}", "refund_chargeback_id",
                                           (json_int_t)(i + 1), "refund_amount", amount,
                                           "created_at", t->refunds[i].created_at, "reason",
                                           t->refunds[i].reason, "refund_key", t->refunds[i].key));
    }
    return a;
}

/* The shape shared by the status answer and the notification,
 * as if the transaction were in status st. */
static json_t *tx_json(const struct store *s, const struct tx *t, enum tx_status st, enum purpose p,
                       bool bad_signature)
{
    char gross[AMOUNT_LEN], sig[129], refunded[AMOUNT_LEN];
    const char *code = s_status[st].code;
    json_t *o;

    fmt_amount(t->gross, gross);
    store_signature(t->order_id, code, gross, bad_signature ? "not-the-server-key" : s->server_key,
                    sig);
    o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "transaction_time", t->transaction_time,
        "transaction_status", s_status[st].name, "transaction_id", t->transaction_id,
        "status_message",
        p == FOR_NOTIFY ? "midtrans payment notification" : "Success, transaction is found",
        "status_code", code, "signature_key", sig, "payment_type", t->payment_type, "order_id",
        t->order_id, "merchant_id", s->merchant_id, "gross_amount", gross, "currency", "IDR");
    if (t->fraud_status[0] != '\0')
        json_object_set_new(o, "fraud_status", json_string(t->fraud_status));
    if ((st == TX_SETTLEMENT || refunded_status(st)) && t->settlement_time[0] != '\0')
        json_object_set_new(o, "settlement_time", json_string(t->settlement_time));
    if (st == TX_PENDING && t->expiry_time[0] != '\0')
        json_object_set_new(o, "expiry_time", json_string(t->expiry_time));
    if (strcmp(t->payment_type, "qris") == 0) {
        json_object_set_new(o, "acquirer", json_string(t->acquirer));
        if (st != TX_PENDING && t->issuer[0] != '\0') {
            json_object_set_new(o, "issuer", json_string(t->issuer));
            json_object_set_new(o, "transaction_type", json_string("on-us"));
            json_object_set_new(o, "merchant_cross_reference_id", json_string(t->cross_ref));
        }
    }
    if (refunded_status(st) && t->nrefunds > 0) {
        fmt_amount(t->refunded, refunded);
        json_object_set_new(o, "refund_amount", json_string(refunded));
        json_object_set_new(o, "refunds", refunds_json(t));
    }
    return o;
}

/* The fields the action endpoints (cancel, expire) answer with. */
static json_t *action_json(const struct store *s, const struct tx *t, const char *code,
                           const char *message)
{
    char gross[AMOUNT_LEN];
    json_t *o;

    fmt_amount(t->gross, gross);
    o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "status_code", code,
                  "status_message", message, "transaction_id", t->transaction_id, "order_id",
                  t->order_id, "merchant_id", s->merchant_id, "gross_amount", gross, "currency",
                  "IDR", "payment_type", t->payment_type, "transaction_time", t->transaction_time,
                  "transaction_status", s_status[t->st].name);
    if (t->fraud_status[0] != '\0')
        json_object_set_new(o, "fraud_status", json_string(t->fraud_status));
    return o;
}

static json_t *charge_json(const struct store *s, const struct tx *t)
{
    char url[160];
    json_t *o = action_json(s, t, "201", "QRIS transaction is created");

    /* The QR image URL points back at us: GET it for the qr_string. */
    snprintf(url, sizeof(url), "%s/v2/qris/%s/qr-code", s->base, t->transaction_id);
    json_object_set_new(
        o, "actions",
        json_pack("[{s:s,s:s,s:s}]", "name", "generate-qr-code", "method", "GET", "url", url));
    json_object_set_new(o, "qr_string", json_string(t->qr));
    json_object_set_new(o, "acquirer", json_string(t->acquirer));
    json_object_set_new(o, "expiry_time", json_string(t->expiry_time));
    return o;
}

/* ---- notifications ------------------------------------------------------ */

static void add_url(struct note *n, const char *url)
{
    if (n->nurls < NOTE_URLS_MAX && url[0] != '\0')
        copy_str(n->urls[n->nurls++], sizeof(n->urls[0]), url);
}

/* Where Midtrans would send it: the per-transaction X-Override-Notification
 * list, else the configured URL; plus X-Append-Notification. */
static struct note *make_note(const struct store *s, const struct tx *t, enum tx_status st,
                              bool bad_signature, const char *url)
{
    struct note *n = xcalloc(1, sizeof(*n));
    json_t *body = tx_json(s, t, st, FOR_NOTIFY, bad_signature);
    size_t i;

    copy_str(n->order_id, sizeof(n->order_id), t->order_id);
    copy_str(n->status, sizeof(n->status), s_status[st].name);
    n->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (url != NULL) {
        add_url(n, url);
        return n;
    }
    if (t->noverride > 0) {
        for (i = 0; i < t->noverride; i++)
            add_url(n, t->override_urls[i]);
    } else {
        add_url(n, s->settings.notify_url);
    }
    for (i = 0; i < t->nappend; i++)
        add_url(n, t->append_urls[i]);
    return n;
}

static struct note *auto_note(const struct store *s, const struct tx *t)
{
    return s->settings.auto_notify ? make_note(s, t, t->st, false, NULL) : NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

struct store *store_new(const struct fake_conf *conf, const char *base)
{
    struct store *s = xcalloc(1, sizeof(*s));
    pthread_condattr_t ca;

    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    copy_str(s->server_key, sizeof(s->server_key), conf->server_key);
    copy_str(s->merchant_id, sizeof(s->merchant_id), conf->merchant_id);
    copy_str(s->base, sizeof(s->base), base);
    s->max_tx = conf->max_transactions;
    copy_str(s->initial.notify_url, sizeof(s->initial.notify_url), conf->notify_url);
    s->initial.notify_pending = true;
    s->initial.auto_notify = true;
    s->initial.core_http_mirror = false;
    s->settings = s->initial;
    return s;
}

static void clear_locked(struct store *s)
{
    size_t i;

    for (i = 0; i < s->ntx; i++)
        tx_free(s->txs[i]);
    s->ntx = 0;
    memset(s->fails, 0, sizeof(s->fails));
    for (i = 0; i < LOG_MAX; i++) {
        json_decref(s->log[i].entry);
        s->log[i].entry = NULL;
        s->log[i].seq = 0;
    }
}

void store_free(struct store *s)
{
    if (s == NULL)
        return;
    clear_locked(s);
    free(s->txs);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void store_reset(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    clear_locked(s);
    s->settings = s->initial;
    pthread_mutex_unlock(&s->mu);
}

void store_hold(struct store *s, unsigned ms)
{
    struct timespec deadline;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&s->mu);
}

void store_stop(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- Midtrans API ------------------------------------------------------- */

static int create_locked(struct store *s, const struct store_create_req *rq, json_t **out,
                         struct note **note)
{
    struct tx *old = find(s, rq->order_id);
    struct tx *t;
    size_t i;

    /* An order_id is spent while pending or paid; after cancel or expire it
     * may be used again (Midtrans's QRIS docs). */
    if (old != NULL && strcmp(old->order_id, rq->order_id) == 0) {
        if (old->st != TX_EXPIRE && old->st != TX_CANCEL)
            return VEND_ECONFLICT;
    }
    if (s->ntx >= s->max_tx)
        return VEND_ENOSPACE;
    if (old != NULL && strcmp(old->order_id, rq->order_id) == 0)
        old->superseded = true;
    t = xcalloc(1, sizeof(*t));
    t->kind = rq->kind;
    copy_str(t->order_id, sizeof(t->order_id), rq->order_id);
    t->gross = rq->gross_amount;
    uuid4(t->transaction_id);
    for (i = 0; i < rq->noverride; i++)
        t->override_urls[t->noverride++] = xstrdup(rq->override_urls[i]);
    for (i = 0; i < rq->nappend; i++)
        t->append_urls[t->nappend++] = xstrdup(rq->append_urls[i]);
    t->expiry_s = rq->expiry_s > 0 ? rq->expiry_s : DEFAULT_EXPIRY_S;
    if (s->ntx == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->txs = xrealloc(s->txs, s->cap * sizeof(*s->txs));
    }
    s->txs[s->ntx++] = t;

    if (rq->kind == STORE_SNAP) {
        char url[160];

        uuid4(t->snap_token);
        t->st = TX_NONE;
        snprintf(url, sizeof(url), "%s/snap/v2/vtweb/%s", s->base, t->snap_token);
        *out = json_pack("{s:s,s:s}", "token", t->snap_token, "redirect_url", url);
        return 0;
    }
    copy_str(t->payment_type, sizeof(t->payment_type), "qris");
    copy_str(t->acquirer, sizeof(t->acquirer), rq->acquirer[0] ? rq->acquirer : "gopay");
    copy_str(t->fraud_status, sizeof(t->fraud_status), "accept");
    fmt_time(time(NULL), t->transaction_time);
    t->expiry_at = time(NULL) + (time_t)t->expiry_s;
    fmt_time(t->expiry_at, t->expiry_time);
    make_qr(t, s->merchant_id, t->qr);
    set_status(t, TX_PENDING);
    *out = charge_json(s, t);
    if (s->settings.notify_pending)
        *note = auto_note(s, t);
    return 0;
}

int store_create(struct store *s, const struct store_create_req *rq, json_t **out,
                 struct note **note)
{
    int rc;

    *out = NULL;
    *note = NULL;
    pthread_mutex_lock(&s->mu);
    rc = create_locked(s, rq, out, note);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_status(struct store *s, const char *id, json_t **out)
{
    struct tx *t;
    int rc = VEND_ENOTFOUND;

    *out = NULL;
    pthread_mutex_lock(&s->mu);
    t = find_visible(s, id);
    if (t == NULL)
        goto out;
    *out = tx_json(s, t, t->st, FOR_STATUS, false);
    rc = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_expire(struct store *s, const char *id, json_t **out, struct note **note)
{
    struct tx *t;
    int rc = VEND_ENOTFOUND;

    *out = NULL;
    *note = NULL;
    pthread_mutex_lock(&s->mu);
    t = find_visible(s, id);
    if (t == NULL)
        goto out;
    rc = VEND_ESTATE;
    if (t->st != TX_PENDING) /* Midtrans: pending only */
        goto out;
    set_status(t, TX_EXPIRE);
    t->expiry_at = 0;
    /* Yes, 407 is the success answer of this endpoint (Midtrans's API reference). */
    *out = action_json(s, t, "407", "Success, transaction is expired");
    *note = auto_note(s, t);
    rc = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_cancel(struct store *s, const char *id, json_t **out, struct note **note)
{
    struct tx *t;
    int rc = VEND_ENOTFOUND;

    *out = NULL;
    *note = NULL;
    pthread_mutex_lock(&s->mu);
    t = find_visible(s, id);
    if (t == NULL)
        goto out;
    rc = VEND_ESTATE;
    /* Before settlement only; a settled one needs a refund. */
    if (t->st != TX_PENDING && t->st != TX_CAPTURE && t->st != TX_AUTHORIZE)
        goto out;
    set_status(t, TX_CANCEL);
    t->expiry_at = 0;
    *out = action_json(s, t, "200", "Success, transaction is canceled");
    *note = auto_note(s, t);
    rc = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static json_t *refund_answer(const struct store *s, const struct tx *t, const struct refund *r,
                             size_t index)
{
    char amount[AMOUNT_LEN];
    json_t *o = action_json(s, t, "200", "Success, refund request is approved");

    fmt_amount(r->amount, amount);
    json_object_del(o, "merchant_id");
    json_object_del(o, "currency");
    json_object_del(o, "fraud_status");
    json_object_set_new(o, "refund_chargeback_id", json_integer((json_int_t)(index + 1)));
    json_object_set_new(o, "refund_amount", json_string(amount));
    json_object_set_new(o, "refund_key", json_string(r->key));
    return o;
}

static int refund_locked(struct store *s, struct tx *t, const struct store_refund_req *rq,
                         json_t **out, struct note **note)
{
    int64_t amount = rq->amount > 0 ? rq->amount : t->gross;
    struct refund *r;
    size_t i;

    /* refund_key is the idempotency key (Midtrans's refund API): the same key again gets
     * the first answer and refunds nothing; with another amount it is a
     * different request under a used key. */
    if (rq->refund_key[0] != '\0') {
        for (i = 0; i < t->nrefunds; i++) {
            if (strcmp(t->refunds[i].key, rq->refund_key) != 0)
                continue;
            if (t->refunds[i].amount != amount)
                return VEND_EDUPKEY;
            *out = json_deep_copy(t->refunds[i].answer);
            return 0;
        }
    }
    if (t->st != TX_SETTLEMENT && t->st != TX_PARTIAL_REFUND)
        return VEND_ESTATE;
    if (amount <= 0 || amount > t->gross - t->refunded)
        return VEND_ERANGE;
    if (t->nrefunds == MAX_REFUNDS)
        return VEND_ENOSPACE;
    t->refunds = xrealloc(t->refunds, (t->nrefunds + 1) * sizeof(*t->refunds));
    r = &t->refunds[t->nrefunds];
    memset(r, 0, sizeof(*r));
    r->amount = amount;
    if (rq->refund_key[0] != '\0')
        copy_str(r->key, sizeof(r->key), rq->refund_key);
    else /* Midtrans makes one up when none is sent. */
        snprintf(r->key, sizeof(r->key), "fake-refund-%s-%zu", t->transaction_id, t->nrefunds + 1);
    copy_str(r->reason, sizeof(r->reason), rq->reason);
    fmt_time(time(NULL), r->created_at);
    t->nrefunds++;
    t->refunded += amount;
    set_status(t, t->refunded == t->gross ? TX_REFUND : TX_PARTIAL_REFUND);
    r->answer = refund_answer(s, t, r, t->nrefunds - 1);
    *out = json_deep_copy(r->answer);
    *note = auto_note(s, t);
    return 0;
}

int store_refund(struct store *s, const char *id, const struct store_refund_req *rq, json_t **out,
                 struct note **note)
{
    struct tx *t;
    int rc = VEND_ENOTFOUND;

    *out = NULL;
    *note = NULL;
    pthread_mutex_lock(&s->mu);
    t = find_visible(s, id);
    if (t != NULL)
        rc = refund_locked(s, t, rq, out, note);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- control API -------------------------------------------------------- */

static void choose_method(struct store *s, struct tx *t, const char *payment_type)
{
    /* The customer picked a method on the Snap page: from now on the
     * transaction exists for the status API. */
    copy_str(t->payment_type, sizeof(t->payment_type), payment_type);
    copy_str(t->acquirer, sizeof(t->acquirer), "gopay");
    copy_str(t->fraud_status, sizeof(t->fraud_status), "accept");
    fmt_time(time(NULL), t->transaction_time);
    if (strcmp(payment_type, "qris") == 0)
        make_qr(t, s->merchant_id, t->qr);
}

static int action_locked(struct store *s, struct tx *t, const struct action *a,
                         const struct store_action_req *rq)
{
    const char *ptype = rq->payment_type ? rq->payment_type : "qris";
    enum tx_status to = a->to;

    if (rq->payment_type != NULL &&
        !in_list(rq->payment_type, s_payment_types, sizeof(s_payment_types) / sizeof(char *)))
        return VEND_EINVAL;
    if (rq->fraud_status != NULL &&
        !in_list(rq->fraud_status, s_fraud_statuses, sizeof(s_fraud_statuses) / sizeof(char *)))
        return VEND_EINVAL;
    if (to == TX_NONE) { /* pay */
        to = TX_SETTLEMENT;
        if (rq->status != NULL && strcmp(rq->status, "capture") == 0)
            to = TX_CAPTURE;
        else if (rq->status != NULL && strcmp(rq->status, "settlement") != 0)
            return VEND_EINVAL;
        if (t->st == TX_CAPTURE && to != TX_SETTLEMENT)
            return VEND_ESTATE;
    }
    if (!(a->from & BIT(t->st)))
        return VEND_ESTATE;
    if (t->st == TX_NONE)
        choose_method(s, t, to == TX_CAPTURE && rq->payment_type == NULL ? "credit_card" : ptype);
    if (a->to == TX_NONE) {
        copy_str(t->fraud_status, sizeof(t->fraud_status),
                 rq->fraud_status ? rq->fraud_status : "accept");
        if (to == TX_SETTLEMENT) {
            fmt_time(time(NULL), t->settlement_time);
            copy_str(t->issuer, sizeof(t->issuer), "gopay");
            uuid4(t->cross_ref);
        }
    }
    if (to != TX_PENDING)
        t->expiry_at = 0;
    else if (t->expiry_at == 0) {
        t->expiry_at = time(NULL) + (time_t)t->expiry_s;
        fmt_time(t->expiry_at, t->expiry_time);
    }
    set_status(t, to);
    return 0;
}

int store_action(struct store *s, const char *id, const struct store_action_req *rq, json_t **out,
                 struct note **note)
{
    const struct action *a = NULL;
    struct tx *t;
    size_t i;
    int rc = VEND_EINVAL;

    *out = NULL;
    *note = NULL;
    for (i = 0; i < NACTIONS; i++) {
        if (strcmp(rq->action, s_actions[i].name) == 0)
            a = &s_actions[i];
    }
    if (a == NULL)
        return VEND_EINVAL;
    pthread_mutex_lock(&s->mu);
    t = find(s, id);
    rc = VEND_ENOTFOUND;
    if (t == NULL)
        goto out;
    rc = action_locked(s, t, a, rq);
    if (rc < 0)
        goto out;
    *out = tx_json(s, t, t->st, FOR_STATUS, false);
    if (rq->notify)
        *note = make_note(s, t, t->st, false, NULL);
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_make_note(struct store *s, const char *id, const char *status, bool bad_signature,
                    const char *url, struct note **note)
{
    enum tx_status st = TX_NONE; /* read only when status named one; -O3 cannot see it */
    struct tx *t;
    int rc = VEND_EINVAL;

    *note = NULL;
    pthread_mutex_lock(&s->mu);
    if (status != NULL && status_by_name(status, &st) < 0)
        goto out;
    rc = VEND_ENOTFOUND;
    t = find(s, id);
    if (t == NULL)
        goto out;
    rc = VEND_ESTATE;
    if (t->st == TX_NONE) /* nothing has happened that Midtrans would report */
        goto out;
    *note = make_note(s, t, status != NULL ? st : t->st, bad_signature, url);
    rc = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t store_expire_due(struct store *s, time_t now, struct note **notes, size_t max)
{
    size_t i, n = 0;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->ntx && n < max; i++) {
        struct tx *t = s->txs[i];

        if (t->st != TX_PENDING || t->expiry_at == 0 || now < t->expiry_at)
            continue;
        set_status(t, TX_EXPIRE);
        t->expiry_at = 0;
        notes[n] = auto_note(s, t);
        if (notes[n] != NULL)
            n++;
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static json_t *view_json(const struct store *s, const struct tx *t)
{
    json_t *o, *hist = json_array(), *refunds = json_array(), *ovr = json_array(),
               *app = json_array();
    size_t i;

    (void)s;
    for (i = 0; i < t->nhistory; i++)
        json_array_append_new(hist,
                              json_pack("{s:s,s:s}", "transaction_status",
                                        s_status[t->history[i].st].name, "at", t->history[i].at));
    for (i = 0; i < t->nrefunds; i++)
        json_array_append_new(
            refunds,
            json_pack("{s:I,s:s,s:I,s:s,s:s}", "refund_chargeback_id", (json_int_t)(i + 1),
                      "refund_key", t->refunds[i].key, "amount", (json_int_t)t->refunds[i].amount,
                      "reason", t->refunds[i].reason, "created_at", t->refunds[i].created_at));
    for (i = 0; i < t->noverride; i++)
        json_array_append_new(ovr, json_string(t->override_urls[i]));
    for (i = 0; i < t->nappend; i++)
        json_array_append_new(app, json_string(t->append_urls[i]));
    o = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I,s:I,s:s,s:s,s:s,s:b,s:o,s:o,s:o,s:o}", "kind",
                  t->kind == STORE_SNAP ? "snap" : "core", "order_id", t->order_id,
                  "transaction_id", t->transaction_id, "snap_token",
                  t->snap_token[0] ? t->snap_token : NULL, "transaction_status",
                  s_status[t->st].name, "gross_amount", (json_int_t)t->gross, "refunded",
                  (json_int_t)t->refunded, "payment_type", t->payment_type, "fraud_status",
                  t->fraud_status, "qr_string", t->qr, "superseded", t->superseded, "history", hist,
                  "refunds", refunds, "override_notification", ovr, "append_notification", app);
    json_object_set_new(o, "expiry_time", json_string(t->expiry_time));
    if (t->history_dropped > 0)
        json_object_set_new(o, "history_dropped", json_integer((json_int_t)t->history_dropped));
    return o;
}

int store_tx_json(struct store *s, const char *id, json_t **out)
{
    struct tx *t;
    int rc = VEND_ENOTFOUND;

    *out = NULL;
    pthread_mutex_lock(&s->mu);
    t = find(s, id);
    if (t != NULL) {
        *out = view_json(s, t);
        rc = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

json_t *store_list_json(struct store *s)
{
    json_t *a = json_array(), *o;
    size_t i;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->ntx; i++) {
        const struct tx *t = s->txs[i];

        json_array_append_new(a,
                              json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "kind",
                                        t->kind == STORE_SNAP ? "snap" : "core", "order_id",
                                        t->order_id, "transaction_id", t->transaction_id,
                                        "transaction_status", s_status[t->st].name, "gross_amount",
                                        (json_int_t)t->gross, "superseded", t->superseded));
    }
    o = json_pack("{s:o,s:I,s:I}", "transactions", a, "count", (json_int_t)s->ntx, "max",
                  (json_int_t)s->max_tx);
    pthread_mutex_unlock(&s->mu);
    return o;
}

int store_lookup_token(struct store *s, const char *token, char *order_id, size_t size)
{
    size_t i;
    int rc = VEND_ENOTFOUND;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->ntx; i++) {
        if (s->txs[i]->snap_token[0] != '\0' && strcmp(s->txs[i]->snap_token, token) == 0) {
            copy_str(order_id, size, s->txs[i]->order_id);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int store_qr_string(struct store *s, const char *transaction_id, char *qr, size_t size)
{
    size_t i;
    int rc = VEND_ENOTFOUND;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < s->ntx; i++) {
        if (s->txs[i]->qr[0] != '\0' && strcmp(s->txs[i]->transaction_id, transaction_id) == 0) {
            copy_str(qr, size, s->txs[i]->qr);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- failure modes ------------------------------------------------------ */

static int endpoint_index(const char *endpoint)
{
    size_t i;

    for (i = 0; i < NENDPOINTS; i++) {
        if (strcmp(endpoint, s_endpoints[i]) == 0)
            return (int)i;
    }
    return VEND_EINVAL;
}

int store_fail_set(struct store *s, const char *endpoint, const struct store_fail *f)
{
    int i = endpoint_index(endpoint);

    if (i < 0)
        return i;
    pthread_mutex_lock(&s->mu);
    s->fails[i] = *f;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void store_fail_clear(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    memset(s->fails, 0, sizeof(s->fails));
    pthread_mutex_unlock(&s->mu);
}

bool store_fail_take(struct store *s, const char *endpoint, struct store_fail *out)
{
    int i = endpoint_index(endpoint);
    struct store_fail *f = NULL;
    bool taken = false;

    pthread_mutex_lock(&s->mu);
    if (i >= 0 && s->fails[i].mode != STORE_FAIL_NONE && s->fails[i].count > 0)
        f = &s->fails[i];
    else if (s->fails[NENDPOINTS - 1].mode != STORE_FAIL_NONE && s->fails[NENDPOINTS - 1].count > 0)
        f = &s->fails[NENDPOINTS - 1];
    if (f != NULL) {
        *out = *f;
        if (--f->count == 0)
            f->mode = STORE_FAIL_NONE;
        taken = true;
    }
    pthread_mutex_unlock(&s->mu);
    return taken;
}

json_t *store_fail_json(struct store *s)
{
    static const char *const modes[] = {"none", "http_error", "timeout", "garbage", "refuse"};
    json_t *o = json_object();
    size_t i;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < NENDPOINTS; i++) {
        const struct store_fail *f = &s->fails[i];

        if (f->mode == STORE_FAIL_NONE)
            continue;
        json_object_set_new(o, s_endpoints[i],
                            json_pack("{s:s,s:i,s:i,s:i,s:b,s:s}", "mode", modes[f->mode], "count",
                                      (int)f->count, "http_status", (int)f->http_status, "delay_ms",
                                      (int)f->delay_ms, "drop", f->drop, "status_code",
                                      f->status_code));
    }
    pthread_mutex_unlock(&s->mu);
    return json_pack("{s:o}", "failures", o);
}

/* ---- request log -------------------------------------------------------- */

/* The body as a JSON string; bytes that are not UTF-8 become '?' so the
 * log itself stays valid JSON. */
static json_t *body_string(const char *body, size_t len)
{
    json_t *j = json_stringn(body, len);
    char *copy;
    size_t i;

    if (j != NULL)
        return j;
    copy = xstrndup(body, len);
    for (i = 0; i < len; i++) {
        if ((unsigned char)copy[i] >= 0x80 || copy[i] == '\0')
            copy[i] = '?';
    }
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

static void set_opt(json_t *o, const char *key, const char *v)
{
    json_t *j;

    if (v == NULL)
        return;
    j = json_string(v);
    if (j == NULL) /* a header that is not UTF-8 */
        j = json_string("(not UTF-8)");
    json_object_set_new(o, key, j);
}

uint64_t store_log_request(struct store *s, const struct store_logreq *r)
{
    char now[TIME_LEN];
    json_t *o, *hdr = json_object(), *parsed = NULL;
    struct logent *slot;
    uint64_t seq;

    fmt_time(time(NULL), now);
    set_opt(hdr, "content_type", r->content_type);
    set_opt(hdr, "accept", r->accept);
    set_opt(hdr, "user_agent", r->user_agent);
    set_opt(hdr, "x_override_notification", r->x_override);
    set_opt(hdr, "x_append_notification", r->x_append);
    if (r->body_len > 0)
        parsed = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, NULL);
    o = json_object();
    set_opt(o, "time", now);
    set_opt(o, "method", r->method);
    set_opt(o, "path", r->path);
    set_opt(o, "endpoint", r->endpoint);
    set_opt(o, "auth", r->auth);
    json_object_set_new(o, "auth_ok", json_boolean(strcmp(r->auth, "ok") == 0));
    json_object_set_new(o, "headers", hdr);
    json_object_set_new(o, "body", body_string(r->body, r->body_len));
    json_object_set_new(o, "json", parsed ? parsed : json_null());
    json_object_set_new(o, "status", json_null());

    pthread_mutex_lock(&s->mu);
    seq = ++s->log_seq;
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    slot = &s->log[seq % LOG_MAX];
    json_decref(slot->entry);
    slot->entry = o;
    slot->seq = seq;
    pthread_mutex_unlock(&s->mu);
    return seq;
}

void store_log_answer(struct store *s, uint64_t seq, unsigned http_status, const char *injected)
{
    struct logent *slot;

    pthread_mutex_lock(&s->mu);
    slot = &s->log[seq % LOG_MAX];
    if (slot->seq == seq && slot->entry != NULL) {
        json_object_set_new(slot->entry, "status", json_integer(http_status));
        if (injected != NULL)
            json_object_set_new(slot->entry, "injected", json_string(injected));
    }
    pthread_mutex_unlock(&s->mu);
}

json_t *store_requests_json(struct store *s, uint64_t since)
{
    json_t *a = json_array(), *o;
    uint64_t first, seq;

    pthread_mutex_lock(&s->mu);
    first = s->log_seq > LOG_MAX ? s->log_seq - LOG_MAX + 1 : 1;
    if (first <= since)
        first = since + 1;
    for (seq = first; seq <= s->log_seq; seq++) {
        struct logent *slot = &s->log[seq % LOG_MAX];

        if (slot->seq == seq && slot->entry != NULL)
            json_array_append_new(a, json_deep_copy(slot->entry));
    }
    o = json_pack("{s:o,s:I,s:I}", "requests", a, "last_seq", (json_int_t)s->log_seq, "dropped",
                  (json_int_t)(s->log_seq > LOG_MAX ? s->log_seq - LOG_MAX : 0));
    pthread_mutex_unlock(&s->mu);
    return o;
}

void store_requests_clear(struct store *s)
{
    size_t i;

    pthread_mutex_lock(&s->mu);
    for (i = 0; i < LOG_MAX; i++) {
        json_decref(s->log[i].entry);
        s->log[i].entry = NULL;
        s->log[i].seq = 0;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- settings ----------------------------------------------------------- */

void store_settings_get(struct store *s, struct store_settings *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->settings;
    pthread_mutex_unlock(&s->mu);
}

void store_settings_set(struct store *s, const struct store_settings *in)
{
    pthread_mutex_lock(&s->mu);
    s->settings = *in;
    pthread_mutex_unlock(&s->mu);
}
