/* The MCP protocol layer (core/mcp.h): version negotiation, the lifecycle, the tool catalog per caller,
 * tool results and errors - what both transports rely on, with a fake host. */
#include "test_helpers.h"

#include "core/mcp.h"

typedef struct fake {
    bool admin;
    bool fail; /* the tool reports an error */
    int calls;
} fake;

static json_t *fake_tables(void *cls)
{
    (void)cls;
    return json_pack("[s, s]", "orders", "customers");
}

static bool fake_is_admin(void *cls)
{
    return ((fake *)cls)->admin;
}

static char *fake_call(void *cls, const char *tool, const json_t *arguments, agnes_error *err)
{
    fake *f = cls;
    f->calls++;
    if (f->fail) {
        agnes_error_set(err, AGNES_ERR_FORBIDDEN, "Access denied to table 'salaries'.");
        return NULL;
    }
    const char *sql = NULL;
    if (mcp_arg_string(arguments, "sql", strcmp(tool, "query") == 0, &sql, err) != AGNES_OK)
        return NULL;
    return strdup("{\"rows\":[[1,\"a\\\"b\"]],\"truncated\":false}");
}

static mcp_host host_for(fake *f)
{
    return (mcp_host){.cls = f, .transport = "stdio", .server_version = "test", .max_rows = 200, .max_chars = 20000,
                      .ttl_seconds = 3600, .tables = fake_tables, .is_admin = fake_is_admin, .call = fake_call};
}

/* Handle one message given as text; the parsed response (NULL when none). */
static json_t *exchange(const mcp_host *host, mcp_session *session, const char *message)
{
    json_t *parsed = json_loads(message, 0, NULL);
    bool failed = true;
    char *text = mcp_handle_message(host, session, parsed, &failed);
    json_decref(parsed);
    assert_false(failed);
    json_t *response = text ? json_loads(text, 0, NULL) : NULL;
    if (text != NULL)
        assert_non_null(response); /* whatever it says, it is valid JSON */
    free(text);
    return response;
}

static void negotiates_the_version(void **state)
{
    (void)state;
    assert_string_equal(mcp_negotiate("2025-06-18"), "2025-06-18");
    assert_string_equal(mcp_negotiate("2024-11-05"), "2024-11-05");
    assert_string_equal(mcp_negotiate("2099-01-01"), MCP_LATEST_VERSION);
    assert_string_equal(mcp_negotiate(NULL), MCP_LATEST_VERSION);
    fake f = {0};
    mcp_host host = host_for(&f);
    mcp_session session = {{0}};
    json_t *r = exchange(&host, &session,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
                         "\"1999-01-01\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}");
    json_t *result = json_object_get(r, "result");
    assert_string_equal(json_string_value(json_object_get(result, "protocolVersion")), MCP_LATEST_VERSION);
    assert_string_equal(session.version, MCP_LATEST_VERSION);
    const char *instructions = json_string_value(json_object_get(result, "instructions"));
    assert_non_null(strstr(instructions, "DuckDB"));
    assert_non_null(strstr(instructions, "orders, customers"));
    assert_non_null(strstr(instructions, "200 rows"));
    json_decref(r);
}

static void lists_admin_tools_to_admins_only(void **state)
{
    (void)state;
    fake f = {0};
    mcp_host host = host_for(&f);
    mcp_session session = {"2025-06-18"};
    json_t *r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/list\"}");
    json_t *tools = json_object_get(json_object_get(r, "result"), "tools");
    assert_int_equal(json_array_size(tools), 6);
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool) {
        assert_null(strstr(json_string_value(json_object_get(tool, "name")), "registry"));
        assert_true(json_is_object(json_object_get(tool, "inputSchema")));
        assert_non_null(json_object_get(tool, "title")); /* 2025-06-18 has titles */
    }
    json_decref(r);
    r = exchange(&host, &session,
                 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"registry\"}}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), MCP_INVALID_PARAMS);
    assert_int_equal(f.calls, 0);
    json_decref(r);
    f.admin = true;
    r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}");
    assert_int_equal(json_array_size(json_object_get(json_object_get(r, "result"), "tools")), 8);
    json_decref(r);
}

static void a_tool_result_carries_text_and_structured_content(void **state)
{
    (void)state;
    fake f = {0};
    mcp_host host = host_for(&f);
    mcp_session session = {"2025-06-18"};
    json_t *r = exchange(&host, &session,
                         "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"query\","
                         "\"arguments\":{\"sql\":\"SELECT 1\"}}}");
    json_t *result = json_object_get(r, "result");
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
    json_t *text = json_loads(json_string_value(json_object_get(json_array_get(json_object_get(result, "content"), 0),
                                                                "text")),
                              0, NULL);
    assert_true(json_equal(text, json_object_get(result, "structuredContent")));
    assert_string_equal(json_string_value(json_array_get(json_array_get(json_object_get(text, "rows"), 0), 1)),
                        "a\"b");
    json_decref(text);
    json_decref(r);
    /* An older revision gets the text only. */
    mcp_session old = {"2025-03-26"};
    r = exchange(&host, &old,
                 "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"query\","
                 "\"arguments\":{\"sql\":\"SELECT 1\"}}}");
    assert_null(json_object_get(json_object_get(r, "result"), "structuredContent"));
    json_decref(r);
}

static void failures_are_tool_errors_with_the_sentence(void **state)
{
    (void)state;
    fake f = {.fail = true};
    mcp_host host = host_for(&f);
    mcp_session session = {"2025-06-18"};
    json_t *r = exchange(&host, &session,
                         "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"query\","
                         "\"arguments\":{\"sql\":\"SELECT * FROM salaries\"}}}");
    json_t *result = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(result, "isError")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(result, "content"), 0),
                                                          "text")),
                        "Access denied to table 'salaries'.");
    json_decref(r);
    f.fail = false; /* a missing argument is the tool's error too, named */
    r = exchange(&host, &session,
                 "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"query\"}}");
    result = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(result, "isError")));
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(json_object_get(result, "content"), 0),
                                                             "text")),
                           "\"sql\" is required"));
    json_decref(r);
}

static void protocol_errors_and_notifications(void **state)
{
    (void)state;
    fake f = {0};
    mcp_host host = host_for(&f);
    mcp_session session = {{0}};
    assert_null(exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"));
    assert_null(exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"));
    json_t *r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), MCP_METHOD_NOT_FOUND);
    json_decref(r);
    r = exchange(&host, &session, "{\"id\":1,\"method\":\"ping\"}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), MCP_INVALID_REQUEST);
    json_decref(r);
    r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"ping\"}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), MCP_INVALID_REQUEST);
    json_decref(r);
    r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    assert_true(json_is_object(json_object_get(r, "result")));
    json_decref(r);
    r = exchange(&host, &session, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"initialize\",\"params\":{}}");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "error"), "code")), MCP_INVALID_PARAMS);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(negotiates_the_version),
        cmocka_unit_test(lists_admin_tools_to_admins_only),
        cmocka_unit_test(a_tool_result_carries_text_and_structured_content),
        cmocka_unit_test(failures_are_tool_errors_with_the_sentence),
        cmocka_unit_test(protocol_errors_and_notifications),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
