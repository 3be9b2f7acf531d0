#include "engine/query_pool.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "engine/contract.h"
#include "engine/query_protocol.h"
#include "engine/query_sandbox.h"
#include "engine/query_worker.h"

extern char **environ;

#define WATCHDOG_TICK_MS 50
/* How long a query waits for a free slot before the server says 429. */
#define SLOT_WAIT_MS 5000

/* ---- sizes ---------------------------------------------------------------- */

static long long physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (long long)pages * size : 0;
}

bool query_pool_parse_memory(const char *text, long long *bytes)
{
    static const struct {
        const char *unit;
        double factor;
    } units[] = {{"", 1},          {"b", 1},           {"kb", 1e3},         {"mb", 1e6},
                 {"gb", 1e9},      {"tb", 1e12},       {"kib", 1024.0},     {"mib", 1048576.0},
                 {"gib", 1073741824.0}, {"tib", 1099511627776.0}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12}};
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || errno != 0 || value <= 0)
        return false;
    while (*end == ' ')
        end++;
    if (*end == '%') {
        *bytes = (long long)(physical_memory() * value / 100.0);
        return end[1] == '\0' && *bytes > 0;
    }
    char unit[8];
    size_t n = 0;
    while (end[n] != '\0' && n + 1 < sizeof unit) {
        unit[n] = (char)tolower((unsigned char)end[n]);
        n++;
    }
    unit[n] = '\0';
    if (end[n] != '\0')
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].unit) == 0) {
            *bytes = (long long)(value * units[i].factor);
            return *bytes > 0;
        }
    return false;
}

/* RSS of a process in bytes, or -1. */
static long long process_rss(pid_t pid)
{
    char path[64];
    long long size = 0, resident = -1;
    snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* ---- workers -------------------------------------------------------------------- */

static void worker_dir(const query_pool *pool, pid_t pid, char *out, size_t out_size)
{
    char tmp[AGNES_PATH_MAX];
    agnes_error ignored;
    if (paths_data_file(pool->paths, DATA_TMP_DIR, tmp, sizeof tmp, &ignored) != AGNES_OK)
        tmp[0] = '\0';
    snprintf(out, out_size, "%s/query-worker-%ld", tmp, (long)pid);
}

/* End the slot's worker (if any) and forget it.  Pool lock held or the
 * slot owned. */
static void worker_stop(query_pool *pool, query_worker_handle *worker)
{
    if (worker->pid > 0) {
        char dir[AGNES_PATH_MAX + 64];
        agnes_error ignored;
        kill(worker->pid, SIGKILL);
        while (waitpid(worker->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        worker_dir(pool, worker->pid, dir, sizeof dir);
        util_remove_tree(dir, &ignored); /* a killed worker cannot clean up */
    }
    if (worker->fd >= 0)
        close(worker->fd);
    free(worker->key);
    worker->pid = 0;
    worker->fd = -1;
    worker->key = NULL;
    worker->generation = 0;
}

/* The environment a worker gets: no secrets (those travel in INIT), only
 * what the C library and the sanitizers need. */
static char **worker_environment(void)
{
    static const char *const keep[] = {"PATH=",        "TZ=",           "LANG=",         "LC_ALL=",   "LC_CTYPE=",
                                       "TMPDIR=",      "ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS="};
    size_t count = 0;
    for (char **e = environ; *e != NULL; e++)
        count++;
    char **out = calloc(count + 1, sizeof *out);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (char **e = environ; *e != NULL; e++)
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++)
            if (strncmp(*e, keep[k], strlen(keep[k])) == 0)
                out[n++] = *e;
    return out;
}

static int spawn(query_pool *pool, query_worker_handle *worker, agnes_error *err)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create a query worker channel: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pair[1], QUERY_WORKER_FD);
    /* Nothing else of the server's (client sockets, DuckDB files) reaches the worker. */
    posix_spawn_file_actions_addclosefrom_np(&actions, QUERY_WORKER_FD + 1);
    char server[24];
    snprintf(server, sizeof server, "%ld", (long)getpid()); /* the worker watches this pid, not "parent is 1" */
    char *argv[] = {"agnes", "query-worker", server, NULL};
    char **envp = worker_environment();
    pid_t pid = 0;
    /* /proc/self/exe, not the path: the running binary even when an upgrade
     * has replaced the file on disk (a worker must speak this server's protocol). */
    int rc = envp ? posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, envp) : ENOMEM;
    free(envp);
    posix_spawn_file_actions_destroy(&actions);
    close(pair[1]);
    if (rc != 0) {
        close(pair[0]);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start a query worker (%s query-worker): %s", pool->exe,
                               strerror(rc));
    }
    worker->pid = pid;
    worker->fd = pair[0];
    return AGNES_OK;
}

