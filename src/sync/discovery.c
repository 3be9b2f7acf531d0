#include "sync/discovery.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "engine/contract.h"
#include "store/registry.h"
#include "store/sync_state.h"
#include "sync/connector.h"
#include "sync/source_settings.h"

/* From about this many rows a table is better queried where it is than copied (when its connector can). */
#define SUGGEST_REMOTE_ROWS 10000000LL

void discovery_table_id(const char *schema, const char *table, char *id, size_t id_size)
{
    char joined[300];
    if (strcmp(schema, "public") == 0)
        snprintf(joined, sizeof joined, "%s", table);
    else
        snprintf(joined, sizeof joined, "%s_%s", schema, table);
    /* A name DuckDB or the contract already uses (duckdb_tables, _meta)
     * would break the whole source's extract: such a table keeps its
     * schema in front (public_duckdb_tables), or gets "_table" after. */
    if (contract_is_reserved_name(joined) && strcmp(schema, "public") == 0)
        snprintf(joined, sizeof joined, "%s_%s", schema, table);
    if (contract_is_reserved_name(joined))
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "_table");
    size_t n = 0;
    if (isdigit((unsigned char)joined[0]) && id_size > 3)
        n = (size_t)snprintf(id, id_size, "t_");
    for (const char *p = joined; *p != '\0' && n + 1 < id_size && n < 64; p++)
        id[n++] = isalnum((unsigned char)*p) && (unsigned char)*p < 128 ? (char)tolower((unsigned char)*p) : '_';
    id[n] = '\0';
    if (n == 0)
        snprintf(id, id_size, "_");
}

static bool schema_wanted(const json_t *schemas, const char *schema)
{
    if (schemas == NULL)
        return true;
    size_t i;
    json_t *name;
    json_array_foreach(schemas, i, name)
        if (json_is_string(name) && strcmp(json_string_value(name), schema) == 0)
            return true;
    return false;
}

/* The id a discovered table gets: the connector's proposal (Keboola maps
 * its own ids), else the schema/table rule above. */
static void entry_id(const json_t *table, char *id, size_t id_size)
{
    const char *proposed = json_string_value(json_object_get(table, "id"));
    if (proposed != NULL && contract_is_identifier(proposed))
        snprintf(id, id_size, "%s", proposed);
    else
        discovery_table_id(json_string_value(json_object_get(table, "bucket")),
                           json_string_value(json_object_get(table, "source_table")), id, id_size);
}

/* "<bucket>.<table>" as the admin knows it (Keboola's table id). */
static void entry_label(const json_t *table, char *label, size_t label_size)
{
    snprintf(label, label_size, "%s.%s", json_string_value(json_object_get(table, "bucket")),
             json_string_value(json_object_get(table, "source_table")));
}

/* The admin picked this table (by id or by bucket.table), or picked none. */
static bool table_wanted(const json_t *wanted, const json_t *table)
{
    if (wanted == NULL)
        return true;
    char id[80], label[600];
    entry_id(table, id, sizeof id);
    entry_label(table, label, sizeof label);
    size_t i;
    json_t *name;
    json_array_foreach(wanted, i, name)
        if (json_is_string(name) && (strcmp(json_string_value(name), id) == 0 ||
                                     strcmp(json_string_value(name), label) == 0))
            return true;
    return false;
}

/* How many discovered tables map to `id`. */
static size_t id_uses(const json_t *tables, const json_t *schemas, const char *id)
{
    size_t i, uses = 0;
    json_t *t;
    json_array_foreach(tables, i, t) {
        char other[80];
        const char *schema = json_string_value(json_object_get(t, "bucket"));
        if (!schema_wanted(schemas, schema))
            continue;
        entry_id(t, other, sizeof other);
        uses += strcmp(other, id) == 0;
    }
    return uses;
}

