#include "cli/client/client.h"

#include "core/audience.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "core/yaml_json.h"

static int config_dir(char *out, size_t size, agnes_error *err)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        return util_format(out, size, err, "%s/agnes", xdg);
    if (home == NULL || home[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_CONFIG, "neither XDG_CONFIG_HOME nor HOME is set; set one of them");
    return util_format(out, size, err, "%s/.config/agnes", home);
}

static json_t *load_json_file(const char *dir, const char *name, bool yaml)
{
    char path[AGNES_PATH_MAX + 64], *text = NULL;
    size_t len = 0;
    agnes_error ignored;
    json_t *value = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!util_file_exists(path) || util_read_file(path, 1 << 20, &text, &len, &ignored) != AGNES_OK)
        return NULL;
    if (yaml)
        yaml_json_parse(text, len, path, &value, &ignored);
    else
        value = json_loadb(text, len, 0, NULL);
    free(text);
    return json_is_object(value) ? value : (json_decref(value), NULL);
}

static void copy_string(char *out, size_t size, const json_t *value)
{
    if (json_is_string(value))
        snprintf(out, size, "%s", json_string_value(value));
}

int client_load(client *c, const char *server_flag, agnes_error *err)
{
    memset(c, 0, sizeof *c);
    if (config_dir(c->config_dir, sizeof c->config_dir, err))
        return err->code;
    json_t *config = load_json_file(c->config_dir, "config.yaml", true);
    json_t *credentials = load_json_file(c->config_dir, "credentials.json", false);
    const char *env_server = getenv("AGNES_SERVER"), *env_token = getenv("AGNES_TOKEN");
    if (server_flag != NULL) {
        snprintf(c->server, sizeof c->server, "%s", server_flag), c->server_from = "--server";
    } else if (env_server != NULL && env_server[0] != '\0') {
        snprintf(c->server, sizeof c->server, "%s", env_server), c->server_from = "AGNES_SERVER";
    } else if (json_is_string(json_object_get(config, "server"))) {
        copy_string(c->server, sizeof c->server, json_object_get(config, "server")), c->server_from = "config.yaml";
    } else {
        copy_string(c->server, sizeof c->server, json_object_get(credentials, "server"));
        c->server_from = "credentials";
    }
    size_t len = strlen(c->server);
    while (len > 0 && c->server[len - 1] == '/')
        c->server[--len] = '\0';
    /* A stored token belongs to the server it was issued by. */
    const char *stored_server = json_string_value(json_object_get(credentials, "server"));
    if (env_token != NULL && env_token[0] != '\0')
        snprintf(c->token, sizeof c->token, "%s", env_token);
    else if (stored_server != NULL && strcmp(stored_server, c->server) == 0)
        copy_string(c->token, sizeof c->token, json_object_get(credentials, "token"));
    copy_string(c->email, sizeof c->email, json_object_get(credentials, "email"));
    json_decref(config);
    json_decref(credentials);
    return AGNES_OK;
}

int client_require_login(const client *c, agnes_error *err)
{
    if (c->server[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "no server configured: run `agnes login --server https://agnes.example.com` "
                               "(or set AGNES_SERVER)");
    if (c->token[0] == '\0')
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "not logged in to %s: run `agnes login` (or set AGNES_TOKEN to a personal access "
                               "token)",
                               c->server);
    return AGNES_OK;
}

int client_save_login(const client *c, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 64];
    strbuf yaml;
    strbuf_init(&yaml);
    json_t *config = json_pack("{s:s}", "server", c->server);
    json_t *credentials = json_pack("{s:s, s:s, s:s}", "server", c->server, "token", c->token, "email", c->email);
    char *text = json_dumps(credentials, JSON_INDENT(2));
    int rc = util_mkdir_p(c->config_dir, 0700, err);
    if (rc == AGNES_OK)
        rc = yaml_json_emit(config, &yaml, err);
    if (rc == AGNES_OK && (rc = util_format(path, sizeof path, err, "%s/config.yaml", c->config_dir)) == AGNES_OK)
        rc = util_write_file_atomic(path, yaml.data, yaml.len, 0644, err);
    if (rc == AGNES_OK && (rc = util_format(path, sizeof path, err, "%s/credentials.json", c->config_dir)) == AGNES_OK)
        rc = text ? util_write_file_atomic(path, text, strlen(text), 0600, err)
                  : agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory");
    if (text != NULL)
        explicit_bzero(text, strlen(text));
    free(text);
    strbuf_free(&yaml);
    json_decref(config);
    json_decref(credentials);
    return rc;
}

int client_forget_login(const client *c, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 64];
    if (util_format(path, sizeof path, err, "%s/credentials.json", c->config_dir))
        return err->code;
    if (unlink(path) != 0 && util_file_exists(path))
        return agnes_error_set(err, AGNES_ERR_IO, "cannot remove %s", path);
    return AGNES_OK;
}

struct curl_slist *client_headers(const client *c, struct curl_slist *extra)
{
    char header[4200];
    if (c->token[0] != '\0') {
        snprintf(header, sizeof header, "Authorization: Bearer %s", c->token);
        extra = curl_slist_append(extra, header);
    }
    return curl_slist_append(extra, "User-Agent: agnes-cli");
}

