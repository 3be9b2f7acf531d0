/*
 * setup.c - what the first-run wizard (/setup) and /admin/sources read
 * beyond the configure / register / sync endpoints they drive:
 *
 *   GET /api/admin/sources          every source type this build knows: which it can sync, the
 *                                   credential fields POST /api/admin/configure takes for it, the
 *                                   custom connectors in CONNECTORS_DIR, the current configuration
 *   GET /api/admin/setup            where the wizard stands, derived from real state only
 *
 * Step 4's table list is GET /api/admin/discover-tables (http/configure.c),
 * the same listing the API offers for every connector.
 *
 * Availability comes from the build, not from this file: a built-in type is
 * offered when connector_find() has its connector, so a connector that
 * lands (Keboola, BigQuery, Jira) lights up in the wizard without a change
 * here.  The wizard keeps no state of its own: reloading it at any point
 * asks GET /api/admin/setup, which reads the configuration, the registry,
 * sync state and runs, and the catalog (see setup_step below).
 */
#include "http/setup.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "engine/analytics.h"
#include "engine/contract.h"
#include "http/auth.h"
#include "http/sync.h"
#include "store/registry.h"
#include "store/sync_state.h"
#include "sync/connector.h"
#include "sync/custom_connector.h"
#include "sync/local_files.h"
#include "sync/source_settings.h"

typedef struct source_field {
    const char *name;  /* the field of POST /api/admin/configure */
    const char *label;
    const char *input; /* text | password | number | url */
    const char *placeholder;
    const char *help;
    bool required;
} source_field;

enum source_kind { SOURCE_BUILTIN, SOURCE_UPLOAD, SOURCE_CUSTOM, SOURCE_DEMO };

typedef struct source_type {
    const char *type;
    const char *label;
    const char *summary;
    enum source_kind kind;
    source_field fields[8];
} source_type;

/* Field names follow POST /api/admin/configure (and the original's, for
 * the sources it had).  Order = the order the wizard offers them in. */
static const source_type source_types[] = {
    {"postgres", "PostgreSQL", "Copy tables from a PostgreSQL database, or query them where they are.", SOURCE_BUILTIN,
     {{"postgres_host", "Host", "text", "db.example.com", "Name or address of the database server.", true},
      {"postgres_port", "Port", "number", "5432", NULL, false},
      {"postgres_database", "Database", "text", "analytics", NULL, true},
      {"postgres_user", "User", "text", "agnes_reader", "A user that may read the tables to share.", true},
      {"postgres_password", "Password", "password", NULL, "Stored in ${STATE_DIR}/.env_overlay (mode 0600), never shown again.", false},
      {"postgres_sslmode", "SSL mode", "text", "prefer", "disable, prefer, require, verify-ca or verify-full.", false}}},
    {"keboola", "Keboola", "Copy tables from a Keboola project's Storage.", SOURCE_BUILTIN,
     {{"keboola_url", "Stack URL", "url", "https://connection.keboola.com", "The address of your Keboola stack.", true},
      {"keboola_token", "Storage API token", "password", NULL, "A token that may read the buckets to share.", true}}},
    {"bigquery", "BigQuery", "Query Google BigQuery tables, or copy their results.", SOURCE_BUILTIN,
     {{"bigquery_project", "GCP project", "text", "my-project", NULL, true},
      {"bigquery_location", "Location", "text", "EU", NULL, false}}},
    {"jira", "Jira", "Keep Jira issues as tables, updated incrementally.", SOURCE_BUILTIN,
     {{"jira_domain", "Jira site", "text", "yourcompany.atlassian.net", NULL, true},
      {"jira_email", "Account email", "text", NULL, NULL, true},
      {"jira_api_token", "API token", "password", NULL, NULL, true}}},
    {"local", "Files", "Upload CSV, TSV, Parquet, JSON or NDJSON files; each file becomes a table.", SOURCE_UPLOAD,
     {{0}}},
    {"custom", "Custom connector", "Run your own program that writes an extract (any language).", SOURCE_CUSTOM,
     {{0}}},
    {"demo", "Keep the demo", "Start with the demo tables (customers, products, orders) and add sources later.",
     SOURCE_DEMO, {{0}}},
};

/* Tables of the current catalog per source_type: {"demo": 3, ...} (new reference). */
static json_t *catalog_counts(http_context *ctx)
{
    json_t *counts = json_object();
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    size_t i;
    json_t *table;
    json_array_foreach(snapshot ? snapshot->tables : NULL, i, table) {
        const char *source = json_string_value(json_object_get(table, "source_type"));
        if (source == NULL)
            continue;
        json_object_set_new(counts, source, json_integer(json_integer_value(json_object_get(counts, source)) + 1));
    }
    analytics_release(ctx->analytics, snapshot);
    return counts;
}

