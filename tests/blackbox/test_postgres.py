"""The PostgreSQL connector against a real PostgreSQL 15 (SPEC §9; issue 5): configure, discover, local,
materialized and remote tables, faithful types, failures that keep the last good data, and the original's
sync bugs (reference original-connectors-cli.md §8), each guarded by a test named after it."""
import json
import os
import signal
import stat
import threading
import time

import pytest
import requests

from pg_server import PostgresServer
from test_sync import trigger_and_wait
from test_users import call, setup_admin_and_analyst


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def fresh_db(pg):
    """A schema of its own per test, dropped after; tests see only their tables."""
    pg.sql("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
           "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 't_%' "
           "LOOP EXECUTE 'DROP SCHEMA ' || quote_ident(s) || ' CASCADE'; END LOOP; END $$;")
    return pg


@pytest.fixture
def agnes(server_factory, env, fresh_db):
    server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1"))
    admin, _, analyst = setup_admin_and_analyst(server)
    return server, admin["access_token"], analyst["access_token"]


def configure(server, token, pg, **extra):
    return call(server, "POST", "/api/admin/configure", token,
                json={"data_source": "postgres", "postgres_dsn": pg.dsn, **extra})


def query(server, token, sql):
    r = call(server, "POST", "/api/query", token, json={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()


def register(server, token, **row):
    r = call(server, "POST", "/api/admin/register-table", token, json={"source_type": "postgres", **row})
    assert r.status_code == 201, r.text


def test_with_only_curl_configure_discover_trigger_query(agnes, fresh_db, workdir):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE orders (id int PRIMARY KEY, amount numeric(10,2));"
                 "INSERT INTO orders SELECT g, g * 2.5 FROM generate_series(1, 40) g; ANALYZE orders;")
    r = configure(server, token, fresh_db, instance_name="Acme analytics")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["connection"] == "verified" and body["verified"]["database"] == "postgres"
    assert body["verified"]["server_version"].startswith("15") and "discover-and-register" in body["next"]
    state = workdir / "state"
    overlay = state / ".env_overlay"
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600
    assert f'POSTGRES_DSN="{fresh_db.dsn}"' in overlay.read_text()
    settings = (state / "instance.yaml").read_text()
    assert "type: postgres" in settings and "name: Acme analytics" in settings and "dsn_env: POSTGRES_DSN" in settings
    assert "POSTGRES_DSN=" not in settings and "password" not in settings
    found = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert found["registered"] == 1 and found["tables"] == ["orders"] and found["errors"] == 0
    row = [t for t in call(server, "GET", "/api/admin/registry", token).json()["tables"] if t["id"] == "orders"][0]
    assert row["bucket"] == "public" and row["source_table"] == "orders" and row["source_type"] == "postgres"
    assert row["description"] == "Discovered in postgres: public.orders (table)"  # no estimate to freeze
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done" and run["tables"][0]["rows"] == 40, run
    assert query(server, token, "SELECT count(*), sum(amount) FROM orders")["rows"] == [[40, "2050.00"]]
    again = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert again["registered"] == 0 and again["skipped"] == 1


def test_the_first_sync_of_a_configured_source_discovers_its_tables(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE customers (id int, name text); INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bob');")
    assert configure(server, token, fresh_db).status_code == 200
    answer, run = trigger_and_wait(server, token)
    assert answer["discovering"] == "postgres"
    assert run["discovered"]["tables"] == ["customers"] and run["state"] == "done", run
    assert query(server, token, "SELECT name FROM customers ORDER BY id")["rows"] == [["Ada"], ["Bob"]]


def test_configure_tests_credentials_before_saving_anything(agnes, fresh_db, workdir):
    server, token, _ = agnes
    bad = [({"postgres_dsn": fresh_db.dsn.replace("dbname=postgres", "dbname=nope")}, 400, "does not exist"),
           ({"postgres_dsn": f"host=127.0.0.1 port=1 dbname=x user=y"}, 400, "Connection refused"),
           ({"postgres_dsn": "host=127.0.0.1 password='unterminated"}, 422, "not a valid libpq connection string"),
           ({"postgres_host": "127.0.0.1"}, 422, "postgres_database"),
           ({"postgres_dsn": fresh_db.dsn, "postgres_user": "x"}, 422, "not both"),
           ({"postgres_dsn": fresh_db.dsn, "token": "x"}, 422, 'Unknown field "token"')]
    for fields, status, words in bad:
        r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "postgres", **fields})
        assert r.status_code == status and words in r.json()["detail"], (fields, r.text)
        assert "unterminated" not in r.text  # the connection string is never echoed
    r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "bigquery"})
    assert r.status_code == 422 and "postgres" in r.json()["detail"]
    assert not (workdir / "state" / "instance.yaml").exists() and not (workdir / "state" / ".env_overlay").exists()
    assert call(server, "POST", "/api/admin/discover-and-register", token).status_code == 400


