#include "http/health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/log.h"
#include "engine/analytics.h"
#include "engine/query_pool.h"
#include "http/auth.h"
#include "http/catalog.h"
#include "http/sync_status.h"
#include "store/backup.h"
#include "store/duck.h"
#include "store/migrations.h"

enum check_level { CHECK_OK, CHECK_SKIPPED, CHECK_WARNING, CHECK_ERROR };

static const char *const level_names[] = {"ok", "skipped", "warning", "error"};

typedef struct health_report {
    json_t *checks;
    json_t *warnings;
    enum check_level worst;
} health_report;

/* Record a check; a warning or error also gets a top-level sentence. */
static void add_check(health_report *report, const char *name, enum check_level level, json_t *details,
                      const char *message)
{
    if (details == NULL)
        details = json_object();
    json_object_set_new(details, "status", json_string(level_names[level]));
    if (message != NULL && level >= CHECK_WARNING) {
        json_object_set_new(details, "detail", json_string(message));
        json_array_append_new(report->warnings, json_string(message));
    }
    json_object_set_new(report->checks, name, details);
    if (level > report->worst)
        report->worst = level;
}

static void check_state_dir(health_report *report, agnes_runtime *rt)
{
    const char *dir = rt->paths.state_dir;
    bool required = strcmp(config_get_string(&rt->config, CFG_STATE_MOUNT), "required") == 0;
    bool is_mount = paths_is_mount_point(dir, "/proc/self/mountinfo");
    json_t *details = json_pack("{s:s, s:b, s:b}", "path", dir, "mount_required", required, "is_mount_point",
                                is_mount);
    char message[AGNES_PATH_MAX + 200];
    if (!util_is_directory(dir) || access(dir, W_OK) != 0) {
        snprintf(message, sizeof message, "STATE_DIR %s is missing or not writable; fix the mount or permissions", dir);
        add_check(report, "state_dir", CHECK_ERROR, details, message);
    } else if (required && paths_check_state_mount(&rt->paths, true, "/proc/self/mountinfo", NULL) != AGNES_OK) {
        snprintf(message, sizeof message,
                 "STATE_DIR %s is no longer a mount point of its own, apart from DATA_DIR (AGNES_STATE_MOUNT=required); "
                 "see docs/state-dir.md",
                 dir);
        add_check(report, "state_dir", CHECK_ERROR, details, message);
    } else {
        add_check(report, "state_dir", CHECK_OK, details, NULL);
    }
}

static int check_system_db(health_report *report, http_context *ctx)
{
    int expected = migrations_latest();
    int current = -1;
    agnes_error err;
    agnes_error_clear(&err);
    int rc = system_db_schema_version(ctx->db, &current, &err);
    json_t *details = json_pack("{s:i}", "expected", expected);
    if (rc != AGNES_OK) {
        char message[AGNES_ERROR_MESSAGE_MAX + 64];
        snprintf(message, sizeof message, "system.duckdb is unreadable: %s", err.message);
        add_check(report, "system_db", CHECK_ERROR, details, message);
        return -1;
    }
    json_object_set_new(details, "current", json_integer(current));
    if (current != expected)
        add_check(report, "system_db", CHECK_ERROR, details,
                  "system.duckdb schema does not match this build; run `agnes migrate`");
    else
        add_check(report, "system_db", CHECK_OK, details, NULL);
    return current;
}

/* The key in memory is fine, but if its file vanished the next restart would
 * generate a new one and log everybody out: say so while it can be fixed. */
static void check_secrets(health_report *report, agnes_runtime *rt)
{
    const struct {
        const char *name;
        const agnes_secret *secret;
        enum state_file file;
    } secrets[] = {{"jwt", &rt->secrets.jwt, STATE_JWT_SECRET}, {"session", &rt->secrets.session, STATE_SESSION_SECRET}};
    json_t *details = json_object();
    enum check_level level = CHECK_OK;
    char message[AGNES_PATH_MAX + 200] = "";
    for (size_t i = 0; i < 2; i++) {
        const char *source = secrets[i].secret->source ? secrets[i].secret->source : "missing";
        json_object_set_new(details, secrets[i].name, json_string(source));
        char path[AGNES_PATH_MAX];
        bool from_file = strcmp(source, "file") == 0 || strcmp(source, "generated") == 0;
        if (from_file && paths_state_file(&rt->paths, secrets[i].file, path, sizeof path, NULL) == AGNES_OK &&
            !util_file_exists(path)) {
            level = CHECK_WARNING;
            snprintf(message, sizeof message,
                     "secret file %s has disappeared; a restart would generate a new key and log every user out. "
                     "Restore it from backup",
                     path);
        }
    }
    add_check(report, "secrets", level, details, level == CHECK_OK ? NULL : message);
}

