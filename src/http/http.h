/*
 * http.h - the types every HTTP handler sees.
 *
 * A handler gets the shared context, the parsed request and an empty
 * response to fill.  It never touches libmicrohttpd directly: server.c owns
 * the connection, the body buffer, the request id and the access log, so
 * each API area (one file per area) is plain request -> response code.
 */
#ifndef AGNES_HTTP_HTTP_H
#define AGNES_HTTP_HTTP_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/runtime.h"
#include "store/system_db.h"

struct health_monitor;
struct rate_limiter;
struct analytics;
struct query_pool;
struct auth_cache;
struct sync_runs;
struct MHD_Connection;
struct auth_identity;
struct http_upload;
struct result_store;
struct mcp_sessions;

typedef struct http_context {
    agnes_runtime *runtime;
    system_db *db;
    struct health_monitor *health;
    /* True until the first admin with a password exists (see auth.h). */
    atomic_bool setup_required;
    struct rate_limiter *auth_limiter;
    struct auth_cache *identities; /* session identities by write generation (http/auth_cache.h) */
    struct sync_runs *sync_runs;   /* sync runs in progress and recent (http/sync.h) */
    struct analytics *analytics; /* the read side of the catalog (engine/analytics.h) */
    struct query_pool *queries;  /* connections and limits of /api/query (engine/query_pool.h) */
    struct result_store *results;       /* query results kept behind handles (engine/result_handle.h) */
    struct mcp_sessions *mcp_sessions;  /* sessions of /mcp (http/mcp.h) */
    /* One catalog rebuild at a time (they share analytics/server.duckdb.tmp). */
    pthread_mutex_t rebuild_lock;
    /* Bumped when a rebuild starts and again when its catalog is published:
     * odd while one runs.  A rebuild records each table's sync state before
     * readers move to the new catalog, so a reader comparing the two (is a
     * table "missing"?) must see the same even value before and after. */
    atomic_uint rebuild_sequence;
    /* One upload at a time writes extracts/local (sync/local_files.h). */
    pthread_mutex_t upload_lock;
    /* Scheduled backups of the state tier, for health (store/backup.h); NULL when not serving. */
    struct backup_status *backups;
    /* users.id of scheduler@system.local when SCHEDULER_API_TOKEN is set, else "". */
    char scheduler_user_id[64];
} http_context;

#define HTTP_MAX_PARAMS 8
#define HTTP_PARAM_MAX 256 /* bytes of a path parameter, NUL included: no id or name is longer */
#define HTTP_REQUEST_ID_MAX 64

typedef struct http_param {
    const char *name; /* points into the route pattern */
    size_t name_len;
    char value[HTTP_PARAM_MAX];
} http_param;

typedef struct http_request {
    const char *method;
    const char *path;
    const char *body; /* NUL-terminated; empty string when there is none */
    size_t body_len;
    const char *request_id;
    const char *client_ip;
    http_param params[HTTP_MAX_PARAMS];
    int param_count;
    struct MHD_Connection *connection; /* for header and query lookups only */
    const struct auth_identity *identity; /* set by auth_gate on USER/ADMIN routes */
    const struct http_upload *upload;     /* ROUTE_UPLOAD routes: the received file */
} http_request;

#define HTTP_MAX_RESPONSE_HEADERS 8

typedef struct http_header {
    char name[64];
    char value[2048];
} http_header;

/* A body produced while it is sent (query results, file downloads).
 * read fills buf with up to max bytes and returns the count, 0 at the end,
 * or -1 to cut the connection (the client then sees an incomplete body,
 * never a complete-looking wrong one).  release runs exactly once, after
 * the last read or when the response is abandoned. */
typedef ssize_t (*http_stream_read)(void *cls, char *buf, size_t max);
typedef void (*http_stream_release)(void *cls);

/* Optional: trailer fields sent after the last chunk (HTTP/1.1 chunked
 * bodies only), asked for once read has returned 0.  Fill up to max
 * headers into out and return the count. */
typedef int (*http_stream_trailers)(void *cls, http_header *out, int max);

typedef struct http_stream {
    http_stream_read read;
    http_stream_release release;
    http_stream_trailers trailers; /* may be NULL */
    void *cls;
} http_stream;

typedef struct http_response {
    unsigned status;
    http_stream stream; /* when stream.read is set, the body comes from it */
    char *body; /* malloc'd, owned by the response */
    size_t body_len;
    const char *content_type;
    http_header headers[HTTP_MAX_RESPONSE_HEADERS];
    int header_count;
    /* when has_file is set, the body is file_length bytes of file_fd from
     * file_offset, sent with sendfile; the response owns (closes) file_fd */
    bool has_file;
    int file_fd;
    int64_t file_offset;
    int64_t file_length;
} http_response;

/* Lookups on the request (NULL when absent). */
const char *http_request_header(const http_request *req, const char *name);
const char *http_request_query(const http_request *req, const char *name);
const char *http_request_param(const http_request *req, const char *name);

/* Serialise `body` (reference stolen) as the JSON response. */
void http_respond_json(http_response *resp, unsigned status, json_t *body);

/* {"detail": detail} plus "hint" when given: the shape every error has. */
void http_respond_error(http_response *resp, unsigned status, const char *detail, const char *hint);

/* Take ownership of an already-serialised body. */
void http_respond_raw(http_response *resp, unsigned status, const char *content_type, char *body, size_t len);

int http_response_add_header(http_response *resp, const char *name, const char *value);

/* Answer with a streamed body; the response owns `stream` from here on. */
void http_respond_stream(http_response *resp, unsigned status, const char *content_type, http_stream stream);

/* Answer with length bytes of the open file fd from offset (sendfile);
 * the response owns fd from here on. */
void http_respond_file(http_response *resp, unsigned status, const char *content_type, int fd, int64_t offset,
                       int64_t length);

/* 500 for a failure the caller could not cause: the details go to the log
 * under the request id, the client gets the id to quote. */
void http_respond_internal(http_response *resp, const http_request *req, const agnes_error *err);

/* Answer a store function's failure, by the store's conventions:
 * AGNES_ERR_NOT_FOUND -> 404 `not_found`, AGNES_ERR_INVALID -> 409 with the
 * store's sentence, anything else -> 500.  Returns false (and leaves resp
 * alone) when rc is AGNES_OK, so handlers write
 * `if (!http_respond_failure(...)) respond_success(...)`. */
bool http_respond_failure(http_response *resp, const http_request *req, int rc, const agnes_error *err,
                          const char *not_found);

/* A request cookie's value, or NULL. */
const char *http_request_cookie(const http_request *req, const char *name);

#endif
