/*
 * assets.h - the files of the web/ folder, compiled into the binary.
 *
 * make runs scripts/web-embed.mjs over web/ and links the C file it writes
 * (build/gen/web_assets.c): one row per page, stylesheet, script and npm
 * module the pages import.  Nothing is read from disk at run time, so the
 * pages work with no network and no install step (SPEC §11).
 *
 * Names: "pages/<file>.html" for the pages (http/pages.c maps routes to
 * them), "<file>" for everything under GET /assets/.  Invariants: names
 * are unique and sorted (web_asset_find bisects); `etag` is the quoted
 * `version`, a hash of the final bytes (and, for modules, of everything
 * they import), so a URL carrying ?v=<version> never changes meaning.
 */
#ifndef AGNES_WEB_ASSETS_H
#define AGNES_WEB_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
    const char *name;
    const char *content_type;
    const char *etag;    /* "\"<version>\"" */
    const char *version; /* 16 hex digits */
    const char *data;
    size_t size;
    const char *gzip; /* the same bytes gzip-compressed, or NULL when that is not smaller */
    size_t gzip_size;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_asset_count;
/* Sum of the sizes, and of what is sent to a browser that accepts gzip. */
extern const unsigned long long web_assets_raw_bytes;
extern const unsigned long long web_assets_gzip_bytes;

/* The asset called `name`, or NULL. */
const web_asset *web_asset_find(const char *name);

#endif
