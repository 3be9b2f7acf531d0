/*
 * targz.h - write a .tar.gz of a few files (the CLI tarball the server
 * serves to analysts, GET /cli/agnes-linux-x86_64.tar.gz).
 *
 * The archive is core/archive.h's ustar-in-gzip (what GNU tar, bsdtar and
 * busybox tar read; one writer for backups and this tarball).  Parent
 * directories are written before the files in them, with mode 0755, so
 * `tar -xzf` into an empty directory recreates the tree.  Names must fit
 * ustar's 100-byte name field; nothing here needs more.
 */
#ifndef AGNES_CORE_TARGZ_H
#define AGNES_CORE_TARGZ_H

#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"

typedef struct targz_entry {
    const char *name;        /* path inside the archive, relative, '/'-separated ("agnes/bin/agnes") */
    const char *source_path; /* the file on disk whose bytes go in */
    mode_t mode;             /* permission bits recorded for it (0755, 0644) */
} targz_entry;

/* Write the archive to out_path atomically (temp file + fsync + rename), at
 * gzip `level` (1 fastest .. 9 smallest), and put the lower-case hex SHA-256
 * of the written .tar.gz into sha256_hex.  Errors: AGNES_ERR_IO naming the
 * file that could not be read or written, AGNES_ERR_INVALID for a name too
 * long for ustar, AGNES_ERR_NOMEM. */
int targz_write(const char *out_path, const targz_entry *entries, size_t count, int level, char sha256_hex[65],
                agnes_error *err);

#endif