def test_private_addresses_are_refused_unless_allowed(server_factory, env, fresh_db, workdir):
    server = server_factory(env, listen_host="0.0.0.0")  # a public instance, no AGNES_ALLOW_PRIVATE_SOURCES
    token = setup_admin_and_analyst(server)[0]["access_token"]
    for dsn in (fresh_db.dsn, "host=localhost dbname=x", "host=169.254.169.254 dbname=x",
                f"postgresql://10.0.0.8:{fresh_db.port}/postgres", "dbname=x"):
        r = configure(server, token, fresh_db) if dsn == fresh_db.dsn else \
            call(server, "POST", "/api/admin/configure", token, json={"data_source": "postgres", "postgres_dsn": dsn})
        assert r.status_code == 400 and "AGNES_ALLOW_PRIVATE_SOURCES=1" in r.json()["detail"], (dsn, r.text)
    assert not (workdir / "state" / ".env_overlay").exists()


def test_types_are_mapped_faithfully_and_remote_equals_local(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql(r"""CREATE TABLE typed (i2 smallint, i4 int, i8 bigint, n numeric(12,3), nfree numeric,
        f4 real, f8 double precision, b boolean, t text, vc varchar(10), d date, ts timestamp, tz timestamptz,
        tm time, iv interval, j json, jb jsonb, u uuid, raw bytea, ints int[], words text[], color text);
        INSERT INTO typed VALUES (-3, 2147483647, 9007199254740993, 123456789.125, 1.5, 1.25, 'NaN', true,
        'comma, "quote"' || chr(10) || 'line', '', '2024-02-29', '2024-02-29 23:59:59.123456',
        '2024-03-01 01:00:00+02', '12:34:56', '-1 day 02:00:00', '{"a": [1, 2]}', '{"b": null}',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\xdeadbeef00', '{1,NULL,3}', '{"x y","z"}', NULL);
        INSERT INTO typed (i4) VALUES (NULL);""")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="typed_local", bucket="public", source_table="typed")
    register(server, token, name="typed_remote", bucket="public", source_table="typed", query_mode="remote")
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    local = query(server, token, "SELECT * FROM typed_local ORDER BY i4 NULLS LAST")
    remote = query(server, token, "SELECT * FROM typed_remote ORDER BY i4 NULLS LAST")
    assert local["types"] == ["SMALLINT", "INTEGER", "BIGINT", "DECIMAL(12,3)", "DECIMAL(38,1)", "FLOAT", "DOUBLE",
                              "BOOLEAN", "VARCHAR", "VARCHAR", "DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE",
                              "TIME", "VARCHAR", "JSON", "JSON", "UUID", "BLOB", "INTEGER[]", "VARCHAR[]", "VARCHAR"]
    assert remote["types"] == local["types"] and remote["rows"] == local["rows"]
    row = dict(zip(local["columns"], local["rows"][0]))  # beyond 2^53 integers travel as strings (SPEC §8 values)
    assert row["i8"] == "9007199254740993" and row["n"] == "123456789.125" and row["f8"] == "NaN"
    assert row["t"] == 'comma, "quote"\nline' and row["vc"] == "" and row["color"] is None  # '' is not NULL
    assert row["ts"] == "2024-02-29T23:59:59.123456" and row["tz"] == "2024-02-29T23:00:00Z"
    assert row["iv"] == "-1 days 02:00:00" and row["j"] == {"a": [1, 2]} and row["jb"] == {"b": None}
    assert row["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and row["raw"] == "\\xDE\\xAD\\xBE\\xEF\\x00"
    assert row["ints"] == [1, None, 3] and row["words"] == ["x y", "z"]
    assert local["rows"][1][1] is None
    assert query(server, token, "SELECT CAST(iv AS INTERVAL) = INTERVAL '-1 day 2 hours' FROM typed_local "
                                "WHERE i4 IS NOT NULL")["rows"] == [[True]]


def test_materialized_sql_and_its_statement_timeout(server_factory, env, fresh_db):
    server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1", AGNES_PG_STATEMENT_TIMEOUT="1"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    fresh_db.sql("CREATE TABLE sales (region text, amount int);"
                 "INSERT INTO sales VALUES ('eu', 5), ('eu', 7), ('us', 1);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="sales_by_region", query_mode="materialized",
             source_query="SELECT region, sum(amount) AS total FROM sales GROUP BY region")
    register(server, token, name="slow", query_mode="materialized", source_query="SELECT pg_sleep(3) AS nap")
    _, run = trigger_and_wait(server, token)
    states = {t["table_id"]: t for t in run["tables"]}
    assert states["sales_by_region"]["state"] == "done" and states["sales_by_region"]["rows"] == 2
    assert states["slow"]["state"] == "failed" and "statement timeout" in states["slow"]["error"], states["slow"]
    assert run["state"] == "partial"
    assert query(server, token, "SELECT region, total FROM sales_by_region ORDER BY region")["rows"] == \
        [["eu", 12], ["us", 1]]


