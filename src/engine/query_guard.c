#include "engine/query_guard.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/strbuf.h"
#include "engine/query_protocol.h"
#include "store/duck.h"

/* Table functions any query may call: generators that read nothing. */
static const char *const allowed_table_functions[] = {"range", "generate_series", "unnest"};

/* Scalar functions that answer about the server, not the data: settings,
 * the catalog, and plans (a plan names files and, through EMPTY_RESULT,
 * leaks column statistics of what it binds). */
static const char *const denied_functions[] = {
    "current_setting",  "json_serialize_plan", "current_database", "current_schema",
    "current_schemas",  "current_catalog",     "in_search_path",   "json_execute_serialized_sql",
    "which_secret",     "getenv",
};

#define PREFIX_EXPLAIN "EXPLAIN (FORMAT JSON) "

static const char *string_field(const json_t *node, const char *key)
{
    const char *value = json_string_value(json_object_get(node, key));
    return value ? value : "";
}

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

/* ---- sentences --------------------------------------------------------- */

int query_guard_missing(const char *name, agnes_error *err)
{
    char shown[200];
    snprintf(shown, sizeof shown, "%s", name);
    query_utf8_truncate(shown, sizeof shown);
    /* Names are case-insensitive; shown lower-cased, a hidden table's
     * catalog spelling cannot tell it apart from a name nobody has. */
    for (char *p = shown; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                           "Table '%s' does not exist or you have no access to it. GET /api/catalog/tables lists the "
                           "tables you can query.",
                           shown);
}

bool query_guard_missing_name(const char *message, char *out, size_t out_size)
{
    static const struct {
        const char *before, *after;
    } shapes[] = {{"Table with name ", " does not exist"},
                  {"Catalog \"", "\" does not exist"},
                  {"Schema with name ", " does not exist"}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const char *start = strstr(message, shapes[i].before);
        const char *end = start ? strstr(start + strlen(shapes[i].before), shapes[i].after) : NULL;
        if (start != NULL && end != NULL) {
            start += strlen(shapes[i].before);
            snprintf(out, out_size, "%.*s", (int)(end - start), start);
            return true;
        }
    }
    return false;
}

static int refuse_unservable(const char *name, const char *reason, agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                           "Table '%s' cannot be queried through the API: %s. Ask an admin to fix its source (admins "
                           "can still query it).",
                           name, reason);
}

/* Table functions that describe the engine rather than read data. */
static bool is_metadata_function(const char *name)
{
    static const char *const prefixes[] = {"duckdb_", "pragma_", "pg_", "sqlite_", "information_schema",
                                           "sql_auto_complete", "which_secret", "checkpoint", "force_checkpoint"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncasecmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

static int refuse_table_function(const char *name, agnes_error *err)
{
    if (is_metadata_function(name))
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "The engine's own catalog (%s) is not available to queries: GET /api/catalog/tables "
                               "and GET /api/catalog/tables/{id} describe the tables you can query.",
                               name);
    return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                           "Table function '%s' is not allowed: queries read the catalog's tables by name and may use "
                           "range, generate_series and unnest. GET /api/catalog/tables lists your tables.",
                           name);
}

static int refuse_function(const char *name, agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                           "Function '%s' is not available to queries: it answers about the server, not your data. "
                           "GET /api/catalog/tables describes the tables you can query.",
                           name);
}

static int refuse_file(agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                           "Queries read the catalog's tables by name only, not files, URLs or other databases. GET "
                           "/api/catalog/tables lists the tables you can query.");
}

static int refuse_count(idx_t count, agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_INVALID,
                           "Only a single SELECT statement is allowed; this text holds %llu statements. Send them one "
                           "request at a time.",
                           (unsigned long long)count);
}

/* ---- lenient JSON -------------------------------------------------------- */

