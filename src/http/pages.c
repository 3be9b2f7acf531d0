/*
 * HTML page routes: /setup and /login.  The pages themselves live in
 * src/web/; this file decides which one a request gets.
 */
#include <stdlib.h>
#include <string.h>

#include "http/pages.h"
#include "web/pages.h"

static void respond_page(http_response *resp, const char *page)
{
    size_t len = strlen(page);
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        http_respond_error(resp, 503, "Out of memory; retry in a moment.", NULL);
        return;
    }
    memcpy(copy, page, len + 1);
    http_respond_raw(resp, 200, "text/html; charset=utf-8", copy, len);
    http_response_add_header(resp, "Cache-Control", "no-store");
    http_response_add_header(resp, "Content-Security-Policy",
                             "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                             "connect-src 'self'; form-action 'self'; frame-ancestors 'none'");
}

void pages_handle_setup(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)req;
    if (!atomic_load(&ctx->setup_required)) {
        http_respond_raw(resp, 302, "text/plain", NULL, 0);
        http_response_add_header(resp, "Location", "/login");
        return;
    }
    respond_page(resp, web_page_setup);
}

void pages_handle_login(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)ctx;
    (void)req;
    respond_page(resp, web_page_login);
}
