/* Unit tests: the per-address token bucket behind /auth/ rate limits. */
#include "test_helpers.h"

#include "http/rate_limit.h"

static rate_limiter *make(unsigned per_minute)
{
    rate_limiter *limiter = malloc(sizeof *limiter);
    assert_non_null(limiter);
    assert_int_equal(rate_limiter_init(limiter, per_minute), 0);
    return limiter;
}

static void test_burst_then_refill_at_the_configured_rate(void **unused)
{
    (void)unused;
    rate_limiter *limiter = make(10); /* one token every 6 s */
    unsigned retry = 0;
    for (int i = 0; i < 10; i++)
        assert_true(rate_limiter_take(limiter, "10.0.0.1", 1000.0, &retry));
    assert_false(rate_limiter_take(limiter, "10.0.0.1", 1000.0, &retry));
    assert_int_equal(retry, 6);
    assert_false(rate_limiter_take(limiter, "10.0.0.1", 4000.0, &retry));
    assert_int_equal(retry, 3);
    assert_true(rate_limiter_take(limiter, "10.0.0.1", 7000.0, &retry));
    assert_false(rate_limiter_take(limiter, "10.0.0.1", 7000.0, &retry));
    rate_limiter_free(limiter);
    free(limiter);
}

static void test_addresses_have_separate_buckets(void **unused)
{
    (void)unused;
    rate_limiter *limiter = make(1);
    unsigned retry = 0;
    assert_true(rate_limiter_take(limiter, "10.0.0.1", 0, &retry));
    assert_false(rate_limiter_take(limiter, "10.0.0.1", 0, &retry));
    assert_true(rate_limiter_take(limiter, "10.0.0.2", 0, &retry));
    assert_true(rate_limiter_take(limiter, "::1", 0, &retry));
    rate_limiter_free(limiter);
    free(limiter);
}

static void test_zero_disables(void **unused)
{
    (void)unused;
    rate_limiter *limiter = make(0);
    unsigned retry = 0;
    for (int i = 0; i < 1000; i++)
        assert_true(rate_limiter_take(limiter, "10.0.0.1", 0, &retry));
    rate_limiter_free(limiter);
    free(limiter);
}

static void test_many_addresses_never_fail_closed_for_newcomers(void **unused)
{
    (void)unused;
    rate_limiter *limiter = make(1);
    unsigned retry = 0;
    char address[32];
    for (int i = 0; i < 20000; i++) { /* far more addresses than buckets */
        snprintf(address, sizeof address, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_true(rate_limiter_take(limiter, address, (double)i, &retry));
    }
    rate_limiter_free(limiter);
    free(limiter);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill_at_the_configured_rate),
        cmocka_unit_test(test_addresses_have_separate_buckets),
        cmocka_unit_test(test_zero_disables),
        cmocka_unit_test(test_many_addresses_never_fail_closed_for_newcomers),
    };
    return cmocka_run_group_tests_name("rate_limit", tests, NULL, NULL);
}