int query_guard_load_tree(const char *text, json_t **out, agnes_error *err)
{
    strbuf clean;
    strbuf_init(&clean);
    bool in_string = false;
    for (const char *p = text; *p != '\0'; p++) {
        if (in_string) {
            strbuf_append_char(&clean, *p);
            if (*p == '\\' && p[1] != '\0')
                strbuf_append_char(&clean, *++p);
            else if (*p == '"')
                in_string = false;
            continue;
        }
        if (*p == '"') {
            in_string = true;
            strbuf_append_char(&clean, *p);
        } else if (strncmp(p, "NaN", 3) == 0) {
            strbuf_append_str(&clean, "null");
            p += 2;
        } else if (strncmp(p, "-Infinity", 9) == 0) {
            strbuf_append_str(&clean, "null");
            p += 8;
        } else if (strncmp(p, "Infinity", 8) == 0) {
            strbuf_append_str(&clean, "null");
            p += 7;
        } else {
            strbuf_append_char(&clean, *p);
        }
    }
    if (strbuf_failed(&clean)) {
        strbuf_free(&clean);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    json_error_t parse_error;
    /* query_location can be 2^64-1, beyond json_int_t: read numbers as reals. */
    *out = json_loadb(clean.data ? clean.data : "", clean.len, JSON_DECODE_INT_AS_REAL, &parse_error);
    strbuf_free(&clean);
    if (*out == NULL)
        return agnes_error_set(err, AGNES_ERR_DB, "DuckDB described the statement in JSON that cannot be read: %s",
                               parse_error.text);
    return AGNES_OK;
}

/* ---- statements ------------------------------------------------------------ */

void query_guard_statements_free(query_statements *statements)
{
    if (statements->extracted != NULL)
        duckdb_destroy_extracted(&statements->extracted);
    statements->count = 0;
}

static idx_t extract(duckdb_connection conn, const char *sql, duckdb_extracted_statements *out, agnes_error *err)
{
    idx_t count = duckdb_extract_statements(conn, sql, out);
    if (count == 0) {
        const char *why = *out ? duckdb_extract_statements_error(*out) : NULL;
        if (why != NULL && why[0] != '\0')
            agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", why);
        else
            agnes_error_set(err, AGNES_ERR_INVALID, "The query is empty. Send one SELECT statement in \"sql\".");
    }
    return count;
}

/* Is the text one query expression, whatever DuckDB made of it?  Wrapped as
 * "SELECT * FROM (<text>)" it still splits into `count` statements only if
 * the text was one PIVOT (its type statements come first): a semicolon
 * between statements would have to sit inside the parentheses, which does
 * not parse.  Used when a PIVOT's type statement does not bind (a column
 * that does not exist), where the EXPLAIN test below cannot tell. */
static bool one_query_expression(duckdb_connection conn, const char *sql, idx_t count)
{
    size_t length = strlen(sql);
    while (length > 0 && (isspace((unsigned char)sql[length - 1]) || sql[length - 1] == ';'))
        length--;
    strbuf text;
    strbuf_init(&text);
    strbuf_append_str(&text, "SELECT * FROM (");
    strbuf_append(&text, sql, length);
    strbuf_append_str(&text, "\n)"); /* the newline ends a trailing -- comment */
    duckdb_extracted_statements statements = NULL;
    agnes_error ignored;
    bool one = !strbuf_failed(&text) && extract(conn, text.data, &statements, &ignored) == count;
    if (statements != NULL)
        duckdb_destroy_extracted(&statements);
    strbuf_free(&text);
    return one;
}

/* Is the text one PIVOT that DuckDB splits into CREATE TYPE ... + SELECT?
 * Prefixed with EXPLAIN, a PIVOT's type statements still come first and
 * the EXPLAIN lands on its SELECT; text that really holds several
 * statements puts the EXPLAIN on its first one instead.  AGNES_OK when it
 * is a PIVOT, else the refusal (a PIVOT of a missing table is refused as
 * missing, like any other statement naming one). */
static int check_pivot_shape(duckdb_connection conn, const char *sql, idx_t count, agnes_error *err)
{
    strbuf text;
    strbuf_init(&text);
    strbuf_append_str(&text, PREFIX_EXPLAIN);
    strbuf_append_str(&text, sql);
    duckdb_extracted_statements statements = NULL;
    agnes_error ignored;
    bool pivot = !strbuf_failed(&text) && extract(conn, text.data, &statements, &ignored) == count;
    int rc = AGNES_OK;
    bool unbound = false;
    for (idx_t i = 0; pivot && !unbound && rc == AGNES_OK && i + 1 < count; i++) {
        duckdb_prepared_statement prepared = NULL;
        char name[200];
        if (duckdb_prepare_extracted_statement(conn, statements, i, &prepared) != DuckDBSuccess) {
            const char *why = duckdb_prepare_error(prepared);
            if (why != NULL && query_guard_missing_name(why, name, sizeof name))
                rc = query_guard_missing(name, err);
            else
                unbound = true; /* check_pivot says why, in the caller's sandbox */
        } else {
            pivot = duckdb_prepared_statement_type(prepared) == DUCKDB_STATEMENT_TYPE_CREATE;
        }
        duckdb_destroy_prepare(&prepared);
    }
    if (statements != NULL)
        duckdb_destroy_extracted(&statements);
    strbuf_free(&text);
    if (rc == AGNES_OK && unbound)
        pivot = one_query_expression(conn, sql, count);
    if (rc == AGNES_OK && !pivot)
        rc = refuse_count(count, err);
    return rc;
}

int query_guard_split(duckdb_connection conn, const char *sql, query_statements *out, agnes_error *err)
{
    memset(out, 0, sizeof *out);
    size_t length = strlen(sql);
    if (length > QUERY_GUARD_MAX_SQL)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "The query is %zu characters long; the limit is %d. Shorten it (e.g. move long IN "
                               "lists into a join).",
                               length, QUERY_GUARD_MAX_SQL);
    out->count = extract(conn, sql, &out->extracted, err);
    if (out->count == 0) {
        query_guard_statements_free(out);
        return err->code;
    }
    if (out->count > 1) {
        int rc = check_pivot_shape(conn, sql, out->count, err);
        if (rc != AGNES_OK) {
            query_guard_statements_free(out);
            return rc;
        }
        out->pivot = true;
    }
    return AGNES_OK;
}

