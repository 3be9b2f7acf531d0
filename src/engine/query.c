#include "engine/query.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/strbuf.h"
#include "core/util.h"
#include "engine/arrow_ipc.h"
#include "engine/result_format.h"
#include "store/duck.h"

enum run_phase { PHASE_HEADER, PHASE_ROWS, PHASE_FOOTER, PHASE_DONE };

struct query_run {
    query_pool *pool;
    query_slot *slot;
    query_format format;
    long long limit;
    long long rows;
    bool truncated;
    double started_ms;
    enum run_phase phase;
    duckdb_prepared_statement statement;
    duckdb_result result;
    bool has_result;
    duckdb_data_chunk chunk; /* the chunk being formatted, or NULL */
    idx_t chunk_row;         /* next row of `chunk` to format */
    idx_t column_count;
    duckdb_logical_type *types;
    duckdb_arrow_options arrow_options; /* arrow: DuckDB's conversion settings */
    struct ArrowSchema arrow_schema;    /* arrow: released in query_run_free */
    strbuf out; /* formatted, not yet handed out from `sent` on */
    size_t sent;
    int fd; /* parquet: the result file, already unlinked */
};

bool query_format_parse(const char *name, query_format *out)
{
    static const struct {
        const char *name;
        query_format format;
    } formats[] = {{"json", QUERY_FORMAT_JSON}, {"ndjson", QUERY_FORMAT_NDJSON}, {"csv", QUERY_FORMAT_CSV},
                   {"parquet", QUERY_FORMAT_PARQUET}, {"arrow", QUERY_FORMAT_ARROW}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (strcmp(name, formats[i].name) == 0) {
            *out = formats[i].format;
            return true;
        }
    }
    return false;
}

const char *query_format_content_type(query_format format)
{
    switch (format) {
    case QUERY_FORMAT_NDJSON: return "application/x-ndjson";
    case QUERY_FORMAT_CSV: return "text/csv; charset=utf-8";
    case QUERY_FORMAT_PARQUET: return "application/vnd.apache.parquet";
    case QUERY_FORMAT_ARROW: return "application/vnd.apache.arrow.stream";
    default: return "application/json";
    }
}

/* A DuckDB error as the caller should see it. */
static int query_error(query_run *run, const char *message, duckdb_error_type type, agnes_error *err)
{
    if (message == NULL)
        message = "unknown error";
    if (query_pool_timed_out(run->pool, run->slot))
        return agnes_error_set(err, AGNES_ERR_TIMEOUT,
                               "The query ran longer than %.0f seconds and was stopped. Narrow it (filters, LIMIT, "
                               "fewer columns) or ask an admin to raise query.timeout_seconds.",
                               run->pool->timeout_ms / 1000.0);
    if (type == DUCKDB_ERROR_PERMISSION || strncmp(message, "Permission Error", 16) == 0)
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "Query error: %s. Queries may read the catalog's views only.", message);
    return agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", message);
}

static void free_types(query_run *run)
{
    for (idx_t i = 0; run->types != NULL && i < run->column_count; i++)
        duckdb_destroy_logical_type(&run->types[i]);
    free(run->types);
    run->types = NULL;
}

void query_run_free(query_run *run)
{
    if (run == NULL)
        return;
    if (run->chunk != NULL)
        duckdb_destroy_data_chunk(&run->chunk);
    free_types(run);
    if (run->has_result)
        duckdb_destroy_result(&run->result);
    if (run->statement != NULL)
        duckdb_destroy_prepare(&run->statement);
    if (run->fd >= 0)
        close(run->fd);
    if (run->arrow_schema.release != NULL)
        run->arrow_schema.release(&run->arrow_schema);
    if (run->arrow_options != NULL)
        duckdb_destroy_arrow_options(&run->arrow_options);
    strbuf_free(&run->out);
    free(run);
}

static int prepare(query_run *run, const char *sql, duckdb_statement_type expected, agnes_error *err)
{
    if (duckdb_prepare(run->slot->connection, sql, &run->statement) != DuckDBSuccess)
        return query_error(run, duckdb_prepare_error(run->statement), DUCKDB_ERROR_INVALID, err);
    if (expected == DUCKDB_STATEMENT_TYPE_SELECT)
        return query_guard_check_prepared(run->statement, err);
    if (duckdb_prepared_statement_type(run->statement) != expected)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Only a single SELECT statement is allowed.");
    return AGNES_OK;
}

