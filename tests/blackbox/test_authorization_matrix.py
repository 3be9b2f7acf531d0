"""The authorization matrix (SPEC §6): every route in the server's route table,
called by every kind of caller, answers as its declared access level says.

The expected level of each route is pinned in route_access.json, apart from the
code: adding a route without declaring it there, or changing a route's level in
src/http/routes.c without changing it there, fails this suite.
"""
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
import requests

from conftest import AGNES_BIN, run_agnes

EXPECTED = json.loads((Path(__file__).parent / "route_access.json").read_text())
SECRET = "matrix-secret-0123456789abcdef0123456789abcdef"
SERVICE = "m" * 16 + "0123456789abcdef"
PASSWORD = "matrix password 1"

# Bodies thrown at every route that takes one: none may produce a 5xx.
BAD_BODIES = [b"", b"{", b"[]", b"null", b'{"email": 5, "name": ["x"], "password": {}}',
              json.dumps({"email": "a'; DROP TABLE users;--@x.io", "name": "\u0000\u202e\U0001F600" * 50}).encode()]


def route_table(env):
    out = run_agnes(["routes", "--json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def concrete(path):
    return path.replace("{id}", "no-such-id").replace("{user_id}", "no-such-user")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(claims, secret=SECRET, alg="HS256"):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    if alg == "none":
        return f"{header}.{payload}."
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def expired_session(user_id):
    now = int(time.time())
    return signed({"sub": user_id, "email": "x@example.com", "typ": "session", "jti": "expired", "iat": now - 7200,
                   "exp": now - 3600})


def admin_claims(user_id, typ="session"):
    now = int(time.time())
    return {"sub": user_id, "email": "root@example.com", "typ": typ, "jti": "forged", "iat": now, "exp": now + 3600}


def call(server, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body if body is not None else {}).encode()
    return requests.request(method, server.url + concrete(path), headers={**headers, "Content-Type":
                            "application/json"}, data=data if method != "GET" else None, timeout=30,
                            allow_redirects=False)


def declared(r):
    return r["access"] + ("+interactive" if r["interactive"] else "") + ("+html" if r["html"] else "")


def test_every_route_declares_its_level_in_route_access_json(env):
    actual = {f"{r['method']} {r['path']}": declared(r) for r in route_table(env)}
    missing = sorted(set(actual) - set(EXPECTED))
    stale = sorted(set(EXPECTED) - set(actual))
    changed = sorted(k for k in actual if k in EXPECTED and actual[k] != EXPECTED[k])
    assert not missing, f"routes without a declared level in tests/blackbox/route_access.json: {missing}"
    assert not stale, f"route_access.json lists routes the server does not have: {stale}"
    assert not changed, "declared level changed: " + ", ".join(f"{k}: {EXPECTED[k]} -> {actual[k]}" for k in changed)


def test_setup_mode_closes_everything_but_public_routes(server, env):
    for r in route_table(env):
        response = call(server, r["method"], r["path"])
        if r["access"] == "public":
            assert response.status_code != 503, (r, response.text)
        elif r["html"]:
            assert response.status_code == 302 and response.headers["Location"] == "/setup", (r, response.text)
        else:
            assert response.status_code == 503 and response.json()["setup_required"] is True, (r, response.text)


@pytest.fixture
def callers(server_factory, env):
    """A claimed instance and one credential per kind of caller."""
    env.update(JWT_SECRET_KEY=SECRET, SCHEDULER_API_TOKEN=SERVICE)
    server = server_factory(env)
    admin = call(server, "POST", "/auth/bootstrap", body={"email": "root@example.com", "password": PASSWORD}).json()
    admin_token = admin["access_token"]

    def make_user(email):
        user = call(server, "POST", "/api/users", admin_token, {"email": email, "password": PASSWORD}).json()
        login = call(server, "POST", "/auth/token", body={"email": email, "password": PASSWORD}).json()
        return user, login["access_token"]

    def as_admin(method, path, body=None):
        r = call(server, method, path, admin_token, body)
        assert r.status_code < 300, (path, r.text)
        return r

    _, analyst = make_user("analyst@example.com")
    analyst_pat = call(server, "POST", "/auth/tokens", analyst, {"name": "agent"}).json()["token"]
    # Credentials that something ended: each must be refused everywhere, like no credential.
    _, logged_out = make_user("left@example.com")
    assert call(server, "POST", "/auth/logout", logged_out).status_code == 200
    reset_user, reset_session = make_user("reset@example.com")
    as_admin("POST", f"/api/users/{reset_user['id']}/set-password", {"password": "another password 1"})
    back_user, back_session = make_user("back@example.com")
    back_pat = call(server, "POST", "/auth/tokens", back_session, {"name": "old"}).json()["token"]
    as_admin("POST", f"/api/users/{back_user['id']}/deactivate")
    as_admin("POST", f"/api/users/{back_user['id']}/activate")
    _, granted = make_user("granted@example.com")
    group = call(server, "POST", "/api/admin/groups", admin_token, {"name": "Readers"}).json()
    call(server, "POST", f"/api/admin/groups/{group['id']}/members", admin_token, {"email": "granted@example.com"})
    call(server, "POST", "/api/admin/grants", admin_token,
         {"group_id": group["id"], "resource_type": "table", "resource_id": "orders"})
    gone_user, gone = make_user("gone@example.com")
    requests.post(f"{server.url}/api/users/{gone_user['id']}/deactivate",
                  headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    pat = call(server, "POST", "/auth/tokens", admin_token, {"name": "matrix"}).json()
    revoked = call(server, "POST", "/auth/tokens", admin_token, {"name": "revoked"}).json()
    requests.delete(f"{server.url}/auth/tokens/{revoked['id']}",
                    headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
    return server, {
        "anonymous": None, "analyst": analyst, "analyst_pat": analyst_pat, "analyst_with_grant": granted,
        "admin": admin_token, "admin_pat": pat["token"], "service": SERVICE, "revoked_pat": revoked["token"],
        "expired_session": expired_session(admin["user_id"]), "deactivated": gone,
        "logged_out_session": logged_out, "session_before_password_reset": reset_session,
        "session_before_reactivation": back_session, "pat_before_reactivation": back_pat,
        "admin_claims_other_key": signed(admin_claims(admin["user_id"]), secret="not-" + SECRET),
        "admin_claims_alg_none": signed(admin_claims(admin["user_id"]), alg="none"),
        "pat_claims_unknown_jti": signed(admin_claims(admin["user_id"], typ="pat")),
    }


ALLOWED = "allowed"


def expected_outcome(level, caller):
    base, *flags = level.split("+")
    if level == "public+html" and caller == "anonymous":
        return 401  # /setup once claimed: the wizard is an admin's, a visitor is sent to log in (SPEC §6)
    if base in ("public", "anonymous"):
        return ALLOWED
    if caller in ENDED_OR_FORGED:
        return 401
    if base == "admin" and caller in ("analyst", "analyst_pat", "analyst_with_grant"):
        return "403 admin"
    if "interactive" in flags and caller in ("admin_pat", "analyst_pat", "service"):
        return "403 interactive"
    return ALLOWED


ENDED_OR_FORGED = ("anonymous", "revoked_pat", "expired_session", "deactivated", "logged_out_session",
                   "session_before_password_reset", "session_before_reactivation", "pat_before_reactivation",
                   "admin_claims_other_key", "admin_claims_alg_none", "pat_claims_unknown_jti")


def observed_outcome(response):
    """What the gate decided; a handler's own 4xx (404, 409, 422...) counts as allowed."""
    assert response.status_code < 500, response.text
    if response.status_code == 401 and response.headers.get("WWW-Authenticate") == "Bearer":
        return 401
    # Page routes answer a browser: a redirect to log in, or the "for admins" page.
    location = response.headers.get("Location", "")
    if response.status_code == 302 and (location == "/login" or location.startswith("/login?next=")):
        return 401
    if response.status_code == 403 and response.headers.get("Content-Type", "").startswith("text/html"):
        return "403 admin"
    if response.status_code == 403 and response.json().get("detail") == "Admin access required":
        return "403 admin"
    if response.status_code == 403 and "interactive session" in response.json().get("detail", ""):
        return "403 interactive"
    assert response.status_code != 503, response.text
    return ALLOWED


def test_every_route_times_every_caller(callers, env):
    server, tokens = callers
    mismatches = []
    # Destructive routes last, so they cannot remove the callers the others need; logout (which
    # ends every session of its caller) after everything.
    for r in sorted(route_table(env), key=lambda r: (r["path"] == "/auth/logout", r["method"] == "DELETE")):
        for caller, token in tokens.items():
            got = observed_outcome(call(server, r["method"], r["path"], token))
            want = expected_outcome(EXPECTED[f"{r['method']} {r['path']}"], caller)
            if got != want:
                mismatches.append(f"{r['method']} {r['path']} as {caller}: expected {want}, got {got}")
    assert not mismatches, "\n".join(mismatches)


def test_bad_bodies_never_cause_a_server_error(callers, env):
    server, tokens = callers
    for r in route_table(env):
        if r["method"] not in ("POST", "PATCH"):
            continue
        for body in BAD_BODIES:
            response = requests.request(r["method"], server.url + concrete(r["path"]), data=body, timeout=30,
                                        headers={"Authorization": f"Bearer {tokens['admin']}",
                                                 "Content-Type": "application/json"})
            assert response.status_code < 500, (r["path"], body[:40], response.text)
