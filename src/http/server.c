#include "http/server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <strings.h>
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

/* The answer to ambiguous framing (RFC 9112 section 6.3): the connection is
 * closed after it, so bytes after the ambiguous body are never read as a
 * request of their own. */
#define FRAMING_HINT "Send one Content-Length, or Transfer-Encoding: chunked alone, never both (RFC 9112 section 6)."

/* Per-request state, from the first callback to MHD's "completed" notice. */
typedef struct request_state {
    double started_ms;
    char *body;
    size_t body_len;
    size_t body_cap;
    bool body_too_large;
    bool framing_refused;    /* answered 4xx before its body: the connection closes */
    bool path_too_long;      /* the path did not fit `path`: never routed cut short */
    char framing_problem[300];
    int address_slot;        /* in-flight slot of a forwarded client address, -1 when none */
    size_t declared_length;
    unsigned status;
    size_t response_bytes;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char client_ip[INET6_ADDRSTRLEN];
    char method[16];
    char path[512];
    const route *matched;    /* the route, found when the request began; NULL when none */
    upload_body *upload;     /* ROUTE_UPLOAD: the body goes to a file instead of `body` */
    bool offloaded;          /* a blocking route: its handler runs on an offload thread */
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

/*
 * Framing and encoding checks, on the headers as libmicrohttpd received
 * them, before any body byte is read.  libmicrohttpd 0.9.75 takes the first
 * of two Content-Length fields, lets Transfer-Encoding: chunked win over a
 * Content-Length, and ignores a field whose name ends in a space - each a
 * way for a proxy in front and this server to disagree on where a request
 * ends (request smuggling).  RFC 9112 section 6.3 says to refuse them.
 */
typedef struct framing_scan {
    int content_lengths;
    int transfer_encodings;
    bool chunked_only; /* every Transfer-Encoding field is exactly "chunked" */
    char problem[300];
} framing_scan;

/* RFC 3629 UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): what jansson and DuckDB both insist on.  Names and ids in
 * paths and query strings are percent-encoded UTF-8 (RFC 3986); bytes that
 * are no character would reach a handler only to fail in a JSON answer or
 * a bound parameter, so they are refused here, once. */
static bool valid_utf8(const unsigned char *s, size_t len)
{
    static const unsigned long minimum[] = {0, 0x80, 0x800, 0x10000};
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        if (more == 4 || more >= len - i)
            return more == 0;
        unsigned long code = c & (0x7fu >> more);
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            code = (code << 6) | (s[i + k] & 0x3fu);
        }
        if (code < minimum[more] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

static bool has_byte(const char *text, size_t size, char byte)
{
    return text != NULL && memchr(text, byte, size) != NULL;
}

static bool has_control(const char *text, size_t size)
{
    for (size_t i = 0; text != NULL && i < size; i++)
        if ((unsigned char)text[i] < 0x20 && text[i] != '\t')
            return true;
    return false;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    (void)kind;
    framing_scan *scan = cls;
    if (scan->problem[0] != '\0')
        return MHD_NO;
    bool bad_name = key_size == 0;
    for (size_t i = 0; i < key_size; i++)
        bad_name = bad_name || (unsigned char)key[i] <= ' ' || key[i] == 0x7f;
    if (bad_name) {
        snprintf(scan->problem, sizeof scan->problem,
                 "A header field name contains a space or a control character (e.g. \"Transfer-Encoding :\"); "
                 "remove it.");
        return MHD_NO;
    }
    if (has_control(value, value_size)) {
        snprintf(scan->problem, sizeof scan->problem,
                 "Header %.64s contains a control character (NUL, CR or LF); remove it.", key);
        return MHD_NO;
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        scan->content_lengths++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        scan->transfer_encodings++;
        char coding[32] = "";
        snprintf(coding, sizeof coding, "%.*s", (int)(value_size < 31 ? value_size : 31), value ? value : "");
        scan->chunked_only = scan->chunked_only && strcasecmp(util_trim(coding), "chunked") == 0;
    }
    return MHD_YES;
}

/* Query parameters: a NUL would silently cut a value (?name=a%00b became
 * table "a"); unescape_uri below leaves %00 undecoded so it can be seen. */
static enum MHD_Result scan_argument(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                     const char *value, size_t value_size)
{
    (void)kind;
    framing_scan *scan = cls;
    if (scan->problem[0] != '\0')
        return MHD_NO;
    if (has_byte(key, key_size, '\0') || (key && strstr(key, "%00")) || has_byte(value, value_size, '\0') ||
        (value && strstr(value, "%00"))) {
        snprintf(scan->problem, sizeof scan->problem,
                 "Query parameter '%.64s' contains a NUL byte (%%00), which no name or value may hold; remove it.",
                 key && valid_utf8((const unsigned char *)key, key_size) ? key : "?");
        return MHD_NO;
    }
    if (!valid_utf8((const unsigned char *)key, key_size) || !valid_utf8((const unsigned char *)value, value_size)) {
        snprintf(scan->problem, sizeof scan->problem,
                 "Query parameter '%.64s' is not UTF-8 text (a %%XX sequence decodes to bytes that are no "
                 "character); percent-encode names and values as UTF-8.",
                 valid_utf8((const unsigned char *)key, key_size) ? key : "?");
        return MHD_NO;
    }
    return MHD_YES;
}

/* Empty when the request may proceed; else the sentence of a 400. */
static void check_framing(struct MHD_Connection *connection, const char *version, const request_state *state,
                          char *problem, size_t size)
{
    framing_scan scan = {.chunked_only = true};
    problem[0] = '\0';
    if (strstr(state->path, "%00") != NULL) {
        snprintf(problem, size, "The path contains a NUL byte (%%00), which no path may hold; remove it.");
        return;
    }
    if (!valid_utf8((const unsigned char *)state->path, strlen(state->path))) {
        snprintf(problem, size,
                 "The path is not UTF-8 text (a %%XX sequence decodes to bytes that are no character); "
                 "percent-encode names and ids as UTF-8.");
        return;
    }
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, scan_header, &scan);
    if (scan.problem[0] == '\0')
        MHD_get_connection_values_n(connection, MHD_GET_ARGUMENT_KIND, scan_argument, &scan);
    if (scan.problem[0] != '\0')
        snprintf(problem, size, "%s", scan.problem);
    else if (scan.content_lengths > 1)
        snprintf(problem, size, "The request has %d Content-Length fields; send exactly one. " FRAMING_HINT,
                 scan.content_lengths);
    else if (scan.transfer_encodings > 0 && scan.content_lengths > 0)
        snprintf(problem, size, "The request has both Content-Length and Transfer-Encoding. " FRAMING_HINT);
    else if (scan.transfer_encodings > 1 || (scan.transfer_encodings == 1 && !scan.chunked_only))
        snprintf(problem, size,
                 "Transfer-Encoding must be exactly \"chunked\" (no other coding, no repeats). " FRAMING_HINT);
    else if (scan.transfer_encodings > 0 && strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
        snprintf(problem, size, "Transfer-Encoding is not defined for %s requests; send Content-Length.", version);
}

/* libmicrohttpd's default unescaping turns %00 into a NUL that cuts the
 * path or value short without a trace.  Decode every other %XX; leave %00
 * (and malformed escapes) as written, for check_framing to refuse. */
static size_t unescape_uri(void *cls, struct MHD_Connection *connection, char *text)
{
    (void)cls;
    (void)connection;
    char *out = text;
    for (const char *in = text; *in; in++) {
        if (in[0] == '%' && isxdigit((unsigned char)in[1]) && isxdigit((unsigned char)in[2])) {
            char hex[3] = {in[1], in[2], '\0'};
            long byte = strtol(hex, NULL, 16);
            if (byte != 0) {
                *out++ = (char)byte;
                in += 2;
                continue;
            }
        }
        *out++ = *in;
    }
    *out = '\0';
    return (size_t)(out - text);
}

static size_t address_hash(const char *address)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)address; *p; p++)
        hash = (hash ^ *p) * 16777619u;
    return hash % SERVER_ADDRESS_SLOTS;
}

