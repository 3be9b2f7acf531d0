/* Unit tests: directory resolution and the shadow-mount guard (SPEC §3). */
#include "test_helpers.h"

#include "core/paths.h"

static void test_state_dir_defaults_under_data_dir(void **unused)
{
    (void)unused;
    clear_agnes_env();
    setenv("DATA_DIR", "/srv/agnes/data", 1);
    agnes_paths paths;
    agnes_error err;
    assert_int_equal(paths_resolve(&paths, &err), AGNES_OK);
    assert_string_equal(paths.data_dir, "/srv/agnes/data");
    assert_string_equal(paths.state_dir, "/srv/agnes/data/state");
    assert_string_equal(paths.state_dir_source, "default");
    assert_string_equal(paths.connectors_dir, "/srv/agnes/connectors/custom");
}

static void test_state_dir_env_wins_and_every_state_file_lives_there(void **unused)
{
    (void)unused;
    clear_agnes_env();
    setenv("DATA_DIR", "/data", 1);
    setenv("STATE_DIR", "/data-state/", 1);
    agnes_paths paths;
    agnes_error err;
    assert_int_equal(paths_resolve(&paths, &err), AGNES_OK);
    assert_string_equal(paths.state_dir, "/data-state");
    assert_string_equal(paths.state_dir_source, "env");
    /* The original's bug: instance.yaml and .env_overlay stayed under ${DATA_DIR}/state. */
    for (int f = STATE_SYSTEM_DB; f <= STATE_CERTS_DIR; f++) {
        char path[AGNES_PATH_MAX];
        assert_int_equal(paths_state_file(&paths, (enum state_file)f, path, sizeof path, &err), AGNES_OK);
        assert_true(strncmp(path, "/data-state/", 12) == 0);
    }
    char path[AGNES_PATH_MAX];
    paths_state_file(&paths, STATE_INSTANCE_YAML, path, sizeof path, &err);
    assert_string_equal(path, "/data-state/instance.yaml");
}

static void test_relative_dirs_become_absolute(void **unused)
{
    (void)unused;
    clear_agnes_env();
    setenv("DATA_DIR", "./x/../data", 1);
    char cwd[AGNES_PATH_MAX], expected[AGNES_PATH_MAX + 16];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(expected, sizeof expected, "%s/data", strcmp(cwd, "/") == 0 ? "" : cwd);
    agnes_paths paths;
    agnes_error err;
    assert_int_equal(paths_resolve(&paths, &err), AGNES_OK);
    assert_string_equal(paths.data_dir, expected);
}

static void test_mountinfo_listing_makes_a_mount_point(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    char sub[4200], mountinfo[4200], line[9000];
    snprintf(sub, sizeof sub, "%s/state dir", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    /* mountinfo escapes the space as \040 */
    snprintf(line, sizeof line,
             "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
             "99 22 8:17 / %s/state\\040dir rw,relatime - ext4 /dev/sdb rw\n", dir);
    write_text(dir, "mountinfo", line);
    snprintf(mountinfo, sizeof mountinfo, "%s/mountinfo", dir);
    assert_true(paths_is_mount_point(sub, mountinfo));
    write_text(dir, "mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    assert_false(paths_is_mount_point(sub, mountinfo)); /* same st_dev as its parent, not listed */
    remove_tree(dir);
}

static void test_guard_refuses_plain_directory_with_a_fix(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    agnes_paths paths;
    memset(&paths, 0, sizeof paths);
    snprintf(paths.state_dir, sizeof paths.state_dir, "%s", dir);
    agnes_error err;
    agnes_error_clear(&err);
    assert_int_equal(paths_check_state_mount(&paths, false, "/dev/null", &err), AGNES_OK);
    assert_int_equal(paths_check_state_mount(&paths, true, "/dev/null", &err), AGNES_ERR_STATE);
    assert_non_null(strstr(err.message, dir));
    assert_non_null(strstr(err.message, "docker-compose.flat-mount.yml"));
    assert_non_null(strstr(err.message, "AGNES_STATE_MOUNT"));
    remove_tree(dir);
}

/* In a container a plain host directory bound at STATE_DIR is listed in
 * mountinfo like a disk: its root field (not "/") or sharing DATA_DIR's
 * filesystem gives it away. */
static void test_guard_refuses_a_mount_on_the_data_filesystem(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    agnes_paths paths;
    memset(&paths, 0, sizeof paths);
    snprintf(paths.data_dir, sizeof paths.data_dir, "%s/data", dir);
    snprintf(paths.state_dir, sizeof paths.state_dir, "%s/data-state", dir);
    assert_int_equal(mkdir(paths.data_dir, 0755), 0);
    assert_int_equal(mkdir(paths.state_dir, 0700), 0);
    char line[9000], mountinfo[4200];
    snprintf(line, sizeof line, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                                "99 22 8:1 /srv/plain %s rw,relatime - ext4 /dev/sda1 rw\n",
             paths.state_dir);
    write_text(dir, "mountinfo", line);
    snprintf(mountinfo, sizeof mountinfo, "%s/mountinfo", dir);
    agnes_error err;
    agnes_error_clear(&err);
    assert_true(paths_is_mount_point(paths.state_dir, mountinfo));
    assert_int_equal(paths_check_state_mount(&paths, true, mountinfo, &err), AGNES_ERR_STATE);
    assert_non_null(strstr(err.message, "is the directory /srv/plain of another filesystem bound there"));
    assert_non_null(strstr(err.message, "findmnt"));
    /* The whole of a filesystem, but DATA_DIR's own. */
    snprintf(line, sizeof line, "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
                                "99 22 8:1 / %s rw,relatime - ext4 /dev/sda1 rw\n",
             paths.state_dir);
    write_text(dir, "mountinfo", line);
    assert_int_equal(paths_check_state_mount(&paths, true, mountinfo, &err), AGNES_ERR_STATE);
    assert_non_null(strstr(err.message, "same filesystem as DATA_DIR"));
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_dir_defaults_under_data_dir),
        cmocka_unit_test(test_state_dir_env_wins_and_every_state_file_lives_there),
        cmocka_unit_test(test_relative_dirs_become_absolute),
        cmocka_unit_test(test_mountinfo_listing_makes_a_mount_point),
        cmocka_unit_test(test_guard_refuses_plain_directory_with_a_fix),
        cmocka_unit_test(test_guard_refuses_a_mount_on_the_data_filesystem),
    };
    return cmocka_run_group_tests_name("paths", tests, NULL, NULL);
}
