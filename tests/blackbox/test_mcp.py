"""Agents as first-class users (issue 17; SPEC §17), driven by a real MCP client - the official TypeScript SDK
(@modelcontextprotocol/sdk, pinned in tests/mcp/package.json, installed by scripts/bootstrap) through
tests/mcp/client.mjs: `agnes mcp` over stdio, launched from the .mcp.json `agnes init` wrote, and /mcp over
streamable HTTP with a personal access token.  Every tool, and no ungranted table through any of them."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest
import requests

from conftest import AGNES_BIN, ROOT
from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import ANALYST, call, setup_admin_and_analyst

NODE = shutil.which("node") or "/usr/bin/node"
CLIENT = ROOT / "tests" / "mcp" / "client.mjs"
SYSTEM_PATH = "/usr/bin:/bin"  # agnes is not on it: .mcp.json names the binary by absolute path
ORDERS = b"id,item,amount\n" + b"".join(b"%d,item %d,%d.5\n" % (i, i, i) for i in range(500))
SALARIES = b"id,salary\n1,100\n2,200\n"
BIG_SQL = "SELECT i, i * 2 AS doubled, 'row ' || i AS label FROM range(5000000) t(i)"
ACCEPT = "application/json, text/event-stream"


def run_client(workdir, plan, env, timeout=900):
    path = workdir / f"plan-{os.getpid()}-{len(list(workdir.glob('plan-*')))}.json"
    path.write_text(json.dumps(plan))
    out = subprocess.run([NODE, str(CLIENT), str(path)], capture_output=True, text=True, env=env, timeout=timeout,
                         cwd=str(ROOT / "tests" / "mcp"))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    # `agnes mcp`'s stderr (stdio): a sanitizer report there would otherwise go unseen.
    assert "Sanitizer" not in result.get("stderr", "") and "runtime error" not in result.get("stderr", "")
    return result


def value(step):
    assert step["ok"], step
    return step["value"]


def tool_text(step):
    return value(step)["content"][0]["text"]


def tool_error(step):
    result = value(step)
    assert result.get("isError") is True, result
    return result["content"][0]["text"]


def cli(home, *args, cwd=None, timeout=120, stdin=None):
    env = {"HOME": str(home), "PATH": SYSTEM_PATH}
    return subprocess.run([AGNES_BIN, *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=str(cwd or home), timeout=timeout)


@pytest.fixture
def world(server_factory, env, workdir):
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    for name, content in (("orders", ORDERS), ("salaries", SALARIES)):
        assert upload_raw(server, token, content, name=name).status_code in (200, 201)
    grant = call(server, "POST", "/api/admin/grants", token,
                 json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    assert grant.status_code in (200, 201)
    pat = call(server, "POST", "/auth/tokens", analyst["access_token"], json={"name": "mcp test"})
    assert pat.status_code == 201, pat.text
    home = workdir / "analyst"
    home.mkdir()
    login = cli(home, "login", "--server", server.url, "--email", ANALYST["email"], stdin=ANALYST["password"] + "\n")
    assert login.returncode == 0, login.stderr
    yield {"server": server, "admin": token, "analyst": analyst["access_token"], "pat": pat.json()["token"],
           "home": home, "grant": grant.json()["id"]}
    # Under `make asan` a leak or a memory error on these paths shows only in the server's own log.
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert "Sanitizer" not in log and "runtime error" not in log, log[-4000:]


def stdio_plan(project, steps):
    return {"transport": "stdio", "mcp_json": str(project / ".mcp.json"), "server": "agnes", "cwd": str(project),
            "steps": steps}


def http_plan(server, token, steps):
    return {"transport": "http", "url": server.url + "/mcp", "token": token, "steps": steps}


def node_env(home):
    return {"HOME": str(home), "PATH": SYSTEM_PATH}


def admin_handle(world):
    """A result handle that belongs to the admin, for the 'someone else's handle' checks."""
    r = call(world["server"], "POST", "/api/results", world["admin"], json={"sql": "SELECT * FROM salaries",
                                                                              "limit": 1})
    assert r.status_code == 200 and r.json()["handle"], r.text
    return r.json()["handle"]


