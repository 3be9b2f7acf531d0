"""examples/connectors (issue 5): the shell and the Python example, run by a real server as custom
connectors, synced and queried; their partial and failed exits behave as docs/connectors.md says."""
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT
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
