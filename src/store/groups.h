/*
 * groups.h - groups, memberships and resource grants (SPEC §6).
 *
 * A user is admin iff a member of the system group Admin.  Others see a
 * table iff one of their groups holds a resource_grants row (group, 'table',
 * table id); every user is in Everyone, so a grant there opens a table to
 * all.  DuckDB has no ON DELETE CASCADE, and checks foreign keys against
 * the state before the transaction, so groups_delete() cannot run inside one
 * transaction: it deletes grants, then members, then the group, each on its
 * own.  A crash in between can only have removed access (fail closed); a
 * retried delete finishes the job.
 *
 * Lookups that may find nothing return AGNES_ERR_NOT_FOUND; uniqueness
 * conflicts return AGNES_ERR_INVALID with the sentence for a 409.
 */
#ifndef AGNES_STORE_GROUPS_H
#define AGNES_STORE_GROUPS_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"

#define GROUP_NAME_MAX 100
#define GROUP_DESCRIPTION_MAX 1000

typedef struct group_record {
    char id[64];
    char name[GROUP_NAME_MAX * 4 + 1];
    bool is_system;
} group_record;

int groups_find(duckdb_connection conn, const char *id, group_record *group, agnes_error *err);

/* GroupResponse objects: one (id) or all (id NULL), ordered by name. */
int groups_json(duckdb_connection conn, const char *id, json_t **out, agnes_error *err);

int groups_create(duckdb_connection conn, const char *name, const char *description, const char *created_by,
                  char id[37], agnes_error *err);
int groups_update(duckdb_connection conn, const char *id, const char *name, const char *description,
                  agnes_error *err);
int groups_delete(duckdb_connection conn, const char *id, agnes_error *err);

int groups_members_json(duckdb_connection conn, const char *group_id, json_t **out, agnes_error *err);
int groups_add_member(duckdb_connection conn, const char *group_id, const char *user_id, const char *added_by,
                      agnes_error *err);
/* *removed false when the user was not a member. */
int groups_remove_member(duckdb_connection conn, const char *group_id, const char *user_id, bool *removed,
                         agnes_error *err);

/* GrantResponse objects, filtered by resource_type and/or group_id (NULL = any). */
int grants_json(duckdb_connection conn, const char *grant_id, const char *resource_type, const char *group_id,
                json_t **out, agnes_error *err);
int grants_create(duckdb_connection conn, const char *group_id, const char *resource_type, const char *resource_id,
                  const char *assigned_by, char id[37], agnes_error *err);
int grants_delete(duckdb_connection conn, const char *grant_id, bool *deleted, agnes_error *err);

/* The table ids the user may see through group grants: a JSON array of strings. */
int grants_table_ids_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err);

/* {is_admin, items:[{resource_type, resource_id, via_groups:[{group_id, group_name}]}]} */
int access_effective_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err);

/* {items:[...], total, limit, offset}, newest first, optional action prefix. */
int audit_page_json(duckdb_connection conn, const char *action_prefix, long long limit, long long offset,
                    json_t **out, agnes_error *err);

#endif
