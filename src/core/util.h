/*
 * util.h - small helpers shared by every module: bounded string building,
 * whole-file reads, atomic file writes, directory creation, time stamps.
 *
 * Every function that touches the filesystem follows the error convention in
 * error.h and checks every system call; the atomic writers are the only way
 * the state tier is written (temp file in the same directory, fsync, rename,
 * fsync of the directory), so a kill -9 leaves either the old or the new
 * file, never a torn one.
 */
#ifndef AGNES_CORE_UTIL_H
#define AGNES_CORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

#define AGNES_PATH_MAX 4096

/* snprintf that reports truncation as AGNES_ERR_INVALID instead of silently
 * cutting a path in half. */
int util_format(char *out, size_t out_size, agnes_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Join directory and name with exactly one '/'. */
int util_path_join(char *out, size_t out_size, const char *dir, const char *name, agnes_error *err);

/* strdup that returns NULL only for a NULL input or out of memory. */
char *util_strdup(const char *s);

/* Remove leading and trailing ASCII whitespace in place; returns s. */
char *util_trim(char *s);

bool util_starts_with(const char *s, const char *prefix);

/* Parse a whole decimal integer; false on junk, overflow or empty input. */
bool util_parse_long(const char *s, long long *out);

/* Read a whole file into a fresh NUL-terminated buffer (caller frees).
 * Refuses files larger than max_bytes.  AGNES_ERR_NOT_FOUND when the file
 * does not exist, so callers can tell "missing" from "unreadable". */
int util_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len, agnes_error *err);

/* Write data to path atomically with the given mode (temp + fsync + rename +
 * directory fsync). */
int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, agnes_error *err);

/* Copy src to dst atomically (dst appears whole or not at all). */
int util_copy_file_atomic(const char *src, const char *dst, agnes_error *err);

/* The same, but never replacing: when dst already exists, AGNES_ERR_IO
 * with *taken true (pick another name); dst keeps src's mode. */
int util_copy_file_new(const char *src, const char *dst, bool *taken, agnes_error *err);

/* mkdir -p with the given mode for created components. */
int util_mkdir_p(const char *path, mode_t mode, agnes_error *err);

bool util_file_exists(const char *path);

/* Remove a directory tree (symlinks are removed, never followed).
 * A missing path is success. */
int util_remove_tree(const char *path, agnes_error *err);
bool util_is_directory(const char *path);

/* fsync the directory that contains path (after a rename into it). */
int util_fsync_parent_dir(const char *path, agnes_error *err);

/* An exclusive flock on path (created with mode): the descriptor, to close
 * when done, or -1 (err says why; AGNES_ERR_BUSY when wait is false and
 * another holder has it).  Each call opens its own descriptor, so the lock
 * works between threads as well as processes. */
int util_lock_file(const char *path, mode_t mode, bool wait, agnes_error *err);

/* Lower-case hex of len bytes into out (needs 2*len+1 bytes). */
void util_hex_encode(const uint8_t *bytes, size_t len, char *out);

/* A random (version 4) UUID, dashed, lower case: 36 chars + NUL. */
void util_uuid4(char out[37]);

/* Current UTC time as ISO-8601 with seconds ("2026-11-23T02:34:00Z"). */
void util_utc_now_iso(char out[32]);
void util_utc_iso(int64_t unix_seconds, char out[32]);

/* Monotonic clock in milliseconds and wall clock in seconds. */
double util_monotonic_ms(void);
int64_t util_unix_now(void);

#endif
