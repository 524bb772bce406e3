/* test_http_cache.c - http_cache.c: an answer is served only at the version it was kept at,
 * never at an unknown one, and the cache never holds more than its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_cache.h"

static void served_only_at_its_version(void **state)
{
    struct http_cache *c = http_cache_new(NULL);
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

static void bounded(void **state)
{
    struct http_cache *c = http_cache_new(NULL);
    const uint64_t v[2] = {1, 1};
    char *big = malloc(HTTP_CACHE_BODY_MAX + 2), key[64], *got;
    size_t kept = 0, n = 0;
    uint64_t x = 88172645463325252u;

    (void)state;
    assert_non_null(big);
    /* Bytes that deflate little (6.5 bits a byte), so the bound is reached. */
    for (size_t i = 0; i <= HTTP_CACHE_BODY_MAX; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big[i] = (char)('#' + x % 90);
    }
    big[HTTP_CACHE_BODY_MAX + 1] = '\0';
    http_cache_put(c, "/big", v, big); /* over the body bound: not kept */
    assert_null(http_cache_get(c, "/big", v));
    big[HTTP_CACHE_BODY_MAX] = '\0';
    /* Bodies of the largest size until the byte bound: the cache stops keeping, never grows. */
    for (n = 0; n < 2 * HTTP_CACHE_BYTES_MAX / HTTP_CACHE_BODY_MAX; n++) {
        snprintf(key, sizeof(key), "/api/orders/O%zu", n);
        http_cache_put(c, key, v, big);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "/api/orders/O%zu", i);
        got = http_cache_get(c, key, v);
        kept += got != NULL;
        free(got);
    }
    assert_true(kept > 0);
    assert_true(kept < n);
    assert_true(http_cache_bytes(c) <= HTTP_CACHE_BYTES_MAX);
    free(big);
    http_cache_free(c);
}

/* Answers come back byte for byte, kept deflated against the dictionary or not. */
static void deflated_and_back(void **state)
{
    static const char dict[] = "{\"id\":\"\",\"status\":\"COMPLETED\",\"refund\":null}";
    const uint64_t v[2] = {7, 7};
    char body[2048], key[64], *got;

    (void)state;
    for (int d = 0; d < 2; d++) {
        struct http_cache *c = http_cache_new(d ? dict : NULL);

        for (int i = 0; i < 2000; i++) {
            snprintf(key, sizeof(key), "/api/orders/O%d", i);
            snprintf(body, sizeof(body), "{\"id\":\"O%d\",\"status\":\"COMPLETED\",%*s\"n\":%d}", i,
                     i % 500, "", i * 7919);
            http_cache_put(c, key, v, body);
        }
        for (int i = 0; i < 2000; i++) {
            snprintf(key, sizeof(key), "/api/orders/O%d", i);
            snprintf(body, sizeof(body), "{\"id\":\"O%d\",\"status\":\"COMPLETED\",%*s\"n\":%d}", i,
                     i % 500, "", i * 7919);
            got = http_cache_get(c, key, v);
            assert_non_null(got);
            assert_string_equal(got, body);
            free(got);
        }
        /* Mostly spaces: kept in far fewer bytes than served. */
        assert_true(http_cache_bytes(c) < 2000 * 300);
        http_cache_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(served_only_at_its_version),
        cmocka_unit_test(bounded),
        cmocka_unit_test(deflated_and_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
