/* The Keboola connector's pure parts (issue 15): view names, Storage types, timestamps, date placeholders,
 * whereFilters and materialized specs, registry rules, token redaction. */
#include "test_helpers.h"

#include <jansson.h>
#include <time.h>

#include "sync/keboola.h"

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    if (value == NULL)
        fail_msg("bad test JSON: %s", error.text);
    return value;
}

static void view_names_are_stage_bucket_table(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"in.c-crm.orders", "in_crm_orders"},         {"in.crm.orders", "in_crm_orders"},
        {"out.c-Main-Data.Daily Sales", "out_main_data_daily_sales"},
        {"in.c-x.__weird__", "in_x_weird"},          {"in.c-c-.t", "in_c_t"},
        {"orders", "orders"},                         {"in.c-ž.t", "in_t"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[80];
        keboola_view_name(cases[i][0], out, sizeof out);
        if (strcmp(out, cases[i][1]) != 0)
            fail_msg("%s -> %s, expected %s", cases[i][0], out, cases[i][1]);
    }
    char longest[80], id[300];
    snprintf(id, sizeof id, "in.c-b.%0200d", 7);
    keboola_view_name(id, longest, sizeof longest);
    assert_int_equal(strlen(longest), 64); /* a valid view name however long the id */
}

static void types_come_from_storage_metadata_by_provider_priority(void **state)
{
    (void)state;
    json_t *detail = parse(
        "{\"columns\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\"], \"isTyped\": false, \"columnMetadata\": {"
        " \"a\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"STRING\", \"provider\": \"storage\"},"
        "       {\"key\": \"KBC.datatype.basetype\", \"value\": \"INTEGER\", \"provider\": \"user\"}],"
        " \"b\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"NUMERIC\", \"provider\": \"user\"},"
        "       {\"key\": \"KBC.datatype.length\", \"value\": \"12,3\", \"provider\": \"user\"}],"
        " \"c\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"NUMERIC\", \"provider\": \"user\"},"
        "       {\"key\": \"KBC.datatype.length\", \"value\": \"60,2\", \"provider\": \"user\"}],"
        " \"d\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"TIMESTAMP\", \"provider\": \"x\"},"
        "       {\"key\": \"KBC.datatype.type\", \"value\": \"TIMESTAMP_TZ\", \"provider\": \"x\"}],"
        " \"e\": [{\"key\": \"KBC.datatype.type\", \"value\": \"BOOLEAN\", \"provider\": \"user\"},"
        "       {\"key\": \"KBC.description\", \"value\": \"is it\", \"provider\": \"user\"}],"
        " \"f\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"GEOGRAPHY\", \"provider\": \"user\"}]}}");
    static const char *const expected[][2] = {{"a", "BIGINT"},    {"b", "DECIMAL(12,3)"}, {"c", "DOUBLE"},
                                              {"d", "TIMESTAMPTZ"}, {"e", "BOOLEAN"},       {"f", "VARCHAR"},
                                              {"g", "VARCHAR"}};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char type[48];
        keboola_column_type(detail, expected[i][0], type, sizeof type);
        if (strcmp(type, expected[i][1]) != 0)
            fail_msg("column %s: %s, expected %s", expected[i][0], type, expected[i][1]);
    }
    assert_string_equal(keboola_column_description(detail, "e"), "is it");
    assert_null(keboola_column_description(detail, "a"));
    json_decref(detail);
    /* empty maps are [], alias tables keep metadata under sourceTable, typed tables have a definition */
    json_t *alias = parse("{\"isAlias\": true, \"columnMetadata\": [], \"metadata\": [], \"sourceTable\": {"
                          "\"columnMetadata\": {\"x\": [{\"key\": \"KBC.datatype.basetype\", \"value\": \"DATE\","
                          " \"provider\": \"user\"}]}}}");
    char type[48];
    keboola_column_type(alias, "x", type, sizeof type);
    assert_string_equal(type, "DATE");
    assert_null(keboola_table_description(alias));
    json_decref(alias);
    json_t *typed = parse("{\"isTyped\": true, \"columnMetadata\": [], \"definition\": {\"columns\": ["
                          "{\"name\": \"n\", \"definition\": {\"type\": \"NUMBER\", \"length\": \"38,0\"},"
                          " \"basetype\": \"NUMERIC\"}, {\"name\": \"f\", \"definition\": {\"type\": \"FLOAT\"},"
                          " \"basetype\": \"FLOAT\"}]}}");
    keboola_column_type(typed, "n", type, sizeof type);
    assert_string_equal(type, "DECIMAL(38,0)");
    keboola_column_type(typed, "f", type, sizeof type);
    assert_string_equal(type, "DOUBLE");
    json_decref(typed);
}

