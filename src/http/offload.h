/*
 * offload.h - the threads that run blocking handlers (queries, rebuilds,
 * uploads) off libmicrohttpd's event loop.
 *
 * Why a pool and not a thread per request: on a small virtual machine a
 * thread's creation and teardown (clone3, then madvise of its stack with a
 * TLB shoot-down on every core) was a sixth of the server's CPU per small
 * query - more than the HTTP request itself.  Why not a fixed pool: a
 * blocking handler may run for minutes (an upload, a query near its
 * deadline), and a fixed number of threads would make a fast query wait
 * behind slow ones.  So a thread is reused when one is idle and started
 * when none is, exactly as many run at once as before; idle threads end
 * after OFFLOAD_IDLE_SECONDS, and at most OFFLOAD_MAX_IDLE wait at once.
 *
 * Invariants:
 *  - A submitted job runs exactly once, on a pool thread, unless
 *    offload_submit() returned false (then it never runs and the caller
 *    still owns it).
 *  - `threads` counts every live pool thread (idle or running a job);
 *    `idle >= queued` after every submit, or a new thread was started.
 */
#ifndef AGNES_HTTP_OFFLOAD_H
#define AGNES_HTTP_OFFLOAD_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define OFFLOAD_IDLE_SECONDS 60
#define OFFLOAD_MAX_IDLE 16

typedef struct offload_job {
    void (*run)(void *arg); /* runs on a pool thread; owns arg from then on */
    void *arg;
    struct offload_job *next;
} offload_job;

typedef struct offload_pool {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or the pool stops */
    pthread_cond_t gone; /* a thread ended (offload_pool_stop waits on it) */
    offload_job *head, *tail;
    int queued;  /* jobs in the list */
    int idle;    /* threads waiting for a job */
    int threads; /* live threads */
    bool stopping;
    bool ready;
    clockid_t clock; /* of `work`'s timeouts: monotonic where the system allows */
} offload_pool;

/* 0, or -1 when the mutex or condition variables cannot be made. */
int offload_pool_init(offload_pool *pool);

/* Queue job (the caller keeps the memory alive until job->run is called;
 * run may free it).  False when no thread is idle and none can be started,
 * or the pool stops: the job will not run and the caller runs it itself. */
bool offload_submit(offload_pool *pool, offload_job *job);

/* End the idle threads and wait for them; the pool must have no job
 * running or queued (the server checks its in-flight count first).  Safe
 * on a pool never initialized. */
void offload_pool_stop(offload_pool *pool);

#endif
