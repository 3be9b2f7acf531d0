/*
 * schedule.h - when a table is due for a sync.
 *
 * The grammar is the original's, so registries carry over unchanged:
 *
 *   every <N>m             every N minutes (N >= 1)
 *   every <N>h             every N hours (N >= 1)
 *   daily HH:MM[,HH:MM..]  at these UTC times each day (up to 8)
 *
 * Due rule: never synced -> due; an interval -> due once N minutes or
 * hours have passed since the last sync; daily -> due when some time T of
 * today has passed and the last sync was before T.
 *
 * The scheduler judges the due rule against the last *successful* sync, so
 * a failed attempt does not count as the slot's sync (a failed "daily 02:30"
 * was otherwise not tried again until the next day).  Failed attempts are
 * retried with backoff: the first retry waits the configured delay
 * (sync.retry_seconds, default 60 s), each further one twice as long, never
 * longer than an hour nor than an interval schedule's own period.
 */
#ifndef AGNES_CORE_SCHEDULE_H
#define AGNES_CORE_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

#define SCHEDULE_MAX_TIMES 8

typedef struct schedule {
    enum { SCHEDULE_INTERVAL, SCHEDULE_DAILY } kind;
    int64_t interval_seconds;             /* SCHEDULE_INTERVAL */
    int times[SCHEDULE_MAX_TIMES];        /* SCHEDULE_DAILY: minutes after midnight UTC, ascending */
    int time_count;
} schedule;

/* Parse `text`; AGNES_ERR_INVALID with a sentence showing the grammar. */
int schedule_parse(const char *text, schedule *out, agnes_error *err);

/* last_sync < 0 means never synced.  Times are Unix seconds (UTC). */
bool schedule_is_due(const schedule *s, int64_t last_sync, int64_t now);

/* Seconds to wait after the last of `failures` consecutive failed attempts
 * (failures >= 1) before the next one: first_delay doubled per further
 * failure, capped as the module comment says.  0 when failures < 1. */
int64_t schedule_retry_delay(const schedule *s, long long failures, int64_t first_delay);

/* Should a sync start now?  Due by the schedule since last_success, and
 * after failed attempts (failures since that success, the latest at
 * last_attempt) only once the retry delay has passed.  Times are Unix
 * seconds (UTC); negative means never. */
bool schedule_should_run(const schedule *s, int64_t last_success, int64_t last_attempt, long long failures,
                         int64_t first_delay, int64_t now);

#endif
