#include "core/paths.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

static const char *const state_file_names[] = {
    [STATE_SYSTEM_DB] = "system.duckdb",
    [STATE_SYSTEM_DB_WAL] = "system.duckdb.wal",
    [STATE_SYSTEM_DB_PRE_MIGRATE] = "system.duckdb.pre-migrate",
    [STATE_JWT_SECRET] = ".jwt_secret",
    [STATE_SESSION_SECRET] = ".session_secret",
    [STATE_ENV_OVERLAY] = ".env_overlay",
    [STATE_INSTANCE_YAML] = "instance.yaml",
    [STATE_CERTS_DIR] = "certs",
    [STATE_CONFIGURE_LOCK] = ".configure.lock",
};

static const char *const data_file_names[] = {
    [DATA_EXTRACTS_DIR] = "extracts",
    [DATA_ANALYTICS_DIR] = "analytics",
    [DATA_UPLOADS_DIR] = "uploads",
    [DATA_SESSIONS_DIR] = "user_sessions",
    [DATA_TMP_DIR] = "tmp",
    [DATA_RESULTS_DIR] = "results",
    [DATA_CLI_DIR] = "cli",
};

/* Make `in` absolute against the working directory, dropping "." and ".."
 * lexically (the directory may not exist yet, so realpath() cannot help). */
static int make_absolute(const char *in, char *out, size_t out_size, agnes_error *err)
{
    char joined[AGNES_PATH_MAX];
    if (in[0] == '/') {
        if (util_format(joined, sizeof joined, err, "%s", in) != AGNES_OK)
            return AGNES_ERR_INVALID;
    } else {
        char cwd[AGNES_PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot read the working directory: %s", strerror(errno));
        if (util_path_join(joined, sizeof joined, cwd, in, err) != AGNES_OK)
            return AGNES_ERR_INVALID;
    }
    /* Normalise component by component into out. */
    size_t len = 0;
    out[0] = '\0';
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            char *slash = strrchr(out, '/');
            len = slash ? (size_t)(slash - out) : 0;
            out[len] = '\0';
            continue;
        }
        size_t part_len = strlen(part);
        if (len + 1 + part_len + 1 > out_size)
            return agnes_error_set(err, AGNES_ERR_INVALID, "path %s is too long", in);
        out[len++] = '/';
        memcpy(out + len, part, part_len + 1);
        len += part_len;
    }
    if (len == 0)
        strcpy(out, "/");
    return AGNES_OK;
}

static int resolve_one(const char *env_name, const char *fallback, char *out, size_t out_size,
                       const char **source, agnes_error *err)
{
    const char *value = getenv(env_name);
    if (value != NULL && value[0] != '\0') {
        *source = "env";
    } else {
        value = fallback;
        *source = "default";
    }
    if (make_absolute(value, out, out_size, err) != AGNES_OK)
        return agnes_error_wrap(err, "%s", env_name);
    return AGNES_OK;
}

/* A directory setting that names an existing non-directory is a typo worth
 * stopping for, before it turns into a confusing error deeper down. */
static int reject_non_directory(const char *env_name, const char *path, agnes_error *err)
{
    if (util_file_exists(path) && !util_is_directory(path))
        return agnes_error_set(err, AGNES_ERR_CONFIG, "%s is %s, which is a file, not a directory; point %s at a directory",
                               env_name, path, env_name);
    return AGNES_OK;
}

int paths_resolve(agnes_paths *paths, agnes_error *err)
{
    memset(paths, 0, sizeof *paths);
    char fallback[AGNES_PATH_MAX];
    if (resolve_one("DATA_DIR", "./data", paths->data_dir, sizeof paths->data_dir, &paths->data_dir_source, err))
        return err->code;
    if (util_path_join(fallback, sizeof fallback, paths->data_dir, "state", err))
        return err->code;
    if (resolve_one("STATE_DIR", fallback, paths->state_dir, sizeof paths->state_dir, &paths->state_dir_source, err))
        return err->code;
    if (resolve_one("CONFIG_DIR", "./config", paths->config_dir, sizeof paths->config_dir,
                    &paths->config_dir_source, err))
        return err->code;
    if (util_path_join(fallback, sizeof fallback, paths->data_dir, "../connectors/custom", err))
        return err->code;
    if (resolve_one("CONNECTORS_DIR", fallback, paths->connectors_dir, sizeof paths->connectors_dir,
                    &paths->connectors_dir_source, err))
        return err->code;
    if (reject_non_directory("DATA_DIR", paths->data_dir, err) ||
        reject_non_directory("STATE_DIR", paths->state_dir, err) ||
        reject_non_directory("CONFIG_DIR", paths->config_dir, err))
        return err->code;
    return AGNES_OK;
}

