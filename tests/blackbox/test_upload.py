"""POST /api/upload/tables: files become tables of the `local` source (issue 4, SPEC §7)."""
import json
import os
import signal
import socket
import time

import pytest
import requests

from conftest import duckdb_exec, run_agnes
from test_contract import make_extract
from test_orchestrator import extracts
from test_users import auth, call, setup_admin_and_analyst

SALES_V1 = b"region,amount,day\nEU,10.5,2024-01-01\nUS,20,2024-01-02\n"
SALES_V2 = b"region,amount,day\nEU,11,2024-02-01\nUS,21,2024-02-02\nAPAC,5,2024-02-03\n"


def upload_form(server, token, content, filename="sales.csv", **fields):
    return requests.post(server.url + "/api/upload/tables", headers=auth(token),
                         files={"file": (filename, content)}, data=fields, timeout=60)


def upload_raw(server, token, content, **params):
    return requests.post(server.url + "/api/upload/tables", headers=auth(token), params=params, data=content,
                         timeout=60)


def data_files(workdir):
    """The tables the local source's data directory holds a file for (one version each)."""
    return sorted(p.name.split(".")[0] for p in (workdir / "data" / "extracts" / "local" / "data").iterdir())


def rows(server, token, sql):
    r = call(server, "POST", "/api/query", token, json={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


@pytest.fixture
def admin(server):
    admin_body, _, analyst_body = setup_admin_and_analyst(server)
    server.analyst_token = analyst_body["access_token"]
    return server, admin_body["access_token"]


def test_a_csv_becomes_a_queryable_table_that_satisfies_the_contract(admin, env, workdir):
    server, token = admin
    r = upload_form(server, token, SALES_V1)
    assert r.status_code == 201, r.text
    table = r.json()["table"]
    assert table["id"] == "sales" and table["source_type"] == "local" and table["format"] == "csv"
    assert table["rows"] == 2 and table["size_bytes"] > 0 and r.json()["replaced"] is False
    assert table["columns"] == [{"name": "region", "type": "VARCHAR", "chosen": "detected"},
                                {"name": "amount", "type": "DOUBLE", "chosen": "detected"},
                                {"name": "day", "type": "DATE", "chosen": "detected"}]
    assert table["dialect"] == {"delimiter": ",", "quote": '"', "escape": '"', "header": True,
                                "decimal_separator": ".", "thousands_separator": None, "given": []}
    assert table["inference"] == {"sample_size": 20480, "all_text": False}
    assert rows(server, token, "SELECT region, amount, day FROM sales ORDER BY region") == [
        ["EU", 10.5, "2024-01-01"], ["US", 20, "2024-01-02"]]
    listed = call(server, "GET", "/api/catalog/tables", token).json()["tables"]
    assert [(t["id"], t["source_type"], t["rows"]) for t in listed] == [("sales", "local", 2)]
    extract = workdir / "data" / "extracts" / "local" / "extract.duckdb"
    assert [p.name.split(".")[0] for p in (workdir / "data" / "extracts" / "local" / "data").iterdir()] == ["sales"]
    check = run_agnes(["contract", "check", str(extract)], env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert list((workdir / "data" / "uploads").iterdir()) == []  # the spooled body is gone


def test_every_format_raw_or_multipart(admin, workdir):
    server, token = admin
    parquet = workdir / "points.parquet"
    duckdb_exec(":memory:", f"COPY (SELECT range AS x, range * 2 AS y FROM range(5)) TO '{parquet}' (FORMAT parquet)")
    cases = [
        (upload_raw, b"a\tb\n1\t2\n3\t4\n", {"name": "tabbed", "format": "tsv"}, "tabbed", [[1, 2], [3, 4]]),
        (upload_raw, b'[{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]', {"name": "arr"}, "arr", [[1, "x"], [2, "y"]]),
        (upload_raw, b'{"a": 1}\n{"a": 2}\n', {"name": "lines"}, "lines", [[1], [2]]),
        (upload_raw, parquet.read_bytes(), {"name": "points"}, "points", [[0, 0], [1, 2], [2, 4], [3, 6], [4, 8]]),
    ]
    for send, content, params, name, expected in cases:
        r = send(server, token, content, **params)
        assert r.status_code == 201, (name, r.text)
        assert rows(server, token, f"SELECT * FROM {name} ORDER BY 1") == expected, name
    form = upload_form(server, token, b'{"k": "v"}\n', filename="Events 2024.ndjson")
    assert form.status_code == 201 and form.json()["table"]["id"] == "events_2024"
    assert form.json()["table"]["format"] == "ndjson"


def test_replacing_a_table_and_keeping_its_description(admin):
    server, token = admin
    assert upload_raw(server, token, SALES_V1, name="sales", description="Sales by region").status_code == 201
    r = upload_form(server, token, SALES_V2, name="sales")
    assert r.status_code == 200 and r.json()["replaced"] is True and r.json()["table"]["rows"] == 3
    assert rows(server, token, "SELECT count(*), max(day) FROM sales") == [[3, "2024-02-03"]]
    table = call(server, "GET", "/api/catalog/tables/sales", token).json()
    assert table["description"] == "Sales by region" and table["rows"] == 3


BAD_FILES = [
    ("ragged csv", b"a,b,c\n1,2,3\n4,5,6,7\n8,9,10\n", {}, "Line 3"),
    ("short row", b"a,b\n1,2\n3\n", {}, "Line 3"),
    ("latin-1 csv", "name,city\nJosé,Zürich\n".encode("latin-1"), {}, "utf-8"),
    ("empty file", b"", {}, "empty (0 bytes)"),
    ("header only", b"a,b,c\n", {}, "no data rows"),
    ("binary garbage", bytes(range(256)) * 40, {}, "binary"),
    ("garbage as parquet", b"this is not parquet at all", {"format": "parquet"}, "magic bytes"),
    ("malformed json", b'{"a": 1}\n{"a": \n', {"format": "ndjson"}, "could not be read as ndjson"),
    ("unknown format", b"a\n1\n", {"format": "xlsx"}, "Unknown format"),
]


@pytest.mark.parametrize("label,content,params,words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_file_is_a_400_naming_the_problem_and_the_old_table_stays(admin, workdir, label, content, params,
                                                                          words):
    server, token = admin
    assert upload_raw(server, token, SALES_V1, name="sales").status_code == 201
    r = upload_raw(server, token, content, name="sales", **params)
    assert r.status_code == 400, (label, r.text)
    detail = r.json()["detail"]
    assert words in detail, (label, detail)
    assert "uploads/incoming" not in detail  # the server's spool path is not the caller's business
    assert rows(server, token, "SELECT count(*) FROM sales") == [[2]]
    assert data_files(workdir) == ["sales"]


def test_names_are_checked_and_owned_names_are_refused(admin, workdir):
    server, token = admin
    r = upload_raw(server, token, SALES_V1)
    assert r.status_code == 422 and "?name=" in r.json()["detail"]
    r = upload_raw(server, token, SALES_V1, name="bad-name!")
    assert r.status_code == 400 and "letters, digits and _" in r.json()["detail"]
    assert list((workdir / "data").glob("extracts/local/data/*")) == []
    r = requests.post(server.url + "/api/upload/tables", headers=auth(token), files={"other": ("x.csv", SALES_V1)},
                      timeout=30)
    assert r.status_code == 422 and "part named \"file\"" in r.json()["detail"]
    make_extract(extracts(workdir), "shop", rows=(("orders", "local"),))
    assert call(server, "POST", "/api/admin/rebuild", token).status_code == 200
    r = upload_raw(server, token, SALES_V1, name="orders")
    assert r.status_code == 409 and "'shop'" in r.json()["detail"]
    assert rows(server, token, "SELECT count(*) FROM orders") == [[10]]


def test_only_admins_upload_and_are_checked_before_the_body(admin):
    server, token = admin
    r = upload_raw(server, server.analyst_token, SALES_V1, name="sales")
    assert r.status_code == 403
    assert upload_raw(server, None, SALES_V1, name="sales").status_code == 401
    listed = call(server, "GET", "/api/catalog/tables", token).json()
    assert listed["count"] == 0


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_UPLOAD_MAX_BYTES="1000"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    big = b"a,b\n" + b"1,2\n" * 2000
    for send in (lambda: upload_raw(server, token, big, name="big"),
                 lambda: upload_form(server, token, big, name="big")):
        r = send()
        assert r.status_code == 413, r.text
        assert "upload.max_bytes" in r.json()["detail"]
    assert upload_raw(server, token, b"a,b\n1,2\n", name="small").status_code == 201
    assert list((workdir / "data" / "uploads").iterdir()) == []


def test_a_large_upload_streams_to_disk_not_memory(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_UPLOAD_MAX_BYTES=str(1 << 30)))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    path = workdir / "big.csv"
    with open(path, "wb") as f:
        f.write(b"id,label\n")
        chunk = b"".join(b"%d,row number %d\n" % (i, i) for i in range(100000))
        for _ in range(40):
            f.write(chunk)
    size = os.path.getsize(path)
    assert size > 80 * 1024 * 1024

    def peak_rss_kb():
        status = open(f"/proc/{server.proc.pid}/status").read()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))

    # An invalid name is refused only after the whole body has arrived: the
    # growth measured here is what receiving 87 MB cost, nothing else.
    before = peak_rss_kb()
    with open(path, "rb") as body:
        r = requests.post(server.url + "/api/upload/tables", headers=auth(token), params={"name": "not-valid!"},
                          data=body, timeout=300)
    assert r.status_code == 400, r.text
    grown_kb = peak_rss_kb() - before
    print(json.dumps({"upload_bytes": size, "peak_rss_growth_kb_receiving": grown_kb}))
    assert grown_kb * 1024 < 16 * 1024 * 1024  # the body never sat in memory
    with open(path, "rb") as body:
        r = requests.post(server.url + "/api/upload/tables", headers=auth(token), params={"name": "big"},
                          data=body, timeout=300)
    assert r.status_code == 201, r.text
    assert r.json()["table"]["rows"] == 4000000


