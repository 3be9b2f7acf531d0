/*
 * local_files.h - the `local` source: tables uploaded as files.
 *
 * An upload becomes extracts/local/data/<table>.<version>.parquet, and
 * extracts/local/extract.duckdb is rewritten to describe the source's
 * tables (one _meta row and one view each), so the local source obeys the
 * same contract as any connector and the orchestrator needs nothing
 * special for it.
 *
 * Invariant: a table exists, with the content it has, exactly when the
 * current extract.duckdb says so.  Its rename is the one commit point of
 * an upload: the file is converted and checked into a new version file no
 * view reads, the extract listing the previous tables plus this version
 * is written beside the old one and renamed over it.  An upload that
 * fails, or whose process dies, before that rename changes nothing an
 * analyst can see, and its file is removed (at once, or by the next
 * upload's local_files_collect); nothing is ever published from a
 * directory listing.
 * Files of versions the extract no longer names are removed only after
 * the catalog has moved to the new extract (local_files_collect).
 */
#ifndef AGNES_SYNC_LOCAL_FILES_H
#define AGNES_SYNC_LOCAL_FILES_H

#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/paths.h"
#include "sync/local_reader.h"

#define LOCAL_SOURCE_NAME "local"

typedef struct local_import {
    const char *table;       /* the table id; must satisfy contract_table_name_ok, lower case */
    const char *format;      /* csv, tsv, parquet, json, ndjson; NULL or "" to infer */
    const char *filename;    /* the client's file name, for inferring the format (may be NULL) */
    const char *description; /* NULL keeps the previous description */
    const char *file;        /* the received bytes */
    local_read_options options; /* dialect and type controls (local_read_options_init: detect all) */
} local_import;

typedef struct local_import_result {
    char format[16];  /* the format used */
    long long rows;
    long long size_bytes; /* of the Parquet file */
    bool replaced;        /* the table existed before */
    json_t *columns;      /* [{name, type, chosen, note?}] (new reference; caller decrefs) */
    json_t *dialect;      /* csv/tsv: how the file was read (new reference or NULL) */
    json_t *inference;    /* {sample_size, all_text} (new reference) */
    json_t *published;    /* the tables the committed extract names, for local_files_collect */
    json_t *renamed;      /* [{from, to}]: older tables whose reserved name was replaced, or NULL */
} local_import_result;

/* Convert and publish one upload.  AGNES_ERR_INVALID (answer 400) with a
 * sentence naming the line, column or problem and the fix; other codes are
 * the server's failures.  On any failure nothing was published.  The
 * caller serialises calls (one writer of extracts/local at a time). */
int local_files_import(const agnes_paths *paths, const local_import *in, local_import_result *out, agnes_error *err);

/* Free what an import result holds. */
void local_import_result_free(local_import_result *result);

/* Remove the data files the current extract does not name: replaced
 * versions, and what a failed or killed upload left.  `published` is that
 * list (an import result's), or NULL to read it from the extract; nothing
 * is removed when the extract cannot be read (it is the only list of what
 * is published).  Call after the catalog has been rebuilt from the current
 * extract, under the same serialisation as local_files_import. */
void local_files_collect(const agnes_paths *paths, const json_t *published);

/* Remove what a killed upload left behind: spooled bodies in
 * DATA_DIR/uploads and half-written .tmp files of the local source (its
 * unpublished versions go with the next upload's collect).  Run at start,
 * before any upload can be in flight; failures are logged only. */
void local_files_sweep(const agnes_paths *paths);

#endif
