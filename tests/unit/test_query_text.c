/* Unit tests: the text rules of the query path - memory sizes, UTF-8 repair,
 * JSON documents made safe to embed, lenient plan JSON, frames. */
#include "test_helpers.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* The definition the fast path must match: the first of %.15g, %.16g,
 * %.17g that reads back as the value. */
static void shortest_by_search(char *text, size_t size, double value)
{
    for (int precision = 15; precision <= 17; precision++) {
        snprintf(text, size, "%.*g", precision, value);
        if (strtod(text, NULL) == value)
            return;
    }
}

static void expect_real(double value)
{
    char expected[40];
    strbuf out;
    strbuf_init(&out);
    shortest_by_search(expected, sizeof expected, value);
    result_format_real(&out, value, false, true);
    if (strcmp(out.data, expected) != 0)
        fail_msg("%.17g: got %s, expected %s", value, out.data, expected);
    strbuf_free(&out);
}

static void test_doubles_print_as_the_shortest_text_that_reads_back(void **unused)
{
    (void)unused;
    static const double known[] = {0.1, 0.3, 1.0 / 3, 2.0 / 3, 0.30000000000000004, 1e15, 1e16, 1e17, 123456789012345678.0,
                                    9.999999999999999e22, 1e23, 5e-324 * 1e308, 1e-4, 1e-5, 0.00012345, 1e308,
                                    DBL_MAX, DBL_MIN, -0.1, -1e-5, 4.35, 2.675, 1.005, 0.5, 1234.5, 9.5, 99.5,
                                    0.15, 0.25, 0.35, 1e21, 1e22, 144115188075855877.0};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        expect_real(known[i]);
    /* Random bit patterns (every exponent), and the decimal-looking values
     * averages and ratios produce, where the 15/16/17-digit choice matters. */
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 300000; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        double value;
        memcpy(&value, &state, sizeof value);
        if (isfinite(value) && fabs(value) >= DBL_MIN)
            expect_real(value);
        expect_real((double)(state % 100000000) / (double)(1 + state % 997));
        expect_real((double)(state % 1000000) / 100.0);
    }
    strbuf out;
    strbuf_init(&out);
    result_format_real(&out, 1e-320, false, true); /* subnormal: fewer digits */
    assert_string_equal(out.data, "1e-320");
    strbuf_reset(&out);
    result_format_real(&out, NAN, false, true);
    assert_string_equal(out.data, "\"NaN\"");
    strbuf_reset(&out);
    result_format_real(&out, -0.0, false, false);
    assert_string_equal(out.data, "-0");
    strbuf_free(&out);
}

static void test_a_batch_of_frames_reads_back_through_the_buffered_reader(void **unused)
{
    (void)unused;
    int pair[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    agnes_error err;
    strbuf batch, payload;
    strbuf_init(&batch);
    strbuf_init(&payload);
    json_t *head = json_pack("{s:b, s:b}", "truncated", 0, "complete", 1);
    char *big = malloc(QUERY_DATA_FRAME);
    assert_non_null(big);
    memset(big, 'x', QUERY_DATA_FRAME);
    assert_int_equal(query_frame_append_json(&batch, QUERY_FRAME_HEAD, head, &err), AGNES_OK);
    assert_int_equal(query_frame_append(&batch, QUERY_FRAME_DATA, "abc", 3, &err), AGNES_OK);
    /* A writer of its own: the big frame is more than the socket holds. */
    pid_t writer = fork();
    assert_true(writer >= 0);
    if (writer == 0) {
        close(pair[1]);
        int ok = query_frame_send(pair[0], &batch, &err) == AGNES_OK && batch.len == 0 &&
                 /* a frame bigger than the reader's first buffer, then one split across writes */
                 query_frame_write(pair[0], QUERY_FRAME_DATA, big, QUERY_DATA_FRAME, &err) == AGNES_OK &&
                 write(pair[0], "Z\x02\0", 3) == 3 && usleep(20000) == 0 && write(pair[0], "\0\0{}", 4) == 4;
        _exit(ok ? 0 : 1);
    }
    close(pair[0]);
    query_frame_reader reader;
    query_frame_reader_init(&reader, pair[1]);
    char type = 0;
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_HEAD);
    json_t *back = query_frame_json(&payload);
    assert_true(json_equal(head, back));
    assert_true(query_frame_reader_pending(&reader) > 0); /* the DATA frame came with it */
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_DATA);
    assert_int_equal(payload.len, 3);
    assert_memory_equal(payload.data, "abc", 3);
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_DATA);
    assert_int_equal(payload.len, QUERY_DATA_FRAME);
    assert_memory_equal(payload.data, big, QUERY_DATA_FRAME);
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_OK);
    assert_int_equal(type, QUERY_FRAME_END);
    assert_int_equal(payload.len, 2);
    assert_int_equal(query_frame_reader_pending(&reader), 0);
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_ERR_NOT_FOUND);
    query_frame_reader_free(&reader);
    close(pair[1]);
    int status = -1;
    assert_int_equal(waitpid(writer, &status, 0), writer);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* A frame cut off by the peer's end is an I/O error, not a clean end. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    assert_int_equal(write(pair[0], "D\x05\0\0\0ab", 7), 7);
    close(pair[0]);
    query_frame_reader_init(&reader, pair[1]);
    assert_int_equal(query_frame_reader_next(&reader, &type, &payload, &err), AGNES_ERR_IO);
    query_frame_reader_free(&reader);
    close(pair[1]);
    free(big);
    strbuf_free(&batch);
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
        cmocka_unit_test(test_doubles_print_as_the_shortest_text_that_reads_back),
        cmocka_unit_test(test_a_batch_of_frames_reads_back_through_the_buffered_reader),
    };
    return cmocka_run_group_tests_name("query_text", tests, NULL, NULL);
}