static long long free_bytes(const char *dir)
{
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return -1;
    return (long long)vfs.f_bavail * (long long)vfs.f_frsize;
}

static void check_disk_free(health_report *report, agnes_runtime *rt)
{
    long long minimum = config_get_int(&rt->config, CFG_HEALTH_MIN_FREE_BYTES);
    long long data_free = free_bytes(rt->paths.data_dir);
    long long state_free = free_bytes(rt->paths.state_dir);
    json_t *details = json_pack("{s:I, s:I, s:I}", "data_dir_free_bytes", (json_int_t)data_free,
                                "state_dir_free_bytes", (json_int_t)state_free, "min_free_bytes", (json_int_t)minimum);
    char message[256];
    const char *low = data_free >= 0 && data_free < minimum ? "DATA_DIR" : state_free >= 0 && state_free < minimum ? "STATE_DIR" : NULL;
    if (low != NULL) {
        snprintf(message, sizeof message, "%s has less than %lld bytes free; free space or grow the disk", low, minimum);
        add_check(report, "disk_free", CHECK_WARNING, details, message);
    } else {
        add_check(report, "disk_free", CHECK_OK, details, NULL);
    }
}

static void check_release(health_report *report, agnes_runtime *rt)
{
    release_status status;
    runtime_get_release(rt, &status);
    if (!config_is_set(&rt->config, CFG_RELEASE_INDEX)) {
        add_check(report, "release_index", CHECK_SKIPPED, json_pack("{s:s}", "detail", "AGNES_RELEASE_INDEX is not set"), NULL);
        return;
    }
    if (!status.configured) {
        add_check(report, "release_index", CHECK_SKIPPED,
                  json_pack("{s:s}", "detail", "the first read of the release index is in progress"), NULL);
        return;
    }
    char checked_at[32], message[1024];
    util_utc_iso(status.checked_at, checked_at);
    json_t *details = json_pack("{s:s, s:b, s:s}", "checked_at", checked_at, "deprecated", status.deprecated,
                                "stable", status.stable);
    if (status.deprecated) {
        json_object_set_new(details, "reason", json_string(status.reason));
        json_object_set_new(details, "until", json_string(status.until));
    }
    release_index_warning(&status, rt->version.version, message, sizeof message);
    add_check(report, "release_index", message[0] ? CHECK_WARNING : CHECK_OK, details, message[0] ? message : NULL);
}

/* Scheduled backups (AGNES_BACKUP_DIR): the newest archive's age, a warning
 * when it is older than two intervals or the last attempt failed. */
static void check_backup(health_report *report, http_context *ctx)
{
    if (ctx->backups == NULL) {
        add_check(report, "backup", CHECK_SKIPPED, json_pack("{s:b}", "enabled", false), NULL);
        return;
    }
    char warning[AGNES_ERROR_MESSAGE_MAX + AGNES_PATH_MAX];
    json_t *details = backup_status_json(ctx->backups, util_unix_now(), warning, sizeof warning);
    bool enabled = json_is_true(json_object_get(details, "enabled"));
    if (!enabled)
        json_object_set_new(details, "detail",
                            json_string("AGNES_BACKUP_DIR is not set: no scheduled backups; take them with `agnes "
                                        "backup` (docs/deploy.md)"));
    add_check(report, "backup", !enabled ? CHECK_SKIPPED : warning[0] ? CHECK_WARNING : CHECK_OK, details,
              warning[0] ? warning : NULL);
}

/* Tables recorded as synced whose data the catalog does not hold (a state
 * restore into an empty DATA_DIR): the instance answers queries about them
 * with "no such table", so it is not "ok". */
