#include "engine/result_handle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "core/util.h"
#include "engine/result_format.h"
#include "store/duck.h"

bool result_handle_valid(const char *handle)
{
    if (handle == NULL || strlen(handle) != RESULT_HANDLE_LEN)
        return false;
    for (const char *p = handle; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

void result_handle_new(char out[RESULT_HANDLE_LEN + 1])
{
    uint8_t bytes[RESULT_HANDLE_LEN / 2];
    randombytes_buf(bytes, sizeof bytes);
    util_hex_encode(bytes, sizeof bytes, out);
}

/* ---- reading a Parquet result ---------------------------------------- */

/* SELECT ... FROM read_parquet('<path>') with the server-chosen path quoted. */
static char *parquet_sql(const char *before, const char *path, const char *after)
{
    strbuf sql;
    strbuf_init(&sql);
    strbuf_append_str(&sql, before);
    strbuf_append_str(&sql, "read_parquet(");
    duck_append_literal(&sql, path);
    strbuf_append_char(&sql, ')');
    strbuf_append_str(&sql, after);
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return NULL;
    }
    return sql.data;
}

/* The select list that reads a result back: every column by position (names
 * may repeat), the restored ones cast back to their type; *clash when a
 * column is called file_row_number. */
/* Defence in depth for a type pasted into SQL: outside double-quoted
 * identifiers only what type names are made of (upper-case words, digits,
 * blanks, commas, parentheses, brackets), quotes closed and parentheses
 * balanced.  A record failing this is read without the cast (as text),
 * never executed: the reader runs in the server, not in a query worker. */
static bool type_text_is_safe(const char *type)
{
    int depth = 0;
    for (const char *c = type; *c; c++) {
        if (*c == '"') {
            for (c++; *c && !(*c == '"' && c[1] != '"'); c += *c == '"' ? 2 : 1)
                ;
            if (*c != '"')
                return false;
        } else if (*c == '(' || *c == '[') {
            depth++;
        } else if (*c == ')' || *c == ']') {
            if (--depth < 0)
                return false;
        } else if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == ' ' || *c == ',' || *c == '_' ||
                     (*c >= 'a' && *c <= 'z'))) {
            return false;
        }
    }
    return depth == 0;
}

static int select_list(duckdb_connection conn, const char *path, const json_t *shape, strbuf *out, bool *clash,
                       agnes_error *err)
{
    const json_t *restore = json_object_get(shape, "restore");
    duckdb_result result;
    *clash = false;
    char *describe = parquet_sql("DESCRIBE SELECT * FROM ", path, "");
    if (describe == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (duckdb_query(conn, describe, &result) != DuckDBSuccess) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_result_error(&result));
        duckdb_destroy_result(&result);
        free(describe);
        return rc;
    }
    free(describe);
    idx_t rows = duckdb_row_count(&result);
    for (idx_t i = 0; i < rows; i++) {
        char *name = duckdb_value_varchar(&result, 0, i);
        const char *type = json_string_value(json_array_get(restore, i));
        *clash = *clash || (name != NULL && strcmp(name, "file_row_number") == 0);
        strbuf_appendf(out, "%s", i ? ", " : "");
        if (type != NULL && name != NULL && type_text_is_safe(type)) {
            /* Types come from result_format_type_name (member names quoted), the name is quoted. */
            strbuf_appendf(out, "CAST(#%llu AS %s) AS ", (unsigned long long)i + 1, type);
            duck_append_identifier(out, name);
        } else {
            strbuf_appendf(out, "#%llu", (unsigned long long)i + 1);
        }
        duckdb_free(name);
    }
    duckdb_destroy_result(&result);
    if (rows == 0)
        strbuf_append_str(out, "*");
    return strbuf_failed(out) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

/* The SELECT of one page.  By file_row_number where possible: DuckDB then
 * skips the row groups before the page (measured on a 5 M-row result: a
 * 100 k-row page at row 4 M in 51 ms, against 98 ms with LIMIT/OFFSET on
 * one thread and 242 ms on two).  A result with a column of that very name
 * pages with OFFSET.  The store's database runs one thread, so rows come
 * in file order either way. */
