/* sync_status.h - GET /api/sync/status: the state of every table and of the last catalog rebuild. */
#ifndef AGNES_HTTP_SYNC_STATUS_H
#define AGNES_HTTP_SYNC_STATUS_H

#include "http/http.h"

#include <jansson.h>

/* The state of every table the caller may see (ids from
 * catalog_visible_ids, NULL = all): sync_state rows as JSON objects
 * {table_id, last_sync, rows, size_bytes, state, error, source, published}.
 * A registered, non-remote table recorded ok whose data the catalog does
 * not hold (and no name collision explains) is state "missing" with a
 * sentence saying how to bring it back; a table neither registered nor
 * published (a retired demo's) is left out.  *out is new, or NULL on error. */
int sync_status_states(http_context *ctx, const json_t *ids, json_t **out, agnes_error *err);

void sync_status_handle_get(http_context *ctx, const http_request *req, http_response *resp);

#endif
