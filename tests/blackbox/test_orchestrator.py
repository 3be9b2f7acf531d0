"""The orchestrator: every extract stitched into one catalog (SPEC §7)."""
import json
import time

import requests

from conftest import duckdb_exec, run_agnes
from test_auth import bootstrap
from test_contract import make_extract


def extracts(workdir):
    path = workdir / "data" / "extracts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def rebuild(env):
    out = run_agnes(["rebuild", "--json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def catalog_query(workdir, sources, sql):
    """Query analytics/server.duckdb the way the server must: with each extract attached by its source name."""
    attach = "".join(f"ATTACH '{workdir}/data/extracts/{s}/extract.duckdb' AS {s} (READ_ONLY); " for s in sources)
    return duckdb_exec(workdir / "data" / "analytics" / "server.duckdb", attach + sql).strip()


def by_name(report):
    return {s["name"]: s for s in report["sources"]}


def test_a_hand_made_extract_becomes_a_catalog_view(env, workdir):
    make_extract(extracts(workdir), "mysource", rows=(("orders", "local"), ("customers", "local")))
    report = rebuild(env)
    assert by_name(report)["mysource"] == {"name": "mysource", "status": "ok", "views": ["customers", "orders"],
                                           "errors": []}
    assert report["views"] == 2 and report["collisions"] == []
    assert catalog_query(workdir, ["mysource"], "SELECT count(*) FROM orders") == "10"
    rows = duckdb_exec(workdir / "state" / "system.duckdb",
                       "SELECT table_id, rows, status, length(hash) FROM sync_state ORDER BY table_id").splitlines()
    assert rows == ["customers\t10\tok\t16", "orders\t10\tok\t16"]


def test_first_source_keeps_a_name_and_the_collision_is_reported(env, workdir):
    make_extract(extracts(workdir), "beta", rows=(("orders", "local"),))
    first = rebuild(env)
    assert by_name(first)["beta"]["views"] == ["orders"]
    make_extract(extracts(workdir), "alpha", rows=(("orders", "local"), ("products", "local")))
    second = rebuild(env)
    # beta claimed 'orders' first; alphabetical order does not take it away.
    assert second["collisions"] == [{"view": "orders", "owner": "beta", "skipped_source": "alpha"}]
    assert by_name(second)["alpha"]["status"] == "partial"
    assert by_name(second)["alpha"]["views"] == ["products"]
    # Once beta stops publishing it (and every source is readable), the name is released.
    duckdb_exec(extracts(workdir) / "beta" / "extract.duckdb", "DELETE FROM _meta")
    third = rebuild(env)
    assert by_name(third)["alpha"]["views"] == ["orders", "products"] and third["collisions"] == []


def test_a_broken_extract_never_blocks_the_others(env, workdir):
    make_extract(extracts(workdir), "good", rows=(("orders", "local"),))
    (extracts(workdir) / "corrupt").mkdir()
    (extracts(workdir) / "corrupt" / "extract.duckdb").write_bytes(b"half-written" * 1000)
    make_extract(extracts(workdir), "wrongshape", meta_ddl="CREATE TABLE _meta (name VARCHAR)", rows=())
    (extracts(workdir) / "not-a-source").mkdir()
    report = rebuild(env)
    sources = by_name(report)
    assert sources["good"]["status"] == "ok" and sources["good"]["views"] == ["orders"]
    assert sources["corrupt"]["status"] == "error" and "not a valid DuckDB database" in sources["corrupt"]["errors"][0]
    assert sources["wrongshape"]["status"] == "error" and "_meta columns" in sources["wrongshape"]["errors"][0]
    assert "not-a-source" not in sources
    assert catalog_query(workdir, ["good"], "SELECT count(*) FROM orders") == "10"


def test_a_rebuild_killed_midway_leaves_no_trace(env, workdir):
    make_extract(extracts(workdir), "src", rows=(("orders", "local"),))
    analytics = workdir / "data" / "analytics"
    analytics.mkdir(parents=True)
    (analytics / "server.duckdb.tmp").write_bytes(b"leftover of a killed rebuild")
    rebuild(env)
    assert not (analytics / "server.duckdb.tmp").exists()
    assert catalog_query(workdir, ["src"], "SELECT count(*) FROM orders") == "10"


def test_the_server_builds_the_catalog_at_start_and_on_request(server_factory, env, workdir):
    make_extract(extracts(workdir), "first", rows=(("orders", "local"),))
    server = server_factory(env)
    assert (workdir / "data" / "analytics" / "server.duckdb").exists()
    token = bootstrap(server).json()["access_token"]
    make_extract(extracts(workdir), "second", rows=(("customers", "local"),))
    r = requests.post(server.url + "/api/admin/rebuild", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200
    assert {s["name"]: s["views"] for s in r.json()["sources"]} == {"first": ["orders"], "second": ["customers"]}
    # The CLI refuses politely while the server owns system.duckdb.
    out = run_agnes(["rebuild"], env)
    assert out.returncode == 1 and "POST /api/admin/rebuild" in out.stderr


def test_a_briefly_broken_owner_keeps_its_names(env, workdir):
    make_extract(extracts(workdir), "beta", rows=(("orders", "local"),))
    rebuild(env)
    make_extract(extracts(workdir), "alpha", rows=(("orders", "local"),))
    (extracts(workdir) / "beta" / "extract.duckdb").write_bytes(b"mid-write")
    report = rebuild(env)
    # beta could not be read, so nothing is released: alpha still may not take 'orders'.
    assert report["collisions"] == [{"view": "orders", "owner": "beta", "skipped_source": "alpha"}]


def test_start_rebuilds_only_when_an_extract_changed(server_factory, env, workdir):
    make_extract(extracts(workdir), "first", rows=(("orders", "local"),))
    server = server_factory(env)
    assert "catalog rebuilt" in server.wait_for_log("agnes is serving")
    server.stop()
    server = server_factory(env)
    assert "catalog rebuilt" not in server.wait_for_log("agnes is serving")  # nothing changed
    server.stop()
    make_extract(extracts(workdir), "second", rows=(("customers", "local"),))
    server = server_factory(env)
    assert "catalog rebuilt sources=2" in server.wait_for_log("agnes is serving").replace('"', "")


def test_an_extract_dropped_into_a_running_server_is_published(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_CATALOG_WATCH="1"))
    token = bootstrap(server).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    def names():
        r = requests.get(server.url + "/api/catalog/tables", headers=headers, timeout=10)
        return [t["id"] for t in r.json()["tables"]]

    assert names() == []
    # Written the way connectors must: complete file first, then renamed into place.
    make_extract(extracts(workdir), "staging", rows=(("events", "local"),))
    (extracts(workdir) / "dropped").mkdir()
    (extracts(workdir) / "staging" / "extract.duckdb").rename(extracts(workdir) / "dropped" / "extract.duckdb")
    deadline = time.monotonic() + 10
    while names() != ["events"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert names() == ["events"]
    r = requests.post(server.url + "/api/query", headers=headers, json={"sql": "SELECT count(*) FROM events"},
                      timeout=10)
    assert r.json()["rows"] == [[10]]


def test_names_differing_only_in_case_are_one_name(env, workdir):
    # DuckDB's catalog ignores case: "Orders" from a second source must not replace "orders".
    make_extract(extracts(workdir), "alpha", rows=(("orders", "local"),))
    make_extract(extracts(workdir), "beta", rows=(("Orders", "local"),),
                 extra_sql="CREATE OR REPLACE VIEW \"Orders\" AS SELECT 'beta' AS label")
    report = rebuild(env)
    assert report["collisions"] == [{"view": "Orders", "owner": "alpha", "skipped_source": "beta"}]
    assert catalog_query(workdir, ["alpha", "beta"], "SELECT count(*) FROM orders") == "10"
