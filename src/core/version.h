/*
 * version.h - what build is running (SPEC §12).
 *
 * Version, channel and commit are baked in at build time by the Makefile
 * (`make VERSION=2026.11.1 CHANNEL=stable`); images may override them with
 * AGNES_VERSION / RELEASE_CHANNEL / AGNES_COMMIT_SHA / AGNES_TAG.
 */
#ifndef AGNES_CORE_VERSION_H
#define AGNES_CORE_VERSION_H

#include "core/config.h"

typedef struct agnes_version {
    char version[64];
    char channel[32];
    char commit_sha[64];
    char tag[128];
    char built_at[32];
} agnes_version;

/* The values compiled into this binary. */
void version_baked(agnes_version *out);

/* Baked values with the environment overrides applied. */
void version_resolve(agnes_version *out, const agnes_config *config);

#endif