static int page_sql(duckdb_connection conn, const char *path, const json_t *shape, long long offset,
                    long long limit, char **out, agnes_error *err)
{
    strbuf sql;
    bool clash = false;
    strbuf_init(&sql);
    *out = NULL;
    strbuf_append_str(&sql, "SELECT ");
    int rc = select_list(conn, path, shape, &sql, &clash, err);
    if (rc != AGNES_OK) {
        strbuf_free(&sql);
        return rc;
    }
    strbuf_append_str(&sql, " FROM read_parquet(");
    duck_append_literal(&sql, path);
    if (clash)
        strbuf_appendf(&sql, ") LIMIT %lld OFFSET %lld", limit, offset);
    else
        strbuf_appendf(&sql, ", file_row_number = true) WHERE file_row_number >= %lld AND file_row_number < %lld",
                       offset, offset + limit);
    if (strbuf_failed(&sql)) {
        strbuf_free(&sql);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    *out = sql.data;
    return AGNES_OK;
}

/* A type Parquet does not hold exactly (see result_handle.h). */
static bool lossy(const char *type_name)
{
    return strstr(type_name, "HUGEINT") != NULL || strstr(type_name, "TIME WITH TIME ZONE") != NULL;
}

/* The caller's SQL without trailing semicolons and blanks, for a subquery. */
static char *bare(const char *sql)
{
    char *copy = util_strdup(sql);
    size_t n = copy ? strlen(copy) : 0;
    while (n > 0 && strchr("; \t\r\n", copy[n - 1]) != NULL)
        copy[--n] = '\0';
    return copy;
}

int result_exact_sql(duckdb_connection conn, const char *sql, char **wrapped, json_t **shape, agnes_error *err)
{
    duckdb_prepared_statement statement = NULL;
    *wrapped = NULL;
    *shape = NULL;
    if (duckdb_prepare(conn, sql, &statement) != DuckDBSuccess) {
        duckdb_destroy_prepare(&statement);
        return AGNES_OK;
    }
    idx_t count = duckdb_prepared_statement_column_count(statement);
    json_t *types = json_array(), *names = json_array();
    strbuf list, name;
    strbuf_init(&list);
    strbuf_init(&name);
    bool any = false;
    for (idx_t i = 0; i < count; i++) {
        duckdb_logical_type type = duckdb_prepared_statement_column_logical_type(statement, i);
        strbuf_reset(&name);
        result_format_type_name(type, &name);
        duckdb_destroy_logical_type(&type);
        bool cast = name.data != NULL && lossy(name.data);
        any = any || cast;
        json_array_append_new(types, cast ? json_string(name.data) : json_null());
        /* DuckDB allocates the name; duckdb_free releases it. */
        const char *column = duckdb_prepared_statement_column_name(statement, i);
        json_array_append_new(names, json_string(column ? column : ""));
        strbuf_appendf(&list, "%s", i ? ", " : "");
        if (cast) {
            strbuf_appendf(&list, "CAST(#%llu AS VARCHAR) AS ", (unsigned long long)i + 1);
            duck_append_identifier(&list, column ? column : "");
        } else {
            strbuf_appendf(&list, "#%llu", (unsigned long long)i + 1);
        }
        duckdb_free((void *)column);
    }
    duckdb_destroy_prepare(&statement);
    int rc = AGNES_OK;
    char *select = any ? bare(sql) : NULL;
    if (any) {
        strbuf out;
        strbuf_init(&out);
        /* Newlines around the caller's SQL: a trailing "-- comment" cannot eat the ')'. */
        strbuf_appendf(&out, "SELECT %s FROM (\n%s\n)", list.data ? list.data : "*", select ? select : "");
        if (select == NULL || strbuf_failed(&out) || strbuf_failed(&list)) {
            strbuf_free(&out);
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        } else {
            *wrapped = out.data;
        }
    }
    if (rc == AGNES_OK && (*shape = json_pack("{s:O}", "columns", names)) != NULL && any)
        json_object_set(*shape, "restore", types);
    free(select);
    json_decref(types);
    json_decref(names);
    strbuf_free(&list);
    strbuf_free(&name);
    return rc;
}

/* Prepare and start sql as a streaming result. */
static int stream_query(duckdb_connection conn, const char *sql, duckdb_prepared_statement *statement,
                        duckdb_result *result, agnes_error *err)
{
    *statement = NULL;
    if (duckdb_prepare(conn, sql, statement) != DuckDBSuccess) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_prepare_error(*statement));
        duckdb_destroy_prepare(statement);
        return rc;
    }
    duckdb_pending_result pending = NULL;
    if (duckdb_pending_prepared_streaming(*statement, &pending) != DuckDBSuccess) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_pending_error(pending));
        duckdb_destroy_pending(&pending);
        duckdb_destroy_prepare(statement);
        return rc;
    }
    duckdb_state state = duckdb_execute_pending(pending, result);
    duckdb_destroy_pending(&pending);
    if (state != DuckDBSuccess) {
        int rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_result_error(result));
        duckdb_destroy_result(result);
        duckdb_destroy_prepare(statement);
        return rc;
    }
    return AGNES_OK;
}

/* Column names and type names, checking each type can be shown. */
static int describe_columns(duckdb_result *result, json_t *columns, json_t *types, agnes_error *err)
{
    strbuf name;
    strbuf_init(&name);
    int rc = AGNES_OK;
    for (idx_t c = 0; c < duckdb_column_count(result) && rc == AGNES_OK; c++) {
        duckdb_logical_type type = duckdb_column_logical_type(result, c);
        strbuf_reset(&name);
        result_format_type_name(type, &name);
        json_array_append_new(columns, json_string(duckdb_column_name(result, c)));
        json_array_append_new(types, json_string(name.data ? name.data : ""));
        rc = result_format_supported(type, duckdb_column_name(result, c), err);
        duckdb_destroy_logical_type(&type);
    }
    strbuf_free(&name);
    return rc;
}

