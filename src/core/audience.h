/*
 * audience.h - server sentences in the words of whoever reads them.
 *
 * The engine's and the API's error sentences say how to fix things in HTTP
 * terms ("GET /api/catalog/tables lists the tables you can query"), which is
 * right for a curl user and wrong for someone at `agnes query` or an agent
 * calling the MCP `query` tool: they cannot act on a route.  Each front end
 * passes the sentence it is about to show through audience_translate(),
 * which rewrites the routes it knows into that audience's command or tool.
 * The table of routes lives in audience.c; a route without an equivalent is
 * left as it is (still true, only less convenient).
 */
#ifndef AGNES_CORE_AUDIENCE_H
#define AGNES_CORE_AUDIENCE_H

#include <stddef.h>

typedef enum audience {
    AUDIENCE_HTTP, /* unchanged */
    AUDIENCE_CLI,  /* `agnes catalog`, `agnes query`, ... */
    AUDIENCE_MCP,  /* the list_tables tool, the query tool, ... */
} audience;

/* Copy text into out (out_size bytes, always NUL-terminated, cut on a
 * whole character when too long) with every known route phrase replaced by
 * the audience's equivalent.  text and out must not overlap. */
void audience_translate(audience who, const char *text, char *out, size_t out_size);

#endif
