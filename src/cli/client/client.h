/*
 * client.h - what every analyst command shares: where the server is, the
 * token, and HTTP calls with libcurl (SPEC §10).
 *
 *   ${XDG_CONFIG_HOME:-~/.config}/agnes/config.yaml        server: URL
 *   ${XDG_CONFIG_HOME:-~/.config}/agnes/credentials.json   {server, token, email}, 0600
 *
 * AGNES_SERVER and AGNES_TOKEN override both, for agents and CI.  Errors
 * come back as agnes_error with one of the codes below so every command
 * maps them to the same exit codes (client_exit_code).
 */
#ifndef AGNES_CLI_CLIENT_H
#define AGNES_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "core/error.h"
#include "core/paths.h"
#include "core/strbuf.h"

/* Exit codes of the client commands (documented in `agnes help`). */
enum client_exit {
    CLIENT_EXIT_OK = 0,
    CLIENT_EXIT_FAILED = 1,
    CLIENT_EXIT_USAGE = 2,
    CLIENT_EXIT_AUTH = 3,    /* not logged in, token rejected or not allowed */
    CLIENT_EXIT_NETWORK = 4, /* the server could not be reached */
    CLIENT_EXIT_SERVER = 5,  /* the server answered with an error */
    CLIENT_EXIT_PARTIAL = 6, /* some tables failed, the rest succeeded */
};

/* Error codes of the client layer next to core/error.h's, so each failure
 * maps to the exit code docs/cli.md gives it (client_exit_code):
 *   AGNES_ERR_INVALID    2  the command line was wrong (usage)
 *   AGNES_ERR_FORBIDDEN  3  not logged in, token refused, not allowed
 *   AGNES_ERR_NETWORK    4  the server could not be reached - nothing else
 *   CLIENT_ERR_SERVER    5  the server failed (5xx, or an answer that is not Agnes's)
 *   CLIENT_ERR_REFUSED   1  the server refused what was asked with a sentence (4xx: a
 *                          query's error, a missing table, a bad value)
 *   AGNES_ERR_BUSY       6  partial (pull: some tables failed)
 *   anything else        1  failed (a local query error, a bad file, a download refused by its hash) */
#define CLIENT_ERR_SERVER (-100)
#define CLIENT_ERR_REFUSED (-101)

/* What analysts and their agents must know about the SQL they write (the
 * workspace CLAUDE.md and `agnes catalog` say it): it is DuckDB's, on the
 * server and locally - with DuckDB's own pitfalls, not PostgreSQL's. */
#define CLIENT_SQL_DIALECT "duckdb"
#define CLIENT_SQL_DIALECT_NOTE                                                                                    \
    "SQL dialect: DuckDB's (https://duckdb.org/docs/sql/introduction), on the server and locally - not "            \
    "PostgreSQL's. Pitfall: NUMERIC or DECIMAL without a precision is DECIMAL(18,3), so "                          \
    "round(avg(x)::numeric, 6) keeps only 3 decimals; cast to DOUBLE or DECIMAL(38,10) instead."

typedef struct client {
    char config_dir[AGNES_PATH_MAX];
    char server[1024];    /* no trailing slash */
    char token[4096];
    char email[320];
    const char *server_from; /* "AGNES_SERVER", "--server", "config.yaml", "credentials" */
    bool quiet;
} client;

/* Resolve the config dir, the server (flag > AGNES_SERVER > config.yaml >
 * credentials) and the token (AGNES_TOKEN > credentials for that server).
 * server_flag may be NULL.  Never fails for a missing login: commands that
 * need one call client_require_login. */
int client_load(client *c, const char *server_flag, agnes_error *err);

/* AGNES_ERR_INVALID naming `agnes login` when there is no server or token. */
int client_require_login(const client *c, agnes_error *err);

/* Save server and token (credentials.json 0600, config.yaml); logout removes the token. */
int client_save_login(const client *c, agnes_error *err);
int client_forget_login(const client *c, agnes_error *err);

typedef struct client_response {
    long status;
    strbuf body;
} client_response;

/* One request to the server.  json_body may be NULL; *out's body is
 * the response's (caller frees with client_response_free).  Transport
 * failures are AGNES_ERR_NETWORK; HTTP errors are not errors here. */
int client_call(const client *c, const char *method, const char *path, const char *json_body, client_response *out,
                agnes_error *err);
void client_response_free(client_response *r);

/* client_call + parse: 2xx -> *json (new reference); 401/403 ->
 * AGNES_ERR_FORBIDDEN (a refused login says so, not "token"); other 4xx
 * with a detail -> CLIENT_ERR_REFUSED; the rest -> CLIENT_ERR_SERVER, each
 * with the server's detail sentence in err. */
int client_call_json(const client *c, const char *method, const char *path, const char *json_body, json_t **json,
                     agnes_error *err);

/* True when a failed transfer never reached the server (name not resolved,
 * connection refused, no connection within the connect timeout): the one
 * case that is exit 4.  curl is the easy handle, code its CURLcode. */
bool client_unreachable(void *curl, int code);

/* The exit code for an error from the functions above. */
int client_exit_code(int rc);

/* Print "agnes <command>: <message>" to stderr and return the exit code. */
int client_fail(const char *command, const agnes_error *err);

/* The auth and User-Agent headers every request sends, appended to extra. */
struct curl_slist;
struct curl_slist *client_headers(const client *c, struct curl_slist *extra);

/* An easy handle for c->server + path with what every request shares: the
 * headers (*headers, freed by the caller with curl_slist_free_all), a
 * connect timeout, no signals.  NULL when libcurl cannot start one. */
void *client_easy_open(const client *c, const char *path, struct curl_slist **headers);

/* "s" unless n is 1: "1 table", "2 tables" in what people read. */
static inline const char *client_plural(long long n)
{
    return n == 1 ? "" : "s";
}

/* object[key] as a string, "" when absent or not a string: for printing. */
const char *client_text(const json_t *object, const char *key);

#endif
