#include "sync/source_settings.h"

#include <stdio.h>
#include <string.h>

#include "core/credentials.h"

/* Merge the configuration files and .env_overlay as they are now. */
int source_settings_current_config(agnes_runtime *rt, agnes_config *config, agnes_error *err)
{
    env_overlay overlay = {0};
    char overlay_path[AGNES_PATH_MAX];
    memset(config, 0, sizeof *config);
    if (paths_state_file(&rt->paths, STATE_ENV_OVERLAY, overlay_path, sizeof overlay_path, err) ||
        env_overlay_load(&overlay, overlay_path, err))
        return err->code;
    int rc = config_load(config, &rt->paths, &overlay, err);
    env_overlay_free(&overlay);
    if (rc != AGNES_OK)
        config_free(config);
    return rc;
}

/* A server started with only KEBOOLA_STORAGE_TOKEN (+ KEBOOLA_STACK_URL)
 * set uses Keboola: the seed's "a .env with the token auto-discovers its
 * tables".  An explicit data_source.type always wins. */
static bool keboola_implied(agnes_runtime *rt, const agnes_config *config)
{
    char token[CONNECTOR_SECRET_MAX];
    bool implied = config->values[CFG_DATA_SOURCE].source == CONFIG_SOURCE_DEFAULT &&
                   config_is_set(config, CFG_KEBOOLA_STACK_URL) &&
                   credentials_get(&rt->credentials, config_get_string(config, CFG_KEBOOLA_TOKEN_ENV), token,
                                   sizeof token) &&
                   token[0] != '\0';
    explicit_bzero(token, sizeof token);
    return implied;
}

int source_settings_type(agnes_runtime *rt, char *type, size_t type_size, agnes_error *err)
{
    agnes_config config;
    if (source_settings_current_config(rt, &config, err))
        return err->code;
    snprintf(type, type_size, "%s", keboola_implied(rt, &config) ? "keboola" : config_get_string(&config, CFG_DATA_SOURCE));
    config_free(&config);
    return AGNES_OK;
}

static int load_keboola(agnes_runtime *rt, const agnes_config *config, connector_settings *out, agnes_error *err)
{
    snprintf(out->secret_env, sizeof out->secret_env, "%s", config_get_string(config, CFG_KEBOOLA_TOKEN_ENV));
    snprintf(out->url, sizeof out->url, "%s", config_get_string(config, CFG_KEBOOLA_STACK_URL));
    size_t len = strlen(out->url);
    while (len > 0 && out->url[len - 1] == '/') /* Storage takes both; joined paths must not get "//" */
        out->url[--len] = '\0';
    outbound_policy_from_config(config, &out->outbound);
    out->incremental_window_days = (int)config_get_int(config, CFG_KEBOOLA_WINDOW_DAYS);
    out->parallel_downloads = (int)config_get_int(config, CFG_KEBOOLA_PARALLEL_DOWNLOADS);
    out->export_timeout_seconds = (int)config_get_int(config, CFG_KEBOOLA_EXPORT_TIMEOUT);
    out->download_stall_seconds = (int)config_get_int(config, CFG_KEBOOLA_STALL_SECONDS);
    if (out->url[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "the Keboola source has no stack URL: set KEBOOLA_STACK_URL (e.g. "
                               "https://connection.keboola.com) or configure it with POST /api/admin/configure "
                               "{\"data_source\": \"keboola\", \"keboola_url\": \"...\", \"keboola_token\": \"...\"}");
    if (!credentials_get(&rt->credentials, out->secret_env, out->secret, sizeof out->secret) || out->secret[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "the Keboola source is not configured: %s is not set. Configure it with POST "
                               "/api/admin/configure {\"data_source\": \"keboola\", \"keboola_url\": \"...\", "
                               "\"keboola_token\": \"...\"} or set %s in the environment",
                               out->secret_env, out->secret_env);
    return AGNES_OK;
}

int source_settings_load(agnes_runtime *rt, const char *type, connector_settings *out, agnes_error *err)
{
    agnes_config config;
    memset(out, 0, sizeof *out);
    if (strcmp(type, "postgres") != 0 && strcmp(type, "keboola") != 0)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "source type '%s' has no built-in connector in this build",
                               type);
    if (source_settings_current_config(rt, &config, err))
        return err->code;
    snprintf(out->source, sizeof out->source, "%s", type);
    if (strcmp(type, "keboola") == 0) {
        int rc = load_keboola(rt, &config, out, err);
        config_free(&config);
        return rc;
    }
    snprintf(out->secret_env, sizeof out->secret_env, "%s", config_get_string(&config, CFG_PG_DSN_ENV));
    out->statement_timeout_seconds = (int)config_get_int(&config, CFG_PG_STATEMENT_TIMEOUT);
    config_free(&config);
    if (!credentials_get(&rt->credentials, out->secret_env, out->secret, sizeof out->secret))
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "the PostgreSQL source is not configured: %s is not set. Configure it with POST "
                               "/api/admin/configure {\"data_source\": \"postgres\", \"postgres_dsn\": \"...\"}",
                               out->secret_env);
    return AGNES_OK;
}
