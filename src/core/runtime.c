#include "core/runtime.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

/* Make .env_overlay values visible to everything that reads the environment
 * later (child connector processes, token_env lookups).  Runs before any
 * thread exists; setenv is not thread-safe.  The real environment wins. */
static void export_overlay(const env_overlay *overlay)
{
    for (size_t i = 0; i < overlay->count; i++)
        if (setenv(overlay->entries[i].key, overlay->entries[i].value, 0) != 0)
            log_warn("msg=\"cannot export overlay variable\" key=%s", overlay->entries[i].key);
}

int runtime_load(agnes_runtime *rt, agnes_error *err)
{
    memset(rt, 0, sizeof *rt);
    rt->started_at = util_unix_now();
    if (pthread_mutex_init(&rt->release_lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    if (credentials_init(&rt->credentials, err) || paths_resolve(&rt->paths, err))
        return err->code;
    char overlay_path[AGNES_PATH_MAX];
    if (paths_state_file(&rt->paths, STATE_ENV_OVERLAY, overlay_path, sizeof overlay_path, err) ||
        env_overlay_load(&rt->overlay, overlay_path, err))
        return err->code;
    if (config_load(&rt->config, &rt->paths, &rt->overlay, err))
        return err->code;
    enum log_level level = LOG_INFO;
    if (log_parse_level(config_get_string(&rt->config, CFG_LOG_LEVEL), &level) == 0)
        log_set_level(level);
    export_overlay(&rt->overlay);
    version_resolve(&rt->version, &rt->config);
    return AGNES_OK;
}

int runtime_prepare_state(agnes_runtime *rt, agnes_error *err)
{
    /* Each layout overlay marks the container; both marks mean both overlays were combined, and
     * one of the two layouts' mounts silently won.  Refuse before anything is written. */
    if (getenv("AGNES_COMPOSE_LAYOUT_HOST_MOUNT") != NULL && getenv("AGNES_COMPOSE_LAYOUT_FLAT_MOUNT") != NULL)
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "docker-compose.host-mount.yml (layout A) and docker-compose.flat-mount.yml (layout B) "
                               "were combined; they are mutually exclusive. Use exactly one of them in COMPOSE_FILE / "
                               "the -f list (docs/state-dir.md says which).");
    bool mount_required = strcmp(config_get_string(&rt->config, CFG_STATE_MOUNT), "required") == 0;
    /* The guard runs before anything is created: creating STATE_DIR on the
     * data disk is exactly the shadow write it exists to prevent. */
    if (mount_required && !util_is_directory(rt->paths.state_dir))
        return paths_check_state_mount(&rt->paths, true, "/proc/self/mountinfo", err);
    if (paths_check_state_mount(&rt->paths, mount_required, "/proc/self/mountinfo", err))
        return err->code;
    /* Files this process creates from here on are its user's alone.  DuckDB
     * creates system.duckdb and its .wal itself, with the process umask, at
     * moments we do not choose (the WAL at the first write after a
     * checkpoint), so the umask is the one control that covers them; the
     * data tier holds the same customers' data and gets the same. */
    umask(077);
    if (paths_prepare(&rt->paths, err))
        return err->code;
    for (size_t i = 0; i < rt->config.warning_count; i++)
        log_warn("msg=\"configuration\" detail=\"%s\"", rt->config.warnings[i]);
    return secrets_load(&rt->secrets, &rt->config, &rt->paths, err);
}

void runtime_refresh_release(agnes_runtime *rt)
{
    release_status status;
    release_index_check(config_get_string(&rt->config, CFG_RELEASE_INDEX), rt->version.version, &status);
    if (status.configured && !status.ok)
        log_warn("msg=\"release index check failed\" detail=\"%s\"", status.problem);
    else if (status.deprecated)
        log_warn("msg=\"running a deprecated version\" version=%s stable=%s", rt->version.version, status.stable);
    pthread_mutex_lock(&rt->release_lock);
    rt->release = status;
    pthread_mutex_unlock(&rt->release_lock);
    atomic_fetch_add(&rt->release_generation, 1);
}

static void *release_check_thread(void *arg)
{
    agnes_runtime *rt = arg;
    runtime_refresh_release(rt);
    atomic_store(&rt->release_check_running, false);
    return NULL;
}

void runtime_refresh_release_async(agnes_runtime *rt)
{
    if (atomic_exchange(&rt->release_check_running, true))
        return; /* the previous check is still going */
    runtime_join_release_check(rt); /* reap the finished previous thread */
    if (pthread_create(&rt->release_thread, NULL, release_check_thread, rt) != 0) {
        log_warn("msg=\"cannot start the release index check thread; checking inline\"");
        release_check_thread(rt);
        return;
    }
    rt->release_thread_started = true;
}

void runtime_join_release_check(agnes_runtime *rt)
{
    if (rt->release_thread_started) {
        pthread_join(rt->release_thread, NULL);
        rt->release_thread_started = false;
    }
}

void runtime_get_release(agnes_runtime *rt, release_status *out)
{
    pthread_mutex_lock(&rt->release_lock);
    *out = rt->release;
    pthread_mutex_unlock(&rt->release_lock);
}

void runtime_free(agnes_runtime *rt)
{
    runtime_join_release_check(rt);
    secrets_wipe(&rt->secrets);
    config_free(&rt->config);
    env_overlay_free(&rt->overlay);
    credentials_free(&rt->credentials);
    pthread_mutex_destroy(&rt->release_lock);
}
