"""Black-box harness: start the real `agnes` binary on a free loopback port
with its own DATA_DIR/STATE_DIR, and look at it the way a user would."""
import os
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

# Variables a developer's shell might carry that would change what a test sees.
_SCRUBBED = [k for k in os.environ if k.startswith("AGNES_") and k not in ("AGNES_BIN", "AGNES_TOOLS")] + [
    "DATA_DIR", "STATE_DIR", "CONFIG_DIR", "CONNECTORS_DIR", "JWT_SECRET_KEY", "SESSION_SECRET",
    "RELEASE_CHANNEL", "LOG_LEVEL", "DOMAIN"]


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
        "AGNES_THREADS": "2",
        "AGNES_AUTH_RATE_LIMIT": "1000",  # tests of the limiter set their own
        "AGNES_SCHEDULER": "off",  # a background sync would race the tests; test_sync turns it on
    })
    return env


def run_agnes(args, env, timeout=30):
    return subprocess.run([AGNES_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout)


def duckdb_exec(path, sql):
    out = subprocess.run([os.path.join(AGNES_TOOLS, "duckdb_exec"), str(path), sql],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


class Server:
    def __init__(self, env, cwd, wrapper=()):
        self.wrapper = list(wrapper)
        self.port = free_port()
        self.env = dict(env, AGNES_LISTEN=f"127.0.0.1:{self.port}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(cwd) / f"agnes-{self.port}.log"
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([*self.wrapper, AGNES_BIN, "serve"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agnes exited with {self.proc.returncode}:\n{self.output()}")
            try:
                requests.get(self.url + "/api/version", timeout=0.5)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("agnes did not start listening:\n" + self.output())

    def output(self):
        self.log.flush()
        return self.log_path.read_text()

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
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="agnes-bb-") as d:
        path = Path(d)
        (path / "config").mkdir()
        yield path


@pytest.fixture
def env(workdir):
    return base_env(workdir)


@pytest.fixture
def server_factory(workdir):
    started = []

    def make(env, wait=True, wrapper=()):
        server = Server(env, workdir, wrapper)
        started.append(server)
        return server.start(wait=wait)

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory, env):
    return server_factory(env)
