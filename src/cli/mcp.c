/*
 * `agnes mcp [--workspace DIR]` - the MCP server for AI agents on stdio
 * (SPEC §17): Claude Code, Claude Desktop, Cursor and the like start it
 * (`agnes init` writes the .mcp.json that does) and talk JSON-RPC over its
 * stdin and stdout, one message per line (MCP specification, stdio
 * transport).  It acts as the analyst's CLI login - the same server, token
 * and grants as `agnes query` - and on the pulled workspace for local
 * queries.  The protocol and the tool catalog are core/mcp.h; the tools
 * cli/mcp_tools.h.
 *
 * stdout carries only MCP messages; anything for a person goes to stderr.
 * Not being logged in does not stop the server: the client still sees the
 * tools, and each call answers with the sentence saying to run
 * `agnes login`.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client/commands.h"
#include "cli/commands.h"
#include "cli/mcp_tools.h"
#include "core/strbuf.h"
#include "core/version.h"

/* Write one message and its newline; false when the client has gone. */
static bool send_line(const char *text, size_t len)
{
    return fwrite(text, 1, len, stdout) == len && fputc('\n', stdout) != EOF && fflush(stdout) == 0;
}

static bool send_error(int code, const char *message)
{
    json_t *response = mcp_error_response(NULL, code, message);
    char *text = response ? json_dumps(response, JSON_COMPACT) : NULL;
    json_decref(response);
    bool ok = text == NULL || send_line(text, strlen(text));
    free(text);
    return ok;
}

/* Answer one line: a message or a batch.  False when stdout is gone. */
static bool answer(const mcp_host *host, mcp_session *session, const char *line, size_t len)
{
    json_error_t parse_error;
    json_t *message = json_loadb(line, len, 0, &parse_error);
    if (!json_is_object(message) && !json_is_array(message)) {
        json_decref(message);
        return send_error(MCP_PARSE_ERROR, "Parse error: each line must be one JSON-RPC message");
    }
    bool batch = json_is_array(message), failed = false, ok = true;
    size_t count = batch ? json_array_size(message) : 1, answered = 0;
    strbuf out;
    strbuf_init(&out);
    for (size_t i = 0; i < count && !failed; i++) {
        char *response = mcp_handle_message(host, session, batch ? json_array_get(message, i) : message, &failed);
        if (response != NULL) {
            strbuf_append_str(&out, answered++ ? "," : batch ? "[" : "");
            strbuf_append_str(&out, response);
        }
        free(response);
    }
    if (batch && answered > 0)
        strbuf_append_char(&out, ']');
    json_decref(message);
    if (failed || strbuf_failed(&out))
        ok = send_error(MCP_INTERNAL_ERROR, "out of memory");
    else if (answered > 0)
        ok = send_line(out.data, out.len);
    strbuf_free(&out);
    return ok;
}

int command_mcp(int argc, char **argv)
{
    const char *workspace_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--workspace") == 0 && i + 1 < argc) {
            workspace_dir = argv[++i];
        } else {
            fprintf(stderr, "usage: agnes mcp [--workspace DIR]\n"
                            "  An MCP server on stdin/stdout for AI agents (Claude Code, Cursor, ...), with your\n"
                            "  `agnes login` and the workspace DIR (default: AGNES_WORKSPACE or the current directory).\n"
                            "  Tools: list_tables, describe_table, query (server, or local: true on DIR/agnes.duckdb),\n"
                            "  fetch_result, sync_status, pull; admins also sync_trigger and registry.\n"
                            "  `agnes init` writes the .mcp.json that starts it.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : EXIT_USAGE;
        }
    }
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up ends the loop through a failed write */
    agnes_version version;
    version_baked(&version);
    mcp_stdio state;
    mcp_host host;
    mcp_stdio_init(&state, workspace_dir, &host);
    host.server_version = version.version;
    if (state.logged_in)
        fprintf(stderr, "agnes mcp: serving %s as %s over stdio\n", state.login.server,
                state.login.email[0] ? state.login.email : "the stored token");
    else
        fprintf(stderr, "agnes mcp: %s (tools will say so until then)\n", state.login_error.message);
    mcp_session session = {{0}};
    char *line = NULL;
    size_t capacity = 0;
    ssize_t len;
    while ((len = getline(&line, &capacity, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (!answer(&host, &session, line, (size_t)len))
            break;
    }
    free(line);
    return 0;
}
