/*
 * Groups, memberships, grants, effective access and the audit log
 * (SPEC §6; shapes from the original API §1.10).  Mutations run on the
 * writer connection under its lock and are audited; store functions report
 * "not found" and "conflict" as codes that map to 404 and 409 here.
 */
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"
#include "engine/contract.h"
#include "http/access.h"
#include "http/auth.h"
#include "http/json_body.h"
#include "store/duck.h"
#include "store/groups.h"
#include "store/users.h"

static void audit(duckdb_connection conn, const http_request *req, const char *action, const char *kind,
                  const char *id)
{
    char resource[200];
    snprintf(resource, sizeof resource, "%s:%s", kind, id);
    audit_log_write(conn, req->identity->user_id, action, resource, NULL, "ok");
}

typedef int (*read_json_fn)(duckdb_connection conn, const char *a, const char *b, const char *c, json_t **out,
                            agnes_error *err);

/* Run a read on a fresh reader connection and answer with its JSON. */
static void respond_read(http_context *ctx, const http_request *req, http_response *resp, read_json_fn read,
                         const char *a, const char *b, const char *c, unsigned status, const char *not_found)
{
    duckdb_connection conn = NULL;
    agnes_error err;
    json_t *out = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = read(conn, a, b, c, &out, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (!http_respond_failure(resp, req, rc, &err, not_found))
        http_respond_json(resp, status, out);
}

static int read_group(duckdb_connection conn, const char *id, const char *b, const char *c, json_t **out,
                      agnes_error *err)
{
    (void)b;
    (void)c;
    return groups_json(conn, id, out, err);
}

static int read_members(duckdb_connection conn, const char *id, const char *b, const char *c, json_t **out,
                        agnes_error *err)
{
    (void)b;
    (void)c;
    group_record group;
    return groups_find(conn, id, &group, err) ? err->code : groups_members_json(conn, id, out, err);
}

static int read_grants(duckdb_connection conn, const char *id, const char *type, const char *group, json_t **out,
                       agnes_error *err)
{
    return grants_json(conn, id, type, group, out, err);
}

static int read_effective(duckdb_connection conn, const char *user_id, const char *b, const char *c, json_t **out,
                          agnes_error *err)
{
    (void)b;
    (void)c;
    user_record user;
    return users_find_by_id(conn, user_id, &user, err) ? err->code : access_effective_json(conn, user_id, out, err);
}

void groups_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_group, NULL, NULL, NULL, 200, "Group not found");
}

void groups_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_group, http_request_param(req, "id"), NULL, NULL, 200, "Group not found");
}

void groups_handle_create(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *name = NULL, *description = NULL;
    char id[37];
    agnes_error err;
    if (body == NULL || json_body_string(body, "name", true, GROUP_NAME_MAX, &name, resp) ||
        json_body_string(body, "description", false, GROUP_DESCRIPTION_MAX, &description, resp))
        goto done;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = groups_create(conn, name, description, req->identity->email, id, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "user_group.created", "group", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "Group not found"))
        respond_read(ctx, req, resp, read_group, id, NULL, NULL, 201, "Group not found");
done:
    json_decref(body);
}

void groups_handle_update(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *name = NULL, *description = NULL, *id = http_request_param(req, "id");
    agnes_error err;
    if (body == NULL || json_body_string(body, "name", false, GROUP_NAME_MAX, &name, resp) ||
        json_body_string(body, "description", false, GROUP_DESCRIPTION_MAX, &description, resp))
        goto done;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = groups_update(conn, id, name, description, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "user_group.updated", "group", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "Group not found"))
        respond_read(ctx, req, resp, read_group, id, NULL, NULL, 200, "Group not found");
done:
    json_decref(body);
}

void groups_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    agnes_error err;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = groups_delete(conn, id, &err); /* not one transaction: see groups.h */
    if (rc == AGNES_OK)
        audit(conn, req, "user_group.deleted", "group", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "Group not found"))
        http_respond_raw(resp, 204, NULL, NULL, 0);
}

void members_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_members, http_request_param(req, "id"), NULL, NULL, 200, "Group not found");
}

void members_handle_add(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *group_id = http_request_param(req, "id");
    char email[USER_EMAIL_MAX + 1];
    const char *not_found = "Group not found";
    user_record user = {0};
    group_record group;
    agnes_error err;
    if (body == NULL || json_body_email(body, "email", email, sizeof email, resp))
        goto done;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = groups_find(conn, group_id, &group, &err);
    if (rc == AGNES_OK && (rc = users_find_by_email(conn, email, &user, &err)) == AGNES_ERR_NOT_FOUND)
        not_found = "User not found";
    if (rc == AGNES_OK)
        rc = groups_add_member(conn, group_id, user.id, req->identity->email, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "user_group.member_added", "group", group_id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, not_found))
        http_respond_json(resp, 201,
                          json_pack("{s:s, s:s, s:s, s:b, s:s}", "user_id", user.id, "email", user.email, "name",
                                    user.name, "active", user.active, "source", "admin"));
done:
    json_decref(body);
}

