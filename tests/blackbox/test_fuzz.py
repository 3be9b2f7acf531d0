"""A bounded fuzzer for request paths, headers, bodies and multipart (issue 12 item 10): no request
from anyone may end the server process or get a 500.

Why this shape (and not libFuzzer on the parsing functions): the inputs that took the server down
were not in one parser but in how the layers meet - libmicrohttpd's framing, the router's path
parameters, the auth gate, multipart parts reaching a handler, JSON fields of the wrong type. So the
fuzzer drives the real binary over raw sockets (bytes exactly as generated; no client library fixes
them up), as an anonymous caller, an analyst and an admin, from a fixed seed and within a time
budget. `make asan` runs it against the ASan+UBSan build, where a memory error is a crash too.

AGNES_FUZZ_SEED (default 1212) and AGNES_FUZZ_SECONDS (default 25) change the run; a failure prints
the seed, the case number and the request's bytes, so it replays exactly.
"""
import json
import os
import random
import socket
import time

import pytest
import requests

from conftest import run_agnes
from rawhttp import exchange, statuses
from test_contract import make_extract
from test_orchestrator import extracts

SEED = int(os.environ.get("AGNES_FUZZ_SEED", "1212"))
SECONDS = float(os.environ.get("AGNES_FUZZ_SECONDS", "25"))
MAX_CASES = 4000
PASSWORD = "fuzzing password 1"

# The crashes found before, first, as they were reported.
KNOWN = [
    ("GET", "/api/catalog/tables/" + "a" * 256, {}, b""),
    ("GET", "/api/catalog/tables/" + "a" * 256 + "/sample", {}, b""),
    ("POST", "/api/upload/sessions", {"Content-Type": "multipart/form-data; boundary=bb"},
     b"--bb\r\n\r\n\r\n--bb--\r\n"),
    ("POST", "/api/upload/tables", {"Content-Type": "multipart/form-data; boundary=bb"},
     b"--bb\r\n\r\n\r\n--bb--\r\n"),
    ("POST", "/api/upload/tables?name=a%00b", {"Content-Type": "text/csv"}, b"x\n1\n"),
    ("GET", "/api/catalog/tables/%FF", {}, b""),
]

WEIRD_STRINGS = ["", "a", "null", "0", "-1", "1e309", "NaN", "..", "../../etc/passwd", "%00", "%FF", "%C0%AF",
                 "\u202e", "\U0001F600", "'; DROP TABLE users;--", "\\", "\"", "{}", "[]", "a" * 300, "%2F",
                 "orders", "ORDERS", "_meta", "duckdb_views", "no-such-id", "é" * 10, "\t", "%0A", "%0D%0A"]
JSON_VALUES = [None, True, False, 0, -1, 2 ** 63, 2 ** 64, 1.5, 1e308, "", "x", "orders", [], {}, [None],
               {"a": None}, "a" * 2000, "\u0000", "\udc80"[:0] + "\ufffd", -2 ** 63 - 1]
FIELDS = ["email", "password", "name", "description", "sql", "limit", "format", "query_mode", "source_type",
          "source_query", "sync_schedule", "primary_key", "group_id", "resource_type", "resource_id", "active",
          "data_source", "postgres_dsn", "schemas", "bucket", "source_table", "folder", "n", "next"]
CONTENT_TYPES = ["application/json", "text/csv", "multipart/form-data; boundary=bb", "multipart/form-data",
                 "multipart/form-data; boundary=", "application/x-www-form-urlencoded", "text/plain; charset=x",
                 "application/json; charset=utf-16", "multipart/mixed; boundary=zz", ""]


