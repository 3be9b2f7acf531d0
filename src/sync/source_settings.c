#include "sync/source_settings.h"

#include <stdio.h>
#include <string.h>

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

int source_settings_type(agnes_runtime *rt, char *type, size_t type_size, agnes_error *err)
{
    agnes_config config;
    if (source_settings_current_config(rt, &config, err))
        return err->code;
    snprintf(type, type_size, "%s", config_get_string(&config, CFG_DATA_SOURCE));
    config_free(&config);
    return AGNES_OK;
}

int source_settings_load(agnes_runtime *rt, const char *type, connector_settings *out, agnes_error *err)
{
    agnes_config config;
    memset(out, 0, sizeof *out);
    if (strcmp(type, "postgres") != 0)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "source type '%s' has no built-in connector in this build",
                               type);
    if (source_settings_current_config(rt, &config, err))
        return err->code;
    snprintf(out->source, sizeof out->source, "%s", type);
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
