#include "store/groups.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/duck.h"
#include "store/users.h"

/* The first row of a JSON result, or NOT_FOUND. */
static int single(json_t *rows, json_t **out, agnes_error *err)
{
    *out = NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "not found");
    }
    *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return AGNES_OK;
}

int groups_find(duckdb_connection conn, const char *id, group_record *group, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {id};
    memset(group, 0, sizeof *group);
    if (duck_query_params(conn, "SELECT id, name, coalesce(is_system, false) FROM user_groups WHERE id = $1", params, 1,
                          &result, err))
        return err->code;
    int rc = AGNES_OK;
    if (duckdb_row_count(&result) == 0) {
        rc = agnes_error_set(err, AGNES_ERR_NOT_FOUND, "Group not found");
    } else {
        duck_result_text(&result, 0, 0, group->id, sizeof group->id);
        duck_result_text(&result, 1, 0, group->name, sizeof group->name);
        group->is_system = duckdb_value_boolean(&result, 2, 0);
    }
    duckdb_destroy_result(&result);
    return rc;
}

int groups_json(duckdb_connection conn, const char *id, json_t **out, agnes_error *err)
{
    const char *params[] = {id};
    json_t *rows = NULL;
    int rc = duck_query_json(
        conn,
        "SELECT g.id, g.name, g.description, coalesce(g.is_system, false) AS is_system,"
        " CASE WHEN g.is_system THEN 'system' ELSE 'custom' END AS origin, g.created_at, g.created_by,"
        " (SELECT count(*) FROM user_group_members m WHERE m.group_id = g.id) AS member_count,"
        " (SELECT count(*) FROM resource_grants r WHERE r.group_id = g.id) AS grant_count,"
        " false AS is_google_managed, NULL::VARCHAR AS mapped_email"
        " FROM user_groups g WHERE $1 IS NULL OR g.id = $1 ORDER BY g.name",
        params, 1, &rows, err);
    if (rc != AGNES_OK || id == NULL) {
        *out = rows;
        return rc;
    }
    return single(rows, out, err);
}

