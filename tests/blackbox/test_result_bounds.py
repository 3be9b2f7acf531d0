"""What bounds result handles and /mcp requests (security review of POST /api/results and /mcp): the bytes a
result may write (per user, in all, and the free disk it leaves), the size of one cell in a page, the length of a
JSON-RPC batch, and the sentences tool errors carry."""
import hashlib
import threading
import time

import requests

from test_mcp import ACCEPT, initialize, rpc
from test_users import call, setup_admin_and_analyst

MIB = 1048576
# About 61 MB as Parquet: what the review saw written whole before "too large to keep" with a 1 MiB cap.
HUGE_SQL = "SELECT i, md5(i::VARCHAR) AS h FROM range(5000000) t(i)"


class LargestFile:
    """Watches every Parquet file under DATA_DIR (the handle's own and the query worker's copy) while a request
    runs, and remembers the largest size seen."""

    def __init__(self, data_dir):
        self.data_dir, self.largest, self.seen = data_dir, 0, set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def watch(self):
        while not self.stop.is_set():
            for path in self.data_dir.rglob("*.parquet*"):
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                self.seen.add(path.name)
                self.largest = max(self.largest, size)
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def mcp_session(server, token):
    r = initialize(server, token)
    assert r.status_code == 200, r.text
    return r.headers["Mcp-Session-Id"]


