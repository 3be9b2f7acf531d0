#include "sync/connector_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

#define KILL_GRACE_MS 2000
#define POLL_MS 20

/* In the child: wire up stdin/stdout/stderr and exec.  Never returns.
 * Between fork and exec of a threaded process only async-signal-safe
 * calls are allowed, hence write() of fixed text instead of printf. */
static void exec_child(const connector_command *command, int stdin_read, int log_fd)
{
    static const char exec_failed[] = "agnes: cannot execute the connector (is it executable, with a #! line?)\n";
    setpgid(0, 0); /* its own group: a deadline kills grandchildren too */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &default_action, NULL); /* the server ignores it; ignoring is inherited across exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* the server blocks SIGTERM; a connector must not inherit that */
    if (dup2(stdin_read, STDIN_FILENO) < 0 || dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0)
        _exit(127);
    if (command->working_dir != NULL && chdir(command->working_dir) != 0)
        _exit(127);
    char *argv[] = {(char *)command->executable, NULL};
    execve(command->executable, argv, (char *const *)command->env);
    ssize_t ignored = write(STDERR_FILENO, exec_failed, sizeof exec_failed - 1);
    (void)ignored;
    _exit(127);
}

/* The connector's stdin, fed while it runs.  The write end is non-blocking:
 * a connector that never reads its input can neither hold us past the
 * deadline (a blocking write of more than a pipe's 64 KiB would wait for
 * ever) nor, by exiting or closing stdin first, kill us with SIGPIPE. */
typedef struct input_feed {
    int fd; /* -1 once closed */
    const char *data;
    size_t left;
} input_feed;

/* write(2) with SIGPIPE held back for this thread only, so this works in
 * any process whatever its SIGPIPE disposition (`agnes sync` used to die
 * with exit -13 when a connector exited before reading its stdin): a
 * signal the write raised is consumed before the old mask returns. */
static ssize_t write_without_sigpipe(int fd, const void *data, size_t len)
{
    sigset_t pipe_signal, old_mask, pending;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
    ssize_t n = write(fd, data, len);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        struct timespec now = {0, 0};
        while (sigtimedwait(&pipe_signal, NULL, &now) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    errno = saved;
    return n;
}

/* Write what the pipe takes now; close when all is written or the reader
 * is gone (EPIPE: a connector that exits without reading is not an error). */
static void feed_input(input_feed *feed)
{
    while (feed->fd >= 0 && feed->left > 0) {
        ssize_t n = write_without_sigpipe(feed->fd, feed->data, feed->left);
        if (n > 0) {
            feed->data += n;
            feed->left -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return; /* full: the connector reads at its own pace */
        } else {
            break;
        }
    }
    if (feed->fd >= 0) {
        close(feed->fd);
        feed->fd = -1;
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait for pid until deadline_ms (or cancel), feeding its input meanwhile;
 * then kill its group. */
static int wait_bounded(pid_t pid, double deadline_ms, const atomic_bool *cancel, input_feed *feed,
                        connector_outcome *out)
{
    int status = 0;
    bool terminated = false;
    double kill_at = 0;
    for (;;) {
        feed_input(feed);
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (done < 0 && errno != EINTR)
            return -1;
        double now = util_monotonic_ms();
        bool cancelled = cancel != NULL && atomic_load(cancel);
        if (!terminated && (now >= deadline_ms || cancelled)) {
            out->timed_out = !cancelled;
            out->cancelled = cancelled;
            kill(-pid, SIGTERM);
            terminated = true;
            kill_at = now + KILL_GRACE_MS;
        } else if (terminated && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = now + 60000.0;
        }
        if (feed->fd >= 0 && !terminated) { /* wake as soon as the pipe has room again */
            struct pollfd writable = {.fd = feed->fd, .events = POLLOUT};
            poll(&writable, 1, POLL_MS);
        } else {
            sleep_ms(POLL_MS);
        }
    }
    if (feed->fd >= 0) { /* it exited without reading everything */
        close(feed->fd);
        feed->fd = -1;
    }
    if (terminated)
        kill(-pid, SIGKILL); /* anything of its group still around */
    out->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return 0;
}

int connector_process_run(const connector_command *command, connector_outcome *out, agnes_error *err)
{
    memset(out, 0, sizeof *out);
    int pipe_fds[2];
    int log_fd = open(command->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create the connector log %s: %s", command->log_path,
                               strerror(errno));
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        close(log_fd);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot create a pipe: %s", strerror(errno));
    }
    double started = util_monotonic_ms();
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(log_fd);
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return agnes_error_set(err, AGNES_ERR_IO, "cannot start %s: %s", command->executable, strerror(saved));
    }
    if (pid == 0)
        exec_child(command, pipe_fds[0], log_fd);
    setpgid(pid, pid); /* also here, so kill(-pid) works even if the child has not run yet */
    if (command->pid_file != NULL) {
        char text[32];
        agnes_error ignored;
        snprintf(text, sizeof text, "%d\n", (int)pid);
        util_write_file_atomic(command->pid_file, text, strlen(text), 0644, &ignored);
    }
    close(pipe_fds[0]);
    close(log_fd);
    input_feed feed = {pipe_fds[1], command->input ? command->input : "",
                       command->input ? strlen(command->input) : 0};
    if (fcntl(feed.fd, F_SETFL, fcntl(feed.fd, F_GETFL) | O_NONBLOCK) != 0) {
        close(feed.fd); /* cannot happen on a fresh pipe; the connector then sees an empty stdin */
        feed.fd = -1;
    }
    int rc = wait_bounded(pid, started + command->timeout_seconds * 1000.0, command->cancel, &feed, out);
    out->elapsed_ms = util_monotonic_ms() - started;
    if (rc != 0)
        return agnes_error_set(err, AGNES_ERR_IO, "lost track of connector process %d: %s", (int)pid, strerror(errno));
    return AGNES_OK;
}

void connector_process_log_tail(const char *log_path, char *out, size_t max_bytes)
{
    out[0] = '\0';
    FILE *f = fopen(log_path, "r");
    if (f == NULL)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        long start = size > (long)max_bytes - 1 ? size - (long)max_bytes + 1 : 0;
        if (fseek(f, start, SEEK_SET) == 0) {
            size_t n = fread(out, 1, max_bytes - 1, f);
            out[n] = '\0';
        }
    }
    fclose(f);
    size_t len = strlen(out);
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '"')
            *p = *p == '"' ? '\'' : ' ';
}
