/*
 * claude_md.h - the marked agnes block of a workspace's CLAUDE.md.
 *
 * `agnes init` writes it; `agnes pull` refreshes it so an agent never reads
 * a table list or columns the server no longer has.  Only the text between
 * the markers is ever rewritten; a CLAUDE.md without the block is left
 * alone by the refresh (the user did not run `agnes init` there).
 */
#ifndef AGNES_CLI_CLIENT_CLAUDE_MD_H
#define AGNES_CLI_CLIENT_CLAUDE_MD_H

#include <stdbool.h>

#include "cli/client/client.h"
#include "core/error.h"

/* Recompose the block from the server (GET /api/version, the catalog and
 * each table's columns) and write it into dir/CLAUDE.md.  must_exist: do
 * nothing (AGNES_OK) when the file has no agnes block.  The file is
 * rewritten (atomically) only when its text changes. */
int claude_md_refresh(const client *c, const char *dir, bool must_exist, agnes_error *err);

#endif
