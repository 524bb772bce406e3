/*
 * it_buy.c - what the purchase page reads, and the sales view, black-box: the real vendd, the
 * real fake-midtrans, a real broker and a client playing machine VM01 that answers its
 * commands by itself (docs/HTTP-API.md, "Purchase page" and "Sales").
 *
 *   - GET /api/buy/{machine}: a slot is listed exactly when a customer order of it is accepted
 *     (each slot tried both ways: a product, stock, inspection, no product, inactive; promised
 *     stock; an OFFLINE machine; ORDER_PENDING_MAX reached); unknown machine 404;
 *     simulated_payments names the fake, whose origin the purchase page's CSP allows;
 *   - a customer order answers a status_key (32 hex, random, stored); GET
 *     /api/buy/orders/{id}?key= answers the order's exact fields and follows it from PENDING
 *     through payment to COMPLETED (units dropped), or to FAILED with the refund; a wrong,
 *     missing or foreign key is 404 as an unknown order;
 *   - GET /api/sales counts the dropped units per day, machine and product from the database
 *     (a failed unit is not a sale; the same after a restart), with its range rules;
 *   - POST /api/orders/{id}/cancel?key=K: a customer cancels only with the order's status_key;
 *     a missing, wrong or foreign key, a manual order, and any order that is no longer
 *     PENDING are the unknown order's 404 (the 409 that tells a status is for the key's holder
 *     and the operator), and the order stays as it was; the operator needs no key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define WAIT_MS     8000
#define PENDING_MAX 6
#define TOKEN       "it-buy-operator-token-0123456789abcdef"

static const char *const env[] = {"ORDER_RATE_PER_MIN=10000", "ORDER_PENDING_MAX=6",
                                  "MIDTRANS_TIMEOUT_MS=3000", "DISPENSE_RESULT_GRACE_MS=2000",
                                  NULL};

struct buy {
    struct harness_fixture *f;
    struct harness_autoanswer auto_answer;
};

/* Slot 1: Coca Cola 8000, 20 units; slot 2: Coca Cola, none; slot 3: Teh 5000, 3 units (under
 * inspection from setup on); slot 4: a slot without product; slot 5: an inactive one. */
static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 20, 100}, {2, 0, 100}, {0, 0, 0}};
    struct buy *b = calloc(1, sizeof(*b));
    struct harness *h;
    struct harness_reply r;

    if (b == NULL)
        return -1;
    b->auto_answer.fail_units = 1u << 2; /* unit 2 of any order jams */
    pthread_mutex_init(&b->auto_answer.mu, NULL);
    b->f = harness_fixture_new_midtrans(env, NULL, slots, "it-buy");
    if (b->f == NULL) {
        free(b);
        return -1;
    }
    h = &b->f->h;
    if (harness_call(h, "PUT", "/api/machines/VM01/slots/3",
                     "{\"product_name\":\"Teh\",\"price\":5000,\"capacity\":10,"
                     "\"current_stock\":3}",
                     &r) != 201)
        return -1;
    harness_reply_free(&r);
    if (harness_call(h, "PUT", "/api/machines/VM01/slots/6",
                     "{\"product_name\":\"Kopi\",\"price\":7000,\"capacity\":10,"
                     "\"current_stock\":4}",
                     &r) != 201)
        return -1;
    harness_reply_free(&r);
    if (harness_call(h, "POST", "/api/machines", "{\"id\":\"VM02\"}", &r) != 201)
        return -1;
    harness_reply_free(&r);
    /* What the API cannot make: a slot without product, an inactive slot, and an inspection
     * flag (a failed dispense sets it). Written while vendd is stopped. */
    if (harness_vendd_term(h) != 0 ||
        harness_sql_exec(h, "INSERT INTO slots (machine_id, slot_number, capacity, "
                            "current_stock, created_at, updated_at) VALUES ('VM01', 4, 10, 5, "
                            "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')") != 1 ||
        harness_sql_exec(h, "UPDATE slots SET is_active = 0 WHERE slot_number = 6") != 1 ||
        harness_sql_exec(h, "UPDATE slots SET needs_inspection = 1 WHERE slot_number = 3") != 1 ||
        harness_vendd_start(h) != 0 || harness_machine_online(h, &b->f->machine) != 0)
        return -1;
    harness_mqtt_set_handler(&b->f->machine, harness_autoanswer, &b->auto_answer);
    *state = b;
    return 0;
}

