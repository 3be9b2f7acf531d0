/*
 * keboola_rules.c - what a Keboola registry row may say, checked offline.
 *
 * Storage facts (export-async, Keboola's documentation): whereFilters is a
 * list of {column, operator: eq|ne|gt|ge|lt|le, values[], dataType?:
 * INTEGER|DOUBLE|BIGINT|REAL|DECIMAL, type?: SCALAR|TIME_STRING}, AND-ed;
 * eq/ne act as IN/NOT IN over the values.  The date placeholders are the
 * original Agnes's own layer over it, resolved when a sync runs (UTC).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/strbuf.h"
#include "sync/keboola.h"

#define KEBOOLA_PLACEHOLDERS                                                                                      \
    "{{today}}, {{yesterday}}, {{last_week}}, {{last_month}}, {{last_2_months}}, {{last_3_months}}, "             \
    "{{last_6_months}}, {{last_year}}, {{last_2_years}}, {{start_of_month}}, {{start_of_3_months_ago}}"

static int days_in_month(int year, int month /* 0-11 */)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 1 && leap ? 29 : days[month];
}

/* now minus `months` calendar months; the day clamped to the month's end
 * (31 March - 1 month = 28/29 February); day_one: the month's first day. */
static void months_back(const struct tm *now, int months, bool day_one, char out[16])
{
    int total = (now->tm_year + 1900) * 12 + now->tm_mon - months;
    int year = total / 12, month = total % 12;
    int day = day_one ? 1 : now->tm_mday;
    if (day > days_in_month(year, month))
        day = days_in_month(year, month);
    snprintf(out, 16, "%04d-%02d-%02d", year, month + 1, day);
}

static void days_back(time_t now, int days, char out[16])
{
    time_t then = now - (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&then, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* The date a placeholder name stands for; false when unknown. */
static bool placeholder_value(const char *name, size_t len, time_t now, char out[16])
{
    struct tm tm;
    gmtime_r(&now, &tm);
    static const struct {
        const char *name;
        int days, months;
        bool day_one;
    } known[] = {
        {"today", 0, 0, false},         {"yesterday", 1, 0, false},       {"last_week", 7, 0, false},
        {"last_month", 0, 1, false},    {"last_2_months", 0, 2, false},   {"last_3_months", 0, 3, false},
        {"last_6_months", 0, 6, false}, {"last_year", 0, 12, false},      {"last_2_years", 0, 24, false},
        {"start_of_month", 0, 0, true}, {"start_of_3_months_ago", 0, 3, true},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].name) != len || strncmp(known[i].name, name, len) != 0)
            continue;
        if (known[i].months > 0 || known[i].day_one)
            months_back(&tm, known[i].months, known[i].day_one, out);
        else
            days_back(now, known[i].days, out);
        return true;
    }
    return false;
}

int keboola_resolve_placeholders(const char *text, time_t now, char *out, size_t out_size, agnes_error *err)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0';) {
        const char *open = strstr(p, "{{");
        size_t plain = open ? (size_t)(open - p) : strlen(p);
        if (n + plain >= out_size)
            return agnes_error_set(err, AGNES_ERR_INVALID, "the filter value '%.80s' is too long", text);
        memcpy(out + n, p, plain);
        n += plain;
        if (open == NULL)
            break;
        const char *close = strstr(open + 2, "}}");
        if (close == NULL)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the filter value '%.80s' opens a placeholder with {{ but never closes it with }}",
                                   text);
        const char *name = open + 2;
        size_t len = (size_t)(close - name);
        while (len > 0 && isspace((unsigned char)*name))
            name++, len--;
        while (len > 0 && isspace((unsigned char)name[len - 1]))
            len--;
        char date[16];
        if (!placeholder_value(name, len, now, date))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "unknown placeholder {{%.*s}} in the filter value '%.80s'; known: " KEBOOLA_PLACEHOLDERS,
                                   (int)(len > 40 ? 40 : len), name, text);
        if (n + strlen(date) >= out_size)
            return agnes_error_set(err, AGNES_ERR_INVALID, "the filter value '%.80s' is too long", text);
        memcpy(out + n, date, strlen(date));
        n += strlen(date);
        p = close + 2;
    }
    out[n] = '\0';
    return AGNES_OK;
}

