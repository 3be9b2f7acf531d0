/*
 * `agnes backup [--output FILE|-] [--json]`, `agnes backup --verify FILE`,
 * `agnes restore FILE [--state-dir DIR] [--force] [--json]` (SPEC §18).
 *
 * backup: with a server running on STATE_DIR, the archive is written by the
 * server itself (it alone can read system.duckdb consistently; see
 * cli/serve_backup.h) into a file this command created; with no server, this
 * command opens system.duckdb read-only and writes it.  Either way the file
 * is verified (store/backup.h: every SHA-256, the database opens) before it
 * is renamed to its final name, so an archive under that name is whole.
 * Without --output it goes to AGNES_BACKUP_DIR (or the working directory)
 * as agnes-backup-<UTC time>.tar.gz; `--output -` writes it to stdout (to
 * carry it off a container: `docker compose exec -T app agnes backup
 * --output - > state.tar.gz`).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/runtime.h"
#include "store/backup.h"
#include "store/migrations.h"

/* How long `agnes backup` waits for the server's archive. */
#define SERVER_BACKUP_TIMEOUT_MS (60 * 60 * 1000)

static void usage(void)
{
    fprintf(stderr, "usage: agnes backup [--output FILE|-] [--json]\n"
                    "       agnes backup --verify FILE [--json]\n"
                    "       agnes restore FILE [--state-dir DIR] [--force] [--json]\n");
}

static const char *temp_dir(void)
{
    const char *dir = getenv("TMPDIR");
    return dir && dir[0] ? dir : "/tmp";
}

static void print_json(json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        printf("%s\n", text);
    free(text);
}

/* "3 users, 2 tokens, 5 registered tables" from the manifest's contents. */
static void describe_contents(json_t *manifest, char *out, size_t out_size)
{
    json_t *contents = json_object_get(manifest, "contents");
    snprintf(out, out_size, "%lld users, %lld groups, %lld grants, %lld tokens, %lld registered tables",
             (long long)json_integer_value(json_object_get(contents, "users")),
             (long long)json_integer_value(json_object_get(contents, "user_groups")),
             (long long)json_integer_value(json_object_get(contents, "resource_grants")),
             (long long)json_integer_value(json_object_get(contents, "personal_access_tokens")),
             (long long)json_integer_value(json_object_get(contents, "table_registry")));
}

static void warn_environment_secrets(json_t *manifest)
{
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(manifest, "secrets_from_environment"), i, name)
        fprintf(stderr,
                "agnes: note: %s came from the environment, so it is not in the archive; a restored instance needs "
                "the same value (in .env), or every session and token is invalid\n",
                json_string_value(name));
}

/* Ask the server on STATE_DIR to write the archive into fd.  AGNES_ERR_NOT_FOUND
 * when no server answers (the caller then writes it itself). */
static int backup_through_server(const char *state_dir, int fd, json_t **manifest, agnes_error *err)
{
    int sock = backup_control_connect(state_dir, err);
    if (sock < 0)
        return err->code;
    char request[] = "backup\n";
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = {.iov_base = request, .iov_len = strlen(request)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    int rc = AGNES_OK;
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot send the request to the server: %s", strerror(errno));
        goto done;
    }
    char answer[AGNES_ERROR_MESSAGE_MAX * 8];
    size_t used = 0;
    while (used < sizeof answer - 1 && memchr(answer, '\n', used) == NULL) {
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        int ready = poll(&pfd, 1, SERVER_BACKUP_TIMEOUT_MS);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            rc = agnes_error_set(err, AGNES_ERR_TIMEOUT, "the server did not finish the backup within an hour");
            goto done;
        }
        ssize_t n = recv(sock, answer + used, sizeof answer - 1 - used, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO,
                                 "the server closed the connection before the backup was done (did it stop?)");
            goto done;
        }
        used += (size_t)n;
    }
    answer[used] = '\0';
    json_error_t parse_error;
    json_t *doc = json_loads(answer, JSON_DISABLE_EOF_CHECK, &parse_error);
    const char *status = json_string_value(json_object_get(doc, "status"));
    if (status != NULL && strcmp(status, "ok") == 0 && json_is_object(json_object_get(doc, "manifest"))) {
        *manifest = json_incref(json_object_get(doc, "manifest"));
    } else {
        const char *detail = json_string_value(json_object_get(doc, "detail"));
        rc = agnes_error_set(err, AGNES_ERR_IO, "the server could not write the backup: %s",
                             detail ? detail : "unreadable answer");
    }
    json_decref(doc);
done:
    close(sock);
    return rc;
}

static int copy_to_stdout(const char *path, agnes_error *err)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char buf[1 << 16];
    int rc = AGNES_OK;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write to stdout: %s", strerror(errno));
            break;
        }
    }
    close(in);
    if (rc == AGNES_OK && fflush(stdout) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write to stdout: %s", strerror(errno));
    return rc;
}