/* The executables in CONNECTORS_DIR: [{name, path, env: [...]}] (new reference). */
static json_t *custom_connectors(const agnes_paths *paths)
{
    json_t *list = json_array();
    DIR *dir = opendir(paths->connectors_dir);
    if (dir == NULL)
        return list;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char executable[AGNES_PATH_MAX + 128], manifest[AGNES_PATH_MAX + 128];
        if (!contract_is_identifier(entry->d_name) ||
            !custom_connector_path(paths, entry->d_name, executable, sizeof executable))
            continue;
        json_t *item = json_pack("{s:s, s:s, s:[]}", "name", entry->d_name, "path", executable, "env");
        snprintf(manifest, sizeof manifest, "%s/%s/connector.json", paths->connectors_dir, entry->d_name);
        json_t *declared = json_load_file(manifest, 0, NULL);
        json_t *env = json_object_get(declared, "env");
        if (json_is_array(env))
            json_object_set(item, "env", env);
        json_decref(declared);
        json_array_append_new(list, item);
    }
    closedir(dir);
    /* readdir order is the file system's: sort by name for a stable page. */
    size_t n = json_array_size(list);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            json_t *a = json_array_get(list, j - 1), *b = json_array_get(list, j);
            if (strcmp(json_string_value(json_object_get(a, "name")), json_string_value(json_object_get(b, "name"))) <= 0)
                break;
            json_incref(a);
            json_array_set(list, j - 1, b);
            json_array_set_new(list, j, a);
        }
    return list;
}

/* The data source as configured now: {type, explicit, origin, settings, secret_env, secret_set}. */
static json_t *configured_source(http_context *ctx, agnes_error *err)
{
    agnes_config config;
    if (source_settings_current_config(ctx->runtime, &config, err) != AGNES_OK)
        return NULL;
    const config_value *type = &config.values[CFG_DATA_SOURCE];
    json_t *out = json_pack("{s:s, s:b, s:s, s:o}", "type", type->text, "explicit",
                            type->source != CONFIG_SOURCE_DEFAULT, "origin", type->origin, "settings", json_object());
    if (strcmp(type->text, "postgres") == 0) {
        const char *secret_env = config_get_string(&config, CFG_PG_DSN_ENV);
        char secret[CONNECTOR_SECRET_MAX];
        bool set = credentials_get(&ctx->runtime->credentials, secret_env, secret, sizeof secret);
        explicit_bzero(secret, sizeof secret);
        json_object_set_new(out, "settings",
                            json_pack("{s:s, s:I, s:s, s:s, s:s}", "host", config_get_string(&config, CFG_PG_HOST),
                                      "port", (json_int_t)config_get_int(&config, CFG_PG_PORT), "database",
                                      config_get_string(&config, CFG_PG_DATABASE), "user",
                                      config_get_string(&config, CFG_PG_USER), "sslmode",
                                      config_get_string(&config, CFG_PG_SSLMODE)));
        json_object_set_new(out, "secret_env", json_string(secret_env));
        json_object_set_new(out, "secret_set", json_boolean(set));
    }
    config_free(&config);
    return out;
}

static json_t *source_json(const source_type *t, const json_t *counts, const json_t *connectors,
                           const agnes_runtime *rt)
{
    json_t *item = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o}", "type", t->type, "label", t->label, "summary",
                             t->summary, "kind",
                             t->kind == SOURCE_BUILTIN  ? "builtin"
                             : t->kind == SOURCE_UPLOAD ? "upload"
                             : t->kind == SOURCE_CUSTOM ? "custom"
                                                        : "demo",
                             "available", true, "fields", json_array());
    for (size_t f = 0; f < sizeof t->fields / sizeof t->fields[0] && t->fields[f].name; f++) {
        const source_field *field = &t->fields[f];
        json_array_append_new(json_object_get(item, "fields"),
                              json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:b}", "name", field->name, "label", field->label,
                                        "input", field->input, "placeholder", field->placeholder, "help", field->help,
                                        "required", field->required));
    }
    char reason[400] = "";
    if (t->kind == SOURCE_BUILTIN) {
        const connector_ops *ops = connector_find(t->type);
        if (ops == NULL)
            snprintf(reason, sizeof reason,
                     "This build of Agnes (%s) has no %s connector yet, so it cannot sync from %s. Until it does, a "
                     "custom connector can bring this data in.",
                     rt->version.version, t->label, t->label);
        else
            json_object_update_new(item, json_pack("{s:b, s:b}", "can_discover", ops->discover != NULL, "can_remote",
                                                   ops->remote_view != NULL));
    } else if (t->kind == SOURCE_DEMO) {
        json_int_t demo = json_integer_value(json_object_get(counts, "demo"));
        if (demo == 0)
            snprintf(reason, sizeof reason,
                     "This instance has no demo tables: the demo is seeded only into an empty DATA_DIR when "
                     "AGNES_DEMO=1 (make run does this).");
        json_object_set_new(item, "tables", json_integer(demo));
    } else if (t->kind == SOURCE_CUSTOM) {
        json_object_set(item, "connectors", (json_t *)connectors);
        json_object_set_new(item, "connectors_dir", json_string(rt->paths.connectors_dir));
    } else if (t->kind == SOURCE_UPLOAD) {
        json_object_set_new(item, "tables", json_integer(json_integer_value(json_object_get(counts, "local"))));
        json_object_set_new(item, "max_bytes", json_integer(config_get_int(&rt->config, CFG_UPLOAD_MAX_BYTES)));
    }
    if (reason[0]) {
        json_object_set_new(item, "available", json_false());
        json_object_set_new(item, "reason", json_string(reason));
    }
    return item;
}

