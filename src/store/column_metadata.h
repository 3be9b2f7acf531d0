/*
 * column_metadata.h - column_metadata (migration 7): what is known about a
 * table's columns beyond their types - whether the source allows NULLs and
 * what it says a column means - kept current by every successful sync.
 *
 * A catalog view's own columns are always nullable and carry no comment (a
 * view over Parquet cannot know more), so the catalog reads these rows to
 * answer `nullable` and `description`.  Rows an admin wrote (source
 * 'manual') are never replaced by a sync; a sync replaces its source's rows
 * of that table as a whole, so a dropped column leaves no stale fact.
 */
#ifndef AGNES_STORE_COLUMN_METADATA_H
#define AGNES_STORE_COLUMN_METADATA_H

#include <duckdb.h>
#include <jansson.h>

#include "core/error.h"

/* Replace source's rows of table_id by columns: [{name, nullable (bool or
 * null), description (string or null), type?}] (confidence 'source'). */
int column_metadata_replace(duckdb_connection conn, const char *table_id, const char *source, const json_t *columns,
                            agnes_error *err);

/* Merge the facts of table_id into catalog columns ([{name, type,
 * nullable, description}], changed in place): a known nullable replaces
 * the view's, a known description fills an empty one; a manual row wins
 * over a synced one. */
int column_metadata_merge(duckdb_connection conn, const char *table_id, json_t *columns, agnes_error *err);

#endif
