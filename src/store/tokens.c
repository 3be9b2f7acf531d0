#include "store/tokens.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "store/duck.h"

#define TOKEN_FIELDS "t.id, t.name, t.prefix, t.created_at, t.expires_at, t.last_used_at, t.revoked_at"
#define ADMIN_TOKEN_FIELDS TOKEN_FIELDS ", t.user_id, u.email AS user_email, t.last_used_ip"

void tokens_hash(const char *token, char out[65])
{
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const uint8_t *)token, strlen(token));
    util_hex_encode(digest, sizeof digest, out);
}

int tokens_insert(duckdb_connection conn, const char *id, const char *user_id, const char *name,
                  const char *token_hash, const char *prefix, int64_t expires_at, agnes_error *err)
{
    char expires[32];
    snprintf(expires, sizeof expires, "%lld", (long long)expires_at);
    const char *params[] = {id, user_id, name, token_hash, prefix, expires_at ? expires : NULL};
    return duck_exec_params(conn,
                            "INSERT INTO personal_access_tokens (id, user_id, name, token_hash, prefix, expires_at)"
                            " VALUES ($1, $2, $3, $4, $5, make_timestamp(CAST($6 AS BIGINT) * 1000000))",
                            params, 6, err);
}

/* The condition under which a use is worth recording (see tokens_touch). */
#define TOUCH_DUE "(last_used_at IS NULL OR last_used_ip IS DISTINCT FROM $2" \
                  " OR last_used_at < current_timestamp - INTERVAL 1 MINUTE)"

int tokens_check(duckdb_connection conn, const char *id, const char *token_hash, int64_t now, const char *ip,
                 enum token_state *state, bool *touch_due, agnes_error *err)
{
    char now_text[32];
    snprintf(now_text, sizeof now_text, "%lld", (long long)now);
    const char *params[] = {id, ip, token_hash, now_text};
    duckdb_result result;
    *touch_due = false;
    if (duck_query_params(conn,
                          "SELECT revoked_at IS NOT NULL,"
                          " expires_at IS NOT NULL AND expires_at <= make_timestamp(CAST($4 AS BIGINT) * 1000000),"
                          " token_hash = $3, " TOUCH_DUE " FROM personal_access_tokens WHERE id = $1",
                          params, 4, &result, err))
        return err->code;
    if (duckdb_row_count(&result) == 0)
        *state = TOKEN_UNKNOWN;
    else if (duckdb_value_boolean(&result, 0, 0))
        *state = TOKEN_REVOKED;
    else if (duckdb_value_boolean(&result, 1, 0))
        *state = TOKEN_EXPIRED;
    else if (!duckdb_value_boolean(&result, 2, 0))
        *state = TOKEN_MISMATCH;
    else
        *state = TOKEN_VALID;
    *touch_due = *state == TOKEN_VALID && duckdb_value_boolean(&result, 3, 0);
    duckdb_destroy_result(&result);
    return AGNES_OK;
}

int tokens_touch(duckdb_connection conn, const char *id, const char *ip, agnes_error *err)
{
    const char *params[] = {id, ip};
    return duck_exec_params(conn,
                            "UPDATE personal_access_tokens SET last_used_at = current_timestamp, last_used_ip = $2"
                            " WHERE id = $1 AND " TOUCH_DUE,
                            params, 2, err);
}

int tokens_get_json(duckdb_connection conn, const char *id, const char *user_id, bool admin_view, json_t **out,
                    agnes_error *err)
{
    const char *params[] = {id, user_id};
    json_t *rows = NULL;
    *out = NULL;
    int rc = duck_query_json(conn,
                             admin_view ? "SELECT " ADMIN_TOKEN_FIELDS " FROM personal_access_tokens t"
                                          " LEFT JOIN users u ON u.id = t.user_id WHERE t.id = $1"
                                          " AND ($2 IS NULL OR t.user_id = $2)"
                                        : "SELECT " TOKEN_FIELDS " FROM personal_access_tokens t"
                                          " WHERE t.id = $1 AND ($2 IS NULL OR t.user_id = $2)",
                             params, 2, &rows, err);
    if (rc == AGNES_OK && json_array_size(rows) == 1)
        *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return rc;
}

int tokens_list_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err)
{
    const char *params[] = {user_id};
    if (user_id == NULL)
        return duck_query_json(conn,
                               "SELECT " ADMIN_TOKEN_FIELDS " FROM personal_access_tokens t"
                               " LEFT JOIN users u ON u.id = t.user_id ORDER BY t.created_at DESC",
                               NULL, 0, out, err);
    return duck_query_json(conn,
                           "SELECT " TOKEN_FIELDS " FROM personal_access_tokens t WHERE t.user_id = $1"
                           " ORDER BY t.created_at DESC",
                           params, 1, out, err);
}

int tokens_revoke(duckdb_connection conn, const char *id, const char *user_id, bool *found, agnes_error *err)
{
    const char *params[] = {id, user_id};
    duckdb_result result;
    *found = false;
    if (duck_query_params(conn,
                          "UPDATE personal_access_tokens SET revoked_at = coalesce(revoked_at, current_timestamp)"
                          " WHERE id = $1 AND ($2 IS NULL OR user_id = $2)",
                          params, 2, &result, err))
        return err->code;
    *found = duckdb_rows_changed(&result) > 0;
    duckdb_destroy_result(&result);
    return AGNES_OK;
}
