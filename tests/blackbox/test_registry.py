"""The table registry API (SPEC §9, reference §1.8; issue 5)."""
import os
import stat

import pytest

from conftest import duckdb_exec
from test_contract import make_extract
from test_orchestrator import extracts
from test_users import call, setup_admin_and_analyst


@pytest.fixture
def admin(server):
    return server, setup_admin_and_analyst(server)[0]["access_token"]


def register(server, token, **fields):
    return call(server, "POST", "/api/admin/register-table", token, json=fields)


def registry(server, token):
    body = call(server, "GET", "/api/admin/registry", token).json()
    assert body["count"] == len(body["tables"])
    return {t["id"]: t for t in body["tables"]}


def test_register_list_update_and_delete(admin):
    server, token = admin
    r = register(server, token, name="Big Orders", source_type="postgres", sync_schedule="every 15m",
                 primary_key="id", description="Orders over 1k")
    assert r.status_code == 201 and r.json() == {"id": "big_orders", "name": "Big Orders", "status": "registered"}
    row = registry(server, token)["big_orders"]
    assert row == {**row, "name": "Big Orders", "source_type": "postgres", "query_mode": "local",
                   "sync_schedule": "every 15m", "primary_key": ["id"], "description": "Orders over 1k",
                   "sync_strategy": "full_refresh", "profile_after_sync": True, "source_query": None,
                   "registered_by": "admin@example.com", "last_sync_error": None}
    assert row["registered_at"].endswith("Z")
    r = call(server, "PUT", "/api/admin/registry/big_orders", token,
             json={"query_mode": "materialized", "source_query": "SELECT *\nFROM orders\nWHERE total > 1000"})
    assert r.status_code == 200 and r.json()["updated"] == ["query_mode", "source_query"], r.text
    assert r.json()["sync_needed"] is True and "agnes admin sync big_orders" in r.json()["note"]
    assert registry(server, token)["big_orders"]["source_query"].startswith("SELECT *\nFROM")
    r = call(server, "PUT", "/api/admin/registry/big_orders", token, json={"query_mode": "local"})
    assert r.status_code == 200 and registry(server, token)["big_orders"]["source_query"] is None
    assert registry(server, token)["big_orders"]["registered_at"] == row["registered_at"]
    assert call(server, "DELETE", "/api/admin/registry/big_orders", token).status_code == 204
    assert registry(server, token) == {}
    missing = call(server, "DELETE", "/api/admin/registry/big_orders", token)
    assert missing.status_code == 404 and missing.json()["detail"] == "Table not found"
    assert call(server, "PUT", "/api/admin/registry/nope", token, json={}).status_code == 404


BAD = [
    ({}, 422, "name"),
    ({"name": "   "}, 422, "valid id"),
    ({"name": "bad-name"}, 422, "valid id"),
    ({"name": "x" * 65}, 422, "valid id"),
    ({"name": "t", "query_mode": "streaming"}, 422, "local, materialized, remote"),
    ({"name": "t", "query_mode": "materialized"}, 422, "needs a source_query"),
    ({"name": "t", "source_query": "SELECT 1"}, 422, "only for query_mode 'materialized'"),
    ({"name": "t", "sync_schedule": "hourly"}, 422, "every <N>m"),
    ({"name": "t", "sync_schedule": "daily 25:00"}, 422, "every <N>m"),
    ({"name": "t", "source_type": "nope"}, 422, "not a connector here"),
    ({"name": "t", "primary_key": 5}, 422, "list of 1 to 32 column names"),
    ({"name": "t", "description": 5}, 422, "description"),
]


@pytest.mark.parametrize("body,status,words", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_registrations_say_what_to_fix(admin, body, status, words):
    server, token = admin
    for path in ("/api/admin/register-table", "/api/admin/register-table/precheck"):
        r = call(server, "POST", path, token, json=body)
        assert r.status_code == status, (path, r.text)
        assert words in r.json()["detail"], (path, r.text)
    assert registry(server, token) == {}


def test_duplicates_and_names_owned_by_another_source_are_409(admin, workdir):
    server, token = admin
    assert register(server, token, name="events", source_type="postgres").status_code == 201
    dup = register(server, token, name="Events", source_type="keboola", bucket="in.c-x", source_table="events")
    assert dup.status_code == 409 and dup.json()["detail"] == "Table 'events' already registered"
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"),))
    assert call(server, "POST", "/api/admin/rebuild", token).status_code == 200
    taken = register(server, token, name="orders", source_type="postgres")
    assert taken.status_code == 409 and "'shop'" in taken.json()["detail"]
    assert register(server, token, name="orders", source_type="shop_conn").status_code == 422  # not a connector


def test_precheck_validates_without_storing(admin):
    server, token = admin
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "Sales 2024", "source_type": "postgres", "bucket": "public", "source_table": "sales"})
    assert r.status_code == 200
    assert r.json() == {"ok": True, "table": {"id": "sales_2024", "name": "Sales 2024", "source_type": "postgres",
                                              "bucket": "public", "source_table": "sales", "rows": None,
                                              "size_bytes": None, "columns": [],
                                              "note": "Valid. Rows and columns are known after the first sync."}}
    assert registry(server, token) == {}


def test_custom_connectors_are_source_types_when_their_executable_exists(server_factory, env, workdir):
    connectors = workdir / "connectors"
    (connectors / "crm").mkdir(parents=True)
    script = connectors / "crm" / "extract"
    script.write_text("#!/bin/sh\nexit 0\n")
    server = server_factory(dict(env, CONNECTORS_DIR=str(connectors)))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert register(server, token, name="accounts", source_type="crm").status_code == 422  # not executable yet
    os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR)
    assert register(server, token, name="accounts", source_type="crm").status_code == 201


def test_deleting_a_table_removes_its_state_and_materialized_file(admin, workdir):
    server, token = admin
    assert register(server, token, name="summary", source_type="postgres", query_mode="materialized",
                    source_query="SELECT 1").status_code == 201
    data = workdir / "data" / "extracts" / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "summary.parquet").write_bytes(b"PAR1")
    (data / "summary.parquet.tmp").write_bytes(b"half")
    assert call(server, "DELETE", "/api/admin/registry/summary", token).status_code == 204
    assert list(data.iterdir()) == []
    audit = call(server, "GET", "/api/admin/audit?action=table.", token).json()
    assert [e["action"] for e in audit["items"]][:2] == ["table.unregister", "table.register"]
