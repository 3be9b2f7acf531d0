#include "sync/local_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "engine/contract.h"
#include "store/duck.h"

/* How much of a text upload is inspected for NUL bytes. */
#define BINARY_PROBE_BYTES (64 * 1024)

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

/* The DuckDB reader for the file.  CSV fixes its delimiter and quote: a
 * ragged file must fail on its bad line, not be sniffed as one column. */
static void append_reader(strbuf *sql, const char *format, const char *file)
{
    if (strcmp(format, "parquet") == 0) {
        strbuf_append_str(sql, "read_parquet(");
        duck_append_literal(sql, file);
        strbuf_append_char(sql, ')');
    } else if (strcmp(format, "json") == 0 || strcmp(format, "ndjson") == 0) {
        strbuf_append_str(sql, "read_json(");
        duck_append_literal(sql, file);
        strbuf_appendf(sql, ", format = '%s')", strcmp(format, "json") == 0 ? "array" : "newline_delimited");
    } else {
        strbuf_append_str(sql, "read_csv(");
        duck_append_literal(sql, file);
        strbuf_appendf(sql, ", header = true, delim = '%s', quote = '\"', store_rejects = true)",
                       strcmp(format, "tsv") == 0 ? "\\t" : ",");
    }
}

/* DuckDB's message up to its first line break (the sentence, not the
 * dump), with the server's spool path replaced by words the caller knows. */
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
    strbuf_free(&text);
}

/* The first row DuckDB rejected, as the sentence the caller gets. */
static int check_rejects(duckdb_connection conn, const char *format, const char *file, agnes_error *err)
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
                             "again; nothing was changed.",
                             (long long)duckdb_value_int64(&result, 0, 0), format, has_column ? ", column \"" : "",
                             has_column ? column : "", has_column ? "\"" : "", message,
                             (long long)duckdb_value_int64(&result, 3, 0),
                             duckdb_value_int64(&result, 3, 0) == 1 ? "" : "s");
    }
    duckdb_destroy_result(&result);
    return rc;
}

/* Convert the upload into tmp_parquet; *rows is what was written. */
static int convert(duckdb_connection conn, const char *format, const char *file, const char *tmp_parquet,
                   long long *rows, agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "COPY (SELECT * FROM ");
    append_reader(&sql, format, file);
    strbuf_append_str(&sql, ") TO ");
    duck_append_literal(&sql, tmp_parquet);
    strbuf_append_str(&sql, " (FORMAT parquet)");
    duckdb_result result;
    int rc = AGNES_OK;
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    if (duckdb_query(conn, sql.data, &result) != DuckDBSuccess) {
        char message[512];
        first_line(duckdb_result_error(&result), file, message, sizeof message);
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "The file could not be read as %s: %s. Check the file, or pass the right format "
                             "(csv, tsv, parquet, json, ndjson).",
                             format, message);
    } else {
        *rows = duckdb_value_int64(&result, 0, 0);
        rc = check_rejects(conn, format, file, err);
        if (rc == AGNES_OK && *rows == 0)
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "The file has no data rows. Upload a file with a header row and at least one row "
                                 "of data.");
    }
    duckdb_destroy_result(&result);
    strbuf_free(&sql);
    return rc;
}

static int describe(duckdb_connection conn, const char *parquet, json_t **columns, agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, "SELECT column_name AS name, column_type AS type FROM (DESCRIBE SELECT * FROM read_parquet(");
    duck_append_literal(&sql, parquet);
    strbuf_append_str(&sql, "))");
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : duck_query_json(conn, sql.data, NULL, 0, columns, err);
    strbuf_free(&sql);
    return rc;
}