static void storage_timestamps_carry_their_offset(void **state)
{
    (void)state;
    assert_int_equal(keboola_parse_time("2017-02-13T10:27:50+0100"), 1486978070);
    assert_int_equal(keboola_parse_time("2017-02-13T10:27:50+01:00"), 1486978070);
    assert_int_equal(keboola_parse_time("2017-02-13T09:27:50Z"), 1486978070);
    assert_int_equal(keboola_parse_time("2017-02-13T09:27:50"), 1486978070);
    assert_int_equal(keboola_parse_time("2017-02-13 04:27:50.123-0500"), 1486978070);
    assert_int_equal(keboola_parse_time("yesterday"), -1);
    assert_int_equal(keboola_parse_time("2017-02-13T09:27:50+1"), -1);
    assert_int_equal(keboola_parse_time(NULL), -1);
}

static void date_placeholders_resolve_in_utc_and_unknown_ones_fail(void **state)
{
    (void)state;
    time_t now = 1711843200; /* 2024-03-31 00:00:00 UTC */
    char out[128];
    agnes_error err;
    static const char *const cases[][2] = {
        {"{{today}}", "2024-03-31"},
        {"{{yesterday}}", "2024-03-30"},
        {"{{last_week}}", "2024-03-24"},
        {"{{last_month}}", "2024-02-29"}, /* clamped to February's end in a leap year */
        {"{{last_3_months}}", "2023-12-31"},
        {"{{last_year}}", "2023-03-31"},
        {"{{start_of_3_months_ago}}", "2023-12-01"},
        {"from {{ start_of_month }} on", "from 2024-03-01 on"},
        {"no placeholder", "no placeholder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(keboola_resolve_placeholders(cases[i][0], now, out, sizeof out, &err), AGNES_OK);
        if (strcmp(out, cases[i][1]) != 0)
            fail_msg("%s -> %s, expected %s", cases[i][0], out, cases[i][1]);
    }
    assert_int_equal(keboola_resolve_placeholders("{{next_week}}", now, out, sizeof out, &err), AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "unknown placeholder {{next_week}}"));
    assert_non_null(strstr(err.message, "{{last_month}}")); /* the sentence lists what is known */
    assert_int_equal(keboola_resolve_placeholders("{{today", now, out, sizeof out, &err), AGNES_ERR_INVALID);
}

