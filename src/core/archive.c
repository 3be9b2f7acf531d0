#include "core/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define BLOCK 512

/* The ustar header, field by field (POSIX.1-1988). */
typedef struct ustar_header {
    char name[100];
    char mode[8];
    char uid[8];
    char gid[8];
    char size[12];
    char mtime[12];
    char checksum[8];
    char typeflag;
    char linkname[100];
    char magic[6];
    char version[2];
    char uname[32];
    char gname[32];
    char devmajor[8];
    char devminor[8];
    char prefix[155];
    char pad[12];
} ustar_header;

_Static_assert(sizeof(ustar_header) == BLOCK, "a ustar header is one block");

/* Octal, NUL-terminated, zero-padded to the field width. */
static void put_octal(char *field, size_t width, uint64_t value)
{
    snprintf(field, width, "%0*llo", (int)(width - 1), (unsigned long long)value);
}

/* Sizes that do not fit 11 octal digits (8 GiB and more): base-256, the
 * form GNU tar and bsdtar both read. */
static void put_size(char *field, uint64_t value)
{
    if (value < (1ULL << 33)) {
        put_octal(field, 12, value);
        return;
    }
    memset(field, 0, 12);
    field[0] = (char)0x80;
    for (int i = 11; i >= 4; i--) {
        field[i] = (char)(value & 0xff);
        value >>= 8;
    }
}

static unsigned header_checksum(const ustar_header *h)
{
    const unsigned char *bytes = (const unsigned char *)h;
    unsigned sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (i >= offsetof(ustar_header, checksum) && i < offsetof(ustar_header, checksum) + 8) ? ' ' : bytes[i];
    return sum;
}

static int gz_write_all(archive_writer *writer, const void *data, size_t len, agnes_error *err)
{
    const char *p = data;
    while (len > 0) {
        unsigned chunk = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        int n = gzwrite(writer->gz, p, chunk);
        if (n <= 0) {
            int code = 0;
            const char *why = gzerror(writer->gz, &code);
            return agnes_error_set(err, AGNES_ERR_IO, "cannot write the archive: %s",
                                   code == Z_ERRNO ? strerror(errno) : why);
        }
        p += n;
        len -= (size_t)n;
    }
    return AGNES_OK;
}

static int write_header(archive_writer *writer, const char *name, char type, mode_t mode, int64_t mtime,
                        uint64_t size, agnes_error *err)
{
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > ARCHIVE_NAME_MAX)
        return agnes_error_set(err, AGNES_ERR_INVALID, "archive entry name \"%s\" is empty or longer than %d bytes",
                               name, ARCHIVE_NAME_MAX);
    ustar_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.name, name, name_len);
    put_octal(h.mode, sizeof h.mode, (uint64_t)(mode & 07777));
    put_octal(h.uid, sizeof h.uid, 0);
    put_octal(h.gid, sizeof h.gid, 0);
    put_size(h.size, size);
    put_octal(h.mtime, sizeof h.mtime, mtime > 0 ? (uint64_t)mtime : 0);
    h.typeflag = type;
    memcpy(h.magic, "ustar", 6);
    memcpy(h.version, "00", 2);
    put_octal(h.devmajor, sizeof h.devmajor, 0);
    put_octal(h.devminor, sizeof h.devminor, 0);
    snprintf(h.checksum, sizeof h.checksum, "%06o", header_checksum(&h));
    h.checksum[7] = ' ';
    return gz_write_all(writer, &h, sizeof h, err);
}

static int write_padding(archive_writer *writer, uint64_t size, agnes_error *err)
{
    static const char zeros[BLOCK];
    size_t pad = (size_t)((BLOCK - size % BLOCK) % BLOCK);
    return pad ? gz_write_all(writer, zeros, pad, err) : AGNES_OK;
}

