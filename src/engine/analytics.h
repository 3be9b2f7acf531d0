/*
 * analytics.h - the read side of the catalog.
 *
 * One read-only DuckDB instance ("snapshot") on analytics/server.duckdb with
 * every extract ATTACHed under its source name, because the catalog's views
 * read "<source>"."<table>".  Opening that costs tens of milliseconds, so it
 * is done once per rebuild, not per request: requests acquire the current
 * snapshot, open their own connection, and release it.  A reload swaps in a
 * new snapshot; the old one closes when its last user releases it, so a
 * query running across a rebuild finishes on the data it started with.
 */
#ifndef AGNES_ENGINE_ANALYTICS_H
#define AGNES_ENGINE_ANALYTICS_H

#include <duckdb.h>
#include <jansson.h>
#include <pthread.h>

#include "core/credentials.h"
#include "core/error.h"
#include "core/paths.h"

typedef struct analytics_snapshot {
    duckdb_database database;
    unsigned long long generation; /* increases with every snapshot opened */
    /* What query workers build their engines from (query_sandbox.h):
     * every table's columns, view, files and remote statements. */
    json_t *description;
    /* agnes.tables as JSON objects {id, name, description, source_type,
     * query_mode, rows, size_bytes, last_sync}, ordered by name, and the
     * bare names: read once here so requests do not query for them. */
    json_t *tables;
    json_t *table_names;
    /* The rebuild's own report {built_at, sources, collisions, views}, or
     * NULL for a catalog built before reports were kept. */
    json_t *rebuild;
    int users; /* guarded by analytics.lock; +1 while it is the current one */
} analytics_snapshot;

typedef struct analytics {
    pthread_mutex_t lock;
    analytics_snapshot *current; /* NULL until a catalog exists */
    unsigned long long generations; /* snapshots opened so far */
    char memory_limit[32];       /* DuckDB memory_limit of every snapshot */
    credentials *credentials;    /* connection strings of remote sources (runtime-owned) */
    int remote_timeout_seconds;  /* statement timeout of remote queries */
} analytics;

/* How to open the whole catalog, locked down: the server's snapshot and
 * an admin query worker's engine are opened the same way. */
typedef struct analytics_engine_options {
    const char *catalog_path;   /* analytics/server.duckdb */
    const json_t *extracts;     /* [{source, path}]: attached read-only under the source's name */
    const char *extracts_dir;   /* readable: the views read their Parquet here */
    const char *work_dir;       /* readable and writable: spill files, Parquet results */
    const char *memory_limit;   /* DuckDB syntax */
    int threads;                /* 0: DuckDB's default */
    credentials *credentials;   /* for remote views; NULL: they bind but do not run */
    int remote_timeout_seconds;
    const char *token_envs;     /* allowlist of connection variable names */
} analytics_engine_options;

/* Open the catalog with every extract attached (a source that fails to
 * attach is skipped, logged), postgres_query registered, then locked down:
 * external access off but for extracts_dir and work_dir, the memory limit
 * set, the configuration locked so SQL cannot undo any of it. */
int analytics_open_engine(const analytics_engine_options *options, duckdb_database *out, agnes_error *err);

/* [{source, path}] of every extract under DATA_DIR (new reference). */
json_t *analytics_extract_list(const agnes_paths *paths);

/* memory_limit is DuckDB's syntax ("2GB", "512MB").  store (outliving a)
 * holds the connection strings remote views use; remote statements end
 * after remote_timeout_seconds. */
int analytics_init(analytics *a, const char *memory_limit, credentials *store, int remote_timeout_seconds,
                   agnes_error *err);

/* Open a snapshot of the catalog as it is on disk now and make it current.
 *
 * The snapshot is locked down before anyone else sees it, because
 * /api/query runs callers' SQL on it: external access is off except for
 * the extracts tree (the views read their Parquet there) and DATA_DIR/tmp
 * (Parquet results are written there), a memory limit is set, and the
 * configuration is locked so SQL cannot undo any of it. */
int analytics_reload(analytics *a, const agnes_paths *paths, agnes_error *err);

/* The current snapshot with a reference taken, or NULL when there is no catalog. */
analytics_snapshot *analytics_acquire(analytics *a);
void analytics_release(analytics *a, analytics_snapshot *snapshot);

void analytics_free(analytics *a);

#endif