def test_stdio_from_agnes_init_lists_queries_and_sees_nothing_ungranted(world, workdir):
    server, home = world["server"], world["home"]
    project = home / "project"
    project.mkdir()
    init = cli(home, "init", cwd=project)
    assert init.returncode == 0, init.stderr
    foreign = admin_handle(world)
    out = run_client(workdir, stdio_plan(project, [
        {"op": "tools"},
        {"op": "call", "name": "list_tables"},
        {"op": "call", "name": "describe_table", "arguments": {"table": "orders", "sample_rows": 2}},
        {"op": "call", "name": "describe_table", "arguments": {"table": "salaries"}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT count(*) AS n, sum(amount) AS s FROM orders"}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT * FROM salaries"}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT * FROM orders o JOIN salaries s USING (id)"}},
        {"op": "call", "name": "fetch_result", "arguments": {"handle": foreign}},
        {"op": "call", "name": "sync_status"},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT 1", "local": True}},
        {"op": "call", "name": "pull"},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT count(*) AS n FROM orders", "local": True}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT * FROM salaries", "local": True}},
        {"op": "call", "name": "registry"},
        {"op": "call", "name": "query", "arguments": {"sql": "SELEC 1"}},
    ]), node_env(home))
    steps = out["steps"]
    assert out["server"]["name"] == "agnes" and "agnes mcp: serving" in out["stderr"]
    # The model is told the dialect and the tables it may use - and not the others.
    assert "DuckDB" in out["instructions"] and "orders" in out["instructions"]
    assert "salaries" not in out["instructions"]
    tools = {t["name"]: t for t in value(steps[0])["tools"]}
    assert sorted(tools) == ["describe_table", "fetch_result", "list_tables", "pull", "query", "sync_status"]
    assert "DuckDB" in tools["query"]["description"] and "orders" in tools["query"]["description"]
    assert all("salaries" not in t["description"] for t in tools.values())
    assert tools["query"]["inputSchema"]["required"] == ["sql"] and tools["query"]["annotations"]["readOnlyHint"]
    listed = value(steps[1])["structuredContent"]
    assert [t["id"] for t in listed["tables"]] == ["orders"] and listed["tables"][0]["rows"] == 500
    described = value(steps[2])["structuredContent"]
    assert [c["name"] for c in described["columns"]] == ["id", "item", "amount"]
    assert described["sample"]["rows"] == [[0, "item 0", 0.5], [1, "item 1", 1.5]]
    assert "salaries" in tool_error(steps[3])
    answer = value(steps[4])["structuredContent"]
    assert answer["rows"] == [[500, 125000.0]] and answer["truncated"] is False and answer["handle"] is None
    assert json.loads(tool_text(steps[4])) == answer  # the text block carries the same JSON
    for step in (steps[5], steps[6]):  # the server's own sentence, as a tool error the model can read
        assert "salaries" in tool_error(step)
    assert "No result with handle" in tool_error(steps[7])
    status = value(steps[8])["structuredContent"]
    assert [t["table_id"] if "table_id" in t else t.get("id") for t in status.get("tables", [])] in (["orders"], [])
    assert "pull" in tool_error(steps[9])  # a local query before any pull says what to do
    pulled = value(steps[10])["structuredContent"]
    assert pulled["pull"]["downloaded"] == ["orders"] and pulled["changes"].startswith("# Agnes: first pull")
    assert (project / "data" / "orders.parquet").exists() and not (project / "data" / "salaries.parquet").exists()
    assert value(steps[11])["structuredContent"]["rows"] == [[500]]
    assert "salaries" in tool_error(steps[12])  # not in the workspace either
    assert steps[13]["ok"] is False and steps[13]["error"]["code"] == -32602  # admin tools do not exist for her
    assert "syntax" in tool_error(steps[14]).lower()


