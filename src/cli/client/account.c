/*
 * `agnes login`, `agnes logout`, `agnes status` - who the CLI is, and where.
 *
 * login takes a personal access token (--token, verified with /api/me) or
 * an email and password: the password is read without echo on a terminal,
 * or as one line from stdin otherwise (agents: `printf %s "$PW" | agnes
 * login --email me@x --server URL`).  The password is never stored; a
 * personal access token "agnes CLI on <host>" (180 days) is, in
 * credentials.json (0600), so session hooks keep working for months.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/client/client.h"
#include "cli/client/commands.h"
#include "cli/client/workspace.h"
#include "core/util.h"

static void read_line(const char *prompt, bool echo, char *out, size_t size)
{
    struct termios saved, quiet;
    bool tty = isatty(STDIN_FILENO);
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
    }
    if (tty && !echo && tcgetattr(STDIN_FILENO, &saved) == 0) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    } else {
        echo = true;
    }
    if (fgets(out, (int)size, stdin) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    if (!echo) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
}

/* The token is good: remember who it belongs to. */
static int verify(client *c, agnes_error *err)
{
    json_t *me = NULL;
    int rc = client_call_json(c, "GET", "/api/me", NULL, &me, err);
    if (rc == AGNES_OK)
        snprintf(c->email, sizeof c->email, "%s", json_string_value(json_object_get(me, "email")));
    json_decref(me);
    return rc;
}

static int password_login(client *c, const char *email_flag, agnes_error *err)
{
    char email[320], password[1024];
    if (email_flag != NULL)
        snprintf(email, sizeof email, "%s", email_flag);
    else
        read_line("Email: ", true, email, sizeof email);
    read_line("Password: ", false, password, sizeof password);
    if (email[0] == '\0' || password[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_INVALID,
                               "an email and a password are needed (or log in with --token <personal access token>)");
    json_t *body = json_pack("{s:s, s:s}", "email", email, "password", password), *answer = NULL;
    char *text = json_dumps(body, JSON_COMPACT);
    explicit_bzero(password, sizeof password);
    int rc = client_call_json(c, "POST", "/auth/token", text, &answer, err);
    if (text != NULL)
        explicit_bzero(text, strlen(text));
    free(text);
    json_decref(body);
    if (rc == AGNES_OK)
        snprintf(c->token, sizeof c->token, "%s", json_string_value(json_object_get(answer, "access_token")));
    json_decref(answer);
    return rc;
}

/* Trade the session (hours) for a personal access token (months), so the
 * pull/push hooks of an agent keep working; the session token stays when
 * the server will not issue one. */
static void keep_a_personal_token(client *c)
{
    char host[128] = "this machine", body[300];
    agnes_error err;
    json_t *answer = NULL;
    gethostname(host, sizeof host - 1);
    snprintf(body, sizeof body, "{\"name\": \"agnes CLI on %.100s\", \"expires_in_days\": 180}", host);
    if (client_call_json(c, "POST", "/auth/tokens", body, &answer, &err) == AGNES_OK &&
        json_string_value(json_object_get(answer, "token")) != NULL)
        snprintf(c->token, sizeof c->token, "%s", json_string_value(json_object_get(answer, "token")));
    json_decref(answer);
}

int command_login(int argc, char **argv)
{
    const char *server = NULL, *token = NULL, *email = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            server = argv[++i];
        else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc)
            token = argv[++i];
        else if (strcmp(argv[i], "--email") == 0 && i + 1 < argc)
            email = argv[++i];
        else {
            fprintf(stderr, "usage: agnes login [--server URL] [--token PAT | --email EMAIL]\n"
                            "  Log in and remember the server and token in ~/.config/agnes/ (0600).\n"
                            "  Without --token the password is asked for (read from stdin when it is not a terminal).\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
        }
    }
    client c;
    agnes_error err;
    if (client_load(&c, server, &err) != AGNES_OK)
        return client_fail("login", &err);
    if (c.server[0] == '\0') {
        err.code = AGNES_ERR_INVALID;
        snprintf(err.message, sizeof err.message, "which server? run `agnes login --server https://agnes.example.com`");
        return client_fail("login", &err);
    }
    c.token[0] = '\0';
    if (token != NULL)
        snprintf(c.token, sizeof c.token, "%s", token);
    int rc = token != NULL ? AGNES_OK : password_login(&c, email, &err);
    if (rc == AGNES_OK && token == NULL)
        keep_a_personal_token(&c);
    if (rc == AGNES_OK)
        rc = verify(&c, &err);
    if (rc == AGNES_OK)
        rc = client_save_login(&c, &err);
    if (rc != AGNES_OK)
        return client_fail("login", &err);
    printf("Logged in to %s as %s.\n", c.server, c.email);
    return 0;
}

