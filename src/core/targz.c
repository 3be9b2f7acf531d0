#include "core/targz.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/archive.h"
#include "core/strbuf.h"
#include "core/util.h"

/* Directory entries for every parent of name not written yet ("agnes",
 * "agnes/bin" before "agnes/bin/agnes"); `written` lists them, one per line. */
static int write_parents(archive_writer *writer, const char *name, strbuf *written, int64_t mtime, agnes_error *err)
{
    for (const char *slash = strchr(name, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        char dir[ARCHIVE_NAME_MAX + 2], line[ARCHIVE_NAME_MAX + 4];
        size_t len = (size_t)(slash - name);
        if (len > ARCHIVE_NAME_MAX)
            return agnes_error_set(err, AGNES_ERR_INVALID, "archive entry name \"%s\" is too long for ustar", name);
        memcpy(dir, name, len);
        dir[len] = '\0';
        snprintf(line, sizeof line, "\n%s\n", dir);
        if (written->data != NULL && strstr(written->data, line) != NULL)
            continue;
        if (archive_write_directory(writer, dir, 0755, mtime, err) != AGNES_OK)
            return err->code;
        strbuf_appendf(written, "%s\n", dir);
    }
    return strbuf_failed(written) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory") : AGNES_OK;
}

/* The lower-case hex SHA-256 of the file at path. */
static int hash_file(const char *path, char sha256_hex[65], agnes_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init(&state);
    unsigned char buffer[1 << 16], digest[crypto_hash_sha256_BYTES];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            crypto_hash_sha256_update(&state, buffer, (unsigned long long)n);
    int saved = errno;
    close(fd);
    if (n < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", path, strerror(saved));
    crypto_hash_sha256_final(&state, digest);
    for (size_t i = 0; i < sizeof digest; i++)
        snprintf(sha256_hex + 2 * i, 3, "%02x", digest[i]);
    return AGNES_OK;
}

int targz_write(const char *out_path, const targz_entry *entries, size_t count, int level, char sha256_hex[65],
                agnes_error *err)
{
    char tmp[AGNES_PATH_MAX + 32];
    if (util_format(tmp, sizeof tmp, err, "%s.tmp.%ld", out_path, (long)getpid()))
        return err->code;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    archive_writer writer = {0};
    strbuf written;
    strbuf_init(&written);
    strbuf_append_str(&written, "\n");
    int rc = archive_writer_open_fd(&writer, fd, err);
    bool open_writer = rc == AGNES_OK;
    if (rc == AGNES_OK)
        rc = archive_writer_set_level(&writer, level, err);
    for (size_t i = 0; rc == AGNES_OK && i < count; i++) {
        struct stat st;
        if (stat(entries[i].source_path, &st) != 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", entries[i].source_path, strerror(errno));
            break;
        }
        rc = write_parents(&writer, entries[i].name, &written, (int64_t)st.st_mtime, err);
        if (rc == AGNES_OK)
            rc = archive_write_path(&writer, entries[i].name, entries[i].mode, (int64_t)st.st_mtime,
                                    entries[i].source_path, NULL, NULL, err);
    }
    if (rc == AGNES_OK) {
        open_writer = false;
        rc = archive_writer_finish(&writer, err);
    }
    if (open_writer)
        archive_writer_abort(&writer);
    if (rc == AGNES_OK && fsync(fd) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == AGNES_OK)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == AGNES_OK)
        rc = hash_file(tmp, sha256_hex, err);
    if (rc == AGNES_OK && rename(tmp, out_path) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, out_path, strerror(errno));
    if (rc != AGNES_OK)
        unlink(tmp);
    strbuf_free(&written);
    return rc;
}