static bool one_of(const char *value, const char *const *choices, size_t count)
{
    for (size_t i = 0; value != NULL && i < count; i++)
        if (strcmp(value, choices[i]) == 0)
            return true;
    return false;
}

/* One whereFilters item, checked; *resolved (new) with its values as
 * strings, placeholders resolved when now >= 0. */
static int where_filter_item(const json_t *item, const char *field, size_t index, time_t now, json_t **resolved,
                             agnes_error *err)
{
    static const char *const operators[] = {"eq", "ne", "gt", "ge", "lt", "le"};
    static const char *const data_types[] = {"INTEGER", "DOUBLE", "BIGINT", "REAL", "DECIMAL"};
    static const char *const kinds[] = {"SCALAR", "TIME_STRING"};
    static const char *const keys[] = {"column", "operator", "values", "dataType", "type"};
    *resolved = NULL;
    if (!json_is_object(item))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s[%zu] must be an object {\"column\": ..., \"operator\": \"eq\", \"values\": [...]}",
                               field, index);
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)item, key, value) {
        if (!one_of(key, keys, 5))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "%s[%zu] has an unknown key \"%s\"; use column, operator, values, dataType, type",
                                   field, index, key);
    }
    const char *column = json_string_value(json_object_get(item, "column"));
    const char *operator= json_string_value(json_object_get(item, "operator"));
    const json_t *values = json_object_get(item, "values");
    const json_t *data_type = json_object_get(item, "dataType");
    const json_t *kind = json_object_get(item, "type");
    if (column == NULL || column[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s[%zu] needs \"column\": the column to filter on", field,
                               index);
    if (json_object_get(item, "operator") != NULL && !one_of(operator, operators, 6))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s[%zu] has operator '%s'; use eq, ne (values act as IN / NOT IN), gt, ge, lt or le",
                               field, index, operator? operator: "?");
    if (!json_is_array(values) || json_array_size(values) == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s[%zu] needs \"values\": a non-empty list", field, index);
    if (data_type != NULL && !json_is_null(data_type) && !one_of(json_string_value(data_type), data_types, 5))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s[%zu] has dataType '%s'; use INTEGER, DOUBLE, BIGINT, REAL or DECIMAL", field, index,
                               json_string_value(data_type) ? json_string_value(data_type) : "?");
    if (kind != NULL && !json_is_null(kind) && !one_of(json_string_value(kind), kinds, 2))
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s[%zu] has type '%s'; use SCALAR or TIME_STRING", field,
                               index, json_string_value(kind) ? json_string_value(kind) : "?");
    /* Storage: "type TIME_STRING ... dataType must then be empty" (export-async's whereFilters). */
    if (json_is_string(kind) && strcmp(json_string_value(kind), "TIME_STRING") == 0 && json_is_string(data_type))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s[%zu] has type TIME_STRING and dataType '%s'; Storage compares time strings "
                               "without a dataType, so drop one of them",
                               field, index, json_string_value(data_type));
    json_t *out_values = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(values, i, v) {
        char text[512], resolved_text[512];
        if (json_is_string(v) && json_string_length(v) >= sizeof text) {
            /* Cut short it would filter on another value, silently. */
            json_decref(out_values);
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "%s[%zu].values[%zu] is %zu characters long; a filter value may have at most %zu",
                                   field, index, i, json_string_length(v), sizeof text - 1);
        }
        if (json_is_string(v))
            snprintf(text, sizeof text, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(text, sizeof text, "%.17g", json_real_value(v));
        else {
            json_decref(out_values);
            return agnes_error_set(err, AGNES_ERR_INVALID, "%s[%zu].values[%zu] must be a string or a number", field,
                                   index, i);
        }
        if (keboola_resolve_placeholders(text, now >= 0 ? now : 0, resolved_text, sizeof resolved_text, err)) {
            json_decref(out_values);
            return agnes_error_wrap(err, "%s[%zu]", field, index);
        }
        json_array_append_new(out_values, json_string(resolved_text));
    }
    *resolved = json_pack("{s:s, s:s, s:o}", "column", column, "operator", operator? operator: "eq", "values",
                          out_values);
    if (data_type != NULL && json_is_string(data_type))
        json_object_set(*resolved, "dataType", (json_t *)data_type);
    if (kind != NULL && json_is_string(kind))
        json_object_set(*resolved, "type", (json_t *)kind);
    return AGNES_OK;
}

