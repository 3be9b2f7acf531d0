/*
 * `agnes doctor [--json]` - what configuration is in force, where each value
 * came from, and whether the state tier is sound.  Read-only: it never
 * creates a directory, generates a secret or migrates, so it is safe to run
 * beside a live server and before the first start.  Exit 1 when a check fails.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli/client/commands.h"
#include "cli/commands.h"
#include "core/runtime.h"
#include "store/migrations.h"

typedef struct doctor_report {
    json_t *checks; /* [{name, status: ok|warn|fail, detail}] */
    int failures;
} doctor_report;

static void add(doctor_report *report, const char *name, const char *status, const char *detail)
{
    json_array_append_new(report->checks, json_pack("{s:s, s:s, s:s}", "name", name, "status", status, "detail", detail));
    if (strcmp(status, "fail") == 0)
        report->failures++;
}

static void check_state_dir(doctor_report *report, agnes_runtime *rt)
{
    char detail[2 * AGNES_PATH_MAX + 1200];
    const char *dir = rt->paths.state_dir;
    if (!util_is_directory(dir)) {
        snprintf(detail, sizeof detail, "%s does not exist yet; `agnes serve` or `agnes migrate` creates it", dir);
        add(report, "state_dir", "warn", detail);
    } else if (access(dir, W_OK) != 0) {
        snprintf(detail, sizeof detail, "%s is not writable by this user; fix its owner (the image runs as uid 999)", dir);
        add(report, "state_dir", "fail", detail);
    } else {
        snprintf(detail, sizeof detail, "%s exists and is writable", dir);
        add(report, "state_dir", "ok", detail);
    }
    bool required = strcmp(config_get_string(&rt->config, CFG_STATE_MOUNT), "required") == 0;
    bool is_mount = paths_is_mount_point(dir, "/proc/self/mountinfo");
    agnes_error err;
    agnes_error_clear(&err);
    if (required && paths_check_state_mount(&rt->paths, true, "/proc/self/mountinfo", &err) != AGNES_OK) {
        add(report, "state_mount", "fail", err.message);
    } else {
        snprintf(detail, sizeof detail, "%s %s a mount point of its own (AGNES_STATE_MOUNT=%s)", dir,
                 is_mount ? "is" : "is not", required ? "required" : "not required");
        add(report, "state_mount", "ok", detail);
    }
    if (strncmp(dir, rt->paths.data_dir, strlen(rt->paths.data_dir)) == 0 && !is_mount)
        add(report, "state_layout", "ok", "layout A (nested): the state tier lives inside DATA_DIR on the same disk");
    else
        add(report, "state_layout", "ok", "state tier is separate from DATA_DIR");
}

static void check_secret_file(doctor_report *report, agnes_runtime *rt, const char *name, enum config_key key,
                              enum state_file file)
{
    char path[AGNES_PATH_MAX], detail[2 * AGNES_PATH_MAX + 1200];
    struct stat st;
    if (config_is_set(&rt->config, key)) {
        snprintf(detail, sizeof detail, "set by %s", rt->config.values[key].origin);
        add(report, name, "ok", detail);
        return;
    }
    if (paths_state_file(&rt->paths, file, path, sizeof path, NULL) != AGNES_OK)
        return;
    if (stat(path, &st) != 0) {
        snprintf(detail, sizeof detail, "%s does not exist; the next start generates it (fine on a first start; "
                 "on an existing instance it means every user is logged out)", path);
        add(report, name, "warn", detail);
    } else if (st.st_size == 0) {
        snprintf(detail, sizeof detail, "%s is empty; the server will refuse to start. Restore it, or delete it to "
                 "generate a new key", path);
        add(report, name, "fail", detail);
    } else if (access(path, R_OK) != 0) {
        snprintf(detail, sizeof detail, "%s is not readable by this user; fix its owner", path);
        add(report, name, "fail", detail);
    } else if ((st.st_mode & 077) != 0) {
        snprintf(detail, sizeof detail, "%s has mode %04o; run chmod 600 on it", path, st.st_mode & 07777);
        add(report, name, "warn", detail);
    } else {
        snprintf(detail, sizeof detail, "%s present, mode 0600", path);
        add(report, name, "ok", detail);
    }
}

