#include "http/auth_cache.h"

#include <stdio.h>
#include <string.h>

#include "http/auth.h"

static size_t slot_of(const char *user_id)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)user_id; *p; p++)
        hash = (hash ^ *p) * 16777619u;
    return hash % AUTH_CACHE_SLOTS;
}

int auth_cache_init(auth_cache *cache)
{
    memset(cache, 0, sizeof *cache);
    return pthread_mutex_init(&cache->lock, NULL) == 0 ? 0 : -1;
}

void auth_cache_free(auth_cache *cache)
{
    pthread_mutex_destroy(&cache->lock);
}

bool auth_cache_get(auth_cache *cache, const char *user_id, unsigned generation, auth_identity *out)
{
    auth_cache_entry *entry = &cache->entries[slot_of(user_id)];
    bool hit = false;
    pthread_mutex_lock(&cache->lock);
    if (entry->used && entry->generation == generation && strcmp(entry->user_id, user_id) == 0) {
        snprintf(out->user_id, sizeof out->user_id, "%s", entry->user_id);
        snprintf(out->email, sizeof out->email, "%s", entry->email);
        out->is_admin = entry->is_admin;
        out->session_generation = entry->session_generation;
        hit = true;
    }
    pthread_mutex_unlock(&cache->lock);
    return hit;
}

void auth_cache_put(auth_cache *cache, unsigned generation, const auth_identity *identity)
{
    auth_cache_entry *entry = &cache->entries[slot_of(identity->user_id)];
    pthread_mutex_lock(&cache->lock);
    entry->used = true;
    entry->generation = generation;
    snprintf(entry->user_id, sizeof entry->user_id, "%s", identity->user_id);
    snprintf(entry->email, sizeof entry->email, "%s", identity->email);
    entry->is_admin = identity->is_admin;
    entry->session_generation = identity->session_generation;
    pthread_mutex_unlock(&cache->lock);
}