/* Bytes of the UTF-8 sequence that starts with lead (1 for a stray byte). */
static size_t utf8_length(unsigned char lead)
{
    return lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

/* Append to row, in place of the JSON value in cell (longer than max
 * characters), a JSON string: the value's first characters and a marker
 * saying it was cut.  A string keeps its own text (cut between characters
 * and escapes, never inside one); another value (a list, a struct) becomes
 * its JSON text as a string.  The whole value is in the handle's
 * download (result_page_describe's note says where). */
static void cut_cell(strbuf *row, const strbuf *cell, long long max)
{
    char marker[160];
    snprintf(marker, sizeof marker, "...[cut: longer than %lld characters; the whole value is in this result's download]",
             max);
    const char *text = cell->data;
    size_t at = 1, limit = (size_t)max;
    if (text[0] == '"') {
        while (at < cell->len - 1) {
            size_t step = utf8_length((unsigned char)text[at]);
            if (text[at] == '\\') /* an escape whole; a surrogate pair's two together */
                step = text[at + 1] != 'u' ? 2
                       : (text[at + 2] == 'd' || text[at + 2] == 'D') && strchr("89abAB", text[at + 3]) ? 12
                                                                                                          : 6;
            if (at + step > limit)
                break;
            at += step;
        }
        strbuf_append(row, text, at);
        strbuf_append_str(row, marker); /* plain ASCII: no quote or backslash to escape */
        strbuf_append_char(row, '"');
        return;
    }
    for (at = 0; at < cell->len;) {
        size_t step = utf8_length((unsigned char)text[at]);
        if (at + step > limit)
            break;
        at += step;
    }
    strbuf joined;
    strbuf_init(&joined);
    strbuf_append(&joined, text, at);
    strbuf_append_str(&joined, marker);
    if (!strbuf_failed(&joined))
        strbuf_append_json_string(row, joined.data, joined.len);
    else
        strbuf_append_str(row, "null");
    strbuf_free(&joined);
}

int result_page_read(duckdb_connection conn, const char *parquet_path, const json_t *shape, long long offset,
                     long long limit, long long max_chars, result_page *page, agnes_error *err)
{
    long long total = 0;
    bool found = false;
    memset(page, 0, sizeof *page);
    strbuf_init(&page->rows);
    char *count_sql = parquet_sql("SELECT count(*) FROM ", parquet_path, "");
    char *rows_sql = NULL;
    duckdb_prepared_statement statement = NULL;
    duckdb_result result;
    bool has_result = false;
    json_t *columns = json_array(), *types = json_array();
    duckdb_logical_type *logical = NULL;
    strbuf *text = &page->rows, row, cell;
    strbuf_init(&row);
    strbuf_init(&cell);
    int rc = count_sql ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (rc == AGNES_OK)
        rc = duck_query_int(conn, count_sql, &total, &found, err);
    if (rc == AGNES_OK)
        rc = page_sql(conn, parquet_path, shape, offset, limit, &rows_sql, err);
    if (rc == AGNES_OK && (rc = stream_query(conn, rows_sql, &statement, &result, err)) == AGNES_OK)
        has_result = true;
    if (rc == AGNES_OK)
        rc = describe_columns(&result, columns, types, err);
    /* The names as the query gave them (Parquet renames repeated ones). */
    const json_t *names = json_object_get(shape, "columns");
    if (rc == AGNES_OK && json_array_size(names) == json_array_size(columns)) {
        json_array_clear(columns);
        json_array_extend(columns, (json_t *)names);
    }
    idx_t column_count = has_result ? duckdb_column_count(&result) : 0;
    if (rc == AGNES_OK && (logical = calloc(column_count + 1, sizeof *logical)) == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (idx_t c = 0; rc == AGNES_OK && c < column_count; c++)
        logical[c] = duckdb_column_logical_type(&result, c);
    long long count = 0, cut = 0;
    /* A cell's share of the page: one huge value (a document, a blob) must
     * not make the page - or the server's copy of it - unbounded. */
    long long cell_max = column_count > 0 ? max_chars / (long long)column_count : max_chars;
    if (cell_max < RESULT_CELL_MIN_CHARS)
        cell_max = RESULT_CELL_MIN_CHARS;
    bool full = false;
    strbuf_append_char(text, '[');
    while (rc == AGNES_OK && !full) {
        duckdb_data_chunk chunk = duckdb_fetch_chunk(result);
        if (chunk == NULL) {
            if (duckdb_result_error(&result) != NULL)
                rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_result_error(&result));
            break;
        }
        idx_t size = duckdb_data_chunk_get_size(chunk);
        duckdb_vector vectors[column_count + 1];
        for (idx_t c = 0; c < column_count; c++)
            vectors[c] = duckdb_data_chunk_get_vector(chunk, c);
        for (idx_t r = 0; r < size && count < limit; r++) {
            strbuf_reset(&row);
            strbuf_append_str(&row, count ? ",[" : "[");
            for (idx_t c = 0; c < column_count; c++) {
                if (c)
                    strbuf_append_char(&row, ',');
                strbuf_reset(&cell);
                result_format_json(&cell, vectors[c], logical[c], r);
                if ((long long)cell.len > cell_max) {
                    cut_cell(&row, &cell, cell_max);
                    cut++;
                } else {
                    strbuf_append(&row, cell.data, cell.len);
                }
            }
            strbuf_append_char(&row, ']');
            /* Over the character budget: stop before this row, unless it is the first. */
            if (count > 0 && (long long)(text->len + row.len + 1) > max_chars) {
                full = true;
                break;
            }
            strbuf_append(text, row.data, row.len);
            count++;
        }
        duckdb_destroy_data_chunk(&chunk);
        full = full || count >= limit;
    }
    strbuf_append_char(text, ']');
    if (rc == AGNES_OK && (strbuf_failed(text) || strbuf_failed(&row) || strbuf_failed(&cell)))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory formatting the result");
    if (rc == AGNES_OK) {
        long long end = offset + count;
        json_t *next = end < total ? json_integer(end) : json_null();
        page->meta = json_pack("{s:O, s:O, s:I, s:I, s:I, s:o, s:b, s:I, s:I}", "columns", columns, "types", types,
                               "offset", (json_int_t)offset, "row_count", (json_int_t)count, "total_rows",
                               (json_int_t)total, "next_offset", next, "truncated", end < total, "cut_values",
                               (json_int_t)cut, "cell_max_chars", (json_int_t)cell_max);
        if (page->meta == NULL)
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    for (idx_t c = 0; logical != NULL && c < column_count; c++)
        duckdb_destroy_logical_type(&logical[c]);
    free(logical);
    if (has_result)
        duckdb_destroy_result(&result);
    if (statement != NULL)
        duckdb_destroy_prepare(&statement);
    json_decref(columns);
    json_decref(types);
    strbuf_free(&row);
    strbuf_free(&cell);
    free(count_sql);
    free(rows_sql);
    if (rc != AGNES_OK)
        result_page_free(page);
    return rc;
}

void result_page_free(result_page *page)
{
    json_decref(page->meta);
    page->meta = NULL;
    strbuf_free(&page->rows);
}

int result_page_text(const result_page *page, strbuf *out, agnes_error *err)
{
    char *meta = json_dumps(page->meta, JSON_COMPACT);
    size_t len = meta ? strlen(meta) : 0;
    if (meta == NULL || len < 2 || page->rows.data == NULL) {
        free(meta);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    strbuf_append(out, meta, len - 1); /* without its closing brace */
    strbuf_append_str(out, len > 2 ? ",\"rows\":" : "\"rows\":");
    strbuf_append(out, page->rows.data, page->rows.len);
    strbuf_append_char(out, '}');
    free(meta);
    return strbuf_failed(out) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

void result_page_describe(result_page *page, const char *handle, int64_t expires_at)
{
    char until[32], note[1024];
    json_t *meta = page->meta, *next = json_object_get(meta, "next_offset");
    json_object_set_new(meta, "handle", handle ? json_string(handle) : json_null());
    if (handle != NULL) {
        util_utc_iso(expires_at, until);
        json_object_set_new(meta, "expires_at", json_string(until));
    } else {
        json_object_set_new(meta, "expires_at", json_null());
    }
    long long cut = (long long)json_integer_value(json_object_get(meta, "cut_values"));
    if (cut > 0) {
        char cut_note[700];
        if (handle != NULL)
            snprintf(cut_note, sizeof cut_note,
                     "%lld value(s) longer than %lld characters were cut (they end in \"...[cut: ...]\"). The whole "
                     "values are in the download: GET /api/results/%s?format=parquet (or csv), or `agnes pull "
                     "--result %s`.",
                     cut, (long long)json_integer_value(json_object_get(meta, "cell_max_chars")), handle, handle);
        else
            snprintf(cut_note, sizeof cut_note,
                     "%lld value(s) longer than %lld characters were cut (they end in \"...[cut: ...]\"); this result "
                     "is too large to keep, so export it with POST /api/query and format csv or parquet for the whole "
                     "values.",
                     cut, (long long)json_integer_value(json_object_get(meta, "cell_max_chars")));
        json_object_set_new(meta, "cut_note", json_string(cut_note));
    }
    if (!json_is_integer(next) && !json_is_true(json_object_get(meta, "truncated")))
        return;
    long long shown_from = (long long)json_integer_value(json_object_get(meta, "offset"));
    long long rows = (long long)json_integer_value(json_object_get(meta, "row_count"));
    long long total = (long long)json_integer_value(json_object_get(meta, "total_rows"));
    if (handle != NULL)
        snprintf(note, sizeof note,
                 "Showing rows %lld-%lld of %lld. The full result is kept as handle %s until %s: call "
                 "fetch_result(handle, offset=%lld) for the next page (or GET /api/results/%s/rows?offset=%lld), "
                 "download it all with GET /api/results/%s?format=csv|parquet or `agnes pull --result %s`; or "
                 "narrow the query (filters, aggregation).",
                 shown_from + (rows > 0), shown_from + rows, total, handle, until,
                 (long long)json_integer_value(next), handle, (long long)json_integer_value(next), handle, handle);
    else if (json_is_integer(json_object_get(meta, "total_rows")))
        snprintf(note, sizeof note,
                 "Showing rows %lld-%lld of %lld. The full result is too large to keep for you "
                 "(results.max_bytes_per_user): narrow the query (filters, aggregation), or export it with POST "
                 "/api/query and format csv or parquet.",
                 shown_from + (rows > 0), shown_from + rows, total);
    else /* over the cap: only the first page was run, the total is not known */
        snprintf(note, sizeof note,
                 "Showing rows %lld-%lld of more. The full result is larger than your result disk budget "
                 "(results.max_bytes_per_user), so it was stopped there and not kept: narrow the query (filters, "
                 "aggregation), or export it with POST /api/query and format csv or parquet.",
                 shown_from + (rows > 0), shown_from + rows);
    json_object_set_new(meta, "note", json_string(note));
}

/* ---- the store ---------------------------------------------------------- */

static void file_path(const result_store *store, const char *handle, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%s/%s%s", store->dir, handle, suffix);
}

int result_store_init(result_store *store, const agnes_paths *paths, const result_limits *limits, agnes_error *err)
{
    memset(store, 0, sizeof *store);
    store->ttl_seconds = limits->ttl_seconds;
    store->max_bytes_per_user = limits->max_bytes_per_user;
    store->max_bytes_total = limits->max_bytes_total;
    store->min_free_bytes = limits->min_free_bytes;
    if (paths_data_file(paths, DATA_RESULTS_DIR, store->dir, sizeof store->dir, err) != AGNES_OK ||
        util_mkdir_p(store->dir, 0700, err) != AGNES_OK)
        return err->code;
    if (chmod(store->dir, 0700) != 0) /* results are user data, even when DATA_DIR is shared */
        return agnes_error_set(err, AGNES_ERR_IO, "cannot make %s private (chmod 0700): %s", store->dir,
                               strerror(errno));
    if (pthread_mutex_init(&store->lock, NULL) != 0 || pthread_mutex_init(&store->reader_lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    store->ready = true;
    return AGNES_OK;
}

/* The reader database, opened on first use: opening DuckDB costs ~26 ms
 * and some memory (measured here), which a server whose users never make
 * a handle should not pay at start or idle. */
static int open_reader(result_store *store, agnes_error *err)
{
    pthread_mutex_lock(&store->reader_lock);
    int rc = AGNES_OK;
    if (store->reader == NULL) {
        duckdb_database db = NULL;
        duckdb_connection conn = NULL;
        rc = duck_open(NULL, false, &db, err);
        if (rc == AGNES_OK && duckdb_connect(db, &conn) != DuckDBSuccess)
            rc = agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the result store's database");
        if (rc == AGNES_OK) { /* it only ever reads this directory's files */
            strbuf sql;
            strbuf_init(&sql);
            strbuf_append_str(&sql, "SET allowed_directories=[");
            duck_append_literal(&sql, store->dir);
            strbuf_append_str(&sql, "]; SET enable_external_access=false; SET memory_limit='512MB'; SET threads=1; "
                                    "SET lock_configuration=true;");
            rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                     : duck_exec(conn, sql.data, err);
            strbuf_free(&sql);
        }
        if (conn != NULL)
            duckdb_disconnect(&conn);
        if (rc == AGNES_OK)
            store->reader = db;
        else if (db != NULL)
            duckdb_close(&db);
    }
    pthread_mutex_unlock(&store->reader_lock);
    return rc;
}

/* A connection on the reader database (the caller disconnects it). */
static int store_connect(result_store *store, duckdb_connection *conn, agnes_error *err)
{
    *conn = NULL;
    if (open_reader(store, err) != AGNES_OK)
        return err->code;
    if (duckdb_connect(store->reader, conn) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the result store's database");
    return AGNES_OK;
}

void result_store_free(result_store *store)
{
    if (!store->ready)
        return;
    if (store->reader != NULL)
        duckdb_close(&store->reader);
    pthread_mutex_destroy(&store->lock);
    pthread_mutex_destroy(&store->reader_lock);
    store->ready = false;
}

static json_t *load_record(const result_store *store, const char *handle)
{
    char path[AGNES_PATH_MAX + 64];
    file_path(store, handle, ".json", path, sizeof path);
    json_t *record = json_load_file(path, 0, NULL);
    if (!json_is_object(record) || !json_is_string(json_object_get(record, "user_id"))) {
        json_decref(record);
        return NULL;
    }
    return record;
}

static void remove_handle(const result_store *store, const char *handle)
{
    char path[AGNES_PATH_MAX + 64];
    file_path(store, handle, ".json", path, sizeof path); /* the record first: no record, no handle */
    unlink(path);
    file_path(store, handle, ".parquet", path, sizeof path);
    unlink(path);
}

/* Creation order.  created_unix has whole seconds, and results made in one
 * second tied (the oldest of them was not always the first evicted); so
 * records carry created_ns, strictly increasing within a store.  Records
 * written before it fall back to their second. */
static json_int_t created_ns(const json_t *record)
{
    const json_t *ns = json_object_get(record, "created_ns");
    return json_is_integer(ns) ? json_integer_value(ns)
                               : json_integer_value(json_object_get(record, "created_unix")) * 1000000000LL;
}

static int compare_created(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t p = created_ns(x), q = created_ns(y);
    return p < q ? -1 : p > q ? 1 : strcmp(json_string_value(json_object_get(x, "handle")),
                                           json_string_value(json_object_get(y, "handle")));
}

/* Every live record of user_id (all users when NULL), oldest first. */
static json_t *records_of(const result_store *store, const char *user_id)
{
    json_t *list = json_array();
    DIR *dir = opendir(store->dir);
    struct dirent *entry;
    int64_t now = util_unix_now();
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        char handle[RESULT_HANDLE_LEN + 1];
        size_t len = strlen(entry->d_name);
        if (len != RESULT_HANDLE_LEN + 5 || strcmp(entry->d_name + RESULT_HANDLE_LEN, ".json") != 0)
            continue;
        memcpy(handle, entry->d_name, RESULT_HANDLE_LEN);
        handle[RESULT_HANDLE_LEN] = '\0';
        json_t *record = result_handle_valid(handle) ? load_record(store, handle) : NULL;
        if (record != NULL && json_integer_value(json_object_get(record, "expires_unix")) > now &&
            (user_id == NULL || strcmp(json_string_value(json_object_get(record, "user_id")), user_id) == 0))
            json_array_append(list, record);
        json_decref(record);
    }
    if (dir != NULL)
        closedir(dir);
    size_t n = json_array_size(list);
    json_t **items = calloc(n + 1, sizeof *items);
    if (items == NULL)
        return list;
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(list, i));
    qsort(items, n, sizeof *items, compare_created);
    json_array_clear(list);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, items[i]);
    free(items);
    return list;
}

/* Bytes of the live results of user_id (all users when NULL). */
static long long bytes_of(const result_store *store, const char *user_id)
{
    json_t *list = records_of(store, user_id), *record;
    long long total = 0;
    size_t i;
    json_array_foreach(list, i, record)
        total += (long long)json_integer_value(json_object_get(record, "size_bytes"));
    json_decref(list);
    return total;
}

/* Drop the user's oldest handles until `incoming` more bytes fit within
 * `room` (the user's cap, or less when the server-wide total is short). */
static void evict_for(result_store *store, const char *user_id, long long incoming, long long room)
{
    json_t *mine = records_of(store, user_id);
    long long total = incoming;
    size_t i;
    json_t *record;
    json_array_foreach(mine, i, record)
        total += (long long)json_integer_value(json_object_get(record, "size_bytes"));
    json_array_foreach(mine, i, record) {
        if (total <= room)
            break;
        total -= (long long)json_integer_value(json_object_get(record, "size_bytes"));
        remove_handle(store, json_string_value(json_object_get(record, "handle")));
    }
    json_decref(mine);
}

/* Bytes free for this process on the disk of dir, or -1 when unknown. */
static long long free_bytes(const char *dir)
{
    struct statvfs fs;
    if (statvfs(dir, &fs) != 0)
        return -1;
    return (long long)fs.f_bavail * (long long)fs.f_frsize;
}

/* What one copy may write.  used_others: bytes of other users' results
 * when it started (the user's own may still be evicted to make room). */
typedef struct copy_bounds {
    result_store *store;
    long long user_cap, used_others;
    bool over_cap;
} copy_bounds;

static long long human_mib(long long bytes)
{
    return (bytes + (1 << 20) - 1) >> 20;
}

int result_store_bound_error(const result_store *store, result_bound which, agnes_error *err)
{
    switch (which) {
    case RESULT_BOUND_USER:
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "The result is larger than your result disk budget of %lld MiB "
                               "(results.max_bytes_per_user), even for its first page. Narrow the query (filters, "
                               "fewer columns, aggregation), ask for fewer rows (limit), or export it with POST "
                               "/api/query and format csv or parquet.",
                               human_mib(store->max_bytes_per_user));
    case RESULT_BOUND_TOTAL:
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "The server's result store is full (results.max_bytes_total = %lld MiB for all users' "
                               "results). Try again once older results expire (results.ttl_seconds), narrow the "
                               "query, or ask an admin to raise results.max_bytes_total.",
                               human_mib(store->max_bytes_total));
    default:
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "The server's disk is almost full: results stop %lld MiB before it is "
                               "(results.min_free_bytes). Narrow the query, or ask an admin to free disk space.",
                               human_mib(store->min_free_bytes));
    }
}

long long result_store_room(result_store *store, const char *user_id, result_bound *which)
{
    pthread_mutex_lock(&store->lock);
    long long others = bytes_of(store, NULL) - bytes_of(store, user_id), writing = store->writing;
    pthread_mutex_unlock(&store->lock);
    long long room = store->max_bytes_per_user;
    *which = RESULT_BOUND_USER;
    if (store->max_bytes_total > 0 && store->max_bytes_total - others - writing < room) {
        room = store->max_bytes_total - others - writing;
        *which = RESULT_BOUND_TOTAL;
    }
    long long available = store->min_free_bytes > 0 ? free_bytes(store->dir) : -1;
    if (available >= 0 && available - store->min_free_bytes < room) {
        room = available - store->min_free_bytes;
        *which = RESULT_BOUND_DISK;
    }
    return room > 0 ? room : 0;
}

/* Before writing n more bytes (size so far): AGNES_OK, or the bound it
 * would pass.  Also counts them into store->writing, which the caller
 * gives back. */
static int within_bounds(copy_bounds *bounds, long long size, long long n, agnes_error *err)
{
    result_store *store = bounds->store;
    if (size + n > bounds->user_cap) {
        bounds->over_cap = true;
        return result_store_bound_error(store, RESULT_BOUND_USER, err);
    }
    pthread_mutex_lock(&store->lock);
    store->writing += n;
    long long in_flight = store->writing;
    pthread_mutex_unlock(&store->lock);
    if (store->max_bytes_total > 0 && bounds->used_others + in_flight > store->max_bytes_total)
        return result_store_bound_error(store, RESULT_BOUND_TOTAL, err);
    long long available = store->min_free_bytes > 0 ? free_bytes(store->dir) : -1;
    if (available >= 0 && available - n < store->min_free_bytes)
        return result_store_bound_error(store, RESULT_BOUND_DISK, err);
    return AGNES_OK;
}

/* Copy the stream into path, stopping at the first bound passed; the byte
 * count in *size (store->writing holds it until the caller gives it back). */
static int copy_stream(const char *path, result_source_read read, void *cls, copy_bounds *bounds, long long *size,
                       agnes_error *err)
{
    char *buffer = malloc(1 << 20);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = AGNES_OK;
    *size = 0;
    if (buffer == NULL || fd < 0) {
        rc = buffer == NULL ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                            : agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", path, strerror(errno));
        goto done;
    }
    for (;;) {
        ssize_t n = read(cls, buffer, 1 << 20, err);
        if (n < 0) {
            rc = err->code ? err->code : AGNES_ERR_IO;
            goto done;
        }
        if (n == 0)
            break;
        if ((rc = within_bounds(bounds, *size, n, err)) != AGNES_OK) {
            if (rc != AGNES_ERR_INVALID)
                *size += n; /* counted into store->writing */
            goto done;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(fd, buffer + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s (is the disk full?)", path,
                                     strerror(errno));
                *size += n;
                goto done;
            }
            done += w;
        }
        *size += n;
    }
    if (close(fd) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fd = -1;
done:
    if (fd >= 0)
        close(fd);
    free(buffer);
    return rc;
}

int result_store_keep(result_store *store, const result_owner *owner, result_source_read read, void *cls,
                      json_t **record, bool *over_cap, agnes_error *err)
{
    char handle[RESULT_HANDLE_LEN + 1], part[AGNES_PATH_MAX + 64], final[AGNES_PATH_MAX + 64],
        record_path[AGNES_PATH_MAX + 64], created[32], expires[32];
    long long size = 0, total = 0;
    bool found = false;
    *record = NULL;
    *over_cap = false;
    result_handle_new(handle);
    file_path(store, handle, ".parquet.part", part, sizeof part);
    file_path(store, handle, ".parquet", final, sizeof final);
    file_path(store, handle, ".json", record_path, sizeof record_path);
    pthread_mutex_lock(&store->lock);
    long long used_all = bytes_of(store, NULL), used_mine = bytes_of(store, owner->user_id);
    pthread_mutex_unlock(&store->lock);
    copy_bounds bounds = {.store = store, .user_cap = store->max_bytes_per_user, .used_others = used_all - used_mine};
    int rc = copy_stream(part, read, cls, &bounds, &size, err);
    pthread_mutex_lock(&store->lock);
    store->writing -= size; /* from here on the file counts as a result (or is gone) */
    pthread_mutex_unlock(&store->lock);
    *over_cap = bounds.over_cap;
    if (rc == AGNES_OK && rename(part, final) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s: %s", part, strerror(errno));
    if (rc != AGNES_OK) {
        unlink(part);
        return rc;
    }
    /* The row count from the file itself (Parquet metadata: no scan). */
    duckdb_connection conn = NULL;
    char *count_sql = parquet_sql("SELECT count(*) FROM ", final, "");
    if (count_sql == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    else if ((rc = store_connect(store, &conn, err)) == AGNES_OK)
        rc = duck_query_int(conn, count_sql, &total, &found, err);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    free(count_sql);
    int64_t now = util_unix_now(), until = now + store->ttl_seconds;
    struct timespec clock_now;
    clock_gettime(CLOCK_REALTIME, &clock_now);
    long long ns = (long long)clock_now.tv_sec * 1000000000LL + clock_now.tv_nsec;
    pthread_mutex_lock(&store->lock);
    if (ns <= store->last_created_ns)
        ns = store->last_created_ns + 1;
    store->last_created_ns = ns;
    pthread_mutex_unlock(&store->lock);
    util_utc_iso(now, created);
    util_utc_iso(until, expires);
    bool oversize = owner->transient;
    if (rc == AGNES_OK)
        *record = json_pack("{s:s, s:s, s:b, s:O?, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:b, s:O?}", "handle", handle,
                            "user_id", owner->user_id, "is_admin", owner->is_admin, "visible",
                            owner->is_admin ? NULL : owner->visible, "sql", owner->sql ? owner->sql : "",
                            "created_at", created, "created_unix", (json_int_t)now, "created_ns", (json_int_t)ns,
                            "expires_at", expires, "expires_unix", (json_int_t)until, "total_rows", (json_int_t)total, "size_bytes",
                            (json_int_t)size, "oversize", oversize, "shape", owner->shape);
    if (rc == AGNES_OK && *record == NULL)
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    char *text = rc == AGNES_OK ? json_dumps(*record, JSON_COMPACT) : NULL;
    pthread_mutex_lock(&store->lock);
    if (rc == AGNES_OK && !oversize) {
        long long room = store->max_bytes_per_user;
        if (store->max_bytes_total > 0) {
            long long others = bytes_of(store, NULL) - bytes_of(store, owner->user_id);
            if (store->max_bytes_total - others < room)
                room = store->max_bytes_total - others;
        }
        evict_for(store, owner->user_id, size, room);
    }
    if (rc == AGNES_OK)
        rc = text ? util_write_file_atomic(record_path, text, strlen(text), 0600, err)
                  : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    pthread_mutex_unlock(&store->lock);
    free(text);
    if (rc != AGNES_OK) {
        json_decref(*record);
        *record = NULL;
        remove_handle(store, handle);
    }
    return rc;
}

/* The first table of then that now lacks, or NULL. */
static const char *lost_table(const json_t *then, const json_t *now)
{
    size_t i, j;
    json_t *a, *b;
    json_array_foreach(then, i, a) {
        bool kept = false;
        json_array_foreach(now, j, b)
            kept = kept || json_equal(a, b);
        if (!kept)
            return json_string_value(a);
    }
    return NULL;
}

int result_store_open(result_store *store, const char *handle, const char *user_id, bool is_admin,
                      const json_t *visible, json_t **record, char *path, size_t path_size, agnes_error *err)
{
    *record = NULL;
    json_t *found = result_handle_valid(handle) ? load_record(store, handle) : NULL;
    if (found == NULL || strcmp(json_string_value(json_object_get(found, "user_id")), user_id) != 0 ||
        json_integer_value(json_object_get(found, "expires_unix")) <= util_unix_now()) {
        json_decref(found);
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                               "No result with handle %.40s: handles are kept for %lld minutes and only for the user "
                               "who ran the query. Run the query again for a new one.",
                               handle ? handle : "", store->ttl_seconds / 60);
    }
    /* Bound to the grants of the time: losing any of them revokes the handle. */
    const char *lost = NULL;
    if (json_is_true(json_object_get(found, "is_admin")) && !is_admin)
        lost = "(admin access)";
    else if (!is_admin)
        lost = lost_table(json_object_get(found, "visible"), visible);
    if (lost != NULL) {
        agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                        "Your access changed since this result was made (you no longer read %s), so it is no longer "
                        "available. Run the query again.",
                        lost);
        json_decref(found);
        return AGNES_ERR_FORBIDDEN;
    }
    file_path(store, handle, ".parquet", path, path_size);
    *record = found;
    return AGNES_OK;
}

/* A page read's deadline: a thread that interrupts the connection when
 * the read has not finished by then.  The reader runs in the server, so
 * no read may hold a request thread unbounded (a page of a pathological
 * file, a deep OFFSET). */
typedef struct read_deadline {
    pthread_mutex_t lock;
    pthread_cond_t finished_cond;
    bool finished, fired;
    duckdb_connection conn;
    struct timespec until;
} read_deadline;

static void *deadline_watch(void *cls)
{
    read_deadline *d = cls;
    pthread_mutex_lock(&d->lock);
    int rc = 0;
    while (!d->finished && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&d->finished_cond, &d->lock, &d->until);
    if (!d->finished) {
        duckdb_interrupt(d->conn);
        d->fired = true;
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int result_store_page(result_store *store, const char *path, const json_t *record, long long offset, long long limit,
                      long long max_chars, result_page *page, agnes_error *err)
{
    duckdb_connection conn = NULL;
    memset(page, 0, sizeof *page);
    if (store_connect(store, &conn, err) != AGNES_OK)
        return err->code;
    read_deadline deadline = {.conn = conn};
    pthread_condattr_t attributes;
    pthread_t watcher;
    bool watching = false;
    clock_gettime(CLOCK_MONOTONIC, &deadline.until);
    deadline.until.tv_sec += RESULT_READ_SECONDS;
    if (pthread_mutex_init(&deadline.lock, NULL) == 0) {
        if (pthread_condattr_init(&attributes) == 0 && pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) == 0 &&
            pthread_cond_init(&deadline.finished_cond, &attributes) == 0) {
            watching = pthread_create(&watcher, NULL, deadline_watch, &deadline) == 0;
            if (!watching)
                pthread_cond_destroy(&deadline.finished_cond);
        }
        pthread_condattr_destroy(&attributes);
    }
    if (!watching) {
        pthread_mutex_destroy(&deadline.lock);
        duckdb_disconnect(&conn);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the result reader's deadline thread");
    }
    int rc = result_page_read(conn, path, json_object_get(record, "shape"), offset, limit, max_chars, page, err);
    pthread_mutex_lock(&deadline.lock);
    deadline.finished = true;
    pthread_cond_signal(&deadline.finished_cond);
    pthread_mutex_unlock(&deadline.lock);
    pthread_join(watcher, NULL);
    pthread_cond_destroy(&deadline.finished_cond);
    pthread_mutex_destroy(&deadline.lock);
    if (deadline.fired && rc != AGNES_OK) {
        result_page_free(page);
        rc = agnes_error_set(err, AGNES_ERR_TIMEOUT,
                             "Reading this page took longer than %d seconds and was stopped. Ask for fewer rows "
                             "(limit, max_chars) or download the result (GET /api/results/HANDLE?format=parquet).",
                             RESULT_READ_SECONDS);
    }
    duckdb_disconnect(&conn);
    return rc;
}

int result_store_delete(result_store *store, const char *handle, const char *user_id, agnes_error *err)
{
    json_t *found = result_handle_valid(handle) ? load_record(store, handle) : NULL;
    bool mine = found != NULL && strcmp(json_string_value(json_object_get(found, "user_id")), user_id) == 0;
    json_decref(found);
    if (!mine)
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "No result with handle %.40s.", handle ? handle : "");
    pthread_mutex_lock(&store->lock);
    remove_handle(store, handle);
    pthread_mutex_unlock(&store->lock);
    return AGNES_OK;
}

json_t *result_store_list(result_store *store, const char *user_id)
{
    json_t *mine = records_of(store, user_id), *out = json_array();
    for (size_t i = json_array_size(mine); i-- > 0;) {
        json_t *r = json_array_get(mine, i);
        json_array_append_new(out, json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "handle", json_object_get(r, "handle"),
                                             "created_at", json_object_get(r, "created_at"), "expires_at",
                                             json_object_get(r, "expires_at"), "total_rows",
                                             json_object_get(r, "total_rows"), "size_bytes",
                                             json_object_get(r, "size_bytes"), "sql", json_object_get(r, "sql")));
    }
    json_decref(mine);
    return out;
}

