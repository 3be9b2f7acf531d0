/*
 * `agnes serve` - start the server.
 *
 * Order matters: the state tier is checked (shadow-mount guard, secrets)
 * before anything is written; migrations run before the server accepts a
 * connection; on SIGTERM the server drains, then system.duckdb is
 * checkpointed and closed, and the process exits 0.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/serve_backup.h"
#include "core/log.h"
#include "core/runtime.h"
#include "engine/analytics.h"
#include "engine/demo.h"
#include "engine/query.h"
#include "engine/query_pool.h"
#include "engine/result_handle.h"
#include "http/auth_cache.h"
#include "http/catalog_admin.h"
#include "http/health.h"
#include "http/mcp.h"
#include "http/sync.h"
#include "http/rate_limit.h"
#include "http/router.h"
#include "http/server.h"
#include "core/password.h"
#include "store/duck.h"
#include "store/migrations.h"
#include "store/users.h"
#include "store/sync_state.h"
#include "store/system_db.h"
#include "sync/builtin_sync.h"
#include "sync/custom_connector.h"
#include "sync/local_files.h"

typedef struct serve_state {
    http_context context;
    double next_health_ms;
    double next_checkpoint_ms;
    double next_release_ms;
    double next_catalog_ms;
    double next_schedule_ms;
    double next_result_sweep_ms;
    unsigned release_generation_seen;
    unsigned rebuild_sequence_seen;
} serve_state;

/* An extract written by anything - a sync, a custom connector's cron job,
 * a person copying files - reaches the catalog without anyone asking:
 * the fingerprint check is a stat per source, the rebuild only runs when
 * something changed. */
static void watch_extracts(serve_state *state, double now)
{
    long long interval = config_get_int(&state->context.runtime->config, CFG_CATALOG_WATCH_INTERVAL);
    if (interval == 0 || now < state->next_catalog_ms)
        return;
    state->next_catalog_ms = now + 1000.0 * (double)interval;
    json_t *report = NULL;
    agnes_error err;
    if (catalog_rebuild(&state->context, true, &report, &err) != AGNES_OK)
        log_warn("msg=\"catalog rebuild after an extract changed failed\" detail=\"%s\"", err.message);
    json_decref(report);
}

/* Syncs a killed server never finished are failures, said so in sync_state. */
static int fail_interrupted_syncs(system_db *db, agnes_error *err)
{
    long long count = 0;
    duckdb_connection writer = system_db_writer_acquire(db);
    int rc = sync_state_fail_interrupted(writer, &count, err);
    system_db_writer_release(db);
    if (rc == AGNES_OK && count > 0)
        log_warn("msg=\"syncs interrupted by the last stop are marked failed\" tables=%lld", count);
    return rc;
}

/* How often the scheduler looks for due tables (the grammar's finest step is a minute). */
#define SCHEDULE_CHECK_SECONDS 15

/* Periodic work, run by the main thread about once a second. */
static void serve_tick(void *arg)
{
    serve_state *state = arg;
    agnes_runtime *rt = state->context.runtime;
    double now = util_monotonic_ms();
    if (now >= state->next_checkpoint_ms) {
        agnes_error err;
        if (system_db_checkpoint(state->context.db, &err) != AGNES_OK)
            log_warn("msg=\"periodic CHECKPOINT failed\" detail=\"%s\"", err.message);
        state->next_checkpoint_ms = now + 1000.0 * (double)config_get_int(&rt->config, CFG_CHECKPOINT_INTERVAL);
    }
    if (now >= state->next_release_ms) {
        runtime_refresh_release_async(rt);
        state->next_release_ms = now + 1000.0 * (double)config_get_int(&rt->config, CFG_RELEASE_CHECK_INTERVAL);
    }
    unsigned generation = atomic_load(&rt->release_generation);
    if (generation != state->release_generation_seen) {
        state->release_generation_seen = generation;
        state->next_health_ms = 0; /* publish a finished release check at once */
    }
    unsigned sequence = atomic_load(&state->context.rebuild_sequence);
    if (sequence % 2 == 0 && sequence != state->rebuild_sequence_seen) {
        state->rebuild_sequence_seen = sequence;
        state->next_health_ms = 0; /* what a finished rebuild published shows in health at once */
    }
    watch_extracts(state, now);
    if (config_get_bool(&rt->config, CFG_SCHEDULER) && now >= state->next_schedule_ms) {
        sync_schedule_tick(&state->context);
        state->next_schedule_ms = now + 1000.0 * SCHEDULE_CHECK_SECONDS;
    }
    if (state->context.results != NULL && now >= state->next_result_sweep_ms) {
        result_store_sweep(state->context.results); /* expired result handles (engine/result_handle.h) */
        state->next_result_sweep_ms = now + 60000.0;
    }
    if (now >= state->next_health_ms) {
        health_monitor_refresh(state->context.health, &state->context);
        state->next_health_ms = now + 1000.0 * HEALTH_REFRESH_SECONDS;
    }
}

