/*
 * instance.c - small reads for the web pages:
 *
 *   GET /api/instance     {name, version, channel}: the header of every page
 *   GET /api/me/activity  the caller's last pull (store/activity.h), for the dashboard
 */
#include "http/instance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/auth.h"
#include "store/activity.h"
#include "store/users.h"

void instance_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    (void)req;
    const agnes_runtime *rt = ctx->runtime;
    http_respond_json(resp, 200,
                      json_pack("{s:s, s:s, s:s}", "name", config_get_string(&rt->config, CFG_INSTANCE_NAME),
                                "version", rt->version.version, "channel", rt->version.channel));
}

void instance_handle_my_activity(http_context *ctx, const http_request *req, http_response *resp)
{
    duckdb_connection conn = NULL;
    json_t *out = NULL;
    agnes_error err;
    if (system_db_connect_reader(ctx->db, &conn, &err) != AGNES_OK ||
        activity_json(conn, req->identity->user_id, &out, &err) != AGNES_OK)
        http_respond_internal(resp, req, &err);
    else
        http_respond_json(resp, 200, out);
    if (conn)
        duckdb_disconnect(&conn);
}

void instance_record_pull(http_context *ctx, const http_request *req, size_t tables)
{
    const char *agent = http_request_header(req, "User-Agent");
    char client[64];
    snprintf(client, sizeof client, "%s", agent && strncmp(agent, "agnes-cli", 9) == 0 ? "agnes-cli"
                                          : agent && strstr(agent, "Mozilla") ? "browser"
                                                                              : "api");
    json_t *params = json_pack("{s:s, s:I}", "client", client, "tables", (json_int_t)tables);
    char *text = params ? json_dumps(params, JSON_COMPACT) : NULL;
    duckdb_connection writer = system_db_writer_acquire(ctx->db);
    audit_log_write(writer, req->identity->user_id, "data.pull", req->identity->email, text, "ok");
    system_db_writer_release(ctx->db);
    free(text);
    json_decref(params);
}
