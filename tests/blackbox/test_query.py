"""POST /api/query: one guarded SELECT on the catalog, streamed (SPEC §8)."""
import csv
import io
import json
import os
import subprocess
import threading
import time

import pytest
import requests

from conftest import duckdb_exec
from test_catalog import everyone_id
from test_contract import make_extract
from test_orchestrator import extracts
from test_users import call, setup_admin_and_analyst

READ_ARROW = os.path.join(os.path.dirname(__file__), "..", "js", "read_arrow.mjs")
SLOW_SQL = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(1000000) b"


def query(server, token, sql, **fields):
    return call(server, "POST", "/api/query", token, json={"sql": sql, **fields})


@pytest.fixture
def shop(server_factory, env, workdir):
    """A catalog with orders and customers; the analyst is granted customers only."""
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"), ("customers", "local")))
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    call(server, "POST", "/api/admin/grants", admin["access_token"],
         json={"group_id": everyone_id(server, admin["access_token"]), "resource_type": "table",
               "resource_id": "customers"})
    return server, admin["access_token"], analyst["access_token"]


def test_a_hand_made_extract_answers_queries_in_the_documented_shape(shop):
    server, admin, _ = shop
    r = query(server, admin, "SELECT id, label FROM orders ORDER BY id", limit=3)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["columns"] == ["id", "label"] and body["types"] == ["BIGINT", "VARCHAR"]
    assert body["rows"] == [[0, "item 0"], [1, "item 1"], [2, "item 2"]]
    assert body["row_count"] == 3 and body["truncated"] is True
    assert isinstance(body["elapsed_ms"], (int, float)) and body["elapsed_ms"] >= 0
    whole = query(server, admin, "SELECT count(*) AS n FROM orders").json()
    assert whole["rows"] == [[10]] and whole["truncated"] is False
    empty = query(server, admin, "SELECT * FROM orders WHERE id < 0").json()
    assert empty["rows"] == [] and empty["row_count"] == 0 and empty["columns"] == ["id", "label"]


def test_the_default_limit_is_1000_rows(shop):
    server, admin, _ = shop
    body = query(server, admin, "SELECT * FROM range(2500)").json()
    assert body["row_count"] == 1000 and body["truncated"] is True
    assert [row[0] for row in body["rows"][:3]] == [0, 1, 2] and body["rows"][-1] == [999]


def test_analysts_query_granted_tables_and_get_403_naming_the_others(shop):
    server, _, analyst = shop
    assert query(server, analyst, "SELECT count(*) FROM customers").json()["rows"] == [[10]]
    r = query(server, analyst, "SELECT * FROM orders")
    assert r.status_code == 403
    assert "'orders'" in r.json()["detail"]
    joined = query(server, analyst, "SELECT * FROM customers c JOIN orders o ON c.id = o.id")
    assert joined.status_code == 403 and "'orders'" in joined.json()["detail"]
    unknown = query(server, analyst, "SELECT * FROM nope")
    assert unknown.status_code == 403 and "does not exist or you have no access" in unknown.json()["detail"]
    assert r.json()["detail"].replace("orders", "nope") == unknown.json()["detail"]  # existence is no oracle
    hidden = query(server, analyst, "SELECT * FROM customers WHERE id IN (SELECT id FROM \"ORDERS\")")
    assert hidden.status_code == 403 and "orders" in hidden.json()["detail"].lower()


MISSING = "does not exist or you have no access to it"
BY_NAME = "by name only, not files"
METADATA = "The engine's own catalog"
SINGLE = "Only a single SELECT statement is allowed"
SELECT_ONLY = "Only SELECT queries are allowed"