def test_http_with_a_pat_the_same_tools_and_grants(world, workdir):
    server = world["server"]
    foreign = admin_handle(world)
    out = run_client(workdir, http_plan(server, world["pat"], [
        {"op": "tools"},
        {"op": "call", "name": "list_tables"},
        {"op": "call", "name": "describe_table", "arguments": {"table": "orders", "sample_rows": 1}},
        {"op": "call", "name": "describe_table", "arguments": {"table": "salaries"}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT id, item FROM orders ORDER BY id", "limit": 10}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT * FROM salaries"}},
        {"op": "call", "name": "fetch_result", "arguments": {"handle": foreign}},
        {"op": "call", "name": "sync_status"},
        {"op": "call", "name": "pull"},
        {"op": "call", "name": "pull", "arguments": {"tables": ["salaries"]}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT 1", "local": True}},
        {"op": "call", "name": "sync_trigger"},
    ]), node_env(workdir))
    steps = out["steps"]
    assert out["protocol_version"] == "2025-11-25" and out["session_id"]
    assert "orders" in out["instructions"] and "salaries" not in out["instructions"]
    assert sorted(t["name"] for t in value(steps[0])["tools"]) == \
        ["describe_table", "fetch_result", "list_tables", "pull", "query", "sync_status"]
    assert [t["id"] for t in value(steps[1])["structuredContent"]["tables"]] == ["orders"]
    assert value(steps[2])["structuredContent"]["sample"]["rows"] == [[0, "item 0", 0.5]]
    assert "salaries" in tool_error(steps[3])
    page = value(steps[4])["structuredContent"]
    assert page["rows"] == [[i, f"item {i}"] for i in range(10)] and page["truncated"] is True
    assert page["total_rows"] == 500 and page["next_offset"] == 10 and len(page["handle"]) == 32
    assert "fetch_result" in page["note"] and page["handle"] in page["note"]
    assert "salaries" in tool_error(steps[5])
    assert "No result with handle" in tool_error(steps[6])
    assert value(steps[7]).get("isError") is not True
    manifest = value(steps[8])["structuredContent"]
    assert [t["id"] for t in manifest["tables"]] == ["orders"]
    assert manifest["tables"][0]["download_url"] == f"{server.url}/api/data/orders/download"
    assert "salaries" in tool_error(steps[9])
    assert "agnes mcp" in tool_error(steps[10])
    assert steps[11]["ok"] is False and steps[11]["error"]["code"] == -32602
    # The page's handle works for her over REST too, and for nobody else.
    handle = page["handle"]
    rest = call(server, "GET", f"/api/results/{handle}/rows?offset=10&limit=5", world["pat"]).json()
    assert rest["rows"] == [[i, f"item {i}"] for i in range(10, 15)] and rest["next_offset"] == 15
    assert call(server, "GET", f"/api/results/{handle}/rows", world["admin"]).status_code == 404
    assert call(server, "GET", f"/api/results/{handle}?format=csv", world["admin"]).status_code == 404


def test_admins_get_the_admin_tools(world, workdir):
    server = world["server"]
    out = run_client(workdir, http_plan(server, world["admin"], [
        {"op": "tools"},
        {"op": "call", "name": "registry"},
        {"op": "call", "name": "sync_trigger", "arguments": {"tables": ["nope"]}},
        {"op": "call", "name": "list_tables"},
        {"op": "terminate"},
    ]), node_env(workdir))
    steps = out["steps"]
    tools = {t["name"]: t for t in value(steps[0])["tools"]}
    assert {"sync_trigger", "registry"} <= set(tools) and "Admin only" in tools["sync_trigger"]["description"]
    assert "salaries" in out["instructions"]  # admins may use every table
    assert "tables" in value(steps[1])["structuredContent"]
    assert "nope" in tool_error(steps[2])  # the endpoint's own sentence
    assert sorted(t["id"] for t in value(steps[3])["structuredContent"]["tables"]) == ["orders", "salaries"]
    assert steps[4]["ok"]


def initialize(server, token, version="2025-06-18", **headers):
    return requests.post(server.url + "/mcp", timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT, **headers} if token else {"Accept": ACCEPT,
                                                                                                  **headers})


def rpc(server, token, session, body, **headers):
    h = {"Accept": ACCEPT, **headers}
    if token:
        h["Authorization"] = f"Bearer {token}"
    if session:
        h["Mcp-Session-Id"] = session
    return requests.post(server.url + "/mcp", json=body, headers=h, timeout=60)