int archive_writer_open_fd(archive_writer *writer, int fd, agnes_error *err)
{
    writer->gz = NULL;
    int copy = dup(fd); /* gzclose closes its descriptor; the caller keeps fd */
    if (copy < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot duplicate the archive descriptor: %s", strerror(errno));
    /* Level 6: system.duckdb is mostly empty blocks and compresses ~10x at
     * any level; higher levels cost time under no lock but gain little. */
    writer->gz = gzdopen(copy, "wb6");
    if (writer->gz == NULL) {
        close(copy);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start the gzip stream");
    }
    if (gzbuffer(writer->gz, 1 << 17) != 0) {
        archive_writer_abort(writer);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot size the gzip buffer");
    }
    return AGNES_OK;
}

int archive_writer_set_level(archive_writer *writer, int level, agnes_error *err)
{
    if (gzsetparams(writer->gz, level, Z_DEFAULT_STRATEGY) != Z_OK)
        return agnes_error_set(err, AGNES_ERR_INVALID, "gzip level %d is not one zlib accepts (1-9)", level);
    return AGNES_OK;
}

int archive_write_bytes(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, const void *data,
                        size_t len, agnes_error *err)
{
    if (write_header(writer, name, '0', mode, mtime, len, err) || gz_write_all(writer, data, len, err) ||
        write_padding(writer, len, err))
        return err ? err->code : AGNES_ERR_IO;
    return AGNES_OK;
}

int archive_write_path(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, const char *path,
                       uint64_t *size_out, char sha256_hex[65], agnes_error *err)
{
    int rc = AGNES_OK;
    unsigned char *buf = NULL;
    crypto_hash_sha256_state hash;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, errno == ENOENT ? AGNES_ERR_NOT_FOUND : AGNES_ERR_IO, "cannot open %s: %s", path,
                               strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if ((buf = malloc(1 << 16)) == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory archiving %s", path);
        goto done;
    }
    /* The header promises a size: the file must not change while it is read
     * (callers archive private copies or files nobody writes meanwhile). */
    uint64_t size = (uint64_t)st.st_size, copied = 0;
    if ((rc = write_header(writer, name, '0', mode, mtime, size, err)))
        goto done;
    crypto_hash_sha256_init(&hash);
    while (copied < size) {
        size_t want = size - copied < (1 << 16) ? (size_t)(size - copied) : (1 << 16);
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "%s changed size while it was archived (%s)", path,
                                 n < 0 ? strerror(errno) : "shorter than when it was opened");
            goto done;
        }
        crypto_hash_sha256_update(&hash, buf, (unsigned long long)n);
        if ((rc = gz_write_all(writer, buf, (size_t)n, err)))
            goto done;
        copied += (uint64_t)n;
    }
    if ((rc = write_padding(writer, size, err)))
        goto done;
    if (size_out)
        *size_out = size;
    if (sha256_hex) {
        unsigned char digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256_final(&hash, digest);
        util_hex_encode(digest, sizeof digest, sha256_hex);
    }
done:
    free(buf);
    close(fd);
    return rc;
}

int archive_write_directory(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, agnes_error *err)
{
    return write_header(writer, name, '5', mode, mtime, 0, err);
}

int archive_writer_finish(archive_writer *writer, agnes_error *err)
{
    static const char zeros[2 * BLOCK];
    int rc = gz_write_all(writer, zeros, sizeof zeros, err);
    int closed = gzclose(writer->gz);
    writer->gz = NULL;
    if (rc == AGNES_OK && closed != Z_OK)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot finish the archive's gzip stream (%s)",
                             closed == Z_ERRNO ? strerror(errno) : "zlib error");
    return rc;
}

void archive_writer_abort(archive_writer *writer)
{
    if (writer->gz != NULL)
        gzclose(writer->gz);
    writer->gz = NULL;
}

/* ---- reading ---- */

static int gz_read_exact(archive_reader *reader, void *buf, size_t len, agnes_error *err)
{
    char *p = buf;
    while (len > 0) {
        int n = gzread(reader->gz, p, (unsigned)len);
        if (n <= 0) {
            int code = 0;
            const char *why = gzerror(reader->gz, &code);
            if (n == 0 && code == Z_OK)
                why = "it ends early";
            return agnes_error_set(err, AGNES_ERR_INVALID, "%s is not a complete .tar.gz archive: %s", reader->path,
                                   code == Z_ERRNO ? strerror(errno) : why);
        }
        p += n;
        len -= (size_t)n;
    }
    return AGNES_OK;
}

static bool parse_number(const char *field, size_t width, uint64_t *out)
{
    if ((unsigned char)field[0] == 0x80) { /* base-256 */
        uint64_t value = 0;
        for (size_t i = 1; i < width; i++) {
            if (value >> 56)
                return false;
            value = (value << 8) | (unsigned char)field[i];
        }
        *out = value;
        return true;
    }
    uint64_t value = 0;
    size_t i = 0;
    while (i < width && field[i] == ' ')
        i++;
    bool any = false;
    for (; i < width && field[i] >= '0' && field[i] <= '7'; i++) {
        value = value * 8 + (uint64_t)(field[i] - '0');
        any = true;
    }
    for (; i < width; i++)
        if (field[i] != '\0' && field[i] != ' ')
            return false;
    *out = value;
    return any;
}

