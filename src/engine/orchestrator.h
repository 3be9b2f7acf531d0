/*
 * orchestrator.h - stitch every source's extract into one catalog (SPEC §7).
 *
 * orchestrator_rebuild() scans ${DATA_DIR}/extracts/<source>/extract.duckdb
 * in name order, attaches each read-only into a fresh
 * analytics/server.duckdb.tmp, creates one view per _meta row
 * (CREATE VIEW "<t>" AS SELECT * FROM "<source>"."<t>"), then renames the
 * file over analytics/server.duckdb.  Readers that have the old file open
 * keep their inode and finish undisturbed.
 *
 * Invariants:
 *  - A source that breaks the contract at the file or _meta level is skipped
 *    whole, with its error in the report; a bad row skips only that table.
 *    One broken extract never blocks the others.
 *  - Extracts are checked in a child process (contract_check) before this
 *    process opens them; one that crashes or hangs the engine there is
 *    quarantined: renamed to extract.duckdb.quarantined (reason in
 *    extract.duckdb.quarantined.reason), reported with status
 *    "quarantined" in every rebuild until a new extract replaces it.
 *  - A view name belongs to the first source that claimed it (persisted in
 *    view_ownership); another source publishing it is a collision, reported,
 *    and its view is not created.  Names are released only when every source
 *    could be read and the owner no longer publishes the name.
 *  - Views reference the attached catalog by the source's name, so whoever
 *    queries server.duckdb must ATTACH each extract under that same name.
 */
#ifndef AGNES_ENGINE_ORCHESTRATOR_H
#define AGNES_ENGINE_ORCHESTRATOR_H

#include <jansson.h>

#include "core/error.h"
#include "core/paths.h"
#include "engine/contract.h"
#include "store/system_db.h"

/* Rebuild the catalog; *report (new reference) describes every source:
 * {sources: [{name, status: ok|partial|error, views: [...], errors: [...]}],
 *  collisions: [{view, owner, skipped_source}], views, elapsed_ms}.
 * Fails only when the catalog file itself cannot be written. */
int orchestrator_rebuild(const agnes_paths *paths, system_db *db, const contract_allowlists *allow, json_t **report,
                         agnes_error *err);

/* As orchestrator_rebuild, but only when some extract was added, removed or
 * rewritten since the last rebuild (or the catalog is missing); *report is
 * NULL when nothing needed doing.  The fingerprint lives in
 * analytics/server.duckdb.sources. */
int orchestrator_rebuild_if_changed(const agnes_paths *paths, system_db *db, const contract_allowlists *allow,
                                    json_t **report, agnes_error *err);

/* ${DATA_DIR}/extracts/<source>/extract.duckdb */
void orchestrator_extract_path(const agnes_paths *paths, const char *source, char *out, size_t out_size);

/* The source names (valid identifiers with an extract.duckdb), sorted;
 * a JSON array of strings (new reference). */
int orchestrator_list_sources(const agnes_paths *paths, json_t **sources, agnes_error *err);

/* The sources a catalog reader may ATTACH: those the last rebuild checked
 * and published whose extract is still exactly the file that was checked
 * (size, mtime, inode; analytics/server.duckdb.vetted).  A file renamed in
 * since then waits for the next rebuild - it was never checked, and
 * opening an unchecked extract in the server can crash it.  JSON array of
 * strings (new reference); empty before the first rebuild. */
int orchestrator_list_vetted_sources(const agnes_paths *paths, json_t **sources, agnes_error *err);

#endif
