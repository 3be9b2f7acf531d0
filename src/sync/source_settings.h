/*
 * source_settings.h - the configured data source, read fresh.
 *
 * POST /api/admin/configure rewrites ${STATE_DIR}/instance.yaml while the
 * server runs; the runtime's configuration was merged at start and is read
 * lock-free by every thread, so it is not patched in place.  Syncs and
 * discovery merge the configuration again here (a few files, cheap) and
 * take the secret from the credentials store.
 */
#ifndef AGNES_SYNC_SOURCE_SETTINGS_H
#define AGNES_SYNC_SOURCE_SETTINGS_H

#include "core/runtime.h"
#include "sync/connector.h"

/* The configuration files and .env_overlay merged as they are now (the
 * caller frees *config with config_free; untouched on error). */
int source_settings_current_config(agnes_runtime *rt, agnes_config *config, agnes_error *err);

/* data_source.type as configured now ("local" when unset). */
int source_settings_type(agnes_runtime *rt, char *type, size_t type_size, agnes_error *err);

/* Settings of built-in source `type`.  AGNES_ERR_CONFIG, naming the fix,
 * when its secret is not set. */
int source_settings_load(agnes_runtime *rt, const char *type, connector_settings *out, agnes_error *err);

#endif
