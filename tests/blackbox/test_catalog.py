"""GET /api/catalog/tables: what each caller may see (SPEC §6, §8)."""
import requests

from test_contract import make_extract
from test_orchestrator import extracts
from test_users import ANALYST, call, setup_admin_and_analyst


def tables(server, token):
    r = call(server, "GET", "/api/catalog/tables", token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == len(body["tables"])
    return body["tables"]


def everyone_id(server, token):
    return next(g["id"] for g in call(server, "GET", "/api/admin/groups", token).json() if g["name"] == "Everyone")


def test_admins_see_every_table_with_its_description(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"), ("customers", "local")))
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    listed = tables(server, admin["access_token"])
    assert [t["id"] for t in listed] == ["customers", "orders"]
    orders = listed[1]
    assert orders == {**orders, "name": "orders", "description": "d", "source_type": "shop",
                      "query_mode": "local", "rows": 10, "size_bytes": 1000}
    assert orders["last_sync"].endswith("Z")


def test_analysts_see_only_granted_tables(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"), ("customers", "local")))
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    assert tables(server, analyst["access_token"]) == []
    finance = call(server, "POST", "/api/admin/groups", token, json={"name": "Finance"}).json()
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": finance["id"], "resource_type": "table", "resource_id": "customers"})
    assert tables(server, analyst["access_token"]) == []  # not a member of Finance
    call(server, "POST", f"/api/admin/groups/{finance['id']}/members", token, json={"email": ANALYST["email"]})
    assert [t["id"] for t in tables(server, analyst["access_token"])] == ["customers"]
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    assert [t["id"] for t in tables(server, analyst["access_token"])] == ["customers", "orders"]


def test_a_rebuild_shows_new_extracts_and_an_empty_instance_lists_nothing(server, env, workdir):
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    assert tables(server, token) == []
    make_extract(extracts(workdir), "fresh", rows=(("events", "local"),))
    r = requests.post(server.url + "/api/admin/rebuild", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200
    assert [t["id"] for t in tables(server, token)] == ["events"]
