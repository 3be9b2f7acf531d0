#include "sync/local_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/utf8.h"
#include "core/util.h"
#include "engine/contract.h"
#include "store/duck.h"

/* How much of a text upload is inspected for NUL bytes. */
#define BINARY_PROBE_BYTES (64 * 1024)

static void sweep_dir(const char *dir, const char *prefix, const char *suffix);

static const char *const formats[] = {"csv", "tsv", "parquet", "json", "ndjson"};

static bool known_format(const char *format)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(format, formats[i]) == 0)
            return true;
    return false;
}

static const char *format_from_filename(const char *filename)
{
    static const struct {
        const char *extension;
        const char *format;
    } extensions[] = {{".csv", "csv"},         {".tsv", "tsv"},     {".tab", "tsv"},
                      {".parquet", "parquet"}, {".pq", "parquet"},  {".json", "json"},
                      {".ndjson", "ndjson"},   {".jsonl", "ndjson"}};
    const char *dot = filename ? strrchr(filename, '.') : NULL;
    for (size_t i = 0; dot != NULL && i < sizeof extensions / sizeof extensions[0]; i++)
        if (strcasecmp(dot, extensions[i].extension) == 0)
            return extensions[i].format;
    return NULL;
}

/* The first bytes of the file, for sniffing; returns how many were read. */
static ssize_t read_head(const char *file, char *buf, size_t size, agnes_error *err)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", file, strerror(errno));
    ssize_t n = read(fd, buf, size);
    if (n < 0)
        agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", file, strerror(errno));
    close(fd);
    return n < 0 ? -1 : n;
}

/* Pick the format (explicit, else the file name, else the first bytes) and
 * refuse what cannot be a table: an empty file, binary bytes in text. */
static int choose_format(const local_import *in, char *format, size_t format_size, agnes_error *err)
{
    char *probe = malloc(BINARY_PROBE_BYTES);
    if (probe == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    ssize_t n = read_head(in->file, probe, BINARY_PROBE_BYTES, err);
    int rc = AGNES_OK;
    const char *chosen = NULL;
    if (n < 0) {
        rc = err->code;
        goto done;
    }
    if (n == 0) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "The file is empty (0 bytes). Upload a file with a header row and at least one data row.");
        goto done;
    }
    if (in->format != NULL && in->format[0] != '\0') {
        if (!known_format(in->format)) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "Unknown format \"%s\". Use one of csv, tsv, parquet, json, ndjson.", in->format);
            goto done;
        }
        chosen = in->format;
    } else if ((chosen = format_from_filename(in->filename)) == NULL) {
        size_t i = 0;
        while (i < (size_t)n && (probe[i] == ' ' || probe[i] == '\n' || probe[i] == '\r' || probe[i] == '\t'))
            i++;
        chosen = n >= 4 && memcmp(probe, "PAR1", 4) == 0 ? "parquet"
                 : i < (size_t)n && probe[i] == '['      ? "json"
                 : i < (size_t)n && probe[i] == '{'      ? "ndjson"
                                                         : "csv";
    }
    if (strcmp(chosen, "parquet") != 0 && memchr(probe, '\0', (size_t)n) != NULL) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "The file contains binary bytes (NUL), so it is not %s text. Check that you picked the "
                             "right file; a Parquet file is sent with format=parquet.",
                             chosen);
        goto done;
    }
    snprintf(format, format_size, "%s", chosen);
done:
    free(probe);
    return rc;
}

/* DuckDB's message up to its first line break (the sentence, not the
 * dump), with the server's spool path replaced by words the caller knows,
 * cut on a whole character. */
static void first_line(const char *message, const char *file, char *out, size_t out_size)
{
    strbuf text;
    strbuf_init(&text);
    const char *p = message ? message : "unknown error";
    size_t file_len = strlen(file);
    while (*p != '\0' && *p != '\n') {
        if (strncmp(p, file, file_len) == 0) {
            strbuf_append_str(&text, "(the uploaded file)");
            p += file_len;
        } else {
            strbuf_append_char(&text, *p++);
        }
    }
    snprintf(out, out_size, "%s", text.data ? text.data : "");
    utf8_trim_partial(out);
    strbuf_free(&text);
}

