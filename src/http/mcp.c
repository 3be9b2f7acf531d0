#include "http/mcp.h"

#include <ctype.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/mcp.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "http/auth.h"
#include "http/mcp_tools.h"

#define SESSION_ID_LEN 64
#define SESSION_SLOTS 1024
#define SESSIONS_PER_USER 32
#define SESSION_IDLE_SECONDS (24 * 3600)

typedef struct session_slot {
    char id[SESSION_ID_LEN + 1]; /* "" when free */
    char user_id[64];
    char version[MCP_VERSION_MAX + 1];
    int64_t last_used;
} session_slot;

struct mcp_sessions {
    pthread_mutex_t lock;
    session_slot slots[SESSION_SLOTS];
};

mcp_sessions *mcp_sessions_new(void)
{
    mcp_sessions *s = calloc(1, sizeof *s);
    if (s != NULL && pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void mcp_sessions_free(mcp_sessions *sessions)
{
    if (sessions == NULL)
        return;
    pthread_mutex_destroy(&sessions->lock);
    free(sessions);
}

/* A new session for user_id; evicts the user's least recently used one
 * beyond SESSIONS_PER_USER, expired ones, and when full the oldest. */
static void session_create(mcp_sessions *s, const char *user_id, const char *version, char id[SESSION_ID_LEN + 1])
{
    uint8_t bytes[SESSION_ID_LEN / 2];
    randombytes_buf(bytes, sizeof bytes);
    util_hex_encode(bytes, sizeof bytes, id);
    int64_t now = util_unix_now();
    pthread_mutex_lock(&s->lock);
    session_slot *free_slot = NULL, *oldest = NULL, *users_oldest = NULL;
    int users = 0;
    for (size_t i = 0; i < SESSION_SLOTS; i++) {
        session_slot *slot = &s->slots[i];
        if (slot->id[0] != '\0' && slot->last_used < now - SESSION_IDLE_SECONDS)
            slot->id[0] = '\0';
        if (slot->id[0] == '\0') {
            free_slot = free_slot ? free_slot : slot;
            continue;
        }
        if (oldest == NULL || slot->last_used < oldest->last_used)
            oldest = slot;
        if (strcmp(slot->user_id, user_id) == 0) {
            users++;
            if (users_oldest == NULL || slot->last_used < users_oldest->last_used)
                users_oldest = slot;
        }
    }
    session_slot *slot = users >= SESSIONS_PER_USER ? users_oldest : free_slot ? free_slot : oldest;
    snprintf(slot->id, sizeof slot->id, "%s", id);
    snprintf(slot->user_id, sizeof slot->user_id, "%s", user_id);
    snprintf(slot->version, sizeof slot->version, "%s", version);
    slot->last_used = now;
    pthread_mutex_unlock(&s->lock);
}

/* The session's negotiated version into version; false when it is not
 * there (unknown, ended, idle too long, or another user's). */
static bool session_find(mcp_sessions *s, const char *id, const char *user_id, char version[MCP_VERSION_MAX + 1],
                         bool end)
{
    bool found = false;
    int64_t now = util_unix_now();
    if (id == NULL || strlen(id) != SESSION_ID_LEN)
        return false;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < SESSION_SLOTS && !found; i++) {
        session_slot *slot = &s->slots[i];
        if (slot->id[0] == '\0' || sodium_memcmp(slot->id, id, SESSION_ID_LEN) != 0)
            continue;
        if (strcmp(slot->user_id, user_id) != 0 || slot->last_used < now - SESSION_IDLE_SECONDS)
            break;
        found = true;
        snprintf(version, MCP_VERSION_MAX + 1, "%s", slot->version);
        slot->last_used = now;
        if (end)
            slot->id[0] = '\0';
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

/* An HTTP-level refusal, as the MCP SDKs expect it (a JSON-RPC error with
 * id null) and with the "detail" every Agnes error has. */
static void refuse(http_response *resp, unsigned status, const char *sentence)
{
    json_t *body = mcp_error_response(NULL, -32000, sentence);
    json_object_set_new(body, "detail", json_string(sentence));
    http_respond_json(resp, status, body);
}

/* host of an origin "scheme://host[:port]", lower-cased, into out. */
static bool origin_host(const char *origin, char *out, size_t size)
{
    const char *start = strstr(origin, "://");
    if (start == NULL)
        return false;
    start += 3;
    size_t len = start[0] == '[' ? strcspn(start, "]") + 1 : strcspn(start, ":/");
    if (len == 0 || len >= size)
        return false;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)start[i]);
    out[len] = '\0';
    return true;
}

/* DNS-rebinding protection (MCP specification, streamable HTTP: servers
 * must validate Origin).  No Origin: not a browser, nothing to check. */
static bool origin_allowed(http_context *ctx, const char *origin)
{
    char host[256], candidate[300];
    if (origin == NULL)
        return true;
    if (!origin_host(origin, host, sizeof host))
        return false; /* "null" (sandboxed frames, file://) and garbage */
    if (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 || strcmp(host, "[::1]") == 0)
        return true;
    const char *domain = config_get_string(&ctx->runtime->config, CFG_SERVER_DOMAIN);
    if (domain[0] != '\0') {
        snprintf(candidate, sizeof candidate, "https://%s", domain);
        if (strcasecmp(origin, candidate) == 0)
            return true;
    }
    const char *list = config_get_string(&ctx->runtime->config, CFG_MCP_ALLOWED_ORIGINS);
    while (*list) {
        size_t len = strcspn(list, ",");
        char item[300];
        snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), list);
        if (strcasecmp(util_trim(item), origin) == 0)
            return true;
        list += len + (list[len] == ',');
    }
    return false;
}

