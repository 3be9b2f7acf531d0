#include "engine/query_exec.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "engine/arrow_ipc.h"
#include "engine/query_guard.h"
#include "engine/result_format.h"
#include "store/duck.h"

enum run_phase { PHASE_HEADER, PHASE_ROWS, PHASE_FOOTER, PHASE_DONE };

struct query_exec {
    query_format format;
    long long limit;
    long long rows;
    bool truncated;
    double started_ms;
    enum run_phase phase;
    duckdb_connection conn; /* not owned */
    duckdb_prepared_statement statement;
    duckdb_result result;
    bool has_result;
    duckdb_data_chunk chunk; /* the chunk being formatted, or NULL */
    idx_t chunk_row;         /* next row of `chunk` to format */
    idx_t column_count;
    duckdb_logical_type *types;
    duckdb_arrow_options arrow_options; /* arrow: DuckDB's conversion settings */
    struct ArrowSchema arrow_schema;    /* arrow: released in query_exec_free */
    strbuf *out;                        /* where produce() appends; set per call */
    int fd;                             /* parquet: the result file */
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

const char *query_format_name(query_format format)
{
    switch (format) {
    case QUERY_FORMAT_NDJSON: return "ndjson";
    case QUERY_FORMAT_CSV: return "csv";
    case QUERY_FORMAT_PARQUET: return "parquet";
    case QUERY_FORMAT_ARROW: return "arrow";
    default: return "json";
    }
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

/* DuckDB's message for the worker to judge (how much of it a caller may
 * see depends on who they are). */
static int engine_error(const char *message, agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_DB, "%s", message ? message : "unknown error");
}

static void free_types(query_exec *run)
{
    for (idx_t i = 0; run->types != NULL && i < run->column_count; i++)
        duckdb_destroy_logical_type(&run->types[i]);
    free(run->types);
    run->types = NULL;
}

void query_exec_free(query_exec *run)
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
    free(run);
}

/* Run the statements DuckDB made of sql and leave the last one prepared in
 * run->statement: every one before it must be a CREATE (a PIVOT's enum
 * types, made on this connection), the last of type `expected`. */
/* Prepare the last statement of sql (running a PIVOT's CREATE TYPEs before
 * it).  `split`/`split_count`: sql already split on run->conn (borrowed),
 * or NULL to split it here. */
static int prepare(query_exec *run, const char *sql, duckdb_extracted_statements split, idx_t split_count,
                   duckdb_statement_type expected, agnes_error *err)
{
    duckdb_extracted_statements statements = split;
    idx_t count = split != NULL ? split_count : duckdb_extract_statements(run->conn, sql, &statements);
    int rc = AGNES_OK;
    if (count == 0)
        rc = engine_error(statements ? duckdb_extract_statements_error(statements) : "empty query", err);
    for (idx_t i = 0; rc == AGNES_OK && i < count; i++) {
        duckdb_prepared_statement prepared = NULL;
        bool last = i + 1 == count;
        if (duckdb_prepare_extracted_statement(run->conn, statements, i, &prepared) != DuckDBSuccess) {
            rc = engine_error(duckdb_prepare_error(prepared), err);
        } else if (!last && duckdb_prepared_statement_type(prepared) != DUCKDB_STATEMENT_TYPE_CREATE) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID,
                                 "Only a single SELECT statement is allowed; this text holds %llu statements. Send "
                                 "them one request at a time.",
                                 (unsigned long long)count);
        } else if (!last) {
            duckdb_result result;
            if (duckdb_execute_prepared(prepared, &result) != DuckDBSuccess)
                rc = engine_error(duckdb_result_error(&result), err);
            duckdb_destroy_result(&result);
        } else if (expected == DUCKDB_STATEMENT_TYPE_SELECT) {
            rc = query_guard_check_prepared(prepared, err);
        } else if (duckdb_prepared_statement_type(prepared) != expected) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "Only a single SELECT statement is allowed.");
        }
        if (last && rc == AGNES_OK)
            run->statement = prepared;
        else
            duckdb_destroy_prepare(&prepared);
    }
    if (statements != NULL && split == NULL)
        duckdb_destroy_extracted(&statements);
    return rc;
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

static int arrow_schema(query_exec *run, agnes_error *err)
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

static int describe_columns(query_exec *run, agnes_error *err)
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
static int next_chunk(query_exec *run, agnes_error *err)
{
    if (run->chunk != NULL)
        duckdb_destroy_data_chunk(&run->chunk);
    run->chunk_row = 0;
    for (;;) {
        run->chunk = duckdb_fetch_chunk(run->result);
        if (run->chunk == NULL) {
            const char *message = duckdb_result_error(&run->result);
            return message ? engine_error(message, err) : AGNES_OK;
        }
        if (duckdb_data_chunk_get_size(run->chunk) > 0)
            return AGNES_OK;
        duckdb_destroy_data_chunk(&run->chunk);
    }
}

