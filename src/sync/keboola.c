/*
 * keboola.c - the Keboola connector (Storage API v2; see keboola.h).
 *
 * Every table is read the one way Storage offers to every project
 * (linked buckets and alias tables included): an async export into the
 * project's file storage, downloaded slice by slice (keboola_export.c),
 * then read by DuckDB with the column types Storage's metadata gives -
 * never guessed from the data - and written as Parquet in one pass.
 *
 * Strategies (registry row sync_strategy):
 *   full_refresh  the whole table (narrowed by where_filters) each time;
 *   incremental   rows changed since the last good sync minus a window
 *                 (changedSince), merged into the published Parquet by
 *                 primary key, the changed row winning.  "The last good
 *                 sync" is a key-value entry in the published Parquet
 *                 itself (agnes_keboola_since: the export job's start on
 *                 Storage's clock), so it moves only when a new file is
 *                 published - a failed or killed run cannot advance it;
 *   partitioned   files data/<id>.partitions/<YYYY[_MM[_DD]]>.parquet by a
 *                 date column; the first load is exported in chunks of
 *                 initial_load_chunk_days back to the table's creation,
 *                 later syncs merge changed rows into the partitions they
 *                 touch; data/<id>.parquet is their union (what analysts
 *                 download).
 * query_mode materialized exports by a JSON spec (keboola_rules.c).
 * A merge that cannot be done (the table's columns changed type) falls
 * back to a full export, saying so in the log.
 *
 * Empty fields: Storage's CSV has no NULL for text ("" is an empty
 * string), while an empty field of a typed column is NULL.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "store/duck.h"
#include "sync/keboola.h"

#define KV_SINCE "agnes_keboola_since"
#define KV_TABLE "agnes_keboola_table"
#define PARTITION_COLUMN "__agnes_partition"
#define MAX_CHUNKS 120
#define NAME_MAX_LEN 256
#define TYPE_MAX_LEN 48

/* ---- the client and small helpers --------------------------------------- */

static int open_client(const connector_settings *settings, const atomic_bool *cancel, keboola_client *kc,
                       agnes_error *err)
{
    return keboola_client_open(kc, settings->url, settings->secret, &settings->outbound, cancel, err);
}

static const char *row_text(const json_t *row, const char *key)
{
    const char *value = json_string_value(json_object_get(row, key));
    return value ? value : "";
}

static void append_path_id(strbuf *out, const char *prefix, const char *table_id, const char *suffix)
{
    strbuf_append_str(out, prefix);
    for (const unsigned char *p = (const unsigned char *)table_id; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.' || *p == '~')
            strbuf_append_char(out, (char)*p);
        else
            strbuf_appendf(out, "%%%02X", *p);
    }
    strbuf_append_str(out, suffix);
}

static int table_detail(keboola_client *kc, const char *table_id, json_t **detail, agnes_error *err)
{
    strbuf path;
    strbuf_init(&path);
    append_path_id(&path, "tables/", table_id, "");
    int rc = strbuf_failed(&path) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                  : keboola_get(kc, path.data, detail, err);
    strbuf_free(&path);
    if (rc == AGNES_ERR_NOT_FOUND)
        agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                        "Keboola has no table %s (or the token cannot see it): check bucket and source_table of the "
                        "registered table (GET /api/admin/registry) against the project's Storage",
                        table_id);
    return rc;
}

/* ---- test_connection ---------------------------------------------------- */

static size_t readable_buckets(const json_t *verify)
{
    const json_t *permissions = json_object_get(verify, "bucketPermissions"); /* [] when empty */
    return json_is_object(permissions) ? json_object_size(permissions) : 0;
}

static int test_connection(const connector_settings *settings, json_t **details, agnes_error *err)
{
    keboola_client kc;
    json_t *verify = NULL, *buckets = NULL;
    char project_id[64];
    *details = NULL;
    if (open_client(settings, NULL, &kc, err))
        return err->code;
    kc.attempts = 2; /* an admin is waiting for the answer: say what is wrong, soon */
    kc.max_wait_seconds = 3;
    int rc = keboola_get(&kc, "tokens/verify", &verify, err);
    if (rc == AGNES_OK && !json_is_object(verify))
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "%s answered tokens/verify with something that is not a token: it is not a Keboola "
                             "Storage API; check the stack URL",
                             kc.base);
    if (rc == AGNES_OK) {
        json_object_del(verify, "token"); /* Storage echoes the token: it goes no further */
        bool master = json_is_true(json_object_get(verify, "isMasterToken"));
        bool manage = json_is_true(json_object_get(verify, "canManageBuckets"));
        const json_t *owner = json_object_get(verify, "owner");
        keboola_id_text(json_object_get(owner, "id"), project_id, sizeof project_id);
        if (!master && !manage && readable_buckets(verify) == 0)
            rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                 "the token is valid for project '%s' (%s) but may read no bucket: in Keboola, "
                                 "Settings > API Tokens, give it read access to the buckets to share (or to all "
                                 "buckets), then configure again",
                                 json_string_value(json_object_get(owner, "name"))
                                     ? json_string_value(json_object_get(owner, "name"))
                                     : "?",
                                 project_id);
        if (rc == AGNES_OK && (rc = keboola_get(&kc, "buckets", &buckets, err)) == AGNES_OK &&
            !json_is_array(buckets))
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "the bucket list of %s is not a list", kc.base);
        if (rc == AGNES_OK)
            *details = json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:b, s:I, s:O?}", "project_id", project_id,
                                 "project_name", json_string_value(json_object_get(owner, "name")), "stack", kc.base,
                                 "file_storage_provider",
                                 json_string_value(json_object_get(owner, "fileStorageProvider")), "token_description",
                                 json_string_value(json_object_get(verify, "description")), "master_token", master,
                                 "readable_buckets", (json_int_t)json_array_size(buckets), "expires",
                                 json_object_get(verify, "expires"));
    }
    json_decref(verify);
    json_decref(buckets);
    keboola_client_close(&kc);
    return rc;
}

/* ---- discover / describe ------------------------------------------------ */