/* The first row DuckDB rejected, as the sentence the caller gets. */
static int check_rejects(duckdb_connection conn, const local_reader *reader, const char *file, agnes_error *err)
{
    duckdb_result result;
    if (duckdb_query(conn,
                     "SELECT line, column_name, error_message, (SELECT count(*) FROM reject_errors) FROM reject_errors "
                     "ORDER BY line LIMIT 1",
                     &result) != DuckDBSuccess) {
        duckdb_destroy_result(&result);
        return AGNES_OK; /* no rejects table: the reader keeps none (not CSV) */
    }
    int rc = AGNES_OK;
    if (duckdb_row_count(&result) > 0) {
        char column[256], message[512];
        bool has_column = duck_result_text(&result, 1, 0, column, sizeof column);
        char *text = duckdb_value_varchar(&result, 2, 0);
        first_line(text, file, message, sizeof message);
        duckdb_free(text);
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "Line %lld of the %s%s%s%s: %s (%lld bad line%s in all). Fix the file and upload it "
                             "again; nothing was changed.%s",
                             (long long)duckdb_value_int64(&result, 0, 0), reader->format, has_column ? ", column \"" : "",
                             has_column ? column : "", has_column ? "\"" : "", message,
                             (long long)duckdb_value_int64(&result, 3, 0),
                             duckdb_value_int64(&result, 3, 0) == 1 ? "" : "s",
                             local_reader_conversion_hint(reader, has_column ? column : NULL, message));
    }
    duckdb_destroy_result(&result);
    return rc;
}

/* One COPY of the upload into tmp_parquet; *failure gets DuckDB's message
 * (the caller owns it) when it fails. */
static bool copy_once(duckdb_connection conn, const local_reader *reader, const char *file, const char *tmp_parquet,
                      long long *rows, char **failure)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "COPY (");
    local_reader_append_select(reader, file, &sql);
    strbuf_append_str(&sql, ") TO ");
    duck_append_literal(&sql, tmp_parquet);
    strbuf_append_str(&sql, " (FORMAT parquet)");
    duckdb_result result;
    bool ok = !strbuf_failed(&sql) && duckdb_query(conn, sql.data, &result) == DuckDBSuccess;
    *failure = NULL;
    if (ok)
        *rows = duckdb_value_int64(&result, 0, 0);
    else
        *failure = util_strdup(strbuf_failed(&sql) ? "out of memory" : duckdb_result_error(&result));
    if (!strbuf_failed(&sql))
        duckdb_destroy_result(&result);
    strbuf_free(&sql);
    return ok;
}

/* Convert the upload into tmp_parquet by the plan; *rows is what was
 * written.  A guarded conversion that fails (a value too long for a
 * DOUBLE, or a bad value DuckDB's CSV reader would name by line) is
 * measured and run again with final types. */
static int convert(duckdb_connection conn, local_reader *reader, const char *file, const char *tmp_parquet,
                   long long *rows, agnes_error *err)
{
    char *failure = NULL;
    agnes_error ignored;
    int rc = AGNES_OK;
    bool ok = copy_once(conn, reader, file, tmp_parquet, rows, &failure);
    if (!ok && local_reader_guarded(reader)) {
        unlink(tmp_parquet);
        free(failure);
        failure = NULL;
        /* The first attempt's rejected lines would be counted twice. */
        duck_exec(conn, "DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans", &ignored);
        if ((rc = local_reader_widen(conn, reader, file, err)) != AGNES_OK)
            return rc;
        ok = copy_once(conn, reader, file, tmp_parquet, rows, &failure);
    }
    if (!ok) {
        char message[512];
        first_line(failure, file, message, sizeof message);
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "The file could not be read as %s: %s. Check the file, or pass the right format "
                             "(csv, tsv, parquet, json, ndjson).%s",
                             reader->format, message, local_reader_conversion_hint(reader, NULL, message));
    } else {
        rc = check_rejects(conn, reader, file, err);
        if (rc == AGNES_OK && *rows == 0)
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "The file has no data rows. Upload a file with a header row and at least one row "
                                 "of data.");
    }
    free(failure);
    return rc;
}

