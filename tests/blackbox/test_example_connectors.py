"""examples/connectors (issue 5): the shell and the Python example, run by a real server as custom
connectors, synced and queried; their partial and failed exits behave as docs/connectors.md says."""
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import AGNES_BIN, ROOT
from test_sync import trigger_and_wait
from test_users import call, setup_admin_and_analyst

EXAMPLES = ROOT / "examples" / "connectors"


def install(workdir, name):
    connectors = workdir / "connectors"
    shutil.copytree(EXAMPLES / name, connectors / name)
    return connectors


def start(server_factory, env, connectors, **extra):
    server = server_factory(dict(env, CONNECTORS_DIR=str(connectors), AGNES_SYNC_TIMEOUT="60", **extra))
    return server, setup_admin_and_analyst(server)[0]["access_token"]


def register(server, token, **row):
    r = call(server, "POST", "/api/admin/register-table", token, json=row)
    assert r.status_code == 201, r.text


def rows(server, token, sql):
    r = call(server, "POST", "/api/query", token, json={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def test_the_shell_example_publishes_csv_files(server_factory, env, workdir):
    folder = workdir / "csv"
    folder.mkdir()
    (folder / "orders.csv").write_text("id,customer,amount\n1,Ada,10.5\n2,Bob,3\n")
    (folder / "people's list.csv").write_text("name\nCyd\n")
    connectors = install(workdir, "csv_folder")
    server, token = start(server_factory, env, connectors, CSV_FOLDER_DIR=str(folder))
    register(server, token, name="orders", source_type="csv_folder")
    register(server, token, name="people", source_type="csv_folder", source_table="people's list.csv")
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    assert {t["table_id"]: t["rows"] for t in run["tables"]} == {"orders": 2, "people": 1}
    assert rows(server, token, "SELECT customer, amount FROM orders ORDER BY id") == [["Ada", 10.5], ["Bob", 3.0]]
    assert rows(server, token, "SELECT name FROM people") == [["Cyd"]]
    # One file gone: exit 2, the other table still publishes.
    (folder / "orders.csv").unlink()
    _, run = trigger_and_wait(server, token)
    states = {t["table_id"]: t["state"] for t in run["tables"]}
    assert run["state"] == "partial" and states == {"people": "done", "orders": "failed"}, run
    # The failed table keeps serving its last good data (SPEC §9), and says so.
    assert "keeps serving its last published data" in [t for t in run["tables"] if t["table_id"] == "orders"][0]["error"]
    assert rows(server, token, "SELECT customer FROM orders ORDER BY id") == [["Ada"], ["Bob"]]


def test_triggering_one_table_of_a_connector_keeps_its_siblings(server_factory, env, workdir):
    """Issue 13, item 10: a trigger of ["csv_small"] unpublished csv_big, while the run said done."""
    folder = workdir / "csv"
    folder.mkdir()
    (folder / "csv_small.csv").write_text("id\n1\n")
    (folder / "csv_big.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1000)))
    connectors = install(workdir, "csv_folder")
    server, token = start(server_factory, env, connectors, CSV_FOLDER_DIR=str(folder))
    register(server, token, name="csv_small", source_type="csv_folder")
    register(server, token, name="csv_big", source_type="csv_folder")
    assert trigger_and_wait(server, token)[1]["state"] == "done"
    for n in range(2, 5):  # more runs than the two run directories kept by age
        (folder / "csv_small.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(n)))
        _, run = trigger_and_wait(server, token, ["csv_small"])
        assert run["state"] == "done" and [t["table_id"] for t in run["tables"]] == ["csv_small"], run
        assert rows(server, token, "SELECT count(*) FROM csv_small") == [[n]]
        assert rows(server, token, "SELECT count(*) FROM csv_big") == [[1000]]
    manifest = call(server, "GET", "/api/sync/manifest", token).json()["tables"]
    assert manifest["csv_big"]["downloadable"] and manifest["csv_big"]["rows"] == 1000
    download = call(server, "GET", "/api/data/csv_big/download", token)
    assert download.status_code == 200 and download.content[:4] == b"PAR1"
    # Unregistered, a table the connector no longer writes is gone at the next run.
    assert call(server, "DELETE", "/api/admin/registry/csv_big", token).status_code in (200, 204)
    trigger_and_wait(server, token, ["csv_small"])
    r = call(server, "POST", "/api/query", token, json={"sql": "SELECT count(*) FROM csv_big"})
    assert r.status_code == 400


class FakeApi(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != "Bearer api-secret":
            self.send_response(401)
            self.end_headers()
            return
        body = {"/tickets": [{"id": 1, "title": "Broken login", "tags": ["auth"]},
                             {"id": 2, "title": "Slow export", "tags": []}]}.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        if body is not None:
            self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_python_example_publishes_an_http_api(server_factory, env, workdir, api):
    connectors = install(workdir, "json_api")
    server, token = start(server_factory, env, connectors, JSON_API_URL=api, JSON_API_TOKEN="api-secret")
    register(server, token, name="tickets", source_type="json_api", source_table="/tickets")
    register(server, token, name="missing", source_type="json_api", source_table="/nope")
    _, run = trigger_and_wait(server, token)
    states = {t["table_id"]: (t["state"], t["rows"]) for t in run["tables"]}
    assert run["state"] == "partial" and states["tickets"] == ("done", 2) and states["missing"][0] == "failed", run["tables"]
    assert rows(server, token, "SELECT title, tags FROM tickets ORDER BY id") == \
        [["Broken login", ["auth"]], ["Slow export", []]]


def test_the_python_example_fails_whole_without_its_token(server_factory, env, workdir, api):
    connectors = install(workdir, "json_api")
    server, token = start(server_factory, env, connectors, JSON_API_URL=api)  # JSON_API_TOKEN unset
    register(server, token, name="tickets", source_type="json_api", source_table="/tickets")
    _, run = trigger_and_wait(server, token)
    table = run["tables"][0]
    assert run["state"] == "failed" and "exited with 1" in table["error"] and "401" in table["error"], table


def test_the_check_by_hand_in_the_docs_works_as_written(workdir):
    """docs/connectors.md's hand check, run as written (its /tmp paths moved into this test's directory):
    it failed with `AGNES_BIN: parameter not set`, and a directory named try-out broke the source-name rule."""
    doc = (ROOT / "docs" / "connectors.md").read_text()
    section = doc[doc.index("Check your output by hand"):]
    script = section[section.index("```sh\n") + 6:section.index("\n```", section.index("```sh\n"))]
    assert "AGNES_BIN" in script and "try-out" in script
    script = script.replace("/tmp/", f"{workdir}/").replace("$PWD/build/agnes", AGNES_BIN)
    script = script.replace("build/agnes contract", f"{AGNES_BIN} contract")
    out = subprocess.run(["sh", "-ec", script], cwd=str(ROOT), capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok: {workdir}/try-out/extract.duckdb satisfies the extract contract (1 table, 1 local)" in out.stdout


def test_the_examples_say_what_is_missing_when_run_by_hand(workdir):
    for name, needs in (("csv_folder", "CSV_FOLDER_DIR"), ("json_api", "JSON_API_URL")):
        env = {"PATH": "/usr/bin:/bin", "OUTPUT_DIR": str(workdir / name), needs: str(workdir)}
        out = subprocess.run([str(EXAMPLES / name / "extract")], input="[]", capture_output=True, text=True,
                             env=env, timeout=30)
        assert out.returncode == 1 and "set AGNES_BIN to the agnes binary" in out.stderr, (name, out.stderr)
