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

static void bounded(void **state)
{
    struct http_cache *c = http_cache_new();
    const uint64_t v[2] = {1, 1};
    char *big = malloc(HTTP_CACHE_BODY_MAX + 2), key[64], *got;
    size_t kept = 0, n = 0;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', HTTP_CACHE_BODY_MAX + 1);
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
    assert_true(kept * HTTP_CACHE_BODY_MAX <= HTTP_CACHE_BYTES_MAX);
    free(big);
    http_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(served_only_at_its_version),
        cmocka_unit_test(bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
