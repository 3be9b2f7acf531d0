/*
 * runner.h - sync one source: pick its connector, run it, record failures.
 *
 * Shared by the server's runs (http/sync.c, on a thread per run) and
 * `agnes sync` (the same work from the shell).  The caller owns run
 * bookkeeping and the catalog rebuild that follows.
 */
#ifndef AGNES_SYNC_RUNNER_H
#define AGNES_SYNC_RUNNER_H

#include <jansson.h>
#include <stdatomic.h>

#include "core/runtime.h"
#include "store/system_db.h"

/* Sync `source` for `rows` (its registry rows).  Returns the outcome (new
 * reference): {source, state: done|partial|failed, error?, duration_ms?,
 * tables: [{table_id, state: done|failed|skipped, rows, size_bytes, error}]}.
 * Every failed table is recorded in sync_state / sync_history.  `cancel`
 * (may be NULL) stops a running connector, e.g. at shutdown. */
json_t *sync_run_source(agnes_runtime *rt, system_db *db, const char *run_id, const char *source, const json_t *rows,
                        const atomic_bool *cancel);

/* After the catalog rebuild that follows a run: a table of `outcome` (one
 * source's, from sync_run_source) that the rebuild refused to publish - its
 * view name belongs to another source, or the whole extract was skipped -
 * becomes failed with the reason (also recorded in sync_state), and the
 * outcome's state is recomputed: a run whose tables were refused is
 * partial or failed, never done.  `report` is orchestrator_rebuild's.
 * Returns how many tables were refused. */
int sync_apply_rebuild_report(system_db *db, json_t *outcome, const json_t *report);

/* done when no table failed, failed when all did, else partial (tables
 * that were skipped do not count). */
const char *sync_outcome_state(const json_t *tables);

/* Hold extracts/<source>/.sync.lock (an flock) for a sync of source;
 * close the descriptor to release it.  -1 when it cannot be had (or, with
 * wait false, when another run holds it). */
int sync_source_lock(const agnes_paths *paths, const char *source, bool wait);

/* "run_<UTC stamp>_<8 hex>": an identifier, sortable by start second. */
void sync_new_run_id(char *out, size_t out_size);

#endif
