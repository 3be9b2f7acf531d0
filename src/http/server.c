#include "http/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "http/auth.h"
#include "http/rate_limit.h"
#include "http/upload_body.h"

#define CONNECTION_IDLE_TIMEOUT_SECONDS 60

/* Per-request state, from the first callback to MHD's "completed" notice. */
typedef struct request_state {
    double started_ms;
    char *body;
    size_t body_len;
    size_t body_cap;
    bool body_too_large;
    size_t declared_length;
    unsigned status;
    size_t response_bytes;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    char method[16];
    char path[512];
    const route *matched;    /* the route, found when the request began; NULL when none */
    upload_body *upload;     /* ROUTE_UPLOAD: the body goes to a file instead of `body` */
    bool offloaded;          /* a blocking route: its handler runs on a thread of its own */
    bool response_ready;     /* set by that thread before it resumes the connection */
    http_response response;  /* what that thread produced */
} request_state;

int server_parse_listen(const char *listen, struct sockaddr_storage *out, agnes_error *err)
{
    char host[256] = "";
    const char *colon = strrchr(listen, ':');
    if (colon == NULL)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "server.listen \"%s\" must be HOST:PORT (e.g. 0.0.0.0:8000)",
                               listen);
    size_t host_len = (size_t)(colon - listen);
    if (host_len >= sizeof host)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "server.listen host is too long");
    memcpy(host, listen, host_len);
    host[host_len] = '\0';
    long long port = 0;
    if (!util_parse_long(colon + 1, &port) || port < 0 || port > 65535)
        return agnes_error_set(err, AGNES_ERR_CONFIG, "server.listen \"%s\": port must be a number from 0 to 65535",
                               listen);
    memset(out, 0, sizeof *out);
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']')
            return agnes_error_set(err, AGNES_ERR_CONFIG, "server.listen \"%s\": unbalanced [ ] around IPv6 host",
                                   listen);
        host[n - 1] = '\0';
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return agnes_error_set(err, AGNES_ERR_CONFIG, "server.listen \"%s\": not an IPv6 address", listen);
        return AGNES_OK;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
        return agnes_error_set(err, AGNES_ERR_CONFIG,
                               "server.listen \"%s\": host must be an IP address (0.0.0.0, 127.0.0.1, [::])", listen);
    return AGNES_OK;
}

static bool route_has(const request_state *state, unsigned flag)
{
    return state->matched != NULL && (state->matched->flags & flag) != 0;
}

/* The file size an upload route accepts. */
static long long upload_limit(const http_server *server, const request_state *state, enum config_key *key)
{
    *key = route_has(state, ROUTE_SMALL_UPLOAD) ? CFG_UPLOAD_SESSION_MAX_BYTES : CFG_UPLOAD_MAX_BYTES;
    return config_get_int(&server->context->runtime->config, *key);
}

/* Uploads are capped by their limit, plus room for multipart framing. */
static size_t max_body_for(const http_server *server, const request_state *state)
{
    enum config_key key;
    if (route_has(state, ROUTE_UPLOAD))
        return (size_t)upload_limit(server, state, &key) + 64 * 1024;
    return server->max_body_bytes;
}

/* A client's X-Request-ID is kept only if it is 1-64 chars of [A-Za-z0-9_-];
 * anything else could smuggle text into logs, so we make our own. */
static void assign_request_id(struct MHD_Connection *connection, request_state *state)
{
    const char *given = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Request-ID");
    if (given != NULL) {
        size_t n = strlen(given);
        bool sane = n > 0 && n <= HTTP_REQUEST_ID_MAX;
        for (size_t i = 0; sane && i < n; i++)
            sane = isalnum((unsigned char)given[i]) || given[i] == '-' || given[i] == '_';
        if (sane) {
            memcpy(state->request_id, given, n + 1);
            return;
        }
    }
    uint8_t bytes[6];
    randombytes_buf(bytes, sizeof bytes);
    util_hex_encode(bytes, sizeof bytes, state->request_id);
}

static void record_client_ip(struct MHD_Connection *connection, request_state *state)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(state->client_ip, sizeof state->client_ip, "-");
    if (info == NULL || info->client_addr == NULL)
        return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, state->client_ip, sizeof state->client_ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, state->client_ip,
                  sizeof state->client_ip);
}

/* Behind our own proxy the socket peer is the proxy: the client is the
 * last X-Forwarded-For hop, the one our proxy appended. */