def test_a_million_rows_sync_and_a_dropped_connection_keeps_them(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload, now() - g * interval '1 second' AS at "
                 "FROM generate_series(1, 1000000) g;")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="events", bucket="public", source_table="events")
    started = time.monotonic()
    _, run = trigger_and_wait(server, token)
    seconds = time.monotonic() - started
    assert run["state"] == "done" and run["tables"][0]["rows"] == 1000000, run
    print(f"\n1M-row PostgreSQL sync: {seconds:.2f}s, {1000000 / seconds:,.0f} rows/s (bench/ compares)")
    assert query(server, token, "SELECT count(*), count(DISTINCT payload) FROM events")["rows"] == [[1000000, 1000000]]
    fresh_db.sql("INSERT INTO events VALUES (0, 'new', now())")
    stop = threading.Event()

    def cut_connections():  # every COPY agnes starts is terminated, retries included
        while not stop.is_set():
            fresh_db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'agnes' AND query LIKE 'COPY%'")
            time.sleep(0.02)

    cutter = threading.Thread(target=cut_connections)
    cutter.start()
    try:
        _, run = trigger_and_wait(server, token)
    finally:
        stop.set()
        cutter.join()
    table = run["tables"][0]
    assert run["state"] == "failed" and table["state"] == "failed", run
    assert "terminat" in table["error"] or "server closed" in table["error"], table["error"]
    assert query(server, token, "SELECT count(*) FROM events")["rows"] == [[1000000]]  # the previous data stays
    status = [t for t in call(server, "GET", "/api/sync/status", token).json()["tables"] if t["table_id"] == "events"]
    assert status[0]["state"] == "error" and status[0]["rows"] == 1000000