static json_t *describe_columns(const json_t *detail, const json_t *names)
{
    json_t *columns = json_array();
    size_t i;
    const json_t *name;
    json_array_foreach(names, i, name) {
        char type[TYPE_MAX_LEN];
        if (!json_is_string(name))
            continue;
        keboola_column_type(detail, json_string_value(name), type, sizeof type);
        json_array_append_new(columns, json_pack("{s:O, s:s, s:s?}", "name", name, "type", type, "description",
                                                 keboola_column_description(detail, json_string_value(name))));
    }
    return columns;
}

static json_t *discovered_entry(const json_t *table)
{
    const char *id = json_string_value(json_object_get(table, "id"));
    const char *name = json_string_value(json_object_get(table, "name"));
    const char *bucket = json_string_value(json_object_get(json_object_get(table, "bucket"), "id"));
    char view[80], bucket_from_id[300];
    if (id == NULL || name == NULL)
        return NULL;
    if (bucket == NULL) { /* "<bucket>.<name>" */
        snprintf(bucket_from_id, sizeof bucket_from_id, "%.*s", (int)(strlen(id) - strlen(name) - 1), id);
        bucket = bucket_from_id;
    }
    keboola_view_name(id, view, sizeof view);
    const json_t *key = json_object_get(table, "primaryKey");
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:O?, s:O, s:s?, s:o}", "id", view, "keboola_id", id,
                     "bucket", bucket, "source_table", name, "kind",
                     json_is_true(json_object_get(table, "isAlias")) ? "alias table" : "table", "rows_estimate",
                     (json_int_t)json_integer_value(json_object_get(table, "rowsCount")), "size_bytes",
                     (json_int_t)json_integer_value(json_object_get(table, "dataSizeBytes")), "last_change",
                     json_object_get(table, "lastChangeDate"), "primary_key",
                     json_is_array(key) ? key : json_array(), "description", keboola_table_description(table),
                     "columns", describe_columns(table, json_object_get(table, "columns")));
}

static const char discover_include[] = "include=columns,metadata,columnMetadata";

static int list_tables(keboola_client *kc, json_t **tables, agnes_error *err)
{
    char path[128];
    snprintf(path, sizeof path, "tables?%s,buckets", discover_include);
    int rc = keboola_get(kc, path, tables, err);
    if (rc == AGNES_OK && json_is_array(*tables))
        return AGNES_OK;
    if (rc == AGNES_ERR_CONFIG || rc == AGNES_ERR_NETWORK)
        return rc;
    /* A bucket-scoped token may not list all tables: ask bucket by bucket. */
    json_decref(*tables);
    *tables = NULL;
    json_t *buckets = NULL;
    if ((rc = keboola_get(kc, "buckets", &buckets, err)) != AGNES_OK)
        return rc;
    *tables = json_array();
    size_t i;
    json_t *bucket;
    json_array_foreach(buckets, i, bucket) {
        const char *id = json_string_value(json_object_get(bucket, "id"));
        json_t *some = NULL;
        strbuf bucket_path;
        strbuf_init(&bucket_path);
        if (id == NULL)
            continue;
        append_path_id(&bucket_path, "buckets/", id, "/tables?");
        strbuf_append_str(&bucket_path, discover_include);
        rc = keboola_get(kc, bucket_path.data, &some, err);
        strbuf_free(&bucket_path);
        if (rc == AGNES_ERR_FORBIDDEN) { /* a bucket this token may not read is not listed */
            rc = AGNES_OK;
            continue;
        }
        if (rc != AGNES_OK)
            break;
        size_t j;
        json_t *table;
        json_array_foreach(some, j, table) {
            if (json_object_get(table, "bucket") == NULL)
                json_object_set(table, "bucket", bucket);
            json_array_append(*tables, table);
        }
        json_decref(some);
    }
    json_decref(buckets);
    return rc;
}

static int discover(const connector_settings *settings, json_t **out, agnes_error *err)
{
    keboola_client kc;
    json_t *tables = NULL;
    *out = NULL;
    if (open_client(settings, NULL, &kc, err))
        return err->code;
    int rc = list_tables(&kc, &tables, err);
    if (rc == AGNES_OK) {
        *out = json_array();
        size_t i;
        json_t *table;
        json_array_foreach(tables, i, table) {
            json_t *entry = discovered_entry(table);
            if (entry != NULL)
                json_array_append_new(*out, entry);
        }
    }
    json_decref(tables);
    keboola_client_close(&kc);
    return rc;
}

static int describe(const connector_settings *settings, const json_t *row, json_t **out, agnes_error *err)
{
    keboola_client kc;
    json_t *detail = NULL;
    char table_id[512];
    *out = NULL;
    if (keboola_row_table_id(row, table_id, sizeof table_id, err) || open_client(settings, NULL, &kc, err))
        return err->code;
    int rc = table_detail(&kc, table_id, &detail, err);
    if (rc == AGNES_OK) {
        json_t *columns = describe_columns(detail, json_object_get(detail, "columns"));
        size_t i;
        json_t *column;
        json_array_foreach(columns, i, column)
            json_object_set(column, "source_type", json_object_get(column, "type"));
        *out = columns;
    }
    json_decref(detail);
    keboola_client_close(&kc);
    return rc;
}

/* ---- the columns an export has ------------------------------------------ */

typedef struct table_shape {
    size_t count;
    char (*names)[NAME_MAX_LEN];
    char (*types)[TYPE_MAX_LEN];
} table_shape;

static void shape_free(table_shape *shape)
{
    free(shape->names);
    free(shape->types);
    memset(shape, 0, sizeof *shape);
}

/* The columns of `names` (a JSON array, or a comma list when columns_csv)
 * with their Storage types. */
