/*
 * csrf.h - refuse cross-site requests that ride on the session cookie.
 *
 * A browser attaches the access_token cookie (SameSite=Lax) to requests
 * other sites' pages make too - top-level form POSTs included.  So a
 * request that may change something (any method but GET, HEAD, OPTIONS)
 * and does not authenticate with an Authorization header must show it
 * comes from one of this server's own pages:
 *
 *   Sec-Fetch-Site present (every current browser)  -> same-origin or none
 *   else Origin present (older browsers)            -> this server's host
 *   else                                            -> no access_token cookie
 *                                                      (a script or curl)
 *
 * Bearer clients (CLI, agents, curl) never send the cookie and are not
 * affected; /auth/login and /auth/bootstrap are covered too, so no other
 * site can log a browser into an account of its choosing or claim a fresh
 * instance through a visitor's browser.
 */
#ifndef AGNES_HTTP_CSRF_H
#define AGNES_HTTP_CSRF_H

#include <stdbool.h>

#include "http/http.h"

/* True when the request may proceed; else resp holds a 403 naming the fix. */
bool csrf_check(const http_request *req, http_response *resp);

#endif
