#include "store/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/archive.h"
#include "core/log.h"
#include "core/util.h"
#include "store/duck.h"
#include "store/migrations.h"

/* Secrets, overlays and certificates are small; anything bigger in their
 * place is a mistake we refuse to copy into every archive. */
#define SMALL_FILE_MAX (1 << 20)
#define MANIFEST_MAX (1 << 20)
#define MEMBERS_MAX 256
/* The configuration lock of http/configure.c: a runtime file, not state. */
#define CONFIGURE_LOCK_NAME ".configure.lock"

/* Tables whose row counts the manifest records: what an operator checks
 * after a restore ("are my users and tokens there?"). */
static const char *const counted_tables[] = {"users", "user_groups", "user_group_members", "resource_grants",
                                             "personal_access_tokens", "table_registry"};

/* Files of the state tier that hold secrets: restored 0600 whatever the archive says. */
static bool is_secret_name(const char *name)
{
    return strcmp(name, ".jwt_secret") == 0 || strcmp(name, ".session_secret") == 0 ||
           strcmp(name, ".env_overlay") == 0;
}

typedef struct member {
    char name[ARCHIVE_NAME_MAX + 1];
    bool directory;
    mode_t mode;
    int64_t mtime;
    char *data;                  /* small files: their bytes (owned) */
    size_t len;
    char path[AGNES_PATH_MAX];   /* the staged database: archived from this file */
    uint64_t size;
    char sha256[65];
} member;

typedef struct member_list {
    member *items;
    size_t count;
} member_list;

static void members_free(member_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        if (list->items[i].data) {
            sodium_memzero(list->items[i].data, list->items[i].len);
            free(list->items[i].data);
        }
    }
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static member *members_add(member_list *list, const char *name, agnes_error *err)
{
    if (list->count == MEMBERS_MAX) {
        agnes_error_set(err, AGNES_ERR_INVALID, "the state tier holds more than %d files to back up; certs/ should "
                        "hold a few certificates, not %s",
                        MEMBERS_MAX, name);
        return NULL;
    }
    if (strlen(name) > ARCHIVE_NAME_MAX) {
        agnes_error_set(err, AGNES_ERR_INVALID, "%s: the name is longer than %d bytes; shorten it", name,
                        ARCHIVE_NAME_MAX);
        return NULL;
    }
    member *m = &list->items[list->count++];
    memset(m, 0, sizeof *m);
    memcpy(m->name, name, strlen(name) + 1);
    return m;
}

static void sha256_hex_of(const void *data, size_t len, char out[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, data, len);
    util_hex_encode(digest, sizeof digest, out);
}

static int sha256_hex_of_file(const char *path, uint64_t *size, char out[65], agnes_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char *buf = malloc(1 << 16);
    if (buf == NULL) {
        close(fd);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory hashing %s", path);
    }
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    uint64_t total = 0;
    int rc = AGNES_OK;
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 16);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        crypto_hash_sha256_update(&state, buf, (unsigned long long)n);
        total += (uint64_t)n;
    }
    free(buf);
    close(fd);
    if (rc == AGNES_OK) {
        unsigned char digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&state, digest);
        util_hex_encode(digest, sizeof digest, out);
        *size = total;
    }
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A plain copy into the private staging directory: no fsync (the archive
 * is what gets fsynced), so the writer lock is held only for the copy.
 * AGNES_ERR_NOT_FOUND when src does not exist. */
static int copy_plain(const char *src, const char *dst, agnes_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return agnes_error_set(err, errno == ENOENT ? AGNES_ERR_NOT_FOUND : AGNES_ERR_IO, "cannot open %s: %s", src,
                               strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
    }
    char *buf = malloc(1 << 17);
    int rc = buf ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory copying %s", src);
    while (rc == AGNES_OK) {
        ssize_t n = read(in, buf, 1 << 17);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", src, strerror(errno));
        else if (n == 0)
            break;
        else if (write_all(out, buf, (size_t)n) != 0)
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", dst, strerror(errno));
    }
    free(buf);
    close(in);
    if (close(out) != 0 && rc == AGNES_OK)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", dst, strerror(errno));
    return rc;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Copy system.duckdb (and its WAL, if it has one) into staging while nothing
 * can commit to it: see the header for the two cases. */
static int stage_system_db(const agnes_runtime *rt, system_db *db, const char *staging, agnes_error *err)
{
    char src[AGNES_PATH_MAX], src_wal[AGNES_PATH_MAX], dst[AGNES_PATH_MAX], dst_wal[AGNES_PATH_MAX];
    if (paths_state_file(&rt->paths, STATE_SYSTEM_DB, src, sizeof src, err) ||
        paths_state_file(&rt->paths, STATE_SYSTEM_DB_WAL, src_wal, sizeof src_wal, err) ||
        util_path_join(dst, sizeof dst, staging, "system.duckdb", err) ||
        util_path_join(dst_wal, sizeof dst_wal, staging, "system.duckdb.wal", err))
        return err ? err->code : AGNES_ERR_INVALID;
    int rc;
    if (db != NULL) {
        double started = util_monotonic_ms();
        duckdb_connection writer = system_db_writer_acquire(db);
        rc = duck_exec(writer, "CHECKPOINT", err);
        if (rc == AGNES_OK)
            rc = copy_plain(src, dst, err);
        /* After a CHECKPOINT the WAL is empty; copying it anyway when it is
         * not keeps the snapshot whole whatever DuckDB decided. */
        if (rc == AGNES_OK && file_size(src_wal) > 0)
            rc = copy_plain(src_wal, dst_wal, err);
        system_db_writer_release(db);
        log_info("msg=\"system.duckdb snapshot taken\" writer_held_ms=%.1f", util_monotonic_ms() - started);
        return rc == AGNES_OK ? AGNES_OK : agnes_error_wrap(err, "taking the snapshot of system.duckdb");
    }
    if (!util_file_exists(src))
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND,
                               "there is no %s: nothing to back up (is STATE_DIR right? `agnes doctor` shows it)", src);
    /* A read-only open takes a shared lock: no server can start while we
     * copy, and nothing is written to the state tier (not even by root,
     * whose files the server's user could not open later). */
    duckdb_database guard = NULL;
    if ((rc = duck_open(src, true, &guard, err)) != AGNES_OK) {
        if (rc == AGNES_ERR_STATE)
            return agnes_error_set(err, AGNES_ERR_BUSY,
                                   "%s is open in another process and its control socket %s/%s did not answer. Run "
                                   "`agnes backup` with the same STATE_DIR as the server (e.g. `docker compose exec "
                                   "app agnes backup`), or stop the server",
                                   src, rt->paths.state_dir, BACKUP_CONTROL_SOCKET_NAME);
        return rc;
    }
    rc = copy_plain(src, dst, err);
    if (rc == AGNES_OK && file_size(src_wal) > 0)
        rc = copy_plain(src_wal, dst_wal, err);
    duckdb_close(&guard);
    return rc;
}