static int shape_from(const json_t *detail, const json_t *names, const char *columns_csv, table_shape *shape,
                      agnes_error *err)
{
    size_t count = 0;
    memset(shape, 0, sizeof *shape);
    if (columns_csv != NULL) {
        count = 1;
        for (const char *p = columns_csv; *p; p++)
            count += *p == ',';
    } else {
        count = json_array_size(names);
    }
    if (count == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "the Keboola table has no columns");
    shape->names = calloc(count, sizeof *shape->names);
    shape->types = calloc(count, sizeof *shape->types);
    if (shape->names == NULL || shape->types == NULL) {
        shape_free(shape);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    const char *at = columns_csv;
    for (size_t i = 0; i < count; i++) {
        if (columns_csv != NULL) {
            size_t len = strcspn(at, ",");
            snprintf(shape->names[i], NAME_MAX_LEN, "%.*s", (int)len, at);
            at += len + (at[len] == ',');
        } else {
            snprintf(shape->names[i], NAME_MAX_LEN, "%s", json_string_value(json_array_get(names, i)) ? json_string_value(json_array_get(names, i)) : "");
        }
        keboola_column_type(detail, shape->names[i], shape->types[i], TYPE_MAX_LEN);
    }
    shape->count = count;
    return AGNES_OK;
}

static ssize_t shape_index(const table_shape *shape, const char *name)
{
    for (size_t i = 0; i < shape->count; i++)
        if (strcmp(shape->names[i], name) == 0)
            return (ssize_t)i;
    return -1;
}

/* ---- SQL pieces --------------------------------------------------------- */

static void append_file_list(strbuf *sql, const keboola_export *export)
{
    strbuf_append_char(sql, '[');
    for (size_t i = 0; i < export->count; i++) {
        if (i > 0)
            strbuf_append_str(sql, ", ");
        duck_append_literal(sql, export->paths[i]);
    }
    strbuf_append_char(sql, ']');
}

/* A relation with the export's rows in the shape's columns and types. */
static void append_reader(strbuf *sql, const keboola_export *export, const table_shape *shape, bool header_row)
{
    if (export->count == 0) { /* nothing exported: the typed empty table */
        strbuf_append_str(sql, "(SELECT ");
        for (size_t i = 0; i < shape->count; i++) {
            strbuf_appendf(sql, "%sCAST(NULL AS %s) AS ", i ? ", " : "", shape->types[i]);
            duck_append_identifier(sql, shape->names[i]);
        }
        strbuf_append_str(sql, " WHERE false)");
        return;
    }
    if (strcmp(export->file_type, "parquet") == 0) { /* Snowflake unloads text: retype as Storage says */
        strbuf_append_str(sql, "(SELECT ");
        for (size_t i = 0; i < shape->count; i++) {
            strbuf_append_str(sql, i ? ", CAST(" : "CAST(");
            duck_append_identifier(sql, shape->names[i]);
            strbuf_appendf(sql, " AS %s) AS ", shape->types[i]);
            duck_append_identifier(sql, shape->names[i]);
        }
        strbuf_append_str(sql, " FROM read_parquet(");
        append_file_list(sql, export);
        strbuf_append_str(sql, ", union_by_name = true))");
        return;
    }
    strbuf_append_str(sql, "read_csv(");
    append_file_list(sql, export);
    strbuf_appendf(sql, ", header = %s, auto_detect = false, delim = ',', quote = '\"', escape = '\"',"
                        " nullstr = '', allow_quoted_nulls = true, max_line_size = 67108864, buffer_size = 134217728",
                   header_row ? "true" : "false");
    bool first = true;
    for (size_t i = 0; i < shape->count; i++) { /* text keeps "": Storage has no NULL for it */
        if (strcmp(shape->types[i], "VARCHAR") != 0)
            continue;
        strbuf_append_str(sql, first ? ", force_not_null = [" : ", ");
        duck_append_literal(sql, shape->names[i]);
        first = false;
    }
    strbuf_append_str(sql, first ? ", columns = {" : "], columns = {");
    for (size_t i = 0; i < shape->count; i++) {
        if (i > 0)
            strbuf_append_str(sql, ", ");
        duck_append_literal(sql, shape->names[i]);
        strbuf_append_str(sql, ": ");
        duck_append_literal(sql, shape->types[i]);
    }
    strbuf_append_str(sql, "})");
}

static void append_copy_options(strbuf *sql, const char *table_id, int64_t since)
{
    char since_text[32];
    snprintf(since_text, sizeof since_text, "%lld", (long long)since);
    strbuf_append_str(sql, " (FORMAT parquet, COMPRESSION zstd, KV_METADATA {" KV_TABLE ": ");
    duck_append_literal(sql, table_id);
    strbuf_append_str(sql, ", " KV_SINCE ": ");
    duck_append_literal(sql, since_text);
    strbuf_append_str(sql, "})");
}

static int run_sql(duckdb_connection conn, strbuf *sql, agnes_error *err)
{
    if (strbuf_failed(sql))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    return duck_exec(conn, sql->data, err);
}

static int run_count(duckdb_connection conn, strbuf *sql, long long *rows, agnes_error *err)
{
    bool found = false;
    *rows = 0;
    if (strbuf_failed(sql))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    return duck_query_int(conn, sql->data, rows, &found, err);
}

/* A single-file CSV export may carry a header row (slices never do). */
static bool first_row_is_header(duckdb_connection conn, const keboola_export *export, const table_shape *shape)
{
    if (export->sliced || export->count != 1 || strcmp(export->file_type, "csv") != 0)
        return false;
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT * FROM read_csv(");
    duck_append_literal(&sql, export->paths[0]);
    strbuf_append_str(&sql, ", header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"',"
                            " max_line_size = 67108864, buffer_size = 134217728, columns = {");
    for (size_t i = 0; i < shape->count; i++)
        strbuf_appendf(&sql, "%s'c%zu': 'VARCHAR'", i ? ", " : "", i);
    strbuf_append_str(&sql, "}) LIMIT 1");
    duckdb_result result;
    bool header = false;
    if (!strbuf_failed(&sql) && duckdb_query(conn, sql.data, &result) == DuckDBSuccess) {
        header = duckdb_row_count(&result) == 1;
        for (size_t i = 0; header && i < shape->count; i++) {
            char value[NAME_MAX_LEN];
            header = duck_result_text(&result, i, 0, value, sizeof value) && strcmp(value, shape->names[i]) == 0;
        }
        duckdb_destroy_result(&result);
    }
    strbuf_free(&sql);
    return header;
}

/* A DuckDB for one table's work: on disk in the work dir, so a large merge
 * spills instead of exhausting memory. */
static int open_stage(const connector_job *job, const char *view, duck_session *session, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 128], spill[AGNES_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s.stage.duckdb", job->work_dir, view);
    snprintf(spill, sizeof spill, "%s/%s.spill", job->work_dir, view);
    unlink(path);
    if (duck_session_open(session, path, false, err))
        return err->code;
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SET preserve_insertion_order = false; SET temp_directory = ");
    duck_append_literal(&sql, spill);
    int rc = run_sql(session->connection, &sql, err);
    strbuf_free(&sql);
    if (rc != AGNES_OK)
        duck_session_close(session);
    return rc;
}

/* ---- one table ---------------------------------------------------------- */

typedef struct table_run {
    const connector_settings *settings;
    const connector_job *job;
    keboola_client kc;
    char table_id[512];
    char view[80];
    char export_dir[AGNES_PATH_MAX + 128];
    json_t *detail;
    table_shape shape;
    duck_session stage;
    bool stage_open;
} table_run;

static int export_table(table_run *run, const json_t *params, keboola_export *export, agnes_error *err)
{
    keboola_export_options options = {.dir = run->export_dir,
                                      .parallel_downloads = run->settings->parallel_downloads,
                                      .stall_seconds = run->settings->download_stall_seconds,
                                      .timeout_seconds = run->settings->export_timeout_seconds};
    return keboola_export_table(&run->kc, run->table_id, params, &options, export, err);
}

/* COPY (SELECT <export>) TO the job's file. */
static int write_export(table_run *run, const keboola_export *export, int64_t since, long long *rows,
                        agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    bool header = first_row_is_header(run->stage.connection, export, &run->shape);
    strbuf_append_str(&sql, "COPY (SELECT * FROM ");
    append_reader(&sql, export, &run->shape, header);
    strbuf_append_str(&sql, ") TO ");
    duck_append_literal(&sql, run->job->parquet_path);
    append_copy_options(&sql, run->table_id, since);
    int rc = run_count(run->stage.connection, &sql, rows, err);
    strbuf_free(&sql);
    if (rc == AGNES_ERR_DB)
        agnes_error_wrap(err, "reading the export of %s with Storage's column types", run->table_id);
    return rc;
}

static int full_export(table_run *run, const json_t *params, long long *rows, agnes_error *err)
{
    keboola_export export;
    int rc = export_table(run, params, &export, err);
    if (rc == AGNES_OK)
        rc = write_export(run, &export, export.started_at, rows, err);
    keboola_export_free(&export);
    return rc;
}

/* The published file's "since" entry when it is this table's; -1 else. */
static int64_t published_since(table_run *run)
{
    struct stat st;
    if (stat(run->job->published_path, &st) != 0)
        return -1;
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata(");
    duck_append_literal(&sql, run->job->published_path);
    strbuf_append_char(&sql, ')');
    json_t *rows = NULL;
    agnes_error ignored;
    int64_t since = -1;
    bool same_table = false;
    if (!strbuf_failed(&sql) && duck_query_json(run->stage.connection, sql.data, NULL, 0, &rows, &ignored) == AGNES_OK) {
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            if (strcmp(row_text(row, "k"), KV_SINCE) == 0)
                since = atoll(row_text(row, "v"));
            if (strcmp(row_text(row, "k"), KV_TABLE) == 0)
                same_table = strcmp(row_text(row, "v"), run->table_id) == 0;
        }
    }
    json_decref(rows);
    strbuf_free(&sql);
    return same_table && since > 0 ? since : -1;
}

/* The merge key: the registry's primary_key, else Storage's primaryKey. */
static int primary_key(table_run *run, json_t **key, agnes_error *err)
{
    const json_t *registered = json_object_get(run->job->row, "primary_key");
    const json_t *storage = json_object_get(run->detail, "primaryKey");
    const json_t *chosen = json_array_size(registered) > 0 ? registered : storage;
    *key = NULL;
    if (json_array_size(chosen) == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s has no primary key in Keboola or in the registry, and sync_strategy %s merges "
                               "changed rows by one: set primary_key on the table (PUT /api/admin/registry/%s "
                               "{\"primary_key\": [\"id\"]}) or use sync_strategy full_refresh",
                               run->table_id, row_text(run->job->row, "sync_strategy"), row_text(run->job->row, "id"));
    size_t i;
    const json_t *name;
    json_array_foreach(chosen, i, name) {
        if (!json_is_string(name) || shape_index(&run->shape, json_string_value(name)) < 0)
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "the primary key column '%s' of %s is not one of the table's columns: fix "
                                   "primary_key (PUT /api/admin/registry/%s)",
                                   json_string_value(name) ? json_string_value(name) : "?", run->table_id,
                                   row_text(run->job->row, "id"));
    }
    *key = json_incref((json_t *)chosen);
    return AGNES_OK;
}

static void append_key_match(strbuf *sql, const json_t *key, const char *left, const char *right)
{
    size_t i;
    const json_t *name;
    json_array_foreach(key, i, name) {
        strbuf_appendf(sql, "%s%s.", i ? " AND " : "", left);
        duck_append_identifier(sql, json_string_value(name));
        strbuf_appendf(sql, " IS NOT DISTINCT FROM %s.", right);
        duck_append_identifier(sql, json_string_value(name));
    }
}

static void append_key_list(strbuf *sql, const json_t *key)
{
    size_t i;
    const json_t *name;
    json_array_foreach(key, i, name) {
        if (i > 0)
            strbuf_append_str(sql, ", ");
        duck_append_identifier(sql, json_string_value(name));
    }
}

/* The columns of Parquet files, by name. */
static int file_columns(duckdb_connection conn, const char *const *files, size_t count, json_t **names,
                        agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet([");
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            strbuf_append_str(&sql, ", ");
        duck_append_literal(&sql, files[i]);
    }
    strbuf_append_str(&sql, "], union_by_name = true))");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_query_json(conn, sql.data, NULL, 0, names, err);
    strbuf_free(&sql);
    return rc;
}

static bool names_contain(const json_t *names, const char *name)
{
    size_t i;
    const json_t *row;
    json_array_foreach(names, i, row)
        if (strcmp(row_text(row, "column_name"), name) == 0)
            return true;
    return false;
}

/* SELECT list of earlier rows in today's columns and types: a column
 * Storage added is NULL for them, one it dropped goes. */
static void append_retyped(strbuf *sql, const table_shape *shape, const json_t *old_names, const char *alias)
{
    for (size_t i = 0; i < shape->count; i++) {
        if (i > 0)
            strbuf_append_str(sql, ", ");
        if (names_contain(old_names, shape->names[i])) {
            strbuf_appendf(sql, "CAST(%s.", alias);
            duck_append_identifier(sql, shape->names[i]);
            strbuf_appendf(sql, " AS %s)", shape->types[i]);
        } else {
            strbuf_appendf(sql, "CAST(NULL AS %s)", shape->types[i]);
        }
        strbuf_append_str(sql, " AS ");
        duck_append_identifier(sql, shape->names[i]);
    }
}

/* delta := the export, one row per key. */
static int stage_delta(table_run *run, const keboola_export *export, const json_t *key, const char *extra_select,
                       agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "CREATE OR REPLACE TABLE delta AS SELECT *");
    if (extra_select != NULL)
        strbuf_appendf(&sql, ", %s", extra_select);
    strbuf_append_str(&sql, " FROM ");
    append_reader(&sql, export, &run->shape, first_row_is_header(run->stage.connection, export, &run->shape));
    strbuf_append_str(&sql, " QUALIFY row_number() OVER (PARTITION BY ");
    append_key_list(&sql, key);
    strbuf_append_str(&sql, ") = 1");
    int rc = run_sql(run->stage.connection, &sql, err);
    strbuf_free(&sql);
    return rc;
}

static int incremental(table_run *run, long long *rows, agnes_error *err)
{
    json_t *key = NULL;
    int rc = primary_key(run, &key, err);
    if (rc != AGNES_OK)
        return rc;
    int64_t since = published_since(run);
    if (since < 0) { /* first sync, or another table's file: everything */
        json_decref(key);
        return full_export(run, NULL, rows, err);
    }
    json_int_t window = json_is_integer(json_object_get(run->job->row, "incremental_window_days"))
                            ? json_integer_value(json_object_get(run->job->row, "incremental_window_days"))
                            : run->settings->incremental_window_days;
    char changed_since[32];
    snprintf(changed_since, sizeof changed_since, "%lld", (long long)(since - (int64_t)window * 86400));
    json_t *params = json_pack("{s:s}", "changedSince", changed_since);
    keboola_export export;
    rc = export_table(run, params, &export, err);
    json_decref(params);
    if (rc != AGNES_OK) {
        json_decref(key);
        return rc;
    }
    json_t *old_names = NULL;
    const char *published[] = {run->job->published_path};
    agnes_error why;
    strbuf sql;
    strbuf_init(&sql);
    int merge = stage_delta(run, &export, key, NULL, &why);
    if (merge == AGNES_OK)
        merge = file_columns(run->stage.connection, published, 1, &old_names, &why);
    if (merge == AGNES_OK) {
        strbuf_append_str(&sql, "COPY (SELECT * FROM delta UNION ALL SELECT ");
        append_retyped(&sql, &run->shape, old_names, "o");
        strbuf_append_str(&sql, " FROM read_parquet(");
        duck_append_literal(&sql, run->job->published_path);
        strbuf_append_str(&sql, ") o ANTI JOIN delta d ON ");
        append_key_match(&sql, key, "o", "d");
        strbuf_append_str(&sql, ") TO ");
        duck_append_literal(&sql, run->job->parquet_path);
        append_copy_options(&sql, run->table_id, export.started_at);
        merge = run_count(run->stage.connection, &sql, rows, &why);
    }
    strbuf_free(&sql);
    json_decref(old_names);
    keboola_export_free(&export);
    json_decref(key);
    if (merge == AGNES_OK)
        return AGNES_OK;
    if (run->job->cancel != NULL && atomic_load(run->job->cancel))
        return agnes_error_set(err, AGNES_ERR_NETWORK, "the sync was stopped");
    log_warn("msg=\"incremental merge impossible, exporting the whole table\" table=%s detail=\"%s\"", run->table_id,
             why.message);
    return full_export(run, NULL, rows, err);
}

/* ---- partitioned -------------------------------------------------------- */

typedef struct partition_set {
    size_t count;
    char **labels; /* partition names ("2024_03") */
} partition_set;

static void partition_set_free(partition_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->labels[i]);
    free(set->labels);
    memset(set, 0, sizeof *set);
}