static void check_system_db(doctor_report *report, agnes_runtime *rt)
{
    char path[AGNES_PATH_MAX], detail[2 * AGNES_PATH_MAX + 1200];
    if (paths_state_file(&rt->paths, STATE_SYSTEM_DB, path, sizeof path, NULL) != AGNES_OK)
        return;
    int version = 0, latest = migrations_latest();
    agnes_error err;
    agnes_error_clear(&err);
    if (!util_file_exists(path)) {
        snprintf(detail, sizeof detail, "%s does not exist yet; the first start creates it at version %d", path, latest);
        add(report, "system_db", "warn", detail);
    } else if (migrations_read_version(path, &version, &err) != AGNES_OK) {
        bool in_use = err.code == AGNES_ERR_STATE;
        snprintf(detail, sizeof detail, "%s", in_use ? "system.duckdb is open by a running server (expected while it serves)" : err.message);
        add(report, "system_db", in_use ? "ok" : "fail", detail);
    } else if (version > latest) {
        snprintf(detail, sizeof detail, "%s is at version %d, newer than this build (%d): the server will refuse to start",
                 path, version, latest);
        add(report, "system_db", "fail", detail);
    } else {
        snprintf(detail, sizeof detail, "%s at schema version %d (this build: %d%s)", path, version, latest,
                 version < latest ? "; the next start migrates it" : "");
        add(report, "system_db", "ok", detail);
    }
}

static void check_disk(doctor_report *report, const char *name, const char *dir, long long minimum)
{
    struct statvfs vfs;
    char detail[2 * AGNES_PATH_MAX + 1200];
    if (statvfs(dir, &vfs) != 0)
        return; /* not created yet: reported by the directory checks */
    long long free_bytes = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
    snprintf(detail, sizeof detail, "%s: %.1f GiB free (minimum %.1f GiB)", dir, free_bytes / 1073741824.0,
             minimum / 1073741824.0);
    add(report, name, free_bytes < minimum ? "warn" : "ok", detail);
}

static json_t *config_json(const agnes_config *config)
{
    json_t *items = json_array();
    for (int k = 0; k < CFG_KEY_COUNT; k++) {
        const config_key_spec *spec = config_spec((enum config_key)k);
        const config_value *v = &config->values[k];
        const char *shown = spec->secret && v->text[0] ? "********" : v->text;
        json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:s, s:s}", "key", config_key_name((enum config_key)k),
                                               "env", spec->env_name, "value", shown, "source",
                                               config_source_name(v->source), "origin", v->origin));
    }
    return items;
}

static json_t *paths_json(const agnes_paths *p)
{
    return json_pack("{s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}, s:{s:s,s:s}}", "DATA_DIR", "path", p->data_dir, "source",
                     p->data_dir_source, "STATE_DIR", "path", p->state_dir, "source", p->state_dir_source, "CONFIG_DIR",
                     "path", p->config_dir, "source", p->config_dir_source, "CONNECTORS_DIR", "path",
                     p->connectors_dir, "source", p->connectors_dir_source);
}

static void print_human(json_t *doc)
{
    printf("agnes doctor: server mode - %s\n", json_string_value(json_object_get(doc, "mode_reason")));
    printf("Agnes %s (channel %s), schema version %lld\n\n", json_string_value(json_object_get(doc, "version")),
           json_string_value(json_object_get(doc, "channel")),
           (long long)json_integer_value(json_object_get(doc, "schema_version")));
    printf("Directories\n");
    const char *name;
    json_t *value;
    json_object_foreach(json_object_get(doc, "paths"), name, value)
        printf("  %-15s %s  (%s)\n", name, json_string_value(json_object_get(value, "path")),
               json_string_value(json_object_get(value, "source")));
    printf("\nConfiguration (environment > .env_overlay > STATE_DIR/instance.yaml > CONFIG_DIR/instance.yaml > default)\n");
    size_t i;
    json_array_foreach(json_object_get(doc, "config"), i, value)
        printf("  %-38s %-22s %s\n", json_string_value(json_object_get(value, "key")),
               json_string_value(json_object_get(value, "value"))[0] ? json_string_value(json_object_get(value, "value")) : "\"\"",
               json_string_value(json_object_get(value, "origin")));
    json_t *warnings = json_object_get(doc, "warnings");
    if (json_array_size(warnings) > 0) {
        printf("\nConfiguration warnings\n");
        json_array_foreach(warnings, i, value)
            printf("  - %s\n", json_string_value(value));
    }
    printf("\nState tier\n");
    json_array_foreach(json_object_get(doc, "checks"), i, value)
        printf("  [%-4s] %-16s %s\n", json_string_value(json_object_get(value, "status")),
               json_string_value(json_object_get(value, "name")), json_string_value(json_object_get(value, "detail")));
}

