/*
 * it_odd_paths.c - request smuggling and odd input against the real vendd over TCP (issue 12,
 * item 3): paths with %00, "..", "%2e%2e", "//", encoded slashes and overlong segments;
 * control characters and spaces in machine ids and names; numbers with leading spaces,
 * leading zeros, '+', an exponent, hex or too many digits in slots, quantities, prices, path
 * ids and query parameters. Each is refused with a 4xx whose body says why
 * ({"error":{"code","message"}}), and none changes a row of the database. The requests are
 * written byte for byte on a socket: an HTTP library would tidy the paths first.
 */
#define _GNU_SOURCE /* strcasestr */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define REPLY_MAX 65536
#define WAIT_MS   5000
#define ALERT_SQL "SELECT count(*) FROM alerts WHERE id = 1 AND resolved_at IS NULL"
#define LONG_SEG  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 65 */
#define JSON_SLOT "{\"price\":9000}"
#define BAD_PATH  "BAD_PATH"
#define BAD_PARAM "BAD_PARAM"
#define INVALID   "INVALID_FIELD"
#define NOT_FOUND "NOT_FOUND"
#define MALFORMED "MALFORMED"
#define TOO_LONG  "(too long)" /* MHD's own answer: any 4xx, no JSON */

struct raw_reply {
    int status; /* 0: no answer */
    char text[REPLY_MAX + 1];
    json_t *json; /* the body, if JSON */
};

/* One request, and the refusal it must get. */
struct odd_case {
    const char *method;
    const char *target;
    const char *body; /* JSON, or NULL */
    int status;       /* the answer wanted */
    const char *code; /* its error.code; TOO_LONG: MHD answers, not vendd */
};

/*
 * One request on a fresh connection, exactly as given. Reads the head and, with a
 * Content-Length, the body; a stream (an accepted GET /api/events) ends at its head.
 */
static void raw_http(const struct harness *h, const char *method, const char *target,
                     const char *body, struct raw_reply *r)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(h->http_port)};
    size_t len = 0, cap = strlen(target) + 512 + (body != NULL ? strlen(body) : 0);
    char *req = malloc(cap);
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    int fd, n;

    memset(r, 0, sizeof(*r));
    assert_non_null(req);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n", method,
                 target, (unsigned)h->http_port);
    if (body != NULL)
        n += snprintf(req + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                      strlen(body), body);
    else if (strcmp(method, "GET") != 0)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: 0\r\n\r\n");
    else
        n += snprintf(req + n, cap - (size_t)n, "\r\n");
    assert_true(n > 0 && (size_t)n < cap);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    free(req);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        const char *head_end, *cl;
        ssize_t got;

        if (harness_now_ms() >= deadline || poll(&p, 1, 100) < 0)
            break;
        if (p.revents == 0)
            continue;
        got = recv(fd, r->text + len, REPLY_MAX - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
        r->text[len] = '\0';
        head_end = strstr(r->text, "\r\n\r\n");
        if (head_end == NULL)
            continue;
        cl = strcasestr(r->text, "\r\nContent-Length:");
        if (cl == NULL || cl > head_end)
            break; /* a stream: its head is the answer */
        if (len >= (size_t)(head_end + 4 - r->text) + strtoul(cl + 17, NULL, 10))
            break;
    }
    close(fd);
    r->text[len] = '\0';
    if (sscanf(r->text, "HTTP/1.%*d %d", &r->status) != 1)
        r->status = 0;
    if (strstr(r->text, "\r\n\r\n") != NULL)
        r->json = json_loads(strstr(r->text, "\r\n\r\n") + 4, 0, NULL);
}

static const char *error_field(const struct raw_reply *r, const char *key)
{
    return json_string_value(json_object_get(json_object_get(r->json, "error"), key));
}

