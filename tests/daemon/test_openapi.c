/*
 * test_openapi.c - the OpenAPI description compiled into vendd (daemon/openapi/openapi.json,
 * served at GET /api/openapi.json) against the route table it describes (routes.c):
 *
 * - every route of api_routes[] is an operation of the description, under the same path
 *   template (the {name} captures of the table are OpenAPI's path templates, names included),
 *   and every operation of the description is a route: a route added without its description,
 *   or described and then removed, fails here;
 * - each operation declares exactly the path parameters its template captures; its security
 *   is empty (public) exactly when the route is not HTTP_OPERATOR; a POST/PUT/PATCH has a
 *   JSON requestBody, required unless the route is HTTP_BODY_OPTIONAL, a GET none; it
 *   answers at least one 2xx; operationIds are unique;
 * - the document parses (no duplicate keys), is OpenAPI 3, its info.version is vendd's
 *   version and every "$ref" in it resolves.
 *
 * The checker also runs on broken copies (a path removed, an undescribed route, a flipped
 * security, a dangling $ref) and must find each: it can fail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "http.h"

#define PROBLEMS_MAX 4096 /* bytes of problem text kept for the failure message */

struct check {
    int problems;
    char text[PROBLEMS_MAX];
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
    size_t used = strlen(c->text);
    va_list ap;

    c->problems++;
    if (used + 2 >= sizeof(c->text))
        return;
    va_start(ap, fmt);
    vsnprintf(c->text + used, sizeof(c->text) - used - 1, fmt, ap);
    va_end(ap);
    used = strlen(c->text);
    c->text[used] = '\n';
    c->text[used + 1] = '\0';
}

static const char *method_key(enum http_method m)
{
    switch (m) {
    case HTTP_GET:
        return "get";
    case HTTP_POST:
        return "post";
    case HTTP_PUT:
        return "put";
    case HTTP_PATCH:
        return "patch";
    case HTTP_DELETE:
        return "delete";
    }
    return "?";
}

/* OpenAPI 3's operation keys of a Path Item; its other keys (parameters, summary, ...) are not
 * operations. */
static bool is_operation_key(const char *key)
{
    static const char *const ops[] = {"get",     "put",  "post",  "delete",
                                      "options", "head", "patch", "trace"};

    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(key, ops[i]) == 0)
            return true;
    }
    return false;
}

/* The JSON pointer ref ("#/components/...") inside doc, or NULL. */
static const json_t *resolve(const json_t *doc, const char *ref)
{
    char seg[256];
    const json_t *at = doc;
    const char *p;

    if (strncmp(ref, "#/", 2) != 0)
        return NULL;
    p = ref + 2;
    while (at != NULL) {
        size_t n = strcspn(p, "/"), k = 0;

        if (n >= sizeof(seg))
            return NULL;
        for (size_t i = 0; i < n; i++) {
            /* RFC 6901: ~1 is '/', ~0 is '~'. */
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
                seg[k++] = p[i + 1] == '1' ? '/' : '~';
                i++;
            } else {
                seg[k++] = p[i];
            }
        }
        seg[k] = '\0';
        at = json_is_object(at) ? json_object_get(at, seg) : NULL;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    return at;
}

/* A $ref'd object (a parameter, a request body) as what it points to. */
static const json_t *deref(const json_t *doc, const json_t *v)
{
    const json_t *ref = json_object_get(v, "$ref");

    return json_is_string(ref) ? resolve(doc, json_string_value(ref)) : v;
}

static void check_refs(const json_t *doc, const json_t *v, struct check *c)
{
    const char *key;
    const json_t *val;
    size_t i;

    if (json_is_array(v)) {
        json_array_foreach(v, i, val)
        {
            check_refs(doc, val, c);
        }
        return;
    }
    if (!json_is_object(v))
        return;
    json_object_foreach((json_t *)v, key, val)
    {
        if (strcmp(key, "$ref") == 0 &&
            (!json_is_string(val) || resolve(doc, json_string_value(val)) == NULL))
            problem(c, "\"$ref\": %s does not resolve",
                    json_is_string(val) ? json_string_value(val) : "(not a string)");
        else
            check_refs(doc, val, c);
    }
}

