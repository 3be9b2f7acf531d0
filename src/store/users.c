#include "store/users.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/duck.h"

static const char user_columns[] =
    "SELECT id, email, coalesce(name, ''), password_hash, active, coalesce(session_generation, 0) FROM users ";

int users_admin_exists(duckdb_connection conn, bool *exists, agnes_error *err)
{
    long long count = 0;
    bool found = false;
    int rc = duck_query_int(conn,
                            "SELECT count(*) FROM users u JOIN user_group_members m ON m.user_id = u.id"
                            " JOIN user_groups g ON g.id = m.group_id"
                            " WHERE g.name = 'Admin' AND coalesce(u.password_hash, '') <> ''",
                            &count, &found, err);
    *exists = rc == AGNES_OK && count > 0;
    return rc;
}

static int find_one(duckdb_connection conn, const char *where, const char *value, user_record *user, agnes_error *err)
{
    char sql[256];
    snprintf(sql, sizeof sql, "%s%s", user_columns, where);
    duckdb_result result;
    const char *params[] = {value};
    if (duck_query_params(conn, sql, params, 1, &result, err))
        return err->code;
    int rc = AGNES_OK;
    memset(user, 0, sizeof *user);
    if (duckdb_row_count(&result) == 0) {
        rc = agnes_error_set(err, AGNES_ERR_NOT_FOUND, "no such user");
    } else {
        duck_result_text(&result, 0, 0, user->id, sizeof user->id);
        duck_result_text(&result, 1, 0, user->email, sizeof user->email);
        duck_result_text(&result, 2, 0, user->name, sizeof user->name);
        user->has_password = duck_result_text(&result, 3, 0, user->password_hash, sizeof user->password_hash) &&
                             user->password_hash[0] != '\0';
        user->active = duckdb_value_boolean(&result, 4, 0);
        user->session_generation = duckdb_value_int64(&result, 5, 0);
    }
    duckdb_destroy_result(&result);
    return rc;
}

int users_find_by_email(duckdb_connection conn, const char *email, user_record *user, agnes_error *err)
{
    /* Emails compare case-insensitively: Ana@Example.com is the same person. */
    return find_one(conn, "WHERE lower(email) = lower($1)", email, user, err);
}

int users_find_by_id(duckdb_connection conn, const char *id, user_record *user, agnes_error *err)
{
    return find_one(conn, "WHERE id = $1", id, user, err);
}