int query_guard_check_prepared(duckdb_prepared_statement statement, agnes_error *err)
{
    if (duckdb_prepared_statement_type(statement) != DUCKDB_STATEMENT_TYPE_SELECT)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Only SELECT queries are allowed (this statement changes or inspects the database). "
                               "Rewrite it as a SELECT.");
    return AGNES_OK;
}

/* ---- the bound plan ---------------------------------------------------------- */

/* Logical operators a SELECT's plan can start with.  Anything else (a COPY,
 * an EXPORT, a SET) is a statement of another type. */
static bool is_select_root(const char *type)
{
    static const char *const roots[] = {
        "LOGICAL_PROJECTION", "LOGICAL_FILTER", "LOGICAL_AGGREGATE_AND_GROUP_BY", "LOGICAL_WINDOW",
        "LOGICAL_UNNEST", "LOGICAL_LIMIT", "LOGICAL_ORDER_BY", "LOGICAL_TOP_N", "LOGICAL_DISTINCT",
        "LOGICAL_SAMPLE", "LOGICAL_PIVOT", "LOGICAL_GET", "LOGICAL_CHUNK_GET", "LOGICAL_EXPRESSION_GET",
        "LOGICAL_DUMMY_SCAN", "LOGICAL_EMPTY_RESULT", "LOGICAL_CTE_REF", "LOGICAL_JOIN", "LOGICAL_DELIM_JOIN",
        "LOGICAL_COMPARISON_JOIN", "LOGICAL_ANY_JOIN", "LOGICAL_CROSS_PRODUCT", "LOGICAL_POSITIONAL_JOIN",
        "LOGICAL_ASOF_JOIN", "LOGICAL_DEPENDENT_JOIN", "LOGICAL_UNION", "LOGICAL_EXCEPT", "LOGICAL_INTERSECT",
        "LOGICAL_RECURSIVE_CTE", "LOGICAL_MATERIALIZED_CTE"};
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
        if (strcmp(type, roots[i]) == 0)
            return true;
    return false;
}