/* Schema version and row counts of a database file (opened read-only: the
 * manifest and the check must not change what they describe). */
static int inspect_database(const char *path, int *schema_version, json_t **contents, agnes_error *err)
{
    duck_session session;
    if (duck_session_open(&session, path, true, err))
        return err ? err->code : AGNES_ERR_DB;
    long long version = 0, count = 0;
    bool found = false;
    int rc = duck_query_int(session.connection,
                            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' AND "
                            "schema_name = 'main'",
                            &count, &found, err);
    if (rc == AGNES_OK && count > 0)
        rc = duck_query_int(session.connection, "SELECT max(version) FROM schema_version", &version, &found, err);
    json_t *counts = json_object();
    for (size_t i = 0; rc == AGNES_OK && i < sizeof counted_tables / sizeof counted_tables[0]; i++) {
        char sql[256];
        const char *params[] = {counted_tables[i]};
        duckdb_result result;
        rc = duck_query_params(session.connection,
                               "SELECT count(*) FROM duckdb_tables() WHERE table_name = $1 AND schema_name = 'main'",
                               params, 1, &result, err);
        if (rc != AGNES_OK)
            break;
        bool exists = duckdb_value_int64(&result, 0, 0) > 0;
        duckdb_destroy_result(&result);
        if (!exists)
            continue;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", counted_tables[i]);
        rc = duck_query_int(session.connection, sql, &count, &found, err);
        if (rc == AGNES_OK)
            json_object_set_new(counts, counted_tables[i], json_integer(count));
    }
    duck_session_close(&session);
    if (rc != AGNES_OK) {
        json_decref(counts);
        return agnes_error_wrap(err, "reading %s", path);
    }
    *schema_version = (int)version;
    *contents = counts;
    return AGNES_OK;
}

/* The staged copy, made whole: a WAL copied along is replayed and
 * checkpointed into it (a private file: changing it changes nothing else). */
static int normalize_staged_database(const char *staging, agnes_error *err)
{
    char path[AGNES_PATH_MAX], wal[AGNES_PATH_MAX];
    if (util_path_join(path, sizeof path, staging, "system.duckdb", err) ||
        util_path_join(wal, sizeof wal, staging, "system.duckdb.wal", err))
        return err ? err->code : AGNES_ERR_INVALID;
    if (!util_file_exists(wal))
        return AGNES_OK;
    duck_session session;
    if (duck_session_open(&session, path, false, err))
        return err ? err->code : AGNES_ERR_DB;
    int rc = duck_exec(session.connection, "CHECKPOINT", err);
    duck_session_close(&session);
    if (rc == AGNES_OK && file_size(wal) > 0)
        rc = agnes_error_set(err, AGNES_ERR_DB, "the snapshot's WAL could not be checkpointed into it");
    if (rc == AGNES_OK)
        unlink(wal);
    return rc;
}

/* Read a small state file into a new member; a missing file is skipped. */
static int add_small_file(member_list *list, const char *path, const char *name, agnes_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? AGNES_OK : agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) {
        log_warn("msg=\"not backed up: not a regular file\" path=\"%s\"", path);
        return AGNES_OK;
    }
    char *data = NULL;
    size_t len = 0;
    int rc = util_read_file(path, SMALL_FILE_MAX, &data, &len, err);
    if (rc == AGNES_ERR_NOT_FOUND)
        return AGNES_OK;
    if (rc != AGNES_OK)
        return rc;
    member *m = members_add(list, name, err);
    if (m == NULL) {
        free(data);
        return err ? err->code : AGNES_ERR_INVALID;
    }
    m->data = data;
    m->len = len;
    m->size = len;
    m->mode = st.st_mode & 07777;
    m->mtime = (int64_t)st.st_mtime;
    sha256_hex_of(data, len, m->sha256);
    return AGNES_OK;
}

/* certs/ and below: regular files and directories.  Names starting with a
 * dot are the rotate script's temporary directories, skipped. */
static int add_directory(member_list *list, const char *dir, const char *name, int depth, agnes_error *err)
{
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? AGNES_OK : agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode) || depth > 4)
        return AGNES_OK;
    member *m = members_add(list, name, err);
    if (m == NULL)
        return err ? err->code : AGNES_ERR_INVALID;
    m->directory = true;
    m->mode = st.st_mode & 07777;
    m->mtime = (int64_t)st.st_mtime;
    /* Sorted, so two archives of the same state list members in the same order. */
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, alphasort);
    if (n < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    int rc = AGNES_OK;
    for (int i = 0; i < n; i++) {
        const char *entry = entries[i]->d_name;
        if (rc == AGNES_OK && entry[0] != '.') {
            char path[AGNES_PATH_MAX], child[AGNES_PATH_MAX];
            if (util_path_join(path, sizeof path, dir, entry, err) ||
                util_format(child, sizeof child, err, "%s/%s", name, entry)) {
                rc = err ? err->code : AGNES_ERR_INVALID;
            } else if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
                rc = add_directory(list, path, child, depth + 1, err);
            } else {
                rc = add_small_file(list, path, child, err);
            }
        }
        free(entries[i]);
    }
    free(entries);
    return rc;
}

/* The configuration lock of http/configure.c, so .env_overlay and
 * instance.yaml are not caught between the two writes of one configure.
 * Opened without creating it when we are not the server: a lock file
 * created by root would lock the server's user out of it. */
