"""GET /api/catalog/tables: what each caller may see (SPEC §6, §8)."""
import json

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


def test_one_table_with_its_columns_and_a_sample(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"), ("customers", "local")))
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    r = call(server, "GET", "/api/catalog/tables/orders", token)
    assert r.status_code == 200, r.text
    table = r.json()
    assert table["id"] == "orders" and table["source_type"] == "shop" and table["rows"] == 10
    assert table["size_bytes"] == 1000 and table["last_sync"].endswith("Z") and table["column_count"] == 2
    assert table["columns"] == [{"name": "id", "type": "BIGINT", "nullable": True, "description": ""},
                                {"name": "label", "type": "VARCHAR", "nullable": True, "description": ""}]
    sample = call(server, "GET", "/api/catalog/tables/orders/sample?n=3", token).json()
    assert sample["columns"] == ["id", "label"] and sample["row_count"] == 3 and sample["rows"][0] == [0, "item 0"]
    assert call(server, "GET", "/api/catalog/tables/orders/sample", token).json()["row_count"] == 10
    for n in ("0", "101", "x", "-1"):
        bad = call(server, "GET", f"/api/catalog/tables/orders/sample?n={n}", token)
        assert bad.status_code == 422 and "1 to 100" in bad.json()["detail"]
    missing = call(server, "GET", "/api/catalog/tables/nope", token)
    assert missing.status_code == 404 and "'nope'" in missing.json()["detail"]
    # The analyst has no grant: answered exactly as a table that does not exist (no oracle for which
    # names exist), for the details and the sample alike.
    for path in ("/api/catalog/tables/{}", "/api/catalog/tables/{}/sample?n=1"):
        denied = call(server, "GET", path.format("orders"), analyst["access_token"])
        absent = call(server, "GET", path.format("ordersx"), analyst["access_token"])
        assert denied.status_code == absent.status_code == 404
        assert denied.json() == {"detail": absent.json()["detail"].replace("ordersx", "orders")}
        assert "item" not in denied.text
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    assert call(server, "GET", "/api/catalog/tables/orders/sample?n=1", analyst["access_token"]).json()[
        "rows"] == [[0, "item 0"]]


def test_health_detailed_shows_collisions_broken_sources_and_stale_tables(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop_a", rows=(("orders", "local"),))
    make_extract(extracts(workdir), "shop_b", rows=(("orders", "local"), ("refunds", "local")),
                 extra_sql="UPDATE _meta SET extracted_at = now()::TIMESTAMP - INTERVAL 100 HOUR "
                           "WHERE table_name = 'refunds'")
    (extracts(workdir) / "corrupt").mkdir()
    (extracts(workdir) / "corrupt" / "extract.duckdb").write_bytes(b"half-written" * 1000)
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    assert requests.get(server.url + "/api/health/detailed", timeout=10).status_code == 401
    r = call(server, "GET", "/api/health/detailed", admin["access_token"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["status"] == "degraded"
    catalog = doc["catalog"]
    assert catalog["collisions"] == [{"view": "orders", "owner": "shop_a", "skipped_source": "shop_b"}]
    assert {s["name"]: s["status"] for s in catalog["sources"]} == {"corrupt": "error", "shop_a": "ok",
                                                                   "shop_b": "partial"}
    assert [t["id"] for t in catalog["stale_tables"]] == ["refunds"] and catalog["tables"] == 2
    warnings = " ".join(doc["warnings"])
    assert "View 'orders' of source 'shop_b' is not published: source 'shop_a' owns that name" in warnings
    assert "Source 'corrupt' is error" in warnings and "extracted more than 48 hours ago" in warnings
    assert doc["uptime_seconds"] >= 0 and doc["memory"]["rss_bytes"] > 0
    assert doc["queries"] == {"running": 0, "max": 8}
    # The report lives in the catalog: a restart that does not rebuild still shows it.
    server.stop()
    server.start()
    again = call(server, "GET", "/api/health/detailed", admin["access_token"]).json()
    assert again["catalog"]["collisions"] == catalog["collisions"]
    assert requests.get(server.url + "/api/health", timeout=10).json()["status"] == "ok"  # load balancers unaffected
    # An analyst granted nothing sees no name at all: no tables, collisions, stale tables or sources,
    # and none of the server's paths.
    mine = call(server, "GET", "/api/health/detailed", analyst["access_token"]).json()
    assert mine["catalog"]["tables"] == 0 and mine["catalog"]["collisions"] == [] and "sources" not in mine["catalog"]
    assert mine["catalog"]["stale_tables"] == [] and "views" not in mine["catalog"]
    text = json.dumps(mine)
    for name in ("orders", "refunds", "shop_a", "shop_b", "corrupt", str(workdir)):
        assert name not in text, name
    # Granted refunds, they see that table (stale) and still no source.
    token = admin["access_token"]
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "refunds"})
    mine = call(server, "GET", "/api/health/detailed", analyst["access_token"]).json()
    assert mine["catalog"]["tables"] == 1 and [t["id"] for t in mine["catalog"]["stale_tables"]] == ["refunds"]
    text = json.dumps(mine)  # refunds' own source is shown with it (as in the catalog), nothing else
    assert "shop_a" not in text and "orders" not in text and "corrupt" not in text


def test_sync_status_lists_tables_and_collisions_per_caller(server_factory, env, workdir):
    make_extract(extracts(workdir), "shop_a", rows=(("orders", "local"), ("customers", "local")))
    make_extract(extracts(workdir), "shop_b", rows=(("orders", "local"),))
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    status = call(server, "GET", "/api/sync/status", token).json()
    assert [(t["table_id"], t["source"], t["rows"], t["state"], t["published"]) for t in status["tables"]] == [
        ("customers", "shop_a", 10, "ok", True), ("orders", "shop_a", 10, "ok", True)]
    assert status["tables"][0]["last_sync"].endswith("Z") and status["tables"][0]["error"] is None
    assert status["collisions"] == [{"view": "orders", "owner": "shop_a", "skipped_source": "shop_b"}]
    assert {s["name"]: s["status"] for s in status["sources"]} == {"shop_a": "ok", "shop_b": "partial"}
    assert status["last_rebuild"].endswith("Z")
    # An analyst sees only what they may read, and nothing about broken sources.
    mine = call(server, "GET", "/api/sync/status", analyst["access_token"]).json()
    assert mine["tables"] == [] and mine["collisions"] == [] and "sources" not in mine
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    mine = call(server, "GET", "/api/sync/status", analyst["access_token"]).json()
    assert [t["table_id"] for t in mine["tables"]] == ["orders"] and len(mine["collisions"]) == 1
