/*
 * error.h - the one error convention used everywhere in Agnes.
 *
 * A function that can fail returns an int: AGNES_OK (0) on success, or one
 * of the negative AGNES_ERR_* codes.  When it fails it also writes a
 * human-readable sentence into the caller's agnes_error, which says what
 * went wrong and, wherever we know it, how to fix it.  Operators are often
 * AI agents: the message is the interface, so it must name files, keys and
 * the next command to run.
 *
 * The caller owns the agnes_error (usually on its stack); callees never
 * allocate for errors, so an out-of-memory path can still report itself.
 */
#ifndef AGNES_CORE_ERROR_H
#define AGNES_CORE_ERROR_H

#include <stddef.h>

enum agnes_status {
    AGNES_OK = 0,
    AGNES_ERR_INVALID = -1, /* bad input: argument, config value, request */
    AGNES_ERR_IO = -2,      /* filesystem or socket failure */
    AGNES_ERR_NOMEM = -3,   /* allocation failed */
    AGNES_ERR_DB = -4,      /* DuckDB reported an error */
    AGNES_ERR_CONFIG = -5,  /* configuration is wrong; message names key, file, line */
    AGNES_ERR_STATE = -6,   /* on-disk state forbids continuing (newer schema, shadow mount) */
    AGNES_ERR_NETWORK = -7, /* outbound request failed */
    AGNES_ERR_NOT_FOUND = -8,
    AGNES_ERR_FORBIDDEN = -9, /* the caller may not do or see this */
    AGNES_ERR_TIMEOUT = -10,  /* a deadline passed; the work was interrupted */
    AGNES_ERR_BUSY = -11,     /* a concurrency limit was reached; retry later */
};

#define AGNES_ERROR_MESSAGE_MAX 1024

typedef struct agnes_error {
    int code;
    char message[AGNES_ERROR_MESSAGE_MAX];
} agnes_error;

/* Record an error and return its code, so callers can write
 * `return agnes_error_set(err, AGNES_ERR_IO, "...", ...);`.
 * err may be NULL when the caller does not want the message. */
int agnes_error_set(agnes_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message with more context ("while X: <old message>"). */
int agnes_error_wrap(agnes_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void agnes_error_clear(agnes_error *err);

/* A short stable name for a code ("invalid", "io", ...), for logs. */
const char *agnes_status_name(int code);

#endif
