#include "core/targz.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/util.h"

#define BLOCK 512
#define CHUNK (256 * 1024)

typedef struct writer {
    int fd;
    z_stream z;
    crypto_hash_sha256_state hash;
    unsigned char out[CHUNK];
    const char *path; /* for messages */
} writer;

/* Compress len bytes (flush at the end) and write what zlib produced. */
static int writer_put(writer *w, const void *data, size_t len, int flush, agnes_error *err)
{
    w->z.next_in = (Bytef *)data;
    w->z.avail_in = (uInt)len;
    do {
        w->z.next_out = w->out;
        w->z.avail_out = sizeof w->out;
        int zrc = deflate(&w->z, flush);
        if (zrc == Z_STREAM_ERROR)
            return agnes_error_set(err, AGNES_ERR_IO, "cannot compress %s (zlib error)", w->path);
        size_t produced = sizeof w->out - w->z.avail_out;
        crypto_hash_sha256_update(&w->hash, w->out, produced);
        for (size_t done = 0; done < produced;) {
            ssize_t n = write(w->fd, w->out + done, produced - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", w->path, strerror(errno));
            done += (size_t)n;
        }
    } while (w->z.avail_out == 0);
    return AGNES_OK;
}

static void octal(char *field, size_t width, unsigned long long value)
{
    snprintf(field, width, "%0*llo", (int)width - 1, value);
}

/* One ustar header block. */
static int header(writer *w, const char *name, char type, mode_t mode, unsigned long long size, time_t mtime,
                  agnes_error *err)
{
    unsigned char block[BLOCK];
    memset(block, 0, sizeof block);
    if (strlen(name) >= 100)
        return agnes_error_set(err, AGNES_ERR_INVALID, "archive member name too long for ustar: %s", name);
    memcpy(block, name, strlen(name));
    octal((char *)block + 100, 8, mode & 07777);
    octal((char *)block + 108, 8, 0);
    octal((char *)block + 116, 8, 0);
    octal((char *)block + 124, 12, size);
    octal((char *)block + 136, 12, (unsigned long long)mtime);
    memset(block + 148, ' ', 8); /* the checksum is computed over spaces in its own field */
    block[156] = (unsigned char)type;
    memcpy(block + 257, "ustar", 6);
    memcpy(block + 263, "00", 2);
    memcpy(block + 265, "root", 4);
    memcpy(block + 297, "root", 4);
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof block; i++)
        sum += block[i];
    snprintf((char *)block + 148, 8, "%06o", sum);
    block[155] = ' ';
    return writer_put(w, block, sizeof block, Z_NO_FLUSH, err);
}

/* The directories above name ("a/b/c" -> "a/", "a/b/"), each once. */
static int parent_dirs(writer *w, const char *name, char (*written)[100], size_t *written_count, time_t now,
                       agnes_error *err)
{
    char dir[100];
    for (const char *slash = strchr(name, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        size_t len = (size_t)(slash - name) + 1;
        if (len >= sizeof dir)
            return agnes_error_set(err, AGNES_ERR_INVALID, "archive member name too long for ustar: %s", name);
        memcpy(dir, name, len);
        dir[len] = '\0';
        bool seen = false;
        for (size_t i = 0; i < *written_count && !seen; i++)
            seen = strcmp(written[i], dir) == 0;
        if (seen)
            continue;
        if (*written_count >= 32)
            return agnes_error_set(err, AGNES_ERR_INVALID, "too many directories in the archive");
        memcpy(written[(*written_count)++], dir, len + 1);
        if (header(w, dir, '5', 0755, 0, now, err) != AGNES_OK)
            return err->code;
    }
    return AGNES_OK;
}

static int add_file(writer *w, const targz_entry *entry, unsigned char *buffer, agnes_error *err)
{
    int in = open(entry->source_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st) != 0) {
        if (in >= 0)
            close(in);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", entry->source_path, strerror(errno));
    }
    int rc = header(w, entry->name, '0', entry->mode, (unsigned long long)st.st_size, st.st_mtime, err);
    unsigned long long left = (unsigned long long)st.st_size;
    while (rc == AGNES_OK && left > 0) {
        ssize_t n = read(in, buffer, left < CHUNK ? (size_t)left : CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* shorter than fstat said: the archive would be corrupt */
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", entry->source_path,
                                 n < 0 ? strerror(errno) : "the file shrank while it was archived");
            break;
        }
        rc = writer_put(w, buffer, (size_t)n, Z_NO_FLUSH, err);
        left -= (unsigned long long)n;
    }
    close(in);
    size_t pad = (size_t)((BLOCK - st.st_size % BLOCK) % BLOCK);
    if (rc == AGNES_OK && pad > 0) {
        memset(buffer, 0, pad);
        rc = writer_put(w, buffer, pad, Z_NO_FLUSH, err);
    }
    return rc;
}

int targz_write(const char *out_path, const targz_entry *entries, size_t count, int level, char sha256_hex[65],
                agnes_error *err)
{
    char tmp[4200];
    char written[32][100];
    size_t written_count = 0;
    unsigned char *buffer = malloc(CHUNK);
    writer *w = calloc(1, sizeof *w);
    bool z_ready = false;
    int rc = AGNES_OK;
    if (buffer == NULL || w == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
        goto done;
    }
    w->fd = -1;
    w->path = out_path;
    if (util_format(tmp, sizeof tmp, err, "%s.tmp.%d", out_path, (int)getpid()) != AGNES_OK) {
        rc = err->code;
        goto done;
    }
    if ((w->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
    if (deflateInit2(&w->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start zlib");
        goto done;
    }
    z_ready = true;
    crypto_hash_sha256_init(&w->hash);
    time_t now = time(NULL);
    for (size_t i = 0; i < count && rc == AGNES_OK; i++) {
        rc = parent_dirs(w, entries[i].name, written, &written_count, now, err);
        if (rc == AGNES_OK)
            rc = add_file(w, &entries[i], buffer, err);
    }
    if (rc == AGNES_OK) { /* two zero blocks end a tar archive */
        memset(buffer, 0, 2 * BLOCK);
        rc = writer_put(w, buffer, 2 * BLOCK, Z_FINISH, err);
    }
    if (rc == AGNES_OK && fsync(w->fd) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot fsync %s: %s", tmp, strerror(errno));
    if (rc == AGNES_OK && close(w->fd) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == AGNES_OK)
        w->fd = -1;
    if (rc == AGNES_OK && rename(tmp, out_path) != 0)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot rename %s to %s: %s", tmp, out_path, strerror(errno));
    if (rc == AGNES_OK)
        rc = util_fsync_parent_dir(out_path, err);
    if (rc == AGNES_OK) {
        unsigned char digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&w->hash, digest);
        util_hex_encode(digest, sizeof digest, sha256_hex);
    }
done:
    if (w != NULL) {
        if (z_ready)
            deflateEnd(&w->z);
        if (w->fd >= 0) {
            close(w->fd);
            unlink(tmp);
        }
    }
    free(w);
    free(buffer);
    return rc;
}