void result_store_sweep(result_store *store)
{
    pthread_mutex_lock(&store->lock);
    DIR *dir = opendir(store->dir);
    struct dirent *entry;
    int64_t now = util_unix_now();
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        char handle[RESULT_HANDLE_LEN + 1], path[AGNES_PATH_MAX + 300];
        const char *name = entry->d_name;
        if (name[0] == '.')
            continue;
        memcpy(handle, name, strnlen(name, RESULT_HANDLE_LEN));
        handle[strnlen(name, RESULT_HANDLE_LEN)] = '\0';
        snprintf(path, sizeof path, "%s/%s", store->dir, name);
        if (!result_handle_valid(handle)) {
            continue; /* not ours: never delete what this module did not write */
        }
        const char *suffix = name + RESULT_HANDLE_LEN;
        if (strcmp(suffix, ".parquet.part") == 0) {
            struct stat st; /* a write in progress is younger than the longest query */
            if (stat(path, &st) == 0 && st.st_mtime < now - 3600)
                unlink(path);
            continue;
        }
        if (strcmp(suffix, ".json") != 0 && strcmp(suffix, ".parquet") != 0)
            continue;
        json_t *record = load_record(store, handle);
        bool expired = record != NULL && json_integer_value(json_object_get(record, "expires_unix")) <= now;
        struct stat st;
        /* A Parquet file without a record: its writer died before finishing (or is finishing now). */
        bool orphan = record == NULL && stat(path, &st) == 0 && st.st_mtime < now - 60;
        if (expired || orphan) {
            if (record != NULL)
                remove_handle(store, handle);
            else
                unlink(path);
        }
        json_decref(record);
    }
    if (dir != NULL)
        closedir(dir);
    pthread_mutex_unlock(&store->lock);
}

