/*
 * test_midtrans.c - the notification decoder, the signature and the "paid" rule of
 * midtrans.c, against Midtrans's documented formats: strings as received, whole rupiah,
 * lowercase SHA-512 hex compared in constant time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "midtrans.h"
#include "vend/err.h"

#define KEY "SB-Mid-server-test"

/* A settlement notification for order_id of gross, signed with key (or with sig if set). */
static int make(char *buf, size_t size, const char *order_id, const char *gross, const char *status,
                const char *fraud, const char *sig)
{
    struct midtrans_notification n = {0};
    char want[MIDTRANS_SIGNATURE_HEX + 1];

    snprintf(n.order_id, sizeof(n.order_id), "%s", order_id);
    snprintf(n.status_code, sizeof(n.status_code), "200");
    snprintf(n.gross_amount, sizeof(n.gross_amount), "%s", gross);
    midtrans_sign(&n, KEY, want);
    return snprintf(buf, size,
                    "{\"transaction_status\":\"%s\",\"status_code\":\"200\",\"order_id\":\"%s\","
                    "\"gross_amount\":\"%s\",\"fraud_status\":\"%s\",\"signature_key\":\"%s\","
                    "\"transaction_id\":\"tx-1\",\"payment_type\":\"qris\",\"new_field\":[1,2]}",
                    status, order_id, gross, fraud, sig != NULL ? sig : want);
}

static void settlement_verifies_and_is_paid(void **state)
{
    struct midtrans_notification n;
    char body[1024], why[160];
    int len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", NULL);

    (void)state;
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), VEND_OK);
    assert_int_equal(n.amount, 10000);
    assert_string_equal(n.gross_amount, "10000.00");
    assert_true(midtrans_signature_ok(&n, KEY));
    assert_false(midtrans_signature_ok(&n, "another key"));
    assert_int_equal(midtrans_outcome_of(&n), MIDTRANS_PAID);
}

static void signature_is_exact(void **state)
{
    struct midtrans_notification n;
    char body[1024], why[160], sig[MIDTRANS_SIGNATURE_HEX + 1];
    int len;

    (void)state;
    /* Signed for "10000.00", sent as "10000": the strings are what is signed. */
    len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", NULL);
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
    snprintf(n.gross_amount, sizeof(n.gross_amount), "10000");
    assert_false(midtrans_signature_ok(&n, KEY));
    /* Upper-case hex of the right digest is still the right signature. */
    len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", NULL);
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
    for (char *p = n.signature_key; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_true(midtrans_signature_ok(&n, KEY));
    /* One digit off, too short, empty: refused. */
    memcpy(sig, n.signature_key, sizeof(sig));
    sig[0] = sig[0] == '0' ? '1' : '0';
    len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", sig);
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
    assert_false(midtrans_signature_ok(&n, KEY));
    len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", "abc");
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
    assert_false(midtrans_signature_ok(&n, KEY));
    len = make(body, sizeof(body), "ORD-1", "10000.00", "settlement", "accept", "");
    assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
    assert_false(midtrans_signature_ok(&n, KEY));
}

static void paid_rule(void **state)
{
    static const struct {
        const char *status, *fraud;
        enum midtrans_outcome want;
    } cases[] = {
        {"settlement", "accept", MIDTRANS_PAID},   {"settlement", "", MIDTRANS_PAID},
        {"capture", "accept", MIDTRANS_PAID},      {"capture", "challenge", MIDTRANS_OTHER},
        {"capture", "deny", MIDTRANS_OTHER},       {"settlement", "deny", MIDTRANS_OTHER},
        {"pending", "accept", MIDTRANS_PENDING},   {"deny", "deny", MIDTRANS_CANCELLED},
        {"cancel", "", MIDTRANS_CANCELLED},        {"failure", "", MIDTRANS_CANCELLED},
        {"expire", "", MIDTRANS_EXPIRED},          {"refund", "accept", MIDTRANS_REFUNDED},
        {"partial_refund", "", MIDTRANS_REFUNDED}, {"chargeback", "", MIDTRANS_OTHER},
        {"authorize", "", MIDTRANS_OTHER},
    };
    struct midtrans_notification n;
    char body[1024], why[160];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int len = make(body, sizeof(body), "O", "1", cases[i].status, cases[i].fraud, NULL);

        assert_int_equal(midtrans_parse_notification(body, (size_t)len, &n, why, sizeof(why)), 0);
        if (midtrans_outcome_of(&n) != cases[i].want)
            fail_msg("%s/%s: %s, want %s", cases[i].status, cases[i].fraud,
                     midtrans_outcome_name(midtrans_outcome_of(&n)),
                     midtrans_outcome_name(cases[i].want));
    }
    /* Paid needs status_code 200 too. */
    {
        static const char body201[] =
            "{\"transaction_status\":\"settlement\",\"status_code\":\"201\","
            "\"order_id\":\"O\",\"gross_amount\":\"1.00\"}";

        assert_int_equal(
            midtrans_parse_notification(body201, strlen(body201), &n, why, sizeof(why)), 0);
    }
    assert_int_not_equal(midtrans_outcome_of(&n), MIDTRANS_PAID);
}

static void bad_notifications_name_the_field(void **state)
{
    static const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"", "not JSON"},
        {"[]", "not a JSON object"},
        {"{\"status_code\":\"200\",\"transaction_status\":\"settlement\",\"gross_amount\":\"1\"}",
         "'order_id' is missing"},
        {"{\"order_id\":7,\"status_code\":\"200\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"1\"}",
         "'order_id' is not a string"},
        {"{\"order_id\":\"a b\",\"status_code\":\"200\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"1\"}",
         "'order_id' must match"},
        {"{\"order_id\":\"O\",\"status_code\":\"2x0\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"1\"}",
         "'status_code'"},
        {"{\"order_id\":\"O\",\"status_code\":\"200\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"10000.50\"}",
         "'gross_amount' is not whole rupiah"},
        {"{\"order_id\":\"O\",\"status_code\":\"200\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"-5\"}",
         "'gross_amount'"},
        {"{\"order_id\":\"O\",\"status_code\":\"200\",\"transaction_status\":\"x\","
         "\"gross_amount\":\"99999999999999999999\"}",
         "'gross_amount'"},
        {"{\"order_id\":\"O\",\"status_code\":\"200\",\"transaction_status\":\"a\\u0001\","
         "\"gross_amount\":\"1\"}",
         "control character"},
        {"{\"order_id\":\"O\",\"order_id\":\"P\",\"status_code\":\"200\","
         "\"transaction_status\":\"x\",\"gross_amount\":\"1\"}",
         "not JSON"},
    };
    struct midtrans_notification n;
    char why[160];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        assert_true(midtrans_parse_notification(cases[i].body, strlen(cases[i].body), &n, why,
                                                sizeof(why)) < 0);
        if (strstr(why, cases[i].field) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, why, cases[i].field);
    }
    assert_int_equal(
        midtrans_parse_notification("{}", MIDTRANS_NOTIFICATION_MAX + 1, &n, why, sizeof(why)),
        VEND_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(settlement_verifies_and_is_paid),
        cmocka_unit_test(signature_is_exact),
        cmocka_unit_test(paid_rule),
        cmocka_unit_test(bad_notifications_name_the_field),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
