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
                                "decimal_separator": ".", "given": []}
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
