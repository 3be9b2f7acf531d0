"""Deprecation warnings from AGNES_RELEASE_INDEX (SPEC §12)."""
import http.server
import json
import threading
import time

import pytest

from conftest import Server
from health_view import full_health, with_service_token


def checked_health(server: Server, timeout=20):
    """Health once the first release-index read (on its own thread) has finished."""
    deadline = time.time() + timeout
    while True:
        body = full_health(server).json()
        if "checked_at" in body["checks"]["release_index"] or time.time() > deadline:
            return body
        time.sleep(0.1)

INDEX = {"stable": "2026.11.4",
         "deprecated": [{"version": "2026.11.1", "reason": "sync loses rows", "until": "2026-12-31"}]}


@pytest.fixture
def index_server():
    body = json.dumps(INDEX).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/releases.json"
    httpd.shutdown()


def test_deprecated_version_from_a_file_degrades_health(server_factory, env, workdir):
    index = workdir / "releases.json"
    index.write_text(json.dumps(INDEX))
    env.update(AGNES_RELEASE_INDEX=str(index), AGNES_VERSION="2026.11.1")
    server = server_factory(with_service_token(env))
    body = checked_health(server)
    assert server.get("/api/health").status_code == 200
    assert body["status"] == "degraded"
    assert body["warnings"] == ["Running deprecated version 2026.11.1. Update to stable (2026.11.4)."]
    assert body["checks"]["release_index"]["reason"] == "sync loses rows"


def test_deprecated_version_from_a_url(server_factory, env, index_server):
    env.update(AGNES_RELEASE_INDEX=index_server, AGNES_VERSION="2026.11.1")
    body = checked_health(server_factory(with_service_token(env)))
    assert body["warnings"] == ["Running deprecated version 2026.11.1. Update to stable (2026.11.4)."]


def test_current_version_has_no_warning(server_factory, env, index_server):
    env.update(AGNES_RELEASE_INDEX=index_server, AGNES_VERSION="2026.11.4")
    body = checked_health(server_factory(with_service_token(env)))
    assert body["status"] == "ok" and body["warnings"] == []
    assert body["checks"]["release_index"]["status"] == "ok"


def test_unreachable_index_is_a_warning_not_a_crash(server_factory, env):
    env.update(AGNES_RELEASE_INDEX="http://127.0.0.1:1/releases.json", AGNES_VERSION="2026.11.1")
    server = server_factory(with_service_token(env))
    body = checked_health(server)
    assert body["status"] == "degraded"
    assert len(body["warnings"]) == 1 and "unreachable" in body["warnings"][0]
    assert server.proc.poll() is None


def test_a_hanging_index_does_not_delay_the_start(server_factory, env):
    """A URL that accepts the connection but never answers: the server is up at once."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    env.update(AGNES_RELEASE_INDEX=f"http://127.0.0.1:{listener.getsockname()[1]}/releases.json")
    started = time.monotonic()
    server = server_factory(with_service_token(env))
    assert time.monotonic() - started < 5
    body = full_health(server).json()
    assert body["checks"]["release_index"]["detail"] == "the first read of the release index is in progress"
    assert body["status"] == "ok"
    listener.close()
