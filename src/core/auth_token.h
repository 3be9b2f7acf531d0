/*
 * auth_token.h - signed bearer tokens: JWT, HS256 only (libjwt).
 *
 * Claims: sub (user id), email, typ ("session" | "pat"), iat, jti, exp, and
 * for sessions sgen (the generation that a logout or new password ends).
 * There is no role claim on purpose: who may do what is read from
 * system.duckdb on every request, so removing someone from Admin takes
 * effect at once.  Verification rejects any algorithm but HS256 (no "none"),
 * a bad signature, and an expired token.
 */
#ifndef AGNES_CORE_AUTH_TOKEN_H
#define AGNES_CORE_AUTH_TOKEN_H

#include <stdint.h>

#include "core/error.h"

typedef struct auth_claims {
    char sub[64];
    char email[320];
    char typ[16];
    char jti[64];
    int64_t iat;
    int64_t exp; /* 0 = no expiry (long-lived PATs; the DB row decides) */
    /* Sessions only, claim "sgen": the user's session generation at issue
     * (users.session_generation); 0 when absent (tokens issued before it existed). */
    int64_t session_generation;
} auth_claims;

/* Sign claims with key; *out is malloc'd (free it). */
int auth_token_issue(const char *key, const auth_claims *claims, char **out, agnes_error *err);

/* Verify signature, algorithm and expiry at `now`; fill *claims. */
int auth_token_verify(const char *key, const char *token, int64_t now, auth_claims *claims, agnes_error *err);

/* A random id for jti: 32 lower-case hex chars. */
void auth_token_new_id(char out[33]);

#endif