int keboola_where_filters(const json_t *filters, const char *field, time_t now, json_t **resolved, agnes_error *err)
{
    if (resolved != NULL)
        *resolved = NULL;
    if (!json_is_array(filters))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s must be a list of Storage whereFilters, e.g. [{\"column\": \"status\", "
                               "\"operator\": \"eq\", \"values\": [\"paid\"]}]",
                               field);
    json_t *out = json_array();
    size_t i;
    const json_t *item;
    json_array_foreach(filters, i, item) {
        json_t *one = NULL;
        if (where_filter_item(item, field, i, now, &one, err)) {
            json_decref(out);
            return err->code;
        }
        json_array_append_new(out, one);
    }
    if (resolved != NULL && now >= 0)
        *resolved = out;
    else
        json_decref(out);
    return AGNES_OK;
}

static bool looks_like_sql(const char *text)
{
    static const char *const verbs[] = {"select", "with", "insert", "update", "delete", "from", "create", "drop",
                                        "merge",  "copy", "call",   "table"};
    while (*text != '\0' && (isspace((unsigned char)*text) || *text == '('))
        text++;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        size_t len = strlen(verbs[i]);
        if (strncasecmp(text, verbs[i], len) == 0 && !isalnum((unsigned char)text[len]))
            return true;
    }
    return false;
}

#define SPEC_EXAMPLE                                                                                               \
    "{\"columns\": [\"id\", \"amount\"], \"whereFilters\": [{\"column\": \"status\", \"operator\": \"eq\", "       \
    "\"values\": [\"paid\"]}]}"

/* changedSince/changedUntil: unix seconds or any text Storage reads
 * ("-2 days", an ISO date), placeholders allowed. */
static int time_param(const json_t *value, const char *key, time_t now, json_t *params, agnes_error *err)
{
    char text[256], resolved[256];
    if (json_is_integer(value))
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value));
    else if (json_is_string(value) && json_string_length(value) > 0 && json_string_length(value) < sizeof text)
        snprintf(text, sizeof text, "%s", json_string_value(value));
    else
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "source_query \"%s\" must be unix seconds or a date Storage reads (e.g. \"-7 days\" "
                               "or \"{{last_month}}\")",
                               key);
    if (keboola_resolve_placeholders(text, now, resolved, sizeof resolved, err))
        return agnes_error_wrap(err, "source_query \"%s\"", key);
    json_object_set_new(params, key, json_string(resolved));
    return AGNES_OK;
}

static int columns_param(const json_t *value, json_t *params, agnes_error *err)
{
    strbuf joined;
    strbuf_init(&joined);
    if (json_is_string(value) && json_string_length(value) > 0) {
        strbuf_append_str(&joined, json_string_value(value));
    } else if (json_is_array(value) && json_array_size(value) > 0) {
        size_t i;
        const json_t *name;
        json_array_foreach(value, i, name) {
            if (!json_is_string(name) || json_string_length(name) == 0 || strchr(json_string_value(name), ',')) {
                strbuf_free(&joined);
                return agnes_error_set(err, AGNES_ERR_INVALID, "source_query \"columns\" must list column names");
            }
            strbuf_appendf(&joined, "%s%s", i ? "," : "", json_string_value(name));
        }
    } else {
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "source_query \"columns\" must be a list of column names, e.g. [\"id\", \"amount\"]");
    }
    int rc = strbuf_failed(&joined) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
    if (rc == AGNES_OK)
        json_object_set_new(params, "columns", json_string(joined.data));
    strbuf_free(&joined);
    return rc;
}

