/* Unit tests: configuration precedence, validation, .env_overlay (SPEC §4). */
#include "test_helpers.h"

#include "core/config.h"
#include "core/env_overlay.h"

typedef struct fixture {
    char *dir;
    agnes_paths paths;
    env_overlay overlay;
} fixture;

static int setup(void **state)
{
    clear_agnes_env();
    fixture *f = calloc(1, sizeof *f);
    f->dir = make_temp_dir();
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/config", f->dir);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/state", f->dir);
    mkdir(sub, 0700);
    snprintf(f->paths.config_dir, sizeof f->paths.config_dir, "%s/config", f->dir);
    snprintf(f->paths.state_dir, sizeof f->paths.state_dir, "%s/state", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    env_overlay_free(&f->overlay);
    remove_tree(f->dir);
    free(f);
    clear_agnes_env();
    return 0;
}

static void test_defaults_when_nothing_is_configured(void **state)
{
    fixture *f = *state;
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_OK);
    assert_string_equal(config_get_string(&config, CFG_SERVER_LISTEN), "0.0.0.0:8000");
    assert_int_equal(config_get_int(&config, CFG_SERVER_SHUTDOWN_GRACE), 30);
    assert_int_equal(config_get_int(&config, CFG_CHECKPOINT_INTERVAL), 300);
    assert_int_equal(config.values[CFG_SERVER_LISTEN].source, CONFIG_SOURCE_DEFAULT);
    config_free(&config);
}

static void test_precedence_env_overlay_state_file_config_file(void **state)
{
    fixture *f = *state;
    write_text(f->dir, "config/instance.yaml",
               "instance:\n  name: from-config\nserver:\n  threads: 3\n  listen: 127.0.0.1:1\n"
               "  shutdown_grace_seconds: 5\n");
    write_text(f->dir, "state/instance.yaml", "server:\n  threads: 4\n  listen: 127.0.0.1:2\n");
    agnes_error err;
    assert_int_equal(env_overlay_parse(&f->overlay, "AGNES_LISTEN=127.0.0.1:3\nAGNES_SHUTDOWN_GRACE=7\n",
                                       ".env_overlay", &err), AGNES_OK);
    setenv("AGNES_SHUTDOWN_GRACE", "9", 1);
    agnes_config config;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_OK);
    assert_string_equal(config_get_string(&config, CFG_INSTANCE_NAME), "from-config");
    assert_int_equal(config.values[CFG_INSTANCE_NAME].source, CONFIG_SOURCE_CONFIG_FILE);
    assert_int_equal(config_get_int(&config, CFG_SERVER_THREADS), 4);
    assert_int_equal(config.values[CFG_SERVER_THREADS].source, CONFIG_SOURCE_STATE_FILE);
    assert_non_null(strstr(config.values[CFG_SERVER_THREADS].origin, "state/instance.yaml line 2"));
    assert_string_equal(config_get_string(&config, CFG_SERVER_LISTEN), "127.0.0.1:3");
    assert_int_equal(config.values[CFG_SERVER_LISTEN].source, CONFIG_SOURCE_ENV_OVERLAY);
    assert_int_equal(config_get_int(&config, CFG_SERVER_SHUTDOWN_GRACE), 9);
    assert_int_equal(config.values[CFG_SERVER_SHUTDOWN_GRACE].source, CONFIG_SOURCE_ENV);
    config_free(&config);
}

static void test_wrong_type_names_key_file_and_line(void **state)
{
    fixture *f = *state;
    write_text(f->dir, "config/instance.yaml", "instance:\n  name: x\nserver:\n  threads: lots\n");
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_ERR_CONFIG);
    assert_non_null(strstr(err.message, "server.threads"));
    assert_non_null(strstr(err.message, "config/instance.yaml line 4"));
    assert_non_null(strstr(err.message, "lots"));
}

static void test_wrong_type_from_environment_names_the_variable(void **state)
{
    fixture *f = *state;
    setenv("AGNES_THREADS", "0", 1);
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_ERR_CONFIG);
    assert_non_null(strstr(err.message, "environment variable AGNES_THREADS"));
    assert_non_null(strstr(err.message, "from 1 to 256"));
}