/* Parquet files of the local source, sorted (new reference: array of table names). */
static int list_tables(const char *data_dir, json_t **out, agnes_error *err)
{
    struct dirent **entries = NULL;
    int count = scandir(data_dir, &entries, NULL, alphasort);
    if (count < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot list %s: %s", data_dir, strerror(errno));
    json_t *tables = json_array();
    for (int i = 0; i < count; i++) {
        char name[256];
        size_t len = strlen(entries[i]->d_name);
        if (len > 8 && len - 8 < sizeof name && strcmp(entries[i]->d_name + len - 8, ".parquet") == 0) {
            memcpy(name, entries[i]->d_name, len - 8);
            name[len - 8] = '\0';
            if (contract_is_identifier(name))
                json_array_append_new(tables, json_string(name));
        }
        free(entries[i]);
    }
    free(entries);
    *out = tables;
    return tables ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}

/* One _meta row and one view for a table of the local source.  The
 * previous extract (attached as `previous`, when it exists) keeps the
 * descriptions and extraction times of the tables not uploaded now. */
static int describe_table(duckdb_connection conn, const char *table, const char *parquet, const local_import *in,
                          bool have_previous, agnes_error *err)
{
    bool is_new = strcmp(table, in->table) == 0;
    strbuf sql;
    strbuf_init(&sql);
    strbuf_appendf(&sql, "CREATE VIEW \"%s\" AS SELECT * FROM read_parquet(", table);
    duck_append_literal(&sql, parquet);
    strbuf_append_str(&sql, "); INSERT INTO _meta SELECT $1, ");
    bool new_description = is_new && in->description != NULL;
    if (new_description)
        strbuf_append_str(&sql, "$3");
    else if (have_previous)
        strbuf_append_str(&sql, "(SELECT description FROM previous._meta WHERE table_name = $1 LIMIT 1)");
    else
        strbuf_append_str(&sql, "NULL::VARCHAR");
    strbuf_append_str(&sql, ", (SELECT count(*) FROM read_parquet(");
    duck_append_literal(&sql, parquet);
    strbuf_append_str(&sql, ")), $2::BIGINT, ");
    if (!is_new && have_previous)
        strbuf_append_str(&sql, "coalesce((SELECT extracted_at FROM previous._meta WHERE table_name = $1 LIMIT 1), "
                                "current_timestamp::TIMESTAMP)");
    else
        strbuf_append_str(&sql, "current_timestamp::TIMESTAMP");
    strbuf_append_str(&sql, ", 'local'");
    struct stat st;
    char size[32];
    snprintf(size, sizeof size, "%lld", stat(parquet, &st) == 0 ? (long long)st.st_size : 0LL);
    /* The view statement carries no parameters; run it apart from the insert. */
    char *insert = strstr(sql.data ? sql.data : "", "; INSERT");
    int rc;
    if (strbuf_failed(&sql) || insert == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    } else {
        *insert = '\0';
        const char *params[] = {table, size, in->description};
        rc = duck_exec(conn, sql.data, err);
        if (rc == AGNES_OK)
            rc = duck_exec_params(conn, insert + 2, params, new_description ? 3 : 2, err);
    }
    strbuf_free(&sql);
    return rc;
}

/* Write extract.duckdb.tmp describing every Parquet file, then swap it in. */
static int write_extract(const char *source_dir, const char *data_dir, const local_import *in, agnes_error *err)
{
    char extract[AGNES_PATH_MAX], tmp[AGNES_PATH_MAX + 8], parquet[AGNES_PATH_MAX];
    json_t *tables = NULL;
    duck_session session = {0};
    int rc;
    if (util_format(extract, sizeof extract, err, "%s/extract.duckdb", source_dir) ||
        util_format(tmp, sizeof tmp, err, "%s.tmp", extract))
        return err->code;
    unlink(tmp);
    if ((rc = list_tables(data_dir, &tables, err)) != AGNES_OK ||
        (rc = duck_session_open(&session, tmp, false, err)) != AGNES_OK)
        goto done;
    bool have_previous = false;
    if (util_file_exists(extract)) {
        agnes_error ignored; /* an unreadable previous extract only loses old descriptions */
        have_previous = duck_attach_read_only(session.connection, extract, "previous", &ignored) == AGNES_OK;
    }
    if ((rc = duck_exec(session.connection, CONTRACT_META_DDL, err)) != AGNES_OK)
        goto done;
    size_t i;
    json_t *name;
    json_array_foreach(tables, i, name) {
        if ((rc = util_format(parquet, sizeof parquet, err, "%s/%s.parquet", data_dir, json_string_value(name))) ||
            (rc = describe_table(session.connection, json_string_value(name), parquet, in, have_previous, err)))
            goto done;
    }
    if (have_previous)
        rc = duck_exec(session.connection, "DETACH previous", err);
    if (rc == AGNES_OK)
        rc = duck_exec(session.connection, "CHECKPOINT", err);
done:
    duck_session_close(&session);
    json_decref(tables);
    if (rc == AGNES_OK && rename(tmp, extract) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, extract, strerror(errno));
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(extract, err);
    if (rc != AGNES_OK)
        unlink(tmp);
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

int local_files_import(const agnes_paths *paths, const local_import *in, local_import_result *out, agnes_error *err)
{
    char extracts[AGNES_PATH_MAX], source_dir[AGNES_PATH_MAX], data_dir[AGNES_PATH_MAX + 8],
        final[AGNES_PATH_MAX + 300], tmp[AGNES_PATH_MAX + 320];
    duck_session session = {0};
    int rc;
    memset(out, 0, sizeof *out);
    if (!contract_is_identifier(in->table) || !is_lower(in->table))
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Table name \"%s\" is not valid: use lower-case letters, digits and _, starting with a "
                               "letter or _, at most 64 characters (e.g. sales_2024).",
                               in->table);
    if ((rc = choose_format(in, out->format, sizeof out->format, err)) != AGNES_OK)
        return rc;
    if (paths_data_file(paths, DATA_EXTRACTS_DIR, extracts, sizeof extracts, err) ||
        util_format(source_dir, sizeof source_dir, err, "%s/%s", extracts, LOCAL_SOURCE_NAME) ||
        util_format(data_dir, sizeof data_dir, err, "%s/data", source_dir) ||
        util_format(final, sizeof final, err, "%s/%s.parquet", data_dir, in->table) ||
        util_format(tmp, sizeof tmp, err, "%s.tmp", final) || util_mkdir_p(data_dir, 0755, err))
        return err->code;
    out->replaced = util_file_exists(final);
    if ((rc = duck_session_open(&session, NULL, false, err)) != AGNES_OK)
        return rc;
    rc = spill_to(session.connection, paths, err);
    if (rc == AGNES_OK)
        rc = convert(session.connection, out->format, in->file, tmp, &out->rows, err);
    if (rc == AGNES_OK)
        rc = describe(session.connection, tmp, &out->columns, err);
    duck_session_close(&session);
    if (rc == AGNES_OK)
        rc = fsync_file(tmp, err);
    if (rc == AGNES_OK && rename(tmp, final) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    if (rc != AGNES_OK) {
        unlink(tmp);
        json_decref(out->columns);
        out->columns = NULL;
        return rc;
    }
    struct stat st;
    out->size_bytes = stat(final, &st) == 0 ? (long long)st.st_size : 0;
    if ((rc = util_fsync_parent_dir(final, err)) == AGNES_OK)
        rc = write_extract(source_dir, data_dir, in, err);
    return rc;
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
    snprintf(dir, sizeof dir, "%s/%s/data", extracts, LOCAL_SOURCE_NAME);
    sweep_dir(dir, "", ".parquet.tmp");
}