/* Which doctor runs, and why - said on the first line of its output (it
 * used to switch to the client checks silently in a server checkout that
 * also had an analyst login).  Server: asked for, a server directory set in
 * the environment, or a server state tier in this directory's default
 * place (./data/state/system.duckdb, a checkout after `make run`).  Client:
 * asked for, or an analyst login (AGNES_SERVER or credentials.json) and no
 * sign of a server here.  Neither: server (the configuration explains). */
static bool choose_client_mode(bool client_flag, bool server_flag, char *why, size_t why_size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    char login_file[AGNES_PATH_MAX + 64];
    if (xdg != NULL && xdg[0] == '/')
        snprintf(login_file, sizeof login_file, "%s/agnes/credentials.json", xdg);
    else
        snprintf(login_file, sizeof login_file, "%s/.config/agnes/credentials.json", home ? home : "");
    if (client_flag) {
        snprintf(why, why_size, "asked for with --client");
        return true;
    }
    if (server_flag) {
        snprintf(why, why_size, "asked for with --server");
        return false;
    }
    if (getenv("DATA_DIR") != NULL || getenv("STATE_DIR") != NULL) {
        snprintf(why, why_size, "%s is set in the environment; `agnes doctor --client` checks an analyst login",
                 getenv("STATE_DIR") != NULL ? "STATE_DIR" : "DATA_DIR");
        return false;
    }
    if (util_file_exists("data/state/system.duckdb")) {
        snprintf(why, why_size,
                 "this directory holds a server's state (data/state/system.duckdb); `agnes doctor --client` checks "
                 "an analyst login");
        return false;
    }
    if (getenv("AGNES_SERVER") != NULL) {
        snprintf(why, why_size, "AGNES_SERVER is set and no server state is here; `agnes doctor --server` checks a "
                                "server");
        return true;
    }
    if (util_file_exists(login_file)) {
        snprintf(why, why_size,
                 "an analyst login exists (%s) and no server state is here (DATA_DIR and STATE_DIR unset, no "
                 "data/state/system.duckdb); `agnes doctor --server` checks a server",
                 login_file);
        return true;
    }
    snprintf(why, why_size, "no analyst login on this machine; `agnes doctor --client` checks one");
    return false;
}

int command_doctor(int argc, char **argv)
{
    bool as_json = false, client_side = false, server_side = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (strcmp(argv[i], "--client") == 0)
            client_side = true;
        else if (strcmp(argv[i], "--server") == 0)
            server_side = true;
        else {
            fprintf(stderr, "usage: agnes doctor [--json] [--server | --client]\n"
                            "  --server: this instance's configuration and state tier (the default where DATA_DIR or\n"
                            "  STATE_DIR is set, this directory holds data/state/system.duckdb, or no analyst login\n"
                            "  exists); --client: the analyst side (server reachable, token valid, workspace\n"
                            "  consistent). The first line says which ran and why.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : EXIT_USAGE;
        }
    }
    char why[AGNES_PATH_MAX + 300];
    if (choose_client_mode(client_side, server_side, why, sizeof why))
        return client_doctor(as_json, why);
    agnes_runtime rt = {0};
    agnes_error err;
    agnes_error_clear(&err);
    if (runtime_load(&rt, &err) != AGNES_OK) {
        fprintf(stderr, "agnes doctor: %s\n", err.message);
        runtime_free(&rt);
        return 1;
    }
    doctor_report report = {json_array(), 0};
    check_state_dir(&report, &rt);
    check_secret_file(&report, &rt, "jwt_secret", CFG_JWT_SECRET, STATE_JWT_SECRET);
    check_secret_file(&report, &rt, "session_secret", CFG_SESSION_SECRET, STATE_SESSION_SECRET);
    check_system_db(&report, &rt);
    long long minimum = config_get_int(&rt.config, CFG_HEALTH_MIN_FREE_BYTES);
    check_disk(&report, "data_disk_free", rt.paths.data_dir, minimum);
    check_disk(&report, "state_disk_free", rt.paths.state_dir, minimum);
    json_t *warnings = json_array();
    for (size_t i = 0; i < rt.config.warning_count; i++)
        json_array_append_new(warnings, json_string(rt.config.warnings[i]));
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:b}", "mode", "server", "mode_reason", why,
                            "version", rt.version.version, "channel", rt.version.channel, "schema_version",
                            migrations_latest(), "paths", paths_json(&rt.paths), "config", config_json(&rt.config),
                            "warnings", warnings, "checks", report.checks, "ok", report.failures == 0);
    if (as_json) {
        char *text = json_dumps(doc, JSON_INDENT(2));
        if (text)
            puts(text);
        free(text);
    } else {
        print_human(doc);
    }
    json_decref(doc);
    runtime_free(&rt);
    return report.failures == 0 ? 0 : 1;
}
