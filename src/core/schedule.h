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

#endif