static int start_streaming(query_exec *run, const query_exec_request *request, agnes_error *err)
{
    if (prepare(run, request->sql, request->extracted, request->extracted_count, DUCKDB_STATEMENT_TYPE_SELECT, err) !=
        AGNES_OK)
        return err->code;
    duckdb_pending_result pending = NULL;
    if (duckdb_pending_prepared_streaming(run->statement, &pending) != DuckDBSuccess) {
        int rc = engine_error(duckdb_pending_error(pending), err);
        duckdb_destroy_pending(&pending);
        return rc;
    }
    duckdb_state state = duckdb_execute_pending(pending, &run->result);
    duckdb_destroy_pending(&pending);
    run->has_result = true;
    if (state != DuckDBSuccess)
        return engine_error(duckdb_result_error(&run->result), err);
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

/* DuckDB's "LINE n:" in an error about the COPY below counts our first
 * line: give the caller the line of their own SQL, as /api/query does. */
static void caller_line(agnes_error *err)
{
    char *line = strstr(err->message, "LINE ");
    char *end = NULL;
    long n = line ? strtol(line + 5, &end, 10) : 0;
    if (n < 2 || end == NULL || *end != ':')
        return;
    char rest[AGNES_ERROR_MESSAGE_MAX];
    snprintf(rest, sizeof rest, "%s", end);
    snprintf(line, sizeof err->message - (size_t)(line - err->message), "LINE %ld%s", n - 1, rest);
}

/* COPY (SELECT * FROM (<select>) LIMIT rows) TO path: the rows written. */
static int copy_to(query_exec *run, const char *select, long long rows, const char *path, long long *written,
                   agnes_error *err)
{
    strbuf sql;
    strbuf_init(&sql);
    /* Newlines around the SELECT: a trailing "-- comment" cannot eat the ')'. */
    strbuf_appendf(&sql, "COPY (SELECT * FROM (\n%s\n) LIMIT %lld) TO ", select, rows);
    duck_append_literal(&sql, path);
    strbuf_append_str(&sql, " (FORMAT parquet)");
    unlink(path);
    int rc = strbuf_failed(&sql) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : prepare(run, sql.data, NULL, 0, DUCKDB_STATEMENT_TYPE_COPY, err);
    strbuf_free(&sql);
    if (rc != AGNES_OK) {
        caller_line(err);
        return rc;
    }
    duckdb_result result;
    if (duckdb_execute_prepared(run->statement, &result) != DuckDBSuccess)
        rc = engine_error(duckdb_result_error(&result), err);
    else
        *written = duckdb_value_int64(&result, 0, 0);
    duckdb_destroy_result(&result);
    duckdb_destroy_prepare(&run->statement);
    return rc;
}

/* Bound every file the COPY writes to max_bytes (RLIMIT_FSIZE, restored
 * by copy_bound_end): a write past it fails with EFBIG instead of filling
 * the disk - DuckDB's parquet writer gives no other way to stop at a size.
 * The worker process runs one query at a time, so the limit touches no
 * other query; SIGXFSZ is ignored so the write fails instead of killing
 * the worker. */
static bool copy_bound_start(long long max_bytes, struct rlimit *saved)
{
    struct rlimit bound;
    if (max_bytes <= 0 || getrlimit(RLIMIT_FSIZE, saved) != 0)
        return false;
    bound = *saved;
    if (bound.rlim_max != RLIM_INFINITY && (rlim_t)max_bytes > bound.rlim_max)
        return false;
    bound.rlim_cur = (rlim_t)max_bytes;
    signal(SIGXFSZ, SIG_IGN);
    return setrlimit(RLIMIT_FSIZE, &bound) == 0;
}

static int copy_bound_end(bool bounded, const struct rlimit *saved, long long max_bytes, int rc, agnes_error *err)
{
    if (bounded)
        setrlimit(RLIMIT_FSIZE, saved);
    if (bounded && rc != AGNES_OK && strstr(err->message, strerror(EFBIG)) != NULL) /* DuckDB: "...: File too large" */
        return agnes_error_set(err, AGNES_ERR_INVALID, QUERY_OVER_MAX_BYTES " (%lld bytes).", max_bytes);
    return rc;
}

static int start_parquet(query_exec *run, const query_exec_request *request, agnes_error *err)
{
    char *select = bare_select(request->sql);
    long long written = 0;
    struct rlimit saved;
    if (select == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    bool bounded = copy_bound_start(request->max_bytes, &saved);
    /* One row more than asked for tells whether the result was cut. */
    int rc = copy_to(run, select, request->limit + 1, request->result_path, &written, err);
    free(select);
    const char *path = request->result_path;
    if (rc == AGNES_OK && written > request->limit) {
        strbuf cut;
        strbuf_init(&cut);
        strbuf_append_str(&cut, "SELECT * FROM read_parquet(");
        duck_append_literal(&cut, request->result_path);
        strbuf_append_char(&cut, ')');
        rc = strbuf_failed(&cut) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : copy_to(run, cut.data, request->limit, request->result_cut_path, &written, err);
        strbuf_free(&cut);
        path = request->result_cut_path;
        run->truncated = true;
    }
    rc = copy_bound_end(bounded, &saved, request->max_bytes, rc, err);
    if (rc != AGNES_OK)
        return rc;
    run->rows = written;
    run->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (run->fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open the query result %s: %s", path, strerror(errno));
    unlink(request->result_path); /* the descriptor keeps it readable */
    unlink(request->result_cut_path);
    run->phase = PHASE_FOOTER;
    return AGNES_OK;
}

int query_exec_start(duckdb_connection conn, const query_exec_request *request, query_exec **out, agnes_error *err)
{
    *out = NULL;
    query_exec *run = calloc(1, sizeof *run);
    if (run == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    run->conn = conn;
    run->format = request->format;
    run->limit = request->limit;
    run->started_ms = util_monotonic_ms();
    run->fd = -1;
    int rc = request->format == QUERY_FORMAT_PARQUET ? start_parquet(run, request, err)
                                                      : start_streaming(run, request, err);
    if (rc != AGNES_OK) {
        query_exec_free(run);
        return rc;
    }
    *out = run;
    return AGNES_OK;
}

static int write_header(query_exec *run, agnes_error *err)
{
    strbuf *out = run->out;
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
        result_format_json_string(out, name, strlen(name));
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

static void write_row(query_exec *run, duckdb_vector *vectors, idx_t row)
{
    strbuf *out = run->out;
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
            result_format_json_string(out, name, strlen(name));
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
static int write_arrow_batch(query_exec *run, idx_t size, agnes_error *err)
{
    if ((long long)size > run->limit - run->rows) {
        size = (idx_t)(run->limit - run->rows);
        run->truncated = true; /* rows of this very chunk are cut */
        duckdb_data_chunk_set_size(run->chunk, size);
    }
    struct ArrowArray array = {0};
    if (arrow_error(duckdb_data_chunk_to_arrow(run->arrow_options, run->chunk, &array), "a result chunk", err) !=
        AGNES_OK)
        return err->code;
    int rc = arrow_ipc_write_batch(run->out, &run->arrow_schema, &array, err);
    if (array.release != NULL)
        array.release(&array);
    run->chunk_row = size; /* consumed */
    run->rows += (long long)size;
    return rc;
}

/* Format the rest of the current chunk (up to the limit). */
static int write_rows(query_exec *run, agnes_error *err)
{
    if (run->rows >= run->limit) {
        /* Is there anything beyond the limit?  Look one chunk ahead at most. */
        if (run->chunk != NULL && run->chunk_row >= duckdb_data_chunk_get_size(run->chunk) &&
            next_chunk(run, err) != AGNES_OK)
            return err->code;
        run->truncated = run->truncated || run->chunk != NULL;
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

static void write_footer(query_exec *run)
{
    if (run->format == QUERY_FORMAT_ARROW)
        arrow_ipc_write_end(run->out);
    if (run->format == QUERY_FORMAT_JSON)
        strbuf_appendf(run->out, "],\"row_count\":%lld,\"truncated\":%s,\"elapsed_ms\":%.1f}", run->rows,
                       run->truncated ? "true" : "false", util_monotonic_ms() - run->started_ms);
}

/* Fill run->out with the next piece of the body. */
static int produce(query_exec *run, agnes_error *err)
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

/* Parquet: the next block of the file. */
static int produce_file(query_exec *run, agnes_error *err)
{
    char block[64 * 1024];
    ssize_t n;
    do
        n = read(run->fd, block, sizeof block);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot read the query result: %s", strerror(errno));
    if (n == 0)
        run->phase = PHASE_DONE;
    else
        strbuf_append(run->out, block, (size_t)n);
    return AGNES_OK;
}

int query_exec_next(query_exec *run, strbuf *out, agnes_error *err)
{
    size_t before = out->len;
    run->out = out;
    while (out->len == before && run->phase != PHASE_DONE) {
        int rc = run->fd >= 0 ? produce_file(run, err) : produce(run, err);
        if (rc != AGNES_OK)
            return rc;
        if (strbuf_failed(out))
            return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory while formatting the result");
    }
    run->out = NULL;
    return out->len > before ? 1 : 0;
}

long long query_exec_rows(const query_exec *run)
{
    return run->rows;
}

bool query_exec_truncated(const query_exec *run, bool *known)
{
    *known = run->phase >= PHASE_FOOTER;
    return run->truncated;
}
