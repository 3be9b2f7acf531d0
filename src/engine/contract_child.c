/*
 * contract_child.c - contract_check(): the extract check, run in a child
 * process so that a file able to crash DuckDB crashes only the child.
 *
 * An extract.duckdb is written by a connector (possibly someone else's
 * program), a person or a failing disk.  DuckDB 1.4 trusts a block whose
 * checksum is right: bytes damaged behind valid checksums end in SIGSEGV
 * inside duckdb_open or the first catalog read.  Checked in the server, that
 * was the server's end - at start-up a restart loop.  So the check runs as
 * `agnes contract check --in-process --json PATH` (this same binary,
 * /proc/self/exe), with its own address-space cap and deadline, and its JSON
 * report is read back.  A child that dies of a signal, or outlives the
 * deadline, is itself the verdict: the file is reported as
 * CONTRACT_RULE_ENGINE_CRASH / CONTRACT_RULE_ENGINE_TIMEOUT.
 *
 * Cost: one exec and one DuckDB open, ~40 ms per extract, paid only when an
 * extract changed (the orchestrator rebuilds on a changed fingerprint) or a
 * connector published one.
 */
#include "engine/contract.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

extern char **environ;

#define REPORT_MAX_BYTES (8 * 1024 * 1024)

/* environ without the two allowlist variables, then the caller's values:
 * the child must judge by the same lists as the parent. */
static char **child_environment(const contract_allowlists *allow, char *extensions, size_t extensions_size,
                                char *token_envs, size_t token_envs_size)
{
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    char **env = calloc(count + 3, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "AGNES_REMOTE_ATTACH_EXTENSIONS=", 31) != 0 &&
            strncmp(environ[i], "AGNES_REMOTE_ATTACH_TOKEN_ENVS=", 31) != 0)
            env[n++] = environ[i];
    snprintf(extensions, extensions_size, "AGNES_REMOTE_ATTACH_EXTENSIONS=%s", allow->extensions);
    snprintf(token_envs, token_envs_size, "AGNES_REMOTE_ATTACH_TOKEN_ENVS=%s", allow->token_envs);
    env[n++] = extensions;
    env[n++] = token_envs;
    env[n] = NULL;
    return env;
}

/* Everything the child writes to stdout until it closes it, the deadline
 * passes or REPORT_MAX_BYTES is reached.  *timed_out says which. */
