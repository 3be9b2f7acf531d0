/* catalog.h - the table catalog analysts browse (see catalog.c). */
#ifndef AGNES_HTTP_CATALOG_H
#define AGNES_HTTP_CATALOG_H

#include <jansson.h>

#include "http/http.h"

struct auth_identity;

/* The table ids `who` may read (new reference), or NULL for "every table"
 * (admins).  The one place the catalog, the query guard and downloads
 * learn what a caller may see. */
int catalog_visible_ids(http_context *ctx, const struct auth_identity *who, json_t **ids, agnes_error *err);

/* Whether id is among ids from catalog_visible_ids (NULL: every id is). */
bool catalog_id_visible(const json_t *ids, const char *id);

/* The catalog entry of the route's {id} when the caller may read it (new
 * reference); otherwise NULL with resp holding the 404 - the same answer
 * whether the table does not exist or the caller may not read it. */
json_t *catalog_readable_table(http_context *ctx, const http_request *req, http_response *resp);

void catalog_handle_list(http_context *ctx, const http_request *req, http_response *resp);
void catalog_handle_get(http_context *ctx, const http_request *req, http_response *resp);
void catalog_handle_sample(http_context *ctx, const http_request *req, http_response *resp);

#endif