static int partition_set_add(partition_set *set, const char *label, agnes_error *err)
{
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->labels[i], label) == 0)
            return AGNES_OK;
    char **grown = realloc(set->labels, (set->count + 1) * sizeof *grown);
    if (grown == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    set->labels = grown;
    if ((set->labels[set->count] = util_strdup(label)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    set->count++;
    return AGNES_OK;
}

static void partition_dir(const table_run *run, char *out, size_t out_size)
{
    const char *published = run->job->published_path;
    size_t len = strlen(published);
    if (len > 8 && strcmp(published + len - 8, ".parquet") == 0)
        len -= 8;
    snprintf(out, out_size, "%.*s.partitions", (int)len, published);
}

/* The partition files in dir (labels), and every ".tmp-" leftover of a
 * killed run removed (the source's lock is held: none is live). */
static int list_partitions(const char *dir, partition_set *set, agnes_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *entry;
    int rc = AGNES_OK;
    memset(set, 0, sizeof *set);
    while (d != NULL && rc == AGNES_OK && (entry = readdir(d)) != NULL) {
        char path[AGNES_PATH_MAX + 300];
        size_t len = strlen(entry->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (strncmp(entry->d_name, ".tmp-", 5) == 0 || strstr(entry->d_name, ".tmp-run_") != NULL) {
            agnes_error ignored;
            if (util_is_directory(path))
                util_remove_tree(path, &ignored);
            else
                unlink(path);
        } else if (len > 8 && strcmp(entry->d_name + len - 8, ".parquet") == 0) {
            char label[300];
            snprintf(label, sizeof label, "%.*s", (int)(len - 8), entry->d_name);
            rc = partition_set_add(set, label, err);
        }
    }
    if (d != NULL)
        closedir(d);
    return rc;
}

static void partition_file(const char *dir, const char *label, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s.parquet", dir, label);
}

/* strftime pattern of the row's granularity. */
static const char *partition_pattern(const json_t *row)
{
    const char *granularity = json_string_value(json_object_get(row, "partition_granularity"));
    if (granularity != NULL && strcmp(granularity, "day") == 0)
        return "%Y_%m_%d";
    if (granularity != NULL && strcmp(granularity, "year") == 0)
        return "%Y";
    return "%Y_%m";
}

/* The SQL expression of a row's partition label. */
static void append_partition_expression(strbuf *sql, const table_run *run)
{
    const char *column = row_text(run->job->row, "partition_by");
    strbuf_append_str(sql, "coalesce(strftime(TRY_CAST(");
    duck_append_identifier(sql, column);
    strbuf_appendf(sql, " AS TIMESTAMP), '%s'), 'undated')", partition_pattern(run->job->row));
}

/* Write rows (a table of the stage with PARTITION_COLUMN) as partition
 * files under dir, replacing `replaced` (labels to rewrite; those that
 * get no rows are deleted). */
static int write_partitions(table_run *run, const char *rows_table, const char *dir, const partition_set *replaced,
                            agnes_error *err)
{
    char hive[AGNES_PATH_MAX + 128];
    snprintf(hive, sizeof hive, "%s/.tmp-%s", dir, run->job->run_id);
    agnes_error ignored;
    util_remove_tree(hive, &ignored);
    strbuf sql;
    strbuf_init(&sql);
    strbuf_appendf(&sql, "COPY %s TO ", rows_table);
    duck_append_literal(&sql, hive);
    strbuf_append_str(&sql, " (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (" PARTITION_COLUMN "))");
    int rc = util_mkdir_p(dir, 0755, err);
    if (rc == AGNES_OK)
        rc = run_sql(run->stage.connection, &sql, err);
    strbuf_free(&sql);
    partition_set written = {0};
    DIR *d = rc == AGNES_OK ? opendir(hive) : NULL;
    struct dirent *entry;
    static const char prefix[] = PARTITION_COLUMN "=";
    while (d != NULL && rc == AGNES_OK && (entry = readdir(d)) != NULL) {
        if (strncmp(entry->d_name, prefix, sizeof prefix - 1) != 0)
            continue;
        const char *label = entry->d_name + sizeof prefix - 1;
        char part_dir[AGNES_PATH_MAX + 400], target[AGNES_PATH_MAX + 400], staged[AGNES_PATH_MAX + 500];
        snprintf(part_dir, sizeof part_dir, "%s/%s", hive, entry->d_name);
        partition_file(dir, label, target, sizeof target);
        snprintf(staged, sizeof staged, "%s.tmp-%s", target, run->job->run_id);
        /* DuckDB may split a partition into several files: one file each */
        strbuf merge;
        strbuf_init(&merge);
        strbuf_append_str(&merge, "COPY (SELECT * FROM read_parquet(");
        char glob[AGNES_PATH_MAX + 500];
        snprintf(glob, sizeof glob, "%s/*.parquet", part_dir);
        duck_append_literal(&merge, glob);
        strbuf_append_str(&merge, ")) TO ");
        duck_append_literal(&merge, staged);
        strbuf_append_str(&merge, " (FORMAT parquet, COMPRESSION zstd)");
        rc = run_sql(run->stage.connection, &merge, err);
        strbuf_free(&merge);
        if (rc == AGNES_OK && rename(staged, target) != 0)
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot move %s into place: %s", staged, strerror(errno));
        if (rc == AGNES_OK)
            rc = partition_set_add(&written, label, err);
    }
    if (d != NULL)
        closedir(d);
    for (size_t i = 0; rc == AGNES_OK && replaced != NULL && i < replaced->count; i++) {
        bool kept = false;
        for (size_t j = 0; j < written.count; j++)
            kept = kept || strcmp(written.labels[j], replaced->labels[i]) == 0;
        char stale[AGNES_PATH_MAX + 400];
        partition_file(dir, replaced->labels[i], stale, sizeof stale);
        if (!kept && unlink(stale) != 0 && errno != ENOENT)
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot remove %s: %s", stale, strerror(errno));
    }
    util_remove_tree(hive, &ignored);
    partition_set_free(&written);
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(hive, err);
    return rc;
}

/* The union of the partitions as the job's file: what analysts download. */
static int write_union(table_run *run, const char *dir, int64_t since, long long *rows, agnes_error *err)
{
    partition_set parts;
    int rc = list_partitions(dir, &parts, err);
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "COPY (SELECT * FROM ");
    if (parts.count == 0) {
        keboola_export none = {.count = 0};
        append_reader(&sql, &none, &run->shape, false);
    } else {
        strbuf_append_str(&sql, "read_parquet([");
        for (size_t i = 0; i < parts.count; i++) {
            char file[AGNES_PATH_MAX + 400];
            partition_file(dir, parts.labels[i], file, sizeof file);
            if (i > 0)
                strbuf_append_str(&sql, ", ");
            duck_append_literal(&sql, file);
        }
        strbuf_append_str(&sql, "], union_by_name = true)");
    }
    strbuf_append_str(&sql, ") TO ");
    duck_append_literal(&sql, run->job->parquet_path);
    append_copy_options(&sql, run->table_id, since);
    if (rc == AGNES_OK)
        rc = run_count(run->stage.connection, &sql, rows, err);
    strbuf_free(&sql);
    partition_set_free(&parts);
    return rc;
}

/* Append one export to table staged (created by the first). */
static int stage_append(table_run *run, const keboola_export *export, bool first, agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, first ? "CREATE OR REPLACE TABLE staged AS SELECT * FROM " : "INSERT INTO staged SELECT * FROM ");
    append_reader(&sql, export, &run->shape, first_row_is_header(run->stage.connection, export, &run->shape));
    int rc = run_sql(run->stage.connection, &sql, err);
    strbuf_free(&sql);
    return rc;
}

/* The first load: chunks of the table's change history, newest first, back
 * to its creation, so no single export job has to carry the whole table. */
static int partitioned_first_load(table_run *run, const char *dir, const json_t *key, long long *rows,
                                  agnes_error *err)
{
    agnes_error ignored;
    util_remove_tree(dir, &ignored); /* a killed first load left partitions without a published union */
    int64_t created = keboola_parse_time(json_string_value(json_object_get(run->detail, "created")));
    json_int_t chunk_days = json_is_integer(json_object_get(run->job->row, "initial_load_chunk_days"))
                                ? json_integer_value(json_object_get(run->job->row, "initial_load_chunk_days"))
                                : 30;
    if (chunk_days < 1)
        chunk_days = 30;
    int64_t now = util_unix_now(), since_first = -1, chunk = (int64_t)chunk_days * 86400;
    int rc = AGNES_OK;
    for (int k = 0; rc == AGNES_OK; k++) {
        /* [now-(k+1)N-1d, now-kN): a day of overlap, duplicates merged by
         * key.  The last chunk has no lower bound: whatever is older. */
        int64_t since = now - (k + 1) * chunk - 86400, until = now - k * chunk;
        bool last = created < 0 || since <= created - 86400 || k + 1 >= MAX_CHUNKS;
        json_t *params = json_object();
        char text[32];
        if (!last) {
            snprintf(text, sizeof text, "%lld", (long long)since);
            json_object_set_new(params, "changedSince", json_string(text));
        }
        if (k > 0) {
            snprintf(text, sizeof text, "%lld", (long long)until);
            json_object_set_new(params, "changedUntil", json_string(text));
        }
        keboola_export export;
        rc = export_table(run, params, &export, err);
        json_decref(params);
        if (rc == AGNES_OK) {
            if (since_first < 0)
                since_first = export.started_at;
            rc = stage_append(run, &export, k == 0, err);
            keboola_export_free(&export);
        }
        if (last)
            break;
    }
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "CREATE OR REPLACE TABLE merged AS SELECT *, ");
    append_partition_expression(&sql, run);
    strbuf_append_str(&sql, " AS " PARTITION_COLUMN " FROM staged QUALIFY row_number() OVER (PARTITION BY ");
    append_key_list(&sql, key);
    strbuf_append_str(&sql, ") = 1");
    if (rc == AGNES_OK)
        rc = run_sql(run->stage.connection, &sql, err);
    strbuf_free(&sql);
    if (rc == AGNES_OK)
        rc = write_partitions(run, "merged", dir, NULL, err);
    if (rc == AGNES_OK)
        rc = write_union(run, dir, since_first, rows, err);
    return rc;
}

