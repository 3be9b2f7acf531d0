/*
 * paths.h - where Agnes keeps things (SPEC §3).
 *
 * Two tiers: DATA_DIR holds regenerable data (extracts, the analytics
 * catalog, uploads); STATE_DIR holds what cannot be regenerated
 * (system.duckdb, secrets, overlays, certificates).  Every path under the
 * state tier is produced by paths_state_file() and nowhere else: the
 * original implementation hard-coded "${DATA_DIR}/state" in two places and
 * silently split its state across disks when STATE_DIR was set.
 *
 * The directories come from the process environment only (the overlay file
 * lives inside STATE_DIR, so it cannot choose STATE_DIR).
 */
#ifndef AGNES_CORE_PATHS_H
#define AGNES_CORE_PATHS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/util.h"

enum state_file {
    STATE_SYSTEM_DB,             /* system.duckdb */
    STATE_SYSTEM_DB_WAL,         /* system.duckdb.wal */
    STATE_SYSTEM_DB_PRE_MIGRATE, /* system.duckdb.pre-migrate */
    STATE_JWT_SECRET,            /* .jwt_secret */
    STATE_SESSION_SECRET,        /* .session_secret */
    STATE_ENV_OVERLAY,           /* .env_overlay */
    STATE_INSTANCE_YAML,         /* instance.yaml (overlay written by the API) */
    STATE_CERTS_DIR,             /* certs/ */
    STATE_CONFIGURE_LOCK,        /* .configure.lock (one configuration write at a time) */
};

enum data_file {
    DATA_EXTRACTS_DIR,   /* extracts/ */
    DATA_ANALYTICS_DIR,  /* analytics/ */
    DATA_UPLOADS_DIR,    /* uploads/ */
    DATA_SESSIONS_DIR,   /* user_sessions/ */
    DATA_TMP_DIR,        /* tmp/ */
    DATA_RESULTS_DIR,    /* results/: query results kept behind a handle (engine/result_handle.h) */
    DATA_CLI_DIR,        /* cli/: the CLI tarball the server serves, built from its own binary */
};

typedef struct agnes_paths {
    char data_dir[AGNES_PATH_MAX];
    char state_dir[AGNES_PATH_MAX];
    char config_dir[AGNES_PATH_MAX];
    char connectors_dir[AGNES_PATH_MAX];
    /* "env" or "default", shown by `agnes doctor`. */
    const char *data_dir_source;
    const char *state_dir_source;
    const char *config_dir_source;
    const char *connectors_dir_source;
} agnes_paths;

/* Resolve the four directories from the environment (DATA_DIR, STATE_DIR,
 * CONFIG_DIR, CONNECTORS_DIR) and make them absolute.  Creates nothing. */
int paths_resolve(agnes_paths *paths, agnes_error *err);

/* The one way to name a file of the state tier. */
int paths_state_file(const agnes_paths *paths, enum state_file which, char *out, size_t out_size, agnes_error *err);
const char *paths_state_file_name(enum state_file which);

int paths_data_file(const agnes_paths *paths, enum data_file which, char *out, size_t out_size, agnes_error *err);

/* Create STATE_DIR (0700) and the data tier's directories if missing, then
 * paths_secure_state().  Call it before anything writes the state tier. */
int paths_prepare(const agnes_paths *paths, agnes_error *err);

/* The state tier is readable by this user only, whatever the umask or the
 * modes it was created with: STATE_DIR and every directory below it 0700,
 * every regular file 0600 (system.duckdb, its .wal and .pre-migrate, the
 * secrets, .env_overlay, instance.yaml, certs/, lock files, anything else
 * found there; symlinks are not followed).  Temp files a killed writer left
 * (NAME.tmp.PID from util_write_file_atomic, PID no longer running) are
 * removed: .env_overlay.tmp.PID holds a DSN with its password.  A mode that
 * cannot be changed (another owner) is logged, not fatal: the directory
 * mode still closes the tier.  *swept counts removed temp files. */
int paths_secure_state(const agnes_paths *paths, int *swept, agnes_error *err);

/* True when `dir` is a mount point of its own: it appears as a mount point in
 * mountinfo_path (normally /proc/self/mountinfo; a parameter so tests can
 * feed their own), or its st_dev differs from its parent's.  A bind mount
 * from the same filesystem keeps st_dev, which is why mountinfo is read
 * first. */
bool paths_is_mount_point(const char *dir, const char *mountinfo_path);

/* The shadow-mount guard (SPEC §3).  When `required` is true and STATE_DIR is
 * not its own mount point, fails with a message naming the fix. */
int paths_check_state_mount(const agnes_paths *paths, bool required, const char *mountinfo_path, agnes_error *err);

#endif