int keboola_materialized_spec(const char *source_query, time_t now, json_t **params, agnes_error *err)
{
    json_error_t parse_error;
    *params = NULL;
    if (source_query == NULL || looks_like_sql(source_query))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "a Keboola materialized table's source_query is a JSON export spec, not SQL (Storage "
                               "exports tables; it does not run queries): e.g. " SPEC_EXAMPLE
                               ". Keys: columns, whereFilters, changedSince, changedUntil, limit, orderBy, file_type. "
                               "To sync the whole table use query_mode local");
    json_t *spec = json_loads(source_query, 0, &parse_error);
    if (!json_is_object(spec)) {
        json_decref(spec);
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "a Keboola materialized table's source_query must be a JSON object (an export spec), "
                               "e.g. " SPEC_EXAMPLE "; {} exports the whole table");
    }
    json_t *out = json_pack("{s:s}", "fileType", "csv");
    int rc = AGNES_OK;
    const char *key;
    json_t *value;
    json_object_foreach(spec, key, value) {
        if (rc != AGNES_OK)
            break;
        if (strcmp(key, "columns") == 0) {
            rc = columns_param(value, out, err);
        } else if (strcmp(key, "whereFilters") == 0) {
            json_t *resolved = NULL;
            rc = keboola_where_filters(value, "source_query \"whereFilters\"", now, &resolved, err);
            if (rc == AGNES_OK)
                json_object_set_new(out, "whereFilters", resolved ? resolved : json_array());
        } else if (strcmp(key, "changedSince") == 0 || strcmp(key, "changedUntil") == 0) {
            rc = time_param(value, key, now, out, err);
        } else if (strcmp(key, "limit") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 1)
                rc = agnes_error_set(err, AGNES_ERR_INVALID, "source_query \"limit\" must be a positive integer");
            else
                json_object_set(out, "limit", value);
        } else if (strcmp(key, "orderBy") == 0) {
            size_t i;
            json_t *item;
            if (!json_is_array(value))
                rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                     "source_query \"orderBy\" must be a list of {\"column\": ..., \"order\": \"ASC\"}");
            json_array_foreach(value, i, item) {
                const char *order = json_string_value(json_object_get(item, "order"));
                if (rc == AGNES_OK &&
                    (!json_is_string(json_object_get(item, "column")) ||
                     (order != NULL && strcmp(order, "ASC") != 0 && strcmp(order, "DESC") != 0)))
                    rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                         "source_query \"orderBy\"[%zu] must be {\"column\": ..., \"order\": \"ASC\" "
                                         "or \"DESC\"}",
                                         i);
            }
            if (rc == AGNES_OK)
                json_object_set(out, "orderBy", value);
        } else if (strcmp(key, "file_type") == 0) {
            const char *type = json_string_value(value);
            if (type == NULL || (strcmp(type, "csv") != 0 && strcmp(type, "parquet") != 0))
                rc = agnes_error_set(err, AGNES_ERR_INVALID, "source_query \"file_type\" must be \"csv\" or \"parquet\"");
            else
                json_object_set_new(out, "fileType", json_string(type));
        } else {
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "source_query has an unknown key \"%s\"; a Keboola export spec takes columns, "
                                 "whereFilters, changedSince, changedUntil, limit, orderBy, file_type",
                                 key);
        }
    }
    json_decref(spec);
    if (rc != AGNES_OK)
        json_decref(out);
    else
        *params = out;
    return rc;
}

