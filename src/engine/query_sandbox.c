#include "engine/query_sandbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "core/util.h"
#include "engine/postgres_query.h"
#include "engine/query_guard.h"
#include "engine/query_protocol.h"
#include "store/duck.h"

/* ---- description (server side) ----------------------------------------- */

/* Table functions a view may read through without the sandbox needing
 * anything for them: they read no file and no catalog. */
static bool is_generator(const char *name)
{
    static const char *const generators[] = {"range", "generate_series", "unnest"};
    for (size_t i = 0; i < sizeof generators / sizeof generators[0]; i++)
        if (strcasecmp(name, generators[i]) == 0)
            return true;
    return false;
}

static const char *text_or(const char *text, const char *fallback)
{
    return text != NULL ? text : fallback;
}

static const char *param_text(const json_t *get, size_t index)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(get, "parameters"), index), "value"));
}

/* Record what one LOGICAL_GET of a view's plan reads into `table`. */
static void footprint_get(const json_t *get, json_t *table)
{
    const char *name = json_string_value(json_object_get(get, "name"));
    const json_t *files = json_object_get(json_object_get(get, "function_data"), "files");
    size_t i;
    json_t *file;
    if (name == NULL)
        name = "?";
    if (json_is_array(files) && json_array_size(files) > 0) {
        json_array_foreach(files, i, file) {
            if (json_is_string(file))
                json_array_append(json_object_get(table, "files"), file);
        }
    } else if (strcmp(name, "postgres_query") == 0 && param_text(get, 0) && param_text(get, 1)) {
        json_array_append_new(json_object_get(table, "remote"),
                              json_pack("[s, s]", param_text(get, 0), param_text(get, 1)));
    } else if (strcmp(name, "seq_scan") == 0) {
        json_object_set_new(table, "unservable",
                            json_string("it is stored as a table inside its extract.duckdb; the connector should "
                                        "publish it as a view over Parquet files"));
    } else if (!is_generator(name)) {
        char why[256];
        snprintf(why, sizeof why, "its view reads %s(), which a sandbox cannot offer", name);
        json_object_set_new(table, "unservable", json_string(why));
    }
}

static void footprint_walk(const json_t *node, json_t *table)
{
    size_t i;
    json_t *child;
    const char *key;
    if (json_is_array(node)) {
        json_array_foreach(node, i, child)
            footprint_walk(child, table);
        return;
    }
    if (!json_is_object(node))
        return;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (type != NULL && strcmp(type, "LOGICAL_GET") == 0)
        footprint_get(node, table);
    json_object_foreach((json_t *)node, key, child)
        footprint_walk(child, table);
}

/* files/remote/unservable of one catalog view, from its bound plan. */
static void describe_footprint(duckdb_connection catalog, const char *name, json_t *table)
{
    strbuf sql;
    duckdb_result result;
    agnes_error err;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT * FROM ");
    duck_append_identifier(&sql, name);
    const char *params[] = {sql.data ? sql.data : ""};
    char *text = NULL;
    json_t *plan = NULL;
    if (!strbuf_failed(&sql) &&
        duck_query_params(catalog, "SELECT json_serialize_plan($1::VARCHAR)", params, 1, &result, &err) == AGNES_OK) {
        text = duckdb_value_varchar(&result, 0, 0);
        duckdb_destroy_result(&result);
    }
    strbuf_free(&sql);
    if (text != NULL && query_guard_load_tree(text, &plan, &err) == AGNES_OK &&
        !json_is_true(json_object_get(plan, "error"))) {
        footprint_walk(json_object_get(plan, "plans"), table);
    } else {
        char why[AGNES_ERROR_MESSAGE_MAX];
        const char *message = plan ? json_string_value(json_object_get(plan, "error_message")) : NULL;
        snprintf(why, sizeof why, "its view cannot be described (%s)", message ? message : "no plan");
        query_utf8_truncate(why, 300);
        json_object_set_new(table, "unservable", json_string(why));
    }
    json_decref(plan);
    duckdb_free(text);
}

