/*
 * health.h - GET /api/health and GET /api/version (SPEC §12).
 *
 * Load balancers and compose poll /api/health constantly, so it must cost
 * almost nothing: the checks run in health_monitor_refresh() (at start and
 * every few seconds from the server's tick) and the handler only copies the
 * last serialised answer.  A problem shows up within one refresh period.
 *
 * Who sees what (the answer reveals the server's layout):
 *   anonymous         {status, version, channel}: enough for a load balancer
 *                     (the HTTP status says 200 or 503) and for a smoke test
 *   signed-in user    that, plus schema and each check's status - no paths,
 *                     byte counts or warning texts
 *   admin / service   the whole document: paths, free bytes, warnings
 * /api/health/detailed follows the same split, and shows a non-admin only
 * the tables, stale tables and collisions they may read - never a source.
 */
#ifndef AGNES_HTTP_HEALTH_H
#define AGNES_HTTP_HEALTH_H

#include <pthread.h>

#include "core/error.h"
#include "http/http.h"

#define HEALTH_REFRESH_SECONDS 5

typedef struct health_monitor {
    pthread_mutex_t lock;
    char *body; /* the whole document (admins) */
    size_t body_len;
    char *public_body; /* {status, version, channel} (anonymous) */
    size_t public_body_len;
    unsigned status_code;
} health_monitor;

int health_monitor_init(health_monitor *monitor, agnes_error *err);

/* Run every check now and publish the result. */
void health_monitor_refresh(health_monitor *monitor, http_context *ctx);

/* Build the health document (exposed for `agnes doctor`); returns the HTTP status. */
unsigned health_build(http_context *ctx, json_t **out);

void health_monitor_free(health_monitor *monitor);

void health_handle_get(http_context *ctx, const http_request *req, http_response *resp);
/* GET /api/health/detailed (signed in): the health document plus the
 * catalog's last rebuild (sources, collisions, stale tables), memory,
 * uptime and running queries. */
void health_handle_detailed(http_context *ctx, const http_request *req, http_response *resp);
void version_handle_get(http_context *ctx, const http_request *req, http_response *resp);

#endif
