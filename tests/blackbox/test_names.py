"""Table names the query engine or the extract contract already uses (issue 13 item 14).

A view named duckdb_views shadows DuckDB's own, on which information_schema is defined: before, one such
table unpublished its whole source (health still ok), a PostgreSQL table duckdb_tables failed every table of
its source, and an upload named _meta broke every later upload.  The rule is one function (the contract
module's), applied by every writer and by the checker; the uploads' side is in test_upload.py."""
import pytest

from conftest import duckdb_exec, run_agnes
from test_contract import make_extract
from test_orchestrator import extracts
from test_postgres import configure, fresh_db, pg  # noqa: F401 (fixtures)
from test_sync import trigger_and_wait
from test_users import call, setup_admin_and_analyst


@pytest.fixture
def admin(server):
    return server, setup_admin_and_analyst(server)[0]["access_token"]


def catalog_ids(server, token):
    return [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]


@pytest.mark.parametrize("name", ["duckdb_views", "Duckdb Tables", "pg_class", "information_schema", "_meta",
                                  "sqlite_master"])
def test_register_table_refuses_a_reserved_name(admin, name):
    server, token = admin
    for path in ("/api/admin/register-table", "/api/admin/register-table/precheck"):
        r = call(server, "POST", path, token, json={"name": name, "source_type": "postgres"})
        assert r.status_code == 422, r.text
        assert "already uses" in r.json()["detail"]
    assert call(server, "GET", "/api/admin/registry", token).json()["count"] == 0


def test_an_extract_with_a_reserved_view_loses_only_that_table(admin, workdir, env):
    server, token = admin
    make_extract(extracts(workdir), "shop", rows=(("t1", "local"), ("duckdb_views", "local"), ("t2", "local")))
    path = extracts(workdir) / "shop" / "extract.duckdb"
    check = run_agnes(["contract", "check", str(path)], env)
    assert check.returncode == 1 and "duckdb_views" in check.stdout and "already uses" in check.stdout
    r = call(server, "POST", "/api/admin/rebuild", token)
    assert r.status_code == 200, r.text
    assert catalog_ids(server, token) == ["t1", "t2"]  # before: [] (the whole source was unpublished)
    status = call(server, "GET", "/api/sync/status", token).json()
    assert "duckdb_views" in str(status)  # the skipped table is said, not only logged
    assert call(server, "POST", "/api/query", token, json={"sql": "SELECT count(*) FROM t1"}).status_code == 200


def test_postgres_tables_with_reserved_names_are_renamed_and_the_source_syncs(server_factory, env, fresh_db):  # noqa: F811
    server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    fresh_db.sql("CREATE TABLE duckdb_tables (id int); INSERT INTO duckdb_tables VALUES (1), (2);"
                 "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);"
                 'CREATE TABLE "_meta" (x int); INSERT INTO "_meta" VALUES (7);')
    assert configure(server, token, fresh_db).status_code == 200
    found = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert sorted(found["tables"]) == ["orders", "public__meta", "public_duckdb_tables"], found
    assert {r["table"] for r in found["renamed_tables"]} == {"public.duckdb_tables", "public._meta"}
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run  # before: every table of the source failed
    assert catalog_ids(server, token) == ["orders", "public__meta", "public_duckdb_tables"]
    r = call(server, "POST", "/api/query", token, json={"sql": "SELECT count(*) FROM public_duckdb_tables"})
    assert r.json()["rows"] == [[2]]
    assert server.get("/api/health").json()["status"] == "ok"


def test_a_reserved_id_registered_before_the_rule_fails_alone(server_factory, env, workdir, fresh_db):  # noqa: F811
    server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    fresh_db.sql("CREATE TABLE duckdb_tables (id int); CREATE TABLE orders (id int); INSERT INTO orders VALUES (1);")
    assert configure(server, token, fresh_db).status_code == 200
    assert call(server, "POST", "/api/admin/register-table", token,
                json={"name": "orders", "source_type": "postgres"}).status_code == 201
    server.stop()
    duckdb_exec(workdir / "state" / "system.duckdb",
                "INSERT INTO table_registry (id, name, source_type, query_mode, source_table, bucket) VALUES"
                " ('duckdb_tables', 'duckdb_tables', 'postgres', 'local', 'duckdb_tables', 'public')")
    server.start()
    _, run = trigger_and_wait(server, token)
    states = {t["table_id"]: t for t in run["tables"]}
    assert states["orders"]["state"] == "done", run
    assert states["duckdb_tables"]["state"] == "failed" and "already uses" in states["duckdb_tables"]["error"]
    assert run["state"] == "partial"
    assert catalog_ids(server, token) == ["orders"]
    assert call(server, "DELETE", "/api/admin/registry/duckdb_tables", token).status_code == 204