static int lock_configuration(const agnes_runtime *rt, bool create, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    if (util_path_join(path, sizeof path, rt->paths.state_dir, CONFIGURE_LOCK_NAME, err))
        return -1;
    if (create)
        return util_lock_file(path, 0600, true, err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -2; /* no lock file: no configure ever ran, nothing to wait for */
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -2;
        }
    }
    return fd;
}

static int collect_members(const agnes_runtime *rt, system_db *db, const char *staging, member_list *list,
                           agnes_error *err)
{
    static const enum state_file small_files[] = {STATE_JWT_SECRET, STATE_SESSION_SECRET, STATE_ENV_OVERLAY,
                                                  STATE_INSTANCE_YAML};
    int lock = lock_configuration(rt, db != NULL, err);
    if (lock == -1)
        return err ? err->code : AGNES_ERR_IO;
    int rc = stage_system_db(rt, db, staging, err);
    for (size_t i = 0; rc == AGNES_OK && i < sizeof small_files / sizeof small_files[0]; i++) {
        char path[AGNES_PATH_MAX];
        rc = paths_state_file(&rt->paths, small_files[i], path, sizeof path, err);
        if (rc == AGNES_OK)
            rc = add_small_file(list, path, paths_state_file_name(small_files[i]), err);
    }
    if (rc == AGNES_OK) {
        char certs[AGNES_PATH_MAX];
        rc = paths_state_file(&rt->paths, STATE_CERTS_DIR, certs, sizeof certs, err);
        if (rc == AGNES_OK)
            rc = add_directory(list, certs, paths_state_file_name(STATE_CERTS_DIR), 0, err);
    }
    if (lock >= 0)
        close(lock);
    return rc;
}

static void format_mode(mode_t mode, char out[8])
{
    snprintf(out, 8, "%04o", (unsigned)(mode & 07777));
}

static json_t *build_manifest(const agnes_runtime *rt, const member_list *list, int schema_version, json_t *contents)
{
    char created_at[32], mode[8], host[256] = "";
    util_utc_now_iso(created_at);
    gethostname(host, sizeof host - 1);
    json_t *files = json_array();
    for (size_t i = 0; i < list->count; i++) {
        const member *m = &list->items[i];
        format_mode(m->mode, mode);
        if (m->directory)
            json_array_append_new(files, json_pack("{s:s, s:s, s:s}", "name", m->name, "type", "directory", "mode",
                                                   mode));
        else
            json_array_append_new(files, json_pack("{s:s, s:s, s:I, s:s, s:s}", "name", m->name, "type", "file",
                                                   "size", (json_int_t)m->size, "sha256", m->sha256, "mode", mode));
    }
    /* Secrets taken from the environment are not in the state tier: a host
     * restored from this archive needs the same values in its .env. */
    json_t *from_env = json_array();
    static const enum config_key secret_keys[] = {CFG_JWT_SECRET, CFG_SESSION_SECRET};
    for (size_t i = 0; i < 2; i++)
        if (config_is_set(&rt->config, secret_keys[i]) && rt->config.values[secret_keys[i]].source == CONFIG_SOURCE_ENV)
            json_array_append_new(from_env, json_string(config_spec(secret_keys[i])->env_name));
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o}", "format", BACKUP_FORMAT,
                     "format_version", BACKUP_FORMAT_VERSION, "created_at", created_at, "agnes_version",
                     rt->version.version, "channel", rt->version.channel, "commit_sha", rt->version.commit_sha,
                     "image_tag", rt->version.tag, "schema_version", schema_version, "state_dir",
                     rt->paths.state_dir, "hostname", host, "secrets_from_environment", from_env, "contents",
                     contents, "files", files);
}

static int make_staging(const char *work_dir, const char *label, char *out, size_t out_size, agnes_error *err)
{
    if (util_format(out, out_size, err, "%s/.%s-XXXXXX", work_dir, label))
        return err ? err->code : AGNES_ERR_INVALID;
    if (mkdtemp(out) == NULL)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create a staging directory in %s: %s", work_dir,
                               strerror(errno));
    return AGNES_OK;
}

int backup_write(const agnes_runtime *rt, system_db *db, const char *work_dir, int out_fd, json_t **manifest_out,
                 agnes_error *err)
{
    char staging[AGNES_PATH_MAX] = "";
    member_list list = {calloc(MEMBERS_MAX, sizeof(member)), 0};
    json_t *manifest = NULL, *contents = NULL;
    char *manifest_text = NULL;
    archive_writer writer = {0};
    int schema_version = 0;
    int rc;
    if (list.items == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if ((rc = make_staging(work_dir, "agnes-backup-stage", staging, sizeof staging, err)))
        goto done;
    /* system.duckdb is member 0: collect_members stages it first. */
    member *db_member = members_add(&list, "system.duckdb", err);
    if (db_member == NULL) {
        rc = err ? err->code : AGNES_ERR_INVALID;
        goto done;
    }
    db_member->mode = 0600;
    db_member->mtime = util_unix_now();
    if ((rc = util_path_join(db_member->path, sizeof db_member->path, staging, "system.duckdb", err)) ||
        (rc = collect_members(rt, db, staging, &list, err)) || (rc = normalize_staged_database(staging, err)) ||
        (rc = inspect_database(db_member->path, &schema_version, &contents, err)) ||
        (rc = sha256_hex_of_file(db_member->path, &db_member->size, db_member->sha256, err)))
        goto done;
    manifest = build_manifest(rt, &list, schema_version, contents);
    contents = NULL; /* owned by the manifest now */
    manifest_text = manifest ? json_dumps(manifest, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (manifest_text == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot serialise the backup manifest");
        goto done;
    }
    if ((rc = archive_writer_open_fd(&writer, out_fd, err)) ||
        (rc = archive_write_bytes(&writer, BACKUP_MANIFEST_NAME, 0600, util_unix_now(), manifest_text,
                                  strlen(manifest_text), err)))
        goto done;
    for (size_t i = 0; i < list.count; i++) {
        member *m = &list.items[i];
        if (m->directory) {
            rc = archive_write_directory(&writer, m->name, m->mode, m->mtime, err);
        } else if (m->data != NULL || m->path[0] == '\0') {
            rc = archive_write_bytes(&writer, m->name, m->mode, m->mtime, m->data ? m->data : "", m->len, err);
        } else {
            char sha[65];
            uint64_t size = 0;
            rc = archive_write_path(&writer, m->name, m->mode, m->mtime, m->path, &size, sha, err);
            if (rc == AGNES_OK && (size != m->size || strcmp(sha, m->sha256) != 0))
                rc = agnes_error_set(err, AGNES_ERR_IO, "the staged %s changed while it was archived", m->name);
        }
        if (rc != AGNES_OK)
            goto done;
    }
    rc = archive_writer_finish(&writer, err);
done:
    archive_writer_abort(&writer);
    if (staging[0] != '\0')
        util_remove_tree(staging, NULL);
    members_free(&list);
    json_decref(contents);
    free(manifest_text);
    if (rc == AGNES_OK && manifest_out != NULL)
        *manifest_out = json_incref(manifest);
    json_decref(manifest);
    return rc;
}

/* ---- reading an archive back ---- */

/* Names a restore may create: the state files, and certs/ below it with
 * plain components (no "..", no empty or hidden parts, no odd bytes). */
static bool allowed_member_name(const char *name, bool *is_directory_allowed)
{
    static const char *const exact[] = {"system.duckdb", "system.duckdb.wal", ".jwt_secret", ".session_secret",
                                        ".env_overlay", "instance.yaml"};
    *is_directory_allowed = false;
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    if (strcmp(name, "certs") == 0) {
        *is_directory_allowed = true;
        return true;
    }
    if (strncmp(name, "certs/", 6) != 0)
        return false;
    const char *p = name + 6;
    size_t part = 0;
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/') {
            if (part == 0)
                return false;
            part = 0;
            continue;
        }
        if (part == 0 && c == '.')
            return false;
        if (c < 0x21 || c > 0x7e || c == '\\')
            return false;
        part++;
    }
    *is_directory_allowed = true;
    return part > 0;
}