def route_table(env):
    out = run_agnes(["routes", "--json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def fill_path(rnd, pattern):
    parts = []
    for segment in pattern.split("/"):
        if segment.startswith("{"):
            choice = rnd.random()
            if choice < 0.5:
                segment = rnd.choice(WEIRD_STRINGS)
            elif choice < 0.8:
                segment = "".join(rnd.choice("abcxyz_019%-.~") for _ in range(rnd.randint(0, 40)))
            else:
                segment = "".join("%%%02X" % rnd.randrange(256) for _ in range(rnd.randint(1, 12)))
        parts.append(segment)
    path = "/".join(parts)
    if rnd.random() < 0.3:
        path += "?" + "&".join(f"{rnd.choice(FIELDS)}={rnd.choice(WEIRD_STRINGS)}" for _ in range(rnd.randint(1, 4)))
    return path.replace(" ", "%20").replace("\t", "%09").replace("\n", "%0A")


def json_body(rnd):
    shape = rnd.random()
    if shape < 0.1:
        return bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 64)))
    if shape < 0.2:
        return json.dumps(rnd.choice(JSON_VALUES)).encode()
    document = {rnd.choice(FIELDS): rnd.choice(JSON_VALUES) for _ in range(rnd.randint(0, 6))}
    if rnd.random() < 0.2:
        document[rnd.choice(FIELDS)] = {rnd.choice(FIELDS): rnd.choice(JSON_VALUES)}
    text = json.dumps(document, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")
    if rnd.random() < 0.15 and text:  # cut or corrupt somewhere
        cut = rnd.randrange(len(text))
        text = text[:cut] + (bytes([rnd.randrange(256)]) if rnd.random() < 0.5 else b"")
    return text


def multipart_body(rnd):
    boundary = b"bb"
    parts = []
    for _ in range(rnd.randint(0, 3)):
        headers = []
        if rnd.random() < 0.8:
            name = rnd.choice([b"file", b"name", b"format", b"description", b"", b"x" * 300, b'"'])
            disposition = b'Content-Disposition: form-data; name="' + name + b'"'
            if rnd.random() < 0.5:
                disposition += b'; filename="' + rnd.choice([b"a.csv", b"", b"../../x", b"\xff.json"]) + b'"'
            headers.append(disposition)
        if rnd.random() < 0.3:
            headers.append(b"Content-Type: " + rnd.choice([b"text/csv", b"application/octet-stream", b""]))
        payload = rnd.choice([b"id,x\n1,2\n", b"", b"\x00" * 10, b"--bb", b"PAR1", json_body(rnd)])
        parts.append(b"--" + boundary + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + payload + b"\r\n")
    body = b"".join(parts)
    ending = rnd.random()
    if ending < 0.6:
        body += b"--" + boundary + b"--\r\n"
    elif ending < 0.8:
        body += b"--" + boundary
    return body


def build_case(rnd, routes):
    route = rnd.choice(routes)
    method = route["method"] if rnd.random() < 0.9 else rnd.choice(["GET", "POST", "PUT", "PATCH", "DELETE",
                                                                     "HEAD", "OPTIONS", "BREW"])
    path = fill_path(rnd, route["path"])
    content_type = rnd.choice(CONTENT_TYPES)
    if content_type.startswith("multipart"):
        body = multipart_body(rnd)
    elif content_type == "application/x-www-form-urlencoded":
        body = "&".join(f"{rnd.choice(FIELDS)}={rnd.choice(WEIRD_STRINGS)}" for _ in range(3)).encode()
    elif content_type == "text/csv":
        body = rnd.choice([b"id,x\n1,2\n", b"", b"a;b\n1;2\n", b"\xff\xfe", b'"unterminated\n1'])
    else:
        body = json_body(rnd)
    headers = {"Content-Type": content_type} if content_type else {}
    if rnd.random() < 0.1:
        headers[rnd.choice(["Range", "If-None-Match", "If-Range", "X-Request-ID", "Accept", "Cookie"])] = \
            rnd.choice(WEIRD_STRINGS + ["bytes=0-", "bytes=-5", "bytes=9-1", "access_token=x"])
    return method, path, headers, body


def encode(method, path, headers, body, token):
    lines = [f"{method} {path} HTTP/1.1".encode("utf-8", "surrogateescape"), b"Host: fuzz"]
    if token:
        lines.append(b"Authorization: Bearer " + token.encode())
    for name, value in headers.items():
        lines.append(name.encode() + b": " + value.encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b""))
    lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.fixture
def fuzz_target(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"), ("customers", "local")))
    server = server_factory(dict(env, AGNES_AUTH_RATE_LIMIT="0"))
    admin = requests.post(server.url + "/auth/bootstrap", json={"email": "admin@example.com", "password": PASSWORD},
                          timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {admin}"}
    requests.post(server.url + "/api/users", json={"email": "ana@example.com", "password": PASSWORD},
                  headers=headers, timeout=30)
    analyst = requests.post(server.url + "/auth/token", json={"email": "ana@example.com", "password": PASSWORD},
                            timeout=30).json()["access_token"]
    analyst_pat = requests.post(server.url + "/auth/tokens", json={"name": "fuzz"},
                                headers={"Authorization": f"Bearer {analyst}"}, timeout=30).json()["token"]
    admin_pat = requests.post(server.url + "/auth/tokens", json={"name": "fuzz"}, headers=headers,
                              timeout=30).json()["token"]
    return server, {"anonymous": None, "analyst": analyst_pat, "admin": admin_pat, "admin_session": admin}


def test_no_request_ends_the_server_or_gets_a_500(fuzz_target, env):
    server, callers = fuzz_target
    routes = route_table(env)
    rnd = random.Random(SEED)
    started = time.monotonic()
    seen = {}
    cases = [(case, caller) for case in KNOWN for caller in ("analyst", "admin")]
    count = 0
    while count < MAX_CASES and time.monotonic() - started < SECONDS:
        if count < len(cases):
            case, caller = cases[count]
        else:
            case, caller = build_case(rnd, routes), rnd.choice(list(callers))
        data = encode(*case, callers[caller])
        try:
            received = exchange(server.port, data, timeout=30, strict=True)
        except socket.timeout:
            pytest.fail(f"no answer within 30 s (seed {SEED}, case {count}, {caller}): {data[:600]!r}")
        except ConnectionResetError:
            received = b""  # refused before an answer (e.g. malformed framing); the server must be alive
        if server.proc.poll() is not None:
            pytest.fail(f"the server died (exit {server.proc.returncode}) on seed {SEED}, case {count}, {caller}: "
                        f"{data[:600]!r}\n{server.output()[-3000:]}")
        codes = statuses(received)
        for code in codes:
            seen[code] = seen.get(code, 0) + 1
        assert 500 not in codes, f"500 on seed {SEED}, case {count}, {caller}: {data[:600]!r}\n{received[:800]!r}"
        if caller == "admin_session" and 401 in codes and b"Session ended" in received:
            callers["admin_session"] = requests.post(
                server.url + "/auth/token", json={"email": "admin@example.com", "password": PASSWORD},
                timeout=30).json().get("access_token", callers["admin_session"])
        count += 1
    assert server.proc.poll() is None and server.get("/api/health").status_code == 200
    assert count >= len(cases), "the time budget did not even cover the known cases"
    print(f"fuzz: seed {SEED}, {count} requests in {time.monotonic() - started:.1f} s, statuses {sorted(seen.items())}")
