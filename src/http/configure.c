/*
 * configure.c - set the instance's data source without a shell.
 *
 * POST /api/admin/configure {data_source, credentials...}:
 *   1. validate the body (422 naming the field);
 *   2. resolve every host and refuse private/loopback addresses unless
 *      AGNES_ALLOW_PRIVATE_SOURCES=1, or the server listens on loopback only
 *      and the request comes from this machine (a trial, `make run`) (400);
 *   3. connect with the credentials and run a first query (400 saying what
 *      failed) - nothing is saved before this succeeds;
 *   4. under ${STATE_DIR}/.configure.lock: non-secret settings merged into
 *      ${STATE_DIR}/instance.yaml, the secret into ${STATE_DIR}/.env_overlay
 *      (0600), each written atomically; the running server gets the secret
 *      through the credentials store (no restart);
 *   5. answer what was verified and what to call next.
 */
#include "http/configure.h"

#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/env_overlay.h"
#include "core/log.h"
#include "core/net_guard.h"
#include "core/schedule.h"
#include "core/util.h"
#include "core/yaml_json.h"
#include "http/auth.h"
#include "http/json_body.h"
#include "store/users.h"
#include "sync/connector.h"
#include "sync/discovery.h"
#include "sync/keboola_api.h"
#include "sync/source_settings.h"

static const char *const configure_fields[] = {
    "data_source",       "instance_name", "postgres_dsn",      "postgres_host",    "postgres_port",
    "postgres_database", "postgres_user", "postgres_password", "postgres_sslmode", "keboola_url",
    "keboola_token",
};

static int unprocessable(http_response *resp, const char *fmt, const char *value)
{
    char detail[600];
    snprintf(detail, sizeof detail, fmt, value);
    http_respond_error(resp, 422, detail, NULL);
    return -1;
}

static int check_fields(json_t *body, http_response *resp)
{
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        bool known = false;
        for (size_t i = 0; i < sizeof configure_fields / sizeof configure_fields[0]; i++)
            known = known || strcmp(key, configure_fields[i]) == 0;
        if (!known)
            return unprocessable(resp,
                                 "Unknown field \"%s\". Accepted: data_source, instance_name; for postgres either "
                                 "postgres_dsn or postgres_host, postgres_port, postgres_database, postgres_user, "
                                 "postgres_password, postgres_sslmode; for keboola keboola_url and keboola_token.",
                                 key);
    }
    return 0;
}

/* key='value' for a libpq connection string (quotes and backslashes escaped). */
static void append_conninfo(strbuf *out, const char *key, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    strbuf_appendf(out, "%s%s='", out->len ? " " : "", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'' || *p == '\\')
            strbuf_append_char(out, '\\');
        strbuf_append_char(out, *p);
    }
    strbuf_append_char(out, '\'');
}

/* The connection string from postgres_dsn or the separate fields. */
static int postgres_dsn(json_t *body, strbuf *dsn, http_response *resp)
{
    const char *given = NULL, *host = NULL, *database = NULL, *user = NULL, *password = NULL, *sslmode = NULL;
    long long port = 0;
    enum json_field_presence presence;
    if (json_body_string(body, "postgres_dsn", false, CONNECTOR_SECRET_MAX - 1, &given, resp) ||
        json_body_string(body, "postgres_host", false, 255, &host, resp) ||
        json_body_string(body, "postgres_database", false, 255, &database, resp) ||
        json_body_string(body, "postgres_user", false, 255, &user, resp) ||
        json_body_string(body, "postgres_password", false, 1024, &password, resp) ||
        json_body_string(body, "postgres_sslmode", false, 32, &sslmode, resp) ||
        json_body_optional_int(body, "postgres_port", 1, 65535, &presence, &port, resp))
        return -1;
    if (given != NULL && (host || database || user || password)) {
        http_respond_error(resp, 422, "Give either postgres_dsn or the separate postgres_* fields, not both.", NULL);
        return -1;
    }
    if (given != NULL) {
        strbuf_append_str(dsn, given);
        return 0;
    }
    if (host == NULL || database == NULL || user == NULL) {
        http_respond_error(resp, 422,
                           "A postgres source needs postgres_dsn (a libpq connection string or postgresql:// URI), "
                           "or postgres_host, postgres_database and postgres_user (plus postgres_password, "
                           "postgres_port, postgres_sslmode as needed).",
                           NULL);
        return -1;
    }
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%lld", presence == JSON_FIELD_SET ? port : 5432);
    append_conninfo(dsn, "host", host);
    append_conninfo(dsn, "port", port_text);
    append_conninfo(dsn, "dbname", database);
    append_conninfo(dsn, "user", user);
    append_conninfo(dsn, "password", password);
    append_conninfo(dsn, "sslmode", sslmode);
    return 0;
}