typedef struct expected_member {
    const char *name;
    bool directory;
    uint64_t size;
    const char *sha256;
    bool seen;
} expected_member;

static int parse_manifest(const char *archive_path, json_t *manifest, expected_member **out, size_t *count,
                          agnes_error *err)
{
    const char *format = json_string_value(json_object_get(manifest, "format"));
    json_t *version = json_object_get(manifest, "format_version");
    json_t *files = json_object_get(manifest, "files");
    if (format == NULL || strcmp(format, BACKUP_FORMAT) != 0 || !json_is_integer(version) || !json_is_array(files) ||
        !json_is_integer(json_object_get(manifest, "schema_version")))
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s is not an agnes backup: its %s lacks format, "
                               "format_version, schema_version or files",
                               archive_path, BACKUP_MANIFEST_NAME);
    if (json_integer_value(version) > BACKUP_FORMAT_VERSION)
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "%s is a backup of format %lld, written by agnes %s; this agnes reads format %d. Use "
                               "agnes %s or newer",
                               archive_path, (long long)json_integer_value(version),
                               json_string_value(json_object_get(manifest, "agnes_version")), BACKUP_FORMAT_VERSION,
                               json_string_value(json_object_get(manifest, "agnes_version")));
    size_t n = json_array_size(files);
    if (n > MEMBERS_MAX)
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s lists %zu files; a backup holds at most %d", archive_path, n,
                               MEMBERS_MAX);
    expected_member *list = calloc(n ? n : 1, sizeof *list);
    if (list == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(files, i);
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *type = json_string_value(json_object_get(item, "type"));
        bool dir_ok = false;
        if (name == NULL || type == NULL || !allowed_member_name(name, &dir_ok)) {
            free(list);
            return agnes_error_set(err, AGNES_ERR_INVALID,
                                   "%s: the manifest lists \"%s\", which is not a file of the state tier; the archive "
                                   "is not a backup agnes can restore",
                                   archive_path, name ? name : "(no name)");
        }
        list[i].name = name;
        list[i].directory = strcmp(type, "directory") == 0;
        if (list[i].directory && !dir_ok) {
            free(list);
            return agnes_error_set(err, AGNES_ERR_INVALID, "%s: \"%s\" cannot be a directory", archive_path, name);
        }
        if (!list[i].directory) {
            json_t *size = json_object_get(item, "size");
            const char *sha = json_string_value(json_object_get(item, "sha256"));
            if (!json_is_integer(size) || json_integer_value(size) < 0 || sha == NULL || strlen(sha) != 64) {
                free(list);
                return agnes_error_set(err, AGNES_ERR_INVALID, "%s: the manifest entry of %s has no size or sha256",
                                       archive_path, name);
            }
            list[i].size = (uint64_t)json_integer_value(size);
            list[i].sha256 = sha;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(list[j].name, name) == 0) {
                free(list);
                return agnes_error_set(err, AGNES_ERR_INVALID, "%s: the manifest lists %s twice", archive_path, name);
            }
    }
    *out = list;
    *count = n;
    return AGNES_OK;
}

static int extract_file(archive_reader *reader, const char *path, const expected_member *expected,
                        const char *archive_path, agnes_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    char *buf = malloc(1 << 16);
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    uint64_t total = 0;
    int rc = buf ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    while (rc == AGNES_OK) {
        long n = archive_reader_read(reader, buf, 1 << 16, err);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0)
            break;
        crypto_hash_sha256_update(&state, (unsigned char *)buf, (unsigned long long)n);
        total += (uint64_t)n;
        if (write_all(fd, buf, (size_t)n) != 0)
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    free(buf);
    if (rc == AGNES_OK && fsync(fd) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == AGNES_OK)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (rc != AGNES_OK)
        return rc;
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[65];
    crypto_hash_sha256_final(&state, digest);
    util_hex_encode(digest, sizeof digest, hex);
    if (total != expected->size || strcmp(hex, expected->sha256) != 0)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s is damaged: %s has %llu bytes with SHA-256 %.12s..., the manifest says %llu bytes "
                               "with %.12s...",
                               archive_path, expected->name, (unsigned long long)total, hex,
                               (unsigned long long)expected->size, expected->sha256);
    return AGNES_OK;
}

/* Extract and check everything into staging (an empty private directory).
 * With refuse_newer, an archive of a newer schema stops before any member
 * but the manifest is extracted. */
