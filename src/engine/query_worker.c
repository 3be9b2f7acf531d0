#include "engine/query_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/credentials.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "engine/analytics.h"
#include "engine/query_exec.h"
#include "engine/query_guard.h"
#include "engine/result_handle.h"
#include "engine/query_protocol.h"
#include "engine/query_sandbox.h"

/* Formatted output read ahead before the HEAD frame: enough to know, for
 * any result up to about this size, whether the limit cut it - so the
 * server can say so in a header instead of a trailer. */
#define QUERY_LOOKAHEAD_BYTES (1024u * 1024)

/* Statements the guard passed, remembered for the worker's life: the
 * verdict depends only on the SQL, the catalog and the grants, and the
 * latter two are fixed for a worker.  Dashboards and agents repeat
 * themselves; a repeat skips the probe. */
#define GUARD_MEMORY 64

typedef struct passed_statement {
    uint64_t hash;
    char *sql;
} passed_statement;

struct query_engine {
    bool analyst;
    bool unsandboxed; /* test tools only: the database is the admin engine */
    passed_statement passed[GUARD_MEMORY];
    unsigned next_passed;
    duckdb_database database; /* the admin engine, or the analyst's sandbox */
    /* The next query's connection, made while the worker waits for it:
     * connecting (and an analyst's USE) is then off the query's path.  It
     * has run nothing else, so it is as fresh as one made on demand - a
     * query's temporary objects never outlive its own connection. */
    duckdb_connection spare;
    query_probe probe;        /* analyst: the guard's view of the catalog */
    json_t *visible;
    json_t *unservable;
    credentials credentials;
    bool has_credentials;
    char memory_limit[32];
    char work_dir[AGNES_PATH_MAX];
    char result_path[AGNES_PATH_MAX + 32];
    char result_cut_path[AGNES_PATH_MAX + 32];
};

static const char *text_field(const json_t *object, const char *key, const char *fallback)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value != NULL ? value : fallback;
}

/* ---- building the engine -------------------------------------------------- */

static int make_work_dir(query_engine *engine, const char *tmp_dir, agnes_error *err)
{
    if (util_format(engine->work_dir, sizeof engine->work_dir, err, "%s/query-worker-%ld", tmp_dir, (long)getpid()))
        return err->code;
    agnes_error ignored;
    if (util_is_directory(engine->work_dir))
        util_remove_tree(engine->work_dir, &ignored); /* a previous process with our pid */
    if (util_mkdir_p(engine->work_dir, 0700, err) != AGNES_OK)
        return err->code;
    snprintf(engine->result_path, sizeof engine->result_path, "%s/result.parquet", engine->work_dir);
    snprintf(engine->result_cut_path, sizeof engine->result_cut_path, "%s/result-cut.parquet", engine->work_dir);
    return AGNES_OK;
}

static int load_credentials(query_engine *engine, const json_t *values, agnes_error *err)
{
    if (credentials_init(&engine->credentials, err) != AGNES_OK)
        return err->code;
    engine->has_credentials = true;
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)values, name, value) {
        if (json_is_string(value) && credentials_set(&engine->credentials, name, json_string_value(value), err))
            return err->code;
    }
    return AGNES_OK;
}

static int open_admin(query_engine *engine, const json_t *init, agnes_error *err)
{
    const json_t *catalog = json_object_get(init, "catalog");
    analytics_engine_options options = {
        .catalog_path = text_field(catalog, "path", ""),
        .extracts = json_object_get(catalog, "extracts"),
        .extracts_dir = text_field(catalog, "extracts_dir", "/nonexistent"),
        .work_dir = engine->work_dir,
        .memory_limit = engine->memory_limit,
        .threads = (int)json_integer_value(json_object_get(init, "threads")),
        .credentials = &engine->credentials,
        .remote_timeout_seconds = (int)json_integer_value(json_object_get(init, "remote_timeout")),
        .token_envs = text_field(init, "token_envs", ""),
    };
    return analytics_open_engine(&options, &engine->database, err);
}

