/* upload.h - POST /api/upload/tables: files become tables of the local source (see upload.c). */
#ifndef AGNES_HTTP_UPLOAD_H
#define AGNES_HTTP_UPLOAD_H

#include "http/http.h"

void upload_handle_table(http_context *ctx, const http_request *req, http_response *resp);

#endif
