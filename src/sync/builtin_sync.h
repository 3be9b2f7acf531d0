/*
 * builtin_sync.h - one sync of a source served by a built-in connector.
 *
 * The runner half of connector.h: for each due table the connector writes
 * data/<id>.parquet.tmp-<run_id>, which is renamed over data/<id>.parquet
 * only when the connector succeeded (retried once on a network error) -
 * a failed table keeps serving its last good file.  Then extract.duckdb is
 * rebuilt from *every* registered table of the source, due or not (the
 * original rebuilt it from the due ones and dropped the others' views),
 * with remote views regenerated each run, checked against the contract
 * and renamed into place.  Temp files of a killed run are swept first; the
 * caller holds the source's lock, so they cannot belong to a live run.
 */
#ifndef AGNES_SYNC_BUILTIN_SYNC_H
#define AGNES_SYNC_BUILTIN_SYNC_H

#include <jansson.h>
#include <stdatomic.h>

#include "core/runtime.h"
#include "store/system_db.h"
#include "sync/connector.h"

/* *result (new reference): {source, state: done|partial|failed, error?,
 * duration_ms, tables: [{table_id, state, rows, size_bytes, error,
 * duration_ms}]}.  A failing source is a result; the return value is
 * AGNES_OK unless the run could not be attempted. */
int builtin_sync_source(agnes_runtime *rt, system_db *db, const connector_ops *ops, const char *source,
                        const char *run_id, const json_t *due_rows, const atomic_bool *cancel, json_t **result,
                        agnes_error *err);

/* Rewrite the source's extract from its registered tables as they are on
 * disk, asking the source nothing (remote views keep their definitions):
 * after a table was unregistered.  AGNES_ERR_BUSY when a run holds the
 * source (that run's extract leaves the table out anyway). */
int builtin_republish_source(agnes_runtime *rt, system_db *db, const connector_ops *ops, const char *source,
                             agnes_error *err);

/* At start: temp files and work directories of killed runs of every
 * source not locked by a running `agnes sync` (SPEC §15: the next start
 * recovers without a person). */
void builtin_sync_sweep(const agnes_paths *paths);

#endif