/* vendd must stop cleanly: under ASan a leak or an error at exit is a failure here. */
static int teardown(void **state)
{
    struct buy *b = *state;
    int rc;

    if (b == NULL)
        return 0; /* the group's setup failed and said why; cmocka still calls this */
    rc = harness_vendd_term(&b->f->h);
    if (rc != 0)
        fprintf(stderr, "vendd exited %d (log: %s)\n", rc, b->f->h.log_path);
    harness_fixture_free(b->f);
    pthread_mutex_destroy(&b->auto_answer.mu);
    free(b);
    return rc == 0 ? 0 : -1;
}

static long get(struct harness *h, const char *path, struct harness_reply *r)
{
    return harness_call(h, "GET", path, NULL, r);
}

/* The slots GET /api/buy/VM01 lists, as a bit set, with each one's available count. */
static unsigned menu_slots(struct harness *h, long available[8], bool *online)
{
    struct harness_reply r;
    json_t *p;
    size_t i;
    unsigned set = 0;
    long prev = 0;

    assert_int_equal(get(h, "/api/buy/VM01", &r), 200);
    assert_string_equal(harness_reply_str(&r, "machine_id"), "VM01");
    *online = json_is_true(json_object_get(r.json, "online"));
    json_array_foreach(json_object_get(r.json, "products"), i, p)
    {
        long slot = (long)json_integer_value(json_object_get(p, "slot"));

        assert_true(slot > prev && slot < 8); /* by slot number */
        prev = slot;
        assert_int_equal(json_object_size(p), 4);
        assert_non_null(json_string_value(json_object_get(p, "product_name")));
        assert_true(json_integer_value(json_object_get(p, "price")) > 0);
        available[slot] = (long)json_integer_value(json_object_get(p, "available"));
        set |= 1u << slot;
    }
    harness_reply_free(&r);
    return set;
}

/* A customer's QRIS order of quantity units of slot; its HTTP status, its id into id. */
static long order(struct harness *h, int slot, int quantity, const char *method, char id[64],
                  struct harness_reply *r)
{
    char items[64];

    snprintf(items, sizeof(items), "[{\"slot\":%d,\"quantity\":%d}]", slot, quantity);
    id[0] = '\0';
    return harness_order_customer(h, items, method, id, 64, r);
}

static void cancel(struct harness *h, const char *id)
{
    char path[512];

    snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    assert_int_equal(harness_call(h, "POST", path, NULL, NULL), 200);
}

/* The menu lists a slot exactly when a customer order of one unit of it is accepted. */
static void menu_is_what_an_order_accepts(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    long available[8] = {0};
    bool online = false;
    unsigned listed = menu_slots(h, available, &online);
    char id[64];

    assert_true(online);
    assert_int_equal(listed, 1u << 1); /* only slot 1 */
    assert_int_equal(available[1], 20);
    for (int slot = 1; slot <= 7; slot++) {
        long st = order(h, slot, 1, "qris", id, &r);

        if (((listed >> slot) & 1) != 0) {
            assert_int_equal(st, 201);
            cancel(h, id);
        } else if (st == 201) {
            fail_msg("slot %d is not on the menu, yet an order of it is accepted", slot);
        } else {
            assert_true(st == 404 || st == 409);
        }
        harness_reply_free(&r);
    }
    /* The inspection over, slot 3 sells, and is listed. */
    assert_int_equal(
        harness_call(h, "PUT", "/api/machines/VM01/slots/3", "{\"needs_inspection\":false}", NULL),
        200);
    listed = menu_slots(h, available, &online);
    assert_int_equal(listed, (1u << 1) | (1u << 3));
    assert_int_equal(available[3], 3);
    /* Stock promised to a PENDING order is not offered again. */
    assert_int_equal(order(h, 3, 2, "qris", id, &r), 201);
    harness_reply_free(&r);
    menu_slots(h, available, &online);
    assert_int_equal(available[3], 1);
    cancel(h, id);
    menu_slots(h, available, &online);
    assert_int_equal(available[3], 3);
}