/* libpq's reading of the connection string: {host, hostaddr, port, dbname, user, sslmode}. */
static json_t *parse_dsn(const char *dsn, http_response *resp)
{
    char *problem = NULL;
    PQconninfoOption *options = PQconninfoParse(dsn, &problem);
    if (options == NULL) {
        PQfreemem(problem);
        http_respond_error(resp, 422,
                           "postgres_dsn is not a valid libpq connection string: use key=value pairs (host=... "
                           "dbname=... user=... password=...) or a postgresql:// URI.",
                           NULL);
        return NULL;
    }
    json_t *parsed = json_object();
    static const char *const wanted[] = {"host", "hostaddr", "port", "dbname", "user", "sslmode"};
    for (PQconninfoOption *o = options; o->keyword != NULL; o++)
        for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
            if (strcmp(o->keyword, wanted[i]) == 0 && o->val != NULL)
                json_object_set_new(parsed, wanted[i], json_string(o->val));
    PQconninfoFree(options);
    return parsed;
}

/* Every host (libpq takes comma-separated lists) must be public. */
static int check_hosts(const json_t *parsed, agnes_error *err)
{
    const char *lists[] = {json_string_value(json_object_get(parsed, "host")),
                           json_string_value(json_object_get(parsed, "hostaddr"))};
    if ((lists[0] == NULL || lists[0][0] == '\0') && (lists[1] == NULL || lists[1][0] == '\0'))
        return agnes_error_set(err, AGNES_ERR_FORBIDDEN,
                               "no host given: libpq would use this machine's socket; name the server's host "
                               "(or set AGNES_ALLOW_PRIVATE_SOURCES=1)");
    for (size_t l = 0; l < 2; l++) {
        char list[1024];
        snprintf(list, sizeof list, "%s", lists[l] ? lists[l] : "");
        char *save = NULL;
        for (char *host = strtok_r(list, ",", &save); host != NULL; host = strtok_r(NULL, ",", &save))
            if (net_guard_check_host(util_trim(host), err) != AGNES_OK)
                return err->code;
    }
    return AGNES_OK;
}

/* ${STATE_DIR}/.configure.lock, exclusive: one configuration write at a
 * time, across threads (each opens its own descriptor) and processes. */
static int lock_configuration(const agnes_paths *paths, agnes_error *err)
{
    char path[AGNES_PATH_MAX + 32];
    if (paths_state_file(paths, STATE_CONFIGURE_LOCK, path, sizeof path, err))
        return -1;
    return util_lock_file(path, 0600, true, err);
}

/* Merge data_source (replaced whole) and instance.name into the state
 * overlay instance.yaml. */