static int open_analyst(query_engine *engine, const json_t *init, agnes_error *err)
{
    const json_t *tables = json_object_get(init, "tables");
    const char *extra[] = {engine->result_path, engine->result_cut_path, NULL};
    query_sandbox_options options = {
        .work_dir = engine->work_dir,
        .memory_limit = engine->memory_limit,
        .threads = (int)json_integer_value(json_object_get(init, "threads")),
        .credentials = &engine->credentials,
        .remote_timeout_seconds = (int)json_integer_value(json_object_get(init, "remote_timeout")),
        .token_envs = text_field(init, "token_envs", ""),
        .extra_paths = extra,
    };
    engine->visible = json_deep_copy(json_object_get(init, "visible"));
    if (engine->visible == NULL)
        engine->visible = json_array();
    double started = util_monotonic_ms();
    if (query_probe_open(tables, &engine->probe, err) != AGNES_OK)
        return err->code;
    double probed = util_monotonic_ms();
    int rc = query_sandbox_open(tables, &options, &engine->database, &engine->unservable, err);
    log_debug("msg=\"query engine built\" tables=%zu probe_ms=%.1f sandbox_ms=%.1f", json_array_size(tables),
              probed - started, util_monotonic_ms() - probed);
    return rc;
}

int query_engine_open(const json_t *init, query_engine **out, agnes_error *err)
{
    query_engine *engine = calloc(1, sizeof *engine);
    *out = NULL;
    if (engine == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    engine->analyst = strcmp(text_field(init, "role", ""), "admin") != 0;
    snprintf(engine->memory_limit, sizeof engine->memory_limit, "%s", text_field(init, "memory_limit", "2GB"));
    int rc = make_work_dir(engine, text_field(init, "tmp_dir", "/tmp"), err);
    if (rc == AGNES_OK)
        rc = load_credentials(engine, json_object_get(init, "credentials"), err);
    if (rc == AGNES_OK)
        rc = engine->analyst ? open_analyst(engine, init, err) : open_admin(engine, init, err);
    if (rc != AGNES_OK) {
        query_engine_close(engine);
        return rc;
    }
    *out = engine;
    return AGNES_OK;
}

int query_engine_open_guard_only(const json_t *analyst_init, const json_t *admin_init, query_engine **out,
                                 agnes_error *err)
{
    query_engine *admin = NULL, *analyst = NULL;
    *out = NULL;
    if (query_engine_open(admin_init, &admin, err) != AGNES_OK)
        return err->code;
    if (query_engine_open(analyst_init, &analyst, err) != AGNES_OK) {
        query_engine_close(admin);
        return err->code;
    }
    /* The analyst's guard in front of the whole catalog. */
    duckdb_database sandbox = analyst->database;
    analyst->database = admin->database;
    analyst->unsandboxed = true;
    admin->database = sandbox;
    admin->work_dir[0] = '\0'; /* the same directory as the analyst's (one process) */
    query_engine_close(admin);
    *out = analyst;
    return AGNES_OK;
}

void query_engine_close(query_engine *engine)
{
    if (engine == NULL)
        return;
    for (size_t i = 0; i < GUARD_MEMORY; i++)
        free(engine->passed[i].sql);
    if (engine->spare != NULL)
        duckdb_disconnect(&engine->spare);
    if (engine->database != NULL)
        duckdb_close(&engine->database);
    query_probe_close(&engine->probe);
    json_decref(engine->visible);
    json_decref(engine->unservable);
    if (engine->has_credentials)
        credentials_free(&engine->credentials);
    agnes_error ignored;
    if (engine->work_dir[0] != '\0')
        util_remove_tree(engine->work_dir, &ignored);
    free(engine);
}

/* ---- one query ------------------------------------------------------------------ */

/* DuckDB's message as the caller may see it (rc AGNES_ERR_DB), or rc. */
static int caller_error(const query_engine *engine, int rc, agnes_error *err)
{
    if (rc != AGNES_ERR_DB)
        return rc;
    char message[AGNES_ERROR_MESSAGE_MAX], name[256];
    snprintf(message, sizeof message, "%s", err->message);
    query_utf8_truncate(message, sizeof message);
    if (strstr(message, "Out of Memory Error") != NULL) {
        /* DuckDB's advice after it ("SET memory_limit=...") is not the caller's to take. */
        char *advice = strstr(message, "\n\n");
        if (advice != NULL)
            *advice = '\0';
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Query error: the query needs more memory than its limit of %s "
                               "(query.memory_limit). Narrow it (filters, fewer columns, smaller lists) or ask an "
                               "admin to raise the limit. %s",
                               engine->memory_limit, message);
    }
    if (engine->analyst && query_guard_missing_name(message, name, sizeof name))
        return query_guard_missing(name, err);
    if (strncmp(message, "Permission Error", 16) == 0)
        return engine->analyst
                   ? agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                     "Queries read the catalog's tables by name only, not files, URLs or other "
                                     "databases. GET /api/catalog/tables lists the tables you can query.")
                   : agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                                     "Query error: %s. Queries may read the catalog's views only.", message);
    return agnes_error_set(err, AGNES_ERR_INVALID, "Query error: %s", message);
}