static void apply_forwarded_for(struct MHD_Connection *connection, request_state *state)
{
    const char *forwarded = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Forwarded-For");
    if (forwarded == NULL)
        return;
    const char *last = strrchr(forwarded, ',');
    last = last ? last + 1 : forwarded;
    while (*last == ' ')
        last++;
    size_t n = strcspn(last, " ");
    struct in6_addr probe;
    char candidate[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof candidate)
        return;
    memcpy(candidate, last, n);
    candidate[n] = '\0';
    if (inet_pton(AF_INET, candidate, &probe) == 1 || inet_pton(AF_INET6, candidate, &probe) == 1)
        memcpy(state->client_ip, candidate, n + 1);
}

static request_state *begin_request(http_server *server, struct MHD_Connection *connection, const char *url,
                                    const char *method)
{
    request_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    state->started_ms = util_monotonic_ms();
    snprintf(state->method, sizeof state->method, "%s", method);
    snprintf(state->path, sizeof state->path, "%s", url);
    assign_request_id(connection, state);
    record_client_ip(connection, state);
    if (config_get_bool(&server->context->runtime->config, CFG_TRUST_PROXY))
        apply_forwarded_for(connection, state);
    http_request probe = {0};
    char allow[128];
    if (router_match(server->routes, server->route_count, state->method, state->path, &probe, &state->matched, allow,
                     sizeof allow) != ROUTE_MATCHED)
        state->matched = NULL;
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long declared = 0;
    if (length != NULL && util_parse_long(length, &declared) && declared > 0) {
        state->declared_length = (size_t)declared;
        state->body_too_large = (size_t)declared > max_body_for(server, state);
    }
    atomic_fetch_add(&server->in_flight, 1);
    return state;
}

static int append_body(http_server *server, request_state *state, const char *data, size_t size)
{
    if (state->body_too_large || state->body_len + size > server->max_body_bytes) {
        state->body_too_large = true;
        free(state->body);
        state->body = NULL;
        state->body_len = state->body_cap = 0;
        return 0; /* keep reading and discarding, answer 413 at the end */
    }
    if (state->body_len + size + 1 > state->body_cap) {
        size_t cap = state->body_cap ? state->body_cap * 2 : 4096;
        while (cap < state->body_len + size + 1)
            cap *= 2;
        char *grown = realloc(state->body, cap);
        if (grown == NULL)
            return -1;
        state->body = grown;
        state->body_cap = cap;
    }
    memcpy(state->body + state->body_len, data, size);
    state->body_len += size;
    state->body[state->body_len] = '\0';
    return 0;
}

static void route_request_now(http_server *server, struct MHD_Connection *connection, request_state *state,
                              http_response *resp);

/* Run the request; an upload's spooled file goes as soon as the handler is
 * done with it, before the client can see the answer. */
static void route_request(http_server *server, struct MHD_Connection *connection, request_state *state,
                          http_response *resp)
{
    route_request_now(server, connection, state, resp);
    upload_body_free(state->upload);
    state->upload = NULL;
}

