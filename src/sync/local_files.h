/*
 * local_files.h - the `local` source: tables uploaded as files.
 *
 * An upload becomes extracts/local/data/<table>.parquet, and
 * extracts/local/extract.duckdb is rewritten to describe every Parquet file
 * there (one _meta row and one view each), so the local source obeys the
 * same contract as any connector and the orchestrator needs nothing
 * special for it.
 *
 * Replacing is atomic and checked first: the file is converted into
 * <table>.parquet.tmp in a private DuckDB, every rejected row is looked at,
 * and only a clean, non-empty result is renamed over the previous version.
 * A bad file therefore never touches what analysts are querying.
 */
#ifndef AGNES_SYNC_LOCAL_FILES_H
#define AGNES_SYNC_LOCAL_FILES_H

#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/paths.h"

#define LOCAL_SOURCE_NAME "local"

typedef struct local_import {
    const char *table;       /* the table id; must satisfy contract_is_identifier */
    const char *format;      /* csv, tsv, parquet, json, ndjson; NULL or "" to infer */
    const char *filename;    /* the client's file name, for inferring the format (may be NULL) */
    const char *description; /* NULL keeps the previous description */
    const char *file;        /* the received bytes */
} local_import;

typedef struct local_import_result {
    char format[16];  /* the format used */
    long long rows;
    long long size_bytes; /* of the Parquet file */
    bool replaced;        /* the table existed before */
    json_t *columns;      /* [{name, type}] (new reference; caller decrefs) */
} local_import_result;

/* Convert and publish one upload.  AGNES_ERR_INVALID (answer 400) with a
 * sentence naming the line, column or problem and the fix; other codes are
 * the server's failures. */
int local_files_import(const agnes_paths *paths, const local_import *in, local_import_result *out, agnes_error *err);

/* Remove what a killed upload left behind: spooled bodies in
 * DATA_DIR/uploads and half-written .tmp files of the local source.  Run at
 * start, before any upload can be in flight; failures are logged only. */
void local_files_sweep(const agnes_paths *paths);

#endif
