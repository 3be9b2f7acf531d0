/* Unit tests: the text rules of the query path - memory sizes, UTF-8 repair,
 * JSON documents made safe to embed, lenient plan JSON, frames. */
#include "test_helpers.h"

#include <sys/socket.h>

#include "core/strbuf.h"
#include "engine/query_guard.h"
#include "engine/query_pool.h"
#include "engine/query_protocol.h"
#include "engine/result_format.h"

static void test_memory_sizes_parse_as_duckdb_writes_them(void **unused)
{
    (void)unused;
    long long bytes = 0;
    assert_true(query_pool_parse_memory("2GB", &bytes));
    assert_int_equal(bytes, 2000000000LL);
    assert_true(query_pool_parse_memory("512MiB", &bytes));
    assert_int_equal(bytes, 512LL * 1024 * 1024);
    assert_true(query_pool_parse_memory("1.5 gb", &bytes));
    assert_int_equal(bytes, 1500000000LL);
    assert_true(query_pool_parse_memory("10%", &bytes) && bytes > 0);
    assert_false(query_pool_parse_memory("lots", &bytes));
    assert_false(query_pool_parse_memory("2 parsecs", &bytes));
    assert_false(query_pool_parse_memory("-1GB", &bytes));
}

static void test_utf8_is_cut_and_repaired_on_character_boundaries(void **unused)
{
    (void)unused;
    char text[16] = "ab\xe8\x8a\x8a"; /* "ab" + U+82AA (3 bytes) */
    query_utf8_truncate(text, 4);      /* room for 3 bytes: the character does not fit */
    assert_string_equal(text, "ab");
    char cut[16] = "option \xe8"; /* what DuckDB's message held: half a character */
    query_utf8_truncate(cut, sizeof cut);
    assert_string_equal(cut, "option ");
    char bad[16] = "a\xff" "b\xc0\xaf";
    query_utf8_sanitize(bad);
    assert_string_equal(bad, "a?b??");
}

static void document(const char *text, const char *expected)
{
    strbuf out;
    strbuf_init(&out);
    result_format_json_document(&out, text, strlen(text));
    assert_string_equal(out.data, expected);
    strbuf_free(&out);
}

static void test_json_documents_come_out_as_json(void **unused)
{
    (void)unused;
    document("{\"foo\":NaN}", "{\"foo\":\"NaN\"}");
    document("[Infinity,-Infinity, 1.5e3]", "[\"Infinity\",\"-Infinity\",1.5e3]");
    document(" {\"a\" : {\"b\": [true, null, \"NaN\"]}} ", "{\"a\":{\"b\":[true,null,\"NaN\"]}}");
    document("\"Infinity\"", "\"Infinity\"");
    document("not json", "\"not json\"");
    document("{\"a\":1", "\"{\\\"a\\\":1\"");
    strbuf out;
    strbuf_init(&out);
    result_format_json_string(&out, "x\xff", 2);
    assert_string_equal(out.data, "\"x\xef\xbf\xbd\"");
    strbuf_free(&out);
}

static void test_plans_with_bare_infinities_still_parse(void **unused)
{
    (void)unused;
    json_t *tree = NULL;
    agnes_error err;
    assert_int_equal(query_guard_load_tree("{\"v\":Infinity,\"w\":-Infinity,\"x\":NaN,\"s\":\"NaN Infinity\","
                                           "\"q\":18446744073709551615}",
                                           &tree, &err),
                     AGNES_OK);
    assert_true(json_is_null(json_object_get(tree, "v")) && json_is_null(json_object_get(tree, "x")));
    assert_string_equal(json_string_value(json_object_get(tree, "s")), "NaN Infinity");
    assert_true(json_is_real(json_object_get(tree, "q")));
    json_decref(tree);
    char name[64];
    assert_true(query_guard_missing_name("Catalog Error: Table with name ordrs does not exist!\nDid you mean "
                                         "\"orders\"?",
                                         name, sizeof name));
    assert_string_equal(name, "ordrs");
    assert_int_equal(query_guard_missing("ORDERS", &err), AGNES_ERR_FORBIDDEN);
    assert_non_null(strstr(err.message, "'orders' does not exist or you have no access"));
}

static void test_frames_round_trip_and_a_closed_peer_is_the_end(void **unused)
{
    (void)unused;
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    agnes_error err;
    json_t *head = json_pack("{s:b}", "truncated", 1);
    assert_int_equal(query_frame_write_json(pair[0], QUERY_FRAME_HEAD, head, &err), AGNES_OK);
    assert_int_equal(query_frame_write(pair[0], QUERY_FRAME_DATA, "abc", 3, &err), AGNES_OK);
    close(pair[0]);
    strbuf payload;
    strbuf_init(&payload);
    char type = 0;
    assert_int_equal(query_frame_read(pair[1], &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_HEAD);
    json_t *back = query_frame_json(&payload);
    assert_true(json_equal(head, back));
    assert_int_equal(query_frame_read(pair[1], &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_DATA);
    assert_int_equal(payload.len, 3);
    assert_int_equal(query_frame_read(pair[1], &type, &payload, &err), AGNES_ERR_NOT_FOUND);
    close(pair[1]);
    strbuf_free(&payload);
    json_decref(head);
    json_decref(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_sizes_parse_as_duckdb_writes_them),
        cmocka_unit_test(test_utf8_is_cut_and_repaired_on_character_boundaries),
        cmocka_unit_test(test_json_documents_come_out_as_json),
        cmocka_unit_test(test_plans_with_bare_infinities_still_parse),
        cmocka_unit_test(test_frames_round_trip_and_a_closed_peer_is_the_end),
    };
    return cmocka_run_group_tests_name("query_text", tests, NULL, NULL);
}
