#include "http/rate_limit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int rate_limiter_init(rate_limiter *limiter, unsigned per_minute)
{
    memset(limiter, 0, sizeof *limiter);
    limiter->capacity = per_minute;
    limiter->per_ms = per_minute / 60000.0;
    return pthread_mutex_init(&limiter->lock, NULL) == 0 ? 0 : -1;
}

void rate_limiter_free(rate_limiter *limiter)
{
    pthread_mutex_destroy(&limiter->lock);
}

/* FNV-1a of the address picks where its bucket lives; linear probing for 8
 * slots, then the least recently used of them is recycled. */
static rate_bucket *find_bucket(rate_limiter *limiter, const char *address, double now_ms)
{
    unsigned hash = 2166136261u;
    for (const char *p = address; *p; p++)
        hash = (hash ^ (unsigned char)*p) * 16777619u;
    rate_bucket *oldest = NULL;
    for (unsigned i = 0; i < 8; i++) {
        rate_bucket *b = &limiter->buckets[(hash + i) % RATE_LIMIT_BUCKETS];
        if (strcmp(b->address, address) == 0)
            return b;
        if (oldest == NULL || b->updated_ms < oldest->updated_ms)
            oldest = b;
    }
    snprintf(oldest->address, sizeof oldest->address, "%s", address);
    oldest->tokens = limiter->capacity;
    oldest->updated_ms = now_ms;
    return oldest;
}

bool rate_limiter_take(rate_limiter *limiter, const char *address, double now_ms, unsigned *retry_after_seconds)
{
    if (limiter->capacity <= 0)
        return true;
    pthread_mutex_lock(&limiter->lock);
    rate_bucket *b = find_bucket(limiter, address, now_ms);
    b->tokens = fmin(limiter->capacity, b->tokens + (now_ms - b->updated_ms) * limiter->per_ms);
    b->updated_ms = now_ms;
    bool allowed = b->tokens >= 1.0;
    if (allowed)
        b->tokens -= 1.0;
    else
        *retry_after_seconds = (unsigned)ceil((1.0 - b->tokens) / limiter->per_ms / 1000.0);
    pthread_mutex_unlock(&limiter->lock);
    return allowed;
}
