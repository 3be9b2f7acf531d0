/*
 * sync_state.h - what the orchestrator records in system.duckdb: who owns
 * each view name (view_ownership), the last state of every table
 * (sync_state) and its history (sync_history).  Columns follow the original.
 *
 * View names are first-come-first-served across sources and the claim is
 * persisted, so a new source can never take over a name analysts already use.
 */
#ifndef AGNES_STORE_SYNC_STATE_H
#define AGNES_STORE_SYNC_STATE_H

#include <duckdb.h>
#include <jansson.h>
#include <stdint.h>

#include "core/error.h"

/* The owner of view_name into owner (size >= 65), "" when unclaimed.
 * Names compare case-insensitively, as DuckDB's catalog does: "Orders"
 * from a second source would otherwise replace "orders" silently. */
int view_ownership_owner(duckdb_connection conn, const char *view_name, char *owner, size_t owner_size,
                         agnes_error *err);

/* Claim view_name for source if nobody owns it. */
int view_ownership_claim(duckdb_connection conn, const char *view_name, const char *source, agnes_error *err);

/* Release names whose owner no longer publishes them.  `published` is a JSON
 * array of {"view": ..., "source": ...} (the complete current set). */
int view_ownership_reconcile(duckdb_connection conn, const char *published_json, agnes_error *err);

/* Record a table's state after a rebuild, and append to its history -
 * unless the table's hash is the one already recorded (nothing changed). */
int sync_state_record(duckdb_connection conn, const char *table_id, long long rows, long long size_bytes,
                      const char *hash, const char *status, const char *error, agnes_error *err);

/* Record a failed sync of a table: status 'error' with the sentence; the
 * last good rows, bytes and time stay (the table keeps serving them). */
int sync_state_record_failure(duckdb_connection conn, const char *table_id, const char *error, agnes_error *err);

/* Record a successful sync of a table: status 'ok', the error cleared,
 * last_sync now, rows and size_bytes as the sync reported them (a negative
 * value keeps the recorded one), and an 'ok' row in sync_history.  Done by
 * the runner for every table that synced, because the rebuild's record
 * (sync_state_record) changes nothing while the file's hash is the same:
 * an error of an earlier run stayed for ever when the data had not changed. */
int sync_state_record_success(duckdb_connection conn, const char *table_id, long long rows, long long size_bytes,
                              agnes_error *err);

/* What the scheduler decides on, per table with any recorded state: a JSON
 * array of {table_id, last_success, last_attempt, failures} (new
 * reference): Unix seconds (UTC) of the last successful sync and of the
 * last finished attempt (null: never), and the number of failed attempts
 * since that success. */
int sync_state_schedule_facts_json(duckdb_connection conn, json_t **rows, agnes_error *err);

/* A run's start, per table: a 'running' row in sync_history, removed by
 * sync_state_run_finished.  Rows still there at the next start are runs a
 * dead server never finished: sync_state_fail_interrupted records them as
 * failed (and returns how many). */
int sync_state_run_started(duckdb_connection conn, const char *table_id, const char *run_id, agnes_error *err);
int sync_state_run_finished(duckdb_connection conn, const char *run_id, agnes_error *err);
int sync_state_fail_interrupted(duckdb_connection conn, long long *count, agnes_error *err);

/* Every table's last recorded state, ordered by id: a JSON array of
 * {table_id, last_sync, rows, size_bytes, state, error} (new reference). */
int sync_state_list_json(duckdb_connection conn, json_t **rows, agnes_error *err);

#endif