/* Is the route's {name} capture declared as an "in": "path" parameter in params? */
static bool declares_path_param(const json_t *doc, const json_t *params, const char *name,
                                size_t len)
{
    const json_t *p;
    size_t i;

    json_array_foreach(params, i, p)
    {
        const json_t *d = deref(doc, p);
        const char *in = json_string_value(json_object_get(d, "in"));
        const char *pn = json_string_value(json_object_get(d, "name"));

        if (in != NULL && pn != NULL && strcmp(in, "path") == 0 && strlen(pn) == len &&
            strncmp(pn, name, len) == 0)
            return json_is_true(json_object_get(d, "required"));
    }
    return false;
}

/* Path parameters: the template's captures, declared (on the Path Item or the operation), and
 * no declared path parameter the template does not capture. */
static void check_path_params(const json_t *doc, const struct http_route *r, const json_t *item,
                              const json_t *op, struct check *c)
{
    const json_t *lists[2] = {json_object_get(item, "parameters"),
                              json_object_get(op, "parameters")};
    const char *p = r->pattern;

    while ((p = strchr(p, '{')) != NULL) {
        size_t len = strcspn(p + 1, "}");

        if (!declares_path_param(doc, lists[0], p + 1, len) &&
            !declares_path_param(doc, lists[1], p + 1, len))
            problem(c, "%s %s: path parameter '%.*s' is not declared (required, in: path)",
                    method_key(r->method), r->pattern, (int)len, p + 1);
        p += len + 1;
    }
    for (size_t l = 0; l < 2; l++) {
        const json_t *q;
        size_t i;

        json_array_foreach(lists[l], i, q)
        {
            const json_t *d = deref(doc, q);
            const char *in = json_string_value(json_object_get(d, "in"));
            const char *name = json_string_value(json_object_get(d, "name"));
            char want[HTTP_PARAM_MAX + 3];

            if (d == NULL) {
                problem(c, "%s %s: a parameter that does not resolve", method_key(r->method),
                        r->pattern);
                continue;
            }
            if (in == NULL || name == NULL || strcmp(in, "path") != 0)
                continue;
            snprintf(want, sizeof(want), "{%s}", name);
            if (strstr(r->pattern, want) == NULL)
                problem(c, "%s %s: declares path parameter '%s', which the route does not capture",
                        method_key(r->method), r->pattern, name);
        }
    }
}

/*
 * Public: an empty list of requirements, or one that holds the empty requirement {} (auth
 * optional: POST /api/orders, whose manual orders need the operator). Operator: requirements,
 * each naming declared security schemes only.
 */
static void check_security(const json_t *doc, const struct http_route *r, const json_t *op,
                           struct check *c)
{
    const json_t *sec = json_object_get(op, "security");
    const json_t *schemes = resolve(doc, "#/components/securitySchemes");
    const json_t *req;
    bool open = false;
    size_t i;

    if (sec == NULL)
        sec = json_object_get(doc, "security");
    if (!json_is_array(sec)) {
        problem(c, "%s %s: no security (on the operation or the document)", method_key(r->method),
                r->pattern);
        return;
    }
    open = json_array_size(sec) == 0;
    json_array_foreach(sec, i, req)
    {
        const char *name;
        const json_t *scopes;

        if (json_is_object(req) && json_object_size(req) == 0)
            open = true;
        json_object_foreach((json_t *)req, name, scopes)
        {
            if (json_object_get(schemes, name) == NULL)
                problem(c, "%s %s: security scheme '%s' is not in components.securitySchemes",
                        method_key(r->method), r->pattern, name);
        }
    }
    if ((r->flags & HTTP_OPERATOR) != 0 && open)
        problem(c, "%s %s: an operator route described as public", method_key(r->method),
                r->pattern);
    if ((r->flags & HTTP_OPERATOR) == 0 && !open)
        problem(c, "%s %s: a public route described as needing the operator", method_key(r->method),
                r->pattern);
}

static void check_body(const json_t *doc, const struct http_route *r, const json_t *op,
                       struct check *c)
{
    const json_t *rb = json_object_get(op, "requestBody");
    bool has_body = r->method == HTTP_POST || r->method == HTTP_PUT || r->method == HTTP_PATCH;

