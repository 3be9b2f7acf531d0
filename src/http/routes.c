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
#include "http/cli_dist.h"
#include "http/configure.h"
#include "http/data.h"
#include "http/sessions.h"
#include "http/health.h"
#include "http/instance.h"
#include "http/mcp.h"
#include "http/pages.h"
#include "http/query.h"
#include "http/registry.h"
#include "http/results.h"
#include "http/setup.h"
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
    /* The web pages (web/pages/, embedded at build time) and their assets. */
    {"GET", "/", pages_handle_root, ROUTE_USER, "Home: the dashboard (or /setup, or /login)", ROUTE_HTML},
    {"GET", "/setup", pages_handle_setup, ROUTE_PUBLIC,
     "First-run wizard; once the admin exists, for a signed-in admin (others go to /login)", ROUTE_HTML},
    {"GET", "/login", pages_handle_login, ROUTE_ANONYMOUS, "Login page", ROUTE_HTML},
    {"GET", "/assets/{name}", pages_handle_asset, ROUTE_PUBLIC,
     "A page's stylesheet, script or library (ETag; gzip when accepted; ?v=<version> cached for a year)"},
    {"GET", "/dashboard", pages_handle_dashboard, ROUTE_USER, "Dashboard page", ROUTE_HTML},
    {"GET", "/catalog", pages_handle_catalog, ROUTE_USER, "Catalog page", ROUTE_HTML},
    {"GET", "/catalog/{id}", pages_handle_catalog_table, ROUTE_USER, "One table's page", ROUTE_HTML},
    {"GET", "/query", pages_handle_query, ROUTE_USER, "SQL console page", ROUTE_HTML},
    {"GET", "/tokens", pages_handle_tokens, ROUTE_USER, "Personal access tokens page", ROUTE_HTML},
    {"GET", "/admin/sources", pages_handle_admin_sources, ROUTE_ADMIN, "Data source page", ROUTE_HTML},
    {"GET", "/admin/tables", pages_handle_admin_tables, ROUTE_ADMIN, "Table registry page", ROUTE_HTML},
    {"GET", "/admin/sync", pages_handle_admin_sync, ROUTE_ADMIN, "Sync runs page", ROUTE_HTML},
    {"GET", "/admin/users", pages_handle_admin_users, ROUTE_ADMIN, "Users page", ROUTE_HTML},
    {"GET", "/admin/users/{id}", pages_handle_admin_user, ROUTE_ADMIN, "One user's page", ROUTE_HTML},
    {"GET", "/admin/access", pages_handle_admin_access, ROUTE_ADMIN, "Groups and grants page", ROUTE_HTML},
    {"GET", "/admin/audit", pages_handle_admin_audit, ROUTE_ADMIN, "Audit log page", ROUTE_HTML},
    {"GET", "/api/instance", instance_handle_get, ROUTE_USER, "Instance name, version and channel (page headers)"},
    {"GET", "/api/me/activity", instance_handle_my_activity, ROUTE_USER, "The caller's last pull"},
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
    {"DELETE", "/api/admin/demo", catalog_handle_remove_demo, ROUTE_ADMIN,
     "Remove the demo source (make run's sample tables) for good", ROUTE_BLOCKING},
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
    {"GET", "/api/admin/sources", setup_handle_sources, ROUTE_ADMIN,
     "Source types this build knows (which it can sync, their configure fields), custom connectors, the current "
     "configuration"},
    {"GET", "/api/admin/setup", setup_handle_state, ROUTE_ADMIN,
     "Where the first-run wizard stands (step 2-5 or done), derived from configuration, registry and sync state"},
    {"GET", "/api/admin/audit", audit_handle_list, ROUTE_ADMIN, "The audit log, newest first (limit, offset, action)"},
    /* Results behind handles, for agents (http/results.h). */
    {"POST", "/api/results", results_handle_create, ROUTE_USER,
     "Run one SELECT {sql, limit?, max_chars?}: the first page, and a handle to the whole result when it is larger",
     ROUTE_BLOCKING},
    {"GET", "/api/results", results_handle_list, ROUTE_USER, "The caller's result handles and the result budget"},
    {"GET", "/api/results/{handle}", results_handle_download, ROUTE_USER,
     "The whole result behind a handle (?format=parquet|csv); only its owner's", ROUTE_BLOCKING},
    {"GET", "/api/results/{handle}/rows", results_handle_rows, ROUTE_USER,
     "One page of a result (?offset=&limit=&max_chars=); next_offset says where to continue", ROUTE_BLOCKING},
    {"DELETE", "/api/results/{handle}", results_handle_delete, ROUTE_USER, "Drop a result before it expires"},
    /* MCP over streamable HTTP: the same tools as `agnes mcp` (http/mcp.h). */
    {"POST", "/mcp", mcp_handle_post, ROUTE_USER,
     "MCP (streamable HTTP): JSON-RPC with a bearer token; tools list_tables, describe_table, query, fetch_result, "
     "sync_status, pull (+ sync_trigger, registry for admins)",
     ROUTE_BLOCKING | ROUTE_BEARER_ONLY},
    {"DELETE", "/mcp", mcp_handle_delete, ROUTE_USER, "End the MCP session named by Mcp-Session-Id",
     ROUTE_BEARER_ONLY},
    /* The CLI for analysts, built from this server's own binary (http/cli_dist.h). */
    {"GET", "/cli/install.sh", cli_dist_handle_install_script, ROUTE_ANONYMOUS,
     "Installer: `curl -fsS SERVER/cli/install.sh | sh` puts agnes into ~/.local (no root), SHA-256 checked",
     ROUTE_BLOCKING},
    {"GET", "/cli/agnes-linux-x86_64.tar.gz", cli_dist_handle_tarball, ROUTE_ANONYMOUS,
     "This server's CLI build: agnes/bin/agnes + agnes/lib/agnes/libduckdb.so (ETag = SHA-256)", ROUTE_BLOCKING},
    {"GET", "/cli/agnes-linux-x86_64.tar.gz.sha256", cli_dist_handle_checksum, ROUTE_ANONYMOUS,
     "SHA-256 of the CLI tarball, in sha256sum's format", ROUTE_BLOCKING},
};

const size_t http_route_count = sizeof http_routes / sizeof http_routes[0];