/* Is sql (one statement) a SELECT?  Asked of the parser only: binding is
 * not needed to know, and may fail for reasons the caller should not see. */
static bool parses_as_select(duckdb_connection conn, const char *sql)
{
    duckdb_result result;
    const char *params[] = {sql};
    agnes_error ignored;
    if (duck_query_params(conn, "SELECT json_serialize_sql($1::VARCHAR)", params, 1, &result, &ignored) != AGNES_OK)
        return false;
    char *text = duckdb_value_varchar(&result, 0, 0);
    duckdb_destroy_result(&result);
    bool select = text != NULL && strstr(text, "Only SELECT statements can be serialized") == NULL;
    duckdb_free(text);
    return select;
}

static int refuse_statement_type(agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_INVALID,
                           "Only SELECT queries are allowed (this statement changes or inspects the database). "
                           "Rewrite it as a SELECT.");
}

typedef struct walk_state {
    const query_guard_policy *policy;
    agnes_error *err;
} walk_state;

static int check_read(walk_state *st, const char *table)
{
    if (!in_names(st->policy->visible, table))
        return query_guard_missing(table, st->err);
    const char *reason = json_string_value(json_object_get(st->policy->unservable, table));
    if (reason == NULL) { /* names in unservable are as the catalog spells them */
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)st->policy->unservable, key, value) {
            if (strcasecmp(key, table) == 0)
                reason = json_string_value(value);
        }
    }
    return reason != NULL ? refuse_unservable(table, reason, st->err) : AGNES_OK;
}

static int check_get(walk_state *st, const json_t *get)
{
    const char *name = string_field(get, "name");
    if (strcmp(name, QUERY_PROBE_FUNCTION) == 0) {
        const json_t *first = json_array_get(json_object_get(get, "parameters"), 0);
        return check_read(st, string_field(first, "value"));
    }
    for (size_t i = 0; i < sizeof allowed_table_functions / sizeof allowed_table_functions[0]; i++)
        if (strcasecmp(name, allowed_table_functions[i]) == 0)
            return AGNES_OK;
    return refuse_table_function(name[0] ? name : "?", st->err);
}

static bool is_denied_function(const char *name)
{
    for (size_t i = 0; i < sizeof denied_functions / sizeof denied_functions[0]; i++)
        if (strcasecmp(name, denied_functions[i]) == 0)
            return true;
    return false;
}

static int walk_plan(walk_state *st, const json_t *node)
{
    size_t i;
    json_t *child;
    const char *key;
    if (json_is_array(node)) {
        json_array_foreach(node, i, child) {
            if (walk_plan(st, child) != AGNES_OK)
                return st->err->code;
        }
        return AGNES_OK;
    }
    if (!json_is_object(node))
        return AGNES_OK;
    int rc = AGNES_OK;
    if (strcmp(string_field(node, "type"), "LOGICAL_GET") == 0)
        rc = check_get(st, node);
    else if (json_object_get(node, "expression_class") != NULL && is_denied_function(string_field(node, "name")))
        rc = refuse_function(string_field(node, "name"), st->err);
    if (rc != AGNES_OK)
        return rc;
    json_object_foreach((json_t *)node, key, child) {
        if (walk_plan(st, child) != AGNES_OK)
            return st->err->code;
    }
    return AGNES_OK;
}

/* The bound plan as JSON.  Nulls, empty lists and defaults are left out:
 * nothing the guard reads is any of those, and the plan is about half the
 * size to write and to parse. */
