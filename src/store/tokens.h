/*
 * tokens.h - personal access tokens in system.duckdb (SPEC §6).
 *
 * The token handed to the client is a signed JWT (typ "pat", jti = row id),
 * shown once.  The row keeps only its SHA-256, a short prefix to recognise
 * it, expiry, last use (time and IP) and revocation; the row, not the JWT,
 * is the authority on whether the token still works.
 */
#ifndef AGNES_STORE_TOKENS_H
#define AGNES_STORE_TOKENS_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

enum token_state { TOKEN_VALID, TOKEN_UNKNOWN, TOKEN_REVOKED, TOKEN_EXPIRED, TOKEN_MISMATCH };

/* SHA-256 of the token, lower-case hex (65 bytes with NUL). */
void tokens_hash(const char *token, char out[65]);

/* expires_at = 0 for no expiry. */
int tokens_insert(duckdb_connection conn, const char *id, const char *user_id, const char *name,
                  const char *token_hash, const char *prefix, int64_t expires_at, agnes_error *err);

/* Is the token with row id `id` and hash `token_hash` usable at `now`?
 * *touch_due says whether tokens_touch would record anything for a use from
 * `ip` (so callers skip the write lock when it would not). */
int tokens_check(duckdb_connection conn, const char *id, const char *token_hash, int64_t now, const char *ip,
                 enum token_state *state, bool *touch_due, agnes_error *err);

/* Record a use; cheap to call per request: writes only when the last use is
 * older than a minute or came from another address. */
int tokens_touch(duckdb_connection conn, const char *id, const char *ip, agnes_error *err);

/* One token as JSON (user_id NULL = any owner, for admins); *out NULL if absent. */
int tokens_get_json(duckdb_connection conn, const char *id, const char *user_id, bool admin_view, json_t **out,
                    agnes_error *err);

/* The user's tokens (user_id NULL = all tokens, admin view), newest first. */
int tokens_list_json(duckdb_connection conn, const char *user_id, json_t **out, agnes_error *err);

/* Set revoked_at; *found false when no such token (of that owner). */
int tokens_revoke(duckdb_connection conn, const char *id, const char *user_id, bool *found, agnes_error *err);

#endif