static int read_archive(const char *archive_path, const char *staging, bool refuse_newer, json_t **manifest_out,
                        agnes_error *err)
{
    archive_reader reader;
    archive_entry entry;
    json_t *manifest = NULL;
    expected_member *expected = NULL;
    size_t expected_count = 0;
    char *text = NULL;
    int rc = archive_reader_open(&reader, archive_path, err);
    if (rc != AGNES_OK)
        return rc;
    int more = archive_reader_next(&reader, &entry, err);
    if (more < 0) {
        rc = more;
        goto done;
    }
    if (more == 0 || entry.type != ARCHIVE_FILE || strcmp(entry.name, BACKUP_MANIFEST_NAME) != 0 ||
        entry.size > MANIFEST_MAX) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s is not an agnes backup: it does not start with %s",
                             archive_path, BACKUP_MANIFEST_NAME);
        goto done;
    }
    if ((text = malloc((size_t)entry.size + 1)) == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    size_t got = 0;
    while (got < entry.size) {
        long n = archive_reader_read(&reader, text + got, (size_t)entry.size - got, err);
        if (n <= 0) {
            rc = n < 0 ? (int)n : agnes_error_set(err, AGNES_ERR_INVALID, "%s: the manifest is cut short", archive_path);
            goto done;
        }
        got += (size_t)n;
    }
    text[got] = '\0';
    json_error_t parse_error;
    if ((manifest = json_loads(text, 0, &parse_error)) == NULL || !json_is_object(manifest)) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s: %s is not valid JSON (%s)", archive_path,
                             BACKUP_MANIFEST_NAME, manifest ? "not an object" : parse_error.text);
        goto done;
    }
    if ((rc = parse_manifest(archive_path, manifest, &expected, &expected_count, err)))
        goto done;
    int schema = (int)json_integer_value(json_object_get(manifest, "schema_version"));
    if (refuse_newer && schema > migrations_latest()) {
        rc = agnes_error_set(err, AGNES_ERR_STATE,
                             "%s holds system.duckdb of schema version %d (agnes %s); this agnes knows versions up to "
                             "%d and never downgrades. Restore it with agnes %s or newer",
                             archive_path, schema, json_string_value(json_object_get(manifest, "agnes_version")),
                             migrations_latest(), json_string_value(json_object_get(manifest, "agnes_version")));
        goto done;
    }
    while ((more = archive_reader_next(&reader, &entry, err)) > 0) {
        expected_member *e = NULL;
        for (size_t i = 0; i < expected_count && e == NULL; i++)
            if (strcmp(expected[i].name, entry.name) == 0)
                e = &expected[i];
        if (e == NULL || e->seen) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s holds %s %s, which its manifest does not list", archive_path,
                                 e ? "a second" : "an entry", entry.name);
            goto done;
        }
        e->seen = true;
        if (e->directory != (entry.type == ARCHIVE_DIRECTORY)) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s: %s is a %s in the archive but a %s in its manifest",
                                 archive_path, entry.name, entry.type == ARCHIVE_DIRECTORY ? "directory" : "file",
                                 e->directory ? "directory" : "file");
            goto done;
        }
        char path[AGNES_PATH_MAX];
        if ((rc = util_path_join(path, sizeof path, staging, entry.name, err)))
            goto done;
        if (e->directory) {
            if (mkdir(path, 0700) != 0) {
                rc = agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", path, strerror(errno));
                goto done;
            }
        } else if ((rc = extract_file(&reader, path, e, archive_path, err))) {
            goto done;
        }
    }
    if (more < 0) {
        rc = more;
        goto done;
    }
    for (size_t i = 0; i < expected_count; i++)
        if (!expected[i].seen) {
            rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s is incomplete: %s is in its manifest but not in the archive",
                                 archive_path, expected[i].name);
            goto done;
        }
    /* The bytes are right; now the database must open and say what the manifest says. */
    char db_path[AGNES_PATH_MAX];
    if ((rc = util_path_join(db_path, sizeof db_path, staging, "system.duckdb", err)))
        goto done;
    if (!util_file_exists(db_path)) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s holds no system.duckdb: it is not a backup of a state tier",
                             archive_path);
        goto done;
    }
    int found_schema = 0;
    json_t *counts = NULL;
    if ((rc = inspect_database(db_path, &found_schema, &counts, err))) {
        agnes_error_wrap(err, "%s: its system.duckdb does not open", archive_path);
        goto done;
    }
    json_t *listed = json_object_get(manifest, "contents");
    bool same = found_schema == schema && (listed == NULL || json_equal(listed, counts));
    json_decref(counts);
    if (!same) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID,
                             "%s: its system.duckdb (schema %d) does not match the manifest (schema %d, contents)",
                             archive_path, found_schema, schema);
        goto done;
    }
done:
    archive_reader_close(&reader);
    free(expected);
    free(text);
    if (rc == AGNES_OK && manifest_out != NULL)
        *manifest_out = json_incref(manifest);
    json_decref(manifest);
    return rc;
}

int backup_verify(const char *archive_path, const char *work_dir, json_t **manifest_out, agnes_error *err)
{
    char staging[AGNES_PATH_MAX];
    int rc = make_staging(work_dir, "agnes-verify", staging, sizeof staging, err);
    if (rc == AGNES_OK)
        rc = read_archive(archive_path, staging, false, manifest_out, err);
    util_remove_tree(staging, NULL);
    return rc;
}

/* ---- restoring ---- */

int backup_control_address(const char *state_dir, struct sockaddr_un *address, int *dir_fd, agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    *dir_fd = -1;
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (util_path_join(path, sizeof path, state_dir, BACKUP_CONTROL_SOCKET_NAME, err))
        return err ? err->code : AGNES_ERR_INVALID;
    if (strlen(path) < sizeof address->sun_path) {
        memcpy(address->sun_path, path, strlen(path) + 1);
        return AGNES_OK;
    }
    /* sun_path holds 107 bytes; a deeper STATE_DIR is reached through its
     * descriptor's /proc entry, which names the same directory. */
    *dir_fd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", state_dir, strerror(errno));
    snprintf(address->sun_path, sizeof address->sun_path, "/proc/self/fd/%d/%s", *dir_fd, BACKUP_CONTROL_SOCKET_NAME);
    return AGNES_OK;
}