/* Convert DuckDB's error_data into ours (and free it); AGNES_OK when none. */
static int arrow_error(duckdb_error_data error, const char *what, agnes_error *err)
{
    int rc = AGNES_OK;
    if (duckdb_error_data_has_error(error))
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "Query error: cannot convert %s to Arrow: %s", what,
                             duckdb_error_data_message(error));
    duckdb_destroy_error_data(&error);
    return rc;
}

static int arrow_schema(query_run *run, agnes_error *err)
{
    const char *names[run->column_count ? run->column_count : 1];
    for (idx_t i = 0; i < run->column_count; i++)
        names[i] = duckdb_column_name(&run->result, i);
    run->arrow_options = duckdb_result_get_arrow_options(&run->result);
    if (arrow_error(duckdb_to_arrow_schema(run->arrow_options, run->types, names, run->column_count,
                                           &run->arrow_schema),
                    "the result's columns", err) != AGNES_OK)
        return err->code;
    return arrow_ipc_check(&run->arrow_schema, err);
}

static int describe_columns(query_run *run, agnes_error *err)
{
    run->column_count = duckdb_column_count(&run->result);
    if ((run->types = calloc(run->column_count ? run->column_count : 1, sizeof *run->types)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (idx_t i = 0; i < run->column_count; i++) {
        run->types[i] = duckdb_column_logical_type(&run->result, i);
        if (run->format != QUERY_FORMAT_ARROW &&
            result_format_supported(run->types[i], duckdb_column_name(&run->result, i), err) != AGNES_OK)
            return err->code;
    }
    return run->format == QUERY_FORMAT_ARROW ? arrow_schema(run, err) : AGNES_OK;
}

/* The next chunk with rows into run->chunk (NULL at the end). */
static int next_chunk(query_run *run, agnes_error *err)
{
    if (run->chunk != NULL)
        duckdb_destroy_data_chunk(&run->chunk);
    run->chunk_row = 0;
    for (;;) {
        run->chunk = duckdb_fetch_chunk(run->result);
        if (run->chunk == NULL) {
            const char *message = duckdb_result_error(&run->result);
            return message ? query_error(run, message, duckdb_result_error_type(&run->result), err) : AGNES_OK;
        }
        if (duckdb_data_chunk_get_size(run->chunk) > 0)
            return AGNES_OK;
        duckdb_destroy_data_chunk(&run->chunk);
    }
}

static int start_streaming(query_run *run, const char *sql, agnes_error *err)
{
    if (prepare(run, sql, DUCKDB_STATEMENT_TYPE_SELECT, err) != AGNES_OK)
        return err->code;
    duckdb_pending_result pending = NULL;
    if (duckdb_pending_prepared_streaming(run->statement, &pending) != DuckDBSuccess) {
        int rc = query_error(run, duckdb_pending_error(pending), DUCKDB_ERROR_INVALID, err);
        duckdb_destroy_pending(&pending);
        return rc;
    }
    duckdb_state state = duckdb_execute_pending(pending, &run->result);
    duckdb_destroy_pending(&pending);
    run->has_result = true;
    if (state != DuckDBSuccess)
        return query_error(run, duckdb_result_error(&run->result), duckdb_result_error_type(&run->result), err);
    if (describe_columns(run, err) != AGNES_OK)
        return err->code;
    return next_chunk(run, err);
}

/* The caller's SELECT without trailing semicolons or blanks, so it can be
 * wrapped in COPY ( ... ).  The guard has already seen it is one SELECT. */
static char *bare_select(const char *sql)
{
    char *copy = util_strdup(sql);
    if (copy == NULL)
        return NULL;
    size_t n = strlen(copy);
    while (n > 0 && (copy[n - 1] == ';' || copy[n - 1] == ' ' || copy[n - 1] == '\n' || copy[n - 1] == '\t' ||
                     copy[n - 1] == '\r'))
        copy[--n] = '\0';
    return copy;
}

static int start_parquet(query_run *run, const query_request *request, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    char *select = NULL;
    strbuf sql;
    strbuf_init(&sql);
    if (util_format(path, sizeof path, err, "%s/query-%s.parquet", request->tmp_dir, request->request_id))
        return err->code;
    if ((select = bare_select(request->sql)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    /* Newlines around the SELECT: a trailing "-- comment" cannot eat the ')'. */
    strbuf_appendf(&sql, "COPY (SELECT * FROM (\n%s\n) LIMIT %lld) TO ", select, request->limit);
    duck_append_literal(&sql, path);
    strbuf_append_str(&sql, " (FORMAT parquet)");
    free(select);
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : prepare(run, sql.data, DUCKDB_STATEMENT_TYPE_COPY, err);
    strbuf_free(&sql);
    if (rc != AGNES_OK)
        return rc;
    run->has_result = true;
    if (duckdb_execute_prepared(run->statement, &run->result) != DuckDBSuccess) {
        rc = query_error(run, duckdb_result_error(&run->result), duckdb_result_error_type(&run->result), err);
        unlink(path);
        return rc;
    }
    run->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (run->fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open the query result %s: %s", path, strerror(errno));
    unlink(path); /* the descriptor keeps it readable; nothing is left behind */
    run->phase = PHASE_ROWS;
    return AGNES_OK;
}

int query_run_start(query_pool *pool, query_slot *slot, const query_request *request, query_run **out,
                    agnes_error *err)
{
    *out = NULL;
    query_run *run = calloc(1, sizeof *run);
    if (run == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    run->pool = pool;
    run->slot = slot;
    run->format = request->format;
    run->limit = request->limit;
    run->started_ms = util_monotonic_ms();
    run->fd = -1;
    strbuf_init(&run->out);
    int rc = query_guard_check(slot->parser, request->sql, request->policy, err);
    if (rc == AGNES_OK)
        rc = request->format == QUERY_FORMAT_PARQUET ? start_parquet(run, request, err)
                                                      : start_streaming(run, request->sql, err);
    if (rc != AGNES_OK) {
        query_run_free(run);
        return rc;
    }
    *out = run;
    return AGNES_OK;
}

static int write_header(query_run *run, agnes_error *err)
{
    strbuf *out = &run->out;
    if (run->format == QUERY_FORMAT_ARROW)
        return arrow_ipc_write_schema(out, &run->arrow_schema, err);
    if (run->format == QUERY_FORMAT_NDJSON)
        return AGNES_OK;
    if (run->format == QUERY_FORMAT_CSV) {
        for (idx_t i = 0; i < run->column_count; i++) {
            const char *name = duckdb_column_name(&run->result, i);
            if (i)
                strbuf_append_char(out, ',');
            result_format_csv_text(out, name, strlen(name));
        }
        strbuf_append_char(out, '\n');
        return AGNES_OK;
    }
    strbuf_append_str(out, "{\"columns\":[");
    for (idx_t i = 0; i < run->column_count; i++) {
        const char *name = duckdb_column_name(&run->result, i);
        if (i)
            strbuf_append_char(out, ',');
        strbuf_append_json_string(out, name, strlen(name));
    }
    strbuf_append_str(out, "],\"types\":[");
    strbuf type_name;
    strbuf_init(&type_name);
    for (idx_t i = 0; i < run->column_count; i++) {
        strbuf_reset(&type_name);
        result_format_type_name(run->types[i], &type_name);
        if (i)
            strbuf_append_char(out, ',');
        strbuf_append_json_string(out, type_name.data ? type_name.data : "", type_name.len);
    }
    strbuf_free(&type_name);
    strbuf_append_str(out, "],\"rows\":[");
    return AGNES_OK;
}

static void write_row(query_run *run, duckdb_vector *vectors, idx_t row)
{
    strbuf *out = &run->out;
    switch (run->format) {
    case QUERY_FORMAT_CSV:
        for (idx_t c = 0; c < run->column_count; c++) {
            if (c)
                strbuf_append_char(out, ',');
            result_format_csv(out, vectors[c], run->types[c], row);
        }
        strbuf_append_char(out, '\n');
        break;
    case QUERY_FORMAT_NDJSON:
        strbuf_append_char(out, '{');
        for (idx_t c = 0; c < run->column_count; c++) {
            const char *name = duckdb_column_name(&run->result, c);
            if (c)
                strbuf_append_char(out, ',');
            strbuf_append_json_string(out, name, strlen(name));
            strbuf_append_char(out, ':');
            result_format_json(out, vectors[c], run->types[c], row);
        }
        strbuf_append_str(out, "}\n");
        break;
    default:
        strbuf_append_str(out, run->rows > 0 ? ",[" : "[");
        for (idx_t c = 0; c < run->column_count; c++) {
            if (c)
                strbuf_append_char(out, ',');
            result_format_json(out, vectors[c], run->types[c], row);
        }
        strbuf_append_char(out, ']');
    }
    run->rows++;
}

/* The current chunk (cut at the limit) as one Arrow record batch. */
static int write_arrow_batch(query_run *run, idx_t size, agnes_error *err)
{
    if ((long long)size > run->limit - run->rows) {
        size = (idx_t)(run->limit - run->rows);
        duckdb_data_chunk_set_size(run->chunk, size);
    }
    struct ArrowArray array = {0};
    if (arrow_error(duckdb_data_chunk_to_arrow(run->arrow_options, run->chunk, &array), "a result chunk", err) !=
        AGNES_OK)
        return err->code;
    int rc = arrow_ipc_write_batch(&run->out, &run->arrow_schema, &array, err);
    if (array.release != NULL)
        array.release(&array);
    run->chunk_row = size; /* consumed */
    run->rows += (long long)size;
    return rc;
}

/* Format the rest of the current chunk (up to the limit). */
static int write_rows(query_run *run, agnes_error *err)
{
    if (run->rows >= run->limit) {
        /* Is there anything beyond the limit?  Look one chunk ahead at most. */
        if (run->chunk != NULL && run->chunk_row >= duckdb_data_chunk_get_size(run->chunk) &&
            next_chunk(run, err) != AGNES_OK)
            return err->code;
        run->truncated = run->chunk != NULL;
        run->phase = PHASE_FOOTER;
        return AGNES_OK;
    }
    if (run->chunk == NULL || run->chunk_row >= duckdb_data_chunk_get_size(run->chunk)) {
        if (next_chunk(run, err) != AGNES_OK)
            return err->code;
        if (run->chunk == NULL) {
            run->phase = PHASE_FOOTER;
            return AGNES_OK;
        }
    }
    idx_t size = duckdb_data_chunk_get_size(run->chunk);
    if (run->format == QUERY_FORMAT_ARROW)
        return write_arrow_batch(run, size, err);
    duckdb_vector vectors[run->column_count ? run->column_count : 1];
    for (idx_t c = 0; c < run->column_count; c++)
        vectors[c] = duckdb_data_chunk_get_vector(run->chunk, c);
    while (run->chunk_row < size && run->rows < run->limit)
        write_row(run, vectors, run->chunk_row++);
    return AGNES_OK;
}

static void write_footer(query_run *run)
{
    if (run->format == QUERY_FORMAT_ARROW)
        arrow_ipc_write_end(&run->out);
    if (run->format == QUERY_FORMAT_JSON)
        strbuf_appendf(&run->out, "],\"row_count\":%lld,\"truncated\":%s,\"elapsed_ms\":%.1f}", run->rows,
                       run->truncated ? "true" : "false", util_monotonic_ms() - run->started_ms);
}

/* Fill run->out with the next piece of the body. */
static int produce(query_run *run, agnes_error *err)
{
    switch (run->phase) {
    case PHASE_HEADER:
        run->phase = PHASE_ROWS;
        return write_header(run, err);
    case PHASE_ROWS:
        return write_rows(run, err);
    case PHASE_FOOTER:
        write_footer(run);
        run->phase = PHASE_DONE;
        return AGNES_OK;
    default:
        return AGNES_OK;
    }
}

ssize_t query_run_read(query_run *run, char *buf, size_t max, agnes_error *err)
{
    if (run->fd >= 0) {
        ssize_t n = read(run->fd, buf, max);
        if (n < 0)
            agnes_error_set(err, AGNES_ERR_IO, "cannot read the query result: %s", strerror(errno));
        return n < 0 ? -1 : n;
    }
    while (run->sent >= run->out.len) {
        strbuf_reset(&run->out);
        run->sent = 0;
        if (run->phase == PHASE_DONE)
            return 0;
        if (produce(run, err) != AGNES_OK)
            return -1;
        if (strbuf_failed(&run->out)) {
            agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory while formatting the result");
            return -1;
        }
    }
    size_t n = run->out.len - run->sent;
    if (n > max)
        n = max;
    memcpy(buf, run->out.data + run->sent, n);
    run->sent += n;
    return (ssize_t)n;
}

long long query_run_rows(const query_run *run)
{
    return run->rows;
}

void query_sweep_results(const agnes_paths *paths)
{
    char tmp[AGNES_PATH_MAX], path[AGNES_PATH_MAX + 256];
    agnes_error err;
    if (paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, &err) != AGNES_OK)
        return;
    DIR *dir = opendir(tmp);
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, "query-", 6) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp, entry->d_name);
        unlink(path); /* results are written whole and unlinked once open: any left is garbage */
    }
    if (dir != NULL)
        closedir(dir);
}