static void add_credential(const query_pool *pool, json_t *values, const char *name)
{
    char value[4096];
    if (name[0] != '\0' && json_object_get(values, name) == NULL &&
        credentials_get(pool->credentials, name, value, sizeof value))
        json_object_set_new(values, name, json_string(value));
    explicit_bzero(value, sizeof value);
}

static void absolute_dir(const char *dir, char *out, size_t out_size)
{
    char resolved[PATH_MAX];
    snprintf(out, out_size, "%s", realpath(dir, resolved) ? resolved : dir);
}

json_t *query_pool_init_message(const query_pool *pool, const analytics_snapshot *snapshot, const query_caller *caller)
{
    char tmp[AGNES_PATH_MAX], extracts[AGNES_PATH_MAX], analytics_dir[AGNES_PATH_MAX], path[AGNES_PATH_MAX];
    char catalog_path[AGNES_PATH_MAX + 32];
    agnes_error err;
    contract_allowlists allow;
    contract_allowlists_from_env(&allow);
    if (paths_data_file(pool->paths, DATA_TMP_DIR, path, sizeof path, &err) != AGNES_OK)
        return NULL;
    util_mkdir_p(path, 0755, &err);
    absolute_dir(path, tmp, sizeof tmp);
    json_t *secrets = json_object();
    json_t *init = json_pack("{s:s, s:I, s:s, s:I, s:i, s:s, s:i, s:s, s:s}", "role",
                             caller->is_admin ? "admin" : "analyst", "generation", (json_int_t)snapshot->generation,
                             "memory_limit", pool->memory_limit, "memory_limit_bytes",
                             (json_int_t)pool->memory_limit_bytes, "threads", pool->threads, "tmp_dir", tmp,
                             "remote_timeout", pool->remote_timeout_seconds, "token_envs", allow.token_envs,
                             "log_level", pool->log_level);
    if (init == NULL || secrets == NULL)
        goto fail;
    if (caller->is_admin) {
        if (paths_data_file(pool->paths, DATA_EXTRACTS_DIR, path, sizeof path, &err) != AGNES_OK ||
            paths_data_file(pool->paths, DATA_ANALYTICS_DIR, analytics_dir, sizeof analytics_dir, &err) != AGNES_OK)
            goto fail;
        absolute_dir(path, extracts, sizeof extracts);
        absolute_dir(analytics_dir, path, sizeof path);
        snprintf(catalog_path, sizeof catalog_path, "%s/server.duckdb", path);
        json_object_set_new(init, "catalog", json_pack("{s:s, s:s, s:o}", "path", catalog_path, "extracts_dir",
                                                       extracts, "extracts", analytics_extract_list(pool->paths)));
        /* Admins may call postgres_query with any allowed variable. */
        char names[CONTRACT_ALLOWLIST_MAX];
        snprintf(names, sizeof names, "%s", allow.token_envs);
        for (char *save = NULL, *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save))
            add_credential(pool, secrets, util_trim(name));
    } else {
        json_t *tables = query_sandbox_for_grants(snapshot->description, caller->visible);
        json_t *visible = caller->visible ? json_deep_copy(caller->visible) : json_array();
        if (tables == NULL || visible == NULL) {
            json_decref(tables);
            json_decref(visible);
            goto fail;
        }
        size_t i, j;
        json_t *table, *call;
        json_array_foreach(tables, i, table) {
            json_array_foreach(json_object_get(table, "remote"), j, call)
                add_credential(pool, secrets, json_string_value(json_array_get(call, 0)));
        }
        json_object_set_new(init, "tables", tables);
        json_object_set_new(init, "visible", visible);
    }
    json_object_set_new(init, "credentials", secrets);
    return init;
fail:
    json_decref(secrets);
    json_decref(init);
    return NULL;
}

/* Which engine the caller needs: "admin@<generation>" (the whole catalog
 * as it is now), or "analyst:" and a digest of everything their sandbox is
 * built from - their grants and those tables' views, files and remote
 * statements.  A rebuild that does not touch a grant set's tables leaves
 * its workers in use: the probe's names of other tables may then be a
 * rebuild old, and a read of any of those is refused either way. */
