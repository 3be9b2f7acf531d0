/*
 * credentials.h - secrets that arrive while the server runs.
 *
 * POST /api/admin/configure saves a source's connection string to
 * .env_overlay; the running server must use it at once, from sync threads
 * and from DuckDB's query threads (the remote table functions).  setenv()
 * is not safe once threads exist, so such values live here, under a lock,
 * and every reader asks credentials_get(), which falls back to the process
 * environment (where .env_overlay was exported at start).
 */
#ifndef AGNES_CORE_CREDENTIALS_H
#define AGNES_CORE_CREDENTIALS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"

typedef struct credentials {
    pthread_mutex_t lock;
    char **names;
    char **values;
    size_t count;
} credentials;

int credentials_init(credentials *store, agnes_error *err);

/* Set (or replace) name's value for everything running in this process. */
int credentials_set(credentials *store, const char *name, const char *value, agnes_error *err);

/* Copy name's value into out: the stored one, else the environment's.
 * False when neither has it, or it does not fit (out is then ""). */
bool credentials_get(credentials *store, const char *name, char *out, size_t out_size);

void credentials_free(credentials *store);

#endif