static int send_error(int fd, char type, int rc, agnes_error *err, agnes_error *io)
{
    query_utf8_truncate(err->message, sizeof err->message);
    query_utf8_sanitize(err->message);
    return query_frame_write_error(fd, type, rc, err->message, io);
}

static uint64_t text_hash(const char *text)
{
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    return hash;
}

static bool guard_passed_before(const query_engine *engine, const char *sql, uint64_t hash)
{
    for (size_t i = 0; i < GUARD_MEMORY; i++)
        if (engine->passed[i].sql != NULL && engine->passed[i].hash == hash && strcmp(engine->passed[i].sql, sql) == 0)
            return true;
    return false;
}

static void remember_passed(query_engine *engine, const char *sql, uint64_t hash)
{
    passed_statement *slot = &engine->passed[engine->next_passed++ % GUARD_MEMORY];
    free(slot->sql);
    slot->sql = util_strdup(sql);
    slot->hash = hash;
}

/* Everything before the first byte: shape, guard, start.  *run on success. */
/* Start the statement the guard passed.  With `exact` (result handles), the
 * columns Parquet would not keep exactly are cast to text first and *shape
 * says how to read them back (engine/result_handle.h); the wrapping is
 * ours, so it runs after the guard judged the caller's own SQL. */
static int exec_start(query_engine *engine, duckdb_connection conn, const query_exec_request *request, bool exact,
                      json_t **shape, query_exec **run, agnes_error *err)
{
    query_exec_request wrapped = *request;
    char *exact_sql = NULL;
    int rc = exact ? result_exact_sql(conn, request->sql, &exact_sql, shape, err) : AGNES_OK;
    if (rc == AGNES_OK && exact_sql != NULL) {
        wrapped.sql = exact_sql;
        wrapped.extracted = NULL; /* the split was of the caller's text */
    }
    if (rc == AGNES_OK)
        rc = caller_error(engine, query_exec_start(conn, &wrapped, run, err), err);
    free(exact_sql); /* query_exec_start copied what it needs into the prepared statement */
    return rc;
}

static int start(query_engine *engine, duckdb_connection conn, const char *sql, const query_exec_request *request,
                 bool guard, bool exact, json_t **shape, query_exec **run, agnes_error *err)
{
    query_statements statements;
    duckdb_connection split_conn = conn;
    bool check = engine->analyst && guard;
    uint64_t hash = check ? text_hash(sql) : 0;
    if (check && guard_passed_before(engine, sql, hash))
        return exec_start(engine, conn, request, exact, shape, run, err);
    if (check)
        split_conn = engine->probe.connection; /* a PIVOT's source binds there whatever the grants */
    int rc = query_guard_split(split_conn, sql, &statements, err);
    bool split = rc == AGNES_OK;
    bool pivot = split && statements.pivot;
    if (rc == AGNES_OK && check) {
        query_guard_policy policy = {.visible = engine->visible, .unservable = engine->unservable};
        bool explain = false;
        rc = query_guard_check(&engine->probe, sql, pivot, &policy, &explain, err);
        if (explain) {
            char why[AGNES_ERROR_MESSAGE_MAX];
            snprintf(why, sizeof why, "%s", err->message);
            rc = pivot ? query_guard_explain_pivot(conn, sql, err) : query_guard_explain(conn, sql, why, err);
        }
        if (rc == AGNES_OK && !pivot)
            remember_passed(engine, sql, hash);
    }
    if (rc == AGNES_OK) {
        /* Split on this very connection: the run prepares those statements
         * instead of parsing the text again (one parse, as in-process). */
        query_exec_request reuse = *request;
        if (split_conn == conn) {
            reuse.extracted = statements.extracted;
            reuse.extracted_count = statements.count;
        }
        rc = exec_start(engine, conn, &reuse, exact, shape, run, err);
    }
    if (split)
        query_guard_statements_free(&statements);
    return rc;
}

static int send_data(int fd, strbuf *out, agnes_error *io)
{
    for (size_t sent = 0; sent < out->len;) {
        size_t n = out->len - sent > QUERY_DATA_FRAME ? QUERY_DATA_FRAME : out->len - sent;
        if (query_frame_write(fd, QUERY_FRAME_DATA, out->data + sent, n, io) != AGNES_OK)
            return io->code;
        sent += n;
    }
    strbuf_reset(out);
    return AGNES_OK;
}

/* END's payload: the run's final totals (NULL when out of memory). */
static json_t *end_message(query_exec *run)
{
    bool known;
    return json_pack("{s:I, s:b}", "rows", (json_int_t)query_exec_rows(run), "truncated",
                     query_exec_truncated(run, &known));
}

