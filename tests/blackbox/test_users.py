"""Admin user management (SPEC §6; shapes from the original API §1.9)."""
import requests

from conftest import duckdb_exec
from test_auth import ADMIN, bootstrap, me, post

ANALYST = {"email": "Ana@Example.com", "name": "Ana", "password": "analyst password 1"}


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def call(server, method, path, token, **kw):
    return requests.request(method, server.url + path, headers=auth(token), timeout=30, **kw)


def login(server, email, password):
    return post(server, "/auth/token", json={"email": email, "password": password})


def setup_admin_and_analyst(server):
    admin = bootstrap(server).json()
    created = call(server, "POST", "/api/users", admin["access_token"], json=ANALYST)
    assert created.status_code == 201, created.text
    analyst = login(server, ANALYST["email"], ANALYST["password"]).json()
    return admin, created.json(), analyst


def test_create_list_and_get_users(server):
    admin, created, analyst = setup_admin_and_analyst(server)
    assert created["email"] == "ana@example.com" and created["role"] == "user" and created["is_admin"] is False
    assert [g["name"] for g in created["groups"]] == ["Everyone"]  # SPEC §6: everyone is in Everyone
    assert created["active"] is True and created["deactivated_at"] is None
    assert analyst["role"] == "user"
    users = call(server, "GET", "/api/users", admin["access_token"]).json()
    assert [u["email"] for u in users] == ["admin@example.com", "ana@example.com"]
    assert call(server, "GET", f"/api/users/{created['id']}", admin["access_token"]).json() == created
    assert call(server, "GET", "/api/users/nope", admin["access_token"]).status_code == 404
    dup = call(server, "POST", "/api/users", admin["access_token"], json={"email": "ANA@example.com"})
    assert dup.status_code == 409 and dup.json()["detail"] == "User with this email already exists"


def test_analysts_cannot_manage_users(server):
    _, _, analyst = setup_admin_and_analyst(server)
    r = call(server, "GET", "/api/users", analyst["access_token"])
    assert r.status_code == 403 and r.json()["detail"] == "Admin access required"
    assert me(server, analyst["access_token"]).json()["is_admin"] is False


def test_deactivation_takes_effect_on_the_next_request_and_can_be_undone(server):
    admin, created, analyst = setup_admin_and_analyst(server)
    r = call(server, "POST", f"/api/users/{created['id']}/deactivate", admin["access_token"])
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["deactivated_at"]
    assert me(server, analyst["access_token"]).json()["detail"] == "Account deactivated"
    assert login(server, ANALYST["email"], ANALYST["password"]).status_code == 403
    call(server, "PATCH", f"/api/users/{created['id']}", admin["access_token"], json={"active": True, "name": "Ana B"})
    # Reactivation revives no old session: the user logs in again.
    assert me(server, analyst["access_token"]).status_code == 401
    again = login(server, ANALYST["email"], ANALYST["password"]).json()
    assert me(server, again["access_token"]).json()["name"] == "Ana B"


def test_the_last_admin_and_yourself_are_protected(server):
    admin, created, _ = setup_admin_and_analyst(server)
    me_id = admin["user_id"]
    for method, path, body, detail in [
        ("POST", f"/api/users/{me_id}/deactivate", None, "Cannot deactivate yourself"),
        ("PATCH", f"/api/users/{me_id}", {"active": False}, "Cannot deactivate yourself"),
        ("DELETE", f"/api/users/{me_id}", None, "Cannot delete yourself"),
    ]:
        r = call(server, method, path, admin["access_token"], json=body)
        assert r.status_code == 409 and r.json()["detail"] == detail
    # A scheduler-free instance with a second, non-admin user: deleting that user is fine.
    assert call(server, "DELETE", f"/api/users/{created['id']}", admin["access_token"]).status_code == 204
    assert call(server, "GET", f"/api/users/{created['id']}", admin["access_token"]).status_code == 404


def test_last_active_admin_cannot_be_removed_by_the_service_identity(server_factory, env):
    service = "s" * 16 + "0123456789abcdef"
    env["SCHEDULER_API_TOKEN"] = service
    server = server_factory(env)
    admin = bootstrap(server).json()
    for method, path, detail in [("POST", f"/api/users/{admin['user_id']}/deactivate",
                                  "Cannot deactivate the last active admin"),
                                 ("DELETE", f"/api/users/{admin['user_id']}", "Cannot delete the last active admin")]:
        r = call(server, method, path, service)
        assert r.status_code == 409 and r.json()["detail"] == detail
    # With a second human admin, the first may go.
    second = call(server, "POST", "/api/users", admin["access_token"], json=ANALYST).json()
    server.stop()
    duckdb_exec(server.env["STATE_DIR"] + "/system.duckdb",
                "INSERT INTO user_group_members (user_id, group_id, source) "
                f"SELECT '{second['id']}', id, 'admin' FROM user_groups WHERE name = 'Admin'")
    server = server_factory(env)
    assert call(server, "POST", f"/api/users/{admin['user_id']}/deactivate", service).status_code == 200


def test_set_password_and_bad_input(server):
    admin, created, _ = setup_admin_and_analyst(server)
    path = f"/api/users/{created['id']}/set-password"
    assert call(server, "POST", path, admin["access_token"], json={"password": "short"}).status_code == 422
    assert call(server, "POST", path, admin["access_token"], json={"password": "a brand new password"}).status_code == 204
    assert login(server, ANALYST["email"], "a brand new password").status_code == 200
    assert call(server, "PATCH", f"/api/users/{created['id']}", admin["access_token"],
                json={"active": "no"}).status_code == 422
    assert call(server, "POST", "/api/users", admin["access_token"], json={"email": "x"}).status_code == 422


def test_user_changes_are_audited(server, workdir):
    admin, created, _ = setup_admin_and_analyst(server)
    call(server, "POST", f"/api/users/{created['id']}/deactivate", admin["access_token"])
    call(server, "DELETE", f"/api/users/{created['id']}", admin["access_token"])
    server.stop()
    rows = duckdb_exec(workdir / "state" / "system.duckdb",
                       "SELECT action, resource FROM audit_log WHERE action LIKE 'user.%' ORDER BY timestamp")
    assert rows.split("\n")[:3] == [f"user.create\tuser:{created['id']}", f"user.update\tuser:{created['id']}",
                                    f"user.delete\tuser:{created['id']}"]