# Each case names the status and a fragment of the guard's own sentence: the locked-down
# engine behind the guard would refuse most of these too, and must not hide a guard regression.
ATTACKS = [
    ("multiple statements", "SELECT 1; SELECT 2", 400, SINGLE),
    ("copy", "COPY (SELECT 1) TO '/tmp/agnes-pwned.csv'", 400, SELECT_ONLY),
    ("attach", "ATTACH '/tmp/x.duckdb' AS x", 400, SELECT_ONLY),
    ("install", "INSTALL httpfs", 400, SELECT_ONLY),
    ("load", "LOAD httpfs", 400, SELECT_ONLY),
    ("set", "SET enable_external_access = true", 400, SELECT_ONLY),
    ("pragma", "PRAGMA database_list", 400, SELECT_ONLY),
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", 403, BY_NAME),
    ("read_csv_auto", "SELECT * FROM read_csv_auto('/etc/passwd', header = false)", 403, BY_NAME),
    ("read_text", "SELECT * FROM read_text('/etc/passwd')", 403, BY_NAME),
    ("glob", "SELECT * FROM glob('/etc/*')", 403, BY_NAME),
    ("getenv", "SELECT getenv('HOME')", 400, "getenv"),
    ("comment hiding a statement", "SELECT 1 /* harmless */; DROP VIEW customers", 400, SINGLE),
    ("line comment then statement", "SELECT 1 -- harmless\n; ATTACH '/tmp/y.duckdb' AS y", 400, SINGLE),
    ("cte reading a hidden view", "WITH c AS (SELECT * FROM orders) SELECT * FROM c", 403, MISSING),
    ("information_schema", "SELECT * FROM information_schema.tables", 403, METADATA),
    ("duckdb_tables", "SELECT * FROM duckdb_tables()", 403, METADATA),
    ("duckdb_settings", "SELECT * FROM duckdb_settings()", 403, METADATA),
    ("sqlite_master", "SELECT * FROM sqlite_master", 403, METADATA),
    ("raw source catalog", "SELECT * FROM shop.orders", 403, MISSING),
    ("catalog metadata schema", "SELECT * FROM agnes.tables", 403, MISSING),
    ("show tables", "SHOW TABLES", 403, METADATA),
    ("describe hidden view", "DESCRIBE orders", 403, MISSING),
    ("query_table", "SELECT * FROM query_table('orders')", 403, MISSING),
    ("drop", "DROP VIEW customers", 400, SELECT_ONLY),
    ("create", "CREATE TABLE t AS SELECT 1", 400, SELECT_ONLY),
    ("explain", "EXPLAIN SELECT * FROM orders", 400, SELECT_ONLY),
    ("call", "CALL pragma_version()", 403, METADATA),
    ("export", "EXPORT DATABASE '/tmp/agnes-export'", 400, SELECT_ONLY),
]