def test_remote_tables_run_at_query_time_and_follow_new_columns(agnes, fresh_db):
    server, token, analyst = agnes
    fresh_db.sql("CREATE TABLE live (id int); INSERT INTO live VALUES (1), (2);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="live", bucket="public", source_table="live", query_mode="remote")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    assert query(server, token, "SELECT count(*) FROM live")["rows"] == [[2]]
    fresh_db.sql("INSERT INTO live VALUES (3)")
    assert query(server, token, "SELECT count(*) FROM live")["rows"] == [[3]]  # no sync needed
    # Pitfall: the original refreshed remote views only when an admin edited the registry.
    fresh_db.sql("ALTER TABLE live ADD COLUMN label text DEFAULT 'x'")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    assert query(server, token, "SELECT * FROM live ORDER BY id")["columns"] == ["id", "label"]
    # Analysts cannot call the function; admins can, read-only, and only with the allowed variable.
    r = call(server, "POST", "/api/query", analyst, json={"sql": "SELECT * FROM postgres_query('POSTGRES_DSN', 'SELECT 1')"})
    assert r.status_code == 403 and "postgres_query" in r.json()["detail"], r.text
    r = call(server, "POST", "/api/query", token, json={"sql": "SELECT * FROM postgres_query('JWT_SECRET_KEY', 'SELECT 1')"})
    assert r.status_code == 400 and "not an allowed connection variable" in r.json()["detail"], r.text
    r = call(server, "POST", "/api/query", token,
             json={"sql": "SELECT * FROM postgres_query('POSTGRES_DSN', "
                          "'WITH w AS (INSERT INTO live VALUES (99) RETURNING id) SELECT * FROM w')"})
    assert r.status_code == 400 and "read-only transaction" in r.json()["detail"], r.text
    assert fresh_db.sql("SELECT count(*) FROM live WHERE id = 99") == "0"


def test_pitfall_a_run_of_some_tables_keeps_the_views_of_the_others(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE a (x int); CREATE TABLE b (y int); INSERT INTO a VALUES (1); INSERT INTO b VALUES (2);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="a", bucket="public", source_table="a")
    register(server, token, name="b", bucket="public", source_table="b")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    fresh_db.sql("INSERT INTO a VALUES (10)")
    _, run = trigger_and_wait(server, token, ["a"])
    assert [t["table_id"] for t in run["tables"]] == ["a"]
    assert query(server, token, "SELECT count(*) FROM a")["rows"] == [[2]]
    assert query(server, token, "SELECT y FROM b")["rows"] == [[2]]  # b was not due and is still served


def test_pitfall_concurrent_syncs_never_race_on_the_extract(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 300000) g;")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="big", bucket="public", source_table="big")
    first = call(server, "POST", "/api/sync/trigger", token).json()
    second = call(server, "POST", "/api/sync/trigger", token).json()
    run = call(server, "GET", f"/api/sync/status/{second['run_id']}", token).json()
    assert run["tables"][0]["state"] == "joined" and run["tables"][0]["joined_run_id"] == first["run_id"]
    deadline = time.monotonic() + 60
    while call(server, "GET", f"/api/sync/status/{first['run_id']}", token).json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert query(server, token, "SELECT count(*) FROM big")["rows"] == [[300000]]


def test_pitfall_discovery_never_mangles_ids(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql('CREATE SCHEMA t_sales; CREATE TABLE public."Orders" (id int); '
                 'CREATE TABLE t_sales."Orders-2024.Q1" (id int); CREATE TABLE public."2fa" (id int);'
                 'CREATE TABLE public.t_sales_x (id int); CREATE TABLE t_sales.x (id int);'
                 'INSERT INTO public."Orders" VALUES (7);')
    assert configure(server, token, fresh_db).status_code == 200
    found = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert sorted(found["tables"]) == ["orders", "t_2fa", "t_sales_orders_2024_q1"], found
    clashing = sorted(e["table"] for e in found["error_details"])
    assert clashing == ["public.t_sales_x", "t_sales.x"] and all("t_sales_x" in e["error"] for e in found["error_details"])
    rows = {t["id"]: t for t in call(server, "GET", "/api/admin/registry", token).json()["tables"]}
    assert rows["t_sales_orders_2024_q1"]["source_table"] == "Orders-2024.Q1" and \
        rows["t_sales_orders_2024_q1"]["bucket"] == "t_sales"
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    assert query(server, token, "SELECT id FROM orders")["rows"] == [[7]]


def test_kill_9_mid_postgres_sync_keeps_data_and_sweeps_temp_files(agnes, fresh_db, workdir):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE slow_source AS SELECT generate_series(1, 200000) AS id;")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="slow_source", bucket="public", source_table="slow_source")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    # Half the rows stream, then PostgreSQL sleeps: the kill lands mid-COPY.
    fresh_db.sql("ALTER TABLE slow_source RENAME TO slow_base;"
                 "CREATE FUNCTION nap(i int) RETURNS int LANGUAGE sql AS "
                 "$$ SELECT CASE WHEN i = 100000 THEN (SELECT 0 FROM pg_sleep(30)) + i ELSE i END $$;"
                 "CREATE VIEW slow_source AS SELECT nap(id) AS id FROM slow_base;")
    run_id = call(server, "POST", "/api/sync/trigger", token).json()["run_id"]
    data = workdir / "data" / "extracts" / "postgres" / "data"
    work = workdir / "data" / "tmp" / f"sync-postgres-{run_id}"
    deadline = time.monotonic() + 20
    while not (work / "copy.csv").exists():  # the FIFO the COPY streams through
        assert time.monotonic() < deadline, "the sync never started streaming"
        time.sleep(0.05)
    time.sleep(1)
    server.stop(sig=signal.SIGKILL)
    assert work.exists()  # a killed run leaves its scratch directory...
    server.start()
    status = call(server, "GET", "/api/sync/status", token).json()
    table = [t for t in status["tables"] if t["table_id"] == "slow_source"][0]
    assert table["state"] == "error" and run_id in table["error"], table
    assert query(server, token, "SELECT count(*) FROM slow_source")["rows"] == [[200000]]
    fresh_db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agnes';"
                 "DROP VIEW slow_source; ALTER TABLE slow_base RENAME TO slow_source;")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    assert not work.exists() and not list(data.glob("*.tmp-run_*"))  # ...swept before the next run


def test_precheck_asks_the_configured_source(agnes, fresh_db):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE invoices (id bigint, total numeric(8,2), issued date)")
    assert configure(server, token, fresh_db).status_code == 200
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "invoices", "source_type": "postgres", "source_table": "invoices"})
    assert r.status_code == 200, r.text
    table = r.json()["table"]
    assert [(c["name"], c["type"], c["source_type"]) for c in table["columns"]] == \
        [("id", "BIGINT", "bigint"), ("total", "DECIMAL(8,2)", "numeric(8,2)"), ("issued", "DATE", "date")]
    assert table["column_count"] == 3
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "nope", "source_type": "postgres", "source_table": "nope"})
    assert r.status_code == 400 and 'relation "public.nope" does not exist' in r.json()["detail"], r.text
    # Which fields to change: bucket is the schema, source_table the table.
    assert 'bucket "public" (the schema, default public)' in r.json()["detail"], r.text
    assert 'source_table "nope" (the table or view)' in r.json()["detail"], r.text
    assert call(server, "GET", "/api/admin/registry", token).json()["count"] == 0


