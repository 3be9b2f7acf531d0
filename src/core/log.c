#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* The level is the only process-wide logging state; atomic because request
 * threads read it while the main thread may set it once at start. */
static _Atomic int minimum_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    atomic_store(&minimum_level, (int)level);
}

int log_parse_level(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_write(enum log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&minimum_level))
        return;
    char line[8192];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ level=%s ", (long)(tv.tv_usec / 1000),
                  level_names[level]);
    char message[4096];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    /* Values often come from requests (paths, names, error text quoting
     * them): a newline there would forge a whole line for whoever reads the
     * log, so control bytes never reach it raw. */
    for (const unsigned char *p = (const unsigned char *)message; *p && (size_t)n < sizeof line - 6; p++) {
        if (*p < 0x20 || *p == 0x7f)
            n += snprintf(line + n, sizeof line - (size_t)n, "\\x%02x", *p);
        else
            line[n++] = (char)*p;
    }
    line[n++] = '\n';
    /* One write keeps concurrent lines whole; a failed log write has nowhere to go. */
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
    (void)ignored;
}

const char *log_quote(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = in ? in : ""; *p && n + 3 < size; p++) {
        if (*p == '"' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    out[n] = '\0';
    return out;
}
