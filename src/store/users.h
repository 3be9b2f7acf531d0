/*
 * users.h - users, their group memberships and the audit log in
 * system.duckdb (SPEC §6).  Tables and columns follow the original system.
 *
 * Functions take the connection they run on; writes must run on the
 * writer connection (system_db_writer_acquire) so that check-then-insert
 * sequences such as "is there an admin yet?" are atomic.
 */
#ifndef AGNES_STORE_USERS_H
#define AGNES_STORE_USERS_H

#include <duckdb.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/password.h"

#define USER_EMAIL_MAX 254
#define USER_NAME_MAX 200

typedef struct user_record {
    char id[64];
    char email[USER_EMAIL_MAX + 1];
    char name[USER_NAME_MAX + 1];
    char password_hash[PASSWORD_HASH_MAX];
    bool has_password;
    bool active;
    /* Sessions issued in another generation are ended (users_end_sessions).
     * Personal access tokens are not affected. */
    int64_t session_generation;
} user_record;

/* True when at least one member of Admin has a password: the instance has
 * been claimed and setup mode is over.  Deliberately ignores `active`:
 * deactivating the last admin must never reopen bootstrap to anyone. */
int users_admin_exists(duckdb_connection conn, bool *exists, agnes_error *err);

/* AGNES_ERR_NOT_FOUND when there is no such user. */
int users_find_by_email(duckdb_connection conn, const char *email, user_record *user, agnes_error *err);
int users_find_by_id(duckdb_connection conn, const char *id, user_record *user, agnes_error *err);

int users_is_admin(duckdb_connection conn, const char *user_id, bool *is_admin, agnes_error *err);

/* Create the user if missing, set the password when given and the user has
 * none yet (set_password_always overrides that), and make it a member of
 * Admin and Everyone.  Fills user with the resulting row. */
int users_ensure_admin(duckdb_connection conn, const char *email, const char *name, const char *password_hash,
                       bool set_password_always, const char *added_by, user_record *user, agnes_error *err);

/* Names of the groups the user belongs to, as a JSON array string (caller frees). */
int users_group_names_json(duckdb_connection conn, const char *user_id, char **json_out, agnes_error *err);

/* One user (id) or all users ordered by email, in the API's UserResponse
 * shape, groups included.  *out is NULL when the id does not exist. */
int users_get_json(duckdb_connection conn, const char *id, json_t **out, agnes_error *err);
int users_list_json(duckdb_connection conn, json_t **out, agnes_error *err);

/* Create a user without password, member of Everyone; fills id.
 * AGNES_ERR_INVALID when the email is taken. */
int users_create(duckdb_connection conn, const char *email, const char *name, const char *added_by, char id[37],
                 agnes_error *err);

int users_set_name(duckdb_connection conn, const char *id, const char *name, agnes_error *err);

/* Activate or deactivate; either way every session issued before ends
 * (users_end_sessions), and deactivation also revokes every personal
 * access token of the user, so a later reactivation revives none of them. */
int users_set_active(duckdb_connection conn, const char *id, bool active, const char *actor_id, agnes_error *err);

/* Set the password hash and end every session issued before (the user's
 * personal access tokens keep working: they are revoked one by one). */
int users_set_password(duckdb_connection conn, const char *id, const char *password_hash, agnes_error *err);

/* End every session token the user holds: session_generation + 1. */
int users_end_sessions(duckdb_connection conn, const char *id, agnes_error *err);

/* Delete a user with its memberships; their tokens are revoked, not deleted
 * (the audit trail keeps pointing at real rows). */
int users_delete(duckdb_connection conn, const char *id, agnes_error *err);

/* Active admins other than `except_id` (may be NULL): guards "last admin". */
int users_count_other_active_admins(duckdb_connection conn, const char *except_id, long long *count,
                                    agnes_error *err);

/* Append an audit entry; params_json may be NULL.  Failures are logged, not
 * returned: an audit hiccup must not turn a login into a 500. */
void audit_log_write(duckdb_connection conn, const char *user_id, const char *action, const char *resource,
                     const char *params_json, const char *result);

#endif
