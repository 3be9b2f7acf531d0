/*
 * runtime.h - the one process-wide struct: where things are, what is
 * configured, which build runs.  Created once in main before any thread
 * starts and passed down explicitly; there are no other globals apart from
 * the log level.
 *
 * Two stages, so read-only commands (`agnes doctor`) never write:
 *   runtime_load()          paths, .env_overlay, configuration, version
 *   runtime_prepare_state() creates directories, runs the shadow-mount
 *                           guard, sets the umask to 077, closes the state
 *                           tier to its owner (paths_secure_state), loads
 *                           or generates the secrets
 */
#ifndef AGNES_CORE_RUNTIME_H
#define AGNES_CORE_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/credentials.h"
#include "core/env_overlay.h"
#include "core/error.h"
#include "core/paths.h"
#include "core/release_index.h"
#include "core/secrets.h"
#include "core/version.h"

typedef struct agnes_runtime {
    agnes_paths paths;
    env_overlay overlay;
    agnes_config config;
    credentials credentials; /* secrets set while running (POST /api/admin/configure) */
    agnes_secrets secrets;
    agnes_version version;
    int64_t started_at;
    /* Updated by the release check, read by health: guarded by release_lock. */
    pthread_mutex_t release_lock;
    release_status release;
    /* The check runs on its own thread so a slow index URL never delays the
     * start or the server's tick.  release_generation counts finished checks. */
    pthread_t release_thread;
    bool release_thread_started;
    atomic_bool release_check_running;
    atomic_uint release_generation;
} agnes_runtime;

int runtime_load(agnes_runtime *rt, agnes_error *err);
int runtime_prepare_state(agnes_runtime *rt, agnes_error *err);

/* Re-read the release index now and store the result (thread-safe, blocking). */
void runtime_refresh_release(agnes_runtime *rt);

/* Start a release check on a background thread unless one is running.
 * Watch release_generation to learn when it has finished. */
void runtime_refresh_release_async(agnes_runtime *rt);

/* Wait for a background check still running (at shutdown). */
void runtime_join_release_check(agnes_runtime *rt);
void runtime_get_release(agnes_runtime *rt, release_status *out);

void runtime_free(agnes_runtime *rt);

#endif