static void check_table_data(health_report *report, http_context *ctx)
{
    json_t *tables = NULL, *missing = json_array();
    agnes_error err;
    if (ctx->analytics == NULL || sync_status_states(ctx, NULL, &tables, &err) != AGNES_OK) {
        json_decref(missing);
        return; /* the system_db check says why the state cannot be read */
    }
    size_t i;
    json_t *row;
    json_array_foreach(tables, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "state")), "missing") == 0)
            json_array_append(missing, json_object_get(row, "table_id"));
    }
    json_decref(tables);
    size_t count = json_array_size(missing);
    json_t *details = json_pack("{s:o}", "missing_tables", missing);
    if (count == 0) {
        add_check(report, "table_data", CHECK_OK, details, NULL);
        return;
    }
    char message[512];
    snprintf(message, sizeof message,
             "%zu registered table(s) have no data in DATA_DIR (first: %s); GET /api/sync/status says how to bring "
             "each back (re-upload an uploaded table, sync the others)",
             count, json_string_value(json_array_get(missing, 0)));
    add_check(report, "table_data", CHECK_WARNING, details, message);
}

unsigned health_build(http_context *ctx, json_t **out)
{
    agnes_runtime *rt = ctx->runtime;
    health_report report = {json_object(), json_array(), CHECK_OK};
    check_state_dir(&report, rt);
    int current = check_system_db(&report, ctx);
    check_secrets(&report, rt);
    check_disk_free(&report, rt);
    check_release(&report, rt);
    check_backup(&report, ctx);
    check_table_data(&report, ctx);
    const char *status = report.worst == CHECK_ERROR ? "unhealthy" : report.worst == CHECK_WARNING ? "degraded" : "ok";
    json_t *schema = json_pack("{s:i}", "expected", migrations_latest());
    json_object_set_new(schema, "current", current >= 0 ? json_integer(current) : json_null());
    *out = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "status", status, "version", rt->version.version, "channel",
                     rt->version.channel, "schema", schema, "checks", report.checks, "warnings", report.warnings);
    return report.worst == CHECK_ERROR ? 503 : 200;
}

int health_monitor_init(health_monitor *monitor, agnes_error *err)
{
    memset(monitor, 0, sizeof *monitor);
    if (pthread_mutex_init(&monitor->lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    return AGNES_OK;
}

/* What anyone may know: whether the instance is healthy, and which release runs. */
static json_t *public_view(const json_t *doc)
{
    return json_pack("{s:O, s:O, s:O}", "status", json_object_get(doc, "status"), "version",
                     json_object_get(doc, "version"), "channel", json_object_get(doc, "channel"));
}

/* A signed-in non-admin's view: the public one, the schema and each check's
 * status (the checks' details hold paths and byte counts; the warnings
 * quote them). */
static json_t *user_view(const json_t *doc)
{
    json_t *view = public_view(doc), *checks = json_object();
    const char *name;
    json_t *check;
    json_object_foreach((json_t *)json_object_get(doc, "checks"), name, check)
        json_object_set_new(checks, name, json_pack("{s:O}", "status", json_object_get(check, "status")));
    json_object_set(view, "schema", json_object_get(doc, "schema"));
    json_object_set_new(view, "checks", checks);
    return view;
}

void health_monitor_refresh(health_monitor *monitor, http_context *ctx)
{
    json_t *doc = NULL;
    unsigned code = health_build(ctx, &doc);
    json_t *shown = doc ? public_view(doc) : NULL;
    char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    char *public_body = shown ? json_dumps(shown, JSON_COMPACT) : NULL;
    json_decref(shown);
    json_decref(doc);
    if (body == NULL || public_body == NULL) {
        log_error("msg=\"cannot serialise the health document\"");
        free(body);
        free(public_body);
        return; /* keep publishing the previous answer */
    }
    pthread_mutex_lock(&monitor->lock);
    if (monitor->status_code != code)
        log_info("msg=\"health changed\" status_code=%u", code);
    free(monitor->body);
    free(monitor->public_body);
    monitor->body = body;
    monitor->body_len = strlen(body);
    monitor->public_body = public_body;
    monitor->public_body_len = strlen(public_body);
    monitor->status_code = code;
    pthread_mutex_unlock(&monitor->lock);
}

void health_monitor_free(health_monitor *monitor)
{
    free(monitor->body);
    free(monitor->public_body);
    pthread_mutex_destroy(&monitor->lock);
    memset(monitor, 0, sizeof *monitor);
}

/* A copy of the last published body (whole or public), or NULL. */
static char *published(health_monitor *monitor, bool whole, size_t *len, unsigned *code)
{
    pthread_mutex_lock(&monitor->lock);
    const char *body = whole ? monitor->body : monitor->public_body;
    *len = whole ? monitor->body_len : monitor->public_body_len;
    *code = monitor->status_code;
    char *copy = body ? malloc(*len + 1) : NULL;
    if (copy)
        memcpy(copy, body, *len + 1);
    pthread_mutex_unlock(&monitor->lock);
    return copy;
}

void health_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    /* The common caller (a load balancer) sends no credentials: it gets the
     * cached public body without a lookup. */
    auth_identity who;
    bool signed_in = auth_identify(ctx, req, &who);
    size_t len = 0;
    unsigned code = 0;
    char *copy = published(ctx->health, signed_in, &len, &code);
    if (copy == NULL) {
        http_respond_error(resp, 503, "Health is not known yet; retry in a moment.", NULL);
        return;
    }
    if (signed_in && !who.is_admin) {
        json_t *doc = json_loads(copy, 0, NULL);
        free(copy);
        if (doc == NULL) {
            http_respond_error(resp, 503, "Health is not known yet; retry in a moment.", NULL);
            return;
        }
        http_respond_json(resp, code, user_view(doc));
        json_decref(doc);
    } else {
        http_respond_raw(resp, code, "application/json", copy, len);
    }
    http_response_add_header(resp, "Cache-Control", "no-store");
    http_response_add_header(resp, "Vary", "Authorization, Cookie");
}

void version_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)req;
    const agnes_version *v = &ctx->runtime->version;
    char started_at[32];
    util_utc_iso(ctx->runtime->started_at, started_at);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "version", v->version, "channel",
                             v->channel, "commit_sha", v->commit_sha, "tag", v->tag, "image_tag", v->tag,
                             "schema_version", migrations_latest(), "built_at", v->built_at, "started_at", started_at,
                             "deployed_at", started_at);
    http_respond_json(resp, 200, body);
}

