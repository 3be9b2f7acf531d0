#include "store/migrations.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "store/duck.h"

typedef struct migration {
    const char *name;
    const char *sql;
} migration;

/* Append only.  Never edit a migration that has shipped: write a new one.
 * Table and column names follow the original system (reference §3.2) so
 * existing tooling that reads system.duckdb keeps working. */
static const migration migrations[] = {
    /* 1 */ {"identity",
             "CREATE TABLE users ("
             " id VARCHAR PRIMARY KEY, email VARCHAR UNIQUE NOT NULL, name VARCHAR, password_hash VARCHAR,"
             " setup_token VARCHAR, setup_token_created TIMESTAMP, reset_token VARCHAR,"
             " reset_token_created TIMESTAMP, active BOOLEAN NOT NULL DEFAULT TRUE, deactivated_at TIMESTAMP,"
             " deactivated_by VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp, updated_at TIMESTAMP);"
             "CREATE TABLE user_groups ("
             " id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, description TEXT,"
             " is_system BOOLEAN DEFAULT FALSE, created_at TIMESTAMP DEFAULT current_timestamp,"
             " created_by VARCHAR);"
             "CREATE TABLE user_group_members ("
             " user_id VARCHAR NOT NULL, group_id VARCHAR NOT NULL REFERENCES user_groups(id),"
             " source VARCHAR NOT NULL, added_at TIMESTAMP DEFAULT current_timestamp, added_by VARCHAR,"
             " PRIMARY KEY (user_id, group_id));"
             "CREATE TABLE resource_grants ("
             " id VARCHAR PRIMARY KEY, group_id VARCHAR NOT NULL REFERENCES user_groups(id),"
             " resource_type VARCHAR NOT NULL, resource_id VARCHAR NOT NULL,"
             " assigned_at TIMESTAMP DEFAULT current_timestamp, assigned_by VARCHAR,"
             " UNIQUE (group_id, resource_type, resource_id));"
             "CREATE TABLE personal_access_tokens ("
             " id VARCHAR PRIMARY KEY, user_id VARCHAR NOT NULL, name VARCHAR NOT NULL,"
             " token_hash VARCHAR NOT NULL, prefix VARCHAR NOT NULL, scopes VARCHAR,"
             " created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, expires_at TIMESTAMP,"
             " last_used_at TIMESTAMP, last_used_ip VARCHAR, revoked_at TIMESTAMP);"},
    /* 2 */ {"audit_log",
             "CREATE TABLE audit_log ("
             " id VARCHAR PRIMARY KEY, timestamp TIMESTAMP NOT NULL DEFAULT current_timestamp,"
             " user_id VARCHAR, action VARCHAR NOT NULL, resource VARCHAR, params JSON, result VARCHAR,"
             " duration_ms INTEGER);"
             "CREATE INDEX idx_audit_log_timestamp ON audit_log(timestamp);"},
    /* 3 */ {"system_groups",
             "INSERT INTO user_groups (id, name, description, is_system, created_by) VALUES"
             " (uuid()::VARCHAR, 'Admin', 'System: full access to all data and admin actions', TRUE,"
             "  'system:seed'),"
             " (uuid()::VARCHAR, 'Everyone', 'System: every user is a member; a grant here opens a table to all',"
             "  TRUE, 'system:seed');"},
    /* 4 */ {"data_plane",
             "CREATE TABLE view_ownership ("
             " view_name VARCHAR PRIMARY KEY, source_name VARCHAR NOT NULL,"
             " registered_at TIMESTAMP NOT NULL DEFAULT current_timestamp);"
             "CREATE TABLE sync_state ("
             " table_id VARCHAR PRIMARY KEY, last_sync TIMESTAMP, rows BIGINT, file_size_bytes BIGINT,"
             " uncompressed_size_bytes BIGINT, columns INTEGER, hash VARCHAR, status VARCHAR DEFAULT 'ok',"
             " error TEXT);"
             "CREATE TABLE sync_history ("
             " id VARCHAR PRIMARY KEY, table_id VARCHAR NOT NULL, synced_at TIMESTAMP NOT NULL, rows BIGINT,"
             " duration_ms INTEGER, status VARCHAR, error TEXT);"
             "CREATE INDEX idx_sync_history_table ON sync_history(table_id, synced_at);"},
    /* 5 */ {"table_registry",
             /* The original's columns, so registries export and import unchanged;
              * primary_key is a JSON array as text. */
             "CREATE TABLE table_registry ("
             " id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, source_type VARCHAR NOT NULL, bucket VARCHAR,"
             " source_table VARCHAR, source_query TEXT, sync_strategy VARCHAR DEFAULT 'full_refresh',"
             " query_mode VARCHAR NOT NULL DEFAULT 'local', sync_schedule VARCHAR,"
             " profile_after_sync BOOLEAN DEFAULT true, primary_key VARCHAR, folder VARCHAR, description TEXT,"
             " registered_by VARCHAR, registered_at TIMESTAMP NOT NULL DEFAULT current_timestamp);"},
    /* 6 */ {"table_files",
             /* The Parquet file behind each published table and the SHA-256 of its
              * bytes, hashed once per version of the file (size, mtime, inode): the
              * manifest's hash and the download's ETag. */
             "CREATE TABLE table_files ("
             " table_id VARCHAR PRIMARY KEY, source VARCHAR NOT NULL, path VARCHAR NOT NULL,"
             " size_bytes BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, inode BIGINT NOT NULL,"
             " sha256 VARCHAR NOT NULL, hashed_at TIMESTAMP NOT NULL DEFAULT current_timestamp);"},
    /* 7 */ {"column_metadata",
             /* What is known about a table's columns beyond their types: the
              * original's columns (basetype, description, confidence, source),
              * plus nullable - the catalog's views cannot say that a source
              * column is NOT NULL.  Rows with source 'manual' are an admin's;
              * a sync replaces only its own source's rows. */
             "CREATE TABLE column_metadata ("
             " table_id VARCHAR NOT NULL, column_name VARCHAR NOT NULL, basetype VARCHAR, description VARCHAR,"
             " confidence VARCHAR DEFAULT 'manual', source VARCHAR DEFAULT 'manual', nullable BOOLEAN,"
             " updated_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (table_id, column_name));"},
    /* 8 */ {"session_generation",
             /* Session tokens carry the generation they were issued in (claim
              * "sgen"); logout, a new password, deactivation and reactivation
              * add one, which ends every session issued before.  Sessions are
              * stateless JWTs: one counter per user revokes them all without a
              * table of every token issued, and without comparing clocks. */
             "ALTER TABLE users ADD COLUMN session_generation BIGINT DEFAULT 0;"},
    /* 9 */ {"group_references_without_foreign_keys",
             /* DuckDB runs an UPDATE of an indexed column (user_groups.name is
              * UNIQUE) as a delete and an insert, and the delete trips every
              * FOREIGN KEY pointing at the row: a group with a member or a
              * grant could not be renamed or described (500).  The two
              * referencing tables are rebuilt without REFERENCES; their
              * integrity is kept by store/groups.c, which checks the group
              * before adding and deletes members and grants with it. */
             "CREATE TABLE user_group_members_new ("
             " user_id VARCHAR NOT NULL, group_id VARCHAR NOT NULL,"
             " source VARCHAR NOT NULL, added_at TIMESTAMP DEFAULT current_timestamp, added_by VARCHAR,"
             " PRIMARY KEY (user_id, group_id));"
             "INSERT INTO user_group_members_new SELECT user_id, group_id, source, added_at, added_by"
             " FROM user_group_members;"
             "DROP TABLE user_group_members;"
             "ALTER TABLE user_group_members_new RENAME TO user_group_members;"
             "CREATE TABLE resource_grants_new ("
             " id VARCHAR PRIMARY KEY, group_id VARCHAR NOT NULL,"
             " resource_type VARCHAR NOT NULL, resource_id VARCHAR NOT NULL,"
             " assigned_at TIMESTAMP DEFAULT current_timestamp, assigned_by VARCHAR,"
             " UNIQUE (group_id, resource_type, resource_id));"
             "INSERT INTO resource_grants_new SELECT id, group_id, resource_type, resource_id, assigned_at, assigned_by"
             " FROM resource_grants;"
             "DROP TABLE resource_grants;"
             "ALTER TABLE resource_grants_new RENAME TO resource_grants;"},
    /* 10 */ {"registry_sync_strategies",
             /* The original's per-table sync settings (its registry v26), used by
              * the Keboola connector; where_filters is a JSON array as text. */
             "ALTER TABLE table_registry ADD COLUMN incremental_window_days INTEGER;"
             "ALTER TABLE table_registry ADD COLUMN where_filters VARCHAR;"
             "ALTER TABLE table_registry ADD COLUMN partition_by VARCHAR;"
             "ALTER TABLE table_registry ADD COLUMN partition_granularity VARCHAR;"
             "ALTER TABLE table_registry ADD COLUMN initial_load_chunk_days INTEGER;"},
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

static const char schema_version_ddl[] =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER NOT NULL, applied_at TIMESTAMP DEFAULT current_timestamp, name VARCHAR)";

