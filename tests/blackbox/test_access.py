"""Groups, members, grants, effective access and the audit log (SPEC §6)."""
import requests

from test_users import ANALYST, call, login, setup_admin_and_analyst


def group_named(server, token, name):
    return next(g for g in call(server, "GET", "/api/admin/groups", token).json() if g["name"] == name)


def test_system_groups_exist_and_are_protected(server):
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    groups = call(server, "GET", "/api/admin/groups", token).json()
    assert [(g["name"], g["is_system"], g["origin"]) for g in groups] == [("Admin", True, "system"),
                                                                         ("Everyone", True, "system")]
    everyone = group_named(server, token, "Everyone")
    assert everyone["member_count"] == 2
    r = call(server, "DELETE", f"/api/admin/groups/{everyone['id']}", token)
    assert r.status_code == 409 and r.json()["detail"] == "Cannot delete a system group"
    r = call(server, "PATCH", f"/api/admin/groups/{everyone['id']}", token, json={"name": "All"})
    assert r.status_code == 409 and r.json()["detail"] == "Cannot rename a system group"


def test_group_lifecycle_with_members_and_grants(server):
    admin, analyst_user, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    r = call(server, "POST", "/api/admin/groups", token, json={"name": "Finance", "description": "money people"})
    assert r.status_code == 201
    finance = r.json()
    assert finance["name"] == "Finance" and finance["is_system"] is False and finance["member_count"] == 0
    assert call(server, "POST", "/api/admin/groups", token, json={"name": "finance"}).status_code == 409
    r = call(server, "POST", f"/api/admin/groups/{finance['id']}/members", token, json={"email": ANALYST["email"]})
    assert r.status_code == 201 and r.json()["email"] == "ana@example.com"
    assert call(server, "POST", f"/api/admin/groups/{finance['id']}/members", token,
                json={"email": ANALYST["email"]}).status_code == 409
    assert call(server, "POST", f"/api/admin/groups/{finance['id']}/members", token,
                json={"email": "ghost@example.com"}).json()["detail"] == "User not found"
    grant = call(server, "POST", "/api/admin/grants", token,
                 json={"group_id": finance["id"], "resource_type": "table", "resource_id": "orders"})
    assert grant.status_code == 201
    assert grant.json()["group_name"] == "Finance" and grant.json()["resource_id"] == "orders"
    assert call(server, "POST", "/api/admin/grants", token, json={"group_id": finance["id"], "resource_type": "table",
                                                                  "resource_id": "orders"}).status_code == 409
    mine = call(server, "GET", "/api/me/effective-access", analyst["access_token"]).json()
    assert mine == {"is_admin": False, "items": [{"resource_type": "table", "resource_id": "orders",
                                                  "via_groups": [{"group_id": finance["id"],
                                                                  "group_name": "Finance"}]}]}
    assert call(server, "GET", f"/api/admin/users/{analyst_user['id']}/effective-access", token).json() == mine
    listed = call(server, "GET", f"/api/admin/grants?group_id={finance['id']}", token).json()
    assert [g["id"] for g in listed] == [grant.json()["id"]]
    assert call(server, "GET", "/api/admin/grants?resource_type=marketplace_plugin", token).json() == []
    # Deleting the group takes its members and grants with it.
    assert call(server, "DELETE", f"/api/admin/groups/{finance['id']}", token).status_code == 204
    assert call(server, "GET", "/api/me/effective-access", analyst["access_token"]).json()["items"] == []
    assert call(server, "GET", "/api/admin/grants", token).json() == []


def test_a_grant_to_everyone_reaches_every_user(server):
    admin, _, analyst = setup_admin_and_analyst(server)
    everyone = group_named(server, admin["access_token"], "Everyone")
    call(server, "POST", "/api/admin/grants", admin["access_token"],
         json={"group_id": everyone["id"], "resource_type": "table", "resource_id": "public_kpis"})
    items = call(server, "GET", "/api/me/effective-access", analyst["access_token"]).json()["items"]
    assert [i["resource_id"] for i in items] == ["public_kpis"]


def test_membership_guards(server):
    admin, analyst_user, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    everyone, admins = group_named(server, token, "Everyone"), group_named(server, token, "Admin")
    r = call(server, "DELETE", f"/api/admin/groups/{everyone['id']}/members/{analyst_user['id']}", token)
    assert r.status_code == 409 and "Everyone" in r.json()["detail"]
    r = call(server, "DELETE", f"/api/admin/groups/{admins['id']}/members/{admin['user_id']}", token)
    assert r.status_code == 409 and r.json()["detail"] == "Cannot remove the last active admin"
    # Promote Ana, then the first admin may step down.
    call(server, "POST", f"/api/admin/groups/{admins['id']}/members", token, json={"email": ANALYST["email"]})
    assert login(server, ANALYST["email"], ANALYST["password"]).json()["role"] == "admin"
    r = call(server, "DELETE", f"/api/admin/groups/{admins['id']}/members/{admin['user_id']}", token)
    assert r.status_code == 204
    assert call(server, "GET", "/api/users", token).status_code == 403  # no longer admin, at once


def test_grant_validation(server):
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    gid = group_named(server, token, "Everyone")["id"]
    cases = [({"group_id": gid, "resource_type": "dataset", "resource_id": "x"}, 422, "must be one of: table"),
             ({"group_id": gid, "resource_type": "table", "resource_id": "../etc"}, 422, "table id"),
             ({"group_id": gid, "resource_type": "table", "resource_id": "a" * 65}, 422, "at most 64"),
             ({"group_id": "nope", "resource_type": "table", "resource_id": "x"}, 404, "Group not found"),
             ({"group_id": gid, "resource_type": "table"}, 422, "'resource_id' is required")]
    for body, status, fragment in cases:
        r = call(server, "POST", "/api/admin/grants", token, json=body)
        assert r.status_code == status and fragment in r.json()["detail"], (body, r.text)
    assert call(server, "DELETE", "/api/admin/grants/nope", token).status_code == 404


def test_audit_log_pages_newest_first(server):
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    for i in range(3):
        call(server, "POST", "/api/admin/groups", token, json={"name": f"team{i}"})
    page = call(server, "GET", "/api/admin/audit?limit=2&action=user_group.", token).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [i["action"] for i in page["items"]] == ["user_group.created"] * 2
    assert page["items"][0]["user_email"] == "admin@example.com"
    rest = call(server, "GET", "/api/admin/audit?limit=2&offset=2&action=user_group.", token).json()
    assert len(rest["items"]) == 1
    everything = call(server, "GET", "/api/admin/audit", token).json()
    assert {"auth.bootstrap", "user.create", "auth.login"} <= {i["action"] for i in everything["items"]}
    r = call(server, "GET", "/api/admin/audit?limit=0", token)
    assert r.status_code == 422 and "limit" in r.json()["detail"]
