/* catalog.h - the table catalog analysts browse (see catalog.c). */
#ifndef AGNES_HTTP_CATALOG_H
#define AGNES_HTTP_CATALOG_H

#include "http/http.h"

void catalog_handle_list(http_context *ctx, const http_request *req, http_response *resp);

#endif
