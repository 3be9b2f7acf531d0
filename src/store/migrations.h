/*
 * migrations.h - numbered forward migrations of system.duckdb (SPEC §5).
 *
 * Invariants:
 *  - Versions are 1..migrations_latest(), applied in order, each exactly once.
 *  - All pending migrations run in ONE transaction together with the
 *    schema_version rows that record them, so a kill -9 at any point leaves
 *    either the old schema or the new one; the next start simply runs again.
 *  - Before touching an existing file: CHECKPOINT it, then copy it to
 *    system.duckdb.pre-migrate (atomically), so the operator can roll back.
 *  - A file whose version is newer than this binary knows is never opened for
 *    writing: the start stops with a message, the file stays untouched.
 *  - There are no down-migrations; rollback = restore the pre-migrate copy.
 */
#ifndef AGNES_STORE_MIGRATIONS_H
#define AGNES_STORE_MIGRATIONS_H

#include <duckdb.h>
#include <stdbool.h>

#include "core/error.h"
#include "core/paths.h"

typedef struct migration_report {
    int from_version;
    int to_version;
    bool created;        /* the file did not exist */
    bool backed_up;      /* a .pre-migrate copy was written */
} migration_report;

int migrations_latest(void);
const char *migrations_name(int version);

/* Read the stored version without modifying the file: 0 when the file or the
 * schema_version table does not exist. */
int migrations_read_version(const char *db_path, int *version, agnes_error *err);

/* Bring system.duckdb up to `target` (0 = latest).  Refuses newer files and
 * targets lower than the stored version. */
int migrations_run(const agnes_paths *paths, int target, migration_report *report, agnes_error *err);

/* Apply migrations from+1..to on conn inside the caller's transaction.
 * Exposed so the crash-safety test can kill a process mid-migration. */
int migrations_apply_range(duckdb_connection conn, int from, int to, agnes_error *err);

#endif
