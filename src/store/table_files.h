/*
 * table_files.h - table_files: the Parquet file behind each published table
 * and the SHA-256 of its content (migration 6).
 *
 * The hash is of the bytes, so a file rewritten with the same content (a
 * sync that changed nothing) keeps its hash and analysts' `agnes pull`
 * moves nothing; it is computed once per version of the file, recognised
 * by (size, mtime_ns, inode), so rebuilds do not re-read unchanged files.
 */
#ifndef AGNES_STORE_TABLE_FILES_H
#define AGNES_STORE_TABLE_FILES_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/paths.h"

typedef struct table_file {
    char table_id[128];
    char source[128];
    char path[AGNES_PATH_MAX];
    int64_t size_bytes;
    int64_t mtime_ns;
    int64_t inode;
    char sha256[65];
} table_file;

/* The row of table_id.  AGNES_ERR_NOT_FOUND when the table has no file. */
int table_files_get(duckdb_connection conn, const char *table_id, table_file *out, agnes_error *err);

/* Every row as {table_id: {sha256, size_bytes}} (new reference): one query
 * for a whole manifest. */
int table_files_map_json(duckdb_connection conn, json_t **out, agnes_error *err);

int table_files_upsert(duckdb_connection conn, const table_file *file, agnes_error *err);

/* Forget tables not in published_json (a JSON array of table ids). */
int table_files_retain(duckdb_connection conn, const char *published_json, agnes_error *err);

/* Fill size/mtime/inode of f->path; false when it is not a regular file. */
bool table_file_stat(table_file *f);

/* True when f's recorded signature is the file's current one. */
bool table_file_is_current(const table_file *f);

/* SHA-256 of the file's bytes into f->sha256 (hex). */
int table_file_hash(table_file *f, agnes_error *err);

#endif
