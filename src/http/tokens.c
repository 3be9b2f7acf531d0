/*
 * Personal access tokens: /auth/tokens and /auth/admin/tokens (SPEC §6).
 * The token is a JWT (typ "pat", jti = row id) returned once at creation;
 * the row keeps only its SHA-256.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#include "core/auth_token.h"
#include "http/auth.h"
#include "http/json_body.h"
#include "http/tokens.h"
#include "store/tokens.h"
#include "store/users.h"

#define TOKEN_NAME_MAX 100
#define DEFAULT_TOKEN_DAYS 90

/* Lifetime in seconds from {expires_in_days, ttl_seconds}: ttl wins, absent
 * days means 90, explicit null means no expiry (0).  -1 when resp has a 422. */
static long long requested_lifetime(json_t *body, http_response *resp)
{
    enum json_field_presence days_set, ttl_set;
    long long days = DEFAULT_TOKEN_DAYS, ttl = 0;
    if (json_body_optional_int(body, "expires_in_days", 1, 3650, &days_set, &days, resp) ||
        json_body_optional_int(body, "ttl_seconds", 1, 315360000LL, &ttl_set, &ttl, resp))
        return -1;
    if (ttl_set == JSON_FIELD_SET)
        return ttl;
    if (days_set == JSON_FIELD_NULL)
        return 0;
    return (days_set == JSON_FIELD_SET ? days : DEFAULT_TOKEN_DAYS) * 86400;
}

static int store_token(http_context *ctx, const auth_claims *claims, const char *name, const char *token,
                       agnes_error *err)
{
    char hash[65], prefix[9];
    tokens_hash(token, hash);
    size_t n = 0;
    for (const char *p = claims->jti; *p && n < 8; p++)
        if (*p != '-')
            prefix[n++] = *p;
    prefix[n] = '\0';
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = tokens_insert(conn, claims->jti, claims->sub, name, hash, prefix, claims->exp, err);
    if (rc == AGNES_OK) {
        char resource[80];
        snprintf(resource, sizeof resource, "token:%s", claims->jti);
        audit_log_write(conn, claims->sub, "token.create", resource, NULL, "ok");
    }
    system_db_writer_release(ctx->db);
    return rc;
}

void tokens_handle_create(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = NULL;
    const char *name = NULL;
    char *token = NULL;
    body = json_body_parse_object(req, resp);
    if (body == NULL || json_body_string(body, "name", true, TOKEN_NAME_MAX, &name, resp))
        goto done;
    long long lifetime = requested_lifetime(body, resp);
    if (lifetime < 0)
        goto done;
    auth_claims claims = {.iat = util_unix_now()};
    claims.exp = lifetime ? claims.iat + lifetime : 0;
    snprintf(claims.sub, sizeof claims.sub, "%s", req->identity->user_id);
    snprintf(claims.email, sizeof claims.email, "%s", req->identity->email);
    snprintf(claims.typ, sizeof claims.typ, "pat");
    util_uuid4(claims.jti);
    agnes_error err;
    json_t *row = NULL;
    duckdb_connection conn = NULL;
    if (auth_token_issue(ctx->runtime->secrets.jwt.value, &claims, &token, &err) ||
        store_token(ctx, &claims, name, token, &err) || system_db_connect_reader(ctx->db, &conn, &err) ||
        tokens_get_json(conn, claims.jti, NULL, false, &row, &err) || row == NULL) {
        if (conn)
            duckdb_disconnect(&conn);
        http_respond_internal(resp, req, &err);
        goto done;
    }
    duckdb_disconnect(&conn);
    json_object_set_new(row, "token", json_string(token));
    http_respond_json(resp, 201, row);
done:
    if (token)
        sodium_memzero(token, strlen(token));
    free(token);
    json_decref(body);
}

/* GET one or all, own (user_id set) or anyone's (admin). */
static void respond_tokens(http_context *ctx, const http_request *req, http_response *resp, const char *token_id,
                           const char *owner, bool admin_view)
{
    duckdb_connection conn = NULL;
    agnes_error err;
    json_t *out = NULL;
    int rc = system_db_connect_reader(ctx->db, &conn, &err);
    if (rc == AGNES_OK)
        rc = token_id ? tokens_get_json(conn, token_id, owner, admin_view, &out, &err)
                      : tokens_list_json(conn, owner, &out, &err);
    if (conn)
        duckdb_disconnect(&conn);
    if (rc != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else if (out == NULL)
        http_respond_error(resp, 404, "Token not found", NULL);
    else
        http_respond_json(resp, 200, out);
}

void tokens_handle_list(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_tokens(ctx, req, resp, NULL, req->identity->user_id, false);
}

void tokens_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_tokens(ctx, req, resp, http_request_param(req, "id"), req->identity->user_id, false);
}

void tokens_handle_admin_list(http_context *ctx, const http_request *req, http_response *resp)
{
    respond_tokens(ctx, req, resp, NULL, NULL, true);
}

static void revoke(http_context *ctx, const http_request *req, http_response *resp, const char *owner,
                   const char *action)
{
    const char *id = http_request_param(req, "id");
    bool found = false;
    agnes_error err;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = tokens_revoke(conn, id, owner, &found, &err);
    if (rc == AGNES_OK && found) {
        char resource[300];
        snprintf(resource, sizeof resource, "token:%s", id);
        audit_log_write(conn, req->identity->user_id, action, resource, NULL, "ok");
    }
    system_db_writer_release(ctx->db);
    if (rc != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else if (!found)
        http_respond_error(resp, 404, "Token not found", NULL);
    else
        http_respond_raw(resp, 204, NULL, NULL, 0);
}

void tokens_handle_revoke(http_context *ctx, const http_request *req, http_response *resp)
{
    revoke(ctx, req, resp, req->identity->user_id, "token.revoke");
}

void tokens_handle_admin_revoke(http_context *ctx, const http_request *req, http_response *resp)
{
    revoke(ctx, req, resp, NULL, "token.admin_revoke");
}