int backup_control_connect(const char *state_dir, agnes_error *err)
{
    struct sockaddr_un address;
    int dir_fd = -1;
    if (backup_control_address(state_dir, &address, &dir_fd, err))
        return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot create a socket: %s", strerror(errno));
    } else if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        agnes_error_set(err, errno == ENOENT || errno == ECONNREFUSED ? AGNES_ERR_NOT_FOUND : AGNES_ERR_IO,
                        "no server answers on %s/%s: %s", state_dir, BACKUP_CONTROL_SOCKET_NAME, strerror(errno));
        close(fd);
        fd = -1;
    }
    if (dir_fd >= 0)
        close(dir_fd);
    return fd;
}

/* A server owning state_dir answers on its control socket. */
static bool server_answers(const char *state_dir)
{
    int fd = backup_control_connect(state_dir, NULL);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static bool ignorable_entry(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, "lost+found") == 0 ||
           strcmp(name, BACKUP_CONTROL_SOCKET_NAME) == 0 || strcmp(name, CONFIGURE_LOCK_NAME) == 0 ||
           strncmp(name, ".agnes-restore-", 15) == 0;
}

/* What is in state_dir that a restore would sit on: "" when nothing. */
static int list_occupants(const char *state_dir, char *out, size_t out_size, agnes_error *err)
{
    out[0] = '\0';
    DIR *d = opendir(state_dir);
    if (d == NULL)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot list %s: %s", state_dir, strerror(errno));
    struct dirent *entry;
    size_t shown = 0;
    while ((entry = readdir(d)) != NULL) {
        if (ignorable_entry(entry->d_name))
            continue;
        size_t used = strlen(out);
        if (shown++ < 6)
            snprintf(out + used, out_size - used, "%s%s", used ? ", " : "", entry->d_name);
        else if (shown == 7)
            snprintf(out + used, out_size - used, ", ...");
    }
    closedir(d);
    return AGNES_OK;
}

/* With force: move what the archive replaces into .pre-restore-<time>/ -
 * nothing is deleted, and a stale system.duckdb.wal can never be replayed
 * onto the restored database. */
static int move_aside(const char *state_dir, char *aside, size_t aside_size, agnes_error *err)
{
    static const enum state_file replaced[] = {STATE_SYSTEM_DB, STATE_SYSTEM_DB_WAL, STATE_SYSTEM_DB_PRE_MIGRATE,
                                               STATE_JWT_SECRET, STATE_SESSION_SECRET, STATE_ENV_OVERLAY,
                                               STATE_INSTANCE_YAML, STATE_CERTS_DIR};
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    aside[0] = '\0';
    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) {
        const char *name = paths_state_file_name(replaced[i]);
        char from[AGNES_PATH_MAX], to[AGNES_PATH_MAX];
        struct stat st;
        if (util_path_join(from, sizeof from, state_dir, name, err))
            return err ? err->code : AGNES_ERR_INVALID;
        if (lstat(from, &st) != 0)
            continue;
        if (aside[0] == '\0') {
            if (util_format(aside, aside_size, err, "%s/.pre-restore-%s", state_dir, stamp))
                return err ? err->code : AGNES_ERR_INVALID;
            if (mkdir(aside, 0700) != 0 && errno != EEXIST)
                return agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", aside, strerror(errno));
        }
        if (util_path_join(to, sizeof to, aside, name, err))
            return err ? err->code : AGNES_ERR_INVALID;
        if (rename(from, to) != 0)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot move %s aside to %s: %s", from, to, strerror(errno));
    }
    return AGNES_OK;
}

/* Modes and owners of the restored tree: secrets 0600, directories at
 * least 0700, and when root restores for a server that runs as someone
 * else, the files belong to whoever owns state_dir. */
