#include "http/csrf.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool safe_method(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 || strcmp(method, "OPTIONS") == 0;
}

/* Length of host[:port] without a default port (":80", ":443"). */
static size_t host_length(const char *host, size_t len)
{
    if (len > 3 && strncmp(host + len - 3, ":80", 3) == 0)
        return len - 3;
    if (len > 4 && strncmp(host + len - 4, ":443", 4) == 0)
        return len - 4;
    return len;
}

/* Origin "scheme://host[:port]" names the host the request was sent to. */
static bool origin_matches_host(const char *origin, const char *host)
{
    const char *authority = strstr(origin, "://");
    if (authority == NULL || host == NULL)
        return false;
    authority += 3;
    size_t a = host_length(authority, strcspn(authority, "/"));
    size_t h = host_length(host, strlen(host));
    return a > 0 && a == h && strncasecmp(authority, host, a) == 0;
}

static bool refuse(http_response *resp, const char *why)
{
    char detail[400];
    snprintf(detail, sizeof detail,
             "Cross-site request refused: %s. Use this server's own pages, or authenticate with an "
             "Authorization: Bearer header instead of the session cookie.",
             why);
    http_respond_error(resp, 403, detail, NULL);
    return false;
}

bool csrf_check(const http_request *req, http_response *resp)
{
    if (safe_method(req->method) || http_request_header(req, "Authorization") != NULL)
        return true;
    const char *site = http_request_header(req, "Sec-Fetch-Site");
    if (site != NULL) {
        if (strcasecmp(site, "same-origin") == 0 || strcasecmp(site, "none") == 0)
            return true;
        return refuse(resp, "the browser says it comes from another site (Sec-Fetch-Site)");
    }
    const char *origin = http_request_header(req, "Origin");
    if (origin != NULL) {
        if (origin_matches_host(origin, http_request_header(req, "Host")))
            return true;
        return refuse(resp, "its Origin is not this server");
    }
    if (http_request_cookie(req, "access_token") != NULL)
        return refuse(resp, "it carries the session cookie but neither Sec-Fetch-Site nor Origin");
    return true;
}
