"""Black-box harness: start the real `agnes` binary on a free loopback port
with its own DATA_DIR/STATE_DIR, and look at it the way a user would.

The harness itself must not let the suite lie:
- every server it starts is judged when it stops: a server stopped with SIGTERM must exit 0, one that
  died of a signal nobody sent, or printed a sanitizer report (ASan, UBSan, LSan) at any time, fails
  the test that started it, with the log's tail in the message;
- the logs of a failed test are kept under AGNES_TEST_LOGS (default build/test-logs/<test>/);
- every agnes command run through run_agnes() is checked for a sanitizer report the same way;
- every test has a timeout (pytest-timeout, installed by scripts/bootstrap; pytest.ini sets it);
- process checks look only at this test run's own process tree (see descendants()), never the host's.
"""
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
AGNES_BIN = os.environ.get("AGNES_BIN", str(ROOT / "build" / "agnes"))
AGNES_TOOLS = os.environ.get("AGNES_TOOLS", str(ROOT / "build" / "tests"))
# Where the logs of failed tests are kept (tests/run-all points it into the build directory it tests).
TEST_LOGS = Path(os.environ.get("AGNES_TEST_LOGS", str(ROOT / "build" / "test-logs")))

# Variables a developer's shell might carry that would change what a test sees.
_SCRUBBED = [k for k in os.environ if k.startswith("AGNES_") and k not in ("AGNES_BIN", "AGNES_TOOLS")] + [
    "DATA_DIR", "STATE_DIR", "CONFIG_DIR", "CONNECTORS_DIR", "JWT_SECRET_KEY", "SESSION_SECRET",
    "RELEASE_CHANNEL", "LOG_LEVEL", "DOMAIN"]

# The first line of every report the sanitizers print (ASan, LSan, UBSan, TSan).
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|: runtime error: |"
                              r"SUMMARY: (Address|Leak|Undefined|Thread)\w*Sanitizer")