int command_logout(int argc, char **argv)
{
    client c;
    agnes_error err;
    if (argc > 1) {
        fprintf(stderr, "usage: agnes logout\n  Forget the stored token (the server stays configured).\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
    }
    if (client_load(&c, NULL, &err) != AGNES_OK || client_forget_login(&c, &err) != AGNES_OK)
        return client_fail("logout", &err);
    printf("Logged out%s%s.\n", c.server[0] ? " of " : "", c.server);
    return 0;
}

int command_status(int argc, char **argv)
{
    bool json_output = false;
    const char *workspace_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json_output = true;
        else if (strcmp(argv[i], "--workspace") == 0 && i + 1 < argc)
            workspace_dir = argv[++i];
        else {
            fprintf(stderr, "usage: agnes status [--json] [--workspace DIR]\n"
                            "  The server, who you are there, its version, and this workspace's last pull.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : CLIENT_EXIT_USAGE;
        }
    }
    client c;
    workspace ws = {0};
    agnes_error err;
    json_t *version = NULL, *me = NULL;
    int rc = client_load(&c, NULL, &err);
    if (rc == AGNES_OK)
        rc = client_require_login(&c, &err);
    if (rc == AGNES_OK)
        rc = client_call_json(&c, "GET", "/api/version", NULL, &version, &err);
    if (rc == AGNES_OK)
        rc = client_call_json(&c, "GET", "/api/me", NULL, &me, &err);
    if (rc == AGNES_OK)
        rc = workspace_open(&ws, workspace_dir, &err);
    if (rc != AGNES_OK) {
        json_decref(version);
        json_decref(me);
        return client_fail("status", &err);
    }
    json_t *tables = json_object_get(ws.state, "tables");
    json_t *status = json_pack("{s:s, s:s, s:O, s:O, s:b, s:s, s:O, s:I}", "server", c.server, "server_from",
                               c.server_from, "user", json_object_get(me, "email"), "version",
                               json_object_get(version, "version"), "is_admin",
                               json_is_true(json_object_get(me, "is_admin")), "workspace", ws.dir, "last_pull",
                               json_object_get(ws.state, "last_pull") ? json_object_get(ws.state, "last_pull")
                                                                      : json_null(),
                               "tables", (json_int_t)json_object_size(tables));
    if (json_output) {
        json_dumpf(status, stdout, JSON_INDENT(2));
        printf("\n");
    } else {
        printf("server:    %s (from %s)\nuser:      %s%s\nversion:   %s\nworkspace: %s\nlast pull: %s (%zu table%s)\n",
               c.server, c.server_from, json_string_value(json_object_get(me, "email")),
               json_is_true(json_object_get(me, "is_admin")) ? " (admin)" : "",
               json_string_value(json_object_get(version, "version")), ws.dir,
               (json_object_get(ws.state, "last_pull") ? client_text(ws.state, "last_pull") : "never"),
               json_object_size(tables), client_plural((long long)json_object_size(tables)));
    }
    json_decref(status);
    json_decref(version);
    json_decref(me);
    workspace_close(&ws);
    return 0;
}
