/*
 * discovery.h - register what a configured source can list
 * (POST /api/admin/discover-and-register, and the first sync of a
 * configured source with nothing registered).
 *
 * A discovered table <schema>.<table> becomes the id <table> in schema
 * public, <schema>_<table> elsewhere, lower-cased, with anything but
 * [a-z0-9_] as "_" (and "t_" in front of a leading digit): always a valid
 * view name.  A name the engine or the contract uses (contract.h) is
 * renamed: public.duckdb_tables becomes public_duckdb_tables, and the
 * description of the registered row says so.  The exact schema and table names are kept in bucket and
 * source_table, so the connector reads the right object whatever its case.
 * Two tables that would get one id are both reported, never registered
 * one over the other; an id registered to anything else is left alone.
 */
#ifndef AGNES_SYNC_DISCOVERY_H
#define AGNES_SYNC_DISCOVERY_H

#include <jansson.h>

#include "core/runtime.h"
#include "store/system_db.h"

typedef struct discovery_options {
    const char *query_mode;    /* "local" (default) or "remote" */
    const char *sync_schedule; /* NULL: none */
    const json_t *schemas;     /* array of schema (bucket) names to keep; NULL: all */
    const json_t *tables;      /* array of ids or "<schema>.<table>" to keep; NULL: all */
    const char *registered_by;
} discovery_options;

/* The configured source's tables, registered.  *summary (new reference):
 * {source, registered, skipped, errors, tables: [ids registered],
 *  skipped_tables: [{table, id, reason}], error_details: [{table, id?, error}],
 *  renamed_tables?: [{table, id, reason}] (names the engine uses, see above)}.
 * AGNES_ERR_INVALID when the configured source cannot list tables,
 * AGNES_ERR_CONFIG when it is not configured, AGNES_ERR_NETWORK when
 * listing failed. */
int discovery_register(agnes_runtime *rt, system_db *db, const discovery_options *options, json_t **summary,
                       agnes_error *err);

/* The configured source's tables without registering anything, for an
 * admin (or the wizard) to choose from.  *listing (new reference):
 * {source, count, tables: [the connector's entries with id and
 * registration: new | registered | id_taken | collision]}.  Errors as
 * discovery_register. */
int discovery_list(agnes_runtime *rt, system_db *db, json_t **listing, agnes_error *err);

/* Whether a sync of every table should first discover the configured
 * source's tables: it can list tables and none of registry_rows is its
 * (the seed's "KEBOOLA_STORAGE_TOKEN -> auto-discovers tables on first
 * sync"; tables of other sources do not count).  type receives the
 * source. */
bool discovery_wanted(agnes_runtime *rt, const json_t *registry_rows, char *type, size_t type_size);

/* The id a discovered schema.table gets (see above; a connector may propose
 * its own, e.g. Keboola's stage_bucket_table). */
void discovery_table_id(const char *schema, const char *table, char *id, size_t id_size);

#endif