    if (!has_body) {
        if (rb != NULL)
            problem(c, "%s %s: a requestBody on a route without one", method_key(r->method),
                    r->pattern);
        return;
    }
    rb = rb != NULL ? deref(doc, rb) : NULL;
    if (rb == NULL) {
        problem(c, "%s %s: no requestBody", method_key(r->method), r->pattern);
        return;
    }
    if (json_object_get(json_object_get(rb, "content"), "application/json") == NULL)
        problem(c, "%s %s: the requestBody is not application/json", method_key(r->method),
                r->pattern);
    if (json_is_true(json_object_get(rb, "required")) != ((r->flags & HTTP_BODY_OPTIONAL) == 0))
        problem(c, "%s %s: requestBody.required must be %s (HTTP_BODY_OPTIONAL %s)",
                method_key(r->method), r->pattern,
                (r->flags & HTTP_BODY_OPTIONAL) != 0 ? "false" : "true",
                (r->flags & HTTP_BODY_OPTIONAL) != 0 ? "set" : "not set");
}

static void check_responses(const struct http_route *r, const json_t *op, struct check *c)
{
    const json_t *responses = json_object_get(op, "responses");
    const char *status;
    const json_t *val;
    bool ok = false;

    json_object_foreach((json_t *)responses, status, val)
    {
        if (status[0] == '2')
            ok = true;
    }
    if (!ok)
        problem(c, "%s %s: no 2xx response", method_key(r->method), r->pattern);
}

static bool in_table(const struct http_route *routes, size_t n, const char *method,
                     const char *path)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(method_key(routes[i].method), method) == 0 &&
            strcmp(routes[i].pattern, path) == 0)
            return true;
    }
    return false;
}

/* Every finding goes into c; returns the number of problems. */
static int check_doc(const json_t *doc, const struct http_route *routes, size_t n, struct check *c)
{
    const json_t *paths = json_object_get(doc, "paths");
    const json_t *openapi = json_object_get(doc, "openapi");
    const json_t *info = json_object_get(doc, "info");
    json_t *ids = json_object();
    const char *path, *method;
    const json_t *item, *op;

    if (!json_is_string(openapi) || strncmp(json_string_value(openapi), "3.", 2) != 0)
        problem(c, "\"openapi\" is not a 3.x version");
    if (!json_is_string(json_object_get(info, "title")))
        problem(c, "no info.title");
    if (!json_is_string(json_object_get(info, "version")) ||
        strcmp(json_string_value(json_object_get(info, "version")), VENDD_VERSION) != 0)
        problem(c, "info.version is not vendd's version " VENDD_VERSION);
    if (!json_is_object(paths) || json_object_size(paths) == 0)
        problem(c, "no \"paths\"");
    check_refs(doc, doc, c);

    for (size_t i = 0; i < n; i++) {
        const struct http_route *r = &routes[i];

        item = json_object_get(paths, r->pattern);
        op = json_object_get(item, method_key(r->method));
        if (!json_is_object(op)) {
            problem(c, "route %s %s is not described in daemon/openapi/openapi.json",
                    method_key(r->method), r->pattern);
            continue;
        }
        check_path_params(doc, r, item, op, c);
        check_security(doc, r, op, c);
        check_body(doc, r, op, c);
        check_responses(r, op, c);
    }

    json_object_foreach((json_t *)paths, path, item)
    {
        json_object_foreach((json_t *)item, method, op)
        {
            const json_t *id = json_object_get(op, "operationId");

            if (!is_operation_key(method))
                continue;
            if (!in_table(routes, n, method, path))
                problem(c, "%s %s is described but is not a route of routes.c", method, path);
            if (!json_is_string(id))
                problem(c, "%s %s: no operationId", method, path);
            else if (json_object_get(ids, json_string_value(id)) != NULL)
                problem(c, "%s %s: operationId '%s' used twice", method, path,
                        json_string_value(id));
            else
                json_object_set_new(ids, json_string_value(id), json_true());
        }
    }
    json_decref(ids);
    return c->problems;
}

static json_t *load_doc(void)
{
    json_error_t err;
    json_t *doc;

    doc = json_loadb(api_openapi_json, api_openapi_json_len, JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL)
        fail_msg("daemon/openapi/openapi.json does not parse: line %d column %d: %s", err.line,
                 err.column, err.text);
    return doc;
}

/* ---- the real table and the real description -------------------------------------------- */

static void test_embedded_bytes(void **state)
{
    (void)state;
    assert_true(api_openapi_json_len > 1000);
    assert_int_equal(strlen(api_openapi_json), api_openapi_json_len);
    assert_int_equal(api_openapi_json[0], '{');
}