static char *serialize_plan(duckdb_connection conn, const char *sql, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {sql};
    if (duck_query_params(conn,
                          "SELECT json_serialize_plan($1::VARCHAR, skip_null := true, skip_empty := true, "
                          "skip_default := true)",
                          params, 1, &result, err) != AGNES_OK)
        return NULL;
    char *text = duckdb_value_varchar(&result, 0, 0);
    duckdb_destroy_result(&result);
    if (text == NULL)
        agnes_error_set(err, AGNES_ERR_DB, "json_serialize_plan returned nothing");
    return text;
}

static bool refuse_missing(const json_t *tree, const char *sql, agnes_error *err);

static int check_single(query_probe *probe, const char *sql, const query_guard_policy *policy, bool *explain,
                        agnes_error *err)
{
    duckdb_connection conn = probe->connection;
    json_t *tree = NULL;
    json_decref(query_probe_take_log(probe));
    char *text = serialize_plan(conn, sql, err);
    /* Every catalog table the binder touched, whether or not the plan still
     * reads it (DESCRIBE answers from the binding alone). */
    json_t *bound = query_probe_take_log(probe);
    walk_state st = {.policy = policy, .err = err};
    int rc = text != NULL ? query_guard_load_tree(text, &tree, err) : err->code;
    duckdb_free(text);
    /* The common case needs no second look: a plan that starts like a
     * SELECT's.  Otherwise ask the parser what the statement is. */
    bool plain = rc == AGNES_OK && !json_is_true(json_object_get(tree, "error")) &&
                 is_select_root(string_field(json_array_get(json_object_get(tree, "plans"), 0), "type"));
    if (!plain && !parses_as_select(conn, sql)) {
        json_decref(tree);
        json_decref(bound);
        return refuse_statement_type(err);
    }
    size_t i;
    json_t *name;
    json_array_foreach(bound, i, name) {
        if (check_read(&st, json_string_value(name)) != AGNES_OK) {
            json_decref(bound);
            json_decref(tree);
            return err->code;
        }
    }
    json_decref(bound);
    if (rc != AGNES_OK) {
        /* DuckDB could not even write its error (a message quoting half a
         * UTF-8 character comes back empty): let the sandbox say it. */
        *explain = true;
        return rc;
    }
    if (json_is_true(json_object_get(tree, "error"))) {
        const char *type = string_field(tree, "error_type");
        if (strcmp(type, "permission") == 0) {
            rc = refuse_file(err);
        } else if (strcmp(string_field(tree, "error_subtype"), "MISSING_ENTRY") == 0 &&
                   strcmp(string_field(tree, "type"), "Table Function") == 0) {
            rc = refuse_table_function(string_field(tree, "name"), err);
        } else if (refuse_missing(tree, sql, err)) {
            /* Missing from the whole catalog: the name is the caller's own. */
            rc = AGNES_ERR_FORBIDDEN;
        } else if (strncmp(string_field(tree, "error_message"), "Table Function with name \"", 26) == 0) {
            /* one that lives in an extension the probe does not load */
            char function[128];
            const char *start = string_field(tree, "error_message") + 26, *end = strchr(start, '"');
            snprintf(function, sizeof function, "%.*s", end ? (int)(end - start) : 0, start);
            rc = refuse_table_function(function[0] ? function : "?", err);
        } else {
            /* Say nothing from the probe: it knows every table's name. */
            *explain = true;
            rc = agnes_error_set(err, AGNES_ERR_DB, "%s", string_field(tree, "error_message"));
        }
    } else {
        rc = walk_plan(&st, json_object_get(tree, "plans"));
    }
    json_decref(tree);
    return rc;
}

/* ---- PIVOT: the plan of statements DuckDB made itself --------------------------- */