static char *engine_key(const query_caller *caller, const analytics_snapshot *snapshot)
{
    char key[128];
    if (caller->is_admin) {
        snprintf(key, sizeof key, "admin@%llu", snapshot->generation);
        return util_strdup(key);
    }
    /* Only the caller's own tables: this runs for every query. */
    json_t *mine = json_array(), *visible = json_array(), *set = query_sandbox_name_set(caller->visible);
    size_t i;
    json_t *table, *id;
    json_array_foreach(snapshot->description, i, table) {
        const char *name = json_string_value(json_object_get(table, "name"));
        if (name != NULL && query_sandbox_in_set(set, name))
            json_array_append(mine, table);
    }
    json_decref(set);
    json_array_foreach(caller->visible, i, id)
        json_array_append(visible, id);
    json_t *basis = json_pack("{s:o, s:o}", "tables", mine, "visible", visible);
    char *text = basis ? json_dumps(basis, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(basis);
    if (text == NULL)
        return NULL;
    unsigned char digest[32];
    crypto_generichash(digest, sizeof digest, (const unsigned char *)text, strlen(text), NULL, 0);
    free(text);
    char hex[65];
    util_hex_encode(digest, sizeof digest, hex);
    snprintf(key, sizeof key, "analyst:%s", hex);
    return util_strdup(key);
}

/* Start the worker for key on snapshot and wait for READY.  The slot is
 * busy with its deadline set, so a worker that hangs here is killed. */
static int start_worker(query_pool *pool, query_slot *slot, const analytics_snapshot *snapshot,
                        const query_caller *caller, char *key, agnes_error *err)
{
    json_t *init = query_pool_init_message(pool, snapshot, caller);
    if (init == NULL) {
        free(key);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot describe the query engine");
    }
    /* Admin engines follow the catalog file; a sandbox only its digest (the key). */
    query_worker_handle fresh = {0, -1, caller->is_admin ? snapshot->generation : 0, key};
    int rc = spawn(pool, &fresh, err);
    pthread_mutex_lock(&pool->lock); /* the watchdog reads the pid */
    slot->worker = fresh;
    pthread_mutex_unlock(&pool->lock);
    if (rc == AGNES_OK)
        rc = query_frame_write_json(slot->worker.fd, QUERY_FRAME_INIT, init, err);
    json_decref(init);
    strbuf payload;
    strbuf_init(&payload);
    char type = 0;
    if (rc == AGNES_OK && (rc = query_frame_read(slot->worker.fd, &type, &payload, err)) == AGNES_OK &&
        type != QUERY_FRAME_READY) {
        json_t *failed = query_frame_json(&payload);
        const char *message = failed ? json_string_value(json_object_get(failed, "message")) : NULL;
        rc = agnes_error_set(err, AGNES_ERR_DB, "the query engine could not be built: %s",
                             message ? message : "unexpected answer");
        json_decref(failed);
    }
    strbuf_free(&payload);
    if (rc != AGNES_OK && fresh.pid > 0 && rc != AGNES_ERR_DB) {
        /* The worker vanished: killed at the deadline or for its memory, or crashed. */
        rc = query_pool_why_ended(pool, slot, err);
        if (rc == AGNES_ERR_DB)
            agnes_error_set(err, AGNES_ERR_DB, "the query worker ended while starting (see the server log)");
    }
    if (rc != AGNES_OK)
        log_warn("msg=\"query worker failed to start\" detail=\"%s\"", err->message);
    return rc;
}

/* ---- the watchdog ---------------------------------------------------------------- */

static void watchdog_tick(query_pool *pool)
{
    double now = util_monotonic_ms();
    analytics_snapshot *current = analytics_acquire(pool->analytics);
    unsigned long long generation = current ? current->generation : 0;
    analytics_release(pool->analytics, current);
    for (size_t i = 0; i < pool->slot_count; i++) {
        query_slot *slot = &pool->slots[i];
        pid_t pid = slot->worker.pid;
        if (slot->busy && pid > 0 && !slot->timed_out && !slot->out_of_memory) {
            long long rss = process_rss(pid);
            if (rss > slot->peak_rss_bytes)
                slot->peak_rss_bytes = rss;
            if (now >= slot->deadline_ms) {
                slot->timed_out = true;
                kill(pid, SIGKILL);
            } else if (rss > pool->rss_cap_bytes) {
                slot->out_of_memory = true;
                kill(pid, SIGKILL);
                log_warn("msg=\"query worker over its memory cap\" pid=%ld rss_mb=%lld cap_mb=%lld", (long)pid,
                         rss >> 20, pool->rss_cap_bytes >> 20);
            }
        } else if (slot->busy && pid == 0 && !slot->timed_out && now >= slot->deadline_ms) {
            slot->timed_out = true; /* still waiting to start one: the waiter sees it */
        } else if (!slot->busy && pid > 0 &&
                   ((slot->worker.generation != 0 && slot->worker.generation != generation) ||
                    now - slot->last_used_ms > QUERY_WORKER_IDLE_SECONDS * 1000.0)) {
            worker_stop(pool, &slot->worker);
        }
    }
}

static struct timespec deadline_after_ms(long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

static void *watchdog_main(void *arg)
{
    query_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    while (!pool->stopping) {
        struct timespec until = deadline_after_ms(WATCHDOG_TICK_MS);
        int rc = pthread_cond_timedwait(&pool->wake, &pool->lock, &until);
        if (rc == ETIMEDOUT || rc == 0)
            watchdog_tick(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* ---- the pool ---------------------------------------------------------------------- */

int query_pool_init(query_pool *pool, analytics *catalog, credentials *store, const agnes_paths *paths,
                    const query_pool_options *options, agnes_error *err)
{
    memset(pool, 0, sizeof *pool);
    pool->analytics = catalog;
    pool->credentials = store;
    pool->paths = paths;
    pool->slot_count = options->slot_count;
    pool->max_per_user = options->max_per_user;
    pool->timeout_ms = options->timeout_seconds * 1000.0;
    pool->threads = options->threads;
    pool->remote_timeout_seconds = options->remote_timeout_seconds;
    snprintf(pool->log_level, sizeof pool->log_level, "%s", options->log_level ? options->log_level : "info");
    if (util_format(pool->memory_limit, sizeof pool->memory_limit, err, "%s", options->memory_limit))
        return err->code;
    if (!query_pool_parse_memory(options->memory_limit, &pool->memory_limit_bytes))
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "query.memory_limit (AGNES_QUERY_MEMORY_LIMIT) is '%s'; give a size such as 512MB, "
                               "4GB or 25%%",
                               options->memory_limit);
    pool->rss_cap_bytes = pool->memory_limit_bytes + QUERY_WORKER_DATA_MARGIN;
    ssize_t n = readlink("/proc/self/exe", pool->exe, sizeof pool->exe - 1);
    if (n <= 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot find this program (/proc/self/exe): %s", strerror(errno));
    pool->exe[n] = '\0';
    if ((pool->slots = calloc(pool->slot_count, sizeof *pool->slots)) == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < pool->slot_count; i++)
        pool->slots[i].worker.fd = -1;
    if (pthread_mutex_init(&pool->lock, NULL) != 0 || pthread_cond_init(&pool->wake, NULL) != 0 ||
        pthread_cond_init(&pool->slot_freed, NULL) != 0) {
        free(pool->slots);
        pool->slots = NULL;
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create the query pool's lock");
    }
    if (pthread_create(&pool->watchdog, NULL, watchdog_main, pool) != 0) {
        query_pool_free(pool);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the query watchdog thread");
    }
    pool->watchdog_started = true;
    return AGNES_OK;
}

static bool worker_matches(const query_slot *slot, const char *key)
{
    return slot->worker.pid > 0 && slot->worker.key != NULL && strcmp(slot->worker.key, key) == 0;
}

/* The user's running count and the best idle slot: one whose worker serves
 * key, else one without a worker, else the least recently used.  Pool lock held. */
static query_slot *scan_slots(query_pool *pool, const char *user_id, const char *key, int *mine)
{
    query_slot *match = NULL, *empty = NULL, *oldest = NULL;
    *mine = 0;
    for (size_t i = 0; i < pool->slot_count; i++) {
        query_slot *slot = &pool->slots[i];
        if (slot->busy) {
            *mine += strcmp(slot->user_id, user_id) == 0;
            continue;
        }
        if (match == NULL && worker_matches(slot, key))
            match = slot;
        else if (empty == NULL && slot->worker.pid == 0)
            empty = slot;
        else if (oldest == NULL || slot->last_used_ms < oldest->last_used_ms)
            oldest = slot;
    }
    return match ? match : empty ? empty : oldest;
}

int query_pool_acquire(query_pool *pool, const query_caller *caller, query_slot **out, agnes_error *err)
{
    int rc = AGNES_OK, mine = 0;
    *out = NULL;
    analytics_snapshot *snapshot = analytics_acquire(pool->analytics);
    if (snapshot == NULL)
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "There is no catalog yet. An admin can build it with POST /api/admin/rebuild (or "
                               "`agnes rebuild`).");
    char *key = engine_key(caller, snapshot);
    if (key == NULL) {
        analytics_release(pool->analytics, snapshot);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&pool->lock);
    query_slot *slot = scan_slots(pool, caller->user_id, key, &mine);
    /* A full server is nobody's fault: wait a little for a slot.  A user
     * over their own cap is told at once. */
    struct timespec until = deadline_after_ms(SLOT_WAIT_MS);
    while (slot == NULL && mine < pool->max_per_user &&
           pthread_cond_timedwait(&pool->slot_freed, &pool->lock, &until) == 0)
        slot = scan_slots(pool, caller->user_id, key, &mine);
    if (mine >= pool->max_per_user)
        rc = agnes_error_set(err, AGNES_ERR_BUSY,
                             "You already have %d queries running, the most one user may run at once. Wait for one "
                             "to finish, then retry.",
                             mine);
    else if (slot == NULL)
        rc = agnes_error_set(err, AGNES_ERR_BUSY,
                             "The server is running its maximum of %zu queries. Retry in a few seconds.",
                             pool->slot_count);
    else {
        slot->busy = true;
        slot->timed_out = false;
        slot->out_of_memory = false;
        slot->peak_rss_bytes = 0;
        /* Building an engine gets its own bound (it depends on the catalog,
         * not on the caller's SQL); the query's deadline is set once it is ready. */
        bool ready_now = worker_matches(slot, key);
        double budget = ready_now || pool->timeout_ms > QUERY_WORKER_START_SECONDS * 1000.0
                            ? pool->timeout_ms
                            : QUERY_WORKER_START_SECONDS * 1000.0;
        slot->deadline_ms = util_monotonic_ms() + budget;
        snprintf(slot->user_id, sizeof slot->user_id, "%s", caller->user_id);
    }
    bool ready = slot != NULL && rc == AGNES_OK && worker_matches(slot, key);
    query_worker_handle stale = {0, -1, 0, NULL};
    if (rc == AGNES_OK && !ready) { /* take the old worker out; stop it outside the lock */
        stale = slot->worker;
        slot->worker = (query_worker_handle){0, -1, 0, NULL};
    }
    pthread_mutex_unlock(&pool->lock);
    if (rc == AGNES_OK && stale.pid > 0)
        worker_stop(pool, &stale);
    if (rc == AGNES_OK && !ready) {
        pthread_mutex_lock(&pool->lock);
        slot->starting = true;
        pthread_mutex_unlock(&pool->lock);
        rc = start_worker(pool, slot, snapshot, caller, key, err);
        pthread_mutex_lock(&pool->lock);
        slot->starting = false;
        pthread_mutex_unlock(&pool->lock);
        key = NULL; /* the slot's now, or freed */
        if (rc != AGNES_OK) {
            query_pool_release(pool, slot, false);
            slot = NULL;
        } else {
            /* The query's own deadline starts when its engine is ready. */
            pthread_mutex_lock(&pool->lock);
            slot->deadline_ms = util_monotonic_ms() + pool->timeout_ms;
            pthread_mutex_unlock(&pool->lock);
        }
    }
    free(key);
    analytics_release(pool->analytics, snapshot);
    if (rc == AGNES_OK)
        *out = slot;
    return rc;
}

void query_pool_release(query_pool *pool, query_slot *slot, bool reusable)
{
    if (slot == NULL)
        return;
    query_worker_handle gone = {0, -1, 0, NULL};
    pthread_mutex_lock(&pool->lock);
    if (!reusable || slot->timed_out || slot->out_of_memory) {
        gone = slot->worker;
        slot->worker = (query_worker_handle){0, -1, 0, NULL};
    }
    if (slot->peak_rss_bytes > 0)
        log_debug("msg=\"query done\" user=%s peak_rss_mb=%lld", slot->user_id, slot->peak_rss_bytes >> 20);
    slot->busy = false;
    slot->last_used_ms = util_monotonic_ms();
    slot->user_id[0] = '\0';
    pthread_cond_broadcast(&pool->slot_freed);
    pthread_mutex_unlock(&pool->lock);
    worker_stop(pool, &gone);
}

int query_pool_why_ended(query_pool *pool, const query_slot *slot, agnes_error *err)
{
    pthread_mutex_lock(&pool->lock);
    bool timed_out = slot->timed_out, out_of_memory = slot->out_of_memory, starting = slot->starting;
    pthread_mutex_unlock(&pool->lock);
    if (timed_out && starting)
        return agnes_error_set(err, AGNES_ERR_TIMEOUT,
                               "The query engine for your tables did not start within %d seconds and was stopped. "
                               "Retry; if it persists, ask an admin to check the server log.",
                               QUERY_WORKER_START_SECONDS);
    if (timed_out)
        return agnes_error_set(err, AGNES_ERR_TIMEOUT,
                               "The query ran longer than %.0f seconds and was stopped. Narrow it (filters, LIMIT, "
                               "fewer columns) or ask an admin to raise query.timeout_seconds.",
                               pool->timeout_ms / 1000.0);
    if (out_of_memory)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "Query error: the query needed more memory than its limit of %s (query.memory_limit) "
                               "and was stopped. Narrow it (filters, fewer columns, smaller lists) or ask an admin "
                               "to raise the limit.",
                               pool->memory_limit);
    return agnes_error_set(err, AGNES_ERR_DB, "the query worker ended unexpectedly");
}

size_t query_pool_running(query_pool *pool)
{
    size_t running = 0;
    pthread_mutex_lock(&pool->lock);
    for (size_t i = 0; i < pool->slot_count; i++)
        running += pool->slots[i].busy ? 1 : 0;
    pthread_mutex_unlock(&pool->lock);
    return running;
}

static query_grant_entry *grant_entry(query_pool *pool, const char *user_id)
{
    unsigned hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)user_id; *p != '\0'; p++)
        hash = (hash ^ *p) * 16777619u;
    return &pool->grants[hash % QUERY_GRANT_CACHE_SLOTS];
}

json_t *query_pool_grants_get(query_pool *pool, const char *user_id, unsigned generation)
{
    json_t *visible = NULL;
    pthread_mutex_lock(&pool->lock);
    query_grant_entry *entry = grant_entry(pool, user_id);
    if (entry->used && entry->generation == generation && strcmp(entry->user_id, user_id) == 0)
        visible = json_deep_copy(entry->visible);
    pthread_mutex_unlock(&pool->lock);
    return visible;
}

void query_pool_grants_put(query_pool *pool, const char *user_id, unsigned generation, json_t *visible)
{
    json_t *copy = visible ? json_deep_copy(visible) : NULL;
    if (copy == NULL || strlen(user_id) >= sizeof pool->grants[0].user_id) {
        json_decref(copy);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    query_grant_entry *entry = grant_entry(pool, user_id);
    json_decref(entry->visible);
    entry->used = true;
    entry->generation = generation;
    snprintf(entry->user_id, sizeof entry->user_id, "%s", user_id);
    entry->visible = copy;
    pthread_mutex_unlock(&pool->lock);
}

void query_pool_free(query_pool *pool)
{
    if (pool->slots == NULL)
        return;
    for (size_t i = 0; i < QUERY_GRANT_CACHE_SLOTS; i++)
        json_decref(pool->grants[i].visible);
    if (pool->watchdog_started) {
        pthread_mutex_lock(&pool->lock);
        pool->stopping = true;
        pthread_cond_signal(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
        pthread_join(pool->watchdog, NULL);
    }
    for (size_t i = 0; i < pool->slot_count; i++)
        worker_stop(pool, &pool->slots[i].worker);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->slot_freed);
    pthread_mutex_destroy(&pool->lock);
    free(pool->slots);
    pool->slots = NULL;
}

void query_pool_sweep(const agnes_paths *paths)
{
    char tmp[AGNES_PATH_MAX], path[AGNES_PATH_MAX + 256];
    agnes_error err;
    if (paths_data_file(paths, DATA_TMP_DIR, tmp, sizeof tmp, &err) != AGNES_OK)
        return;
    DIR *dir = opendir(tmp);
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strncmp(entry->d_name, "query-", 6) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmp, entry->d_name);
        /* results and worker directories of a killed server: garbage */
        if (util_is_directory(path))
            util_remove_tree(path, &err);
        else
            unlink(path);
    }
    if (dir != NULL)
        closedir(dir);
}