static int open_system_db(agnes_runtime *rt, system_db *db, agnes_error *err)
{
    migration_report report;
    char path[AGNES_PATH_MAX], wal[AGNES_PATH_MAX];
    if (paths_state_file(&rt->paths, STATE_SYSTEM_DB, path, sizeof path, err) ||
        paths_state_file(&rt->paths, STATE_SYSTEM_DB_WAL, wal, sizeof wal, err))
        return err->code;
    /* The usual start: an up-to-date file closed cleanly is opened once
     * (each open costs ~40 ms).  Anything else - a first start, a WAL left
     * by a crash, another schema version - goes through the migrations,
     * which check read-only before they change or refuse anything. */
    if (util_file_exists(path) && !util_file_exists(wal)) {
        agnes_error probe;
        if (system_db_open(db, path, migrations_latest(), &probe) == AGNES_OK)
            return AGNES_OK;
    }
    if (migrations_run(&rt->paths, 0, &report, err))
        return err->code;
    return system_db_open(db, path, migrations_latest(), err);
}

/* SEED_ADMIN_EMAIL [+ SEED_ADMIN_PASSWORD]: the headless way to claim an
 * instance.  Idempotent: an existing password is never overwritten. */
static int seed_admin(agnes_runtime *rt, system_db *db, agnes_error *err)
{
    if (!config_is_set(&rt->config, CFG_SEED_ADMIN_EMAIL))
        return AGNES_OK;
    char email[USER_EMAIL_MAX + 1];
    const char *given = config_get_string(&rt->config, CFG_SEED_ADMIN_EMAIL);
    const char *password = config_get_string(&rt->config, CFG_SEED_ADMIN_PASSWORD);
    size_t n = strlen(given);
    if (strchr(given, '@') == NULL || n > USER_EMAIL_MAX)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "SEED_ADMIN_EMAIL \"%s\" is not an email address", given);
    for (size_t i = 0; i <= n; i++)
        email[i] = (char)tolower((unsigned char)given[i]);
    if (password[0] != '\0' && strlen(password) < PASSWORD_MIN_LENGTH)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "SEED_ADMIN_PASSWORD must be at least %d characters",
                               PASSWORD_MIN_LENGTH);
    duckdb_connection conn = system_db_writer_acquire(db);
    user_record user;
    char hash[PASSWORD_HASH_MAX];
    const char *hash_to_set = NULL;
    int rc = users_find_by_email(conn, email, &user, err);
    bool needs_password = password[0] != '\0' && (rc == AGNES_ERR_NOT_FOUND || (rc == AGNES_OK && !user.has_password));
    if (rc == AGNES_OK || rc == AGNES_ERR_NOT_FOUND)
        rc = needs_password ? password_hash(password, hash, err) : AGNES_OK;
    if (needs_password)
        hash_to_set = hash;
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "BEGIN TRANSACTION", err);
    if (rc == AGNES_OK && (rc = users_ensure_admin(conn, email, "Admin", hash_to_set, false, "seed_admin", &user, err)))
        duck_exec(conn, "ROLLBACK", NULL);
    if (rc == AGNES_OK && (rc = duck_exec(conn, "COMMIT", err)) == AGNES_OK)
        audit_log_write(conn, user.id, "auth.seed_admin", user.email, NULL, "ok");
    system_db_writer_release(db);
    return rc == AGNES_OK ? AGNES_OK : agnes_error_wrap(err, "seeding SEED_ADMIN_EMAIL");
}

/* SCHEDULER_API_TOKEN: a sidecar presenting it acts as the admin
 * scheduler@system.local, a user without a password (so it never ends setup
 * mode and cannot log in interactively). */
static int ensure_scheduler_user(http_context *ctx, agnes_error *err)
{
    const char *token = config_get_string(&ctx->runtime->config, CFG_SCHEDULER_TOKEN);
    if (token[0] == '\0')
        return AGNES_OK;
    if (strlen(token) < 32)
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "SCHEDULER_API_TOKEN must be at least 32 characters (generate one with "
                               "`openssl rand -hex 32`), or unset it to disable the service identity");
    user_record user;
    duckdb_connection conn = system_db_writer_acquire(ctx->db);
    int rc = users_ensure_admin(conn, "scheduler@system.local", "Scheduler", NULL, false, "scheduler_token", &user, err);
    system_db_writer_release(ctx->db);
    if (rc == AGNES_OK)
        snprintf(ctx->scheduler_user_id, sizeof ctx->scheduler_user_id, "%s", user.id);
    return rc;
}