static int walk_physical(walk_state *st, const json_t *node)
{
    size_t i;
    json_t *child;
    const char *key;
    if (json_is_array(node)) {
        json_array_foreach(node, i, child) {
            if (walk_physical(st, child) != AGNES_OK)
                return st->err->code;
        }
        return AGNES_OK;
    }
    if (json_is_string(node)) {
        /* Expressions are text here ("current_setting('x')"). */
        char lowered[512];
        snprintf(lowered, sizeof lowered, "%s", json_string_value(node));
        for (char *p = lowered; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        for (size_t k = 0; k < sizeof denied_functions / sizeof denied_functions[0]; k++) {
            char call[64];
            snprintf(call, sizeof call, "%s(", denied_functions[k]);
            if (strstr(lowered, call) != NULL)
                return refuse_function(denied_functions[k], st->err);
        }
        return AGNES_OK;
    }
    if (!json_is_object(node))
        return AGNES_OK;
    const json_t *extra = json_object_get(node, "extra_info");
    const char *function = string_field(extra, "Function");
    const char *operator = string_field(node, "name");
    if (function[0] != '\0' && strcasecmp(function, QUERY_PROBE_FUNCTION) != 0) {
        bool allowed = false;
        for (size_t k = 0; k < sizeof allowed_table_functions / sizeof allowed_table_functions[0]; k++)
            allowed = allowed || strcasecmp(function, allowed_table_functions[k]) == 0;
        if (!allowed)
            return refuse_table_function(function, st->err);
    } else if (strncmp(operator, "SEQ_SCAN", 8) == 0) {
        return refuse_table_function(string_field(extra, "Table"), st->err);
    }
    json_object_foreach((json_t *)node, key, child) {
        if (walk_physical(st, child) != AGNES_OK)
            return st->err->code;
    }
    return AGNES_OK;
}

/* Run "EXPLAIN (FORMAT JSON) <sql>" on a fresh probe connection: its type
 * statements build (empty) enums there, then the EXPLAIN binds the SELECT.
 * The probe's log names every catalog table any of them bound. */
static int check_pivot(query_probe *probe, const char *sql, const query_guard_policy *policy, agnes_error *err)
{
    duckdb_connection conn = NULL;
    duckdb_extracted_statements statements = NULL;
    duckdb_result result;
    bool have_result = false;
    strbuf text;
    strbuf_init(&text);
    strbuf_append_str(&text, PREFIX_EXPLAIN);
    strbuf_append_str(&text, sql);
    json_decref(query_probe_take_log(probe));
    int rc = AGNES_OK;
    if (strbuf_failed(&text))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    else
        rc = query_probe_connect(probe, &conn, err);
    idx_t count = rc == AGNES_OK ? extract(conn, text.data, &statements, err) : 0;
    if (rc == AGNES_OK && count == 0)
        rc = err->code;
    for (idx_t i = 0; rc == AGNES_OK && i < count; i++) {
        duckdb_prepared_statement prepared = NULL;
        char name[200];
        if (duckdb_prepare_extracted_statement(conn, statements, i, &prepared) != DuckDBSuccess) {
            const char *why = duckdb_prepare_error(prepared);
            rc = why != NULL && query_guard_missing_name(why, name, sizeof name)
                     ? query_guard_missing(name, err)
                     : agnes_error_set(err, AGNES_ERR_DB, "%s", why ? why : "the PIVOT does not bind");
        } else if (duckdb_prepared_statement_type(prepared) !=
                   (i + 1 < count ? DUCKDB_STATEMENT_TYPE_CREATE : DUCKDB_STATEMENT_TYPE_EXPLAIN)) {
            rc = refuse_count(count, err);
        } else {
            if (have_result)
                duckdb_destroy_result(&result);
            have_result = true;
            if (duckdb_execute_prepared(prepared, &result) != DuckDBSuccess) {
                const char *why = duckdb_result_error(&result);
                rc = why != NULL && query_guard_missing_name(why, name, sizeof name)
                         ? query_guard_missing(name, err)
                         : agnes_error_set(err, AGNES_ERR_DB, "%s", why ? why : "the PIVOT does not run");
            }
        }
        duckdb_destroy_prepare(&prepared);
    }
    json_t *bound = query_probe_take_log(probe);
    walk_state st = {.policy = policy, .err = err};
    size_t i;
    json_t *name;
    if (rc == AGNES_OK) {
        json_array_foreach(bound, i, name) {
            if ((rc = check_read(&st, json_string_value(name))) != AGNES_OK)
                break;
        }
    }
    if (rc == AGNES_OK) {
        char *key = duckdb_value_varchar(&result, 0, 0), *plan = duckdb_value_varchar(&result, 1, 0);
        json_t *tree = NULL;
        rc = key != NULL && plan != NULL && strcmp(key, "physical_plan") == 0
                 ? query_guard_load_tree(plan, &tree, err)
                 : agnes_error_set(err, AGNES_ERR_DB, "the PIVOT's plan could not be read");
        if (rc == AGNES_OK)
            rc = walk_physical(&st, tree);
        json_decref(tree);
        duckdb_free(key);
        duckdb_free(plan);
    }
    json_decref(bound);
    if (have_result)
        duckdb_destroy_result(&result);
    if (statements != NULL)
        duckdb_destroy_extracted(&statements);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    strbuf_free(&text);
    return rc;
}

int query_guard_check(query_probe *probe, const char *sql, bool pivot, const query_guard_policy *policy,
                      bool *explain, agnes_error *err)
{
    *explain = false;
    if (pivot) {
        int rc = check_pivot(probe, sql, policy, err);
        if (rc == AGNES_ERR_DB)
            *explain = true;
        return rc;
    }
    return check_single(probe, sql, policy, explain, err);
}

/* ---- explaining a statement that does not bind -------------------------------------- */

/* The (possibly qualified, possibly quoted) name that starts at offset
 * `position` of sql, as the caller wrote it. */
static void name_at(const char *sql, long position, const char *fallback, char *out, size_t out_size)
{
    size_t n = 0, length = strlen(sql);
    if (position < 0 || (size_t)position >= length) {
        snprintf(out, out_size, "%s", fallback);
        return;
    }
    const char *p = sql + position;
    while (*p != '\0' && n + 1 < out_size) {
        if (*p == '"') {
            p++;
            while (*p != '\0' && n + 1 < out_size) {
                if (*p == '"' && p[1] == '"')
                    p++;
                else if (*p == '"')
                    break;
                out[n++] = *p++;
            }
            if (*p == '"')
                p++;
        } else if (isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80) {
            out[n++] = *p++;
        } else if (*p == '.' && n > 0) {
            out[n++] = *p++;
        } else {
            break;
        }
    }
    out[n] = '\0';
    if (n == 0)
        snprintf(out, out_size, "%s", fallback);
    query_utf8_truncate(out, out_size);
}

/* A "does not exist" for a table, schema or catalog: the one sentence for
 * missing and hidden tables, naming what the caller wrote. */
static bool refuse_missing(const json_t *tree, const char *sql, agnes_error *err)
{
    const char *type = string_field(tree, "error_type"), *message = string_field(tree, "error_message");
    const char *subtype = string_field(tree, "error_subtype"), *what = string_field(tree, "type");
    const char *position = string_field(tree, "position");
    bool missing_table = strcmp(subtype, "MISSING_ENTRY") == 0 &&
                         (strcmp(what, "Table") == 0 || strcmp(what, "Schema") == 0 || strcmp(what, "Catalog") == 0);
    bool missing_catalog = strcmp(type, "binder") == 0 && strncmp(message, "Catalog \"", 9) == 0 &&
                           strstr(message, "does not exist") != NULL;
    if (!missing_table && !missing_catalog)
        return false;
    char name[200];
    /* The bare name, as a hidden table's refusal gives it; a whole missing
     * catalog ("Catalog x does not exist") has none. */
    long at = position[0] ? atol(position) : -1;
    if (at < 0 && missing_catalog) {
        /* No position: find the catalog as the caller wrote it ("demo.main.t"),
         * so the sentence names their whole name rather than "?". */
        char catalog[128];
        const char *start = message + 9, *end = strchr(start, '"');
        if (end != NULL && (size_t)(end - start) < sizeof catalog) {
            snprintf(catalog, sizeof catalog, "%.*s", (int)(end - start), start);
            size_t n = strlen(catalog);
            for (const char *p = sql; *p != '\0' && at < 0; p++) {
                if (strncasecmp(p, catalog, n) == 0 && p[n] == '.')
                    at = (long)(p - sql);
                else if (*p == '"' && strncasecmp(p + 1, catalog, n) == 0 && p[n + 1] == '"' && p[n + 2] == '.')
                    at = (long)(p - sql);
            }
        }
    }
    if (string_field(tree, "name")[0] != '\0')
        snprintf(name, sizeof name, "%s", string_field(tree, "name"));
    else
        name_at(sql, at, "?", name, sizeof name);
    query_guard_missing(name[0] ? name : "?", err);
    return true;
}

int query_guard_explain(duckdb_connection conn, const char *sql, const char *fallback, agnes_error *err)
{
    json_t *tree = NULL;
    agnes_error ignored;
    char *text = serialize_plan(conn, sql, &ignored);
    int rc;
    if (text == NULL || query_guard_load_tree(text, &tree, &ignored) != AGNES_OK) {
        /* No description of the failure: the engine's own message. */
        duckdb_prepared_statement prepared = NULL;
        if (duckdb_prepare(conn, sql, &prepared) != DuckDBSuccess) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", duckdb_prepare_error(prepared));
            query_utf8_truncate(err->message, sizeof err->message);
            query_utf8_sanitize(err->message);
        } else {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", fallback);
        }
        duckdb_destroy_prepare(&prepared);
    } else if (!json_is_true(json_object_get(tree, "error"))) {
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                             "The query could not be checked against your grants, so it did not run: it reads "
                             "something other than the catalog's tables by name. GET /api/catalog/tables lists the "
                             "tables you can query.");
    } else {
        const char *type = string_field(tree, "error_type"), *message = string_field(tree, "error_message");
        if (refuse_missing(tree, sql, err)) {
            rc = AGNES_ERR_FORBIDDEN;
        } else if (strcmp(type, "permission") == 0) {
            rc = refuse_file(err);
        } else {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", message[0] ? message : fallback);
        }
    }
    json_decref(tree);
    duckdb_free(text);
    return rc;
}

