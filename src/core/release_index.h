/*
 * release_index.h - is the running version deprecated? (SPEC §12)
 *
 * AGNES_RELEASE_INDEX names a JSON document, by file path or http(s) URL:
 *   {"stable": "2026.11.4",
 *    "deprecated": [{"version": "2026.11.1", "reason": "...", "until": "..."}]}
 * It is read at start and then daily.  Nothing about it may stop the server:
 * an unreachable or malformed index becomes a health warning.
 */
#ifndef AGNES_CORE_RELEASE_INDEX_H
#define AGNES_CORE_RELEASE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct release_status {
    bool configured;   /* an index is named at all */
    bool ok;           /* it was read and understood */
    bool deprecated;   /* the running version is listed */
    char stable[64];
    char reason[512];
    char until[64];
    char problem[768]; /* why it could not be read, when !ok */
    int64_t checked_at;
} release_status;

/* Read `source` and fill `status` for `running_version`.  Never fails: every
 * problem is described in status->problem. */
void release_index_check(const char *source, const char *running_version, release_status *status);

/* Interpret an index document already in memory (for tests and the above). */
void release_index_evaluate(const char *json_text, const char *source, const char *running_version,
                            release_status *status);

/* The health warning for a status, or "" when there is nothing to say. */
void release_index_warning(const release_status *status, const char *running_version, char *out, size_t out_size);

#endif
