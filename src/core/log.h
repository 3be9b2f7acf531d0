/*
 * log.h - one line per event on stderr, logfmt style (key=value), so both a
 * person tailing `docker logs` and a machine grepping for request_id can
 * read it.  Thread-safe: each line is formatted first and written with one
 * write(2).  Control bytes (newlines above all) in a formatted line are
 * written as \xHH: request data can never forge a line.
 */
#ifndef AGNES_CORE_LOG_H
#define AGNES_CORE_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Set the minimum level printed; parse "debug|info|warn|error" (false if unknown). */
void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *out);

void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* `in` made safe inside a quoted logfmt value (key="..."): " and a backslash get a
 * backslash, so a value cannot close its quotes and add fields of its own.
 * Control bytes are escaped by log_write itself.  Returns out (truncated
 * to size). */
const char *log_quote(const char *in, char *out, size_t size);

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