static void test_unknown_keys_are_warnings_with_location(void **state)
{
    fixture *f = *state;
    write_text(f->dir, "config/instance.yaml", "server:\n  listen: 127.0.0.1:9\n  colour: blue\ntelegram:\n  x: 1\n");
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_OK);
    assert_int_equal(config.warning_count, 2);
    assert_non_null(strstr(config.warnings[0], "server.colour"));
    assert_non_null(strstr(config.warnings[0], "line 3"));
    assert_non_null(strstr(config.warnings[1], "telegram"));
    config_free(&config);
}

static void test_variables_expand_and_unset_ones_warn(void **state)
{
    fixture *f = *state;
    setenv("TEST_EXPANDED", "Acme", 1);
    write_text(f->dir, "config/instance.yaml", "instance:\n  name: ${TEST_EXPANDED} data ${NOT_SET_ANYWHERE}\n");
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_OK);
    assert_string_equal(config_get_string(&config, CFG_INSTANCE_NAME), "Acme data ");
    assert_int_equal(config.warning_count, 1);
    assert_non_null(strstr(config.warnings[0], "NOT_SET_ANYWHERE"));
    config_free(&config);
}

static void test_invalid_yaml_names_file_and_line(void **state)
{
    fixture *f = *state;
    write_text(f->dir, "state/instance.yaml", "server:\n  listen: [unclosed\n");
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_load(&config, &f->paths, &f->overlay, &err), AGNES_ERR_CONFIG);
    assert_non_null(strstr(err.message, "state/instance.yaml"));
    assert_non_null(strstr(err.message, "invalid YAML"));
}

static void test_env_overlay_parsing(void **unused)
{
    (void)unused;
    env_overlay overlay;
    agnes_error err;
    const char *text = "# comment\n\nA=1\nB = \"two words\"\nnot a line\n9BAD=x\nC='$(rm -rf /)'\nA=3\n";
    assert_int_equal(env_overlay_parse(&overlay, text, ".env_overlay", &err), AGNES_OK);
    assert_string_equal(env_overlay_get(&overlay, "A"), "3");
    assert_string_equal(env_overlay_get(&overlay, "B"), "two words");
    assert_string_equal(env_overlay_get(&overlay, "C"), "$(rm -rf /)"); /* kept literally, never run */
    assert_null(env_overlay_get(&overlay, "9BAD"));
    assert_int_equal(overlay.count, 4);
    env_overlay_free(&overlay);
}

/* config/instance.yaml.example must document every key this build reads. */
static void test_example_file_documents_every_key(void **unused)
{
    (void)unused;
    clear_agnes_env();
    char *text = read_text("config/instance.yaml.example");
    assert_non_null(text);
    char *copy = strdup(text);
    agnes_config config;
    agnes_error err;
    assert_int_equal(config_init_defaults(&config, &err), AGNES_OK);
    assert_int_equal(config_merge_yaml_text(&config, copy, "instance.yaml.example", CONFIG_SOURCE_CONFIG_FILE, NULL, &err),
                     AGNES_OK);
    for (size_t i = 0; i < config.warning_count; i++)
        print_error("example warning: %s\n", config.warnings[i]);
    assert_int_equal(config.warning_count, 0);
    for (int k = 0; k < CFG_KEY_COUNT; k++) {
        const config_key_spec *spec = config_spec((enum config_key)k);
        if (strstr(copy, spec->env_name) == NULL)
            print_error("config/instance.yaml.example does not mention %s\n", spec->env_name);
        assert_non_null(strstr(copy, spec->env_name));
        if (spec->yaml_key != NULL && config.values[k].source != CONFIG_SOURCE_CONFIG_FILE)
            print_error("config/instance.yaml.example does not set %s\n", spec->yaml_key);
        if (spec->yaml_key != NULL)
            assert_int_equal(config.values[k].source, CONFIG_SOURCE_CONFIG_FILE);
    }
    config_free(&config);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_when_nothing_is_configured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence_env_overlay_state_file_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type_names_key_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type_from_environment_names_the_variable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys_are_warnings_with_location, setup, teardown),
        cmocka_unit_test_setup_teardown(test_variables_expand_and_unset_ones_warn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_yaml_names_file_and_line, setup, teardown),
        cmocka_unit_test(test_env_overlay_parsing),
        cmocka_unit_test(test_example_file_documents_every_key),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
