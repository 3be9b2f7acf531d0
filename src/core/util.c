#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

int util_format(char *out, size_t out_size, agnes_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, out_size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= out_size)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "value is too long (%d bytes, limit %zu): shorten the path or setting",
                               n, out_size - 1);
    return AGNES_OK;
}

int util_path_join(char *out, size_t out_size, const char *dir, const char *name, agnes_error *err)
{
    size_t dir_len = strlen(dir);
    while (dir_len > 1 && dir[dir_len - 1] == '/')
        dir_len--;
    while (*name == '/')
        name++;
    return util_format(out, out_size, err, "%.*s/%s", (int)dir_len, dir, name);
}

char *util_strdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}

char *util_trim(char *s)
{
    char *start = s;
    while (*start && isspace((unsigned char)*start))
        start++;
    size_t n = strlen(start);
    while (n > 0 && isspace((unsigned char)start[n - 1]))
        n--;
    memmove(s, start, n);
    s[n] = '\0';
    return s;
}

bool util_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool util_parse_long(const char *s, long long *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = v;
    return true;
}

int util_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, agnes_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return agnes_error_set(err, AGNES_ERR_NOT_FOUND, "%s does not exist", path);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    int rc = AGNES_OK;
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) != 0) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = agnes_error_set(err, AGNES_ERR_IO, "%s is a directory, expected a file", path);
        goto fail;
    }
    if ((size_t)st.st_size > max_bytes) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s is %lld bytes, larger than the %zu allowed",
                             path, (long long)st.st_size, max_bytes);
        goto fail;
    }
    /* Read to EOF, not to st_size: files under /proc report size 0. */
    size_t cap = (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096, total = 0;
    if ((buf = malloc(cap)) == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading %s", path);
        goto fail;
    }
    for (;;) {
        if (total + 1 == cap) {
            char *grown = cap > max_bytes + 1 ? NULL : realloc(buf, cap * 2);
            if (grown == NULL) {
                rc = cap > max_bytes + 1
                         ? agnes_error_set(err, AGNES_ERR_INVALID, "%s is larger than the %zu bytes allowed", path,
                                           max_bytes)
                         : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading %s", path);
                goto fail;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + total, cap - 1 - total);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = agnes_error_set(err, AGNES_ERR_IO, "cannot read %s: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        total += (size_t)got;
    }
    if (total > max_bytes) {
        rc = agnes_error_set(err, AGNES_ERR_INVALID, "%s is %zu bytes, larger than the %zu allowed", path, total,
                             max_bytes);
        goto fail;
    }
    buf[total] = '\0';
    close(fd);
    *out = buf;
    if (out_len)
        *out_len = total;
    return AGNES_OK;
fail:
    free(buf);
    close(fd);
    return rc;
}

int util_fsync_parent_dir(const char *path, agnes_error *err)
{
    char dir[AGNES_PATH_MAX];
    if (util_format(dir, sizeof dir, err, "%s", path) != AGNES_OK)
        return AGNES_ERR_INVALID;
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = AGNES_OK;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = agnes_error_set(err, AGNES_ERR_IO, "cannot fsync directory %s: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Create a unique temp file beside path (path.tmp.<pid>.XXXXXX); fills
 * tmp_path.  Unique per call, not per process: two threads writing the
 * same path at once each get their own temp file (with one per process
 * they renamed each other's file away: "cannot rename ... No such file"). */
static int open_temp_beside(const char *path, mode_t mode, char *tmp_path, size_t tmp_size, agnes_error *err)
{
    if (util_format(tmp_path, tmp_size, err, "%s.tmp.%ld.XXXXXX", path, (long)getpid()) != AGNES_OK)
        return -1;
    int fd = mkostemp(tmp_path, O_CLOEXEC);
    if (fd < 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot create %s: %s", tmp_path, strerror(errno));
        return -1;
    }
    /* open() applies the umask; the state tier needs the exact mode (0600 secrets). */
    if (fchmod(fd, mode) != 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot chmod %s: %s", tmp_path, strerror(errno));
        close(fd);
        unlink(tmp_path);
        return -1;
    }
    return fd;
}

/* fsync and close the temp file, then move it to path: rename(2) over
 * whatever is there, or (exclusive) link(2), which fails with EEXIST
 * instead of replacing. */
static int finish_temp_as(int fd, const char *tmp_path, const char *path, bool exclusive, bool *taken,
                          agnes_error *err)
{
    if (fsync(fd) != 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot fsync %s: %s", tmp_path, strerror(errno));
        close(fd);
        unlink(tmp_path);
        return AGNES_ERR_IO;
    }
    if (close(fd) != 0) {
        unlink(tmp_path);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot close %s: %s", tmp_path, strerror(errno));
    }
    int moved = exclusive ? link(tmp_path, path) : rename(tmp_path, path);
    int saved = errno;
    if (exclusive || moved != 0)
        unlink(tmp_path);
    if (moved != 0) {
        if (taken)
            *taken = exclusive && saved == EEXIST;
        return agnes_error_set(err, AGNES_ERR_IO, "cannot %s %s to %s: %s", exclusive ? "link" : "rename", tmp_path,
                               path, strerror(saved));
    }
    return util_fsync_parent_dir(path, err);
}

static int finish_temp(int fd, const char *tmp_path, const char *path, agnes_error *err)
{
    return finish_temp_as(fd, tmp_path, path, false, NULL, err);
}

int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, agnes_error *err)
{
    char tmp_path[AGNES_PATH_MAX];
    int fd = open_temp_beside(path, mode, tmp_path, sizeof tmp_path, err);
    if (fd < 0)
        return err ? err->code : AGNES_ERR_IO;
    if (write_all(fd, data, len) != 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot write %s: %s", tmp_path, strerror(errno));
        close(fd);
        unlink(tmp_path);
        return AGNES_ERR_IO;
    }
    return finish_temp(fd, tmp_path, path, err);
}

static int copy_file(const char *src, const char *dst, bool exclusive, bool *taken, agnes_error *err);

int util_copy_file_atomic(const char *src, const char *dst, agnes_error *err)
{
    return copy_file(src, dst, false, NULL, err);
}

int util_copy_file_new(const char *src, const char *dst, bool *taken, agnes_error *err)
{
    *taken = false;
    return copy_file(src, dst, true, taken, err);
}

static int copy_file(const char *src, const char *dst, bool exclusive, bool *taken, agnes_error *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot open %s: %s", src, strerror(errno));
    struct stat st;
    if (fstat(in, &st) != 0) {
        close(in);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot stat %s: %s", src, strerror(errno));
    }
    char tmp_path[AGNES_PATH_MAX];
    int out = open_temp_beside(dst, st.st_mode & 07777, tmp_path, sizeof tmp_path, err);
    if (out < 0) {
        close(in);
        return err ? err->code : AGNES_ERR_IO;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n > 0 && write_all(out, buf, (size_t)n) != 0)) {
            agnes_error_set(err, AGNES_ERR_IO, "cannot copy %s to %s: %s", src, tmp_path, strerror(errno));
            close(in);
            close(out);
            unlink(tmp_path);
            return AGNES_ERR_IO;
        }
        if (n == 0)
            break;
    }
    close(in);
    return finish_temp_as(out, tmp_path, dst, exclusive, taken, err);
}

int util_mkdir_p(const char *path, mode_t mode, agnes_error *err)
{
    char buf[AGNES_PATH_MAX];
    if (util_format(buf, sizeof buf, err, "%s", path) != AGNES_OK)
        return AGNES_ERR_INVALID;
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST) {
                int failure = errno;
                if (failure == EACCES) /* typical of a root-owned host directory bind-mounted into the image */
                    return agnes_error_set(err, AGNES_ERR_IO,
                                           "cannot create directory %s: permission denied for uid %u. Fix: give the "
                                           "directory to this user (e.g. chown %u:%u the host directory mounted "
                                           "there)",
                                           buf, (unsigned)geteuid(), (unsigned)geteuid(), (unsigned)getegid());
                return agnes_error_set(err, AGNES_ERR_IO, "cannot create directory %s: %s", buf, strerror(failure));
            }
            if (!util_is_directory(buf))
                return agnes_error_set(err, AGNES_ERR_IO, "%s exists but is not a directory", buf);
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return AGNES_OK;
}

bool util_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool util_is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

void util_hex_encode(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

void util_utc_iso(int64_t unix_seconds, char out[32])
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void util_utc_now_iso(char out[32])
{
    util_utc_iso(util_unix_now(), out);
}

double util_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int64_t util_unix_now(void)
{
    return (int64_t)time(NULL);
}

void util_uuid4(char out[37])
{
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int util_remove_tree(const char *path, agnes_error *err)
{
    if (!util_file_exists(path))
        return AGNES_OK;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return AGNES_OK;
}

int util_lock_file(const char *path, mode_t mode, bool wait, agnes_error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) {
        agnes_error_set(err, AGNES_ERR_IO, "cannot open the lock file %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) != 0) {
        int failure = errno;
        close(fd);
        agnes_error_set(err, failure == EWOULDBLOCK ? AGNES_ERR_BUSY : AGNES_ERR_IO, "cannot lock %s: %s", path,
                        strerror(failure));
        return -1;
    }
    return fd;
}