#define ADDRESS_PROBES 16

/* Count the request against its client address; false when that address
 * already has per_address_limit requests in flight.  A full table lets
 * the request through (the connection limit still bounds the total). */
static bool claim_address(http_server *server, request_state *state)
{
    if (server->addresses == NULL || server->per_address_limit == 0)
        return true;
    size_t start = address_hash(state->client_ip);
    int match = -1, empty = -1;
    bool allowed = true;
    pthread_mutex_lock(&server->addresses_lock);
    for (size_t i = 0; i < ADDRESS_PROBES && match < 0; i++) {
        size_t slot = (start + i) % SERVER_ADDRESS_SLOTS;
        address_count *entry = &server->addresses[slot];
        if (entry->count > 0 && strcmp(entry->address, state->client_ip) == 0)
            match = (int)slot;
        else if (entry->count == 0 && empty < 0)
            empty = (int)slot;
    }
    if (match < 0 && empty >= 0) {
        match = empty;
        snprintf(server->addresses[match].address, sizeof server->addresses[match].address, "%s", state->client_ip);
    }
    if (match >= 0) {
        allowed = (unsigned)server->addresses[match].count < server->per_address_limit;
        if (allowed) {
            server->addresses[match].count++;
            state->address_slot = match;
        }
    }
    pthread_mutex_unlock(&server->addresses_lock);
    return allowed;
}