/* Later syncs: changed rows into the partitions they land in or leave. */
static int partitioned_merge(table_run *run, const char *dir, const json_t *key, int64_t since, long long *rows,
                             agnes_error *err)
{
    json_int_t window = json_is_integer(json_object_get(run->job->row, "incremental_window_days"))
                            ? json_integer_value(json_object_get(run->job->row, "incremental_window_days"))
                            : run->settings->incremental_window_days;
    char changed_since[32];
    snprintf(changed_since, sizeof changed_since, "%lld", (long long)(since - (int64_t)window * 86400));
    json_t *params = json_pack("{s:s}", "changedSince", changed_since);
    keboola_export export;
    int rc = export_table(run, params, &export, err);
    json_decref(params);
    if (rc != AGNES_OK)
        return rc;
    partition_set parts = {0}, affected = {0};
    json_t *found = NULL, *old_names = NULL;
    const char **files = NULL;
    strbuf expression, sql;
    strbuf_init(&expression);
    strbuf_init(&sql);
    append_partition_expression(&expression, run);
    strbuf_append_str(&expression, " AS " PARTITION_COLUMN);
    rc = stage_delta(run, &export, key, expression.data, err);
    if (rc == AGNES_OK)
        rc = list_partitions(dir, &parts, err);
    /* affected: where changed rows go, and where their earlier versions are */
    if (rc == AGNES_OK)
        rc = duck_query_json(run->stage.connection, "SELECT DISTINCT " PARTITION_COLUMN " AS label FROM delta", NULL,
                             0, &found, err);
    size_t i;
    json_t *row;
    json_array_foreach(found, i, row)
        if (rc == AGNES_OK)
            rc = partition_set_add(&affected, row_text(row, "label"), err);
    json_decref(found);
    found = NULL;
    char (*paths)[AGNES_PATH_MAX + 400] = parts.count ? calloc(parts.count, sizeof *paths) : NULL;
    files = parts.count ? calloc(parts.count, sizeof *files) : NULL;
    if (rc == AGNES_OK && parts.count > 0 && (paths == NULL || files == NULL))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (i = 0; rc == AGNES_OK && i < parts.count; i++) {
        partition_file(dir, parts.labels[i], paths[i], sizeof paths[i]);
        files[i] = paths[i];
    }
    if (rc == AGNES_OK && parts.count > 0) {
        strbuf_append_str(&sql, "SELECT DISTINCT parse_filename(o.filename, true) AS label FROM read_parquet([");
        for (i = 0; i < parts.count; i++) {
            if (i > 0)
                strbuf_append_str(&sql, ", ");
            duck_append_literal(&sql, files[i]);
        }
        strbuf_append_str(&sql, "], filename = true, union_by_name = true) o SEMI JOIN delta d ON ");
        append_key_match(&sql, key, "o", "d");
        rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_query_json(run->stage.connection, sql.data, NULL, 0, &found, err);
        json_array_foreach(found, i, row)
            if (rc == AGNES_OK)
                rc = partition_set_add(&affected, row_text(row, "label"), err);
        if (rc == AGNES_OK)
            rc = file_columns(run->stage.connection, files, parts.count, &old_names, err);
    }
    /* merged := changed rows + the untouched rows of the affected partitions */
    strbuf_reset(&sql);
    strbuf_append_str(&sql, "CREATE OR REPLACE TABLE merged AS SELECT * FROM delta");
    size_t old_files = 0;
    for (i = 0; i < affected.count; i++) {
        char file[AGNES_PATH_MAX + 400];
        partition_file(dir, affected.labels[i], file, sizeof file);
        if (!util_file_exists(file))
            continue;
        strbuf_append_str(&sql, old_files++ ? ", " : " UNION ALL SELECT * FROM (SELECT ");
        if (old_files == 1) {
            append_retyped(&sql, &run->shape, old_names, "o");
            strbuf_append_str(&sql, ", ");
            /* recomputed: the partition follows the row's date, not its old file */
            strbuf_append_str(&sql, "NULL AS " PARTITION_COLUMN " FROM read_parquet([");
        }
        duck_append_literal(&sql, file);
    }
    if (old_files > 0) {
        strbuf_append_str(&sql, "], union_by_name = true) o ANTI JOIN delta d ON ");
        append_key_match(&sql, key, "o", "d");
        strbuf_append_str(&sql, ")");
    }
    if (rc == AGNES_OK)
        rc = run_sql(run->stage.connection, &sql, err);
    strbuf_reset(&sql);
    strbuf_append_str(&sql, "UPDATE merged SET " PARTITION_COLUMN " = ");
    append_partition_expression(&sql, run);
    strbuf_append_str(&sql, " WHERE " PARTITION_COLUMN " IS NULL");
    if (rc == AGNES_OK)
        rc = run_sql(run->stage.connection, &sql, err);
    if (rc == AGNES_OK)
        rc = write_partitions(run, "merged", dir, &affected, err);
    if (rc == AGNES_OK)
        rc = write_union(run, dir, export.started_at, rows, err);
    free(paths);
    free(files);
    json_decref(found);
    json_decref(old_names);
    strbuf_free(&sql);
    strbuf_free(&expression);
    partition_set_free(&parts);
    partition_set_free(&affected);
    keboola_export_free(&export);
    return rc;
}