/* Setup mode lasts until an admin with a password exists (see http/auth.h). */
static int load_setup_state(http_context *ctx, agnes_error *err)
{
    duckdb_connection conn = NULL;
    bool admin_exists = false;
    if (system_db_connect_reader(ctx->db, &conn, err))
        return err->code;
    int rc = users_admin_exists(conn, &admin_exists, err);
    duckdb_disconnect(&conn);
    atomic_store(&ctx->setup_required, !admin_exists);
    if (rc == AGNES_OK && !admin_exists)
        log_warn("msg=\"setup mode: no admin yet; claim this instance with POST /auth/bootstrap or SEED_ADMIN_EMAIL\"");
    return rc;
}

int command_serve(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "agnes serve takes no arguments; configure it with environment variables "
                        "(see `agnes doctor` and config/instance.yaml.example)\n");
        return EXIT_USAGE;
    }
    agnes_runtime rt = {0};
    system_db db = {0};
    health_monitor health = {0};
    http_server server = {0};
    rate_limiter *auth_limiter = NULL; /* 4096 buckets: heap, owned here */
    auth_cache *identities = NULL;     /* 256 entries: heap, owned here */
    analytics catalog_reader = {0};
    query_pool queries = {0};
    result_store results = {0};
    mcp_sessions *sessions = NULL;
    sync_runs runs = {0};
    serve_backup backups = {0};
    bool requests_abandoned = false;
    agnes_error err;
    agnes_error_clear(&err);
    int exit_code = 1;
    /* Before any thread exists, so every thread inherits the mask. */
    if (server_block_signals(&err) || runtime_load(&rt, &err))
        goto fail;
    if (runtime_prepare_state(&rt, &err) || open_system_db(&rt, &db, &err) || health_monitor_init(&health, &err))
        goto fail;
    serve_state state = {.context = {&rt, &db, &health}};
    auth_limiter = malloc(sizeof *auth_limiter);
    if (auth_limiter == NULL ||
        rate_limiter_init(auth_limiter, (unsigned)config_get_int(&rt.config, CFG_AUTH_RATE_LIMIT)) != 0) {
        free(auth_limiter);
        auth_limiter = NULL;
        agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot create the rate limiter");
        goto fail;
    }
    state.context.auth_limiter = auth_limiter;
    if ((identities = malloc(sizeof *identities)) == NULL || auth_cache_init(identities) != 0) {
        free(identities);
        identities = NULL;
        agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot create the identity cache");
        goto fail;
    }
    state.context.identities = identities;
    if (sync_runs_init(&runs) != 0) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot create the sync run table");
        goto fail;
    }
    state.context.sync_runs = &runs;
    if (pthread_mutex_init(&state.context.rebuild_lock, NULL) != 0 ||
        pthread_mutex_init(&state.context.upload_lock, NULL) != 0) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot create a mutex");
        goto fail;
    }
    if (analytics_init(&catalog_reader, config_get_string(&rt.config, CFG_QUERY_MEMORY_LIMIT), &rt.credentials,
                       (int)config_get_int(&rt.config, CFG_QUERY_TIMEOUT), &err))
        goto fail;
    state.context.analytics = &catalog_reader;
    query_pool_options query_options = {
        .slot_count = (size_t)config_get_int(&rt.config, CFG_QUERY_MAX_CONCURRENT),
        .max_per_user = (int)config_get_int(&rt.config, CFG_QUERY_MAX_PER_USER),
        .timeout_seconds = (double)config_get_int(&rt.config, CFG_QUERY_TIMEOUT),
        .memory_limit = config_get_string(&rt.config, CFG_QUERY_MEMORY_LIMIT),
        .remote_timeout_seconds = (int)config_get_int(&rt.config, CFG_QUERY_TIMEOUT),
        .log_level = config_get_string(&rt.config, CFG_LOG_LEVEL),
    };
    if (query_pool_init(&queries, &catalog_reader, &rt.credentials, &rt.paths, &query_options, &err))
        goto fail;
    state.context.queries = &queries;
    result_limits result_bounds = {
        .ttl_seconds = config_get_int(&rt.config, CFG_RESULT_TTL),
        .max_bytes_per_user = config_get_int(&rt.config, CFG_RESULT_MAX_BYTES_PER_USER),
        .max_bytes_total = config_get_int(&rt.config, CFG_RESULT_MAX_BYTES_TOTAL),
        .min_free_bytes = config_get_int(&rt.config, CFG_RESULT_MIN_FREE_BYTES),
    };
    if (result_store_init(&results, &rt.paths, &result_bounds, &err))
        goto fail;
    state.context.results = &results;
    if ((sessions = mcp_sessions_new()) == NULL) {
        agnes_error_set(&err, AGNES_ERR_NOMEM, "cannot create the MCP session table");
        goto fail;
    }
    state.context.mcp_sessions = sessions;
    local_files_sweep(&rt.paths); /* leftovers of a killed upload or parquet query */
    builtin_sync_sweep(&rt.paths); /* ... and of a killed sync */
    custom_connectors_reap(&rt.paths);
    if (fail_interrupted_syncs(&db, &err))
        goto fail;
    query_pool_sweep(&rt.paths); /* results and worker directories of a killed server */
    bool demo_created = false;
    if (config_get_bool(&rt.config, CFG_DEMO) && demo_seed_if_empty(&rt.paths, &demo_created, &err))
        goto fail;
    json_t *catalog = NULL; /* bring the catalog up to date with the extracts before accepting queries */
    if (catalog_rebuild(&state.context, true, &catalog, &err) != AGNES_OK)
        goto fail;
    json_decref(catalog);
    if (seed_admin(&rt, &db, &err) || ensure_scheduler_user(&state.context, &err) ||
        load_setup_state(&state.context, &err))
        goto fail;
    /* The control socket `agnes backup` asks, and scheduled backups (cli/serve_backup.h). */
    if (serve_backup_start(&backups, &rt, &db, &err))
        goto fail;
    state.context.backups = &backups.status;
    serve_tick(&state); /* first health, release check and checkpoint before accepting */
    server_options options = {
        .listen = config_get_string(&rt.config, CFG_SERVER_LISTEN),
        .threads = (unsigned)config_get_int(&rt.config, CFG_SERVER_THREADS),
        .max_connections = (unsigned)config_get_int(&rt.config, CFG_SERVER_MAX_CONNECTIONS),
        .max_connections_per_address = (unsigned)config_get_int(&rt.config, CFG_SERVER_MAX_CONNECTIONS_PER_ADDRESS),
        .trust_proxy = config_get_bool(&rt.config, CFG_TRUST_PROXY),
        .idle_timeout_seconds = (unsigned)config_get_int(&rt.config, CFG_SERVER_IDLE_TIMEOUT),
        .max_body_bytes = (size_t)config_get_int(&rt.config, CFG_SERVER_MAX_BODY_BYTES),
    };
    if (server_start(&server, &state.context, http_routes, http_route_count, &options, &err))
        goto fail;
    log_info("msg=\"agnes is serving\" listen=%s port=%u version=%s channel=%s schema=%d data_dir=%s state_dir=%s",
             options.listen, server.port, rt.version.version, rt.version.channel, migrations_latest(),
             rt.paths.data_dir, rt.paths.state_dir);
    int sig = server_wait(&server, serve_tick, &state);
    log_info("msg=\"shutting down\" signal=%d grace_seconds=%lld", sig,
             config_get_int(&rt.config, CFG_SERVER_SHUTDOWN_GRACE));
    int abandoned = server_stop(&server, (unsigned)config_get_int(&rt.config, CFG_SERVER_SHUTDOWN_GRACE));
    if (abandoned > 0) {
        log_warn("msg=\"grace period ended with requests still running\" requests=%d", abandoned);
        /* A blocking handler still running on its own thread may hold catalog
         * connections: leave those to exit().  Event-loop requests are gone
         * once the server stopped. */
        requests_abandoned = atomic_load(&server.offloaded_in_flight) > 0;
    }
    exit_code = 0;
    goto done;
fail:
    /* One plain sentence on stderr: it is what an operator (or agent) reads first. */
    fprintf(stderr, "agnes: %s\n", err.message);
    server_stop(&server, 0);
done:
    /* A running sync finishes first (within the grace period): it uses the catalog and system.duckdb. */
    if (runs.runs != NULL && !sync_runs_free(&runs, (double)config_get_int(&rt.config, CFG_SERVER_SHUTDOWN_GRACE)))
        requests_abandoned = true;
    if (!requests_abandoned) {
        query_pool_free(&queries);
        analytics_free(&catalog_reader);
        result_store_free(&results);
        mcp_sessions_free(sessions);
    }
    serve_backup_stop(&backups); /* a backup in progress finishes first: it reads system.duckdb */
    system_db_close(&db); /* CHECKPOINT, then close */
    health_monitor_free(&health);
    if (auth_limiter) {
        rate_limiter_free(auth_limiter);
        free(auth_limiter);
    }
    if (identities) {
        auth_cache_free(identities);
        free(identities);
    }
    runtime_free(&rt);
    if (exit_code == 0)
        log_info("msg=\"stopped cleanly\"");
    return exit_code;
}
