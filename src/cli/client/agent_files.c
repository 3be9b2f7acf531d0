#include "cli/client/agent_files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/strbuf.h"
#include "core/util.h"

int agent_self_path(char *out, size_t size, agnes_error *err)
{
    char resolved[AGNES_PATH_MAX];
    if (realpath("/proc/self/exe", resolved) == NULL)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot tell where this agnes binary is (/proc/self/exe)");
    return util_format(out, size, err, "%s", resolved);
}

/* path in single quotes for sh: ' becomes '\'' */
static void shell_quote(strbuf *out, const char *path)
{
    strbuf_append_char(out, '\'');
    for (const char *p = path; *p; p++) {
        if (*p == '\'')
            strbuf_append_str(out, "'\\''");
        else
            strbuf_append_char(out, *p);
    }
    strbuf_append_char(out, '\'');
}

/* `agnes <args>` by the recorded path, or by PATH once that file is gone
 * (reinstalled elsewhere): hooks must not break on either. */
static char *hook_command(const char *self, const char *args)
{
    strbuf command;
    strbuf_init(&command);
    strbuf_append_str(&command, "a=");
    shell_quote(&command, self);
    strbuf_appendf(&command, "; [ -x \"$a\" ] || a=agnes; \"$a\" %s", args);
    if (strbuf_failed(&command)) {
        strbuf_free(&command);
        return NULL;
    }
    return command.data;
}

/* An agnes hook written by any `agnes init` so far: "agnes pull --quiet"
 * (before absolute paths), or a command that runs <something>agnes with
 * that subcommand. */
static bool ours(const char *command, const char *subcommand)
{
    char plain[64];
    snprintf(plain, sizeof plain, "agnes %s", subcommand);
    if (strstr(command, plain) != NULL)
        return true;
    snprintf(plain, sizeof plain, "\"$a\" %s", subcommand);
    return strstr(command, "a=") == command && strstr(command, plain) != NULL;
}

/* Make our hook the only agnes hook of `event` running `subcommand`. */
static int set_hook(json_t *settings, const char *event, const char *subcommand, const char *command)
{
    json_t *hooks = json_object_get(settings, "hooks");
    if (!json_is_object(hooks))
        json_object_set_new(settings, "hooks", hooks = json_object());
    json_t *entries = json_object_get(hooks, event);
    if (!json_is_array(entries))
        json_object_set_new(hooks, event, entries = json_array());
    for (size_t i = json_array_size(entries); i-- > 0;) {
        json_t *list = json_object_get(json_array_get(entries, i), "hooks");
        for (size_t j = json_array_size(list); j-- > 0;) {
            const char *existing = json_string_value(json_object_get(json_array_get(list, j), "command"));
            if (existing != NULL && ours(existing, subcommand))
                json_array_remove(list, j);
        }
        if (json_is_array(list) && json_array_size(list) == 0)
            json_array_remove(entries, i); /* an entry that held only ours */
    }
    return json_array_append_new(entries, json_pack("{s:[{s:s, s:s}]}", "hooks", "type", "command", "command",
                                                    command));
}

/* Read DIR/name as a JSON object ({} when missing), or fail naming the file. */
static json_t *load_object(const char *path, agnes_error *err)
{
    json_error_t parse_error;
    json_t *value = util_file_exists(path) ? json_load_file(path, 0, &parse_error) : json_object();
    if (!json_is_object(value)) {
        json_decref(value);
        agnes_error_set(err, AGNES_ERR_INVALID, "%s is not a JSON object; fix or move it, then run `agnes init` again",
                        path);
        return NULL;
    }
    return value;
}

static int save_object(const char *path, const json_t *value, agnes_error *err)
{
    char *text = json_dumps(value, JSON_INDENT(2));
    strbuf file; /* with the trailing newline editors leave */
    strbuf_init(&file);
    strbuf_appendf(&file, "%s\n", text ? text : "");
    int rc = text != NULL && !strbuf_failed(&file) ? util_write_file_atomic(path, file.data, file.len, 0644, err)
                                                   : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    strbuf_free(&file);
    free(text);
    return rc;
}

int agent_write_settings(const char *dir, const char *self, agnes_error *err)
{
    char claude_dir[AGNES_PATH_MAX + 16], path[AGNES_PATH_MAX + 40];
    snprintf(claude_dir, sizeof claude_dir, "%s/.claude", dir);
    snprintf(path, sizeof path, "%s/settings.json", claude_dir);
    json_t *settings = load_object(path, err);
    if (settings == NULL)
        return err->code;
    char *start = hook_command(self, "pull --quiet --print-changes"), *end = hook_command(self, "push --quiet");
    int rc = start && end ? AGNES_OK : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (rc == AGNES_OK && (set_hook(settings, "SessionStart", "pull --quiet", start) != 0 ||
                           set_hook(settings, "SessionEnd", "push --quiet", end) != 0))
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (rc == AGNES_OK)
        rc = util_mkdir_p(claude_dir, 0755, err);
    if (rc == AGNES_OK)
        rc = save_object(path, settings, err);
    free(start);
    free(end);
    json_decref(settings);
    return rc;
}

int agent_write_mcp_json(const char *dir, const char *self, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/.mcp.json", dir);
    json_t *config = load_object(path, err);
    if (config == NULL)
        return err->code;
    json_t *servers = json_object_get(config, "mcpServers");
    if (!json_is_object(servers))
        json_object_set_new(config, "mcpServers", servers = json_object());
    /* The workspace is recorded too: the client may start the server from
     * another working directory. */
    json_t *server = json_pack("{s:s, s:s, s:[s, s, s]}", "type", "stdio", "command", self, "args", "mcp",
                               "--workspace", dir);
    int rc = server != NULL && json_object_set_new(servers, "agnes", server) == 0
                 ? save_object(path, config, err)
                 : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    json_decref(config);
    return rc;
}
