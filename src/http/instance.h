/* instance.h - what every page's header and the dashboard show about the instance and the caller (see instance.c). */
#ifndef AGNES_HTTP_INSTANCE_H
#define AGNES_HTTP_INSTANCE_H

#include "http/http.h"

void instance_handle_get(http_context *ctx, const http_request *req, http_response *resp);
void instance_handle_my_activity(http_context *ctx, const http_request *req, http_response *resp);

/* Record a manifest fetch as the caller's pull (audit "data.pull"). */
void instance_record_pull(http_context *ctx, const http_request *req, size_t tables);

#endif