static void route_request_now(http_server *server, struct MHD_Connection *connection, request_state *state,
                              http_response *resp)
{
    if (state->body_too_large) {
        char detail[256];
        enum config_key key;
        long long limit = upload_limit(server, state, &key);
        if (route_has(state, ROUTE_UPLOAD))
            snprintf(detail, sizeof detail,
                     "The file is larger than the %lld bytes this server accepts. Split it, or ask an admin to raise "
                     "%s (%s).",
                     limit, config_key_name(key), config_spec(key)->env_name);
        else
            snprintf(detail, sizeof detail,
                     "Request body is larger than the %zu bytes this server accepts. Send a smaller body, or raise "
                     "server.max_body_bytes (AGNES_MAX_BODY_BYTES).",
                     server->max_body_bytes);
        http_respond_error(resp, MHD_HTTP_CONTENT_TOO_LARGE, detail, NULL);
        return;
    }
    const http_upload *upload = NULL;
    if (state->upload != NULL) {
        agnes_error err;
        int rc = upload_body_finish(state->upload, &upload, &err);
        if (rc == AGNES_ERR_INVALID) {
            http_respond_error(resp, MHD_HTTP_CONTENT_TOO_LARGE, err.message, NULL);
            return;
        }
        if (rc != AGNES_OK) {
            log_error("msg=\"cannot store an upload\" request_id=%s detail=\"%s\"", state->request_id, err.message);
            http_respond_error(resp, 507, "The server could not store the upload (its disk may be full). Retry later "
                                          "or ask an admin to free space in DATA_DIR.", NULL);
            return;
        }
    }
    http_request req = {
        .method = state->method,
        .path = state->path,
        .body = state->body ? state->body : "",
        .body_len = state->body_len,
        .request_id = state->request_id,
        .client_ip = state->client_ip,
        .connection = connection,
        .upload = upload,
    };
    const route *matched = NULL;
    char allow[128];
    char detail[700];
    enum route_match_result match = router_match(server->routes, server->route_count, state->method, state->path,
                                                 &req, &matched, allow, sizeof allow);
    /* Setup mode closes everything but the public routes, including paths
     * that do not exist (yet): a client learns one thing, "claim me first". */
    if (match == ROUTE_NOT_FOUND && auth_setup_mode_answer(server->context, resp))
        return;
    switch (match) {
    case ROUTE_NOT_FOUND:
        snprintf(detail, sizeof detail, "Not found: no endpoint at %s %s. Check the path (API paths start with /api/ or /auth/).",
                 state->method, state->path);
        http_respond_error(resp, MHD_HTTP_NOT_FOUND, detail, NULL);
        return;
    case ROUTE_METHOD_NOT_ALLOWED:
        snprintf(detail, sizeof detail, "Method %s is not allowed on %s; use %s.", state->method, state->path, allow);
        http_respond_error(resp, MHD_HTTP_METHOD_NOT_ALLOWED, detail, NULL);
        http_response_add_header(resp, "Allow", allow);
        return;
    case ROUTE_MATCHED:
        break;
    }
    unsigned retry_after = 0;
    if (util_starts_with(state->path, "/auth/") && server->context->auth_limiter &&
        !rate_limiter_take(server->context->auth_limiter, state->client_ip, util_monotonic_ms(), &retry_after)) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%u", retry_after);
        snprintf(detail, sizeof detail, "Too many requests to /auth/ from this address; retry in %u seconds.",
                 retry_after);
        http_respond_error(resp, 429, detail, NULL);
        http_response_add_header(resp, "Retry-After", seconds);
        return;
    }
    auth_identity identity;
    if (!auth_gate(server->context, matched, &req, &identity, resp))
        return;
    matched->handler(server->context, &req, resp);
    if (resp->status == 0) {
        agnes_error err;
        agnes_error_set(&err, AGNES_ERR_INVALID, "handler for %s %s produced no response", req.method, req.path);
        http_respond_internal(resp, &req, &err);
    }
}

/* MHD's side of an http_stream. */
typedef struct stream_state {
    http_stream stream;
    struct MHD_Response *response; /* for trailers */
} stream_state;

static ssize_t stream_read(void *cls, uint64_t position, char *buf, size_t max)
{
    (void)position;
    stream_state *s = cls;
    ssize_t n = s->stream.read(s->stream.cls, buf, max);
    if (n == 0 && s->stream.trailers != NULL && s->response != NULL) {
        /* MHD writes footers after the last chunk; added now, they are sent. */
        http_header trailers[4];
        int count = s->stream.trailers(s->stream.cls, trailers, 4);
        for (int i = 0; i < count; i++)
            MHD_add_response_footer(s->response, trailers[i].name, trailers[i].value);
    }
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void stream_release(void *cls)
{
    stream_state *s = cls;
    s->stream.release(s->stream.cls);
    free(s);
}

#define STREAM_BLOCK_BYTES (64 * 1024)

/* File bodies.  libmicrohttpd 0.9.75 hands sendfile() 128 KiB per event-loop
 * turn in our (epoll) mode, which measured 0.66x nginx on a 1 GiB file;
 * pread() into large blocks costs a copy but far fewer turns. */
#define FILE_BLOCK_BYTES (4 * 1024 * 1024)

typedef struct file_state {
    int fd;
    int64_t offset;
} file_state;

static ssize_t file_read(void *cls, uint64_t position, char *buf, size_t max)
{
    file_state *f = cls;
    ssize_t n = pread(f->fd, buf, max, (off_t)(f->offset + (int64_t)position));
    if (n == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return n < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

static void file_release(void *cls)
{
    file_state *f = cls;
    close(f->fd);
    free(f);
}

static struct MHD_Response *create_file_response(http_response *resp)
{
    file_state *f = malloc(sizeof *f);
    if (f == NULL) {
        close(resp->file_fd);
        return NULL;
    }
    f->fd = resp->file_fd;
    f->offset = resp->file_offset;
    struct MHD_Response *response = MHD_create_response_from_callback((uint64_t)resp->file_length, FILE_BLOCK_BYTES,
                                                                      file_read, f, file_release);
    if (response == NULL)
        file_release(f);
    return response;
}

static struct MHD_Response *create_stream_response(http_response *resp)
{
    stream_state *s = malloc(sizeof *s);
    if (s == NULL) {
        resp->stream.release(resp->stream.cls);
        return NULL;
    }
    s->stream = resp->stream;
    s->response = NULL;
    resp->stream.read = NULL; /* owned by MHD (or released below) from here */
    struct MHD_Response *response =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_BYTES, stream_read, s, stream_release);
    if (response == NULL)
        stream_release(s);
    else
        s->response = response;
    return response;
}

static enum MHD_Result send_response(http_server *server, struct MHD_Connection *connection, request_state *state,
                                     http_response *resp)
{
    struct MHD_Response *response;
    if (resp->stream.read != NULL) {
        response = create_stream_response(resp);
    } else if (resp->has_file) {
        response = create_file_response(resp);
        resp->has_file = false;
    } else
        /* An empty body (204) must not be handed over as MUST_FREE: MHD would free it. */
        response = resp->body ? MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE)
                              : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (response == NULL) {
        free(resp->body);
        return MHD_NO;
    }
    resp->body = NULL; /* MHD owns it now */
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "application/json");
    MHD_add_response_header(response, "X-Request-ID", state->request_id);
    MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
    for (int i = 0; i < resp->header_count; i++)
        MHD_add_response_header(response, resp->headers[i].name, resp->headers[i].value);
    if (atomic_load(&server->draining))
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    state->status = resp->status;
    state->response_bytes = resp->body_len;
    enum MHD_Result result = MHD_queue_response(connection, resp->status, response);
    MHD_destroy_response(response);
    return result;
}