/* Register one discovered table, or say in summary why not. */
static void register_one(duckdb_connection writer, const char *source, const json_t *table, const json_t *all,
                         const discovery_options *options, json_t *summary)
{
    const char *schema = json_string_value(json_object_get(table, "bucket"));
    const char *name = json_string_value(json_object_get(table, "source_table"));
    char id[80], label[300], owner[128] = "", description[400];
    agnes_error err;
    json_t *existing = NULL;
    entry_id(table, id, sizeof id);
    entry_label(table, label, sizeof label);
    const char *problem = NULL;
    char why[400];
    if (id_uses(all, options->schemas, id) > 1) {
        snprintf(why, sizeof why, "several discovered tables become the id '%s'; register each by hand with its "
                                  "own name (POST /api/admin/register-table)", id);
        problem = why;
    } else if (registry_get_json(writer, id, &existing, &err) == AGNES_OK) {
        bool same = strcmp(json_string_value(json_object_get(existing, "source_type")), source) == 0 &&
                    json_string_value(json_object_get(existing, "bucket")) &&
                    strcmp(json_string_value(json_object_get(existing, "bucket")), schema) == 0 &&
                    json_string_value(json_object_get(existing, "source_table")) &&
                    strcmp(json_string_value(json_object_get(existing, "source_table")), name) == 0;
        json_decref(existing);
        if (same) {
            json_array_append_new(json_object_get(summary, "skipped_tables"),
                                  json_pack("{s:s, s:s, s:s}", "table", label, "id", id, "reason", "already registered"));
            return;
        }
        snprintf(why, sizeof why, "the id '%s' is already registered for another table", id);
        problem = why;
    } else if (view_ownership_owner(writer, id, owner, sizeof owner, &err) == AGNES_OK && owner[0] != '\0' &&
               strcmp(owner, source) != 0) {
        snprintf(why, sizeof why, "the view name '%s' belongs to source '%s'", id, owner);
        problem = why;
    }
    if (problem == NULL) {
        /* The source's own words describe it best; no row estimate otherwise: it froze at
         * discovery ("about 0 rows" before ANALYZE) while the catalog's rows count is current
         * after every sync. */
        const char *own = json_string_value(json_object_get(table, "description"));
        if (own != NULL && own[0] != '\0')
            snprintf(description, sizeof description, "%s", own);
        else
            snprintf(description, sizeof description, "Discovered in %s: %s (%s)", source, label,
                     json_string_value(json_object_get(table, "kind")));
        json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:b, s:s?}", "id", id, "name", id,
                                "source_type", source, "bucket", schema, "source_table", name, "query_mode",
                                options->query_mode ? options->query_mode : "local", "description", description,
                                "sync_schedule", options->sync_schedule, "profile_after_sync", true, "registered_by",
                                options->registered_by);
        char plain[300];
        snprintf(plain, sizeof plain, "%s%s%s", strcmp(schema, "public") == 0 ? "" : schema,
                 strcmp(schema, "public") == 0 ? "" : "_", name);
        if (contract_is_reserved_name(plain)) { /* said in the response: the id is not the table's name */
            char reason[200];
            snprintf(reason, sizeof reason, "'%s' is a name the query engine uses; registered as '%s'", plain, id);
            json_object_set_new(row, "description", json_pack("s++", description, "; ", reason));
            if (json_object_get(summary, "renamed_tables") == NULL)
                json_object_set_new(summary, "renamed_tables", json_array());
            json_array_append_new(json_object_get(summary, "renamed_tables"),
                                  json_pack("{s:s, s:s, s:s}", "table", label, "id", id, "reason", reason));
        }
        if (json_array_size(json_object_get(table, "primary_key")) > 0)
            json_object_set(row, "primary_key", json_object_get(table, "primary_key"));
        if (registry_insert(writer, row, &err) == AGNES_OK)
            json_array_append_new(json_object_get(summary, "tables"), json_string(id));
        else
            problem = err.message;
        json_decref(row);
    }
    if (problem != NULL)
        json_array_append_new(json_object_get(summary, "error_details"),
                              json_pack("{s:s, s:s, s:s}", "table", label, "id", id, "error", problem));
}

/* The configured source's table list, as its connector gives it. */
static int list_source(agnes_runtime *rt, char *type, size_t type_size, json_t **tables, agnes_error *err)
{
    connector_settings settings;
    *tables = NULL;
    if (source_settings_type(rt, type, type_size, err))
        return err->code;
    const connector_ops *ops = connector_find(type);
    if (ops == NULL || ops->discover == NULL)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "the configured data source is '%s', which cannot list tables; configure one that "
                               "can (POST /api/admin/configure {\"data_source\": \"postgres\" or \"keboola\", ...}) "
                               "or register tables by hand",
                               type);
    int rc = source_settings_load(rt, type, &settings, err);
    if (rc == AGNES_OK)
        rc = ops->discover(&settings, tables, err);
    explicit_bzero(settings.secret, sizeof settings.secret);
    return rc;
}

bool discovery_wanted(agnes_runtime *rt, const json_t *registry_rows, char *type, size_t type_size)
{
    agnes_error err;
    if (source_settings_type(rt, type, type_size, &err) != AGNES_OK)
        return false;
    const connector_ops *ops = connector_find(type);
    bool wanted = ops != NULL && ops->discover != NULL;
    size_t i;
    const json_t *row;
    json_array_foreach(registry_rows, i, row) {
        const char *source = json_string_value(json_object_get(row, "source_type"));
        if (source != NULL && strcmp(source, type) == 0)
            wanted = false;
    }
    if (!wanted)
        type[0] = '\0';
    return wanted;
}

