#include "engine/query_guard.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/duck.h"

/* Table functions a non-admin may call: generators only, no I/O. */
static const char *const allowed_table_functions[] = {"range", "generate_series", "unnest"};

static bool in_names(const json_t *names, const char *name)
{
    size_t i;
    json_t *value;
    json_array_foreach(names, i, value) {
        if (json_is_string(value) && strcasecmp(json_string_value(value), name) == 0)
            return true;
    }
    return false;
}

static const char *string_field(const json_t *node, const char *key)
{
    const char *value = json_string_value(json_object_get(node, key));
    return value ? value : "";
}

/* Every CTE name anywhere in the tree, so references to them are known. */
static void collect_cte_names(const json_t *node, json_t *names)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *child;
        json_array_foreach(node, i, child)
            collect_cte_names(child, names);
        return;
    }
    if (!json_is_object(node))
        return;
    const json_t *map = json_object_get(json_object_get(node, "cte_map"), "map");
    size_t i;
    json_t *entry;
    json_array_foreach(map, i, entry) {
        if (json_is_string(json_object_get(entry, "key")))
            json_array_append(names, json_object_get(entry, "key"));
    }
    const char *key;
    json_t *child;
    json_object_foreach((json_t *)node, key, child)
        collect_cte_names(child, names);
}

typedef struct walk_state {
    const query_guard_policy *policy;
    json_t *cte_names;
    agnes_error *err;
} walk_state;

static int check_table(walk_state *st, const json_t *ref)
{
    const char *catalog = string_field(ref, "catalog_name");
    const char *schema = string_field(ref, "schema_name");
    const char *name = string_field(ref, "table_name");
    const query_guard_policy *policy = st->policy;
    bool plain = catalog[0] == '\0' && (schema[0] == '\0' || strcasecmp(schema, "main") == 0);
    if (!plain)
        return agnes_error_set(st->err, AGNES_ERR_FORBIDDEN,
                               "Access denied to table '%s%s%s%s%s': only the catalog's views can be queried, by "
                               "their plain names (GET /api/catalog/tables lists yours).",
                               catalog, catalog[0] ? "." : "", schema, schema[0] ? "." : "", name);
    bool is_view = in_names(policy->catalog, name);
    if (is_view && in_names(policy->visible, name))
        return AGNES_OK;
    if (is_view)
        return agnes_error_set(st->err, AGNES_ERR_FORBIDDEN,
                               "Access denied to table '%s'. Ask an admin to grant one of your groups access to it.",
                               name);
    if (in_names(st->cte_names, name))
        return AGNES_OK;
    return agnes_error_set(st->err, AGNES_ERR_FORBIDDEN,
                           "Table '%s' does not exist or you have no access to it. GET /api/catalog/tables lists the "
                           "tables you can query.",
                           name);
}

static int check_table_function(walk_state *st, const json_t *ref)
{
    const json_t *function = json_object_get(ref, "function");
    const char *name = string_field(function, "function_name");
    const char *schema = string_field(function, "schema");
    if (schema[0] == '\0') {
        for (size_t i = 0; i < sizeof allowed_table_functions / sizeof allowed_table_functions[0]; i++)
            if (strcasecmp(name, allowed_table_functions[i]) == 0)
                return AGNES_OK;
    }
    return agnes_error_set(st->err, AGNES_ERR_FORBIDDEN,
                           "Table function '%s' is not allowed: queries may read the catalog's views and use "
                           "range, generate_series and unnest only. Query the table by its name instead.",
                           name);
}

static int walk(walk_state *st, const json_t *node)
{
    if (json_is_array(node)) {
        size_t i;
        json_t *child;
        json_array_foreach(node, i, child) {
            if (walk(st, child) != AGNES_OK)
                return st->err->code;
        }
        return AGNES_OK;
    }
    if (!json_is_object(node))
        return AGNES_OK;
    const char *type = string_field(node, "type");
    int rc = AGNES_OK;
    if (strcmp(type, "BASE_TABLE") == 0)
        rc = check_table(st, node);
    else if (strcmp(type, "TABLE_FUNCTION") == 0)
        rc = check_table_function(st, node);
    else if (strcmp(type, "SHOW_REF") == 0 && string_field(node, "table_name")[0] != '\0')
        /* SHOW TABLES / SHOW <name> list the whole catalog, hidden views too. */
        rc = agnes_error_set(st->err, AGNES_ERR_FORBIDDEN,
                             "SHOW is not available; GET /api/catalog/tables lists the tables you can query.");
    if (rc != AGNES_OK)
        return rc;
    const char *key;
    json_t *child;
    json_object_foreach((json_t *)node, key, child) {
        if (walk(st, child) != AGNES_OK)
            return st->err->code;
    }
    return AGNES_OK;
}

