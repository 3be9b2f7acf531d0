/* Server sentences in the words of the CLI and MCP users who read them (core/audience.h). */
#include "test_helpers.h"

#include "core/audience.h"

static const char *const sentence =
    "Table 'eu' does not exist or you have no access to it. GET /api/catalog/tables lists the tables you can query.";

static void cli_users_are_told_a_command(void **state)
{
    (void)state;
    char out[300];
    audience_translate(AUDIENCE_CLI, sentence, out, sizeof out);
    assert_string_equal(out, "Table 'eu' does not exist or you have no access to it. `agnes catalog` lists the "
                             "tables you can query.");
}

static void agents_are_told_a_tool(void **state)
{
    (void)state;
    char out[300];
    audience_translate(AUDIENCE_MCP, sentence, out, sizeof out);
    assert_non_null(strstr(out, "the list_tables tool lists the tables"));
    assert_null(strstr(out, "/api/"));
    audience_translate(AUDIENCE_MCP, "See GET /api/catalog/tables/{id} for its columns.", out, sizeof out);
    assert_string_equal(out, "See the describe_table tool for its columns.");
}

static void http_users_and_short_buffers_are_safe(void **state)
{
    (void)state;
    char out[300], tiny[12];
    audience_translate(AUDIENCE_HTTP, sentence, out, sizeof out);
    assert_string_equal(out, sentence);
    audience_translate(AUDIENCE_CLI, "GET /api/catalog/tables", tiny, sizeof tiny);
    assert_string_equal(tiny, "`agnes cata");
    audience_translate(AUDIENCE_CLI, NULL, out, sizeof out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_users_are_told_a_command),
        cmocka_unit_test(agents_are_told_a_tool),
        cmocka_unit_test(http_users_and_short_buffers_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