static char *read_until(int fd, double deadline_ms, size_t *len, bool *timed_out)
{
    size_t cap = 16 * 1024;
    char *buf = malloc(cap);
    *len = 0;
    *timed_out = false;
    if (buf == NULL)
        return NULL;
    for (;;) {
        double left = deadline_ms - util_monotonic_ms();
        if (left <= 0) {
            *timed_out = true;
            break;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int ready = poll(&pfd, 1, left > 1000 ? 1000 : (int)left + 1);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            continue;
        if (*len + 4096 + 1 > cap) {
            if (cap >= REPORT_MAX_BYTES)
                break;
            char *grown = realloc(buf, cap * 2);
            if (grown == NULL)
                break;
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + *len, cap - *len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        *len += (size_t)n;
    }
    buf[*len] = '\0';
    return buf;
}

/* Wait for the child until the deadline, then kill it.  *status as from waitpid;
 * false when it had to be killed. */
static bool reap(pid_t pid, double deadline_ms, int *status)
{
    for (;;) {
        pid_t done = waitpid(pid, status, WNOHANG);
        if (done == pid)
            return true;
        if (done < 0 && errno != EINTR)
            return true; /* already reaped elsewhere: nothing to wait for */
        if (util_monotonic_ms() >= deadline_ms)
            break;
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    return false;
}

int contract_report_from_json(const json_t *doc, contract_report *report, agnes_error *err)
{
    json_t *violations = json_object_get(doc, "violations");
    memset(report, 0, sizeof *report);
    if (!json_is_object(doc) || !json_is_array(violations))
        return agnes_error_set(err, AGNES_ERR_INVALID, "not a contract report");
    report->tables = (int)json_integer_value(json_object_get(doc, "tables"));
    report->local_tables = (int)json_integer_value(json_object_get(doc, "local_tables"));
    json_t *names = json_object_get(doc, "names");
    report->names = json_is_array(names) ? json_incref(names) : NULL;
    size_t i;
    json_t *item;
    json_array_foreach(violations, i, item) {
        const char *rule = json_string_value(json_object_get(item, "rule"));
        const char *message = json_string_value(json_object_get(item, "message"));
        const char *fix = json_string_value(json_object_get(item, "fix"));
        if (contract_report_add(report, rule ? rule : "unknown", message ? message : "", fix ? fix : "", err) !=
            AGNES_OK) {
            contract_report_free(report);
            return err->code;
        }
    }
    return AGNES_OK;
}

/* The child's JSON report into report; false when it is not one. */
static bool parse_report(const char *text, contract_report *report, agnes_error *err, int *rc)
{
    json_t *doc = json_loads(text, 0, NULL);
    int parsed = doc ? contract_report_from_json(doc, report, err) : AGNES_ERR_INVALID;
    json_decref(doc);
    *rc = parsed == AGNES_ERR_INVALID ? AGNES_OK : parsed;
    return parsed != AGNES_ERR_INVALID;
}

static const char damaged_fix[] =
    "the file is damaged (its bytes do not describe a valid database although its block checksums pass) or was "
    "written by something other than DuckDB 1.4: rebuild it from its source (run the connector or sync again); "
    "never edit extract.duckdb in place";

int contract_check(const char *path, const contract_allowlists *allow, contract_report *report, agnes_error *err)
{
    memset(report, 0, sizeof *report);
    char self[AGNES_PATH_MAX], extensions[CONTRACT_ALLOWLIST_MAX + 40], token_envs[CONTRACT_ALLOWLIST_MAX + 40];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot find this program (/proc/self/exe): %s", strerror(errno));
    self[n] = '\0';
    char **env = child_environment(allow, extensions, sizeof extensions, token_envs, sizeof token_envs);
    int out[2] = {-1, -1};
    if (env == NULL || pipe2(out, O_CLOEXEC) != 0) {
        free(env);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start the extract check: %s", strerror(errno));
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3); /* no socket or database of the server leaks in */
    char *argv[] = {self, "contract", "check", "--in-process", "--json", (char *)path, NULL};
    pid_t pid = 0;
    int spawned = posix_spawn(&pid, self, &actions, NULL, argv, env);
    posix_spawn_file_actions_destroy(&actions);
    free(env);
    close(out[1]);
    if (spawned != 0) {
        close(out[0]);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start the extract check (%s): %s", self, strerror(spawned));
    }
    double deadline = util_monotonic_ms() + CONTRACT_CHECK_TIMEOUT_SECONDS * 1000.0;
    size_t len = 0;
    bool timed_out = false;
    char *text = read_until(out[0], deadline, &len, &timed_out);
    close(out[0]);
    int status = 0;
    bool exited = reap(pid, timed_out ? 0 : deadline, &status) && !timed_out;
    int rc = AGNES_OK;
    char message[600];
    if (!exited) {
        snprintf(message, sizeof message,
                 "checking %s did not finish within %d seconds (DuckDB may loop on a damaged file); the check was "
                 "stopped",
                 path, CONTRACT_CHECK_TIMEOUT_SECONDS);
        rc = contract_report_add(report, CONTRACT_RULE_ENGINE_TIMEOUT, message, damaged_fix, err);
    } else if (WIFSIGNALED(status)) {
        snprintf(message, sizeof message, "reading %s crashed the DuckDB engine (signal %d, %s)", path,
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
        rc = contract_report_add(report, CONTRACT_RULE_ENGINE_CRASH, message, damaged_fix, err);
    } else if (text == NULL) {
        rc = agnes_error_set(err, AGNES_ERR_NOMEM, "out of memory reading the check of %s", path);
    } else if ((WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 1) || !parse_report(text, report, err, &rc)) {
        /* The check ended without its verdict: the engine failed on the file
         * in a way that did not kill it by a signal (a sanitizer's report, an
         * uncaught exception turned into an exit). */
        contract_report_free(report);
        snprintf(message, sizeof message, "reading %s made the DuckDB engine fail without a verdict (exit %d)", path,
                 WEXITSTATUS(status));
        rc = contract_report_add(report, CONTRACT_RULE_ENGINE_CRASH, message, damaged_fix, err);
    }
    free(text);
    return rc;
}
