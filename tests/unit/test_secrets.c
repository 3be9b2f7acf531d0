/* Unit tests: secret loading and generation (SPEC §3). */
#include "test_helpers.h"

#include <ctype.h>

#include "core/secrets.h"

static void load_defaults(agnes_config *config)
{
    agnes_error err;
    assert_int_equal(config_init_defaults(config, &err), AGNES_OK);
}

static void test_generates_64_hex_chars_mode_0600_and_reuses_them(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/.jwt_secret", dir);
    agnes_config config;
    load_defaults(&config);
    agnes_secret first, second;
    agnes_error err;
    assert_int_equal(secrets_load_one(&first, &config, CFG_JWT_SECRET, path, &err), AGNES_OK);
    assert_string_equal(first.source, "generated");
    assert_int_equal(strlen(first.value), 64);
    for (int i = 0; i < 64; i++)
        assert_true(isxdigit((unsigned char)first.value[i]) && !isupper((unsigned char)first.value[i]));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_string_equal(read_text(path), first.value);
    assert_int_equal(secrets_load_one(&second, &config, CFG_JWT_SECRET, path, &err), AGNES_OK);
    assert_string_equal(second.source, "file");
    assert_string_equal(second.value, first.value);
    config_free(&config);
    remove_tree(dir);
}

static void test_empty_file_is_an_error_not_a_regeneration(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    write_text(dir, ".jwt_secret", "  \n");
    char path[4200];
    snprintf(path, sizeof path, "%s/.jwt_secret", dir);
    agnes_config config;
    load_defaults(&config);
    agnes_secret secret;
    agnes_error err;
    assert_int_equal(secrets_load_one(&secret, &config, CFG_JWT_SECRET, path, &err), AGNES_ERR_STATE);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "empty"));
    assert_string_equal(read_text(path), "  \n"); /* untouched */
    config_free(&config);
    remove_tree(dir);
}

static void test_unreadable_path_is_an_error_naming_the_file(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/.session_secret", dir);
    assert_int_equal(mkdir(path, 0700), 0); /* a directory where the file should be */
    agnes_config config;
    load_defaults(&config);
    agnes_secret secret;
    agnes_error err;
    assert_int_not_equal(secrets_load_one(&secret, &config, CFG_SESSION_SECRET, path, &err), AGNES_OK);
    assert_non_null(strstr(err.message, path));
    config_free(&config);
    remove_tree(dir);
}

static void test_environment_wins_over_the_file(void **unused)
{
    (void)unused;
    char *dir = make_temp_dir();
    write_text(dir, ".jwt_secret", "from-the-file-0123456789abcdef0123456789");
    char path[4200];
    snprintf(path, sizeof path, "%s/.jwt_secret", dir);
    clear_agnes_env();
    setenv("JWT_SECRET_KEY", "from-the-environment-0123456789abcdef01", 1);
    agnes_paths paths;
    memset(&paths, 0, sizeof paths);
    snprintf(paths.config_dir, sizeof paths.config_dir, "%s", dir);
    snprintf(paths.state_dir, sizeof paths.state_dir, "%s", dir);
    env_overlay overlay = {0};
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &paths, &overlay, &err), AGNES_OK);
    agnes_secret secret;
    assert_int_equal(secrets_load_one(&secret, &config, CFG_JWT_SECRET, path, &err), AGNES_OK);
    assert_string_equal(secret.value, "from-the-environment-0123456789abcdef01");
    assert_string_equal(secret.source, "env");
    unsetenv("JWT_SECRET_KEY");
    config_free(&config);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generates_64_hex_chars_mode_0600_and_reuses_them),
        cmocka_unit_test(test_empty_file_is_an_error_not_a_regeneration),
        cmocka_unit_test(test_unreadable_path_is_an_error_naming_the_file),
        cmocka_unit_test(test_environment_wins_over_the_file),
    };
    return cmocka_run_group_tests_name("secrets", tests, NULL, NULL);
}
