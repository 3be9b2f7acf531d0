/*
 * system_db.h - the open system.duckdb of a running server (SPEC §5).
 *
 * Ownership: system_db_open() opens the database and one writer connection;
 * system_db_close() checkpoints and closes both.  Writes go through the
 * writer connection under writer_lock (DuckDB allows one writer per process
 * anyway, and serialising them here gives a clear place to hold it).
 * Readers get their own connection from system_db_connect_reader() and
 * disconnect it themselves.
 */
#ifndef AGNES_STORE_SYSTEM_DB_H
#define AGNES_STORE_SYSTEM_DB_H

#include <duckdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/error.h"
#include "core/util.h"

typedef struct system_db {
    char path[AGNES_PATH_MAX];
    duckdb_database database;
    duckdb_connection writer;
    pthread_mutex_t writer_lock;
    /* Bumped each time the writer is released: anything cached from this
     * database (auth identities) is valid only for the generation it was
     * read at, so a deactivation or a removed admin takes effect on the
     * very next request. */
    atomic_uint write_generation;
} system_db;

/* Open an already-migrated file; fails unless its version equals
 * expected_version (a mismatch means migrations did not run). */
int system_db_open(system_db *db, const char *path, int expected_version, agnes_error *err);

int system_db_connect_reader(system_db *db, duckdb_connection *out, agnes_error *err);

/* Borrow the writer connection; always pair with system_db_writer_release. */
duckdb_connection system_db_writer_acquire(system_db *db);
unsigned system_db_write_generation(system_db *db);
void system_db_writer_release(system_db *db);

int system_db_checkpoint(system_db *db, agnes_error *err);

/* The stored schema version, read through a fresh reader connection. */
int system_db_schema_version(system_db *db, int *version, agnes_error *err);

/* CHECKPOINT, then close everything.  Safe on a zeroed struct. */
void system_db_close(system_db *db);

#endif