def test_unregistering_a_table_removes_it_at_once_and_keeps_the_others(agnes, fresh_db, workdir):
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE keep (x int); CREATE TABLE gone (y int); CREATE TABLE live (z int);"
                 "INSERT INTO keep VALUES (1); INSERT INTO gone VALUES (2); INSERT INTO live VALUES (3);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="keep", source_table="keep")
    register(server, token, name="gone", source_table="gone")
    register(server, token, name="live", source_table="live", query_mode="remote")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    data = workdir / "data" / "extracts" / "postgres" / "data"
    assert (data / "gone.parquet").exists()
    assert call(server, "DELETE", "/api/admin/registry/gone", token).status_code == 204
    assert not (data / "gone.parquet").exists()
    r = call(server, "POST", "/api/query", token, json={"sql": "SELECT * FROM gone"})
    assert r.status_code == 400 and "gone does not exist" in r.json()["detail"], r.text
    assert query(server, token, "SELECT x FROM keep")["rows"] == [[1]]
    assert query(server, token, "SELECT z FROM live")["rows"] == [[3]]  # remote view republished as it was
    ids = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert ids == ["keep", "live"]


def test_switching_a_table_to_remote_stops_its_download_and_the_pull_drops_the_stale_copy(agnes, fresh_db, workdir):
    """Issue 13, item 12: after local -> remote the manifest said remote, downloadable, with the old hash, and
    `agnes pull` kept 3 stale rows while the server had 4, "unchanged" for ever."""
    from test_cli import agnes as cli
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE events (id int); INSERT INTO events SELECT generate_series(1, 3);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="events")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    home = workdir / "analyst"
    (home / "ws").mkdir(parents=True)
    login = {"AGNES_SERVER": server.url, "AGNES_TOKEN": token}
    pulled = cli(home, "pull", "--json", env=login)
    assert pulled.returncode == 0 and json.loads(pulled.stdout)["downloaded"] == ["events"], pulled.stderr
    assert (home / "ws" / "data" / "events.parquet").exists()

    r = call(server, "PUT", "/api/admin/registry/events", token, json={"query_mode": "remote"})
    assert r.status_code == 200, r.text
    # The switch takes effect at the next sync, and the answer says so (it used to say only "updated").
    assert r.json()["sync_needed"] is True and 'POST /api/sync/trigger with the body ["events"]' in r.json()["note"]
    assert "agnes admin sync events" in r.json()["note"]
    described = call(server, "PUT", "/api/admin/registry/events", token, json={"description": "clicks"}).json()
    assert described["sync_needed"] is False and "note" not in described
    fresh_db.sql("INSERT INTO events VALUES (4);")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    # A remote table's size lives at the source: unknown, not an empty-looking 0.
    listed = {t["id"]: t for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]}
    assert listed["events"]["rows"] is None and listed["events"]["size_bytes"] is None, listed["events"]
    entry = call(server, "GET", "/api/sync/manifest", token).json()["tables"]["events"]
    assert entry["query_mode"] == "remote" and entry["downloadable"] is False and entry["hash"] == "", entry
    download = call(server, "GET", "/api/data/events/download", token)
    assert download.status_code == 404 and "is remote" in download.json()["detail"]
    assert not list((workdir / "data" / "extracts" / "postgres" / "data").glob("events.parquet"))
    again = cli(home, "pull", "--json", env=login)
    assert again.returncode == 0 and json.loads(again.stdout)["removed"] == ["events"], again.stdout + again.stderr
    assert not (home / "ws" / "data" / "events.parquet").exists()
    assert query(server, token, "SELECT count(*) FROM events")["rows"] == [[4]]


