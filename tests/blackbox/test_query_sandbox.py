"""The query sandbox (issue 12): two walls, each sufficient alone, and the limits.

World: source `shop` publishes customers (granted to Everyone), orders and payroll (not
granted); source `zeta` also publishes `orders`, which `shop` owns, so zeta's copy is a
collision-skipped, unpublished table. Every ungranted row carries a marker no answer to the
analyst may ever contain.
"""
import csv
import io
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import AGNES_TOOLS, Server, base_env, duckdb_exec
from test_catalog import everyone_id
from test_users import call, setup_admin_and_analyst

MEMORY_LIMIT_MB = 256
TIMEOUT = 15  # generous: a sanitizer build on a busy machine is slow; the deadline test still proves the stop
SECRETS = ("secret-order", "payroll-secret", "zeta-unpublished")
SANITIZED = "asan" in os.environ.get("AGNES_BIN", "")


def make_source(extracts, source, tables):
    """tables: {name: label prefix}; each a 5000-row Parquet view (ids 0..4999)."""
    directory = extracts / source
    (directory / "data").mkdir(parents=True, exist_ok=True)
    statements = ["CREATE TABLE _meta (table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, "
                  "size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR)"]
    for name, label in tables.items():
        parquet = directory / "data" / f"{name}.parquet"
        statements.append(f"COPY (SELECT range AS id, '{label} ' || range AS label, range % 7 AS country "
                          f"FROM range(5000)) TO '{parquet}' (FORMAT PARQUET)")
        statements.append(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{parquet}')")
        statements.append(f"INSERT INTO _meta VALUES ('{name}', 'd', 5000, 1000, now()::TIMESTAMP, 'local')")
    duckdb_exec(directory / "extract.duckdb", ";\n".join(statements))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sandbox")
    (workdir / "config").mkdir()
    extracts = workdir / "data" / "extracts"
    make_source(extracts, "shop", {"customers": "cust", "orders": "secret-order", "payroll": "payroll-secret"})
    make_source(extracts, "zeta", {"orders": "zeta-unpublished"})
    env = dict(base_env(workdir), AGNES_QUERY_TIMEOUT=str(TIMEOUT),
               AGNES_QUERY_MEMORY_LIMIT=f"{MEMORY_LIMIT_MB}MB", AGNES_QUERY_MAX_PER_USER="3")
    server = Server(env, workdir).start(wait=False)
    server.wait_ready(timeout=120)  # a sanitizer build on a busy machine builds the catalog slowly
    try:
        admin, _, analyst = setup_admin_and_analyst(server)
        r = call(server, "POST", "/api/admin/grants", admin["access_token"],
                 json={"group_id": everyone_id(server, admin["access_token"]), "resource_type": "table",
                       "resource_id": "customers"})
        assert r.status_code == 201, r.text
        yield {"server": server, "admin": admin["access_token"], "analyst": analyst["access_token"],
               "workdir": workdir, "env": env, "data": workdir / "data"}
    finally:
        server.stop()


def query(world, sql, token="analyst", **fields):
    return call(world["server"], "POST", "/api/query", world[token], json={"sql": sql, **fields})


def leaks(text, sql, world):
    """What of the ungranted world appears in text (beyond what the SQL itself says)."""
    found = [s for s in SECRETS if s in text]
    for name in ("orders", "payroll", "zeta"):
        if name in text.lower() and name not in sql.lower():
            found.append(name)
    for path in (str(world["data"] / "extracts" / "shop" / "data" / "orders.parquet"),
                 str(world["data"] / "extracts" / "shop" / "data" / "payroll.parquet"),
                 str(world["workdir"] / "state")):
        if path in text and path not in sql:
            found.append(path)
    return found


def attacks(data):
    """(name, sql, status, fragment of the guard's sentence): every example of issue 12, with
    the file path variants built from this test's DATA_DIR."""
    orders = data / "extracts" / "shop" / "data" / "orders.parquet"
    shop = data / "extracts" / "shop"
    missing = "does not exist or you have no access to it"
    by_name = "by name only, not files"
    metadata = "The engine's own catalog"
    function = "is not available to queries: it answers about the server"
    table_fn = "is not allowed: queries read the catalog's tables by name"
    single = "Only a single SELECT statement is allowed"
    select_only = "Only SELECT queries are allowed"
    variants = [str(orders), f"{shop}/./data/orders.parquet", f"{shop}//data/orders.parquet",
                f"{shop}/data/../data/orders.parquet", f"{shop}/data/customers.parquet/../orders.parquet"]
    cases = [
        ("ungranted table", "SELECT * FROM orders", 403, missing),
        ("ungranted in a join", "SELECT * FROM customers c JOIN orders o USING (id)", 403, missing),
        ("ungranted in a subquery", "SELECT * FROM customers WHERE id IN (SELECT id FROM \"ORDERS\")", 403, missing),
        ("ungranted never named elsewhere", "SELECT * FROM payroll", 403, missing),
        ("cte reading an ungranted view", "WITH c AS (SELECT * FROM orders) SELECT * FROM c", 403, missing),
        ("raw source catalog", "SELECT * FROM shop.orders", 403, missing),
        ("collision-skipped source", "SELECT * FROM zeta.orders", 403, missing),
        ("fully qualified", "SELECT * FROM server.main.orders", 403, missing),
        ("catalog metadata schema", "SELECT * FROM agnes.tables", 403, missing),
        ("query_table", "SELECT * FROM query_table('orders')", 403, missing),
        ("query()", "SELECT * FROM query('SELECT * FROM orders')", 403, missing),
        ("describe ungranted", "DESCRIBE orders", 403, missing),
        ("describe in a subquery", "SELECT * FROM (DESCRIBE orders)", 403, missing),
        ("summarize ungranted", "SUMMARIZE orders", 403, missing),
        ("summarize a query", "SUMMARIZE SELECT * FROM payroll", 403, missing),
        ("pivot ungranted", "PIVOT orders ON country USING count(*)", 403, missing),
        ("pivot source subquery", "PIVOT (SELECT * FROM payroll) ON country USING count(*)", 403, missing),
        ("cte named as the file",
         f'WITH "{orders}" AS (SELECT * FROM "{orders}") SELECT * FROM "{orders}" LIMIT 3', 403, by_name),
        ("sibling subquery cte", f'SELECT o.* FROM (WITH "{orders}" AS (SELECT 1) SELECT 1) y, "{orders}" o',
         403, by_name),
        ("duckdb_views behind a cte",
         "SELECT view_name, sql FROM (WITH duckdb_views AS (SELECT 1) SELECT 1) y, duckdb_views", 403, metadata),
        ("json_serialize_plan", "SELECT json_serialize_plan('SELECT id FROM orders WHERE id > 5000', "
                                "optimize := true)", 403, function),
        ("json_serialize_plan of a granted table", "SELECT json_serialize_plan('SELECT id FROM customers')", 403,
         function),
        ("pg_get_viewdef", "SELECT pg_get_viewdef(i) FROM range(0, 5000) t(i)", 403, metadata),
        ("current_setting", "SELECT current_setting('allowed_directories')", 403, function),
        ("current_database", "SELECT current_database()", 403, function),
        ("information_schema", "SELECT * FROM information_schema.tables", 403, metadata),
        ("information_schema columns", "SELECT * FROM information_schema.columns", 403, metadata),
        ("sqlite_master", "SELECT * FROM sqlite_master", 403, metadata),
        ("duckdb_tables", "SELECT * FROM duckdb_tables()", 403, metadata),
        ("duckdb_settings", "SELECT * FROM duckdb_settings()", 403, metadata),
        ("duckdb_columns view", "SELECT * FROM duckdb_columns", 403, metadata),
        ("pg_catalog", "SELECT * FROM pg_catalog.pg_class", 403, metadata),
        ("pragma function", "SELECT * FROM pragma_table_info('orders')", 403, metadata),
        ("show tables", "SHOW TABLES", 403, metadata),
        ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", 403, by_name),
        ("read_text", "SELECT * FROM read_text('/etc/passwd')", 403, by_name),
        ("glob", "SELECT * FROM glob('/etc/*')", 403, by_name),
        ("glob of the extracts", f"SELECT * FROM glob('{shop}/data/*')", 403, by_name),
        ("postgres_query", "SELECT * FROM postgres_query('POSTGRES_DSN', 'SELECT 1')", 403, table_fn),
        ("multiple statements", "SELECT 1; SELECT 2", 400, single),
        ("comment hiding a statement", "SELECT 1 /* harmless */; DROP VIEW customers", 400, single),
        ("line comment then statement", "SELECT 1 -- harmless\n; ATTACH '/tmp/y.duckdb' AS y", 400, single),
        ("copy", "COPY (SELECT 1) TO '/tmp/agnes-pwned.csv'", 400, select_only),
        ("attach", "ATTACH '/tmp/x.duckdb' AS x", 400, select_only),
        ("set", "SET enable_external_access = true", 400, select_only),
        ("pragma", "PRAGMA database_list", 400, select_only),
        ("install", "INSTALL httpfs", 400, select_only),
        ("create", "CREATE TABLE t AS SELECT 1", 400, select_only),
        ("drop", "DROP VIEW customers", 400, select_only),
        ("explain", "EXPLAIN SELECT * FROM orders", 400, select_only),
        ("call of a metadata function", "CALL pragma_version()", 403, metadata),
        ("call", "CALL range(3)", 400, select_only),
        ("export", "EXPORT DATABASE '/tmp/agnes-export'", 400, select_only),
    ]
    for i, path in enumerate(variants):
        cases.append((f"file path variant {i} as a table", f'SELECT * FROM "{path}"', 403, by_name))
        cases.append((f"file path variant {i} in read_parquet", f"SELECT * FROM read_parquet('{path}')", 403,
                      by_name))
    return cases


ATTACK_IDS = [case[0] for case in attacks(Path("/d"))]


@pytest.mark.parametrize("index", range(len(ATTACK_IDS)), ids=ATTACK_IDS)
def test_every_attack_gets_the_guards_own_sentence_and_nothing_ungranted(world, index):
    name, sql, status, fragment = attacks(world["data"])[index]
    r = query(world, sql)
    assert r.status_code == status, (name, r.status_code, r.text)
    assert fragment in r.json()["detail"], (name, r.text)
    assert leaks(r.text, sql, world) == [], (name, r.text)
    assert "Did you mean" not in r.text


def test_wall_b_alone_returns_nothing_ungranted(world):
    """The same attacks, straight into the engine an analyst's query runs in, with the guard off."""
    cases = attacks(world["data"])
    extra = ["SELECT * FROM duckdb_views()", "SELECT * FROM duckdb_settings()", "SELECT * FROM duckdb_databases()",
             "SELECT * FROM duckdb_extensions()", "SELECT current_setting('allowed_paths')",
             "SELECT json_serialize_plan('SELECT * FROM customers', optimize := true)",
             "SELECT * FROM sqlite_master", "SELECT * FROM information_schema.columns",
             "SELECT * FROM glob('" + str(world["data"]) + "/**')", "SELECT * FROM read_text('/proc/self/environ')",
             "SELECT * FROM duckdb_functions() WHERE function_name LIKE '%agnes%'",
             "CREATE OR REPLACE VIEW customers AS SELECT 'poisoned' AS label"]
    statements = [case[1] for case in cases] + extra + ["SELECT count(*) AS n FROM customers"]
    out = subprocess.run([os.path.join(AGNES_TOOLS, "query_engine"), "customers"], input=json.dumps(statements),
                         env=world["env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert len(results) == len(statements)
    for result in results:
        text = json.dumps(result["frames"])
        assert leaks(text, result["sql"], world) == [], (result["sql"], text[:2000])
        assert "poisoned" not in text or result["sql"].startswith("CREATE"), text[:500]
    # The engine is not simply broken: the granted table answers, and the write did not land.
    last = results[-1]["frames"]
    assert [f["type"] for f in last] == ["H", "D", "Z"] and json.loads(last[1]["payload"])["rows"] == [[5000]]
    assert query(world, "SELECT DISTINCT label FROM customers WHERE id = 1").json()["rows"] == [["cust 1"]]


def test_wall_a_alone_refuses_every_attack_in_front_of_the_whole_catalog(world):
    """The guard in front of the admin engine: nothing but wall (a) between the SQL and every table,
    so a guard regression cannot hide behind the sandbox's own refusals."""
    cases = attacks(world["data"])
    statements = [case[1] for case in cases] + ["SELECT count(*) AS n FROM customers"]
    out = subprocess.run([os.path.join(AGNES_TOOLS, "query_engine"), "customers"], input=json.dumps(statements),
                         env=dict(world["env"], QUERY_ENGINE_WALL="a"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    for (name, sql, status, fragment), result in zip(cases, results):
        first = result["frames"][0]
        assert first["type"] == "E", (name, result["frames"])
        assert first["payload"]["code"] == {400: "invalid", 403: "forbidden"}[status], (name, first)
        assert fragment in first["payload"]["message"], (name, first)
        assert leaks(json.dumps(result["frames"]), sql, world) == [], name
    last = results[-1]["frames"]
    assert json.loads(last[1]["payload"])["rows"] == [[5000]]  # the granted table answers through it


@pytest.mark.parametrize("shape", [
    "SELECT * FROM {t}", "SELECT nope FROM {t}", "SELECT * FROM customers JOIN {t} USING (id)",
    "SELECT * FROM main.{t}", "DESCRIBE {t}", "PIVOT {t} ON country USING count(*)",
    "SELECT * FROM query_table('{t}')", "SELECT count(*) FROM {t} WHERE id > 4999",
    "SELECT * FROM shop.main.{t}", "SELECT * FROM nosuch.main.{t}",
])
def test_an_ungranted_table_answers_exactly_like_a_missing_one(world, shape):
    hidden, missing = query(world, shape.format(t="orders")), query(world, shape.format(t="ordrs"))
    assert hidden.status_code == missing.status_code == 403, (hidden.text, missing.text)
    assert hidden.json()["detail"].replace("orders", "X") == missing.json()["detail"].replace("ordrs", "X")
    assert set(hidden.json()) == set(missing.json()) == {"detail"}
    assert "Did you mean" not in hidden.text + missing.text
    # The sentence names what the caller wrote, three-part names included (not "Table '?'").
    assert "'?'" not in hidden.text and ("orders" in hidden.json()["detail"]), hidden.text


def test_a_grant_and_its_revocation_take_effect_on_the_next_query(world):
    server, admin = world["server"], world["admin"]
    assert query(world, "SELECT count(*) FROM payroll").status_code == 403
    grant = call(server, "POST", "/api/admin/grants", admin,
                 json={"group_id": everyone_id(server, admin), "resource_type": "table", "resource_id": "payroll"})
    assert grant.status_code == 201, grant.text
    try:
        assert query(world, "SELECT count(*) FROM payroll").json()["rows"] == [[5000]]
    finally:
        assert call(server, "DELETE", f"/api/admin/grants/{grant.json()['id']}", admin).status_code in (200, 204)
    r = query(world, "SELECT count(*) FROM payroll")
    assert r.status_code == 403 and "payroll-secret" not in r.text


def test_ctes_and_aliases_are_judged_by_what_they_read(world):
    # A CTE that shadows an ungranted view's name reads nothing ungranted: it runs.
    assert query(world, "WITH orders AS (SELECT 1 AS id) SELECT * FROM orders").json()["rows"] == [[1]]
    r = query(world, "WITH orders AS (SELECT * FROM customers) SELECT count(*) FROM orders o")
    assert r.json()["rows"] == [[5000]]
    # ...but a reference outside the CTE's scope binds to the real view.
    r = query(world, "SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) a, orders b")
    assert r.status_code == 403 and "'orders'" in r.json()["detail"]


def test_analysts_pivot_the_tables_they_may_read(world):
    r = query(world, "PIVOT customers ON country USING count(*) ORDER BY id LIMIT 2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["id", "label", "0", "1", "2", "3", "4", "5", "6"]
    assert body["rows"][1][:4] == [1, "cust 1", 0, 1]
    assert query(world, "PIVOT customers ON country USING count(*)", format="parquet").status_code == 200
    r = query(world, "PIVOT customers ON country USING count(*); SELECT 1")
    assert r.status_code == 400 and "Only a single SELECT" in r.json()["detail"]
    r = query(world, "CREATE TEMP TYPE e AS ENUM ('a'); SELECT 1")
    assert r.status_code == 400 and "Only a single SELECT" in r.json()["detail"]
    r = query(world, "SELECT nope FROM customers; SELECT 1")
    assert r.status_code == 400 and "Only a single SELECT" in r.json()["detail"]


@pytest.mark.parametrize("token", ["analyst", "admin"])
def test_a_pivot_that_does_not_bind_is_told_why_not_called_two_statements(world, token):
    # DuckDB splits a PIVOT into CREATE TYPE + SELECT; when the first does not bind (a column
    # that is not there), the answer is the binder's sentence, not "2 statements".
    for sql, column in [("PIVOT customers ON nope USING count(*)", "nope"),
                        ("PIVOT customers ON country USING count(nope)", "nope"),
                        ("PIVOT customers ON country USING count(*) GROUP BY missing_column;  -- c",
                         "missing_column")]:
        r = query(world, sql, token)
        assert r.status_code == 400, (sql, r.text)
        detail = r.json()["detail"]
        assert "Binder Error" in detail and column in detail and "statements" not in detail, (sql, detail)
        assert leaks(r.text, sql, world) == [] or token == "admin", (sql, r.text)
    # For an analyst, a PIVOT over an ungranted table still answers as a missing one, whatever
    # else is wrong with it, and names none of that table's columns.
    if token == "analyst":
        for sql in ["PIVOT orders ON nope USING count(*)",
                    "PIVOT (SELECT * FROM customers, payroll) ON nope USING count(*)"]:
            r = query(world, sql)
            assert r.status_code == 403 and "does not exist or you have no access" in r.json()["detail"], r.text
            assert leaks(r.text, sql, world) == [], r.text


def test_admins_keep_full_sql_over_the_catalog(world):
    assert query(world, "SELECT count(*) FROM orders", "admin").json()["rows"] == [[5000]]
    assert query(world, "SELECT label FROM zeta.orders WHERE id = 0", "admin").json()["rows"] == [["zeta-unpublished 0"]]
    assert query(world, "PIVOT orders ON country USING count(*)", "admin").status_code == 200
    r = query(world, "SELECT * FROM read_csv('/etc/passwd')", "admin")
    assert r.status_code == 403 and "Permission Error" in r.json()["detail"]


@pytest.mark.parametrize("sql", ["SELECT regexp_replace('a','a','b','\u618a')", "SELECT 1e309 AS x",
                                 "SELECT -1e309 AS x, 'nan'::DOUBLE AS y"])
def test_odd_values_in_the_guards_tree_get_an_answer_not_a_500(world, sql):
    for token in ("analyst", "admin"):
        r = query(world, sql, token)
        assert r.status_code in (200, 400), (token, r.text)
        r.json()  # valid JSON either way


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_every_answer_is_json_whatever_the_values(world):
    sql = ("SELECT json_object('foo', 0/0) AS j, to_json('inf'::DOUBLE) AS k, [to_json('-inf'::DOUBLE)] AS l, "
           "{'a': json_object('x', 'nan'::DOUBLE)} AS s, 'nan'::DOUBLE AS d, '{\"a\":\"NaN\"}'::JSON AS q")
    body = strict_json(query(world, sql).text)
    assert body["rows"] == [[{"foo": "NaN"}, "Infinity", ["-Infinity"], {"a": {"x": "NaN"}}, "NaN", {"a": "NaN"}]]
    for line in query(world, sql, format="ndjson").text.splitlines():
        strict_json(line)
    row = list(csv.reader(io.StringIO(query(world, sql, format="csv").text)))[1]
    assert strict_json(row[0]) == {"foo": "NaN"} and strict_json(row[1]) == "Infinity"


def test_doubles_keep_every_digit_in_every_format(world):
    sql = "SELECT 0.1::DOUBLE + 0.2::DOUBLE AS a, 1 / 3 AS b, 1e-320::DOUBLE AS c"
    assert query(world, sql).json()["rows"] == [[0.30000000000000004, 0.3333333333333333, 1e-320]]
    assert query(world, sql, format="csv").text.splitlines()[1] == "0.30000000000000004,0.3333333333333333,1e-320"
    assert json.loads(query(world, sql, format="ndjson").text) == {"a": 0.30000000000000004,
                                                                   "b": 0.3333333333333333, "c": 1e-320}


def raw_post(world, body, token="analyst"):
    """The whole HTTP/1.1 exchange, chunked framing and trailers included."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", world["server"].port), timeout=60) as s:
        s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + world[token].encode() +
                  b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(data)).encode() +
                  b"\r\nConnection: close\r\n\r\n" + data)
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def dechunk(raw):
    head, _, rest = raw.partition(b"\r\n\r\n")
    body, trailers = b"", {}
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            for line in rest.split(b"\r\n"):
                if b":" in line:
                    key, _, value = line.partition(b":")
                    trailers[key.decode().strip().lower()] = value.decode().strip()
            break
        body, rest = body + rest[:size], rest[size + 2:]
    headers = {k.lower(): v.strip() for k, _, v in
               (line.decode().partition(":") for line in head.split(b"\r\n")[1:])}
    return headers, body, trailers


@pytest.mark.parametrize("fmt", ["json", "csv", "ndjson", "arrow", "parquet"])
def test_truncation_is_said_in_every_format(world, fmt):
    for limit, expected in ((5, "true"), (10, "false"), (100, "false")):
        r = query(world, "SELECT * FROM range(10)", format=fmt, limit=limit)
        assert r.status_code == 200 and r.headers["Agnes-Truncated"] == expected, (fmt, limit, r.headers)
        assert r.headers["Agnes-Row-Limit"] == str(limit)
        if fmt == "json":
            assert r.json()["truncated"] is (expected == "true")


def test_truncation_of_a_long_stream_comes_in_a_trailer(world):
    # 200,000 rows of CSV are more than the 1 MiB the worker reads ahead of the first byte.
    headers, body, trailers = dechunk(raw_post(world, {"sql": "SELECT range + 1000000 AS n FROM range(300000)",
                                                       "format": "csv", "limit": 200000}))
    assert headers["trailer"] == "Agnes-Truncated" and "agnes-truncated" not in headers
    assert trailers == {"agnes-truncated": "true"}
    assert body.count(b"\n") == 200001
    headers, _, trailers = dechunk(raw_post(world, {"sql": "SELECT range + 1000000 AS n FROM range(250000)",
                                                    "format": "csv", "limit": 300000}))
    assert trailers == {"agnes-truncated": "false"}


def test_a_huge_result_streams_while_the_query_still_runs(world):
    """Materializing would send nothing before the query ends (and a billion rows end in a 408)."""
    body = {"sql": "SELECT range, 'x' || range FROM range(1000000000)", "format": "csv", "limit": 1000000000}
    with requests.post(world["server"].url + "/api/query", json=body, stream=True, timeout=30,
                       headers={"Authorization": f"Bearer {world['admin']}"}) as r:
        assert r.status_code == 200
        chunks = r.iter_content(65536)  # kept: a dropped generator closes the connection
        first = next(chunks)
        assert first.startswith(b"range,")
        health = call(world["server"], "GET", "/api/health/detailed", world["admin"]).json()
        assert health["queries"]["running"] >= 1  # the query is still running while its rows arrive
    deadline = time.time() + 10
    while call(world["server"], "GET", "/api/health/detailed", world["admin"]).json()["queries"]["running"]:
        assert time.time() < deadline, "a reader that left must free its slot"
        time.sleep(0.1)


def test_a_query_that_hangs_while_binding_is_stopped_at_its_deadline(world):
    sql = """SELECT '{"b":[1,2]}'::JSON""" + "->'b'" * 40
    started = time.monotonic()
    r = query(world, sql)
    # The bind grows its memory slowly (about 170 MB after 30 s in a release build); a sanitizer
    # build's shadow memory and quarantine reach the worker's memory cap first, and that stop
    # (with its own sentence) is as good as the deadline's.
    if SANITIZED and r.status_code == 400:
        assert f"{MEMORY_LIMIT_MB}MB" in r.json()["detail"] and "memory" in r.json()["detail"], r.text
    else:
        assert r.status_code == 408, r.text
        assert f"{TIMEOUT} seconds" in r.json()["detail"]
    assert time.monotonic() - started < TIMEOUT + 10  # generous: the point is that it ends at all
    assert query(world, "SELECT 42 AS ok").json()["rows"] == [[42]]


def rss_of_tree(pid):
    total = 0
    children = subprocess.run(["ps", "--ppid", str(pid), "-o", "pid="], capture_output=True, text=True).stdout
    for p in [pid] + [int(c) for c in children.split()]:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024
        except (OSError, StopIteration):
            pass
    return total


def test_three_memory_hungry_queries_leave_the_server_within_its_limits(world):
    """list_transform over range(100000000) reached 10 GB in-process with a 2 GB limit."""
    server, sql = world["server"], "SELECT length(list_transform(range(100000000), x -> x * 2)) AS n"
    answers, peak, done = [], [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_of_tree(server.proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=lambda: answers.append(query(world, sql))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    # A sanitizer build allocates too slowly to reach the cap before the deadline: there, 408 will do.
    allowed = {400, 408} if SANITIZED else {400}
    assert {a.status_code for a in answers} <= allowed, [a.text for a in answers]
    assert all(f"{MEMORY_LIMIT_MB}MB" in a.json()["detail"] and "memory" in a.json()["detail"]
               for a in answers if a.status_code == 400)
    # Each worker is held to the limit plus a 512 MB margin; the server itself stays small.
    assert peak[0] < 3 * (MEMORY_LIMIT_MB + 512) * 2**20 + 300 * 2**20, peak[0] / 2**20
    assert server.get("/api/health").status_code == 200
    assert query(world, "SELECT count(*) FROM customers").json()["rows"] == [[5000]]


def test_agnes_query_warns_when_its_output_was_cut(world):
    env = dict(world["env"], AGNES_SERVER=world["server"].url, AGNES_TOKEN=world["analyst"],
               HOME=str(world["workdir"]))
    cut = subprocess.run([os.environ.get("AGNES_BIN", str(Path(AGNES_TOOLS).parent / "agnes")), "query",
                          "SELECT * FROM customers", "--limit", "3", "--format", "csv"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0, cut.stderr
    assert len(cut.stdout.splitlines()) == 4 and "cut at 3 rows" in cut.stderr
    whole = subprocess.run([os.environ.get("AGNES_BIN", str(Path(AGNES_TOOLS).parent / "agnes")), "query",
                            "SELECT count(*) FROM customers", "--format", "csv"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert whole.returncode == 0 and whole.stderr == "", whole.stderr