/* VmRSS and VmHWM of this process, in bytes. */
static json_t *memory_json(void)
{
    long long rss_kb = -1, peak_kb = -1;
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    while (status != NULL && fgets(line, sizeof line, status) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            rss_kb = atoll(line + 6);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            peak_kb = atoll(line + 6);
    }
    if (status != NULL)
        fclose(status);
    return json_pack("{s:I, s:I}", "rss_bytes", (json_int_t)(rss_kb * 1024), "peak_rss_bytes",
                     (json_int_t)(peak_kb * 1024));
}

static json_t *stale_tables(analytics_snapshot *snapshot, long long hours)
{
    duckdb_connection conn = NULL;
    json_t *rows = NULL;
    char text[32];
    const char *params[] = {text};
    agnes_error err;
    snprintf(text, sizeof text, "%lld", hours);
    if (duckdb_connect(snapshot->database, &conn) != DuckDBSuccess)
        return json_array();
    if (duck_query_json(conn,
                        "SELECT table_name AS id, source, extracted_at FROM agnes.tables"
                        " WHERE extracted_at < current_timestamp::TIMESTAMP - to_hours($1::BIGINT) ORDER BY 1",
                        params, 1, &rows, &err) != AGNES_OK)
        log_warn("msg=\"cannot list stale tables\" detail=\"%s\"", err.message);
    duckdb_disconnect(&conn);
    return rows ? rows : json_array();
}

/* Keep the items of `list` (objects) whose `key` names a table in ids. */
static json_t *only_visible(json_t *list, const char *key, const json_t *ids)
{
    json_t *kept = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item) {
        const char *name = json_string_value(json_object_get(item, key));
        if (name != NULL && catalog_id_visible(ids, name))
            json_array_append(kept, item);
    }
    json_decref(list);
    return kept;
}

/* The number of catalog tables among ids. */
static size_t visible_count(const json_t *tables, const json_t *ids)
{
    size_t i, count = 0;
    json_t *table;
    json_array_foreach(tables, i, table) {
        if (catalog_id_visible(ids, json_string_value(json_object_get(table, "id"))))
            count++;
    }
    return count;
}

