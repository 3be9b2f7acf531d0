"""Fuzzing the request bodies of every POST/PUT/PATCH route (SPEC §15: bad
input gets a 4xx sentence, never a 500 or a dead server).

The routes and their field names come from `agnes openapi`, so a new route
is fuzzed without touching this file.  Values are drawn from a fixed seed:
nulls, wrong types, huge and empty strings, control characters, bytes that
are not UTF-8, deep nesting, bodies that are not objects or not JSON.  The
run is bounded in time (AGNES_FUZZ_SECONDS, default 20) rather than in
requests, so a slow machine does fewer of the same sequence; a failure
prints the request that caused it, which replays alone.
"""
import json
import os
import random
import subprocess
import time

import requests

from conftest import AGNES_BIN
from test_auth import ADMIN
from test_users import auth, call, setup_admin_and_analyst

SEED = int(os.environ.get("AGNES_FUZZ_SEED", "1313"))
SECONDS = float(os.environ.get("AGNES_FUZZ_SECONDS", "20"))

# Strings an API meets in the wild, and the ones that broke it before.
STRINGS = ["", " ", "x", "a" * 65, "a" * 257, "a" * 1025, "a" * 5000, "é" * 600, "ééééééééé\u00e9", "\u0000",
           "\x01\x02", "line\nbreak", "tab\tin", "\u202eevil", "💥" * 10, "../../etc/passwd", "%FF", "'; DROP TABLE x;--",
           "local", "remote", "materialized", "postgres", "keboola", "csv", "every 15m", "daily 25:00", "daily 09:00",
           "admin@example.com", "Everyone", "table", "duckdb_views", "_meta", "information_schema", "public",
           "SELECT 1", "null", "true", "0", "-1", "1e999", "[]", "{}"]
NUMBERS = [0, -1, 1, 7, 65535, 65536, 2 ** 31, 2 ** 63 - 1, -2 ** 63, 2 ** 64, 10 ** 30, 1.5, -0.0, 1e308]


def value(rng, depth=0):
    kind = rng.random()
    if kind < 0.12:
        return None
    if kind < 0.2:
        return rng.choice([True, False])
    if kind < 0.35:
        return rng.choice(NUMBERS)
    if kind < 0.75 or depth > 3:
        return rng.choice(STRINGS)
    if kind < 0.88:
        return [value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(STRINGS[:8] + ["name", "id", "x"]): value(rng, depth + 1) for _ in range(rng.randrange(0, 3))}


def nested(levels):
    return "[" * levels + "]" * levels


def body_for(rng, fields):
    """Raw bytes of one request body for a route whose fields are known."""
    kind = rng.random()
    if kind < 0.05:
        return b""
    if kind < 0.1:
        return rng.choice([b"not json", b"{", b'{"a":1,"a":2}', b"[1,2]", b'"text"', b"42", b"null", b"\xff\xfe{}"])
    if kind < 0.14:
        return nested(rng.choice([100, 3000])).encode()
    if kind < 0.2:  # a string that is not UTF-8 where a field expects text
        field = rng.choice(fields or ["name"])
        return b'{"' + field.encode() + b'": "ab\xff\xfe\xc3"}'
    body = {}
    for name in fields:
        if rng.random() < 0.7:
            body[name] = value(rng)
    if rng.random() < 0.2:
        body[rng.choice(STRINGS)] = value(rng)
    return json.dumps(body).encode()


def routes():
    spec = json.loads(subprocess.run([AGNES_BIN, "openapi"], capture_output=True, text=True, check=True).stdout)
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("post", "put", "patch"):
                continue
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            found.append((method.upper(), path, sorted(schema.get("properties", {}))))
    return found


def test_no_body_on_any_write_route_gets_a_500(server):
    admin, analyst_user, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    group = call(server, "POST", "/api/admin/groups", token, json={"name": "fuzzed"}).json()
    call(server, "POST", f"/api/admin/groups/{group['id']}/members", token, json={"email": analyst_user["email"]})
    call(server, "POST", "/api/admin/register-table", token, json={"name": "fuzz_table", "source_type": "postgres"})
    ids = {"/api/admin/groups/{id}": [group["id"], "nope"], "/api/admin/groups/{id}/members": [group["id"], "nope"],
           "/api/admin/registry/{id}": ["fuzz_table", "nope", "%FF"],
           "/api/users/{id}": [analyst_user["id"], "nope"]}
    rng = random.Random(SEED)
    table = routes()
    assert len(table) >= 20, table
    failures, seen, sent, deadline = [], set(), 0, time.monotonic() + SECONDS
    session = requests.Session()
    while time.monotonic() < deadline and len(failures) < 20:
        method, pattern, fields = rng.choice(table)
        path = pattern
        if "{id}" in pattern:
            choices = ids.get(pattern) or ids.get(pattern.rsplit("/", 1)[0]) or [analyst_user["id"], "nope"]
            path = pattern.replace("{id}", rng.choice(choices))
        headers = {} if pattern.startswith("/auth/") and pattern != "/auth/tokens" else auth(token)
        if pattern == "/auth/login":
            data = rng.choice([b"email=%FF&password=x", b"email=a%40b.c&password=%FE%FF", b"next=%FF",
                               b"email=" + b"a" * 2000, b"\xff\xfe", b""])
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            params = None
        elif pattern.startswith("/api/upload/"):
            data = rng.choice([b"a,b\n1,2\n", "éééééééééé".encode(), b"\xff\xfe\x00", b"{}", b"", b"x" * 3000])
            options = ["name", "format", "description", "delimiter", "quote", "escape", "header",
                       "decimal_separator", "types", "all_text", "sample_size", "delimeter"]
            params = {k: rng.choice(STRINGS + ["t", ";", "tab", "none", "-1", "a:VARCHAR", '{"a": 5}', "%"])
                      for k in rng.sample(options, rng.randrange(1, 5))}
        else:
            data, params = body_for(rng, fields), None
            headers["Content-Type"] = "application/json"
        try:
            r = session.request(method, server.url + path, data=data, params=params, headers=headers, timeout=30)
        except requests.RequestException as e:
            failures.append((method, path, data[:300], f"no answer: {e}"))
            break
        sent += 1
        if r.status_code >= 500 and (method, pattern) not in seen:  # one example per route is enough to replay
            seen.add((method, pattern))
            failures.append((method, path, params, data[:300], r.status_code, r.text[:300]))
        if r.headers.get("Content-Type", "").startswith("application/json") and r.content:
            json.loads(r.content)  # every JSON answer parses, whatever the input was
        if r.status_code == 401 and "Authorization" in headers:  # the fuzz changed the admin's credentials
            token = call(server, "POST", "/auth/token", None, json={"email": ADMIN["email"],
                                                                     "password": ADMIN["password"]}).json().get(
                "access_token", token)
    print(json.dumps({"fuzz_requests": sent, "seconds": SECONDS, "seed": SEED}))
    assert server.proc.poll() is None, "the server died"
    assert failures == [], "\n".join(map(repr, failures))
    assert sent > 50
