"""Remote (PostgreSQL) tables obey the sandbox's rule (issue 12): an analyst's engine can run the
remote statements of the tables they may read, and nothing else on the source."""
import json
import os
import subprocess

from conftest import AGNES_TOOLS
from test_catalog import everyone_id
from test_postgres import agnes, configure, fresh_db, pg, register  # noqa: F401 (fixtures)
from test_sync import trigger_and_wait
from test_users import call


def test_an_analyst_reads_granted_remote_tables_and_nothing_else_of_the_source(agnes, fresh_db):  # noqa: F811
    server, admin, analyst = agnes
    fresh_db.sql("CREATE TABLE live (id int, label text); INSERT INTO live VALUES (1, 'open'), (2, 'open');"
                 "CREATE TABLE secret (id int, note text); INSERT INTO secret VALUES (1, 'pg-secret-row');")
    assert configure(server, admin, fresh_db).status_code == 200
    register(server, admin, name="live", bucket="public", source_table="live", query_mode="remote")
    register(server, admin, name="secret", bucket="public", source_table="secret", query_mode="remote")
    assert trigger_and_wait(server, admin)[1]["state"] == "done"
    r = call(server, "POST", "/api/admin/grants", admin, json={"group_id": everyone_id(server, admin),
                                                               "resource_type": "table", "resource_id": "live"})
    assert r.status_code == 201, r.text

    def ask(sql):
        return call(server, "POST", "/api/query", analyst, json={"sql": sql})

    assert ask("SELECT count(*) FROM live").json()["rows"] == [[2]]
    fresh_db.sql("INSERT INTO live VALUES (3, 'new')")
    assert ask("SELECT max(id) FROM live").json()["rows"] == [[3]]  # read at query time, in the sandbox
    for sql in ("SELECT * FROM secret", "SELECT * FROM postgres_query('POSTGRES_DSN', 'SELECT * FROM secret')"):
        r = ask(sql)
        assert r.status_code == 403 and "pg-secret-row" not in r.text, r.text

    # Wall (b) alone: the analyst's engine, guard off, runs only the granted view's own statement.
    statements = ["SELECT count(*) AS n FROM live",
                  "SELECT * FROM secret",
                  "SELECT * FROM postgres_query('POSTGRES_DSN', 'SELECT * FROM secret')",
                  "SELECT * FROM postgres_query('POSTGRES_DSN', 'SELECT note AS id, note AS label FROM secret')",
                  "SELECT * FROM postgres_query('JWT_SECRET_KEY', 'SELECT 1')",
                  "SELECT * FROM duckdb_views() WHERE NOT internal"]
    out = subprocess.run([os.path.join(AGNES_TOOLS, "query_engine"), "live"], input=json.dumps(statements),
                         env=server.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    first = results[0]["frames"]
    assert [f["type"] for f in first] == ["H", "D", "Z"] and json.loads(first[1]["payload"])["rows"] == [[3]]
    for result in results[1:-1]:
        text = json.dumps(result["frames"])
        assert "pg-secret-row" not in text and result["frames"][0]["type"] == "E", text
    views = json.loads(results[-1]["frames"][1]["payload"])["rows"]
    assert [row[4] for row in views] == ["live"]  # the sandbox holds no other view of the source
