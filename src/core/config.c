#include "core/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/log.h"
#include "core/util.h"

#define CONFIG_FILE_MAX_BYTES (4 * 1024 * 1024)

/* The table of every setting.  config/instance.yaml.example documents each
 * row; tests/unit/test_config.c fails if the two drift apart. */
static const config_key_spec specs[CFG_KEY_COUNT] = {
    [CFG_INSTANCE_NAME] = {"instance.name", "AGNES_INSTANCE_NAME", CONFIG_STRING, "Agnes", 0, 0, NULL, false,
                           "Display name of this instance"},
    [CFG_SERVER_LISTEN] = {"server.listen", "AGNES_LISTEN", CONFIG_STRING, "0.0.0.0:8000", 0, 0, NULL, false,
                           "Address and port the HTTP server binds (HOST:PORT)"},
    [CFG_SERVER_THREADS] = {"server.threads", "AGNES_THREADS", CONFIG_INT, "8", 1, 256, NULL, false,
                            "Event-loop worker threads of the HTTP server"},
    [CFG_SERVER_MAX_CONNECTIONS] = {"server.max_connections", "AGNES_MAX_CONNECTIONS", CONFIG_INT, "512", 4, 16384,
                                    NULL, false, "Open client connections the server accepts at once"},
    [CFG_SERVER_MAX_CONNECTIONS_PER_ADDRESS] = {"server.max_connections_per_address",
                                                "AGNES_MAX_CONNECTIONS_PER_ADDRESS", CONFIG_INT, "64", 0, 16384, NULL,
                                                false,
                                                "Connections one client address may hold (0 = no limit); behind "
                                                "server.trust_proxy, requests in flight per forwarded address"},
    [CFG_SERVER_IDLE_TIMEOUT] = {"server.idle_timeout_seconds", "AGNES_IDLE_TIMEOUT", CONFIG_INT, "15", 1, 3600, NULL,
                                 false,
                                 "A connection silent this long (mid-headers, mid-body or idle keep-alive) is closed"},
    [CFG_SERVER_MAX_BODY_BYTES] = {"server.max_body_bytes", "AGNES_MAX_BODY_BYTES", CONFIG_INT, "1048576", 1024,
                                   1073741824LL, NULL, false, "Largest request body accepted (413 above it)"},
    [CFG_SERVER_SHUTDOWN_GRACE] = {"server.shutdown_grace_seconds", "AGNES_SHUTDOWN_GRACE", CONFIG_INT, "30", 1,
                                   3600, NULL, false, "Seconds in-flight requests get to finish after SIGTERM"},
    [CFG_SERVER_DOMAIN] = {"server.domain", "DOMAIN", CONFIG_STRING, "", 0, 0, NULL, false,
                           "Public domain; when set, cookies are Secure"},
    [CFG_LOG_LEVEL] = {"server.log_level", "LOG_LEVEL", CONFIG_ENUM, "info", 0, 0, "debug|info|warn|error", false,
                       "Minimum level written to the log"},
    [CFG_STATE_MOUNT] = {"storage.state_mount", "AGNES_STATE_MOUNT", CONFIG_ENUM, "", 0, 0, "|optional|required",
                         false, "'required' refuses to start unless STATE_DIR is its own mount point"},
    [CFG_CHECKPOINT_INTERVAL] = {"storage.checkpoint_interval_seconds", "AGNES_CHECKPOINT_INTERVAL", CONFIG_INT,
                                 "300", 1, 86400, NULL, false, "Seconds between CHECKPOINTs of system.duckdb"},
    [CFG_BACKUP_DIR] = {"backup.dir", "AGNES_BACKUP_DIR", CONFIG_STRING, "", 0, 0, NULL, false,
                        "Directory agnes serve writes scheduled backups of the state tier to (empty: no schedule)"},
    [CFG_BACKUP_INTERVAL] = {"backup.interval_seconds", "AGNES_BACKUP_INTERVAL", CONFIG_INT, "86400", 1, 31536000,
                             NULL, false, "Seconds between scheduled backups; health warns after two intervals"},
    [CFG_BACKUP_KEEP] = {"backup.keep", "AGNES_BACKUP_KEEP", CONFIG_INT, "7", 1, 100000, NULL, false,
                         "Scheduled backups kept in AGNES_BACKUP_DIR; older ones are deleted"},
    [CFG_HEALTH_MIN_FREE_BYTES] = {"health.min_free_bytes", "AGNES_MIN_FREE_BYTES", CONFIG_INT, "1073741824", 0,
                                   (1LL << 62), NULL, false,
                                   "Free space below this on DATA_DIR or STATE_DIR makes health degraded"},
    [CFG_HEALTH_STALE_AFTER_HOURS] = {"health.stale_after_hours", "AGNES_STALE_AFTER_HOURS", CONFIG_INT, "48", 1,
                                      87600, NULL, false,
                                      "Tables extracted longer ago are listed as stale in /api/health/detailed"},
    [CFG_JWT_SECRET] = {"auth.jwt_secret_key", "JWT_SECRET_KEY", CONFIG_STRING, "", 0, 0, NULL, true,
                        "JWT signing key; generated into STATE_DIR/.jwt_secret when unset"},
    [CFG_SESSION_SECRET] = {"auth.session_secret", "SESSION_SECRET", CONFIG_STRING, "", 0, 0, NULL, true,
                            "Session signing key; generated into STATE_DIR/.session_secret when unset"},
    [CFG_SESSION_HOURS] = {"auth.session_hours", "AGNES_SESSION_HOURS", CONFIG_INT, "24", 1, 8760, NULL, false,
                           "Lifetime of a login session token, in hours"},
    [CFG_SEED_ADMIN_EMAIL] = {NULL, "SEED_ADMIN_EMAIL", CONFIG_STRING, "", 0, 0, NULL, false,
                              "Create this admin at start if missing (headless first admin)"},
    [CFG_SEED_ADMIN_PASSWORD] = {NULL, "SEED_ADMIN_PASSWORD", CONFIG_STRING, "", 0, 0, NULL, true,
                                 "Password for SEED_ADMIN_EMAIL (at least 12 characters); set only if it has none"},
    [CFG_SCHEDULER_TOKEN] = {NULL, "SCHEDULER_API_TOKEN", CONFIG_STRING, "", 0, 0, NULL, true,
                             "Shared secret (>= 32 chars) a scheduler sidecar sends as its bearer token"},
    [CFG_AUTH_RATE_LIMIT] = {"auth.rate_limit_per_minute", "AGNES_AUTH_RATE_LIMIT", CONFIG_INT, "10", 0, 100000, NULL,
                             false, "Requests per minute one client address may make to /auth/ (0 = no limit)"},
    [CFG_TRUST_PROXY] = {"server.trust_proxy", "AGNES_TRUST_PROXY", CONFIG_BOOL, "false", 0, 0, NULL, false,
                         "Take the client address from X-Forwarded-For (only behind your own reverse proxy)"},
    [CFG_DEMO] = {"demo.enabled", "AGNES_DEMO", CONFIG_BOOL, "false", 0, 0, NULL, false,
                  "Seed a small demo source into an empty DATA_DIR at start (make run turns it on)"},
    [CFG_CATALOG_WATCH_INTERVAL] = {"catalog.watch_interval_seconds", "AGNES_CATALOG_WATCH", CONFIG_INT, "10", 0,
                                    86400, NULL, false,
                                    "Seconds between checks for changed extracts (rebuilds when one changed; 0 = off)"},
    [CFG_SYNC_TIMEOUT] = {"sync.timeout_seconds", "AGNES_SYNC_TIMEOUT", CONFIG_INT, "1800", 1, 604800, NULL, false,
                          "Longest one connector may run before it is stopped and its tables marked failed"},
    [CFG_SCHEDULER] = {"sync.scheduler", "AGNES_SCHEDULER", CONFIG_BOOL, "true", 0, 0, NULL, false,
                       "Run scheduled syncs inside agnes serve (off: an outside scheduler calls the API)"},
    [CFG_SYNC_DEFAULT_SCHEDULE] = {"sync.default_schedule", "AGNES_SYNC_DEFAULT_SCHEDULE", CONFIG_STRING, "", 0, 0,
                                   NULL, false, "Schedule for registered tables without one (empty: trigger only)"},
    [CFG_SYNC_RETRY_SECONDS] = {"sync.retry_seconds", "AGNES_SYNC_RETRY_SECONDS", CONFIG_INT, "60", 1, 86400, NULL,
                                false, "First wait before a failed scheduled sync is tried again (doubles per failure, "
                                       "at most 1 h)"},
    [CFG_DATA_SOURCE] = {"data_source.type", "DATA_SOURCE", CONFIG_ENUM, "local", 0, 0,
                         "local|postgres|keboola|bigquery|jira", false,
                         "The instance's data source (POST /api/admin/configure sets it)"},
    [CFG_ALLOW_PRIVATE_SOURCES] = {NULL, "AGNES_ALLOW_PRIVATE_SOURCES", CONFIG_BOOL, "false", 0, 0, NULL, false,
                                   "Let configured sources point at private or loopback addresses (tests, LANs)"},
    [CFG_PG_HOST] = {"data_source.postgres.host", "AGNES_PG_HOST", CONFIG_STRING, "", 0, 0, NULL, false,
                     "PostgreSQL source: host name (shown; the connection uses the secret DSN)"},
    [CFG_PG_PORT] = {"data_source.postgres.port", "AGNES_PG_PORT", CONFIG_INT, "5432", 1, 65535, NULL, false,
                     "PostgreSQL source: port"},
    [CFG_PG_DATABASE] = {"data_source.postgres.database", "AGNES_PG_DATABASE", CONFIG_STRING, "", 0, 0, NULL, false,
                         "PostgreSQL source: database name"},
    [CFG_PG_USER] = {"data_source.postgres.user", "AGNES_PG_USER", CONFIG_STRING, "", 0, 0, NULL, false,
                     "PostgreSQL source: user name"},
    [CFG_PG_SSLMODE] = {"data_source.postgres.sslmode", "AGNES_PG_SSLMODE", CONFIG_ENUM, "prefer", 0, 0,
                        "disable|allow|prefer|require|verify-ca|verify-full", false, "PostgreSQL source: sslmode"},
    [CFG_PG_DSN_ENV] = {"data_source.postgres.dsn_env", "AGNES_PG_DSN_ENV", CONFIG_STRING, "POSTGRES_DSN", 0, 0, NULL,
                        false, "Name of the variable that holds the PostgreSQL connection string (a secret)"},
    [CFG_PG_STATEMENT_TIMEOUT] = {"data_source.postgres.statement_timeout_seconds", "AGNES_PG_STATEMENT_TIMEOUT",
                                  CONFIG_INT, "600", 1, 86400, NULL, false,
                                  "Longest one PostgreSQL statement of a sync may run"},
    [CFG_KEBOOLA_STACK_URL] = {"data_source.keboola.stack_url", "KEBOOLA_STACK_URL", CONFIG_STRING, "", 0, 0, NULL,
                               false, "Keboola source: the stack's https URL (e.g. https://connection.keboola.com)"},
    [CFG_KEBOOLA_TOKEN_ENV] = {"data_source.keboola.token_env", "AGNES_KEBOOLA_TOKEN_ENV", CONFIG_STRING,
                               "KEBOOLA_STORAGE_TOKEN", 0, 0, NULL, false,
                               "Name of the variable that holds the Keboola Storage API token (a secret)"},
    [CFG_KEBOOLA_WINDOW_DAYS] = {"data_source.keboola.incremental_window_days", "AGNES_KEBOOLA_WINDOW_DAYS",
                                 CONFIG_INT, "7", 0, 3650, NULL, false,
                                 "Incremental Keboola tables ask for rows changed since the last good sync minus "
                                 "this many days"},
    [CFG_KEBOOLA_PARALLEL_DOWNLOADS] = {"data_source.keboola.parallel_downloads", "AGNES_KEBOOLA_PARALLEL_DOWNLOADS",
                                        CONFIG_INT, "4", 1, 64, NULL, false,
                                        "Slices of one Keboola export downloaded at once"},
    [CFG_KEBOOLA_EXPORT_TIMEOUT] = {"data_source.keboola.export_timeout_seconds", "AGNES_KEBOOLA_EXPORT_TIMEOUT",
                                    CONFIG_INT, "1800", 10, 86400, NULL, false,
                                    "Longest wait for one Keboola export job to finish"},
    [CFG_KEBOOLA_STALL_SECONDS] = {"data_source.keboola.download_stall_seconds", "AGNES_KEBOOLA_STALL_SECONDS",
                                   CONFIG_INT, "60", 1, 3600, NULL, false,
                                   "A slice download that receives nothing for this long is restarted"},
    [CFG_OUTBOUND_CA_BUNDLE] = {"network.ca_bundle", "AGNES_CA_BUNDLE", CONFIG_STRING, "", 0, 0, NULL, false,
                                "PEM file of extra CA certificates connectors trust for HTTPS (private or corporate "
                                "CAs), besides the system store"},
    [CFG_OUTBOUND_CONNECT_TO] = {"network.connect_to", "AGNES_CONNECT_TO", CONFIG_STRING, "", 0, 0, NULL, false,
                                 "Connectors send HOST:PORT to another address, certificate still checked for HOST "
                                 "(curl --connect-to; HOST:PORT:TO_HOST:TO_PORT, comma-separated)"},
    [CFG_QUERY_TIMEOUT] = {"query.timeout_seconds", "AGNES_QUERY_TIMEOUT", CONFIG_INT, "30", 1, 86400, NULL, false,
                           "Longest a /api/query response may take, streaming included (408 beyond)"},
    [CFG_QUERY_MAX_PER_USER] = {"query.max_concurrent_per_user", "AGNES_QUERY_MAX_PER_USER", CONFIG_INT, "3", 1, 256,
                                NULL, false, "Queries one user may run at once (429 beyond)"},
    [CFG_QUERY_MAX_CONCURRENT] = {"query.max_concurrent", "AGNES_QUERY_MAX_CONCURRENT", CONFIG_INT, "8", 1, 1024,
                                  NULL, false, "Queries the server runs at once across all users (others wait 5 s, then 429)"},
    [CFG_QUERY_MEMORY_LIMIT] = {"query.memory_limit", "AGNES_QUERY_MEMORY_LIMIT", CONFIG_STRING, "2GB", 0, 0, NULL,
                                false, "Memory of one query (e.g. 512MB, 4GB); its worker process is stopped at this + 512 MB"},
    [CFG_RESULT_MAX_ROWS] = {"results.max_rows", "AGNES_RESULT_MAX_ROWS", CONFIG_INT, "200", 1, 100000, NULL, false,
                             "Rows an MCP query or result page returns inline by default; more become a handle"},
    [CFG_RESULT_MAX_CHARS] = {"results.max_chars", "AGNES_RESULT_MAX_CHARS", CONFIG_INT, "20000", 100, 10000000, NULL,
                              false, "Characters of row JSON a query or result page returns inline by default"},
    [CFG_RESULT_TTL] = {"results.ttl_seconds", "AGNES_RESULT_TTL", CONFIG_INT, "3600", 60, 604800, NULL, false,
                        "How long a result handle (the full result, as Parquet) is kept"},
    [CFG_RESULT_MAX_BYTES_PER_USER] = {"results.max_bytes_per_user", "AGNES_RESULT_MAX_BYTES_PER_USER", CONFIG_INT,
                                       "2147483648", 1048576, (1LL << 40), NULL, false,
                                       "Disk the result handles of one user may take; the oldest go first"},
    [CFG_RESULT_MAX_BYTES_TOTAL] = {"results.max_bytes_total", "AGNES_RESULT_MAX_BYTES_TOTAL", CONFIG_INT,
                                    "21474836480", 0, (1LL << 50), NULL, false,
                                    "Disk all users' result handles may take together; a result that would pass it "
                                    "is stopped (503); 0: no total"},
    [CFG_RESULT_MIN_FREE_BYTES] = {"results.min_free_bytes", "AGNES_RESULT_MIN_FREE_BYTES", CONFIG_INT, "268435456",
                                   0, (1LL << 50), NULL, false,
                                   "Free disk a result write always leaves on DATA_DIR's disk; it is stopped "
                                   "before (503); 0: no floor"},
    [CFG_MCP_ALLOWED_ORIGINS] = {"mcp.allowed_origins", "AGNES_MCP_ALLOWED_ORIGINS", CONFIG_STRING, "", 0, 0, NULL,
                                 false, "Comma-separated browser origins /mcp accepts besides DOMAIN and loopback"},
    [CFG_MCP_MAX_BATCH] = {"mcp.max_batch", "AGNES_MCP_MAX_BATCH", CONFIG_INT, "16", 1, 1000, NULL, false,
                           "Messages one /mcp JSON-RPC batch may hold; the batch also stops starting calls after "
                           "query.timeout_seconds"},
    [CFG_UPLOAD_MAX_BYTES] = {"upload.max_bytes", "AGNES_UPLOAD_MAX_BYTES", CONFIG_INT, "1073741824", 1,
                              (1LL << 40), NULL, false, "Largest file POST /api/upload/tables accepts (413 beyond)"},
    [CFG_UPLOAD_SESSION_MAX_BYTES] = {"upload.max_session_bytes", "AGNES_UPLOAD_SESSION_MAX_BYTES", CONFIG_INT,
                                      "20971520", 1, (1LL << 30), NULL, false,
                                      "Largest session log or note POST /api/upload/sessions accepts (413 beyond)"},
    [CFG_RELEASE_INDEX] = {"release.index", "AGNES_RELEASE_INDEX", CONFIG_STRING, "", 0, 0, NULL, false,
                           "File path or http(s) URL of the release index that lists deprecated versions"},
    [CFG_RELEASE_CHECK_INTERVAL] = {"release.check_interval_seconds", "AGNES_RELEASE_CHECK_INTERVAL", CONFIG_INT,
                                    "86400", 10, 604800, NULL, false, "Seconds between release index reads"},
    [CFG_VERSION_OVERRIDE] = {NULL, "AGNES_VERSION", CONFIG_STRING, "", 0, 0, NULL, false,
                              "Overrides the version baked at build (images set it)"},
    [CFG_CHANNEL_OVERRIDE] = {NULL, "RELEASE_CHANNEL", CONFIG_STRING, "", 0, 0, NULL, false,
                              "Overrides the release channel baked at build"},
    [CFG_COMMIT_OVERRIDE] = {NULL, "AGNES_COMMIT_SHA", CONFIG_STRING, "", 0, 0, NULL, false,
                             "Overrides the commit baked at build"},
    [CFG_TAG_OVERRIDE] = {NULL, "AGNES_TAG", CONFIG_STRING, "", 0, 0, NULL, false, "Image tag this instance runs"},
};