static void where_filters_are_checked_and_resolved(void **state)
{
    (void)state;
    agnes_error err;
    json_t *resolved = NULL;
    json_t *filters = parse("[{\"column\": \"day\", \"operator\": \"ge\", \"values\": [\"{{today}}\", 7]},"
                            " {\"column\": \"s\", \"values\": [\"x\"], \"dataType\": \"INTEGER\"}]");
    assert_int_equal(keboola_where_filters(filters, "where_filters", 1711843200, &resolved, &err), AGNES_OK);
    char *text = json_dumps(resolved, JSON_COMPACT);
    assert_string_equal(text, "[{\"column\":\"day\",\"operator\":\"ge\",\"values\":[\"2024-03-31\",\"7\"]},"
                              "{\"column\":\"s\",\"operator\":\"eq\",\"values\":[\"x\"],\"dataType\":\"INTEGER\"}]");
    free(text);
    json_decref(resolved);
    json_decref(filters);
    static const char *const bad[][2] = {
        {"{\"column\": \"x\"}", "must be a list"},
        {"[{\"values\": [\"a\"]}]", "needs \"column\""},
        {"[{\"column\": \"x\", \"operator\": \"like\", \"values\": [\"a\"]}]", "operator 'like'"},
        {"[{\"column\": \"x\", \"values\": []}]", "non-empty list"},
        {"[{\"column\": \"x\", \"values\": [{\"a\": 1}]}]", "string or a number"},
        {"[{\"column\": \"x\", \"values\": [\"a\"], \"type\": \"DATE\"}]", "SCALAR or TIME_STRING"},
        {"[{\"column\": \"x\", \"values\": [\"a\"], \"colour\": 1}]", "unknown key \"colour\""},
        {"[{\"column\": \"at\", \"operator\": \"ge\", \"values\": [\"2024-01-01\"], \"type\": \"TIME_STRING\","
         " \"dataType\": \"INTEGER\"}]", "without a dataType"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *f = parse(bad[i][0]);
        assert_int_equal(keboola_where_filters(f, "where_filters", -1, NULL, &err), AGNES_ERR_INVALID);
        if (strstr(err.message, bad[i][1]) == NULL)
            fail_msg("%s: '%s' does not say '%s'", bad[i][0], err.message, bad[i][1]);
        json_decref(f);
    }
    char long_value[600];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    json_t *f = json_pack("[{s:s, s:[s]}]", "column", "note", "values", long_value);
    assert_int_equal(keboola_where_filters(f, "where_filters", -1, NULL, &err), AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "is 599 characters long; a filter value may have at most 511"));
    json_decref(f);
}

static void materialized_specs_are_json_not_sql(void **state)
{
    (void)state;
    agnes_error err;
    json_t *params = NULL;
    assert_int_equal(keboola_materialized_spec("  (SELECT 1)", 0, &params, &err), AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "not SQL"));
    assert_int_equal(keboola_materialized_spec("with x as (select 1) select * from x", 0, &params, &err),
                     AGNES_ERR_INVALID);
    assert_int_equal(keboola_materialized_spec("{\"rows\": 5}", 0, &params, &err), AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "unknown key \"rows\""));
    assert_int_equal(keboola_materialized_spec("{\"file_type\": \"xlsx\"}", 0, &params, &err), AGNES_ERR_INVALID);
    assert_int_equal(keboola_materialized_spec("[1]", 0, &params, &err), AGNES_ERR_INVALID);
    assert_int_equal(keboola_materialized_spec("{\"columns\": [\"a\", \"b\"], \"changedSince\": \"{{last_week}}\","
                                               " \"limit\": 10, \"file_type\": \"parquet\"}",
                                               1711843200, &params, &err),
                     AGNES_OK);
    assert_string_equal(json_string_value(json_object_get(params, "columns")), "a,b");
    assert_string_equal(json_string_value(json_object_get(params, "changedSince")), "2024-03-24");
    assert_string_equal(json_string_value(json_object_get(params, "fileType")), "parquet");
    assert_int_equal(json_integer_value(json_object_get(params, "limit")), 10);
    json_decref(params);
    assert_int_equal(keboola_materialized_spec("{}", 0, &params, &err), AGNES_OK);
    assert_string_equal(json_string_value(json_object_get(params, "fileType")), "csv");
    json_decref(params);
}

