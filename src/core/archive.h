/*
 * archive.h - a POSIX ustar archive inside one gzip stream (a .tar.gz).
 *
 * Used for backups of the state tier (store/backup.h) and the CLI tarball
 * the server serves (core/targz.h).  Why this format and
 * not a library such as libarchive: an operator restoring onto a bare host
 * can read it with the `tar -xzf` every system has, with or without agnes;
 * the only code it needs is zlib, which libcurl already links (no new
 * package in the image); and the reader only has to understand what the
 * writer produces - regular files and directories with short names - so it
 * stays small enough to audit.  Restoring never trusts a name from the
 * archive: callers compare each entry against the list of names they expect.
 *
 * Format facts (POSIX.1-1988 ustar, as GNU tar and bsdtar read it): 512-byte
 * header blocks; numeric fields in octal; sizes of 8 GiB and more in the
 * base-256 form both tools accept (first byte 0x80); data padded to 512
 * bytes; the archive ends with two zero blocks.  The gzip layer carries a
 * CRC-32, so a flipped or missing byte is found while reading.
 *
 * Invariants: a writer produces a complete archive only when
 * archive_writer_finish() returns AGNES_OK; on any error the caller
 * discards the output.  A reader reports truncation, a bad checksum or an
 * entry type it does not know as an error naming the entry.
 */
#ifndef AGNES_CORE_ARCHIVE_H
#define AGNES_CORE_ARCHIVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>

#include "core/error.h"

/* Names are stored in the 100-byte ustar name field: enough for the state
 * tier's own files, refused beyond. */
#define ARCHIVE_NAME_MAX 99

typedef struct archive_writer {
    gzFile gz;
} archive_writer;

/* Start a gzip-compressed archive on fd (written from its current offset;
 * the caller keeps ownership of fd and closes it after finish or abort). */
int archive_writer_open_fd(archive_writer *writer, int fd, agnes_error *err);

/* Change the gzip level (1 fastest .. 9 smallest; the default is 6) before
 * the first entry. */
int archive_writer_set_level(archive_writer *writer, int level, agnes_error *err);

/* Append a regular file whose bytes are in memory; mtime in Unix seconds. */
int archive_write_bytes(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, const void *data,
                        size_t len, agnes_error *err);

/* Append the regular file at path, streamed; *size_out (may be NULL) gets
 * its length and sha256_hex (may be NULL; 65 bytes) its SHA-256. */
int archive_write_path(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, const char *path,
                       uint64_t *size_out, char sha256_hex[65], agnes_error *err);

/* Append a directory entry (name without a trailing slash). */
int archive_write_directory(archive_writer *writer, const char *name, mode_t mode, int64_t mtime, agnes_error *err);

/* Write the end-of-archive blocks and flush the gzip trailer. */
int archive_writer_finish(archive_writer *writer, agnes_error *err);

/* Give up: release the gzip state; the output is incomplete. */
void archive_writer_abort(archive_writer *writer);

enum archive_entry_type { ARCHIVE_FILE, ARCHIVE_DIRECTORY };

typedef struct archive_entry {
    char name[ARCHIVE_NAME_MAX + 2];
    enum archive_entry_type type;
    mode_t mode;
    uint64_t size;
    int64_t mtime;
} archive_entry;

typedef struct archive_reader {
    gzFile gz;
    char path[512];      /* for messages */
    uint64_t remaining;  /* data bytes of the current entry not read yet */
    uint64_t padding;    /* zero bytes after them up to the next block */
} archive_reader;

/* Open path for reading.  AGNES_ERR_NOT_FOUND when it does not exist. */
int archive_reader_open(archive_reader *reader, const char *path, agnes_error *err);

/* Move to the next entry (skipping what is left of the current one):
 * 1 and *entry filled, 0 at the end of the archive, or a negative error. */
int archive_reader_next(archive_reader *reader, archive_entry *entry, agnes_error *err);

/* Read up to len bytes of the current entry's data: the count, 0 when the
 * entry is exhausted, or a negative error. */
long archive_reader_read(archive_reader *reader, void *buf, size_t len, agnes_error *err);

void archive_reader_close(archive_reader *reader);

#endif