/* ---- CSV export --------------------------------------------------------- */

struct result_csv {
    duckdb_connection conn;
    duckdb_prepared_statement statement;
    duckdb_result result;
    bool has_result;
    idx_t column_count;
    duckdb_logical_type *types;
    bool done;
    strbuf out;
    size_t sent;
};

void result_csv_free(result_csv *csv)
{
    if (csv == NULL)
        return;
    for (idx_t c = 0; csv->types != NULL && c < csv->column_count; c++)
        duckdb_destroy_logical_type(&csv->types[c]);
    free(csv->types);
    if (csv->has_result)
        duckdb_destroy_result(&csv->result);
    if (csv->statement != NULL)
        duckdb_destroy_prepare(&csv->statement);
    if (csv->conn != NULL)
        duckdb_disconnect(&csv->conn);
    strbuf_free(&csv->out);
    free(csv);
}

int result_csv_open(result_store *store, const char *path, const json_t *record, result_csv **out, agnes_error *err)
{
    *out = NULL;
    result_csv *csv = calloc(1, sizeof *csv);
    strbuf sql;
    strbuf_init(&sql);
    bool clash = false;
    int rc = csv ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (csv != NULL)
        strbuf_init(&csv->out);
    if (rc == AGNES_OK)
        rc = store_connect(store, &csv->conn, err);
    strbuf_append_str(&sql, "SELECT ");
    if (rc == AGNES_OK)
        rc = select_list(csv->conn, path, json_object_get(record, "shape"), &sql, &clash, err);
    strbuf_append_str(&sql, " FROM read_parquet(");
    duck_append_literal(&sql, path);
    strbuf_append_char(&sql, ')');
    if (rc == AGNES_OK && strbuf_failed(&sql))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (rc == AGNES_OK && (rc = stream_query(csv->conn, sql.data, &csv->statement, &csv->result, err)) == AGNES_OK)
        csv->has_result = true;
    strbuf_free(&sql);
    if (rc == AGNES_OK) {
        csv->column_count = duckdb_column_count(&csv->result);
        if ((csv->types = calloc(csv->column_count + 1, sizeof *csv->types)) == NULL)
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    const json_t *names = json_object_get(json_object_get(record, "shape"), "columns");
    bool named = rc == AGNES_OK && json_array_size(names) == csv->column_count;
    for (idx_t c = 0; rc == AGNES_OK && c < csv->column_count; c++) {
        csv->types[c] = duckdb_column_logical_type(&csv->result, c);
        /* The names as the query gave them (Parquet renames repeated ones). */
        const char *name = named ? json_string_value(json_array_get(names, c)) : duckdb_column_name(&csv->result, c);
        rc = result_format_supported(csv->types[c], name, err);
        if (c)
            strbuf_append_char(&csv->out, ',');
        result_format_csv_text(&csv->out, name, strlen(name));
    }
    strbuf_append_char(&csv->out, '\n');
    if (rc != AGNES_OK) {
        result_csv_free(csv);
        return rc;
    }
    *out = csv;
    return AGNES_OK;
}

ssize_t result_csv_read(result_csv *csv, char *buf, size_t max, agnes_error *err)
{
    while (csv->sent == csv->out.len && !csv->done) {
        strbuf_reset(&csv->out);
        csv->sent = 0;
        duckdb_data_chunk chunk = duckdb_fetch_chunk(csv->result);
        if (chunk == NULL) {
            if (duckdb_result_error(&csv->result) != NULL) {
                agnes_error_set(err, AGNES_ERR_DB, "cannot read the result: %s", duckdb_result_error(&csv->result));
                return -1;
            }
            csv->done = true;
            break;
        }
        idx_t size = duckdb_data_chunk_get_size(chunk);
        for (idx_t r = 0; r < size; r++) {
            for (idx_t c = 0; c < csv->column_count; c++) {
                if (c)
                    strbuf_append_char(&csv->out, ',');
                result_format_csv(&csv->out, duckdb_data_chunk_get_vector(chunk, c), csv->types[c], r);
            }
            strbuf_append_char(&csv->out, '\n');
        }
        duckdb_destroy_data_chunk(&chunk);
        if (strbuf_failed(&csv->out)) {
            agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory formatting the result");
            return -1;
        }
    }
    size_t n = csv->out.len - csv->sent;
    if (n > max)
        n = max;
    if (n > 0)
        memcpy(buf, csv->out.data + csv->sent, n);
    csv->sent += n;
    return (ssize_t)n;
}
