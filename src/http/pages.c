/*
 * pages.c - the web pages and their assets (SPEC §11), served from the
 * files web/ embedded at build time (web/assets.h).
 *
 * Every page is a static HTML file that fetches what it shows from the
 * JSON API with the session cookie; who may open a page is decided by the
 * route's access level like any endpoint (http/routes.c), so a page never
 * shows a signed-out visitor anything but a redirect to /login.
 *
 * Caching: a page is revalidated on every load (ETag), so a new binary's
 * pages are seen at once.  An asset URL with ?v=<version> (the pages only
 * use those) is cached for a year: the version is a hash of its bytes.
 * A browser that accepts gzip gets the precompressed bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "http/pages.h"
#include "web/assets.h"

/* No inline script or style, no framing, same-origin everything, and the
 * browser itself refuses HTML-string sinks (innerHTML and the like): API
 * values can only ever reach a page as text. */
#define PAGE_CSP_BEFORE_STYLE "default-src 'none'; script-src 'self'; style-src 'self'"
#define PAGE_CSP_AFTER_STYLE                                                                                          \
    "; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "      \
    "base-uri 'none'; require-trusted-types-for 'script'"
#define PAGE_CSP PAGE_CSP_BEFORE_STYLE PAGE_CSP_AFTER_STYLE

/* Where a page carries its response's nonce (<meta name="csp-nonce"
 * content="{{csp_nonce}}">): CodeMirror reads it (EditorView.cspNonce) for
 * the <style> element it adds where constructed stylesheets are not used. */
#define NONCE_PLACEHOLDER "{{csp_nonce}}"

/* True when Accept-Encoding admits gzip (a "gzip;q=0" refuses it). */
static bool accepts_gzip(const char *accept)
{
    for (const char *p = accept; p != NULL && *p; ) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t token = strcspn(p, ",; ");
        bool gzip = token == 4 && strncasecmp(p, "gzip", 4) == 0;
        const char *end = p + strcspn(p, ",");
        if (gzip) {
            const char *q = strstr(p, "q=");
            bool refused = q != NULL && q < end && strtod(q + 2, NULL) <= 0.0;
            return !refused;
        }
        p = end;
    }
    return false;
}

/* If-None-Match lists our ETag (or is "*"). */
static bool not_modified(const http_request *req, const web_asset *asset)
{
    const char *given = http_request_header(req, "If-None-Match");
    return given != NULL && (strstr(given, asset->etag) != NULL || strcmp(given, "*") == 0);
}

static void add_security_headers(http_response *resp)
{
    http_response_add_header(resp, "Content-Security-Policy", PAGE_CSP);
    http_response_add_header(resp, "Referrer-Policy", "same-origin");
}

/* status: 200, or the status an error page is sent with (never answered with 304). */
static void respond_asset(const http_request *req, http_response *resp, const web_asset *asset, bool immutable,
                          unsigned status)
{
    const char *cache = immutable ? "public, max-age=31536000, immutable" : "no-cache";
    if (status == 200 && not_modified(req, asset)) {
        http_respond_raw(resp, 304, asset->content_type, NULL, 0);
    } else {
        bool gzip = asset->gzip != NULL && accepts_gzip(http_request_header(req, "Accept-Encoding"));
        const char *bytes = gzip ? asset->gzip : asset->data;
        size_t size = gzip ? asset->gzip_size : asset->size;
        char *copy = malloc(size ? size : 1);
        if (copy == NULL) {
            http_respond_error(resp, 503, "The server is out of memory; retry in a moment.", NULL);
            return;
        }
        memcpy(copy, bytes, size);
        http_respond_raw(resp, status, asset->content_type, copy, size);
        if (gzip)
            http_response_add_header(resp, "Content-Encoding", "gzip");
    }
    http_response_add_header(resp, "ETag", asset->etag);
    http_response_add_header(resp, "Cache-Control", cache);
    http_response_add_header(resp, "Vary", "Accept-Encoding");
    add_security_headers(resp);
}

void pages_handle_asset(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)ctx;
    const char *name = http_request_param(req, "name");
    const web_asset *asset = strncmp(name, "pages/", 6) == 0 ? NULL : web_asset_find(name);
    if (asset == NULL) {
        char detail[400];
        snprintf(detail, sizeof detail, "No asset /assets/%.200s in this build.", name);
        http_respond_error(resp, 404, detail, NULL);
        return;
    }
    const char *version = http_request_query(req, "v");
    respond_asset(req, resp, asset, version != NULL && strcmp(version, asset->version) == 0, 200);
}

/* Answer with the embedded page web/pages/<file>, its nonce placeholders
 * replaced by a fresh nonce that the CSP's style-src names: a nonce must
 * differ per response to mean anything, so pages carry no ETag and are not
 * cached (they are a few hundred bytes; the assets they load are cached). */
