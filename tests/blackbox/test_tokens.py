"""Personal access tokens and the scheduler service identity (SPEC §6)."""
import requests

from conftest import duckdb_exec, run_agnes
from test_auth import ADMIN, bootstrap, me, post

SCHEDULER = "s" * 16 + "0123456789abcdef"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def create(server, session, **body):
    return post(server, "/auth/tokens", json={"name": "laptop", **body}, headers=auth(session))


def test_token_is_shown_once_and_works_as_a_bearer(server):
    session = bootstrap(server).json()["access_token"]
    r = create(server, session)
    assert r.status_code == 201
    created = r.json()
    assert set(created) == {"id", "name", "prefix", "token", "created_at", "expires_at", "last_used_at", "revoked_at"}
    assert created["prefix"] == created["id"].replace("-", "")[:8]
    assert created["expires_at"] is not None
    listed = server.get("/auth/tokens", headers=auth(created["token"])).json()
    assert [t["id"] for t in listed] == [created["id"]]
    assert "token" not in listed[0]  # never shown again
    assert listed[0]["last_used_at"] is not None
    assert me(server, created["token"]).json()["email"] == "admin@example.com"


def test_lifetimes(server):
    session = bootstrap(server).json()["access_token"]
    assert create(server, session, expires_in_days=None).json()["expires_at"] is None
    assert create(server, session, ttl_seconds=3600).json()["expires_at"] is not None
    for bad in ({"expires_in_days": 0}, {"expires_in_days": 4000}, {"ttl_seconds": -1}, {"expires_in_days": "90"}):
        r = create(server, session, **bad)
        assert r.status_code == 422 and "must be a whole number" in r.json()["detail"]
    assert create(server, session, name="").status_code == 422


def test_revoked_and_expired_tokens_are_401_with_the_reason(server_factory, env, workdir):
    server = server_factory(env)
    session = bootstrap(server).json()["access_token"]
    revoked, expired = create(server, session).json(), create(server, session, name="old").json()
    r = requests.delete(f"{server.url}/auth/tokens/{revoked['id']}", headers=auth(session), timeout=10)
    assert r.status_code == 204
    r = me(server, revoked["token"])
    assert r.status_code == 401 and r.json()["detail"] == "Token revoked"
    server.stop()
    duckdb_exec(workdir / "state" / "system.duckdb",
                f"UPDATE personal_access_tokens SET expires_at = TIMESTAMP '2020-01-01' WHERE id = '{expired['id']}'")
    server = server_factory(env)
    assert me(server, expired["token"]).json()["detail"] == "Token expired"


def test_minting_needs_an_interactive_session(server):
    session = bootstrap(server).json()["access_token"]
    pat = create(server, session).json()["token"]
    r = create(server, pat)
    assert r.status_code == 403 and "interactive session" in r.json()["detail"]


def test_users_see_only_their_own_tokens_admins_see_all(server, workdir):
    session = bootstrap(server).json()["access_token"]
    mine = create(server, session).json()
    assert server.get(f"/auth/tokens/{mine['id']}", headers=auth(session)).status_code == 200
    assert server.get("/auth/tokens/not-a-token", headers=auth(session)).status_code == 404
    assert requests.delete(f"{server.url}/auth/tokens/not-a-token", headers=auth(session), timeout=10).status_code == 404
    everything = server.get("/auth/admin/tokens", headers=auth(session)).json()
    assert everything[0]["user_email"] == "admin@example.com" and everything[0]["last_used_ip"] is None
    r = requests.delete(f"{server.url}/auth/admin/tokens/{mine['id']}", headers=auth(session), timeout=10)
    assert r.status_code == 204
    assert me(server, mine["token"]).json()["detail"] == "Token revoked"
    server.stop()
    actions = duckdb_exec(workdir / "state" / "system.duckdb",
                          "SELECT action FROM audit_log WHERE action LIKE 'token.%' ORDER BY timestamp").split()
    assert actions == ["token.create", "token.admin_revoke"]


def test_scheduler_token_acts_as_a_service_admin(server_factory, env):
    env["SCHEDULER_API_TOKEN"] = SCHEDULER
    server = server_factory(env)
    # The service user has no password, so the instance is still unclaimed.
    assert me(server, SCHEDULER).status_code == 503
    bootstrap(server)
    who = me(server, SCHEDULER).json()
    assert who["email"] == "scheduler@system.local" and who["is_admin"] is True
    assert server.get("/auth/admin/tokens", headers=auth(SCHEDULER)).status_code == 200
    assert create(server, SCHEDULER).status_code == 403
    assert me(server, SCHEDULER[:-1] + "X").status_code == 401


def test_short_scheduler_token_stops_the_start(env):
    out = run_agnes(["serve"], dict(env, SCHEDULER_API_TOKEN="too-short", AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1 and "at least 32 characters" in out.stderr