int query_sandbox_describe(duckdb_connection catalog, const json_t *tables, json_t **out, agnes_error *err)
{
    json_t *columns = NULL, *views = NULL, *description = json_array();
    *out = NULL;
    if (description == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (duck_query_json(catalog,
                        "SELECT table_name AS t, column_name AS c, data_type AS type FROM duckdb_columns()"
                        " WHERE database_name = current_database() AND schema_name = 'main'"
                        " ORDER BY table_name, column_index",
                        NULL, 0, &columns, err) != AGNES_OK ||
        duck_query_json(catalog,
                        "SELECT database_name AS source, lower(view_name) AS name, sql FROM duckdb_views()"
                        " WHERE NOT internal AND schema_name = 'main' AND database_name <> current_database()",
                        NULL, 0, &views, err) != AGNES_OK) {
        json_decref(columns);
        json_decref(description);
        return err->code;
    }
    size_t i, j;
    json_t *table, *row;
    json_array_foreach(tables, i, table) {
        const char *name = json_string_value(json_object_get(table, "id"));
        const char *source = json_string_value(json_object_get(table, "source_type"));
        if (name == NULL)
            continue;
        json_t *entry = json_pack("{s:s, s:[], s:[], s:[]}", "name", name, "columns", "files", "remote");
        if (entry == NULL)
            continue;
        json_array_foreach(columns, j, row) {
            if (strcmp(text_or(json_string_value(json_object_get(row, "t")), ""), name) == 0)
                json_array_append_new(json_object_get(entry, "columns"),
                                      json_pack("[O, O]", json_object_get(row, "c"), json_object_get(row, "type")));
        }
        json_array_foreach(views, j, row) {
            if (source != NULL && strcmp(text_or(json_string_value(json_object_get(row, "source")), ""), source) == 0 &&
                strcasecmp(text_or(json_string_value(json_object_get(row, "name")), ""), name) == 0)
                json_object_set(entry, "view", json_object_get(row, "sql"));
        }
        describe_footprint(catalog, name, entry);
        if (json_object_get(entry, "view") == NULL && json_object_get(entry, "unservable") == NULL)
            json_object_set_new(entry, "unservable",
                                json_string("it is stored as a table inside its extract.duckdb; the connector should "
                                            "publish it as a view over Parquet files"));
        json_array_append_new(description, entry);
    }
    json_decref(columns);
    json_decref(views);
    *out = description;
    return AGNES_OK;
}

/* Names are case-insensitive: keys lower-cased (ASCII, as identifiers are). */
static void lowered(const char *name, char *out, size_t out_size)
{
    size_t i = 0;
    for (; name[i] != '\0' && i + 1 < out_size; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
}

json_t *query_sandbox_name_set(const json_t *names)
{
    json_t *set = json_object();
    size_t i;
    json_t *name;
    char key[256];
    json_array_foreach(names, i, name) {
        if (set != NULL && json_is_string(name)) {
            lowered(json_string_value(name), key, sizeof key);
            json_object_set(set, key, json_true());
        }
    }
    return set;
}

bool query_sandbox_in_set(const json_t *set, const char *name)
{
    char key[256];
    lowered(name, key, sizeof key);
    return json_object_get(set, key) != NULL;
}

json_t *query_sandbox_for_grants(const json_t *description, const json_t *visible)
{
    json_t *out = json_array(), *set = query_sandbox_name_set(visible);
    size_t i;
    json_t *table;
    if (out == NULL || set == NULL) {
        json_decref(out);
        json_decref(set);
        return NULL;
    }
    json_array_foreach(description, i, table) {
        const char *name = json_string_value(json_object_get(table, "name"));
        json_t *entry = query_sandbox_in_set(set, name ? name : "")
                            ? json_deep_copy(table)
                            : json_pack("{s:O, s:O}", "name", json_object_get(table, "name"), "columns",
                                        json_object_get(table, "columns"));
        if (entry == NULL || json_array_append_new(out, entry) != 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
    json_decref(set);
    return out;
}

/* ---- helpers ------------------------------------------------------------- */

/* Run one statement (never several: prepare refuses more than one). */
static int exec_one(duckdb_connection conn, const char *sql, agnes_error *err)
{
    duckdb_prepared_statement statement = NULL;
    duckdb_result result;
    int rc = AGNES_OK;
    if (duckdb_prepare(conn, sql, &statement) != DuckDBSuccess) {
        rc = agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_prepare_error(statement));
    } else if (duckdb_execute_prepared(statement, &result) != DuckDBSuccess) {
        rc = agnes_error_set(err, AGNES_ERR_DB, "%s", duckdb_result_error(&result));
        duckdb_destroy_result(&result);
    } else {
        duckdb_destroy_result(&result);
    }
    duckdb_destroy_prepare(&statement);
    return rc;
}

/* ---- the probe ------------------------------------------------------------ */

static void probe_log_free(void *data)
{
    query_probe_log *log = data;
    pthread_mutex_destroy(&log->lock);
    json_decref(log->names);
    free(log);
}

static void probe_bind(duckdb_bind_info info)
{
    query_probe_log *log = duckdb_bind_get_extra_info(info);
    duckdb_value value = duckdb_bind_get_parameter(info, 0);
    char *name = value && !duckdb_is_null_value(value) ? duckdb_get_varchar(value) : NULL;
    duckdb_destroy_value(&value);
    pthread_mutex_lock(&log->lock);
    json_array_append_new(log->names, json_string(name ? name : ""));
    pthread_mutex_unlock(&log->lock);
    duckdb_free(name);
    duckdb_logical_type boolean = duckdb_create_logical_type(DUCKDB_TYPE_BOOLEAN);
    duckdb_bind_add_result_column(info, "__agnes_probe", boolean);
    duckdb_destroy_logical_type(&boolean);
    duckdb_bind_set_cardinality(info, 1, true);
}

static void probe_init(duckdb_init_info info)
{
    (void)info;
}

/* The probe is bound, never meant to be read: it has no rows. */
static void probe_scan(duckdb_function_info info, duckdb_data_chunk output)
{
    (void)info;
    duckdb_data_chunk_set_size(output, 0);
}

static int register_probe(duckdb_connection conn, query_probe_log *log, agnes_error *err)
{
    duckdb_table_function function = duckdb_create_table_function();
    duckdb_logical_type varchar = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
    duckdb_table_function_set_name(function, QUERY_PROBE_FUNCTION);
    duckdb_table_function_add_parameter(function, varchar);
    duckdb_table_function_set_extra_info(function, log, probe_log_free);
    duckdb_table_function_set_bind(function, probe_bind);
    duckdb_table_function_set_init(function, probe_init);
    duckdb_table_function_set_function(function, probe_scan);
    int rc = duckdb_register_table_function(conn, function) == DuckDBSuccess
                 ? AGNES_OK
                 : agnes_error_set(err, AGNES_ERR_DB, "cannot register the probe function");
    duckdb_destroy_table_function(&function);
    duckdb_destroy_logical_type(&varchar);
    return rc;
}

/* CREATE VIEW "t" AS SELECT CAST(NULL AS type) AS "c", ... FROM __agnes_table('t') */
static void probe_view_sql(const json_t *table, bool all_text, strbuf *sql)
{
    const char *name = json_string_value(json_object_get(table, "name"));
    size_t i;
    json_t *column;
    strbuf_reset(sql);
    strbuf_append_str(sql, "CREATE OR REPLACE VIEW ");
    duck_append_identifier(sql, name);
    strbuf_append_str(sql, " AS SELECT ");
    json_array_foreach(json_object_get(table, "columns"), i, column) {
        const char *type = json_string_value(json_array_get(column, 1));
        strbuf_append_str(sql, i ? ", CAST(NULL AS " : "CAST(NULL AS ");
        strbuf_append_str(sql, all_text || type == NULL ? "VARCHAR" : type);
        strbuf_append_str(sql, ") AS ");
        duck_append_identifier(sql, text_or(json_string_value(json_array_get(column, 0)), "?"));
    }
    if (json_array_size(json_object_get(table, "columns")) == 0)
        strbuf_append_str(sql, "NULL AS \"?\"");
    strbuf_append_str(sql, " FROM " QUERY_PROBE_FUNCTION "(");
    duck_append_literal(sql, name);
    strbuf_append_char(sql, ')');
}

static int new_probe_log(query_probe_log **out, agnes_error *err)
{
    query_probe_log *log = calloc(1, sizeof *log);
    *out = NULL;
    if (log == NULL || (log->names = json_array()) == NULL || pthread_mutex_init(&log->lock, NULL) != 0) {
        if (log)
            json_decref(log->names);
        free(log);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    *out = log;
    return AGNES_OK;
}

/* Register the stand-in function on conn's database; it owns log. */
static int register_probe_owned(duckdb_connection conn, agnes_error *err, query_probe_log **kept)
{
    query_probe_log *log = NULL;
    if (new_probe_log(&log, err) != AGNES_OK)
        return err->code;
    int rc = register_probe(conn, log, err);
    if (rc != AGNES_OK)
        probe_log_free(log);
    else if (kept != NULL)
        *kept = log;
    return rc;
}

/* The probe's views, in a catalog named "server" (as the admin engine's and
 * the sandbox's are), so server.main.<t> binds the same everywhere. */
static int build_probe(duckdb_connection conn, const json_t *description, agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    int rc = duck_exec(conn, "ATTACH ':memory:' AS server; USE server", err);
    size_t i;
    json_t *table;
    json_array_foreach(description, i, table) {
        if (rc != AGNES_OK)
            break;
        agnes_error ignored;
        probe_view_sql(table, false, &sql);
        if (!strbuf_failed(&sql) && exec_one(conn, sql.data, &ignored) == AGNES_OK)
            continue;
        probe_view_sql(table, true, &sql); /* a type only its extract knows */
        if (strbuf_failed(&sql))
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        else if ((rc = exec_one(conn, sql.data, err)) != AGNES_OK)
            agnes_error_wrap(err, "cannot build the query guard's view of table %s",
                             json_string_value(json_object_get(table, "name")));
    }
    strbuf_free(&sql);
    return rc;
}

int query_probe_connect(query_probe *probe, duckdb_connection *out, agnes_error *err)
{
    if (duckdb_connect(probe->database, out) != DuckDBSuccess) {
        *out = NULL;
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the probe");
    }
    if (duck_exec(*out, "USE server", err) != AGNES_OK) {
        duckdb_disconnect(out);
        return err->code;
    }
    return AGNES_OK;
}

int query_probe_open(const json_t *description, query_probe *probe, agnes_error *err)
{
    duckdb_connection conn = NULL;
    duckdb_config config = NULL;
    char *open_error = NULL;
    memset(probe, 0, sizeof *probe);
    if (duckdb_create_config(&config) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a DuckDB configuration");
    duckdb_set_config(config, "autoinstall_known_extensions", "false");
    duckdb_set_config(config, "autoload_known_extensions", "false");
    duckdb_set_config(config, "threads", "1");
    int rc = duckdb_open_ext(NULL, &probe->database, config, &open_error) == DuckDBSuccess
                 ? AGNES_OK
                 : agnes_error_set(err, AGNES_ERR_DB, "cannot open the probe: %s", open_error ? open_error : "?");
    duckdb_free(open_error);
    duckdb_destroy_config(&config);
    if (rc == AGNES_OK && duckdb_connect(probe->database, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the probe");
    if (rc == AGNES_OK)
        rc = register_probe_owned(conn, err, &probe->log);
    if (rc == AGNES_OK)
        rc = build_probe(conn, description, err);
    /* The probe never reads a file, a setting or an extension. */
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "SET enable_external_access = false; SET lock_configuration = true", err);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (rc == AGNES_OK)
        rc = query_probe_connect(probe, &probe->connection, err);
    if (rc != AGNES_OK)
        query_probe_close(probe);
    return rc;
}

void query_probe_close(query_probe *probe)
{
    if (probe->connection != NULL)
        duckdb_disconnect(&probe->connection);
    if (probe->database != NULL)
        duckdb_close(&probe->database); /* frees the log with the function */
    probe->log = NULL;
}

json_t *query_probe_take_log(query_probe *probe)
{
    pthread_mutex_lock(&probe->log->lock);
    json_t *names = probe->log->names;
    probe->log->names = json_array();
    pthread_mutex_unlock(&probe->log->lock);
    return names;
}

/* ---- the sandbox -------------------------------------------------------------- */

static bool is_visible_entry(const json_t *table)
{
    return json_object_get(table, "files") != NULL; /* query_sandbox_for_grants keeps these for visible ones */
}

static void append_path_list(strbuf *sql, const json_t *description, const char *const *extra)
{
    size_t i, j;
    json_t *table, *file;
    bool first = true;
    strbuf_append_char(sql, '[');
    json_array_foreach(description, i, table) {
        if (!is_visible_entry(table) || json_object_get(table, "unservable") != NULL)
            continue;
        json_array_foreach(json_object_get(table, "files"), j, file) {
            if (!first)
                strbuf_append_char(sql, ',');
            duck_append_literal(sql, json_string_value(file));
            first = false;
        }
    }
    for (size_t k = 0; extra != NULL && extra[k] != NULL; k++) {
        if (!first)
            strbuf_append_char(sql, ',');
        duck_append_literal(sql, extra[k]);
        first = false;
    }
    strbuf_append_char(sql, ']');
}

static json_t *remote_calls(const json_t *description)
{
    json_t *calls = json_array();
    size_t i;
    json_t *table;
    json_array_foreach(description, i, table) {
        if (is_visible_entry(table) && json_object_get(table, "unservable") == NULL)
            json_array_extend(calls, json_object_get(table, "remote"));
    }
    return calls;
}

/* Is text one CREATE VIEW statement (as DuckDB stores a view's sql)? */
static bool is_create_view(duckdb_connection conn, const char *text)
{
    duckdb_extracted_statements statements = NULL;
    duckdb_prepared_statement prepared = NULL;
    bool ok = false;
    while (*text == ' ' || *text == '\n' || *text == '\t')
        text++;
    if (strncasecmp(text, "CREATE VIEW ", 12) != 0 && strncasecmp(text, "CREATE OR REPLACE VIEW ", 23) != 0)
        return false;
    if (duckdb_extract_statements(conn, text, &statements) == 1 &&
        duckdb_prepare_extracted_statement(conn, statements, 0, &prepared) == DuckDBSuccess)
        ok = duckdb_prepared_statement_type(prepared) == DUCKDB_STATEMENT_TYPE_CREATE;
    duckdb_destroy_prepare(&prepared);
    duckdb_destroy_extracted(&statements);
    return ok;
}

/* Create the visible tables' views in conn's current catalog; the ones
 * that cannot stand alone are noted in unservable. */
static void create_views(duckdb_connection conn, const json_t *description, json_t *unservable)
{
    size_t i;
    json_t *table;
    json_array_foreach(description, i, table) {
        const char *name = json_string_value(json_object_get(table, "name"));
        const char *view = json_string_value(json_object_get(table, "view"));
        agnes_error why;
        if (!is_visible_entry(table))
            continue;
        if (json_object_get(table, "unservable") != NULL) {
            json_object_set(unservable, name, json_object_get(table, "unservable"));
            continue;
        }
        if (view == NULL || !is_create_view(conn, view)) {
            json_object_set_new(unservable, name, json_string("its extract does not define it as a view"));
            continue;
        }
        if (exec_one(conn, view, &why) != AGNES_OK) {
            char reason[AGNES_ERROR_MESSAGE_MAX];
            snprintf(reason, sizeof reason, "its view does not stand alone (%s)", why.message);
            query_utf8_truncate(reason, 400);
            json_object_set_new(unservable, name, json_string(reason));
        }
    }
}

static int open_memory(int threads, const char *memory_limit, duckdb_database *out, agnes_error *err)
{
    duckdb_config config = NULL;
    char *open_error = NULL, value[16];
    if (duckdb_create_config(&config) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a DuckDB configuration");
    duckdb_set_config(config, "autoinstall_known_extensions", "false");
    duckdb_set_config(config, "autoload_known_extensions", "false");
    duckdb_set_config(config, "memory_limit", memory_limit);
    if (threads > 0) {
        snprintf(value, sizeof value, "%d", threads);
        duckdb_set_config(config, "threads", value);
    }
    int rc = duckdb_open_ext(NULL, out, config, &open_error) == DuckDBSuccess
                 ? AGNES_OK
                 : agnes_error_set(err, AGNES_ERR_DB, "cannot open an in-memory DuckDB: %s",
                                   open_error ? open_error : "unknown error");
    duckdb_free(open_error);
    duckdb_destroy_config(&config);
    return rc;
}

/* Settings that would otherwise show the server's home directory or let a
 * query reach beyond the sandbox; then external access off. */
static int lock_down(duckdb_connection conn, const json_t *description, const query_sandbox_options *options,
                     agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    char spill[1200], ext[1200];
    snprintf(spill, sizeof spill, "%s/spill", options->work_dir);
    snprintf(ext, sizeof ext, "%s/extensions", options->work_dir);
    strbuf_append_str(&sql, "SET temp_directory = ");
    duck_append_literal(&sql, spill);
    strbuf_append_str(&sql, "; SET home_directory = ");
    duck_append_literal(&sql, options->work_dir);
    strbuf_append_str(&sql, "; SET extension_directory = ");
    duck_append_literal(&sql, ext);
    strbuf_append_str(&sql, "; SET secret_directory = ");
    duck_append_literal(&sql, ext);
    strbuf_append_str(&sql, "; SET allowed_paths = ");
    append_path_list(&sql, description, options->extra_paths);
    strbuf_append_str(&sql, "; SET enable_external_access = false");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_exec(conn, sql.data, err);
    strbuf_free(&sql);
    return rc;
}

int query_sandbox_open(const json_t *description, const query_sandbox_options *options, duckdb_database *out,
                       json_t **unservable, agnes_error *err)
{
    duckdb_connection conn = NULL;
    *out = NULL;
    *unservable = json_object();
    if (*unservable == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = open_memory(options->threads, options->memory_limit, out, err);
    if (rc == AGNES_OK && duckdb_connect(*out, &conn) != DuckDBSuccess)
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the query sandbox");
    if (rc == AGNES_OK) {
        json_t *calls = remote_calls(description);
        rc = postgres_query_register_restricted(conn, options->credentials, options->remote_timeout_seconds,
                                                options->token_envs, calls, err);
        json_decref(calls);
    }
    /* The views live in a catalog named "server", as the admin engine's do. */
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "ATTACH ':memory:' AS server; USE server", err);
    /* External access goes off before the views bind: they reach their own
     * files and nothing else even while being created. */
    if (rc == AGNES_OK)
        rc = lock_down(conn, description, options, err);
    if (rc == AGNES_OK)
        create_views(conn, description, *unservable);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "SET lock_configuration = true", err);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK) {
        if (*out != NULL)
            duckdb_close(out);
        json_decref(*unservable);
        *unservable = NULL;
    }
    return rc;
}

int query_sandbox_connect(duckdb_database sandbox, duckdb_connection *out, agnes_error *err)
{
    if (duckdb_connect(sandbox, out) != DuckDBSuccess) {
        *out = NULL;
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the query sandbox");
    }
    if (duck_exec(*out, "USE server", err) != AGNES_OK) {
        duckdb_disconnect(out);
        return err->code;
    }
    return AGNES_OK;
}
