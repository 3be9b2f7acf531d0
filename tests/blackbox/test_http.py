"""What any HTTP client sees: health, version, request ids, 404/405/413."""
import re
import socket

import requests

from conftest import run_agnes


def test_health_reports_status_version_channel_schema_and_checks(server):
    r = server.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] and body["channel"]
    assert body["schema"]["current"] == body["schema"]["expected"] >= 1
    for check in ("state_dir", "system_db", "secrets", "disk_free"):
        assert body["checks"][check]["status"] == "ok", body["checks"][check]
    assert body["warnings"] == []
    assert r.headers["Content-Type"] == "application/json"


def test_version_endpoint_and_env_overrides(server_factory, env):
    env.update(AGNES_VERSION="2026.11.7", RELEASE_CHANNEL="stable", AGNES_COMMIT_SHA="abc1234",
               AGNES_TAG="stable-2026.11.7")
    server = server_factory(env)
    v = server.get("/api/version").json()
    assert v["version"] == "2026.11.7"
    assert v["channel"] == "stable"
    assert v["commit_sha"] == "abc1234"
    assert v["tag"] == "stable-2026.11.7"
    assert isinstance(v["schema_version"], int)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["started_at"])
    health = server.get("/api/health").json()
    assert (health["version"], health["channel"]) == ("2026.11.7", "stable")


def test_every_response_carries_a_request_id(server):
    generated = server.get("/api/health").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{12}", generated)
    assert server.get("/api/health", headers={"X-Request-ID": "trace-42_A"}).headers["X-Request-ID"] == "trace-42_A"
    # Anything that could smuggle text into the log is replaced, not echoed.
    replaced = server.get("/api/health", headers={"X-Request-ID": "bad id\"; rm"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{12}", replaced)
    assert "trace-42_A" in server.wait_for_log("trace-42_A")  # the access log names it


def test_access_log_has_one_line_per_request(server):
    server.get("/api/version", headers={"X-Request-ID": "count-me"})
    lines = [l for l in server.wait_for_log("request_id=count-me").splitlines() if "request_id=count-me" in l]
    assert len(lines) == 1
    assert "method=GET" in lines[0] and 'path="/api/version"' in lines[0] and "status=200" in lines[0]


def test_unknown_route_is_404_json_with_a_sentence(server):
    requests.post(server.url + "/auth/bootstrap", json={"email": "a@example.com", "password": "long enough password"},
                  timeout=30)  # before that, setup mode answers 503 for every unknown path
    r = server.get("/api/nothing-here")
    assert r.status_code == 404
    assert "/api/nothing-here" in r.json()["detail"]


def test_wrong_method_is_405_with_allow(server):
    r = requests.delete(server.url + "/api/health", timeout=5)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET"
    assert "use GET" in r.json()["detail"]


def test_oversized_body_is_413_with_the_limit(server_factory, env):
    env["AGNES_MAX_BODY_BYTES"] = "2048"
    server = server_factory(env)
    r = requests.post(server.url + "/api/health", data=b"x" * 5000, timeout=5)
    assert r.status_code == 413
    assert "2048" in r.json()["detail"] and "AGNES_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks():  # no Content-Length: the cap applies while reading
        for _ in range(10):
            yield b"y" * 1000
    r = requests.post(server.url + "/api/anything", data=chunks(), timeout=5)
    assert r.status_code == 413
    # A body under the cap reaches routing as usual.
    assert requests.post(server.url + "/api/health", data=b"z" * 100, timeout=5).status_code == 405


def test_garbage_request_does_not_take_the_server_down(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"\x00\x01 NOT HTTP\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(1024)  # an error reply or a close; either is fine
        except OSError:
            pass
    assert server.get("/api/health").status_code == 200


def test_cli_version_help_and_unknown_command(env):
    out = run_agnes(["--version"], env)
    assert out.returncode == 0 and out.stdout.startswith("agnes ")
    assert "schema" in out.stdout
    out = run_agnes(["help"], env)
    assert out.returncode == 0 and "serve" in out.stdout and "doctor" in out.stdout
    out = run_agnes(["frobnicate"], env)
    assert out.returncode == 2 and "agnes help" in out.stderr
