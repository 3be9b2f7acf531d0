#include "core/credentials.h"

#include <stdlib.h>
#include <string.h>

/* Secrets do not linger in freed memory. */
static void free_secret(char *value)
{
    if (value != NULL) {
        explicit_bzero(value, strlen(value));
        free(value);
    }
}

int credentials_init(credentials *store, agnes_error *err)
{
    memset(store, 0, sizeof *store);
    if (pthread_mutex_init(&store->lock, NULL) != 0)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot create a mutex");
    return AGNES_OK;
}

int credentials_set(credentials *store, const char *name, const char *value, agnes_error *err)
{
    char *copy = strdup(value);
    if (copy == NULL)
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&store->lock);
    for (size_t i = 0; i < store->count; i++) {
        if (strcmp(store->names[i], name) == 0) {
            free_secret(store->values[i]);
            store->values[i] = copy;
            pthread_mutex_unlock(&store->lock);
            return AGNES_OK;
        }
    }
    char **names = realloc(store->names, (store->count + 1) * sizeof *names);
    if (names != NULL)
        store->names = names;
    char **values = names ? realloc(store->values, (store->count + 1) * sizeof *values) : NULL;
    if (values != NULL)
        store->values = values;
    char *name_copy = values ? strdup(name) : NULL;
    if (name_copy == NULL) {
        pthread_mutex_unlock(&store->lock);
        free_secret(copy);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    }
    store->names[store->count] = name_copy;
    store->values[store->count++] = copy;
    pthread_mutex_unlock(&store->lock);
    return AGNES_OK;
}

bool credentials_get(credentials *store, const char *name, char *out, size_t out_size)
{
    const char *found = NULL;
    bool fits = false;
    pthread_mutex_lock(&store->lock);
    for (size_t i = 0; i < store->count && found == NULL; i++)
        if (strcmp(store->names[i], name) == 0)
            found = store->values[i];
    if (found == NULL)
        found = getenv(name); /* read under the lock: nothing calls setenv once threads run */
    if (found != NULL && strlen(found) < out_size) {
        memcpy(out, found, strlen(found) + 1);
        fits = true;
    }
    pthread_mutex_unlock(&store->lock);
    if (!fits && out_size > 0)
        out[0] = '\0';
    return fits;
}

void credentials_free(credentials *store)
{
    for (size_t i = 0; i < store->count; i++) {
        free(store->names[i]);
        free_secret(store->values[i]);
    }
    free(store->names);
    free(store->values);
    pthread_mutex_destroy(&store->lock);
    memset(store, 0, sizeof *store);
}