/* The written file's columns, with how each type was chosen from the plan. */
static int describe(duckdb_connection conn, const char *parquet, const local_reader *reader, json_t **columns,
                    agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT column_name AS name, column_type AS type FROM (DESCRIBE SELECT * FROM read_parquet(");
    duck_append_literal(&sql, parquet);
    strbuf_append_str(&sql, "))");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_query_json(conn, sql.data, NULL, 0, columns, err);
    strbuf_free(&sql);
    size_t i, j;
    json_t *column, *planned;
    json_array_foreach(rc == AGNES_OK ? *columns : NULL, i, column) {
        json_object_set_new(column, "chosen", json_string("detected"));
        json_array_foreach(reader->columns, j, planned) {
            if (strcmp(json_string_value(json_object_get(planned, "name")),
                       json_string_value(json_object_get(column, "name"))) != 0)
                continue;
            json_object_set(column, "chosen", json_object_get(planned, "chosen"));
            if (json_object_get(planned, "note"))
                json_object_set(column, "note", json_object_get(planned, "note"));
        }
    }
    return rc;
}

/* The one absolute path inside read_parquet('...') of a view's SQL, quotes
 * undoubled; false when there is none. */
static bool view_parquet_path(const char *sql, char *out, size_t out_size)
{
    const char *p = sql ? strstr(sql, "read_parquet('") : NULL;
    size_t n = 0;
    if (p == NULL)
        return false;
    for (p += strlen("read_parquet('"); *p; p++) {
        if (*p == '\'') {
            if (p[1] != '\'')
                break;
            p++;
        }
        if (n + 1 >= out_size)
            return false;
        out[n++] = *p;
    }
    out[n] = '\0';
    return *p == '\'' && n > 0 && out[0] == '/';
}

/* Tables uploaded before names were checked may carry a name the engine
 * or the contract uses (duckdb_views, _meta): the catalog skips them, and
 * nothing could rename them.  The next extract names such a table
 * <name>_data (meta_data for _meta) - the name the refusal suggests - and
 * the row says what it was called ("renamed_from"). */
static void rename_reserved(json_t *tables)
{
    size_t i, j;
    json_t *table, *other;
    json_array_foreach(tables, i, table) {
        const char *name = json_string_value(json_object_get(table, "table"));
        char why[300], renamed[128];
        if (contract_table_name_ok(name, why, sizeof why) || !contract_is_identifier(name))
            continue;
        snprintf(renamed, sizeof renamed, "%.58s_data", name[0] == '_' ? name + 1 : name);
        bool free_name = contract_table_name_ok(renamed, why, sizeof why);
        json_array_foreach(tables, j, other)
            free_name = free_name && strcmp(json_string_value(json_object_get(other, "table")), renamed) != 0;
        if (!free_name)
            continue;
        log_warn("msg=\"a local table with a reserved name is renamed\" table=%s renamed=%s", name, renamed);
        json_object_set_new(table, "renamed_from", json_string(name));
        json_object_set_new(table, "table", json_string(renamed));
    }
}

/* The tables the extract at path publishes: [{table, path, description,
 * extracted_at, rows}] (new reference), empty when there is no extract.
 * The extract is attached read-only to conn as "published" and detached.
 * AGNES_ERR_IO when it exists but cannot be read: then nobody knows what
 * is published, and nothing may be written or removed. */
static int read_published(duckdb_connection conn, const char *extract, json_t **tables, agnes_error *err)
{
    json_t *rows = NULL;
    agnes_error ignored;
    *tables = json_array();
    if (*tables == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (!util_file_exists(extract))
        return AGNES_OK;
    int rc = duck_attach_read_only(conn, extract, "published", err);
    if (rc == AGNES_OK) {
        rc = duck_query_json(conn,
                             "SELECT m.table_name AS \"table\", m.description, CAST(m.extracted_at AS VARCHAR) AS"
                             " extracted_at, m.rows, v.sql FROM published._meta m LEFT JOIN duckdb_views() v"
                             " ON v.database_name = 'published' AND v.schema_name = 'main' AND v.view_name = m.table_name"
                             " ORDER BY m.table_name",
                             NULL, 0, &rows, err);
        duck_exec(conn, "DETACH published", &ignored);
    }
    if (rc != AGNES_OK) {
        json_decref(*tables);
        *tables = NULL;
        return agnes_error_set(err, AGNES_ERR_IO,
                               "the local source's %s cannot be read (%s); check it with `agnes contract check`, or "
                               "move it aside to start the local source afresh",
                               extract, err->message);
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        char path[AGNES_PATH_MAX];
        const char *table = json_string_value(json_object_get(row, "table"));
        if (table == NULL || !view_parquet_path(json_string_value(json_object_get(row, "sql")), path, sizeof path)) {
            log_warn("msg=\"a table of the local source has no Parquet view; dropped\" table=\"%s\"", table ? table : "");
            continue;
        }
        json_object_del(row, "sql");
        json_object_set_new(row, "path", json_string(path));
        json_array_append(*tables, row);
    }
    json_decref(rows);
    rename_reserved(*tables);
    return AGNES_OK;
}

/* read_published on a DuckDB of its own. */
static int read_published_alone(const char *extract, json_t **tables, agnes_error *err)
{
    duck_session session;
    *tables = NULL;
    if (duck_session_open(&session, NULL, false, err) != AGNES_OK)
        return err->code;
    int rc = read_published(session.connection, extract, tables, err);
    duck_session_close(&session);
    return rc;
}

/* One _meta row and one view for a table of the local source. */
static int describe_table(duckdb_connection conn, const json_t *table, agnes_error *err)
{
    const char *name = json_string_value(json_object_get(table, "table"));
    const char *parquet = json_string_value(json_object_get(table, "path"));
    const char *description = json_string_value(json_object_get(table, "description"));
    const char *extracted_at = json_string_value(json_object_get(table, "extracted_at"));
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "CREATE VIEW ");
    duck_append_identifier(&sql, name);
    strbuf_append_str(&sql, " AS SELECT * FROM read_parquet(");
    duck_append_literal(&sql, parquet);
    strbuf_append_str(&sql, ")");
    struct stat st;
    char size[32];
    snprintf(size, sizeof size, "%lld", stat(parquet, &st) == 0 ? (long long)st.st_size : 0LL);
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : duck_exec(conn, sql.data, err);
    if (rc == AGNES_OK) {
        strbuf_reset(&sql);
        /* Row counts travel with the table; a file nobody counted yet
         * (an extract of an older version) is counted from its footer. */
        char rows[32] = "";
        if (json_is_integer(json_object_get(table, "rows")))
            snprintf(rows, sizeof rows, "%lld", (long long)json_integer_value(json_object_get(table, "rows")));
        strbuf_append_str(&sql, "INSERT INTO _meta SELECT $1, $2, coalesce(CAST($5 AS BIGINT), (SELECT count(*) FROM ");
        duck_append_identifier(&sql, name);
        strbuf_append_str(&sql, ")), $3::BIGINT, coalesce(CAST($4 AS TIMESTAMP), current_timestamp::TIMESTAMP), 'local'");
        const char *params[] = {name, description, size, extracted_at, rows[0] ? rows : NULL};
        rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_exec_params(conn, sql.data, params, 5, err);
    }
    strbuf_free(&sql);
    return rc;
}

/* Write extract.duckdb.tmp describing `tables` (attached to conn as
 * "next"), then rename it over the extract: the commit of an upload. */
static int write_extract(duckdb_connection conn, const char *source_dir, json_t *tables, agnes_error *err)
{
    char extract[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX + 8], wal[AGNES_PATH_MAX + 16];
    agnes_error ignored;
    strbuf sql;
    strbuf_init(&sql);
    if (util_format(extract, sizeof extract, err, "%s/extract.duckdb", source_dir) ||
        util_format(tmp, sizeof tmp, err, "%s.tmp", extract) || util_format(wal, sizeof wal, err, "%s.wal", tmp))
        return err->code;
    unlink(tmp);
    unlink(wal);
    strbuf_append_str(&sql, "ATTACH ");
    duck_append_literal(&sql, tmp);
    strbuf_append_str(&sql, " AS next; USE next");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : duck_exec(conn, sql.data, err);
    bool attached = rc == AGNES_OK;
    if (rc == AGNES_OK)
        rc = duck_exec(conn, CONTRACT_META_DDL, err);
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table) {
        if (rc != AGNES_OK)
            break;
        rc = describe_table(conn, table, err);
    }
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "CHECKPOINT next", err);
    if (attached) {
        duck_exec(conn, "USE memory", &ignored);
        if (duck_exec(conn, "DETACH next", rc == AGNES_OK ? err : &ignored) != AGNES_OK && rc == AGNES_OK)
            rc = err->code;
    }
    strbuf_free(&sql);
    if (rc == AGNES_OK && rename(tmp, extract) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, extract, strerror(errno));
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(extract, err);
    if (rc != AGNES_OK) {
        unlink(tmp);
        unlink(wal);
    }
    return rc;
}