static void registry_rules(void **state)
{
    (void)state;
    agnes_error err;
    static const char *const ok[] = {
        "{\"bucket\": \"in.c-main\", \"source_table\": \"orders\", \"query_mode\": \"local\"}",
        "{\"source_table\": \"in.c-main.orders\", \"query_mode\": \"local\", \"sync_strategy\": \"incremental\","
        " \"incremental_window_days\": 3}",
        "{\"bucket\": \"in.c-main\", \"source_table\": \"in.c-main.orders\", \"query_mode\": \"local\"}",
        "{\"bucket\": \"in.c-main\", \"source_table\": \"orders\", \"query_mode\": \"local\", \"sync_strategy\":"
        " \"partitioned\", \"partition_by\": \"day\", \"partition_granularity\": \"year\"}",
        "{\"bucket\": \"in.c-main\", \"source_table\": \"orders\", \"query_mode\": \"materialized\","
        " \"source_query\": \"{}\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *row = parse(ok[i]);
        if (keboola_check_row(row, &err) != AGNES_OK)
            fail_msg("%s refused: %s", ok[i], err.message);
        json_decref(row);
    }
    static const char *const bad[][2] = {
        {"{\"source_table\": \"orders\", \"query_mode\": \"local\"}", "needs its bucket"},
        {"{\"bucket\": \"in.c-x\", \"query_mode\": \"local\"}", "needs source_table"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"remote\"}", "local or materialized"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"local\", \"sync_strategy\": \"cdc\"}",
         "not one of"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"local\", \"sync_strategy\":"
         " \"partitioned\"}", "needs partition_by"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"local\", \"partition_by\": \"d\"}",
         "only for sync_strategy partitioned"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"local\", \"incremental_window_days\": 1}",
         "only for sync_strategy incremental"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"materialized\", \"source_query\":"
         " \"select 1\"}", "not SQL"},
        {"{\"bucket\": \"in.c-x\", \"source_table\": \"t\", \"query_mode\": \"local\", \"sync_strategy\":"
         " \"incremental\", \"where_filters\": [{\"column\": \"a\", \"values\": [\"1\"]}]}", "cannot be combined"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *row = parse(bad[i][0]);
        assert_int_equal(keboola_check_row(row, &err), AGNES_ERR_INVALID);
        if (strstr(err.message, bad[i][1]) == NULL)
            fail_msg("%s: '%s' does not say '%s'", bad[i][0], err.message, bad[i][1]);
        json_decref(row);
    }
    char id[200];
    json_t *row = parse("{\"bucket\": \"in.c-main\", \"source_table\": \"in.c-main.orders\"}");
    assert_int_equal(keboola_row_table_id(row, id, sizeof id, &err), AGNES_OK);
    assert_string_equal(id, "in.c-main.orders");
    json_decref(row);
}

static void the_token_never_survives_in_a_message(void **state)
{
    (void)state;
    const char *token = "8625-373115-abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    char text[300];
    snprintf(text, sizeof text, "proxy says: bad token %s; and the secret abcdefghijklmnopqrstuvwxyz0123456789ABCD",
             token);
    keboola_redact(text, sizeof text, token);
    assert_string_equal(text, "proxy says: bad token [redacted]; and the secret [redacted]");
    char id[32];
    json_t *ids = parse("[\"44\", 8625, null]");
    assert_string_equal(keboola_id_text(json_array_get(ids, 0), id, sizeof id), "44");
    assert_string_equal(keboola_id_text(json_array_get(ids, 1), id, sizeof id), "8625");
    assert_string_equal(keboola_id_text(json_array_get(ids, 2), id, sizeof id), "");
    json_decref(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(view_names_are_stage_bucket_table),
        cmocka_unit_test(types_come_from_storage_metadata_by_provider_priority),
        cmocka_unit_test(storage_timestamps_carry_their_offset),
        cmocka_unit_test(date_placeholders_resolve_in_utc_and_unknown_ones_fail),
        cmocka_unit_test(where_filters_are_checked_and_resolved),
        cmocka_unit_test(materialized_specs_are_json_not_sql),
        cmocka_unit_test(registry_rules),
        cmocka_unit_test(the_token_never_survives_in_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
