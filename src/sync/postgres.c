/*
 * postgres.c - the PostgreSQL connector (libpq).
 *
 * local / materialized: `COPY (<text select>) TO STDOUT (FORMAT csv)` is
 * streamed by a writer thread into a FIFO that DuckDB reads with
 * read_csv() and writes as Parquet in the same pass, so neither side ever
 * holds the table: memory stays flat whatever the row count.  If the
 * PostgreSQL side fails mid-stream (a dropped connection), DuckDB sees a
 * short file; the writer's error decides, and the half-written Parquet is
 * discarded by the runner - the previous file keeps serving.
 *
 * remote: a view over postgres_query() (engine/postgres_query.h) with the
 * same casts, so a remote table has the same types as a synced one.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "engine/postgres_types.h"
#include "store/duck.h"
#include "sync/connector.h"

static int test_connection(const connector_settings *settings, json_t **details, agnes_error *err)
{
    PGconn *conn = NULL;
    *details = NULL;
    if (postgres_connect(settings->secret, settings->statement_timeout_seconds, &conn, err))
        return err->code;
    PGresult *res = PQexec(conn,
                           "SELECT current_database(), current_user, current_setting('server_version'),"
                           " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                           "  WHERE c.relkind IN ('r','p','v','m','f') AND n.nspname NOT IN ('pg_catalog',"
                           "  'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
                           "  AND has_table_privilege(c.oid, 'SELECT'))");
    int rc = AGNES_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        rc = agnes_error_set(err, AGNES_ERR_NETWORK, "connected, but a first query failed: %s",
                             PQresultErrorMessage(res));
    else
        *details = json_pack("{s:s, s:s, s:s, s:I}", "database", PQgetvalue(res, 0, 0), "user", PQgetvalue(res, 0, 1),
                             "server_version", PQgetvalue(res, 0, 2), "readable_tables",
                             (json_int_t)atoll(PQgetvalue(res, 0, 3)));
    PQclear(res);
    PQfinish(conn);
    return rc;
}

static int discover(const connector_settings *settings, json_t **tables, agnes_error *err)
{
    PGconn *conn = NULL;
    *tables = NULL;
    if (postgres_connect(settings->secret, settings->statement_timeout_seconds, &conn, err))
        return err->code;
    PGresult *res = PQexec(conn,
                           "SELECT n.nspname, c.relname, CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN"
                           " 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END,"
                           " greatest(c.reltuples, 0)::bigint FROM pg_class c"
                           " JOIN pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE c.relkind IN ('r','p','v','m','f') AND NOT c.relispartition"
                           " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                           " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
                           " AND has_table_privilege(c.oid, 'SELECT') ORDER BY 1, 2");
    int rc = AGNES_OK;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = agnes_error_set(err, AGNES_ERR_DB, "cannot list tables: %s", PQresultErrorMessage(res));
    } else {
        *tables = json_array();
        for (int r = 0; r < PQntuples(res); r++)
            json_array_append_new(*tables, json_pack("{s:s, s:s, s:s, s:I}", "bucket", PQgetvalue(res, r, 0),
                                                     "source_table", PQgetvalue(res, r, 1), "kind",
                                                     PQgetvalue(res, r, 2), "rows_estimate",
                                                     (json_int_t)atoll(PQgetvalue(res, r, 3))));
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* The SELECT a registry row stands for: its source_query (materialized) or
 * its table (bucket = schema, default public; source_table, default name). */
static void row_select(const json_t *row, strbuf *out)
{
    const char *mode = json_string_value(json_object_get(row, "query_mode"));
    const char *query = json_string_value(json_object_get(row, "source_query"));
    if (mode != NULL && strcmp(mode, "materialized") == 0 && query != NULL) {
        strbuf_append_str(out, query);
        return;
    }
    const char *schema = json_string_value(json_object_get(row, "bucket"));
    const char *table = json_string_value(json_object_get(row, "source_table"));
    strbuf_append_str(out, "SELECT * FROM ");
    duck_append_identifier(out, schema && schema[0] ? schema : "public");
    strbuf_append_char(out, '.');
    duck_append_identifier(out, table && table[0] ? table : json_string_value(json_object_get(row, "name")));
}

/* A registry row's SELECT, a connection, and the columns PostgreSQL says the
 * SELECT returns: what every operation on one table starts from. */