/* What every request must pass before its body is read: the Origin, a
 * bearer token (not the web cookie), a protocol version we speak. */
static bool transport_checks(http_context *ctx, const http_request *req, http_response *resp)
{
    const char *origin = http_request_header(req, "Origin");
    if (!origin_allowed(ctx, origin)) {
        char sentence[600];
        snprintf(sentence, sizeof sentence,
                 "Origin %.200s may not use /mcp. Browser clients must be served from this server's DOMAIN or "
                 "loopback, or be listed in mcp.allowed_origins (AGNES_MCP_ALLOWED_ORIGINS).",
                 origin);
        log_info("msg=\"mcp origin refused\" request_id=%s origin=\"%.200s\"", req->request_id, origin);
        refuse(resp, 403, sentence);
        return false;
    }
    const char *authorization = http_request_header(req, "Authorization");
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0) {
        refuse(resp, 401,
               "/mcp needs a personal access token in the Authorization: Bearer header (create one at /tokens or "
               "with POST /auth/tokens); the web login cookie is not accepted here.");
        http_response_add_header(resp, "WWW-Authenticate", "Bearer realm=\"agnes\"");
        return false;
    }
    const char *version = http_request_header(req, "MCP-Protocol-Version");
    if (version != NULL && !mcp_version_supported(version)) {
        char sentence[300];
        snprintf(sentence, sizeof sentence,
                 "MCP-Protocol-Version %.40s is not supported; this server speaks 2024-11-05 to " MCP_LATEST_VERSION
                 ".",
                 version);
        refuse(resp, 400, sentence);
        return false;
    }
    return true;
}

static bool is_initialize(const json_t *message)
{
    const char *method = json_string_value(json_object_get(message, "method"));
    return method != NULL && strcmp(method, "initialize") == 0;
}