/* What the last rebuild said, plus a warning per collision and per source
 * that did not publish cleanly: they must be visible, not only logged.
 * ids (catalog_visible_ids) limits it to what a non-admin may read: their
 * tables and the collisions over those names; sources are an operator's
 * business (NULL ids: admins, everything). */
static json_t *catalog_json(http_context *ctx, const json_t *ids, json_t *warnings)
{
    analytics_snapshot *snapshot = analytics_acquire(ctx->analytics);
    if (snapshot == NULL) {
        json_array_append_new(warnings, json_string("There is no catalog yet; POST /api/admin/rebuild builds it."));
        return json_pack("{s:b}", "built", false);
    }
    json_t *catalog = snapshot->rebuild ? json_deep_copy(snapshot->rebuild) : json_object();
    json_object_set_new(catalog, "built", json_true());
    json_object_set_new(catalog, "tables", json_integer((json_int_t)visible_count(snapshot->tables, ids)));
    if (ids != NULL) {
        json_object_del(catalog, "sources");
        json_object_del(catalog, "views"); /* how many there are in all is not theirs to know either */
        json_object_set_new(catalog, "collisions", only_visible(json_incref(json_object_get(catalog, "collisions")),
                                                                "view", ids));
    }
    long long hours = config_get_int(&ctx->runtime->config, CFG_HEALTH_STALE_AFTER_HOURS);
    json_t *stale = only_visible(stale_tables(snapshot, hours), "id", ids);
    if (json_array_size(stale) > 0)
        json_array_append_new(warnings, json_sprintf("%zu table(s) were extracted more than %lld hours ago; see "
                                                     "catalog.stale_tables.",
                                                     json_array_size(stale), hours));
    json_object_set_new(catalog, "stale_tables", stale);
    analytics_release(ctx->analytics, snapshot);
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(catalog, "collisions"), i, item)
        json_array_append_new(warnings,
                              json_sprintf("View '%s' of source '%s' is not published: source '%s' owns that name. "
                                           "Rename the table in one of the sources.",
                                           json_string_value(json_object_get(item, "view")),
                                           json_string_value(json_object_get(item, "skipped_source")),
                                           json_string_value(json_object_get(item, "owner"))));
    json_array_foreach(json_object_get(catalog, "sources"), i, item) {
        const char *status = json_string_value(json_object_get(item, "status"));
        const char *first_error = json_string_value(json_array_get(json_object_get(item, "errors"), 0));
        if (status != NULL && strcmp(status, "ok") != 0 && strcmp(status, "partial") != 0)
            json_array_append_new(warnings, json_sprintf("Source '%s' is %s: %s",
                                                         json_string_value(json_object_get(item, "name")), status,
                                                         first_error ? first_error : "see catalog.sources"));
    }
    return catalog;
}

void health_handle_detailed(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *doc = NULL, *ids = NULL;
    agnes_error err;
    if (catalog_visible_ids(ctx, req->identity, &ids, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return;
    }
    unsigned code = health_build(ctx, &doc);
    if (ids != NULL) { /* a non-admin: no paths, byte counts or warning texts of the server's own */
        json_t *view = user_view(doc);
        json_object_set_new(view, "warnings", json_array());
        json_decref(doc);
        doc = view;
    }
    json_t *warnings = json_object_get(doc, "warnings");
    size_t before = json_array_size(warnings);
    json_object_set_new(doc, "catalog", catalog_json(ctx, ids, warnings));
    json_decref(ids);
    if (json_array_size(warnings) > before && strcmp(json_string_value(json_object_get(doc, "status")), "ok") == 0)
        json_object_set_new(doc, "status", json_string("degraded"));
    json_object_set_new(doc, "uptime_seconds", json_integer((json_int_t)(util_unix_now() - ctx->runtime->started_at)));
    json_object_set_new(doc, "memory", memory_json());
    json_object_set_new(doc, "queries", json_pack("{s:I, s:I}", "running", (json_int_t)query_pool_running(ctx->queries),
                                                  "max", (json_int_t)ctx->queries->slot_count));
    http_respond_json(resp, code, doc);
    http_response_add_header(resp, "Cache-Control", "no-store");
}