const char *paths_state_file_name(enum state_file which)
{
    return state_file_names[which];
}

int paths_state_file(const agnes_paths *paths, enum state_file which, char *out, size_t out_size, agnes_error *err)
{
    return util_path_join(out, out_size, paths->state_dir, state_file_names[which], err);
}

int paths_data_file(const agnes_paths *paths, enum data_file which, char *out, size_t out_size, agnes_error *err)
{
    return util_path_join(out, out_size, paths->data_dir, data_file_names[which], err);
}

/* chmod when the mode differs; a refusal is logged (see paths_secure_state). */
static void ensure_mode(const char *path, const struct stat *st, mode_t mode)
{
    if ((st->st_mode & 07777) == mode)
        return;
    if (chmod(path, mode) != 0)
        log_warn("msg=\"cannot restrict a state-tier file to its owner\" path=\"%s\" mode=%04o detail=\"%s\" "
                 "fix=\"chown it to uid %u, or chmod %04o it\"",
                 path, (unsigned)(st->st_mode & 07777), strerror(errno), (unsigned)geteuid(), (unsigned)mode);
}

/* NAME.tmp.PID whose writer is gone (util_write_file_atomic's temp names). */
static bool is_orphaned_temp(const char *name)
{
    const char *mark = strstr(name, ".tmp.");
    if (mark == NULL || mark == name)
        return false;
    const char *digits = mark + 5;
    if (*digits == '\0' || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9)
        return false;
    long pid = strtol(digits, NULL, 10);
    if (pid <= 0)
        return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void secure_tree(const char *dir, int depth, bool top, int *swept)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[AGNES_PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path || lstat(path, &st) != 0)
            continue;
        if (S_ISREG(st.st_mode) && top && is_orphaned_temp(e->d_name)) {
            if (unlink(path) == 0) {
                (*swept)++;
                log_info("msg=\"removed a temp file a killed writer left in STATE_DIR\" path=\"%s\"", path);
            }
            continue;
        }
        if (S_ISREG(st.st_mode))
            ensure_mode(path, &st, 0600);
        else if (S_ISDIR(st.st_mode)) {
            ensure_mode(path, &st, 0700);
            if (depth < 8)
                secure_tree(path, depth + 1, false, swept);
        }
    }
    closedir(d);
}

int paths_secure_state(const agnes_paths *paths, int *swept, agnes_error *err)
{
    struct stat st;
    int removed = 0;
    if (swept)
        *swept = 0;
    if (lstat(paths->state_dir, &st) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot read STATE_DIR %s: %s", paths->state_dir, strerror(errno));
    ensure_mode(paths->state_dir, &st, 0700);
    secure_tree(paths->state_dir, 0, true, &removed);
    if (swept)
        *swept = removed;
    return AGNES_OK;
}

int paths_prepare(const agnes_paths *paths, agnes_error *err)
{
    if (util_mkdir_p(paths->data_dir, 0755, err) != AGNES_OK)
        return agnes_error_wrap(err, "preparing DATA_DIR");
    if (util_mkdir_p(paths->state_dir, 0700, err) != AGNES_OK)
        return agnes_error_wrap(err, "preparing STATE_DIR");
    if (paths_secure_state(paths, NULL, err) != AGNES_OK)
        return agnes_error_wrap(err, "preparing STATE_DIR");
    char dir[AGNES_PATH_MAX];
    for (size_t i = 0; i < sizeof data_file_names / sizeof data_file_names[0]; i++) {
        if (paths_data_file(paths, (enum data_file)i, dir, sizeof dir, err) != AGNES_OK)
            return err->code;
        if (util_mkdir_p(dir, 0755, err) != AGNES_OK)
            return agnes_error_wrap(err, "preparing DATA_DIR");
    }
    return AGNES_OK;
}

/* Undo mountinfo's octal escapes (\040 for space, \011 tab, \012, \134). */
static void unescape_mountinfo(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Whether dir is a mount point in mountinfo_path; the mount's root (the
 * directory of its filesystem that appears at dir, "/" for a whole disk)
 * goes to root_out.  The last matching line wins: it is the mount on top. */
static bool listed_in_mountinfo(const char *dir, const char *mountinfo_path, char *root_out, size_t root_size)
{
    FILE *f = fopen(mountinfo_path, "re");
    if (f == NULL)
        return false;
    bool found = false;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* Fields: id parent major:minor root mount_point options ... */
        char *save = NULL;
        char *field = strtok_r(line, " ", &save);
        char *root = NULL;
        for (int i = 1; field && i < 5; i++) {
            field = strtok_r(NULL, " ", &save);
            if (i == 3)
                root = field;
        }
        if (field == NULL || root == NULL)
            continue;
        unescape_mountinfo(field);
        if (strcmp(field, dir) != 0)
            continue;
        found = true;
        if (root_out != NULL) {
            unescape_mountinfo(root);
            snprintf(root_out, root_size, "%s", root);
        }
    }
    free(line);
    fclose(f);
    return found;
}