def test_kill_9_during_an_upload_keeps_the_old_table_and_the_next_start_cleans_up(server_factory, env, workdir):
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert upload_raw(server, token, SALES_V1, name="sales").status_code == 201
    body = SALES_V2 * 1000
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /api/upload/tables?name=sales HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
        uploads = workdir / "data" / "uploads"
        deadline = time.monotonic() + 10
        while not list(uploads.glob("incoming-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(uploads.glob("incoming-*")), "the body is spooled to disk as it arrives"
        server.stop(sig=signal.SIGKILL)
    (workdir / "data" / "extracts" / "local" / "data" / "other.parquet.tmp").write_bytes(b"half")
    server.start()
    assert list((workdir / "data" / "uploads").iterdir()) == []
    assert not (workdir / "data" / "extracts" / "local" / "data" / "other.parquet.tmp").exists()
    assert rows(server, token, "SELECT count(*) FROM sales") == [[2]]


def test_upload_names_are_stored_in_lower_case(admin):
    server, token = admin
    assert upload_raw(server, token, SALES_V1, name="Sales").json()["table"]["id"] == "sales"
    r = upload_raw(server, token, SALES_V2, name="SALES")
    assert r.status_code == 200 and r.json()["replaced"] is True
    assert rows(server, token, "SELECT count(*) FROM Sales") == [[3]]


# ---- issue 13 items 1-3: dialect and types ------------------------------------------------------------

SEMICOLON = b"id;name;city\n1;Ana;Brno\n2;Bob;Praha\n"


DIALECTS = [
    (SEMICOLON, ";"),
    (b"id|name|city\n1|Ana|Brno\n2|Bob|Praha\n", "|"),
    (b"id\tname\tcity\n1\tAna\tBrno\n2\tBob\tPraha\n", "\t"),
    (b'id,name,city\n1,"Ana, Jr.",Brno\n2,Bob,"Praha; CZ"\n', ","),  # delimiters inside quotes do not count
]


def test_the_delimiter_is_detected_and_reported(admin):
    server, token = admin
    for content, delimiter in DIALECTS:
        r = upload_raw(server, token, content, name="people")
        assert r.status_code in (200, 201), r.text
        table = r.json()["table"]
        assert [c["name"] for c in table["columns"]] == ["id", "name", "city"], (delimiter, table)
        assert table["dialect"]["delimiter"] == delimiter and table["dialect"]["given"] == []
        assert rows(server, token, "SELECT id, name FROM people ORDER BY id")[0][0] == 1


def test_a_decimal_comma_is_detected_and_the_dialect_can_be_given(admin):
    server, token = admin
    r = upload_raw(server, token, b"id;amount\n1;1,5\n2;2,25\n", name="eu")
    assert r.status_code == 201, r.text  # was "Expected Number of Columns: 1 Found: 2"
    assert r.json()["table"]["dialect"]["decimal_separator"] == ","
    assert rows(server, token, "SELECT sum(amount) FROM eu") == [[3.75]]
    given = upload_raw(server, token, b"a;b\n'x;y';2\n", name="given", delimiter=";", quote="'", header="true")
    assert given.status_code == 201, given.text
    dialect = given.json()["table"]["dialect"]
    assert dialect["given"] == ["delimiter", "quote", "header"] and dialect["quote"] == "'"
    assert rows(server, token, "SELECT a, b FROM given") == [["x;y", 2]]
    headless = upload_raw(server, token, b"1,2\n3,4\n", name="headless", header="false")
    assert [c["name"] for c in headless.json()["table"]["columns"]] == ["column0", "column1"]
    assert rows(server, token, "SELECT count(*) FROM headless") == [[2]]


def test_thousands_separators_with_a_decimal_comma_become_exact_numbers(admin):
    """"1.234,50" stayed VARCHAR; types=revenue:DECIMAL(38,2) answered "Column types were inferred from the first
    rows: pass sample_size=-1" although the type was given."""
    server, token = admin
    body = b"region;revenue;units\nEU;1.234,50;1.000\nUS;12.345.678,05;2.500\nCZ;99,10;7\n"
    r = upload_raw(server, token, body, name="revenue")
    assert r.status_code == 201, r.text
    table = r.json()["table"]
    assert table["dialect"]["decimal_separator"] == "," and table["dialect"]["thousands_separator"] == "."
    types = {c["name"]: c["type"] for c in table["columns"]}
    assert types == {"region": "VARCHAR", "revenue": "DECIMAL(38,2)", "units": "BIGINT"}, table["columns"]
    assert rows(server, token, "SELECT sum(revenue), sum(units) FROM revenue") == [["12347011.65", 3507]]
    # The caller's type is honoured with the same separators.
    given = upload_raw(server, token, body, name="revenue_given", types='{"revenue": "DECIMAL(38,2)"}')
    assert given.status_code == 201, given.text
    assert rows(server, token, "SELECT revenue FROM revenue_given ORDER BY region") == [
        ["99.10"], ["1234.50"], ["12345678.05"]]
    # Told explicitly (a file whose sample has no unambiguous value).
    told = upload_raw(server, token, b"a;b\nx;1.500\n", name="told", thousands_separator=".",
                      decimal_separator=",")
    assert told.status_code == 201, told.text
    assert rows(server, token, "SELECT b FROM told") == [[1500]]
    # A value that is not of the given type names that, not the sample size.
    bad = upload_raw(server, token, b"region;revenue\nEU;lots\n", name="bad", types='{"revenue": "DECIMAL(38,2)"}')
    assert bad.status_code == 400, bad.text
    assert "type you gave" in bad.json()["detail"] and "sample_size" not in bad.json()["detail"], bad.text
    wrong = upload_raw(server, token, body, name="w", thousands_separator="x")
    assert wrong.status_code == 400 and "thousands_separator must be" in wrong.json()["detail"]


def test_a_wrong_delimiter_is_refused_with_a_sentence_not_read_as_one_column(admin):
    server, token = admin
    r = upload_raw(server, token, SEMICOLON, name="people", delimiter=",")  # the caller forced the wrong one
    assert r.status_code == 400, r.text
    assert "one column named \"id;name;city\"" in r.json()["detail"] and "delimiter=%3B" in r.json()["detail"]
    typo = upload_raw(server, token, SEMICOLON, name="people", delimeter=";")
    assert typo.status_code == 400 and "Unknown option \"delimeter\"" in typo.json()["detail"]
    bad = upload_raw(server, token, SEMICOLON, name="people", delimiter="ab")
    assert bad.status_code == 400 and "delimiter must be one character" in bad.json()["detail"]
    parquet = upload_raw(server, token, b"PAR1", name="people", format="parquet", delimiter=";")
    assert parquet.status_code == 400 and "for csv and tsv" in parquet.json()["detail"]
    assert call(server, "GET", "/api/catalog/tables", token).json()["count"] == 0


BIG = ["12345678901234567890", "99999999999999999999", "18446744073709551617"]


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_digits_are_never_silently_lost(admin, fmt):
    server, token = admin
    if fmt == "csv":
        content = ("account_id,n\n" + "".join(f"{v},{i}\n" for i, v in enumerate(BIG))).encode()
    elif fmt == "ndjson":
        content = "".join(f'{{"account_id": {v}, "n": {i}}}\n' for i, v in enumerate(BIG)).encode()
    else:
        content = ("[" + ",".join(f'{{"account_id": {v}, "n": {i}}}' for i, v in enumerate(BIG)) + "]").encode()
    r = upload_raw(server, token, content, name="accounts", format=fmt)
    assert r.status_code == 201, r.text
    column = r.json()["table"]["columns"][0]
    assert column["type"] == "DECIMAL(38,0)" and column["chosen"] == "widened" and "DOUBLE" in column["note"]
    # 12345678901234567891 is not in the file; as DOUBLE it equalled 12345678901234567890
    assert rows(server, token, "SELECT count(*) FROM accounts WHERE account_id = 12345678901234567891") == [[0]]
    got = rows(server, token, "SELECT CAST(account_id AS VARCHAR) FROM accounts ORDER BY n")
    assert [g[0] for g in got] == BIG


def test_widening_picks_the_narrowest_exact_type(admin):
    server, token = admin
    r = upload_raw(server, token, b"u,f,huge,plain\n12345678901234567890,0.12345678901234567891,"
                                  + b"1" * 45 + b",1.5\n1,2.5,2,2.25\n", name="widths")
    assert r.status_code == 201, r.text
    types = {c["name"]: (c["type"], c["chosen"]) for c in r.json()["table"]["columns"]}
    assert types == {"u": ("UBIGINT", "widened"), "f": ("DECIMAL(38,20)", "widened"), "huge": ("VARCHAR", "widened"),
                     "plain": ("DOUBLE", "detected")}
    assert rows(server, token, "SELECT CAST(f AS VARCHAR), huge FROM widths ORDER BY u DESC LIMIT 1") == [
        ["0.12345678901234567891", "1" * 45]]


def test_digits_of_a_second_past_microseconds_are_kept(admin):
    server, token = admin
    r = upload_raw(server, token, b"t,z,plain\n2024-01-01 10:00:00.123456789,2024-01-01T10:00:00.123456789Z,"
                                  b"2024-01-01 10:00:00.5\n2024-01-02 10:00:00,2024-01-02T10:00:00Z,2024-01-02 10:00:00\n",
                   name="times")
    assert r.status_code == 201, r.text
    types = {c["name"]: (c["type"], c["chosen"]) for c in r.json()["table"]["columns"]}
    assert types == {"t": ("TIMESTAMP_NS", "widened"), "z": ("VARCHAR", "widened"), "plain": ("TIMESTAMP", "detected")}
    assert rows(server, token, "SELECT CAST(t AS VARCHAR), z FROM times ORDER BY t LIMIT 1") == [
        ["2024-01-01 10:00:00.123456789", "2024-01-01T10:00:00.123456789Z"]]  # was truncated to .123456


def test_a_json_fraction_a_double_cannot_hold_is_refused_with_its_line(admin):
    server, token = admin
    r = upload_raw(server, token, b'{"v": 1.5}\n{"v": 0.12345678901234567891}\n', name="fractions", format="ndjson")
    assert r.status_code == 400, r.text
    assert "Line 2" in r.json()["detail"] and "0.12345678901234567891" in r.json()["detail"]
    ok = upload_raw(server, token, b'{"v": 0.30000000000000004}\n{"v": "0.12345678901234567891"}\n',
                    name="fractions", format="ndjson", types='{"v": "VARCHAR"}')
    assert ok.status_code == 201, ok.text
    assert rows(server, token, "SELECT v FROM fractions") == [["0.30000000000000004"], ["0.12345678901234567891"]]


def test_type_controls_types_all_text_and_sample_size(admin):
    server, token = admin
    r = upload_raw(server, token, b"zip,amount,day\n01234,10,2024-01-01\n", name="typed",
                   types="zip:VARCHAR,amount:DECIMAL(10,2)")
    assert r.status_code == 201, r.text
    chosen = [(c["name"], c["type"], c["chosen"]) for c in r.json()["table"]["columns"]]
    assert chosen == [("zip", "VARCHAR", "given"), ("amount", "DECIMAL(10,2)", "given"), ("day", "DATE", "detected")]
    assert rows(server, token, "SELECT zip FROM typed") == [["01234"]]
    text = upload_raw(server, token, b"a,b\n1,2024-01-01\n", name="texts", all_text="true")
    assert [c["type"] for c in text.json()["table"]["columns"]] == ["VARCHAR", "VARCHAR"]
    assert text.json()["table"]["inference"] == {"sample_size": 20480, "all_text": True}
    late = b"n\n" + b"1\n" * 25000 + b"n/a\n"  # a text value after DuckDB's 20,480-row sample
    r = upload_raw(server, token, late, name="late")
    assert r.status_code == 400 and "Line 25002" in r.json()["detail"] and "sample_size=-1" in r.json()["detail"]
    r = upload_raw(server, token, late, name="late", sample_size="-1")
    assert r.status_code == 201, r.text
    assert r.json()["table"]["columns"][0]["type"] == "VARCHAR"
    assert r.json()["table"]["inference"]["sample_size"] == "all"
    as_json = upload_raw(server, token, b'{"a": 1, "b": {"c": 2}}\n', name="nested", format="ndjson",
                         all_text="true")
    assert rows(server, token, "SELECT a, b FROM nested") == [["1", '{"c":2}']]
    assert as_json.json()["table"]["columns"][1]["chosen"] == "text"
    # A DOUBLE column is checked as it is converted: a long value after the sample widens it, a text
    # value there is still refused by line.
    r = upload_raw(server, token, b"v\n" + b"1.5\n" * 25000 + b"12345678901234567890\n", name="late_digits")
    assert r.status_code == 201 and r.json()["table"]["columns"][0]["type"] == "DECIMAL(38,1)", r.text
    assert rows(server, token, "SELECT CAST(max(v) AS VARCHAR) FROM late_digits") == [["12345678901234567890.0"]]
    r = upload_raw(server, token, b"v\n" + b"1.5\n" * 25000 + b"abc\n", name="late_text")
    assert r.status_code == 400 and "Line 25002" in r.json()["detail"] and "DOUBLE" in r.json()["detail"], r.text
    huge = upload_raw(server, token, b"h\n170141183460469231731687303715884105\n", name="huge", types="h:HUGEINT")
    assert huge.json()["table"]["columns"][0]["type"] == "DECIMAL(38,0)"  # Parquet would round HUGEINT to DOUBLE
    assert rows(server, token, "SELECT CAST(h AS VARCHAR) FROM huge") == [["170141183460469231731687303715884105"]]


BAD_CONTROLS = [
    ({"types": "zz:VARCHAR"}, "does not have; its columns are: a, b"),
    ({"types": "a:NOTATYPE"}, "is not a DuckDB type"),
    ({"types": "a:VARCHAR'); DROP TABLE x; --"}, "is not a type name"),
    ({"types": "a"}, "column:TYPE pairs"),
    ({"types": "a:VARCHAR", "all_text": "true"}, "not both"),
    ({"all_text": "maybe"}, "all_text must be true or false"),
    ({"sample_size": "0"}, "sample_size must be"),
    ({"sample_size": "lots"}, "sample_size must be"),
    ({"header": "perhaps"}, "header must be true or false"),
    ({"decimal_separator": ";"}, "decimal_separator must be"),
    ({"quote": "ab"}, "quote must be"),
]


def test_bad_controls_are_a_400_naming_the_option(admin):
    server, token = admin
    for params, words in BAD_CONTROLS:
        r = upload_raw(server, token, b"a,b\n1,2\n", name="controls", **params)
        assert r.status_code == 400, (params, r.text)
        assert words in r.json()["detail"], (params, r.text)
    assert call(server, "GET", "/api/catalog/tables", token).json()["count"] == 0


def test_controls_work_as_form_fields_too(admin):
    server, token = admin
    r = upload_form(server, token, SEMICOLON, name="people", delimiter=";", types="id:VARCHAR")
    assert r.status_code == 201, r.text
    assert r.json()["table"]["columns"][0] == {"name": "id", "type": "VARCHAR", "chosen": "given"}
    typo = upload_form(server, token, SEMICOLON, name="people", delimeter=";")
    assert typo.status_code == 400 and "delimeter" in typo.json()["detail"]


# ---- issue 13 item 14: names the engine or the contract uses --------------------------------------------

RESERVED = ["duckdb_views", "duckdb_tables", "information_schema", "pg_catalog", "pg_class", "sqlite_master", "_meta",
            "_remote_attach", "DuckDB_Views"]


def test_a_reserved_name_is_refused_before_anything_is_written(admin, workdir):
    server, token = admin
    assert upload_raw(server, token, b"a\n1\n", name="t1").status_code == 201
    for name in RESERVED:
        r = upload_raw(server, token, b"a\n1\n", name=name)
        assert r.status_code == 400 and "already uses" in r.json()["detail"], (name, r.text)
        form = upload_form(server, token, b"a\n1\n", filename=f"{name}.csv")  # the name a file suggests
        assert form.status_code == 400 and "already uses" in form.json()["detail"], (name, form.text)
    assert upload_raw(server, token, b"a\n2\n", name="t2").status_code == 201  # later uploads still work
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["t1", "t2"]
    assert data_files(workdir) == ["t1", "t2"]
    assert server.get("/api/health").json()["status"] == "ok"


def test_a_reserved_table_uploaded_by_an_older_version_is_renamed_by_the_next_upload(server_factory, env, workdir):
    # What an older version accepted (three 201s): t1, duckdb_views, t2 - and the whole source vanished.
    make_extract(extracts(workdir), "local", rows=(("t1", "local"), ("duckdb_views", "local"), ("t2", "local")))
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["t1", "t2"]  # the reserved one alone is skipped
    r = upload_raw(server, token, b"a\n1\n", name="t3")
    assert r.status_code == 201, r.text
    assert r.json()["renamed_tables"] == [{"from": "duckdb_views", "to": "duckdb_views_data"}]
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["duckdb_views_data", "t1", "t2", "t3"]
    assert rows(server, token, "SELECT count(*) FROM duckdb_views_data") == [[10]]


# ---- issue 13 item 15: only acknowledged uploads ever appear ------------------------------------------

def test_a_failed_upload_is_never_published_by_a_later_one(admin, workdir):
    server, token = admin
    assert upload_raw(server, token, SALES_V1, name="sales").status_code == 201
    blocker = workdir / "data" / "extracts" / "local" / "extract.duckdb.tmp"
    blocker.mkdir()  # the extract cannot be written: the upload fails after its file was converted
    failed_new = upload_raw(server, token, b"a\n1\n", name="ghost")
    failed_replace = upload_raw(server, token, SALES_V2, name="sales")
    assert failed_new.status_code == 500 and failed_replace.status_code == 500
    assert rows(server, token, "SELECT count(*) FROM sales") == [[2]]  # the old version, not the unacknowledged one
    blocker.rmdir()
    assert upload_raw(server, token, b"a\n1\n", name="other").status_code == 201
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["other", "sales"]
    assert rows(server, token, "SELECT count(*) FROM sales") == [[2]]
    assert data_files(workdir) == ["other", "sales"]


def test_files_a_killed_upload_left_are_never_published(server_factory, env, workdir):
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert upload_raw(server, token, SALES_V1, name="sales").status_code == 201
    server.stop()
    data = workdir / "data" / "extracts" / "local" / "data"
    published = next(data.iterdir())
    # What a process killed between writing its file and committing leaves: a converted version no
    # extract names (and, from older versions, a bare <table>.parquet).
    (data / "ghost.0000000000000001.parquet").write_bytes(published.read_bytes())
    (data / "ghost.parquet").write_bytes(published.read_bytes())
    (data / ("sales.0000000000000002.parquet")).write_bytes(published.read_bytes())
    server.start()
    assert [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]] == ["sales"]
    assert upload_raw(server, token, b"a\n1\n", name="other").status_code == 201
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["other", "sales"]
    assert data_files(workdir) == ["other", "sales"]  # the leftovers went with the upload


def test_kill_9_during_a_conversion_publishes_nothing_later(server_factory, env, workdir):
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert upload_raw(server, token, SALES_V1, name="sales").status_code == 201
    big = b"id,label\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(1500000))
    data = workdir / "data" / "extracts" / "local" / "data"
    result = {}

    def send():
        try:
            result["r"] = upload_raw(server, token, big, name="killed")
        except requests.RequestException as e:
            result["r"] = e

    import threading
    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while not list(data.glob("killed.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(data.glob("killed.*")), "the conversion started"
    server.stop(sig=signal.SIGKILL)
    sender.join()
    assert not isinstance(result["r"], requests.Response) or result["r"].status_code != 201
    server.start()
    assert upload_raw(server, token, b"a\n1\n", name="other").status_code == 201
    listed = [t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"]]
    assert listed == ["other", "sales"]
    assert data_files(workdir) == ["other", "sales"]


# ---- issue 13 item 24: bad text in names, descriptions and bodies is a 400, never a 500 ----------------

def test_text_that_is_not_utf8_is_a_400(admin):
    server, token = admin
    url = server.url + "/api/upload/tables"
    for query in (b"name=%FF%FE", b"name=ok&description=%FF", b"name=" + b"%C3%A9" * 40, b"name=ok&format=%FF"):
        r = requests.post(url + "?" + query.decode(), headers=auth(token), data=SALES_V1, timeout=30)
        assert r.status_code == 400, (query, r.text)
        assert "UTF-8" in r.json()["detail"] or "Table name" in r.json()["detail"], r.text
    form = requests.post(url, headers=auth(token), files={"file": ("s.csv", SALES_V1)},
                         data={"name": b"ok", "description": b"bad \xff bytes"}, timeout=30)
    assert form.status_code == 400 and "description" in form.json()["detail"]
    assert call(server, "GET", "/api/catalog/tables", token).json()["count"] == 0


def test_a_raw_json_upload_of_text_is_a_400_with_json_in_the_answer(admin):
    server, token = admin
    r = upload_raw(server, token, "éééééééééé".encode(), name="weird", format="json")
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("The file could not be read as json")
    r = upload_raw(server, token, ("é" * 600).encode() + b"\n", name="weird")
    assert r.status_code in (201, 400), r.text
