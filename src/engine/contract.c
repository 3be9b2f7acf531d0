#include "engine/contract.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/duck.h"

/* The extract is attached under this name to an empty in-memory DuckDB,
 * never opened as the default database: objects of a default database come
 * first in name resolution, so a view in it named duckdb_views or
 * duckdb_columns would stand in for DuckDB's own, even for duckdb_views(),
 * and every check below would read the extract's view instead. */
#define CHECKED "checked_extract"

static const char meta_ddl_hint[] =
    "create it as in contracts/extract_meta.sql: CREATE TABLE _meta (table_name VARCHAR NOT NULL, description "
    "VARCHAR, rows BIGINT, size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local')";

static const struct {
    const char *name;
    const char *types; /* accepted information_schema data_type values, '|'-separated */
} meta_columns[] = {
    {"table_name", "VARCHAR"}, {"description", "VARCHAR"},     {"rows", "BIGINT|INTEGER"},
    {"size_bytes", "BIGINT|INTEGER"}, {"extracted_at", "TIMESTAMP"}, {"query_mode", "VARCHAR"},
};
static const char *const remote_columns[] = {"alias", "extension", "url", "token_env"};

#define META_COLUMN_COUNT (sizeof meta_columns / sizeof meta_columns[0])

static int add_violation(contract_report *report, agnes_error *err, const char *rule, const char *fix,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int add_violation(contract_report *report, agnes_error *err, const char *rule, const char *fix,
                         const char *fmt, ...)
{
    char message[sizeof ((contract_violation *)0)->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return contract_report_add(report, rule, message, fix, err);
}

int contract_report_add(contract_report *report, const char *rule, const char *message, const char *fix,
                        agnes_error *err)
{
    if (report->count == report->capacity) {
        size_t capacity = report->capacity ? report->capacity * 2 : 8;
        contract_violation *grown = realloc(report->items, capacity * sizeof *grown);
        if (grown == NULL)
            return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory checking an extract");
        report->items = grown;
        report->capacity = capacity;
    }
    contract_violation *v = &report->items[report->count++];
    snprintf(v->rule, sizeof v->rule, "%s", rule);
    snprintf(v->message, sizeof v->message, "%s", message);
    snprintf(v->fix, sizeof v->fix, "%s", fix);
    return AGNES_OK;
}

bool contract_is_identifier(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64 || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_'))
            return false;
    return true;
}

/* Names DuckDB resolves unqualified to its own objects, '\n'-separated in
 * lower case, asked of the engine itself (see contract_is_reserved_name).
 * Written once under the mutex and only read afterwards: a constant of the
 * linked library, not state.  Asking costs a DuckDB instance, so the
 * checker lends its own connection when it is the first to need the list. */
static char reserved_names[8192];
static bool reserved_loaded, reserved_from_engine;
static pthread_mutex_t reserved_lock = PTHREAD_MUTEX_INITIALIZER;

/* conn: a connection whose default database holds nothing of the caller's
 * (its views would stand in for DuckDB's), or NULL to open one. */
static void load_reserved_names(duckdb_connection conn)
{
    static const char fallback[] = "information_schema\npg_catalog\nmain\ntemp\nsystem\n";
    pthread_mutex_lock(&reserved_lock);
    if (reserved_loaded) {
        pthread_mutex_unlock(&reserved_lock);
        return;
    }
    duck_session session = {0};
    duckdb_result result;
    agnes_error err;
    size_t n = 0;
    bool loaded = false;
    if (conn == NULL && duck_session_open(&session, NULL, false, &err) == AGNES_OK)
        conn = session.connection;
    if (conn != NULL) {
        if (duckdb_query(conn,
                         "SELECT DISTINCT lower(name) FROM ("
                         " SELECT view_name AS name FROM duckdb_views() WHERE internal"
                         "  AND schema_name IN ('main', 'pg_catalog')"
                         " UNION ALL SELECT schema_name FROM duckdb_schemas() WHERE internal"
                         " UNION ALL SELECT database_name FROM duckdb_databases() WHERE internal) ORDER BY 1",
                         &result) == DuckDBSuccess) {
            for (idx_t r = 0; r < duckdb_row_count(&result); r++) {
                char name[128];
                if (duck_result_text(&result, 0, r, name, sizeof name) &&
                    n + strlen(name) + 2 < sizeof reserved_names) {
                    n += (size_t)snprintf(reserved_names + n, sizeof reserved_names - n, "%s\n", name);
                    loaded = true;
                }
            }
        }
        duckdb_destroy_result(&result);
    }
    duck_session_close(&session);
    reserved_from_engine = loaded;
    if (!loaded) { /* the prefixes in contract_is_reserved_name stand in for the views */
        log_warn("msg=\"cannot list DuckDB's own names; using the built-in minimum\"");
        snprintf(reserved_names, sizeof reserved_names, "%s", fallback);
    }
    reserved_loaded = true;
    pthread_mutex_unlock(&reserved_lock);
}

bool contract_is_reserved_name(const char *name)
{
    static const char *const contract_tables[] = {"_meta", "_remote_attach"};
    static const char *const engine_prefixes[] = {"duckdb_", "pg_", "sqlite_", "pragma_"};
    char lower[80];
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len >= sizeof lower)
        return false;
    for (size_t i = 0; i <= len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof contract_tables / sizeof contract_tables[0]; i++)
        if (strcmp(lower, contract_tables[i]) == 0)
            return true;
    load_reserved_names(NULL);
    for (const char *p = reserved_names; *p;) {
        size_t n = strcspn(p, "\n");
        if (n == len && strncmp(p, lower, n) == 0)
            return true;
        p += n + (p[n] == '\n');
    }
    /* Only when DuckDB could not be asked: its views carry these prefixes. */
    if (!reserved_from_engine)
        for (size_t i = 0; i < sizeof engine_prefixes / sizeof engine_prefixes[0]; i++)
            if (strncmp(lower, engine_prefixes[i], strlen(engine_prefixes[i])) == 0)
                return true;
    return false;
}

bool contract_table_name_ok(const char *name, char *why, size_t why_size)
{
    if (!contract_is_identifier(name)) {
        snprintf(why, why_size,
                 "is not a valid table name: use letters, digits and _, starting with a letter or _, at most 64 "
                 "characters (e.g. sales_2024)");
        return false;
    }
    if (contract_is_reserved_name(name)) {
        snprintf(why, why_size,
                 "is a name the query engine or the extract contract already uses (a table of that name would hide "
                 "it); choose another, e.g. %.60s_data",
                 name[0] == '_' ? name + 1 : name);
        return false;
    }
    return true;
}

static bool is_env_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || !isupper((unsigned char)name[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isupper((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_'))
            return false;
    return true;
}

void contract_allowlists_from_env(contract_allowlists *allow)
{
    const char *extensions = getenv("AGNES_REMOTE_ATTACH_EXTENSIONS");
    const char *tokens = getenv("AGNES_REMOTE_ATTACH_TOKEN_ENVS");
    snprintf(allow->extensions, sizeof allow->extensions, "%s", extensions ? extensions : "keboola,bigquery,postgres");
    snprintf(allow->token_envs, sizeof allow->token_envs, "%s",
             tokens ? tokens : "KBC_TOKEN,KBC_STORAGE_TOKEN,KEBOOLA_STORAGE_TOKEN,GOOGLE_APPLICATION_CREDENTIALS,POSTGRES_DSN");
}

bool contract_allowlist_contains(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (len == n && n > 0 && strncmp(p, name, n) == 0)
            return true;
        p += len;
    }
    return false;
}

/* The directory holding extract.duckdb is the source name - once it is
 * published, i.e. in a directory named `extracts` (DATA_DIR/extracts/<source>/).
 * Elsewhere (a connector's hand test in /tmp/try-out, a run directory) the
 * name is nobody's source and is not judged. */
static int check_source_name(const char *path, contract_report *report, agnes_error *err)
{
    char dir[AGNES_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return AGNES_OK; /* a bare file name: no source directory to judge */
    *slash = '\0';
    const char *source = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    if (source[0] == '\0' || strcmp(source, ".") == 0 || contract_is_identifier(source))
        return AGNES_OK;
    char parent[AGNES_PATH_MAX];
    snprintf(parent, sizeof parent, "%.*s", (int)(source - dir), dir);
    size_t len = strlen(parent);
    while (len > 0 && parent[len - 1] == '/')
        parent[--len] = '\0';
    const char *parent_name = strrchr(parent, '/') ? strrchr(parent, '/') + 1 : parent;
    if (strcmp(parent_name, "extracts") != 0)
        return AGNES_OK;
    return add_violation(report, err, "source_name",
                         "rename the directory to letters, digits and _ (starting with a letter or _), at most 64",
                         "source directory '%s' is not a valid source name; the orchestrator skips it", source);
}

static bool accepts_type(const char *accepted, const char *type)
{
    char copy[64];
    snprintf(copy, sizeof copy, "%s", accepted);
    char *save = NULL;
    for (char *t = strtok_r(copy, "|", &save); t; t = strtok_r(NULL, "|", &save))
        if (strcmp(t, type) == 0)
            return true;
    return false;
}

/* Column names and types of a main-schema table, in order; *count 0 if absent. */
static int table_columns(duckdb_connection conn, const char *table, char names[][64], char types[][64], size_t max,
                         size_t *count, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {table};
    *count = 0;
    /* duckdb_columns(), not information_schema: that view is defined over
     * an unqualified duckdb_views, which a view in the extract can shadow. */
    if (duck_query_params(conn,
                          "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = '" CHECKED "'"
                          " AND schema_name = 'main' AND table_name = $1 ORDER BY column_index",
                          params, 1, &result, err))
        return err->code;
    for (idx_t r = 0; r < duckdb_row_count(&result) && *count < max; r++, (*count)++) {
        duck_result_text(&result, 0, r, names[*count], 64);
        duck_result_text(&result, 1, r, types[*count], 64);
    }
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

/* *usable false when the _meta layout or types are wrong (row checks would be meaningless). */
static int check_meta_columns(duckdb_connection conn, contract_report *report, bool *usable, agnes_error *err)
{
    char names[16][64], types[16][64];
    size_t count = 0;
    *usable = false;
    if (table_columns(conn, "_meta", names, types, 16, &count, err))
        return err->code;
    if (count == 0)
        return add_violation(report, err, "meta_missing", meta_ddl_hint, "the extract has no _meta table");
    bool layout_ok = count == META_COLUMN_COUNT;
    for (size_t i = 0; layout_ok && i < META_COLUMN_COUNT; i++)
        layout_ok = strcmp(names[i], meta_columns[i].name) == 0;
    if (!layout_ok) {
        char found[600] = "";
        for (size_t i = 0; i < count; i++)
            snprintf(found + strlen(found), sizeof found - strlen(found), "%s%s", i ? ", " : "", names[i]);
        return add_violation(report, err, "meta_columns", meta_ddl_hint,
                             "_meta columns must be exactly (table_name, description, rows, size_bytes, extracted_at, "
                             "query_mode) in this order; found (%s)",
                             found);
    }
    *usable = true;
    for (size_t i = 0; i < META_COLUMN_COUNT; i++)
        if (!accepts_type(meta_columns[i].types, types[i])) {
            char fix[200];
            snprintf(fix, sizeof fix, "declare _meta.%s as %.*s (see contracts/extract_meta.sql)", names[i],
                     (int)strcspn(meta_columns[i].types, "|"), meta_columns[i].types);
            *usable = false; /* rows of mistyped columns cannot be checked meaningfully */
            if (add_violation(report, err, "meta_types", fix, "_meta.%s has type %s", names[i], types[i]))
                return err->code;
        }
    return AGNES_OK;
}

static bool table_exists(duckdb_connection conn, const char *name)
{
    duckdb_result result;
    const char *params[] = {name};
    agnes_error ignored;
    if (duck_query_params(conn,
                          "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = '" CHECKED "'"
                          " AND schema_name = 'main' AND table_name = $1) + (SELECT count(*) FROM duckdb_views()"
                          " WHERE database_name = '" CHECKED "' AND schema_name = 'main' AND view_name = $1)",
                          params, 1, &result, &ignored))
        return false;
    bool exists = duckdb_value_int64(&result, 0, 0) > 0;
    duckdb_destroy_result(&result);
    return exists;
}

/* A local table must be there and readable from any working directory. */
static int check_local_object(duckdb_connection conn, const char *name, contract_report *report, agnes_error *err)
{
    if (!table_exists(conn, name))
        return add_violation(report, err, "local_object_missing",
                             "create a view or table with that exact name in extract.duckdb, e.g. CREATE VIEW "
                             "\"<name>\" AS SELECT * FROM read_parquet('/abs/path/data/<name>.parquet')",
                             "_meta lists '%s' as local but the extract has no view or table named '%s'", name, name);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT * FROM " CHECKED ".\"%s\" LIMIT 0", name);
    duckdb_result result;
    if (duckdb_query(conn, sql, &result) != DuckDBSuccess) {
        int rc = add_violation(report, err, "local_object_unreadable",
                               "make the view read files by absolute path (the server attaches the extract from "
                               "another working directory) and check the files exist",
                               "view '%s' cannot be read: %s", name, duckdb_result_error(&result));
        duckdb_destroy_result(&result);
        return rc;
    }
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

static int check_meta_row(duckdb_connection conn, duckdb_result *rows, idx_t r, contract_report *report,
                          agnes_error *err)
{
    char name[256], mode[64];
    bool has_name = duck_result_text(rows, 0, r, name, sizeof name);
    bool has_mode = duck_result_text(rows, 1, r, mode, sizeof mode);
    report->tables++;
    if (!has_name || !contract_is_identifier(name))
        return add_violation(report, err, "table_name",
                             "use letters, digits and _ (starting with a letter or _), at most 64: the name becomes the "
                             "table's id in the catalog, grants and /api/query",
                             "_meta has a row with table_name '%s', which is not a valid identifier",
                             has_name ? name : "NULL");
    char why[300];
    if (!contract_table_name_ok(name, why, sizeof why))
        return add_violation(report, err, "table_name_reserved",
                             "rename the table in _meta and its view: the catalog would otherwise hide DuckDB's own "
                             "object, and queries over it break",
                             "_meta row '%s' %s", name, why);
    if (duckdb_value_int64(rows, 3, r) > 1)
        return add_violation(report, err, "table_name_duplicate", "list each table once in _meta",
                             "_meta lists '%s' more than once", name);
    if (!has_mode || (strcmp(mode, "local") != 0 && strcmp(mode, "remote") != 0))
        return add_violation(report, err, "query_mode", "set query_mode to 'local' or 'remote'",
                             "_meta row '%s' has query_mode '%s'", name, has_mode ? mode : "NULL");
    if (duckdb_value_int64(rows, 2, r) != 0)
        return add_violation(report, err, "meta_counts", "store row counts and sizes as 0 or more (0 for remote)",
                             "_meta row '%s' has a negative rows or size_bytes", name);
    if (strcmp(mode, "local") != 0)
        return AGNES_OK;
    report->local_tables++;
    return check_local_object(conn, name, report, err);
}

static int check_meta_rows(duckdb_connection conn, contract_report *report, agnes_error *err)
{
    duckdb_result rows;
    if (duckdb_query(conn,
                     "SELECT table_name, query_mode, (coalesce(rows, 0) < 0 OR coalesce(size_bytes, 0) < 0)::INT,"
                     " count(*) OVER (PARTITION BY table_name) FROM " CHECKED "._meta ORDER BY table_name",
                     &rows) != DuckDBSuccess) {
        int rc = add_violation(report, err, "meta_unreadable", meta_ddl_hint, "_meta cannot be read: %s",
                               duckdb_result_error(&rows));
        duckdb_destroy_result(&rows);
        return rc;
    }
    int rc = AGNES_OK;
    for (idx_t r = 0; rc == AGNES_OK && r < duckdb_row_count(&rows); r++)
        rc = check_meta_row(conn, &rows, r, report, err);
    duckdb_destroy_result(&rows);
    return rc;
}

static int check_remote_row(duckdb_result *rows, idx_t r, const contract_allowlists *allow, contract_report *report,
                            agnes_error *err)
{
    char alias[128], extension[128], token_env[256];
    duck_result_text(rows, 0, r, alias, sizeof alias);
    duck_result_text(rows, 1, r, extension, sizeof extension);
    duck_result_text(rows, 2, r, token_env, sizeof token_env);
    if (!contract_is_identifier(alias) || !contract_is_identifier(extension))
        return add_violation(report, err, "remote_attach_identifier",
                             "alias and extension must be identifiers (letters, digits, _)",
                             "_remote_attach row %llu has alias '%s' / extension '%s'", (unsigned long long)r + 1,
                             alias, extension);
    if (!contract_allowlist_contains(allow->extensions, extension)) {
        char fix[CONTRACT_ALLOWLIST_MAX + 100];
        snprintf(fix, sizeof fix, "use one of: %s (the operator extends the list with AGNES_REMOTE_ATTACH_EXTENSIONS)",
                 allow->extensions);
        if (add_violation(report, err, "remote_attach_extension", fix,
                          "_remote_attach asks for extension '%s', which is not allowed", extension))
            return err->code;
    }
    if (token_env[0] == '\0')
        return AGNES_OK;
    if (!is_env_name(token_env))
        return add_violation(report, err, "remote_attach_token_env",
                             "put the NAME of an environment variable in token_env (e.g. KEBOOLA_STORAGE_TOKEN), never "
                             "the token itself; remove the secret from the file",
                             "_remote_attach row %llu: token_env is not a variable name (it may be a secret)",
                             (unsigned long long)r + 1);
    if (!contract_allowlist_contains(allow->token_envs, token_env)) {
        char fix[CONTRACT_ALLOWLIST_MAX + 100];
        snprintf(fix, sizeof fix, "use one of: %s (the operator extends the list with AGNES_REMOTE_ATTACH_TOKEN_ENVS)",
                 allow->token_envs);
        return add_violation(report, err, "remote_attach_token_env", fix,
                             "_remote_attach token_env '%s' is not an allowed variable", token_env);
    }
    return AGNES_OK;
}

static int check_remote_attach(duckdb_connection conn, const contract_allowlists *allow, contract_report *report,
                               agnes_error *err)
{
    char names[16][64], types[16][64];
    size_t count = 0;
    if (table_columns(conn, "_remote_attach", names, types, 16, &count, err))
        return err->code;
    if (count == 0)
        return AGNES_OK; /* optional */
    bool layout_ok = count == 4;
    for (size_t i = 0; layout_ok && i < 4; i++)
        layout_ok = strcmp(names[i], remote_columns[i]) == 0 && strcmp(types[i], "VARCHAR") == 0;
    if (!layout_ok)
        return add_violation(report, err, "remote_attach_columns", "see contracts/remote_attach.sql",
                             "_remote_attach must have exactly (alias, extension, url, token_env), all VARCHAR");
    duckdb_result rows;
    if (duckdb_query(conn, "SELECT alias, extension, coalesce(token_env, '') FROM " CHECKED "._remote_attach", &rows) !=
        DuckDBSuccess) {
        duckdb_destroy_result(&rows);
        return add_violation(report, err, "remote_attach_columns", "see contracts/remote_attach.sql",
                             "_remote_attach cannot be read");
    }
    int rc = AGNES_OK;
    for (idx_t r = 0; rc == AGNES_OK && r < duckdb_row_count(&rows); r++)
        rc = check_remote_row(&rows, r, allow, report, err);
    duckdb_destroy_result(&rows);
    return rc;
}

#define EXERCISE_MAX_ROWS "1000000"

/* Read every value the orchestrator will read later (all of _meta and
 * _remote_attach, the extract's catalog of views, tables and columns), and
 * collect _meta's names.  A damaged file crashes here, in the child. */
static int exercise(duckdb_connection conn, contract_report *report, agnes_error *err)
{
    static const char *const reads[] = {
        "SELECT * FROM " CHECKED "._meta",
        "SELECT database_name, schema_name, view_name, sql FROM duckdb_views()",
        "SELECT database_name, schema_name, table_name, sql FROM duckdb_tables()",
        "SELECT * FROM duckdb_columns()",
        "SELECT table_catalog, table_name FROM information_schema.tables",
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        duckdb_result result;
        duckdb_query(conn, reads[i], &result); /* errors are the checks' business, not this one's */
        duckdb_destroy_result(&result);
    }
    if (table_exists(conn, "_remote_attach")) {
        duckdb_result result;
        duckdb_query(conn, "SELECT * FROM " CHECKED "._remote_attach", &result);
        duckdb_destroy_result(&result);
    }
    /* Tables stored in the file itself (not views over Parquet) are read
     * whole, every column (hash of the row), up to EXERCISE_MAX_ROWS rows
     * each: a bigger one would make the check as slow as a full scan, and
     * its damage is then met by the query path instead. */
    duckdb_result tables;
    char sql[200];
    if (duckdb_query(conn,
                     "SELECT table_name FROM duckdb_tables() WHERE database_name = '" CHECKED "'"
                     " AND schema_name = 'main' AND estimated_size <= " EXERCISE_MAX_ROWS " ORDER BY 1",
                     &tables) == DuckDBSuccess)
        for (idx_t r = 0; r < duckdb_row_count(&tables); r++) {
            char table[80];
            if (!duck_result_text(&tables, 0, r, table, sizeof table) || !contract_is_identifier(table))
                continue;
            snprintf(sql, sizeof sql, "SELECT bit_xor(hash(t)) FROM " CHECKED ".main.\"%s\" t", table);
            duckdb_result scan;
            duckdb_query(conn, sql, &scan);
            duckdb_destroy_result(&scan);
        }
    duckdb_destroy_result(&tables);
    duckdb_result names;
    report->names = json_array();
    if (report->names == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory checking an extract");
    /* Qualified like every read here: the extract is attached as CHECKED, not the default database. */
    if (duckdb_query(conn, "SELECT DISTINCT table_name FROM " CHECKED "._meta WHERE table_name IS NOT NULL ORDER BY 1",
                     &names) ==
        DuckDBSuccess)
        for (idx_t r = 0; r < duckdb_row_count(&names); r++) {
            char table[256];
            if (duck_result_text(&names, 0, r, table, sizeof table))
                json_array_append_new(report->names, json_string(table));
        }
    duckdb_destroy_result(&names);
    return AGNES_OK;
}

int contract_check_in_process(const char *path, const contract_allowlists *allow, contract_report *report,
                              agnes_error *err)
{
    memset(report, 0, sizeof *report);
    if (check_source_name(path, report, err))
        return err->code;
    if (!util_file_exists(path))
        return add_violation(report, err, "open", "write the extract to <source>/extract.duckdb",
                             "%s does not exist", path);
    duck_session session;
    agnes_error open_err;
    if (duck_session_open(&session, NULL, false, &open_err) != AGNES_OK)
        return agnes_error_set(err, open_err.code, "%s", open_err.message);
    load_reserved_names(session.connection); /* free here: this connection's default database is empty */
    if (duck_attach_read_only(session.connection, path, CHECKED, &open_err) != AGNES_OK) {
        duck_session_close(&session);
        return add_violation(report, err, "open",
                             "the file must be a DuckDB 1.4 database; write it as extract.duckdb.tmp and rename it "
                             "when complete, so readers never see a half-written file",
                             "%s", open_err.message);
    }
    bool usable = false;
    int rc = check_meta_columns(session.connection, report, &usable, err);
    if (rc == AGNES_OK && usable)
        rc = check_meta_rows(session.connection, report, err);
    if (rc == AGNES_OK)
        rc = check_remote_attach(session.connection, allow, report, err);
    if (rc == AGNES_OK)
        rc = exercise(session.connection, report, err);
    duck_session_close(&session);
    return rc;
}

void contract_report_free(contract_report *report)
{
    free(report->items);
    json_decref(report->names);
    memset(report, 0, sizeof *report);
}

json_t *contract_report_json(const char *path, const contract_report *report)
{
    json_t *violations = json_array();
    for (size_t i = 0; i < report->count; i++)
        json_array_append_new(violations, json_pack("{s:s, s:s, s:s}", "rule", report->items[i].rule, "message",
                                                    report->items[i].message, "fix", report->items[i].fix));
    json_t *doc = json_pack("{s:s, s:b, s:i, s:i, s:o}", "path", path, "ok", report->count == 0, "tables",
                            report->tables, "local_tables", report->local_tables, "violations", violations);
    if (doc != NULL && report->names != NULL)
        json_object_set(doc, "names", report->names);
    return doc;
}