int migrations_latest(void)
{
    return MIGRATION_COUNT;
}

const char *migrations_name(int version)
{
    return version >= 1 && version <= MIGRATION_COUNT ? migrations[version - 1].name : "unknown";
}

static int read_version_on(duckdb_connection conn, int *version, agnes_error *err)
{
    long long exists = 0, max_version = 0;
    bool found = false;
    if (duck_query_int(conn,
                       "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
                       " AND table_schema = 'main'",
                       &exists, &found, err))
        return err->code;
    *version = 0;
    if (exists == 0)
        return AGNES_OK;
    if (duck_query_int(conn, "SELECT max(version) FROM schema_version", &max_version, &found, err))
        return err->code;
    *version = found ? (int)max_version : 0;
    return AGNES_OK;
}

int migrations_read_version(const char *db_path, int *version, agnes_error *err)
{
    *version = 0;
    if (!util_file_exists(db_path))
        return AGNES_OK;
    duck_session session;
    if (duck_session_open(&session, db_path, true, err))
        return err->code;
    int rc = read_version_on(session.connection, version, err);
    duck_session_close(&session);
    return rc;
}

int migrations_apply_range(duckdb_connection conn, int from, int to, agnes_error *err)
{
    if (duck_exec(conn, schema_version_ddl, err))
        return agnes_error_wrap(err, "creating schema_version");
    for (int v = from + 1; v <= to; v++) {
        char record[256];
        if (duck_exec(conn, migrations[v - 1].sql, err))
            return agnes_error_wrap(err, "migration %d (%s) failed", v, migrations[v - 1].name);
        snprintf(record, sizeof record, "INSERT INTO schema_version (version, name) VALUES (%d, '%s')", v,
                 migrations[v - 1].name);
        if (duck_exec(conn, record, err))
            return agnes_error_wrap(err, "recording migration %d", v);
    }
    return AGNES_OK;
}

