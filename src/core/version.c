#include "core/version.h"

#include <stdio.h>

#ifndef AGNES_BUILD_VERSION
#define AGNES_BUILD_VERSION "dev"
#endif
#ifndef AGNES_BUILD_CHANNEL
#define AGNES_BUILD_CHANNEL "dev"
#endif
#ifndef AGNES_BUILD_COMMIT
#define AGNES_BUILD_COMMIT "unknown"
#endif
#ifndef AGNES_BUILD_TIME
#define AGNES_BUILD_TIME "unknown"
#endif

void version_baked(agnes_version *out)
{
    snprintf(out->version, sizeof out->version, "%s", AGNES_BUILD_VERSION);
    snprintf(out->channel, sizeof out->channel, "%s", AGNES_BUILD_CHANNEL);
    snprintf(out->commit_sha, sizeof out->commit_sha, "%s", AGNES_BUILD_COMMIT);
    snprintf(out->tag, sizeof out->tag, "%s", "unknown");
    snprintf(out->built_at, sizeof out->built_at, "%s", AGNES_BUILD_TIME);
}

static void override(char *field, size_t size, const agnes_config *config, enum config_key key)
{
    if (config_is_set(config, key))
        snprintf(field, size, "%s", config_get_string(config, key));
}

void version_resolve(agnes_version *out, const agnes_config *config)
{
    version_baked(out);
    override(out->version, sizeof out->version, config, CFG_VERSION_OVERRIDE);
    override(out->channel, sizeof out->channel, config, CFG_CHANNEL_OVERRIDE);
    override(out->commit_sha, sizeof out->commit_sha, config, CFG_COMMIT_OVERRIDE);
    override(out->tag, sizeof out->tag, config, CFG_TAG_OVERRIDE);
}
