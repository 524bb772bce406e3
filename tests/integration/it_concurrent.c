/*
 * it_concurrent.c - 50 concurrent triggers of one PAID order (SPEC §4 rules 1-2): exactly
 * one 200, 49 x 409, and the machine's command topic carries exactly ONE command.
 * The 50 requests are in flight together through one curl multi handle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define N_TRIGGERS 50

static size_t discard(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data, (void)arg;
    return size * nmemb;
}

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 8, 2150}, {0, 0, 0}};

    *state = harness_fixture_new(NULL, slots, NULL);
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

static void fifty_triggers_send_one_command(void **state)
{
    static const char body[] = "{\"order_id\":\"race-1\"}";
    struct harness_fixture *f = *state;
    struct harness *h = &f->h;
    struct harness_mqtt sub;
    CURL *easy[N_TRIGGERS];
    CURLM *multi;
    struct curl_slist *hdrs = NULL;
    char url[128];
    int running = 0, ok = 0, conflict = 0, other = 0;
    uint64_t deadline;
    long st;

    assert_int_equal(harness_order(h, "race-1", 1, 1), 0);
    assert_int_equal(
        harness_mqtt_open(&sub, h->broker.port, "it-race-sub", "vm/VM01/command", NULL, NULL), 0);

    snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/dispense/trigger", (unsigned)h->http_port);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    multi = curl_multi_init();
    assert_non_null(multi);
    /* One connection per request, all opened together. */
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)N_TRIGGERS);
    for (int i = 0; i < N_TRIGGERS; i++) {
        easy[i] = curl_easy_init();
        assert_non_null(easy[i]);
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(easy[i], CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        curl_multi_add_handle(multi, easy[i]);
    }
    deadline = harness_now_ms() + 30000;
    do {
        curl_multi_perform(multi, &running);
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running > 0 && harness_now_ms() < deadline);
    assert_int_equal(running, 0);
    for (int i = 0; i < N_TRIGGERS; i++) {
        st = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &st);
        if (st == 200)
            ok++;
        else if (st == 409)
            conflict++;
        else
            other++;
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);

    assert_int_equal(other, 0);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, N_TRIGGERS - 1);
    /* The one command, and no second one even after a while. */
    assert_int_equal(harness_mqtt_wait(&sub, 1, 5000), 1);
    assert_int_equal(harness_mqtt_wait(&sub, 2, 1000), 1);
    assert_string_equal(
        harness_mqtt_payload(&sub, 0),
        "{\"cmd\":\"dispense\",\"slot\":1,\"orderId\":\"race-1\",\"timeoutMs\":2150}");
    assert_int_equal(harness_sql_wait(h, "SELECT count(*) FROM dispense_logs", "1", 0), 0);
    assert_int_equal(
        harness_sql_wait(h, "SELECT status FROM orders WHERE id = 'race-1'", "DISPENSING", 0), 0);
    harness_mqtt_close(&sub);
    assert_int_equal(harness_vendd_term(h), 0);
    assert_int_equal(harness_check(h, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fifty_triggers_send_one_command),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
