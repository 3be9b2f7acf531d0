"""Identity as a user meets it: setup mode, bootstrap, login, sessions (SPEC §6)."""
import concurrent.futures

import pytest
import requests

from conftest import duckdb_exec, run_agnes

ADMIN = {"email": "Admin@Example.com", "password": "correct horse battery", "name": "Ada"}


def post(server, path, **kw):
    return requests.post(server.url + path, timeout=30, **kw)


def bootstrap(server, body=ADMIN):
    return post(server, "/auth/bootstrap", json=body)


def me(server, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.get("/api/me", headers=headers, **kw)


def test_fresh_instance_is_in_setup_mode(server):
    for r in (me(server), post(server, "/auth/token", json={"email": "a@b.co", "password": "x" * 12})):
        assert r.status_code == 503
        assert r.json() == {"detail": "This instance has no admin yet. Create one with POST /auth/bootstrap "
                                      "or open /setup.", "setup_required": True, "setup_url": "/setup"}
    assert server.get("/api/health").status_code == 200
    assert server.get("/api/version").status_code == 200


def test_bootstrap_claims_the_instance_once(server):
    r = bootstrap(server)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["role"] == "admin"
    assert body["email"] == "admin@example.com"
    assert body["access_token"].count(".") == 2
    again = bootstrap(server, {"email": "thief@example.com", "password": "another long password"})
    assert again.status_code == 403
    assert "POST /auth/token" in again.json()["detail"]
    who = me(server, body["access_token"]).json()
    assert who == {"id": body["user_id"], "email": "admin@example.com", "name": "Ada", "is_admin": True,
                   "groups": ["Admin", "Everyone"]}


@pytest.mark.parametrize("payload, status, fragment", [
    ({"email": "a@example.com", "password": "short"}, 422, "at least 12 characters"),
    ({"email": "not-an-email", "password": "long enough password"}, 422, "email address"),
    ({"email": "a b@example.com", "password": "long enough password"}, 422, "email address"),
    ({"email": ["a@example.com"], "password": "long enough password"}, 422, "must be a string"),
    ({"email": "a@example.com", "password": 123456789012345}, 422, "must be a string"),
    ({"email": "a@example.com"}, 422, "'password' is required"),
    ({"email": "a@example.com", "password": "long enough password", "name": "evil\u0007bell"}, 422, "control"),
    ({"email": "a@example.com", "password": "long enough password", "name": "x" * 201}, 422, "at most 200"),
])
def test_bootstrap_rejects_bad_input_with_a_sentence(server, payload, status, fragment):
    r = bootstrap(server, payload)
    assert r.status_code == status
    assert fragment in r.json()["detail"]


@pytest.mark.parametrize("raw, fragment", [
    (b"", "empty"), (b"{not json", "not valid JSON"), (b"[1, 2]", "JSON object"),
    (b'{"email": "a@example.com", "email": "b@example.com", "password": "long enough password"}', "duplicate"),
])
def test_malformed_bodies_are_400(server, raw, fragment):
    r = post(server, "/auth/bootstrap", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert fragment in r.json()["detail"]


def test_ten_megabyte_body_is_413(server):
    r = post(server, "/auth/bootstrap", data=b'{"email": "' + b"a" * (10 * 1024 * 1024) + b'"}')
    assert r.status_code == 413


def test_unicode_names_and_sql_metacharacters_in_emails_are_plain_data(server):
    r = bootstrap(server, {"email": "o'brien;--@example.com", "password": "long enough password",
                           "name": "Zoë 李 \u202eadmin"})
    assert r.status_code == 200
    login = post(server, "/auth/token", json={"email": "O'Brien;--@example.com", "password": "long enough password"})
    assert login.status_code == 200
    assert me(server, login.json()["access_token"]).json()["name"] == "Zoë 李 \u202eadmin"


def test_concurrent_bootstraps_have_exactly_one_winner(server, env, workdir):
    bodies = [{"email": f"admin{i}@example.com", "password": "long enough password"} for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda b: bootstrap(server, b), bodies))
    assert statuses == [200] + [403] * 7
    server.stop()
    assert duckdb_exec(workdir / "state" / "system.duckdb", "SELECT count(*) FROM users").strip() == "1"


def test_login_and_the_ways_it_fails(server):
    bootstrap(server)
    ok = post(server, "/auth/token", json={"email": "ADMIN@example.com", "password": ADMIN["password"]})
    assert ok.status_code == 200 and ok.json()["role"] == "admin"
    wrong = post(server, "/auth/token", json={"email": "admin@example.com", "password": "not the password"})
    unknown = post(server, "/auth/token", json={"email": "nobody@example.com", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Incorrect email or password."}


def test_tokens_work_as_bearer_or_cookie_and_bad_ones_are_401(server):
    token = bootstrap(server).json()["access_token"]
    assert me(server, token).status_code == 200
    assert server.get("/api/me", cookies={"access_token": token}).status_code == 200
    r = me(server)
    assert r.status_code == 401 and r.json()["detail"] == "Missing or invalid Authorization header"
    assert r.headers["WWW-Authenticate"] == "Bearer"
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert me(server, tampered).json()["detail"] == "Invalid or expired token"
    assert server.get("/api/me", headers={"Authorization": f"Basic {token}"}).status_code == 401


def test_deactivated_user_is_rejected_on_the_next_request(server_factory, env, workdir):
    server = server_factory(env)
    token = bootstrap(server).json()["access_token"]
    server.stop()
    db = workdir / "state" / "system.duckdb"
    # A second admin (same password hash), then deactivate the first.
    duckdb_exec(db, "INSERT INTO users (id, email, name, password_hash) "
                    "SELECT 'second', 'second@example.com', 'Second', password_hash FROM users")
    duckdb_exec(db, "INSERT INTO user_group_members (user_id, group_id, source) "
                    "SELECT 'second', id, 'admin' FROM user_groups WHERE name = 'Admin'")
    duckdb_exec(db, "UPDATE users SET active = false WHERE email = 'admin@example.com'")
    server = server_factory(env)
    r = me(server, token)
    assert r.status_code == 401 and r.json()["detail"] == "Account deactivated"
    login = post(server, "/auth/token", json={"email": "admin@example.com", "password": ADMIN["password"]})
    assert login.status_code == 403 and "deactivated" in login.json()["detail"]
    second = post(server, "/auth/token", json={"email": "second@example.com", "password": ADMIN["password"]})
    assert second.status_code == 200


def test_deactivating_the_only_admin_does_not_reopen_bootstrap(server_factory, env, workdir):
    server = server_factory(env)
    bootstrap(server)
    server.stop()
    duckdb_exec(workdir / "state" / "system.duckdb", "UPDATE users SET active = false")
    server = server_factory(env)
    assert bootstrap(server, {"email": "thief@example.com", "password": "another long password"}).status_code == 403


def test_rotating_the_jwt_secret_ends_every_session(server_factory, env):
    env["JWT_SECRET_KEY"] = "first-secret-0123456789abcdef0123456789abcdef"
    server = server_factory(env)
    token = bootstrap(server).json()["access_token"]
    assert me(server, token).status_code == 200
    server.stop()
    env["JWT_SECRET_KEY"] = "second-secret-0123456789abcdef0123456789abcdef"
    server = server_factory(env)
    assert me(server, token).json()["detail"] == "Invalid or expired token"


def test_seed_admin_claims_the_instance_idempotently(server_factory, env):
    env.update(SEED_ADMIN_EMAIL="Ops@Example.com", SEED_ADMIN_PASSWORD="seeded password 1")
    server = server_factory(env)
    assert bootstrap(server).status_code == 403
    login = post(server, "/auth/token", json={"email": "ops@example.com", "password": "seeded password 1"})
    assert login.status_code == 200 and login.json()["role"] == "admin"
    server.stop()
    env["SEED_ADMIN_PASSWORD"] = "a different seed password"
    server = server_factory(env)
    # An existing password is never overwritten by a restart.
    assert post(server, "/auth/token", json={"email": "ops@example.com",
                                             "password": "seeded password 1"}).status_code == 200


def test_short_seed_password_stops_the_start(env):
    env.update(SEED_ADMIN_EMAIL="ops@example.com", SEED_ADMIN_PASSWORD="short", AGNES_LISTEN="127.0.0.1:0")
    out = run_agnes(["serve"], env)
    assert out.returncode == 1 and "SEED_ADMIN_PASSWORD must be at least 12 characters" in out.stderr


def test_logins_and_bootstrap_are_audited(server, workdir):
    bootstrap(server)
    post(server, "/auth/token", json={"email": "admin@example.com", "password": "not the password"})
    post(server, "/auth/token", json={"email": "admin@example.com", "password": ADMIN["password"]})
    server.stop()
    rows = duckdb_exec(workdir / "state" / "system.duckdb",
                       "SELECT action, resource, result FROM audit_log ORDER BY timestamp").splitlines()
    assert rows == ["auth.bootstrap\tadmin@example.com\tok", "auth.login\tadmin@example.com\tfailed",
                    "auth.login\tadmin@example.com\tok"]


def test_logout_clears_the_cookie_secure_with_a_domain(server_factory, env):
    env["DOMAIN"] = "data.example.com"
    server = server_factory(env)
    bootstrap(server)
    r = post(server, "/auth/logout")
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("access_token=;") and "Max-Age=0" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def _login_from(server, source_ip, email, password):
    """POST /auth/token from a chosen loopback address (127.0.0.0/8 is all ours)."""
    import http.client
    import json
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30, source_address=(source_ip, 0))
    conn.request("POST", "/auth/token", body=json.dumps({"email": email, "password": password}),
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    result = (response.status, dict(response.getheaders()), response.read())
    conn.close()
    return result


def test_thirty_wrong_passwords_in_a_minute_end_in_429_not_a_locked_account(server_factory, env):
    env["AGNES_AUTH_RATE_LIMIT"] = "10"
    server = server_factory(env)
    bootstrap(server)  # spends one token from 127.0.0.1
    statuses = [_login_from(server, "127.0.0.1", "admin@example.com", "wrong password!!") for _ in range(30)]
    codes = [s for s, _, _ in statuses]
    assert codes.count(401) >= 8 and codes[-1] == 429
    status, headers, body = statuses[-1]
    assert int(headers["Retry-After"]) >= 1 and b"retry in" in body
    # The account itself is not locked: the owner logs in from another address.
    status, _, _ = _login_from(server, "127.0.0.2", "admin@example.com", ADMIN["password"])
    assert status == 200


def test_forwarded_for_is_used_only_when_the_proxy_is_trusted(server_factory, env):
    env.update(AGNES_AUTH_RATE_LIMIT="2", AGNES_TRUST_PROXY="true")
    server = server_factory(env)
    bootstrap(server)
    wrong = {"email": "admin@example.com", "password": "wrong password!!"}
    hop = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}
    codes = [post(server, "/auth/token", json=wrong, headers=hop).status_code for _ in range(3)]
    assert codes[-1] == 429
    # A different client behind the same proxy has its own bucket.
    other = {"X-Forwarded-For": "198.51.100.2"}
    assert post(server, "/auth/token", json=wrong, headers=other).status_code == 401


def test_setup_mode_answers_503_even_for_paths_that_do_not_exist(server):
    for path in ("/api/catalog/tables", "/api/not-built-yet"):
        r = server.get(path)
        assert r.status_code == 503 and r.json()["setup_required"] is True
    bootstrap(server)
    assert server.get("/api/catalog/tables").status_code == 401
    assert server.get("/api/not-built-yet").status_code == 404


def test_login_redirects_stay_on_this_origin(server):
    """Browsers drop tabs and newlines from a Location and read a backslash as a slash, so
    next=/%09/evil.example once redirected to //evil.example. Every such target goes home instead."""
    bootstrap(server)
    credentials = "email=admin%40example.com&password=" + ADMIN["password"].replace(" ", "+")
    evil = ["/%09/evil.example", "/%0A/evil.example", "/%0D%0A/evil.example", "//evil.example", "/\\evil.example",
            "/%5Cevil.example", "/%5C%5Cevil.example", "\\\\evil.example", "/%2F/evil.example", "https://evil.example",
            "javascript:alert(1)", "/%20/evil.example", "/%00/evil.example", "%2F%2Fevil.example", "/%E2%80%A8x",
            "/%7F/evil.example", "http:/evil.example"]
    for target in evil:
        r = requests.post(server.url + "/auth/login", data=f"{credentials}&next={target}", allow_redirects=False,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
        assert r.status_code == 303 and r.headers["Location"] == "/dashboard", (target, r.headers.get("Location"))
    for fine in ("/catalog", "/query?sql=SELECT%201#results", "/admin/users"):
        r = requests.post(server.url + "/auth/login", data=f"{credentials}&next={fine.replace('%', '%25')}",
                          allow_redirects=False, headers={"Content-Type": "application/x-www-form-urlencoded"},
                          timeout=30)
        assert r.headers["Location"] == fine, fine


# --- What ends a session, and what ends a PAT (issue 12 item 8) ----------------------------------------

ENDED = "Session ended (logged out, password changed or account deactivated); log in again"


def _token(server, email, password):
    r = post(server, "/auth/token", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _pat(server, session, name="agent"):
    r = requests.post(server.url + "/auth/tokens", json={"name": name}, timeout=30,
                      headers={"Authorization": f"Bearer {session}"})
    assert r.status_code == 201, r.text
    return r.json()


def _analyst(server, admin_token, email="ana@example.com", password="analyst password 1"):
    r = requests.post(server.url + "/api/users", json={"email": email, "password": password}, timeout=30,
                      headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 201, r.text
    return r.json()["id"], password


def test_logout_ends_every_session_of_the_user_but_not_their_pats(server):
    admin = bootstrap(server).json()["access_token"]
    user_id, password = _analyst(server, admin)
    laptop = _token(server, "ana@example.com", password)
    phone = _token(server, "ana@example.com", password)
    pat = _pat(server, laptop)["token"]
    assert me(server, laptop).status_code == me(server, phone).status_code == 200
    r = post(server, "/auth/logout", cookies={"access_token": laptop})
    assert r.status_code == 200 and "Max-Age=0" in r.headers["Set-Cookie"]
    for session in (laptop, phone):  # the stolen cookie and the other device alike
        r = me(server, session)
        assert r.status_code == 401 and r.json()["detail"] == ENDED
    assert me(server, pat).status_code == 200  # the agent's token keeps working
    assert me(server, admin).status_code == 200  # other users are untouched
    again = _token(server, "ana@example.com", password)  # a login in the same second is not born ended
    assert me(server, again).status_code == 200
    # Logout with a bearer PAT ends nothing; with no token it only clears the cookie.
    assert post(server, "/auth/logout", headers={"Authorization": f"Bearer {pat}"}).status_code == 200
    assert me(server, pat).status_code == 200 and me(server, again).status_code == 200
    assert post(server, "/auth/logout").status_code == 200


def test_a_new_password_ends_sessions_and_keeps_pats(server):
    admin = bootstrap(server).json()["access_token"]
    user_id, password = _analyst(server, admin)
    session = _token(server, "ana@example.com", password)
    pat = _pat(server, session)["token"]
    r = requests.post(f"{server.url}/api/users/{user_id}/set-password", json={"password": "a brand new password"},
                      headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 204
    assert me(server, session).json()["detail"] == ENDED
    assert me(server, pat).status_code == 200
    assert me(server, _token(server, "ana@example.com", "a brand new password")).status_code == 200


def test_deactivation_then_reactivation_revives_no_session_and_no_pat(server):
    admin = bootstrap(server).json()["access_token"]
    user_id, password = _analyst(server, admin)
    session = _token(server, "ana@example.com", password)
    pat = _pat(server, session)
    headers = {"Authorization": f"Bearer {admin}"}
    assert requests.post(f"{server.url}/api/users/{user_id}/deactivate", headers=headers, timeout=30).ok
    assert me(server, session).status_code == 401 and me(server, pat["token"]).status_code == 401
    assert requests.post(f"{server.url}/api/users/{user_id}/activate", headers=headers, timeout=30).ok
    assert me(server, session).json()["detail"] == ENDED
    assert me(server, pat["token"]).json()["detail"] == "Token revoked"
    tokens = requests.get(server.url + "/auth/admin/tokens", headers=headers, timeout=30).json()
    assert [t["revoked_at"] is not None for t in tokens if t["id"] == pat["id"]] == [True]
    fresh = _token(server, "ana@example.com", password)
    assert me(server, fresh).status_code == 200 and me(server, _pat(server, fresh)["token"]).status_code == 200
    # Repeating active=true (a form that sends every field) changes nothing and ends nothing.
    r = requests.patch(f"{server.url}/api/users/{user_id}", json={"active": True, "name": "Ana"}, headers=headers,
                       timeout=30)
    assert r.status_code == 200 and me(server, fresh).status_code == 200


def test_sessions_end_across_a_restart_and_an_upgrade_keeps_existing_users(server_factory, env, workdir):
    assert run_agnes(["migrate", "--to", "6"], env).returncode == 0  # the schema before session cutoffs
    db = workdir / "state" / "system.duckdb"
    duckdb_exec(db, "INSERT INTO users (id, email, name) VALUES ('old-user', 'old@example.com', 'Old')")
    server = server_factory(env)  # migrates to the latest version
    token = bootstrap(server).json()["access_token"]
    assert post(server, "/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    server.stop()
    assert duckdb_exec(db, "SELECT email, session_generation FROM users WHERE id = 'old-user'").split() == [
        "old@example.com", "0"]
    server = server_factory(env)
    assert me(server, token).json()["detail"] == ENDED
    assert me(server, _token(server, "admin@example.com", ADMIN["password"])).status_code == 200
