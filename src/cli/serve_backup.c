#include "cli/serve_backup.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* A partial archive older than this belongs to a backup that was killed. */
#define PARTIAL_MAX_AGE_SECONDS 3600
/* After a failed scheduled backup, try again this soon (or at the interval, if shorter). */
#define RETRY_SECONDS 300
/* How often the newest archive in the directory is looked up again (`agnes backup` may add one). */
#define RESCAN_SECONDS 30

static int open_socket(serve_backup *backups, agnes_error *err)
{
    const char *state_dir = backups->runtime->paths.state_dir;
    struct sockaddr_un address;
    int dir_fd = -1;
    if (util_path_join(backups->socket_path, sizeof backups->socket_path, state_dir, BACKUP_CONTROL_SOCKET_NAME,
                       err) ||
        backup_control_address(state_dir, &address, &dir_fd, err))
        return err ? err->code : AGNES_ERR_INVALID;
    /* A socket left by a killed server: nothing answers it (this process
     * holds system.duckdb's lock, so no other server runs here). */
    unlink(backups->socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = AGNES_OK;
    if (fd < 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot create the control socket: %s", strerror(errno));
    } else if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || chmod(backups->socket_path, 0600) != 0 ||
               listen(fd, 8) != 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot listen on %s: %s", backups->socket_path, strerror(errno));
        close(fd);
        fd = -1;
    }
    if (dir_fd >= 0)
        close(dir_fd);
    backups->listen_fd = fd;
    return rc;
}

static void reply(int fd, json_t *answer)
{
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    if (text == NULL)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* overwrites the NUL: send the line without it */
    const char *p = text;
    size_t left = len + 1;
    while (left > 0) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    free(text);
}

static json_t *error_answer(const char *detail)
{
    return json_pack("{s:s, s:s}", "status", "error", "detail", detail);
}

/* One request: "backup\n" with the archive's open file attached. */
static void serve_request(serve_backup *backups, int conn)
{
    struct ucred peer;
    socklen_t peer_len = sizeof peer;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 ||
        (peer.uid != 0 && peer.uid != geteuid())) {
        reply(conn, error_answer("only root and the server's own user may ask for a backup"));
        return;
    }
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char line[128] = "";
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {.iov_base = line, .iov_len = sizeof line - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    int file = -1;
    for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&file, CMSG_DATA(c), sizeof file);
    if (n <= 0) {
        if (file >= 0)
            close(file);
        return;
    }
    line[n] = '\0';
    if (strcmp(line, "ping\n") == 0) {
        reply(conn, json_pack("{s:s, s:s}", "status", "ok", "version", backups->runtime->version.version));
    } else if (strcmp(line, "backup\n") != 0) {
        reply(conn, error_answer("unknown request; this server understands \"ping\" and \"backup\""));
    } else {
        struct stat st;
        int flags = file >= 0 ? fcntl(file, F_GETFL) : -1;
        if (file < 0 || fstat(file, &st) != 0 || !S_ISREG(st.st_mode) || flags < 0 || (flags & O_ACCMODE) == O_RDONLY) {
            reply(conn, error_answer("a backup request must carry a regular file opened for writing"));
        } else {
            char work_dir[AGNES_PATH_MAX];
            json_t *manifest = NULL;
            agnes_error err;
            agnes_error_clear(&err);
            double started = util_monotonic_ms();
            int rc = paths_data_file(&backups->runtime->paths, DATA_TMP_DIR, work_dir, sizeof work_dir, &err);
            if (rc == AGNES_OK)
                rc = util_mkdir_p(work_dir, 0755, &err);
            if (rc == AGNES_OK)
                rc = backup_write(backups->runtime, backups->db, work_dir, file, &manifest, &err);
            if (rc == AGNES_OK) {
                log_info("msg=\"backup written for agnes backup\" pid=%d ms=%.0f", (int)peer.pid,
                         util_monotonic_ms() - started);
                reply(conn, json_pack("{s:s, s:o}", "status", "ok", "manifest", manifest));
            } else {
                log_warn("msg=\"backup for agnes backup failed\" detail=\"%s\"", err.message);
                reply(conn, error_answer(err.message));
            }
        }
    }
    if (file >= 0)
        close(file);
}

static void refresh_newest(serve_backup *backups)
{
    int64_t newest = 0;
    char path[AGNES_PATH_MAX];
    backup_newest(backups->status.dir, &newest, path, sizeof path);
    struct stat st;
    long long bytes = newest && stat(path, &st) == 0 ? (long long)st.st_size : 0;
    pthread_mutex_lock(&backups->status.lock);
    backups->status.last_at = newest;
    snprintf(backups->status.last_path, sizeof backups->status.last_path, "%s", path);
    backups->status.last_bytes = bytes;
    pthread_mutex_unlock(&backups->status.lock);
}

/* One scheduled archive into AGNES_BACKUP_DIR, then retention. */
static int scheduled_backup(serve_backup *backups, agnes_error *err)
{
    const char *dir = backups->status.dir;
    char final_path[AGNES_PATH_MAX], partial[AGNES_PATH_MAX];
    int rc = util_mkdir_p(dir, 0700, err);
    if (rc != AGNES_OK)
        return rc;
    backup_sweep_partials(dir, PARTIAL_MAX_AGE_SECONDS);
    backup_sweep_staging(dir, PARTIAL_MAX_AGE_SECONDS);
    if ((rc = backup_default_path(dir, util_unix_now(), final_path, sizeof final_path, err)))
        return rc;
    int fd = backup_create_partial(final_path, partial, sizeof partial, err);
    if (fd < 0)
        return err ? err->code : AGNES_ERR_IO;
    double started = util_monotonic_ms();
    /* Staged in the backup directory: it has room for the archive, so for its copy too. */
    rc = backup_write(backups->runtime, backups->db, dir, fd, NULL, err);
    if (rc == AGNES_OK)
        rc = backup_publish(fd, partial, final_path, err);
    close(fd);
    if (rc != AGNES_OK) {
        unlink(partial);
        return rc;
    }
    struct stat st;
    log_info("msg=\"scheduled backup written\" path=\"%s\" bytes=%lld ms=%.0f", final_path,
             stat(final_path, &st) == 0 ? (long long)st.st_size : -1LL, util_monotonic_ms() - started);
    backup_prune(dir, (int)backups->status.keep);
    return AGNES_OK;
}