/* Flush the WAL into the file so the pre-migrate copy is complete on its own. */
static int checkpoint_file(const char *db_path, agnes_error *err)
{
    duck_session session;
    if (duck_session_open(&session, db_path, false, err))
        return err->code;
    int rc = duck_exec(session.connection, "CHECKPOINT", err);
    duck_session_close(&session);
    return rc;
}

static int apply_in_transaction(const char *db_path, int from, int to, agnes_error *err)
{
    duck_session session;
    if (duck_session_open(&session, db_path, false, err))
        return err->code;
    duckdb_connection conn = session.connection;
    int rc = duck_exec(conn, "BEGIN TRANSACTION", err);
    if (rc == AGNES_OK && (rc = migrations_apply_range(conn, from, to, err)) != AGNES_OK) {
        agnes_error ignored;
        duck_exec(conn, "ROLLBACK", &ignored);
    }
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "COMMIT", err);
    if (rc == AGNES_OK)
        rc = duck_exec(conn, "CHECKPOINT", err);
    duck_session_close(&session);
    return rc;
}

int migrations_run(const agnes_paths *paths, int target, migration_report *report, agnes_error *err)
{
    char db_path[AGNES_PATH_MAX], backup_path[AGNES_PATH_MAX];
    memset(report, 0, sizeof *report);
    if (target == 0)
        target = MIGRATION_COUNT;
    if (target < 0 || target > MIGRATION_COUNT)
        return agnes_error_set(err, AGNES_ERR_INVALID, "no migration %d: this build knows versions 1 to %d", target,
                               MIGRATION_COUNT);
    if (paths_state_file(paths, STATE_SYSTEM_DB, db_path, sizeof db_path, err) ||
        paths_state_file(paths, STATE_SYSTEM_DB_PRE_MIGRATE, backup_path, sizeof backup_path, err))
        return err->code;
    report->created = !util_file_exists(db_path);
    int current = 0;
    if (migrations_read_version(db_path, &current, err))
        return err->code;
    report->from_version = report->to_version = current;
    if (current > MIGRATION_COUNT)
        return agnes_error_set(err, AGNES_ERR_STATE,
                               "%s has schema version %d but this agnes knows only up to %d: it was written by a "
                               "newer release. Refusing to start (a downgrade could lose data); the file is "
                               "untouched. Fix: run the newer release again, or restore %s if you really mean to "
                               "roll back",
                               db_path, current, MIGRATION_COUNT, backup_path);
    if (current > target)
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "%s is already at version %d; migrations only go forward (asked for %d)", db_path,
                               current, target);
    if (current == target)
        return AGNES_OK;
    if (current > 0) {
        if (checkpoint_file(db_path, err) || util_copy_file_atomic(db_path, backup_path, err))
            return agnes_error_wrap(err, "backing up system.duckdb before migrating");
        report->backed_up = true;
        log_info("msg=\"backed up system.duckdb before migrating\" backup=%s", backup_path);
    }
    if (apply_in_transaction(db_path, current, target, err))
        return agnes_error_wrap(err, "migrating %s from version %d to %d (nothing was changed; the previous "
                                     "state is intact)", db_path, current, target);
    report->to_version = target;
    log_info("msg=\"migrated system.duckdb\" from=%d to=%d", current, target);
    return AGNES_OK;
}
