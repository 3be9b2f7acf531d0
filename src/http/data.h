/* data.h - what analysts' `agnes pull` reads: the manifest and the table
 * downloads (see data.c). */
#ifndef AGNES_HTTP_DATA_H
#define AGNES_HTTP_DATA_H

#include "http/http.h"

void data_handle_manifest(http_context *ctx, const http_request *req, http_response *resp);
void data_handle_download(http_context *ctx, const http_request *req, http_response *resp);

#endif