bool paths_is_mount_point(const char *dir, const char *mountinfo_path)
{
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL)
        return false;
    if (strcmp(real, "/") == 0)
        return true;
    if (mountinfo_path != NULL && listed_in_mountinfo(real, mountinfo_path, NULL, 0))
        return true;
    char parent[PATH_MAX + 4];
    snprintf(parent, sizeof parent, "%s/..", real);
    struct stat self_st, parent_st;
    if (stat(real, &self_st) != 0 || stat(parent, &parent_st) != 0)
        return false;
    return self_st.st_dev != parent_st.st_dev;
}

int paths_check_state_mount(const agnes_paths *paths, bool required, const char *mountinfo_path, agnes_error *err)
{
    if (!required)
        return AGNES_OK;
    if (paths_is_mount_point(paths->state_dir, mountinfo_path)) {
        /* Inside a container every bind mount is a mount point, including a
         * plain host directory bound there - exactly what a state disk that
         * is not mounted on the host looks like.  A disk (or tmpfs) shows
         * its whole filesystem at STATE_DIR: mountinfo's root field is "/";
         * a bound directory shows that directory's path instead. */
        char real[PATH_MAX], root[AGNES_PATH_MAX] = "/";
        if (mountinfo_path != NULL && realpath(paths->state_dir, real) != NULL &&
            listed_in_mountinfo(real, mountinfo_path, root, sizeof root) && strcmp(root, "/") != 0)
            return agnes_error_set(
                err, AGNES_ERR_STATE,
                "AGNES_STATE_MOUNT=required but STATE_DIR %s is the directory %s of another filesystem bound there, "
                "not a disk of its own: on the host, the state disk is not mounted where the container's %s comes "
                "from, so state would be written onto the disk that holds that directory (the 2026-05-05 "
                "shadow-mount incident). Fix: mount the state disk on the host (check with `findmnt` there), then "
                "start again; or unset AGNES_STATE_MOUNT if this instance deliberately keeps state on that disk. "
                "See docs/state-dir.md.",
                paths->state_dir, root, paths->state_dir);
        /* The same filesystem as DATA_DIR is the shadow class all the same. */
        struct stat state_st, data_st;
        if (strcmp(paths->state_dir, paths->data_dir) == 0 || stat(paths->state_dir, &state_st) != 0 ||
            stat(paths->data_dir, &data_st) != 0 || state_st.st_dev != data_st.st_dev)
            return AGNES_OK;
        return agnes_error_set(
            err, AGNES_ERR_STATE,
            "AGNES_STATE_MOUNT=required but STATE_DIR %s is on the same filesystem as DATA_DIR %s, so it is not a "
            "disk of its own and state would be written onto the data disk (the 2026-05-05 shadow-mount incident). "
            "Fix: mount the state disk on the host at the directory bound to %s (check with `findmnt` on the host), "
            "or unset AGNES_STATE_MOUNT if this instance deliberately keeps state on the same disk. See "
            "docs/state-dir.md.",
            paths->state_dir, paths->data_dir, paths->state_dir);
    }
    return agnes_error_set(
        err, AGNES_ERR_STATE,
        "AGNES_STATE_MOUNT=required but STATE_DIR %s is not a mount point of its own, so state would be "
        "written onto the data disk (the 2026-05-05 shadow-mount incident). Fix: mount the state disk at "
        "%s (flat layout: STATE_DIR=/data-state with docker-compose.flat-mount.yml; nested layout: "
        "docker-compose.host-mount.yml with the state disk mounted at /data/state), or unset "
        "AGNES_STATE_MOUNT if this instance deliberately keeps state on the data disk. "
        "See docs/state-dir.md.",
        paths->state_dir, paths->state_dir);
}