static void menu_of_unsellable_machines(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char ids[PENDING_MAX][64], refused[64];
    long available[8] = {0};
    bool online = true;

    /* Registered, never online: nothing to buy. */
    assert_int_equal(get(h, "/api/buy/VM02", &r), 200);
    assert_true(json_is_false(json_object_get(r.json, "online")));
    assert_int_equal(json_array_size(json_object_get(r.json, "products")), 0);
    harness_reply_free(&r);
    assert_int_equal(get(h, "/api/buy/NOPE", &r), 404);
    assert_string_equal(harness_reply_str(&r, "error.code"), "NOT_FOUND");
    harness_reply_free(&r);
    /* ORDER_PENDING_MAX orders waiting: an order would be refused, so nothing is listed. */
    for (int i = 0; i < PENDING_MAX; i++) {
        assert_int_equal(order(h, 1, 1, "qris", ids[i], &r), 201);
        harness_reply_free(&r);
    }
    assert_int_equal(menu_slots(h, available, &online), 0);
    assert_true(online);
    assert_int_equal(order(h, 1, 1, "qris", refused, &r), 429);
    harness_reply_free(&r);
    for (int i = 0; i < PENDING_MAX; i++)
        cancel(h, ids[i]);
    assert_int_equal(menu_slots(h, available, &online), (1u << 1) | (1u << 3));
}

static void simulated_payments_names_the_fake(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char want[128], csp[256];
    CURL *c = curl_easy_init();
    struct curl_header *hd = NULL;
    char url[128];

    snprintf(want, sizeof(want), "http://127.0.0.1:%u/_fake/pay/", (unsigned)h->fake_port);
    assert_int_equal(get(h, "/api/buy/VM01", &r), 200);
    assert_string_equal(harness_reply_str(&r, "simulated_payments"), want);
    harness_reply_free(&r);
    /* The purchase page may call it: its CSP adds the fake's origin to connect-src. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/buy/VM01", (unsigned)h->http_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "GET");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    assert_int_equal(curl_easy_header(c, "Content-Security-Policy", 0, CURLH_HEADER, -1, &hd),
                     CURLHE_OK);
    snprintf(csp, sizeof(csp),
             "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
             "form-action 'self'; connect-src 'self' http://127.0.0.1:%u",
             (unsigned)h->fake_port);
    assert_string_equal(hd->value, csp);
    curl_easy_cleanup(c);
    /* The dashboard's CSP has no such origin. */
    c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", (unsigned)h->http_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "GET");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    assert_int_equal(curl_easy_header(c, "Content-Security-Policy", 0, CURLH_HEADER, -1, &hd),
                     CURLHE_OK);
    assert_null(strstr(hd->value, "connect-src"));
    curl_easy_cleanup(c);
}

/* GET /api/buy/orders/{id}?key=key; its HTTP status, r the answer. */
static long status_of(struct harness *h, const char *id, const char *key, struct harness_reply *r)
{
    char path[256];

    if (key != NULL)
        snprintf(path, sizeof(path), "/api/buy/orders/%s?key=%s", id, key);
    else
        snprintf(path, sizeof(path), "/api/buy/orders/%s", id);
    return get(h, path, r);
}

/* Poll (as the page does) until the order's status is want. */
static void wait_status(struct harness *h, const char *id, const char *key, const char *want)
{
    uint64_t until = harness_now_ms() + WAIT_MS;
    struct harness_reply r;
    char last[32] = "";

    for (;;) {
        assert_int_equal(status_of(h, id, key, &r), 200);
        snprintf(last, sizeof(last), "%s", harness_reply_str(&r, "status"));
        harness_reply_free(&r);
        if (strcmp(last, want) == 0)
            return;
        if (harness_now_ms() > until)
            fail_msg("order '%s' is %s, not %s (log: %s)", id, last, want, h->log_path);
        harness_sleep_ms(50);
    }
}

