/*
 * env_overlay.h - ${STATE_DIR}/.env_overlay: KEY=VALUE lines written by the
 * admin API and read at start.  It is parsed here, never sourced by a shell,
 * so a value can hold `$(...)` or quotes without running anything.  The real
 * process environment always wins over it (see config.h for the order).
 */
#ifndef AGNES_CORE_ENV_OVERLAY_H
#define AGNES_CORE_ENV_OVERLAY_H

#include <stddef.h>

#include "core/error.h"

typedef struct env_overlay_entry {
    char *key;
    char *value;
    int line;
} env_overlay_entry;

typedef struct env_overlay {
    env_overlay_entry *entries;
    size_t count;
} env_overlay;

/* Parse the file at path.  A missing file is an empty overlay, not an error.
 * Malformed lines are skipped with a warning naming file and line; a file
 * that cannot be read is an error (we must not start with half the
 * operator's settings). */
int env_overlay_load(env_overlay *overlay, const char *path, agnes_error *err);

/* Parse from a buffer (path is used in warnings only). */
int env_overlay_parse(env_overlay *overlay, const char *text, const char *path, agnes_error *err);

/* The value for key, or NULL.  Later lines win over earlier ones. */
const char *env_overlay_get(const env_overlay *overlay, const char *key);

void env_overlay_free(env_overlay *overlay);

/* Set key in the file at path (other lines kept, earlier lines for key
 * dropped), written atomically with mode 0600.  The value is quoted so it
 * reads back exactly; a newline in it is AGNES_ERR_INVALID.  The caller
 * serialises writers (POST /api/admin/configure holds a lock). */
int env_overlay_file_set(const char *path, const char *key, const char *value, agnes_error *err);

#endif