int discovery_list(agnes_runtime *rt, system_db *db, json_t **listing, agnes_error *err)
{
    char type[32];
    json_t *tables = NULL, *registered = NULL;
    duckdb_connection conn = NULL;
    *listing = NULL;
    int rc = list_source(rt, type, sizeof type, &tables, err);
    const connector_ops *ops = rc == AGNES_OK ? connector_find(type) : NULL;
    if (rc == AGNES_OK)
        rc = system_db_connect_reader(db, &conn, err);
    if (rc == AGNES_OK)
        rc = registry_list_json(conn, &registered, err);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK) {
        json_decref(tables);
        return rc;
    }
    size_t i, j;
    json_t *table, *row;
    json_array_foreach(tables, i, table) {
        char id[80];
        entry_id(table, id, sizeof id);
        json_object_set_new(table, "id", json_string(id));
        const char *state = "new";
        json_array_foreach(registered, j, row) {
            if (strcmp(json_string_value(json_object_get(row, "id")), id) != 0)
                continue;
            const char *bucket = json_string_value(json_object_get(row, "bucket"));
            const char *name = json_string_value(json_object_get(row, "source_table"));
            state = strcmp(json_string_value(json_object_get(row, "source_type")), type) == 0 && bucket && name &&
                            strcmp(bucket, json_string_value(json_object_get(table, "bucket"))) == 0 &&
                            strcmp(name, json_string_value(json_object_get(table, "source_table"))) == 0
                        ? "registered"
                        : "id_taken";
        }
        if (id_uses(tables, NULL, id) > 1)
            state = "collision";
        json_object_set_new(table, "registration", json_string(state));
        /* The web wizard's fields (registered_as, conflict, suggested_query_mode, suggestion) say the same in
         * the words its table shows, so one listing serves the page and a script. */
        json_object_set_new(table, "registered_as", strcmp(state, "registered") == 0 ? json_string(id) : json_null());
        if (strcmp(state, "id_taken") == 0)
            json_object_set_new(table, "conflict",
                                json_sprintf("The id '%s' is already registered for another table; register this "
                                             "one by hand under another name.",
                                             id));
        else if (strcmp(state, "collision") == 0)
            json_object_set_new(table, "conflict",
                                json_sprintf("Another table of this source would also be named '%s'; register each "
                                             "by hand under its own name.",
                                             id));
        bool large = json_integer_value(json_object_get(table, "rows_estimate")) >= SUGGEST_REMOTE_ROWS &&
                     ops != NULL && ops->remote_view != NULL;
        json_object_set_new(table, "suggested_query_mode", json_string(large ? "remote" : "local"));
        json_object_set_new(table, "suggestion", json_string(large ? "large: query it where it is instead of copying it"
                                                                   : "copied to Parquet, fast to query and to pull"));
    }
    json_decref(registered);
    *listing = json_pack("{s:s, s:o, s:I}", "source", type, "tables", tables, "count",
                         (json_int_t)json_array_size(tables));
    return AGNES_OK;
}

int discovery_register(agnes_runtime *rt, system_db *db, const discovery_options *options, json_t **summary,
                       agnes_error *err)
{
    char type[32];
    json_t *tables = NULL;
    *summary = NULL;
    int rc = list_source(rt, type, sizeof type, &tables, err);
    if (rc != AGNES_OK)
        return rc;
    *summary = json_pack("{s:s, s:[], s:[], s:[]}", "source", type, "tables", "skipped_tables", "error_details");
    duckdb_connection writer = system_db_writer_acquire(db);
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table) {
        if (schema_wanted(options->schemas, json_string_value(json_object_get(table, "bucket"))) &&
            table_wanted(options->tables, table))
            register_one(writer, type, table, tables, options, *summary);
    }
    system_db_writer_release(db);
    json_object_set_new(*summary, "registered", json_integer((json_int_t)json_array_size(json_object_get(*summary, "tables"))));
    json_object_set_new(*summary, "skipped",
                        json_integer((json_int_t)json_array_size(json_object_get(*summary, "skipped_tables"))));
    json_object_set_new(*summary, "errors",
                        json_integer((json_int_t)json_array_size(json_object_get(*summary, "error_details"))));
    json_decref(tables);
    return AGNES_OK;
}