static int partitioned(table_run *run, long long *rows, agnes_error *err)
{
    json_t *key = NULL;
    char dir[AGNES_PATH_MAX + 64];
    const char *column = row_text(run->job->row, "partition_by");
    if (shape_index(&run->shape, column) < 0)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "partition_by '%s' is not a column of %s: set it to one of its date or timestamp "
                               "columns (PUT /api/admin/registry/%s)",
                               column, run->table_id, row_text(run->job->row, "id"));
    int rc = primary_key(run, &key, err);
    if (rc != AGNES_OK)
        return rc;
    partition_dir(run, dir, sizeof dir);
    int64_t since = util_is_directory(dir) ? published_since(run) : -1;
    if (since < 0) {
        rc = partitioned_first_load(run, dir, key, rows, err);
    } else {
        agnes_error why;
        rc = partitioned_merge(run, dir, key, since, rows, &why);
        if (rc != AGNES_OK && !(run->job->cancel != NULL && atomic_load(run->job->cancel))) {
            log_warn("msg=\"partition merge impossible, loading the table again\" table=%s detail=\"%s\"",
                     run->table_id, why.message);
            rc = partitioned_first_load(run, dir, key, rows, err);
        } else if (rc != AGNES_OK) {
            *err = why;
        }
    }
    json_decref(key);
    return rc;
}