static int fsync_file(const char *path, agnes_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int rc = agnes_error_set(err, AGNES_ERR_IO, "cannot flush %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    return AGNES_OK;
}

/* Uploaded tables are named in lower case: DuckDB's catalog ignores case,
 * so "Sales" and "sales" would be two files but one view. */
static bool is_lower(const char *name)
{
    for (const char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            return false;
    return true;
}

/* A big conversion may spill; an in-memory DuckDB would spill into ./.tmp. */
static int spill_to(duckdb_connection conn, const agnes_paths *paths, agnes_error *err)
{
    char tmp[AGNES_PATH_MAX], spill[AGNES_PATH_MAX + 16];
    if (paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, err))
        return err->code;
    snprintf(spill, sizeof spill, "%s/duckdb_spill", tmp);
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SET temp_directory = ");
    duck_append_literal(&sql, spill);
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_exec(conn, sql.data, err);
    strbuf_free(&sql);
    return rc;
}

/* The table list of the new extract: the published ones with `table`
 * replaced by (or joined with) the new version. */
static int next_tables(json_t *published, const local_import *in, const char *parquet, long long rows,
                       bool *replaced, agnes_error *err)
{
    json_t *previous = NULL;
    size_t i;
    json_t *table;
    *replaced = false;
    json_array_foreach(published, i, table) {
        if (strcmp(json_string_value(json_object_get(table, "table")), in->table) == 0) {
            previous = json_incref(table);
            json_array_remove(published, i);
            *replaced = true;
            break;
        }
    }
    json_t *entry = json_pack("{s:s, s:s, s:I}", "table", in->table, "path", parquet, "rows", (json_int_t)rows);
    const json_t *description = in->description ? NULL : json_object_get(previous, "description");
    if (entry != NULL && (in->description || description))
        json_object_set_new(entry, "description",
                            in->description ? json_string(in->description) : json_incref((json_t *)description));
    json_decref(previous);
    size_t at = 0; /* keep the list in name order, as the extract lists them */
    json_array_foreach(published, i, table)
        if (strcmp(json_string_value(json_object_get(table, "table")), in->table) < 0)
            at = i + 1;
    if (entry == NULL || json_array_insert_new(published, at, entry) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    return AGNES_OK;
}

void local_import_result_free(local_import_result *result)
{
    json_decref(result->columns);
    json_decref(result->dialect);
    json_decref(result->inference);
    json_decref(result->published);
    json_decref(result->renamed);
    result->columns = result->dialect = result->inference = result->published = result->renamed = NULL;
}

int local_files_import(const agnes_paths *paths, const local_import *in, local_import_result *out, agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], source_dir[AGNES_PATH_MAX], data_dir[AGNES_PATH_MAX + 8],
        extract[AGNES_PATH_MAX + 32], final[AGNES_PATH_MAX + 300], tmp[AGNES_PATH_MAX + 320], why[300];
    duck_session session = {0};
    local_reader reader = {0};
    json_t *published = NULL;
    bool renamed = false;
    int rc;
    memset(out, 0, sizeof *out);
    if (!contract_table_name_ok(in->table, why, sizeof why) || !is_lower(in->table))
        return agnes_error_set(err, AGNES_ERR_INVALID, "Table name \"%.100s\" %s.", in->table,
                               is_lower(in->table) ? why : "must be in lower case");
    if ((rc = choose_format(in, out->format, sizeof out->format, err)) != AGNES_OK)
        return rc;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        util_format(source_dir, sizeof source_dir, err, "%s/%s", extracts, LOCAL_SOURCE_NAME) ||
        util_format(data_dir, sizeof data_dir, err, "%s/data", source_dir) ||
        util_format(extract, sizeof extract, err, "%s/extract.duckdb", source_dir) ||
        /* A new name per version: no view reads it until the extract says so. */
        util_format(final, sizeof final, err, "%s/%s.%016llx.parquet", data_dir, in->table,
                    (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec) ||
        util_format(tmp, sizeof tmp, err, "%s.tmp", final) || util_mkdir_p(data_dir, 0755, err))
        return err->code;
    if ((rc = duck_session_open(&session, NULL, false, err)) != AGNES_OK)
        goto done;
    /* One DuckDB for the whole upload: what is published, the conversion,
     * and the next extract (attached), since opening one costs more than a
     * small file's conversion. */
    rc = read_published(session.connection, extract, &published, err);
    if (rc == AGNES_OK)
        rc = spill_to(session.connection, paths, err);
    if (rc == AGNES_OK)
        rc = local_reader_plan(session.connection, out->format, in->file, &in->options, &reader, err);
    if (rc == AGNES_OK)
        rc = convert(session.connection, &reader, in->file, tmp, &out->rows, err);
    if (rc == AGNES_OK)
        rc = describe(session.connection, tmp, &reader, &out->columns, err);
    if (rc == AGNES_OK)
        rc = fsync_file(tmp, err);
    if (rc == AGNES_OK && rename(tmp, final) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    renamed = rc == AGNES_OK;
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(final, err);
    if (rc == AGNES_OK)
        rc = next_tables(published, in, final, out->rows, &out->replaced, err);
    if (rc == AGNES_OK)
        rc = write_extract(session.connection, source_dir, published, err); /* the commit */
done:
    if (rc != AGNES_OK) {
        unlink(tmp);
        if (renamed)
            unlink(final);
        local_import_result_free(out);
    } else {
        struct stat st;
        out->size_bytes = stat(final, &st) == 0 ? (long long)st.st_size : 0;
        out->dialect = local_reader_dialect_json(&reader);
        size_t i;
        json_t *table;
        json_array_foreach(published, i, table) {
            if (json_object_get(table, "renamed_from") == NULL)
                continue;
            if (out->renamed == NULL)
                out->renamed = json_array();
            json_array_append_new(out->renamed, json_pack("{s:O, s:O}", "from", json_object_get(table, "renamed_from"),
                                                          "to", json_object_get(table, "table")));
        }
        out->inference = reader.sample_size == -1
                             ? json_pack("{s:s, s:b}", "sample_size", "all", "all_text", reader.all_text)
                             : json_pack("{s:I, s:b}", "sample_size",
                                         (json_int_t)(reader.sample_size ? reader.sample_size : LOCAL_DEFAULT_SAMPLE_ROWS), "all_text",
                                         reader.all_text);
    }
    duck_session_close(&session);
    local_reader_free(&reader);
    if (rc == AGNES_OK)
        out->published = published;
    else
        json_decref(published);
    return rc;
}

/* Unlink the Parquet versions (and .tmp files) in data_dir that `keep`
 * does not name. */
static void remove_unnamed(const char *data_dir, const json_t *keep)
{
    DIR *d = opendir(data_dir);
    if (d == NULL)
        return;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        size_t len = strlen(entry->d_name);
        bool parquet = len > 8 && strcmp(entry->d_name + len - 8, ".parquet") == 0;
        bool tmp = len > 12 && strcmp(entry->d_name + len - 12, ".parquet.tmp") == 0;
        char path[AGNES_PATH_MAX + 300];
        if (!parquet && !tmp)
            continue;
        snprintf(path, sizeof path, "%s/%s", data_dir, entry->d_name);
        bool named = false;
        size_t i;
        json_t *table;
        json_array_foreach(keep, i, table)
            named = named || strcmp(json_string_value(json_object_get(table, "path")), path) == 0;
        if (named && !tmp)
            continue;
        if (unlink(path) == 0)
            log_info("msg=\"removed a local file no table uses\" path=\"%s\"", path);
        else
            log_warn("msg=\"cannot remove a leftover\" path=\"%s\" detail=\"%s\"", path, strerror(errno));
    }
    closedir(d);
}

void local_files_collect(const agnes_paths *paths, const json_t *published)
{
    char extracts[AGNES_PATH_MAX], data_dir[AGNES_PATH_MAX + 32], extract[AGNES_PATH_MAX + 32];
    json_t *read = NULL;
    agnes_error err;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, &err) != AGNES_OK)
        return;
    snprintf(data_dir, sizeof data_dir, "%s/%s/data", extracts, LOCAL_SOURCE_NAME);
    snprintf(extract, sizeof extract, "%s/%s/extract.duckdb", extracts, LOCAL_SOURCE_NAME);
    if (published == NULL && !util_file_exists(extract)) { /* nothing is published: only temp files are surely garbage */
        sweep_dir(data_dir, "", ".parquet.tmp");
        return;
    }
    if (published == NULL && read_published_alone(extract, &read, &err) != AGNES_OK) {
        log_warn("msg=\"local files not collected\" detail=\"%s\"", err.message);
        return;
    }
    remove_unnamed(data_dir, published ? published : read);
    json_decref(read);
}

