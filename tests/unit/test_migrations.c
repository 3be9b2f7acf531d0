/* Unit tests: system.duckdb migrations, including kill -9 mid-migration (SPEC §5). */
#include "test_helpers.h"

#include <signal.h>
#include <sys/wait.h>

#include "store/duck.h"
#include "store/migrations.h"

typedef struct fixture {
    char *dir;
    agnes_paths paths;
    char db_path[AGNES_PATH_MAX];
    char backup_path[AGNES_PATH_MAX];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = make_temp_dir();
    snprintf(f->paths.state_dir, sizeof f->paths.state_dir, "%s", f->dir);
    snprintf(f->db_path, sizeof f->db_path, "%s/system.duckdb", f->dir);
    snprintf(f->backup_path, sizeof f->backup_path, "%s/system.duckdb.pre-migrate", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    remove_tree(f->dir);
    free(f);
    return 0;
}

static long long query_int(const char *path, const char *sql)
{
    duck_session session;
    agnes_error err;
    assert_int_equal(duck_session_open(&session, path, true, &err), AGNES_OK);
    long long value = -1;
    bool found = false;
    assert_int_equal(duck_query_int(session.connection, sql, &value, &found, &err), AGNES_OK);
    duck_session_close(&session);
    return found ? value : -1;
}

static void exec_sql(const char *path, const char *sql)
{
    duck_session session;
    agnes_error err;
    assert_int_equal(duck_session_open(&session, path, false, &err), AGNES_OK);
    assert_int_equal(duck_exec(session.connection, sql, &err), AGNES_OK);
    assert_int_equal(duck_exec(session.connection, "CHECKPOINT", &err), AGNES_OK);
    duck_session_close(&session);
}

static void test_fresh_file_gets_every_table_and_system_groups(void **state)
{
    fixture *f = *state;
    migration_report report;
    agnes_error err;
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    assert_true(report.created);
    assert_false(report.backed_up);
    assert_int_equal(report.to_version, migrations_latest());
    assert_false(util_file_exists(f->backup_path)); /* nothing to back up */
    const char *tables[] = {"schema_version", "users", "user_groups", "user_group_members", "resource_grants",
                            "personal_access_tokens", "audit_log"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM information_schema.tables WHERE table_name = '%s'", tables[i]);
        assert_int_equal(query_int(f->db_path, sql), 1);
    }
    assert_int_equal(query_int(f->db_path, "SELECT count(*) FROM user_groups WHERE is_system AND name IN ('Admin','Everyone')"), 2);
    /* Running again is a no-op. */
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    assert_int_equal(report.from_version, report.to_version);
}

static void test_older_file_is_backed_up_then_migrated(void **state)
{
    fixture *f = *state;
    migration_report report;
    agnes_error err;
    assert_int_equal(migrations_run(&f->paths, 1, &report, &err), AGNES_OK);
    exec_sql(f->db_path, "INSERT INTO users (id, email) VALUES ('u1', 'kept@example.com')");
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    assert_int_equal(report.from_version, 1);
    assert_int_equal(report.to_version, migrations_latest());
    assert_true(report.backed_up);
    assert_int_equal(query_int(f->backup_path, "SELECT max(version) FROM schema_version"), 1);
    assert_int_equal(query_int(f->db_path, "SELECT max(version) FROM schema_version"), migrations_latest());
    assert_int_equal(query_int(f->db_path, "SELECT count(*) FROM users WHERE email = 'kept@example.com'"), 1);
}

static void test_newer_file_is_refused_and_untouched(void **state)
{
    fixture *f = *state;
    migration_report report;
    agnes_error err;
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    exec_sql(f->db_path, "INSERT INTO schema_version (version, name) VALUES (999, 'from the future')");
    struct stat before, after;
    assert_int_equal(stat(f->db_path, &before), 0);
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_ERR_STATE);
    assert_non_null(strstr(err.message, "999"));
    assert_non_null(strstr(err.message, "newer release"));
    assert_int_equal(stat(f->db_path, &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    assert_false(util_file_exists(f->backup_path));
}

static void test_kill_9_in_the_middle_of_a_migration_is_recovered(void **state)
{
    fixture *f = *state;
    migration_report report;
    agnes_error err;
    assert_int_equal(migrations_run(&f->paths, 1, &report, &err), AGNES_OK);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* Apply the rest inside a transaction, then die before COMMIT. */
        duck_session session;
        if (duck_session_open(&session, f->db_path, false, &err))
            _exit(3);
        if (duck_exec(session.connection, "BEGIN TRANSACTION", &err) ||
            migrations_apply_range(session.connection, 1, migrations_latest(), &err))
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int version = -1;
    assert_int_equal(migrations_read_version(f->db_path, &version, &err), AGNES_OK);
    assert_int_equal(version, 1); /* the half-done migration left no trace */
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    assert_int_equal(report.to_version, migrations_latest());
    assert_int_equal(query_int(f->db_path, "SELECT count(*) FROM user_groups"), 2);
}

static void test_targets_outside_the_known_range_are_rejected(void **state)
{
    fixture *f = *state;
    migration_report report;
    agnes_error err;
    assert_int_equal(migrations_run(&f->paths, migrations_latest() + 1, &report, &err), AGNES_ERR_INVALID);
    assert_int_equal(migrations_run(&f->paths, 0, &report, &err), AGNES_OK);
    assert_int_equal(migrations_run(&f->paths, 1, &report, &err), AGNES_ERR_INVALID);
    assert_non_null(strstr(err.message, "only go forward"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_file_gets_every_table_and_system_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_file_is_backed_up_then_migrated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_file_is_refused_and_untouched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_9_in_the_middle_of_a_migration_is_recovered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets_outside_the_known_range_are_rejected, setup, teardown),
    };
    return cmocka_run_group_tests_name("migrations", tests, NULL, NULL);
}