static void test_description_matches_routes(void **state)
{
    struct check c = {0};
    json_t *doc = load_doc();

    (void)state;
    if (check_doc(doc, api_routes, api_nroutes, &c) != 0)
        fail_msg("%d problem(s) between daemon/openapi/openapi.json and routes.c:\n%s", c.problems,
                 c.text);
    json_decref(doc);
}

/* ---- the checker finds what it is for ---------------------------------------------------- */

static int check_broken(json_t *doc, const struct http_route *routes, size_t n, const char *want)
{
    struct check c = {0};
    int problems = check_doc(doc, routes, n, &c);

    if (want != NULL && strstr(c.text, want) == NULL)
        fail_msg("expected a problem containing '%s', got:\n%s", want, c.text);
    return problems;
}

/* Each route, removed from the description in turn, is reported. */
static void test_missing_route_fails(void **state)
{
    (void)state;
    for (size_t i = 0; i < api_nroutes; i++) {
        json_t *doc = load_doc();
        json_t *item = json_object_get(json_object_get(doc, "paths"), api_routes[i].pattern);
        char want[256];

        assert_non_null(item);
        assert_int_equal(json_object_del(item, method_key(api_routes[i].method)), 0);
        snprintf(want, sizeof(want), "route %s %s is not described",
                 method_key(api_routes[i].method), api_routes[i].pattern);
        assert_true(check_broken(doc, api_routes, api_nroutes, want) >= 1);
        json_decref(doc);
    }
}

/* A route the description does not have (as when one is added to routes.c), and a described
 * operation the table does not have (as when one is removed from it). */
static void test_undescribed_and_stale_fail(void **state)
{
    struct http_route *routes = calloc(api_nroutes + 1, sizeof(*routes));
    json_t *doc = load_doc();

    (void)state;
    assert_non_null(routes);
    memcpy(routes, api_routes, api_nroutes * sizeof(*routes));
    routes[api_nroutes] =
        (struct http_route){HTTP_GET, "/api/not-described/{id}", HTTP_OPERATOR, api_health};
    assert_int_equal(check_broken(doc, routes, api_nroutes + 1,
                                  "route get /api/not-described/{id} is not described"),
                     1);
    /* The table without its last route: the description has one operation too many. */
    assert_true(check_broken(doc, routes, api_nroutes - 1, "is described but is not a route") >= 1);
    json_decref(doc);
    free(routes);
}

/* The operation method of path in doc (borrowed), failing the test if there is none. */
static json_t *operation(json_t *doc, const char *path, const char *method)
{
    json_t *op = json_object_get(json_object_get(json_object_get(doc, "paths"), path), method);

    if (op == NULL)
        fail_msg("no %s %s in the description", method, path);
    return op;
}

/* A public route described as the operator's, and the reverse; a renamed path parameter. */
static void test_security_and_params_fail(void **state)
{
    json_t *doc = load_doc(), *op, *param;

    (void)state;
    json_object_del(operation(doc, "/health", "get"), "security");
    check_broken(doc, api_routes, api_nroutes, "get /health: a public route described as");
    json_decref(doc);

    doc = load_doc();
    op = operation(doc, "/api/orders/{id}", "get");
    json_object_set_new(op, "security", json_array());
    check_broken(doc, api_routes, api_nroutes, "get /api/orders/{id}: an operator route");
    param = json_array_get(json_object_get(op, "parameters"), 0);
    assert_non_null(param);
    json_object_set_new(param, "name", json_string("order_id"));
    check_broken(doc, api_routes, api_nroutes, "path parameter 'id' is not declared");
    check_broken(doc, api_routes, api_nroutes, "declares path parameter 'order_id'");
    json_decref(doc);
}

static void test_dangling_ref_fails(void **state)
{
    json_t *doc = load_doc();

    (void)state;
    json_object_del(json_object_get(json_object_get(doc, "components"), "schemas"), "Slot");
    check_broken(doc, api_routes, api_nroutes, "#/components/schemas/Slot does not resolve");
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_bytes),
        cmocka_unit_test(test_description_matches_routes),
        cmocka_unit_test(test_missing_route_fails),
        cmocka_unit_test(test_undescribed_and_stale_fail),
        cmocka_unit_test(test_security_and_params_fail),
        cmocka_unit_test(test_dangling_ref_fails),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