void mcp_handle_post(http_context *ctx, const http_request *req, http_response *resp)
{
    if (!transport_checks(ctx, req, resp))
        return;
    const char *accept = http_request_header(req, "Accept");
    if (accept != NULL && strstr(accept, "application/json") == NULL && strstr(accept, "text/event-stream") == NULL &&
        strstr(accept, "*/*") == NULL) {
        refuse(resp, 406, "Send Accept: application/json, text/event-stream (this server answers with JSON).");
        return;
    }
    json_error_t parse_error;
    json_t *body = json_loadb(req->body, req->body_len, 0, &parse_error);
    if (!json_is_object(body) && !json_is_array(body)) {
        json_decref(body);
        http_respond_json(resp, 400,
                          mcp_error_response(NULL, MCP_PARSE_ERROR,
                                             "The body is not a JSON-RPC message (one JSON object, or an array)."));
        return;
    }
    bool batch = json_is_array(body);
    if (batch && json_array_size(body) == 0) {
        json_decref(body);
        http_respond_json(resp, 400, mcp_error_response(NULL, MCP_INVALID_REQUEST, "An empty batch."));
        return;
    }
    /* One request holds a thread and, per tools/call, a query slot: a batch
     * is capped in size, and starts no call once the query timeout has
     * passed since it arrived, so one POST cannot hold them for longer than
     * about two query timeouts. */
    long long max_batch = config_get_int(&ctx->runtime->config, CFG_MCP_MAX_BATCH);
    long long deadline_seconds = config_get_int(&ctx->runtime->config, CFG_QUERY_TIMEOUT);
    if (batch && (long long)json_array_size(body) > max_batch) {
        char sentence[300];
        snprintf(sentence, sizeof sentence,
                 "A batch may hold at most %lld messages (mcp.max_batch); this one has %zu. Send them in several "
                 "requests.",
                 max_batch, json_array_size(body));
        json_decref(body);
        http_respond_json(resp, 400, mcp_error_response(NULL, MCP_INVALID_REQUEST, sentence));
        return;
    }
    mcp_session session = {{0}};
    char session_id[SESSION_ID_LEN + 1] = "";
    bool initializing = !batch && is_initialize(body);
    if (!initializing) {
        const char *given = http_request_header(req, "Mcp-Session-Id");
        if (given == NULL) {
            json_decref(body);
            refuse(resp, 400, "Send the Mcp-Session-Id header initialize returned (or initialize first).");
            return;
        }
        if (!session_find(ctx->mcp_sessions, given, req->identity->user_id, session.version, false)) {
            json_decref(body);
            refuse(resp, 404, "This MCP session is not known (it ended, expired, or the server restarted): "
                              "initialize a new one.");
            return;
        }
    }
    mcp_http_call call = {.ctx = ctx, .req = req};
    mcp_host host;
    mcp_tools_host(&call, &host);
    strbuf out;
    strbuf_init(&out);
    size_t count = batch ? json_array_size(body) : 1, answered = 0;
    bool failed = false;
    double started = util_monotonic_ms();
    for (size_t i = 0; i < count && !failed; i++) {
        const json_t *message = batch ? json_array_get(body, i) : body;
        char *response = NULL;
        if (batch && util_monotonic_ms() - started > (double)deadline_seconds * 1000.0) {
            char sentence[300];
            snprintf(sentence, sizeof sentence,
                     "Not run: this batch passed its deadline of %lld seconds (query.timeout_seconds) after %zu of "
                     "%zu messages. Send the rest in another request.",
                     deadline_seconds, i, count);
            if (mcp_is_request(message)) {
                json_t *error = mcp_error_response(json_object_get(message, "id"), -32000, sentence);
                response = error ? json_dumps(error, JSON_COMPACT) : NULL;
                failed = response == NULL;
                json_decref(error);
            }
        } else {
            response = mcp_handle_message(&host, &session, message, &failed);
        }
        if (response != NULL) {
            strbuf_append_str(&out, answered++ ? "," : "");
            strbuf_append_str(&out, response);
        }
        free(response);
    }
    if (initializing && session.version[0] != '\0') {
        session_create(ctx->mcp_sessions, req->identity->user_id, session.version, session_id);
        http_response_add_header(resp, "Mcp-Session-Id", session_id);
        log_info("msg=\"mcp session started\" request_id=%s user=%s version=%s", req->request_id,
                 req->identity->email, session.version);
    }
    json_decref(body);
    if (failed || strbuf_failed(&out)) {
        strbuf_free(&out);
        agnes_error err;
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory answering an MCP request");
        http_respond_internal(resp, req, &err);
        return;
    }
    if (answered == 0) { /* notifications and responses only */
        strbuf_free(&out);
        http_respond_raw(resp, 202, "application/json", NULL, 0);
        return;
    }
    strbuf answer;
    strbuf_init(&answer);
    if (batch)
        strbuf_append_char(&answer, '[');
    strbuf_append(&answer, out.data, out.len);
    if (batch)
        strbuf_append_char(&answer, ']');
    strbuf_free(&out);
    if (strbuf_failed(&answer)) {
        strbuf_free(&answer);
        agnes_error err;
        agnes_error_set(&err, AGNES_ERR_NOMEM, "out of memory answering an MCP request");
        http_respond_internal(resp, req, &err);
        return;
    }
    http_respond_raw(resp, 200, "application/json", answer.data, answer.len);
}

void mcp_handle_delete(http_context *ctx, const http_request *req, http_response *resp)
{
    if (!transport_checks(ctx, req, resp))
        return;
    char version[MCP_VERSION_MAX + 1];
    const char *given = http_request_header(req, "Mcp-Session-Id");
    if (given == NULL) {
        refuse(resp, 400, "Send the Mcp-Session-Id header of the session to end.");
        return;
    }
    if (!session_find(ctx->mcp_sessions, given, req->identity->user_id, version, true)) {
        refuse(resp, 404, "This MCP session is not known (it ended, expired, or the server restarted).");
        return;
    }
    http_respond_raw(resp, 204, "application/json", NULL, 0);
}
