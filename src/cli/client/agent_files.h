/*
 * agent_files.h - the files `agnes init` writes for an AI agent besides
 * CLAUDE.md (SPEC §10, §17):
 *
 *   .claude/settings.json  SessionStart: pull and print .agnes/changes.md;
 *                          SessionEnd: push.  The hook records the absolute
 *                          path of this agnes, and falls back to the one on
 *                          PATH if that file is gone, so hooks work when
 *                          `agnes` is not on PATH (a ~/.local install, a
 *                          checkout's build/agnes).
 *   .mcp.json              Claude Code's project-scoped MCP servers: "agnes"
 *                          runs `<abs path> mcp --workspace <dir>`.
 *
 * Both files keep whatever else they hold (other servers, hooks, keys);
 * hooks of ours from any earlier `agnes init` are replaced, never doubled.
 */
#ifndef AGNES_CLI_CLIENT_AGENT_FILES_H
#define AGNES_CLI_CLIENT_AGENT_FILES_H

#include <stddef.h>

#include "core/error.h"

/* The absolute, resolved path of the running agnes binary. */
int agent_self_path(char *out, size_t size, agnes_error *err);

/* Write or update DIR/.claude/settings.json with our two hooks. */
int agent_write_settings(const char *dir, const char *self, agnes_error *err);

/* Write or update DIR/.mcp.json with the "agnes" server. */
int agent_write_mcp_json(const char *dir, const char *self, agnes_error *err);

#endif