def _become_subreaper():
    """Make this pytest process the reaper of every orphan its tests leave (PR_SET_CHILD_SUBREAPER).

    A connector whose server was killed with SIGKILL is re-parented to us instead of to init, so a
    check that it is gone can look at this run's own process tree instead of the whole host's (a
    host-wide `pgrep -f "sleep 28"` failed whenever another process happened to run `sleep 280`)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_subreaper()


def pytest_sessionfinish(session, exitstatus):
    """Reap the orphans we adopted as subreaper (exited daemons: postgres, git's background gc)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _proc_status(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ..." where comm may contain spaces and parentheses.
    rest = text[text.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def descendants(pattern=None, root=None):
    """Live processes under root (default: this pytest process) whose command line contains pattern.

    Zombies are not alive (their command line is empty). Returns [(pid, cmdline)]."""
    root = root or os.getpid()
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_status(entry)
            if st and st[0] != "Z":
                children.setdefault(st[1], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            if pattern is None or pattern in cmdline:
                found.append((pid, cmdline))
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp):
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({
        "DATA_DIR": str(tmp / "data"),
        "STATE_DIR": str(tmp / "state"),
        "CONFIG_DIR": str(tmp / "config"),
        "AGNES_MIN_FREE_BYTES": "1",   # a nearly full CI disk must not flip health
        "AGNES_RESULT_MIN_FREE_BYTES": "0",  # nor refuse result handles (test_result_bounds sets its own)
        "AGNES_THREADS": "2",
        "AGNES_AUTH_RATE_LIMIT": "1000",  # tests of the limiter set their own
        "AGNES_SCHEDULER": "off",  # a background sync would race the tests; test_sync turns it on
    })
    return env


def sanitizer_report(text):
    """The sanitizer report in text (from its first line on), or None."""
    match = SANITIZER_REPORT.search(text or "")
    if not match:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    return text[start:start + 4000]


def check_no_sanitizer_report(what, *texts):
    for text in texts:
        report = sanitizer_report(text)
        if report:
            raise AssertionError(f"{what} printed a sanitizer report:\n{report}")


def run_agnes(args, env, timeout=30, **kw):
    out = subprocess.run([AGNES_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout, **kw)
    check_no_sanitizer_report(f"agnes {' '.join(args)}", out.stderr)
    return out


def duckdb_exec(path, sql):
    out = subprocess.run([os.path.join(AGNES_TOOLS, "duckdb_exec"), str(path), sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


class Server:
    """One `agnes serve` process. Each start writes its own log (agnes-PORT.log, the previous start's
    kept as agnes-PORT.N.log); each stop judges how the process ended (see problems)."""

    def __init__(self, env, cwd, wrapper=(), listen_host="127.0.0.1"):
        self.wrapper = list(wrapper)
        self.port = free_port()
        # Tests talk to 127.0.0.1; listen_host "0.0.0.0" makes it a public-facing instance (not a loopback trial).
        self.env = dict(env, AGNES_LISTEN=f"{listen_host}:{self.port}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = Path(cwd)
        self.log_path = self.cwd / f"agnes-{self.port}.log"
        self.proc = None
        self.starts = 0
        self.ready = False      # it answered once: exiting on its own after that is not a refusal to start
        self.judged = True      # the current process has been judged (nothing running)
        self.problems = []      # sentences: how a server process of this test ended badly

    def start(self, wait=True):
        if self.proc is not None and not self.judged:
            self.stop()
        if self.starts and self.log_path.exists():
            self.log_path.rename(self.cwd / f"agnes-{self.port}.{self.starts}.log")
        self.starts += 1
        self.ready = False
        self.judged = False
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*self.wrapper, AGNES_BIN, "serve"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=90):
        """Returns as soon as the server answers; the deadline is for a sanitizer build on a loaded machine
        (an ASan start with the demo took 25 s on two shared cores, and failed a 20 s deadline)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agnes exited with {self.proc.returncode}:\n{self.output()}")
            try:
                requests.get(self.url + "/api/version", timeout=0.5)
                self.ready = True
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("agnes did not start listening:\n" + self.output())

    def output(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text, timeout=5):
        """The log once it contains text (a request is logged when MHD reports it
        complete, which can be a moment after the client has its response)."""
        deadline = time.time() + timeout
        while text not in self.output() and time.time() < deadline:
            time.sleep(0.02)
        return self.output()

    def get(self, path, **kw):
        return requests.get(self.url + path, timeout=10, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=40):
        """Stop the server (if it still runs) and return its exit status (negative: killed by that signal).

        Judges how it ended, into self.problems: a SIGTERM/SIGINT stop must end with 0 within timeout;
        a process that ended on its own must not have died of a signal, nor exited non-zero after it
        had served (a refusal to start is a test's business); no log may hold a sanitizer report."""
        if not self.proc:
            return None
        sent = None
        if self.proc.poll() is None:
            sent = sig
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._problem(f"did not stop within {timeout} s of signal {int(sig)}; killed")
        rc = self.proc.returncode
        if not self.judged:
            self.judged = True
            self.log.close()
            if sent in (signal.SIGTERM, signal.SIGINT) and rc != 0:
                self._problem(f"exited with {rc} when stopped with signal {int(sent)} (expected 0)")
            elif sent is None and rc < 0 and -rc != signal.SIGKILL:
                self._problem(f"died of signal {-rc} that the test did not send")
            elif sent is None and rc > 0 and self.ready:
                self._problem(f"exited on its own with {rc} while serving")
            report = sanitizer_report(self.log_path.read_text(errors="replace"))
            if report:
                self._problem("printed a sanitizer report:\n" + report)
        return rc

    def _problem(self, sentence):
        self.problems.append(f"agnes serve on port {self.port} (start {self.starts}, log {self.log_path.name}) "
                             f"{sentence}")


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError("pytest-timeout is missing, so one hung test would stall the whole run: "
                                "run scripts/bootstrap (it installs Debian's python3-pytest-timeout)")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item, so fixtures can tell whether their test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "agnes_report_" + report.when, report)


def _test_failed(node):
    return any(getattr(getattr(node, "agnes_report_" + when, None), "failed", False) for when in ("setup", "call"))


def keep_logs(node, directory):
    """Copy the logs a test wrote in its work directory to TEST_LOGS/<test>/; returns that path."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid)[:200]
    target = TEST_LOGS / name
    shutil.rmtree(target, ignore_errors=True)
    for log in sorted(Path(directory).rglob("*.log")):
        dest = target / log.relative_to(directory)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(log, dest)
        except OSError:
            pass
    return target


@pytest.fixture
def workdir(request):
    with tempfile.TemporaryDirectory(prefix="agnes-bb-") as d:
        path = Path(d)
        (path / "config").mkdir()
        yield path
        if _test_failed(request.node) or getattr(request.node, "agnes_server_problems", None):
            kept = keep_logs(request.node, path)
            request.node.add_report_section("teardown", "agnes logs", f"kept in {kept}")
        else:  # a pass leaves no stale logs of an earlier failure behind
            shutil.rmtree(TEST_LOGS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[:200], ignore_errors=True)


@pytest.fixture
def env(workdir):
    return base_env(workdir)


@pytest.fixture
def server_factory(workdir, request):
    started = []

    def make(env, wait=True, wrapper=(), listen_host="127.0.0.1"):
        server = Server(env, workdir, wrapper, listen_host)
        started.append(server)
        return server.start(wait=wait)

    yield make
    problems = []
    for server in started:
        server.stop()
        problems += server.problems
    if problems:
        request.node.agnes_server_problems = problems
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def server(server_factory, env):
    return server_factory(env)