int users_is_admin(duckdb_connection conn, const char *user_id, bool *is_admin, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {user_id};
    *is_admin = false;
    if (duck_query_params(conn,
                          "SELECT count(*) FROM user_group_members m JOIN user_groups g ON g.id = m.group_id"
                          " WHERE m.user_id = $1 AND g.name = 'Admin'",
                          params, 1, &result, err))
        return err->code;
    *is_admin = duckdb_value_int64(&result, 0, 0) > 0;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

static int add_to_group(duckdb_connection conn, const char *user_id, const char *group, const char *added_by,
                        agnes_error *err)
{
    const char *params[] = {user_id, group, added_by};
    return duck_exec_params(conn,
                            "INSERT INTO user_group_members (user_id, group_id, source, added_by)"
                            " SELECT $1, id, 'system_seed', $3 FROM user_groups WHERE name = $2"
                            " ON CONFLICT DO NOTHING",
                            params, 3, err);
}

int users_ensure_admin(duckdb_connection conn, const char *email, const char *name, const char *password_hash,
                       bool set_password_always, const char *added_by, user_record *user, agnes_error *err)
{
    int rc = users_find_by_email(conn, email, user, err);
    if (rc == AGNES_ERR_NOT_FOUND) {
        char id[37];
        util_uuid4(id);
        const char *params[] = {id, email, name && name[0] ? name : "Admin", password_hash};
        if (duck_exec_params(conn, "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)",
                             params, 4, err))
            return err->code;
    } else if (rc != AGNES_OK) {
        return rc;
    } else if (password_hash != NULL && (set_password_always || !user->has_password)) {
        if (users_set_password(conn, user->id, password_hash, err))
            return err->code;
    }
    if (users_find_by_email(conn, email, user, err) || add_to_group(conn, user->id, "Admin", added_by, err) ||
        add_to_group(conn, user->id, "Everyone", added_by, err))
        return err->code;
    return AGNES_OK;
}

int users_group_names_json(duckdb_connection conn, const char *user_id, char **json_out, agnes_error *err)
{
    duckdb_result result;
    const char *params[] = {user_id};
    *json_out = NULL;
    if (duck_query_params(conn,
                          "SELECT coalesce(to_json(list(g.name ORDER BY g.name))::VARCHAR, '[]')"
                          " FROM user_group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = $1",
                          params, 1, &result, err))
        return err->code;
    char *value = duckdb_value_varchar(&result, 0, 0);
    *json_out = util_strdup(value ? value : "[]");
    duckdb_free(value);
    duckdb_destroy_result(&result);
    return *json_out ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
}

void audit_log_write(duckdb_connection conn, const char *user_id, const char *action, const char *resource,
                     const char *params_json, const char *result)
{
    char id[37];
    util_uuid4(id);
    const char *params[] = {id, user_id, action, resource, params_json, result};
    agnes_error err;
    if (duck_exec_params(conn,
                         "INSERT INTO audit_log (id, user_id, action, resource, params, result)"
                         " VALUES ($1, $2, $3, $4, $5::JSON, $6)",
                         params, 6, &err))
        log_error("msg=\"cannot write the audit log\" action=%s detail=\"%s\"", action, err.message);
}

/* The UserResponse shape of the original API, built in SQL. */
static const char user_json_select[] =
    "SELECT u.id, u.email, u.name,"
    " CASE WHEN a.user_id IS NULL THEN 'user' ELSE 'admin' END AS role,"
    " a.user_id IS NOT NULL AS is_admin, false AS is_sso_user,"
    " coalesce((SELECT to_json(list({'id': g.id, 'name': g.name, 'is_system': g.is_system,"
    "   'origin': CASE WHEN g.is_system THEN 'system' ELSE 'custom' END} ORDER BY g.name))"
    "   FROM user_group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = u.id),"
    "   '[]'::JSON) AS groups,"
    " u.active, u.created_at, u.deactivated_at"
    " FROM users u LEFT JOIN (SELECT m.user_id FROM user_group_members m JOIN user_groups g ON g.id = m.group_id"
    "  WHERE g.name = 'Admin') a ON a.user_id = u.id ";

int users_get_json(duckdb_connection conn, const char *id, json_t **out, agnes_error *err)
{
    char sql[sizeof user_json_select + 64];
    snprintf(sql, sizeof sql, "%sWHERE u.id = $1", user_json_select);
    json_t *rows = NULL;
    const char *params[] = {id};
    *out = NULL;
    int rc = duck_query_json(conn, sql, params, 1, &rows, err);
    if (rc == AGNES_OK && json_array_size(rows) == 1)
        *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return rc;
}

int users_list_json(duckdb_connection conn, json_t **out, agnes_error *err)
{
    char sql[sizeof user_json_select + 64];
    snprintf(sql, sizeof sql, "%sORDER BY u.email", user_json_select);
    return duck_query_json(conn, sql, NULL, 0, out, err);
}

int users_create(duckdb_connection conn, const char *email, const char *name, const char *added_by, char id[37],
                 agnes_error *err)
{
    user_record existing;
    int rc = users_find_by_email(conn, email, &existing, err);
    if (rc == AGNES_OK)
        return agnes_error_set(err, AGNES_ERR_INVALID, "User with this email already exists");
    if (rc != AGNES_ERR_NOT_FOUND)
        return rc;
    util_uuid4(id);
    const char *params[] = {id, email, name};
    if (duck_exec_params(conn, "INSERT INTO users (id, email, name) VALUES ($1, $2, $3)", params, 3, err))
        return err->code;
    /* SPEC §6: every user is a member of Everyone. */
    return add_to_group(conn, id, "Everyone", added_by, err);
}

int users_set_name(duckdb_connection conn, const char *id, const char *name, agnes_error *err)
{
    const char *params[] = {id, name};
    return duck_exec_params(conn, "UPDATE users SET name = $2, updated_at = current_timestamp WHERE id = $1", params,
                            2, err);
}

int users_end_sessions(duckdb_connection conn, const char *id, agnes_error *err)
{
    const char *params[] = {id};
    return duck_exec_params(conn,
                            "UPDATE users SET session_generation = coalesce(session_generation, 0) + 1 WHERE id = $1",
                            params, 1, err);
}

int users_set_active(duckdb_connection conn, const char *id, bool active, const char *actor_id, agnes_error *err)
{
    const char *params[] = {id, actor_id};
    duckdb_result result;
    /* Only a change of state ends anything: a PATCH that repeats active=true
     * must not log the user out. */
    if (duck_query_params(conn,
                          active ? "UPDATE users SET active = true, deactivated_at = NULL, deactivated_by = NULL,"
                                   " updated_at = current_timestamp WHERE id = $1 AND NOT active"
                                 : "UPDATE users SET active = false, deactivated_at = current_timestamp,"
                                   " deactivated_by = $2, updated_at = current_timestamp WHERE id = $1 AND active",
                          params, active ? 1 : 2, &result, err))
        return err->code;
    bool changed = duckdb_rows_changed(&result) > 0;
    duckdb_destroy_result(&result);
    if (!changed)
        return AGNES_OK;
    if (!active && duck_exec_params(conn,
                                    "UPDATE personal_access_tokens SET revoked_at = current_timestamp"
                                    " WHERE user_id = $1 AND revoked_at IS NULL",
                                    params, 1, err))
        return err->code;
    return users_end_sessions(conn, id, err);
}

int users_set_password(duckdb_connection conn, const char *id, const char *password_hash, agnes_error *err)
{
    const char *params[] = {id, password_hash};
    if (duck_exec_params(conn, "UPDATE users SET password_hash = $2, updated_at = current_timestamp WHERE id = $1",
                         params, 2, err))
        return err->code;
    return users_end_sessions(conn, id, err);
}

int users_delete(duckdb_connection conn, const char *id, agnes_error *err)
{
    const char *params[] = {id};
    if (duck_exec_params(conn, "DELETE FROM user_group_members WHERE user_id = $1", params, 1, err) ||
        duck_exec_params(conn,
                         "UPDATE personal_access_tokens SET revoked_at = coalesce(revoked_at, current_timestamp)"
                         " WHERE user_id = $1",
                         params, 1, err) ||
        duck_exec_params(conn, "DELETE FROM users WHERE id = $1", params, 1, err))
        return err->code;
    return AGNES_OK;
}

int users_count_other_active_admins(duckdb_connection conn, const char *except_id, long long *count,
                                    agnes_error *err)
{
    const char *params[] = {except_id};
    duckdb_result result;
    *count = 0;
    if (duck_query_params(conn,
                          "SELECT count(*) FROM users u JOIN user_group_members m ON m.user_id = u.id"
                          " JOIN user_groups g ON g.id = m.group_id"
                          " WHERE g.name = 'Admin' AND u.active AND u.email <> 'scheduler@system.local'"
                          " AND ($1 IS NULL OR u.id <> $1)",
                          params, 1, &result, err))
        return err->code;
    *count = duckdb_value_int64(&result, 0, 0);
    duckdb_destroy_result(&result);
    return AGNES_OK;
}
