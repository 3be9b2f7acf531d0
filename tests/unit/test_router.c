/* Unit tests: route matching (404 / 405 / params / HEAD). */
#include "test_helpers.h"

#include "http/router.h"

static void handler_a(http_context *c, const http_request *r, http_response *p) { (void)c; (void)r; (void)p; }
static void handler_b(http_context *c, const http_request *r, http_response *p) { (void)c; (void)r; (void)p; }

static const route routes[] = {
    {"GET", "/api/tables", handler_a, ROUTE_PUBLIC, ""},
    {"GET", "/api/tables/{id}", handler_b, ROUTE_USER, ""},
    {"DELETE", "/api/tables/{id}", handler_a, ROUTE_ADMIN, ""},
    {"GET", "/api/tables/{id}/columns/{column}", handler_b, ROUTE_USER, ""},
};
#define COUNT (sizeof routes / sizeof routes[0])

static void test_literal_and_parameter_routes(void **unused)
{
    (void)unused;
    http_request req = {0};
    const route *found = NULL;
    char allow[64];
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/tables", &req, &found, allow, sizeof allow), ROUTE_MATCHED);
    assert_ptr_equal(found, &routes[0]);
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/tables/orders", &req, &found, allow, sizeof allow),
                     ROUTE_MATCHED);
    assert_ptr_equal(found, &routes[1]);
    assert_string_equal(http_request_param(&req, "id"), "orders");
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/tables/orders/columns/total", &req, &found, allow,
                                  sizeof allow), ROUTE_MATCHED);
    assert_string_equal(http_request_param(&req, "id"), "orders");
    assert_string_equal(http_request_param(&req, "column"), "total");
    assert_null(http_request_param(&req, "missing"));
}

static void test_unknown_paths_and_empty_segments_are_not_found(void **unused)
{
    (void)unused;
    http_request req = {0};
    const route *found = NULL;
    char allow[64];
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/tables/", &req, &found, allow, sizeof allow), ROUTE_NOT_FOUND);
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/table", &req, &found, allow, sizeof allow), ROUTE_NOT_FOUND);
    assert_int_equal(router_match(routes, COUNT, "GET", "/api/tables/a/b", &req, &found, allow, sizeof allow),
                     ROUTE_NOT_FOUND);
}

static void test_wrong_method_lists_the_allowed_ones(void **unused)
{
    (void)unused;
    http_request req = {0};
    const route *found = NULL;
    char allow[64];
    assert_int_equal(router_match(routes, COUNT, "POST", "/api/tables/x", &req, &found, allow, sizeof allow),
                     ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(allow, "GET, DELETE");
}

static void test_head_is_answered_by_get(void **unused)
{
    (void)unused;
    http_request req = {0};
    const route *found = NULL;
    char allow[64];
    assert_int_equal(router_match(routes, COUNT, "HEAD", "/api/tables", &req, &found, allow, sizeof allow), ROUTE_MATCHED);
    assert_ptr_equal(found, &routes[0]);
}

/* A 256-byte segment once matched the route but left {id} unset, and the
 * handler compared NULL (SIGSEGV on GET /api/catalog/tables/aaa...). */
static void test_a_parameter_too_long_never_reaches_a_handler(void **unused)
{
    (void)unused;
    char path[600];
    for (size_t length = 250; length < 300; length++) {
        http_request req = {0};
        const route *found = NULL;
        char allow[64];
        snprintf(path, sizeof path, "/api/tables/%0*d", (int)length, 0);
        enum route_match_result result = router_match(routes, COUNT, "GET", path, &req, &found, allow, sizeof allow);
        if (length < HTTP_PARAM_MAX) {
            assert_int_equal(result, ROUTE_MATCHED);
            assert_int_equal(strlen(http_request_param(&req, "id")), length);
        } else {
            assert_int_equal(result, ROUTE_PARAM_TOO_LONG);
        }
        snprintf(path, sizeof path, "/api/tables/x/columns/%0*d", (int)length, 0);
        result = router_match(routes, COUNT, "GET", path, &req, &found, allow, sizeof allow);
        assert_int_equal(result, length < HTTP_PARAM_MAX ? ROUTE_MATCHED : ROUTE_PARAM_TOO_LONG);
        if (result == ROUTE_MATCHED)
            assert_non_null(http_request_param(&req, "column"));
    }
}

static void test_server_route_table_has_no_duplicates(void **unused)
{
    (void)unused;
    for (size_t i = 0; i < http_route_count; i++)
        for (size_t j = i + 1; j < http_route_count; j++)
            assert_false(strcmp(http_routes[i].method, http_routes[j].method) == 0 &&
                         strcmp(http_routes[i].pattern, http_routes[j].pattern) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_parameter_routes),
        cmocka_unit_test(test_unknown_paths_and_empty_segments_are_not_found),
        cmocka_unit_test(test_wrong_method_lists_the_allowed_ones),
        cmocka_unit_test(test_head_is_answered_by_get),
        cmocka_unit_test(test_a_parameter_too_long_never_reaches_a_handler),
        cmocka_unit_test(test_server_route_table_has_no_duplicates),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