int keboola_row_table_id(const json_t *row, char *out, size_t out_size, agnes_error *err)
{
    const char *bucket = json_string_value(json_object_get(row, "bucket"));
    const char *table = json_string_value(json_object_get(row, "source_table"));
    if (bucket != NULL && bucket[0] == '\0')
        bucket = NULL;
    if (table == NULL || table[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "a Keboola table needs source_table (the table name, e.g. orders) and bucket (the "
                               "bucket id, e.g. in.c-main), or source_table as the full table id in.c-main.orders");
    size_t bucket_len = bucket ? strlen(bucket) : 0;
    if (bucket != NULL && strncmp(table, bucket, bucket_len) == 0 && table[bucket_len] == '.')
        bucket = NULL; /* source_table already carries its bucket */
    if (bucket == NULL) {
        int dots = 0;
        for (const char *p = table; *p; p++)
            dots += *p == '.';
        if (dots < 2)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the Keboola table '%s' needs its bucket: set bucket (e.g. in.c-main) or give "
                                   "source_table as the full table id (in.c-main.%s)",
                                   table, table);
        snprintf(out, out_size, "%s", table);
    } else {
        if (strchr(table, '.') != NULL)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "source_table '%s' is not in bucket '%s'; a table name has no dots", table, bucket);
        snprintf(out, out_size, "%s.%s", bucket, table);
    }
    return AGNES_OK;
}

static bool present(const json_t *row, const char *key)
{
    const json_t *value = json_object_get(row, key);
    return value != NULL && !json_is_null(value);
}

int keboola_check_row(const json_t *row, agnes_error *err)
{
    static const char *const strategies[] = {"full_refresh", "incremental", "partitioned"};
    static const char *const granularities[] = {"day", "month", "year"};
    const char *mode = json_string_value(json_object_get(row, "query_mode"));
    const char *strategy = json_string_value(json_object_get(row, "sync_strategy"));
    char table_id[512];
    if (strategy == NULL)
        strategy = "full_refresh";
    if (mode != NULL && strcmp(mode, "remote") == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Keboola tables are local or materialized: a remote table would need Keboola's DuckDB "
                               "extension, which this build does not have. Use query_mode local (synced) or "
                               "materialized (an export spec)");
    if (keboola_row_table_id(row, table_id, sizeof table_id, err))
        return err->code;
    if (!one_of(strategy, strategies, 3))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "sync_strategy '%s' is not one of full_refresh, incremental, partitioned", strategy);
    bool materialized = mode != NULL && strcmp(mode, "materialized") == 0;
    bool partitioned = strcmp(strategy, "partitioned") == 0;
    bool incremental = strcmp(strategy, "incremental") == 0;
    if (materialized) {
        json_t *params = NULL;
        if (keboola_materialized_spec(json_string_value(json_object_get(row, "source_query")), 0, &params, err))
            return err->code;
        json_decref(params);
        if (strcmp(strategy, "full_refresh") != 0)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "a materialized Keboola table is exported whole by its spec each sync; drop "
                                   "sync_strategy '%s' (or register the table as local to sync it that way)",
                                   strategy);
        if (present(row, "where_filters"))
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "a materialized table filters with its source_query's whereFilters, not "
                                   "where_filters");
    }
    if (present(row, "where_filters")) {
        if (keboola_where_filters(json_object_get(row, "where_filters"), "where_filters", -1, NULL, err))
            return err->code;
        if (incremental || partitioned)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "where_filters cannot be combined with sync_strategy '%s': rows leaving the filter "
                                   "would never leave the merged table. Use full_refresh with where_filters",
                                   strategy);
    }
    if (partitioned && !present(row, "partition_by"))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "sync_strategy partitioned needs partition_by: the date or timestamp column that "
                               "splits the table into files");
    if (!partitioned && (present(row, "partition_by") || present(row, "partition_granularity") ||
                         present(row, "initial_load_chunk_days")))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "partition_by, partition_granularity and initial_load_chunk_days are only for "
                               "sync_strategy partitioned");
    const char *granularity = json_string_value(json_object_get(row, "partition_granularity"));
    if (present(row, "partition_granularity") && !one_of(granularity, granularities, 3))
        return agnes_error_set(err, AGNES_ERR_INVALID, "partition_granularity must be day, month or year");
    if (present(row, "incremental_window_days") && !incremental && !partitioned)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "incremental_window_days is only for sync_strategy incremental or partitioned");
    return AGNES_OK;
}