typedef struct described_row {
    PGconn *conn;
    strbuf select;
    postgres_column *columns;
    size_t count;
} described_row;

/* settle: also ask the data how deep its arrays are (a scan, so only
 * where the rows are about to be read or a view made; notes may be NULL);
 * typed: measure numerics without a precision (also a scan) for their type.
 * Everything runs in one REPEATABLE READ transaction, so what the data was
 * asked and what the COPY then exports are the same snapshot. */
static int describe_row(const connector_settings *settings, const json_t *row, bool settle, bool typed,
                        json_t *notes, described_row *d, agnes_error *err)
{
    memset(d, 0, sizeof *d);
    strbuf_init(&d->select);
    row_select(row, &d->select);
    if (strbuf_failed(&d->select))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    int rc = postgres_connect(settings->secret, settings->statement_timeout_seconds, &d->conn, err);
    if (rc == AGNES_OK && settle) {
        PGresult *res = PQexec(d->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = agnes_error_set(err, AGNES_ERR_NETWORK, "PostgreSQL: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
    if (rc == AGNES_OK)
        rc = postgres_describe(d->conn, d->select.data, &d->columns, &d->count, err);
    if (rc == AGNES_OK && settle)
        rc = postgres_settle_arrays(d->conn, d->select.data, d->columns, d->count, notes, err);
    /* Numerics without a precision are measured wherever types are shown or
     * written (typed): what precheck shows is the type the sync will write.
     * Only the column facts, which need no types, skip that scan. */
    if (rc == AGNES_OK && (settle || typed))
        rc = postgres_settle_numerics(d->conn, d->select.data, d->columns, d->count, notes, err);
    return rc;
}

static void described_row_close(described_row *d)
{
    free(d->columns);
    PQfinish(d->conn);
    strbuf_free(&d->select);
}

/* ---- COPY TO STDOUT -> FIFO -> DuckDB ------------------------------------ */

typedef struct copy_stream {
    PGconn *conn;
    const char *fifo;
    atomic_bool reader_done; /* DuckDB finished (or never started) reading */
    const atomic_bool *cancel;
    long long bytes;
    int failed;
    char error[AGNES_ERROR_MESSAGE_MAX];
} copy_stream;

/* Open the FIFO for writing once DuckDB has opened it for reading; give up
 * when DuckDB is done without ever opening it (e.g. a bind error). */
static int open_fifo_writer(copy_stream *stream)
{
    for (;;) {
        int fd = open(stream->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            return fd;
        }
        if (errno != ENXIO || atomic_load(&stream->reader_done))
            return -1;
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static bool write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void stop_copy(PGconn *conn)
{
    PGcancel *cancel = PQgetCancel(conn);
    char ignored[256];
    if (cancel != NULL) {
        PQcancel(cancel, ignored, sizeof ignored);
        PQfreeCancel(cancel);
    }
}

static void copy_failed(copy_stream *stream, bool stopped)
{
    stream->failed = 1;
    snprintf(stream->error, sizeof stream->error, "%s",
             stopped ? "the sync was stopped" : "DuckDB stopped reading the stream");
    stop_copy(stream->conn);
}

static void *copy_writer(void *arg)
{
    copy_stream *stream = arg;
    sigset_t pipe_signal;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, NULL); /* a reader that stops early is EPIPE, not death */
    int fd = open_fifo_writer(stream);
    if (fd < 0) {
        stream->failed = 1;
        snprintf(stream->error, sizeof stream->error, "DuckDB did not read the stream");
        stop_copy(stream->conn);
    }
    char *buffer = NULL;
    int n;
    /* libpq hands over one row per call; writing each would wake DuckDB
     * per row, so rows are batched into large writes. */
    static const size_t batch_size = 1 << 20;
    char *batch = malloc(batch_size);
    size_t batched = 0;
    if (fd >= 0)
        fcntl(fd, F_SETPIPE_SZ, (int)batch_size); /* best effort: fewer round trips */
    /* Read to the end even after a failure: libpq leaves COPY mode only
     * then, and the cancel makes the server end it quickly. */
    while ((n = PQgetCopyData(stream->conn, &buffer, 0)) > 0 || (n == -1 && batched > 0)) {
        bool stopped = stream->cancel && atomic_load(stream->cancel);
        bool flush = n < 0 || batch == NULL || batched + (size_t)n > batch_size;
        if (!stream->failed && flush && (stopped || fd < 0 || !write_all(fd, batch, batched)))
            copy_failed(stream, stopped);
        if (flush)
            batched = 0;
        if (n < 0)
            break;
        if (batch != NULL && (size_t)n <= batch_size) {
            memcpy(batch + batched, buffer, (size_t)n);
            batched += (size_t)n;
        } else if (!stream->failed && (fd < 0 || !write_all(fd, buffer, (size_t)n))) {
            copy_failed(stream, stopped);
        }
        PQfreemem(buffer);
        stream->bytes += n;
    }
    free(batch);
    if (fd >= 0)
        close(fd); /* DuckDB sees the end of the file */
    PGresult *res;
    while ((res = PQgetResult(stream->conn)) != NULL) { /* the COPY's own verdict */
        bool still_copying = PQresultStatus(res) == PGRES_COPY_OUT; /* only if the connection broke */
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !stream->failed) {
            stream->failed = 1;
            snprintf(stream->error, sizeof stream->error, "PostgreSQL: %s", PQresultErrorMessage(res));
        }
        PQclear(res);
        if (still_copying)
            break;
    }
    if (!stream->failed && PQstatus(stream->conn) != CONNECTION_OK) {
        stream->failed = 1;
        snprintf(stream->error, sizeof stream->error, "PostgreSQL: %s", PQerrorMessage(stream->conn));
    }
    return NULL;
}

/* The DuckDB side: read the FIFO as all-text CSV, cast, write Parquet. */
static void append_duckdb_copy(strbuf *sql, const char *fifo, const char *parquet, const postgres_column *columns,
                               size_t count)
{
    strbuf_append_str(sql, "COPY (SELECT ");
    postgres_append_typed_columns(sql, columns, count);
    strbuf_append_str(sql, " FROM read_csv(");
    duck_append_literal(sql, fifo);
    strbuf_append_str(sql, ", header = false, auto_detect = false, delim = ',', quote = '\"', escape = '\"',"
                           " nullstr = '', allow_quoted_nulls = false, parallel = false, columns = {");
    for (size_t i = 0; i < count; i++)
        strbuf_appendf(sql, "%s'c%zu': 'VARCHAR'", i ? ", " : "", i);
    strbuf_append_str(sql, "})) TO ");
    duck_append_literal(sql, parquet);
    strbuf_append_str(sql, " (FORMAT parquet, COMPRESSION zstd)");
}

static int start_copy(PGconn *conn, const char *select, const postgres_column *columns, size_t count,
                      agnes_error *err)
{
    strbuf copy;
    strbuf_init(&copy);
    strbuf_append_str(&copy, "COPY (");
    postgres_append_text_select(&copy, select, columns, count);
    strbuf_append_str(&copy, ") TO STDOUT (FORMAT csv)");
    int rc = AGNES_OK;
    if (strbuf_failed(&copy)) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    } else {
        PGresult *res = PQexec(conn, copy.data);
        if (PQresultStatus(res) != PGRES_COPY_OUT)
            rc = agnes_error_set(err, AGNES_ERR_DB, "PostgreSQL refused the export: %s", PQresultErrorMessage(res));
        PQclear(res);
    }
    strbuf_free(&copy);
    return rc;
}

/* Stream the COPY through the FIFO into DuckDB; both verdicts count. */
static int stream_to_parquet(PGconn *conn, const connector_job *job, const postgres_column *columns, size_t count,
                             long long *rows, agnes_error *err)
{
    char fifo[AGNES_PATH_MAX + 32];
    snprintf(fifo, sizeof fifo, "%s/copy.csv", job->work_dir);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", fifo, strerror(errno));
    copy_stream stream = {.conn = conn, .fifo = fifo, .cancel = job->cancel};
    strbuf sql;
    strbuf_init(&sql);
    append_duckdb_copy(&sql, fifo, job->parquet_path, columns, count);
    pthread_t writer;
    if (pthread_create(&writer, NULL, copy_writer, &stream) != 0) {
        strbuf_free(&sql);
        unlink(fifo);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the export thread");
    }
    duck_session session;
    agnes_error duck_err;
    bool found = false;
    int rc = duck_session_open(&session, ":memory:", false, &duck_err);
    if (rc == AGNES_OK) {
        duck_exec(session.connection, "SET threads = 2; SET preserve_insertion_order = true", &duck_err);
        rc = duck_query_int(session.connection, sql.data, rows, &found, &duck_err);
        duck_session_close(&session);
    }
    /* DuckDB has closed the FIFO: a writer still writing gets EPIPE, one
     * still waiting to open it sees reader_done. */
    atomic_store(&stream.reader_done, true);
    pthread_join(writer, NULL);
    unlink(fifo);
    strbuf_free(&sql);
    if (stream.failed)
        return agnes_error_set(err, AGNES_ERR_NETWORK, "%s", stream.error);
    if (rc != AGNES_OK)
        return agnes_error_set(err, AGNES_ERR_DB, "writing Parquet failed: %s", duck_err.message);
    return AGNES_OK;
}

/* One export attempt; with find_nonfinite, numeric(p,s) columns holding
 * NaN or ±Infinity are looked for first and exported as DOUBLE. */
static int export_table(const connector_settings *settings, const connector_job *job, bool find_nonfinite,
                        long long *rows, agnes_error *err)
{
    described_row d;
    int changed = 0;
    *rows = 0;
    int rc = describe_row(settings, job->row, true, true, job->notes, &d, err);
    if (rc == AGNES_OK && find_nonfinite)
        rc = postgres_find_nonfinite(d.conn, d.select.data, d.columns, d.count, job->notes, &changed, err);
    if (rc == AGNES_OK)
        rc = start_copy(d.conn, d.select.data, d.columns, d.count, err);
    if (rc == AGNES_OK)
        rc = stream_to_parquet(d.conn, job, d.columns, d.count, rows, err);
    described_row_close(&d);
    return rc;
}

/* One NaN in a numeric(10,2) column used to fail the whole table with no
 * way out but editing the source.  The first attempt assumes DECIMAL (the
 * usual case, one pass); a column that meets NaN or ±Infinity stops it with
 * a marked error, and the table is exported again with such columns as
 * DOUBLE, said in the run's notes. */
static int extract_table(const connector_settings *settings, const connector_job *job, long long *rows,
                         agnes_error *err)
{
    int rc = export_table(settings, job, false, rows, err);
    if (rc == AGNES_ERR_DB && strstr(err->message, POSTGRES_NONFINITE_MARKER) != NULL) {
        unlink(job->parquet_path);
        rc = export_table(settings, job, true, rows, err);
    }
    return rc;
}

static int remote_view(const connector_settings *settings, const json_t *row, strbuf *view_sql, json_t **attach,
                       agnes_error *err)
{
    described_row d;
    strbuf remote;
    strbuf_init(&remote);
    *attach = NULL;
    json_t *notes = json_array();
    int rc = describe_row(settings, row, true, true, notes, &d, err);
    size_t n;
    json_t *note;
    json_array_foreach(notes, n, note) /* a remote table's view is made here, outside any job: the log says it */
        log_warn("msg=\"remote table column\" table=%s note=\"%s\"", json_string_value(json_object_get(row, "id")),
                 json_string_value(note));
    json_decref(notes);
    if (rc == AGNES_OK) {
        postgres_append_text_select(&remote, d.select.data, d.columns, d.count);
        strbuf_append_str(view_sql, "SELECT ");
        postgres_append_typed_columns(view_sql, d.columns, d.count);
        strbuf_append_str(view_sql, " FROM postgres_query(");
        duck_append_literal(view_sql, settings->secret_env);
        strbuf_append_str(view_sql, ", ");
        duck_append_literal(view_sql, remote.data);
        strbuf_append_str(view_sql, ", columns := [");
        for (size_t i = 0; i < d.count; i++)
            strbuf_appendf(view_sql, "%s'c%zu'", i ? ", " : "", i);
        strbuf_append_str(view_sql, "])");
        if (strbuf_failed(view_sql) || strbuf_failed(&remote))
            rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        else
            *attach = json_pack("{s:s, s:s, s:s, s:s}", "alias", settings->source, "extension", "postgres", "url", "",
                                "token_env", settings->secret_env);
    }
    described_row_close(&d);
    strbuf_free(&remote);
    return rc;
}

static int describe(const connector_settings *settings, const json_t *row, json_t **out, agnes_error *err)
{
    described_row d;
    *out = NULL;
    int rc = describe_row(settings, row, false, true, NULL, &d, err);
    if (rc == AGNES_OK) {
        *out = json_array();
        for (size_t i = 0; i < d.count; i++)
            json_array_append_new(*out, json_pack("{s:s, s:s, s:s}", "name", d.columns[i].name, "type",
                                                  d.columns[i].duckdb_type, "source_type", d.columns[i].pg_type));
    }
    described_row_close(&d);
    return rc;
}

/* The source's own facts about a registry row's columns: for each result
 * column that comes from a table column (PQftable), NOT NULL (which a
 * primary key implies) and its comment; and the table's comment. */
static int table_facts(const connector_settings *settings, const json_t *row, json_t **facts, agnes_error *err)
{
    described_row d;
    *facts = NULL;
    int rc = describe_row(settings, row, false, false, NULL, &d, err);
    PGresult *res = NULL, *info = NULL;
    strbuf tables, columns;
    strbuf_init(&tables);
    strbuf_init(&columns);
    if (rc == AGNES_OK) { /* its own statement: the type look-ups replaced the unnamed one */
        res = PQprepare(d.conn, "agnes_facts", d.select.data, 0, NULL);
        bool prepared = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        res = prepared ? PQdescribePrepared(d.conn, "agnes_facts") : NULL;
        if (!prepared || PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = agnes_error_set(err, AGNES_ERR_DB, "cannot describe the query: %s",
                                 res ? PQresultErrorMessage(res) : PQerrorMessage(d.conn));
    }
    for (int i = 0; rc == AGNES_OK && i < PQnfields(res); i++) {
        strbuf_appendf(&tables, "%s%u", i ? "," : "{", PQftable(res, i));
        strbuf_appendf(&columns, "%s%d", i ? "," : "{", PQftablecol(res, i));
    }
    strbuf_append_char(&tables, '}');
    strbuf_append_char(&columns, '}');
    if (rc == AGNES_OK) {
        strbuf regclass;
        strbuf_init(&regclass);
        const char *mode = json_string_value(json_object_get(row, "query_mode"));
        if (mode == NULL || strcmp(mode, "materialized") != 0) { /* "schema"."table": its comment is the table's */
            const char *schema = json_string_value(json_object_get(row, "bucket"));
            const char *table = json_string_value(json_object_get(row, "source_table"));
            duck_append_identifier(&regclass, schema && schema[0] ? schema : "public");
            strbuf_append_char(&regclass, '.');
            duck_append_identifier(&regclass, table && table[0] ? table : json_string_value(json_object_get(row, "name")));
        }
        const char *params[] = {tables.data, columns.data, regclass.data ? regclass.data : ""};
        info = PQexecParams(d.conn,
                            "SELECT c.ord, a.attnotnull, col_description(a.attrelid, a.attnum),"
                            " obj_description(to_regclass(nullif($3, '')), 'pg_class')"
                            " FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS c(rel, col, ord)"
                            " LEFT JOIN pg_attribute a ON a.attrelid = c.rel AND a.attnum = c.col AND c.col > 0"
                            " ORDER BY c.ord",
                            3, NULL, params, NULL, NULL, 0);
        strbuf_free(&regclass);
        if (PQresultStatus(info) != PGRES_TUPLES_OK || PQntuples(info) != PQnfields(res))
            rc = agnes_error_set(err, AGNES_ERR_DB, "cannot read the columns' facts: %s", PQresultErrorMessage(info));
    }
    if (rc == AGNES_OK) {
        json_t *list = json_array();
        for (int i = 0; i < PQnfields(res); i++) {
            bool known = !PQgetisnull(info, i, 1);
            json_array_append_new(list, json_pack("{s:s, s:o, s:o}", "name", PQfname(res, i), "nullable",
                                                  known ? json_boolean(strcmp(PQgetvalue(info, i, 1), "t") != 0)
                                                        : json_null(),
                                                  "description", PQgetisnull(info, i, 2) ? json_null()
                                                                 : json_string(PQgetvalue(info, i, 2))));
        }
        *facts = json_pack("{s:o, s:o}", "description",
                           PQntuples(info) > 0 && !PQgetisnull(info, 0, 3) ? json_string(PQgetvalue(info, 0, 3))
                                                                          : json_null(),
                           "columns", list);
    }
    PQclear(res);
    PQclear(info);
    strbuf_free(&tables);
    strbuf_free(&columns);
    described_row_close(&d);
    return rc;
}

const connector_ops postgres_connector = {
    .type = "postgres",
    .test_connection = test_connection,
    .discover = discover,
    .extract_table = extract_table,
    .remote_view = remote_view,
    .describe = describe,
    .table_facts = table_facts,
};