/* Unlink every entry of dir whose name starts with prefix and ends with suffix. */
static void sweep_dir(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *entry;
    size_t prefix_len = strlen(prefix), suffix_len = strlen(suffix);
    while ((entry = readdir(d)) != NULL) {
        size_t len = strlen(entry->d_name);
        if (len < prefix_len + suffix_len || strncmp(entry->d_name, prefix, prefix_len) != 0 ||
            strcmp(entry->d_name + len - suffix_len, suffix) != 0)
            continue;
        char path[AGNES_PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (unlink(path) == 0)
            log_info("msg=\"removed a leftover of an interrupted upload\" path=\"%s\"", path);
        else
            log_warn("msg=\"cannot remove a leftover\" path=\"%s\" detail=\"%s\"", path, strerror(errno));
    }
    closedir(d);
}

void local_files_sweep(const agnes_paths *paths)
{
    char uploads[AGNES_PATH_MAX], extracts[AGNES_PATH_MAX], dir[AGNES_PATH_MAX + 32];
    agnes_error err;
    if (paths_data_file(paths, DATA_UPLOADS_DIR, uploads, sizeof uploads, &err) == AGNES_OK)
        sweep_dir(uploads, "incoming-", "");
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, &err) != AGNES_OK)
        return;
    snprintf(dir, sizeof dir, "%s/%s", extracts, LOCAL_SOURCE_NAME);
    sweep_dir(dir, "extract.duckdb", ".tmp");
    /* Only temp files here: versions no extract names are never published
     * (the table list is the extract's), and reading the extract to find
     * them would cost start-up a DuckDB; the next upload removes them. */
    snprintf(dir, sizeof dir, "%s/%s/data", extracts, LOCAL_SOURCE_NAME);
    sweep_dir(dir, "", ".parquet.tmp");
}