static int take_backup(const char *output, bool json)
{
    agnes_runtime rt = {0};
    agnes_error err;
    agnes_error_clear(&err);
    char final_path[AGNES_PATH_MAX], partial[AGNES_PATH_MAX] = "", work_dir[AGNES_PATH_MAX];
    json_t *manifest = NULL;
    int fd = -1, exit_code = 1;
    bool to_stdout = output != NULL && strcmp(output, "-") == 0;
    bool through_server = false;
    if (runtime_load(&rt, &err))
        goto fail;
    const char *backup_dir = config_get_string(&rt.config, CFG_BACKUP_DIR);
    if (to_stdout) {
        if (util_format(final_path, sizeof final_path, &err, "%s/agnes-backup-stdout-%d.tar.gz", temp_dir(),
                        (int)getpid()))
            goto fail;
    } else if (output != NULL) {
        if (util_format(final_path, sizeof final_path, &err, "%s", output))
            goto fail;
    } else {
        const char *dir = backup_dir[0] ? backup_dir : ".";
        if ((backup_dir[0] && util_mkdir_p(dir, 0700, &err)) ||
            backup_default_path(dir, util_unix_now(), final_path, sizeof final_path, &err))
            goto fail;
    }
    if (!to_stdout && util_file_exists(final_path)) {
        agnes_error_set(&err, AGNES_ERR_STATE, "%s already exists; an archive is never overwritten (choose another "
                        "--output)",
                        final_path);
        goto fail;
    }
    if ((fd = backup_create_partial(final_path, partial, sizeof partial, &err)) < 0)
        goto fail;
    /* Staging (the database copy) beside the archive: wherever there is room for one there is room for the other. */
    const char *slash = strrchr(partial, '/');
    snprintf(work_dir, sizeof work_dir, "%.*s", slash ? (int)(slash - partial) : 1, slash ? partial : ".");
    /* What backups killed an hour or more ago left here (another one may be running now). */
    backup_sweep_partials(work_dir, 3600);
    backup_sweep_staging(work_dir, 3600);
    int rc = backup_through_server(rt.paths.state_dir, fd, &manifest, &err);
    if (rc == AGNES_ERR_NOT_FOUND) { /* no server: write it here */
        agnes_error_clear(&err);
        rc = backup_write(&rt, NULL, work_dir, fd, &manifest, &err);
    } else {
        through_server = true;
    }
    if (rc != AGNES_OK)
        goto fail;
    json_decref(manifest);
    manifest = NULL;
    /* What is published has been read back whole. */
    if (fsync(fd) != 0) {
        agnes_error_set(&err, AGNES_ERR_IO, "cannot write %s: %s", partial, strerror(errno));
        goto fail;
    }
    if (backup_verify(partial, work_dir, &manifest, &err)) {
        agnes_error_wrap(&err, "the archive just written does not verify");
        goto fail;
    }
    if (to_stdout) {
        if (copy_to_stdout(partial, &err))
            goto fail;
        unlink(partial);
        close(fd);
        fd = -1;
        warn_environment_secrets(manifest);
        exit_code = 0;
        goto done;
    }
    if (backup_publish(fd, partial, final_path, &err))
        goto fail;
    struct stat st;
    long long bytes = stat(final_path, &st) == 0 ? (long long)st.st_size : -1;
    if (json) {
        json_t *doc = json_pack("{s:s, s:I, s:b, s:O}", "path", final_path, "bytes", (json_int_t)bytes,
                                "taken_by_server", through_server, "manifest", manifest);
        print_json(doc);
        json_decref(doc);
    } else {
        char contents[256];
        describe_contents(manifest, contents, sizeof contents);
        printf("backup written to %s (%lld bytes; schema %lld, agnes %s; %s)%s\n", final_path, bytes,
               (long long)json_integer_value(json_object_get(manifest, "schema_version")),
               json_string_value(json_object_get(manifest, "agnes_version")), contents,
               through_server ? "" : " - no server was running, taken from the files");
    }
    warn_environment_secrets(manifest);
    exit_code = 0;
    goto done;
fail:
    fprintf(stderr, "agnes backup: %s\n", err.message);
    if (partial[0] != '\0')
        unlink(partial);
done:
    if (fd >= 0)
        close(fd);
    json_decref(manifest);
    runtime_free(&rt);
    return exit_code;
}

