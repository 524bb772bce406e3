/*
 * test_conf_redact.c - passwords in URLs never show: found in review, redact_url() stopped looking
 * for the user-info '@' at the first '/', '?' or '#', so a password containing one of those
 * characters (legal for libpq: it scans to '@' or '/') is printed in full by conf_print() (`vendd
 * --check -v`) and echoed by conf_load()'s error report.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "vend/err.h"

static char *print_conf(const struct vendd_conf *conf)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    conf_print(conf, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static char *load_errors(char *kv, int *rc, struct vendd_conf *conf)
{
    char *envp[] = {kv, NULL};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    *rc = conf_load(conf, envp, NULL, f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

/* Control: the plain case is redacted today. */
static void plain_password_is_redacted(void **state)
{
    char kv[] = "DATABASE_URL=postgres://vendd:Sup3rSecret@db.example/vend";
    struct vendd_conf conf;
    int rc;
    char *err = load_errors(kv, &rc, &conf);
    char *out;

    (void)state;
    assert_int_equal(rc, VEND_OK);
    out = print_conf(&conf);
    assert_null(strstr(out, "Sup3rSecret"));
    free(out);
    free(err);
}

static void check_print_hides(const char *password)
{
    char kv[256];
    struct vendd_conf conf;
    int rc;
    char *err, *out;

    snprintf(kv, sizeof kv, "DATABASE_URL=postgres://vendd:%s@db.example/vend", password);
    err = load_errors(kv, &rc, &conf);
    assert_int_equal(rc, VEND_OK);
    out = print_conf(&conf);
    if (strstr(out, password) != NULL)
        fprintf(stderr, "LEAK in conf_print: %s", strstr(out, "DATABASE_URL"));
    assert_null(strstr(out, password));
    free(out);
    free(err);
}

static void password_with_hash_leaks_in_print(void **state)
{
    (void)state;
    check_print_hides("Sup3r#Secret");
}

static void password_with_question_leaks_in_print(void **state)
{
    (void)state;
    check_print_hides("Sup3r?Secret");
}

/* libpq takes the password from the query string too (postgresql://u@host/db?password=...):
 * found while lifting the PostgreSQL refusal, redact_url() looked at the user info only. */
static void password_in_query_leaks_in_print(void **state)
{
    static const char *const urls[] = {
        "DATABASE_URL=postgresql://vendd@/vend?host=/run/pg&password=Sup3rSecret&port=5432",
        "DATABASE_URL=postgres://vendd@db.example/vend?password=Sup3rSecret",
        "DATABASE_URL=postgres://vendd@db.example/vend?sslmode=require&PASSWORD=Sup3rSecret",
        "DATABASE_URL=postgres://vendd:Sup3rSecret@db.example/vend?password=Sup3rSecret",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        char kv[160];
        struct vendd_conf conf;
        int rc;
        char *err, *out;

        snprintf(kv, sizeof kv, "%s", urls[i]);
        err = load_errors(kv, &rc, &conf);
        assert_int_equal(rc, VEND_OK);
        out = print_conf(&conf);
        if (strstr(out, "Sup3rSecret") != NULL)
            fprintf(stderr, "LEAK in conf_print: %s", strstr(out, "DATABASE_URL"));
        assert_null(strstr(out, "Sup3rSecret"));
        /* What is not the password stays, so the operator sees which database. */
        assert_non_null(strstr(out, "vend"));
        free(out);
        free(err);
    }
}

/* The error path: MQTT_BROKER_URL with user info is rejected, and the echo must hide it. */
static void mqtt_url_error_echo_leaks(void **state)
{
    char kv[] = "MQTT_BROKER_URL=mqtt://vendd:Sup3r#Secret@broker.example:8883";
    struct vendd_conf conf;
    int rc;
    char *err = load_errors(kv, &rc, &conf);

    (void)state;
    assert_int_equal(rc, VEND_ECONF);
    if (strstr(err, "Sup3r") != NULL)
        fprintf(stderr, "LEAK in report: %s", err);
    assert_null(strstr(err, "Sup3r"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_password_is_redacted),
        cmocka_unit_test(password_with_hash_leaks_in_print),
        cmocka_unit_test(password_with_question_leaks_in_print),
        cmocka_unit_test(password_in_query_leaks_in_print),
        cmocka_unit_test(mqtt_url_error_echo_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