def test_a_configured_database_wins_over_make_runs_demo(server_factory, env, fresh_db):
    """Issue 13, item 16, as found: with the demo on, PostgreSQL's orders and customers were refused ("belongs to
    source 'demo'"), the run said done, and `SELECT count(*) FROM orders` counted the demo's 5,000 rows."""
    server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1", AGNES_DEMO="1"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert query(server, token, "SELECT count(*) FROM orders")["rows"] == [[5000]]  # the demo, until then
    fresh_db.sql("CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 7001);"
                 "CREATE TABLE customers (id int PRIMARY KEY); INSERT INTO customers VALUES (1), (2);")
    assert configure(server, token, fresh_db).status_code == 200
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done" and sorted(t["table_id"] for t in run["tables"]) == ["customers", "orders"], run
    assert query(server, token, "SELECT count(*) FROM orders")["rows"] == [[7001]]
    assert query(server, token, "SELECT count(*) FROM customers")["rows"] == [[2]]
    listed = sorted(t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"])
    assert listed == ["customers", "orders"]  # the demo's products went with it


def test_a_loopback_trial_instance_accepts_a_local_database(server_factory, env, fresh_db, workdir):
    """Issue 13, item 17: `make run` listens on 127.0.0.1, yet configure refused a PostgreSQL on 127.0.0.1 until a
    restart with AGNES_ALLOW_PRIVATE_SOURCES=1. Its callers are on this machine already: local sources just work."""
    server = server_factory(env)  # the harness listens on 127.0.0.1, like make run; no AGNES_ALLOW_PRIVATE_SOURCES
    token = setup_admin_and_analyst(server)[0]["access_token"]
    behind_a_proxy = requests.post(server.url + "/api/admin/configure", timeout=60,
                                   headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9"},
                                   json={"data_source": "postgres", "postgres_dsn": fresh_db.dsn})
    assert behind_a_proxy.status_code == 400  # a reverse proxy on the same host: the caller may be anyone
    assert "AGNES_ALLOW_PRIVATE_SOURCES=1" in behind_a_proxy.json()["detail"]
    assert not (workdir / "state" / ".env_overlay").exists()
    r = configure(server, token, fresh_db)
    assert r.status_code == 200 and r.json()["connection"] == "verified", r.text


def test_multi_dimensional_arrays_arrive_as_nested_lists_locally_and_remotely(agnes, fresh_db):
    """Issue 13, item 6: `int[]` {{1,2},{3,4}} synced as [null, null] and `text[]` {{a,b},{c,d}} as two strings, and the
    run said done."""
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE grids (id int, cells int[], words text[], flat int[], mixed int[]);"
                 "INSERT INTO grids VALUES (1, '{{1,2},{3,4}}', '{{a,b},{c,d}}', '{5,6}', '{7,8}'),"
                 " (2, NULL, '{}', '{}', '{{9,10}}');")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="grids_local", source_table="grids")
    register(server, token, name="grids_remote", source_table="grids", query_mode="remote")
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    local = query(server, token, "SELECT * FROM grids_local ORDER BY id")
    remote = query(server, token, "SELECT * FROM grids_remote ORDER BY id")
    assert local["types"] == ["INTEGER", "INTEGER[][]", "VARCHAR[][]", "INTEGER[]", "JSON"], local["types"]
    assert remote["types"] == local["types"] and remote["rows"] == local["rows"]
    first = dict(zip(local["columns"], local["rows"][0]))
    assert first["cells"] == [[1, 2], [3, 4]] and first["words"] == [["a", "b"], ["c", "d"]]
    assert first["flat"] == [5, 6] and first["mixed"] == [7, 8]  # JSON text of a 1-D array...
    second = dict(zip(local["columns"], local["rows"][1]))
    assert second["cells"] is None and second["words"] == [] and second["mixed"] == [[9, 10]]  # ...and a 2-D one
    notes = [t for t in run["tables"] if t["table_id"] == "grids_local"][0]["notes"]
    assert any("mixed holds arrays of 1 to 2 dimensions" in n and "JSON text" in n for n in notes), notes
    # Later data deeper than the remote view's type is an error, never a list of NULLs.
    fresh_db.sql("INSERT INTO grids VALUES (3, '{{{1}}}', NULL, NULL, NULL);")
    deeper = call(server, "POST", "/api/query", token, json={"sql": "SELECT cells FROM grids_remote WHERE id = 3"})
    assert deeper.status_code == 400, deeper.text
    _, again = trigger_and_wait(server, token)  # a sync looks again and keeps every value
    assert again["state"] == "done", again
    deep = query(server, token, "SELECT cells FROM grids_local WHERE id = 3")
    assert deep["types"] == ["JSON"] and deep["rows"] == [[[[[1]]]]]  # 2 and 3 dimensions now: JSON, every value kept


