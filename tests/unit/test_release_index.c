/* Unit tests: reading the release index and the deprecation warning (SPEC §12). */
#include "test_helpers.h"

#include "core/release_index.h"

static const char index_json[] =
    "{\"stable\": \"2026.11.4\", \"deprecated\": ["
    " {\"version\": \"2026.10.2\", \"reason\": \"data loss bug\", \"until\": \"2026-12-31\"},"
    " {\"version\": \"2026.11.1\"}]}";

static void test_listed_version_is_deprecated_with_the_exact_warning(void **unused)
{
    (void)unused;
    release_status status = {.configured = true};
    release_index_evaluate(index_json, "test", "2026.10.2", &status);
    assert_true(status.ok);
    assert_true(status.deprecated);
    assert_string_equal(status.stable, "2026.11.4");
    assert_string_equal(status.reason, "data loss bug");
    assert_string_equal(status.until, "2026-12-31");
    char warning[512];
    release_index_warning(&status, "2026.10.2", warning, sizeof warning);
    assert_string_equal(warning, "Running deprecated version 2026.10.2. Update to stable (2026.11.4).");
}

static void test_unlisted_version_has_no_warning(void **unused)
{
    (void)unused;
    release_status status = {.configured = true};
    release_index_evaluate(index_json, "test", "2026.11.4", &status);
    assert_true(status.ok);
    assert_false(status.deprecated);
    char warning[512];
    release_index_warning(&status, "2026.11.4", warning, sizeof warning);
    assert_string_equal(warning, "");
}

static void test_malformed_index_is_a_problem_not_a_crash(void **unused)
{
    (void)unused;
    const char *bad[] = {"not json", "[1,2]", "{\"stable\": 3}", "{\"stable\": \"x\", \"deprecated\": {}}"};
    for (size_t i = 0; i < 4; i++) {
        release_status status = {.configured = true};
        release_index_evaluate(bad[i], "idx.json", "1", &status);
        assert_false(status.ok);
        assert_non_null(strstr(status.problem, "idx.json"));
    }
}

static void test_unreachable_sources_are_described(void **unused)
{
    (void)unused;
    release_status status;
    release_index_check("/nonexistent/releases.json", "1", &status);
    assert_true(status.configured);
    assert_false(status.ok);
    assert_non_null(strstr(status.problem, "unreachable"));
    release_index_check("http://127.0.0.1:1/releases.json", "1", &status);
    assert_false(status.ok);
    assert_non_null(strstr(status.problem, "127.0.0.1:1"));
    release_index_check("", "1", &status);
    assert_false(status.configured);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listed_version_is_deprecated_with_the_exact_warning),
        cmocka_unit_test(test_unlisted_version_has_no_warning),
        cmocka_unit_test(test_malformed_index_is_a_problem_not_a_crash),
        cmocka_unit_test(test_unreachable_sources_are_described),
    };
    return cmocka_run_group_tests_name("release_index", tests, NULL, NULL);
}