static void respond_page(const http_request *req, http_response *resp, const char *file, unsigned status)
{
    (void)req;
    char name[128];
    snprintf(name, sizeof name, "pages/%s", file);
    const web_asset *asset = web_asset_find(name);
    if (asset == NULL) { /* a route without its file: a build defect, caught by the tests */
        http_respond_error(resp, 500, "This page is missing from the build.", NULL);
        return;
    }
    unsigned char random[16];
    char nonce[2 * sizeof random + 1];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(nonce, sizeof nonce, random, sizeof random);
    size_t placeholder = strlen(NONCE_PLACEHOLDER), count = 0;
    for (const char *p = asset->data; (p = memmem(p, asset->size - (size_t)(p - asset->data), NONCE_PLACEHOLDER,
                                                 placeholder)) != NULL; p += placeholder)
        count++;
    size_t size = asset->size + count * (strlen(nonce) - placeholder);
    char *body = malloc(size ? size : 1);
    if (body == NULL) {
        http_respond_error(resp, 503, "The server is out of memory; retry in a moment.", NULL);
        return;
    }
    size_t out = 0;
    const char *p = asset->data, *end = asset->data + asset->size, *hit;
    while ((hit = memmem(p, (size_t)(end - p), NONCE_PLACEHOLDER, placeholder)) != NULL) {
        memcpy(body + out, p, (size_t)(hit - p));
        out += (size_t)(hit - p);
        memcpy(body + out, nonce, strlen(nonce));
        out += strlen(nonce);
        p = hit + placeholder;
    }
    memcpy(body + out, p, (size_t)(end - p));
    http_respond_raw(resp, status, asset->content_type, body, size);
    char csp[512];
    snprintf(csp, sizeof csp, "%s 'nonce-%s'%s", PAGE_CSP_BEFORE_STYLE, nonce, PAGE_CSP_AFTER_STYLE);
    http_response_add_header(resp, "Content-Security-Policy", csp);
    http_response_add_header(resp, "Referrer-Policy", "same-origin");
    http_response_add_header(resp, "Cache-Control", "no-store");
}

static void redirect(http_response *resp, const char *location)
{
    http_respond_raw(resp, 302, "text/plain", NULL, 0);
    http_response_add_header(resp, "Location", location);
    http_response_add_header(resp, "Cache-Control", "no-store");
}

void pages_redirect_to_login(const http_request *req, http_response *resp)
{
    /* The path only (it is what the router matched): an absolute URL can
     * never reach `next`, and /auth/login checks it again anyway. */
    char location[700];
    const char *path = req->path;
    if (strcmp(path, "/") == 0 || strcmp(path, "/dashboard") == 0) {
        snprintf(location, sizeof location, "/login");
    } else {
        static const char hex[] = "0123456789ABCDEF";
        size_t n = (size_t)snprintf(location, sizeof location, "/login?next=");
        for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < sizeof location; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                strchr("-._~/", *p)) {
                location[n++] = (char)*p;
            } else {
                location[n++] = '%';
                location[n++] = hex[*p >> 4];
                location[n++] = hex[*p & 15];
            }
        }
        location[n] = '\0';
    }
    redirect(resp, location);
}

void pages_respond_forbidden(const http_request *req, http_response *resp)
{
    respond_page(req, resp, "forbidden.html", 403);
}

void pages_handle_setup(http_context *ctx, const http_request *req, http_response *resp)
{
    /* Once the instance has its admin, the rest of the wizard is an admin's:
     * a visitor without credentials goes to log in first (the wizard's own
     * API calls are what decide, this only spares them a useless page). */
    if (!atomic_load(&ctx->setup_required) && http_request_cookie(req, "access_token") == NULL &&
        http_request_header(req, "Authorization") == NULL) {
        redirect(resp, "/login?next=/setup");
        return;
    }
    respond_page(req, resp, "setup.html", 200);
}

void pages_handle_root(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)ctx;
    (void)req;
    redirect(resp, "/dashboard");
}

#define PAGE(function, file)                                                                                           \
    void function(http_context *ctx, const http_request *req, http_response *resp)                                     \
    {                                                                                                                  \
        (void)ctx;                                                                                                     \
        respond_page(req, resp, file, 200);                                                                                 \
    }

PAGE(pages_handle_login, "login.html")
PAGE(pages_handle_dashboard, "dashboard.html")
PAGE(pages_handle_catalog, "catalog.html")
PAGE(pages_handle_catalog_table, "table.html")
PAGE(pages_handle_query, "query.html")
PAGE(pages_handle_tokens, "tokens.html")
PAGE(pages_handle_admin_sources, "admin-sources.html")
PAGE(pages_handle_admin_tables, "admin-tables.html")
PAGE(pages_handle_admin_sync, "admin-sync.html")
PAGE(pages_handle_admin_users, "admin-users.html")
PAGE(pages_handle_admin_user, "admin-user.html")
PAGE(pages_handle_admin_access, "admin-access.html")
PAGE(pages_handle_admin_audit, "admin-audit.html")
