#include "http/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/auth_token.h"
#include "core/log.h"
#include "core/password.h"
#include "http/auth_cache.h"
#include "http/csrf.h"
#include "http/form.h"
#include "http/json_body.h"
#include "http/pages.h"
#include "store/duck.h"
#include "store/tokens.h"

#define SETUP_DETAIL "This instance has no admin yet. Create one with POST /auth/bootstrap or open /setup."

static void respond_setup_required(http_response *resp)
{
    http_respond_json(resp, 503, json_pack("{s:s, s:b, s:s}", "detail", SETUP_DETAIL, "setup_required", 1,
                                           "setup_url", "/setup"));
}

static void respond_unauthorized(http_response *resp, const char *detail)
{
    http_respond_error(resp, 401, detail, "Send Authorization: Bearer <token>; get a token with POST /auth/token.");
    http_response_add_header(resp, "WWW-Authenticate", "Bearer");
}

/* The bearer token from the Authorization header, else the access_token cookie. */
static const char *presented_token(const http_request *req)
{
    const char *header = http_request_header(req, "Authorization");
    if (header != NULL) {
        if (strncasecmp(header, "Bearer ", 7) != 0)
            return NULL;
        header += 7;
        while (*header == ' ')
            header++;
        return *header ? header : NULL;
    }
    const char *cookie = http_request_cookie(req, "access_token");
    return cookie && *cookie ? cookie : NULL;
}

/* SCHEDULER_API_TOKEN, compared in constant time. */
static bool is_scheduler_token(http_context *ctx, const char *token)
{
    const char *expected = config_get_string(&ctx->runtime->config, CFG_SCHEDULER_TOKEN);
    size_t n = strlen(expected);
    return ctx->scheduler_user_id[0] != '\0' && strlen(token) == n && sodium_memcmp(token, expected, n) == 0;
}

/* The DB row of a PAT decides whether it still works; NULL when it does. */
static const char *pat_problem(http_context *ctx, duckdb_connection conn, const http_request *req,
                               const auth_claims *claims, const char *token, agnes_error *err, int *rc)
{
    static const char *const messages[] = {
        [TOKEN_VALID] = NULL, [TOKEN_UNKNOWN] = "Token unknown", [TOKEN_REVOKED] = "Token revoked",
        [TOKEN_EXPIRED] = "Token expired", [TOKEN_MISMATCH] = "Token mismatch"};
    char hash[65];
    enum token_state state = TOKEN_UNKNOWN;
    bool touch_due = false;
    tokens_hash(token, hash);
    if ((*rc = tokens_check(conn, claims->jti, hash, util_unix_now(), req->client_ip, &state, &touch_due, err)) !=
        AGNES_OK)
        return NULL;
    if (touch_due) { /* at most once a minute per token and address: no write lock on every request */
        agnes_error ignored;
        duckdb_connection writer = system_db_writer_acquire(ctx->db);
        if (tokens_touch(writer, claims->jti, req->client_ip, &ignored) != AGNES_OK)
            log_warn("msg=\"cannot record token use\" token_id=%s detail=\"%s\"", claims->jti, ignored.message);
        system_db_writer_release(ctx->db);
    }
    return messages[state];
}

/* A session of an earlier generation was ended by a logout, a new
 * password, a deactivation or a reactivation. */
static bool session_still_valid(const auth_claims *claims, const auth_identity *identity, http_response *resp)
{
    if (strcmp(claims->typ, "session") != 0 || claims->session_generation == identity->session_generation)
        return true;
    respond_unauthorized(resp, "Session ended (logged out, password changed or account deactivated); log in again");
    return false;
}