/* Run the cases: each refused as wanted, and not a row of the database moved. */
static void expect_refused(struct harness *h, const struct odd_case *cases, size_t n)
{
    int failed = 0;

    for (size_t i = 0; i < n; i++) {
        const struct odd_case *c = &cases[i];
        char *before = harness_db_dump(h), *after;
        struct raw_reply r;
        bool ok;

        assert_non_null(before);
        raw_http(h, c->method, c->target, c->body, &r);
        after = harness_db_dump(h);
        assert_non_null(after);
        if (strcmp(c->code, TOO_LONG) == 0)
            ok = r.status >= 400 && r.status < 500;
        else
            ok = r.status == c->status && error_field(&r, "code") != NULL &&
                 strcmp(error_field(&r, "code"), c->code) == 0 &&
                 error_field(&r, "message") != NULL && error_field(&r, "message")[0] != '\0';
        if (!ok) {
            print_error("%s %.80s: wanted %d %s, got:\n%.600s\n", c->method, c->target, c->status,
                        c->code, r.text);
            failed++;
        }
        if (strcmp(before, after) != 0) {
            print_error("%s %.80s changed the database:\n", c->method, c->target);
            harness_db_diff(before, after);
            failed++;
        }
        json_decref(r.json);
        free(before);
        free(after);
    }
    assert_true(harness_vendd_alive(h));
    if (failed > 0)
        fail_msg("%d of %zu odd requests were not refused cleanly (above)", failed, n);
}

