/*
 * Admin user management: /api/users... (SPEC §6, shapes from the original
 * API §1.9).  Every change runs on the writer connection under its lock, so
 * the "last active admin" checks cannot race with another change, and is
 * written to audit_log.
 */
#include <stdio.h>
#include <string.h>

#include "core/password.h"
#include "http/auth.h"
#include "http/json_body.h"
#include "http/users.h"
#include "store/duck.h"
#include "store/users.h"

/* Answer with the user's current UserResponse (status given), or 404. */
static void respond_user(http_context *ctx, const http_request *req, http_response *resp, const char *id,
                         unsigned status)
{
    duckdb_connection conn = NULL;
    agnes_error err;
    json_t *user = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = users_get_json(conn, id, &user, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else if (user == NULL)
        http_respond_error(resp, 404, "User not found", NULL);
    else
        http_respond_json(resp, status, user);
}

void users_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    duckdb_connection conn = NULL;
    agnes_error err;
    json_t *users = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = users_list_json(conn, &users, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else
        http_respond_json(resp, 200, users);
}

void users_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_user(ctx, req, resp, http_request_param(req, "id"), 200);
}

static void audit(duckdb_connection conn, const http_request *req, const char *action, const char *user_id)
{
    char resource[100];
    snprintf(resource, sizeof resource, "user:%s", user_id);
    audit_log_write(conn, req->identity->user_id, action, resource, NULL, "ok");
}

void users_handle_create(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    char email[USER_EMAIL_MAX + 1], id[37], hash[PASSWORD_HASH_MAX];
    const char *name = NULL, *password = NULL;
    agnes_error err;
    if (body == NULL || json_body_email(body, "email", email, sizeof email, resp) ||
        json_body_string(body, "name", false, USER_NAME_MAX, &name, resp) ||
        json_body_string(body, "password", false, PASSWORD_MAX_LENGTH, &password, resp))
        goto done;
    if (password && strlen(password) < PASSWORD_MIN_LENGTH) {
        http_respond_error(resp, 422, "Field 'password' must be at least 12 characters.", NULL);
        goto done;
    }
    if (password && password_hash(password, hash, &err)) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = users_create(conn, email, name, req->identity->email, id, &err);
    if (rc == AGNES_OK && password)
        rc = users_set_password(conn, id, hash, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "user.create", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "User not found"))
        respond_user(ctx, req, resp, id, 201);
done:
    json_decref(body);
}

/* Refuse to lock the instance out: AGNES_ERR_INVALID (a 409) with the reason. */
static int check_removable(duckdb_connection conn, const http_request *req, const char *id, bool deleting,
                           agnes_error *err)
{
    bool target_is_admin = false;
    long long others = 0;
    const char *what = deleting ? "delete" : "deactivate";
    if (strcmp(id, req->identity->user_id) == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Cannot %s yourself", what);
    if (users_is_admin(conn, id, &target_is_admin, err) ||
        (target_is_admin && users_count_other_active_admins(conn, id, &others, err)))
        return err->code;
    if (target_is_admin && others == 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "Cannot %s the last active admin", what);
    return AGNES_OK;
}

/* Apply {name?, active?} to user `id`; shared by PATCH, deactivate, activate. */
static void change_user(http_context *ctx, const http_request *req, http_response *resp, const char *id,
                        const char *name, enum json_field_presence active_set, bool active)
{
    agnes_error err;
    user_record user;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = users_find_by_id(conn, id, &user, &err);
    if (rc == AGNES_OK && active_set == JSON_FIELD_SET && !active)
        rc = check_removable(conn, req, id, false, &err);
    if (rc == AGNES_OK && name)
        rc = users_set_name(conn, id, name, &err);
    if (rc == AGNES_OK && active_set == JSON_FIELD_SET)
        rc = users_set_active(conn, id, active, req->identity->user_id, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "user.update", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "User not found"))
        respond_user(ctx, req, resp, id, 200);
}

void users_handle_update(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *name = NULL;
    enum json_field_presence active_set = JSON_FIELD_ABSENT;
    bool active = true;
    if (body != NULL && !json_body_string(body, "name", false, USER_NAME_MAX, &name, resp) &&
        !json_body_optional_bool(body, "active", &active_set, &active, resp))
        change_user(ctx, req, resp, http_request_param(req, "id"), name, active_set, active);
    json_decref(body);
}

void users_handle_deactivate(http_context *ctx, const http_request *req, http_response *resp)
{
    change_user(ctx, req, resp, http_request_param(req, "id"), NULL, JSON_FIELD_SET, false);
}

void users_handle_activate(http_context *ctx, const http_request *req, http_response *resp)
{
    change_user(ctx, req, resp, http_request_param(req, "id"), NULL, JSON_FIELD_SET, true);
}

void users_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    agnes_error err;
    user_record user;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = users_find_by_id(conn, id, &user, &err);
    if (rc == AGNES_OK)
        rc = check_removable(conn, req, id, true, &err);
    if (rc == AGNES_OK && (rc = duck_exec(conn, "BEGIN TRANSACTION", &err)) == AGNES_OK) {
        rc = users_delete(conn, id, &err);
        if (rc == AGNES_OK)
            rc = duck_exec(conn, "COMMIT", &err);
        else
            duck_exec(conn, "ROLLBACK", NULL);
    }
    if (rc == AGNES_OK)
        audit(conn, req, "user.delete", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "User not found"))
        http_respond_raw(resp, 204, NULL, NULL, 0);
}

void users_handle_set_password(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *password = NULL, *id = http_request_param(req, "id");
    char hash[PASSWORD_HASH_MAX];
    agnes_error err;
    user_record user;
    if (body == NULL || json_body_string(body, "password", true, PASSWORD_MAX_LENGTH, &password, resp))
        goto done;
    if (strlen(password) < PASSWORD_MIN_LENGTH) {
        http_respond_error(resp, 422, "Field 'password' must be at least 12 characters.", NULL);
        goto done;
    }
    if (password_hash(password, hash, &err)) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = users_find_by_id(conn, id, &user, &err);
    if (rc == AGNES_OK && (rc = users_set_password(conn, id, hash, &err)) == AGNES_OK)
        audit(conn, req, "user.set_password", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "User not found"))
        http_respond_raw(resp, 204, NULL, NULL, 0);
done:
    json_decref(body);
}
