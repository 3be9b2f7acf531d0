#include "http/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Match path against pattern, collecting {params} into req (may be NULL).
 * A segment too long for a parameter's buffer never matches, with or
 * without req - the two calls in router_match must agree, or a handler
 * would run with its parameters unset - and sets *too_long when given. */
static bool pattern_matches(const char *pattern, const char *path, http_request *req, bool *too_long)
{
    int param_count = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *segment_end = strchr(s, '/');
            size_t len = segment_end ? (size_t)(segment_end - s) : strlen(s);
            if (close == NULL || len == 0 || param_count >= HTTP_MAX_PARAMS)
                return false;
            if (len >= HTTP_PARAM_MAX) {
                if (too_long)
                    *too_long = true;
                return false;
            }
            if (req) {
                http_param *param = &req->params[param_count];
                param->name = p + 1;
                param->name_len = (size_t)(close - p - 1);
                memcpy(param->value, s, len);
                param->value[len] = '\0';
            }
            param_count++;
            p = close + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    if (*p != '\0' || *s != '\0')
        return false;
    if (req)
        req->param_count = param_count;
    return true;
}

static bool method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

enum route_match_result router_match(const route *routes, size_t count, const char *method, const char *path,
                                     http_request *req, const route **out, char *allow, size_t allow_size)
{
    bool path_known = false, too_long = false;
    size_t allow_len = 0;
    if (allow_size > 0)
        allow[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (!pattern_matches(routes[i].pattern, path, NULL, &too_long))
            continue;
        if (method_matches(routes[i].method, method)) {
            pattern_matches(routes[i].pattern, path, req, NULL);
            *out = &routes[i];
            return ROUTE_MATCHED;
        }
        path_known = true;
        if (strstr(allow, routes[i].method) == NULL) {
            int n = snprintf(allow + allow_len, allow_size - allow_len, "%s%s", allow_len ? ", " : "",
                             routes[i].method);
            if (n > 0 && (size_t)n < allow_size - allow_len)
                allow_len += (size_t)n;
        }
    }
    if (path_known)
        return ROUTE_METHOD_NOT_ALLOWED;
    return too_long ? ROUTE_PARAM_TOO_LONG : ROUTE_NOT_FOUND;
}

const char *route_access_name(enum route_access access)
{
    switch (access) {
    case ROUTE_PUBLIC: return "public";
    case ROUTE_ANONYMOUS: return "anonymous";
    case ROUTE_USER: return "user";
    case ROUTE_ADMIN: return "admin";
    }
    return "unknown";
}