static int verify_backup(const char *path, bool json)
{
    agnes_error err;
    agnes_error_clear(&err);
    json_t *manifest = NULL;
    if (backup_verify(path, temp_dir(), &manifest, &err)) {
        if (json) {
            json_t *doc = json_pack("{s:s, s:b, s:s}", "path", path, "ok", false, "detail", err.message);
            print_json(doc);
            json_decref(doc);
        }
        fprintf(stderr, "agnes backup --verify: %s\n", err.message);
        return 1;
    }
    long long schema = (long long)json_integer_value(json_object_get(manifest, "schema_version"));
    if (json) {
        json_t *doc = json_pack("{s:s, s:b, s:b, s:O}", "path", path, "ok", true, "restorable_here",
                                schema <= migrations_latest(), "manifest", manifest);
        print_json(doc);
        json_decref(doc);
    } else {
        char contents[256];
        describe_contents(manifest, contents, sizeof contents);
        printf("%s is a complete backup: taken %s by agnes %s (schema %lld), %zu files, every SHA-256 matches, "
               "system.duckdb opens (%s)\n",
               path, json_string_value(json_object_get(manifest, "created_at")),
               json_string_value(json_object_get(manifest, "agnes_version")), schema,
               json_array_size(json_object_get(manifest, "files")), contents);
        if (schema > migrations_latest())
            printf("note: its schema is newer than this agnes knows (%d); restore it with agnes %s or newer\n",
                   migrations_latest(), json_string_value(json_object_get(manifest, "agnes_version")));
    }
    json_decref(manifest);
    return 0;
}

int command_backup(int argc, char **argv)
{
    const char *output = NULL, *verify = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if ((strcmp(argv[i], "--output") == 0 || strcmp(argv[i], "-o") == 0) && i + 1 < argc && !output) {
            output = argv[++i];
        } else if (strcmp(argv[i], "--verify") == 0 && i + 1 < argc && !verify) {
            verify = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else {
            usage();
            return EXIT_USAGE;
        }
    }
    if (verify != NULL && output != NULL) {
        fprintf(stderr, "agnes backup: --verify checks an existing archive; it takes no --output\n");
        return EXIT_USAGE;
    }
    if (output != NULL && output[0] == '\0') {
        fprintf(stderr, "agnes backup: --output needs a file name (or - for stdout)\n");
        return EXIT_USAGE;
    }
    if (output != NULL && strcmp(output, "-") == 0 && json) {
        fprintf(stderr, "agnes backup: --json and --output - both use stdout; choose one\n");
        return EXIT_USAGE;
    }
    return verify ? verify_backup(verify, json) : take_backup(output, json);
}

int command_restore(int argc, char **argv)
{
    const char *archive = NULL, *state_dir = NULL;
    bool force = false, json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) {
            force = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--state-dir") == 0 && i + 1 < argc && !state_dir) {
            state_dir = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else if (argv[i][0] != '-' && archive == NULL) {
            archive = argv[i];
        } else {
            usage();
            return EXIT_USAGE;
        }
    }
    if (archive == NULL || (state_dir != NULL && state_dir[0] == '\0')) {
        usage();
        return EXIT_USAGE;
    }
    agnes_runtime rt = {0};
    agnes_error err;
    agnes_error_clear(&err);
    json_t *manifest = NULL;
    restore_report report;
    int exit_code = 1;
    char target[AGNES_PATH_MAX];
    if (state_dir == NULL) {
        if (runtime_load(&rt, &err))
            goto fail;
        snprintf(target, sizeof target, "%s", rt.paths.state_dir);
    } else if (state_dir[0] != '/') {
        char cwd[AGNES_PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL || util_path_join(target, sizeof target, cwd, state_dir, &err)) {
            agnes_error_set(&err, AGNES_ERR_INVALID, "--state-dir %s: cannot make it absolute", state_dir);
            goto fail;
        }
    } else {
        snprintf(target, sizeof target, "%s", state_dir);
    }
    if (backup_restore(archive, target, force, &manifest, &report, &err))
        goto fail;
    long long schema = (long long)json_integer_value(json_object_get(manifest, "schema_version"));
    if (json) {
        json_t *doc = json_pack("{s:s, s:s, s:i, s:s?, s:b, s:O}", "archive", archive, "state_dir", target, "files",
                                report.files, "moved_aside", report.moved_aside[0] ? report.moved_aside : NULL,
                                "chowned", report.chowned, "manifest", manifest);
        print_json(doc);
        json_decref(doc);
    } else {
        char contents[256];
        describe_contents(manifest, contents, sizeof contents);
        printf("restored %d entries into %s from %s (taken %s by agnes %s, schema %lld; %s)\n", report.files, target,
               archive, json_string_value(json_object_get(manifest, "created_at")),
               json_string_value(json_object_get(manifest, "agnes_version")), schema, contents);
        if (report.moved_aside[0])
            printf("the state that was there is in %s\n", report.moved_aside);
        if (schema < migrations_latest())
            printf("the next start migrates system.duckdb from schema %lld to %d (keeping system.duckdb.pre-migrate)\n",
                   schema, migrations_latest());
        printf("start the server now (e.g. `docker compose up -d`) and check it with `agnes doctor`\n");
    }
    warn_environment_secrets(manifest);
    if (geteuid() == 0 && !report.chowned)
        fprintf(stderr, "agnes restore: note: the files belong to root; a server running as another user (the image "
                        "runs as uid 999) needs `chown -R 999:999 %s`\n",
                target);
    exit_code = 0;
    goto done;
fail:
    fprintf(stderr, "agnes restore: %s\n", err.message);
done:
    json_decref(manifest);
    runtime_free(&rt);
    return exit_code;
}