/* ---- extract_table ------------------------------------------------------ */

static int local_table(table_run *run, long long *rows, agnes_error *err)
{
    const char *strategy = json_string_value(json_object_get(run->job->row, "sync_strategy"));
    if (strategy != NULL && strcmp(strategy, "incremental") == 0)
        return incremental(run, rows, err);
    if (strategy != NULL && strcmp(strategy, "partitioned") == 0)
        return partitioned(run, rows, err);
    json_t *params = json_object(), *filters = NULL;
    const json_t *where = json_object_get(run->job->row, "where_filters");
    int rc = AGNES_OK;
    if (where != NULL && !json_is_null(where)) {
        rc = keboola_where_filters(where, "where_filters", time(NULL), &filters, err);
        if (rc == AGNES_OK)
            json_object_set_new(params, "whereFilters", filters);
    }
    if (rc == AGNES_OK)
        rc = full_export(run, params, rows, err);
    json_decref(params);
    return rc;
}

static int materialized_table(table_run *run, long long *rows, agnes_error *err)
{
    json_t *params = NULL;
    int rc = keboola_materialized_spec(json_string_value(json_object_get(run->job->row, "source_query")), time(NULL),
                                       &params, err);
    const char *columns = json_string_value(json_object_get(params, "columns"));
    if (rc == AGNES_OK && columns != NULL) { /* the export has the spec's columns, in its order */
        table_shape subset;
        rc = shape_from(run->detail, NULL, columns, &subset, err);
        for (size_t i = 0; rc == AGNES_OK && i < subset.count; i++)
            if (shape_index(&run->shape, subset.names[i]) < 0)
                rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                     "the source_query lists column '%s', which %s does not have", subset.names[i],
                                     run->table_id);
        if (rc == AGNES_OK) {
            shape_free(&run->shape);
            run->shape = subset;
        } else {
            shape_free(&subset);
        }
    }
    if (rc == AGNES_OK)
        rc = full_export(run, params, rows, err);
    json_decref(params);
    return rc;
}

