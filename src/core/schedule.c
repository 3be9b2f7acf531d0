#include "core/schedule.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define GRAMMAR "Use \"every <N>m\", \"every <N>h\" or \"daily HH:MM[,HH:MM]\" (UTC), e.g. \"every 15m\" or \"daily 02:30\"."

static int invalid(const char *text, agnes_error *err)
{
    return agnes_error_set(err, AGNES_ERR_INVALID, "Invalid schedule \"%s\". " GRAMMAR, text);
}

static int parse_interval(const char *text, const char *p, schedule *out, agnes_error *err)
{
    char *end = NULL;
    if (!isdigit((unsigned char)*p))
        return invalid(text, err);
    long long n = strtoll(p, &end, 10);
    if (n < 1 || n > 100000 || (*end != 'm' && *end != 'h') || end[1] != '\0')
        return invalid(text, err);
    out->kind = SCHEDULE_INTERVAL;
    out->interval_seconds = n * (*end == 'm' ? 60 : 3600);
    return AGNES_OK;
}

static int compare_ints(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int parse_daily(const char *text, const char *p, schedule *out, agnes_error *err)
{
    out->kind = SCHEDULE_DAILY;
    out->time_count = 0;
    for (;;) {
        if (!(isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) && p[2] == ':' &&
              isdigit((unsigned char)p[3]) && isdigit((unsigned char)p[4])))
            return invalid(text, err);
        int hours = (p[0] - '0') * 10 + (p[1] - '0'), minutes = (p[3] - '0') * 10 + (p[4] - '0');
        if (hours > 23 || minutes > 59 || out->time_count == SCHEDULE_MAX_TIMES)
            return invalid(text, err);
        out->times[out->time_count++] = hours * 60 + minutes;
        p += 5;
        if (*p == '\0')
            break;
        if (*p != ',')
            return invalid(text, err);
        p++;
        while (*p == ' ')
            p++;
    }
    qsort(out->times, (size_t)out->time_count, sizeof out->times[0], compare_ints);
    return AGNES_OK;
}

int schedule_parse(const char *text, schedule *out, agnes_error *err)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "every ", 6) == 0)
        return parse_interval(text, text + 6, out, err);
    if (strncmp(text, "daily ", 6) == 0)
        return parse_daily(text, text + 6, out, err);
    return invalid(text, err);
}

bool schedule_is_due(const schedule *s, int64_t last_sync, int64_t now)
{
    if (last_sync < 0)
        return true;
    if (s->kind == SCHEDULE_INTERVAL)
        return now - last_sync >= s->interval_seconds;
    int64_t midnight = now - ((now % 86400) + 86400) % 86400;
    for (int i = 0; i < s->time_count; i++) {
        int64_t target = midnight + (int64_t)s->times[i] * 60;
        if (now >= target && last_sync < target)
            return true;
    }
    return false;
}

#define RETRY_CAP_SECONDS 3600

int64_t schedule_retry_delay(const schedule *s, long long failures, int64_t first_delay)
{
    if (failures < 1)
        return 0;
    int64_t cap = RETRY_CAP_SECONDS;
    if (s->kind == SCHEDULE_INTERVAL && s->interval_seconds < cap)
        cap = s->interval_seconds;
    if (first_delay < 1)
        first_delay = 1;
    int64_t delay = first_delay;
    for (long long i = 1; i < failures && delay < cap; i++)
        delay *= 2;
    return delay < cap ? delay : cap;
}

bool schedule_should_run(const schedule *s, int64_t last_success, int64_t last_attempt, long long failures,
                         int64_t first_delay, int64_t now)
{
    if (!schedule_is_due(s, last_success, now))
        return false;
    if (failures < 1 || last_attempt < 0)
        return true;
    return now - last_attempt >= schedule_retry_delay(s, failures, first_delay);
}