static bool is_hex32(const char *s)
{
    if (s == NULL || strlen(s) != 32)
        return false;
    for (; *s != '\0'; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    }
    return true;
}

static void order_status_with_key(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char id[64], key[40], other_id[64], other_key[40], sql[256], stored[40], bad[40];
    static const char *const fields[] = {
        "id",        "machine_id",   "status",     "total_amount", "payment_method",
        "qr_string", "redirect_url", "expires_at", "items",        "refund"};
    json_t *item;

    assert_int_equal(order(h, 1, 1, "qris", id, &r), 201);
    assert_true(is_hex32(harness_reply_str(&r, "status_key")));
    snprintf(key, sizeof(key), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    assert_int_equal(order(h, 1, 1, "snap", other_id, &r), 201);
    snprintf(other_key, sizeof(other_key), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    assert_string_not_equal(key, other_key);
    snprintf(sql, sizeof(sql), "SELECT status_key FROM orders WHERE id = '%s'", id);
    assert_int_equal(harness_sql_text(h, sql, stored, sizeof(stored)), 1);
    assert_string_equal(stored, key);

    assert_int_equal(status_of(h, id, key, &r), 200);
    assert_int_equal(json_object_size(r.json), sizeof(fields) / sizeof(fields[0]));
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (json_object_get(r.json, fields[i]) == NULL)
            fail_msg("no '%s' in %s", fields[i], r.body);
    }
    assert_string_equal(harness_reply_str(&r, "id"), id);
    assert_string_equal(harness_reply_str(&r, "machine_id"), "VM01");
    assert_string_equal(harness_reply_str(&r, "status"), "PENDING");
    assert_string_equal(harness_reply_str(&r, "payment_method"), "qris");
    assert_int_equal(json_integer_value(json_object_get(r.json, "total_amount")), 8000);
    assert_true(strlen(harness_reply_str(&r, "qr_string")) > 20);
    assert_true(json_is_null(json_object_get(r.json, "redirect_url")));
    assert_non_null(harness_reply_str(&r, "expires_at"));
    assert_true(json_is_null(json_object_get(r.json, "refund")));
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    item = json_array_get(json_object_get(r.json, "items"), 0);
    assert_int_equal(json_object_size(item), 5);
    assert_int_equal(json_integer_value(json_object_get(item, "slot")), 1);
    assert_string_equal(json_string_value(json_object_get(item, "product_name")), "Coca Cola");
    assert_int_equal(json_integer_value(json_object_get(item, "quantity")), 1);
    assert_int_equal(json_integer_value(json_object_get(item, "dropped")), 0);
    assert_int_equal(json_integer_value(json_object_get(item, "failed")), 0);
    harness_reply_free(&r);
    /* Snap: the payment page, no QR. */
    assert_int_equal(status_of(h, other_id, other_key, &r), 200);
    assert_non_null(harness_reply_str(&r, "redirect_url"));
    assert_true(json_is_null(json_object_get(r.json, "qr_string")));
    harness_reply_free(&r);

    /* Without the key, nobody reads it: each case is the unknown order's 404. */
    snprintf(bad, sizeof(bad), "%s", key);
    bad[0] = bad[0] == '0' ? '1' : '0';
    {
        const char *const keys[] = {bad, other_key, "", "0", NULL};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            assert_int_equal(status_of(h, id, keys[i], &r), 404);
            assert_string_equal(harness_reply_str(&r, "error.code"), "NOT_FOUND");
            harness_reply_free(&r);
        }
    }
    snprintf(bad, sizeof(bad), "%s", key);
    for (char *p = bad; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }
    if (strcmp(bad, key) != 0) {
        assert_int_equal(status_of(h, id, bad, &r), 404);
        harness_reply_free(&r);
    }
    assert_int_equal(status_of(h, "ORD-NOT-THERE", key, &r), 404);
    harness_reply_free(&r);
    /* An operator's order has no key at all. */
    assert_int_equal(harness_order(h, "it-buy-manual", 1, 1), 0);
    assert_int_equal(status_of(h, "it-buy-manual", key, &r), 404);
    harness_reply_free(&r);
    assert_int_equal(harness_trigger(h, "it-buy-manual", NULL), 200);
    assert_int_equal(harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'it-buy-manual'",
                                      "COMPLETED", WAIT_MS),
                     0);
    cancel(h, id);
    cancel(h, other_id);
    assert_int_equal(status_of(h, id, key, &r), 200);
    assert_string_equal(harness_reply_str(&r, "status"), "CANCELLED");
    harness_reply_free(&r);
}