static int extract_table(const connector_settings *settings, const connector_job *job, long long *rows,
                         agnes_error *err)
{
    table_run run;
    memset(&run, 0, sizeof run);
    run.settings = settings;
    run.job = job;
    *rows = 0;
    int rc = keboola_check_row(job->row, err);
    if (rc == AGNES_OK)
        rc = keboola_row_table_id(job->row, run.table_id, sizeof run.table_id, err);
    if (rc != AGNES_OK)
        return rc;
    snprintf(run.view, sizeof run.view, "%s", row_text(job->row, "id"));
    snprintf(run.export_dir, sizeof run.export_dir, "%s/%s.export", job->work_dir, run.view);
    if ((rc = open_client(settings, job->cancel, &run.kc, err)) != AGNES_OK)
        return rc;
    rc = table_detail(&run.kc, run.table_id, &run.detail, err);
    if (rc == AGNES_OK)
        rc = shape_from(run.detail, json_object_get(run.detail, "columns"), NULL, &run.shape, err);
    if (rc == AGNES_OK && (rc = open_stage(job, run.view, &run.stage, err)) == AGNES_OK)
        run.stage_open = true;
    if (rc == AGNES_OK) {
        if (strcmp(row_text(job->row, "query_mode"), "materialized") == 0)
            rc = materialized_table(&run, rows, err);
        else
            rc = local_table(&run, rows, err);
    }
    if (run.stage_open)
        duck_session_close(&run.stage);
    char stage_files[AGNES_PATH_MAX + 160];
    agnes_error ignored;
    snprintf(stage_files, sizeof stage_files, "%s/%s.stage.duckdb", job->work_dir, run.view);
    unlink(stage_files);
    strncat(stage_files, ".wal", sizeof stage_files - strlen(stage_files) - 1);
    unlink(stage_files);
    snprintf(stage_files, sizeof stage_files, "%s/%s.spill", job->work_dir, run.view);
    util_remove_tree(stage_files, &ignored);
    util_remove_tree(run.export_dir, &ignored);
    shape_free(&run.shape);
    json_decref(run.detail);
    keboola_client_close(&run.kc);
    keboola_redact(err->message, sizeof err->message, settings->secret);
    return rc;
}

const connector_ops keboola_connector = {
    .type = "keboola",
    .test_connection = test_connection,
    .discover = discover,
    .extract_table = extract_table,
    .remote_view = NULL,
    .describe = describe,
    .check_row = keboola_check_row,
};
