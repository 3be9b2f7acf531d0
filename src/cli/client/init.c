/*
 * `agnes init [DIR]` - make DIR an AI agent's data workspace:
 *
 *   CLAUDE.md              the instance and every table the analyst may read,
 *                          with its columns and how to query it, inside a
 *                          marked block; text outside the block is the
 *                          user's and is never touched
 *   .claude/settings.json  hooks: SessionStart runs `agnes pull --quiet
 *                          --print-changes`, SessionEnd `agnes push --quiet`,
 *                          by absolute path (agent_files.h); other settings
 *                          and hooks are kept, ours are replaced, not doubled
 *   .mcp.json              the "agnes" MCP server (`agnes mcp`) for Claude Code
 *
 * Running it again refreshes the block and adds nothing twice; `agnes pull`
 * refreshes the block too (claude_md.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client/client.h"
#include "cli/client/agent_files.h"
#include "cli/client/claude_md.h"
#include "cli/client/commands.h"
#include "cli/client/workspace.h"
#include "core/util.h"

#define BLOCK_BEGIN "<!-- agnes:begin (written by `agnes init`; edits outside this block are kept) -->"
#define BLOCK_END "<!-- agnes:end -->"

static void describe_table(const client *c, const json_t *table, strbuf *out)
{
    const char *id = json_string_value(json_object_get(table, "id"));
    const char *description = json_string_value(json_object_get(table, "description"));
    char path[300];
    json_t *detail = NULL;
    agnes_error err;
    long long rows = (long long)json_integer_value(json_object_get(table, "rows"));
    char count[48] = "row count unknown"; /* a remote table's rows are at the source */
    if (json_is_integer(json_object_get(table, "rows")))
        snprintf(count, sizeof count, "%lld row%s", rows, client_plural(rows));
    strbuf_appendf(out, "\n### `%s`\n\n%s%s%s, %s.\n\n", id, description ? description : "",
                   description ? " - " : "", count,
                   strcmp(json_string_value(json_object_get(table, "query_mode")), "remote") == 0
                       ? "remote (query it with `agnes query`, it is not downloaded)"
                       : "local (in `data/` and `agnes.duckdb` after `agnes pull`)");
    snprintf(path, sizeof path, "/api/catalog/tables/%s", id);
    if (client_call_json(c, "GET", path, NULL, &detail, &err) != AGNES_OK)
        return;
    strbuf_append_str(out, "| column | type |\n|---|---|\n");
    size_t i;
    json_t *column;
    json_array_foreach(json_object_get(detail, "columns"), i, column)
        strbuf_appendf(out, "| `%s` | %s |\n", json_string_value(json_object_get(column, "name")),
                       json_string_value(json_object_get(column, "type")));
    json_decref(detail);
}

static void compose_block(const client *c, const json_t *version, const json_t *tables, strbuf *out)
{
    strbuf_appendf(out,
                   "%s\n## Data from Agnes\n\n"
                   "This workspace mirrors the tables you may read on the Agnes server %s (version %s).\n\n"
                   "- `agnes pull` downloads what changed into `data/<table>.parquet` and refreshes `agnes.duckdb`, "
                   "which has one view per table (it runs at the start of every session).\n"
                   "- Query locally: `agnes query --local \"SELECT ...\"`, or open `agnes.duckdb` with DuckDB.\n"
                   "- Query the server (always current, includes remote tables): `agnes query \"SELECT ...\"`.\n"
                   "- `agnes catalog` lists the tables; `agnes catalog <table>` shows one with its columns.\n"
                   "- Put notes worth keeping in `.agnes/outbox/`; `agnes push` sends them (at session end).\n"
                   "- %s\n"
                   "- The `agnes` MCP server (`.mcp.json`) offers the same as tools: `list_tables`, "
                   "`describe_table`, `query` (a large result comes back as its first rows plus a handle; page it "
                   "with `fetch_result`), `sync_status`, `pull`.\n"
                   "- `.agnes/changes.md` says what changed on the server since the previous pull (tables, columns, "
                   "row counts, your access); it is shown at the start of each session.\n\n"
                   "## Tables (%zu)\n",
                   BLOCK_BEGIN, c->server, json_string_value(json_object_get(version, "version")),
                   CLIENT_SQL_DIALECT_NOTE, json_array_size(tables));
    size_t i;
    json_t *table;
    json_array_foreach(tables, i, table)
        describe_table(c, table, out);
    strbuf_appendf(out, "\n%s\n", BLOCK_END);
}

/* Replace the marked block of CLAUDE.md, or append one (unless
 * must_exist: then a file without the block is left alone). */