def test_nan_in_a_bounded_numeric_is_kept_as_double_and_said(agnes, fresh_db):
    """Issue 13, item 7: one NaN in a numeric(10,2) column failed the whole table."""
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE prices (id int, price numeric(10,2), fee numeric(10,2));"
                 "INSERT INTO prices VALUES (1, 9.99, 1.50), (2, 'NaN', 2.25), (3, 4.5, NULL);")
    assert configure(server, token, fresh_db).status_code == 200
    register(server, token, name="prices", source_table="prices")
    register(server, token, name="prices_remote", source_table="prices", query_mode="remote")
    _, run = trigger_and_wait(server, token)
    table = [t for t in run["tables"] if t["table_id"] == "prices"][0]
    assert table["state"] == "done" and table["rows"] == 3, run
    assert any("column price (numeric(10,2)) holds NaN or Infinity" in n and "DOUBLE" in n for n in table["notes"])
    answer = query(server, token, "SELECT price, fee FROM prices ORDER BY id")
    assert answer["types"] == ["DOUBLE", "DECIMAL(10,2)"]  # only the column that needs it changes
    assert answer["rows"] == [[9.99, "1.50"], ["NaN", "2.25"], [4.5, None]]
    # Remote: DECIMAL cannot hold NaN, and the query says so instead of a silent NULL.
    remote = call(server, "POST", "/api/query", token, json={"sql": "SELECT price FROM prices_remote"})
    assert remote.status_code == 400 and "holds NaN or Infinity" in remote.json()["detail"], remote.text
    assert query(server, token, "SELECT fee FROM prices_remote WHERE id = 1")["rows"] == [["1.50"]]


