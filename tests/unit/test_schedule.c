/* The sync schedule grammar and due rule (issue 5, reference §4.7). */
#include "test_helpers.h"

#include "core/schedule.h"

#define DAY 86400
/* 2026-11-23 00:00:00 UTC */
#define MIDNIGHT 1795392000LL

static void parses_the_three_forms(void **state)
{
    (void)state;
    schedule s;
    agnes_error err;
    assert_int_equal(schedule_parse("every 15m", &s, &err), AGNES_OK);
    assert_int_equal(s.kind, SCHEDULE_INTERVAL);
    assert_int_equal(s.interval_seconds, 900);
    assert_int_equal(schedule_parse("every 6h", &s, &err), AGNES_OK);
    assert_int_equal(s.interval_seconds, 6 * 3600);
    assert_int_equal(schedule_parse("daily 14:30, 02:05", &s, &err), AGNES_OK);
    assert_int_equal(s.kind, SCHEDULE_DAILY);
    assert_int_equal(s.time_count, 2);
    assert_int_equal(s.times[0], 2 * 60 + 5); /* sorted */
    assert_int_equal(s.times[1], 14 * 60 + 30);
}

static void refuses_what_is_not_the_grammar(void **state)
{
    (void)state;
    const char *bad[] = {"", "every", "every 0m", "every -5m", "every 5", "every 5d", "every 5m ", "hourly",
                         "daily", "daily 24:00", "daily 12:60", "daily 1:30", "daily 12:30,", "daily 12:30;13:00",
                         "every 15 m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        schedule s;
        agnes_error err;
        assert_int_equal(schedule_parse(bad[i], &s, &err), AGNES_ERR_INVALID);
        assert_non_null(strstr(err.message, "every <N>m"));
    }
}

static void intervals_are_due_once_elapsed(void **state)
{
    (void)state;
    schedule s;
    agnes_error err;
    assert_int_equal(schedule_parse("every 15m", &s, &err), AGNES_OK);
    assert_true(schedule_is_due(&s, -1, MIDNIGHT));           /* never synced */
    assert_false(schedule_is_due(&s, MIDNIGHT, MIDNIGHT + 899));
    assert_true(schedule_is_due(&s, MIDNIGHT, MIDNIGHT + 900));
}

static void daily_times_are_due_once_each_day(void **state)
{
    (void)state;
    schedule s;
    agnes_error err;
    assert_int_equal(schedule_parse("daily 02:30,14:30", &s, &err), AGNES_OK);
    long long t0230 = MIDNIGHT + 150 * 60, t1430 = MIDNIGHT + 870 * 60;
    assert_false(schedule_is_due(&s, t0230 - 60, t0230 - 1));    /* not yet 02:30 */
    assert_true(schedule_is_due(&s, t0230 - 60, t0230));         /* 02:30 reached, last sync before it */
    assert_false(schedule_is_due(&s, t0230 + 5, t0230 + 3600));  /* already synced after 02:30 */
    assert_true(schedule_is_due(&s, t0230 + 5, t1430 + 1));      /* 14:30 passed */
    assert_false(schedule_is_due(&s, t1430 + 2, MIDNIGHT + DAY - 1));
    assert_false(schedule_is_due(&s, t1430 + 2, MIDNIGHT + DAY + 60)); /* next day, before 02:30 */
    assert_true(schedule_is_due(&s, t1430 + 2, MIDNIGHT + DAY + 150 * 60));
}

/* Issue 13, item 9: "daily 02:30" synced yesterday, fails at today's 02:30: retried the same morning, with
 * backoff, instead of tomorrow. */
static void a_failed_daily_sync_is_retried_with_backoff_before_the_next_slot(void **state)
{
    (void)state;
    schedule s;
    agnes_error err;
    assert_int_equal(schedule_parse("daily 02:30", &s, &err), AGNES_OK);
    long long slot = MIDNIGHT + 150 * 60, yesterday = slot - DAY;
    assert_true(schedule_should_run(&s, yesterday, -1, 0, 60, slot));               /* the slot */
    assert_false(schedule_should_run(&s, yesterday, slot, 1, 60, slot + 59));       /* failed: wait 60 s */
    assert_true(schedule_should_run(&s, yesterday, slot, 1, 60, slot + 60));        /* first retry */
    assert_false(schedule_should_run(&s, yesterday, slot + 60, 2, 60, slot + 179)); /* then 120 s */
    assert_true(schedule_should_run(&s, yesterday, slot + 60, 2, 60, slot + 180));
    assert_int_equal(schedule_retry_delay(&s, 3, 60), 240);
    assert_int_equal(schedule_retry_delay(&s, 30, 60), 3600); /* at most an hour */
    assert_int_equal(schedule_retry_delay(&s, 0, 60), 0);
    /* Succeeded at 02:40: nothing more until tomorrow's 02:30. */
    assert_false(schedule_should_run(&s, slot + 600, slot + 600, 0, 60, slot + 7200));
    assert_true(schedule_should_run(&s, slot + 600, slot + 600, 0, 60, slot + DAY));
    /* Never succeeded and failing: still tried, but not on every check. */
    assert_true(schedule_should_run(&s, -1, -1, 0, 60, slot));
    assert_false(schedule_should_run(&s, -1, slot, 4, 60, slot + 479));
    assert_true(schedule_should_run(&s, -1, slot, 4, 60, slot + 480));
}

static void intervals_count_from_the_last_success_and_retry_within_their_period(void **state)
{
    (void)state;
    schedule s;
    agnes_error err;
    assert_int_equal(schedule_parse("every 1h", &s, &err), AGNES_OK);
    long long success = MIDNIGHT + 10 * 3600;
    assert_false(schedule_should_run(&s, success, success, 0, 60, success + 3599));
    assert_true(schedule_should_run(&s, success, success, 0, 60, success + 3600));
    /* the 11:00 attempt failed: retried at 11:01, not at 12:00 */
    assert_true(schedule_should_run(&s, success, success + 3600, 1, 60, success + 3660));
    assert_int_equal(schedule_parse("every 5m", &s, &err), AGNES_OK);
    assert_int_equal(schedule_retry_delay(&s, 10, 60), 300); /* never longer than the period */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_the_three_forms),
        cmocka_unit_test(refuses_what_is_not_the_grammar),
        cmocka_unit_test(intervals_are_due_once_elapsed),
        cmocka_unit_test(daily_times_are_due_once_each_day),
        cmocka_unit_test(a_failed_daily_sync_is_retried_with_backoff_before_the_next_slot),
        cmocka_unit_test(intervals_count_from_the_last_success_and_retry_within_their_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
