/*
 * config.h - the merged configuration (SPEC §4).
 *
 * Every setting is one row of a table (config.c): its YAML key, its
 * environment variable, its type and default.  Loading merges, lowest first:
 *
 *   built-in default < ${CONFIG_DIR}/instance.yaml < ${STATE_DIR}/instance.yaml
 *                    < ${STATE_DIR}/.env_overlay   < process environment
 *
 * and remembers where each value came from, so `agnes doctor` can answer
 * "why is it set to this?".  Values are validated while loading, so the
 * getters cannot fail: a wrong type stops the start with a message naming
 * key, file and line.  Unknown YAML keys are warnings, not errors, so a file
 * written for a newer version still starts an older binary.
 */
#ifndef AGNES_CORE_CONFIG_H
#define AGNES_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/env_overlay.h"
#include "core/error.h"
#include "core/paths.h"

enum config_key {
    CFG_INSTANCE_NAME,
    CFG_SERVER_LISTEN,
    CFG_SERVER_THREADS,
    CFG_SERVER_MAX_CONNECTIONS,
    CFG_SERVER_MAX_CONNECTIONS_PER_ADDRESS,
    CFG_SERVER_IDLE_TIMEOUT,
    CFG_SERVER_MAX_BODY_BYTES,
    CFG_SERVER_SHUTDOWN_GRACE,
    CFG_SERVER_DOMAIN,
    CFG_LOG_LEVEL,
    CFG_STATE_MOUNT,
    CFG_CHECKPOINT_INTERVAL,
    CFG_BACKUP_DIR,
    CFG_BACKUP_INTERVAL,
    CFG_BACKUP_KEEP,
    CFG_HEALTH_MIN_FREE_BYTES,
    CFG_HEALTH_STALE_AFTER_HOURS,
    CFG_JWT_SECRET,
    CFG_SESSION_SECRET,
    CFG_SESSION_HOURS,
    CFG_SEED_ADMIN_EMAIL,
    CFG_SEED_ADMIN_PASSWORD,
    CFG_SCHEDULER_TOKEN,
    CFG_AUTH_RATE_LIMIT,
    CFG_TRUST_PROXY,
    CFG_DEMO,
    CFG_CATALOG_WATCH_INTERVAL,
    CFG_SYNC_TIMEOUT,
    CFG_SCHEDULER,
    CFG_SYNC_DEFAULT_SCHEDULE,
    CFG_SYNC_RETRY_SECONDS,
    CFG_DATA_SOURCE,
    CFG_ALLOW_PRIVATE_SOURCES,
    CFG_PG_HOST,
    CFG_PG_PORT,
    CFG_PG_DATABASE,
    CFG_PG_USER,
    CFG_PG_SSLMODE,
    CFG_PG_DSN_ENV,
    CFG_PG_STATEMENT_TIMEOUT,
    CFG_KEBOOLA_STACK_URL,
    CFG_KEBOOLA_TOKEN_ENV,
    CFG_KEBOOLA_WINDOW_DAYS,
    CFG_KEBOOLA_PARALLEL_DOWNLOADS,
    CFG_KEBOOLA_EXPORT_TIMEOUT,
    CFG_KEBOOLA_STALL_SECONDS,
    CFG_OUTBOUND_CA_BUNDLE,
    CFG_OUTBOUND_CONNECT_TO,
    CFG_QUERY_TIMEOUT,
    CFG_QUERY_MAX_PER_USER,
    CFG_QUERY_MAX_CONCURRENT,
    CFG_QUERY_MEMORY_LIMIT,
    CFG_UPLOAD_MAX_BYTES,
    CFG_UPLOAD_SESSION_MAX_BYTES,
    CFG_RELEASE_INDEX,
    CFG_RELEASE_CHECK_INTERVAL,
    CFG_VERSION_OVERRIDE,
    CFG_CHANNEL_OVERRIDE,
    CFG_COMMIT_OVERRIDE,
    CFG_TAG_OVERRIDE,
    CFG_RESULT_MAX_ROWS,
    CFG_RESULT_MAX_CHARS,
    CFG_RESULT_TTL,
    CFG_RESULT_MAX_BYTES_PER_USER,
    CFG_RESULT_MAX_BYTES_TOTAL,
    CFG_RESULT_MIN_FREE_BYTES,
    CFG_MCP_ALLOWED_ORIGINS,
    CFG_MCP_MAX_BATCH,
    CFG_KEY_COUNT
};

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL, CONFIG_ENUM };

enum config_source {
    CONFIG_SOURCE_DEFAULT,
    CONFIG_SOURCE_CONFIG_FILE, /* ${CONFIG_DIR}/instance.yaml */
    CONFIG_SOURCE_STATE_FILE,  /* ${STATE_DIR}/instance.yaml */
    CONFIG_SOURCE_ENV_OVERLAY,
    CONFIG_SOURCE_ENV,
};

typedef struct config_key_spec {
    const char *yaml_key;    /* dotted path in instance.yaml; NULL = environment only */
    const char *env_name;    /* environment / .env_overlay variable */
    enum config_type type;
    const char *default_value;
    long long min, max;      /* CONFIG_INT range */
    const char *choices;     /* CONFIG_ENUM: "a|b|c" ("" allowed when listed as "|a") */
    bool secret;             /* redacted by doctor and never logged */
    const char *description;
} config_key_spec;

typedef struct config_value {
    char *text;                 /* validated textual value, never NULL after load */
    long long number;           /* parsed CONFIG_INT / CONFIG_BOOL */
    enum config_source source;
    char origin[AGNES_PATH_MAX + 64]; /* "file:line" or "env NAME" or "default" */
} config_value;

typedef struct agnes_config {
    config_value values[CFG_KEY_COUNT];
    char **warnings; /* unknown keys, unset ${VARS}: logged at start, shown by doctor */
    size_t warning_count;
} agnes_config;

const config_key_spec *config_spec(enum config_key key);

/* A printable name for a key: its YAML path, or its variable when env-only. */
const char *config_key_name(enum config_key key);

const char *config_source_name(enum config_source source);

/* Load and merge everything.  `overlay` may be empty; it is not kept. */
int config_load(agnes_config *config, const agnes_paths *paths, const env_overlay *overlay, agnes_error *err);

/* Merge one YAML document (exposed for tests and `agnes doctor`). */
int config_merge_yaml_text(agnes_config *config, const char *text, const char *file_label,
                           enum config_source source, const env_overlay *overlay, agnes_error *err);

/* Reset to defaults only. */
int config_init_defaults(agnes_config *config, agnes_error *err);

const char *config_get_string(const agnes_config *config, enum config_key key);
long long config_get_int(const agnes_config *config, enum config_key key);
bool config_get_bool(const agnes_config *config, enum config_key key);
/* True when the value is non-empty. */
bool config_is_set(const agnes_config *config, enum config_key key);

void config_free(agnes_config *config);

#endif
