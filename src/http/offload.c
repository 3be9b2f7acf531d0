/*
 * offload.c - a pool of threads for blocking handlers; the why is in
 * offload.h.
 */
#include "http/offload.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

int offload_pool_init(offload_pool *pool)
{
    memset(pool, 0, sizeof *pool);
    pthread_condattr_t attributes;
    if (pthread_condattr_init(&attributes) != 0)
        return -1;
    /* Idle timeouts measured on the monotonic clock: a wall-clock jump must
     * neither end every idle thread at once nor keep them forever. */
    pool->clock = pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) == 0 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    int failed = pthread_mutex_init(&pool->lock, NULL) != 0;
    if (!failed && pthread_cond_init(&pool->work, &attributes) != 0) {
        pthread_mutex_destroy(&pool->lock);
        failed = 1;
    }
    if (!failed && pthread_cond_init(&pool->gone, NULL) != 0) {
        pthread_cond_destroy(&pool->work);
        pthread_mutex_destroy(&pool->lock);
        failed = 1;
    }
    pthread_condattr_destroy(&attributes);
    pool->ready = !failed;
    return failed ? -1 : 0;
}

/* Called with the lock held: the next job, or NULL when this thread should
 * end (the pool stops, enough threads idle, or idle too long). */
static offload_job *next_job(offload_pool *pool)
{
    struct timespec until;
    clock_gettime(pool->clock, &until);
    until.tv_sec += OFFLOAD_IDLE_SECONDS;
    while (pool->head == NULL) {
        if (pool->stopping || pool->idle >= OFFLOAD_MAX_IDLE)
            return NULL;
        pool->idle++;
        int rc = pthread_cond_timedwait(&pool->work, &pool->lock, &until);
        pool->idle--;
        if (rc == ETIMEDOUT && pool->head == NULL)
            return NULL;
    }
    offload_job *job = pool->head;
    pool->head = job->next;
    if (pool->head == NULL)
        pool->tail = NULL;
    pool->queued--;
    return job;
}

static void *pool_thread(void *arg)
{
    offload_pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    offload_job *job;
    while ((job = next_job(pool)) != NULL) {
        pthread_mutex_unlock(&pool->lock);
        job->run(job->arg); /* may free job */
        pthread_mutex_lock(&pool->lock);
    }
    pool->threads--;
    pthread_cond_broadcast(&pool->gone);
    pthread_mutex_unlock(&pool->lock); /* the last touch of the pool */
    return NULL;
}

bool offload_submit(offload_pool *pool, offload_job *job)
{
    if (!pool->ready)
        return false;
    bool queued = false;
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping)
        goto done;
    job->next = NULL;
    if (pool->tail != NULL)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    queued = true;
    if (pool->idle >= pool->queued) {
        pthread_cond_signal(&pool->work);
        goto done;
    }
    pthread_attr_t attributes;
    pthread_t thread;
    bool started = pthread_attr_init(&attributes) == 0 &&
                   pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED) == 0 &&
                   pthread_create(&thread, &attributes, pool_thread, pool) == 0;
    pthread_attr_destroy(&attributes);
    if (started) {
        pool->threads++;
    } else if (pool->threads > 0) {
        log_warn("msg=\"cannot start a request thread; the request waits for a busy one\" threads=%d",
                 pool->threads);
    } else {
        /* Nobody will ever take it: hand it back.  (With a live thread it
         * waits for that one instead: slower, never lost.) */
        pool->head = pool->tail = NULL;
        pool->queued = 0;
        queued = false;
    }
done:
    pthread_mutex_unlock(&pool->lock);
    return queued;
}

void offload_pool_stop(offload_pool *pool)
{
    if (!pool->ready)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    while (pool->threads > 0)
        pthread_cond_wait(&pool->gone, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    pthread_cond_destroy(&pool->gone);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    pool->ready = false;
}