static void release_address(http_server *server, request_state *state)
{
    if (state->address_slot < 0)
        return;
    pthread_mutex_lock(&server->addresses_lock);
    server->addresses[state->address_slot].count--;
    pthread_mutex_unlock(&server->addresses_lock);
    state->address_slot = -1;
}

static request_state *begin_request(http_server *server, struct MHD_Connection *connection, const char *url,
                                    const char *method)
{
    request_state *state = calloc(1, sizeof *state);
    if (state == NULL)
        return NULL;
    state->started_ms = util_monotonic_ms();
    state->address_slot = -1;
    /* A method is a token; anything else is shown as '?' (it is logged and echoed). */
    size_t m = 0;
    for (const char *c = method; *c && m + 1 < sizeof state->method; c++)
        state->method[m++] = (isalnum((unsigned char)*c) || strchr("!#$%&'*+-.^_`|~", *c)) ? *c : '?';
    state->method[m] = '\0';
    state->path_too_long = strlen(url) >= sizeof state->path;
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

/* The path as a client would type it: bytes outside printable ASCII as %XX,
 * so a sentence quoting it is plain text (and always valid JSON). */
static const char *printable_path(const char *path, char *out, size_t size)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < size; p++) {
        if (*p > 0x20 && *p < 0x7f)
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, size - n, "%%%02X", *p);
    }
    out[n] = '\0';
    return out;
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
            http_respond_error(resp, upload_body_too_large(state->upload) ? MHD_HTTP_CONTENT_TOO_LARGE : 400,
                               err.message, NULL);
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
    char detail[700], shown[3 * sizeof state->path];
    enum route_match_result match = router_match(server->routes, server->route_count, state->method, state->path,
                                                 &req, &matched, allow, sizeof allow);
    /* Setup mode closes everything but the public routes, including paths
     * that do not exist (yet): a client learns one thing, "claim me first". */
    if (match == ROUTE_NOT_FOUND && auth_setup_mode_answer(server->context, resp))
        return;
    switch (match) {
    case ROUTE_NOT_FOUND:
        snprintf(detail, sizeof detail, "Not found: no endpoint at %s %s. Check the path (API paths start with /api/ or /auth/).",
                 state->method, printable_path(state->path, shown, sizeof shown));
        http_respond_error(resp, MHD_HTTP_NOT_FOUND, detail, NULL);
        return;
    case ROUTE_METHOD_NOT_ALLOWED:
        snprintf(detail, sizeof detail, "Method %s is not allowed on %s; use %s.", state->method,
                 printable_path(state->path, shown, sizeof shown), allow);
        http_respond_error(resp, MHD_HTTP_METHOD_NOT_ALLOWED, detail, NULL);
        http_response_add_header(resp, "Allow", allow);
        return;
    case ROUTE_PARAM_TOO_LONG:
        snprintf(detail, sizeof detail,
                 "A segment of the path is %d bytes or longer; no id or name is that long. Check the path.",
                 HTTP_PARAM_MAX);
        http_respond_error(resp, 414, detail, NULL);
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
 * turn with an internal thread (measured in epoll mode: 0.66x nginx on a 1 GiB file);
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
    for (int i = 0; i < resp->header_count; i++) {
        /* A header built from request data (a redirect target, a file name)
         * must not carry a CR/LF or other control byte to the client. */
        if (has_control(resp->headers[i].value, strlen(resp->headers[i].value)) ||
            has_control(resp->headers[i].name, strlen(resp->headers[i].name))) {
            log_warn("msg=\"response header dropped: control character\" request_id=%s header=%s",
                     state->request_id, resp->headers[i].name);
            continue;
        }
        MHD_add_response_header(response, resp->headers[i].name, resp->headers[i].value);
    }
    if (atomic_load(&server->draining) || state->framing_refused)
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
 * thread of the offload pool (offload.h), and the connection is resumed
 * with the response.
 */
typedef struct blocking_request {
    offload_job job; /* first: the pool hands back &job */
    http_server *server;
    struct MHD_Connection *connection;
    request_state *state;
} blocking_request;

static void run_blocking(void *arg)
{
    blocking_request *request = arg;
    route_request(request->server, request->connection, request->state, &request->state->response);
    request->state->response_ready = true;
    MHD_resume_connection(request->connection);
    free(request);
}

/* True when the request now runs elsewhere; false to run it here. */
static bool offload(http_server *server, struct MHD_Connection *connection, request_state *state)
{
    blocking_request *request = malloc(sizeof *request);
    if (request == NULL)
        return false;
    *request = (blocking_request){.job = {.run = run_blocking}, .server = server, .connection = connection,
                                  .state = state};
    request->job.arg = request;
    state->offloaded = true;
    atomic_fetch_add(&server->offloaded_in_flight, 1);
    MHD_suspend_connection(connection); /* before a thread has it, so it cannot resume first */
    if (!offload_submit(&server->offload, &request->job)) {
        state->offloaded = false;
        atomic_fetch_sub(&server->offloaded_in_flight, 1);
        MHD_resume_connection(connection);
        free(request);
        log_warn("msg=\"cannot start a thread for a blocking request; running it inline\" request_id=%s",
                 state->request_id);
        return false;
    }
    return true;
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
    http_server *server = cls;
    request_state *state = *con_cls;
    if (state == NULL) {
        state = begin_request(server, connection, url, method);
        if (state == NULL)
            return MHD_NO;
        *con_cls = state;
        check_framing(connection, version, state, state->framing_problem, sizeof state->framing_problem);
        if (state->path_too_long)
            snprintf(state->framing_problem, sizeof state->framing_problem,
                     "The path is %zu bytes or longer; no endpoint's path is. Check it.", sizeof state->path);
        if (state->framing_problem[0] != '\0') {
            http_response refused = {0};
            state->framing_refused = true;
            http_respond_error(&refused, state->path_too_long ? 414 : 400, state->framing_problem, NULL);
            return send_response(server, connection, state, &refused);
        }
        if (!claim_address(server, state)) {
            http_response busy = {0};
            http_respond_error(&busy, 429,
                               "Too many requests at once from this address; wait for some to finish and retry.",
                               NULL);
            http_response_add_header(&busy, "Retry-After", "1");
            return send_response(server, connection, state, &busy);
        }
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
    char path[2 * sizeof state->path];
    log_info("msg=request request_id=%s method=%s path=\"%s\" status=%u bytes=%zu duration_ms=%.2f client=%s%s",
             state->request_id, state->method, log_quote(state->path, path, sizeof path), state->status,
             state->response_bytes, elapsed, state->client_ip,
             code == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=true");
    release_address(server, state);
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
    /* poll(), not epoll: libmicrohttpd 0.9.75's MHD_quiesce_daemon() races
     * its own epoll workers over removing the listening socket (both check
     * an unlocked flag, the loser's epoll_ctl() fails with ENOENT) and
     * aborts the process: one SIGTERM in a few hundred ended in SIGABRT.
     * In poll mode quiescing only sets a flag the workers check before
     * accept() and wakes them, which cannot fail that way. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (address.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* One client must not take every connection slot (600 half-sent
     * requests once locked everyone out): libmicrohttpd refuses a socket
     * address's connections past the limit.  Behind our own proxy that
     * address is the proxy's, so the limit moves to requests per
     * forwarded address (claim_address). */
    unsigned per_socket_address = options->trust_proxy ? 0 : options->max_connections_per_address;
    if (options->trust_proxy && options->max_connections_per_address > 0) {
        server->addresses = calloc(SERVER_ADDRESS_SLOTS, sizeof *server->addresses);
        if (server->addresses == NULL || pthread_mutex_init(&server->addresses_lock, NULL) != 0) {
            free(server->addresses);
            server->addresses = NULL;
            return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create the per-address request table");
        }
        server->per_address_limit = options->max_connections_per_address;
    }
    if (offload_pool_init(&server->offload) != 0) {
        if (server->addresses != NULL) {
            pthread_mutex_destroy(&server->addresses_lock);
            free(server->addresses);
            server->addresses = NULL;
        }
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create the pool of request threads");
    }
    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, server, MHD_OPTION_EXTERNAL_LOGGER, log_mhd_error, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_THREAD_POOL_SIZE, options->threads, MHD_OPTION_CONNECTION_LIMIT, options->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_socket_address,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, server,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_uri, NULL,
        /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it enables SO_REUSEPORT, which would let a second
         * agnes bind the same port and silently take half the traffic. */
        MHD_OPTION_CONNECTION_TIMEOUT, options->idle_timeout_seconds, MHD_OPTION_END);
    if (server->daemon == NULL) {
        offload_pool_stop(&server->offload);
        if (server->addresses != NULL) {
            pthread_mutex_destroy(&server->addresses_lock);
            free(server->addresses);
            server->addresses = NULL;
        }
        return agnes_error_set(err, AGNES_ERR_IO,
                               "cannot listen on %s: the address is in use or not available here. Stop the other "
                               "process or choose another address with AGNES_LISTEN=HOST:PORT",
                               options->listen);
    }
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
    /* The socket stays ours to close, but only after MHD_stop_daemon(): a
     * worker may still be inside poll() or accept() with it (the
     * MHD_quiesce_daemon contract).  shutdown() makes the kernel refuse new
     * connections now, without freeing the descriptor number for reuse. */
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);
    if (listener != MHD_INVALID_SOCKET)
        shutdown(listener, SHUT_RDWR);
    double deadline = util_monotonic_ms() + grace_seconds * 1000.0;
    while (atomic_load(&server->in_flight) > 0 && util_monotonic_ms() < deadline) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    int left = atomic_load(&server->in_flight);
    /* MHD must not be stopped under a suspended connection; one whose
     * handler is still running past the grace period is left to exit(). */
    if (atomic_load(&server->offloaded_in_flight) == 0) {
        MHD_stop_daemon(server->daemon);
        offload_pool_stop(&server->offload); /* only idle threads are left */
        if (listener != MHD_INVALID_SOCKET)
            close(listener);
        if (server->addresses != NULL) { /* no request can reach it any more */
            pthread_mutex_destroy(&server->addresses_lock);
            free(server->addresses);
            server->addresses = NULL;
        }
    }
    server->daemon = NULL;
    return left;
}
