"""What any HTTP client sees: health, version, request ids, 404/405/413."""
import re
import socket

import requests

from conftest import run_agnes
from health_view import full_health, with_service_token


def test_health_reports_status_version_channel_schema_and_checks(server_factory, env, workdir):
    server = server_factory(with_service_token(env))
    r = full_health(server)  # an admin (here the service identity) sees the whole document
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["version"] and body["channel"]
    assert body["schema"]["current"] == body["schema"]["expected"] >= 1
    for check in ("state_dir", "system_db", "secrets", "disk_free"):
        assert body["checks"][check]["status"] == "ok", body["checks"][check]
    assert body["checks"]["state_dir"]["path"] == str(workdir / "state")
    assert body["warnings"] == []
    assert r.headers["Content-Type"] == "application/json"


def test_anonymous_health_shows_status_version_and_channel_only(server_factory, env, workdir):
    server = server_factory(with_service_token(env))
    anonymous = server.get("/api/health")
    assert anonymous.status_code == 200 and anonymous.headers["Cache-Control"] == "no-store"
    full = full_health(server).json()
    assert anonymous.json() == {"status": "ok", "version": full["version"], "channel": full["channel"]}
    assert str(workdir) not in anonymous.text and "bytes" not in anonymous.text
    # A bad token is simply anonymous, not an error: load balancers and smoke tests never break.
    assert server.get("/api/health", headers={"Authorization": "Bearer nonsense"}).json() == anonymous.json()
    # A signed-in analyst sees the schema and each check's status, no paths or byte counts.
    admin = bootstrap(server).json()["access_token"]
    requests.post(server.url + "/api/users", json={"email": "ana@example.com", "password": "analyst password 1"},
                  headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    analyst = requests.post(server.url + "/auth/token", json={"email": "ana@example.com",
                                                              "password": "analyst password 1"}, timeout=30).json()
    mine = server.get("/api/health", headers={"Authorization": f"Bearer {analyst['access_token']}"}).json()
    assert mine["schema"] == full["schema"] and mine["checks"]["state_dir"] == {"status": "ok"}
    assert str(workdir) not in json.dumps(mine) and "warnings" not in mine
    admin_view = server.get("/api/health", headers={"Authorization": f"Bearer {admin}"}).json()
    assert admin_view["checks"]["disk_free"]["data_dir_free_bytes"] > 0


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


# --- HTTP framing, limits and injection (issue 12, items 4-6 and 10) -------------------------------------

import json  # noqa: E402
import resource  # noqa: E402
import socket as socket_module  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from rawhttp import exchange, statuses, wait_closed  # noqa: E402
from test_auth import bootstrap  # noqa: E402

SMUGGLED = b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n"


def detail_of(received):
    return json.loads(received.partition(b"\r\n\r\n")[2].decode(errors="replace") or "{}").get("detail", "")


@pytest.mark.parametrize("name, request_bytes, sentence", [
    ("two Content-Length", b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\n"
     b"hello" + SMUGGLED, "2 Content-Length fields"),
    ("Content-Length and chunked", b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, "both Content-Length and Transfer-Encoding"),
    ("a coding other than chunked", b"POST /api/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 'exactly "chunked"'),
    ("chunked twice", b"POST /api/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 'exactly "chunked"'),
    ("a space before the colon", b"POST /api/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
     b"Content-Length: 5\r\n\r\nhello" + SMUGGLED, "space or a control character"),
    ("chunked in HTTP/1.0", b"POST /api/version HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, "not defined for HTTP/1.0"),
])
def test_ambiguous_framing_is_refused_and_nothing_after_it_is_answered(server, name, request_bytes, sentence):
    received = exchange(server.port, request_bytes)
    # One 400 with a sentence, then the connection closes: the request smuggled
    # behind the ambiguous body is never read as a request of its own.
    assert statuses(received) == [400], (name, received)
    assert sentence in detail_of(received), (name, received)
    assert b"Connection: close" in received or b"connection: close" in received.lower()
    assert server.get("/api/health").status_code == 200


def test_well_framed_pipelined_requests_still_work(server):
    chunked = (b"POST /api/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
               + SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert statuses(exchange(server.port, chunked)) == [405, 200]
    plain = (b"POST /api/version HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
             + SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert statuses(exchange(server.port, plain)) == [405, 200]


def test_paths_and_query_values_that_are_not_utf8_are_refused_at_the_door(server):
    token = bootstrap(server).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/admin/registry/%FF%FE", "/api/users/%C0%AF", "/api/catalog/tables/%ED%A0%80",
                 "/api/admin/groups/%F4%90%80%80/members"):
        r = requests.delete(server.url + path, headers=headers, timeout=10)
        assert r.status_code == 400 and "not UTF-8" in r.json()["detail"], (path, r.text)
    r = requests.get(server.url + "/api/catalog/tables?x=%FF", headers=headers, timeout=10)
    assert r.status_code == 400 and "'x'" in r.json()["detail"]
    assert server.get("/api/catalog/tables/caf%C3%A9", headers=headers).status_code == 404  # é is fine: not found


def test_a_nul_in_a_query_value_or_the_path_is_refused_never_cut(server):
    admin = bootstrap(server).json()
    headers = {"Authorization": f"Bearer {admin['access_token']}"}
    r = requests.post(server.url + "/api/upload/tables?name=a%00b", data=b"x\n1\n", headers=headers, timeout=30)
    assert r.status_code == 400 and "'name'" in r.json()["detail"] and "%00" in r.json()["detail"]
    r = requests.post(server.url + "/api/upload/sessions?name=a%00b", data=b"log", headers=headers, timeout=30)
    assert r.status_code == 400 and "'name'" in r.json()["detail"]
    assert server.get("/api/health%00.txt").status_code == 400
    tables = requests.get(server.url + "/api/catalog/tables", headers=headers, timeout=30).json()["tables"]
    assert [t["id"] for t in tables if t["id"] in ("a", "a_b", "ab")] == []  # no table was cut to "a"


def test_control_characters_never_reach_a_log_line(server):
    forged = "ts=2026-01-01T00:00:00.000Z level=error msg=forged"
    server.get("/api/x%0A" + forged.replace(" ", "%20") + "%0D%22%20status=200", headers={"X-Request-ID": "inject-1"})
    log = server.wait_for_log("request_id=inject-1")
    assert not any(line.startswith("ts=2026-01-01") for line in log.splitlines()), log
    line = next(l for l in log.splitlines() if "request_id=inject-1" in l)
    assert "\\x0a" in line and "\\x0d" in line and '\\"' in line  # escaped, on the request's own line
    pairs = logfmt(line)  # %22 closed no quotes: the path stays one field, the status is the server's
    fields = dict(pairs)
    assert fields["path"].startswith("/api/x\\x0ats=2026-01-01") and fields["status"] in ("404", "503")
    assert [key for key, _ in pairs].count("status") == 1


def logfmt(line):
    """key=value and key="quoted \\" value" pairs, honouring backslash escapes."""
    fields, i = [], 0
    while i < len(line):
        key_end = line.find("=", i)
        if key_end < 0:
            break
        key, i = line[i:key_end], key_end + 1
        if i < len(line) and line[i] == '"':
            value, i = "", i + 1
            while line[i] != '"':
                if line[i] == "\\" and line[i + 1] in '"\\':
                    i += 1
                value += line[i]
                i += 1
            i += 1
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            value, i = line[i:end], end
        fields.append((key.strip(), value))
        while i < len(line) and line[i] == " ":
            i += 1
    return fields


def test_a_path_parameter_of_256_bytes_or_more_is_414_not_a_crash(server):
    token = bootstrap(server).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for length in (256, 300, 4000):
        for tail in ("", "/sample"):
            r = requests.get(f"{server.url}/api/catalog/tables/{'a' * length}{tail}", headers=headers, timeout=10)
            assert r.status_code == 414, (length, tail)
            assert ("no id or name is that long" if length < 400 else "no endpoint's path is") in r.json()["detail"]
    r = requests.get(f"{server.url}/api/catalog/tables/{'a' * 255}", headers=headers, timeout=10)
    assert r.status_code == 404
    assert server.proc.poll() is None and server.get("/api/health").status_code == 200


def multipart(server, token, path, body, boundary=b"bb"):
    data = (b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=" + boundary
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return exchange(server.port, data, timeout=30)


def test_malformed_multipart_is_400_and_never_becomes_a_table(server):
    token = bootstrap(server).json()["access_token"]
    part = b'--bb\r\nContent-Disposition: form-data; name="file"; filename="cut.csv"\r\n\r\nid,x\n1,2\n'
    cases = {
        "a part with no headers": b"--bb\r\n\r\n\r\n--bb--\r\n",
        "a part with no name": b"--bb\r\nX-Other: y\r\n\r\nabc\r\n--bb--\r\n",
        "no closing boundary": part,
        "two file parts": part + b"\r\n" + part + b"\r\n--bb--\r\n",
    }
    for path in ("/api/upload/sessions", "/api/upload/tables?name=cut"):
        for name, body in cases.items():
            received = multipart(server, token, path, body)
            assert statuses(received) == [400], (path, name, received)
            assert "malformed" in detail_of(received), (path, name, received)
    no_boundary = exchange(server.port, b"POST /api/upload/tables HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                           + token.encode() + b"\r\nContent-Type: multipart/form-data\r\nContent-Length: 3\r\n"
                           b"Connection: close\r\n\r\nabc")
    assert statuses(no_boundary) == [400] and "no boundary" in detail_of(no_boundary)
    tables = requests.get(server.url + "/api/catalog/tables", headers={"Authorization": f"Bearer {token}"},
                          timeout=10).json()["tables"]
    assert tables == []
    complete = multipart(server, token, "/api/upload/tables?name=whole", part + b"\r\n--bb--\r\n")
    assert statuses(complete) == [201], complete
    assert server.proc.poll() is None


def test_one_address_cannot_lock_everyone_else_out(server):
    """600 half-sent requests, then 2,000 idle keep-alive connections, from 127.0.0.1; /api/health from
    127.0.0.2 keeps answering (before: the 512 slots filled and health timed out)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    held = []
    try:
        for _ in range(600):
            sock = socket_module.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Le")
            held.append(sock)
        for _ in range(5):
            assert statuses(exchange(server.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                     timeout=5, source="127.0.0.2")) == [200]
        for sock in held:
            sock.close()
        held = []
        for _ in range(2000):
            try:
                sock = socket_module.create_connection(("127.0.0.1", server.port), timeout=5)
                sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
                held.append(sock)
            except OSError:
                pass  # refused past the per-address limit: the point
        for _ in range(5):
            assert statuses(exchange(server.port, b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                     timeout=5, source="127.0.0.2")) == [200]
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert server.get("/api/health").status_code == 200  # and the flooding address is served again


def test_a_silent_connection_is_closed_after_the_idle_timeout(server_factory, env):
    env["AGNES_IDLE_TIMEOUT"] = "1"
    server = server_factory(env)
    sock = socket_module.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
    assert wait_closed(sock, 10) is not None
    sock.close()
    idle = socket_module.create_connection(("127.0.0.1", server.port), timeout=5)
    idle.sendall(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_closed(idle, 10) is not None  # answered, then closed once idle
    idle.close()


def test_behind_a_proxy_the_limit_counts_requests_per_forwarded_address(server_factory, env):
    env.update(AGNES_TRUST_PROXY="true", AGNES_MAX_CONNECTIONS_PER_ADDRESS="2")
    server = server_factory(env)
    slow = b"POST /api/version HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\nContent-Length: 10\r\n\r\nab"
    held = [socket_module.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    try:
        for sock in held:
            sock.sendall(slow)
        time.sleep(0.3)
        third = exchange(server.port, b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n"
                         b"Connection: close\r\n\r\n")
        assert statuses(third) == [429] and b"Retry-After: 1" in third
        other = exchange(server.port, b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.8\r\n"
                         b"Connection: close\r\n\r\n")
        assert statuses(other) == [200]  # the proxy's own socket address is not limited to 2
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert server.get("/api/version", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