static int count_statements(duckdb_connection conn, const char *sql, agnes_error *err)
{
    duckdb_extracted_statements statements = NULL;
    idx_t count = duckdb_extract_statements(conn, sql, &statements);
    int rc = AGNES_OK;
    if (count == 0) {
        const char *why = statements ? duckdb_extract_statements_error(statements) : NULL;
        if (why != NULL && why[0] != '\0')
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", why);
        else
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "The query is empty. Send one SELECT statement in \"sql\".");
    } else if (count > 1) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "Only a single SELECT statement is allowed; this text holds %llu statements. Send them "
                             "one request at a time.",
                             (unsigned long long)count);
    }
    duckdb_destroy_extracted(&statements);
    return rc;
}

/* The statement's syntax tree, via DuckDB's json_serialize_sql(). */
static int syntax_tree(duckdb_connection conn, const char *sql, json_t **tree, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {sql};
    char *text = NULL;
    *tree = NULL;
    if (duck_query_params(conn, "SELECT json_serialize_sql($1::VARCHAR)", params, 1, &result, err) != AGNES_OK)
        return err->code;
    text = duckdb_value_varchar(&result, 0, 0);
    duckdb_destroy_result(&result);
    if (text == NULL)
        return agnes_error_set(err, AGNES_ERR_DB, "json_serialize_sql returned nothing");
    json_error_t parse_error;
    /* query_location can be 2^64-1, beyond json_int_t: read numbers as reals. */
    *tree = json_loads(text, JSON_DECODE_INT_AS_REAL, &parse_error);
    duckdb_free(text);
    if (*tree == NULL)
        return agnes_error_set(err, AGNES_ERR_DB, "json_serialize_sql returned invalid JSON: %s", parse_error.text);
    if (json_is_true(json_object_get(*tree, "error"))) {
        const char *message = string_field(*tree, "error_message");
        int rc = strstr(message, "Only SELECT") != NULL
                     ? agnes_error_set(err, AGNES_ERR_INVALID,
                                       "Only SELECT queries are allowed (this statement changes or inspects the "
                                       "database). Rewrite it as a SELECT.")
                     : agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", message);
        json_decref(*tree);
        *tree = NULL;
        return rc;
    }
    return AGNES_OK;
}

int query_guard_check(duckdb_connection conn, const char *sql, const query_guard_policy *policy, agnes_error *err)
{
    size_t length = strlen(sql);
    if (length > QUERY_GUARD_MAX_SQL)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "The query is %zu characters long; the limit is %d. Shorten it (e.g. move long IN "
                               "lists into a join).",
                               length, QUERY_GUARD_MAX_SQL);
    if (count_statements(conn, sql, err) != AGNES_OK)
        return err->code;
    json_t *tree = NULL;
    if (syntax_tree(conn, sql, &tree, err) != AGNES_OK)
        return err->code;
    int rc = AGNES_OK;
    if (json_array_size(json_object_get(tree, "statements")) != 1)
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "Only a single SELECT statement is allowed.");
    else if (!policy->is_admin) {
        walk_state st = {.policy = policy, .cte_names = json_array(), .err = err};
        if (st.cte_names == NULL)
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        else {
            collect_cte_names(tree, st.cte_names);
            rc = walk(&st, json_object_get(tree, "statements"));
        }
        json_decref(st.cte_names);
    }
    json_decref(tree);
    return rc;
}

int query_guard_check_prepared(duckdb_prepared_statement statement, agnes_error *err)
{
    if (duckdb_prepared_statement_type(statement) != DUCKDB_STATEMENT_TYPE_SELECT)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Only SELECT queries are allowed (this statement changes or inspects the database). "
                               "Rewrite it as a SELECT.");
    return AGNES_OK;
}
