/* sessions.h - POST /api/upload/sessions: agents' session logs and notes (see sessions.c). */
#ifndef AGNES_HTTP_SESSIONS_H
#define AGNES_HTTP_SESSIONS_H

#include "http/http.h"

void sessions_handle_upload(http_context *ctx, const http_request *req, http_response *resp);

#endif