static void pay(struct harness *h, const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/_fake/pay/%s", id);
    assert_int_equal(harness_fake_call(h, "POST", path, NULL, NULL), 200);
}

/* The page's view through payment: PENDING, then (paid) dispensing, then COMPLETED with its
 * units dropped; an order whose second unit jams ends FAILED with its refund. */
static void order_status_follows_payment(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char id[64], key[40];
    json_t *item, *refund;

    assert_int_equal(order(h, 1, 1, "qris", id, &r), 201);
    snprintf(key, sizeof(key), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    wait_status(h, id, key, "PENDING");
    pay(h, id);
    wait_status(h, id, key, "COMPLETED");
    assert_int_equal(status_of(h, id, key, &r), 200);
    item = json_array_get(json_object_get(r.json, "items"), 0);
    assert_int_equal(json_integer_value(json_object_get(item, "dropped")), 1);
    assert_int_equal(json_integer_value(json_object_get(item, "failed")), 0);
    assert_true(json_is_null(json_object_get(r.json, "refund")));
    harness_reply_free(&r);

    /* Two units: the first drops, the second jams (the machine's answer). */
    assert_int_equal(order(h, 1, 2, "qris", id, &r), 201);
    snprintf(key, sizeof(key), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    pay(h, id);
    wait_status(h, id, key, "FAILED");
    assert_int_equal(status_of(h, id, key, &r), 200);
    item = json_array_get(json_object_get(r.json, "items"), 0);
    assert_int_equal(json_integer_value(json_object_get(item, "quantity")), 2);
    assert_int_equal(json_integer_value(json_object_get(item, "dropped")), 1);
    assert_int_equal(json_integer_value(json_object_get(item, "failed")), 1);
    refund = json_object_get(r.json, "refund");
    assert_true(json_is_object(refund));
    assert_int_equal(json_object_size(refund), 2);
    assert_int_equal(json_integer_value(json_object_get(refund, "amount")), 8000);
    assert_non_null(json_string_value(json_object_get(refund, "status")));
    harness_reply_free(&r);
}

/* Today (UTC) as YYYY-MM-DD, plus days. */
static void utc_day(char out[16], int days)
{
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* By now: the manual order (1 unit), the paid order (1 unit) and the two-unit order (1 of 2)
 * dropped from slot 1, Coca Cola at 8000: 3 units, 24000. */
static void sales_from_the_database(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char today[16], week_ago[16], path[160], year[16], year_and_a_day[16], tomorrow[16];
    json_t *row;

    utc_day(today, 0);
    utc_day(week_ago, -6);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(get(h, "/api/sales", &r), 200);
        assert_string_equal(harness_reply_str(&r, "from"), week_ago);
        assert_string_equal(harness_reply_str(&r, "to"), today);
        assert_int_equal(json_array_size(json_object_get(r.json, "rows")), 1);
        row = json_array_get(json_object_get(r.json, "rows"), 0);
        assert_int_equal(json_object_size(row), 5);
        assert_string_equal(json_string_value(json_object_get(row, "day")), today);
        assert_string_equal(json_string_value(json_object_get(row, "machine_id")), "VM01");
        assert_string_equal(json_string_value(json_object_get(row, "product_name")), "Coca Cola");
        assert_int_equal(json_integer_value(json_object_get(row, "units")), 3);
        assert_int_equal(json_integer_value(json_object_get(row, "revenue")), 24000);
        harness_reply_free(&r);
        /* From the database, not from memory: the same after a restart. */
        if (pass == 0) {
            assert_int_equal(harness_vendd_term(h), 0);
            assert_int_equal(harness_vendd_start(h), 0);
        }
    }
    snprintf(path, sizeof(path), "/api/sales?from=%s&to=%s&machine_id=VM01", today, today);
    assert_int_equal(get(h, path, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rows")), 1);
    harness_reply_free(&r);
    assert_int_equal(get(h, "/api/sales?machine_id=VM02", &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rows")), 0);
    harness_reply_free(&r);
    snprintf(path, sizeof(path), "/api/sales?from=%s&to=%s", week_ago, week_ago);
    assert_int_equal(get(h, path, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rows")), 0);
    harness_reply_free(&r);
    /* 366 days is the most; one more, a reversed range, a date that does not exist: 422. */
    utc_day(year, -365);
    utc_day(year_and_a_day, -366);
    utc_day(tomorrow, 1);
    snprintf(path, sizeof(path), "/api/sales?from=%s&to=%s", year, today);
    assert_int_equal(get(h, path, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "rows")), 1);
    harness_reply_free(&r);
    {
        char p2[160], p3[160];
        const char *const bad[] = {path,
                                   p2,
                                   p3,
                                   "/api/sales?from=2026-02-30",
                                   "/api/sales?to=2026-1-01",
                                   "/api/sales?machine_id=bad%20id",
                                   "/api/sales?from=yesterday"};

        snprintf(path, sizeof(path), "/api/sales?from=%s&to=%s", year_and_a_day, today);
        snprintf(p2, sizeof(p2), "/api/sales?from=%s&to=%s", today, week_ago);
        snprintf(p3, sizeof(p3), "/api/sales?from=%s", tomorrow);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            if (get(h, bad[i], &r) != 422)
                fail_msg("%s: %ld, not 422", bad[i], r.status);
            assert_string_equal(harness_reply_str(&r, "error.code"), "INVALID_FIELD");
            harness_reply_free(&r);
        }
    }
}

/* POST /api/orders/{id}/cancel[?key=key] as whoever h is; its status, r optional. */
static long cancel_as(struct harness *h, const char *id, const char *key, struct harness_reply *r)
{
    char path[256];

    if (key != NULL)
        snprintf(path, sizeof(path), "/api/orders/%s/cancel?key=%s", id, key);
    else
        snprintf(path, sizeof(path), "/api/orders/%s/cancel", id);
    return harness_call(h, "POST", path, NULL, r);
}

/* The answer of an unknown order: 404 NOT_FOUND, "no order 'id'", nothing else. */
static void expect_unknown(struct harness *h, const char *id, const char *key)
{
    struct harness_reply r;
    char want[128];

    if (cancel_as(h, id, key, &r) != 404)
        fail_msg("cancel '%s' with key '%s': %ld %s, not 404", id, key ? key : "(none)", r.status,
                 r.body ? r.body : "");
    snprintf(want, sizeof(want), "no order '%s'", id);
    assert_string_equal(harness_reply_str(&r, "error.code"), "NOT_FOUND");
    assert_string_equal(harness_reply_str(&r, "error.message"), want);
    assert_null(json_object_get(json_object_get(r.json, "error"), "status"));
    harness_reply_free(&r);
}

static void expect_status(struct harness *h, const char *id, const char *want)
{
    char sql[160];

    snprintf(sql, sizeof(sql), "SELECT status FROM orders WHERE id = '%s'", id);
    assert_int_equal(harness_sql_wait(h, sql, want, 0), 0);
}

/* With API_TOKEN set, so that a request without it is a customer's. */
static void cancel_needs_the_key(void **state)
{
    struct buy *b = *state;
    struct harness *h = &b->f->h;
    struct harness_reply r;
    char a[64], ka[40], c[64], kc[40], done[64], kdone[40], bad[40], upper[40], sql[160];

    assert_int_equal(harness_vendd_term(h), 0);
    /* The jam of an earlier case left slot 1 for an inspection. */
    assert_int_equal(
        harness_sql_exec(h, "UPDATE slots SET needs_inspection = 0 WHERE slot_number = 1"), 1);
    assert_int_equal(harness_env_set(h, "API_TOKEN=" TOKEN), 0);
    assert_int_equal(harness_vendd_start(h), 0);
    assert_int_equal(harness_machine_online(h, &b->f->machine), 0);
    h->bearer[0] = '\0';

    if (order(h, 1, 1, "qris", a, &r) != 201)
        fail_msg("order: %ld %s", r.status, r.body ? r.body : "");
    snprintf(ka, sizeof(ka), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    assert_int_equal(order(h, 1, 1, "qris", c, &r), 201);
    snprintf(kc, sizeof(kc), "%s", harness_reply_str(&r, "status_key"));
    harness_reply_free(&r);
    snprintf(bad, sizeof(bad), "%s", ka);
    bad[31] = bad[31] == '0' ? '1' : '0';
    snprintf(upper, sizeof(upper), "%s", ka);
    for (char *p = upper; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }

    /* Someone who knows only the id: no key, a wrong one, another order's, one too short or
     * too long. Each is the unknown order, and the order stays PENDING. */
    {
        char longer[48];
        const char *const keys[] = {NULL, "", bad, kc, "0", longer, upper};

        snprintf(longer, sizeof(longer), "%s00", ka);
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            if (keys[i] == upper && strcmp(upper, ka) == 0)
                continue;
            expect_unknown(h, a, keys[i]);
        }
    }
    expect_unknown(h, "ORD-NOT-THERE", ka);
    expect_status(h, a, "PENDING");

    /* An order no longer PENDING: without its key the 409 would tell its status. */
    assert_int_equal(harness_sql_text(h,
                                      "SELECT id FROM orders WHERE origin = 'customer' AND "
                                      "status = 'COMPLETED' ORDER BY created_at LIMIT 1",
                                      done, sizeof(done)),
                     1);
    snprintf(sql, sizeof(sql), "SELECT status_key FROM orders WHERE id = '%s'", done);
    assert_int_equal(harness_sql_text(h, sql, kdone, sizeof(kdone)), 1);
    expect_unknown(h, done, NULL);
    expect_unknown(h, done, ka);
    assert_int_equal(cancel_as(h, done, kdone, &r), 409);
    assert_string_equal(harness_reply_str(&r, "error.code"), "WRONG_STATE");
    assert_string_equal(harness_reply_str(&r, "error.status"), "COMPLETED");
    harness_reply_free(&r);

    /* An operator's order is the operator's alone: it has no key a customer could give. */
    expect_unknown(h, "it-buy-manual", NULL);
    expect_unknown(h, "it-buy-manual", ka);

    /* The key's holder cancels; once. */
    assert_int_equal(cancel_as(h, a, ka, &r), 200);
    assert_string_equal(harness_reply_str(&r, "order_id"), a);
    assert_string_equal(harness_reply_str(&r, "status"), "CANCELLED");
    harness_reply_free(&r);
    expect_status(h, a, "CANCELLED");
    assert_int_equal(cancel_as(h, a, ka, &r), 409);
    assert_string_equal(harness_reply_str(&r, "error.status"), "CANCELLED");
    harness_reply_free(&r);
    expect_unknown(h, a, NULL);

    /* The operator needs no key, for a customer's order or a manual one. */
    snprintf(h->bearer, sizeof(h->bearer), "%s", TOKEN);
    assert_int_equal(cancel_as(h, c, NULL, &r), 200);
    assert_string_equal(harness_reply_str(&r, "status"), "CANCELLED");
    harness_reply_free(&r);
    assert_int_equal(cancel_as(h, "it-buy-manual", NULL, &r), 409);
    assert_string_equal(harness_reply_str(&r, "error.status"), "COMPLETED");
    harness_reply_free(&r);
    assert_int_equal(cancel_as(h, "ORD-NOT-THERE", NULL, NULL), 404);
    h->bearer[0] = '\0';
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(menu_is_what_an_order_accepts),
        cmocka_unit_test(menu_of_unsellable_machines),
        cmocka_unit_test(simulated_payments_names_the_fake),
        cmocka_unit_test(order_status_with_key),
        cmocka_unit_test(order_status_follows_payment),
        cmocka_unit_test(sales_from_the_database),
        cmocka_unit_test(cancel_needs_the_key),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
