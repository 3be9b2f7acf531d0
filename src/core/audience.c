#include "core/audience.h"

#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

/* Longest phrases first: "GET /api/catalog/tables/{id}" before the list. */
static const struct {
    const char *route;
    const char *cli;
    const char *mcp;
} phrases[] = {
    {"GET /api/catalog/tables/{id}", "`agnes catalog TABLE`", "the describe_table tool"},
    {"GET /api/catalog/tables", "`agnes catalog`", "the list_tables tool"},
    {"POST /api/query", "`agnes query`", "the query tool"},
    {"GET /api/sync/status", "`agnes status`", "the sync_status tool"},
    {"POST /api/sync/trigger", "`agnes admin sync`", "the sync_trigger tool"},
};

void audience_translate(audience who, const char *text, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    size_t n = 0;
    const char *p = text ? text : "";
    while (*p != '\0' && n + 1 < out_size) {
        const char *instead = NULL;
        size_t skip = 0;
        for (size_t i = 0; who != AUDIENCE_HTTP && i < sizeof phrases / sizeof phrases[0]; i++) {
            size_t len = strlen(phrases[i].route);
            if (strncmp(p, phrases[i].route, len) == 0) {
                instead = who == AUDIENCE_CLI ? phrases[i].cli : phrases[i].mcp;
                skip = len;
                break;
            }
        }
        if (instead == NULL) {
            out[n++] = *p++;
            continue;
        }
        size_t k = strlen(instead);
        if (k > out_size - 1 - n)
            k = out_size - 1 - n;
        memcpy(out + n, instead, k);
        n += k;
        p += skip;
    }
    out[n] = '\0';
    utf8_trim_partial(out);
}