/*
 * Blocking routes (queries, rebuilds, uploads) can run for seconds.  MHD's
 * workers each multiplex many connections, so running such a handler on a
 * worker would stall every other connection of that worker - health checks
 * included.  Instead the connection is suspended, the handler runs on a
 * thread of its own, and the connection is resumed with the response.
 */
typedef struct offload_job {
    http_server *server;
    struct MHD_Connection *connection;
    request_state *state;
} offload_job;

static void *offload_main(void *arg)
{
    offload_job *job = arg;
    route_request(job->server, job->connection, job->state, &job->state->response);
    job->state->response_ready = true;
    MHD_resume_connection(job->connection);
    free(job);
    return NULL;
}

/* True when the request now runs elsewhere; false to run it here. */
static bool offload(http_server *server, struct MHD_Connection *connection, request_state *state)
{
    offload_job *job = malloc(sizeof *job);
    if (job == NULL)
        return false;
    *job = (offload_job){server, connection, state};
    state->offloaded = true;
    atomic_fetch_add(&server->offloaded_in_flight, 1);
    MHD_suspend_connection(connection); /* before the thread exists, so it cannot resume first */
    pthread_attr_t attributes;
    pthread_t thread;
    bool started = pthread_attr_init(&attributes) == 0 &&
                   pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED) == 0 &&
                   pthread_create(&thread, &attributes, offload_main, job) == 0;
    pthread_attr_destroy(&attributes);
    if (!started) {
        state->offloaded = false;
        atomic_fetch_sub(&server->offloaded_in_flight, 1);
        MHD_resume_connection(connection);
        free(job);
        log_warn("msg=\"cannot start a thread for a blocking request; running it inline\" request_id=%s",
                 state->request_id);
    }
    return started;
}

/* Before an upload's first byte is stored: the caller must be allowed to
 * send it (nobody streams a gigabyte to learn their token expired), and
 * the file must have somewhere to go.  False with *resp filled otherwise. */