def test_http_transport_sessions_origin_versions_and_401(world):
    server, pat = world["server"], world["pat"]
    # Without a token, 401 - and the web cookie alone is not enough.
    assert initialize(server, None).status_code == 401
    cookie = requests.post(server.url + "/mcp", timeout=30, cookies={"access_token": world["analyst"]},
                           json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"Accept": ACCEPT})
    assert cookie.status_code == 401 and "Authorization: Bearer" in cookie.json()["detail"]
    # Versions: the client's when we speak it, else our newest.
    for asked, got in (("2024-11-05", "2024-11-05"), ("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-11-25")):
        r = initialize(server, pat, asked)
        assert r.status_code == 200 and r.json()["result"]["protocolVersion"] == got
    r = initialize(server, pat)
    session = r.headers["Mcp-Session-Id"]
    assert len(session) == 64 and r.json()["result"]["serverInfo"]["name"] == "agnes"
    assert rpc(server, pat, session, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    listed = rpc(server, pat, session, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert listed.status_code == 200 and len(listed.json()["result"]["tools"]) == 6
    # Older revisions get no structuredContent; 2025-06-18 does.
    called = rpc(server, pat, session, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                        "params": {"name": "query", "arguments": {"sql": "SELECT 42 AS x"}}}).json()
    assert called["result"]["structuredContent"]["rows"] == [[42]]
    # Sessions: required, bound to their user, ended by DELETE.
    assert rpc(server, pat, None, {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).status_code == 400
    assert rpc(server, pat, "0" * 64, {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}).status_code == 404
    assert rpc(server, world["admin"], session, {"jsonrpc": "2.0", "id": 4, "method": "ping"}).status_code == 404
    # Origin: loopback and none pass, anything else is DNS rebinding.
    assert rpc(server, pat, session, {"jsonrpc": "2.0", "id": 5, "method": "ping"},
               Origin="http://localhost:6274").status_code == 200
    evil = rpc(server, pat, session, {"jsonrpc": "2.0", "id": 5, "method": "ping"}, Origin="http://evil.example")
    assert evil.status_code == 403 and "mcp.allowed_origins" in evil.json()["detail"]
    bad_version = rpc(server, pat, session, {"jsonrpc": "2.0", "id": 6, "method": "ping"},
                      **{"MCP-Protocol-Version": "2020-01-01"})
    assert bad_version.status_code == 400
    # Protocol errors are JSON-RPC errors; a batch gets a batch.
    batch = rpc(server, pat, session, [{"jsonrpc": "2.0", "id": 7, "method": "nope"},
                                       {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                                        "params": {"name": "registry"}},
                                       {"jsonrpc": "2.0", "method": "notifications/cancelled"}]).json()
    assert [m["error"]["code"] for m in batch] == [-32601, -32602]
    assert rpc(server, pat, session, None).status_code == 400
    assert requests.get(server.url + "/mcp", headers={"Authorization": f"Bearer {pat}", "Accept": ACCEPT},
                        timeout=10).status_code == 405
    ended = requests.delete(server.url + "/mcp", headers={"Authorization": f"Bearer {pat}", "Mcp-Session-Id": session},
                            timeout=10)
    assert ended.status_code == 204
    assert rpc(server, pat, session, {"jsonrpc": "2.0", "id": 9, "method": "ping"}).status_code == 404


def test_an_allowed_origin_can_be_configured(server_factory, env):
    server = server_factory(dict(env, AGNES_MCP_ALLOWED_ORIGINS="https://inspector.example.com, https://b.example"))
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    assert initialize(server, token, Origin="https://inspector.example.com").status_code == 200
    assert initialize(server, token, Origin="https://b.example").status_code == 200
    assert initialize(server, token, Origin="https://c.example").status_code == 403
    assert initialize(server, token, Origin="null").status_code == 403


def sha256_of_stream(response):
    digest = hashlib.sha256()
    for chunk in response.iter_content(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def long_queries(env):
    """The 5 M-row CSV export streams for longer than the default 30 s deadline on a slow (ASan) build."""
    env["AGNES_QUERY_TIMEOUT"] = "900"


def test_a_5m_row_result_comes_back_page_by_page_identical_to_a_csv_export(long_queries, world, workdir):
    server, home = world["server"], world["home"]
    project = home / "project"
    project.mkdir()
    assert cli(home, "init", cwd=project).returncode == 0
    first = run_client(workdir, stdio_plan(project, [
        {"op": "call", "name": "query", "arguments": {"sql": BIG_SQL}},
    ]), node_env(home))
    page = value(first["steps"][0])["structuredContent"]
    assert page["truncated"] is True and page["total_rows"] == 5_000_000 and page["handle"]
    assert page["row_count"] == 200 and page["rows"][:2] == [[0, 0, "row 0"], [1, 2, "row 1"]]  # the budget
    assert len(tool_text(first["steps"][0])) < 30000  # what reaches the model's context stays small
    handle = page["handle"]
    # The handle is hers, whichever way she comes: page it over HTTP with her token (the stdio path adds a
    # pipe hop per page - 84 s against 47 s for the 50 pages measured here - for no further coverage).
    paged = run_client(workdir, http_plan(server, world["pat"], [
        {"op": "page_all", "handle": handle, "limit": 100000, "max_chars": 10000000},
    ]), node_env(home))
    pages = value(paged["steps"][0])
    assert pages["rows"] == 5_000_000 and pages["pages"] == 50 and pages["first_offsets"] == [0, 100000, 200000]
    export = requests.post(server.url + "/api/query", json={"sql": BIG_SQL, "format": "csv", "limit": 10_000_000},
                           headers={"Authorization": f"Bearer {world['pat']}"}, stream=True, timeout=600)
    assert export.status_code == 200
    assert pages["sha256"] == sha256_of_stream(export)
    download = requests.get(f"{server.url}/api/results/{handle}?format=csv", stream=True, timeout=600,
                            headers={"Authorization": f"Bearer {world['pat']}"})
    assert download.status_code == 200 and sha256_of_stream(download) == pages["sha256"]


def test_result_handles_over_rest(world, workdir):
    server, pat, admin = world["server"], world["pat"], world["admin"]
    r = call(server, "POST", "/api/results", pat, json={"sql": "SELECT * FROM orders ORDER BY id", "max_chars": 200})
    assert r.status_code == 200
    page = r.json()
    assert 1 <= page["row_count"] < 20 and page["truncated"] and page["total_rows"] == 500
    assert len(json.dumps(page["rows"], separators=(",", ":"))) <= 200  # the character budget
    handle = page["handle"]
    mine = call(server, "GET", "/api/results", pat).json()
    assert [h["handle"] for h in mine["results"]] == [handle] and mine["limits"]["max_rows"] == 200
    assert call(server, "GET", "/api/results", admin).json()["results"] == []
    # Paging: every row once, in order; a single row larger than max_chars still advances.
    rows, offset = [], 0
    while offset is not None:
        p = call(server, "GET", f"/api/results/{handle}/rows?offset={offset}&limit=150", pat).json()
        rows += p["rows"]
        offset = p["next_offset"]
    assert [row[0] for row in rows] == list(range(500))
    one = call(server, "GET", f"/api/results/{handle}/rows?offset=3&max_chars=100", pat).json()
    assert one["row_count"] >= 1 and one["rows"][0][0] == 3
    # Downloads: Parquet and CSV, the CSV the same bytes as the query's own CSV export.
    parquet = call(server, "GET", f"/api/results/{handle}?format=parquet", pat)
    assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
    csv = call(server, "GET", f"/api/results/{handle}?format=csv", pat)
    export = call(server, "POST", "/api/query", pat,
                  json={"sql": "SELECT * FROM orders ORDER BY id", "format": "csv", "limit": 1000})
    assert csv.status_code == 200 and csv.content == export.content
    assert call(server, "GET", f"/api/results/{handle}?format=xlsx", pat).status_code == 422
    # Someone else's handle, a malformed one, a missing one: the same 404.
    for token, h in ((admin, handle), (pat, "not-a-handle"), (pat, "F" * 32), (pat, "f" * 32)):
        for path in (f"/api/results/{h}/rows", f"/api/results/{h}"):
            r = call(server, "GET", path, token)
            assert r.status_code == 404 and "No result with handle" in r.json()["detail"]
    assert call(server, "DELETE", f"/api/results/{handle}", admin).status_code == 404
    # Bound to the grants of the time: revoking orders revokes the handle.
    assert call(server, "DELETE", f"/api/admin/grants/{world['grant']}", admin).status_code in (200, 204)
    revoked = call(server, "GET", f"/api/results/{handle}/rows", pat)
    assert revoked.status_code == 403 and "orders" in revoked.json()["detail"]
    assert call(server, "DELETE", f"/api/results/{handle}", pat).status_code == 204
    assert call(server, "GET", "/api/results", pat).json()["results"] == []
    # Bad input is a 4xx naming the field.
    assert call(server, "POST", "/api/results", pat, json={"sql": "SELECT 1", "limit": 0}).status_code == 422
    assert call(server, "POST", "/api/results", pat, json={}).status_code == 422
    assert call(server, "GET", "/api/results/" + "a" * 32 + "/rows?offset=-1", pat).status_code == 422


def test_handles_expire_and_are_swept_and_a_users_disk_is_capped(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_RESULT_MAX_BYTES_PER_USER="1048576"))
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    results = workdir / "data" / "results"
    assert oct(results.stat().st_mode & 0o777) == "0o700"
    small = [call(server, "POST", "/api/results", token,
                  json={"sql": f"SELECT i, md5(i::VARCHAR) AS h FROM range({n}) t(i)", "limit": 1}).json()
             for n in (12000, 12001)]
    assert all(p["handle"] for p in small)
    # Over the user's cap on its own: answered once, not kept, and said so.
    big = call(server, "POST", "/api/results", token,
               json={"sql": "SELECT i, md5(i::VARCHAR) AS h FROM range(200000) t(i)", "limit": 1}).json()
    assert big["handle"] is None and big["truncated"] and "max_bytes_per_user" in big["note"]
    # Copying stopped at the cap: its first page comes from a run cut to that page, the total is not known.
    assert big["total_rows"] is None and len(big["rows"]) == 1
    # Within the cap the oldest goes first.
    sizes = {h["handle"]: h["size_bytes"] for h in call(server, "GET", "/api/results", token).json()["results"]}
    assert set(sizes) == {p["handle"] for p in small} and sum(sizes.values()) <= 1048576
    many = [call(server, "POST", "/api/results", token,
                 json={"sql": f"SELECT i, md5(i::VARCHAR) AS h FROM range({12002 + n}) t(i)", "limit": 1}).json()
            for n in range(3)]
    live = [h["handle"] for h in call(server, "GET", "/api/results", token).json()["results"]]
    assert many[-1]["handle"] in live and small[0]["handle"] not in live
    assert not (results / f"{small[0]['handle']}.parquet").exists()
    # Expired: gone for the user at once, and from disk at the next sweep (at start, then every minute).
    handle = live[0]
    record = results / f"{handle}.json"
    data = json.loads(record.read_text())
    data["expires_unix"] = 1
    record.write_text(json.dumps(data))
    assert call(server, "GET", f"/api/results/{handle}/rows", token).status_code == 404
    (results / ("e" * 32 + ".parquet.part")).write_bytes(b"half")
    os.utime(results / ("e" * 32 + ".parquet.part"), (1, 1))
    (results / "notes.txt").write_text("not ours")
    server.stop()
    server.start()
    assert not record.exists() and not (results / f"{handle}.parquet").exists()
    assert not (results / ("e" * 32 + ".parquet.part")).exists() and (results / "notes.txt").exists()


def test_local_results_and_pull_result(world, workdir):
    server, home = world["server"], world["home"]
    project = home / "project"
    project.mkdir()
    assert cli(home, "init", cwd=project).returncode == 0
    assert cli(home, "pull", cwd=project).returncode == 0
    out = run_client(workdir, stdio_plan(project, [
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT * FROM orders ORDER BY id;", "local": True,
                                                      "limit": 3}},
        {"op": "call", "name": "query", "arguments": {"sql": "SELECT id FROM orders ORDER BY id", "limit": 2}},
    ]), node_env(home))
    local = value(out["steps"][0])["structuredContent"]
    assert local["handle"].startswith("local-") and local["total_rows"] == 500 and local["rows"][0] == [0, "item 0", 0.5]
    assert "read_parquet" in local["note"]
    remote = value(out["steps"][1])["structuredContent"]["handle"]
    more = run_client(workdir, stdio_plan(project, [
        {"op": "call", "name": "fetch_result", "arguments": {"handle": local["handle"], "offset": 498}},
        {"op": "call", "name": "fetch_result", "arguments": {"handle": "local-" + "0" * 32}},
        {"op": "call", "name": "pull", "arguments": {"result": remote}},
        {"op": "call", "name": "fetch_result", "arguments": {"handle": "../../etc/passwd"}},
    ]), node_env(home))
    rest = value(more["steps"][0])["structuredContent"]
    assert [r[0] for r in rest["rows"]] == [498, 499] and rest["next_offset"] is None
    assert "No local result" in tool_error(more["steps"][1])
    pulled = value(more["steps"][2])["structuredContent"]["pull"]
    assert pulled["path"] == str(project / "results" / f"{remote}.parquet")
    assert "No result with handle" in tool_error(more["steps"][3])
    # The CLI the same way, as CSV.
    r = cli(home, "pull", "--result", remote, "--format", "csv", cwd=project)
    assert r.returncode == 0, r.stderr
    assert (project / "results" / f"{remote}.csv").read_text().splitlines()[:3] == ["id", "0", "1"]
    assert cli(home, "pull", "--result", "nothex", cwd=project).returncode == 2
    gone = cli(home, "pull", "--result", "a" * 32, cwd=project)
    assert gone.returncode != 0 and "No result with handle" in gone.stderr
    assert cli(home, "pull", "--result", local["handle"], cwd=project).returncode == 2


