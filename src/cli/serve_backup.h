/*
 * serve_backup.h - the backup duties of `agnes serve` (SPEC §18).
 *
 * One thread owns both:
 *   - the control socket ${STATE_DIR}/.control.sock: `agnes backup` run
 *     beside a live server cannot open system.duckdb (the server holds its
 *     lock), so it hands the server an open file and the server writes a
 *     consistent archive into it (store/backup.h).  A Unix socket in the
 *     state directory, mode 0600, answering only its own uid and root:
 *     whoever may connect could read the state tier's files anyway, so it
 *     grants nothing new - unlike an HTTP endpoint, which would hand the JWT
 *     secret and source credentials to anyone holding an admin token;
 *   - scheduled archives: every AGNES_BACKUP_INTERVAL seconds into
 *     AGNES_BACKUP_DIR, keeping AGNES_BACKUP_KEEP, with the outcome in
 *     `status` for /api/health.
 * Requests are served one at a time, so two backups never stage at once.
 */
#ifndef AGNES_CLI_SERVE_BACKUP_H
#define AGNES_CLI_SERVE_BACKUP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/runtime.h"
#include "store/backup.h"
#include "store/system_db.h"

typedef struct serve_backup {
    agnes_runtime *runtime;
    system_db *db;
    backup_status status;
    bool status_ready;
    int listen_fd;
    char socket_path[AGNES_PATH_MAX];
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
} serve_backup;

/* Open the control socket (a failure is logged: backups through the CLI then
 * need a stopped server) and start the thread.  Errors only for the thread
 * or an unusable AGNES_BACKUP_DIR. */
int serve_backup_start(serve_backup *backups, agnes_runtime *rt, system_db *db, agnes_error *err);

/* Stop the thread (a backup in progress finishes first), remove the socket.
 * Safe on a zeroed struct. */
void serve_backup_stop(serve_backup *backups);

#endif