void setup_handle_sources(http_context *ctx, const http_request *req, http_response *resp)
{
    agnes_error err;
    json_t *configured = configured_source(ctx, &err);
    if (configured == NULL) {
        http_respond_internal(resp, req, &err);
        return;
    }
    json_t *counts = catalog_counts(ctx), *connectors = custom_connectors(&ctx->runtime->paths);
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof source_types / sizeof source_types[0]; i++)
        json_array_append_new(list, source_json(&source_types[i], counts, connectors, ctx->runtime));
    http_respond_json(resp, 200, json_pack("{s:o, s:o, s:o}", "sources", list, "configured", configured,
                                           "catalog", counts));
    json_decref(connectors);
}

/* ---- where the wizard stands ------------------------------------------------------------------- */

static bool run_is_running(const json_t *runs)
{
    size_t i;
    json_t *run;
    json_array_foreach(runs, i, run) {
        const char *state = json_string_value(json_object_get(run, "state"));
        if (state && strcmp(state, "running") == 0)
            return true;
    }
    return false;
}

static const json_t *state_of(const json_t *states, const char *id)
{
    size_t i;
    json_t *row;
    json_array_foreach(states, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "table_id")), id) == 0)
            return row;
    }
    return NULL;
}

/*
 * The step, from real state:
 *   a source configured that can list    4 (choose its tables) while none of its tables is registered
 *   tables registered                    5 while one has never been synced (or failed), else done
 *   uploaded files in the catalog        done (an upload publishes at once)
 *   data_source set to local + demo      done ("keep the demo" is POST /api/admin/configure local)
 *   otherwise                            2 (step 1 is setup mode, which answers 503 before this runs)
 * A source chosen in step 2 but not yet saved is the browser's to remember.
 */
void setup_handle_state(http_context *ctx, const http_request *req, http_response *resp)
{
    agnes_error err;
    duckdb_connection conn = NULL;
    json_t *rows = NULL, *states = NULL, *configured = configured_source(ctx, &err);
    json_t *counts = catalog_counts(ctx), *runs = sync_runs_recent(ctx->sync_runs, 5);
    if (configured == NULL || system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        registry_list_json(conn, &rows, &err) != AGNES_OK || sync_state_list_json(conn, &states, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    json_t *tables = json_array();
    bool all_attempted = true;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *id = json_string_value(json_object_get(row, "id"));
        const json_t *state = state_of(states, id);
        all_attempted = all_attempted && state != NULL;
        json_t *item = json_pack("{s:s, s:O, s:O}", "id", id, "source_type", json_object_get(row, "source_type"),
                                 "query_mode", json_object_get(row, "query_mode"));
        if (state != NULL)
            json_object_update_missing(item, (json_t *)state);
        json_array_append_new(tables, item);
    }
    const char *type = json_string_value(json_object_get(configured, "type"));
    bool explicit_source = json_is_true(json_object_get(configured, "explicit"));
    const connector_ops *ops = connector_find(type);
    bool running = run_is_running(runs);
    const char *step = "2", *source = NULL;
    bool type_has_rows = false;
    json_array_foreach(rows, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "source_type")), type) == 0)
            type_has_rows = true;
    }
    if (explicit_source && ops != NULL && ops->discover != NULL && !type_has_rows) {
        step = "4"; /* a source configured (perhaps a second one) whose tables are still to choose */
        source = type;
    } else if (json_array_size(rows) > 0) {
        /* the configured source when it has tables, else the first registered one */
        source = type_has_rows ? type : json_string_value(json_object_get(json_array_get(rows, 0), "source_type"));
        step = all_attempted ? "done" : "5"; /* later runs (a schedule) do not reopen the wizard */
    } else if (json_integer_value(json_object_get(counts, LOCAL_SOURCE_NAME)) > 0) {
        step = "done";
        source = LOCAL_SOURCE_NAME;
    } else if (explicit_source && strcmp(type, LOCAL_SOURCE_NAME) == 0 &&
               json_integer_value(json_object_get(counts, "demo")) > 0) {
        step = "done";
        source = "demo";
    }
    http_respond_json(resp, 200,
                      json_pack("{s:s, s:s?, s:b, s:O, s:o, s:O, s:O, s:b}", "step", step, "source", source, "done",
                                strcmp(step, "done") == 0, "configured", configured, "tables", tables, "catalog",
                                counts, "runs", runs, "running", running));
done:
    if (conn)
        duckdb_disconnect(&conn);
    json_decref(rows);
    json_decref(states);
    json_decref(configured);
    json_decref(counts);
    json_decref(runs);
}