/* HEAD, the body (one DATA frame, none when empty) and END as one write. */
static int send_complete(int fd, query_exec *run, const json_t *head, strbuf *body, agnes_error *io)
{
    strbuf batch;
    strbuf_init(&batch);
    json_t *end = end_message(run);
    int rc = end ? query_frame_append_json(&batch, QUERY_FRAME_HEAD, head, io)
                 : agnes_error_set(io, AGNES_ERR_NOMEM, "out of memory");
    if (rc == AGNES_OK && body->len > 0)
        rc = query_frame_append(&batch, QUERY_FRAME_DATA, body->data, body->len, io);
    if (rc == AGNES_OK)
        rc = query_frame_append_json(&batch, QUERY_FRAME_END, end, io);
    if (rc == AGNES_OK)
        rc = query_frame_send(fd, &batch, io);
    json_decref(end);
    strbuf_free(&batch);
    return rc;
}

/* HEAD, the body, END (or ABORT). */
static int stream(query_engine *engine, query_exec *run, const json_t *shape, int fd, agnes_error *io)
{
    strbuf out;
    agnes_error err;
    int more = 1, rc;
    strbuf_init(&out);
    while (more > 0 && out.len < QUERY_LOOKAHEAD_BYTES)
        more = query_exec_next(run, &out, &err);
    if (more < 0) {
        /* Nothing sent yet: still an ordinary error answer. */
        rc = caller_error(engine, more, &err);
        strbuf_free(&out);
        return send_error(fd, QUERY_FRAME_ERROR, rc, &err, io);
    }
    bool known;
    bool truncated = query_exec_truncated(run, &known);
    /* The whole answer in hand and small: HEAD, DATA and END in one write. */
    bool complete = more == 0 && out.len <= QUERY_DATA_FRAME;
    json_t *head = json_pack("{s:o}", "truncated", known ? json_boolean(truncated) : json_null());
    if (head != NULL && shape != NULL)
        json_object_set(head, "shape", (json_t *)shape);
    if (head != NULL && complete)
        json_object_set_new(head, "complete", json_true());
    if (complete) {
        rc = head ? send_complete(fd, run, head, &out, io) : agnes_error_set(io, AGNES_ERR_NOMEM, "oom");
        json_decref(head);
        strbuf_free(&out);
        return rc;
    }
    rc = head ? query_frame_write_json(fd, QUERY_FRAME_HEAD, head, io) : agnes_error_set(io, AGNES_ERR_NOMEM, "oom");
    json_decref(head);
    while (rc == AGNES_OK) {
        if (more > 0 && out.len < QUERY_DATA_FRAME) {
            more = query_exec_next(run, &out, &err);
            if (more < 0)
                break;
            continue;
        }
        if ((rc = send_data(fd, &out, io)) != AGNES_OK || more == 0)
            break;
    }
    strbuf_free(&out);
    if (rc != AGNES_OK)
        return rc;
    if (more < 0)
        return send_error(fd, QUERY_FRAME_ABORT, caller_error(engine, more, &err), &err, io);
    json_t *end = end_message(run);
    rc = end ? query_frame_write_json(fd, QUERY_FRAME_END, end, io) : agnes_error_set(io, AGNES_ERR_NOMEM, "oom");
    json_decref(end);
    return rc;
}

/* A fresh connection to the engine (analysts: in the catalog "server"). */
static int engine_connect(query_engine *engine, duckdb_connection *conn, agnes_error *err)
{
    if (engine->analyst && !engine->unsandboxed)
        return query_sandbox_connect(engine->database, conn, err);
    if (duckdb_connect(engine->database, conn) == DuckDBSuccess)
        return AGNES_OK;
    *conn = NULL;
    return agnes_error_set(err, AGNES_ERR_DB, "cannot connect to the query engine");
}

void query_engine_prepare(query_engine *engine)
{
    agnes_error ignored; /* no spare: the next query connects itself and says why */
    if (engine->spare == NULL && engine_connect(engine, &engine->spare, &ignored) != AGNES_OK)
        engine->spare = NULL;
}