const config_key_spec *config_spec(enum config_key key)
{
    return &specs[key];
}

const char *config_key_name(enum config_key key)
{
    return specs[key].yaml_key ? specs[key].yaml_key : specs[key].env_name;
}

const char *config_source_name(enum config_source source)
{
    switch (source) {
    case CONFIG_SOURCE_DEFAULT: return "default";
    case CONFIG_SOURCE_CONFIG_FILE: return "config_file";
    case CONFIG_SOURCE_STATE_FILE: return "state_file";
    case CONFIG_SOURCE_ENV_OVERLAY: return "env_overlay";
    case CONFIG_SOURCE_ENV: return "env";
    }
    return "unknown";
}

static int add_warning(agnes_config *config, agnes_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int add_warning(agnes_config *config, agnes_error *err, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char **grown = realloc(config->warnings, (config->warning_count + 1) * sizeof *grown);
    if (grown == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory loading configuration");
    config->warnings = grown;
    if ((grown[config->warning_count] = util_strdup(text)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory loading configuration");
    config->warning_count++;
    return AGNES_OK;
}

static bool enum_allows(const char *choices, const char *value)
{
    const char *p = choices;
    size_t len = strlen(value);
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return true;
        if (bar == NULL)
            return false;
        p = bar + 1;
    }
}

/* "|optional|required" -> "empty, optional, required" for messages. */
static void describe_choices(const char *choices, char *out, size_t out_size)
{
    size_t n = 0;
    out[0] = '\0';
    for (const char *p = choices;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        int wrote = snprintf(out + n, out_size - n, "%s%.*s", n ? ", " : "", len ? (int)len : 5,
                             len ? p : "empty");
        if (wrote < 0 || (size_t)wrote >= out_size - n)
            return;
        n += (size_t)wrote;
        if (bar == NULL)
            return;
        p = bar + 1;
    }
}

static bool parse_bool(const char *text, long long *out)
{
    static const char *const truthy[] = {"true", "yes", "on", "1"};
    static const char *const falsy[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, truthy[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(text, falsy[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    return false;
}

/* Validate `text` for key and store it with its origin. */
static int set_value(agnes_config *config, enum config_key key, const char *text, enum config_source source,
                     const char *origin, agnes_error *err)
{
    const config_key_spec *spec = &specs[key];
    long long number = 0;
    switch (spec->type) {
    case CONFIG_STRING:
        break;
    case CONFIG_INT:
        if (!util_parse_long(text, &number) || number < spec->min || number > spec->max)
            return agnes_error_set(err, AGNES_ERR_CONFIG,
                                   "configuration key %s must be a whole number from %lld to %lld, got \"%s\" "
                                   "(%s); fix the value there",
                                   config_key_name(key), spec->min, spec->max, text, origin);
        break;
    case CONFIG_BOOL:
        if (!parse_bool(text, &number))
            return agnes_error_set(err, AGNES_ERR_CONFIG,
                                   "configuration key %s must be true or false, got \"%s\" (%s); fix the value there",
                                   config_key_name(key), text, origin);
        break;
    case CONFIG_ENUM:
        if (!enum_allows(spec->choices, text)) {
            char readable[256];
            describe_choices(spec->choices, readable, sizeof readable);
            return agnes_error_set(err, AGNES_ERR_CONFIG,
                                   "configuration key %s must be one of %s, got \"%s\" (%s); fix the value there",
                                   config_key_name(key), readable, text, origin);
        }
        break;
    }
    char *copy = util_strdup(text);
    if (copy == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory loading configuration");
    config_value *v = &config->values[key];
    free(v->text);
    v->text = copy;
    v->number = number;
    v->source = source;
    snprintf(v->origin, sizeof v->origin, "%s", origin);
    return AGNES_OK;
}

int config_init_defaults(agnes_config *config, agnes_error *err)
{
    memset(config, 0, sizeof *config);
    for (int k = 0; k < CFG_KEY_COUNT; k++)
        if (set_value(config, (enum config_key)k, specs[k].default_value, CONFIG_SOURCE_DEFAULT, "default", err))
            return err->code;
    return AGNES_OK;
}

static const char *lookup_variable(const char *name, const env_overlay *overlay)
{
    const char *value = getenv(name);
    if (value == NULL && overlay != NULL)
        value = env_overlay_get(overlay, name);
    return value;
}

/* Expand ${VAR} from the environment (then the overlay).  An unset variable
 * becomes "" with a warning naming it, as the original did. */
static int expand_variables(agnes_config *config, const char *in, const char *origin, const env_overlay *overlay,
                            char *out, size_t out_size, agnes_error *err)
{
    size_t n = 0;
    for (const char *p = in; *p;) {
        const char *close = (p[0] == '$' && p[1] == '{') ? strchr(p, '}') : NULL;
        const char *piece = p;
        size_t piece_len = 1;
        char name[256];
        if (close != NULL && (size_t)(close - p - 2) < sizeof name) {
            memcpy(name, p + 2, (size_t)(close - p - 2));
            name[close - p - 2] = '\0';
            piece = lookup_variable(name, overlay);
            if (piece == NULL) {
                if (add_warning(config, err, "%s: ${%s} is not set; using an empty value", origin, name))
                    return err->code;
                piece = "";
            }
            piece_len = strlen(piece);
            p = close + 1;
        } else {
            p++;
        }
        if (n + piece_len >= out_size)
            return agnes_error_set(err, AGNES_ERR_CONFIG, "%s: value is longer than %zu bytes", origin, out_size);
        memcpy(out + n, piece, piece_len);
        n += piece_len;
    }
    out[n] = '\0';
    return AGNES_OK;
}

static int find_key_by_yaml(const char *dotted)
{
    for (int k = 0; k < CFG_KEY_COUNT; k++)
        if (specs[k].yaml_key && strcmp(specs[k].yaml_key, dotted) == 0)
            return k;
    return -1;
}

/* True when some known key lives below `prefix.` (so the mapping is expected). */
static bool is_known_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (int k = 0; k < CFG_KEY_COUNT; k++)
        if (specs[k].yaml_key && strncmp(specs[k].yaml_key, prefix, n) == 0 && specs[k].yaml_key[n] == '.')
            return true;
    return false;
}

typedef struct yaml_walk {
    agnes_config *config;
    yaml_document_t *doc;
    const char *file_label;
    enum config_source source;
    const env_overlay *overlay;
    agnes_error *err;
} yaml_walk;

static int walk_node(yaml_walk *w, yaml_node_t *node, const char *path);

static int walk_leaf(yaml_walk *w, yaml_node_t *node, const char *path)
{
    char origin[AGNES_PATH_MAX + 64];
    snprintf(origin, sizeof origin, "%s line %lu", w->file_label, (unsigned long)node->start_mark.line + 1);
    int key = find_key_by_yaml(path);
    if (key < 0)
        return add_warning(w->config, w->err, "%s: unknown key '%s' ignored; see config/instance.yaml.example",
                           origin, path);
    if (node->type != YAML_SCALAR_NODE)
        return agnes_error_set(w->err, AGNES_ERR_CONFIG,
                               "configuration key %s must be a single value, not a list or mapping (%s)", path,
                               origin);
    char expanded[8192];
    if (expand_variables(w->config, (const char *)node->data.scalar.value, origin, w->overlay, expanded,
                         sizeof expanded, w->err))
        return w->err->code;
    return set_value(w->config, (enum config_key)key, expanded, w->source, origin, w->err);
}

static int walk_mapping(yaml_walk *w, yaml_node_t *node, const char *path)
{
    for (yaml_node_pair_t *pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = yaml_document_get_node(w->doc, pair->key);
        yaml_node_t *value = yaml_document_get_node(w->doc, pair->value);
        if (key == NULL || value == NULL || key->type != YAML_SCALAR_NODE)
            return agnes_error_set(w->err, AGNES_ERR_CONFIG, "%s line %lu: mapping keys must be plain names",
                                   w->file_label, key ? (unsigned long)key->start_mark.line + 1 : 0UL);
        char child[512];
        int n = snprintf(child, sizeof child, "%s%s%s", path, path[0] ? "." : "", (const char *)key->data.scalar.value);
        if (n < 0 || (size_t)n >= sizeof child)
            return agnes_error_set(w->err, AGNES_ERR_CONFIG, "%s line %lu: key path is too long", w->file_label,
                                   (unsigned long)key->start_mark.line + 1);
        if (walk_node(w, value, child))
            return w->err->code;
    }
    return AGNES_OK;
}

static int walk_node(yaml_walk *w, yaml_node_t *node, const char *path)
{
    if (node->type == YAML_MAPPING_NODE && (path[0] == '\0' || is_known_section(path)))
        return walk_mapping(w, node, path);
    if (node->type == YAML_MAPPING_NODE && find_key_by_yaml(path) < 0) {
        char origin[AGNES_PATH_MAX + 64];
        snprintf(origin, sizeof origin, "%s line %lu", w->file_label, (unsigned long)node->start_mark.line + 1);
        return add_warning(w->config, w->err, "%s: unknown section '%s' ignored; see config/instance.yaml.example",
                           origin, path);
    }
    return walk_leaf(w, node, path);
}

int config_merge_yaml_text(agnes_config *config, const char *text, const char *file_label,
                           enum config_source source, const env_overlay *overlay, agnes_error *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory starting the YAML parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int rc = AGNES_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = agnes_error_set(err, AGNES_ERR_CONFIG, "%s line %lu: invalid YAML: %s; fix the syntax there",
                             file_label, (unsigned long)parser.problem_mark.line + 1,
                             parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root != NULL && root->type == YAML_MAPPING_NODE) {
        yaml_walk w = {config, &doc, file_label, source, overlay, err};
        rc = walk_node(&w, root, "");
    } else if (root != NULL && !(root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        rc = agnes_error_set(err, AGNES_ERR_CONFIG, "%s: the top level must be a mapping of keys (key: value)",
                             file_label);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int merge_yaml_file(agnes_config *config, const char *path, enum config_source source,
                           const env_overlay *overlay, agnes_error *err)
{
    char *text = NULL;
    int rc = util_read_file(path, CONFIG_FILE_MAX_BYTES, &text, NULL, err);
    if (rc == AGNES_ERR_NOT_FOUND) {
        agnes_error_clear(err);
        return AGNES_OK; /* both files are optional */
    }
    if (rc != AGNES_OK)
        return rc;
    rc = config_merge_yaml_text(config, text, path, source, overlay, err);
    free(text);
    return rc;
}

static int merge_variables(agnes_config *config, const env_overlay *overlay, agnes_error *err)
{
    for (int k = 0; k < CFG_KEY_COUNT; k++) {
        char origin[128];
        const char *value = overlay ? env_overlay_get(overlay, specs[k].env_name) : NULL;
        if (value != NULL) {
            snprintf(origin, sizeof origin, "variable %s in .env_overlay", specs[k].env_name);
            if (set_value(config, (enum config_key)k, value, CONFIG_SOURCE_ENV_OVERLAY, origin, err))
                return err->code;
        }
        value = getenv(specs[k].env_name);
        if (value != NULL && value[0] != '\0') {
            snprintf(origin, sizeof origin, "environment variable %s", specs[k].env_name);
            if (set_value(config, (enum config_key)k, value, CONFIG_SOURCE_ENV, origin, err))
                return err->code;
        }
    }
    return AGNES_OK;
}

int config_load(agnes_config *config, const agnes_paths *paths, const env_overlay *overlay, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    if (config_init_defaults(config, err))
        goto fail;
    if (util_path_join(path, sizeof path, paths->config_dir, "instance.yaml", err) ||
        merge_yaml_file(config, path, CONFIG_SOURCE_CONFIG_FILE, overlay, err))
        goto fail;
    if (paths_state_file(paths, STATE_INSTANCE_YAML, path, sizeof path, err) ||
        merge_yaml_file(config, path, CONFIG_SOURCE_STATE_FILE, overlay, err))
        goto fail;
    if (merge_variables(config, overlay, err))
        goto fail;
    return AGNES_OK;
fail:
    config_free(config);
    return err->code;
}

const char *config_get_string(const agnes_config *config, enum config_key key)
{
    return config->values[key].text;
}

long long config_get_int(const agnes_config *config, enum config_key key)
{
    return config->values[key].number;
}

bool config_get_bool(const agnes_config *config, enum config_key key)
{
    return config->values[key].number != 0;
}

bool config_is_set(const agnes_config *config, enum config_key key)
{
    return config->values[key].text != NULL && config->values[key].text[0] != '\0';
}

void config_free(agnes_config *config)
{
    for (int k = 0; k < CFG_KEY_COUNT; k++) {
        free(config->values[k].text);
        config->values[k].text = NULL;
    }
    for (size_t i = 0; i < config->warning_count; i++)
        free(config->warnings[i]);
    free(config->warnings);
    config->warnings = NULL;
    config->warning_count = 0;
}