static int finish_modes(const char *path, const char *name, bool directory, mode_t archived, const struct stat *owner,
                        agnes_error *err)
{
    mode_t mode = directory ? ((archived & 0755) | 0700) : is_secret_name(name) ? 0600 : ((archived & 0644) | 0600);
    if (chmod(path, mode) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot set the mode of %s: %s", path, strerror(errno));
    if (owner != NULL && lchown(path, owner->st_uid, owner->st_gid) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot give %s to uid %u: %s", path, (unsigned)owner->st_uid,
                               strerror(errno));
    return AGNES_OK;
}

int backup_restore(const char *archive_path, const char *state_dir, bool force, json_t **manifest_out,
                   restore_report *report, agnes_error *err)
{
    char staging[AGNES_PATH_MAX] = "", occupants[1024];
    json_t *manifest = NULL;
    int rc;
    memset(report, 0, sizeof *report);
    if (!util_file_exists(archive_path))
        return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "%s does not exist", archive_path);
    if ((rc = util_mkdir_p(state_dir, 0700, err)))
        return rc;
    if (server_answers(state_dir))
        return agnes_error_set(err, AGNES_ERR_BUSY,
                               "a server is running on %s (it answers on %s/%s); stop it first (`docker compose stop "
                               "app`), then restore",
                               state_dir, state_dir, BACKUP_CONTROL_SOCKET_NAME);
    char db_path[AGNES_PATH_MAX];
    if ((rc = util_path_join(db_path, sizeof db_path, state_dir, "system.duckdb", err)))
        return rc;
    if (util_file_exists(db_path)) { /* a server without the socket (or another tool) may still hold it */
        duckdb_database probe = NULL;
        agnes_error probe_err;
        if (duck_open(db_path, true, &probe, &probe_err) == AGNES_ERR_STATE)
            return agnes_error_set(err, AGNES_ERR_BUSY, "%s is open in another process; stop the server first",
                                   db_path);
        if (probe != NULL)
            duckdb_close(&probe);
    }
    if ((rc = list_occupants(state_dir, occupants, sizeof occupants, err)))
        return rc;
    if (occupants[0] != '\0' && !force)
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "%s is not empty (%s); restore into an empty directory, or add --force to move what "
                               "is there into %s/.pre-restore-<time>/ first",
                               state_dir, occupants, state_dir);
    /* Staged inside state_dir: the same filesystem, so each member moves into place with a rename. */
    if ((rc = make_staging(state_dir, "agnes-restore", staging, sizeof staging, err)) ||
        (rc = read_archive(archive_path, staging, true, &manifest, err)))
        goto done;
    if (occupants[0] != '\0' && (rc = move_aside(state_dir, report->moved_aside, sizeof report->moved_aside, err)))
        goto done;
    struct stat owner_stat;
    const struct stat *owner = NULL;
    if (geteuid() == 0 && stat(state_dir, &owner_stat) == 0 && owner_stat.st_uid != 0) {
        owner = &owner_stat;
        report->chowned = true;
    }
    json_t *files = json_object_get(manifest, "files");
    /* Modes first (children before their directory moves), then the
     * renames: top-level names only, the database last, so a restore cut
     * short shows no system.duckdb and a server will not start half-restored. */
    for (size_t pass = 0; pass < 3; pass++) {
        size_t i;
        json_t *item;
        json_array_foreach(files, i, item) {
            const char *name = json_string_value(json_object_get(item, "name"));
            bool directory = strcmp(json_string_value(json_object_get(item, "type")), "directory") == 0;
            bool database = strncmp(name, "system.duckdb", 13) == 0;
            char from[AGNES_PATH_MAX], to[AGNES_PATH_MAX];
            if ((rc = util_path_join(from, sizeof from, staging, name, err)) ||
                (rc = util_path_join(to, sizeof to, state_dir, name, err)))
                goto done;
            if (pass == 0) {
                const char *archived = json_string_value(json_object_get(item, "mode"));
                unsigned long mode = strtoul(archived ? archived : "0600", NULL, 8);
                if ((rc = finish_modes(from, name, directory, (mode_t)mode, owner, err)))
                    goto done;
                report->files++;
                continue;
            }
            if (strchr(name, '/') != NULL || database != (pass == 2))
                continue;
            if (rename(from, to) != 0) {
                rc = agnes_error_set(err, AGNES_ERR_IO, "cannot move %s into place: %s", to, strerror(errno));
                goto done;
            }
        }
    }
    if (chmod(state_dir, 0700) != 0 && errno != EPERM)
        log_warn("msg=\"cannot set the mode of the state directory\" path=\"%s\"", state_dir);
    if (owner != NULL && chown(state_dir, owner->st_uid, owner->st_gid) != 0)
        log_warn("msg=\"cannot set the owner of the state directory\" path=\"%s\"", state_dir);
    if (report->moved_aside[0] != '\0' && owner != NULL && chown(report->moved_aside, owner->st_uid, owner->st_gid) != 0)
        log_warn("msg=\"cannot set the owner of the moved-aside state\" path=\"%s\"", report->moved_aside);
    rc = util_fsync_parent_dir(db_path, err);
done:
    if (staging[0] != '\0')
        util_remove_tree(staging, NULL);
    if (rc == AGNES_OK && manifest_out != NULL)
        *manifest_out = json_incref(manifest);
    json_decref(manifest);
    return rc;
}

/* ---- scheduled archives ---- */

int backup_default_path(const char *dir, int64_t unix_seconds, char *out, size_t out_size, agnes_error *err)
{
    char stamp[32];
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    return util_format(out, out_size, err, "%s/%s%s%s", dir, BACKUP_NAME_PREFIX, stamp, BACKUP_NAME_SUFFIX);
}

int backup_create_partial(const char *final_path, char *partial_path, size_t partial_size, agnes_error *err)
{
    char dir[AGNES_PATH_MAX];
    const char *slash = strrchr(final_path, '/');
    const char *base = slash ? slash + 1 : final_path;
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == final_path)
        snprintf(dir, sizeof dir, "/");
    else if (util_format(dir, sizeof dir, err, "%.*s", (int)(slash - final_path), final_path))
        return -1;
    if (base[0] == '\0') {
        agnes_error_set(err, AGNES_ERR_INVALID, "%s names a directory, not an archive file", final_path);
        return -1;
    }
    if (util_format(partial_path, partial_size, err, "%s/.%s%sXXXXXX", dir, base, BACKUP_PARTIAL_MARK))
        return -1;
    int fd = mkostemp(partial_path, O_CLOEXEC);
    if (fd < 0)
        agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", partial_path, strerror(errno));
    return fd;
}

int backup_publish(int fd, const char *partial_path, const char *final_path, agnes_error *err)
{
    if (fsync(fd) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", partial_path, strerror(errno));
    if (renameat2(AT_FDCWD, partial_path, AT_FDCWD, final_path, RENAME_NOREPLACE) != 0) {
        int failure = errno;
        if (failure == EEXIST)
            return agnes_error_set(err, AGNES_ERR_STATE, "%s already exists; choose another --output (an archive is "
                                   "never overwritten)",
                                   final_path);
        /* Filesystems without RENAME_NOREPLACE: a hard link refuses an existing name the same way. */
        if (failure != EINVAL && failure != ENOSYS)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", partial_path, final_path,
                                   strerror(failure));
        if (link(partial_path, final_path) != 0)
            return agnes_error_set(err, errno == EEXIST ? AGNES_ERR_STATE : AGNES_ERR_IO, "cannot publish %s: %s",
                                   final_path, strerror(errno));
        unlink(partial_path);
    }
    return util_fsync_parent_dir(final_path, err);
}

/* agnes-backup-YYYYMMDDTHHMMSSZ.tar.gz -> its time, or -1. */
static int64_t scheduled_name_time(const char *name)
{
    size_t prefix = strlen(BACKUP_NAME_PREFIX), suffix = strlen(BACKUP_NAME_SUFFIX), len = strlen(name);
    if (len != prefix + 16 + suffix || strncmp(name, BACKUP_NAME_PREFIX, prefix) != 0 ||
        strcmp(name + len - suffix, BACKUP_NAME_SUFFIX) != 0)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(name + prefix, "%Y%m%dT%H%M%SZ", &tm);
    if (end == NULL || end != name + prefix + 16)
        return -1;
    return (int64_t)timegm(&tm);
}

typedef struct scheduled_archive {
    char name[256];
    int64_t time;
} scheduled_archive;