int query_engine_run(query_engine *engine, const json_t *query, bool guard, int fd, agnes_error *io)
{
    const char *sql = text_field(query, "sql", "");
    query_exec_request request = {
        .sql = sql,
        .limit = json_integer_value(json_object_get(query, "limit")),
        .format = QUERY_FORMAT_JSON,
        .result_path = engine->result_path,
        .result_cut_path = engine->result_cut_path,
        .max_bytes = json_integer_value(json_object_get(query, "max_bytes")),
    };
    query_format_parse(text_field(query, "format", "json"), &request.format);
    bool exact = request.format == QUERY_FORMAT_PARQUET && json_is_true(json_object_get(query, "exact"));
    json_t *shape = NULL;
    if (request.limit < 1)
        request.limit = 1;
    duckdb_connection conn = NULL;
    query_exec *run = NULL;
    agnes_error err;
    int rc = AGNES_OK;
    if (engine->spare != NULL) {
        conn = engine->spare;
        engine->spare = NULL;
    } else {
        rc = engine_connect(engine, &conn, &err);
    }
    if (rc == AGNES_OK)
        rc = start(engine, conn, sql, &request, guard, exact, &shape, &run, &err);
    int io_rc = rc == AGNES_OK ? stream(engine, run, shape, fd, io) : send_error(fd, QUERY_FRAME_ERROR, rc, &err, io);
    query_exec_free(run);
    json_decref(shape);
    if (conn != NULL)
        duckdb_disconnect(&conn);
    if (io_rc == AGNES_OK)
        query_engine_prepare(engine); /* the answer is sent: the server relays while we connect */
    return io_rc;
}

/* ---- the process ---------------------------------------------------------------- */

/* Exit when the server does.  Not PR_SET_PDEATHSIG: that fires when the
 * server *thread* that started us ends, and request threads end all the
 * time.  A worker busy in DuckDB would otherwise run on unwatched. */
static void *watch_server(void *arg)
{
    pid_t server = (pid_t)(intptr_t)arg;
    while (getppid() == server)
        sleep(1);
    _exit(3);
    return NULL;
}

static void limit_self(const json_t *init, pid_t server)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* a core file would hold query data */
    pthread_t watcher;
    if (pthread_create(&watcher, NULL, watch_server, (void *)(intptr_t)server) == 0)
        pthread_detach(watcher);
#if defined(__SANITIZE_ADDRESS__)
    (void)init; /* the sanitizer's shadow memory is counted as data: no cap */
#else
    long long limit = json_integer_value(json_object_get(init, "memory_limit_bytes"));
    long long threads = json_integer_value(json_object_get(init, "threads"));
    if (threads <= 0)
        threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    if (limit > 0) {
        /* Thread stacks count as data too: 16 MB of room for each of DuckDB's threads. */
        rlim_t cap = (rlim_t)(limit + QUERY_WORKER_DATA_MARGIN + threads * 16LL * 1024 * 1024);
        struct rlimit data = {cap, cap};
        if (setrlimit(RLIMIT_DATA, &data) != 0)
            log_warn("msg=\"query worker cannot limit its memory\" detail=\"%s\"", strerror(errno));
    }
#endif
}

int query_worker_main(int fd, pid_t server)
{
    strbuf payload;
    agnes_error err, io;
    char type = 0;
    query_engine *engine = NULL;
    strbuf_init(&payload);
    signal(SIGPIPE, SIG_IGN);
    if (server <= 0 || getppid() != server) /* the server died before the watch began (or none started us) */
        return 1;
    if (query_frame_read(fd, &type, &payload, &err) != AGNES_OK || type != QUERY_FRAME_INIT) {
        fprintf(stderr, "agnes query-worker: run by `agnes serve` only (no INIT on fd %d)\n", fd);
        strbuf_free(&payload);
        return 2;
    }
    json_t *init = query_frame_json(&payload);
    if (init != NULL) {
        limit_self(init, server);
        const char *level = text_field(init, "log_level", NULL);
        enum log_level parsed;
        if (level != NULL && log_parse_level(level, &parsed) == AGNES_OK)
            log_set_level(parsed);
    }
    int rc = init ? query_engine_open(init, &engine, &err)
                  : agnes_error_set(&err, AGNES_ERR_INVALID, "the INIT message is not a JSON object");
    json_decref(init);
    if (rc != AGNES_OK) {
        send_error(fd, QUERY_FRAME_FAILED, rc, &err, &io);
        strbuf_free(&payload);
        return 1;
    }
    json_t *ready = json_object();
    rc = query_frame_write_json(fd, QUERY_FRAME_READY, ready, &io);
    json_decref(ready);
    if (rc == AGNES_OK)
        query_engine_prepare(engine);
    while (rc == AGNES_OK && query_frame_read(fd, &type, &payload, &err) == AGNES_OK) {
        json_t *query = type == QUERY_FRAME_QUERY ? query_frame_json(&payload) : NULL;
        if (query == NULL) {
            log_warn("msg=\"query worker got an unexpected frame\" type=%d", type);
            break;
        }
        rc = query_engine_run(engine, query, true, fd, &io);
        json_decref(query);
    }
    query_engine_close(engine);
    strbuf_free(&payload);
    return 0;
}
