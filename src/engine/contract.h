/*
 * contract.h - the extract.duckdb contract and its checker (SPEC §7).
 *
 * Every source, built-in or custom, publishes
 *   ${DATA_DIR}/extracts/<source>/extract.duckdb   _meta, optional _remote_attach, one view per table
 * and the frozen definition lives in contracts/ (SQL + JSON).  contract_check()
 * opens an extract read-only and lists every violation with the fix; the
 * orchestrator applies the same rules, and custom connector authors run it
 * standalone as `agnes contract check PATH`.
 */
#ifndef AGNES_ENGINE_CONTRACT_H
#define AGNES_ENGINE_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define CONTRACT_ALLOWLIST_MAX 1024

typedef struct contract_violation {
    const char *rule;  /* stable id, e.g. "meta_columns" (tests and --json rely on it) */
    char message[700]; /* what is wrong, naming the table/row/column */
    char fix[700];     /* what to do about it */
} contract_violation;

typedef struct contract_report {
    contract_violation *items;
    size_t count;
    size_t capacity;
    int tables;       /* _meta rows seen */
    int local_tables; /* of which query_mode = local */
} contract_report;

/* Comma-separated lists: which DuckDB extensions an extract may ask for, and
 * which environment variables may carry their tokens. */
typedef struct contract_allowlists {
    char extensions[CONTRACT_ALLOWLIST_MAX];
    char token_envs[CONTRACT_ALLOWLIST_MAX];
} contract_allowlists;

/* Defaults, replaced wholesale by AGNES_REMOTE_ATTACH_EXTENSIONS /
 * AGNES_REMOTE_ATTACH_TOKEN_ENVS when set (as the original did). */
void contract_allowlists_from_env(contract_allowlists *allow);
bool contract_allowlist_contains(const char *list, const char *name);

/* The _meta table exactly as contracts/extract_meta.sql declares it: what
 * the built-in writers (demo, local files) create. */
#define CONTRACT_META_DDL                                                                                         \
    "CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, size_bytes BIGINT,"     \
    " extracted_at TIMESTAMP, query_mode VARCHAR DEFAULT 'local')"

/* ^[A-Za-z_][A-Za-z0-9_]{0,63}$: source names and table ids. */
bool contract_is_identifier(const char *name);

/* True when name (any case) is taken by the engine or the contract: the
 * contract's own tables (_meta, _remote_attach) and every name DuckDB
 * resolves without qualification to one of its own objects - its internal
 * schemas and databases (information_schema, pg_catalog, main, temp,
 * system) and the views of its main and pg_catalog schemas (duckdb_views,
 * duckdb_tables, pg_class, sqlite_master, ...).  A view of that name would
 * shadow DuckDB's in the catalog and break what is defined over it (a
 * user view "duckdb_views" breaks information_schema.tables).  The list is
 * asked of the linked DuckDB once per process, so it follows upgrades. */
bool contract_is_reserved_name(const char *name);

/* The one rule for a table's name, for every writer (uploads, the
 * registry, discovery, connectors) and the checker: an identifier that is
 * not reserved.  On false, why gets a sentence naming the problem. */
bool contract_table_name_ok(const char *name, char *why, size_t why_size);

/* Check the extract at path; violations go into report (caller frees it with
 * contract_report_free).  Fails only when the report itself cannot be built
 * (out of memory): a file that cannot be opened is a violation. */
int contract_check(const char *path, const contract_allowlists *allow, contract_report *report, agnes_error *err);

void contract_report_free(contract_report *report);

#endif
