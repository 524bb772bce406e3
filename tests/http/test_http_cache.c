/* test_http_cache.c - http_cache.c: an answer is served only at the version it was kept at,
 * never at an unknown one, byte for byte as it was kept (kept as what differs from its
 * prefix's template), the cache never holds more than its bounds, and a fleet's stock and
 * order answers fit in them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_cache.h"

static void served_only_at_its_version(void **state)
{
    struct http_cache *c = http_cache_new();
    const uint64_t v1[2] = {1, 7}, v2[2] = {2, 7}, v3[2] = {1, 8},
                   unknown[2] = {1, HTTP_CACHE_VERSION_UNKNOWN};
    char *got;

    (void)state;
    assert_null(http_cache_get(c, "/api/stock/VM01", v1));
    http_cache_put(c, "/api/stock/VM01", v1, "{\"a\":1}");
    got = http_cache_get(c, "/api/stock/VM01", v1);
    assert_string_equal(got, "{\"a\":1}");
    free(got);
    assert_null(http_cache_get(c, "/api/stock/VM01", v2)); /* our own change */
    assert_null(http_cache_get(c, "/api/stock/VM01", v3)); /* another process's commit */
    assert_null(http_cache_get(c, "/api/stock/VM02", v1));
    http_cache_put(c, "/api/stock/VM03", unknown, "{}");
    assert_null(http_cache_get(c, "/api/stock/VM03", unknown));
    http_cache_free(c);
}

/* xorshift: bodies that share nothing with each other or a template. */
static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void random_text(char *buf, size_t len, uint32_t *x)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)(' ' + next_rand(x) % 94);
    buf[len] = '\0';
}

static void bounded(void **state)
{
    struct http_cache *c = http_cache_new();
    const uint64_t v[2] = {1, 1};
    char *big = malloc(HTTP_CACHE_BODY_MAX + 2), key[64], *got;
    size_t kept = 0, n = 0;
    uint32_t x = 2463534242u;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', HTTP_CACHE_BODY_MAX + 1);
    big[HTTP_CACHE_BODY_MAX + 1] = '\0';
    http_cache_put(c, "/big", v, big); /* over the body bound: not kept */
    assert_null(http_cache_get(c, "/big", v));
    /* Bodies of the largest size, none like another, past the byte bound: older ones make
     * room for newer ones, and never more than the bound is kept. */
    for (n = 0; n < 2 * HTTP_CACHE_BYTES_MAX / HTTP_CACHE_BODY_MAX; n++) {
        snprintf(key, sizeof(key), "/api/orders/O%zu", n);
        random_text(big, HTTP_CACHE_BODY_MAX, &x);
        http_cache_put(c, key, v, big);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "/api/orders/O%zu", i);
        got = http_cache_get(c, key, v);
        kept += got != NULL;
        free(got);
    }
    assert_true(kept > 0);
    assert_true(kept * HTTP_CACHE_BODY_MAX <= HTTP_CACHE_BYTES_MAX);
    snprintf(key, sizeof(key), "/api/orders/O%zu", n - 1);
    got = http_cache_get(c, key, v); /* the newest is there */
    assert_non_null(got);
    assert_string_equal(got, big);
    free(got);
    free(big);
    http_cache_free(c);
}

/* A stock answer like vendd's for machine i, with values that change from one to another. */
static void stock_answer(char *buf, size_t size, size_t i)
{
    snprintf(buf, size,
             "{\"machine_id\":\"vm%05zu\",\"slots\":[{\"slot_number\":1,\"product_id\":1,"
             "\"product_name\":\"Cola\",\"price\":5000,\"capacity\":1000,\"current_stock\":%zu,"
             "\"motor_duration_ms\":1500,\"sensor_level\":null,\"sensor_at\":null,"
             "\"needs_inspection\":false,\"version\":%zu,\"is_active\":true,"
             "\"updated_at\":\"2026-11-29T12:%02zu:%02zu.%03zuZ\"},{\"slot_number\":2,"
             "\"product_id\":2,\"product_name\":\"Tea\",\"price\":4000,\"capacity\":10,"
             "\"current_stock\":%zu,\"motor_duration_ms\":1500,\"sensor_level\":null,"
             "\"sensor_at\":null,\"needs_inspection\":false,\"version\":1,\"is_active\":true,"
             "\"updated_at\":\"2026-11-29T12:51:49.232Z\"}]}",
             i, 1000 - i % 997, 1 + i % 313, i % 60, (i * 7) % 60, (i * 13) % 1000, i % 11);
}

