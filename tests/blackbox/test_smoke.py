"""scripts/smoke-test.sh (SPEC §13; issue 7): passes against a fresh `agnes serve`, and fails naming the
step when the server goes away mid-way."""
import signal
import subprocess
import time

from conftest import ROOT

SMOKE = str(ROOT / "scripts" / "smoke-test.sh")


def test_the_smoke_test_passes_against_a_fresh_server(server_factory, env):
    server = server_factory(dict(env, AGNES_DEMO="1"))
    out = subprocess.run([SMOKE, server.url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = [line.split(":")[0] for line in out.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert steps == ["PASS health", "PASS token", "PASS catalog", "PASS query", "PASS sync_trigger",
                     "PASS sync_finished", "PASS health_after"]
    # Run again: the instance now has an admin, so the token must come from SMOKE_TOKEN.
    again = subprocess.run([SMOKE, server.url], capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "FAIL token" in again.stdout and "SMOKE_TOKEN" in again.stdout


def test_the_smoke_test_fails_naming_the_step_when_the_server_stops(server_factory, env):
    server = server_factory(dict(env, AGNES_DEMO="1"))
    smoke = subprocess.Popen([SMOKE, server.url], stdout=subprocess.PIPE, text=True,
                             env={"PATH": "/usr/bin:/bin", "SMOKE_STEP_DELAY": "1", "SMOKE_RETRIES": "2"})
    time.sleep(2.5)  # health and token have passed
    server.stop(sig=signal.SIGKILL)
    out, _ = smoke.communicate(timeout=60)
    assert smoke.returncode == 1, out
    assert "PASS health:" in out and "FAIL" in out and "smoke test FAILED" in out
    failing = [line for line in out.splitlines() if line.startswith("FAIL")][0]
    assert "connection failed after 2 attempts" in failing, out