static int setup(void **state)
{
    static const struct harness_slot slots[] = {{1, 8, 2150}, {2, 5, 2150}, {0, 0, 0}};
    struct harness_fixture *f = harness_fixture_new(NULL, slots, "it-odd-paths");

    *state = f;
    if (f == NULL || harness_order(&f->h, "paid-1", 1, 1) < 0)
        return -1;
    /* An open alert to resolve (id 1), written while vendd is down. */
    if (harness_vendd_term(&f->h) != 0 ||
        harness_sql_exec(&f->h, "INSERT INTO alerts (id, machine_id, kind, message, created_at) "
                                "VALUES (1, 'VM01', 'TEST', 'odd paths', "
                                "'2026-01-01T00:00:00.000Z')") != 1 ||
        harness_vendd_start(&f->h) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    harness_fixture_free(*state);
    return 0;
}

/* Paths that are not what they look like, or that a proxy in front would route otherwise. */
static void odd_paths_are_refused(void **state)
{
    struct harness_fixture *f = *state;
    static char overlong_path[40000];
    static const struct odd_case cases[] = {
        {"GET", "/api/orders/paid-1%00", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/paid-1%00.json", NULL, 400, BAD_PATH},
        {"POST", "/api/orders/paid-1%00/cancel", NULL, 400, BAD_PATH},
        {"GET", "/api/machines/VM01%0a", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/..", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/%2e%2e", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/%2E%2E/paid-1", NULL, 400, BAD_PATH},
        {"GET", "/api/machines/VM01/../../orders", NULL, 400, BAD_PATH},
        {"GET", "/api/./orders", NULL, 400, BAD_PATH},
        {"PUT", "/api/machines/../slots/1", JSON_SLOT, 400, BAD_PATH},
        {"GET", "//api/orders", NULL, 400, BAD_PATH},
        {"GET", "/api//orders", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/", NULL, 400, BAD_PATH},
        {"PUT", "/api/machines/VM01//slots/1", JSON_SLOT, 400, BAD_PATH},
        /* An encoded slash: one segment to a proxy, three routes' worth to a decoder. */
        {"PUT", "/api/machines/VM01%2Fslots%2F1", JSON_SLOT, 400, BAD_PATH},
        {"PUT", "/api/machines/VM01%2fslots%2f1", JSON_SLOT, 400, BAD_PATH},
        {"GET", "/api/orders/paid%2F1", NULL, 400, BAD_PATH},
        {"POST", "/api/alerts/1%2Fresolve", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/paid-1%5C", NULL, 400, BAD_PATH},
        {"GET", "/api/orders/" LONG_SEG, NULL, 400, BAD_PARAM},
        {"PUT", "/api/machines/" LONG_SEG "/slots/1", JSON_SLOT, 400, BAD_PARAM},
        {"GET", "/api/orders/paid-1%20", NULL, 400, BAD_PARAM},
        {"GET", "/api/stock/%56M01%3b", NULL, 400, BAD_PARAM},
    };
    const struct odd_case huge[] = {
        {"GET", overlong_path, NULL, 414, TOO_LONG},
    };

    expect_refused(&f->h, cases, sizeof(cases) / sizeof(cases[0]));
    /* A path longer than the request head may be: MHD refuses it before vendd sees it. */
    memcpy(overlong_path, "/api/orders/", 12);
    memset(overlong_path + 12, 'a', sizeof(overlong_path) - 13);
    expect_refused(&f->h, huge, 1);
}

/* Numbers must be written one way: decimal digits, no sign, space, leading zero or exponent. */
static void odd_numbers_are_refused(void **state)
{
    struct harness_fixture *f = *state;
    static const struct odd_case cases[] = {
        /* A slot in the path (PUT /api/machines/{id}/slots/{slot}). */
        {"PUT", "/api/machines/VM01/slots/01", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/001", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/00", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/%2B1", JSON_SLOT, 400, BAD_PARAM},
        {"PUT", "/api/machines/VM01/slots/%201", JSON_SLOT, 400, BAD_PARAM},
        {"PUT", "/api/machines/VM01/slots/1%20", JSON_SLOT, 400, BAD_PARAM},
        {"PUT", "/api/machines/VM01/slots/-1", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/1e0", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/0x1", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/1.0", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/256", JSON_SLOT, 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/18446744073709551617", JSON_SLOT, 422, INVALID},
        /* Ids in the path (alert 1 is open: "01" must not resolve it). */
        {"POST", "/api/alerts/01/resolve", NULL, 404, NOT_FOUND},
        {"POST", "/api/alerts/0001/resolve", NULL, 404, NOT_FOUND},
        {"POST", "/api/alerts/1e0/resolve", NULL, 404, NOT_FOUND},
        {"POST", "/api/alerts/0x1/resolve", NULL, 404, NOT_FOUND},
        {"POST", "/api/alerts/18446744073709551617/resolve", NULL, 404, NOT_FOUND},
        {"POST", "/api/refunds/01/done", "{\"note\":\"paid\"}", 404, NOT_FOUND},
        {"POST", "/api/refunds/99999999999999999999/done", "{\"note\":\"paid\"}", 404, NOT_FOUND},
        /* Query parameters. */
        {"GET", "/api/orders?limit=007", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=%2B5", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=%205", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=5%20", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=5e1", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=0x10", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=-1", NULL, 422, INVALID},
        {"GET", "/api/orders?limit=0", NULL, 422, INVALID},
        {"GET", "/api/machines?limit=99999999999999999999", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=007", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=%2B1", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=%201", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=1e3", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=0x10", NULL, 422, INVALID},
        {"GET", "/api/events?last_event_id=99999999999999999999", NULL, 422, INVALID},
        {"GET", "/api/sales?from=2026-1-01", NULL, 422, INVALID},
        {"GET", "/api/sales?from=%202026-01-01", NULL, 422, INVALID},
        {"GET", "/api/sales?from=02026-01-01", NULL, 422, INVALID},
        {"GET", "/api/sales?to=2026-02-30", NULL, 422, INVALID},
        /* JSON numbers in bodies: quantities, slots, prices, stock, unit. */
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":01,\"payment_method\":\"manual\"}", 400,
         MALFORMED},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":+1,\"payment_method\":\"manual\"}", 400,
         MALFORMED},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,\"quantity\":1e0,"
         "\"payment_method\":\"manual\"}",
         422, INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,\"quantity\":0x1,"
         "\"payment_method\":\"manual\"}",
         400, MALFORMED},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,\"quantity\":\" 1\","
         "\"payment_method\":\"manual\"}",
         422, INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,\"quantity\":1.0,"
         "\"payment_method\":\"manual\"}",
         422, INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,"
         "\"quantity\":99999999999999999999,\"payment_method\":\"manual\"}",
         400, MALFORMED},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":4294967297,"
         "\"payment_method\":\"manual\"}",
         422, INVALID},
        {"PUT", "/api/machines/VM01/slots/2", "{\"price\":08000}", 400, MALFORMED},
        {"PUT", "/api/machines/VM01/slots/2", "{\"price\":8e3}", 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/2", "{\"price\":\"8000\"}", 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/2", "{\"price\":-8000}", 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/2", "{\"price\":9223372036854775808}", 400, MALFORMED},
        {"PUT", "/api/machines/VM01/slots/2", "{\"current_stock\":4294967301}", 422, INVALID},
        {"POST", "/api/dispense/settle", "{\"order_id\":\"paid-1\",\"unit\":1.0,\"dropped\":true}",
         422, INVALID},
    };

    expect_refused(&f->h, cases, sizeof(cases) / sizeof(cases[0]));
    /* The alert "01" named is still open. */
    assert_int_equal(harness_sql_wait(&f->h, ALERT_SQL, "1", 0), 0);
}

/* Identifiers are a closed set of characters; names and notes are text without controls. */
static void odd_ids_and_names_are_refused(void **state)
{
    struct harness_fixture *f = *state;
    static const struct odd_case cases[] = {
        {"POST", "/api/machines", "{\"id\":\"VM 02\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\" VM02\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02 \"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM\\u000a02\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02\\u0000\"}", 400, MALFORMED},
        {"POST", "/api/machines", "{\"id\":\"VM/02\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"..\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02\",\"name\":\"Lobby\\r\\nX-Admin: 1\"}", 422,
         INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02\",\"name\":\"Lobby\\u001b[31m\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02\",\"name\":\"Lobby\\u0085\"}", 422, INVALID},
        {"POST", "/api/machines", "{\"id\":\"VM02\",\"location\":\"Floor\\t1\"}", 422, INVALID},
        {"PUT", "/api/machines/VM01/slots/2", "{\"product_name\":\"Teh\\u0000Botol\"}", 400,
         MALFORMED},
        {"PUT", "/api/machines/VM01/slots/2", "{\"product_name\":\"Teh\\u007fBotol\"}", 422,
         INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n 1\",\"machine_id\":\"VM01\",\"slot\":1,\"payment_method\":\"manual\"}", 422,
         INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01 \",\"slot\":1,\"payment_method\":\"manual\"}", 422,
         INVALID},
        {"POST", "/api/orders",
         "{\"id\":\"n-1\",\"machine_id\":\"VM01\",\"slot\":1,\"payment_method\":\"manual\\n\"}",
         422, INVALID},
        {"POST", "/api/dispense/trigger", "{\"order_id\":\"paid-1\\u0000\"}", 400, MALFORMED},
        {"GET", "/api/machines/VM%2001", NULL, 400, BAD_PARAM},
        {"GET", "/api/orders?machine_id=VM%0A01", NULL, 422, INVALID},
        {"GET", "/api/orders?machine_id=VM01%00", NULL, 422, INVALID},
        {"GET", "/api/orders?status=PAID%0A", NULL, 422, INVALID},
        {"GET", "/api/sales?machine_id=VM%2001", NULL, 422, INVALID},
        {"GET", "/api/alerts?machine_id=VM01%0d%0a", NULL, 422, INVALID},
    };

    expect_refused(&f->h, cases, sizeof(cases) / sizeof(cases[0]));
}

/* The same routes with plain input still work: the refusals above are not blanket ones. */
static void plain_input_still_served(void **state)
{
    struct harness_fixture *f = *state;
    struct raw_reply r;
    long long price;

    raw_http(&f->h, "PUT", "/api/machines/VM01/slots/1", "{\"price\":9100}", &r);
    assert_int_equal(r.status, 200);
    json_decref(r.json);
    assert_int_equal(
        harness_sql_int(&f->h,
                        "SELECT COALESCE(s.price_override, p.price) FROM slots s LEFT JOIN "
                        "products p ON p.id = s.product_id WHERE slot_number = 1",
                        &price),
        1);
    assert_int_equal(price, 9100);
    raw_http(&f->h, "GET", "/api/orders?limit=10", NULL, &r);
    assert_int_equal(r.status, 200);
    json_decref(r.json);
    raw_http(&f->h, "GET", "/api/orders/paid-1", NULL, &r);
    assert_int_equal(r.status, 200);
    json_decref(r.json);
    raw_http(&f->h, "GET", "/api/events?last_event_id=0", NULL, &r);
    assert_int_equal(r.status, 200);
    json_decref(r.json);
    raw_http(&f->h, "POST", "/api/alerts/1/resolve", NULL, &r);
    assert_int_equal(r.status, 200);
    json_decref(r.json);
    assert_int_equal(harness_sql_wait(&f->h, ALERT_SQL, "0", 0), 0);
    assert_int_equal(harness_vendd_term(&f->h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(odd_paths_are_refused),
        cmocka_unit_test(odd_numbers_are_refused),
        cmocka_unit_test(odd_ids_and_names_are_refused),
        cmocka_unit_test(plain_input_still_served),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