/* Nobody leaves Everyone; nobody removes the last active admin. */
static const char *membership_problem(duckdb_connection conn, const group_record *group, const char *user_id,
                                      agnes_error *err, int *rc)
{
    long long others = 0;
    *rc = AGNES_OK;
    if (strcmp(group->name, "Everyone") == 0)
        return "Every user stays in Everyone; to limit what someone sees, remove grants from Everyone instead";
    if (strcmp(group->name, "Admin") != 0)
        return NULL;
    if ((*rc = users_count_other_active_admins(conn, user_id, &others, err)) != AGNES_OK)
        return NULL;
    return others == 0 ? "Cannot remove the last active admin" : NULL;
}

void members_handle_remove(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *group_id = http_request_param(req, "id"), *user_id = http_request_param(req, "user_id");
    group_record group;
    agnes_error err;
    bool removed = false;
    const char *problem = NULL;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = groups_find(conn, group_id, &group, &err);
    if (rc == AGNES_OK)
        problem = membership_problem(conn, &group, user_id, &err, &rc);
    if (rc == AGNES_OK && problem == NULL)
        rc = groups_remove_member(conn, group_id, user_id, &removed, &err);
    if (rc == AGNES_OK && removed)
        audit(conn, req, "user_group.member_removed", "group", group_id);
    system_db_writer_release(ctx->db);
    if (http_respond_failure(resp, req, rc, &err, "Group not found"))
        return;
    if (problem)
        http_respond_error(resp, 409, problem, NULL);
    else if (!removed)
        http_respond_error(resp, 404, "User is not a member of this group", NULL);
    else
        http_respond_raw(resp, 204, NULL, NULL, 0);
}

/* A query-string filter: text that is not UTF-8 matches nothing stored
 * (every stored value is UTF-8), so it filters to nothing instead of
 * reaching DuckDB, which refuses to bind it. */
static const char *filter(const http_request *req, const char *name)
{
    const char *value = http_request_query(req, name);
    return value == NULL || utf8_is_valid(value, strlen(value)) ? value : "\xEF\xBF\xBD";
}

void grants_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_grants, NULL, filter(req, "resource_type"), filter(req, "group_id"), 200,
                 "Grant not found");
}

void grants_handle_create(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp);
    const char *group_id = NULL, *type = NULL, *resource_id = NULL;
    char id[37];
    agnes_error err;
    if (body == NULL || json_body_string(body, "group_id", true, 64, &group_id, resp) ||
        json_body_string(body, "resource_type", true, 32, &type, resp) ||
        json_body_string(body, "resource_id", true, 64, &resource_id, resp))
        goto done;
    if (strcmp(type, "table") != 0) {
        http_respond_error(resp, 422, "Field 'resource_type' must be one of: table.", NULL);
        goto done;
    }
    if (!contract_is_identifier(resource_id)) { /* a table's id is its view name (SPEC §7) */
        http_respond_error(resp, 422,
                           "Field 'resource_id' must be a table id: a letter or _ then letters, digits or _ "
                           "(at most 64), e.g. orders_2026.",
                           NULL);
        goto done;
    }
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = grants_create(conn, group_id, type, resource_id, req->identity->email, id, &err);
    if (rc == AGNES_OK)
        audit(conn, req, "resource_grant.created", "grant", id);
    system_db_writer_release(ctx->db);
    if (!http_respond_failure(resp, req, rc, &err, "Group not found"))
        respond_read(ctx, req, resp, read_grants, id, NULL, NULL, 201, "Grant not found");
done:
    json_decref(body);
}

void grants_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *id = http_request_param(req, "id");
    bool deleted = false;
    agnes_error err;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = grants_delete(conn, id, &deleted, &err);
    if (rc == AGNES_OK && deleted)
        audit(conn, req, "resource_grant.deleted", "grant", id);
    system_db_writer_release(ctx->db);
    if (http_respond_failure(resp, req, rc, &err, "Grant not found"))
        return;
    if (!deleted)
        http_respond_error(resp, 404, "Grant not found", NULL);
    else
        http_respond_raw(resp, 204, NULL, NULL, 0);
}

void access_handle_user_effective(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_effective, http_request_param(req, "id"), NULL, NULL, 200, "User not found");
}

void access_handle_me_effective(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_read(ctx, req, resp, read_effective, req->identity->user_id, NULL, NULL, 200, "User not found");
}

/* A whole-number query parameter in [min, max]; -1 with a 422 in resp. */
static int query_int(const http_request *req, const char *name, long long fallback, long long min, long long max,
                     long long *out, http_response *resp)
{
    const char *text = http_request_query(req, name);
    *out = fallback;
    if (text == NULL)
        return 0;
    if (!util_parse_long(text, out) || *out < min || *out > max) {
        char detail[160];
        snprintf(detail, sizeof detail, "Query parameter '%s' must be a whole number from %lld to %lld.", name, min,
                 max);
        http_respond_error(resp, 422, detail, NULL);
        return -1;
    }
    return 0;
}

void audit_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    long long limit = 0, offset = 0;
    if (query_int(req, "limit", 100, 1, 500, &limit, resp) || query_int(req, "offset", 0, 0, 1LL << 40, &offset, resp))
        return;
    duckdb_connection conn = NULL;
    agnes_error err;
    json_t *page = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = audit_page_json(conn, filter(req, "action"), limit, offset, &page, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (!http_respond_failure(resp, req, rc, &err, "not found"))
        http_respond_json(resp, 200, page);
}