/* Resolve the caller into identity; on failure resp holds the 401/500. */
static bool authenticate(http_context *ctx, const http_request *req, auth_identity *identity, http_response *resp)
{
    const char *token = presented_token(req);
    if (token == NULL) {
        respond_unauthorized(resp, "Missing or invalid Authorization header");
        return false;
    }
    auth_claims claims = {0};
    agnes_error err;
    bool service = is_scheduler_token(ctx, token);
    if (service) {
        snprintf(claims.sub, sizeof claims.sub, "%s", ctx->scheduler_user_id);
        snprintf(claims.typ, sizeof claims.typ, "service");
    } else if (auth_token_verify(ctx->runtime->secrets.jwt.value, token, util_unix_now(), &claims, &err) != AGNES_OK ||
               (strcmp(claims.typ, "session") != 0 && strcmp(claims.typ, "pat") != 0)) {
        respond_unauthorized(resp, "Invalid or expired token");
        return false;
    }
    bool is_pat = strcmp(claims.typ, "pat") == 0;
    /* Read before the database, so a write racing this request invalidates what we cache. */
    unsigned generation = system_db_write_generation(ctx->db);
    if (!is_pat && auth_cache_get(ctx->identities, claims.sub, generation, identity)) {
        snprintf(identity->token_type, sizeof identity->token_type, "%s", claims.typ);
        return session_still_valid(&claims, identity, resp);
    }
    duckdb_connection conn = NULL;
    user_record user;
    bool ok = false;
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return false;
    }
    int rc = AGNES_OK;
    const char *problem = is_pat ? pat_problem(ctx, conn, req, &claims, token, &err, &rc) : NULL;
    if (rc != AGNES_OK || problem != NULL) {
        if (rc != AGNES_OK)
            http_respond_internal(resp, req, &err);
        else
            respond_unauthorized(resp, problem);
        duckdb_disconnect(&conn);
        return false;
    }
    rc = users_find_by_id(conn, claims.sub, &user, &err);
    if (rc == AGNES_ERR_NOT_FOUND)
        respond_unauthorized(resp, "User not found");
    else if (rc != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else if (!user.active)
        respond_unauthorized(resp, "Account deactivated");
    else if (users_is_admin(conn, user.id, &identity->is_admin, &err) != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else
        ok = true;
    duckdb_disconnect(&conn);
    if (ok) {
        snprintf(identity->user_id, sizeof identity->user_id, "%s", user.id);
        snprintf(identity->email, sizeof identity->email, "%s", user.email);
        snprintf(identity->token_type, sizeof identity->token_type, "%s", claims.typ);
        identity->session_generation = user.session_generation;
        if (!is_pat)
            auth_cache_put(ctx->identities, generation, identity);
        ok = session_still_valid(&claims, identity, resp);
    }
    return ok;
}

bool auth_identify(http_context *ctx, const http_request *req, auth_identity *identity)
{
    memset(identity, 0, sizeof *identity);
    if (presented_token(req) == NULL)
        return false;
    http_response scratch = {0};
    bool ok = authenticate(ctx, req, identity, &scratch);
    free(scratch.body);
    return ok;
}

bool auth_setup_mode_answer(http_context *ctx, http_response *resp)
{
    if (!atomic_load(&ctx->setup_required))
        return false;
    respond_setup_required(resp);
    return true;
}

static bool require_session(const auth_identity *identity, http_response *resp)
{
    if (strcmp(identity->token_type, "session") == 0)
        return true;
    http_respond_error(resp, 403,
                       strcmp(identity->token_type, "pat") == 0
                           ? "This endpoint requires an interactive session, not a PAT; log in with POST /auth/token."
                           : "This endpoint requires an interactive session, not a service token.",
                       NULL);
    return false;
}

/* A page route answers a browser, not an API client: instead of the 401 or
 * 403 already in resp, a redirect to the login page or the "not for you" page. */
static void answer_page_denied(const http_request *req, http_response *resp, bool signed_in)
{
    free(resp->body);
    memset(resp, 0, sizeof *resp);
    if (signed_in)
        pages_respond_forbidden(req, resp);
    else
        pages_redirect_to_login(req, resp);
}

bool auth_gate(http_context *ctx, const route *matched, http_request *req, auth_identity *identity,
               http_response *resp)
{
    enum route_access access = matched->access;
    if (!(matched->flags & ROUTE_BEARER_ONLY) && !csrf_check(req, resp))
        return false;
    if (access == ROUTE_PUBLIC)
        return true;
    if (atomic_load(&ctx->setup_required)) {
        if (matched->flags & ROUTE_HTML) {
            http_respond_raw(resp, 302, "text/plain", NULL, 0);
            http_response_add_header(resp, "Location", "/setup");
        } else {
            respond_setup_required(resp);
        }
        return false;
    }
    if (access == ROUTE_ANONYMOUS)
        return true;
    memset(identity, 0, sizeof *identity);
    if (!authenticate(ctx, req, identity, resp)) {
        if ((matched->flags & ROUTE_HTML) && resp->status == 401)
            answer_page_denied(req, resp, false);
        return false;
    }
    if (access == ROUTE_ADMIN && !identity->is_admin) {
        if (matched->flags & ROUTE_HTML)
            answer_page_denied(req, resp, true);
        else
            http_respond_error(resp, 403, "Admin access required", NULL);
        return false;
    }
    if ((matched->flags & ROUTE_INTERACTIVE) && !require_session(identity, resp))
        return false;
    req->identity = identity;
    return true;
}

/* Sign a session token for user (caller frees *token). */
static int issue_session(http_context *ctx, const user_record *user, char **token, agnes_error *err)
{
    auth_claims claims = {.iat = util_unix_now(), .session_generation = user->session_generation};
    claims.exp = claims.iat + 3600 * config_get_int(&ctx->runtime->config, CFG_SESSION_HOURS);
    snprintf(claims.sub, sizeof claims.sub, "%s", user->id);
    snprintf(claims.email, sizeof claims.email, "%s", user->email);
    snprintf(claims.typ, sizeof claims.typ, "session");
    auth_token_new_id(claims.jti);
    return auth_token_issue(ctx->runtime->secrets.jwt.value, &claims, token, err);
}

/* Set-Cookie for a browser session holding token (HttpOnly, SameSite=Lax, Secure with a DOMAIN). */
static void add_session_cookie(http_context *ctx, http_response *resp, const char *token)
{
    char cookie[2048];
    snprintf(cookie, sizeof cookie, "access_token=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s", token,
             3600 * config_get_int(&ctx->runtime->config, CFG_SESSION_HOURS),
             config_is_set(&ctx->runtime->config, CFG_SERVER_DOMAIN) ? "; Secure" : "");
    http_response_add_header(resp, "Set-Cookie", cookie);
}

/* Answer with the login shape {access_token, token_type, user_id, email, role};
 * with_cookie also signs the browser in (the wizard's first step). */
static void respond_with_session(http_context *ctx, const http_request *req, const user_record *user, bool is_admin,
                                 bool with_cookie, http_response *resp)
{
    char *token = NULL;
    agnes_error err;
    if (issue_session(ctx, user, &token, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return;
    }
    http_respond_json(resp, 200,
                      json_pack("{s:s, s:s, s:s, s:s, s:s}", "access_token", token, "token_type", "bearer", "user_id",
                                user->id, "email", user->email, "role", is_admin ? "admin" : "user"));
    if (with_cookie)
        add_session_cookie(ctx, resp, token);
    free(token);
}

/* Read and validate {email, password, name?}; -1 when resp holds the error. */
static int read_credentials(const http_request *req, http_response *resp, json_t **body, char *email,
                            size_t email_size, const char **password, const char **name)
{
    *body = json_body_parse_object(req, resp);
    if (*body == NULL || json_body_email(*body, "email", email, email_size, resp) ||
        json_body_string(*body, "password", true, PASSWORD_MAX_LENGTH, password, resp) ||
        (name && json_body_string(*body, "name", false, USER_NAME_MAX, name, resp)))
        return -1;
    return 0;
}

static int claim_instance(http_context *ctx, const char *email, const char *name, const char *hash, user_record *user,
                          bool *already_claimed, agnes_error *err)
{
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    /* Check and insert under the writer lock: two concurrent bootstraps, one winner. */
    int rc = users_admin_exists(conn, already_claimed, err);
    if (rc == AGNES_OK && !*already_claimed) {
        rc = duck_exec(conn, "BEGIN TRANSACTION", err);
        if (rc == AGNES_OK)
            rc = users_ensure_admin(conn, email, name, hash, true, "auth.bootstrap", user, err);
        agnes_error ignored;
        if (rc == AGNES_OK)
            rc = duck_exec(conn, "COMMIT", err);
        else
            duck_exec(conn, "ROLLBACK", &ignored);
        if (rc == AGNES_OK)
            audit_log_write(conn, user->id, "auth.bootstrap", user->email, NULL, "ok");
    }
    system_db_writer_release(ctx->db);
    return rc;
}

void auth_handle_bootstrap(http_context *ctx, const http_request *req, http_response *resp)
{
    static const char claimed[] =
        "This instance already has an admin, so bootstrap is closed. Log in with POST /auth/token {email, password}.";
    json_t *body = NULL;
    char email[USER_EMAIL_MAX + 1];
    const char *password = NULL, *name = NULL;
    if (!atomic_load(&ctx->setup_required)) {
        http_respond_error(resp, 403, claimed, NULL);
        return;
    }
    if (read_credentials(req, resp, &body, email, sizeof email, &password, &name))
        goto done;
    if (strlen(password) < PASSWORD_MIN_LENGTH) {
        http_respond_error(resp, 422, "Field 'password' must be at least 12 characters.", NULL);
        goto done;
    }
    char hash[PASSWORD_HASH_MAX];
    user_record user;
    bool already_claimed = false;
    agnes_error err;
    if (password_hash(password, hash, &err) || claim_instance(ctx, email, name, hash, &user, &already_claimed, &err)) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    if (already_claimed) {
        http_respond_error(resp, 403, claimed, NULL);
        goto done;
    }
    atomic_store(&ctx->setup_required, false);
    log_info("msg=\"instance claimed by its first admin\" user_id=%s", user.id);
    respond_with_session(ctx, req, &user, true, true, resp);
done:
    json_decref(body);
}

static void audit_login(http_context *ctx, const char *user_id, const char *email, const char *result)
{
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    audit_log_write(conn, user_id, "auth.login", email, NULL, result);
    system_db_writer_release(ctx->db);
}

enum login_result { LOGIN_OK, LOGIN_WRONG, LOGIN_DEACTIVATED, LOGIN_ERROR };

/* Check email + password, audit the attempt; fills user and is_admin on LOGIN_OK. */
static enum login_result check_login(http_context *ctx, const char *email, const char *password, user_record *user,
                                     bool *is_admin, agnes_error *err)
{
    duckdb_connection conn = NULL;
    enum login_result result = LOGIN_ERROR;
    if (system_db_connect_reader(ctx->db, &conn, err))
        return LOGIN_ERROR;
    int rc = users_find_by_email(conn, email, user, err);
    if (rc != AGNES_OK && rc != AGNES_ERR_NOT_FOUND)
        goto done;
    bool found = rc == AGNES_OK;
    /* Always one argon2 verification, so timing does not reveal unknown emails. */
    if (!password_verify(found && user->has_password ? user->password_hash : NULL, password)) {
        audit_login(ctx, found ? user->id : NULL, email, "failed");
        result = LOGIN_WRONG;
    } else if (!user->active) {
        audit_login(ctx, user->id, email, "denied: deactivated");
        result = LOGIN_DEACTIVATED;
    } else if (users_is_admin(conn, user->id, is_admin, err) == AGNES_OK) {
        audit_login(ctx, user->id, email, "ok");
        result = LOGIN_OK;
    }
done:
    duckdb_disconnect(&conn);
    return result;
}

void auth_handle_token(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = NULL;
    char email[USER_EMAIL_MAX + 1];
    const char *password = NULL;
    user_record user;
    bool is_admin = false;
    agnes_error err;
    if (read_credentials(req, resp, &body, email, sizeof email, &password, NULL) == 0) {
        switch (check_login(ctx, email, password, &user, &is_admin, &err)) {
        case LOGIN_OK:
            respond_with_session(ctx, req, &user, is_admin, false, resp);
            break;
        case LOGIN_WRONG:
            http_respond_error(resp, 401, "Incorrect email or password.", NULL);
            break;
        case LOGIN_DEACTIVATED:
            http_respond_error(resp, 403, "This account is deactivated; ask an admin to reactivate it.", NULL);
            break;
        case LOGIN_ERROR:
            http_respond_internal(resp, req, &err);
            break;
        }
    }
    json_decref(body);
}

/* Only a path on this origin: "/catalog?x=1" yes; "//evil.example",
 * "/\evil.example", "https://..." no.  Browsers drop tabs and newlines from
 * a Location and read a backslash as "/" ("/%09/evil.example" became
 * "//evil.example"), so only the characters RFC 3986 allows in a path,
 * query and fragment pass, and the path must not start with two slashes
 * even after that.  Anything else goes to the default page. */
static const char *safe_next(const char *next)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/?#%";
    if (next == NULL || next[0] != '/' || next[1] == '/' || strspn(next, allowed) != strlen(next) ||
        strncmp(next, "/%2f", 4) == 0 || strncmp(next, "/%2F", 4) == 0 || strncmp(next, "/%5c", 4) == 0 ||
        strncmp(next, "/%5C", 4) == 0)
        return "/dashboard";
    return next;
}

static void redirect(http_response *resp, const char *location)
{
    http_respond_raw(resp, 303, "text/plain", NULL, 0);
    http_response_add_header(resp, "Location", location);
}

void auth_handle_login_form(http_context *ctx, const http_request *req, http_response *resp)
{
    char email[USER_EMAIL_MAX + 1] = "", password[PASSWORD_MAX_LENGTH + 1] = "", next[512] = "";
    user_record user;
    bool is_admin = false;
    agnes_error err;
    form_field(req->body, "email", email, sizeof email);
    form_field(req->body, "password", password, sizeof password);
    bool has_next = form_field(req->body, "next", next, sizeof next);
    for (char *p = email; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    enum login_result result = email[0] && password[0] ? check_login(ctx, email, password, &user, &is_admin, &err)
                                                        : LOGIN_WRONG;
    sodium_memzero(password, sizeof password);
    char *token = NULL;
    if (result == LOGIN_ERROR || (result == LOGIN_OK && issue_session(ctx, &user, &token, &err))) {
        http_respond_internal(resp, req, &err);
        return;
    }
    if (result != LOGIN_OK) {
        redirect(resp, result == LOGIN_DEACTIVATED ? "/login?error=deactivated" : "/login?error=invalid");
        return;
    }
    redirect(resp, safe_next(has_next ? next : NULL));
    add_session_cookie(ctx, resp, token);
    free(token);
}

/* The session presented with a logout ends, and with it every other
 * session of that user (PATs are left alone: see auth.h).  A missing or
 * invalid token still gets its cookie cleared. */
static int end_sessions_of_caller(http_context *ctx, const http_request *req, agnes_error *err)
{
    const char *token = presented_token(req);
    auth_claims claims;
    agnes_error ignored;
    if (token == NULL || is_scheduler_token(ctx, token) ||
        auth_token_verify(ctx->runtime->secrets.jwt.value, token, util_unix_now(), &claims, &ignored) != AGNES_OK ||
        strcmp(claims.typ, "session") != 0)
        return AGNES_OK;
    duckdb_connection writer = system_db_writer_acquire(ctx->db);
    int rc = users_end_sessions(writer, claims.sub, err);
    if (rc == AGNES_OK)
        audit_log_write(writer, claims.sub, "auth.logout", claims.email, NULL, "ok");
    system_db_writer_release(ctx->db);
    return rc;
}

void auth_handle_logout(http_context *ctx, const http_request *req, http_response *resp)
{
    agnes_error err;
    if (end_sessions_of_caller(ctx, req, &err) != AGNES_OK) { /* never say "logged out" when it is not so */
        http_respond_internal(resp, req, &err);
        return;
    }
    char cookie[160];
    snprintf(cookie, sizeof cookie, "access_token=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax%s",
             config_is_set(&ctx->runtime->config, CFG_SERVER_DOMAIN) ? "; Secure" : "");
    http_respond_json(resp, 200, json_pack("{s:s}", "detail", "Logged out."));
    http_response_add_header(resp, "Set-Cookie", cookie);
}

void me_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    const auth_identity *who = req->identity;
    duckdb_connection conn = NULL;
    agnes_error err;
    user_record user;
    char *groups = NULL;
    if (system_db_connect_reader(ctx->db, &conn, &err) || users_find_by_id(conn, who->user_id, &user, &err) ||
        users_group_names_json(conn, who->user_id, &groups, &err)) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    http_respond_json(resp, 200,
                      json_pack("{s:s, s:s, s:s, s:b, s:o}", "id", user.id, "email", user.email, "name", user.name,
                                "is_admin", who->is_admin, "groups", json_loads(groups, 0, NULL)));
done:
    free(groups);
    if (conn)
        duckdb_disconnect(&conn);
}