def pat_of(server, token):
    r = call(server, "POST", "/auth/tokens", token, json={"name": "bounds test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def tool_call(n, name, arguments):
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def test_a_result_over_the_users_cap_is_never_written_past_it_and_still_answers_its_first_page(
        server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_RESULT_MAX_BYTES_PER_USER=str(MIB)))
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    with LargestFile(workdir / "data") as files:
        r = call(server, "POST", "/api/results", token, json={"sql": HUGE_SQL, "limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    # The first page, said to be all that is shown, not kept - and no file ever passed the cap.
    assert page["rows"] == [[0, hashlib.md5(b"0").hexdigest()], [1, hashlib.md5(b"1").hexdigest()]]
    assert page["handle"] is None and page["truncated"] is True and page["total_rows"] is None
    assert "results.max_bytes_per_user" in page["note"] and "narrow the query" in page["note"]
    assert files.seen, "the watcher saw no Parquet file at all"
    assert files.largest <= MIB, files.largest
    assert call(server, "GET", "/api/results", token).json()["results"] == []
    assert not list((workdir / "data" / "results").glob("*.parquet*"))
    # The same over MCP; and a result under the cap is still kept whole.
    pat = pat_of(server, token)
    session = mcp_session(server, pat)
    out = rpc(server, pat, session, tool_call(2, "query", {"sql": HUGE_SQL, "limit": 1})).json()
    mcp_page = out["result"]["structuredContent"]
    assert mcp_page["handle"] is None and mcp_page["rows"] == [[0, hashlib.md5(b"0").hexdigest()]]
    small = call(server, "POST", "/api/results", token,
                 json={"sql": "SELECT i FROM range(1000) t(i)", "limit": 1}).json()
    assert small["handle"] and small["total_rows"] == 1000


def test_a_result_stops_at_the_servers_total_and_at_the_free_disk_floor(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_RESULT_MAX_BYTES_TOTAL=str(MIB)))
    admin, _, analyst = setup_admin_and_analyst(server)
    kept = call(server, "POST", "/api/results", admin["access_token"],
                json={"sql": "SELECT i, md5(i::VARCHAR) AS h FROM range(12000) t(i)", "limit": 1}).json()
    assert kept["handle"], kept
    with LargestFile(workdir / "data" / "results") as files:
        r = call(server, "POST", "/api/results", analyst["access_token"], json={"sql": HUGE_SQL, "limit": 1})
    assert r.status_code == 503, r.text
    assert "results.max_bytes_total" in r.json()["detail"]
    assert files.largest <= MIB
    # Another user's results are not evicted for it, and small results still fit.
    assert [h["handle"] for h in call(server, "GET", "/api/results", admin["access_token"]).json()["results"]] == \
        [kept["handle"]]
    assert call(server, "POST", "/api/results", analyst["access_token"],
                json={"sql": "SELECT i FROM range(1000) t(i)", "limit": 1}).status_code == 200
    server.stop()

    # The same state, restarted with a free-disk floor no disk has.
    floor = server_factory(dict(env, AGNES_RESULT_MIN_FREE_BYTES=str(1 << 50)))
    r = call(floor, "POST", "/api/results", admin["access_token"],
             json={"sql": "SELECT i FROM range(1000) t(i)", "limit": 1})
    assert r.status_code == 503 and "results.min_free_bytes" in r.json()["detail"], r.text


def test_a_huge_cell_is_cut_in_pages_and_whole_in_the_download(server_factory, env):
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    r = call(server, "POST", "/api/results", token,
             json={"sql": "SELECT repeat(chr(65), 10000000) AS big FROM range(2)", "max_chars": 100, "limit": 1})
    assert r.status_code == 200, r.text
    assert len(r.content) < 4000, len(r.content)
    page = r.json()
    cell = page["rows"][0][0]
    assert cell.startswith("A" * 50) and "[cut:" in cell and len(cell) < 400
    assert page["cut_values"] == 1 and page["handle"] in page["cut_note"]
    handle = page["handle"]
    later = call(server, "GET", f"/api/results/{handle}/rows?offset=1&max_chars=100", token)
    assert len(later.content) < 4000 and "[cut:" in later.json()["rows"][0][0]
    csv = call(server, "GET", f"/api/results/{handle}?format=csv", token)
    assert csv.status_code == 200 and csv.text.splitlines()[1] == "A" * 10000000
    # One row only: still kept, so the whole value can be had; a list cut is still JSON; text is never cut
    # inside a character or an escape.
    one = call(server, "POST", "/api/results", token, json={
        "sql": "SELECT repeat('é\"\\', 400) AS t, [repeat('x', 300), 'y'] AS l, 42 AS n", "max_chars": 300}).json()
    text, items, number = one["rows"][0]
    assert one["handle"] and one["cut_values"] == 2 and number == 42
    assert text.startswith('é"\\é"\\') and text.endswith("download]")
    assert text.split("...[cut:")[0].endswith(('é', '"', '\\'))
    assert isinstance(items, str) and items.startswith('["xxx') and "[cut:" in items
    # Over MCP the same page.
    pat = pat_of(server, token)
    session = mcp_session(server, pat)
    out = rpc(server, pat, session, tool_call(2, "fetch_result", {"handle": handle, "max_chars": 100}))
    assert len(out.content) < 8000
    assert "[cut:" in out.json()["result"]["structuredContent"]["rows"][0][0]


def test_an_mcp_batch_is_capped_and_has_a_deadline(server_factory, env):
    server = server_factory(dict(env, AGNES_QUERY_TIMEOUT="2"))
    admin, _, _ = setup_admin_and_analyst(server)
    pat = pat_of(server, admin["access_token"])
    session = mcp_session(server, pat)
    too_many = [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(17)]
    r = rpc(server, pat, session, too_many)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == -32600 and "mcp.max_batch" in r.json()["error"]["message"]
    assert len(rpc(server, pat, session, too_many[:16]).json()) == 16
    # Each call is stopped at the query timeout; once the batch has run that long no further call starts.
    slow = "SELECT count(*) FROM range(1000000000000) a(i) WHERE i % 7 = 3"
    r = rpc(server, pat, session, [tool_call(n, "query", {"sql": slow}) for n in range(1, 6)])
    assert r.status_code == 200, r.text
    answers = {a["id"]: a for a in r.json()}
    assert answers[1]["result"]["isError"] is True
    skipped = [a for a in answers.values() if "error" in a]
    assert skipped and all("deadline" in a["error"]["message"] and "query.timeout_seconds" in a["error"]["message"]
                           for a in skipped)
    assert len(answers) == 5


def test_mcp_tool_errors_say_what_rest_says_without_server_internals(server_factory, env, workdir):
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    pat = pat_of(server, token)
    session = mcp_session(server, pat)
    made = rpc(server, pat, session, tool_call(2, "query", {"sql": "SELECT i FROM range(1000) t(i)", "limit": 1}))
    handle = made.json()["result"]["structuredContent"]["handle"]
    assert handle
    # A damaged result file: DuckDB's error about it names the server's path.
    (workdir / "data" / "results" / f"{handle}.parquet").write_bytes(b"not parquet at all" * 100)
    rest = call(server, "GET", f"/api/results/{handle}/rows", pat)
    assert rest.status_code == 500
    out = rpc(server, pat, session, tool_call(3, "fetch_result", {"handle": handle})).json()["result"]
    assert out["isError"] is True
    text = out["content"][0]["text"]
    assert text.startswith(rest.json()["detail"].rstrip(".")), text
    for internal in (str(workdir), "/results/", "parquet", "Error:", "DuckDB"):
        assert internal not in text, text
    # A caller's mistake keeps its sentence, the same as /api/query's.
    bad = rpc(server, pat, session, tool_call(4, "query", {"sql": "SELECT nope FROM range(3)"})).json()["result"]
    query = call(server, "POST", "/api/query", pat, json={"sql": "SELECT nope FROM range(3)"})
    assert bad["isError"] is True and query.status_code == 400
    assert bad["content"][0]["text"] == query.json()["detail"]
    assert str(workdir) not in bad["content"][0]["text"]