static int write_claude_md(const char *dir, const strbuf *block, bool must_exist, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 16], *old = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/CLAUDE.md", dir);
    if (util_file_exists(path) && util_read_file(path, 4 << 20, &old, &len, err))
        return err->code;
    strbuf text;
    strbuf_init(&text);
    char *begin = old ? strstr(old, "<!-- agnes:begin") : NULL;
    char *end = begin ? strstr(begin, BLOCK_END) : NULL;
    if (begin != NULL && end != NULL) {
        end += strlen(BLOCK_END);
        if (*end == '\n')
            end++;
        strbuf_append(&text, old, (size_t)(begin - old));
        strbuf_append(&text, block->data, block->len);
        strbuf_append_str(&text, end);
    } else if (must_exist) {
        free(old);
        strbuf_free(&text);
        return AGNES_OK;
    } else {
        if (old != NULL && len > 0) {
            strbuf_append(&text, old, len);
            strbuf_append_str(&text, old[len - 1] == '\n' ? "\n" : "\n\n");
        }
        strbuf_append(&text, block->data, block->len);
    }
    bool same = old != NULL && !strbuf_failed(&text) && text.len == len && memcmp(text.data, old, len) == 0;
    int rc = strbuf_failed(&text) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
             : same                ? AGNES_OK /* a pull that changed nothing leaves the file as it was */
                                   : util_write_file_atomic(path, text.data, text.len, 0644, err);
    strbuf_free(&text);
    free(old);
    return rc;
}

int claude_md_refresh(const client *c, const char *dir, bool must_exist, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/CLAUDE.md", dir);
    if (must_exist && !util_file_exists(path))
        return AGNES_OK;
    json_t *version = NULL, *catalog = NULL;
    strbuf block;
    strbuf_init(&block);
    int rc = client_call_json(c, "GET", "/api/version", NULL, &version, err);
    if (rc == AGNES_OK)
        rc = client_call_json(c, "GET", "/api/catalog/tables", NULL, &catalog, err);
    if (rc == AGNES_OK) {
        compose_block(c, version, json_object_get(catalog, "tables"), &block);
        rc = strbuf_failed(&block) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                   : write_claude_md(dir, &block, must_exist, err);
    }
    strbuf_free(&block);
    json_decref(version);
    json_decref(catalog);
    return rc;
}

/* True when every local table of the catalog is already in the workspace
 * (its state lists it and the file is there): no pull is needed now. */
static bool data_already_here(const workspace *ws, const json_t *tables)
{
    size_t i, local = 0;
    json_t *table;
    json_array_foreach(tables, i, table) {
        const char *id = json_string_value(json_object_get(table, "id"));
        const char *mode = json_string_value(json_object_get(table, "query_mode"));
        char path[AGNES_PATH_MAX + 200];
        if (id == NULL || (mode != NULL && strcmp(mode, "remote") == 0))
            continue;
        local++;
        workspace_table_path(ws, id, path, sizeof path);
        if (json_object_get(json_object_get(ws->state, "tables"), id) == NULL || !util_file_exists(path))
            return false;
    }
    return local > 0;
}

int command_init(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: agnes init [DIR]\n"
                        "  Write DIR/CLAUDE.md (the tables you may read, with columns), DIR/.claude/settings.json\n"
                        "  (hooks: pull and show what changed at session start, push at session end) and\n"
                        "  DIR/.mcp.json (the `agnes mcp` server for Claude Code). Safe to run again.\n");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
    }
    client c;
    workspace ws = {0};
    agnes_error err;
    json_t *version = NULL, *catalog = NULL;
    strbuf block;
    strbuf_init(&block);
    int rc = client_load(&c, NULL, &err);
    if (rc == AGNES_OK)
        rc = client_require_login(&c, &err);
    if (rc == AGNES_OK)
        rc = workspace_open(&ws, argc == 2 ? argv[1] : NULL, &err);
    if (rc == AGNES_OK)
        rc = client_call_json(&c, "GET", "/api/version", NULL, &version, &err);
    if (rc == AGNES_OK)
        rc = client_call_json(&c, "GET", "/api/catalog/tables", NULL, &catalog, &err);
    if (rc == AGNES_OK) {
        compose_block(&c, version, json_object_get(catalog, "tables"), &block);
        rc = write_claude_md(ws.dir, &block, false, &err);
    }
    char self[AGNES_PATH_MAX];
    if (rc == AGNES_OK)
        rc = agent_self_path(self, sizeof self, &err);
    if (rc == AGNES_OK)
        rc = agent_write_settings(ws.dir, self, &err);
    if (rc == AGNES_OK)
        rc = agent_write_mcp_json(ws.dir, self, &err);
    if (rc == AGNES_OK) {
        size_t count = json_array_size(json_object_get(catalog, "tables"));
        printf("Workspace %s: CLAUDE.md lists %zu table%s; .claude/settings.json pulls (and shows what changed) at "
               "session start and pushes at session end; .mcp.json gives the agent the Agnes MCP tools "
               "(`agnes mcp`). %s\n",
               ws.dir, count, count == 1 ? "" : "s",
               data_already_here(&ws, json_object_get(catalog, "tables"))
                   ? "The data is already here (`agnes pull` refreshes it)."
               : count == 0 ? "No tables yet: ask an admin for access, then run `agnes pull`."
                            : "Run `agnes pull` now for the data.");
    }
    strbuf_free(&block);
    json_decref(version);
    json_decref(catalog);
    workspace_close(&ws);
    return rc == AGNES_OK ? 0 : client_fail("init", &err);
}