int archive_reader_open(archive_reader *reader, const char *path, agnes_error *err)
{
    memset(reader, 0, sizeof *reader);
    snprintf(reader->path, sizeof reader->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, errno == ENOENT ? AGNES_ERR_NOT_FOUND : AGNES_ERR_IO, "cannot open %s: %s", path,
                               strerror(errno));
    /* zlib reads data without a gzip header as is; an archive is always gzip. */
    unsigned char magic[2];
    if (pread(fd, magic, 2, 0) != 2 || magic[0] != 0x1f || magic[1] != 0x8b) {
        close(fd);
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s is not a complete .tar.gz archive: it has no gzip header",
                               path);
    }
    reader->gz = gzdopen(fd, "rb");
    if (reader->gz == NULL) {
        close(fd);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start reading %s", path);
    }
    gzbuffer(reader->gz, 1 << 17);
    return AGNES_OK;
}

static int skip_bytes(archive_reader *reader, uint64_t count, agnes_error *err)
{
    char buf[8192];
    while (count > 0) {
        size_t n = count < sizeof buf ? (size_t)count : sizeof buf;
        if (gz_read_exact(reader, buf, n, err))
            return err ? err->code : AGNES_ERR_INVALID;
        count -= n;
    }
    return AGNES_OK;
}

int archive_reader_next(archive_reader *reader, archive_entry *entry, agnes_error *err)
{
    if (skip_bytes(reader, reader->remaining + reader->padding, err))
        return err ? err->code : AGNES_ERR_INVALID;
    reader->remaining = reader->padding = 0;
    ustar_header h;
    if (gz_read_exact(reader, &h, sizeof h, err))
        return err ? err->code : AGNES_ERR_INVALID;
    static const char zeros[BLOCK];
    if (memcmp(&h, zeros, BLOCK) == 0) {
        /* The end: a second zero block must follow (else the archive was cut). */
        if (gz_read_exact(reader, &h, sizeof h, err))
            return err ? err->code : AGNES_ERR_INVALID;
        if (memcmp(&h, zeros, BLOCK) != 0)
            return agnes_error_set(err, AGNES_ERR_INVALID, "%s: data after an end-of-archive block", reader->path);
        return 0;
    }
    uint64_t checksum = 0, size = 0, mode = 0, mtime = 0;
    if (!parse_number(h.checksum, sizeof h.checksum, &checksum) || checksum != header_checksum(&h))
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s is damaged: a header checksum does not match",
                               reader->path);
    if (memcmp(h.magic, "ustar", 5) != 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s is not a ustar archive", reader->path);
    memset(entry, 0, sizeof *entry);
    size_t name_len = strnlen(h.name, sizeof h.name);
    if (h.prefix[0] != '\0' || name_len > ARCHIVE_NAME_MAX)
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s: an entry name is longer than %d bytes", reader->path,
                               ARCHIVE_NAME_MAX);
    memcpy(entry->name, h.name, name_len);
    if (!parse_number(h.size, sizeof h.size, &size) || !parse_number(h.mode, sizeof h.mode, &mode) ||
        !parse_number(h.mtime, sizeof h.mtime, &mtime))
        return agnes_error_set(err, AGNES_ERR_INVALID, "%s: entry %s has a malformed header", reader->path,
                               entry->name);
    if (h.typeflag == '0' || h.typeflag == '\0') {
        entry->type = ARCHIVE_FILE;
    } else if (h.typeflag == '5') {
        entry->type = ARCHIVE_DIRECTORY;
        size = 0;
    } else {
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s: entry %s is of tar type '%c'; only regular files and directories are accepted",
                               reader->path, entry->name, h.typeflag);
    }
    entry->mode = (mode_t)(mode & 07777);
    entry->size = size;
    entry->mtime = (int64_t)mtime;
    reader->remaining = size;
    reader->padding = (BLOCK - size % BLOCK) % BLOCK;
    return 1;
}

long archive_reader_read(archive_reader *reader, void *buf, size_t len, agnes_error *err)
{
    if (reader->remaining == 0)
        return 0;
    if (len > reader->remaining)
        len = (size_t)reader->remaining;
    if (len > (1u << 30))
        len = 1u << 30;
    if (gz_read_exact(reader, buf, len, err))
        return err ? err->code : AGNES_ERR_INVALID;
    reader->remaining -= len;
    return (long)len;
}

void archive_reader_close(archive_reader *reader)
{
    if (reader->gz != NULL)
        gzclose(reader->gz);
    reader->gz = NULL;
}
