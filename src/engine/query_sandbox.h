/*
 * query_sandbox.h - the DuckDB instances a query runs in, and the catalog
 * description they are built from.
 *
 * An analyst's query meets two walls, each sufficient alone:
 *
 *   (a) the guard (query_guard.h) binds the statement in the PROBE - the
 *       catalog's shape without its data: every catalog view, granted or
 *       not, as an empty stand-in with the same name and column types that
 *       reads __agnes_table('<name>') - and decides on the bound plan.
 *   (b) the statement then runs in the caller's SANDBOX - one per grant
 *       set: a database whose catalog holds only the views the
 *       grant set may read, whose allowed_paths are only those views'
 *       files, and whose postgres_query runs only their remote statements.
 *       Nothing else exists there to name, read or introspect.
 *
 * Admins (and the catalog's own sample endpoint) run on the ADMIN engine:
 * server.duckdb with every extract attached, locked down (analytics.h).
 *
 * The description, made once per catalog snapshot by the server
 * (query_sandbox_describe), is a JSON array with one object per table:
 *
 *   name        the catalog view name (the table id)
 *   columns     [[column, type], ...] as DuckDB names the types
 *   view        the extract's "CREATE VIEW ..." statement, or absent
 *   files       every file the view reads (from its bound plan)
 *   remote      [[dsn_env, sql], ...] every postgres_query call it makes
 *   unservable  why a sandbox cannot hold it (a table stored inside its
 *               extract, a view that reads something other than files and
 *               remote statements), or absent
 *
 * Invariant: a worker's description holds view/files/remote only for the
 * tables its grant set may read (query_sandbox_for_grants); the names and
 * columns of the others reach only the probe, which has no data.
 */
#ifndef AGNES_ENGINE_QUERY_SANDBOX_H
#define AGNES_ENGINE_QUERY_SANDBOX_H

#include <duckdb.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

#include "core/credentials.h"
#include "core/error.h"

/* The probe's stand-in table function. */
#define QUERY_PROBE_FUNCTION "__agnes_table"

/* Describe every table of `tables` (analytics' [{id, source_type, ...}])
 * on a connection to the admin engine; *out is a new reference.  A table
 * that cannot be described is marked unservable, never an error. */
int query_sandbox_describe(duckdb_connection catalog, const json_t *tables, json_t **out, agnes_error *err);

/* The description a worker for `visible` (a JSON array of table ids) gets:
 * every table's name and columns, and view/files/remote/unservable of the
 * visible ones only.  New reference, NULL when out of memory. */
json_t *query_sandbox_for_grants(const json_t *description, const json_t *visible);

/* A set of table names (a JSON object keyed by the lower-cased names): a
 * grant set is looked up once per table, not scanned. */
json_t *query_sandbox_name_set(const json_t *names);
bool query_sandbox_in_set(const json_t *set, const char *name);

/* ---- the probe ------------------------------------------------------- */

typedef struct query_probe_log {
    pthread_mutex_t lock;
    json_t *names; /* tables bound since the last reset */
} query_probe_log;

typedef struct query_probe {
    duckdb_database database;
    duckdb_connection connection; /* kept: the guard asks one question at a time */
    query_probe_log *log; /* owned by the registered function */
} query_probe;

/* Build the probe from a description (every table's name and columns), in
 * memory.  A table whose column types do not parse gets VARCHAR columns. */
int query_probe_open(const json_t *description, query_probe *probe, agnes_error *err);

/* A new connection to the probe, its default catalog set to "server". */
int query_probe_connect(query_probe *probe, duckdb_connection *out, agnes_error *err);
void query_probe_close(query_probe *probe);

/* The catalog tables bound since the last reset (new reference), and a reset. */
json_t *query_probe_take_log(query_probe *probe);

/* ---- the sandbox ----------------------------------------------------- */

typedef struct query_sandbox_options {
    const char *work_dir;     /* the worker's private directory (spill files, results) */
    const char *memory_limit; /* DuckDB syntax: "2GB" */
    int threads;              /* 0: DuckDB's default */
    credentials *credentials; /* connection strings of the granted remote tables */
    int remote_timeout_seconds;
    const char *token_envs;   /* allowlist of connection variable names */
    const char *const *extra_paths; /* NULL-terminated: files queries may write (Parquet results) */
} query_sandbox_options;

/* Build the sandbox for the visible tables of `description`, in memory.
 * *unservable (new reference) maps each visible table the sandbox could
 * not hold to the reason.  External access is off except for the tables'
 * files and extra_paths, and the configuration is locked.  Queries cannot
 * write to it: the executor runs SELECTs only (and a PIVOT's temporary enum
 * types, gone with the query's connection). */
int query_sandbox_open(const json_t *description, const query_sandbox_options *options, duckdb_database *out,
                       json_t **unservable, agnes_error *err);

/* A new connection to a sandbox, its default catalog set to "server". */
int query_sandbox_connect(duckdb_database sandbox, duckdb_connection *out, agnes_error *err);

#endif