static bool begin_upload(http_server *server, struct MHD_Connection *connection, request_state *state,
                         http_response *resp)
{
    http_request req = {
        .method = state->method,
        .path = state->path,
        .body = "",
        .request_id = state->request_id,
        .client_ip = state->client_ip,
        .connection = connection,
    };
    auth_identity identity;
    if (!auth_gate(server->context, state->matched, &req, &identity, resp))
        return false;
    char uploads[AGNES_PATH_MAX];
    agnes_error err;
    enum config_key limit_key;
    if (paths_data_file(&server->context->runtime->paths, DATA_UPLOADS_DIR, uploads, sizeof uploads, &err) ||
        upload_body_begin(&state->upload, connection, uploads, state->request_id,
                          (uint64_t)upload_limit(server, state, &limit_key), &err)) {
        http_respond_internal(resp, &req, &err);
        return false;
    }
    return true;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version, const char *upload_data,
                                      size_t *upload_data_size, void **con_cls)
{
    (void)version;
    http_server *server = cls;
    request_state *state = *con_cls;
    if (state == NULL) {
        state = begin_request(server, connection, url, method);
        if (state == NULL)
            return MHD_NO;
        *con_cls = state;
        if (!state->body_too_large && route_has(state, ROUTE_UPLOAD)) {
            http_response early = {0};
            if (!begin_upload(server, connection, state, &early))
                return send_response(server, connection, state, &early);
        }
        if (!state->body_too_large)
            return MHD_YES; /* come back with the body */
        /* Declared too large: answer now instead of reading it all. */
    } else if (*upload_data_size > 0) {
        if (state->upload != NULL)
            upload_body_append(state->upload, upload_data, *upload_data_size);
        else if (append_body(server, state, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (state->response_ready) {
        http_response resp = state->response;
        memset(&state->response, 0, sizeof state->response);
        state->response_ready = false;
        return send_response(server, connection, state, &resp);
    }
    if (!state->offloaded && !state->body_too_large && route_has(state, ROUTE_BLOCKING) &&
        offload(server, connection, state))
        return MHD_YES;
    http_response resp = {0};
    route_request(server, connection, state, &resp);
    return send_response(server, connection, state, &resp);
}

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode code)
{
    (void)connection;
    http_server *server = cls;
    request_state *state = *con_cls;
    if (state == NULL)
        return;
    double elapsed = util_monotonic_ms() - state->started_ms;
    log_info("msg=request request_id=%s method=%s path=\"%s\" status=%u bytes=%zu duration_ms=%.2f client=%s%s",
             state->request_id, state->method, state->path, state->status, state->response_bytes, elapsed,
             state->client_ip, code == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
    if (state->response_ready) { /* the client left before an offloaded response was sent */
        free(state->response.body);
        if (state->response.stream.read != NULL)
            state->response.stream.release(state->response.stream.cls);
    }
    if (state->offloaded)
        atomic_fetch_sub(&server->offloaded_in_flight, 1);
    upload_body_free(state->upload);
    free(state->body);
    free(state);
    *con_cls = NULL;
    atomic_fetch_sub(&server->in_flight, 1);
}

static void log_mhd_error(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    util_trim(text);
    log_warn("msg=\"http\" detail=\"%s\"", text);
}

int server_block_signals(agnes_error *err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_INVALID, "cannot block signals");
    signal(SIGPIPE, SIG_IGN);
    return AGNES_OK;
}

int server_start(http_server *server, http_context *ctx, const route *routes, size_t route_count,
                 const server_options *options, agnes_error *err)
{
    memset(server, 0, sizeof *server);
    server->context = ctx;
    server->routes = routes;
    server->route_count = route_count;
    server->max_body_bytes = options->max_body_bytes;
    atomic_init(&server->in_flight, 0);
    atomic_init(&server->draining, false);
    atomic_init(&server->offloaded_in_flight, 0);
    struct sockaddr_storage address;
    if (server_parse_listen(options->listen, &address, err))
        return err->code;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (address.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, server, MHD_OPTION_EXTERNAL_LOGGER, log_mhd_error, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_THREAD_POOL_SIZE, options->threads, MHD_OPTION_CONNECTION_LIMIT, options->max_connections,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
        /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it enables SO_REUSEPORT, which would let a second
         * agnes bind the same port and silently take half the traffic. */
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_IDLE_TIMEOUT_SECONDS, MHD_OPTION_END);
    if (server->daemon == NULL)
        return agnes_error_set(err, AGNES_ERR_IO,
                               "cannot listen on %s: the address is in use or not available here. Stop the other "
                               "process or choose another address with AGNES_LISTEN=HOST:PORT",
                               options->listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info ? info->port : 0;
    return AGNES_OK;
}

int server_wait(http_server *server, server_tick_fn tick, void *tick_arg)
{
    (void)server;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    struct timespec one_second = {1, 0};
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &one_second);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig < 0 && errno != EAGAIN && errno != EINTR) {
            log_error("msg=\"waiting for signals failed\" detail=\"%s\"", strerror(errno));
            return -1;
        }
        if (tick)
            tick(tick_arg);
    }
}

int server_stop(http_server *server, unsigned grace_seconds)
{
    if (server->daemon == NULL)
        return 0;
    atomic_store(&server->draining, true);
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    double deadline = util_monotonic_ms() + grace_seconds * 1000.0;
    while (atomic_load(&server->in_flight) > 0 && util_monotonic_ms() < deadline) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    int left = atomic_load(&server->in_flight);
    /* MHD must not be stopped under a suspended connection; one whose
     * handler is still running past the grace period is left to exit(). */
    if (atomic_load(&server->offloaded_in_flight) == 0)
        MHD_stop_daemon(server->daemon);
    server->daemon = NULL;
    return left;
}
