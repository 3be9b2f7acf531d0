/*
 * connector.h - what every built-in connector implements.
 *
 * A connector only moves data.  The runner (builtin_sync.h) owns the rest
 * for all of them alike: which tables run, retries, the temp file each
 * table is written to and its rename into place, the extract.duckdb with
 * _meta and views, the contract check before publishing, sync_state and
 * the run's progress.  So a new connector is four functions:
 *
 *   test_connection  prove the credentials work, say what was seen
 *   discover         list the tables an admin could register
 *   extract_table    write one registry row's data as Parquet to a path
 *   remote_view      (optional) the SQL of a view that reads the table at
 *                    query time, plus the _remote_attach row it needs
 *   describe         (optional) the columns a registry row would have, so
 *                    a registration can be checked before it is stored
 *   check_row        (optional) the connector's own rules for a registry
 *                    row (strategies, filters), checked offline at
 *                    registration so a bad row is a 422, not a failed sync
 */
#ifndef AGNES_SYNC_CONNECTOR_H
#define AGNES_SYNC_CONNECTOR_H

#include <jansson.h>
#include <stdatomic.h>

#include "core/error.h"
#include "core/outbound.h"
#include "core/strbuf.h"

#define CONNECTOR_SECRET_MAX 4096

/* A configured source, as the connector sees it (sync/source_settings.h
 * fills it from the merged configuration and the credentials). */
typedef struct connector_settings {
    char source[64];   /* source name: extracts/<source>/ */
    char secret_env[64]; /* variable holding the secret (e.g. POSTGRES_DSN) */
    char secret[CONNECTOR_SECRET_MAX];
    int statement_timeout_seconds;
    /* HTTP sources (Keboola) */
    char url[512];                 /* the service's base URL, no trailing slash */
    outbound_policy outbound;      /* CA bundle, connect-to, private addresses */
    int incremental_window_days;   /* default of rows without their own */
    int parallel_downloads;
    int export_timeout_seconds;
    int download_stall_seconds;
} connector_settings;

typedef struct connector_job {
    const json_t *row;        /* the registry row (id, bucket, source_table, source_query, query_mode, ...) */
    const char *parquet_path; /* write here; the runner renames it into place */
    const char *published_path; /* the table's current Parquet (may not exist): what incremental merges into */
    const char *run_id;       /* names this run's temp files ("*.tmp-<run_id>" are swept after a kill) */
    const char *work_dir;     /* scratch space of this run (removed afterwards) */
    const atomic_bool *cancel; /* stop soon when it becomes true (may be NULL) */
    json_t *notes;            /* may be NULL: sentences the run shows for this table ("column x kept as JSON text") */
} connector_job;

typedef struct connector_ops {
    const char *type;
    /* *details (new reference): what was verified, for the configure response. */
    int (*test_connection)(const connector_settings *settings, json_t **details, agnes_error *err);
    /* *tables (new reference): [{bucket, source_table, kind, rows_estimate}],
     * plus optionally id (the view name the connector proposes; else
     * discovery derives one), description, primary_key, size_bytes,
     * last_change and columns [{name, type, description}]. */
    int (*discover)(const connector_settings *settings, json_t **tables, agnes_error *err);
    /* Write the row's data to job->parquet_path; *rows = rows written. */
    int (*extract_table)(const connector_settings *settings, const connector_job *job, long long *rows,
                         agnes_error *err);
    /* NULL when the connector has no remote mode.  Appends the view's SELECT
     * to view_sql and sets *attach (new reference) to the _remote_attach
     * row {alias, extension, url, token_env} it needs. */
    int (*remote_view)(const connector_settings *settings, const json_t *row, strbuf *view_sql, json_t **attach,
                       agnes_error *err);
    /* NULL when not supported.  *columns (new reference): [{name, type, source_type}]. */
    int (*describe)(const connector_settings *settings, const json_t *row, json_t **columns, agnes_error *err);
    /* NULL when not supported.  What the source itself says about the table,
     * asked after each successful sync so the catalog never shows facts
     * frozen at discovery.  *facts (new reference): {description (the
     * source's comment, or null), columns: [{name, nullable, description}]}
     * with nullable false for NOT NULL and primary-key columns. */
    int (*table_facts)(const connector_settings *settings, const json_t *row, json_t **facts, agnes_error *err);
    /* NULL when there is nothing to check.  AGNES_ERR_INVALID with a
     * sentence naming the field and the fix. */
    int (*check_row)(const json_t *row, agnes_error *err);
} connector_ops;

/* The built-in connector of that source type, or NULL. */
const connector_ops *connector_find(const char *type);

extern const connector_ops postgres_connector;
extern const connector_ops keboola_connector;

#endif