def test_a_handle_keeps_what_parquet_would_not(world):
    """sum() of BIGINT is a HUGEINT, which Parquet stores as DOUBLE; TIMETZ loses its offset there and repeated
    column names are renamed: a handle gives back exactly what the query gave."""
    server, pat = world["server"], world["pat"]
    sql = ("SELECT i, sum(i) OVER (ORDER BY i) AS total, sum(i) OVER (ORDER BY i) AS total,"
           " 170141183460469231731687303715884105727::HUGEINT - i AS big, TIMETZ '12:00:00+01' AS t,"
           " {'h': i::HUGEINT} AS s FROM range(300) t(i)")
    page = call(server, "POST", "/api/results", pat, json={"sql": sql, "limit": 5}).json()
    whole = call(server, "POST", "/api/query", pat, json={"sql": sql, "limit": 1000}).json()
    assert page["columns"] == whole["columns"] == ["i", "total", "total", "big", "t", "s"]
    assert page["types"] == whole["types"] and page["types"][3] == "HUGEINT"
    assert page["rows"] == whole["rows"][:5] and page["rows"][1][3] == "170141183460469231731687303715884105726"
    later = call(server, "GET", f"/api/results/{page['handle']}/rows?offset=250&limit=5", pat).json()
    assert later["rows"] == whole["rows"][250:255] and later["rows"][0][4] == "12:00:00+01:00"
    csv = call(server, "GET", f"/api/results/{page['handle']}?format=csv", pat).content
    assert csv == call(server, "POST", "/api/query", pat, json={"sql": sql, "limit": 1000, "format": "csv"}).content