static void order_answer(char *buf, size_t size, size_t i)
{
    snprintf(
        buf, size,
        "{\"id\":\"bd1000-%07zu\",\"machine_id\":\"vm%05zu\",\"status\":\"%s\","
        "\"origin\":\"operator\",\"payment_method\":\"manual\",\"quantity\":1,"
        "\"total_amount\":5000,\"failure_reason\":null,\"payment_url\":null,"
        "\"payment_token\":null,\"payment_qr\":null,\"paid_at\":\"2026-11-29T12:52:%02zu.%03zuZ\","
        "\"dispensed_at\":\"2026-11-29T12:52:49.%03zuZ\",\"expires_at\":null,"
        "\"created_at\":\"2026-11-29T12:52:36.833Z\",\"updated_at\":\"2026-11-29T12:52:49.899Z\","
        "\"items\":[{\"position\":1,\"slot\":1,\"product_name\":\"Cola \u00e9\xc3\xa9\","
        "\"quantity\":1,\"unit_price\":5000,\"total\":5000}],\"units\":[{\"unit\":1,"
        "\"machine_id\":\"vm%05zu\",\"slot_number\":1,\"status\":\"SUCCEEDED\",\"timeout_ms\":1500,"
        "\"command_sent_at\":\"2026-11-29T12:52:49.864Z\",\"deadline_at\":\"2026-11-29T12:52:"
        "56.364Z\",\"completed_at\":\"2026-11-29T12:52:49.899Z\",\"duration_ms\":%zu,"
        "\"success\":true,\"drop_detected\":true,\"error_message\":null,"
        "\"late_result\":false}],\"payment_events\":[],\"refund\":null}",
        i, i % 10000, i % 7 == 0 ? "FAILED" : "COMPLETED", i % 60, i % 1000, (i * 3) % 1000,
        i % 10000, i % 50);
}

/* 10,000 machines' stock and 10,000 orders, 14 MB as text: every one kept, and each read
 * back as it was, so a fleet's hot reads are served from the cache. */
static void a_fleet_fits(void **state)
{
    struct http_cache *c = http_cache_new();
    const uint64_t v[2] = {7, 3};
    char key[64], body[2048], *got;
    size_t raw = 0;

    (void)state;
    for (size_t i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "/api/stock/vm%05zu", i);
        stock_answer(body, sizeof(body), i);
        raw += strlen(body);
        http_cache_put(c, key, v, body);
        snprintf(key, sizeof(key), "/api/orders/bd1000-%07zu", i);
        order_answer(body, sizeof(body), i);
        raw += strlen(body);
        http_cache_put(c, key, v, body);
    }
    assert_true(raw > 3 * HTTP_CACHE_BYTES_MAX);
    for (size_t i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "/api/stock/vm%05zu", i);
        stock_answer(body, sizeof(body), i);
        got = http_cache_get(c, key, v);
        assert_non_null(got);
        assert_string_equal(got, body);
        free(got);
        snprintf(key, sizeof(key), "/api/orders/bd1000-%07zu", i);
        order_answer(body, sizeof(body), i);
        got = http_cache_get(c, key, v);
        assert_non_null(got);
        assert_string_equal(got, body);
        free(got);
    }
    http_cache_free(c);
}

/* Bodies unlike their template, shorter, longer, with long runs and repeats: the same bytes
 * come back. */
static void any_body_comes_back(void **state)
{
    struct http_cache *c = http_cache_new();
    const uint64_t v[2] = {1, 2};
    static char tmpl[HTTP_CACHE_BODY_MAX + 1], body[HTTP_CACHE_BODY_MAX + 1];
    char key[64], *got;
    uint32_t x = 88172645u;

    (void)state;
    random_text(tmpl, 3000, &x);
    http_cache_put(c, "/api/x/template", v, tmpl);
    for (size_t i = 0; i < 300; i++) {
        size_t len = next_rand(&x) % HTTP_CACHE_BODY_MAX;

        /* Pieces of the template (some longer than one copy), random bytes, and runs. */
        for (size_t o = 0; o < len;) {
            size_t k = 1 + next_rand(&x) % 400, from = next_rand(&x) % 3000;

            if (k > len - o)
                k = len - o;
            switch (next_rand(&x) % 3) {
            case 0:
                if (k > 3000 - from)
                    k = 3000 - from;
                memcpy(body + o, tmpl + from, k);
                break;
            case 1:
                random_text(body + o, k, &x);
                break;
            default:
                memset(body + o, 'a' + (int)(i % 26), k);
                break;
            }
            o += k;
        }
        body[len] = '\0';
        snprintf(key, sizeof(key), "/api/x/%zu", i);
        http_cache_put(c, key, v, body);
        got = http_cache_get(c, key, v);
        assert_non_null(got);
        assert_string_equal(got, body);
        free(got);
    }
    got = http_cache_get(c, "/api/x/template", v);
    assert_non_null(got);
    assert_string_equal(got, tmpl);
    free(got);
    http_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(served_only_at_its_version),
        cmocka_unit_test(bounded),
        cmocka_unit_test(a_fleet_fits),
        cmocka_unit_test(any_body_comes_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
