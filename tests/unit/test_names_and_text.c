/* The UTF-8 rule at the program's edges, the one rule for table names, and
 * files written side by side by threads (issue 13 items 14 and 24). */
#include "test_helpers.h"

#include <pthread.h>

#include "core/error.h"
#include "core/utf8.h"
#include "core/util.h"
#include "engine/contract.h"

static void valid_utf8_is_what_jansson_and_duckdb_accept(void **state)
{
    (void)state;
    const char *good[] = {"", "plain", "é", "日本", "💥", "\xef\xbf\xbd", "a\nb"};
    const char *bad[] = {"\xff", "\xc3", "ab\xe6\x97", "\xc0\xaf" /* overlong / */, "\xed\xa0\x80" /* surrogate */,
                         "\xf4\x90\x80\x80" /* > U+10FFFF */, "\x80"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(utf8_is_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(utf8_is_valid(bad[i], strlen(bad[i])));
}

static void a_cut_character_is_trimmed_and_bad_bytes_are_replaced(void **state)
{
    (void)state;
    char cut[] = "caf\xc3\xa9\xe6\x97"; /* "café" then 2 of 3 bytes of 日 */
    utf8_trim_partial(cut);
    assert_string_equal(cut, "caf\xc3\xa9");
    char whole[] = "caf\xc3\xa9";
    utf8_trim_partial(whole);
    assert_string_equal(whole, "caf\xc3\xa9");
    char *repaired = utf8_sanitize("a\xff" "b\xc3");
    assert_string_equal(repaired, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
    free(repaired);
}

static void an_error_sentence_cut_at_its_size_stays_utf8(void **state)
{
    (void)state;
    char long_text[3000];
    size_t n = 0;
    while (n + 2 < sizeof long_text) { /* é is 2 bytes: an odd cut lands inside one */
        long_text[n++] = '\xc3';
        long_text[n++] = '\xa9';
    }
    long_text[n] = '\0';
    agnes_error err;
    agnes_error_set(&err, AGNES_ERR_INVALID, "x%s", long_text);
    assert_true(utf8_is_valid(err.message, strlen(err.message)));
    agnes_error_wrap(&err, "while y");
    assert_true(utf8_is_valid(err.message, strlen(err.message)));
}

static void table_names_duckdb_or_the_contract_use_are_refused(void **state)
{
    (void)state;
    /* Asked of DuckDB itself, so these come from the engine, not a list here. */
    const char *reserved[] = {"duckdb_views", "DUCKDB_TABLES", "duckdb_columns", "pg_class", "pg_catalog",
                              "information_schema", "sqlite_master", "main", "_meta", "_Remote_Attach"};
    const char *fine[] = {"orders", "duckdb", "pg", "metadata", "meta", "tables", "views", "columns", "sales_2024"};
    char why[300];
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        assert_true(contract_is_reserved_name(reserved[i]));
        assert_false(contract_table_name_ok(reserved[i], why, sizeof why));
        assert_non_null(strstr(why, "already uses"));
    }
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        assert_true(contract_table_name_ok(fine[i], why, sizeof why));
    assert_false(contract_table_name_ok("bad-name", why, sizeof why));
    assert_non_null(strstr(why, "letters, digits and _"));
}

typedef struct copier {
    const char *src;
    const char *dst;
    int rc;
} copier;

static void *copy_same_destination(void *arg)
{
    copier *c = arg;
    agnes_error err;
    c->rc = util_copy_file_atomic(c->src, c->dst, &err);
    return NULL;
}

static void threads_writing_one_path_at_once_all_succeed(void **state)
{
    (void)state;
    char *dir = make_temp_dir(), src[300], dst[300], other[300];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(dst, sizeof dst, "%s/dst", dir);
    agnes_error err;
    assert_int_equal(util_write_file_atomic(src, "body", 4, 0600, &err), AGNES_OK);
    pthread_t threads[8];
    copier copiers[8];
    for (int i = 0; i < 8; i++) {
        copiers[i] = (copier){src, dst, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, copy_same_destination, &copiers[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(copiers[i].rc, AGNES_OK); /* one temp file each: none renamed away */
    }
    bool taken = false;
    assert_int_equal(util_copy_file_new(src, dst, &taken, &err), AGNES_ERR_IO);
    assert_true(taken); /* never replaces */
    snprintf(other, sizeof other, "%s/other", dir);
    assert_int_equal(util_copy_file_new(src, other, &taken, &err), AGNES_OK);
    assert_false(taken);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_utf8_is_what_jansson_and_duckdb_accept),
        cmocka_unit_test(a_cut_character_is_trimmed_and_bad_bytes_are_replaced),
        cmocka_unit_test(an_error_sentence_cut_at_its_size_stays_utf8),
        cmocka_unit_test(table_names_duckdb_or_the_contract_use_are_refused),
        cmocka_unit_test(threads_writing_one_path_at_once_all_succeed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