def test_numeric_without_precision_never_loses_a_digit(agnes, fresh_db):
    """A numeric without precision synced as DOUBLE: 12345678901234567.89 came back as 12345678901234568.
    Measured instead: DECIMAL(38,s) when every value fits, exact text otherwise, said in the notes,
    shown by precheck, and the same for a remote table."""
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE ledger (id int, amount numeric, huge numeric(60,2), odd numeric, empty numeric);"
                 "INSERT INTO ledger VALUES (1, 12345678901234567.89, 123456789012345678901234567890123456789.12,"
                 " 'NaN', NULL), (2, -0.5, 1.00, 2.125, NULL);")
    assert configure(server, token, fresh_db).status_code == 200
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "ledger", "source_type": "postgres", "source_table": "ledger"})
    assert r.status_code == 200, r.text
    assert [(c["name"], c["type"]) for c in r.json()["table"]["columns"]] == \
        [("id", "INTEGER"), ("amount", "DECIMAL(38,2)"), ("huge", "VARCHAR"), ("odd", "VARCHAR"), ("empty", "VARCHAR")]
    register(server, token, name="ledger", source_table="ledger")
    register(server, token, name="ledger_remote", source_table="ledger", query_mode="remote")
    _, run = trigger_and_wait(server, token)
    table = [t for t in run["tables"] if t["table_id"] == "ledger"][0]
    assert table["state"] == "done", run
    assert any("column amount" in n and "DECIMAL(38,2)" in n for n in table["notes"]), table
    assert any("column huge" in n and "exact text" in n and "38 digits" in n for n in table["notes"]), table
    for name in ("ledger", "ledger_remote"):
        answer = query(server, token, f"SELECT amount, huge, odd FROM {name} ORDER BY id")
        assert answer["types"] == ["DECIMAL(38,2)", "VARCHAR", "VARCHAR"], answer
        assert answer["rows"] == [["12345678901234567.89", "123456789012345678901234567890123456789.12", "NaN"],
                                  ["-0.50", "1.00", "2.125"]]
    # A remote value with more decimal places than measured fails loudly instead of rounding.
    fresh_db.sql("INSERT INTO ledger VALUES (3, 1.125, 1, 1, NULL)")
    r = call(server, "POST", "/api/query", token, json={"sql": "SELECT amount FROM ledger_remote"})
    assert r.status_code == 400 and "more than 2 decimal places" in r.json()["detail"], r.text
    assert "sync the source again" in r.json()["detail"]


def test_catalog_descriptions_and_column_facts_stay_current(agnes, fresh_db):
    """Issue 13, item 8: the description said "about 0 rows" after 1,000 rows were synced, and a PRIMARY KEY or NOT NULL
    column was `nullable: true`."""
    server, token, _ = agnes
    fresh_db.sql("CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, note text);"
                 "COMMENT ON COLUMN accounts.email IS 'login address, lower case';")
    assert configure(server, token, fresh_db).status_code == 200
    assert call(server, "POST", "/api/admin/discover-and-register", token).json()["tables"] == ["accounts"]
    fresh_db.sql("INSERT INTO accounts SELECT g, 'u' || g || '@example.com', NULL FROM generate_series(1, 1000) g;")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    table = call(server, "GET", "/api/catalog/tables/accounts", token).json()
    assert table["rows"] == 1000 and "about" not in (table["description"] or ""), table["description"]
    columns = {c["name"]: c for c in table["columns"]}
    assert columns["id"]["nullable"] is False and columns["email"]["nullable"] is False
    assert columns["note"]["nullable"] is True
    assert columns["email"]["description"] == "login address, lower case"
    # The source changes: the next sync says so.
    fresh_db.sql("ALTER TABLE accounts ALTER COLUMN email DROP NOT NULL;"
                 "COMMENT ON TABLE accounts IS 'Customer accounts, one per login';")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    table = call(server, "GET", "/api/catalog/tables/accounts", token).json()
    assert table["description"] == "Customer accounts, one per login"
    assert {c["name"]: c["nullable"] for c in table["columns"]}["email"] is True