static int save_instance_yaml(const agnes_paths *paths, json_t *data_source, const char *instance_name,
                              agnes_error *err)
{
    char path[AGNES_PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    json_t *document = NULL;
    strbuf out;
    strbuf_init(&out);
    if (paths_state_file(paths, STATE_INSTANCE_YAML, path, sizeof path, err))
        return err->code;
    if (util_file_exists(path) && util_read_file(path, 1 << 20, &text, &len, err))
        return err->code;
    int rc = yaml_json_parse(text ? text : "", len, path, &document, err);
    free(text);
    if (rc != AGNES_OK)
        return rc;
    json_object_set(document, "data_source", data_source);
    if (instance_name != NULL) {
        json_t *instance = json_object_get(document, "instance");
        if (!json_is_object(instance))
            json_object_set_new(document, "instance", instance = json_object());
        json_object_set_new(instance, "name", json_string(instance_name));
    }
    strbuf_append_str(&out, "# Written by POST /api/admin/configure; overrides ${CONFIG_DIR}/instance.yaml.\n");
    rc = yaml_json_emit(document, &out, err);
    if (rc == AGNES_OK)
        rc = strbuf_failed(&out) ? agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory")
                                 : util_write_file_atomic(path, out.data, out.len, 0600, err);
    strbuf_free(&out);
    json_decref(document);
    return rc;
}

static int save_configuration(agnes_runtime *rt, json_t *data_source, const char *instance_name,
                              const char *secret_env, const char *secret, agnes_error *err)
{
    char overlay[AGNES_PATH_MAX];
    int lock = lock_configuration(&rt->paths, err);
    if (lock < 0)
        return err->code;
    int rc = paths_state_file(&rt->paths, STATE_ENV_OVERLAY, overlay, sizeof overlay, err);
    /* The secret first: a crash between the two writes leaves a stored
     * secret nothing uses yet, never a source without its credentials. */
    if (rc == AGNES_OK && secret_env != NULL)
        rc = env_overlay_file_set(overlay, secret_env, secret, err);
    if (rc == AGNES_OK)
        rc = save_instance_yaml(&rt->paths, data_source, instance_name, err);
    if (rc == AGNES_OK && secret_env != NULL)
        rc = credentials_set(&rt->credentials, secret_env, secret, err);
    close(lock);
    return rc;
}

/* A trial instance's own caller: the server listens on loopback only
 * (`make run`) and this request came straight from this machine, with no
 * proxy header.  Such a caller reaches every address the server can, so the
 * private-address rule (an SSRF guard for remote callers) protects nothing:
 * a database on localhost just works.  An instance behind a reverse proxy
 * on the same host still gets the rule - the proxy adds X-Forwarded-For -
 * and so does every instance listening on a public address (the default). */
static bool local_trial_request(http_context *ctx, const http_request *req)
{
    static const char *const proxy_headers[] = {"X-Forwarded-For", "Forwarded", "X-Real-IP"};
    if (!net_guard_listen_is_loopback(config_get_string(&ctx->runtime->config, CFG_SERVER_LISTEN)) ||
        !net_guard_is_loopback_text(req->client_ip))
        return false;
    for (size_t i = 0; i < sizeof proxy_headers / sizeof proxy_headers[0]; i++)
        if (http_request_header(req, proxy_headers[i]) != NULL)
            return false;
    return true;
}

/* Steps 2 and 3 for postgres: *data_source and *verified on success. */
static int verify_postgres(http_context *ctx, const http_request *req, const char *dsn, json_t **data_source,
                           json_t **verified, http_response *resp)
{
    agnes_error err;
    json_t *parsed = parse_dsn(dsn, resp);
    if (parsed == NULL)
        return -1;
    if (!config_get_bool(&ctx->runtime->config, CFG_ALLOW_PRIVATE_SOURCES) && !local_trial_request(ctx, req) &&
        check_hosts(parsed, &err) != AGNES_OK) {
        char detail[AGNES_ERROR_MESSAGE_MAX + 200];
        snprintf(detail, sizeof detail,
                 "Invalid PostgreSQL host: %s. Nothing was saved. (A server listening only on loopback, as `make "
                 "run` does, accepts local databases from requests made on the same machine.)",
                 err.message);
        http_respond_error(resp, 400, detail, NULL);
        json_decref(parsed);
        return -1;
    }
    connector_settings settings = {.statement_timeout_seconds = 30};
    snprintf(settings.secret, sizeof settings.secret, "%s", dsn);
    int rc = postgres_connector.test_connection(&settings, verified, &err);
    explicit_bzero(settings.secret, sizeof settings.secret);
    if (rc != AGNES_OK) {
        char detail[AGNES_ERROR_MESSAGE_MAX + 128];
        snprintf(detail, sizeof detail,
                 "PostgreSQL connection failed: %s. Nothing was saved; check host, port, database, user and password.",
                 err.message);
        http_respond_error(resp, 400, detail, NULL);
        json_decref(parsed);
        return -1;
    }
    const char *port = json_string_value(json_object_get(parsed, "port"));
    *data_source = json_pack("{s:s, s:{s:s, s:I, s:s, s:s, s:s, s:s}}", "type", "postgres", "postgres", "host",
                             json_string_value(json_object_get(parsed, "host"))
                                 ? json_string_value(json_object_get(parsed, "host"))
                                 : "",
                             "port", (json_int_t)(port ? atoi(port) : 5432), "database",
                             json_string_value(json_object_get(*verified, "database")), "user",
                             json_string_value(json_object_get(*verified, "user")), "sslmode",
                             json_string_value(json_object_get(parsed, "sslmode"))
                                 ? json_string_value(json_object_get(parsed, "sslmode"))
                                 : "prefer",
                             "dsn_env", "POSTGRES_DSN");
    json_decref(parsed);
    return 0;
}

/* ---- keboola ------------------------------------------------------------- */

/* A 400 with a machine-readable reason beside the sentence, so the wizard
 * can point at the field to fix. */
static void refuse(http_response *resp, unsigned status, const char *reason, const char *detail, const char *hint)
{
    json_t *body = json_pack("{s:s, s:s}", "detail", detail, "reason", reason);
    if (hint != NULL)
        json_object_set_new(body, "hint", json_string(hint));
    http_respond_json(resp, status, body);
}

/* keboola_url -> "https://host[:port]" in out: https only, a trailing "/"
 * tolerated, no user, path, query or fragment (the stack's base URL). */
static int keboola_stack_url(const char *given, char *out, size_t out_size, char *host, size_t host_size,
                             http_response *resp)
{
    CURLU *url = curl_url();
    char *scheme = NULL, *name = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL, *fragment = NULL;
    int rc = -1;
    if (url == NULL || curl_url_set(url, CURLUPART_URL, given, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_HOST, &name, 0) != CURLUE_OK) {
        refuse(resp, 422, "keboola_url_invalid",
               "keboola_url is not a URL: give the stack's address, e.g. https://connection.keboola.com or "
               "https://connection.eu-central-1.keboola.com.", NULL);
        goto done;
    }
    curl_url_get(url, CURLUPART_PORT, &port, 0);
    curl_url_get(url, CURLUPART_PATH, &path, 0);
    curl_url_get(url, CURLUPART_QUERY, &query, 0);
    curl_url_get(url, CURLUPART_USER, &user, 0);
    curl_url_get(url, CURLUPART_FRAGMENT, &fragment, 0);
    char suggestion[600];
    snprintf(suggestion, sizeof suggestion, "https://%s%s%s", name, port ? ":" : "", port ? port : "");
    if (strcmp(scheme, "https") != 0) {
        char detail[800];
        snprintf(detail, sizeof detail, "keboola_url must use https (the token travels with every call): use %s.",
                 suggestion);
        refuse(resp, 422, "keboola_url_not_https", detail, NULL);
    } else if ((path != NULL && strcmp(path, "/") != 0 && path[0] != '\0') || query != NULL || user != NULL ||
               fragment != NULL) {
        char detail[800];
        snprintf(detail, sizeof detail,
                 "keboola_url is the stack's base address, without a path, query or user: use %s.", suggestion);
        refuse(resp, 422, "keboola_url_invalid", detail, NULL);
    } else {
        snprintf(out, out_size, "%s", suggestion);
        snprintf(host, host_size, "%s", name);
        rc = 0;
    }
done:
    curl_free(scheme), curl_free(name), curl_free(port), curl_free(path), curl_free(query), curl_free(user),
        curl_free(fragment);
    curl_url_cleanup(url);
    return rc;
}

/* A variable set in the server's real environment (not exported from
 * .env_overlay at start): it wins over anything configure saves, now or at
 * the next start, so saving something else would be a silent no-op. */
static bool set_by_environment(agnes_runtime *rt, const char *name)
{
    const char *value = getenv(name);
    if (value == NULL || value[0] == '\0')
        return false;
    env_overlay overlay = {0};
    char path[AGNES_PATH_MAX];
    agnes_error err;
    bool from_overlay = paths_state_file(&rt->paths, STATE_ENV_OVERLAY, path, sizeof path, &err) == AGNES_OK &&
                        env_overlay_load(&overlay, path, &err) == AGNES_OK && env_overlay_get(&overlay, name) &&
                        strcmp(env_overlay_get(&overlay, name), value) == 0;
    env_overlay_free(&overlay);
    return !from_overlay;
}

/* Refuse values the environment would override (the URL and the token). */
static int check_environment_wins(agnes_runtime *rt, const char *given_url, const char *given_token,
                                  const char *token_env, http_response *resp)
{
    char detail[600], a[600], b[600];
    const char *env_url = config_get_string(&rt->config, CFG_KEBOOLA_STACK_URL);
    snprintf(a, sizeof a, "%s", given_url ? given_url : "");
    snprintf(b, sizeof b, "%s", env_url);
    for (size_t n = strlen(a); n > 0 && a[n - 1] == '/'; n--)
        a[n - 1] = '\0';
    for (size_t n = strlen(b); n > 0 && b[n - 1] == '/'; n--)
        b[n - 1] = '\0';
    if (given_url != NULL && rt->config.values[CFG_KEBOOLA_STACK_URL].source == CONFIG_SOURCE_ENV &&
        strcmp(a, b) != 0) {
        snprintf(detail, sizeof detail,
                 "KEBOOLA_STACK_URL is set in the server's environment to %s and would win over keboola_url: "
                 "leave keboola_url out, or remove KEBOOLA_STACK_URL from the environment and restart.",
                 env_url);
        refuse(resp, 409, "keboola_environment_conflict", detail, NULL);
        return -1;
    }
    const char *env_token = getenv(token_env);
    if (given_token != NULL && set_by_environment(rt, token_env) && strcmp(env_token, given_token) != 0) {
        snprintf(detail, sizeof detail,
                 "%s is set in the server's environment and would win over keboola_token at the next start: "
                 "leave keboola_token out to use it, or remove %s from the environment and restart.",
                 token_env, token_env);
        refuse(resp, 409, "keboola_environment_conflict", detail, NULL);
        return -1;
    }
    return 0;
}

/* Steps 2 and 3 for keboola.  The URL and token come from the body, else
 * from KEBOOLA_STACK_URL / KEBOOLA_STORAGE_TOKEN; *token_from_body says
 * whether the token must be saved (one from the environment stays there). */
static int verify_keboola(http_context *ctx, json_t *body, json_t **data_source, json_t **verified, strbuf *token,
                          bool *token_from_body, http_response *resp)
{
    const char *given_url = NULL, *given_token = NULL;
    char url[600], host[300];
    agnes_error err;
    if (json_body_string(body, "keboola_url", false, 500, &given_url, resp) ||
        json_body_string(body, "keboola_token", false, CONNECTOR_SECRET_MAX - 1, &given_token, resp))
        return -1;
    agnes_runtime *rt = ctx->runtime;
    const char *token_env = config_get_string(&rt->config, CFG_KEBOOLA_TOKEN_ENV);
    char env_token[CONNECTOR_SECRET_MAX] = "";
    if (check_environment_wins(rt, given_url, given_token, token_env, resp))
        return -1;
    if (given_url == NULL && config_is_set(&rt->config, CFG_KEBOOLA_STACK_URL))
        given_url = config_get_string(&rt->config, CFG_KEBOOLA_STACK_URL);
    *token_from_body = given_token != NULL;
    if (given_token == NULL && credentials_get(&rt->credentials, token_env, env_token, sizeof env_token))
        given_token = env_token;
    if (given_url == NULL || given_token == NULL || given_token[0] == '\0') {
        refuse(resp, 422, "keboola_fields_missing",
               "A keboola source needs keboola_url (the stack's https address, e.g. "
               "https://connection.keboola.com) and keboola_token (a Storage API token from the project's "
               "Settings > API Tokens), or KEBOOLA_STACK_URL and KEBOOLA_STORAGE_TOKEN in the server's environment.",
               NULL);
        explicit_bzero(env_token, sizeof env_token);
        return -1;
    }
    strbuf_append_str(token, given_token);
    explicit_bzero(env_token, sizeof env_token);
    if (keboola_stack_url(given_url, url, sizeof url, host, sizeof host, resp))
        return -1;
    if (!config_get_bool(&rt->config, CFG_ALLOW_PRIVATE_SOURCES) && net_guard_check_host(host, &err) != AGNES_OK) {
        char detail[AGNES_ERROR_MESSAGE_MAX + 64];
        snprintf(detail, sizeof detail, "Invalid Keboola stack URL: %s. Nothing was saved.", err.message);
        refuse(resp, 400, err.code == AGNES_ERR_NETWORK ? "keboola_stack_unreachable" : "keboola_url_private", detail,
               NULL);
        return -1;
    }
    connector_settings settings = {0};
    snprintf(settings.url, sizeof settings.url, "%s", url);
    snprintf(settings.secret, sizeof settings.secret, "%s", token->data);
    outbound_policy_from_config(&rt->config, &settings.outbound);
    int rc = keboola_connector.test_connection(&settings, verified, &err);
    explicit_bzero(settings.secret, sizeof settings.secret);
    if (rc != AGNES_OK) {
        keboola_redact(err.message, sizeof err.message, token->data);
        /* Each way of being wrong gets its own reason and first words. */
        static const struct {
            const char *reason, *prefix;
        } kinds[] = {{"keboola_url_private", "Invalid Keboola stack URL: "},
                     {"keboola_token_rejected", "Wrong token: "},
                     {"keboola_no_read_access", "The token has no read access: "},
                     {"keboola_unavailable", "Keboola is unavailable: "},
                     {"keboola_stack_unreachable", "Wrong stack URL: "}};
        size_t kind = strstr(err.message, "AGNES_ALLOW_PRIVATE_SOURCES") != NULL ? 0
                      : rc == AGNES_ERR_CONFIG                                  ? 1
                      : rc == AGNES_ERR_FORBIDDEN                               ? 2
                      : rc == AGNES_ERR_NETWORK && strstr(err.message, "cannot reach") == NULL ? 3
                                                                                             : 4;
        char detail[AGNES_ERROR_MESSAGE_MAX + 64];
        snprintf(detail, sizeof detail, "%s%s. Nothing was saved.", kinds[kind].prefix, err.message);
        const char *reason = kinds[kind].reason;
        bool transient = kind == 3;
        refuse(resp, transient ? 502 : 400, reason, detail, NULL);
        return -1;
    }
    *data_source = json_pack("{s:s, s:{s:s, s:s}}", "type", "keboola", "keboola", "stack_url", url, "token_env",
                             token_env);
    return 0;
}

void configure_handle_post(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = json_body_parse_object(req, resp), *data_source = NULL, *verified = NULL;
    const char *type = NULL, *instance_name = NULL;
    strbuf dsn;
    strbuf_init(&dsn);
    agnes_error err;
    if (body == NULL || check_fields(body, resp) || json_body_string(body, "data_source", true, 32, &type, resp) ||
        json_body_string(body, "instance_name", false, 200, &instance_name, resp))
        goto done;
    const char *secret_env = NULL;
    bool keep_secret = true;
    if (strcmp(type, "local") == 0) {
        data_source = json_pack("{s:s}", "type", "local");
    } else if (strcmp(type, "postgres") == 0) {
        if (postgres_dsn(body, &dsn, resp) || verify_postgres(ctx, req, dsn.data, &data_source, &verified, resp))
            goto done;
        secret_env = "POSTGRES_DSN";
    } else if (strcmp(type, "keboola") == 0) {
        if (verify_keboola(ctx, body, &data_source, &verified, &dsn, &keep_secret, resp))
            goto done;
        secret_env = config_get_string(&ctx->runtime->config, CFG_KEBOOLA_TOKEN_ENV);
    } else {
        unprocessable(resp,
                      "data_source '%s' cannot be configured in this build: use 'keboola', 'postgres' or 'local' "
                      "(GET /api/admin/configure lists them; custom connectors need no configuration: put an "
                      "executable at CONNECTORS_DIR/<name>/extract).",
                      type);
        goto done;
    }
    if (save_configuration(ctx->runtime, data_source, instance_name, keep_secret ? secret_env : NULL, dsn.data,
                           &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    char audit[200];
    snprintf(audit, sizeof audit, "{\"data_source\": \"%s\"}", type);
    duckdb_connection writer = system_db_writer_acquire(ctx->db);
    audit_log_write(writer, req->identity->user_id, "instance.configure", type, audit, "ok");
    system_db_writer_release(ctx->db);
    log_info("msg=\"data source configured\" type=%s", type);
    char secret_note[200];
    if (secret_env != NULL && keep_secret)
        snprintf(secret_note, sizeof secret_note, "${STATE_DIR}/.env_overlay (%s, mode 0600)", secret_env);
    else if (secret_env != NULL)
        snprintf(secret_note, sizeof secret_note, "the server's environment (%s, not copied)", secret_env);
    json_t *reply = json_pack("{s:s, s:s, s:s, s:{s:s, s:s?}}", "status", "ok", "data_source", type, "connection",
                              verified ? "verified" : "local", "saved", "settings", "${STATE_DIR}/instance.yaml",
                              "secret", secret_env ? secret_note : NULL);
    if (verified != NULL) {
        json_object_set(reply, "verified", verified);
        json_object_set_new(reply, "next", json_string("POST /api/admin/discover-and-register, then POST "
                                                       "/api/sync/trigger"));
    }
    http_respond_json(resp, 200, reply);
done:
    if (dsn.data != NULL)
        explicit_bzero(dsn.data, dsn.len);
    strbuf_free(&dsn);
    json_decref(verified);
    json_decref(data_source);
    json_decref(body);
}

/* A source that could not be listed: the admin's to fix (a wrong token,
 * stack or table: 400) or the source's (unreachable, failing: 502). */
static void respond_source_failure(http_response *resp, int rc, const agnes_error *err)
{
    char detail[AGNES_ERROR_MESSAGE_MAX + 64];
    bool theirs = rc == AGNES_ERR_NETWORK || rc == AGNES_ERR_TIMEOUT || rc == AGNES_ERR_IO || rc == AGNES_ERR_DB;
    snprintf(detail, sizeof detail, "%s%s", theirs ? "Discovery failed: " : "", err->message);
    http_respond_error(resp, theirs ? 502 : 400, detail, NULL);
}

void configure_handle_discover(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = req->body_len > 0 ? json_body_parse_object(req, resp) : json_object(), *summary = NULL;
    const char *mode = NULL, *schedule_text = NULL;
    agnes_error err;
    if (body == NULL || json_body_string(body, "query_mode", false, 32, &mode, resp) ||
        json_body_string(body, "sync_schedule", false, 200, &schedule_text, resp))
        goto done;
    json_t *schemas = json_object_get(body, "schemas");
    json_t *tables = json_object_get(body, "tables");
    if (tables != NULL && !json_is_array(tables)) {
        http_respond_error(resp, 422,
                           "Field \"tables\" must be a list of table ids or <bucket>.<table> names to register "
                           "(GET /api/admin/discover-tables lists them).",
                           NULL);
        goto done;
    }
    if (mode != NULL && strcmp(mode, "local") != 0 && strcmp(mode, "remote") != 0) {
        unprocessable(resp, "query_mode '%s' is not local or remote (materialized tables need their own SQL).", mode);
        goto done;
    }
    if (schemas != NULL && !json_is_array(schemas)) {
        http_respond_error(resp, 422, "Field \"schemas\" must be a list of schema names.", NULL);
        goto done;
    }
    if (schedule_text != NULL) {
        schedule parsed;
        if (schedule_parse(schedule_text, &parsed, &err) != AGNES_OK) {
            http_respond_error(resp, 422, err.message, NULL);
            goto done;
        }
    }
    discovery_options options = {.query_mode = mode, .sync_schedule = schedule_text, .schemas = schemas,
                                 .tables = tables, .registered_by = req->identity->email};
    int rc = discovery_register(ctx->runtime, ctx->db, &options, &summary, &err);
    if (rc != AGNES_OK) {
        respond_source_failure(resp, rc, &err);
    } else {
        duckdb_connection writer = system_db_writer_acquire(ctx->db);
        audit_log_write(writer, req->identity->user_id, "table.discover_and_register",
                        json_string_value(json_object_get(summary, "source")), NULL, "ok");
        system_db_writer_release(ctx->db);
        http_respond_json(resp, 200, summary);
        summary = NULL;
    }
done:
    json_decref(summary);
    json_decref(body);
}

void configure_handle_discover_list(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *listing = NULL;
    agnes_error err;
    (void)req;
    int rc = discovery_list(ctx->runtime, ctx->db, &listing, &err);
    if (rc != AGNES_OK)
        respond_source_failure(resp, rc, &err);
    else
        http_respond_json(resp, 200, listing);
}

/* GET /api/admin/configure: what this build can configure and what is
 * configured now (no secret: only whether one is set).  The wizard offers
 * the sources listed in "configurable". */
void configure_handle_get(http_context *ctx, const http_request *req, http_response *resp)
{
    agnes_runtime *rt = ctx->runtime;
    char type[32], probe[CONNECTOR_SECRET_MAX];
    agnes_error err;
    (void)req;
    if (source_settings_type(rt, type, sizeof type, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        return;
    }
    agnes_config config = {0};
    env_overlay overlay = {0};
    char overlay_path[AGNES_PATH_MAX];
    bool loaded = paths_state_file(&rt->paths, STATE_ENV_OVERLAY, overlay_path, sizeof overlay_path, &err) ==
                      AGNES_OK &&
                  env_overlay_load(&overlay, overlay_path, &err) == AGNES_OK &&
                  config_load(&config, &rt->paths, &overlay, &err) == AGNES_OK;
    env_overlay_free(&overlay);
    const agnes_config *now = loaded ? &config : &rt->config;
    const char *token_env = config_get_string(now, CFG_KEBOOLA_TOKEN_ENV);
    bool token_set = credentials_get(&rt->credentials, token_env, probe, sizeof probe) && probe[0] != '\0';
    bool dsn_set = credentials_get(&rt->credentials, config_get_string(now, CFG_PG_DSN_ENV), probe, sizeof probe) &&
                   probe[0] != '\0';
    explicit_bzero(probe, sizeof probe);
    json_t *reply = json_pack(
        "{s:s, s:b, s:[sss], s:[ss], s:["
        "{s:s, s:s, s:b, s:[]},"
        "{s:s, s:s, s:b, s:[sssssss], s:{s:s, s:b}},"
        "{s:s, s:s, s:b, s:[ss], s:{s:s, s:s, s:b}}]}",
        "data_source", type, "implied_by_environment",
        now->values[CFG_DATA_SOURCE].source == CONFIG_SOURCE_DEFAULT && strcmp(type, "keboola") == 0, "configurable",
        "local", "postgres", "keboola", "not_in_this_build", "bigquery", "jira", "sources",
        "type", "local", "label", "Files you upload", "can_discover", false, "fields",
        "type", "postgres", "label", "PostgreSQL", "can_discover", true, "fields", "postgres_dsn", "postgres_host",
        "postgres_port", "postgres_database", "postgres_user", "postgres_password", "postgres_sslmode", "current",
        "host", config_get_string(now, CFG_PG_HOST), "secret_set", dsn_set,
        "type", "keboola", "label", "Keboola", "can_discover", true, "fields", "keboola_url", "keboola_token",
        "current", "stack_url", config_get_string(now, CFG_KEBOOLA_STACK_URL), "token_env", token_env, "secret_set",
        token_set);
    if (loaded)
        config_free(&config);
    http_respond_json(resp, 200, reply);
}
