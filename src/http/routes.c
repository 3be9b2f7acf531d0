/*
 * routes.c - every HTTP endpoint of Agnes, in one table.
 *
 * Adding an endpoint = one row here + a handler in the file of its API area.
 * The access level is enforced by server.c before the handler runs.
 */
#include "http/access.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/catalog_admin.h"
#include "http/configure.h"
#include "http/data.h"
#include "http/sessions.h"
#include "http/health.h"
#include "http/pages.h"
#include "http/query.h"
#include "http/registry.h"
#include "http/sync.h"
#include "http/sync_status.h"
#include "http/tokens.h"
#include "http/upload.h"
#include "http/users.h"
#include "http/router.h"

const route http_routes[] = {
    {"GET", "/api/health", health_handle_get, ROUTE_PUBLIC, "Instance health for load balancers and operators"},
    {"GET", "/api/version", version_handle_get, ROUTE_PUBLIC, "Running version, channel, commit and schema"},
    {"GET", "/api/health/detailed", health_handle_detailed, ROUTE_USER,
     "Health plus catalog sources, collisions, stale tables, memory, uptime, running queries"},
    {"POST", "/auth/bootstrap", auth_handle_bootstrap, ROUTE_PUBLIC, "Create the first admin (setup mode only)"},
    {"POST", "/auth/token", auth_handle_token, ROUTE_ANONYMOUS, "Log in with email and password; returns a bearer token"},
    {"POST", "/auth/login", auth_handle_login_form, ROUTE_ANONYMOUS, "Web form login: sets the access_token cookie"},
    {"POST", "/auth/logout", auth_handle_logout, ROUTE_ANONYMOUS, "Clear the access_token cookie"},
    {"GET", "/setup", pages_handle_setup, ROUTE_PUBLIC, "First-run page (redirects to /login once set up)", ROUTE_HTML},
    {"GET", "/login", pages_handle_login, ROUTE_ANONYMOUS, "Login page", ROUTE_HTML},
    {"GET", "/api/me", me_handle_get, ROUTE_USER, "The caller: id, email, name, admin flag, groups"},
    {"POST", "/auth/tokens", tokens_handle_create, ROUTE_USER, "Create a personal access token (shown once)",
     ROUTE_INTERACTIVE},
    {"GET", "/auth/tokens", tokens_handle_list, ROUTE_USER, "The caller's personal access tokens"},
    {"GET", "/auth/tokens/{id}", tokens_handle_get, ROUTE_USER, "One of the caller's tokens"},
    {"DELETE", "/auth/tokens/{id}", tokens_handle_revoke, ROUTE_USER, "Revoke one of the caller's tokens"},
    {"GET", "/auth/admin/tokens", tokens_handle_admin_list, ROUTE_ADMIN, "Every personal access token"},
    {"DELETE", "/auth/admin/tokens/{id}", tokens_handle_admin_revoke, ROUTE_ADMIN, "Revoke anyone's token"},
    {"GET", "/api/users", users_handle_list, ROUTE_ADMIN, "Every user, ordered by email"},
    {"POST", "/api/users", users_handle_create, ROUTE_ADMIN, "Create a user {email, name?, password?}"},
    {"GET", "/api/users/{id}", users_handle_get, ROUTE_ADMIN, "One user"},
    {"PATCH", "/api/users/{id}", users_handle_update, ROUTE_ADMIN, "Change a user's name or active flag"},
    {"DELETE", "/api/users/{id}", users_handle_delete, ROUTE_ADMIN, "Delete a user (not yourself, not the last admin)"},
    {"POST", "/api/users/{id}/set-password", users_handle_set_password, ROUTE_ADMIN, "Set a user's password"},
    {"POST", "/api/users/{id}/deactivate", users_handle_deactivate, ROUTE_ADMIN, "Deactivate a user"},
    {"POST", "/api/users/{id}/activate", users_handle_activate, ROUTE_ADMIN, "Reactivate a user"},
    {"GET", "/api/admin/users/{id}/effective-access", access_handle_user_effective, ROUTE_ADMIN,
     "What a user can see, and through which groups"},
    {"GET", "/api/me/effective-access", access_handle_me_effective, ROUTE_USER, "What the caller can see"},
    {"GET", "/api/admin/groups", groups_handle_list, ROUTE_ADMIN, "Every group with member and grant counts"},
    {"POST", "/api/admin/groups", groups_handle_create, ROUTE_ADMIN, "Create a group {name, description?}"},
    {"GET", "/api/admin/groups/{id}", groups_handle_get, ROUTE_ADMIN, "One group"},
    {"PATCH", "/api/admin/groups/{id}", groups_handle_update, ROUTE_ADMIN, "Rename or describe a group"},
    {"DELETE", "/api/admin/groups/{id}", groups_handle_delete, ROUTE_ADMIN, "Delete a group with its members and grants"},
    {"GET", "/api/admin/groups/{id}/members", members_handle_list, ROUTE_ADMIN, "Members of a group"},
    {"POST", "/api/admin/groups/{id}/members", members_handle_add, ROUTE_ADMIN, "Add a member {email}"},
    {"DELETE", "/api/admin/groups/{id}/members/{user_id}", members_handle_remove, ROUTE_ADMIN, "Remove a member"},
    {"GET", "/api/admin/grants", grants_handle_list, ROUTE_ADMIN, "Grants, filtered by resource_type / group_id"},
    {"POST", "/api/admin/grants", grants_handle_create, ROUTE_ADMIN, "Grant a group a table {group_id, resource_type, resource_id}"},
    {"DELETE", "/api/admin/grants/{id}", grants_handle_delete, ROUTE_ADMIN, "Remove a grant"},
    {"GET", "/api/catalog/tables", catalog_handle_list, ROUTE_USER, "Tables the caller may see"},
    {"GET", "/api/catalog/tables/{id}", catalog_handle_get, ROUTE_USER, "One table with its columns"},
    {"GET", "/api/catalog/tables/{id}/sample", catalog_handle_sample, ROUTE_USER,
     "Up to n (1-100, default 10) rows of a table", ROUTE_BLOCKING},
    {"POST", "/api/query", query_handle_post, ROUTE_USER,
     "Run one read-only SELECT on the catalog {sql, limit?, format?: json|ndjson|csv|parquet|arrow}", ROUTE_BLOCKING},
    {"POST", "/api/admin/rebuild", catalog_handle_rebuild, ROUTE_ADMIN,
     "Rebuild the analytics catalog from every extract now", ROUTE_BLOCKING},
    {"POST", "/api/sync/trigger", sync_handle_trigger, ROUTE_ADMIN,
     "Start a sync of every registered table, or of a JSON array of ids; returns a run_id at once"},
    {"GET", "/api/sync/status/{run_id}", sync_handle_run_status, ROUTE_ADMIN, "One sync run: state per table"},
    {"GET", "/api/sync/status", sync_status_handle_get, ROUTE_USER,
     "Per table: rows, bytes, state, error, last sync; catalog collisions and sources"},
    {"GET", "/api/sync/manifest", data_handle_manifest, ROUTE_USER,
     "Tables the caller may read: {tables: {id: {hash, size_bytes, rows, updated, query_mode, source_type, "
     "downloadable}}, count, server_time}"},
    {"GET", "/api/data/{id}/download", data_handle_download, ROUTE_USER,
     "A table's Parquet file (ETag = content hash, If-None-Match -> 304, Range -> 206; HEAD too)"},
    {"POST", "/api/upload/sessions", sessions_handle_upload, ROUTE_USER,
     "Keep an agent session's log or notes (multipart \"file\" or raw body with ?name=), per user, size-capped",
     ROUTE_BLOCKING | ROUTE_UPLOAD | ROUTE_SMALL_UPLOAD},
    {"POST", "/api/upload/tables", upload_handle_table, ROUTE_ADMIN,
     "Register or replace a local table from a CSV/TSV/Parquet/JSON/NDJSON file (multipart or raw; ?name=)",
     ROUTE_BLOCKING | ROUTE_UPLOAD},
    {"POST", "/api/admin/register-table", registry_handle_register, ROUTE_ADMIN,
     "Register a table to sync {name, source_type, query_mode, source_query?, sync_schedule?, ...}"},
    {"POST", "/api/admin/register-table/precheck", registry_handle_precheck, ROUTE_ADMIN,
     "Validate a registration without storing it (built-in sources list the table's columns)", ROUTE_BLOCKING},
    {"GET", "/api/admin/registry", registry_handle_list, ROUTE_ADMIN, "Every registered table with its last sync error"},
    {"PUT", "/api/admin/registry/{id}", registry_handle_update, ROUTE_ADMIN, "Change fields of a registered table"},
    {"DELETE", "/api/admin/registry/{id}", registry_handle_delete, ROUTE_ADMIN,
     "Unregister a table (its sync state and files go too; built-in sources stop serving it at once)",
     ROUTE_BLOCKING},
    {"GET", "/api/admin/configure", configure_handle_get, ROUTE_ADMIN,
     "The data sources this build can configure (configurable, fields) and the current one (secrets only as set/unset)"},
    {"POST", "/api/admin/configure", configure_handle_post, ROUTE_ADMIN,
     "Set the data source {data_source: keboola|postgres|local, keboola_url + keboola_token | postgres_dsn | "
     "postgres_host/port/database/user/password}; credentials are tested before anything is saved",
     ROUTE_BLOCKING},
    {"GET", "/api/admin/discover-tables", configure_handle_discover_list, ROUTE_ADMIN,
     "The configured source's tables with the id each would get and whether it is registered; nothing is stored",
     ROUTE_BLOCKING},
    {"POST", "/api/admin/discover-and-register", configure_handle_discover, ROUTE_ADMIN,
     "Register the tables the configured source lists {query_mode?, schemas?, tables?, sync_schedule?}",
     ROUTE_BLOCKING},
    {"GET", "/api/admin/audit", audit_handle_list, ROUTE_ADMIN, "The audit log, newest first (limit, offset, action)"},
};

const size_t http_route_count = sizeof http_routes / sizeof http_routes[0];