static int name_taken(duckdb_connection conn, const char *name, const char *except_id, bool *taken, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {name, except_id};
    if (duck_query_params(conn,
                          "SELECT count(*) FROM user_groups WHERE lower(name) = lower($1) AND ($2 IS NULL OR id <> $2)",
                          params, 2, &result, err))
        return err->code;
    *taken = duckdb_value_int64(&result, 0, 0) > 0;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int groups_create(duckdb_connection conn, const char *name, const char *description, const char *created_by,
                  char id[37], agnes_error *err)
{
    bool taken = false;
    if (name_taken(conn, name, NULL, &taken, err))
        return err->code;
    if (taken)
        return agnes_error_set(err, AGNES_ERR_INVALID, "A group with this name already exists");
    util_uuid4(id);
    const char *params[] = {id, name, description, created_by};
    return duck_exec_params(conn,
                            "INSERT INTO user_groups (id, name, description, is_system, created_by)"
                            " VALUES ($1, $2, $3, false, $4)",
                            params, 4, err);
}

int groups_update(duckdb_connection conn, const char *id, const char *name, const char *description,
                  agnes_error *err)
{
    group_record group;
    bool taken = false;
    if (groups_find(conn, id, &group, err))
        return err->code;
    if (name && strcmp(name, group.name) != 0) {
        if (group.is_system)
            return agnes_error_set(err, AGNES_ERR_INVALID, "Cannot rename a system group");
        if (name_taken(conn, name, id, &taken, err))
            return err->code;
        if (taken)
            return agnes_error_set(err, AGNES_ERR_INVALID, "A group with this name already exists");
    }
    /* Only the columns given are written: an UPDATE that names the indexed
     * name column is a delete and an insert inside DuckDB (see migration 7). */
    const char *params[] = {id, name, description};
    if (name == NULL && description == NULL)
        return AGNES_OK;
    return duck_exec_params(conn,
                            name == NULL          ? "UPDATE user_groups SET description = $3 WHERE id = $1 AND $2 IS NULL"
                            : description == NULL ? "UPDATE user_groups SET name = $2 WHERE id = $1 AND $3 IS NULL"
                                                  : "UPDATE user_groups SET name = $2, description = $3 WHERE id = $1",
                            params, 3, err);
}

int groups_delete(duckdb_connection conn, const char *id, agnes_error *err)
{
    group_record group;
    if (groups_find(conn, id, &group, err))
        return err->code;
    if (group.is_system)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Cannot delete a system group");
    const char *params[] = {id};
    if (duck_exec_params(conn, "DELETE FROM resource_grants WHERE group_id = $1", params, 1, err) ||
        duck_exec_params(conn, "DELETE FROM user_group_members WHERE group_id = $1", params, 1, err) ||
        duck_exec_params(conn, "DELETE FROM user_groups WHERE id = $1", params, 1, err))
        return err->code;
    return AGNES_OK;
}

int groups_members_json(duckdb_connection conn, const char *group_id, json_t **out, agnes_error *err)
{
    const char *params[] = {group_id};
    return duck_query_json(conn,
                           "SELECT m.user_id, u.email, u.name, u.active, m.source, m.added_at, m.added_by"
                           " FROM user_group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1"
                           " ORDER BY u.email",
                           params, 1, out, err);
}

int groups_add_member(duckdb_connection conn, const char *group_id, const char *user_id, const char *added_by,
                      agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {user_id, group_id, added_by};
    if (duck_query_params(conn, "SELECT count(*) FROM user_group_members WHERE user_id = $1 AND group_id = $2",
                          params, 2, &result, err))
        return err->code;
    bool member = duckdb_value_int64(&result, 0, 0) > 0;
    duckdb_destroy_result(&result);
    if (member)
        return agnes_error_set(err, AGNES_ERR_INVALID, "User is already a member of this group");
    return duck_exec_params(conn,
                            "INSERT INTO user_group_members (user_id, group_id, source, added_by)"
                            " VALUES ($1, $2, 'admin', $3)",
                            params, 3, err);
}

int groups_remove_member(duckdb_connection conn, const char *group_id, const char *user_id, bool *removed,
                         agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {user_id, group_id};
    if (duck_query_params(conn, "DELETE FROM user_group_members WHERE user_id = $1 AND group_id = $2", params, 2,
                          &result, err))
        return err->code;
    *removed = duckdb_rows_changed(&result) > 0;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int grants_json(duckdb_connection conn, const char *grant_id, const char *resource_type, const char *group_id,
                json_t **out, agnes_error *err)
{
    const char *params[] = {grant_id, resource_type, group_id};
    json_t *rows = NULL;
    int rc = duck_query_json(conn,
                             "SELECT r.id, r.group_id, g.name AS group_name, r.resource_type, r.resource_id,"
                             " r.assigned_at, r.assigned_by FROM resource_grants r JOIN user_groups g ON g.id = r.group_id"
                             " WHERE ($1 IS NULL OR r.id = $1) AND ($2 IS NULL OR r.resource_type = $2)"
                             " AND ($3 IS NULL OR r.group_id = $3) ORDER BY g.name, r.resource_type, r.resource_id",
                             params, 3, &rows, err);
    if (rc != AGNES_OK || grant_id == NULL) {
        *out = rows;
        return rc;
    }
    return single(rows, out, err);
}

int grants_create(duckdb_connection conn, const char *group_id, const char *resource_type, const char *resource_id,
                  const char *assigned_by, char id[37], agnes_error *err)
{
    group_record group;
    if (groups_find(conn, group_id, &group, err))
        return err->code;
    duckdb_result result;
    const char *check[] = {group_id, resource_type, resource_id};
    if (duck_query_params(conn,
                          "SELECT count(*) FROM resource_grants WHERE group_id = $1 AND resource_type = $2"
                          " AND resource_id = $3",
                          check, 3, &result, err))
        return err->code;
    bool exists = duckdb_value_int64(&result, 0, 0) > 0;
    duckdb_destroy_result(&result);
    if (exists)
        return agnes_error_set(err, AGNES_ERR_INVALID, "This group already has this grant");
    util_uuid4(id);
    const char *params[] = {id, group_id, resource_type, resource_id, assigned_by};
    return duck_exec_params(conn,
                            "INSERT INTO resource_grants (id, group_id, resource_type, resource_id, assigned_by)"
                            " VALUES ($1, $2, $3, $4, $5)",
                            params, 5, err);
}

int grants_delete(duckdb_connection conn, const char *grant_id, bool *deleted, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {grant_id};
    if (duck_query_params(conn, "DELETE FROM resource_grants WHERE id = $1", params, 1, &result, err))
        return err->code;
    *deleted = duckdb_rows_changed(&result) > 0;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int grants_table_ids_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err)
{
    json_t *rows = NULL;
    const char *params[] = {user_id};
    *out = NULL;
    if (duck_query_json(conn,
                        "SELECT DISTINCT r.resource_id AS id FROM resource_grants r JOIN user_group_members m"
                        " ON m.group_id = r.group_id WHERE m.user_id = $1 AND r.resource_type = 'table'",
                        params, 1, &rows, err))
        return err->code;
    *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append(*out, json_object_get(row, "id"));
    json_decref(rows);
    return AGNES_OK;
}

int access_effective_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err)
{
    bool is_admin = false;
    json_t *items = NULL;
    const char *params[] = {user_id};
    *out = NULL;
    if (users_is_admin(conn, user_id, &is_admin, err) ||
        duck_query_json(conn,
                        "SELECT r.resource_type, r.resource_id,"
                        " to_json(list({'group_id': g.id, 'group_name': g.name} ORDER BY g.name)) AS via_groups"
                        " FROM resource_grants r JOIN user_group_members m ON m.group_id = r.group_id"
                        " JOIN user_groups g ON g.id = r.group_id WHERE m.user_id = $1"
                        " GROUP BY r.resource_type, r.resource_id ORDER BY r.resource_type, r.resource_id",
                        params, 1, &items, err))
        return err->code;
    *out = json_pack("{s:b, s:o}", "is_admin", is_admin, "items", items);
    return *out ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}

int audit_page_json(duckdb_connection conn, const char *action_prefix, long long limit, long long offset,
                    json_t **out, agnes_error *err)
{
    char limit_text[24], offset_text[24];
    snprintf(limit_text, sizeof limit_text, "%lld", limit);
    snprintf(offset_text, sizeof offset_text, "%lld", offset);
    const char *params[] = {action_prefix, limit_text, offset_text};
    json_t *items = NULL;
    long long total = 0;
    duckdb_result result;
    *out = NULL;
    if (duck_query_json(conn,
                        "SELECT a.id, a.timestamp, a.user_id, u.email AS user_email, a.action, a.resource, a.params,"
                        " a.result, a.duration_ms FROM audit_log a LEFT JOIN users u ON u.id = a.user_id"
                        " WHERE $1 IS NULL OR starts_with(a.action, $1)"
                        " ORDER BY a.timestamp DESC, a.id LIMIT CAST($2 AS BIGINT) OFFSET CAST($3 AS BIGINT)",
                        params, 3, &items, err))
        return err->code;
    if (duck_query_params(conn, "SELECT count(*) FROM audit_log WHERE $1 IS NULL OR starts_with(action, $1)", params,
                          1, &result, err)) {
        json_decref(items);
        return err->code;
    }
    total = duckdb_value_int64(&result, 0, 0);
    duckdb_destroy_result(&result);
    *out = json_pack("{s:o, s:I, s:I, s:I}", "items", items, "total", (json_int_t)total, "limit", (json_int_t)limit,
                     "offset", (json_int_t)offset);
    return *out ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}