static int newest_first(const void *a, const void *b)
{
    const scheduled_archive *x = a, *y = b;
    return x->time < y->time ? 1 : x->time > y->time ? -1 : strcmp(y->name, x->name);
}

/* Scheduled archives in dir, newest first (caller frees); -1 if unreadable. */
static int list_scheduled(const char *dir, scheduled_archive **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    size_t count = 0, capacity = 0;
    scheduled_archive *list = NULL;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        int64_t t = scheduled_name_time(entry->d_name);
        if (t < 0)
            continue;
        if (count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            scheduled_archive *bigger = realloc(list, grown * sizeof *list);
            if (bigger == NULL)
                break;
            list = bigger;
            capacity = grown;
        }
        snprintf(list[count].name, sizeof list[count].name, "%s", entry->d_name);
        list[count].time = t;
        count++;
    }
    closedir(d);
    if (count > 1)
        qsort(list, count, sizeof *list, newest_first);
    *out = list;
    return (int)count;
}

int backup_newest(const char *dir, int64_t *unix_seconds, char *path, size_t path_size)
{
    scheduled_archive *list = NULL;
    int count = list_scheduled(dir, &list);
    *unix_seconds = 0;
    if (path_size > 0)
        path[0] = '\0';
    if (count > 0) {
        *unix_seconds = list[0].time;
        snprintf(path, path_size, "%s/%s", dir, list[0].name);
    }
    free(list);
    return count < 0 ? -1 : 0;
}

int backup_prune(const char *dir, int keep)
{
    scheduled_archive *list = NULL;
    int count = list_scheduled(dir, &list), deleted = 0;
    for (int i = keep; i < count; i++) {
        char path[AGNES_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, list[i].name) < (int)sizeof path && unlink(path) == 0) {
            deleted++;
            log_info("msg=\"old backup removed\" path=\"%s\" keep=%d", path, keep);
        }
    }
    free(list);
    return deleted;
}

int backup_sweep_partials(const char *dir, int64_t max_age_seconds)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int swept = 0;
    int64_t now = util_unix_now();
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        if (entry->d_name[0] != '.' || strstr(entry->d_name, BACKUP_PARTIAL_MARK) == NULL)
            continue;
        char path[AGNES_PATH_MAX];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s", dir, entry->d_name) >= (int)sizeof path || lstat(path, &st) != 0 ||
            !S_ISREG(st.st_mode) || now - (int64_t)st.st_mtime < max_age_seconds)
            continue;
        if (unlink(path) == 0) {
            swept++;
            log_info("msg=\"partial backup of an interrupted run removed\" path=\"%s\"", path);
        }
    }
    closedir(d);
    return swept;
}

int backup_sweep_staging(const char *dir, int64_t max_age_seconds)
{
    int64_t now = util_unix_now();
    static const char *const prefixes[] = {".agnes-backup-stage-", ".agnes-verify-", ".agnes-restore-"};
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int swept = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            char path[AGNES_PATH_MAX];
            struct stat st;
            if (strncmp(entry->d_name, prefixes[i], strlen(prefixes[i])) != 0 ||
                snprintf(path, sizeof path, "%s/%s", dir, entry->d_name) >= (int)sizeof path || lstat(path, &st) != 0 ||
                !S_ISDIR(st.st_mode) || now - (int64_t)st.st_mtime < max_age_seconds)
                continue;
            if (util_remove_tree(path, NULL) == AGNES_OK) {
                swept++;
                log_info("msg=\"staging of an interrupted backup or restore removed\" path=\"%s\"", path);
            }
        }
    }
    closedir(d);
    return swept;
}

/* ---- status for health ---- */

int backup_status_init(backup_status *status, agnes_error *err)
{
    memset(status, 0, sizeof *status);
    if (pthread_mutex_init(&status->lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    return AGNES_OK;
}

void backup_status_free(backup_status *status)
{
    pthread_mutex_destroy(&status->lock);
}

json_t *backup_status_json(backup_status *status, int64_t now, char *warning, size_t warning_size)
{
    warning[0] = '\0';
    pthread_mutex_lock(&status->lock);
    if (!status->enabled) {
        pthread_mutex_unlock(&status->lock);
        return json_pack("{s:b}", "enabled", false);
    }
    char last_at[32], attempt_at[32];
    util_utc_iso(status->last_at, last_at);
    util_utc_iso(status->last_attempt_at, attempt_at);
    json_t *details = json_pack("{s:b, s:s, s:I, s:I}", "enabled", true, "dir", status->dir, "interval_seconds",
                                (json_int_t)status->interval_seconds, "keep", (json_int_t)status->keep);
    json_object_set_new(details, "last_backup_at", status->last_at ? json_string(last_at) : json_null());
    json_object_set_new(details, "last_backup_age_seconds",
                        status->last_at ? json_integer((json_int_t)(now - status->last_at)) : json_null());
    json_object_set_new(details, "last_backup_file", status->last_at ? json_string(status->last_path) : json_null());
    json_object_set_new(details, "last_attempt_at", status->last_attempt_at ? json_string(attempt_at) : json_null());
    if (status->last_error[0] != '\0') {
        json_object_set_new(details, "last_error", json_string(status->last_error));
        snprintf(warning, warning_size,
                 "The last scheduled backup of the state tier failed: %s. It is retried; fix the cause (see "
                 "docs/deploy.md, Backups).",
                 status->last_error);
    }
    int64_t since = status->last_at ? status->last_at : status->watch_since;
    long long age = (long long)(now - since), limit = 2 * status->interval_seconds;
    if (warning[0] == '\0' && age > limit) {
        if (status->last_at)
            snprintf(warning, warning_size,
                     "The newest backup of the state tier in %s is %lld seconds old, more than two intervals "
                     "(AGNES_BACKUP_INTERVAL=%lld); check the server log for why backups stopped.",
                     status->dir, age, status->interval_seconds);
        else
            snprintf(warning, warning_size,
                     "No backup of the state tier has been written to %s for %lld seconds (AGNES_BACKUP_INTERVAL=%lld); "
                     "check the server log.",
                     status->dir, age, status->interval_seconds);
    }
    pthread_mutex_unlock(&status->lock);
    return details;
}
