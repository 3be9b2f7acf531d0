#include "store/system_db.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "store/duck.h"

int system_db_open(system_db *db, const char *path, int expected_version, agnes_error *err)
{
    memset(db, 0, sizeof *db);
    snprintf(db->path, sizeof db->path, "%s", path);
    if (pthread_mutex_init(&db->writer_lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    if (duck_open(path, false, &db->database, err))
        goto fail;
    if (duckdb_connect(db->database, &db->writer) != DuckDBSuccess) {
        agnes_error_set(err, AGNES_ERR_DB, "cannot connect to %s", path);
        goto fail;
    }
    /* Every query here touches a handful of rows; handing its tasks to a
     * second thread costs a wake-up that took longer than the query. */
    if (duck_exec(db->writer, "SET threads = 1", err))
        goto fail;
    int version = 0;
    if (system_db_schema_version(db, &version, err))
        goto fail;
    if (version != expected_version) {
        agnes_error_set(err, AGNES_ERR_STATE, "%s is at schema version %d, expected %d; run `agnes migrate`", path,
                        version, expected_version);
        goto fail;
    }
    return AGNES_OK;
fail:
    /* Nothing was written: close without the CHECKPOINT system_db_close
     * does, so a file we refuse (another schema version) stays byte-for-byte
     * as it was. */
    if (db->writer != NULL)
        duckdb_disconnect(&db->writer);
    if (db->database != NULL)
        duckdb_close(&db->database);
    pthread_mutex_destroy(&db->writer_lock);
    memset(db, 0, sizeof *db);
    return err->code;
}

int system_db_connect_reader(system_db *db, duckdb_connection *out, agnes_error *err)
{
    if (duckdb_connect(db->database, out) != DuckDBSuccess)
        return agnes_error_set(err, AGNES_ERR_DB, "cannot open a connection to %s", db->path);
    return AGNES_OK;
}

duckdb_connection system_db_writer_acquire(system_db *db)
{
    pthread_mutex_lock(&db->writer_lock);
    return db->writer;
}

unsigned system_db_write_generation(system_db *db)
{
    return atomic_load(&db->write_generation);
}

void system_db_writer_release(system_db *db)
{
    atomic_fetch_add(&db->write_generation, 1);
    pthread_mutex_unlock(&db->writer_lock);
}

int system_db_checkpoint(system_db *db, agnes_error *err)
{
    duckdb_connection conn = system_db_writer_acquire(db);
    int rc = duck_exec(conn, "CHECKPOINT", err);
    system_db_writer_release(db);
    return rc;
}

int system_db_schema_version(system_db *db, int *version, agnes_error *err)
{
    duckdb_connection conn = NULL;
    if (system_db_connect_reader(db, &conn, err))
        return err->code;
    long long value = 0;
    bool found = false;
    int rc = duck_query_int(conn, "SELECT max(version) FROM schema_version", &value, &found, err);
    duckdb_disconnect(&conn);
    *version = found ? (int)value : 0;
    return rc;
}

void system_db_close(system_db *db)
{
    if (db->writer != NULL) {
        agnes_error err;
        if (system_db_checkpoint(db, &err) != AGNES_OK)
            log_warn("msg=\"final CHECKPOINT failed\" file=%s detail=\"%s\"", db->path, err.message);
        duckdb_disconnect(&db->writer);
    }
    if (db->database != NULL)
        duckdb_close(&db->database);
    pthread_mutex_destroy(&db->writer_lock);
    memset(db, 0, sizeof *db);
}
