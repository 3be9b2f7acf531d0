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
#include "sync/source_settings.h"

static const char *const configure_fields[] = {
    "data_source",       "instance_name",     "postgres_dsn",      "postgres_host", "postgres_port",
    "postgres_database", "postgres_user",     "postgres_password", "postgres_sslmode",
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
                                 "Unknown field \"%s\". Accepted: data_source, instance_name, and for postgres either "
                                 "postgres_dsn or postgres_host, postgres_port, postgres_database, postgres_user, "
                                 "postgres_password, postgres_sslmode.",
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
    if (strcmp(type, "local") == 0) {
        data_source = json_pack("{s:s}", "type", "local");
    } else if (strcmp(type, "postgres") == 0) {
        if (postgres_dsn(body, &dsn, resp) || verify_postgres(ctx, req, dsn.data, &data_source, &verified, resp))
            goto done;
    } else {
        unprocessable(resp,
                      "data_source '%s' cannot be configured in this build: use 'postgres' or 'local' (custom "
                      "connectors need no configuration: put an executable at CONNECTORS_DIR/<name>/extract).",
                      type);
        goto done;
    }
    const char *secret_env = verified ? "POSTGRES_DSN" : NULL;
    if (save_configuration(ctx->runtime, data_source, instance_name, secret_env, dsn.data, &err) != AGNES_OK) {
        http_respond_internal(resp, req, &err);
        goto done;
    }
    char audit[200];
    snprintf(audit, sizeof audit, "{\"data_source\": \"%s\"}", type);
    duckdb_connection writer = system_db_writer_acquire(ctx->db);
    audit_log_write(writer, req->identity->user_id, "instance.configure", type, audit, "ok");
    system_db_writer_release(ctx->db);
    log_info("msg=\"data source configured\" type=%s", type);
    json_t *reply = json_pack("{s:s, s:s, s:s, s:{s:s, s:s?}}", "status", "ok", "data_source", type, "connection",
                              verified ? "verified" : "local", "saved", "settings", "${STATE_DIR}/instance.yaml",
                              "secret", secret_env ? "${STATE_DIR}/.env_overlay (POSTGRES_DSN, mode 0600)" : NULL);
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

void configure_handle_discover(http_context *ctx, const http_request *req, http_response *resp)
{
    json_t *body = req->body_len > 0 ? json_body_parse_object(req, resp) : json_object(), *summary = NULL;
    const char *mode = NULL, *schedule_text = NULL;
    agnes_error err;
    if (body == NULL || json_body_string(body, "query_mode", false, 32, &mode, resp) ||
        json_body_string(body, "sync_schedule", false, 200, &schedule_text, resp))
        goto done;
    json_t *schemas = json_object_get(body, "schemas");
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
                                 .registered_by = req->identity->email};
    int rc = discovery_register(ctx->runtime, ctx->db, &options, &summary, &err);
    if (rc == AGNES_ERR_INVALID || rc == AGNES_ERR_CONFIG) {
        http_respond_error(resp, 400, err.message, NULL);
    } else if (rc != AGNES_OK) {
        char detail[AGNES_ERROR_MESSAGE_MAX + 64];
        snprintf(detail, sizeof detail, "Discovery failed: %s", err.message);
        http_respond_error(resp, 502, detail, NULL);
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
