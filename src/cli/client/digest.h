/*
 * digest.h - what changed on the server since the workspace's previous
 * pull, written to <workspace>/.agnes/changes.md for the analyst's agent
 * (SPEC §17; the SessionStart hook prints it, `agnes pull --print-changes`).
 *
 * A full pull records a snapshot in state.json under "digest":
 *
 *   {tables: {id: {rows, updated, hash, query_mode, columns: [[name, type], ..] | null}},
 *    granted: [table ids granted to the user's groups] | null, is_admin, pulled_at}
 *
 * and compares it with the previous one: tables added or removed, access
 * gained or lost (a table that appears because a grant appeared, told
 * apart from a table that is new on the server), columns added, removed or
 * retyped, row counts.  To keep "a pull with nothing changed transfers only
 * the manifest" (SPEC §16), columns are asked of the catalog only for
 * tables whose manifest entry changed, and grants only when the set of
 * visible tables changed.
 */
#ifndef AGNES_CLI_CLIENT_DIGEST_H
#define AGNES_CLI_CLIENT_DIGEST_H

#include <stdbool.h>
#include <jansson.h>

#include "cli/client/client.h"
#include "cli/client/workspace.h"

/* Compare the manifest (GET /api/sync/manifest) with ws->state's previous
 * snapshot, write .agnes/changes.md atomically, and store the new snapshot
 * in ws->state (the caller saves the state).  now is ISO-8601 UTC.  A
 * failed catalog or access request leaves that part unknown and is said in
 * the file; only a file that cannot be written is an error (AGNES_ERR_IO). */
int digest_update(const client *c, workspace *ws, const json_t *manifest, const char *now, agnes_error *err);

/* Print .agnes/changes.md of the workspace (workspace_open's dir_flag
 * rules) to stdout, for the SessionStart hook, with a note when the pull
 * that should have refreshed it failed (pull_failed).  Nothing is printed
 * when the workspace has no digest yet. */
void digest_print(const char *workspace_dir, bool pull_failed);

#endif
