/*
 * auth_cache.h - who a session token belongs to, remembered between requests.
 *
 * Every signed-in request needs the user's row and admin flag, which are
 * two DuckDB queries (about 2 ms here) - more than the rest of a small
 * request.  Entries are stamped with system.duckdb's write generation and
 * are valid only while it is unchanged, so any write (a deactivation, a
 * new admin, a removed member) makes the next request read the database
 * again; there is no window in which a revoked user gets through.
 *
 * PATs are not cached: their revocation and expiry are checked per use.
 */
#ifndef AGNES_HTTP_AUTH_CACHE_H
#define AGNES_HTTP_AUTH_CACHE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define AUTH_CACHE_SLOTS 256

struct auth_identity;

typedef struct auth_cache_entry {
    bool used;
    unsigned generation;
    char user_id[64];
    char email[256];
    bool is_admin;
    int64_t session_generation;
} auth_cache_entry;

typedef struct auth_cache {
    pthread_mutex_t lock;
    auth_cache_entry entries[AUTH_CACHE_SLOTS]; /* direct-mapped by a hash of user_id */
} auth_cache;

int auth_cache_init(auth_cache *cache);
void auth_cache_free(auth_cache *cache);

/* Fill *out (user_id, email, is_admin, session_generation) when user_id
 * was stored at `generation`. */
bool auth_cache_get(auth_cache *cache, const char *user_id, unsigned generation, struct auth_identity *out);
void auth_cache_put(auth_cache *cache, unsigned generation, const struct auth_identity *identity);

#endif
