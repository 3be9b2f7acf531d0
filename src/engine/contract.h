/*
 * contract.h - the extract.duckdb contract and its checker (SPEC §7).
 *
 * Every source, built-in or custom, publishes
 *   ${DATA_DIR}/extracts/<source>/extract.duckdb   _meta, optional _remote_attach, one view per table
 * and the frozen definition lives in contracts/ (SQL + JSON).  contract_check()
 * opens an extract read-only and lists every violation with the fix; the
 * orchestrator applies the same rules, and custom connector authors run it
 * standalone as `agnes contract check PATH`.
 *
 * An extract is untrusted input: a connector, a person or a disk wrote it.
 * A file whose bytes are damaged behind valid block checksums makes DuckDB
 * 1.4 crash (SIGSEGV) while opening it, so contract_check() never opens one
 * in the calling process: it runs `agnes contract check --in-process --json`
 * as a child (2 GiB of address space, CONTRACT_CHECK_TIMEOUT_SECONDS) and
 * reads its report.  A child that dies or runs out of time becomes the
 * violation CONTRACT_RULE_ENGINE_CRASH / CONTRACT_RULE_ENGINE_TIMEOUT, which
 * the orchestrator answers by quarantining the file.
 */
#ifndef AGNES_ENGINE_CONTRACT_H
#define AGNES_ENGINE_CONTRACT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

#define CONTRACT_ALLOWLIST_MAX 1024

#define CONTRACT_CHECK_TIMEOUT_SECONDS 120
#define CONTRACT_RULE_ENGINE_CRASH "engine_crash"
#define CONTRACT_RULE_ENGINE_TIMEOUT "engine_timeout"

typedef struct contract_violation {
    char rule[48];     /* stable id, e.g. "meta_columns" (tests and --json rely on it) */
    char message[700]; /* what is wrong, naming the table/row/column */
    char fix[700];     /* what to do about it */
} contract_violation;

typedef struct contract_report {
    contract_violation *items;
    size_t count;
    size_t capacity;
    int tables;       /* _meta rows seen */
    int local_tables; /* of which query_mode = local */
    json_t *names;    /* the distinct table_name values of _meta (array of strings, owned), or NULL */
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

/* Check the extract at path in a child process (see above); violations go
 * into report (caller frees it with contract_report_free).  Fails only when
 * the check cannot be run at all (no child process, out of memory): a file
 * that cannot be opened, or that crashes the engine, is a violation. */
int contract_check(const char *path, const contract_allowlists *allow, contract_report *report, agnes_error *err);

/* The check itself, in this process: what the child runs.  Also reads every
 * column of _meta and _remote_attach and the extract's own catalog, so
 * damage the orchestrator would meet later meets the child first.  Only for
 * `agnes contract check --in-process`; everything else calls contract_check. */
int contract_check_in_process(const char *path, const contract_allowlists *allow, contract_report *report,
                              agnes_error *err);

/* Append a violation (rule, message and fix are copied, cut to their fields). */
int contract_report_add(contract_report *report, const char *rule, const char *message, const char *fix,
                        agnes_error *err);

/* The report as the JSON `agnes contract check --json` prints (new reference). */
json_t *contract_report_json(const char *path, const contract_report *report);

/* The report back from that JSON (into an empty report); AGNES_ERR_INVALID
 * when doc is not one. */
int contract_report_from_json(const json_t *doc, contract_report *report, agnes_error *err);

void contract_report_free(contract_report *report);

#endif