def test_a_struct_member_name_cannot_write_the_sql_that_reads_a_handle(server_factory, env):
    """A result with HUGEINT inside a STRUCT is kept as text and cast back on reading. The member name is the
    caller's text: unquoted, `"a HUGEINT)) AS x, (SELECT ...) AS leak, ..."` closed the cast and ran its own
    subquery in the server's result reader (outside every query worker), which read other users' results."""
    server = server_factory(env)
    _, _, analyst = setup_admin_and_analyst(server)
    name = 'a HUGEINT)) AS x, (SELECT 42) AS leak, CAST(NULL AS STRUCT(b'
    sql = f'SELECT {{\'{name}\': i::HUGEINT}}::STRUCT("{name}" HUGEINT) AS s FROM range(3) t(i)'
    r = call(server, "POST", "/api/results", analyst["access_token"], json={"sql": sql, "limit": 1})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["columns"] == ["s"] and first["handle"], first
    page = call(server, "GET", f"/api/results/{first['handle']}/rows?offset=1&limit=5", analyst["access_token"]).json()
    assert page["columns"] == ["s"] and [row[0] for row in page["rows"]] == [{name: 1}, {name: 2}], page


def test_tool_errors_name_tools_not_http_routes(world):
    """The MCP `query` tool answered a missing table with "GET /api/catalog/tables lists the tables you can
    query": an agent calls tools, it cannot act on a route."""
    server, pat = world["server"], world["pat"]
    session = initialize(server, pat).headers["Mcp-Session-Id"]
    rpc(server, pat, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    r = rpc(server, pat, session, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                   "params": {"name": "query", "arguments": {"sql": "SELECT * FROM eu"}}})
    result = r.json()["result"]
    assert result["isError"] is True, result
    text = result["content"][0]["text"]
    assert "list_tables tool" in text and "/api/" not in text, text
