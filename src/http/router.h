/*
 * router.h - the route table: method + path pattern -> handler + access.
 *
 * Patterns are literal segments and {name} segments, e.g.
 * "/api/catalog/tables/{id}".  A {name} matches exactly one non-empty
 * segment.  Matching is a linear scan: the table is small, and a scan keeps
 * the precedence obvious (first match wins).
 */
#ifndef AGNES_HTTP_ROUTER_H
#define AGNES_HTTP_ROUTER_H

#include <stddef.h>

#include "http/http.h"

/* Who may call a route; enforced by auth_gate() (auth.h) before the handler. */
enum route_access {
    ROUTE_PUBLIC,    /* anyone, including during setup mode */
    ROUTE_ANONYMOUS, /* anyone, once the instance has its first admin */
    ROUTE_USER,      /* any signed-in, active user */
    ROUTE_ADMIN,     /* member of the Admin group */
};

typedef void (*route_handler)(http_context *ctx, const http_request *req, http_response *resp);

/* Route flags. */
#define ROUTE_INTERACTIVE 0x1u /* needs a login session: refused to PATs and the service token */
#define ROUTE_HTML 0x2u        /* a page: in setup mode it redirects to /setup instead of answering 503 */
#define ROUTE_BLOCKING 0x4u    /* may run for seconds: the handler runs on an offload thread (offload.h) */
#define ROUTE_UPLOAD 0x8u      /* the body is a file: streamed to disk, see upload_body.h */
#define ROUTE_SMALL_UPLOAD 0x10u /* with ROUTE_UPLOAD: capped by upload.max_session_bytes instead */
/* Bearer tokens only (the handler refuses the web cookie with its own
 * sentence): no cross-site request can ride on a browser's session, so the
 * CSRF check (csrf.h) has nothing to protect and would only hide that sentence. */
#define ROUTE_BEARER_ONLY 0x20u

typedef struct route {
    const char *method;
    const char *pattern;
    route_handler handler;
    enum route_access access;
    const char *summary; /* one line, for the generated API description */
    unsigned flags;
} route;

/* "public", "anonymous", "user", "admin". */
const char *route_access_name(enum route_access access);

enum route_match_result {
    ROUTE_MATCHED,
    ROUTE_NOT_FOUND,
    ROUTE_METHOD_NOT_ALLOWED,
    ROUTE_PARAM_TOO_LONG, /* a route's shape fits, but a {param} segment is HTTP_PARAM_MAX bytes or more */
};

/* Find the route for method + path.  On ROUTE_MATCHED, *out is set and the
 * path parameters are written into req.  On ROUTE_METHOD_NOT_ALLOWED,
 * `allow` receives the comma-separated methods the path does accept.
 * HEAD is answered by GET routes.  On ROUTE_MATCHED every {param} of the
 * route is set (no handler ever sees a NULL parameter); a segment too long
 * for any parameter gives ROUTE_PARAM_TOO_LONG (the server answers 414). */
enum route_match_result router_match(const route *routes, size_t count, const char *method, const char *path,
                                     http_request *req, const route **out, char *allow, size_t allow_size);

/* The server's route table (routes.c). */
extern const route http_routes[];
extern const size_t http_route_count;

#endif
