/*
 * auth.h - who is calling, and may they (SPEC §6).
 *
 * auth_gate() is the one place access is decided: server.c calls it for
 * every request with the route's declared level before the handler runs.
 *   ROUTE_PUBLIC     always answers, even in setup mode (health, version, bootstrap)
 *   ROUTE_ANONYMOUS  anyone, once the instance has an admin (login, logout)
 *   ROUTE_USER       a valid session token (Bearer header or access_token cookie)
 *                    of an existing, active user
 *   ROUTE_ADMIN      as USER, and a member of the Admin group
 * Routes flagged ROUTE_INTERACTIVE (minting credentials) also refuse PATs
 * and the service token: they need a person at a keyboard.
 * While no admin with a password exists ("setup mode") everything but PUBLIC
 * answers 503 with setup_required, so a fresh instance can only be claimed
 * through POST /auth/bootstrap.  Roles are read from system.duckdb on every
 * request, never from the token.
 *
 * What ends a credential:
 *   session token   its expiry; logout (every session of that user, on every
 *                   device); a new password; deactivation; reactivation.
 *                   Each adds one to users.session_generation; a session
 *                   carries the generation it was issued in (claim sgen)
 *                   and is refused once they differ.
 *   PAT             its expiry; its own revocation; deactivation (which
 *                   revokes every PAT of the user, so reactivating revives
 *                   none); deleting the user.  Logout and a new password
 *                   leave PATs alone: agents keep working, and a suspected
 *                   leak is answered by revoking the tokens themselves.
 */
#ifndef AGNES_HTTP_AUTH_H
#define AGNES_HTTP_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "http/http.h"
#include "http/router.h"
#include "store/users.h"

typedef struct auth_identity {
    char user_id[64];
    char email[USER_EMAIL_MAX + 1];
    char token_type[16]; /* "session", "pat" or "service" (SCHEDULER_API_TOKEN) */
    bool is_admin;
    int64_t session_generation; /* sessions of another generation are ended (users.session_generation) */
} auth_identity;


/* True when the request may proceed; otherwise resp holds the 503/401/403.
 * On success for USER/ADMIN routes, *identity is filled and req->identity set. */
bool auth_gate(http_context *ctx, const route *matched, http_request *req, auth_identity *identity,
               http_response *resp);

/* Who is calling, for a route open to anyone that shows signed-in callers
 * more (health): true and *identity filled when the request carries a
 * valid credential of an active user, false otherwise (no response is
 * written; a bad token is simply anonymous).  Costs nothing without one. */
bool auth_identify(http_context *ctx, const http_request *req, auth_identity *identity);

/* In setup mode, answer for a path no route matched (503 setup_required)
 * and return true; false when the instance is set up. */
bool auth_setup_mode_answer(http_context *ctx, http_response *resp);

void auth_handle_bootstrap(http_context *ctx, const http_request *req, http_response *resp);
void auth_handle_token(http_context *ctx, const http_request *req, http_response *resp);
void auth_handle_login_form(http_context *ctx, const http_request *req, http_response *resp);
void auth_handle_logout(http_context *ctx, const http_request *req, http_response *resp);
void me_handle_get(http_context *ctx, const http_request *req, http_response *resp);

#endif
