/*
 * keboola.h - the Keboola connector's parts (the connector itself is
 * keboola_connector in connector.h).
 *
 *   keboola_api.c     the Storage API client (keboola_api.h)
 *   keboola_export.c  one table export: export-async job, file detail,
 *                     manifest, slices downloaded to files
 *   keboola_meta.c    Storage metadata -> our names and DuckDB types
 *   keboola_rules.c   a registry row's Keboola fields: strategies,
 *                     where_filters and their date placeholders, the
 *                     materialized export spec
 *   keboola.c         the connector: configure check, discovery, and the
 *                     strategies writing Parquet with DuckDB
 *
 * Registry rows of source_type "keboola": bucket = the bucket id
 * ("in.c-main"), source_table = the table name ("orders"); a source_table
 * that carries the bucket ("in.c-main.orders") is accepted as well.
 */
#ifndef AGNES_SYNC_KEBOOLA_H
#define AGNES_SYNC_KEBOOLA_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"
#include "sync/connector.h"
#include "sync/keboola_api.h"

/* ---- keboola_meta.c ------------------------------------------------------ */

/* The view name of Keboola table id "<stage>.<bucket>.<table>": stage,
 * bucket name without Keboola's legacy "c-" prefix, and table name,
 * lower-cased, joined by "_", any other character as "_" (runs of "_"
 * collapsed), at most 64 characters: in.c-crm.Orders -> in_crm_orders.
 * Different ids can meet in one name (in.c-crm.x and in.crm.x); discovery
 * reports such collisions instead of choosing. */
void keboola_view_name(const char *table_id, char *out, size_t out_size);

/* The DuckDB type of column `name` of a table detail (GET tables/{id}
 * with columns and columnMetadata): a typed table's definition, else the
 * KBC.datatype.basetype (or .type) metadata by provider priority user >
 * ai-metadata-enrichment > keboola.snowflake-transformation > storage >
 * others, else VARCHAR.  STRING->VARCHAR, INTEGER->BIGINT,
 * NUMERIC->DECIMAL(p,s) when KBC.datatype.length gives p <= 38 (else
 * DOUBLE), FLOAT->DOUBLE, BOOLEAN, DATE, TIMESTAMP (TIMESTAMPTZ when the
 * native type is TIMESTAMP_TZ/_LTZ). */
void keboola_column_type(const json_t *detail, const char *name, char *out, size_t out_size);

/* The column's KBC.description, or NULL (borrowed from detail). */
const char *keboola_column_description(const json_t *detail, const char *name);

/* The table's KBC.description, or NULL (borrowed from detail). */
const char *keboola_table_description(const json_t *detail);

/* Unix seconds of a Storage timestamp ("2017-02-13T10:27:50+0100", also
 * "+01:00", "Z" or none = UTC); -1 when it is not one. */
int64_t keboola_parse_time(const char *text);

/* ---- keboola_rules.c ----------------------------------------------------- */

/* Replace the date placeholders in text with UTC dates (YYYY-MM-DD) as of
 * `now`: {{today}}, {{yesterday}}, {{last_week}} (7 days ago),
 * {{last_month}}, {{last_2_months}}, {{last_3_months}}, {{last_6_months}}
 * (calendar months back, the day clamped to the month's end),
 * {{last_year}}, {{last_2_years}}, {{start_of_month}},
 * {{start_of_3_months_ago}} (the first day of the month three months
 * back).  An unknown {{...}} is AGNES_ERR_INVALID naming it. */
int keboola_resolve_placeholders(const char *text, time_t now, char *out, size_t out_size, agnes_error *err);

/* Check a whereFilters list ([{column, operator, values, dataType?,
 * type?}]); with now >= 0 also return it with placeholders resolved
 * (*resolved new reference).  AGNES_ERR_INVALID with a sentence naming
 * `field` and the item. */
int keboola_where_filters(const json_t *filters, const char *field, time_t now, json_t **resolved, agnes_error *err);

/* The export parameters of a materialized row's source_query, a JSON
 * spec {columns?, whereFilters?, changedSince?, changedUntil?, limit?,
 * orderBy?, file_type?: csv|parquet}.  SQL and unknown keys are
 * AGNES_ERR_INVALID with a sentence.  *params (new reference): the body
 * for export-async, placeholders resolved as of now. */
int keboola_materialized_spec(const char *source_query, time_t now, json_t **params, agnes_error *err);

/* The registry row's Keboola rules (connector_ops.check_row). */
int keboola_check_row(const json_t *row, agnes_error *err);

/* "<bucket>.<table>" of a registry row; AGNES_ERR_INVALID when it names
 * none. */
int keboola_row_table_id(const json_t *row, char *out, size_t out_size, agnes_error *err);

/* ---- keboola_export.c ---------------------------------------------------- */

typedef struct keboola_export {
    char file_type[16];  /* "csv" or "parquet" */
    bool sliced;
    size_t count;        /* files in paths */
    char **paths;        /* local files, in slice order (.csv, .csv.gz or .parquet) */
    int64_t started_at;  /* the job's createdTime (Storage's clock), unix seconds */
    long long file_id;
} keboola_export;

typedef struct keboola_export_options {
    const char *dir;            /* where the files go (created) */
    int parallel_downloads;
    int stall_seconds;
    int timeout_seconds;        /* for the job to finish */
} keboola_export_options;

/* Export table_id with params (the export-async body; gzip is added for
 * csv), wait for the job, and download what it produced into options->dir.
 * A job that ends in error fails with Keboola's message
 * (AGNES_ERR_INVALID). */
int keboola_export_table(keboola_client *kc, const char *table_id, const json_t *params,
                         const keboola_export_options *options, keboola_export *out, agnes_error *err);

/* Delete the downloaded files and free the list. */
void keboola_export_free(keboola_export *export);

#endif
