"""The harness must not let the suite lie (issue 13, item 23): a server that ends badly fails its test, a
sanitizer report fails its test, a hung test fails alone, the logs of a failed test are kept, and process
checks see only this run's own processes.

Each case runs an inner pytest over the real conftest.py and pytest.ini, with AGNES_BIN pointing at a
stand-in `agnes` that misbehaves on request, and reads the inner run's verdicts."""
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

from conftest import ROOT

FAKE_AGNES = r'''#!/usr/bin/python3
import http.server, os, signal, sys

def report():
    if os.environ.get("FAKE_REPORT"):
        sys.stderr.write(os.environ["FAKE_REPORT"] + "\n")
        sys.stderr.flush()

if sys.argv[1] != "serve":
    report()
    sys.exit(int(os.environ.get("FAKE_EXIT", "0")))

def stop(*_):
    report()
    os._exit(int(os.environ.get("FAKE_EXIT", "0")))

signal.signal(signal.SIGTERM, stop)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

host, port = os.environ["AGNES_LISTEN"].rsplit(":", 1)
http.server.HTTPServer((host, int(port)), Handler).serve_forever()
'''

INNER_TESTS = r'''
import time
import pytest
from conftest import descendants, run_agnes

def test_a_clean_stop_passes(server):
    assert server.get("/api/version").status_code == 200

def test_a_leak_report_at_exit_fails(server_factory, env):
    server_factory(dict(env, FAKE_REPORT="==42==ERROR: LeakSanitizer: detected memory leaks"))

def test_a_non_zero_exit_on_sigterm_fails(server_factory, env):
    server_factory(dict(env, FAKE_EXIT="3"))

def test_an_undefined_behaviour_report_of_a_command_fails(env):
    run_agnes(["sync"], dict(env, FAKE_REPORT="src/sync/runner.c:10:5: runtime error: signed integer overflow",
                             FAKE_EXIT="1"))

def test_a_killed_server_is_the_tests_business(server):
    import signal
    assert server.stop(sig=signal.SIGKILL) == -signal.SIGKILL

@pytest.mark.timeout(2)
def test_a_hang_fails_alone():
    time.sleep(60)

def test_process_checks_see_only_this_run(foreign_pid):
    assert descendants("sleep 283") == []

@pytest.fixture
def foreign_pid():
    import os
    return int(os.environ["FOREIGN_PID"])
'''


def test_the_harness_fails_bad_endings_keeps_their_logs_and_times_out_hangs(workdir):
    inner = workdir / "inner"
    inner.mkdir()
    for name in ("conftest.py", "pytest.ini"):
        shutil.copy(ROOT / "tests" / "blackbox" / name, inner / name)
    (inner / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    fake = workdir / "fake-agnes"
    fake.write_text(FAKE_AGNES)
    fake.chmod(0o755)
    logs = workdir / "kept-logs"
    # A process with the same command line outside the inner run's tree (a sibling of it).
    foreign = subprocess.Popen(["sleep", "283"])
    try:
        env = dict(os.environ, AGNES_BIN=str(fake), AGNES_TEST_LOGS=str(logs), FOREIGN_PID=str(foreign.pid))
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              f"--junitxml={workdir / 'inner.xml'}", str(inner)],
                             env=env, cwd=str(inner), capture_output=True, text=True, timeout=120)
    finally:
        foreign.kill()
        foreign.wait()
    assert out.returncode == 1, out.stdout + out.stderr
    verdicts = {}
    for case in ET.parse(workdir / "inner.xml").getroot().iter("testcase"):
        bad = [child for child in case if child.tag in ("failure", "error")]
        verdicts[case.get("name")] = (bad[0].tag, bad[0].get("message", "") + (bad[0].text or "")) if bad \
            else ("passed", "")
    assert verdicts["test_a_clean_stop_passes"][0] == "passed"
    assert verdicts["test_a_killed_server_is_the_tests_business"][0] == "passed"
    assert verdicts["test_process_checks_see_only_this_run"][0] == "passed"
    leak = verdicts["test_a_leak_report_at_exit_fails"]
    assert leak[0] == "error" and "printed a sanitizer report" in leak[1] and "LeakSanitizer" in leak[1], leak
    exit3 = verdicts["test_a_non_zero_exit_on_sigterm_fails"]
    assert exit3[0] == "error" and "exited with 3 when stopped with signal 15" in exit3[1], exit3
    ub = verdicts["test_an_undefined_behaviour_report_of_a_command_fails"]
    assert ub[0] == "failure" and "agnes sync printed a sanitizer report" in ub[1] and "runtime error" in ub[1], ub
    hang = verdicts["test_a_hang_fails_alone"]
    assert hang[0] == "failure" and "Timeout" in hang[1], hang
    kept = logs / "test_inner.py_test_a_leak_report_at_exit_fails"
    assert any("LeakSanitizer" in p.read_text() for p in kept.glob("agnes-*.log")), list(logs.rglob("*"))
    assert not (logs / "test_inner.py_test_a_clean_stop_passes").exists()  # passing tests leave nothing