void *client_easy_open(const client *c, const char *path, struct curl_slist **headers)
{
    char url[2048];
    CURL *curl = curl_easy_init();
    *headers = client_headers(c, NULL);
    if (curl == NULL)
        return NULL;
    snprintf(url, sizeof url, "%s%s", c->server, path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    return curl;
}

const char *client_text(const json_t *object, const char *key)
{
    const char *text = json_string_value(json_object_get(object, key));
    return text ? text : "";
}

static size_t collect(char *data, size_t size, size_t count, void *userdata)
{
    strbuf_append(userdata, data, size * count);
    return strbuf_failed(userdata) ? 0 : size * count;
}

int client_call(const client *c, const char *method, const char *path, const char *json_body, client_response *out,
                agnes_error *err)
{
    struct curl_slist *headers = NULL;
    memset(out, 0, sizeof *out);
    strbuf_init(&out->body);
    CURL *curl = client_easy_open(c, path, &headers);
    if (curl == NULL) {
        curl_slist_free_all(headers);
        return agnes_error_set(err, AGNES_ERR_NOMEM, "cannot start libcurl");
    }
    if (json_body != NULL) { /* the list's head stays the same when appending */
        headers = curl_slist_append(headers, "Content-Type: application/json");
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    }
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out->body);
    if (json_body != NULL)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_body);
    CURLcode code = curl_easy_perform(curl);
    int rc = AGNES_OK;
    if (code != CURLE_OK && client_unreachable(curl, code))
        rc = agnes_error_set(err, AGNES_ERR_NETWORK, "cannot reach %s: %s (check the URL, or `agnes login --server`)",
                             c->server, curl_easy_strerror(code));
    else if (code != CURLE_OK) /* it answered, or began to: not "unreachable" (exit 4) */
        rc = agnes_error_set(err, AGNES_ERR_IO, "the exchange with %s failed: %s (try again)", c->server,
                             curl_easy_strerror(code));
    else
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    strbuf_append_char(&out->body, '\0'); /* parsers get a terminated string */
    out->body.len--;
    return rc;
}

void client_response_free(client_response *r)
{
    strbuf_free(&r->body);
}

int client_call_json(const client *c, const char *method, const char *path, const char *json_body, json_t **json,
                     agnes_error *err)
{
    client_response r;
    *json = NULL;
    int rc = client_call(c, method, path, json_body, &r, err);
    if (rc != AGNES_OK) {
        client_response_free(&r);
        return rc;
    }
    json_t *body = r.body.len ? json_loadb(r.body.data, r.body.len, 0, NULL) : json_object();
    const char *detail = json_string_value(json_object_get(body, "detail"));
    if (r.status >= 200 && r.status < 300 && body != NULL) {
        *json = body;
    } else if (r.status == 401 && strncmp(path, "/auth/token", 11) == 0 && json_body != NULL) {
        /* A login, not a stored token: the server's sentence is the whole story. */
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN, "%s Check the email and password (or log in with --token "
                             "<personal access token>).", detail ? detail : "The email or password was refused.");
    } else if (r.status == 401) {
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN, "the server refused the token (%s): run `agnes login` again",
                             detail ? detail : "401");
    } else if (r.status == 403) {
        rc = agnes_error_set(err, AGNES_ERR_FORBIDDEN, "%s", detail ? detail : "access denied (403)");
    } else if (r.status >= 400 && r.status < 500 && detail != NULL && r.status != 429) {
        /* The server understood and refused what was asked (a query's
         * syntax, a missing table): the user's mistake, exit 1, not a
         * server failure. */
        rc = agnes_error_set(err, CLIENT_ERR_REFUSED, "%s", detail);
    } else {
        rc = agnes_error_set(err, CLIENT_ERR_SERVER, "the server answered %ld: %s", r.status,
                             detail ? detail : "a response that is not JSON (is the URL an Agnes server?)");
    }
    if (*json == NULL)
        json_decref(body);
    client_response_free(&r);
    return rc;
}

bool client_unreachable(void *curl, int code)
{
    if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_RESOLVE_PROXY || code == CURLE_COULDNT_CONNECT)
        return true;
    double connected = 0;
    return code == CURLE_OPERATION_TIMEDOUT && curl != NULL &&
           curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME, &connected) == CURLE_OK && connected == 0;
}

int client_exit_code(int rc)
{
    switch (rc) {
    case AGNES_OK:
        return CLIENT_EXIT_OK;
    case AGNES_ERR_FORBIDDEN:
        return CLIENT_EXIT_AUTH;
    case AGNES_ERR_NETWORK:
        return CLIENT_EXIT_NETWORK;
    case CLIENT_ERR_SERVER:
        return CLIENT_EXIT_SERVER;
    case CLIENT_ERR_REFUSED:
        return CLIENT_EXIT_FAILED;
    case AGNES_ERR_INVALID:
        return CLIENT_EXIT_USAGE;
    case AGNES_ERR_BUSY:
        return CLIENT_EXIT_PARTIAL;
    default:
        return CLIENT_EXIT_FAILED;
    }
}

int client_fail(const char *command, const agnes_error *err)
{
    char message[sizeof err->message + 256];
    audience_translate(AUDIENCE_CLI, err->message, message, sizeof message); /* no HTTP routes at a terminal */
    fprintf(stderr, "agnes %s: %s\n", command, message);
    return client_exit_code(err->code);
}
