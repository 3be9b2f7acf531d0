/*
 * rate_limit.h - per-client-IP token buckets for the /auth/ endpoints
 * (SPEC §6): each address may spend `capacity` requests at once and earns
 * them back at `per_minute`.  Lockout is by rate only, never by disabling
 * an account, so a guessing attacker slows down while the real user logs in
 * from elsewhere.
 *
 * A fixed table of buckets (no allocation per request); when full, the
 * bucket idle longest is reused, which can only make limiting more lenient
 * for an address that had been quiet for longer than anyone else.
 */
#ifndef AGNES_HTTP_RATE_LIMIT_H
#define AGNES_HTTP_RATE_LIMIT_H

#include <pthread.h>
#include <stdbool.h>

#define RATE_LIMIT_BUCKETS 4096

typedef struct rate_bucket {
    char address[46];
    double tokens;
    double updated_ms;
} rate_bucket;

typedef struct rate_limiter {
    pthread_mutex_t lock;
    double capacity;
    double per_ms;
    rate_bucket buckets[RATE_LIMIT_BUCKETS];
} rate_limiter;

/* per_minute 0 disables limiting. */
int rate_limiter_init(rate_limiter *limiter, unsigned per_minute);
void rate_limiter_free(rate_limiter *limiter);

/* Take one token for address at now_ms; false with *retry_after_seconds set
 * when the bucket is empty. */
bool rate_limiter_take(rate_limiter *limiter, const char *address, double now_ms, unsigned *retry_after_seconds);

#endif
