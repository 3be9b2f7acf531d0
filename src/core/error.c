#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

int agnes_error_set(agnes_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int written = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* A message cut at the buffer's size may end inside a character; the
     * sentence goes into JSON, which refuses a broken one. */
    if (written >= (int)sizeof err->message)
        utf8_trim_partial(err->message);
    return code;
}

int agnes_error_wrap(agnes_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return AGNES_ERR_INVALID;
    char prefix[AGNES_ERROR_MESSAGE_MAX];
    char old[AGNES_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    if (snprintf(err->message, sizeof err->message, "%s: %s", prefix, old) >= (int)sizeof err->message)
        utf8_trim_partial(err->message);
    return err->code;
}

void agnes_error_clear(agnes_error *err)
{
    if (err == NULL)
        return;
    err->code = AGNES_OK;
    err->message[0] = '\0';
}

const char *agnes_status_name(int code)
{
    switch (code) {
    case AGNES_OK: return "ok";
    case AGNES_ERR_INVALID: return "invalid";
    case AGNES_ERR_IO: return "io";
    case AGNES_ERR_NOMEM: return "nomem";
    case AGNES_ERR_DB: return "db";
    case AGNES_ERR_CONFIG: return "config";
    case AGNES_ERR_STATE: return "state";
    case AGNES_ERR_NETWORK: return "network";
    case AGNES_ERR_NOT_FOUND: return "not_found";
    case AGNES_ERR_FORBIDDEN: return "forbidden";
    case AGNES_ERR_TIMEOUT: return "timeout";
    case AGNES_ERR_BUSY: return "busy";
    default: return "unknown";
    }
}
