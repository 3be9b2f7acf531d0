/*
 * custom_connector.h - sync a source whose connector is an executable
 * (SPEC §9: CONNECTORS_DIR/<name>/extract).
 *
 * One run of source S:
 *   1. OUTPUT_DIR = extracts/S/runs/<run_id>/ (inside the source, so the
 *      absolute Parquet paths its views use stay valid after publishing);
 *   2. the executable runs there (connector_process.h) with OUTPUT_DIR,
 *      DATA_DIR, SOURCE_NAME, RUN_ID, AGNES_BIN, the variables named in
 *      CONNECTORS_DIR/S/connector.json {"env": [...]} and its registry rows
 *      as a JSON array on stdin, bounded by a timeout;
 *   3. exit 0 (ok) or 2 (partial): OUTPUT_DIR/extract.duckdb must pass
 *      `agnes contract check`; only then is it renamed over
 *      extracts/S/extract.duckdb - one atomic step, so readers see the old
 *      extract or the new one, never a mix;
 *   4. run directories other than this one, the previously published
 *      one (runs/.published names it; an open catalog snapshot may still
 *      read it) and those the published extract's views still read (tables
 *      carried over from an earlier run) are removed - a run killed with
 *      the server included.
 * Anything else leaves the published extract untouched and removes the
 * run's directory; the connector's output is kept in runs/<run_id>.log.
 */
#ifndef AGNES_SYNC_CUSTOM_CONNECTOR_H
#define AGNES_SYNC_CUSTOM_CONNECTOR_H

#include <jansson.h>
#include <stdatomic.h>

#include "core/error.h"
#include "core/paths.h"

/* The executable of a custom connector, if `name` has one. */
bool custom_connector_path(const agnes_paths *paths, const char *name, char *out, size_t out_size);

/* Run source `source` for `tables` (the registry rows to sync, given to
 * the connector on stdin).  `registered` is every registry row of the
 * source: a registered table the connector's output lacks keeps its last
 * published definition (a trigger of some tables never unpublishes the
 * others; a table the connector failed keeps serving its last good data).
 * *result (new reference) is {source, state: done|partial|failed, error,
 * duration_ms, log, tables: [{table_id, state: done|failed, rows,
 * size_bytes, error}]}: partial when the connector exited 2 or did not
 * write a table it was given.  A failing connector is a result, not an
 * error: the return value is AGNES_OK unless the run could not be
 * attempted at all. */
int custom_connector_sync(const agnes_paths *paths, const char *source, const char *run_id, const json_t *tables,
                          const json_t *registered, double timeout_seconds, const atomic_bool *cancel,
                          json_t **result, agnes_error *err);

/* At start: stop what connectors of a killed server left running.  A run
 * records its process group in runs/<run_id>.pid; a group whose processes
 * still carry RUN_ID=<run_id> in their environment is killed (a recycled
 * process id is never hit), and the pid file is removed. */
void custom_connectors_reap(const agnes_paths *paths);

#endif
