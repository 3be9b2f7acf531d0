/*
 * server.h - the HTTP server on libmicrohttpd (poll + a thread pool).
 *
 * Lifecycle, owned by the caller (`agnes serve`):
 *   server_start()  bind and start the worker threads
 *   server_wait()   block the calling thread until SIGTERM/SIGINT, running
 *                   the tick callback about once a second for periodic work
 *   server_stop()   stop accepting, let in-flight requests finish (up to the
 *                   grace period), then stop the threads
 *
 * Per request the server assigns a request id (honouring a sane
 * X-Request-ID), caps the body (413), routes (404/405 as JSON), calls the
 * handler and writes one access-log line when the response is done.
 */
#ifndef AGNES_HTTP_SERVER_H
#define AGNES_HTTP_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "http/http.h"
#include "http/offload.h"
#include "http/router.h"

struct MHD_Daemon;

/* In-flight requests of one client address, when the address comes from
 * X-Forwarded-For (behind a proxy every socket is the proxy's). */
typedef struct address_count {
    char address[46]; /* INET6_ADDRSTRLEN */
    int count;
} address_count;

#define SERVER_ADDRESS_SLOTS 1024

typedef struct http_server {
    struct MHD_Daemon *daemon;
    http_context *context;
    const route *routes;
    size_t route_count;
    size_t max_body_bytes;
    unsigned short port; /* the bound port (useful when 0 was asked for) */
    atomic_int in_flight;
    atomic_int offloaded_in_flight; /* requests whose handler runs on an offload thread */
    offload_pool offload;
    atomic_bool draining;
    /* Requests per forwarded client address (server.trust_proxy); NULL when
     * libmicrohttpd limits connections per socket address instead. */
    address_count *addresses;
    pthread_mutex_t addresses_lock;
    unsigned per_address_limit;
} http_server;

typedef struct server_options {
    const char *listen; /* "HOST:PORT", "[v6]:PORT" or ":PORT" */
    unsigned threads;         /* event-loop workers; blocking routes run on the offload pool's threads */
    unsigned max_connections;
    /* Connections one address may hold (0 = no limit).  Behind a trusted
     * proxy every connection is the proxy's, so the limit applies instead to
     * the requests in flight per X-Forwarded-For address (429 above it). */
    unsigned max_connections_per_address;
    bool trust_proxy;
    /* A connection silent this long - waiting for the rest of its headers or
     * body, or idle between keep-alive requests - is closed. */
    unsigned idle_timeout_seconds;
    size_t max_body_bytes;
} server_options;

/* Block SIGTERM/SIGINT in the calling thread (call before any thread is
 * created, so every thread inherits the mask and server_wait receives them). */
int server_block_signals(agnes_error *err);

int server_start(http_server *server, http_context *ctx, const route *routes, size_t route_count,
                 const server_options *options, agnes_error *err);

typedef void (*server_tick_fn)(void *arg);

/* Returns the signal number that ended the wait. */
int server_wait(http_server *server, server_tick_fn tick, void *tick_arg);

/* Graceful stop; returns the number of requests still running when the
 * grace period ran out (0 on a clean drain). */
int server_stop(http_server *server, unsigned grace_seconds);

/* Parse "HOST:PORT" into a socket address (exposed for tests). */
struct sockaddr_storage;
int server_parse_listen(const char *listen, struct sockaddr_storage *out, agnes_error *err);

#endif
