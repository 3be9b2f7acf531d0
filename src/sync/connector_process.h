/*
 * connector_process.h - run a connector executable, bounded and clean.
 *
 * A custom connector is any executable.  It gets a clean environment (a
 * fixed PATH, LANG, HOME, the variables the runner names, and nothing else
 * of the server's: no JWT secret, no tokens it was not given), its input as
 * JSON on stdin, stdout+stderr in a log file, its own process group, and a
 * deadline after which the whole group gets SIGTERM and, two seconds later,
 * SIGKILL.  The exit code is the connector's verdict: 0 ok, 2 partial,
 * anything else failed.  It also dies with the server (PR_SET_PDEATHSIG),
 * so a killed server leaves no connector behind writing into a run that
 * will never be published.
 */
#ifndef AGNES_SYNC_CONNECTOR_PROCESS_H
#define AGNES_SYNC_CONNECTOR_PROCESS_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/error.h"

#define CONNECTOR_ENV_MAX 32

typedef struct connector_command {
    const char *executable;
    const char *working_dir;
    const char *input;    /* written to stdin, then closed */
    const char *log_path; /* stdout and stderr, truncated first */
    double timeout_seconds;
    const atomic_bool *cancel; /* optional: when it turns true, stop the connector as at the deadline */
    const char *pid_file;      /* optional: the process group id is written here while it runs */
    const char *env[CONNECTOR_ENV_MAX]; /* "NAME=value" entries, NULL-terminated */
} connector_command;

typedef struct connector_outcome {
    int exit_code;  /* -1 when killed by a signal */
    bool timed_out;
    bool cancelled; /* stopped because the server is shutting down */
    double elapsed_ms;
} connector_outcome;

/* Run to completion or deadline.  Fails only when the process could not be
 * started (AGNES_ERR_IO naming the executable and why). */
int connector_process_run(const connector_command *command, connector_outcome *out, agnes_error *err);

/* The last lines of a log file (at most max_bytes), for an error sentence. */
void connector_process_log_tail(const char *log_path, char *out, size_t max_bytes);

#endif