int query_guard_explain_pivot(duckdb_connection conn, const char *sql, agnes_error *err)
{
    duckdb_extracted_statements statements = NULL;
    idx_t count = extract(conn, sql, &statements, err);
    int rc = count == 0 ? err->code : AGNES_OK;
    bool failed = false;
    for (idx_t i = 0; rc == AGNES_OK && !failed && i < count; i++) {
        duckdb_prepared_statement prepared = NULL;
        duckdb_result result;
        const char *why = NULL;
        bool have_result = false;
        if (duckdb_prepare_extracted_statement(conn, statements, i, &prepared) != DuckDBSuccess) {
            why = duckdb_prepare_error(prepared);
        } else if (i + 1 < count) {
            have_result = true;
            if (duckdb_execute_prepared(prepared, &result) != DuckDBSuccess)
                why = duckdb_result_error(&result);
        }
        if (why != NULL) {
            char name[200];
            failed = true;
            if (query_guard_missing_name(why, name, sizeof name)) {
                rc = query_guard_missing(name, err);
            } else {
                rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", why);
                query_utf8_truncate(err->message, sizeof err->message);
                query_utf8_sanitize(err->message);
            }
        }
        if (have_result)
            duckdb_destroy_result(&result);
        duckdb_destroy_prepare(&prepared);
    }
    if (rc == AGNES_OK)
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "Query error: the PIVOT could not be prepared. Check its ON, USING and GROUP BY "
                             "columns against GET /api/catalog/tables/{id}.");
    if (statements != NULL)
        duckdb_destroy_extracted(&statements);
    return rc;
}