@pytest.mark.parametrize("name,sql,status,fragment", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_the_guard_refuses_attacks_with_its_own_sentence_and_no_data(shop, name, sql, status, fragment):
    server, _, analyst = shop
    r = query(server, analyst, sql)
    assert r.status_code == status, (name, r.status_code, r.text)
    assert fragment in r.json()["detail"], (name, r.text)
    assert "root:" not in r.text and "item " not in r.text


def test_reading_another_tables_parquet_file_is_refused(shop, workdir):
    server, admin, analyst = shop
    parquet = workdir / "data" / "extracts" / "shop" / "data" / "orders.parquet"
    r = query(server, analyst, f"SELECT * FROM read_parquet('{parquet}')")
    assert r.status_code == 403 and "by name only, not files" in r.json()["detail"]
    # Admins may read files, but only inside the extracts tree: the connection is locked down.
    assert query(server, admin, f"SELECT count(*) FROM read_parquet('{parquet}')").json()["rows"] == [[10]]
    passwd = query(server, admin, "SELECT * FROM read_csv('/etc/passwd')")
    assert passwd.status_code == 403 and "Permission Error" in passwd.json()["detail"]
    locked = query(server, admin, "SELECT current_setting('enable_external_access') AS v").json()
    assert locked["rows"] == [[False]]


def test_statements_are_counted_by_the_parser_not_by_semicolons(shop):
    server, _, analyst = shop
    assert query(server, analyst, "SELECT 'a;b' AS s").json()["rows"] == [["a;b"]]
    assert query(server, analyst, "SELECT count(*) AS n FROM customers;").json()["rows"] == [[10]]
    assert query(server, analyst, "  with x as (select 41 as v) select v + 1 from x -- comment").json()["rows"] == [[42]]
    assert query(server, analyst, "SELECT * FROM range(3) UNION ALL SELECT * FROM generate_series(3, 4)").json()[
        "row_count"] == 5
    assert query(server, analyst, "SELECT unnest([1, 2]) AS u").json()["rows"] == [[1], [2]]


def test_long_and_unicode_sql(shop):
    server, _, analyst = shop
    unicode = query(server, analyst, "SELECT 'žluťoučký kůň 🐎' AS \"název\"").json()
    assert unicode["columns"] == ["název"] and unicode["rows"] == [["žluťoučký kůň 🐎"]]
    too_long = query(server, analyst, "SELECT 1 AS x" + " " * 100001)
    assert too_long.status_code == 400 and "100000" in too_long.json()["detail"]
    many = "SELECT count(*) FROM customers WHERE id IN (" + ",".join(str(i) for i in range(5000)) + ")"
    assert query(server, analyst, many).json()["rows"] == [[10]]


def test_bad_requests_say_what_to_fix(shop):
    server, admin, _ = shop
    cases = [
        ({"limit": 5}, 422, "sql"),
        ({"sql": ""}, 422, "sql"),
        ({"sql": 5}, 422, "sql"),
        ({"sql": "SELECT 1", "limit": 0}, 422, "limit"),
        ({"sql": "SELECT 1", "limit": "ten"}, 422, "limit"),
        ({"sql": "SELECT 1", "format": "xml"}, 422, "format"),
        ({"sql": "SELEC 1"}, 400, "Parser Error"),
        ({"sql": "SELECT * FROM nope"}, 400, "does not exist"),
        ({"sql": "SELECT missing_column FROM orders"}, 400, "missing_column"),
        ({"sql": "SELECT 1::BIT AS b"}, 400, "CAST it to VARCHAR"),
    ]
    for body, status, word in cases:
        r = call(server, "POST", "/api/query", admin, json=body)
        assert r.status_code == status, (body, r.text)
        assert word in r.json()["detail"], (body, r.text)
    r = call(server, "POST", "/api/query", admin, data="{not json")
    assert r.status_code == 400
    assert requests.post(server.url + "/api/query", json={"sql": "SELECT 1"}, timeout=10).status_code == 401


def test_values_map_to_json_faithfully(shop):
    server, admin, _ = shop
    sql = """SELECT 9007199254740993::BIGINT AS big, 42::BIGINT AS small, -9007199254740993::BIGINT AS negative,
        170141183460469231731687303715884105727::HUGEINT AS huge, 18446744073709551615::UBIGINT AS ubig,
        12.50::DECIMAL(10, 2) AS price, -0.05::DECIMAL(4, 2) AS cents, 0.1::DOUBLE AS tenth, 1.5::FLOAT AS half,
        'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, true AS yes, NULL::INTEGER AS nothing,
        DATE '2024-02-29' AS day, TIMESTAMP '2024-02-29 13:14:15.123456' AS ts,
        TIMESTAMPTZ '2024-02-29 13:14:15+00' AS tstz, TIME '07:08:09' AS t,
        INTERVAL '1 year 2 months 3 days 04:05:06.5' AS span,
        '550e8400-e29b-41d4-a716-446655440000'::UUID AS id, 'tab\there "quoted"' AS text,
        [1, NULL, 3] AS list, {'a': 1, 'b': ['x']} AS struct, MAP {'k': 2} AS map,
        '{"nested": [1, 2]}'::JSON AS doc, 'mood'::ENUM('mood', 'other') AS mood"""
    body = query(server, admin, sql).json()
    row = dict(zip(body["columns"], body["rows"][0]))
    assert row == {
        "big": "9007199254740993", "small": 42, "negative": "-9007199254740993",
        "huge": "170141183460469231731687303715884105727", "ubig": "18446744073709551615",
        "price": "12.50", "cents": "-0.05", "tenth": 0.1, "half": 1.5, "nan": "NaN", "inf": "Infinity",
        "yes": True, "nothing": None, "day": "2024-02-29", "ts": "2024-02-29T13:14:15.123456",
        "tstz": "2024-02-29T13:14:15Z", "t": "07:08:09", "span": "P1Y2M3DT4H5M6.5S",
        "id": "550e8400-e29b-41d4-a716-446655440000", "text": 'tab\there "quoted"',
        "list": [1, None, 3], "struct": {"a": 1, "b": ["x"]}, "map": [{"key": "k", "value": 2}],
        "doc": {"nested": [1, 2]}, "mood": "mood",
    }
    types = dict(zip(body["columns"], body["types"]))
    assert types["price"] == "DECIMAL(10,2)" and types["list"] == "INTEGER[]" and types["doc"] == "JSON"
    assert types["struct"] == "STRUCT(a INTEGER, b VARCHAR[])" and types["tstz"] == "TIMESTAMP WITH TIME ZONE"


def test_csv_ndjson_and_parquet_formats(shop, workdir):
    server, admin, _ = shop
    sql = "SELECT id, label, id * 1.5 AS score, NULL AS gap, 'a,\"b\"' AS tricky FROM orders ORDER BY id"
    r = query(server, admin, sql, format="csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "label", "score", "gap", "tricky"]
    assert rows[1] == ["0", "item 0", "0.0", "", 'a,"b"'] and len(rows) == 11
    r = query(server, admin, sql, format="ndjson", limit=2)
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == [{"id": 0, "label": "item 0", "score": "0.0", "gap": None, "tricky": 'a,"b"'},
                     {"id": 1, "label": "item 1", "score": "1.5", "gap": None, "tricky": 'a,"b"'}]
    r = query(server, admin, sql, format="parquet", limit=7)
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    out = workdir / "result.parquet"
    out.write_bytes(r.content)
    assert duckdb_exec(":memory:", f"SELECT count(*), max(id) FROM '{out}'").strip() == "7\t6"
    assert list((workdir / "data" / "tmp").glob("**/*.parquet")) == []  # nothing left behind


def test_a_query_past_its_deadline_is_stopped_with_408(server_factory, env):
    server = server_factory(dict(env, AGNES_QUERY_TIMEOUT="1"))
    admin, _, _ = setup_admin_and_analyst(server)
    started = time.monotonic()
    r = query(server, admin["access_token"], SLOW_SQL)
    assert r.status_code == 408, r.text
    assert "1 seconds" in r.json()["detail"] and time.monotonic() - started < 10
    assert query(server, admin["access_token"], "SELECT 1 AS ok").json()["rows"] == [[1]]


def test_one_user_may_not_run_more_than_the_cap_at_once(server_factory, env):
    server = server_factory(dict(env, AGNES_QUERY_TIMEOUT="3", AGNES_QUERY_MAX_PER_USER="1"))
    admin, _, analyst = setup_admin_and_analyst(server)
    slow_result = []
    slow = threading.Thread(target=lambda: slow_result.append(query(server, admin["access_token"], SLOW_SQL)))
    slow.start()
    try:
        time.sleep(0.5)  # let the slow query take its slot first
        deadline = time.monotonic() + 2
        while True:
            r = query(server, admin["access_token"], "SELECT 1")
            if r.status_code == 429 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1", (slow_result, r.text)
        assert "1 queries running" in r.json()["detail"]
        # Another user is not held back by it.
        assert query(server, analyst["access_token"], "SELECT 2 AS two").json()["rows"] == [[2]]
    finally:
        slow.join()
    assert slow_result[0].status_code == 408
    assert query(server, admin["access_token"], "SELECT 3 AS three").json()["rows"] == [[3]]


def test_queries_running_across_rebuilds_never_fail(shop, workdir):
    server, admin, analyst = shop
    failures, done = [], threading.Event()

    def hammer(token):
        while not done.is_set():
            r = query(server, token, "SELECT count(*) FROM customers")
            if r.status_code != 200 or r.json()["rows"] != [[10]]:
                failures.append((r.status_code, r.text))

    threads = [threading.Thread(target=hammer, args=(t,)) for t in (admin, analyst)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            # A new source each round: every rebuild really rebuilds and swaps the snapshot.
            make_extract(extracts(workdir), f"extra{i}", rows=((f"events{i}", "local"),))
            r = call(server, "POST", "/api/admin/rebuild", admin)
            assert r.status_code == 200, r.text
    finally:
        done.set()
        for t in threads:
            t.join()
    assert failures == []
    assert query(server, admin, "SELECT count(*) FROM events5").json()["rows"] == [[10]]


def test_a_long_query_never_stalls_other_requests(server_factory, env):
    # One event-loop worker: if queries ran on it, health would wait for the query.
    server = server_factory(dict(env, AGNES_THREADS="1", AGNES_QUERY_TIMEOUT="4"))
    admin, _, _ = setup_admin_and_analyst(server)
    slow = threading.Thread(target=query, args=(server, admin["access_token"], SLOW_SQL))
    slow.start()
    try:
        time.sleep(0.5)
        with requests.Session() as keep_alive:
            for _ in range(3):
                started = time.monotonic()
                assert keep_alive.get(server.url + "/api/health", timeout=10).status_code == 200
                assert time.monotonic() - started < 1
    finally:
        slow.join()


def read_arrow(path):
    """Decode an Arrow IPC stream with apache-arrow (tests/js), an independent reader."""
    out = subprocess.run(["node", READ_ARROW, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_arrow_streams_record_batches_an_arrow_reader_decodes(shop, workdir):
    server, admin, _ = shop
    sql = """SELECT range AS i, CASE WHEN range % 2 = 0 THEN NULL ELSE range END AS maybe,
        (range / 4)::DECIMAL(10, 2) AS amount, [range, NULL] AS pair, {'a': range, 'b': 'x' || range} AS rec,
        MAP {'k': range} AS m, DATE '2024-01-01' + range::INT AS day, range % 3 = 0 AS flag,
        'text ' || range AS label, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at FROM range(5000)"""
    r = query(server, admin, sql, format="arrow", limit=3000)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    path = workdir / "result.arrow"
    path.write_bytes(r.content)
    decoded = read_arrow(path)
    assert [(f["name"], f["type"]) for f in decoded["fields"]] == [
        ("i", "Int64"), ("maybe", "Int64"), ("amount", "Decimal[10e+2]"), ("pair", "List<Int64>"),
        ("rec", "Struct<{a:Int64, b:Utf8}>"), ("m", "Map<{key:Utf8, value:Int64}>"), ("day", "Date32<DAY>"),
        ("flag", "Bool"), ("label", "Utf8"), ("at", "Timestamp<MICROSECOND, Etc/UTC>")]
    assert decoded["batches"] == 2 and len(decoded["rows"]) == 3000  # one batch per chunk, cut at the limit
    first, second, last = decoded["rows"][0], decoded["rows"][1], decoded["rows"][-1]
    assert first["maybe"] is None and second["maybe"] == "1" and last["i"] == "2999"
    assert first["pair"] == ["0", None] and second["rec"] == {"a": "1", "b": "x1"} and second["m"] == {"k": "1"}
    assert last["amount"] == '"74975"'  # 749.75, unscaled
    assert first["day"] == 1704067200000 and first["flag"] is True and second["flag"] is False
    assert last["label"] == "text 2999" and first["at"] == 1704164645000
    empty = query(server, admin, "SELECT id FROM orders WHERE id < 0", format="arrow")
    path.write_bytes(empty.content)
    decoded = read_arrow(path)
    assert decoded["rows"] == [] and decoded["fields"] == [{"name": "id", "type": "Int64", "nullable": True}]
    enum = query(server, admin, "SELECT 'a'::ENUM('a', 'b') AS e", format="arrow")
    assert enum.status_code == 400 and "CAST it to VARCHAR" in enum.json()["detail"]


def test_queries_work_when_the_server_is_pid_1(server_factory, env):
    """In a container the server is process 1. A query worker took "my parent is process 1" for "the server
    died" and exited at once, so every query of the Docker image answered 500. The server now names itself
    to its workers. Run here as process 1 of a PID namespace of its own (unshare), as under `docker run`."""
    import signal
    from test_users import setup_admin_and_analyst
    server = server_factory(dict(env, AGNES_DEMO="1"), wrapper=["unshare", "--pid", "--fork"])
    try:
        admin, _, _ = setup_admin_and_analyst(server)
        r = requests.post(server.url + "/api/query", json={"sql": "SELECT count(*) FROM orders"},
                          headers={"Authorization": f"Bearer {admin['access_token']}"}, timeout=60)
        assert r.status_code == 200 and r.json()["rows"] == [[5000]], r.text
    finally:
        # unshare waits for its child without passing signals on: stop the server itself (pid 1 inside).
        children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        server.proc.wait(timeout=40)
