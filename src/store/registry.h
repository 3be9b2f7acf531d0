/*
 * registry.h - table_registry: the tables an admin asked Agnes to sync.
 *
 * Rows travel as JSON objects with the original's field names, because
 * the HTTP API returns exactly those and the validation (http/registry.c)
 * works on them; this module only moves them in and out of system.duckdb,
 * always through bound parameters.
 */
#ifndef AGNES_STORE_REGISTRY_H
#define AGNES_STORE_REGISTRY_H

#include <duckdb.h>
#include <jansson.h>

#include "core/error.h"

/* Insert `row` (keys as in REGISTRY_FIELDS; absent = NULL).
 * AGNES_ERR_INVALID when the id exists. */
int registry_insert(duckdb_connection conn, const json_t *row, agnes_error *err);

/* Replace every editable field of the row `id` with `row`'s (id,
 * registered_by and registered_at are kept).  AGNES_ERR_NOT_FOUND. */
int registry_update(duckdb_connection conn, const char *id, const json_t *row, agnes_error *err);

/* One row (new reference) or AGNES_ERR_NOT_FOUND. */
int registry_get_json(duckdb_connection conn, const char *id, json_t **row, agnes_error *err);

/* Every row ordered by name, each with last_sync_error (from sync_state)
 * and last_sync_attempt (the newest sync_history entry, failures too). */
int registry_list_json(duckdb_connection conn, json_t **rows, agnes_error *err);

/* Remove the row and the table's sync_state and sync_history.
 * AGNES_ERR_NOT_FOUND when there is no such row. */
int registry_delete(duckdb_connection conn, const char *id, agnes_error *err);

#endif