static void *backup_thread(void *arg)
{
    serve_backup *backups = arg;
    bool scheduled = backups->status.enabled;
    long long interval = backups->status.interval_seconds;
    int64_t next_due = 0, next_scan = 0;
    if (scheduled) {
        refresh_newest(backups);
        /* Restarts do not reset the clock: the next archive is due one
         * interval after the newest one there is. */
        next_due = backups->status.last_at ? backups->status.last_at + interval : util_unix_now();
    }
    while (!atomic_load(&backups->stop)) {
        if (backups->listen_fd >= 0) {
            struct pollfd pfd = {.fd = backups->listen_fd, .events = POLLIN};
            if (poll(&pfd, 1, 1000) > 0) {
                int conn = accept4(backups->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (conn >= 0) {
                    serve_request(backups, conn);
                    close(conn);
                }
            }
        } else {
            usleep(1000 * 1000);
        }
        if (!scheduled)
            continue;
        int64_t now = util_unix_now();
        if (now >= next_scan) {
            refresh_newest(backups);
            next_scan = now + RESCAN_SECONDS;
        }
        if (now < next_due)
            continue;
        agnes_error err;
        agnes_error_clear(&err);
        int rc = scheduled_backup(backups, &err);
        if (rc != AGNES_OK)
            log_error("msg=\"scheduled backup failed\" detail=\"%s\" retry_seconds=%lld", err.message,
                      interval < RETRY_SECONDS ? interval : RETRY_SECONDS);
        refresh_newest(backups);
        now = util_unix_now();
        pthread_mutex_lock(&backups->status.lock);
        backups->status.last_attempt_at = now;
        snprintf(backups->status.last_error, sizeof backups->status.last_error, "%s",
                 rc == AGNES_OK ? "" : err.message);
        pthread_mutex_unlock(&backups->status.lock);
        next_due = now + (rc == AGNES_OK || interval < RETRY_SECONDS ? interval : RETRY_SECONDS);
        next_scan = now + RESCAN_SECONDS;
    }
    return NULL;
}

int serve_backup_start(serve_backup *backups, agnes_runtime *rt, system_db *db, agnes_error *err)
{
    memset(backups, 0, sizeof *backups);
    backups->listen_fd = -1;
    backups->runtime = rt;
    backups->db = db;
    if (backup_status_init(&backups->status, err))
        return err ? err->code : AGNES_ERR_NOMEM;
    backups->status_ready = true;
    const char *dir = config_get_string(&rt->config, CFG_BACKUP_DIR);
    if (dir[0] != '\0') {
        if (dir[0] != '/')
            return agnes_error_set(err, AGNES_ERR_CONFIG, "AGNES_BACKUP_DIR must be an absolute path, not \"%s\"", dir);
        backups->status.enabled = true;
        snprintf(backups->status.dir, sizeof backups->status.dir, "%s", dir);
        backups->status.interval_seconds = config_get_int(&rt->config, CFG_BACKUP_INTERVAL);
        backups->status.keep = config_get_int(&rt->config, CFG_BACKUP_KEEP);
        backups->status.watch_since = util_unix_now();
    }
    /* Nothing of ours runs yet: what a killed backup or restore staged is garbage (with secrets in it). */
    char tmp[AGNES_PATH_MAX];
    if (paths_data_file(&rt->paths, DATA_TMP_DIR, tmp, sizeof tmp, NULL) == AGNES_OK)
        backup_sweep_staging(tmp, 0);
    backup_sweep_staging(rt->paths.state_dir, 0);
    if (backups->status.enabled) /* `agnes backup` may be writing there right now: only old ones */
        backup_sweep_staging(backups->status.dir, PARTIAL_MAX_AGE_SECONDS);
    agnes_error socket_err;
    agnes_error_clear(&socket_err);
    if (open_socket(backups, &socket_err) != AGNES_OK)
        log_warn("msg=\"no control socket: agnes backup needs the server stopped\" detail=\"%s\"", socket_err.message);
    if (pthread_create(&backups->thread, NULL, backup_thread, backups) != 0) {
        serve_backup_stop(backups);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the backup thread");
    }
    backups->thread_started = true;
    if (backups->status.enabled)
        log_info("msg=\"scheduled backups on\" dir=\"%s\" interval_seconds=%lld keep=%lld", dir,
                 backups->status.interval_seconds, backups->status.keep);
    return AGNES_OK;
}

void serve_backup_stop(serve_backup *backups)
{
    atomic_store(&backups->stop, true);
    if (backups->thread_started)
        pthread_join(backups->thread, NULL);
    backups->thread_started = false;
    if (backups->listen_fd >= 0) {
        close(backups->listen_fd);
        unlink(backups->socket_path);
    }
    backups->listen_fd = -1;
    if (backups->status_ready)
        backup_status_free(&backups->status);
    backups->status_ready = false;
}
